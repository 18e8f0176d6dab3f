/* wsbench: a WebSocket load generator for partyd. One process, one epoll
 * loop, non-blocking sockets to 127.0.0.1 only. The common part opens the
 * connections, frames messages with the codec in src/ws.h, keeps time
 * (connect, warm-up, measure, drain, close) and records latencies in a
 * bounded histogram; a mode decides what a connection sends and what a
 * message it receives means. Prints one human line and one JSON line.
 *
 * Modes: counter, echo (request-response: W messages in flight per
 * connection, each reply answered by the next message); broadcast (one
 * sender per room, the room's other connections receive: W messages in
 * flight, a message leaving the window once every receiver has it); idle
 * (opens the connections, holds them open without a word, answering pings,
 * then closes them: for measuring what an idle connection costs the
 * server); connect (C connections at a time, each opened, upgraded and
 * closed, then the next). Every connection carries its own id
 * (?_pk=<uuid>), as partysocket does. Nothing here depends on the server
 * beyond the URL scheme /parties/<party>/<room> and what the party does
 * with a message, so the same runs compare partyd with other servers. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common.h"
#include "ws.h"

#define MAX_CONNS 200000
#define MAX_ROOMS 1000000
#define MAX_INFLIGHT 4096
#define MAX_SIZE (16u * 1024 * 1024)
#define MAX_SOURCES 250          /* source addresses 127.0.0.x tried in turn */
#define CONNECT_WINDOW 256       /* handshakes under way at once */
#define HANDSHAKE_MAX 8192       /* bytes of the server's 101 answer */
#define DRAIN_SECONDS 5.0        /* wait for replies still in flight */
#define CLOSE_SECONDS 2.0        /* wait for the server's Close answers */
#define READ_CHUNK (256u * 1024) /* one read() */
#define EVENTS_PER_WAIT 256

/* ---- options ---- */

typedef struct bench_options {
    const char *mode;
    const char *host;
    int port;
    const char *party;  /* NULL: the mode's own */
    const char *source; /* first local address to connect from; NULL: the kernel's choice */
    long max_sources;   /* source addresses to move through as local ports run out */
    const char *room_prefix;
    long rooms, conns, inflight;
    int grouped; /* connection k to room k*R/C, not k mod R */
    size_t size;
    double duration, warmup, connect_timeout;
} bench_options;

/* ---- latency histogram: log-linear (64 buckets per power of two, so a
 * value is known within 1.6%), fixed size ---- */

#define HIST_SUB_BITS 7
#define HIST_HALF (1u << (HIST_SUB_BITS - 1))
#define HIST_BUCKETS ((1u << HIST_SUB_BITS) + (64 - HIST_SUB_BITS) * HIST_HALF)

typedef struct histogram {
    uint64_t count[HIST_BUCKETS];
    uint64_t total, max;
} histogram;

static unsigned hist_index(uint64_t v) {
    unsigned msb, shift;
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - (HIST_SUB_BITS - 1);
    return (1u << HIST_SUB_BITS) + (shift - 1) * HIST_HALF + (unsigned)((v >> shift) - HIST_HALF);
}

/* The highest value that falls in bucket i (reported values never flatter). */
static uint64_t hist_bucket_top(unsigned i) {
    unsigned shift, top;
    if (i < (1u << HIST_SUB_BITS))
        return i;
    shift = (i - (1u << HIST_SUB_BITS)) / HIST_HALF + 1;
    top = (i - (1u << HIST_SUB_BITS)) % HIST_HALF + HIST_HALF;
    return (((uint64_t)top + 1) << shift) - 1;
}

static void hist_add(histogram *h, uint64_t v) {
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

/* The value at quantile q (0..1): the smallest bucket holding it. */
static uint64_t hist_quantile(const histogram *h, double q) {
    uint64_t rank, seen = 0;
    unsigned i;
    if (h->total == 0)
        return 0;
    rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0)
        rank = 1;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return hist_bucket_top(i) < h->max ? hist_bucket_top(i) : h->max;
    }
    return h->max;
}

/* The latency summary every report prints, in microseconds (the
 * histogram holds nanoseconds). */
typedef struct latency_us {
    double p50, p99, p999, max;
} latency_us;

static latency_us hist_summary(const histogram *h) {
    latency_us l;
    l.p50 = (double)hist_quantile(h, 0.50) / 1e3;
    l.p99 = (double)hist_quantile(h, 0.99) / 1e3;
    l.p999 = (double)hist_quantile(h, 0.999) / 1e3;
    l.max = (double)h->max / 1e3;
    return l;
}

/* ---- the run ---- */

typedef enum phase {
    PHASE_CONNECT, /* connections opening; those open already send */
    PHASE_WARMUP,  /* all open; replies not counted yet */
    PHASE_MEASURE, /* replies counted */
    PHASE_DRAIN,   /* nothing new sent; waiting for replies in flight */
    PHASE_CLOSE,   /* Close sent; waiting for the server's */
    PHASE_DONE,
} phase;

typedef enum conn_state {
    CONN_IDLE, /* not started yet */
    CONN_CONNECTING,
    CONN_HANDSHAKE, /* request sent, reading the 101 */
    CONN_OPEN,
    CONN_CLOSING, /* our Close sent */
    CONN_DONE,
} conn_state;

typedef struct bench bench;

typedef struct bconn {
    int fd;
    long index, room;
    conn_state state;
    char key[32]; /* Sec-WebSocket-Key */
    char pk[37];  /* the connection id sent as _pk, UUID v4 form */
    char *head;   /* handshake answer so far (CONN_HANDSHAKE only) */
    size_t head_len;
    char *out; /* bytes not written yet */
    size_t out_len, out_off, out_cap;
    int polling_out; /* EPOLLOUT requested */
    int feeding;     /* inside party__ws_reader_feed: the reader is in use */
    party__ws_reader reader;
    uint64_t *sent_at; /* send times of the messages in flight, oldest first */
    uint32_t ring_head, ring_len;
    uint64_t next_seq, reply_seq; /* broadcast receiver: reply_seq is the next expected */
    uint64_t received;            /* broadcast receiver: messages received */
    uint64_t t_start;             /* when connect() was called */
    uint64_t t_close_seen;        /* connect: when the server's Close came; 0: not yet */
    long long last_value;
} bconn;

/* broadcast: a room's sender and its window. got[seq % W] counts the
 * receivers that have message seq, for base <= seq < next_seq. */
typedef struct broom {
    long sender;    /* index of the sending connection */
    long receivers; /* open receivers */
    uint64_t next_seq, base;
    uint32_t *got;
    int stopped; /* the sender is gone */
} broom;

/* A mode: what is sent when a connection opens and when a message comes. */
typedef struct bench_mode {
    const char *name;
    const char *default_party;
    const char *summary; /* for --help */
    void (*on_open)(bench *b, bconn *c);
    void (*on_message)(bench *b, bconn *c, const party__ws_event *ev);
    /* Request-response modes: 0 if payload is the right reply to message
     * seq on c, else -1 with *why set. */
    int (*check_reply)(bench *b, bconn *c, uint64_t seq, party__slice payload, const char **why);
    /* Prints the summary line and the JSON line. */
    void (*report)(const bench *b);
    /* 1: a connection that fails to open is counted and the others go on;
     * once every connection is open or failed, the open ones are held for
     * --duration (no warm-up). 0: a failure to open ends the run. */
    int hold;
    /* 1: connections open and close all the time (connect): the run does
     * not wait for all to be open; a slot whose connection closed cleanly
     * opens the next one. */
    int cycle;
    /* Optional: every connection is open (non-hold modes). */
    void (*on_all_open)(bench *b);
    /* Optional: c, open until now, is closing for good (not yet closed). */
    void (*on_conn_gone)(bench *b, bconn *c);
    /* Optional: the drain is over; count what never came. */
    void (*on_drained)(bench *b);
} bench_mode;

