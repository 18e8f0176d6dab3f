/* router: turns a parsed request into work. It matches the prefix, finds the
 * party (case-insensitively), decodes the room name, runs the party's hooks,
 * and hands the request to the room — or answers it (400, 404, 426, 503). */
#ifndef PARTY_ROUTER_H
#define PARTY_ROUTER_H

#include "party.h"
#include "buf.h"

struct party_conn;

/* On an internal connection, this header addresses a room by id. */
#define PARTY__ROOM_ID_HEADER "X-Partyd-Room-Id"

/* The result of matching a path against /<prefix>/<party>/<room>[/rest]. */
typedef struct party__route {
    party__slice party; /* raw segment */
    party__slice room;  /* raw (still percent-encoded) segment */
} party__route;

/* 1 if path is under the prefix with a party segment followed by '/' (route
 * filled; the room segment may be empty), 0 otherwise. prefix has no slashes at its ends, may
 * contain '/'. */
int party__route_match(const char *prefix, party__slice path, party__route *route);

/* Handles the request the connection just parsed. */
void party__router_handle(struct party_conn *conn);

#endif
