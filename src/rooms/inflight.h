/* inflight: the records of a room's requests in flight (DESIGN.md D4),
 * shared by room-to-room requests (fetch.c) and outbound HTTP requests
 * (outbound.c). A request is recorded under a reserved meta key of its
 * room, in the event's transaction that made it, and forgotten in the
 * transaction of the event that delivers its answer; what a room
 * incarnation finds and this process does not carry was left by an
 * earlier one (restart, upgrade, another node) and is answered
 * PARTY_EABORTED.
 *
 * Keys: "fetch/<id>" for an outbound request, "fetch/room/<id>" for a
 * room-to-room one (id: 64 hex digits); the value is the request's tag.
 * One prefix, so a room start lists both kinds in one read. It sits
 * below fetch.c, outbound.c and room_commit.c and calls none of them: the
 * caller says which requests this process still carries. */
#ifndef PARTY_INFLIGHT_H
#define PARTY_INFLIGHT_H

#include "party.h"

struct party_room;
struct party__rooms;

typedef enum party__inflight_kind {
    PARTY__INFLIGHT_OUTBOUND, /* party_room_fetch_url */
    PARTY__INFLIGHT_ROOM      /* party_room_fetch */
} party__inflight_kind;

/* Records request id (tag: its tag, never NULL) in the room's current
 * transaction: the write closes the room's output gate, so the request
 * leaves after the commit. 0 or the store's PARTY_E* code. */
int party__inflight_record(struct party_room *room, party__inflight_kind kind, const char *id,
                           const char *tag);
/* Removes the record of request id in the room's current transaction
 * (its answer is being delivered). */
void party__inflight_forget(struct party_room *room, party__inflight_kind kind, const char *id);

/* Whether this process still carries request id of that kind (in flight,
 * or its answer posted): its record is then not an earlier incarnation's. */
typedef int (*party__inflight_carried_fn)(struct party__rooms *rooms, party__inflight_kind kind,
                                          const char *id);

/* The room was started (on_start succeeded): every record that carried
 * does not claim is removed and answered on_response(PARTY_EABORTED,
 * status 0, a text/plain body saying why), in the room's current event,
 * so before its other events. */
void party__inflight_room_started(struct party_room *room, party__inflight_carried_fn carried);

#endif
