/* Room-to-room requests in a real partyd: a probe room asks another room
 * (of probe, or of the built-in parties) over party_room_fetch from
 * on_message, and sends the answer it receives in on_response back to its
 * WebSocket client. A request in flight when partyd is killed, or when it
 * upgrades (SIGUSR2), is answered aborted, once, by the caller's next
 * incarnation (DESIGN.md D4): the target holds its answer (probe's
 * GET /hold blocks its loop until a file exists). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>

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

#define ABORTED "response:0:"

static void test_request_in_flight_when_killed_is_answered_aborted_after_restart(void **state) {
    char data[] = "/tmp/partyd-fetch-kill-XXXXXX", fetch[256], *record;
    const char *args[] = {"--data", data, NULL};
    partyd *d;
    tconn *c;
    (void)state;

    assert_non_null(mkdtemp(data));
    d = partyd_start(args);
    assert_non_null(d);
    c = probe_open(partyd_port(d), "caller", NULL, NULL);
    /* The target never answers (the file never appears): the request is
     * in flight when partyd is killed. */
    snprintf(fetch, sizeof(fetch), "fetch:probe/held/hold?until=%s/never", data);
    ws_send_text(c, fetch);
    assert_true(partyd_wait_stderr(d, "probe: hold held: holding", 30000));
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, 10000), 128 + SIGKILL);
    tconn_close(c);
    partyd_free(d);

    /* The caller's next incarnation answers it aborted, before the GET. */
    d = partyd_start(args);
    assert_non_null(d);
    record = probe_record(partyd_port(d), "caller");
    if (count_occurrences(record, ABORTED) != 1 || strstr(record, "in flight") == NULL)
        fail_msg("not one aborted answer in %s", record);
    free(record);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);

    /* Once: the run after has nothing left to answer. */
    d = partyd_start(args);
    assert_non_null(d);
    record = probe_record(partyd_port(d), "caller");
    if (strstr(record, ABORTED) != NULL)
        fail_msg("answered again: %s", record);
    free(record);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(data);
}

/* D4 across an upgrade: the target holds its answer on a loop other than
 * the main thread's (which handles the signal), until the new process is
 * ready and the loops freeze; the request is then dropped by the old
 * process and answered aborted by the caller's incarnation in the new
 * one. */
static void
test_request_in_flight_at_an_upgrade_is_answered_aborted_by_the_new_process(void **state) {
    char dir[] = "/tmp/partyd-fetch-upgrade-XXXXXX", release[128], fetch[256], needle[64], *record,
         *log, *seen;
    const char *args[] = {"--threads", "2", NULL};
    partyd *d;
    tconn *c;
    int i, fd, held = 0;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(release, sizeof(release), "%s/release", dir);
    d = partyd_start(args);
    assert_non_null(d);
    c = probe_open(partyd_port(d), "caller", NULL, NULL);
    /* Rooms are spread over the two loops by id: try names until one
     * lives off the main thread. */
    for (i = 0; i < 64 && !held; i++) {
        snprintf(fetch, sizeof(fetch), "fetch:probe/held-%d/hold?offmain=1&until=%s", i, release);
        ws_send_text(c, fetch);
        snprintf(needle, sizeof(needle), "probe: hold held-%d: ", i);
        assert_true(partyd_wait_stderr(d, needle, 30000));
        snprintf(needle, sizeof(needle), "probe: hold held-%d: holding", i);
        log = partyd_stderr(d);
        held = strstr(log, needle) != NULL;
        free(log);
        if (!held) {
            seen = ws_expect_text_prefix(c, "response:409:");
            free(seen);
        }
    }
    assert_true(held);
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "upgrade: the new process is ready", 60000));
    fd = open(release, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_true(partyd_wait_stderr(d, "; serving (pid ", 60000));

    record = probe_record(partyd_port(d), "caller");
    if (count_occurrences(record, ABORTED) != 1 || strstr(record, "in flight") == NULL)
        fail_msg("not one aborted answer in %s", record);
    free(record);
    tconn_close(c);
    assert_int_equal(partyd_stop_upgraded(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_of_another_room_reaches_the_caller),
        cmocka_unit_test(test_hooks_are_skipped_between_rooms),
        cmocka_unit_test(test_unknown_party_and_failed_start_are_answers),
        cmocka_unit_test(test_network_client_cannot_send_the_room_header),
        cmocka_unit_test(test_request_in_flight_when_killed_is_answered_aborted_after_restart),
        cmocka_unit_test(
            test_request_in_flight_at_an_upgrade_is_answered_aborted_by_the_new_process),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
