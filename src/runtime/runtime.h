/* runtime: the internal shape of party_runtime. One party_runtime per
 * process holds what every event loop shares: the configuration, the
 * registered parties, the data directory's lock, the storage backend, the
 * TLS context and the loops themselves. Each event loop is a
 * party__loop_ctx: its context (party__loop: the libuv loop, the
 * connections), its rooms (party__rooms), its router, its mailbox and
 * thread, and the handles of its per-turn work (the rooms with queued
 * events run, then one flush of every connection with output). Loop 0's
 * context is part of party_runtime and runs on the thread that calls
 * party_runtime_run; the others have threads of their own (loops.h). */
#ifndef PARTY_RUNTIME_H
#define PARTY_RUNTIME_H

#include <stddef.h>
#include <uv.h>

#include "party.h"
#include "addr.h"
#include "loop.h"
#include "rooms.h"
#include "router.h"

/* ABI 2's party_def and party_config end where ABI 3's fields begin. */
#define PARTY__ABI2 2
#define PARTY__DEF_ABI2_SIZE offsetof(party_def, sync)
#define PARTY__CONFIG_ABI2_SIZE offsetof(party_config, agents_prefix)
/* ABI 3's end where ABI 4's fields begin. */
#define PARTY__ABI3 3
#define PARTY__DEF_ABI3_SIZE offsetof(party_def, max_room_conns)
#define PARTY__CONFIG_ABI3_SIZE offsetof(party_config, proxy_protocol)

struct party__mail;

/* More event-loop threads than this are not started. */
#define PARTY_MAX_THREADS 64

/* One event loop of the runtime. */
typedef struct party__loop_ctx {
    party__loop lp;          /* first: party__loop_ctx_of finds the context from it */
    party__rooms rooms;      /* this loop's rooms */
    party__router router;    /* this loop's router */
    party_runtime *rt;       /* the process-wide runtime */
    unsigned index;          /* this loop's place in rt->loops */
    int running;             /* the loop runs (loop 0: party__runtime_begin) */
    uv_thread_t loop_thread; /* the thread running the loop */
    uv_thread_t thread;      /* loops 1..: the thread made for it */
    int thread_started;
    struct party__mail *done_mail; /* loops 1..: what tells loop 0 the thread is done */
    /* The mailbox: work other loops hand to this one (loops.c). */
    uv_async_t inbox_async;
    uv_mutex_t inbox_mutex;
    struct party__mail *inbox_head, *inbox_tail;
    int inbox_open; /* under inbox_mutex: 0 once the async is closing */
    uv_async_t stop_async;
    uv_check_t flush_check;     /* writes queued output after I/O callbacks */
    uv_prepare_t flush_prepare; /* ... and before the loop blocks */
    uv_idle_t finish_idle;      /* finishes a stopping loop at the top of a turn */
    uv_timer_t shutdown_timer;
    uv_timer_t evict_timer;      /* evicts rooms idle past idle_timeout */
    uint64_t http_ended_at_tick; /* lp.http_ended at the last eviction tick */
    uint64_t http_ended_at_trim; /* ... at the last trim */
    uint64_t handoffs_in;        /* connections other loops handed to this one (an upgrade
                                  * sees one that came after the loop drained) */
    struct party__mail *held_head, *held_tail; /* hand-offs that came while the loop's
                                                * connections were exported (loops.c) */
} party__loop_ctx;

