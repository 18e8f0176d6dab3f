/* Tests for parties/yjs/yjs_codec.c: lib0 varUint edge cases, and merge, state vector,
 * diff and the deleted-content pass on small updates written byte by byte
 * (the same bytes yjs 13.6 produces for these edits). The differential test
 * against yjs itself is tests/yjs/codec.test.mjs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "yjs_codec.h"

/* Client 5 typed "hello" into root text "t" (one item), then client 5
 * deleted clock 1..2 ("el"). */
static const uint8_t HELLO[] = {0x01, 0x01, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74,
                                0x05, 'h',  'e',  'l',  'l',  'o',  0x00};
static const uint8_t HELLO_DELETE[] = {0x00, 0x01, 0x05, 0x01, 0x01, 0x02};
/* Client 5 appended " w" after "hello": origin 5:4. */
static const uint8_t HELLO_MORE[] = {0x01, 0x01, 0x05, 0x05, 0x84, 0x05,
                                     0x04, 0x02, ' ',  'w',  0x00};
/* Client 9 typed "a😀b" (4 UTF-16 units) into root text "t". */
static const uint8_t EMOJI[] = {0x01, 0x01, 0x09, 0x00, 0x04, 0x01, 0x01, 0x74,
                                0x06, 'a',  0xf0, 0x9f, 0x98, 0x80, 'b',  0x00};

static void expect_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len) {
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
}

static void test_varuint_reads_lib0_encoding(void **state) {
    static const uint8_t bytes[] = {0x00, 0x7f, 0x80, 0x01, 0xff, 0xff, 0x03};
    yjs_reader r = yjs_reader_make(bytes, sizeof(bytes));
    uint64_t v;
    (void)state;

    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_int_equal(v, 127);
    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_int_equal(v, 128);
    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_int_equal(v, 65535);
    assert_int_equal(yjs_read_uint(&r, &v), PARTY_EINVAL);
}

