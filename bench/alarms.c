/* alarms: N rooms waiting on alarms: what they cost in memory once every
 * room has left it, and how late the alarms fire. Embeds libparty (runtime on
 * its own thread, 127.0.0.1, a fresh data directory) with a party of its own
 * and creates the rooms over pipelined keep-alive HTTP. Prints one human line
 * and one JSON line; exits 1 when the run is not valid (see report()). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "common.h"
#include "party.h"

#define PARTY_NAME "alarmbench"
#define MAX_ROOMS 1000000
#define MAX_CONNS 256
#define MAX_INFLIGHT 1024
#define REQUEST_MAX 160         /* bytes of one request */
#define IN_BUF (64u * 1024)     /* one connection's unparsed responses */
#define EVICT_TIMEOUT_S 120.0   /* waiting for rooms to leave memory */
#define PROGRESS_EVERY_S 5.0    /* progress lines on stderr */
#define FDS_EVERY_S 0.5         /* sampling the open descriptors */
#define MIN_SETUP_BUDGET_S 5.0  /* the automatic budget is never shorter */
#define SETUP_BUDGET_FACTOR 2.0 /* automatic budget: this many times the estimate */
#define FIRE_CAP_FACTOR 4.0     /* the wait for alarms: at most this many times it */
#define NOT_FIRED INT32_MIN

/* ---- options ---- */

typedef struct bench_options {
    long rooms, warmup_rooms, conns, inflight;
    double delay_min, delay_max; /* seconds past the setup budget */
    double setup_budget;         /* seconds; 0: measured by the warm-up */
    double idle_timeout, grace;  /* grace: see usage() */
    int durability;
    const char *data_parent;
    unsigned long seed;
} bench_options;

/* ---- what the runtime thread records (read by main with atomics while
 * running, plainly after the thread is joined) ---- */

static int32_t *lateness_ms; /* per room; NOT_FIRED until its alarm runs */
static uint8_t *fire_count;  /* per room */
static long n_rooms;
static atomic_long fired, early, duplicates, alarm_errors, request_errors;
static atomic_llong first_fire_ms, last_fire_ms;
/* Rooms whose on_start ran and whose state was not freed yet: in memory.
 * (Descriptors no longer tell: a room of the shared files holds none.) */
static atomic_long rooms_awake;
static char awake_marker;

static int64_t epoch_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "a<index>" -> index, or -1. */
static long room_index(const char *name) {
    char *end;
    long v;
    if (name == NULL || name[0] != 'a')
        return -1;
    errno = 0;
    v = strtol(name + 1, &end, 10);
    return end != name + 1 && *end == '\0' && errno == 0 && v >= 0 && v < n_rooms ? v : -1;
}

static int64_t parse_ms(const char *text) {
    char *end;
    long long v;
    if (text == NULL)
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    return end != text && *end == '\0' && errno == 0 && v > 0 ? (int64_t)v : -1;
}

/* ---- the party ---- */

/* POST ?due=<epoch ms>: stores due under "due", sets the alarm, 201.
 * Without due (warm-up rooms): 201, nothing else. */
static void bench_on_request(party_room *room, const party_request *req, party_response *res) {
    const char *text = party_request_query(req, "due");
    int64_t due;

    if (strcmp(party_request_method(req), "POST") != 0) {
        party_response_set_status(res, 405);
        return;
    }
    if (text == NULL) {
        party_response_set_status(res, 201);
        return;
    }
    due = parse_ms(text);
    if (due < 0 || party_kv_put(room, "due", text, strlen(text)) != 0 ||
        party_alarm_set(room, due) != 0) {
        atomic_fetch_add(&request_errors, 1);
        party_response_set_status(res, 500);
        return;
    }
    party_response_set_status(res, 201);
}

/* The room is cold when this runs: due comes back from its storage. */
static int bench_on_alarm(party_room *room) {
    int64_t now = epoch_ms(), due, late;
    long index = room_index(party_room_name(room));
    long long seen;
    void *val = NULL;

    if (index < 0 || party_kv_get(room, "due", &val, NULL) != 0 || (due = parse_ms(val)) < 0) {
        free(val);
        atomic_fetch_add(&alarm_errors, 1);
        return 0; /* a retry would read the same thing */
    }
    free(val);
    late = now - due;
    if (late < 0)
        atomic_fetch_add(&early, 1);
    if (fire_count[index] < UINT8_MAX)
        fire_count[index]++;
    if (fire_count[index] > 1) {
        atomic_fetch_add(&duplicates, 1);
    } else {
        lateness_ms[index] = late > INT32_MAX ? INT32_MAX : (int32_t)late;
        atomic_fetch_add(&fired, 1);
    }
    seen = 0;
    atomic_compare_exchange_strong(&first_fire_ms, &seen, (long long)now);
    atomic_store(&last_fire_ms, (long long)now);
    return 0;
}

