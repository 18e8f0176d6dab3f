/* libFuzzer harness for the response parser of src/http.c. The first input
 * byte picks the limits, the options (no body, body to EOF) and a split
 * point; the rest is one stream from a server. It is parsed whole, in two
 * calls split there (the second into a fresh buffer, as after realloc), and
 * one byte per call, each ending the stream (eof) if the parser still wants
 * bytes. All must agree, every slice must lie inside the bytes consumed, the
 * body must follow the rules of RFC 9112 6.3, and a response must parse the
 * same without the bytes that follow it. */
#include "fuzz_http_common.h"

typedef struct outcome {
    int rc;
    size_t consumed;
    party__http_error err;
    party__http_response res;
    const char *base;
} outcome;

static void check_outcome(const outcome *o, size_t len, int flags,
                          const party__http_limits *limits) {
    const party__http_response *res = &o->res;
    size_t i;

    if (o->rc == PARTY__HTTP_ERROR) {
        CHECK(o->err.reason != NULL);
        CHECK(o->err.status == 400 || o->err.status == 413 || o->err.status == 431 ||
              o->err.status == 501 || o->err.status == 505);
        return;
    }
    /* Every call that may still be AGAIN is followed by one with eof. */
    CHECK(o->rc == PARTY__HTTP_DONE);
    CHECK(o->consumed <= len);
    CHECK(res->head_len <= o->consumed && res->head_len <= limits->max_header_bytes);
    CHECK(res->version_minor == 0 || res->version_minor == 1);
    CHECK(res->status >= 100 && res->status <= 999);
    check_slice(res->status_line, o->base, res->head_len);
    check_slice(res->reason, o->base, res->head_len);
    CHECK(res->status_line.ptr == o->base && res->status_line.len >= 12);
    CHECK(memcmp(res->status_line.ptr, "HTTP/1.", 7) == 0);
    CHECK(res->n_headers <= limits->max_headers && res->n_headers <= PARTY__HTTP_MAX_HEADERS);
    for (i = 0; i < res->n_headers; i++) {
        check_slice(res->headers[i].name, o->base, res->head_len);
        check_slice(res->headers[i].value, o->base, res->head_len);
        CHECK(res->headers[i].name.len > 0);
    }
    check_slice(res->body, o->base, o->consumed);
    CHECK(res->body.len <= limits->max_body);
    if (res->body.ptr != NULL)
        CHECK(res->body.ptr == o->base + res->head_len);
    if ((flags & PARTY__HTTP_NO_BODY) || res->status < 200 || res->status == 204 ||
        res->status == 304) {
        CHECK(res->body.len == 0 && o->consumed == res->head_len && !res->chunked);
    } else if (!res->chunked &&
               party__http_response_header_get(res, "content-length").ptr == NULL) {
        /* Neither framing: only a caller that reads to the end gets one, and
         * it is everything up to the end. */
        CHECK(flags & PARTY__HTTP_BODY_TO_EOF);
        CHECK(o->consumed == len && res->body.len == len - res->head_len);
        CHECK(!res->keep_alive);
    }
}

static void check_same(const outcome *a, const outcome *b) {
    size_t i;

    CHECK(a->rc == b->rc);
    if (a->rc == PARTY__HTTP_ERROR) {
        CHECK(a->err.status == b->err.status);
        CHECK(strcmp(a->err.reason, b->err.reason) == 0);
        return;
    }
    CHECK(a->consumed == b->consumed);
    CHECK(a->res.version_minor == b->res.version_minor);
    CHECK(a->res.status == b->res.status);
    check_same_slice(a->res.reason, a->base, b->res.reason, b->base);
    check_same_slice(a->res.status_line, a->base, b->res.status_line, b->base);
    CHECK(a->res.head_len == b->res.head_len);
    CHECK(a->res.n_headers == b->res.n_headers);
    for (i = 0; i < a->res.n_headers; i++) {
        check_same_slice(a->res.headers[i].name, a->base, b->res.headers[i].name, b->base);
        check_same_slice(a->res.headers[i].value, a->base, b->res.headers[i].value, b->base);
    }
    check_same_slice(a->res.body, a->base, b->res.body, b->base);
    if (a->res.body.len > 0)
        CHECK(memcmp(a->res.body.ptr, b->res.body.ptr, a->res.body.len) == 0);
    CHECK(a->res.keep_alive == b->res.keep_alive);
    CHECK(a->res.upgrade == b->res.upgrade);
    CHECK(a->res.chunked == b->res.chunked);
}

