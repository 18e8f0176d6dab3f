/* store_sqlite: the SQLite backend of the storage seam (storage.h), and
 * the only file of partyd that speaks SQLite. A room's records are rows
 * keyed by its id in one of a fixed number of shared WAL files,
 * <data>/rooms-<k>.db (its shard: a hash of the id, k < the count recorded
 * when the data directory was made). A loaded shared room holds no handle:
 * its open batch is a write set in memory (write_set.h), its reads see the
 * committed rows through a small pool of read connections per shard, and
 * commit_batch writes the rooms of one shard in one transaction. A room
 * that opens its own database (party_room_db) moves its records into
 * <data>/rooms/<id[0..2]>/<id>.db in one crash-safe step and is served
 * from that file from then on, like the per-room files of earlier
 * partyds; its connection comes from a bounded cache of own-file handles
 * for the length of a batch, so an awake own-file room holds no
 * descriptor between batches. The alarm index is <data>/alarms.db, one connection shared by
 * the worker threads under a mutex. Each file records its format version
 * in _party_format. */
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
#include "write_set.h"

/* ---- format versions ---- */

/* The version of the files this partyd writes. Version 0 is a file from
 * before versions were recorded: the same tables, no _party_format.
 * Version 2 brought the shared files; an earlier partyd refuses a data
 * directory that has them (its alarms.db is version 2). */
#define FORMAT_VERSION 2

/* Shards of a new data directory. Commits to different shards run in
 * parallel (one writer each); each shard costs a few descriptors. */
#define SHARDS_NEW 4
/* Own files' handles kept open when the configuration says nothing. */
#define OWN_HANDLES_DEFAULT 256
#define SHARDS_MAX 256
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define FORMAT_TABLE                                                                               \
    "CREATE TABLE IF NOT EXISTS _party_format (k INTEGER PRIMARY KEY CHECK (k = 1),"               \
    " version INTEGER NOT NULL);"

/* room_steps[v] brings an own file from version v to v + 1 (a new file
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
    /* An own file's tables did not change. */
    "",
};

/* index_steps[v]: the same for the alarm index, which also records how
 * many shards the data directory has (a directory of version 1 had none:
 * it gets the count of a new one). */
static const char *const index_steps[FORMAT_VERSION] = {
    "CREATE TABLE IF NOT EXISTS alarm_index (room_id TEXT PRIMARY KEY NOT NULL,"
    " party TEXT NOT NULL, due_ms INTEGER NOT NULL) WITHOUT ROWID;" FORMAT_TABLE,
    "CREATE TABLE IF NOT EXISTS _party_layout (k INTEGER PRIMARY KEY CHECK (k = 1),"
    " shards INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO _party_layout (k, shards) VALUES (1, " STRINGIFY(SHARDS_NEW) ");",
};

/* shard_steps[v]: a shared file. The same records as an own file's, each
 * keyed by room id, and _party_rooms: every room with records here (own
 * 0), or whose records moved to its own file (own 1). */
static const char *const shard_steps[FORMAT_VERSION] = {
    "",
    "CREATE TABLE IF NOT EXISTS _party_rooms (room_id TEXT PRIMARY KEY NOT NULL,"
    " party TEXT NOT NULL, own INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_kv (room_id TEXT NOT NULL, key TEXT NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY (room_id, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_meta (room_id TEXT NOT NULL, key TEXT NOT NULL,"
    " value TEXT NOT NULL, PRIMARY KEY (room_id, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_alarm (room_id TEXT PRIMARY KEY NOT NULL,"
    " at_ms INTEGER NOT NULL, retries INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_schedules (room_id TEXT NOT NULL, id TEXT NOT NULL,"
    " name TEXT NOT NULL, payload BLOB NOT NULL, kind INTEGER NOT NULL,"
    " interval_ms INTEGER NOT NULL, cron TEXT, next_ms INTEGER NOT NULL,"
    " PRIMARY KEY (room_id, id)) WITHOUT ROWID;" FORMAT_TABLE,
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

/* A read connection of a shard, with its statements. Used by one thread
 * at a time: taken from the shard's pool for one read op (a visitor that
 * reads again takes another). */
typedef struct reader {
    struct reader *next;
    sqlite3 *db;
    sqlite3_stmt *room_get, *kv_get, *kv_list, *kv_range, *meta_get, *meta_list, *meta_range;
    sqlite3_stmt *alarm_get, *sched_min, *sched_due, *sched_one;
    sqlite3_stmt *begin, *end; /* a read transaction over several reads (loading) */
} reader;

/* One shared file. The writer is used under write_mutex, by commits and
 * moves; readers are pooled under read_mutex, so that no read waits for
 * a commit's fsync. */
typedef struct shard {
    char path[4096]; /* for messages; the URI of an in-memory shard */
    uv_mutex_t write_mutex, read_mutex;
    int mutexes;
    sqlite3 *writer;
    sqlite3_stmt *begin, *commit, *rollback, *savepoint, *release, *rollback_to;
    sqlite3_stmt *room_put, *room_own, *kv_put, *kv_delete, *kv_clear, *meta_put, *meta_delete;
    sqlite3_stmt *meta_clear, *alarm_put, *alarm_delete, *sched_put, *sched_delete, *sched_next;
    sqlite3_stmt *sched_clear;
    reader *idle; /* readers not in use */
    size_t readers;
} shard;

/* An own file's connection and its statements, in the backend's handle
 * cache: in use by one room's batch, or idle (on the LRU list, kept for
 * the room's next batch or its next load). */
typedef struct own_handle {
    struct own_handle *hash_next, *lru_prev, *lru_next;
    int in_use;
    char id[PARTY_ID_MAX];
    dev_t dev; /* the file it opened (0 in memory): a load checks it is still there */
    ino_t ino;
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *kv_put, *kv_get, *kv_delete;
    sqlite3_stmt *meta_put, *meta_get;
} own_handle;

typedef struct sqlite_backend {
    party__backend base;
    char *data_dir; /* NULL: in memory */
    int durability_full;
    unsigned n_shards;
    shard *shards;
    /* The alarm index: one connection for every worker thread, and its
     * statements, prepared once and run under index_mutex. With
     * durability full, sync_off and sync_on bracket the writes that need
     * no fsync. */
    uv_mutex_t index_mutex;
    sqlite3 *index;
    sqlite3_stmt *index_begin, *index_commit, *index_rollback;
    sqlite3_stmt *index_lower, *index_set, *index_delete;
    sqlite3_stmt *sync_off, *sync_on;
    /* Own files' handles, by room id, under handles_mutex: at most
     * max_handles (in use ones may go past it; idle ones past it are
     * closed, least recently used first). In memory, never closed while
     * the room is loaded: closing would lose the file. */
    uv_mutex_t handles_mutex;
    own_handle **handle_buckets;
    size_t handle_buckets_cap; /* a power of two */
    own_handle *lru_head, *lru_tail;
    size_t n_handles, max_handles;
} sqlite_backend;

/* One loaded room: shared (own 0: its open batch is ws) or own-file
 * (own 1: its file, with the open batch a transaction in it; db and the
 * statements are its handle's while it holds one, NULL between
 * batches). */
typedef struct sqlite_room {
    party__room_store base;
    sqlite_backend *backend;
    const char *party;
    char id[PARTY_ID_MAX];
    shard *shard;
    party__write_set ws;
    int own;
    own_handle *h;
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *kv_put, *kv_get, *kv_delete;
    sqlite3_stmt *meta_put, *meta_get;
    int begun; /* BEGIN ran since the last commit or rollback */
    int lost;  /* ... and that transaction ended by itself, then BEGIN ran again */
    int wrote; /* ... and one of the record ops wrote in it */
    /* A shared room's write that could not be recorded (out of memory, or
     * a read it needed failed): the batch must fail, as a transaction
     * SQLite rolled back does, not commit without it. */
    int broken;
} sqlite_room;

/* The room store tables (the own-file one, the shared one: see "the
 * record ops"); the backend's ops are the shared table's. */
static const party__store_ops own_ops, shared_ops;

static int own_ready(sqlite_room *s);
static void handles_free(sqlite_backend *be);
static void own_checkin(sqlite_room *s);

int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/rooms/%.2s/%s.db", data_dir, room_id, room_id);
    return n > 0 && (size_t)n < cap ? 0 : PARTY_EINVAL;
}

