/* Tests for the storage seam (src/storage.h) through its SQLite backend
 * (src/store_sqlite.c), with real files in a temporary directory: acquire
 * and release complete, load finds what earlier commits kept, a shared
 * room's reads see its open batch over the committed rows (lists merged
 * in key order) and a rollback drops it, commit_batch gives one result
 * per room and one room's failure leaves the others committed, a new room
 * makes no file, the backend knows whether a batch wrote, format versions
 * are checked (a newer file refused naming both versions, an older one
 * migrated), a room's move to its own file survives a crash at each step,
 * a data directory of an earlier partyd is read unchanged, the alarm
 * index follows committed wake times (never later than a committed one),
 * what an open store costs in memory, and that a room that cannot load
 * says why in the OS's words. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "as_nobody.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "backends.h"
#include "storage.h"

#define T0 1700000000000LL

typedef struct fixture {
    char dir[64];
    party__backend_config cfg;
    party__backend *be;
    char why[1024];
} fixture;

static void room_id(int i, char out[PARTY_ID_MAX]) {
    snprintf(out, PARTY_ID_MAX, "%064x", i + 1);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/partyd-test-storage-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->cfg.data_dir = f->dir;
    f->cfg.durability_full = 1;
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    *state = f;
    return 0;
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

static party__room_store *load(fixture *f, int i, party__room_loaded *loaded) {
    party__room_loaded ignored;
    party__room_store *rs = NULL;
    char id[PARTY_ID_MAX];
    room_id(i, id);
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, loaded ? loaded : &ignored, f->why,
                                      sizeof(f->why)),
                     0);
    assert_non_null(rs);
    return rs;
}

/* Commits one room's batch; its result. */
static int commit_one(fixture *f, party__room_store *rs, int64_t wake_ms, int wake_changed) {
    party__commit c = {rs, wake_ms, wake_changed};
    int result = 1;
    f->be->ops->commit_batch(f->be, &c, 1, &result);
    return result;
}

/* The value of key in room i's records ("" when absent). */
static void kv_value(fixture *f, int i, const char *key, char *out, size_t cap) {
    party__room_store *rs = load(f, i, NULL);
    void *val = NULL;
    out[0] = '\0';
    if (party__store_kv_get(rs, key, &val, NULL) == 0)
        snprintf(out, cap, "%s", (const char *)val);
    free(val);
    f->be->ops->unload(rs);
}

/* The file of room i, for edits by hand. */
static sqlite3 *room_file(fixture *f, int i) {
    char id[PARTY_ID_MAX], path[4096];
    sqlite3 *db = NULL;
    room_id(i, id);
    assert_int_equal(party__store_path(f->dir, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static void exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

/* Commits k = v in room i. */
static void kv_put_one(fixture *f, int i) {
    party__room_store *rs = load(f, i, NULL);
    assert_int_equal(party__store_kv_put(rs, "k", "v", 1), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
}

/* Moves room i's records into its own file (party_room_db), committed. */
static void make_own(fixture *f, int i) {
    party__room_store *rs = load(f, i, NULL);
    assert_non_null(party__store_room_file_open(rs));
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
}

/* Runs sql on every shard file with a connection of our own. */
static void shards_exec(fixture *f, const char *sql) {
    char path[4096];
    struct stat st;
    int k;
    for (k = 0; k < 256; k++) {
        sqlite3 *db = NULL;
        snprintf(path, sizeof(path), "%s/rooms-%d.db", f->dir, k);
        if (stat(path, &st) != 0)
            break;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        exec(db, sql);
        sqlite3_close(db);
    }
    assert_true(k > 0);
}

/* The number of rows of room i in table across the shards (the query's
 * first column: pass a count). */
static int shard_count(fixture *f, const char *sql_with_id) {
    char path[4096];
    struct stat st;
    int k, n = 0;
    for (k = 0; k < 256; k++) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        snprintf(path, sizeof(path), "%s/rooms-%d.db", f->dir, k);
        if (stat(path, &st) != 0)
            break;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql_with_id, -1, &stmt, NULL), SQLITE_OK);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            n += sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    return n;
}

static int format_version(sqlite3 *db) {
    sqlite3_stmt *stmt = NULL;
    int v = -1;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM _party_format", -1, &stmt, NULL),
                     SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

/* ---- acquire and release ---- */

typedef struct completion {
    int calls, status;
    uv_thread_t thread;
} completion;

static void record_done(party__store_req *req, int status) {
    completion *c = req->data;
    c->calls++;
    c->status = status;
    c->thread = uv_thread_self();
}

static void test_acquire_and_release_complete_on_the_rooms_loop(void **state) {
    fixture *f = *state;
    completion c = {0, 1, 0};
    party__store_req req;
    uv_thread_t self = uv_thread_self();
    uv_loop_t loop;
    char id[PARTY_ID_MAX];

    assert_int_equal(uv_loop_init(&loop), 0);
    room_id(1, id);
    memset(&req, 0, sizeof(req));
    req.loop = &loop;
    req.room_id = id;
    req.party = "test";
    req.done = record_done;
    req.data = &c;
    f->be->ops->acquire(f->be, &req);
    /* The local backend completes at once; another may take a loop turn. */
    while (c.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_true(uv_thread_equal(&c.thread, &self));

    c.calls = 0;
    c.status = 1;
    f->be->ops->release(f->be, &req);
    while (c.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- load ---- */

typedef struct sched_seen {
    int n;
    char names[4][16];
} sched_seen;

static int collect_sched(const party__schedule *s, void *arg) {
    sched_seen *seen = arg;
    if (seen->n < 4)
        snprintf(seen->names[seen->n++], 16, "%s", s->name);
    return 0;
}

static void test_load_finds_what_earlier_batches_committed(void **state) {
    fixture *f = *state;
    party__room_loaded loaded;
    party__room_store *rs = load(f, 1, &loaded);
    party__schedule sc = {"s1", "tick", NULL, "p", 1, PARTY__SCHED_AT, 0, T0 + 500};
    sched_seen seen = {0};
    void *val = NULL;
    size_t len = 0;
    int64_t at = 0;
    int retries = 0;

    /* A room with no records yet: an empty store. */
    assert_int_equal(loaded.alarm_at, 0);
    assert_int_equal(loaded.sched_next, 0);
    assert_int_equal(party__store_kv_get(rs, "k", &val, &len), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_put(rs, "k", "value", 5), 0);
    assert_int_equal(party__store_meta_put(rs, "name", "lobby", 5), 0);
    assert_int_equal(party__store_alarm_set(rs, T0 + 1000, 2), 0);
    assert_int_equal(party__store_sched_add(rs, &sc), 0);
    assert_int_equal(commit_one(f, rs, T0 + 500, 1), 0);
    f->be->ops->unload(rs);

    rs = load(f, 1, &loaded);
    assert_int_equal(loaded.alarm_at, T0 + 1000);
    assert_int_equal(loaded.alarm_retries, 2);
    assert_int_equal(loaded.sched_next, T0 + 500);
    assert_int_equal(party__store_kv_get(rs, "k", &val, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(val, "value", 5);
    free(val);
    assert_int_equal(party__store_meta_get(rs, "name", &val, &len), 0);
    assert_string_equal(val, "lobby");
    free(val);
    assert_int_equal(party__store_alarm_get(rs, &at, &retries), 0);
    assert_int_equal(at, T0 + 1000);
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.names[0], "tick");
    f->be->ops->unload(rs);
}

/* ---- commit_batch ---- */

static int refuse_commit(void *arg) {
    (void)arg;
    return 1; /* the COMMIT becomes a ROLLBACK and fails */
}

static void test_commit_batch_fails_only_the_failing_room(void **state) {
    fixture *f = *state;
    party__room_store *rooms[3];
    party__commit batch[3];
    int results[3] = {1, 1, 1}, i;
    char value[32];

    for (i = 0; i < 3; i++) {
        rooms[i] = load(f, 10 + i, NULL);
        assert_int_equal(party__store_kv_put(rooms[i], "k", "kept", 4), 0);
        batch[i].store = rooms[i];
        batch[i].wake_ms = 0;
        batch[i].wake_changed = 0;
    }
    /* The middle room's file refuses to commit. */
    sqlite3_commit_hook(party__store_room_file_open(rooms[1]), refuse_commit, NULL);
    f->be->ops->commit_batch(f->be, batch, 3, results);
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], PARTY_EIO);
    assert_int_equal(results[2], 0);
    /* A failed room's store stays usable: nothing of its batch is left. */
    assert_int_equal(party__store_wrote(rooms[1]), 0);
    for (i = 0; i < 3; i++)
        f->be->ops->unload(rooms[i]);
    kv_value(f, 10, "k", value, sizeof(value));
    assert_string_equal(value, "kept");
    kv_value(f, 11, "k", value, sizeof(value));
    assert_string_equal(value, "");
    kv_value(f, 12, "k", value, sizeof(value));
    assert_string_equal(value, "kept");
}

/* ---- did the batch write ---- */

static void test_backend_knows_whether_the_batch_wrote(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 1, NULL);
    sqlite3 *db;
    void *val = NULL;

    assert_int_equal(party__store_wrote(rs), 0);
    /* A read is not a write. */
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), PARTY_ENOTFOUND);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(party__store_kv_put(rs, "k", "v", 1), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    party__store_rollback(rs);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), PARTY_ENOTFOUND);
    party__store_rollback(rs);

    /* Each kind of record counts, the room's own SQL too. */
    assert_int_equal(party__store_alarm_set(rs, T0, 0), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(party__store_meta_put(rs, "party", "test", 4), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    db = party__store_room_file_open(rs);
    assert_non_null(db);
    assert_int_equal(party__store_wrote(rs), 0);
    exec(db, "CREATE TABLE notes (text TEXT)");
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);

    /* Writes the room's SQL lost (it committed on its own, then wrote
     * again outside the batch) still count: the batch must fail. */
    db = party__store_room_file_open(rs);
    exec(db, "INSERT INTO notes VALUES ('a')");
    exec(db, "COMMIT");
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f, rs, 0, 0), PARTY_EIO);
    assert_int_equal(party__store_wrote(rs), 0);
    f->be->ops->unload(rs);
}

