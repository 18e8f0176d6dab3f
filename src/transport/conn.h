/* conn: one accepted TCP connection, from its first HTTP request through
 * the WebSocket it may become, to its close. It owns the socket, the read
 * state (HTTP session or WebSocket reader), the send queue of refcounted
 * buffers with the release mark a room's output gate moves, and the
 * identity a room sees (id, uri, tags, state). Bytes cross the socket
 * through its transport (transport.h); what it must tell the layers above
 * (a request parsed, a message, a close) it tells through the upcalls the
 * runtime installed (party__conn_upcalls). */
#ifndef PARTY_CONN_H
#define PARTY_CONN_H

#include <uv.h>

#include "party.h"
#include "addr.h"
#include "buf.h"
#include "http.h"
#include "request.h"
#include "transport.h"
#include "ws.h"

struct party__conn_record;

/* Width of party_conn.id_at: an id inside a longer uri is kept there. */
#define PARTY__CONN_ID_AT_BITS 10

typedef enum party__conn_phase {
    PARTY__CONN_HTTP,      /* reading a request */
    PARTY__CONN_HTTP_BUSY, /* a request is with a room; reading paused */
    PARTY__CONN_UPGRADING, /* routed to a room as a WebSocket; waiting for its connect */
    PARTY__CONN_OPEN,      /* WebSocket open */
    PARTY__CONN_CLOSING,   /* we sent Close; waiting for the peer's */
    PARTY__CONN_DONE,      /* no more traffic: flushing, lingering or closed */
} party__conn_phase;

/* The HTTP phase: the request buffer and what was parsed from it. */
typedef struct party__http_session {
    char *buf;
    size_t len, cap, max;
    party__http_parser parser;
    party__http_request req;
    party_request preq; /* the public view, while a room or hook has it */
    int have_preq;
    const char *const *cors; /* headers to add to this request's answer, or NULL */
    size_t consumed;         /* bytes of buf that the current request used */
    party__addr peer;        /* who sent the bytes: the socket's peer, or a PROXY header's client */
    party__addr remote;      /* the current request's client: peer, or whom a trusted proxy named */
    char *proxy_buf;         /* a PROXY header that came in pieces, while it does */
    uint32_t proxy_have;
    int cors_reflect;  /* cors: Access-Control-Allow-Origin names the request's Origin (an
                          allow-list admitted it), with Vary: Origin */
    int continue_sent; /* "100 Continue" was sent for the request being read */
    struct party__http_session *next_spare; /* in the loop's pool */
} party__http_session;

/* A connection's send queue: a ring of refcounted buffers with the
 * release mark of the output gate. A connection has one only while output
 * is queued, or while a busy one keeps the ring it grew (until its room
 * hibernates or a keepalive sweep finds it idle). Queues come from a pool
 * of the loop's. */
typedef struct party__conn_sendq party__conn_sendq;
struct party__conn_sendq {
    uint32_t head, len, cap; /* the ring; cap 1: the slot `one` */
    uint32_t offset;         /* bytes of the first entry already written */
    uint32_t bytes;          /* unwritten bytes queued */
    uint32_t held;           /* entries at the tail, behind the release mark */
    union {
        party__buf *one;               /* cap 1: the one slot, inline */
        party__buf **ring;             /* cap > 1: a heap ring */
        party__conn_sendq *next_spare; /* in the loop's pool */
    };
};

/* What a connection needs only while it is busy: its HTTP session, an
 * armed timeout, a frame or message partly read. An open WebSocket that
 * waits for input has none; records come from a pool of the loop's. */
typedef struct party__conn_busy {
    union {
        party__http_session *http;           /* HTTP phase only */
        struct party__conn_busy *next_spare; /* in the loop's pool */
    };
    uv_timer_t *timer;       /* header, close or linger timeout, when armed */
    party__ws_reader reader; /* the WebSocket reader, while reading_frame */
    int reading_frame;       /* reader holds a frame or message partly read */
} party__conn_busy;

/* What few connections have, for as long as they live: tags besides the
 * id, a state set by the room. */
typedef struct party__conn_extra {
    char **tags; /* n_tags strings, id first; NULL when the id is the only tag */
    void *state;
    uint32_t state_len;
} party__conn_extra;