struct bench {
    const bench_options *opt;
    const bench_mode *mode;
    const char *party;
    struct sockaddr_in addr;
    int epfd;
    bconn *conns;
    long next_to_start, n_connecting, n_open, n_finished;
    long n_failed;  /* finished without ever opening */
    long n_dropped; /* open, then ended by the server or an error before our Close */
    phase phase;
    uint64_t t_begin, t_all_open, t_measure, t_measure_end, t_phase_deadline;
    uint64_t t_last_open; /* when the last connection opened */
    histogram hist;
    uint64_t msgs_measured, msgs_total, in_flight, errors, unanswered;
    uint64_t pings; /* received (and answered) */
    long n_opened;  /* connections that completed their handshake */
    char *payload;  /* the fixed part of every message, opt->size bytes */
    uint64_t rng;
    char *read_buf;
    /* source addresses: source_index 0 is --source (or the kernel's
     * choice), k is that address + k */
    struct sockaddr_in source_base;
    int have_source;
    long source_index;
    /* broadcast */
    broom *brooms;
    uint64_t sent_total, sent_measured, lost, out_of_order, to_sender;
    /* connect: slots whose connection closed, to open again */
    long *restart;
    long n_restart;
    uint64_t cycles, handshakes_measured;
    uint64_t t_last_sweep;
};

static uint64_t seconds_ns(double s) {
    return (uint64_t)(s * 1e9);
}

/* xorshift64*: mask keys. RFC 6455 wants them unpredictable to
 * intermediaries; on loopback, against our own server, this suffices. */
static uint32_t rng_next(bench *b) {
    return (uint32_t)(bench_rng_next(&b->rng) >> 32);
}

static void conn_error(bench *b, bconn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_close(bench *b, bconn *c);

/* ---- output ---- */

static int out_reserve(bconn *c, size_t more) {
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *grown;
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        while (cap < c->out_len + more)
            cap *= 2;
        if (cap > c->out_cap) {
            grown = realloc(c->out, cap);
            if (grown == NULL)
                return -1;
            c->out = grown;
            c->out_cap = cap;
        }
    }
    return 0;
}

static void set_events(bench *b, bconn *c, int want_out) {
    struct epoll_event ev;
    if (want_out == c->polling_out)
        return;
    ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->polling_out = want_out;
}

/* Writes what the connection has queued; asks for EPOLLOUT if some stays. */
static void conn_flush(bench *b, bconn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(b, c, 1);
            return;
        }
        conn_error(b, c, "send: %s", strerror(errno));
        return;
    }
    c->out_off = c->out_len = 0;
    set_events(b, c, 0);
}

/* Appends the header of a masked frame with len payload bytes to c's
 * output and returns where the payload goes; the caller writes it there,
 * then masks it with party__ws_mask(payload, len, key, 0). NULL (and the
 * connection closed) on OOM. */
static char *frame_append(bench *b, bconn *c, int opcode, size_t len, uint8_t key[4]) {
    uint32_t key32 = rng_next(b);
    size_t header;

    memcpy(key, &key32, 4);
    if (out_reserve(c, len + 14) != 0) {
        conn_error(b, c, "out of memory");
        return NULL;
    }
    header = party__ws_header_write(c->out + c->out_len, opcode, 1, len, key);
    c->out_len += header + len;
    return c->out + c->out_len - len;
}

/* Queues one frame (written at the next flush). */
static int queue_frame(bench *b, bconn *c, int opcode, const void *data, size_t len) {
    uint8_t key[4];
    char *payload = frame_append(b, c, opcode, len, key);
    if (payload == NULL)
        return -1;
    if (len > 0)
        memcpy(payload, data, len);
    party__ws_mask(payload, len, key, 0);
    return 0;
}

/* ---- request-response modes (counter, echo) ---- */

/* Message seq: the payload with seq written at its start (as 16 hex
 * digits when it fits), so an echo can be matched to what was sent. */
static void rr_payload(bench *b, uint64_t seq, char *out) {
    size_t size = b->opt->size;
    memcpy(out, b->payload, size);
    if (size >= 16) {
        char hex[17];
        snprintf(hex, sizeof(hex), "%016" PRIx64, seq);
        memcpy(out, hex, 16);
    }
}

static void rr_send(bench *b, bconn *c) {
    size_t size = b->opt->size;
    uint8_t key[4];
    char *payload = frame_append(b, c, PARTY__WS_TEXT, size, key);

    if (payload == NULL)
        return;
    rr_payload(b, c->next_seq, payload);
    party__ws_mask(payload, size, key, 0);
    c->sent_at[(c->ring_head + c->ring_len) % (uint32_t)b->opt->inflight] = bench_now_ns();
    c->ring_len++;
    c->next_seq++;
    b->in_flight++;
}

static int sending(const bench *b) {
    return b->phase < PHASE_DRAIN;
}

static void rr_open(bench *b, bconn *c) {
    long i;
    for (i = 0; i < b->opt->inflight && sending(b); i++)
        rr_send(b, c);
}

static void rr_message(bench *b, bconn *c, const party__ws_event *ev) {
    uint64_t now = bench_now_ns(), sent;
    const char *why = NULL;

    if (c->ring_len == 0) {
        conn_error(b, c, "a message that answers nothing (%zu bytes)", ev->data.len);
        return;
    }
    sent = c->sent_at[c->ring_head];
    c->ring_head = (c->ring_head + 1) % (uint32_t)b->opt->inflight;
    c->ring_len--;
    b->in_flight--;
    if (b->mode->check_reply(b, c, c->reply_seq, ev->data, &why) != 0) {
        conn_error(b, c, "reply %" PRIu64 ": %s", c->reply_seq, why);
        return;
    }
    c->reply_seq++;
    b->msgs_total++;
    if (b->phase == PHASE_MEASURE) {
        b->msgs_measured++;
        hist_add(&b->hist, now - sent);
    }
    if (sending(b))
        rr_send(b, c);
}

/* counter: each reply is the room's new count, so on one connection the
 * values only grow. */
static int counter_check(bench *b, bconn *c, uint64_t seq, party__slice payload, const char **why) {
    long long v = 0;
    size_t i;
    (void)b;
    (void)seq;
    if (payload.len == 0 || payload.len > 18) {
        *why = "not a count";
        return -1;
    }
    for (i = 0; i < payload.len; i++) {
        if (payload.ptr[i] < '0' || payload.ptr[i] > '9') {
            *why = "not a count";
            return -1;
        }
        v = v * 10 + (payload.ptr[i] - '0');
    }
    if (v <= c->last_value) {
        *why = "the count went backwards";
        return -1;
    }
    c->last_value = v;
    return 0;
}

