/* Durability (DESIGN.md "Durability"), through the test harness: the writes
 * of one event commit together or not at all; a failed commit drops the
 * held output, closes WebSockets with 1011, answers HTTP with 500 and
 * restarts the room from storage; the output gate holds replies to writes
 * until the commit is durable, and lets replies to reads through; a held
 * broadcast reaches many connections in order after the commit, a failed
 * one loses only what followed the write, and a peer that leaves while
 * output is held for it is freed cleanly; queued events share one commit; idle rooms are evicted on
 * the virtual clock and come back from storage; the KV API and the room's own SQL tables; a room
 * file of a newer format version is refused, an older one migrated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "party.h"
#include "party_test.h"

#define KV_MAX (2u * 1024 * 1024)

/* ---- the store party ---- */

typedef struct store_state {
    long count; /* the "n" key, loaded in on_start */
} store_state;

static struct {
    int starts, frees;
    party_room *saved; /* a room pointer kept past its callback */
} seen;

/* Commits to fail from now on, through the room's commit hook (run on the
 * commit's worker thread; read here only after that commit completed). */
static int fail_commits;
/* Non-empty: only the room of this name fails (its hook's arg is this). */
static char fail_only[32];

static int failing_commit_hook(void *arg) {
    if (fail_commits > 0 && (fail_only[0] == '\0' || arg == fail_only)) {
        fail_commits--;
        return 1; /* the COMMIT becomes a ROLLBACK and fails */
    }
    return 0;
}

static int store_start(party_room *room, const char *props) {
    store_state *s = calloc(1, sizeof(*s));
    void *val = NULL;
    sqlite3 *db;
    (void)props;

    if (s == NULL)
        return -1;
    seen.starts++;
    if (party_kv_get(room, "n", &val, NULL) == 0)
        s->count = strtol(val, NULL, 10);
    free(val);
    db = party_room_db(room);
    if (db == NULL) {
        free(s);
        return -1; /* its own file cannot be had: on_start fails, the request too */
    }
    party_room_set_state(room, s);
    sqlite3_commit_hook(db, failing_commit_hook,
                        strcmp(party_room_name(room), fail_only) == 0 ? fail_only : NULL);
    return 0;
}

static void store_free(void *state) {
    seen.frees++;
    free(state);
}

/* Adds one to "n" (in memory and in storage); the new value as text. */
static int bump(party_room *room, char *out, size_t cap) {
    store_state *s = party_room_state(room);
    int n = snprintf(out, cap, "%ld", s->count + 1);
    int r = party_kv_put(room, "n", out, (size_t)n);
    if (r == 0)
        s->count++;
    return r;
}

static void store_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    char text[64];
    (void)binary;

    if (len == 6 && memcmp(data, "write2", 6) == 0) {
        party_kv_put(room, "a", "1", 1);
        party_kv_put(room, "b", "2", 1);
        party_conn_send_text(conn, "ok");
    } else if (len == 8 && memcmp(data, "rollback", 8) == 0) {
        /* A write, then the room's own SQL makes SQLite roll the whole
         * transaction back (RAISE(ROLLBACK) in a trigger), then another
         * write, which begins a new one. */
        party_kv_put(room, "a", "1", 1);
        party_conn_send_text(conn, "before");
        sqlite3_exec(party_room_db(room),
                     "CREATE TABLE guard (x);"
                     "CREATE TRIGGER guard_no BEFORE INSERT ON guard"
                     " BEGIN SELECT RAISE(ROLLBACK, 'refused'); END;"
                     "INSERT INTO guard VALUES (1);",
                     NULL, NULL, NULL);
        party_kv_put(room, "b", "2", 1);
        party_conn_send_text(conn, "after");
    } else if (len == 5 && memcmp(data, "bcast", 5) == 0) {
        /* To every connection: one frame before the batch's first write
         * (not held), then two after it (held until the commit). */
        party_room_broadcast(room, "pre", 3, 0, NULL, 0, NULL);
        if (bump(room, text, sizeof(text)) != 0)
            snprintf(text, sizeof(text), "write failed");
        party_room_broadcast(room, text, strlen(text), 0, NULL, 0, NULL);
        party_room_broadcast(room, "post", 4, 0, NULL, 0, NULL);
    } else if (len == 5 && memcmp(data, "write", 5) == 0) {
        if (bump(room, text, sizeof(text)) != 0)
            snprintf(text, sizeof(text), "write failed");
        party_conn_send_text(conn, text);
    } else {
        party_conn_send_text(conn, "read");
    }
}

/* ---- the KV API, exercised inside a request ---- */

typedef struct listing {
    char keys[256];
    int stop_at; /* stop after this many keys (0: never) */
    int n;
} listing;