/* Every byte here is paid by every idle connection (docs/architecture.md
 * lists what each is for): the socket is watched from the loop's epoll
 * set with no handle of its own, and what only a busy or young connection
 * needs (HTTP session, partial frame, timer; send queue; a message meter's
 * state) or few have (tags, state) sits behind a pointer that is NULL
 * while idle. */
struct party_conn {
    party__loop *lp;         /* the loop serving it (see party__conn_loop) */
    struct party_room *room; /* set once routed to a room */
    /* The output gate: while set, a release mark holds new output back
     * (see party__conn_hold). The next connection in the gate's list;
     * the last one points to itself, so non-NULL means held. */
    party_conn *gate_next;
    party_conn *dirty_next; /* on the loop's flush list (also once closed) */
    party_conn *room_prev, *room_next;
    party__conn_sendq *out;   /* output queued; NULL when none */
    party__conn_busy *busy;   /* NULL while idle */
    party__conn_extra *extra; /* NULL without tags or state */
    /* The message meter's state (party__conn_meter), only while the
     * connection sends: allocated at a message, freed once it is quiet. */
    struct party__meter_state *meter;
    char *id;                /* in one block with the uri (ident when they fit): see id_at */
    uint32_t refs;           /* the socket + queued events that name it */
    int fd;                  /* the socket; -1 once closed */
    uint32_t transport_slot; /* 0: plaintext; else the slot of its transport state */
    /* A connection is mostly idle: its flags are bits. */
    unsigned phase : 3;          /* party__conn_phase */
    unsigned close_sent : 1;     /* a Close frame is queued or sent */
    unsigned close_received : 1; /* the peer's Close arrived */
    unsigned close_reported : 1; /* a CLOSE event was posted for the room */
    unsigned in_room : 1;        /* linked in room's list of open connections */
    unsigned writing : 1;        /* output waits for the socket to take more */
    unsigned dirty : 1;          /* on the loop's flush list */
    unsigned close_after_flush : 1;
    unsigned transport_closing : 1;
    unsigned reading : 1;
    unsigned head_only : 1;      /* current HTTP request is HEAD */
    unsigned keep_alive : 1;     /* current HTTP request may be followed by another */
    unsigned handshake_held : 1; /* the 101 is held by the output gate */
    unsigned internal : 1;       /* opened by the runtime itself, not a network client */
    unsigned parsing : 1;        /* inside conn_parse_http */
    unsigned parse_again : 1;    /* a request was answered meanwhile: parse the next */
    unsigned heard : 1;          /* bytes arrived since the last keepalive sweep */
    unsigned pinged : 1;         /* the keepalive sweep pinged; no answer yet */
    unsigned handoff_wait : 1;   /* routed to another loop once its output is written */
    unsigned handed_off : 1;     /* its socket went to another loop: no longer counted here */
    /* 0: the block holds the id, then the uri; else the id is the uri's
     * tail, from this offset (see party__conn_begin_upgrade). */
    unsigned id_at : PARTY__CONN_ID_AT_BITS;
    unsigned watched : 2;  /* what the loop's epoll set watches for: input, room to write */
    unsigned readonly : 1; /* set by its room (party_conn_set_readonly): refused state and writes */
    unsigned gate_acted : 1; /* held: its client acted on the batch (party__conn_hold_acted) */
    unsigned ws_ended : 1;   /* the WebSocket reader saw a Close or an error: input is ignored */
    unsigned release_pending : 1; /* closed: released at the end of the loop turn */
    unsigned proxy_pending : 1;   /* a PROXY protocol header is expected first */
    unsigned client_known : 1;    /* peer is its first request's client */
    unsigned addr_counted : 1;    /* counted for peer in the per-address limits */
    unsigned unmetered : 1;       /* no limit applies: --limit-exempt, or no network address */
    uint8_t n_tags;
    uint16_t peer_close_code;
    /* The client (binary, 20 bytes): the socket's peer until its first
     * request, then that request's client (PROXY header, trusted proxies);
     * a WebSocket's is its upgrade request's. */
    party__addr peer;
    char ident[80]; /* the id and uri block, when it fits */
};

/* The loop a connection belongs to. */
static inline party__loop *party__conn_loop(const party_conn *conn) {
    return conn->lp;
}

