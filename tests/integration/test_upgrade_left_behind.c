/* A connection an upgrade leaves behind: a WebSocket whose Close
 * handshake is under way stays with the old process and ends there. Once
 * the new process serves, its room must not run in the old one (its
 * on_close writing the room's records there would make the old process a
 * second writer, and a room's first records written there would be ones
 * the new process's set of rooms with records never saw). The probe room
 * stores the closing connection's id from on_close (state kv-on-close):
 * after the old process has ended, the room the new one serves has no
 * such record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static partyd *served; /* the service, stopped by teardown if a check failed */
static char dir[] = "/tmp/partyd-upleft-XXXXXX";
static char hooks_dir[300];

static int setup(void **state) {
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(hooks_dir, sizeof(hooks_dir), "%s/hooks", dir);
    if (mkdir(hooks_dir, 0700) != 0)
        return -1;
    setenv("PARTYD_TEST_HOOKS", hooks_dir, 1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unsetenv("PARTYD_TEST_HOOKS");
    test_remove_tree(dir);
    return 0;
}

static int stop_served(void **state) {
    char hook[400];
    (void)state;
    tconn_close_all();
    snprintf(hook, sizeof(hook), "%s/hold-adopted", hooks_dir);
    unlink(hook);
    if (served != NULL) {
        static const char mark[] = "upgrade: test hook: process ";
        long pid = partyd_serving_pid(served);
        char *log = partyd_stderr(served), *at = strstr(log, mark);
        /* A new process still held (a check failed before it was ended). */
        long held = at != NULL && strstr(log, "serves as before") == NULL
                        ? strtol(at + sizeof(mark) - 1, NULL, 10)
                        : 0;
        free(log);
        if (pid > 0 && pid != partyd_pid(served))
            kill((pid_t)pid, SIGKILL);
        if (held > 0 && held != partyd_pid(served))
            kill((pid_t)held, SIGKILL);
        partyd_stop(served);
        partyd_free(served);
        served = NULL;
    }
    return 0;
}

static void test_a_room_left_behind_by_an_upgrade_does_not_run_in_the_old_process(void **state) {
    static const char *const args[] = {"--threads", "1", NULL};
    partyd *d = partyd_start(args);
    tconn *closing, *carried;
    char *record;
    int port;
    (void)state;

    assert_non_null(d);
    served = d;
    port = partyd_port(d);
    closing = probe_open(port, "left-behind", NULL, NULL);
    assert_int_equal(ws_send_text(closing, "state:kv-on-close"), 0);
    assert_int_equal(ws_send_text(closing, "getstate"), 0);
    ws_expect_text(closing, "state:kv-on-close");
    carried = probe_open(port, "carried", NULL, NULL);
    /* The room closes it; its Close reply waits: the handshake is under
     * way when the upgrade comes. */
    assert_int_equal(ws_send_text(closing, "close:4000:bye"), 0);
    ws_expect_close(closing, 4000, "bye");

    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "the new process serves now", 60000));
    /* The reply reaches the old process, which then ends. */
    assert_int_equal(ws_send_close(closing, 4000, "bye"), 0);
    tconn_expect_close(closing);
    tconn_close(closing);
    assert_true(partyd_wait_stderr(d, "stopped", 60000));

    record = probe_record(port, "left-behind");
    if (strstr(record, "\"closed\"") != NULL)
        fail_msg("the old process ran the room after the hand-over: %s", record);
    free(record);
    /* The new process serves on. */
    assert_int_equal(ws_send_text(carried, "ping"), 0);
    ws_expect_text(carried, "echo:ping");
    tconn_close(carried);

    assert_int_equal(partyd_stop_upgraded(d), 0);
    partyd_expect_no_sanitizer_report(d);
    served = NULL;
    partyd_free(d);
}

/* The same connection, ended by its close timeout while the old process
 * has handed everything over and waits for "adopted" (the new process
 * serves meanwhile: test hook hold-adopted): its room waits, and, the
 * upgrade done, does not run in the old process. The timeout is long
 * enough for the hand-over to be sent before it ends. */
