/* storage: the seam between rooms and where their records live. A backend
 * is an ops table, in the spirit of sqlite3_vfs, plus one process-wide
 * handle opened once; each loaded room is reached through a room store.
 * Rooms are known here only by id, party name and bytes. The table is
 * implemented by the SQLite backend (store_sqlite.c) and the PostgreSQL
 * one; it changes only on purpose, in DESIGN.md (D1). Who calls each op
 * on which thread: docs/architecture.md, "Storage seam". Which backend a
 * configuration names is backends.h's business: nothing here knows one
 * backend from another, so the backends depend on this header alone. */
#ifndef PARTY_STORAGE_H
#define PARTY_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "party.h"

/* FNV-1a (32 bits) of the len bytes at s: how the backends spread room ids
 * over shards, caches and tables. A room's shard file depends on it: never
 * change it. */
static inline uint32_t party__id_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

typedef struct party__store_ops party__store_ops;

/* The process-wide handle of a backend. An implementation's own handle
 * starts with one of these (it is what open returns). */
typedef struct party__backend {
    const party__store_ops *ops;
    /* 1 if commit_batch may run on a loop thread for rooms whose wake time
     * did not change: such a commit waits for no disk and no network
     * (SQLite with durability normal). 0: commits run on worker threads. */
    int commit_on_loop;
    /* 1 if a load costs less than starting and ending a thread (it waits
     * for no network: SQLite): the rooms that come to load in one loop
     * turn are loaded one after another on one worker job. 0: each on a
     * job of its own (rooms woken by their alarm still go together). */
    int load_in_groups;
    /* A cluster backend's name of this node (valid until close); NULL for
     * a backend one process holds. */
    const char *node;
    /* A cluster backend's connections found closed by the server (a
     * restart, an idle timeout) and replaced by new ones before anything
     * was lost on them. Written by worker threads, read with
     * __atomic_load_n. */
    uint64_t reconnects;
} party__backend;

/* One loaded room's records. An implementation's own handle starts with
 * one of these (it is what load returns). Used by one thread at a time. */
typedef struct party__room_store {
    const party__store_ops *ops;
    /* 1 once an op may have left the batch something to commit or end (set
     * by the party__store_* calls below and on load; cleared by rollback).
     * While 0, "wrote?" and the rollback that ends a batch are answered
     * here: most batches of a room that stores nothing (echo, chat) never
     * reach the backend. */
    unsigned touched;
} party__room_store;

typedef struct party__backend_config {
    const char *data_dir; /* NULL: in memory (nothing survives the process) */
    int durability_full;  /* a commit reaches the disk before it returns (fsync) */
    const char *store;    /* NULL: SQLite under data_dir; "postgres://..." (or
                             "postgresql://"): the PostgreSQL backend (store_pg.c) */
    const char *node;     /* a cluster backend's name of this node (NULL: host:pid) */
    size_t own_handles;   /* SQLite: own files' connections kept open at most (each
                             holds 3 descriptors; rooms in a batch may go past
                             it); 0: the backend's default */
    int no_self_fence;    /* test hook: a node that lost its lease still commits (the
                             database's fence alone refuses a stale owner) */
    /* A cluster backend's way up to the rooms (the storage layer reaches
     * them only through this; docs/architecture.md, "Upward callbacks"):
     * called on a thread of the backend's when this node must give the
     * room up — another node asked for it (a hand-off), or this node lost
     * its lease. The callee finishes the room's batch, closes its
     * connections with 1012 and evicts it, which releases it. NULL: none
     * (the backend then never hands a room over). */
    void (*give_up)(void *arg, const char *room_id);
    void *give_up_arg;
    /* A room is handed over only after this node held it this long (ms),
     * so that rooms cannot bounce between nodes; 0: the default, 1000. */
    unsigned handoff_hold_ms;
    /* A cluster backend's connections for record work (loads, commits,
     * acquires) at most, besides its control connection; 0: 16. */
    unsigned max_connections;
    /* Where other nodes reach this one for room-to-room requests
     * ("host:port"), recorded with the node; NULL: nowhere. */
    const char *addr;
} party__backend_config;

/* An acquire or release in flight. The caller fills every field but
 * backend_data and keeps the request alive until done runs; done runs on
 * the room's loop thread, possibly before acquire or release returns. */
typedef struct party__store_req party__store_req;
struct party__store_req {
    uv_loop_t *loop;     /* the room's loop: done runs there */
    const char *room_id; /* valid until done */
    const char *party;   /* the room's party (URL name); valid until done */
    void (*done)(party__store_req *req, int status);
    void *data;         /* the caller's */
    void *backend_data; /* the backend's, until done */
    /* Set by a successful acquire before done: the room's epoch on a
     * cluster backend (> 0, larger at each new owner), else left 0. */
    int64_t epoch;
};

