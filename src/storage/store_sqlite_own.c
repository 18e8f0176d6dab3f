/* store_sqlite_own: the SQLite backend's own-file rooms. A room that opens
 * its own database (party_room_db) moves its records into
 * <data>/rooms/<id[0..2]>/<id>.db in one crash-safe step and is served
 * from that file from then on, like the per-room files of earlier
 * partyds, its open batch a transaction there. Its connection comes from
 * a bounded cache of own-file handles for the length of a batch, so an
 * awake own-file room holds no descriptor between batches. Here: the
 * own-file table's record ops, the handle cache and the move. */
#include "store_sqlite_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

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
    r = party__sqlite_step_done(s->begin);
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

int party__sqlite_own_wrote(party__room_store *rs) {
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
void party__sqlite_own_rollback(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    s->begun = s->lost = s->wrote = 0;
    if (s->db != NULL && in_transaction(s))
        (void)party__sqlite_step_done(s->rollback);
    party__sqlite_own_checkin(s);
}

/* Commits the room's open transaction: 0 or PARTY_EIO (rolled back).
 * Either way the handle goes back to the cache. */
int party__sqlite_own_commit(sqlite_room *s) {
    int open;
    if (s->db == NULL)
        return 0; /* no batch began in the file */
    open = in_transaction(s);
    if (s->lost || (s->begun && !open)) {
        party__sqlite_own_rollback(&s->base);
        return PARTY_EIO;
    }
    s->begun = s->lost = s->wrote = 0;
    if (open && party__sqlite_step_done(s->commit) != 0) {
        party__sqlite_own_rollback(&s->base);
        return PARTY_EIO;
    }
    party__sqlite_own_checkin(s);
    return 0;
}

/* ---- an own-file room's key-value records: the user's (_party_kv) and the
 * runtime's (_party_meta) ---- */

static int pairs_put(sqlite_room *s, sqlite3_stmt *put, const char *key, const void *val,
                     size_t len, int text) {
    int r = party__sqlite_check_key(key);
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
    return wrote_if(s, party__sqlite_step_done(put));
}

static int pairs_get(sqlite_room *s, sqlite3_stmt *get, int begin, const char *key, void **val,
                     size_t *len) {
    int r = party__sqlite_check_key(key), rc;
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
    int r = party__sqlite_check_key(key);
    if (r != 0)
        return r;
    r = room_begin(s);
    if (r != 0)
        return r;
    sqlite3_bind_text(del, 1, key, -1, SQLITE_STATIC);
    r = wrote_if(s, party__sqlite_step_done(del));
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

    if (fn == NULL || (prefix != NULL && party__sqlite_check_key(prefix) != 0))
        return PARTY_EINVAL;
    r = room_begin(s);
    if (r != 0)
        return r;
    /* A fresh statement per call, so fn may read or list again. Keys with
     * the prefix sort below prefix + 0xFF (no UTF-8 byte is 0xFF). */
    if (plen > 0) {
        upper = party__sqlite_prefix_upper(prefix, plen);
        if (upper == NULL)
            return PARTY_ENOMEM;
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
    party__sqlite_sched_bind(stmt, 1, sc);
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

/* ---- the own-file table's record ops: each takes the room's handle
 * first ---- */

int party__sqlite_own_op_kv_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO : pairs_get(s, s->kv_get, 1, key, val, len);
}

int party__sqlite_own_op_kv_put(party__room_store *rs, const char *key, const void *val,
                                size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO : pairs_put(s, s->kv_put, key, val, len, 0);
}

int party__sqlite_own_op_kv_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO : pairs_delete(s, s->kv_delete, key);
}

int party__sqlite_own_op_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                 void *arg) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO
                                           : pairs_list(s, "_party_kv", prefix, fn, arg);
}

