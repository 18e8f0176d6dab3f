/* room: the table of rooms in memory, each room's lifecycle and event
 * queue, and the delivery of events to the party's callbacks — on_start
 * first, once per incarnation, then one event at a time in arrival order.
 * Batches and commits are in room_commit.c, wake-ups in room_alarm.c, idle
 * rooms in room_idle.c, the API a party calls in room_api.c. */
#include "room_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"

#include "conn.h"
#include "fetch.h"
#include "log.h"
#include "slab.h"
#include "sync.h"
#include "utf8.h"
#include "alloc.h"

/* ---- ids and the room table ---- */

int party__room_id(party__digest *d, const char *party, const char *name, char out[PARTY_ID_MAX]) {
    unsigned char digest[32];
    /* party NUL name: no two (party, name) pairs share the hashed bytes. */
    party__slice parts[2];

    parts[0] = party__slice_make(party, strlen(party) + 1);
    parts[1] = party__slice_make(name, strlen(name));
    if (party__digest_sha256(d, parts, 2, digest) != 0) {
        out[0] = '\0';
        return PARTY_ENOMEM;
    }
    party__hex_encode(digest, sizeof(digest), out);
    return 0;
}

static size_t id_hash(const char *id) {
    size_t h = 0;
    int i;
    /* The id is already a uniform hash: its first hex digits will do. */
    for (i = 0; i < 16; i++)
        h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return h;
}

static int table_grow(party_runtime *rt) {
    size_t cap = rt->rooms_cap ? rt->rooms_cap * 2 : 64;
    party_room **table = party__calloc(cap, sizeof(*table));
    size_t i;

    if (table == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < rt->rooms_cap; i++) {
        party_room *room = rt->rooms[i];
        while (room != NULL) {
            party_room *next = room->hash_next;
            size_t slot = id_hash(room->id) & (cap - 1);
            room->hash_next = table[slot];
            table[slot] = room;
            room = next;
        }
    }
    party__free(rt->rooms);
    rt->rooms = table;
    rt->rooms_cap = cap;
    return 0;
}

static party_room *table_find(party_runtime *rt, const char *id) {
    party_room *room;
    if (rt->rooms_cap == 0)
        return NULL;
    for (room = rt->rooms[id_hash(id) & (rt->rooms_cap - 1)]; room != NULL; room = room->hash_next)
        if (strcmp(room->id, id) == 0)
            return room;
    return NULL;
}

void party__room_table_remove(party_runtime *rt, party_room *room) {
    party_room **link = &rt->rooms[id_hash(room->id) & (rt->rooms_cap - 1)];
    while (*link != NULL && *link != room)
        link = &(*link)->hash_next;
    if (*link == room) {
        *link = room->hash_next;
        rt->n_rooms--;
    }
}

/* Room structs come from slabs, like connections: a hibernated room stays
 * for as long as its connections do, and a thousand of them allocated one
 * by one would sit between the memory their databases used while loaded,
 * keeping its pages resident after it was freed. */
#define ROOM_BLOCK (sizeof(party_room) + PARTY__ROOM_NAME_INLINE)

static party_room *room_alloc(party_runtime *rt) {
    return party__slabs_calloc(&rt->room_slabs, ROOM_BLOCK);
}

static void room_release(party_runtime *rt, party_room *room) {
    party__slabs_release(rt->room_slabs, room);
}

/* name (NULL: not known yet) is copied into the room's own block when it
 * fits, so that a room is one long-lived allocation, not two. */
static party_room *room_new(party_runtime *rt, const party__party *party, const char *id,
                            const char *name) {
    size_t name_size = name != NULL ? strlen(name) + 1 : 0;
    party_room *room;
    size_t slot;

    if (rt->n_rooms + 1 > rt->rooms_cap / 4 * 3 && table_grow(rt) != 0)
        return NULL;
    room = room_alloc(rt);
    if (room == NULL)
        return NULL;
    room->rt = rt;
    room->party = party;
    memcpy(room->id, id, PARTY_ID_MAX);
    if (name != NULL) {
        room->name =
            name_size <= PARTY__ROOM_NAME_INLINE ? room->name_inline : party__malloc(name_size);
        if (room->name == NULL) {
            room_release(rt, room);
            return NULL;
        }
        memcpy(room->name, name, name_size);
        room->by_name = 1;
    }
    slot = id_hash(id) & (rt->rooms_cap - 1);
    room->hash_next = rt->rooms[slot];
    rt->rooms[slot] = room;
    rt->n_rooms++;
    /* Idle from birth: a room whose first event never comes still leaves. */
    party__room_update_idle(room);
    return room;
}

