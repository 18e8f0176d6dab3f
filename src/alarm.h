/* alarm: when rooms must wake. A runtime-wide index (one SQLite file,
 * <data>/alarms.db) records (room id, party, due time) for every room with an
 * alarm or schedule, so a restart finds due rooms without opening every room
 * file. In memory, an indexed min-heap of the same entries drives one loop
 * timer. A room's own database is the truth: an index entry whose room has
 * nothing due when it fires is dropped. */
#ifndef PARTY_ALARM_H
#define PARTY_ALARM_H

#include <stdint.h>

#include "party.h"
#include "runtime.h"

/* Opens the index (loop 0; <data>/alarms.db, created if missing, or in
 * memory without a data directory) and prepares its statements, so that a
 * data directory that cannot hold it is found before the port is bound.
 * 0 if already open. PARTY_EIO (logged with the directory and the OS
 * error), PARTY_ENOMEM; nothing is left open then. */
int party__alarm_index_open(party_runtime *rt);
/* Closes the index; nothing if it is not open. */
void party__alarm_index_close(party_runtime *rt);
/* Opens the index if not yet open and loads every entry into the heap
 * (blocking; at start-up). Entries of parties not registered are kept on
 * disk, skipped in memory, and logged. PARTY_EIO, PARTY_ENOMEM. */
int party__alarms_start(party_runtime *rt);
/* Frees the heap and, on loop 0, closes the index. */
void party__alarms_stop(party_runtime *rt);

/* Index writes, safe from any thread (a mutex guards the one index
 * connection). due_ms 0 deletes. A wake time is durable when this returns
 * (with durability full, synced); a delete is not synced: losing one in a
 * power cut costs one wake-up with nothing due, and the next synced write
 * makes it durable anyway (one WAL). */
int party__alarm_index_put(party_runtime *rt, const char *room_id, const char *party,
                           int64_t due_ms);

/* In-memory schedule (loop thread): the room wakes at due_ms (0: never). */
int party__alarm_heap_put(party_runtime *rt, const char *room_id, const char *party,
                          int64_t due_ms);
/* Number of entries in the heap. */
size_t party__alarm_heap_size(party_runtime *rt);

/* Wakes every room whose time has come (posts an alarm event to it) and
 * re-arms the timer. Called by the timer and by the virtual clock. */
void party__alarms_fire_due(party_runtime *rt);

/* A room finished loading (or failed to): alarms held back while too many
 * rooms were loading may go now. */
void party__alarms_room_loaded(party_runtime *rt);

/* Wall-clock ms since the epoch (virtual under the test harness). */
int64_t party__runtime_epoch_ms(party_runtime *rt);

#endif
