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

/* Evicted rooms whose stores unload on one worker job (one short
 * thread): evict_group_add gathers them, evict_group_start queues the
 * job. Rooms that come due in one eviction tick go together: when many
 * leave at once (after an alarm storm), a thread each would cost more
 * than their unloads. */
#define EVICT_GROUP_MAX 1024

typedef struct evict_group {
    uv_work_t req;
    party__rooms *rooms;
    size_t n;
    party__store_work *works[EVICT_GROUP_MAX];
} evict_group;

static void evict_group_unloads(void *arg) {
    evict_group *g = arg;
    size_t i;
    for (i = 0; i < g->n; i++)
        unload_store(g->works[i]);
}

static void evict_group_work(uv_work_t *req) {
    party__short_thread_run(evict_group_unloads, req->data);
}

static void after_evict_group_work(uv_work_t *req, int status) {
    evict_group *g = req->data;
    party__rooms *rooms = g->rooms;
    size_t i;
    (void)status;
    for (i = 0; i < g->n; i++) {
        rooms->n_busy--;
        room_leave(g->works[i]->room, g->works[i]);
    }
    rooms->lp->trim_pending = 1;
    party__free(g);
    party__loop_maybe_finish(rooms->lp);
}

/* Queues the group's unloads (each alone if the job cannot be queued). */
static void evict_group_start(evict_group *g) {
    size_t i;
    if (g == NULL || g->n == 0) {
        party__free(g);
        return;
    }
    g->req.data = g;
    if (uv_queue_work(&g->rooms->lp->loop, &g->req, evict_group_work, after_evict_group_work) == 0)
        return;
    for (i = 0; i < g->n; i++) {
        party__store_work *w = g->works[i];
        g->rooms->n_busy--;
        party__room_backend(w->room)->ops->unload(w->store);
        room_leave(w->room, w);
    }
    party__free(g);
}

/* Evicts the room; its store unloads with *group when there is one and
 * it has room (a full group is started and a new one made), else alone. */
static int room_evict_into(party_room *room, evict_group **group) {
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
    if (group != NULL && *group != NULL && (*group)->n == EVICT_GROUP_MAX) {
        evict_group_start(*group);
        *group = NULL;
    }
    if (group != NULL && *group == NULL && (*group = party__calloc(1, sizeof(**group))) != NULL)
        (*group)->rooms = rooms;
    if (group != NULL && *group != NULL) {
        (*group)->works[(*group)->n++] = w;
        return 0;
    }
    if (uv_queue_work(&rooms->lp->loop, &w->req, unload_work, after_evict_work) != 0) {
        rooms->n_busy--;
        be->ops->unload(w->store);
        room_leave(room, w);
    }
    return 0;
}

int party__room_evict(party_room *room) {
    return room_evict_into(room, NULL);
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
    evict_group *group = NULL;
    while (rooms->idle.head != NULL && rooms->idle.head->idle_since + evict_ms <= now_ms)
        (void)room_evict_into(rooms->idle.head, &group);
    evict_group_start(group);
    while (rooms->quiet.head != NULL && rooms->quiet.head->idle_since + hibernate_ms <= now_ms) {
        party_room *room = rooms->quiet.head;
        if (party__room_hibernate(room) != 0)
            party__room_idle_remove(room); /* cannot now; its next batch files it again */
    }
}

int party__rooms_quiesce(party__rooms *rooms) {
    size_t i;
    int settled = rooms->n_busy == 0 && rooms->ready_head == NULL && rooms->group_head == NULL &&
                  !rooms->group_in_flight;

    for (i = 0; i < rooms->table_cap; i++) {
        party_room *room = rooms->table[i], *next;
        for (; room != NULL; room = next) {
            next = room->hash_next; /* eviction takes the room out of the table */
            if (room->life == PARTY__ROOM_COLD && !party__room_busy(room))
                continue;
            settled = 0;
            if (room->life != PARTY__ROOM_READY || party__room_busy(room))
                continue; /* its work ends first */
            /* Every party sees an upgrade as a hibernation, whatever its
             * hibernate flag: its state leaves, its connections stay. */
            if (room->n_conns > 0)
                (void)party__room_hibernate(room);
            else
                (void)party__room_evict(room);
        }
    }
    return settled;
}
