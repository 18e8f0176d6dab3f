/* partyd as a command: flags, loading parties from shared objects, exit
 * statuses and messages for bad input, and graceful shutdown on SIGTERM.
 * Each test runs its own partyd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* Runs partyd with args to completion (it must exit by itself within the
 * timeout) and returns its exit status; *out and *err get its output. */
static int run_to_exit(const char *const *args, char **out, char **err) {
    partyd *d = partyd_spawn(args);
    int status;
    assert_non_null(d);
    status = partyd_wait_exit(d, TC_TIMEOUT_MS);
    *out = partyd_stdout(d);
    *err = partyd_stderr(d);
    partyd_free(d);
    if (status == TC_TIMEOUT)
        fail_msg("partyd did not exit; stderr:\n%s", *err);
    return status;
}

static void test_greeter_party_loads_from_a_shared_object(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *a, *b;
    (void)state;

    assert_non_null(d);
    a = ws_open(partyd_port(d), "/parties/greeter/x?name=bob");
    ws_expect_text(a, "hello bob, welcome to x");
    b = ws_open(partyd_port(d), "/parties/greeter/x?name=amy");
    ws_expect_text(b, "hello amy, welcome to x");
    ws_expect_text(a, "amy joined");
    tconn_close(a);
    tconn_close(b);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_missing_party_object_exits_nonzero_naming_the_file(void **state) {
    static const char *const args[] = {"--party", "bad=/nonexistent.so", NULL};
    char *out, *err;
    int status;
    (void)state;

    status = run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    if (strstr(err, "/nonexistent.so") == NULL)
        fail_msg("the error does not name the file: %s", err);
    assert_null(strstr(err, "listening on"));
    free(out);
    free(err);
}

static void test_object_without_party_module_exits_nonzero(void **state) {
    /* libc is a shared object, but it exports no party_module. */
    static const char *const args[] = {"--party", "bad=libc.so.6", NULL};
    char *out, *err;
    int status;
    (void)state;

    status = run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(err, "party_module"));
    free(out);
    free(err);
}

static void test_party_spec_without_a_name_exits_nonzero(void **state) {
    static const char *const args[] = {"--party", GREETER_PARTY_PATH, NULL};
    char *out, *err;
    int status;
    (void)state;

    status = run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(err, "NAME=PATH"));
    free(out);
    free(err);
}

static void test_duplicate_party_name_exits_nonzero(void **state) {
    /* "probe" is already loaded by the default arguments. */
    static const char *const args[] = {"--party", "PROBE=" GREETER_PARTY_PATH, NULL};
    char *out, *err;
    int status;
    (void)state;

    status = run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(err, "already registered"));
    free(out);
    free(err);
}

