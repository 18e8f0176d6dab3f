/* todos: a to-do list per room, kept as the room's synced state
 * {"items":[{"id","text","done"}]} and changed over RPC — add(text) -> id,
 * toggle(id) -> done, remove(id) -> true, count() -> n, and export(),
 * which streams one chunk per item and ends with the count. Cloudflare's
 * AgentClient connects to it unchanged at /agents/todos/<room> (or
 * /parties/todos/<room>); a client may also propose a whole new state,
 * which is refused unless it has that shape. GET answers the state. */
#include "parties.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TODOS_MAX_ITEMS 10000
#define TODOS_MAX_TEXT 1000
#define TODOS_MAX_ID 64

/* NULL if state is a valid list; else why not. */
static const char *todos_check(const cJSON *state) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(state, "items");
    const cJSON *item, *other;
    int n = 0;

    if (!cJSON_IsObject(state) || !cJSON_IsArray(items))
        return "state must be {\"items\": [...]}";
    cJSON_ArrayForEach(item, items) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(item, "text");
        const cJSON *done = cJSON_GetObjectItemCaseSensitive(item, "done");
        if (++n > TODOS_MAX_ITEMS)
            return "too many items";
        if (!cJSON_IsObject(item) || !cJSON_IsString(id) || !cJSON_IsString(text) ||
            !cJSON_IsBool(done))
            return "each item must be {\"id\": string, \"text\": string, \"done\": boolean}";
        if (id->valuestring[0] == '\0' || strlen(id->valuestring) > TODOS_MAX_ID ||
            strlen(text->valuestring) > TODOS_MAX_TEXT)
            return "an item's id must be 1..64 bytes and its text at most 1000";
        for (other = items->child; other != item; other = other->next)
            if (strcmp(cJSON_GetObjectItemCaseSensitive(other, "id")->valuestring,
                       id->valuestring) == 0)
                return "item ids must be unique";
    }
    return NULL;
}

static int todos_validate(party_room *room, party_conn *from, const char *json, size_t len,
                          char *reason, size_t reason_len) {
    cJSON *state = cJSON_ParseWithLength(json, len);
    const char *why = state != NULL ? todos_check(state) : "state is not JSON";
    (void)room;
    (void)from;
    cJSON_Delete(state);
    if (why == NULL)
        return 0;
    snprintf(reason, reason_len, "%s", why);
    return -1;
}

/* The current list, parsed (the caller deletes it), or NULL. */
static cJSON *todos_load(party_room *room) {
    const char *json;
    size_t len;
    if (party_state_get(room, &json, &len) != 0)
        return NULL;
    return cJSON_ParseWithLength(json, len);
}

/* Stores state as the room's new state. 0 or a PARTY_E* code. */
static int todos_store(party_room *room, const cJSON *state) {
    char *text = cJSON_PrintUnformatted(state);
    int r;
    if (text == NULL)
        return PARTY_ENOMEM;
    r = party_state_set(room, text, strlen(text));
    cJSON_free(text);
    return r;
}

static int todos_start(party_room *room, const char *props) {
    const char *json;
    int r = party_state_get(room, &json, NULL);
    (void)props;
    if (r == PARTY_ENOTFOUND)
        r = party_state_set(room, "{\"items\":[]}", 12);
    return r == 0 ? 0 : -1;
}

/* The first argument, if it is a string; else NULL. args is the call's
 * array (the caller deletes it). */
static const char *string_arg(cJSON *args) {
    cJSON *first = cJSON_GetArrayItem(args, 0);
    return cJSON_IsString(first) ? first->valuestring : NULL;
}

/* Answers with the result of storing state: result on success. */
static void todos_answer(party_room *room, party_call *call, const cJSON *state,
                         const char *result) {
    int r = todos_store(room, state);
    if (r != 0) {
        char why[128];
        snprintf(why, sizeof(why), "cannot store the list: %s", party_strerror(r));
        party_call_error(call, why);
        return;
    }
    party_call_result(call, result);
}

static void todos_add(party_room *room, party_call *call, const char *args, size_t len) {
    cJSON *argv = cJSON_ParseWithLength(args, len), *state = todos_load(room), *item;
    const char *text = string_arg(argv);
    char id[PARTY_ID_MAX], id_json[20];

    if (text == NULL || strlen(text) > TODOS_MAX_TEXT) {
        party_call_error(call, "add(text): text must be a string of at most 1000 bytes");
    } else if (state == NULL) {
        party_call_error(call, "cannot read the list");
    } else if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(state, "items")) >=
               TODOS_MAX_ITEMS) {
        party_call_error(call, "the list is full");
    } else {
        party_room_id_new(id); /* random: 16 hex digits of it make an id */
        id[16] = '\0';
        item = cJSON_CreateObject();
        if (item == NULL || cJSON_AddStringToObject(item, "id", id) == NULL ||
            cJSON_AddStringToObject(item, "text", text) == NULL ||
            cJSON_AddFalseToObject(item, "done") == NULL ||
            !cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(state, "items"), item)) {
            cJSON_Delete(item);
            party_call_error(call, "out of memory");
        } else {
            snprintf(id_json, sizeof(id_json), "\"%.16s\"", id);
            todos_answer(room, call, state, id_json);
        }
    }
    cJSON_Delete(state);
    cJSON_Delete(argv);
}

