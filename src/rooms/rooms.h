/* rooms: one event loop's rooms — the table of rooms in memory, the rooms
 * with queued events, the idle and quiet lists, the heap of wake times,
 * room-to-room requests in flight, and the rooms' counters. Each loop has
 * one party__rooms, over its party__loop (loop.h); the runtime makes it
 * and hands it the process-wide things it uses (the parties, the storage
 * backend). Nothing here knows the runtime. */
#ifndef PARTY_ROOMS_H
#define PARTY_ROOMS_H

#include <stdint.h>
#include <uv.h>

#include "alarm.h"
#include "loop.h"
#include "ops.h"
#include "router.h"
#include "storage.h"

struct party_room;
struct party__fetch;

typedef struct party__room_list {
    struct party_room *head, *tail;
} party__room_list;

typedef struct party__rooms {
    party__loop *lp; /* the loop the rooms run on */
    /* Given by the runtime: the registered parties (shared by every loop),
     * the URL prefix, the storage backend (opened once, on loop 0) and
     * the tuning that is the runtime's to decide */
    const party__party *parties;
    size_t n_parties;
    const char *prefix;
    struct party__backend *backend;
    /* This node's name, sent with every answer of a room (X-Partyd-Node):
     * the cluster backend's, else the one given (--node); NULL: none. */
    const char *node;
    /* Sent with room-to-room requests to rooms other nodes own (NULL:
     * such requests are served here, as in a single process) */
    const char *cluster_secret;
    unsigned commit_delay_ms; /* test hook: every durable commit waits this long first */

    struct party_room **table; /* open hash table keyed by room id */
    size_t table_cap, n_rooms;
    struct party__slabs *room_slabs; /* room structs (room.c); NULL until the first */

    struct party_room *ready_head, *ready_tail; /* rooms with queued events */
    uv_idle_t drain_idle;   /* runs queued room events without blocking in poll */
    party__room_list idle;  /* rooms with no connections and nothing to do, oldest first */
    party__room_list quiet; /* hibernating parties' rooms with only connections */
    uint64_t rooms_hibernated;
    size_t n_busy;    /* rooms with store work on a worker thread */
    size_t n_loading; /* rooms opening their store */
    size_t n_loaded;  /* rooms with their store open */

    /* Group commit (room_commit.c): rooms whose batch ended and waits for
     * the next group, in the order their batches ended, and the groups on
     * worker threads now (a few at most). The check handle starts the
     * next group once the turn's I/O callbacks ran, the prepare handle
     * before the loop blocks (what a timer or idle callback ended). */
    struct party_room *group_head, *group_tail;
    int group_in_flight;
    /* Rooms whose commit waits for no disk (commit_on_loop): committed
     * together on the loop thread by the same handles, one transaction
     * per file for all the batches that ended in the turn. */
    struct party_room *loop_group_head, *loop_group_tail;
    /* Load groups (room_commit.c): rooms to load (but those the backend
     * loads at once) wait here to be loaded together, many on one worker
     * job, started by the same handles as the commit groups. */
    struct party__store_work *load_head, *load_tail;
    int load_in_flight;
    uv_check_t group_check;
    uv_prepare_t group_prepare;
    /* Evicts rooms given up to another node as soon as they have no work
     * (room.c), not after idle_timeout. */
    uv_timer_t leave_timer;
    size_t n_leaving; /* rooms in memory given up (party_room.leaving) */

    party__alarms alarms;                /* the heap of rooms' wake times */
    struct party__fetch *fetches;        /* room-to-room requests in flight */
    struct party__fetch *fetches_posted; /* ... answered, posted to their rooms */
    size_t n_fetches, n_fetches_held;
    /* Outbound HTTP (outbound.h): the loop's requests and HTTP clients,
     * made at its first request (NULL until then); the count of requests
     * unanswered over every loop (given by the runtime; atomic). */
    struct party__outbound *outbound;
    size_t *n_outbound;

    /* counters for /_partyd/metrics (loop thread only) */
    uint64_t events[7]; /* by party__event_type; ALARM (a wake-up) is not counted here */
    /* on_alarm runs, alarms retried and abandoned, on_schedule runs */
    uint64_t alarms_fired, alarms_retried, alarms_abandoned, schedules_fired;
    uint64_t commit_hist[PARTY__COMMIT_BUCKETS]; /* by party__commit_bucket_ms upper bounds */
    uint64_t commits, commit_us_total, commit_failures;
    uint64_t commits_fenced; /* refused: the room is another node's now (a cluster store) */
    uint64_t commit_groups;  /* commit_batch calls on worker threads */
} party__rooms;

