/* conn: one accepted TCP connection, from its first HTTP request through
 * the WebSocket it may become, to its close. It owns the socket, the read
 * state (HTTP session or WebSocket reader), the send queue of refcounted
 * buffers, and the identity a room sees (id, uri, tags, state). */
#ifndef PARTY_CONN_H
#define PARTY_CONN_H

#include <uv.h>

#include "party.h"
#include "buf.h"
#include "http.h"
#include "request.h"
#include "ws.h"

struct party__tls;

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
    const char *const *cors;                /* headers to add to this request's answer, or NULL */
    size_t consumed;                        /* bytes of buf that the current request used */
    struct party__http_session *next_spare; /* in the runtime's pool */
} party__http_session;

struct party_conn {
    /* The socket is watched with a poll handle, not read through a libuv
     * TCP stream: 160 bytes instead of 248, a third of an idle connection.
     * poll.loop->data is the runtime (see party__conn_rt). */
    uv_poll_t poll;
    struct party_room *room;   /* set once routed to a room */
    struct party_room *holder; /* the room whose output gate holds our output */
    uint32_t held_bytes;       /* bytes held for us by the output gate */
    uint32_t refs;             /* the socket + queued events that name it */
    /* A connection is mostly idle: its flags are bits, its counters 32-bit
     * (send_queue_bytes is capped at 4 GiB - 1), its buffers allocated on
     * demand. */
    unsigned phase : 3;          /* party__conn_phase */
    unsigned close_sent : 1;     /* a Close frame is queued or sent */
    unsigned close_received : 1; /* the peer's Close arrived */
    unsigned close_reported : 1; /* a CLOSE event was posted for the room */
    unsigned in_room : 1;        /* linked in room's list of open connections */
    unsigned writing : 1;        /* output waits for the socket to take more */
    unsigned dirty : 1;          /* on the runtime's flush list */
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
    unsigned watched : 2; /* the UV_READABLE | UV_WRITABLE the handle watches */
    uint8_t n_tags;
    uint16_t peer_close_code;

    party__http_session *http; /* HTTP phase only */
    party__ws_reader reader;   /* WebSocket phase */
    uv_timer_t *timer;         /* header, close or linger timeout, when armed */

    char *id;    /* in one block with the uri (ident when they fit): see id_at */
    char **tags; /* n_tags strings, id first; NULL when the id is the only tag */
    void *state;
    uint32_t state_len;

    uint32_t out_head, out_len, out_cap; /* ring of queued output */
    uint32_t out_offset;                 /* bytes of out[out_head] already written */
    uint32_t out_bytes;                  /* unwritten bytes queued */
    uint32_t tls_slot;                   /* 0: plaintext; else where tls.c keeps its state */
    int fd;                              /* the socket; -1 once closed */
    union {
        party__buf *out_one; /* out_cap 1: the one slot, inline */
        party__buf **out;    /* out_cap > 1: a heap ring */
    };

    party_conn *room_prev, *room_next;
    party_conn *dirty_next;
    char ident[80]; /* the id and uri block, when it fits */
};

/* The runtime a connection belongs to: its loop's, so the struct need not
 * carry a pointer of its own. */
static inline party_runtime *party__conn_rt(const party_conn *conn) {
    return (party_runtime *)conn->poll.loop->data;
}

/* Frees the pools of spare timers and HTTP sessions (at shutdown). */
void party__conn_pools_free(party_runtime *rt);
/* Frees the spare HTTP sessions, and the block of spare timers once none
 * of them is armed (the block goes after its timers' close callbacks):
 * a burst of handshakes is over. The next handshakes allocate them anew. */
void party__conn_pools_trim(party_runtime *rt);

/* Serves a socket the listener accepted (non-blocking); fd is the
 * runtime's from now on, also when this fails. */
void party__conn_accept_fd(party_runtime *rt, int fd);
/* Serves an already connected stream socket (e.g. one end of a
 * socketpair), as if accepted. internal: trusted by the runtime (may
 * address rooms by id). fd is the runtime's from now on, also when this
 * fails. */
int party__conn_adopt(party_runtime *rt, int fd, int internal);
/* Serves a connection handed over by another loop (loops.c): fd, the bytes
 * read there (a request and what followed it; copied) and its TLS state
 * (NULL: plaintext) are this loop's from now on, also when this fails.
 * The request is parsed and routed at once. PARTY_ENOMEM, PARTY_EINVAL. */
