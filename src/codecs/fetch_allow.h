/* fetch_allow: the allow-list of outbound HTTP (--fetch-allow) — its
 * parser and the checks made against it. Pure code: strings and address
 * bytes in, answers out; no network, no loop. An entry is a URL prefix
 * (https://api.example.com/v1/), a host name, an IP literal or CIDR with an
 * optional port (127.0.0.1:8080, 10.0.0.0/8, [::1]:80), or "*" (any host).
 * Private and special addresses are refused unless an IP or CIDR entry
 * covers them; a host-name, prefix or "*" entry never does. */
#ifndef PARTY_FETCH_ALLOW_H
#define PARTY_FETCH_ALLOW_H

#include <stddef.h>

/* At most this many entries, each at most this many bytes. */
#define PARTY__ALLOW_MAX_ENTRIES 256
#define PARTY__ALLOW_MAX_ENTRY 2048

typedef struct party__allow party__allow;

/* Parses a comma-separated list (spaces around entries ignored; NULL or
 * only spaces and commas: an empty list, which allows nothing). 0 with
 * *out set (free it with party__allow_free), PARTY_EINVAL with a one-line
 * reason naming the entry in why, PARTY_ENOMEM. */
int party__allow_parse(const char *text, party__allow **out, char *why, size_t why_len);
/* NULL is a no-op. */
void party__allow_free(party__allow *allow);
/* Entries in the list. */
size_t party__allow_count(const party__allow *allow);

/* 1 if a request to this URL may start: https 0/1, host as in the URL
 * (lowercase; an IPv6 literal without brackets; an IPv4 literal in dotted
 * decimal), port (the scheme's default filled in), path (starting with
 * '/', query excluded, dot segments removed). NULL allow: 0. */
int party__allow_url(const party__allow *allow, int https, const char *host, int port,
                     const char *path);

/* family: 4 or 6; addr: 4 or 16 bytes in network order. 1 if the address
 * is private or special (loopback, private ranges, link-local, CGNAT,
 * unspecified, multicast, unique-local; an IPv4-mapped IPv6 address as its
 * IPv4 address). */
int party__addr_special(int family, const unsigned char *addr);
/* 1 if an IP or CIDR entry of the list covers the address and port (an
 * entry without a port covers every port). NULL allow: 0. */
int party__allow_addr(const party__allow *allow, int family, const unsigned char *addr, int port);

#endif
