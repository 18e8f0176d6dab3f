/* demo: the room behind the browser demo (web/). A chat whose last
 * DEMO_HISTORY messages are kept in the room's storage and sent to every
 * newcomer, presence (each connection's name is its state, so it survives
 * hibernation) and shared cursors, which are relayed and never stored.
 * Messages in both directions are JSON objects with a "type"; see
 * docs/getting-started.md for the protocol. */
#include "parties.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEMO_HISTORY 50    /* messages kept per room */
#define DEMO_NAME_MAX 32   /* bytes of a name */
#define DEMO_TEXT_MAX 1000 /* bytes of a chat message */

/* Storage keys: "seq" holds the number of the last message, "msg:<seq>"
 * (zero-padded, so key order is message order) each message as JSON. */
#define SEQ_KEY "seq"
#define MSG_PREFIX "msg:"

/* Sends json (consumed) to conn, or to everyone but exclude_id when conn
 * is NULL. */
static void demo_send_json(party_room *room, party_conn *conn, cJSON *json,
                           const char *exclude_id) {
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (text == NULL)
        return; /* out of memory: this message is lost, the room goes on */
    if (conn != NULL)
        party_conn_send_text(conn, text);
    else
        party_room_broadcast(room, text, strlen(text), 0, &exclude_id, exclude_id != NULL, NULL);
    free(text);
}

static void demo_send_error(party_conn *conn, const char *message) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "type", "error");
    cJSON_AddStringToObject(json, "message", message);
    demo_send_json(NULL, conn, json, NULL);
}

/* The connection's name (its state, NUL-terminated when set), or NULL
 * before it joined. */
static const char *demo_conn_name(party_conn *conn) {
    return party_conn_state(conn, NULL);
}

static int demo_add_present(party_conn *conn, void *arg) {
    cJSON *list = arg, *item;
    const char *name = demo_conn_name(conn);
    if (name == NULL)
        return 0;
    item = cJSON_CreateObject();
    if (item == NULL || !cJSON_AddItemToArray(list, item)) {
        cJSON_Delete(item);
        return 1;
    }
    cJSON_AddStringToObject(item, "id", party_conn_id(conn));
    cJSON_AddStringToObject(item, "name", name);
    return 0;
}

static int demo_add_message(const char *key, const void *val, size_t len, void *arg) {
    cJSON *item = cJSON_ParseWithLength(val, len);
    (void)key;
    if (item != NULL && !cJSON_AddItemToArray(arg, item))
        cJSON_Delete(item);
    return 0; /* an unreadable entry is skipped, not fatal */
}

/* {"history": [...], "present": [...]} added to json. */
static int demo_add_room(party_room *room, cJSON *json) {
    cJSON *history = cJSON_AddArrayToObject(json, "history");
    cJSON *present = cJSON_AddArrayToObject(json, "present");
    if (history == NULL || present == NULL)
        return -1;
    if (party_kv_list(room, MSG_PREFIX, demo_add_message, history) < 0)
        return -1;
    party_room_foreach_conn(room, NULL, demo_add_present, present);
    return 0;
}

static void demo_connect(party_room *room, party_conn *conn, const party_request *req) {
    cJSON *json = cJSON_CreateObject();
    (void)req;
    if (json == NULL || cJSON_AddStringToObject(json, "type", "welcome") == NULL ||
        cJSON_AddStringToObject(json, "id", party_conn_id(conn)) == NULL ||
        demo_add_room(room, json) != 0) {
        cJSON_Delete(json);
        party_conn_close(conn, 1011, "out of memory");
        return;
    }
    demo_send_json(room, conn, json, NULL);
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static size_t demo_utf8_cut(const char *s, size_t max) {
    size_t len = strlen(s);
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

static void demo_join(party_room *room, party_conn *conn, const cJSON *msg) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(msg, "name");
    char cut[DEMO_NAME_MAX + 1];
    size_t len;
    cJSON *json;

    if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
        demo_send_error(conn, "join needs a non-empty \"name\"");
        return;
    }
    len = demo_utf8_cut(name->valuestring, DEMO_NAME_MAX);
    memcpy(cut, name->valuestring, len);
    cut[len] = '\0';
    /* The NUL is stored too, so the state reads back as a C string. */
    if (party_conn_set_state(conn, cut, len + 1) != 0) {
        demo_send_error(conn, "cannot store the name");
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "type", "join");
    cJSON_AddStringToObject(json, "id", party_conn_id(conn));
    cJSON_AddStringToObject(json, "name", cut);
    demo_send_json(room, NULL, json, NULL);
}

/* The next message number, from storage: rooms leave memory (eviction,
 * hibernation), so nothing is cached across events. */
static long long demo_next_seq(party_room *room) {
    void *val = NULL;
    long long seq = 0;
    int r = party_kv_get(room, SEQ_KEY, &val, NULL);
    if (r == 0)
        seq = strtoll(val, NULL, 10);
    free(val);
    if (r != 0 && r != PARTY_ENOTFOUND)
        return -1;
    return seq + 1;
}

