/* store_sqlite_db: the helpers every file of the SQLite backend uses:
 * format versions (each file's _party_format, its checks and migration
 * steps), opening a connection with partyd's settings, running prepared
 * statements, directories made durable. Knows no room and no shard. */
#include "store_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "utf8.h"

/* ---- format versions ---- */

#define FORMAT_TABLE                                                                               \
    "CREATE TABLE IF NOT EXISTS _party_format (k INTEGER PRIMARY KEY CHECK (k = 1),"               \
    " version INTEGER NOT NULL);"

/* party__sqlite_room_steps[v] brings an own file from version v to v + 1 (a new file
 * starts at 0: the steps make its tables). */
const char *const party__sqlite_room_steps[FORMAT_VERSION] = {
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

/* party__sqlite_index_steps[v]: the same for the alarm index, which also records how
 * many shards the data directory has (a directory of version 1 had none:
 * it gets the count of a new one). */
const char *const party__sqlite_index_steps[FORMAT_VERSION] = {
    "CREATE TABLE IF NOT EXISTS alarm_index (room_id TEXT PRIMARY KEY NOT NULL,"
    " party TEXT NOT NULL, due_ms INTEGER NOT NULL) WITHOUT ROWID;" FORMAT_TABLE,
    "CREATE TABLE IF NOT EXISTS _party_layout (k INTEGER PRIMARY KEY CHECK (k = 1),"
    " shards INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO _party_layout (k, shards) VALUES (1, " STRINGIFY(SHARDS_NEW) ");",
};

/* party__sqlite_shard_steps[v]: a shared file. The same records as an own file's, each
 * keyed by room id, and _party_rooms: every room with records here (own
 * 0), or whose records moved to its own file (own 1). */
const char *const party__sqlite_shard_steps[FORMAT_VERSION] = {
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
int party__sqlite_format_check(sqlite3 *db, const char *const *steps, const char *what,
                               const char *path, char *why, size_t why_len) {
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

int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/rooms/%.2s/%s.db", data_dir, room_id, room_id);
    return n > 0 && (size_t)n < cap ? 0 : PARTY_EINVAL;
}

int party__sqlite_make_dir(const char *path) {
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Makes a directory's entries durable (a file created in it). */
int party__sqlite_sync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* Runs a prepared statement that returns no rows to its end, then resets
 * it and clears its bindings for the next run: 0 or PARTY_EIO. */
int party__sqlite_step_done(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

/* Resets a statement that returned rows, for its next run. */
void party__sqlite_done_with(sqlite3_stmt *stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

int party__sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) == SQLITE_OK ? 0
                                                                                               : -1;
}

int party__sqlite_code_error(int rc) {
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
int party__sqlite_connection_open(const char *path, int create, int durability_full, int cache_kib,
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

/* 0 if key can name a record (valid UTF-8), else PARTY_EINVAL. */
char *party__sqlite_prefix_upper(const char *prefix, size_t plen) {
    char *upper = party__malloc(plen + 2);
    if (upper == NULL)
        return NULL;
    memcpy(upper, prefix, plen);
    upper[plen] = (char)0xFF;
    upper[plen + 1] = '\0';
    return upper;
}

int party__sqlite_check_key(const char *key) {
    return key != NULL && party__utf8_valid(key, strlen(key)) ? 0 : PARTY_EINVAL;
}
