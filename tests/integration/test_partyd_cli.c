/* partyd as a command: flags, loading parties from shared objects, which
 * built-ins are served, the listen address, exit statuses and messages for
 * bad input, the start-up log, and graceful shutdown on SIGTERM. Each test
 * runs its own partyd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

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

static void test_missing_party_object_exits_1_naming_the_file(void **state) {
    static const char *const args[] = {"--party", "bad=/nonexistent.so", NULL};
    char *out, *err;
    int status;
    (void)state;

    /* A file that cannot be loaded is a failure at run time, not a usage
     * error. */
    status = partyd_run_to_exit(args, &out, &err);
    assert_int_equal(status, 1);
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

    status = partyd_run_to_exit(args, &out, &err);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(err, "party_module"));
    free(out);
    free(err);
}

static void test_party_spec_without_a_name_exits_2(void **state) {
    static const char *const args[] = {"--party", GREETER_PARTY_PATH, NULL};
    char *out, *err;
    int status;
    (void)state;

    status = partyd_run_to_exit(args, &out, &err);
    assert_int_equal(status, 2);
    assert_non_null(strstr(err, "NAME=PATH"));
    free(out);
    free(err);
}

static void test_invalid_party_name_exits_2_with_only_its_own_message(void **state) {
    static const char *const args[] = {"--party", "bad name=" GREETER_PARTY_PATH, NULL};
    char *out, *err;
    int status;
    (void)state;

    status = partyd_run_to_exit(args, &out, &err);
    assert_int_equal(status, 2);
    if (strstr(err, "'bad name' is not a valid party name") == NULL)
        fail_msg("the error does not name the party: %s", err);
    /* Once, every such failure was also reported as a TLS one. */
    if (strstr(err, "TLS") != NULL || count_occurrences(err, "partyd:") != 1)
        fail_msg("more than the one message: %s", err);
    free(out);
    free(err);
}

static void test_duplicate_party_name_exits_2(void **state) {
    /* "probe" is already loaded by the default arguments. */
    static const char *const args[] = {"--party", "PROBE=" GREETER_PARTY_PATH, NULL};
    char *out, *err;
    int status;
    (void)state;

    status = partyd_run_to_exit(args, &out, &err);
    assert_int_equal(status, 2);
    assert_non_null(strstr(err, "already registered"));
    assert_null(strstr(err, "TLS"));
    free(out);
    free(err);
}

static void test_party_named_like_a_builtin_says_how_to_leave_the_builtin_out(void **state) {
    static const char *const clash[] = {"--party", "chat=" GREETER_PARTY_PATH, NULL};
    static const char *const without[] = {"--party", "chat=" GREETER_PARTY_PATH, "--builtins",
                                          "echo", NULL};
    partyd *d;
    tconn *c;
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(clash, &out, &err), 2);
    if (strstr(err, "'chat' is already registered (a built-in: leave it out with --builtins)") ==
        NULL)
        fail_msg("no hint at --builtins: %s", err);
    free(out);
    free(err);
    /* With the built-in left out, the loaded party takes the name. */
    d = partyd_start(without);
    assert_non_null(d);
    c = ws_open(partyd_port(d), "/parties/chat/x?name=bob");
    ws_expect_text(c, "hello bob, welcome to x");
    tconn_close(c);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_non_numeric_port_exits_2(void **state) {
    static const char *const args[] = {"--port", "abc", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(args, &out, &err), 2);
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
        int status = partyd_run_to_exit(cases[i], &out, &err);
        if (status != 2)
            fail_msg("%s %s: exit status %d, expected 2", cases[i][0],
                     cases[i][1] ? cases[i][1] : "", status);
        if (err[0] == '\0')
            fail_msg("%s: no message on stderr", cases[i][0]);
        free(out);
        free(err);
    }
}

static void test_threads_out_of_range_exits_2_with_a_message_about_threads(void **state) {
    static const char *const zero[] = {"--threads", "0", NULL};
    static const char *const many[] = {"--threads", "65", NULL};
    static const char *const sized[] = {"--threads", "2K", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(zero, &out, &err), 2);
    assert_string_equal(err,
                        "partyd: --threads: '0' is not a number of threads between 1 and 64\n");
    free(out);
    free(err);
    assert_int_equal(partyd_run_to_exit(many, &out, &err), 2);
    assert_non_null(strstr(err, "'65' is not a number of threads between 1 and 64"));
    free(out);
    free(err);
    /* A size suffix is no number of threads. */
    assert_int_equal(partyd_run_to_exit(sized, &out, &err), 2);
    assert_non_null(strstr(err, "'2K' is not a number of threads"));
    free(out);
    free(err);
}

