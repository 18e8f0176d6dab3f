/* Rate limits in a real partyd, each tripped by one client while another
 * (another 127.0.0.x source address, or another PROXY-declared one) is
 * still served: open connections and new connections per second per
 * address (429 with Retry-After), IPv6 counted per /64, messages and
 * bytes per second per WebSocket (reading pauses, then 1013), connections
 * per room set per party in the config file, and the per-address table
 * staying within --limit-addr-table while 100,000 PROXY-declared
 * addresses connect. Counts are read from /_partyd/metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

static partyd *limited; /* config: per-party limits; --limit-addr-conns 3 */
static partyd *slow;    /* --limit-addr-rate 0.1 (one new connection per 10 s) */
static partyd *flood;   /* --proxy-protocol --limit-addr-table 1000 */
static char config_path[256];

/* A counter or gauge of the metrics of d, asked from source. */
static double metric_of(partyd *d, const char *source, const void *prefix, size_t prefix_len,
                        const char *name) {
    tconn *c = tconn_open_from(partyd_port(d), 0, source);
    char needle[200];
    http_response res;
    const char *at;
    double v;

    assert_non_null(c);
    if (prefix_len > 0)
        assert_int_equal(tconn_send(c, prefix, prefix_len), 0);
    assert_int_equal(
        tconn_send_str(c, "GET /_partyd/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    snprintf(needle, sizeof(needle), "\n%s ", name);
    at = strstr(res.body, needle);
    if (at == NULL)
        fail_msg("no %s in the metrics", name);
    v = strtod(at + strlen(needle), NULL);
    http_response_free(&res);
    tconn_close(c);
    return v;
}

/* A WebSocket handshake to target from source: the status (101 once
 * open: *out is then the connection, else closed and NULL). */
static int ws_try(partyd *d, const char *source, const char *target, const char *headers,
                  http_response *res, tconn **out) {
    tconn *c = tconn_open_from(partyd_port(d), 0, source);
    int r;

    assert_non_null(c);
    r = ws_handshake(c, target, headers, NULL, 0, res);
    *out = NULL;
    if (r == 0) {
        *out = c;
        return 101;
    }
    tconn_close(c);
    return res->status;
}

static void test_open_connections_per_address_over_the_limit_get_429(void **state) {
    tconn *open[3], *c;
    http_response res;
    int i, served = 0;
    (void)state;
    for (i = 0; i < 3; i++) {
        assert_int_equal(ws_try(limited, "127.0.0.11", "/parties/echo/a", NULL, &res, &open[i]),
                         101);
        http_response_free(&res);
    }
    assert_int_equal(ws_try(limited, "127.0.0.11", "/parties/echo/a", NULL, &res, &c), 429);
    assert_non_null(http_response_header(&res, "Retry-After"));
    assert_non_null(strstr(res.body, "limit-addr-conns"));
    http_response_free(&res);
    /* Another address is not slowed by it. */
    assert_int_equal(ws_try(limited, "127.0.0.12", "/parties/echo/a", NULL, &res, &c), 101);
    http_response_free(&res);
    ws_send_text(c, "other");
    ws_expect_text(c, "other");
    tconn_close(c);
    /* One leaves: the address may open one again (the server learns of
     * the close asynchronously; asked again until it did). */
    ws_send_close(open[0], 1000, "");
    ws_expect_close(open[0], 1000, "");
    tconn_close(open[0]);
    for (i = 0; i < 200 && !served; i++) {
        int status = ws_try(limited, "127.0.0.11", "/parties/echo/a", NULL, &res, &c);
        http_response_free(&res);
        if (status == 101) {
            served = 1;
            tconn_close(c);
        } else {
            assert_int_equal(status, 429);
        }
    }
    assert_true(served);
    assert_true(metric_of(limited, "127.0.0.19", NULL, 0, "partyd_limit_addr_conns_total") >= 1);
    tconn_close(open[1]);
    tconn_close(open[2]);
}

/* GET /_partyd/health from source with headers: the status; the answer's
 * Retry-After into retry (0: none). */
static int health_from(partyd *d, const char *source, const char *headers, int *retry) {
    tconn *c = tconn_open_from(partyd_port(d), 0, source);
    char req[512];
    http_response res;
    const char *after;
    int status;

    assert_non_null(c);
    snprintf(req, sizeof(req), "GET /_partyd/health HTTP/1.1\r\nHost: x\r\n%s\r\n",
             headers != NULL ? headers : "");
    assert_int_equal(tconn_send_str(c, req), 0);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    status = res.status;
    after = http_response_header(&res, "Retry-After");
    *retry = after != NULL ? atoi(after) : 0;
    http_response_free(&res);
    tconn_close(c);
    return status;
}

static void test_new_connections_per_second_over_the_limit_get_429_with_retry_after(void **state) {
    int retry;
    (void)state;
    assert_int_equal(health_from(slow, "127.0.0.21", NULL, &retry), 200);
    assert_int_equal(health_from(slow, "127.0.0.21", NULL, &retry), 429);
    assert_in_range(retry, 1, 10);
    assert_int_equal(health_from(slow, "127.0.0.22", NULL, &retry), 200);
    assert_int_equal(metric_of(slow, "127.0.0.23", NULL, 0, "partyd_limit_addr_rate_total"), 1);
}

static void test_the_hosts_own_address_is_exempt_by_default(void **state) {
    int retry;
    (void)state;
    /* --limit-exempt defaults to 127.0.0.1,::1 (local proxies, benchmarks). */
    assert_int_equal(health_from(slow, "127.0.0.1", NULL, &retry), 200);
    assert_int_equal(health_from(slow, "127.0.0.1", NULL, &retry), 200);
    assert_int_equal(health_from(slow, "127.0.0.1", NULL, &retry), 200);
}

static void test_ipv6_clients_are_counted_per_64(void **state) {
    int retry;
    (void)state;
    /* 127.0.0.0/8 is a trusted proxy of this partyd: X-Forwarded-For names
     * the client. */
    assert_int_equal(
        health_from(slow, "127.0.0.24", "X-Forwarded-For: 2001:db8:1:2::1\r\n", &retry), 200);
    assert_int_equal(
        health_from(slow, "127.0.0.24", "X-Forwarded-For: 2001:db8:1:2:ffff::9\r\n", &retry), 429);
    assert_int_equal(
        health_from(slow, "127.0.0.24", "X-Forwarded-For: 2001:db8:1:3::1\r\n", &retry), 200);
}

static void test_messages_over_the_limit_pause_reading_then_close_1013(void **state) {
    tconn *c;
    http_response res;
    ws_frame f;
    int i, echoed = 0, closed = 0;
    (void)state;
    assert_int_equal(ws_try(limited, "127.0.0.13", "/parties/probe/chatty", NULL, &res, &c), 101);
    http_response_free(&res);
    free(ws_expect_text_prefix(c, "hello:"));
    /* probe allows 2 messages a second (config file): one at a time, each
     * answered, the client goes over, is paused, goes over again... */
    for (i = 0; i < 60 && !closed; i++) {
        ws_send_text(c, "m");
        assert_int_equal(ws_recv(c, &f, 10000), 0);
        if (f.opcode == 0x8) {
            assert_int_equal(f.close_code, 1013);
            closed = 1;
        } else {
            assert_string_equal(f.data, "echo:m");
            echoed++;
        }
        ws_frame_free(&f);
    }
    assert_true(closed);
    assert_true(echoed > 2); /* every message read before the close was handled */
    assert_true(metric_of(limited, "127.0.0.19", NULL, 0, "partyd_limit_conn_msgs_total") >= 1);
    assert_true(metric_of(limited, "127.0.0.19", NULL, 0, "partyd_limit_conn_closed_total") >= 1);
    tconn_close(c);
}

static void test_bytes_over_the_limit_pause_reading_and_lose_nothing(void **state) {
    char big[1001];
    tconn *c;
    http_response res;
    int i;
    (void)state;
    memset(big, 'b', 1000);
    big[1000] = '\0';
    assert_int_equal(ws_try(limited, "127.0.0.14", "/parties/echo/bytes", NULL, &res, &c), 101);
    http_response_free(&res);
    /* echo allows 1 KiB a second (config file): the third is over. */
    for (i = 0; i < 4; i++)
        ws_send_text(c, big);
    for (i = 0; i < 4; i++)
        ws_expect_text(c, big);
    assert_true(metric_of(limited, "127.0.0.19", NULL, 0, "partyd_limit_conn_bytes_total") >= 1);
    tconn_close(c);
}

static void test_connections_per_room_from_the_party_config(void **state) {
    tconn *a, *b, *c;
    http_response res;
    (void)state;
    assert_int_equal(ws_try(limited, "127.0.0.15", "/parties/probe/full", NULL, &res, &a), 101);
    http_response_free(&res);
    assert_int_equal(ws_try(limited, "127.0.0.16", "/parties/probe/full", NULL, &res, &b), 101);
    http_response_free(&res);
    assert_int_equal(ws_try(limited, "127.0.0.17", "/parties/probe/full", NULL, &res, &c), 503);
    assert_non_null(strstr(res.body, "max_room_conns"));
    assert_non_null(http_response_header(&res, "Retry-After"));
    http_response_free(&res);
    assert_true(metric_of(limited, "127.0.0.19", NULL, 0, "partyd_limit_room_conns_total") >= 1);
    /* echo keeps the runtime's 32768. */
    assert_int_equal(ws_try(limited, "127.0.0.17", "/parties/echo/full", NULL, &res, &c), 101);
    http_response_free(&res);
    tconn_close(c);
    tconn_close(a);
    tconn_close(b);
}

/* A v2 PROXY header from 10.a.b.c (n spread over the three bytes). */
static void v2_header(char out[28], uint32_t n) {
    static const char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(out, sig, 12);
    out[12] = 0x21;
    out[13] = 0x11;
    out[14] = 0;
    out[15] = 12;
    out[16] = 10;
    out[17] = (char)(n >> 16);
    out[18] = (char)(n >> 8);
    out[19] = (char)n;
    memcpy(out + 20, "\x7f\x00\x00\x01\x30\x39\x07\xcf", 8);
}

#define FLOOD_ADDRESSES 100000
#define FLOOD_BATCH 200

static void test_address_table_stays_bounded_under_100000_proxy_addresses(void **state) {
    static const char get[] =
        "GET /_partyd/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct sockaddr_in to;
    int fds[FLOOD_BATCH];
    uint32_t n = 0;
    char header[28];
    (void)state;
    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)partyd_port(flood));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (n < FLOOD_ADDRESSES) {
        int i, batch = FLOOD_BATCH;
        for (i = 0; i < batch; i++) {
            struct linger rst = {1, 0}; /* closed with RST: no TIME_WAIT left behind */
            char req[28 + sizeof(get)];
            fds[i] = socket(AF_INET, SOCK_STREAM, 0);
            assert_true(fds[i] >= 0);
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
            assert_int_equal(connect(fds[i], (struct sockaddr *)&to, sizeof(to)), 0);
            v2_header(header, n + (uint32_t)i);
            memcpy(req, header, 28);
            memcpy(req + 28, get, sizeof(get) - 1);
            assert_int_equal(write(fds[i], req, 28 + sizeof(get) - 1),
                             (ssize_t)(28 + sizeof(get) - 1));
        }
        for (i = 0; i < batch; i++) {
            char answer[512];
            ssize_t got = read(fds[i], answer, sizeof(answer) - 1);
            assert_true(got > 12);
            answer[got] = '\0';
            assert_memory_equal(answer, "HTTP/1.1 200", 12);
            close(fds[i]);
        }
        n += (uint32_t)batch;
    }
    v2_header(header, 0xffffff);
    assert_true(metric_of(flood, NULL, header, 28, "partyd_limit_addresses") <= 1000);
    v2_header(header, 0xfffffe);
    assert_true(metric_of(flood, NULL, header, 28, "partyd_limit_addresses_evicted_total") >=
                FLOOD_ADDRESSES - 1000);
}

