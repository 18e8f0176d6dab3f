/* The ABI field of party_config and party_def (src/runtime.c), and a
 * party's log lines (party_room_log, src/room_api.c): party_config_init and
 * PARTY_DEF_INIT record this header's ABI, 0 is read as it, and a runtime
 * refuses any other with a log line naming both ABIs; party_room_log writes
 * the runtime's kind of room line, filtered by log_level. Log lines are
 * read by pointing stderr at a temporary file around the call. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "party.h"
#include "party_test.h"

/* ---- stderr capture ---- */

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_start(void) {
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* What was written to stderr since capture_start (malloc'd, NUL-terminated);
 * stderr is the real one again. */
static char *capture_end(void) {
    off_t size;
    char *text;

    fflush(stderr);
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    size = lseek(fileno(capture_file), 0, SEEK_END);
    assert_true(size >= 0);
    text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fileno(capture_file), text, (size_t)size, 0), size);
    text[size] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return text;
}

static void assert_contains(const char *hay, const char *needle) {
    if (strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* "this libparty is 0.2.0 (ABI 2)", from the header's own numbers. */
static const char *this_libparty(void) {
    static char text[64];
    snprintf(text, sizeof(text), "this libparty is %s (ABI %d)", PARTY_VERSION_STRING,
             PARTY_ABI_VERSION);
    return text;
}

/* ---- the ABI field ---- */

static void test_config_init_records_this_headers_abi(void **state) {
    party_config cfg;
    (void)state;

    memset(&cfg, 0xff, sizeof(cfg));
    party_config_init(&cfg);
    assert_int_equal(cfg.abi, PARTY_ABI_VERSION);
}

static void test_def_init_records_this_headers_abi(void **state) {
    static const party_def def = {PARTY_DEF_INIT, .name = "abi"};
    (void)state;

    assert_int_equal(def.abi, PARTY_ABI_VERSION);
    assert_string_equal(def.name, "abi");
}

static void test_runtime_takes_a_config_of_its_abi_or_0(void **state) {
    party_config cfg;
    party_runtime *rt;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    party_runtime_free(rt);
    cfg.abi = 0;
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    party_runtime_free(rt);
}

static void test_runtime_refuses_a_config_of_a_newer_abi_naming_both(void **state) {
    party_config cfg;
    party_runtime *rt;
    char expected[64], *log;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    cfg.abi = PARTY_ABI_VERSION + 1;
    capture_start();
    rt = party_runtime_new(&cfg);
    log = capture_end();
    assert_null(rt);
    snprintf(expected, sizeof(expected), "the party_config is ABI %d;", PARTY_ABI_VERSION + 1);
    assert_contains(log, expected);
    assert_contains(log, this_libparty());
    free(log);
}

static void test_runtime_refuses_abi_1_which_had_no_field(void **state) {
    party_config cfg;
    party_runtime *rt;
    char *log;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    cfg.abi = 1;
    capture_start();
    rt = party_runtime_new(&cfg);
    log = capture_end();
    assert_null(rt);
    assert_contains(log, "the party_config is ABI 1;");
    free(log);
}

static void test_harness_refuses_a_config_of_a_newer_abi(void **state) {
    party_config cfg;
    party_test *t;
    char *log;
    (void)state;

    party_config_init(&cfg);
    cfg.abi = PARTY_ABI_VERSION + 1;
    capture_start();
    t = party_test_new_with(&cfg);
    log = capture_end();
    assert_null(t);
    assert_contains(log, this_libparty());
    free(log);
}

static void test_add_takes_a_def_of_its_abi_or_0(void **state) {
    static const party_def current = {PARTY_DEF_INIT, .name = "current"};
    static const party_def zero = {.name = "zero"};
    party_test *t = party_test_new();
    party_test_response res;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &current), 0);
    assert_int_equal(party_test_add(t, &zero), 0);
    /* Registered: the room answers (404: no on_request), not the router
     * (400: unknown party). */
    assert_int_equal(party_test_request(t, "GET", "/parties/zero/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 404);
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_add_refuses_a_def_of_a_newer_abi_naming_both(void **state) {
    static const party_def newer = {.abi = PARTY_ABI_VERSION + 1, .name = "newer"};
    party_test *t = party_test_new();
    party_test_response res;
    char expected[64], *log;
    int r;
    (void)state;

    assert_non_null(t);
    capture_start();
    r = party_test_add(t, &newer);
    log = capture_end();
    assert_int_equal(r, PARTY_EINVAL);
    snprintf(expected, sizeof(expected), "a party_def of ABI %d;", PARTY_ABI_VERSION + 1);
    assert_contains(log, expected);
    assert_contains(log, this_libparty());
    free(log);
    /* Not registered: the router does not know the party. */
    assert_int_equal(party_test_request(t, "GET", "/parties/newer/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 400);
    party_test_response_free(&res);
    party_test_free(t);
}

/* An ABI 2 definition ends where ABI 3's fields (synced state and RPC)
 * begin: whatever lies after it is not read. Here those bytes say
 * "sync" and point at no methods table; the room must not speak the
 * Agents protocol, and an rpc frame is an ordinary message. */
static void older_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)room;
    (void)req;
    party_conn_send_text(conn, "hello");
}

static void older_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    (void)room;
    party_conn_send(conn, data, len, binary);
}

static void test_add_reads_an_abi_2_def_without_abi_3s_fields(void **state) {
    static const party_def older = {
        .abi = 2,
        .name = "older",
        .on_connect = older_connect,
        .on_message = older_message,
        .sync = 1,
        .rpc_methods = (const party_rpc_method *)(uintptr_t)1,
    };
    static const char rpc[] = "{\"type\":\"rpc\",\"id\":\"1\",\"method\":\"m\",\"args\":[]}";
    party_test *t = party_test_new();
    party_test_conn *c;
    char *text = NULL;
    int status = 0;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &older), 0);
    c = party_test_connect(t, "/parties/older/r", &status);
    assert_non_null(c);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "hello"); /* no identity frame first */
    free(text);
    assert_int_equal(party_test_send_text(c, rpc), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, rpc);
    free(text);
    party_test_conn_free(c);
    party_test_free(t);
}

