/* conn: socket I/O for one connection — reading and parsing HTTP requests,
 * reading WebSocket frames into room events, the send queue (one writev per
 * connection per loop turn) with its release mark for the room's output
 * gate, the close handshake and timeouts, and the hand-off of a routed
 * connection to another loop. Bytes go through the connection's transport
 * (transport.h); requests, messages and closes go up through the runtime's
 * upcalls (party__conn_upcalls). */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "forwarded.h"
#include "addr_limits.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"
#include "origin.h"
#include "slab.h"
#include "alloc.h"
#include "conn_record.h"

/* A request buffer starts small (a WebSocket handshake is a few hundred
 * bytes) and doubles while a request needs more, up to its limits. */
#define HTTP_BUF_FIRST 1024
#define WRITE_IOV_MAX 64
#define LINGER_MS 2000
/* Spare send queues a loop keeps (a broadcast takes one per receiver for
 * a moment). */
#define SPARE_SENDQS 1024
/* Spare busy records a loop keeps (one per handshake in flight). */
#define SPARE_BUSY 256
/* Sockets' events read from the loop's epoll set at a time; more ready
 * ones keep the set readable for the next loop turn. */
#define EPOLL_BATCH 256

/* What the loop's epoll set watches for a connection (conn->watched). */
#define WATCH_IN 1u
#define WATCH_OUT 2u

/* For the HTTP side of a function a WebSocket message also runs through:
 * inlined, its locals and saved registers would be paid on every message. */
#define NOT_INLINED __attribute__((noinline))

static void conn_start_reading(party_conn *conn);
static void conn_stop_reading(party_conn *conn);
static void conn_watch(party_conn *conn);
static void conn_close_now(party_conn *conn);
static void mark_dirty(party_conn *conn);
static void conn_parse_http(party_conn *conn);
static void http_session_free(party__http_session *s);
static void conn_timer_stop(party_conn *conn);

static const party__conn_upcalls *upcalls(const party_conn *conn) {
    return party__conn_loop(conn)->conn_upcalls;
}

/* uv_buf_init without its call (libuv's is not inline): it is made for
 * every socket read and every buffer written. */
static inline uv_buf_t buf_view(char *base, size_t len) {
    uv_buf_t b;
    b.base = base;
    b.len = len;
    return b;
}

static uint64_t seconds_to_ms(double s) {
    return s <= 0 ? 0 : (uint64_t)(s * 1000.0 + 0.5);
}

/* What an idle connection costs is mostly this struct (DESIGN.md D3: at
 * most 256 B per idle connection, with its slab slot, the client's binary
 * address and a limiter pointer, and its share of the loop's fixed
 * costs); docs/architecture.md says what each byte is for. */
_Static_assert(sizeof(struct party_conn) <= 216,
               "an idle connection's struct grew past D3's budget");

/* Connection structs come from slabs (see slab.h): they are the one
 * long-lived allocation per connection. */
static party_conn *conn_alloc(party__loop *lp) {
    return party__slabs_calloc(&lp->conn_slabs, sizeof(party_conn));
}

static void conn_release(party__loop *lp, party_conn *conn) {
    party__slabs_release(lp->conn_slabs, conn);
}

/* The send queue's ring: one inline slot while at most one buffer waits
 * (the usual case: output is written at the end of each loop turn), a
 * heap ring once more do. A ring's capacity is a power of two (4, then
 * doubled), so an index wraps with a mask rather than a division. */
static party__buf **out_slot(party__conn_sendq *q, uint32_t i) {
    if (q->cap <= 1)
        return &q->one;
    return &q->ring[(q->head + i) & (q->cap - 1)];
}

/* The entries of the queue in front of the release mark: what may be
 * written now. The rest (held) waits for a commit. */
static uint32_t out_released(const party_conn *conn) {
    return conn->out != NULL ? conn->out->len - conn->out->held : 0;
}

/* A queue exists only while output waits: on an echo, from the message's
 * reply to the write at the end of the loop turn. So queues come from a
 * pool of the loop's rather than from malloc each time. */
static party__conn_sendq *sendq_take(party__loop *lp) {
    party__conn_sendq *q = lp->spare_sendqs;
    if (q != NULL) {
        lp->spare_sendqs = q->next_spare;
        lp->n_spare_sendqs--;
    } else if ((q = party__malloc(sizeof(*q))) == NULL) {
        return NULL;
    }
    memset(q, 0, sizeof(*q));
    return q;
}

/* The connection's queue, empty, goes back (with the ring it grew). */
static void sendq_drop(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__conn_sendq *q = conn->out;

    assert(q->len == 0);
    conn->out = NULL;
    if (q->cap > 1)
        party__free(q->ring);
    if (lp->n_spare_sendqs < SPARE_SENDQS && !lp->conn_epoll_done) {
        q->next_spare = lp->spare_sendqs;
        lp->spare_sendqs = q;
        lp->n_spare_sendqs++;
        return;
    }
    party__free(q);
}

static void spare_sendqs_free(party__loop *lp) {
    while (lp->spare_sendqs != NULL) {
        party__conn_sendq *q = lp->spare_sendqs;
        lp->spare_sendqs = q->next_spare;
        party__free(q);
    }
    lp->n_spare_sendqs = 0;
}

/* ---- what a busy connection needs, and what few have ---- */

/* The connection's busy record, made (from the loop's pool) if it has
 * none. NULL when out of memory. */
static party__conn_busy *busy_get(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__conn_busy *b = conn->busy;

    if (b != NULL)
        return b;
    b = lp->spare_busy;
    if (b != NULL) {
        lp->spare_busy = b->next_spare;
        lp->n_spare_busy--;
    } else if ((b = party__malloc(sizeof(*b))) == NULL) {
        return NULL;
    }
    memset(b, 0, sizeof(*b));
    conn->busy = b;
    return b;
}

/* The busy record goes back once none of it is in use: an open WebSocket
 * waiting for input holds none. */
static void busy_put(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__conn_busy *b = conn->busy;

    if (b == NULL || b->http != NULL || b->timer != NULL || b->reading_frame)
        return;
    conn->busy = NULL;
    if (lp->n_spare_busy < SPARE_BUSY && !lp->conn_epoll_done) {
        b->next_spare = lp->spare_busy;
        lp->spare_busy = b;
        lp->n_spare_busy++;
        return;
    }
    party__free(b);
}

static void spare_busy_free(party__loop *lp) {
    while (lp->spare_busy != NULL) {
        party__conn_busy *b = lp->spare_busy;
        lp->spare_busy = b->next_spare;
        party__free(b);
    }
    lp->n_spare_busy = 0;
}

/* The connection's extra record (tags, state), made if it has none. NULL
 * when out of memory. */
static party__conn_extra *extra_get(party_conn *conn) {
    if (conn->extra == NULL)
        conn->extra = party__calloc(1, sizeof(*conn->extra));
    return conn->extra;
}

/* The extra record goes once it holds nothing. */
static void extra_put(party_conn *conn) {
    if (conn->extra != NULL && conn->extra->tags == NULL && conn->extra->state == NULL) {
        party__free(conn->extra);
        conn->extra = NULL;
    }
}

/* ---- transport ---- */

/* A connection's transport state is found by a slot number that fills
 * padding in party_conn, in a table of the loop's: a plaintext connection
 * (slot 0) carries no pointer for a state it does not have. */
party__transport *party__conn_transport(const party_conn *conn) {
    if (conn->transport_slot == 0)
        return NULL;
    return party__conn_loop(conn)->transport_slots[conn->transport_slot];
}

static const party__transport_ops *conn_ops(const party_conn *conn) {
    party__transport *t = party__conn_transport(conn);
    return t != NULL ? t->ops : &party__transport_plain;
}

/* A free slot number (never 0, which means "none") holding t; 0 on OOM. */
static uint32_t slot_take(party__loop *lp, party__transport *t) {
    uint32_t slot;
    if (lp->n_transport_free == 0) {
        size_t cap = lp->transport_slots_cap ? lp->transport_slots_cap * 2 : 64, i;
        party__transport **slots;
        uint32_t *spare;
        if (cap > UINT32_MAX)
            return 0;
        slots = party__realloc(lp->transport_slots, cap * sizeof(*slots));
        if (slots == NULL)
            return 0;
        lp->transport_slots = slots;
        spare = party__realloc(lp->transport_free, cap * sizeof(*spare));
        if (spare == NULL)
            return 0;
        lp->transport_free = spare;
        for (i = cap; i-- > (lp->transport_slots_cap ? lp->transport_slots_cap : 1);)
            lp->transport_free[lp->n_transport_free++] = (uint32_t)i;
        lp->transport_slots_cap = cap;
    }
    slot = lp->transport_free[--lp->n_transport_free];
    lp->transport_slots[slot] = t;
    return slot;
}

int party__conn_set_transport(party_conn *conn, party__transport *t) {
    party__loop *lp = party__conn_loop(conn);

    if (conn->transport_slot != 0) {
        lp->transport_slots[conn->transport_slot] = NULL;
        lp->transport_free[lp->n_transport_free++] = conn->transport_slot;
        conn->transport_slot = 0;
    }
    if (t == NULL)
        return 0;
    conn->transport_slot = slot_take(lp, t);
    return conn->transport_slot != 0 ? 0 : PARTY_ENOMEM;
}

/* Frees the connection's transport state, if it has one. */
static void transport_free(party_conn *conn) {
    party__transport *t = party__conn_transport(conn);
    if (t != NULL) {
        (void)party__conn_set_transport(conn, NULL);
        t->ops->free(t);
    }
}

void party__conn_slots_free(party__loop *lp) {
    party__free(lp->transport_slots);
    lp->transport_slots = NULL;
    party__free(lp->transport_free);
    lp->transport_free = NULL;
    lp->transport_slots_cap = lp->n_transport_free = 0;
}

party__loop *party__conn_get_loop(const party_conn *conn) {
    return party__conn_loop(conn);
}

int party__conn_closing(const party_conn *conn) {
    return conn->transport_closing;
}

/* ---- lifetime ---- */

void party__conn_ref(party_conn *conn) {
    conn->refs++;
}

/* The block holding the id and the uri (conn->id set). */
static char *ident_block(const party_conn *conn) {
    return conn->id - conn->id_at;
}

static void conn_free(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    uint32_t i;

    if (conn->out != NULL) {
        for (i = 0; i < conn->out->len; i++)
            party__buf_release(*out_slot(conn->out, i));
        conn->out->len = 0;
        sendq_drop(conn);
    }
    party__conn_end_http(conn);
    conn_timer_stop(conn); /* none is armed on a closed socket; if one were, it goes */
    if (conn->busy != NULL) {
        if (conn->busy->reading_frame)
            party__ws_reader_reset(&conn->busy->reader);
        conn->busy->reading_frame = 0;
        busy_put(conn);
    }
    if (conn->id != NULL && ident_block(conn) != conn->ident)
        party__free(ident_block(conn)); /* the uri lives in the same block */
    if (conn->extra != NULL) {
        party__free(conn->extra->tags);
        party__free(conn->extra->state);
        party__free(conn->extra);
    }
    party__free(conn->meter);
    if (conn->addr_counted)
        party__addr_limits_give(lp->addr_limits, &conn->peer);
    transport_free(conn);
    if (!conn->handed_off) /* other loops read the total: atomic */
        __atomic_fetch_sub(&lp->n_conns, 1, __ATOMIC_RELAXED);
    conn_release(lp, conn);
    party__loop_maybe_finish(lp);
}

void party__conn_unref(party_conn *conn) {
    assert(conn->refs > 0);
    if (--conn->refs == 0)
        conn_free(conn);
}

static void on_timer_closed(uv_handle_t *handle) {
    party__free(handle);
}

/* The block is freed once its last timer's close callback has run. */
static void on_block_timer_closed(uv_handle_t *handle) {
    party__loop *lp = handle->loop->data;
    assert(lp->timer_block_open > 0);
    if (--lp->timer_block_open == 0) {
        party__free(lp->timer_block);
        lp->timer_block = NULL;
        lp->trim_pending = 1; /* its pages go back at the next tick */
    }
}

static int timer_in_block(party__loop *lp, uv_timer_t *timer) {
    uintptr_t t = (uintptr_t)timer, first = (uintptr_t)lp->timer_block;
    return lp->timer_block != NULL && t >= first &&
           t < first + PARTY__SPARE_TIMERS * sizeof(uv_timer_t);
}

/* Timers come from and go back to a per-loop pool of stopped handles:
 * every connection needs one for its handshake. The pool's timers are one
 * block, allocated when the first is needed, so that they do not sit one
 * by one between the long-lived connection structs and pin pages of freed
 * memory there; a timer beyond the pool (more than PARTY__SPARE_TIMERS
 * armed at once) is allocated by itself and freed when stopped. */