/* echo: the same bytes back. */
static int echo_check(bench *b, bconn *c, uint64_t seq, party__slice payload, const char **why) {
    char expected[32];
    (void)c;
    if (payload.len != b->opt->size) {
        *why = "echo of a different size";
        return -1;
    }
    if (b->opt->size >= 16) {
        snprintf(expected, sizeof(expected), "%016" PRIx64, seq);
        if (memcmp(payload.ptr, expected, 16) != 0) {
            *why = "echo of another message (out of order?)";
            return -1;
        }
    }
    if (memcmp(payload.ptr + (b->opt->size >= 16 ? 16 : 0),
               b->payload + (b->opt->size >= 16 ? 16 : 0),
               b->opt->size - (b->opt->size >= 16 ? 16 : 0)) != 0) {
        *why = "echo with different bytes";
        return -1;
    }
    return 0;
}

/* ---- idle ---- */

/* idle: nothing is sent. What the server sends (a greeting from the party,
 * say) is counted and otherwise ignored. */
static void idle_open(bench *b, bconn *c) {
    (void)b;
    (void)c;
}

static void idle_message(bench *b, bconn *c, const party__ws_event *ev) {
    (void)c;
    (void)ev;
    b->msgs_total++;
}

/* ---- broadcast ---- */

/* Message seq of a room: 16 hex digits of seq, 16 of the send time (ns,
 * this process's monotonic clock), then the fixed payload. */
#define BCAST_HEADER 32

