/* libFuzzer harness for src/http.c. The first input byte picks a split point
 * and the limits; the rest is parsed whole, in two calls split there (the
 * second into a fresh buffer, as after realloc), and one byte per call. All
 * must agree, every slice must lie inside the bytes consumed, and a request
 * must parse the same without the bytes that follow it. */
#include "fuzz_http_common.h"

typedef struct outcome {
    int rc;
    size_t consumed;
    party__http_error err;
    party__http_request req;
    const char *base;
} outcome;

static void check_outcome(const outcome *o, size_t len) {
    size_t i;

    if (o->rc == PARTY__HTTP_ERROR) {
        CHECK(o->err.reason != NULL);
        CHECK(o->err.status == 400 || o->err.status == 413 || o->err.status == 414 ||
              o->err.status == 417 || o->err.status == 431 || o->err.status == 501 ||
              o->err.status == 505);
        return;
    }
    CHECK(o->rc == PARTY__HTTP_AGAIN || o->rc == PARTY__HTTP_DONE);
    if (o->rc != PARTY__HTTP_DONE)
        return;
    CHECK(o->consumed <= len);
    check_slice(o->req.method, o->base, o->consumed);
    check_slice(o->req.target, o->base, o->consumed);
    check_slice(o->req.path, o->base, o->consumed);
    check_slice(o->req.query, o->base, o->consumed);
    check_slice(o->req.body, o->base, o->consumed);
    if (o->req.authority.ptr != NULL) {
        check_slice(o->req.authority, o->base, o->consumed);
        CHECK(o->req.authority.len > 0 && party__http_host_valid(o->req.authority));
    }
    /* origin-form, "*", or the path and query of an absolute-form target */
    CHECK(o->req.method.len > 0);
    CHECK((o->req.target.len == 1 && o->req.target.ptr[0] == '*') ||
          (o->req.path.len == 0 && o->req.authority.ptr != NULL) ||
          (o->req.path.len > 0 && o->req.path.ptr[0] == '/'));
    CHECK(memchr(o->req.target.ptr != NULL ? o->req.target.ptr : "", '#', o->req.target.len) ==
          NULL);
    CHECK(!o->req.expect_continue || o->req.version_minor == 1);
    CHECK(o->req.version_minor == 0 || o->req.version_minor == 1);
    CHECK(o->req.n_headers <= PARTY__HTTP_MAX_HEADERS);
    for (i = 0; i < o->req.n_headers; i++) {
        check_slice(o->req.headers[i].name, o->base, o->consumed);
        check_slice(o->req.headers[i].value, o->base, o->consumed);
        CHECK(o->req.headers[i].name.len > 0);
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
    if (a->rc != PARTY__HTTP_DONE)
        return;
    CHECK(a->consumed == b->consumed);
    check_same_slice(a->req.method, a->base, b->req.method, b->base);
    check_same_slice(a->req.target, a->base, b->req.target, b->base);
    check_same_slice(a->req.path, a->base, b->req.path, b->base);
    check_same_slice(a->req.query, a->base, b->req.query, b->base);
    check_same_slice(a->req.authority, a->base, b->req.authority, b->base);
    CHECK(a->req.expect_continue == b->req.expect_continue);
    CHECK(a->req.version_minor == b->req.version_minor);
    CHECK(a->req.n_headers == b->req.n_headers);
    for (i = 0; i < a->req.n_headers; i++) {
        check_same_slice(a->req.headers[i].name, a->base, b->req.headers[i].name, b->base);
        check_same_slice(a->req.headers[i].value, a->base, b->req.headers[i].value, b->base);
    }
    check_same_slice(a->req.body, a->base, b->req.body, b->base);
    if (a->req.body.len > 0)
        CHECK(memcmp(a->req.body.ptr, b->req.body.ptr, a->req.body.len) == 0);
    CHECK(a->req.keep_alive == b->req.keep_alive);
    CHECK(a->req.upgrade == b->req.upgrade);
    CHECK(a->req.chunked == b->req.chunked);
}

static void parse_into(outcome *o, party__http_parser *p, char *buf, size_t len,
                       const party__http_limits *limits) {
    o->base = buf;
    o->rc = party__http_parse(p, buf, len, limits, &o->req, &o->consumed, &o->err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static outcome whole, split, bytewise;
    const party__http_limits *limits;
    party__http_parser p;
    char *whole_buf, *split_buf, *fresh, *bytewise_buf;
    size_t len, cut, i;

    if (size < 1)
        return 0;
    limits = &limit_sets[data[0] & 3];
    data++;
    len = size - 1;
    cut = len == 0 ? 0 : ((size_t)(data[-1] >> 2) * 97) % (len + 1);

    memset(&whole, 0, sizeof(whole));
    party__http_parser_init(&p);
    whole_buf = copy_of(data, len);
    parse_into(&whole, &p, whole_buf, len, limits);
    check_outcome(&whole, len);

    /* Split: the first call sees data[0..cut); the second call gets a new
     * buffer with the first's bytes (as the parser left them) and the rest. */
    memset(&split, 0, sizeof(split));
    party__http_parser_init(&p);
    split_buf = copy_of(data, cut);
    parse_into(&split, &p, split_buf, cut, limits);
    check_outcome(&split, cut);
    if (split.rc == PARTY__HTTP_AGAIN) {
        fresh = malloc(len ? len : 1);
        CHECK(fresh != NULL);
        if (cut > 0)
            memcpy(fresh, split_buf, cut);
        if (len > cut)
            memcpy(fresh + cut, data + cut, len - cut);
        free(split_buf);
        split_buf = fresh;
        parse_into(&split, &p, split_buf, len, limits);
        check_outcome(&split, len);
    }
    check_same(&whole, &split);

    /* One byte per call into one growing buffer; bounded so each input stays
     * fast. */
    if (len <= 4096) {
        memset(&bytewise, 0, sizeof(bytewise));
        party__http_parser_init(&p);
        bytewise_buf = copy_of(data, len);
        bytewise.rc = PARTY__HTTP_AGAIN;
        for (i = 0; i <= len && bytewise.rc == PARTY__HTTP_AGAIN; i++)
            parse_into(&bytewise, &p, bytewise_buf, i, limits);
        check_outcome(&bytewise, len);
        check_same(&whole, &bytewise);
        free(bytewise_buf);
    }

    /* A request does not depend on the bytes pipelined after it: its own
     * bytes alone parse the same. */
    if (whole.rc == PARTY__HTTP_DONE) {
        static outcome alone;
        char *alone_buf = copy_of(data, whole.consumed);
        party__slice v = party__http_header_get(&whole.req, "content-length");
        check_slice(v, whole.base, whole.consumed);
        memset(&alone, 0, sizeof(alone));
        party__http_parser_init(&p);
        parse_into(&alone, &p, alone_buf, whole.consumed, limits);
        check_same(&whole, &alone);
        free(alone_buf);
    }
    free(whole_buf);
    free(split_buf);
    return 0;
}