/* ---- format versions ---- */

static void test_newer_room_file_is_refused_naming_both_versions(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 1, NULL);
    party__room_loaded loaded;
    sqlite3 *db;
    char id[PARTY_ID_MAX];

    assert_int_equal(party__store_kv_put(rs, "k", "v", 1), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    make_own(f, 1);
    db = room_file(f, 1);
    assert_int_equal(format_version(db), 2);
    exec(db, "UPDATE _party_format SET version = 3");
    sqlite3_close(db);

    room_id(1, id);
    rs = NULL;
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                     PARTY_EIO);
    assert_null(rs);
    print_message("%s\n", f->why);
    assert_non_null(strstr(f->why, "format version 3"));
    assert_non_null(strstr(f->why, "version 2"));
    assert_non_null(strstr(f->why, id));
    /* Refused, not touched. */
    db = room_file(f, 1);
    assert_int_equal(format_version(db), 3);
    sqlite3_close(db);
}

static void test_older_room_file_is_migrated_and_keeps_its_records(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 1, NULL);
    char value[32];
    sqlite3 *db;

    assert_int_equal(party__store_kv_put(rs, "k", "old", 3), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    make_own(f, 1);
    /* A version row from an older partyd. */
    db = room_file(f, 1);
    exec(db, "UPDATE _party_format SET version = 0");
    sqlite3_close(db);
    kv_value(f, 1, "k", value, sizeof(value));
    assert_string_equal(value, "old");
    db = room_file(f, 1);
    assert_int_equal(format_version(db), 2);
    /* A file from before versions were recorded: the first partyds'. */
    exec(db, "DROP TABLE _party_format");
    sqlite3_close(db);
    kv_value(f, 1, "k", value, sizeof(value));
    assert_string_equal(value, "old");
    db = room_file(f, 1);
    assert_int_equal(format_version(db), 2);
    sqlite3_close(db);
}

static void test_newer_alarm_index_is_refused_and_older_one_migrated(void **state) {
    fixture *f = *state;
    char path[4096];
    sqlite3 *db;

    party__backend_close(f->be);
    f->be = NULL;
    snprintf(path, sizeof(path), "%s/alarms.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(format_version(db), 2);
    exec(db, "UPDATE _party_format SET version = 7");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), PARTY_EIO);
    assert_null(f->be);
    print_message("%s\n", f->why);
    assert_non_null(strstr(f->why, "alarm index"));
    assert_non_null(strstr(f->why, "format version 7"));
    assert_non_null(strstr(f->why, "version 2"));

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    exec(db, "DROP TABLE _party_format");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(format_version(db), 2);
    sqlite3_close(db);
}

/* ---- the alarm index ---- */

typedef struct entries {
    int n;
    char ids[8][PARTY_ID_MAX];
    char parties[8][16];
    int64_t due[8];
} entries;

static int collect_entry(const char *id, const char *party, int64_t due_ms, void *arg) {
    entries *e = arg;
    if (e->n < 8) {
        snprintf(e->ids[e->n], PARTY_ID_MAX, "%s", id);
        snprintf(e->parties[e->n], 16, "%s", party);
        e->due[e->n++] = due_ms;
    }
    return 0;
}

/* Room i's entry in the index (0: none). */
static int64_t index_due_of(fixture *f, int i) {
    entries e = {0};
    char id[PARTY_ID_MAX];
    int k;
    room_id(i, id);
    assert_int_equal(f->be->ops->index_load(f->be, collect_entry, &e), 0);
    for (k = 0; k < e.n; k++)
        if (strcmp(e.ids[k], id) == 0)
            return e.due[k];
    return 0;
}

static void test_index_due_lists_rooms_due_earliest_first(void **state) {
    fixture *f = *state;
    int64_t wakes[3] = {T0 + 30, T0 + 10, T0 + 20};
    party__room_store *rooms[3];
    party__commit batch[3];
    int results[3], i;
    char id[PARTY_ID_MAX];
    entries e = {0};

    for (i = 0; i < 3; i++) {
        rooms[i] = load(f, i, NULL);
        assert_int_equal(party__store_alarm_set(rooms[i], wakes[i], 0), 0);
        batch[i].store = rooms[i];
        batch[i].wake_ms = wakes[i];
        batch[i].wake_changed = 1;
    }
    f->be->ops->commit_batch(f->be, batch, 3, results);
    for (i = 0; i < 3; i++) {
        assert_int_equal(results[i], 0);
        f->be->ops->unload(rooms[i]);
    }
    assert_int_equal(f->be->ops->index_due(f->be, T0 + 20, collect_entry, &e), 0);
    assert_int_equal(e.n, 2);
    room_id(1, id);
    assert_string_equal(e.ids[0], id);
    assert_string_equal(e.parties[0], "test");
    assert_int_equal(e.due[0], T0 + 10);
    room_id(2, id);
    assert_string_equal(e.ids[1], id);
    assert_int_equal(e.due[1], T0 + 20);
    memset(&e, 0, sizeof(e));
    assert_int_equal(f->be->ops->index_load(f->be, collect_entry, &e), 0);
    assert_int_equal(e.n, 3);
    /* Kept across a close and an open. */
    party__backend_close(f->be);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), 0);
    assert_int_equal(index_due_of(f, 0), T0 + 30);
}