int party__conn_adopt_handoff(party_runtime *rt, int fd, int internal, const char *bytes,
                              size_t len, struct party__tls *tls);

/* Frees what an idle connection does not need: its output ring, when
 * nothing is queued (its room hibernates). */
void party__conn_trim(party_conn *conn);

void party__conn_ref(party_conn *conn);
void party__conn_unref(party_conn *conn);

/* Queues one reference of buf for sending (the caller keeps its own).
 * PARTY_ELIMIT when the send queue would pass send_queue_bytes: the
 * connection is then dropped. PARTY_ENOMEM. */
int party__conn_queue(party_conn *conn, party__buf *buf);

/* Queues output the output gate released (it bypasses the gate and the
 * closing state it was produced before). */
int party__conn_queue_released(party_conn *conn, party__buf *buf);

/* For the TLS layer (tls.c), which sits between the socket and the
 * plaintext paths below. */
/* Plaintext bytes read: data is at the end of the HTTP buffer in the HTTP
 * phase (see party__conn_http_space), else anywhere. */
void party__conn_input(party_conn *conn, char *data, size_t len);
/* The free space at the end of the HTTP buffer, grown within its limit
 * while no parsed request points into it; len 0 when it is full or memory
 * ran out. */
void party__conn_http_space(party_conn *conn, uv_buf_t *out);
/* Up to max buffers of the send queue, from the first unwritten byte. */
size_t party__conn_peek(party_conn *conn, uv_buf_t *iov, size_t max);
/* Drops n bytes from the front of the send queue (they were written). */
void party__conn_consume(party_conn *conn, size_t n);
/* Writes what is queued now (unless output already waits for the socket
 * to take more). */
void party__conn_flush(party_conn *conn);
/* Writes what the socket takes now of n buffers: the bytes written (0 when
 * it is full), or a libuv error code. */
ssize_t party__conn_write_some(party_conn *conn, const uv_buf_t *iov, size_t n);
/* Output waits for the socket: once it takes more, party__conn_flush runs
 * again. */
void party__conn_wait_writable(party_conn *conn);
/* Everything is written: a closing connection half-closes and lingers. */
void party__conn_flush_done(party_conn *conn);

/* Writes every connection's queued output (once per loop turn). */
void party__conn_flush_dirty(party_runtime *rt);

/* HTTP: answers the current request and resumes reading the next one (or
 * closes, when the request was not keep-alive or force_close is set). */
void party__conn_http_respond(party_conn *conn, party_response *res, int force_close);
/* HTTP: answers with status and a text body, then closes. */
void party__conn_http_fail(party_conn *conn, int status, const char *text);

/* WebSocket: the router accepted the upgrade for room; reading pauses until
 * the room's connect event. id is copied. */
int party__conn_begin_upgrade(party_conn *conn, struct party_room *room, const char *id);
/* WebSocket: sends the 101 response and starts reading frames (after any
 * bytes that arrived behind the request). */
int party__conn_finish_upgrade(party_conn *conn);
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
/* Drops the transport now (queued output is discarded). A connection still
 * open towards its room gets on_close(1006). */
void party__conn_abort(party_conn *conn);
/* Takes the socket out of the connection, for another loop to serve: the
 * connection's close (party__conn_release_handed_off) then leaves it open. */
int party__conn_take_fd(party_conn *conn);
/* Closes this loop's handle of a socket that another loop now serves: the
 * connection stops counting towards max_conns at once (the other loop
 * counts it), and nobody is told. */
void party__conn_release_handed_off(party_conn *conn);

/* The output gate dropped what a failed commit produced for this
 * connection: a WebSocket is closed with 1011, an HTTP request (or an
 * upgrade whose 101 was held) gets 500. Either way the connection ends. */
void party__conn_fail_uncommitted(party_conn *conn);

/* Frees the HTTP session (the upgrade is done). */
void party__conn_end_http(party_conn *conn);

/* Calls fn for every connection whose socket is not closing (shutdown). fn
 * may close connections. */
void party__conn_foreach(party_runtime *rt, void (*fn)(party_conn *conn));

/* The connection's tags, id first; n_tags entries. */
const char *const *party__conn_tag_list(const party_conn *conn);

/* Generates a random connection id (UUID v4 form) into out. */
void party__conn_make_id(char out[37]);

#endif
