/* room_commit: how a room runs — events posted to it, delivered to the
 * party's callbacks one at a time, and its batches and their durability.
 * Queued events run back to back as one batch in one transaction, committed through the
 * storage backend (when it must reach the disk, together with the other
 * rooms whose batch ended in the same loop turn: one group commit on a
 * worker thread) while new events queue; the batch's output is held until the commit is
 * durable (the output gate). Also loading a cold room: the acquire step,
 * then its store on a worker thread. */
#include "room_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "fetch.h"
#include "inflight.h"
#include "outbound.h"
#include "log.h"
#include "rpc.h"
#include "short_thread.h"
#include "ws.h"
#include "alloc.h"

static void outbound_answered(party__http_answer *answer, void *arg);
static void load_groups_start(party__rooms *rooms);

/* The batch is over: committed, what it held goes out, in order (and
 * its held requests leave); not committed, it is dropped and the
 * connections that lose output fail. */
void party__room_release_held(party_room *room, int committed) {
    room->holding = 0;
    party__fetch_release_held(room, committed);
    party__outbound_release_held(room, committed, outbound_answered);
    if (committed)
        party__conn_gate_release(&room->gate);
    else
        party__conn_gate_drop(&room->gate);
}

/* ---- batches and commits ---- */

/* What the store says about the room's name, into memory. */
static void room_reload_name(party_room *room) {
    void *value = NULL;
    char *stored;
    size_t size;
    if (party__store_meta_get(room->store, "name", &value, NULL) != 0)
        value = NULL;
    stored = value;
    if (room->by_name) {
        room->name_persisted = stored != NULL;
        party__free(stored);
    } else {
        if (room->name != room->name_inline)
            party__free(room->name);
        room->name = stored;
        /* In the room's own block when it fits, like a name given at birth. */
        size = stored != NULL ? strlen(stored) + 1 : 0;
        if (size > 0 && size <= PARTY__ROOM_NAME_INLINE) {
            memcpy(room->name_inline, stored, size);
            room->name = room->name_inline;
            party__free(stored);
        }
    }
}

/* Every connection of the room closes with 1012: it moved to another node. */
static void room_close_moved(party_room *room) {
    party_conn *conn, *next;
    for (conn = room->conns.head; conn != NULL; conn = next) {
        next = party__conn_list_next(conn);
        party__conn_start_close(conn, PARTY__WS_SERVICE_RESTART, "room moved");
    }
}

void party__room_give_up(party_room *room) {
    if (room->leaving)
        return;
    party__log_info(room->rooms->lp,
                    "room %s/%s: given up to another node; its connections close"
                    " with 1012",
                    room->party->name, room->name ? room->name : room->id);
    party__room_mark_leaving(room);
    /* A batch running or committing ends first: its output goes out if
     * it commits (room_commit_done closes the connections after it). */
    if (room->running || room->committing || room->holding)
        return;
    room_close_moved(room);
    party__room_update_idle(room);
}

/* The commit was refused: the room is another node's now (a cluster
 * backend's PARTY_EFENCED). Nothing of the batch was kept: its held output
 * is dropped, and every connection of the room closes with 1012 (HTTP:
 * 503 + Retry-After) so clients reconnect and reach the owner. */
static void room_fenced(party_room *room) {
    party__rooms *rooms = room->rooms;

    rooms->commits_fenced++;
    party__log_error(rooms->lp,
                     "room %s/%s: commit refused: the room is owned by another node now (fenced);"
                     " nothing of the batch was kept, its connections close with 1012",
                     room->party->name, room->name ? room->name : room->id);
    room->holding = 0;
    party__room_mark_leaving(room);
    party__fetch_release_held(room, 0);
    party__conn_gate_drop_moved(&room->gate);
    room_close_moved(room);
    party__room_drop_state(room);
}

static void room_commit_done(party_room *room, int result) {
    party__rooms *rooms = room->rooms;
    room->committing = 0;
    if (result == 0)
        party__room_sync_wake(room);
    else
        party__room_reload_wake(room);
    if (result == PARTY_EFENCED) {
        room_fenced(room);
    } else if (result != 0) {
        rooms->commit_failures++;
        party__log_error(rooms->lp,
                         "room %s/%s: commit failed: %s; rolled back, held output dropped, room "
                         "state reset",
                         room->party->name, room->name ? room->name : room->id,
                         party_strerror(result));
        party__room_release_held(room, 0);
        /* Memory may hold what storage lost: start over from storage,
         * the name included (a first start's name write may be gone). */
        party__room_drop_state(room);
        room_reload_name(room);
    } else {
        party__room_release_held(room, 1);
    }
    if (room->leaving) /* given up during the batch */
        room_close_moved(room);
    party__room_run(room);
}

/* ---- group commit: the rooms whose batch ended in one loop turn ----
 *
 * A batch that must commit on a worker thread does not get a thread of
 * its own: the room waits on its loop's group list, and at the end of
 * the loop turn (a check handle, run once the turn's I/O callbacks are
 * done, and a prepare handle, run just before the loop waits for I/O:
 * a driver that runs one turn at a time, as party_test.h does, never
 * waits in poll with a group not started) every room on it is committed by one commit_batch on one
 * worker thread, which the backend turns into one transaction and one sync per file. At most
 * COMMIT_GROUPS_MAX groups per loop are in flight: rooms whose batch ends meanwhile wait for the
 * next one, which is what makes groups grow under load. Each room's result is its own
 * (room_commit_done). */

/* Groups in flight per loop. More than one because a group's files sync
 * one after another inside its call: with a few in flight, the shards'
 * syncs overlap (docs/benchmarks.md, "Group commit": 4 against 1 and 2,
 * as many as libuv's pool has threads by default). */
#define COMMIT_GROUPS_MAX 4

