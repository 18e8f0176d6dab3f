/* room_internal: what the files of the room actor share among themselves
 * and nothing else uses — room.c (table, lifecycle, delivery), room_alarm.c
 * (wake-ups), room_idle.c (idle lists, eviction, hibernation) and
 * room_commit.c (batches, commits, output gate, loading). The rest of
 * partyd uses room.h. */
#ifndef PARTY_ROOM_INTERNAL_H
#define PARTY_ROOM_INTERNAL_H

#include "room.h"

/* A room's storage work: acquiring it from the backend, loading its
 * store on a libuv worker thread, committing a batch, unloading the store
 * (eviction, hibernation) and releasing the room. Owned by the work:
 * freed by its last callback. */
typedef struct party__store_work {
    uv_work_t req;
    party__store_req claim; /* acquire, release */
    party_room *room;
    party__room_store *store;
    int result;
    unsigned delay_ms;
    party__commit commit; /* the batch to commit */
    uint64_t commit_us;   /* how long the commit took */
    char why[512];
    party__room_loaded loaded;      /* read with the store */
    struct party__store_work *next; /* on the loop's list of loads waiting for a group */
} party__store_work;

/* ---- room.c: the table, lifecycle, idle lists ---- */

/* Work in flight, apart from open connections. */
int party__room_busy(const party_room *room);
/* Takes the room off the idle or quiet list it waits on, if any. */
void party__room_idle_remove(party_room *room);
/* Puts a room with nothing to do at the back of the list it waits on
 * (idle: no connections; quiet: connections of a hibernating party), or
 * takes it off when it has work. */
void party__room_update_idle(party_room *room);

/* Takes a room out of its loop's room table. */
void party__room_table_remove(party__rooms *rooms, party_room *room);
/* Frees the room's own memory (name, props, block); see
 * party__room_destroy. */
void party__room_free(party_room *room);
/* Hands the room's store over, to be unloaded by the caller (NULL if
 * none); the room no longer counts as loaded. */
party__room_store *party__room_take_store(party_room *room);
/* The storage backend (loop 0's, shared by every loop). */
static inline party__backend *party__room_backend(const party_room *room) {
    return room->rooms->backend;
}

/* ---- room_alarm.c: wake-ups ---- */

/* Delivers an ALARM event: runs the due schedules, then the due alarm
 * (retried with backoff if on_alarm fails). A stale wake-up does nothing. */
void party__room_handle_alarm(party_room *room);
/* After a commit that filed the room's wake time in the backend's alarm
 * index: the loop's heap follows. */
void party__room_sync_wake(party_room *room);
/* After a failed commit: rereads the alarm and schedules from the store
 * and files the wake time in the heap again (the index has it, or an
 * earlier one: see commit_batch). The store must be loaded. */
void party__room_reload_wake(party_room *room);
/* Files the room's wake time in its loop's heap (0: takes it out). */
void party__room_heap_put(party_room *room, int64_t due_ms);

/* ---- room_idle.c: eviction, hibernation ---- */
/* Frees the room's memory, its synced state and call handles with it.
 * Its store must be closed and its queued events dropped
 * (party__room_drop_queue). */
void party__room_destroy(party_room *room);
/* The user's state leaves memory (free_state, and the synced state's
 * cache); on_start runs again in the next incarnation. */
void party__room_drop_state(party_room *room);
/* The release step, once an evicted room's store is unloaded: the backend
 * gives the room up, then the room is destroyed and w freed. */
void party__room_release(party_room *room, party__store_work *w);

/* ---- room_commit.c: delivery, batches, commits, output gate, loading ---- */

/* Runs on_start once per incarnation, before the room's first event; a
 * room addressed by name persists its name first, in the batch's
 * transaction. 0 if the room is started; -1 if on_start (or the name
 * write) failed: logged, the status is back to ZERO, the next event
 * retries. On success, the outbound requests an earlier process left in
 * flight are answered next (outbound.h). Call only while the room is
 * running an event with its store. */
int party__room_ensure_started(party_room *room);
/* Runs one event's callbacks (on_start first if needed). The room must be
 * READY and not running. ev stays the caller's, except a RESPONSE's fetch
 * or outbound answer, which this frees. */
void party__room_deliver(party_room *room, const party__event *ev);
/* Frees the room's queued events (dropping their connections'
 * references), before it is destroyed. */
void party__room_drop_queue(party_room *room);

/* Runs the queued events back to back as one batch, then ends the batch
 * (commit, release of held output). Does nothing while the room is
 * running, committing or not READY. */
void party__room_run(party_room *room);
/* Releases the output held for the batch: committed, it goes out in
 * order; not committed, its connections still open are failed (1011 or
 * 500). Held fetch requests are started or dropped alike. */
void party__room_release_held(party_room *room, int committed);
/* Brings a cold room into memory: acquires it (the first time), loads
 * its store on a worker thread, then runs its queued events. If the room
 * cannot be acquired or its store loaded, the queued events are failed
 * and the room stays cold. */
void party__room_load(party_room *room);
/* The acquire step: the backend makes the room this process's
 * (asynchronous: the room is LOADING meanwhile, its events wait); then
 * w loads the store. */
void party__room_acquire(party_room *room, party__store_work *w);

#endif
