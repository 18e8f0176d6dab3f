/* Fuzzes the connection record decoder (what an upgrading process reads
 * from the one it takes over from). Checks that decoded fields lie inside
 * the input, and that a record decoded, encoded again and decoded once
 * more has the same fields. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conn_record.h"

static void inside(party__slice s, const uint8_t *data, size_t size) {
    if (s.len > 0)
        assert((const uint8_t *)s.ptr >= data && (const uint8_t *)s.ptr + s.len <= data + size);
}

static int same(party__slice a, party__slice b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    party__conn_record rec, again;
    size_t used, n, used2, i;
    char *out;

    if (party__conn_record_decode((const char *)data, size, &rec, &used) != 0)
        return 0;
    assert(used <= size);
    inside(rec.id, data, size);
    inside(rec.uri, data, size);
    inside(rec.state, data, size);
    inside(rec.output, data, size);
    inside(rec.input, data, size);
    inside(rec.msg, data, size);
    n = party__conn_record_size(&rec);
    out = malloc(n);
    assert(out != NULL);
    assert(party__conn_record_encode(&rec, out, n) == n);
    assert(party__conn_record_encode(&rec, out, n - 1) == 0);
    assert(party__conn_record_decode(out, n, &again, &used2) == 0 && used2 == n);
    assert(again.kind == rec.kind && again.flags == rec.flags);
    assert(again.peer_family == rec.peer_family && again.peer_port == rec.peer_port);
    assert(memcmp(again.peer_addr, rec.peer_addr, sizeof(rec.peer_addr)) == 0);
    assert(same(again.id, rec.id) && same(again.uri, rec.uri) && same(again.party, rec.party));
    assert(same(again.room_id, rec.room_id) && same(again.room_name, rec.room_name));
    assert(again.n_tags == rec.n_tags);
    for (i = 0; i < rec.n_tags; i++)
        assert(same(again.tags[i], rec.tags[i]));
    assert(same(again.state, rec.state) && same(again.output, rec.output));
    assert(same(again.input, rec.input) && same(again.msg, rec.msg));
    assert(again.msg_opcode == rec.msg_opcode && again.utf8_state == rec.utf8_state);
    free(out);
    return 0;
}