static void test_index_follows_wake_time_and_is_never_later_than_committed(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 1, NULL);

    assert_int_equal(party__store_alarm_set(rs, T0 + 1000, 0), 0);
    assert_int_equal(commit_one(f, rs, T0 + 1000, 1), 0);
    assert_int_equal(index_due_of(f, 1), T0 + 1000);
    /* Later: committed, then the index takes it. */
    assert_int_equal(party__store_alarm_set(rs, T0 + 5000, 0), 0);
    assert_int_equal(commit_one(f, rs, T0 + 5000, 1), 0);
    assert_int_equal(index_due_of(f, 1), T0 + 5000);

    /* A later time whose commit fails leaves the committed one. */
    sqlite3_commit_hook(party__store_room_file_open(rs), refuse_commit, NULL);
    assert_int_equal(party__store_alarm_set(rs, T0 + 9000, 0), 0);
    assert_int_equal(commit_one(f, rs, T0 + 9000, 1), PARTY_EIO);
    assert_int_equal(index_due_of(f, 1), T0 + 5000);
    /* An earlier one whose commit fails may stay: one wake-up too many,
     * never one missed. */
    assert_int_equal(party__store_alarm_set(rs, T0 + 2000, 0), 0);
    assert_int_equal(commit_one(f, rs, T0 + 2000, 1), PARTY_EIO);
    assert_true(index_due_of(f, 1) <= T0 + 5000);
    sqlite3_commit_hook(party__store_room_file_open(rs), NULL, NULL);
    party__store_rollback(rs);

    /* Nothing left to wake for: the entry goes. */
    assert_int_equal(party__store_alarm_set(rs, 0, 0), 0);
    assert_int_equal(commit_one(f, rs, 0, 1), 0);
    assert_int_equal(index_due_of(f, 1), 0);
    f->be->ops->unload(rs);
}

/* ---- shared rooms: the open batch in memory ---- */

typedef struct listed {
    int n;
    char text[256];
} listed;

/* Appends "key=value," for each pair. */
static int collect_pair(const char *key, const void *val, size_t len, void *arg) {
    listed *l = arg;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s=%.*s,", key, (int)len,
             len > 0 ? (const char *)val : "");
    l->n++;
    return 0;
}

static void list_of(party__room_store *rs, const char *prefix, char *out, size_t cap) {
    listed l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(party__store_kv_list(rs, prefix, collect_pair, &l), 0);
    snprintf(out, cap, "%s", l.text);
}

static void test_shared_room_reads_see_its_open_batch_over_committed_rows(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 1, NULL), *other;
    char text[256];
    void *val = NULL;
    size_t len = 0;

    assert_int_equal(party__store_kv_put(rs, "a1", "x", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "b1", "y", 1), 0);
    assert_int_equal(party__store_kv_put(rs, "b3", "z", 1), 0);
    assert_int_equal(party__store_meta_put(rs, "name", "lobby", 5), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    assert_int_equal(party__store_wrote(rs), 0);

    /* Pending: one key changed, one deleted, two new (one before every
     * committed key, one between two). */
    assert_int_equal(party__store_kv_put(rs, "b1", "Y", 1), 0);
    assert_int_equal(party__store_kv_delete(rs, "b3"), 0);
    assert_int_equal(party__store_kv_delete(rs, "b3"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_delete(rs, "never"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_put(rs, "b2", "new", 3), 0);
    assert_int_equal(party__store_kv_put(rs, "0", "first", 5), 0);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(party__store_kv_get(rs, "b1", &val, &len), 0);
    assert_int_equal(len, 1);
    assert_string_equal(val, "Y");
    free(val);
    assert_int_equal(party__store_kv_get(rs, "b3", &val, &len), PARTY_ENOTFOUND);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "0=first,a1=x,b1=Y,b2=new,");
    list_of(rs, "b", text, sizeof(text));
    assert_string_equal(text, "b1=Y,b2=new,");
    list_of(rs, "c", text, sizeof(text));
    assert_string_equal(text, "");

    /* Another store of the room sees only what is committed. */
    other = load(f, 1, NULL);
    list_of(other, NULL, text, sizeof(text));
    assert_string_equal(text, "a1=x,b1=y,b3=z,");
    f->be->ops->unload(other);

    /* A rollback drops the batch. */
    party__store_rollback(rs);
    assert_int_equal(party__store_wrote(rs), 0);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "a1=x,b1=y,b3=z,");
    assert_int_equal(party__store_meta_get(rs, "name", &val, &len), 0);
    assert_string_equal(val, "lobby");
    free(val);

    /* The same batch committed is what a load finds. */
    assert_int_equal(party__store_kv_put(rs, "b1", "Y", 1), 0);
    assert_int_equal(party__store_kv_delete(rs, "b3"), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    rs = load(f, 1, NULL);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "a1=x,b1=Y,");
    f->be->ops->unload(rs);
}

