/* The name contract (DESIGN.md "Names", PartyServer PR #337), through the
 * test harness: a room addressed by name knows its name in every entry
 * point, also after eviction, after a restart and when it is addressed by id
 * only; the name is written to the room's storage before its first
 * on_start; unnamed rooms fail loudly (HTTP 500 with a message that says how
 * to fix it) until party_room_set_name(), which is idempotent for the same
 * name and refuses another. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"

/* ---- the names party: records party_room_name() in every callback ---- */

#define NAME_MAX_LEN 300

static struct {
    char start[NAME_MAX_LEN], connect[NAME_MAX_LEN], message[NAME_MAX_LEN];
    char close[NAME_MAX_LEN], request[NAME_MAX_LEN], alarm[NAME_MAX_LEN];
    char props[NAME_MAX_LEN];
    int starts, alarms;
    int read_in_start; /* on_start reads the name (off for unnamed-room tests) */
} rec;

/* Commits to fail from now on (the room's commit hook; runs on the commit's
 * worker thread, read here only after the commit completed). */
static int fail_commits;

static void record(char *slot, party_room *room) {
    const char *name = party_room_name(room);
    snprintf(slot, NAME_MAX_LEN, "%s", name != NULL ? name : "(null)");
}

static int failing_commit_hook(void *arg) {
    (void)arg;
    if (fail_commits > 0) {
        fail_commits--;
        return 1; /* turns the COMMIT into a ROLLBACK: the commit fails */
    }
    return 0;
}

static int names_start(party_room *room, const char *props) {
    rec.starts++;
    if (rec.read_in_start)
        record(rec.start, room);
    snprintf(rec.props, sizeof(rec.props), "%s", props != NULL ? props : "(null)");
    sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
    return 0;
}

static void names_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)conn;
    (void)req;
    record(rec.connect, room);
}

static void names_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    (void)data;
    (void)len;
    (void)binary;
    record(rec.message, room);
    party_conn_send_text(conn, rec.message);
}

static void names_close(party_room *room, party_conn *conn, int code, const char *reason,
                        int was_clean) {
    (void)conn;
    (void)code;
    (void)reason;
    (void)was_clean;
    record(rec.close, room);
}

static void names_request(party_room *room, const party_request *req, party_response *res) {
    const char *path = party_request_path(req);
    const char *want = party_request_query(req, "name");
    char text[600];

    if (party_request_query(req, "fail") != NULL)
        fail_commits = 1;
    if (strstr(path, "/noread") != NULL) {
        party_response_set_body(res, "ok", 2);
        return;
    }
    if (strstr(path, "/set") != NULL) {
        int first = party_room_set_name(room, want);
        int again = party_room_set_name(room, want);
        int other = party_room_set_name(room, "some-other-name");
        snprintf(text, sizeof(text), "set=%d again=%d other=%d", first, again, other);
        party_response_set_body(res, text, strlen(text));
        return;
    }
    if (strstr(path, "/write") != NULL)
        (void)party_kv_put(room, "w", "1", 1);
    record(rec.request, room);
    party_response_set_body(res, rec.request, strlen(rec.request));
}

static int names_alarm(party_room *room) {
    rec.alarms++;
    record(rec.alarm, room);
    return 0;
}

/* Props for on_start from a header, as an auth hook would derive them. */
static int names_before(const party_lobby *lobby, party_request *req, party_response *res) {
    const char *props = party_request_header(req, "X-Props");
    (void)lobby;
    (void)res;
    if (props != NULL)
        party_request_set_props(req, props);
    return PARTY_CONTINUE;
}

static const party_def names_def = {
    .name = "names",
    .on_start = names_start,
    .on_connect = names_connect,
    .on_message = names_message,
    .on_close = names_close,
    .on_request = names_request,
    .on_alarm = names_alarm,
    .before_connect = names_before,
    .before_request = names_before,
};

/* A room that sets an alarm in on_request, for the cold alarm test. */
static void alarm_request(party_room *room, const party_request *req, party_response *res) {
    (void)req;
    party_response_set_status(res,
                              party_alarm_set(room, PARTY_TEST_EPOCH_MS + 10000) == 0 ? 200 : 500);
}

