/* The WebSocket close handshake end to end, from both sides: the reply to a
 * peer's Close, server-initiated closes through the probe's "close:" command,
 * transport drops, and on_close called exactly once with the right code,
 * reason and was_clean. partyd runs with --close-timeout 1. */
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
    static const char *const args[] = {"--close-timeout", "1", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Waits for the room's record to hold entry (quoted), then checks it is the
 * only on_close of that id. */
static void expect_single_close_entry(const char *room, const char *id, const char *entry) {
    char needle[512], prefix[300];
    char *record;
    snprintf(needle, sizeof(needle), "\"%s\"", entry);
    snprintf(prefix, sizeof(prefix), "\"close:%s:", id);
    record = probe_expect_record(port, room, needle);
    if (count_occurrences(record, prefix) != 1)
        fail_msg("room %s: on_close of %s is not reported exactly once: %s", room, id, record);
    free(record);
}

static void test_client_close_is_echoed_with_its_code_and_reason(void **state) {
    tconn *c = probe_open(port, "cc1", "_pk=c1", NULL);
    (void)state;
    assert_int_equal(ws_send_close(c, 4321, "bye"), 0);
    ws_expect_close(c, 4321, "bye");
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("cc1", "c1", "close:c1:4321:bye:1");
}

static void test_client_close_1000_without_reason_is_echoed(void **state) {
    tconn *c = probe_open(port, "cc2", "_pk=c2", NULL);
    (void)state;
    assert_int_equal(ws_send_close(c, 1000, ""), 0);
    ws_expect_close(c, 1000, "");
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("cc2", "c2", "close:c2:1000::1");
}

static void test_client_close_with_123_byte_reason_is_echoed_whole(void **state) {
    char reason[124], entry[200];
    tconn *c = probe_open(port, "cc3", "_pk=c3", NULL);
    (void)state;
    memset(reason, 'r', 123);
    reason[123] = '\0';
    assert_int_equal(ws_send_close(c, 3000, reason), 0);
    ws_expect_close(c, 3000, reason);
    tconn_expect_close(c);
    tconn_close(c);
    snprintf(entry, sizeof(entry), "close:c3:3000:%s:1", reason);
    expect_single_close_entry("cc3", "c3", entry);
}

static void test_client_close_without_code_gets_empty_close_and_1005(void **state) {
    tconn *c = probe_open(port, "cc4", "_pk=c4", NULL);
    ws_frame f;
    (void)state;
    assert_int_equal(ws_send_close(c, 0, NULL), 0);
    assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
    assert_int_equal(f.opcode, WS_CLOSE);
    assert_int_equal(f.len, 0); /* 1005 is never sent on the wire */
    ws_frame_free(&f);
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("cc4", "c4", "close:c4:1005::1");
}

static void test_tcp_drop_without_close_reports_1006_unclean(void **state) {
    tconn *c = probe_open(port, "cc5", "_pk=c5", NULL);
    (void)state;
    tconn_close(c);
    expect_single_close_entry("cc5", "c5", "close:c5:1006::0");
}

static void test_tcp_reset_reports_1006_unclean(void **state) {
    tconn *c = probe_open(port, "cc6", "_pk=c6", NULL);
    (void)state;
    tconn_reset(c);
    expect_single_close_entry("cc6", "c6", "close:c6:1006::0");
}

static void test_server_initiated_close_completes_cleanly(void **state) {
    tconn *c = probe_open(port, "sc1", "_pk=s1", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "close:4000:done"), 0);
    ws_expect_close(c, 4000, "done");
    assert_int_equal(ws_send_close(c, 4000, "done"), 0);
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("sc1", "s1", "close:s1:4000:done:1");
}

static void test_server_close_reply_with_another_code_is_what_on_close_sees(void **state) {
    tconn *c = probe_open(port, "sc2", "_pk=s2", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "close:1000:bye"), 0);
    ws_expect_close(c, 1000, "bye");
    assert_int_equal(ws_send_close(c, 1001, "leaving"), 0);
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("sc2", "s2", "close:s2:1001:leaving:1");
}

