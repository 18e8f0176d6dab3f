/* addr_limits: what one client address may take of the process — open
 * connections and new connections per second — counted in one table
 * shared by every event loop (a mutex: it is touched on a connection's
 * first request and at its close, never per message). The table is
 * bounded: past its size the address seen least recently is forgotten
 * (IPv6 addresses are counted per /64, the block one subscriber gets).
 * The per-connection message meter (party__meter) is conn.c's. */
#ifndef PARTY_ADDR_LIMITS_H
#define PARTY_ADDR_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

typedef struct party__addr_limits party__addr_limits;

/* What party__addr_limits_take decided. */
enum {
    PARTY__LIMIT_OK = 0,
    PARTY__LIMIT_CONNS = 1, /* the address has max_open connections open */
    PARTY__LIMIT_RATE = 2,  /* the address opened rate per second already */
};

/* A table for at most max_entries addresses (at least 1). NULL on OOM. */
party__addr_limits *party__addr_limits_new(size_t max_entries);
void party__addr_limits_free(party__addr_limits *lim);

/* A new connection from addr at now_ms: within max_open open ones and
 * rate new ones per second (a burst of one second's worth, at least 1;
 * rate <= 0: no rate limit), it is counted (give it back with
 * party__addr_limits_give) and PARTY__LIMIT_OK is returned; else nothing
 * is counted, the limit is returned and *retry_after_s says when to try
 * again (seconds, at least 1). An address not known (family NONE) always
 * passes uncounted: PARTY__LIMIT_OK with *counted 0. PARTY_ENOMEM: not
 * counted either (the connection is served). */
int party__addr_limits_take(party__addr_limits *lim, const party__addr *addr, uint64_t now_ms,
                            size_t max_open, double rate, unsigned *retry_after_s, int *counted);
/* A connection counted for addr closed. An address forgotten meanwhile
 * (the table was full) is not found: nothing to do. */
void party__addr_limits_give(party__addr_limits *lim, const party__addr *addr);

/* For the metrics: addresses in the table, and addresses forgotten to
 * make room. */
void party__addr_limits_stats(party__addr_limits *lim, uint64_t *entries, uint64_t *evicted);

#endif
