/* Outbound HTTP through partyd as a process: the reminder party's webhook
 * reaches a server this test runs on 127.0.0.1 (allowed by --fetch-allow);
 * a partyd killed with SIGKILL while a webhook is in flight answers it
 * aborted in its next run; a party's own list from the config file
 * works without --fetch-allow; a malformed list stops partyd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "client.h"

/* ---- the hook server: records each request; /slow is never answered ---- */

#define MAX_HELD 8

static struct {
    int fd, port;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int requests;
    char last[1024];
    int held[MAX_HELD];
    int n_held;
} srv;

static void *server_main(void *arg) {
    (void)arg;
    for (;;) {
        struct pollfd fds[2] = {{srv.fd, POLLIN, 0}, {srv.stop_pipe[0], POLLIN, 0}};
        char buf[4096];
        size_t got = 0;
        char *end, *cl;
        size_t head, body = 0;
        int fd, keep = 0;

        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents != 0)
            return NULL;
        fd = accept(srv.fd, NULL, NULL);
        if (fd < 0)
            continue;
        for (;;) {
            ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if ((end = strstr(buf, "\r\n\r\n")) == NULL)
                continue;
            head = (size_t)(end + 4 - buf);
            cl = strstr(buf, "Content-Length: ");
            if (cl != NULL && cl < end)
                body = (size_t)strtoul(cl + 16, NULL, 10);
            if (got >= head + body || got == sizeof(buf) - 1)
                break;
        }
        pthread_mutex_lock(&srv.mu);
        srv.requests++;
        snprintf(srv.last, sizeof(srv.last), "%.*s %s", (int)strcspn(buf, "\r"), buf,
                 (end = strstr(buf, "\r\n\r\n")) ? end + 4 : "");
        if (strncmp(buf, "POST /slow ", 11) == 0 && srv.n_held < MAX_HELD) {
            srv.held[srv.n_held++] = fd;
            keep = 1;
        }
        pthread_cond_broadcast(&srv.changed);
        pthread_mutex_unlock(&srv.mu);
        if (!keep) {
            static const char answer[] = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
            (void)!send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL);
            close(fd);
        }
    }
}

static int setup(void **state) {
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    (void)state;

    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.mu, NULL);
    pthread_cond_init(&srv.changed, NULL);
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(srv.fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(srv.fd, 16), 0);
    assert_int_equal(getsockname(srv.fd, (struct sockaddr *)&addr, &len), 0);
    srv.port = ntohs(addr.sin_port);
    assert_int_equal(pipe(srv.stop_pipe), 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
    return 0;
}

static int teardown(void **state) {
    int i;
    (void)state;
    assert_int_equal(write(srv.stop_pipe[1], "x", 1), 1);
    pthread_join(srv.thread, NULL);
    for (i = 0; i < srv.n_held; i++)
        close(srv.held[i]);
    close(srv.fd);
    close(srv.stop_pipe[0]);
    close(srv.stop_pipe[1]);
    pthread_cond_destroy(&srv.changed);
    pthread_mutex_destroy(&srv.mu);
    return 0;
}

/* Waits (up to 10 s) until the server has seen n requests; their count. */
static int wait_requests(int n) {
    struct timespec until;
    int got;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&srv.mu);
    while (srv.requests < n && pthread_cond_timedwait(&srv.changed, &srv.mu, &until) != ETIMEDOUT)
        ;
    got = srv.requests;
    pthread_mutex_unlock(&srv.mu);
    return got;
}

/* POST /parties/reminder/desk?in=MS&name=tea&webhook=http://127.0.0.1:PORT<path>. */
static int post_reminder(int port, const char *path, http_response *res) {
    char target[512];
    snprintf(target, sizeof(target),
             "/parties/reminder/desk?in=50&name=tea&webhook=http%%3A%%2F%%2F127.0.0.1%%3A%d%s",
             srv.port, path);
    http_expect_request(port, "POST", target, NULL, "cup", 3, res);
    return res->status;
}

