/* room_alarm: a room's wake-ups. The ALARM event runs the schedules that
 * are due, then the alarm (retried with backoff when on_alarm fails); each
 * batch's commit files the room's wake time (the earlier of its alarm and
 * its first schedule) in the backend's alarm index, and the loop's heap
 * (alarm.h) follows. This file is the heap's user: its wake callback, and
 * the index's entries filed in the heap at start-up (and again after an
 * upgrade failed once the new process could write). */
#include "room_internal.h"

#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "log.h"
#include "alloc.h"

int64_t party__room_wake(const party_room *room) {
    if (room->alarm_at == 0)
        return room->sched_next;
    if (room->sched_next == 0 || room->alarm_at < room->sched_next)
        return room->alarm_at;
    return room->sched_next;
}

/* Retries of a failed on_alarm: 2, 4, ... 64 s plus up to 25 % jitter. */
#define ALARM_MAX_RETRIES 6

static int64_t alarm_backoff_ms(int retry) {
    int64_t base = (int64_t)2000 << (retry - 1);
    uint32_t r = 0;
    if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) != 0)
        r = (uint32_t)base;
    return base + (int64_t)(r % (uint32_t)(base / 4 + 1));
}

/* Copies of the schedules due now: on_schedule may write, which a live
 * SELECT over the same table must not see. */
typedef struct due_list {
    party__schedule *items;
    char **strings; /* one block per item: id, name, cron, payload */
    size_t n, cap;
} due_list;

static int collect_due(const party__schedule *sc, void *arg) {
    due_list *due = arg;
    size_t id_len = strlen(sc->id) + 1, name_len = strlen(sc->name) + 1;
    size_t cron_len = sc->cron != NULL ? strlen(sc->cron) + 1 : 0;
    char *block;
    party__schedule *item;

    if (due->n == due->cap) {
        size_t cap = due->cap ? due->cap * 2 : 8;
        party__schedule *items = party__realloc(due->items, cap * sizeof(*items));
        char **strings;
        if (items == NULL)
            return PARTY_ENOMEM;
        due->items = items;
        strings = party__realloc(due->strings, cap * sizeof(*strings));
        if (strings == NULL)
            return PARTY_ENOMEM;
        due->strings = strings;
        due->cap = cap;
    }
    block = party__malloc(id_len + name_len + cron_len + sc->len + 1);
    if (block == NULL)
        return PARTY_ENOMEM;
    item = &due->items[due->n];
    *item = *sc;
    memcpy(block, sc->id, id_len);
    item->id = block;
    memcpy(block + id_len, sc->name, name_len);
    item->name = block + id_len;
    if (sc->cron != NULL) {
        memcpy(block + id_len + name_len, sc->cron, cron_len);
        item->cron = block + id_len + name_len;
    }
    if (sc->len > 0)
        memcpy(block + id_len + name_len + cron_len, sc->payload, sc->len);
    item->payload = block + id_len + name_len + cron_len;
    due->strings[due->n++] = block;
    return 0;
}

/* The next run of a repeating schedule after it ran at now; 0: done. */
static int64_t schedule_next_run(const party__schedule *sc, int64_t now) {
    int64_t next = 0;
    if (sc->kind == PARTY__SCHED_EVERY) {
        next = sc->next_ms + sc->interval_ms;
        if (next <= now) /* runs missed while down are not replayed one by one */
            next = now + sc->interval_ms;
    } else if (sc->kind == PARTY__SCHED_CRON) {
        party__cron cron;
        const char *why;
        if (sc->cron == NULL || party__cron_parse(sc->cron, &cron, &why) != 0 ||
            party__cron_next(&cron, now, &next) != 0)
            next = 0;
    }
    return next;
}

