/* router: maps /<prefix>/<party>/<room>[/rest] to a room, runs the party's
 * before_connect / before_request hook, and posts a connect or request
 * event to the room. Anything it cannot route it answers itself. */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "fetch.h"
#include "log.h"
#include "loops.h"
#include "ops.h"
#include "request.h"
#include "room.h"
#include "runtime.h"
#include "static.h"
#include "url.h"
#include "utf8.h"

#define ROOM_NAME_MAX 256

int party__route_match(const char *prefix, party__slice path, party__route *route) {
    size_t prefix_len = strlen(prefix);
    size_t i, start;

    /* "/" prefix "/" party "/" room ["/" rest] */
    if (path.len < prefix_len + 2 || path.ptr[0] != '/' ||
        memcmp(path.ptr + 1, prefix, prefix_len) != 0 || path.ptr[prefix_len + 1] != '/')
        return 0;
    i = prefix_len + 2;
    start = i;
    while (i < path.len && path.ptr[i] != '/')
        i++;
    if (i == start || i >= path.len)
        return 0;
    route->party = party__slice_make(path.ptr + start, i - start);
    /* A room segment that is there but empty (/parties/chat/, or
     * /parties/chat//x) still matches: the router refuses it with 400, as
     * any other invalid room name, instead of a 404 that hides why. */
    start = ++i;
    while (i < path.len && path.ptr[i] != '/')
        i++;
    route->room = party__slice_make(path.ptr + start, i - start);
    return 1;
}

static void respond_text(party_conn *conn, int status, const char *text, int force_close) {
    party_response res;
    party__response_init(&res);
    party__response_text(&res, status, text);
    party__conn_http_respond(conn, &res, force_close);
    party__response_free(&res);
}

/* Runs a hook; 1 if it answered (and the answer was sent). */
static int run_hook(party_conn *conn,
                    int (*hook)(const party_lobby *, party_request *, party_response *),
                    const party_lobby *lobby, int force_close) {
    party_response res;
    int r;

    if (hook == NULL)
        return 0;
    party__response_init(&res);
    party__conn_rt(conn)->in_callback++;
    r = hook(lobby, &conn->http->preq, &res);
    party__conn_rt(conn)->in_callback--;
    if (r == PARTY_RESPOND)
        party__conn_http_respond(conn, &res, force_close);
    party__response_free(&res);
    return r == PARTY_RESPOND;
}

/* The connection id: the _pk query parameter when valid, else a new one. */
static int conn_id_from_request(const party__http_request *req, char *out, size_t cap) {
    party__slice pk = party__url_query_find(req->query, "_pk");
    int n;

    if (pk.ptr == NULL) {
        party__conn_make_id(out);
        return 0;
    }
    n = party__url_decode(pk, out, cap, 1);
    if (n <= 0 || n > PARTY_MAX_TAG_LEN || !party__utf8_valid(out, (size_t)n))
        return -1;
    return 0;
}