static const party_def alarms_def = {
    .name = "alarms",
    .on_start = names_start,
    .on_request = alarm_request,
    .on_alarm = names_alarm,
};

static int setup(void **state) {
    party_test *t = party_test_new();
    memset(&rec, 0, sizeof(rec));
    rec.read_in_start = 1;
    fail_commits = 0;
    if (t == NULL || party_test_add(t, &names_def) != 0 || party_test_add(t, &alarms_def) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* ---- helpers ---- */

/* GET target; fails the test unless the answer has this status. Returns
 * the body (free it). */
static char *get(party_test *t, const char *target, const char *headers, int status) {
    party_test_response res;
    char *body;
    int got;
    assert_int_equal(party_test_request(t, "GET", target, headers, NULL, 0, &res), 0);
    got = res.status;
    body = res.body;
    res.body = NULL;
    party_test_response_free(&res);
    if (got != status) {
        print_error("GET %s: status %d, want %d (body: %s)\n", target, got, status, body);
        free(body);
        fail();
    }
    return body;
}

static char *get_by_id(party_test *t, const char *id, const char *rest, int status) {
    party_test_response res;
    char *body;
    int got;
    assert_int_equal(party_test_request_room_id(t, "names", id, "GET", rest, NULL, NULL, 0, &res),
                     0);
    got = res.status;
    body = res.body;
    res.body = NULL;
    party_test_response_free(&res);
    if (got != status) {
        print_error("GET by id %s: status %d, want %d (body: %s)\n", rest, got, status, body);
        free(body);
        fail();
    }
    return body;
}

static void expect_body(char *body, const char *want) {
    assert_non_null(body);
    assert_string_equal(body, want);
    free(body);
}

/* The value of _party_meta key in the room's database file ("" if absent). */
static void stored_meta(party_test *t, const char *id, const char *key, char *out, size_t cap) {
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;

    out[0] = '\0';
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT value FROM _party_meta WHERE key = ?1", -1, &stmt, NULL),
        SQLITE_OK);
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

static void id_of(const char *name, char id[PARTY_ID_MAX]) {
    party_room_id_from_name("names", name, id);
}

/* ---- named rooms ---- */

static void test_name_is_stored_before_first_on_start(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], value[NAME_MAX_LEN];

    /* The handler writes nothing: the runtime stores the name itself. */
    expect_body(get(t, "/parties/names/alpha/noread", NULL, 200), "ok");
    assert_string_equal(rec.start, "alpha");
    id_of("alpha", id);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "alpha");
    stored_meta(t, id, "party", value, sizeof(value));
    assert_string_equal(value, "names");
}

static void test_percent_encoded_name_is_decoded_and_stored(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], value[NAME_MAX_LEN];

    expect_body(get(t, "/parties/names/caf%C3%A9%20au%20lait", NULL, 200), "caf\xc3\xa9 au lait");
    id_of("caf\xc3\xa9 au lait", id);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "caf\xc3\xa9 au lait");
}

