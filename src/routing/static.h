/* static: files from a directory (--static DIR) for paths outside the room
 * prefix. */
#ifndef PARTY_STATIC_H
#define PARTY_STATIC_H

struct party_conn;

/* Answers the connection's current request from the static directory if
 * one is configured and the request is a GET or HEAD for a file in it; 1 if
 * it answered (including 4xx for refused paths), 0 otherwise. */
int party__static_handle(struct party_conn *conn);

#endif
