/* The ABI field of party_config and party_def (src/runtime.c):
 * party_config_init and PARTY_DEF_INIT record this header's ABI, 0 is read
 * as it, and a runtime refuses any other with a log line naming both ABIs.
 * Log lines are read by pointing stderr at a temporary file around the
 * call. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "party.h"
#include "party_test.h"

/* ---- stderr capture ---- */

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_start(void) {
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* What was written to stderr since capture_start (malloc'd, NUL-terminated);
 * stderr is the real one again. */
static char *capture_end(void) {
    off_t size;
    char *text;

    fflush(stderr);
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    size = lseek(fileno(capture_file), 0, SEEK_END);
    assert_true(size >= 0);
    text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fileno(capture_file), text, (size_t)size, 0), size);
    text[size] = '\0';
    fclose(capture_file);
    capture_file = NULL;
    return text;
}

static void assert_contains(const char *hay, const char *needle) {
    if (strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* "this libparty is 0.2.0 (ABI 2)", from the header's own numbers. */
static const char *this_libparty(void) {
    static char text[64];
    snprintf(text, sizeof(text), "this libparty is %s (ABI %d)", PARTY_VERSION_STRING,
             PARTY_ABI_VERSION);
    return text;
}

/* ---- the ABI field ---- */

static void test_config_init_records_this_headers_abi(void **state) {
    party_config cfg;
    (void)state;

    memset(&cfg, 0xff, sizeof(cfg));
    party_config_init(&cfg);
    assert_int_equal(cfg.abi, PARTY_ABI_VERSION);
}

static void test_def_init_records_this_headers_abi(void **state) {
    static const party_def def = {PARTY_DEF_INIT, .name = "abi"};
    (void)state;

    assert_int_equal(def.abi, PARTY_ABI_VERSION);
    assert_string_equal(def.name, "abi");
}

static void test_runtime_takes_a_config_of_its_abi_or_0(void **state) {
    party_config cfg;
    party_runtime *rt;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    party_runtime_free(rt);
    cfg.abi = 0;
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    party_runtime_free(rt);
}

static void test_runtime_refuses_a_config_of_a_newer_abi_naming_both(void **state) {
    party_config cfg;
    party_runtime *rt;
    char expected[64], *log;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    cfg.abi = PARTY_ABI_VERSION + 1;
    capture_start();
    rt = party_runtime_new(&cfg);
    log = capture_end();
    assert_null(rt);
    snprintf(expected, sizeof(expected), "the party_config is ABI %d;", PARTY_ABI_VERSION + 1);
    assert_contains(log, expected);
    assert_contains(log, this_libparty());
    free(log);
}

static void test_runtime_refuses_abi_1_which_had_no_field(void **state) {
    party_config cfg;
    party_runtime *rt;
    char *log;
    (void)state;

    party_config_init(&cfg);
    cfg.data_dir = NULL;
    cfg.abi = 1;
    capture_start();
    rt = party_runtime_new(&cfg);
    log = capture_end();
    assert_null(rt);
    assert_contains(log, "the party_config is ABI 1;");
    free(log);
}

static void test_harness_refuses_a_config_of_a_newer_abi(void **state) {
    party_config cfg;
    party_test *t;
    char *log;
    (void)state;

    party_config_init(&cfg);
    cfg.abi = PARTY_ABI_VERSION + 1;
    capture_start();
    t = party_test_new_with(&cfg);
    log = capture_end();
    assert_null(t);
    assert_contains(log, this_libparty());
    free(log);
}

static void test_add_takes_a_def_of_its_abi_or_0(void **state) {
    static const party_def current = {PARTY_DEF_INIT, .name = "current"};
    static const party_def zero = {.name = "zero"};
    party_test *t = party_test_new();
    party_test_response res;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &current), 0);
    assert_int_equal(party_test_add(t, &zero), 0);
    /* Registered: the room answers (404: no on_request), not the router
     * (400: unknown party). */
    assert_int_equal(party_test_request(t, "GET", "/parties/zero/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 404);
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_add_refuses_a_def_of_a_newer_abi_naming_both(void **state) {
    static const party_def newer = {.abi = PARTY_ABI_VERSION + 1, .name = "newer"};
    party_test *t = party_test_new();
    party_test_response res;
    char expected[64], *log;
    int r;
    (void)state;

    assert_non_null(t);
    capture_start();
    r = party_test_add(t, &newer);
    log = capture_end();
    assert_int_equal(r, PARTY_EINVAL);
    snprintf(expected, sizeof(expected), "a party_def of ABI %d;", PARTY_ABI_VERSION + 1);
    assert_contains(log, expected);
    assert_contains(log, this_libparty());
    free(log);
    /* Not registered: the router does not know the party. */
    assert_int_equal(party_test_request(t, "GET", "/parties/newer/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 400);
    party_test_response_free(&res);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_init_records_this_headers_abi),
        cmocka_unit_test(test_def_init_records_this_headers_abi),
        cmocka_unit_test(test_runtime_takes_a_config_of_its_abi_or_0),
        cmocka_unit_test(test_runtime_refuses_a_config_of_a_newer_abi_naming_both),
        cmocka_unit_test(test_runtime_refuses_abi_1_which_had_no_field),
        cmocka_unit_test(test_harness_refuses_a_config_of_a_newer_abi),
        cmocka_unit_test(test_add_takes_a_def_of_its_abi_or_0),
        cmocka_unit_test(test_add_refuses_a_def_of_a_newer_abi_naming_both),
    };
    return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}
