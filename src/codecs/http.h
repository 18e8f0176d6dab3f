/* http: strict, incremental HTTP/1.1 parsers for requests (what the server
 * reads) and responses (what its clients read: room-to-room answers, the test
 * harness, the CLI). Each reads from one contiguous buffer that the caller
 * grows as bytes arrive; the message it returns points into that buffer
 * (zero-copy), and a chunked body is decoded in place. Hard limits on header
 * bytes, header count and body size. */
#ifndef PARTY_HTTP_H
#define PARTY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PARTY__HTTP_MAX_HEADERS 128 /* ceiling for limits.max_headers */

typedef struct party__http_limits {
    size_t max_header_bytes; /* request line + header lines + blank line */
    size_t max_headers;      /* header fields; at most PARTY__HTTP_MAX_HEADERS */
    size_t max_body;         /* decoded body bytes */
} party__http_limits;

typedef struct party__http_header {
    party__slice name;  /* as received; compare case-insensitively */
    party__slice value; /* leading and trailing spaces/tabs trimmed */
} party__http_header;

typedef struct party__http_request {
    party__slice method;    /* token, e.g. "GET" */
    party__slice target;    /* the request target in origin-form, e.g. "/a/b?x=1"; "*" for
                               OPTIONS *; of an absolute-form target (http://h/a?x=1) its path
                               and query, which may be empty (path "") */
    party__slice authority; /* of an absolute-form target (stands for Host); else ptr NULL */
    party__slice path;      /* target up to '?' */
    party__slice query;     /* after '?', without it; len 0 when none (ptr NULL if no '?') */
    int version_minor;      /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    party__http_header headers[PARTY__HTTP_MAX_HEADERS];
    size_t n_headers;
    party__slice body;     /* Content-Length or de-chunked body; len 0, ptr NULL if none */
    int keep_alive;        /* 1.1 without "Connection: close", or 1.0 with keep-alive */
    int upgrade;           /* Connection has the "upgrade" token */
    int upgrade_websocket; /* HTTP/1.1 whose Upgrade lists websocket: a handshake to check */
    int chunked;           /* Transfer-Encoding: chunked */
    int expect_continue;   /* HTTP/1.1 with "Expect: 100-continue" */
} party__http_request;

/* Parser state for one message. Zero it (or party__http_parser_init) before
 * the first call for each request; party__http_response_parser_init before
 * the first call for each response. */
typedef struct party__http_parser {
    size_t scanned;    /* bytes already examined, so a call never rescans */
    size_t head_len;   /* length of the head once complete, else 0 */
    size_t body_start; /* where the body begins in the buffer */
    uint64_t content_length;
    size_t decoded;      /* chunked: decoded body bytes so far (body at body_start) */
    size_t chunk_left;   /* chunked: bytes left in the current chunk */
    int chunk_state;     /* chunked: internal state */
    int chunked;         /* the body is chunked (req need not persist between calls) */
    size_t line_len;     /* chunked: bytes of the current size line, or of the trailers */
    size_t n_headers;    /* header fields in the head, for the trailer count limit */
    size_t n_trailers;   /* trailer fields so far */
    int have_request;    /* head parsed into the request (or response) */
    int response;        /* parsing a response: party__http_response_parser_init */
    int flags;           /* response: PARTY__HTTP_NO_BODY, PARTY__HTTP_BODY_TO_EOF */
    int to_eof;          /* response: the body runs to the end of the stream */
    int expect_continue; /* request: the head asks for 100 Continue (set once it is parsed) */
} party__http_parser;

enum {
    PARTY__HTTP_DONE = 1,  /* a whole message is in the buffer */
    PARTY__HTTP_AGAIN = 0, /* need more bytes: call again with the same buffer, grown */
    PARTY__HTTP_ERROR = -1 /* bad message: see error; for a request, answer err->status
                              and close */
};

/* What was wrong. For a response, status is the class of the fault as a
 * server would answer it about a request: 400 malformed or cut short, 413
 * body over max_body, 431 head over max_header_bytes or max_headers, 501
 * unsupported transfer coding, 505 not HTTP/1.x. A request also gets 414
 * (request line over max_header_bytes), 417 (an expectation other than
 * 100-continue) and 501 (CONNECT). */