static void test_non_numeric_port_exits_2(void **state) {
    static const char *const args[] = {"--port", "abc", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(run_to_exit(args, &out, &err), 2);
    assert_non_null(strstr(err, "--port"));
    assert_non_null(strstr(err, "abc"));
    free(out);
    free(err);
}

static void test_bad_flag_values_exit_2(void **state) {
    static const char *const cases[][3] = {
        {"--port", "70000", NULL},         {"--max-message-bytes", "12Q", NULL},
        {"--max-body-bytes", "0", NULL},   {"--send-queue-bytes", "-1", NULL},
        {"--close-timeout", "soon", NULL}, {"--log-level", "loud", NULL},
        {"--no-such-flag", NULL, NULL},    {"stray-argument", NULL, NULL},
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        int status = run_to_exit(cases[i], &out, &err);
        if (status != 2)
            fail_msg("%s %s: exit status %d, expected 2", cases[i][0],
                     cases[i][1] ? cases[i][1] : "", status);
        if (err[0] == '\0')
            fail_msg("%s: no message on stderr", cases[i][0]);
        free(out);
        free(err);
    }
}

static void test_help_exits_0_and_prints_usage(void **state) {
    static const char *const args[] = {"--help", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(run_to_exit(args, &out, &err), 0);
    assert_non_null(strstr(out, "usage: partyd"));
    assert_non_null(strstr(out, "--send-queue-bytes"));
    free(out);
    free(err);
}

static void test_version_prints_the_version(void **state) {
    static const char *const args[] = {"--version", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(run_to_exit(args, &out, &err), 0);
    assert_string_equal(out, "partyd 0.2.0\n");
    free(out);
    free(err);
}

static void test_port_in_use_exits_nonzero(void **state) {
    partyd *first = partyd_start(NULL);
    char port_text[16];
    const char *args[] = {"--port", port_text, NULL};
    char *out, *err;
    int status;
    (void)state;

    assert_non_null(first);
    snprintf(port_text, sizeof(port_text), "%d", partyd_port(first));
    status = run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(err, port_text));
    free(out);
    free(err);
    assert_int_equal(partyd_group_stop(first), 0);
}

static void test_max_room_conns_refuses_extra_connections_with_503(void **state) {
    static const char *const args[] = {"--max-room-conns", "2", NULL};
    partyd *d = partyd_start(args);
    http_response res;
    tconn *a, *b, *c, *other;
    (void)state;

    assert_non_null(d);
    a = probe_open(partyd_port(d), "full", NULL, NULL);
    b = probe_open(partyd_port(d), "full", NULL, NULL);
    c = tconn_open(partyd_port(d), 0);
    assert_int_equal(ws_handshake(c, "/parties/probe/full", NULL, NULL, 0, &res), 503);
    assert_non_null(strstr(res.body, "max_room_conns"));
    http_response_free(&res);
    tconn_close(c);
    assert_true(partyd_wait_stderr(d, "max_room_conns", TC_TIMEOUT_MS));
    /* Another room is not full. */
    other = probe_open(partyd_port(d), "notfull", NULL, NULL);
    /* A place freed is a place taken again. */
    assert_int_equal(ws_send_close(b, 1000, ""), 0);
    ws_expect_close(b, 1000, "");
    tconn_expect_close(b);
    tconn_close(b);
    b = probe_open(partyd_port(d), "full", NULL, NULL);
    tconn_close(a);
    tconn_close(b);
    tconn_close(other);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_sigterm_closes_websockets_with_1001_and_exits_0(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *a, *b;
    char *record_err;
    (void)state;

    assert_non_null(d);
    a = probe_open(partyd_port(d), "shutdown", NULL, NULL);
    b = ws_open(partyd_port(d), "/parties/echo/shutdown");
    partyd_signal(d, SIGTERM);
    ws_expect_close(a, 1001, NULL);
    ws_expect_close(b, 1001, NULL);
    /* It waits for the answers: still running until both reply. */
    assert_int_equal(partyd_wait_exit(d, 200), TC_TIMEOUT);
    assert_int_equal(ws_send_close(a, 1001, ""), 0);
    tconn_expect_close(a);
    assert_int_equal(ws_send_close(b, 1001, ""), 0);
    tconn_expect_close(b);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 0);
    record_err = partyd_stderr(d);
    assert_non_null(strstr(record_err, "SIGTERM"));
    free(record_err);
    tconn_close(a);
    tconn_close(b);
    partyd_free(d);
}

static void test_sigterm_exits_0_even_if_a_client_never_answers(void **state) {
    static const char *const args[] = {"--close-timeout", "0.5", NULL};
    partyd *d = partyd_start(args);
    tconn *mute;
    (void)state;

    assert_non_null(d);
    mute = probe_open(partyd_port(d), "mute", NULL, NULL);
    partyd_signal(d, SIGTERM);
    ws_expect_close(mute, 1001, NULL);
    /* No reply: the close timeout drops it, and partyd still exits 0. */
    tconn_expect_close(mute);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 0);
    tconn_close(mute);
    partyd_free(d);
}

static void test_sigterm_refuses_new_connections_while_closing(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *a, *late;
    int port;
    (void)state;

    assert_non_null(d);
    port = partyd_port(d);
    a = probe_open(port, "shutdown2", NULL, NULL);
    partyd_signal(d, SIGTERM);
    ws_expect_close(a, 1001, NULL);
    /* The listener is closed: a new connection is refused or dropped. */
    late = tconn_open(port, 0);
    if (late != NULL) {
        http_response res;
        assert_int_equal(tconn_send_str(late, "GET /parties/probe/x HTTP/1.1\r\nHost: x\r\n\r\n"),
                         0);
        assert_int_not_equal(http_read_response(late, 0, &res, TC_TIMEOUT_MS), 0);
        tconn_close(late);
    }
    assert_int_equal(ws_send_close(a, 1001, ""), 0);
    tconn_expect_close(a);
    tconn_close(a);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 0);
    partyd_free(d);
}

static void test_sigint_with_idle_http_connection_exits_0(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *idle;
    http_response res;
    (void)state;

    assert_non_null(d);
    idle =
        http_expect_raw(partyd_port(d), "GET /parties/probe/i HTTP/1.1\r\nHost: x\r\n\r\n", &res);
    http_response_free(&res);
    partyd_signal(d, SIGINT);
    tconn_expect_close(idle);
    tconn_close(idle);
    assert_int_equal(partyd_wait_exit(d, TC_TIMEOUT_MS), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeter_party_loads_from_a_shared_object),
        cmocka_unit_test(test_missing_party_object_exits_nonzero_naming_the_file),
        cmocka_unit_test(test_object_without_party_module_exits_nonzero),
        cmocka_unit_test(test_party_spec_without_a_name_exits_nonzero),
        cmocka_unit_test(test_duplicate_party_name_exits_nonzero),
        cmocka_unit_test(test_non_numeric_port_exits_2),
        cmocka_unit_test(test_bad_flag_values_exit_2),
        cmocka_unit_test(test_help_exits_0_and_prints_usage),
        cmocka_unit_test(test_version_prints_the_version),
        cmocka_unit_test(test_port_in_use_exits_nonzero),
        cmocka_unit_test(test_max_room_conns_refuses_extra_connections_with_503),
        cmocka_unit_test(test_sigterm_closes_websockets_with_1001_and_exits_0),
        cmocka_unit_test(test_sigterm_exits_0_even_if_a_client_never_answers),
        cmocka_unit_test(test_sigterm_refuses_new_connections_while_closing),
        cmocka_unit_test(test_sigint_with_idle_http_connection_exits_0),
    };
    return cmocka_run_group_tests_name("partyd_cli", tests, NULL, NULL);
}