static int hex16(const char *p, uint64_t *out) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < 16; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (uint64_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (uint64_t)(ch - 'a' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Sends as many messages as the room's window allows, in one write. */
static void bcast_fill(bench *b, broom *r) {
    bconn *c = &b->conns[r->sender];
    size_t size = b->opt->size;
    int queued = 0;

    while (!r->stopped && sending(b) && r->next_seq - r->base < (uint64_t)b->opt->inflight &&
           c->state == CONN_OPEN) {
        uint8_t key[4];
        char head[BCAST_HEADER + 1];
        char *payload = frame_append(b, c, PARTY__WS_TEXT, size, key);
        if (payload == NULL)
            return;
        snprintf(head, sizeof(head), "%016" PRIx64 "%016" PRIx64, r->next_seq, bench_now_ns());
        memcpy(payload, head, BCAST_HEADER);
        memcpy(payload + BCAST_HEADER, b->payload + BCAST_HEADER, size - BCAST_HEADER);
        party__ws_mask(payload, size, key, 0);
        r->got[r->next_seq % (uint64_t)b->opt->inflight] = 0;
        r->next_seq++;
        b->in_flight++;
        b->sent_total++;
        if (b->phase == PHASE_MEASURE)
            b->sent_measured++;
        queued = 1;
    }
    if (queued)
        conn_flush(b, c);
}

/* Moves the window past the messages every receiver has; refills it. */
static void bcast_advance(bench *b, broom *r) {
    uint64_t w = (uint64_t)b->opt->inflight;
    int moved = 0;
    while (r->base < r->next_seq && r->got[r->base % w] >= (uint32_t)r->receivers) {
        r->base++;
        b->in_flight--;
        moved = 1;
    }
    if (moved)
        bcast_fill(b, r);
}

static void bcast_open(bench *b, bconn *c) {
    (void)b;
    (void)c;
}

/* Every connection is open: the senders start. */
static void bcast_all_open(bench *b) {
    long i;
    for (i = 0; i < b->opt->rooms; i++)
        bcast_fill(b, &b->brooms[i]);
}

static void bcast_message(bench *b, bconn *c, const party__ws_event *ev) {
    broom *r = &b->brooms[c->room];
    uint64_t seq, sent, now = bench_now_ns();

    b->msgs_total++;
    if (c->index == r->sender) {
        b->to_sender++; /* a party that echoes to the sender too: not counted */
        return;
    }
    if (ev->data.len != b->opt->size || hex16(ev->data.ptr, &seq) != 0 ||
        hex16(ev->data.ptr + 16, &sent) != 0) {
        conn_error(b, c, "not a message of this run (%zu bytes)", ev->data.len);
        return;
    }
    if (seq >= r->next_seq) {
        conn_error(b, c, "message %" PRIu64 " was never sent", seq);
        return;
    }
    if (seq == c->reply_seq) {
        c->reply_seq++;
    } else {
        b->out_of_order++; /* a gap (later, maybe lost) or one behind */
        if (seq > c->reply_seq)
            c->reply_seq = seq + 1;
    }
    c->received++;
    if (b->phase == PHASE_MEASURE) {
        b->msgs_measured++;
        hist_add(&b->hist, now > sent ? now - sent : 0);
    }
    if (seq >= r->base) {
        r->got[seq % (uint64_t)b->opt->inflight]++;
        bcast_advance(b, r);
    }
}

/* A receiver that goes no longer holds the window; a sender that goes
 * ends its room's messages. */
static void bcast_gone(bench *b, bconn *c) {
    broom *r = &b->brooms[c->room];
    if (c->index == r->sender) {
        r->stopped = 1;
        b->in_flight -= r->next_seq - r->base;
        r->base = r->next_seq;
        return;
    }
    r->receivers--;
    bcast_advance(b, r);
}

/* What each receiver still open never got of what its room sent. */
static void bcast_drained(bench *b) {
    long i;
    for (i = 0; i < b->opt->conns; i++) {
        bconn *c = &b->conns[i];
        broom *r = &b->brooms[c->room];
        if (c->index != r->sender && c->state == CONN_OPEN && c->received < r->next_seq)
            b->lost += r->next_seq - c->received;
    }
}

/* ---- connect ---- */

/* connect: the handshake is what is measured; the connection closes at
 * once (Close frame, then waiting for the server's Close and its end of
 * the TCP connection, so that the server, not us, holds TIME_WAIT, as
 * RFC 6455 has it). */
static void connect_open(bench *b, bconn *c) {
    static const char bye[2] = {(char)(1000 >> 8), (char)(1000 & 0xFF)};
    uint64_t now = bench_now_ns();
    if (b->phase == PHASE_MEASURE) {
        b->handshakes_measured++;
        hist_add(&b->hist, now - c->t_start);
    }
    if (queue_frame(b, c, PARTY__WS_CLOSE, bye, sizeof(bye)) != 0)
        return;
    c->state = CONN_CLOSING;
}

static void connect_message(bench *b, bconn *c, const party__ws_event *ev) {
    (void)c;
    (void)ev;
    b->msgs_total++;
}

static void rr_report(const bench *b);
static void idle_report(const bench *b);
static void bcast_report(const bench *b);
static void connect_report(const bench *b);

static const bench_mode modes[] = {
    {"counter", "counter", "request-response on the durable counter (each reply after commit)",
     rr_open, rr_message, counter_check, rr_report, 0, 0, NULL, NULL, NULL},
    {"echo", "echo", "request-response on the echo party (no storage)", rr_open, rr_message,
     echo_check, rr_report, 0, 0, NULL, NULL, NULL},
    {"broadcast", "chat",
     "one sender per room, W messages in flight, to the room's C/R-1 others (chat party)",
     bcast_open, bcast_message, NULL, bcast_report, 0, 0, bcast_all_open, bcast_gone,
     bcast_drained},
    {"idle", "echo", "opens C connections, holds them open without sending for D seconds",
     idle_open, idle_message, NULL, idle_report, 1, 0, NULL, NULL, NULL},
    {"connect", "echo", "C at a time: open, upgrade, close, open the next (handshakes/s)",
     connect_open, connect_message, NULL, connect_report, 0, 1, NULL, NULL, NULL},
};

/* ---- connections ---- */

static void conn_error(bench *b, bconn *c, const char *fmt, ...) {
    va_list ap;
    if (c->state == CONN_DONE)
        return;
    b->errors++;
    if (b->errors <= 10) {
        fprintf(stderr, "wsbench: conn %ld (room %ld): ", c->index, c->room);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    conn_close(b, c);
}

static void conn_close(bench *b, bconn *c) {
    if (c->state == CONN_DONE)
        return;
    if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE) {
        b->n_connecting--;
        b->n_failed++;
    } else if (c->state == CONN_IDLE) {
        b->n_failed++;
    } else if (c->state == CONN_OPEN || c->state == CONN_CLOSING) {
        b->n_open--;
        if (c->state == CONN_OPEN && b->phase < PHASE_CLOSE)
            b->n_dropped++;
        if (b->mode->on_conn_gone != NULL && b->phase < PHASE_CLOSE)
            b->mode->on_conn_gone(b, c);
        /* connect: a clean close frees the slot for the next connection */
        if (b->mode->cycle && c->state == CONN_CLOSING) {
            b->cycles++;
            if (sending(b))
                b->restart[b->n_restart++] = c->index;
        }
    }
    b->in_flight -= c->ring_len;
    if (b->phase <= PHASE_DRAIN)
        b->unanswered += c->ring_len;
    c->ring_len = 0;
    if (c->fd >= 0) {
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CONN_DONE;
    b->n_finished++;
    free(c->head);
    c->head = NULL;
    c->head_len = 0;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
    if (!c->feeding)
        party__ws_reader_reset(&c->reader); /* else conn_feed does, after */
}

/* 16 random bytes as a UUID v4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"),
 * the form partysocket gives its connection ids. */
static void uuid_format(unsigned char raw[16], char out[37]) {
    static const char hex[] = "0123456789abcdef";
    size_t i, j = 0;
    raw[6] = (unsigned char)((raw[6] & 0x0F) | 0x40);
    raw[8] = (unsigned char)((raw[8] & 0x3F) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[raw[i] >> 4];
        out[j++] = hex[raw[i] & 0x0F];
    }
    out[j] = '\0';
}

/* The source address to connect from now; NULL: the kernel's choice. */
static const struct sockaddr_in *source_now(bench *b, struct sockaddr_in *buf) {
    if (b->source_index == 0 && !b->have_source)
        return NULL;
    *buf = b->source_base;
    buf->sin_addr.s_addr = htonl(ntohl(b->source_base.sin_addr.s_addr) + (uint32_t)b->source_index);
    return buf;
}

/* Moves to the next source address (no local port left on this one
 * towards the server). 0, or -1 if --max-sources are used up. */
static int source_next(bench *b) {
    struct sockaddr_in from;
    char text[INET_ADDRSTRLEN];
    if (b->source_index + 1 >= b->opt->max_sources ||
        (ntohl(b->source_base.sin_addr.s_addr) & 0xFF) + (uint32_t)b->source_index + 1 > 254)
        return -1;
    b->source_index++;
    source_now(b, &from);
    inet_ntop(AF_INET, &from.sin_addr, text, sizeof(text));
    fprintf(stderr, "wsbench: no local port left; connecting from %s now\n", text);
    return 0;
}

static void conn_start(bench *b, bconn *c) {
    unsigned char raw[32];
    struct epoll_event ev;
    struct sockaddr_in from;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        uint64_t x = b->rng ^ (uint64_t)c->index;
        size_t i;
        for (i = 0; i < sizeof(raw); i++, x = x * 6364136223846793005ull + 1)
            raw[i] = (unsigned char)(x >> 56);
    }
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    uuid_format(raw + 16, c->pk);
    c->state = CONN_CONNECTING;
    c->t_start = bench_now_ns();
    b->n_connecting++;
    /* Out of local ports (each connection to the server takes one of the
     * source address's ephemeral range, and so does each TIME_WAIT left
     * behind): go on from the next 127.0.0.x. */
    while ((c->fd = bench_tcp_connect(&b->addr, source_now(b, &from))) < 0 &&
           (errno == EADDRNOTAVAIL || errno == EADDRINUSE) && source_next(b) == 0)
        ;
    if (c->fd < 0) {
        conn_error(b, c, "connect: %s", strerror(errno));
        return;
    }
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    c->polling_out = 1;
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        conn_error(b, c, "epoll_ctl: %s", strerror(errno));
}

/* connect: a slot whose connection closed gets a fresh one. */
static void conn_restart(bench *b, bconn *c) {
    c->state = CONN_IDLE;
    c->polling_out = 0;
    c->t_close_seen = 0;
    b->n_finished--;
    conn_start(b, c);
}

/* Starts connections while fewer than CONNECT_WINDOW handshakes run (only
 * while connecting: a run that gave up on connecting starts no more). */
static void start_more(bench *b) {
    while (b->phase == PHASE_CONNECT && b->next_to_start < b->opt->conns &&
           b->n_connecting < CONNECT_WINDOW)
        conn_start(b, &b->conns[b->next_to_start++]);
    /* connect: C at a time is the point, whatever C is */
    while (b->mode->cycle && sending(b) && b->next_to_start < b->opt->conns)
        conn_start(b, &b->conns[b->next_to_start++]);
}

static void send_handshake(bench *b, bconn *c) {
    char req[1024];
    int n =
        snprintf(req, sizeof(req),
                 "GET /parties/%s/%s-%ld?_pk=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 b->party, b->opt->room_prefix, c->room, c->pk, b->opt->host, b->opt->port, c->key);
    if (out_reserve(c, (size_t)n) != 0) {
        conn_error(b, c, "out of memory");
        return;
    }
    memcpy(c->out + c->out_len, req, (size_t)n);
    c->out_len += (size_t)n;
    c->state = CONN_HANDSHAKE;
    conn_flush(b, c);
}

static int feed_cb(void *arg, const party__ws_event *ev);

typedef struct feed_ctx {
    bench *b;
    bconn *c;
} feed_ctx;

static void conn_feed(bench *b, bconn *c, char *data, size_t len) {
    feed_ctx ctx = {b, c};
    int r;
    if (len == 0)
        return;
    c->feeding = 1;
    r = party__ws_reader_feed(&c->reader, data, len, feed_cb, &ctx);
    c->feeding = 0;
    if (c->state == CONN_DONE)
        party__ws_reader_reset(&c->reader);
    else if (r != 0)
        conn_error(b, c, "bad frame from the server (%d)", r);
}

static void conn_opened(bench *b, bconn *c) {
    c->state = CONN_OPEN;
    b->n_connecting--;
    b->n_open++;
    b->n_opened++;
    b->t_last_open = bench_now_ns();
    party__ws_reader_init(&c->reader, b->opt->size > 65536 ? b->opt->size : 65536, 0);
    b->mode->on_open(b, c);
    start_more(b);
}

/* Bytes of the handshake answer: once the head is whole, checks it is a 101
 * with the right accept value; what follows it is WebSocket data. */
static void handshake_read(bench *b, bconn *c, char *data, size_t len) {
    char expected[29];
    size_t head_len, rest, accept_len;
    const char *accept;

    if (c->head == NULL && (c->head = malloc(HANDSHAKE_MAX + 1)) == NULL) {
        conn_error(b, c, "out of memory");
        return;
    }
    if (c->head_len + len > HANDSHAKE_MAX) {
        conn_error(b, c, "handshake answer over %d bytes", HANDSHAKE_MAX);
        return;
    }
    memcpy(c->head + c->head_len, data, len);
    c->head_len += len;
    c->head[c->head_len] = '\0';
    head_len = bench_http_head_len(c->head, c->head_len);
    if (head_len == 0)
        return;
    if (bench_http_status(c->head, head_len) != 101) {
        char *eol = strchr(c->head, '\r');
        if (eol != NULL)
            *eol = '\0';
        conn_error(b, c, "handshake refused: %s", c->head);
        return;
    }
    party__ws_accept_value(NULL, party__slice_make(c->key, strlen(c->key)), expected);
    accept = bench_http_header(c->head, head_len, "Sec-WebSocket-Accept", &accept_len);
    if (accept == NULL || accept_len != strlen(expected) ||
        memcmp(accept, expected, accept_len) != 0) {
        conn_error(b, c, "wrong Sec-WebSocket-Accept");
        return;
    }
    /* What follows the head is WebSocket data; the head is done with. */
    rest = c->head_len - head_len;
    memmove(c->head, c->head + head_len, rest);
    conn_opened(b, c);
    if (c->state != CONN_DONE && rest > 0)
        conn_feed(b, c, c->head, rest);
    free(c->head);
    c->head = NULL;
    if (c->state != CONN_DONE)
        conn_flush(b, c);
}

static int feed_cb(void *arg, const party__ws_event *ev) {
    feed_ctx *ctx = arg;
    bench *b = ctx->b;
    bconn *c = ctx->c;

    switch (ev->type) {
    case PARTY__WS_EV_MESSAGE:
        if (c->state == CONN_OPEN)
            b->mode->on_message(b, c, ev);
        break;
    case PARTY__WS_EV_PING:
        b->pings++;
        queue_frame(b, c, PARTY__WS_PONG, ev->data.ptr, ev->data.len);
        break;
    case PARTY__WS_EV_PONG:
        break;
    case PARTY__WS_EV_CLOSE:
        if (c->state == CONN_CLOSING && b->mode->cycle) {
            /* the server ends the TCP connection next: wait for it */
            if (c->t_close_seen == 0)
                c->t_close_seen = bench_now_ns();
        } else if (c->state == CONN_CLOSING) {
            conn_close(b, c);
        } else {
            conn_error(b, c, "the server closed the connection: %d %.*s", ev->close_code,
                       (int)ev->data.len, ev->data.ptr);
        }
        return 1;
    case PARTY__WS_EV_ERROR:
        conn_error(b, c, "bad frame from the server: %s", ev->error);
        return 1;
    }
    return c->state == CONN_DONE;
}

static void conn_readable(bench *b, bconn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, b->read_buf, READ_CHUNK, 0);
        if (n > 0) {
            if (c->state == CONN_HANDSHAKE)
                handshake_read(b, c, b->read_buf, (size_t)n);
            else
                conn_feed(b, c, b->read_buf, (size_t)n);
            if (c->state == CONN_DONE)
                return;
            if ((size_t)n < READ_CHUNK)
                break;
            continue;
        }
        if (n == 0) {
            if (c->state == CONN_CLOSING)
                conn_close(b, c);
            else
                conn_error(b, c, "the server closed the TCP connection");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        conn_error(b, c, "recv: %s", strerror(errno));
        return;
    }
    conn_flush(b, c);
}

static void conn_event(bench *b, bconn *c, uint32_t events) {
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            conn_error(b, c, "connect: %s", strerror(err));
            return;
        }
        send_handshake(b, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_readable(b, c);
    if (c->state != CONN_DONE && (events & EPOLLOUT))
        conn_flush(b, c);
}

/* ---- phases ---- */

static void begin_close(bench *b) {
    long i;
    static const char bye[2] = {(char)(1000 >> 8), (char)(1000 & 0xFF)};
    b->phase = PHASE_CLOSE;
    b->t_phase_deadline = bench_now_ns() + seconds_ns(CLOSE_SECONDS);
    for (i = 0; i < b->opt->conns; i++) {
        bconn *c = &b->conns[i];
        if (c->state == CONN_OPEN) {
            if (queue_frame(b, c, PARTY__WS_CLOSE, bye, sizeof(bye)) != 0)
                continue;
            c->state = CONN_CLOSING;
            conn_flush(b, c);
        } else if (c->state != CONN_CLOSING) {
            conn_close(b, c);
        }
    }
}

/* Hold modes: every connection is open or failed; the open ones are now
 * held for --duration. The line says when (a script reads the server's
 * memory while they are held). */
static void begin_hold(bench *b, uint64_t now) {
    b->t_all_open = now;
    b->phase = PHASE_MEASURE;
    b->t_measure = now;
    b->t_phase_deadline = now + seconds_ns(b->opt->duration);
    printf("wsbench %s: holding %ld connections for %g s\n", b->mode->name, b->n_open,
           b->opt->duration);
    fflush(stdout);
}

/* Moves to the next phase when its time (or its condition) has come. */
static void advance(bench *b) {
    uint64_t now = bench_now_ns();
    switch (b->phase) {
    case PHASE_CONNECT:
        if (b->mode->cycle) {
            /* connect: the connections under way are the load itself */
            b->t_all_open = now;
            b->phase = PHASE_WARMUP;
            b->t_phase_deadline = now + seconds_ns(b->opt->warmup);
            advance(b);
        } else if (b->mode->hold) {
            long i;
            start_more(b); /* in place of those that failed */
            if (b->next_to_start < b->opt->conns || b->n_connecting > 0) {
                if (now < b->t_phase_deadline)
                    break;
                fprintf(stderr, "wsbench: %ld of %ld connections open at --connect-timeout\n",
                        b->n_open, b->opt->conns);
                for (i = 0; i < b->next_to_start; i++) {
                    bconn *c = &b->conns[i];
                    if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE)
                        conn_error(b, c, "not open at --connect-timeout");
                }
            }
            begin_hold(b, now);
            advance(b);
        } else if (b->n_open == b->opt->conns) {
            b->t_all_open = now;
            b->phase = PHASE_WARMUP;
            b->t_phase_deadline = now + seconds_ns(b->opt->warmup);
            if (b->mode->on_all_open != NULL)
                b->mode->on_all_open(b);
            advance(b);
        } else if (b->n_finished > 0 || now >= b->t_phase_deadline) {
            fprintf(stderr, "wsbench: only %ld of %ld connections opened%s\n", b->n_open,
                    b->opt->conns, now >= b->t_phase_deadline ? " before --connect-timeout" : "");
            b->errors++;
            begin_close(b);
            advance(b);
        }
        break;
    case PHASE_WARMUP:
        if (b->n_finished == b->opt->conns) {
            b->phase = PHASE_DONE; /* every connection failed: nothing to measure */
        } else if (now >= b->t_phase_deadline) {
            b->phase = PHASE_MEASURE;
            b->t_measure = now;
            b->t_phase_deadline = now + seconds_ns(b->opt->duration);
        }
        break;
    case PHASE_MEASURE:
        if (now >= b->t_phase_deadline || b->n_finished == b->opt->conns) {
            b->phase = PHASE_DRAIN;
            b->t_measure_end = now;
            b->t_phase_deadline = now + seconds_ns(DRAIN_SECONDS);
            advance(b);
        }
        break;
    case PHASE_DRAIN:
        if (b->mode->cycle) {
            /* connect: the connections under way finish */
            b->in_flight = (uint64_t)(b->n_connecting + b->n_open);
            b->n_restart = 0;
        }
        if (b->in_flight == 0 || now >= b->t_phase_deadline) {
            b->unanswered += b->in_flight;
            if (b->in_flight > 0)
                fprintf(stderr, "wsbench: %" PRIu64 " %s did not %s within %.0f s\n", b->in_flight,
                        b->mode->cycle ? "connections" : "replies",
                        b->mode->cycle ? "finish" : "come", DRAIN_SECONDS);
            if (b->mode->on_drained != NULL)
                b->mode->on_drained(b);
            if (b->mode->cycle)
                b->in_flight = 0;
            begin_close(b);
            advance(b);
        }
        break;
    case PHASE_CLOSE:
        if (b->n_open == 0 || now >= b->t_phase_deadline)
            b->phase = PHASE_DONE;
        break;
    case PHASE_DONE:
        break;
    }
}

/* connect: opens the slots that closed (after the batch of events, which
 * may still name their old connection); closes connections whose server
 * sent its Close but kept the TCP connection open for CLOSE_SECONDS. */
static void cycle_tick(bench *b) {
    uint64_t now = bench_now_ns();
    long i;
    while (b->n_restart > 0 && sending(b))
        conn_restart(b, &b->conns[b->restart[--b->n_restart]]);
    if (now - b->t_last_sweep < 100000000u)
        return;
    b->t_last_sweep = now;
    for (i = 0; i < b->opt->conns; i++) {
        bconn *c = &b->conns[i];
        if (c->state == CONN_CLOSING && c->t_close_seen != 0 &&
            now - c->t_close_seen > seconds_ns(CLOSE_SECONDS))
            conn_close(b, c);
    }
    while (b->n_restart > 0 && sending(b))
        conn_restart(b, &b->conns[b->restart[--b->n_restart]]);
}

static int run(bench *b) {
    struct epoll_event events[EVENTS_PER_WAIT];

    b->t_begin = bench_now_ns();
    b->phase = PHASE_CONNECT;
    b->t_phase_deadline = b->t_begin + seconds_ns(b->opt->connect_timeout);
    start_more(b);
    while (b->phase != PHASE_DONE) {
        uint64_t now = bench_now_ns();
        int timeout_ms, n, i;

        advance(b);
        if (b->phase == PHASE_DONE)
            break;
        timeout_ms =
            b->t_phase_deadline > now ? (int)((b->t_phase_deadline - now + 999999) / 1000000) : 0;
        if (b->mode->cycle && timeout_ms > 100)
            timeout_ms = 100; /* the sweep of cycle_tick */
        n = epoll_wait(b->epfd, events, EVENTS_PER_WAIT, timeout_ms);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "wsbench: epoll_wait: %s\n", strerror(errno));
            return -1;
        }
        for (i = 0; i < n; i++) {
            bconn *c = events[i].data.ptr;
            if (c->state != CONN_DONE)
                conn_event(b, c, events[i].events);
        }
        if (b->mode->cycle)
            cycle_tick(b);
    }
    return 0;
}

