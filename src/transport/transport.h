/* transport: the seam between a connection and the bytes on its socket.
 * A connection (conn.c) reads and writes through an ops table: plaintext
 * (transport_plain.c, every connection without a state of its own) or TLS
 * (tls.c). A transport with per-connection state embeds party__transport
 * first in it, and the connection keeps it by a slot number in padding of
 * its struct: a plaintext connection carries no state and pays nothing.
 * The functions below the table are the connection's side of the seam,
 * the only ones a transport calls. */
#ifndef PARTY_TRANSPORT_H
#define PARTY_TRANSPORT_H

#include <stddef.h>

#include <uv.h>

#include "party.h"
#include "loop.h"

typedef struct party__transport_ops party__transport_ops;

/* The state of a connection's transport: the ops first, then the
 * transport's own fields. */
typedef struct party__transport {
    const party__transport_ops *ops;
} party__transport;

/* What a flush achieved (or a negative libuv error code: the connection
 * is then dropped). */
enum {
    PARTY__FLUSH_DONE = 0,    /* everything queued in front of the release mark is written */
    PARTY__FLUSH_BLOCKED = 1, /* the socket is full: flush again once it is writable */
    PARTY__FLUSH_PENDING = 2, /* the transport holds the output back (a TLS handshake
                               * in progress) and flushes again itself once it can */
};

struct party__transport_ops {
    const char *name; /* "plain", "tls" */
    /* Gives a connection the listener accepted its state, attached with
     * party__conn_set_transport. PARTY_ENOMEM. NULL: no state. */
    int (*accept)(party_conn *conn);
    /* Where the socket's next bytes are read into. 0, or non-zero when no
     * read is to be made now (the connection was failed: see
     * party__conn_input_space). */
    int (*read_space)(party_conn *conn, uv_buf_t *out);
    /* len bytes were read into what read_space gave. May close the
     * connection, or hand it to another loop: after it returns, only
     * party__conn_closing may be asked before anything else. */
    void (*on_bytes)(party_conn *conn, char *data, size_t len);
    /* Input the transport holds and no socket read will bring up (TLS
     * records read behind a request): feeds what the connection takes
     * now. Called when the connection can take input again, after a
     * request was answered or on the loop a connection was handed to.
     * NULL: the transport holds none. */
    void (*resume)(party_conn *conn);
    /* Writes the send queue (party__conn_peek, party__conn_consume). A
     * PARTY__FLUSH_* result or a negative libuv error code. */
    int (*flush)(party_conn *conn);
    /* Everything is written and the connection ends: writes the
     * transport's goodbye (TLS close_notify). Called again once the
     * socket takes more if it returns PARTY__FLUSH_BLOCKED, so it says
     * goodbye once. Results as flush. NULL: nothing to say. */
    int (*start_close)(party_conn *conn);
    /* Frees a state (detached from its connection, or never attached). */
    void (*free)(party__transport *t);
};

/* Plaintext: bytes go to the connection as read, the queue to the socket
 * as is. */
extern const party__transport_ops party__transport_plain;

/* ---- the connection's side, for transports ---- */

/* The loop that serves the connection now. */
party__loop *party__conn_get_loop(const party_conn *conn);
/* The connection's transport state, NULL for plaintext. Valid until it
 * is replaced (party__conn_set_transport) or the connection is freed. */
party__transport *party__conn_transport(const party_conn *conn);
/* Makes t (NULL: none, plaintext) the connection's transport state. The
 * state it had is not freed: it is the caller's. PARTY_ENOMEM (t not
 * attached). */
int party__conn_set_transport(party_conn *conn, party__transport *t);
/* 1 once the connection's socket is closing (or was handed to another
 * loop): its transport must stop touching it. */
int party__conn_closing(const party_conn *conn);
/* Where the next plaintext bytes go: behind the request in the HTTP
 * buffer (grown within its limit while reading a request), else the
 * loop's read buffer. 0, or 1 when the connection takes no input now (a
 * request is with a room and the buffer is full: input waits), or a
 * negative PARTY_E* when it failed the connection (413 answered for a
 * request past its limits, or out of memory). */
int party__conn_input_space(party_conn *conn, uv_buf_t *out);
/* Plaintext bytes arrived, at the place party__conn_input_space gave. */
void party__conn_input(party_conn *conn, char *data, size_t len);
/* Up to max buffers of the send queue, from the first unwritten byte to
 * the release mark (output behind it waits for its room's commit). */
size_t party__conn_peek(party_conn *conn, uv_buf_t *iov, size_t max);
/* Drops n bytes from the front of the send queue (they were written). */
void party__conn_consume(party_conn *conn, size_t n);
/* Writes what the socket takes now of n buffers: the bytes written (0 when
 * it is full), or a negative libuv error code. */
ssize_t party__conn_write_some(party_conn *conn, const uv_buf_t *iov, size_t n);
/* Writes the send queue to the socket as it is, up to 64 buffers a
 * sendmsg, until it is empty (up to the release mark) or the socket full:
 * the plaintext transport's flush (a PARTY__FLUSH_* result or a negative
 * libuv error code). */
int party__conn_write_queue(party_conn *conn);
/* Writes what is queued now, through the transport (unless output already
 * waits for the socket to take more): e.g. after input made a handshake
 * answer. */
void party__conn_flush(party_conn *conn);
/* Drops the connection now (queued output is discarded). */
void party__conn_abort(party_conn *conn);
/* Answers the current request with status and a text body, then closes. */
void party__conn_http_fail(party_conn *conn, int status, const char *text);
/* The same with headers added (name, value pairs ending with NULL; NULL
 * for none). */
void party__conn_http_fail_with(party_conn *conn, int status, const char *text,
                                const char *const *headers);

#endif
