/* runtime: the internal shape of party_runtime — the event loop, the
 * listening socket, the registered parties, the table of rooms in memory,
 * and the per-loop-turn work lists (rooms with queued events, connections
 * with bytes to write). With several event-loop threads there is one
 * party_runtime per loop: the one the user holds is loop 0 (the "main"
 * one, which owns the configuration, the parties, the storage backend and
 * the TLS context); the others share those by pointer (see loops.h). */
#ifndef PARTY_RUNTIME_H
#define PARTY_RUNTIME_H

#include <uv.h>

#include "party.h"
#include "alarm.h"

typedef struct party__room_list {
    struct party_room *head, *tail;
} party__room_list;

typedef struct party__party {
    const party_def *def;
    char *name; /* as registered (the URL name) */
} party__party;

#define PARTY__READ_BUF_SIZE (64 * 1024)

struct party__mail;

struct party_runtime {
    party_config cfg;             /* strings point at owned copies (loop 0's) */
    struct party_runtime *main;   /* loop 0; itself on loop 0 */
    struct party_runtime **loops; /* main only: n_loops runtimes, loops[0] == main */
    unsigned n_loops;             /* main only (1 on the others) */
    unsigned loop_index;          /* this loop's place in main->loops */
    unsigned loops_running;       /* main only: other loops whose thread still runs */
    uv_thread_t thread;           /* other loops: the thread that runs the loop */
    int thread_started;
    struct party__mail *done_mail; /* other loops: what tells main the thread is done */
    /* The mailbox: work other loops hand to this one (loops.c). */
    uv_async_t inbox_async;
    uv_mutex_t inbox_mutex;
    struct party__mail *inbox_head, *inbox_tail;
    int inbox_open; /* under inbox_mutex: 0 once the async is closing */
    char *host, *prefix, *data_dir, *ops_prefix, *admin_token, *static_dir;
    /* main only: the open <data_dir>/LOCK holding the data directory's
     * flock (-1: none yet, or memory-only); see party__runtime_open_data */
    int data_lock_fd;
    int durability_full;
    char *store, *node; /* main only: the storage backend's URI and node name (runtime_store.c) */
    uv_loop_t loop;
    uv_poll_t listener; /* watches listen_fd (listener.c) */
    int listening;
    int listen_fd; /* -1 when not listening */
    int spare_fd;  /* kept open to be given up when accept() hits EMFILE */
    uv_signal_t sigint, sigterm;
    uv_async_t stop_async;
    uv_check_t flush_check;     /* writes queued output after I/O callbacks */
    uv_prepare_t flush_prepare; /* ... and before the loop blocks */
    uv_idle_t drain_idle;       /* runs queued room events without blocking in poll */
    uv_timer_t shutdown_timer;

    party__party *parties;
    size_t n_parties;

    struct party_room **rooms; /* open hash table keyed by room id */
    size_t rooms_cap, n_rooms;

    struct party_room *ready_head, *ready_tail; /* rooms with queued events */
    party__room_list idle;  /* rooms with no connections and nothing to do, oldest first */
    party__room_list quiet; /* hibernating parties' rooms with only connections */
    uint64_t rooms_hibernated;
    int trim_pending;                  /* memory was freed in bulk: return it at the next tick */
    uint64_t http_ended;               /* HTTP phases ended (handshakes, requests answered) */
    uint64_t http_ended_at_tick;       /* ... at the last eviction tick */
    uint64_t http_ended_at_trim;       /* ... at the last trim */
    uv_timer_t evict_timer;            /* evicts rooms idle past idle_timeout */
    uv_timer_t keepalive_timer;        /* pings idle WebSockets every ping_interval */
    struct party__buf *keepalive_ping; /* the Ping frame of the sweep running now */
    size_t n_busy;                     /* rooms with store work on a worker thread */
    size_t n_loading;                  /* rooms opening their store */
    size_t n_loaded;                   /* rooms with their store open */
    size_t max_loaded_rooms;           /* past it, idle rooms are evicted early */
    unsigned commit_delay_ms;          /* test hook: every durable commit waits this long first */
    uint64_t commit_failures;
    uint64_t commits_fenced; /* commits refused: the room is another node's now */
    /* storage: the backend (main only; opened once, shared by every loop)
     * and this loop's heap of rooms' wake times */
    struct party__backend *backend;
    party__alarms alarms;
    struct party__orphans *orphans; /* main only, on a shared store (room_orphans.c) */
    /* on_alarm runs, alarms retried and abandoned, on_schedule runs */
    uint64_t alarms_fired, alarms_retried, alarms_abandoned, schedules_fired;
    int virtual_clock;             /* test harness: time moves only when told */
    uint64_t virtual_now;          /* ms since the epoch, when virtual_clock */
    struct party_conn *dirty_head; /* connections with unflushed output */
    struct party__fetch *fetches;  /* room-to-room requests in flight */
    size_t n_fetches, n_fetches_held;
    size_t n_conns;
    uint64_t accept_errors, last_accept_warning;

    /* counters for /_partyd/metrics (loop thread only) */
    uint64_t events[7]; /* by party__event_type; ALARM (a wake-up) is not counted here */
    uint64_t bytes_in, bytes_out;
    uint64_t http_requests;    /* requests parsed (handshakes included) */
    uint64_t http_errors;      /* requests refused by the parser or the handshake check */
    uint64_t protocol_errors;  /* WebSocket connections closed for a bad frame */
    uint64_t send_queue_drops; /* slow readers dropped */
#define PARTY__COMMIT_BUCKETS 12
    uint64_t commit_hist[PARTY__COMMIT_BUCKETS]; /* by commit_bucket_ms upper bounds */
    uint64_t commits, commit_us_total;

