/* Fuzzes the PROXY protocol parser, the first code a connection's bytes
 * meet on a --proxy-protocol listener. Checks that a header never claims
 * more bytes than it was given, that an error always says why, that a
 * result does not change when more bytes follow a whole header, and that
 * every prefix of a whole header asks for more. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    party__proxy_header h, again;
    const char *err;
    int r = party__proxy_parse((const char *)data, size, &h, &err);

    if (r == PARTY__PROXY_ERROR) {
        assert(err != NULL);
        return 0;
    }
    if (r == PARTY__PROXY_AGAIN)
        return 0;
    assert(r == PARTY__PROXY_DONE);
    assert(h.len > 0 && h.len <= size && h.len <= PARTY__PROXY_MAX);
    assert(h.version == 1 || h.version == 2);
    assert(h.local || h.source.family == PARTY__ADDR_V4 || h.source.family == PARTY__ADDR_V6);
    /* The header alone parses the same. */
    assert(party__proxy_parse((const char *)data, h.len, &again, &err) == PARTY__PROXY_DONE);
    assert(again.len == h.len && again.local == h.local &&
           memcmp(&again.source, &h.source, sizeof(h.source)) == 0);
    /* A cut header needs more (checked at a few cuts: all would be slow). */
    if (h.len > 1) {
        size_t cut = h.len - 1;
        assert(party__proxy_parse((const char *)data, cut, &again, &err) == PARTY__PROXY_AGAIN);
        cut = h.len / 2;
        assert(party__proxy_parse((const char *)data, cut, &again, &err) == PARTY__PROXY_AGAIN);
    }
    return 0;
}
