/* Unit tests for src/http.c: request line and header parsing, keep-alive and
 * upgrade rules, every rejection with its status, the limits, Content-Length
 * and chunked bodies fed in pieces (also into a buffer that moves between
 * calls), pipelining, and that splitting the input never changes the result. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static const party__http_limits default_limits = {8192, 100, 1 << 20};

/* Everything one parse produced, with slices as offsets so results from
 * different buffers compare equal. */
typedef struct result {
    int rc;
    size_t consumed;
    int status;
    const char *reason;
    party__http_request req;
    const char *base;
} result;

static result *result_new(void) {
    result *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    return r;
}

/* Parses buf[0..len) in one call. */
static int parse_whole(char *buf, size_t len, const party__http_limits *limits, result *r) {
    party__http_parser p;
    party__http_error err = {0, NULL};

    party__http_parser_init(&p);
    r->base = buf;
    r->rc = party__http_parse(&p, buf, len, limits, &r->req, &r->consumed, &err);
    r->status = err.status;
    r->reason = err.reason;
    return r->rc;
}

/* Parses a string literal copied into a heap buffer of exactly its length, so
 * that ASan catches any read past the end. The caller frees *out. */
static int parse_text(const char *text, const party__http_limits *limits, result *r, char **out) {
    size_t len = strlen(text);
    char *buf = malloc(len ? len : 1);

    assert_non_null(buf);
    memcpy(buf, text, len);
    *out = buf;
    return parse_whole(buf, len, limits, r);
}

static void assert_rejected_with(const char *text, const party__http_limits *limits, int status) {
    result *r = result_new();
    char *buf;

    if (parse_text(text, limits, r, &buf) != PARTY__HTTP_ERROR || r->status != status) {
        print_error("input: \"%s\"\nrc %d status %d (%s), expected status %d\n", text, r->rc,
                    r->status, r->reason ? r->reason : "-", status);
        fail();
    }
    assert_non_null(r->reason);
    free(buf);
    free(r);
}

static void assert_rejected(const char *text, int status) {
    assert_rejected_with(text, &default_limits, status);
}

/* Feeds src[0..len) into a growing buffer: first `first` bytes, then `step`
 * more per call. With moving set, every call gets a fresh heap buffer holding
 * the previous buffer's bytes (which the parser may have rewritten) plus the
 * new ones, as realloc would. Stops at the first result other than AGAIN. The
 * caller frees *out. */
static int feed(const char *src, size_t len, size_t first, size_t step, int moving,
                const party__http_limits *limits, result *r, char **out, size_t *calls) {
    party__http_parser p;
    party__http_error err = {0, NULL};
    char *buf = malloc(len ? len : 1);
    size_t have = 0, n = first;

    assert_non_null(buf);
    party__http_parser_init(&p);
    *calls = 0;
    for (;;) {
        if (n > len)
            n = len;
        if (moving) {
            char *fresh = malloc(len ? len : 1);
            assert_non_null(fresh);
            memcpy(fresh, buf, have);
            free(buf);
            buf = fresh;
        }
        memcpy(buf + have, src + have, n - have);
        have = n;
        (*calls)++;
        r->rc = party__http_parse(&p, buf, have, limits, &r->req, &r->consumed, &err);
        if (r->rc != PARTY__HTTP_AGAIN || have == len)
            break;
        assert_int_equal(p.scanned <= have, 1);
        n = have + step;
    }
    r->base = buf;
    r->status = err.status;
    r->reason = err.reason;
    *out = buf;
    return r->rc;
}

static int feed_bytewise(const char *src, size_t len, int moving, result *r, char **out) {
    size_t calls;
    return feed(src, len, 1, 1, moving, &default_limits, r, out, &calls);
}

static void assert_slice(party__slice s, const char *expected) {
    size_t n = strlen(expected);
    if (s.len != n || (n > 0 && memcmp(s.ptr, expected, n) != 0)) {
        print_error("slice \"%.*s\" != \"%s\"\n", (int)s.len, s.ptr ? s.ptr : "", expected);
        fail();
    }
}

static void assert_slice_offset_equal(party__slice a, const char *base_a, party__slice b,
                                      const char *base_b) {
    assert_int_equal(a.len, b.len);
    assert_int_equal(a.ptr == NULL, b.ptr == NULL);
    if (a.ptr != NULL)
        assert_int_equal(a.ptr - base_a, b.ptr - base_b);
}

/* Two results are the same: status, consumed bytes, every slice at the same
 * offset, and the same body bytes. */
