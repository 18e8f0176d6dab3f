/* echo: the smallest useful party. Replies to each message with the same
 * bytes, keeping text as text and binary as binary. */
#include "parties.h"

#include <string.h>

static void echo_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    (void)room;
    party_conn_send(conn, data, len, binary);
}

static void echo_request(party_room *room, const party_request *req, party_response *res) {
    size_t len;
    const void *body = party_request_body(req, &len);
    (void)room;
    /* POST bodies come back as they are; anything else gets a greeting. */
    party_response_set_header(res, "Content-Type", "text/plain; charset=utf-8");
    if (strcmp(party_request_method(req), "POST") == 0)
        party_response_set_body(res, body, len);
    else
        party_response_set_body(res, "echo\n", 5);
}

static const party_def echo_def = {
    .name = "echo",
    .on_message = echo_message,
    .on_request = echo_request,
};

const party_def *party_builtin_echo(void) {
    return &echo_def;
}
