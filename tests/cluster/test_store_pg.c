/* The storage seam (src/storage/storage.h) through the PostgreSQL backend,
 * next to the SQLite one: the same record ops give the same results on
 * both (key order and prefixes, rollback, schedules earliest first, the
 * alarm and the index, a room's own database), and on PostgreSQL two
 * backends in one process play two nodes: the second cannot acquire a
 * room the first holds (PARTY_EBUSY) until it is released, a batch of
 * two rooms where one's epoch moved on fences that one only, and a group
 * commits its held rooms in one transaction without the fenced one;
 * commits and loads go on, at their first try, after the server closed
 * the node's idle connections. Needs
 * PARTYD_TEST_PG (tests/cluster/with_pg.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <uv.h>

#include "backends.h"
#include "pg_sessions.h"
#include "storage.h"

#define T0 1700000000000LL

static const char *server_uri;
static int n_databases;

typedef struct fixture {
    char dir[64];
    char uri[512]; /* "" for SQLite */
    party__backend_config cfg;
    party__backend *be;
    char why[1024];
} fixture;

static void room_id(int i, char out[PARTY_ID_MAX]) {
    snprintf(out, PARTY_ID_MAX, "%064x", i + 1);
}

static void sql_exec(const char *uri, const char *sql) {
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
}

