/* partyd --config FILE: a JSON file of the flags' names plus per-party
 * options; flags on the command line win over it; mistakes are refused at
 * start-up with a message naming the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"

static char config_file[] = "/tmp/partyd-config-XXXXXX";

static void write_config(const char *json) {
    int fd = mkstemp(config_file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
}

static void test_config_file_sets_options_and_per_party_cors(void **state) {
    const char *args[] = {"--config", config_file, NULL};
    http_response res;
    partyd *d;
    tconn *first, *second;
    (void)state;

    write_config("{\"cors\": true, \"max-room-conns\": 1,"
                 " \"parties\": {\"chat\": {\"cors\": false}}}");
    d = partyd_start(args);
    assert_non_null(d);
    /* cors from the file: on for echo, off for chat by its own option. */
    http_expect_request(partyd_port(d), "OPTIONS", "/parties/echo/x", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 204);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"), "*");
    http_response_free(&res);
    http_expect_request(partyd_port(d), "OPTIONS", "/parties/chat/x", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 405);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    /* max-room-conns from the file. */
    first = ws_open(partyd_port(d), "/parties/echo/solo?_pk=one");
    second = tconn_open(partyd_port(d), 0);
    memset(&res, 0, sizeof(res));
    assert_int_equal(ws_handshake(second, "/parties/echo/solo?_pk=two", NULL, NULL, 0, &res), 503);
    http_response_free(&res);
    tconn_close(second);
    tconn_close(first);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(config_file);
}

static void test_command_line_flags_win_over_the_file(void **state) {
    const char *args[] = {"--config", config_file, "--max-room-conns", "5", NULL};
    http_response res;
    partyd *d;
    tconn *a, *b;
    (void)state;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config("{\"max-room-conns\": 1}");
    d = partyd_start(args);
    assert_non_null(d);
    a = ws_open(partyd_port(d), "/parties/echo/duo?_pk=a");
    b = tconn_open(partyd_port(d), 0);
    memset(&res, 0, sizeof(res));
    assert_int_equal(ws_handshake(b, "/parties/echo/duo?_pk=b", NULL, NULL, 0, &res), 0);
    http_response_free(&res);
    tconn_close(a);
    tconn_close(b);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(config_file);
}

static void test_per_party_props_reach_on_start(void **state) {
    const char *args[] = {"--config", config_file, NULL};
    partyd *d;
    char *record;
    (void)state;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config("{\"parties\": {\"probe\": {\"props\": {\"greeting\": \"hi\", \"n\": [1, 2]}}}}");
    d = partyd_start(args);
    assert_non_null(d);
    record = probe_record(partyd_port(d), "with-props");
    assert_non_null(strstr(record, "\"props\":\"{\\\"greeting\\\":\\\"hi\\\",\\\"n\\\":[1,2]}\""));
    free(record);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(config_file);
}

