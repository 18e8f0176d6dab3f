/* room_internal: what the files of the room actor share among themselves
 * and nothing else uses — room.c (table, lifecycle, delivery) and
 * room_alarm.c (wake-ups). The rest of partyd uses room.h. */
#ifndef PARTY_ROOM_INTERNAL_H
#define PARTY_ROOM_INTERNAL_H

#include "room.h"

/* ---- room.c: lifecycle and delivery ---- */

/* Runs on_start once per incarnation, before the room's first event; a
 * room addressed by name persists its name first, in the batch's
 * transaction. 0 if the room is started; -1 if on_start (or the name
 * write) failed: logged, the status is back to ZERO, the next event
 * retries. Call only while the room is running an event with its store. */
int party__room_ensure_started(party_room *room);

/* ---- room_alarm.c: wake-ups ---- */

/* Delivers an ALARM event: runs the due schedules, then the due alarm
 * (retried with backoff if on_alarm fails). A stale wake-up does nothing. */
void party__room_handle_alarm(party_room *room);
/* After a commit (or a batch with nothing to commit): files the room's
 * wake time in the runtime's alarm heap and index if it changed. */
void party__room_sync_wake(party_room *room);
/* After a rollback: rereads the alarm and schedules from the store and
 * files the wake time again. The store must be open. */
void party__room_reload_wake(party_room *room);

#endif
