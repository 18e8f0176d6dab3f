/* Unit tests for src/http.c: request line and header parsing, keep-alive and
 * upgrade rules, every rejection with its status, the limits, Content-Length
 * and chunked bodies fed in pieces (also into a buffer that moves between
 * calls), pipelining, and that splitting the input never changes the result;
 * then the same for responses: status lines, bodies read to the end of the
 * stream, 1xx answers, responses without a body. */
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

static void test_target_in_no_accepted_form_is_400(void **state) {
    (void)state;
    assert_rejected("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET http:/h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET http://h:x/a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    assert_rejected("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 501);
    assert_rejected("GET  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_absolute_and_asterisk_forms_are_parsed(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET hTTp://Ex.test:80/a/b?x=1 HTTP/1.1\r\nHost: o\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.authority, "Ex.test:80");
    assert_slice(r->req.target, "/a/b?x=1");
    assert_slice(r->req.path, "/a/b");
    assert_slice(r->req.query, "x=1");
    free(buf);

    assert_int_equal(
        parse_text("GET https://[::1]?q HTTP/1.1\r\nHost: o\r\n\r\n", &default_limits, r, &buf),
        PARTY__HTTP_DONE);
    assert_slice(r->req.authority, "[::1]");
    assert_int_equal(r->req.path.len, 0);
    assert_slice(r->req.query, "q");
    free(buf);

    assert_int_equal(parse_text("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->req.target, "*");
    assert_null(r->req.authority.ptr);
    free(buf);
    free(r);
}

static void test_host_values_are_checked(void **state) {
    static const char *const good[] = {"",      "h",          "a.b-c_d~", "h:1",
                                       "h:",    "1.2.3.4:80", "[::1]",    "[::ffff:1.2.3.4]:8",
                                       "a%41b", "!$&'()*+,;="};
    static const char *const bad[] = {"a b", "a/b",   "a@b", "h:123456", "h:8x",  "[::1",
                                      "[]",  "[g::]", "a%4", "a%zz",     "h:1:2", "\"h\""};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!party__http_host_valid(party__slice_make(good[i], strlen(good[i]))))
            fail_msg("Host %s should be valid", good[i]);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (party__http_host_valid(party__slice_make(bad[i], strlen(bad[i]))))
            fail_msg("Host %s should be invalid", bad[i]);
    assert_rejected("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", 400);
}

static void test_expect_continue_is_flagged_and_others_are_417(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                                "Content-Length: 0\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.expect_continue, 1);
    free(buf);
    assert_int_equal(parse_text("POST / HTTP/1.0\r\nExpect: 100-continue\r\n"
                                "Content-Length: 0\r\n\r\n",
                                &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.expect_continue, 0);
    free(buf);
    free(r);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nExpect: x\r\n\r\n", 417);
    assert_rejected("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", 417);
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

/* RFC 9110 6.2: a later minor version is read as the highest we know. */
static void test_later_http_1_minor_versions_are_1_1(void **state) {
    result *r = result_new();
    char *buf;

    (void)state;
    assert_int_equal(parse_text("GET / HTTP/1.9\r\nHost: h\r\n\r\n", &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->req.version_minor, 1);
    free(buf);
    free(r);
}

static void test_other_http_versions_are_505(void **state) {
    (void)state;
    assert_rejected("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    assert_rejected("GET / HTTP/3.1\r\nHost: h\r\n\r\n", 505);
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
    /* RFC 9112 6.3: chunked not final is a 400, whatever else is named */
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400);
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

/* RFC 9112 3: a request-target too long to parse is a 414. */
static void test_request_line_over_max_header_bytes_is_414(void **state) {
    party__http_limits limits = {32, 100, 1024};

    (void)state;
    assert_rejected_with("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n", &limits,
                         414);
    assert_rejected_with("GET /a HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", &limits,
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

/* ---- responses ---- */

/* Everything one response parse produced, as for requests. */
typedef struct response_result {
    int rc;
    size_t consumed;
    int status;
    const char *reason;
    party__http_response res;
    const char *base;
} response_result;

static response_result *response_result_new(void) {
    response_result *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    return r;
}

/* Feeds src[0..len) in pieces of step bytes (len or more: all at once),
 * each call into a fresh heap buffer holding the previous buffer's bytes
 * (which the parser may have rewritten) plus the new ones, as realloc
 * would. With end_stream, the stream then ends: one more call with eof set
 * if the parser still wants bytes. Stops at the first result other than
 * AGAIN. The caller frees *out. */
static int response_feed(const char *src, size_t len, size_t step, int end_stream, int flags,
                         const party__http_limits *limits, response_result *r, char **out) {
    party__http_parser p;
    party__http_error err = {0, NULL};
    char *buf = malloc(len ? len : 1);
    size_t have = 0;

    assert_non_null(buf);
    party__http_response_parser_init(&p, flags);
    for (;;) {
        size_t n = step >= len - have ? len : have + step;
        char *fresh = malloc(len ? len : 1);
        assert_non_null(fresh);
        memcpy(fresh, buf, have);
        free(buf);
        buf = fresh;
        memcpy(buf + have, src + have, n - have);
        have = n;
        r->rc = party__http_response_parse(&p, buf, have, 0, limits, &r->res, &r->consumed, &err);
        if (r->rc != PARTY__HTTP_AGAIN)
            break;
        if (have == len) {
            if (end_stream)
                r->rc = party__http_response_parse(&p, buf, have, 1, limits, &r->res, &r->consumed,
                                                   &err);
            break;
        }
    }
    r->base = buf;
    r->status = err.status;
    r->reason = err.reason;
    *out = buf;
    return r->rc;
}

/* One call with every byte, then the end of the stream if it is needed. */
static int response_text(const char *text, int flags, const party__http_limits *limits,
                         response_result *r, char **out) {
    size_t len = strlen(text);
    return response_feed(text, len, len, 1, flags, limits, r, out);
}

static void assert_response_rejected_with(const char *text, int flags,
                                          const party__http_limits *limits, int status,
                                          const char *reason_part) {
    response_result *r = response_result_new();
    char *buf;

    if (response_text(text, flags, limits, r, &buf) != PARTY__HTTP_ERROR || r->status != status ||
        (reason_part != NULL && strstr(r->reason, reason_part) == NULL)) {
        print_error("input: \"%s\"\nrc %d status %d (%s), expected status %d (%s)\n", text, r->rc,
                    r->status, r->reason ? r->reason : "-", status,
                    reason_part != NULL ? reason_part : "-");
        fail();
    }
    assert_non_null(r->reason);
    free(buf);
    free(r);
}

static void assert_response_rejected(const char *text, int status, const char *reason_part) {
    assert_response_rejected_with(text, PARTY__HTTP_BODY_TO_EOF, &default_limits, status,
                                  reason_part);
}

static void assert_same_response(const response_result *a, const response_result *b) {
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
    assert_int_equal(a->res.version_minor, b->res.version_minor);
    assert_int_equal(a->res.status, b->res.status);
    assert_slice_offset_equal(a->res.reason, a->base, b->res.reason, b->base);
    assert_slice_offset_equal(a->res.status_line, a->base, b->res.status_line, b->base);
    assert_int_equal(a->res.head_len, b->res.head_len);
    assert_int_equal(a->res.n_headers, b->res.n_headers);
    for (i = 0; i < a->res.n_headers; i++) {
        assert_slice_offset_equal(a->res.headers[i].name, a->base, b->res.headers[i].name, b->base);
        assert_slice_offset_equal(a->res.headers[i].value, a->base, b->res.headers[i].value,
                                  b->base);
    }
    assert_slice_offset_equal(a->res.body, a->base, b->res.body, b->base);
    if (a->res.body.len > 0)
        assert_memory_equal(a->res.body.ptr, b->res.body.ptr, a->res.body.len);
    assert_int_equal(a->res.keep_alive, b->res.keep_alive);
    assert_int_equal(a->res.upgrade, b->res.upgrade);
    assert_int_equal(a->res.chunked, b->res.chunked);
}

/* Every piece size, from one byte to all at once, gives the whole's result. */
static void assert_every_feed_matches_whole(const char *text, int flags,
                                            const party__http_limits *limits) {
    size_t len = strlen(text), step;
    response_result *whole = response_result_new();
    char *whole_buf;

    response_feed(text, len, len, 1, flags, limits, whole, &whole_buf);
    for (step = 1; step <= len; step++) {
        response_result *pieces = response_result_new();
        char *buf;
        response_feed(text, len, step, 1, flags, limits, pieces, &buf);
        assert_same_response(whole, pieces);
        free(buf);
        free(pieces);
    }
    free(whole_buf);
    free(whole);
}

static void test_response_status_line_headers_and_body_are_parsed(void **state) {
    response_result *r = response_result_new();
    char *buf;
    const char *text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                       "helloNEXT";

    (void)state;
    assert_int_equal(response_text(text, 0, &default_limits, r, &buf), PARTY__HTTP_DONE);
    assert_int_equal(r->res.version_minor, 1);
    assert_int_equal(r->res.status, 200);
    assert_slice(r->res.reason, "OK");
    assert_slice(r->res.status_line, "HTTP/1.1 200 OK");
    assert_int_equal(r->res.head_len, strstr(text, "\r\n\r\n") + 4 - text);
    assert_int_equal(r->res.n_headers, 2);
    assert_slice(r->res.headers[0].name, "Content-Type");
    assert_slice(r->res.headers[0].value, "text/plain");
    assert_slice(party__http_response_header_get(&r->res, "content-length"), "5");
    assert_null(party__http_response_header_get(&r->res, "Content-Encoding").ptr);
    assert_slice(r->res.body, "hello");
    /* The bytes after the body are not its own. */
    assert_int_equal(r->consumed, strlen(text) - 4);
    assert_int_equal(r->res.keep_alive, 1);
    assert_int_equal(r->res.upgrade, 0);
    assert_int_equal(r->res.chunked, 0);
    /* Zero-copy: slices point into the buffer. */
    assert_ptr_equal(r->res.status_line.ptr, buf);
    assert_ptr_equal(r->res.body.ptr, buf + r->res.head_len);
    free(buf);
    free(r);
}

static void test_response_status_line_forms_are_accepted(void **state) {
    static const struct {
        const char *line;
        int minor, status;
        const char *reason;
    } forms[] = {
        {"HTTP/1.1 200 OK", 1, 200, "OK"},
        {"HTTP/1.0 404 Not Found", 0, 404, "Not Found"},
        {"HTTP/1.1 299 Whatever It Means", 1, 299, "Whatever It Means"},
        {"HTTP/1.1 204 ", 1, 204, ""},
        {"HTTP/1.1 204", 1, 204, ""}, /* the space before an empty reason left out */
        {"HTTP/1.1 999 x", 1, 999, "x"},
        {"HTTP/1.1 100 Continue", 1, 100, "Continue"},
        {"HTTP/1.1 200 \tT\xc3\xa4"
         "b\t",
         1, 200,
         "\tT\xc3\xa4"
         "b\t"}, /* HTAB and obs-text */
    };
    size_t i;
    char text[128];

    (void)state;
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        response_result *r = response_result_new();
        char *buf;
        snprintf(text, sizeof(text), "%s\r\nContent-Length: 0\r\n\r\n", forms[i].line);
        assert_int_equal(response_text(text, 0, &default_limits, r, &buf), PARTY__HTTP_DONE);
        assert_int_equal(r->res.version_minor, forms[i].minor);
        assert_int_equal(r->res.status, forms[i].status);
        assert_slice(r->res.reason, forms[i].reason);
        assert_slice(r->res.status_line, forms[i].line);
        free(buf);
        free(r);
    }
}

static void test_malformed_status_lines_are_refused(void **state) {
    static const char *const malformed[] = {
        "HTTP/1.1 20 OK",   "HTTP/1.1 2000 OK", "HTTP/1.1 099 Low",    "HTTP/1.1 abc OK",
        "HTTP/1.1  200 OK", "http/1.1 200 OK",  "HTTP/1.1 200 O\x01K", "HTTP/1.1 200 O\rK",
        "HTTP/1.1",         "HTTP/1.1 ",        "ICY 200 OK",          "HTTP/11 200 OK",
        "HTTP/1.1\t200 OK", "HTTP/1.1 200\tOK",
    };
    static const char *const unsupported[] = {"HTTP/2.0 200 OK", "HTTP/1.2 200 OK",
                                              "HTTP/0.9 200 OK"};
    size_t i;
    char text[128];

    (void)state;
    for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        snprintf(text, sizeof(text), "%s\r\nContent-Length: 0\r\n\r\n", malformed[i]);
        assert_response_rejected(text, 400, NULL);
    }
    for (i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        snprintf(text, sizeof(text), "%s\r\nContent-Length: 0\r\n\r\n", unsupported[i]);
        assert_response_rejected(text, 505, "version");
    }
    assert_response_rejected("\r\nHTTP/1.1 200 OK\r\n\r\n", 400, "empty status line");
    /* A TLS alert where HTTP was expected: no line, then the stream ends. */
    assert_response_rejected("\x15\x03\x03\x00\x02\x02\x46", 400, "response head");
}

static void test_response_header_folding_and_bare_lf_are_refused(void **state) {
    (void)state;
    assert_response_rejected("HTTP/1.1 200 OK\r\nX-A: 1\r\n  more\r\nContent-Length: 0\r\n\r\n",
                             400, "obsolete line folding in response head");
    assert_response_rejected("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "0\r\nX-T: 1\r\n more\r\n\r\n",
                             400, "obsolete line folding in trailer");
    assert_response_rejected("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 400,
                             "bare LF in response head");
    assert_response_rejected("HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n", 400,
                             "header field name");
    assert_response_rejected("HTTP/1.1 200 OK\r\nX-A: a\x7f\r\nContent-Length: 0\r\n\r\n", 400,
                             "header field value");
}

static void test_duplicate_content_lengths_in_a_response_are_refused_unless_equal(void **state) {
    response_result *r = response_result_new();
    char *buf;

    (void)state;
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
                             "abcd",
                             400, "conflicting Content-Length");
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", 400,
                             "invalid Content-Length");
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", 400,
                             "invalid Content-Length");
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nabc", 400,
                             "invalid Content-Length");
    /* The same value twice says one thing, as for a request. */
    assert_int_equal(response_text("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: "
                                   "3\r\n\r\nabc",
                                   0, &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_slice(r->res.body, "abc");
    free(buf);
    free(r);
}

static void test_response_framing_two_ways_or_unknown_codings_is_refused(void **state) {
    (void)state;
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: "
                             "chunked\r\n\r\n0\r\n\r\n",
                             400, "both Content-Length and Transfer-Encoding");
    assert_response_rejected("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
                             "unsupported transfer coding");
    assert_response_rejected("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
                             "invalid Transfer-Encoding");
    assert_response_rejected("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                             "HTTP/1.0 response");
}

static const char chunked_response[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                       "Content-Type: text/plain\r\n\r\n"
                                       "5;name=value\r\nhello\r\n"
                                       "1 ; x=\"y\"\r\n,\r\n"
                                       "6\r\n world\r\n"
                                       "0\r\nChecksum: abc\r\nX-Other: 1\r\n\r\n"
                                       "NEXT";

static void test_chunked_response_with_extensions_and_trailers_is_decoded(void **state) {
    response_result *r = response_result_new();
    char *buf;

    (void)state;
    assert_int_equal(response_text(chunked_response, 0, &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->res.chunked, 1);
    assert_slice(r->res.body, "hello, world");
    /* Decoded in place, where the body starts; the trailers are skipped. */
    assert_ptr_equal(r->res.body.ptr, buf + r->res.head_len);
    assert_int_equal(r->res.n_headers, 2);
    assert_null(party__http_response_header_get(&r->res, "checksum").ptr);
    assert_int_equal(r->consumed, sizeof(chunked_response) - 1 - 4);
    free(buf);
    free(r);
}

static void test_response_limits_are_clear_errors(void **state) {
    party__http_limits small = {64, 3, 8}, roomy_head = {200, 3, 8};

    (void)state;
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nX-Pad: 012345678901234567890123456789012345"
                                  "6789\r\n\r\n",
                                  0, &small, 431, "response head exceeds max_header_bytes");
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 0,
                                  &small, 431, "response has more header fields than max_headers");
    /* Refused from the head, before any of the body arrives. */
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 0, &small, 413,
                                  "response body exceeds max_body");
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n", 0,
                                  &small, 413, "response body exceeds max_body");
    assert_response_rejected_with("HTTP/1.1 200 OK\r\n\r\n123456789", PARTY__HTTP_BODY_TO_EOF,
                                  &small, 413, "response body exceeds max_body");
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                                  "X-Trailer: 01234567890123456789\r\n\r\n",
                                  0, &small, 431, "response head and trailers");
    assert_response_rejected_with("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                                  "A: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                                  0, &roomy_head, 431, "max_headers");
}

static void test_response_over_max_body_to_eof_is_refused_before_the_stream_ends(void **state) {
    party__http_limits small = {64, 3, 8};
    response_result *r = response_result_new();
    const char *text = "HTTP/1.1 200 OK\r\n\r\n123456789";
    char *buf;

    (void)state;
    assert_int_equal(response_feed(text, strlen(text), strlen(text), 0, PARTY__HTTP_BODY_TO_EOF,
                                   &small, r, &buf),
                     PARTY__HTTP_ERROR);
    assert_int_equal(r->status, 413);
    free(buf);
    free(r);
}

static void test_response_body_split_across_many_feeds_parses_like_whole(void **state) {
    party__http_limits small = {80, 3, 8};

    (void)state;
    assert_every_feed_matches_whole(chunked_response, 0, &default_limits);
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello worldX", 0,
                                    &default_limits);
    assert_every_feed_matches_whole("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nthe rest of the stream",
                                    PARTY__HTTP_BODY_TO_EOF, &default_limits);
    assert_every_feed_matches_whole("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n\r\n\x81\x02hi",
                                    0, &default_limits);
    /* Errors and limits are found at the same place whatever the pieces. */
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\nA: 1\nB: 2\r\n\r\n", 0, &default_limits);
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 0,
                                    &small);
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n"
                                    "abcd\r\n5\r\n",
                                    0, &small);
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\n\r\n0123456789", PARTY__HTTP_BODY_TO_EOF,
                                    &small);
    assert_every_feed_matches_whole("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nabc", 0, &small);
}

