/* conn: the pools a burst of handshakes fills (spare HTTP sessions, the
 * block of handshake timers) are freed by party__conn_pools_trim, the
 * timer block only while none of its timers is armed, and handshakes after
 * a trim are served as before. The send queue's release mark: output
 * behind it waits until the gate releases it, a dropped gate cuts the
 * queue at the mark (what was in front still goes) and fails the
 * connection, holding output allocates nothing per frame, and an idle
 * connection's queue holds no memory once trimmed. An open WebSocket
 * waiting for input holds no send queue and no busy record; a frame split
 * across reads is kept in a busy record until it is whole, and a ring a
 * burst grew goes at the next keepalive sweep. A runtime in this process
 * serves one end of a socketpair per exchange; its loop is run here. */
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
#include "keepalive.h"
#include "party.h"
#include "party_test.h"
#include "runtime.h"

static const char request[] = "GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/* Runs the loop until nothing is left to do at once, a few times over. */
static void pump(party_runtime *rt) {
    int i;
    for (i = 0; i < 10; i++)
        uv_run(&party__runtime_loop(rt)->loop, UV_RUN_NOWAIT);
}

/* Serves one end of a new socketpair as an accepted connection and
 * returns the other: the client's. */
static int client_open(party_runtime *rt) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(party__conn_adopt(party__runtime_loop(rt), sv[0], 0), 0);
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
        uv_run(&party__runtime_loop(rt)->loop, UV_RUN_NOWAIT);
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
    assert_int_equal(party__runtime_loop(rt)->n_conns, 0);
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
    assert_true(party__runtime_loop(rt)->n_spare_sessions > 0);
    assert_non_null(party__runtime_loop(rt)->timer_block);
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, PARTY__SPARE_TIMERS);

    party__conn_pools_trim(party__runtime_loop(rt));
    assert_int_equal(party__runtime_loop(rt)->n_spare_sessions, 0);
    assert_null(party__runtime_loop(rt)->spare_sessions);
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, 0);
    pump(rt); /* the timers' close callbacks free the block */
    assert_null(party__runtime_loop(rt)->timer_block);

    /* Served as before; the pools fill again. */
    exchange(rt);
    assert_true(party__runtime_loop(rt)->n_spare_sessions > 0);
    assert_non_null(party__runtime_loop(rt)->timer_block);
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, PARTY__SPARE_TIMERS);
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
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, PARTY__SPARE_TIMERS - 1);

    party__conn_pools_trim(party__runtime_loop(rt));
    assert_int_equal(party__runtime_loop(rt)->n_spare_sessions, 0);
    pump(rt);
    assert_non_null(party__runtime_loop(rt)->timer_block);
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, PARTY__SPARE_TIMERS - 1);

    /* The waiting connection is answered, and its timer goes back. */
    assert_int_equal(write(waiting, request, strlen(request)), (ssize_t)strlen(request));
    client_read_all(rt, waiting, response, sizeof(response));
    assert_memory_equal(response, "HTTP/1.1 404", 12);
    assert_int_equal(party__runtime_loop(rt)->n_spare_timers, PARTY__SPARE_TIMERS);

    /* Now the block can go. */
    party__conn_pools_trim(party__runtime_loop(rt));
    pump(rt);
    assert_null(party__runtime_loop(rt)->timer_block);
    party_runtime_free(rt);
}

/* ---- the send queue's release mark ---- */

static party_conn *found;

static void find_one(party_conn *conn) {
    found = conn;
}

/* Serves a new socketpair and returns the server's connection (the only
 * one) and, in *client, the client's end. */
static party_conn *conn_open(party_runtime *rt, int *client) {
    *client = client_open(rt);
    found = NULL;
    party__conn_foreach(party__runtime_loop(rt), find_one);
    assert_non_null(found);
    return found;
}

/* Queues the bytes of text on conn. */
static void queue_text(party_conn *conn, const char *text) {
    party__buf *buf = party__buf_take(NULL, strlen(text));
    assert_non_null(buf);
    memcpy(buf->data, text, strlen(text));
    buf->len = strlen(text);
    assert_int_equal(party__conn_queue(conn, buf), 0);
    party__buf_release(buf);
}

/* What the client's end has now (after running the loop), NUL-terminated. */
static void client_take(party_runtime *rt, int fd, char *out, size_t cap) {
    ssize_t n;
    pump(rt);
    n = recv(fd, out, cap - 1, MSG_DONTWAIT);
    out[n > 0 ? n : 0] = '\0';
}