static int make_dir(const char *path) {
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Makes a directory's entries durable (a file created in it). */
static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* Runs a prepared statement that returns no rows to its end, then resets
 * it and clears its bindings for the next run: 0 or PARTY_EIO. */
static int step_done(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

/* Resets a statement that returned rows, for its next run. */
static void done_with(sqlite3_stmt *stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) == SQLITE_OK ? 0
                                                                                               : -1;
}

static int sqlite_code_error(int rc) {
    return (rc & 0xff) == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
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

/* Opens path (a file, or an in-memory URI) in WAL mode with the
 * durability asked, and a page cache of cache_kib. 0 or an SQLite code
 * (then *db may be set, for its message: the caller closes it). */
static int connection_open(const char *path, int create, int durability_full, int cache_kib,
                           sqlite3 **db) {
    char pragma[64];
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, rc;

    if (create)
        flags |= SQLITE_OPEN_CREATE;
    *db = NULL;
    rc = sqlite3_open_v2(path, db, flags, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_busy_timeout(*db, 5000);
    /* Rooms' files are many and small: SQLite's per-connection defaults
     * (120 KB of lookaside, a 2 MB page cache) would make a thousand of
     * them cost hundreds of megabytes. */
    sqlite3_db_config(*db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 128, 32);
    snprintf(pragma, sizeof(pragma), "PRAGMA cache_size=-%d", cache_kib);
    sqlite3_exec(*db, pragma, NULL, NULL, NULL);
    /* synchronous first: switching a new file to WAL under the default
     * setting would cost extra syncs even in NORMAL mode. An in-memory
     * database keeps its own journal mode. */
    rc =
        sqlite3_exec(*db, durability_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(*db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    return rc;
}

/* ---- shards ---- */

/* The shard of a room: a hash of its id (FNV-1a), so that any id spreads. */
static shard *shard_of(sqlite_backend *be, const char *room_id) {
    uint32_t h = 2166136261u;
    const unsigned char *p;
    for (p = (const unsigned char *)room_id; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return &be->shards[h % be->n_shards];
}

static void reader_close(reader *rd) {
    sqlite3_stmt **stmts[] = {&rd->room_get,  &rd->kv_get,    &rd->kv_list,    &rd->kv_range,
                              &rd->meta_get,  &rd->meta_list, &rd->meta_range, &rd->alarm_get,
                              &rd->sched_min, &rd->sched_due, &rd->sched_one,  &rd->begin,
                              &rd->end};
    size_t i;
    if (rd == NULL)
        return;
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        sqlite3_finalize(*stmts[i]);
    sqlite3_close(rd->db);
    party__free(rd);
}

static reader *reader_open(shard *sh, int durability_full) {
    reader *rd = party__calloc(1, sizeof(*rd));
    sqlite3 *db;
    if (rd == NULL)
        return NULL;
    if (connection_open(sh->path, 0, durability_full, 256, &rd->db) != SQLITE_OK) {
        reader_close(rd);
        return NULL;
    }
    db = rd->db;
    sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
    if (prepare(db, "SELECT own FROM _party_rooms WHERE room_id = ?1", &rd->room_get) ||
        prepare(db, "SELECT value FROM _party_kv WHERE room_id = ?1 AND key = ?2", &rd->kv_get) ||
        prepare(db, "SELECT key, value FROM _party_kv WHERE room_id = ?1 ORDER BY key",
                &rd->kv_list) ||
        prepare(db,
                "SELECT key, value FROM _party_kv WHERE room_id = ?1 AND key >= ?2 AND key < ?3"
                " ORDER BY key",
                &rd->kv_range) ||
        prepare(db, "SELECT value FROM _party_meta WHERE room_id = ?1 AND key = ?2",
                &rd->meta_get) ||
        prepare(db, "SELECT key, value FROM _party_meta WHERE room_id = ?1 ORDER BY key",
                &rd->meta_list) ||
        prepare(db,
                "SELECT key, value FROM _party_meta WHERE room_id = ?1 AND key >= ?2 AND key < ?3"
                " ORDER BY key",
                &rd->meta_range) ||
        prepare(db, "SELECT at_ms, retries FROM _party_alarm WHERE room_id = ?1", &rd->alarm_get) ||
        prepare(db, "SELECT min(next_ms) FROM _party_schedules WHERE room_id = ?1",
                &rd->sched_min) ||
        prepare(db,
                "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM _party_schedules"
                " WHERE room_id = ?1 AND next_ms <= ?2 ORDER BY next_ms, id",
                &rd->sched_due) ||
        prepare(db,
                "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM _party_schedules"
                " WHERE room_id = ?1 AND id = ?2",
                &rd->sched_one) ||
        prepare(db, "BEGIN", &rd->begin) || prepare(db, "COMMIT", &rd->end)) {
        reader_close(rd);
        return NULL;
    }
    return rd;
}

/* A read connection of the shard, for one op: NULL when none can be
 * opened. Give it back with reader_put. */
static reader *reader_get(sqlite_backend *be, shard *sh) {
    reader *rd;
    uv_mutex_lock(&sh->read_mutex);
    rd = sh->idle;
    if (rd != NULL) {
        sh->idle = rd->next;
        uv_mutex_unlock(&sh->read_mutex);
        return rd;
    }
    /* Opened under the lock: rare (the pool grows to the number of
     * threads reading at once), and the count stays exact. */
    rd = reader_open(sh, be->durability_full);
    if (rd != NULL)
        sh->readers++;
    uv_mutex_unlock(&sh->read_mutex);
    return rd;
}

static void reader_put(shard *sh, reader *rd) {
    uv_mutex_lock(&sh->read_mutex);
    rd->next = sh->idle;
    sh->idle = rd;
    uv_mutex_unlock(&sh->read_mutex);
}

static void shard_close(shard *sh) {
    sqlite3_stmt **stmts[] = {
        &sh->begin,        &sh->commit,    &sh->rollback,     &sh->savepoint,  &sh->release,
        &sh->rollback_to,  &sh->room_put,  &sh->room_own,     &sh->kv_put,     &sh->kv_delete,
        &sh->kv_clear,     &sh->meta_put,  &sh->meta_delete,  &sh->meta_clear, &sh->alarm_put,
        &sh->alarm_delete, &sh->sched_put, &sh->sched_delete, &sh->sched_next, &sh->sched_clear};
    size_t i;
    while (sh->idle != NULL) {
        reader *rd = sh->idle;
        sh->idle = rd->next;
        reader_close(rd);
    }
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        sqlite3_finalize(*stmts[i]);
    sqlite3_close(sh->writer);
    if (sh->mutexes) {
        uv_mutex_destroy(&sh->write_mutex);
        uv_mutex_destroy(&sh->read_mutex);
    }
}

static int shard_statements_prepare(shard *sh) {
    sqlite3 *db = sh->writer;
    return prepare(db, "BEGIN IMMEDIATE", &sh->begin) || prepare(db, "COMMIT", &sh->commit) ||
           prepare(db, "ROLLBACK", &sh->rollback) ||
           prepare(db, "SAVEPOINT room", &sh->savepoint) ||
           prepare(db, "RELEASE room", &sh->release) ||
           prepare(db, "ROLLBACK TO room", &sh->rollback_to) ||
           prepare(db,
                   "INSERT INTO _party_rooms (room_id, party, own) VALUES (?1, ?2, 0)"
                   " ON CONFLICT (room_id) DO NOTHING",
                   &sh->room_put) ||
           prepare(db,
                   "INSERT INTO _party_rooms (room_id, party, own) VALUES (?1, ?2, 1)"
                   " ON CONFLICT (room_id) DO UPDATE SET own = 1",
                   &sh->room_own) ||
           prepare(db,
                   "INSERT INTO _party_kv (room_id, key, value) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (room_id, key) DO UPDATE SET value = excluded.value",
                   &sh->kv_put) ||
           prepare(db, "DELETE FROM _party_kv WHERE room_id = ?1 AND key = ?2", &sh->kv_delete) ||
           prepare(db, "DELETE FROM _party_kv WHERE room_id = ?1", &sh->kv_clear) ||
           prepare(db,
                   "INSERT INTO _party_meta (room_id, key, value) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (room_id, key) DO UPDATE SET value = excluded.value",
                   &sh->meta_put) ||
           prepare(db, "DELETE FROM _party_meta WHERE room_id = ?1 AND key = ?2",
                   &sh->meta_delete) ||
           prepare(db, "DELETE FROM _party_meta WHERE room_id = ?1", &sh->meta_clear) ||
           prepare(db,
                   "INSERT INTO _party_alarm (room_id, at_ms, retries) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT (room_id) DO UPDATE SET at_ms = excluded.at_ms,"
                   " retries = excluded.retries",
                   &sh->alarm_put) ||
           prepare(db, "DELETE FROM _party_alarm WHERE room_id = ?1", &sh->alarm_delete) ||
           prepare(db,
                   "INSERT OR REPLACE INTO _party_schedules (room_id, id, name, payload, kind,"
                   " interval_ms, cron, next_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                   &sh->sched_put) ||
           prepare(db, "DELETE FROM _party_schedules WHERE room_id = ?1 AND id = ?2",
                   &sh->sched_delete) ||
           prepare(db, "UPDATE _party_schedules SET next_ms = ?3 WHERE room_id = ?1 AND id = ?2",
                   &sh->sched_next) ||
           prepare(db, "DELETE FROM _party_schedules WHERE room_id = ?1", &sh->sched_clear);
}

/* Opens shard k: its writer (making the file and its tables if new, the
 * format checked) and a first reader. */
static int shard_open(sqlite_backend *be, unsigned k, char *why, size_t why_len) {
    shard *sh = &be->shards[k];
    char layout[256];
    reader *rd;
    int rc;

    if (be->data_dir != NULL)
        snprintf(sh->path, sizeof(sh->path), "%s/rooms-%u.db", be->data_dir, k);
    else
        /* Named in-memory databases are shared by the connections of this
         * process that open the same name (SQLite's memdb). */
        snprintf(sh->path, sizeof(sh->path), "file:/partyd-%p-%u?vfs=memdb", (void *)be, k);
    if (uv_mutex_init(&sh->write_mutex) != 0) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (uv_mutex_init(&sh->read_mutex) != 0) {
        uv_mutex_destroy(&sh->write_mutex);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    sh->mutexes = 1;
    rc = connection_open(sh->path, 1, be->durability_full, 1024, &sh->writer);
    if (rc != SQLITE_OK) {
        int code = rc & 0xff;
        int sys_errno = sh->writer != NULL && (code == SQLITE_CANTOPEN || code == SQLITE_IOERR)
                            ? sqlite3_system_errno(sh->writer)
                            : 0;
        snprintf(why, why_len, "%s: %s", sh->path,
                 sys_errno != 0       ? strerror(sys_errno)
                 : sh->writer != NULL ? sqlite3_errmsg(sh->writer)
                                      : sqlite3_errstr(rc));
        return sqlite_code_error(rc);
    }
    if (format_check(sh->writer, shard_steps, "", sh->path, why, why_len) != 0)
        return PARTY_EIO;
    /* The shared files record the shard count too: it outlives a lost
     * alarms.db (see shards_check). */
    snprintf(layout, sizeof(layout),
             "CREATE TABLE IF NOT EXISTS _party_layout (k INTEGER PRIMARY KEY CHECK (k = 1),"
             " shards INTEGER NOT NULL);"
             "INSERT OR IGNORE INTO _party_layout (k, shards) VALUES (1, %u)",
             be->n_shards);
    if (sqlite3_exec(sh->writer, layout, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, why_len, "%s: %s", sh->path, sqlite3_errmsg(sh->writer));
        return PARTY_EIO;
    }
    if (shard_statements_prepare(sh) != 0) {
        snprintf(why, why_len, "%s: %s", sh->path, sqlite3_errmsg(sh->writer));
        return PARTY_EIO;
    }
    rd = reader_get(be, sh);
    if (rd == NULL) {
        snprintf(why, why_len, "%s: cannot open a read connection", sh->path);
        return PARTY_EIO;
    }
    reader_put(sh, rd);
    return 0;
}

/* The shard count the alarm index records. */
static int shards_read(sqlite_backend *be, char *why, size_t why_len) {
    sqlite3_stmt *stmt = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(be->index, "SELECT shards FROM _party_layout WHERE k = 1", -1, &stmt,
                           NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (n < 1 || n > SHARDS_MAX) {
        snprintf(why, why_len, "alarm index: no valid shard count (%d)", n);
        return PARTY_EIO;
    }
    be->n_shards = (unsigned)n;
    return 0;
}

/* Checks the shard count of the alarm index against the one the first
 * shared file records. A new index (alarms.db lost, or never made while
 * the shared files were) takes the files' count: a room read from the
 * wrong shard would look new. Otherwise they must agree. */
static int shards_check(sqlite_backend *be, int index_new, const char *index_path, char *why,
                        size_t why_len) {
    char path[4096], sql[96];
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    struct stat st;
    int n = 0;

    snprintf(path, sizeof(path), "%s/rooms-0.db", be->data_dir);
    if (stat(path, &st) != 0)
        return 0; /* no shared file yet */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT shards FROM _party_layout WHERE k = 1", -1, &stmt, NULL) ==
            SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    if (n == 0 || (unsigned)n == be->n_shards)
        return 0;
    if (n < 1 || n > SHARDS_MAX || !index_new) {
        snprintf(why, why_len,
                 "data directory %s: %s records %u shared files, %s %d: restore the alarm index"
                 " that belongs with them, or remove it (it is rebuilt from the files' count)",
                 be->data_dir, index_path, be->n_shards, path, n);
        return PARTY_EIO;
    }
    snprintf(sql, sizeof(sql), "UPDATE _party_layout SET shards = %d WHERE k = 1", n);
    if (sqlite3_exec(be->index, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, why_len, "alarm index %s: %s", index_path, sqlite3_errmsg(be->index));
        return PARTY_EIO;
    }
    be->n_shards = (unsigned)n;
    return 0;
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
    unsigned k;
    if (be == NULL)
        return;
    for (k = 0; be->shards != NULL && k < be->n_shards; k++)
        shard_close(&be->shards[k]);
    party__free(be->shards);
    if (be->handle_buckets != NULL) {
        handles_free(be);
        uv_mutex_destroy(&be->handles_mutex);
    }
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
    unsigned k;

    *out = NULL;
    if (be == NULL || uv_mutex_init(&be->index_mutex) != 0) {
        party__free(be);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    be->base.ops = &shared_ops;
    be->base.commit_on_loop = !cfg->durability_full;
    be->durability_full = cfg->durability_full;
    /* In memory, closing an own file loses it: no bound then. */
    be->max_handles = cfg->data_dir == NULL  ? SIZE_MAX
                      : cfg->own_handles > 0 ? cfg->own_handles
                                             : OWN_HANDLES_DEFAULT;
    be->handle_buckets_cap = 64;
    while (be->handle_buckets_cap < 2 * be->max_handles && be->handle_buckets_cap < (1u << 16))
        be->handle_buckets_cap *= 2;
    be->handle_buckets = party__calloc(be->handle_buckets_cap, sizeof(*be->handle_buckets));
    if (be->handle_buckets == NULL || uv_mutex_init(&be->handles_mutex) != 0) {
        party__free(be->handle_buckets);
        be->handle_buckets = NULL;
        sqlite_close(&be->base);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (cfg->data_dir != NULL && (be->data_dir = party__strdup(cfg->data_dir)) == NULL) {
        sqlite_close(&be->base);
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
    if (shards_read(be, why, why_len) != 0 ||
        (be->data_dir != NULL && shards_check(be, !existed, path, why, why_len) != 0)) {
        sqlite_close(&be->base);
        return PARTY_EIO;
    }
    be->shards = party__calloc(be->n_shards, sizeof(*be->shards));
    if (be->shards == NULL) {
        snprintf(why, why_len, "out of memory");
        sqlite_close(&be->base);
        return PARTY_ENOMEM;
    }
    for (k = 0; k < be->n_shards; k++) {
        rc = shard_open(be, k, why, why_len);
        if (rc != 0) {
            sqlite_close(&be->base);
            return rc;
        }
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

/* ---- an own-file room ---- */

/* SQLite says "unable to open database file" whatever the cause: the OS
 * error comes first when SQLite has one (a long path may fill the rest),
 * and when it is the process's open-file limit (a loaded own-file room
 * holds 3 files), the limit is named, since raising it is the fix. */
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
                 "%s (open-file limit %llu; a room with its own file holds 3 while loaded, a "
                 "connection 1:"
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

/* ---- an own-file room's transaction ---- */

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

static int own_wrote(party__room_store *rs) {
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

/* Ends the batch keeping nothing; the handle goes back to the cache. */
static void own_rollback(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    s->begun = s->lost = s->wrote = 0;
    if (s->db != NULL && in_transaction(s))
        (void)step_done(s->rollback);
    own_checkin(s);
}

/* Commits the room's open transaction: 0 or PARTY_EIO (rolled back).
 * Either way the handle goes back to the cache. */
static int own_commit(sqlite_room *s) {
    int open;
    if (s->db == NULL)
        return 0; /* no batch began in the file */
    open = in_transaction(s);
    if (s->lost || (s->begun && !open)) {
        own_rollback(&s->base);
        return PARTY_EIO;
    }
    s->begun = s->lost = s->wrote = 0;
    if (open && step_done(s->commit) != 0) {
        own_rollback(&s->base);
        return PARTY_EIO;
    }
    own_checkin(s);
    return 0;
}

/* ---- an own-file room's key-value records: the user's (_party_kv) and the
 * runtime's (_party_meta) ---- */

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

/* ---- an own-file room's alarm and schedules ---- */

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

static int own_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
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

static int own_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
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

static int own_sched_add(party__room_store *rs, const party__schedule *sc) {
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

static int own_sched_cancel(party__room_store *rs, const char *id) {
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

static int own_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
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

static int own_sched_earliest(party__room_store *rs, int64_t *next_ms) {
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

static int own_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn, void *arg) {
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

/* ---- a shared room's records: the committed rows, read through one of the
 * shard's readers, overlaid with the room's write set ---- */

static party__pending_pairs *pending_of(sqlite_room *s, int meta) {
    return meta ? &s->ws.meta : &s->ws.kv;
}

/* The result of a write the batch could not record: the batch is broken. */
static int broke(sqlite_room *s, int r) {
    if (r != 0)
        s->broken = 1;
    return r;
}

/* A malloc'd copy of n bytes, NUL-terminated past them, into *val. */
static int copy_value(const void *data, size_t n, void **val, size_t *len) {
    char *copy = party__malloc(n + 1);
    if (copy == NULL)
        return PARTY_ENOMEM;
    if (n > 0)
        memcpy(copy, data, n);
    copy[n] = '\0';
    *val = copy;
    if (len != NULL)
        *len = n;
    return 0;
}

/* The committed value of key: a copy into *val, or (val NULL) only
 * whether there is one. 0, PARTY_ENOTFOUND or an error. */
static int shared_read_pair(sqlite_room *s, int meta, const char *key, void **val, size_t *len) {
    reader *rd = reader_get(s->backend, s->shard);
    sqlite3_stmt *get;
    int rc, r = 0;

    if (rd == NULL)
        return PARTY_EIO;
    get = meta ? rd->meta_get : rd->kv_get;
    sqlite3_bind_text(get, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(get, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(get);
    if (rc == SQLITE_ROW && val != NULL) {
        size_t n = (size_t)sqlite3_column_bytes(get, 0);
        const void *data = sqlite3_column_blob(get, 0);
        r = n > 0 && data == NULL ? PARTY_ENOMEM : copy_value(data, n, val, len);
    } else if (rc != SQLITE_ROW) {
        r = rc == SQLITE_DONE ? PARTY_ENOTFOUND : sqlite_code_error(rc);
    }
    done_with(get);
    reader_put(s->shard, rd);
    return r;
}

static int shared_get(sqlite_room *s, int meta, const char *key, void **val, size_t *len) {
    party__pending_pair *p;
    if (check_key(key) != 0 || val == NULL)
        return PARTY_EINVAL;
    *val = NULL;
    if (len != NULL)
        *len = 0;
    p = party__pending_find(pending_of(s, meta), key);
    if (p != NULL)
        return p->deleted ? PARTY_ENOTFOUND : copy_value(p->val, p->len, val, len);
    return shared_read_pair(s, meta, key, val, len);
}

static int shared_put(sqlite_room *s, int meta, const char *key, const void *val, size_t len) {
    if (check_key(key) != 0 || (val == NULL && len > 0))
        return PARTY_EINVAL;
    if (strlen(key) + len > PARTY__KV_MAX)
        return PARTY_ETOOBIG;
    return broke(s, party__pending_set(pending_of(s, meta), key, val, len, 0));
}

static int shared_delete(sqlite_room *s, int meta, const char *key) {
    party__pending_pair *p;
    int r;
    if (check_key(key) != 0)
        return PARTY_EINVAL;
    p = party__pending_find(pending_of(s, meta), key);
    if (p != NULL && p->deleted)
        return PARTY_ENOTFOUND;
    if (p == NULL && (r = shared_read_pair(s, meta, key, NULL, NULL)) != 0)
        return r == PARTY_ENOTFOUND ? r : broke(s, r);
    return broke(s, party__pending_set(pending_of(s, meta), key, NULL, 0, 1));
}

/* The committed keys with the prefix and the pending ones, merged in key
 * order; a pending entry hides the committed row of its key. */
static int shared_list(sqlite_room *s, int meta, const char *prefix, party__kv_fn fn, void *arg) {
    const party__pending_pairs *pending = pending_of(s, meta);
    size_t plen = prefix != NULL ? strlen(prefix) : 0, i;
    char *upper = NULL;
    sqlite3_stmt *stmt;
    reader *rd;
    int r = 0, rc;

    if (fn == NULL || (prefix != NULL && check_key(prefix) != 0))
        return PARTY_EINVAL;
    if (plen > 0) {
        /* Keys with the prefix sort below prefix + 0xFF (no UTF-8 byte is
         * 0xFF). */
        upper = party__malloc(plen + 2);
        if (upper == NULL)
            return PARTY_ENOMEM;
        memcpy(upper, prefix, plen);
        upper[plen] = (char)0xFF;
        upper[plen + 1] = '\0';
    }
    rd = reader_get(s->backend, s->shard);
    if (rd == NULL) {
        party__free(upper);
        return PARTY_EIO;
    }
    stmt = plen > 0 ? (meta ? rd->meta_range : rd->kv_range) : (meta ? rd->meta_list : rd->kv_list);
    sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
    if (plen > 0) {
        sqlite3_bind_text(stmt, 2, prefix, (int)plen, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, upper, (int)plen + 1, SQLITE_STATIC);
    }
    i = plen > 0 ? party__pending_lower_bound(pending, prefix) : 0;
    rc = sqlite3_step(stmt);
    for (;;) {
        int have_row = rc == SQLITE_ROW, cmp;
        int have_pending =
            i < pending->len && (plen == 0 || strncmp(pending->items[i].key, prefix, plen) == 0);
        const char *key = NULL;

        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = sqlite_code_error(rc);
            break;
        }
        if (!have_row && !have_pending)
            break;
        if (have_row && (key = (const char *)sqlite3_column_text(stmt, 0)) == NULL) {
            r = PARTY_ENOMEM;
            break;
        }
        cmp = !have_row ? -1 : !have_pending ? 1 : strcmp(pending->items[i].key, key);
        if (cmp <= 0) {
            const party__pending_pair *p = &pending->items[i++];
            if (cmp == 0)
                rc = sqlite3_step(stmt);
            if (!p->deleted && (r = fn(p->key, p->val, p->len, arg)) != 0)
                break;
        } else {
            r = fn(key, sqlite3_column_blob(stmt, 1), (size_t)sqlite3_column_bytes(stmt, 1), arg);
            if (r != 0)
                break;
            rc = sqlite3_step(stmt);
        }
    }
    done_with(stmt);
    reader_put(s->shard, rd);
    party__free(upper);
    return r;
}

static int shared_alarm_get(sqlite_room *s, int64_t *at_ms, int *retries) {
    reader *rd;
    int rc;
    *at_ms = 0;
    if (retries != NULL)
        *retries = 0;
    if (s->ws.alarm_set) {
        *at_ms = s->ws.alarm_at;
        if (retries != NULL)
            *retries = s->ws.alarm_retries;
        return 0;
    }
    if ((rd = reader_get(s->backend, s->shard)) == NULL)
        return PARTY_EIO;
    sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->alarm_get);
    if (rc == SQLITE_ROW) {
        *at_ms = sqlite3_column_int64(rd->alarm_get, 0);
        if (retries != NULL)
            *retries = sqlite3_column_int(rd->alarm_get, 1);
    }
    done_with(rd->alarm_get);
    reader_put(s->shard, rd);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_code_error(rc);
}

static int shared_alarm_set(sqlite_room *s, int64_t at_ms, int retries) {
    s->ws.alarm_set = 1;
    s->ws.alarm_at = at_ms > 0 ? at_ms : 0;
    s->ws.alarm_retries = at_ms > 0 ? retries : 0;
    return 0;
}

/* 1 if a schedule with this id is committed, 0 if not, or an error. */
static int shared_sched_committed(sqlite_room *s, const char *id) {
    reader *rd = reader_get(s->backend, s->shard);
    int rc;
    if (rd == NULL)
        return PARTY_EIO;
    sqlite3_bind_text(rd->sched_one, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(rd->sched_one, 2, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->sched_one);
    done_with(rd->sched_one);
    reader_put(s->shard, rd);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sqlite_code_error(rc);
}

static int shared_sched_add(sqlite_room *s, const party__schedule *sc) {
    party__pending_sched *p = party__pending_sched_find(&s->ws, sc->id);
    int committed;
    /* An id taken fails, as the own file's primary key does. */
    if (p != NULL && p->op != PARTY__PENDING_CANCEL)
        return PARTY_EIO;
    if (p == NULL && (committed = shared_sched_committed(s, sc->id)) != 0)
        return committed < 0 ? broke(s, committed) : PARTY_EIO;
    return broke(s, party__pending_sched_set(&s->ws, PARTY__PENDING_ADD, sc));
}

static int shared_sched_cancel(sqlite_room *s, const char *id) {
    party__pending_sched *p = party__pending_sched_find(&s->ws, id);
    party__schedule sc;
    int committed;
    if (p != NULL && p->op == PARTY__PENDING_CANCEL)
        return PARTY_ENOTFOUND;
    if (p == NULL && (committed = shared_sched_committed(s, id)) <= 0)
        return committed < 0 ? broke(s, committed) : PARTY_ENOTFOUND;
    /* A cancelled ADD stays a CANCEL: it may have replaced a committed
     * row that was cancelled before it. */
    memset(&sc, 0, sizeof(sc));
    sc.id = id;
    return broke(s, party__pending_sched_set(&s->ws, PARTY__PENDING_CANCEL, &sc));
}

static int shared_sched_set_next(sqlite_room *s, const char *id, int64_t next_ms) {
    party__pending_sched *p = party__pending_sched_find(&s->ws, id);
    party__schedule sc;
    int committed;
    if (p != NULL) {
        if (p->op != PARTY__PENDING_CANCEL)
            p->s.next_ms = next_ms;
        return 0;
    }
    if ((committed = shared_sched_committed(s, id)) <= 0)
        return broke(s, committed); /* none: nothing to update, as an UPDATE of no row */
    memset(&sc, 0, sizeof(sc));
    sc.id = id;
    sc.next_ms = next_ms;
    return broke(s, party__pending_sched_set(&s->ws, PARTY__PENDING_NEXT, &sc));
}

/* The schedule of the row stmt is on (its columns: id, name, payload,
 * kind, interval_ms, cron, next_ms), valid until the statement moves. */
static int sched_from_row(sqlite3_stmt *stmt, party__schedule *sc) {
    sc->id = (const char *)sqlite3_column_text(stmt, 0);
    sc->name = (const char *)sqlite3_column_text(stmt, 1);
    sc->payload = sqlite3_column_blob(stmt, 2);
    sc->len = (size_t)sqlite3_column_bytes(stmt, 2);
    sc->kind = sqlite3_column_int(stmt, 3);
    sc->interval_ms = sqlite3_column_int64(stmt, 4);
    sc->cron = (const char *)sqlite3_column_text(stmt, 5);
    sc->next_ms = sqlite3_column_int64(stmt, 6);
    return sc->id == NULL || sc->name == NULL ? PARTY_ENOMEM : 0;
}

/* One schedule of the merged view: committed (p NULL: id is a copy) or
 * pending (p). */
typedef struct sched_entry {
    int64_t next_ms;
    char *id;
    const party__pending_sched *p;
} sched_entry;

static int sched_entry_cmp(const void *a_, const void *b_) {
    const sched_entry *a = a_, *b = b_;
    if (a->next_ms != b->next_ms)
        return a->next_ms < b->next_ms ? -1 : 1;
    return strcmp(a->p != NULL ? a->p->s.id : a->id, b->p != NULL ? b->p->s.id : b->id);
}

/* The room's schedules due by until, committed ones overlaid with the
 * pending changes, earliest first then by id, into *out (*n of them;
 * free with sched_entries_free). */
static int sched_merge(sqlite_room *s, reader *rd, int64_t until, sched_entry **out, size_t *n) {
    sched_entry *v = NULL;
    size_t len = 0, cap = 0, i;
    sqlite3_stmt *stmt = rd->sched_due;
    int r = 0, rc;

    sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, INT64_MAX);
    while (r == 0) {
        const party__pending_sched *p;
        const char *id;
        int64_t next;
        int take;
        rc = sqlite3_step(stmt);
        if (rc != SQLITE_ROW) {
            r = rc == SQLITE_DONE ? 0 : sqlite_code_error(rc);
            break;
        }
        if ((id = (const char *)sqlite3_column_text(stmt, 0)) == NULL) {
            r = PARTY_ENOMEM;
            break;
        }
        p = party__pending_sched_find(&s->ws, id);
        /* Cancelled, or replaced by a pending ADD (listed below). */
        take = p == NULL || p->op == PARTY__PENDING_NEXT;
        next = p != NULL ? p->s.next_ms : sqlite3_column_int64(stmt, 6);
        if (!take || next > until)
            continue;
        if (len == cap) {
            size_t c = cap > 0 ? cap * 2 : 8;
            sched_entry *grown = party__realloc(v, c * sizeof(*v));
            if (grown == NULL) {
                r = PARTY_ENOMEM;
                break;
            }
            v = grown;
            cap = c;
        }
        v[len].next_ms = next;
        v[len].p = NULL;
        if ((v[len].id = party__strdup(id)) == NULL) {
            r = PARTY_ENOMEM;
            break;
        }
        len++;
    }
    done_with(stmt);
    for (i = 0; r == 0 && i < s->ws.n_scheds; i++) {
        const party__pending_sched *p = &s->ws.scheds[i];
        if (p->op != PARTY__PENDING_ADD || p->s.next_ms > until)
            continue;
        if (len == cap) {
            size_t c = cap > 0 ? cap * 2 : 8;
            sched_entry *grown = party__realloc(v, c * sizeof(*v));
            if (grown == NULL) {
                r = PARTY_ENOMEM;
                break;
            }
            v = grown;
            cap = c;
        }
        v[len].next_ms = p->s.next_ms;
        v[len].id = NULL;
        v[len].p = p;
        len++;
    }
    if (r != 0) {
        for (i = 0; i < len; i++)
            party__free(v[i].id);
        party__free(v);
        return r;
    }
    if (len > 1)
        qsort(v, len, sizeof(*v), sched_entry_cmp);
    *out = v;
    *n = len;
    return 0;
}

static void sched_entries_free(sched_entry *v, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        party__free(v[i].id);
    party__free(v);
}

static int shared_sched_earliest(sqlite_room *s, int64_t *next_ms) {
    reader *rd = reader_get(s->backend, s->shard);
    sched_entry *v;
    size_t n;
    int r = 0, rc;

    *next_ms = 0;
    if (rd == NULL)
        return PARTY_EIO;
    if (s->ws.n_scheds == 0) {
        sqlite3_bind_text(rd->sched_min, 1, s->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->sched_min);
        if (rc == SQLITE_ROW && sqlite3_column_type(rd->sched_min, 0) != SQLITE_NULL)
            *next_ms = sqlite3_column_int64(rd->sched_min, 0);
        r = rc == SQLITE_ROW ? 0 : sqlite_code_error(rc);
        done_with(rd->sched_min);
    } else if ((r = sched_merge(s, rd, INT64_MAX, &v, &n)) == 0) {
        if (n > 0)
            *next_ms = v[0].next_ms;
        sched_entries_free(v, n);
    }
    reader_put(s->shard, rd);
    return r;
}

static int shared_sched_each(sqlite_room *s, int64_t until, party__sched_fn fn, void *arg) {
    reader *rd = reader_get(s->backend, s->shard);
    party__schedule sc;
    sched_entry *v = NULL;
    size_t n = 0, i;
    int r = 0, rc;

    if (rd == NULL)
        return PARTY_EIO;
    if (s->ws.n_scheds == 0) {
        /* Nothing pending: the rows as they come. */
        sqlite3_bind_text(rd->sched_due, 1, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(rd->sched_due, 2, until);
        while ((rc = sqlite3_step(rd->sched_due)) == SQLITE_ROW) {
            if ((r = sched_from_row(rd->sched_due, &sc)) != 0 || (r = fn(&sc, arg)) != 0)
                break;
        }
        if (r == 0 && rc != SQLITE_DONE)
            r = sqlite_code_error(rc);
        done_with(rd->sched_due);
        reader_put(s->shard, rd);
        return r;
    }
    if ((r = sched_merge(s, rd, until, &v, &n)) != 0) {
        reader_put(s->shard, rd);
        return r;
    }
    for (i = 0; i < n && r == 0; i++) {
        if (v[i].p != NULL) {
            r = fn(&v[i].p->s, arg);
            continue;
        }
        sqlite3_bind_text(rd->sched_one, 1, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(rd->sched_one, 2, v[i].id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->sched_one);
        if (rc == SQLITE_ROW && (r = sched_from_row(rd->sched_one, &sc)) == 0) {
            sc.next_ms = v[i].next_ms; /* a pending NEXT's */
            r = fn(&sc, arg);
        } else if (rc != SQLITE_ROW) {
            r = rc == SQLITE_DONE ? PARTY_EIO : sqlite_code_error(rc);
        }
        done_with(rd->sched_one);
    }
    sched_entries_free(v, n);
    reader_put(s->shard, rd);
    return r;
}

/* ---- the record ops: two tables ----
 *
 * A room store's ops are the own-file table or the shared one: load
 * chooses by where the room's records are, and room_file_open switches a
 * shared room to the own-file table once its records moved. Both share
 * the backend's ops, wrote and rollback. */

static int own_op_kv_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_get(s, s->kv_get, 1, key, val, len);
}

static int own_op_kv_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_put(s, s->kv_put, key, val, len, 0);
}

static int own_op_kv_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_delete(s, s->kv_delete, key);
}

static int own_op_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_list(s, "_party_kv", prefix, fn, arg);
}

static int own_op_meta_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    /* Outside the batch's transaction, as the runtime reads its records
     * between batches too (after a failed commit). */
    return own_ready(s) != 0 ? PARTY_EIO : pairs_get(s, s->meta_get, 0, key, val, len);
}

static int own_op_meta_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_put(s, s->meta_put, key, val, len, 1);
}

static int own_op_meta_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *del = NULL;
    int r;
    if (own_ready(s) != 0)
        return PARTY_EIO;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM _party_meta WHERE key = ?1", -1, &del, NULL) !=
        SQLITE_OK)
        return PARTY_EIO;
    r = pairs_delete(s, del, key);
    sqlite3_finalize(del);
    return r;
}

static int own_op_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    sqlite_room *s = (sqlite_room *)rs;
    return own_ready(s) != 0 ? PARTY_EIO : pairs_list(s, "_party_meta", prefix, fn, arg);
}

static int own_op_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_alarm_get(rs, at_ms, retries);
}

static int own_op_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_alarm_set(rs, at_ms, retries);
}

static int own_op_sched_add(party__room_store *rs, const party__schedule *sc) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_add(rs, sc);
}

static int own_op_sched_cancel(party__room_store *rs, const char *id) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_cancel(rs, id);
}

static int own_op_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_set_next(rs, id, next_ms);
}

static int own_op_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_earliest(rs, next_ms);
}

static int own_op_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn, void *arg) {
    return own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_each(rs, until, fn, arg);
}

static int shared_op_kv_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    return shared_get((sqlite_room *)rs, 0, key, val, len);
}

static int shared_op_kv_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    return shared_put((sqlite_room *)rs, 0, key, val, len);
}

static int shared_op_kv_delete(party__room_store *rs, const char *key) {
    return shared_delete((sqlite_room *)rs, 0, key);
}

static int shared_op_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                             void *arg) {
    return shared_list((sqlite_room *)rs, 0, prefix, fn, arg);
}

static int shared_op_meta_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    return shared_get((sqlite_room *)rs, 1, key, val, len);
}