typedef struct commit_group {
    uv_work_t req;
    party__rooms *rooms;
    party__backend *be;
    unsigned delay_ms;
    uint64_t commit_us;
    size_t n;
    party_room **room;      /* n rooms, in the order their batches ended */
    party__commit *commits; /* n */
    int *results;           /* n */
} commit_group;

/* What the backend must commit for the room now: its store, and its wake
 * time when the alarm index may hold another. */
static party__commit room_commit_of(party_room *room) {
    party__commit commit;
    commit.store = room->store;
    commit.wake_ms = party__room_wake(room);
    commit.wake_changed = commit.wake_ms != room->wake_indexed;
    return commit;
}

static void group_work(uv_work_t *req) {
    commit_group *g = req->data;
    uint64_t start;
    if (g->delay_ms > 0)
        uv_sleep(g->delay_ms);
    start = uv_hrtime();
    g->be->ops->commit_batch(g->be, g->commits, g->n, g->results);
    g->commit_us = (uv_hrtime() - start) / 1000;
}

/* The group committed: each room's result released; frees the group. */
static void group_done(commit_group *g) {
    party__rooms *rooms = g->rooms;
    size_t i;
    /* Each room's batch took as long as the group's commit. */
    for (i = 0; i < g->n; i++)
        party__rooms_record_commit(rooms, g->commit_us);
    for (i = 0; i < g->n; i++) {
        rooms->n_busy--;
        room_commit_done(g->room[i], g->results[i]);
    }
    party__free(g);
}

static void after_group_work(uv_work_t *req, int status) {
    commit_group *g = req->data;
    party__rooms *rooms = g->rooms;
    (void)status;
    rooms->group_in_flight--;
    rooms->commit_groups++;
    group_done(g);
    party__loop_maybe_finish(rooms->lp);
}

/* No group could be had (out of memory): the room commits here when its
 * commit writes no alarm index entry (index writes never run on a loop
 * thread), else its batch fails. */
static void room_commit_alone(party_room *room) {
    party__backend *be = party__room_backend(room);
    party__commit commit = room_commit_of(room);
    uint64_t start;
    int result;

    room->rooms->n_busy--;
    if (commit.wake_changed) {
        party__store_rollback(room->store);
        room_commit_done(room, PARTY_ENOMEM);
        return;
    }
    start = uv_hrtime();
    be->ops->commit_batch(be, &commit, 1, &result);
    party__rooms_record_commit(room->rooms, (uv_hrtime() - start) / 1000);
    room_commit_done(room, result);
}

/* Takes the rooms of the list *head .. *tail (left empty) into a new
 * group, in their order; NULL when out of memory, the rooms then
 * committed alone. */
static commit_group *group_take(party__rooms *rooms, party_room **head, party_room **tail) {
    commit_group *g;
    party_room *room, *next;
    size_t n = 0, i;

    for (room = *head; room != NULL; room = room->group_next)
        n++;
    g = party__calloc(1, sizeof(*g) +
                             n * (sizeof(party_room *) + sizeof(party__commit) + sizeof(int)));
    room = *head;
    *head = *tail = NULL;
    if (g == NULL) {
        for (; room != NULL; room = next) {
            next = room->group_next;
            room->group_next = NULL;
            room_commit_alone(room);
        }
        return NULL;
    }
    g->commits = (party__commit *)(g + 1);
    g->room = (party_room **)(g->commits + n);
    g->results = (int *)(g->room + n);
    g->rooms = rooms;
    g->be = rooms->backend;
    g->n = n;
    g->req.data = g;
    for (i = 0; room != NULL; room = next, i++) {
        next = room->group_next;
        room->group_next = NULL;
        g->room[i] = room;
        g->commits[i] = room_commit_of(room);
    }
    return g;
}

/* Takes the rooms waiting on the group list and commits them as one
 * group on a worker thread. */
static void rooms_group_start(party__rooms *rooms) {
    commit_group *g = group_take(rooms, &rooms->group_head, &rooms->group_tail);
    size_t i;

    if (g == NULL)
        return;
    g->delay_ms = rooms->commit_delay_ms;
    rooms->group_in_flight++;
    if (uv_queue_work(&rooms->lp->loop, &g->req, group_work, after_group_work) != 0) {
        rooms->group_in_flight--;
        for (i = 0; i < g->n; i++)
            room_commit_alone(g->room[i]);
        party__free(g);
    }
}

/* Commits the rooms of the loop group here, as one commit_batch: their
 * commits wait for no disk, and one transaction per file costs less than
 * one per room. */
static void loop_group_commit(party__rooms *rooms) {
    commit_group *g = group_take(rooms, &rooms->loop_group_head, &rooms->loop_group_tail);

    if (g == NULL)
        return;
    group_work(&g->req); /* delay_ms 0: no wait on a loop thread */
    group_done(g);
}

/* The end of a loop turn: the rooms waiting to load go in groups, the
 * rooms whose commit waits for no disk commit here (again while their
 * next batches end meanwhile), and the rooms waiting to commit on a
 * worker thread go as one group. */
static void group_turn_end(party__rooms *rooms) {
    if (rooms->load_head != NULL)
        load_groups_start(rooms);
    if (rooms->loop_group_head != NULL) {
        while (rooms->loop_group_head != NULL)
            loop_group_commit(rooms);
        /* They may have been the last work of a stopping loop. */
        party__loop_maybe_finish(rooms->lp);
    }
    if (rooms->group_head == NULL && rooms->load_head == NULL) {
        uv_prepare_stop(&rooms->group_prepare);
        uv_check_stop(&rooms->group_check);
        return;
    }
    if (rooms->group_head != NULL && rooms->group_in_flight < COMMIT_GROUPS_MAX)
        rooms_group_start(rooms);
}

static void on_group_prepare(uv_prepare_t *prepare) {
    group_turn_end(prepare->data);
}

static void on_group_check(uv_check_t *check) {
    group_turn_end(check->data);
}

