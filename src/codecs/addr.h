/* addr: a client's network address in binary (family, 16 address bytes,
 * port: 20 bytes, what a connection record keeps), its text form, and
 * CIDR lists to match addresses against (--trusted-proxies). Pure
 * functions; no allocation but the list's own array. */
#ifndef PARTY_ADDR_H
#define PARTY_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
    PARTY__ADDR_NONE = 0, /* not known (internal connections, the test harness) */
    PARTY__ADDR_V4 = 4,
    PARTY__ADDR_V6 = 6,
};

/* An IPv4 address is in bytes[0..3], the rest zero; port in host order. */
typedef struct party__addr {
    uint8_t family; /* PARTY__ADDR_* */
    uint8_t unused;
    uint16_t port;
    uint8_t bytes[16];
} party__addr;

/* Longest text party__addr_text writes, with its NUL. */
#define PARTY__ADDR_TEXT_MAX 46

/* Fills out from a struct sockaddr (AF_INET or AF_INET6; an IPv4-mapped
 * IPv6 address becomes IPv4). 0, or PARTY_EINVAL for another family (out
 * then zeroed). */
int party__addr_from_sockaddr(party__addr *out, const void *sockaddr);
/* Parses "192.0.2.1" or "2001:db8::1" (no brackets, no port) from text.
 * 0 or PARTY_EINVAL. */
int party__addr_parse(party__slice text, party__addr *out);
/* The address (without port) as text into out (size bytes, NUL-
 * terminated, truncated); "-" when not known. Returns out. */
char *party__addr_text(const party__addr *addr, char *out, size_t size);
/* What party_conn_remote_addr and party_request_remote_addr give: the
 * text of addr into out. 0; PARTY_ENOTFOUND when addr is NULL or not
 * known (out then ""); PARTY_ETOOBIG when out is too small (out then "");
 * PARTY_EINVAL when out is NULL or size 0. */
int party__addr_text_checked(const party__addr *addr, char *out, size_t size);
/* 1 when a and b are the same address (ports ignored). */
int party__addr_equal(const party__addr *a, const party__addr *b);

/* A list of networks, "10.0.0.0/8,2001:db8::/32,192.0.2.7". */
typedef struct party__cidr {
    party__addr net;
    uint8_t bits;
} party__cidr;

typedef struct party__cidr_list {
    party__cidr *items;
    size_t n;
} party__cidr_list;

/* Parses a comma- or space-separated list of addresses and networks into
 * list (its items array is the caller's: party__cidr_list_free). 0, or
 * PARTY_EINVAL naming nothing (the caller names the flag), PARTY_ENOMEM. */
int party__cidr_list_parse(const char *text, party__cidr_list *list);
void party__cidr_list_free(party__cidr_list *list);
/* 1 when addr lies in one of the list's networks. An IPv4 network does
 * not match IPv6 addresses and the other way round. */
int party__cidr_list_match(const party__cidr_list *list, const party__addr *addr);

#endif
