/* room_alarm: a room's wake-ups. The ALARM event runs the schedules that
 * are due, then the alarm (retried with backoff when on_alarm fails); each
 * batch's commit files the room's wake time (the earlier of its alarm and
 * its first schedule) in the backend's alarm index, and the loop's heap
 * (alarm.h) follows. This file is the heap's user: its wake callback, and
 * at start-up the index loaded into the heaps; on a store several
 * processes share, it also polls the index for rooms no process holds. */
#include "room_internal.h"

#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "log.h"
#include "loops.h"
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
        party__log_error(room->rt, "room %s/%s: cannot read its schedules", room->party->name,
                         room->id);
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
            room->rt->schedules_fired++;
        }
        if (rc != 0)
            party__log_warn(room->rt, "room %s/%s: on_schedule '%s' failed (%d)", room->party->name,
                            room->name ? room->name : room->id, sc->name, rc);
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
    party_runtime *rt = room->rt;
    int64_t now = party__runtime_epoch_ms(rt);
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
        rt->alarms_fired++;
    }
    room->in_alarm = 0;
    if (rc == 0)
        return;
    if (room->alarm_at != 0) {
        /* The handler set a new alarm before failing: that one stands. */
        party__log_warn(rt,
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
        rt->alarms_retried++;
        party__log_warn(rt, "room %s/%s: on_alarm failed (%d); retry %d of %d in %lld ms",
                        room->party->name, room->name ? room->name : room->id, rc, retries + 1,
                        ALARM_MAX_RETRIES, (long long)delay);
    } else {
        rt->alarms_abandoned++;
        party__log_error(rt, "room %s/%s: on_alarm failed after %d retries; alarm abandoned",
                         room->party->name, room->name ? room->name : room->id, ALARM_MAX_RETRIES);
    }
}

/* ---- the loop's alarm heap ---- */

/* Rooms still loading past which due alarms wait: more would only queue
 * on the worker threads and hold files open. */
#define MAX_ALARM_WAKES_LOADING 64

/* A room's entry in the heap is tagged with its party's place in the
 * runtime's table (shared by every loop). */
static uint32_t party_tag(const party_room *room) {
    return (uint32_t)(room->party - room->rt->parties);
}

void party__room_heap_put(party_room *room, int64_t due_ms) {
    /* Cannot fail for memory: the room's entry was reserved when its
     * alarm or schedule was set, or kept when it woke. */
    (void)party__alarms_put(&room->rt->alarms, room->id, party_tag(room), due_ms);
}

int party__room_reserve_wake(party_room *room) {
    return party__alarms_reserve(&room->rt->alarms, room->id, party_tag(room));
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
        room->sched_next = party__runtime_epoch_ms(room->rt) + 1000; /* looked up again then */
    room->wake_indexed = -1;
    party__room_sync_wake(room);
}

size_t party__alarm_heap_size(party_runtime *rt) {
    return party__alarms_size(&rt->alarms);
}

static int64_t heap_clock(party__alarms *alarms) {
    return party__runtime_epoch_ms(alarms->data);
}

/* The heap's wake callback: the room with this id wakes (an ALARM event;
 * a cold room is loaded first). Held back while too many rooms load. */
static int heap_wake(party__alarms *alarms, const char *id, uint32_t tag) {
    party_runtime *rt = alarms->data;
    const party__party *party = &rt->parties[tag];
    party_room *room;
    party__event ev;

    if (rt->n_loading >= MAX_ALARM_WAKES_LOADING)
        return PARTY_EBUSY;
    /* The room takes over the entry, parked: it files its next wake time
     * there when its batch commits (or a retry, if the handler fails),
     * without memory. */
    room = party__room_get_by_id(rt, party, id);
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_ALARM;
    if (room != NULL)
        room->wake_indexed = -1;
    if (room == NULL || party__room_post(room, &ev) != 0) {
        party__log_warn(rt, "alarm for room %s/%s: cannot wake the room; retrying in 1 s",
                        party->name, id);
        (void)party__alarms_put(alarms, id, tag, party__runtime_epoch_ms(rt) + 1000);
    }
    return 0;
}

void party__rooms_fire_due(party_runtime *rt) {
    int64_t next = party__alarms_next(&rt->alarms);
    if (next != 0 && next <= party__runtime_epoch_ms(rt))
        party__alarms_fire_due(&rt->alarms);
}

