/* The browser-origin allow-list (--allowed-origins, and a party's own
 * "allowed-origins" in the config file), over real sockets: WebSocket
 * handshakes from other origins get 403 before any hook or room runs,
 * requests without Origin pass, CORS answers name only allowed origins, and
 * refusals are counted. partyd reads both lists from one config file. */
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

static partyd *server;
static int port;
static char config_file[] = "/tmp/partyd-origins-XXXXXX";

static int group_setup(void **state) {
    static const char json[] =
        "{\"allowed-origins\": \"https://app.example.test, https://*.example.org\","
        " \"cors\": true,"
        " \"parties\": {\"probe\": {\"allowed-origins\": \"http://per-party.test:8080\"}}}";
    const char *args[] = {"--config", config_file, NULL};
    int fd = mkstemp(config_file);
    if (fd < 0 || write(fd, json, sizeof(json) - 1) != (ssize_t)(sizeof(json) - 1))
        return -1;
    close(fd);
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    unlink(config_file);
    return partyd_group_stop(server);
}

/* The handshake's status (0: a valid 101) with this Origin line (NULL:
 * none); *body (if not NULL) gets the answer's body (free it). */
static int handshake_from(const char *target, const char *origin, char **body) {
    tconn *c = tconn_open(port, 0);
    char extra[300];
    http_response res;
    int r;

    assert_non_null(c);
    if (origin != NULL)
        snprintf(extra, sizeof(extra), "Origin: %s\r\n", origin);
    r = ws_handshake(c, target, origin != NULL ? extra : NULL, NULL, 0, &res);
    if (body != NULL)
        *body = strdup(res.body != NULL ? res.body : "");
    http_response_free(&res);
    if (r == 0) {
        ws_send_close(c, 1000, "");
    } else if (r > 0) {
        tconn_expect_close(c);
    }
    tconn_close(c);
    return r;
}

static void test_handshake_from_an_allowed_origin_opens(void **state) {
    (void)state;
    assert_int_equal(handshake_from("/parties/echo/o1", "https://app.example.test", NULL), 0);
    assert_int_equal(handshake_from("/parties/echo/o1", "HTTPS://APP.example.test:443", NULL), 0);
}

static void test_handshake_from_a_subdomain_of_a_wildcard_opens(void **state) {
    (void)state;
    assert_int_equal(handshake_from("/parties/echo/o2", "https://a.b.example.org", NULL), 0);
    assert_int_equal(handshake_from("/parties/echo/o2", "https://example.org", NULL), 403);
}

static void test_handshake_from_another_origin_is_403_naming_the_flag(void **state) {
    char *body = NULL;
    (void)state;
    assert_int_equal(handshake_from("/parties/echo/o3", "https://evil.test", &body), 403);
    assert_non_null(strstr(body, "--allowed-origins"));
    free(body);
    assert_int_equal(handshake_from("/parties/echo/o3", "null", NULL), 403);
    assert_int_equal(handshake_from("/parties/echo/o3", "http://app.example.test", NULL), 403);
}

static void test_handshake_without_origin_is_not_refused(void **state) {
    (void)state;
    assert_int_equal(handshake_from("/parties/echo/o4", NULL, NULL), 0);
}

/* The probe's before_connect would answer ?deny=418; the refusal comes
 * first, and the room never sees the connection. */
static void test_refusal_comes_before_before_connect_and_the_room(void **state) {
    char *record;
    (void)state;
    assert_int_equal(handshake_from("/parties/probe/o5?deny=418", "https://evil.test", NULL), 403);
    record = probe_record(port, "o5");
    assert_non_null(strstr(record, "\"connects\":0"));
    free(record);
}

static void test_a_partys_own_list_replaces_the_global_one(void **state) {
    (void)state;
    assert_int_equal(handshake_from("/parties/probe/o6", "https://app.example.test", NULL), 403);
    assert_int_equal(handshake_from("/parties/probe/o6", "http://per-party.test:8080", NULL), 0);
}

