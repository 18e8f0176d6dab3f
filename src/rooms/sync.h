/* sync: a room's synced JSON state, spoken in the wire frames of
 * Cloudflare's Agents client (cf_agent_identity, cf_agent_state,
 * cf_agent_state_error). sync.c owns the state (stored in the room's
 * runtime records under the key "state"), the frames sent on connect, a
 * client's state proposals, and the helpers that make and send the
 * protocol's frames; rpc.c (rpc.h), above it, owns the call handles and
 * dispatches a client's frames. The room actor calls the hooks below at a
 * few points of its life; sync.c calls nothing of the actor but the
 * output gate (room.c). */
#ifndef PARTY_SYNC_H
#define PARTY_SYNC_H

#include <stddef.h>

#include "room.h"

/* A room's sync record, allocated on first use. */
typedef struct party__sync {
    char *state;              /* the state's JSON text (NUL-terminated), when loaded and set */
    size_t state_len;         /* its length */
    int state_loaded;         /* state reflects the store (NULL: there is none) */
    int in_change;            /* inside on_state_change */
    struct party_call *calls; /* every call not yet answered (ended ones too; rpc.c); those a
                                 client still waits for are counted in room->open_calls */
} party__sync;

/* 1 if the rooms of def speak the Agents protocol. */
int party__sync_enabled(const party_def *def);

/* connect: the identity frame, then the state when there is one. Called
 * after the connection joined its room, before on_connect. */
void party__sync_connect(party_room *room, party_conn *conn);
/* A client's {"type":"cf_agent_state","state":...}: state is the parsed
 * value (a cJSON item); refused with a cf_agent_state_error frame, or
 * stored, broadcast and handed to on_state_change. */
void party__sync_propose(party_room *room, party_conn *conn, const void *state);
/* The room's state leaves memory (eviction, hibernation, a failed commit):
 * read again from the store when next needed. */
void party__sync_drop(party_room *room);
/* The room is freed: its record goes (its call handles went first:
 * party__rpc_free_all). */
void party__sync_free(party_room *room);

/* ---- what sync.c and rpc.c share ---- */

/* The room's sync record, allocated if missing; NULL on OOM. */
party__sync *party__sync_get(party_room *room);
/* 1 if text (len bytes) is one JSON value in UTF-8, white space around it
 * allowed. */
int party__json_valid(const char *text, size_t len);
/* head + raw (raw_len bytes) + tail, as one new string (party__free it),
 * *out_len its length; NULL on OOM. */
char *party__sync_frame(const char *head, const char *raw, size_t raw_len, const char *tail,
                        size_t *out_len);
/* Sends text (a JSON frame) to conn through the output gate; 0 or
 * PARTY_ECLOSED / PARTY_ENOMEM / PARTY_ELIMIT. text NULL: its making ran
 * out of memory. A frame that cannot be sent for want of memory closes
 * the connection with 1011, so the client never waits for it in vain. */
int party__sync_send(party_conn *conn, const char *text, size_t len);
/* Closes conn with 1011 "out of memory" (through the gate): what it was
 * to be told could not be made. */
void party__sync_fail(party_conn *conn);

#endif