/* ---- wake-ups of rooms no process holds ----
 * On a store several processes share (PostgreSQL), a node files in its
 * heaps only the rooms it holds or took at start-up; when a node dies, the
 * alarms of the rooms it held are nobody's until someone reaches them.
 * Loop 0 asks the backend's alarm index for due rooms without a live owner
 * every ORPHANS_POLL_MS, on a worker thread, and files each in the heap of
 * the loop that owns it: the wake-up acquires the room like any other. Not
 * run on the embedded store, whose process holds every room. */

#define ORPHANS_POLL_MS 2000
#define ORPHANS_MAX 1024 /* rooms filed per poll; the rest wait for the next */

typedef struct orphan {
    char id[PARTY_ID_MAX];
    uint32_t tag; /* the party's index */
    int64_t due_ms;
} orphan;

struct party__orphans {
    uv_timer_t timer;
    uv_work_t work;
    party_runtime *rt;
    int polling;
    int closing;
    int64_t now_ms; /* the poll's time, read on the loop */
    orphan found[ORPHANS_MAX];
    size_t n_found;
    int result;
};

/* A found room for another loop's heap. */
typedef struct orphan_mail {
    party__mail mail;
    orphan o;
} orphan_mail;

static int orphan_collect(const char *id, const char *party, int64_t due_ms, void *arg) {
    struct party__orphans *p = arg;
    party_runtime *rt = p->rt;
    size_t i;

    if (p->n_found == ORPHANS_MAX)
        return 1; /* enough for this poll */
    for (i = 0; i < rt->n_parties; i++)
        if (strcmp(rt->parties[i].name, party) == 0)
            break;
    if (i == rt->n_parties || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id))
        return 0; /* a party not served here: its rooms wait for a node that does */
    memcpy(p->found[p->n_found].id, id, PARTY_ID_MAX);
    p->found[p->n_found].tag = (uint32_t)i;
    p->found[p->n_found].due_ms = due_ms;
    p->n_found++;
    return 0;
}

static void orphans_poll_work(uv_work_t *req) {
    struct party__orphans *p = req->data;
    party__backend *be = p->rt->backend;
    p->n_found = 0;
    p->result = be->ops->index_due(be, p->now_ms, orphan_collect, p);
}

/* Files a found room in rt's heap, unless rt has the room in memory (it
 * holds it, then, and files its own wake time). */
static void file_orphan(party_runtime *rt, const orphan *o) {
    if (party__room_find(rt, o->id) != NULL)
        return;
    if (party__alarms_put(&rt->alarms, o->id, o->tag, o->due_ms) != 0)
        party__log_warn(rt, "alarm of room %s: no memory to file it; the next poll tries again",
                        o->id);
}

static void orphan_mail_run(party_runtime *rt, party__mail *mail) {
    orphan_mail *m = (orphan_mail *)mail;
    file_orphan(rt, &m->o);
    party__free(m);
}

static void orphan_mail_drop(party__mail *mail) {
    party__free(mail);
}

static void orphans_timer_closed(uv_handle_t *handle) {
    party__free(handle->data);
}

static void orphans_poll_done(uv_work_t *req, int status) {
    struct party__orphans *p = req->data;
    party_runtime *rt = p->rt;
    size_t i;

    p->polling = 0;
    rt->n_busy--;
    if (status == 0 && p->result < 0 && !p->closing)
        party__log_warn(rt, "alarm index: cannot look for rooms no node holds: %s",
                        party_strerror(p->result));
    for (i = 0; i < p->n_found && status == 0 && !p->closing; i++) {
        party_runtime *target = party__loop_of(rt, p->found[i].id);
        orphan_mail *m;
        if (target == rt) {
            file_orphan(rt, &p->found[i]);
            continue;
        }
        m = party__calloc(1, sizeof(*m));
        if (m == NULL)
            break; /* the next poll finds the rest */
        m->mail.run = orphan_mail_run;
        m->mail.drop = orphan_mail_drop;
        m->o = p->found[i];
        party__mail_post(target, &m->mail);
    }
    if (p->closing)
        uv_close((uv_handle_t *)&p->timer, orphans_timer_closed);
    party__runtime_maybe_finish(rt);
}

