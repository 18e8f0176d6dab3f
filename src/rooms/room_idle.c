/* room_idle: rooms with nothing to do, and how they leave memory (what
 * the room and its synced state free, sync.c and rpc.c). A room
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
#include "rpc.h"
#include "alloc.h"

/* Frees the room's memory. Its store must be closed, its queued events
 * dropped (party__room_drop_queue). */
void party__room_destroy(party_room *room) {
    if (room->leaving)
        room->rooms->n_leaving--;
    party__rpc_free_all(room); /* calls no client waits for any more */
    party__sync_free(room);
    party__room_free(room);
}

/* The user's state leaves memory: free_state, and on_start runs again in
 * the next incarnation. The synced state goes too: it is read again from
 * the store when next needed. */
void party__room_drop_state(party_room *room) {
    if (room->state != NULL && room->party->def->free_state != NULL)
        room->party->def->free_state(room->state);
    room->state = NULL;
    room->status = PARTY__ROOM_ZERO;
    party__sync_drop(room);
}

/* ---- rooms given up to another node ---- */

/* Rooms given up wait at the head of the idle list once they have no
 * work (party__room_update_idle): evicted at the next tick, which
 * releases them, rather than after idle_timeout. The timer runs while
 * such rooms are in memory. */
static void on_leave_timer(uv_timer_t *timer) {
    party__rooms *rooms = timer->data;
    while (rooms->idle.head != NULL && rooms->idle.head->leaving)
        if (party__room_evict(rooms->idle.head) != 0)
            break;
    if (rooms->n_leaving == 0)
        uv_timer_stop(timer);
}

void party__room_mark_leaving(party_room *room) {
    party__rooms *rooms = room->rooms;
    if (room->leaving)
        return;
    room->leaving = 1;
    if (rooms->n_leaving++ == 0)
        uv_timer_start(&rooms->leave_timer, on_leave_timer, 20, 20);
}

void party__rooms_give_up(party__rooms *rooms, const char *id) {
    party_room *room = party__room_find(rooms, id);
    if (room != NULL)
        party__room_give_up(room);
}

static int room_has_work(party_room *room) {
    return room->n_conns > 0 || party__room_busy(room);
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
    party__rooms *rooms = w->room->rooms;
    (void)status; /* given up either way: the room leaves memory */
    rooms->n_busy--;
    party__room_drop_queue(w->room);
    party__room_destroy(w->room);
    party__free(w);
    party__loop_maybe_finish(rooms->lp);
}

void party__room_release(party_room *room, party__store_work *w) {
    party__backend *be = party__room_backend(room);
    room->rooms->n_busy++;
    room->acquired = 0;
    w->room = room;
    w->claim.loop = &room->rooms->lp->loop;
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
    party__room_drop_queue(room);
    party__room_destroy(room);
    party__free(w);
}

static void after_evict_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party__rooms *rooms = w->room->rooms;
    (void)status;
    rooms->n_busy--;
    rooms->lp->trim_pending = 1;
    room_leave(w->room, w);
    party__loop_maybe_finish(rooms->lp);
}

int party__room_evict(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__backend *be = party__room_backend(room);
    party__store_work *w;

    if (room_has_work(room))
        return PARTY_ESTATE;
    party__room_idle_remove(room);
    party__room_table_remove(rooms, room);
    party__room_drop_state(room);
    party__log_debug(rooms->lp, "room %s/%s: evicted", room->party->name,
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
    rooms->n_busy++;
    if (uv_queue_work(&rooms->lp->loop, &w->req, unload_work, after_evict_work) != 0) {
        rooms->n_busy--;
        be->ops->unload(w->store);
        room_leave(room, w);
    }
    return 0;
}

static void after_unload_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    party__rooms *rooms = room->rooms;
    (void)status;
    rooms->n_busy--;
    rooms->lp->trim_pending = 1;
    party__free(w);
    room->life = PARTY__ROOM_COLD;
    /* Whatever arrived meanwhile wakes the room right away. */
    if (room->queue_head != NULL)
        party__room_load(room);
    else
        party__room_update_idle(room);
    party__loop_maybe_finish(rooms->lp);
}

int party__room_hibernate(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__store_work *w;
    party_conn *conn;

    if (party__room_busy(room) || room->life != PARTY__ROOM_READY)
        return PARTY_ESTATE;
    w = party__calloc(1, sizeof(*w));
    if (w == NULL)
        return PARTY_ENOMEM;
    party__room_idle_remove(room);
    party__room_drop_state(room);
    for (conn = room->conns.head; conn != NULL; conn = party__conn_list_next(conn))
        party__conn_trim(conn);
    rooms->rooms_hibernated++;
    party__log_debug(rooms->lp, "room %s/%s: hibernated with %zu connections", room->party->name,
                     room->name ? room->name : room->id, room->n_conns);
    /* The connections stay, with their ids, tags, uri and state; the
     * room's next event (not a ping) loads it again. */
    room->life = PARTY__ROOM_UNLOADING;
    w->room = room;
    w->store = party__room_take_store(room);
    w->req.data = w;
    rooms->n_busy++;
    if (uv_queue_work(&rooms->lp->loop, &w->req, unload_work, after_unload_work) != 0) {
        rooms->n_busy--;
        party__room_backend(room)->ops->unload(w->store);
        party__free(w);
        room->life = PARTY__ROOM_COLD;
    }
    return 0;
}

void party__room_evict_idle(party__rooms *rooms, uint64_t now_ms) {
    uint64_t evict_ms = (uint64_t)(rooms->lp->cfg.idle_timeout * 1000.0);
    uint64_t hibernate_ms = (uint64_t)(rooms->lp->cfg.hibernate_after * 1000.0);
    while (rooms->idle.head != NULL && rooms->idle.head->idle_since + evict_ms <= now_ms)
        (void)party__room_evict(rooms->idle.head);
    while (rooms->quiet.head != NULL && rooms->quiet.head->idle_since + hibernate_ms <= now_ms) {
        party_room *room = rooms->quiet.head;
        if (party__room_hibernate(room) != 0)
            party__room_idle_remove(room); /* cannot now; its next batch files it again */
    }
}