static int shared_op_meta_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    return shared_put((sqlite_room *)rs, 1, key, val, len);
}

static int shared_op_meta_delete(party__room_store *rs, const char *key) {
    return shared_delete((sqlite_room *)rs, 1, key);
}

static int shared_op_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                               void *arg) {
    return shared_list((sqlite_room *)rs, 1, prefix, fn, arg);
}

static int shared_op_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    return shared_alarm_get((sqlite_room *)rs, at_ms, retries);
}

static int shared_op_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    return shared_alarm_set((sqlite_room *)rs, at_ms, retries);
}

static int shared_op_sched_add(party__room_store *rs, const party__schedule *sc) {
    return shared_sched_add((sqlite_room *)rs, sc);
}

static int shared_op_sched_cancel(party__room_store *rs, const char *id) {
    return shared_sched_cancel((sqlite_room *)rs, id);
}

static int shared_op_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
    return shared_sched_set_next((sqlite_room *)rs, id, next_ms);
}

static int shared_op_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    return shared_sched_earliest((sqlite_room *)rs, next_ms);
}

static int shared_op_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn,
                                void *arg) {
    return shared_sched_each((sqlite_room *)rs, until, fn, arg);
}

static int room_wrote(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    return s->db != NULL ? own_wrote(rs) : s->broken || !party__write_set_empty(&s->ws);
}

