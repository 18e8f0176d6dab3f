/* Graceful shutdown under load: clients keep one counter increment in
 * flight each (durable counter rooms, --durability full) when partyd gets
 * SIGTERM. Every client must then get Close 1001, partyd must exit 0
 * within --shutdown-timeout (also with a client that never answers the
 * Close), and after a restart on the same data directory every value a
 * client was answered must be there: events in flight finished and their
 * commits landed. */
#define _GNU_SOURCE
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
#include <sys/stat.h>

#include "client.h"

#define N_ROOMS 3
#define N_CONNS 9
#define LOAD_MS 400
#define SHUTDOWN_TIMEOUT_MS 3000

typedef struct load_conn {
    tconn *c;
    int room;
    int in_flight;
    int answers_close; /* replies to the server's Close (one client never does) */
    int got_close;
    long long last;
} load_conn;

static long long get_count(int port, int room) {
    char name[32];
    snprintf(name, sizeof(name), "stop-%d", room);
    return counter_expect_count(port, name);
}

static void send_plus(load_conn *lc, long long *sent) {
    if (ws_send_text(lc->c, "+") != 0)
        fail_msg("cannot send while partyd runs");
    lc->in_flight = 1;
    sent[lc->room]++;
}

/* Handles one frame: a count (with keep_going, the next message follows)
 * or the server's Close. */
static void take_frame(load_conn *lc, ws_frame *f, long long *acked, long long *sent,
                       int keep_going) {
    if (f->opcode == WS_CLOSE) {
        if (f->close_code != 1001)
            fail_msg("Close %d \"%s\" instead of 1001", f->close_code, f->reason);
        lc->got_close = 1;
        if (lc->answers_close)
            (void)ws_send_close(lc->c, 1001, "");
        return;
    }
    if (f->opcode != WS_TEXT)
        fail_msg("unexpected opcode %d", f->opcode);
    {
        long long v = strtoll(f->data, NULL, 10);
        if (v <= lc->last)
            fail_msg("count %lld after %lld on one connection", v, lc->last);
        lc->last = v;
        lc->in_flight = 0;
        if (v > acked[lc->room])
            acked[lc->room] = v;
    }
    if (keep_going)
        send_plus(lc, sent);
}

static void test_sigterm_under_load_loses_no_acknowledged_write(void **state) {
    char dir[] = "/tmp/partyd-shutdown-XXXXXX";
    const char *args[] = {
        "--data", dir, "--durability", "full", "--shutdown-timeout", "3", "--close-timeout",
        "10",     NULL};
    load_conn conns[N_CONNS];
    long long acked[N_ROOMS] = {0}, sent[N_ROOMS] = {0};
    struct pollfd pfd[N_CONNS];
    int64_t until, signalled, exited;
    partyd *d;
    int i, status, port, open_conns;
    (void)state;

    assert_non_null(mkdtemp(dir));
    d = partyd_start(args);
    assert_non_null(d);
    port = partyd_port(d);
    for (i = 0; i < N_CONNS; i++) {
        char target[64];
        memset(&conns[i], 0, sizeof(conns[i]));
        conns[i].room = i % N_ROOMS;
        /* The last one never answers the Close: partyd must not wait for it
         * past --shutdown-timeout (its --close-timeout is longer). */
        conns[i].answers_close = i != N_CONNS - 1;
        snprintf(target, sizeof(target), "/parties/counter/stop-%d", conns[i].room);
        conns[i].c = ws_open(port, target);
        send_plus(&conns[i], sent);
    }
    until = test_now_ms() + LOAD_MS;
    for (;;) {
        int64_t now = test_now_ms();
        if (now >= until)
            break;
        for (i = 0; i < N_CONNS; i++) {
            pfd[i].fd = conns[i].c->fd;
            pfd[i].events = POLLIN;
        }
        if (poll(pfd, N_CONNS, (int)(until - now)) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        for (i = 0; i < N_CONNS; i++) {
            ws_frame f;
            while (ws_recv(conns[i].c, &f, 0) == 0) {
                take_frame(&conns[i], &f, acked, sent, 1);
                ws_frame_free(&f);
            }
        }
    }

    /* SIGTERM with a message in flight on (nearly) every connection. */
    partyd_signal(d, SIGTERM);
    signalled = test_now_ms();
    /* What follows on each connection: the answers to what was in flight
     * (they count), Close 1001, then the end of the connection. */
    open_conns = N_CONNS;
    while (open_conns > 0) {
        for (i = 0; i < N_CONNS; i++) {
            ws_frame f;
            int r;
            if (conns[i].c == NULL)
                continue;
            r = ws_recv(conns[i].c, &f, 0);
            if (r == 0) {
                take_frame(&conns[i], &f, acked, sent, 0);
                ws_frame_free(&f);
                continue;
            }
            if (r == TC_EOF || r == TC_RESET) {
                if (!conns[i].got_close)
                    fail_msg("connection %d ended without Close 1001 (%d)", i, r);
                tconn_close(conns[i].c);
                conns[i].c = NULL;
                open_conns--;
                continue;
            }
            if (r != TC_TIMEOUT)
                fail_msg("connection %d: %d", i, r);
        }
        if (test_now_ms() - signalled > SHUTDOWN_TIMEOUT_MS + 3000)
            fail_msg("%d connections still open %d ms after SIGTERM", open_conns,
                     SHUTDOWN_TIMEOUT_MS + 3000);
        if (open_conns > 0) {
            int n = 0;
            for (i = 0; i < N_CONNS; i++)
                if (conns[i].c != NULL) {
                    pfd[n].fd = conns[i].c->fd;
                    pfd[n].events = POLLIN;
                    n++;
                }
            (void)poll(pfd, (nfds_t)n, 100);
        }
    }
    status = partyd_wait_exit(d, SHUTDOWN_TIMEOUT_MS + 3000 * test_slow_factor());
    exited = test_now_ms();
    printf("  exit status %d, %lld ms after SIGTERM\n", status, (long long)(exited - signalled));
    if (status != 0) {
        char *err = partyd_stderr(d);
        fprintf(stderr, "partyd stderr:\n%s\n", err);
        free(err);
    }
    assert_int_equal(status, 0);
    /* Within --shutdown-timeout, plus what freeing the rooms takes. */
    assert_true(exited - signalled < SHUTDOWN_TIMEOUT_MS + 2000 * test_slow_factor());
    assert_true(partyd_wait_stderr(d, "shutdown: 1 connections did not close in time", 1000));
    partyd_free(d);

    d = partyd_start(args);
    assert_non_null(d);
    for (i = 0; i < N_ROOMS; i++) {
        long long count = get_count(partyd_port(d), i);
        printf("  room stop-%d: count %lld after restart (acked %lld, sent %lld)\n", i, count,
               acked[i], sent[i]);
        assert_true(acked[i] > 0);
        if (count < acked[i])
            fail_msg("room stop-%d: LOST ACKNOWLEDGED WRITES: %lld after restart, %lld acked", i,
                     count, acked[i]);
        assert_true(count <= sent[i]);
    }
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_under_load_loses_no_acknowledged_write),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests_name("shutdown", tests, NULL, NULL);
}