static void demo_chat(party_room *room, party_conn *conn, const cJSON *msg) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "text");
    const char *name = demo_conn_name(conn);
    char key[32], seq_text[24];
    cJSON *entry = NULL, *out;
    char *stored = NULL;
    long long seq;
    int n;

    if (name == NULL) {
        demo_send_error(conn, "send {\"type\":\"join\",\"name\":...} before chatting");
        return;
    }
    if (!cJSON_IsString(text) || text->valuestring[0] == '\0' ||
        strlen(text->valuestring) > DEMO_TEXT_MAX) {
        demo_send_error(conn, "chat needs a \"text\" of 1 to 1000 bytes");
        return;
    }
    seq = demo_next_seq(room);
    entry = cJSON_CreateObject();
    if (seq < 0 || entry == NULL ||
        cJSON_AddStringToObject(entry, "id", party_conn_id(conn)) == NULL ||
        cJSON_AddStringToObject(entry, "name", name) == NULL ||
        cJSON_AddStringToObject(entry, "text", text->valuestring) == NULL ||
        cJSON_AddNumberToObject(entry, "at", (double)party_now_ms(room)) == NULL ||
        (stored = cJSON_PrintUnformatted(entry)) == NULL)
        goto fail;
    snprintf(key, sizeof(key), MSG_PREFIX "%020lld", seq);
    n = snprintf(seq_text, sizeof(seq_text), "%lld", seq);
    if (party_kv_put(room, key, stored, strlen(stored)) != 0 ||
        party_kv_put(room, SEQ_KEY, seq_text, (size_t)n) != 0)
        goto fail;
    if (seq > DEMO_HISTORY) {
        snprintf(key, sizeof(key), MSG_PREFIX "%020lld", seq - DEMO_HISTORY);
        party_kv_delete(room, key); /* PARTY_ENOTFOUND is fine */
    }
    /* Sent to everyone, the sender too: the echo tells the sender the
     * message is stored (the runtime holds it until the write is on disk). */
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "type", "chat");
    if (out == NULL || !cJSON_AddItemToObject(out, "message", entry)) {
        /* Out of memory: the message is stored, only its echo is lost. */
        cJSON_Delete(out);
        cJSON_Delete(entry);
        free(stored);
        return;
    }
    demo_send_json(room, NULL, out, NULL);
    free(stored);
    return;
fail:
    cJSON_Delete(entry);
    free(stored);
    demo_send_error(conn, "the message could not be stored");
}

static void demo_cursor(party_room *room, party_conn *conn, const cJSON *msg) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(msg, "x");
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(msg, "y");
    cJSON *json;

    if (demo_conn_name(conn) == NULL)
        return;
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "type", "cursor");
    cJSON_AddStringToObject(json, "id", party_conn_id(conn));
    /* Positions are fractions of the page; anything else hides the cursor. */
    if (cJSON_IsNumber(x) && cJSON_IsNumber(y) && x->valuedouble >= 0 && x->valuedouble <= 1 &&
        y->valuedouble >= 0 && y->valuedouble <= 1) {
        cJSON_AddNumberToObject(json, "x", x->valuedouble);
        cJSON_AddNumberToObject(json, "y", y->valuedouble);
    }
    demo_send_json(room, NULL, json, party_conn_id(conn));
}

static void demo_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    cJSON *msg = binary ? NULL : cJSON_ParseWithLength(data, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");

    if (!cJSON_IsString(type))
        demo_send_error(conn, "expected a JSON object with a \"type\"");
    else if (strcmp(type->valuestring, "join") == 0)
        demo_join(room, conn, msg);
    else if (strcmp(type->valuestring, "chat") == 0)
        demo_chat(room, conn, msg);
    else if (strcmp(type->valuestring, "cursor") == 0)
        demo_cursor(room, conn, msg);
    else
        demo_send_error(conn, "unknown type (join, chat or cursor)");
    cJSON_Delete(msg);
}

static void demo_close(party_room *room, party_conn *conn, int code, const char *reason,
                       int was_clean) {
    cJSON *json;
    (void)code;
    (void)reason;
    (void)was_clean;
    if (demo_conn_name(conn) == NULL)
        return;
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "type", "leave");
    cJSON_AddStringToObject(json, "id", party_conn_id(conn));
    demo_send_json(room, NULL, json, party_conn_id(conn));
}

/* GET: {"room": name, "history": [...], "present": [...]}. */
static void demo_request(party_room *room, const party_request *req, party_response *res) {
    const char *name = party_room_name(room);
    cJSON *json;
    char *text = NULL;

    if (strcmp(party_request_method(req), "GET") != 0 &&
        strcmp(party_request_method(req), "HEAD") != 0) {
        party_response_set_status(res, 405);
        party_response_set_header(res, "Allow", "GET, HEAD");
        return;
    }
    json = cJSON_CreateObject();
    if (json != NULL && name != NULL && cJSON_AddStringToObject(json, "room", name) != NULL &&
        demo_add_room(room, json) == 0)
        text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        party_response_set_status(res, 500);
        return;
    }
    party_response_json(res, 200, text);
    free(text);
}

static const party_def demo_def = {
    .name = "demo",
    /* Nothing lives in memory between events: a quiet room can hibernate
     * and keep its connections (names are their state). */
    .hibernate = 1,
    .on_connect = demo_connect,
    .on_message = demo_message,
    .on_close = demo_close,
    .on_request = demo_request,
};

const party_def *party_builtin_demo(void) {
    return &demo_def;
}