static void test_shared_room_alarm_and_schedules_see_its_open_batch(void **state) {
    fixture *f = *state;
    party__room_loaded loaded;
    party__room_store *rs = load(f, 2, NULL);
    party__schedule s1 = {"s1", "one", NULL, "p", 1, PARTY__SCHED_AT, 0, T0 + 100};
    party__schedule s2 = {"s2", "two", NULL, "", 0, PARTY__SCHED_EVERY, 1000, T0 + 200};
    party__schedule s3 = {"s3", "three", "0 * * * *", "q", 1, PARTY__SCHED_CRON, 0, T0 + 300};
    sched_seen seen = {0};
    int64_t at = 0, next = 0;
    int retries = 0;

    assert_int_equal(party__store_alarm_set(rs, T0 + 5000, 1), 0);
    assert_int_equal(party__store_sched_add(rs, &s1), 0);
    assert_int_equal(party__store_sched_add(rs, &s2), 0);
    assert_int_equal(party__store_sched_add(rs, &s2), PARTY_EIO); /* an id taken */
    assert_int_equal(party__store_sched_earliest(rs, &next), 0);
    assert_int_equal(next, T0 + 100);
    assert_int_equal(commit_one(f, rs, T0 + 100, 1), 0);

    /* Pending: s1 cancelled, s2 moved earlier, s3 added, the alarm gone. */
    assert_int_equal(party__store_sched_cancel(rs, "s1"), 0);
    assert_int_equal(party__store_sched_cancel(rs, "s1"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_sched_cancel(rs, "none"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_sched_set_next(rs, "s2", T0 + 50), 0);
    assert_int_equal(party__store_sched_add(rs, &s3), 0);
    assert_int_equal(party__store_alarm_set(rs, 0, 0), 0);
    assert_int_equal(party__store_alarm_get(rs, &at, &retries), 0);
    assert_int_equal(at, 0);
    assert_int_equal(party__store_sched_earliest(rs, &next), 0);
    assert_int_equal(next, T0 + 50);
    assert_int_equal(party__store_sched_each(rs, T0 + 250, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.names[0], "two");
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "two");
    assert_string_equal(seen.names[1], "three");

    party__store_rollback(rs);
    assert_int_equal(party__store_alarm_get(rs, &at, &retries), 0);
    assert_int_equal(at, T0 + 5000);
    assert_int_equal(retries, 1);
    assert_int_equal(party__store_sched_earliest(rs, &next), 0);
    assert_int_equal(next, T0 + 100);

    assert_int_equal(party__store_sched_cancel(rs, "s1"), 0);
    assert_int_equal(party__store_sched_set_next(rs, "s2", T0 + 50), 0);
    assert_int_equal(party__store_sched_add(rs, &s3), 0);
    assert_int_equal(commit_one(f, rs, T0 + 50, 1), 0);
    f->be->ops->unload(rs);
    rs = load(f, 2, &loaded);
    assert_int_equal(loaded.alarm_at, T0 + 5000);
    assert_int_equal(loaded.sched_next, T0 + 50);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "two");
    assert_string_equal(seen.names[1], "three");
    f->be->ops->unload(rs);
}

/* A write the batch could not record (here: the read it needs fails)
 * fails the whole batch, as a transaction SQLite rolled back does: the
 * batch's other writes are not committed without it. */
static void test_shared_write_that_cannot_be_recorded_fails_the_batch(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 5, NULL);
    char value[32];

    assert_int_equal(party__store_kv_put(rs, "k", "old", 3), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    assert_int_equal(party__store_wrote(rs), 0);
    assert_int_equal(party__store_kv_put(rs, "k", "new", 3), 0);
    shards_exec(f, "ALTER TABLE _party_kv RENAME TO unreadable");
    assert_int_not_equal(party__store_kv_delete(rs, "other"), 0);
    shards_exec(f, "ALTER TABLE unreadable RENAME TO _party_kv");
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(commit_one(f, rs, 0, 0), PARTY_EIO);
    assert_int_equal(party__store_wrote(rs), 0);
    f->be->ops->unload(rs);
    kv_value(f, 5, "k", value, sizeof(value));
    assert_string_equal(value, "old");
}

#define BATCH 8

/* Eight rooms over four shards: some share one, committed in one
 * transaction; the one whose records cannot be written fails alone. */
static void test_commit_batch_of_shared_rooms_fails_only_the_failing_room(void **state) {
    fixture *f = *state;
    party__room_store *rooms[BATCH];
    party__commit batch[BATCH];
    int results[BATCH], i;
    char id[PARTY_ID_MAX], sql[512], value[32];

    room_id(23, id);
    snprintf(sql, sizeof(sql),
             "CREATE TRIGGER refuse BEFORE INSERT ON _party_kv WHEN NEW.room_id = '%s'"
             " BEGIN SELECT RAISE(ABORT, 'refused'); END",
             id);
    shards_exec(f, sql);
    for (i = 0; i < BATCH; i++) {
        rooms[i] = load(f, 20 + i, NULL);
        assert_int_equal(party__store_kv_put(rooms[i], "k", "kept", 4), 0);
        assert_int_equal(party__store_meta_put(rooms[i], "name", "n", 1), 0);
        batch[i].store = rooms[i];
        batch[i].wake_ms = 0;
        batch[i].wake_changed = 0;
        results[i] = 1;
    }
    f->be->ops->commit_batch(f->be, batch, BATCH, results);
    for (i = 0; i < BATCH; i++) {
        assert_int_equal(results[i], i == 3 ? PARTY_EIO : 0);
        assert_int_equal(party__store_wrote(rooms[i]), 0);
        f->be->ops->unload(rooms[i]);
    }
    for (i = 0; i < BATCH; i++) {
        kv_value(f, 20 + i, "k", value, sizeof(value));
        assert_string_equal(value, i == 3 ? "" : "kept");
    }
    /* Nothing of the failed room's batch, its name included. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM _party_meta WHERE room_id = '%s'", id);
    assert_int_equal(shard_count(f, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM _party_rooms WHERE room_id = '%s'", id);
    assert_int_equal(shard_count(f, sql), 0);
    assert_int_equal(shard_count(f, "SELECT count(*) FROM _party_rooms"), BATCH - 1);
}

/* The names of the entries of dir, sorted, into out ("a,b,"). */
static void dir_entries(const char *dir, char *out, size_t cap) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), i;
    out[0] = '\0';
    assert_true(n >= 0);
    for (i = 0; i < n; i++) {
        size_t used = strlen(out);
        if (names[i]->d_name[0] != '.')
            snprintf(out + used, cap - used, "%s,", names[i]->d_name);
        free(names[i]);
    }
    free(names);
}

static void test_new_rooms_make_no_file(void **state) {
    fixture *f = *state;
    char before[512], after[512];
    int i;

    dir_entries(f->dir, before, sizeof(before));
    for (i = 0; i < 20; i++) {
        party__room_store *rs = load(f, 300 + i, NULL);
        assert_int_equal(party__store_meta_put(rs, "name", "n", 1), 0);
        assert_int_equal(party__store_kv_put(rs, "k", "v", 1), 0);
        assert_int_equal(commit_one(f, rs, 0, 0), 0);
        f->be->ops->unload(rs);
    }
    dir_entries(f->dir, after, sizeof(after));
    assert_string_equal(before, after);
    assert_null(strstr(after, "rooms,"));
    assert_non_null(strstr(after, "rooms-0.db,"));
}

static void test_newer_shard_file_is_refused_naming_both_versions(void **state) {
    fixture *f = *state;
    char path[4096];
    sqlite3 *db;

    party__backend_close(f->be);
    f->be = NULL;
    snprintf(path, sizeof(path), "%s/rooms-1.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(format_version(db), 2);
    exec(db, "UPDATE _party_format SET version = 3");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), PARTY_EIO);
    assert_null(f->be);
    print_message("%s\n", f->why);
    assert_non_null(strstr(f->why, path));
    assert_non_null(strstr(f->why, "format version 3"));
    assert_non_null(strstr(f->why, "version 2"));
    /* Refused, not touched. */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(format_version(db), 3);
    exec(db, "UPDATE _party_format SET version = 2");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), 0);
}

/* The shard count is fixed when the data directory is made and recorded
 * by alarms.db and the shared files: a lost alarms.db is rebuilt with the
 * files' count (rooms are then found in their shards), and an alarm index
 * that disagrees with the files is refused. */
static void test_shard_count_outlives_a_lost_alarm_index(void **state) {
    fixture *f = *state;
    char cmd[512], value[32], path[4096];
    struct stat st;
    sqlite3 *db;
    int i;

    /* A directory made with 2 shared files. */
    party__backend_close(f->be);
    f->be = NULL;
    snprintf(cmd, sizeof(cmd), "rm -f %s/rooms-*", f->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/alarms.db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    exec(db, "UPDATE _party_layout SET shards = 2");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), 0);
    for (i = 0; i < 8; i++) {
        party__room_store *rs = load(f, 60 + i, NULL);
        assert_int_equal(party__store_kv_put(rs, "k", "kept", 4), 0);
        assert_int_equal(commit_one(f, rs, 0, 0), 0);
        f->be->ops->unload(rs);
    }
    party__backend_close(f->be);
    f->be = NULL;

    /* Disagreeing: refused, naming both. */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    exec(db, "UPDATE _party_layout SET shards = 4");
    sqlite3_close(db);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), PARTY_EIO);
    print_message("%s\n", f->why);
    assert_non_null(strstr(f->why, "records 4 shared files"));
    assert_non_null(strstr(f->why, "rooms-0.db 2"));

    /* Lost: rebuilt with the files' count, and every room is found. */
    snprintf(cmd, sizeof(cmd), "rm -f %s/alarms.db*", f->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)), 0);
    for (i = 0; i < 8; i++) {
        kv_value(f, 60 + i, "k", value, sizeof(value));
        assert_string_equal(value, "kept");
    }
    snprintf(path, sizeof(path), "%s/rooms-2.db", f->dir);
    assert_int_not_equal(stat(path, &st), 0);
}

/* ---- moving a room into its own file ---- */

/* Room i with records of every kind committed in its shard. */
static void shared_room_with_records(fixture *f, int i) {
    party__room_store *rs = load(f, i, NULL);
    party__schedule sc = {"s1", "tick", NULL, "p", 1, PARTY__SCHED_AT, 0, T0 + 500};
    assert_int_equal(party__store_kv_put(rs, "k", "shared", 6), 0);
    assert_int_equal(party__store_kv_put(rs, "gone", "x", 1), 0);
    assert_int_equal(party__store_meta_put(rs, "name", "lobby", 5), 0);
    assert_int_equal(party__store_alarm_set(rs, T0 + 1000, 2), 0);
    assert_int_equal(party__store_sched_add(rs, &sc), 0);
    assert_int_equal(commit_one(f, rs, T0 + 500, 1), 0);
    f->be->ops->unload(rs);
}