int party__sqlite_own_op_meta_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    sqlite_room *s = (sqlite_room *)rs;
    /* Outside the batch's transaction, as the runtime reads its records
     * between batches too (after a failed commit). */
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO
                                           : pairs_get(s, s->meta_get, 0, key, val, len);
}

int party__sqlite_own_op_meta_put(party__room_store *rs, const char *key, const void *val,
                                  size_t len) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO
                                           : pairs_put(s, s->meta_put, key, val, len, 1);
}

int party__sqlite_own_op_meta_delete(party__room_store *rs, const char *key) {
    sqlite_room *s = (sqlite_room *)rs;
    sqlite3_stmt *del = NULL;
    int r;
    if (party__sqlite_own_ready(s) != 0)
        return PARTY_EIO;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM _party_meta WHERE key = ?1", -1, &del, NULL) !=
        SQLITE_OK)
        return PARTY_EIO;
    r = pairs_delete(s, del, key);
    sqlite3_finalize(del);
    return r;
}

int party__sqlite_own_op_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                   void *arg) {
    sqlite_room *s = (sqlite_room *)rs;
    return party__sqlite_own_ready(s) != 0 ? PARTY_EIO
                                           : pairs_list(s, "_party_meta", prefix, fn, arg);
}

int party__sqlite_own_op_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO
                                                           : own_alarm_get(rs, at_ms, retries);
}

int party__sqlite_own_op_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO
                                                           : own_alarm_set(rs, at_ms, retries);
}

int party__sqlite_own_op_sched_add(party__room_store *rs, const party__schedule *sc) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_add(rs, sc);
}

int party__sqlite_own_op_sched_cancel(party__room_store *rs, const char *id) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO : own_sched_cancel(rs, id);
}

int party__sqlite_own_op_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO
                                                           : own_sched_set_next(rs, id, next_ms);
}

int party__sqlite_own_op_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO
                                                           : own_sched_earliest(rs, next_ms);
}

int party__sqlite_own_op_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn,
                                    void *arg) {
    return party__sqlite_own_ready((sqlite_room *)rs) != 0 ? PARTY_EIO
                                                           : own_sched_each(rs, until, fn, arg);
}