static void conn_timer_stop(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    uv_timer_t *timer = conn->busy != NULL ? conn->busy->timer : NULL;

    if (timer == NULL)
        return;
    conn->busy->timer = NULL;
    busy_put(conn);
    uv_timer_stop(timer);
    if (!timer_in_block(lp, timer)) {
        uv_close((uv_handle_t *)timer, on_timer_closed);
    } else if (lp->timers_closing) {
        uv_close((uv_handle_t *)timer, on_block_timer_closed);
    } else {
        assert(lp->n_spare_timers < PARTY__SPARE_TIMERS);
        timer->data = NULL;
        lp->spare_timers[lp->n_spare_timers++] = timer;
    }
}

/* Allocates the pool's block; its timers become the spare ones. */
static int timer_block_new(party__loop *lp) {
    size_t i;
    lp->timer_block = party__malloc(PARTY__SPARE_TIMERS * sizeof(uv_timer_t));
    if (lp->timer_block == NULL)
        return PARTY_ENOMEM;
    for (i = PARTY__SPARE_TIMERS; i-- > 0;) {
        uv_timer_init(&lp->loop, &lp->timer_block[i]);
        lp->timer_block[i].data = NULL;
        lp->spare_timers[lp->n_spare_timers++] = &lp->timer_block[i];
    }
    lp->timer_block_open = PARTY__SPARE_TIMERS;
    return 0;
}

static void conn_timer_start(party_conn *conn, uint64_t ms, uv_timer_cb cb) {
    party__loop *lp = party__conn_loop(conn);
    party__conn_busy *b = busy_get(conn);

    if (b == NULL)
        return; /* no timeout then; the connection still works */
    if (b->timer == NULL) {
        if (lp->n_spare_timers == 0 && lp->timer_block == NULL && !lp->timers_closing)
            (void)timer_block_new(lp); /* when it fails, try a timer by itself */
        if (lp->n_spare_timers > 0) {
            b->timer = lp->spare_timers[--lp->n_spare_timers];
        } else {
            b->timer = party__malloc(sizeof(*b->timer));
            if (b->timer == NULL) {
                busy_put(conn);
                return; /* no timeout then; the connection still works */
            }
            uv_timer_init(&lp->loop, b->timer);
        }
        b->timer->data = conn;
    }
    uv_timer_start(b->timer, cb, ms, 0);
}

static void spare_sessions_free(party__loop *lp) {
    while (lp->spare_sessions != NULL) {
        party__http_session *s = lp->spare_sessions;
        lp->spare_sessions = s->next_spare;
        party__free(s->buf);
        party__free(s);
    }
    lp->n_spare_sessions = 0;
}

/* Closes the spare timers; the block is freed after the last close
 * callback of all its timers. */
static void spare_timers_close(party__loop *lp) {
    while (lp->n_spare_timers > 0)
        uv_close((uv_handle_t *)lp->spare_timers[--lp->n_spare_timers], on_block_timer_closed);
}

static void conn_epoll_close(party__loop *lp);

void party__conn_pools_free(party__loop *lp) {
    /* Connections closed since the last flush are released first. */
    party__conn_flush_dirty(lp);
    /* Timers still held by connections close when they are stopped. */
    lp->timers_closing = 1;
    spare_timers_close(lp);
    spare_sessions_free(lp);
    conn_epoll_close(lp);
    spare_sendqs_free(lp);
    spare_busy_free(lp);
}

void party__conn_pools_trim(party__loop *lp) {
    spare_sessions_free(lp);
    spare_sendqs_free(lp);
    spare_busy_free(lp);
    /* The block goes only whole: while any of its timers is armed, it
     * stays. Until it is freed, a timer needed is allocated by itself. */
    if (lp->timer_block != NULL && lp->n_spare_timers == PARTY__SPARE_TIMERS)
        spare_timers_close(lp);
}

/* ---- the loop's epoll set ---- */

static void conn_io(party_conn *conn, uint32_t events);

/* The loop's epoll set has ready sockets: their events, a batch at a time.
 * A connection closed by an event earlier in the batch is still there
 * (closed sockets are released at the end of the loop turn) and is
 * skipped. */
static void on_conns_ready(uv_poll_t *handle, int status, int events) {
    party__loop *lp = handle->data;
    struct epoll_event ev[EPOLL_BATCH];
    int n, i;

    (void)events;
    if (status < 0) {
        /* libuv stopped the handle; an epoll set has no error of its own
         * to report, so watch it again rather than strand its sockets. */
        party__log_error(lp, "connections' epoll set: %s", uv_strerror(status));
        (void)uv_poll_start(handle, UV_READABLE, on_conns_ready);
        return;
    }
    do
        n = epoll_wait(lp->conn_epfd, ev, EPOLL_BATCH, 0);
    while (n < 0 && errno == EINTR);
    for (i = 0; i < n; i++)
        conn_io(ev[i].data.ptr, ev[i].events);
}

/* Makes the loop's epoll set with its first connection. 0 or a negative
 * libuv error code. */
static int conn_epoll_open(party__loop *lp) {
    int fd, r;

    if (lp->conn_epfd >= 0)
        return 0;
    if (lp->conn_epoll_done)
        return UV_ECANCELED; /* the loop has finished */
    fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    r = uv_poll_init(&lp->loop, &lp->conn_poll, fd);
    if (r != 0) {
        close(fd);
        return r;
    }
    lp->conn_poll.data = lp;
    r = uv_poll_start(&lp->conn_poll, UV_READABLE, on_conns_ready);
    if (r != 0) {
        /* Not watching: the descriptor may go now. The handle is closing,
         * so no set is made again. */
        uv_close((uv_handle_t *)&lp->conn_poll, NULL);
        close(fd);
        lp->conn_epoll_done = 1;
        return r;
    }
    /* Nothing watched yet: the loop is not kept alive by it. */
    uv_unref((uv_handle_t *)&lp->conn_poll);
    lp->conn_epfd = fd;
    return 0;
}

static void conn_epoll_close(party__loop *lp) {
    lp->conn_epoll_done = 1;
    if (lp->conn_epfd < 0)
        return;
    assert(lp->n_watched == 0 && lp->n_closed == 0);
    uv_close((uv_handle_t *)&lp->conn_poll, NULL);
    close(lp->conn_epfd); /* after uv_close: the loop no longer watches it */
    lp->conn_epfd = -1;
}

/* Like a libuv handle per socket, the set keeps the loop alive while it
 * watches a socket, and while a closed one waits for the end of the loop
 * turn (as a closing handle would). */
static void conn_epoll_keep_alive(party__loop *lp) {
    if (lp->n_watched + lp->n_closed > 0)
        uv_ref((uv_handle_t *)&lp->conn_poll);
    else
        uv_unref((uv_handle_t *)&lp->conn_poll);
}

/* Has the set watch the socket for want (WATCH_IN | WATCH_OUT; 0: not at
 * all, so a hang-up is not reported while nothing is wanted). 0 or a
 * negative libuv error code (then conn->watched is as it was). */
static int conn_epoll_set(party_conn *conn, unsigned want) {
    party__loop *lp = party__conn_loop(conn);
    struct epoll_event ev;
    int op = want == 0 ? EPOLL_CTL_DEL : conn->watched == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;

    if (want == conn->watched)
        return 0;
    memset(&ev, 0, sizeof(ev));
    ev.events = ((want & WATCH_IN) ? EPOLLIN : 0u) | ((want & WATCH_OUT) ? EPOLLOUT : 0u);
    ev.data.ptr = conn;
    /* A socket the set cannot drop is not in it (or no longer open):
     * either way it is not watched. */
    if (epoll_ctl(lp->conn_epfd, op, conn->fd, &ev) != 0 && op != EPOLL_CTL_DEL)
        return uv_translate_sys_error(errno);
    if (op == EPOLL_CTL_ADD)
        lp->n_watched++;
    else if (op == EPOLL_CTL_DEL)
        lp->n_watched--;
    conn->watched = want;
    conn_epoll_keep_alive(lp);
    return 0;
}

/* Stops watching the socket and closes it. The struct goes once no one
 * holds it, but not before the end of this loop turn: callers up the
 * stack still name it, and so may events later in the epoll batch being
 * read. The flush list holds it until then. */
