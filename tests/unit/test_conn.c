/* conn: the pools a burst of handshakes fills (spare HTTP sessions, the
 * block of handshake timers) are freed by party__conn_pools_trim, the
 * timer block only while none of its timers is armed, and handshakes after
 * a trim are served as before. A runtime in this process serves one end
 * of a socketpair per exchange; its loop is run here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "party.h"
#include "runtime.h"

static const char request[] = "GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/* Runs the loop until nothing is left to do at once, a few times over. */
static void pump(party_runtime *rt) {
    int i;
    for (i = 0; i < 10; i++)
        uv_run(&rt->loop, UV_RUN_NOWAIT);
}

/* Serves one end of a new socketpair as an accepted connection and
 * returns the other: the client's. */
static int client_open(party_runtime *rt) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(party__conn_adopt(rt, sv[0], 0), 0);
    return sv[1];
}

/* Reads the client's end until the server closes it (at most 5 s); the
 * response, NUL-terminated, in out. */
static void client_read_all(party_runtime *rt, int fd, char *out, size_t cap) {
    size_t len = 0;
    int waited = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;
        uv_run(&rt->loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 1) == 0) {
            assert_true(++waited < 5000);
            continue;
        }
        n = read(fd, out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        assert_true(len < cap - 1);
    }
    out[len] = '\0';
    close(fd);
    pump(rt);
}

/* One request answered, its connection gone: the pools hold its session
 * and its timer again. */
static void exchange(party_runtime *rt) {
    char response[4096];
    int fd = client_open(rt);
    assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    client_read_all(rt, fd, response, sizeof(response));
    assert_memory_equal(response, "HTTP/1.1 404", 12);
    assert_int_equal(rt->n_conns, 0);
}

static party_runtime *runtime_new(void) {
    party_config cfg;
    party_runtime *rt;
    party_config_init(&cfg);
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    return rt;
}

static void test_trim_frees_spare_sessions_and_the_idle_timer_block(void **state) {
    party_runtime *rt = runtime_new();
    (void)state;

    exchange(rt);
    exchange(rt);
    assert_true(rt->n_spare_sessions > 0);
    assert_non_null(rt->timer_block);
    assert_int_equal(rt->n_spare_timers, PARTY__SPARE_TIMERS);

    party__conn_pools_trim(rt);
    assert_int_equal(rt->n_spare_sessions, 0);
    assert_null(rt->spare_sessions);
    assert_int_equal(rt->n_spare_timers, 0);
    pump(rt); /* the timers' close callbacks free the block */
    assert_null(rt->timer_block);

    /* Served as before; the pools fill again. */
    exchange(rt);
    assert_true(rt->n_spare_sessions > 0);
    assert_non_null(rt->timer_block);
    assert_int_equal(rt->n_spare_timers, PARTY__SPARE_TIMERS);
    party_runtime_free(rt);
}

static void test_trim_keeps_the_timer_block_while_a_timer_is_armed(void **state) {
    party_runtime *rt = runtime_new();
    char response[4096];
    int waiting;
    (void)state;

    exchange(rt);
    /* A connection whose request has not come yet: its header timer is
     * one of the block's, armed. */
    waiting = client_open(rt);
    pump(rt);
    assert_int_equal(rt->n_spare_timers, PARTY__SPARE_TIMERS - 1);

    party__conn_pools_trim(rt);
    assert_int_equal(rt->n_spare_sessions, 0);
    pump(rt);
    assert_non_null(rt->timer_block);
    assert_int_equal(rt->n_spare_timers, PARTY__SPARE_TIMERS - 1);

    /* The waiting connection is answered, and its timer goes back. */
    assert_int_equal(write(waiting, request, strlen(request)), (ssize_t)strlen(request));
    client_read_all(rt, waiting, response, sizeof(response));
    assert_memory_equal(response, "HTTP/1.1 404", 12);
    assert_int_equal(rt->n_spare_timers, PARTY__SPARE_TIMERS);

    /* Now the block can go. */
    party__conn_pools_trim(rt);
    pump(rt);
    assert_null(rt->timer_block);
    party_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim_frees_spare_sessions_and_the_idle_timer_block),
        cmocka_unit_test(test_trim_keeps_the_timer_block_while_a_timer_is_armed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
