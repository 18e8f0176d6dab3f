/* Several event-loop threads (--threads 4) in a real partyd: every room
 * lives on exactly one loop whatever connection or request reaches it, a
 * socket handed between loops keeps every byte of what it sent (pipelined
 * requests, chunked bodies, frames behind the handshake), and the metrics
 * and the room listing see the rooms of every loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

#define ROOMS 24

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {"--threads", "4", "--admin-token", "sesame", NULL};
    (void)state;
    if (partyd_group_start(&server, &port, args, NULL) != 0)
        return -1;
    return partyd_wait_stderr(server, "4 event loops", TC_TIMEOUT_MS) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* A room reached by many connections, one after another and at once, is
 * one room: a counter counts every message exactly once. If two loops
 * each held a copy of a room, counts would diverge or a commit would
 * fail. */
static void test_each_room_counts_every_message_once_whatever_loop_accepted_it(void **state) {
    tconn *conns[ROOMS][3];
    int r, k, round;
    (void)state;

    for (r = 0; r < ROOMS; r++)
        for (k = 0; k < 3; k++) {
            char target[64];
            snprintf(target, sizeof(target), "/parties/counter/t-count-%d", r);
            conns[r][k] = ws_open(port, target);
        }
    /* Three messages per connection, the connections of a room taking
     * turns, so every room's messages come from three sockets. */
    for (round = 0; round < 3; round++)
        for (r = 0; r < ROOMS; r++)
            for (k = 0; k < 3; k++) {
                ws_frame f;
                assert_int_equal(ws_send_text(conns[r][k], "+"), 0);
                assert_int_equal(ws_recv(conns[r][k], &f, TC_TIMEOUT_MS), 0);
                assert_int_equal(f.opcode, WS_TEXT);
                ws_frame_free(&f);
            }
    for (r = 0; r < ROOMS; r++)
        for (k = 0; k < 3; k++)
            tconn_close(conns[r][k]);
    for (r = 0; r < ROOMS; r++) {
        char room[32];
        snprintf(room, sizeof(room), "t-count-%d", r);
        assert_int_equal(counter_expect_count(port, room), 9);
    }
}

/* One keep-alive connection whose requests go to rooms on different loops:
 * each answer comes back, in order, with its own room's name. */
static void test_pipelined_requests_to_rooms_on_every_loop_are_answered_in_order(void **state) {
    char requests[ROOMS * 128];
    size_t n = 0;
    tconn *c = tconn_open(port, 0);
    int i;
    (void)state;

    assert_non_null(c);
    for (i = 0; i < ROOMS; i++)
        n += (size_t)snprintf(requests + n, sizeof(requests) - n,
                              "GET /parties/probe/t-pipe-%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    assert_int_equal(tconn_send(c, requests, n), 0);
    probe_expect_pipelined_records(c, "t-pipe-", ROOMS);
    tconn_close(c);
}

/* partyd_connections_requests_total, read from the metrics (whose request
 * counts itself). */
static long requests_parsed(void) {
    return (long)metrics_get(port, "partyd_connections_requests_total");
}

/* A chunked body was decoded in place by the loop that read it; the loop
 * that serves the room gets the whole body, and what was pipelined behind
 * it. The request travels parsed: each one is parsed once, by the loop
 * that read it, whichever loop answers it. */
static void test_chunked_bodies_reach_rooms_on_other_loops_intact_and_parsed_once(void **state) {
    long before = requests_parsed();
    int i;
    (void)state;

    for (i = 0; i < ROOMS; i++) {
        char request[512];
        http_response res;
        tconn *c = tconn_open(port, 0);

        assert_non_null(c);
        snprintf(request, sizeof(request),
                 "POST /parties/probe/t-chunk-%d HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld%d\r\n0\r\nX-Trailer: t\r\n\r\n"
                 "GET /parties/probe/t-chunk-next-%d HTTP/1.1\r\nHost: x\r\n"
                 "Connection: close\r\n\r\n",
                 i, i % 10, i);
        assert_int_equal(tconn_send_str(c, request), 0);
        assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
        assert_int_equal(res.status, 201);
        {
            char want[32];
            snprintf(want, sizeof(want), "hello world%d", i % 10);
            assert_string_equal(res.body, want);
        }
        http_response_free(&res);
        assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
        assert_int_equal(res.status, 200);
        {
            char name[48];
            snprintf(name, sizeof(name), "\"name\":\"t-chunk-next-%d\"", i);
            assert_non_null(strstr(res.body, name));
        }
        http_response_free(&res);
        tconn_expect_close(c);
        tconn_close(c);
    }
    /* Two requests a connection, and the second scrape. */
    assert_int_equal(requests_parsed() - before, 2 * ROOMS + 1);
}

/* Frames sent in the same write as the handshake travel with the socket
 * to the room's loop. */
static void test_frames_behind_the_handshake_follow_the_socket(void **state) {
    int i;
    (void)state;

    for (i = 0; i < ROOMS; i++) {
        char target[64], frame[64];
        http_response res;
        tconn *c = tconn_open(port, 0);
        size_t len;

        assert_non_null(c);
        snprintf(target, sizeof(target), "/parties/echo/t-behind-%d", i);
        len = ws_encode_frame(frame, 0x80 | WS_TEXT, 1, "early", 5);
        assert_int_equal(ws_handshake(c, target, NULL, frame, len, &res), 0);
        http_response_free(&res);
        ws_expect_text(c, "early");
        tconn_close(c);
    }
}

/* The metrics and the listing add up the rooms of every loop. */
static void test_metrics_and_room_listing_cover_every_loop(void **state) {
    tconn *conns[ROOMS];
    http_response res;
    char *body;
    int i;
    (void)state;

    for (i = 0; i < ROOMS; i++) {
        char room[32];
        snprintf(room, sizeof(room), "t-list-%d", i);
        conns[i] = probe_open(port, room, NULL, NULL);
    }
    http_expect_request(port, "GET", "/_partyd/rooms", "Authorization: Bearer sesame\r\n", NULL, 0,
                        &res);
    assert_int_equal(res.status, 200);
    body = res.body;
    for (i = 0; i < ROOMS; i++) {
        char name[48];
        const char *hit;
        snprintf(name, sizeof(name), "\"name\":\"t-list-%d\"", i);
        hit = strstr(body, name);
        if (hit == NULL)
            fail_msg("room t-list-%d missing from the listing: %s", i, body);
        if (strstr(hit + 1, name) != NULL)
            fail_msg("room t-list-%d listed twice: %s", i, body);
    }
    http_response_free(&res);

    http_expect_get(port, "/_partyd/metrics", &res);
    assert_int_equal(res.status, 200);
    /* Our connections, plus the one asking. */
    if (metrics_value(res.body, "partyd_connections_open") < ROOMS + 1)
        fail_msg("%s", res.body);
    assert_int_equal(metrics_value(res.body, "partyd_runtime_event_loops"), 4);
    if (metrics_value(res.body, "partyd_rooms_known{state=\"awake\"}") < ROOMS)
        fail_msg("%s", res.body);
    http_response_free(&res);
    for (i = 0; i < ROOMS; i++)
        tconn_close(conns[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_room_counts_every_message_once_whatever_loop_accepted_it),
        cmocka_unit_test(test_pipelined_requests_to_rooms_on_every_loop_are_answered_in_order),
        cmocka_unit_test(test_chunked_bodies_reach_rooms_on_other_loops_intact_and_parsed_once),
        cmocka_unit_test(test_frames_behind_the_handshake_follow_the_socket),
        cmocka_unit_test(test_metrics_and_room_listing_cover_every_loop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