static int list_cb(const char *key, const void *val, size_t len, void *arg) {
    listing *l = arg;
    (void)val;
    (void)len;
    strncat(l->keys, key, sizeof(l->keys) - strlen(l->keys) - 2);
    strcat(l->keys, ",");
    l->n++;
    return l->stop_at != 0 && l->n >= l->stop_at ? 7 : 0;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(why, cap, "FAIL line %d: %s", __LINE__, #cond);                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void kv_api(party_room *room, char *why, size_t cap) {
    listing l;
    void *val = NULL;
    size_t len = 99;
    char *big;

    CHECK(party_kv_put(room, "user:1", "a", 1) == 0);
    CHECK(party_kv_put(room, "user:2", "bb", 2) == 0);
    CHECK(party_kv_put(room, "item:1", "c", 1) == 0);
    CHECK(party_kv_put(room, "user:3", NULL, 0) == 0);
    CHECK(party_kv_put(room, "user:1", "A", 1) == 0); /* replaces */
    CHECK(party_kv_put(room, NULL, "x", 1) == PARTY_EINVAL);
    CHECK(party_kv_put(room, "bad\xff", "x", 1) == PARTY_EINVAL);

    CHECK(party_kv_get(room, "user:1", &val, &len) == 0);
    CHECK(len == 1 && memcmp(val, "A", 1) == 0 && ((char *)val)[1] == '\0');
    free(val);
    val = NULL;
    CHECK(party_kv_get(room, "user:3", &val, &len) == 0 && len == 0);
    free(val);
    val = NULL;
    CHECK(party_kv_get(room, "nope", &val, &len) == PARTY_ENOTFOUND && val == NULL);

    memset(&l, 0, sizeof(l));
    CHECK(party_kv_list(room, "user:", list_cb, &l) == 0);
    CHECK(strcmp(l.keys, "user:1,user:2,user:3,") == 0);
    memset(&l, 0, sizeof(l));
    CHECK(party_kv_list(room, NULL, list_cb, &l) == 0);
    CHECK(strcmp(l.keys, "item:1,user:1,user:2,user:3,") == 0);
    memset(&l, 0, sizeof(l));
    CHECK(party_kv_list(room, "", list_cb, &l) == 0 && l.n == 4);
    memset(&l, 0, sizeof(l));
    l.stop_at = 2;
    CHECK(party_kv_list(room, NULL, list_cb, &l) == 7 && l.n == 2);
    memset(&l, 0, sizeof(l));
    CHECK(party_kv_list(room, "zzz", list_cb, &l) == 0 && l.n == 0);

    CHECK(party_kv_delete(room, "user:2") == 0);
    CHECK(party_kv_delete(room, "user:2") == PARTY_ENOTFOUND);
    CHECK(party_kv_get(room, "user:2", &val, &len) == PARTY_ENOTFOUND);

    /* Key + value at most 2 MB. */
    big = calloc(1, KV_MAX);
    CHECK(big != NULL);
    if (party_kv_put(room, "big", big, KV_MAX - 3) != 0 ||
        party_kv_put(room, "big2", big, KV_MAX - 3) != PARTY_ETOOBIG ||
        party_kv_put(room, "big", big, KV_MAX) != PARTY_ETOOBIG) {
        free(big);
        CHECK(!"2 MB limit of key + value");
    }
    free(big);
    CHECK(party_kv_get(room, "big", &val, &len) == 0 && len == KV_MAX - 3);
    free(val);
    snprintf(why, cap, "ok");
}

/* The room's own table, through party_room_db. */
static int notes_add(party_room *room) {
    sqlite3 *db = party_room_db(room);
    if (db == NULL)
        return -1;
    return sqlite3_exec(db,
                        "CREATE TABLE IF NOT EXISTS notes (body TEXT NOT NULL);"
                        "INSERT INTO notes (body) VALUES ('hello');",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

static long notes_count(party_room *room) {
    sqlite3 *db = party_room_db(room);
    sqlite3_stmt *stmt = NULL;
    long n = -1;
    if (db != NULL && sqlite3_prepare_v2(db, "SELECT count(*) FROM notes", -1, &stmt, NULL) == 0 &&
        sqlite3_step(stmt) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
}

static void store_request(party_room *room, const party_request *req, party_response *res) {
    const char *path = party_request_path(req);
    const char *key = party_request_query(req, "key");
    char text[128];

    if (strstr(path, "/write2") != NULL) {
        party_kv_put(room, "a", "1", 1);
        party_kv_put(room, "b", "2", 1);
        party_response_set_body(res, "ok", 2);
    } else if (strstr(path, "/write") != NULL) {
        if (bump(room, text, sizeof(text)) != 0)
            party_response_set_status(res, 500);
        party_response_set_body(res, text, strlen(text));
    } else if (strstr(path, "/count") != NULL) {
        store_state *s = party_room_state(room);
        snprintf(text, sizeof(text), "%ld", s->count);
        party_response_set_body(res, text, strlen(text));
    } else if (strstr(path, "/get") != NULL) {
        void *val = NULL;
        size_t len = 0;
        if (key == NULL || party_kv_get(room, key, &val, &len) != 0) {
            party_response_set_status(res, 404);
            return;
        }
        party_response_set_body(res, val, len);
        free(val);
    } else if (strstr(path, "/kv-api") != NULL) {
        kv_api(room, text, sizeof(text));
        party_response_set_status(res, strcmp(text, "ok") == 0 ? 200 : 500);
        party_response_set_body(res, text, strlen(text));
    } else if (strstr(path, "/list") != NULL) {
        listing l;
        memset(&l, 0, sizeof(l));
        party_kv_list(room, NULL, list_cb, &l);
        party_response_set_body(res, l.keys, strlen(l.keys));
    } else if (strstr(path, "/notes") != NULL) {
        if (strcmp(party_request_method(req), "POST") == 0 && notes_add(room) != 0)
            party_response_set_status(res, 500);
        snprintf(text, sizeof(text), "%ld", notes_count(room));
        party_response_set_body(res, text, strlen(text));
    } else if (strstr(path, "/save") != NULL) {
        seen.saved = room;
    }
}

static const party_def store_def = {
    .name = "store",
    .on_start = store_start,
    .on_message = store_message,
    .on_request = store_request,
    .free_state = store_free,
};

/* mover: keeps its records in the shared files until a request asks for
 * its own database (store opens it in on_start). POST /kv writes "a" and
 * "b"; POST /notes opens the database and adds a note; GET /list, GET
 * /notes read them back. */
static void mover_request(party_room *room, const party_request *req, party_response *res) {
    const char *path = party_request_path(req);
    char text[64];

    if (strstr(path, "/kv") != NULL) {
        if (party_kv_put(room, "a", "1", 1) != 0 || party_kv_put(room, "b", "2", 1) != 0)
            party_response_set_status(res, 500);
    } else if (strstr(path, "/list") != NULL) {
        listing l;
        memset(&l, 0, sizeof(l));
        party_kv_list(room, NULL, list_cb, &l);
        party_response_set_body(res, l.keys, strlen(l.keys));
    } else if (strstr(path, "/notes") != NULL) {
        if (strcmp(party_request_method(req), "POST") == 0 &&
            (notes_add(room) != 0 || party_kv_put(room, "c", "3", 1) != 0))
            party_response_set_status(res, 500);
        snprintf(text, sizeof(text), "%ld", notes_count(room));
        party_response_set_body(res, text, strlen(text));
    }
}

static const party_def mover_def = {
    .name = "mover",
    .on_request = mover_request,
};

/* ---- a party whose rooms stay in the shared files ---- */

static int tally_starts;

static int tally_start(party_room *room, const char *props) {
    (void)room;
    (void)props;
    tally_starts++;
    return 0;
}

static void tally_request(party_room *room, const party_request *req, party_response *res) {
    (void)req;
    if (party_kv_put(room, "n", "1", 1) != 0)
        party_response_set_status(res, 500);
    party_response_set_body(res, "ok", 2);
}

static const party_def tally_def = {
    .name = "tally",
    .on_start = tally_start,
    .on_request = tally_request,
};

static int setup(void **state) {
    party_test *t = party_test_new();
    memset(&seen, 0, sizeof(seen));
    fail_commits = 0;
    fail_only[0] = '\0';
    if (t == NULL || party_test_add(t, &store_def) != 0 || party_test_add(t, &mover_def) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* ---- helpers ---- */

static uint64_t real_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* method target; fails unless the status is as given; returns the body. */
static char *call(party_test *t, const char *method, const char *target, int status) {
    party_test_response res;
    char *body;
    int got;

    assert_int_equal(
        party_test_request(t, method, target, NULL, method[0] == 'P' ? "" : NULL, 0, &res), 0);
    got = res.status;
    body = res.body;
    res.body = NULL;
    party_test_response_free(&res);
    if (got != status) {
        print_error("%s %s: status %d, want %d (body: %s)\n", method, target, got, status, body);
        free(body);
        fail();
    }
    return body;
}

static void expect_call(party_test *t, const char *method, const char *target, int status,
                        const char *body) {
    char *got = call(t, method, target, status);
    assert_string_equal(got, body);
    free(got);
}

/* The number of keys among the comma-separated list present in the room's
 * database file, read with a connection of our own. */
static int keys_in_file(party_test *t, const char *room, const char *keys) {
    char path[4096], id[PARTY_ID_MAX], list[256], *key, *save = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int n = 0;

    assert_int_equal(party_test_run_until_idle(t), 0);
    party_room_id_from_name("store", room, id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT 1 FROM _party_kv WHERE key = ?1", -1, &stmt, NULL),
        SQLITE_OK);
    snprintf(list, sizeof(list), "%s", keys);
    for (key = strtok_r(list, ",", &save); key != NULL; key = strtok_r(NULL, ",", &save)) {
        sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
        n += sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
}

/* The value of key in the room's database file, read with a connection of
 * our own without running the loop (malloc'd; NULL if absent): what is
 * committed now. */
static char *committed_value(party_test *t, const char *room, const char *key) {
    char path[4096], id[PARTY_ID_MAX], *value = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;

    party_room_id_from_name("store", room, id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT value FROM _party_kv WHERE key = ?1", -1, &stmt, NULL),
        SQLITE_OK);
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        int n = sqlite3_column_bytes(stmt, 0);
        value = calloc(1, (size_t)n + 1);
        assert_non_null(value);
        memcpy(value, sqlite3_column_blob(stmt, 0), (size_t)n);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

/* Receives a text message and fails unless it is want. */
static void expect_text(party_test_conn *c, const char *want) {
    char *text = NULL;
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, want);
    free(text);
}

/* Fails unless the server closed c with code, after nothing more. */
static void expect_closed(party_test_conn *c, int want) {
    char *text = NULL;
    int code = 0;
    assert_int_equal(party_test_recv_text(c, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(c, &code, NULL), 0);
    assert_int_equal(code, want);
}

/* Connects, then waits until the first batch (which stores the room's
 * name) has committed, so later commits are the test's own. */
static party_test_conn *open_store(party_test *t, const char *target) {
    int status = 0;
    party_test_conn *c = party_test_connect(t, target, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    assert_int_equal(party_test_run_until_idle(t), 0);
    return c;
}

/* ---- atomicity and failed commits ---- */

static void test_writes_of_one_event_are_all_committed(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/whole/write2", 200, "ok");
    assert_int_equal(keys_in_file(t, "whole", "a,b"), 2);
    assert_int_equal(party_test_restart(t), 0);
    expect_call(t, "GET", "/parties/store/whole/get?key=a", 200, "1");
    expect_call(t, "GET", "/parties/store/whole/get?key=b", 200, "2");
    assert_int_equal(party_test_commit_failures(t), 0);
}

static void test_failed_commit_keeps_nothing_and_closes_websocket_1011(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_store(t, "/parties/store/atomic-ws");
    char *text = NULL;
    const char *reason = NULL;
    int code = 0;

    assert_int_equal(seen.starts, 1);
    fail_commits = 1;
    assert_int_equal(party_test_send_text(c, "write2"), 0);
    /* The reply rested on the failed writes: dropped, and the socket closed. */
    assert_int_equal(party_test_recv_text(c, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(c, &code, &reason), 0);
    assert_int_equal(code, 1011);
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(keys_in_file(t, "atomic-ws", "a,b"), 0);
    /* The room's memory was dropped; the next event starts it from storage. */
    assert_int_equal(seen.frees, 1);
    expect_call(t, "GET", "/parties/store/atomic-ws/get?key=a", 404, "");
    assert_int_equal(seen.starts, 2);
    party_test_conn_free(c);
}

static void test_transaction_rolled_back_by_sqlite_fails_the_batch(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_store(t, "/parties/store/raised");
    char *text = NULL;
    const char *reason = NULL;
    int code = 0;

    assert_int_equal(party_test_send_text(c, "rollback"), 0);
    /* "a" is gone with the rolled-back transaction: neither reply may go
     * out, and "b" alone must not be committed as if the batch had held. */
    assert_int_equal(party_test_recv_text(c, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(c, &code, &reason), 0);
    assert_int_equal(code, 1011);
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(keys_in_file(t, "raised", "a,b"), 0);
    expect_call(t, "GET", "/parties/store/raised/get?key=b", 404, "");
    party_test_conn_free(c);
}

static void test_failed_commit_answers_http_500_and_keeps_nothing(void **state) {
    party_test *t = *state;
    char *body;

    expect_call(t, "POST", "/parties/store/atomic-http/write", 200, "1");
    assert_int_equal(seen.starts, 1);
    fail_commits = 1;
    body = call(t, "POST", "/parties/store/atomic-http/write2", 500);
    assert_non_null(strstr(body, "commit failed"));
    free(body);
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(keys_in_file(t, "atomic-http", "a,b"), 0);
    assert_int_equal(keys_in_file(t, "atomic-http", "n"), 1);
    expect_call(t, "GET", "/parties/store/atomic-http/count", 200, "1");
    assert_int_equal(seen.starts, 2);
    expect_call(t, "POST", "/parties/store/atomic-http/write2", 200, "ok");
    assert_int_equal(keys_in_file(t, "atomic-http", "a,b"), 2);
    assert_int_equal(party_test_commit_failures(t), 1);
}

static void test_failed_commit_rolls_back_in_memory_state_too(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/memory/write", 200, "1");
    fail_commits = 1;
    free(call(t, "POST", "/parties/store/memory/write", 500));
    /* The count in memory (2) was dropped with the room state: on_start
     * reloads 1 from storage. */
    expect_call(t, "GET", "/parties/store/memory/count", 200, "1");
    expect_call(t, "POST", "/parties/store/memory/write", 200, "2");
}

/* ---- the output gate ---- */

static void test_output_gate_holds_websocket_reply_until_commit(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_store(t, "/parties/store/gate-ws");
    char *text = NULL;
    uint64_t sent;

    party_test_set_commit_delay(t, 300);
    /* A handler that does not write is answered at once. */
    party_test_set_timeout(t, 150);
    assert_int_equal(party_test_send_text(c, "read"), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "read");
    free(text);

    /* A handler that writes is answered only once the write is durable. */
    sent = real_ms();
    assert_int_equal(party_test_send_text(c, "write"), 0);
    assert_int_equal(party_test_recv_text(c, &text), PARTY_TEST_ETIMEDOUT);
    party_test_set_timeout(t, PARTY_TEST_TIMEOUT_MS);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_true(real_ms() - sent >= 300);
    assert_string_equal(text, "1");
    free(text);
    party_test_conn_free(c);
}

static void test_output_gate_holds_http_response_until_commit(void **state) {
    party_test *t = *state;
    party_test_response res;
    uint64_t start;

    expect_call(t, "POST", "/parties/store/gate-http/write", 200, "1");
    party_test_set_commit_delay(t, 300);

    start = real_ms();
    expect_call(t, "GET", "/parties/store/gate-http/count", 200, "1");
    assert_true(real_ms() - start < 150);

    start = real_ms();
    expect_call(t, "POST", "/parties/store/gate-http/write", 200, "2");
    assert_true(real_ms() - start >= 300);

    party_test_set_timeout(t, 150);
    assert_int_equal(
        party_test_request(t, "POST", "/parties/store/gate-http/write", NULL, "", 0, &res),
        PARTY_TEST_ETIMEDOUT);
    party_test_set_timeout(t, PARTY_TEST_TIMEOUT_MS);
    /* The client gave up, but the write was committed all the same. */
    expect_call(t, "GET", "/parties/store/gate-http/get?key=n", 200, "3");
}

static void test_group_commit_queued_messages_share_commits(void **state) {
    party_test *t = *state;
    party_test_conn *a = open_store(t, "/parties/store/group");
    party_test_conn *b = open_store(t, "/parties/store/group");
    const int n = 10, delay = 200;
    char want[16], *text = NULL;
    uint64_t start;
    int i, got_a = 0, got_b = 0;

    party_test_set_commit_delay(t, delay);
    start = real_ms();
    for (i = 0; i < n; i++)
        assert_int_equal(party_test_send_text(i % 2 ? b : a, "write"), 0);
    for (i = 0; i < n / 2; i++) {
        assert_int_equal(party_test_recv_text(a, &text), 0);
        assert_true(atoi(text) > got_a);
        got_a = atoi(text);
        free(text);
        assert_int_equal(party_test_recv_text(b, &text), 0);
        assert_true(atoi(text) > got_b);
        got_b = atoi(text);
        free(text);
    }
    /* One commit per message would take n x delay; the first message
     * commits alone, the nine queued behind it commit together. */
    assert_true(real_ms() - start < (uint64_t)(n * delay) / 2);
    snprintf(want, sizeof(want), "%d", n);
    expect_call(t, "GET", "/parties/store/group/get?key=n", 200, want);
    party_test_conn_free(a);
    party_test_conn_free(b);
}

/* Rooms whose batches end in one loop turn commit as one group; each
 * room's result is its own: the failed room's output is dropped and its
 * connection closed 1011, the others' output goes out, in order. */
#define GROUP 6

static void test_group_commit_across_rooms_fails_only_the_failed_room(void **state) {
    party_test *t = *state;
    party_test_conn *c[GROUP];
    char target[64], room[16], *value;
    uint64_t groups;
    int i;

    snprintf(fail_only, sizeof(fail_only), "many-%d", 2);
    for (i = 0; i < GROUP; i++) {
        snprintf(target, sizeof(target), "/parties/store/many-%d", i);
        c[i] = open_store(t, target);
    }
    fail_commits = 1;
    groups = party_test_commit_groups(t);
    /* Sent before the loop runs: every room's batch ends in the same turn.
     * Two writes to each room but the failing one (a second write there
     * would run after the failure, from storage, and commit). */
    for (i = 0; i < GROUP; i++) {
        assert_int_equal(party_test_send_text(c[i], "write"), 0);
        if (i != 2)
            assert_int_equal(party_test_send_text(c[i], "write"), 0);
    }
    for (i = 0; i < GROUP; i++) {
        if (i == 2) {
            expect_closed(c[i], 1011);
            continue;
        }
        expect_text(c[i], "1");
        expect_text(c[i], "2");
    }
    assert_int_equal(party_test_run_until_idle(t), 0);
    /* One group for the six rooms' batches (the second writes joined the
     * first in each room's batch, or the next group). */
    assert_true(party_test_commit_groups(t) - groups >= 1);
    assert_true(party_test_commit_groups(t) - groups <= 2);
    assert_int_equal(party_test_commit_failures(t), 1);
    for (i = 0; i < GROUP; i++) {
        snprintf(room, sizeof(room), "many-%d", i);
        value = committed_value(t, room, "n");
        if (i == 2) {
            assert_null(value);
        } else {
            assert_non_null(value);
            assert_string_equal(value, "2");
        }
        free(value);
    }
    /* The failed room starts over from storage; the others go on. */
    expect_call(t, "GET", "/parties/store/many-2/count", 200, "0");
    expect_call(t, "GET", "/parties/store/many-3/count", 200, "2");
    for (i = 0; i < GROUP; i++)
        party_test_conn_free(c[i]);
}

/* ---- descriptors: only own-file rooms hold them ---- */

#define LOW_FILES 256 /* the open-file limit of the test: 28 own files open */
#define SHARED_AWAKE 100
#define OWN_AWAKE 100 /* 3 descriptors each if every one held its file open */

/* Awake rooms hold no descriptor: with an open-file limit that keeps at
 * most 28 own files open (3 descriptors each), 100 shared rooms and 100
 * own-file rooms stay awake (no eviction, on_start once each). The own
 * files are opened on demand from a bounded cache, and what each room
 * wrote in its own file is there after its handle was closed and after a
 * restart. */
static void test_rooms_stay_awake_past_the_descriptor_limit(void **state) {
    struct rlimit old, low;
    party_test *t;
    char target[64], room[32];
    int i, pass;
    (void)state;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur > LOW_FILES)
        low.rlim_cur = LOW_FILES;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    t = party_test_new();
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &tally_def), 0);
    assert_int_equal(party_test_add(t, &store_def), 0);
    tally_starts = 0;
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < SHARED_AWAKE; i++) {
            snprintf(target, sizeof(target), "/parties/tally/t-%d", i);
            expect_call(t, "POST", target, 200, "ok");
        }
    assert_int_equal(tally_starts, SHARED_AWAKE);

    /* Own-file rooms (the store party calls party_room_db in on_start),
     * each writing a row to a table of its own, then reading it back. */
    seen.starts = 0;
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < OWN_AWAKE; i++) {
            snprintf(target, sizeof(target), "/parties/store/own-%d/notes", i);
            expect_call(t, pass == 0 ? "POST" : "GET", target, 200, "1");
        }
    assert_int_equal(seen.starts, OWN_AWAKE);
    for (i = 0; i < OWN_AWAKE; i++) {
        snprintf(room, sizeof(room), "own-%d", i);
        assert_int_equal(party_test_loaded(t, "store", room), 1);
    }
    for (i = 0; i < SHARED_AWAKE; i++) {
        snprintf(room, sizeof(room), "t-%d", i);
        assert_int_equal(party_test_loaded(t, "tally", room), 1);
    }
    assert_int_equal(tally_starts, SHARED_AWAKE);
    assert_int_equal(party_test_restart(t), 0);
    for (i = 0; i < OWN_AWAKE; i++) {
        snprintf(target, sizeof(target), "/parties/store/own-%d/notes", i);
        expect_call(t, "GET", target, 200, "1");
    }
    party_test_free(t);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* A broadcast after a write, to many connections: held by the output gate
 * in each connection's own queue, then released in order. */
#define FAN 40

static void
test_gated_broadcast_to_many_connections_is_released_in_order_after_commit(void **state) {
    party_test *t = *state;
    party_test_conn *c[FAN];
    char *value;
    int i;

    for (i = 0; i < FAN; i++)
        c[i] = open_store(t, "/parties/store/fan");
    /* A slow commit: output let through before it would arrive first. */
    party_test_set_commit_delay(t, 200);
    assert_int_equal(party_test_send_text(c[0], "bcast"), 0);
    for (i = 0; i < FAN; i++) {
        expect_text(c[i], "pre");
        expect_text(c[i], "1");
        if (i == 0) {
            /* The first held frame came: the write is in the file. */
            value = committed_value(t, "fan", "n");
            assert_non_null(value);
            assert_string_equal(value, "1");
            free(value);
        }
        expect_text(c[i], "post");
    }
    /* The gate is open again: the next batch's output follows. */
    assert_int_equal(party_test_send_text(c[FAN - 1], "bcast"), 0);
    for (i = 0; i < FAN; i++) {
        expect_text(c[i], "pre");
        expect_text(c[i], "2");
        expect_text(c[i], "post");
    }
    assert_int_equal(party_test_commit_failures(t), 0);
    for (i = 0; i < FAN; i++)
        party_test_conn_free(c[i]);
}

/* A failed commit of a batch that broadcast before and after its write:
 * every connection still gets what was queued before the write, then loses
 * the rest and is closed with 1011. */
static void broadcast_of_a_failed_commit(party_test *t) {
    party_test_conn *c[FAN / 2];
    char *value;
    int i;

    for (i = 0; i < FAN / 2; i++)
        c[i] = open_store(t, "/parties/store/cut");
    fail_commits = 1;
    assert_int_equal(party_test_send_text(c[0], "bcast"), 0);
    for (i = 0; i < FAN / 2; i++) {
        expect_text(c[i], "pre");
        expect_closed(c[i], 1011);
    }
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(party_test_run_until_idle(t), 0);
    value = committed_value(t, "cut", "n");
    assert_null(value);
    for (i = 0; i < FAN / 2; i++)
        party_test_conn_free(c[i]);
}

static void test_failed_commit_drops_exactly_the_held_part_of_each_queue(void **state) {
    party_config cfg;
    party_test *normal;

    /* Durability full: the commit runs on a worker thread, so what was
     * queued before the write is usually written meanwhile. */
    broadcast_of_a_failed_commit(*state);
    /* Durability normal: the commit runs on the loop, at the end of the
     * batch, while everything the batch queued still waits in the
     * queues: the cut must keep what lies in front of the mark. */
    party_config_init(&cfg);
    cfg.durability = PARTY_DURABILITY_NORMAL;
    cfg.log_level = PARTY_LOG_ERROR;
    normal = party_test_new_with(&cfg);
    assert_non_null(normal);
    assert_int_equal(party_test_add(normal, &store_def), 0);
    fail_commits = 0;
    broadcast_of_a_failed_commit(normal);
    party_test_free(normal);
}

/* A peer that leaves while output is held for it: the release skips it
 * (and frees what it held), the others get theirs; a peer's Close waits
 * behind the output held before it. */
static void test_connection_closed_by_peer_while_holding_output_frees_cleanly(void **state) {
    party_test *t = *state;
    party_test_conn *gone = open_store(t, "/parties/store/leave");
    party_test_conn *stays = open_store(t, "/parties/store/leave");
    party_test_conn *closes = open_store(t, "/parties/store/leave");
    const char *reason = NULL;
    int code = 0;

    party_test_set_commit_delay(t, 200);
    assert_int_equal(party_test_send_text(stays, "bcast"), 0);
    expect_text(gone, "pre");
    /* "1" and "post" wait for gone behind its mark: it drops meanwhile
     * (and the room handles its close after the commit). */
    assert_int_equal(party_test_drop(gone), 0);
    expect_text(stays, "pre");
    expect_text(stays, "1");
    expect_text(stays, "post");

    /* A clean Close behind a held reply: the reply comes first. */
    assert_int_equal(party_test_send_text(closes, "write"), 0);
    assert_int_equal(party_test_close(closes, 1000, "bye"), 0);
    expect_text(closes, "pre");
    expect_text(closes, "1");
    expect_text(closes, "post");
    expect_text(closes, "2");
    assert_int_equal(party_test_close_info(closes, &code, &reason), 0);
    assert_int_equal(code, 1000);
    assert_string_equal(reason, "bye");

    assert_int_equal(party_test_run_until_idle(t), 0);
    expect_call(t, "GET", "/parties/store/leave/get?key=n", 200, "2");
    assert_int_equal(party_test_commit_failures(t), 0);
    party_test_conn_free(gone);
    party_test_conn_free(stays);
    party_test_conn_free(closes);
}

/* ---- eviction and cold starts ---- */

static void test_idle_room_evicted_after_idle_timeout(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/idle/write", 200, "1");
    assert_int_equal(party_test_in_memory(t, "store", "idle"), 1);
    assert_int_equal(party_test_advance(t, 59000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "idle"), 1);
    assert_int_equal(seen.frees, 0);
    assert_int_equal(party_test_advance(t, 2000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "idle"), 0);
    assert_int_equal(seen.frees, 1);
}

static void test_room_with_connection_is_not_evicted(void **state) {
    party_test *t = *state;
    party_test_conn *c = open_store(t, "/parties/store/busy");

    assert_int_equal(party_test_advance(t, 3600 * 1000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "busy"), 1);
    assert_int_equal(party_test_drop(c), 0);
    /* Idle from the drop on. */
    assert_int_equal(party_test_advance(t, 59000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "busy"), 1);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "busy"), 0);
    party_test_conn_free(c);
}

static void test_cold_start_reloads_kv(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/cold/write", 200, "1");
    expect_call(t, "POST", "/parties/store/cold/write", 200, "2");
    assert_int_equal(party_test_advance(t, 61000), 0);
    assert_int_equal(party_test_in_memory(t, "store", "cold"), 0);
    assert_int_equal(seen.frees, 1);
    expect_call(t, "GET", "/parties/store/cold/count", 200, "2");
    assert_int_equal(seen.starts, 2);
    assert_int_equal(party_test_restart(t), 0);
    expect_call(t, "POST", "/parties/store/cold/write", 200, "3");
}

/* ---- the KV API and the room's own tables ---- */

static void test_kv_put_get_delete_list_and_limits(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/kv/kv-api", 200, "ok");
    assert_int_equal(party_test_restart(t), 0);
    expect_call(t, "GET", "/parties/store/kv/list", 200, "big,item:1,user:1,user:3,");
    expect_call(t, "GET", "/parties/store/kv/get?key=user:1", 200, "A");
    expect_call(t, "GET", "/parties/store/kv/get?key=user:2", 404, "");
}

static void test_room_db_tables_persist_across_restart(void **state) {
    party_test *t = *state;

    expect_call(t, "POST", "/parties/store/sql/notes", 200, "1");
    expect_call(t, "POST", "/parties/store/sql/notes", 200, "2");
    assert_int_equal(party_test_restart(t), 0);
    expect_call(t, "GET", "/parties/store/sql/notes", 200, "2");
}

/* A room that has kept records in the shared files and then calls
 * party_room_db for the first time keeps them (they move into its own
 * file, which exists from then on), along with what that event wrote;
 * after a restart all of it is read from the own file. */
static void test_records_move_into_the_room_db_file_and_survive_restart(void **state) {
    party_test *t = *state;
    char path[4096], id[PARTY_ID_MAX];
    struct stat st;

    expect_call(t, "POST", "/parties/mover/moved/kv", 200, "");
    party_room_id_from_name("mover", "moved", id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_not_equal(stat(path, &st), 0);
    expect_call(t, "POST", "/parties/mover/moved/notes", 200, "1");
    assert_int_equal(stat(path, &st), 0);
    expect_call(t, "GET", "/parties/mover/moved/list", 200, "a,b,c,");
    assert_int_equal(party_test_restart(t), 0);
    expect_call(t, "GET", "/parties/mover/moved/list", 200, "a,b,c,");
    expect_call(t, "GET", "/parties/mover/moved/notes", 200, "1");
}

static int count_cb(const char *key, const void *val, size_t len, void *arg) {
    (void)key;
    (void)val;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static void test_kv_outside_callbacks_is_estate(void **state) {
    party_test *t = *state;
    void *val = NULL;
    int n = 0;

    expect_call(t, "GET", "/parties/store/outside/save", 200, "");
    assert_non_null(seen.saved);
    assert_int_equal(party_test_in_memory(t, "store", "outside"), 1);
    assert_int_equal(party_kv_put(seen.saved, "k", "v", 1), PARTY_ESTATE);
    assert_int_equal(party_kv_get(seen.saved, "k", &val, NULL), PARTY_ESTATE);
    assert_null(val);
    assert_int_equal(party_kv_delete(seen.saved, "k"), PARTY_ESTATE);
    assert_int_equal(party_kv_list(seen.saved, NULL, count_cb, &n), PARTY_ESTATE);
    assert_int_equal(n, 0);
    assert_null(party_room_db(seen.saved));
}

/* ---- format versions ---- */

/* Runs sql on the file of room (store party) with a connection of our
 * own; with version non-NULL, reads the file's format version after. */
static void room_file_sql(party_test *t, const char *room, const char *sql, int *version) {
    char path[4096], id[PARTY_ID_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;

    assert_int_equal(party_test_run_until_idle(t), 0);
    party_room_id_from_name("store", room, id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    if (sql != NULL)
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    if (version != NULL) {
        assert_int_equal(
            sqlite3_prepare_v2(db, "SELECT version FROM _party_format", -1, &stmt, NULL),
            SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        *version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
}

/* A room file written by a newer partyd is refused (503) and left as it
 * is; one from before format versions were recorded is read, and
 * migrated. */
static void test_room_file_of_newer_format_refused_older_one_migrated(void **state) {
    party_test *t = *state;
    int version = 0;

    expect_call(t, "POST", "/parties/store/versioned/write", 200, "1");
    assert_int_equal(party_test_restart(t), 0);
    room_file_sql(t, "versioned", NULL, &version);
    assert_int_equal(version, 2);
    room_file_sql(t, "versioned", "UPDATE _party_format SET version = 99", NULL);
    free(call(t, "GET", "/parties/store/versioned/count", 503));
    room_file_sql(t, "versioned", NULL, &version);
    assert_int_equal(version, 99);
    assert_int_equal(seen.starts, 1);

    room_file_sql(t, "versioned", "DROP TABLE _party_format", NULL);
    expect_call(t, "GET", "/parties/store/versioned/count", 200, "1");
    room_file_sql(t, "versioned", NULL, &version);
    assert_int_equal(version, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_of_one_event_are_all_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_keeps_nothing_and_closes_websocket_1011,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction_rolled_back_by_sqlite_fails_the_batch,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_answers_http_500_and_keeps_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_rolls_back_in_memory_state_too, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_output_gate_holds_websocket_reply_until_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_output_gate_holds_http_response_until_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_gated_broadcast_to_many_connections_is_released_in_order_after_commit, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_failed_commit_drops_exactly_the_held_part_of_each_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_closed_by_peer_while_holding_output_frees_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_queued_messages_share_commits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_across_rooms_fails_only_the_failed_room,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rooms_stay_awake_past_the_descriptor_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_room_evicted_after_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_with_connection_is_not_evicted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cold_start_reloads_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_put_get_delete_list_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_db_tables_persist_across_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_records_move_into_the_room_db_file_and_survive_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_kv_outside_callbacks_is_estate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_file_of_newer_format_refused_older_one_migrated,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