static void assert_same_result(const result *a, const result *b) {
    size_t i;

    assert_int_equal(a->rc, b->rc);
    if (a->rc == PARTY__HTTP_ERROR) {
        assert_int_equal(a->status, b->status);
        assert_string_equal(a->reason, b->reason);
        return;
    }
    if (a->rc != PARTY__HTTP_DONE)
        return;
    assert_int_equal(a->consumed, b->consumed);
    assert_slice_offset_equal(a->req.method, a->base, b->req.method, b->base);
    assert_slice_offset_equal(a->req.target, a->base, b->req.target, b->base);
    assert_slice_offset_equal(a->req.path, a->base, b->req.path, b->base);
    assert_slice_offset_equal(a->req.query, a->base, b->req.query, b->base);
    assert_int_equal(a->req.version_minor, b->req.version_minor);
    assert_int_equal(a->req.n_headers, b->req.n_headers);
    for (i = 0; i < a->req.n_headers; i++) {
        assert_slice_offset_equal(a->req.headers[i].name, a->base, b->req.headers[i].name, b->base);
        assert_slice_offset_equal(a->req.headers[i].value, a->base, b->req.headers[i].value,
                                  b->base);
    }
    assert_slice_offset_equal(a->req.body, a->base, b->req.body, b->base);
    if (a->req.body.len > 0)
        assert_memory_equal(a->req.body.ptr, b->req.body.ptr, a->req.body.len);
    assert_int_equal(a->req.keep_alive, b->req.keep_alive);
    assert_int_equal(a->req.upgrade, b->req.upgrade);
    assert_int_equal(a->req.chunked, b->req.chunked);
}

/* ---- request line and headers ---- */

static void test_simple_get_is_parsed(void **state) {
    result *r = result_new();
    char *buf;
    const char *text = "GET /parties/chat/lobby HTTP/1.1\r\nHost: example.com\r\n\r\n";

    (void)state;
    assert_int_equal(parse_text(text, &default_limits, r, &buf), PARTY__HTTP_DONE);
    assert_int_equal(r->consumed, strlen(text));
    assert_slice(r->req.method, "GET");
    assert_slice(r->req.target, "/parties/chat/lobby");
    assert_slice(r->req.path, "/parties/chat/lobby");
    assert_int_equal(r->req.query.len, 0);
    assert_null(r->req.query.ptr);
    assert_int_equal(r->req.version_minor, 1);
    assert_int_equal(r->req.n_headers, 1);
    assert_slice(r->req.headers[0].name, "Host");
    assert_slice(r->req.headers[0].value, "example.com");
    assert_null(r->req.body.ptr);
    assert_int_equal(r->req.body.len, 0);
    assert_int_equal(r->req.keep_alive, 1);
    assert_int_equal(r->req.upgrade, 0);
    assert_int_equal(r->req.chunked, 0);
    /* Zero-copy: slices point into the buffer. */
    assert_ptr_equal(r->req.method.ptr, buf);
    free(buf);
    free(r);
}

