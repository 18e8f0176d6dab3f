/* Client addresses in a real partyd: on a --proxy-protocol listener the
 * PROXY header (v1 or v2) names the client that a room reads with
 * party_conn_remote_addr / party_request_remote_addr, also after its room
 * hibernated; a v2 LOCAL header (HAProxy's health check) leaves the
 * socket's peer; a connection without a valid header is closed, counted
 * and logged. Without it, Forwarded / X-Forwarded-For are believed only
 * from --trusted-proxies, walked from the right. Clients use other
 * 127.0.0.x source addresses to be a proxy or not. The probe party
 * hibernates here (PARTYD_PROBE_HIBERNATE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

static partyd *proxied;  /* --proxy-protocol */
static partyd *trusting; /* --trusted-proxies 127.0.0.2,10.0.0.0/8 */

static const char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 PROXY header for TCP over IPv4 from a.b.c.d:port. */
static size_t v2_ipv4(char *out, const unsigned char src[4], unsigned port) {
    memcpy(out, v2_sig, 12);
    out[12] = 0x21;
    out[13] = 0x11;
    out[14] = 0;
    out[15] = 12;
    memcpy(out + 16, src, 4);
    memcpy(out + 20, "\x7f\x00\x00\x01", 4);
    out[24] = (char)(port >> 8);
    out[25] = (char)(port & 0xff);
    out[26] = 0x07;
    out[27] = (char)0xcf;
    return 28;
}

/* Sends prefix, then a GET of target with extra headers, from source:
 * the answer's X-Probe-Addr (the room's party_request_remote_addr), or
 * "" when it has none. */
static void get_addr(int port, const char *source, const void *prefix, size_t prefix_len,
                     const char *target, const char *headers, char *out, size_t cap) {
    tconn *c = tconn_open_from(port, 0, source);
    char req[2048];
    http_response res;
    const char *addr;

    assert_non_null(c);
    if (prefix_len > 0)
        assert_int_equal(tconn_send(c, prefix, prefix_len), 0);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", target,
             headers != NULL ? headers : "");
    assert_int_equal(tconn_send_str(c, req), 0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    addr = http_response_header(&res, "X-Probe-Addr");
    snprintf(out, cap, "%s", addr != NULL ? addr : "");
    http_response_free(&res);
    tconn_close(c);
}

static void test_proxy_v1_names_the_client_of_a_websocket(void **state) {
    static const char header[] = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 80\r\n";
    tconn *c;
    (void)state;
    c = probe_open_behind(partyd_port(proxied), NULL, header, strlen(header), "addr-v1", NULL);
    ws_send_text(c, "addr");
    ws_expect_text(c, "addr:203.0.113.7");
    tconn_close(c);
}

static void test_proxy_v1_tcp6_and_v2_name_the_client_of_a_request(void **state) {
    static const char v1[] = "PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
    static const unsigned char src[4] = {198, 51, 100, 23};
    char v2[64], addr[64];
    size_t n = v2_ipv4(v2, src, 5555);
    (void)state;
    get_addr(partyd_port(proxied), NULL, v1, strlen(v1), "/parties/probe/addr-http", NULL, addr,
             sizeof(addr));
    assert_string_equal(addr, "2001:db8::7");
    get_addr(partyd_port(proxied), NULL, v2, n, "/parties/probe/addr-http", NULL, addr,
             sizeof(addr));
    assert_string_equal(addr, "198.51.100.23");
}

static void test_proxy_v2_local_keeps_the_socket_peer(void **state) {
    char local[16], addr[64];
    (void)state;
    memcpy(local, v2_sig, 12);
    local[12] = 0x20;
    local[13] = 0x00;
    local[14] = local[15] = 0;
    get_addr(partyd_port(proxied), "127.0.0.3", local, sizeof(local), "/parties/probe/addr-local",
             NULL, addr, sizeof(addr));
    assert_string_equal(addr, "127.0.0.3");
}

/* The count of partyd_connections_proxy_refused_total, asked through a
 * PROXY header (the listener wants one from everyone). */
