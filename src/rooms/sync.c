/* sync: a room's synced JSON state and the Agents client's frames. The
 * state is one JSON text kept with the room's runtime records (meta key
 * "state"), cached in memory while the room is awake; setting it writes
 * it in the current event's transaction and broadcasts it, so the output
 * gate lets the broadcast out only after the commit. Connections are sent
 * their identity and the state on connect; their state proposals (handed
 * here by rpc.c, which reads every frame) are checked (readonly, JSON,
 * size, the party's validator) here. */
#include "sync.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "conn.h"
#include "log.h"
#include "storage.h"
#include "utf8.h"

#define STATE_KEY "state"

int party__sync_enabled(const party_def *def) {
    return def->sync || def->validate_state != NULL || def->on_state_change != NULL ||
           def->rpc_methods != NULL;
}

party__sync *party__sync_get(party_room *room) {
    if (room->sync == NULL)
        room->sync = party__calloc(1, sizeof(*room->sync));
    return room->sync;
}

static void state_forget(party__sync *s) {
    party__free(s->state);
    s->state = NULL;
    s->state_len = 0;
    s->state_loaded = 0;
}

void party__sync_drop(party_room *room) {
    if (room->sync == NULL)
        return;
    state_forget(room->sync);
    /* A hibernated room keeps nothing of it (no call is open then: open
     * calls keep a room awake). */
    if (room->sync->calls == NULL) {
        party__free(room->sync);
        room->sync = NULL;
    }
}

void party__sync_free(party_room *room) {
    if (room->sync == NULL)
        return;
    state_forget(room->sync);
    party__free(room->sync);
    room->sync = NULL;
}

void party__sync_fail(party_conn *conn) {
    if (conn == NULL || !party__conn_is_open(conn))
        return;
    /* Behind what the batch holds for it, like any close of the room. */
    if (party__conn_room(conn) != NULL)
        party__room_gate(party__conn_room(conn), conn);
    party__conn_start_close(conn, PARTY__WS_INTERNAL_ERROR, "out of memory");
}

int party__sync_send(party_conn *conn, const char *text, size_t len) {
    party__buf *frame;
    int r;

    if (!party__conn_is_open(conn))
        return PARTY_ECLOSED;
    if (text == NULL) {
        party__sync_fail(conn);
        return PARTY_ENOMEM;
    }
    frame = party__ws_frame_new(party__conn_loop(conn)->buf_pool, PARTY__WS_TEXT, text, len);
    if (frame == NULL) {
        party__sync_fail(conn);
        return PARTY_ENOMEM;
    }
    /* Through the output gate, as party_conn_send. */
    if (party__conn_room(conn) != NULL)
        party__room_gate(party__conn_room(conn), conn);
    r = party__conn_queue(conn, frame); /* a failure drops the connection */
    party__buf_release(frame);
    return r;
}

/* 1 if text (len bytes) is one JSON value, with nothing but white space
 * after it, in UTF-8. */
