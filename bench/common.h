/* common: what the bench tools share: option parsing, the clock, a cheap
 * random generator, descriptor limits, loopback sockets (with a source
 * address chosen per socket) and just enough HTTP/1.1 to read a response
 * head. Plain functions with no state of their own. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define BENCH_MAX_SECONDS 3600.0

/* Parses a whole decimal number in [min, max] into *out. 0, or -1 after
 * saying on stderr, prefixed with prog, what is wrong. */
int bench_parse_long(const char *prog, const char *flag, const char *text, long min, long max,
                     long *out);
/* Parses seconds in [min, BENCH_MAX_SECONDS]. 0, or -1 (said why). */
int bench_parse_seconds(const char *prog, const char *flag, const char *text, double min,
                        double *out);

/* Monotonic clock. */
uint64_t bench_now_ns(void);
double bench_now_s(void);
/* A struct timeval (e.g. getrusage's CPU times) in seconds. */
double bench_timeval_s(struct timeval tv);

/* xorshift64*: masks keys and spreads due times; *state must not be 0. */
uint64_t bench_rng_next(uint64_t *state);

/* Raises the soft limit on open descriptors as far as the hard limit
 * allows. The soft limit now in force, or -1. */
long bench_raise_fd_limit(void);

/* Fills addr with host:port if host is a 127.x.x.x address: the tools
 * measure our own machine, never someone else's. 0, or -1 (said why). */
int bench_loopback_addr(const char *prog, const char *flag, const char *host, int port,
                        struct sockaddr_in *addr);

/* A non-blocking TCP socket (TCP_NODELAY) connecting to `to`, from `from`
 * when not NULL (its port left to connect(), so each source address has
 * the whole ephemeral range towards each destination). The descriptor,
 * with the connection under way or made; or -1 with errno set
 * (EADDRNOTAVAIL: no local port left for this source and destination). */
int bench_tcp_connect(const struct sockaddr_in *to, const struct sockaddr_in *from);

/* The length of the response head at the start of buf (through the blank
 * line), or 0 if it is not whole yet. */
size_t bench_http_head_len(const char *buf, size_t len);
/* The status code of a response head ("HTTP/1.1 101 ..."), or -1. */
int bench_http_status(const char *head, size_t len);
/* The value of header name (case-insensitive) in a response head, spaces
 * trimmed, with its length in *value_len; NULL if absent. */
const char *bench_http_header(const char *head, size_t len, const char *name, size_t *value_len);

#endif