static void test_server_close_with_123_byte_reason_is_sent_whole(void **state) {
    char command[200], reason[124];
    tconn *c = probe_open(port, "sc3", "_pk=s3", NULL);
    (void)state;
    memset(reason, 'q', 123);
    reason[123] = '\0';
    snprintf(command, sizeof(command), "close:4001:%s", reason);
    assert_int_equal(ws_send_text(c, command), 0);
    ws_expect_close(c, 4001, reason);
    assert_int_equal(ws_send_close(c, 4001, ""), 0);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_server_close_with_reason_over_123_bytes_is_refused(void **state) {
    char command[200];
    tconn *c = probe_open(port, "sc4", "_pk=s4", NULL);
    int n;
    (void)state;
    n = snprintf(command, sizeof(command), "close:4001:");
    memset(command + n, 'q', 124);
    command[n + 124] = '\0';
    assert_int_equal(ws_send_text(c, command), 0);
    ws_expect_text(c, "error:invalid argument");
    assert_int_equal(ws_send_text(c, "still open"), 0);
    ws_expect_text(c, "echo:still open");
    tconn_close(c);
}

static void test_server_close_with_code_not_sendable_is_refused(void **state) {
    static const char *const commands[] = {"close:1005:x", "close:1006:x", "close:1015:x",
                                           "close:1004:x", "close:999:x",  "close:2999:x",
                                           "close:5000:x", "close:0:x"};
    tconn *c = probe_open(port, "sc5", "_pk=s5", NULL);
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        assert_int_equal(ws_send_text(c, commands[i]), 0);
        ws_expect_text(c, "error:invalid argument");
    }
    assert_int_equal(ws_send_text(c, "still open"), 0);
    ws_expect_text(c, "echo:still open");
    tconn_close(c);
}

static void test_server_close_without_reply_times_out_as_1006(void **state) {
    tconn *c = probe_open(port, "sc6", "_pk=s6", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "close:4002:waiting"), 0);
    ws_expect_close(c, 4002, "waiting");
    /* No reply: after close_timeout (1 s) the server drops the transport. */
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("sc6", "s6", "close:s6:1006::0");
}

static void test_messages_after_client_close_are_not_delivered(void **state) {
    char frames[64];
    size_t n;
    tconn *c = probe_open(port, "after1", "_pk=a1", NULL);
    (void)state;
    n = ws_encode_frame(frames, 0x80 | WS_CLOSE, 1, "\x03\xE8", 2);
    n += ws_encode_frame(frames + n, 0x81, 1, "late", 4);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_close(c, 1000, "");
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("after1", "a1", "close:a1:1000::1");
}

static void test_messages_after_server_close_are_dropped(void **state) {
    char frames[64];
    size_t n;
    tconn *c = probe_open(port, "after2", "_pk=a2", NULL);
    (void)state;
    n = ws_encode_frame(frames, 0x81, 1, "close:4003:x", 12);
    n += ws_encode_frame(frames + n, 0x81, 1, "late", 4);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_close(c, 4003, "x");
    assert_int_equal(ws_send_close(c, 4003, "x"), 0);
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("after2", "a2", "close:a2:4003:x:1");
}

static void test_client_close_during_a_fragmented_message_drops_it(void **state) {
    tconn *c = probe_open(port, "after3", "_pk=a3", NULL);
    (void)state;
    assert_int_equal(ws_send_frame(c, WS_TEXT, 0, "unfinished", 10), 0);
    assert_int_equal(ws_send_close(c, 4004, "abandon"), 0);
    ws_expect_close(c, 4004, "abandon");
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("after3", "a3", "close:a3:4004:abandon:1");
}

