/* store_sqlite: the SQLite backend of the storage seam (storage.h), and
 * the only file of partyd that speaks SQLite. Every room is an own-file
 * room: one WAL database at <data>/rooms/<id[0..2]>/<id>.db holding the
 * user's key-value table, the runtime's records and the tables the party
 * makes itself. The alarm index is <data>/alarms.db, one connection shared
 * by the worker threads under a mutex. Each file records its format
 * version in _party_format. */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "utf8.h"
#include "alloc.h"

/* ---- format versions ---- */

/* The version of the files this partyd writes. Version 0 is a file from
 * before versions were recorded: the same tables, no _party_format. */
#define FORMAT_VERSION 1

#define FORMAT_TABLE                                                                               \
    "CREATE TABLE IF NOT EXISTS _party_format (k INTEGER PRIMARY KEY CHECK (k = 1),"               \
    " version INTEGER NOT NULL);"

/* room_steps[v] brings a room's file from version v to v + 1 (a new file
 * starts at 0: the steps make its tables). */
static const char *const room_steps[FORMAT_VERSION] = {
    "CREATE TABLE IF NOT EXISTS _party_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_alarm (k INTEGER PRIMARY KEY CHECK (k = 1),"
    " at_ms INTEGER NOT NULL, retries INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS _party_schedules (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
    " payload BLOB NOT NULL, kind INTEGER NOT NULL, interval_ms INTEGER NOT NULL, cron TEXT,"
    " next_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS _party_schedules_next ON _party_schedules (next_ms);" FORMAT_TABLE,
};

/* index_steps[v]: the same for the alarm index. */
static const char *const index_steps[FORMAT_VERSION] = {
    "CREATE TABLE IF NOT EXISTS alarm_index (room_id TEXT PRIMARY KEY NOT NULL,"
    " party TEXT NOT NULL, due_ms INTEGER NOT NULL) WITHOUT ROWID;" FORMAT_TABLE,
};

/* The file's format version into *version (0: none recorded). */
static int format_read(sqlite3 *db, int *version) {
    sqlite3_stmt *stmt = NULL;
    int rc;

    *version = 0;
    if (sqlite3_prepare_v2(db, "SELECT version FROM _party_format WHERE k = 1", -1, &stmt, NULL) !=
        SQLITE_OK) {
        /* No such table (a new file, or one from before versions were
         * recorded), or an unreadable file. */
        sqlite3_finalize(stmt);
        if (sqlite3_prepare_v2(db,
                               "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                               " AND name = '_party_format'",
                               -1, &stmt, NULL) != SQLITE_OK)
            return PARTY_EIO;
        rc = sqlite3_step(stmt);
        sqlite3_finalize(stmt);
        return rc == SQLITE_DONE ? 0 : PARTY_EIO;
    }
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

/* Checks the file's format version and migrates an older file to this
 * partyd's, in one transaction. A newer file is refused: this partyd
 * would misread it. */
static int format_check(sqlite3 *db, const char *const *steps, const char *what, const char *path,
                        char *why, size_t why_len) {
    char sql[160];
    int version, v, rc;

    if (format_read(db, &version) != 0) {
        snprintf(why, why_len, "%s%s: cannot read its format version: %s", what, path,
                 sqlite3_errmsg(db));
        return PARTY_EIO;
    }
    if (version == FORMAT_VERSION)
        return 0;
    if (version > FORMAT_VERSION || version < 0) {
        snprintf(why, why_len,
                 "%s%s: storage format version %d, newer than this partyd's (version %d):"
                 " written by a newer partyd; run that one or a later one",
                 what, path, version, FORMAT_VERSION);
        return PARTY_EIO;
    }
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (v = version; rc == SQLITE_OK && v < FORMAT_VERSION; v++)
        rc = sqlite3_exec(db, steps[v], NULL, NULL, NULL);
    snprintf(sql, sizeof(sql),
             "INSERT INTO _party_format (k, version) VALUES (1, %d)"
             " ON CONFLICT (k) DO UPDATE SET version = excluded.version",
             FORMAT_VERSION);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(why, why_len, "%s%s: migrating from format version %d to %d: %s", what, path,
                 version, FORMAT_VERSION, sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return PARTY_EIO;
    }
    return 0;
}

/* ---- the backend ---- */

typedef struct sqlite_backend {
    party__backend base;
    char *data_dir; /* NULL: in memory */
    int durability_full;
    /* The alarm index: one connection for every worker thread, and its
     * statements, prepared once and run under index_mutex. With
     * durability full, sync_off and sync_on bracket the writes that need
     * no fsync. */
    uv_mutex_t index_mutex;
    sqlite3 *index;
    sqlite3_stmt *index_begin, *index_commit, *index_rollback;
    sqlite3_stmt *index_lower, *index_set, *index_delete;
    sqlite3_stmt *sync_off, *sync_on;
} sqlite_backend;

/* One loaded room. */
typedef struct sqlite_room {
    party__room_store base;
    sqlite_backend *backend;
    const char *party;
    char id[PARTY_ID_MAX];
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *kv_put, *kv_get, *kv_delete;
    sqlite3_stmt *meta_put, *meta_get;
    int begun; /* BEGIN ran since the last commit or rollback */
    int lost;  /* ... and that transaction ended by itself, then BEGIN ran again */
    int wrote; /* ... and one of the record ops wrote in it */
} sqlite_room;

static const party__store_ops sqlite_ops;

int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/rooms/%.2s/%s.db", data_dir, room_id, room_id);
    return n > 0 && (size_t)n < cap ? 0 : PARTY_EINVAL;
}