/* The item whose id is the call's first argument, or NULL (answered). */
static cJSON *find_item(party_call *call, cJSON *state, cJSON *argv) {
    const char *id = string_arg(argv);
    cJSON *item;
    if (id == NULL) {
        party_call_error(call, "the argument must be an item's id (a string)");
        return NULL;
    }
    if (state == NULL) {
        party_call_error(call, "cannot read the list");
        return NULL;
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(state, "items")) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(item, "id")->valuestring, id) == 0)
            return item;
    }
    party_call_error(call, "no item has this id");
    return NULL;
}

static void todos_toggle(party_room *room, party_call *call, const char *args, size_t len) {
    cJSON *argv = cJSON_ParseWithLength(args, len), *state = todos_load(room);
    cJSON *item = find_item(call, state, argv);
    if (item != NULL) {
        int now = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "done"));
        cJSON *done = cJSON_CreateBool(now);
        if (done == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(item, "done", done)) {
            cJSON_Delete(done);
            party_call_error(call, "out of memory");
            cJSON_Delete(state);
            cJSON_Delete(argv);
            return;
        }
        todos_answer(room, call, state, now ? "true" : "false");
    }
    cJSON_Delete(state);
    cJSON_Delete(argv);
}

static void todos_remove(party_room *room, party_call *call, const char *args, size_t len) {
    cJSON *argv = cJSON_ParseWithLength(args, len), *state = todos_load(room);
    cJSON *item = find_item(call, state, argv);
    if (item != NULL) {
        cJSON_Delete(
            cJSON_DetachItemViaPointer(cJSON_GetObjectItemCaseSensitive(state, "items"), item));
        todos_answer(room, call, state, "true");
    }
    cJSON_Delete(state);
    cJSON_Delete(argv);
}

static void todos_count(party_room *room, party_call *call, const char *args, size_t len) {
    cJSON *state = todos_load(room);
    char n[24];
    (void)args;
    (void)len;
    if (state == NULL) {
        party_call_error(call, "cannot read the list");
        return;
    }
    snprintf(n, sizeof(n), "%d",
             cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(state, "items")));
    cJSON_Delete(state);
    party_call_result(call, n);
}

/* One chunk per item, then the count as the final result. */
static void todos_export(party_room *room, party_call *call, const char *args, size_t len) {
    cJSON *state = todos_load(room), *item;
    char n[24];
    int count = 0;
    (void)args;
    (void)len;
    if (state == NULL) {
        party_call_error(call, "cannot read the list");
        return;
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(state, "items")) {
        char *text = cJSON_PrintUnformatted(item);
        int r = text != NULL ? party_call_chunk(call, text) : PARTY_ENOMEM;
        cJSON_free(text);
        if (r != 0)
            break; /* the client is gone, or memory is: the final answer says which */
        count++;
    }
    cJSON_Delete(state);
    snprintf(n, sizeof(n), "%d", count);
    party_call_result(call, n);
}

static void todos_request(party_room *room, const party_request *req, party_response *res) {
    const char *json;
    if (strcmp(party_request_method(req), "GET") != 0) {
        party_response_set_status(res, 405);
        party_response_set_header(res, "Allow", "GET");
        return;
    }
    if (party_state_get(room, &json, NULL) != 0) {
        party_response_text(res, 500, "cannot read the list\n");
        return;
    }
    party_response_json(res, 200, json);
}

static const party_rpc_method todos_methods[] = {
    {"add", todos_add, PARTY_RPC_WRITES},
    {"toggle", todos_toggle, PARTY_RPC_WRITES},
    {"remove", todos_remove, PARTY_RPC_WRITES},
    {"count", todos_count, 0},
    {"export", todos_export, 0},
    {NULL, NULL, 0},
};

/* ?readonly=1 (or true) makes a connection readonly: it sees the list and
 * may call count and export, nothing that changes the list. */
static void todos_connect(party_room *room, party_conn *conn, const party_request *req) {
    const char *ro = party_request_query(req, "readonly");
    (void)room;
    if (ro != NULL && (strcmp(ro, "1") == 0 || strcmp(ro, "true") == 0))
        party_conn_set_readonly(conn, 1);
}

static const party_def todos_def = {
    .name = "todos",
    .hibernate = 1,
    .on_start = todos_start,
    .on_connect = todos_connect,
    .on_request = todos_request,
    .sync = 1,
    .validate_state = todos_validate,
    .rpc_methods = todos_methods,
};

const party_def *party_builtin_todos(void) {
    return &todos_def;
}
