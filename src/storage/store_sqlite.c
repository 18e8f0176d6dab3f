/* store_sqlite: the SQLite backend of the storage seam (storage.h): the
 * backend and the rooms of its shared files. A room's records are rows
 * keyed by its id in one of a fixed number of shared WAL files,
 * <data>/rooms-<k>.db (its shard: a hash of the id, k < the count recorded
 * when the data directory was made). A loaded shared room holds no handle:
 * its open batch is a write set in memory (write_set.h), its reads see the
 * committed rows through a small pool of read connections per shard, and
 * commit_batch writes the rooms of one shard in one transaction. A room
 * that opens its own database (party_room_db) is served from its own file
 * from then on (store_sqlite_own.c). The alarm index is <data>/alarms.db,
 * one connection shared by the worker threads under a mutex. Each file
 * records its format version in _party_format (store_sqlite_db.c). Here:
 * opening the backend, shards, shared rooms' records, loading a room,
 * commits and the alarm index, and both room store tables. */
#include "store_sqlite_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

/* ---- shards ---- */

/* The shard of a room: a hash of its id (FNV-1a), so that any id spreads. */
static shard *shard_of(sqlite_backend *be, const char *room_id) {
    return &be->shards[party__id_hash(room_id, strlen(room_id)) % be->n_shards];
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
    if (party__sqlite_connection_open(sh->path, 0, durability_full, 256, &rd->db) != SQLITE_OK) {
        reader_close(rd);
        return NULL;
    }
    db = rd->db;
    sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
    if (party__sqlite_prepare(db, "SELECT own FROM _party_rooms WHERE room_id = ?1",
                              &rd->room_get) ||
        party__sqlite_prepare(db, "SELECT value FROM _party_kv WHERE room_id = ?1 AND key = ?2",
                              &rd->kv_get) ||
        party__sqlite_prepare(
            db, "SELECT key, value FROM _party_kv WHERE room_id = ?1 ORDER BY key", &rd->kv_list) ||
        party__sqlite_prepare(
            db,
            "SELECT key, value FROM _party_kv WHERE room_id = ?1 AND key >= ?2 AND key < ?3"
            " ORDER BY key",
            &rd->kv_range) ||
        party__sqlite_prepare(db, "SELECT value FROM _party_meta WHERE room_id = ?1 AND key = ?2",
                              &rd->meta_get) ||
        party__sqlite_prepare(db,
                              "SELECT key, value FROM _party_meta WHERE room_id = ?1 ORDER BY key",
                              &rd->meta_list) ||
        party__sqlite_prepare(
            db,
            "SELECT key, value FROM _party_meta WHERE room_id = ?1 AND key >= ?2 AND key < ?3"
            " ORDER BY key",
            &rd->meta_range) ||
        party__sqlite_prepare(db, "SELECT at_ms, retries FROM _party_alarm WHERE room_id = ?1",
                              &rd->alarm_get) ||
        party__sqlite_prepare(db, "SELECT min(next_ms) FROM _party_schedules WHERE room_id = ?1",
                              &rd->sched_min) ||
        party__sqlite_prepare(
            db,
            "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM _party_schedules"
            " WHERE room_id = ?1 AND next_ms <= ?2 ORDER BY next_ms, id",
            &rd->sched_due) ||
        party__sqlite_prepare(
            db,
            "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM _party_schedules"
            " WHERE room_id = ?1 AND id = ?2",
            &rd->sched_one) ||
        party__sqlite_prepare(db, "BEGIN", &rd->begin) ||
        party__sqlite_prepare(db, "COMMIT", &rd->end)) {
        reader_close(rd);
        return NULL;
    }
    return rd;
}

/* A read connection of the shard, for one op: NULL when none can be
 * opened. Give it back with party__sqlite_reader_put. */
reader *party__sqlite_reader_get(sqlite_backend *be, shard *sh) {
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

void party__sqlite_reader_put(shard *sh, reader *rd) {
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
        uv_mutex_destroy(&sh->queue_mutex);
        uv_cond_destroy(&sh->queue_cond);
    }
}

