/* The browser-origin allow-list (src/codecs/origin.c): which Origin values
 * each kind of entry lets through, what is never let through, and what a
 * malformed list says. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "origin.h"
#include "party.h"

static int allowed(const char *list, const char *origin) {
    return party__origin_allowed(list, party__slice_make(origin, strlen(origin)));
}

static void check_fails(const char *list, const char *says) {
    char why[300] = "";
    assert_int_equal(party__origin_list_check(list, "--allowed-origins", why, sizeof(why)),
                     PARTY_EINVAL);
    if (strstr(why, "--allowed-origins") == NULL || strstr(why, says) == NULL)
        fail_msg("%s: reason '%s' does not say '%s'", list, why, says);
}

static void check_ok(const char *list) {
    char why[300] = "";
    if (party__origin_list_check(list, "--allowed-origins", why, sizeof(why)) != 0)
        fail_msg("%s: %s", list, why);
}

static void test_exact_origin_matches_scheme_host_and_port(void **state) {
    const char *list = "https://app.example.com, http://localhost:8080";
    (void)state;
    check_ok(list);
    assert_true(allowed(list, "https://app.example.com"));
    assert_true(allowed(list, "HTTPS://App.Example.COM"));
    assert_true(allowed(list, "https://app.example.com:443"));
    assert_true(allowed(list, "http://localhost:8080"));
    assert_false(allowed(list, "http://app.example.com"));
    assert_false(allowed(list, "https://app.example.com:8443"));
    assert_false(allowed(list, "http://localhost"));
    assert_false(allowed(list, "http://localhost:8081"));
    assert_false(allowed(list, "https://evil-app.example.com"));
    assert_false(allowed(list, "https://app.example.com.evil.test"));
}

static void test_wildcard_matches_subdomains_only(void **state) {
    const char *list = "https://*.example.com";
    (void)state;
    check_ok(list);
    assert_true(allowed(list, "https://a.example.com"));
    assert_true(allowed(list, "https://a.b.example.com"));
    assert_false(allowed(list, "https://example.com"));
    assert_false(allowed(list, "https://.example.com"));
    assert_false(allowed(list, "https://aexample.com"));
    assert_false(allowed(list, "http://a.example.com"));
    assert_false(allowed(list, "https://a.example.com:8443"));
    assert_false(allowed(list, "https://a.example.com.evil.test"));
}

static void test_ipv6_and_ipv4_hosts_compare_as_written(void **state) {
    const char *list = "http://[::1]:3000,http://127.0.0.1:3000";
    (void)state;
    check_ok(list);
    assert_true(allowed(list, "http://[::1]:3000"));
    assert_true(allowed(list, "http://127.0.0.1:3000"));
    assert_false(allowed(list, "http://127.0.0.2:3000"));
}

static void test_what_is_never_allowed(void **state) {
    const char *list = "https://app.example.com";
    char long_origin[400];
    (void)state;
    assert_false(allowed(list, "null"));
    assert_false(allowed(list, ""));
    assert_false(allowed(list, "https://app.example.com https://app.example.com"));
    assert_false(allowed(list, "https://app.example.com/"));
    assert_false(allowed(list, "https://app.example.com/path"));
    assert_false(allowed(list, "https://user@app.example.com"));
    assert_false(allowed(list, "ws://app.example.com"));
    assert_false(allowed(list, "https://*.example.com"));
    assert_false(party__origin_allowed(list, party__slice_make(NULL, 0)));
    memcpy(long_origin, "https://", 8);
    memset(long_origin + 8, 'a', sizeof(long_origin) - 9);
    long_origin[sizeof(long_origin) - 1] = '\0';
    assert_false(allowed("https://*.a", long_origin));
}

static void test_no_list_allows_everything(void **state) {
    (void)state;
    assert_true(party__origin_allowed(NULL, party__slice_make("https://x.test", 14)));
    assert_true(party__origin_allowed(NULL, party__slice_make("null", 4)));
}

static void test_malformed_lists_say_what_is_wrong(void **state) {
    (void)state;
    check_fails("", "no origin");
    check_fails(" , ,", "no origin");
    check_fails("app.example.com", "not http:// or https://");
    check_fails("https://app.example.com/", "no path");
    check_fails("https://app.example.com:0", "port");
    check_fails("https://app.example.com:65536", "port");
    check_fails("https://app.example.com:", "port");
    check_fails("https://", "host");
    check_fails("https://*.", "host");
    check_fails("https://a..b", "host");
    check_fails("https://a b", "host");
    check_fails("https://*.[::1]", "host");
    check_fails("https://ok.test,ftp://x", "'ftp://x'");
    check_ok(" https://a.test , https://*.b.test:8443 ");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_origin_matches_scheme_host_and_port),
        cmocka_unit_test(test_wildcard_matches_subdomains_only),
        cmocka_unit_test(test_ipv6_and_ipv4_hosts_compare_as_written),
        cmocka_unit_test(test_what_is_never_allowed),
        cmocka_unit_test(test_no_list_allows_everything),
        cmocka_unit_test(test_malformed_lists_say_what_is_wrong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
