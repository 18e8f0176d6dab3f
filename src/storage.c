/* storage: the SQLite backend of room stores. One WAL database per room at
 * <data>/rooms/<id[0..2]>/<id>.db, holding the user's key-value table, the
 * runtime's metadata table and whatever tables the party creates itself.
 * Statements used on every event are prepared once per store. */
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

#include "utf8.h"

struct party__store {
    sqlite3 *db;
    sqlite3_stmt *begin, *commit, *rollback;
    sqlite3_stmt *kv_put, *kv_get, *kv_delete;
    sqlite3_stmt *meta_put, *meta_get;
    int begun; /* BEGIN ran since the last commit or rollback */
    int lost;  /* ... and that transaction ended by itself, then BEGIN ran again */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS _party_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _party_alarm (k INTEGER PRIMARY KEY CHECK (k = 1),"
    " at_ms INTEGER NOT NULL, retries INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS _party_schedules (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
    " payload BLOB NOT NULL, kind INTEGER NOT NULL, interval_ms INTEGER NOT NULL, cron TEXT,"
    " next_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS _party_schedules_next ON _party_schedules (next_ms);";

int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/rooms/%.2s/%s.db", data_dir, room_id, room_id);
    return n > 0 && (size_t)n < cap ? 0 : PARTY_EINVAL;
}

static int make_dir(const char *path) {
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int prepare(party__store *s, const char *sql, sqlite3_stmt **stmt) {
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) == SQLITE_OK
               ? 0
               : -1;
}

/* SQLite says "unable to open database file" whatever the cause: the OS
 * error comes first when SQLite has one (a long path may fill the rest),
 * and when it is the process's open-file limit (a loaded room holds 3
 * files), the limit is named, since raising it is the fix. */
static void describe_open_failure(party__store *s, const char *path, char *why, size_t why_len) {
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

int party__store_open(const party__store_options *opt, const char *room_id, party__store **out,
                      char *why, size_t why_len) {
    char path[4096];
    party__store *s;
    int rc;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (opt->data_dir != NULL) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/rooms", opt->data_dir);
        if (make_dir(opt->data_dir) != 0 || make_dir(dir) != 0) {
            snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
            free(s);
            return PARTY_EIO;
        }
        snprintf(dir, sizeof(dir), "%s/rooms/%.2s", opt->data_dir, room_id);
        if (make_dir(dir) != 0 || party__store_path(opt->data_dir, room_id, path, sizeof(path))) {
            snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
            free(s);
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
    rc = sqlite3_exec(
        s->db, opt->durability_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
        NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    if (prepare(s, "BEGIN", &s->begin) || prepare(s, "COMMIT", &s->commit) ||
        prepare(s, "ROLLBACK", &s->rollback) ||
        prepare(s,
                "INSERT INTO _party_kv (key, value) VALUES (?1, ?2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &s->kv_put) ||
        prepare(s, "SELECT value FROM _party_kv WHERE key = ?1", &s->kv_get) ||
        prepare(s, "DELETE FROM _party_kv WHERE key = ?1", &s->kv_delete) ||
        prepare(s,
                "INSERT INTO _party_meta (key, value) VALUES (?1, ?2)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &s->meta_put) ||
        prepare(s, "SELECT value FROM _party_meta WHERE key = ?1", &s->meta_get))
        goto fail;
    *out = s;
    return 0;
fail:
    describe_open_failure(s, path, why, why_len);
    party__store_close(s);
    return PARTY_EIO;
}

void party__store_close(party__store *s) {
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
    free(s);
}

int party__store_step_done(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE ? 0 : PARTY_EIO;
}

int party__store_in_transaction(party__store *s) {
    return !sqlite3_get_autocommit(s->db);
}

int party__store_has_written(party__store *s) {
    /* Asked on every send of a room (the output gate): no schema name,
     * which SQLite would compare by name each time. A write to an attached
     * or temp database counts too, and is committed like one to main. */
    return !sqlite3_get_autocommit(s->db) && sqlite3_txn_state(s->db, NULL) == SQLITE_TXN_WRITE;
}

int party__store_begin(party__store *s) {
    int r;
    if (party__store_in_transaction(s))
        return 0;
    if (s->begun)
        s->lost = 1;
    r = party__store_step_done(s->begin);
    if (r == 0)
        s->begun = 1;
    return r;
}

int party__store_lost_transaction(party__store *s) {
    return s->lost || (s->begun && !party__store_in_transaction(s));
}

int party__store_commit(party__store *s) {
    s->begun = s->lost = 0;
    if (!party__store_in_transaction(s))
        return 0;
    if (party__store_step_done(s->commit) != 0) {
        party__store_rollback(s);
        return PARTY_EIO;
    }
    return 0;
}

void party__store_rollback(party__store *s) {
    s->begun = s->lost = 0;
    if (party__store_in_transaction(s))
        (void)party__store_step_done(s->rollback);
}

static int check_key(const char *key) {
    return key != NULL && party__utf8_valid(key, strlen(key)) ? 0 : PARTY_EINVAL;
}

int party__store_kv_put(party__store *s, const char *key, const void *val, size_t len) {
    int r = check_key(key);
    if (r != 0 || (val == NULL && len > 0))
        return PARTY_EINVAL;
    if (strlen(key) + len > PARTY__KV_MAX)
        return PARTY_ETOOBIG;
    r = party__store_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(s->kv_put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(s->kv_put, 2, len > 0 ? val : "", len, SQLITE_STATIC);
    return party__store_step_done(s->kv_put);
}

int party__store_kv_get(party__store *s, const char *key, void **val, size_t *len) {
    int r = check_key(key), rc;
    if (r != 0 || val == NULL)
        return PARTY_EINVAL;
    *val = NULL;
    if (len != NULL)
        *len = 0;
    r = party__store_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(s->kv_get, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s->kv_get);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s->kv_get, 0);
        char *copy = malloc(n + 1);
        if (copy == NULL) {
            r = PARTY_ENOMEM;
        } else {
            if (n > 0)
                memcpy(copy, sqlite3_column_blob(s->kv_get, 0), n);
            copy[n] = '\0';
            *val = copy;
            if (len != NULL)
                *len = n;
        }
    } else {
        r = rc == SQLITE_DONE ? PARTY_ENOTFOUND : PARTY_EIO;
    }
    sqlite3_reset(s->kv_get);
    sqlite3_clear_bindings(s->kv_get);
    return r;
}

int party__store_kv_delete(party__store *s, const char *key) {
    int r = check_key(key);
    if (r != 0)
        return r;
    r = party__store_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(s->kv_delete, 1, key, -1, SQLITE_STATIC);
    r = party__store_step_done(s->kv_delete);
    if (r == 0 && sqlite3_changes(s->db) == 0)
        return PARTY_ENOTFOUND;
    return r;
}

int party__store_kv_list(party__store *s, const char *prefix,
                         int (*fn)(const char *key, const void *val, size_t len, void *arg),
                         void *arg) {
    sqlite3_stmt *stmt = NULL;
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    char *upper = NULL;
    int r = 0, rc;

    if (fn == NULL || (prefix != NULL && check_key(prefix) != 0))
        return PARTY_EINVAL;
    r = party__store_begin(s);
    if (r != 0)
        return r;
    /* A fresh statement per call, so fn may read or list again. Keys with
     * the prefix sort below prefix + 0xFF (no UTF-8 byte is 0xFF). */
    if (plen > 0) {
        upper = malloc(plen + 2);
        if (upper == NULL)
            return PARTY_ENOMEM;
        memcpy(upper, prefix, plen);
        upper[plen] = (char)0xFF;
        upper[plen + 1] = '\0';
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT key, value FROM _party_kv WHERE key >= ?1 AND key < ?2"
                                " ORDER BY key",
                                -1, &stmt, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(stmt, 1, prefix, (int)plen, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 2, upper, (int)plen + 1, SQLITE_STATIC);
        }
    } else {
        rc = sqlite3_prepare_v2(s->db, "SELECT key, value FROM _party_kv ORDER BY key", -1, &stmt,
                                NULL);
    }
    if (rc != SQLITE_OK) {
        free(upper);
        return PARTY_EIO;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        r = fn((const char *)sqlite3_column_text(stmt, 0), sqlite3_column_blob(stmt, 1),
               (size_t)sqlite3_column_bytes(stmt, 1), arg);
        if (r != 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = PARTY_EIO;
    sqlite3_finalize(stmt);
    free(upper);
    return r;
}

int party__store_meta_put(party__store *s, const char *key, const char *value) {
    int r = party__store_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(s->meta_put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->meta_put, 2, value, -1, SQLITE_STATIC);
    return party__store_step_done(s->meta_put);
}

char *party__store_meta_get(party__store *s, const char *key) {
    char *value = NULL;
    sqlite3_bind_text(s->meta_get, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s->meta_get) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s->meta_get, 0);
        value = text != NULL ? strdup(text) : NULL;
    }
    sqlite3_reset(s->meta_get);
    sqlite3_clear_bindings(s->meta_get);
    return value;
}

sqlite3 *party__store_db(party__store *s) {
    return s->db;
}

/* ---- alarm and schedules ---- */

/* Prepares sql, runs it to completion or to its first row (*row set). */
static int run_sql(party__store *s, const char *sql, sqlite3_stmt **out) {
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return PARTY_EIO;
    *out = stmt;
    return 0;
}

int party__store_alarm_get(party__store *s, int64_t *at_ms, int *retries) {
    sqlite3_stmt *stmt;
    int rc;
    *at_ms = 0;
    if (retries != NULL)
        *retries = 0;
    if (run_sql(s, "SELECT at_ms, retries FROM _party_alarm WHERE k = 1", &stmt) != 0)
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

int party__store_alarm_set(party__store *s, int64_t at_ms, int retries) {
    sqlite3_stmt *stmt;
    int r = party__store_begin(s);
    if (r != 0)
        return r;
    if (at_ms > 0) {
        if (run_sql(s,
                    "INSERT INTO _party_alarm (k, at_ms, retries) VALUES (1, ?1, ?2)"
                    " ON CONFLICT (k) DO UPDATE SET at_ms = excluded.at_ms,"
                    " retries = excluded.retries",
                    &stmt) != 0)
            return PARTY_EIO;
        sqlite3_bind_int64(stmt, 1, at_ms);
        sqlite3_bind_int(stmt, 2, retries);
    } else if (run_sql(s, "DELETE FROM _party_alarm", &stmt) != 0) {
        return PARTY_EIO;
    }
    r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : PARTY_EIO;
    sqlite3_finalize(stmt);
    return r;
}

int party__store_sched_add(party__store *s, const party__schedule *sc) {
    sqlite3_stmt *stmt;
    int r = party__store_begin(s);
    if (r != 0)
        return r;
    if (run_sql(s,
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
    r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : PARTY_EIO;
    sqlite3_finalize(stmt);
    return r;
}

int party__store_sched_cancel(party__store *s, const char *id) {
    sqlite3_stmt *stmt;
    int r = party__store_begin(s);
    if (r != 0)
        return r;
    if (run_sql(s, "DELETE FROM _party_schedules WHERE id = ?1", &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : PARTY_EIO;
    sqlite3_finalize(stmt);
    if (r == 0 && sqlite3_changes(s->db) == 0)
        return PARTY_ENOTFOUND;
    return r;
}

int party__store_sched_set_next(party__store *s, const char *id, int64_t next_ms) {
    sqlite3_stmt *stmt;
    int r = party__store_begin(s);
    if (r != 0)
        return r;
    if (run_sql(s, "UPDATE _party_schedules SET next_ms = ?2 WHERE id = ?1", &stmt) != 0)
        return PARTY_EIO;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, next_ms);
    r = sqlite3_step(stmt) == SQLITE_DONE ? 0 : PARTY_EIO;
    sqlite3_finalize(stmt);
    return r;
}

int64_t party__store_sched_earliest(party__store *s) {
    sqlite3_stmt *stmt;
    int64_t next = 0;
    if (run_sql(s, "SELECT min(next_ms) FROM _party_schedules", &stmt) != 0)
        return 0;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
        next = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return next;
}

int party__store_sched_each(party__store *s, int64_t until,
                            int (*fn)(const party__schedule *sc, void *arg), void *arg) {
    sqlite3_stmt *stmt;
    int r = 0, rc;
    if (run_sql(s,
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
