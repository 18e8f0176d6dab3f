/* schedule: the public alarm and schedule API of a room. Both are the
 * room's records in its store, written in the current event's batch; the
 * room's wake time (the earlier of the alarm and the first schedule) is
 * filed in the backend's alarm index when the batch commits. */
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "room.h"
#include "storage.h"
#include "utf8.h"

#define SCHEDULE_PAYLOAD_MAX (1024 * 1024)
#define SCHEDULE_MIN_INTERVAL_MS 1000

int party_alarm_set(party_room *room, int64_t at_ms) {
    int r;
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (at_ms <= 0)
        return PARTY_EINVAL;
    r = party__room_reserve_wake(room);
    if (r == 0)
        r = party__store_alarm_set(room->store, at_ms, 0);
    if (r != 0)
        return r;
    room->alarm_at = at_ms;
    room->alarm_retries = 0;
    return 0;
}

int64_t party_alarm_get(party_room *room) {
    if (room == NULL || !party__room_in_callback(room))
        return 0;
    return room->alarm_at;
}

int party_alarm_delete(party_room *room) {
    int r;
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (room->alarm_at == 0)
        return 0;
    r = party__store_alarm_set(room->store, 0, 0);
    if (r != 0)
        return r;
    room->alarm_at = 0;
    room->alarm_retries = 0;
    return 0;
}

int party_alarm_retry_count(party_room *room) {
    return room != NULL && room->in_alarm ? room->alarm_retry_now : 0;
}

/* ---- schedules ---- */

static int schedule_add(party_room *room, int kind, int64_t next_ms, int64_t interval_ms,
                        const char *cron, const char *name, const void *payload, size_t len,
                        char id_out[PARTY_ID_MAX]) {
    char id[PARTY_ID_MAX];
    party__schedule sc;
    size_t name_len = name != NULL ? strlen(name) : 0;
    int r;

    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (name_len == 0 || name_len > PARTY_MAX_TAG_LEN || !party__utf8_valid(name, name_len) ||
        (payload == NULL && len > 0) || next_ms <= 0)
        return PARTY_EINVAL;
    if (len > SCHEDULE_PAYLOAD_MAX)
        return PARTY_ETOOBIG;
    r = party__room_reserve_wake(room);
    if (r != 0)
        return r;
    party__random_hex(16, id);
    memset(&sc, 0, sizeof(sc));
    sc.id = id;
    sc.name = name;
    sc.cron = cron;
    sc.payload = payload;
    sc.len = len;
    sc.kind = kind;
    sc.interval_ms = interval_ms;
    sc.next_ms = next_ms;
    r = party__store_sched_add(room->store, &sc);
    if (r != 0)
        return r;
    if (room->sched_next == 0 || next_ms < room->sched_next)
        room->sched_next = next_ms;
    if (id_out != NULL)
        memcpy(id_out, id, 33);
    return 0;
}

int party_schedule_at(party_room *room, int64_t at_ms, const char *name, const void *payload,
                      size_t len, char id_out[PARTY_ID_MAX]) {
    return schedule_add(room, PARTY__SCHED_AT, at_ms, 0, NULL, name, payload, len, id_out);
}

int party_schedule_after(party_room *room, int64_t delay_ms, const char *name, const void *payload,
                         size_t len, char id_out[PARTY_ID_MAX]) {
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (delay_ms < 0)
        return PARTY_EINVAL;
    return schedule_add(room, PARTY__SCHED_AT, party__loop_epoch_ms(room->rooms->lp) + delay_ms, 0,
                        NULL, name, payload, len, id_out);
}

int party_schedule_every(party_room *room, int64_t interval_ms, const char *name,
                         const void *payload, size_t len, char id_out[PARTY_ID_MAX]) {
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (interval_ms < SCHEDULE_MIN_INTERVAL_MS)
        return PARTY_EINVAL;
    return schedule_add(room, PARTY__SCHED_EVERY,
                        party__loop_epoch_ms(room->rooms->lp) + interval_ms, interval_ms, NULL,
                        name, payload, len, id_out);
}

int party_schedule_cron(party_room *room, const char *cron5, const char *name, const void *payload,
                        size_t len, char id_out[PARTY_ID_MAX]) {
    party__cron cron;
    const char *why;
    int64_t next;

    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (cron5 == NULL || party__cron_parse(cron5, &cron, &why) != 0 ||
        party__cron_next(&cron, party__loop_epoch_ms(room->rooms->lp), &next) != 0)
        return PARTY_EINVAL;
    return schedule_add(room, PARTY__SCHED_CRON, next, 0, cron5, name, payload, len, id_out);
}

int party_schedule_cancel(party_room *room, const char *id) {
    int r;
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (id == NULL)
        return PARTY_EINVAL;
    r = party__store_sched_cancel(room->store, id);
    if (r != 0)
        return r;
    /* Unread, the old earliest stays: at worst a wake-up finds nothing due. */
    (void)party__store_sched_earliest(room->store, &room->sched_next);
    return 0;
}

typedef struct list_arg {
    int (*fn)(const char *id, const char *name, int64_t next_ms, const void *payload, size_t len,
              void *arg);
    void *arg;
} list_arg;

static int list_one(const party__schedule *sc, void *arg) {
    list_arg *la = arg;
    return la->fn(sc->id, sc->name, sc->next_ms, sc->payload, sc->len, la->arg);
}

int party_schedule_list(party_room *room,
                        int (*fn)(const char *id, const char *name, int64_t next_ms,
                                  const void *payload, size_t len, void *arg),
                        void *arg) {
    list_arg la;
    if (room == NULL || !party__room_in_callback(room))
        return PARTY_ESTATE;
    if (fn == NULL)
        return PARTY_EINVAL;
    la.fn = fn;
    la.arg = arg;
    return party__store_sched_each(room->store, INT64_MAX, list_one, &la);
}
