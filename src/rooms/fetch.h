/* fetch: room-to-room requests (party_room_fetch). A request travels as
 * HTTP over a socketpair whose far end the runtime serves as an internal
 * connection, so it takes the path of every request (router, target room,
 * its output gate); the answer comes back to the caller as a RESPONSE
 * event. A room another cluster node owns is asked over TCP, at the
 * address the storage backend has for that node, with the cluster
 * secret (rooms.h, cluster_secret). */
#ifndef PARTY_FETCH_H
#define PARTY_FETCH_H

#include "party.h"
#include "rooms.h"

typedef struct party__fetch party__fetch;

/* The held requests of a room whose output gate closed: started when the
 * commit is durable (committed), dropped when it failed (or the room is
 * freed). */
void party__fetch_release_held(party_room *room, int committed);

/* Delivers a finished request's answer to on_response (the room is
 * started). Does not free it. */
void party__fetch_deliver(party_room *room, party__fetch *fetch);
/* Frees a finished request. NULL is a no-op. */
void party__fetch_free(party__fetch *fetch);

/* Shutdown: every request in flight is abandoned (no answer). */
void party__fetch_stop_all(party__rooms *rooms);

#endif