party_room *party__room_get(party_runtime *rt, const party__party *party, const char *name) {
    char id[PARTY_ID_MAX];

    if (party__room_id(rt->digest, party->name, name, id) != 0)
        return NULL;
    return party__room_get_named(rt, party, name, id);
}

party_room *party__room_get_named(party_runtime *rt, const party__party *party, const char *name,
                                  const char *id) {
    party_room *room = table_find(rt, id);
    if (room != NULL)
        return room;
    return room_new(rt, party, id, name);
}

int party_room_id_from_name(const char *party, const char *name, char id_out[PARTY_ID_MAX]) {
    return party__room_id(NULL, party, name, id_out);
}

void party_room_id_new(char id_out[PARTY_ID_MAX]) {
    party__random_hex(32, id_out);
}

int party__room_id_valid(const char *id) {
    size_t i;
    for (i = 0; i < PARTY_ID_MAX - 1; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return id[PARTY_ID_MAX - 1] == '\0';
}

party_room *party__room_get_by_id(party_runtime *rt, const party__party *party, const char *id) {
    party_room *room;

    if (!party__room_id_valid(id))
        return NULL;
    room = table_find(rt, id);
    if (room != NULL)
        return room->party == party ? room : NULL;
    return room_new(rt, party, id, NULL);
}

party_room *party__room_find(party_runtime *rt, const char *id) {
    if (id == NULL || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id))
        return NULL;
    return table_find(rt, id);
}

party_room *party__room_find_named(party_runtime *rt, const char *party, const char *name) {
    size_t i;
    party_room *room;

    for (i = 0; i < rt->rooms_cap; i++)
        for (room = rt->rooms[i]; room != NULL; room = room->hash_next)
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

/* Frees the room's memory. Its store must be closed, its queue empty of
 * connections that still need it. */
void party__room_destroy(party_room *room) {
    party__event *ev, *next;
    for (ev = room->queue_head; ev != NULL; ev = next) {
        next = ev->next;
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        party__fetch_free(ev->fetch);
        party__free(ev);
    }
    if (room->name != room->name_inline)
        party__free(room->name);
    party__free(room->props);
    party__sync_free(room);
    room_release(room->rt, room);
}

/* The user's state leaves memory: free_state, and on_start runs again in
 * the next incarnation. */
void party__room_drop_state(party_room *room) {
    if (room->state != NULL && room->party->def->free_state != NULL)
        room->party->def->free_state(room->state);
    room->state = NULL;
    room->status = PARTY__ROOM_ZERO;
    party__sync_drop(room);
}

/* ---- connections of a room ---- */

static void room_link_conn(party_room *room, party_conn *conn) {
    party__conn_list_append(&room->conns, conn);
    room->n_conns++;
}

void party__room_unlink_conn(party_room *room, party_conn *conn) {
    if (party__conn_list_remove(&room->conns, conn))
        room->n_conns--;
}

/* ---- delivery ---- */

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
        party__log_error(room->rt, "room %s/%s: cannot store its name: %s", room->party->name,
                         room->name, party_strerror(r));
        return r;
    }
    room->name_persisted = 1;
    return 0;
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
        party__log_warn(room->rt, "room %s/%s: on_start failed (%d); the next event retries it",
                        room->party->name, room->name ? room->name : room->id, rc);
        return -1;
    }
    room->status = PARTY__ROOM_STARTED;
    return 0;
}

/* Runs connection_tags and checks the limits. 0, or fills why. */
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