/* Checks that room i has the records shared_room_with_records gave it,
 * with k = k_value. */
static void expect_records(fixture *f, int i, const char *k_value) {
    party__room_loaded loaded;
    party__room_store *rs = load(f, i, &loaded);
    sched_seen seen = {0};
    void *val = NULL;
    assert_int_equal(loaded.alarm_at, T0 + 1000);
    assert_int_equal(loaded.alarm_retries, 2);
    assert_int_equal(loaded.sched_next, T0 + 500);
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), 0);
    assert_string_equal(val, k_value);
    free(val);
    assert_int_equal(party__store_meta_get(rs, "name", &val, NULL), 0);
    assert_string_equal(val, "lobby");
    free(val);
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.names[0], "tick");
    f->be->ops->unload(rs);
}

static int rows_in_shards(fixture *f, int i) {
    char id[PARTY_ID_MAX], sql[512];
    room_id(i, id);
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM _party_kv WHERE room_id = '%s')"
             " + (SELECT count(*) FROM _party_meta WHERE room_id = '%s')"
             " + (SELECT count(*) FROM _party_alarm WHERE room_id = '%s')"
             " + (SELECT count(*) FROM _party_schedules WHERE room_id = '%s')",
             id, id, id, id);
    return shard_count(f, sql);
}

static void test_room_file_open_moves_records_into_own_file(void **state) {
    fixture *f = *state;
    party__room_store *rs;
    char id[PARTY_ID_MAX], path[4096], sql[256];
    struct stat st;
    sqlite3 *db;
    void *val = NULL;

    shared_room_with_records(f, 40);
    room_id(40, id);
    assert_int_equal(party__store_path(f->dir, id, path, sizeof(path)), 0);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(rows_in_shards(f, 40), 5);

    rs = load(f, 40, NULL);
    /* The open batch goes along. */
    assert_int_equal(party__store_kv_put(rs, "k", "pending", 7), 0);
    assert_int_equal(party__store_kv_delete(rs, "gone"), 0);
    db = party__store_room_file_open(rs);
    assert_non_null(db);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(rows_in_shards(f, 40), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM _party_rooms WHERE room_id = '%s' AND own = 1",
             id);
    assert_int_equal(shard_count(f, sql), 1);
    assert_int_equal(party__store_wrote(rs), 1);
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), 0);
    assert_string_equal(val, "pending");
    free(val);
    exec(db, "CREATE TABLE notes (text TEXT)");
    assert_int_equal(commit_one(f, rs, T0 + 500, 0), 0);
    f->be->ops->unload(rs);
    expect_records(f, 40, "pending");
    kv_value(f, 40, "gone", sql, sizeof(sql));
    assert_string_equal(sql, "");
}

/* A room with nothing in the shared files (a new one) that opens its own
 * database only makes its file: no row in its shard, before or after its
 * batch commits, and it is an own-file room from then on. */
