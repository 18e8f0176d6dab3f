/* Send-queue limits end to end: a client that asks for more than it reads is
 * dropped once its unsent bytes would pass --send-queue-bytes (1 MiB here),
 * the log names the limit, the room hears on_error and on_close, and other
 * clients are unaffected. A reader that keeps up is never dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define REPLY_BYTES 600000

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {"--send-queue-bytes", "1M", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Opens a probe connection with a small receive window, so the server's
 * output piles up in its send queue instead of in this socket. */
static tconn *open_slow_at(int at_port, const char *room, const char *id) {
    char target[256];
    http_response res;
    tconn *c = tconn_open(at_port, 4096);
    char *hello;

    assert_non_null(c);
    snprintf(target, sizeof(target), "/parties/probe/%s?_pk=%s", room, id);
    assert_int_equal(ws_handshake(c, target, NULL, NULL, 0, &res), 0);
    http_response_free(&res);
    hello = ws_expect_text_prefix(c, "hello:");
    free(hello);
    return c;
}

static tconn *open_slow(const char *room, const char *id) {
    return open_slow_at(port, room, id);
}

/* Asks for REPLY_BYTES at a time without reading until the server logs that
 * it drops this connection for send_queue_bytes. Three asks pass the limit
 * unless the kernel's socket buffers soak up part of the replies, so it
 * goes on (at most 12 asks, 7.2 MB: more than any default buffering). */
static void overrun(tconn *slow, const char *id) {
    char needle[200];
    int i;
    snprintf(needle, sizeof(needle), "conn %s: send queue would exceed send_queue_bytes", id);
    for (i = 0; i < 12; i++) {
        if (ws_send_text(slow, "big:600000") != 0)
            break; /* already dropped */
        if (i >= 2 && partyd_wait_stderr(server, needle, 200))
            return;
    }
    if (!partyd_wait_stderr(server, needle, TC_TIMEOUT_MS))
        fail_msg("partyd never logged \"%s\"", needle);
}

static void test_slow_reader_is_dropped_when_its_queue_passes_the_limit(void **state) {
    tconn *slow = open_slow("slow1", "slowpoke");
    tconn *other;
    size_t received = 0;
    char *record;
    int r;
    (void)state;

    overrun(slow, "slowpoke");
    /* What was already in flight may arrive; then the connection ends. */
    r = tconn_wait_close(slow, TC_TIMEOUT_MS, &received);
    if (r == TC_TIMEOUT)
        fail_msg("the slow reader was not disconnected (%zu bytes received)", received);
    tconn_close(slow);

    record = probe_expect_record(port, "slow1", "\"close:slowpoke:1006::0\"");
    assert_non_null(strstr(record, "\"error:slowpoke:"));
    assert_int_equal(count_occurrences(record, "\"close:slowpoke:"), 1);
    free(record);

    other = probe_open(port, "elsewhere", NULL, NULL);
    assert_int_equal(ws_send_text(other, "still serving"), 0);
    ws_expect_text(other, "echo:still serving");
    tconn_close(other);
}

static void test_slow_reader_does_not_hold_back_others_in_its_room(void **state) {
    tconn *slow = open_slow("slow2", "laggard");
    tconn *fast = probe_open(port, "slow2", "_pk=fast", NULL);
    size_t received = 0;
    (void)state;

    overrun(slow, "laggard");
    assert_int_equal(ws_send_text(fast, "quick"), 0);
    ws_expect_text(fast, "echo:quick");
    assert_int_not_equal(tconn_wait_close(slow, TC_TIMEOUT_MS, &received), TC_TIMEOUT);
    assert_int_equal(ws_send_text(fast, "count:"), 0);
    ws_expect_text(fast, "count:1");
    tconn_close(slow);
    tconn_close(fast);
}

static void test_reader_that_keeps_up_is_never_dropped(void **state) {
    tconn *c = probe_open(port, "fast1", "_pk=keeper", NULL);
    ws_frame f;
    int i;
    (void)state;

    /* 5 x 600,000 bytes in all, but never more than one reply queued. */
    for (i = 0; i < 5; i++) {
        assert_int_equal(ws_send_text(c, "big:600000"), 0);
        assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
        assert_int_equal(f.opcode, WS_TEXT);
        assert_int_equal(f.len, REPLY_BYTES);
        ws_frame_free(&f);
    }
    assert_int_equal(ws_send_text(c, "done"), 0);
    ws_expect_text(c, "echo:done");
    tconn_close(c);
}

/* Output the socket cannot take yet waits for it, and none is lost: a
 * reader that asks for more than the kernel buffers (16 MB; a loopback
 * socket holds up to 4 MiB by default) before it reads gets every reply,
 * whole and in order. Its own partyd, with room for it all queued. */
static void test_reader_that_pauses_gets_every_byte_in_order(void **state) {
    static const char *const args[] = {"--send-queue-bytes", "64M", NULL};
    static const size_t sizes[] = {1000000, 17,      1000000, 1000000, 1000000, 1000000,
                                   1000000, 1000000, 1000000, 1000000, 1000000, 1000000,
                                   1000000, 1000000, 1000000, 1000000, 1000000, 5};
    partyd *d = partyd_start(args);
    tconn *c;
    ws_frame f;
    size_t i, j;
    (void)state;

    assert_non_null(d);
    c = open_slow_at(partyd_port(d), "pause1", "pauser");
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char ask[32];
        snprintf(ask, sizeof(ask), "big:%zu", sizes[i]);
        assert_int_equal(ws_send_text(c, ask), 0);
    }
    assert_int_equal(ws_send_text(c, "after"), 0);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
        assert_int_equal(f.opcode, WS_TEXT);
        assert_int_equal(f.len, sizes[i]);
        for (j = 0; j < f.len && f.data[j] == 'x'; j++)
            ;
        assert_int_equal(j, sizes[i]);
        ws_frame_free(&f);
    }
    ws_expect_text(c, "echo:after");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_reader_is_dropped_when_its_queue_passes_the_limit),
        cmocka_unit_test(test_slow_reader_does_not_hold_back_others_in_its_room),
        cmocka_unit_test(test_reader_that_keeps_up_is_never_dropped),
        cmocka_unit_test(test_reader_that_pauses_gets_every_byte_in_order),
    };
    return cmocka_run_group_tests_name("slow_reader", tests, group_setup, group_teardown);
}
