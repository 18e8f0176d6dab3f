/* Keepalive in a real partyd process (--ping-interval 0.5, --close-timeout
 * 1): a WebSocket silent for an interval is pinged; one that stays silent
 * another interval gets Close 1001 "ping timeout" and, not answering that
 * either, loses its TCP connection, with on_close(1006) in its room. One
 * that answers pings, or that talks on its own, stays. Pings do not wake a
 * hibernated room (the probe party hibernates here, after 0.5 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* The ping interval: 0.5 s, longer under valgrind, where a stall of a
 * whole interval would look like a silent client. */
static int interval_ms = 500;

static partyd *server;
static int port;

static int group_setup(void **state) {
    static char interval[16];
    static const char *args[] = {"--ping-interval",
                                 interval,
                                 "--close-timeout",
                                 "1",
                                 "--hibernate-after",
                                 "0.5",
                                 "--log-level",
                                 "debug",
                                 NULL};
    (void)state;
    interval_ms = 500 * test_slow_factor();
    snprintf(interval, sizeof(interval), "%.1f", interval_ms / 1000.0);
    return partyd_group_start(&server, &port, args, "PARTYD_PROBE_HIBERNATE");
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Reads frames until ms have passed: answers pings (when answer is set),
 * fails on a Close or a lost connection. Returns the pings seen. */
static int stay_for(tconn *c, int ms, int answer) {
    int64_t until = test_now_ms() + ms;
    int pings = 0;
    for (;;) {
        int left = (int)(until - test_now_ms());
        ws_frame f;
        int r;
        if (left <= 0)
            return pings;
        r = ws_recv(c, &f, left);
        if (r == TC_TIMEOUT)
            return pings;
        if (r != 0)
            fail_msg("connection lost (%d) while it kept the connection alive", r);
        if (f.opcode == WS_CLOSE)
            fail_msg("closed with %d \"%s\" though it answered", f.close_code, f.reason);
        if (f.opcode == WS_PING) {
            pings++;
            if (answer && ws_send_frame(c, WS_PONG, 1, f.data, f.len) != 0)
                fail_msg("cannot answer a ping");
        }
        ws_frame_free(&f);
    }
}

static void test_silent_client_is_pinged_then_closed_with_1001(void **state) {
    tconn *c = probe_open(port, "silent", "_pk=silent", NULL);
    int64_t opened = test_now_ms(), pinged_at, closed_at;
    char *record;
    ws_frame f;
    (void)state;

    /* A ping first (the greeting was read by probe_open). */
    assert_int_equal(ws_recv(c, &f, 4 * interval_ms), 0);
    assert_int_equal(f.opcode, WS_PING);
    ws_frame_free(&f);
    pinged_at = test_now_ms();
    /* Not answered: Close 1001 at the next sweep. */
    assert_int_equal(ws_recv(c, &f, 4 * interval_ms), 0);
    closed_at = test_now_ms();
    assert_int_equal(f.opcode, WS_CLOSE);
    assert_int_equal(f.close_code, 1001);
    assert_string_equal(f.reason, "ping timeout");
    ws_frame_free(&f);
    printf("  pinged after %lld ms, closed %lld ms later\n", (long long)(pinged_at - opened),
           (long long)(closed_at - pinged_at));
    /* A whole interval between the ping and the close. */
    assert_true(closed_at - pinged_at >= interval_ms - 100);
    /* Not answering the Close either: the TCP connection ends after
     * --close-timeout, and the room hears of an unclean close. */
    tconn_expect_close(c);
    tconn_close(c);
    record = probe_expect_record(port, "silent", "\"close:silent:1006::0\"");
    free(record);
    assert_true(partyd_wait_stderr(server, "conn silent: no answer to a ping", TC_TIMEOUT_MS));
    partyd_expect_healthy(port);
}

static void test_client_that_answers_pings_stays_open(void **state) {
    tconn *c = probe_open(port, "answering", "_pk=answering", NULL);
    int pings;
    (void)state;

    /* Four intervals: long enough to be closed twice over if pongs did not
     * count. */
    pings = stay_for(c, 4 * interval_ms, 1);
    printf("  answered %d pings\n", pings);
    assert_true(pings >= 2);
    assert_int_equal(ws_send_text(c, "still open"), 0);
    /* A sweep may ping between the last pong and this message (the client
     * was silent meanwhile): answered like the others, not an error. */
    for (;;) {
        ws_frame f;
        int r = ws_recv(c, &f, 60000);
        if (r != 0)
            fail_msg("no echo of \"still open\" (%d)", r);
        if (f.opcode == WS_PING) {
            if (ws_send_frame(c, WS_PONG, 1, f.data, f.len) != 0)
                fail_msg("cannot answer a ping");
            ws_frame_free(&f);
            continue;
        }
        if (f.opcode != WS_TEXT || f.len != 15 || memcmp(f.data, "echo:still open", 15) != 0)
            fail_msg("expected the echo of \"still open\", got opcode %d", f.opcode);
        ws_frame_free(&f);
        break;
    }
    tconn_close(c);
}

static void test_client_that_talks_is_never_pinged(void **state) {
    tconn *c = probe_open(port, "talking", "_pk=talking", NULL);
    int64_t until = test_now_ms() + 4 * interval_ms;
    int i = 0;
    (void)state;

    /* A message every fifth of an interval: always heard, never pinged. */
    while (test_now_ms() < until) {
        char text[32], echo[48];
        snprintf(text, sizeof(text), "m%d", i++);
        assert_int_equal(ws_send_text(c, text), 0);
        snprintf(echo, sizeof(echo), "echo:%s", text);
        ws_expect_text(c, echo); /* a ping here would fail this */
        assert_int_equal(stay_for(c, interval_ms / 5, 0), 0);
    }
    tconn_close(c);
}

static void test_pings_do_not_wake_a_hibernated_room(void **state) {
    tconn *c = probe_open(port, "napping", "_pk=napper", NULL);
    char *record;
    int pings;
    (void)state;

    if (!partyd_wait_stderr(server, "room probe/napping: hibernated with 1 connections", 8000))
        fail_msg("the room never hibernated");
    pings = stay_for(c, 4 * interval_ms, 1);
    assert_true(pings >= 2);
    /* Its first wake-up is this message: on_start ran twice in all (once
     * at first, once now); a ping that woke it would have made it three. */
    assert_int_equal(ws_send_text(c, "good morning"), 0);
    ws_expect_text(c, "echo:good morning");
    record = probe_record(port, "napping");
    if (strstr(record, "\"attempts\":2") == NULL)
        fail_msg("expected 2 on_start attempts: %s", record);
    free(record);
    tconn_close(c);
}

static void test_ping_interval_flag_is_checked(void **state) {
    static const char *const bad[] = {"--ping-interval", "-1", NULL};
    static const char *const off[] = {"--ping-interval", "0", NULL};
    partyd *d;
    (void)state;

    d = partyd_spawn(bad);
    assert_non_null(d);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 2);
    assert_true(partyd_wait_stderr(d, "--ping-interval", 1000));
    partyd_free(d);
    d = partyd_start(off);
    assert_non_null(d);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silent_client_is_pinged_then_closed_with_1001),
        cmocka_unit_test(test_client_that_answers_pings_stays_open),
        cmocka_unit_test(test_client_that_talks_is_never_pinged),
        cmocka_unit_test(test_pings_do_not_wake_a_hibernated_room),
        cmocka_unit_test(test_ping_interval_flag_is_checked),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests_name("keepalive", tests, group_setup, group_teardown);
}