static void test_new_room_opening_its_db_makes_only_its_own_file(void **state) {
    fixture *f = *state;
    char id[PARTY_ID_MAX], path[4096], sql[256], value[32];
    party__room_store *rs = load(f, 43, NULL);
    struct stat st;

    room_id(43, id);
    assert_int_equal(party__store_meta_put(rs, "name", "fresh", 5), 0);
    assert_non_null(party__store_room_file_open(rs));
    assert_int_equal(party__store_kv_put(rs, "k", "own", 3), 0);
    assert_int_equal(party__store_path(f->dir, id, path, sizeof(path)), 0);
    assert_int_equal(stat(path, &st), 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM _party_rooms WHERE room_id = '%s'", id);
    assert_int_equal(shard_count(f, sql), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    assert_int_equal(shard_count(f, sql), 0);
    assert_int_equal(rows_in_shards(f, 43), 0);
    kv_value(f, 43, "k", value, sizeof(value));
    assert_string_equal(value, "own");
    rs = load(f, 43, NULL);
    assert_int_equal(party__store_kv_put(rs, "k", "again", 5), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    assert_int_equal(rows_in_shards(f, 43), 0);
    kv_value(f, 43, "k", value, sizeof(value));
    assert_string_equal(value, "again");
}

/* A move cut short before its commit point (the own file made, maybe
 * committed, the shard not yet told): the room is still shared, and the
 * file is a leftover that load removes. */
static void test_move_cut_short_before_its_commit_point_leaves_the_room_shared(void **state) {
    fixture *f = *state;
    char id[PARTY_ID_MAX], path[4096], wal[4200], dir[4200];
    party__room_store *rs;
    struct stat st;
    sqlite3 *db = NULL;
    FILE *file;

    shared_room_with_records(f, 41);
    room_id(41, id);
    assert_int_equal(party__store_path(f->dir, id, path, sizeof(path)), 0);
    snprintf(dir, sizeof(dir), "mkdir -p %s/rooms/%.2s", f->dir, id);
    assert_int_equal(system(dir), 0);

    /* Cut short while writing it: an empty file and a WAL of nothing. */
    file = fopen(path, "w");
    assert_non_null(file);
    fclose(file);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    file = fopen(wal, "w");
    assert_non_null(file);
    fputs("not a wal", file);
    fclose(file);
    expect_records(f, 41, "shared");
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_not_equal(stat(wal, &st), 0);

    /* Cut short after the own file committed: a copy, stale at once. */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    exec(db, "CREATE TABLE _party_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);"
             "INSERT INTO _party_kv VALUES ('k', 'stale')");
    sqlite3_close(db);
    rs = load(f, 41, NULL);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(party__store_kv_put(rs, "k", "newer", 5), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    expect_records(f, 41, "newer");
    assert_int_equal(rows_in_shards(f, 41), 5);

    /* And the move, done again, holds. */
    make_own(f, 41);
    assert_int_equal(stat(path, &st), 0);
    expect_records(f, 41, "newer");
}

/* A move cut short after its commit point (the batch that opened the file
 * never committed): the room is an own-file room with its records. */
static void test_move_cut_short_after_its_commit_point_serves_the_own_file(void **state) {
    fixture *f = *state;
    party__room_store *rs;

    shared_room_with_records(f, 42);
    rs = load(f, 42, NULL);
    assert_int_equal(party__store_kv_put(rs, "k", "lost", 4), 0);
    assert_non_null(party__store_room_file_open(rs));
    f->be->ops->unload(rs); /* no commit: as if the process died here */
    expect_records(f, 42, "shared");
    assert_int_equal(rows_in_shards(f, 42), 0);
}

/* ---- a data directory of an earlier partyd ---- */

static void test_data_dir_of_format_1_is_read_unchanged(void **state) {
    fixture *f = *state;
    const char *counter = "5e2c9f9a3a5a1df5b607438d00f67fadc2e4c1dc25d5d7e8145d0f3d333465b7";
    const char *reminder = "a8cf9f0de8b9c67a02c7a1feeb6718dc8b88de86d7b603c375aaadb82d948031";
    party__room_loaded loaded;
    party__room_store *rs = NULL;
    char cmd[4200], path[4096];
    sched_seen seen = {0};
    entries e = {0};
    void *val = NULL;
    sqlite3 *db;

    party__backend_close(f->be);
    f->be = NULL;
    snprintf(cmd, sizeof(cmd), "cp -r %s/data-v1/alarms.db %s/data-v1/rooms %s/", PARTY_FIXTURES,
             PARTY_FIXTURES, f->dir);
    assert_int_equal(system(cmd), 0);
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);

    assert_int_equal(f->be->ops->index_load(f->be, collect_entry, &e), 0);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.ids[0], reminder);
    assert_string_equal(e.parties[0], "reminder");
    assert_int_equal(e.due[0], 4102444800000LL);

    assert_int_equal(
        f->be->ops->load(f->be, reminder, "reminder", &rs, &loaded, f->why, sizeof(f->why)), 0);
    assert_int_equal(loaded.alarm_at, 4796629967965LL);
    assert_int_equal(loaded.sched_next, 4102444800000LL);
    assert_int_equal(party__store_sched_each(rs, INT64_MAX, collect_sched, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.names[0], "y2100");
    f->be->ops->unload(rs);

    /* Its file is all there is of it (no shard lists it): not new. */
    assert_int_equal(f->be->ops->load_quick(f->be, counter, "counter", &rs, &loaded), 1);
    assert_int_equal(
        f->be->ops->load(f->be, counter, "counter", &rs, &loaded, f->why, sizeof(f->why)), 0);
    assert_int_equal(party__store_kv_get(rs, "count", &val, NULL), 0);
    assert_string_equal(val, "3");
    free(val);
    assert_int_equal(party__store_meta_get(rs, "name", &val, NULL), 0);
    assert_string_equal(val, "fixture");
    free(val);
    /* Its writes stay in its file. */
    assert_int_equal(party__store_kv_put(rs, "count", "4", 1), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    assert_int_equal(shard_count(f, "SELECT count(*) FROM _party_rooms"), 0);
    assert_int_equal(party__store_path(f->dir, counter, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(format_version(db), 2);
    sqlite3_close(db);
    assert_int_equal(
        f->be->ops->load(f->be, counter, "counter", &rs, &loaded, f->why, sizeof(f->why)), 0);
    assert_int_equal(party__store_kv_get(rs, "count", &val, NULL), 0);
    assert_string_equal(val, "4");
    free(val);
    f->be->ops->unload(rs);
}

/* ---- in memory ---- */

static void test_in_memory_backend_keeps_shared_rooms_while_open(void **state) {
    fixture *f = *state;
    party__backend_config cfg = {0};
    party__backend *be = NULL;
    party__room_loaded loaded;
    party__room_store *rs = NULL;
    party__commit c;
    char id[PARTY_ID_MAX];
    void *val = NULL;
    int result = 1;

    assert_int_equal(party__backend_open(&cfg, &be, f->why, sizeof(f->why)), 0);
    room_id(1, id);
    assert_int_equal(be->ops->load(be, id, "test", &rs, &loaded, f->why, sizeof(f->why)), 0);
    assert_int_equal(party__store_kv_put(rs, "k", "mem", 3), 0);
    c.store = rs;
    c.wake_ms = T0;
    c.wake_changed = 1;
    be->ops->commit_batch(be, &c, 1, &result);
    assert_int_equal(result, 0);
    be->ops->unload(rs);
    assert_int_equal(be->ops->load(be, id, "test", &rs, &loaded, f->why, sizeof(f->why)), 0);
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), 0);
    assert_string_equal(val, "mem");
    free(val);
    assert_non_null(party__store_room_file_open(rs));
    be->ops->unload(rs);
    party__backend_close(be);
}

/* ---- memory ---- */

#define STORES 10

static sqlite3_int64 sqlite_memory(void) {
    sqlite3_int64 now = 0, high = 0;
    assert_int_equal(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &now, &high, 0), SQLITE_OK);
    return now;
}

/* A shared room's store holds no SQLite memory of its own (its reads go
 * through the shard's connections). An own file's page cache allocates
 * pages as they are read, not room for 20 up front, and unloading gives
 * the memory back. */
static void test_open_store_holds_less_than_an_initial_page_block(void **state) {
    fixture *f = *state;
    party__room_store *stores[STORES];
    sqlite3_int64 before, opened, per_store;
    int i;

    /* Once before measuring: SQLite's own start-up allocations, the
     * shards' caches and the directories are not a store's. */
    for (i = 0; i < STORES; i++)
        f->be->ops->unload(load(f, 100 + i, NULL));
    make_own(f, 200);

    before = sqlite_memory();
    for (i = 0; i < STORES; i++) {
        stores[i] = load(f, 100 + i, NULL);
        assert_int_equal(party__store_kv_put(stores[i], "k", "value", 5), 0);
    }
    opened = sqlite_memory();
    print_message("SQLite memory per open shared store: %lld bytes\n",
                  (long long)((opened - before) / STORES));
    assert_true(opened - before < 1024);
    for (i = 0; i < STORES; i++)
        f->be->ops->unload(stores[i]);

    /* Own files, made before measuring (a move fills the shard's caches too). */
    for (i = 0; i < STORES; i++)
        make_own(f, i);
    /* Own files' handles stay open in the backend's cache: measured from
     * a backend with none open, its shards' readers warmed by loads of
     * shared rooms. */
    party__backend_close(f->be);
    f->be = NULL;
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    for (i = 0; i < 4 * STORES; i++)
        f->be->ops->unload(load(f, 1000 + i, NULL));
    before = sqlite_memory();
    for (i = 0; i < STORES; i++) {
        stores[i] = load(f, i, NULL);
        /* a read and a write, as a room's first event does */
        assert_int_equal(party__store_kv_put(stores[i], "k", "value", 5), 0);
        assert_int_equal(commit_one(f, stores[i], 0, 0), 0);
    }
    opened = sqlite_memory();
    per_store = (opened - before) / STORES;
    print_message("SQLite memory per open own-file store: %lld bytes\n", (long long)per_store);
    /* Not 0: SQLite counts its memory in this build (else this test would
     * prove nothing). */
    assert_true(per_store > 8 * 1024);
    /* With SQLite's default, the first page read allocated room for 20
     * pages (about 86 KB) on top of the rest (about 60 KB here). */
    assert_true(per_store < 96 * 1024);

    for (i = 0; i < STORES; i++)
        f->be->ops->unload(stores[i]);
    /* Unloaded, their files stay open in the backend's handle cache: a
     * cold wake opens nothing (an open costs the memory above). */
    before = sqlite_memory();
    for (i = 0; i < STORES; i++)
        stores[i] = load(f, i, NULL);
    assert_true(sqlite_memory() - before < 4 * 1024);
    for (i = 0; i < STORES; i++)
        f->be->ops->unload(stores[i]);
}

/* Descriptors of this process open on own files under the fixture's
 * directory (database, WAL, shared memory). */
static int own_fds(const fixture *f) {
    char target[4096], prefix[128];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    ssize_t len;
    snprintf(prefix, sizeof(prefix), "%s/rooms/", f->dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        len = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strncmp(target, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return n;
}

/* The cache of own files' handles keeps at most own_handles open between
 * batches, closing the least recently used; a room whose handle was
 * closed opens it again on demand, with everything it committed. */
static void test_own_file_handles_past_the_bound_close_and_keep_records(void **state) {
    fixture *f = *state;
    party__room_store *rs[6];
    char value[32], text[8];
    int i;

    party__backend_close(f->be);
    f->cfg.own_handles = 2;
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    for (i = 0; i < 6; i++)
        make_own(f, 20 + i);
    /* All six loaded at once, each with a batch committed. */
    for (i = 0; i < 6; i++) {
        rs[i] = load(f, 20 + i, NULL);
        snprintf(text, sizeof(text), "v%d", i);
        assert_int_equal(party__store_kv_put(rs[i], "k", text, strlen(text)), 0);
        assert_int_equal(commit_one(f, rs[i], 0, 0), 0);
    }
    /* Between batches only the two most recent stay open. */
    assert_true(own_fds(f) <= 2 * 3);
    assert_true(own_fds(f) > 0);
    for (i = 0; i < 6; i++) {
        void *val = NULL;
        assert_int_equal(party__store_kv_get(rs[i], "k", &val, NULL), 0);
        snprintf(text, sizeof(text), "v%d", i);
        assert_string_equal(val, text);
        free(val);
        party__store_rollback(rs[i]);
        f->be->ops->unload(rs[i]);
    }
    assert_true(own_fds(f) <= 2 * 3);
    /* And after the backend closed, from the files. */
    party__backend_close(f->be);
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    assert_int_equal(own_fds(f), 0);
    for (i = 0; i < 6; i++) {
        kv_value(f, 20 + i, "k", value, sizeof(value));
        snprintf(text, sizeof(text), "v%d", i);
        assert_string_equal(value, text);
    }
}

/* SQLite says only "unable to open database file"; the OS error says
 * why. A directory where the room's file goes fails for root too. */
static void test_load_failure_names_the_os_error(void **state) {
    fixture *f = *state;
    party__room_loaded loaded;
    party__room_store *rs = NULL;
    char id[PARTY_ID_MAX], path[4096], cmd[4200];

    room_id(7, id);
    assert_int_equal(party__store_path(f->dir, id, path, sizeof(path)), 0);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                     PARTY_EIO);
    assert_null(rs);
    if (strstr(f->why, "Is a directory") == NULL || strstr(f->why, path) == NULL)
        fail_msg("the reason does not name the OS error and the file: %s", f->why);
}

/* A room directory the process may not write: SQLite retries read-only
 * and keeps that retry's ENOENT; the reason must say Permission denied.
 * The room moved to its own file, which is gone. Root writes anywhere:
 * as root the test runs as nobody. */
static void test_load_in_an_unwritable_directory_says_permission_denied(void **state) {
    fixture *f = *state;
    party__room_loaded loaded;
    party__room_store *rs = NULL;
    char id[PARTY_ID_MAX], cmd[256];

    RUN_AS_NOBODY_IF_ROOT();
    kv_put_one(f, 8); /* records in its shard first: its row there says own */
    make_own(f, 8);
    room_id(8, id);
    snprintf(cmd, sizeof(cmd), "rm -f %s/rooms/%.2s/* && chmod 0555 %s/rooms/%.2s", f->dir, id,
             f->dir, id);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                     PARTY_EIO);
    if (strstr(f->why, "Permission denied") == NULL)
        fail_msg("the reason does not name the OS error: %s", f->why);
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

/* A room whose wake time cannot be read is not loaded: loaded without it,
 * its next commit would file "no wake time" in the index and its alarm
 * would never fire. */
static void test_room_whose_wake_time_cannot_be_read_is_not_loaded(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 9, NULL);
    party__room_loaded loaded;
    sqlite3 *db;
    char id[PARTY_ID_MAX];

    assert_int_equal(party__store_alarm_set(rs, 5000, 0), 0);
    assert_int_equal(commit_one(f, rs, 5000, 1), 0);
    f->be->ops->unload(rs);
    shards_exec(f, "ALTER TABLE _party_schedules RENAME TO unreadable");

    room_id(9, id);
    rs = NULL;
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                     PARTY_EIO);
    assert_null(rs);
    if (strstr(f->why, "cannot read its alarm and schedules") == NULL ||
        strstr(f->why, id) == NULL || strstr(f->why, "/rooms-") == NULL)
        fail_msg("the reason does not say what could not be read, in which file: %s", f->why);
    /* Readable again, it loads with its alarm. */
    shards_exec(f, "ALTER TABLE unreadable RENAME TO _party_schedules");
    rs = load(f, 9, &loaded);
    assert_int_equal(loaded.alarm_at, 5000);
    f->be->ops->unload(rs);

    /* The same for an own file. */
    make_own(f, 9);
    db = room_file(f, 9);
    exec(db, "ALTER TABLE _party_schedules RENAME TO unreadable");
    sqlite3_close(db);
    rs = NULL;
    assert_int_equal(f->be->ops->load(f->be, id, "test", &rs, &loaded, f->why, sizeof(f->why)),
                     PARTY_EIO);
    assert_null(rs);
    if (strstr(f->why, "cannot read its alarm and schedules") == NULL || strstr(f->why, id) == NULL)
        fail_msg("the reason does not say what could not be read, in which file: %s", f->why);
    db = room_file(f, 9);
    exec(db, "ALTER TABLE unreadable RENAME TO _party_schedules");
    sqlite3_close(db);
    rs = load(f, 9, &loaded);
    assert_int_equal(loaded.alarm_at, 5000);
    f->be->ops->unload(rs);
}

/* The codes a backend answers with have their own text. */
static void test_busy_and_fenced_codes_have_their_own_text(void **state) {
    (void)state;
    assert_string_not_equal(party_strerror(PARTY_EBUSY), party_strerror(-999));
    assert_string_not_equal(party_strerror(PARTY_EFENCED), party_strerror(-999));
    assert_string_not_equal(party_strerror(PARTY_EBUSY), party_strerror(PARTY_EFENCED));
}

/* ---- new rooms told without a read ---- */

/* load_quick of room i: its result, the store in *rs (NULL unless 0). */
static int load_quick(fixture *f, int i, party__room_store **rs) {
    party__room_loaded loaded;
    char id[PARTY_ID_MAX];
    room_id(i, id);
    *rs = NULL;
    return f->be->ops->load_quick(f->be, id, "test", rs, &loaded);
}

static void reopen(fixture *f) {
    party__backend_close(f->be);
    if (party__backend_open(&f->cfg, &f->be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
}

/* Room i, new to load_quick, with k = "own" committed in its own file and
 * no row in the shards. */
static void own_file_room_quick(fixture *f, int i) {
    party__room_store *rs;
    assert_int_equal(load_quick(f, i, &rs), 0);
    assert_non_null(party__store_room_file_open(rs));
    assert_int_equal(party__store_kv_put(rs, "k", "own", 3), 0);
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
}

/* Rooms first (k = v in the shards) and first + 1 (k = "own" in its own
 * file) are not new to load_quick and read back their records; first + 2,
 * never written, is new (its store unloaded). */
static void expect_known_and_new(fixture *f, int first) {
    party__room_store *rs;
    char value[32];
    assert_int_equal(load_quick(f, first, &rs), 1);
    assert_int_equal(load_quick(f, first + 1, &rs), 1);
    kv_value(f, first, "k", value, sizeof(value));
    assert_string_equal(value, "v");
    kv_value(f, first + 1, "k", value, sizeof(value));
    assert_string_equal(value, "own");
    assert_int_equal(load_quick(f, first + 2, &rs), 0);
    f->be->ops->unload(rs);
}

static void test_load_quick_takes_for_new_only_rooms_without_records(void **state) {
    fixture *f = *state;
    party__room_store *rs;
    char value[32], text[256];
    void *val = NULL;

    assert_non_null(f->be->ops->load_quick);
    /* Never seen: an empty store at once; its reads see its batch alone. */
    assert_int_equal(load_quick(f, 60, &rs), 0);
    assert_non_null(rs);
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_delete(rs, "k"), PARTY_ENOTFOUND);
    assert_int_equal(party__store_kv_put(rs, "k", "v", 1), 0);
    assert_int_equal(party__store_meta_put(rs, "name", "sixty", 5), 0);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "k=v,");
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    /* Committed: its reads find the shard's rows. */
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), 0);
    assert_string_equal(val, "v");
    free(val);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "k=v,");
    f->be->ops->unload(rs);
    /* Loaded once, never new again: the long way, which finds the rows. */
    assert_int_equal(load_quick(f, 60, &rs), 1);
    assert_null(rs);
    kv_value(f, 60, "k", value, sizeof(value));
    assert_string_equal(value, "v");

    /* A new room that opens its own database: only its own file. */
    own_file_room_quick(f, 61);
    assert_int_equal(rows_in_shards(f, 61), 0);

    /* A new process: its shards and its files say which rooms exist. One
     * never written is new, once. */
    reopen(f);
    expect_known_and_new(f, 60);
    assert_int_equal(load_quick(f, 62, &rs), 1);
}

