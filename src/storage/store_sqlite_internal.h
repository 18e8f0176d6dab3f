/* store_sqlite_internal: what the SQLite backend's files share, and no
 * other file includes: the backend's and a loaded room's structs, the
 * statement and connection helpers and format checks (store_sqlite_db.c),
 * the own-file rooms' ops and handle cache (store_sqlite_own.c), and the
 * shard reads and tables the own-file side needs (store_sqlite.c). */
#ifndef PARTY_STORE_SQLITE_INTERNAL_H
#define PARTY_STORE_SQLITE_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "storage.h"
#include "write_set.h"

/* ---- format versions and sizes ---- */

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

/* steps[v] brings a file from version v to v + 1 (a new file starts at 0:
 * the steps make its tables): an own file's, the alarm index's, a
 * shard's (store_sqlite_db.c). */
extern const char *const party__sqlite_room_steps[FORMAT_VERSION];
extern const char *const party__sqlite_index_steps[FORMAT_VERSION];
extern const char *const party__sqlite_shard_steps[FORMAT_VERSION];

/* ---- the backend and a loaded room ---- */

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
    /* The commits waiting for the writer (store_sqlite.c, shard_commit),
     * under queue_mutex: committing 1 while one of them commits all the
     * others that waited with it. */
    uv_mutex_t queue_mutex;
    uv_cond_t queue_cond;
    struct shard_waiter *waiting;
    int committing;
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
    /* The rooms that may have records (store_sqlite_known.c): fingerprints
     * of their ids, open addressing, under known_mutex. known_broken: it
     * could not grow, and answers "maybe" from then on. */
    uv_mutex_t known_mutex;
    int known_mutex_ok, known_broken;
    uint32_t *known;
    size_t known_cap, known_n;
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
    /* A shared room with no committed row anywhere (its shard had none and
     * it had no file when it loaded, and no commit of it was tried since):
     * its reads are its write set's alone, with no read connection. */
    int fresh;
    /* snap 1: snap_rows holds every committed kv and meta row of the room,
     * as load read them (a small room's, in the read that placed it), for
     * the reads of its first batch; dropped when that batch ends. */
    int snap;
    party__write_set snap_rows;
} sqlite_room;

/* The room store tables (the own-file one, the shared one: see "the
 * record ops" in store_sqlite.c); the backend's ops are the shared
 * table's. */
extern const party__store_ops party__sqlite_own_ops, party__sqlite_shared_ops;

/* ---- helpers (store_sqlite_db.c) ---- */

/* Checks the file's format version against steps (one of the tables
 * above) and migrates an older file to this partyd's, in one
 * transaction; a newer file is refused. what and path name the file in
 * why. 0 or PARTY_EIO with why. */
int party__sqlite_format_check(sqlite3 *db, const char *const *steps, const char *what,
                               const char *path, char *why, size_t why_len);
/* Opens path (a file, or an in-memory URI) in WAL mode with the
 * durability asked, and a page cache of cache_kib. 0 or an SQLite code
 * (then *db may be set, for its message: the caller closes it). */
int party__sqlite_connection_open(const char *path, int create, int durability_full, int cache_kib,
                                  sqlite3 **db);
/* Prepares a statement kept for the connection's life: 0 or -1. */
int party__sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt);
/* Runs a prepared statement that returns no rows to its end, then resets
 * it and clears its bindings for the next run: 0 or PARTY_EIO. */
int party__sqlite_step_done(sqlite3_stmt *stmt);
/* Resets a statement that returned rows, for its next run. */
void party__sqlite_done_with(sqlite3_stmt *stmt);
/* The PARTY_E* code of an SQLite result code: PARTY_ENOMEM or PARTY_EIO. */
int party__sqlite_code_error(int rc);
/* Makes a directory (one that exists is fine): 0 or -1 with errno. */
int party__sqlite_make_dir(const char *path);
/* Makes a directory's entries durable (a file created in it): 0 or -1. */
int party__sqlite_sync_dir(const char *path);
/* 0 if key can name a record (valid UTF-8), else PARTY_EINVAL. */
int party__sqlite_check_key(const char *key);
/* The first key above every key that starts with prefix (plen > 0 bytes):
 * prefix + 0xFF (no UTF-8 byte is 0xFF), malloc'd; NULL when out of
 * memory. A listing by prefix reads keys in [prefix, this). */
char *party__sqlite_prefix_upper(const char *prefix, size_t plen);

/* ---- shards (store_sqlite.c), for a move into an own file ---- */

/* A read connection of the shard, for one op: NULL when none can be
 * opened. Give it back with party__sqlite_reader_put. */
reader *party__sqlite_reader_get(sqlite_backend *be, shard *sh);
/* Gives a read connection back to its shard's pool. */
void party__sqlite_reader_put(shard *sh, reader *rd);
/* The schedule of the row stmt is on (its columns: id, name, payload,
 * kind, interval_ms, cron, next_ms), valid until the statement moves. */
int party__sqlite_sched_from_row(sqlite3_stmt *stmt, party__schedule *sc);
/* Binds a schedule's columns (id, name, payload, kind, interval_ms,
 * cron, next_ms) to parameters first .. first + 6, in that order. */
void party__sqlite_sched_bind(sqlite3_stmt *stmt, int first, const party__schedule *sc);
/* Where the room's records are, by its shard's _party_rooms: *own -1 (no
 * row), 0 (the shard) or 1 (its own file); and, unless 1, what its
 * wake-ups need from the shard. One read transaction for all of it: a
 * load of a shared room takes the shard's read lock once. 0 or an
 * error. */
