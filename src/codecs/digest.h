/* digest: SHA-1 (WebSocket accept values) and SHA-256 (room ids) of short
 * inputs. A party__digest holds the fetched algorithms and one reusable
 * OpenSSL context, so that hashing on a hot path neither allocates nor
 * looks algorithms up; each event loop owns one. */
#ifndef PARTY_DIGEST_H
#define PARTY_DIGEST_H

#include <stddef.h>

#include "buf.h"

typedef struct party__digest party__digest;

/* A digest state for one thread at a time. NULL on OOM. */
party__digest *party__digest_new(void);
/* NULL is a no-op. */
void party__digest_free(party__digest *d);

/* Hashes the n parts, in order, into out (20 bytes for SHA-1, 32 for
 * SHA-256). d may be NULL: a context is then made for this call. 0 on
 * success, -1 if OpenSSL failed (out is then zeroed). */
int party__digest_sha1(party__digest *d, const party__slice *parts, size_t n,
                       unsigned char out[20]);
int party__digest_sha256(party__digest *d, const party__slice *parts, size_t n,
                         unsigned char out[32]);

#endif