static void conn_close_socket(party_conn *conn) {
    if (conn->watched != 0)
        (void)conn_epoll_set(conn, 0);
    conn->watched = 0;
    if (conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
    conn->release_pending = 1;
    party__conn_loop(conn)->n_closed++;
    conn_epoll_keep_alive(party__conn_loop(conn));
    mark_dirty(conn);
    party__conn_unref(conn); /* the socket's reference */
}

/* Tells the room, once, that this connection is gone. */
static void conn_report_close(party_conn *conn, int code, const char *reason, int was_clean) {
    if (conn->close_reported || !conn->in_room)
        return;
    conn->close_reported = 1;
    if (upcalls(conn)->close(conn->room, conn, code, party__slice_make(reason, strlen(reason)),
                             was_clean) != 0)
        party__log_error(party__conn_loop(conn),
                         "conn %s: out of memory reporting close; on_close skipped", conn->id);
}

static void conn_report_error(party_conn *conn, const char *what) {
    if (conn->phase != PARTY__CONN_OPEN || !conn->in_room)
        return; /* errors on a closing connection are not reported */
    upcalls(conn)->error(conn->room, conn, what);
}

static void conn_close_now(party_conn *conn) {
    if (conn->transport_closing)
        return;
    conn->transport_closing = 1;
    conn->phase = PARTY__CONN_DONE;
    conn_report_close(conn, PARTY__WS_ABNORMAL, "", 0);
    conn_timer_stop(conn);
    conn_close_socket(conn);
}

void party__conn_abort(party_conn *conn) {
    conn_close_now(conn);
}

static void on_linger_timeout(uv_timer_t *timer) {
    conn_close_now(timer->data);
}

/* The last byte is written: half-close and linger, then close. */
static void conn_finish(party_conn *conn) {
    if (conn->transport_closing)
        return;
    conn->phase = PARTY__CONN_DONE;
    conn->close_after_flush = 0;
    if (shutdown(conn->fd, SHUT_WR) != 0) {
        conn_close_now(conn);
        return;
    }
    /* Read and drop whatever the peer still sends until it closes its side,
     * so our close never turns into a reset that could destroy the last
     * bytes we wrote. Bounded in time. */
    conn_timer_start(conn, LINGER_MS, on_linger_timeout);
    conn_start_reading(conn);
}

/* ---- output ---- */

/* The flush list holds a reference, so a connection closed meanwhile is
 * still there to be skipped. */
static void mark_dirty(party_conn *conn) {
    if (!conn->dirty) {
        party__conn_ref(conn);
        conn->dirty = 1;
        conn->dirty_next = party__conn_loop(conn)->dirty_head;
        party__conn_loop(conn)->dirty_head = conn;
    }
}

static int conn_enqueue(party_conn *conn, party__buf *buf);
static NOT_INLINED int queue_slow(party_conn *conn, party__buf *buf);

/* Puts a reference of buf in the free slot of q (there is one). */
static inline void queue_put(party_conn *conn, party__conn_sendq *q, party__buf *buf) {
    *out_slot(q, q->len) = party__buf_ref(buf);
    q->len++;
    q->bytes += (uint32_t)buf->len;
    if (conn->gate_next != NULL)
        q->held++; /* behind the mark: nothing to write yet */
    else
        mark_dirty(conn);
}

/* Every message sent and every receiver of a broadcast comes here: the
 * usual cases (a queue with a free slot, or none yet and a spare one in
 * the loop's pool) are handled without a call and with no register saved;
 * the rest (a ring to grow, a limit passed, an allocation) in queue_slow. */
int party__conn_queue(party_conn *conn, party__buf *buf) {
    party__loop *lp = party__conn_loop(conn);
    party__conn_sendq *q = conn->out;

    if (conn->transport_closing || conn->phase == PARTY__CONN_DONE)
        return PARTY_ECLOSED;
    if (q == NULL) {
        q = lp->spare_sendqs;
        if (q == NULL || buf->len > lp->cfg.send_queue_bytes)
            return queue_slow(conn, buf);
        lp->spare_sendqs = q->next_spare;
        lp->n_spare_sendqs--;
        memset(q, 0, sizeof(*q));
        q->cap = 1; /* the inline slot */
        conn->out = q;
    } else if (q->len == q->cap || q->bytes + buf->len > lp->cfg.send_queue_bytes) {
        return queue_slow(conn, buf);
    }
    queue_put(conn, q, buf);
    return 0;
}

/* party__conn_queue but for its usual cases. */
static NOT_INLINED int queue_slow(party_conn *conn, party__buf *buf) {
    int r;

    /* Held output counts: it is memory this connection holds all the same. */
    if ((conn->out != NULL ? conn->out->bytes : 0) + buf->len >
        party__conn_loop(conn)->cfg.send_queue_bytes) {
        party__log_warn(
            party__conn_loop(conn),
            "conn %s: send queue would exceed send_queue_bytes (--send-queue-bytes, %zu); "
            "dropping the connection",
            conn->id != NULL ? conn->id : "-", party__conn_loop(conn)->cfg.send_queue_bytes);
        party__conn_loop(conn)->send_queue_drops++;
        conn_report_error(conn, "send queue over send_queue_bytes: the client reads too slowly");
        conn_close_now(conn);
        return PARTY_ELIMIT;
    }
    r = conn_enqueue(conn, buf);
    /* Output that cannot be queued ends the connection: what follows must
     * never reach the peer with a gap before it that nobody sees. */
    if (r != 0)
        conn_close_now(conn);
    return r;
}

static int conn_enqueue(party_conn *conn, party__buf *buf) {
    party__conn_sendq *q = conn->out;

    if (q == NULL) {
        q = conn->out = sendq_take(party__conn_loop(conn));
        if (q == NULL)
            return PARTY_ENOMEM;
        q->cap = 1; /* the inline slot */
    } else if (q->len == q->cap) {
        uint32_t cap = q->cap == 1 ? 4 : q->cap * 2;
        party__buf **grown = party__malloc(cap * sizeof(*grown));
        uint32_t i;
        if (grown == NULL)
            return PARTY_ENOMEM;
        for (i = 0; i < q->len; i++)
            grown[i] = *out_slot(q, i);
        if (q->cap > 1)
            party__free(q->ring);
        q->ring = grown;
        q->head = 0;
        q->cap = cap;
    }
    queue_put(conn, q, buf);
    return 0;
}

void party__conn_consume(party_conn *conn, size_t n) {
    party__conn_sendq *q = conn->out;

    if (n == 0)
        return;
    party__conn_loop(conn)->bytes_out += n;
    q->bytes -= (uint32_t)n;
    while (n > 0) {
        party__buf *head = *out_slot(q, 0);
        size_t left = head->len - q->offset;
        if (n < left) {
            q->offset += (uint32_t)n;
            return;
        }
        n -= left;
        party__buf_release(head);
        if (q->cap > 1)
            q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
        q->offset = 0;
    }
    /* All written: the queue goes back to the pool, but a ring a busy
     * connection grew stays until it is idle (party__conn_trim). */
    if (q->len == 0 && q->cap <= 1)
        sendq_drop(conn);
}

void party__conn_trim(party_conn *conn) {
    party__conn_meter_release(conn);
    if (conn->out != NULL && conn->out->len == 0)
        sendq_drop(conn);
}

size_t party__conn_peek(party_conn *conn, uv_buf_t *iov, size_t max) {
    size_t i, n = out_released(conn) < max ? out_released(conn) : max;
    for (i = 0; i < n; i++) {
        party__buf *b = *out_slot(conn->out, i);
        size_t off = i == 0 ? conn->out->offset : 0;
        iov[i] = buf_view(b->data + off, b->len - off);
    }
    return n;
}

static void conn_flush(party_conn *conn);

/* A request routed to another loop waited for earlier answers to be
 * written: route it again, now that they are. 1 if it was routed; 0 if
 * the connection ended meanwhile (say an earlier answer became a 500 that
 * closes it), which the caller then finishes as usual. */
static int conn_output_drained(party_conn *conn) {
    conn->handoff_wait = 0;
    if (conn->phase != PARTY__CONN_HTTP_BUSY || party__conn_http(conn) == NULL ||
        conn->transport_closing)
        return 0;
    upcalls(conn)->request(conn);
    return 1;
}

ssize_t party__conn_write_some(party_conn *conn, const uv_buf_t *iov, size_t n) {
    struct msghdr msg;
    ssize_t r;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov; /* libuv: a uv_buf_t is a struct iovec */
    msg.msg_iovlen = n;
    do
        r = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : uv_translate_sys_error(errno);
}

int party__conn_write_queue(party_conn *conn) {
    uv_buf_t iov[WRITE_IOV_MAX];

    while (out_released(conn) > 0) {
        size_t n = party__conn_peek(conn, iov, WRITE_IOV_MAX);
        ssize_t r = party__conn_write_some(conn, iov, n);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return PARTY__FLUSH_BLOCKED;
        party__conn_consume(conn, (size_t)r);
    }
    return PARTY__FLUSH_DONE;
}

/* Everything is written: a request waiting to be handed off goes, a
 * closing connection half-closes and lingers. */
static void conn_flush_done(party_conn *conn) {
    if (conn->handoff_wait && conn_output_drained(conn))
        return;
    if (conn->close_after_flush && conn->gate_next == NULL)
        conn_finish(conn); /* nothing held back by an output gate either */
}

static void conn_flush(party_conn *conn) {
    const party__transport_ops *ops;
    int r;

    /* Handed over (frozen > 1): the socket's next bytes are another
     * process's to write. */
    if (conn->writing || conn->transport_closing || party__conn_loop(conn)->frozen > 1)
        return;
    ops = conn_ops(conn);
    r = ops->flush(conn);
    /* All written, and nothing held back by an output gate: the transport
     * says goodbye before the connection half-closes. */
    if (r == PARTY__FLUSH_DONE && conn->close_after_flush && conn->gate_next == NULL &&
        ops->start_close != NULL)
        r = ops->start_close(conn);
    if (r < 0) {
        party__log_debug(party__conn_loop(conn), "conn %s: write failed: %s",
                         conn->id ? conn->id : "-", uv_strerror(r));
        conn_close_now(conn);
        return;
    }
    if (r == PARTY__FLUSH_BLOCKED) {
        /* The socket is full: the rest waits until it takes more. */
        conn->writing = 1;
        conn_watch(conn);
        return;
    }
    if (r == PARTY__FLUSH_DONE)
        conn_flush_done(conn);
}

void party__conn_flush(party_conn *conn) {
    conn_flush(conn);
}

void party__conn_flush_dirty(party__loop *lp) {
    while (lp->dirty_head != NULL) {
        party_conn *conn = lp->dirty_head;
        lp->dirty_head = conn->dirty_next;
        conn->dirty = 0;
        conn->dirty_next = NULL;
        if (conn->release_pending) {
            conn->release_pending = 0;
            lp->n_closed--;
            conn_epoll_keep_alive(lp);
        }
        conn_flush(conn);
        party__conn_unref(conn);
    }
}

static void conn_close_after_flush(party_conn *conn) {
    conn->close_after_flush = 1;
    conn_stop_reading(conn);
    mark_dirty(conn);
}

/* ---- HTTP phase ---- */

static void on_header_timeout(uv_timer_t *timer) {
    party_conn *conn = timer->data;
    party__http_session *s = party__conn_http(conn);
    if (s != NULL && s->len == 0) {
        /* An idle keep-alive connection: nothing was asked, nothing to say. */
        conn_close_now(conn);
        return;
    }
    party__log_info(
        party__conn_loop(conn),
        "http: no complete request within header_timeout (--header-timeout, %.1f s); closing",
        party__conn_loop(conn)->cfg.header_timeout);
    party__conn_http_fail(conn, 408, "request head not received within header_timeout\n");
}

/* Request buffers this big or smaller are kept with a pooled session. */
#define SPARE_BUF_MAX (16 * 1024)

/* Zeroes a session but for the parsed header fields (4 KiB, most of it):
 * the parser fills them up to n_headers, and nothing reads past that.
 * Zeroing them cost a tenth of a handshake's instructions. */
static void http_session_clear(party__http_session *s) {
    party__http_request *req = &s->req;
    memset(s, 0, offsetof(party__http_session, req));
    memset(req, 0, offsetof(party__http_request, headers));
    memset(&req->n_headers, 0, sizeof(*req) - offsetof(party__http_request, n_headers));
    memset(&s->preq, 0, sizeof(*s) - offsetof(party__http_session, preq));
}

/* Sessions, like timers, are pooled: a handshake's few kilobytes are then
 * the same few kilobytes for every connection. */
static int http_session_new(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *s = lp->spare_sessions;
    party__conn_busy *b = busy_get(conn);
    char *buf = NULL;
    size_t cap = 0;

    if (b == NULL)
        return PARTY_ENOMEM;
    if (s != NULL) {
        lp->spare_sessions = s->next_spare;
        lp->n_spare_sessions--;
        buf = s->buf;
        cap = buf != NULL ? s->cap : 0;
    } else {
        s = party__malloc(sizeof(*s));
        if (s == NULL) {
            busy_put(conn);
            return PARTY_ENOMEM;
        }
    }
    http_session_clear(s);
    s->buf = buf;
    s->cap = cap;
    s->max = lp->cfg.max_header_bytes + lp->cfg.max_body_bytes + 1024;
    party__http_parser_init(&s->parser);
    b->http = s;
    return 0;
}

/* Frees a session that goes back to no pool (a hand-off refused). */
static void http_session_free(party__http_session *s) {
    if (s == NULL)
        return;
    party__free(s->proxy_buf);
    if (s->have_preq)
        party__request_free(&s->preq);
    party__free(s->buf);
    party__free(s);
}

void party__conn_end_http(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *s = party__conn_http(conn);

    if (s == NULL)
        return;
    conn->busy->http = NULL;
    busy_put(conn);
    lp->http_ended++;
    if (s->have_preq)
        party__request_free(&s->preq);
    party__free(s->proxy_buf);
    s->proxy_buf = NULL;
    if (s->cap > SPARE_BUF_MAX) {
        party__free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    if (lp->n_spare_sessions < PARTY__SPARE_SESSIONS && !lp->finished) {
        s->next_spare = lp->spare_sessions;
        lp->spare_sessions = s;
        lp->n_spare_sessions++;
        return;
    }
    party__free(s->buf);
    party__free(s);
}

/* 1 while input belongs behind a request in the HTTP buffer: while one is
 * read, and while a room has it (what follows it waits there). */
static int input_buffered(const party_conn *conn) {
    return party__conn_http(conn) != NULL &&
           (conn->phase == PARTY__CONN_HTTP || conn->phase == PARTY__CONN_HTTP_BUSY ||
            conn->phase == PARTY__CONN_UPGRADING);
}

/* party__conn_input_space behind a request. */
static NOT_INLINED int http_input_space(party_conn *conn, uv_buf_t *out) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *s = party__conn_http(conn);
    size_t want = s->cap;

    if (s->cap == 0)
        want = HTTP_BUF_FIRST;
    else if (s->len == s->cap && conn->phase == PARTY__CONN_HTTP)
        want = s->cap * 2;
    /* Past the HTTP phase the parsed request points into the buffer: it
     * must not move. What does not fit waits (in the socket, or in the
     * transport, fed once the request is answered). */
    if (want > s->max)
        want = s->max;
    if (want > s->cap) {
        char *grown = party__realloc(s->buf, want);
        if (grown == NULL) {
            party__log_error(lp, "conn %s: out of memory for a read buffer",
                             conn->id ? conn->id : "-");
            conn_close_now(conn);
            return PARTY_ENOMEM;
        }
        s->buf = grown;
        s->cap = want;
    }
    if (s->len < s->cap) {
        *out = uv_buf_init(s->buf + s->len, (unsigned int)(s->cap - s->len));
        return 0;
    }
    if (conn->phase != PARTY__CONN_HTTP)
        return 1;
    /* Chunk framing can make the raw bytes outgrow the body limit before
     * the parser sees the decoded size pass it. */
    party__log_info(lp, "http: 413 request exceeds max_body_bytes (--max-body-bytes) with framing");
    party__conn_http_fail(conn, 413, "request exceeds max_body_bytes\n");
    return PARTY_ELIMIT;
}

int party__conn_input_space(party_conn *conn, uv_buf_t *out) {
    if (input_buffered(conn))
        return http_input_space(conn, out);
    *out = buf_view(party__conn_loop(conn)->read_buf, PARTY__READ_BUF_SIZE);
    return 0;
}

/* Has the loop's epoll set watch for what the connection waits for: input
 * while reading, room for output while a write waits. Each change of what
 * the set watches costs an epoll_ctl call, so a connection that stops
 * reading keeps watching for input until input comes: a handshake or a
 * close then pauses reading without a change, as no bytes arrive
 * meanwhile. exact: watch for input only while reading (input came while
 * not). */
static void conn_watch_as(party_conn *conn, int exact) {
    unsigned want = (conn->reading ? WATCH_IN : 0) | (conn->writing ? WATCH_OUT : 0);

    if (!exact)
        want |= conn->watched & WATCH_IN;
    if (conn->transport_closing || want == conn->watched)
        return;
    (void)conn_epoll_set(conn, want);
}

static void conn_watch(party_conn *conn) {
    conn_watch_as(conn, 0);
}

static void conn_start_reading(party_conn *conn) {
    /* Frozen for an upgrade: input waits in the socket for whichever
     * process serves the connection next (party__conn_thaw). */
    if (!conn->reading && !conn->transport_closing && !party__conn_loop(conn)->frozen) {
        conn->reading = 1;
        conn_watch(conn);
    }
}

static void conn_stop_reading(party_conn *conn) {
    if (conn->reading) {
        conn->reading = 0;
        conn_watch(conn);
    }
}

/* An allow-list admitted the request's Origin: the answer names that
 * origin instead of "*" (a disallowed one is never reflected: its request
 * gets no CORS headers at all), and says it varies with Origin. */
static void cors_reflect_origin(party__http_session *s, party_response *res) {
    party__slice origin = party__http_header_get(&s->req, "Origin");
    char text[PARTY__ORIGIN_MAX + 1];

    if (origin.ptr == NULL || origin.len > PARTY__ORIGIN_MAX)
        return;
    memcpy(text, origin.ptr, origin.len);
    text[origin.len] = '\0';
    party_response_set_header(res, "Access-Control-Allow-Origin", text);
    if (party__response_header_get(res, "Vary") == NULL)
        party_response_set_header(res, "Vary", "Origin");
}

void party__conn_http_respond(party_conn *conn, party_response *res, int force_close) {
    party__http_session *s = party__conn_http(conn);
    int keep_alive = conn->keep_alive && !force_close && !party__conn_loop(conn)->stopping;
    party__buf *buf;

    if (s != NULL && s->cors != NULL) {
        const char *const *h;
        /* What the party set itself wins over the defaults. */
        for (h = s->cors; h[0] != NULL && h[1] != NULL; h += 2)
            if (party__response_header_get(res, h[0]) == NULL)
                party_response_set_header(res, h[0], h[1]);
        if (s->cors_reflect)
            cors_reflect_origin(s, res);
        s->cors = NULL;
    }
    buf = party__response_serialize(res, conn->head_only, keep_alive,
                                    party__loop_http_date(party__conn_loop(conn)));

    if (s != NULL && s->have_preq) {
        party__request_free(&s->preq);
        s->have_preq = 0;
    }
    if (buf == NULL) {
        conn_close_now(conn);
        return;
    }
    (void)party__conn_queue(conn, buf);
    party__buf_release(buf);
    if (conn->id == NULL)
        conn->room = NULL; /* an HTTP request is done with its room */
    if (!keep_alive || s == NULL) {
        conn->phase = PARTY__CONN_DONE;
        conn_close_after_flush(conn);
        return;
    }
    /* Keep-alive: move what followed the request to the front and go on. */
    memmove(s->buf, s->buf + s->consumed, s->len - s->consumed);
    s->len -= s->consumed;
    s->consumed = 0;
    s->continue_sent = 0;
    s->cors_reflect = 0;
    party__http_parser_init(&s->parser);
    conn->phase = PARTY__CONN_HTTP;
    conn_timer_start(conn, seconds_to_ms(party__conn_loop(conn)->cfg.header_timeout),
                     on_header_timeout);
    conn_start_reading(conn);
    if (s->len > 0)
        conn_parse_http(conn);
    /* Input that did not fit behind the answered request may wait in the
     * transport (TLS records); no socket read would bring it up. */
    if (conn->phase == PARTY__CONN_HTTP && !conn->transport_closing) {
        const party__transport_ops *ops = conn_ops(conn);
        if (ops->resume != NULL)
            ops->resume(conn);
    }
}

void party__conn_http_fail(party_conn *conn, int status, const char *text) {
    party__conn_http_fail_with(conn, status, text, NULL);
}

void party__conn_http_fail_with(party_conn *conn, int status, const char *text,
                                const char *const *headers) {
    party_response res;
    party__response_init(&res);
    party__response_text(&res, status, text);
    for (; headers != NULL && headers[0] != NULL; headers += 2)
        party_response_set_header(&res, headers[0], headers[1]);
    if (status == 426) { /* RFC 9110 15.5.22: a 426 names the protocol to upgrade to */
        party_response_set_header(&res, "Upgrade", "websocket");
        party_response_set_header(&res, "Sec-WebSocket-Version", "13");
    }
    if (status == 503) /* every 503 here passes: the client may try again (D5) */
        party_response_set_header(&res, "Retry-After", "1");
    conn->phase = PARTY__CONN_HTTP_BUSY;
    conn_stop_reading(conn);
    party__conn_http_respond(conn, &res, 1);
    party__response_free(&res);
}

/* The flag (and config key) that sets the limit a parse error names, for
 * its log line; "" when it names none. */
static const char *limit_flag(const char *reason) {
    if (strstr(reason, "max_header_bytes") != NULL)
        return " (--max-header-bytes)";
    if (strstr(reason, "max_headers") != NULL)
        return " (--max-headers)";
    if (strstr(reason, "max_body_bytes") != NULL)
        return " (--max-body-bytes)";
    return "";
}

/* 1 when no limit applies to a client: it has no network address (the
 * test harness), or it is in --limit-exempt. */
static int conn_unmetered(party__loop *lp, const party__addr *addr) {
    return addr->family == PARTY__ADDR_NONE ||
           (lp->limit_exempt != NULL && party__cidr_list_match(lp->limit_exempt, addr));
}

/* A connection's first request named its client: the per-address limits
 * count it, or it is answered 429 with Retry-After and closed. 0 to go
 * on. */
static NOT_INLINED int conn_admit_client(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    unsigned retry_after;
    int counted;
    int r;

    if (conn_unmetered(lp, &conn->peer)) {
        conn->unmetered = 1;
        return 0;
    }
    r = party__addr_limits_take(lp->addr_limits, &conn->peer, party__loop_now(lp),
                                lp->cfg.limit_addr_conns, lp->cfg.limit_addr_rate, &retry_after,
                                &counted);
    char from[PARTY__ADDR_TEXT_MAX], body[160], after[16];
    party_response res;

    conn->addr_counted = (unsigned)counted;
    if (r != PARTY__LIMIT_CONNS && r != PARTY__LIMIT_RATE)
        return 0;
    party__addr_text(&conn->peer, from, sizeof(from));
    if (r == PARTY__LIMIT_CONNS) {
        lp->limit_addr_conns++;
        if (party__loop_warning_due(lp, &lp->last_limit_warning))
            party__log_warn(lp, "limit: %s has %zu connections open (--limit-addr-conns); 429",
                            from, lp->cfg.limit_addr_conns);
        snprintf(body, sizeof(body), "too many connections from %s (limit-addr-conns)\n", from);
    } else {
        lp->limit_addr_rate++;
        if (party__loop_warning_due(lp, &lp->last_limit_warning))
            party__log_warn(lp,
                            "limit: %s opens more than %g connections a second "
                            "(--limit-addr-rate); 429",
                            from, lp->cfg.limit_addr_rate);
        snprintf(body, sizeof(body), "too many new connections from %s (limit-addr-rate)\n", from);
    }
    /* D5: a limit passes; the client is told when to try again. */
    snprintf(after, sizeof(after), "%u", retry_after);
    party__response_init(&res);
    party__response_text(&res, 429, body);
    party_response_set_header(&res, "Retry-After", after);
    conn_timer_stop(conn);
    conn->phase = PARTY__CONN_HTTP_BUSY;
    conn_stop_reading(conn);
    party__conn_http_respond(conn, &res, 1);
    party__response_free(&res);
    return -1;
}

/* RFC 9112 2.2: empty lines before a request line are skipped (some
 * clients send a CRLF after a POST body). A lone CR waits for its LF. */
static void skip_empty_lines(party__http_session *s) {
    size_t n = 0;

    while (n + 1 < s->len && s->buf[n] == '\r' && s->buf[n + 1] == '\n')
        n += 2;
    if (n > 0) {
        memmove(s->buf, s->buf + n, s->len - n);
        s->len -= n;
    }
}

/* RFC 9110 10.1.1: the client waits for this before it sends the body. */
static void send_continue(party_conn *conn) {
    static const char text[] = "HTTP/1.1 100 Continue\r\n\r\n";
    party__buf *buf = party__buf_take(party__conn_loop(conn)->buf_pool, sizeof(text));

    party__conn_http(conn)->continue_sent = 1;
    if (buf == NULL) {
        conn_close_now(conn);
        return;
    }
    memcpy(buf->data, text, sizeof(text) - 1);
    buf->len = sizeof(text) - 1;
    (void)party__conn_queue(conn, buf);
    party__buf_release(buf);
}

/* Parses one request from the session buffer and routes it. */
static void conn_parse_one(party_conn *conn) {
    party__http_session *s = party__conn_http(conn);
    party__http_limits limits;
    party__http_error err;
    int r;

    limits.max_header_bytes = party__conn_loop(conn)->cfg.max_header_bytes;
    limits.max_headers = party__conn_loop(conn)->cfg.max_headers;
    limits.max_body = party__conn_loop(conn)->cfg.max_body_bytes;
    if (s->parser.scanned == 0 && s->len > 0 && s->buf[0] == '\r')
        skip_empty_lines(s);
    r = party__http_parse(&s->parser, s->buf, s->len, &limits, &s->req, &s->consumed, &err);
    if (r == PARTY__HTTP_AGAIN) {
        if (s->parser.expect_continue && !s->continue_sent)
            send_continue(conn);
        return;
    }
    if (r == PARTY__HTTP_ERROR) {
        char body[160];
        party__conn_loop(conn)->http_errors++;
        char from[PARTY__ADDR_TEXT_MAX];
        party__log_info(party__conn_loop(conn), "http: %d %s%s from %s", err.status, err.reason,
                        limit_flag(err.reason), party__addr_text(&s->peer, from, sizeof(from)));
        snprintf(body, sizeof(body), "%s\n", err.reason);
        party__conn_http_fail(conn, err.status, body);
        return;
    }
    party__conn_loop(conn)->http_requests++;
    /* The request's client: whom a trusted proxy names, else the peer. A
     * connection's own client is its first request's. */
    s->remote = s->peer;
    (void)party__forwarded_client(s->req.headers, s->req.n_headers,
                                  party__conn_loop(conn)->trusted_proxies, &s->remote);
    if (!conn->client_known) {
        conn->client_known = 1;
        conn->peer = s->remote;
        if (!conn->internal && conn_admit_client(conn) != 0)
            return;
    }
    conn_timer_stop(conn);
    conn_stop_reading(conn);
    conn->phase = PARTY__CONN_HTTP_BUSY;
    /* Methods are case-sensitive (RFC 9110 9.1): "head" is not HEAD. */
    conn->head_only = s->req.method.len == 4 && memcmp(s->req.method.ptr, "HEAD", 4) == 0;
    conn->keep_alive = (uint8_t)s->req.keep_alive;
    upcalls(conn)->request(conn);
}

/* Pipelined requests answered on the spot would otherwise recurse once per
 * request (respond -> parse -> route -> respond ...); a flag turns that
 * into this loop. */
static void conn_parse_http(party_conn *conn) {
    if (conn->parsing) {
        conn->parse_again = 1;
        return;
    }
    conn->parsing = 1;
    do {
        conn->parse_again = 0;
        conn_parse_one(conn);
    } while (conn->parse_again && conn->phase == PARTY__CONN_HTTP && !conn->transport_closing);
    conn->parsing = 0;
}

/* ---- WebSocket phase ---- */

static int on_ws_event(void *arg, const party__ws_event *wev) {
    party_conn *conn = arg;
    party__buf *frame;

    switch (wev->type) {
    case PARTY__WS_EV_MESSAGE:
        if (conn->phase != PARTY__CONN_OPEN)
            return 0; /* after our Close, data is dropped */
        if (upcalls(conn)->message(conn->room, conn, wev->data, wev->binary) != 0) {
            party__log_error(party__conn_loop(conn), "conn %s: out of memory queueing a message",
                             conn->id);
            party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "out of memory");
            return 1;
        }
        return 0;
    case PARTY__WS_EV_PING:
        frame = party__ws_frame_new(party__conn_loop(conn)->buf_pool, PARTY__WS_PONG, wev->data.ptr,
                                    wev->data.len);
        if (frame != NULL) {
            (void)party__conn_queue(conn, frame);
            party__buf_release(frame);
        }
        return conn->transport_closing;
    case PARTY__WS_EV_PONG:
        return 0;
    case PARTY__WS_EV_CLOSE: {
        char reason[PARTY_MAX_CLOSE_REASON + 1];
        size_t n = wev->data.len < PARTY_MAX_CLOSE_REASON ? wev->data.len : PARTY_MAX_CLOSE_REASON;
        memcpy(reason, wev->data.ptr, n);
        reason[n] = '\0';
        conn->close_received = 1;
        conn->peer_close_code = (uint16_t)wev->close_code;
        conn_stop_reading(conn);
        if (conn->in_room && !conn->close_reported) {
            /* The connection stays open until the room reaches this Close:
             * messages read before it may still be queued, and their
             * replies must go out ahead of the Close reply. */
            conn_report_close(conn, wev->close_code, reason, 1);
        } else {
            if (conn->phase == PARTY__CONN_OPEN)
                conn->phase = PARTY__CONN_CLOSING;
            party__conn_after_close(conn, reason);
        }
        return 1;
    }
    case PARTY__WS_EV_ERROR:
        party__conn_loop(conn)->protocol_errors++;
        {
            char from[PARTY__ADDR_TEXT_MAX];
            party__log_info(party__conn_loop(conn), "conn %s from %s: %s; closing with %d",
                            conn->id, party__addr_text(&conn->peer, from, sizeof(from)), wev->error,
                            wev->close_code);
        }
        conn_report_error(conn, wev->error);
        conn_stop_reading(conn);
        /* After our own Close, a bad frame ends the wait for the reply; a
         * second Close would break the protocol. */
        frame = conn->close_sent
                    ? NULL
                    : party__ws_close_frame_new(wev->close_code, wev->error, strlen(wev->error));
        if (frame != NULL) {
            conn->close_sent = 1;
            (void)party__conn_queue(conn, frame);
            party__buf_release(frame);
        }
        conn->phase = PARTY__CONN_DONE;
        conn_report_close(conn, wev->close_code, wev->error, 0);
        conn_close_after_flush(conn);
        return 1;
    }
    return 0;
}

