/* chat: a room where every message reaches everyone else. GET on the room
 * describes it as JSON. */
#include "parties.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void chat_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    const char *exclude[1] = {party_conn_id(conn)};
    party_room_broadcast(room, data, len, binary, exclude, 1, NULL);
}

static void chat_request(party_room *room, const party_request *req, party_response *res) {
    cJSON *json;
    char *text;

    if (strcmp(party_request_method(req), "GET") != 0 &&
        strcmp(party_request_method(req), "HEAD") != 0) {
        party_response_set_status(res, 405);
        party_response_set_header(res, "Allow", "GET, HEAD");
        return;
    }
    json = cJSON_CreateObject();
    if (json == NULL)
        goto fail;
    if (cJSON_AddStringToObject(json, "room", party_room_name(room)) == NULL ||
        cJSON_AddNumberToObject(json, "connections", (double)party_room_conn_count(room)) == NULL)
        goto fail;
    text = cJSON_PrintUnformatted(json);
    if (text == NULL)
        goto fail;
    party_response_json(res, 200, text);
    free(text);
    cJSON_Delete(json);
    return;
fail:
    cJSON_Delete(json);
    party_response_set_status(res, 500);
}

static const party_def chat_def = {
    .name = "chat",
    .on_message = chat_message,
    .on_request = chat_request,
};

const party_def *party_builtin_chat(void) {
    return &chat_def;
}
