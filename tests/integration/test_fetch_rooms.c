/* Room-to-room requests in a real partyd: a probe room asks another room
 * (of probe, or of the built-in parties) over party_room_fetch from
 * on_message, and sends the answer it receives in on_response back to its
 * WebSocket client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

static int group_setup(void **state) {
    partyd *d = partyd_start(NULL);
    *state = d;
    return d != NULL ? 0 : -1;
}

static int group_teardown(void **state) {
    return partyd_group_stop(*state);
}

static void test_answer_of_another_room_reaches_the_caller(void **state) {
    partyd *d = *state;
    tconn *c = probe_open(partyd_port(d), "asker", "_pk=me", NULL);
    char *text;

    ws_send_text(c, "fetch:probe/answerer/sub?x=1");
    text = ws_expect_text_prefix(c, "response:200:{\"name\":\"answerer\"");
    assert_non_null(strstr(text, "\"url\":\"/parties/probe/answerer/sub?x=1\""));
    free(text);
    tconn_close(c);
}

static void test_hooks_are_skipped_between_rooms(void **state) {
    partyd *d = *state;
    tconn *c = probe_open(partyd_port(d), "asker2", "_pk=me", NULL);
    char *text;
    http_response res;

    /* A client is denied by the hook ... */
    http_expect_get(partyd_port(d), "/parties/probe/guarded?deny=403", &res);
    assert_int_equal(res.status, 403);
    http_response_free(&res);
    /* ... a room is not. */
    ws_send_text(c, "fetch:probe/guarded?deny=403");
    text = ws_expect_text_prefix(c, "response:200:{\"name\":\"guarded\"");
    free(text);
    tconn_close(c);
}

static void test_unknown_party_and_failed_start_are_answers(void **state) {
    partyd *d = *state;
    tconn *c = probe_open(partyd_port(d), "asker3", "_pk=me", NULL);
    char *text;

    ws_send_text(c, "fetch:no-such-party/x");
    ws_expect_text(c, "response:404:unknown party\n");
    ws_send_text(c, "fetch:probe/fail-start-1");
    text = ws_expect_text_prefix(c, "response:500:");
    assert_non_null(strstr(text, "on_start failed"));
    free(text);
    /* The target's next event retries on_start. */
    ws_send_text(c, "fetch:probe/fail-start-1");
    text = ws_expect_text_prefix(c, "response:200:{\"name\":\"fail-start-1\"");
    free(text);
    tconn_close(c);
}

static void test_network_client_cannot_send_the_room_header(void **state) {
    partyd *d = *state;
    http_response res;

    http_expect_request(partyd_port(d), "GET", "/parties/probe/x", "X-Partyd-From-Room: 1234\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 400);
    assert_non_null(strstr(res.body, "X-Partyd-From-Room"));
    http_response_free(&res);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_of_another_room_reaches_the_caller),
        cmocka_unit_test(test_hooks_are_skipped_between_rooms),
        cmocka_unit_test(test_unknown_party_and_failed_start_are_answers),
        cmocka_unit_test(test_network_client_cannot_send_the_room_header),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