static int make_dir(const char *path) {
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Runs a prepared statement that returns no rows to its end, then resets
 * it and clears its bindings for the next run: 0 or PARTY_EIO. */
static int step_done(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) == SQLITE_OK ? 0
                                                                                               : -1;
}

/* SQLite's page cache starts each database with one block of room for 20
 * pages (about 86 KB with 4 KiB pages) the first time it reads a page. A
 * room reads a few: with a thousand rooms loaded that block was most of
 * their memory, and the worker threads that open rooms kept the holes it
 * left between their other allocations after the rooms closed. With no
 * initial block, pages are allocated one at a time, up to cache_size. */
static void configure_once(void) {
    (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

void party__store_configure(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, configure_once);
}

static void index_statements_finalize(sqlite_backend *be) {
    sqlite3_stmt **stmts[] = {&be->index_begin, &be->index_commit, &be->index_rollback,
                              &be->index_lower, &be->index_set,    &be->index_delete,
                              &be->sync_off,    &be->sync_on};
    size_t i;
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        sqlite3_finalize(*stmts[i]);
        *stmts[i] = NULL;
    }
}

static int index_statements_prepare(sqlite_backend *be) {
    sqlite3 *db = be->index;
    return prepare(db, "BEGIN", &be->index_begin) || prepare(db, "COMMIT", &be->index_commit) ||
           prepare(db, "ROLLBACK", &be->index_rollback) ||
           /* An entry only ever moves earlier before a commit ... */
           prepare(db,
                   "INSERT INTO alarm_index (room_id, party, due_ms) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (room_id) DO UPDATE SET party = excluded.party,"
                   " due_ms = excluded.due_ms WHERE excluded.due_ms < alarm_index.due_ms",
                   &be->index_lower) ||
           /* ... and takes its exact time after it. */
           prepare(db,
                   "INSERT INTO alarm_index (room_id, party, due_ms) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (room_id) DO UPDATE SET party = excluded.party,"
                   " due_ms = excluded.due_ms WHERE excluded.due_ms != alarm_index.due_ms"
                   " OR excluded.party != alarm_index.party",
                   &be->index_set) ||
           prepare(db, "DELETE FROM alarm_index WHERE room_id = ?1", &be->index_delete) ||
           prepare(db, "PRAGMA synchronous=NORMAL", &be->sync_off) ||
           prepare(db, "PRAGMA synchronous=FULL", &be->sync_on);
}

static void sqlite_close(party__backend *be_) {
    sqlite_backend *be = (sqlite_backend *)be_;
    if (be == NULL)
        return;
    index_statements_finalize(be);
    sqlite3_close(be->index);
    uv_mutex_destroy(&be->index_mutex);
    party__free(be->data_dir);
    party__free(be);
}