static void parse_into(outcome *o, party__http_parser *p, char *buf, size_t len, int eof,
                       const party__http_limits *limits) {
    o->base = buf;
    o->rc = party__http_response_parse(p, buf, len, eof, limits, &o->res, &o->consumed, &o->err);
    CHECK(o->rc == PARTY__HTTP_DONE || o->rc == PARTY__HTTP_ERROR ||
          (o->rc == PARTY__HTTP_AGAIN && !eof));
}

/* All of buf[0..len) has come: the stream ends if the parser wants more. */
static void parse_to_end(outcome *o, party__http_parser *p, char *buf, size_t len,
                         const party__http_limits *limits) {
    parse_into(o, p, buf, len, 0, limits);
    if (o->rc == PARTY__HTTP_AGAIN)
        parse_into(o, p, buf, len, 1, limits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static outcome whole, split, bytewise;
    const party__http_limits *limits;
    party__http_parser p;
    char *whole_buf, *split_buf, *fresh, *bytewise_buf;
    size_t len, cut, i;
    int flags;

    if (size < 1)
        return 0;
    limits = &limit_sets[data[0] & 3];
    flags = (data[0] >> 2) & 3; /* PARTY__HTTP_NO_BODY, PARTY__HTTP_BODY_TO_EOF */
    data++;
    len = size - 1;
    cut = len == 0 ? 0 : ((size_t)(data[-1] >> 4) * 97) % (len + 1);

    memset(&whole, 0, sizeof(whole));
    party__http_response_parser_init(&p, flags);
    whole_buf = copy_of(data, len);
    parse_to_end(&whole, &p, whole_buf, len, limits);
    check_outcome(&whole, len, flags, limits);

    /* Split: the first call sees data[0..cut); the second call gets a new
     * buffer with the first's bytes (as the parser left them) and the rest. */
    memset(&split, 0, sizeof(split));
    party__http_response_parser_init(&p, flags);
    split_buf = copy_of(data, cut);
    parse_into(&split, &p, split_buf, cut, 0, limits);
    if (split.rc == PARTY__HTTP_AGAIN) {
        fresh = malloc(len ? len : 1);
        CHECK(fresh != NULL);
        if (cut > 0)
            memcpy(fresh, split_buf, cut);
        if (len > cut)
            memcpy(fresh + cut, data + cut, len - cut);
        free(split_buf);
        split_buf = fresh;
        parse_to_end(&split, &p, split_buf, len, limits);
    }
    check_outcome(&split, len, flags, limits);
    check_same(&whole, &split);

    /* One byte per call into one growing buffer; bounded so each input stays
     * fast. */
    if (len <= 4096) {
        memset(&bytewise, 0, sizeof(bytewise));
        party__http_response_parser_init(&p, flags);
        bytewise_buf = copy_of(data, len);
        bytewise.rc = PARTY__HTTP_AGAIN;
        for (i = 0; i < len && bytewise.rc == PARTY__HTTP_AGAIN; i++)
            parse_into(&bytewise, &p, bytewise_buf, i, 0, limits);
        if (bytewise.rc == PARTY__HTTP_AGAIN)
            parse_to_end(&bytewise, &p, bytewise_buf, len, limits);
        check_outcome(&bytewise, len, flags, limits);
        check_same(&whole, &bytewise);
        free(bytewise_buf);
    }

    /* A response does not depend on the bytes after it: its own bytes alone
     * parse the same, and need no end of stream unless its body ran to it. */
    if (whole.rc == PARTY__HTTP_DONE) {
        static outcome alone;
        char *alone_buf = copy_of(data, whole.consumed);
        memset(&alone, 0, sizeof(alone));
        party__http_response_parser_init(&p, flags);
        parse_into(&alone, &p, alone_buf, whole.consumed, 0, limits);
        if (alone.rc == PARTY__HTTP_AGAIN) {
            CHECK(whole.consumed == len); /* read to the end of the stream */
            parse_into(&alone, &p, alone_buf, whole.consumed, 1, limits);
        }
        check_same(&whole, &alone);
        free(alone_buf);
    }
    free(whole_buf);
    free(split_buf);
    return 0;
}
