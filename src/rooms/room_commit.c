/* room_commit: a room's batches and their durability. Queued events run
 * back to back as one batch in one transaction, committed through the
 * storage backend (on a worker thread when it must reach the disk) while
 * new events queue; the batch's output is held until the commit is
 * durable (the output gate). Also loading a cold room: the acquire step,
 * then its store on a worker thread. */
#include "room_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "fetch.h"
#include "log.h"
#include "short_thread.h"
#include "ws.h"
#include "alloc.h"

/* ---- the output gate ---- */

int party__room_holding(party_room *room) {
    if (room->holding)
        return 1;
    /* The backend knows whether the batch wrote, whatever wrote. */
    if (room->running && room->store != NULL && party__store_wrote(room->store))
        room->holding = 1;
    return room->holding;
}

void party__room_gate(party_room *room, party_conn *conn) {
    /* No list of frames: the connection keeps its output in its own queue,
     * behind a mark, and the room only the list of connections it holds. */
    if (party__room_holding(room))
        party__conn_hold(conn, &room->gate);
}

/* The batch is over: committed, what it held goes out, in order (and
 * its held requests leave); not committed, it is dropped and the
 * connections that lose output fail. */
void party__room_release_held(party_room *room, int committed) {
    room->holding = 0;
    party__fetch_release_held(room, committed);
    if (committed)
        party__conn_gate_release(&room->gate);
    else
        party__conn_gate_drop(&room->gate);
}

/* ---- batches and commits ---- */

static void commit_work(uv_work_t *req) {
    party__store_work *w = req->data;
    party__backend *be = party__room_backend(w->room);
    uint64_t start;
    if (w->delay_ms > 0)
        uv_sleep(w->delay_ms);
    start = uv_hrtime();
    be->ops->commit_batch(be, &w->commit, 1, &w->result);
    w->commit_us = (uv_hrtime() - start) / 1000;
}

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

/* The commit was refused: the room is another node's now (a cluster
 * backend's PARTY_EFENCED). Nothing of the batch was kept: its held output
 * is dropped, and every connection of the room closes with 1012 (HTTP:
 * 503 + Retry-After) so clients reconnect and reach the owner. */
static void room_fenced(party_room *room) {
    party_runtime *rt = room->rt;
    party_conn *conn, *next;

    rt->commits_fenced++;
    party__log_error(rt,
                     "room %s/%s: commit refused: the room is owned by another node now (fenced);"
                     " nothing of the batch was kept, its connections close with 1012",
                     room->party->name, room->name ? room->name : room->id);
    room->holding = 0;
    party__fetch_release_held(room, 0);
    party__conn_gate_drop_moved(&room->gate);
    for (conn = room->conns.head; conn != NULL; conn = next) {
        next = party__conn_list_next(conn);
        party__conn_start_close(conn, PARTY__WS_SERVICE_RESTART, "room moved");
    }
    party__room_drop_state(room);
}

static void room_commit_done(party_room *room, int result) {
    party_runtime *rt = room->rt;
    room->committing = 0;
    if (result == 0)
        party__room_sync_wake(room);
    else
        party__room_reload_wake(room);
    if (result == PARTY_EFENCED) {
        room_fenced(room);
    } else if (result != 0) {
        rt->commit_failures++;
        party__log_error(rt,
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
    party__room_run(room);
}

static void after_commit_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    int result = w->result;
    (void)status;
    party__runtime_record_commit(room->rt, w->commit_us);
    party__free(w);
    room->rt->n_busy--;
    room_commit_done(room, result);
    party__runtime_maybe_finish(room->rt);
}

/* Commits on a worker thread; 0 if the work was queued. */
static int room_commit_async(party_room *room, const party__commit *commit) {
    party_runtime *rt = room->rt;
    party__store_work *w = party__calloc(1, sizeof(*w));

    if (w == NULL)
        return PARTY_ENOMEM;
    w->room = room;
    w->commit = *commit;
    w->delay_ms = rt->commit_delay_ms;
    w->req.data = w;
    room->committing = 1;
    rt->n_busy++;
    if (uv_queue_work(&rt->loop, &w->req, commit_work, after_commit_work) != 0) {
        rt->n_busy--;
        room->committing = 0;
        party__free(w);
        return PARTY_ENOMEM;
    }
    return 0;
}

/* The batch is over: commit what it wrote, with the room's wake time if
 * that changed (the backend files it in the alarm index in the same
 * commit). A batch that wrote nothing and moved no wake time ends at
 * once. A commit runs on a worker thread, or here when the backend's
 * commits wait for no disk (durability normal) and the alarm index is
 * not written: index writes never run on a loop thread. */
static void room_end_batch(party_room *room) {
    party_runtime *rt = room->rt;
    party__backend *be;
    party__commit commit;
    uint64_t start;
    int result;

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
    if (commit.wake_changed || !be->commit_on_loop || rt->commit_delay_ms > 0) {
        if (room_commit_async(room, &commit) == 0)
            return;
        if (commit.wake_changed) {
            /* Out of memory: not worth an index write on the loop. */
            party__store_rollback(room->store);
            room->committing = 1;
            room_commit_done(room, PARTY_ENOMEM);
            return;
        }
    }
    room->committing = 1;
    start = uv_hrtime();
    be->ops->commit_batch(be, &commit, 1, &result);
    party__runtime_record_commit(rt, (uv_hrtime() - start) / 1000);
    room_commit_done(room, result);
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
            if (ev->type == PARTY__EV_CONNECT || ev->type == PARTY__EV_REQUEST)
                party__conn_http_fail(ev->conn, 503,
                                      moved ? "the room is held by another node; try again\n"
                                            : "room storage is unavailable\n");
            else if (ev->type != PARTY__EV_CLOSE)
                party__conn_start_close(
                    ev->conn, moved ? PARTY__WS_SERVICE_RESTART : PARTY__WS_INTERNAL_ERROR,
                    moved ? "room moved" : "room storage is unavailable");
            party__conn_unref(ev->conn);
        }
        if (ev->fetch != NULL)
            party__log_error(room->rt, "room %s/%s: an answer to a request was dropped: no storage",
                             room->party->name, room->name ? room->name : room->id);
        party__fetch_free(ev->fetch);
        party__free(ev);
    }
}

