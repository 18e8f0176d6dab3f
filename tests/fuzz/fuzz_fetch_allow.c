/* Fuzzes the outbound allow-list parser (--fetch-allow) and its checks.
 * The input is split at its first NUL: the list, then a host to check a
 * URL and an address against. A list either parses (and then every check
 * runs without reading past anything) or fails with a reason that names
 * the flag; it never crashes or leaks. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch_allow.h"
#include "party.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text, *host;
    const char *nul;
    party__allow *allow = NULL;
    char why[300] = "";
    unsigned char addr[16];
    size_t text_len;
    int r;

    if (size > 16384)
        return 0;
    nul = memchr(data, '\0', size);
    text_len = nul != NULL ? (size_t)(nul - (const char *)data) : size;
    text = malloc(text_len + 1);
    host = malloc(size - text_len + 1);
    if (text == NULL || host == NULL) {
        free(text);
        free(host);
        return 0;
    }
    memcpy(text, data, text_len);
    text[text_len] = '\0';
    if (nul != NULL) {
        memcpy(host, nul + 1, size - text_len - 1);
        host[size - text_len - 1] = '\0';
    } else {
        host[0] = '\0';
    }
    r = party__allow_parse(text, &allow, why, sizeof(why));
    if (r == 0) {
        assert(allow != NULL);
        assert(party__allow_count(allow) <= PARTY__ALLOW_MAX_ENTRIES);
        (void)party__allow_url(allow, (int)(size & 1), host, (int)(size % 65536), "/x/y");
        memset(addr, 0, sizeof(addr));
        memcpy(addr, data, size < sizeof(addr) ? size : sizeof(addr));
        (void)party__allow_addr(allow, 4, addr, 80);
        (void)party__allow_addr(allow, 6, addr, 443);
        (void)party__addr_special(4, addr);
        (void)party__addr_special(6, addr);
        party__allow_free(allow);
    } else {
        assert(allow == NULL);
        assert(r == PARTY_EINVAL || r == PARTY_ENOMEM);
        assert(r == PARTY_ENOMEM || strstr(why, "--fetch-allow") != NULL);
    }
    free(text);
    free(host);
    return 0;
}
