/* keepalive: pings WebSockets that have been silent for ping_interval and
 * closes those that stay silent for another one. One loop-wide timer and
 * two bits per connection; no per-connection timer. */
#ifndef PARTY_KEEPALIVE_H
#define PARTY_KEEPALIVE_H

#include "party.h"
#include "loop.h"

/* Starts the sweep (every cfg.ping_interval; nothing when it is 0). The
 * timer handle is the loop's; it does not keep the loop alive. */
void party__keepalive_start(party__loop *lp);

/* One sweep over every open WebSocket (the timer's work; also for tests). */
void party__keepalive_sweep(party__loop *lp);

#endif
