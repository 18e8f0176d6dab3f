/* Rooms end to end, driven through the probe party's commands: on_start
 * failure and retry, connection tags and their limits, foreach_conn by tag,
 * party_room_conn, per-connection state and its limit, and broadcast. One
 * partyd with default limits. */
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

/* Opens a WebSocket to a room whose on_start fails and checks the failure
 * path: 101, a JSON error frame, Close 1011. Returns the connection. */
static tconn *expect_failed_start(const char *room) {
    char target[256];
    char *error;
    tconn *c;

    snprintf(target, sizeof(target), "/parties/probe/%s", room);
    c = ws_open(port, target);
    error = ws_expect_text_prefix(c, "{");
    if (strstr(error, "\"error\"") == NULL)
        fail_msg("the on_start failure frame is not a JSON error: %s", error);
    free(error);
    ws_expect_close(c, 1011, NULL);
    return c;
}

static void
test_failed_on_start_sends_json_error_and_1011_then_next_connection_retries(void **state) {
    tconn *c;
    (void)state;
    c = expect_failed_start("fail-start-1");
    assert_int_equal(ws_send_close(c, 1011, ""), 0);
    tconn_close(c);
    c = probe_open(port, "fail-start-1", "_pk=second", NULL);
    assert_int_equal(ws_send_text(c, "hi"), 0);
    ws_expect_text(c, "echo:hi");
    tconn_close(c);
}

/* The client's reply to that Close must be read, so the handshake completes
 * and the TCP connection closes at once, not when close_timeout (5 s) fires.
 * (A regression test: party__conn_start_ws used to skip reading when the
 * connection was already closing.) */
static void test_failed_on_start_close_handshake_completes_promptly(void **state) {
    tconn *c;
    int r;
    (void)state;
    c = expect_failed_start("fail-start-1-handshake");
    assert_int_equal(ws_send_close(c, 1011, ""), 0);
    /* Well under close_timeout: a server that read the reply closes now. */
    r = tconn_fill(c, 2000);
    if (r == TC_TIMEOUT)
        fail_msg("the server ignored the Close reply: no TCP close within 2 s");
    if (r > 0)
        fail_msg("expected the TCP close, got %zu more bytes", c->len);
    tconn_close(c);
}

static void test_failed_on_start_answers_http_500_then_200(void **state) {
    http_response res;
    (void)state;
    http_expect_get(port, "/parties/probe/fail-start-1-http", &res);
    assert_int_equal(res.status, 500);
    assert_non_null(strstr(res.body, "on_start"));
    http_response_free(&res);
    http_expect_get(port, "/parties/probe/fail-start-1-http", &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"fail-start-1-http\""));
    assert_non_null(strstr(res.body, "\"starts\":1"));
    http_response_free(&res);
}

static void test_on_start_is_retried_by_any_kind_of_event(void **state) {
    http_response res;
    tconn *c;
    (void)state;
    /* Fails twice: once for a WebSocket, once for a request. */
    c = expect_failed_start("fail-start-2-mixed");
    tconn_close(c);
    http_expect_get(port, "/parties/probe/fail-start-2-mixed", &res);
    assert_int_equal(res.status, 500);
    http_response_free(&res);
    c = probe_open(port, "fail-start-2-mixed", NULL, NULL);
    tconn_close(c);
}

static void test_cold_room_starts_once_for_racing_events(void **state) {
    enum { N = 4 };
    tconn *conns[N];
    http_response res;
    char *record;
    int i;
    (void)state;

    /* All the handshakes are sent before any answer is read. */
    for (i = 0; i < N; i++) {
        conns[i] = tconn_open(port, 0);
        assert_non_null(conns[i]);
        assert_int_equal(tconn_send_str(conns[i], "GET /parties/probe/race?_pk=r HTTP/1.1\r\n"
                                                  "Host: x\r\nUpgrade: websocket\r\n"
                                                  "Connection: Upgrade\r\n"
                                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                                  "Sec-WebSocket-Version: 13\r\n\r\n"),
                         0);
    }
    for (i = 0; i < N; i++) {
        assert_int_equal(http_read_response(conns[i], 0, &res, TC_TIMEOUT_MS), 0);
        assert_int_equal(res.status, 101);
        http_response_free(&res);
    }
    record = probe_record(port, "race");
    assert_non_null(strstr(record, "\"starts\":1,\"connects\":4,\"connections\":4"));
    free(record);
    for (i = 0; i < N; i++)
        tconn_close(conns[i]);
}