/* What a room's wake-ups need, read by load. */
typedef struct party__room_loaded {
    int64_t alarm_at;   /* epoch ms, 0: no alarm */
    int alarm_retries;  /* failed runs so far of the alarm now set */
    int64_t sched_next; /* the earliest schedule, 0: none */
} party__room_loaded;

/* One room of a commit_batch. */
typedef struct party__commit {
    party__room_store *store;
    int64_t wake_ms;  /* the room's wake time after this batch (alarm or schedule), 0: none */
    int wake_changed; /* the alarm index may hold another time: file wake_ms */
} party__commit;

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

/* Key + value at most this many bytes (PARTY_ETOOBIG). */
#define PARTY__KV_MAX (2u * 1024 * 1024)

/* Record visitors: key and val are valid during the call; non-zero stops
 * (and is returned). They must not write. */
typedef int (*party__kv_fn)(const char *key, const void *val, size_t len, void *arg);
typedef int (*party__sched_fn)(const party__schedule *s, void *arg);
/* An alarm index entry: the room wakes at due_ms. */
typedef int (*party__index_fn)(const char *room_id, const char *party, int64_t due_ms, void *arg);

/* The ops table. Results are 0 or a negative PARTY_E* code; why (when
 * given) receives a one-line reason on failure. "Blocking" ops may wait
 * for a disk or a network and run on worker threads (open and close at
 * start-up and shutdown). Every store a backend keeps records a format
 * version, checked at open and load: older data is migrated, newer data
 * refused with a reason naming both versions. */
struct party__store_ops {
    const char *name; /* for logs: "sqlite", "postgres" */

    /* ---- the backend (blocking; once per process) ---- */

    /* Opens the backend and its alarm index. */
    int (*open)(const party__backend_config *cfg, party__backend **out, char *why, size_t why_len);
    /* Closes it, giving up every room still acquired. No room store may
     * be in use. NULL is a no-op. */
    void (*close)(party__backend *be);

    /* ---- ownership (a room's loop thread; asynchronous) ---- */

    /* Makes this process the room's only writer before its first load
     * (a cluster backend takes the room's epoch: see
     * reference/scale-out-research.md). req->done(req, 0) once it is;
     * PARTY_EBUSY: someone else holds the room, try again later. It may
     * take time: the room's events wait meanwhile. */
    void (*acquire)(party__backend *be, party__store_req *req);
    /* Gives the room up after its store was unloaded for good (eviction).
     * req->done(req, 0 or an error, which changes nothing for the caller). */
    void (*release)(party__backend *be, party__store_req *req);

    /* ---- a room's records (blocking: worker thread) ---- */

    /* Brings an acquired room's records within reach: *out is its store,
     * *loaded what its wake-ups need. A room with no records yet gets an
     * empty store. party stays valid until unload. */
    int (*load)(party__backend *be, const char *room_id, const char *party, party__room_store **out,
                party__room_loaded *loaded, char *why, size_t why_len);
    /* Drops the store; writes not committed are lost. NULL is a no-op. */
    void (*unload)(party__room_store *rs);
    /* load without I/O, on the room's loop thread, for a room the backend
     * knows has no records: 0 with *out and *loaded as load gives them;
     * 1 when it cannot tell without reading (then load, on a worker
     * thread). It must never take a room with records for a new one.
     * NULL: every load is load's. */
    int (*load_quick)(party__backend *be, const char *room_id, const char *party,
                      party__room_store **out, party__room_loaded *loaded);
    /* Another process may have written records since open (a new
     * process that took over and died, the old one serving again): what
     * load_quick knows is read again, so that it takes none of those
     * rooms for new. Blocking (loop 0, all loops frozen). NULL with no
     * load_quick. */
    void (*rescan)(party__backend *be);

    /* ---- records (synchronous: the thread that holds the room, its
     * loop; inside the room's open batch, which the first op begins) ---- */

