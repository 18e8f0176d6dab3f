/* loops: partyd's event-loop threads. Loop 0 is part of the runtime the
 * user holds and runs on the thread that calls party_runtime_run; loops
 * 1..N-1 run on threads of their own. Each is a party__loop_ctx; the
 * configuration, the parties, the backend and the TLS context are the
 * runtime's, shared by all. A room lives on
 * the loop its id hashes to, for its whole life. Loop 0 accepts every
 * connection and reads its first request; the socket is handed to the
 * room's loop once the request is routed. (One accepting loop keeps
 * libuv's way out of EMFILE working: its reserve descriptor is not raced
 * for by another loop accepting on the same socket.) Loops share no mutable state on the hot
 * path: they pass work to each other by mail (a mailbox per loop: a mutex,
 * a list and a uv_async). */
#ifndef PARTY_LOOPS_H
#define PARTY_LOOPS_H

#include "runtime.h"

struct party_conn;

/* One piece of work posted to a loop. Embed it first in a struct of your
 * own. run is called on the receiving loop's thread and owns the mail
 * from then on; drop is called instead when the loop no longer takes mail
 * (it has stopped), on whichever thread posted or closed. */
typedef struct party__mail {
    struct party__mail *next;
    void (*run)(party__loop_ctx *lc, struct party__mail *mail);
    void (*drop)(struct party__mail *mail);
} party__mail;

/* Sets up lc's mailbox on its loop (unreferenced: it keeps no loop alive).
 * 0 or PARTY_ENOMEM. */
int party__inbox_init(party__loop_ctx *lc);
/* Closes lc's mailbox (its own thread): mail still in it, and mail posted
 * from now on, is dropped. */
void party__inbox_close(party__loop_ctx *lc);
/* Frees what the mailbox holds once no thread can post to it any more. */
void party__inbox_free(party__loop_ctx *lc);
/* Posts mail to the loop target; safe from any thread. */
void party__mail_post(party__loop_ctx *target, party__mail *mail);

/* The loop that owns the room with this id (lc itself with one loop). */
party__loop_ctx *party__loop_of(party__loop_ctx *lc, const char *room_id);

/* Creates loops 1..n_loops-1 of a runtime that listens: each gets its
 * handles and its alarm heap. 0, or PARTY_ENOMEM / PARTY_EIO
 * (party__loops_free undoes what was made). */
int party__loops_create(party_runtime *rt);
/* Starts a thread for each loop made by party__loops_create. A loop whose
 * thread cannot start is run by no one: logged, and its connections time
 * out; in practice threads start. */
void party__loops_run(party_runtime *rt);
/* Asks every other loop to stop (loop 0, on stop). */
void party__loops_stop(party_runtime *rt);
/* Joins the threads of the other loops and frees them (after loop 0
 * returned, or when run failed before starting them). */
void party__loops_free(party_runtime *rt);
/* Another loop's thread ended its loop (mail to loop 0). */
void party__loops_thread_done(party_runtime *rt);

/* Hands a routed HTTP request's connection to the loop target: the socket,
 * the request as parsed (with the bytes read behind it) and the transport
 * state move there (party__conn_detach), and the request is routed again
 * on target, not parsed again. The connection here is closed silently.
 * Called once the router found the room id (route_cb, runtime.c), with
 * the request parsed (phase HTTP_BUSY). If output is still queued, the
 * hand-off waits until it is written (the request is routed again then). */
void party__loop_handoff(struct party_conn *conn, party__loop_ctx *target);
/* Serves the hand-offs that came while the loop's connections were
 * exported for an upgrade (frozen 2): call once it writes again. */
void party__loop_release_held(party__loop_ctx *lc);

/* A tour: work that must see every loop (the metrics, the room listing).
 * Each loop's visit runs on that loop's thread, loop 0 first; then done
 * runs back on the loop of the connection that asked, which answers it
 * (with failed set if a loop had stopped), unless the connection closed
 * meanwhile. free releases the tour (always
 * called, last). */
typedef struct party__tour {
    party__mail mail;
    party__loop_ctx *origin;
    struct party_conn *conn; /* holds a reference */
    unsigned next;           /* the loop to visit next */
    int failed;              /* a loop could not be visited (it stopped) */
    void (*visit)(party__loop_ctx *lc, struct party__tour *tour);
    void (*done)(struct party_conn *conn, struct party__tour *tour);
    void (*free)(struct party__tour *tour);
} party__tour;

/* Starts a tour for conn (whose request is parsed and waits for its
 * answer): tour is embedded in the caller's struct, which free releases. */
void party__tour_start(struct party_conn *conn, party__tour *tour,
                       void (*visit)(party__loop_ctx *lc, party__tour *tour),
                       void (*done)(struct party_conn *conn, party__tour *tour),
                       void (*free_tour)(party__tour *tour));

#endif
