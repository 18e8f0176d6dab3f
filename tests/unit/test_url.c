/* Tests for src/url.c: percent-decoding and query lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "url.h"

static int decode(const char *in, char *out, size_t cap, int plus) {
    return party__url_decode(party__slice_make(in, strlen(in)), out, cap, plus);
}

static void test_percent_escapes_decode(void **state) {
    char out[64];
    (void)state;
    assert_int_equal(decode("hello%20world", out, sizeof(out), 0), 11);
    assert_string_equal(out, "hello world");
    assert_int_equal(decode("%E2%82%ac", out, sizeof(out), 0), 3);
    assert_string_equal(out, "\xe2\x82\xac");
}

static void test_plus_is_space_only_in_queries(void **state) {
    char out[64];
    (void)state;
    decode("a+b", out, sizeof(out), 1);
    assert_string_equal(out, "a b");
    decode("a+b", out, sizeof(out), 0);
    assert_string_equal(out, "a+b");
}

static void test_malformed_escapes_are_rejected(void **state) {
    char out[64];
    (void)state;
    assert_int_equal(decode("%", out, sizeof(out), 0), -1);
    assert_int_equal(decode("abc%2", out, sizeof(out), 0), -1);
    assert_int_equal(decode("%zz", out, sizeof(out), 0), -1);
}

static void test_nul_bytes_are_rejected_raw_or_escaped(void **state) {
    char out[64];
    static const char raw[] = {'a', '\0', 'b'};
    (void)state;
    assert_int_equal(decode("a%00b", out, sizeof(out), 0), -1);
    assert_int_equal(party__url_decode(party__slice_make(raw, 3), out, sizeof(out), 0), -1);
}

static void test_output_that_does_not_fit_is_rejected(void **state) {
    char out[4];
    (void)state;
    assert_int_equal(decode("abc", out, sizeof(out), 0), 3);
    assert_int_equal(decode("abcd", out, sizeof(out), 0), -1);
}

static void test_query_lookup_finds_first_match_by_decoded_name(void **state) {
    const char *q = "x=1&_pk=abc&_pk=def&%5Fid=7&flag";
    party__slice v;
    (void)state;
    v = party__url_query_find(party__slice_make(q, strlen(q)), "_pk");
    assert_non_null(v.ptr);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.ptr, "abc", 3);
    v = party__url_query_find(party__slice_make(q, strlen(q)), "_id");
    assert_int_equal(v.len, 1);
    assert_memory_equal(v.ptr, "7", 1);
    v = party__url_query_find(party__slice_make(q, strlen(q)), "flag");
    assert_non_null(v.ptr);
    assert_int_equal(v.len, 0);
    v = party__url_query_find(party__slice_make(q, strlen(q)), "missing");
    assert_null(v.ptr);
    v = party__url_query_find(party__slice_make("", 0), "x");
    assert_null(v.ptr);
}

/* RFC 3986 6.2.2.2: only escapes of unreserved bytes are decoded, so the
 * path means what it meant; malformed escapes refuse the whole path. */
static void test_decode_unreserved_keeps_other_escapes(void **state) {
    char out[64];
    party__slice norm;
    static const char in[] = "/p%61rties/ch%2Dat/a%2Fb%7E%41%25";
    (void)state;
    assert_int_equal(
        party__url_decode_unreserved(party__slice_make(in, strlen(in)), out, sizeof(out), &norm),
        0);
    assert_int_equal(norm.len, strlen("/parties/ch-at/a%2Fb~A%25"));
    assert_memory_equal(norm.ptr, "/parties/ch-at/a%2Fb~A%25", norm.len);
    assert_int_equal(
        party__url_decode_unreserved(party__slice_make("%4%41", 5), out, sizeof(out), &norm), -1);
    assert_int_equal(
        party__url_decode_unreserved(party__slice_make("a%4", 3), out, sizeof(out), &norm), -1);
    assert_int_equal(party__url_decode_unreserved(party__slice_make("abcd", 4), out, 3, &norm), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percent_escapes_decode),
        cmocka_unit_test(test_plus_is_space_only_in_queries),
        cmocka_unit_test(test_malformed_escapes_are_rejected),
        cmocka_unit_test(test_nul_bytes_are_rejected_raw_or_escaped),
        cmocka_unit_test(test_output_that_does_not_fit_is_rejected),
        cmocka_unit_test(test_query_lookup_finds_first_match_by_decoded_name),
        cmocka_unit_test(test_decode_unreserved_keeps_other_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
