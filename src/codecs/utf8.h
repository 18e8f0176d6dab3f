/* utf8: incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). State carries across calls so a text message split
 * inside a multi-byte sequence validates the same as when whole. */
#ifndef PARTY_UTF8_H
#define PARTY_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum {
    PARTY__UTF8_ACCEPT = 0, /* at a character boundary, all valid so far */
    PARTY__UTF8_REJECT = 1, /* invalid; stays rejected */
    /* any other value: inside a multi-byte sequence */
};

/* Feeds len bytes; returns the new state (start with PARTY__UTF8_ACCEPT).
 * A whole message is valid iff the final state is PARTY__UTF8_ACCEPT. */
uint32_t party__utf8_feed(uint32_t state, const void *data, size_t len);

/* 1 if data[0..len) is complete, valid UTF-8. */
int party__utf8_valid(const void *data, size_t len);

#endif
