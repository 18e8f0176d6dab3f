/* Tests for src/party_test.c: the harness itself — fake WebSocket
 * connections (handshake, echo, ping, close codes both ways, drops), HTTP
 * requests (by path and by room id), bounded waits, the virtual clock,
 * eviction, and restarts that keep the data directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "party.h"
#include "party_test.h"

/* ---- the echo party: what the tests drive ---- */

static struct {
    int closes;
    int close_code;
    char close_reason[PARTY_MAX_CLOSE_REASON + 1];
    int close_was_clean;
    int starts;
    int frees;
} seen;

static int echo_start(party_room *room, const char *props) {
    (void)props;
    seen.starts++;
    party_room_set_state(room, malloc(1));
    return 0;
}

static void echo_free(void *state) {
    seen.frees++;
    free(state);
}

static void echo_connect(party_room *room, party_conn *conn, const party_request *req) {
    char text[300];
    (void)req;
    snprintf(text, sizeof(text), "hello %s in %s", party_conn_id(conn), party_room_name(room));
    party_conn_send_text(conn, text);
}

static void echo_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    (void)room;
    if (!binary && len > 6 && memcmp(data, "close:", 6) == 0) {
        char code[8] = {0};
        memcpy(code, (const char *)data + 6, len - 6 < 7 ? len - 6 : 7);
        party_conn_close(conn, atoi(code), "bye");
        return;
    }
    party_conn_send(conn, data, len, binary);
}

static void echo_close(party_room *room, party_conn *conn, int code, const char *reason,
                       int was_clean) {
    (void)room;
    (void)conn;
    seen.closes++;
    seen.close_code = code;
    snprintf(seen.close_reason, sizeof(seen.close_reason), "%s", reason);
    seen.close_was_clean = was_clean;
}

static void echo_request(party_room *room, const party_request *req, party_response *res) {
    const char *method = party_request_method(req);
    const char *path = party_request_path(req);
    size_t len;
    const void *body = party_request_body(req, &len);
    char text[600];

    if (strstr(path, "/now") != NULL) {
        snprintf(text, sizeof(text), "%lld", (long long)party_now_ms(room));
        party_response_set_body(res, text, strlen(text));
        return;
    }
    if (strstr(path, "/kv") != NULL) {
        void *val = NULL;
        size_t val_len = 0;
        if (strcmp(method, "POST") == 0) {
            party_response_set_status(res, party_kv_put(room, "k", body, len) == 0 ? 204 : 500);
            return;
        }
        if (party_kv_get(room, "k", &val, &val_len) != 0) {
            party_response_set_status(res, 404);
            return;
        }
        party_response_set_body(res, val, val_len);
        free(val);
        return;
    }
    if (strcmp(method, "POST") == 0) {
        party_response_set_header(res, "X-Echo", "yes");
        party_response_set_body(res, body, len);
        return;
    }
    snprintf(text, sizeof(text), "%s %s name=%s", method, party_request_url(req),
             party_room_name(room));
    party_response_set_header(res, "Content-Type", "text/plain");
    party_response_set_body(res, text, strlen(text));
}

static const party_def echo_def = {
    .name = "echo",
    .on_start = echo_start,
    .on_connect = echo_connect,
    .on_message = echo_message,
    .on_close = echo_close,
    .on_request = echo_request,
    .free_state = echo_free,
};