static void handle_connect(party_room *room, party_conn *conn) {
    const party_def *def = room->party->def;
    party_request *req;
    char why[160];

    assert(room->n_pending > 0);
    room->n_pending--;
    if (conn->transport_closing || conn->phase != PARTY__CONN_UPGRADING) {
        party__conn_leave_room(conn); /* the client left before its turn */
        return;
    }
    req = &conn->http->preq;
    if (party__room_ensure_started(room) != 0) {
        /* The name may have been written: the answer waits for it. */
        party__room_gate(room, conn);
        if (party__conn_finish_upgrade(conn) == 0)
            send_start_error(room, conn);
        party__conn_start_ws(conn);
        party__conn_leave_room(conn); /* never joined: the room may leave memory */
        return;
    }
    if (room_tag_conn(room, conn, req, why, sizeof(why)) != 0) {
        char body[200];
        party__log_warn(room->rt, "room %s/%s: connection %s refused: %s", room->party->name,
                        room->name, conn->id, why);
        snprintf(body, sizeof(body), "%s\n", why);
        party__room_gate(room, conn);
        party__conn_http_fail(conn, 500, body);
        party__conn_leave_room(conn);
        return;
    }
    /* A room's first start wrote its name: the 101 waits for the commit. */
    party__room_gate(room, conn);
    if (party__conn_finish_upgrade(conn) != 0) {
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
    party__response_init(&res);
    if (party__room_ensure_started(room) != 0)
        party__response_text(&res, 500,
                             "on_start failed for this room; retried on the next request\n");
    else if (def->on_request != NULL)
        def->on_request(room, &conn->http->preq, &res);
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

int party__room_in_callback(const party_room *room) {
    return room->running && room->store != NULL;
}

void party__room_deliver(party_room *room, const party__event *ev) {
    const party_def *def = room->party->def;
    party_runtime *rt = room->rt;

    /* A wake-up runs due schedules, the alarm, both or neither (a stale
     * one): room_alarm.c counts what actually ran. */
    if (ev->type != PARTY__EV_ALARM)
        rt->events[ev->type]++;
    room->running = 1;
    room->name_error = 0;
    rt->in_callback++;
    switch (ev->type) {
    case PARTY__EV_CONNECT:
        handle_connect(room, ev->conn);
        break;
    case PARTY__EV_REQUEST:
        handle_request(room, ev->conn);
        break;
    case PARTY__EV_MESSAGE:
        /* State and RPC frames are the runtime's (sync.c); the rest is the
         * party's. */
        if (party__conn_in_room(ev->conn) &&
            (def->on_message != NULL || party__sync_enabled(def)) &&
            party__room_ensure_started(room) == 0 &&
            !party__sync_message(room, ev->conn, ev->data.ptr, ev->data.len, ev->binary) &&
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
        if (party__room_ensure_started(room) == 0)
            party__fetch_deliver(room, ev->fetch);
        else
            party__log_warn(rt, "room %s/%s: an answer to a request was dropped: on_start failed",
                            room->party->name, room->name ? room->name : room->id);
        party__fetch_free(ev->fetch);
        break;
    }
    rt->in_callback--;
    room->running = 0;
}

/* Hands the room's store over (to be unloaded): it no longer counts as
 * loaded. */
party__room_store *party__room_take_store(party_room *room) {
    party__room_store *store = room->store;
    if (store != NULL)
        room->rt->n_loaded--;
    room->store = NULL;
    return store;
}

/* ---- posting and draining events, shutdown ---- */

int party__room_post(party_room *room, const party__event *ev) {
    return party__room_post_with(room, ev, NULL);
}

int party__room_post_with(party_room *room, const party__event *ev, party__event *spare) {
    party__event *copy;

    if (room->life == PARTY__ROOM_READY && !room->running && !room->committing &&
        room->queue_head == NULL && room->rt->in_callback == 0) {
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
        party__runtime_mark_ready(room->rt, room);
    return 0;
}

void party__room_drain_ready(party_runtime *rt) {
    while (rt->ready_head != NULL) {
        party_room *room = rt->ready_head;
        rt->ready_head = room->ready_next;
        if (rt->ready_head == NULL)
            rt->ready_tail = NULL;
        room->ready_next = NULL;
        room->queued = 0;
        party__room_run(room);
    }
}

int party__rooms_busy(party_runtime *rt) {
    return rt->n_busy > 0;
}

void party__rooms_free_all(party_runtime *rt) {
    size_t i;
    for (i = 0; i < rt->rooms_cap; i++) {
        while (rt->rooms[i] != NULL) {
            party_room *room = rt->rooms[i];
            party__room_idle_remove(room);
            party__room_table_remove(rt, room);
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
            party__room_destroy(room);
        }
    }
    rt->ready_head = rt->ready_tail = NULL;
}