static int bench_on_start(party_room *room, const char *props) {
    (void)props;
    party_room_set_state(room, &awake_marker);
    atomic_fetch_add(&rooms_awake, 1);
    return 0;
}

static void bench_free_state(void *state) {
    (void)state;
    atomic_fetch_sub(&rooms_awake, 1);
}

static const party_def bench_party = {
    .name = PARTY_NAME,
    .on_start = bench_on_start,
    .free_state = bench_free_state,
    .on_request = bench_on_request,
    .on_alarm = bench_on_alarm,
};

static void runtime_thread(void *arg) {
    int rc = party_runtime_run(arg);
    if (rc != 0)
        fprintf(stderr, "alarms: party_runtime_run: %s\n", party_strerror(rc));
}

/* ---- the process, seen from outside ---- */

/* A "Vm...:" field of /proc/self/status, in kB; -1 if unreadable. */
static long proc_status_kb(const char *field) {
    char line[256];
    size_t n = strlen(field);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Open descriptors. Every room in memory holds its database's files open,
 * so the count falling back to what it was before tells, from outside the
 * runtime, that all rooms have left memory. */
static long open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* The most descriptors seen open, sampled at most every FDS_EVERY_S: rooms
 * in memory hold theirs (database, WAL, shared memory), so it hints at how
 * many were open at once. Short peaks fall between samples. */
static long fds_peak;
static double fds_sampled;

static long fds_limit;
static int fds_exhausted; /* a sample found no descriptor left to look */

static void fds_sample(void) {
    long n;
    if (bench_now_s() - fds_sampled < FDS_EVERY_S)
        return;
    fds_sampled = bench_now_s();
    n = open_fds();
    if (n < 0 && (errno == EMFILE || errno == ENFILE)) {
        fds_exhausted = 1;
        n = fds_limit;
    }
    if (n > fds_peak)
        fds_peak = n;
}

static void sleep_s(double s) {
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Bytes the allocator has handed out and not had back, all arenas: what
 * RSS would be without fragmentation and without the binary, stacks and
 * SQLite's file mappings. */
static long heap_in_use_kb(void) {
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

/* Waits until no room is in memory (every state freed), then two
 * eviction ticks more, so the runtime has unloaded the rooms' stores and
 * returned their pages (malloc_trim runs on the tick after an eviction).
 * At least min_s in all. 0, or -1 after timeout_s. */
static int wait_evicted(double idle_timeout, double min_s, double timeout_s) {
    double start = bench_now_s(), tick = idle_timeout / 4;
    if (tick < 0.1)
        tick = 0.1;
    if (tick > 5)
        tick = 5;
    while (atomic_load(&rooms_awake) > 0) {
        fds_sample();
        if (bench_now_s() - start > timeout_s)
            return -1;
        sleep_s(0.05);
    }
    sleep_s(2 * tick + 0.1);
    sleep_s(min_s - (bench_now_s() - start));
    return 0;
}

/* ---- the HTTP client: C keep-alive connections, W requests in flight on
 * each, responses parsed just enough to count the 201s ---- */

typedef struct hconn {
    int fd;
    char out[MAX_INFLIGHT * REQUEST_MAX];
    size_t out_len, out_sent;
    char in[IN_BUF];
    size_t in_len;
    long inflight;
} hconn;

typedef struct client {
    struct sockaddr_in addr;
    hconn *conns;
    long n_conns, inflight;
    long next, total, answered, created;
    char prefix;        /* 'a': bench rooms, 'w': warm-up rooms */
    const int64_t *due; /* per room, or NULL: no alarm */
    int failed;
} client;

static int conn_open(client *c, hconn *h) {
    h->fd = bench_tcp_connect(&c->addr, NULL);
    if (h->fd < 0) {
        fprintf(stderr, "alarms: connect: %s\n", strerror(errno));
        return -1;
    }
    h->out_len = h->out_sent = h->in_len = 0;
    h->inflight = 0;
    return 0;
}

static void conn_fill(client *c, hconn *h) {
    if (h->out_sent == h->out_len)
        h->out_len = h->out_sent = 0;
    while (h->inflight < c->inflight && c->next < c->total &&
           sizeof(h->out) - h->out_len >= REQUEST_MAX) {
        long i = c->next++;
        int n;
        if (c->due != NULL)
            n = snprintf(h->out + h->out_len, REQUEST_MAX,
                         "POST /parties/" PARTY_NAME "/%c%ld?due=%" PRId64 " HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
                         c->prefix, i, c->due[i]);
        else
            n = snprintf(h->out + h->out_len, REQUEST_MAX,
                         "POST /parties/" PARTY_NAME "/%c%ld HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
                         c->prefix, i);
        h->out_len += (size_t)n;
        h->inflight++;
    }
}

static int conn_write(hconn *h) {
    while (h->out_sent < h->out_len) {
        ssize_t n = send(h->fd, h->out + h->out_sent, h->out_len - h->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            fprintf(stderr, "alarms: send: %s\n", strerror(errno));
            return -1;
        }
        h->out_sent += (size_t)n;
    }
    return 0;
}

/* The value of header name in head[0..len), or -1. */
static long head_number(const char *head, size_t len, const char *name) {
    size_t n;
    const char *v = bench_http_header(head, len, name, &n);
    return v != NULL ? strtol(v, NULL, 10) : -1;
}

/* Consumes whole responses from h->in. */
static int conn_parse(client *c, hconn *h) {
    for (;;) {
        size_t head_len = bench_http_head_len(h->in, h->in_len), total;
        long body;
        if (head_len == 0)
            return h->in_len == sizeof(h->in) ? -1 : 0;
        body = head_number(h->in, head_len, "Content-Length");
        total = head_len + (body > 0 ? (size_t)body : 0);
        if (total > sizeof(h->in))
            return -1;
        if (h->in_len < total)
            return 0;
        if (h->inflight == 0)
            return -1;
        h->inflight--;
        c->answered++;
        if (bench_http_status(h->in, head_len) == 201) {
            c->created++;
        } else if (!c->failed) {
            c->failed = 1;
            fprintf(stderr, "alarms: unexpected answer: %.*s\n",
                    (int)((char *)memchr(h->in, '\r', head_len) - h->in), h->in);
        }
        memmove(h->in, h->in + total, h->in_len - total);
        h->in_len -= total;
    }
}

static int conn_read(client *c, hconn *h) {
    for (;;) {
        ssize_t n = recv(h->fd, h->in + h->in_len, sizeof(h->in) - h->in_len, 0);
        if (n == 0) {
            fprintf(stderr, "alarms: the server closed a connection\n");
            return -1;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            fprintf(stderr, "alarms: recv: %s\n", strerror(errno));
            return -1;
        }
        h->in_len += (size_t)n;
        if (conn_parse(c, h) != 0) {
            fprintf(stderr, "alarms: cannot parse the server's answers\n");
            return -1;
        }
    }
}

/* Creates rooms prefix0 .. prefix(total-1). 0, or -1 (said why). */
static int client_run(client *c, long total, char prefix, const int64_t *due, double timeout_s) {
    struct pollfd pfd[MAX_CONNS];
    double start = bench_now_s(), last_progress = start;
    long k;

    c->next = c->answered = c->created = 0;
    c->total = total;
    c->prefix = prefix;
    c->due = due;
    c->failed = 0;
    for (k = 0; k < c->n_conns; k++)
        if (conn_open(c, &c->conns[k]) != 0)
            return -1;
    while (c->answered < total) {
        double now = bench_now_s();
        int n;
        for (k = 0; k < c->n_conns; k++) {
            hconn *h = &c->conns[k];
            conn_fill(c, h);
            if (conn_write(h) != 0)
                return -1;
            pfd[k].fd = h->fd;
            pfd[k].events = POLLIN | (h->out_sent < h->out_len ? POLLOUT : 0);
            pfd[k].revents = 0;
        }
        if (now - start > timeout_s) {
            fprintf(stderr, "alarms: %ld of %ld rooms answered in %.0f s; giving up\n", c->answered,
                    total, timeout_s);
            return -1;
        }
        if (now - last_progress >= PROGRESS_EVERY_S) {
            fprintf(stderr, "alarms: %ld of %ld rooms created (%.0f/s)\n", c->created, total,
                    (double)c->created / (now - start));
            last_progress = now;
        }
        fds_sample();
        n = poll(pfd, (nfds_t)c->n_conns, 1000);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "alarms: poll: %s\n", strerror(errno));
            return -1;
        }
        for (k = 0; n > 0 && k < c->n_conns; k++) {
            if ((pfd[k].revents & (POLLIN | POLLERR | POLLHUP)) && conn_read(c, &c->conns[k]) != 0)
                return -1;
        }
    }
    for (k = 0; k < c->n_conns; k++) {
        close(c->conns[k].fd);
        c->conns[k].fd = -1;
    }
    return c->failed ? -1 : 0;
}

/* One request that creates no room, on its own connection, answered once
 * the runtime's loop runs. 0, or -1 if no answer came within 10 s. */
static int probe(const struct sockaddr_in *addr) {
    static const char req[] = "GET /parties/no-such-party/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    struct timeval tv = {10, 0};
    char buf[512];
    ssize_t n = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1))
        n = recv(fd, buf, sizeof(buf), 0);
    close(fd);
    return n > 0 && strncmp(buf, "HTTP/1.1 ", 9) == 0 ? 0 : -1;
}