/* Something waits for the end of the turn: the handles run then. */
static void turn_end_watch(party__rooms *rooms) {
    if (!uv_is_active((uv_handle_t *)&rooms->group_prepare))
        uv_prepare_start(&rooms->group_prepare, on_group_prepare);
    if (!uv_is_active((uv_handle_t *)&rooms->group_check))
        uv_check_start(&rooms->group_check, on_group_check);
}

/* The room's batch waits for the loop's next group commit. */
static void room_group_add(party_room *room) {
    party__rooms *rooms = room->rooms;
    room->committing = 1;
    rooms->n_busy++;
    room->group_next = NULL;
    if (rooms->group_tail != NULL)
        rooms->group_tail->group_next = room;
    else
        rooms->group_head = room;
    rooms->group_tail = room;
    turn_end_watch(rooms);
}

/* The batch is over: commit what it wrote, with the room's wake time if
 * that changed (the backend files it in the alarm index in the same
 * commit). A batch that wrote nothing and moved no wake time ends at
 * once. A commit runs with the loop's next group, on a worker thread, or
 * on this loop at the end of the turn, with the other rooms whose batch
 * ended in it, when the backend's commits wait for no disk (durability
 * normal) and the alarm index is not written: index writes never run on
 * a loop thread. */
static void room_end_batch(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__backend *be;
    party__commit commit;

    if (room->store == NULL) {
        if (room->gate.head != NULL || room->holding)
            party__room_release_held(room, 1);
        return;
    }
    commit.store = room->store;
    commit.wake_ms = party__room_wake(room);
    commit.wake_changed = commit.wake_ms != room->wake_indexed;
    if (!commit.wake_changed && !party__store_wrote(room->store)) {
        /* A read-only transaction just ends. */
        party__store_rollback(room->store);
        if (room->gate.head != NULL || room->holding)
            party__room_release_held(room, 1);
        return;
    }
    be = party__room_backend(room);
    if (commit.wake_changed || !be->commit_on_loop || rooms->commit_delay_ms > 0) {
        room_group_add(room);
        return;
    }
    /* With the other rooms whose batch ends in this turn, at its end. */
    room->committing = 1;
    rooms->n_busy++;
    room->group_next = NULL;
    if (rooms->loop_group_tail != NULL)
        rooms->loop_group_tail->group_next = room;
    else
        rooms->loop_group_head = room;
    rooms->loop_group_tail = room;
    turn_end_watch(rooms);
}

/* Runs the queued events back to back as one batch, then ends the batch. */
void party__room_run(party_room *room) {
    if (room->running || room->committing || room->life != PARTY__ROOM_READY)
        return;
    while (room->queue_head != NULL && !room->committing && room->life == PARTY__ROOM_READY) {
        party__event *ev = room->queue_head;
        room->queue_head = ev->next;
        if (room->queue_head == NULL)
            room->queue_tail = NULL;
        party__room_deliver(room, ev);
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        party__free(ev);
    }
    room_end_batch(room);
    if (!room->committing)
        party__room_update_idle(room);
}

/* ---- loading: the acquire step, then the store ---- */

static void load_store(void *arg) {
    party__store_work *w = arg;
    party__backend *be = party__room_backend(w->room);
    w->result = be->ops->load(be, w->room->id, w->room->party->name, &w->store, &w->loaded, w->why,
                              sizeof(w->why));
}

static void load_work(uv_work_t *req) {
    /* On a thread of its own: what SQLite freed while opening does not
     * stay in the worker thread's malloc cache (short_thread.h). */
    party__short_thread_run(load_store, req->data);
}

/* An HTTP request or WebSocket upgrade for a room another node holds:
 * 503 (try again: D5), with this node's name like every answer of a
 * room, so a client or a balancer sees which node said it. */
static void room_moved_fail(party_room *room, party_conn *conn) {
    const char *headers[] = {"X-Partyd-Node", room->rooms->node, NULL, NULL};
    party__conn_http_fail_with(conn, 503, "the room is held by another node; try again\n",
                               room->rooms->node != NULL ? headers : NULL);
}

/* The store could not be opened: every waiting event is answered with an
 * error, and the room stays cold (the next event tries again). */
static void room_fail_queued(party_room *room, int moved) {
    party__event *ev;
    while ((ev = room->queue_head) != NULL) {
        room->queue_head = ev->next;
        if (room->queue_head == NULL)
            room->queue_tail = NULL;
        if (ev->type == PARTY__EV_CONNECT)
            room->n_pending--;
        if (ev->conn != NULL) {
            if (ev->type == PARTY__EV_CONNECT || ev->type == PARTY__EV_REQUEST) {
                if (moved)
                    room_moved_fail(room, ev->conn);
                else
                    party__conn_http_fail(ev->conn, 503, "room storage is unavailable\n");
            } else if (ev->type != PARTY__EV_CLOSE)
                party__conn_start_close(
                    ev->conn, moved ? PARTY__WS_SERVICE_RESTART : PARTY__WS_INTERNAL_ERROR,
                    moved ? "room moved" : "room storage is unavailable");
            party__conn_unref(ev->conn);
        }
        if (ev->fetch != NULL)
            party__log_error(room->rooms->lp,
                             "room %s/%s: an answer to a request was dropped: no storage",
                             room->party->name, room->name ? room->name : room->id);
        party__fetch_free(ev->fetch);
        party__outbound_req_free(ev->outbound);
        party__free(ev);
    }
}

/* The room could not be acquired or its store not loaded (w->why says
 * why): it stays cold, its waiting events fail. */