typedef struct party__http_error {
    int status;         /* 400, 413, 431, 501 or 505 */
    const char *reason; /* static text for the log and the response body,
                           naming the limit when a limit was hit */
} party__http_error;

void party__http_parser_init(party__http_parser *p);

/* Parses the request at the start of buf[0..len). buf is the same buffer on
 * every call for one request, with the bytes of earlier calls unchanged at the
 * same offsets (it may have moved in memory: pointers are rebuilt on DONE).
 * The parser may rewrite bytes of the body in place (chunked decoding).
 *
 * DONE: *req describes the request (slices into buf, valid while buf is) and
 * *consumed is how many bytes of buf it used; any rest starts the next one.
 * AGAIN: nothing to act on yet. ERROR: *err is set. *req is only complete on
 * DONE; it need not be the same object on every call. */
int party__http_parse(party__http_parser *p, char *buf, size_t len,
                      const party__http_limits *limits, party__http_request *req, size_t *consumed,
                      party__http_error *err);

/* The value of the first header with this name (case-insensitive), or a
 * slice with ptr NULL. */
party__slice party__http_header_get(const party__http_request *req, const char *name);

/* ---- responses ---- */

typedef struct party__http_response {
    int version_minor;        /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    int status;               /* three digits, 100-999 */
    party__slice reason;      /* reason phrase, may be empty (len 0) */
    party__slice status_line; /* the whole status line, without its CRLF */
    size_t head_len;          /* bytes of the head: status line, fields, blank line */
    party__http_header headers[PARTY__HTTP_MAX_HEADERS];
    size_t n_headers;
    party__slice body; /* Content-Length, de-chunked or read-to-EOF body; len 0, ptr NULL if none */
    int keep_alive;    /* the connection may carry another exchange */
    int upgrade;       /* Connection has the "upgrade" token */
    int chunked;       /* Transfer-Encoding: chunked */
} party__http_response;

/* Options of one response, fixed for all its calls. */
enum {
    /* No body is read: DONE at the end of the head, whatever the head says.
     * For the answer to a HEAD request (RFC 9112 6.3), or a caller that
     * reads only the head and handles what follows itself. 1xx, 204 and 304
     * responses never have a body. */
    PARTY__HTTP_NO_BODY = 1,
    /* A response with neither Content-Length nor chunked framing has a body
     * that runs to the end of the stream. Without this flag such a response
     * is an error: the caller cannot tell where it ends. */
    PARTY__HTTP_BODY_TO_EOF = 2
};

void party__http_response_parser_init(party__http_parser *p, int flags);

/* Parses the response at the start of buf[0..len): status line "HTTP/1.x
 * SSS reason", header fields with the request parser's strictness and
 * limits, then the body. The buffer contract is party__http_parse's. eof: no
 * byte will follow buf[0..len) (the peer closed); it ends a read-to-EOF body,
 * and a response still incomplete then is an error.
 *
 * DONE: *res describes the response (slices into buf, valid while buf is)
 * and *consumed is how many bytes of buf it used. A 1xx response is DONE at
 * the end of its head, with no body: the bytes after it (*consumed on) are
 * the final response or, after a 101, the new protocol. AGAIN: need more
 * bytes (never when eof). ERROR: *err is set (see party__http_error). */
int party__http_response_parse(party__http_parser *p, char *buf, size_t len, int eof,
                               const party__http_limits *limits, party__http_response *res,
                               size_t *consumed, party__http_error *err);

/* The value of the first response header with this name (case-insensitive),
 * or a slice with ptr NULL. */
party__slice party__http_response_header_get(const party__http_response *res, const char *name);

/* The reason phrase for a status code ("OK", "Not Found", ...); "Unknown"
 * for codes it does not know. */
const char *party__http_status_text(int status);

/* 1 if v is a valid Host field value (RFC 9112 3.2, RFC 3986 3.2.2):
 * empty, or uri-host [":" port]. The IP-literal form is checked for its
 * characters only. */
int party__http_host_valid(party__slice v);

/* 1 if s (NUL-terminated) is a token (RFC 9110 5.6.2: a method or a field
 * name); 0 for NULL or "". */
int party__http_token_valid(const char *s);
/* 1 if s (NUL-terminated) may be sent as a field value: no control
 * character but tab (RFC 9110 5.5). */
int party__http_field_value_valid(const char *s);

#endif
