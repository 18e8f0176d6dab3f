/* HTTP/1.1 end to end: keep-alive, pipelining, request bodies (length and
 * chunked), HEAD, HTTP/1.0, and the answers to malformed or oversized
 * requests. partyd runs with small header and body limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define MAX_HEADER_BYTES 2048
#define MAX_BODY_BYTES 4096
#define MAX_HEADERS 8

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {
        "--max-header-bytes", "2048", "--max-body-bytes", "4096", "--max-headers", "8", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

static void read_ok(tconn *c, int head, http_response *res) {
    int r = http_read_response(c, head, res, TC_TIMEOUT_MS);
    if (r != 0)
        fail_msg("no response (%d)", r);
}

static void test_keep_alive_serves_two_requests_on_one_connection(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/ka1 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Connection"), "keep-alive");
    assert_non_null(strstr(res.body, "\"name\":\"ka1\""));
    http_response_free(&res);

    assert_int_equal(tconn_send_str(c, "GET /parties/probe/ka2 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"ka2\""));
    http_response_free(&res);
    tconn_close(c);
}

static void test_pipelined_requests_are_answered_in_order(void **state) {
    static const char requests[] = "GET /parties/probe/pipe1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "POST /parties/probe/pipe2 HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 5\r\n\r\nhello"
                                   "GET /parties/nosuchparty/r HTTP/1.1\r\nHost: x\r\n\r\n"
                                   "GET /parties/probe/pipe3 HTTP/1.1\r\nHost: x\r\n"
                                   "Connection: close\r\n\r\n";
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, requests), 0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"pipe1\""));
    http_response_free(&res);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "hello");
    http_response_free(&res);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 400);
    http_response_free(&res);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"pipe3\""));
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_hundreds_of_pipelined_requests_are_all_answered_in_order(void **state) {
    /* More bytes than the session buffer holds (max header + max body +
     * 1 KiB here): the server must keep reading as it answers. */
    enum { N = 300 };
    char *requests = malloc(N * 80);
    size_t n = 0;
    tconn *c = tconn_open(port, 0);
    int i;
    (void)state;

    assert_non_null(requests);
    assert_non_null(c);
    for (i = 0; i < N; i++)
        n += (size_t)sprintf(requests + n, "GET /parties/probe/many%d HTTP/1.1\r\nHost: x\r\n\r\n",
                             i);
    assert_true(n > MAX_HEADER_BYTES + MAX_BODY_BYTES + 1024);
    assert_int_equal(tconn_send(c, requests, n), 0);
    probe_expect_pipelined_records(c, "many", N);
    free(requests);
    tconn_close(c);
}

static void test_post_body_is_echoed_with_201(void **state) {
    static const char body[] = "{\"some\":\"json\",\"n\":42}";
    http_response res;
    (void)state;

    http_expect_request(port, "POST", "/parties/probe/post1", NULL, body, strlen(body), &res);
    assert_int_equal(res.status, 201);
    assert_string_equal(http_response_header(&res, "X-Probe-Method"), "POST");
    assert_int_equal(res.body_len, strlen(body));
    assert_string_equal(res.body, body);
    http_response_free(&res);
}

static void test_binary_post_body_is_echoed_byte_for_byte(void **state) {
    char body[1024];
    http_response res;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 7);
    http_expect_request(port, "POST", "/parties/probe/post2", NULL, body, sizeof(body), &res);
    assert_int_equal(res.status, 201);
    assert_int_equal(res.body_len, sizeof(body));
    assert_memory_equal(res.body, body, sizeof(body));
    http_response_free(&res);
}

static void test_chunked_post_body_is_dechunked(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port,
                        "POST /parties/probe/chunked HTTP/1.1\r\nHost: x\r\n"
                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        "5\r\nhello\r\n"
                        "6;ext=1\r\n world\r\n"
                        "a\r\n, chunked!\r\n"
                        "0\r\nX-Trailer: yes\r\n\r\n",
                        &res);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "hello world, chunked!");
    http_response_free(&res);
    tconn_close(c);
}

static void test_http10_without_keep_alive_closes_after_response(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port, "GET /parties/probe/old HTTP/1.0\r\n\r\n", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Connection"), "close");
    assert_non_null(strstr(res.body, "\"name\":\"old\""));
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_http10_with_keep_alive_stays_open(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port, "GET /parties/probe/old2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                        &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Connection"), "keep-alive");
    http_response_free(&res);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/old3 HTTP/1.0\r\n\r\n"), 0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\"name\":\"old3\""));
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_connection_close_closes_after_response(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(
        port, "GET /parties/probe/cc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Connection"), "close");
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void test_not_found_keeps_the_connection_alive(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port, "GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/after404 HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    tconn_close(c);
}

static void expect_400_and_close(const char *request) {
    http_response res;
    tconn *c = http_expect_raw(port, request, &res);
    if (res.status != 400)
        fail_msg("expected 400 for %s, got %d", request, res.status);
    assert_string_equal(http_response_header(&res, "Connection"), "close");
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
    partyd_expect_healthy(port);
}