static int sqlite_open(const party__backend_config *cfg, party__backend **out, char *why,
                       size_t why_len) {
    sqlite_backend *be = party__calloc(1, sizeof(*be));
    char path[4096];
    int rc, existed = 1;

    *out = NULL;
    if (be == NULL || uv_mutex_init(&be->index_mutex) != 0) {
        party__free(be);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    be->base.ops = &sqlite_ops;
    be->base.commit_on_loop = !cfg->durability_full;
    be->durability_full = cfg->durability_full;
    if (cfg->data_dir != NULL && (be->data_dir = party__strdup(cfg->data_dir)) == NULL) {
        uv_mutex_destroy(&be->index_mutex);
        party__free(be);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (cfg->data_dir != NULL) {
        struct stat st;
        int fd;
        if ((size_t)snprintf(path, sizeof(path), "%s/alarms.db", cfg->data_dir) >= sizeof(path)) {
            snprintf(why, why_len, "data directory %s: path too long", cfg->data_dir);
            sqlite_close(&be->base);
            return PARTY_EIO;
        }
        existed = stat(path, &st) == 0;
        /* Opened once by hand first: when SQLite cannot open a file it
         * retries read-only, and the OS error it keeps is the retry's
         * (ENOENT for a directory we may not write), not the cause. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(why, why_len, "data directory %s: cannot %s alarms.db: %s", cfg->data_dir,
                     existed ? "open" : "create", strerror(errno));
            sqlite_close(&be->base);
            return PARTY_EIO;
        }
        close(fd);
    } else {
        snprintf(path, sizeof(path), ":memory:");
    }
    rc = sqlite3_open_v2(path, &be->index,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(be->index, 5000);
        rc = sqlite3_exec(be->index, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(be->index,
                          cfg->durability_full ? "PRAGMA synchronous=FULL"
                                               : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        char cause[512];
        /* SQLite says "unable to open database file" whatever the cause:
         * the OS error when it has one (for these two codes only). */
        int code = rc & 0xff;
        int sys_errno = be->index != NULL && (code == SQLITE_CANTOPEN || code == SQLITE_IOERR)
                            ? sqlite3_system_errno(be->index)
                            : 0;
        snprintf(cause, sizeof(cause), "%s",
                 sys_errno != 0      ? strerror(sys_errno)
                 : be->index != NULL ? sqlite3_errmsg(be->index)
                                     : sqlite3_errstr(rc));
        if (cfg->data_dir != NULL)
            snprintf(why, why_len, "data directory %s: cannot %s alarms.db: %s", cfg->data_dir,
                     existed ? "open" : "create", cause);
        else
            snprintf(why, why_len, "alarm index (in memory): %s", cause);
        sqlite_close(&be->base);
        return rc == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    if (format_check(be->index, index_steps, "alarm index ", path, why, why_len) != 0) {
        sqlite_close(&be->base);
        return PARTY_EIO;
    }
    if (index_statements_prepare(be) != 0) {
        snprintf(why, why_len, "alarm index %s: %s", path, sqlite3_errmsg(be->index));
        sqlite_close(&be->base);
        return PARTY_EIO;
    }
    *out = &be->base;
    return 0;
}

/* ---- ownership: one process per data directory, so a room is ours at once ---- */

static void sqlite_acquire(party__backend *be, party__store_req *req) {
    (void)be;
    req->done(req, 0);
}

static void sqlite_release(party__backend *be, party__store_req *req) {
    (void)be;
    req->done(req, 0);
}

/* ---- loading a room ---- */

/* SQLite says "unable to open database file" whatever the cause: the OS
 * error comes first when SQLite has one (a long path may fill the rest),
 * and when it is the process's open-file limit (a loaded room holds 3
 * files), the limit is named, since raising it is the fix. */
static void describe_open_failure(sqlite_room *s, const char *path, char *why, size_t why_len) {
    int code = s->db != NULL ? sqlite3_errcode(s->db) & 0xff : 0;
    /* The system errno is the failed call's only for these two. */
    int sys_errno =
        code == SQLITE_CANTOPEN || code == SQLITE_IOERR ? sqlite3_system_errno(s->db) : 0;
    struct rlimit lim;

    /* SQLite retries a file it cannot open read-write as read-only and
     * keeps the retry's error: ENOENT for a new file in a directory it may
     * not write. One open here gives the cause. */
    if (code == SQLITE_CANTOPEN && sys_errno == ENOENT) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        sys_errno = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
    }

    if ((sys_errno == EMFILE || sys_errno == ENFILE) && getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        snprintf(why, why_len,
                 "%s (open-file limit %llu; a loaded room holds 3 files, a connection 1:"
                 " raise the limit or lower --max-conns): %s: %s",
                 strerror(sys_errno), (unsigned long long)lim.rlim_cur, path,
                 sqlite3_errmsg(s->db));
        return;
    }
    if (sys_errno != 0) {
        snprintf(why, why_len, "%s: %s: %s", strerror(sys_errno), path, sqlite3_errmsg(s->db));
        return;
    }
    snprintf(why, why_len, "%s: %s", path, s->db != NULL ? sqlite3_errmsg(s->db) : "cannot open");
}

static void sqlite_unload(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (s == NULL)
        return;
    if (s->db != NULL && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_finalize(s->rollback);
    sqlite3_finalize(s->kv_put);
    sqlite3_finalize(s->kv_get);
    sqlite3_finalize(s->kv_delete);
    sqlite3_finalize(s->meta_put);
    sqlite3_finalize(s->meta_get);
    sqlite3_close_v2(s->db);
    party__free(s);
}

static int room_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries);
static int room_sched_earliest(party__room_store *rs, int64_t *next_ms);

static int sqlite_load(party__backend *be_, const char *room_id, const char *party,
                       party__room_store **out, party__room_loaded *loaded, char *why,
                       size_t why_len) {
    sqlite_backend *be = (sqlite_backend *)be_;
    char path[4096];
    sqlite_room *s;
    int rc;

    *out = NULL;
    memset(loaded, 0, sizeof(*loaded));
    s = party__calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    s->base.ops = &sqlite_ops;
    s->backend = be;
    s->party = party;
    snprintf(s->id, sizeof(s->id), "%s", room_id);
    if (be->data_dir != NULL) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/rooms", be->data_dir);
        if (make_dir(be->data_dir) != 0 || make_dir(dir) != 0) {
            snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
            party__free(s);
            return PARTY_EIO;
        }
        snprintf(dir, sizeof(dir), "%s/rooms/%.2s", be->data_dir, room_id);
        if (make_dir(dir) != 0 || party__store_path(be->data_dir, room_id, path, sizeof(path))) {
            snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
            party__free(s);
            return PARTY_EIO;
        }
    } else {
        snprintf(path, sizeof(path), ":memory:");
    }
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(s->db, 5000);
    /* Rooms are many and small: SQLite's per-connection defaults (120 KB of
     * lookaside, a 2 MB page cache) would make a thousand open rooms cost
     * hundreds of megabytes. */
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 128, 32);
    sqlite3_exec(s->db, "PRAGMA cache_size=-256", NULL, NULL, NULL);
    /* synchronous first: switching a new file to WAL under the default
     * setting would cost extra syncs even in NORMAL mode. */
    rc = sqlite3_exec(s->db,
                      be->durability_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    if (format_check(s->db, room_steps, "", path, why, why_len) != 0) {
        sqlite_unload(&s->base);
        return PARTY_EIO;
    }
    if (prepare(s->db, "BEGIN", &s->begin) || prepare(s->db, "COMMIT", &s->commit) ||
        prepare(s->db, "ROLLBACK", &s->rollback) ||
        prepare(s->db,
                "INSERT INTO _party_kv (key, value) VALUES (?1, ?2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &s->kv_put) ||
        prepare(s->db, "SELECT value FROM _party_kv WHERE key = ?1", &s->kv_get) ||
        prepare(s->db, "DELETE FROM _party_kv WHERE key = ?1", &s->kv_delete) ||
        prepare(s->db,
                "INSERT INTO _party_meta (key, value) VALUES (?1, ?2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &s->meta_put) ||
        prepare(s->db, "SELECT value FROM _party_meta WHERE key = ?1", &s->meta_get))
        goto fail;
    /* A room that cannot read its wake time stays unloaded: loaded without
     * it, its next commit would file "no wake time" and lose its alarm. */
    if (room_alarm_get(&s->base, &loaded->alarm_at, &loaded->alarm_retries) != 0 ||
        room_sched_earliest(&s->base, &loaded->sched_next) != 0) {
        rc = sqlite3_errcode(s->db);
        snprintf(why, why_len, "%s: cannot read its alarm and schedules: %s", path,
                 sqlite3_errstr(rc));
        sqlite_unload(&s->base);
        memset(loaded, 0, sizeof(*loaded));
        return rc == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    *out = &s->base;
    return 0;
fail:
    describe_open_failure(s, path, why, why_len);
    sqlite_unload(&s->base);
    return PARTY_EIO;
}

/* ---- a room's transaction ---- */

static int in_transaction(sqlite_room *s) {
    return !sqlite3_get_autocommit(s->db);
}

static int room_begin(sqlite_room *s) {
    int r;
    if (in_transaction(s))
        return 0;
    if (s->begun)
        s->lost = 1;
    r = step_done(s->begin);
    if (r == 0)
        s->begun = 1;
    return r;
}

/* 1 if a transaction begun since the last commit or rollback ended without
 * either: SQLite rolled it back itself (a statement failed with a
 * rollback, or the room's own SQL ran one), so its writes are gone even if
 * a later one began. */
static int lost_transaction(sqlite_room *s) {
    return s->lost || (s->begun && !in_transaction(s));
}

/* A record op's result; a write that succeeded is remembered. */
static int wrote_if(sqlite_room *s, int r) {
    if (r == 0)
        s->wrote = 1;
    return r;
}

static int room_wrote(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    /* Asked on every send of a running room (the output gate): a room
     * that has not touched its store, or has written through the record
     * ops, costs one test. Otherwise SQLite says (the room's own SQL). No
     * schema name in txn_state, which SQLite would compare by name each
     * time; a write to an attached or temp database counts too, and is
     * committed like one to main. */
    if (!s->begun)
        return 0;
    if (s->wrote)
        return 1;
    return lost_transaction(s) || sqlite3_txn_state(s->db, NULL) == SQLITE_TXN_WRITE;
}

static void room_rollback(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    s->begun = s->lost = s->wrote = 0;
    if (in_transaction(s))
        (void)step_done(s->rollback);
}

/* Commits the room's open transaction: 0 or PARTY_EIO (rolled back). */
static int room_commit(sqlite_room *s) {
    int open = in_transaction(s);
    if (s->lost || (s->begun && !open)) {
        room_rollback(&s->base);
        return PARTY_EIO;
    }
    s->begun = s->lost = s->wrote = 0;
    if (!open)
        return 0;
    if (step_done(s->commit) != 0) {
        room_rollback(&s->base);
        return PARTY_EIO;
    }
    return 0;
}

static struct sqlite3 *room_file_open(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    /* Every room has its own file here: its records are in it already. */
    return room_begin(s) == 0 ? s->db : NULL;
}

/* ---- key-value records: the user's (_party_kv) and the runtime's (_party_meta) ---- */

static int check_key(const char *key) {
    return key != NULL && party__utf8_valid(key, strlen(key)) ? 0 : PARTY_EINVAL;
}

static int pairs_put(sqlite_room *s, sqlite3_stmt *put, const char *key, const void *val,
                     size_t len, int text) {
    int r = check_key(key);
    if (r != 0 || (val == NULL && len > 0))
        return PARTY_EINVAL;
    if (strlen(key) + len > PARTY__KV_MAX)
        return PARTY_ETOOBIG;
    r = room_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(put, 1, key, -1, SQLITE_STATIC);
    /* The runtime's records are text in the file (files of every version
     * hold them so), the user's values blobs. */
    if (text)
        sqlite3_bind_text64(put, 2, len > 0 ? val : "", len, SQLITE_STATIC, SQLITE_UTF8);
    else
        sqlite3_bind_blob64(put, 2, len > 0 ? val : "", len, SQLITE_STATIC);
    return wrote_if(s, step_done(put));
}

static int pairs_get(sqlite_room *s, sqlite3_stmt *get, int begin, const char *key, void **val,
                     size_t *len) {
    int r = check_key(key), rc;
    if (r != 0 || val == NULL)
        return PARTY_EINVAL;
    *val = NULL;
    if (len != NULL)
        *len = 0;
    if (begin && (r = room_begin(s)) != 0)
        return r;
    sqlite3_bind_text(get, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(get);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(get, 0);
        char *copy = party__malloc(n + 1);
        if (copy == NULL) {
            r = PARTY_ENOMEM;
        } else {
            if (n > 0)
                memcpy(copy, sqlite3_column_blob(get, 0), n);
            copy[n] = '\0';
            *val = copy;
            if (len != NULL)
                *len = n;
        }
    } else {
        r = rc == SQLITE_DONE ? PARTY_ENOTFOUND : PARTY_EIO;
    }
    sqlite3_reset(get);
    sqlite3_clear_bindings(get);
    return r;
}

static int pairs_delete(sqlite_room *s, sqlite3_stmt *del, const char *key) {
    int r = check_key(key);
    if (r != 0)
        return r;
    r = room_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(del, 1, key, -1, SQLITE_STATIC);
    r = wrote_if(s, step_done(del));
    if (r == 0 && sqlite3_changes(s->db) == 0)
        return PARTY_ENOTFOUND;
    return r;
}

static int pairs_list(sqlite_room *s, const char *table, const char *prefix, party__kv_fn fn,
                      void *arg) {
    sqlite3_stmt *stmt = NULL;
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    char sql[128], *upper = NULL;
    int r = 0, rc;

    if (fn == NULL || (prefix != NULL && check_key(prefix) != 0))
        return PARTY_EINVAL;
    r = room_begin(s);
    if (r != 0)
        return r;
    /* A fresh statement per call, so fn may read or list again. Keys with
     * the prefix sort below prefix + 0xFF (no UTF-8 byte is 0xFF). */
    if (plen > 0) {
        upper = party__malloc(plen + 2);
        if (upper == NULL)
            return PARTY_ENOMEM;
        memcpy(upper, prefix, plen);
        upper[plen] = (char)0xFF;
        upper[plen + 1] = '\0';
        snprintf(sql, sizeof(sql),
                 "SELECT key, value FROM %s WHERE key >= ?1 AND key < ?2 ORDER BY key", table);
        rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(stmt, 1, prefix, (int)plen, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 2, upper, (int)plen + 1, SQLITE_STATIC);
        }
    } else {
        snprintf(sql, sizeof(sql), "SELECT key, value FROM %s ORDER BY key", table);
        rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
    }
    if (rc != SQLITE_OK) {
        party__free(upper);
        return PARTY_EIO;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        r = fn((const char *)sqlite3_column_text(stmt, 0), sqlite3_column_blob(stmt, 1),
               (size_t)sqlite3_column_bytes(stmt, 1), arg);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = rc == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
    sqlite3_finalize(stmt);
    party__free(upper);
    return r;
}

static int room_kv_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    return pairs_get(s, s->kv_get, 1, key, val, len);
}

static int room_kv_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return pairs_put(s, s->kv_put, key, val, len, 0);
}

static int room_kv_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    return pairs_delete(s, s->kv_delete, key);
}

static int room_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    return pairs_list((sqlite_room *)rs, "_party_kv", prefix, fn, arg);
}

