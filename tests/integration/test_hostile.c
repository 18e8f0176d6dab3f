/* Hostile clients over raw sockets, the cases of docs/security.md that the
 * protocol tests do not already cover: oversize request lines, bad methods,
 * slowloris heads, ping floods, messages cut into many tiny fragments,
 * connection floods and room names that try to escape the data directory.
 * Each case checks the status or close code the client gets, and that the
 * server is healthy afterwards (a health check and a fresh WebSocket). The
 * group's partyd has small limits so each case stays quick. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"

#define MAX_MESSAGE 65536
#define MAX_HEADER_BYTES 4096

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {"--max-message-bytes",
                                       "64K",
                                       "--max-header-bytes",
                                       "4K",
                                       "--send-queue-bytes",
                                       "256K",
                                       "--header-timeout",
                                       "1",
                                       NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Sends request on a new connection; the answer must be status, then the
 * server closes the connection and is still healthy. */
static void expect_refused(const char *request, size_t len, int status) {
    http_response res;
    tconn *c = tconn_open(port, 0);
    int r;

    assert_non_null(c);
    assert_int_equal(tconn_send(c, request, len), 0);
    r = http_read_response(c, 0, &res, TC_TIMEOUT_MS);
    if (r != 0)
        fail_msg("no answer (%d) to a request of %zu bytes", r, len);
    if (res.status != status)
        fail_msg("expected %d, got %d (%s)", status, res.status, res.body);
    http_response_free(&res);
    tconn_expect_close(c);
    tconn_close(c);
    partyd_expect_healthy(port);
}

/* ---- HTTP ---- */

static void test_oversize_request_line_is_414(void **state) {
    size_t len = MAX_HEADER_BYTES * 2;
    char *request = malloc(len + 64);
    int n;
    (void)state;

    assert_non_null(request);
    n = snprintf(request, 64, "GET /parties/probe/");
    memset(request + n, 'a', len);
    memcpy(request + n + len, " HTTP/1.1\r\nHost: x\r\n\r\n", 23);
    request[(size_t)n + len + 23] = '\0';
    expect_refused(request, strlen(request), 414);
    free(request);
}

/* A request line that never ends is refused once it passes the limit,
 * without waiting for the rest. */
static void test_endless_request_line_is_414_before_it_ends(void **state) {
    char *request = malloc(MAX_HEADER_BYTES + 64);
    int n;
    (void)state;

    assert_non_null(request);
    n = snprintf(request, 64, "GET /");
    memset(request + n, 'a', MAX_HEADER_BYTES + 32);
    expect_refused(request, (size_t)n + MAX_HEADER_BYTES + 32, 414);
    free(request);
}

