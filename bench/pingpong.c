/* pingpong: the floor under a request-response benchmark on this machine.
 * Two processes joined by C loopback TCP connections: the child echoes
 * every byte it reads, the parent keeps W messages of S bytes in flight on
 * each connection and sends the next ones as replies come in. Each end
 * does what a lean WebSocket client or server must (one epoll loop; per
 * readable connection one recv(), then one send() of what it read or of
 * the messages its replies call for) and nothing else: no framing, no
 * parsing, no rooms. So the messages per second it reports are what
 * loopback TCP lets two processes exchange here, the most that wsbench's
 * echo runs could reach against a server doing real work (wsbench frames a
 * 32-byte message in 38 bytes; the server's answer takes 34).
 *
 * Prints one human line and one JSON line: msgs/s, and the CPU time each
 * end spent per message (user and system, from getrusage and wait4, over
 * the whole run). Loopback only, bounded in time; the child is ended by
 * its pid if it outlives the run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define PROG "pingpong"
#define MAX_CONNS 10000
#define MAX_INFLIGHT 64
#define MAX_SIZE 65536
#define MAX_BATCH 65536 /* bytes in flight per connection */
#define EVENTS_PER_WAIT 256
#define DRAIN_SECONDS 5.0
#define READ_CHUNK (256u * 1024)

typedef struct options {
    long conns;
    long inflight;
    long size;
    double duration;
    double warmup;
} options;

/* One connection as the parent (the client) sees it. */
typedef struct pconn {
    int fd;
    long partial; /* bytes of the current reply read so far */
} pconn;

static void usage(FILE *to) {
    fprintf(to,
            "usage: %s [--conns C] [--inflight W] [--size S] [--duration SEC] "
            "[--warmup SEC]\n"
            "  C loopback TCP connections (default 100) between two processes, W\n"
            "  messages of S bytes (default 1, 38) in flight on each, echoed back;\n"
            "  measured for SEC seconds (default 10) after a warm-up (default 2).\n",
            PROG);
}

