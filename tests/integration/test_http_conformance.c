/* HTTP/1.1 conformance of partyd as an origin server (RFC 9112, and the
 * parts of RFC 9110 that bind one), request by request over real sockets.
 * Each row of the table is one requirement of docs/security.md's
 * conformance table: the raw request, the status partyd must answer, and
 * what else the answer must show. Exchanges that need several steps (100
 * Continue, upgrades) are tests of their own below the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {
        "--max-header-bytes", "2048", "--max-body-bytes", "4096", "--admin-token", "tok", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

enum {
    CLOSES = 1,  /* the server closes the connection after the answer */
    HEAD_REQ = 2 /* the answer has no body (HEAD) */
};

typedef struct row {
    const char *name;    /* the test name in docs/security.md */
    const char *request; /* sent as it is, in one write */
    int status;
    int flags;
    const char *body_has;     /* NULL: any body */
    const char *header;       /* NULL: no header check */
    const char *header_value; /* NULL: the header must be absent; "": present, any value */
} row;

#define H "Host: h\r\n"

/* Rows leave out the header check they do not make. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static const row rows[] = {
    /* ---- message syntax (RFC 9112 2, 5) ---- */
    {"bare_lf_in_head_is_400", "GET /parties/probe/c HTTP/1.1\n" H "\r\n", 400, CLOSES, NULL},
    {"empty_lines_before_request_line_are_skipped",
     "\r\n\r\nGET /parties/probe/crlf HTTP/1.1\r\n" H "\r\n", 200, 0, "\"name\":\"crlf\""},
    {"space_before_colon_is_400", "GET /parties/probe/c HTTP/1.1\r\nHost : h\r\n\r\n", 400, CLOSES,
     NULL},
    {"obs_fold_is_400", "GET /parties/probe/c HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400, CLOSES,
     NULL},
    {"whitespace_line_after_request_line_is_400",
     "GET /parties/probe/c HTTP/1.1\r\n Host: h\r\n" H "\r\n", 400, CLOSES, NULL},
    {"bare_cr_in_field_value_is_400", "GET /parties/probe/c HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n",
     400, CLOSES, NULL},
    {"invalid_field_name_is_400", "GET /parties/probe/c HTTP/1.1\r\n" H "X(A): a\r\n\r\n", 400,
     CLOSES, NULL},
    {"request_line_with_two_spaces_is_400", "GET  /parties/probe/c HTTP/1.1\r\n" H "\r\n", 400,
     CLOSES, NULL},
    {"lowercase_http_version_is_400", "GET /parties/probe/c http/1.1\r\n" H "\r\n", 400, CLOSES,
     NULL},
    {"http_2_request_line_is_505", "GET /parties/probe/c HTTP/2.0\r\n" H "\r\n", 505, CLOSES, NULL},
    {"later_http_1_minor_version_is_served_as_1_1", "GET /parties/probe/v12 HTTP/1.2\r\n" H "\r\n",
     200, 0, "\"name\":\"v12\"", "Connection", "keep-alive"},
    {"method_is_case_sensitive", "head /parties/probe/lower HTTP/1.1\r\n" H "\r\n", 200, 0,
     "\"name\":\"lower\""},
    {"method_unknown_to_partyd_reaches_the_party",
     "PROPFIND /parties/probe/pf HTTP/1.1\r\n" H "\r\n", 200, 0, "\"name\":\"pf\""},
    /* ---- request target (RFC 9112 3.2) ---- */
    {"absolute_form_is_accepted_and_its_authority_wins_over_host",
     "GET http://example.test/parties/probe/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", 200, 0,
     "\"url\":\"/parties/probe/abs?x=1\""},
    {"absolute_form_scheme_is_case_insensitive",
     "GET HTTPS://example.test:8443/parties/probe/abs2 HTTP/1.1\r\n" H "\r\n", 200, 0,
     "\"name\":\"abs2\""},
    {"absolute_form_without_path_is_the_root", "GET http://example.test HTTP/1.1\r\n" H "\r\n", 404,
     0, NULL},
    {"absolute_form_with_userinfo_is_400",
     "GET http://user@example.test/parties/probe/c HTTP/1.1\r\n" H "\r\n", 400, CLOSES, NULL},
    {"absolute_form_with_empty_host_is_400", "GET http:///parties/probe/c HTTP/1.1\r\n" H "\r\n",
     400, CLOSES, NULL},
    {"absolute_form_of_another_scheme_is_400",
     "GET ftp://example.test/parties/probe/c HTTP/1.1\r\n" H "\r\n", 400, CLOSES, NULL},
    {"asterisk_form_options_is_answered", "OPTIONS * HTTP/1.1\r\n" H "\r\n", 204, 0, NULL, "Allow",
     ""},
    {"asterisk_form_with_another_method_is_400", "GET * HTTP/1.1\r\n" H "\r\n", 400, CLOSES, NULL},
    {"connect_authority_form_is_501",
     "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", 501, CLOSES, NULL},
    {"fragment_in_target_is_400", "GET /parties/probe/c#frag HTTP/1.1\r\n" H "\r\n", 400, CLOSES,
     NULL},
    /* ---- Host (RFC 9112 3.2, RFC 9110 7.2) ---- */
    {"http11_without_host_is_400", "GET /parties/probe/c HTTP/1.1\r\n\r\n", 400, CLOSES, NULL},
    {"two_host_fields_are_400", "GET /parties/probe/c HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
     CLOSES, NULL},
    {"host_with_a_space_is_400", "GET /parties/probe/c HTTP/1.1\r\nHost: a b\r\n\r\n", 400, CLOSES,
     NULL},
    {"host_with_a_slash_is_400", "GET /parties/probe/c HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, CLOSES,
     NULL},
    {"host_with_a_bad_port_is_400", "GET /parties/probe/c HTTP/1.1\r\nHost: a:12345678\r\n\r\n",
     400, CLOSES, NULL},
    {"host_ipv6_literal_with_port_is_accepted",
     "GET /parties/probe/v6 HTTP/1.1\r\nHost: [::1]:1999\r\n\r\n", 200, 0, "\"name\":\"v6\""},
    {"empty_host_is_accepted", "GET /parties/probe/eh HTTP/1.1\r\nHost:\r\n\r\n", 200, 0,
     "\"name\":\"eh\""},
    {"http10_without_host_is_accepted", "GET /parties/probe/h10 HTTP/1.0\r\n\r\n", 200, CLOSES,
     "\"name\":\"h10\""},
    /* ---- framing (RFC 9112 6, 7) ---- */
    {"content_length_and_transfer_encoding_is_400_and_closes",
     "POST /parties/probe/c HTTP/1.1\r\n" H
     "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, CLOSES, NULL},
    {"chunked_not_final_is_400",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, CLOSES,
     NULL},
    {"unknown_transfer_coding_is_501",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, CLOSES,
     NULL},
    {"transfer_encoding_in_http10_is_400",
     "POST /parties/probe/c HTTP/1.0\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, CLOSES, NULL},
    {"signed_content_length_is_400",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Content-Length: +3\r\n\r\nabc", 400, CLOSES, NULL},
    {"content_length_list_is_400",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Content-Length: 3, 3\r\n\r\nabc", 400, CLOSES, NULL},
    {"repeated_equal_content_length_is_accepted",
     "POST /parties/probe/cl HTTP/1.1\r\n" H "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     201, 0, "abc"},
    {"differing_content_lengths_are_400",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     400, CLOSES, NULL},
    {"chunk_extensions_are_ignored",
     "POST /parties/probe/ext HTTP/1.1\r\n" H
     "Transfer-Encoding: chunked\r\n\r\n3;a=b;c=\"d\"\r\nabc\r\n0;z\r\n\r\n",
     201, 0, "abc"},
    {"trailer_fields_are_discarded",
     "POST /parties/probe/tr HTTP/1.1\r\n" H
     "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
     201, 0, "abc", "X-Trailer", NULL},
    {"chunk_size_over_the_body_limit_is_413",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
     "ffffffffffffffffffff\r\n",
     413, CLOSES, NULL},
    {"body_over_the_limit_is_413",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Content-Length: 4097\r\n\r\n", 413, CLOSES, NULL},
    /* ---- connection management (RFC 9112 9) ---- */
    {"http11_is_persistent_by_default", "GET /parties/probe/p HTTP/1.1\r\n" H "\r\n", 200, 0, NULL,
     "Connection", "keep-alive"},
    {"connection_close_is_honoured",
     "GET /parties/probe/p HTTP/1.1\r\n" H "Connection: close\r\n\r\n", 200, CLOSES, NULL,
     "Connection", "close"},
    {"http10_closes_by_default", "GET /parties/probe/p HTTP/1.0\r\n\r\n", 200, CLOSES, NULL,
     "Connection", "close"},
    /* ---- Expect (RFC 9110 10.1.1) ---- */
    {"unknown_expectation_is_417",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417,
     CLOSES, NULL},
    {"expect_continue_over_the_body_limit_is_413_without_100",
     "POST /parties/probe/c HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 9999\r\n\r\n",
     413, CLOSES, NULL},
    {"expect_continue_in_http10_is_ignored",
     "POST /parties/probe/e10 HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 201,
     CLOSES, "hi"},
    /* ---- Upgrade (RFC 9110 7.8) ---- */
    {"upgrade_to_another_protocol_is_ignored",
     "GET /parties/probe/h2c HTTP/1.1\r\n" H
     "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "
     "AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
     200, 0, "\"name\":\"h2c\""},
    {"upgrade_in_http10_is_ignored",
     "GET /parties/probe/u10 HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
     200, CLOSES, "\"name\":\"u10\""},
    {"websocket_version_refusal_426_names_the_upgrade",
     "GET /parties/probe/c HTTP/1.1\r\n" H "Connection: Upgrade\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
     426, CLOSES, NULL, "Upgrade", "websocket"},
    /* ---- status codes and answer fields (RFC 9110 6.6.1, 15) ---- */
    {"answers_carry_a_date", "GET /parties/probe/d HTTP/1.1\r\n" H "\r\n", 200, 0, NULL, "Date",
     " GMT"},
    {"error_answers_carry_a_date", "GET /nothing-here HTTP/1.1\r\n" H "\r\n", 404, 0, NULL, "Date",
     " GMT"},
    {"no_content_has_no_content_length", "OPTIONS * HTTP/1.1\r\n" H "\r\n", 204, 0, NULL,
     "Content-Length", NULL},
    {"method_not_allowed_lists_allow",
     "POST /_partyd/health HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 405, 0, NULL, "Allow",
     "GET"},
    {"unauthorized_has_www_authenticate", "GET /_partyd/rooms HTTP/1.1\r\n" H "\r\n", 401, 0, NULL,
     "WWW-Authenticate", "Bearer"},
    {"request_line_over_the_limit_is_414", NULL, 414, CLOSES, NULL},
    /* ---- percent-encoding and path equivalence (RFC 9110 4.2.3, RFC 3986 6.2.2) ---- */
    {"encoded_unreserved_in_party_segment_is_the_same_party",
     "GET /parties/pr%6Fbe/pe1 HTTP/1.1\r\n" H "\r\n", 200, 0, "\"name\":\"pe1\""},
    {"encoded_unreserved_in_prefix_is_the_same_prefix",
     "GET /p%61rties/probe/pe2 HTTP/1.1\r\n" H "\r\n", 200, 0, "\"name\":\"pe2\""},
    {"encoded_room_name_is_the_decoded_name", "GET /parties/probe/%70e%33 HTTP/1.1\r\n" H "\r\n",
     200, 0, "\"name\":\"pe3\""},
    {"hex_case_in_escapes_is_equivalent", "GET /parties/probe/a%2fb HTTP/1.1\r\n" H "\r\n", 200, 0,
     "\"name\":\"a/b\""},
    {"party_segment_is_case_insensitive", "GET /parties/PROBE/pc HTTP/1.1\r\n" H "\r\n", 200, 0,
     "\"name\":\"pc\""},
    {"dot_segment_room_is_400", "GET /parties/probe/.. HTTP/1.1\r\n" H "\r\n", 400, 0, NULL},
    {"encoded_dot_segment_room_is_400", "GET /parties/probe/%2e%2E HTTP/1.1\r\n" H "\r\n", 400, 0,
     NULL},
};

static const row *find_row(const char *name) {
    size_t i;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    fail_msg("no row %s", name);
    return NULL;
}

static void run_row(const row *r) {
    char long_line[3000];
    const char *request = r->request;
    http_response res;
    tconn *c = tconn_open(port, 0);
    int rc;

    assert_non_null(c);
    if (request == NULL) { /* the request line longer than --max-header-bytes */
        memcpy(long_line, "GET /", 5);
        memset(long_line + 5, 'a', sizeof(long_line) - 6);
        long_line[sizeof(long_line) - 1] = '\0';
        request = long_line;
    }
    assert_int_equal(tconn_send_str(c, request), 0);
    rc = http_read_response(c, r->flags & HEAD_REQ, &res, TC_TIMEOUT_MS);
    if (rc != 0)
        fail_msg("%s: no response (%d)", r->name, rc);
    if (res.status != r->status)
        fail_msg("%s: status %d, want %d\n%s", r->name, res.status, r->status, res.head);
    if (r->body_has != NULL && strstr(res.body, r->body_has) == NULL)
        fail_msg("%s: body lacks %s: %s", r->name, r->body_has, res.body);
    if (r->header != NULL) {
        const char *v = http_response_header(&res, r->header);
        if (r->header_value == NULL && v != NULL)
            fail_msg("%s: has %s: %s", r->name, r->header, v);
        if (r->header_value != NULL && (v == NULL || strstr(v, r->header_value) == NULL))
            fail_msg("%s: %s is %s, want %s", r->name, r->header, v ? v : "(none)",
                     r->header_value);
    }
    http_response_free(&res);
    if (r->flags & CLOSES) {
        tconn_expect_close(c);
    } else {
        /* still open: a second request on it is answered */
        assert_int_equal(tconn_send_str(c, "GET /_partyd/health HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
        rc = http_read_response(c, 0, &res, TC_TIMEOUT_MS);
        if (rc != 0 || res.status != 200)
            fail_msg("%s: the connection did not stay usable (%d)", r->name, rc);
        http_response_free(&res);
    }
    tconn_close(c);
}

/* One cmocka test per row, so a failure names its requirement. */
#define ROW_TEST(n)                                                                                \
    static void test_##n(void **state) {                                                           \
        (void)state;                                                                               \
        run_row(find_row(#n));                                                                     \
    }
#define ROW(n) cmocka_unit_test(test_##n),
#define ROWS(X)                                                                                    \
    X(bare_lf_in_head_is_400)                                                                      \
    X(empty_lines_before_request_line_are_skipped)                                                 \
    X(space_before_colon_is_400)                                                                   \
    X(obs_fold_is_400)                                                                             \
    X(whitespace_line_after_request_line_is_400)                                                   \
    X(bare_cr_in_field_value_is_400)                                                               \
    X(invalid_field_name_is_400)                                                                   \
    X(request_line_with_two_spaces_is_400)                                                         \
    X(lowercase_http_version_is_400)                                                               \
    X(http_2_request_line_is_505)                                                                  \
    X(later_http_1_minor_version_is_served_as_1_1)                                                 \
    X(method_is_case_sensitive)                                                                    \
    X(method_unknown_to_partyd_reaches_the_party)                                                  \
    X(absolute_form_is_accepted_and_its_authority_wins_over_host)                                  \
    X(absolute_form_scheme_is_case_insensitive)                                                    \
    X(absolute_form_without_path_is_the_root)                                                      \
    X(absolute_form_with_userinfo_is_400)                                                          \
    X(absolute_form_with_empty_host_is_400)                                                        \
    X(absolute_form_of_another_scheme_is_400)                                                      \
    X(asterisk_form_options_is_answered)                                                           \
    X(asterisk_form_with_another_method_is_400)                                                    \
    X(connect_authority_form_is_501)                                                               \
    X(fragment_in_target_is_400)                                                                   \
    X(http11_without_host_is_400)                                                                  \
    X(two_host_fields_are_400)                                                                     \
    X(host_with_a_space_is_400)                                                                    \
    X(host_with_a_slash_is_400)                                                                    \
    X(host_with_a_bad_port_is_400)                                                                 \
    X(host_ipv6_literal_with_port_is_accepted)                                                     \
    X(empty_host_is_accepted)                                                                      \
    X(http10_without_host_is_accepted)                                                             \
    X(content_length_and_transfer_encoding_is_400_and_closes)                                      \
    X(chunked_not_final_is_400)                                                                    \
    X(unknown_transfer_coding_is_501)                                                              \
    X(transfer_encoding_in_http10_is_400)                                                          \
    X(signed_content_length_is_400)                                                                \
    X(content_length_list_is_400)                                                                  \
    X(repeated_equal_content_length_is_accepted)                                                   \
    X(differing_content_lengths_are_400)                                                           \
    X(chunk_extensions_are_ignored)                                                                \
    X(trailer_fields_are_discarded)                                                                \
    X(chunk_size_over_the_body_limit_is_413)                                                       \
    X(body_over_the_limit_is_413)                                                                  \
    X(http11_is_persistent_by_default)                                                             \
    X(connection_close_is_honoured)                                                                \
    X(http10_closes_by_default)                                                                    \
    X(unknown_expectation_is_417)                                                                  \
    X(expect_continue_over_the_body_limit_is_413_without_100)                                      \
    X(expect_continue_in_http10_is_ignored)                                                        \
    X(upgrade_to_another_protocol_is_ignored)                                                      \
    X(upgrade_in_http10_is_ignored)                                                                \
    X(websocket_version_refusal_426_names_the_upgrade)                                             \
    X(answers_carry_a_date)                                                                        \
    X(error_answers_carry_a_date)                                                                  \
    X(no_content_has_no_content_length)                                                            \
    X(method_not_allowed_lists_allow)                                                              \
    X(unauthorized_has_www_authenticate)                                                           \
    X(request_line_over_the_limit_is_414)                                                          \
    X(encoded_unreserved_in_party_segment_is_the_same_party)                                       \
    X(encoded_unreserved_in_prefix_is_the_same_prefix)                                             \
    X(encoded_room_name_is_the_decoded_name)                                                       \
    X(hex_case_in_escapes_is_equivalent)                                                           \
    X(party_segment_is_case_insensitive)                                                           \
    X(dot_segment_room_is_400)                                                                     \
    X(encoded_dot_segment_room_is_400)
ROWS(ROW_TEST)

/* RFC 9110 10.1.1: the client sends the body only after the 100. */
static void test_expect_continue_gets_100_before_the_body_is_sent(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, "POST /parties/probe/cont HTTP/1.1\r\nHost: h\r\n"
                                       "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                     0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 100);
    http_response_free(&res);
    assert_int_equal(tconn_send_str(c, "hello"), 0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "hello");
    http_response_free(&res);
    tconn_close(c);
}

/* RFC 9110 7.8: with Upgrade and Expect: 100-continue, the 100 precedes
 * the 101. */
static void test_upgrade_with_expect_continue_sends_100_before_101(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    int r;
    (void)state;

    assert_non_null(c);
    r = ws_handshake(c, "/parties/probe/upc", "Expect: 100-continue\r\n", NULL, 0, &res);
    /* the client reads the 100 as the answer to its handshake */
    assert_int_equal(r, 100);
    http_response_free(&res);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 101);
    http_response_free(&res);
    tconn_close(c);
}

/* RFC 9110 7.8: "websocket" among other protocols is still an upgrade. */
static void test_upgrade_listing_websocket_among_others_is_101(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;

    assert_non_null(c);
    assert_int_equal(
        tconn_send_str(c, "GET /parties/probe/ul HTTP/1.1\r\nHost: h\r\n"
                          "Connection: keep-alive, Upgrade\r\nUpgrade: foo/2, websocket\r\n"
                          "Sec-WebSocket-Version: 13\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 101);
    assert_string_equal(http_response_header(&res, "Upgrade"), "websocket");
    http_response_free(&res);
    tconn_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        ROWS(ROW) cmocka_unit_test(test_expect_continue_gets_100_before_the_body_is_sent),
        cmocka_unit_test(test_upgrade_with_expect_continue_sends_100_before_101),
        cmocka_unit_test(test_upgrade_listing_websocket_among_others_is_101),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