/* The room could not be acquired or its store not loaded (w->why says
 * why): it stays cold, its waiting events fail. */
static void room_load_failed(party_room *room, party__store_work *w) {
    party_runtime *rt = room->rt;

    /* Another node holds the room (a cluster store): not a failure here. */
    int moved = w->result == PARTY_EBUSY || w->result == PARTY_EFENCED;

    rt->n_busy--;
    rt->n_loading--;
    if (moved)
        party__log_info(rt, "room %s/%s: held by another node: %s", room->party->name,
                        room->name ? room->name : room->id, w->why);
    else
        party__log_error(rt, "room %s/%s: cannot open its storage: %s", room->party->name,
                         room->name ? room->name : room->id, w->why);
    room->life = PARTY__ROOM_COLD;
    party__free(w);
    room_fail_queued(room, moved);
    if (room->wake_indexed == -1 && !moved) {
        /* It was woken by its alarm: the wake-up is due again soon, not
         * lost until a restart. (A room another node holds is that node's
         * to wake.) */
        party__room_heap_put(room, party__runtime_epoch_ms(rt) + 2000);
        room->wake_indexed = 0;
    }
    party__room_update_idle(room);
    party__rooms_fire_due(rt);
    party__runtime_maybe_finish(rt);
}

static void after_load_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    party_runtime *rt = room->rt;
    (void)status;

    if (w->result != 0) {
        room_load_failed(room, w);
        return;
    }
    rt->n_busy--;
    rt->n_loading--;
    room->store = w->store;
    rt->n_loaded++;
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
    party__room_run(room);
    party__rooms_fire_due(rt);
    party__runtime_maybe_finish(rt);
}

static void room_load_store(party_room *room, party__store_work *w) {
    w->req.data = w;
    if (uv_queue_work(&room->rt->loop, &w->req, load_work, after_load_work) != 0) {
        snprintf(w->why, sizeof(w->why), "cannot queue its loading: out of memory");
        room_load_failed(room, w);
    }
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
    room_load_store(room, w);
}

void party__room_acquire(party_room *room, party__store_work *w) {
    party__backend *be = party__room_backend(room);
    w->claim.loop = &room->rt->loop;
    w->claim.room_id = room->id;
    w->claim.party = room->party->name;
    w->claim.done = acquire_done;
    w->claim.data = w;
    be->ops->acquire(be, &w->claim);
}

void party__room_load(party_room *room) {
    party_runtime *rt = room->rt;
    party__store_work *w;

    /* Every loaded room holds files open (database, WAL, shared memory).
     * Past max_loaded_rooms the longest-idle rooms without connections
     * leave early to make room, whatever their idle time. */
    while (rt->n_loaded + rt->n_loading >= rt->max_loaded_rooms && rt->idle.head != NULL &&
           rt->idle.head != room && rt->idle.head->life == PARTY__ROOM_READY)
        (void)party__room_evict(rt->idle.head);
    w = party__calloc(1, sizeof(*w));

    if (w == NULL) {
        room_fail_queued(room, 0);
        return;
    }
    w->room = room;
    room->life = PARTY__ROOM_LOADING;
    party__room_idle_remove(room);
    rt->n_busy++;
    rt->n_loading++;
    /* A hibernated room is still this process's: only its store left. */
    if (room->acquired)
        room_load_store(room, w);
    else
        party__room_acquire(room, w);
}
