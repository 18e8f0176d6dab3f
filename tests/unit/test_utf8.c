/* Tests for src/utf8.c: Markus Kuhn-style valid and invalid sequences,
 * incremental feeding split at every byte, and an exhaustive comparison of
 * short sequences against a straightforward reference decoder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "utf8.h"

/* The reference: decode one code point at a time, then check its range. */
static int reference_valid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        uint32_t cp, min;
        size_t n, k;
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

static int valid_str(const char *s) {
    return party__utf8_valid(s, strlen(s));
}

/* Feeds s in two pieces split at every position and checks that the final
 * state is the same as when fed whole; returns whether it is valid. */
static int valid_at_every_split(const char *s, size_t len) {
    uint32_t whole = party__utf8_feed(PARTY__UTF8_ACCEPT, s, len);
    size_t i, j;
    for (i = 0; i <= len; i++) {
        uint32_t st = party__utf8_feed(PARTY__UTF8_ACCEPT, s, i);
        st = party__utf8_feed(st, s + i, len - i);
        assert_int_equal(st, whole);
    }
    {
        uint32_t st = PARTY__UTF8_ACCEPT;
        for (j = 0; j < len; j++)
            st = party__utf8_feed(st, s + j, 1);
        assert_int_equal(st, whole);
    }
    return whole == PARTY__UTF8_ACCEPT;
}

static void test_empty_and_ascii_are_valid(void **state) {
    (void)state;
    assert_true(party__utf8_valid("", 0));
    assert_true(valid_str("hello, world"));
    assert_true(party__utf8_valid("\0\x7f", 2));
}

static void test_greek_kosme_is_valid(void **state) {
    (void)state;
    assert_true(valid_str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"));
}

static void test_first_and_last_code_points_of_each_length_are_valid(void **state) {
    (void)state;
    assert_true(party__utf8_valid("\x00", 1));
    assert_true(valid_str("\xc2\x80"));         /* U+0080 */
    assert_true(valid_str("\xe0\xa0\x80"));     /* U+0800 */
    assert_true(valid_str("\xf0\x90\x80\x80")); /* U+10000 */
    assert_true(valid_str("\x7f"));             /* U+007F */
    assert_true(valid_str("\xdf\xbf"));         /* U+07FF */
    assert_true(valid_str("\xef\xbf\xbf"));     /* U+FFFF */
    assert_true(valid_str("\xf4\x8f\xbf\xbf")); /* U+10FFFF, the maximum */
    assert_true(valid_str("\xed\x9f\xbf"));     /* U+D7FF, before surrogates */
    assert_true(valid_str("\xee\x80\x80"));     /* U+E000, after surrogates */
    assert_true(valid_str("\xef\xbf\xbd"));     /* U+FFFD */
    assert_true(valid_str("\xf3\xbf\xbf\xbf")); /* U+FFFFF */
}

static void test_above_max_code_point_is_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\xf4\x90\x80\x80")); /* U+110000 */
    assert_false(valid_str("\xf5\x80\x80\x80"));
    assert_false(valid_str("\xf7\xbf\xbf\xbf"));
    assert_false(valid_str("\xf8\x88\x80\x80\x80"));     /* 5-byte form */
    assert_false(valid_str("\xfc\x84\x80\x80\x80\x80")); /* 6-byte form */
    assert_false(valid_str("\xfe"));
    assert_false(valid_str("\xff"));
}

static void test_unexpected_continuation_bytes_are_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\x80"));
    assert_false(valid_str("\xbf"));
    assert_false(valid_str("a\x80\xbf"));
    assert_false(valid_str("\xc2\x80\x80"));
}

static void test_lonely_start_bytes_are_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\xc2 "));
    assert_false(valid_str("\xe1 "));
    assert_false(valid_str("\xf1 "));
    assert_false(valid_str("\xe1\x80 "));
}

static void test_truncated_sequences_are_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\xc2"));
    assert_false(valid_str("\xe0\xa0"));
    assert_false(valid_str("\xe1"));
    assert_false(valid_str("\xf0\x90\x80"));
    assert_false(valid_str("\xf4\x8f\xbf"));
    assert_false(valid_str("abc\xdf"));
}

static void test_overlong_forms_are_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\xc0\xaf"));         /* '/' in 2 bytes */
    assert_false(valid_str("\xe0\x80\xaf"));     /* '/' in 3 bytes */
    assert_false(valid_str("\xf0\x80\x80\xaf")); /* '/' in 4 bytes */
    assert_false(valid_str("\xc1\xbf"));         /* max overlong, 2 bytes */
    assert_false(valid_str("\xe0\x9f\xbf"));     /* max overlong, 3 bytes */
    assert_false(valid_str("\xf0\x8f\xbf\xbf")); /* max overlong, 4 bytes */
    assert_false(valid_str("\xc0\x80"));         /* overlong NUL */
    assert_false(valid_str("\xe0\x80\x80"));
    assert_false(valid_str("\xf0\x80\x80\x80"));
}

static void test_surrogates_are_invalid(void **state) {
    (void)state;
    assert_false(valid_str("\xed\xa0\x80"));             /* U+D800 */
    assert_false(valid_str("\xed\xad\xbf"));             /* U+DB7F */
    assert_false(valid_str("\xed\xae\x80"));             /* U+DB80 */
    assert_false(valid_str("\xed\xaf\xbf"));             /* U+DBFF */
    assert_false(valid_str("\xed\xb0\x80"));             /* U+DC00 */
    assert_false(valid_str("\xed\xbf\xbf"));             /* U+DFFF */
    assert_false(valid_str("\xed\xa0\x80\xed\xb0\x80")); /* a surrogate pair */
}