/* The connection's HTTP session, or NULL (past the HTTP phase). */
static inline party__http_session *party__conn_http(const party_conn *conn) {
    return conn->busy != NULL ? conn->busy->http : NULL;
}

/* Frees the pools of spare timers, HTTP sessions and send queues, and
 * closes the loop's epoll set of connections (at shutdown): connections
 * closed meanwhile are released first. */
void party__conn_pools_free(party__loop *lp);
/* Frees the spare HTTP sessions and send queues, and the block of spare
 * timers once none of them is armed (the block goes after its timers'
 * close callbacks): a burst of handshakes is over. The next handshakes
 * allocate them anew. */
void party__conn_pools_trim(party__loop *lp);

/* What a connection reports to the layers above it. The runtime installs
 * one table per loop (party__loop.conn_upcalls); conn calls no router
 * or room function by name. docs/architecture.md lists them. */
typedef struct party__conn_upcalls {
    /* A request was parsed (phase HTTP_BUSY, in party__conn_http(conn)): route it. Also
     * called on the loop a connection was handed to, with the request as
     * parsed where it was read, and again once output that a hand-off
     * waited for is written. */
    void (*request)(party_conn *conn);
    /* A WebSocket message for room (data valid during the call). 0 or
     * PARTY_ENOMEM. */
    int (*message)(struct party_room *room, party_conn *conn, party__slice data, int binary);
    /* The connection is closed: room runs on_close. 0, or PARTY_ENOMEM
     * (the room then forgot the connection without on_close). */
    int (*close)(struct party_room *room, party_conn *conn, int code, party__slice reason,
                 int was_clean);
    /* An error on the connection (what: static text) for room's on_error. */
    void (*error)(struct party_room *room, party_conn *conn, const char *what);
} party__conn_upcalls;

/* Serves a socket the listener accepted (non-blocking) over transport
 * (NULL: plaintext), from peer (a struct sockaddr; NULL: not known); fd is
 * the runtime's from now on, also when this fails. With
 * cfg.proxy_protocol, a PROXY header is read first. */
void party__conn_accept_fd(party__loop *lp, int fd, const party__transport_ops *transport,
                           const void *peer);
/* Serves an already connected stream socket (e.g. one end of a
 * socketpair), as if accepted, in plaintext. internal: trusted by the
 * runtime (may address rooms by id). fd is the runtime's from now on, also
 * when this fails. */
int party__conn_adopt(party__loop *lp, int fd, int internal);

/* A connection on its way to another loop (see party__conn_detach): its
 * socket, its parsed request with what was read behind it, and its
 * transport state. The fields are conn.c's; a caller only carries it. */
typedef struct party__conn_handoff {
    int fd;
    party__addr peer;
    unsigned internal : 1, keep_alive : 1, head_only : 1, addr_counted : 1, unmetered : 1;
    party__http_session *http;
    party__transport *transport; /* NULL: plaintext */
} party__conn_handoff;

/* Takes a connection whose request was parsed and routed to another loop
 * (phase HTTP_BUSY) out of this loop, into out: the connection here closes
 * silently and stops counting towards max_conns. 0; or 1 when output to an
 * earlier request is still on its way (or held by an output gate): the
 * connection stays, and reports its request again (upcall request) once
 * that is written. */
int party__conn_detach(party_conn *conn, party__conn_handoff *out);
/* Serves a connection detached on another loop, on this one: everything
 * in h is this loop's from now on, also when this fails. The request is
 * routed at once, as parsed (it is not parsed again), and the input the
 * transport holds behind it is fed. 0 or PARTY_ENOMEM. */
int party__conn_adopt_handoff(party__loop *lp, party__conn_handoff *h);
/* Refuses a detached connection that no loop will serve (its loop
 * stopped): a plaintext client is told 503, then everything in h is
 * freed and the socket closed. Any thread. */
void party__conn_handoff_refuse(party__conn_handoff *h);

/* Frees what an idle connection does not need: its send queue (and the
 * ring it grew), when nothing is queued (its room hibernates, or a
 * keepalive sweep finds it idle), and its message meter's state once it
 * has refilled. */
void party__conn_trim(party_conn *conn);

