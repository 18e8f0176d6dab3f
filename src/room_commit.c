/* room_commit: a room's batches and their durability. Queued events run
 * back to back as one batch in one transaction, committed (on a worker
 * thread when it must reach the disk) while new events queue; the batch's
 * output is held until the commit is durable (the output gate). Also the
 * acquire step: opening a cold room's store on a worker thread. */
#include "room_internal.h"

#include <stdlib.h>
#include <string.h>

#include "alarm.h"
#include "conn.h"
#include "fetch.h"
#include "log.h"
#include "short_thread.h"

/* ---- the output gate ---- */

int party__room_holding(party_room *room) {
    if (room->holding)
        return 1;
    if (room->running &&
        (room->batch_wrote || (room->store != NULL && party__store_has_written(room->store))))
        room->holding = 1;
    return room->holding;
}

int party__room_hold(party_room *room, party_conn *conn, party__buf *buf) {
    party__held *h = malloc(sizeof(*h));
    if (h == NULL)
        return PARTY_ENOMEM;
    h->conn = conn;
    h->buf = party__buf_ref(buf);
    h->next = NULL;
    party__conn_ref(conn);
    conn->holder = room;
    conn->held_bytes += buf->len;
    if (room->held_tail != NULL)
        room->held_tail->next = h;
    else
        room->held_head = h;
    room->held_tail = h;
    return 0;
}

/* The commit is durable: what the batch produced goes out, in order. */
void party__room_release_held(party_room *room, int committed) {
    party__held *h, *next, *list = room->held_head;

    room->held_head = room->held_tail = NULL;
    room->holding = 0;
    party__fetch_release_held(room, committed);
    for (h = list; h != NULL; h = h->next) {
        h->conn->holder = NULL;
        h->conn->held_bytes = 0;
        if (committed)
            h->conn->handshake_held = 0;
    }
    /* Dropped, a connection fails once, at its last held entry: a second
     * failure would take the 1011 Close the first one queued for a Close
     * of the room's among the dropped output. held_bytes counts down the
     * entries meanwhile (it is 0 again after). */
    if (!committed)
        for (h = list; h != NULL; h = h->next)
            h->conn->held_bytes++;
    for (h = list; h != NULL; h = next) {
        next = h->next;
        if (committed) {
            (void)party__conn_queue_released(h->conn, h->buf);
        } else if (--h->conn->held_bytes == 0 && !h->conn->transport_closing) {
            /* The effects it announced are gone: a WebSocket is closed with
             * 1011, an HTTP request gets 500 instead of its answer. */
            party__conn_fail_uncommitted(h->conn);
        }
        party__buf_release(h->buf);
        party__conn_unref(h->conn);
        free(h);
    }
}

/* ---- batches and commits ---- */

/* The index learns a wake time before the room's commit makes it real, so
 * no alarm can exist that the index does not know (an index entry without
 * an alarm costs one wake-up). */
static int commit_with_index(party_room *room, party__store *store, int64_t index_due) {
    if (index_due > 0 &&
        party__alarm_index_put(room->rt, room->id, room->party->name, index_due) != 0) {
        party__store_rollback(store);
        return PARTY_EIO;
    }
    return party__store_commit(store);
}

static void commit_work(uv_work_t *req) {
    party__store_work *w = req->data;
    uint64_t start;
    if (w->delay_ms > 0)
        uv_sleep(w->delay_ms);
    start = uv_hrtime();
    w->result = commit_with_index(w->room, w->store, w->index_due);
    w->commit_us = (uv_hrtime() - start) / 1000;
    /* Here rather than on the loop once the commit is back: the index is
     * shared by every loop, and its mutex may be held by a worker across
     * another room's synced index write. */
    if (w->result == 0 && w->index_drop)
        w->index_dropped =
            party__alarm_index_put(w->room->rt, w->room->id, w->room->party->name, 0) == 0;
}