static void test_name_known_in_every_websocket_callback(void **state) {
    party_test *t = *state;
    int status = 0;
    char *text = NULL;
    party_test_conn *c = party_test_connect(t, "/parties/names/beta?_pk=p1", &status);

    assert_non_null(c);
    assert_string_equal(rec.start, "beta");
    assert_string_equal(rec.connect, "beta");
    assert_int_equal(party_test_send_text(c, "hi"), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "beta");
    free(text);
    assert_int_equal(party_test_close(c, 1000, NULL), 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_string_equal(rec.close, "beta");
    party_test_conn_free(c);
    expect_body(get(t, "/parties/names/beta", NULL, 200), "beta");
}

static void test_name_known_after_eviction_by_path(void **state) {
    party_test *t = *state;
    int status = 0;
    char *text = NULL;
    party_test_conn *c;

    expect_body(get(t, "/parties/names/gamma", NULL, 200), "gamma");
    assert_int_equal(party_test_evict(t, "names", "gamma"), 0);
    memset(rec.start, 0, sizeof(rec.start));

    c = party_test_connect(t, "/parties/names/gamma", &status);
    assert_non_null(c);
    assert_int_equal(rec.starts, 2);
    assert_string_equal(rec.start, "gamma");
    assert_string_equal(rec.connect, "gamma");
    assert_int_equal(party_test_send_text(c, "hi"), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "gamma");
    free(text);
    assert_int_equal(party_test_drop(c), 0);
    assert_string_equal(rec.close, "gamma");
    party_test_conn_free(c);
}

/* A name longer than a room keeps in its own block (64 bytes) is kept in
 * one of its own: the same in callbacks, in storage and when it comes
 * back from storage for a room addressed by id. Also one just short of it
 * and one just over it. */
static void test_long_name_known_by_path_and_after_eviction_by_id(void **state) {
    party_test *t = *state;
    static const size_t lengths[] = {63, 64, 200};
    char name[256], path[300], id[PARTY_ID_MAX], value[NAME_MAX_LEN];
    size_t i;

    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        memset(name, 'a' + (int)i, lengths[i]);
        name[lengths[i]] = '\0';
        snprintf(path, sizeof(path), "/parties/names/%s", name);
        expect_body(get(t, path, NULL, 200), name);
        assert_string_equal(rec.start, name);
        id_of(name, id);
        stored_meta(t, id, "name", value, sizeof(value));
        assert_string_equal(value, name);

        assert_int_equal(party_test_evict(t, "names", name), 0);
        memset(rec.start, 0, sizeof(rec.start));
        expect_body(get_by_id(t, id, "/whoami", 200), name);
        assert_string_equal(rec.start, name);
        assert_string_equal(rec.request, name);
    }
}

static void test_name_known_after_eviction_by_id_without_name_in_path(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX];

    expect_body(get(t, "/parties/names/delta", NULL, 200), "delta");
    assert_int_equal(party_test_evict(t, "names", "delta"), 0);
    memset(rec.start, 0, sizeof(rec.start));
    id_of("delta", id);
    expect_body(get_by_id(t, id, "/whoami", 200), "delta");
    assert_int_equal(rec.starts, 2);
    assert_string_equal(rec.start, "delta");
    assert_string_equal(rec.request, "delta");
}

static void test_name_known_on_cold_start_after_restart_by_id(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX];

    expect_body(get(t, "/parties/names/epsilon", NULL, 200), "epsilon");
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(party_test_in_memory(t, "names", "epsilon"), 0);
    memset(&rec.start, 0, sizeof(rec.start));
    id_of("epsilon", id);
    expect_body(get_by_id(t, id, "", 200), "epsilon");
    assert_string_equal(rec.start, "epsilon");
}

static void test_name_known_in_on_alarm_on_cold_start_after_restart(void **state) {
    party_test *t = *state;
    party_test_response res;

    assert_int_equal(party_test_request(t, "GET", "/parties/alarms/zeta", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    party_test_response_free(&res);
    assert_int_equal(party_test_restart(t), 0);
    memset(&rec.start, 0, sizeof(rec.start));
    rec.starts = 0;
    assert_int_equal(party_test_advance(t, 10000), 0);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.starts, 1);
    assert_string_equal(rec.start, "zeta");
    assert_string_equal(rec.alarm, "zeta");
}

static void test_set_name_same_is_noop_other_is_eexist(void **state) {
    party_test *t = *state;
    char want[64];

    snprintf(want, sizeof(want), "set=0 again=0 other=%d", PARTY_EEXIST);
    expect_body(get(t, "/parties/names/eta/set?name=eta", NULL, 200), want);
    snprintf(want, sizeof(want), "set=%d again=%d other=%d", PARTY_EEXIST, PARTY_EEXIST,
             PARTY_EEXIST);
    expect_body(get(t, "/parties/names/eta/set?name=not-eta", NULL, 200), want);
    expect_body(get(t, "/parties/names/eta", NULL, 200), "eta");
}

static void test_props_from_before_request_reach_on_start(void **state) {
    party_test *t = *state;
    int status = 0;
    party_test_conn *c;

    expect_body(get(t, "/parties/names/theta", "X-Props: {\"role\":\"admin\"}\r\n", 200), "theta");
    assert_string_equal(rec.props, "{\"role\":\"admin\"}");
    /* A room started without props gets NULL. */
    expect_body(get(t, "/parties/names/iota", NULL, 200), "iota");
    assert_string_equal(rec.props, "(null)");
    /* before_connect's props reach the next on_start (after eviction). */
    assert_int_equal(party_test_evict(t, "names", "iota"), 0);
    c = party_test_connect_with_headers(t, "/parties/names/iota", "X-Props: ws\r\n", &status);
    assert_non_null(c);
    assert_string_equal(rec.props, "ws");
    party_test_conn_free(c);
}

/* ---- rooms addressed by id ---- */

static void test_unnamed_room_read_name_is_500_with_fix_hint(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX];
    char *body;

    rec.read_in_start = 0;
    party_test_new_room_id(id);
    /* Not reading the name is fine. */
    expect_body(get_by_id(t, id, "/noread", 200), "ok");
    body = get_by_id(t, id, "/whoami", 500);
    assert_string_equal(rec.request, "(null)");
    assert_non_null(strstr(body, party_strerror(PARTY_ENONAME)));
    assert_non_null(strstr(body, "party_room_set_name"));
    free(body);
}