/* ---- the message meter: messages and bytes per second per WebSocket ----
 * A party's limits as costs in nanoseconds (GCRA: a connection keeps
 * when its next message and byte are "due"; a second's worth may come
 * at once). Over a limit the message is still handled (it was read), then
 * reading pauses until the connection is within it again; a client that
 * is over again right after every pause is closed with 1013 (DESIGN.md
 * D5). */
typedef struct party__meter {
    uint64_t msg_ns;         /* nanoseconds a message costs; 0: no message limit */
    uint64_t byte_ns_fp;     /* nanoseconds a byte costs, 16.16 fixed point; 0: none */
    uint64_t msg_tolerance;  /* how far ahead "due" may run: a second less one message */
    uint64_t byte_tolerance; /* a second */
} party__meter;

/* A connection's meter state (conn->meter). */
typedef struct party__meter_state {
    uint64_t msg_due, byte_due; /* GCRA: loop-clock nanoseconds */
    uint8_t strikes;            /* pauses in a row the client was over again right after */
    uint8_t paused;             /* reading waits for the resume timer */
    uint8_t which;              /* 1: messages, 2: bytes (what paused it last) */
} party__meter_state;

/* m for msgs_per_s messages and bytes_per_s bytes per second (<= 0: none). */
void party__meter_init(party__meter *m, double msgs_per_s, double bytes_per_s);
/* party__conn_meter but for a connection within its limits at the clock
 * of its read: reads the clock itself, allocates the state, pauses or
 * closes. */
int party__conn_meter_slow(party_conn *conn, size_t len, const party__meter *m);
/* Meters a message of len bytes about to be handled. 0: handle it; 1:
 * the connection is closing for going over its limit again and again
 * (the message is dropped). Inline, with the clock read once per socket
 * read (party__loop.meter_now): a message within its limits costs two
 * GCRA updates. A clock read earlier only makes a connection look
 * further ahead: the slow path then looks again with the clock of now. */
static inline int party__conn_meter(party_conn *conn, size_t len, const party__meter *m) {
    party__meter_state *st = conn->meter;
    uint64_t now, msg_due, byte_due;

    if (conn->unmetered || (m->msg_ns | m->byte_ns_fp) == 0)
        return 0;
    if (st == NULL || st->strikes != 0)
        return party__conn_meter_slow(conn, len, m);
    now = party__conn_loop(conn)->meter_now;
    msg_due = st->msg_due > now ? st->msg_due : now;
    byte_due = st->byte_due > now ? st->byte_due : now;
    /* A limit that is 0 costs 0: its due time never runs ahead. */
    if (msg_due - now > m->msg_tolerance || byte_due - now > m->byte_tolerance)
        return party__conn_meter_slow(conn, len, m);
    st->msg_due = msg_due + m->msg_ns;
    st->byte_due = byte_due + (((uint64_t)len * m->byte_ns_fp) >> 16);
    return 0;
}
/* 1 if no message limit applies to conn (see party_conn.unmetered): its
 * messages need not go through party__conn_meter. */
static inline int party__conn_unmetered(const party_conn *conn) {
    return conn->unmetered;
}
/* Frees the meter's state of a connection that went quiet (it refilled). */
void party__conn_meter_release(party_conn *conn);

void party__conn_ref(party_conn *conn);
void party__conn_unref(party_conn *conn);

/* Queues one reference of buf for sending (the caller keeps its own):
 * behind the release mark while the connection is held (see
 * party__conn_hold). PARTY_ECLOSED when the connection no longer sends;
 * PARTY_ELIMIT when the send queue would pass send_queue_bytes: the
 * connection is then dropped. PARTY_ENOMEM. */
int party__conn_queue(party_conn *conn, party__buf *buf);

/* ---- the output gate ----
 * The gate is the room's: it decides which output waits for a commit.
 * A connection has one send queue and a release mark in it. Output
 * behind the mark waits; the commit moves the mark to the end of the
 * queue (party__conn_gate_release), a failed commit cuts the queue at
 * the mark and fails the connection (party__conn_gate_drop). The gate's
 * list runs through the connections it holds, so holding output costs
 * no allocation. */

/* The connections a batch holds, in the order they were first held. */
typedef struct party__conn_gate {
    party_conn *head, *tail;
} party__conn_gate;

