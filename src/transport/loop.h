/* loop: one event loop's context, below everything that runs on it. Each
 * event-loop thread has one party__loop: the libuv loop, the clock (virtual
 * under the test harness), the configuration the connections read (a copy
 * of the runtime's), the hot path's buffers and pools, the connections with
 * output to flush, the listener (loop 0's), keepalive, TLS state and the
 * loop's transport counters (outbound HTTP's included). The rooms of the
 * loop and the process-wide runtime sit above it and hold a pointer to
 * it; it knows neither. What it must tell them goes through the callbacks
 * the runtime installs. */
#ifndef PARTY_LOOP_H
#define PARTY_LOOP_H

#include <stdint.h>
#include <uv.h>

#include "party.h"
#include "http_client.h"

#define PARTY__READ_BUF_SIZE (64 * 1024)
#define PARTY__SPARE_TIMERS 256
#define PARTY__SPARE_SESSIONS 16

struct party_conn;
struct party__buf;
struct party__buf_pool;
struct party__digest;
struct party__slabs;
struct party__http_session;
struct party__conn_sendq;
struct party__conn_busy;
struct party__transport;
struct party__transport_ops;
struct party__conn_upcalls;
struct party__cidr_list;
struct party__addr_limits;
struct ssl_ctx_st;

typedef struct party__loop party__loop;

struct party__loop {
    uv_loop_t loop;   /* loop.data is this party__loop */
    party_config cfg; /* the runtime's configuration (its strings are the runtime's) */
    unsigned index;   /* this loop's place among the runtime's loops */

    /* The clock: monotonic, or virtual under the test harness. */
    int virtual_clock;
    uint64_t virtual_now; /* ms since the epoch, when virtual_clock */

    /* The hot path's own buffers */
    char *read_buf;                   /* one loop-wide read buffer for socket reads */
    struct party__buf_pool *buf_pool; /* spare small buffers for outgoing frames */
    struct party__digest *digest;     /* SHA-1 and SHA-256 for handshakes and room ids */

    /* Connections (conn.c) */
    struct party_conn *dirty_head; /* connections with unflushed output */
    size_t n_conns;
    /* What connections report upwards (conn.h; installed by the runtime) */
    const struct party__conn_upcalls *conn_upcalls;
    /* Called when a connection or a room's store work ends while the loop
     * stops (party__loop_maybe_finish): the runtime may finish the loop.
     * Installed by the runtime; NULL: nothing to tell. */
    void (*on_quiet)(party__loop *lp);
    /* The transport accepted connections start with (NULL: plaintext),
     * and the connections' transport states by slot (conn.c) */
    const struct party__transport_ops *accept_transport;
    struct party__transport **transport_slots;
    uint32_t *transport_free;
    size_t transport_slots_cap, n_transport_free;
    uv_timer_t *spare_timers[PARTY__SPARE_TIMERS]; /* stopped, ready for reuse */
    size_t n_spare_timers;
    uv_timer_t *timer_block;         /* the pool's timers, in one allocation (conn.c) */
    size_t timer_block_open;         /* its timers not closed yet */
    int timers_closing;              /* the pool is closing: no timer goes back to it */
    struct party__slabs *conn_slabs; /* connection structs (conn.c); NULL until the first */
    struct party__http_session *spare_sessions;
    size_t n_spare_sessions;
    struct party__conn_sendq *spare_sendqs; /* send queues, for output on its way */
    size_t n_spare_sendqs;
    struct party__conn_busy *spare_busy; /* what connections need while busy (conn.h) */
    size_t n_spare_busy;
    /* The connections' sockets are watched from one epoll set of the
     * loop's, which the libuv loop watches through one handle: a socket
     * costs no handle of its own (conn.c). */
    int conn_epfd;       /* -1 until the first connection, and once closed */
    int conn_epoll_done; /* the set was closed at shutdown: no new one */
    uv_poll_t conn_poll; /* watches conn_epfd; keeps the loop alive while it watches a socket */
    size_t n_watched;    /* sockets in the set */
    size_t n_closed;     /* closed sockets whose struct waits for the end of the turn */

