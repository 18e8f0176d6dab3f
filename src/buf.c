/* buf: refcounted byte buffers and slice helpers. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/random.h>

#include <openssl/rand.h>

party__buf *party__buf_new(size_t cap) {
    party__buf *buf = malloc(sizeof(*buf) + cap);
    if (buf == NULL)
        return NULL;
    buf->refs = 1;
    buf->len = 0;
    buf->cap = cap;
    return buf;
}

party__buf *party__buf_ref(party__buf *buf) {
    buf->refs++;
    return buf;
}

void party__buf_release(party__buf *buf) {
    if (buf != NULL && --buf->refs == 0)
        free(buf);
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