static int room_meta_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    /* Outside the batch's transaction, as the runtime reads its records
     * between batches too (after a failed commit). */
    return pairs_get(s, s->meta_get, 0, key, val, len);
}

static int room_meta_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return pairs_put(s, s->meta_put, key, val, len, 1);
}

static int room_meta_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *del = NULL;
    int r;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM _party_meta WHERE key = ?1", -1, &del, NULL) !=
        SQLITE_OK)
        return PARTY_EIO;
    r = pairs_delete(s, del, key);
    sqlite3_finalize(del);
    return r;
}

static int room_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    return pairs_list((sqlite_room *)rs, "_party_meta", prefix, fn, arg);
}

/* ---- alarm and schedules ---- */

/* A statement prepared for one run (these ops are rare). */
static int statement(sqlite_room *s, const char *sql, sqlite3_stmt **out) {
    *out = NULL;
    return sqlite3_prepare_v2(s->db, sql, -1, out, NULL) == SQLITE_OK ? 0 : PARTY_EIO;
}

/* Runs a one-run statement to its end and finalizes it. */
static int finish(sqlite3_stmt *stmt) {
    int r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : PARTY_EIO;
    sqlite3_finalize(stmt);
    return r;
}

static int room_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int rc;
    *at_ms = 0;
    if (retries != NULL)
        *retries = 0;
    if (statement(s, "SELECT at_ms, retries FROM _party_alarm WHERE k = 1", &stmt) != 0)
        return PARTY_EIO;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *at_ms = sqlite3_column_int64(stmt, 0);
        if (retries != NULL)
            *retries = sqlite3_column_int(stmt, 1);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