/* Rooms another process wrote into the directory after this backend
 * opened (a new partyd that took over, then died): once rescan has run,
 * load_quick takes none of them for new. */
static void test_rescan_learns_rooms_another_process_wrote(void **state) {
    fixture *f = *state, other = *f;

    assert_non_null(f->be->ops->rescan);
    if (party__backend_open(&f->cfg, &other.be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    kv_put_one(&other, 70);          /* rows in its shard */
    own_file_room_quick(&other, 71); /* a file of its own, no row */
    party__backend_close(other.be);
    assert_int_equal(rows_in_shards(f, 71), 0);

    f->be->ops->rescan(f->be);
    expect_known_and_new(f, 70);
}

/* A directory under rooms/ that cannot be listed (here a loop of links:
 * ELOOP; out of descriptors would do the same) may hold rooms' own files:
 * no room is taken for new then, at open or at a rescan. */
static void test_rooms_files_that_cannot_be_listed_make_no_room_new(void **state) {
    fixture *f = *state, other = *f;
    party__room_store *rs;
    char link[256];

    make_own(f, 73); /* rooms/ exists */
    snprintf(link, sizeof(link), "%s/rooms/zz", f->dir);
    assert_int_equal(symlink("zz", link), 0);
    f->be->ops->rescan(f->be);
    assert_int_equal(load_quick(f, 74, &rs), 1);

    if (party__backend_open(&f->cfg, &other.be, f->why, sizeof(f->why)) != 0)
        fail_msg("%s", f->why);
    assert_int_equal(load_quick(&other, 75, &rs), 1);
    assert_null(rs);
    party__backend_close(other.be);

    /* Listed again whole: the set answers "new" again in a new process. */
    assert_int_equal(unlink(link), 0);
    reopen(f);
    assert_int_equal(load_quick(f, 76, &rs), 0);
    f->be->ops->unload(rs);
}

static void test_room_with_more_rows_than_a_snapshot_reads_them_all(void **state) {
    fixture *f = *state;
    party__room_store *rs = load(f, 63, NULL);
    char key[16], text[256], expect[256] = "";
    void *val = NULL;
    int i;

    for (i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%02d", i);
        assert_int_equal(party__store_kv_put(rs, key, "v", 1), 0);
        snprintf(expect + strlen(expect), sizeof(expect) - strlen(expect), "%s=v,", key);
    }
    assert_int_equal(commit_one(f, rs, 0, 0), 0);
    f->be->ops->unload(rs);
    rs = load(f, 63, NULL);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, expect);
    assert_int_equal(party__store_kv_get(rs, "k19", &val, NULL), 0);
    free(val);
    f->be->ops->unload(rs);

    /* A small room's rows, read with its load: the same answers, its open
     * batch over them, in the first batch and after it. */
    kv_put_one(f, 64);
    rs = load(f, 64, NULL);
    assert_int_equal(party__store_kv_put(rs, "a", "first", 5), 0);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "a=first,k=v,");
    assert_int_equal(party__store_kv_delete(rs, "k"), 0);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "a=first,");
    party__store_rollback(rs);
    list_of(rs, NULL, text, sizeof(text));
    assert_string_equal(text, "k=v,");
    assert_int_equal(party__store_kv_get(rs, "k", &val, NULL), 0);
    assert_string_equal(val, "v");
    free(val);
    f->be->ops->unload(rs);
}

