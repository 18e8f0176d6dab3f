/* Tests for src/codecs/proxy.c: PROXY protocol v1 and v2 headers, whole,
 * cut at every byte, and malformed; and src/codecs/addr.c's CIDR lists,
 * which decide whose forwarding headers are believed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "party.h"
#include "proxy.h"

static const char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                             0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: ver_cmd, fam, then body (len bytes). Returns its length. */
static size_t v2(char *out, unsigned char ver_cmd, unsigned char fam, const void *body,
                 size_t len) {
    memcpy(out, sig, 12);
    out[12] = (char)ver_cmd;
    out[13] = (char)fam;
    out[14] = (char)(len >> 8);
    out[15] = (char)(len & 0xff);
    memcpy(out + 16, body, len);
    return 16 + len;
}

/* Parses data in a heap block of exactly its length, so ASan sees any
 * read past it. */
static int parse_exact(const char *data, size_t len, party__proxy_header *h, const char **err) {
    char *copy = malloc(len > 0 ? len : 1);
    int r;
    assert_non_null(copy);
    memcpy(copy, data, len);
    r = party__proxy_parse(copy, len, h, err);
    free(copy);
    return r;
}

/* Every strict prefix of a valid header needs more; the whole is done. */
static void assert_needs_more_until_whole(const char *data, size_t len) {
    party__proxy_header h;
    const char *err;
    size_t n;
    for (n = 0; n < len; n++)
        assert_int_equal(parse_exact(data, n, &h, &err), PARTY__PROXY_AGAIN);
    assert_int_equal(parse_exact(data, len, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.len, len);
}

static const char *text(const party__addr *a) {
    static char buf[PARTY__ADDR_TEXT_MAX];
    return party__addr_text(a, buf, sizeof(buf));
}

static void test_v1_tcp4_gives_source_and_length(void **state) {
    const char *in = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n";
    party__proxy_header h;
    const char *err;
    (void)state;
    assert_int_equal(party__proxy_parse(in, strlen(in), &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.len, strlen("PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"));
    assert_string_equal(text(&h.source), "203.0.113.7");
    assert_int_equal(h.source.port, 56324);
    assert_string_equal(text(&h.dest), "192.0.2.1");
    assert_int_equal(h.dest.port, 443);
    assert_needs_more_until_whole(in, h.len);
}

static void test_v1_tcp6_gives_source(void **state) {
    const char *in = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
    party__proxy_header h;
    const char *err;
    (void)state;
    assert_int_equal(party__proxy_parse(in, strlen(in), &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.source.family, PARTY__ADDR_V6);
    assert_string_equal(text(&h.source), "2001:db8::7");
    assert_int_equal(h.source.port, 65535);
    assert_int_equal(h.dest.port, 0);
    assert_needs_more_until_whole(in, strlen(in));
}

static void test_v1_unknown_is_local_and_skips_its_line(void **state) {
    const char *in = "PROXY UNKNOWN ffff::1 whatever\r\n";
    party__proxy_header h;
    const char *err;
    (void)state;
    assert_int_equal(party__proxy_parse(in, strlen(in), &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.len, strlen(in));
    assert_int_equal(party__proxy_parse("PROXY UNKNOWN\r\n", 15, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.local, 1);
}

static void test_v1_malformed_lines_are_refused_with_a_reason(void **state) {
    static const char *const bad[] = {
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",       /* a field missing */
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443 1\r\n", /* one too many */
        "PROXY TCP4 203.0.113.7  192.0.2.1 56324 443\r\n",  /* two spaces */
        "PROXY TCP4 2001:db8::7 192.0.2.1 56324 443\r\n",   /* family mismatch */
        "PROXY TCP6 203.0.113.7 192.0.2.1 56324 443\r\n",   /* family mismatch */
        "PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",   /* port too big */
        "PROXY TCP4 203.0.113.7 192.0.2.1 0443 443\r\n",    /* leading zero */
        "PROXY TCP4 203.0.113.7 192.0.2.1 -1 443\r\n",      /* sign */
        "PROXY TCP4 203.0.113.777 192.0.2.1 1 443\r\n",     /* not an address */
        "PROXY UDP4 203.0.113.7 192.0.2.1 1 443\r\n",       /* protocol */
        "PROXY TCP4 203.0.113.7 192.0.2.1 1 443\n",         /* LF alone */
        "GET / HTTP/1.1\r\n",                               /* no header at all */
        "PROXY\r\n",                                        /* prefix broken */
    };
    party__proxy_header h;
    const char *err;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        assert_int_equal(parse_exact(bad[i], strlen(bad[i]), &h, &err), PARTY__PROXY_ERROR);
        assert_non_null(err);
    }
}

static void test_v1_without_crlf_in_107_bytes_is_refused(void **state) {
    char in[200];
    party__proxy_header h;
    const char *err;
    (void)state;
    memset(in, 'x', sizeof(in));
    memcpy(in, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse_exact(in, 106, &h, &err), PARTY__PROXY_AGAIN);
    assert_int_equal(parse_exact(in, 107, &h, &err), PARTY__PROXY_ERROR);
    assert_string_equal(err, "PROXY v1 line longer than 107 bytes");
}

static void test_v2_proxy_ipv4_with_tlvs_skipped(void **state) {
    /* addresses, then a TLV (type 0x01 ALPN "h2") and a NOOP TLV */
    static const unsigned char body[] = {203,  0,    113, 7, 192, 0,   2,    1, 0xdc, 0x04, 0x01,
                                         0xbb, 0x01, 0,   2, 'h', '2', 0x04, 0, 1,    0};
    char in[64];
    size_t n = v2(in, 0x21, 0x11, body, sizeof(body));
    party__proxy_header h;
    const char *err;
    (void)state;
    memcpy(in + n, "GET", 3);
    assert_int_equal(party__proxy_parse(in, n + 3, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_int_equal(h.len, n);
    assert_string_equal(text(&h.source), "203.0.113.7");
    assert_int_equal(h.source.port, 0xdc04);
    assert_int_equal(h.dest.port, 443);
    assert_needs_more_until_whole(in, n);
}

static void test_v2_proxy_ipv6(void **state) {
    unsigned char body[36] = {0x20, 0x01, 0x0d, 0xb8};
    char in[64];
    size_t n;
    party__proxy_header h;
    const char *err;
    (void)state;
    body[15] = 7;
    body[16] = 0x20;
    body[17] = 0x01;
    body[31] = 1;
    body[32] = 0x12;
    body[33] = 0x34;
    n = v2(in, 0x21, 0x21, body, sizeof(body));
    assert_int_equal(party__proxy_parse(in, n, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.source.family, PARTY__ADDR_V6);
    assert_string_equal(text(&h.source), "2001:db8::7");
    assert_int_equal(h.source.port, 0x1234);
    assert_needs_more_until_whole(in, n);
}

static void test_v2_local_is_local_whatever_its_body(void **state) {
    static const unsigned char body[] = {1, 2, 3};
    char in[32];
    size_t n = v2(in, 0x20, 0x00, body, sizeof(body));
    party__proxy_header h;
    const char *err;
    (void)state;
    assert_int_equal(party__proxy_parse(in, n, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.len, n);
    /* LOCAL with no body at all: HAProxy's health checks */
    n = v2(in, 0x20, 0x00, body, 0);
    assert_int_equal(party__proxy_parse(in, n, &h, &err), PARTY__PROXY_DONE);
    assert_int_equal(h.len, 16);
    /* a PROXY header of a unix socket: the peer is not an IP client */
    {
        unsigned char unix_body[216] = {0};
        char big[240];
        n = v2(big, 0x21, 0x31, unix_body, sizeof(unix_body));
        assert_int_equal(party__proxy_parse(big, n, &h, &err), PARTY__PROXY_DONE);
        assert_int_equal(h.local, 1);
    }
}

static void test_v2_malformed_headers_are_refused_early(void **state) {
    static const unsigned char body[12] = {0};
    char in[32];
    party__proxy_header h;
    const char *err;
    (void)state;
    v2(in, 0x11, 0x11, body, sizeof(body)); /* version 1 in a v2 header */
    assert_int_equal(parse_exact(in, 16, &h, &err), PARTY__PROXY_ERROR);
    v2(in, 0x22, 0x11, body, sizeof(body)); /* command 2 */
    assert_int_equal(parse_exact(in, 16, &h, &err), PARTY__PROXY_ERROR);
    v2(in, 0x21, 0x41, body, sizeof(body)); /* family 4 */
    assert_int_equal(parse_exact(in, 16, &h, &err), PARTY__PROXY_ERROR);
    v2(in, 0x21, 0x11, body, 11); /* IPv4 addresses need 12 bytes */
    assert_int_equal(parse_exact(in, 16, &h, &err), PARTY__PROXY_ERROR);
    assert_string_equal(err, "PROXY v2 IPv4 addresses do not fit its length");
    v2(in, 0x21, 0x21, body, 12); /* IPv6 addresses need 36 */
    assert_int_equal(parse_exact(in, 16, &h, &err), PARTY__PROXY_ERROR);
    memcpy(in, sig, 12);
    in[5] = 'X'; /* signature broken inside */
    assert_int_equal(parse_exact(in, 6, &h, &err), PARTY__PROXY_ERROR);
}

static void test_v2_long_body_needs_all_of_it(void **state) {
    char *in = malloc(PARTY__PROXY_MAX);
    unsigned char *body = calloc(1, 65535);
    party__proxy_header h;
    const char *err;
    size_t n;
    (void)state;
    assert_non_null(in);
    assert_non_null(body);
    body[0] = 10;
    n = v2(in, 0x21, 0x11, body, 65535);
    assert_int_equal(n, PARTY__PROXY_MAX);
    assert_int_equal(parse_exact(in, n - 1, &h, &err), PARTY__PROXY_AGAIN);
    assert_int_equal(parse_exact(in, n, &h, &err), PARTY__PROXY_DONE);
    assert_string_equal(text(&h.source), "10.0.0.0");
    free(in);
    free(body);
}

static void test_cidr_lists_match_networks_and_addresses(void **state) {
    party__cidr_list list;
    party__addr a;
    (void)state;
    assert_int_equal(
        party__cidr_list_parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32,172.16.0.1/12", &list), 0);
    assert_int_equal(list.n, 4);
#define MATCH(s)                                                                                   \
    (party__addr_parse(party__slice_make(s, strlen(s)), &a) == 0 &&                                \
     party__cidr_list_match(&list, &a))
    assert_true(MATCH("10.255.1.2"));
    assert_false(MATCH("11.0.0.1"));
    assert_true(MATCH("192.0.2.7"));
    assert_false(MATCH("192.0.2.8"));
    assert_true(MATCH("2001:db8:ffff::1"));
    assert_false(MATCH("2001:db9::1"));
    assert_true(MATCH("172.31.255.255")); /* /12 from a host address */
    assert_false(MATCH("172.32.0.0"));
#undef MATCH
    party__cidr_list_free(&list);
    assert_int_equal(party__cidr_list_parse("10.0.0.0/33", &list), PARTY_EINVAL);
    assert_int_equal(party__cidr_list_parse("10.0.0/8", &list), PARTY_EINVAL);
    assert_int_equal(party__cidr_list_parse("::1/129", &list), PARTY_EINVAL);
    assert_int_equal(party__cidr_list_parse("10.0.0.0/", &list), PARTY_EINVAL);
    assert_int_equal(party__cidr_list_parse("", &list), 0);
    assert_int_equal(list.n, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4_gives_source_and_length),
        cmocka_unit_test(test_v1_tcp6_gives_source),
        cmocka_unit_test(test_v1_unknown_is_local_and_skips_its_line),
        cmocka_unit_test(test_v1_malformed_lines_are_refused_with_a_reason),
        cmocka_unit_test(test_v1_without_crlf_in_107_bytes_is_refused),
        cmocka_unit_test(test_v2_proxy_ipv4_with_tlvs_skipped),
        cmocka_unit_test(test_v2_proxy_ipv6),
        cmocka_unit_test(test_v2_local_is_local_whatever_its_body),
        cmocka_unit_test(test_v2_malformed_headers_are_refused_early),
        cmocka_unit_test(test_v2_long_body_needs_all_of_it),
        cmocka_unit_test(test_cidr_lists_match_networks_and_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