/* ---- statistics ---- */

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The value at quantile q of sorted[0..n): the smallest with at least q*n
 * values at or below it. */
static int32_t quantile(const int32_t *sorted, size_t n, double q) {
    size_t rank;
    if (n == 0)
        return 0;
    rank = (size_t)(q * (double)n + 0.999999);
    if (rank == 0)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* ---- setup ---- */

static void usage(FILE *to) {
    fprintf(to,
            "usage: alarms [options]\n"
            "\n"
            "Creates N rooms of an embedded partyd runtime (127.0.0.1, fresh data\n"
            "directory), each with an alarm due 1..10 s after a setup budget; waits until\n"
            "every room has left memory and reads RSS; then measures how late each alarm\n"
            "fires.\n"
            "\n"
            "  --rooms N            rooms, one alarm each (default 100000)\n"
            "  --warmup-rooms N     rooms without alarm created first (default 2000)\n"
            "  --conns C            keep-alive connections (default 16)\n"
            "  --inflight W         requests pipelined per connection (default 16)\n"
            "  --delay-min S        earliest alarm, seconds past the budget (default 1)\n"
            "  --delay-max S        latest alarm, seconds past the budget (default 10)\n"
            "  --setup-budget S     seconds from the start of setup to the first possible\n"
            "                       due time (default: %.0fx what the warm-up rate predicts,\n"
            "                       plus the eviction wait)\n"
            "  --idle-timeout S     party_config.idle_timeout (default 1)\n"
            "  --grace S            past the last due time, stop waiting for alarms once\n"
            "                       none fired for S s (default 30; at most S + %.0fx\n"
            "                       what the warm-up rate predicts for N rooms)\n"
            "  --durability MODE    normal (default) or full\n"
            "  --data-parent DIR    where the data directory is made (default .)\n"
            "  --seed N             due-time random seed (default: from the clock)\n"
            "\n"
            "Prints a summary line and a JSON line; exits 1 if a room was not created, an\n"
            "alarm did not fire or fired early or twice, or the setup overran its budget.\n",
            SETUP_BUDGET_FACTOR, FIRE_CAP_FACTOR);
}

enum {
    OPT_ROOMS = 256,
    OPT_WARMUP_ROOMS,
    OPT_CONNS,
    OPT_INFLIGHT,
    OPT_DELAY_MIN,
    OPT_DELAY_MAX,
    OPT_SETUP_BUDGET,
    OPT_IDLE_TIMEOUT,
    OPT_GRACE,
    OPT_DURABILITY,
    OPT_DATA_PARENT,
    OPT_SEED,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"rooms", required_argument, NULL, OPT_ROOMS},
    {"warmup-rooms", required_argument, NULL, OPT_WARMUP_ROOMS},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"delay-min", required_argument, NULL, OPT_DELAY_MIN},
    {"delay-max", required_argument, NULL, OPT_DELAY_MAX},
    {"setup-budget", required_argument, NULL, OPT_SETUP_BUDGET},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    {"data-parent", required_argument, NULL, OPT_DATA_PARENT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* 0, 1 for --help, or -1 after saying what is wrong. */
static int parse_args(int argc, char **argv, bench_options *o) {
    long v;
    int opt;

    memset(o, 0, sizeof(*o));
    o->rooms = 100000;
    o->warmup_rooms = 2000;
    o->conns = 16;
    o->inflight = 16;
    o->delay_min = 1;
    o->delay_max = 10;
    o->idle_timeout = 1;
    o->grace = 30;
    o->durability = PARTY_DURABILITY_NORMAL;
    o->data_parent = ".";
    o->seed = (unsigned long)epoch_ms();
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_ROOMS:
            if (bench_parse_long("alarms", "--rooms", optarg, 1, MAX_ROOMS, &o->rooms) != 0)
                return -1;
            break;
        case OPT_WARMUP_ROOMS:
            if (bench_parse_long("alarms", "--warmup-rooms", optarg, 1, MAX_ROOMS,
                                 &o->warmup_rooms) != 0)
                return -1;
            break;
        case OPT_CONNS:
            if (bench_parse_long("alarms", "--conns", optarg, 1, MAX_CONNS, &o->conns) != 0)
                return -1;
            break;
        case OPT_INFLIGHT:
            if (bench_parse_long("alarms", "--inflight", optarg, 1, MAX_INFLIGHT, &o->inflight) !=
                0)
                return -1;
            break;
        case OPT_DELAY_MIN:
            if (bench_parse_seconds("alarms", "--delay-min", optarg, 0, &o->delay_min) != 0)
                return -1;
            break;
        case OPT_DELAY_MAX:
            if (bench_parse_seconds("alarms", "--delay-max", optarg, 0, &o->delay_max) != 0)
                return -1;
            break;
        case OPT_SETUP_BUDGET:
            if (bench_parse_seconds("alarms", "--setup-budget", optarg, 1, &o->setup_budget) != 0)
                return -1;
            break;
        case OPT_IDLE_TIMEOUT:
            if (bench_parse_seconds("alarms", "--idle-timeout", optarg, 0.1, &o->idle_timeout) != 0)
                return -1;
            break;
        case OPT_GRACE:
            if (bench_parse_seconds("alarms", "--grace", optarg, 1, &o->grace) != 0)
                return -1;
            break;
        case OPT_DURABILITY:
            if (strcmp(optarg, "normal") == 0) {
                o->durability = PARTY_DURABILITY_NORMAL;
            } else if (strcmp(optarg, "full") == 0) {
                o->durability = PARTY_DURABILITY_FULL;
            } else {
                fprintf(stderr, "alarms: --durability: 'normal' or 'full'\n");
                return -1;
            }
            break;
        case OPT_DATA_PARENT:
            o->data_parent = optarg;
            break;
        case OPT_SEED:
            if (bench_parse_long("alarms", "--seed", optarg, 0, INT32_MAX, &v) != 0)
                return -1;
            o->seed = (unsigned long)v;
            break;
        case OPT_HELP:
            return 1;
        default:
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "alarms: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->delay_max < o->delay_min) {
        fprintf(stderr, "alarms: --delay-max is below --delay-min\n");
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- the run ---- */

typedef struct results {
    double warmup_rate, setup_budget, setup_s, waiting_margin_s;
    long rss_before_kb, rss_setup_kb, rss_waiting_kb, rss_after_kb, hwm_setup_kb, hwm_kb;
    long heap_before_kb, heap_waiting_kb, fd_limit;
    long fds_before, created, answered, fired_before_setup_end, never_fired;
    int64_t t0_ms, setup_end_ms, first_due_ms, last_due_ms;
    int evicted_in_time, evicted_after, setup_failed;
} results;

/* Prints the results; returns whether the run is valid: every room created,
 * evicted before the first due time, and its alarm fired once, on time or
 * late, after the setup. */
static int report(const bench_options *o, const results *r, int32_t *sorted, size_t n_sorted) {
    long n_fired = atomic_load(&fired), n_early = atomic_load(&early);
    long n_dup = atomic_load(&duplicates), n_errors = atomic_load(&alarm_errors);
    long late_1s = 0;
    double per_alarm = (double)(r->rss_waiting_kb - r->rss_before_kb) * 1024.0 / (double)o->rooms;
    double heap_per_alarm =
        (double)(r->heap_waiting_kb - r->heap_before_kb) * 1024.0 / (double)o->rooms;
    double span = 0;
    int32_t p50, p99, p999, max;
    struct rusage ru;
    double user = 0, sys = 0;
    const char *durability = o->durability == PARTY_DURABILITY_NORMAL ? "normal" : "full";
    size_t i;
    int valid;

    /* The whole process: the runtime's threads and the client's. */
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        user = bench_timeval_s(ru.ru_utime);
        sys = bench_timeval_s(ru.ru_stime);
    }
    qsort(sorted, n_sorted, sizeof(*sorted), cmp_int32);
    for (i = 0; i < n_sorted; i++)
        if (sorted[i] > 1000)
            late_1s++;
    p50 = quantile(sorted, n_sorted, 0.50);
    p99 = quantile(sorted, n_sorted, 0.99);
    p999 = quantile(sorted, n_sorted, 0.999);
    max = n_sorted > 0 ? sorted[n_sorted - 1] : 0;
    if (n_fired > 0)
        span = (double)(atomic_load(&last_fire_ms) - atomic_load(&first_fire_ms)) / 1000.0;
    valid = !r->setup_failed && r->created == o->rooms && r->evicted_in_time &&
            r->fired_before_setup_end == 0 && r->never_fired == 0 && n_early == 0 && n_dup == 0 &&
            n_errors == 0 && atomic_load(&request_errors) == 0;

    printf("alarms: %ld rooms (durability %s for the setup), alarms %.0f..%.0f s past a %.0f s "
           "budget: setup %.1f s (%.0f rooms/s); RSS %ld kB before, %ld kB waiting with every room "
           "evicted: %.0f bytes per pending alarm (heap in use: %.0f); fired %ld of %ld over %.1f "
           "s, lateness p50 %d "
           "ms p99 %d ms p99.9 %d ms max %d ms, %ld later than 1 s, %ld never fired%s\n",
           o->rooms, durability, o->delay_min, o->delay_max, r->setup_budget, r->setup_s,
           r->setup_s > 0 ? (double)r->created / r->setup_s : 0, r->rss_before_kb,
           r->rss_waiting_kb, per_alarm, heap_per_alarm, n_fired, o->rooms, span, p50, p99, p999,
           max, late_1s, r->never_fired, valid ? "" : " (NOT VALID: see stderr)");
    printf("{\"tool\":\"alarms\",\"rooms\":%ld,\"durability\":\"%s\",\"conns\":%ld,"
           "\"inflight\":%ld,\"idle_timeout_s\":%g,\"delay_min_s\":%g,\"delay_max_s\":%g,"
           "\"setup_budget_s\":%.1f,\"warmup_rooms_per_s\":%.0f,\"setup_s\":%.2f,"
           "\"created\":%ld,\"rss_before_kb\":%ld,\"rss_setup_kb\":%ld,\"rss_peak_setup_kb\":%ld,"
           "\"rss_peak_kb\":%ld,\"rss_waiting_kb\":%ld,\"bytes_per_alarm\":%.1f,"
           "\"heap_before_kb\":%ld,"
           "\"heap_waiting_kb\":%ld,\"heap_bytes_per_alarm\":%.1f,\"rss_after_kb\":%ld,"
           "\"evicted_after_fire\":%s,\"margin_before_first_due_s\":%.1f,\"fired\":%ld,"
           "\"never_fired\":%ld,\"duplicates\":%ld,\"early\":%ld,\"fired_before_setup_end\":%ld,"
           "\"alarm_errors\":%ld,\"fire_span_s\":%.2f,\"p50_ms\":%d,\"p99_ms\":%d,\"p999_ms\":%d,"
           "\"max_ms\":%d,\"late_over_1s\":%ld,\"fds_peak_sampled\":%ld,\"fd_limit\":%ld,"
           "\"fds_exhausted\":%s,\"user_s\":%.2f,\"sys_s\":%.2f,\"seed\":%lu,\"valid\":%s}\n",
           o->rooms, durability, o->conns, o->inflight, o->idle_timeout, o->delay_min, o->delay_max,
           r->setup_budget, r->warmup_rate, r->setup_s, r->created, r->rss_before_kb,
           r->rss_setup_kb, r->hwm_setup_kb, r->hwm_kb, r->rss_waiting_kb, per_alarm,
           r->heap_before_kb, r->heap_waiting_kb, heap_per_alarm, r->rss_after_kb,
           r->evicted_after ? "true" : "false", r->waiting_margin_s, n_fired, r->never_fired, n_dup,
           n_early, r->fired_before_setup_end, n_errors, span, p50, p99, p999, max, late_1s,
           fds_peak, r->fd_limit, fds_exhausted ? "true" : "false", user, sys, o->seed,
           valid ? "true" : "false");
    fflush(stdout);
    if (r->created != o->rooms)
        fprintf(stderr, "alarms: only %ld of %ld rooms were created\n", r->created, o->rooms);
    if (!r->evicted_in_time)
        fprintf(stderr,
                "alarms: the rooms had not all left memory before the first alarm was "
                "due; RSS waiting is not the cost of evicted rooms (raise --setup-budget)\n");
    if (r->fired_before_setup_end > 0)
        fprintf(stderr, "alarms: alarms fired before every room was created (raise "
                        "--setup-budget)\n");
    if (r->never_fired > 0) {
        fprintf(stderr,
                "alarms: %ld alarms never fired (waited until none fired for %.0f s "
                "after the last due time, or the cap)\n",
                r->never_fired, o->grace);
        fprintf(stderr,
                "alarms: open descriptors: at most %ld seen (sampled every %.1f s), limit "
                "%ld%s; a room that cannot open its storage when its alarm fires is in "
                "partyd's log (\"cannot open its storage\")\n",
                fds_peak, FDS_EVERY_S, r->fd_limit,
                fds_exhausted ? ", all in use at a sample" : "");
    }
    if (n_early > 0)
        fprintf(stderr, "alarms: %ld alarms fired before they were due\n", n_early);
    if (n_dup > 0)
        fprintf(stderr, "alarms: %ld alarms fired more than once\n", n_dup);
    if (n_errors > 0)
        fprintf(stderr, "alarms: %ld alarms found their room without its name or 'due'\n",
                n_errors);
    if (atomic_load(&request_errors) > 0)
        fprintf(stderr, "alarms: %ld requests could not set their alarm\n",
                atomic_load(&request_errors));
    return valid;
}

int main(int argc, char **argv) {
    bench_options opt;
    results r;
    party_config cfg;
    party_runtime *rt;
    uv_thread_t thread;
    client cl;
    char data_dir[4096];
    int64_t *due;
    int32_t *sorted;
    uint64_t rng;
    double t, cap, stall_from, last_progress;
    long seen_fired;
    long i;
    size_t n_sorted = 0;
    int rc, status;

    rc = parse_args(argc, argv, &opt);
    if (rc > 0) {
        usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "(alarms --help lists the options)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    memset(&r, 0, sizeof(r));
    r.fd_limit = fds_limit = bench_raise_fd_limit();
    n_rooms = opt.rooms;

    /* Everything the bench itself needs is allocated and touched before
     * the baseline RSS, so the difference is the runtime's. */
    lateness_ms = malloc((size_t)opt.rooms * sizeof(*lateness_ms));
    fire_count = calloc((size_t)opt.rooms, sizeof(*fire_count));
    due = malloc((size_t)opt.rooms * sizeof(*due));
    sorted = malloc((size_t)opt.rooms * sizeof(*sorted));
    cl.conns = calloc((size_t)opt.conns, sizeof(*cl.conns));
    if (lateness_ms == NULL || fire_count == NULL || due == NULL || sorted == NULL ||
        cl.conns == NULL) {
        fprintf(stderr, "alarms: out of memory\n");
        status = 1;
        goto done;
    }
    for (i = 0; i < opt.rooms; i++) {
        lateness_ms[i] = NOT_FIRED;
        due[i] = 0;
        sorted[i] = 0;
    }
    memset(fire_count, 0, (size_t)opt.rooms);
    memset(cl.conns, 0, (size_t)opt.conns * sizeof(*cl.conns));
    cl.n_conns = opt.conns;
    cl.inflight = opt.inflight;

    snprintf(data_dir, sizeof(data_dir), "%s/alarms-data-XXXXXX", opt.data_parent);
    if (mkdtemp(data_dir) == NULL) {
        fprintf(stderr, "alarms: mkdtemp %s: %s\n", data_dir, strerror(errno));
        status = 1;
        goto done;
    }
    party_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.data_dir = data_dir;
    cfg.durability = opt.durability;
    cfg.idle_timeout = opt.idle_timeout;
    cfg.log_level = 1; /* warn */
    rt = party_runtime_new(&cfg);
    if (rt == NULL || party_runtime_add(rt, &bench_party) != 0 || party_runtime_listen(rt) != 0) {
        fprintf(stderr, "alarms: cannot start the runtime\n");
        party_runtime_free(rt);
        status = 1;
        goto remove_data;
    }
    memset(&cl.addr, 0, sizeof(cl.addr));
    cl.addr.sin_family = AF_INET;
    cl.addr.sin_port = htons((uint16_t)party_runtime_port(rt));
    cl.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (uv_thread_create(&thread, runtime_thread, rt) != 0) {
        fprintf(stderr, "alarms: cannot start the runtime thread\n");
        party_runtime_free(rt);
        status = 1;
        goto remove_data;
    }
    fprintf(stderr, "alarms: runtime on 127.0.0.1:%d, data in %s, durability %s\n",
            party_runtime_port(rt), data_dir,
            opt.durability == PARTY_DURABILITY_NORMAL ? "normal" : "full");

    /* Warm-up: rooms without alarms start the worker threads, SQLite and
     * the allocator's arenas, and tell how fast rooms are made here. The
     * descriptors counted once the runtime answers are its own. */
    if (probe(&cl.addr) != 0) {
        fprintf(stderr, "alarms: the runtime does not answer\n");
        r.setup_failed = 1;
        goto stop;
    }
    sleep_s(0.2);
    r.fds_before = open_fds();
    t = bench_now_s();
    if (client_run(&cl, opt.warmup_rooms, 'w', NULL, BENCH_MAX_SECONDS) != 0) {
        r.setup_failed = 1;
        goto stop;
    }
    r.warmup_rate = (double)opt.warmup_rooms / (bench_now_s() - t);
    if (wait_evicted(opt.idle_timeout, 0, EVICT_TIMEOUT_S) != 0) {
        fprintf(stderr, "alarms: the warm-up rooms did not leave memory\n");
        r.setup_failed = 1;
        goto stop;
    }
    r.rss_before_kb = proc_status_kb("VmRSS");
    r.heap_before_kb = heap_in_use_kb();

    r.setup_budget = opt.setup_budget;
    if (r.setup_budget == 0) {
        r.setup_budget =
            SETUP_BUDGET_FACTOR * (double)opt.rooms / r.warmup_rate + 2 * opt.idle_timeout + 3;
        if (r.setup_budget < MIN_SETUP_BUDGET_S)
            r.setup_budget = MIN_SETUP_BUDGET_S;
        r.setup_budget = (double)(long)(r.setup_budget + 0.999);
    }
    rng = ((uint64_t)opt.seed << 1) | 1;
    r.t0_ms = epoch_ms();
    r.first_due_ms = INT64_MAX;
    r.last_due_ms = 0;
    for (i = 0; i < opt.rooms; i++) {
        int64_t span_ms = (int64_t)((opt.delay_max - opt.delay_min) * 1000);
        due[i] = r.t0_ms + (int64_t)((r.setup_budget + opt.delay_min) * 1000) +
                 (span_ms > 0 ? (int64_t)(bench_rng_next(&rng) % (uint64_t)(span_ms + 1)) : 0);
        if (due[i] < r.first_due_ms)
            r.first_due_ms = due[i];
        if (due[i] > r.last_due_ms)
            r.last_due_ms = due[i];
    }
    fprintf(
        stderr,
        "alarms: warm-up %ld rooms at %.0f/s; setup budget %.0f s; alarms due in %.1f..%.1f s\n",
        opt.warmup_rooms, r.warmup_rate, r.setup_budget, (double)(r.first_due_ms - r.t0_ms) / 1000,
        (double)(r.last_due_ms - r.t0_ms) / 1000);

    t = bench_now_s();
    rc = client_run(&cl, opt.rooms, 'a', due, r.setup_budget + opt.delay_max + opt.grace);
    r.setup_s = bench_now_s() - t;
    r.setup_end_ms = epoch_ms();
    r.created = cl.created;
    r.answered = cl.answered;
    r.rss_setup_kb = proc_status_kb("VmRSS");
    if (rc != 0)
        r.setup_failed = 1;
    fprintf(stderr, "alarms: %ld rooms created in %.1f s; waiting for them to leave memory\n",
            r.created, r.setup_s);
    if (atomic_load(&first_fire_ms) != 0 && atomic_load(&first_fire_ms) < r.setup_end_ms)
        r.fired_before_setup_end = atomic_load(&fired);

    /* Every room out of memory: what is left is the alarm index. */
    if (wait_evicted(opt.idle_timeout, 2 * opt.idle_timeout + 1,
                     (double)(r.first_due_ms - epoch_ms()) / 1000) == 0) {
        r.rss_waiting_kb = proc_status_kb("VmRSS");
        r.heap_waiting_kb = heap_in_use_kb();
        r.hwm_setup_kb = proc_status_kb("VmHWM");
        r.waiting_margin_s = (double)(r.first_due_ms - epoch_ms()) / 1000;
        r.evicted_in_time = r.waiting_margin_s > 0 && atomic_load(&fired) == 0;
    } else {
        r.rss_waiting_kb = proc_status_kb("VmRSS");
        r.heap_waiting_kb = heap_in_use_kb();
        r.hwm_setup_kb = proc_status_kb("VmHWM");
    }
    fprintf(stderr,
            "alarms: RSS %ld kB before, %ld kB waiting (%.1f s before the first due time)\n",
            r.rss_before_kb, r.rss_waiting_kb, r.waiting_margin_s);

    /* The alarms fire. Waking a cold room costs storage work, so they may
     * come well after the last due time: wait while they keep coming (one
     * at least every grace seconds), up to a cap. */
    t = bench_now_s() + (double)(r.last_due_ms - epoch_ms()) / 1000;
    cap = t + opt.grace + FIRE_CAP_FACTOR * (double)opt.rooms / r.warmup_rate;
    stall_from = t;
    seen_fired = 0;
    last_progress = bench_now_s();
    while (atomic_load(&fired) < r.created && bench_now_s() < cap &&
           bench_now_s() - stall_from < opt.grace) {
        sleep_s(0.05);
        fds_sample();
        if (atomic_load(&fired) != seen_fired) {
            seen_fired = atomic_load(&fired);
            if (bench_now_s() > stall_from)
                stall_from = bench_now_s();
        }
        if (bench_now_s() - last_progress >= PROGRESS_EVERY_S) {
            fprintf(stderr, "alarms: %ld of %ld alarms fired\n", atomic_load(&fired), r.created);
            last_progress = bench_now_s();
        }
    }
    /* And the rooms they woke leave memory again. */
    r.evicted_after = wait_evicted(opt.idle_timeout, 0, 30) == 0;
    r.rss_after_kb = proc_status_kb("VmRSS");
    r.hwm_kb = proc_status_kb("VmHWM");

stop:
    party_runtime_stop(rt);
    uv_thread_join(&thread);
    party_runtime_free(rt);
    if (r.setup_failed)
        fprintf(stderr, "alarms: setup failed\n");
    for (i = 0; i < opt.rooms; i++)
        if (lateness_ms[i] != NOT_FIRED)
            sorted[n_sorted++] = lateness_ms[i];
    if (r.created > (long)n_sorted)
        r.never_fired = r.created - (long)n_sorted;
    status = report(&opt, &r, sorted, n_sorted) ? 0 : 1;
remove_data:
    if (nftw(data_dir, remove_entry, 64, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "alarms: could not remove %s: %s\n", data_dir, strerror(errno));
done:
    free(lateness_ms);
    free(fire_count);
    free(due);
    free(sorted);
    free(cl.conns);
    return status;
}
