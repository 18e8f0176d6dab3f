/* forwarded: the client a request comes from when trusted proxies stand
 * between it and partyd: the hops of Forwarded (RFC 7239, for=) or
 * X-Forwarded-For, walked from the right while they are trusted. Pure;
 * nothing allocated. */
#ifndef PARTY_FORWARDED_H
#define PARTY_FORWARDED_H

#include <stddef.h>

#include "addr.h"
#include "http.h"

/* *client is the address that sent the request (the socket's peer, or
 * what a PROXY header declared). When it is in trusted, the request's
 * forwarding headers are read: Forwarded if there is one, else
 * X-Forwarded-For; their hops from the rightmost (the last proxy's
 * client) leftwards, until one that is not in trusted: that one is the
 * client. A hop that is not an address ("unknown", an obfuscated name,
 * garbage) ends the walk where it is: the client is then the last trusted
 * hop. Ports of hops are dropped (0). Returns 1 when *client changed. */
int party__forwarded_client(const party__http_header *headers, size_t n_headers,
                            const party__cidr_list *trusted, party__addr *client);

#endif
