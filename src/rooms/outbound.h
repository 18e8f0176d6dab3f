/* outbound: rooms calling the outside world over HTTP(S)
 * (party_room_fetch_url). A request is recorded with the room's records
 * (a reserved meta key) in the event's transaction, leaves through the
 * loop's HTTP client (http_client.h) once that commit is durable, and its
 * answer comes back to the room as a RESPONSE event, found again by name
 * or id. A room incarnation that finds records of requests this process
 * is not carrying answers them PARTY_EABORTED after on_start. */
#ifndef PARTY_OUTBOUND_H
#define PARTY_OUTBOUND_H

#include "party.h"

struct party_room;

typedef struct party__outbound party__outbound;
typedef struct party__outbound_req party__outbound_req;

/* Shutdown: every request held or in flight is dropped unanswered (its
 * record stays: the next incarnation answers it PARTY_EABORTED). Answers
 * already posted to rooms stay theirs. */
void party__outbound_stop_all(party_runtime *rt);
/* The loop is finishing (its rooms are freed): closes the clients and
 * frees the loop's state (rt->outbound, made at its first request). */
void party__outbound_finish(party_runtime *rt);
/* 1 while the loop has requests held or in flight. */
int party__outbound_busy(party_runtime *rt);

/* The room's batch ended: its held requests leave (committed) or are
 * dropped unsent. */
void party__outbound_release_held(struct party_room *room, int committed);
/* on_start succeeded: requests recorded by an earlier incarnation that
 * this process is not carrying are answered PARTY_EABORTED now. */
void party__outbound_room_started(struct party_room *room);
/* Delivers an answer to on_response (the room is started) and removes
 * its record. Does not free it. */
void party__outbound_deliver(struct party_room *room, party__outbound_req *req);
/* Frees an answer. NULL is a no-op. */
void party__outbound_req_free(party__outbound_req *req);

#endif