static void room_load_failed(party_room *room, party__store_work *w) {
    party__rooms *rooms = room->rooms;

    /* Another node holds the room (a cluster store): not a failure here. */
    int moved = w->result == PARTY_EBUSY || w->result == PARTY_EFENCED;

    rooms->n_busy--;
    rooms->n_loading--;
    if (moved)
        party__log_info(rooms->lp, "room %s/%s: held by another node: %s", room->party->name,
                        room->name ? room->name : room->id, w->why);
    else
        party__log_error(rooms->lp, "room %s/%s: cannot open its storage: %s", room->party->name,
                         room->name ? room->name : room->id, w->why);
    room->life = PARTY__ROOM_COLD;
    party__free(w);
    room_fail_queued(room, moved);
    if (room->wake_indexed == -1 && !moved) {
        /* It was woken by its alarm: the wake-up is due again soon, not
         * lost until a restart. (A room another node holds is that node's
         * to wake.) */
        party__room_heap_put(room, party__loop_epoch_ms(rooms->lp) + 2000);
        room->wake_indexed = 0;
    }
    party__room_update_idle(room);
    party__rooms_fire_due(rooms);
    party__loop_maybe_finish(rooms->lp);
}

/* The store is loaded: the room is ready and runs what waits (now, or,
 * inside a callback, from the ready list). */
static void room_loaded(party__store_work *w) {
    party_room *room = w->room;
    party__rooms *rooms = room->rooms;

    if (w->result != 0) {
        room_load_failed(room, w);
        return;
    }
    rooms->n_busy--;
    rooms->n_loading--;
    room->store = w->store;
    /* Whatever load left open, the first batch's end asks the backend. */
    room->store->touched = 1;
    rooms->n_loaded++;
    room->alarm_at = w->loaded.alarm_at;
    room->alarm_retries = w->loaded.alarm_retries;
    room->sched_next = w->loaded.sched_next;
    /* The index has what the store has, unless an alarm just took the
     * room's entry out of the heap (-1): then the batch re-files it. */
    if (room->wake_indexed != -1)
        room->wake_indexed = party__room_wake(room);
    party__free(w);
    /* Hydrate the name: a room reached by id learns it here; a room reached
     * by name learns whether it must still persist it. */
    room_reload_name(room);
    room->life = PARTY__ROOM_READY;
    if (rooms->lp->in_callback > 0)
        party__rooms_mark_ready(rooms, room);
    else
        party__room_run(room);
}

static void after_load_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party__rooms *rooms = w->room->rooms;
    (void)status;
    room_loaded(w);
    party__rooms_fire_due(rooms);
    party__loop_maybe_finish(rooms->lp);
}

/* ---- load groups: the rooms that came to load in one turn ----
 *
 * When many rooms come to load together (alarms due together, clients
 * reaching many cold rooms), each room's load would be a worker job and a
 * thread of its own: the thread's start and end cost more than loading a
 * room of the shared files. Rooms to load (with a backend whose loads
 * wait for no network, else rooms woken by their alarm) wait on the
 * loop's load list instead, and at the end of the turn (the commit
 * groups' handles) up to LOAD_GROUP_MAX of them are loaded one after
 * another by one worker job on one short thread; at most LOAD_GROUPS_MAX
 * such jobs per loop are in flight. Their batches then end in the same turn, so they commit as one
 * group too. (A room the backend knows to be new does not wait here: see
 * room_load_store.) */
#define LOAD_GROUP_MAX 256
#define LOAD_GROUPS_MAX 2

typedef struct load_group {
    uv_work_t req;
    party__rooms *rooms;
    size_t n;
    party__store_work **works; /* n */
} load_group;

static void load_group_loads(void *arg) {
    load_group *g = arg;
    size_t i;
    for (i = 0; i < g->n; i++)
        load_store(g->works[i]);
}

static void load_group_work(uv_work_t *req) {
    party__short_thread_run(load_group_loads, req->data);
}

static void after_load_group_work(uv_work_t *req, int status) {
    load_group *g = req->data;
    party__rooms *rooms = g->rooms;
    size_t i;
    (void)status;
    rooms->load_in_flight--;
    for (i = 0; i < g->n; i++)
        room_loaded(g->works[i]);
    party__free(g);
    if (rooms->load_head != NULL)
        turn_end_watch(rooms);
    party__rooms_fire_due(rooms);
    party__loop_maybe_finish(rooms->lp);
}

/* Loads one room on its own worker job. */
static void room_load_alone(party_room *room, party__store_work *w) {
    w->req.data = w;
    if (uv_queue_work(&room->rooms->lp->loop, &w->req, load_work, after_load_work) != 0) {
        snprintf(w->why, sizeof(w->why), "cannot queue its loading: out of memory");
        room_load_failed(room, w);
    }
}

/* Starts groups of the loads waiting on the list, as many as may be in
 * flight. */
static void load_groups_start(party__rooms *rooms) {
    while (rooms->load_head != NULL && rooms->load_in_flight < LOAD_GROUPS_MAX) {
        party__store_work *w = rooms->load_head;
        load_group *g;
        size_t n = 0, i;

        while (w != NULL && n < LOAD_GROUP_MAX) {
            n++;
            w = w->next;
        }
        g = party__calloc(1, sizeof(*g) + n * sizeof(party__store_work *));
        if (g == NULL) {
            /* Out of memory for the group: the first waits no longer. */
            w = rooms->load_head;
            rooms->load_head = w->next;
            if (rooms->load_head == NULL)
                rooms->load_tail = NULL;
            room_load_alone(w->room, w);
            continue;
        }
        g->works = (party__store_work **)(g + 1);
        g->rooms = rooms;
        g->n = n;
        g->req.data = g;
        for (i = 0; i < n; i++) {
            w = rooms->load_head;
            rooms->load_head = w->next;
            w->next = NULL;
            g->works[i] = w;
        }
        if (rooms->load_head == NULL)
            rooms->load_tail = NULL;
        rooms->load_in_flight++;
        if (uv_queue_work(&rooms->lp->loop, &g->req, load_group_work, after_load_group_work) != 0) {
            rooms->load_in_flight--;
            for (i = 0; i < n; i++) {
                snprintf(g->works[i]->why, sizeof(g->works[i]->why),
                         "cannot queue its loading: out of memory");
                room_load_failed(g->works[i]->room, g->works[i]);
            }
            party__free(g);
        }
    }
}