static void test_cors_answer_names_an_allowed_origin_and_never_another(void **state) {
    http_response res;
    (void)state;
    http_expect_request(port, "GET", "/parties/probe/o7", "Origin: http://per-party.test:8080\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"),
                        "http://per-party.test:8080");
    assert_string_equal(http_response_header(&res, "Vary"), "Origin");
    http_response_free(&res);
    /* answered (CORS is the browser's to enforce), but with no CORS headers */
    http_expect_request(port, "GET", "/parties/probe/o7", "Origin: https://evil.test\r\n", NULL, 0,
                        &res);
    assert_int_equal(res.status, 200);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    http_response_free(&res);
    /* without Origin: the defaults, as without a list */
    http_expect_request(port, "GET", "/parties/probe/o7", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"), "*");
    http_response_free(&res);
}

static void test_preflight_from_another_origin_is_403(void **state) {
    http_response res;
    (void)state;
    http_expect_request(port, "OPTIONS", "/parties/counter/o8",
                        "Origin: https://evil.test\r\nAccess-Control-Request-Method: POST\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 403);
    assert_null(http_response_header(&res, "Access-Control-Allow-Origin"));
    assert_non_null(strstr(res.body, "--allowed-origins"));
    http_response_free(&res);
    http_expect_request(port, "OPTIONS", "/parties/counter/o8",
                        "Origin: https://x.example.org\r\nAccess-Control-Request-Method: POST\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 204);
    assert_string_equal(http_response_header(&res, "Access-Control-Allow-Origin"),
                        "https://x.example.org");
    http_response_free(&res);
}

static void test_refusals_are_counted(void **state) {
    http_response res;
    long long before;
    (void)state;
    before = metrics_get(port, "partyd_connections_origin_refused_total");
    assert_int_equal(handshake_from("/parties/echo/o9", "https://evil.test", NULL), 403);
    http_expect_request(port, "OPTIONS", "/parties/counter/o9", "Origin: https://evil.test\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 403);
    http_response_free(&res);
    assert_int_equal(metrics_get(port, "partyd_connections_origin_refused_total"), before + 2);
}

static void test_a_malformed_list_stops_partyd_naming_it(void **state) {
    static const char *const flag[] = {"--allowed-origins", "https://ok.test,app.example.test",
                                       NULL};
    char file[] = "/tmp/partyd-origins-bad-XXXXXX";
    static const char json[] = "{\"parties\": {\"probe\": {\"allowed-origins\": \"https://a/b\"}}}";
    const char *args[] = {"--config", file, NULL};
    char *err;
    int fd;
    (void)state;

    assert_int_equal(partyd_run_to_exit(flag, NULL, &err), 2);
    assert_non_null(strstr(err, "--allowed-origins: 'app.example.test' is not an origin"));
    free(err);
    fd = mkstemp(file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, sizeof(json) - 1), (ssize_t)(sizeof(json) - 1));
    close(fd);
    assert_int_equal(partyd_run_to_exit(args, NULL, &err), 2);
    assert_non_null(strstr(err, "party 'probe': allowed-origins: 'https://a/b' is not an origin"));
    free(err);
    unlink(file);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_from_an_allowed_origin_opens),
        cmocka_unit_test(test_handshake_from_a_subdomain_of_a_wildcard_opens),
        cmocka_unit_test(test_handshake_from_another_origin_is_403_naming_the_flag),
        cmocka_unit_test(test_handshake_without_origin_is_not_refused),
        cmocka_unit_test(test_refusal_comes_before_before_connect_and_the_room),
        cmocka_unit_test(test_a_partys_own_list_replaces_the_global_one),
        cmocka_unit_test(test_cors_answer_names_an_allowed_origin_and_never_another),
        cmocka_unit_test(test_preflight_from_another_origin_is_403),
        cmocka_unit_test(test_refusals_are_counted),
        cmocka_unit_test(test_a_malformed_list_stops_partyd_naming_it),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
