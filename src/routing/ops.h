/* ops: operational endpoints under a reserved prefix (default /_partyd/):
 * health, Prometheus metrics, and an admin listing of rooms. */
#ifndef PARTY_OPS_H
#define PARTY_OPS_H

struct party_conn;

/* Answers the connection's current request if its path is under the ops
 * prefix; 1 if it did (the answer is sent or queued), 0 otherwise. */
int party__ops_handle(struct party_conn *conn);

#endif