    char *read_buf;                   /* one loop-wide read buffer for WebSocket reads */
    struct party__buf_pool *buf_pool; /* spare small buffers for outgoing frames */
    struct party__digest *digest;     /* SHA-1 and SHA-256 for handshakes and room ids */
    /* What connections report upwards (conn.h; installed by runtime.c) */
    const struct party__conn_upcalls *conn_upcalls;
    /* The transport accepted connections start with (NULL: plaintext),
     * and the connections' transport states by slot (conn.c) */
    const struct party__transport_ops *accept_transport;
    struct party__transport **transport_slots;
    uint32_t *transport_free;
    size_t transport_slots_cap, n_transport_free;
    /* TLS (tls.c): the context and a read buffer for ciphertext */
    struct ssl_ctx_st *tls_ctx;
    char *tls_read_buf;
    uint64_t tls_errors;
    char *tls_cert, *tls_key;
#define PARTY__SPARE_TIMERS 256
#define PARTY__SPARE_SESSIONS 16
    uv_timer_t *spare_timers[PARTY__SPARE_TIMERS]; /* stopped, ready for reuse */
    size_t n_spare_timers;
    uv_timer_t *timer_block;         /* the pool's timers, in one allocation (conn.c) */
    size_t timer_block_open;         /* its timers not closed yet */
    int timers_closing;              /* the pool is closing: no timer goes back to it */
    struct party__slabs *conn_slabs; /* connection structs (conn.c); NULL until the first */
    struct party__slabs *room_slabs; /* room structs (room.c); NULL until the first */
    struct party__http_session *spare_sessions;
    size_t n_spare_sessions;
    int in_callback; /* a user callback is running: new events are queued */
    int stopping;
    int running;
    int finished;            /* rooms freed, handles closing */
    uv_thread_t loop_thread; /* the thread running the loop */
    int exit_status;
};

/* Upper bounds (ms) of the commit latency histogram's buckets; the last
 * is +Inf. */
extern const double party__commit_bucket_ms[PARTY__COMMIT_BUCKETS];
/* Records one durable commit that took us microseconds. */
void party__runtime_record_commit(party_runtime *rt, uint64_t us);

/* max_conns when the configuration leaves it 0: the soft open-file limit
 * less a reserve. */
size_t party__default_max_conns(void);
/* How many rooms may have their store open before idle ones are evicted
 * early: from the open-file limit. */
size_t party__default_max_loaded_rooms(void);

/* Looks up a party by URL name, case-insensitively; NULL if unknown. */
const party__party *party__runtime_find_party(party_runtime *rt, const char *name, size_t len);

/* Adds a room to the set of rooms with queued events. */
void party__runtime_mark_ready(party_runtime *rt, struct party_room *room);

/* Makes the data directory ready, once per runtime (loop 0's; later
 * calls return 0): creates it (one level, mode 0755) if missing, takes
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

/* The descriptor holding the data directory's lock: loop 0's, opened
 * close-on-exec, owned by the runtime and closed (the lock released) by
 * party_runtime_free. -1 when none is held. An upgrade hands this one
 * descriptor to the process that takes over. */
int party__runtime_data_lock_fd(party_runtime *rt);

/* Marks the runtime running on this thread without listening or running
 * the loop: the test harness drives the loop itself. Opens the data
 * directory first (party__runtime_open_data): its errors. */
int party__runtime_begin(party_runtime *rt);
/* Virtual clock: moves time forward and runs what came due (eviction). */
void party__runtime_advance(party_runtime *rt, uint64_t ms);

/* The runtime's clock in ms (monotonic; virtual under the test harness). */
uint64_t party__runtime_now(party_runtime *rt);
/* Wall-clock ms since the epoch (virtual under the test harness). */
int64_t party__runtime_epoch_ms(party_runtime *rt);

/* 1 if a warning of a kind whose last one was logged at *last may be
 * logged now (at most one a second: out of descriptors comes in storms);
 * then *last becomes now. */
int party__runtime_warning_due(party_runtime *rt, uint64_t *last);

/* Called when the last connection or the last store work is done during
 * shutdown. */
void party__runtime_maybe_finish(party_runtime *rt);

/* Starts a graceful stop of this loop (its own thread); on loop 0, of
 * every loop. */
void party__runtime_begin_stop(party_runtime *rt);

/* ---- several loops (see loops.h) ---- */

/* More event-loop threads than this are not started. */
#define PARTY_MAX_THREADS 64

/* A runtime for loop index of main: main's configuration and parties,
 * its own loop, handles and pools. NULL on OOM. */
party_runtime *party__runtime_new_loop(party_runtime *main, unsigned index);
/* Frees a loop made by party__runtime_new_loop whose thread is done. */
void party__runtime_free_loop(party_runtime *rt);
/* Starts the eviction and keepalive timers of a loop that runs. */
void party__runtime_start_timers(party_runtime *rt);
/* Open connections over every loop (read without locks: a moment's
 * count, for the max_conns check and metrics). */
size_t party__runtime_conns(party_runtime *rt);

#endif