static void route_websocket(party_conn *conn, const party__party *party, const char *room_name,
                            const char *room_id, const party_lobby *lobby) {
    party_runtime *rt = party__conn_rt(conn);
    party__http_request *req = &conn->http->req;
    const char *why = NULL;
    char id[PARTY_MAX_TAG_LEN + 1];
    party__event ev;
    party_room *room;
    int status = party__ws_handshake_check(req, &why);

    if (status != 0) {
        char body[160];
        rt->http_errors++;
        party__log_info(rt, "http: %d bad WebSocket handshake: %s", status, why);
        snprintf(body, sizeof(body), "bad WebSocket handshake: %s\n", why);
        party__conn_http_fail(conn, status, body);
        return;
    }
    if (conn_id_from_request(req, id, sizeof(id)) != 0) {
        party__conn_http_fail(conn, 400, "invalid _pk: a connection id is 1..256 bytes of UTF-8\n");
        return;
    }
    if (run_hook(conn, party->def->before_connect, lobby, 1))
        return;
    room = party__room_get_named(rt, party, room_name, room_id);
    if (room == NULL) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    if (party__runtime_conns(rt) > rt->cfg.max_conns) {
        party__log_warn(rt,
                        "room %s/%s: refused a connection: max_conns (%zu) reached (--max-conns)",
                        party->name, room_name, rt->cfg.max_conns);
        party__conn_http_fail(conn, 503, "server is full (max_conns)\n");
        return;
    }
    if (room->n_conns + room->n_pending >= rt->cfg.max_room_conns) {
        party__log_warn(
            rt, "room %s/%s: refused a connection: max_room_conns (%zu) reached (--max-room-conns)",
            party->name, room_name, rt->cfg.max_room_conns);
        party__conn_http_fail(conn, 503, "room is full (max_room_conns)\n");
        return;
    }
    if (conn->http->preq.props != NULL &&
        party__room_set_props(room, conn->http->preq.props) != 0) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    if (party__conn_begin_upgrade(conn, room, id) != 0) {
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    room->n_pending++;
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_CONNECT;
    ev.conn = conn;
    if (party__room_post(room, &ev) != 0) {
        room->n_pending--;
        party__conn_abort(conn);
    }
}

static const char *const default_cors[] = {
    "Access-Control-Allow-Origin",
    "*",
    "Access-Control-Allow-Methods",
    "GET, POST, HEAD, OPTIONS",
    "Access-Control-Allow-Headers",
    "*",
    "Access-Control-Max-Age",
    "86400",
    NULL,
    NULL,
};

/* The CORS headers for a party's HTTP answers, or NULL when CORS is off. */
static const char *const *party_cors(const party_runtime *rt, const party__party *party) {
    int on = party->def->cors == PARTY_CORS_ON ||
             (party->def->cors == PARTY_CORS_DEFAULT && rt->cfg.cors);
    if (!on)
        return NULL;
    if (party->def->cors_headers != NULL)
        return party->def->cors_headers;
    return rt->cfg.cors_headers != NULL ? rt->cfg.cors_headers : default_cors;
}

/* from_room: a room-to-room request (party_room_fetch): hooks and CORS are
 * for clients outside the runtime, so they are skipped. */
static void route_request(party_conn *conn, const party__party *party, const char *room_name,
                          const char *room_id, const party_lobby *lobby, int from_room) {
    party__event ev;
    party_room *room;

    conn->http->cors = from_room ? NULL : party_cors(party__conn_rt(conn), party);
    if (conn->http->cors != NULL && party__slice_eq_nocase(conn->http->req.method, "OPTIONS")) {
        /* A preflight: answered here, no room involved. */
        party_response res;
        party__response_init(&res);
        party_response_set_status(&res, 204);
        party__conn_http_respond(conn, &res, 0);
        party__response_free(&res);
        return;
    }

    if (!from_room && run_hook(conn, party->def->before_request, lobby, 0))
        return;
    room = party__room_get_named(party__conn_rt(conn), party, room_name, room_id);
    if (room == NULL) {
        respond_text(conn, 503, "out of memory\n", 1);
        return;
    }
    if (conn->http->preq.props != NULL &&
        party__room_set_props(room, conn->http->preq.props) != 0) {
        respond_text(conn, 503, "out of memory\n", 1);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_REQUEST;
    ev.conn = conn;
    conn->room = room; /* until answered: the room the request belongs to */
    if (party__room_post(room, &ev) != 0) {
        conn->room = NULL;
        respond_text(conn, 503, "out of memory\n", 1);
    }
}

/* An internal request addressed to a room by id (the room segment of the
 * path is then ignored). HTTP only. */
static void route_by_id(party_conn *conn, const party__party *party) {
    party_runtime *rt = party__conn_rt(conn), *owner;
    party__http_request *req = &conn->http->req;
    party__slice id = party__http_header_get(req, PARTY__ROOM_ID_HEADER);
    char id_text[PARTY_ID_MAX];
    party__event ev;
    party_room *room;

    if (id.len != PARTY_ID_MAX - 1) {
        respond_text(conn, 400, "malformed room id\n", 0);
        return;
    }
    memcpy(id_text, id.ptr, id.len);
    id_text[id.len] = '\0';
    if (party__room_id_valid(id_text) && (owner = party__loop_of(rt, id_text)) != rt) {
        party__loop_handoff(conn, owner);
        return;
    }
    room = party__room_get_by_id(rt, party, id_text);
    if (room == NULL) {
        respond_text(conn, 400, "malformed room id, or the id belongs to another party\n", 0);
        return;
    }
    if (party__request_init(&conn->http->preq, req) != 0) {
        respond_text(conn, 503, "out of memory\n", 1);
        return;
    }
    conn->http->have_preq = 1;
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_REQUEST;
    ev.conn = conn;
    conn->room = room;
    if (party__room_post(room, &ev) != 0) {
        conn->room = NULL;
        respond_text(conn, 503, "out of memory\n", 1);
    }
}

void party__router_handle(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    party__http_request *req = &conn->http->req;
    const party__party *party;
    party__route route;
    party_lobby lobby;
    party_runtime *owner;
    char room_name[ROOM_NAME_MAX + 1], room_id[PARTY_ID_MAX];
    int n, from_room;

    if (party__ops_handle(conn))
        return;
    /* Rooms answer at the Agents clients' prefix too (/agents/<party>/<room>). */
    if (!party__route_match(rt->prefix, req->path, &route) &&
        (rt->cfg.agents_prefix == NULL ||
         !party__route_match(rt->cfg.agents_prefix, req->path, &route))) {
        if (!party__static_handle(conn))
            respond_text(conn, 404, "Not Found\n", 0);
        return;
    }
    party = party__runtime_find_party(rt, route.party.ptr, route.party.len);
    if (party == NULL) {
        respond_text(conn, 400, "unknown party\n", 0);
        return;
    }
    if (conn->internal && party__http_header_get(req, PARTY__ROOM_ID_HEADER).ptr != NULL) {
        route_by_id(conn, party);
        return;
    }
    /* Only the runtime itself may say a request comes from one of its rooms. */
    from_room = party__http_header_get(req, PARTY__FROM_ROOM_HEADER).ptr != NULL;
    if (from_room && !conn->internal) {
        respond_text(conn, 400, PARTY__FROM_ROOM_HEADER " is reserved for requests between rooms\n",
                     0);
        return;
    }
    if (route.room.len == 0) {
        respond_text(conn, 400,
                     "invalid room name: it is empty; the path is /<prefix>/<party>/<room>, "
                     "the room name 1..256 bytes of UTF-8\n",
                     0);
        return;
    }
    n = party__url_decode(route.room, room_name, sizeof(room_name), 0);
    if (n <= 0 || !party__utf8_valid(room_name, (size_t)n)) {
        respond_text(conn, 400,
                     "invalid room name: 1..256 bytes of UTF-8 after percent-decoding, no NUL\n",
                     0);
        return;
    }
    /* The room lives on one loop: its request (hooks included) is handled
     * there. */
    if (party__room_id(rt->digest, party->name, room_name, room_id) != 0) {
        respond_text(conn, 503, "out of memory\n", 1);
        return;
    }
    if ((owner = party__loop_of(rt, room_id)) != rt) {
        party__loop_handoff(conn, owner);
        return;
    }
    if (party__request_init(&conn->http->preq, req) != 0) {
        respond_text(conn, 503, "out of memory\n", 1);
        return;
    }
    conn->http->have_preq = 1;
    lobby.party = party->name;
    lobby.room = room_name;
    if (party__http_header_get(req, "Upgrade").ptr != NULL && !from_room)
        route_websocket(conn, party, room_name, room_id, &lobby);
    else
        route_request(conn, party, room_name, room_id, &lobby, from_room);
}

const char *party_lobby_party(const party_lobby *lobby) {
    return lobby->party;
}

const char *party_lobby_room(const party_lobby *lobby) {
    return lobby->room;
}
