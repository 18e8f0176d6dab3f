/* origin: the allow-list of browser origins (--allowed-origins) — its
 * syntax check and the match of a request's Origin field against it. Pure
 * code: strings in, answers out. An entry is an origin, scheme://host[:port]
 * (http or https; the scheme's default port when none is given), or one
 * whose host begins with "*." to stand for every subdomain of the rest
 * (the entry "https:" "//" "*.example.com" matches https://a.example.com
 * and https://a.b.example.com, not https://example.com). */
#ifndef PARTY_ORIGIN_H
#define PARTY_ORIGIN_H

#include <stddef.h>

#include "buf.h"

/* Longest Origin value (and list entry) considered; a longer one is no
 * origin this checks, so never allowed. */
#define PARTY__ORIGIN_MAX 255

/* Checks a comma-separated list (spaces around entries ignored; at least
 * one entry). 0, or PARTY_EINVAL with a one-line reason naming the entry
 * and flag (a NUL-terminated name such as "--allowed-origins") in why. */
int party__origin_list_check(const char *list, const char *flag, char *why, size_t why_len);

/* 1 if origin, a request's Origin field value, is allowed by list (a list
 * that passed party__origin_list_check); 0 otherwise, and always for
 * "null", a list of several origins, or a value that is not an http(s)
 * origin. Schemes and hosts compare case-insensitively, ports with the
 * scheme's default filled in. NULL list: 1 (no allow-list). */
int party__origin_allowed(const char *list, party__slice origin);

#endif