static void test_builtins_from_the_file_as_an_array_and_the_flag_wins(void **state) {
    const char *args[] = {"--config", config_file, NULL};
    const char *args_all[] = {"--config", config_file, "--builtins", "all", NULL};
    http_response res;
    partyd *d;
    tconn *c;
    (void)state;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config("{\"builtins\": [\"echo\"], \"parties\": {\"echo\": {\"cors\": true}}}");
    d = partyd_start(args);
    assert_non_null(d);
    c = ws_open(partyd_port(d), "/parties/echo/x");
    tconn_close(c);
    http_expect_get(partyd_port(d), "/parties/chat/x", &res);
    assert_int_equal(res.status, 400);
    assert_string_equal(res.body, "unknown party\n");
    http_response_free(&res);
    assert_true(partyd_wait_stderr(d, "built-in parties: echo\n", TC_TIMEOUT_MS));
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    /* --builtins on the command line replaces the file's list. */
    d = partyd_start(args_all);
    assert_non_null(d);
    http_expect_get(partyd_port(d), "/parties/chat/x", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(config_file);
}

/* A number given for an option that keeps its text (a token, a prefix)
 * is the number's text for as long as partyd runs. */
static void test_numbers_for_text_options_are_kept(void **state) {
    const char *args[] = {"--config", config_file, NULL};
    http_response res;
    partyd *d;
    (void)state;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config("{\"admin-token\": 20240607, \"prefix\": 7}");
    d = partyd_start(args);
    assert_non_null(d);
    http_expect_request(partyd_port(d), "GET", "/_partyd/rooms",
                        "Authorization: Bearer 20240607\r\n", NULL, 0, &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    http_expect_request(partyd_port(d), "GET", "/_partyd/rooms", "Authorization: Bearer 2024\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 401);
    http_response_free(&res);
    http_expect_get(partyd_port(d), "/7/counter/numbered", &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"count\":0"));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(config_file);
}

static void expect_refused(const char *json, const char *message) {
    const char *args[] = {"--config", config_file, NULL};
    partyd *d;
    char *err;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config(json);
    d = partyd_spawn(args);
    assert_non_null(d);
    assert_int_equal(partyd_wait_exit(d, 10000), 2);
    err = partyd_stderr(d);
    if (strstr(err, message) == NULL)
        fail_msg("expected '%s' in: %s", message, err);
    free(err);
    partyd_free(d);
    unlink(config_file);
}

static void test_mistakes_in_the_file_are_refused_with_the_key_named(void **state) {
    (void)state;
    expect_refused("{\"max-mesage-bytes\": \"1M\"}", "unknown key 'max-mesage-bytes'");
    expect_refused("{\"port\": \"eighty\"}", "'eighty' is not a port number");
    expect_refused("{\"cors\": \"yes\"}", "expected true or false for 'cors'");
    expect_refused("{\"parties\": {\"chat\": {\"hibernat\": true}}}",
                   "party 'chat': unknown or mistyped option 'hibernat'");
    expect_refused("{\"port\": 1,\n \"x\": }", "not valid JSON (near line 2)");
    expect_refused("[1, 2]", "the top level must be an object");
    expect_refused("{\"builtins\": [\"echo\", \"nope\"]}",
                   "--builtins: 'nope' is not a built-in party (the built-ins: echo, chat, "
                   "counter, reminder, demo, yjs, todos; or all, or none)");
    expect_refused("{\"fetch-allow\": \"ok.example, bad host\"}",
                   "--fetch-allow: --fetch-allow entry \"bad host\"");
    expect_refused("{\"parties\": {\"reminder\": {\"fetch-allow\": \"ftp://x.example/\"}}}",
                   "party 'reminder': fetch-allow: --fetch-allow entry \"ftp://x.example/\": only "
                   "http:// and https://");
    expect_refused("{\"builtins\": [\"echo\", 1]}",
                   "expected a string or an array of names for 'builtins'");
}

static void test_options_for_a_party_that_is_not_served_are_refused(void **state) {
    (void)state;
    /* Neither loaded nor built in: the message names it and lists the
     * parties there are (the built-ins, then those loaded). */
    expect_refused("{\"parties\": {\"chta\": {\"cors\": true}}}",
                   "\"parties\" has options for 'chta', but no party has that name (served: "
                   "echo, chat, counter, reminder, demo, yjs, todos, probe, greeter)");
    /* A built-in that --builtins leaves out, from the file or the flag. */
    expect_refused("{\"builtins\": \"echo\", \"parties\": {\"chat\": {\"cors\": true}}}",
                   "\"parties\" has options for 'chat', a built-in party that --builtins turns "
                   "off");
}

static void test_options_for_a_builtin_turned_off_by_the_flag_are_refused(void **state) {
    const char *args[] = {"--config", config_file, "--builtins", "none", NULL};
    partyd *d;
    char *err;
    (void)state;

    strcpy(config_file, "/tmp/partyd-config-XXXXXX");
    write_config("{\"parties\": {\"counter\": {\"hibernate\": true}}}");
    d = partyd_spawn(args);
    assert_non_null(d);
    assert_int_equal(partyd_wait_exit(d, 10000), 2);
    err = partyd_stderr(d);
    assert_non_null(
        strstr(err, "options for 'counter', a built-in party that --builtins turns off"));
    free(err);
    partyd_free(d);
    unlink(config_file);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_file_sets_options_and_per_party_cors),
        cmocka_unit_test(test_command_line_flags_win_over_the_file),
        cmocka_unit_test(test_per_party_props_reach_on_start),
        cmocka_unit_test(test_numbers_for_text_options_are_kept),
        cmocka_unit_test(test_mistakes_in_the_file_are_refused_with_the_key_named),
        cmocka_unit_test(test_builtins_from_the_file_as_an_array_and_the_flag_wins),
        cmocka_unit_test(test_options_for_a_party_that_is_not_served_are_refused),
        cmocka_unit_test(test_options_for_a_builtin_turned_off_by_the_flag_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
