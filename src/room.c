/* room: the table of rooms in memory, each room's event queue, and the
 * delivery of events to the party's callbacks — on_start first, once per
 * incarnation, then one event at a time in arrival order. Also the public
 * party_room_* and party_broadcast API. */
#include "room.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conn.h"
#include "log.h"
#include "utf8.h"

/* ---- ids and the room table ---- */

void party__room_id(const char *party, const char *name, char out[PARTY_ID_MAX]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t i;

    /* party NUL name: no two (party, name) pairs share the hashed bytes. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, party, strlen(party) + 1) != 1 ||
        EVP_DigestUpdate(ctx, name, strlen(name)) != 1 ||
        EVP_DigestFinal_ex(ctx, digest, &len) != 1 || len != 32) {
        memset(digest, 0, sizeof(digest));
    }
    EVP_MD_CTX_free(ctx);
    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
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
    party_room **table = calloc(cap, sizeof(*table));
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
    free(rt->rooms);
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

static void table_remove(party_runtime *rt, party_room *room) {
    party_room **link = &rt->rooms[id_hash(room->id) & (rt->rooms_cap - 1)];
    while (*link != NULL && *link != room)
        link = &(*link)->hash_next;
    if (*link == room) {
        *link = room->hash_next;
        rt->n_rooms--;
    }
}

party_room *party__room_get(party_runtime *rt, const party__party *party, const char *name) {
    char id[PARTY_ID_MAX];
    party_room *room;
    size_t slot;

    party__room_id(party->name, name, id);
    room = table_find(rt, id);
    if (room != NULL)
        return room;
    if (rt->n_rooms + 1 > rt->rooms_cap / 4 * 3 && table_grow(rt) != 0)
        return NULL;
    room = calloc(1, sizeof(*room));
    if (room == NULL)
        return NULL;
    room->name = strdup(name);
    if (room->name == NULL) {
        free(room);
        return NULL;
    }
    room->rt = rt;
    room->party = party;
    memcpy(room->id, id, sizeof(id));
    slot = id_hash(id) & (rt->rooms_cap - 1);
    room->hash_next = rt->rooms[slot];
    rt->rooms[slot] = room;
    rt->n_rooms++;
    party__log_debug(rt, "room %s/%s: in memory (%s)", party->name, name, id);
    return room;
}

void party__room_free(party_room *room) {
    party__event *ev, *next;

    if (room == NULL)
        return;
    table_remove(room->rt, room);
    for (ev = room->queue_head; ev != NULL; ev = next) {
        next = ev->next;
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        free(ev);
    }
    if (room->state != NULL && room->party->def->free_state != NULL)
        room->party->def->free_state(room->state);
    free(room->name);
    free(room->props);
    free(room);
}

/* ---- connections of a room ---- */

static void room_link_conn(party_room *room, party_conn *conn) {
    conn->room_prev = room->conns_tail;
    conn->room_next = NULL;
    if (room->conns_tail != NULL)
        room->conns_tail->room_next = conn;
    else
        room->conns_head = conn;
    room->conns_tail = conn;
    room->n_conns++;
    conn->in_room = 1;
}

void party__room_unlink_conn(party_room *room, party_conn *conn) {
    if (!conn->in_room)
        return;
    if (conn->room_prev != NULL)
        conn->room_prev->room_next = conn->room_next;
    else
        room->conns_head = conn->room_next;
    if (conn->room_next != NULL)
        conn->room_next->room_prev = conn->room_prev;
    else
        room->conns_tail = conn->room_prev;
    conn->room_prev = conn->room_next = NULL;
    conn->in_room = 0;
    room->n_conns--;
}

/* ---- delivery ---- */

static int room_ensure_started(party_room *room) {
    const party_def *def = room->party->def;
    int rc = 0;

    if (room->status == PARTY__ROOM_STARTED)
        return 0;
    room->status = PARTY__ROOM_STARTING;
    if (def->on_start != NULL)
        rc = def->on_start(room, room->props);
    if (rc != 0) {
        room->status = PARTY__ROOM_ZERO;
        party__log_warn(room->rt, "room %s/%s: on_start failed (%d); the next event retries it",
                        room->party->name, room->name ? room->name : "-", rc);
        return -1;
    }
    room->status = PARTY__ROOM_STARTED;
    return 0;
}

/* The connection's tags, id first, copied into one block. */
static int conn_set_tags(party_conn *conn, const char *const *tags, size_t n) {
    size_t total = (n + 1) * sizeof(char *), i;
    char **block;
    char *cursor;

    for (i = 0; i < n; i++)
        total += strlen(tags[i]) + 1;
    total += strlen(conn->id) + 1;
    block = malloc(total);
    if (block == NULL)
        return PARTY_ENOMEM;
    cursor = (char *)(block + n + 1);
    block[0] = cursor;
    strcpy(cursor, conn->id);
    cursor += strlen(conn->id) + 1;
    for (i = 0; i < n; i++) {
        block[i + 1] = cursor;
        strcpy(cursor, tags[i]);
        cursor += strlen(tags[i]) + 1;
    }
    free(conn->tags);
    conn->tags = block;
    conn->n_tags = (uint8_t)(n + 1);
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
    if (conn_set_tags(conn, tags, (size_t)n) != 0) {
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
    frame = party__ws_frame_new(PARTY__WS_TEXT, json, (size_t)n);
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
    if (conn->transport_closing || conn->phase != PARTY__CONN_UPGRADING)
        return; /* the client left before its turn */
    req = &conn->http->preq;
    if (room_ensure_started(room) != 0) {
        if (party__conn_finish_upgrade(conn) == 0)
            send_start_error(room, conn);
        party__conn_start_ws(conn);
        return;
    }
    if (room_tag_conn(room, conn, req, why, sizeof(why)) != 0) {
        char body[200];
        party__log_warn(room->rt, "room %s/%s: connection %s refused: %s", room->party->name,
                        room->name, conn->id, why);
        snprintf(body, sizeof(body), "%s\n", why);
        party__conn_http_fail(conn, 500, body);
        return;
    }
    if (party__conn_finish_upgrade(conn) != 0) {
        party__conn_abort(conn);
        return;
    }
    room_link_conn(room, conn);
    if (def->on_connect != NULL)
        def->on_connect(room, conn, req);
    party__conn_start_ws(conn);
}

static void handle_request(party_room *room, party_conn *conn) {
    const party_def *def = room->party->def;
    party_response res;

    if (conn->transport_closing)
        return;
    party__response_init(&res);
    if (room_ensure_started(room) != 0)
        party__response_text(&res, 500,
                             "on_start failed for this room; retried on the next request\n");
    else if (def->on_request != NULL)
        def->on_request(room, &conn->http->preq, &res);
    else
        party__response_text(&res, 404, "Not Found\n");
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
    /* on_close needs a started room; if on_start fails here the handler is
     * skipped, but the connection is closed all the same. */
    if (def->on_close != NULL && room_ensure_started(room) == 0)
        def->on_close(room, conn, ev->code, reason, ev->was_clean);
    party__conn_after_close(conn, reason);
}

static void room_deliver(party_room *room, const party__event *ev) {
    const party_def *def = room->party->def;
    party_runtime *rt = room->rt;

    room->running = 1;
    rt->in_callback++;
    switch (ev->type) {
    case PARTY__EV_CONNECT:
        handle_connect(room, ev->conn);
        break;
    case PARTY__EV_REQUEST:
        handle_request(room, ev->conn);
        break;
    case PARTY__EV_MESSAGE:
        if (ev->conn->in_room && def->on_message != NULL && room_ensure_started(room) == 0)
            def->on_message(room, ev->conn, ev->data.ptr, ev->data.len, ev->binary);
        break;
    case PARTY__EV_ERROR:
        if (def->on_error != NULL && room_ensure_started(room) == 0)
            def->on_error(room, ev->conn, ev->what);
        break;
    case PARTY__EV_CLOSE:
        handle_close(room, ev);
        break;
    }
    rt->in_callback--;
    room->running = 0;
}

/* Delivers the room's queued events in order. */
static void room_drain(party_room *room) {
    while (room->queue_head != NULL && !room->running) {
        party__event *ev = room->queue_head;
        room->queue_head = ev->next;
        if (room->queue_head == NULL)
            room->queue_tail = NULL;
        room_deliver(room, ev);
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        free(ev);
    }
}

int party__room_post(party_room *room, const party__event *ev) {
    party__event *copy;

    if (!room->running && room->queue_head == NULL && room->rt->in_callback == 0) {
        room_deliver(room, ev);
        room_drain(room);
        return 0;
    }
    copy = malloc(sizeof(*copy) + ev->data.len);
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
        room_drain(room);
    }
}

/* ---- public room API ---- */

const char *party_room_name(party_room *room) {
    return room->name;
}

const char *party_room_party(party_room *room) {
    return room->party->name;
}

const char *party_room_id(party_room *room) {
    return room->id;
}

int party_room_set_name(party_room *room, const char *name) {
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > PARTY_MAX_TAG_LEN)
        return PARTY_EINVAL;
    if (room->name != NULL)
        return strcmp(room->name, name) == 0 ? 0 : PARTY_EEXIST;
    room->name = strdup(name);
    return room->name != NULL ? 0 : PARTY_ENOMEM;
}