/* ---- report ---- */

/* The client's own CPU time: near a full CPU means wsbench, not the
 * server, may be what limits the rate. */
static void client_cpu(double *user, double *sys) {
    struct rusage ru;
    *user = *sys = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        *user = bench_timeval_s(ru.ru_utime);
        *sys = bench_timeval_s(ru.ru_stime);
    }
}

static void rr_report(const bench *b) {
    double user, sys;
    double secs = (double)(b->t_measure_end - b->t_measure) / 1e9;
    double rate = secs > 0 ? (double)b->msgs_measured / secs : 0;
    latency_us lat = hist_summary(&b->hist);
    const bench_options *o = b->opt;

    client_cpu(&user, &sys);
    printf("wsbench %s: %ld conns over %ld rooms, %ld in flight each, %zu B: %.0f msgs/s, "
           "latency p50 %.3f ms p99 %.3f ms p99.9 %.3f ms max %.3f ms (%" PRIu64
           " msgs in %.2f s, %" PRIu64 " errors, %" PRIu64 " unanswered)\n",
           b->mode->name, o->conns, o->rooms, o->inflight, o->size, rate, lat.p50 / 1e3,
           lat.p99 / 1e3, lat.p999 / 1e3, lat.max / 1e3, b->msgs_measured, secs, b->errors,
           b->unanswered);
    printf("{\"tool\":\"wsbench\",\"mode\":\"%s\",\"party\":\"%s\",\"host\":\"%s\",\"port\":%d,"
           "\"rooms\":%ld,\"conns\":%ld,\"inflight\":%ld,\"size\":%zu,\"warmup_s\":%g,"
           "\"duration_s\":%.3f,\"msgs\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"p50_us\":%.1f,"
           "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"errors\":%" PRIu64
           ",\"unanswered\":%" PRIu64 ",\"client_user_s\":%.3f,\"client_sys_s\":%.3f}\n",
           b->mode->name, b->party, o->host, o->port, o->rooms, o->conns, o->inflight, o->size,
           o->warmup, secs, b->msgs_measured, rate, lat.p50, lat.p99, lat.p999, lat.max, b->errors,
           b->unanswered, user, sys);
    fflush(stdout);
}

