/* room: the actor. One room runs one event at a time: connect, message,
 * close, error and HTTP request events are delivered in arrival order, with
 * on_start run once before the first of them. A room is brought into memory
 * by acquiring it from the storage backend and loading its store on a
 * worker thread, runs queued
 * events back to back as one batch in one transaction, commits off the loop
 * while new events queue (group commit), and holds the batch's output until
 * the commit is durable (output gate). Idle rooms are evicted. */
#ifndef PARTY_ROOM_H
#define PARTY_ROOM_H

#include <stdint.h>

#include "party.h"
#include "buf.h"
#include "conn.h"
#include "digest.h"
#include "rooms.h"

typedef enum party__room_status {
    PARTY__ROOM_ZERO, /* on_start has not run (or failed) in this incarnation */
    PARTY__ROOM_STARTING,
    PARTY__ROOM_STARTED,
} party__room_status;

typedef enum party__room_life {
    PARTY__ROOM_COLD,      /* store not loaded */
    PARTY__ROOM_LOADING,   /* being acquired, or its store loading on a worker thread */
    PARTY__ROOM_READY,     /* store open: events can run */
    PARTY__ROOM_EVICTING,  /* out of the table; store closing on a worker */
    PARTY__ROOM_UNLOADING, /* hibernating: store closing, connections kept */
} party__room_life;

struct party_room {
    party__rooms *rooms;
    const party__party *party;
    char *name;         /* NULL until known (rooms addressed by id) */
    int by_name;        /* addressed by name: the name must be persisted */
    int name_persisted; /* the store has the name */
    char id[PARTY_ID_MAX];
    party__room_status status;
    party__room_life life;
    void *state;
    char *props; /* the latest props given at routing time */

    party__room_store *store;        /* NULL while not loaded */
    int acquired;                    /* the backend gave us the room (party__room_acquire) */
    int64_t epoch;                   /* ... with this epoch (a cluster backend), else 0 */
    int leaving;                     /* another node's now: runs nothing, leaves memory */
    int committing;                  /* a commit runs on a worker thread */
    int holding;                     /* the current batch wrote: its output is held */
    int name_error;                  /* a callback read the name of an unnamed room */
    party__conn_gate gate;           /* connections whose output waits for the commit */
    struct party__fetch *fetch_held; /* requests waiting for the commit (see fetch.h) */
    struct party__sync *sync;        /* synced state and RPC calls, or NULL (see sync.h) */
    uint32_t open_calls;             /* RPC calls a client waits for (rpc.c): the room stays */

    /* alarm and schedules (valid while READY; loaded with the store) */
    int64_t alarm_at;     /* epoch ms, 0: none */
    int alarm_retries;    /* failed runs of the alarm now set */
    int in_alarm;         /* inside on_alarm */
    int alarm_retry_now;  /* what party_alarm_retry_count() says in on_alarm */
    int64_t sched_next;   /* earliest schedule, 0: none */
    int64_t wake_indexed; /* the wake time the index and heap have; -1: unknown */

    party__conn_list conns; /* open (accepted) connections */
    size_t n_conns;
    size_t n_pending; /* connections accepted by the router, not yet connected */

    struct party__event *queue_head, *queue_tail;
    int running; /* delivering an event now */
    int queued;  /* on the loop's ready list (party__rooms) */
    struct party_room *ready_next;
    struct party_room *group_next;            /* waiting for the loop's next group commit */
    struct party_room *hash_next;             /* chain in the loop's room table */
    struct party_room *idle_prev, *idle_next; /* on the loop's idle or quiet list */
    int idle;                                 /* 0: on no list, 1: idle, 2: quiet */
    uint64_t idle_since;                      /* the loop's clock, ms */
    char name_inline[];                       /* a name of up to PARTY__ROOM_NAME_INLINE bytes (NUL
                                                 included), in the room's own block */
};

/* Room names this long (with their NUL) live in the room's block; a longer
 * one is a block of its own. Room structs come from slabs (slab.h), so
 * each has this much room for its name. */
#define PARTY__ROOM_NAME_INLINE 64

typedef enum party__event_type {
    PARTY__EV_CONNECT,
    PARTY__EV_MESSAGE,
    PARTY__EV_CLOSE,
    PARTY__EV_ERROR,
    PARTY__EV_REQUEST,
    PARTY__EV_ALARM,    /* the room's wake time came (alarm or schedule) */
    PARTY__EV_RESPONSE, /* the answer to a party_room_fetch */
} party__event_type;

/* One unit of work for a room. Posted events are copied when they have to
 * wait, so the poster's event and data may live on its stack. */
