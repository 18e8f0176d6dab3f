/* Alarms and schedules in a real partyd process, across kill -9: an alarm
 * set 2 s ahead fires after a restart 5 s later, on a room that is not in
 * memory, and knows the room's name; an every-second schedule keeps firing
 * after the restart. Uses the built-in reminder party over HTTP. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static char data_dir[] = "/tmp/partyd-alarms-XXXXXX";

static partyd *start_on(const char *dir) {
    /* A second --data wins over the client's own fresh one. */
    const char *args[] = {"--data", dir, NULL};
    partyd *d = partyd_start(args);
    if (d == NULL)
        fail_msg("partyd did not start on %s", dir);
    return d;
}

static void post(int port, const char *target) {
    http_response res;
    http_expect_request(port, "POST", target, NULL, "p", 1, &res);
    if (res.status != 201)
        fail_msg("POST %s: %d %s", target, res.status, res.body);
    http_response_free(&res);
}

/* Polls the room until its record contains needle count times (each poll
 * is a real request; the deadline bounds the wait). */
static char *wait_fired(int port, const char *room, const char *needle, size_t count,
                        int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    for (;;) {
        char *body = room_expect_record(port, "reminder", room);
        if (count_occurrences(body, needle) >= count)
            return body;
        if (test_now_ms() > deadline)
            fail_msg("room %s: '%s' did not fire %zu times within %d ms: %s", room, needle, count,
                     timeout_ms, body);
        free(body);
        usleep(100 * 1000); /* the alarm's own timer is what we wait for */
    }
}

static void test_alarm_fires_on_a_cold_room_after_kill_and_restart(void **state) {
    partyd *d;
    char *body;
    (void)state;

    d = start_on(data_dir);
    post(partyd_port(d), "/parties/reminder/wake-me?alarm_in=2000");
    post(partyd_port(d), "/parties/reminder/ticker?every=1000&name=tick");
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, 5000), 128 + SIGKILL);
    partyd_free(d);

    sleep(5); /* partyd is down while the alarm comes due */
    d = start_on(data_dir);
    /* Fires right after start-up, before any request reaches the room. */
    assert_true(partyd_wait_stderr(d, "alarm index: 2 rooms to wake", 5000));
    body =
        wait_fired(partyd_port(d), "wake-me", "\"name\":\"alarm\",\"room\":\"wake-me\"", 1, 5000);
    free(body);
    /* The every-second schedule keeps going after the restart. */
    body = wait_fired(partyd_port(d), "ticker", "\"name\":\"tick\",\"room\":\"ticker\"", 3, 8000);
    free(body);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_cancelled_schedule_does_not_fire(void **state) {
    partyd *d;
    http_response res;
    char target[256], *body, *id;
    (void)state;

    d = start_on(data_dir);
    http_expect_request(partyd_port(d), "POST", "/parties/reminder/cancel-me?in=1000&name=never",
                        NULL, NULL, 0, &res);
    assert_int_equal(res.status, 201);
    id = strstr(res.body, "\"id\":\"");
    assert_non_null(id);
    id += 6;
    id[32] = '\0';
    snprintf(target, sizeof(target), "/parties/reminder/cancel-me?id=%s", id);
    http_response_free(&res);
    http_expect_request(partyd_port(d), "DELETE", target, NULL, NULL, 0, &res);
    assert_int_equal(res.status, 204);
    http_response_free(&res);
    /* A later one-shot in the same room fires, the cancelled one never did. */
    post(partyd_port(d), "/parties/reminder/cancel-me?in=1500&name=later");
    body = wait_fired(partyd_port(d), "cancel-me", "\"name\":\"later\",\"room\"", 1, 5000);
    assert_null(strstr(body, "\"name\":\"never\""));
    free(body);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static int group_setup(void **state) {
    (void)state;
    return mkdtemp(data_dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    test_remove_tree(data_dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alarm_fires_on_a_cold_room_after_kill_and_restart),
        cmocka_unit_test(test_cancelled_schedule_does_not_fire),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