static void test_varuint_refuses_truncated_and_unsafe_values(void **state) {
    static const uint8_t truncated[] = {0x80, 0x80};
    /* 2^53: one more than JavaScript holds exactly. */
    static const uint8_t too_big[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10};
    static const uint8_t max_safe[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
    static const uint8_t endless[] = {0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    yjs_reader r;
    uint64_t v;
    (void)state;

    r = yjs_reader_make(truncated, sizeof(truncated));
    assert_int_equal(yjs_read_uint(&r, &v), PARTY_EINVAL);
    r = yjs_reader_make(too_big, sizeof(too_big));
    assert_int_equal(yjs_read_uint(&r, &v), PARTY_EINVAL);
    r = yjs_reader_make(max_safe, sizeof(max_safe));
    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_true(v == (UINT64_C(1) << 53) - 1);
    r = yjs_reader_make(endless, sizeof(endless));
    assert_int_equal(yjs_read_uint(&r, &v), PARTY_EINVAL);
}

static void test_writer_round_trips_and_stops_at_its_maximum(void **state) {
    yjs_writer w;
    yjs_reader r;
    uint8_t *out;
    size_t len;
    uint64_t v;
    const uint8_t *p;
    size_t n;
    (void)state;

    yjs_writer_init(&w, 64);
    yjs_write_uint(&w, 300);
    yjs_write_array(&w, "abc", 3);
    assert_int_equal(yjs_writer_finish(&w, &out, &len), 0);
    r = yjs_reader_make(out, len);
    assert_int_equal(yjs_read_uint(&r, &v), 0);
    assert_int_equal(v, 300);
    assert_int_equal(yjs_read_array(&r, &p, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "abc", 3);
    free(out);

    yjs_writer_init(&w, 4);
    yjs_write_array(&w, "abcdef", 6);
    yjs_write_uint(&w, 1);
    assert_int_equal(yjs_writer_finish(&w, &out, &len), PARTY_ETOOBIG);
    assert_null(out);
}

static void test_state_vector_of_an_update(void **state) {
    static const uint8_t want[] = {0x01, 0x05, 0x05};
    static const uint8_t empty[] = {0x00, 0x00};
    uint8_t *sv;
    size_t len;
    (void)state;

    assert_int_equal(yjs_state_vector(HELLO, sizeof(HELLO), &sv, &len), 0);
    expect_bytes(sv, len, want, sizeof(want));
    free(sv);
    assert_int_equal(yjs_state_vector(empty, sizeof(empty), &sv, &len), 0);
    expect_bytes(sv, len, (const uint8_t *)"\x00", 1);
    free(sv);
}

static void test_state_vector_stops_at_a_missing_start(void **state) {
    uint8_t *sv;
    size_t len;
    (void)state;

    /* HELLO_MORE starts at clock 5: nothing contiguous from 0. */
    assert_int_equal(yjs_state_vector(HELLO_MORE, sizeof(HELLO_MORE), &sv, &len), 0);
    expect_bytes(sv, len, (const uint8_t *)"\x00", 1);
    free(sv);
}

static void test_state_vector_counts_utf16_units(void **state) {
    static const uint8_t want[] = {0x01, 0x09, 0x04};
    uint8_t *sv;
    size_t len;
    (void)state;

    assert_int_equal(yjs_state_vector(EMOJI, sizeof(EMOJI), &sv, &len), 0);
    expect_bytes(sv, len, want, sizeof(want));
    free(sv);
}

static void test_merge_joins_structs_and_delete_sets(void **state) {
    /* The two inserts of client 5 in one section, then the delete set. */
    static const uint8_t want[] = {0x01, 0x02, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74, 0x05,
                                   'h',  'e',  'l',  'l',  'o',  0x84, 0x05, 0x04, 0x02,
                                   ' ',  'w',  0x01, 0x05, 0x01, 0x01, 0x02};
    const void *in[3] = {HELLO_MORE, HELLO_DELETE, HELLO};
    size_t lens[3] = {sizeof(HELLO_MORE), sizeof(HELLO_DELETE), sizeof(HELLO)};
    uint8_t *out;
    size_t len;
    (void)state;

    assert_int_equal(yjs_merge(in, lens, 3, &out, &len), 0);
    expect_bytes(out, len, want, sizeof(want));
    free(out);
}

static void test_merge_keeps_a_gap_as_a_skip(void **state) {
    /* Clock 0..4 and 7..8 of client 5: a Skip of 2 between. */
    static const uint8_t later[] = {0x01, 0x01, 0x05, 0x07, 0x84, 0x05, 0x06, 0x02, 'x', 'y', 0x00};
    static const uint8_t want[] = {0x01, 0x03, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74,
                                   0x05, 'h',  'e',  'l',  'l',  'o',  0x0a, 0x02,
                                   0x84, 0x05, 0x06, 0x02, 'x',  'y',  0x00};
    const void *in[2] = {later, HELLO};
    size_t lens[2] = {sizeof(later), sizeof(HELLO)};
    uint8_t *out, *sv;
    size_t len, sv_len;
    (void)state;

    assert_int_equal(yjs_merge(in, lens, 2, &out, &len), 0);
    expect_bytes(out, len, want, sizeof(want));
    /* The state vector never claims what is missing. */
    assert_int_equal(yjs_state_vector(out, len, &sv, &sv_len), 0);
    expect_bytes(sv, sv_len, (const uint8_t *)"\x01\x05\x05", 3);
    free(sv);
    free(out);
}

static void test_merge_is_idempotent(void **state) {
    const void *in[2] = {HELLO, HELLO};
    size_t lens[2] = {sizeof(HELLO), sizeof(HELLO)};
    uint8_t *out;
    size_t len;
    (void)state;

    assert_int_equal(yjs_merge(in, lens, 2, &out, &len), 0);
    expect_bytes(out, len, HELLO, sizeof(HELLO));
    free(out);
    assert_int_equal(yjs_merge(NULL, NULL, 0, &out, &len), 0);
    expect_bytes(out, len, (const uint8_t *)"\x00\x00", 2);
    free(out);
}

static void test_diff_cuts_an_item_at_the_peer_clock(void **state) {
    /* The peer has clock 2 of client 5: "llo" remains, written with its
     * origin 5:1 and no parent. */
    static const uint8_t sv[] = {0x01, 0x05, 0x02};
    static const uint8_t want[] = {0x01, 0x01, 0x05, 0x02, 0x84, 0x05,
                                   0x01, 0x03, 'l',  'l',  'o',  0x00};
    uint8_t *out;
    size_t len;
    (void)state;

    assert_int_equal(yjs_diff(HELLO, sizeof(HELLO), sv, sizeof(sv), &out, &len), 0);
    expect_bytes(out, len, want, sizeof(want));
    free(out);
}

static void test_diff_turns_a_cut_surrogate_pair_into_replacement_char(void **state) {
    /* Clock 2 is between the halves of U+1F600: the low half left alone
     * becomes U+FFFD (one unit, like the half it replaces). */
    static const uint8_t sv[] = {0x01, 0x09, 0x02};
    static const uint8_t want[] = {0x01, 0x01, 0x09, 0x02, 0x84, 0x09, 0x01,
                                   0x04, 0xef, 0xbf, 0xbd, 'b',  0x00};
    uint8_t *out;
    size_t len;
    (void)state;

    assert_int_equal(yjs_diff(EMOJI, sizeof(EMOJI), sv, sizeof(sv), &out, &len), 0);
    expect_bytes(out, len, want, sizeof(want));
    free(out);
}

static void test_diff_carries_the_whole_delete_set(void **state) {
    static const uint8_t sv[] = {0x01, 0x05, 0x05};
    const void *in[2] = {HELLO, HELLO_DELETE};
    size_t lens[2] = {sizeof(HELLO), sizeof(HELLO_DELETE)};
    uint8_t *doc, *out;
    size_t doc_len, len;
    (void)state;

    assert_int_equal(yjs_merge(in, lens, 2, &doc, &doc_len), 0);
    assert_int_equal(yjs_diff(doc, doc_len, sv, sizeof(sv), &out, &len), 0);
    expect_bytes(out, len, HELLO_DELETE, sizeof(HELLO_DELETE));
    free(out);
    free(doc);
}

static void test_gc_pass_replaces_deleted_content(void **state) {
    /* "hello" with all of it deleted: the string becomes deleted content
     * of length 5, the delete set stays. */
    static const uint8_t deleted[] = {0x01, 0x01, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74, 0x05, 'h',
                                      'e',  'l',  'l',  'o',  0x01, 0x05, 0x01, 0x00, 0x05};
    static const uint8_t want[] = {0x01, 0x01, 0x05, 0x00, 0x01, 0x01, 0x01,
                                   0x74, 0x05, 0x01, 0x05, 0x01, 0x00, 0x05};
    uint8_t *out;
    size_t len;
    (void)state;

    assert_int_equal(yjs_gc_deleted(deleted, sizeof(deleted), &out, &len), 0);
    expect_bytes(out, len, want, sizeof(want));
    free(out);
    /* Partly deleted items keep their content. */
    {
        const void *in[2] = {HELLO, HELLO_DELETE};
        size_t lens[2] = {sizeof(HELLO), sizeof(HELLO_DELETE)};
        uint8_t *doc;
        size_t doc_len;
        assert_int_equal(yjs_merge(in, lens, 2, &doc, &doc_len), 0);
        assert_int_equal(yjs_gc_deleted(doc, doc_len, &out, &len), 0);
        expect_bytes(out, len, doc, doc_len);
        free(out);
        free(doc);
    }
}

static void test_malformed_updates_are_refused(void **state) {
    static const uint8_t bad_utf8[] = {0x01, 0x01, 0x05, 0x00, 0x04, 0x01,
                                       0x01, 0x74, 0x02, 0xc3, 0x28, 0x00};
    static const uint8_t zero_length[] = {0x01, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t unknown_content[] = {0x01, 0x01, 0x05, 0x00, 0x0b, 0x01, 0x01, 0x74, 0x00};
    static const uint8_t bad_json[] = {0x01, 0x01, 0x05, 0x00, 0x05, 0x01, 0x01,
                                       0x74, 0x03, '{',  'x',  '}',  0x00};
    static const uint8_t bad_type[] = {0x01, 0x01, 0x05, 0x00, 0x07, 0x01, 0x01, 0x74, 0x07, 0x00};
    uint8_t deep[600];
    size_t i, n = 0;
    uint8_t *out = (uint8_t *)"untouched";
    size_t len;
    (void)state;

    assert_int_equal(yjs_update_check(HELLO, sizeof(HELLO)), 0);
    for (i = 0; i < sizeof(HELLO); i++)
        assert_int_equal(yjs_update_check(HELLO, i), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(bad_utf8, sizeof(bad_utf8)), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(zero_length, sizeof(zero_length)), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(unknown_content, sizeof(unknown_content)), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(bad_json, sizeof(bad_json)), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(bad_type, sizeof(bad_type)), PARTY_EINVAL);
    /* ContentAny nested far deeper than the limit. */
    memcpy(deep, "\x01\x01\x05\x00\x08\x01\x01\x74\x01", 9);
    n = 9;
    while (n < sizeof(deep) - 3) {
        deep[n++] = 117; /* array of one */
        deep[n++] = 1;
    }
    deep[n++] = 126;
    deep[n++] = 0;
    assert_int_equal(yjs_update_check(deep, n), PARTY_EINVAL);
    assert_int_equal(yjs_state_vector(bad_utf8, sizeof(bad_utf8), &out, &len), PARTY_EINVAL);
    assert_null(out);
}

/* An update of n GC structs of one client, 1 clock unit each (3-byte
 * header: n < 2^21 takes 3 varUint bytes). */
static uint8_t *many_gcs(uint8_t client, size_t n, size_t *len) {
    uint8_t *u = malloc(8 + 2 * n);
    size_t at = 0, i;
    assert_non_null(u);
    assert_true(n >= (1u << 14) && n < (1u << 21));
    u[at++] = 1;
    u[at++] = (uint8_t)((n & 0x7f) | 0x80);
    u[at++] = (uint8_t)(((n >> 7) & 0x7f) | 0x80);
    u[at++] = (uint8_t)(n >> 14);
    u[at++] = client;
    u[at++] = 0;
    for (i = 0; i < n; i++) {
        u[at++] = 0;
        u[at++] = 1;
    }
    u[at++] = 0;
    *len = at;
    return u;
}

static void test_merge_stops_parsing_at_the_struct_cap(void **state) {
    /* Two inputs of 1.1 Mi structs pass the cap of 2 Mi together: the merge
     * stops there with PARTY_ETOOBIG, before it reads the third input (which
     * is malformed, so reading it would give PARTY_EINVAL). */
    size_t n = 1100 * 1024, len1, len2;
    uint8_t *a = many_gcs(1, n, &len1), *b = many_gcs(2, n, &len2);
    const void *in[3] = {a, b, HELLO};
    size_t lens[3] = {len1, len2, sizeof(HELLO) - 2};
    uint8_t *out = (uint8_t *)"untouched";
    size_t out_len, count;
    (void)state;

    assert_int_equal(yjs_update_measure(a, len1, &count, NULL), 0);
    assert_int_equal(count, n);
    assert_int_equal(yjs_merge(in, lens, 3, &out, &out_len), PARTY_ETOOBIG);
    assert_null(out);
    /* Each alone merges (adjacent GCs join). */
    assert_int_equal(yjs_merge(in, lens, 1, &out, &out_len), 0);
    free(out);
    free(a);
    free(b);
}

static void test_json_is_checked_as_json_parse_would(void **state) {
    static const char *const good[] = {
        "0",
        "-0",
        "1.5",
        "-12e+3",
        "1E-2",
        "{}",
        " [1, 2.0e1, null, true] ",
        "{\"a\":\"x\\n\\u00e9\\/\"}",
        "\"\u00e9\"",
        "\t{\"b\": [ ]}\r\n",
    };
    static const char *const bad[] = {
        "01",      "1.",        "-.5", ".5",   "+1",  "1e",   "1e+", "-",   "\"a\nb\"", "\"\x01\"",
        "\"\\x\"", "\"\\u12\"", "{}x", "[1]]", "\f1", "[1,]", "",    "nul", "\"abc",
    };
    /* Embed content: info 5, parent "t", the JSON as a varString. */
    uint8_t update[32] = {0x01, 0x01, 0x05, 0x00, 0x05, 0x01, 0x01, 0x74, 0x02, '0', '1', 0x00};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (yjs_json_check(good[i], strlen(good[i])) != 0)
            fail_msg("refused: %s", good[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (yjs_json_check(bad[i], strlen(bad[i])) != PARTY_EINVAL)
            fail_msg("accepted: %s", bad[i]);
    }
    /* A NUL byte, then more: cJSON alone would stop at the NUL. */
    assert_int_equal(yjs_json_check("{}\0x", 4), PARTY_EINVAL);
    assert_int_equal(yjs_update_check(update, 12), PARTY_EINVAL);
    update[10] = ' ';
    assert_int_equal(yjs_update_check(update, 12), 0);
}

static void test_empty_update_is_recognised(void **state) {
    (void)state;
    assert_true(yjs_update_is_empty("\x00\x00", 2));
    assert_false(yjs_update_is_empty(HELLO, sizeof(HELLO)));
    assert_false(yjs_update_is_empty(HELLO_DELETE, sizeof(HELLO_DELETE)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varuint_reads_lib0_encoding),
        cmocka_unit_test(test_varuint_refuses_truncated_and_unsafe_values),
        cmocka_unit_test(test_writer_round_trips_and_stops_at_its_maximum),
        cmocka_unit_test(test_state_vector_of_an_update),
        cmocka_unit_test(test_state_vector_stops_at_a_missing_start),
        cmocka_unit_test(test_state_vector_counts_utf16_units),
        cmocka_unit_test(test_merge_joins_structs_and_delete_sets),
        cmocka_unit_test(test_merge_keeps_a_gap_as_a_skip),
        cmocka_unit_test(test_merge_is_idempotent),
        cmocka_unit_test(test_diff_cuts_an_item_at_the_peer_clock),
        cmocka_unit_test(test_diff_turns_a_cut_surrogate_pair_into_replacement_char),
        cmocka_unit_test(test_diff_carries_the_whole_delete_set),
        cmocka_unit_test(test_gc_pass_replaces_deleted_content),
        cmocka_unit_test(test_malformed_updates_are_refused),
        cmocka_unit_test(test_empty_update_is_recognised),
        cmocka_unit_test(test_json_is_checked_as_json_parse_would),
        cmocka_unit_test(test_merge_stops_parsing_at_the_struct_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
