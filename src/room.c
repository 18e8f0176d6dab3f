/* room: the table of rooms in memory, each room's event queue, and the
 * delivery of events to the party's callbacks — on_start first, once per
 * incarnation, then one event at a time in arrival order. Also the public
 * party_room_* and party_broadcast API. */
#include "room_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "alarm.h"
#include "conn.h"
#include "fetch.h"
#include "log.h"
#include "utf8.h"

/* ---- ids and the room table ---- */

void party__room_id(const char *party, const char *name, char out[PARTY_ID_MAX]) {
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /* party NUL name: no two (party, name) pairs share the hashed bytes. */
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, party, strlen(party) + 1) != 1 ||
        EVP_DigestUpdate(ctx, name, strlen(name)) != 1 ||
        EVP_DigestFinal_ex(ctx, digest, &len) != 1 || len != 32) {
        memset(digest, 0, sizeof(digest));
    }
    EVP_MD_CTX_free(ctx);
    party__hex_encode(digest, sizeof(digest), out);
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

void party__room_table_remove(party_runtime *rt, party_room *room) {
    party_room **link = &rt->rooms[id_hash(room->id) & (rt->rooms_cap - 1)];
    while (*link != NULL && *link != room)
        link = &(*link)->hash_next;
    if (*link == room) {
        *link = room->hash_next;
        rt->n_rooms--;
    }
}

static party_room *room_new(party_runtime *rt, const party__party *party, const char *id) {
    party_room *room;
    size_t slot;

    if (rt->n_rooms + 1 > rt->rooms_cap / 4 * 3 && table_grow(rt) != 0)
        return NULL;
    room = calloc(1, sizeof(*room));
    if (room == NULL)
        return NULL;
    room->rt = rt;
    room->party = party;
    memcpy(room->id, id, PARTY_ID_MAX);
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
    party_room *room;

    party__room_id(party->name, name, id);
    room = table_find(rt, id);
    if (room != NULL)
        return room;
    room = room_new(rt, party, id);
    if (room == NULL)
        return NULL;
    room->name = strdup(name);
    if (room->name == NULL) {
        party__room_table_remove(rt, room);
        free(room);
        return NULL;
    }
    room->by_name = 1;
    return room;
}

void party_room_id_from_name(const char *party, const char *name, char id_out[PARTY_ID_MAX]) {
    party__room_id(party, name, id_out);
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
    return room_new(rt, party, id);
}

party_room *party__room_find(party_runtime *rt, const char *id) {
    if (id == NULL || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id))
        return NULL;
    return table_find(rt, id);
}

int party__room_set_props(party_room *room, const char *props) {
    char *copy = NULL;
    if (props != NULL && (copy = strdup(props)) == NULL)
        return PARTY_ENOMEM;
    free(room->props);
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
        free(ev);
    }
    free(room->name);
    free(room->props);
    free(room);
}

/* The user's state leaves memory: free_state, and on_start runs again in
 * the next incarnation. */