static long refused_count(void) {
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    tconn *c = tconn_open(partyd_port(proxied), 0);
    http_response res;
    const char *at;
    long n;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, unknown), 0);
    assert_int_equal(
        tconn_send_str(c, "GET /_partyd/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    at = strstr(res.body, "\npartyd_connections_proxy_refused_total ");
    assert_non_null(at);
    n = strtol(at + strlen("\npartyd_connections_proxy_refused_total "), NULL, 10);
    http_response_free(&res);
    tconn_close(c);
    return n;
}

static void test_connection_without_a_proxy_header_is_closed_counted_and_logged(void **state) {
    static const char *const bad[] = {
        "GET /parties/probe/x HTTP/1.1\r\nHost: x\r\n\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\nGET / HTTP/1.1\r\n\r\n",
    };
    long before = refused_count();
    size_t i;
    (void)state;
    for (i = 0; i < 2; i++) {
        tconn *c = tconn_open(partyd_port(proxied), 0);
        assert_non_null(c);
        assert_int_equal(tconn_send_str(c, bad[i]), 0);
        tconn_expect_close(c); /* nothing answered: the bytes were not HTTP to us */
        tconn_close(c);
    }
    assert_int_equal(refused_count(), before + 2);
    assert_true(partyd_wait_stderr(
        proxied,
        "proxy protocol: connection did not start with a PROXY protocol header, from 127.0.0.1",
        TC_TIMEOUT_MS));
}

static void test_proxy_header_in_pieces_is_read_whole(void **state) {
    static const char header[] = "PROXY TCP4 203.0.113.99 192.0.2.1 1 80\r\n";
    tconn *c = tconn_open(partyd_port(proxied), 0);
    http_response res;
    (void)state;
    assert_non_null(c);
    assert_int_equal(tconn_send(c, header, 9), 0);
    assert_int_equal(tconn_send(c, header + 9, 20), 0);
    assert_int_equal(tconn_send_str(c, header + 29), 0);
    assert_int_equal(
        tconn_send_str(
            c, "GET /parties/probe/pieces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_string_equal(http_response_header(&res, "X-Probe-Addr"), "203.0.113.99");
    http_response_free(&res);
    tconn_close(c);
}

static void test_address_is_kept_while_the_room_hibernates(void **state) {
    static const char header[] = "PROXY TCP4 192.0.2.200 192.0.2.1 1234 80\r\n";
    tconn *c;
    (void)state;
    c = probe_open_behind(partyd_port(proxied), NULL, header, strlen(header), "addr-sleeper", NULL);
    assert_true(partyd_wait_stderr(proxied,
                                   "room probe/addr-sleeper: hibernated with 1 connections", 8000));
    ws_send_text(c, "addr"); /* wakes the room: on_start runs again */
    ws_expect_text(c, "addr:192.0.2.200");
    tconn_close(c);
}

static void test_forwarded_headers_count_only_from_trusted_proxies(void **state) {
    int port = partyd_port(trusting);
    char addr[64];
    (void)state;
    /* From a trusted proxy: the rightmost untrusted hop (10.x is trusted too). */
    get_addr(port, "127.0.0.2", NULL, 0, "/parties/probe/fwd",
             "X-Forwarded-For: 203.0.113.1, 198.51.100.9\r\nX-Forwarded-For: 10.1.2.3\r\n", addr,
             sizeof(addr));
    assert_string_equal(addr, "198.51.100.9");
    /* Forwarded wins over X-Forwarded-For, quoted IPv6 with a port. */
    get_addr(port, "127.0.0.2", NULL, 0, "/parties/probe/fwd",
             "Forwarded: for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.1\r\n"
             "X-Forwarded-For: 203.0.113.1\r\n",
             addr, sizeof(addr));
    assert_string_equal(addr, "2001:db8:cafe::17");
    /* A hop that is no address stops the walk at the last trusted one. */
    get_addr(port, "127.0.0.2", NULL, 0, "/parties/probe/fwd", "Forwarded: for=unknown\r\n", addr,
             sizeof(addr));
    assert_string_equal(addr, "127.0.0.2");
    /* From anyone else the headers are ignored. */
    get_addr(port, "127.0.0.4", NULL, 0, "/parties/probe/fwd", "X-Forwarded-For: 198.51.100.9\r\n",
             addr, sizeof(addr));
    assert_string_equal(addr, "127.0.0.4");
}

static void test_websocket_through_a_trusted_proxy_keeps_the_forwarded_client(void **state) {
    tconn *c;
    (void)state;
    c = probe_open_behind(partyd_port(trusting), "127.0.0.2", NULL, 0, "fwd-ws",
                          "X-Forwarded-For: 198.51.100.77\r\n");
    ws_send_text(c, "addr");
    ws_expect_text(c, "addr:198.51.100.77");
    tconn_close(c);
}

static int setup(void **state) {
    static const char *const proxy_args[] = {
        "--proxy-protocol", "--hibernate-after", "1", "--log-level", "debug", NULL};
    static const char *const trust_args[] = {"--trusted-proxies", "127.0.0.2, 10.0.0.0/8", NULL};
    (void)state;
    proxied = partyd_start_env(proxy_args, "PARTYD_PROBE_HIBERNATE");
    trusting = partyd_start(trust_args);
    return proxied == NULL || trusting == NULL;
}

static int teardown(void **state) {
    (void)state;
    tconn_close_all();
    partyd_stop(proxied);
    partyd_free(proxied);
    partyd_stop(trusting);
    partyd_free(trusting);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_v1_names_the_client_of_a_websocket),
        cmocka_unit_test(test_proxy_v1_tcp6_and_v2_name_the_client_of_a_request),
        cmocka_unit_test(test_proxy_v2_local_keeps_the_socket_peer),
        cmocka_unit_test(test_connection_without_a_proxy_header_is_closed_counted_and_logged),
        cmocka_unit_test(test_proxy_header_in_pieces_is_read_whole),
        cmocka_unit_test(test_address_is_kept_while_the_room_hibernates),
        cmocka_unit_test(test_forwarded_headers_count_only_from_trusted_proxies),
        cmocka_unit_test(test_websocket_through_a_trusted_proxy_keeps_the_forwarded_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
