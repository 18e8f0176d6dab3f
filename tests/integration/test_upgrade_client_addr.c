/* Client addresses across an upgrade (SIGUSR2): a WebSocket whose client
 * a PROXY header named, and one whose client a trusted proxy named
 * (X-Forwarded-For), still read their client with party_conn_remote_addr
 * in the new process; the new process counts the connections it adopted
 * in the per-address limits (one more from the same client is refused,
 * and once the adopted one closes the client may connect again); and a
 * connection whose PROXY header had only partly come when the upgrade
 * started is read whole by the new process. This test plays systemd
 * (NOTIFY_SOCKET) to learn when the new process serves. */
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static int notify_fd = -1;
static char notify_dir[] = "/tmp/partyd-upaddr-XXXXXX";
static char notify_path[256];
static partyd *served;     /* the service, stopped by teardown if a check failed */
static long served_by_pid; /* the process that serves after the upgrade */

static int setup(void **state) {
    (void)state;
    if (mkdtemp(notify_dir) == NULL)
        return -1;
    snprintf(notify_path, sizeof(notify_path), "%s/notify", notify_dir);
    notify_fd = test_notify_listen(notify_path);
    return notify_fd >= 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    if (served != NULL) { /* a check failed: the new process too must go */
        if (served_by_pid > 0)
            kill((pid_t)served_by_pid, SIGKILL);
        partyd_stop(served);
        partyd_free(served);
    }
    tconn_close_all();
    close(notify_fd);
    unlink(notify_path);
    rmdir(notify_dir);
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

/* The status of a GET of the probe room after a PROXY header. */
static int get_status(int port, const char *header) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    int status;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, header), 0);
    assert_int_equal(
        tconn_send_str(
            c, "GET /parties/probe/up-get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    status = res.status;
    http_response_free(&res);
    tconn_close(c);
    return status;
}

static void test_client_addresses_and_their_counts_survive_an_upgrade(void **state) {
    static const char *const args[] = {"--threads",
                                       "2",
                                       "--proxy-protocol",
                                       "--trusted-proxies",
                                       "10.0.0.0/8",
                                       "--limit-exempt",
                                       "",
                                       "--limit-addr-conns",
                                       "1",
                                       "--limit-addr-rate",
                                       "1000000000",
                                       NULL};
    static const char client[] = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 80\r\n";
    static const char proxy[] = "PROXY TCP4 10.0.0.5 192.0.2.1 40000 80\r\n";
    static const char partial[] = "PROXY TCP4 192.0.2.50 192.0.2.1 7000 80\r\n";
    partyd *d = partyd_start(args);
    tconn *direct, *forwarded, *pending;
    http_response res;
    long old_pid, new_pid;
    int port, status, tries;
    (void)state;

    assert_non_null(d);
    served = d;
    port = partyd_port(d);
    old_pid = test_notify_wait_ready(notify_fd);
    direct = probe_open_behind(port, NULL, client, strlen(client), "up-direct", NULL);
    ws_send_text(direct, "addr");
    ws_expect_text(direct, "addr:203.0.113.7");
    forwarded = probe_open_behind(port, NULL, proxy, strlen(proxy), "up-forwarded",
                                  "X-Forwarded-For: 198.51.100.77\r\n");
    ws_send_text(forwarded, "addr");
    ws_expect_text(forwarded, "addr:198.51.100.77");
    /* The limit (1 per address) holds before the upgrade. */
    assert_int_equal(get_status(port, client), 429);
    /* Half a PROXY header before the upgrade. Nothing answers it; a GET
     * on another connection of the same loop lets partyd read it first
     * (read or not, the header must come out whole after the upgrade). */
    pending = tconn_open(port, 0);
    assert_non_null(pending);
    assert_int_equal(tconn_send(pending, partial, 12), 0);
    assert_int_equal(get_status(port, "PROXY TCP4 192.0.2.99 192.0.2.1 1 80\r\n"), 200);

    partyd_signal(d, SIGUSR2);
    new_pid = test_notify_wait_ready(notify_fd);
    assert_true(new_pid > 0 && new_pid != old_pid);
    served_by_pid = new_pid;

    /* The new process knows the clients, not its sockets' peer (127.0.0.1). */
    ws_send_text(direct, "addr");
    ws_expect_text(direct, "addr:203.0.113.7");
    ws_send_text(forwarded, "addr");
    ws_expect_text(forwarded, "addr:198.51.100.77");
    /* It counted the adopted connection for its client. */
    assert_int_equal(get_status(port, client), 429);
    /* The rest of the header, then a request: the client it names. */
    assert_int_equal(tconn_send_str(pending, partial + 12), 0);
    assert_int_equal(
        tconn_send_str(
            pending,
            "GET /parties/probe/up-pending HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(pending, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "X-Probe-Addr"), "192.0.2.50");
    http_response_free(&res);
    tconn_close(pending);

    /* Once the adopted connection closed, its client's count is given back
     * (not below zero): it may connect again. partyd frees the connection
     * right after its side of the close, so a request may still meet it. */
    assert_int_equal(ws_send_close(direct, 1000, "bye"), 0);
    ws_expect_close(direct, 1000, "bye");
    tconn_expect_close(direct);
    tconn_close(direct);
    for (tries = 0, status = 429; status == 429 && tries < 1000; tries++)
        status = get_status(port, client);
    assert_int_equal(status, 200);
    assert_int_equal(get_status(port, client), 200);
    tconn_close(forwarded);

    kill((pid_t)new_pid, SIGTERM);
    assert_int_equal(partyd_wait_exit(d, 60000), 0);
    partyd_expect_no_sanitizer_report(d);
    served = NULL;
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_addresses_and_their_counts_survive_an_upgrade),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
