/* alarm: when rooms must wake. An indexed min-heap of (room id, tag, due
 * time) entries, one per room, that drives one loop timer. When an entry
 * comes due it goes to the wake callback its user installed (the room
 * layer, which knows rooms) and stays in the heap parked: never due, and
 * kept so that the room's next wake time can be put without memory. An
 * entry can be reserved the same way before its time is known. The
 * durable index the entries come from is the storage backend's
 * (storage.h), read and written by that user, not here. One heap per
 * event loop; its thread only. */
#ifndef PARTY_ALARM_H
#define PARTY_ALARM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "party.h"

typedef struct party__alarms party__alarms;

/* An entry came due and was parked. 0: the user took it over.
 * PARTY_EBUSY: not now; the entry goes back and firing pauses until
 * party__alarms_fire_due is called again (or for 100 ms). Any other
 * result: the user dealt with it (put it back, or dropped it). The
 * callback may put entries, this one's room included. */
typedef int (*party__alarm_wake_cb)(party__alarms *alarms, const char *room_id, uint32_t tag);
/* Wall-clock ms since the epoch: the user's clock (virtual in tests). */
typedef int64_t (*party__alarm_clock_cb)(party__alarms *alarms);

struct party__alarms {
    void *data; /* the user's */
    party__alarm_wake_cb wake_cb;
    party__alarm_clock_cb clock_cb;
    uv_timer_t timer;
    struct party__alarm_node **heap; /* heap[0] is due first */
    size_t len, cap;
    size_t parked;                      /* entries kept without a wake time */
    struct party__alarm_node **buckets; /* by room id */
    size_t buckets_cap;
    int started;
    int manual; /* no timer: the user calls party__alarms_fire_due */
    int paused; /* the wake callback said PARTY_EBUSY */
};

/* Starts an empty heap on loop. manual: no timer (a virtual clock's user
 * fires due entries itself). 0, or a libuv error's PARTY_EIO. */
int party__alarms_init(party__alarms *alarms, uv_loop_t *loop, int manual,
                       party__alarm_wake_cb wake_cb, party__alarm_clock_cb clock_cb, void *data);
/* Frees the entries and closes the timer (the struct may go once the
 * loop has run the close). A heap never started is a no-op. */
void party__alarms_close(party__alarms *alarms);

/* The room wakes at due_ms (0: never: its entry goes). tag: the user's
 * (the room layer: its party's index), kept with a new entry. 0 or
 * PARTY_ENOMEM; never PARTY_ENOMEM for a room that has an entry (parked
 * or reserved included). */
int party__alarms_put(party__alarms *alarms, const char *room_id, uint32_t tag, int64_t due_ms);
/* Makes sure the room has an entry (a new one is parked: never due), so
 * that no later party__alarms_put for it needs memory. For a wake time
 * known only later (when the room's batch commits), reserved where an
 * error can still be returned. 0 or PARTY_ENOMEM. */
int party__alarms_reserve(party__alarms *alarms, const char *room_id, uint32_t tag);
/* Entries in the heap with a wake time (parked ones are not counted). */
size_t party__alarms_size(const party__alarms *alarms);
/* The earliest due time, 0 when no entry has one. */
int64_t party__alarms_next(const party__alarms *alarms);

/* Hands every entry whose time has come to the wake callback, then
 * re-arms the timer. Called by the timer, and by the user when time moves
 * (virtual clock) or a paused wake may go. */
void party__alarms_fire_due(party__alarms *alarms);

#endif