static void room_answers(party_room *room, const party_request *req, party_response *res) {
    (void)room;
    (void)req;
    party_response_text(res, 200, "room");
}

/* An ABI 2 configuration has no agents_prefix: its runtime serves rooms
 * at its prefix only, whatever lies where ABI 3 put the field. */
static void test_runtime_reads_an_abi_2_config_without_the_agents_prefix(void **state) {
    static const party_def current = {PARTY_DEF_INIT, .name = "current",
                                      .on_request = room_answers};
    party_config cfg;
    party_test *t;
    party_test_response res;
    (void)state;

    party_config_init(&cfg);
    cfg.abi = 2;
    cfg.agents_prefix = "parties-too";
    cfg.log_level = PARTY_LOG_WARN;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &current), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties-too/current/r", NULL, NULL, 0, &res),
                     0);
    assert_int_equal(res.status, 404); /* not a room's path */
    party_test_response_free(&res);
    assert_int_equal(party_test_request(t, "GET", "/agents/current/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 404);
    party_test_response_free(&res);
    party_test_free(t);
    /* The same configuration of ABI 3 has the prefix. */
    cfg.abi = PARTY_ABI_VERSION;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &current), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties-too/current/r", NULL, NULL, 0, &res),
                     0);
    assert_int_equal(res.status, 200); /* the room's answer */
    party_test_response_free(&res);
    party_test_free(t);
}

static void echo_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)room;
    (void)conn;
    (void)req;
}

/* The handshake's status (101 or the refusal) for a party_def of abi
 * naming only https://only.example in its allowed_origins, under a config
 * of cfg_abi naming the same, from https://elsewhere.example. */
static int handshake_from_elsewhere(unsigned def_abi, unsigned cfg_abi) {
    party_def def = {
        .abi = def_abi,
        .name = "origins",
        .on_connect = echo_connect,
        /* ABI 4's field: read only from a struct that has it. */
        .allowed_origins = "https://only.example",
    };
    party_config cfg;
    party_test *t;
    party_test_conn *c;
    int status = 0;

    party_config_init(&cfg);
    cfg.abi = cfg_abi;
    cfg.allowed_origins = "https://only.example";
    cfg.log_level = PARTY_LOG_WARN;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &def), 0);
    c = party_test_connect_with_headers(t, "/parties/origins/r",
                                        "Origin: https://elsewhere.example\r\n", &status);
    party_test_conn_free(c);
    party_test_free(t);
    return status;
}

/* allowed_origins is ABI 4 (a party or program built against ABI 3 lacks
 * it): from a struct of ABI 3 it is not read, whatever lies there. */
static void test_abi_3_structs_have_no_allowed_origins(void **state) {
    (void)state;
    assert_int_equal(handshake_from_elsewhere(3, 3), 101);
    assert_int_equal(handshake_from_elsewhere(PARTY_ABI_VERSION, 3), 403); /* the party's */
    assert_int_equal(handshake_from_elsewhere(3, PARTY_ABI_VERSION), 403); /* the runtime's */
}

/* ---- party_room_log ---- */

/* GET /parties/logger/<room>?level=N&text=T logs T at level N, through a
 * format, and answers 200. */
static void logger_request(party_room *room, const party_request *req, party_response *res) {
    const char *level = party_request_query(req, "level");
    const char *text = party_request_query(req, "text");
    party_room_log(room, level != NULL ? atoi(level) : PARTY_LOG_INFO, "%s (%d)",
                   text != NULL ? text : "", 42);
    party_response_text(res, 200, "logged");
}

static const party_def logger_def = {
    PARTY_DEF_INIT,
    .name = "logger",
    .on_request = logger_request,
};