static int setup(void **state) {
    party_test *t = party_test_new();
    memset(&seen, 0, sizeof(seen));
    if (t == NULL || party_test_add(t, &echo_def) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* Connects and consumes the greeting. */
static party_test_conn *open_echo(party_test *t, const char *target) {
    int status = 0;
    char *text = NULL;
    party_test_conn *c = party_test_connect(t, target, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_non_null(strstr(text, "hello "));
    free(text);
    return c;
}

/* ---- WebSocket ---- */

static void test_connect_greets_with_id_and_room_name(void **state) {
    party_test *t = *state;
    int status = 0;
    char *text = NULL;
    party_test_conn *c = party_test_connect(t, "/parties/echo/lobby?_pk=alice", &status);

    assert_non_null(c);
    assert_int_equal(status, 101);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "hello alice in lobby");
    free(text);
    party_test_conn_free(c);
}

static void test_text_and_binary_messages_echo_with_their_type(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/r1");
    const unsigned char bytes[] = {0, 1, 2, 0xff, 0xfe};
    void *data = NULL;
    size_t len = 0;
    int binary = -1;

    assert_int_equal(party_test_send_text(c, "hi there"), 0);
    assert_int_equal(party_test_recv(c, &data, &len, &binary), 0);
    assert_int_equal(binary, 0);
    assert_int_equal(len, 8);
    assert_memory_equal(data, "hi there", 8);
    assert_int_equal(((char *)data)[len], '\0');
    free(data);

    assert_int_equal(party_test_send(c, bytes, sizeof(bytes), 1), 0);
    assert_int_equal(party_test_recv(c, &data, &len, &binary), 0);
    assert_int_equal(binary, 1);
    assert_int_equal(len, sizeof(bytes));
    assert_memory_equal(data, bytes, sizeof(bytes));
    free(data);
    party_test_conn_free(c);
}

static void test_messages_sent_together_arrive_in_order(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/r2");
    char want[16], *text = NULL;
    int i;

    for (i = 0; i < 20; i++) {
        snprintf(want, sizeof(want), "m%d", i);
        assert_int_equal(party_test_send_text(c, want), 0);
    }
    for (i = 0; i < 20; i++) {
        snprintf(want, sizeof(want), "m%d", i);
        assert_int_equal(party_test_recv_text(c, &text), 0);
        assert_string_equal(text, want);
        free(text);
    }
    party_test_conn_free(c);
}

static void test_large_message_round_trips(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/big");
    size_t n = 3 * 1024 * 1024 + 17, len = 0, i;
    unsigned char *big = malloc(n);
    void *data = NULL;
    int binary = 0;

    assert_non_null(big);
    for (i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 31 + 7);
    assert_int_equal(party_test_send(c, big, n, 1), 0);
    assert_int_equal(party_test_recv(c, &data, &len, &binary), 0);
    assert_int_equal(len, n);
    assert_int_equal(binary, 1);
    assert_memory_equal(data, big, n);
    free(data);
    free(big);
    party_test_conn_free(c);
}

static void test_ping_gets_pong_without_waking_the_room(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/pinged");
    int starts = seen.starts;

    assert_int_equal(party_test_ping(c, "abc", 3), 0);
    assert_int_equal(party_test_ping(c, NULL, 0), 0);
    assert_int_equal(party_test_ping(c, "x", 126), PARTY_EINVAL);
    assert_int_equal(seen.starts, starts);
    party_test_conn_free(c);
}

static void test_upgrade_refused_returns_null_with_status(void **state) {
    party_test *t = *state;
    int status = 0;

    assert_null(party_test_connect(t, "/parties/nope/r", &status));
    assert_int_equal(status, 400);
    assert_null(party_test_connect(t, "/elsewhere", &status));
    assert_int_equal(status, 404);
    assert_null(party_test_connect(t, "/parties/echo/r?_pk=", &status));
    assert_int_equal(status, 400);
}

static void test_client_close_is_echoed_and_reported_clean(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/closing");
    const char *reason = NULL;
    int code = 0;
    void *data = NULL;

    assert_int_equal(party_test_close_info(c, &code, &reason), PARTY_ESTATE);
    assert_int_equal(party_test_close(c, 4000, "done"), 0);
    assert_int_equal(party_test_close_info(c, &code, &reason), 0);
    assert_int_equal(code, 4000);
    assert_string_equal(reason, "done");
    assert_int_equal(seen.closes, 1);
    assert_int_equal(seen.close_code, 4000);
    assert_string_equal(seen.close_reason, "done");
    assert_int_equal(seen.close_was_clean, 1);
    assert_int_equal(party_test_recv(c, &data, NULL, NULL), PARTY_ECLOSED);
    assert_int_equal(party_test_send_text(c, "late"), PARTY_ECLOSED);
    assert_int_equal(party_test_close(c, 1000, NULL), PARTY_ECLOSED);
    party_test_conn_free(c);
}

static void test_close_without_code_is_1005(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/nocode");
    int code = 0;

    assert_int_equal(party_test_close(c, 0, NULL), 0);
    assert_int_equal(party_test_close_info(c, &code, NULL), 0);
    assert_int_equal(code, 1005);
    assert_int_equal(seen.close_code, 1005);
    party_test_conn_free(c);
}

static void test_server_close_code_reaches_the_client(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/kicked");
    const char *reason = NULL;
    int code = 0;
    char *text = NULL;

    assert_int_equal(party_test_send_text(c, "close:4001"), 0);
    assert_int_equal(party_test_recv_text(c, &text), PARTY_ECLOSED);
    assert_int_equal(party_test_close_info(c, &code, &reason), 0);
    assert_int_equal(code, 4001);
    assert_string_equal(reason, "bye");
    /* The harness answered the Close like a browser: the room sees it. */
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(seen.closes, 1);
    assert_int_equal(seen.close_code, 4001);
    assert_int_equal(seen.close_was_clean, 1);
    party_test_conn_free(c);
}

static void test_drop_reports_1006_unclean(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/dropped");
    int code = 0;

    assert_int_equal(party_test_drop(c), 0);
    assert_int_equal(seen.closes, 1);
    assert_int_equal(seen.close_code, 1006);
    assert_int_equal(seen.close_was_clean, 0);
    assert_int_equal(party_test_close_info(c, &code, NULL), 0);
    assert_int_equal(code, 1006);
    assert_int_equal(party_test_drop(c), 0);
    party_test_conn_free(c);
}

static void test_recv_times_out_and_connection_stays_usable(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/quiet");
    void *data = NULL;
    char *text = NULL;

    party_test_set_timeout(t, 100);
    assert_int_equal(party_test_recv(c, &data, NULL, NULL), PARTY_TEST_ETIMEDOUT);
    assert_null(data);
    assert_string_equal(party_test_strerror(PARTY_TEST_ETIMEDOUT),
                        "timed out waiting (party_test_set_timeout)");
    party_test_set_timeout(t, PARTY_TEST_TIMEOUT_MS);
    assert_int_equal(party_test_send_text(c, "still here"), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "still here");
    free(text);
    party_test_conn_free(c);
}

static void test_conn_free_of_open_connection_is_a_drop(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_echo(t, "/parties/echo/freed");

    party_test_conn_free(c);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(seen.closes, 1);
    assert_int_equal(seen.close_code, 1006);
    party_test_conn_free(NULL);
}

static void test_many_connections_stay_independent(void **state) {
    party_test *t = *state;
    party_test_conn *c[80];
    char target[64], want[32], *text = NULL;
    size_t i, n = sizeof(c) / sizeof(c[0]);

    for (i = 0; i < n; i++) {
        snprintf(target, sizeof(target), "/parties/echo/crowd?_pk=c%zu", i);
        c[i] = open_echo(t, target);
    }
    assert_int_equal(party_test_run_until_idle(t), 0);
    for (i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "to %zu", i);
        assert_int_equal(party_test_send_text(c[i], want), 0);
    }
    for (i = n; i-- > 0;) {
        snprintf(want, sizeof(want), "to %zu", i);
        assert_int_equal(party_test_recv_text(c[i], &text), 0);
        assert_string_equal(text, want);
        free(text);
    }
    for (i = 0; i < n; i++)
        party_test_conn_free(c[i]);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(seen.closes, (int)n);
}

/* ---- HTTP ---- */

static void test_http_get_answers_with_headers_and_body(void **state) {
    party_test *t = *state;
    party_test_response res;
    char *type;

    assert_int_equal(party_test_request(t, "GET", "/parties/echo/web/x?y=1", NULL, NULL, 0, &res),
                     0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "GET /parties/echo/web/x?y=1 name=web");
    assert_int_equal(res.body_len, strlen(res.body));
    type = party_test_response_header(&res, "content-type");
    assert_non_null(type);
    assert_string_equal(type, "text/plain");
    free(type);
    assert_null(party_test_response_header(&res, "X-Missing"));
    party_test_response_free(&res);
    assert_null(res.body);
    party_test_response_free(&res);
}

static void test_http_post_body_and_extra_headers(void **state) {
    party_test *t = *state;
    party_test_response res;
    char *echo;
    static const char body[] = "payload\0with nul";

    assert_int_equal(party_test_request(t, "POST", "/parties/echo/web", "X-Test: 1\r\n", body,
                                        sizeof(body), &res),
                     0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, sizeof(body));
    assert_memory_equal(res.body, body, sizeof(body));
    echo = party_test_response_header(&res, "X-Echo");
    assert_string_equal(echo, "yes");
    free(echo);
    party_test_response_free(&res);
}

static void test_http_head_and_errors(void **state) {
    party_test *t = *state;
    party_test_response res;

    assert_int_equal(party_test_request(t, "HEAD", "/parties/echo/web", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, 0);
    party_test_response_free(&res);
    assert_int_equal(party_test_request(t, "GET", "/parties/nope/web", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 400);
    party_test_response_free(&res);
    assert_int_equal(party_test_request(t, "GET", "/", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 404);
    party_test_response_free(&res);
}

static void test_request_by_room_id_reaches_the_named_room(void **state) {
    party_test *t = *state;
    party_test_response res;
    char id[PARTY_ID_MAX];

    assert_int_equal(party_test_request(t, "GET", "/parties/echo/by-id", NULL, NULL, 0, &res), 0);
    party_test_response_free(&res);
    party_room_id_from_name("echo", "by-id", id);
    assert_int_equal(
        party_test_request_room_id(t, "echo", id, "GET", "/rest?q=1", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "GET /parties/echo/_/rest?q=1 name=by-id");
    party_test_response_free(&res);
    /* A network client cannot address rooms by id: the header is ignored. */
    {
        char header[128];
        snprintf(header, sizeof(header), "X-Partyd-Room-Id: %s\r\n", id);
        assert_int_equal(party_test_request(t, "GET", "/parties/echo/other", header, NULL, 0, &res),
                         0);
        assert_string_equal(res.body, "GET /parties/echo/other name=other");
        party_test_response_free(&res);
    }
}

/* ---- time, memory, restarts ---- */

static void test_virtual_clock_moves_only_when_advanced(void **state) {
    party_test *t = *state;

    assert_int_equal(party_test_now(t), PARTY_TEST_EPOCH_MS);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_now(t), PARTY_TEST_EPOCH_MS);
    assert_int_equal(party_test_advance(t, 1500), 0);
    assert_int_equal(party_test_now(t), PARTY_TEST_EPOCH_MS + 1500);
    assert_int_equal(party_test_advance(t, -1), PARTY_EINVAL);
}

/* A party reads the harness's virtual clock through party_now_ms, so an
 * alarm it computes from "now" fires when the test advances time. */
static void test_party_now_ms_is_the_virtual_clock(void **state) {
    party_test *t = *state;
    party_test_response res;
    char expect[32];

    assert_int_equal(party_test_request(t, "GET", "/parties/echo/clock/now", NULL, NULL, 0, &res),
                     0);
    snprintf(expect, sizeof(expect), "%lld", (long long)PARTY_TEST_EPOCH_MS);
    assert_string_equal(res.body, expect);
    party_test_response_free(&res);
    assert_int_equal(party_test_advance(t, 2500), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties/echo/clock/now", NULL, NULL, 0, &res),
                     0);
    snprintf(expect, sizeof(expect), "%lld", (long long)PARTY_TEST_EPOCH_MS + 2500);
    assert_string_equal(res.body, expect);
    party_test_response_free(&res);
}

static void test_evict_and_in_memory(void **state) {
    party_test *t = *state;
    party_test_conn *c;
    party_test_response res;

    assert_int_equal(party_test_in_memory(t, "echo", "mem"), 0);
    assert_int_equal(party_test_evict(t, "echo", "mem"), PARTY_ENOTFOUND);
    c = open_echo(t, "/parties/echo/mem");
    assert_int_equal(party_test_in_memory(t, "echo", "mem"), 1);
    assert_int_equal(party_test_evict(t, "echo", "mem"), PARTY_ESTATE);
    assert_int_equal(party_test_close(c, 1000, NULL), 0);
    party_test_conn_free(c);
    assert_int_equal(seen.frees, 0);
    assert_int_equal(party_test_evict(t, "echo", "mem"), 0);
    assert_int_equal(seen.frees, 1);
    assert_int_equal(party_test_in_memory(t, "echo", "mem"), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties/echo/mem", NULL, NULL, 0, &res), 0);
    party_test_response_free(&res);
    assert_int_equal(seen.starts, 2);
    assert_int_equal(party_test_in_memory(t, "echo", "mem"), 1);
}

static void test_restart_keeps_data_dir_and_closes_old_connections(void **state) {
    party_test *t = *state;
    char dir[4096];
    party_test_response res;
    party_test_conn *c;
    party_runtime *before = party_test_runtime(t);
    struct stat st;
    int code = 0;

    snprintf(dir, sizeof(dir), "%s", party_test_data_dir(t));
    assert_int_equal(dir[0], '/');
    assert_int_equal(party_test_request(t, "POST", "/parties/echo/keep/kv", NULL, "kept", 4, &res),
                     0);
    assert_int_equal(res.status, 204);
    party_test_response_free(&res);
    c = open_echo(t, "/parties/echo/keep");
    assert_int_equal(party_test_advance(t, 1000), 0);

    assert_int_equal(party_test_restart(t), 0);
    assert_ptr_not_equal(party_test_runtime(t), before);
    assert_string_equal(party_test_data_dir(t), dir);
    assert_int_equal(party_test_now(t), PARTY_TEST_EPOCH_MS + 1000);
    assert_int_equal(seen.close_code, 1006);
    assert_int_equal(seen.frees, 1);
    assert_int_equal(party_test_close_info(c, &code, NULL), 0);
    assert_int_equal(code, 1006);
    assert_int_equal(party_test_send_text(c, "x"), PARTY_ECLOSED);
    assert_int_equal(party_test_in_memory(t, "echo", "keep"), 0);

    assert_int_equal(party_test_request(t, "GET", "/parties/echo/keep/kv", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "kept");
    party_test_response_free(&res);
    party_test_conn_free(c);
    assert_int_equal(stat(dir, &st), 0);
}

static void test_free_removes_the_data_dir(void **state) {
    party_test *t = party_test_new();
    char dir[4096], file[4096 + 16], id[PARTY_ID_MAX];
    party_test_response res;
    struct stat st;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &echo_def), 0);
    assert_int_equal(party_test_add(t, &echo_def), PARTY_EEXIST);
    snprintf(dir, sizeof(dir), "%s", party_test_data_dir(t));
    assert_int_equal(party_test_request(t, "POST", "/parties/echo/f/kv", NULL, "v", 1, &res), 0);
    party_test_response_free(&res);
    party_room_id_from_name("echo", "f", id);
    assert_int_equal(party_test_room_file(t, id, file, sizeof(file)), 0);
    /* The path its own file would have, in the data dir; its records are
     * in a shared file there. */
    assert_int_equal(strncmp(file, dir, strlen(dir)), 0);
    snprintf(file, sizeof(file), "%s/rooms-0.db", dir);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(party_test_room_file(t, "nope", file, sizeof(file)), PARTY_EINVAL);
    /* Left open on purpose: free takes care of it. */
    assert_non_null(party_test_connect(t, "/parties/echo/f", NULL));
    party_test_free(t);
    assert_int_not_equal(stat(dir, &st), 0);
    party_test_free(NULL);
}

static void test_new_with_config_applies_idle_timeout(void **state) {
    party_config cfg;
    party_test *t;
    party_test_response res;
    (void)state;

    party_config_init(&cfg);
    cfg.idle_timeout = 5;
    cfg.log_level = 1;
    cfg.data_dir = "/nonexistent/ignored";
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_string_not_equal(party_test_data_dir(t), "/nonexistent/ignored");
    assert_int_equal(party_test_add(t, &echo_def), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties/echo/short", NULL, NULL, 0, &res), 0);
    party_test_response_free(&res);
    assert_int_equal(party_test_advance(t, 4000), 0);
    assert_int_equal(party_test_in_memory(t, "echo", "short"), 1);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(party_test_in_memory(t, "echo", "short"), 0);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_greets_with_id_and_room_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_and_binary_messages_echo_with_their_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_messages_sent_together_arrive_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_message_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_gets_pong_without_waking_the_room, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refused_returns_null_with_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_close_is_echoed_and_reported_clean, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_without_code_is_1005, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_close_code_reaches_the_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_reports_1006_unclean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recv_times_out_and_connection_stays_usable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_conn_free_of_open_connection_is_a_drop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_connections_stay_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_get_answers_with_headers_and_body, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_post_body_and_extra_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_head_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_by_room_id_reaches_the_named_room, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_virtual_clock_moves_only_when_advanced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_party_now_ms_is_the_virtual_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_and_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_data_dir_and_closes_old_connections,
                                        setup, teardown),
        cmocka_unit_test(test_free_removes_the_data_dir),
        cmocka_unit_test(test_new_with_config_applies_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
