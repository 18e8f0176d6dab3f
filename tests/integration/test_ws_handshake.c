/* The WebSocket opening handshake end to end: what is accepted (101 with the
 * right Sec-WebSocket-Accept), what is refused and how, and what the room
 * learns from the request (connection id from _pk, uri with its query). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"

/* The key and accept value of RFC 6455 section 1.3. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static partyd *server;
static int port;

static int group_setup(void **state) {
    (void)state;
    return partyd_group_start(&server, &port, NULL, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Sends a hand-written upgrade request and expects status; the connection
 * must then be closed by the server unless status is 101. Returns the
 * connection when 101 (the caller closes it). */
static tconn *expect_handshake_status(const char *request, int status, http_response *res) {
    tconn *c = http_expect_raw(port, request, res);
    if (res->status != status)
        fail_msg("expected %d, got %d (%s) for:\n%s", status, res->status, res->body, request);
    if (status == 101)
        return c;
    tconn_expect_close(c);
    tconn_close(c);
    partyd_expect_healthy(port);
    return NULL;
}

static void test_handshake_answers_101_with_rfc_accept_value(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n",
                                101, &res);
    assert_string_equal(http_response_header(&res, "Sec-WebSocket-Accept"), RFC_ACCEPT);
    assert_non_null(http_response_header(&res, "Upgrade"));
    assert_int_equal(strcasecmp(http_response_header(&res, "Upgrade"), "websocket"), 0);
    http_response_free(&res);
    free(ws_expect_text_prefix(c, "hello:"));
    tconn_close(c);
}

static void test_header_tokens_are_case_insensitive_lists(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    /* Firefox sends "Connection: keep-alive, Upgrade". */
    c = expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                                "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
                                "sec-websocket-key: " RFC_KEY "\r\n"
                                "sec-websocket-version: 13\r\n\r\n",
                                101, &res);
    assert_string_equal(http_response_header(&res, "Sec-WebSocket-Accept"), RFC_ACCEPT);
    http_response_free(&res);
    free(ws_expect_text_prefix(c, "hello:"));
    tconn_close(c);
}

static void test_missing_key_is_400(void **state) {
    http_response res;
    (void)state;
    expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            400, &res);
    http_response_free(&res);
}

static void test_key_that_is_not_16_bytes_of_base64_is_400(void **state) {
    http_response res;
    (void)state;
    expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: c2hvcnQ=\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            400, &res);
    http_response_free(&res);
}

static void test_version_12_is_426_naming_version_13(void **state) {
    http_response res;
    (void)state;
    expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                            "Sec-WebSocket-Version: 12\r\n\r\n",
                            426, &res);
    assert_non_null(http_response_header(&res, "Sec-WebSocket-Version"));
    assert_string_equal(http_response_header(&res, "Sec-WebSocket-Version"), "13");
    http_response_free(&res);
}

