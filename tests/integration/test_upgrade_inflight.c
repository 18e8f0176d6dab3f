/* HTTP requests caught by an upgrade (SIGUSR2) with two loops. One in
 * flight (its room holds its answer on the loop that is not the main
 * thread's) with another pipelined behind it, for a room of the other
 * loop: when the upgrade fails after the freeze (the new process dies
 * while it adopts the connections: test hook die-after), the old process
 * answers both, in order. Many requests pipelined on each of several
 * connections, alternating between a room of each loop (each answer hands
 * the connection to the other loop while the loops drain): every answer
 * comes, in order, whether the upgrade fails or succeeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static partyd *served; /* the service, stopped by teardown if a check failed */

/* After each test: what a failed check left running goes, the process
 * an upgrade started too (it holds partyd's stderr open). */
static int stop_served(void **state) {
    (void)state;
    partyd_upgrade_cleanup(&served, "die-after");
    return 0;
}

/* Reads one response from c: its status and body must be these. */
static void expect_response(tconn *c, int status, const char *body_part) {
    http_response res;
    int r = http_read_response(c, 0, &res, 60000);
    if (r != 0)
        fail_msg("no answer (%d), expecting %d with %s", r, status, body_part);
    if (res.status != status || strstr(res.body, body_part) == NULL)
        fail_msg("expected %d with %s, got %d: %s", status, body_part, res.status, res.body);
    http_response_free(&res);
}

/* Finds a probe room on the main thread's loop (main != 0) or on the
 * other one: GET /hold?offmain=1 answers 409 at once on the main thread,
 * and holds elsewhere (released at once by an existing file). Its name
 * into name. */
static void room_on(partyd *d, int main, const char *prefix, char *name, size_t size) {
    char req[512], released[400];
    int i;

    snprintf(released, sizeof(released), "%s/released", test_tmp_dir());
    test_write_file(released, "");
    for (i = 0; i < 64; i++) {
        tconn *c = tconn_open(partyd_port(d), 0);
        http_response res;
        assert_non_null(c);
        snprintf(name, size, "%s-%d", prefix, i);
        snprintf(req, sizeof(req),
                 "GET /parties/probe/%s/hold?offmain=1&until=%s HTTP/1.1\r\nHost: x\r\n"
                 "Connection: close\r\n\r\n",
                 name, released);
        assert_int_equal(tconn_send_str(c, req), 0);
        assert_int_equal(http_read_response(c, 0, &res, 30000), 0);
        tconn_close(c);
        if ((res.status == 409) == (main != 0)) {
            http_response_free(&res);
            unlink(released);
            return;
        }
        http_response_free(&res);
    }
    fail_msg("no room of prefix %s on the %s loop", prefix, main ? "main" : "other");
}

/* Sends a request that holds its answer on the other loop until the file
 * release exists, with a GET of a room on the main loop pipelined behind
 * it in the same write; waits until the first one is held. */
static tconn *send_held_and_pipelined(partyd *d, const char *held, const char *after,
                                      const char *release) {
    char req[1024], needle[128];
    tconn *c = tconn_open(partyd_port(d), 0);

    assert_non_null(c);
    snprintf(req, sizeof(req),
             "GET /parties/probe/%s/hold?until=%s HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /parties/probe/%s HTTP/1.1\r\nHost: x\r\n\r\n",
             held, release, after);
    snprintf(needle, sizeof(needle), "probe: hold %s: holding", held);
    assert_int_equal(tconn_send_str(c, req), 0);
    assert_true(partyd_wait_stderr(d, needle, 30000));
    return c;
}

/* An idle keep-alive connection: the hand-over has at least one record
 * to carry (the die-after hook counts records). */
static tconn *idle_keepalive(partyd *d) {
    tconn *c = tconn_open(partyd_port(d), 0);
    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/idle HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    expect_response(c, 200, "\"idle\"");
    return c;
}

/* partyd with two loops (stopped by stop_served if a check fails), the
 * names of a probe room on each (64 bytes each) and an idle keep-alive
 * connection (*idle). die: the next upgrade's new process dies before it
 * adopts the first record (test hook die-after). */