/* A room the backend knows to be new loads here, at once (no read, no
 * thread: a new room costs its first commit, not a trip to a worker);
 * any other with the loop's next load group, where the rooms that came
 * to load in one loop turn share a worker job and its thread, unless the
 * backend's loads wait for a network (then only rooms woken by their
 * alarm go together, the others each on a job of their own). */
static void room_load_store(party_room *room, party__store_work *w) {
    party__rooms *rooms = room->rooms;
    party__backend *be = party__room_backend(room);
    if (be->ops->load_quick != NULL &&
        be->ops->load_quick(be, room->id, room->party->name, &w->store, &w->loaded) == 0) {
        w->result = 0;
        room_loaded(w);
        return;
    }
    if (!be->load_in_groups && room->wake_indexed != -1) {
        room_load_alone(room, w);
        return;
    }
    w->next = NULL;
    if (rooms->load_tail != NULL)
        rooms->load_tail->next = w;
    else
        rooms->load_head = w;
    rooms->load_tail = w;
    turn_end_watch(rooms);
}

static void acquire_done(party__store_req *claim, int status) {
    party__store_work *w = claim->data;
    party_room *room = w->room;

    if (status != 0) {
        w->result = status;
        snprintf(w->why, sizeof(w->why), "the storage backend did not give it: %s",
                 party_strerror(status));
        room_load_failed(room, w);
        return;
    }
    room->acquired = 1;
    room->epoch = claim->epoch;
    room_load_store(room, w);
}

void party__room_acquire(party_room *room, party__store_work *w) {
    party__backend *be = party__room_backend(room);
    w->claim.loop = &room->rooms->lp->loop;
    w->claim.room_id = room->id;
    w->claim.party = room->party->name;
    w->claim.done = acquire_done;
    w->claim.data = w;
    be->ops->acquire(be, &w->claim);
}

void party__room_load(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__store_work *w;

    if (rooms->lp->handed_over) {
        /* An upgrade handed this loop's rooms to the new process, which
         * serves them now: run here too (a connection left behind that
         * closes, an answer to a request), a room would be a second
         * writer of its records, and its first records would be some the
         * new process's set of rooms with records never saw. Its events
         * end here, as for a room another node holds. */
        room_fail_queued(room, 1);
        party__room_update_idle(room);
        return;
    }
    if (rooms->lp->frozen == 2) {
        /* Exported: the new process may have opened the data directory
         * already. The events wait, the room cold, until the upgrade
         * ends (party__rooms_load_waiting): it loads if this process
         * serves again, and its events fail if the new one does. */
        return;
    }
    w = party__calloc(1, sizeof(*w));
    if (w == NULL) {
        room_fail_queued(room, 0);
        return;
    }
    w->room = room;
    room->life = PARTY__ROOM_LOADING;
    party__room_idle_remove(room);
    rooms->n_busy++;
    rooms->n_loading++;
    /* A hibernated room is still this process's: only its store left. */
    if (room->acquired)
        room_load_store(room, w);
    else
        party__room_acquire(room, w);
}

void party__rooms_load_waiting(party__rooms *rooms) {
    size_t i;
    for (i = 0; i < rooms->table_cap; i++) {
        party_room *room = rooms->table[i], *next;
        for (; room != NULL; room = next) {
            next = room->hash_next; /* failing its events may let it go */
            if (room->life == PARTY__ROOM_COLD && room->queue_head != NULL)
                party__room_load(room);
        }
    }
}

void party__rooms_record_commit(party__rooms *rooms, uint64_t us) {
    int i = 0;
    while (i < PARTY__COMMIT_BUCKETS - 1 && (double)us / 1000.0 > party__commit_bucket_ms[i])
        i++;
    rooms->commit_hist[i]++;
    rooms->commits++;
    rooms->commit_us_total += us;
}

/* ---- delivery: one event to the party's callbacks ---- */

/* Before the first on_start of a room addressed by name, its name goes into
 * its store, in the batch's transaction: it is durable before any output
 * of the batch is released. */
static int room_persist_name(party_room *room) {
    int r;
    if (!room->by_name || room->name_persisted || room->store == NULL)
        return 0;
    r = party__store_meta_put(room->store, "name", room->name, strlen(room->name));
    if (r == 0)
        r = party__store_meta_put(room->store, "party", room->party->name,
                                  strlen(room->party->name));
    if (r != 0) {
        party__log_error(room->rooms->lp, "room %s/%s: cannot store its name: %s",
                         room->party->name, room->name, party_strerror(r));
        return r;
    }
    room->name_persisted = 1;
    return 0;
}

/* Whether this process carries a request whose record a starting room
 * found (inflight.h): else an earlier incarnation left it. */
static int request_carried(party__rooms *rooms, party__inflight_kind kind, const char *id) {
    return kind == PARTY__INFLIGHT_ROOM ? party__fetch_carries(rooms, id)
                                        : party__outbound_carries(rooms, id);
}

int party__room_ensure_started(party_room *room) {
    const party_def *def = room->party->def;
    int rc = 0;

    if (room->status == PARTY__ROOM_STARTED)
        return 0;
    if (room_persist_name(room) != 0)
        return -1;
    room->status = PARTY__ROOM_STARTING;
    if (def->on_start != NULL)
        rc = def->on_start(room, room->props != NULL ? room->props : def->props);
    if (rc != 0) {
        room->status = PARTY__ROOM_ZERO;
        party__log_warn(room->rooms->lp,
                        "room %s/%s: on_start failed (%d); the next event retries it",
                        room->party->name, room->name ? room->name : room->id, rc);
        return -1;
    }
    room->status = PARTY__ROOM_STARTED;
    /* D4: what an earlier process left in flight is answered now, after
     * on_start and before the event that started the room. */
    party__inflight_room_started(room, request_carried);
    return 0;
}