/* Handshakes per second: from the first connect to the last handshake. */
static void idle_report(const bench *b) {
    double user, sys;
    double connect_s = b->n_opened > 0 ? (double)(b->t_last_open - b->t_begin) / 1e9 : 0;
    double rate = connect_s > 0 ? (double)b->n_opened / connect_s : 0;
    double held_s = (double)(b->t_measure_end - b->t_measure) / 1e9;
    const bench_options *o = b->opt;

    client_cpu(&user, &sys);
    printf("wsbench %s: %ld conns over %ld rooms: %ld opened, %ld failed, %.0f handshakes/s "
           "(%.2f s); held %.2f s, %ld dropped; %" PRIu64 " messages and %" PRIu64
           " pings received, %" PRIu64 " errors\n",
           b->mode->name, o->conns, o->rooms, b->n_opened, b->n_failed, rate, connect_s, held_s,
           b->n_dropped, b->msgs_total, b->pings, b->errors);
    printf("{\"tool\":\"wsbench\",\"mode\":\"%s\",\"party\":\"%s\",\"host\":\"%s\",\"port\":%d,"
           "\"source\":\"%s\",\"rooms\":%ld,\"conns\":%ld,\"opened\":%ld,\"failed\":%ld,"
           "\"connect_s\":%.3f,\"handshakes_per_s\":%.1f,\"held_s\":%.3f,\"dropped\":%ld,"
           "\"msgs_received\":%" PRIu64 ",\"pings\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"sources\":%ld,\"client_user_s\":%.3f,\"client_sys_s\":%.3f}\n",
           b->mode->name, b->party, o->host, o->port, o->source != NULL ? o->source : "", o->rooms,
           o->conns, b->n_opened, b->n_failed, connect_s, rate, held_s, b->n_dropped, b->msgs_total,
           b->pings, b->errors, b->source_index + 1, user, sys);
    fflush(stdout);
}

/* Deliveries per second, fan-out latency (sending to receiving, per
 * delivery), and what went missing. */
