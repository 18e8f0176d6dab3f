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

typedef struct party__buf_pool party__buf_pool;

/* A refcounted, fixed-capacity byte buffer. data[0..len) is the content.
 * A buffer and its pool belong to one event loop: refs is not atomic. */
typedef struct party__buf {
    uint32_t refs;
    size_t len;
    size_t cap;
    struct party__buf_pool *pool; /* where it goes back at zero; NULL: free() */
    char data[];
} party__buf;

/* Buffers of at most this many bytes come from a pool when one is given. */
#define PARTY__BUF_POOL_CAP 512
/* Spare buffers a pool keeps at most; past that a released buffer is
 * freed. Enough for a loop turn that answers 8 messages on each of 100
 * connections before the first write completes. */
#define PARTY__BUF_POOL_SPARES 1024

/* A new buffer with room for cap bytes, one reference, len 0. NULL on OOM. */
party__buf *party__buf_new(size_t cap);
/* Like party__buf_new, but a buffer of at most PARTY__BUF_POOL_CAP bytes
 * is a spare of pool when it has one (no allocation), and goes back to it
 * when its last reference is dropped. pool may be NULL. */
party__buf *party__buf_take(party__buf_pool *pool, size_t cap);
/* Takes one more reference; returns buf. Inline: a broadcast takes one
 * per receiver. */
static inline party__buf *party__buf_ref(party__buf *buf) {
    buf->refs++;
    return buf;
}
/* party__buf_release's part for the last reference (refs already 0). */
void party__buf_release_last(party__buf *buf);
/* Drops one reference; at zero the buffer goes back to its pool or is
 * freed. NULL is a no-op. Inline: a broadcast's frame is released by
 * each receiver once written, and all but the last only count down. */
static inline void party__buf_release(party__buf *buf) {
    if (buf != NULL && --buf->refs == 0)
        party__buf_release_last(buf);
}

/* A loop's spare small buffers, so that a message sent does not cost a
 * malloc and a free. NULL on OOM. */
party__buf_pool *party__buf_pool_new(void);
/* Frees the spares (memory handed back when rooms leave memory). */
void party__buf_pool_trim(party__buf_pool *pool);
/* Called on a coarse periodic tick: frees as many spares as were never
 * taken since the previous tick, so a pool shrinks to what the traffic of
 * the last tick needed, and to nothing on a quiet loop. */
void party__buf_pool_tick(party__buf_pool *pool);
/* Frees the spares and the pool; a buffer still referenced then keeps the
 * pool alive until it is released (and is freed, not kept). NULL is a
 * no-op. */
void party__buf_pool_free(party__buf_pool *pool);
/* Spares held now (tests and metrics). */
size_t party__buf_pool_spares(const party__buf_pool *pool);

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