/* Holds conn's output from now on: the release mark goes at the end of
 * its send queue, and conn joins gate (which takes a reference of it).
 * A connection already held stays where it is, in the list it is in:
 * what follows keeps its order behind the mark it has. Does nothing to a
 * closing connection. */
void party__conn_hold(party_conn *conn, party__conn_gate *gate);
/* party__conn_hold, for a connection whose client acted on what the batch
 * does (it proposed the state the batch writes): if the commit fails,
 * it fails as one that lost output does, even with nothing held, so its
 * client does not go on believing a change that was not kept. */
void party__conn_hold_acted(party_conn *conn, party__conn_gate *gate);
/* The commit is durable: every connection of gate sends what waited
 * behind its mark, in order, and leaves the gate (empty after). */
void party__conn_gate_release(party__conn_gate *gate);
/* The commit failed: every connection of gate loses what waited behind
 * its mark — what was queued before it still goes out — and, if it lost
 * anything (or its client acted on the batch), fails: a WebSocket closes with 1011, an HTTP request
 * (or an upgrade whose 101 was held) is answered 500. Either way it ends. The gate is empty after.
 */
void party__conn_gate_drop(party__conn_gate *gate);
/* The same when the commit was refused because the room is another
 * node's now: a WebSocket closes with 1012, HTTP is answered 503 with
 * Retry-After (the client should try again, and will reach the owner). */
void party__conn_gate_drop_moved(party__conn_gate *gate);

/* ---- a room's connections ---- */

/* A list of connections linked through them (a room's open ones); only
 * conn's functions change the links. */
typedef struct party__conn_list {
    party_conn *head, *tail;
} party__conn_list;

/* Links conn (not in a list) at the end of list. */
void party__conn_list_append(party__conn_list *list, party_conn *conn);
/* Unlinks conn from list; 1 if it was in it, else 0 (nothing done). */
int party__conn_list_remove(party__conn_list *list, party_conn *conn);
/* The connection after conn in its list, or NULL. */
static inline party_conn *party__conn_list_next(const party_conn *conn) {
    return conn->room_next;
}
/* 1 if conn is linked in its room's list of open connections. */
static inline int party__conn_in_room(const party_conn *conn) {
    return conn->in_room;
}
/* 1 if conn is an open WebSocket (it may send and be closed). */
static inline int party__conn_is_open(const party_conn *conn) {
    return conn->phase == PARTY__CONN_OPEN;
}
/* party_conn_id, inline for a broadcast's check of every receiver. */
static inline const char *party__conn_id(const party_conn *conn) {
    return conn->id;
}
/* The room a connection was routed to, or NULL. */
static inline struct party_room *party__conn_room(const party_conn *conn) {
    return conn->room;
}
/* The room is done with conn: it no longer names it (a lingering socket
 * must not point at a room that may leave memory). */
void party__conn_leave_room(party_conn *conn);
/* Sets the connection's tags besides its id (n of them, copied into one
 * block). 0 or PARTY_ENOMEM (then only the id remains). */
int party__conn_set_tags(party_conn *conn, const char *const *tags, size_t n);
/* The room reached the peer's Close: an open WebSocket starts closing,
 * so sends fail from now on and on_close cannot pick another code (the
 * reply echoes the peer's). */
void party__conn_mark_closing(party_conn *conn);

/* Frees the loop's table of transport states by slot, once no connection
 * is left (after the loop's last close callbacks). */
void party__conn_slots_free(party__loop *lp);

/* Writes every connection's queued output (once per loop turn). */
void party__conn_flush_dirty(party__loop *lp);

/* HTTP: answers the current request and resumes reading the next one (or
 * closes, when the request was not keep-alive or force_close is set). */
void party__conn_http_respond(party_conn *conn, party_response *res, int force_close);
/* HTTP: party__conn_http_fail (transport.h) answers with status and a
 * text body, then closes. */

/* WebSocket: the router accepted the upgrade for room; reading pauses until
 * the room's connect event. id is copied. */
int party__conn_begin_upgrade(party_conn *conn, struct party_room *room, const char *id);
/* WebSocket: sends the 101 response and starts reading frames (after any
 * bytes that arrived behind the request). extra_headers (NULL: none):
 * header lines, each ending in CRLF, added to the 101 (a cluster node's
 * name and the room's epoch). */
