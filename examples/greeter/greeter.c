/* greeter: an example user party, built as a shared object and loaded with
 *   partyd --party greeter=./greeter.so
 * It greets each connection by id, tells the room who joined and left, and
 * answers GET with how many people it has greeted since it started. Only
 * include/party.h is used; PARTY_MODULE at the end exports what partyd
 * looks for. */
#include <party.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct greeter {
    long greeted;
};

static int greeter_start(party_room *room, const char *props) {
    struct greeter *g = calloc(1, sizeof(*g));
    (void)props;
    if (g == NULL)
        return -1; /* the next event retries on_start */
    party_room_set_state(room, g);
    return 0;
}

static void greeter_connect(party_room *room, party_conn *conn, const party_request *req) {
    struct greeter *g = party_room_state(room);
    const char *who = party_request_query(req, "name");
    const char *exclude[1] = {party_conn_id(conn)};
    char line[512];

    g->greeted++;
    party_room_log(room, PARTY_LOG_DEBUG, "greeted %s (%ld so far)",
                   who ? who : party_conn_id(conn), g->greeted);
    snprintf(line, sizeof(line), "hello %s, welcome to %s", who ? who : party_conn_id(conn),
             party_room_name(room));
    party_conn_send_text(conn, line);
    snprintf(line, sizeof(line), "%s joined", who ? who : party_conn_id(conn));
    party_room_broadcast(room, line, strlen(line), 0, exclude, 1, NULL);
}

static void greeter_close(party_room *room, party_conn *conn, int code, const char *reason,
                          int was_clean) {
    char line[320];
    (void)code;
    (void)reason;
    (void)was_clean;
    snprintf(line, sizeof(line), "%s left", party_conn_id(conn));
    party_room_broadcast(room, line, strlen(line), 0, NULL, 0, NULL);
}

static void greeter_request(party_room *room, const party_request *req, party_response *res) {
    struct greeter *g = party_room_state(room);
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"greeted\":%ld}", g->greeted);
    (void)req;
    party_response_set_header(res, "Content-Type", "application/json");
    party_response_set_body(res, body, (size_t)n);
}

static const party_def greeter = {
    PARTY_DEF_INIT,
    .name = "greeter",
    .on_start = greeter_start,
    .on_connect = greeter_connect,
    .on_close = greeter_close,
    .on_request = greeter_request,
    .free_state = free,
};

PARTY_MODULE(greeter);