static int json_valid(const char *text, size_t len) {
    const char *end = NULL;
    cJSON *doc;

    if (text == NULL || !party__utf8_valid(text, len))
        return 0;
    doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (doc == NULL) /* or out of memory: once more (see party__rpc_message, rpc.c) */
        doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (doc == NULL)
        return 0;
    cJSON_Delete(doc);
    for (; end < text + len; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
            return 0;
    return 1;
}

int party__json_valid(const char *text, size_t len) {
    return json_valid(text, len);
}

/* head + raw + tail in one new string (*out_len its length), or NULL. */
char *party__sync_frame(const char *head, const char *raw, size_t raw_len, const char *tail,
                        size_t *out_len) {
    size_t head_len = strlen(head), tail_len = strlen(tail);
    char *text = party__malloc(head_len + raw_len + tail_len + 1);
    if (text == NULL)
        return NULL;
    memcpy(text, head, head_len);
    memcpy(text + head_len, raw, raw_len);
    memcpy(text + head_len + raw_len, tail, tail_len + 1);
    *out_len = head_len + raw_len + tail_len;
    return text;
}

/* ---- the state ---- */

static party__room_store *running_store(party_room *room) {
    return room != NULL && room->running ? room->store : NULL;
}

/* Makes sure the cached state reflects the store. 0 or an error. */
static int state_load(party_room *room, party__sync *s) {
    void *val = NULL;
    size_t len = 0;
    int r;

    if (s->state_loaded)
        return 0;
    r = party__store_meta_get(room->store, STATE_KEY, &val, &len);
    if (r == PARTY_ENOTFOUND) {
        s->state_loaded = 1;
        return 0;
    }
    if (r != 0)
        return r;
    s->state = val; /* NUL-terminated past len by the store */
    s->state_len = len;
    s->state_loaded = 1;
    return 0;
}

int party_state_get(party_room *room, const char **json, size_t *len) {
    party__sync *s;
    int r;

    if (json == NULL)
        return PARTY_EINVAL;
    if (running_store(room) == NULL)
        return PARTY_ESTATE;
    if ((s = party__sync_get(room)) == NULL)
        return PARTY_ENOMEM;
    if ((r = state_load(room, s)) != 0)
        return r;
    if (s->state == NULL)
        return PARTY_ENOTFOUND;
    *json = s->state;
    if (len != NULL)
        *len = s->state_len;
    return 0;
}

/* {"type":"cf_agent_state","state":<json>} as a frame, or NULL. */
static party__buf *state_frame(party_room *room, const char *json, size_t len) {
    size_t text_len;
    char *text =
        party__sync_frame("{\"type\":\"cf_agent_state\",\"state\":", json, len, "}", &text_len);
    party__buf *frame;

    if (text == NULL)
        return NULL;
    frame = party__ws_frame_new(room->rooms->lp->buf_pool, PARTY__WS_TEXT, text, text_len);
    party__free(text);
    return frame;
}

/* frame to every open connection but except (NULL: none), shared by all. */
static void state_broadcast(party_room *room, party_conn *except, party__buf *frame) {
    party_conn *conn, *next;
    int held = party__room_holding(room);

    for (conn = room->conns.head; conn != NULL; conn = next) {
        next = party__conn_list_next(conn);
        if (conn == except || !party__conn_is_open(conn))
            continue;
        if (held)
            party__conn_hold(conn, &room->gate);
        (void)party__conn_queue(conn, frame); /* a failure drops that connection */
    }
}

/* Stores json as the state, caches it, broadcasts it, tells the party.
 * Everything that needs memory is had before the write: a state that is
 * stored is also sent (no client is left behind without knowing). */
static int state_commit(party_room *room, party__sync *s, party_conn *from, const char *json,
                        size_t len) {
    const party_def *def = room->party->def;
    char *copy = party__malloc(len + 1);
    party__buf *frame = copy != NULL ? state_frame(room, json, len) : NULL;
    int r;

    if (frame == NULL) {
        party__free(copy);
        return PARTY_ENOMEM;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    r = party__store_meta_put(room->store, STATE_KEY, json, len);
    if (r != 0) {
        party__free(copy);
        party__buf_release(frame);
        return r;
    }
    party__free(s->state);
    s->state = copy;
    s->state_len = len;
    s->state_loaded = 1;
    state_broadcast(room, from, frame);
    party__buf_release(frame);
    if (def->on_state_change != NULL && !s->in_change) {
        s->in_change = 1;
        def->on_state_change(room, from, copy, len);
        s->in_change = 0;
    }
    return r;
}

int party_state_set(party_room *room, const char *json, size_t len) {
    party__sync *s;

    if (running_store(room) == NULL)
        return PARTY_ESTATE;
    if (json == NULL)
        return PARTY_EINVAL;
    if (len > PARTY_MAX_STATE)
        return PARTY_ETOOBIG;
    if (!json_valid(json, len))
        return PARTY_EINVAL;
    if ((s = party__sync_get(room)) == NULL)
        return PARTY_ENOMEM;
    return state_commit(room, s, NULL, json, len);
}

/* ---- readonly connections ---- */

void party_conn_set_readonly(party_conn *conn, int readonly) {
    if (conn != NULL)
        conn->readonly = readonly != 0;
}

int party_conn_readonly(party_conn *conn) {
    return conn != NULL && conn->readonly;
}

/* ---- frames ---- */

static void send_state_error(party_conn *conn, const char *why) {
    cJSON *obj = cJSON_CreateObject();
    char *text;

    if (obj == NULL || cJSON_AddStringToObject(obj, "type", "cf_agent_state_error") == NULL ||
        cJSON_AddStringToObject(obj, "error", why) == NULL) {
        cJSON_Delete(obj);
        party__sync_fail(conn); /* the client must not wait for an answer */
        return;
    }
    text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    (void)party__sync_send(conn, text, text != NULL ? strlen(text) : 0);
    cJSON_free(text);
}

void party__sync_connect(party_room *room, party_conn *conn) {
    party__sync *s;
    cJSON *obj;
    char *text;
    int have_state = 0, r;

    if (!room->party->sync)
        return;
    s = party__sync_get(room);
    r = s != NULL ? state_load(room, s) : PARTY_ENOMEM;
    if (r != 0) {
        /* Not "no state": the client would believe it. It retries. */
        party__log_error(room->rooms->lp, "room %s/%s: cannot read its state: %s",
                         room->party->name, room->name ? room->name : room->id, party_strerror(r));
        party__sync_fail(conn);
        return;
    }
    have_state = s->state != NULL;
    obj = cJSON_CreateObject();
    if (obj == NULL || cJSON_AddStringToObject(obj, "type", "cf_agent_identity") == NULL ||
        cJSON_AddStringToObject(obj, "name", room->name != NULL ? room->name : room->id) == NULL ||
        cJSON_AddStringToObject(obj, "agent", room->party->name) == NULL ||
        (have_state && cJSON_AddTrueToObject(obj, "stateFollows") == NULL)) {
        cJSON_Delete(obj);
        party__sync_fail(conn);
        return;
    }
    text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    r = party__sync_send(conn, text, text != NULL ? strlen(text) : 0);
    cJSON_free(text);
    if (r == 0 && have_state) {
        size_t len = 0;
        char *frame = party__sync_frame("{\"type\":\"cf_agent_state\",\"state\":", s->state,
                                        s->state_len, "}", &len);
        (void)party__sync_send(conn, frame, len);
        party__free(frame);
    }
}

void party__sync_propose(party_room *room, party_conn *conn, const void *value) {
    const cJSON *state = value;
    const party_def *def = room->party->def;
    char reason[256] = "";
    party__sync *s;
    char *text;
    size_t len;
    int r;

    if (conn->readonly) {
        send_state_error(conn, "Connection is readonly");
        return;
    }
    text = cJSON_PrintUnformatted(state);
    if (text == NULL) {
        party__sync_fail(conn);
        return;
    }
    len = strlen(text);
    if (len > PARTY_MAX_STATE) {
        send_state_error(conn, "State update rejected: larger than 1 MiB");
        cJSON_free(text);
        return;
    }
    if (def->validate_state != NULL &&
        def->validate_state(room, conn, text, len, reason, sizeof(reason)) != 0) {
        reason[sizeof(reason) - 1] = '\0';
        send_state_error(conn, reason[0] != '\0' ? reason : "State update rejected");
        cJSON_free(text);
        return;
    }
    s = party__sync_get(room);
    r = s != NULL ? state_commit(room, s, conn, text, len) : PARTY_ENOMEM;
    cJSON_free(text);
    /* The client applied its state already and is told nothing more when
     * it is kept: if the batch's commit fails, the connection fails with
     * the others (1011), so its client reconnects to the stored state. */
    if (r == 0 && party__room_holding(room))
        party__conn_hold_acted(conn, &room->gate);
    if (r != 0) {
        party__log_error(room->rooms->lp, "room %s/%s: cannot store a state from %s: %s",
                         room->party->name, room->name ? room->name : room->id, party_conn_id(conn),
                         party_strerror(r));
        send_state_error(conn, "State update failed");
    }
}