int party__conn_finish_upgrade(party_conn *conn, const char *extra_headers);
/* WebSocket: after on_connect, reads the frames that arrived right behind
 * the upgrade request, frees the HTTP session, and starts reading. */
void party__conn_start_ws(party_conn *conn);
/* After the room handled a CLOSE: answer the peer's Close (echoing its code
 * and reason) if not yet done, and close the transport once the queue is
 * written. */
void party__conn_after_close(party_conn *conn, const char *reason);
/* Starts a server-side close: queues Close(code, reason) and waits for the
 * peer's reply (bounded by close_timeout). code 0: no code. */
void party__conn_start_close(party_conn *conn, int code, const char *reason);
/* party__conn_abort (transport.h) drops the transport now (queued output
 * is discarded); a connection still open towards its room gets
 * on_close(1006). */

/* Frees the HTTP session (the upgrade is done). */
void party__conn_end_http(party_conn *conn);

/* Calls fn for every connection whose socket is not closing (shutdown,
 * upgrades), walking the loop's connection slabs. fn may close
 * connections (their structs stay until the end of the loop turn). */
void party__conn_foreach(party__loop *lp, void (*fn)(party_conn *conn));
/* The same, with an argument for fn. */
void party__conn_foreach_with(party__loop *lp, void (*fn)(party_conn *conn, void *arg), void *arg);
/* The connection's socket (-1 once closed). */
int party__conn_fd(const party_conn *conn);

/* The connection's tags, id first; n_tags entries. */
const char *const *party__conn_tag_list(const party_conn *conn);

/* Generates a random connection id (UUID v4 form) into out. */
void party__conn_make_id(char out[37]);

/* ---- upgrades: connections handed to another process ----
 * The caller sets the loop's frozen (1: no socket is read; 2: none is
 * written either, the connections were exported) around these. */

/* Stops reading: input waits in the socket for whichever process serves
 * the connection next. */
void party__conn_freeze(party_conn *conn);
/* The hand-over failed: the connection reads (and writes) again, as its
 * phase wants. Call with the loop's frozen back at 0 (at 1, only its
 * output goes on: reading waits for 0). */
void party__conn_thaw(party_conn *conn);
/* 1 if nothing is on its way through the connection that the hand-over
 * must wait for: no request with a room, no handshake waiting for its
 * connect, no output held for a commit. */
int party__conn_quiet(const party_conn *conn);
/* What a hand-over does with the connection: PARTY__CONN_RECORD_WS (an
 * open WebSocket in a room) or PARTY__CONN_RECORD_HTTP (an HTTP
 * connection between requests) when it moves; -1 when it cannot move
 * (TLS); 0 when it stays (closing, internal, busy). */
int party__conn_handover_kind(const party_conn *conn);
/* Fills rec with what the connection is (conn_record.h) for another
 * process: its kind as above (0 or -1: rec is not filled), or
 * PARTY_ENOMEM. The slices point into the connection (valid until it is
 * fed, written or freed) and into *owned (the unsent output in one
 * block; the caller frees it, NULL when none). Stops its timeouts. */
int party__conn_export(party_conn *conn, struct party__conn_record *rec, char **owned);
/* The connection was taken over by another process: its descriptor here
 * is closed without a Close frame, a shutdown or an on_close. Unlink it
 * from its room first. */
void party__conn_forget(party_conn *conn);
/* Serves fd, a socket another process handed over with rec (the same way
 * the listener's connections start: one per accepted socket): an open
 * WebSocket with its id, uri, tags, state, fragmented message and unsent
 * output, or an HTTP connection between requests. Not reading yet: for a
 * WebSocket, the caller links it into its room first (party__conn_enter_room),
 * then calls party__conn_adopt_start. The connection, or NULL (logged; fd
 * closed). fd is the runtime's from now on. */
party_conn *party__conn_adopt_record(party__loop *lp, int fd, const struct party__conn_record *rec);
/* Feeds an adopted connection what the other process had read and not
 * consumed (rec->input), then starts reading. */
void party__conn_adopt_start(party_conn *conn, party__slice input);
/* An adopted WebSocket belongs to room. */
void party__conn_enter_room(party_conn *conn, struct party_room *room);

#endif