/* The first column of sql's first row as text into out ("" without rows). */
static void sql_text(const char *uri, const char *sql, char *out, size_t cap) {
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    snprintf(out, cap, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    PQfinish(c);
}

static party__backend *open_backend(fixture *f, const char *node) {
    party__backend *be = NULL;
    f->cfg.node = node;
    if (party__backend_open(&f->cfg, &be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    return be;
}

static int setup(void **state, int pg) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/partyd-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.data_dir = f->dir;
    f->cfg.durability_full = 1;
    if (pg) {
        const char *slash = strrchr(server_uri, '/');
        char sql[64];
        snprintf(sql, sizeof(sql), "CREATE DATABASE s%d", ++n_databases);
        sql_exec(server_uri, sql);
        snprintf(f->uri, sizeof(f->uri), "%.*s/s%d", (int)(slash - server_uri), server_uri,
                 n_databases);
        f->cfg.store = f->uri;
    }
    f->be = open_backend(f, "n1");
    *state = f;
    return 0;
}

static int setup_sqlite(void **state) {
    return setup(state, 0);
}

static int setup_pg(void **state) {
    return setup(state, 1);
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[128];
    party__backend_close(f->be);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- acquire and release, waited for on a loop ---- */

typedef struct completion {
    int calls, status;
} completion;

static void record_done(party__store_req *req, int status) {
    completion *c = req->data;
    c->calls++;
    c->status = status;
}

static int own(party__backend *be, int i, int release) {
    completion c = {0, 1};
    party__store_req req;
    uv_loop_t loop;
    char id[PARTY_ID_MAX];

    assert_int_equal(uv_loop_init(&loop), 0);
    room_id(i, id);
    memset(&req, 0, sizeof(req));
    req.loop = &loop;
    req.room_id = id;
    req.party = "test";
    req.done = record_done;
    req.data = &c;
    if (release)
        be->ops->release(be, &req);
    else
        be->ops->acquire(be, &req);
    while (c.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(c.calls, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    return c.status;
}

static party__room_store *load(fixture *f, party__backend *be, int i, party__room_loaded *loaded) {
    party__room_loaded ignored;
    party__room_store *rs = NULL;
    char id[PARTY_ID_MAX];
    room_id(i, id);
    if (be->ops->load(be, id, "test", &rs, loaded ? loaded : &ignored, f->why, sizeof(f->why)) != 0)
        fail_msg("load: %s", f->why);
    assert_non_null(rs);
    return rs;
}

static int commit_one(party__backend *be, party__room_store *rs, int64_t wake_ms, int changed) {
    party__commit c = {rs, wake_ms, changed};
    int result = 1;
    be->ops->commit_batch(be, &c, 1, &result);
    return result;
}

/* ---- the same results on both stores ---- */

typedef struct listing {
    int n;
    char text[256];
} listing;

static int list_kv(const char *key, const void *val, size_t len, void *arg) {
    listing *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s%s=%.*s", l->n++ > 0 ? "," : "", key,
             (int)len, (const char *)val);
    return 0;
}

static int list_sched(const party__schedule *s, void *arg) {
    listing *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s%s@%lld", l->n++ > 0 ? "," : "", s->id,
             (long long)(s->next_ms - T0));
    return 0;
}

static int list_index(const char *id, const char *party, int64_t due_ms, void *arg) {
    listing *l = arg;
    size_t used = strlen(l->text);
    (void)party;
    snprintf(l->text + used, sizeof(l->text) - used, "%s%.3s@%lld", l->n++ > 0 ? "," : "", id + 61,
             (long long)(due_ms - T0));
    return 0;
}

static void test_records_behave_the_same(void **state) {
    fixture *f = *state;
    party__room_loaded loaded;
    party__room_store *rs;
    party__schedule a = {"sa", "a", NULL, "pa", 2, PARTY__SCHED_AT, 0, T0 + 500};
    party__schedule b = {"sb", "b", NULL, "", 0, PARTY__SCHED_EVERY, 1000, T0 + 300};
    party__schedule c = {"sc", "c", "*/5 * * * *", "x", 1, PARTY__SCHED_CRON, 0, T0 + 300};
    listing l;
    void *val = NULL;
    size_t len = 0;
    int64_t at = 0, next = 0;
    int retries = 0;
    char big[64];

    assert_int_equal(own(f->be, 1, 0), 0);
    rs = load(f, f->be, 1, &loaded);
    assert_int_equal(loaded.alarm_at, 0);
    assert_int_equal(loaded.sched_next, 0);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(party__store_kv_put(rs, "pre:y", "4", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "b", "2", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "pre:x", "3", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "a", "1", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "pre", "", 0), 0);
    assert_int_equal(party__store_meta_put(rs, "name", "lobby", 5), 0);
    assert_int_equal(party__store_alarm_set(rs, T0 + 1000, 2), 0);
    assert_int_equal(party__store_sched_add(rs, &a), 0);
    assert_int_equal(party__store_sched_add(rs, &b), 0);
    assert_int_equal(party__store_sched_add(rs, &c), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f->be, rs, T0 + 300, 1), 0);
    assert_int_equal(party__store_wrote(rs), 0);

    /* Key order, prefixes, absent keys and bad ones. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_kv_list(rs, NULL, list_kv, &l), 0);
    assert_string_equal(l.text, "a=1,b=2,pre=,pre:x=3,pre:y=4");
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_kv_list(rs, "pre:", list_kv, &l), 0);
    assert_string_equal(l.text, "pre:x=3,pre:y=4");
    assert_int_equal(party__store_kv_get(rs, "zz", &val, &len), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_delete(rs, "zz"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_put(rs, "\xff", "1", 1), PARTY_EINVAL);
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(party__store_kv_put(rs, big, "v", PARTY__KV_MAX), PARTY_ETOOBIG);

    /* A batch rolled back keeps nothing of what it did. */
    assert_int_equal(party__store_kv_delete(rs, "b"), 0);
    assert_int_equal(party__store_kv_put(rs, "a", "changed", 7), 0);
    assert_int_equal(party__store_kv_put(rs, "new", "n", 1), 0);
    assert_int_equal(party__store_alarm_set(rs, 0, 0), 0);
    assert_int_equal(party__store_sched_cancel(rs, "sa"), 0);
    assert_int_equal(party__store_sched_set_next(rs, "sb", T0 + 100), 0);
    party__store_rollback(rs);
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_kv_list(rs, NULL, list_kv, &l), 0);
    assert_string_equal(l.text, "a=1,b=2,pre=,pre:x=3,pre:y=4");
    assert_int_equal(party__store_alarm_get(rs, &at, &retries), 0);
    assert_true(at == T0 + 1000 && retries == 2);

    /* Schedules: earliest first, then by id; until bounds them. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_sched_each(rs, T0 + 400, list_sched, &l), 0);
    assert_string_equal(l.text, "sb@300,sc@300");
    assert_int_equal(party__store_sched_earliest(rs, &next), 0);
    assert_true(next == T0 + 300);
    assert_int_equal(party__store_sched_cancel(rs, "nope"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_sched_set_next(rs, "sc", T0 + 900), 0);
    assert_int_equal(party__store_sched_cancel(rs, "sb"), 0);
    assert_int_equal(commit_one(f->be, rs, T0 + 500, 1), 0);
    f->be->ops->unload(rs);

    /* What was committed is what a new load finds. */
    rs = load(f, f->be, 1, &loaded);
    assert_true(loaded.alarm_at == T0 + 1000 && loaded.alarm_retries == 2);
    assert_true(loaded.sched_next == T0 + 500);
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, list_sched, &l), 0);
    assert_string_equal(l.text, "sa@500,sc@900");
    assert_int_equal(party__store_meta_get(rs, "name", &val, &len), 0);
    assert_true(len == 5 && memcmp(val, "lobby", 5) == 0);
    free(val);
    f->be->ops->unload(rs);

    /* The alarm index has the committed wake time (on PostgreSQL, of a
     * room no live node holds: released first). */
    assert_int_equal(own(f->be, 1, 1), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(f->be->ops->index_due(f->be, INT64_MAX, list_index, &l), 0);
    assert_string_equal(l.text, "002@500");
}

