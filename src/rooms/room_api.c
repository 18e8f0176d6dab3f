/* room_api: the public API a party calls on its room — identity, user
 * state, connections, sending to them and closing them, broadcast, its
 * log lines, and the room's key-value storage. Output passes the room's
 * output gate here: while the open batch has written, what a connection
 * is sent waits in its queue for the commit (room_commit.c). */
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "conn.h"
#include "log.h"
#include "room.h"
#include "storage.h"
#include "utf8.h"
#include "alloc.h"

/* ---- public room API ---- */

const char *party_room_name(party_room *room) {
    if (room->name == NULL && !room->name_error) {
        /* Like reading an unset name in PartyServer, this is an error of
         * the handler: logged, and an HTTP handler's answer becomes 500. */
        room->name_error = 1;
        party__log_error(room->rooms->lp, "room %s/%s: %s", room->party->name, room->id,
                         party_strerror(PARTY_ENONAME));
    }
    return room->name;
}

int64_t party_now_ms(party_room *room) {
    struct timeval tv;
    if (room != NULL)
        return party__loop_epoch_ms(room->rooms->lp);
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void party_room_log(party_room *room, int level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;

    if (room == NULL || fmt == NULL || level < PARTY_LOG_ERROR || level > PARTY_LOG_DEBUG ||
        level > room->rooms->lp->cfg.log_level)
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    /* The prefix of the runtime's own lines about a room, so one grep finds
     * both; the name is read directly, as party_room_name would log when
     * there is none. */
    party__log(room->rooms->lp, level, "room %s/%s: %s", room->party->name,
               room->name != NULL ? room->name : room->id, msg);
}

const char *party_room_party(party_room *room) {
    return room->party->name;
}

const char *party_room_id(party_room *room) {
    return room->id;
}

int party_room_set_name(party_room *room, const char *name) {
    size_t len = name != NULL ? strlen(name) : 0;
    char *copy;
    int r;

    if (len == 0 || len > PARTY_MAX_TAG_LEN || !party__utf8_valid(name, len))
        return PARTY_EINVAL;
    if (room->name != NULL)
        return strcmp(room->name, name) == 0 ? 0 : PARTY_EEXIST;
    copy = party__strdup(name);
    if (copy == NULL)
        return PARTY_ENOMEM;
    if (room->store != NULL) {
        r = party__store_meta_put(room->store, "name", name, len);
        if (r == 0)
            r = party__store_meta_put(room->store, "party", room->party->name,
                                      strlen(room->party->name));
        if (r != 0) {
            party__free(copy);
            return r;
        }
    }
    room->name = copy;
    room->name_error = 0;
    return 0;
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
    for (conn = room->conns.head; conn != NULL; conn = party__conn_list_next(conn))
        if (party__conn_is_open(conn) && strcmp(party_conn_id(conn), conn_id) == 0)
            return conn;
    return NULL;
}

static int conn_has_tag(party_conn *conn, const char *tag) {
    const char *const *tags;
    size_t i, n = party_conn_tags(conn, &tags);
    for (i = 0; i < n; i++)
        if (strcmp(tags[i], tag) == 0)
            return 1;
    return 0;
}

int party_room_foreach_conn(party_room *room, const char *tag, int (*fn)(party_conn *, void *),
                            void *arg) {
    party_conn *conn, *next;
    for (conn = room->conns.head; conn != NULL; conn = next) {
        int rc;
        /* fn may close this connection; it stays linked until its close
         * event, so next is still valid. */
        next = party__conn_list_next(conn);
        if (!party__conn_is_open(conn) || (tag != NULL && !conn_has_tag(conn, tag)))
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
    for (conn = room->conns.head; conn != NULL; conn = party__conn_list_next(conn))
        n += party__conn_is_open(conn);
    return n;
}

/* ---- sending and closing: through the output gate ---- */

int party_conn_send(party_conn *conn, const void *data, size_t len, int binary) {
    party_room *room;
    party__buf *frame;
    int r;

    if (conn == NULL || (data == NULL && len > 0))
        return PARTY_EINVAL;
    if (!party__conn_is_open(conn))
        return PARTY_ECLOSED;
    if (!binary && !party__utf8_valid(data, len))
        return PARTY_EINVAL;
    frame = party__ws_frame_new(party__conn_loop(conn)->buf_pool,
                                binary ? PARTY__WS_BINARY : PARTY__WS_TEXT, data, len);
    if (frame == NULL)
        return PARTY_ENOMEM;
    room = party__conn_room(conn);
    if (room != NULL)
        party__room_gate(room, conn);
    r = party__conn_queue(conn, frame);
    party__buf_release(frame);
    return r;
}

int party_conn_send_text(party_conn *conn, const char *text) {
    if (text == NULL)
        return PARTY_EINVAL;
    return party_conn_send(conn, text, strlen(text), 0);
}

int party_conn_close(party_conn *conn, int code, const char *reason) {
    size_t reason_len = reason != NULL ? strlen(reason) : 0;
    party_room *room;

    if (conn == NULL || !party__ws_close_code_sendable(code) ||
        reason_len > PARTY_MAX_CLOSE_REASON || !party__utf8_valid(reason, reason_len))
        return PARTY_EINVAL;
    if (!party__conn_is_open(conn))
        return 0; /* already closing: the first close wins */
    /* The Close announces what the batch did, like a message would. */
    room = party__conn_room(conn);
    if (room != NULL)
        party__room_gate(room, conn);
    party__conn_start_close(conn, code, reason);
    return 0;
}

/* Asked for every receiver of a broadcast: the first bytes are compared
 * before strcmp is called, since ids (random UUIDs from partysocket) mostly
 * differ there, and the call cost more than the rest of a delivery's check. */
static int id_excluded(const char *id, const char *const *exclude_ids, size_t n_exclude) {
    size_t i;
    for (i = 0; i < n_exclude; i++) {
        const char *ex = exclude_ids[i];
        if (ex != NULL && ex[0] == id[0] && (ex[0] == '\0' || strcmp(ex + 1, id + 1) == 0))
            return 1;
    }
    return 0;
}

int party_room_broadcast(party_room *room, const void *data, size_t len, int binary,
                         const char *const *exclude_ids, size_t n_exclude, size_t *sent_out) {
    party__buf *frame;
    party_conn *conn, *next;
    size_t sent = 0;
    int held;

    if ((data == NULL && len > 0) || (!binary && !party__utf8_valid(data, len)))
        return PARTY_EINVAL;
    frame = party__ws_frame_new(room->rooms->lp->buf_pool,
                                binary ? PARTY__WS_BINARY : PARTY__WS_TEXT, data, len);
    if (frame == NULL)
        return PARTY_ENOMEM;
    /* One frame, shared by reference; held, each connection keeps it in
     * its own queue behind its mark: nothing is allocated per delivery. */
    held = party__room_holding(room);
    for (conn = room->conns.head; conn != NULL; conn = next) {
        next = party__conn_list_next(conn);
        if (!party__conn_is_open(conn) || id_excluded(party__conn_id(conn), exclude_ids, n_exclude))
            continue;
        if (held)
            party__conn_hold(conn, &room->gate);
        if (party__conn_queue(conn, frame) == 0)
            sent++;
    }
    party__buf_release(frame);
    if (sent_out != NULL)
        *sent_out = sent;
    return 0;
}

/* ---- storage ---- */

/* The room's store, when its callbacks may use it. */
static party__room_store *room_store(party_room *room) {
    return room != NULL && room->running ? room->store : NULL;
}

int party_kv_put(party_room *room, const char *key, const void *val, size_t len) {
    party__room_store *store = room_store(room);
    if (store == NULL)
        return PARTY_ESTATE;
    return party__store_kv_put(store, key, val, len);
}

int party_kv_get(party_room *room, const char *key, void **val, size_t *len) {
    party__room_store *store = room_store(room);
    if (store == NULL)
        return PARTY_ESTATE;
    return party__store_kv_get(store, key, val, len);
}

int party_kv_delete(party_room *room, const char *key) {
    party__room_store *store = room_store(room);
    if (store == NULL)
        return PARTY_ESTATE;
    return party__store_kv_delete(store, key);
}

int party_kv_list(party_room *room, const char *prefix,
                  int (*fn)(const char *key, const void *val, size_t len, void *arg), void *arg) {
    party__room_store *store = room_store(room);
    if (store == NULL)
        return PARTY_ESTATE;
    return party__store_kv_list(store, prefix, fn, arg);
}

struct sqlite3 *party_room_db(party_room *room) {
    party__room_store *store = room_store(room);
    /* The room's SQL runs inside the batch's transaction, like its KV. */
    struct sqlite3 *db;
    if (store == NULL)
        return NULL;
    db = party__store_room_file_open(store);
    if (db == NULL && strcmp(store->ops->name, "sqlite") != 0)
        party__log_error(room->rooms->lp,
                         "room %s/%s: party_room_db: the room's own database is not available"
                         " (%s store; docs/cluster.md)",
                         room->party->name, room->name ? room->name : room->id, store->ops->name);
    return db;
}

/* ---- old names, kept until 1.0 (party.h) ---- */

int party_broadcast(party_room *room, const void *data, size_t len, int binary,
                    const char *const *exclude_ids, size_t n_exclude) {
    size_t sent = 0;
    int r = party_room_broadcast(room, data, len, binary, exclude_ids, n_exclude, &sent);
    if (r != 0)
        return r;
    return sent > INT_MAX ? INT_MAX : (int)sent;
}
