/* ws: the RFC 6455 codec — opening handshake checks, an incremental frame
 * reader (in-place unmasking, fragmentation, control frames, UTF-8
 * validation, size limits) and frame encoding into refcounted buffers. It
 * does no I/O: the connection feeds it bytes and sends what it encodes. */
#ifndef PARTY_WS_H
#define PARTY_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "http.h"
#include "utf8.h"

enum {
    PARTY__WS_CONT = 0x0,
    PARTY__WS_TEXT = 0x1,
    PARTY__WS_BINARY = 0x2,
    PARTY__WS_CLOSE = 0x8,
    PARTY__WS_PING = 0x9,
    PARTY__WS_PONG = 0xA,
};

/* Close codes used by the runtime. */
enum {
    PARTY__WS_NORMAL = 1000,
    PARTY__WS_GOING_AWAY = 1001,
    PARTY__WS_PROTOCOL_ERROR = 1002,
    PARTY__WS_NO_STATUS = 1005, /* never on the wire */
    PARTY__WS_ABNORMAL = 1006,  /* never on the wire */
    PARTY__WS_INVALID_DATA = 1007,
    PARTY__WS_POLICY = 1008,
    PARTY__WS_TOO_BIG = 1009,
    PARTY__WS_INTERNAL_ERROR = 1011,
    PARTY__WS_SERVICE_RESTART = 1012, /* restart, or the room moved to another node */
    PARTY__WS_TRY_AGAIN_LATER = 1013, /* overload, a rate limit: the client may come back */
};

/* ---- handshake ---- */

/* Checks that req is a valid WebSocket opening handshake (RFC 6455 4.2.1):
 * GET, HTTP/1.1, Upgrade: websocket, Connection: upgrade, a
 * Sec-WebSocket-Key that is base64 of 16 bytes, Sec-WebSocket-Version: 13.
 * Returns 0, or the HTTP status to answer: 400, or 426 for a wrong version
 * (answer with "Sec-WebSocket-Version: 13"). *why: static text for the log. */
int party__ws_handshake_check(const party__http_request *req, const char **why);

/* Writes the Sec-WebSocket-Accept value for key (base64 SHA-1 of key + the
 * RFC GUID) into out, NUL-terminated (28 chars). d: the loop's digest
 * state, or NULL. 0; PARTY_EINVAL for a key over 128 bytes (never a valid
 * one); PARTY_ENOMEM when hashing failed (OpenSSL allocates on each hash).
 * On failure out is an empty string. */
int party__ws_accept_value(party__digest *d, party__slice key, char out[29]);

/* 1 if code may be sent in a Close frame: 1000-1003, 1007-1014, 3000-4999. */
int party__ws_close_code_sendable(int code);

/* ---- reading ---- */

typedef enum party__ws_event_type {
    PARTY__WS_EV_MESSAGE, /* whole text or binary message */
    PARTY__WS_EV_PING,
    PARTY__WS_EV_PONG,
    PARTY__WS_EV_CLOSE, /* peer's Close frame */
    PARTY__WS_EV_ERROR, /* protocol violation: close with close_code, stop reading */
} party__ws_event_type;

typedef struct party__ws_event {
    party__ws_event_type type;
    int binary;        /* MESSAGE: 1 binary, 0 text (validated UTF-8) */
    party__slice data; /* MESSAGE/PING/PONG payload; CLOSE: reason (UTF-8 checked) */
    int close_code;    /* CLOSE: peer's code, or 1005 when it sent none;
                          ERROR: the code to close with (1002, 1007, 1009) */
    const char *error; /* ERROR: static description for the log */
} party__ws_event;

/* Called for each event; event->data is valid during the call only. Return
 * non-zero to stop reading (the rest of the input is dropped). */
typedef int (*party__ws_event_cb)(void *arg, const party__ws_event *event);

/* Buffers for an incomplete frame and a fragmented message; allocated only
 * while one exists. */
typedef struct party__ws_buffers {
    char *partial; /* bytes of an incomplete frame, copied out of the input */
    size_t partial_len, partial_cap;
    char *msg; /* fragments of a message being assembled */
    size_t msg_len, msg_cap;
} party__ws_buffers;

/* The per-connection read state: 24 bytes while the connection has no
 * partial frame and no partial fragmented message (an idle connection
 * costs only this struct). */