struct party_runtime {
    party_config cfg; /* its strings point at the owned copies below */
    char *host, *prefix, *data_dir, *ops_prefix, *admin_token, *static_dir;
    char *agents_prefix; /* the Agents clients' second prefix, NULL: off */
    char *tls_cert, *tls_key;
    char *fetch_allow, *fetch_ca_file;
    char *trusted_proxies;                  /* the text, as given */
    party__cidr_list trusted_proxies_list;  /* parsed; every loop points at it */
    struct party__addr_limits *addr_limits; /* per client address; every loop's */
    char *limit_exempt;                     /* the text, as given */
    party__cidr_list limit_exempt_list;     /* parsed; every loop points at it */
    char *allowed_origins;                  /* cfg.allowed_origins's copy */
    /* Outbound HTTP requests unanswered over every loop (atomic; each
     * loop's rooms count through a pointer to it: outbound.h) */
    size_t n_outbound;
    int durability_full;
    size_t own_handles;       /* own files kept open at most (party__backend_config) */
    unsigned commit_delay_ms; /* test hook: every durable commit waits this long first */
    party__party *parties;
    size_t n_parties;
    /* the open <data_dir>/LOCK holding the data directory's flock (-1:
     * none yet, or memory-only); see party__runtime_open_data */
    int data_lock_fd;
    struct party__backend *backend; /* opened once, shared by every loop */
    char *store, *node;             /* the backend's URI and node name (runtime_store.c) */
    int no_self_fence;              /* test hook: party__runtime_set_no_self_fence */
    unsigned handoff_hold_ms;       /* 0: the backend's default (runtime_store.c) */
    unsigned store_connections;     /* 0: the backend's default (runtime_store.c) */
    /* Room-to-room requests between nodes (runtime_store.c): the secret
     * they carry, and where other nodes reach this one (NULL: the listen
     * address) */
    char *cluster_secret, *cluster_addr;
    struct party__orphans *orphans; /* on a shared store: loop 0's poller (orphans.c) */
    struct ssl_ctx_st *tls_ctx;     /* NULL: plaintext; shared by every loop */
    party__loop_ctx main;           /* loop 0 */
    party__loop_ctx **loops;        /* n_loops contexts, loops[0] == &main; NULL: one loop */
    unsigned n_loops;
    unsigned loops_running;         /* other loops whose thread still runs */
    uv_signal_t sigint, sigterm;    /* on loop 0 */
    struct party__upgrade *upgrade; /* SIGUSR2 hand-overs (upgrade.h); NULL: none */
    int exit_status;
};

/* The loop context whose party__loop lp is. */
static inline party__loop_ctx *party__loop_ctx_of(party__loop *lp) {
    return (party__loop_ctx *)(void *)((char *)lp - offsetof(party__loop_ctx, lp));
}
/* Loop 0's context: the loop party_runtime_run runs (and the test
 * harness drives). */
static inline party__loop *party__runtime_loop(party_runtime *rt) {
    return &rt->main.lp;
}
/* Loop 0's rooms. */
static inline party__rooms *party__runtime_rooms(party_runtime *rt) {
    return &rt->main.rooms;
}
/* The loop context serving conn. */
#define party__conn_ctx(conn) party__loop_ctx_of(party__conn_loop(conn))

/* max_conns when the configuration leaves it 0: the soft open-file limit
 * less a reserve. */
size_t party__default_max_conns(void);
/* How many own files (party_room_db()) the SQLite backend keeps open at
 * most, three descriptors each: a third of the open-file limit. Awake
 * rooms hold none between batches, whatever their number. */
size_t party__default_own_handles(void);

/* Makes the data directory ready, once per runtime (later calls return
 * 0): creates it (one level, mode 0755) if missing, takes
 * an exclusive flock on <data_dir>/LOCK and writes this process's pid
 * into it, then opens the storage backend (and its alarm index). No lock
 * when data_dir is NULL (memory only: the backend lives in memory). PARTY_EBUSY when
 * another runtime holds the lock (another process, or this one: flock
 * belongs to the open file, not the process); PARTY_EIO when the
 * directory, the lock file or the index cannot be made or opened;
 * PARTY_ENOMEM. Every failure is logged naming the directory and the
 * OS error, and leaves nothing open. */
int party__runtime_open_data(party_runtime *rt);
/* Chooses the storage backend before the data is opened: store NULL for
 * SQLite under the data directory, or a postgres:// URI (node: this
 * node's name in the cluster, NULL for host:pid). Copies both. 0,
 * PARTY_EINVAL (not a URI partyd knows), PARTY_ESTATE (the data is open
 * already) or PARTY_ENOMEM. */
int party__runtime_set_store(party_runtime *rt, const char *store, const char *node);
/* For tests only (partyd --test-no-self-fence): a cluster node that lost
 * its lease goes on committing and acquiring, so that only the database's
 * epoch fence stops a stale owner. Before the data is opened. */