static void test_upgrade_without_connection_upgrade_is_400(void **state) {
    http_response res;
    (void)state;
    expect_handshake_status("GET /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\n"
                            "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            400, &res);
    http_response_free(&res);
}

/* An HTTP/1.0 request's Upgrade is ignored (RFC 9110 7.8): the request is
 * served as a plain GET, not refused and not upgraded. */
static void test_upgrade_with_post_is_400_and_in_http10_is_ignored(void **state) {
    http_response res;
    (void)state;
    expect_handshake_status("POST /parties/probe/hs HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                            "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
                            400, &res);
    http_response_free(&res);
    expect_handshake_status("GET /parties/probe/hs HTTP/1.0\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            200, &res);
    http_response_free(&res);
}

static void test_upgrade_to_unknown_party_is_400(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;
    assert_int_equal(ws_handshake(c, "/parties/nosuchparty/r", NULL, NULL, 0, &res), 400);
    http_response_free(&res);
    tconn_close(c);
}

static void test_pk_becomes_the_connection_id(void **state) {
    tconn *c = ws_open(port, "/parties/probe/pkroom?_pk=alice");
    (void)state;
    ws_expect_text(c, "hello:alice:pkroom:/parties/probe/pkroom?_pk=alice");
    tconn_close(c);
}

static void test_pk_is_percent_decoded(void **state) {
    tconn *c = ws_open(port, "/parties/probe/pkroom?_pk=bob%20smith");
    (void)state;
    ws_expect_text(c, "hello:bob smith:pkroom:/parties/probe/pkroom?_pk=bob%20smith");
    tconn_close(c);
}

static void test_pk_that_is_not_utf8_is_400(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;
    assert_int_equal(ws_handshake(c, "/parties/probe/pkroom?_pk=%FF", NULL, NULL, 0, &res), 400);
    http_response_free(&res);
    tconn_close(c);
}

static void test_without_pk_the_id_is_a_generated_uuid(void **state) {
    char first[300], second[300];
    tconn *a, *b;
    size_t i;
    (void)state;

    a = probe_open(port, "uuidroom", NULL, first);
    b = probe_open(port, "uuidroom", NULL, second);
    assert_int_equal(strlen(first), 36);
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(first[i], '-');
        else if (!isxdigit((unsigned char)first[i]))
            fail_msg("id %s is not a UUID", first);
    }
    assert_int_equal(first[14], '4'); /* version 4 */
    assert_string_not_equal(first, second);
    tconn_close(a);
    tconn_close(b);
}

static void test_uri_is_the_full_target_with_query(void **state) {
    tconn *c = ws_open(port, "/parties/probe/uriroom/extra?_pk=u1&x=1&y=a%2Cb");
    (void)state;
    ws_expect_text(c, "hello:u1:uriroom:/parties/probe/uriroom/extra?_pk=u1&x=1&y=a%2Cb");
    tconn_close(c);
}

/* Opens target (built from parts) and expects the hello naming id and
 * target as the uri. */
static void expect_id_and_uri(const char *target, const char *id) {
    char expected[2048];
    tconn *c = ws_open(port, target);
    snprintf(expected, sizeof(expected), "hello:%s:longuri:%s", id, target);
    ws_expect_text(c, expected);
    tconn_close(c);
}

static void test_long_uris_keep_id_and_uri(void **state) {
    char id[201], pad[1201], target[1600];
    (void)state;
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';

    /* The id ends the uri, and both fit in the connection: one copy. */
    expect_id_and_uri("/parties/probe/longuri?_pk=short-id", "short-id");
    /* The id ends the uri, longer than fits in the connection. */
    snprintf(target, sizeof(target), "/parties/probe/longuri?_pk=%s", id);
    expect_id_and_uri(target, id);
    /* Another parameter follows the id, both short, then long. */
    expect_id_and_uri("/parties/probe/longuri?_pk=s2&x=1", "s2");
    snprintf(target, sizeof(target), "/parties/probe/longuri?_pk=%s&x=%s", id, pad + 1000);
    expect_id_and_uri(target, id);
    /* The id ends a uri whose other bytes pass 1023 (the most the
     * connection records of where an id starts inside its uri). */
    snprintf(target, sizeof(target), "/parties/probe/longuri?x=%s&_pk=tail-id", pad);
    expect_id_and_uri(target, "tail-id");
    /* The uri ends with the id's text, though the id came from _pk
     * earlier in it: either copy names the same id. */
    expect_id_and_uri("/parties/probe/longuri?_pk=ab&y=ab", "ab");
}

static void test_room_name_is_decoded_for_websockets_too(void **state) {
    tconn *c = ws_open(port, "/parties/PROBE/my%20room?_pk=d1");
    (void)state;
    ws_expect_text(c, "hello:d1:my room:/parties/PROBE/my%20room?_pk=d1");
    tconn_close(c);
}

static void test_frames_sent_with_the_handshake_are_processed(void **state) {
    char frames[64];
    size_t n;
    http_response res;
    tconn *c = tconn_open(port, 0);
    (void)state;

    n = ws_encode_frame(frames, 0x81, 1, "first", 5);
    n += ws_encode_frame(frames + n, 0x81, 1, "second", 6);
    assert_int_equal(ws_handshake(c, "/parties/probe/eager?_pk=e1", NULL, frames, n, &res), 0);
    http_response_free(&res);
    ws_expect_text(c, "hello:e1:eager:/parties/probe/eager?_pk=e1");
    ws_expect_text(c, "echo:first");
    ws_expect_text(c, "echo:second");
    tconn_close(c);
}

static void test_partial_frame_sent_with_the_handshake_is_completed_later(void **state) {
    char frame[64];
    size_t n;
    http_response res;
    tconn *c = tconn_open(port, 0);
    (void)state;

    n = ws_encode_frame(frame, 0x81, 1, "split-frame", 11);
    assert_int_equal(ws_handshake(c, "/parties/probe/eager?_pk=e2", NULL, frame, 4, &res), 0);
    http_response_free(&res);
    ws_expect_text(c, "hello:e2:eager:/parties/probe/eager?_pk=e2");
    assert_int_equal(tconn_send(c, frame + 4, n - 4), 0);
    ws_expect_text(c, "echo:split-frame");
    tconn_close(c);
}

static void test_upgrade_pipelined_behind_a_request_is_served_after_it(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port,
                        "GET /parties/probe/piped HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /parties/probe/piped?_pk=p1 HTTP/1.1\r\nHost: x\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n",
                        &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"piped\""));
    http_response_free(&res);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 101);
    assert_string_equal(http_response_header(&res, "Sec-WebSocket-Accept"), RFC_ACCEPT);
    http_response_free(&res);
    ws_expect_text(c, "hello:p1:piped:/parties/probe/piped?_pk=p1");
    assert_int_equal(ws_send_text(c, "x"), 0);
    ws_expect_text(c, "echo:x");
    tconn_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_answers_101_with_rfc_accept_value),
        cmocka_unit_test(test_header_tokens_are_case_insensitive_lists),
        cmocka_unit_test(test_missing_key_is_400),
        cmocka_unit_test(test_key_that_is_not_16_bytes_of_base64_is_400),
        cmocka_unit_test(test_version_12_is_426_naming_version_13),
        cmocka_unit_test(test_upgrade_without_connection_upgrade_is_400),
        cmocka_unit_test(test_upgrade_with_post_is_400_and_in_http10_is_ignored),
        cmocka_unit_test(test_upgrade_to_unknown_party_is_400),
        cmocka_unit_test(test_pk_becomes_the_connection_id),
        cmocka_unit_test(test_pk_is_percent_decoded),
        cmocka_unit_test(test_pk_that_is_not_utf8_is_400),
        cmocka_unit_test(test_without_pk_the_id_is_a_generated_uuid),
        cmocka_unit_test(test_uri_is_the_full_target_with_query),
        cmocka_unit_test(test_long_uris_keep_id_and_uri),
        cmocka_unit_test(test_room_name_is_decoded_for_websockets_too),
        cmocka_unit_test(test_frames_sent_with_the_handshake_are_processed),
        cmocka_unit_test(test_partial_frame_sent_with_the_handshake_is_completed_later),
        cmocka_unit_test(test_upgrade_pipelined_behind_a_request_is_served_after_it),
    };
    return cmocka_run_group_tests_name("ws_handshake", tests, group_setup, group_teardown);
}