static void test_set_name_on_unnamed_room_is_seen_after_eviction_and_restart(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], value[NAME_MAX_LEN], want[64];

    rec.read_in_start = 0;
    party_test_new_room_id(id);
    snprintf(want, sizeof(want), "set=0 again=0 other=%d", PARTY_EEXIST);
    expect_body(get_by_id(t, id, "/set?name=kappa", 200), want);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "kappa");

    assert_int_equal(party_test_evict_id(t, id), 0);
    rec.read_in_start = 1;
    expect_body(get_by_id(t, id, "/whoami", 200), "kappa");
    assert_string_equal(rec.start, "kappa");

    assert_int_equal(party_test_restart(t), 0);
    memset(&rec.start, 0, sizeof(rec.start));
    expect_body(get_by_id(t, id, "/whoami", 200), "kappa");
    assert_string_equal(rec.start, "kappa");
}

/* ---- names and failed commits ---- */

/* The first batch of a named room stores its name; if that commit fails,
 * the next successful batch must store it (it is not in the file yet). */
static void test_name_stored_when_first_commit_failed(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], value[NAME_MAX_LEN];
    char *body;

    body = get(t, "/parties/names/lambda/write?fail=1", NULL, 500);
    free(body);
    assert_int_equal(party_test_commit_failures(t), 1);
    id_of("lambda", id);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "");

    expect_body(get(t, "/parties/names/lambda/write", NULL, 200), "lambda");
    assert_int_equal(party_test_commit_failures(t), 1);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "lambda");

    assert_int_equal(party_test_restart(t), 0);
    expect_body(get_by_id(t, id, "/whoami", 200), "lambda");
}

/* A name set in a batch whose commit failed is not the room's name: the
 * client was told it failed, and storage does not have it. */
static void test_set_name_rolled_back_when_commit_failed(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], value[NAME_MAX_LEN];
    char *body;

    rec.read_in_start = 0;
    party_test_new_room_id(id);
    body = get_by_id(t, id, "/set?name=mu&fail=1", 500);
    free(body);
    assert_int_equal(party_test_commit_failures(t), 1);
    stored_meta(t, id, "name", value, sizeof(value));
    assert_string_equal(value, "");
    body = get_by_id(t, id, "/whoami", 500);
    assert_non_null(strstr(body, party_strerror(PARTY_ENONAME)));
    free(body);
    /* ... so it can still be named, once. */
    expect_body(get_by_id(t, id, "/set?name=nu", 200), "set=0 again=0 other=-7");
    expect_body(get_by_id(t, id, "/whoami", 200), "nu");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_name_is_stored_before_first_on_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percent_encoded_name_is_decoded_and_stored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_known_in_every_websocket_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_known_after_eviction_by_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_name_known_by_path_and_after_eviction_by_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_known_after_eviction_by_id_without_name_in_path,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_known_on_cold_start_after_restart_by_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_known_in_on_alarm_on_cold_start_after_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_name_same_is_noop_other_is_eexist, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_props_from_before_request_reach_on_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unnamed_room_read_name_is_500_with_fix_hint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_set_name_on_unnamed_room_is_seen_after_eviction_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_stored_when_first_commit_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_name_rolled_back_when_commit_failed, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
