/* What the HTTP request and response harnesses share: the check that
 * aborts (libFuzzer reports the input), the limit sets an input picks
 * from, the slice checks, and the exact-length heap copy. Each harness
 * includes it once; the functions are static so each binary has its own. */
#ifndef PARTY_FUZZ_HTTP_COMMON_H
#define PARTY_FUZZ_HTTP_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Small limits reach the limit paths with small inputs; the large ones let
 * the syntax paths run without hitting a limit first. */
static const party__http_limits limit_sets[] = {
    {8192, 100, 1 << 20},
    {64, 4, 16},
    {200, 8, 100},
    {1 << 16, PARTY__HTTP_MAX_HEADERS, SIZE_MAX},
};

/* s is empty, or lies inside base[0..consumed). */
static void check_slice(party__slice s, const char *base, size_t consumed) {
    if (s.ptr == NULL) {
        CHECK(s.len == 0);
        return;
    }
    CHECK(s.ptr >= base);
    CHECK((size_t)(s.ptr - base) <= consumed);
    CHECK(s.len <= consumed - (size_t)(s.ptr - base));
}

/* a and b have the same length and the same offset in their buffers. */
static void check_same_slice(party__slice a, const char *base_a, party__slice b,
                             const char *base_b) {
    CHECK(a.len == b.len);
    CHECK((a.ptr == NULL) == (b.ptr == NULL));
    if (a.ptr != NULL)
        CHECK(a.ptr - base_a == b.ptr - base_b);
}

/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
static char *copy_of(const uint8_t *data, size_t len) {
    char *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    if (len > 0)
        memcpy(buf, data, len);
    return buf;
}

#endif