/* What the store says about the room's name, into memory. */
static void room_reload_name(party_room *room) {
    char *stored = party__store_meta_get(room->store, "name");
    size_t size;
    if (room->by_name) {
        room->name_persisted = stored != NULL;
        free(stored);
    } else {
        if (room->name != room->name_inline)
            free(room->name);
        room->name = stored;
        /* In the room's own block when it fits, like a name given at birth. */
        size = stored != NULL ? strlen(stored) + 1 : 0;
        if (size > 0 && size <= PARTY__ROOM_NAME_INLINE) {
            memcpy(room->name_inline, stored, size);
            room->name = room->name_inline;
            free(stored);
        }
    }
}

static void room_commit_done(party_room *room, int result) {
    party_runtime *rt = room->rt;
    room->committing = 0;
    if (result == 0)
        party__room_sync_wake(room);
    else
        party__room_reload_wake(room);
    if (result != 0) {
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
    if (w->index_dropped && party__room_wake(room) == 0) {
        /* The index no longer has the room: the heap follows, and
         * party__room_sync_wake has nothing left to do. */
        (void)party__alarm_heap_put(room->rt, room->id, room->party->name, 0);
        room->wake_indexed = 0;
    }
    free(w);
    room->rt->n_busy--;
    room_commit_done(room, result);
    party__runtime_maybe_finish(room->rt);
}

/* Commits on a worker thread; 0 if the work was queued. */
static int room_commit_async(party_room *room, int64_t index_due, int index_drop) {
    party_runtime *rt = room->rt;
    party__store_work *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return PARTY_ENOMEM;
    w->room = room;
    w->store = room->store;
    w->index_due = index_due;
    w->index_drop = index_drop;
    w->delay_ms = rt->commit_delay_ms;
    w->req.data = w;
    room->committing = 1;
    rt->n_busy++;
    if (uv_queue_work(&rt->loop, &w->req, commit_work, after_commit_work) != 0) {
        rt->n_busy--;
        room->committing = 0;
        free(w);
        return PARTY_ENOMEM;
    }
    return 0;
}

/* The batch is over: commit what it wrote. A read-only transaction ends at
 * once; a write is committed on a worker thread when it must reach the
 * disk, or here when the durability mode does not wait for the disk. */
static void room_end_batch(party_room *room) {
    party_runtime *rt = room->rt;
    int64_t wake = party__room_wake(room);
    /* A new wake time must reach the index before the commit. */
    int64_t index_due = wake > 0 && wake != room->wake_indexed ? wake : 0;
    int wrote;

    if (room->store != NULL && party__store_lost_transaction(room->store)) {
        /* SQLite rolled the batch's transaction back under it: what the
         * batch wrote is gone, so is what it announced, as when a commit
         * fails. */
        party__store_rollback(room->store);
        room->batch_wrote = 0;
        room_commit_done(room, PARTY_EIO);
        return;
    }
    if (room->store == NULL || !party__store_in_transaction(room->store)) {
        room->batch_wrote = 0;
        if (index_due > 0)
            (void)party__alarm_index_put(rt, room->id, room->party->name, index_due);
        if (room->store != NULL)
            party__room_sync_wake(room);
        if (room->held_head != NULL || room->holding)
            party__room_release_held(room, 1);
        return;
    }
    wrote = room->batch_wrote || party__store_has_written(room->store) || index_due > 0;
    room->batch_wrote = 0;
    if (wrote && (rt->durability_full || rt->commit_delay_ms > 0) &&
        room_commit_async(room, index_due, wake == 0 && room->wake_indexed != 0) == 0)
        return;
    room->committing = 1;
    {
        uint64_t start = uv_hrtime();
        int result = commit_with_index(room, room->store, index_due);
        if (wrote)
            party__runtime_record_commit(rt, (uv_hrtime() - start) / 1000);
        room_commit_done(room, result);
    }
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
        free(ev);
    }
    room_end_batch(room);
    if (!room->committing)
        party__room_update_idle(room);
}

/* ---- loading (the acquire step) ---- */