static void room_rollback(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (s->db != NULL)
        own_rollback(rs);
    party__write_set_clear(&s->ws);
    s->broken = 0;
}

/* ---- loading and unloading a room ---- */

/* Closes an own-file room's file (its open batch lost). */
static void own_close(sqlite_room *s) {
    sqlite3_stmt **stmts[] = {&s->begin,  &s->commit,    &s->rollback, &s->kv_put,
                              &s->kv_get, &s->kv_delete, &s->meta_put, &s->meta_get};
    size_t i;
    if (s->db != NULL && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        sqlite3_finalize(*stmts[i]);
        *stmts[i] = NULL;
    }
    sqlite3_close_v2(s->db);
    s->db = NULL;
    s->begun = s->lost = s->wrote = 0;
}

/* Opens the room's own file at path (made if new, its format checked):
 * 0, or PARTY_EIO with why said (then s->db is NULL). */
static int own_open(sqlite_room *s, const char *path, char *why, size_t why_len) {
    sqlite_backend *be = s->backend;
    if (connection_open(path, 1, be->durability_full, 256, &s->db) != SQLITE_OK)
        goto fail;
    if (format_check(s->db, room_steps, "", path, why, why_len) != 0) {
        own_close(s);
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
    return 0;
fail:
    describe_open_failure(s, path, why, why_len);
    own_close(s);
    return PARTY_EIO;
}

/* ---- the own-file handle cache ---- */

static size_t handle_bucket(const sqlite_backend *be, const char *id) {
    uint32_t h = 2166136261u;
    const unsigned char *p;
    for (p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h & (be->handle_buckets_cap - 1);
}

static own_handle *handle_find(const sqlite_backend *be, const char *id) {
    own_handle *h;
    for (h = be->handle_buckets[handle_bucket(be, id)]; h != NULL; h = h->hash_next)
        if (strcmp(h->id, id) == 0)
            return h;
    return NULL;
}

static void handle_unhash(sqlite_backend *be, own_handle *h) {
    own_handle **p = &be->handle_buckets[handle_bucket(be, h->id)];
    while (*p != h)
        p = &(*p)->hash_next;
    *p = h->hash_next;
    be->n_handles--;
}

static void lru_remove(sqlite_backend *be, own_handle *h) {
    if (h->lru_prev != NULL)
        h->lru_prev->lru_next = h->lru_next;
    else
        be->lru_head = h->lru_next;
    if (h->lru_next != NULL)
        h->lru_next->lru_prev = h->lru_prev;
    else
        be->lru_tail = h->lru_prev;
    h->lru_prev = h->lru_next = NULL;
}

static void lru_push(sqlite_backend *be, own_handle *h) {
    h->lru_prev = NULL;
    h->lru_next = be->lru_head;
    if (be->lru_head != NULL)
        be->lru_head->lru_prev = h;
    else
        be->lru_tail = h;
    be->lru_head = h;
}

/* Closes a handle (no room uses it): its connection holds no open
 * transaction, so nothing of any room is lost. */
static void handle_close(own_handle *h) {
    sqlite3_stmt *stmts[] = {h->begin,  h->commit,    h->rollback, h->kv_put,
                             h->kv_get, h->kv_delete, h->meta_put, h->meta_get};
    size_t i;
    if (h->db != NULL && !sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        sqlite3_finalize(stmts[i]);
    sqlite3_close_v2(h->db);
    party__free(h);
}

/* Under handles_mutex: the idle handles past the bound leave the cache,
 * least recently used first; returned chained by lru_next, to be closed
 * outside the lock. */
static own_handle *handles_trim(sqlite_backend *be) {
    own_handle *victims = NULL, *h;
    while (be->n_handles > be->max_handles && (h = be->lru_tail) != NULL) {
        lru_remove(be, h);
        handle_unhash(be, h);
        h->lru_next = victims;
        victims = h;
    }
    return victims;
}

static void handles_close(own_handle *victims) {
    while (victims != NULL) {
        own_handle *next = victims->lru_next;
        handle_close(victims);
        victims = next;
    }
}

/* The room's handle's connection and statements, as the room's. */
static void own_attach(sqlite_room *s, own_handle *h) {
    s->h = h;
    s->db = h->db;
    s->begin = h->begin;
    s->commit = h->commit;
    s->rollback = h->rollback;
    s->kv_put = h->kv_put;
    s->kv_get = h->kv_get;
    s->kv_delete = h->kv_delete;
    s->meta_put = h->meta_put;
    s->meta_get = h->meta_get;
}

static void own_detach(sqlite_room *s) {
    s->h = NULL;
    s->db = NULL;
    s->begin = s->commit = s->rollback = NULL;
    s->kv_put = s->kv_get = s->kv_delete = s->meta_put = s->meta_get = NULL;
    s->begun = s->lost = s->wrote = 0;
}

/* The room's handle, from the cache or opened (the file at path): 0, or
 * PARTY_EIO / PARTY_ENOMEM with why said. */
static int own_checkout(sqlite_room *s, const char *path, char *why, size_t why_len) {
    sqlite_backend *be = s->backend;
    own_handle *h, *victims;
    struct stat st;

    if (s->h != NULL)
        return 0;
    uv_mutex_lock(&be->handles_mutex);
    h = handle_find(be, s->id);
    if (h != NULL && !h->in_use) {
        lru_remove(be, h);
        h->in_use = 1;
        uv_mutex_unlock(&be->handles_mutex);
        own_attach(s, h);
        return 0;
    }
    uv_mutex_unlock(&be->handles_mutex);
    if (h != NULL) {
        /* A room is loaded once: its handle is in use by no one else. */
        snprintf(why, why_len, "%s: the room's file is in use", path);
        return PARTY_EIO;
    }
    if (own_open(s, path, why, why_len) != 0)
        return PARTY_EIO;
    h = party__calloc(1, sizeof(*h));
    if (h == NULL) {
        own_close(s);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    snprintf(h->id, sizeof(h->id), "%s", s->id);
    if (s->backend->data_dir != NULL && stat(path, &st) == 0) {
        h->dev = st.st_dev;
        h->ino = st.st_ino;
    }
    h->in_use = 1;
    h->db = s->db;
    h->begin = s->begin;
    h->commit = s->commit;
    h->rollback = s->rollback;
    h->kv_put = s->kv_put;
    h->kv_get = s->kv_get;
    h->kv_delete = s->kv_delete;
    h->meta_put = s->meta_put;
    h->meta_get = s->meta_get;
    own_attach(s, h);
    uv_mutex_lock(&be->handles_mutex);
    h->hash_next = be->handle_buckets[handle_bucket(be, h->id)];
    be->handle_buckets[handle_bucket(be, h->id)] = h;
    be->n_handles++;
    victims = handles_trim(be);
    uv_mutex_unlock(&be->handles_mutex);
    handles_close(victims);
    return 0;
}

/* The file of an own-file room (made if new). */
static int own_path(const sqlite_room *s, char *path, size_t cap) {
    if (s->backend->data_dir == NULL) {
        snprintf(path, cap, ":memory:");
        return 0;
    }
    return party__store_path(s->backend->data_dir, s->id, path, cap);
}

/* An own-file room's record op needs its handle: 0 or PARTY_EIO. */
static int own_ready(sqlite_room *s) {
    char path[4096], why[512];
    if (s->h != NULL)
        return 0;
    if (own_path(s, path, sizeof(path)) != 0)
        return PARTY_EIO;
    return own_checkout(s, path, why, sizeof(why)) == 0 ? 0 : PARTY_EIO;
}

/* The batch is over (committed or rolled back): the handle goes back to
 * the cache, most recently used. */
static void own_checkin(sqlite_room *s) {
    sqlite_backend *be = s->backend;
    own_handle *h = s->h, *victims;
    if (h == NULL)
        return;
    if (!sqlite3_get_autocommit(h->db))
        (void)step_done(h->rollback);
    own_detach(s);
    uv_mutex_lock(&be->handles_mutex);
    h->in_use = 0;
    lru_push(be, h);
    victims = handles_trim(be);
    uv_mutex_unlock(&be->handles_mutex);
    handles_close(victims);
}

/* The room's handle leaves the cache and closes (a move that failed, an
 * in-memory room unloaded); without a room, the idle handle the cache
 * holds for id, if any. */
static void own_forget(sqlite_backend *be, sqlite_room *s, const char *id) {
    own_handle *h;
    uv_mutex_lock(&be->handles_mutex);
    if (s != NULL && s->h != NULL) {
        h = s->h;
    } else if ((h = handle_find(be, id)) != NULL && h->in_use) {
        h = NULL; /* a loaded room's: not ours to close */
    } else if (h != NULL) {
        lru_remove(be, h);
    }
    if (h != NULL)
        handle_unhash(be, h);
    uv_mutex_unlock(&be->handles_mutex);
    if (h == NULL)
        return;
    if (s != NULL && s->h == h)
        own_detach(s);
    handle_close(h);
}

/* Before a load: an idle handle of the room whose file is not the one at
 * path any more (removed or replaced behind partyd's back) is closed, so
 * that the load opens what is there. */
static void own_forget_if_replaced(sqlite_backend *be, const char *id, const char *path) {
    struct stat st;
    own_handle *h;
    int there, stale = 0;
    if (be->data_dir == NULL)
        return;
    there = stat(path, &st) == 0;
    uv_mutex_lock(&be->handles_mutex);
    h = handle_find(be, id);
    if (h != NULL && !h->in_use)
        stale = !there || st.st_dev != h->dev || st.st_ino != h->ino;
    uv_mutex_unlock(&be->handles_mutex);
    if (stale)
        own_forget(be, NULL, id);
}

static void handles_free(sqlite_backend *be) {
    size_t i;
    for (i = 0; i < be->handle_buckets_cap; i++) {
        own_handle *h = be->handle_buckets[i], *next;
        for (; h != NULL; h = next) {
            next = h->hash_next;
            handle_close(h);
        }
    }
    party__free(be->handle_buckets);
    be->handle_buckets = NULL;
    be->handle_buckets_cap = 0;
}

/* Makes <data>/rooms/<id[0..2]> and puts the own file's path in path. */
static int own_dir(sqlite_backend *be, const char *room_id, char *dir, size_t dir_len, char *path,
                   size_t path_len, char *why, size_t why_len) {
    snprintf(dir, dir_len, "%s/rooms", be->data_dir);
    if (make_dir(be->data_dir) != 0 || make_dir(dir) != 0) {
        snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
        return PARTY_EIO;
    }
    snprintf(dir, dir_len, "%s/rooms/%.2s", be->data_dir, room_id);
    if (make_dir(dir) != 0 || party__store_path(be->data_dir, room_id, path, path_len) != 0) {
        snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
        return PARTY_EIO;
    }
    return 0;
}

/* Removes an own file that a move did not finish: its WAL first (a WAL
 * left alone would be replayed into the next file of that name), the file
 * itself last, so that where the file is gone nothing of it is left. 0,
 * or -1 with errno. */
static int own_remove(const char *path) {
    static const char *const suffixes[] = {"-wal", "-shm", "-journal", ""};
    char name[4200];
    size_t i;
    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", path, suffixes[i]);
        if (unlink(name) != 0 && errno != ENOENT)
            return -1;
    }
    return 0;
}

/* Where the room's records are, by its shard's _party_rooms: *own -1 (no
 * row), 0 (the shard) or 1 (its own file); and, unless 1, what its
 * wake-ups need from the shard. One read transaction for all of it: a
 * load of a shared room takes the shard's read lock once. 0 or an
 * error. */
static int room_place(sqlite_room *s, int *own, party__room_loaded *loaded) {
    reader *rd = reader_get(s->backend, s->shard);
    int rc, r = 0;
    *own = -1;
    if (rd == NULL)
        return PARTY_EIO;
    if (step_done(rd->begin) != 0) {
        reader_put(s->shard, rd);
        return PARTY_EIO;
    }
    sqlite3_bind_text(rd->room_get, 1, s->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->room_get);
    if (rc == SQLITE_ROW)
        *own = sqlite3_column_int(rd->room_get, 0) != 0;
    done_with(rd->room_get);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = sqlite_code_error(rc);
    if (r == 0 && *own != 1) {
        sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->alarm_get);
        if (rc == SQLITE_ROW) {
            loaded->alarm_at = sqlite3_column_int64(rd->alarm_get, 0);
            loaded->alarm_retries = sqlite3_column_int(rd->alarm_get, 1);
        }
        done_with(rd->alarm_get);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            r = sqlite_code_error(rc);
    }
    if (r == 0 && *own != 1) {
        sqlite3_bind_text(rd->sched_min, 1, s->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->sched_min);
        if (rc == SQLITE_ROW && sqlite3_column_type(rd->sched_min, 0) != SQLITE_NULL)
            loaded->sched_next = sqlite3_column_int64(rd->sched_min, 0);
        done_with(rd->sched_min);
        if (rc != SQLITE_ROW)
            r = sqlite_code_error(rc);
    }
    if (step_done(rd->end) != 0 && r == 0)
        r = PARTY_EIO;
    reader_put(s->shard, rd);
    return r;
}

/* An own-file room's handle stays in the cache (its next load finds it
 * open) unless the room lives in memory only: then its file goes, as
 * the room's memory does. */
static void sqlite_unload(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (s == NULL)
        return;
    if (s->own && s->backend->data_dir == NULL) {
        (void)own_ready(s);
        own_forget(s->backend, s, s->id);
    } else {
        own_checkin(s);
    }
    party__write_set_clear(&s->ws);
    party__free(s);
}

static int sqlite_load(party__backend *be_, const char *room_id, const char *party,
                       party__room_store **out, party__room_loaded *loaded, char *why,
                       size_t why_len) {
    sqlite_backend *be = (sqlite_backend *)be_;
    char path[4096], dir[4096];
    sqlite_room *s;
    struct stat st;
    int r, own;

    *out = NULL;
    memset(loaded, 0, sizeof(*loaded));
    s = party__calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    s->base.ops = &shared_ops;
    s->backend = be;
    s->party = party;
    snprintf(s->id, sizeof(s->id), "%s", room_id);
    s->shard = shard_of(be, room_id);
    snprintf(path, sizeof(path), ":memory:");
    if (be->data_dir != NULL && party__store_path(be->data_dir, room_id, path, sizeof(path)) != 0) {
        snprintf(why, why_len, "room %s: path too long", room_id);
        party__free(s);
        return PARTY_EINVAL;
    }
    if ((r = room_place(s, &own, loaded)) != 0) {
        /* A room that cannot read its wake time stays unloaded: loaded
         * without it, its next commit would file "no wake time" and lose
         * its alarm. */
        snprintf(why, why_len,
                 "%s: room %s: cannot read its alarm and schedules (or where its records are): %s",
                 s->shard->path, room_id, party_strerror(r));
        memset(loaded, 0, sizeof(*loaded));
        party__free(s);
        return r;
    }
    if (be->data_dir != NULL && own == 0 && (stat(path, &st) == 0 || errno != ENOENT) &&
        (own_forget(be, NULL, room_id), own_remove(path) != 0)) {
        /* An own file its shard does not know: a move cut short. */
        snprintf(why, why_len, "%s: cannot remove what a move to it left: %s", path,
                 strerror(errno));
        party__free(s);
        return PARTY_EIO;
    }
    /* No row: a new room, or the file of an earlier partyd (whatever is at
     * its path: what is not a file says so when opened). */
    if (own < 0 && be->data_dir != NULL)
        own = stat(path, &st) == 0 || errno != ENOENT;
    if (own == 1) {
        own_forget_if_replaced(be, room_id, path);
        if ((be->data_dir != NULL &&
             own_dir(be, room_id, dir, sizeof(dir), path, sizeof(path), why, why_len) != 0) ||
            (r = own_checkout(s, path, why, why_len)) != 0) {
            party__free(s);
            return r != 0 ? r : PARTY_EIO;
        }
        s->own = 1;
        s->base.ops = &own_ops;
        /* A handle from the cache: its file's version is checked again
         * (a fresh one was checked as it opened; this costs one read).
         * If that fails, the file changed under it: opened afresh. */
        if (format_check(s->db, room_steps, "", path, why, why_len) != 0) {
            own_forget(be, s, room_id);
            if (own_checkout(s, path, why, why_len) != 0) {
                party__free(s);
                return PARTY_EIO;
            }
        }
    }
    if (!s->own) {
        /* A shared room: room_place read its wake time. */
        *out = &s->base;
        return 0;
    }
    /* A room that cannot read its wake time stays unloaded: loaded without
     * it, its next commit would file "no wake time" and lose its alarm. */
    memset(loaded, 0, sizeof(*loaded));
    r = own_op_alarm_get(&s->base, &loaded->alarm_at, &loaded->alarm_retries);
    if (r == 0)
        r = own_op_sched_earliest(&s->base, &loaded->sched_next);
    if (r != 0) {
        snprintf(why, why_len, "%s: cannot read its alarm and schedules: %s", path,
                 sqlite3_errstr(sqlite3_errcode(s->db)));
        sqlite_unload(&s->base);
        memset(loaded, 0, sizeof(*loaded));
        return r == PARTY_ENOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    /* Loaded, the room holds no handle until its first batch (an
     * in-memory room keeps its own: closed, its file would be gone). */
    if (be->data_dir != NULL)
        own_checkin(s);
    *out = &s->base;
    return 0;
}

/* ---- moving a shared room's records into its own file ---- */

/* Copies the room's committed rows from its shard into its own file, and
 * commits them there. */
static int move_copy(sqlite_room *s) {
    reader *rd = reader_get(s->backend, s->shard);
    party__schedule sc;
    int r, rc = SQLITE_DONE;

    if (rd == NULL)
        return PARTY_EIO;
    r = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : PARTY_EIO;
    sqlite3_bind_text(rd->kv_list, 1, s->id, -1, SQLITE_STATIC);
    while (r == 0 && (rc = sqlite3_step(rd->kv_list)) == SQLITE_ROW) {
        sqlite3_bind_value(s->kv_put, 1, sqlite3_column_value(rd->kv_list, 0));
        sqlite3_bind_value(s->kv_put, 2, sqlite3_column_value(rd->kv_list, 1));
        r = step_done(s->kv_put);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = sqlite_code_error(rc);
    done_with(rd->kv_list);
    sqlite3_bind_text(rd->meta_list, 1, s->id, -1, SQLITE_STATIC);
    while (r == 0 && (rc = sqlite3_step(rd->meta_list)) == SQLITE_ROW) {
        sqlite3_bind_value(s->meta_put, 1, sqlite3_column_value(rd->meta_list, 0));
        sqlite3_bind_value(s->meta_put, 2, sqlite3_column_value(rd->meta_list, 1));
        r = step_done(s->meta_put);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = sqlite_code_error(rc);
    done_with(rd->meta_list);
    sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
    if (r == 0 && (rc = sqlite3_step(rd->alarm_get)) == SQLITE_ROW)
        r = own_alarm_set(&s->base, sqlite3_column_int64(rd->alarm_get, 0),
                          sqlite3_column_int(rd->alarm_get, 1));
    else if (r == 0 && rc != SQLITE_DONE)
        r = sqlite_code_error(rc);
    done_with(rd->alarm_get);
    sqlite3_bind_text(rd->sched_due, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(rd->sched_due, 2, INT64_MAX);
    while (r == 0 && (rc = sqlite3_step(rd->sched_due)) == SQLITE_ROW) {
        r = sched_from_row(rd->sched_due, &sc);
        if (r == 0)
            r = own_sched_add(&s->base, &sc);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = sqlite_code_error(rc);
    done_with(rd->sched_due);
    reader_put(s->shard, rd);
    /* own_alarm_set and own_sched_add ran in this transaction: it is not
     * the batch's. */
    s->begun = s->lost = s->wrote = 0;
    if (r == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        r = PARTY_EIO;
    if (r != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* The commit point of a move: the shard says the room's records are in
 * its own file, and holds none of them any more. */
static int move_flip(sqlite_room *s) {
    shard *sh = s->shard;
    sqlite3_stmt *clears[] = {sh->kv_clear, sh->meta_clear, sh->alarm_delete, sh->sched_clear};
    size_t i;
    int r;

    uv_mutex_lock(&sh->write_mutex);
    r = step_done(sh->begin);
    sqlite3_bind_text(sh->room_own, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(sh->room_own, 2, s->party, -1, SQLITE_STATIC);
    if (r == 0)
        r = step_done(sh->room_own);
    else
        done_with(sh->room_own);
    for (i = 0; i < sizeof(clears) / sizeof(clears[0]); i++) {
        sqlite3_bind_text(clears[i], 1, s->id, -1, SQLITE_STATIC);
        if (r == 0)
            r = step_done(clears[i]);
        else
            done_with(clears[i]);
    }
    if (r == 0)
        r = step_done(sh->commit);
    if (r != 0 && !sqlite3_get_autocommit(sh->writer))
        (void)step_done(sh->rollback);
    uv_mutex_unlock(&sh->write_mutex);
    return r;
}

/* The open batch goes on in the own file: its write set, written in the
 * file's transaction. */
static int move_write_set(sqlite_room *s) {
    party__write_set *ws = &s->ws;
    sqlite3_stmt *meta_delete = NULL;
    size_t i;
    int r = room_begin(s);

    for (i = 0; r == 0 && i < ws->kv.len; i++) {
        const party__pending_pair *p = &ws->kv.items[i];
        r = p->deleted ? pairs_delete(s, s->kv_delete, p->key)
                       : pairs_put(s, s->kv_put, p->key, p->val, p->len, 0);
        if (r == PARTY_ENOTFOUND)
            r = 0;
    }
    if (r == 0 && ws->meta.len > 0 &&
        sqlite3_prepare_v2(s->db, "DELETE FROM _party_meta WHERE key = ?1", -1, &meta_delete,
                           NULL) != SQLITE_OK)
        r = PARTY_EIO;
    for (i = 0; r == 0 && i < ws->meta.len; i++) {
        const party__pending_pair *p = &ws->meta.items[i];
        r = p->deleted ? pairs_delete(s, meta_delete, p->key)
                       : pairs_put(s, s->meta_put, p->key, p->val, p->len, 1);
        if (r == PARTY_ENOTFOUND)
            r = 0;
    }
    sqlite3_finalize(meta_delete);
    if (r == 0 && ws->alarm_set)
        r = own_alarm_set(&s->base, ws->alarm_at, ws->alarm_retries);
    for (i = 0; r == 0 && i < ws->n_scheds; i++) {
        const party__pending_sched *p = &ws->scheds[i];
        if (p->op != PARTY__PENDING_NEXT) {
            r = own_sched_cancel(&s->base, p->s.id);
            if (r == PARTY_ENOTFOUND)
                r = 0;
        }
        if (r == 0 && p->op == PARTY__PENDING_ADD)
            r = own_sched_add(&s->base, &p->s);
        else if (r == 0 && p->op == PARTY__PENDING_NEXT)
            r = own_sched_set_next(&s->base, p->s.id, p->s.next_ms);
    }
    if (!party__write_set_empty(ws))
        s->wrote = 1;
    party__write_set_clear(ws);
    return r;
}

/* Moves a shared room's records into its own file, in one crash-safe
 * step: the own file is written and committed (and its name made
 * durable) first; the commit point is the shard's transaction that marks
 * the room own and deletes its rows there. Cut short before it, the own
 * file is a leftover that load removes (the shard still says shared). A
 * room its shard has no row for (a new one) only makes its file. */
static int room_move(sqlite_room *s) {
    sqlite_backend *be = s->backend;
    char path[4096], dir[4096], why[512];
    party__room_loaded unused;
    int r, own;

    /* A room with no row in its shard has no records there: its own file
     * is all it needs (load takes a file with no row for the room's), and
     * what it holds is made durable by the batch's commit. */
    if ((r = room_place(s, &own, &unused)) != 0)
        return r;
    snprintf(path, sizeof(path), ":memory:");
    /* A handle the cache may hold for a file of this name is stale. */
    own_forget(be, NULL, s->id);
    if (be->data_dir != NULL) {
        if (own_dir(be, s->id, dir, sizeof(dir), path, sizeof(path), why, sizeof(why)) != 0 ||
            own_remove(path) != 0)
            return PARTY_EIO;
    }
    if (own_checkout(s, path, why, sizeof(why)) != 0)
        return PARTY_EIO;
    r = own < 0 ? 0 : move_copy(s);
    if (r == 0 && own >= 0 && be->data_dir != NULL && be->durability_full) {
        if (sync_dir(dir) != 0)
            r = PARTY_EIO;
        snprintf(dir, sizeof(dir), "%s/rooms", be->data_dir);
        if (r == 0 && sync_dir(dir) != 0)
            r = PARTY_EIO;
    }
    if (r == 0 && own >= 0)
        r = move_flip(s);
    if (r != 0) {
        own_forget(be, s, s->id);
        if (be->data_dir != NULL)
            (void)own_remove(path);
        return r;
    }
    s->own = 1;
    s->base.ops = &own_ops;
    r = move_write_set(s);
    if (r != 0 || s->broken) {
        /* The move holds; the batch cannot: it fails at its commit. */
        s->begun = s->lost = 1;
        s->broken = 0;
    }
    return r;
}

static struct sqlite3 *own_room_file_open(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (own_ready(s) != 0)
        return NULL;
    return room_begin(s) == 0 ? s->db : NULL;
}

/* A shared room's first party_room_db(): its records move, and its store
 * takes the own-file table. */
static struct sqlite3 *shared_room_file_open(party__room_store *rs) {
    if (room_move((sqlite_room *)rs) != 0)
        return NULL;
    return own_room_file_open(rs);
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

/* Applies a shared room's write set with its shard's writer, inside the
 * shard's open transaction. */
static int write_set_apply(shard *sh, sqlite_room *s) {
    const party__write_set *ws = &s->ws;
    size_t i, k;
    int r;

    sqlite3_bind_text(sh->room_put, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(sh->room_put, 2, s->party, -1, SQLITE_STATIC);
    r = step_done(sh->room_put);
    for (k = 0; k < 2; k++) {
        const party__pending_pairs *pairs = k == 0 ? &ws->kv : &ws->meta;
        sqlite3_stmt *put = k == 0 ? sh->kv_put : sh->meta_put;
        sqlite3_stmt *del = k == 0 ? sh->kv_delete : sh->meta_delete;
        for (i = 0; r == 0 && i < pairs->len; i++) {
            const party__pending_pair *p = &pairs->items[i];
            sqlite3_stmt *stmt = p->deleted ? del : put;
            sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 2, p->key, -1, SQLITE_STATIC);
            /* The runtime's records are text (as in own files), the
             * user's values blobs. */
            if (!p->deleted && k == 1)
                sqlite3_bind_text64(stmt, 3, p->val, p->len, SQLITE_STATIC, SQLITE_UTF8);
            else if (!p->deleted)
                sqlite3_bind_blob64(stmt, 3, p->val, p->len, SQLITE_STATIC);
            r = step_done(stmt);
        }
    }
    if (r == 0 && ws->alarm_set) {
        sqlite3_stmt *stmt = ws->alarm_at > 0 ? sh->alarm_put : sh->alarm_delete;
        sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
        if (ws->alarm_at > 0) {
            sqlite3_bind_int64(stmt, 2, ws->alarm_at);
            sqlite3_bind_int(stmt, 3, ws->alarm_retries);
        }
        r = step_done(stmt);
    }
    for (i = 0; r == 0 && i < ws->n_scheds; i++) {
        const party__pending_sched *p = &ws->scheds[i];
        const party__schedule *sc = &p->s;
        sqlite3_stmt *stmt = p->op == PARTY__PENDING_ADD      ? sh->sched_put
                             : p->op == PARTY__PENDING_CANCEL ? sh->sched_delete
                                                              : sh->sched_next;
        sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, sc->id, -1, SQLITE_STATIC);
        if (p->op == PARTY__PENDING_ADD) {
            sqlite3_bind_text(stmt, 3, sc->name, -1, SQLITE_STATIC);
            sqlite3_bind_blob64(stmt, 4, sc->len > 0 ? sc->payload : "", sc->len, SQLITE_STATIC);
            sqlite3_bind_int(stmt, 5, sc->kind);
            sqlite3_bind_int64(stmt, 6, sc->interval_ms);
            if (sc->cron != NULL)
                sqlite3_bind_text(stmt, 7, sc->cron, -1, SQLITE_STATIC);
            sqlite3_bind_int64(stmt, 8, sc->next_ms);
        } else if (p->op == PARTY__PENDING_NEXT) {
            sqlite3_bind_int64(stmt, 3, sc->next_ms);
        }
        r = step_done(stmt);
    }
    return r;
}

/* 1 if rooms[i] is a shared room of sh with a batch to commit (and no
 * failure yet). */
static int shard_commits(const shard *sh, const party__commit *c, int result) {
    const sqlite_room *s = (const sqlite_room *)c->store;
    return result >= 0 && !s->own && s->shard == sh && !party__write_set_empty(&s->ws);
}

/* Commits the write sets of the shared rooms of sh among rooms: one
 * transaction (one sync), a savepoint per room, so that a room whose
 * records cannot be written fails alone. Every write set committed here
 * is empty after, whatever the result. */
static void shard_commit(shard *sh, const party__commit *rooms, size_t n, int *results) {
    size_t i;
    int r, any = 0;

    for (i = 0; i < n && !any; i++)
        any = shard_commits(sh, &rooms[i], results[i]);
    if (!any)
        return;
    uv_mutex_lock(&sh->write_mutex);
    r = step_done(sh->begin);
    for (i = 0; r == 0 && i < n; i++) {
        sqlite_room *s = (sqlite_room *)rooms[i].store;
        if (!shard_commits(sh, &rooms[i], results[i]))
            continue;
        if (step_done(sh->savepoint) != 0) {
            r = PARTY_EIO;
            break;
        }
        if (write_set_apply(sh, s) == 0 && step_done(sh->release) == 0)
            continue;
        results[i] = PARTY_EIO;
        if (step_done(sh->rollback_to) != 0 || step_done(sh->release) != 0)
            r = PARTY_EIO; /* the transaction is not what it was: all fail */
    }
    if (r == 0)
        r = step_done(sh->commit);
    if (r != 0 && !sqlite3_get_autocommit(sh->writer))
        (void)step_done(sh->rollback);
    uv_mutex_unlock(&sh->write_mutex);
    for (i = 0; i < n; i++) {
        sqlite_room *s = (sqlite_room *)rooms[i].store;
        /* The rooms taken above still hold their write sets (a room that
         * failed before, its store rolled back, holds none). */
        if (s->own || s->shard != sh || party__write_set_empty(&s->ws))
            continue;
        if (r != 0)
            results[i] = PARTY_EIO;
        party__write_set_clear(&s->ws);
    }
}

static void sqlite_commit_batch(party__backend *be_, const party__commit *rooms, size_t n,
                                int *results) {
    sqlite_backend *be = (sqlite_backend *)be_;
    int lower = 0, settle = 0, index_failed = 0;
    unsigned k;
    size_t i;

    for (i = 0; i < n; i++) {
        results[i] = 0;
        settle |= rooms[i].wake_changed;
        lower |= rooms[i].wake_changed && rooms[i].wake_ms > 0;
    }
    if (lower)
        index_failed = index_lower(be, rooms, n, results) != 0;
    /* An own-file room commits its own file: one commit each, and one
     * room's failure is its own. */
    for (i = 0; i < n; i++) {
        sqlite_room *s = (sqlite_room *)rooms[i].store;
        int r;
        if (index_failed && rooms[i].wake_changed && rooms[i].wake_ms > 0) {
            room_rollback(&s->base);
            results[i] = PARTY_EIO;
            continue;
        }
        if (!s->own && s->broken) {
            room_rollback(&s->base);
            results[i] = PARTY_EIO;
            continue;
        }
        if (!s->own)
            continue;
        r = own_commit(s);
        if (r != 0)
            results[i] = r;
    }
    /* Shared rooms: one transaction per shard for all of its rooms. */
    for (k = 0; k < be->n_shards; k++)
        shard_commit(&be->shards[k], rooms, n, results);
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

static const party__store_ops own_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .acquire = sqlite_acquire,
    .release = sqlite_release,
    .load = sqlite_load,
    .unload = sqlite_unload,
    .kv_get = own_op_kv_get,
    .kv_put = own_op_kv_put,
    .kv_delete = own_op_kv_delete,
    .kv_list = own_op_kv_list,
    .meta_get = own_op_meta_get,
    .meta_put = own_op_meta_put,
    .meta_delete = own_op_meta_delete,
    .meta_list = own_op_meta_list,
    .alarm_get = own_op_alarm_get,
    .alarm_set = own_op_alarm_set,
    .sched_add = own_op_sched_add,
    .sched_cancel = own_op_sched_cancel,
    .sched_set_next = own_op_sched_set_next,
    .sched_earliest = own_op_sched_earliest,
    .sched_each = own_op_sched_each,
    .room_file_open = own_room_file_open,
    .wrote = room_wrote,
    .rollback = room_rollback,
    .commit_batch = sqlite_commit_batch,
    .index_load = sqlite_index_load,
    .index_due = sqlite_index_due,
};

static const party__store_ops shared_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .acquire = sqlite_acquire,
    .release = sqlite_release,
    .load = sqlite_load,
    .unload = sqlite_unload,
    .kv_get = shared_op_kv_get,
    .kv_put = shared_op_kv_put,
    .kv_delete = shared_op_kv_delete,
    .kv_list = shared_op_kv_list,
    .meta_get = shared_op_meta_get,
    .meta_put = shared_op_meta_put,
    .meta_delete = shared_op_meta_delete,
    .meta_list = shared_op_meta_list,
    .alarm_get = shared_op_alarm_get,
    .alarm_set = shared_op_alarm_set,
    .sched_add = shared_op_sched_add,
    .sched_cancel = shared_op_sched_cancel,
    .sched_set_next = shared_op_sched_set_next,
    .sched_earliest = shared_op_sched_earliest,
    .sched_each = shared_op_sched_each,
    .room_file_open = shared_room_file_open,
    .wrote = room_wrote,
    .rollback = room_rollback,
    .commit_batch = sqlite_commit_batch,
    .index_load = sqlite_index_load,
    .index_due = sqlite_index_due,
};

const party__store_ops *party__store_sqlite_ops(void) {
    return &shared_ops;
}
