/* proxy: the PROXY protocol header (versions 1 and 2) that a load balancer
 * such as HAProxy sends first on a connection to tell the client's
 * address. A pure, incremental parser over the bytes read so far: it
 * says "need more", "done (n bytes)" or what is wrong, and never reads
 * past what it was given. */
#ifndef PARTY_PROXY_H
#define PARTY_PROXY_H

#include <stddef.h>

#include "addr.h"

enum {
    PARTY__PROXY_DONE = 0,   /* a whole header: see party__proxy_header */
    PARTY__PROXY_AGAIN = 1,  /* a valid beginning: more bytes are needed */
    PARTY__PROXY_ERROR = -1, /* not a PROXY header, or a malformed one */
};

/* The longest header: version 2's 16 bytes and a 65535-byte body. */
#define PARTY__PROXY_MAX (16 + 65535)
/* The longest version 1 header, with its CRLF (the specification's 107). */
#define PARTY__PROXY_V1_MAX 107

typedef struct party__proxy_header {
    size_t len;         /* bytes the header took, TLVs included */
    int version;        /* 1 or 2 */
    int local;          /* 1: the proxy speaks for itself (a v2 LOCAL health
                         * check, or v1 UNKNOWN): use the socket's peer */
    party__addr source; /* the client, when !local */
    party__addr dest;   /* the address it connected to, when !local */
} party__proxy_header;

/* Parses a header at the start of data (len bytes, all that was read).
 * PARTY__PROXY_DONE with *out filled, PARTY__PROXY_AGAIN, or
 * PARTY__PROXY_ERROR with *error (static text) saying what is wrong. A
 * version 2 header of a family other than IPv4/IPv6 over TCP (unix
 * sockets, UDP) is taken as local: its bytes are skipped. */
int party__proxy_parse(const char *data, size_t len, party__proxy_header *out, const char **error);

#endif