static int setup(void **state) {
    static const char config[] = "{\"limit-addr-conns\": 3, \"parties\": {"
                                 "\"probe\": {\"limit-conn-msgs\": 2, \"max-room-conns\": 2},"
                                 "\"echo\": {\"limit-conn-bytes\": \"1K\"}}}";
    static const char *const slow_args[] = {"--limit-addr-rate", "0.1", "--trusted-proxies",
                                            "127.0.0.0/8", NULL};
    static const char *const flood_args[] = {"--proxy-protocol", "--limit-addr-table", "1000",
                                             NULL};
    const char *limited_args[] = {"--config", config_path, NULL};
    FILE *f;
    (void)state;
    snprintf(config_path, sizeof(config_path), "/tmp/partyd-limits-%d.json", (int)getpid());
    f = fopen(config_path, "w");
    if (f == NULL)
        return 1;
    fputs(config, f);
    fclose(f);
    limited = partyd_start(limited_args);
    slow = partyd_start(slow_args);
    flood = partyd_start(flood_args);
    return limited == NULL || slow == NULL || flood == NULL;
}

static int teardown(void **state) {
    (void)state;
    tconn_close_all();
    partyd_stop(limited);
    partyd_free(limited);
    partyd_stop(slow);
    partyd_free(slow);
    partyd_stop(flood);
    partyd_free(flood);
    unlink(config_path);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_connections_per_address_over_the_limit_get_429),
        cmocka_unit_test(test_new_connections_per_second_over_the_limit_get_429_with_retry_after),
        cmocka_unit_test(test_the_hosts_own_address_is_exempt_by_default),
        cmocka_unit_test(test_ipv6_clients_are_counted_per_64),
        cmocka_unit_test(test_messages_over_the_limit_pause_reading_then_close_1013),
        cmocka_unit_test(test_bytes_over_the_limit_pause_reading_and_lose_nothing),
        cmocka_unit_test(test_connections_per_room_from_the_party_config),
        cmocka_unit_test(test_address_table_stays_bounded_under_100000_proxy_addresses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