/* Runs GET target on a harness at log_level and returns what it logged. */
static char *log_of(int log_level, const char *target) {
    party_config cfg;
    party_test *t;
    party_test_response res;
    char *log;

    party_config_init(&cfg);
    cfg.log_level = log_level;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &logger_def), 0);
    capture_start();
    assert_int_equal(party_test_request(t, "GET", target, NULL, NULL, 0, &res), 0);
    log = capture_end();
    assert_int_equal(res.status, 200);
    party_test_response_free(&res);
    party_test_free(t);
    return log;
}

static void test_room_log_line_names_level_party_and_room(void **state) {
    char *log;
    (void)state;

    log = log_of(PARTY_LOG_INFO, "/parties/logger/hall?level=1&text=disk%20full");
    assert_contains(log, " warn  room logger/hall: disk full (42)\n");
    free(log);
    log = log_of(PARTY_LOG_INFO, "/parties/logger/hall?level=0&text=broken");
    assert_contains(log, " error room logger/hall: broken (42)\n");
    free(log);
}

static void test_room_log_follows_the_runtimes_log_level(void **state) {
    char *log;
    (void)state;

    log = log_of(PARTY_LOG_INFO, "/parties/logger/hall?level=3&text=details");
    assert_null(strstr(log, "details"));
    free(log);
    log = log_of(PARTY_LOG_DEBUG, "/parties/logger/hall?level=3&text=details");
    assert_contains(log, " debug room logger/hall: details (42)\n");
    free(log);
    log = log_of(PARTY_LOG_ERROR, "/parties/logger/hall?level=1&text=warning");
    assert_null(strstr(log, "warning"));
    free(log);
}

static void test_room_log_ignores_a_level_out_of_range(void **state) {
    char *log;
    (void)state;

    log = log_of(PARTY_LOG_DEBUG, "/parties/logger/hall?level=4&text=too%20high");
    assert_null(strstr(log, "too high"));
    free(log);
    log = log_of(PARTY_LOG_DEBUG, "/parties/logger/hall?level=-1&text=too%20low");
    assert_null(strstr(log, "too low"));
    free(log);
}

static void test_room_log_of_an_unnamed_room_names_its_id(void **state) {
    party_test *t = party_test_new();
    party_test_response res;
    char id[PARTY_ID_MAX], expected[160], *log;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &logger_def), 0);
    party_test_new_room_id(id);
    capture_start();
    assert_int_equal(party_test_request_room_id(t, "logger", id, "GET", "/x?level=1&text=no%20name",
                                                NULL, NULL, 0, &res),
                     0);
    log = capture_end();
    /* Logging did not read the name: the answer is not the 500 of a room
     * that did. */
    assert_int_equal(res.status, 200);
    snprintf(expected, sizeof(expected), "room logger/%s: no name (42)\n", id);
    assert_contains(log, expected);
    party_test_response_free(&res);
    free(log);
    party_test_free(t);
}

static void test_room_log_cuts_a_long_message(void **state) {
    char target[3000], *log, *line, *end;
    size_t n;
    (void)state;

    n = (size_t)snprintf(target, sizeof(target), "/parties/logger/hall?level=1&text=");
    memset(target + n, 'x', 2500);
    target[n + 2500] = '\0';
    log = log_of(PARTY_LOG_INFO, target);
    line = strstr(log, "room logger/hall: xxx");
    assert_non_null(line);
    end = strchr(line, '\n');
    assert_non_null(end);
    assert_true(end - line < 1024);
    free(log);
}

static void test_room_log_of_null_room_writes_nothing(void **state) {
    char *log;
    (void)state;

    capture_start();
    party_room_log(NULL, PARTY_LOG_ERROR, "nobody %d", 1);
    log = capture_end();
    assert_string_equal(log, "");
    free(log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_init_records_this_headers_abi),
        cmocka_unit_test(test_def_init_records_this_headers_abi),
        cmocka_unit_test(test_runtime_takes_a_config_of_its_abi_or_0),
        cmocka_unit_test(test_runtime_refuses_a_config_of_a_newer_abi_naming_both),
        cmocka_unit_test(test_runtime_refuses_abi_1_which_had_no_field),
        cmocka_unit_test(test_harness_refuses_a_config_of_a_newer_abi),
        cmocka_unit_test(test_add_takes_a_def_of_its_abi_or_0),
        cmocka_unit_test(test_add_refuses_a_def_of_a_newer_abi_naming_both),
        cmocka_unit_test(test_add_reads_an_abi_2_def_without_abi_3s_fields),
        cmocka_unit_test(test_runtime_reads_an_abi_2_config_without_the_agents_prefix),
        cmocka_unit_test(test_abi_3_structs_have_no_allowed_origins),
        cmocka_unit_test(test_room_log_line_names_level_party_and_room),
        cmocka_unit_test(test_room_log_follows_the_runtimes_log_level),
        cmocka_unit_test(test_room_log_ignores_a_level_out_of_range),
        cmocka_unit_test(test_room_log_of_an_unnamed_room_names_its_id),
        cmocka_unit_test(test_room_log_cuts_a_long_message),
        cmocka_unit_test(test_room_log_of_null_room_writes_nothing),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