static void test_target_is_split_into_path_and_query_at_first_question_mark(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(
        parse_text("GET /a/b?x=1&y=?2 HTTP/1.1\r\nHost: h\r\n\r\n", &default_limits, r, &buf),
        PARTY__HTTP_DONE);
    assert_slice(r->req.target, "/a/b?x=1&y=?2");
    assert_slice(r->req.path, "/a/b");
    assert_slice(r->req.query, "x=1&y=?2");
    free(buf);

    assert_int_equal(parse_text("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.path, "/a");
    assert_non_null(r->req.query.ptr);
    assert_int_equal(r->req.query.len, 0);
    free(buf);
    free(r);
}

static void test_header_values_are_trimmed_of_spaces_and_tabs(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost:h\r\nX-A: \t a b \t \r\nX-Empty:   \r\n"
                                "X-Tight:v\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.n_headers, 4);
    assert_slice(r->req.headers[0].value, "h");
    assert_slice(r->req.headers[1].value, "a b");
    assert_slice(r->req.headers[2].value, "");
    assert_slice(r->req.headers[3].value, "v");
    free(buf);
    free(r);
}

static void test_header_lookup_ignores_case_and_returns_first(void **state) {
    result *r = result_new();
    char *buf;
    party__slice v;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: h\r\nX-Thing: one\r\nx-thing: two\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    v = party__http_header_get(&r->req, "X-THING");
    assert_slice(v, "one");
    v = party__http_header_get(&r->req, "host");
    assert_slice(v, "h");
    v = party__http_header_get(&r->req, "missing");
    assert_null(v.ptr);
    assert_int_equal(v.len, 0);
    free(buf);
    free(r);
}

static void test_obs_text_is_allowed_in_header_values(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.headers[1].value, "caf\xc3\xa9");
    free(buf);
    free(r);
}

static void test_http10_without_host_is_accepted(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.0\r\n\r\n", &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.version_minor, 0);
    assert_int_equal(r->req.n_headers, 0);
    free(buf);
    free(r);
}

/* ---- keep-alive and upgrade ---- */

static int keep_alive_of(const char *text) {
    result *r = result_new();
    char *buf;
    int keep_alive;

    assert_int_equal(parse_text(text, &default_limits, r, &buf), PARTY__HTTP_DONE);
    keep_alive = r->req.keep_alive;
    free(buf);
    free(r);
    return keep_alive;
}

static void test_http11_keeps_alive_unless_connection_close(void **state) {
    (void)state;
    assert_int_equal(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
    assert_int_equal(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"),
                     1);
    assert_int_equal(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 0);
    assert_int_equal(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n"),
                     0);
    assert_int_equal(
        keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nconnection: Close\r\n\r\n"),
        0);
    /* A token that merely contains "close" is not the close option. */
    assert_int_equal(keep_alive_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"), 1);
}

static void test_http10_keeps_alive_only_with_keep_alive_token(void **state) {
    (void)state;
    assert_int_equal(keep_alive_of("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 1);
    assert_int_equal(keep_alive_of("GET / HTTP/1.0\r\nConnection: x, keep-alive \r\n\r\n"), 1);
    assert_int_equal(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
}

static int upgrade_of(const char *text) {
    result *r = result_new();
    char *buf;
    int upgrade;

    assert_int_equal(parse_text(text, &default_limits, r, &buf), PARTY__HTTP_DONE);
    upgrade = r->req.upgrade;
    free(buf);
    free(r);
    return upgrade;
}

static void test_upgrade_token_is_found_in_connection_lists(void **state) {
    (void)state;
    assert_int_equal(upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n"), 1);
    assert_int_equal(
        upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, upgrade\r\n\r\n"), 1);
    assert_int_equal(upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
                                "Connection: UPGRADE\r\n\r\n"),
                     1);
    assert_int_equal(upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: ,, upgrade ,\r\n\r\n"),
                     1);
    assert_int_equal(upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgraded\r\n\r\n"), 0);
    assert_int_equal(upgrade_of("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"), 0);
}

static void test_websocket_handshake_request_is_parsed(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET /parties/main/room?_pk=abc HTTP/1.1\r\n"
                                "Host: localhost:1999\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.upgrade, 1);
    assert_slice(party__http_header_get(&r->req, "upgrade"), "websocket");
    assert_slice(party__http_header_get(&r->req, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_slice(r->req.query, "_pk=abc");
    free(buf);
    free(r);
}

/* ---- rejections ---- */

static void test_malformed_method_is_400(void **state) {
    (void)state;
    assert_rejected(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET\r\nHost: h\r\n\r\n", 400);
}

static void test_target_not_in_origin_form_is_400(void **state) {
    (void)state;
    assert_rejected("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_target_with_space_or_control_is_400(void **state) {
    (void)state;
    assert_rejected("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /\r\nHost: h\r\n\r\n", 400);
}

static void test_target_with_nul_byte_is_400(void **state) {
    char text[] = "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n";
    result *r = result_new();

    (void)state;
    assert_int_equal(parse_whole(text, sizeof(text) - 1, &default_limits, r), PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 400);
    free(r);
}

static void test_garbage_version_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/2\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / FOO\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
}

static void test_other_http_versions_are_505(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    assert_rejected("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    assert_rejected("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
}

static void test_bare_lf_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    assert_rejected("\n", 400);
}

static void test_bare_lf_is_rejected_before_the_head_is_complete(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.1\nHost: h", &default_limits, r, &buf),
                     PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 400);
    free(buf);
    free(r);
}

static void test_bare_cr_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400);
}

static void test_empty_request_line_is_400(void **state) {
    (void)state;
    assert_rejected("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_whitespace_before_header_colon_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
}

static void test_malformed_header_name_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX\x80: z\r\n\r\n", 400);
}

static void test_obs_fold_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
}

static void test_control_characters_in_header_value_are_400(void **state) {
    char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    result *r = result_new();

    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01 b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[31m\r\n\r\n", 400);
    assert_int_equal(parse_whole(nul, sizeof(nul) - 1, &default_limits, r), PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 400);
    free(r);
}

static void test_tab_inside_header_value_is_kept(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(
        parse_text("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n", &default_limits, r, &buf),
        PARTY__HTTP_DONE);
    assert_slice(r->req.headers[1].value, "a\tb");
    free(buf);
    free(r);
}

static void test_http11_without_host_is_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", 400);
}

static void test_multiple_host_fields_are_400(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
}

static void test_malformed_content_length_is_400(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\nhello", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5.0\r\n\r\nhello", 400);
}

static void test_conflicting_content_lengths_are_400(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                    "Content-Length: 6\r\n\r\nhello!",
                    400);
}

static void test_repeated_equal_content_lengths_are_accepted(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                                "content-length: 005\r\n\r\nhello",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.body, "hello");
    free(buf);
    free(r);
}

static void test_content_length_overflow_is_413(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\n"
                    "Content-Length: 99999999999999999999999999999999\r\n\r\n",
                    413);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\n"
                    "Content-Length: 18446744073709551616\r\n\r\n",
                    413);
}

static void test_content_length_with_transfer_encoding_is_400(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    400);
}

static void test_transfer_codings_other_than_chunked_are_501(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    501);
}

