/* url: percent-decoding and query-string lookup for request targets. Pure
 * functions over slices; no allocation. */
#ifndef PARTY_URL_H
#define PARTY_URL_H

#include <stddef.h>

#include "buf.h"

/* The value (0-15) of one hexadecimal digit, either case, or -1. */
int party__url_hex_value(char c);

/* Decodes %XX escapes of src into out (NUL-terminated). With plus_as_space a
 * '+' becomes a space (query strings). Returns the decoded length, or -1 on a
 * malformed escape, a decoded NUL byte, or if out (cap bytes) is too small. */
int party__url_decode(party__slice src, char *out, size_t cap, int plus_as_space);

/* Copies src into out (cap bytes), decoding the %XX escapes of unreserved
 * bytes (RFC 3986 2.3: letters, digits, '-', '.', '_', '~'), which mean
 * the same decoded (6.2.2.2); other escapes are kept as they are. 0 with
 * *norm the result in out (not NUL-terminated), or -1 on a malformed
 * escape or if out is too small. */
int party__url_decode_unreserved(party__slice src, char *out, size_t cap, party__slice *norm);

/* The raw (still encoded) value of the first parameter called name in a query
 * string "a=1&b=2" (without '?'). A parameter with no '=' has an empty value.
 * Returns a slice with ptr NULL when absent. Names are compared decoded. */
party__slice party__url_query_find(party__slice query, const char *name);

#endif