static void run_due_schedules(party_room *room, int64_t now) {
    const party_def *def = room->party->def;
    due_list due = {0};
    size_t i;

    if (room->sched_next == 0 || room->sched_next > now)
        return;
    if (party__store_sched_each(room->store, now, collect_due, &due) != 0)
        party__log_error(room->rooms->lp, "room %s/%s: cannot read its schedules",
                         room->party->name, room->id);
    for (i = 0; i < due.n; i++) {
        const party__schedule *sc = &due.items[i];
        int64_t next = schedule_next_run(sc, now);
        int rc = 0;
        /* Advance it first: a schedule the handler cancels stays cancelled. */
        if (next > 0)
            (void)party__store_sched_set_next(room->store, sc->id, next);
        else
            (void)party__store_sched_cancel(room->store, sc->id);
        if (def->on_schedule != NULL) {
            rc = def->on_schedule(room, sc->name, sc->payload, sc->len);
            room->rooms->schedules_fired++;
        }
        if (rc != 0)
            party__log_warn(room->rooms->lp, "room %s/%s: on_schedule '%s' failed (%d)",
                            room->party->name, room->name ? room->name : room->id, sc->name, rc);
        party__free(due.strings[i]);
    }
    party__free(due.items);
    party__free(due.strings);
    /* Unread, it is looked up again in a second rather than lost. */
    if (party__store_sched_earliest(room->store, &room->sched_next) != 0)
        room->sched_next = now + 1000;
}

void party__room_handle_alarm(party_room *room) {
    const party_def *def = room->party->def;
    party__rooms *rooms = room->rooms;
    int64_t now = party__loop_epoch_ms(rooms->lp);
    int retries, rc = 0;

    if (party__room_wake(room) == 0 || party__room_wake(room) > now)
        return; /* a stale wake-up: the batch's end re-files the real one */
    if (party__room_ensure_started(room) != 0) {
        /* Nothing can run without on_start: try again in a while. */
        if (room->alarm_at != 0 && room->alarm_at <= now)
            room->alarm_at = now + 2000;
        if (room->sched_next != 0 && room->sched_next <= now)
            room->sched_next = now + 2000;
        return;
    }
    run_due_schedules(room, now);
    if (room->alarm_at == 0 || room->alarm_at > now)
        return;
    /* The alarm is consumed in this transaction: if the process dies
     * before it commits, it is still there and fires again. */
    retries = room->alarm_retries;
    room->alarm_at = 0;
    room->alarm_retries = 0;
    (void)party__store_alarm_set(room->store, 0, 0);
    room->in_alarm = 1;
    room->alarm_retry_now = retries;
    if (def->on_alarm != NULL) {
        rc = def->on_alarm(room);
        rooms->alarms_fired++;
    }
    room->in_alarm = 0;
    if (rc == 0)
        return;
    if (room->alarm_at != 0) {
        /* The handler set a new alarm before failing: that one stands. */
        party__log_warn(rooms->lp,
                        "room %s/%s: on_alarm failed (%d) after setting a new alarm; "
                        "keeping the new alarm instead of retrying",
                        room->party->name, room->name ? room->name : room->id, rc);
        return;
    }
    if (retries < ALARM_MAX_RETRIES) {
        int64_t delay = alarm_backoff_ms(retries + 1);
        room->alarm_at = now + delay;
        room->alarm_retries = retries + 1;
        (void)party__store_alarm_set(room->store, room->alarm_at, room->alarm_retries);
        rooms->alarms_retried++;
        party__log_warn(rooms->lp, "room %s/%s: on_alarm failed (%d); retry %d of %d in %lld ms",
                        room->party->name, room->name ? room->name : room->id, rc, retries + 1,
                        ALARM_MAX_RETRIES, (long long)delay);
    } else {
        rooms->alarms_abandoned++;
        party__log_error(rooms->lp, "room %s/%s: on_alarm failed after %d retries; alarm abandoned",
                         room->party->name, room->name ? room->name : room->id, ALARM_MAX_RETRIES);
    }
}

/* ---- the loop's alarm heap ---- */

/* Rooms still loading past which due alarms wait: more would only queue
 * on the worker threads. Woken rooms load in groups (room_commit.c: two
 * groups of 256 in flight per loop): the cap keeps both groups full. */
#define MAX_ALARM_WAKES_LOADING 512

/* A room's entry in the heap is tagged with its party's place in the
 * runtime's table (shared by every loop). */
static uint32_t party_tag(const party_room *room) {
    return (uint32_t)(room->party - room->rooms->parties);
}

void party__room_heap_put(party_room *room, int64_t due_ms) {
    /* Cannot fail for memory: the room's entry was reserved when its
     * alarm or schedule was set, or kept when it woke. */
    (void)party__alarms_put(&room->rooms->alarms, room->id, party_tag(room), due_ms);
}