static void test_tags_from_query_follow_the_id(void **state) {
    tconn *c = probe_open(port, "tags1", "_pk=t1&tags=a,b", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "tags"), 0);
    ws_expect_text(c, "tags:t1,a,b");
    tconn_close(c);
}

static void test_connection_without_tags_has_its_id_as_only_tag(void **state) {
    tconn *c = probe_open(port, "tags1", "_pk=t0", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "tags"), 0);
    ws_expect_text(c, "tags:t0");
    tconn_close(c);
}

static void test_nine_tags_besides_the_id_are_accepted(void **state) {
    tconn *c = probe_open(port, "tags2", "_pk=t2&tags=1,2,3,4,5,6,7,8,9", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "tags"), 0);
    ws_expect_text(c, "tags:t2,1,2,3,4,5,6,7,8,9");
    tconn_close(c);
}

/* Expects the upgrade to be refused with a 500 whose body contains why. */
static void expect_refused_upgrade(const char *target, const char *why) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    int r;
    assert_non_null(c);
    r = ws_handshake(c, target, NULL, NULL, 0, &res);
    if (r != 500)
        fail_msg("%s: expected 500, got %d", target, r);
    if (strstr(res.body, why) == NULL)
        fail_msg("%s: the 500 does not say \"%s\": %s", target, why, res.body);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_ten_tags_besides_the_id_are_refused_with_500(void **state) {
    char *record;
    (void)state;
    expect_refused_upgrade("/parties/probe/tags3?_pk=t3&tags=1,2,3,4,5,6,7,8,9,10", "at most 9");
    /* The refused connection never reached the room. */
    record = probe_record(port, "tags3");
    assert_non_null(strstr(record, "\"connects\":0,\"connections\":0"));
    assert_null(strstr(record, "t3"));
    free(record);
}

static void test_tag_of_257_bytes_is_refused_and_256_accepted(void **state) {
    char target[700], expected[300];
    tconn *c;
    int n;
    (void)state;

    n = snprintf(target, sizeof(target), "/parties/probe/tags4?_pk=t4&tags=");
    memset(target + n, 'g', 257);
    target[n + 257] = '\0';
    expect_refused_upgrade(target, "257 bytes");

    target[n + 256] = '\0';
    c = probe_open(port, "tags4", target + strlen("/parties/probe/tags4?"), NULL);
    assert_int_equal(ws_send_text(c, "tags"), 0);
    n = snprintf(expected, sizeof(expected), "tags:t4,");
    memset(expected + n, 'g', 256);
    expected[n + 256] = '\0';
    ws_expect_text(c, expected);
    tconn_close(c);
}

static void test_count_by_tag_counts_only_open_connections(void **state) {
    tconn *a = probe_open(port, "count1", "_pk=A&tags=red", NULL);
    tconn *b = probe_open(port, "count1", "_pk=B&tags=red,x", NULL);
    tconn *c = probe_open(port, "count1", "_pk=C&tags=blue", NULL);
    char *record;
    (void)state;

    assert_int_equal(ws_send_text(a, "count:red"), 0);
    ws_expect_text(a, "count:2");
    assert_int_equal(ws_send_text(a, "count:blue"), 0);
    ws_expect_text(a, "count:1");
    assert_int_equal(ws_send_text(a, "count:"), 0);
    ws_expect_text(a, "count:3");
    assert_int_equal(ws_send_text(a, "count:B"), 0); /* the id is a tag */
    ws_expect_text(a, "count:1");
    assert_int_equal(ws_send_text(a, "count:green"), 0);
    ws_expect_text(a, "count:0");

    /* B is closing (the server sent Close, B has not answered): not open. */
    assert_int_equal(ws_send_text(b, "close:4000:bye"), 0);
    ws_expect_close(b, 4000, "bye");
    assert_int_equal(ws_send_text(a, "count:red"), 0);
    ws_expect_text(a, "count:1");
    assert_int_equal(ws_send_text(a, "count:"), 0);
    ws_expect_text(a, "count:2");
    assert_int_equal(ws_send_close(b, 4000, "bye"), 0);
    tconn_expect_close(b);
    tconn_close(b);

    /* C drops: once the room has seen it, C is not counted. */
    tconn_close(c);
    record = probe_expect_record(port, "count1", "\"close:C:1006::0\"");
    free(record);
    assert_int_equal(ws_send_text(a, "count:"), 0);
    ws_expect_text(a, "count:1");
    assert_int_equal(ws_send_text(a, "count:blue"), 0);
    ws_expect_text(a, "count:0");
    tconn_close(a);
}