/* Sets up the rooms of loop lp (the caller fills in what the runtime
 * gives). */
void party__rooms_init(party__rooms *rooms, party__loop *lp);
/* Starts the loop's wake-ups: its alarm heap. 0 or PARTY_EIO. */
int party__rooms_start(party__rooms *rooms);
/* Files a wake time of the backend's alarm index in this loop's heap (at
 * start-up, before the loop runs): the room with this id, of the party
 * at index party in the table of parties. 0 or PARTY_ENOMEM. */
int party__rooms_file_wake(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms);
/* The same while the loop runs, for a due room no node holds (a store
 * several processes share): filed unless the room is in memory here
 * (then this node holds it, and its commits file its wake time). 0 or
 * PARTY_ENOMEM. */
int party__rooms_file_orphan(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms);
/* The same after a failed upgrade, for each entry of the alarm index read
 * again (the new process may have set or moved alarms): filed unless the
 * room is loaded here (its wake time is in memory and its commits file
 * it) or a wake-up of it is under way. A room's entry is replaced, never
 * doubled. 0 or PARTY_ENOMEM. */
int party__rooms_file_reread(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms);
/* This node must give the room with this id up (the storage backend
 * says so, through the runtime): see party__room_give_up. Nothing when
 * the room is not in memory here. */
void party__rooms_give_up(party__rooms *rooms, const char *id);
/* Closes the loop's alarm heap and its handles (the loop finishes). */
void party__rooms_stop(party__rooms *rooms);
/* Frees the table and the room structs' slabs, once every room is gone. */
void party__rooms_free(party__rooms *rooms);

/* Adds a room to the set of rooms with queued events. */
void party__rooms_mark_ready(party__rooms *rooms, struct party_room *room);
/* Records one durable commit that took us microseconds. */
void party__rooms_record_commit(party__rooms *rooms, uint64_t us);
/* A request routed to one of these rooms (the router admitted it): a
 * WebSocket handshake becomes the room's CONNECT event, an HTTP request
 * its REQUEST event (a room addressed by id is not created for a wrong
 * id: 400). Answered here when the room cannot take it. */
void party__rooms_connect(party__rooms *rooms, struct party_conn *conn, const party__routed *r);
void party__rooms_request(party__rooms *rooms, struct party_conn *conn, const party__routed *r);

/* Upgrades: links conn, an open WebSocket another process handed over,
 * to its room (of the party named party_name; by id, and by name when
 * room_name is not empty), which stays cold until its next event, as
 * after a hibernation. 0; PARTY_ENOTFOUND (no such party here);
 * PARTY_EINVAL (a malformed id, or a name that is not the id's);
 * PARTY_ENOMEM. */
int party__rooms_adopt_conn(party__rooms *rooms, struct party_conn *conn, party__slice party_name,
                            party__slice room_id, party__slice room_name);

/* Upgrades: brings every room towards cold — a loaded room with nothing
 * to do hibernates (connections) or is evicted (none); a busy one is left
 * to finish. 1 once every room is cold and no store work runs (the loop
 * can be handed over), else 0: call again later. */
int party__rooms_quiesce(party__rooms *rooms);
/* Loads the cold rooms whose events waited while the loop was exported
 * in an upgrade (frozen 2): once it serves again, or (handed over) fails
 * their events. */
void party__rooms_load_waiting(party__rooms *rooms);

/* Adds the rooms' counters and the number of rooms by state to stats. */
void party__rooms_stats(const party__rooms *rooms, party__ops_stats *stats);
/* Adds every room in memory to the listing. 0, or PARTY_ENOMEM. */
int party__rooms_list(const party__rooms *rooms, party__ops_listing *listing);

#endif