/* What follows a feed of reader (conn_feed_ws; idle: the stack's reader,
 * or NULL when reader is the busy record's) unless it ended the usual
 * way. A frame or message left partly read moves the stack's reader into
 * the busy record; a reader done with (input ended, or the busy record's
 * message finished) is reset. r: what the feed returned. */
static NOT_INLINED void conn_fed_ws(party_conn *conn, party__ws_reader *reader,
                                    party__ws_reader *idle, int r) {
    if (!reader->failed && !reader->closed && party__ws_reader_busy(reader)) {
        if (reader == idle) {
            party__conn_busy *b = busy_get(conn);
            if (b != NULL) {
                b->reader = *idle;
                b->reading_frame = 1;
            } else {
                party__ws_reader_reset(idle);
                conn->ws_ended = 1;
                r = PARTY_ENOMEM;
            }
        }
    } else {
        /* Nothing partly read, or input ends here. */
        if (reader->failed || reader->closed)
            conn->ws_ended = 1;
        party__ws_reader_reset(reader);
        if (reader != idle) {
            conn->busy->reading_frame = 0;
            busy_put(conn);
        }
    }
    if (r == PARTY_ENOMEM) {
        party__log_error(party__conn_loop(conn), "conn %s: out of memory reading a frame",
                         conn->id);
        party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "out of memory");
    }
}

