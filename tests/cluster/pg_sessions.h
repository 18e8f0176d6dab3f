/* pg_sessions: ends a partyd node's PostgreSQL sessions the way a server
 * restart or an idle timeout would, and waits for them to be gone, for
 * the cluster tests. Header only (static): each test program includes it
 * once. */
#ifndef PARTY_TEST_PG_SESSIONS_H
#define PARTY_TEST_PG_SESSIONS_H

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libpq-fe.h>

/* Terminates (pg_terminate_backend, from a connection of its own) every
 * session on the database at uri whose application_name is app, and
 * returns once each one's server process has exited (its socket closed,
 * so the node's side can see it): waited on through a pidfd of each,
 * which becomes readable when that process ends. The number of sessions
 * ended, or -1 with a message on stderr. */
static int pg_sessions_terminate(const char *uri, const char *app) {
    const char *p[1] = {app};
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    int i, n, fds[64], ok = 1;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pg_sessions: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    res = PQexecParams(c,
                       "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                       " AND datname = current_database() AND pid <> pg_backend_pid()",
                       1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) > 64) {
        fprintf(stderr, "pg_sessions: %s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        return -1;
    }
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        const char *pid[1] = {PQgetvalue(res, i, 0)};
        PGresult *t;
        /* Opened before the signal: the pid cannot have been reused. */
        fds[i] = (int)syscall(SYS_pidfd_open, atoi(pid[0]), 0);
        t = PQexecParams(c, "SELECT pg_terminate_backend($1::int)", 1, NULL, pid, NULL, NULL, 0);
        if (fds[i] < 0 || PQresultStatus(t) != PGRES_TUPLES_OK) {
            fprintf(stderr, "pg_sessions: cannot end session %s\n", pid[0]);
            ok = 0;
        }
        PQclear(t);
    }
    PQclear(res);
    PQfinish(c);
    for (i = 0; i < n; i++) {
        struct pollfd w = {fds[i], POLLIN, 0};
        if (fds[i] < 0)
            continue;
        while (poll(&w, 1, -1) < 0)
            ;
        close(fds[i]);
    }
    return ok ? n : -1;
}

#endif
