/* orphans: on a store several processes share (PostgreSQL), loop 0 polls
 * the backend's alarm index for due rooms that no live node holds and
 * files each in the heap of the loop that owns it. Started and stopped by
 * the runtime on loop 0; not run on the embedded store, whose process
 * holds every room. */
#ifndef PARTY_ORPHANS_H
#define PARTY_ORPHANS_H

#include "runtime.h"

/* Starts the poll on loop 0 when rt's backend is shared by several
 * processes (a no-op otherwise, or when it runs already). 0, or
 * PARTY_ENOMEM / PARTY_EIO. */
int party__orphans_start(party_runtime *rt);
/* Stops it (loop 0, as the loop finishes); the backend must outlive a poll
 * still running, which keeps loop 0's rooms busy until it is done. */
void party__orphans_stop(party_runtime *rt);

#endif
