/* ws: the RFC 6455 codec. Checks opening handshakes, reads frames
 * incrementally (unmasking in place, so a frame wholly inside one read is
 * delivered without a copy) and encodes frames into refcounted buffers. The
 * reader owns only the bytes of an unfinished frame or fragmented message. */
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "digest.h"
#include "party.h"
#include "utf8.h"
#include "alloc.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)
#define MAX_HEADER 14      /* 2 + 8-byte length + 4-byte mask key */
#define MAX_CONTROL 125    /* RFC 6455 5.5 */
#define MAX_ACCEPT_KEY 128 /* a valid key is 24 bytes; longer ones get no hash */

/* ---- handshake ---- */

static party__slice header_get(const party__http_request *req, const char *name) {
    size_t i;
    for (i = 0; i < req->n_headers && i < PARTY__HTTP_MAX_HEADERS; i++)
        if (party__slice_eq_nocase(req->headers[i].name, name))
            return req->headers[i].value;
    return party__slice_make(NULL, 0);
}

/* How many times a header field appears (bounded by the header limit). */
static size_t header_count(const party__http_request *req, const char *name) {
    size_t i, n = 0;
    for (i = 0; i < req->n_headers && i < PARTY__HTTP_MAX_HEADERS; i++)
        if (party__slice_eq_nocase(req->headers[i].name, name))
            n++;
    return n;
}

/* Methods are case-sensitive (RFC 9110 9.1), unlike header names. */
static int slice_eq(party__slice a, const char *s) {
    size_t n = strlen(s);
    return a.ptr != NULL && a.len == n && memcmp(a.ptr, s, n) == 0;
}

static int is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* 16 bytes encode as 22 characters and "==". The 4 unused bits of the last
 * character are not required to be zero: some clients draw the key as 22
 * random characters, and the server only hashes the key as text anyway. */
static int key_is_valid(party__slice key) {
    size_t i;
    if (key.ptr == NULL || key.len != 24)
        return 0;
    for (i = 0; i < 22; i++)
        if (!is_base64_char(key.ptr[i]))
            return 0;
    return key.ptr[22] == '=' && key.ptr[23] == '=';
}

int party__ws_handshake_check(const party__http_request *req, const char **why) {
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    if (!slice_eq(req->method, "GET")) {
        *why = "WebSocket handshake: method is not GET";
        return 400;
    }
    if (req->version_minor != 1) {
        *why = "WebSocket handshake: not HTTP/1.1";
        return 400;
    }
    if (!party__slice_has_token(header_get(req, "Upgrade"), "websocket")) {
        *why = "WebSocket handshake: no \"Upgrade: websocket\"";
        return 400;
    }
    if (!req->upgrade) {
        *why = "WebSocket handshake: no \"Connection: upgrade\"";
        return 400;
    }
    if (!slice_eq(header_get(req, "Sec-WebSocket-Version"), "13")) {
        *why = "WebSocket handshake: Sec-WebSocket-Version is not 13";
        return 426;
    }
    /* RFC 6455 11.3.1: at most once. With two, which one the answer hashes
     * is a guess the client may not share. */
    if (header_count(req, "Sec-WebSocket-Key") > 1) {
        *why = "WebSocket handshake: more than one Sec-WebSocket-Key";
        return 400;
    }
    if (!key_is_valid(header_get(req, "Sec-WebSocket-Key"))) {
        *why = "WebSocket handshake: Sec-WebSocket-Key is not base64 of 16 bytes";
        return 400;
    }
    *why = NULL;
    return 0;
}

int party__ws_accept_value(party__digest *d, party__slice key, char out[29]) {
    party__slice parts[2];
    unsigned char digest[20];

    out[0] = '\0';
    /* No valid key comes near the bound. */
    if (key.len > MAX_ACCEPT_KEY)
        return PARTY_EINVAL;
    parts[0] = key;
    parts[1] = party__slice_make(WS_GUID, WS_GUID_LEN);
    if (party__digest_sha1(d, parts, 2, digest) != 0)
        return PARTY_ENOMEM;
    EVP_EncodeBlock((unsigned char *)out, digest, sizeof(digest));
    return 0;
}

