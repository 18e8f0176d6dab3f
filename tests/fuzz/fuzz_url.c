/* Fuzzes percent-decoding and query lookup, the code that turns request
 * targets into room names and connection ids. Checks that decoding never
 * writes past its buffer, never yields a NUL, and that a found query value
 * lies inside the query; that decoding only the escapes of unreserved bytes
 * (the router's path equivalence) decodes to the same bytes as decoding all
 * of them, and is done once: a second pass changes nothing. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char out[300], norm_out[300], again_out[300], full2[300];
    party__slice norm, again;
    party__slice in = party__slice_make((const char *)data, size);
    party__slice found;
    int n;

    n = party__url_decode(in, out, sizeof(out), size > 0 && (data[0] & 1));
    if (n >= 0) {
        assert((size_t)n < sizeof(out));
        assert(out[n] == '\0');
        assert(memchr(out, '\0', (size_t)n) == NULL);
        assert((size_t)n <= size);
    }
    if (party__url_decode_unreserved(in, norm_out, sizeof(norm_out), &norm) == 0) {
        int n2;
        assert(norm.len <= size);
        n2 = party__url_decode(norm, full2, sizeof(full2), 0);
        n = party__url_decode(in, out, sizeof(out), 0);
        assert(n == n2);
        if (n >= 0)
            assert(memcmp(out, full2, (size_t)n) == 0);
        assert(party__url_decode_unreserved(norm, again_out, sizeof(again_out), &again) == 0);
        assert(again.len == norm.len && memcmp(again.ptr, norm.ptr, norm.len) == 0);
    } else {
        assert(size > sizeof(norm_out) || party__url_decode(in, out, sizeof(out), 0) < 0);
    }
    found = party__url_query_find(in, "_pk");
    if (found.ptr != NULL)
        assert(found.ptr >= in.ptr && found.ptr + found.len <= in.ptr + in.len);
    return 0;
}