static void test_malformed_transfer_encoding_is_400(void **state) {
    (void)state;
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}

static void test_malformed_chunked_framing_is_400(void **state) {
    static const char *const bodies[] = {
        "x\r\n",                 /* not hex */
        "\r\n",                  /* no size */
        ";ext\r\n",              /* no size */
        "5\nhello\r\n0\r\n\r\n", /* bare LF after size */
        "5\rhello\r\n0\r\n\r\n", /* CR without LF */
        "5 x\r\nhello\r\n",      /* garbage after BWS */
        "5 \r\nhello\r\n",       /* BWS without extension */
        "-5\r\nhello\r\n",       /* sign */
        "5\r\nhelloXY",          /* no CRLF after data */
        "5\r\nhello\rX",         /* CR then not LF */
        "5\r\nhello\n0\r\n\r\n", /* bare LF after data */
        "5;a\x01\r\nhello\r\n",  /* control in extension */
        "0\r\n\n",               /* bare LF ending the body */
        "0\r\n\rX",              /* CR then not LF at the end */
        "0\r\nX : y\r\n\r\n",    /* space before trailer colon */
        "0\r\n y\r\n\r\n",       /* folded trailer */
        "0\r\n:y\r\n\r\n",       /* empty trailer name */
        "0\r\nX: a\x01\r\n\r\n", /* control in trailer value */
        "0\r\nX: a\n\r\n",       /* bare LF in trailers */
        "0\r\nX: a\rb\r\n\r\n",  /* CR without LF in trailers */
    };
    char text[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%s", bodies[i]);
        assert_rejected(text, 400);
    }
}

/* ---- limits ---- */

static void test_head_over_max_header_bytes_is_431_naming_the_limit(void **state) {
    party__http_limits limits = {64, 100, 1024};
    result *r = result_new();
    char *buf;
    const char *fits = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: 0123456789012345678901234567\r\n\r\n";

    (void)state;
    /* Exactly at the limit is fine; one byte over is not. */
    assert_int_equal(strlen(fits), 64);
    assert_int_equal(parse_text(fits, &limits, r, &buf), PARTY__HTTP_DONE);
    free(buf);
    assert_int_equal(
        parse_text("GET / HTTP/1.1\r\nHost: h\r\nX-Pad: 01234567890123456789012345678\r\n"
                   "\r\n",
                   &limits, r, &buf),
        PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    assert_non_null(strstr(r->reason, "max_header_bytes"));
    free(buf);
    free(r);
}

static void test_request_line_over_max_header_bytes_is_431(void **state) {
    party__http_limits limits = {32, 100, 1024};

    (void)state;
    assert_rejected_with("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n", &limits,
                         431);
}

static void test_head_overflow_is_reported_without_waiting_for_more_bytes(void **state) {
    party__http_limits limits = {32, 100, 1024};
    result *r = result_new();
    char *buf;

    (void)state;
    /* 31 bytes with no end in sight: could still fit. */
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: hhhhhhhhh", &limits, r, &buf),
                     PARTY__HTTP_AGAIN);
    free(buf);
    /* 32 bytes and no blank line: the head can only end past the limit. */
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: hhhhhhhhhh", &limits, r, &buf),
                     PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    free(buf);
    free(r);
}

static void test_more_headers_than_max_headers_is_431_naming_the_limit(void **state) {
    party__http_limits limits = {8192, 3, 1024};
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(
        parse_text("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", &limits, r, &buf),
        PARTY__HTTP_DONE);
    free(buf);
    assert_int_equal(
        parse_text("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &limits, r, &buf),
        PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    assert_non_null(strstr(r->reason, "max_headers"));
    free(buf);
    free(r);
}

static void test_max_headers_is_capped_at_the_request_array_size(void **state) {
    party__http_limits limits = {1 << 16, 100000, 1024};
    char text[8192];
    size_t n = 0, i;
    result *r = result_new();
    char *buf;

    (void)state;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 0; i < PARTY__HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "X-%zu: v\r\n", i);
    snprintf(text + n, sizeof(text) - n, "\r\n");
    assert_int_equal(parse_text(text, &limits, r, &buf), PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    free(buf);
    free(r);
}

static void test_content_length_over_max_body_is_413_before_the_body_arrives(void **state) {
    party__http_limits limits = {8192, 100, 10};
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
                                "0123456789",
                                &limits, r, &buf),
                     PARTY__HTTP_DONE);
    free(buf);
    assert_int_equal(
        parse_text("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", &limits, r, &buf),
        PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 413);
    assert_non_null(strstr(r->reason, "max_body"));
    free(buf);
    free(r);
}