void party__runtime_set_no_self_fence(party_runtime *rt);
/* A cluster node hands a room over to a node that asks for it only after
 * holding it ms milliseconds (0: 1000). Before the data is opened. */
void party__runtime_set_handoff_hold(party_runtime *rt, unsigned ms);
/* A cluster backend opens at most n connections for record work (0: 16).
 * Before the data is opened. */
void party__runtime_set_store_connections(party_runtime *rt, unsigned n);
/* Room-to-room requests to rooms other nodes own go to the owner, carrying
 * secret, which a node accepts them with (NULL: none are sent or
 * accepted); addr ("host:port", NULL: the listen address) is where other
 * nodes reach this one. Copies both. Before the data is opened. 0 or
 * PARTY_ENOMEM. */
int party__runtime_set_cluster(party_runtime *rt, const char *secret, const char *addr);

/* The descriptor holding the data directory's lock, opened close-on-exec,
 * owned by the runtime and closed (the lock released) by
 * party_runtime_free. -1 when none is held. An upgrade hands this one
 * descriptor to the process that takes over. */
int party__runtime_data_lock_fd(party_runtime *rt);

/* Serves with what the process an upgrade replaces handed over: the data
 * directory's lock (lock_fd; -1: none, memory only: its pid is written
 * into it) and the listening socket (listen_fd), then opens the storage
 * backend and the TLS context as party_runtime_listen would. Takes both
 * descriptors (closed on failure). 0, or party_runtime_listen's errors. */
int party__runtime_take_over(party_runtime *rt, int listen_fd, int lock_fd);

/* Starts a loop's rooms (their wake-ups); on loop 0, first opens the
 * storage backend if needed and files every room of its alarm index in
 * the heap of the loop that owns the room. Blocking (start-up). 0, or
 * PARTY_EIO / PARTY_ENOMEM (logged). */
int party__runtime_start_rooms(party__loop_ctx *lc);

/* An entry of the alarm index, for the loop lc that owns its room; party
 * is the party's place in the runtime's table. Non-zero stops the
 * reading, which returns it. */
typedef int (*party__index_file_fn)(party__loop_ctx *lc, const char *id, uint32_t party,
                                    int64_t due_ms, void *arg);
/* Reads the backend's alarm index (blocking): fn gets every entry of a
 * party served here (the others stay on disk), and the count is logged.
 * Start-up files them in the loops' heaps; a failed upgrade reads it again
 * (the new process may have set alarms). 0, or PARTY_EIO / PARTY_ENOMEM
 * or fn's result (logged). */
int party__runtime_read_alarm_index(party_runtime *rt, party__index_file_fn fn, void *arg);

/* Marks the runtime running on this thread without listening or running
 * the loop: the test harness drives the loop itself. Opens the data
 * directory first (party__runtime_open_data): its errors. */
int party__runtime_begin(party_runtime *rt);
/* Virtual clock: moves time forward and runs what came due (eviction). */
void party__runtime_advance(party_runtime *rt, uint64_t ms);

/* Called when the last connection or the last store work is done during
 * shutdown. */
void party__runtime_maybe_finish(party__loop_ctx *lc);

/* Starts a graceful stop of this loop (its own thread); on loop 0, of
 * every loop. */
void party__runtime_begin_stop(party__loop_ctx *lc);

/* ---- several loops (see loops.h) ---- */

/* The context of loop index (1..) of rt: rt's configuration and parties,
 * its own loop, handles and pools. NULL on OOM. */
party__loop_ctx *party__runtime_new_loop(party_runtime *rt, unsigned index);
/* Frees a loop made by party__runtime_new_loop whose thread is done. */
void party__runtime_free_loop(party__loop_ctx *lc);
/* Starts the eviction and keepalive timers of a loop that runs. */
void party__runtime_start_timers(party__loop_ctx *lc);
/* Open connections over every loop (read without locks: a moment's
 * count, for the max_conns check and metrics). */
size_t party__runtime_conns(party_runtime *rt);

#endif
