/* room: the table of rooms in memory, each room's lifecycle and event
 * queue, and the delivery of events to the party's callbacks — on_start
 * first, once per incarnation, then one event at a time in arrival order.
 * Batches and commits are in room_commit.c, wake-ups in room_alarm.c, idle
 * rooms in room_idle.c, the API a party calls in room_api.c. Whether the
 * room's output is held (the output gate's decision) is here, below them
 * all, so that synced state and RPC (sync.c, rpc.c), which room_commit.c
 * and room_idle.c call, reach nothing of the actor above this file. */
#include "room_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"

#include "conn.h"
#include "slab.h"
#include "utf8.h"
#include "alloc.h"

/* ---- ids and the room table ---- */

static size_t id_hash(const char *id) {
    size_t h = 0;
    int i;
    /* The id is already a uniform hash: its first hex digits will do. */
    for (i = 0; i < 16; i++)
        h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return h;
}

static int table_grow(party__rooms *rooms) {
    size_t cap = rooms->table_cap ? rooms->table_cap * 2 : 64;
    party_room **table = party__calloc(cap, sizeof(*table));
    size_t i;

    if (table == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < rooms->table_cap; i++) {
        party_room *room = rooms->table[i];
        while (room != NULL) {
            party_room *next = room->hash_next;
            size_t slot = id_hash(room->id) & (cap - 1);
            room->hash_next = table[slot];
            table[slot] = room;
            room = next;
        }
    }
    party__free(rooms->table);
    rooms->table = table;
    rooms->table_cap = cap;
    return 0;
}

static party_room *table_find(party__rooms *rooms, const char *id) {
    party_room *room;
    if (rooms->table_cap == 0)
        return NULL;
    for (room = rooms->table[id_hash(id) & (rooms->table_cap - 1)]; room != NULL;
         room = room->hash_next)
        if (strcmp(room->id, id) == 0)
            return room;
    return NULL;
}

void party__room_table_remove(party__rooms *rooms, party_room *room) {
    party_room **link = &rooms->table[id_hash(room->id) & (rooms->table_cap - 1)];
    party_room *cur;
    /* Unlinks through the entry found (never NULL), not through room. */
    while ((cur = *link) != NULL) {
        if (cur == room) {
            *link = cur->hash_next;
            rooms->n_rooms--;
            return;
        }
        link = &cur->hash_next;
    }
}

/* Room structs come from slabs, like connections: a hibernated room stays
 * for as long as its connections do, and a thousand of them allocated one
 * by one would sit between the memory their databases used while loaded,
 * keeping its pages resident after it was freed. */
#define ROOM_BLOCK (sizeof(party_room) + PARTY__ROOM_NAME_INLINE)

static party_room *room_alloc(party__rooms *rooms) {
    return party__slabs_calloc(&rooms->room_slabs, ROOM_BLOCK);
}

static void room_release(party__rooms *rooms, party_room *room) {
    party__slabs_release(rooms->room_slabs, room);
}

/* name (NULL: not known yet) is copied into the room's own block when it
 * fits, so that a room is one long-lived allocation, not two. */
static party_room *room_new(party__rooms *rooms, const party__party *party, const char *id,
                            const char *name) {
    size_t name_size = name != NULL ? strlen(name) + 1 : 0;
    party_room *room;
    size_t slot;

    if (rooms->n_rooms + 1 > rooms->table_cap / 4 * 3 && table_grow(rooms) != 0)
        return NULL;
    room = room_alloc(rooms);
    if (room == NULL)
        return NULL;
    room->rooms = rooms;
    room->party = party;
    memcpy(room->id, id, PARTY_ID_MAX);
    if (name != NULL) {
        room->name =
            name_size <= PARTY__ROOM_NAME_INLINE ? room->name_inline : party__malloc(name_size);
        if (room->name == NULL) {
            room_release(rooms, room);
            return NULL;
        }
        memcpy(room->name, name, name_size);
        room->by_name = 1;
    }
    slot = id_hash(id) & (rooms->table_cap - 1);
    room->hash_next = rooms->table[slot];
    rooms->table[slot] = room;
    rooms->n_rooms++;
    /* Idle from birth: a room whose first event never comes still leaves. */
    party__room_update_idle(room);
    return room;
}

party_room *party__room_get(party__rooms *rooms, const party__party *party, const char *name) {
    char id[PARTY_ID_MAX];

    if (party__room_id(rooms->lp->digest, party->name, name, id) != 0)
        return NULL;
    return party__room_get_named(rooms, party, name, id);
}

party_room *party__room_get_named(party__rooms *rooms, const party__party *party, const char *name,
                                  const char *id) {
    party_room *room = table_find(rooms, id);
    if (room != NULL)
        return room;
    return room_new(rooms, party, id, name);
}

