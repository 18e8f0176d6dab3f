/* room_idle: rooms with nothing to do, and how they leave memory. A room
 * with nothing to do waits on one of two lists, oldest first: with no
 * connections, for eviction after idle_timeout (its store unloaded, then
 * the room released to the storage backend); with connections of a
 * hibernating party, for hibernation after hibernate_after (its store
 * unloaded, the room still this process's). */
#include "room_internal.h"

#include <stdlib.h>

#include "conn.h"
#include "log.h"
#include "short_thread.h"
#include "sync.h"
#include "alloc.h"

static party__room_list *list_of(party_room *room) {
    return room->idle == 1 ? &room->rt->idle : &room->rt->quiet;
}

void party__room_idle_remove(party_room *room) {
    party__room_list *list;
    if (!room->idle)
        return;
    list = list_of(room);
    if (room->idle_prev != NULL)
        room->idle_prev->idle_next = room->idle_next;
    else
        list->head = room->idle_next;
    if (room->idle_next != NULL)
        room->idle_next->idle_prev = room->idle_prev;
    else
        list->tail = room->idle_prev;
    room->idle_prev = room->idle_next = NULL;
    room->idle = 0;
}

/* Work in flight, apart from open connections. */
static int room_busy(party_room *room) {
    return room->n_pending > 0 || room->queue_head != NULL || room->running || room->committing ||
           room->gate.head != NULL || room->fetch_held != NULL || party__sync_busy(room) ||
           room->life == PARTY__ROOM_LOADING || room->life == PARTY__ROOM_EVICTING ||
           room->life == PARTY__ROOM_UNLOADING;
}

static int room_has_work(party_room *room) {
    return room->n_conns > 0 || room_busy(room);
}

/* Puts a room with nothing to do at the back of the list it waits on, or
 * takes it off when it has work (or is already hibernated). */
void party__room_update_idle(party_room *room) {
    party_runtime *rt = room->rt;
    party__room_list *list;
    party__room_idle_remove(room);
    if (room_busy(room))
        return;
    if (room->n_conns == 0)
        room->idle = 1;
    else if (room->party->def->hibernate && room->life == PARTY__ROOM_READY)
        room->idle = 2;
    else
        return;
    list = list_of(room);
    room->idle_since = party__runtime_now(rt);
    room->idle_prev = list->tail;
    if (list->tail != NULL)
        list->tail->idle_next = room;
    else
        list->head = room;
    list->tail = room;
}

static void unload_store(void *arg) {
    party__store_work *w = arg;
    party__room_backend(w->room)->ops->unload(w->store);
}

static void unload_work(uv_work_t *req) {
    /* On a thread of its own, like loading (room_commit.c): the blocks
     * SQLite frees here do not stay in a worker's malloc cache. */
    party__short_thread_run(unload_store, req->data);
}

static void release_done(party__store_req *claim, int status) {
    party__store_work *w = claim->data;
    party_runtime *rt = w->room->rt;
    (void)status; /* given up either way: the room leaves memory */
    rt->n_busy--;
    party__room_destroy(w->room);
    party__free(w);
    party__runtime_maybe_finish(rt);
}

void party__room_release(party_room *room, party__store_work *w) {
    party__backend *be = party__room_backend(room);
    room->rt->n_busy++;
    room->acquired = 0;
    w->room = room;
    w->claim.loop = &room->rt->loop;
    w->claim.room_id = room->id;
    w->claim.party = room->party->name;
    w->claim.done = release_done;
    w->claim.data = w;
    be->ops->release(be, &w->claim);
}

/* An evicted room whose store is unloaded leaves memory: released first
 * if the backend gave it to us. Takes w (NULL: none could be had). */
static void room_leave(party_room *room, party__store_work *w) {
    if (room->acquired && w != NULL) {
        party__room_release(room, w);
        return;
    }
    party__room_destroy(room);
    party__free(w);
}

