/* history: the split-brain and lost-write checker of the cluster tests.
 * A test records every acknowledged write to a counter room — the value
 * the room answered and the node and epoch that answered it (from the
 * X-Partyd-Node and X-Partyd-Epoch headers of the 101 or the HTTP answer)
 * — and, at the end, the value each room reads back. history_check then
 * verifies that no room was served by two nodes at once and that no
 * acknowledged write was lost:
 *   - an epoch of a room belongs to one node;
 *   - the epochs of a room own disjoint, ordered ranges of its values:
 *     every value acknowledged under an older epoch is smaller than every
 *     value acknowledged under a newer one (two nodes writing at once
 *     interleave, or answer the same value);
 *   - no value of a room is acknowledged twice (a lost write is counted
 *     again by the next owner);
 *   - the value read back is at least the largest value acknowledged.
 * Values are the counter's: each write adds one, so a value names the
 * write. */
#ifndef PARTY_TEST_HISTORY_H
#define PARTY_TEST_HISTORY_H

#include <stddef.h>

typedef struct history history;

/* An empty history; NULL for want of memory. */
history *history_new(void);
/* Frees it. NULL is a no-op. */
void history_free(history *h);
/* One acknowledged write: room answered value, from node at epoch. Every
 * string is copied. 0, or -1 for want of memory. */
int history_ack(history *h, const char *room, const char *node, long long epoch, long long value);
/* The value read back from room at the end. 0, or -1. */
int history_final(history *h, const char *room, long long value);
/* Acknowledged writes recorded, and rooms. */
size_t history_acks(const history *h);
size_t history_rooms(const history *h);
/* Distinct (room, epoch) pairs seen: more than history_rooms means rooms
 * moved. */
size_t history_epochs(const history *h);
/* 0 if the history keeps every rule above; else -1 with the first broken
 * rule, naming the room, nodes, epochs and values, in why. */
int history_check(const history *h, char *why, size_t why_len);

#endif
