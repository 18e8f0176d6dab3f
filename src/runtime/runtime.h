/* runtime: the internal shape of party_runtime — the event loop, the
 * listening socket, the registered parties, the table of rooms in memory,
 * and the per-loop-turn work lists (rooms with queued events, connections
 * with bytes to write). With several event-loop threads there is one
 * party_runtime per loop: the one the user holds is loop 0 (the "main"
 * one, which owns the configuration, the parties, the storage backend and
 * the TLS context); the others share those by pointer (see loops.h). */
#ifndef PARTY_RUNTIME_H
#define PARTY_RUNTIME_H

#include <stddef.h>
#include <uv.h>

#include "party.h"
#include "loop.h"
#include "rooms.h"
#include "router.h"

struct party__mail;

struct party_runtime {
    party__loop lp;               /* this loop's context (first: see party__runtime_of) */
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
    uv_signal_t sigint, sigterm;
    uv_async_t stop_async;
    uv_check_t flush_check;     /* writes queued output after I/O callbacks */
    uv_prepare_t flush_prepare; /* ... and before the loop blocks */
    uv_idle_t finish_idle;      /* finishes a stopping loop at the top of a turn */
    uv_timer_t shutdown_timer;

    party__party *parties;
    size_t n_parties;

    uint64_t http_ended_at_tick; /* ... at the last eviction tick */
    uint64_t http_ended_at_trim; /* ... at the last trim */
    uv_timer_t evict_timer;      /* evicts rooms idle past idle_timeout */
    size_t max_loaded_rooms;     /* past it, idle rooms are evicted early (whole runtime) */
    /* storage: the backend (main only; opened once, shared by every loop) */
    struct party__backend *backend;
    party__rooms rooms;   /* this loop's rooms */
    party__router router; /* this loop's router */
    char *tls_cert, *tls_key;
    int running;
    uv_thread_t loop_thread; /* the thread running the loop */
    int exit_status;
};

/* The runtime whose loop context lp is. */
static inline party_runtime *party__runtime_of(party__loop *lp) {
    return (party_runtime *)(void *)((char *)lp - offsetof(party_runtime, lp));
}
/* Loop 0's context: the loop party_runtime_run runs (and the test
 * harness drives). */
static inline party__loop *party__runtime_loop(party_runtime *rt) {
    return &rt->lp;
}
/* Loop 0's rooms. */
static inline party__rooms *party__runtime_rooms(party_runtime *rt) {
    return &rt->rooms;
}
/* The runtime of the loop serving conn. */
#define party__conn_rt(conn) party__runtime_of(party__conn_loop(conn))

/* max_conns when the configuration leaves it 0: the soft open-file limit
 * less a reserve. */
size_t party__default_max_conns(void);
/* How many rooms may have their store open before idle ones are evicted
 * early: from the open-file limit. */
size_t party__default_max_loaded_rooms(void);

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
/* The descriptor holding the data directory's lock: loop 0's, opened
 * close-on-exec, owned by the runtime and closed (the lock released) by
 * party_runtime_free. -1 when none is held. An upgrade hands this one
 * descriptor to the process that takes over. */
int party__runtime_data_lock_fd(party_runtime *rt);

/* Starts this loop's rooms (their wake-ups); on loop 0, first opens the
 * storage backend if needed and files every room of its alarm index in
 * the heap of the loop that owns the room. Blocking (start-up). 0, or
 * PARTY_EIO / PARTY_ENOMEM (logged). */
int party__runtime_start_rooms(party_runtime *rt);

/* Marks the runtime running on this thread without listening or running
 * the loop: the test harness drives the loop itself. Opens the data
 * directory first (party__runtime_open_data): its errors. */
int party__runtime_begin(party_runtime *rt);
/* Virtual clock: moves time forward and runs what came due (eviction). */
void party__runtime_advance(party_runtime *rt, uint64_t ms);

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