static void test_chunked_body_over_max_body_is_413_as_soon_as_a_size_says_so(void **state) {
    party__http_limits limits = {8192, 100, 10};
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
                                &limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.body, "0123456789");
    free(buf);
    /* The second size line alone proves the body too big: no data needed. */
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\n01234\r\n6",
                                &limits, r, &buf),
                     PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 413);
    assert_non_null(strstr(r->reason, "max_body"));
    free(buf);
    free(r);
}

static void test_huge_chunk_size_is_413_not_an_overflow(void **state) {
    party__http_limits limits = {8192, 100, SIZE_MAX};

    (void)state;
    assert_rejected_with("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "fffffffffffffffffffffffff\r\n",
                         &limits, 413);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "10000000000000000\r\n",
                    413);
}

static void test_chunk_size_line_over_max_header_bytes_is_413(void **state) {
    party__http_limits limits = {128, 100, 1024};
    char text[512];
    int n;

    (void)state;
    n = snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;");
    memset(text + n, 'x', 200);
    text[n + 200] = '\0';
    assert_rejected_with(text, &limits, 413);
    /* Leading zeros cannot make the size line endless either. */
    n = snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(text + n, '0', 200);
    text[n + 200] = '\0';
    assert_rejected_with(text, &limits, 413);
}

static void test_trailers_count_against_the_head_limits(void **state) {
    const char *head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    /* Room for the trailer section "X: <value>\r\n\r\n" with a 20-byte value. */
    party__http_limits bytes = {strlen(head) + 27, 100, 1024};
    party__http_limits count = {8192, 3, 1024};
    char text[512];
    result *r = result_new();
    char *buf;

    (void)state;
    snprintf(text, sizeof(text), "%s0\r\nX: 01234567890123456789\r\n\r\n", head);
    assert_int_equal(parse_text(text, &bytes, r, &buf), PARTY__HTTP_DONE);
    free(buf);
    snprintf(text, sizeof(text), "%s0\r\nX: 012345678901234567890\r\n\r\n", head);
    assert_int_equal(parse_text(text, &bytes, r, &buf), PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    assert_non_null(strstr(r->reason, "max_header_bytes"));
    free(buf);

    /* Two header fields plus one trailer fit in 3; plus two do not. */
    snprintf(text, sizeof(text), "%s0\r\nA: 1\r\n\r\n", head);
    assert_int_equal(parse_text(text, &count, r, &buf), PARTY__HTTP_DONE);
    free(buf);
    snprintf(text, sizeof(text), "%s0\r\nA: 1\r\nB: 2\r\n\r\n", head);
    assert_int_equal(parse_text(text, &count, r, &buf), PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 431);
    assert_non_null(strstr(r->reason, "max_headers"));
    free(buf);
    free(r);
}

/* ---- bodies ---- */

static void test_content_length_body_is_returned(void **state) {
    result *r = result_new();
    char *buf;
    const char *text = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";

    (void)state;
    assert_int_equal(parse_text(text, &default_limits, r, &buf), PARTY__HTTP_DONE);
    assert_slice(r->req.body, "hello");
    assert_int_equal(r->consumed, strlen(text));
    assert_int_equal(r->req.chunked, 0);
    free(buf);
    free(r);
}

static void test_content_length_zero_has_no_body(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_null(r->req.body.ptr);
    assert_int_equal(r->req.body.len, 0);
    free(buf);
    free(r);
}

static void test_get_with_content_length_body_is_allowed(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.body, "abc");
    free(buf);
    assert_int_equal(parse_text("HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.body, "abc");
    free(buf);
    free(r);
}

static void test_incomplete_content_length_body_waits(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhell",
                                &default_limits, r, &buf),
                     PARTY__HTTP_AGAIN);
    free(buf);
    free(r);
}

static void test_content_length_body_arriving_one_byte_at_a_time(void **state) {
    const char *text = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    int moving;

    (void)state;
    for (moving = 0; moving <= 1; moving++) {
        result *r = result_new();
        char *buf;
        assert_int_equal(feed_bytewise(text, strlen(text), moving, r, &buf), PARTY__HTTP_DONE);
        assert_int_equal(r->consumed, strlen(text));
        assert_slice(r->req.body, "hello world");
        assert_slice(r->req.path, "/x");
        assert_ptr_equal(r->req.method.ptr, buf);
        assert_ptr_equal(r->req.body.ptr, buf + strlen(text) - 11);
        free(buf);
        free(r);
    }
}