static void test_output_behind_the_mark_waits_for_the_release(void **state) {
    party_runtime *rt = runtime_new();
    party__conn_gate gate = {NULL, NULL};
    char got[4096];
    int fd;
    party_conn *conn = conn_open(rt, &fd);
    (void)state;

    queue_text(conn, "before ");
    party__conn_hold(conn, &gate);
    assert_ptr_equal(gate.head, conn);
    queue_text(conn, "held ");
    queue_text(conn, "too");
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "before ");
    /* Holding it again changes nothing: one mark, one place in the list. */
    party__conn_hold(conn, &gate);
    assert_ptr_equal(gate.head, conn);
    assert_ptr_equal(gate.tail, conn);
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "");

    party__conn_gate_release(&gate);
    assert_null(gate.head);
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "held too");
    /* Released, the connection sends as before. */
    queue_text(conn, "after");
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "after");
    close(fd);
    pump(rt);
    party_runtime_free(rt);
}

static void test_dropped_gate_cuts_the_queue_at_the_mark_and_fails_the_connection(void **state) {
    party_runtime *rt = runtime_new();
    party__conn_gate gate = {NULL, NULL};
    char got[4096];
    int fd;
    party_conn *conn = conn_open(rt, &fd);
    (void)state;

    /* Queued before the mark, not written yet when the commit fails. */
    queue_text(conn, "kept|");
    party__conn_hold(conn, &gate);
    queue_text(conn, "lost");
    queue_text(conn, "lost too");
    party__conn_gate_drop(&gate);
    assert_null(gate.head);
    /* What was in front of the mark, then a 500 instead of the rest (an
     * HTTP connection), and the end. */
    client_read_all(rt, fd, got, sizeof(got));
    assert_memory_equal(got, "kept|HTTP/1.1 500", 17);
    assert_null(strstr(got, "lost"));
    assert_non_null(strstr(got, "commit failed"));
    party_runtime_free(rt);
}

static void test_held_frames_sit_in_the_ring_and_an_idle_queue_holds_nothing(void **state) {
    party_runtime *rt = runtime_new();
    party__conn_gate gate = {NULL, NULL};
    char got[4096];
    int fd, i;
    party_conn *conn = conn_open(rt, &fd);
    (void)state;

    /* Nothing queued: no queue at all. */
    assert_null(conn->out);
    /* One frame held: the queue's inline slot takes it (no heap ring). */
    party__conn_hold(conn, &gate);
    queue_text(conn, "x");
    assert_non_null(conn->out);
    assert_int_equal(conn->out->cap, 1);
    assert_int_equal(conn->out->held, 1);
    party__conn_gate_release(&gate);
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "x");
    /* Written: the queue went back to the loop's pool. */
    assert_null(conn->out);
    /* Many: the ring grows to hold them, the frames themselves are only
     * referenced; it keeps its size for the next batch. */
    party__conn_hold(conn, &gate);
    for (i = 0; i < 8; i++)
        queue_text(conn, "y");
    assert_int_equal(conn->out->len, 8);
    assert_int_equal(conn->out->cap, 8);
    party__conn_gate_release(&gate);
    client_take(rt, fd, got, sizeof(got));
    assert_string_equal(got, "yyyyyyyy");
    assert_non_null(conn->out);
    assert_int_equal(conn->out->len, 0);
    /* Idle (its room hibernates): the queue and its ring go, and no gate
     * link is left. */
    party__conn_trim(conn);
    assert_null(conn->out);
    assert_null(conn->gate_next);
    close(fd);
    pump(rt);
    party_runtime_free(rt);
}

/* ---- what an idle WebSocket holds ---- */

static void echo_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    (void)room;
    (void)party_conn_send(conn, data, len, binary);
}

static const party_def echo_def = {
    .name = "echo",
    .on_message = echo_message,
};

/* Runs the harness until nothing is left to do, then waits (at most 5 s)
 * until fd has n bytes to read, and reads them into out. */
static void ws_client_take(party_test *t, int fd, unsigned char *out, size_t n) {
    size_t len = 0;
    int waited = 0;
    while (len < n) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        assert_int_equal(party_test_run_until_idle(t), 0);
        if (poll(&p, 1, 1) == 0) {
            assert_true(++waited < 5000);
            continue;
        }
        r = recv(fd, out + len, n - len, MSG_DONTWAIT);
        assert_true(r > 0);
        len += (size_t)r;
    }
}