static void conn_feed_ws(party_conn *conn, char *data, size_t len) {
    party__ws_reader idle;
    int r;

    if (conn->busy != NULL && conn->busy->reading_frame) {
        /* While the reader is the busy record's, reading_frame keeps the
         * record there whatever the events do (a timer stopped, say). */
        party__ws_reader *reader = &conn->busy->reader;
        r = party__ws_reader_feed(reader, data, len, on_ws_event, conn);
        conn_fed_ws(conn, reader, NULL, r);
        return;
    }
    if (conn->ws_ended)
        return; /* after a Close or an error, input is dropped */
    /* No frame partly read: a reader on the stack takes what came, and
     * moves into the busy record only if a frame or message stays
     * unfinished. An idle connection keeps no reader. */
    party__ws_reader_init(&idle, party__conn_loop(conn)->cfg.max_message_bytes, 1);
    r = party__ws_reader_feed(&idle, data, len, on_ws_event, conn);
    /* The usual end, on every read of whole messages: the reader holds
     * nothing and input goes on; it is dropped as it is. */
    if (r == 0 && idle.b == NULL && idle.msg_opcode == 0 && !idle.failed && !idle.closed)
        return;
    conn_fed_ws(conn, &idle, &idle, r);
}

/* Largest offset of an id inside its uri that id_at can hold. */
#define ID_AT_MAX ((1u << PARTY__CONN_ID_AT_BITS) - 1)

int party__conn_begin_upgrade(party_conn *conn, struct party_room *room, const char *id) {
    size_t id_len = strlen(id);
    party__http_session *http = party__conn_http(conn);
    if (!party__addr_equal(&conn->peer, &http->remote) || conn->peer.port != http->remote.port) {
        /* A keep-alive connection through a trusted proxy upgrades for a
         * client other than its first request's: counted for this one now. */
        party__loop *lp = party__conn_loop(conn);
        unsigned retry_after;
        int counted = 0;
        if (conn->addr_counted)
            party__addr_limits_give(lp->addr_limits, &conn->peer);
        conn->peer = http->remote;
        conn->unmetered = (unsigned)conn_unmetered(lp, &conn->peer);
        if (conn->addr_counted && !conn->unmetered)
            (void)party__addr_limits_take(lp->addr_limits, &conn->peer, party__loop_now(lp), 0, 0,
                                          &retry_after, &counted);
        conn->addr_counted = (unsigned)counted;
    }
    party__slice target = http->req.target;
    /* partysocket sends its id as the URL's first parameter, and with no
     * query of its own the last (?_pk=ID): then the uri's tail is the id
     * and the uri alone holds both. */
    size_t at = target.len > id_len ? target.len - id_len : 0;
    int tail = id_len > 0 && at > 0 && at <= ID_AT_MAX && memcmp(target.ptr + at, id, id_len) == 0;
    size_t need = tail ? target.len + 1 : id_len + 1 + target.len + 1;
    /* id and uri share one block, inside the struct when it fits (a
     * partysocket URL does): an idle connection should cost one slab slot
     * and nothing else. */
    char *block = need <= sizeof(conn->ident) ? conn->ident : party__malloc(need);
    if (block == NULL)
        return PARTY_ENOMEM;
    if (tail) {
        memcpy(block, target.ptr, target.len);
        block[target.len] = '\0';
        conn->id = block + at;
        conn->id_at = (unsigned)at;
    } else {
        memcpy(block, id, id_len + 1);
        memcpy(block + id_len + 1, target.ptr, target.len);
        block[id_len + 1 + target.len] = '\0';
        conn->id = block;
        conn->id_at = 0;
    }
    conn->room = room;
    conn->phase = PARTY__CONN_UPGRADING;
    return 0;
}

int party__conn_finish_upgrade(party_conn *conn, const char *extra_headers) {
    party__http_session *s = party__conn_http(conn);
    party__slice key = party__http_header_get(&s->req, "Sec-WebSocket-Key");
    char accept[29];
    const char *extra = extra_headers != NULL ? extra_headers : "";
    party__buf *buf = party__buf_take(party__conn_loop(conn)->buf_pool, 192 + strlen(extra));
    int r;

    if (buf == NULL)
        return PARTY_ENOMEM;
    r = party__ws_accept_value(party__conn_loop(conn)->digest, key, accept);
    if (r != 0) {
        party__buf_release(buf);
        return r;
    }
    /* RFC 9110 7.8: a 100 Continue the request asked for comes first. */
    buf->len = (size_t)snprintf(
        buf->data, buf->cap,
        "%sHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
        s->req.expect_continue && !s->continue_sent ? "HTTP/1.1 100 Continue\r\n\r\n" : "", accept,
        extra);
    r = party__conn_queue(conn, buf);
    party__buf_release(buf);
    if (r != 0)
        return r;
    conn->handshake_held = conn->gate_next != NULL;
    conn->phase = PARTY__CONN_OPEN;
    /* The 101 goes out now rather than with what on_connect sends, so that
     * output usually fits the inline slot of the output ring. */
    if (!conn->handshake_held)
        conn_flush(conn);
    return 0;
}

void party__conn_start_ws(party_conn *conn) {
    party__http_session *s = party__conn_http(conn);
    size_t rest_len = s != NULL ? s->len - s->consumed : 0;
    char *rest = NULL;

    if (rest_len > 0) {
        rest = s->buf;
        memmove(rest, s->buf + s->consumed, rest_len);
        s->buf = NULL; /* keep the bytes past end_http */
        s->cap = 0;
    }
    party__conn_end_http(conn);
    if (conn->phase != PARTY__CONN_OPEN && conn->phase != PARTY__CONN_CLOSING) {
        party__free(rest);
        return;
    }
    if (rest != NULL) {
        conn_feed_ws(conn, rest, rest_len);
        party__free(rest);
    }
    if (conn->phase == PARTY__CONN_OPEN || conn->phase == PARTY__CONN_CLOSING)
        if (!conn->close_received)
            conn_start_reading(conn);
}

static void on_close_timeout(uv_timer_t *timer) {
    party_conn *conn = timer->data;
    party__log_debug(party__conn_loop(conn), "conn %s: no Close reply within close_timeout",
                     conn->id);
    conn_close_now(conn);
}

void party__conn_start_close(party_conn *conn, int code, const char *reason) {
    party__buf *frame;
    int r;

    if (conn->close_sent || conn->transport_closing)
        return;
    frame = party__ws_close_frame_new(code, reason, reason != NULL ? strlen(reason) : 0);
    if (frame == NULL) {
        conn_close_now(conn);
        return;
    }
    conn->close_sent = 1;
    r = party__conn_queue(conn, frame);
    party__buf_release(frame);
    if (r != 0 && r != PARTY_ECLOSED)
        return; /* not queued: the connection was dropped instead */
    if (conn->close_received) {
        conn->phase = PARTY__CONN_DONE;
        conn_close_after_flush(conn);
        return;
    }
    conn->phase = PARTY__CONN_CLOSING;
    conn_timer_start(conn, seconds_to_ms(party__conn_loop(conn)->cfg.close_timeout),
                     on_close_timeout);
}

void party__conn_after_close(party_conn *conn, const char *reason) {
    if (conn->transport_closing)
        return;
    if (conn->close_received && !conn->close_sent) {
        /* Echo the peer's code and reason, so it sees its own close. */
        int code = conn->peer_close_code;
        party__buf *frame = party__ws_close_frame_new(code == PARTY__WS_NO_STATUS ? 0 : code,
                                                      reason, reason != NULL ? strlen(reason) : 0);
        conn->close_sent = 1;
        if (frame != NULL) {
            (void)party__conn_queue(conn, frame);
            party__buf_release(frame);
        }
    }
    conn->phase = PARTY__CONN_DONE;
    conn_timer_stop(conn);
    conn_close_after_flush(conn);
}

/* ---- reading ---- */

static void on_read(party_conn *conn, const party__transport_ops *ops, ssize_t nread,
                    const uv_buf_t *buf) {
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            party__log_debug(party__conn_loop(conn), "conn %s: read: %s", conn->id ? conn->id : "-",
                             uv_strerror((int)nread));
        conn_close_now(conn);
        return;
    }
    party__conn_loop(conn)->bytes_in += (uint64_t)nread;
    conn->heard = 1; /* keepalive: any bytes answer a ping */
    ops->on_bytes(conn, buf->base, (size_t)nread);
}

/* Reads while the socket has bytes and the connection wants them: as many
 * reads as fill their buffer, at most READS_PER_TURN (the socket stays
 * readable for the next loop turn). */
#define READS_PER_TURN 32

/* The PROXY header a --proxy-protocol listener expects first: read
 * below the transport (it comes before a TLS handshake too), and never
 * past its end, so what follows is read as if it were the first byte. A
 * header is peeked at, then only its bytes are taken; one that came in
 * pieces waits in the session meanwhile. 0: done, read on; 1: more is
 * needed (or the socket is empty); -1: the connection was closed. */
static NOT_INLINED int proxy_read(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *s = party__conn_http(conn);
    size_t have = s->proxy_have;
    party__proxy_header h;
    const char *error = NULL;
    char from[PARTY__ADDR_TEXT_MAX];
    ssize_t n;
    int r;

    if (have > 0)
        memcpy(lp->read_buf, s->proxy_buf, have);
    do
        n = recv(conn->fd, lp->read_buf + have, PARTY__READ_BUF_SIZE - have, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 1;
    if (n <= 0) {
        conn_close_now(conn); /* gone before saying who it serves: nothing to count */
        return -1;
    }
    r = party__proxy_parse(lp->read_buf, have + (size_t)n, &h, &error);
    if (r == PARTY__PROXY_AGAIN && have + (size_t)n >= PARTY__READ_BUF_SIZE) {
        r = PARTY__PROXY_ERROR;
        error = "PROXY header longer than 64 KiB";
    }
    if (r == PARTY__PROXY_ERROR) {
        lp->proxy_refused++;
        party__log_info(lp, "proxy protocol: %s, from %s (--proxy-protocol); closing", error,
                        party__addr_text(&s->peer, from, sizeof(from)));
        conn_close_now(conn);
        return -1;
    }
    /* Take what belongs to the header: all of it when it is whole, else
     * everything peeked (all of it is header) into the session. */
    {
        size_t take = r == PARTY__PROXY_DONE ? h.len - have : (size_t)n;
        char *dst;
        if (r == PARTY__PROXY_AGAIN) {
            char *grown = party__realloc(s->proxy_buf, have + take);
            if (grown == NULL) {
                conn_close_now(conn);
                return -1;
            }
            s->proxy_buf = grown;
            dst = grown + have;
        } else {
            dst = lp->read_buf + have;
        }
        do
            n = recv(conn->fd, dst, take, 0);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)take) { /* what was peeked is there: this does not happen */
            conn_close_now(conn);
            return -1;
        }
        if (r == PARTY__PROXY_AGAIN) {
            s->proxy_have = (uint32_t)(have + take);
            return 1;
        }
    }
    party__free(s->proxy_buf);
    s->proxy_buf = NULL;
    s->proxy_have = 0;
    conn->proxy_pending = 0;
    if (!h.local) /* LOCAL: the proxy's own health check; the peer is the proxy */
        s->peer = conn->peer = h.source;
    return 0;
}