static void test_noncharacters_are_valid(void **state) {
    (void)state;
    assert_true(valid_str("\xef\xbf\xbe"));     /* U+FFFE */
    assert_true(valid_str("\xef\xb7\x90"));     /* U+FDD0 */
    assert_true(valid_str("\xf4\x8f\xbf\xbe")); /* U+10FFFE */
}

static void test_state_inside_a_sequence_is_neither_accept_nor_reject(void **state) {
    uint32_t st;
    (void)state;
    st = party__utf8_feed(PARTY__UTF8_ACCEPT, "\xf0\x9f", 2);
    assert_int_not_equal(st, PARTY__UTF8_ACCEPT);
    assert_int_not_equal(st, PARTY__UTF8_REJECT);
    st = party__utf8_feed(st, "\x98\x80", 2);
    assert_int_equal(st, PARTY__UTF8_ACCEPT);
}

static void test_reject_is_sticky(void **state) {
    uint32_t st;
    (void)state;
    st = party__utf8_feed(PARTY__UTF8_ACCEPT, "\xff", 1);
    assert_int_equal(st, PARTY__UTF8_REJECT);
    assert_int_equal(party__utf8_feed(st, "abc", 3), PARTY__UTF8_REJECT);
    assert_int_equal(party__utf8_feed(st, "", 0), PARTY__UTF8_REJECT);
}

static void test_unknown_state_is_rejected(void **state) {
    (void)state;
    assert_int_equal(party__utf8_feed(1000, "a", 1), PARTY__UTF8_REJECT);
}

static void test_split_at_every_byte_matches_whole(void **state) {
    static const char valid[] = "a\xc2\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf z";
    static const char bad_surrogate[] = "ab\xed\xa0\x80 cd";
    static const char bad_overlong[] = "\xe0\x80\xaf xyz";
    static const char truncated[] = "abc \xf0\x9f\x98";
    (void)state;
    assert_true(valid_at_every_split(valid, sizeof(valid) - 1));
    assert_false(valid_at_every_split(bad_surrogate, sizeof(bad_surrogate) - 1));
    assert_false(valid_at_every_split(bad_overlong, sizeof(bad_overlong) - 1));
    assert_false(valid_at_every_split(truncated, sizeof(truncated) - 1));
}

static void test_ascii_fast_path_stops_at_any_offset(void **state) {
    char s[40];
    size_t at;
    (void)state;
    for (at = 0; at < 32; at++) {
        memset(s, 'a', sizeof(s));
        s[at] = (char)0x80;
        assert_false(party__utf8_valid(s, sizeof(s)));
        memset(s, 'a', sizeof(s));
        s[at] = (char)0xc3;
        s[at + 1] = (char)0xa9;
        assert_true(party__utf8_valid(s, sizeof(s)));
        assert_false(party__utf8_valid(s, at + 1)); /* cut inside it */
    }
}

static void test_all_one_and_two_byte_sequences_match_reference(void **state) {
    unsigned char s[2];
    unsigned a, b;
    (void)state;
    for (a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        assert_int_equal(party__utf8_valid(s, 1), reference_valid(s, 1));
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            assert_int_equal(party__utf8_valid(s, 2), reference_valid(s, 2));
        }
    }
}

static void test_all_three_byte_sequences_from_lead_bytes_match_reference(void **state) {
    unsigned char s[3];
    unsigned a, b, c;
    (void)state;
    for (a = 0xC0; a < 256; a++) {
        s[0] = (unsigned char)a;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            for (c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                if (party__utf8_valid(s, 3) != reference_valid(s, 3))
                    fail_msg("mismatch on %02x %02x %02x", a, b, c);
            }
        }
    }
}

static void test_four_byte_sequences_match_reference(void **state) {
    static const unsigned char edges[] = {0x00, 0x7f, 0x80, 0x8f, 0x90,
                                          0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    unsigned char s[4];
    unsigned a, b;
    size_t c, d;
    (void)state;
    for (a = 0xE0; a < 256; a++) {
        s[0] = (unsigned char)a;
        for (b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            for (c = 0; c < sizeof(edges); c++) {
                s[2] = edges[c];
                for (d = 0; d < sizeof(edges); d++) {
                    s[3] = edges[d];
                    if (party__utf8_valid(s, 4) != reference_valid(s, 4))
                        fail_msg("mismatch on %02x %02x %02x %02x", a, b, s[2], s[3]);
                }
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_ascii_are_valid),
        cmocka_unit_test(test_greek_kosme_is_valid),
        cmocka_unit_test(test_first_and_last_code_points_of_each_length_are_valid),
        cmocka_unit_test(test_above_max_code_point_is_invalid),
        cmocka_unit_test(test_unexpected_continuation_bytes_are_invalid),
        cmocka_unit_test(test_lonely_start_bytes_are_invalid),
        cmocka_unit_test(test_truncated_sequences_are_invalid),
        cmocka_unit_test(test_overlong_forms_are_invalid),
        cmocka_unit_test(test_surrogates_are_invalid),
        cmocka_unit_test(test_noncharacters_are_valid),
        cmocka_unit_test(test_state_inside_a_sequence_is_neither_accept_nor_reject),
        cmocka_unit_test(test_reject_is_sticky),
        cmocka_unit_test(test_unknown_state_is_rejected),
        cmocka_unit_test(test_split_at_every_byte_matches_whole),
        cmocka_unit_test(test_ascii_fast_path_stops_at_any_offset),
        cmocka_unit_test(test_all_one_and_two_byte_sequences_match_reference),
        cmocka_unit_test(test_all_three_byte_sequences_from_lead_bytes_match_reference),
        cmocka_unit_test(test_four_byte_sequences_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