static int shard_statements_prepare(shard *sh) {
    sqlite3 *db = sh->writer;
    return party__sqlite_prepare(db, "BEGIN IMMEDIATE", &sh->begin) ||
           party__sqlite_prepare(db, "COMMIT", &sh->commit) ||
           party__sqlite_prepare(db, "ROLLBACK", &sh->rollback) ||
           party__sqlite_prepare(db, "SAVEPOINT room", &sh->savepoint) ||
           party__sqlite_prepare(db, "RELEASE room", &sh->release) ||
           party__sqlite_prepare(db, "ROLLBACK TO room", &sh->rollback_to) ||
           party__sqlite_prepare(db,
                                 "INSERT INTO _party_rooms (room_id, party, own) VALUES (?1, ?2, 0)"
                                 " ON CONFLICT (room_id) DO NOTHING",
                                 &sh->room_put) ||
           party__sqlite_prepare(db,
                                 "INSERT INTO _party_rooms (room_id, party, own) VALUES (?1, ?2, 1)"
                                 " ON CONFLICT (room_id) DO UPDATE SET own = 1",
                                 &sh->room_own) ||
           party__sqlite_prepare(db,
                                 "INSERT INTO _party_kv (room_id, key, value) VALUES (?1, ?2, ?3)"
                                 " ON CONFLICT (room_id, key) DO UPDATE SET value = excluded.value",
                                 &sh->kv_put) ||
           party__sqlite_prepare(db, "DELETE FROM _party_kv WHERE room_id = ?1 AND key = ?2",
                                 &sh->kv_delete) ||
           party__sqlite_prepare(db, "DELETE FROM _party_kv WHERE room_id = ?1", &sh->kv_clear) ||
           party__sqlite_prepare(db,
                                 "INSERT INTO _party_meta (room_id, key, value) VALUES (?1, ?2, ?3)"
                                 " ON CONFLICT (room_id, key) DO UPDATE SET value = excluded.value",
                                 &sh->meta_put) ||
           party__sqlite_prepare(db, "DELETE FROM _party_meta WHERE room_id = ?1 AND key = ?2",
                                 &sh->meta_delete) ||
           party__sqlite_prepare(db, "DELETE FROM _party_meta WHERE room_id = ?1",
                                 &sh->meta_clear) ||
           party__sqlite_prepare(
               db,
               "INSERT INTO _party_alarm (room_id, at_ms, retries) VALUES (?1, ?2, ?3)"
               " ON CONFLICT (room_id) DO UPDATE SET at_ms = excluded.at_ms,"
               " retries = excluded.retries",
               &sh->alarm_put) ||
           party__sqlite_prepare(db, "DELETE FROM _party_alarm WHERE room_id = ?1",
                                 &sh->alarm_delete) ||
           party__sqlite_prepare(
               db,
               "INSERT OR REPLACE INTO _party_schedules (room_id, id, name, payload, kind,"
               " interval_ms, cron, next_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
               &sh->sched_put) ||
           party__sqlite_prepare(db, "DELETE FROM _party_schedules WHERE room_id = ?1 AND id = ?2",
                                 &sh->sched_delete) ||
           party__sqlite_prepare(
               db, "UPDATE _party_schedules SET next_ms = ?3 WHERE room_id = ?1 AND id = ?2",
               &sh->sched_next) ||
           party__sqlite_prepare(db, "DELETE FROM _party_schedules WHERE room_id = ?1",
                                 &sh->sched_clear);
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
    if (uv_mutex_init(&sh->queue_mutex) != 0) {
        uv_mutex_destroy(&sh->write_mutex);
        uv_mutex_destroy(&sh->read_mutex);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (uv_cond_init(&sh->queue_cond) != 0) {
        uv_mutex_destroy(&sh->write_mutex);
        uv_mutex_destroy(&sh->read_mutex);
        uv_mutex_destroy(&sh->queue_mutex);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    sh->mutexes = 1;
    rc = party__sqlite_connection_open(sh->path, 1, be->durability_full, 1024, &sh->writer);
    if (rc != SQLITE_OK) {
        int code = rc & 0xff;
        int sys_errno = sh->writer != NULL && (code == SQLITE_CANTOPEN || code == SQLITE_IOERR)
                            ? sqlite3_system_errno(sh->writer)
                            : 0;
        snprintf(why, why_len, "%s: %s", sh->path,
                 sys_errno != 0       ? strerror(sys_errno)
                 : sh->writer != NULL ? sqlite3_errmsg(sh->writer)
                                      : sqlite3_errstr(rc));
        return party__sqlite_code_error(rc);
    }
    if (party__sqlite_format_check(sh->writer, party__sqlite_shard_steps, "", sh->path, why,
                                   why_len) != 0)
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
    rd = party__sqlite_reader_get(be, sh);
    if (rd == NULL) {
        snprintf(why, why_len, "%s: cannot open a read connection", sh->path);
        return PARTY_EIO;
    }
    party__sqlite_reader_put(sh, rd);
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
    return party__sqlite_prepare(db, "BEGIN", &be->index_begin) ||
           party__sqlite_prepare(db, "COMMIT", &be->index_commit) ||
           party__sqlite_prepare(db, "ROLLBACK", &be->index_rollback) ||
           /* An entry only ever moves earlier before a commit ... */
           party__sqlite_prepare(
               db,
               "INSERT INTO alarm_index (room_id, party, due_ms) VALUES (?1, ?2, ?3)"
               " ON CONFLICT (room_id) DO UPDATE SET party = excluded.party,"
               " due_ms = excluded.due_ms WHERE excluded.due_ms < alarm_index.due_ms",
               &be->index_lower) ||
           /* ... and takes its exact time after it. */
           party__sqlite_prepare(
               db,
               "INSERT INTO alarm_index (room_id, party, due_ms) VALUES (?1, ?2, ?3)"
               " ON CONFLICT (room_id) DO UPDATE SET party = excluded.party,"
               " due_ms = excluded.due_ms WHERE excluded.due_ms != alarm_index.due_ms"
               " OR excluded.party != alarm_index.party",
               &be->index_set) ||
           party__sqlite_prepare(db, "DELETE FROM alarm_index WHERE room_id = ?1",
                                 &be->index_delete) ||
           party__sqlite_prepare(db, "PRAGMA synchronous=NORMAL", &be->sync_off) ||
           party__sqlite_prepare(db, "PRAGMA synchronous=FULL", &be->sync_on);
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
        party__sqlite_handles_free(be);
        uv_mutex_destroy(&be->handles_mutex);
    }
    index_statements_finalize(be);
    sqlite3_close(be->index);
    uv_mutex_destroy(&be->index_mutex);
    party__sqlite_known_free(be);
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
    be->base.ops = &party__sqlite_shared_ops;
    be->base.commit_on_loop = !cfg->durability_full;
    be->base.load_in_groups = 1;
    be->durability_full = cfg->durability_full;
    /* In memory, closing an own file loses it: no bound then. */
    be->max_handles = cfg->data_dir == NULL  ? SIZE_MAX
                      : cfg->own_handles > 0 ? cfg->own_handles
                                             : OWN_HANDLES_DEFAULT;
    be->handle_buckets_cap = 64;
    while (be->handle_buckets_cap < 2 * be->max_handles && be->handle_buckets_cap < (1u << 16))
        be->handle_buckets_cap *= 2;
    be->handle_buckets = party__calloc(be->handle_buckets_cap, sizeof(*be->handle_buckets));
    if (be->handle_buckets == NULL || uv_mutex_init(&be->handles_mutex) != 0 ||
        party__sqlite_known_init(be) != 0) {
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
    if (party__sqlite_format_check(be->index, party__sqlite_index_steps, "alarm index ", path, why,
                                   why_len) != 0) {
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
    if ((rc = party__sqlite_known_fill(be, why, why_len)) != 0) {
        sqlite_close(&be->base);
        return rc;
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

/* ---- a shared room's records: the committed rows, read through one of the
 * shard's readers, overlaid with the room's write set ---- */

static party__pending_pairs *pending_of(sqlite_room *s, int meta) {
    return meta ? &s->ws.meta : &s->ws.kv;
}

/* The room's committed rows of one table as load read them, NULL when it
 * holds none (see snap in sqlite_room). */
static const party__pending_pairs *snap_of(const sqlite_room *s, int meta) {
    return s->snap ? (meta ? &s->snap_rows.meta : &s->snap_rows.kv) : NULL;
}

/* The snapshot goes: the rows may change from here on. */
static void snap_drop(sqlite_room *s) {
    s->snap = 0;
    party__write_set_clear(&s->snap_rows);
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
    reader *rd;
    sqlite3_stmt *get;
    int rc, r = 0;

    if (s->fresh)
        return PARTY_ENOTFOUND;
    if (snap_of(s, meta) != NULL) {
        const party__pending_pair *p = party__pending_find(snap_of(s, meta), key);
        if (p == NULL)
            return PARTY_ENOTFOUND;
        return val != NULL ? copy_value(p->val, p->len, val, len) : 0;
    }
    rd = party__sqlite_reader_get(s->backend, s->shard);
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
        r = rc == SQLITE_DONE ? PARTY_ENOTFOUND : party__sqlite_code_error(rc);
    }
    party__sqlite_done_with(get);
    party__sqlite_reader_put(s->shard, rd);
    return r;
}

static int shared_get(sqlite_room *s, int meta, const char *key, void **val, size_t *len) {
    party__pending_pair *p;
    if (party__sqlite_check_key(key) != 0 || val == NULL)
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
    if (party__sqlite_check_key(key) != 0 || (val == NULL && len > 0))
        return PARTY_EINVAL;
    if (strlen(key) + len > PARTY__KV_MAX)
        return PARTY_ETOOBIG;
    return broke(s, party__pending_set(pending_of(s, meta), key, val, len, 0));
}

static int shared_delete(sqlite_room *s, int meta, const char *key) {
    party__pending_pair *p;
    int r;
    if (party__sqlite_check_key(key) != 0)
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
    /* The committed rows: the room's snapshot (none at all for a fresh
     * room) when it has one, else its shard's. */
    const party__pending_pairs *snap = s->fresh ? NULL : snap_of(s, meta);
    int from_snap = s->fresh || snap != NULL;
    size_t plen = prefix != NULL ? strlen(prefix) : 0, i, j = 0;
    char *upper = NULL;
    sqlite3_stmt *stmt = NULL;
    reader *rd = NULL;
    int r = 0, rc = SQLITE_DONE;

    if (fn == NULL || (prefix != NULL && party__sqlite_check_key(prefix) != 0))
        return PARTY_EINVAL;
    if (plen > 0 && !from_snap) {
        upper = party__sqlite_prefix_upper(prefix, plen);
        if (upper == NULL)
            return PARTY_ENOMEM;
    }
    if (!from_snap) {
        rd = party__sqlite_reader_get(s->backend, s->shard);
        if (rd == NULL) {
            party__free(upper);
            return PARTY_EIO;
        }
        stmt = plen > 0 ? (meta ? rd->meta_range : rd->kv_range)
                        : (meta ? rd->meta_list : rd->kv_list);
        sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
        if (plen > 0) {
            sqlite3_bind_text(stmt, 2, prefix, (int)plen, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 3, upper, (int)plen + 1, SQLITE_STATIC);
        }
        rc = sqlite3_step(stmt);
    } else if (snap != NULL && plen > 0) {
        j = party__pending_lower_bound(snap, prefix);
    }
    i = plen > 0 ? party__pending_lower_bound(pending, prefix) : 0;
    for (;;) {
        int have_row, cmp;
        int have_pending =
            i < pending->len && (plen == 0 || strncmp(pending->items[i].key, prefix, plen) == 0);
        const char *key = NULL;
        const void *val = NULL;
        size_t len = 0;

        if (from_snap) {
            have_row = snap != NULL && j < snap->len &&
                       (plen == 0 || strncmp(snap->items[j].key, prefix, plen) == 0);
            if (have_row) {
                key = snap->items[j].key;
                val = snap->items[j].val;
                len = snap->items[j].len;
            }
        } else {
            if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
                r = party__sqlite_code_error(rc);
                break;
            }
            have_row = rc == SQLITE_ROW;
            if (have_row && (key = (const char *)sqlite3_column_text(stmt, 0)) == NULL) {
                r = PARTY_ENOMEM;
                break;
            }
            if (have_row) {
                val = sqlite3_column_blob(stmt, 1);
                len = (size_t)sqlite3_column_bytes(stmt, 1);
            }
        }
        if (!have_row && !have_pending)
            break;
        cmp = !have_row ? -1 : !have_pending ? 1 : strcmp(pending->items[i].key, key);
        if (cmp <= 0) {
            const party__pending_pair *p = &pending->items[i++];
            if (cmp == 0 && from_snap)
                j++;
            else if (cmp == 0)
                rc = sqlite3_step(stmt);
            if (!p->deleted && (r = fn(p->key, p->val, p->len, arg)) != 0)
                break;
        } else {
            if ((r = fn(key, val, len, arg)) != 0)
                break;
            if (from_snap)
                j++;
            else
                rc = sqlite3_step(stmt);
        }
    }
    if (stmt != NULL) {
        party__sqlite_done_with(stmt);
        party__sqlite_reader_put(s->shard, rd);
    }
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
    if (s->fresh)
        return 0;
    if ((rd = party__sqlite_reader_get(s->backend, s->shard)) == NULL)
        return PARTY_EIO;
    sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->alarm_get);
    if (rc == SQLITE_ROW) {
        *at_ms = sqlite3_column_int64(rd->alarm_get, 0);
        if (retries != NULL)
            *retries = sqlite3_column_int(rd->alarm_get, 1);
    }
    party__sqlite_done_with(rd->alarm_get);
    party__sqlite_reader_put(s->shard, rd);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : party__sqlite_code_error(rc);
}

static int shared_alarm_set(sqlite_room *s, int64_t at_ms, int retries) {
    s->ws.alarm_set = 1;
    s->ws.alarm_at = at_ms > 0 ? at_ms : 0;
    s->ws.alarm_retries = at_ms > 0 ? retries : 0;
    return 0;
}

/* 1 if a schedule with this id is committed, 0 if not, or an error. */
static int shared_sched_committed(sqlite_room *s, const char *id) {
    reader *rd;
    int rc;
    if (s->fresh)
        return 0;
    rd = party__sqlite_reader_get(s->backend, s->shard);
    if (rd == NULL)
        return PARTY_EIO;
    sqlite3_bind_text(rd->sched_one, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(rd->sched_one, 2, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->sched_one);
    party__sqlite_done_with(rd->sched_one);
    party__sqlite_reader_put(s->shard, rd);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : party__sqlite_code_error(rc);
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
int party__sqlite_sched_from_row(sqlite3_stmt *stmt, party__schedule *sc) {
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

void party__sqlite_sched_bind(sqlite3_stmt *stmt, int first, const party__schedule *sc) {
    sqlite3_bind_text(stmt, first, sc->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, first + 1, sc->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(stmt, first + 2, sc->len > 0 ? sc->payload : "", sc->len, SQLITE_STATIC);
    sqlite3_bind_int(stmt, first + 3, sc->kind);
    sqlite3_bind_int64(stmt, first + 4, sc->interval_ms);
    if (sc->cron != NULL)
        sqlite3_bind_text(stmt, first + 5, sc->cron, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, first + 6, sc->next_ms);
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
            r = rc == SQLITE_DONE ? 0 : party__sqlite_code_error(rc);
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
    party__sqlite_done_with(stmt);
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
    reader *rd = party__sqlite_reader_get(s->backend, s->shard);
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
        r = rc == SQLITE_ROW ? 0 : party__sqlite_code_error(rc);
        party__sqlite_done_with(rd->sched_min);
    } else if ((r = sched_merge(s, rd, INT64_MAX, &v, &n)) == 0) {
        if (n > 0)
            *next_ms = v[0].next_ms;
        sched_entries_free(v, n);
    }
    party__sqlite_reader_put(s->shard, rd);
    return r;
}

static int shared_sched_each(sqlite_room *s, int64_t until, party__sched_fn fn, void *arg) {
    reader *rd = party__sqlite_reader_get(s->backend, s->shard);
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
            if ((r = party__sqlite_sched_from_row(rd->sched_due, &sc)) != 0 ||
                (r = fn(&sc, arg)) != 0)
                break;
        }
        if (r == 0 && rc != SQLITE_DONE)
            r = party__sqlite_code_error(rc);
        party__sqlite_done_with(rd->sched_due);
        party__sqlite_reader_put(s->shard, rd);
        return r;
    }
    if ((r = sched_merge(s, rd, until, &v, &n)) != 0) {
        party__sqlite_reader_put(s->shard, rd);
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
        if (rc == SQLITE_ROW && (r = party__sqlite_sched_from_row(rd->sched_one, &sc)) == 0) {
            sc.next_ms = v[i].next_ms; /* a pending NEXT's */
            r = fn(&sc, arg);
        } else if (rc != SQLITE_ROW) {
            r = rc == SQLITE_DONE ? PARTY_EIO : party__sqlite_code_error(rc);
        }
        party__sqlite_done_with(rd->sched_one);
    }
    sched_entries_free(v, n);
    party__sqlite_reader_put(s->shard, rd);
    return r;
}

/* ---- the record ops: two tables ----
 *
 * A room store's ops are the own-file table or the shared one: load
 * chooses by where the room's records are, and room_file_open switches a
 * shared room to the own-file table once its records moved. Both share
 * the backend's ops, wrote and rollback. The own-file table's record ops
 * are store_sqlite_own.c's. */

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
    return s->db != NULL ? party__sqlite_own_wrote(rs)
                         : s->broken || !party__write_set_empty(&s->ws);
}

static void room_rollback(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (s->db != NULL)
        party__sqlite_own_rollback(rs);
    party__write_set_clear(&s->ws);
    s->broken = 0;
    snap_drop(s); /* the first batch is over */
}

/* ---- loading and unloading a room ---- */

/* Where the room's records are, by its shard's _party_rooms: *own -1 (no
 * row), 0 (the shard) or 1 (its own file); and, unless 1, what its
 * wake-ups need from the shard. One read transaction for all of it: a
 * load of a shared room takes the shard's read lock once. 0 or an
 * error. */
/* A small room's rows are read whole at load; a larger one's are read
 * when asked. */
#define SNAP_ROWS_MAX 16
#define SNAP_BYTES_MAX 4096

/* Reads the room's rows of one table (list: the reader's listing of it)
 * into pairs: 0, 1 when there are more than the snapshot takes (pairs
 * then partial), or an error. */
static int snap_read(sqlite_room *s, sqlite3_stmt *list, party__pending_pairs *pairs,
                     size_t *bytes) {
    int rc = SQLITE_DONE, r = 0;
    sqlite3_bind_text(list, 1, s->id, -1, SQLITE_STATIC);
    while (r == 0 && (rc = sqlite3_step(list)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(list, 0);
        const void *val = sqlite3_column_blob(list, 1);
        size_t len = (size_t)sqlite3_column_bytes(list, 1);
        if (key == NULL || (len > 0 && val == NULL)) {
            r = PARTY_ENOMEM;
            break;
        }
        *bytes += strlen(key) + len;
        if (pairs->len >= SNAP_ROWS_MAX || *bytes > SNAP_BYTES_MAX) {
            r = 1;
            break;
        }
        r = party__pending_set(pairs, key, val, len, 0);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = party__sqlite_code_error(rc);
    party__sqlite_done_with(list);
    return r;
}

/* party__sqlite_room_place, and (snapshot 1) a shared room's rows into
 * its snapshot when they are few, in the same read transaction. */
static int room_place(sqlite_room *s, int *own, party__room_loaded *loaded, int snapshot) {
    reader *rd;
    int rc, r = 0;
    *own = -1;
    if (s->fresh)
        return 0;
    rd = party__sqlite_reader_get(s->backend, s->shard);
    if (rd == NULL)
        return PARTY_EIO;
    if (party__sqlite_step_done(rd->begin) != 0) {
        party__sqlite_reader_put(s->shard, rd);
        return PARTY_EIO;
    }
    sqlite3_bind_text(rd->room_get, 1, s->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(rd->room_get);
    if (rc == SQLITE_ROW)
        *own = sqlite3_column_int(rd->room_get, 0) != 0;
    party__sqlite_done_with(rd->room_get);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        r = party__sqlite_code_error(rc);
    if (r == 0 && *own != 1) {
        sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->alarm_get);
        if (rc == SQLITE_ROW) {
            loaded->alarm_at = sqlite3_column_int64(rd->alarm_get, 0);
            loaded->alarm_retries = sqlite3_column_int(rd->alarm_get, 1);
        }
        party__sqlite_done_with(rd->alarm_get);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            r = party__sqlite_code_error(rc);
    }
    if (r == 0 && *own != 1) {
        sqlite3_bind_text(rd->sched_min, 1, s->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(rd->sched_min);
        if (rc == SQLITE_ROW && sqlite3_column_type(rd->sched_min, 0) != SQLITE_NULL)
            loaded->sched_next = sqlite3_column_int64(rd->sched_min, 0);
        party__sqlite_done_with(rd->sched_min);
        if (rc != SQLITE_ROW)
            r = party__sqlite_code_error(rc);
    }
    if (r == 0 && *own == 0 && snapshot) {
        size_t bytes = 0;
        int k = snap_read(s, rd->meta_list, &s->snap_rows.meta, &bytes);
        if (k == 0)
            k = snap_read(s, rd->kv_list, &s->snap_rows.kv, &bytes);
        /* Too many rows, or no memory for them: read when asked. */
        s->snap = k == 0;
        if (k != 0)
            party__write_set_clear(&s->snap_rows);
        if (k < 0 && k != PARTY_ENOMEM)
            r = k;
    }
    if (party__sqlite_step_done(rd->end) != 0 && r == 0)
        r = PARTY_EIO;
    party__sqlite_reader_put(s->shard, rd);
    if (r != 0)
        snap_drop(s);
    return r;
}

int party__sqlite_room_place(sqlite_room *s, int *own, party__room_loaded *loaded) {
    return room_place(s, own, loaded, 0);
}

/* An own-file room's handle stays in the cache (its next load finds it
 * open) unless the room lives in memory only: then its file goes, as
 * the room's memory does. */
static void sqlite_unload(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (s == NULL)
        return;
    if (s->own && s->backend->data_dir == NULL) {
        (void)party__sqlite_own_ready(s);
        party__sqlite_own_forget(s->backend, s, s->id);
    } else {
        party__sqlite_own_checkin(s);
    }
    party__write_set_clear(&s->ws);
    snap_drop(s);
    party__free(s);
}

static int sqlite_load(party__backend *be_, const char *room_id, const char *party,
                       party__room_store **out, party__room_loaded *loaded, char *why,
                       size_t why_len) {
    sqlite_backend *be = (sqlite_backend *)be_;
    char path[4096], dir[4096];
    sqlite_room *s;
    struct stat st;
    int r, own, no_row;

    *out = NULL;
    memset(loaded, 0, sizeof(*loaded));
    /* Loaded, the room may write records: load_quick must not take it
     * for new again in this process. (If the set cannot take it, it
     * answers "maybe" for every room from then on.) */
    (void)party__sqlite_known_add(be, room_id);
    s = party__calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    s->base.ops = &party__sqlite_shared_ops;
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
    if ((r = room_place(s, &own, loaded, 1)) != 0) {
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
    no_row = own < 0;
    if (be->data_dir != NULL && own == 0 && (stat(path, &st) == 0 || errno != ENOENT) &&
        (party__sqlite_own_forget(be, NULL, room_id), party__sqlite_own_remove(path) != 0)) {
        /* An own file its shard does not know: a move cut short. */
        snprintf(why, why_len, "%s: cannot remove what a move to it left: %s", path,
                 strerror(errno));
        snap_drop(s);
        party__free(s);
        return PARTY_EIO;
    }
    /* No row: a new room, or the file of an earlier partyd (whatever is at
     * its path: what is not a file says so when opened). */
    if (own < 0 && be->data_dir != NULL)
        own = stat(path, &st) == 0 || errno != ENOENT;
    if (own == 1) {
        party__sqlite_own_forget_if_replaced(be, room_id, path);
        if ((be->data_dir != NULL && party__sqlite_own_dir(be, room_id, dir, sizeof(dir), path,
                                                           sizeof(path), why, why_len) != 0) ||
            (r = party__sqlite_own_checkout(s, path, why, why_len)) != 0) {
            snap_drop(s);
            party__free(s);
            return r != 0 ? r : PARTY_EIO;
        }
        s->own = 1;
        s->base.ops = &party__sqlite_own_ops;
        /* A handle from the cache: its file's version is checked again
         * (a fresh one was checked as it opened; this costs one read).
         * If that fails, the file changed under it: opened afresh. */
        if (party__sqlite_format_check(s->db, party__sqlite_room_steps, "", path, why, why_len) !=
            0) {
            party__sqlite_own_forget(be, s, room_id);
            if (party__sqlite_own_checkout(s, path, why, why_len) != 0) {
                snap_drop(s);
                party__free(s);
                return PARTY_EIO;
            }
        }
    }
    if (!s->own) {
        /* A shared room: party__sqlite_room_place read its wake time. With
         * no row and no file, it has nothing committed yet. */
        s->fresh = no_row;
        *out = &s->base;
        return 0;
    }
    /* A room that cannot read its wake time stays unloaded: loaded without
     * it, its next commit would file "no wake time" and lose its alarm. */
    memset(loaded, 0, sizeof(*loaded));
    r = party__sqlite_own_op_alarm_get(&s->base, &loaded->alarm_at, &loaded->alarm_retries);
    if (r == 0)
        r = party__sqlite_own_op_sched_earliest(&s->base, &loaded->sched_next);
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
        party__sqlite_own_checkin(s);
    *out = &s->base;
    return 0;
}

/* A room the known set has never seen has no row in its shard and no file
 * of its own: its store is a fresh shared one, made here, on the loop
 * thread, with no read and no thread. */
static int sqlite_load_quick(party__backend *be_, const char *room_id, const char *party,
                             party__room_store **out, party__room_loaded *loaded) {
    sqlite_backend *be = (sqlite_backend *)be_;
    sqlite_room *s;

    *out = NULL;
    memset(loaded, 0, sizeof(*loaded));
    if (!party__sqlite_known_claim(be, room_id))
        return 1;
    s = party__calloc(1, sizeof(*s));
    if (s == NULL)
        return 1; /* claimed: the long way reads it (nothing) */
    s->base.ops = &party__sqlite_shared_ops;
    s->backend = be;
    s->party = party;
    snprintf(s->id, sizeof(s->id), "%s", room_id);
    s->shard = shard_of(be, room_id);
    s->fresh = 1;
    *out = &s->base;
    return 0;
}

static void sqlite_rescan(party__backend *be) {
    party__sqlite_known_rescan((sqlite_backend *)be);
}

/* A shared room's first party_room_db(): its records move, and its store
 * takes the own-file table. */
static struct sqlite3 *shared_room_file_open(party__room_store *rs) {
    if (party__sqlite_room_move((sqlite_room *)rs) != 0)
        return NULL;
    return party__sqlite_own_room_file_open(rs);
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
    r = party__sqlite_step_done(be->index_begin);
    for (i = 0; i < n && r == 0; i++) {
        if (!rooms[i].wake_changed || rooms[i].wake_ms <= 0)
            continue;
        index_bind(be->index_lower, (const sqlite_room *)rooms[i].store, rooms[i].wake_ms);
        r = party__sqlite_step_done(be->index_lower);
        /* A row inserted or moved earlier holds the exact time already. */
        if (r == 0 && sqlite3_changes(be->index) > 0)
            results[i] = INDEX_EXACT;
    }
    if (r == 0)
        r = party__sqlite_step_done(be->index_commit);
    if (r != 0) {
        if (!sqlite3_get_autocommit(be->index))
            (void)party__sqlite_step_done(be->index_rollback);
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
        (void)party__sqlite_step_done(be->sync_off);
    if (party__sqlite_step_done(be->index_begin) == 0) {
        for (i = 0; i < n; i++) {
            const sqlite_room *s = (const sqlite_room *)rooms[i].store;
            if (!rooms[i].wake_changed || results[i] != 0)
                continue;
            if (rooms[i].wake_ms > 0) {
                index_bind(be->index_set, s, rooms[i].wake_ms);
                (void)party__sqlite_step_done(be->index_set);
            } else {
                sqlite3_bind_text(be->index_delete, 1, s->id, -1, SQLITE_STATIC);
                (void)party__sqlite_step_done(be->index_delete);
            }
        }
        if (party__sqlite_step_done(be->index_commit) != 0 && !sqlite3_get_autocommit(be->index))
            (void)party__sqlite_step_done(be->index_rollback);
    }
    if (be->durability_full)
        (void)party__sqlite_step_done(be->sync_on);
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
    r = party__sqlite_step_done(sh->room_put);
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
            r = party__sqlite_step_done(stmt);
        }
    }
    if (r == 0 && ws->alarm_set) {
        sqlite3_stmt *stmt = ws->alarm_at > 0 ? sh->alarm_put : sh->alarm_delete;
        sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
        if (ws->alarm_at > 0) {
            sqlite3_bind_int64(stmt, 2, ws->alarm_at);
            sqlite3_bind_int(stmt, 3, ws->alarm_retries);
        }
        r = party__sqlite_step_done(stmt);
    }
    for (i = 0; r == 0 && i < ws->n_scheds; i++) {
        const party__pending_sched *p = &ws->scheds[i];
        const party__schedule *sc = &p->s;
        sqlite3_stmt *stmt = p->op == PARTY__PENDING_ADD      ? sh->sched_put
                             : p->op == PARTY__PENDING_CANCEL ? sh->sched_delete
                                                              : sh->sched_next;
        sqlite3_bind_text(stmt, 1, s->id, -1, SQLITE_STATIC);
        if (p->op == PARTY__PENDING_ADD) {
            party__sqlite_sched_bind(stmt, 2, sc);
        } else {
            sqlite3_bind_text(stmt, 2, sc->id, -1, SQLITE_STATIC);
            if (p->op == PARTY__PENDING_NEXT)
                sqlite3_bind_int64(stmt, 3, sc->next_ms);
        }
        r = party__sqlite_step_done(stmt);
    }
    return r;
}

/* 1 if rooms[i] is a shared room of sh with a batch to commit (and no
 * failure yet). */
static int shard_commits(const shard *sh, const party__commit *c, int result) {
    const sqlite_room *s = (const sqlite_room *)c->store;
    return result >= 0 && !s->own && s->shard == sh && !party__write_set_empty(&s->ws);
}

/* One commit_batch's rooms of a shard, waiting for its writer. */
typedef struct shard_waiter {
    struct shard_waiter *next;
    const party__commit *rooms;
    size_t n;
    int *results;
    int done;
} shard_waiter;

/* Commits the write sets of the shared rooms of sh among the waiters'
 * rooms: one transaction (one sync), a savepoint per room, so that a room
 * whose records cannot be written fails alone. Every write set committed
 * here is empty after, whatever the result. */
static void shard_commit_all(shard *sh, shard_waiter *waiters) {
    shard_waiter *w;
    size_t i;
    int r;

    uv_mutex_lock(&sh->write_mutex);
    r = party__sqlite_step_done(sh->begin);
    for (w = waiters; r == 0 && w != NULL; w = w->next) {
        for (i = 0; r == 0 && i < w->n; i++) {
            sqlite_room *s = (sqlite_room *)w->rooms[i].store;
            if (!shard_commits(sh, &w->rooms[i], w->results[i]))
                continue;
            if (party__sqlite_step_done(sh->savepoint) != 0) {
                r = PARTY_EIO;
                break;
            }
            if (write_set_apply(sh, s) == 0 && party__sqlite_step_done(sh->release) == 0)
                continue;
            w->results[i] = PARTY_EIO;
            if (party__sqlite_step_done(sh->rollback_to) != 0 ||
                party__sqlite_step_done(sh->release) != 0)
                r = PARTY_EIO; /* the transaction is not what it was: all fail */
        }
    }
    if (r == 0)
        r = party__sqlite_step_done(sh->commit);
    if (r != 0 && !sqlite3_get_autocommit(sh->writer))
        (void)party__sqlite_step_done(sh->rollback);
    uv_mutex_unlock(&sh->write_mutex);
    for (w = waiters; w != NULL; w = w->next) {
        for (i = 0; i < w->n; i++) {
            sqlite_room *s = (sqlite_room *)w->rooms[i].store;
            /* The rooms taken above still hold their write sets (a room
             * that failed before, its store rolled back, holds none). */
            if (s->own || s->shard != sh || party__write_set_empty(&s->ws))
                continue;
            if (r != 0)
                w->results[i] = PARTY_EIO;
            /* Committed or not, rows of the room may exist now (a commit
             * that failed may still have reached the file): its reads go
             * to the shard from here on. */
            s->fresh = 0;
            snap_drop(s);
            party__write_set_clear(&s->ws);
        }
    }
}

/* Commits the shared rooms of sh among rooms. The commit_batch calls that
 * reach a shard while its writer is busy wait together, and the first of
 * them to find it free commits them all in one transaction: with groups
 * of several loops in flight, one sync each would make the later ones
 * wait for every sync before theirs. */
static void shard_commit(shard *sh, const party__commit *rooms, size_t n, int *results) {
    shard_waiter me, *batch, *w, *next;
    size_t i;
    int any = 0;

    for (i = 0; i < n && !any; i++)
        any = shard_commits(sh, &rooms[i], results[i]);
    if (!any)
        return;
    me.rooms = rooms;
    me.n = n;
    me.results = results;
    me.done = 0;
    uv_mutex_lock(&sh->queue_mutex);
    me.next = sh->waiting;
    sh->waiting = &me;
    while (!me.done) {
        if (sh->committing) {
            uv_cond_wait(&sh->queue_cond, &sh->queue_mutex);
            continue;
        }
        sh->committing = 1;
        batch = sh->waiting;
        sh->waiting = NULL;
        uv_mutex_unlock(&sh->queue_mutex);
        shard_commit_all(sh, batch);
        uv_mutex_lock(&sh->queue_mutex);
        /* A waiter told it is done may return at once: next first. */
        for (w = batch; w != NULL; w = next) {
            next = w->next;
            w->done = 1;
        }
        sh->committing = 0;
        uv_cond_broadcast(&sh->queue_cond);
    }
    uv_mutex_unlock(&sh->queue_mutex);
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
        r = party__sqlite_own_commit(s);
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

const party__store_ops party__sqlite_own_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .acquire = sqlite_acquire,
    .release = sqlite_release,
    .load = sqlite_load,
    .load_quick = sqlite_load_quick,
    .rescan = sqlite_rescan,
    .unload = sqlite_unload,
    .kv_get = party__sqlite_own_op_kv_get,
    .kv_put = party__sqlite_own_op_kv_put,
    .kv_delete = party__sqlite_own_op_kv_delete,
    .kv_list = party__sqlite_own_op_kv_list,
    .meta_get = party__sqlite_own_op_meta_get,
    .meta_put = party__sqlite_own_op_meta_put,
    .meta_delete = party__sqlite_own_op_meta_delete,
    .meta_list = party__sqlite_own_op_meta_list,
    .alarm_get = party__sqlite_own_op_alarm_get,
    .alarm_set = party__sqlite_own_op_alarm_set,
    .sched_add = party__sqlite_own_op_sched_add,
    .sched_cancel = party__sqlite_own_op_sched_cancel,
    .sched_set_next = party__sqlite_own_op_sched_set_next,
    .sched_earliest = party__sqlite_own_op_sched_earliest,
    .sched_each = party__sqlite_own_op_sched_each,
    .room_file_open = party__sqlite_own_room_file_open,
    .wrote = room_wrote,
    .rollback = room_rollback,
    .commit_batch = sqlite_commit_batch,
    .index_load = sqlite_index_load,
    .index_due = sqlite_index_due,
};

const party__store_ops party__sqlite_shared_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .acquire = sqlite_acquire,
    .release = sqlite_release,
    .load = sqlite_load,
    .load_quick = sqlite_load_quick,
    .rescan = sqlite_rescan,
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
    return &party__sqlite_shared_ops;
}