static void room_link_conn(party_room *room, party_conn *conn) {
    party__conn_list_append(&room->conns, conn);
    room->n_conns++;
}

static int room_tag_conn(party_room *room, party_conn *conn, const party_request *req, char *why,
                         size_t why_len) {
    const party_def *def = room->party->def;
    const char *tags[PARTY_MAX_TAGS];
    int n = 0, i;

    if (def->connection_tags != NULL) {
        n = def->connection_tags(room, conn, req, tags, PARTY_MAX_TAGS - 1);
        if (n < 0) {
            snprintf(why, why_len, "connection_tags refused the connection (%d)", n);
            return -1;
        }
        if (n > PARTY_MAX_TAGS - 1) {
            snprintf(why, why_len,
                     "connection_tags returned %d tags; at most %d are allowed besides the id", n,
                     PARTY_MAX_TAGS - 1);
            return -1;
        }
        for (i = 0; i < n; i++) {
            size_t len = tags[i] != NULL ? strlen(tags[i]) : 0;
            if (len == 0 || len > PARTY_MAX_TAG_LEN) {
                snprintf(why, why_len, "tag %d is %zu bytes; tags must be 1..%d bytes", i, len,
                         PARTY_MAX_TAG_LEN);
                return -1;
            }
        }
    }
    if (party__conn_set_tags(conn, tags, (size_t)n) != 0) {
        snprintf(why, why_len, "out of memory storing tags");
        return -1;
    }
    return 0;
}

static void send_start_error(party_room *room, party_conn *conn) {
    char json[160];
    party__buf *frame;
    int n = snprintf(json, sizeof(json),
                     "{\"type\":\"error\",\"error\":\"on_start failed for room\",\"party\":\"%s\"}",
                     room->party->name);
    frame = party__ws_frame_new(NULL, PARTY__WS_TEXT, json, (size_t)n);
    if (frame != NULL) {
        (void)party__conn_queue(conn, frame);
        party__buf_release(frame);
    }
    party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "on_start failed");
}

/* The header lines that say which node answers for the room, and with
 * which epoch (a cluster store), into out; NULL when this process has no
 * node name (a single process pays one test). */
static const char *room_node_headers(const party_room *room, char *out, size_t cap) {
    const char *node = room->rooms->node;
    if (node == NULL)
        return NULL;
    if (room->epoch > 0)
        snprintf(out, cap, "X-Partyd-Node: %s\r\nX-Partyd-Epoch: %lld\r\n", node,
                 (long long)room->epoch);
    else
        snprintf(out, cap, "X-Partyd-Node: %s\r\n", node);
    return out;
}

/* The same as headers of an HTTP answer. */
static void room_node_set_headers(const party_room *room, party_response *res) {
    char epoch[24];
    if (room->rooms->node == NULL)
        return;
    party_response_set_header(res, "X-Partyd-Node", room->rooms->node);
    if (room->epoch > 0) {
        snprintf(epoch, sizeof(epoch), "%lld", (long long)room->epoch);
        party_response_set_header(res, "X-Partyd-Epoch", epoch);
    }
}

static void handle_connect(party_room *room, party_conn *conn) {
    const party_def *def = room->party->def;
    party_request *req;
    char why[160], node_headers[400];

    assert(room->n_pending > 0);
    room->n_pending--;
    if (conn->transport_closing || conn->phase != PARTY__CONN_UPGRADING) {
        party__conn_leave_room(conn); /* the client left before its turn */
        return;
    }
    if (room->leaving) {
        /* Its records here are stale: the client must reach the owner. */
        room_moved_fail(room, conn);
        party__conn_leave_room(conn);
        return;
    }
    req = &party__conn_http(conn)->preq;
    if (party__room_ensure_started(room) != 0) {
        /* The name may have been written: the answer waits for it. */
        party__room_gate(room, conn);
        if (party__conn_finish_upgrade(
                conn, room_node_headers(room, node_headers, sizeof(node_headers))) == 0)
            send_start_error(room, conn);
        party__conn_start_ws(conn);
        party__conn_leave_room(conn); /* never joined: the room may leave memory */
        return;
    }
    if (room_tag_conn(room, conn, req, why, sizeof(why)) != 0) {
        char body[200];
        party__log_warn(room->rooms->lp, "room %s/%s: connection %s refused: %s", room->party->name,
                        room->name, conn->id, why);
        snprintf(body, sizeof(body), "%s\n", why);
        party__room_gate(room, conn);
        party__conn_http_fail(conn, 500, body);
        party__conn_leave_room(conn);
        return;
    }
    /* A room's first start wrote its name: the 101 waits for the commit. */
    party__room_gate(room, conn);
    if (party__conn_finish_upgrade(
            conn, room_node_headers(room, node_headers, sizeof(node_headers))) != 0) {
        party__conn_abort(conn);
        party__conn_leave_room(conn);
        return;
    }
    if (conn->transport_closing) {
        party__conn_leave_room(conn); /* writing the 101 found the client gone */
        return;
    }
    room_link_conn(room, conn);
    party__sync_connect(room, conn); /* identity and state, before on_connect's own */
    if (def->on_connect != NULL)
        def->on_connect(room, conn, req);
    party__conn_start_ws(conn);
}

static void handle_request(party_room *room, party_conn *conn) {
    const party_def *def = room->party->def;
    party_response res;

    if (conn->transport_closing) {
        party__conn_leave_room(conn);
        return;
    }
    if (room->leaving) {
        /* No answer from stale records: the client must reach the owner. */
        room_moved_fail(room, conn);
        return;
    }
    party__response_init(&res);
    if (party__room_ensure_started(room) != 0)
        party__response_text(&res, 500,
                             "on_start failed for this room; retried on the next request\n");
    else if (def->on_request != NULL)
        def->on_request(room, &party__conn_http(conn)->preq, &res);
    else
        party__response_text(&res, 404, "Not Found\n");
    if (room->name_error) {
        /* The handler read the name of an unnamed room: its answer rests
         * on a name it did not have. */
        char text[300];
        party__response_free(&res);
        party__response_init(&res);
        snprintf(text, sizeof(text), "room %s: %s\n", room->id, party_strerror(PARTY_ENONAME));
        party__response_text(&res, 500, text);
    }
    room_node_set_headers(room, &res);
    party__room_gate(room, conn);
    party__conn_http_respond(conn, &res, 0);
    party__response_free(&res);
}