static void test_own_database_commits_and_rolls_back_the_same(void **state) {
    fixture *f = *state;
    party__room_store *rs;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int n = -1;

    assert_int_equal(own(f->be, 2, 0), 0);
    rs = load(f, f->be, 2, NULL);
    db = party__store_room_file_open(rs);
    assert_non_null(db);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY)", 0, 0, 0), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f->be, rs, 0, 0), 0);
    db = party__store_room_file_open(rs);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (1)", 0, 0, 0), 0);
    assert_int_equal(commit_one(f->be, rs, 0, 0), 0);
    db = party__store_room_file_open(rs);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (2)", 0, 0, 0), 0);
    party__store_rollback(rs);
    f->be->ops->unload(rs);

    rs = load(f, f->be, 2, NULL);
    db = party__store_room_file_open(rs);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(n, 1);
    party__store_rollback(rs);
    f->be->ops->unload(rs);
    assert_int_equal(own(f->be, 2, 1), 0);
}

/* ---- two nodes on PostgreSQL ---- */

static void test_second_node_cannot_acquire_until_released(void **state) {
    fixture *f = *state;
    party__backend *n2 = open_backend(f, "n2");

    assert_int_equal(own(f->be, 3, 0), 0);
    assert_int_equal(own(n2, 3, 0), PARTY_EBUSY);
    assert_int_equal(own(n2, 4, 0), 0); /* another room is free */
    assert_int_equal(own(f->be, 3, 1), 0);
    assert_int_equal(own(n2, 3, 0), 0);
    assert_int_equal(own(f->be, 3, 0), PARTY_EBUSY);
    party__backend_close(n2);
    /* Closing gave n2's rooms up. */
    assert_int_equal(own(f->be, 3, 0), 0);
    assert_int_equal(own(f->be, 4, 0), 0);
}

