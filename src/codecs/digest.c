/* digest: SHA-1 and SHA-256 through OpenSSL's EVP interface, with the
 * algorithms fetched once and the context reused (see digest.h). */
#include "digest.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "alloc.h"

struct party__digest {
    EVP_MD *sha1, *sha256;
    EVP_MD_CTX *ctx;
};

party__digest *party__digest_new(void) {
    party__digest *d = party__calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    d->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    d->ctx = EVP_MD_CTX_new();
    if (d->sha1 == NULL || d->sha256 == NULL || d->ctx == NULL) {
        party__digest_free(d);
        return NULL;
    }
    return d;
}

void party__digest_free(party__digest *d) {
    if (d == NULL)
        return;
    EVP_MD_CTX_free(d->ctx);
    EVP_MD_free(d->sha1);
    EVP_MD_free(d->sha256);
    party__free(d);
}

/* Without a party__digest, EVP_sha1()/EVP_sha256() are looked up on each
 * call (OpenSSL's implicit fetch) in a context made for it. */
static int hash(EVP_MD_CTX *reused, const EVP_MD *md, const party__slice *parts, size_t n,
                unsigned char *out, unsigned int size) {
    EVP_MD_CTX *ctx = reused != NULL ? reused : EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex2(ctx, md, NULL) == 1;
    size_t i;

    for (i = 0; ok && i < n; i++)
        ok = parts[i].len == 0 || EVP_DigestUpdate(ctx, parts[i].ptr, parts[i].len) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == size;
    if (reused == NULL)
        EVP_MD_CTX_free(ctx);
    if (!ok)
        memset(out, 0, size);
    return ok ? 0 : -1;
}

int party__digest_sha1(party__digest *d, const party__slice *parts, size_t n,
                       unsigned char out[20]) {
    return d != NULL ? hash(d->ctx, d->sha1, parts, n, out, 20)
                     : hash(NULL, EVP_sha1(), parts, n, out, 20);
}

int party__digest_sha256(party__digest *d, const party__slice *parts, size_t n,
                         unsigned char out[32]) {
    return d != NULL ? hash(d->ctx, d->sha256, parts, n, out, 32)
                     : hash(NULL, EVP_sha256(), parts, n, out, 32);
}