static void handle_close(party_room *room, const party__event *ev) {
    const party_def *def = room->party->def;
    party_conn *conn = ev->conn;
    char reason[PARTY_MAX_CLOSE_REASON + 1];
    size_t n = ev->data.len < PARTY_MAX_CLOSE_REASON ? ev->data.len : PARTY_MAX_CLOSE_REASON;

    memcpy(reason, ev->data.ptr, n);
    reason[n] = '\0';
    party__room_unlink_conn(room, conn);
    party__rpc_forget_conn(room, conn); /* its open calls' answers go nowhere */
    /* Closing from now on: sends fail and on_close cannot pick another code,
     * so the reply echoes the peer's. */
    party__conn_mark_closing(conn);
    /* on_close needs a started room; if on_start fails here the handler is
     * skipped, but the connection is closed all the same. */
    if (def->on_close != NULL && party__room_ensure_started(room) == 0)
        def->on_close(room, conn, ev->code, reason, ev->was_clean);
    /* The Close reply follows what on_close sent, behind the same mark. */
    party__room_gate(room, conn);
    party__conn_after_close(conn, reason);
    /* The room may leave memory now; a lingering socket must not point at
     * it. (Anything still held waits in the connection's own queue, and
     * the room's gate keeps a reference until the commit.) */
    party__conn_leave_room(conn);
}

void party__room_deliver(party_room *room, const party__event *ev) {
    const party_def *def = room->party->def;
    party__rooms *rooms = room->rooms;

    /* A wake-up runs due schedules, the alarm, both or neither (a stale
     * one): room_alarm.c counts what actually ran. */
    if (ev->type != PARTY__EV_ALARM)
        rooms->events[ev->type]++;
    /* A fenced room runs nothing on its stale records but what lets its
     * connections and requests go; it leaves memory once idle. */
    if (room->leaving && (ev->type == PARTY__EV_MESSAGE || ev->type == PARTY__EV_ERROR ||
                          ev->type == PARTY__EV_ALARM || ev->type == PARTY__EV_RESPONSE)) {
        party__fetch_free(ev->fetch);
        party__outbound_req_free(ev->outbound);
        return;
    }
    room->running = 1;
    room->name_error = 0;
    rooms->lp->in_callback++;
    switch (ev->type) {
    case PARTY__EV_CONNECT:
        handle_connect(room, ev->conn);
        break;
    case PARTY__EV_REQUEST:
        handle_request(room, ev->conn);
        break;
    case PARTY__EV_MESSAGE:
        /* State and RPC frames are the runtime's (sync.c, rpc.c); the rest
         * is the party's. */
        if (party__conn_in_room(ev->conn) && (def->on_message != NULL || room->party->sync) &&
            party__room_ensure_started(room) == 0 &&
            !(room->party->sync &&
              party__rpc_message(room, ev->conn, ev->data.ptr, ev->data.len, ev->binary)) &&
            def->on_message != NULL)
            def->on_message(room, ev->conn, ev->data.ptr, ev->data.len, ev->binary);
        break;
    case PARTY__EV_ERROR:
        if (def->on_error != NULL && party__room_ensure_started(room) == 0)
            def->on_error(room, ev->conn, ev->what);
        break;
    case PARTY__EV_CLOSE:
        handle_close(room, ev);
        break;
    case PARTY__EV_ALARM:
        party__room_handle_alarm(room);
        break;
    case PARTY__EV_RESPONSE:
        if (party__room_ensure_started(room) == 0 && ev->outbound != NULL)
            party__outbound_deliver(room, ev->outbound);
        else if (room->status == PARTY__ROOM_STARTED)
            party__fetch_deliver(room, ev->fetch);
        else /* the request's record stays: answered EABORTED later */
            party__log_warn(rooms->lp,
                            "room %s/%s: an answer to a request was dropped: on_start failed",
                            room->party->name, room->name ? room->name : room->id);
        party__fetch_free(ev->fetch);
        party__outbound_req_free(ev->outbound);
        break;
    }
    rooms->lp->in_callback--;
    room->running = 0;
}

/* Hands the room's store over (to be unloaded): it no longer counts as
 * loaded. */

/* ---- posting and draining events, shutdown ---- */

void party__room_drop_queue(party_room *room) {
    party__event *ev, *next;
    for (ev = room->queue_head; ev != NULL; ev = next) {
        next = ev->next;
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        party__fetch_free(ev->fetch);
        party__outbound_req_free(ev->outbound);
        party__free(ev);
    }
    room->queue_head = room->queue_tail = NULL;
}

/* A transfer of the loop's HTTP client ended: called by http_client on a
 * later loop turn (the engine knows no rooms; see docs/architecture.md,
 * upward callbacks). The answer goes to the room that asked, as a
 * RESPONSE event. */
static void outbound_answered(party__http_answer *answer, void *arg) {
    party__outbound_req *req = arg;
    party__event ev, *spare = NULL;
    party_room *room = party__outbound_answered(req, answer, &spare);

    if (room == NULL)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_RESPONSE;
    ev.outbound = req;
    if (party__room_post_with(room, &ev, spare) != 0)
        party__outbound_post_failed(req);
}

int party__room_post(party_room *room, const party__event *ev) {
    return party__room_post_with(room, ev, NULL);
}