static void test_whois_finds_only_open_connections_by_id(void **state) {
    tconn *a = probe_open(port, "whois1", "_pk=W1", NULL);
    tconn *b = probe_open(port, "whois1", "_pk=W2", NULL);
    (void)state;

    assert_int_equal(ws_send_text(a, "whois:W2"), 0);
    ws_expect_text(a, "whois:W2:1");
    assert_int_equal(ws_send_text(a, "whois:W1"), 0);
    ws_expect_text(a, "whois:W1:1");
    assert_int_equal(ws_send_text(a, "whois:nobody"), 0);
    ws_expect_text(a, "whois:nobody:0");

    assert_int_equal(ws_send_text(b, "close:4000:going"), 0);
    ws_expect_close(b, 4000, "going");
    assert_int_equal(ws_send_text(a, "whois:W2"), 0);
    ws_expect_text(a, "whois:W2:0");
    assert_int_equal(ws_send_close(b, 4000, ""), 0);
    tconn_expect_close(b);
    tconn_close(b);
    assert_int_equal(ws_send_text(a, "whois:W2"), 0);
    ws_expect_text(a, "whois:W2:0");
    tconn_close(a);
}

static void test_connection_state_survives_between_messages(void **state) {
    tconn *c = probe_open(port, "state1", "_pk=S1", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:");
    assert_int_equal(ws_send_text(c, "state:hello"), 0);
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:hello");
    assert_int_equal(ws_send_text(c, "ping"), 0);
    ws_expect_text(c, "echo:ping");
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:hello");
    assert_int_equal(ws_send_text(c, "state:world"), 0);
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:world");
    assert_int_equal(ws_send_text(c, "state:"), 0); /* len 0 clears */
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:");
    tconn_close(c);
}

static void test_connection_state_is_per_connection(void **state) {
    tconn *a = probe_open(port, "state2", "_pk=S2a", NULL);
    tconn *b = probe_open(port, "state2", "_pk=S2b", NULL);
    (void)state;
    assert_int_equal(ws_send_text(a, "state:mine"), 0);
    assert_int_equal(ws_send_text(a, "getstate"), 0);
    ws_expect_text(a, "state:mine");
    assert_int_equal(ws_send_text(b, "getstate"), 0);
    ws_expect_text(b, "state:");
    tconn_close(a);
    tconn_close(b);
}

static void test_connection_state_over_16_KiB_is_refused(void **state) {
    enum { LIMIT = 16384 };
    char *message = malloc(6 + LIMIT + 2), *reply;
    tconn *c = probe_open(port, "state3", "_pk=S3", NULL);
    size_t i;
    (void)state;

    assert_non_null(message);
    assert_int_equal(ws_send_text(c, "state:small"), 0);
    memcpy(message, "state:", 6);
    memset(message + 6, 'z', LIMIT + 1);
    message[6 + LIMIT + 1] = '\0';
    assert_int_equal(ws_send_text(c, message), 0); /* refused: PARTY_ETOOBIG */
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:small");

    memset(message + 6, 'y', LIMIT);
    message[6 + LIMIT] = '\0';
    assert_int_equal(ws_send_text(c, message), 0); /* exactly the limit: kept */
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    /* The probe's reply buffer cuts the state short; its start tells. */
    reply = ws_expect_text_prefix(c, "state:yyyy");
    for (i = 6; reply[i] != '\0'; i++)
        assert_int_equal(reply[i], 'y');
    free(reply);
    free(message);
    tconn_close(c);
}

static void test_broadcast_reaches_the_others_and_not_the_sender(void **state) {
    tconn *a = probe_open(port, "bcast1", "_pk=BA", NULL);
    tconn *b = probe_open(port, "bcast1", "_pk=BB", NULL);
    tconn *c = probe_open(port, "bcast1", "_pk=BC", NULL);
    tconn *elsewhere = probe_open(port, "bcast2", "_pk=BD", NULL);
    (void)state;

    assert_int_equal(ws_send_text(a, "broadcast:hi all"), 0);
    ws_expect_text(b, "hi all");
    ws_expect_text(c, "hi all");
    /* The sender's next frame is the answer to its next message. */
    assert_int_equal(ws_send_text(a, "after"), 0);
    ws_expect_text(a, "echo:after");
    assert_int_equal(ws_send_text(elsewhere, "after"), 0);
    ws_expect_text(elsewhere, "echo:after");
    tconn_close(a);
    tconn_close(b);
    tconn_close(c);
    tconn_close(elsewhere);
}

static void test_broadcast_skips_closing_connections(void **state) {
    tconn *a = probe_open(port, "bcast3", "_pk=CA", NULL);
    tconn *b = probe_open(port, "bcast3", "_pk=CB", NULL);
    tconn *c = probe_open(port, "bcast3", "_pk=CC", NULL);
    (void)state;

    assert_int_equal(ws_send_text(b, "close:4000:later"), 0);
    ws_expect_close(b, 4000, "later");
    assert_int_equal(ws_send_text(a, "broadcast:second"), 0);
    ws_expect_text(c, "second");
    /* B gets nothing after the Close: the next thing is the TCP close. */
    assert_int_equal(ws_send_close(b, 4000, ""), 0);
    tconn_expect_close(b);
    tconn_close(a);
    tconn_close(b);
    tconn_close(c);
}

static void test_room_record_counts_open_connections(void **state) {
    tconn *a = probe_open(port, "counted", NULL, NULL);
    tconn *b = probe_open(port, "counted", NULL, NULL);
    char *record;
    (void)state;
    record = probe_record(port, "counted");
    assert_non_null(strstr(record, "\"starts\":1,\"connects\":2,\"connections\":2"));
    free(record);
    assert_int_equal(ws_send_close(b, 1000, ""), 0);
    ws_expect_close(b, 1000, "");
    tconn_expect_close(b);
    record = probe_record(port, "counted");
    assert_non_null(strstr(record, "\"connections\":1"));
    free(record);
    tconn_close(a);
    tconn_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_failed_on_start_sends_json_error_and_1011_then_next_connection_retries),
        cmocka_unit_test(test_failed_on_start_close_handshake_completes_promptly),
        cmocka_unit_test(test_failed_on_start_answers_http_500_then_200),
        cmocka_unit_test(test_on_start_is_retried_by_any_kind_of_event),
        cmocka_unit_test(test_cold_room_starts_once_for_racing_events),
        cmocka_unit_test(test_tags_from_query_follow_the_id),
        cmocka_unit_test(test_connection_without_tags_has_its_id_as_only_tag),
        cmocka_unit_test(test_nine_tags_besides_the_id_are_accepted),
        cmocka_unit_test(test_ten_tags_besides_the_id_are_refused_with_500),
        cmocka_unit_test(test_tag_of_257_bytes_is_refused_and_256_accepted),
        cmocka_unit_test(test_count_by_tag_counts_only_open_connections),
        cmocka_unit_test(test_whois_finds_only_open_connections_by_id),
        cmocka_unit_test(test_connection_state_survives_between_messages),
        cmocka_unit_test(test_connection_state_is_per_connection),
        cmocka_unit_test(test_connection_state_over_16_KiB_is_refused),
        cmocka_unit_test(test_broadcast_reaches_the_others_and_not_the_sender),
        cmocka_unit_test(test_broadcast_skips_closing_connections),
        cmocka_unit_test(test_room_record_counts_open_connections),
    };
    return cmocka_run_group_tests_name("rooms", tests, group_setup, group_teardown);
}