void *party_room_state(party_room *room) {
    return room->state;
}

void party_room_set_state(party_room *room, void *state) {
    room->state = state;
}

party_conn *party_room_conn(party_room *room, const char *conn_id) {
    party_conn *conn;
    if (conn_id == NULL)
        return NULL;
    for (conn = room->conns_head; conn != NULL; conn = conn->room_next)
        if (conn->phase == PARTY__CONN_OPEN && strcmp(conn->id, conn_id) == 0)
            return conn;
    return NULL;
}

static int conn_has_tag(party_conn *conn, const char *tag) {
    uint8_t i;
    for (i = 0; i < conn->n_tags; i++)
        if (strcmp(conn->tags[i], tag) == 0)
            return 1;
    return 0;
}

int party_room_foreach_conn(party_room *room, const char *tag, int (*fn)(party_conn *, void *),
                            void *arg) {
    party_conn *conn, *next;
    for (conn = room->conns_head; conn != NULL; conn = next) {
        int rc;
        /* fn may close this connection; it stays linked until its close
         * event, so next is still valid. */
        next = conn->room_next;
        if (conn->phase != PARTY__CONN_OPEN || (tag != NULL && !conn_has_tag(conn, tag)))
            continue;
        rc = fn(conn, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

size_t party_room_conn_count(party_room *room) {
    party_conn *conn;
    size_t n = 0;
    for (conn = room->conns_head; conn != NULL; conn = conn->room_next)
        n += conn->phase == PARTY__CONN_OPEN;
    return n;
}

static int id_excluded(const char *id, const char *const *exclude_ids, size_t n_exclude) {
    size_t i;
    for (i = 0; i < n_exclude; i++)
        if (exclude_ids[i] != NULL && strcmp(exclude_ids[i], id) == 0)
            return 1;
    return 0;
}

int party_broadcast(party_room *room, const void *data, size_t len, int binary,
                    const char *const *exclude_ids, size_t n_exclude) {
    party__buf *frame;
    party_conn *conn, *next;
    int sent = 0;

    if ((data == NULL && len > 0) || (!binary && !party__utf8_valid(data, len)))
        return PARTY_EINVAL;
    frame = party__ws_frame_new(binary ? PARTY__WS_BINARY : PARTY__WS_TEXT, data, len);
    if (frame == NULL)
        return PARTY_ENOMEM;
    for (conn = room->conns_head; conn != NULL; conn = next) {
        next = conn->room_next;
        if (conn->phase != PARTY__CONN_OPEN || id_excluded(conn->id, exclude_ids, n_exclude))
            continue;
        if (party__conn_queue(conn, frame) == 0)
            sent++;
    }
    party__buf_release(frame);
    return sent;
}