int party__room_post_with(party_room *room, const party__event *ev, party__event *spare) {
    party__event *copy;

    if (room->life == PARTY__ROOM_READY && !room->running && !room->committing &&
        room->queue_head == NULL && room->rooms->lp->in_callback == 0) {
        party__free(spare);
        party__room_idle_remove(room);
        party__room_deliver(room, ev);
        party__room_run(room);
        return 0;
    }
    copy = spare != NULL && ev->data.len == 0 ? spare : party__malloc(sizeof(*copy) + ev->data.len);
    if (copy != spare)
        party__free(spare);
    if (copy == NULL)
        return PARTY_ENOMEM;
    *copy = *ev;
    if (ev->data.len > 0)
        memcpy(copy->inline_data, ev->data.ptr, ev->data.len);
    copy->data = party__slice_make(copy->inline_data, ev->data.len);
    copy->next = NULL;
    if (copy->conn != NULL)
        party__conn_ref(copy->conn);
    if (room->queue_tail != NULL)
        room->queue_tail->next = copy;
    else
        room->queue_head = copy;
    room->queue_tail = copy;
    party__room_idle_remove(room);
    if (room->life == PARTY__ROOM_COLD)
        party__room_load(room);
    else if (room->life == PARTY__ROOM_READY && !room->running && !room->committing)
        party__rooms_mark_ready(room->rooms, room);
    return 0;
}

void party__room_drain_ready(party__rooms *rooms) {
    while (rooms->ready_head != NULL) {
        party_room *room = rooms->ready_head;
        rooms->ready_head = room->ready_next;
        if (rooms->ready_head == NULL)
            rooms->ready_tail = NULL;
        room->ready_next = NULL;
        room->queued = 0;
        party__room_run(room);
    }
}

int party__rooms_busy(party__rooms *rooms) {
    return rooms->n_busy > 0;
}

void party__rooms_free_all(party__rooms *rooms) {
    size_t i;
    for (i = 0; i < rooms->table_cap; i++) {
        while (rooms->table[i] != NULL) {
            party_room *room = rooms->table[i];
            party__room_idle_remove(room);
            party__room_table_remove(rooms, room);
            if (room->gate.head != NULL || room->fetch_held != NULL)
                party__room_release_held(room, 0);
            if (room->store != NULL && party__store_wrote(room->store)) {
                /* A batch left open (none is, normally): kept, as on a
                 * commit; the backend is still open (loop 0 closes it
                 * after every loop's rooms). */
                party__commit commit = {room->store, party__room_wake(room), 0};
                int result;
                party__room_backend(room)->ops->commit_batch(party__room_backend(room), &commit, 1,
                                                             &result);
            }
            party__room_drop_state(room);
            if (room->store != NULL)
                party__room_backend(room)->ops->unload(party__room_take_store(room));
            party__room_drop_queue(room);
            party__room_destroy(room);
        }
    }
    rooms->ready_head = rooms->ready_tail = NULL;
    party__outbound_finish(rooms); /* the rooms its answers were for are gone */
}

static void on_drain_idle(uv_idle_t *idle) {
    party__rooms *rooms = idle->data;
    party__room_drain_ready(rooms);
    if (rooms->ready_head == NULL)
        uv_idle_stop(idle);
    /* What ran may have been the last work of a stopping loop. */
    party__loop_maybe_finish(rooms->lp);
}

void party__rooms_mark_ready(party__rooms *rooms, party_room *room) {
    if (room->queued)
        return;
    room->queued = 1;
    room->ready_next = NULL;
    if (rooms->ready_tail != NULL)
        rooms->ready_tail->ready_next = room;
    else
        rooms->ready_head = room;
    rooms->ready_tail = room;
    uv_idle_start(&rooms->drain_idle, on_drain_idle);
}

/* ---- routed requests ---- */

void party__rooms_connect(party__rooms *rooms, party_conn *conn, const party__routed *r) {
    party__event ev;
    party_room *room = party__room_get_named(rooms, r->party, r->name, r->id);

    if (room == NULL) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    if (room->n_conns + room->n_pending >= r->party->max_room_conns) {
        rooms->lp->limit_room_conns++;
        party__log_warn(
            rooms->lp,
            "room %s/%s: refused a connection: max_room_conns (%zu) reached (--max-room-conns)",
            r->party->name, r->name, r->party->max_room_conns);
        party__conn_http_fail(conn, 503, "room is full (max_room_conns)\n");
        return;
    }
    if (party__conn_http(conn)->preq.props != NULL &&
        party__room_set_props(room, party__conn_http(conn)->preq.props) != 0) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    if (party__conn_begin_upgrade(conn, room, r->conn_id) != 0) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    room->n_pending++;
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_CONNECT;
    ev.conn = conn;
    if (party__room_post(room, &ev) != 0) {
        room->n_pending--;
        party__conn_abort(conn);
    }
}

void party__rooms_request(party__rooms *rooms, party_conn *conn, const party__routed *r) {
    party__event ev;
    party_room *room;

    if (r->name == NULL) {
        room = party__room_get_by_id(rooms, r->party, r->id);
        if (room == NULL) {
            party__router_respond(conn, 400,
                                  "malformed room id, or the id belongs to another party\n", 0);
            return;
        }
    } else {
        room = party__room_get_named(rooms, r->party, r->name, r->id);
        if (room == NULL) {
            party__router_respond(conn, 503, "out of memory\n", 1);
            return;
        }
        if (party__conn_http(conn)->preq.props != NULL &&
            party__room_set_props(room, party__conn_http(conn)->preq.props) != 0) {
            party__router_respond(conn, 503, "out of memory\n", 1);
            return;
        }
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_REQUEST;
    ev.conn = conn;
    conn->room = room; /* until answered: the room the request belongs to */
    if (party__room_post(room, &ev) != 0) {
        conn->room = NULL;
        party__router_respond(conn, 503, "out of memory\n", 1);
    }
}
