/* upgrade: a new partyd takes over from a running one without closing a
 * connection (DESIGN.md D6). On SIGUSR2 the running process starts the
 * binary it was started from, with the same arguments; once the new one
 * has loaded its parties, every loop is frozen, its rooms committed and
 * hibernated, and the listening socket, the data directory's lock and
 * every open WebSocket and idle HTTP connection (conn_record.h records)
 * go over a unix socket (SCM_RIGHTS). The new process adopts them and
 * says "adopted"; only then does the old one let them go and exit. Until
 * then it keeps every descriptor, and goes on serving if anything fails. */
#ifndef PARTY_UPGRADE_H
#define PARTY_UPGRADE_H

#include <stdint.h>

#include "party.h"

/* The environment variable that hands a new process its end of the unix
 * socket (a descriptor number). */
#define PARTY__UPGRADE_FD_ENV "PARTYD_UPGRADE_FD"

typedef struct party__upgrade party__upgrade;

/* Makes SIGUSR2 start an upgrade to the binary at exe, run with argv
 * (NULL-terminated; both copied). Call before party_runtime_run. 0,
 * PARTY_ESTATE (already enabled) or PARTY_ENOMEM. */
int party__upgrade_enable(party_runtime *rt, const char *exe, char *const *argv);

/* In a process an upgrade started (sock: its end of the unix socket, now
 * the runtime's): tells the old process it is ready, then receives the
 * listening socket, the data directory's lock and the connections'
 * records. Instead of party_runtime_listen; party_runtime_run then adopts
 * the connections. 0; PARTY_ESTATE (a record version this build does not
 * know: refused, and the old process told why); PARTY_EIO (the old
 * process went away, or sent what is not a hand-over); PARTY_ENOMEM; or
 * party_runtime_listen's errors. Logged. */
int party__upgrade_receive(party_runtime *rt, int sock);

/* Called by party_runtime_run once the loops and their rooms are made and
 * before they run: adopts the connections received, tells the old process
 * "adopted", tells systemd (NOTIFY_SOCKET) this process is the service's
 * main one and ready, and starts watching for SIGUSR2. Does nothing when
 * upgrades are not enabled. 0, or PARTY_EIO (the old process could not
 * be told: it goes on serving, so this one must not). */
int party__upgrade_serve(party_runtime *rt);

/* Loop 0 finishes: closes the upgrade's handles (and stops a child that
 * has not taken over). */
void party__upgrade_close(party_runtime *rt);
/* Frees what party__upgrade_enable made, after the loop ran its closes. */
void party__upgrade_free(party_runtime *rt);

/* A stop signal came (loop 0): 1 if an upgrade is under way, and the
 * stop waits for it to end (this process then stops, or has handed over
 * and exits anyway); 0 otherwise (stop now). */
int party__upgrade_defer_stop(party_runtime *rt);

/* For the metrics (loop 0): the upgrades that led to this process (the
 * count goes from process to process), the upgrades it started that
 * failed, and the TLS connections its upgrades closed. */
void party__upgrade_stats(const party_runtime *rt, uint64_t *upgrades, uint64_t *failed,
                          uint64_t *tls_closed);

/* Sends one datagram to systemd's notification socket (NOTIFY_SOCKET,
 * a path or an abstract name starting with '@'); nothing when it is not
 * set. 0, or a negative errno. */
int party__sd_notify(const char *text);

#endif
