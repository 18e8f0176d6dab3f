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

#include <cmocka.h>

#include "client.h"

static partyd *served; /* the service, stopped by teardown if a check failed */

static int stop_served(void **state) {
    (void)state;
    partyd_upgrade_cleanup(&served, "hold-adopted");
    return 0;
}

/* A probe connection to room whose room stores the closing connection's
 * id from on_close (state kv-on-close). */
static tconn *open_storing_on_close(int port, const char *room) {
    tconn *c = probe_open(port, room, NULL, NULL);
    assert_int_equal(ws_send_text(c, "state:kv-on-close"), 0);
    assert_int_equal(ws_send_text(c, "getstate"), 0);
    ws_expect_text(c, "state:kv-on-close");
    return c;
}

/* The room closes c; its Close reply waits: the handshake is under way. */
static void begin_close(tconn *c) {
    assert_int_equal(ws_send_text(c, "close:4000:bye"), 0);
    ws_expect_close(c, 4000, "bye");
}

/* After the old process has ended: room's on_close did not run there
 * (when: during what it would have run), and the carried connection is
 * served on by the new process. */
static void expect_room_left_to_the_new_process(int port, const char *room, const char *when,
                                                tconn *carried) {
    char *record = probe_record(port, room);
    if (strstr(record, "\"closed\"") != NULL)
        fail_msg("the old process ran the room %s: %s", when, record);
    free(record);
    /* The new process serves on. */
    assert_int_equal(ws_send_text(carried, "ping"), 0);
    ws_expect_text(carried, "echo:ping");
    tconn_close(carried);
}

static void test_a_room_left_behind_by_an_upgrade_does_not_run_in_the_old_process(void **state) {
    static const char *const args[] = {"--threads", "1", NULL};
    partyd *d = partyd_expect_start(args, &served);
    int port = partyd_port(d);
    tconn *closing = open_storing_on_close(port, "left-behind");
    tconn *carried = probe_open(port, "carried", NULL, NULL);
    (void)state;

    /* Its Close handshake is under way when the upgrade comes. */
    begin_close(closing);
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "the new process serves now", 60000));
    /* The reply reaches the old process, which then ends. */
    assert_int_equal(ws_send_close(closing, 4000, "bye"), 0);
    tconn_expect_close(closing);
    tconn_close(closing);
    assert_true(partyd_wait_stderr(d, "stopped", 60000));

    expect_room_left_to_the_new_process(port, "left-behind", "after the hand-over", carried);
    partyd_expect_clean_stop(&served, 1);
}

/* The same connection, ended by its close timeout while the old process
 * has handed everything over and waits for "adopted" (the new process
 * serves meanwhile: test hook hold-adopted): its room waits, and, the
 * upgrade done, does not run in the old process. The timeout is long
 * enough for the hand-over to be sent before it ends. */
static void test_a_room_whose_connection_ends_during_the_hand_over_waits_for_its_end(void **state) {
    static const char *const args[] = {"--threads", "1", "--close-timeout", "10", NULL};
    partyd *d = partyd_expect_start(args, &served);
    int port = partyd_port(d), r;
    tconn *closing = open_storing_on_close(port, "timed-out");
    tconn *carried = probe_open(port, "carried", NULL, NULL);
    (void)state;

    test_hook_set("hold-adopted", "1\n");
    begin_close(closing);
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "serves before it says adopted", 60000));
    /* No reply: the old process ends the connection at its close timeout. */
    r = tconn_wait_close(closing, 60000, NULL);
    assert_true(r == TC_EOF || r == TC_RESET);
    tconn_close(closing);
    test_hook_clear("hold-adopted");
    assert_true(partyd_wait_stderr(d, "stopped", 60000));

    expect_room_left_to_the_new_process(port, "timed-out", "during the hand-over", carried);
    partyd_expect_clean_stop(&served, 1);
}

/* The same, but the new process dies before it says adopted: the old
 * one serves again, and the room whose event waited runs then (its
 * on_close write is there). */
static void test_a_room_whose_connection_ends_during_a_failed_hand_over_runs_after(void **state) {
    static const char *const args[] = {"--threads", "1", "--close-timeout", "10", NULL};
    partyd *d = partyd_expect_start(args, &served);
    int port = partyd_port(d), r;
    tconn *closing = open_storing_on_close(port, "timed-out-failed");
    long held;
    (void)state;

    test_hook_set("hold-adopted", "1\n");
    begin_close(closing);
    partyd_signal(d, SIGUSR2);
    held = partyd_held_pid(d);
    r = tconn_wait_close(closing, 60000, NULL);
    assert_true(r == TC_EOF || r == TC_RESET);
    tconn_close(closing);
    kill((pid_t)held, SIGKILL);
    test_hook_clear("hold-adopted");
    assert_true(partyd_wait_stderr(d, "serves as before; SIGUSR2 may try again", 60000));

    free(probe_expect_record(port, "timed-out-failed", "\"closed\""));
    partyd_expect_clean_stop(&served, 0);
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
    return cmocka_run_group_tests(tests, test_hooks_group_setup, test_hooks_group_teardown);
}