static void open_store(void *arg) {
    party__store_work *w = arg;
    w->result = party__store_open(&w->opt, w->room->id, &w->store, w->why, sizeof(w->why));
    if (w->result == 0) {
        (void)party__store_alarm_get(w->store, &w->alarm_at, &w->alarm_retries);
        w->sched_next = party__store_sched_earliest(w->store);
    }
}

static void open_work(uv_work_t *req) {
    /* On a thread of its own: what SQLite freed while opening does not
     * stay in the worker thread's malloc cache (short_thread.h). */
    party__short_thread_run(open_store, req->data);
}

/* The store could not be opened: every waiting event is answered with an
 * error, and the room stays cold (the next event tries again). */
static void room_fail_queued(party_room *room) {
    party__event *ev;
    while ((ev = room->queue_head) != NULL) {
        room->queue_head = ev->next;
        if (room->queue_head == NULL)
            room->queue_tail = NULL;
        if (ev->type == PARTY__EV_CONNECT)
            room->n_pending--;
        if (ev->conn != NULL) {
            if (ev->type == PARTY__EV_CONNECT || ev->type == PARTY__EV_REQUEST)
                party__conn_http_fail(ev->conn, 503, "room storage is unavailable\n");
            else if (ev->type != PARTY__EV_CLOSE)
                party__conn_start_close(ev->conn, PARTY__WS_INTERNAL_ERROR,
                                        "room storage is unavailable");
            party__conn_unref(ev->conn);
        }
        if (ev->fetch != NULL)
            party__log_error(room->rt, "room %s/%s: an answer to a request was dropped: no storage",
                             room->party->name, room->name ? room->name : room->id);
        party__fetch_free(ev->fetch);
        free(ev);
    }
}

static void after_open_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    party_runtime *rt = room->rt;
    (void)status;

    rt->n_busy--;
    rt->n_loading--;
    if (w->result != 0) {
        party__log_error(rt, "room %s/%s: cannot open its storage: %s", room->party->name,
                         room->name ? room->name : room->id, w->why);
        room->life = PARTY__ROOM_COLD;
        free(w);
        room_fail_queued(room);
        if (room->wake_indexed == -1) {
            /* It was woken by its alarm: the wake-up is due again soon, not
             * lost until a restart. */
            (void)party__alarm_heap_put(rt, room->id, room->party->name,
                                        party__runtime_epoch_ms(rt) + 2000);
            room->wake_indexed = 0;
        }
        party__room_update_idle(room);
        party__alarms_room_loaded(rt);
        party__runtime_maybe_finish(rt);
        return;
    }
    room->store = w->store;
    rt->n_loaded++;
    room->alarm_at = w->alarm_at;
    room->alarm_retries = w->alarm_retries;
    room->sched_next = w->sched_next;
    /* The index has what the store has, unless an alarm just took the
     * room's entry out of the heap (-1): then the batch re-files it. */
    if (room->wake_indexed != -1)
        room->wake_indexed = party__room_wake(room);
    free(w);
    /* Hydrate the name: a room reached by id learns it here; a room reached
     * by name learns whether it must still persist it. */
    room_reload_name(room);
    room->life = PARTY__ROOM_READY;
    party__room_run(room);
    party__alarms_room_loaded(rt);
    party__runtime_maybe_finish(rt);
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
    w = calloc(1, sizeof(*w));

    if (w == NULL) {
        room_fail_queued(room);
        return;
    }
    w->room = room;
    w->opt.data_dir = rt->data_dir;
    w->opt.durability_full = rt->durability_full;
    w->req.data = w;
    room->life = PARTY__ROOM_LOADING;
    party__room_idle_remove(room);
    rt->n_busy++;
    rt->n_loading++;
    if (uv_queue_work(&rt->loop, &w->req, open_work, after_open_work) != 0) {
        rt->n_busy--;
        rt->n_loading--;
        room->life = PARTY__ROOM_COLD;
        free(w);
        room_fail_queued(room);
    }
}