int party_room_id_from_name(const char *party, const char *name, char id_out[PARTY_ID_MAX]) {
    return party__room_id(NULL, party, name, id_out);
}

void party_room_id_new(char id_out[PARTY_ID_MAX]) {
    party__random_hex(32, id_out);
}

party_room *party__room_get_by_id(party__rooms *rooms, const party__party *party, const char *id) {
    party_room *room;

    if (!party__room_id_valid(id))
        return NULL;
    room = table_find(rooms, id);
    if (room != NULL)
        return room->party == party ? room : NULL;
    return room_new(rooms, party, id, NULL);
}

party_room *party__room_find(party__rooms *rooms, const char *id) {
    if (id == NULL || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id))
        return NULL;
    return table_find(rooms, id);
}

party_room *party__room_find_named(party__rooms *rooms, const char *party, const char *name) {
    size_t i;
    party_room *room;

    for (i = 0; i < rooms->table_cap; i++)
        for (room = rooms->table[i]; room != NULL; room = room->hash_next)
            if (room->by_name && strcmp(room->party->name, party) == 0 &&
                strcmp(room->name, name) == 0)
                return room;
    return NULL;
}

int party__room_set_props(party_room *room, const char *props) {
    char *copy = NULL;
    if (props != NULL && (copy = party__strdup(props)) == NULL)
        return PARTY_ENOMEM;
    party__free(room->props);
    room->props = copy;
    return 0;
}

/* Frees the room's own memory: its name, props and block (see
 * party__room_destroy, room_idle.c, for what goes first). */
void party__room_free(party_room *room) {
    if (room->name != room->name_inline)
        party__free(room->name);
    party__free(room->props);
    room_release(room->rooms, room);
}

/* ---- the output gate: the room decides, the connection keeps the order ---- */

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

/* ---- the idle and quiet lists ---- */

static party__room_list *list_of(const party_room *room) {
    return room->idle == 1 ? &room->rooms->idle : &room->rooms->quiet;
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

int party__room_busy(const party_room *room) {
    return room->n_pending > 0 || room->queue_head != NULL || room->running || room->committing ||
           room->gate.head != NULL || room->fetch_held != NULL || room->open_calls > 0 ||
           room->life == PARTY__ROOM_LOADING || room->life == PARTY__ROOM_EVICTING ||
           room->life == PARTY__ROOM_UNLOADING;
}

/* Puts a room with nothing to do at the back of the list it waits on, or
 * takes it off when it has work (or is already hibernated). */
void party__room_update_idle(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__room_list *list;
    party__room_idle_remove(room);
    if (party__room_busy(room))
        return;
    if (room->n_conns == 0)
        room->idle = 1;
    else if (room->party->def->hibernate && room->life == PARTY__ROOM_READY)
        room->idle = 2;
    else
        return;
    list = list_of(room);
    room->idle_since = party__loop_now(rooms->lp);
    if (room->leaving && room->idle == 1) {
        /* Given up: first in line, evicted on the next loop turn. */
        room->idle_prev = NULL;
        room->idle_next = list->head;
        if (list->head != NULL)
            list->head->idle_prev = room;
        else
            list->tail = room;
        list->head = room; /* the leave timer evicts it (room_idle.c) */
        return;
    }
    room->idle_prev = list->tail;
    if (list->tail != NULL)
        list->tail->idle_next = room;
    else
        list->head = room;
    list->tail = room;
}

/* ---- connections of a room ---- */

void party__room_unlink_conn(party_room *room, party_conn *conn) {
    if (party__conn_list_remove(&room->conns, conn))
        room->n_conns--;
}

int party__rooms_adopt_conn(party__rooms *rooms, party_conn *conn, party__slice party_name,
                            party__slice room_id, party__slice room_name) {
    const party__party *party =
        party__party_find(rooms->parties, rooms->n_parties, party_name.ptr, party_name.len);
    char id[PARTY_ID_MAX], *name = NULL;
    party_room *room;

    if (party == NULL)
        return PARTY_ENOTFOUND;
    if (room_id.len != PARTY_ID_MAX - 1)
        return PARTY_EINVAL;
    memcpy(id, room_id.ptr, room_id.len);
    id[PARTY_ID_MAX - 1] = '\0';
    if (!party__room_id_valid(id))
        return PARTY_EINVAL;
    if (room_name.len > 0) {
        char check[PARTY_ID_MAX];
        name = party__strndup(room_name.ptr, room_name.len);
        if (name == NULL)
            return PARTY_ENOMEM;
        /* The name must be the id's: a record names one room, not two. */
        if (strlen(name) != room_name.len ||
            party__room_id(rooms->lp->digest, party->name, name, check) != 0 ||
            strcmp(check, id) != 0) {
            party__free(name);
            return PARTY_EINVAL;
        }
        room = party__room_get_named(rooms, party, name, id);
        party__free(name);
    } else {
        room = party__room_get_by_id(rooms, party, id);
    }
    if (room == NULL)
        return PARTY_ENOMEM;
    if (room->party != party)
        return PARTY_EINVAL;
    /* As a hibernated room's connection: the room wakes at its next event. */
    party__conn_enter_room(conn, room);
    party__conn_list_append(&room->conns, conn);
    room->n_conns++;
    party__room_update_idle(room);
    return 0;
}

/* Runs connection_tags and checks the limits. 0, or fills why. */
int party__room_in_callback(const party_room *room) {
    return room->running && room->store != NULL;
}

party__room_store *party__room_take_store(party_room *room) {
    party__room_store *store = room->store;
    if (store != NULL)
        room->rooms->n_loaded--;
    room->store = NULL;
    return store;
}

/* ---- the loop's rooms ---- */

void party__rooms_init(party__rooms *rooms, party__loop *lp) {
    rooms->lp = lp;
    uv_idle_init(&lp->loop, &rooms->drain_idle);
    rooms->drain_idle.data = rooms;
    uv_prepare_init(&lp->loop, &rooms->group_prepare);
    rooms->group_prepare.data = rooms;
    uv_check_init(&lp->loop, &rooms->group_check);
    rooms->group_check.data = rooms;
    uv_timer_init(&lp->loop, &rooms->leave_timer);
    rooms->leave_timer.data = rooms;
    uv_unref((uv_handle_t *)&rooms->leave_timer);
}

void party__rooms_stop(party__rooms *rooms) {
    party__alarms_close(&rooms->alarms);
    if (rooms->drain_idle.loop != NULL && !uv_is_closing((uv_handle_t *)&rooms->drain_idle))
        uv_close((uv_handle_t *)&rooms->drain_idle, NULL);
    if (rooms->group_prepare.loop != NULL && !uv_is_closing((uv_handle_t *)&rooms->group_prepare))
        uv_close((uv_handle_t *)&rooms->group_prepare, NULL);
    if (rooms->group_check.loop != NULL && !uv_is_closing((uv_handle_t *)&rooms->group_check))
        uv_close((uv_handle_t *)&rooms->group_check, NULL);
    if (rooms->leave_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&rooms->leave_timer))
        uv_close((uv_handle_t *)&rooms->leave_timer, NULL);
}

