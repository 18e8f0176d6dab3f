/* ops: operational endpoints under a reserved prefix (default /_partyd/):
 * health, Prometheus metrics, and an admin listing of rooms. The numbers
 * and the listing are gathered above routing (every loop's rooms and
 * connections): ops defines what it shows, asks for it through the
 * router's upcalls, and is called back with it to answer. */
#ifndef PARTY_OPS_H
#define PARTY_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "party.h"
#include "loop.h"

struct party_conn;

/* The commit latency histogram: upper bounds (ms) of its buckets, the
 * last is +Inf. */
#define PARTY__COMMIT_BUCKETS 12
extern const double party__commit_bucket_ms[PARTY__COMMIT_BUCKETS];

/* A room as the metrics and the listing count it. */
typedef enum party__ops_room_state {
    PARTY__OPS_ROOM_AWAKE,      /* in memory */
    PARTY__OPS_ROOM_HIBERNATED, /* out of memory with connections open */
    PARTY__OPS_ROOM_COLD,       /* out of memory, no connections */
} party__ops_room_state;

/* What /metrics shows: every loop's counters, added up. */
typedef struct party__ops_stats {
    uint64_t loops, conns, rooms[3], events[7], commit_hist[PARTY__COMMIT_BUCKETS];
    uint64_t commits, commit_us_total, commit_groups, bytes_in, bytes_out, http_requests;
    uint64_t alarms_pending, alarms_fired, alarms_retried, alarms_abandoned, schedules_fired;
    uint64_t http_errors, protocol_errors, send_queue_drops, commit_failures, accept_errors,
        tls_errors;
    uint64_t proxy_refused; /* connections without a valid PROXY header */
    uint64_t limit_addr_conns, limit_addr_rate, limit_conn_msgs, limit_conn_bytes,
        limit_conn_closed, limit_room_conns;
    uint64_t limit_addresses, limit_addresses_evicted; /* the per-address table */
    uint64_t commits_fenced;   /* refused: the room is another node's now (a cluster store) */
    uint64_t store_reconnects; /* a cluster store's connections the server closed, replaced */
    uint64_t origin_refused;   /* handshakes and preflights refused for their Origin */
    /* Upgrades (SIGUSR2): those that led to this process (the count goes
     * from process to process), those that failed here, and the TLS
     * connections they closed. */
    uint64_t upgrades, upgrades_failed, upgrades_tls_closed;
    party__http_stats outbound; /* outbound HTTP of the loops' rooms (http_client.h) */
} party__ops_stats;

/* Adds one loop's connection and outbound HTTP counters to stats (and
 * counts the loop). */
void party__ops_stats_add_loop(party__ops_stats *stats, const party__loop *lp);

/* What /rooms shows of one room, copied on the room's loop. */
typedef struct party__ops_room {
    const char *party; /* the party's registered name (lives as long as the runtime) */
    char *name;        /* NULL: known only by id */
    char id[PARTY_ID_MAX];
    size_t conns;
    party__ops_room_state state;
} party__ops_room;

typedef struct party__ops_listing {
    party__ops_room *items;
    size_t n, cap;
} party__ops_listing;

/* Appends a room to the listing (name copied; NULL: none). 0 or
 * PARTY_ENOMEM. */
int party__ops_listing_add(party__ops_listing *listing, const char *party, const char *name,
                           const char *id, size_t conns, party__ops_room_state state);
/* Frees what the listing holds. */
void party__ops_listing_free(party__ops_listing *listing);

/* What the endpoints ask of the layers above (installed by the runtime,
 * handed to party__ops_handle). */
typedef enum party__ops_what {
    PARTY__OPS_METRICS,
    PARTY__OPS_ROOMS,
    PARTY__OPS_HEALTH, /* whether the storage backend can commit (a cluster node's lease) */
} party__ops_what;
typedef struct party__ops_upcalls {
    /* Gathers what every loop holds for conn's request (what), then
     * answers it with party__ops_answer_metrics or _rooms on conn's
     * loop, unless conn closed meanwhile; PARTY__OPS_HEALTH is answered
     * during the call, with party__ops_answer_health. */
    void (*collect)(struct party_conn *conn, party__ops_what what);
} party__ops_upcalls;

/* Answers the connection's current request if its path is under the ops
 * prefix; 1 if it did (the answer is sent or queued, or being gathered),
 * 0 otherwise. */
int party__ops_handle(struct party_conn *conn, const party__ops_upcalls *up);

/* Answers a /metrics request with stats (NULL: they could not be
 * gathered for want of memory: 500); failed: a loop could not be
 * visited (it stopped): 503. */
void party__ops_answer_metrics(struct party_conn *conn, const party__ops_stats *stats, int failed);
/* Answers a /health request: 200 "ok", or 503 with why (a line) when
 * why is not NULL. node (NULL: none): this node's name, in the
 * X-Partyd-Node header. */
void party__ops_answer_health(struct party_conn *conn, const char *why, const char *node);
/* Answers a /rooms request with the listing (sorted here); oom: the
 * listing is incomplete for want of memory (500); failed as above. */
void party__ops_answer_rooms(struct party_conn *conn, party__ops_listing *listing, int oom,
                             int failed);

#endif