static void test_a_room_whose_connection_ends_during_the_hand_over_waits_for_its_end(void **state) {
    static const char *const args[] = {"--threads", "1", "--close-timeout", "10", NULL};
    partyd *d = partyd_start(args);
    tconn *closing, *carried;
    char hook[400], *record;
    int port, r;
    (void)state;

    assert_non_null(d);
    served = d;
    port = partyd_port(d);
    closing = probe_open(port, "timed-out", NULL, NULL);
    assert_int_equal(ws_send_text(closing, "state:kv-on-close"), 0);
    assert_int_equal(ws_send_text(closing, "getstate"), 0);
    ws_expect_text(closing, "state:kv-on-close");
    carried = probe_open(port, "carried", NULL, NULL);
    snprintf(hook, sizeof(hook), "%s/hold-adopted", hooks_dir);
    test_write_file(hook, "1\n");
    assert_int_equal(ws_send_text(closing, "close:4000:bye"), 0);
    ws_expect_close(closing, 4000, "bye");

    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "serves before it says adopted", 60000));
    /* No reply: the old process ends the connection at its close timeout. */
    r = tconn_wait_close(closing, 60000, NULL);
    assert_true(r == TC_EOF || r == TC_RESET);
    tconn_close(closing);
    unlink(hook);
    assert_true(partyd_wait_stderr(d, "stopped", 60000));

    record = probe_record(port, "timed-out");
    if (strstr(record, "\"closed\"") != NULL)
        fail_msg("the old process ran the room during the hand-over: %s", record);
    free(record);
    assert_int_equal(ws_send_text(carried, "ping"), 0);
    ws_expect_text(carried, "echo:ping");
    tconn_close(carried);

    assert_int_equal(partyd_stop_upgraded(d), 0);
    partyd_expect_no_sanitizer_report(d);
    served = NULL;
    partyd_free(d);
}

/* The same, but the new process dies before it says adopted: the old
 * one serves again, and the room whose event waited runs then (its
 * on_close write is there). */
static void test_a_room_whose_connection_ends_during_a_failed_hand_over_runs_after(void **state) {
    static const char *const args[] = {"--threads", "1", "--close-timeout", "10", NULL};
    partyd *d = partyd_start(args);
    tconn *closing;
    char hook[400], *record;
    const char *mark = "upgrade: test hook: process ";
    char *log, *at;
    long pid;
    int port, r;
    (void)state;

    assert_non_null(d);
    served = d;
    port = partyd_port(d);
    closing = probe_open(port, "timed-out-failed", NULL, NULL);
    assert_int_equal(ws_send_text(closing, "state:kv-on-close"), 0);
    assert_int_equal(ws_send_text(closing, "getstate"), 0);
    ws_expect_text(closing, "state:kv-on-close");
    snprintf(hook, sizeof(hook), "%s/hold-adopted", hooks_dir);
    test_write_file(hook, "1\n");
    assert_int_equal(ws_send_text(closing, "close:4000:bye"), 0);
    ws_expect_close(closing, 4000, "bye");

    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "serves before it says adopted", 60000));
    r = tconn_wait_close(closing, 60000, NULL);
    assert_true(r == TC_EOF || r == TC_RESET);
    tconn_close(closing);
    log = partyd_stderr(d);
    at = strstr(log, mark);
    pid = at != NULL ? strtol(at + strlen(mark), NULL, 10) : 0;
    free(log);
    assert_true(pid > 0 && pid != partyd_pid(d));
    kill((pid_t)pid, SIGKILL);
    unlink(hook);
    assert_true(partyd_wait_stderr(d, "serves as before; SIGUSR2 may try again", 60000));

    record = probe_expect_record(port, "timed-out-failed", "\"closed\"");
    free(record);
    assert_int_equal(partyd_stop(d), 0);
    partyd_expect_no_sanitizer_report(d);
    served = NULL;
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_a_room_left_behind_by_an_upgrade_does_not_run_in_the_old_process, stop_served),
        cmocka_unit_test_teardown(
            test_a_room_whose_connection_ends_during_the_hand_over_waits_for_its_end, stop_served),
        cmocka_unit_test_teardown(
            test_a_room_whose_connection_ends_during_a_failed_hand_over_runs_after, stop_served),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