static void test_fenced_room_fails_alone_in_its_batch(void **state) {
    fixture *f = *state;
    party__room_store *rooms[2];
    party__commit batch[2];
    int results[2] = {1, 1};
    char sql[256], id[PARTY_ID_MAX];

    assert_int_equal(own(f->be, 5, 0), 0);
    assert_int_equal(own(f->be, 6, 0), 0);
    rooms[0] = load(f, f->be, 5, NULL);
    rooms[1] = load(f, f->be, 6, NULL);
    room_id(6, id);
    snprintf(sql, sizeof(sql),
             "UPDATE party_rooms SET epoch = epoch + 1, owner = 'n9:0' WHERE room_id = '%s'", id);
    sql_exec(f->uri, sql);
    assert_int_equal(party__store_kv_put(rooms[0], "k", "kept", 4), 0);
    assert_int_equal(party__store_kv_put(rooms[1], "k", "fenced", 6), 0);
    batch[0] = (party__commit){rooms[0], 0, 0};
    batch[1] = (party__commit){rooms[1], 0, 0};
    f->be->ops->commit_batch(f->be, batch, 2, results);
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], PARTY_EFENCED);
    /* Nothing of it stays in memory, nor will a later batch commit. */
    {
        void *val = NULL;
        assert_int_equal(party__store_kv_get(rooms[1], "k", &val, NULL), PARTY_ENOTFOUND);
    }
    assert_int_equal(party__store_kv_put(rooms[1], "k", "again", 5), 0);
    assert_int_equal(commit_one(f->be, rooms[1], 0, 0), PARTY_EFENCED);
    f->be->ops->unload(rooms[0]);
    f->be->ops->unload(rooms[1]);
    /* Loading a room that is another node's now is refused too. */
    {
        party__room_store *rs = NULL;
        party__room_loaded loaded;
        assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                         PARTY_EFENCED);
        assert_null(rs);
    }
}

/* A group of three rooms, the middle one taken by another node: the
 * other two commit (records written twice keep their last value, alarm
 * index entries, own databases) in one transaction, and nothing of the
 * fenced one reaches the database. */
static void test_group_commits_in_one_transaction_without_the_fenced_room(void **state) {
    fixture *f = *state;
    party__room_store *rooms[3];
    party__commit batch[3];
    int results[3] = {1, 1, 1}, i, round;
    char sql[2048], ids[3][PARTY_ID_MAX], in[3 * PARTY_ID_MAX + 16], text[256];

    for (i = 0; i < 3; i++) {
        assert_int_equal(own(f->be, 10 + i, 0), 0);
        rooms[i] = load(f, f->be, 10 + i, NULL);
        room_id(10 + i, ids[i]);
    }
    snprintf(in, sizeof(in), "('%s', '%s')", ids[0], ids[2]);
    snprintf(sql, sizeof(sql),
             "UPDATE party_rooms SET epoch = epoch + 1, owner = 'n9:0' WHERE room_id = '%s'",
             ids[1]);
    sql_exec(f->uri, sql);
    /* The first round writes snapshots of the new own databases, the
     * second changesets (the fenced room's table is gone: it starts
     * over). */
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 3; i++) {
            sqlite3 *db = party__store_room_file_open(rooms[i]);
            assert_non_null(db);
            assert_int_equal(
                sqlite3_exec(db,
                             round == 0 ? "CREATE TABLE t (k INTEGER PRIMARY KEY)"
                                        : "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY);"
                                          " INSERT INTO t VALUES (1)",
                             0, 0, 0),
                0);
            assert_int_equal(party__store_kv_put(rooms[i], "k", "first", 5), 0);
            assert_int_equal(party__store_kv_put(rooms[i], "j", "other", 5), 0);
            assert_int_equal(party__store_kv_put(rooms[i], "k", round == 0 ? "last" : "again",
                                                 round == 0 ? 4 : 5),
                             0);
            assert_int_equal(party__store_alarm_set(rooms[i], T0 + 10 * round + i, 0), 0);
            batch[i] = (party__commit){rooms[i], T0 + 10 * round + i, 1};
        }
        f->be->ops->commit_batch(f->be, batch, 3, results);
        assert_int_equal(results[0], 0);
        assert_int_equal(results[1], PARTY_EFENCED);
        assert_int_equal(results[2], 0);

        /* One transaction wrote every row of the group's rooms. */
        snprintf(sql, sizeof(sql),
                 "SELECT count(DISTINCT x) FROM (SELECT xmin::text x FROM party_kv"
                 " WHERE room_id IN %s AND key = 'k' UNION ALL SELECT xmin::text FROM"
                 " party_alarm_index WHERE room_id IN %s UNION ALL SELECT xmin::text FROM"
                 " party_alarm WHERE room_id IN %s UNION ALL SELECT xmin::text FROM %s"
                 " WHERE room_id IN %s) a",
                 in, in, in, round == 0 ? "party_room_files" : "party_room_changes", in);
        sql_text(f->uri, sql, text, sizeof(text));
        assert_string_equal(text, "1");
        sql_text(f->uri,
                 "SELECT string_agg(convert_from(value, 'UTF8'), ',' ORDER BY room_id, key)"
                 " FROM party_kv",
                 text, sizeof(text));
        assert_string_equal(text, round == 0 ? "other,last,other,last" : "other,again,other,again");
        sql_text(f->uri,
                 "SELECT string_agg(due_ms::text, ',' ORDER BY room_id) FROM party_alarm_index",
                 text, sizeof(text));
        snprintf(sql, sizeof(sql), "%lld,%lld", (long long)(T0 + 10 * round),
                 (long long)(T0 + 10 * round + 2));
        assert_string_equal(text, sql);
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT count(*) FROM party_kv WHERE room_id = '%s') + (SELECT count(*)"
                 " FROM party_alarm WHERE room_id = '%s') + (SELECT count(*) FROM"
                 " party_room_files WHERE room_id = '%s') + (SELECT count(*) FROM"
                 " party_room_changes WHERE room_id = '%s')",
                 ids[1], ids[1], ids[1], ids[1]);
        sql_text(f->uri, sql, text, sizeof(text));
        assert_string_equal(text, "0");
    }
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM party_room_files WHERE room_id IN %s) || ','"
             " || (SELECT count(*) FROM party_room_changes WHERE room_id IN %s)",
             in, in);
    sql_text(f->uri, sql, text, sizeof(text));
    assert_string_equal(text, "2,2");
    for (i = 0; i < 3; i++)
        f->be->ops->unload(rooms[i]);
    /* What was acknowledged loads again, own database included. */
    {
        party__room_store *rs = load(f, f->be, 12, NULL);
        void *val = NULL;
        size_t len = 0;
        sqlite3 *db;
        sqlite3_stmt *st = NULL;
        int n = -1;
        assert_int_equal(party__store_kv_get(rs, "k", &val, &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(val, "again", 5);
        free(val);
        db = party__store_room_file_open(rs);
        assert_non_null(db);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL),
                         SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        assert_int_equal(n, 1);
        party__store_rollback(rs);
        f->be->ops->unload(rs);
    }
}