static void conn_read(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    unsigned turns;

    /* The message meter's clock for what this read brings (see
     * party__conn_meter); an exempt connection's messages skip the meter.
     * One that stops being exempt during the read (its upgrade named
     * another client) meters with an earlier clock, which only makes it
     * look further ahead: the meter's slow path reads the clock again. */
    if (!conn->unmetered)
        lp->meter_now = party__loop_now(lp) * 1000000;
    if (conn->proxy_pending && proxy_read(conn) != 0)
        return;
    for (turns = 0; turns < READS_PER_TURN && conn->reading && !conn->transport_closing; turns++) {
        /* Asked each time: input may have changed the transport. */
        const party__transport_ops *ops = conn_ops(conn);
        uv_buf_t buf;
        ssize_t n;

        if (ops->read_space(conn, &buf) != 0)
            return; /* the connection failed, or takes no input now */
        do
            n = read(conn->fd, buf.base, buf.len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        on_read(conn, ops, n < 0 ? uv_translate_sys_error(errno) : n == 0 ? UV_EOF : n, &buf);
        if (n <= 0 || (size_t)n < buf.len)
            return;
    }
}

/* The loop's epoll set reported events for the socket. */
static void conn_io(party_conn *conn, uint32_t events) {
    if (conn->transport_closing)
        return; /* closed by an earlier event of the batch */
    if (events & EPOLLERR) {
        /* A socket error. What the peer sent before it is still read, if
         * reading; then the connection ends. */
        (void)conn_epoll_set(conn, 0);
        conn_read(conn);
        if (!conn->transport_closing) {
            party__log_debug(party__conn_loop(conn), "conn %s: socket error",
                             conn->id ? conn->id : "-");
            conn_close_now(conn);
        }
        return;
    }
    /* A hang-up wakes whatever is watched: the read finds the end, the
     * write the error. */
    if (events & EPOLLHUP)
        events |= ((conn->watched & WATCH_IN) ? (uint32_t)EPOLLIN : 0u) |
                  ((conn->watched & WATCH_OUT) ? (uint32_t)EPOLLOUT : 0u);
    if ((events & EPOLLOUT) && conn->writing) {
        conn->writing = 0;
        conn_flush(conn);
        conn_watch(conn); /* no longer for room to write, unless it waits again */
    }
    if ((events & EPOLLIN) != 0) {
        if (conn->reading)
            conn_read(conn);
        else
            conn_watch_as(conn, 1); /* input waits in the socket until wanted */
    }
}

/* party__conn_input in the HTTP phases: the bytes are in the HTTP buffer,
 * behind what it held. */
static NOT_INLINED void http_input(party_conn *conn, size_t len) {
    party__http_session *s = party__conn_http(conn);
    if (s == NULL)
        return;
    s->len += len;
    /* Past the HTTP phase, a transport fed what it held: it waits behind
     * the request until the request is answered. */
    if (conn->phase == PARTY__CONN_HTTP)
        conn_parse_http(conn);
}

void party__conn_input(party_conn *conn, char *data, size_t len) {
    switch (conn->phase) {
    case PARTY__CONN_HTTP:
    case PARTY__CONN_HTTP_BUSY:
    case PARTY__CONN_UPGRADING:
        http_input(conn, len);
        break;
    case PARTY__CONN_OPEN:
    case PARTY__CONN_CLOSING:
        conn_feed_ws(conn, data, len);
        break;
    default:
        break; /* lingering: drop */
    }
}

/* A connection for the socket fd, or NULL (fd then closed). */
static party_conn *conn_new(party__loop *lp, int fd) {
    party_conn *conn;
    int r = conn_epoll_open(lp);

    if (r != 0) {
        party__log_warn(lp, "new connection: cannot watch its socket: %s", uv_strerror(r));
        close(fd);
        return NULL;
    }
    conn = conn_alloc(lp);
    if (conn == NULL) {
        party__log_error(lp, "new connection: out of memory");
        close(fd);
        return NULL;
    }
    conn->lp = lp;
    conn->fd = fd;
    conn->refs = 1;
    __atomic_fetch_add(&lp->n_conns, 1, __ATOMIC_RELAXED);
    return conn;
}

static void conn_begin_http(party_conn *conn) {
    conn->phase = PARTY__CONN_HTTP;
    conn_timer_start(conn, seconds_to_ms(party__conn_loop(conn)->cfg.header_timeout),
                     on_header_timeout);
    conn_start_reading(conn);
}

void party__conn_accept_fd(party__loop *lp, int fd, const party__transport_ops *transport,
                           const void *peer) {
    int on = 1;
    party_conn *conn = conn_new(lp, fd);

    if (conn == NULL)
        return;
    if (http_session_new(conn) != 0) {
        party__log_error(lp, "new connection: out of memory");
        conn->transport_closing = 1;
        conn_close_socket(conn);
        return;
    }
    if (peer != NULL)
        (void)party__addr_from_sockaddr(&conn->peer, peer);
    party__conn_http(conn)->peer = conn->peer;
    conn->proxy_pending = lp->cfg.proxy_protocol != 0;
    /* Frames go out as written: no waiting to fill a segment. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (transport != NULL && transport->accept != NULL && transport->accept(conn) != 0) {
        party__log_error(lp, "accept: out of memory for %s", transport->name);
        conn_close_now(conn);
        return;
    }
    conn_begin_http(conn);
}

int party__conn_adopt(party__loop *lp, int fd, int internal) {
    party_conn *conn;
    int flags = fcntl(fd, F_GETFL);

    /* Reads and writes must never block the loop. */
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        close(fd);
        return PARTY_EIO;
    }
    conn = conn_new(lp, fd);
    if (conn == NULL)
        return PARTY_ENOMEM;
    if (http_session_new(conn) != 0) {
        conn->transport_closing = 1;
        conn_close_socket(conn);
        return PARTY_ENOMEM;
    }
    conn->internal = (uint8_t)internal;
    conn->unmetered = 1; /* no network client: the runtime's own, or the test harness's */
    conn_begin_http(conn);
    return 0;
}

/* ---- hand-off to another loop ---- */

int party__conn_detach(party_conn *conn, party__conn_handoff *out) {
    party__loop *lp = party__conn_loop(conn);

    if ((conn->out != NULL && conn->out->len > 0) || conn->writing || conn->dirty ||
        conn->gate_next != NULL) {
        /* An answer to an earlier request is still on its way out through
         * this loop's handle, or held until its room commits: the request
         * is reported again once it is written (conn_output_drained). */
        conn->handoff_wait = 1;
        return 1;
    }
    assert(conn->phase == PARTY__CONN_HTTP_BUSY && party__conn_http(conn) != NULL &&
           !party__conn_http(conn)->have_preq);
    /* The socket itself moves: this loop's epoll set stops watching it
     * before the other loop's starts, and the connection here closes
     * without closing it. */
    (void)conn_epoll_set(conn, 0);
    out->fd = conn->fd;
    out->peer = conn->peer;
    out->addr_counted = conn->addr_counted;
    out->unmetered = conn->unmetered;
    conn->addr_counted = 0; /* the count goes with it */
    conn->fd = -1;
    out->internal = conn->internal;
    out->keep_alive = conn->keep_alive;
    out->head_only = conn->head_only;
    /* The request as parsed, with the bytes read behind it: the buffer it
     * points into moves with it, so nothing is parsed again. */
    out->http = conn->busy->http;
    conn->busy->http = NULL;
    busy_put(conn);
    lp->http_ended++;
    out->transport = party__conn_transport(conn);
    (void)party__conn_set_transport(conn, NULL); /* cannot fail */
    /* Not in a room yet: nobody is told. The other loop counts it. */
    conn->handed_off = 1;
    __atomic_fetch_sub(&lp->n_conns, 1, __ATOMIC_RELAXED);
    conn_close_now(conn);
    return 0;
}

/* Frees what a detached connection carries but its socket. */
static void handoff_free(party__conn_handoff *h) {
    if (h->transport != NULL)
        h->transport->ops->free(h->transport);
    h->transport = NULL;
    http_session_free(h->http);
    h->http = NULL;
}

int party__conn_adopt_handoff(party__loop *lp, party__conn_handoff *h) {
    party_conn *conn = conn_new(lp, h->fd);
    const party__transport_ops *ops;

    if (conn == NULL) {
        handoff_free(h);
        return PARTY_ENOMEM;
    }
    if (busy_get(conn) == NULL ||
        (h->transport != NULL && party__conn_set_transport(conn, h->transport) != 0)) {
        handoff_free(h);
        conn->transport_closing = 1;
        conn_close_socket(conn);
        return PARTY_ENOMEM;
    }
    conn->busy->http = h->http;
    conn->peer = h->peer;
    conn->addr_counted = h->addr_counted;
    conn->unmetered = h->unmetered;
    conn->client_known = 1; /* its request was parsed where it was read */
    conn->internal = h->internal;
    conn->keep_alive = h->keep_alive;
    conn->head_only = h->head_only;
    /* As right after conn_parse_one: no header timeout, not reading. */
    conn->phase = PARTY__CONN_HTTP_BUSY;
    upcalls(conn)->request(conn);
    /* Records that arrived behind the request were read from the socket
     * by the other loop and wait inside the transport: no read here would
     * bring them up. */
    ops = conn_ops(conn);
    if (!conn->transport_closing && ops->resume != NULL)
        ops->resume(conn);
    return 0;
}

void party__conn_handoff_refuse(party__conn_handoff *h) {
    static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Length: 21\r\nConnection: close\r\n\r\n"
                                  "server shutting down\n";

    /* A plaintext socket only: over TLS the answer would need the session,
     * which is not worth resuming to say goodbye. The socket is
     * non-blocking and the answer small. */
    if (h->transport == NULL)
        (void)!write(h->fd, refusal, sizeof(refusal) - 1);
    close(h->fd);
    handoff_free(h);
}

void party__conn_make_id(char out[37]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t i, n = 0;

    if (RAND_bytes(b, sizeof(b)) != 1)
        uv_random(NULL, NULL, b, sizeof(b), 0, NULL);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = hex[b[i] >> 4];
        out[n++] = hex[b[i] & 15];
    }
    out[n] = '\0';
}

/* The output gate dropped what a failed commit produced for this
 * connection: a WebSocket is closed with 1011, an HTTP request (or an
 * upgrade whose 101 was held) gets 500; when the commit was refused
 * because the room moved to another node (moved), 1012 and 503 +
 * Retry-After. Either way the connection ends. */
static void conn_fail_uncommitted(party_conn *conn, int moved) {
    static const char text[] = "storage commit failed; nothing of this request was kept\n";
    static const char moved_text[] = "the room moved to another node; nothing of this request "
                                     "was kept: try again\n";
    party_response res;
    party__buf *buf;

    if (conn->id != NULL && !conn->handshake_held) {
        if (conn->close_sent)
            conn_close_now(conn); /* our Close was among what was dropped */
        else if (moved)
            party__conn_start_close(conn, PARTY__WS_SERVICE_RESTART, "room moved");
        else
            party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "storage commit failed");
        return;
    }
    conn->handshake_held = 0;
    party__response_init(&res);
    party__response_text(&res, moved ? 503 : 500, moved ? moved_text : text);
    if (moved)
        party_response_set_header(&res, "Retry-After", "1");
    buf = party__response_serialize(&res, 0, 0, party__loop_http_date(party__conn_loop(conn)));
    party__response_free(&res);
    conn->phase = PARTY__CONN_HTTP_BUSY; /* lets the answer through */
    if (buf != NULL) {
        (void)party__conn_queue(conn, buf);
        party__buf_release(buf);
    }
    conn->phase = PARTY__CONN_DONE;
    conn_close_after_flush(conn);
}

/* ---- the output gate ---- */

void party__conn_hold(party_conn *conn, party__conn_gate *gate) {
    if (conn->gate_next != NULL || conn->transport_closing)
        return;
    /* The mark is at the end of the queue (held is 0): whatever is
     * queued now still goes. */
    party__conn_ref(conn);
    conn->gate_next = conn; /* the last of the list points to itself */
    if (gate->tail != NULL)
        gate->tail->gate_next = conn;
    else
        gate->head = conn;
    gate->tail = conn;
}