    /* The user's key-value records. get: *val malloc'd, NUL-terminated
     * past *len (len may be NULL), PARTY_ENOTFOUND when absent. list: in
     * key order, keys starting with prefix (NULL or "": all). */
    int (*kv_get)(party__room_store *rs, const char *key, void **val, size_t *len);
    int (*kv_put)(party__room_store *rs, const char *key, const void *val, size_t len);
    int (*kv_delete)(party__room_store *rs, const char *key); /* PARTY_ENOTFOUND when absent */
    int (*kv_list)(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg);
    /* The runtime's own records of the room, apart from the user's keys:
     * "name" and "party" today; later features keep theirs here too.
     * Same shapes as kv_*. */
    int (*meta_get)(party__room_store *rs, const char *key, void **val, size_t *len);
    int (*meta_put)(party__room_store *rs, const char *key, const void *val, size_t len);
    int (*meta_delete)(party__room_store *rs, const char *key);
    int (*meta_list)(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg);
    /* The room's alarm: *at_ms 0 when none (retries may be NULL); set
     * with at_ms 0 deletes it. */
    int (*alarm_get)(party__room_store *rs, int64_t *at_ms, int *retries);
    int (*alarm_set)(party__room_store *rs, int64_t at_ms, int retries);
    /* Schedules. cancel: PARTY_ENOTFOUND when no schedule has this id.
     * earliest: the smallest next_ms, 0 when none. each: schedules with
     * next_ms <= until (INT64_MAX: all), earliest first, then by id. */
    int (*sched_add)(party__room_store *rs, const party__schedule *s);
    int (*sched_cancel)(party__room_store *rs, const char *id);
    int (*sched_set_next)(party__room_store *rs, const char *id, int64_t next_ms);
    int (*sched_earliest)(party__room_store *rs, int64_t *next_ms);
    int (*sched_each)(party__room_store *rs, int64_t until, party__sched_fn fn, void *arg);
    /* The room's own SQLite database (party_room_db()), inside the open
     * batch; its records move into that file first if they live
     * elsewhere, in one crash-safe step. NULL if it cannot be had. */
    struct sqlite3 *(*room_file_open)(party__room_store *rs);

    /* ---- the open batch (the room's thread) ---- */

    /* 1 if the open batch has written, by any op or through the room's own
     * file (or lost writes it made): its output must wait for
     * commit_batch. Asked on every send of a running room: cheap. */
    int (*wrote)(party__room_store *rs);
    /* Ends the open batch keeping nothing it wrote (a batch that did not
     * write ends here too). */
    void (*rollback)(party__room_store *rs);

    /* ---- commits (blocking: a worker thread; a loop thread only as
     * party__backend.commit_on_loop allows) ---- */

    /* Commits the open batch of each room, and files each wake time that
     * changed in the alarm index in the same call. results[i] for
     * rooms[i]: 0, its batch is durable and the index has its wake time;
     * PARTY_EIO, nothing of its batch is kept (its store stays usable)
     * and the index has its committed wake time or an earlier one (an
     * early entry costs one wake-up with nothing due, never a missed
     * one); PARTY_EFENCED, the room is owned elsewhere now: nothing of this
     * batch is kept, nor will be of a later one (the caller unloads the
     * store). One room's failure does not fail the others. */
    void (*commit_batch)(party__backend *be, const party__commit *rooms, size_t n, int *results);

    /* ---- the alarm index (blocking) ---- */

    /* Calls fn for every entry: at start-up, to fill the wake-up heap. fn
     * must not call the backend. */
    int (*index_load)(party__backend *be, party__index_fn fn, void *arg);
    /* Calls fn for the entries due at or before until_ms, earliest first
     * (a backend shared by several processes: to find due rooms that no
     * process holds). */
    int (*index_due)(party__backend *be, int64_t until_ms, party__index_fn fn, void *arg);

    /* ---- a cluster backend's own (NULL in a backend one process holds;
     * reached through the party__backend_* calls below) ---- */

    /* 0 if the backend can commit now; PARTY_EFENCED with why when this
     * node lost its lease (or is past its local deadline for renewing
     * it). No I/O: for health checks. */
    int (*check)(party__backend *be, char *why, size_t why_len);
    /* Where the room's owner is reached when another live node owns it:
     * 1 with its "host:port" in addr; 0 when no other live node owns it;
     * a negative PARTY_E* code when it cannot be told. Blocking. */
    int (*owner_addr)(party__backend *be, const char *room_id, char *addr, size_t cap);
    /* Records where other nodes reach this one ("host:port") with the
     * node, at its next heartbeat. */
    void (*set_addr)(party__backend *be, const char *addr);
};

/* The SQLite backend's table (store_sqlite.c). */
const party__store_ops *party__store_sqlite_ops(void);

/* The PostgreSQL backend's table (store_pg.c). */
const party__store_ops *party__store_pg_ops(void);

/* 0 if the backend can commit now; a cluster backend that lost its node
 * lease (or is past its local deadline for renewing it) says PARTY_EFENCED
 * with why. No I/O: for health checks. */
static inline int party__backend_check(party__backend *be, char *why, size_t why_len) {
    if (be == NULL || be->ops->check == NULL)
        return 0;
    return be->ops->check(be, why, why_len);
}