static const char chunked_text[] = "POST /upload?id=7 HTTP/1.1\r\n"
                                   "Host: h\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "\r\n"
                                   "5;name=value\r\n"
                                   "hello\r\n"
                                   "1 ; a=\"b c\"\r\n"
                                   " \r\n"
                                   "A\r\n"
                                   "0123456789\r\n"
                                   "00000\r\n"
                                   "Checksum: abc\r\n"
                                   "X-Trailer:\tz\r\n"
                                   "\r\n";

static void assert_chunked_result(const result *r, const char *buf) {
    assert_int_equal(r->rc, PARTY__HTTP_DONE);
    assert_int_equal(r->consumed, sizeof(chunked_text) - 1);
    assert_int_equal(r->req.chunked, 1);
    assert_slice(r->req.body, "hello 0123456789");
    assert_slice(r->req.query, "id=7");
    /* Decoded in place, right after the head. */
    assert_ptr_equal(r->req.body.ptr, strstr(chunked_text, "\r\n\r\n") + 4 - chunked_text + buf);
    /* Trailers are skipped, not added to the headers. */
    assert_int_equal(r->req.n_headers, 2);
    assert_null(party__http_header_get(&r->req, "checksum").ptr);
}

static void test_chunked_body_with_extensions_and_trailers_is_decoded_in_place(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    parse_text(chunked_text, &default_limits, r, &buf);
    assert_chunked_result(r, buf);
    free(buf);
    free(r);
}

static void test_chunked_body_arriving_one_byte_at_a_time_decodes_in_place(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    feed_bytewise(chunked_text, sizeof(chunked_text) - 1, 0, r, &buf);
    assert_chunked_result(r, buf);
    free(buf);
    free(r);
}

static void test_chunked_body_split_across_reads_into_a_moving_buffer_decodes(void **state) {
    size_t step;

    (void)state;
    for (step = 1; step < sizeof(chunked_text); step += 3) {
        result *r = result_new();
        char *buf;
        size_t calls;
        feed(chunked_text, sizeof(chunked_text) - 1, step, step, 1, &default_limits, r, &buf,
             &calls);
        assert_chunked_result(r, buf);
        free(buf);
        free(r);
    }
}

static void test_empty_chunked_body_has_no_body(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                                "0\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.chunked, 1);
    assert_null(r->req.body.ptr);
    assert_int_equal(r->req.body.len, 0);
    free(buf);
    free(r);
}

