/* Routing end to end: which URLs reach which room of which party, and what
 * partyd answers itself (400 unknown party or invalid room name, 404 outside the prefix). One
 * partyd for the group; the custom-prefix test starts its own. */
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
    (void)state;
    return partyd_group_start(&server, &port, NULL, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* GETs target and checks the status (and, when not NULL, that the body
 * contains needle). */
static void expect_get(const char *target, int status, const char *needle) {
    http_response res;
    http_expect_get(port, target, &res);
    if (res.status != status)
        fail_msg("GET %s: expected %d, got %d: %s", target, status, res.status, res.body);
    if (needle != NULL && strstr(res.body, needle) == NULL)
        fail_msg("GET %s: body has no %s: %s", target, needle, res.body);
    http_response_free(&res);
}

static void test_get_room_returns_its_json_record(void **state) {
    http_response res;
    (void)state;
    http_expect_get(port, "/parties/probe/r1", &res);
    assert_int_equal(res.status, 200);
    assert_non_null(http_response_header(&res, "Content-Type"));
    assert_string_equal(http_response_header(&res, "Content-Type"), "application/json");
    assert_non_null(strstr(res.body, "{\"name\":\"r1\""));
    assert_int_equal(strlen(res.body), res.body_len);
    http_response_free(&res);
}

static void test_party_name_matches_case_insensitively(void **state) {
    (void)state;
    expect_get("/parties/PROBE/r1", 200, "\"name\":\"r1\"");
    expect_get("/parties/Probe/r1", 200, "\"name\":\"r1\"");
    expect_get("/parties/GREETER/r1", 200, "{\"greeted\":0}");
}

static void test_room_name_is_percent_decoded(void **state) {
    (void)state;
    expect_get("/parties/probe/hello%20world", 200, "\"name\":\"hello world\"");
    expect_get("/parties/probe/a%2Fb", 200, "\"name\":\"a/b\"");
    expect_get("/parties/probe/caf%C3%A9", 200, "\"name\":\"caf\xC3\xA9\"");
}

static void test_room_name_is_not_plus_decoded(void **state) {
    (void)state;
    /* '+' means a space only in query strings. */
    expect_get("/parties/probe/a+b", 200, "\"name\":\"a+b\"");
}

static void test_unknown_party_is_400(void **state) {
    (void)state;
    expect_get("/parties/nosuchparty/r1", 400, NULL);
}

static void test_path_outside_prefix_is_404(void **state) {
    (void)state;
    expect_get("/", 404, NULL);
    expect_get("/other/probe/r1", 404, NULL);
    expect_get("/partiesx/probe/r1", 404, NULL);
    expect_get("/parties", 404, NULL);
    expect_get("/PARTIES/probe/r1", 404, NULL);
}

static void test_party_without_room_segment_is_404(void **state) {
    (void)state;
    expect_get("/parties/probe", 404, NULL);
    expect_get("/parties/", 404, NULL);
}

/* A room segment that is there but empty is an invalid room name: 400 with
 * a body that says so, for plain HTTP and for a WebSocket upgrade alike. */
static void test_empty_room_name_is_400_with_a_reason(void **state) {
    static const char *const targets[] = {"/parties/probe/", "/parties/probe//rest",
                                          "/parties/probe/?_pk=a"};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        http_response res;
        tconn *c;
        int rc;

        expect_get(targets[i], 400, "invalid room name: it is empty");
        c = tconn_open(port, 0);
        assert_non_null(c);
        rc = ws_handshake(c, targets[i], NULL, NULL, 0, &res);
        if (rc != 400)
            fail_msg("upgrade to %s: expected 400, got %d", targets[i], rc);
        assert_non_null(strstr(res.body, "invalid room name: it is empty"));
        assert_string_equal(http_response_header(&res, "Content-Type"),
                            "text/plain; charset=utf-8");
        http_response_free(&res);
        tconn_close(c);
    }
    /* An unknown party is refused as such, whatever the room segment. */
    expect_get("/parties/nosuchparty/", 400, "unknown party");
}

static void test_extra_segments_and_query_reach_the_room(void **state) {
    (void)state;
    expect_get("/parties/probe/r2/extra/seg?x=1&y=two", 200,
               "\"url\":\"/parties/probe/r2/extra/seg?x=1&y=two\"");
    expect_get("/parties/probe/r2/extra/seg?x=1&y=two", 200, "\"name\":\"r2\"");
}