/* A write the server refuses (here a constraint) fails its room only:
 * the group's other room commits. */
static void test_refused_write_fails_its_room_alone(void **state) {
    fixture *f = *state;
    party__room_store *rooms[2];
    party__commit batch[2];
    int results[2] = {1, 1};
    char text[64];

    sql_exec(f->uri, "ALTER TABLE party_kv ADD CONSTRAINT no_bad CHECK (key <> 'bad')");
    assert_int_equal(own(f->be, 20, 0), 0);
    assert_int_equal(own(f->be, 21, 0), 0);
    rooms[0] = load(f, f->be, 20, NULL);
    rooms[1] = load(f, f->be, 21, NULL);
    assert_int_equal(party__store_kv_put(rooms[0], "bad", "x", 1), 0);
    assert_int_equal(party__store_kv_put(rooms[1], "good", "y", 1), 0);
    batch[0] = (party__commit){rooms[0], 0, 0};
    batch[1] = (party__commit){rooms[1], 0, 0};
    f->be->ops->commit_batch(f->be, batch, 2, results);
    assert_int_equal(results[0], PARTY_EIO);
    assert_int_equal(results[1], 0);
    sql_text(f->uri, "SELECT string_agg(key, ',' ORDER BY key) FROM party_kv", text, sizeof(text));
    assert_string_equal(text, "good");
    /* The failed room's batch is gone from memory; its next one commits. */
    {
        void *val = NULL;
        assert_int_equal(party__store_kv_get(rooms[0], "bad", &val, NULL), PARTY_ENOTFOUND);
    }
    assert_int_equal(party__store_kv_put(rooms[0], "fine", "z", 1), 0);
    assert_int_equal(commit_one(f->be, rooms[0], 0, 0), 0);
    f->be->ops->unload(rooms[0]);
    f->be->ops->unload(rooms[1]);
}

