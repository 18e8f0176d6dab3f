/* router: maps /<prefix>/<party>/<room>[/rest] to a room, runs the party's
 * before_connect / before_request hook, and posts a connect or request
 * event to the room. Anything it cannot route it answers itself. */
#include "router.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "digest.h"
#include "log.h"
#include "ops.h"
#include "origin.h"
#include "request.h"
#include "static.h"
#include "url.h"
#include "utf8.h"
#include "ws.h"

#define ROOM_NAME_MAX 256
/* Room for a path with its percent-encoded unreserved bytes decoded. */
#define PATH_NORM_MAX 2048

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

const party__party *party__party_find(const party__party *parties, size_t n, const char *name,
                                      size_t len) {
    size_t i;
    for (i = 0; i < n; i++)
        if (strlen(parties[i].name) == len && strncasecmp(parties[i].name, name, len) == 0)
            return &parties[i];
    return NULL;
}

/* ---- room ids ---- */

int party__room_id(party__digest *d, const char *party, const char *name, char out[PARTY_ID_MAX]) {
    unsigned char digest[32];
    /* party NUL name: no two (party, name) pairs share the hashed bytes. */
    party__slice parts[2];

    parts[0] = party__slice_make(party, strlen(party) + 1);
    parts[1] = party__slice_make(name, strlen(name));
    if (party__digest_sha256(d, parts, 2, digest) != 0) {
        out[0] = '\0';
        return PARTY_ENOMEM;
    }
    party__hex_encode(digest, sizeof(digest), out);
    return 0;
}

