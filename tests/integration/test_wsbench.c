/* wsbench against a real partyd, about a second per mode, so that the load
 * generator's modes keep working: broadcast delivers every message to every
 * receiver in order (and says so when they do not come), connect opens and
 * closes connections over and over with no error, echo keeps W in flight
 * over rooms x connections. Figures are not checked, only that work was
 * done and nothing was lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define RUN_TIMEOUT_MS 60000
#define OUT_MAX 65536

static partyd *server;
static int port;

static int group_setup(void **state) {
    (void)state;
    server = partyd_start(NULL);
    if (server == NULL)
        return -1;
    port = partyd_port(server);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs wsbench with args (NULL-terminated; --port is added) and returns its
 * exit status; its stdout goes to out (NUL-terminated). Fails the test if
 * it does not end within RUN_TIMEOUT_MS (it is then killed, by its pid). */
static int run_wsbench(const char *const *args, char *out, size_t cap) {
    const char *argv[32];
    char port_text[16];
    size_t n = 0, len = 0;
    int fds[2], status;
    long long deadline = now_ms() + RUN_TIMEOUT_MS;
    pid_t pid;

    snprintf(port_text, sizeof(port_text), "%d", port);
    argv[n++] = WSBENCH_PATH;
    while (*args != NULL && n < 28)
        argv[n++] = *args++;
    argv[n++] = "--port";
    argv[n++] = port_text;
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(WSBENCH_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        long long left = deadline - now_ms();
        ssize_t got;
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(fds[0]);
            fail_msg("wsbench did not end within %d ms", RUN_TIMEOUT_MS);
        }
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        got = read(fds[0], out + len, cap - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The number after "name": in wsbench's JSON line; fails if absent. */
static double json_number(const char *out, const char *name) {
    char key[64];
    const char *line = strstr(out, "{\"tool\":\"wsbench\""), *at;
    if (line == NULL)
        fail_msg("no JSON line in wsbench's output: %s", out);
    snprintf(key, sizeof(key), "\"%s\":", name);
    at = strstr(line, key);
    if (at == NULL)
        fail_msg("no %s in wsbench's JSON line: %s", name, line);
    return strtod(at + strlen(key), NULL);
}

static void test_broadcast_delivers_every_message_in_order(void **state) {
    static const char *const args[] = {"broadcast", "--conns",  "50",  "--inflight",
                                       "8",         "--size",   "32",  "--duration",
                                       "1",         "--warmup", "0.2", NULL};
    char *out = malloc(OUT_MAX);
    (void)state;
    assert_non_null(out);
    assert_int_equal(run_wsbench(args, out, OUT_MAX), 0);
    assert_true(json_number(out, "deliveries") > 0);
    /* Each message sent reached the 49 receivers. */
    assert_true(json_number(out, "sent") > 0);
    assert_true(json_number(out, "lost") == 0);
    assert_true(json_number(out, "out_of_order") == 0);
    assert_true(json_number(out, "to_sender") == 0);
    assert_true(json_number(out, "errors") == 0);
    assert_true(json_number(out, "unanswered") == 0);
    free(out);
}

static void test_broadcast_over_rooms_keeps_rooms_apart(void **state) {
    static const char *const args[] = {
        "broadcast",   "--rooms",    "4",        "--conns", "40",
        "--grouped",   "--inflight", "2",        "--size",  "64",
        "--duration",  "1",          "--warmup", "0.2",     "--room-prefix",
        "bcast-rooms", NULL};
    char *out = malloc(OUT_MAX);
    (void)state;
    assert_non_null(out);
    assert_int_equal(run_wsbench(args, out, OUT_MAX), 0);
    assert_true(json_number(out, "deliveries") > 0);
    assert_true(json_number(out, "lost") == 0);
    assert_true(json_number(out, "out_of_order") == 0);
    assert_true(json_number(out, "errors") == 0);
    free(out);
}

/* The echo party answers the sender, not the room: nothing reaches the
 * receivers, and wsbench must say so (and fail) rather than report a rate. */
static void test_broadcast_counts_what_never_came(void **state) {
    static const char *const args[] = {
        "broadcast", "--party",    "echo", "--conns",  "5", "--inflight",    "4",          "--size",
        "32",        "--duration", "0.3",  "--warmup", "0", "--room-prefix", "bcast-echo", NULL};
    char *out = malloc(OUT_MAX);
    (void)state;
    assert_non_null(out);
    assert_int_equal(run_wsbench(args, out, OUT_MAX), 1);
    /* The window of 4 messages, missing at each of the 4 receivers. */
    assert_true(json_number(out, "lost") == 16);
    assert_true(json_number(out, "deliveries") == 0);
    assert_true(json_number(out, "to_sender") == 4);
    free(out);
}

static void test_connect_opens_and_closes_without_error(void **state) {
    static const char *const args[] = {"connect", "--conns",  "8",   "--duration",
                                       "1",       "--warmup", "0.2", NULL};
    char *out = malloc(OUT_MAX);
    (void)state;
    assert_non_null(out);
    assert_int_equal(run_wsbench(args, out, OUT_MAX), 0);
    assert_true(json_number(out, "handshakes") > 0);
    assert_true(json_number(out, "cycles") >= json_number(out, "handshakes"));
    assert_true(json_number(out, "failed") == 0);
    assert_true(json_number(out, "errors") == 0);
    assert_true(json_number(out, "unanswered") == 0);
    free(out);
}

static void test_echo_keeps_w_in_flight_over_rooms(void **state) {
    static const char *const args[] = {"echo",       "--rooms",  "5",      "--conns", "20",
                                       "--inflight", "8",        "--size", "32",      "--duration",
                                       "1",          "--warmup", "0.2",    NULL};
    char *out = malloc(OUT_MAX);
    (void)state;
    assert_non_null(out);
    assert_int_equal(run_wsbench(args, out, OUT_MAX), 0);
    assert_true(json_number(out, "msgs") > 0);
    assert_true(json_number(out, "inflight") == 8);
    assert_true(json_number(out, "errors") == 0);
    assert_true(json_number(out, "unanswered") == 0);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_delivers_every_message_in_order),
        cmocka_unit_test(test_broadcast_over_rooms_keeps_rooms_apart),
        cmocka_unit_test(test_broadcast_counts_what_never_came),
        cmocka_unit_test(test_connect_opens_and_closes_without_error),
        cmocka_unit_test(test_echo_keeps_w_in_flight_over_rooms),
    };
    return cmocka_run_group_tests_name("wsbench", tests, group_setup, group_teardown);
}
