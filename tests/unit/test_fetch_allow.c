/* The outbound allow-list (src/codecs/fetch_allow.c): what each kind of
 * entry lets through, what a malformed list says, and which addresses are
 * private or special (IPv4-mapped forms included) unless an IP or CIDR
 * entry covers them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "fetch_allow.h"
#include "party.h"

static party__allow *parse_ok(const char *text) {
    party__allow *allow = NULL;
    char why[300] = "";
    int r = party__allow_parse(text, &allow, why, sizeof(why));
    if (r != 0)
        fail_msg("%s: %s", text, why);
    assert_non_null(allow);
    return allow;
}

static void parse_fails(const char *text, const char *says) {
    party__allow *allow = (party__allow *)1;
    char why[300] = "";
    assert_int_equal(party__allow_parse(text, &allow, why, sizeof(why)), PARTY_EINVAL);
    assert_null(allow);
    if (strstr(why, says) == NULL)
        fail_msg("%s: \"%s\" does not say \"%s\"", text, why, says);
    assert_non_null(strstr(why, "--fetch-allow"));
}

/* family 4 or 6 from text. */
static int addr_of(const char *text, unsigned char out[16]) {
    memset(out, 0, 16);
    if (inet_pton(AF_INET, text, out) == 1)
        return 4;
    assert_int_equal(inet_pton(AF_INET6, text, out), 1);
    return 6;
}

static int special(const char *text) {
    unsigned char a[16];
    int family = addr_of(text, a);
    return party__addr_special(family, a);
}

static int covered(const party__allow *allow, const char *text, int port) {
    unsigned char a[16];
    int family = addr_of(text, a);
    return party__allow_addr(allow, family, a, port);
}

static void test_empty_list_allows_nothing(void **state) {
    party__allow *allow = parse_ok(NULL);
    (void)state;
    assert_int_equal(party__allow_count(allow), 0);
    assert_false(party__allow_url(allow, 1, "api.example.com", 443, "/"));
    party__allow_free(allow);
    allow = parse_ok(" , ,");
    assert_int_equal(party__allow_count(allow), 0);
    party__allow_free(allow);
    assert_false(party__allow_url(NULL, 0, "a.example", 80, "/"));
}

static void test_prefix_covers_its_scheme_host_port_and_path(void **state) {
    party__allow *allow = parse_ok("https://API.example.com/v1/, http://h.example:8080/exact");
    (void)state;
    assert_int_equal(party__allow_count(allow), 2);
    assert_true(party__allow_url(allow, 1, "api.example.com", 443, "/v1/items"));
    assert_false(party__allow_url(allow, 1, "api.example.com", 443, "/v2/items"));
    assert_false(party__allow_url(allow, 0, "api.example.com", 80, "/v1/items"));
    assert_false(party__allow_url(allow, 1, "api.example.com", 8443, "/v1/items"));
    assert_false(party__allow_url(allow, 1, "api.example.com.evil.example", 443, "/v1/x"));
    /* Without a trailing slash, a whole segment. */
    assert_true(party__allow_url(allow, 0, "h.example", 8080, "/exact"));
    assert_true(party__allow_url(allow, 0, "h.example", 8080, "/exact/more"));
    assert_false(party__allow_url(allow, 0, "h.example", 8080, "/exactly"));
    party__allow_free(allow);
}

static void test_host_covers_any_scheme_port_and_path(void **state) {
    party__allow *allow = parse_ok("Hooks.Example.com");
    (void)state;
    assert_true(party__allow_url(allow, 1, "hooks.example.com", 443, "/a"));
    assert_true(party__allow_url(allow, 0, "hooks.example.com", 8080, "/"));
    assert_false(party__allow_url(allow, 1, "x.hooks.example.com", 443, "/"));
    party__allow_free(allow);
}

