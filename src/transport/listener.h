/* listener: the listening socket, watched with a uv_poll_t. Accepted
 * sockets go to conn.c as bare descriptors (see party__conn_accept_fd). */
#ifndef PARTY_LISTENER_H
#define PARTY_LISTENER_H

#include <stddef.h>
#include <sys/socket.h>

#include "party.h"
#include "loop.h"

/* Binds and listens on addr (SO_REUSEADDR, backlog 511) and starts
 * accepting. 0, or a libuv error code (nothing left open). */
int party__listener_open(party__loop *lp, const struct sockaddr *addr);
/* The port bound, or -1 when not listening. */
int party__listener_port(party__loop *lp);
/* Listens on fd, a listening socket bound elsewhere (handed over by the
 * process an upgrade replaces). 0 or a libuv error (fd closed). */
int party__listener_adopt(party__loop *lp, int fd);
/* Stops accepting for a while (an upgrade hands the socket over):
 * connection attempts wait in the backlog. */
void party__listener_pause(party__loop *lp);
/* Accepts again after party__listener_pause. */
void party__listener_resume(party__loop *lp);
/* An address as a log line shows it: "127.0.0.1:1999", "[::1]:1999"
 * (brackets around IPv6, as in a URL), into buf (truncated to size). */
void party__sockaddr_text(const struct sockaddr *addr, char *buf, size_t size);
/* The address bound, as party__sockaddr_text writes it; "?" when not
 * listening. */
void party__listener_address(party__loop *lp, char *buf, size_t size);
/* Stops accepting and closes the socket (and the spare descriptor). */
void party__listener_close(party__loop *lp);

#endif