typedef struct party__ws_reader {
    party__ws_buffers *b; /* NULL while idle */
    uint32_t max_message; /* largest message payload accepted; over it: 1009 */
    uint32_t utf8_state;  /* validation state of a fragmented text message */
    uint8_t msg_opcode;   /* TEXT or BINARY while assembling, else 0 */
    uint8_t require_mask; /* 1 on the server: unmasked frames are errors */
    uint8_t failed;       /* an ERROR was reported (or PARTY_ENOMEM returned);
                             further input is ignored */
    uint8_t closed;       /* a CLOSE was reported; further input is ignored */
} party__ws_reader;

/* Frees a reader's buffers (r->b not NULL): see party__ws_reader_reset. */
void party__ws_reader_free_buffers(party__ws_reader *r);

/* The reader helpers below are inline: a connection with no frame partly
 * read sets a reader up on the stack, feeds it and drops it for every
 * socket read, so a call to each would be paid per message. */

/* max_message is capped at 4 GiB - 1. */
static inline void party__ws_reader_init(party__ws_reader *r, uint64_t max_message,
                                         int require_mask) {
    r->b = NULL;
    r->max_message = max_message > UINT32_MAX ? UINT32_MAX : (uint32_t)max_message;
    r->utf8_state = PARTY__UTF8_ACCEPT;
    r->msg_opcode = 0;
    r->require_mask = require_mask != 0;
    r->failed = 0;
    r->closed = 0;
}
/* Frees the buffers the reader holds; it can then be reused or dropped. */
static inline void party__ws_reader_reset(party__ws_reader *r) {
    if (r->b != NULL)
        party__ws_reader_free_buffers(r);
    r->msg_opcode = 0;
    r->utf8_state = PARTY__UTF8_ACCEPT;
    r->failed = 0;
    r->closed = 0;
}

/* Feeds bytes received from the peer. data is writable: payloads are unmasked
 * in place, and events for a frame wholly inside data point into it. Bytes
 * of a trailing incomplete frame are copied into the reader. Calls cb for
 * every complete event, in order, until cb returns non-zero or an error.
 * Returns 0, PARTY_ENOMEM (the reader is then failed: close with 1011), or
 * (after reporting an ERROR event) the close code. */
int party__ws_reader_feed(party__ws_reader *r, char *data, size_t len, party__ws_event_cb cb,
                          void *arg);

/* 1 if the reader holds a partial frame or message (a read needs its buffer). */
static inline int party__ws_reader_busy(const party__ws_reader *r) {
    return (r->b != NULL && r->b->partial_len > 0) || r->msg_opcode != 0;
}

/* What a reader holds between frames, for a hand-over to another
 * process: the raw bytes of an incomplete frame (fed again to a fresh
 * reader, they rebuild it), and a fragmented message being assembled
 * (opcode 0: none). The slices are valid until the reader is fed or
 * reset. */
void party__ws_reader_pending(const party__ws_reader *r, party__slice *partial, party__slice *msg,
                              uint8_t *opcode, uint32_t *utf8_state);
/* Gives a fresh reader the fragmented message another one was assembling
 * (see party__ws_reader_pending; opcode 0 with no bytes: nothing to do).
 * 0, PARTY_EINVAL (not a data opcode, over max_message, a rejected UTF-8
 * state) or PARTY_ENOMEM. */
int party__ws_reader_restore(party__ws_reader *r, uint8_t opcode, uint32_t utf8_state,
                             party__slice msg);

/* ---- writing ---- */

/* Bytes of the header for a frame with this payload length: 2, 4 or 10
 * (server frames, unmasked), plus 4 when masked. */
size_t party__ws_header_size(uint64_t payload_len, int masked);

/* Writes a frame header into out (at least 14 bytes) and returns its size.
 * mask_key: NULL for an unmasked (server) frame, else 4 bytes; the payload
 * must then be masked with party__ws_mask by the caller. */
size_t party__ws_header_write(char *out, int opcode, int fin, uint64_t payload_len,
                              const uint8_t *mask_key);

/* XORs data with the 4-byte key; offset is the position of data[0] in the
 * payload (so a payload can be masked in pieces). */
void party__ws_mask(char *data, size_t len, const uint8_t key[4], size_t offset);

/* A whole unmasked frame (header + payload) in a new refcounted buffer,
 * a spare of pool when it is small enough (pool may be NULL). NULL on OOM. */
party__buf *party__ws_frame_new(party__buf_pool *pool, int opcode, const void *payload, size_t len);

/* A Close frame: code 0 means no code (and no reason). reason is cut to
 * PARTY_MAX_CLOSE_REASON bytes at a UTF-8 boundary. NULL on OOM. */
party__buf *party__ws_close_frame_new(int code, const char *reason, size_t reason_len);

#endif
