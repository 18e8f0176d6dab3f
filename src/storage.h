/* storage: one room's durable store — the seam between rooms and the storage
 * backend (SQLite, one WAL database file per room, named by the room id).
 * Opening, closing and committing may block on disk and run on worker
 * threads; everything else runs on the room's loop thread. A store is used
 * by one thread at a time. */
#ifndef PARTY_STORAGE_H
#define PARTY_STORAGE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "party.h"

typedef struct party__store party__store;

/* Key + value at most this many bytes (PARTY_ETOOBIG). */
#define PARTY__KV_MAX (2u * 1024 * 1024)

typedef struct party__store_options {
    const char *data_dir; /* NULL: an in-memory database (nothing survives) */
    int durability_full;  /* fsync on commit (synchronous=FULL), else NORMAL */
} party__store_options;

/* Sets what SQLite lets only be set before its first use, process-wide
 * and once: each database's page cache allocates pages as it reads them
 * rather than room for 20 up front. Call before any database is opened;
 * if SQLite was already in use (an embedder's), its settings stay. */
void party__store_configure(void);
/* Opens (creating if needed) the store of room_id. Blocking: call from a
 * worker thread. On failure returns PARTY_EIO and writes a reason into why. */
int party__store_open(const party__store_options *opt, const char *room_id, party__store **out,
                      char *why, size_t why_len);
/* Rolls back any open transaction and closes. NULL is a no-op. Blocking. */
void party__store_close(party__store *store);

/* Runs a prepared statement that returns no rows to its end, then resets
 * it and clears its bindings for the next run: 0 or PARTY_EIO. */
int party__store_step_done(sqlite3_stmt *stmt);

/* The file name of a room's store under data_dir (for tests and tools). */
int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap);

/* Transactions. begin is idempotent while one is open. commit may block
 * (fsync): call it from a worker thread when the transaction wrote. */
int party__store_begin(party__store *store);
int party__store_commit(party__store *store);
void party__store_rollback(party__store *store);
/* 1 while a transaction is open. */
int party__store_in_transaction(party__store *store);
/* 1 if the open transaction has written (through any statement). */
int party__store_has_written(party__store *store);
/* 1 if a transaction begun since the last commit or rollback ended without
 * either: SQLite rolled it back itself (a statement failed with a
 * rollback, or the room's own SQL raised one), so its writes are gone even
 * if a later one began. */
int party__store_lost_transaction(party__store *store);

/* Key-value access, inside the open transaction (begun if needed).
 * get: *val malloc'd (caller frees; NUL-terminated past len for text use),
 * PARTY_ENOTFOUND when absent. */
int party__store_kv_put(party__store *store, const char *key, const void *val, size_t len);
int party__store_kv_get(party__store *store, const char *key, void **val, size_t *len);
int party__store_kv_delete(party__store *store, const char *key);
int party__store_kv_list(party__store *store, const char *prefix,
                         int (*fn)(const char *key, const void *val, size_t len, void *arg),
                         void *arg);

/* The runtime's own metadata (room name, party), apart from user keys.
 * get returns a malloc'd NUL-terminated string, or NULL when absent. */
int party__store_meta_put(party__store *store, const char *key, const char *value);
char *party__store_meta_get(party__store *store, const char *key);

/* The room's alarm (one per room): *at_ms 0 when none. set with at_ms 0
 * deletes it. retries: failed runs so far of the alarm now set. */
int party__store_alarm_get(party__store *store, int64_t *at_ms, int *retries);
int party__store_alarm_set(party__store *store, int64_t at_ms, int retries);

/* Schedules, many per room. kind: PARTY__SCHED_AT, _EVERY or _CRON. */
enum { PARTY__SCHED_AT = 0, PARTY__SCHED_EVERY = 1, PARTY__SCHED_CRON = 2 };
typedef struct party__schedule {
    const char *id, *name, *cron; /* cron NULL unless kind CRON */
    const void *payload;
    size_t len;
    int kind;
    int64_t interval_ms; /* EVERY */
    int64_t next_ms;
} party__schedule;
int party__store_sched_add(party__store *store, const party__schedule *s);
/* PARTY_ENOTFOUND when no schedule has this id. */
int party__store_sched_cancel(party__store *store, const char *id);
int party__store_sched_set_next(party__store *store, const char *id, int64_t next_ms);
/* The earliest next_ms, or 0 when there are no schedules. */
int64_t party__store_sched_earliest(party__store *store);
/* Calls fn for schedules with next_ms <= until (INT64_MAX: all), earliest
 * first; the schedule is valid during the call; fn may not write. fn
 * returns non-zero to stop. */
int party__store_sched_each(party__store *store, int64_t until,
                            int (*fn)(const party__schedule *s, void *arg), void *arg);

/* The SQLite handle, for a room's own tables. */
sqlite3 *party__store_db(party__store *store);

#endif