int party__sqlite_room_place(sqlite_room *s, int *own, party__room_loaded *loaded);

/* ---- the rooms that may have records (store_sqlite_known.c) ---- */

/* Sets up the empty set: 0 or PARTY_ENOMEM. */
int party__sqlite_known_init(sqlite_backend *be);
/* Frees the set (nothing if it was never set up). */
void party__sqlite_known_free(sqlite_backend *be);
/* Fills the set when the backend opens (its shards open): every room a
 * shard lists, every file under <data>/rooms. 0, or an error with why. */
int party__sqlite_known_fill(sqlite_backend *be, char *why, size_t why_len);
/* Adds to the set every room the data directory has records of now
 * (what another process may have written since the backend opened);
 * when that cannot be read whole, the set answers "maybe" from then on.
 * Blocking; any thread. */
void party__sqlite_known_rescan(sqlite_backend *be);
/* Adds a room that may have records from now on: 0 or PARTY_ENOMEM (the
 * set then answers "maybe" to every room). Any thread. */
int party__sqlite_known_add(sqlite_backend *be, const char *room_id);
/* 1 if the room has no records (not in the set), and adds it, in one step;
 * 0 if it may have some. Any thread. */
int party__sqlite_known_claim(sqlite_backend *be, const char *room_id);

/* ---- own-file rooms (store_sqlite_own.c) ---- */

/* The record ops of an own-file room (the own-file table's: each takes
 * the room's handle first), and its wrote. */
int party__sqlite_own_wrote(party__room_store *rs);
/* Ends the batch keeping nothing; the handle goes back to the cache. */
void party__sqlite_own_rollback(party__room_store *rs);
/* Commits the room's open transaction: 0 or PARTY_EIO (rolled back).
 * Either way the handle goes back to the cache. */
int party__sqlite_own_commit(sqlite_room *s);
int party__sqlite_own_op_kv_get(party__room_store *rs, const char *key, void **val, size_t *len);
int party__sqlite_own_op_kv_put(party__room_store *rs, const char *key, const void *val,
                                size_t len);
int party__sqlite_own_op_kv_delete(party__room_store *rs, const char *key);
int party__sqlite_own_op_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                 void *arg);
int party__sqlite_own_op_meta_get(party__room_store *rs, const char *key, void **val, size_t *len);
int party__sqlite_own_op_meta_put(party__room_store *rs, const char *key, const void *val,
                                  size_t len);
int party__sqlite_own_op_meta_delete(party__room_store *rs, const char *key);
int party__sqlite_own_op_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                   void *arg);
int party__sqlite_own_op_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries);
int party__sqlite_own_op_alarm_set(party__room_store *rs, int64_t at_ms, int retries);
int party__sqlite_own_op_sched_add(party__room_store *rs, const party__schedule *sc);
int party__sqlite_own_op_sched_cancel(party__room_store *rs, const char *id);
int party__sqlite_own_op_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms);
int party__sqlite_own_op_sched_earliest(party__room_store *rs, int64_t *next_ms);
int party__sqlite_own_op_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn,
                                    void *arg);
/* The room's handle, from the cache or opened (the file at path): 0, or
 * PARTY_EIO / PARTY_ENOMEM with why said. */
int party__sqlite_own_checkout(sqlite_room *s, const char *path, char *why, size_t why_len);
/* An own-file room's record op needs its handle: 0 or PARTY_EIO. */
int party__sqlite_own_ready(sqlite_room *s);
/* The batch is over (committed or rolled back): the handle goes back to
 * the cache, most recently used. */
void party__sqlite_own_checkin(sqlite_room *s);
/* The room's handle leaves the cache and closes (a move that failed, an
 * in-memory room unloaded); without a room, the idle handle the cache
 * holds for id, if any. */
void party__sqlite_own_forget(sqlite_backend *be, sqlite_room *s, const char *id);
/* Before a load: an idle handle of the room whose file is not the one at
 * path any more (removed or replaced behind partyd's back) is closed, so
 * that the load opens what is there. */
void party__sqlite_own_forget_if_replaced(sqlite_backend *be, const char *id, const char *path);
/* Closes every handle of the cache (the backend closes). */
void party__sqlite_handles_free(sqlite_backend *be);
/* Makes <data>/rooms/<id[0..2]> and puts the own file's path in path. */
int party__sqlite_own_dir(sqlite_backend *be, const char *room_id, char *dir, size_t dir_len,
                          char *path, size_t path_len, char *why, size_t why_len);
/* Removes an own file that a move did not finish: its WAL first (a WAL
 * left alone would be replayed into the next file of that name), the file
 * itself last, so that where the file is gone nothing of it is left. 0,
 * or -1 with errno. */
int party__sqlite_own_remove(const char *path);
/* Moves a shared room's records into its own file, in one crash-safe
 * step: the own file is written and committed (and its name made
 * durable) first; the commit point is the shard's transaction that marks
 * the room own and deletes its rows there. Cut short before it, the own
 * file is a leftover that load removes (the shard still says shared). A
 * room its shard has no row for (a new one) only makes its file. */
int party__sqlite_room_move(sqlite_room *s);
/* room_file_open of an own-file room: its file, inside the open batch. */
struct sqlite3 *party__sqlite_own_room_file_open(party__room_store *rs);

#endif
