/* Routing hooks and CORS in a real partyd. The probe party's
 * before_connect / before_request hooks deny, redirect or add a header as
 * the query asks; CORS is on for every party with --cors, or for probe
 * alone with custom headers (PARTYD_PROBE_CORS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

static partyd *start_with(const char *const *args, const char *env) {
    partyd *d = partyd_start_env(args, env);
    if (d == NULL)
        fail_msg("partyd did not start");
    return d;
}

static void request(partyd *d, const char *method, const char *target, const char *headers,
                    http_response *res) {
    http_expect_request(partyd_port(d), method, target, headers, NULL, 0, res);
}

/* ---- hooks ---- */

static void test_before_connect_403_reaches_the_client_as_a_failed_upgrade(void **state) {
    partyd *d = start_with(NULL, NULL);
    http_response res;
    tconn *c = tconn_open(partyd_port(d), 0);
    (void)state;

    memset(&res, 0, sizeof(res));
    assert_int_equal(ws_handshake(c, "/parties/probe/vault?deny=403", NULL, NULL, 0, &res), 403);
    assert_non_null(strstr(res.body, "denied by hook for probe/vault"));
    http_response_free(&res);
    tconn_close(c);
    /* No room was involved: it never started. */
    {
        char *record = probe_record(partyd_port(d), "vault");
        assert_non_null(strstr(record, "\"connects\":0"));
        free(record);
    }
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_before_request_redirect_and_added_header(void **state) {
    partyd *d = start_with(NULL, NULL);
    http_response res;
    tconn *c;
    char *text;
    (void)state;

    request(d, "GET", "/parties/probe/door?redirect=/elsewhere", NULL, &res);
    assert_int_equal(res.status, 302);
    assert_string_equal(http_response_header(&res, "Location"), "/elsewhere");
    http_response_free(&res);

    /* A header the hook adds is what the room sees. */
    request(d, "GET", "/parties/probe/door?hook=checked", NULL, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "X-Probe-Hook"), "checked");
    http_response_free(&res);

    c = ws_open(partyd_port(d), "/parties/probe/door?hook=token-ok&_pk=hooked");
    text = ws_expect_text_prefix(c, "hello:hooked:");
    free(text);
    ws_expect_text(c, "hook:token-ok");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- CORS ---- */

static void test_cors_preflight_on_a_matched_route_is_answered_with_defaults(void **state) {
    static const char *const args[] = {"--cors", NULL};
    partyd *d = start_with(args, NULL);
    http_response res;
    (void)state;

    request(d, "OPTIONS", "/parties/chat/lobby",
            "Origin: https://app.test\r\nAccess-Control-Request-Method: POST\r\n", &res);
    assert_true(res.status == 204 || res.status == 200);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"), "*");
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Methods"),
                        "GET, POST, HEAD, OPTIONS");
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Headers"), "*");
    assert_string_equal(http_response_header(&res, "Access-Control-Max-Age"), "86400");
    http_response_free(&res);

    /* Headers are added to ordinary answers too. */
    request(d, "GET", "/parties/chat/lobby", NULL, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"), "*");
    http_response_free(&res);

    /* An unmatched route is not answered as a preflight. */
    request(d, "OPTIONS", "/parties/nope/lobby", NULL, &res);
    assert_int_equal(res.status, 400);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    request(d, "OPTIONS", "/elsewhere", NULL, &res);
    assert_int_equal(res.status, 404);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_cors_off_by_default(void **state) {
    partyd *d = start_with(NULL, NULL);
    http_response res;
    (void)state;

    request(d, "GET", "/parties/chat/lobby", NULL, &res);
    assert_int_equal(res.status, 200);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    /* Without CORS an OPTIONS request goes to the room like any other. */
    request(d, "OPTIONS", "/parties/chat/lobby", NULL, &res);
    assert_int_equal(res.status, 405);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_cors_custom_headers_per_party_and_never_on_a_101(void **state) {
    partyd *d = start_with(NULL, "PARTYD_PROBE_CORS");
    http_response res;
    tconn *c;
    (void)state;

    request(d, "OPTIONS", "/parties/probe/shop", NULL, &res);
    assert_true(res.status == 204 || res.status == 200);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"),
                        "https://example.test");
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Methods"), "GET, POST");
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Headers"), "X-Probe");
    assert_null(http_response_header(&res, "Access-Control-Max-Age"));
    http_response_free(&res);

    /* Only probe has it: chat stays without. */
    request(d, "GET", "/parties/chat/lobby", NULL, &res);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);

    /* The upgrade answer carries no CORS header. */
    c = tconn_open(partyd_port(d), 0);
    memset(&res, 0, sizeof(res));
    assert_int_equal(ws_handshake(c, "/parties/probe/shop?_pk=w", NULL, NULL, 0, &res), 0);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_connect_403_reaches_the_client_as_a_failed_upgrade),
        cmocka_unit_test(test_before_request_redirect_and_added_header),
        cmocka_unit_test(test_cors_preflight_on_a_matched_route_is_answered_with_defaults),
        cmocka_unit_test(test_cors_off_by_default),
        cmocka_unit_test(test_cors_custom_headers_per_party_and_never_on_a_101),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