static int room_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int r = room_begin(s);
    if (r != 0)
        return r;
    if (at_ms > 0) {
        if (statement(s,
                      "INSERT INTO _party_alarm (k, at_ms, retries) VALUES (1, ?1, ?2)"
                      " ON CONFLICT (k) DO UPDATE SET at_ms = excluded.at_ms,"
                      " retries = excluded.retries",
                      &stmt) != 0)
            return PARTY_EIO;
        sqlite3_bind_int64(stmt, 1, at_ms);
        sqlite3_bind_int(stmt, 2, retries);
    } else if (statement(s, "DELETE FROM _party_alarm", &stmt) != 0) {
        return PARTY_EIO;
    }
    return wrote_if(s, finish(stmt));
}

static int room_sched_add(party__room_store *rs, const party__schedule *sc) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int r = room_begin(s);
    if (r != 0)
        return r;
    if (statement(
            s,
            "INSERT INTO _party_schedules (id, name, payload, kind, interval_ms, cron, next_ms)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_text(stmt, 1, sc->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, sc->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(stmt, 3, sc->len > 0 ? sc->payload : "", sc->len, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, sc->kind);
    sqlite3_bind_int64(stmt, 5, sc->interval_ms);
    if (sc->cron != NULL)
        sqlite3_bind_text(stmt, 6, sc->cron, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 7, sc->next_ms);
    return wrote_if(s, finish(stmt));
}

static int room_sched_cancel(party__room_store *rs, const char *id) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int r = room_begin(s);
    if (r != 0)
        return r;
    if (statement(s, "DELETE FROM _party_schedules WHERE id = ?1", &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    r = wrote_if(s, finish(stmt));
    if (r == 0 && sqlite3_changes(s->db) == 0)
        return PARTY_ENOTFOUND;
    return r;
}

static int room_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int r = room_begin(s);
    if (r != 0)
        return r;
    if (statement(s, "UPDATE _party_schedules SET next_ms = ?2 WHERE id = ?1", &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, next_ms);
    return wrote_if(s, finish(stmt));
}

static int room_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int rc;
    *next_ms = 0;
    if (statement(s, "SELECT min(next_ms) FROM _party_schedules", &stmt) != 0)
        return PARTY_EIO;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
        *next_ms = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? 0 : PARTY_EIO;
}

static int room_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn, void *arg) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *stmt;
    int r = 0, rc;
    if (statement(s,
                  "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM _party_schedules"
                  " WHERE next_ms <= ?1 ORDER BY next_ms, id",
                  &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_int64(stmt, 1, until);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        party__schedule sc;
        sc.id = (const char *)sqlite3_column_text(stmt, 0);
        sc.name = (const char *)sqlite3_column_text(stmt, 1);
        sc.payload = sqlite3_column_blob(stmt, 2);
        sc.len = (size_t)sqlite3_column_bytes(stmt, 2);
        sc.kind = sqlite3_column_int(stmt, 3);
        sc.interval_ms = sqlite3_column_int64(stmt, 4);
        sc.cron = (const char *)sqlite3_column_text(stmt, 5);
        sc.next_ms = sqlite3_column_int64(stmt, 6);
        r = fn(&sc, arg);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = PARTY_EIO;
    sqlite3_finalize(stmt);
    return r;
}

/* ---- commits and the alarm index ---- */

/* results[i] of a room whose index entry already has its exact wake
 * time; 0 again before commit_batch returns. */
#define INDEX_EXACT 1

static void index_bind(sqlite3_stmt *stmt, const sqlite_room *s, int64_t due_ms) {
    sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, s->party, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, due_ms);
}