/* The server drops the node's record connections (a restart, an admin's
 * pg_terminate_backend): the connections that replace them prepare the
 * commit statements again, and commits go on. A commit handed a dropped
 * connection before the node noticed fails (PARTY_EIO, nothing kept);
 * each such failure closes one, and the pool holds at most a few. */
/* The server ends every record connection of the node while they are
 * idle in the pool (as a restart, idle_session_timeout or a pooler
 * would): the next commits and loads find them closed before sending
 * anything, and go through new ones at the first try, losing nothing. */
static void test_commits_go_on_after_the_server_drops_record_connections(void **state) {
    fixture *f = *state;
    party__room_store *a, *b, *c;
    char text[64];
    int round;

    assert_int_equal(own(f->be, 30, 0), 0);
    assert_int_equal(own(f->be, 31, 0), 0);
    assert_int_equal(own(f->be, 32, 0), 0);
    a = load(f, f->be, 30, NULL);
    b = load(f, f->be, 31, NULL);
    assert_int_equal(party__store_kv_put(a, "k", "one", 3), 0);
    assert_int_equal(commit_one(f->be, a, 0, 0), 0);
    assert_int_equal(party__store_kv_put(b, "k", "one", 3), 0);
    assert_int_equal(commit_one(f->be, b, T0 + 5, 1), 0);
    for (round = 0; round < 3; round++) {
        party__commit both[2] = {{a, 0, 0}, {b, T0 + 9, 1}};
        int results[2] = {1, 1};
        char want[16];

        assert_true(pg_sessions_terminate(f->uri, "partyd") >= 1);
        snprintf(want, sizeof(want), "two-%d", round);
        assert_int_equal(party__store_kv_put(a, "k", want, strlen(want)), 0);
        assert_int_equal(party__store_kv_put(b, "k", want, strlen(want)), 0);
        f->be->ops->commit_batch(f->be, both, 2, results);
        assert_int_equal(results[0], 0);
        assert_int_equal(results[1], 0);
        sql_text(f->uri,
                 "SELECT string_agg(convert_from(value, 'UTF8'), ',' ORDER BY room_id)"
                 " FROM party_kv WHERE key = 'k'",
                 text, sizeof(text));
        snprintf(want, sizeof(want), "two-%d,two-%d", round, round);
        assert_string_equal(text, want);

        /* A load on the closed connections reads what was committed. */
        assert_true(pg_sessions_terminate(f->uri, "partyd") >= 1);
        c = load(f, f->be, 30, NULL);
        {
            void *val = NULL;
            size_t len = 0;
            assert_int_equal(party__store_kv_get(c, "k", &val, &len), 0);
            snprintf(want, sizeof(want), "two-%d", round);
            assert_int_equal(len, strlen(want));
            assert_memory_equal(val, want, len);
            free(val);
        }
        f->be->ops->unload(c);
    }
    sql_text(f->uri, "SELECT due_ms FROM party_alarm_index", text, sizeof(text));
    assert_int_equal(atoll(text), T0 + 9);
    /* Each round found at least one closed connection for its commit and
     * one for its load. */
    assert_true(__atomic_load_n(&f->be->reconnects, __ATOMIC_RELAXED) >= 6);
    f->be->ops->unload(a);
    f->be->ops->unload(b);
}

#define SQLITE(fn) cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)
#define PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        SQLITE(test_records_behave_the_same),
        PG(test_records_behave_the_same),
        SQLITE(test_own_database_commits_and_rolls_back_the_same),
        PG(test_own_database_commits_and_rolls_back_the_same),
        PG(test_second_node_cannot_acquire_until_released),
        PG(test_fenced_room_fails_alone_in_its_batch),
        PG(test_group_commits_in_one_transaction_without_the_fenced_room),
        PG(test_refused_write_fails_its_room_alone),
        PG(test_commits_go_on_after_the_server_drops_record_connections),
    };
    server_uri = getenv("PARTYD_TEST_PG");
    if (server_uri == NULL) {
        fprintf(stderr, "PARTYD_TEST_PG is not set: run me through tests/cluster/with_pg.sh\n");
        return 1;
    }
    party__store_configure();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
