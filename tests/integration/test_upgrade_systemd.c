/* What partyd tells systemd, with this test playing systemd: a datagram
 * socket named in NOTIFY_SOCKET. At start partyd says READY=1 with its
 * pid; on SIGUSR2 RELOADING=1, then the new process says READY=1 with its
 * own pid (MAINPID=), the old one exits 0 and an open WebSocket goes on
 * working; an upgrade that fails says READY=1 again from the process that
 * goes on serving. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static int notify_fd = -1;
static char notify_dir[] = "/tmp/partyd-notify-XXXXXX";
static char notify_path[256];
static char hooks_dir[300];

/* The next datagram partyd sent, NUL-terminated into buf; fails the test
 * after 60 s (partyd under valgrind starts slowly). */
static void next_notification(char *buf, size_t size) {
    struct pollfd p = {notify_fd, POLLIN, 0};
    ssize_t n;

    if (poll(&p, 1, 60000) != 1)
        fail_msg("no notification from partyd within 60 s");
    n = recv(notify_fd, buf, size - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
}

static void expect_notification(const char *text) {
    char buf[512];
    next_notification(buf, sizeof(buf));
    assert_string_equal(buf, text);
}

static int setup(void **state) {
    (void)state;
    if (mkdtemp(notify_dir) == NULL)
        return -1;
    snprintf(notify_path, sizeof(notify_path), "%s/notify", notify_dir);
    snprintf(hooks_dir, sizeof(hooks_dir), "%s/hooks", notify_dir);
    if (mkdir(hooks_dir, 0700) != 0)
        return -1;
    notify_fd = test_notify_listen(notify_path);
    if (notify_fd < 0)
        return -1;
    setenv("PARTYD_TEST_HOOKS", hooks_dir, 1);
    return 0;
}

static int teardown(void **state) {
    char path[400];
    (void)state;
    close(notify_fd);
    snprintf(path, sizeof(path), "%s/record-version", hooks_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/hold", hooks_dir);
    unlink(path);
    rmdir(hooks_dir);
    unlink(notify_path);
    rmdir(notify_dir);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("PARTYD_TEST_HOOKS");
    return 0;
}

static void test_systemd_learns_the_new_main_pid_of_an_upgrade(void **state) {
    static const char *const args[] = {"--threads", "2", NULL};
    partyd *d = partyd_start(args);
    tconn *c;
    ws_frame f;
    long old_pid, new_pid;
    char path[400];
    FILE *hook;
    (void)state;

    assert_non_null(d);
    old_pid = test_notify_wait_ready(notify_fd);
    assert_int_equal(old_pid, partyd_pid(d));
    c = ws_open(partyd_port(d), "/parties/echo/notify?_pk=n1");
    ws_send_text(c, "before");
    ws_expect_text(c, "before");

    partyd_signal(d, SIGUSR2);
    expect_notification("RELOADING=1");
    new_pid = test_notify_wait_ready(notify_fd);
    assert_true(new_pid > 0 && new_pid != old_pid);
    ws_send_text(c, "after");
    ws_expect_text(c, "after");

    /* A failed upgrade: the process that goes on serving is ready again,
     * with the pid systemd already has. */
    snprintf(path, sizeof(path), "%s/record-version", hooks_dir);
    hook = fopen(path, "w");
    assert_non_null(hook);
    fputs("999\n", hook);
    fclose(hook);
    kill((pid_t)new_pid, SIGUSR2);
    expect_notification("RELOADING=1");
    assert_int_equal(test_notify_wait_ready(notify_fd), 0);
    unlink(path);
    ws_send_text(c, "still");
    ws_expect_text(c, "still");

    /* The new process is the one that serves: its SIGTERM closes with 1001. */
    kill((pid_t)new_pid, SIGTERM);
    assert_int_equal(ws_recv(c, &f, 60000), 0);
    assert_int_equal(f.opcode, 8);
    assert_int_equal(f.close_code, 1001);
    ws_frame_free(&f);
    tconn_close(c);
    /* Both processes wrote to the same pipes: they reach EOF once both
     * exited. The old one (the child here) exited 0, so without a leak; a
     * sanitizer report of the new one would be in the log. */
    assert_int_equal(partyd_wait_exit(d, 60000), 0);
    partyd_expect_no_sanitizer_report(d);
    assert_true(partyd_wait_stderr(d, "SIGUSR2", 0));
    partyd_free(d);
}

/* SIGTERM while an upgrade is under way waits for it: the process that
 * serves at the end stops, its clients get 1001, and both processes exit. */
static void test_sigterm_during_an_upgrade_stops_the_service(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *c;
    ws_frame f;
    char path[400];
    FILE *hook;
    (void)state;

    assert_non_null(d);
    (void)test_notify_wait_ready(notify_fd);
    c = ws_open(partyd_port(d), "/parties/echo/notify?_pk=n2");
    /* The new process waits (hook "hold") until the SIGTERM was handled:
     * sent back to back, the two signals may be handled in either order. */
    snprintf(path, sizeof(path), "%s/hold", hooks_dir);
    hook = fopen(path, "w");
    assert_non_null(hook);
    fputs("1\n", hook);
    fclose(hook);
    partyd_signal(d, SIGUSR2);
    expect_notification("RELOADING=1");
    partyd_signal(d, SIGTERM);
    assert_true(partyd_wait_stderr(d, "during an upgrade: stopping once it is over", 60000));
    unlink(path);
    assert_int_equal(ws_recv(c, &f, 60000), 0);
    assert_int_equal(f.opcode, 8);
    assert_int_equal(f.close_code, 1001);
    ws_frame_free(&f);
    tconn_close(c);
    /* Both processes wrote to the pipes: EOF once both exited. */
    assert_int_equal(partyd_wait_exit(d, 60000), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_systemd_learns_the_new_main_pid_of_an_upgrade),
        cmocka_unit_test(test_sigterm_during_an_upgrade_stops_the_service),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