static void test_on_close_is_called_once_when_close_is_followed_by_reset(void **state) {
    tconn *c = probe_open(port, "once1", "_pk=o1", NULL);
    tconn *sync;
    char *record;
    (void)state;
    assert_int_equal(ws_send_close(c, 4005, "then reset"), 0);
    tconn_reset(c);
    /* A second connection closed afterwards: once its entry is there, any
     * late duplicate for the first would be too. */
    sync = probe_open(port, "once1", "_pk=o1sync", NULL);
    assert_int_equal(ws_send_close(sync, 1000, ""), 0);
    ws_expect_close(sync, 1000, "");
    tconn_expect_close(sync);
    tconn_close(sync);
    expect_single_close_entry("once1", "o1sync", "close:o1sync:1000::1");
    /* The reset may destroy the Close before the server reads it, so the
     * code may be 4005 or 1006; either way, once. */
    record = probe_expect_record(port, "once1", "\"close:o1:");
    assert_int_equal(count_occurrences(record, "\"close:o1:"), 1);
    free(record);
}

static void test_on_close_is_called_once_when_server_close_crosses_client_close(void **state) {
    char frames[64];
    size_t n;
    tconn *c = probe_open(port, "once2", "_pk=o2", NULL);
    (void)state;
    /* Both sides start closing at once. */
    n = ws_encode_frame(frames, 0x81, 1, "close:4006:server", 17);
    n += ws_encode_frame(frames + n, 0x80 | WS_CLOSE, 1,
                         "\x0F\xA7"
                         "client",
                         8);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_close(c, 4006, "server");
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("once2", "o2", "close:o2:4007:client:1");
}

/* After the server's Close it still reads, waiting for the reply; a
 * protocol error then must not queue a second Close (RFC 6455 5.5.1). */
static void test_protocol_error_after_server_close_sends_no_second_close(void **state) {
    tconn *c = probe_open(port, "twice", "_pk=t1", NULL);
    (void)state;
    assert_int_equal(ws_send_text(c, "close:4008:first"), 0);
    ws_expect_close(c, 4008, "first");
    assert_int_equal(ws_send_raw_frame(c, 0x81, 0, "unmasked", 8), 0);
    tconn_expect_close(c);
    tconn_close(c);
    expect_single_close_entry("twice", "t1", "close:t1:1002:unmasked frame from a client:0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_close_is_echoed_with_its_code_and_reason),
        cmocka_unit_test(test_client_close_1000_without_reason_is_echoed),
        cmocka_unit_test(test_client_close_with_123_byte_reason_is_echoed_whole),
        cmocka_unit_test(test_client_close_without_code_gets_empty_close_and_1005),
        cmocka_unit_test(test_tcp_drop_without_close_reports_1006_unclean),
        cmocka_unit_test(test_tcp_reset_reports_1006_unclean),
        cmocka_unit_test(test_server_initiated_close_completes_cleanly),
        cmocka_unit_test(test_server_close_reply_with_another_code_is_what_on_close_sees),
        cmocka_unit_test(test_server_close_with_123_byte_reason_is_sent_whole),
        cmocka_unit_test(test_server_close_with_reason_over_123_bytes_is_refused),
        cmocka_unit_test(test_server_close_with_code_not_sendable_is_refused),
        cmocka_unit_test(test_server_close_without_reply_times_out_as_1006),
        cmocka_unit_test(test_messages_after_client_close_are_not_delivered),
        cmocka_unit_test(test_messages_after_server_close_are_dropped),
        cmocka_unit_test(test_client_close_during_a_fragmented_message_drops_it),
        cmocka_unit_test(test_on_close_is_called_once_when_close_is_followed_by_reset),
        cmocka_unit_test(test_on_close_is_called_once_when_server_close_crosses_client_close),
        cmocka_unit_test(test_protocol_error_after_server_close_sends_no_second_close),
    };
    return cmocka_run_group_tests_name("ws_close", tests, group_setup, group_teardown);
}
