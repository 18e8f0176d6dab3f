/* Tests for src/codecs/conn_record.c: the versioned record an upgrade hands
 * a connection over in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conn_record.h"
#include "party.h"

static party__slice str(const char *s) {
    return party__slice_make(s, strlen(s));
}

static void sample(party__conn_record *rec) {
    memset(rec, 0, sizeof(*rec));
    rec->kind = PARTY__CONN_RECORD_WS;
    rec->flags = PARTY__CONN_RECORD_READONLY;
    rec->peer_family = 6;
    memset(rec->peer_addr, 0xab, 16);
    rec->peer_port = 54321;
    rec->id = str("conn-1");
    rec->uri = str("/parties/chat/lobby?_pk=conn-1");
    rec->party = str("chat");
    rec->room_id = str("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    rec->room_name = str("lobby");
    rec->tags[0] = str("admin");
    rec->tags[1] = str("blue");
    rec->n_tags = 2;
    rec->state = party__slice_make("\0\1\2", 3);
    rec->output = str("\x81\x02hi");
    rec->input = str("\x81\x85");
    rec->msg_opcode = 1;
    rec->utf8_state = 7;
    rec->msg = str("partial ");
}

static int same(party__slice a, const char *b, size_t n) {
    return a.len == n && memcmp(a.ptr, b, n) == 0;
}

static void test_a_record_round_trips_every_field(void **state) {
    party__conn_record rec, back;
    char buf[512];
    size_t n, used;
    (void)state;
    sample(&rec);
    n = party__conn_record_encode(&rec, buf, sizeof(buf));
    assert_int_equal(n, party__conn_record_size(&rec));
    assert_int_equal(party__conn_record_decode(buf, n, &back, &used), 0);
    assert_int_equal(used, n);
    assert_int_equal(back.version, PARTY__CONN_RECORD_VERSION);
    assert_int_equal(back.kind, PARTY__CONN_RECORD_WS);
    assert_int_equal(back.flags, PARTY__CONN_RECORD_READONLY);
    assert_int_equal(back.peer_family, 6);
    assert_int_equal(back.peer_port, 54321);
    assert_memory_equal(back.peer_addr, rec.peer_addr, 16);
    assert_true(same(back.id, "conn-1", 6));
    assert_true(same(back.room_name, "lobby", 5));
    assert_int_equal(back.n_tags, 2);
    assert_true(same(back.tags[1], "blue", 4));
    assert_true(same(back.state, "\0\1\2", 3));
    assert_true(same(back.output, "\x81\x02hi", 4));
    assert_true(same(back.input, "\x81\x85", 2));
    assert_int_equal(back.msg_opcode, 1);
    assert_int_equal(back.utf8_state, 7);
    assert_true(same(back.msg, "partial ", 8));
}

static void test_records_follow_each_other_in_one_buffer(void **state) {
    party__conn_record rec, back;
    char buf[1024];
    size_t n1, n2, used;
    (void)state;
    sample(&rec);
    n1 = party__conn_record_encode(&rec, buf, sizeof(buf));
    memset(&rec, 0, sizeof(rec));
    rec.kind = PARTY__CONN_RECORD_HTTP;
    rec.input = str("GET / HT");
    n2 = party__conn_record_encode(&rec, buf + n1, sizeof(buf) - n1);
    assert_true(n1 > 0 && n2 > 0);
    assert_int_equal(party__conn_record_decode(buf, n1 + n2, &back, &used), 0);
    assert_int_equal(used, n1);
    assert_int_equal(party__conn_record_decode(buf + used, n2, &back, &used), 0);
    assert_int_equal(back.kind, PARTY__CONN_RECORD_HTTP);
    assert_true(same(back.input, "GET / HT", 8));
}

static void test_an_unknown_version_is_refused_and_named(void **state) {
    party__conn_record rec, back;
    char buf[512];
    size_t n, used;
    (void)state;
    sample(&rec);
    n = party__conn_record_encode(&rec, buf, sizeof(buf));
    buf[5] = (char)(PARTY__CONN_RECORD_VERSION + 1); /* the version's low byte */
    assert_int_equal(party__conn_record_peek_version(buf, n), PARTY__CONN_RECORD_VERSION + 1);
    assert_int_equal(party__conn_record_decode(buf, n, &back, &used), PARTY_ESTATE);
    assert_int_equal(back.version, PARTY__CONN_RECORD_VERSION + 1);
}

static void test_an_unknown_field_is_skipped(void **state) {
    party__conn_record rec, back;
    char buf[512];
    size_t n, used;
    uint32_t body;
    (void)state;
    memset(&rec, 0, sizeof(rec));
    rec.kind = PARTY__CONN_RECORD_HTTP;
    rec.input = str("GET");
    n = party__conn_record_encode(&rec, buf, sizeof(buf));
    /* A field of type 200 with 2 bytes, as a newer build may add. */
    memcpy(buf + n, "\xc8\0\0\0\2xy", 7);
    body = (uint32_t)(n + 7 - PARTY__CONN_RECORD_HEADER);
    buf[8] = (char)(body >> 24);
    buf[9] = (char)(body >> 16);
    buf[10] = (char)(body >> 8);
    buf[11] = (char)body;
    assert_int_equal(party__conn_record_decode(buf, n + 7, &back, &used), 0);
    assert_int_equal(used, n + 7);
    assert_true(same(back.input, "GET", 3));
}

static void test_truncated_or_malformed_records_are_refused(void **state) {
    party__conn_record rec, back;
    char buf[512];
    size_t n, used, cut;
    (void)state;
    sample(&rec);
    n = party__conn_record_encode(&rec, buf, sizeof(buf));
    for (cut = 0; cut < n; cut++)
        assert_int_equal(party__conn_record_decode(buf, cut, &back, &used), PARTY_EINVAL);
    assert_int_equal(party__conn_record_encode(&rec, buf, n - 1), 0);
    /* A WebSocket record without its room is not a record. */
    rec.room_id = party__slice_make(NULL, 0);
    n = party__conn_record_encode(&rec, buf, sizeof(buf));
    assert_int_equal(party__conn_record_decode(buf, n, &back, &used), PARTY_EINVAL);
    /* Not a record at all. */
    assert_int_equal(party__conn_record_decode("GET / HTTP/1.1\r\n", 16, &back, &used),
                     PARTY_EINVAL);
    /* Too many tags. */
    sample(&rec);
    rec.n_tags = PARTY__CONN_RECORD_MAX_TAGS + 1;
    assert_int_equal(party__conn_record_encode(&rec, buf, sizeof(buf)), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_record_round_trips_every_field),
        cmocka_unit_test(test_records_follow_each_other_in_one_buffer),
        cmocka_unit_test(test_an_unknown_version_is_refused_and_named),
        cmocka_unit_test(test_an_unknown_field_is_skipped),
        cmocka_unit_test(test_truncated_or_malformed_records_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