/* Where the room's owner is reached when another live node owns it
 * (a cluster backend): 1 with its "host:port" in addr; 0 when no other
 * live node owns it (this process may serve it); a negative PARTY_E*
 * code when it cannot be told. Blocking: a worker thread. */
static inline int party__backend_owner_addr(party__backend *be, const char *room_id, char *addr,
                                            size_t cap) {
    if (be == NULL || be->ops->owner_addr == NULL)
        return 0;
    return be->ops->owner_addr(be, room_id, addr, cap);
}

/* Where other nodes reach this one ("host:port"), once it listens: a
 * cluster backend records it with the node (at its next heartbeat). */
static inline void party__backend_set_addr(party__backend *be, const char *addr) {
    if (be != NULL && be->ops->set_addr != NULL)
        be->ops->set_addr(be, addr);
}

/* Closes a backend (backends.h's party__backend_open opened it). NULL is
 * a no-op. */
static inline void party__backend_close(party__backend *be) {
    if (be != NULL)
        be->ops->close(be);
}

/* Process-wide settings of the SQLite library, once and before any
 * database opens (see store_sqlite.c); if SQLite was already in use (an
 * embedder's), its settings stay. */
void party__store_configure(void);
/* The file of an own-file room under data_dir (SQLite; for tests and
 * tools). */
int party__store_path(const char *data_dir, const char *room_id, char *out, size_t cap);

/* The record ops, called through the room store's table. */
static inline int party__store_kv_get(party__room_store *rs, const char *key, void **val,
                                      size_t *len) {
    rs->touched = 1;
    return rs->ops->kv_get(rs, key, val, len);
}
static inline int party__store_kv_put(party__room_store *rs, const char *key, const void *val,
                                      size_t len) {
    rs->touched = 1;
    return rs->ops->kv_put(rs, key, val, len);
}
static inline int party__store_kv_delete(party__room_store *rs, const char *key) {
    rs->touched = 1;
    return rs->ops->kv_delete(rs, key);
}
static inline int party__store_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                       void *arg) {
    rs->touched = 1;
    return rs->ops->kv_list(rs, prefix, fn, arg);
}
static inline int party__store_meta_get(party__room_store *rs, const char *key, void **val,
                                        size_t *len) {
    rs->touched = 1;
    return rs->ops->meta_get(rs, key, val, len);
}
static inline int party__store_meta_put(party__room_store *rs, const char *key, const void *val,
                                        size_t len) {
    rs->touched = 1;
    return rs->ops->meta_put(rs, key, val, len);
}
static inline int party__store_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    rs->touched = 1;
    return rs->ops->alarm_get(rs, at_ms, retries);
}
static inline int party__store_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    rs->touched = 1;
    return rs->ops->alarm_set(rs, at_ms, retries);
}
static inline int party__store_sched_add(party__room_store *rs, const party__schedule *s) {
    rs->touched = 1;
    return rs->ops->sched_add(rs, s);
}
static inline int party__store_sched_cancel(party__room_store *rs, const char *id) {
    rs->touched = 1;
    return rs->ops->sched_cancel(rs, id);
}
static inline int party__store_sched_set_next(party__room_store *rs, const char *id,
                                              int64_t next_ms) {
    rs->touched = 1;
    return rs->ops->sched_set_next(rs, id, next_ms);
}
/* The earliest schedule into *next_ms (0 when none). 0, or an error (then
 * *next_ms is left as it was: a caller must not read "no schedules"). */
static inline int party__store_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    int64_t next = 0;
    int r;
    rs->touched = 1;
    r = rs->ops->sched_earliest(rs, &next);
    if (r == 0)
        *next_ms = next;
    return r;
}
static inline int party__store_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn,
                                          void *arg) {
    rs->touched = 1;
    return rs->ops->sched_each(rs, until, fn, arg);
}
static inline int party__store_meta_delete(party__room_store *rs, const char *key) {
    rs->touched = 1;
    return rs->ops->meta_delete(rs, key);
}
static inline int party__store_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn,
                                         void *arg) {
    rs->touched = 1;
    return rs->ops->meta_list(rs, prefix, fn, arg);
}
static inline struct sqlite3 *party__store_room_file_open(party__room_store *rs) {
    rs->touched = 1;
    return rs->ops->room_file_open(rs);
}
static inline int party__store_wrote(party__room_store *rs) {
    return rs->touched && rs->ops->wrote(rs);
}
/* Ends the batch without committing it (a read-only one, or a failure). */
static inline void party__store_rollback(party__room_store *rs) {
    if (!rs->touched)
        return;
    rs->touched = 0;
    rs->ops->rollback(rs);
}

#endif
