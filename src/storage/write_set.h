/* write_set: the open batch of a room whose records live in a shared file,
 * held in memory until its shard commits it (store_sqlite.c). Per key, the
 * last put or delete of the user's and the runtime's records, kept in key
 * order so that a list merges them with the committed rows; the alarm if
 * set; per schedule id, the change made to it. Knows no SQLite. One
 * room's thread at a time. */
#ifndef PARTY_WRITE_SET_H
#define PARTY_WRITE_SET_H

#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* A pending put (deleted 0) or delete of one key. key and val live in one
 * block owned by the set, valid until the entry changes. */
typedef struct party__pending_pair {
    char *key;
    const void *val;
    size_t len;
    int deleted;
} party__pending_pair;

/* Pending pairs, sorted by key (byte order, as SQLite's BINARY). */
typedef struct party__pending_pairs {
    party__pending_pair *items;
    size_t len, cap;
} party__pending_pairs;

/* What a batch did to one schedule id. */
enum {
    PARTY__PENDING_ADD = 1, /* s is the whole schedule (a new row) */
    PARTY__PENDING_CANCEL,  /* the committed row goes */
    PARTY__PENDING_NEXT     /* the committed row takes s.next_ms */
};
typedef struct party__pending_sched {
    int op;
    party__schedule s; /* its strings and payload in block (ADD); id always */
    void *block;
} party__pending_sched;

typedef struct party__write_set {
    party__pending_pairs kv, meta;
    party__pending_sched *scheds; /* sorted by id */
    size_t n_scheds, cap_scheds;
    int alarm_set; /* alarm_at (0: deleted) and alarm_retries are pending */
    int64_t alarm_at;
    int alarm_retries;
} party__write_set;

/* 1 if the set holds nothing. Asked on every send of a running room (the
 * output gate): inline. */
static inline int party__write_set_empty(const party__write_set *ws) {
    return ws->kv.len == 0 && ws->meta.len == 0 && ws->n_scheds == 0 && !ws->alarm_set;
}
/* Drops everything the set holds (it stays usable). */
void party__write_set_clear_all(party__write_set *ws);
/* The same, free when the set never allocated (every batch of a room that
 * did not write ends here). */
static inline void party__write_set_clear(party__write_set *ws) {
    if (ws->kv.items != NULL || ws->meta.items != NULL || ws->scheds != NULL)
        party__write_set_clear_all(ws);
    ws->alarm_set = 0;
    ws->alarm_at = 0;
    ws->alarm_retries = 0;
}

/* The pending entry of key, NULL when none. */
party__pending_pair *party__pending_find(const party__pending_pairs *p, const char *key);
/* The index of the first entry whose key is not below key. */
size_t party__pending_lower_bound(const party__pending_pairs *p, const char *key);
/* Records a put of (val, len) or, deleted 1, a delete of key (copied).
 * 0 or PARTY_ENOMEM (then the set is as it was). */
int party__pending_set(party__pending_pairs *p, const char *key, const void *val, size_t len,
                       int deleted);

/* The pending change of schedule id, NULL when none. */
party__pending_sched *party__pending_sched_find(const party__write_set *ws, const char *id);
/* Records op for schedule s->id (copied; ADD copies the whole schedule,
 * NEXT takes s->next_ms), replacing any change pending for that id.
 * 0 or PARTY_ENOMEM (then the set is as it was). */
int party__pending_sched_set(party__write_set *ws, int op, const party__schedule *s);
/* Forgets the change pending for id (none: nothing happens). */
void party__pending_sched_forget(party__write_set *ws, const char *id);

#endif
