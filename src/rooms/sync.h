/* sync: a room's synced JSON state and its RPC calls, spoken in the wire
 * frames of Cloudflare's Agents client (cf_agent_identity, cf_agent_state,
 * cf_agent_state_error, rpc). sync.c owns the state (stored in the room's
 * runtime records under the key "state"), the frames sent on connect and
 * the dispatch of a client's frames; rpc.c owns the call handles. The
 * room actor calls the hooks below at a few points of its life. */
#ifndef PARTY_SYNC_H
#define PARTY_SYNC_H

#include <stddef.h>

#include "room.h"

/* The most calls a room keeps open at once; more are answered with an
 * error at once. */
#define PARTY__MAX_OPEN_CALLS 4096

/* A room's sync record, allocated on first use. */
typedef struct party__sync {
    char *state;              /* the state's JSON text (NUL-terminated), when loaded and set */
    size_t state_len;         /* its length */
    int state_loaded;         /* state reflects the store (NULL: there is none) */
    int in_change;            /* inside on_state_change */
    struct party_call *calls; /* every call not yet answered (ended ones too) */
    size_t open_calls;        /* of them, those a client still waits for */
} party__sync;

/* 1 if the rooms of def speak the Agents protocol. */
int party__sync_enabled(const party_def *def);

/* connect: the identity frame, then the state when there is one. Called
 * after the connection joined its room, before on_connect. */
void party__sync_connect(party_room *room, party_conn *conn);
/* A message for a started room: 1 if it was a state or RPC frame (handled
 * here), 0 if it goes to on_message. */
int party__sync_message(party_room *room, party_conn *conn, const void *data, size_t len,
                        int binary);
/* 1 while the room has calls a client waits for (it stays in memory). */
int party__sync_busy(const party_room *room);
/* The room's state leaves memory (eviction, hibernation, a failed commit):
 * read again from the store when next needed. */
void party__sync_drop(party_room *room);
/* The room is freed: its record and every call handle go. */
void party__sync_free(party_room *room);
/* Shutdown: every open call of every room of rt is answered with an error
 * before the connections close. */
void party__sync_stop_all(party_runtime *rt);

/* ---- rpc.c ---- */

/* Answers an rpc frame (already parsed: obj is a cJSON object whose type is
 * "rpc"). */
void party__rpc_dispatch(party_room *room, party_conn *conn, const void *obj);
/* Ends every open call of the room with an error saying why (shutdown). */
void party__rpc_end_all(party_room *room, const char *why);
/* conn closed: the calls it made stop holding it (their answers will be
 * dropped). */
void party__rpc_forget_conn(party_room *room, party_conn *conn);
/* Frees every call handle of the room (it is being freed). */
void party__rpc_free_all(party_room *room);
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
