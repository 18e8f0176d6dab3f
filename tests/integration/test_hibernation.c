/* Hibernation in a real partyd process (--hibernate-after 1): a room of a
 * hibernating party with open connections leaves memory when idle, its
 * connections stay open with their id, tags and state, pings are answered
 * without waking it, and the next message wakes it (on_start runs again)
 * and is handled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

static partyd *server;
static int port;

static void wait_hibernated(const char *room_log_line) {
    if (!partyd_wait_stderr(server, room_log_line, 8000)) {
        char *err = partyd_stderr(server);
        fail_msg("no '%s' in the log:\n%s", room_log_line, err);
    }
}

static void test_idle_room_hibernates_and_a_message_wakes_it(void **state) {
    char id_a[300], id_b[300], *record;
    tconn *a, *b;
    ws_frame f;
    (void)state;

    a = probe_open(port, "sleepy", "_pk=alice&tags=red,blue", id_a);
    b = probe_open(port, "sleepy", "_pk=bob", id_b);
    ws_send_text(a, "state:alice-state");
    ws_send_text(a, "getstate");
    ws_expect_text(a, "state:alice-state");

    /* Nothing happens for a while: the room hibernates with 2 connections. */
    wait_hibernated("room probe/sleepy: hibernated with 2 connections");

    /* A ping is answered by the runtime and does not wake the room. */
    assert_int_equal(ws_send_frame(b, WS_PING, 1, "zz", 2), 0);
    assert_int_equal(ws_recv(b, &f, 5000), 0);
    assert_int_equal(f.opcode, WS_PONG);
    assert_string_equal(f.data, "zz");
    ws_frame_free(&f);

    /* A message wakes it: handled, with the id, tags and state kept. */
    ws_send_text(a, "tags");
    ws_expect_text(a, "tags:alice,red,blue");
    ws_send_text(a, "getstate");
    ws_expect_text(a, "state:alice-state");
    ws_send_text(b, "count:");
    ws_expect_text(b, "count:2");
    ws_send_text(b, "broadcast:good morning");
    ws_expect_text(a, "good morning");

    /* on_start ran twice: once at first, once on the wake-up (the ping did
     * not cause another). */
    record = probe_record(port, "sleepy");
    if (strstr(record, "\"attempts\":2") == NULL)
        fail_msg("expected 2 on_start attempts: %s", record);
    assert_non_null(strstr(record, "\"connections\":2"));
    assert_non_null(strstr(record, "\"name\":\"sleepy\""));
    free(record);
    tconn_close(a);
    tconn_close(b);
}

static void test_close_on_a_hibernated_room_wakes_it_for_on_close(void **state) {
    char id[300];
    tconn *a, *keep;
    (void)state;

    keep = probe_open(port, "closer", "_pk=keeper", NULL);
    a = probe_open(port, "closer", "_pk=leaver", id);
    wait_hibernated("room probe/closer: hibernated with 2 connections");
    assert_int_equal(ws_send_close(a, 4100, "bye"), 0);
    ws_expect_close(a, 4100, "bye");
    tconn_close(a);
    free(probe_expect_record(port, "closer", "close:leaver:4100:bye:1"));
    tconn_close(keep);
}

static int group_setup(void **state) {
    static const char *const args[] = {"--hibernate-after", "1", "--log-level", "debug", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, "PARTYD_PROBE_HIBERNATE");
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_room_hibernates_and_a_message_wakes_it),
        cmocka_unit_test(test_close_on_a_hibernated_room_wakes_it_for_on_close),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
