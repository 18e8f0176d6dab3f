/* buf: refcounted byte buffers, the loop's pool of small ones, and slice
 * helpers. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/random.h>

#include <openssl/rand.h>

#include "asan.h"
#include "alloc.h"

/* A spare buffer in a pool is unaddressable (asan.h), so a use after the
 * last release is still caught although the memory is not freed. */
static void spare_hide(party__buf *buf) {
    party__mem_hide(buf, sizeof(*buf) + PARTY__BUF_POOL_CAP);
}

/* The header is defined again (cap and pool are kept); the data is not. */
static void spare_show(party__buf *buf) {
    party__mem_show(buf, sizeof(*buf) + PARTY__BUF_POOL_CAP);
    party__mem_defined(buf, sizeof(*buf));
}

struct party__buf_pool {
    /* Kept in an array rather than linked through their bytes, so that a
     * spare is unaddressable whole and a leak checker still sees it. */
    party__buf *spares[PARTY__BUF_POOL_SPARES];
    size_t n_spares;
    size_t fewest_spares; /* the least n_spares since the previous tick */
    size_t n_out;         /* pooled buffers referenced now */
    int freed;            /* party__buf_pool_free was called: the last one out frees it */
};

party__buf *party__buf_take(party__buf_pool *pool, size_t cap) {
    party__buf *buf;

    if (pool != NULL && cap > PARTY__BUF_POOL_CAP)
        pool = NULL;
    if (pool != NULL && pool->n_spares > 0) {
        buf = pool->spares[--pool->n_spares];
        spare_show(buf);
        if (pool->n_spares < pool->fewest_spares)
            pool->fewest_spares = pool->n_spares;
    } else {
        /* A pooled buffer is made at the pool's size, to serve any later
         * small frame. */
        if (pool != NULL)
            cap = PARTY__BUF_POOL_CAP;
        buf = party__malloc(sizeof(*buf) + cap);
        if (buf == NULL)
            return NULL;
        buf->cap = cap;
        buf->pool = pool;
    }
    if (pool != NULL)
        pool->n_out++;
    buf->refs = 1;
    buf->len = 0;
    return buf;
}

party__buf *party__buf_new(size_t cap) {
    return party__buf_take(NULL, cap);
}

void party__buf_release_last(party__buf *buf) {
    party__buf_pool *pool = buf->pool;

    if (pool == NULL) {
        party__free(buf);
        return;
    }
    pool->n_out--;
    if (!pool->freed && pool->n_spares < PARTY__BUF_POOL_SPARES) {
        pool->spares[pool->n_spares++] = buf;
        spare_hide(buf);
        return;
    }
    party__free(buf);
    if (pool->freed && pool->n_out == 0)
        party__free(pool);
}

party__buf_pool *party__buf_pool_new(void) {
    return party__calloc(1, sizeof(party__buf_pool));
}

/* Frees n spares, the least recently used first. */
static void pool_shrink(party__buf_pool *pool, size_t n) {
    size_t i;

    if (n > pool->n_spares)
        n = pool->n_spares;
    for (i = 0; i < n; i++) {
        spare_show(pool->spares[i]);
        party__free(pool->spares[i]);
    }
    memmove(pool->spares, pool->spares + n, (pool->n_spares - n) * sizeof(pool->spares[0]));
    pool->n_spares -= n;
    pool->fewest_spares = pool->n_spares;
}

void party__buf_pool_trim(party__buf_pool *pool) {
    pool_shrink(pool, pool->n_spares);
}

void party__buf_pool_tick(party__buf_pool *pool) {
    pool_shrink(pool, pool->fewest_spares);
}

void party__buf_pool_free(party__buf_pool *pool) {
    if (pool == NULL)
        return;
    party__buf_pool_trim(pool);
    pool->freed = 1;
    if (pool->n_out == 0)
        party__free(pool);
}

size_t party__buf_pool_spares(const party__buf_pool *pool) {
    return pool->n_spares;
}

int party__slice_eq_nocase(party__slice a, const char *s) {
    size_t n = strlen(s);
    return a.ptr != NULL && a.len == n && strncasecmp(a.ptr, s, n) == 0;
}

static int is_list_space(char c) {
    return c == ' ' || c == '\t';
}

int party__slice_has_token(party__slice a, const char *token) {
    size_t i = 0;
    if (a.ptr == NULL)
        return 0;
    while (i < a.len) {
        size_t start, end;
        while (i < a.len && (is_list_space(a.ptr[i]) || a.ptr[i] == ','))
            i++;
        start = i;
        while (i < a.len && a.ptr[i] != ',')
            i++;
        end = i;
        while (end > start && is_list_space(a.ptr[end - 1]))
            end--;
        if (end > start &&
            party__slice_eq_nocase(party__slice_make(a.ptr + start, end - start), token))
            return 1;
    }
    return 0;
}

void party__hex_encode(const void *bytes, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void party__random_hex(size_t n_bytes, char *out) {
    unsigned char b[64];
    if (n_bytes > sizeof(b))
        n_bytes = sizeof(b);
    /* RAND_bytes fails only if OpenSSL cannot seed itself; ask the kernel. */
    if (RAND_bytes(b, (int)n_bytes) != 1 && getrandom(b, n_bytes, 0) != (ssize_t)n_bytes)
        memset(b, 0, n_bytes);
    party__hex_encode(b, n_bytes, out);
}
