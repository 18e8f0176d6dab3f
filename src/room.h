/* room: the actor. One room runs one event at a time: connect, message,
 * close, error and HTTP request events are delivered in arrival order, with
 * on_start run once before the first of them. Rooms live in the runtime's
 * table, keyed by their id. */
#ifndef PARTY_ROOM_H
#define PARTY_ROOM_H

#include <stdint.h>

#include "party.h"
#include "buf.h"
#include "runtime.h"

typedef enum party__room_status {
    PARTY__ROOM_ZERO, /* on_start has not run (or failed) in this incarnation */
    PARTY__ROOM_STARTING,
    PARTY__ROOM_STARTED,
} party__room_status;

struct party_room {
    party_runtime *rt;
    const party__party *party;
    char *name; /* NULL until named */
    char id[PARTY_ID_MAX];
    party__room_status status;
    void *state;
    char *props;

    struct party_conn *conns_head, *conns_tail; /* open (accepted) connections */
    size_t n_conns;
    size_t n_pending; /* connections accepted by the router, not yet connected */

    struct party__event *queue_head, *queue_tail;
    int running; /* delivering an event now */
    int queued;  /* on the runtime's ready list */
    struct party_room *ready_next;
    struct party_room *hash_next; /* chain in the runtime's room table */
};

typedef enum party__event_type {
    PARTY__EV_CONNECT,
    PARTY__EV_MESSAGE,
    PARTY__EV_CLOSE,
    PARTY__EV_ERROR,
    PARTY__EV_REQUEST,
} party__event_type;

/* One unit of work for a room. Posted events are copied when they have to
 * wait, so the poster's event and data may live on its stack. */
typedef struct party__event {
    party__event_type type;
    struct party_conn *conn; /* the connection it concerns (holds a reference) */
    party__slice data;       /* MESSAGE payload; CLOSE reason */
    int binary;              /* MESSAGE */
    int code;                /* CLOSE code */
    int was_clean;           /* CLOSE */
    const char *what;        /* ERROR: static description */
    struct party__event *next;
    char inline_data[]; /* the copied data of a queued event */
} party__event;

/* Computes the room id for (party, name) into out. */
void party__room_id(const char *party, const char *name, char out[PARTY_ID_MAX]);

/* The room for (party, name), created if absent. NULL on OOM. */
party_room *party__room_get(party_runtime *rt, const party__party *party, const char *name);

/* Delivers ev to the room now if it is idle, else queues a copy. Returns 0 or
 * PARTY_ENOMEM (the event was not taken). */
int party__room_post(party_room *room, const party__event *ev);

/* Runs the queued events of every ready room. */
void party__room_drain_ready(party_runtime *rt);

/* Frees a room (calls free_state). Its connections must be gone. */
void party__room_free(party_room *room);

/* Unlinks an open connection from its room's list. */
void party__room_unlink_conn(party_room *room, struct party_conn *conn);

#endif