static void test_oversize_header_section_is_431(void **state) {
    char request[MAX_HEADER_BYTES * 2];
    size_t n = 0;
    int i;
    (void)state;

    n += (size_t)snprintf(request, sizeof(request), "GET /parties/probe/h HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; n + 200 < sizeof(request); i++)
        n += (size_t)snprintf(request + n, sizeof(request) - n, "X-Pad-%d: %0100d\r\n", i, i);
    n += (size_t)snprintf(request + n, sizeof(request) - n, "\r\n");
    expect_refused(request, n, 431);
}

static void test_header_count_over_max_headers_is_431(void **state) {
    char request[4096];
    size_t n = 0;
    int i;
    (void)state;

    /* 101 fields: one past the default max_headers of 100. */
    n += (size_t)snprintf(request, sizeof(request), "GET /parties/probe/h HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < 100; i++)
        n += (size_t)snprintf(request + n, sizeof(request) - n, "X-%d: y\r\n", i);
    n += (size_t)snprintf(request + n, sizeof(request) - n, "\r\n");
    expect_refused(request, n, 431);
}

static void test_bad_method_is_400_and_unknown_method_405(void **state) {
    static const char bad[] = "G(T /parties/probe/m HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char nul[] = "G\0T /parties/probe/m HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char empty[] = " /parties/probe/m HTTP/1.1\r\nHost: x\r\n\r\n";
    http_response res;
    (void)state;

    expect_refused(bad, sizeof(bad) - 1, 400);
    expect_refused(nul, sizeof(nul) - 1, 400);
    expect_refused(empty, sizeof(empty) - 1, 400);
    /* A well-formed method the party does not serve: its answer, not a
     * parser error. */
    http_expect_request(port, "BREW", "/parties/counter/m", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 405);
    assert_string_equal(http_response_header(&res, "Allow"), "GET, HEAD");
    http_response_free(&res);
    partyd_expect_healthy(port);
}

static void test_bad_upgrades_are_400_or_426(void **state) {
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    static const char *const bad[] = {
        /* (HTTP/1.0: its Upgrade is ignored, see test_http_conformance) */
        /* no key */
        "GET /parties/probe/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* a key that is not 16 bytes of base64 */
        "GET /parties/probe/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n",
        /* two keys */
        "GET /parties/probe/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n" KEY KEY "Sec-WebSocket-Version: 13\r\n\r\n",
    };
    static const char *const old_version[] = {
        "GET /parties/probe/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n" KEY "Sec-WebSocket-Version: 8\r\n\r\n",
        "GET /parties/probe/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n" KEY "\r\n",
    };
#undef KEY
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(bad[i], strlen(bad[i]), 400);
    for (i = 0; i < sizeof(old_version) / sizeof(old_version[0]); i++) {
        http_response res;
        tconn *c = http_expect_raw(port, old_version[i], &res);
        assert_int_equal(res.status, 426);
        assert_string_equal(http_response_header(&res, "Sec-WebSocket-Version"), "13");
        http_response_free(&res);
        tconn_expect_close(c);
        tconn_close(c);
    }
    partyd_expect_healthy(port);
}

/* Slowloris: a head sent a line at a time, never finished. The deadline is
 * for the whole head (--header-timeout 1 here), not renewed by each byte. */
#define SLOW_CONNS 20

static void test_slowloris_heads_get_408_at_header_timeout(void **state) {
    tconn *slow[SLOW_CONNS];
    int64_t started = test_now_ms(), elapsed;
    int i, line = 0, answered = 0;
    (void)state;

    for (i = 0; i < SLOW_CONNS; i++) {
        slow[i] = tconn_open(port, 0);
        assert_non_null(slow[i]);
        assert_int_equal(tconn_send_str(slow[i], "GET /parties/probe/slow HTTP/1.1\r\n"), 0);
    }
    /* One more header line every 100 ms on the first connection (the wait
     * for the answer paces it) until the server gives up on it. */
    for (;;) {
        http_response res;
        char header[64];
        int r = http_read_response(slow[0], 0, &res, 100);
        if (r == 0) {
            assert_int_equal(res.status, 408);
            http_response_free(&res);
            break;
        }
        if (r != TC_TIMEOUT)
            fail_msg("slowloris connection: %d instead of a 408", r);
        if (test_now_ms() - started > 5000)
            fail_msg("a head trickled for 5 s was never refused (--header-timeout 1)");
        snprintf(header, sizeof(header), "X-Trickle-%d: a\r\n", line++);
        if (tconn_send_str(slow[0], header) != 0)
            fail_msg("slowloris connection: cannot send header line %d", line);
    }
    elapsed = test_now_ms() - started;
    printf("  slowloris: 408 after %lld ms and %d trickled header lines\n", (long long)elapsed,
           line);
    assert_true(elapsed >= 900 && elapsed < 3000 * test_slow_factor());
    tconn_expect_close(slow[0]);
    answered++;
    /* The others, silent after their request line, are refused the same way. */
    for (i = 1; i < SLOW_CONNS; i++) {
        http_response res;
        int r = http_read_response(slow[i], 0, &res, TC_TIMEOUT_MS);
        if (r != 0)
            fail_msg("slowloris connection %d: %d instead of a 408", i, r);
        assert_int_equal(res.status, 408);
        http_response_free(&res);
        tconn_expect_close(slow[i]);
        answered++;
    }
    assert_int_equal(answered, SLOW_CONNS);
    for (i = 0; i < SLOW_CONNS; i++)
        tconn_close(slow[i]);
    assert_true(partyd_wait_stderr(server, "no complete request within header_timeout", 1000));
    partyd_expect_healthy(port);
}

/* ---- WebSocket ---- */

#define PINGS 2000

static void test_ping_flood_is_answered_in_order(void **state) {
    char *frames = malloc((size_t)PINGS * (125 + 14));
    tconn *c = probe_open(port, "pingflood", NULL, NULL);
    size_t n = 0;
    int i;
    (void)state;

    assert_non_null(frames);
    for (i = 0; i < PINGS; i++) {
        char payload[125];
        memset(payload, 'p', sizeof(payload));
        snprintf(payload, sizeof(payload), "%d", i);
        n += ws_encode_frame(frames + n, 0x80 | WS_PING, 1, payload, 1 + (size_t)i % 125);
    }
    assert_int_equal(tconn_send(c, frames, n), 0);
    free(frames);
    for (i = 0; i < PINGS; i++) {
        ws_frame f;
        char expect[16];
        int r = ws_recv(c, &f, TC_TIMEOUT_MS);
        if (r != 0)
            fail_msg("pong %d of %d: %d", i, PINGS, r);
        snprintf(expect, sizeof(expect), "%d", i);
        if (f.opcode != WS_PONG || f.len != 1 + (size_t)i % 125 ||
            strncmp(f.data, expect, strlen(expect) < f.len ? strlen(expect) : f.len) != 0)
            fail_msg("pong %d: opcode %d, %zu bytes", i, f.opcode, f.len);
        ws_frame_free(&f);
    }
    assert_int_equal(ws_send_text(c, "after the flood"), 0);
    ws_expect_text(c, "echo:after the flood");
    tconn_close(c);
    partyd_expect_healthy(port);
}

/* Pings from a client that never reads its pongs: they pile up in its send
 * queue, which is bounded (--send-queue-bytes 256K here): the connection
 * is dropped, others go on. */
static void test_ping_flood_without_reading_is_dropped_at_the_send_queue_limit(void **state) {
    enum { BATCH = 2000 };
    char *frames = malloc((size_t)BATCH * (125 + 14));
    char payload[125];
    char hello_target[128];
    tconn *c = tconn_open(port, 4096);
    http_response res;
    size_t n = 0, received = 0;
    int i, dropped = 0;
    (void)state;

    assert_non_null(frames);
    assert_non_null(c);
    snprintf(hello_target, sizeof(hello_target), "/parties/probe/pingdrop?_pk=pinger");
    assert_int_equal(ws_handshake(c, hello_target, NULL, NULL, 0, &res), 0);
    http_response_free(&res);
    memset(payload, 'q', sizeof(payload));
    for (i = 0; i < BATCH; i++)
        n += ws_encode_frame(frames + n, 0x80 | WS_PING, 1, payload, sizeof(payload));
    /* 250 KiB of pongs a batch; at most 64 batches (16 MB, more than any
     * kernel buffering between us). */
    for (i = 0; i < 64 && !dropped; i++) {
        if (tconn_send(c, frames, n) != 0)
            dropped = 1; /* reset by the server: dropped already */
        else if (partyd_wait_stderr(server, "conn pinger: send queue would exceed", 20))
            dropped = 1;
    }
    free(frames);
    assert_true(partyd_wait_stderr(server, "conn pinger: send queue would exceed send_queue_bytes",
                                   TC_TIMEOUT_MS));
    assert_int_not_equal(tconn_wait_close(c, TC_TIMEOUT_MS, &received), TC_TIMEOUT);
    tconn_close(c);
    partyd_expect_healthy(port);
}

/* A message in many tiny fragments: reassembled whole while under the
 * limit, 1009 as soon as it passes it; empty fragments cost no memory. */
static size_t encode_fragments(char *out, int opcode, const char *data, size_t len, size_t piece) {
    size_t n = 0, off = 0;
    do {
        size_t take = len - off < piece ? len - off : piece;
        uint8_t first = (uint8_t)((off == 0 ? opcode : WS_CONT) | (off + take == len ? 0x80 : 0));
        n += ws_encode_frame(out + n, first, 1, data + off, take);
        off += take;
    } while (off < len);
    return n;
}

static void test_many_tiny_fragments_reassemble_and_are_bounded(void **state) {
    size_t len = MAX_MESSAGE - 16;
    char *data = malloc(MAX_MESSAGE + 1);
    char *frames = malloc(1024 * 1024);
    tconn *c = probe_open(port, "tiny", "_pk=tiny", NULL);
    size_t i, n;
    (void)state;

    assert_non_null(data);
    assert_non_null(frames);
    for (i = 0; i < MAX_MESSAGE + 1; i++)
        data[i] = (char)(i * 7);
    /* Just under the limit, one byte per frame. */
    n = encode_fragments(frames, WS_BINARY, data, len, 1);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_binary(c, data, len);

    /* 100,000 empty continuation frames around one byte. */
    n = ws_encode_frame(frames, WS_BINARY, 1, "z", 1);
    for (i = 0; i < 100000; i++)
        n += ws_encode_frame(frames + n, WS_CONT, 1, "", 0);
    n += ws_encode_frame(frames + n, 0x80 | WS_CONT, 1, "", 0);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_binary(c, "z", 1);

    /* One byte per frame past the limit: 1009 once the sum passes it. */
    n = encode_fragments(frames, WS_BINARY, data, MAX_MESSAGE + 1, 1);
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_close(c, 1009, NULL);
    tconn_expect_close(c);
    tconn_close(c);
    free(data);
    free(frames);
    partyd_expect_healthy(port);
}

/* ---- room names ---- */

static const char *walk_root;
static int walk_room_files, walk_stray_files;

static int count_files(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    const char *rel = path + strlen(walk_root);
    unsigned shard;
    char name[128], rest[16];
    (void)st;
    (void)ftw;
    if (flag != FTW_F)
        return 0;
    /* rooms/<2 hex>/<hex>.db (and its -wal, -shm): a room's own file; or
     * the runtime's own files at the top (the shared rooms-<k>.db among
     * them); nothing else, nowhere else. */
    if (sscanf(rel, "/rooms/%2x/%100[0-9a-f].%15s", &shard, name, rest) == 3 &&
        (strcmp(rest, "db") == 0 || strcmp(rest, "db-wal") == 0 || strcmp(rest, "db-shm") == 0)) {
        if (strcmp(rest, "db") == 0)
            walk_room_files++;
        return 0;
    }
    if (strchr(rel + 1, '/') == NULL)
        return 0;
    printf("  unexpected file in the data directory: %s\n", rel);
    walk_stray_files++;
    return 0;
}

/* The rooms whose records are in the shared files <dir>/rooms-<k>.db. */
static int shared_rooms(const char *dir) {
    char path[512];
    struct stat st;
    int k, n = 0;
    for (k = 0; k < 256; k++) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        snprintf(path, sizeof(path), "%s/rooms-%d.db", dir, k);
        if (stat(path, &st) != 0)
            break;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(
            sqlite3_prepare_v2(db, "SELECT count(*) FROM _party_rooms", -1, &stmt, NULL),
            SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        n += sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    return n;
}

static void expect_room_name(int p, const char *party, const char *encoded, const char *json) {
    char target[512];
    http_response res;
    snprintf(target, sizeof(target), "/parties/%s/%s", party, encoded);
    http_expect_get(p, target, &res);
    if (res.status != 200 || strstr(res.body, json) == NULL)
        fail_msg("GET %s: %d %s (wanted %s)", target, res.status, res.body, json);
    http_response_free(&res);
}

static void expect_status(int p, const char *target, int status) {
    http_response res;
    http_expect_get(p, target, &res);
    if (res.status != status)
        fail_msg("GET %s: %d instead of %d", target, res.status, status);
    http_response_free(&res);
}

static void test_room_names_cannot_escape_the_data_directory(void **state) {
    char parent[] = "/tmp/partyd-names-XXXXXX";
    char dir[64], target[512], long_name[300];
    const char *args[] = {"--data", dir, NULL};
    partyd *d;
    tconn *c;
    char *hello;
    int p, round, files[2] = {0, 0};
    (void)state;

    assert_non_null(mkdtemp(parent));
    snprintf(dir, sizeof(dir), "%s/data", parent);
    for (round = 0; round < 2; round++) {
        /* The same names again after a restart: the same rooms. */
        d = partyd_start(args);
        assert_non_null(d);
        p = partyd_port(d);
        expect_room_name(p, "counter", "a%2Fb", "\"name\":\"a/b\"");
        expect_room_name(p, "counter", "..%2F..%2Fescape", "\"name\":\"../../escape\"");
        expect_room_name(p, "counter", "%2E%2E.", "\"name\":\"...\"");
        /* ".." itself (or encoded) is a dot-segment, not a name */
        expect_status(p, "/parties/counter/%2E%2E", 400);
        expect_status(p, "/parties/counter/..", 400);
        expect_room_name(p, "counter", "%2Fetc%2Fpasswd", "\"name\":\"/etc/passwd\"");
        expect_room_name(p, "counter", "%5C..%5Cwin", "\"name\":\"\\\\..\\\\win\"");
        /* NUL, bad escapes, bytes that are not UTF-8, too long: refused. */
        expect_status(p, "/parties/counter/a%00b", 400);
        expect_status(p, "/parties/counter/a%zzb", 400);
        expect_status(p, "/parties/counter/%C0%AF", 400);
        memset(long_name, 'n', 257);
        long_name[257] = '\0';
        snprintf(target, sizeof(target), "/parties/counter/%s", long_name);
        expect_status(p, target, 400);
        long_name[256] = '\0';
        expect_room_name(p, "counter", long_name, "\"count\":");
        /* The same for a WebSocket. */
        c = probe_open(p, "..%2F..%2Fws", NULL, NULL);
        tconn_close(c);
        c = tconn_open(p, 0);
        {
            http_response res;
            assert_int_equal(ws_handshake(c, "/parties/probe/x%00y", NULL, NULL, 0, &res), 400);
            http_response_free(&res);
        }
        tconn_close(c);
        c = tconn_open(p, 0);
        {
            http_response res;
            assert_int_equal(ws_handshake(c, "/parties/probe/%2e%2e", NULL, NULL, 0, &res), 400);
            http_response_free(&res);
        }
        tconn_close(c);
        c = ws_open(p, "/parties/probe/%2E%2E.");
        hello = ws_expect_text_prefix(c, "hello:");
        assert_non_null(strstr(hello, ":...:"));
        free(hello);
        tconn_close(c);
        partyd_expect_healthy(p);
        assert_int_equal(partyd_stop(d), 0);
        partyd_free(d);

        walk_root = dir;
        walk_room_files = walk_stray_files = 0;
        assert_int_equal(nftw(dir, count_files, 16, FTW_PHYS), 0);
        /* Every file is a hashed room file (or the runtime's own); the
         * probe keeps no records, the six counter rooms do (in the shared
         * files, keyed by their hashed ids). */
        files[round] = walk_room_files + shared_rooms(dir);
        printf("  round %d: %d rooms with records (%d own files), %d stray files\n", round,
               files[round], walk_room_files, walk_stray_files);
        assert_int_equal(walk_stray_files, 0);
        assert_true(files[round] >= 6);
        /* Nothing next to the data directory ("../escape" and the like). */
        {
            DIR *top = opendir(parent);
            struct dirent *e;
            int entries = 0;
            assert_non_null(top);
            while ((e = readdir(top)) != NULL)
                if (e->d_name[0] != '.')
                    entries++;
            closedir(top);
            assert_int_equal(entries, 1);
        }
    }
    assert_int_equal(files[1], files[0]);
    test_remove_tree(parent);
}

/* ---- connection flood ---- */

#define FLOOD 40

static void test_connection_flood_past_max_conns_gets_503_and_recovers(void **state) {
    static const char *const args[] = {"--max-conns", "20", "--header-timeout", "1", NULL};
    partyd *d = partyd_start(args);
    tconn *flood[FLOOD];
    http_response res;
    tconn *extra;
    int i, p;
    (void)state;

    assert_non_null(d);
    p = partyd_port(d);
    /* Twice max_conns of connections that say nothing. */
    for (i = 0; i < FLOOD; i++) {
        flood[i] = tconn_open(p, 0);
        assert_non_null(flood[i]);
    }
    /* A WebSocket now: 503, and the log says which limit. */
    extra = tconn_open(p, 0);
    assert_non_null(extra);
    assert_int_equal(ws_handshake(extra, "/parties/echo/flood", NULL, NULL, 0, &res), 503);
    http_response_free(&res);
    tconn_close(extra);
    assert_true(partyd_wait_stderr(d, "max_conns (20) reached", TC_TIMEOUT_MS));
    /* Plain HTTP is still answered meanwhile (health checks keep working). */
    http_expect_get(p, "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    /* The silent ones are closed at the header timeout, without a word. */
    for (i = 0; i < FLOOD; i++) {
        size_t got = 0;
        int r = tconn_wait_close(flood[i], TC_TIMEOUT_MS, &got);
        if (r == TC_TIMEOUT || got != 0)
            fail_msg("flood connection %d: %d, %zu bytes", i, r, got);
        tconn_close(flood[i]);
    }
    partyd_expect_healthy(p);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* More silent connections at once than partyd's pool of handshake timers
 * (256 to a loop, in one block; the others are allocated one by one): each
 * still gets its header timeout, and partyd stops cleanly while another
 * such crowd waits (a timer left open, or freed while its block lives, fails
 * the exit under AddressSanitizer). */
#define PAST_TIMER_POOL 300

static void open_silent(int p, tconn **conns) {
    int i;
    for (i = 0; i < PAST_TIMER_POOL; i++) {
        conns[i] = tconn_open(p, 0);
        assert_non_null(conns[i]);
    }
    partyd_expect_healthy(p); /* accepted in order: the crowd is in */
}

static void test_silent_connections_past_the_timer_pool_time_out_and_stop_cleanly(void **state) {
    static const char *const args[] = {"--header-timeout", "1", NULL};
    partyd *d = partyd_start(args);
    tconn *conns[PAST_TIMER_POOL];
    int i, p;
    (void)state;

    assert_non_null(d);
    p = partyd_port(d);
    open_silent(p, conns);
    for (i = 0; i < PAST_TIMER_POOL; i++) {
        size_t got = 0;
        int r = tconn_wait_close(conns[i], TC_TIMEOUT_MS, &got);
        if (r == TC_TIMEOUT || got != 0)
            fail_msg("silent connection %d: %d, %zu bytes", i, r, got);
        tconn_close(conns[i]);
    }
    open_silent(p, conns);
    assert_int_equal(partyd_stop(d), 0);
    for (i = 0; i < PAST_TIMER_POOL; i++)
        tconn_close(conns[i]);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oversize_request_line_is_414),
        cmocka_unit_test(test_endless_request_line_is_414_before_it_ends),
        cmocka_unit_test(test_oversize_header_section_is_431),
        cmocka_unit_test(test_header_count_over_max_headers_is_431),
        cmocka_unit_test(test_bad_method_is_400_and_unknown_method_405),
        cmocka_unit_test(test_bad_upgrades_are_400_or_426),
        cmocka_unit_test(test_slowloris_heads_get_408_at_header_timeout),
        cmocka_unit_test(test_ping_flood_is_answered_in_order),
        cmocka_unit_test(test_ping_flood_without_reading_is_dropped_at_the_send_queue_limit),
        cmocka_unit_test(test_many_tiny_fragments_reassemble_and_are_bounded),
        cmocka_unit_test(test_room_names_cannot_escape_the_data_directory),
        cmocka_unit_test(test_connection_flood_past_max_conns_gets_503_and_recovers),
        cmocka_unit_test(test_silent_connections_past_the_timer_pool_time_out_and_stop_cleanly),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests_name("hostile", tests, group_setup, group_teardown);
}