int party__ws_close_code_sendable(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- reading ---- */

typedef struct frame_header {
    size_t header_len; /* when the parse needs more: the bytes it needs */
    uint64_t payload_len;
    uint8_t fin;
    uint8_t opcode;
    uint8_t masked;
    uint8_t mask_key[4];
} frame_header;

enum {
    PARSE_OK = 0,
    PARSE_AGAIN = -1,
    /* positive: a close code */
};

/* Internal result of handling input: 0 to go on, STOP when the caller must
 * return 0 (the callback asked to stop, or the peer closed), else the value
 * feed returns (PARTY_ENOMEM or an error's close code). */
enum { STOP = 1 };

static int is_control(int opcode) {
    return (opcode & 0x8) != 0;
}

/* Parses the frame header at p[0..avail). The checks on the first two bytes
 * run, in a fixed order, before the header is known to be complete: a stream
 * split anywhere reports the same error as when whole. */
static size_t partial_len(const party__ws_reader *r) {
    return r->b != NULL ? r->b->partial_len : 0;
}

static size_t msg_len(const party__ws_reader *r) {
    return r->b != NULL ? r->b->msg_len : 0;
}

static int frame_header_parse(const party__ws_reader *r, const unsigned char *p, size_t avail,
                              frame_header *h, const char **why) {
    size_t len7, ext;
    uint64_t room;

    if (avail < 2) {
        h->header_len = 2;
        return PARSE_AGAIN;
    }
    h->fin = p[0] >> 7;
    h->opcode = p[0] & 0x0F;
    h->masked = p[1] >> 7;
    len7 = p[1] & 0x7F;
    if (p[0] & 0x70) {
        *why = "reserved bits set without a negotiated extension";
        return PARTY__WS_PROTOCOL_ERROR;
    }
    switch (h->opcode) {
    case PARTY__WS_CONT:
    case PARTY__WS_TEXT:
    case PARTY__WS_BINARY:
    case PARTY__WS_CLOSE:
    case PARTY__WS_PING:
    case PARTY__WS_PONG:
        break;
    default:
        *why = "unknown opcode";
        return PARTY__WS_PROTOCOL_ERROR;
    }
    if (r->require_mask && !h->masked) {
        *why = "unmasked frame from a client";
        return PARTY__WS_PROTOCOL_ERROR;
    }
    if (is_control(h->opcode)) {
        if (!h->fin) {
            *why = "fragmented control frame";
            return PARTY__WS_PROTOCOL_ERROR;
        }
    } else if (h->opcode == PARTY__WS_CONT && r->msg_opcode == 0) {
        *why = "continuation frame without a message to continue";
        return PARTY__WS_PROTOCOL_ERROR;
    } else if (h->opcode != PARTY__WS_CONT && r->msg_opcode != 0) {
        *why = "new message inside a fragmented message";
        return PARTY__WS_PROTOCOL_ERROR;
    }

    ext = len7 == 127 ? 8 : len7 == 126 ? 2 : 0;
    h->header_len = 2 + ext + (h->masked ? 4 : 0);
    if (avail < h->header_len)
        return PARSE_AGAIN;
    if (ext == 8) {
        int i;
        if (p[2] & 0x80) {
            *why = "64-bit payload length with the high bit set";
            return PARTY__WS_PROTOCOL_ERROR;
        }
        h->payload_len = 0;
        for (i = 0; i < 8; i++)
            h->payload_len = (h->payload_len << 8) | p[2 + i];
    } else if (ext == 2) {
        h->payload_len = ((uint64_t)p[2] << 8) | p[3];
    } else {
        h->payload_len = len7;
    }
    if (h->masked)
        memcpy(h->mask_key, p + 2 + ext, 4);

    /* Refused from the header alone, before any payload is buffered. The
     * decoded length counts, not its form: a non-minimal encoding is legal. */
    if (is_control(h->opcode)) {
        if (h->payload_len > MAX_CONTROL) {
            *why = "control frame payload over 125 bytes";
            return PARTY__WS_PROTOCOL_ERROR;
        }
    } else {
        room = r->max_message - (h->opcode == PARTY__WS_CONT ? msg_len(r) : 0);
        if (h->payload_len > room || h->payload_len > SIZE_MAX - MAX_HEADER) {
            *why = "message over the size limit";
            return PARTY__WS_TOO_BIG;
        }
    }
    return PARSE_OK;
}

/* The buffers exist only while a frame or a message is incomplete. */
static void drop_buffers_if_empty(party__ws_reader *r) {
    if (r->b != NULL && r->b->partial == NULL && r->b->msg == NULL) {
        party__free(r->b);
        r->b = NULL;
    }
}

static int ensure_buffers(party__ws_reader *r) {
    if (r->b == NULL)
        r->b = party__calloc(1, sizeof(*r->b));
    return r->b != NULL ? 0 : -1;
}

static void free_partial(party__ws_reader *r) {
    if (r->b == NULL)
        return;
    party__free(r->b->partial);
    r->b->partial = NULL;
    r->b->partial_len = r->b->partial_cap = 0;
    drop_buffers_if_empty(r);
}

static void free_msg(party__ws_reader *r) {
    if (r->b != NULL) {
        party__free(r->b->msg);
        r->b->msg = NULL;
        r->b->msg_len = r->b->msg_cap = 0;
        drop_buffers_if_empty(r);
    }
    r->msg_opcode = 0;
    r->utf8_state = PARTY__UTF8_ACCEPT;
}

static int emit(party__ws_event_cb cb, void *arg, party__ws_event *ev) {
    return cb(arg, ev) != 0 ? STOP : 0;
}

/* Reports a protocol error; the reader then ignores all input. */
static int fail(party__ws_reader *r, party__ws_event_cb cb, void *arg, int code, const char *why) {
    party__ws_event ev = {PARTY__WS_EV_ERROR, 0, {"", 0}, code, why};
    r->failed = 1;
    free_partial(r);
    free_msg(r);
    cb(arg, &ev);
    return code;
}

/* The reader has dropped input it can never get back: it cannot go on. */
static int out_of_memory(party__ws_reader *r) {
    r->failed = 1;
    free_partial(r);
    free_msg(r);
    return PARTY_ENOMEM;
}

/* Grows a buffer to hold need bytes: doubling, but never past limit (which
 * is at least need), so its size stays within the frame or message bound. */
static int grow(char **ptr, size_t *cap, size_t need, size_t limit) {
    size_t new_cap;
    char *p;
    if (need <= *cap)
        return 0;
    new_cap = *cap > SIZE_MAX / 2 ? need : *cap * 2;
    if (new_cap < 64)
        new_cap = 64;
    if (new_cap < need)
        new_cap = need;
    if (new_cap > limit)
        new_cap = limit;
    p = party__realloc(*ptr, new_cap);
    if (p == NULL)
        return PARTY_ENOMEM;
    *ptr = p;
    *cap = new_cap;
    return 0;
}

/* Copies n bytes of an unfinished frame into r->partial. frame_len is the
 * whole frame's size once its header is known, else 0. */
static int partial_append(party__ws_reader *r, const char *src, size_t n, size_t frame_len) {
    size_t limit = frame_len != 0 ? frame_len : MAX_HEADER;
    if (n == 0)
        return 0;
    if (ensure_buffers(r) != 0 ||
        grow(&r->b->partial, &r->b->partial_cap, r->b->partial_len + n, limit) != 0)
        return out_of_memory(r);
    memcpy(r->b->partial + r->b->partial_len, src, n);
    r->b->partial_len += n;
    return 0;
}

static int msg_append(party__ws_reader *r, const char *src, size_t n) {
    /* The header check keeps msg_len + n within max_message. */
    size_t limit = (size_t)r->max_message;
    if (n == 0)
        return 0;
    if (ensure_buffers(r) != 0 || grow(&r->b->msg, &r->b->msg_cap, r->b->msg_len + n, limit) != 0)
        return out_of_memory(r);
    memcpy(r->b->msg + r->b->msg_len, src, n);
    r->b->msg_len += n;
    return 0;
}

static int handle_close(party__ws_reader *r, const char *payload, size_t len, party__ws_event_cb cb,
                        void *arg) {
    party__ws_event ev = {PARTY__WS_EV_CLOSE, 0, {"", 0}, PARTY__WS_NO_STATUS, NULL};
    if (len == 1)
        return fail(r, cb, arg, PARTY__WS_PROTOCOL_ERROR, "close payload of one byte");
    if (len >= 2) {
        ev.close_code = ((unsigned char)payload[0] << 8) | (unsigned char)payload[1];
        if (!party__ws_close_code_sendable(ev.close_code))
            return fail(r, cb, arg, PARTY__WS_PROTOCOL_ERROR, "invalid close code");
        if (!party__utf8_valid(payload + 2, len - 2))
            return fail(r, cb, arg, PARTY__WS_INVALID_DATA, "close reason is not UTF-8");
        ev.data = party__slice_make(payload + 2, len - 2);
    }
    r->closed = 1;
    cb(arg, &ev);
    free_msg(r);
    return STOP;
}

/* Handles one whole frame whose payload is already unmasked. The payload may
 * live in the caller's input or in r->partial; it is not freed here. */
static int handle_frame(party__ws_reader *r, const frame_header *h, const char *payload,
                        party__ws_event_cb cb, void *arg) {
    size_t len = (size_t)h->payload_len;
    party__ws_event ev = {PARTY__WS_EV_MESSAGE, 0, {payload, len}, 0, NULL};
    int rc;

    switch (h->opcode) {
    case PARTY__WS_PING:
    case PARTY__WS_PONG:
        ev.type = h->opcode == PARTY__WS_PING ? PARTY__WS_EV_PING : PARTY__WS_EV_PONG;
        return emit(cb, arg, &ev);
    case PARTY__WS_CLOSE:
        return handle_close(r, payload, len, cb, arg);
    case PARTY__WS_TEXT:
    case PARTY__WS_BINARY:
        if (h->fin) {
            if (h->opcode == PARTY__WS_TEXT && !party__utf8_valid(payload, len))
                return fail(r, cb, arg, PARTY__WS_INVALID_DATA, "text message is not UTF-8");
            ev.binary = h->opcode == PARTY__WS_BINARY;
            return emit(cb, arg, &ev);
        }
        r->msg_opcode = h->opcode;
        r->utf8_state = PARTY__UTF8_ACCEPT;
        break;
    default: /* CONT: the header check ensured a message is open */
        break;
    }

    if (r->msg_opcode == PARTY__WS_TEXT) {
        /* Fail on the fragment that breaks the text, not at the message end. */
        r->utf8_state = party__utf8_feed(r->utf8_state, payload, len);
        if (r->utf8_state == PARTY__UTF8_REJECT)
            return fail(r, cb, arg, PARTY__WS_INVALID_DATA, "text message is not UTF-8");
        if (h->fin && r->utf8_state != PARTY__UTF8_ACCEPT)
            return fail(r, cb, arg, PARTY__WS_INVALID_DATA,
                        "text message ends inside a UTF-8 sequence");
    }
    rc = msg_append(r, payload, len);
    if (rc != 0 || !h->fin)
        return rc;
    ev.binary = r->msg_opcode == PARTY__WS_BINARY;
    ev.data = r->b != NULL && r->b->msg != NULL ? party__slice_make(r->b->msg, r->b->msg_len)
                                                : party__slice_make("", 0);
    rc = emit(cb, arg, &ev);
    free_msg(r);
    return rc;
}

/* Completes the frame in r->partial from data[*pos..len), copying only the
 * bytes it lacks, and handles it once whole. */
static int partial_complete(party__ws_reader *r, const char *data, size_t len, size_t *pos,
                            party__ws_event_cb cb, void *arg) {
    frame_header h;
    const char *why = NULL;
    size_t want, n;
    int rc;

    for (;;) {
        rc = frame_header_parse(r, (const unsigned char *)r->b->partial, r->b->partial_len, &h,
                                &why);
        if (rc > 0)
            return fail(r, cb, arg, rc, why);
        want = h.header_len + (rc == PARSE_OK ? (size_t)h.payload_len : 0);
        if (rc == PARSE_OK && r->b->partial_len == want)
            break;
        n = want - r->b->partial_len;
        if (n > len - *pos)
            n = len - *pos;
        if (n == 0)
            return 0;
        rc = partial_append(r, data + *pos, n, rc == PARSE_OK ? want : 0);
        if (rc != 0)
            return rc;
        *pos += n;
    }
    if (h.masked)
        party__ws_mask(r->b->partial + h.header_len, (size_t)h.payload_len, h.mask_key, 0);
    rc = handle_frame(r, &h, r->b->partial + h.header_len, cb, arg);
    free_partial(r);
    return rc;
}

int party__ws_reader_feed(party__ws_reader *r, char *data, size_t len, party__ws_event_cb cb,
                          void *arg) {
    size_t pos = 0;
    int rc;

    if (r->failed || r->closed)
        return 0;
    if (partial_len(r) > 0) {
        rc = partial_complete(r, data, len, &pos, cb, arg);
        if (rc != 0)
            return rc == STOP ? 0 : rc;
        if (partial_len(r) > 0)
            return 0;
    }
    while (pos < len) {
        frame_header h;
        const char *why = NULL;
        size_t avail = len - pos, frame_len;

        rc = frame_header_parse(r, (const unsigned char *)data + pos, avail, &h, &why);
        if (rc > 0)
            return fail(r, cb, arg, rc, why);
        frame_len = rc == PARSE_OK ? h.header_len + (size_t)h.payload_len : 0;
        if (rc == PARSE_AGAIN || frame_len > avail)
            return partial_append(r, data + pos, avail, frame_len);
        if (h.masked)
            party__ws_mask(data + pos + h.header_len, (size_t)h.payload_len, h.mask_key, 0);
        rc = handle_frame(r, &h, data + pos + h.header_len, cb, arg);
        if (rc != 0)
            return rc == STOP ? 0 : rc;
        pos += frame_len;
    }
    return 0;
}

void party__ws_reader_free_buffers(party__ws_reader *r) {
    free_partial(r);
    free_msg(r);
}

/* ---- writing ---- */

size_t party__ws_header_size(uint64_t payload_len, int masked) {
    size_t size = payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10;
    return size + (masked ? 4 : 0);
}

size_t party__ws_header_write(char *out, int opcode, int fin, uint64_t payload_len,
                              const uint8_t *mask_key) {
    unsigned char *p = (unsigned char *)out;
    size_t n = 2;
    int i;

    p[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
    p[1] = mask_key != NULL ? 0x80 : 0;
    if (payload_len < 126) {
        p[1] |= (unsigned char)payload_len;
    } else if (payload_len <= 0xFFFF) {
        p[1] |= 126;
        p[2] = (unsigned char)(payload_len >> 8);
        p[3] = (unsigned char)payload_len;
        n = 4;
    } else {
        p[1] |= 127;
        for (i = 0; i < 8; i++)
            p[2 + i] = (unsigned char)(payload_len >> (56 - 8 * i));
        n = 10;
    }
    if (mask_key != NULL) {
        memcpy(p + n, mask_key, 4);
        n += 4;
    }
    return n;
}

void party__ws_mask(char *data, size_t len, const uint8_t key[4], size_t offset) {
    unsigned char *p = (unsigned char *)data;
    uint8_t rotated[8];
    uint64_t word_key;
    size_t i;

    for (i = 0; i < 8; i++)
        rotated[i] = key[(offset + i) & 3];
    /* Every received byte passes through here: XOR eight at a time. The key
     * pattern repeats every 4 bytes, so an 8-byte step keeps it aligned. */
    memcpy(&word_key, rotated, 8);
    for (i = 0; len - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, p + i, 8);
        word ^= word_key;
        memcpy(p + i, &word, 8);
    }
    for (; i < len; i++)
        p[i] ^= rotated[i & 7];
}

party__buf *party__ws_frame_new(party__buf_pool *pool, int opcode, const void *payload,
                                size_t len) {
    party__buf *buf;
    size_t header_len;

    if (len > SIZE_MAX - MAX_HEADER)
        return NULL;
    header_len = party__ws_header_size(len, 0);
    buf = party__buf_take(pool, header_len + len);
    if (buf == NULL)
        return NULL;
    party__ws_header_write(buf->data, opcode, 1, len, NULL);
    if (len > 0)
        memcpy(buf->data + header_len, payload, len);
    buf->len = header_len + len;
    return buf;
}

party__buf *party__ws_close_frame_new(int code, const char *reason, size_t reason_len) {
    char payload[2 + PARTY_MAX_CLOSE_REASON];
    size_t len = 0;

    if (code != 0) {
        if (reason == NULL)
            reason_len = 0;
        if (reason_len > PARTY_MAX_CLOSE_REASON) {
            /* Cut before the lead byte of the sequence that straddles the
             * limit, so the peer's UTF-8 check still passes. */
            reason_len = PARTY_MAX_CLOSE_REASON;
            while (reason_len > 0 && ((unsigned char)reason[reason_len] & 0xC0) == 0x80)
                reason_len--;
        }
        payload[0] = (char)((code >> 8) & 0xFF);
        payload[1] = (char)(code & 0xFF);
        if (reason_len > 0)
            memcpy(payload + 2, reason, reason_len);
        len = 2 + reason_len;
    }
    return party__ws_frame_new(NULL, PARTY__WS_CLOSE, payload, len);
}

/* ---- hand-over (an upgrade moves a reader to another process) ---- */

void party__ws_reader_pending(const party__ws_reader *r, party__slice *partial, party__slice *msg,
                              uint8_t *opcode, uint32_t *utf8_state) {
    *partial = r->b != NULL && r->b->partial != NULL
                   ? party__slice_make(r->b->partial, r->b->partial_len)
                   : party__slice_make(NULL, 0);
    *msg = r->b != NULL && r->b->msg != NULL ? party__slice_make(r->b->msg, r->b->msg_len)
                                             : party__slice_make(NULL, 0);
    *opcode = r->msg_opcode;
    *utf8_state = r->utf8_state;
}

int party__ws_reader_restore(party__ws_reader *r, uint8_t opcode, uint32_t utf8_state,
                             party__slice msg) {
    if (opcode == 0)
        return msg.len == 0 ? 0 : PARTY_EINVAL;
    if ((opcode != PARTY__WS_TEXT && opcode != PARTY__WS_BINARY) || msg.len > r->max_message ||
        (opcode == PARTY__WS_TEXT && utf8_state == PARTY__UTF8_REJECT))
        return PARTY_EINVAL;
    free_msg(r);
    if (msg_append(r, msg.ptr, msg.len) != 0)
        return PARTY_ENOMEM;
    r->msg_opcode = opcode;
    r->utf8_state = utf8_state;
    return 0;
}
