/* inflight: records of a room's requests in flight and their "aborted"
 * answers in a later incarnation (inflight.h). */
#include "inflight.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "http_client.h"
#include "log.h"
#include "request.h"
#include "room.h"

#define PREFIX "fetch/"
#define ROOM_PREFIX "fetch/room/"
#define KEY_MAX (sizeof(ROOM_PREFIX) + PARTY_ID_MAX)

static void record_key(char out[KEY_MAX], party__inflight_kind kind, const char *id) {
    snprintf(out, KEY_MAX, "%s%s", kind == PARTY__INFLIGHT_ROOM ? ROOM_PREFIX : PREFIX, id);
}

int party__inflight_record(party_room *room, party__inflight_kind kind, const char *id,
                           const char *tag) {
    char key[KEY_MAX];
    record_key(key, kind, id);
    return party__store_meta_put(room->store, key, tag, strlen(tag));
}

void party__inflight_forget(party_room *room, party__inflight_kind kind, const char *id) {
    char key[KEY_MAX];
    if (room->store == NULL)
        return;
    record_key(key, kind, id);
    (void)party__store_meta_delete(room->store, key);
}

/* ---- a new incarnation ---- */

typedef struct found_record {
    party__inflight_kind kind;
    char id[PARTY_ID_MAX];
    char *tag;
} found_record;

typedef struct found_list {
    found_record *items;
    size_t n, cap;
    int failed;
} found_list;

static int collect_record(const char *key, const void *val, size_t len, void *arg) {
    found_list *list = arg;
    party__inflight_kind kind = PARTY__INFLIGHT_OUTBOUND;
    const char *id = key + sizeof(PREFIX) - 1;

    if (strncmp(key, ROOM_PREFIX, sizeof(ROOM_PREFIX) - 1) == 0) {
        kind = PARTY__INFLIGHT_ROOM;
        id = key + sizeof(ROOM_PREFIX) - 1;
    }
    if (strlen(id) != PARTY_ID_MAX - 1)
        return 0;
    if (list->n == list->cap) {
        size_t cap = list->cap == 0 ? 8 : list->cap * 2;
        found_record *grown = party__realloc(list->items, cap * sizeof(*grown));
        if (grown == NULL) {
            list->failed = 1;
            return 1;
        }
        list->items = grown;
        list->cap = cap;
    }
    list->items[list->n].kind = kind;
    memcpy(list->items[list->n].id, id, PARTY_ID_MAX);
    list->items[list->n].tag = party__strndup(val, len);
    if (list->items[list->n].tag == NULL) {
        list->failed = 1;
        return 1;
    }
    list->n++;
    return 0;
}

void party__inflight_room_started(party_room *room, party__inflight_carried_fn carried) {
    party__rooms *rooms = room->rooms;
    const party_def *def = room->party->def;
    found_list list = {0};
    size_t i;

    if (room->store == NULL)
        return;
    (void)party__store_meta_list(room->store, PREFIX, collect_record, &list);
    if (list.failed)
        party__log_error(rooms->lp, "room %s/%s: out of memory reading its requests in flight",
                         room->party->name, room->name ? room->name : room->id);
    for (i = 0; i < list.n; i++) {
        found_record *f = &list.items[i];
        party_response res;

        if (carried(rooms, f->kind, f->id))
            continue;
        party__inflight_forget(room, f->kind, f->id);
        party__response_init(&res);
        if (f->kind == PARTY__INFLIGHT_OUTBOUND) {
            rooms->lp->http_stats.errors[party__http_error_index(PARTY_EABORTED)]++;
            party__response_text(&res, 0,
                                 "aborted: the request was in flight when an earlier process of "
                                 "this room stopped; it may or may not have reached the server\n");
        } else {
            party__log_warn(rooms->lp,
                            "room %s/%s: request %s answered aborted: it was in flight when an "
                            "earlier incarnation of the room stopped",
                            room->party->name, room->name ? room->name : room->id, f->id);
            party__response_text(&res, 0,
                                 "aborted: the request was in flight when an earlier process of "
                                 "this room stopped; the target room may or may not have "
                                 "handled it\n");
        }
        res.status = 0;
        res.error = PARTY_EABORTED;
        if (def->on_response != NULL)
            def->on_response(room, f->id, f->tag, &res);
        party__response_free(&res);
    }
    for (i = 0; i < list.n; i++)
        party__free(list.items[i].tag);
    party__free(list.items);
}
