/* outbound: rooms calling the outside world over HTTP(S)
 * (party_room_fetch_url). A request is recorded with the room's records
 * (a reserved meta key) in the event's transaction, leaves through the
 * loop's HTTP client (http_client.h) once that commit is durable, and its
 * answer comes back to the room as a RESPONSE event, found again by name
 * or id. A room incarnation that finds records of requests this process
 * is not carrying answers them PARTY_EABORTED after on_start (inflight.h).
 *
 * It sits below the room actor's delivery (room_commit.c), above the
 * room table (room.c): room_commit calls it (held requests released,
 * answers delivered, on_start done) and posts its answers; it calls
 * nothing of room_commit. The state hangs off the loop's rooms
 * (party__rooms.outbound), the counters off the loop (party__loop's
 * http_stats). */
#ifndef PARTY_OUTBOUND_H
#define PARTY_OUTBOUND_H

#include "party.h"
#include "http_client.h"

struct party_room;
struct party__rooms;
struct party__event;

typedef struct party__outbound party__outbound;
typedef struct party__outbound_req party__outbound_req;

/* Shutdown: every request held or in flight is dropped unanswered (its
 * record stays: the next incarnation answers it PARTY_EABORTED). Answers
 * already posted to rooms stay theirs. */
void party__outbound_stop_all(struct party__rooms *rooms);
/* The loop is finishing (its rooms are freed): closes the clients and
 * frees the loop's state (rooms->outbound, made at its first request). */
void party__outbound_finish(struct party__rooms *rooms);

/* The room's batch ended: its held requests leave (committed; done is
 * called when each transfer ends, on a later loop turn, with the request
 * as arg) or are dropped unsent. */
void party__outbound_release_held(struct party_room *room, int committed, party__http_done_cb done);
/* A request's transfer ended (from done): the answer is taken into req.
 * Returns the room the answer is for (found again, or brought back cold)
 * and in *spare the event block to post it with (party__room_post_with);
 * NULL when it is not posted (the loop stops, or no memory: logged), req
 * freed. */
struct party_room *party__outbound_answered(party__outbound_req *req, party__http_answer *answer,
                                            struct party__event **spare);
/* Posting the answer failed (out of memory): logged, req freed. */
void party__outbound_post_failed(party__outbound_req *req);
/* Whether this loop carries outbound request id (held, in flight or its
 * answer posted): its record is not an earlier incarnation's. */
int party__outbound_carries(struct party__rooms *rooms, const char *id);
/* Delivers an answer to on_response (the room is started) and removes
 * its record. Does not free it. */
void party__outbound_deliver(struct party_room *room, party__outbound_req *req);
/* Frees an answer. NULL is a no-op. */
void party__outbound_req_free(party__outbound_req *req);

#endif
