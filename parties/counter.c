/* counter: a durable counter per room. Every WebSocket message adds one and
 * gets the new value back; GET answers {"name": ..., "count": ...}. The
 * value lives in the room's storage: a client that saw value N can rely on
 * N surviving a crash (the reply is held until the write is durable). */
#include "parties.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
    long long count;
} counter;

static int counter_start(party_room *room, const char *props) {
    counter *c = calloc(1, sizeof(*c));
    void *val = NULL;
    size_t len;
    int r;
    (void)props;

    if (c == NULL)
        return -1;
    r = party_kv_get(room, "count", &val, &len);
    if (r == 0)
        c->count = strtoll(val, NULL, 10);
    free(val);
    if (r != 0 && r != PARTY_ENOTFOUND) {
        free(c);
        return -1;
    }
    party_room_set_state(room, c);
    return 0;
}

static void counter_message(party_room *room, party_conn *conn, const void *data, size_t len,
                            int binary) {
    counter *c = party_room_state(room);
    char text[32];
    int n;
    (void)data;
    (void)len;
    (void)binary;

    n = snprintf(text, sizeof(text), "%lld", c->count + 1);
    if (party_kv_put(room, "count", text, (size_t)n) != 0) {
        party_conn_close(conn, 1011, "storage write failed");
        return;
    }
    c->count++;
    party_conn_send(conn, text, (size_t)n, 0);
}

static void counter_request(party_room *room, const party_request *req, party_response *res) {
    counter *c = party_room_state(room);
    cJSON *json;
    char *text = NULL;

    if (strcmp(party_request_method(req), "GET") != 0 &&
        strcmp(party_request_method(req), "HEAD") != 0) {
        party_response_set_status(res, 405);
        party_response_set_header(res, "Allow", "GET, HEAD");
        return;
    }
    json = cJSON_CreateObject();
    if (json != NULL && cJSON_AddStringToObject(json, "name", party_room_name(room)) != NULL &&
        cJSON_AddNumberToObject(json, "count", (double)c->count) != NULL)
        text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        party_response_set_status(res, 500);
        return;
    }
    party_response_json(res, 200, text);
    free(text);
}

static const party_def counter_def = {
    .name = "counter",
    .on_start = counter_start,
    .on_message = counter_message,
    .on_request = counter_request,
    .free_state = free,
};

const party_def *party_builtin_counter(void) {
    return &counter_def;
}
