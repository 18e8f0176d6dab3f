/* rpc: a room's RPC calls in the Agents client's frames ({"type":"rpc",
 * "id","method","args"} and their answers), and the dispatch of every
 * frame a client of the protocol sends: a state proposal goes down to
 * sync.c, a call is handed to the party's method. Above sync.h: rpc.c
 * uses sync's record and frame helpers, sync.c calls nothing here. */
#ifndef PARTY_RPC_H
#define PARTY_RPC_H

#include <stddef.h>

#include "sync.h"

/* The most calls a room keeps open at once; more are answered with an
 * error at once. */
#define PARTY__MAX_OPEN_CALLS 4096

/* A message for a started room: 1 if it was a frame of the protocol (a
 * state proposal or a call, handled here), 0 if it goes to on_message. */
int party__rpc_message(party_room *room, party_conn *conn, const void *data, size_t len,
                       int binary);
/* conn closed: the calls it made stop holding it (their answers will be
 * dropped). */
void party__rpc_forget_conn(party_room *room, party_conn *conn);
/* Frees every call handle of the room (it is being freed). */
void party__rpc_free_all(party_room *room);
/* Shutdown: every open call of every room of rooms is answered with an
 * error before the connections close. */
void party__rpc_stop_all(party__rooms *rooms);

#endif