int party__room_reserve_wake(party_room *room) {
    return party__alarms_reserve(&room->rooms->alarms, room->id, party_tag(room));
}

/* After a commit: the index has the room's wake time; the heap follows.
 * A wake time that went away leaves both. */
void party__room_sync_wake(party_room *room) {
    int64_t wake = party__room_wake(room);
    if (wake == room->wake_indexed)
        return;
    party__room_heap_put(room, wake);
    room->wake_indexed = wake;
}

/* After a failed commit, what memory says about alarms may be gone:
 * reread. The backend left the index at the committed wake time or an
 * earlier one, which costs at most a wake-up with nothing due. */
void party__room_reload_wake(party_room *room) {
    (void)party__store_alarm_get(room->store, &room->alarm_at, &room->alarm_retries);
    if (party__store_sched_earliest(room->store, &room->sched_next) != 0)
        room->sched_next = party__loop_epoch_ms(room->rooms->lp) + 1000; /* looked up again then */
    room->wake_indexed = -1;
    party__room_sync_wake(room);
}

static int64_t heap_clock(party__alarms *alarms) {
    party__rooms *rooms = alarms->data;
    return party__loop_epoch_ms(rooms->lp);
}

/* The heap's wake callback: the room with this id wakes (an ALARM event;
 * a cold room is loaded first). Held back while too many rooms load, and
 * while an upgrade hands the loop over or after it did (the alarm index
 * has the time: the process that serves next fires it). */
static int heap_wake(party__alarms *alarms, const char *id, uint32_t tag) {
    party__rooms *rooms = alarms->data;
    const party__party *party = &rooms->parties[tag];
    party_room *room;
    party__event ev;

    if (rooms->n_loading >= MAX_ALARM_WAKES_LOADING || rooms->lp->frozen)
        return PARTY_EBUSY;
    if (rooms->lp->handed_over)
        return PARTY_EBUSY; /* the new process fires it (from the alarm index) */
    /* The room takes over the entry, parked: it files its next wake time
     * there when its batch commits (or a retry, if the handler fails),
     * without memory. */
    room = party__room_get_by_id(rooms, party, id);
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_ALARM;
    if (room != NULL)
        room->wake_indexed = -1;
    if (room == NULL || party__room_post(room, &ev) != 0) {
        party__log_warn(rooms->lp, "alarm for room %s/%s: cannot wake the room; retrying in 1 s",
                        party->name, id);
        (void)party__alarms_put(alarms, id, tag, party__loop_epoch_ms(rooms->lp) + 1000);
    }
    return 0;
}

void party__rooms_fire_due(party__rooms *rooms) {
    int64_t next = party__alarms_next(&rooms->alarms);
    if (next != 0 && next <= party__loop_epoch_ms(rooms->lp))
        party__alarms_fire_due(&rooms->alarms);
}

/* ---- start-up: this loop's heap ---- */

int party__rooms_file_wake(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms) {
    return party__alarms_put(&rooms->alarms, id, party, due_ms);
}

int party__rooms_file_orphan(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms) {
    if (party__room_find(rooms, id) != NULL)
        return 0; /* in memory here: this node holds it and files its own wake time */
    return party__alarms_put(&rooms->alarms, id, party, due_ms);
}

int party__rooms_file_reread(party__rooms *rooms, const char *id, uint32_t party, int64_t due_ms) {
    party_room *room = party__room_find(rooms, id);
    /* A ready room has its alarm and schedules in memory and files its own
     * wake time (an entry moved behind it could delay its alarm); one an
     * alarm already woke re-files it after its batch. Any other room reads
     * its store when it loads, and its entry takes the index's time. */
    if (room != NULL && (room->life == PARTY__ROOM_READY || room->wake_indexed == -1))
        return 0;
    return party__alarms_put(&rooms->alarms, id, party, due_ms);
}

int party__rooms_start(party__rooms *rooms) {
    if (rooms->alarms.started)
        return 0;
    if (party__alarms_init(&rooms->alarms, &rooms->lp->loop, rooms->lp->virtual_clock, heap_wake,
                           heap_clock, rooms) != 0)
        return PARTY_EIO;
    return 0;
}