static void test_fetch_max_in_flight_not_a_count_exits_2_naming_the_flag(void **state) {
    static const char *const zero[] = {"--fetch-max-in-flight", "0", NULL};
    static const char *const sized[] = {"--fetch-max-in-flight", "1K", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(zero, &out, &err), 2);
    assert_string_equal(
        err, "partyd: --fetch-max-in-flight: '0' is not a number between 1 and 1000000\n");
    free(out);
    free(err);
    assert_int_equal(partyd_run_to_exit(sized, &out, &err), 2);
    assert_non_null(strstr(err, "--fetch-max-in-flight: '1K' is not a number"));
    free(out);
    free(err);
}

/* GET target: its status and body, copied into *body (free). */
static int get_status_body(int port, const char *target, char **body) {
    http_response res;
    int status;
    http_expect_get(port, target, &res);
    status = res.status;
    *body = strdup(res.body);
    http_response_free(&res);
    return status;
}

static void test_builtins_none_answers_builtins_like_an_unknown_party(void **state) {
    static const char *const args[] = {"--builtins", "none", NULL};
    static const char *const builtin_names[] = {"echo",     "chat", "counter",
                                                "reminder", "demo", "yjs"};
    partyd *d = partyd_start(args);
    char *unknown, *body, *err;
    int unknown_status;
    size_t i;
    tconn *c;
    (void)state;

    assert_non_null(d);
    unknown_status = get_status_body(partyd_port(d), "/parties/no-such-party/x", &unknown);
    assert_int_equal(unknown_status, 400);
    for (i = 0; i < sizeof(builtin_names) / sizeof(builtin_names[0]); i++) {
        char target[128];
        int status;
        snprintf(target, sizeof(target), "/parties/%s/x", builtin_names[i]);
        status = get_status_body(partyd_port(d), target, &body);
        if (status != unknown_status || strcmp(body, unknown) != 0)
            fail_msg("%s: %d '%s', while an unknown party gets %d '%s'", target, status, body,
                     unknown_status, unknown);
        free(body);
    }
    /* A WebSocket to a built-in is refused the same way. */
    c = tconn_open(partyd_port(d), 0);
    {
        http_response res;
        memset(&res, 0, sizeof(res));
        assert_int_equal(ws_handshake(c, "/parties/echo/x", NULL, NULL, 0, &res), 400);
        assert_string_equal(res.body, unknown);
        http_response_free(&res);
    }
    tconn_close(c);
    /* The loaded parties are served. */
    c = probe_open(partyd_port(d), "still-here", NULL, NULL);
    tconn_close(c);
    err = partyd_stderr(d);
    assert_non_null(strstr(err, "built-in parties: none"));
    /* Nothing to warn about: no built-in is served. */
    assert_null(strstr(err, "served next to the loaded ones"));
    free(err);
    free(unknown);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_builtins_list_serves_only_those_and_warns_about_them(void **state) {
    static const char *const args[] = {"--builtins", "echo, Counter", NULL};
    partyd *d = partyd_start(args);
    char *body, *err;
    tconn *c;
    (void)state;

    assert_non_null(d);
    c = ws_open(partyd_port(d), "/parties/echo/x");
    assert_int_equal(ws_send_text(c, "hi"), 0);
    ws_expect_text(c, "hi");
    tconn_close(c);
    assert_int_equal(counter_expect_count(partyd_port(d), "listed"), 0);
    assert_int_equal(get_status_body(partyd_port(d), "/parties/chat/x", &body), 400);
    assert_string_equal(body, "unknown party\n");
    free(body);
    assert_int_equal(get_status_body(partyd_port(d), "/parties/reminder/x", &body), 400);
    free(body);
    err = partyd_stderr(d);
    assert_non_null(strstr(err, "built-in parties: echo, counter\n"));
    if (strstr(err,
               "warn  the built-in parties echo, counter are served next to the loaded ones") ==
            NULL ||
        strstr(err, "--builtins none") == NULL)
        fail_msg("no warning naming the built-ins and the flag: %s", err);
    free(err);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_start_up_log_names_every_party_and_the_file_it_came_from(void **state) {
    partyd *d = partyd_start(NULL);
    char *err;
    (void)state;

    assert_non_null(d);
    err = partyd_stderr(d);
    assert_non_null(
        strstr(err, "built-in parties: echo, chat, counter, reminder, demo, yjs, todos\n"));
    assert_non_null(strstr(err, "party probe: loaded from " PROBE_PARTY_PATH "\n"));
    assert_non_null(strstr(err, "party greeter: loaded from " GREETER_PARTY_PATH "\n"));
    assert_non_null(strstr(err,
                           "the built-in parties echo, chat, counter, reminder, demo, yjs, todos "
                           "are served next to the loaded ones"));
    free(err);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_unknown_builtin_exits_2_listing_the_builtins(void **state) {
    static const char *const cases[][3] = {
        {"--builtins", "echo,nope", NULL},
        {"--builtins", "", NULL},
        {"--builtins", "echo,,chat", NULL},
        {"--builtins", "all,echo", NULL},
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        int status = partyd_run_to_exit(cases[i], &out, &err);
        if (status != 2)
            fail_msg("--builtins '%s': exit status %d, expected 2", cases[i][1], status);
        if (strstr(err, "is not a built-in party (the built-ins: echo, chat, counter, reminder, "
                        "demo, yjs, todos; or all, or none)") == NULL)
            fail_msg("--builtins '%s': %s", cases[i][1], err);
        free(out);
        free(err);
    }
}

static void test_host_name_is_resolved_and_the_address_bound_is_logged(void **state) {
    static const char *const args[] = {"--host", "localhost", NULL};
    struct addrinfo hints, *res;
    partyd *d;
    char *err;
    (void)state;

    /* partyd binds the first address the name resolves to; the client
     * speaks IPv4 to 127.0.0.1. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    assert_int_equal(getaddrinfo("localhost", "1999", &hints, &res), 0);
    if (res->ai_family != AF_INET) {
        freeaddrinfo(res);
        skip();
    }
    freeaddrinfo(res);
    d = partyd_start(args);
    assert_non_null(d);
    partyd_expect_healthy(partyd_port(d));
    err = partyd_stderr(d);
    assert_null(strstr(err, "not an IP address"));
    free(err);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_ipv6_address_is_logged_in_brackets(void **state) {
    static const char *const args[] = {"--host", "::1", NULL};
    partyd *d = partyd_spawn(args);
    (void)state;

    assert_non_null(d);
    if (!partyd_wait_stderr(d, "listening on http://[::1]:", 20000)) {
        char *err = partyd_stderr(d);
        fail_msg("no 'listening on http://[::1]:PORT' line: %s", err);
    }
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_limit_log_lines_name_the_flag(void **state) {
    static const char *const args[] = {"--max-body-bytes", "16", NULL};
    partyd *d = partyd_start(args);
    http_response res;
    (void)state;

    assert_non_null(d);
    http_expect_request(partyd_port(d), "POST", "/parties/probe/x", NULL, "more than sixteen bytes",
                        23, &res);
    assert_int_equal(res.status, 413);
    http_response_free(&res);
    assert_true(partyd_wait_stderr(
        d, "http: 413 request body exceeds max_body_bytes (--max-body-bytes)", TC_TIMEOUT_MS));
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_help_exits_0_and_prints_usage(void **state) {
    static const char *const args[] = {"--help", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(args, &out, &err), 0);
    assert_non_null(strstr(out, "usage: partyd"));
    assert_non_null(strstr(out, "--send-queue-bytes"));
    assert_non_null(strstr(out, "--builtins LIST"));
    free(out);
    free(err);
}

static void test_version_prints_the_version(void **state) {
    static const char *const args[] = {"--version", NULL};
    char *out, *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(args, &out, &err), 0);
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
    status = partyd_run_to_exit(args, &out, &err);
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
    assert_true(
        partyd_wait_stderr(d, "max_room_conns (2) reached (--max-room-conns)", TC_TIMEOUT_MS));
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
        cmocka_unit_test(test_missing_party_object_exits_1_naming_the_file),
        cmocka_unit_test(test_object_without_party_module_exits_nonzero),
        cmocka_unit_test(test_party_spec_without_a_name_exits_2),
        cmocka_unit_test(test_invalid_party_name_exits_2_with_only_its_own_message),
        cmocka_unit_test(test_duplicate_party_name_exits_2),
        cmocka_unit_test(test_party_named_like_a_builtin_says_how_to_leave_the_builtin_out),
        cmocka_unit_test(test_threads_out_of_range_exits_2_with_a_message_about_threads),
        cmocka_unit_test(test_fetch_max_in_flight_not_a_count_exits_2_naming_the_flag),
        cmocka_unit_test(test_builtins_none_answers_builtins_like_an_unknown_party),
        cmocka_unit_test(test_builtins_list_serves_only_those_and_warns_about_them),
        cmocka_unit_test(test_start_up_log_names_every_party_and_the_file_it_came_from),
        cmocka_unit_test(test_unknown_builtin_exits_2_listing_the_builtins),
        cmocka_unit_test(test_host_name_is_resolved_and_the_address_bound_is_logged),
        cmocka_unit_test(test_ipv6_address_is_logged_in_brackets),
        cmocka_unit_test(test_limit_log_lines_name_the_flag),
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