/* Before the commits: a wake time earlier than the index's (or the first
 * one) reaches the index, synced with durability full, so that no alarm
 * exists that the index would wake too late for. 0, or PARTY_EIO when
 * the index could not be written (then nothing of it was). */
static int index_lower(sqlite_backend *be, const party__commit *rooms, size_t n, int *results) {
    size_t i;
    int r;

    uv_mutex_lock(&be->index_mutex);
    r = step_done(be->index_begin);
    for (i = 0; i < n && r == 0; i++) {
        if (!rooms[i].wake_changed || rooms[i].wake_ms <= 0)
            continue;
        index_bind(be->index_lower, (const sqlite_room *)rooms[i].store, rooms[i].wake_ms);
        r = step_done(be->index_lower);
        /* A row inserted or moved earlier holds the exact time already. */
        if (r == 0 && sqlite3_changes(be->index) > 0)
            results[i] = INDEX_EXACT;
    }
    if (r == 0)
        r = step_done(be->index_commit);
    if (r != 0) {
        if (!sqlite3_get_autocommit(be->index))
            (void)step_done(be->index_rollback);
        for (i = 0; i < n; i++)
            if (results[i] == INDEX_EXACT)
                results[i] = 0;
    }
    uv_mutex_unlock(&be->index_mutex);
    return r;
}