static void orphans_poll_tick(uv_timer_t *timer) {
    struct party__orphans *p = timer->data;
    party_runtime *rt = p->rt;
    if (p->polling || rt->stopping)
        return;
    p->work.data = p;
    p->now_ms = party__runtime_epoch_ms(rt);
    p->polling = 1;
    rt->n_busy++;
    if (uv_queue_work(&rt->loop, &p->work, orphans_poll_work, orphans_poll_done) != 0) {
        p->polling = 0;
        rt->n_busy--;
    }
}

static int orphans_start(party_runtime *rt) {
    struct party__orphans *p;
    party__backend *be = rt->backend;

    if (rt != rt->main || be == NULL || strcmp(be->ops->name, "sqlite") == 0 || rt->orphans != NULL)
        return 0;
    p = party__calloc(1, sizeof(*p));
    if (p == NULL)
        return PARTY_ENOMEM;
    p->rt = rt;
    if (uv_timer_init(&rt->loop, &p->timer) != 0) {
        party__free(p);
        return PARTY_EIO;
    }
    p->timer.data = p;
    uv_timer_start(&p->timer, orphans_poll_tick, ORPHANS_POLL_MS, ORPHANS_POLL_MS);
    uv_unref((uv_handle_t *)&p->timer);
    rt->orphans = p;
    return 0;
}

static void orphans_stop(party_runtime *rt) {
    struct party__orphans *p = rt->orphans;
    if (p == NULL)
        return;
    rt->orphans = NULL;
    uv_timer_stop(&p->timer);
    p->closing = 1;
    if (!p->polling)
        uv_close((uv_handle_t *)&p->timer, orphans_timer_closed);
}

/* ---- start-up: the backend and its alarm index ---- */

typedef struct index_load {
    party_runtime *main;
    size_t loaded, skipped;
} index_load;

/* One entry of the index, into the heap of the loop that owns its room
 * (the other loops do not run yet). Out of memory stops the load: an
 * entry left out would not wake its room until the next start. */
static int file_index_entry(const char *id, const char *party, int64_t due_ms, void *arg) {
    index_load *load = arg;
    party_runtime *rt = load->main;
    size_t i;

    for (i = 0; i < rt->n_parties; i++)
        if (strcmp(rt->parties[i].name, party) == 0)
            break;
    if (i == rt->n_parties || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id)) {
        load->skipped++;
        return 0;
    }
    if (party__alarms_put(&party__loop_of(rt, id)->alarms, id, (uint32_t)i, due_ms) != 0)
        return PARTY_ENOMEM;
    load->loaded++;
    return 0;
}

int party__rooms_start(party_runtime *rt) {
    party__backend_config cfg;
    index_load load;
    char why[1024];
    int r;

    if (rt->alarms.started)
        return 0;
    if (rt == rt->main && rt->backend == NULL) {
        cfg.data_dir = rt->data_dir;
        cfg.durability_full = rt->durability_full;
        cfg.store = rt->store;
        cfg.node = rt->node;
        if (party__backend_open(&cfg, &rt->backend, why, sizeof(why)) != 0) {
            party__log_error(rt, "%s", why);
            return PARTY_EIO;
        }
    }
    if (party__alarms_init(&rt->alarms, &rt->loop, rt->virtual_clock, heap_wake, heap_clock, rt) !=
        0)
        return PARTY_EIO;
    if (rt != rt->main)
        return 0;
    memset(&load, 0, sizeof(load));
    load.main = rt;
    r = rt->backend->ops->index_load(rt->backend, file_index_entry, &load);
    if (r != 0) {
        /* A room left out would not wake until the next start. */
        party__log_error(rt, "alarm index: cannot load it: %s",
                         r == PARTY_ENOMEM ? "out of memory" : "cannot read it");
        return r;
    }
    if (load.loaded > 0 || load.skipped > 0)
        party__log_info(rt, "alarm index: %zu rooms to wake%s", load.loaded,
                        load.skipped ? " (some belong to parties not registered; kept on disk)"
                                     : "");
    return orphans_start(rt);
}

void party__rooms_stop(party_runtime *rt) {
    orphans_stop(rt);
    party__alarms_close(&rt->alarms);
    if (rt == rt->main) {
        party__backend_close(rt->backend);
        rt->backend = NULL;
    }
}