void party__room_drop_state(party_room *room) {
    if (room->state != NULL && room->party->def->free_state != NULL)
        room->party->def->free_state(room->state);
    room->state = NULL;
    room->status = PARTY__ROOM_ZERO;
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

/* Before the first on_start of a room addressed by name, its name goes into
 * its store, in the batch's transaction: it is durable before any output
 * of the batch is released. */
static int room_persist_name(party_room *room) {
    int r;
    if (!room->by_name || room->name_persisted || room->store == NULL)
        return 0;
    r = party__store_meta_put(room->store, "name", room->name);
    if (r == 0)
        r = party__store_meta_put(room->store, "party", room->party->name);
    if (r != 0) {
        party__log_error(room->rt, "room %s/%s: cannot store its name: %s", room->party->name,
                         room->name, party_strerror(r));
        return r;
    }
    room->name_persisted = 1;
    room->batch_wrote = 1;
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

/* The connection's tags, id first (the id itself, not a copy), the others
 * copied into one block allocated only when there are any. */
static int conn_set_tags(party_conn *conn, const char *const *tags, size_t n) {
    size_t total = (n + 1) * sizeof(char *), i;
    char **block;
    char *cursor;

    free(conn->tags);
    conn->tags = NULL;
    conn->n_tags = 1;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        total += strlen(tags[i]) + 1;
    block = malloc(total);
    if (block == NULL)
        return PARTY_ENOMEM;
    cursor = (char *)(block + n + 1);
    block[0] = conn->id;
    for (i = 0; i < n; i++) {
        block[i + 1] = cursor;
        strcpy(cursor, tags[i]);
        cursor += strlen(tags[i]) + 1;
    }
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
    if (conn->transport_closing || conn->phase != PARTY__CONN_UPGRADING) {
        conn->room = NULL; /* the client left before its turn */
        return;
    }
    req = &conn->http->preq;
    if (party__room_ensure_started(room) != 0) {
        if (party__conn_finish_upgrade(conn) == 0)
            send_start_error(room, conn);
        party__conn_start_ws(conn);
        conn->room = NULL; /* never joined: the room may leave memory */
        return;
    }
    if (room_tag_conn(room, conn, req, why, sizeof(why)) != 0) {
        char body[200];
        party__log_warn(room->rt, "room %s/%s: connection %s refused: %s", room->party->name,
                        room->name, conn->id, why);
        snprintf(body, sizeof(body), "%s\n", why);
        party__conn_http_fail(conn, 500, body);
        conn->room = NULL;
        return;
    }
    if (party__conn_finish_upgrade(conn) != 0) {
        party__conn_abort(conn);
        conn->room = NULL;
        return;
    }
    if (conn->transport_closing) {
        conn->room = NULL; /* writing the 101 found the client gone */
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

    if (conn->transport_closing) {
        conn->room = NULL;
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
    /* Closing from now on: sends fail and on_close cannot pick another code,
     * so the reply echoes the peer's. */
    if (conn->phase == PARTY__CONN_OPEN)
        conn->phase = PARTY__CONN_CLOSING;
    /* on_close needs a started room; if on_start fails here the handler is
     * skipped, but the connection is closed all the same. */
    if (def->on_close != NULL && party__room_ensure_started(room) == 0)
        def->on_close(room, conn, ev->code, reason, ev->was_clean);
    party__conn_after_close(conn, reason);
    /* The room may leave memory now; a lingering socket must not point at it.
     * (Anything still held keeps its order through conn->holder.) */
    conn->room = NULL;
}

int party__room_in_callback(const party_room *room) {
    return room->running && room->store != NULL;
}

static void room_deliver(party_room *room, const party__event *ev) {
    const party_def *def = room->party->def;
    party_runtime *rt = room->rt;

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
        if (ev->conn->in_room && def->on_message != NULL && party__room_ensure_started(room) == 0)
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

/* Hands the room's store over (to be closed): it no longer counts as
 * loaded. */
party__store *party__room_take_store(party_room *room) {
    party__store *store = room->store;
    if (store != NULL)
        room->rt->n_loaded--;
    room->store = NULL;
    return store;
}

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
static void room_release_held(party_room *room, int committed) {
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
    for (h = list; h != NULL; h = next) {
        next = h->next;
        if (committed) {
            (void)party__conn_queue_released(h->conn, h->buf);
        } else if (!h->conn->transport_closing) {
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

static void room_run(party_room *room);

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
}

/* What the store says about the room's name, into memory. */
static void room_reload_name(party_room *room) {
    char *stored = party__store_meta_get(room->store, "name");
    if (room->by_name) {
        room->name_persisted = stored != NULL;
        free(stored);
    } else {
        free(room->name);
        room->name = stored;
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
        room_release_held(room, 0);
        /* Memory may hold what storage lost: start over from storage,
         * the name included (a first start's name write may be gone). */
        party__room_drop_state(room);
        room_reload_name(room);
    } else {
        room_release_held(room, 1);
    }
    room_run(room);
}

static void after_commit_work(uv_work_t *req, int status) {
    party__store_work *w = req->data;
    party_room *room = w->room;
    int result = w->result;
    (void)status;
    party__runtime_record_commit(room->rt, w->commit_us);
    free(w);
    room->rt->n_busy--;
    room_commit_done(room, result);
    party__runtime_maybe_finish(room->rt);
}

/* Commits on a worker thread; 0 if the work was queued. */
static int room_commit_async(party_room *room, int64_t index_due) {
    party_runtime *rt = room->rt;
    party__store_work *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return PARTY_ENOMEM;
    w->room = room;
    w->store = room->store;
    w->index_due = index_due;
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

    if (room->store == NULL || !party__store_in_transaction(room->store)) {
        room->batch_wrote = 0;
        if (index_due > 0)
            (void)party__alarm_index_put(rt, room->id, room->party->name, index_due);
        if (room->store != NULL)
            party__room_sync_wake(room);
        if (room->held_head != NULL || room->holding)
            room_release_held(room, 1);
        return;
    }
    wrote = room->batch_wrote || party__store_has_written(room->store) || index_due > 0;
    room->batch_wrote = 0;
    if (wrote && (rt->durability_full || rt->commit_delay_ms > 0) &&
        room_commit_async(room, index_due) == 0)
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
static void room_run(party_room *room) {
    if (room->running || room->committing || room->life != PARTY__ROOM_READY)
        return;
    while (room->queue_head != NULL && !room->committing && room->life == PARTY__ROOM_READY) {
        party__event *ev = room->queue_head;
        room->queue_head = ev->next;
        if (room->queue_head == NULL)
            room->queue_tail = NULL;
        room_deliver(room, ev);
        if (ev->conn != NULL)
            party__conn_unref(ev->conn);
        free(ev);
    }
    room_end_batch(room);
    if (!room->committing)
        party__room_update_idle(room);
}

/* ---- loading (the acquire step) ---- */

static void open_work(uv_work_t *req) {
    party__store_work *w = req->data;
    w->result = party__store_open(&w->opt, w->room->id, &w->store, w->why, sizeof(w->why));
    if (w->result == 0) {
        (void)party__store_alarm_get(w->store, &w->alarm_at, &w->alarm_retries);
        w->sched_next = party__store_sched_earliest(w->store);
    }
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
    room_run(room);
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

int party__room_post(party_room *room, const party__event *ev) {
    party__event *copy;

    if (room->life == PARTY__ROOM_READY && !room->running && !room->committing &&
        room->queue_head == NULL && room->rt->in_callback == 0) {
        party__room_idle_remove(room);
        room_deliver(room, ev);
        room_run(room);
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
        room_run(room);
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
            if (room->held_head != NULL || room->fetch_held != NULL)
                room_release_held(room, 0);
            if (room->store != NULL && party__store_in_transaction(room->store))
                party__store_commit(room->store);
            party__room_drop_state(room);
            party__store_close(party__room_take_store(room));
            party__room_destroy(room);
        }
    }
    rt->ready_head = rt->ready_tail = NULL;
}