void party__conn_hold_acted(party_conn *conn, party__conn_gate *gate) {
    party__conn_hold(conn, gate);
    if (conn->gate_next != NULL)
        conn->gate_acted = 1;
}

/* Takes conn out of the gate being emptied (the mark goes); the next
 * connection of the list, or NULL. */
static party_conn *gate_leave(party_conn *conn) {
    party_conn *next = conn->gate_next == conn ? NULL : conn->gate_next;
    conn->gate_next = NULL;
    if (conn->out != NULL)
        conn->out->held = 0;
    conn->gate_acted = 0;
    return next;
}

void party__conn_gate_release(party__conn_gate *gate) {
    party_conn *conn = gate->head, *next;

    gate->head = gate->tail = NULL;
    for (; conn != NULL; conn = next) {
        next = gate_leave(conn);
        conn->handshake_held = 0;
        /* What waited is written at the end of this loop turn, and a close
         * or hand-off that waited for it proceeds then. */
        if (!conn->transport_closing)
            mark_dirty(conn);
        party__conn_unref(conn);
    }
}

/* Frees the output behind the mark. */
static void out_drop_held(party_conn *conn) {
    party__conn_sendq *q = conn->out;

    if (q == NULL)
        return;
    while (q->held > 0) {
        party__buf **slot = out_slot(q, q->len - 1);
        q->bytes -= (uint32_t)(*slot)->len;
        party__buf_release(*slot);
        q->len--;
        q->held--;
    }
    if (q->len == 0 && q->cap <= 1)
        sendq_drop(conn);
}

static void gate_drop(party__conn_gate *gate, int moved) {
    party_conn *conn = gate->head, *next;

    gate->head = gate->tail = NULL;
    for (; conn != NULL; conn = next) {
        /* Lost output, or a change its client made that was not kept. */
        int lost = (conn->out != NULL && conn->out->held > 0) || conn->gate_acted;
        out_drop_held(conn);
        next = gate_leave(conn);
        if (!conn->transport_closing) {
            /* The effects it announced are gone: it fails, once. */
            if (lost)
                conn_fail_uncommitted(conn, moved);
            else
                mark_dirty(conn);
        }
        conn->handshake_held = 0;
        party__conn_unref(conn);
    }
}

void party__conn_gate_drop(party__conn_gate *gate) {
    gate_drop(gate, 0);
}

void party__conn_gate_drop_moved(party__conn_gate *gate) {
    gate_drop(gate, 1);
}

/* ---- a room's connections ---- */

void party__conn_list_append(party__conn_list *list, party_conn *conn) {
    conn->room_prev = list->tail;
    conn->room_next = NULL;
    if (list->tail != NULL)
        list->tail->room_next = conn;
    else
        list->head = conn;
    list->tail = conn;
    conn->in_room = 1;
}

int party__conn_list_remove(party__conn_list *list, party_conn *conn) {
    if (!conn->in_room)
        return 0;
    if (conn->room_prev != NULL)
        conn->room_prev->room_next = conn->room_next;
    else
        list->head = conn->room_next;
    if (conn->room_next != NULL)
        conn->room_next->room_prev = conn->room_prev;
    else
        list->tail = conn->room_prev;
    conn->room_prev = conn->room_next = NULL;
    conn->in_room = 0;
    return 1;
}

void party__conn_leave_room(party_conn *conn) {
    conn->room = NULL;
}

void party__conn_mark_closing(party_conn *conn) {
    if (conn->phase == PARTY__CONN_OPEN)
        conn->phase = PARTY__CONN_CLOSING;
}

/* The id comes first (the id itself, not a copy), the others are copied
 * into one block allocated only when there are any. */
int party__conn_set_tags(party_conn *conn, const char *const *tags, size_t n) {
    size_t total = (n + 1) * sizeof(char *), i;
    party__conn_extra *x;
    char **block;
    char *cursor;

    if (conn->extra != NULL) {
        party__free(conn->extra->tags);
        conn->extra->tags = NULL;
        extra_put(conn);
    }
    conn->n_tags = 1;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        total += strlen(tags[i]) + 1;
    block = party__malloc(total);
    x = block != NULL ? extra_get(conn) : NULL;
    if (x == NULL) {
        party__free(block);
        return PARTY_ENOMEM;
    }
    cursor = (char *)(block + n + 1);
    block[0] = conn->id;
    for (i = 0; i < n; i++) {
        block[i + 1] = cursor;
        strcpy(cursor, tags[i]);
        cursor += strlen(tags[i]) + 1;
    }
    x->tags = block;
    conn->n_tags = (uint8_t)(n + 1);
    return 0;
}

const char *const *party__conn_tag_list(const party_conn *conn) {
    /* With no tags but the id, the id pointer itself is the list. */
    if (conn->extra != NULL && conn->extra->tags != NULL)
        return (const char *const *)conn->extra->tags;
    return (const char *const *)&conn->id;
}

typedef struct walk_arg {
    void (*fn)(party_conn *conn, void *arg);
    void *arg;
} walk_arg;

static void walk_one(void *obj, void *arg) {
    party_conn *conn = obj;
    walk_arg *w = arg;
    if (!conn->transport_closing)
        w->fn(conn, w->arg);
}

void party__conn_foreach_with(party__loop *lp, void (*fn)(party_conn *conn, void *arg), void *arg) {
    /* The loop's slabs hold every connection struct: no list of them to
     * keep in each. */
    walk_arg w;
    w.fn = fn;
    w.arg = arg;
    party__slabs_foreach(lp->conn_slabs, walk_one, &w);
}

static void call_plain(party_conn *conn, void *arg) {
    (*(void (**)(party_conn *))arg)(conn);
}

void party__conn_foreach(party__loop *lp, void (*fn)(party_conn *conn)) {
    party__conn_foreach_with(lp, call_plain, &fn);
}

int party__conn_fd(const party_conn *conn) {
    return conn->fd;
}

/* ---- public connection API ---- */

const char *party_conn_id(party_conn *conn) {
    return party__conn_id(conn);
}

const char *party_conn_uri(party_conn *conn) {
    if (conn->id == NULL)
        return NULL;
    /* The uri starts the block when the id is its tail, else follows the id. */
    return conn->id_at > 0 ? ident_block(conn) : conn->id + strlen(conn->id) + 1;
}

size_t party_conn_tags(party_conn *conn, const char *const **tags) {
    if (tags != NULL)
        *tags = party__conn_tag_list(conn);
    return conn->n_tags;
}

int party_conn_set_state(party_conn *conn, const void *data, size_t len) {
    void *copy = NULL;

    if (conn == NULL || (data == NULL && len > 0))
        return PARTY_EINVAL;
    if (len > PARTY_MAX_CONN_STATE)
        return PARTY_ETOOBIG;
    if (len > 0) {
        copy = party__malloc(len);
        if (copy == NULL)
            return PARTY_ENOMEM;
        memcpy(copy, data, len);
        if (extra_get(conn) == NULL) {
            party__free(copy);
            return PARTY_ENOMEM;
        }
    }
    if (conn->extra != NULL) {
        party__free(conn->extra->state);
        conn->extra->state = copy;
        conn->extra->state_len = (uint32_t)len;
        extra_put(conn);
    }
    return 0;
}

const void *party_conn_state(party_conn *conn, size_t *len) {
    if (len != NULL)
        *len = conn->extra != NULL ? conn->extra->state_len : 0;
    return conn->extra != NULL ? conn->extra->state : NULL;
}

int party_conn_remote_addr(party_conn *conn, char *out, size_t size) {
    return party__addr_text_checked(conn != NULL ? &conn->peer : NULL, out, size);
}

/* ---- the message meter ---- */

/* Pauses after which a client still over its limit is closed with 1013. */
#define METER_STRIKES 4

void party__meter_init(party__meter *m, double msgs_per_s, double bytes_per_s) {
    memset(m, 0, sizeof(*m));
    if (msgs_per_s > 0) {
        m->msg_ns = (uint64_t)(1e9 / msgs_per_s);
        if (m->msg_ns == 0)
            m->msg_ns = 1;
        /* A second's worth at once (at least one message). */
        m->msg_tolerance = msgs_per_s > 1 ? (uint64_t)1e9 - m->msg_ns : 0;
    }
    if (bytes_per_s > 0) {
        m->byte_ns_fp = (uint64_t)(1e9 * 65536.0 / bytes_per_s);
        if (m->byte_ns_fp == 0)
            m->byte_ns_fp = 1;
        m->byte_tolerance = (uint64_t)1e9;
    }
}

void party__conn_meter_release(party_conn *conn) {
    party__meter_state *st = conn->meter;
    uint64_t now;

    if (st == NULL || st->paused)
        return;
    now = party__loop_now(party__conn_loop(conn)) * 1000000;
    if (st->msg_due <= now && st->byte_due <= now) { /* refilled: as a new one */
        party__free(st);
        conn->meter = NULL;
    }
}

static void on_meter_resume(uv_timer_t *timer) {
    party_conn *conn = timer->data;
    party__meter_state *st = conn->meter;

    conn_timer_stop(conn);
    if (st != NULL)
        st->paused = 0;
    if (conn->phase == PARTY__CONN_OPEN && !conn->close_received && !conn->transport_closing)
        conn_start_reading(conn);
}

/* The client is over (which: 1 messages, 2 bytes) by ahead_ns. */
static NOT_INLINED int meter_over(party_conn *conn, party__meter_state *st, int which,
                                  uint64_t ahead_ns) {
    party__loop *lp = party__conn_loop(conn);
    uint64_t wait_ms = (ahead_ns + 999999) / 1000000;

    if (st->paused)
        return 0; /* read with the rest of a read: already paused for it */
    if (which == 1)
        lp->limit_conn_msgs++;
    else
        lp->limit_conn_bytes++;
    if (++st->strikes > METER_STRIKES) {
        char from[PARTY__ADDR_TEXT_MAX];
        lp->limit_conn_closed++;
        party__log_info(lp, "conn %s from %s: over %s again after %d pauses; closing with 1013",
                        conn->id, party__addr_text(&conn->peer, from, sizeof(from)),
                        which == 1 ? "limit_conn_msgs (--limit-conn-msgs)"
                                   : "limit_conn_bytes (--limit-conn-bytes)",
                        METER_STRIKES);
        party__conn_start_close(conn, PARTY__WS_TRY_AGAIN_LATER,
                                which == 1 ? "rate limit: messages per second"
                                           : "rate limit: bytes per second");
        return 1;
    }
    st->paused = 1;
    st->which = (uint8_t)which;
    conn_stop_reading(conn);
    conn_timer_start(conn, wait_ms > 0 ? wait_ms : 1, on_meter_resume);
    return 0;
}

int party__conn_meter_slow(party_conn *conn, size_t len, const party__meter *m) {
    party__meter_state *st = conn->meter;
    party__loop *lp = party__conn_loop(conn);
    /* party__loop_now, without its call: this runs on every message. */
    uint64_t now = (lp->virtual_clock ? lp->virtual_now : uv_now(&lp->loop)) * 1000000;
    uint64_t msg_ahead, byte_ahead;

    if (st == NULL) {
        st = party__calloc(1, sizeof(*st));
        if (st == NULL)
            return 0; /* not metered rather than refused: the limit is generous */
        conn->meter = st;
    }
    /* How far ahead of now the client's messages and bytes are "due",
     * before this one: within the tolerance it may send. */
    msg_ahead = st->msg_due > now ? st->msg_due - now : 0;
    byte_ahead = st->byte_due > now ? st->byte_due - now : 0;
    st->msg_due = now + msg_ahead + m->msg_ns;
    st->byte_due = now + byte_ahead + (((uint64_t)len * m->byte_ns_fp) >> 16);
    if (m->msg_ns != 0 && msg_ahead > m->msg_tolerance)
        return meter_over(conn, st, 1, st->msg_due - now - m->msg_tolerance);
    if (m->byte_ns_fp != 0 && byte_ahead > m->byte_tolerance)
        return meter_over(conn, st, 2, st->byte_due - now - m->byte_tolerance);
    /* Well inside both again: the client is forgiven its pauses. */
    if (st->strikes != 0 && msg_ahead <= m->msg_tolerance / 2 &&
        byte_ahead <= m->byte_tolerance / 2)
        st->strikes = 0;
    return 0;
}

/* ---- upgrades: a connection handed to another process ---- */

void party__conn_freeze(party_conn *conn) {
    conn_stop_reading(conn);
    conn_watch_as(conn, 1); /* input waits in the socket, unwatched */
}

/* 1 if the connection reads while it is in this phase. */
static int conn_should_read(const party_conn *conn) {
    if (conn->transport_closing)
        return 0;
    if (conn->phase == PARTY__CONN_HTTP)
        return 1;
    return (conn->phase == PARTY__CONN_OPEN || conn->phase == PARTY__CONN_CLOSING) &&
           party__conn_http(conn) == NULL && !conn->close_received;
}