static void bcast_report(const bench *b) {
    double user, sys;
    double secs = (double)(b->t_measure_end - b->t_measure) / 1e9;
    double rate = secs > 0 ? (double)b->msgs_measured / secs : 0;
    double sent_rate = secs > 0 ? (double)b->sent_measured / secs : 0;
    latency_us lat = hist_summary(&b->hist);
    const bench_options *o = b->opt;

    client_cpu(&user, &sys);
    printf("wsbench %s: %ld conns over %ld rooms (1 sender each), window %ld, %zu B: "
           "%.0f deliveries/s (%.0f msgs/s sent), fan-out latency p50 %.3f ms p99 %.3f ms "
           "p99.9 %.3f ms max %.3f ms (%" PRIu64 " deliveries in %.2f s; %" PRIu64 " lost, %" PRIu64
           " out of order, %" PRIu64 " errors, %" PRIu64 " unanswered)\n",
           b->mode->name, o->conns, o->rooms, o->inflight, o->size, rate, sent_rate, lat.p50 / 1e3,
           lat.p99 / 1e3, lat.p999 / 1e3, lat.max / 1e3, b->msgs_measured, secs, b->lost,
           b->out_of_order, b->errors, b->unanswered);
    printf("{\"tool\":\"wsbench\",\"mode\":\"%s\",\"party\":\"%s\",\"host\":\"%s\",\"port\":%d,"
           "\"rooms\":%ld,\"conns\":%ld,\"inflight\":%ld,\"size\":%zu,\"warmup_s\":%g,"
           "\"duration_s\":%.3f,\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,"
           "\"sent\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"p999_us\":%.1f,\"max_us\":%.1f,\"lost\":%" PRIu64 ",\"out_of_order\":%" PRIu64
           ",\"to_sender\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"unanswered\":%" PRIu64
           ",\"client_user_s\":%.3f,\"client_sys_s\":%.3f}\n",
           b->mode->name, b->party, o->host, o->port, o->rooms, o->conns, o->inflight, o->size,
           o->warmup, secs, b->msgs_measured, rate, b->sent_total, sent_rate, lat.p50, lat.p99,
           lat.p999, lat.max, b->lost, b->out_of_order, b->to_sender, b->errors, b->unanswered,
           user, sys);
    fflush(stdout);
}

/* Handshakes per second while measuring and their latency (connect() to
 * the whole 101 answer). */
static void connect_report(const bench *b) {
    double user, sys;
    double secs = (double)(b->t_measure_end - b->t_measure) / 1e9;
    double rate = secs > 0 ? (double)b->handshakes_measured / secs : 0;
    latency_us lat = hist_summary(&b->hist);
    const bench_options *o = b->opt;

    client_cpu(&user, &sys);
    printf("wsbench %s: %ld at a time over %ld rooms: %.0f handshakes/s, handshake latency "
           "p50 %.3f ms p99 %.3f ms p99.9 %.3f ms max %.3f ms (%" PRIu64 " in %.2f s; %" PRIu64
           " connections opened and closed in all, %ld failed, %" PRIu64
           " errors, %ld source addresses)\n",
           b->mode->name, o->conns, o->rooms, rate, lat.p50 / 1e3, lat.p99 / 1e3, lat.p999 / 1e3,
           lat.max / 1e3, b->handshakes_measured, secs, b->cycles, b->n_failed, b->errors,
           b->source_index + 1);
    printf("{\"tool\":\"wsbench\",\"mode\":\"%s\",\"party\":\"%s\",\"host\":\"%s\",\"port\":%d,"
           "\"rooms\":%ld,\"conns\":%ld,\"warmup_s\":%g,\"duration_s\":%.3f,"
           "\"handshakes\":%" PRIu64 ",\"handshakes_per_s\":%.1f,\"p50_us\":%.1f,"
           "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"cycles\":%" PRIu64
           ",\"failed\":%ld,\"errors\":%" PRIu64 ",\"unanswered\":%" PRIu64
           ",\"sources\":%ld,\"client_user_s\":%.3f,\"client_sys_s\":%.3f}\n",
           b->mode->name, b->party, o->host, o->port, o->rooms, o->conns, o->warmup, secs,
           b->handshakes_measured, rate, lat.p50, lat.p99, lat.p999, lat.max, b->cycles,
           b->n_failed, b->errors, b->unanswered, b->source_index + 1, user, sys);
    fflush(stdout);
}

/* ---- setup ---- */

static void usage(FILE *to) {
    size_t i;
    fprintf(to, "usage: wsbench MODE [options]\n"
                "\n"
                "Load generator for partyd over WebSocket, on 127.0.0.1 only.\n"
                "\n"
                "Modes:\n");
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        fprintf(to, "  %-10s %s\n", modes[i].name, modes[i].summary);
    fprintf(to, "\n"
                "  --host ADDR          server address, 127.x.x.x (default 127.0.0.1)\n"
                "  --port N             server port (default 1999)\n"
                "  --party NAME         party to address (default: the mode's)\n"
                "  --source ADDR        connect from this 127.x.x.x address (default: the\n"
                "                       kernel's choice, 127.0.0.1)\n"
                "  --max-sources N      when no local port is left, go on from the next\n"
                "                       address (127.0.0.2, ...), up to N in all (default 32)\n"
                "  --room-prefix P      rooms are P-0 .. P-(R-1) (default bench)\n"
                "  --rooms R            rooms the connections are spread over (default 1)\n"
                "  --grouped            open each room's connections one after another\n"
                "                       (default: connection k goes to room k mod R)\n"
                "  --conns C            connections (default 1)\n"
                "  --inflight W         messages in flight per connection (default 1);\n"
                "                       broadcast: per room, a message counting until every\n"
                "                       receiver has it\n"
                "  --size S             message size in bytes (default 16; broadcast: at\n"
                "                       least 32, its sequence number and send time)\n"
                "  --duration D         seconds measured; idle: seconds held (default 10)\n"
                "  (connect: C is how many handshakes are under way at once)\n"
                "  --warmup SEC         seconds run before measuring (default 1)\n"
                "  --connect-timeout S  seconds allowed to open every connection (default 10)\n"
                "\n"
                "Prints a summary line and a JSON line on stdout; exits 1 if a connection\n"
                "failed or a reply was wrong or missing (broadcast: a message lost or out\n"
                "of order). idle also prints a line\n"
                "\"wsbench idle: holding N connections for D s\" when the hold begins.\n");
}