static int parse_args(int argc, char **argv, options *o) {
    static const struct option longs[] = {
        {"conns", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'w'},
        {"size", required_argument, NULL, 's'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    o->conns = 100;
    o->inflight = 1;
    o->size = 38;
    o->duration = 10;
    o->warmup = 2;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'c':
            bad = bench_parse_long(PROG, "--conns", optarg, 1, MAX_CONNS, &o->conns);
            break;
        case 'w':
            bad = bench_parse_long(PROG, "--inflight", optarg, 1, MAX_INFLIGHT, &o->inflight);
            break;
        case 's':
            bad = bench_parse_long(PROG, "--size", optarg, 1, MAX_SIZE, &o->size);
            break;
        case 'd':
            bad = bench_parse_seconds(PROG, "--duration", optarg, 0.1, &o->duration);
            break;
        case 'u':
            bad = bench_parse_seconds(PROG, "--warmup", optarg, 0, &o->warmup);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad)
            return -1;
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    /* Both ends send on blocking sockets: what one end has in flight must
     * fit in the socket buffers, or each could wait for the other. */
    if (o->size * o->inflight > MAX_BATCH) {
        fprintf(stderr, "%s: --size times --inflight is at most %d bytes\n", PROG, MAX_BATCH);
        return -1;
    }
    return 0;
}

static int listen_loopback(struct sockaddr_in *addr) {
    socklen_t len = sizeof(*addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The child: accepts `conns` connections, then echoes what each sends
 * until every one is closed. Exits 0, or 1 on an error (said on stderr). */
static int serve(int listen_fd, long conns) {
    static char buf[READ_CHUNK];
    struct epoll_event events[EVENTS_PER_WAIT];
    long open_conns = 0;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return 1;
    while (open_conns < conns) {
        struct epoll_event ev = {.events = EPOLLIN};
        int one = 1;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "%s: accept: %s\n", PROG, strerror(errno));
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ev.data.fd = fd;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
            return 1;
        open_conns++;
    }
    close(listen_fd);
    while (open_conns > 0) {
        int i, n = epoll_wait(epfd, events, EVENTS_PER_WAIT, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        for (i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            ssize_t got = recv(fd, buf, sizeof(buf), 0);
            if (got > 0) {
                /* Blocking socket: a short echo cannot happen at these
                 * sizes, and if the client stops reading we wait. */
                if (send(fd, buf, (size_t)got, MSG_NOSIGNAL) != got) {
                    fprintf(stderr, "%s: send: %s\n", PROG, strerror(errno));
                    return 1;
                }
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(fd);
                open_conns--;
            }
        }
    }
    return 0;
}

/* Waits for the echo side to end (its connections are closed), at most
 * DRAIN_SECONDS, then ends it by its pid. Its CPU use in *usage; 0 if it
 * ended by itself with status 0. */
static int reap(pid_t pid, struct rusage *usage) {
    double until = bench_now_s() + DRAIN_SECONDS;
    int wstatus;
    memset(usage, 0, sizeof(*usage));
    for (;;) {
        pid_t got = wait4(pid, &wstatus, WNOHANG, usage);
        if (got == pid)
            return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 ? 0 : -1;
        if (got < 0 && errno != EINTR)
            return -1;
        if (bench_now_s() >= until) {
            fprintf(stderr, "%s: the echo side did not end; ending it\n", PROG);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        usleep(10000);
    }
}

/* Sends count messages of size bytes (msg holds MAX_INFLIGHT of them). */
static int send_messages(pconn *c, const char *msg, long size, long count) {
    if (send(c->fd, msg, (size_t)(size * count), MSG_NOSIGNAL) != size * count) {
        fprintf(stderr, "%s: send: %s\n", PROG, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static char buf[READ_CHUNK];
    struct epoll_event events[EVENTS_PER_WAIT];
    struct sockaddr_in addr;
    struct rusage self, child;
    options o;
    pconn *conns;
    char *msg;
    pid_t pid;
    int listen_fd, epfd, status = 0;
    uint64_t msgs_total = 0, msgs_measured = 0;
    double start, measure_from, measure_to, drain_until;
    long i, in_flight = 0;

    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (bench_raise_fd_limit() < o.conns * 2 + 16) {
        fprintf(stderr, "%s: the open-file limit is below %ld\n", PROG, o.conns * 2 + 16);
        return 2;
    }
    listen_fd = listen_loopback(&addr);
    if (listen_fd < 0) {
        fprintf(stderr, "%s: listen on 127.0.0.1: %s\n", PROG, strerror(errno));
        return 1;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", PROG, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        /* Ends with the parent, even if the parent dies first. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(1);
        _exit(serve(listen_fd, o.conns));
    }
    close(listen_fd);

    conns = calloc((size_t)o.conns, sizeof(*conns));
    msg = malloc((size_t)(o.size * MAX_INFLIGHT));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || msg == NULL || epfd < 0) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(conns);
        free(msg);
        if (epfd >= 0)
            close(epfd);
        return 1;
    }
    memset(msg, 'x', (size_t)(o.size * MAX_INFLIGHT));
    for (i = 0; i < o.conns; i++) {
        struct epoll_event ev = {.events = EPOLLIN};
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
            fprintf(stderr, "%s: connect: %s\n", PROG, strerror(errno));
            if (fd >= 0)
                close(fd);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            while (i-- > 0)
                close(conns[i].fd);
            free(conns);
            free(msg);
            close(epfd);
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[i].fd = fd;
        ev.data.ptr = &conns[i];
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }

    start = bench_now_s();
    measure_from = start + o.warmup;
    measure_to = measure_from + o.duration;
    drain_until = measure_to + DRAIN_SECONDS;
    for (i = 0; i < o.conns; i++) {
        if (send_messages(&conns[i], msg, o.size, o.inflight) != 0)
            goto fail;
        in_flight += o.inflight;
    }
    for (;;) {
        double now = bench_now_s();
        int sending = now < measure_to;
        int measuring = now >= measure_from && sending;
        int n;
        if (!sending && in_flight == 0)
            break;
        if (now >= drain_until) {
            fprintf(stderr, "%s: %ld replies still missing after %.0f s\n", PROG, in_flight,
                    DRAIN_SECONDS);
            goto fail;
        }
        n = epoll_wait(epfd, events, EVENTS_PER_WAIT, 100);
        if (n < 0 && errno != EINTR)
            goto fail;
        while (n-- > 0) {
            pconn *c = events[n].data.ptr;
            long replies;
            ssize_t got = recv(c->fd, buf, sizeof(buf), 0);
            if (got <= 0) {
                fprintf(stderr, "%s: recv: %s\n", PROG,
                        got == 0 ? "the echo side closed" : strerror(errno));
                goto fail;
            }
            c->partial += got;
            replies = c->partial / o.size;
            c->partial %= o.size;
            in_flight -= replies;
            msgs_total += (uint64_t)replies;
            if (measuring)
                msgs_measured += (uint64_t)replies;
            /* The next messages go in one send(), as a client queueing
             * a message per reply and flushing once would send them. */
            if (sending && replies > 0) {
                if (send_messages(c, msg, o.size, replies) != 0)
                    goto fail;
                in_flight += replies;
            }
        }
    }
    goto done;
fail:
    status = 1;
done:
    for (i = 0; i < o.conns; i++)
        close(conns[i].fd);
    if (reap(pid, &child) != 0)
        status = 1;
    getrusage(RUSAGE_SELF, &self);
    if (status == 0) {
        double rate = (double)msgs_measured / o.duration;
        double per = msgs_total > 0 ? 1e6 / (double)msgs_total : 0;
        printf("%s: %ld conns, %ld in flight each, %ld B: %.0f msgs/s; CPU per message "
               "(whole run, %" PRIu64 " msgs): client %.2f us user + %.2f us sys, echo "
               "%.2f us user + %.2f us sys\n",
               PROG, o.conns, o.inflight, o.size, rate, msgs_total,
               bench_timeval_s(self.ru_utime) * per, bench_timeval_s(self.ru_stime) * per,
               bench_timeval_s(child.ru_utime) * per, bench_timeval_s(child.ru_stime) * per);
        printf("{\"tool\":\"pingpong\",\"conns\":%ld,\"inflight\":%ld,\"size\":%ld,"
               "\"warmup_s\":%g,\"duration_s\":%g,\"msgs\":%" PRIu64 ",\"msgs_per_s\":%.1f,"
               "\"client_user_us_per_msg\":%.3f,\"client_sys_us_per_msg\":%.3f,"
               "\"echo_user_us_per_msg\":%.3f,\"echo_sys_us_per_msg\":%.3f}\n",
               o.conns, o.inflight, o.size, o.warmup, o.duration, msgs_measured, rate,
               bench_timeval_s(self.ru_utime) * per, bench_timeval_s(self.ru_stime) * per,
               bench_timeval_s(child.ru_utime) * per, bench_timeval_s(child.ru_stime) * per);
    }
    free(conns);
    free(msg);
    close(epfd);
    return status;
}
