/* listener: the listening socket, watched with a uv_poll_t. Accepted
 * sockets go to conn.c as bare descriptors (see party__conn_accept_fd). */
#ifndef PARTY_LISTENER_H
#define PARTY_LISTENER_H

#include <sys/socket.h>

#include "party.h"

/* Binds and listens on addr (SO_REUSEADDR, backlog 511) and starts
 * accepting. 0, or a libuv error code (nothing left open). */
int party__listener_open(party_runtime *rt, const struct sockaddr *addr);
/* The port bound, or -1 when not listening. */
int party__listener_port(party_runtime *rt);
/* Stops accepting and closes the socket (and the spare descriptor). */
void party__listener_close(party_runtime *rt);

#endif
