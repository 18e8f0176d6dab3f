/* Rooms written by a new process that took over and died: after an
 * upgrade fails once the hand-over was sent, the old process serves again
 * from a data directory the new one may have written to. A room the new
 * process created (the old one never loaded it, so the old one's set of
 * rooms with records lacks it) must be read back with its records, not
 * taken for a new room and overwritten. The new process serves before it
 * says "adopted" (test hook hold-adopted: as when the old process gives
 * up waiting just as the new one begins to serve), a client writes a new
 * room through it, then it is killed. An alarm a room set through the new
 * process (a room the old one never loaded) fires in the old one, with
 * the room's name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>

#include <cmocka.h>

#include "client.h"

static partyd *served; /* the service, stopped by teardown if a check failed */

static int stop_served(void **state) {
    (void)state;
    partyd_upgrade_cleanup(&served, "hold-adopted");
    return 0;
}

/* partyd with threads loops and an idle connection (*idle) the hand-over
 * carries, upgraded (SIGUSR2) under the test hook hold-adopted: the new
 * process serves before it says adopted. Its pid into *held. */
static partyd *start_with_a_held_new_process(const char *threads, tconn **idle, long *held) {
    const char *const args[] = {"--threads", threads, NULL};
    partyd *d = partyd_expect_start(args, &served);

    *idle = ws_open(partyd_port(d), "/parties/counter/known");
    assert_non_null(*idle);
    test_hook_set("hold-adopted", "1\n");
    partyd_signal(d, SIGUSR2);
    *held = partyd_held_pid(d);
    return d;
}

/* Kills the held new process: the old one serves again. */
static void kill_held(partyd *d, long held) {
    kill((pid_t)held, SIGKILL);
    assert_true(partyd_wait_stderr(d, "serves as before; SIGUSR2 may try again", 60000));
}

/* Three messages to a counter room: each answer comes after its commit. */
static void count_to_three(int port, const char *room) {
    static const char *const counts[] = {"1", "2", "3"};
    char target[128];
    tconn *c;
    size_t i;

    snprintf(target, sizeof(target), "/parties/counter/%s", room);
    c = ws_open(port, target);
    assert_non_null(c);
    for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        assert_int_equal(ws_send_text(c, "+"), 0);
        ws_expect_text(c, counts[i]);
    }
    tconn_close(c);
}

static void rooms_of_a_dead_new_process_are_read_back(const char *threads) {
    char room[64], target[128];
    tconn *idle, *c;
    long held;
    /* A connection the hand-over carries, and rooms the old process knows. */
    partyd *d = start_with_a_held_new_process(threads, &idle, &held);
    int port = partyd_port(d), i;

    /* Rooms no process has loaded before: the new one creates them. */
    for (i = 0; i < 4; i++) {
        snprintf(room, sizeof(room), "born-in-new-%d", i);
        count_to_three(port, room);
    }
    kill_held(d, held);

    /* The old process serves them with what the new one wrote. */
    for (i = 0; i < 4; i++) {
        snprintf(room, sizeof(room), "born-in-new-%d", i);
        assert_int_equal(counter_expect_count(port, room), 3);
    }
    snprintf(target, sizeof(target), "/parties/counter/%s", "born-in-new-0");
    c = ws_open(port, target);
    assert_non_null(c);
    assert_int_equal(ws_send_text(c, "+"), 0);
    ws_expect_text(c, "4");
    tconn_close(c);
    /* The connection the new process never took goes on in the old one. */
    assert_int_equal(ws_send_text(idle, "+"), 0);
    ws_expect_text(idle, "1");
    tconn_close(idle);

    partyd_expect_clean_stop(&served, 0);
}

/* The reminder's record of the room's alarm having fired, with its name. */
static const char alarm_fired[] = "\"name\":\"alarm\",\"room\":\"wake-late\"";

static void alarm_set_by_a_dead_new_process_fires(const char *threads) {
    char *body;
    http_response res;
    tconn *idle, *c;
    long held;
    partyd *d = start_with_a_held_new_process(threads, &idle, &held);
    int port = partyd_port(d);

    /* The new process files the alarm (in its heap and the alarm index);
     * the room's connection is gone before it is killed. */
    http_expect_request(port, "POST", "/parties/reminder/wake-late?alarm_in=3000", NULL, "p", 1,
                        &res);
    assert_int_equal(res.status, 201);
    http_response_free(&res);
    kill_held(d, held);

    /* Loading the room does not wake it: only the heap does. Either the
     * alarm fired before the connection joined (the record has it) or its
     * broadcast reaches the connection. */
    c = ws_open(port, "/parties/reminder/wake-late");
    assert_non_null(c);
    body = room_expect_record(port, "reminder", "wake-late");
    if (strstr(body, alarm_fired) == NULL) {
        ws_frame f;
        int r = 0, seen = 0;
        /* A failure's deadline, not a measure: the alarm is due 3 s after
         * it was set. */
        int64_t give_up = test_now_ms() + 30000, left;
        free(body);
        /* Pings and other text may come first. */
        while (!seen && (left = give_up - test_now_ms()) > 0 &&
               (r = ws_recv(c, &f, (int)left)) == 0) {
            int opcode = f.opcode;
            seen = opcode == WS_TEXT && strstr(f.data, alarm_fired) != NULL;
            ws_frame_free(&f);
            if (opcode == WS_CLOSE)
                fail_msg("the room's connection closed before its alarm fired");
        }
        if (!seen)
            fail_msg("the alarm of room wake-late did not fire (%d)", r);
        body = NULL;
    }
    free(body);
    tconn_close(c);
    body = room_expect_record(port, "reminder", "wake-late");
    assert_non_null(strstr(body, alarm_fired));
    free(body);
    tconn_close(idle);

    partyd_expect_clean_stop(&served, 0);
}

static void test_an_alarm_a_dead_new_process_set_fires(void **state) {
    (void)state;
    alarm_set_by_a_dead_new_process_fires("1");
}

static void test_an_alarm_a_dead_new_process_set_fires_with_two_loops(void **state) {
    (void)state;
    alarm_set_by_a_dead_new_process_fires("2");
}

static void test_rooms_a_dead_new_process_wrote_are_read_back(void **state) {
    (void)state;
    rooms_of_a_dead_new_process_are_read_back("1");
}

static void test_rooms_a_dead_new_process_wrote_are_read_back_with_two_loops(void **state) {
    (void)state;
    rooms_of_a_dead_new_process_are_read_back("2");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_rooms_a_dead_new_process_wrote_are_read_back, stop_served),
        cmocka_unit_test_teardown(test_rooms_a_dead_new_process_wrote_are_read_back_with_two_loops,
                                  stop_served),
        cmocka_unit_test_teardown(test_an_alarm_a_dead_new_process_set_fires, stop_served),
        cmocka_unit_test_teardown(test_an_alarm_a_dead_new_process_set_fires_with_two_loops,
                                  stop_served),
    };
    return cmocka_run_group_tests(tests, test_hooks_group_setup, test_hooks_group_teardown);
}
