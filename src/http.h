/* http: a strict, incremental HTTP/1.1 request parser. It reads from one
 * contiguous buffer that the caller grows as bytes arrive; the request it
 * returns points into that buffer (zero-copy), and a chunked body is decoded
 * in place. Hard limits on header bytes, header count and body size. */
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
    party__slice method; /* token, e.g. "GET" */
    party__slice target; /* origin-form request target, e.g. "/a/b?x=1" */
    party__slice path;   /* target up to '?' */
    party__slice query;  /* after '?', without it; len 0 when none (ptr NULL if no '?') */
    int version_minor;   /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    party__http_header headers[PARTY__HTTP_MAX_HEADERS];
    size_t n_headers;
    party__slice body; /* Content-Length or de-chunked body; len 0, ptr NULL if none */
    int keep_alive;    /* 1.1 without "Connection: close", or 1.0 with keep-alive */
    int upgrade;       /* Connection has the "upgrade" token */
    int chunked;       /* Transfer-Encoding: chunked */
} party__http_request;

/* Parser state for one request. Zero it (or party__http_parser_init) before
 * the first call for each request. */
typedef struct party__http_parser {
    size_t scanned;    /* bytes already examined, so a call never rescans */
    size_t head_len;   /* length of the head once complete, else 0 */
    size_t body_start; /* where the body begins in the buffer */
    uint64_t content_length;
    size_t decoded;    /* chunked: decoded body bytes so far (body at body_start) */
    size_t chunk_left; /* chunked: bytes left in the current chunk */
    int chunk_state;   /* chunked: internal state */
    int chunked;       /* the body is chunked (req need not persist between calls) */
    size_t line_len;   /* chunked: bytes of the current size line, or of the trailers */
    size_t n_headers;  /* header fields in the head, for the trailer count limit */
    size_t n_trailers; /* trailer fields so far */
    int have_request;  /* head parsed into the request */
} party__http_parser;

enum {
    PARTY__HTTP_DONE = 1,  /* a whole request is in the buffer */
    PARTY__HTTP_AGAIN = 0, /* need more bytes: call again with the same buffer, grown */
    PARTY__HTTP_ERROR = -1 /* bad request: see error; answer err->status and close */
};

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

/* The reason phrase for a status code ("OK", "Not Found", ...); "Unknown"
 * for codes it does not know. */
const char *party__http_status_text(int status);

#endif
