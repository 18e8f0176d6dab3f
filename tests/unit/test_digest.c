/* Tests for src/digest.c: SHA-1 and SHA-256 against FIPS 180 test vectors,
 * parts hashed as their concatenation, a reused state giving the same
 * answers call after call, and the one-off path (no state) agreeing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "digest.h"

static void hex(const unsigned char *b, size_t n, char *out) {
    party__hex_encode(b, n, out);
}

static void test_sha1_and_sha256_of_abc_match_the_standard_vectors(void **state) {
    party__digest *d = party__digest_new();
    party__slice abc = party__slice_make("abc", 3);
    unsigned char out1[20], out256[32];
    char text[65];
    (void)state;

    assert_non_null(d);
    assert_int_equal(party__digest_sha1(d, &abc, 1, out1), 0);
    hex(out1, 20, text);
    assert_string_equal(text, "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_int_equal(party__digest_sha256(d, &abc, 1, out256), 0);
    hex(out256, 32, text);
    assert_string_equal(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    party__digest_free(d);
}

static void test_parts_hash_as_their_concatenation_and_state_is_reusable(void **state) {
    party__digest *d = party__digest_new();
    party__slice parts[3] = {party__slice_make("a", 1), party__slice_make(NULL, 0),
                             party__slice_make("bc", 2)};
    party__slice whole = party__slice_make("abc", 3);
    unsigned char a[32], b[32], c[32];
    int i;
    (void)state;

    assert_int_equal(party__digest_sha256(d, &whole, 1, a), 0);
    /* SHA-1 in between: the one context serves both algorithms. */
    for (i = 0; i < 3; i++) {
        unsigned char one[20];
        assert_int_equal(party__digest_sha1(d, parts, 3, one), 0);
        assert_int_equal(party__digest_sha256(d, parts, 3, b), 0);
        assert_memory_equal(a, b, 32);
    }
    assert_int_equal(party__digest_sha256(NULL, parts, 3, c), 0);
    assert_memory_equal(a, c, 32);
    party__digest_free(d);
    party__digest_free(NULL);
}

static void test_sha1_without_state_matches_with_state(void **state) {
    party__digest *d = party__digest_new();
    party__slice key = party__slice_make("dGhlIHNhbXBsZSBub25jZQ==", 24);
    unsigned char x[20], y[20];
    (void)state;

    assert_int_equal(party__digest_sha1(d, &key, 1, x), 0);
    assert_int_equal(party__digest_sha1(NULL, &key, 1, y), 0);
    assert_memory_equal(x, y, 20);
    party__digest_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_and_sha256_of_abc_match_the_standard_vectors),
        cmocka_unit_test(test_parts_hash_as_their_concatenation_and_state_is_reusable),
        cmocka_unit_test(test_sha1_without_state_matches_with_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