static partyd *start_two_loops(char *on_main, char *off_main, tconn **idle, int die) {
    static const char *const args[] = {"--threads", "2", NULL};
    partyd *d = partyd_expect_start(args, &served);

    room_on(d, 1, "main", on_main, 64);
    room_on(d, 0, "other", off_main, 64);
    *idle = idle_keepalive(d);
    if (die)
        test_hook_set("die-after", "0\n");
    return d;
}

static void test_requests_in_flight_and_pipelined_at_a_failed_upgrade_are_answered(void **state) {
    char held[64], after[64], release[400], *log;
    tconn *c, *idle;
    partyd *d = start_two_loops(after, held, &idle, 1);
    (void)state;

    snprintf(release, sizeof(release), "%s/release-failed", test_tmp_dir());
    c = send_held_and_pipelined(d, held, after, release);

    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "upgrade: the new process is ready", 60000));
    test_write_file(release, "");
    assert_true(partyd_wait_stderr(d, "serves as before; SIGUSR2 may try again", 60000));

    expect_response(c, 200, "released");
    expect_response(c, 200, after);
    /* The connections go on serving. */
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/again HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    expect_response(c, 200, "\"again\"");
    assert_int_equal(tconn_send_str(idle, "GET /parties/probe/idle HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    expect_response(idle, 200, "\"idle\"");
    tconn_close(c);
    tconn_close(idle);

    log = partyd_stderr(d);
    assert_non_null(strstr(log, "dies after 0 of"));
    free(log);
    partyd_expect_clean_stop(&served, 0);
}

/* Connections with many requests pipelined in one write, alternating
 * between a room of each loop, sent while an upgrade (failing when fail)
 * begins: each request's answer hands the connection to the other loop
 * for the next, while the loops drain. Every answer comes, in order. */
static void pipelined_across_loops_at_an_upgrade(int fail) {
    enum { CONNS = 12, REQUESTS = 50 };
    char on_main[64], off_main[64], req[REQUESTS * 96];
    tconn *c[CONNS], *idle;
    partyd *d = start_two_loops(on_main, off_main, &idle, fail);
    size_t used;
    int i, k;

    for (k = 0; k < CONNS; k++) {
        c[k] = tconn_open(partyd_port(d), 0);
        assert_non_null(c[k]);
    }
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "upgrade: SIGUSR2", 60000));
    for (k = 0; k < CONNS; k++) {
        for (i = 0, used = 0; i < REQUESTS; i++)
            used += (size_t)snprintf(req + used, sizeof(req) - used,
                                     "GET /parties/probe/%s?n=%d-%d HTTP/1.1\r\nHost: x\r\n\r\n",
                                     i % 2 ? on_main : off_main, k, i);
        assert_int_equal(tconn_send(c[k], req, used), 0);
    }
    for (k = 0; k < CONNS; k++)
        for (i = 0; i < REQUESTS; i++) {
            char url[160];
            snprintf(url, sizeof(url), "\"url\":\"/parties/probe/%s?n=%d-%d\"",
                     i % 2 ? on_main : off_main, k, i);
            expect_response(c[k], 200, url);
        }
    assert_true(partyd_wait_stderr(
        d, fail ? "serves as before; SIGUSR2 may try again" : "; serving (pid ", 60000));
    /* The connections go on. */
    for (k = 0; k < CONNS; k++) {
        assert_int_equal(
            tconn_send_str(c[k], "GET /parties/probe/again HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
        expect_response(c[k], 200, "\"again\"");
        tconn_close(c[k]);
    }
    tconn_close(idle);
    partyd_expect_clean_stop(&served, !fail);
}

static void test_requests_pipelined_across_loops_at_a_failed_upgrade_are_answered(void **state) {
    (void)state;
    pipelined_across_loops_at_an_upgrade(1);
}

static void test_requests_pipelined_across_loops_at_an_upgrade_are_answered(void **state) {
    (void)state;
    pipelined_across_loops_at_an_upgrade(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_requests_in_flight_and_pipelined_at_a_failed_upgrade_are_answered, stop_served),
        cmocka_unit_test_teardown(
            test_requests_pipelined_across_loops_at_a_failed_upgrade_are_answered, stop_served),
        cmocka_unit_test_teardown(test_requests_pipelined_across_loops_at_an_upgrade_are_answered,
                                  stop_served),
    };
    return cmocka_run_group_tests(tests, test_hooks_group_setup, test_hooks_group_teardown);
}