static int valid_name(const char *s) {
    size_t i, n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

enum {
    OPT_HOST = 256,
    OPT_SOURCE,
    OPT_MAX_SOURCES,
    OPT_PORT,
    OPT_PARTY,
    OPT_ROOM_PREFIX,
    OPT_ROOMS,
    OPT_GROUPED,
    OPT_CONNS,
    OPT_INFLIGHT,
    OPT_SIZE,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_CONNECT_TIMEOUT,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"max-sources", required_argument, NULL, OPT_MAX_SOURCES},
    {"port", required_argument, NULL, OPT_PORT},
    {"party", required_argument, NULL, OPT_PARTY},
    {"room-prefix", required_argument, NULL, OPT_ROOM_PREFIX},
    {"rooms", required_argument, NULL, OPT_ROOMS},
    {"grouped", no_argument, NULL, OPT_GROUPED},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"inflight", required_argument, NULL, OPT_INFLIGHT},
    {"size", required_argument, NULL, OPT_SIZE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* 0, 1 for --help, or -1 after saying what is wrong. */
static int parse_args(int argc, char **argv, bench_options *o) {
    long v;
    int opt;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 1999;
    o->room_prefix = "bench";
    o->rooms = o->conns = o->inflight = 1;
    o->size = 16;
    o->duration = 10;
    o->warmup = 1;
    o->connect_timeout = 10;
    o->max_sources = 32;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_SOURCE:
            o->source = optarg;
            break;
        case OPT_MAX_SOURCES:
            if (bench_parse_long("wsbench", "--max-sources", optarg, 1, MAX_SOURCES,
                                 &o->max_sources) != 0)
                return -1;
            break;
        case OPT_PORT:
            if (bench_parse_long("wsbench", "--port", optarg, 1, 65535, &v) != 0)
                return -1;
            o->port = (int)v;
            break;
        case OPT_PARTY:
            o->party = optarg;
            break;
        case OPT_ROOM_PREFIX:
            o->room_prefix = optarg;
            break;
        case OPT_ROOMS:
            if (bench_parse_long("wsbench", "--rooms", optarg, 1, MAX_ROOMS, &o->rooms) != 0)
                return -1;
            break;
        case OPT_GROUPED:
            o->grouped = 1;
            break;
        case OPT_CONNS:
            if (bench_parse_long("wsbench", "--conns", optarg, 1, MAX_CONNS, &o->conns) != 0)
                return -1;
            break;
        case OPT_INFLIGHT:
            if (bench_parse_long("wsbench", "--inflight", optarg, 1, MAX_INFLIGHT, &o->inflight) !=
                0)
                return -1;
            break;
        case OPT_SIZE:
            if (bench_parse_long("wsbench", "--size", optarg, 1, MAX_SIZE, &v) != 0)
                return -1;
            o->size = (size_t)v;
            break;
        case OPT_DURATION:
            if (bench_parse_seconds("wsbench", "--duration", optarg, 0.001, &o->duration) != 0)
                return -1;
            break;
        case OPT_WARMUP:
            if (bench_parse_seconds("wsbench", "--warmup", optarg, 0, &o->warmup) != 0)
                return -1;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (bench_parse_seconds("wsbench", "--connect-timeout", optarg, 0.001,
                                    &o->connect_timeout) != 0)
                return -1;
            break;
        case OPT_HELP:
            return 1;
        default:
            return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "wsbench: expected one MODE\n");
        return -1;
    }
    o->mode = argv[optind];
    if (o->party != NULL && !valid_name(o->party)) {
        fprintf(stderr, "wsbench: --party: '%s' is not a party name\n", o->party);
        return -1;
    }
    if (!valid_name(o->room_prefix)) {
        fprintf(stderr, "wsbench: --room-prefix: use letters, digits, '-' and '_'\n");
        return -1;
    }
    if (strcmp(o->mode, "broadcast") == 0 && o->conns < 2 * o->rooms) {
        fprintf(stderr, "wsbench: broadcast: --conns must be at least 2 x --rooms (a sender and "
                        "a receiver each)\n");
        return -1;
    }
    if (strcmp(o->mode, "broadcast") == 0 && o->size < 32) {
        fprintf(stderr, "wsbench: broadcast: --size must be at least 32\n");
        return -1;
    }
    if (o->rooms > o->conns) {
        fprintf(stderr,
                "wsbench: --rooms %ld > --conns %ld: some rooms would get no "
                "connection\n",
                o->rooms, o->conns);
        return -1;
    }
    return 0;
}

/* Raises the soft limit on descriptors as far as the hard one allows;
 * fails if that is too few for every connection. */
static int raise_fd_limit(long conns) {
    long limit = bench_raise_fd_limit(), need = conns + 64;
    if (limit < need) {
        fprintf(stderr, "wsbench: %ld connections need %ld descriptors; the limit is %ld\n", conns,
                need, limit);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_options opt;
    bench b;
    size_t i;
    long k;
    int r, status;

    r = parse_args(argc, argv, &opt);
    if (r > 0) {
        usage(stdout);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "(wsbench --help lists modes and options)\n");
        return 2;
    }
    memset(&b, 0, sizeof(b));
    b.opt = &opt;
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(modes[i].name, opt.mode) == 0)
            b.mode = &modes[i];
    if (b.mode == NULL) {
        fprintf(stderr, "wsbench: unknown mode '%s' (wsbench --help lists them)\n", opt.mode);
        return 2;
    }
    b.party = opt.party != NULL ? opt.party : b.mode->default_party;
    if (bench_loopback_addr("wsbench", "--host", opt.host, opt.port, &b.addr) != 0)
        return 2;
    if (bench_loopback_addr("wsbench", "--source", opt.source != NULL ? opt.source : "127.0.0.1", 0,
                            &b.source_base) != 0)
        return 2;
    b.have_source = opt.source != NULL;
    if (raise_fd_limit(opt.conns) != 0)
        return 1;
    b.rng = (uint64_t)bench_now_ns() | 1;
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    b.conns = calloc((size_t)opt.conns, sizeof(*b.conns));
    b.payload = malloc(opt.size);
    b.read_buf = malloc(READ_CHUNK);
    if (b.epfd < 0 || b.conns == NULL || b.payload == NULL || b.read_buf == NULL) {
        fprintf(stderr, "wsbench: cannot set up: %s\n", strerror(errno));
        return 1;
    }
    memset(b.payload, 'x', opt.size);
    for (k = 0; k < opt.conns; k++) {
        bconn *c = &b.conns[k];
        c->fd = -1;
        c->index = k;
        /* Grouped, a room's connections arrive together: a hibernating room
         * is loaded once for them, not once per connection when the next
         * one comes after --hibernate-after. */
        c->room = opt.grouped ? k * opt.rooms / opt.conns : k % opt.rooms;
        c->sent_at = calloc((size_t)opt.inflight, sizeof(*c->sent_at));
        if (c->sent_at == NULL) {
            fprintf(stderr, "wsbench: out of memory\n");
            return 1;
        }
    }

    if (strcmp(b.mode->name, "broadcast") == 0) {
        b.brooms = calloc((size_t)opt.rooms, sizeof(*b.brooms));
        if (b.brooms == NULL) {
            fprintf(stderr, "wsbench: out of memory\n");
            return 1;
        }
        for (k = 0; k < opt.rooms; k++)
            b.brooms[k].sender = -1;
        for (k = 0; k < opt.conns; k++) {
            broom *room = &b.brooms[b.conns[k].room];
            if (room->sender < 0)
                room->sender = k; /* the room's first connection sends */
            else
                room->receivers++;
        }
        for (k = 0; k < opt.rooms; k++)
            if ((b.brooms[k].got = calloc((size_t)opt.inflight, sizeof(uint32_t))) == NULL) {
                fprintf(stderr, "wsbench: out of memory\n");
                return 1;
            }
    }
    if (b.mode->cycle && (b.restart = calloc((size_t)opt.conns, sizeof(long))) == NULL) {
        fprintf(stderr, "wsbench: out of memory\n");
        return 1;
    }

    status =
        run(&b) == 0 && b.errors == 0 && b.unanswered == 0 && b.lost == 0 && b.out_of_order == 0
            ? 0
            : 1;
    b.mode->report(&b);

    for (k = 0; k < opt.conns; k++) {
        conn_close(&b, &b.conns[k]);
        free(b.conns[k].sent_at);
    }
    free(b.conns);
    if (b.brooms != NULL)
        for (k = 0; k < opt.rooms; k++)
            free(b.brooms[k].got);
    free(b.brooms);
    free(b.restart);
    free(b.payload);
    free(b.read_buf);
    close(b.epfd);
    return status;
}