static void test_response_body_runs_to_eof_when_the_caller_allows_it(void **state) {
    response_result *r = response_result_new();
    const char *text = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
    char *buf;

    (void)state;
    /* More may come until the stream ends. */
    assert_int_equal(
        response_feed(text, strlen(text), 5, 0, PARTY__HTTP_BODY_TO_EOF, &default_limits, r, &buf),
        PARTY__HTTP_AGAIN);
    free(buf);
    assert_int_equal(
        response_feed(text, strlen(text), 5, 1, PARTY__HTTP_BODY_TO_EOF, &default_limits, r, &buf),
        PARTY__HTTP_DONE);
    assert_slice(r->res.body, "all of it");
    assert_int_equal(r->consumed, strlen(text));
    assert_int_equal(r->res.keep_alive, 0);
    free(buf);
    /* Nothing before the end: an empty body. */
    assert_int_equal(
        response_text("HTTP/1.1 200 OK\r\n\r\n", PARTY__HTTP_BODY_TO_EOF, &default_limits, r, &buf),
        PARTY__HTTP_DONE);
    assert_null(r->res.body.ptr);
    assert_int_equal(r->res.body.len, 0);
    free(buf);
    free(r);
    /* A caller that cannot read to the end is told why. */
    assert_response_rejected_with(text, 0, &default_limits, 400, "no length");
}