void party__rooms_free(party__rooms *rooms) {
    party__slabs_free(rooms->room_slabs);
    rooms->room_slabs = NULL;
    party__free(rooms->table);
    rooms->table = NULL;
    rooms->table_cap = 0;
}

static party__ops_room_state room_state_of(const party_room *room) {
    if (room->life == PARTY__ROOM_READY)
        return PARTY__OPS_ROOM_AWAKE;
    /* Out of memory (or on its way in or out) while connections stay open:
     * a hibernated room, not a cold one. */
    if (room->n_conns > 0)
        return PARTY__OPS_ROOM_HIBERNATED;
    return PARTY__OPS_ROOM_COLD;
}

void party__rooms_stats(const party__rooms *rooms, party__ops_stats *stats) {
    size_t i;

    for (i = 0; i < rooms->table_cap; i++) {
        const party_room *room;
        for (room = rooms->table[i]; room != NULL; room = room->hash_next)
            stats->rooms[room_state_of(room)]++;
    }
    for (i = 0; i < sizeof(stats->events) / sizeof(stats->events[0]); i++)
        stats->events[i] += rooms->events[i];
    for (i = 0; i < PARTY__COMMIT_BUCKETS; i++)
        stats->commit_hist[i] += rooms->commit_hist[i];
    stats->commits += rooms->commits;
    stats->commit_us_total += rooms->commit_us_total;
    stats->commit_groups += rooms->commit_groups;
    stats->commit_failures += rooms->commit_failures;
    stats->commits_fenced += rooms->commits_fenced;
    stats->alarms_pending += party__alarms_size(&rooms->alarms);
    stats->alarms_fired += rooms->alarms_fired;
    stats->alarms_retried += rooms->alarms_retried;
    stats->alarms_abandoned += rooms->alarms_abandoned;
    stats->schedules_fired += rooms->schedules_fired;
}

int party__rooms_list(const party__rooms *rooms, party__ops_listing *listing) {
    size_t i;

    for (i = 0; i < rooms->table_cap; i++) {
        const party_room *room;
        for (room = rooms->table[i]; room != NULL; room = room->hash_next)
            if (party__ops_listing_add(listing, room->party->name, room->name, room->id,
                                       room->n_conns, room_state_of(room)) != 0)
                return PARTY_ENOMEM;
    }
    return 0;
}
