/* partyd and its --data directory, as real processes: a second partyd on a
 * directory in use exits 1 at once, naming the directory and the holder's
 * pid, without listening, while the first keeps serving the durable
 * counter; the directory is free again once the first stops. A directory
 * that cannot be used stops partyd before it listens, with a message that
 * names it and the OS error. Rooms written just before a kill -9 are found
 * by the next partyd (its list of the rooms that have records, read from
 * the directory, never takes one for new): a room of the shared files
 * (name and count), and a room that opened its own database as a new room
 * (only its own file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

/* A fresh directory for --data, in path (at least 64 bytes). */
static void make_dir(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/partyd-data-XXXXXX");
    if (mkdtemp(path) == NULL)
        fail_msg("mkdtemp failed");
}

/* One counter increment over a new WebSocket: the value partyd answers
 * must be expect. */
static void increment(int port, const char *room, const char *expect) {
    char target[128];
    tconn *c;

    snprintf(target, sizeof(target), "/parties/counter/%s", room);
    c = ws_open(port, target);
    assert_int_equal(ws_send_text(c, "+1"), 0);
    ws_expect_text(c, expect);
    tconn_close(c);
}

static void test_second_partyd_on_a_data_dir_in_use_exits_1_naming_the_holder(void **state) {
    char dir[64], expected[256], *err;
    const char *args[] = {"--data", dir, NULL};
    partyd *first, *again;
    (void)state;

    make_dir(dir, sizeof(dir));
    first = partyd_start(args);
    assert_non_null(first);
    increment(partyd_port(first), "c", "1");

    /* Before the lock, the second served too, and increments sent to the
     * two alternately went 1 2 2 3 3 4: each kept its own count. */
    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 1);
    snprintf(expected, sizeof(expected),
             "partyd: --data %s is in use by another partyd (pid %d; lock file %s/LOCK)", dir,
             partyd_pid(first), dir);
    if (strstr(err, expected) == NULL)
        fail_msg("expected \"%s\" in:\n%s", expected, err);
    assert_null(strstr(err, "listening on"));
    free(err);

    /* The first goes on counting from where it was. */
    increment(partyd_port(first), "c", "2");
    increment(partyd_port(first), "c", "3");
    assert_int_equal(partyd_stop(first), 0);
    partyd_free(first);

    /* Stopped, it let the directory go: the next partyd takes it and
     * finds the count. */
    again = partyd_start(args);
    assert_non_null(again);
    assert_int_equal(counter_expect_count(partyd_port(again), "c"), 3);
    increment(partyd_port(again), "c", "4");
    assert_int_equal(partyd_stop(again), 0);
    partyd_free(again);
    test_remove_tree(dir);
}

static void test_data_dir_below_a_file_exits_1_before_listening(void **state) {
    char dir[64], file[128], data[160], expected[256], *err;
    const char *args[] = {"--data", data, NULL};
    FILE *f;
    (void)state;

    /* A path below a regular file: no one can create it, root included. */
    make_dir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s/file", dir);
    snprintf(data, sizeof(data), "%s/data", file);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 1);
    snprintf(expected, sizeof(expected), "data directory %s: cannot create it: Not a directory",
             data);
    if (strstr(err, expected) == NULL)
        fail_msg("expected \"%s\" in:\n%s", expected, err);
    assert_non_null(strstr(err, "partyd: --data"));
    assert_null(strstr(err, "listening on"));
    free(err);
    test_remove_tree(dir);
}

/* sql:<statements> to a probe room: the answer must be "sql:<expect>". */
static void sql_expect(tconn *c, const char *statements, const char *expect) {
    char want[256];
    assert_int_equal(ws_send_text(c, statements), 0);
    snprintf(want, sizeof(want), "sql:%s", expect);
    ws_expect_text(c, want);
}

static void test_rooms_written_before_a_kill_9_are_found_after_a_restart(void **state) {
    char dir[64], *record;
    const char *args[] = {"--data", dir, NULL};
    partyd *d;
    tconn *c;
    int port;
    (void)state;

    make_dir(dir, sizeof(dir));
    d = partyd_start(args);
    assert_non_null(d);
    port = partyd_port(d);
    increment(port, "kept", "1");
    increment(port, "kept", "2");
    c = probe_open(port, "owndb", NULL, NULL);
    sql_expect(c,
               "sql:CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept');"
               " SELECT v FROM t",
               "kept");
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 128 + SIGKILL);
    tconn_close(c);
    partyd_free(d);

    d = partyd_start(args);
    assert_non_null(d);
    port = partyd_port(d);
    /* Not new rooms: what they had is back, first thing. */
    record = room_expect_record(port, "counter", "kept");
    if (strstr(record, "\"name\":\"kept\"") == NULL || strstr(record, "\"count\":2") == NULL)
        fail_msg("GET /parties/counter/kept after the restart: %s", record);
    free(record);
    increment(port, "kept", "3");
    c = probe_open(port, "owndb", NULL, NULL);
    sql_expect(c, "sql:SELECT v FROM t", "kept");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_partyd_on_a_data_dir_in_use_exits_1_naming_the_holder),
        cmocka_unit_test(test_data_dir_below_a_file_exits_1_before_listening),
        cmocka_unit_test(test_rooms_written_before_a_kill_9_are_found_after_a_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