    /* The listening socket (listener.c; loop 0 only) */
    uv_poll_t listener; /* watches listen_fd */
    int listening;
    int listen_fd; /* -1 when not listening */
    int spare_fd;  /* kept open to be given up when accept() hits EMFILE */
    uint64_t accept_errors, last_accept_warning;
    /* Clients behind proxies: the runtime's parsed --trusted-proxies
     * (NULL: none), and connections closed for want of a valid PROXY
     * header (--proxy-protocol) */
    const struct party__cidr_list *trusted_proxies;
    uint64_t proxy_refused;
    /* Rate limits (addr_limits.h: the per-address table is the runtime's, one
     * for every loop) and what each refused or paused */
    struct party__addr_limits *addr_limits;
    const struct party__cidr_list *limit_exempt; /* clients no limit applies to */
    uint64_t limit_addr_conns, limit_addr_rate;  /* requests answered 429 */
    uint64_t limit_conn_msgs, limit_conn_bytes;  /* WebSocket reads paused */
    uint64_t limit_conn_closed;                  /* WebSockets closed with 1013 */
    uint64_t limit_room_conns;                   /* upgrades refused: room full */
    uint64_t last_limit_warning;
    uint64_t meter_now; /* the loop's clock in ns at the current socket read (conn.c) */

    /* Keepalive (keepalive.c) */
    uv_timer_t keepalive_timer;        /* pings idle WebSockets every ping_interval */
    struct party__buf *keepalive_ping; /* the Ping frame of the sweep running now */

    /* TLS (tls.c): the runtime's context (loop 0 owns it) and this loop's
     * buffer for ciphertext */
    struct ssl_ctx_st *tls_ctx;
    char *tls_read_buf;
    uint64_t tls_errors;

    /* Counters for /_partyd/metrics (loop thread only) */
    uint64_t bytes_in, bytes_out;
    uint64_t http_requests;    /* requests parsed (handshakes included) */
    uint64_t http_errors;      /* requests refused by the parser or the handshake check */
    uint64_t protocol_errors;  /* WebSocket connections closed for a bad frame */
    uint64_t send_queue_drops; /* slow readers dropped */
    uint64_t http_ended;       /* HTTP phases ended (handshakes, requests answered) */
    uint64_t origin_refused;   /* handshakes and preflights refused for their Origin */
    /* The Date field of HTTP answers, formatted once a second */
    int64_t http_date_at; /* the second it shows */
    char http_date[30];   /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    /* Outbound HTTP: what the loop's clients (http_client.h, made by the
     * rooms' outbound requests) count */
    party__http_stats http_stats;

    int in_callback;  /* a user callback is running: new events are queued */
    int frozen;       /* an upgrade is handing the connections over: no socket is read
                       * (1), nor written (2) */
    int handed_over;  /* an upgrade succeeded: another process serves the rooms now */
    int stopping;     /* a graceful stop has begun */
    int finished;     /* rooms freed, handles closing */
    int trim_pending; /* memory was freed in bulk: return it at the next tick */
};

/* Sets up lp for loop index with a copy of cfg (its strings stay the
 * caller's): the libuv loop and the hot path's buffers. 0, or
 * PARTY_ENOMEM with nothing left allocated. */
int party__loop_init(party__loop *lp, const party_config *cfg, unsigned index);
/* Frees what party__loop_init allocated, once the libuv loop's handles
 * are closed (uv_loop_close is the caller's). */
void party__loop_free(party__loop *lp);

/* The loop's clock in ms (monotonic; virtual under the test harness). */
uint64_t party__loop_now(party__loop *lp);
/* Wall-clock ms since the epoch (virtual under the test harness). */
int64_t party__loop_epoch_ms(party__loop *lp);

/* The IMF-fixdate of now (RFC 9110 5.6.7) for an answer's Date field;
 * valid until the loop's next call. */
const char *party__loop_http_date(party__loop *lp);

/* 1 if a warning of a kind whose last one was logged at *last may be
 * logged now (at most one a second: out of descriptors comes in storms);
 * then *last becomes now. */
int party__loop_warning_due(party__loop *lp, uint64_t *last);

/* Tells the runtime (on_quiet) that work it may wait for at shutdown has
 * ended: a connection was freed, or a room's store work finished. */
static inline void party__loop_maybe_finish(party__loop *lp) {
    if (lp->on_quiet != NULL)
        lp->on_quiet(lp);
}

#endif