int party__room_id_valid(const char *id) {
    size_t i;
    for (i = 0; i < PARTY_ID_MAX - 1; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return id[PARTY_ID_MAX - 1] == '\0';
}

void party__router_respond(party_conn *conn, int status, const char *text, int force_close) {
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
    party__conn_loop(conn)->in_callback++;
    r = hook(lobby, &party__conn_http(conn)->preq, &res);
    party__conn_loop(conn)->in_callback--;
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

/* The allow-list of browser origins that applies to a party: its own,
 * else the runtime's; NULL: every origin. */
static const char *allowed_origins(const party__loop *lp, const party__party *party) {
    return party->def->allowed_origins != NULL ? party->def->allowed_origins
                                               : lp->cfg.allowed_origins;
}

/* 1 if the request may go on as far as its Origin goes: no allow-list (the
 * common case costs one test), no Origin (not a browser: it could send any
 * Origin it likes anyway), or an Origin on the list. */
static int origin_admitted(party_conn *conn, const party__party *party) {
    const char *list = allowed_origins(party__conn_loop(conn), party);
    party__slice origin;

    if (list == NULL)
        return 1;
    origin = party__http_header_get(&party__conn_http(conn)->req, "Origin");
    return origin.ptr == NULL || party__origin_allowed(list, origin);
}

/* A WebSocket handshake: checked, its connection id found, its Origin
 * checked, before_connect run. 0 to go on. */
static int admit_websocket(party_conn *conn, party__routed *r, const party_lobby *lobby) {
    party__loop *lp = party__conn_loop(conn);
    party__http_request *req = &party__conn_http(conn)->req;
    const char *why = NULL;
    int status = party__ws_handshake_check(req, &why);

    if (status != 0) {
        char body[160];
        lp->http_errors++;
        party__log_info(lp, "http: %d bad WebSocket handshake: %s", status, why);
        snprintf(body, sizeof(body), "bad WebSocket handshake: %s\n", why);
        party__conn_http_fail(conn, status, body);
        return -1;
    }
    if (conn_id_from_request(req, r->conn_id, sizeof(r->conn_id)) != 0) {
        party__conn_http_fail(conn, 400, "invalid _pk: a connection id is 1..256 bytes of UTF-8\n");
        return -1;
    }
    if (!origin_admitted(conn, r->party)) {
        lp->origin_refused++;
        party__log_info(lp, "http: 403 WebSocket handshake from an origin not allowed "
                            "(--allowed-origins)");
        party__conn_http_fail(conn, 403,
                              "origin not allowed: the Origin of this WebSocket handshake is not "
                              "in partyd's --allowed-origins (or the party's allowed-origins)\n");
        return -1;
    }
    if (run_hook(conn, r->party->def->before_connect, lobby, 1))
        return -1;
    r->upgrade = 1;
    return 0;
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
static const char *const *party_cors(const party__loop *lp, const party__party *party) {
    int on = party->def->cors == PARTY_CORS_ON ||
             (party->def->cors == PARTY_CORS_DEFAULT && lp->cfg.cors);
    if (!on)
        return NULL;
    if (party->def->cors_headers != NULL)
        return party->def->cors_headers;
    return lp->cfg.cors_headers != NULL ? lp->cfg.cors_headers : default_cors;
}

/* An HTTP request: CORS (a preflight is answered here), before_request.
 * from_room: a room-to-room request (party_room_fetch): hooks and CORS are
 * for clients outside the runtime, so they are skipped. 0 to go on. */
static int admit_request(party_conn *conn, party__routed *r, const party_lobby *lobby) {
    party__loop *lp = party__conn_loop(conn);
    party__http_session *s = party__conn_http(conn);
    party__slice method = s->req.method;
    int preflight;

    s->cors = r->from_room ? NULL : party_cors(lp, r->party);
    preflight = s->cors != NULL && method.len == 7 && memcmp(method.ptr, "OPTIONS", 7) == 0;
    if (s->cors != NULL && allowed_origins(lp, r->party) != NULL &&
        party__http_header_get(&s->req, "Origin").ptr != NULL) {
        /* With an allow-list, CORS answers name the request's origin when
         * it is allowed, and a disallowed one gets no CORS headers (its
         * preflight a 403): "*" would let every page read the answer. */
        if (!origin_admitted(conn, r->party)) {
            s->cors = NULL;
            if (preflight) {
                lp->origin_refused++;
                party__router_respond(conn, 403,
                                      "origin not allowed: the Origin of this CORS preflight is "
                                      "not in partyd's --allowed-origins (or the party's "
                                      "allowed-origins)\n",
                                      0);
                return -1;
            }
        } else {
            s->cors_reflect = 1;
        }
    }
    if (preflight) {
        /* A preflight: answered here, no room involved. */
        party_response res;
        party__response_init(&res);
        party_response_set_status(&res, 204);
        party__conn_http_respond(conn, &res, 0);
        party__response_free(&res);
        return -1;
    }
    if (!r->from_room && run_hook(conn, r->party->def->before_request, lobby, 0))
        return -1;
    return 0;
}

int party__router_admit(party_conn *conn, party__routed *r) {
    party__http_request *req = &party__conn_http(conn)->req;
    party_lobby lobby;

    r->upgrade = 0;
    if (party__request_init(&party__conn_http(conn)->preq, req) != 0) {
        party__router_respond(conn, 503, "out of memory\n", 1);
        return -1;
    }
    party__conn_http(conn)->have_preq = 1;
    party__conn_http(conn)->preq.remote = party__conn_http(conn)->remote;
    if (r->name == NULL)
        return 0; /* by id: an internal request, no hooks */
    lobby.party = r->party->name;
    lobby.room = r->name;
    /* RFC 9110 7.8: an Upgrade to anything but websocket, and any Upgrade
     * in an HTTP/1.0 request, is ignored; the request is served as it is. */
    if (req->upgrade_websocket && !r->from_room)
        return admit_websocket(conn, r, &lobby);
    return admit_request(conn, r, &lobby);
}

/* An internal request addressed to a room by id (the room segment of the
 * path is then ignored). HTTP only. */
static void route_by_id(party__router *router, party_conn *conn, const party__party *party) {
    party__http_request *req = &party__conn_http(conn)->req;
    party__slice id = party__http_header_get(req, PARTY__ROOM_ID_HEADER);
    char id_text[PARTY_ID_MAX];
    party__routed r;

    if (id.len != PARTY_ID_MAX - 1) {
        party__router_respond(conn, 400, "malformed room id\n", 0);
        return;
    }
    memcpy(id_text, id.ptr, id.len);
    id_text[id.len] = '\0';
    memset(&r, 0, sizeof(r));
    r.party = party;
    r.id = id_text;
    router->up->route(conn, &r);
}

/* Matches the path against the prefixes: 1 with route set, else 0. */
static int route_any(const party__router *router, party__slice path, party__route *route) {
    /* Rooms answer at the Agents clients' prefix too (/agents/<party>/<room>). */
    return party__route_match(router->prefix, path, route) ||
           (router->agents_prefix != NULL &&
            party__route_match(router->agents_prefix, path, route));
}

/* OPTIONS * asks about the server as a whole (RFC 9112 3.2.4). */
static void respond_server_options(party_conn *conn) {
    party_response res;
    party__response_init(&res);
    party_response_set_status(&res, 204);
    party_response_set_header(&res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    party__conn_http_respond(conn, &res, 0);
    party__response_free(&res);
}

/* 1 if the request carries this node's cluster secret (compared in time
 * independent of where it differs): another node's room sent it. */
static int from_cluster(const party__router *router, const party__http_request *req) {
    party__slice got = party__http_header_get(req, PARTY__CLUSTER_SECRET_HEADER);
    size_t len, i;
    unsigned char diff = 0;
    if (router->cluster_secret == NULL || got.ptr == NULL)
        return 0;
    len = strlen(router->cluster_secret);
    if (got.len != len)
        return 0;
    for (i = 0; i < len; i++)
        diff |= (unsigned char)(got.ptr[i] ^ router->cluster_secret[i]);
    return diff == 0;
}

void party__router_handle(party__router *router, party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party__http_request *req = &party__conn_http(conn)->req;
    const party__party *party;
    party__route route;
    party__routed r;
    char room_name[ROOM_NAME_MAX + 1], room_id[PARTY_ID_MAX], party_name[PATH_NORM_MAX];
    int n, from_room, trusted;

    if (req->path.len == 1 && req->path.ptr[0] == '*') {
        respond_server_options(conn);
        return;
    }
    if (req->path.len == 0) /* an absolute-form target without a path */
        req->path = party__slice_make("/", 1);
    if (party__ops_handle(conn, &router->up->ops))
        return;
    if (!route_any(router, req->path, &route)) {
        /* RFC 3986 6.2.2: /p%61rties/chat/r is /parties/chat/r. Decoding
         * the percent-encoded unreserved bytes is done only when a '%'
         * keeps the path from matching, so the common path pays nothing. */
        party__slice norm;
        if (memchr(req->path.ptr, '%', req->path.len) == NULL ||
            party__url_decode_unreserved(req->path, party_name, sizeof(party_name), &norm) != 0 ||
            !route_any(router, norm, &route)) {
            if (!party__static_handle(conn))
                party__router_respond(conn, 404, "Not Found\n", 0);
            return;
        }
    } else if (memchr(route.party.ptr, '%', route.party.len) != NULL) {
        /* the party segment alone: /parties/ch%61t/r is /parties/chat/r */
        party__slice norm;
        if (party__url_decode_unreserved(route.party, party_name, sizeof(party_name), &norm) == 0)
            route.party = norm;
    }
    party = party__party_find(router->parties, router->n_parties, route.party.ptr, route.party.len);
    if (party == NULL) {
        party__router_respond(conn, 400, "unknown party\n", 0);
        return;
    }
    /* The runtime's own requests, and another node's with the cluster
     * secret, are room-to-room requests. */
    trusted = conn->internal || from_cluster(router, req);
    if (trusted && party__http_header_get(req, PARTY__ROOM_ID_HEADER).ptr != NULL) {
        route_by_id(router, conn, party);
        return;
    }
    /* Only the runtime itself (or a node of its cluster) may say a request
     * comes from one of its rooms. */
    from_room = party__http_header_get(req, PARTY__FROM_ROOM_HEADER).ptr != NULL;
    if (from_room && !trusted) {
        party__router_respond(
            conn, 400, PARTY__FROM_ROOM_HEADER " is reserved for requests between rooms\n", 0);
        return;
    }
    if (route.room.len == 0) {
        party__router_respond(
            conn, 400,
            "invalid room name: it is empty; the path is /<prefix>/<party>/<room>, "
            "the room name 1..256 bytes of UTF-8\n",
            0);
        return;
    }
    n = party__url_decode(route.room, room_name, sizeof(room_name), 0);
    if (n <= 0 || !party__utf8_valid(room_name, (size_t)n)) {
        party__router_respond(
            conn, 400, "invalid room name: 1..256 bytes of UTF-8 after percent-decoding, no NUL\n",
            0);
        return;
    }
    /* A dot-segment (".", "..", or "%2e%2e", its equivalent) stands for
     * "this" or "the parent" path (RFC 3986 5.2.4), not a name: clients
     * remove them before sending, and another server on the path may. */
    if (strcmp(room_name, ".") == 0 || strcmp(room_name, "..") == 0) {
        party__router_respond(conn, 400,
                              "invalid room name: \".\" and \"..\" are dot-segments of a path, "
                              "not names\n",
                              0);
        return;
    }
    if (party__room_id(lp->digest, party->name, room_name, room_id) != 0) {
        party__router_respond(conn, 503, "out of memory\n", 1);
        return;
    }
    /* The room lives on one loop: its request (hooks included) is handled
     * there; the runtime knows which. */
    memset(&r, 0, sizeof(r));
    r.party = party;
    r.name = room_name;
    r.id = room_id;
    r.from_room = from_room;
    router->up->route(conn, &r);
}

const char *party_lobby_party(const party_lobby *lobby) {
    return lobby->party;
}

const char *party_lobby_room(const party_lobby *lobby) {
    return lobby->room;
}