static void after_evict_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_runtime *rt = w->room->rt;
    (void)status;
    rt->n_busy--;
    rt->trim_pending = 1;
    room_leave(w->room, w);
    party__runtime_maybe_finish(rt);
}

int party__room_evict(party_room *room) {
    party_runtime *rt = room->rt;
    party__backend *be = party__room_backend(room);
    party__store_work *w;

    if (room_has_work(room))
        return PARTY_ESTATE;
    party__room_idle_remove(room);
    party__room_table_remove(rt, room);
    party__room_drop_state(room);
    party__log_debug(rt, "room %s/%s: evicted", room->party->name,
                     room->name ? room->name : room->id);
    if (room->store == NULL) {
        room_leave(room, room->acquired ? party__calloc(1, sizeof(*w)) : NULL);
        return 0;
    }
    w = party__calloc(1, sizeof(*w));
    if (w == NULL) {
        be->ops->unload(party__room_take_store(room));
        room_leave(room, NULL);
        return 0;
    }
    room->life = PARTY__ROOM_EVICTING;
    w->room = room;
    w->store = party__room_take_store(room);
    w->req.data = w;
    rt->n_busy++;
    if (uv_queue_work(&rt->loop, &w->req, unload_work, after_evict_work) != 0) {
        rt->n_busy--;
        be->ops->unload(w->store);
        room_leave(room, w);
    }
    return 0;
}

static void after_unload_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    party_runtime *rt = room->rt;
    (void)status;
    rt->n_busy--;
    rt->trim_pending = 1;
    party__free(w);
    room->life = PARTY__ROOM_COLD;
    /* Whatever arrived meanwhile wakes the room right away. */
    if (room->queue_head != NULL)
        party__room_load(room);
    else
        party__room_update_idle(room);
    party__runtime_maybe_finish(rt);
}

int party__room_hibernate(party_room *room) {
    party_runtime *rt = room->rt;
    party__store_work *w;
    party_conn *conn;

    if (room_busy(room) || room->life != PARTY__ROOM_READY)
        return PARTY_ESTATE;
    w = party__calloc(1, sizeof(*w));
    if (w == NULL)
        return PARTY_ENOMEM;
    party__room_idle_remove(room);
    party__room_drop_state(room);
    for (conn = room->conns.head; conn != NULL; conn = party__conn_list_next(conn))
        party__conn_trim(conn);
    rt->rooms_hibernated++;
    party__log_debug(rt, "room %s/%s: hibernated with %zu connections", room->party->name,
                     room->name ? room->name : room->id, room->n_conns);
    /* The connections stay, with their ids, tags, uri and state; the
     * room's next event (not a ping) loads it again. */
    room->life = PARTY__ROOM_UNLOADING;
    w->room = room;
    w->store = party__room_take_store(room);
    w->req.data = w;
    rt->n_busy++;
    if (uv_queue_work(&rt->loop, &w->req, unload_work, after_unload_work) != 0) {
        rt->n_busy--;
        party__room_backend(room)->ops->unload(w->store);
        party__free(w);
        room->life = PARTY__ROOM_COLD;
    }
    return 0;
}

void party__room_evict_idle(party_runtime *rt, uint64_t now_ms) {
    uint64_t evict_ms = (uint64_t)(rt->cfg.idle_timeout * 1000.0);
    uint64_t hibernate_ms = (uint64_t)(rt->cfg.hibernate_after * 1000.0);
    while (rt->idle.head != NULL && rt->idle.head->idle_since + evict_ms <= now_ms)
        (void)party__room_evict(rt->idle.head);
    while (rt->quiet.head != NULL && rt->quiet.head->idle_since + hibernate_ms <= now_ms) {
        party_room *room = rt->quiet.head;
        if (party__room_hibernate(room) != 0)
            party__room_idle_remove(room); /* cannot now; its next batch files it again */
    }
}