/* ---- commits from several threads at once ---- */

typedef struct committer {
    fixture *f;
    int first, rooms, failures;
    uv_thread_t thread;
} committer;

/* Commits k = "v<round>" in each of its rooms, round after round, each
 * round one commit_batch of all of them. */
static void commit_rounds(void *arg) {
    committer *c = arg;
    party__room_store *rs[8];
    party__commit commits[8];
    int results[8], round, i;
    char id[PARTY_ID_MAX], value[16];

    for (round = 0; round < 40; round++) {
        for (i = 0; i < c->rooms; i++) {
            party__room_loaded loaded;
            room_id(c->first + i, id);
            rs[i] = NULL;
            if (c->f->be->ops->load(c->f->be, id, "test", &rs[i], &loaded, NULL, 0) != 0) {
                c->failures++;
                return;
            }
            snprintf(value, sizeof(value), "v%d", round);
            if (party__store_kv_put(rs[i], "k", value, strlen(value)) != 0)
                c->failures++;
            commits[i].store = rs[i];
            commits[i].wake_ms = 0;
            commits[i].wake_changed = 0;
        }
        c->f->be->ops->commit_batch(c->f->be, commits, (size_t)c->rooms, results);
        for (i = 0; i < c->rooms; i++) {
            if (results[i] != 0)
                c->failures++;
            c->f->be->ops->unload(rs[i]);
        }
    }
}

/* The calls that meet at a shard's writer go in one transaction: each
 * room still gets its own result, and every room's last write is kept. */
static void test_commit_batches_of_several_threads_all_commit(void **state) {
    fixture *f = *state;
    committer c[4];
    char value[32];
    int t, i;

    for (t = 0; t < 4; t++) {
        c[t].f = f;
        c[t].first = 100 + t * 8;
        c[t].rooms = 8;
        c[t].failures = 0;
        assert_int_equal(uv_thread_create(&c[t].thread, commit_rounds, &c[t]), 0);
    }
    for (t = 0; t < 4; t++) {
        assert_int_equal(uv_thread_join(&c[t].thread), 0);
        assert_int_equal(c[t].failures, 0);
    }
    for (i = 0; i < 32; i++) {
        kv_value(f, 100 + i, "k", value, sizeof(value));
        assert_string_equal(value, "v39");
    }
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        TEST(test_acquire_and_release_complete_on_the_rooms_loop),
        TEST(test_load_finds_what_earlier_batches_committed),
        TEST(test_commit_batch_fails_only_the_failing_room),
        TEST(test_shared_room_reads_see_its_open_batch_over_committed_rows),
        TEST(test_shared_room_alarm_and_schedules_see_its_open_batch),
        TEST(test_shared_write_that_cannot_be_recorded_fails_the_batch),
        TEST(test_commit_batch_of_shared_rooms_fails_only_the_failing_room),
        TEST(test_new_rooms_make_no_file),
        TEST(test_newer_shard_file_is_refused_naming_both_versions),
        TEST(test_shard_count_outlives_a_lost_alarm_index),
        TEST(test_room_file_open_moves_records_into_own_file),
        TEST(test_new_room_opening_its_db_makes_only_its_own_file),
        TEST(test_move_cut_short_before_its_commit_point_leaves_the_room_shared),
        TEST(test_move_cut_short_after_its_commit_point_serves_the_own_file),
        TEST(test_data_dir_of_format_1_is_read_unchanged),
        TEST(test_in_memory_backend_keeps_shared_rooms_while_open),
        TEST(test_backend_knows_whether_the_batch_wrote),
        TEST(test_newer_room_file_is_refused_naming_both_versions),
        TEST(test_older_room_file_is_migrated_and_keeps_its_records),
        TEST(test_newer_alarm_index_is_refused_and_older_one_migrated),
        TEST(test_index_due_lists_rooms_due_earliest_first),
        TEST(test_index_follows_wake_time_and_is_never_later_than_committed),
        TEST(test_open_store_holds_less_than_an_initial_page_block),
        TEST(test_load_failure_names_the_os_error),
        TEST(test_load_in_an_unwritable_directory_says_permission_denied),
        TEST(test_room_whose_wake_time_cannot_be_read_is_not_loaded),
        TEST(test_own_file_handles_past_the_bound_close_and_keep_records),
        TEST(test_load_quick_takes_for_new_only_rooms_without_records),
        TEST(test_rescan_learns_rooms_another_process_wrote),
        TEST(test_rooms_files_that_cannot_be_listed_make_no_room_new),
        TEST(test_room_with_more_rows_than_a_snapshot_reads_them_all),
        TEST(test_commit_batches_of_several_threads_all_commit),
        cmocka_unit_test(test_busy_and_fenced_codes_have_their_own_text),
    };
    party__store_configure();
    as_nobody_main(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