/* ---- opening and closing an own file ---- */

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
    if (party__sqlite_connection_open(path, 1, be->durability_full, 256, &s->db) != SQLITE_OK)
        goto fail;
    if (party__sqlite_format_check(s->db, party__sqlite_room_steps, "", path, why, why_len) != 0) {
        own_close(s);
        return PARTY_EIO;
    }
    if (party__sqlite_prepare(s->db, "BEGIN", &s->begin) ||
        party__sqlite_prepare(s->db, "COMMIT", &s->commit) ||
        party__sqlite_prepare(s->db, "ROLLBACK", &s->rollback) ||
        party__sqlite_prepare(s->db,
                              "INSERT INTO _party_kv (key, value) VALUES (?1, ?2)"
                              " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                              &s->kv_put) ||
        party__sqlite_prepare(s->db, "SELECT value FROM _party_kv WHERE key = ?1", &s->kv_get) ||
        party__sqlite_prepare(s->db, "DELETE FROM _party_kv WHERE key = ?1", &s->kv_delete) ||
        party__sqlite_prepare(s->db,
                              "INSERT INTO _party_meta (key, value) VALUES (?1, ?2)"
                              " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                              &s->meta_put) ||
        party__sqlite_prepare(s->db, "SELECT value FROM _party_meta WHERE key = ?1", &s->meta_get))
        goto fail;
    return 0;
fail:
    describe_open_failure(s, path, why, why_len);
    own_close(s);
    return PARTY_EIO;
}

/* ---- the own-file handle cache ---- */

static size_t handle_bucket(const sqlite_backend *be, const char *id) {
    return party__id_hash(id, strlen(id)) & (be->handle_buckets_cap - 1);
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
int party__sqlite_own_checkout(sqlite_room *s, const char *path, char *why, size_t why_len) {
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
int party__sqlite_own_ready(sqlite_room *s) {
    char path[4096], why[512];
    if (s->h != NULL)
        return 0;
    if (own_path(s, path, sizeof(path)) != 0)
        return PARTY_EIO;
    return party__sqlite_own_checkout(s, path, why, sizeof(why)) == 0 ? 0 : PARTY_EIO;
}

/* The batch is over (committed or rolled back): the handle goes back to
 * the cache, most recently used. */
void party__sqlite_own_checkin(sqlite_room *s) {
    sqlite_backend *be = s->backend;
    own_handle *h = s->h, *victims;
    if (h == NULL)
        return;
    if (!sqlite3_get_autocommit(h->db))
        (void)party__sqlite_step_done(h->rollback);
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
void party__sqlite_own_forget(sqlite_backend *be, sqlite_room *s, const char *id) {
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
void party__sqlite_own_forget_if_replaced(sqlite_backend *be, const char *id, const char *path) {
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
        party__sqlite_own_forget(be, NULL, id);
}

void party__sqlite_handles_free(sqlite_backend *be) {
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
int party__sqlite_own_dir(sqlite_backend *be, const char *room_id, char *dir, size_t dir_len,
                          char *path, size_t path_len, char *why, size_t why_len) {
    snprintf(dir, dir_len, "%s/rooms", be->data_dir);
    if (party__sqlite_make_dir(be->data_dir) != 0 || party__sqlite_make_dir(dir) != 0) {
        snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
        return PARTY_EIO;
    }
    snprintf(dir, dir_len, "%s/rooms/%.2s", be->data_dir, room_id);
    if (party__sqlite_make_dir(dir) != 0 ||
        party__store_path(be->data_dir, room_id, path, path_len) != 0) {
        snprintf(why, why_len, "cannot create %s: %s", dir, strerror(errno));
        return PARTY_EIO;
    }
    return 0;
}

/* Removes an own file that a move did not finish: its WAL first (a WAL
 * left alone would be replayed into the next file of that name), the file
 * itself last, so that where the file is gone nothing of it is left. 0,
 * or -1 with errno. */
int party__sqlite_own_remove(const char *path) {
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

/* ---- moving a shared room's records into its own file ---- */

/* Puts every (key, value) row the shard's list statement gives for the
 * room into its own file with put: 0 or an error. */
static int copy_pairs(sqlite_room *s, sqlite3_stmt *list, sqlite3_stmt *put) {
    int r = 0, rc = SQLITE_DONE;
    sqlite3_bind_text(list, 1, s->id, -1, SQLITE_STATIC);
    while (r == 0 && (rc = sqlite3_step(list)) == SQLITE_ROW) {
        sqlite3_bind_value(put, 1, sqlite3_column_value(list, 0));
        sqlite3_bind_value(put, 2, sqlite3_column_value(list, 1));
        r = party__sqlite_step_done(put);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = party__sqlite_code_error(rc);
    party__sqlite_done_with(list);
    return r;
}

/* Copies the room's committed rows from its shard into its own file, and
 * commits them there. */
static int move_copy(sqlite_room *s) {
    reader *rd = party__sqlite_reader_get(s->backend, s->shard);
    party__schedule sc;
    int r, rc = SQLITE_DONE;

    if (rd == NULL)
        return PARTY_EIO;
    r = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : PARTY_EIO;
    if (r == 0)
        r = copy_pairs(s, rd->kv_list, s->kv_put);
    if (r == 0)
        r = copy_pairs(s, rd->meta_list, s->meta_put);
    sqlite3_bind_text(rd->alarm_get, 1, s->id, -1, SQLITE_STATIC);
    if (r == 0 && (rc = sqlite3_step(rd->alarm_get)) == SQLITE_ROW)
        r = own_alarm_set(&s->base, sqlite3_column_int64(rd->alarm_get, 0),
                          sqlite3_column_int(rd->alarm_get, 1));
    else if (r == 0 && rc != SQLITE_DONE)
        r = party__sqlite_code_error(rc);
    party__sqlite_done_with(rd->alarm_get);
    sqlite3_bind_text(rd->sched_due, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(rd->sched_due, 2, INT64_MAX);
    while (r == 0 && (rc = sqlite3_step(rd->sched_due)) == SQLITE_ROW) {
        r = party__sqlite_sched_from_row(rd->sched_due, &sc);
        if (r == 0)
            r = own_sched_add(&s->base, &sc);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = party__sqlite_code_error(rc);
    party__sqlite_done_with(rd->sched_due);
    party__sqlite_reader_put(s->shard, rd);
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
    r = party__sqlite_step_done(sh->begin);
    sqlite3_bind_text(sh->room_own, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(sh->room_own, 2, s->party, -1, SQLITE_STATIC);
    if (r == 0)
        r = party__sqlite_step_done(sh->room_own);
    else
        party__sqlite_done_with(sh->room_own);
    for (i = 0; i < sizeof(clears) / sizeof(clears[0]); i++) {
        sqlite3_bind_text(clears[i], 1, s->id, -1, SQLITE_STATIC);
        if (r == 0)
            r = party__sqlite_step_done(clears[i]);
        else
            party__sqlite_done_with(clears[i]);
    }
    if (r == 0)
        r = party__sqlite_step_done(sh->commit);
    if (r != 0 && !sqlite3_get_autocommit(sh->writer))
        (void)party__sqlite_step_done(sh->rollback);
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
int party__sqlite_room_move(sqlite_room *s) {
    sqlite_backend *be = s->backend;
    char path[4096], dir[4096], why[512];
    party__room_loaded unused;
    int r, own;

    /* A room with no row in its shard has no records there: its own file
     * is all it needs (load takes a file with no row for the room's), and
     * what it holds is made durable by the batch's commit. */
    if ((r = party__sqlite_room_place(s, &own, &unused)) != 0)
        return r;
    snprintf(path, sizeof(path), ":memory:");
    /* A handle the cache may hold for a file of this name is stale. */
    party__sqlite_own_forget(be, NULL, s->id);
    if (be->data_dir != NULL) {
        if (party__sqlite_own_dir(be, s->id, dir, sizeof(dir), path, sizeof(path), why,
                                  sizeof(why)) != 0 ||
            party__sqlite_own_remove(path) != 0)
            return PARTY_EIO;
    }
    if (party__sqlite_own_checkout(s, path, why, sizeof(why)) != 0)
        return PARTY_EIO;
    r = own < 0 ? 0 : move_copy(s);
    if (r == 0 && own >= 0 && be->data_dir != NULL && be->durability_full) {
        if (party__sqlite_sync_dir(dir) != 0)
            r = PARTY_EIO;
        snprintf(dir, sizeof(dir), "%s/rooms", be->data_dir);
        if (r == 0 && party__sqlite_sync_dir(dir) != 0)
            r = PARTY_EIO;
    }
    if (r == 0 && own >= 0)
        r = move_flip(s);
    if (r != 0) {
        party__sqlite_own_forget(be, s, s->id);
        if (be->data_dir != NULL)
            (void)party__sqlite_own_remove(path);
        return r;
    }
    s->own = 1;
    s->base.ops = &party__sqlite_own_ops;
    r = move_write_set(s);
    if (r != 0 || s->broken) {
        /* The move holds; the batch cannot: it fails at its commit. */
        s->begun = s->lost = 1;
        s->broken = 0;
    }
    return r;
}

struct sqlite3 *party__sqlite_own_room_file_open(party__room_store *rs) {
    sqlite_room *s = (sqlite_room *)rs;
    if (party__sqlite_own_ready(s) != 0)
        return NULL;
    return room_begin(s) == 0 ? s->db : NULL;
}