static void test_malformed_request_line_is_400_and_closes(void **state) {
    (void)state;
    expect_400_and_close("GARBAGE\r\n\r\n");
    expect_400_and_close("GET /parties/probe/r\r\nHost: x\r\n\r\n");
    expect_400_and_close("GET  /parties/probe/r HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400_and_close("GET parties/probe/r HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400_and_close("GET /parties/probe/r HTTP/1.1\nHost: x\n\n");
}

static void test_http11_request_without_host_is_400(void **state) {
    (void)state;
    expect_400_and_close("GET /parties/probe/r HTTP/1.1\r\n\r\n");
}

static void test_header_section_over_limit_is_431_and_closes(void **state) {
    char request[MAX_HEADER_BYTES * 2];
    http_response res;
    tconn *c;
    int n;
    (void)state;

    n = snprintf(request, sizeof(request), "GET /parties/probe/big HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(request + n, 'a', MAX_HEADER_BYTES);
    memcpy(request + n + MAX_HEADER_BYTES, "\r\n\r\n", 5);
    c = http_expect_raw(port, request, &res);
    assert_int_equal(res.status, 431);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
    /* The operator can tell which limit to raise. */
    assert_true(partyd_wait_stderr(server, "max_header_bytes", TC_TIMEOUT_MS));
}

static void test_header_section_at_limit_is_accepted(void **state) {
    char request[MAX_HEADER_BYTES + 1];
    static const char start[] = "GET /parties/probe/edge HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    http_response res;
    size_t pad = MAX_HEADER_BYTES - (sizeof(start) - 1) - 4;
    tconn *c;
    (void)state;

    memcpy(request, start, sizeof(start) - 1);
    memset(request + sizeof(start) - 1, 'p', pad);
    memcpy(request + sizeof(start) - 1 + pad, "\r\n\r\n", 5);
    assert_int_equal(strlen(request), MAX_HEADER_BYTES);
    c = http_expect_raw(port, request, &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    tconn_close(c);
}

static void test_body_over_limit_is_413(void **state) {
    char body[MAX_BODY_BYTES + 1];
    http_response res;
    (void)state;

    memset(body, 'b', sizeof(body));
    http_expect_request(port, "POST", "/parties/probe/toolarge", NULL, body, sizeof(body), &res);
    assert_int_equal(res.status, 413);
    http_response_free(&res);
    http_expect_request(port, "POST", "/parties/probe/justright", NULL, body, MAX_BODY_BYTES, &res);
    assert_int_equal(res.status, 201);
    assert_int_equal(res.body_len, MAX_BODY_BYTES);
    http_response_free(&res);
}

static void test_chunked_body_over_limit_is_413(void **state) {
    char request[MAX_BODY_BYTES + 512];
    http_response res;
    tconn *c;
    int n;
    (void)state;

    n = snprintf(request, sizeof(request),
                 "POST /parties/probe/chunkbig HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n%x\r\n",
                 MAX_BODY_BYTES + 1);
    memset(request + n, 'c', MAX_BODY_BYTES + 1);
    memcpy(request + n + MAX_BODY_BYTES + 1, "\r\n0\r\n\r\n", 8);
    c = http_expect_raw(port, request, &res);
    assert_int_equal(res.status, 413);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
}

static void expect_status_and_close(const char *request, int status) {
    http_response res;
    tconn *c = http_expect_raw(port, request, &res);
    if (res.status != status)
        fail_msg("expected %d for %s, got %d", status, request, res.status);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
    partyd_expect_healthy(port);
}

static void test_more_header_fields_than_max_headers_is_431(void **state) {
    char request[1024];
    int n, i;
    (void)state;

    /* Host plus MAX_HEADERS - 1 more: at the limit. */
    n = snprintf(request, sizeof(request), "GET /parties/probe/many HTTP/1.1\r\nHost: x\r\n");
    for (i = 1; i < MAX_HEADERS; i++)
        n += snprintf(request + n, sizeof(request) - (size_t)n, "X-H%d: %d\r\n", i, i);
    snprintf(request + n, sizeof(request) - (size_t)n, "Connection: close\r\n\r\n");
    expect_status_and_close(request, 431);
    snprintf(request + n, sizeof(request) - (size_t)n, "\r\n");
    {
        http_response res;
        tconn *c = http_expect_raw(port, request, &res);
        assert_int_equal(res.status, 200);
        http_response_free(&res);
        tconn_close(c);
    }
    assert_true(partyd_wait_stderr(server, "max_headers", TC_TIMEOUT_MS));
}

static void test_conflicting_body_framing_is_400(void **state) {
    (void)state;
    /* Both framings at once is how requests get smuggled. */
    expect_status_and_close("POST /parties/probe/smuggle HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "0\r\n\r\n",
                            400);
    expect_status_and_close("POST /parties/probe/smuggle HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
                            400);
}

static void test_unsupported_transfer_coding_is_501(void **state) {
    (void)state;
    /* gzip alone would be a 400: chunked must be the final coding */
    expect_status_and_close("POST /parties/probe/gz HTTP/1.1\r\nHost: x\r\n"
                            "Transfer-Encoding: gzip, chunked\r\n\r\n",
                            501);
}

static void test_unsupported_http_version_is_505(void **state) {
    (void)state;
    expect_status_and_close("GET /parties/probe/v HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

/* The 408 is queued from a timer callback: it must be written before the
 * loop blocks again, with no other I/O to wake it. */
static void test_incomplete_request_head_times_out_with_408(void **state) {
    static const char *const args[] = {"--header-timeout", "0.5", NULL};
    partyd *quick = partyd_start(args);
    http_response res;
    tconn *c;
    int r;
    (void)state;

    assert_non_null(quick);
    c = tconn_open(partyd_port(quick), 0);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/slow HTTP/1.1\r\nHost: x\r\n"), 0);
    /* Four times the header timeout. */
    r = http_read_response(c, 0, &res, 2000);
    if (r != 0)
        fail_msg("no 408 within 2 s of a 0.5 s header timeout (%d)", r);
    assert_int_equal(res.status, 408);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
    assert_int_equal(partyd_group_stop(quick), 0);
}

static void test_idle_keep_alive_connection_closes_silently_at_header_timeout(void **state) {
    static const char *const args[] = {"--header-timeout", "0.5", NULL};
    partyd *quick = partyd_start(args);
    http_response res;
    tconn *c;
    (void)state;

    assert_non_null(quick);
    c = http_expect_raw(partyd_port(quick), "GET /parties/probe/idle HTTP/1.1\r\nHost: x\r\n\r\n",
                        &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    /* Nothing asked, nothing answered: a close with no 408. */
    tconn_expect_close(c);
    tconn_close(c);
    assert_int_equal(partyd_group_stop(quick), 0);
}

static void test_head_has_content_length_but_no_body(void **state) {
    http_response head, get;
    size_t length;
    tconn *c;
    (void)state;

    c = http_expect_raw(port, "HEAD /parties/probe/headroom HTTP/1.1\r\nHost: x\r\n\r\n", &head);
    assert_int_equal(head.status, 200);
    assert_non_null(http_response_header(&head, "Content-Length"));
    length = strtoul(http_response_header(&head, "Content-Length"), NULL, 10);
    assert_true(length > 0);
    assert_int_equal(head.body_len, 0);
    /* If a body had followed, this second response would not parse. */
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/headroom HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    read_ok(c, 0, &get);
    assert_int_equal(get.status, 200);
    assert_int_equal(get.body_len, length);
    assert_int_equal(c->len, 0);
    http_response_free(&head);
    http_response_free(&get);
    tconn_close(c);
}

static void test_head_of_not_found_has_no_body(void **state) {
    http_response res;
    tconn *c;
    (void)state;

    c = http_expect_raw(port, "HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", &res);
    assert_int_equal(res.status, 404);
    assert_non_null(http_response_header(&res, "Content-Length"));
    http_response_free(&res);
    assert_int_equal(tconn_send_str(c, "GET /parties/probe/afterhead HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    read_ok(c, 0, &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    tconn_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive_serves_two_requests_on_one_connection),
        cmocka_unit_test(test_pipelined_requests_are_answered_in_order),
        cmocka_unit_test(test_hundreds_of_pipelined_requests_are_all_answered_in_order),
        cmocka_unit_test(test_post_body_is_echoed_with_201),
        cmocka_unit_test(test_binary_post_body_is_echoed_byte_for_byte),
        cmocka_unit_test(test_chunked_post_body_is_dechunked),
        cmocka_unit_test(test_http10_without_keep_alive_closes_after_response),
        cmocka_unit_test(test_http10_with_keep_alive_stays_open),
        cmocka_unit_test(test_connection_close_closes_after_response),
        cmocka_unit_test(test_not_found_keeps_the_connection_alive),
        cmocka_unit_test(test_malformed_request_line_is_400_and_closes),
        cmocka_unit_test(test_http11_request_without_host_is_400),
        cmocka_unit_test(test_header_section_over_limit_is_431_and_closes),
        cmocka_unit_test(test_header_section_at_limit_is_accepted),
        cmocka_unit_test(test_body_over_limit_is_413),
        cmocka_unit_test(test_chunked_body_over_limit_is_413),
        cmocka_unit_test(test_more_header_fields_than_max_headers_is_431),
        cmocka_unit_test(test_conflicting_body_framing_is_400),
        cmocka_unit_test(test_unsupported_transfer_coding_is_501),
        cmocka_unit_test(test_unsupported_http_version_is_505),
        cmocka_unit_test(test_incomplete_request_head_times_out_with_408),
        cmocka_unit_test(test_idle_keep_alive_connection_closes_silently_at_header_timeout),
        cmocka_unit_test(test_head_has_content_length_but_no_body),
        cmocka_unit_test(test_head_of_not_found_has_no_body),
    };
    return cmocka_run_group_tests_name("http_protocol", tests, group_setup, group_teardown);
}