void party__conn_thaw(party_conn *conn) {
    if (conn->transport_closing)
        return;
    if (conn->phase == PARTY__CONN_HTTP && (conn->busy == NULL || conn->busy->timer == NULL))
        conn_timer_start(conn, seconds_to_ms(party__conn_loop(conn)->cfg.header_timeout),
                         on_header_timeout);
    if (conn_should_read(conn))
        conn_start_reading(conn);
    if (out_released(conn) > 0)
        mark_dirty(conn);
}

int party__conn_quiet(const party_conn *conn) {
    if (conn->transport_closing || conn->phase == PARTY__CONN_DONE)
        return 1;
    /* A request with a room, or a handshake waiting for its connect: its
     * answer is on its way. Held output waits for a commit. */
    return conn->phase != PARTY__CONN_HTTP_BUSY && conn->phase != PARTY__CONN_UPGRADING &&
           conn->gate_next == NULL && !conn->handoff_wait;
}

int party__conn_handover_kind(const party_conn *conn) {
    if (conn->transport_closing || conn->internal || conn->gate_next != NULL || conn->handoff_wait)
        return 0;
    if (conn->transport_slot != 0)
        return -1; /* TLS: its session cannot move */
    if (conn->phase == PARTY__CONN_OPEN && conn->in_room && party__conn_http(conn) == NULL &&
        !conn->close_sent && !conn->close_received && !conn->handshake_held && conn->id != NULL)
        return PARTY__CONN_RECORD_WS;
    if (conn->phase == PARTY__CONN_HTTP && party__conn_http(conn) != NULL &&
        party__conn_http(conn)->consumed == 0)
        return PARTY__CONN_RECORD_HTTP;
    return 0;
}

int party__conn_export(party_conn *conn, party__conn_record *rec, char **owned) {
    int kind = party__conn_handover_kind(conn);
    party__conn_sendq *q = conn->out;
    uint32_t i;
    size_t at = 0;

    *owned = NULL;
    memset(rec, 0, sizeof(*rec));
    if (kind <= 0)
        return kind;
    rec->kind = (party__conn_record_kind)kind;
    /* The client, not the socket's peer: behind a PROXY header or a
     * trusted proxy they differ, and the next process cannot ask again. */
    if (conn->peer.family == PARTY__ADDR_V4 || conn->peer.family == PARTY__ADDR_V6) {
        rec->peer_family = conn->peer.family;
        memcpy(rec->peer_addr, conn->peer.bytes, conn->peer.family == PARTY__ADDR_V4 ? 4 : 16);
        rec->peer_port = conn->peer.port;
    }
    if (conn->client_known)
        rec->flags |= PARTY__CONN_RECORD_CLIENT_KNOWN;
    if (conn->proxy_pending) {
        /* Its PROXY header has not all come: what came goes as input. */
        rec->flags |= PARTY__CONN_RECORD_PROXY_PENDING;
        rec->input = party__slice_make(party__conn_http(conn)->proxy_buf,
                                       party__conn_http(conn)->proxy_have);
    }
    /* The unsent output, in one piece: the queue's buffers are shared
     * with other connections (a broadcast). None is held (the kind says
     * so): all of it is the client's. */
    if (q != NULL && q->bytes > 0) {
        *owned = party__malloc(q->bytes);
        if (*owned == NULL)
            return PARTY_ENOMEM;
        for (i = 0; i < q->len; i++) {
            party__buf *b = *out_slot(q, i);
            size_t off = i == 0 ? q->offset : 0;
            memcpy(*owned + at, b->data + off, b->len - off);
            at += b->len - off;
        }
        rec->output = party__slice_make(*owned, at);
    }
    conn_timer_stop(conn); /* no timeout may act on a socket that moved */
    if (kind == PARTY__CONN_RECORD_HTTP) {
        if (!conn->proxy_pending)
            rec->input =
                party__slice_make(party__conn_http(conn)->buf, party__conn_http(conn)->len);
        return kind;
    }
    rec->flags |= conn->readonly ? PARTY__CONN_RECORD_READONLY : 0;
    rec->id = party__slice_make(conn->id, strlen(conn->id));
    rec->uri = party__slice_make(party_conn_uri(conn), strlen(party_conn_uri(conn)));
    for (i = 1; i < conn->n_tags; i++) {
        const char *tag = party__conn_tag_list(conn)[i];
        rec->tags[rec->n_tags++] = party__slice_make(tag, strlen(tag));
    }
    if (conn->extra != NULL)
        rec->state = party__slice_make(conn->extra->state, conn->extra->state_len);
    /* A frame or message partly read is in the busy record; with none,
     * nothing is pending (rec was zeroed). */
    if (conn->busy != NULL && conn->busy->reading_frame)
        party__ws_reader_pending(&conn->busy->reader, &rec->input, &rec->msg, &rec->msg_opcode,
                                 &rec->utf8_state);
    return kind;
}

void party__conn_forget(party_conn *conn) {
    if (conn->transport_closing)
        return;
    /* No Close, no on_close, no shutdown(): the socket lives on in the
     * process that took it over; this one only drops its descriptor. */
    conn->close_reported = 1;
    conn->transport_closing = 1;
    conn->phase = PARTY__CONN_DONE;
    conn_timer_stop(conn);
    conn_close_socket(conn);
}

/* Sets the id and uri block of an adopted WebSocket: the id, then the uri
 * (id_at 0). */
static int adopt_ident(party_conn *conn, party__slice id, party__slice uri) {
    size_t need = id.len + 1 + uri.len + 1;
    char *block = need <= sizeof(conn->ident) ? conn->ident : party__malloc(need);

    if (block == NULL)
        return PARTY_ENOMEM;
    memcpy(block, id.ptr, id.len);
    block[id.len] = '\0';
    memcpy(block + id.len + 1, uri.ptr, uri.len);
    block[id.len + 1 + uri.len] = '\0';
    conn->id = block;
    conn->id_at = 0;
    return 0;
}

static int adopt_ws(party_conn *conn, const party__conn_record *rec) {
    party__loop *lp = party__conn_loop(conn);
    char tag_text[PARTY__CONN_RECORD_MAX_TAGS][PARTY_MAX_TAG_LEN + 1];
    const char *tags[PARTY__CONN_RECORD_MAX_TAGS];
    size_t i;
    int r;

    if (rec->id.len > PARTY_MAX_TAG_LEN || memchr(rec->id.ptr, '\0', rec->id.len) != NULL ||
        memchr(rec->uri.ptr, '\0', rec->uri.len) != NULL || rec->state.len > PARTY_MAX_CONN_STATE)
        return PARTY_EINVAL;
    if ((r = adopt_ident(conn, rec->id, rec->uri)) != 0)
        return r;
    for (i = 0; i < rec->n_tags; i++) {
        if (rec->tags[i].len > PARTY_MAX_TAG_LEN ||
            memchr(rec->tags[i].ptr, '\0', rec->tags[i].len) != NULL)
            return PARTY_EINVAL;
        memcpy(tag_text[i], rec->tags[i].ptr, rec->tags[i].len);
        tag_text[i][rec->tags[i].len] = '\0';
        tags[i] = tag_text[i];
    }
    if ((r = party__conn_set_tags(conn, tags, rec->n_tags)) != 0)
        return r;
    if (rec->state.len > 0 && (r = party_conn_set_state(conn, rec->state.ptr, rec->state.len)) != 0)
        return r;
    conn->readonly = (rec->flags & PARTY__CONN_RECORD_READONLY) != 0;
    if (rec->msg_opcode != 0 || rec->msg.len > 0) {
        /* A fragmented message was being assembled: its reader lives in
         * the busy record, as one partly read here would (conn_feed_ws).
         * A partial frame is fed again (party__conn_adopt_start). */
        party__conn_busy *b = busy_get(conn);
        if (b == NULL)
            return PARTY_ENOMEM;
        party__ws_reader_init(&b->reader, lp->cfg.max_message_bytes, 1);
        b->reading_frame = 1; /* from here conn_free resets the reader */
        r = party__ws_reader_restore(&b->reader, rec->msg_opcode, rec->utf8_state, rec->msg);
        if (r != 0)
            return r;
    }
    conn->phase = PARTY__CONN_OPEN;
    return 0;
}

/* The client the other process knew (a PROXY header's, a trusted
 * proxy's), and its place in the per-address counts: a connection whose
 * client was known was counted there, so it is counted here, without a
 * limit (it is open already), and given back when it closes. */
static int adopt_client(party_conn *conn, const party__conn_record *rec) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *http = party__conn_http(conn);
    unsigned retry_after;
    int counted = 0;

    if (rec->peer_family == PARTY__ADDR_V4 || rec->peer_family == PARTY__ADDR_V6) {
        conn->peer.family = rec->peer_family;
        memcpy(conn->peer.bytes, rec->peer_addr, rec->peer_family == PARTY__ADDR_V4 ? 4 : 16);
        conn->peer.port = rec->peer_port;
    }
    if (http != NULL)
        http->peer = http->remote = conn->peer;
    if (rec->kind == PARTY__CONN_RECORD_HTTP && (rec->flags & PARTY__CONN_RECORD_PROXY_PENDING)) {
        conn->proxy_pending = 1;
        if (rec->input.len > 0) {
            http->proxy_buf = party__malloc(rec->input.len);
            if (http->proxy_buf == NULL)
                return PARTY_ENOMEM;
            memcpy(http->proxy_buf, rec->input.ptr, rec->input.len);
            http->proxy_have = (uint32_t)rec->input.len;
        }
        return 0;
    }
    if (rec->kind == PARTY__CONN_RECORD_HTTP && !(rec->flags & PARTY__CONN_RECORD_CLIENT_KNOWN))
        return 0; /* its first request names its client and is counted then */
    conn->client_known = 1;
    conn->unmetered = (unsigned)conn_unmetered(lp, &conn->peer);
    if (!conn->unmetered)
        (void)party__addr_limits_take(lp->addr_limits, &conn->peer, party__loop_now(lp), 0, 0,
                                      &retry_after, &counted);
    conn->addr_counted = (unsigned)counted;
    return 0;
}

party_conn *party__conn_adopt_record(party__loop *lp, int fd, const party__conn_record *rec) {
    party_conn *conn = conn_new(lp, fd);
    int on = 1, r;

    if (conn == NULL)
        return NULL;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (rec->kind == PARTY__CONN_RECORD_WS) {
        conn->n_tags = 1;
        r = adopt_ws(conn, rec);
    } else {
        r = http_session_new(conn);
        conn->phase = PARTY__CONN_HTTP;
    }
    if (r == 0)
        r = adopt_client(conn, rec);
    if (r == 0 && rec->output.len > 0) {
        party__buf *buf = party__buf_new(rec->output.len);
        r = buf != NULL ? 0 : PARTY_ENOMEM;
        if (buf != NULL) {
            memcpy(buf->data, rec->output.ptr, rec->output.len);
            buf->len = rec->output.len;
            r = party__conn_queue(conn, buf);
            party__buf_release(buf);
        }
    }
    if (r != 0) {
        party__log_error(lp, "upgrade: cannot adopt a connection: %s", party_strerror(r));
        if (!conn->transport_closing) {
            conn->transport_closing = 1;
            conn_close_socket(conn);
        }
        return NULL;
    }
    return conn;
}

void party__conn_adopt_start(party_conn *conn, party__slice input) {
    if (conn->transport_closing)
        return;
    if (conn->phase == PARTY__CONN_HTTP) {
        party__http_session *s = party__conn_http(conn);
        if (input.len > 0 && !conn->proxy_pending) { /* else it is in proxy_buf */
            /* What the other process read of a request. */
            size_t want = input.len > HTTP_BUF_FIRST ? input.len : HTTP_BUF_FIRST;
            char *grown;
            if (input.len > s->max) {
                party__conn_http_fail(conn, 413, "request exceeds max_body_bytes\n");
                return;
            }
            if (want > s->cap) {
                grown = party__realloc(s->buf, want);
                if (grown == NULL) {
                    conn_close_now(conn);
                    return;
                }
                s->buf = grown;
                s->cap = want;
            }
            memcpy(s->buf, input.ptr, input.len);
            s->len = input.len;
        }
        conn_begin_http(conn);
        if (s->len > 0)
            conn_parse_http(conn);
        return;
    }
    if (input.len > 0) {
        /* Frames are unmasked in place: the reader gets a copy. */
        char *copy = party__malloc(input.len);
        if (copy == NULL) {
            party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "out of memory");
            return;
        }
        memcpy(copy, input.ptr, input.len);
        conn_feed_ws(conn, copy, input.len);
        party__free(copy);
    }
    if (conn->phase == PARTY__CONN_OPEN && !conn->close_received)
        conn_start_reading(conn);
}

void party__conn_enter_room(party_conn *conn, struct party_room *room) {
    conn->room = room;
}
