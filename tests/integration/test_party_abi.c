/* Parties loaded from shared objects are checked against partyd's ABI
 * before any of their code runs: an object built against party.h 0.1 (no
 * party_abi) or exporting another ABI is refused with a message naming both
 * versions and partyd exits 1, from a flag or from the config file. The
 * objects built with PARTY_MODULE (probe, greeter) load in every other
 * integration test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <party.h>

#include "client.h"

static void assert_contains(const char *hay, const char *needle) {
    if (strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static void test_party_built_against_party_h_0_1_is_refused_and_partyd_exits_1(void **state) {
    static const char *const args[] = {"--party", "old=" OLD_ABI_PARTY_PATH, NULL};
    char expected[1024], *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 1);
    snprintf(expected, sizeof(expected),
             "partyd: --party old=%s: built against party.h 0.1 (no party_abi); this partyd is "
             "%s (ABI %d): rebuild the party against this party.h\n",
             OLD_ABI_PARTY_PATH, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
    assert_contains(err, expected);
    assert_null(strstr(err, "listening on"));
    free(err);
}

static void test_party_of_another_abi_is_refused_naming_both(void **state) {
    static const char *const args[] = {"--party", "future=" FUTURE_ABI_PARTY_PATH, NULL};
    char expected[1024], *err;
    (void)state;

    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 1);
    snprintf(expected, sizeof(expected),
             "partyd: --party future=%s: built against party.h ABI %d; this partyd is %s (ABI "
             "%d): rebuild the party against this party.h\n",
             FUTURE_ABI_PARTY_PATH, PARTY_ABI_VERSION + 1, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
    assert_contains(err, expected);
    assert_null(strstr(err, "listening on"));
    free(err);
}

static void test_party_path_in_the_config_file_is_checked_too(void **state) {
    char config[] = "/tmp/partyd-abi-config-XXXXXX";
    const char *args[] = {"--config", config, NULL};
    char *err;
    int fd;
    FILE *f;
    (void)state;

    fd = mkstemp(config);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "{\"parties\": {\"old\": {\"path\": \"%s\"}}}", OLD_ABI_PARTY_PATH);
    fclose(f);
    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 1);
    unlink(config);
    assert_contains(err, "built against party.h 0.1 (no party_abi)");
    assert_null(strstr(err, "listening on"));
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_party_built_against_party_h_0_1_is_refused_and_partyd_exits_1),
        cmocka_unit_test(test_party_of_another_abi_is_refused_naming_both),
        cmocka_unit_test(test_party_path_in_the_config_file_is_checked_too),
    };
    return cmocka_run_group_tests_name("party_abi", tests, NULL, NULL);
}
