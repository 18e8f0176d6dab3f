/* router: turns a parsed request into work. It matches the prefix, finds the
 * party (case-insensitively), decodes the room name, runs the party's hooks,
 * and hands the request to the room — or answers it (400, 404, 426, 503). */
#ifndef PARTY_ROUTER_H
#define PARTY_ROUTER_H

#include "party.h"
#include "buf.h"
#include "conn.h"
#include "digest.h"
#include "ops.h"

struct party_conn;

/* On an internal connection, this header addresses a room by id. */
#define PARTY__ROOM_ID_HEADER "X-Partyd-Room-Id"
/* On an internal connection: the request comes from this room (its id).
 * The router skips hooks and CORS for it and refuses it from the network. */
#define PARTY__FROM_ROOM_HEADER "X-Partyd-From-Room"
/* The cluster secret on a room-to-room request from another node. */
#define PARTY__CLUSTER_SECRET_HEADER "X-Partyd-Cluster-Secret"

/* A registered party: the runtime's table of them is shared by every
 * loop, read-only once the runtime runs. */
typedef struct party__party {
    const party_def *def;
    char *name;         /* as registered (the URL name) */
    party_def *own_def; /* def, when it is the runtime's copy of an older ABI's (freed with it) */
    int sync;           /* def has synced state or RPC: its messages may be Agents frames */
    /* Its limits, read once at registration (its own, else the runtime's) */
    size_t max_room_conns;
    party__meter meter; /* WebSocket messages and bytes per second */
} party__party;

/* The party of parties[0..n) with this URL name, case-insensitively;
 * NULL if none. */
const party__party *party__party_find(const party__party *parties, size_t n, const char *name,
                                      size_t len);

/* The result of matching a path against /<prefix>/<party>/<room>[/rest]. */
typedef struct party__route {
    party__slice party; /* raw segment */
    party__slice room;  /* raw (still percent-encoded) segment */
} party__route;

/* 1 if path is under the prefix with a party segment followed by '/' (route
 * filled; the room segment may be empty), 0 otherwise. prefix has no slashes at its ends, may
 * contain '/'. */
int party__route_match(const char *prefix, party__slice path, party__route *route);

/* Computes the room id for (party, name) into out. 0, or PARTY_ENOMEM when
 * hashing failed (OpenSSL allocates on each hash); out is then "". */
int party__room_id(party__digest *d, const char *party, const char *name, char out[PARTY_ID_MAX]);
/* 1 if id is a well-formed room id (64 lowercase hex digits). */
int party__room_id_valid(const char *id);

/* A request routed to a room: its party and room id, and what routing
 * found out about it on the room's loop (party__router_admit). */
typedef struct party__routed {
    const party__party *party;
    const char *name; /* the room's name; NULL: addressed by id (internal requests) */
    const char *id;   /* the room id */
    int from_room;    /* a room-to-room request (party_room_fetch) */
    /* Set by party__router_admit: */
    int upgrade;                         /* a WebSocket handshake */
    char conn_id[PARTY_MAX_TAG_LEN + 1]; /* the connection's id (upgrade) */
} party__routed;

/* What the router hands up, installed by the runtime. */
typedef struct party__router_upcalls {
    /* A request for a room: the runtime hands the connection to the loop
     * that owns the room (where it is routed again), or, on that loop,
     * calls party__router_admit and delivers the request to the room. */
    void (*route)(struct party_conn *conn, party__routed *routed);
    party__ops_upcalls ops; /* the operational endpoints' (ops.h) */
} party__router_upcalls;

/* One loop's router: what it routes against (the runtime's, shared by
 * every loop) and where routed requests go. */
typedef struct party__router {
    const party__party *parties;
    size_t n_parties;
    const char *prefix;        /* without slashes at its ends */
    const char *agents_prefix; /* the Agents clients' second prefix, the same way; NULL: none */
    /* A request from another node's room carries it (X-Partyd-Cluster-
     * Secret): then it is trusted as the runtime's own; NULL: none is. */
    const char *cluster_secret;
    const party__router_upcalls *up;
} party__router;

/* Handles the request the connection just parsed. */
void party__router_handle(party__router *router, struct party_conn *conn);

/* On the room's loop, before the request reaches the room: parses what
 * the party sees of it, checks a WebSocket handshake, and runs the
 * party's before_connect or before_request hook (not for requests from
 * rooms or by id). 0: deliver it (routed->upgrade and ->conn_id set);
 * otherwise it was answered. */
int party__router_admit(struct party_conn *conn, party__routed *routed);

/* Answers the connection's request with a text body (force_close: and
 * closes it). */
void party__router_respond(struct party_conn *conn, int status, const char *text, int force_close);

#endif
