/* common: option parsing, clock, random numbers, descriptor limits,
 * loopback sockets and response heads for the bench tools (see common.h). */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int bench_parse_long(const char *prog, const char *flag, const char *text, long min, long max,
                     long *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "%s: %s: '%s' is not a number in [%ld, %ld]\n", prog, flag, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int bench_parse_seconds(const char *prog, const char *flag, const char *text, double min,
                        double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v >= min) || v > BENCH_MAX_SECONDS) {
        fprintf(stderr, "%s: %s: '%s' is not a number of seconds in [%g, %g]\n", prog, flag, text,
                min, BENCH_MAX_SECONDS);
        return -1;
    }
    *out = v;
    return 0;
}

uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_now_s(void) {
    return (double)bench_now_ns() / 1e9;
}

double bench_timeval_s(struct timeval tv) {
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

uint64_t bench_rng_next(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

long bench_raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max;
        /* An infinite hard limit is more than the kernel grants (nr_open):
         * then settle for what nr_open allows, found by halving. */
        while (setrlimit(RLIMIT_NOFILE, &want) != 0 && want.rlim_cur / 2 > rl.rlim_cur)
            want.rlim_cur /= 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)INT32_MAX ? INT32_MAX
                                                                           : (long)rl.rlim_cur;
}

int bench_loopback_addr(const char *prog, const char *flag, const char *host, int port,
                        struct sockaddr_in *addr) {
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1 ||
        (ntohl(addr->sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "%s: %s %s: only 127.x.x.x addresses are allowed\n", prog, flag, host);
        return -1;
    }
    return 0;
}

int bench_tcp_connect(const struct sockaddr_in *to, const struct sockaddr_in *from) {
    int one = 1, err;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (from != NULL) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)from, sizeof(*from)) != 0)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

size_t bench_http_head_len(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    return end != NULL ? (size_t)(end - buf) + 4 : 0;
}

int bench_http_status(const char *head, size_t len) {
    int status = 0, i;
    if (len < 12 || strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
        return -1;
    for (i = 9; i < 12; i++) {
        if (head[i] < '0' || head[i] > '9')
            return -1;
        status = status * 10 + (head[i] - '0');
    }
    return status;
}

const char *bench_http_header(const char *head, size_t len, const char *name, size_t *value_len) {
    size_t name_len = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p != NULL && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *v = line + name_len + 1, *v_end = eol;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                v++;
            while (v_end > v && (v_end[-1] == '\r' || v_end[-1] == ' ' || v_end[-1] == '\t'))
                v_end--;
            *value_len = (size_t)(v_end - v);
            return v;
        }
        p = eol;
    }
    *value_len = 0;
    return NULL;
}