static void write_all(int fd, const void *data, size_t len) {
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* A WebSocket to the echo party over a socketpair the runtime adopted:
 * the server's connection, and in *client the client's end (the 101 read). */
static party_conn *ws_open(party_test *t, int *client) {
    static const char upgrade[] = "GET /parties/echo/r?_pk=idle-1 HTTP/1.1\r\nHost: x\r\n"
                                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
    static const char reply[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    party__loop *lp = party__runtime_loop(party_test_runtime(t));
    unsigned char got[sizeof(reply) - 1];
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(party__conn_adopt(lp, sv[0], 0), 0);
    write_all(sv[1], upgrade, sizeof(upgrade) - 1);
    ws_client_take(t, sv[1], got, sizeof(got));
    assert_memory_equal(got, reply, sizeof(got));
    *client = sv[1];
    found = NULL;
    party__conn_foreach(lp, find_one);
    assert_non_null(found);
    assert_int_equal(found->phase, PARTY__CONN_OPEN);
    return found;
}

/* A masked text frame of text (at most 125 bytes) into out; its length. */
static size_t masked_text(unsigned char *out, const char *text) {
    static const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
    size_t n = strlen(text), i;
    out[0] = 0x81;
    out[1] = (unsigned char)(0x80 | n);
    memcpy(out + 2, key, 4);
    for (i = 0; i < n; i++)
        out[6 + i] = (unsigned char)(text[i] ^ key[i % 4]);
    return 6 + n;
}

static void test_an_idle_websocket_holds_neither_queue_nor_busy_record(void **state) {
    party_test *t = party_test_new();
    unsigned char frame[64], got[7];
    party_conn *conn;
    size_t n;
    int fd;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &echo_def), 0);
    conn = ws_open(t, &fd);
    /* Open and waiting: the handshake's session and timer went back. */
    assert_null(conn->busy);
    assert_null(conn->out);
    assert_null(conn->extra);
    /* Half a frame: the reader keeps it in a busy record... */
    n = masked_text(frame, "hello");
    write_all(fd, frame, 4);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_true(conn->busy != NULL && conn->busy->reading_frame);
    /* ... until the rest comes: then the message is whole, and the record
     * and the reply's queue are gone again. */
    write_all(fd, frame + 4, n - 4);
    ws_client_take(t, fd, got, sizeof(got));
    assert_memory_equal(got, "\x81\x05hello", sizeof(got));
    assert_null(conn->busy);
    assert_null(conn->out);
    close(fd);
    assert_int_equal(party_test_run_until_idle(t), 0);
    party_test_free(t);
}

static void test_the_keepalive_sweep_takes_back_a_grown_ring(void **state) {
    party_test *t = party_test_new();
    party__conn_gate gate = {NULL, NULL};
    unsigned char got[8 * 3];
    party_conn *conn;
    int fd, i;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &echo_def), 0);
    conn = ws_open(t, &fd);
    /* A burst held and released at once: the ring grows, and stays once
     * written (a busy connection keeps it). */
    party__conn_hold(conn, &gate);
    for (i = 0; i < 8; i++) {
        party__buf *frame = party__ws_frame_new(NULL, PARTY__WS_TEXT, "y", 1);
        assert_non_null(frame);
        assert_int_equal(party__conn_queue(conn, frame), 0);
        party__buf_release(frame);
    }
    party__conn_gate_release(&gate);
    ws_client_take(t, fd, got, 8 * 3);
    assert_non_null(conn->out);
    assert_int_equal(conn->out->len, 0);
    assert_true(conn->out->cap > 1);
    /* The sweep finds its queue empty: the queue goes. */
    party__keepalive_sweep(party__runtime_loop(party_test_runtime(t)));
    assert_null(conn->out);
    close(fd);
    assert_int_equal(party_test_run_until_idle(t), 0);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim_frees_spare_sessions_and_the_idle_timer_block),
        cmocka_unit_test(test_trim_keeps_the_timer_block_while_a_timer_is_armed),
        cmocka_unit_test(test_output_behind_the_mark_waits_for_the_release),
        cmocka_unit_test(test_dropped_gate_cuts_the_queue_at_the_mark_and_fails_the_connection),
        cmocka_unit_test(test_held_frames_sit_in_the_ring_and_an_idle_queue_holds_nothing),
        cmocka_unit_test(test_an_idle_websocket_holds_neither_queue_nor_busy_record),
        cmocka_unit_test(test_the_keepalive_sweep_takes_back_a_grown_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