/* After the commits: the index takes the exact wake time of each room
 * that committed (later than before, or none: deleted). Not synced: lost
 * in a power cut, the index keeps an earlier time, which costs one
 * wake-up with nothing due. Failures are left as they are, for the same
 * reason. */
static void index_settle(sqlite_backend *be, const party__commit *rooms, size_t n,
                         const int *results) {
    size_t i;
    int any = 0;

    for (i = 0; i < n && !any; i++)
        any = rooms[i].wake_changed && results[i] == 0;
    if (!any)
        return;
    uv_mutex_lock(&be->index_mutex);
    if (be->durability_full)
        (void)step_done(be->sync_off);
    if (step_done(be->index_begin) == 0) {
        for (i = 0; i < n; i++) {
            const sqlite_room *s = (const sqlite_room *)rooms[i].store;
            if (!rooms[i].wake_changed || results[i] != 0)
                continue;
            if (rooms[i].wake_ms > 0) {
                index_bind(be->index_set, s, rooms[i].wake_ms);
                (void)step_done(be->index_set);
            } else {
                sqlite3_bind_text(be->index_delete, 1, s->id, -1, SQLITE_STATIC);
                (void)step_done(be->index_delete);
            }
        }
        if (step_done(be->index_commit) != 0 && !sqlite3_get_autocommit(be->index))
            (void)step_done(be->index_rollback);
    }
    if (be->durability_full)
        (void)step_done(be->sync_on);
    uv_mutex_unlock(&be->index_mutex);
}

