/* fuzz_yjs: any bytes as a Yjs v1 update. Whatever the codec accepts, its
 * own results must be accepted again; merging is idempotent (a merge merged
 * again gives the same bytes); the deleted-content pass keeps the state
 * vector; a diff against the update's own state vector, merged back in,
 * changes nothing. The first two bytes (little endian) say how long the
 * update is (0 or too long: all the rest); what follows it is also tried
 * as a second update and as a state vector. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "yjs_codec.h"

static void must(int ok) {
    if (!ok)
        abort();
}

static int same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *m1 = NULL, *m2 = NULL, *sv = NULL, *sv2 = NULL, *gc = NULL, *d = NULL, *two = NULL;
    size_t m1_len, m2_len, sv_len, sv2_len, gc_len, d_len, two_len, cut;
    const void *in[2];
    size_t lens[2];

    if (size < 2)
        return 0;
    cut = (size_t)data[0] | (size_t)data[1] << 8;
    if (cut == 0 || cut > size - 2)
        cut = size - 2;
    in[0] = data + 2;
    lens[0] = cut;
    in[1] = data + 2 + cut;
    lens[1] = size - 2 - cut;

    /* The tail as a state vector for a diff, and as a second update. */
    if (yjs_diff(in[0], lens[0], in[1], lens[1], &d, &d_len) == 0)
        must(yjs_update_check(d, d_len) == 0);
    free(d);
    d = NULL;
    if (yjs_merge(in, lens, 2, &two, &two_len) == 0)
        must(yjs_update_check(two, two_len) == 0);
    free(two);

    if (yjs_update_check(in[0], lens[0]) != 0) {
        must(yjs_merge(in, lens, 1, &m1, &m1_len) != 0 && m1 == NULL);
        return 0;
    }
    must(yjs_merge(in, lens, 1, &m1, &m1_len) == 0);
    must(yjs_update_check(m1, m1_len) == 0);
    {
        const void *again[1] = {m1};
        must(yjs_merge(again, &m1_len, 1, &m2, &m2_len) == 0);
        must(same(m1, m1_len, m2, m2_len));
    }
    must(yjs_state_vector(m1, m1_len, &sv, &sv_len) == 0);
    must(yjs_gc_deleted(m1, m1_len, &gc, &gc_len) == 0);
    must(yjs_state_vector(gc, gc_len, &sv2, &sv2_len) == 0);
    must(same(sv, sv_len, sv2, sv2_len));
    must(yjs_diff(m1, m1_len, sv, sv_len, &d, &d_len) == 0);
    must(yjs_update_check(d, d_len) == 0);
    {
        const void *parts[2] = {m1, d};
        size_t part_lens[2] = {m1_len, d_len};
        free(m2);
        m2 = NULL;
        must(yjs_merge(parts, part_lens, 2, &m2, &m2_len) == 0);
        must(same(m1, m1_len, m2, m2_len));
    }
    free(m1);
    free(m2);
    free(sv);
    free(sv2);
    free(gc);
    free(d);
    return 0;
}