typedef struct party__event {
    party__event_type type;
    struct party_conn *conn;    /* the connection it concerns (holds a reference) */
    party__slice data;          /* MESSAGE payload; CLOSE reason */
    int binary;                 /* MESSAGE */
    int code;                   /* CLOSE code */
    int was_clean;              /* CLOSE */
    const char *what;           /* ERROR: static description */
    struct party__fetch *fetch; /* RESPONSE: the finished request (the event owns it) */
    /* RESPONSE: an outbound answer (the event owns it; fetch is NULL then) */
    struct party__outbound_req *outbound;
    struct party__event *next;
    char inline_data[]; /* the copied data of a queued event */
} party__event;

/* The room is another node's now (a hand-off, or this node lost its
 * lease): its batch finishes, its connections close with 1012, it runs
 * nothing more and leaves memory as soon as it has no work, which
 * releases it. Idempotent. */
void party__room_give_up(party_room *room);
/* Marks the room as leaving (given up or fenced): it is evicted as soon
 * as it has no work (room_idle.c). Idempotent. */
void party__room_mark_leaving(party_room *room);

/* The room with this id if it is in memory, else NULL. */
party_room *party__room_find(party__rooms *rooms, const char *id);
/* The room addressed by name in party (its registered name) if it is in
 * memory, else NULL. A scan of the room table: it computes no id, so it
 * needs no memory (for the test harness, not for hot paths). */
party_room *party__room_find_named(party__rooms *rooms, const char *party, const char *name);
/* The room for (party, name), created (cold) if absent. NULL on OOM. */
party_room *party__room_get(party__rooms *rooms, const party__party *party, const char *name);
/* The same, for a caller that has computed the id already
 * (party__room_id of the party's name and name). */
party_room *party__room_get_named(party__rooms *rooms, const party__party *party, const char *name,
                                  const char *id);
/* The room with this id, created (cold, unnamed until its store says
 * otherwise) if absent. NULL on OOM or a malformed id. */
party_room *party__room_get_by_id(party__rooms *rooms, const party__party *party, const char *id);
/* Sets the props delivered to the room's next on_start (copied). */
int party__room_set_props(party_room *room, const char *props);

/* Delivers ev to the room now if it is ready and idle, else queues a copy
 * (and brings the room into memory if it is cold). 0 or PARTY_ENOMEM. */
int party__room_post(party_room *room, const party__event *ev);
/* The same, queueing into spare (NULL: none; a block of sizeof(party__event)
 * the caller allocated earlier) rather than a new allocation when ev has
 * no data: with a spare, posting such an event cannot fail for memory.
 * spare is used or freed either way. */
int party__room_post_with(party_room *room, const party__event *ev, party__event *spare);

/* Runs the queued events of every ready room. */
void party__room_drain_ready(party__rooms *rooms);

/* The time the room must wake next (alarm or earliest schedule), 0: none. */
int64_t party__room_wake(const party_room *room);
/* Makes sure the room has an entry in its loop's alarm heap, so that the
 * wake time its batch files when it commits needs no memory (it could not
 * be reported then). Called where the alarm or schedule is set. 0 or
 * PARTY_ENOMEM. */
int party__room_reserve_wake(party_room *room);
/* 1 if the room's callbacks are running (its API may be used). */
int party__room_in_callback(const party_room *room);

/* Output gate: 1 if what the room produces now must wait for its
 * batch's commit (the batch wrote, whatever wrote: the storage backend
 * says). Stays 1 until the commit's output is released. */
int party__room_holding(party_room *room);
/* Output gate: called before the room queues output to conn; when the
 * batch wrote, that output and what follows it waits for the commit
 * (conn joins the room's gate). */
void party__room_gate(party_room *room, struct party_conn *conn);

/* Unlinks an open connection from its room's list. */
void party__room_unlink_conn(party_room *room, struct party_conn *conn);

/* Eviction: rooms idle (no connections, no work) since before cutoff leave
 * memory. force: this room now, if it has no connections and no work. */
void party__room_evict_idle(party__rooms *rooms, uint64_t now_ms);
int party__room_evict(party_room *room);
/* Hibernation: the room's state and store leave memory, its connections
 * stay open; the next message, close, error, request or alarm wakes it
 * (on_start runs again). PARTY_ESTATE if it has work or is not loaded. */
int party__room_hibernate(party_room *room);

/* Wakes the rooms whose time has come (time moved: virtual clock). */
void party__rooms_fire_due(party__rooms *rooms);
/* Shutdown: 1 while any room has work on a worker thread. */
int party__rooms_busy(party__rooms *rooms);
/* Shutdown: frees every room (free_state, store closed synchronously). */
void party__rooms_free_all(party__rooms *rooms);

#endif
