/* Fuzzes the reading of Forwarded / X-Forwarded-For behind trusted
 * proxies. The input is header lines ("Name: value\n"); the peer is a
 * trusted proxy, so every hop is looked at. Checks that the client found
 * is either the peer or an address of a known family, and that an
 * untrusted peer never changes. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "forwarded.h"

#define MAX_LINES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    party__http_header headers[MAX_LINES];
    party__cidr_list trusted;
    party__addr peer, client;
    const char *p = (const char *)data, *end = p + size;
    size_t n = 0;

    while (p < end && n < MAX_LINES) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL) {
            headers[n].name = party__slice_make(p, (size_t)(colon - p));
            headers[n].value = party__slice_make(colon + 1, (size_t)(line_end - colon - 1));
            n++;
        }
        p = eol != NULL ? eol + 1 : end;
    }
    if (party__cidr_list_parse("10.0.0.0/8,127.0.0.1,2001:db8::/32", &trusted) != 0)
        return 0;
    assert(party__addr_parse(party__slice_make("127.0.0.1", 9), &peer) == 0);
    client = peer;
    if (party__forwarded_client(headers, n, &trusted, &client))
        assert(client.family == PARTY__ADDR_V4 || client.family == PARTY__ADDR_V6);
    else
        assert(memcmp(&client, &peer, sizeof(peer)) == 0);
    assert(party__addr_parse(party__slice_make("192.0.2.1", 9), &peer) == 0);
    client = peer;
    assert(party__forwarded_client(headers, n, &trusted, &client) == 0);
    party__cidr_list_free(&trusted);
    return 0;
}