static void test_response_cut_short_by_the_end_of_the_stream_is_an_error(void **state) {
    (void)state;
    assert_response_rejected("", 400, "inside the response head");
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Le", 400, "inside the response head");
    assert_response_rejected("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 400,
                             "inside the response body");
    assert_response_rejected("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 400,
                             "inside the chunked response body");
    assert_response_rejected("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", 400,
                             "inside the chunked response body");
}

static void test_1xx_response_ends_at_its_head_and_leaves_what_follows(void **state) {
    response_result *r = response_result_new();
    const char *upgrade = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n\x81\x02hi";
    const char *interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          "\r\nok";
    char *buf;
    size_t head;

    (void)state;
    /* Even a caller that reads bodies to the end gets the 101 at its head:
     * what follows is the new protocol. */
    assert_int_equal(response_text(upgrade, PARTY__HTTP_BODY_TO_EOF, &default_limits, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->res.status, 101);
    assert_int_equal(r->res.upgrade, 1);
    assert_slice(party__http_response_header_get(&r->res, "sec-websocket-accept"), "abc=");
    assert_null(r->res.body.ptr);
    assert_int_equal(r->consumed, strlen(upgrade) - 4);
    assert_int_equal(r->consumed, r->res.head_len);
    free(buf);

    /* An interim answer, then the final one from where it ended. */
    assert_int_equal(response_text(interim, 0, &default_limits, r, &buf), PARTY__HTTP_DONE);
    assert_int_equal(r->res.status, 100);
    head = r->consumed;
    free(buf);
    assert_int_equal(response_text(interim + head, 0, &default_limits, r, &buf), PARTY__HTTP_DONE);
    assert_int_equal(r->res.status, 200);
    assert_slice(r->res.body, "ok");
    free(buf);
    free(r);
}

static void test_responses_to_head_and_204_304_have_no_body(void **state) {
    party__http_limits small = {200, 10, 8};
    response_result *r = response_result_new();
    const char *to_head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
    char *buf;

    (void)state;
    /* The length a GET would get, even over max_body: no body follows. */
    assert_int_equal(response_text(to_head, PARTY__HTTP_NO_BODY, &small, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->consumed, strlen(to_head));
    assert_null(r->res.body.ptr);
    free(buf);
    assert_int_equal(response_text("HTTP/1.1 204 No Content\r\n\r\n", 0, &small, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->res.status, 204);
    assert_int_equal(r->res.body.len, 0);
    free(buf);
    assert_int_equal(response_text("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nX",
                                   PARTY__HTTP_BODY_TO_EOF, &small, r, &buf),
                     PARTY__HTTP_DONE);
    assert_int_equal(r->consumed, r->res.head_len);
    assert_int_equal(r->res.body.len, 0);
    free(buf);
    free(r);
}

static void test_response_keep_alive_follows_version_and_connection(void **state) {
    static const struct {
        const char *text;
        int keep_alive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0},
        {"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        response_result *r = response_result_new();
        char *buf;
        assert_int_equal(response_text(cases[i].text, 0, &default_limits, r, &buf),
                         PARTY__HTTP_DONE);
        assert_int_equal(r->res.keep_alive, cases[i].keep_alive);
        free(buf);
        free(r);
    }
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
        cmocka_unit_test(test_target_in_no_accepted_form_is_400),
        cmocka_unit_test(test_absolute_and_asterisk_forms_are_parsed),
        cmocka_unit_test(test_host_values_are_checked),
        cmocka_unit_test(test_expect_continue_is_flagged_and_others_are_417),
        cmocka_unit_test(test_later_http_1_minor_versions_are_1_1),
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
        cmocka_unit_test(test_request_line_over_max_header_bytes_is_414),
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
        cmocka_unit_test(test_response_status_line_headers_and_body_are_parsed),
        cmocka_unit_test(test_response_status_line_forms_are_accepted),
        cmocka_unit_test(test_malformed_status_lines_are_refused),
        cmocka_unit_test(test_response_header_folding_and_bare_lf_are_refused),
        cmocka_unit_test(test_duplicate_content_lengths_in_a_response_are_refused_unless_equal),
        cmocka_unit_test(test_response_framing_two_ways_or_unknown_codings_is_refused),
        cmocka_unit_test(test_chunked_response_with_extensions_and_trailers_is_decoded),
        cmocka_unit_test(test_response_limits_are_clear_errors),
        cmocka_unit_test(test_response_over_max_body_to_eof_is_refused_before_the_stream_ends),
        cmocka_unit_test(test_response_body_split_across_many_feeds_parses_like_whole),
        cmocka_unit_test(test_response_body_runs_to_eof_when_the_caller_allows_it),
        cmocka_unit_test(test_response_cut_short_by_the_end_of_the_stream_is_an_error),
        cmocka_unit_test(test_1xx_response_ends_at_its_head_and_leaves_what_follows),
        cmocka_unit_test(test_responses_to_head_and_204_304_have_no_body),
        cmocka_unit_test(test_response_keep_alive_follows_version_and_connection),
        cmocka_unit_test(test_status_text_covers_the_codes_the_server_sends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