static void test_incomplete_chunked_body_waits(void **state) {
    static const char *const partial[] = {"",
                                          "5",
                                          "5\r",
                                          "5\r\nhel",
                                          "5\r\nhello\r",
                                          "5\r\nhello\r\n0\r\n",
                                          "5\r\nhello\r\n0\r\nX: y\r\n",
                                          "5\r\nhello\r\n0\r\n\r"};
    char text[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        result *r = result_new();
        char *buf;
        snprintf(text, sizeof(text),
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%s", partial[i]);
        assert_int_equal(parse_text(text, &default_limits, r, &buf), PARTY__HTTP_AGAIN);
        free(buf);
        free(r);
    }
}

/* ---- pipelining and incrementality ---- */

static void test_pipelined_requests_are_parsed_one_after_the_other(void **state) {
    char text[] = "POST /one HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\n\r\n"
                  "GET /two HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxy"
                  "GET /three";
    size_t len = sizeof(text) - 1, consumed, first;
    party__http_parser p;
    party__http_request *req = calloc(1, sizeof(*req));
    party__http_error err;
    const char *second;

    (void)state;
    assert_non_null(req);
    party__http_parser_init(&p);
    assert_int_equal(party__http_parse(&p, text, len, &default_limits, req, &consumed, &err),
                     PARTY__HTTP_DONE);
    assert_slice(req->path, "/one");
    assert_slice(req->body, "abc");
    second = strstr(text, "GET /two");
    first = consumed;
    assert_ptr_equal(text + first, second);

    party__http_parser_init(&p);
    assert_int_equal(
        party__http_parse(&p, text + first, len - first, &default_limits, req, &consumed, &err),
        PARTY__HTTP_DONE);
    assert_slice(req->path, "/two");
    assert_slice(req->body, "xy");
    assert_string_equal(text + first + consumed, "GET /three");

    party__http_parser_init(&p);
    assert_int_equal(party__http_parse(&p, text + first + consumed, len - first - consumed,
                                       &default_limits, req, &consumed, &err),
                     PARTY__HTTP_AGAIN);
    free(req);
}

static void test_request_struct_may_differ_between_calls(void **state) {
    char text[] = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\n\r\n";
    size_t len = sizeof(text) - 1, head = strstr(text, "\r\n\r\n") + 4 - text, consumed;
    party__http_parser p;
    party__http_request *first = calloc(1, sizeof(*first));
    party__http_request *second = calloc(1, sizeof(*second));
    party__http_error err;

    (void)state;
    assert_non_null(first);
    assert_non_null(second);
    /* The second call gets a fresh struct: the framing must come from the
     * parser, not from what the first call wrote into *req. */
    party__http_parser_init(&p);
    assert_int_equal(party__http_parse(&p, text, head, &default_limits, first, &consumed, &err),
                     PARTY__HTTP_AGAIN);
    assert_int_equal(party__http_parse(&p, text, len, &default_limits, second, &consumed, &err),
                     PARTY__HTTP_DONE);
    assert_int_equal(consumed, len);
    assert_int_equal(second->chunked, 1);
    assert_slice(second->path, "/c");
    assert_slice(second->body, "abc");
    free(first);
    free(second);
}

static void test_large_head_fed_one_byte_at_a_time_is_scanned_once(void **state) {
    /* A slowloris head of 8 MiB, one byte per call. Rescanning from the start
     * on each call would read ~3e13 bytes and hit the test's timeout; one
     * pass takes well under a second. */
    enum { LINES = 100, VALUE = 80000 };
    party__http_limits limits = {16u << 20, 128, 0};
    size_t cap = LINES * (VALUE + 16) + 64, len = 0, i, consumed;
    char *text = malloc(cap);
    party__http_parser p;
    party__http_request *req = calloc(1, sizeof(*req));
    party__http_error err;
    int rc = PARTY__HTTP_AGAIN;

    (void)state;
    assert_non_null(text);
    assert_non_null(req);
    len += (size_t)snprintf(text, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 0; i < LINES; i++) {
        len += (size_t)snprintf(text + len, cap - len, "X-%03zu: ", i);
        memset(text + len, 'a' + (int)(i % 26), VALUE);
        len += VALUE;
        memcpy(text + len, "\r\n", 2);
        len += 2;
    }
    memcpy(text + len, "\r\n", 2);
    len += 2;

    party__http_parser_init(&p);
    for (i = 1; i <= len; i++) {
        rc = party__http_parse(&p, text, i, &limits, req, &consumed, &err);
        if (rc != PARTY__HTTP_AGAIN)
            break;
        /* Everything given has been examined and will not be looked at again. */
        assert_int_equal(p.scanned, i);
    }
    assert_int_equal(rc, PARTY__HTTP_DONE);
    assert_int_equal(i, len);
    assert_int_equal(consumed, len);
    assert_int_equal(req->n_headers, LINES + 1);
    assert_int_equal(req->headers[LINES].value.len, VALUE);
    free(req);
    free(text);
}

static void assert_every_split_matches_whole(const char *text, const party__http_limits *limits) {
    size_t len = strlen(text), k;
    result *whole = result_new();
    char *whole_buf;

    parse_text(text, limits, whole, &whole_buf);
    for (k = 0; k <= len; k++) {
        result *split = result_new();
        char *buf;
        size_t calls;
        feed(text, len, k, len, 1, limits, split, &buf, &calls);
        assert_same_result(whole, split);
        free(buf);
        free(split);
    }
    free(whole_buf);
    free(whole);
}

static void test_request_split_at_every_offset_parses_like_whole(void **state) {
    party__http_limits small = {80, 3, 8};

    (void)state;
    assert_every_split_matches_whole(chunked_text, &default_limits);
    assert_every_split_matches_whole("GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n"
                                     "GET /next HTTP/1.1\r\n",
                                     &default_limits);
    assert_every_split_matches_whole("POST / HTTP/1.0\r\nContent-Length: 4\r\n\r\nbodyMORE",
                                     &default_limits);
    /* Errors and limits are found at the same place whatever the split. */
    assert_every_split_matches_whole("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", &default_limits);
    assert_every_split_matches_whole("GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n", &small);
    assert_every_split_matches_whole("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                                     &small);
    assert_every_split_matches_whole(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n5\r\n",
        &small);
    assert_every_split_matches_whole(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdX", &small);
}

/* ---- status text ---- */

static void test_status_text_covers_the_codes_the_server_sends(void **state) {
    static const int codes[] = {100, 101, 200, 201, 204, 301, 302, 303, 304, 307, 308,
                                400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415,
                                426, 429, 431, 500, 501, 502, 503, 504, 505};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_string_not_equal(party__http_status_text(codes[i]), "Unknown");
    assert_string_equal(party__http_status_text(200), "OK");
    assert_string_equal(party__http_status_text(404), "Not Found");
    assert_string_equal(party__http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(party__http_status_text(299), "Unknown");
    assert_string_equal(party__http_status_text(-1), "Unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get_is_parsed),
        cmocka_unit_test(test_target_is_split_into_path_and_query_at_first_question_mark),
        cmocka_unit_test(test_header_values_are_trimmed_of_spaces_and_tabs),
        cmocka_unit_test(test_header_lookup_ignores_case_and_returns_first),
        cmocka_unit_test(test_obs_text_is_allowed_in_header_values),
        cmocka_unit_test(test_http10_without_host_is_accepted),
        cmocka_unit_test(test_http11_keeps_alive_unless_connection_close),
        cmocka_unit_test(test_http10_keeps_alive_only_with_keep_alive_token),
        cmocka_unit_test(test_upgrade_token_is_found_in_connection_lists),
        cmocka_unit_test(test_websocket_handshake_request_is_parsed),
        cmocka_unit_test(test_malformed_method_is_400),
        cmocka_unit_test(test_target_not_in_origin_form_is_400),
        cmocka_unit_test(test_target_with_space_or_control_is_400),
        cmocka_unit_test(test_target_with_nul_byte_is_400),
        cmocka_unit_test(test_garbage_version_is_400),
        cmocka_unit_test(test_other_http_versions_are_505),
        cmocka_unit_test(test_bare_lf_is_400),
        cmocka_unit_test(test_bare_lf_is_rejected_before_the_head_is_complete),
        cmocka_unit_test(test_bare_cr_is_400),
        cmocka_unit_test(test_empty_request_line_is_400),
        cmocka_unit_test(test_whitespace_before_header_colon_is_400),
        cmocka_unit_test(test_malformed_header_name_is_400),
        cmocka_unit_test(test_obs_fold_is_400),
        cmocka_unit_test(test_control_characters_in_header_value_are_400),
        cmocka_unit_test(test_tab_inside_header_value_is_kept),
        cmocka_unit_test(test_http11_without_host_is_400),
        cmocka_unit_test(test_multiple_host_fields_are_400),
        cmocka_unit_test(test_malformed_content_length_is_400),
        cmocka_unit_test(test_conflicting_content_lengths_are_400),
        cmocka_unit_test(test_repeated_equal_content_lengths_are_accepted),
        cmocka_unit_test(test_content_length_overflow_is_413),
        cmocka_unit_test(test_content_length_with_transfer_encoding_is_400),
        cmocka_unit_test(test_transfer_codings_other_than_chunked_are_501),
        cmocka_unit_test(test_malformed_transfer_encoding_is_400),
        cmocka_unit_test(test_malformed_chunked_framing_is_400),
        cmocka_unit_test(test_head_over_max_header_bytes_is_431_naming_the_limit),
        cmocka_unit_test(test_request_line_over_max_header_bytes_is_431),
        cmocka_unit_test(test_head_overflow_is_reported_without_waiting_for_more_bytes),
        cmocka_unit_test(test_more_headers_than_max_headers_is_431_naming_the_limit),
        cmocka_unit_test(test_max_headers_is_capped_at_the_request_array_size),
        cmocka_unit_test(test_content_length_over_max_body_is_413_before_the_body_arrives),
        cmocka_unit_test(test_chunked_body_over_max_body_is_413_as_soon_as_a_size_says_so),
        cmocka_unit_test(test_huge_chunk_size_is_413_not_an_overflow),
        cmocka_unit_test(test_chunk_size_line_over_max_header_bytes_is_413),
        cmocka_unit_test(test_trailers_count_against_the_head_limits),
        cmocka_unit_test(test_content_length_body_is_returned),
        cmocka_unit_test(test_content_length_zero_has_no_body),
        cmocka_unit_test(test_get_with_content_length_body_is_allowed),
        cmocka_unit_test(test_incomplete_content_length_body_waits),
        cmocka_unit_test(test_content_length_body_arriving_one_byte_at_a_time),
        cmocka_unit_test(test_chunked_body_with_extensions_and_trailers_is_decoded_in_place),
        cmocka_unit_test(test_chunked_body_arriving_one_byte_at_a_time_decodes_in_place),
        cmocka_unit_test(test_chunked_body_split_across_reads_into_a_moving_buffer_decodes),
        cmocka_unit_test(test_empty_chunked_body_has_no_body),
        cmocka_unit_test(test_incomplete_chunked_body_waits),
        cmocka_unit_test(test_pipelined_requests_are_parsed_one_after_the_other),
        cmocka_unit_test(test_request_struct_may_differ_between_calls),
        cmocka_unit_test(test_large_head_fed_one_byte_at_a_time_is_scanned_once),
        cmocka_unit_test(test_request_split_at_every_offset_parses_like_whole),
        cmocka_unit_test(test_status_text_covers_the_codes_the_server_sends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
