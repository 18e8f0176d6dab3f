/* rpc: the dispatch of a client's frames of the Agents protocol (a state
 * proposal goes to sync.c), its {"type":"rpc","id","method","args"}
 * frames, the call handles given to the party's methods, and their
 * answers ({"type":"rpc","id","success","result"|"error","done"}). A
 * handle lives in its room's list from the call until it is answered (or
 * the room is freed); while a client still waits for it, it keeps the
 * room in memory (room->open_calls). Answers are sent like any other
 * message of the room, through the output gate. */
#include "rpc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "conn.h"
#include "log.h"

struct party_call {
    party_room *room;
    party_conn *conn; /* holds a reference; NULL once the connection closed */
    struct party_call *prev, *next;
    int ended;      /* the client no longer waits (restart): answers are dropped */
    size_t id_len;  /* of id_json */
    char id_json[]; /* the call's id as a JSON string, quotes included */
};

party_conn *party_call_conn(party_call *call) {
    if (call == NULL || call->ended || call->conn == NULL || !party__conn_is_open(call->conn))
        return NULL;
    return call->conn;
}

/* The call no longer needs its connection: the reference goes, so a
 * closed connection is freed (and stops counting) without waiting for
 * an answer that would be dropped anyway. */
static void call_drop_conn(party_call *call) {
    if (call->conn != NULL)
        party__conn_unref(call->conn);
    call->conn = NULL;
}

/* 1 if an answer can still reach the caller. */
static int call_reachable(const party_call *call) {
    return !call->ended && call->conn != NULL && party__conn_is_open(call->conn);
}

static void call_unlink(party_call *call) {
    party__sync *s = call->room->sync;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        s->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    if (!call->ended)
        call->room->open_calls--;
}

static void call_free(party_call *call) {
    call_unlink(call);
    call_drop_conn(call);
    party__free(call);
}

/* Sends {"type":"rpc","id":<id_json>,<body>} to conn. An answer that
 * cannot be made for want of memory closes the connection with 1011 (see
 * party__sync_send): the client learns that its call failed. */
static int send_answer(party_conn *conn, const char *id_json, size_t id_len, const char *body,
                       size_t body_len) {
    static const char head[] = "{\"type\":\"rpc\",\"id\":";
    size_t len = sizeof(head) - 1 + id_len + 1 + body_len + 1;
    char *text = party__malloc(len + 1);
    char *p = text;
    int r;

    if (text == NULL)
        return party__sync_send(conn, NULL, 0);
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    memcpy(p, id_json, id_len);
    p += id_len;
    *p++ = ',';
    memcpy(p, body, body_len);
    p += body_len;
    *p++ = '}';
    *p = '\0';
    r = party__sync_send(conn, text, len);
    party__free(text);
    return r;
}

/* "success":false,"error":<message as a JSON string> */
static int error_body(const char *message, char **out, size_t *len) {
    cJSON *str = cJSON_CreateString(message != NULL ? message : "error");
    char *quoted = str != NULL ? cJSON_PrintUnformatted(str) : NULL;
    cJSON_Delete(str);
    if (quoted == NULL)
        return PARTY_ENOMEM;
    *out = party__sync_frame("\"success\":false,\"error\":", quoted, strlen(quoted), "", len);
    cJSON_free(quoted);
    return *out != NULL ? 0 : PARTY_ENOMEM;
}

static int send_error(party_conn *conn, const char *id_json, size_t id_len, const char *message) {
    char *body;
    size_t len;
    int r = error_body(message, &body, &len);
    if (r != 0)
        return party__sync_send(conn, NULL, 0);
    r = send_answer(conn, id_json, id_len, body, len);
    party__free(body);
    return r;
}

/* A success answer: done 1 ends the call. */
static int call_send_result(party_call *call, const char *json, int done) {
    static const char head_done[] = "\"success\":true,\"done\":true";
    static const char head_chunk[] = "\"success\":true,\"done\":false";
    char *body;
    size_t len;
    int r;

    if (!call_reachable(call))
        return PARTY_ECLOSED;
    if (json == NULL)
        return send_answer(call->conn, call->id_json, call->id_len, head_done,
                           sizeof(head_done) - 1);
    body = party__sync_frame(done ? head_done : head_chunk, ",\"result\":", 10, json, &len);
    if (body == NULL)
        return party__sync_send(call->conn, NULL, 0);
    r = send_answer(call->conn, call->id_json, call->id_len, body, len);
    party__free(body);
    return r;
}

int party_call_result(party_call *call, const char *result) {
    int r;
    if (call == NULL)
        return PARTY_EINVAL;
    if (result != NULL && !party__json_valid(result, strlen(result)))
        return PARTY_EINVAL;
    r = call_send_result(call, result, 1);
    call_free(call);
    return r;
}

int party_call_chunk(party_call *call, const char *chunk) {
    if (call == NULL || chunk == NULL || !party__json_valid(chunk, strlen(chunk)))
        return PARTY_EINVAL;
    return call_send_result(call, chunk, 0);
}

int party_call_error(party_call *call, const char *message) {
    int r;
    if (call == NULL)
        return PARTY_EINVAL;
    if (!call_reachable(call))
        r = PARTY_ECLOSED;
    else
        r = send_error(call->conn, call->id_json, call->id_len, message);
    call_free(call);
    return r;
}

static const party_rpc_method *find_method(const party_def *def, const char *name) {
    const party_rpc_method *m;
    if (def->rpc_methods == NULL)
        return NULL;
    for (m = def->rpc_methods; m->name != NULL; m++)
        if (strcmp(m->name, name) == 0 && m->fn != NULL)
            return m;
    return NULL;
}