static void sqlite_commit_batch(party__backend *be_, const party__commit *rooms, size_t n,
                                int *results) {
    sqlite_backend *be = (sqlite_backend *)be_;
    int lower = 0, settle = 0, index_failed = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        results[i] = 0;
        settle |= rooms[i].wake_changed;
        lower |= rooms[i].wake_changed && rooms[i].wake_ms > 0;
    }
    if (lower)
        index_failed = index_lower(be, rooms, n, results) != 0;
    /* Each room is its own file: one commit each, and one room's failure
     * is its own. */
    for (i = 0; i < n; i++) {
        sqlite_room *s = (sqlite_room *)rooms[i].store;
        int r;
        if (index_failed && rooms[i].wake_changed && rooms[i].wake_ms > 0) {
            room_rollback(&s->base);
            results[i] = PARTY_EIO;
            continue;
        }
        r = room_commit(s);
        if (r != 0)
            results[i] = r;
    }
    if (settle)
        index_settle(be, rooms, n, results);
    for (i = 0; lower && i < n; i++)
        if (results[i] == INDEX_EXACT)
            results[i] = 0;
}

/* Calls fn for the index's entries: all (due_only 0), or those due by
 * until_ms, earliest first. */
static int index_rows(sqlite_backend *be, int due_only, int64_t until_ms, party__index_fn fn,
                      void *arg) {
    sqlite3_stmt *stmt = NULL;
    int r = 0, rc;

    uv_mutex_lock(&be->index_mutex);
    rc = sqlite3_prepare_v2(be->index,
                            due_only ? "SELECT room_id, party, due_ms FROM alarm_index"
                                       " WHERE due_ms <= ?1 ORDER BY due_ms, room_id"
                                     : "SELECT room_id, party, due_ms FROM alarm_index",
                            -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        uv_mutex_unlock(&be->index_mutex);
        return rc == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    if (due_only)
        sqlite3_bind_int64(stmt, 1, until_ms);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        const char *party = (const char *)sqlite3_column_text(stmt, 1);
        if (id == NULL || party == NULL) {
            /* Out of memory is no reason to skip an entry: its room would
             * not wake. A NULL stored is (no such entry is ever written). */
            if (sqlite3_errcode(be->index) == SQLITE_NOMEM) {
                r = PARTY_ENOMEM;
                break;
            }
            continue;
        }
        r = fn(id, party, sqlite3_column_int64(stmt, 2), arg);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = PARTY_EIO;
    sqlite3_finalize(stmt);
    uv_mutex_unlock(&be->index_mutex);
    return r;
}

static int sqlite_index_load(party__backend *be, party__index_fn fn, void *arg) {
    return index_rows((sqlite_backend *)be, 0, 0, fn, arg);
}

static int sqlite_index_due(party__backend *be, int64_t until_ms, party__index_fn fn, void *arg) {
    return index_rows((sqlite_backend *)be, 1, until_ms, fn, arg);
}

static const party__store_ops sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .acquire = sqlite_acquire,
    .release = sqlite_release,
    .load = sqlite_load,
    .unload = sqlite_unload,
    .kv_get = room_kv_get,
    .kv_put = room_kv_put,
    .kv_delete = room_kv_delete,
    .kv_list = room_kv_list,
    .meta_get = room_meta_get,
    .meta_put = room_meta_put,
    .meta_delete = room_meta_delete,
    .meta_list = room_meta_list,
    .alarm_get = room_alarm_get,
    .alarm_set = room_alarm_set,
    .sched_add = room_sched_add,
    .sched_cancel = room_sched_cancel,
    .sched_set_next = room_sched_set_next,
    .sched_earliest = room_sched_earliest,
    .sched_each = room_sched_each,
    .room_file_open = room_file_open,
    .wrote = room_wrote,
    .rollback = room_rollback,
    .commit_batch = sqlite_commit_batch,
    .index_load = sqlite_index_load,
    .index_due = sqlite_index_due,
};

const party__store_ops *party__store_sqlite_ops(void) {
    return &sqlite_ops;
}