static void test_reminder_webhook_reaches_the_server(void **state) {
    char allow[64];
    const char *args[] = {"--fetch-allow", allow, NULL};
    http_response res;
    partyd *d;
    (void)state;

    snprintf(allow, sizeof(allow), "127.0.0.1:%d", srv.port);
    d = partyd_start(args);
    assert_non_null(d);
    assert_int_equal(post_reminder(partyd_port(d), "/hook", &res), 201);
    http_response_free(&res);
    assert_int_equal(wait_requests(1), 1);
    assert_string_equal(srv.last, "POST /hook HTTP/1.1 "
                                  "{\"room\":\"desk\",\"name\":\"tea\",\"payload\":\"cup\"}");
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_webhooks_are_off_by_default(void **state) {
    http_response res;
    partyd *d = partyd_start(NULL);
    (void)state;

    assert_non_null(d);
    assert_int_equal(post_reminder(partyd_port(d), "/hook", &res), 403);
    assert_non_null(strstr(res.body, "webhooks are off"));
    assert_non_null(strstr(res.body, "--fetch-allow"));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_webhook_in_flight_when_killed_is_answered_aborted_after_restart(void **state) {
    char allow[64], data[] = "/tmp/partyd-outbound-XXXXXX";
    const char *args[] = {"--fetch-allow", allow, "--data", data, NULL};
    http_response res;
    partyd *d;
    (void)state;

    assert_non_null(mkdtemp(data));
    snprintf(allow, sizeof(allow), "127.0.0.1:%d", srv.port);
    d = partyd_start(args);
    assert_non_null(d);
    assert_int_equal(post_reminder(partyd_port(d), "/slow", &res), 201);
    http_response_free(&res);
    /* The webhook reached the server, which holds it unanswered. */
    assert_int_equal(wait_requests(1), 1);
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, 10000), 128 + SIGKILL);
    partyd_free(d);

    d = partyd_start(args);
    assert_non_null(d);
    http_expect_get(partyd_port(d), "/parties/reminder/desk", &res);
    assert_int_equal(res.status, 200);
    if (strstr(res.body, "\"webhooks\":[{\"name\":\"tea\",\"status\":0,\"error\":\"aborted") ==
        NULL)
        fail_msg("no aborted webhook in %s", res.body);
    http_response_free(&res);
    /* Answered once: the next run has nothing left to abort. */
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    d = partyd_start(args);
    assert_non_null(d);
    http_expect_get(partyd_port(d), "/parties/reminder/desk", &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"webhooks\":[{\"name\":\"tea\",\"status\":0,"));
    assert_null(strstr(res.body, "},{\"name\":\"tea\""));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(data);
}

/* D4 across an upgrade (SIGUSR2): a webhook in flight when the old process
 * hands over is answered aborted by the room's next incarnation, in the new
 * process. */
static void
test_webhook_in_flight_at_an_upgrade_is_answered_aborted_by_the_new_process(void **state) {
    char allow[64];
    const char *args[] = {"--fetch-allow", allow, NULL};
    http_response res;
    partyd *d;
    (void)state;

    snprintf(allow, sizeof(allow), "127.0.0.1:%d", srv.port);
    d = partyd_start(args);
    assert_non_null(d);
    assert_int_equal(post_reminder(partyd_port(d), "/slow", &res), 201);
    http_response_free(&res);
    assert_int_equal(wait_requests(1), 1);
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "; serving (pid ", 60000));
    http_expect_get(partyd_port(d), "/parties/reminder/desk", &res);
    assert_int_equal(res.status, 200);
    if (strstr(res.body, "\"webhooks\":[{\"name\":\"tea\",\"status\":0,\"error\":\"aborted") ==
        NULL)
        fail_msg("no aborted webhook in %s", res.body);
    http_response_free(&res);
    assert_int_equal(partyd_stop_upgraded(d), 0);
    partyd_free(d);
}

static void test_a_party_s_own_fetch_allow_from_the_config_file(void **state) {
    char path[] = "/tmp/partyd-outbound-config-XXXXXX", json[256];
    const char *args[] = {"--config", path, NULL};
    http_response res;
    partyd *d;
    int fd;
    (void)state;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    snprintf(json, sizeof(json),
             "{\"parties\": {\"reminder\": {\"fetch-allow\": \"127.0.0.1:%d\"}}}", srv.port);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    d = partyd_start(args);
    assert_non_null(d);
    /* No --fetch-allow, but the reminder party has its own list. */
    assert_int_equal(post_reminder(partyd_port(d), "/hook", &res), 201);
    http_response_free(&res);
    assert_int_equal(wait_requests(1), 1);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(path);
}

static void test_malformed_fetch_allow_stops_partyd_naming_the_entry(void **state) {
    const char *args[] = {"--fetch-allow", "api.example.com, 10.0.0.1/8", NULL};
    partyd *d;
    char *err;
    (void)state;

    d = partyd_spawn(args);
    assert_non_null(d);
    assert_int_equal(partyd_wait_exit(d, 10000), 2);
    err = partyd_stderr(d);
    if (strstr(err, "--fetch-allow entry \"10.0.0.1/8\": the address has bits set past the "
                    "prefix length") == NULL)
        fail_msg("unexpected message: %s", err);
    free(err);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reminder_webhook_reaches_the_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhooks_are_off_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_webhook_in_flight_when_killed_is_answered_aborted_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_webhook_in_flight_at_an_upgrade_is_answered_aborted_by_the_new_process, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_a_party_s_own_fetch_allow_from_the_config_file, setup,
                                        teardown),
        cmocka_unit_test(test_malformed_fetch_allow_stops_partyd_naming_the_entry),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
