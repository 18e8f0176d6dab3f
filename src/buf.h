/* buf: the slice type that every byte range travels in, and refcounted
 * buffers. An outgoing frame is encoded once into a party__buf and queued by
 * reference on every connection that sends it (zero-copy broadcast). */
#ifndef PARTY_BUF_H
#define PARTY_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A view of bytes owned by someone else. */
typedef struct party__slice {
    const char *ptr;
    size_t len;
} party__slice;

/* A refcounted, fixed-capacity byte buffer. data[0..len) is the content. */
typedef struct party__buf {
    uint32_t refs;
    size_t len;
    size_t cap;
    char data[];
} party__buf;

/* A new buffer with room for cap bytes, one reference, len 0. NULL on OOM. */
party__buf *party__buf_new(size_t cap);
/* Takes one more reference; returns buf. */
party__buf *party__buf_ref(party__buf *buf);
/* Drops one reference; frees at zero. NULL is a no-op. */
void party__buf_release(party__buf *buf);

/* Writes n bytes as 2n lowercase hex digits and a NUL into out. */
void party__hex_encode(const void *bytes, size_t n, char *out);
/* Fills out with n_bytes random bytes as 2 * n_bytes hex digits and a NUL
 * (ids of rooms and schedules). */
void party__random_hex(size_t n_bytes, char *out);

/* Slice helpers. */
static inline party__slice party__slice_make(const char *ptr, size_t len) {
    party__slice s = {ptr, len};
    return s;
}
/* 1 if the slice equals the NUL-terminated string s (case-insensitive ASCII). */
int party__slice_eq_nocase(party__slice a, const char *s);
/* 1 if the comma-separated token list in a contains token (case-insensitive). */
int party__slice_has_token(party__slice a, const char *token);

#endif
