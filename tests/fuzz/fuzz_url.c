/* Fuzzes percent-decoding and query lookup, the code that turns request
 * targets into room names and connection ids. Checks that decoding never
 * writes past its buffer, never yields a NUL, and that a found query value
 * lies inside the query. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char out[300];
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
    found = party__url_query_find(in, "_pk");
    if (found.ptr != NULL)
        assert(found.ptr >= in.ptr && found.ptr + found.len <= in.ptr + in.len);
    return 0;
}