static void test_room_name_that_is_not_utf8_is_400(void **state) {
    (void)state;
    expect_get("/parties/probe/%FF", 400, NULL);
    expect_get("/parties/probe/a%00b", 400, NULL);
    expect_get("/parties/probe/bad%zzescape", 400, NULL);
}

static void test_room_name_is_limited_to_256_bytes(void **state) {
    char target[400];
    (void)state;
    snprintf(target, sizeof(target), "/parties/probe/%0256d", 0);
    expect_get(target, 200, NULL);
    snprintf(target, sizeof(target), "/parties/probe/%0257d", 0);
    expect_get(target, 400, NULL);
}

static void test_builtin_chat_describes_its_room_as_json(void **state) {
    http_response res;
    (void)state;
    http_expect_get(port, "/parties/chat/lobby", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"room\":\"lobby\",\"connections\":0}");
    http_response_free(&res);
}

static void test_builtin_chat_counts_its_connections(void **state) {
    tconn *a = ws_open(port, "/parties/chat/counted");
    tconn *b = ws_open(port, "/parties/chat/counted");
    http_response res;
    (void)state;
    /* The 101s are sent once the connections are in the room. */
    http_expect_get(port, "/parties/chat/counted", &res);
    assert_string_equal(res.body, "{\"room\":\"counted\",\"connections\":2}");
    http_response_free(&res);
    tconn_close(a);
    tconn_close(b);
}

static void test_builtin_chat_refuses_post_with_405_and_allow(void **state) {
    http_response res;
    (void)state;
    http_expect_request(port, "POST", "/parties/chat/lobby", NULL, "x", 1, &res);
    assert_int_equal(res.status, 405);
    assert_non_null(http_response_header(&res, "Allow"));
    assert_string_equal(http_response_header(&res, "Allow"), "GET, HEAD");
    http_response_free(&res);
}

static void test_builtin_echo_greets_get_and_echoes_post(void **state) {
    http_response res;
    (void)state;
    http_expect_get(port, "/parties/echo/e1", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "echo\n");
    http_response_free(&res);
    http_expect_request(port, "POST", "/parties/echo/e1", NULL, "abc", 3, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "abc");
    http_response_free(&res);
}

static void test_custom_prefix_routes_rooms(void **state) {
    static const char *const args[] = {"--prefix", "/api/v1/", NULL};
    partyd *custom = partyd_start(args);
    int custom_port;
    http_response res;
    (void)state;

    assert_non_null(custom);
    custom_port = partyd_port(custom);
    /* Slashes around the prefix are dropped; it may have several segments. */
    http_expect_get(custom_port, "/api/v1/probe/r1", &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"r1\""));
    http_response_free(&res);
    http_expect_get(custom_port, "/parties/probe/r1", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    http_expect_get(custom_port, "/api/probe/r1", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    assert_int_equal(partyd_group_stop(custom), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_room_returns_its_json_record),
        cmocka_unit_test(test_party_name_matches_case_insensitively),
        cmocka_unit_test(test_room_name_is_percent_decoded),
        cmocka_unit_test(test_room_name_is_not_plus_decoded),
        cmocka_unit_test(test_unknown_party_is_400),
        cmocka_unit_test(test_path_outside_prefix_is_404),
        cmocka_unit_test(test_party_without_room_segment_is_404),
        cmocka_unit_test(test_empty_room_name_is_400_with_a_reason),
        cmocka_unit_test(test_extra_segments_and_query_reach_the_room),
        cmocka_unit_test(test_room_name_that_is_not_utf8_is_400),
        cmocka_unit_test(test_room_name_is_limited_to_256_bytes),
        cmocka_unit_test(test_builtin_chat_describes_its_room_as_json),
        cmocka_unit_test(test_builtin_chat_counts_its_connections),
        cmocka_unit_test(test_builtin_chat_refuses_post_with_405_and_allow),
        cmocka_unit_test(test_builtin_echo_greets_get_and_echoes_post),
        cmocka_unit_test(test_custom_prefix_routes_rooms),
    };
    return cmocka_run_group_tests_name("http_routing", tests, group_setup, group_teardown);
}