static void test_ip_and_cidr_entries_cover_literals_with_their_port(void **state) {
    party__allow *allow = parse_ok("127.0.0.1:8080,10.0.0.0/8,[::1]:9000,fd00::/8");
    (void)state;
    assert_int_equal(party__allow_count(allow), 4);
    assert_true(party__allow_url(allow, 0, "127.0.0.1", 8080, "/"));
    assert_false(party__allow_url(allow, 0, "127.0.0.1", 8081, "/"));
    assert_true(party__allow_url(allow, 1, "10.1.2.3", 443, "/"));
    assert_true(party__allow_url(allow, 0, "::1", 9000, "/"));
    assert_true(party__allow_url(allow, 0, "fd12::1", 80, "/"));
    assert_false(party__allow_url(allow, 0, "11.0.0.1", 80, "/"));
    /* A name is not an address entry's. */
    assert_false(party__allow_url(allow, 0, "localhost", 8080, "/"));
    assert_true(covered(allow, "127.0.0.1", 8080));
    assert_false(covered(allow, "127.0.0.1", 8081));
    assert_true(covered(allow, "::ffff:127.0.0.1", 8080)); /* the mapped form too */
    assert_true(covered(allow, "10.200.0.1", 1));
    assert_false(covered(allow, "192.168.1.1", 80));
    party__allow_free(allow);
}

static void test_star_allows_any_url_but_covers_no_address(void **state) {
    party__allow *allow = parse_ok("*,localhost,https://x.example/");
    (void)state;
    assert_true(party__allow_url(allow, 1, "anything.example", 443, "/x"));
    assert_false(covered(allow, "127.0.0.1", 80));
    assert_false(covered(allow, "::1", 80));
    party__allow_free(allow);
}

static void test_private_and_special_addresses(void **state) {
    static const char *const yes[] = {
        "0.0.0.0",         "0.1.2.3",     "10.0.0.1",        "100.64.0.1", "100.127.255.1",
        "127.0.0.1",       "127.255.0.9", "169.254.169.254", "172.16.0.1", "172.31.255.255",
        "192.168.0.1",     "224.0.0.1",   "255.255.255.255", "::1",        "::",
        "fc00::1",         "fdff::1",     "fe80::1",         "febf::1",    "::ffff:127.0.0.1",
        "::ffff:10.0.0.1", "::127.0.0.1", "ff02::1"};
    static const char *const no[] = {"8.8.8.8",     "100.63.255.255", "100.128.0.1",
                                     "172.15.0.1",  "172.32.0.1",     "192.167.1.1",
                                     "169.253.0.1", "1.1.1.1",        "2001:4860:4860::8888",
                                     "fec0::1",     "::ffff:8.8.8.8"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!special(yes[i]))
            fail_msg("%s should be special", yes[i]);
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (special(no[i]))
            fail_msg("%s should not be special", no[i]);
}

static void test_malformed_lists_say_which_entry_and_why(void **state) {
    (void)state;
    parse_fails("ftp://x.example/", "only http:// and https://");
    parse_fails("https://x.example/a?b", "'?'");
    parse_fails("https://user@x.example/", "no query, fragment or user");
    parse_fails("https://x.example:0/", "port");
    parse_fails("https://x.example:99999/", "port");
    parse_fails("https://[::1/", "unclosed");
    parse_fails("10.0.0.0/33", "prefix length");
    parse_fails("10.0.0.1/8", "bits set past");
    parse_fails("::1:8080x", "not a URL prefix");
    parse_fails("2130706433", "not a URL prefix");
    parse_fails("bad_host.example", "not a URL prefix");
    parse_fails("ok.example, exa mple.com", "exa mple.com");
    parse_fails("127.0.0.1:", "port");
}

static void test_too_many_entries_are_refused(void **state) {
    char text[PARTY__ALLOW_MAX_ENTRIES * 4 + 16] = "";
    party__allow *allow = NULL;
    char why[200];
    int i;
    (void)state;
    for (i = 0; i <= PARTY__ALLOW_MAX_ENTRIES; i++)
        strcat(text, "a.b,");
    assert_int_equal(party__allow_parse(text, &allow, why, sizeof(why)), PARTY_EINVAL);
    assert_null(allow);
    assert_non_null(strstr(why, "more than"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_list_allows_nothing),
        cmocka_unit_test(test_prefix_covers_its_scheme_host_port_and_path),
        cmocka_unit_test(test_host_covers_any_scheme_port_and_path),
        cmocka_unit_test(test_ip_and_cidr_entries_cover_literals_with_their_port),
        cmocka_unit_test(test_star_allows_any_url_but_covers_no_address),
        cmocka_unit_test(test_private_and_special_addresses),
        cmocka_unit_test(test_malformed_lists_say_which_entry_and_why),
        cmocka_unit_test(test_too_many_entries_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