/* A refusal before any handle exists. id: the frame's id (NULL: none). */
static void refuse(party_room *room, party_conn *conn, const cJSON *id, const char *why) {
    char *id_json = NULL;
    const char *idj = "null";
    if (cJSON_IsString(id))
        idj = id_json = cJSON_PrintUnformatted(id);
    if (idj == NULL) {
        party__log_error(room->rooms->lp, "room %s/%s: out of memory answering a call",
                         room->party->name, room->name ? room->name : room->id);
        party__sync_fail(conn);
        return;
    }
    (void)send_error(conn, idj, strlen(idj), why);
    cJSON_free(id_json);
}

static void rpc_dispatch(party_room *room, party_conn *conn, const cJSON *obj) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(obj, "method");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(obj, "args");
    const party_rpc_method *m;
    char why[320];
    party__sync *s;
    party_call *call;
    char *id_json, *args_text;
    size_t id_len;

    if (!cJSON_IsString(id) || !cJSON_IsString(method) || !cJSON_IsArray(args)) {
        refuse(room, conn, id,
               "malformed RPC call: it needs a string id, a string method and an array args");
        return;
    }
    party__log_debug(room->rooms->lp, "room %s/%s: call %.64s from %s", room->party->name,
                     room->name != NULL ? room->name : room->id, method->valuestring,
                     party_conn_id(conn));
    m = find_method(room->party->def, method->valuestring);
    if (m == NULL) {
        snprintf(why, sizeof(why), "Method %.256s does not exist", method->valuestring);
        refuse(room, conn, id, why);
        return;
    }
    if ((m->flags & PARTY_RPC_WRITES) && conn->readonly) {
        refuse(room, conn, id, "Connection is readonly");
        return;
    }
    s = party__sync_get(room);
    if (room->open_calls >= PARTY__MAX_OPEN_CALLS) {
        refuse(room, conn, id, "too many calls in flight in this room");
        return;
    }
    id_json = cJSON_PrintUnformatted(id);
    args_text = cJSON_PrintUnformatted(args);
    id_len = id_json != NULL ? strlen(id_json) : 0;
    call = s != NULL && id_json != NULL && args_text != NULL
               ? party__malloc(sizeof(*call) + id_len + 1)
               : NULL;
    if (call == NULL) {
        cJSON_free(id_json);
        cJSON_free(args_text);
        refuse(room, conn, id, "out of memory");
        return;
    }
    call->room = room;
    call->conn = conn;
    party__conn_ref(conn);
    call->ended = 0;
    call->id_len = id_len;
    memcpy(call->id_json, id_json, id_len + 1);
    cJSON_free(id_json);
    call->prev = NULL;
    call->next = s->calls;
    if (s->calls != NULL)
        s->calls->prev = call;
    s->calls = call;
    room->open_calls++;
    m->fn(room, call, args_text, strlen(args_text));
    cJSON_free(args_text);
}

/* Ends every open call of the room with an error saying why (shutdown). */
static void rpc_end_all(party_room *room, const char *why) {
    party_call *call;
    if (room->sync == NULL)
        return;
    for (call = room->sync->calls; call != NULL; call = call->next) {
        if (call->ended)
            continue;
        /* Sent like any message: behind what the open batch holds. */
        if (call_reachable(call))
            (void)send_error(call->conn, call->id_json, call->id_len, why);
        call->ended = 1;
        room->open_calls--;
        call_drop_conn(call); /* the connection may close and be freed now */
    }
}

void party__rpc_forget_conn(party_room *room, party_conn *conn) {
    party_call *call;
    if (room->sync == NULL)
        return;
    for (call = room->sync->calls; call != NULL; call = call->next)
        if (call->conn == conn)
            call_drop_conn(call);
}

void party__rpc_free_all(party_room *room) {
    if (room->sync == NULL)
        return;
    while (room->sync->calls != NULL)
        call_free(room->sync->calls);
}

int party__rpc_message(party_room *room, party_conn *conn, const void *data, size_t len,
                       int binary) {
    const char *text = data;
    const cJSON *type;
    cJSON *doc;
    size_t i = 0;

    if (binary || !room->party->sync)
        return 0;
    /* Only a JSON object can be a frame of the protocol: anything else goes
     * to on_message without being parsed. */
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i == len || text[i] != '{')
        return 0;
    /* cJSON says "not JSON" for a lack of memory too: once more tells a
     * passing shortage from text that is not JSON (a lasting one and the
     * frame reaches on_message, as text that is not JSON does). */
    doc = cJSON_ParseWithLength(text, len);
    if (doc == NULL)
        doc = cJSON_ParseWithLength(text, len);
    if (doc == NULL)
        return 0;
    type = cJSON_GetObjectItemCaseSensitive(doc, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "cf_agent_state") == 0 &&
        cJSON_GetObjectItemCaseSensitive(doc, "state") != NULL) {
        party__sync_propose(room, conn, cJSON_GetObjectItemCaseSensitive(doc, "state"));
        cJSON_Delete(doc);
        return 1;
    }
    if (cJSON_IsString(type) && strcmp(type->valuestring, "rpc") == 0) {
        rpc_dispatch(room, conn, doc);
        cJSON_Delete(doc);
        return 1;
    }
    cJSON_Delete(doc);
    return 0;
}

void party__rpc_stop_all(party__rooms *rooms) {
    size_t i;
    party_room *room;
    for (i = 0; i < rooms->table_cap; i++)
        for (room = rooms->table[i]; room != NULL; room = room->hash_next)
            if (room->open_calls > 0)
                rpc_end_all(room, "partyd is restarting; the call was not finished");
}
