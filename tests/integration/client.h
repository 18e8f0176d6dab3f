/* client: what the integration tests use to drive partyd from outside — a
 * child partyd process (spawned, its output captured, stopped by pid), raw
 * TCP connections to 127.0.0.1, an HTTP/1.1 client and a WebSocket client
 * written from RFC 6455 (not from src/ws.c, so the two cannot share a
 * mistake). Every wait is bounded; nothing sleeps.
 *
 * Functions named *_expect_* or ws_open* fail the current cmocka test (with a
 * message) instead of returning an error. */
#ifndef PARTY_TEST_CLIENT_H
#define PARTY_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default wait, in ms, for anything the server should do promptly. */
#define TC_TIMEOUT_MS 5000

/* Results of the receiving functions (0 or a positive count on success). */
enum {
    TC_EOF = -1,     /* the peer closed the TCP connection (FIN) */
    TC_RESET = -2,   /* the connection was reset or another socket error */
    TC_TIMEOUT = -3, /* nothing happened within the timeout */
    TC_BAD = -4,     /* the peer sent bytes that break the protocol */
};

/* ---- partyd as a child process ---- */

typedef struct partyd partyd;

/* Starts partyd with --port 0, a fresh temporary --data directory, the probe
 * and greeter parties, then extra_args (NULL-terminated, may be NULL). Does
 * not wait for anything. NULL if the process could not be created.
 * PARTYD_WRAPPER in the environment (e.g. "valgrind --error-exitcode=99")
 * is put in front of the command; its process is then the one signalled. */
partyd *partyd_spawn(const char *const *extra_args);
/* partyd_spawn, then waits (up to 20 s) for the "listening on
 * http://127.0.0.1:<port>" log line. NULL (with partyd's stderr printed) if
 * it never came; the process is then stopped and freed. */
partyd *partyd_start(const char *const *extra_args);
/* partyd_start with env_on (unless NULL) set to "1" in this process's
 * environment while the child is created, and removed again afterwards:
 * for switches the probe party reads (e.g. PARTYD_PROBE_HIBERNATE). */
partyd *partyd_start_env(const char *const *extra_args, const char *env_on);
/* For a cmocka group setup: partyd_start_env, then *server and *port (the
 * port it listens on) are set. 0, or -1 if it did not start (*server is then
 * NULL). Pair it with partyd_group_stop(*server) in the group teardown. */
int partyd_group_start(partyd **server, int *port, const char *const *extra_args,
                       const char *env_on);
/* The port it listens on (after partyd_start). */
int partyd_port(const partyd *d);
/* Its process id. */
int partyd_pid(const partyd *d);
/* Waits up to timeout_ms for the process to exit. Returns its exit status
 * (0-255), 128 + the signal that killed it, or TC_TIMEOUT if it still runs. */
int partyd_wait_exit(partyd *d, int timeout_ms);
/* SIGTERM, then waits up to 15 s; SIGKILL (to this pid only) as a last
 * resort. Returns the exit status as partyd_wait_exit does. */
int partyd_stop(partyd *d);
/* Stops the process if it still runs, removes its data directory and frees
 * d. NULL is a no-op. */
void partyd_free(partyd *d);
/* 1 once partyd's stderr contains needle, 0 if it did not within timeout_ms. */
int partyd_wait_stderr(partyd *d, const char *needle, int timeout_ms);
/* Copies of what partyd wrote so far (NUL-terminated; free() them). */
char *partyd_stderr(partyd *d);
char *partyd_stdout(partyd *d);
/* Sends sig to this partyd's pid (nothing once it has been reaped). */
void partyd_signal(partyd *d, int sig);
/* Runs partyd with extra_args (as partyd_spawn) to completion: it must
 * exit by itself within TC_TIMEOUT_MS, else the test fails. Its exit
 * status; *out (unless out is NULL) and *err get what it wrote (free()
 * them). */
int partyd_run_to_exit(const char *const *extra_args, char **out, char **err);
/* After an upgrade (SIGUSR2) that succeeded: the pid of the process that
 * serves now, from the old one's log line "...; serving (pid N)"; 0 while
 * there is none. The new process writes to the same stderr, so d's output
 * ends only once it has exited too. */
long partyd_serving_pid(partyd *d);
/* After an upgrade that succeeded: SIGTERM to the process serving now
 * (there must be one), then waits up to 60 s for the output both processes
 * share to end and reaps d's process. d's exit status (0: it handed over
 * and exited cleanly), as partyd_wait_exit. */
int partyd_stop_upgraded(partyd *d);
/* Fails the test if what partyd wrote to stderr so far holds a sanitizer
 * report (after the process exited: all of it). */
void partyd_expect_no_sanitizer_report(partyd *d);
/* For a cmocka group teardown: closes the connections tests left open, stops
 * d, and frees it. 0 if partyd exited with status 0; else prints its stderr
 * and returns -1 (a leak found by ASan or valgrind at exit shows up here),
 * and the test program will exit with status 1 whatever cmocka says. */
int partyd_group_stop(partyd *d);

/* ---- upgrades and their test hooks ---- */

/* For a cmocka group setup: makes a temporary directory (test_tmp_dir)
 * and a directory "hooks" in it (test_hooks_dir), named in
 * PARTYD_TEST_HOOKS for the partyd processes started from now on. 0, or
 * -1 if it could not. */
int test_hooks_group_setup(void **state);
/* The group teardown: PARTYD_TEST_HOOKS unset, the directory removed. */
int test_hooks_group_teardown(void **state);
/* That temporary directory, for the tests' own files. */
const char *test_tmp_dir(void);
/* Arms the test hook name (its file in test_hooks_dir) with text; fails
 * the test if it cannot. */
void test_hook_set(const char *name, const char *text);
/* Disarms it (none armed: no-op). */
void test_hook_clear(const char *name);
/* partyd_start, failing the test unless it started; *served is set to it
 * too, for the test teardown to stop if a check fails. */
partyd *partyd_expect_start(const char *const *extra_args, partyd **served);
/* The end of a test: *served must stop with status 0 (upgraded: after an
 * upgrade that succeeded, as partyd_stop_upgraded) and without a sanitizer
 * report; it is then freed and *served set to NULL. */
void partyd_expect_clean_stop(partyd **served, int upgraded);
/* After SIGUSR2 under the test hook hold-adopted: waits (up to 60 s) for
 * the new process to serve before it says adopted and returns its pid;
 * fails the test unless there is one other than d's. */
long partyd_held_pid(partyd *d);
/* For the teardown of a test that upgrades: closes the connections the
 * test left open; unless *served is NULL, kills the new process an upgrade
 * left running (the one serving now, or one held by hold-adopted while the
 * old process does not serve again), stops and frees *served and sets it
 * to NULL; then disarms the test hook hook (NULL: none). */
void partyd_upgrade_cleanup(partyd **served, const char *hook);

/* ---- raw TCP ---- */

/* One client connection and the bytes received but not consumed yet. */
typedef struct tconn {
    int fd;
    char *buf;
    size_t len, cap;
} tconn;

/* Connects to 127.0.0.1:port. rcvbuf > 0 sets SO_RCVBUF before connecting
 * (a small window makes a slow reader). NULL on failure. */
tconn *tconn_open(int port, int rcvbuf);
/* tconn_open from the local address source ("127.0.0.7"; NULL: any). */
tconn *tconn_open_from(int port, int rcvbuf, const char *source);
/* Closes the socket and frees c. NULL is a no-op. */
void tconn_close(tconn *c);
/* Closes with an RST instead of a FIN (SO_LINGER 0), then frees c. */
void tconn_reset(tconn *c);
/* Closes every connection still open (for group teardown after a failed
 * test left some). */
void tconn_close_all(void);
/* Sends all bytes, waiting up to TC_TIMEOUT_MS for room. 0 or TC_RESET /
 * TC_TIMEOUT. */
int tconn_send(tconn *c, const void *data, size_t len);
int tconn_send_str(tconn *c, const char *s);
/* Reads what is available into c->buf, waiting up to timeout_ms for at least
 * one byte. Returns the count read, TC_EOF, TC_RESET or TC_TIMEOUT. */
int tconn_fill(tconn *c, int timeout_ms);
/* Drops n bytes from the front of c->buf. */
void tconn_consume(tconn *c, size_t n);
/* Reads and discards until the peer closes. Returns TC_EOF, TC_RESET, or
 * TC_TIMEOUT; *discarded (if not NULL) counts the bytes dropped. */
int tconn_wait_close(tconn *c, int timeout_ms, size_t *discarded);

/* ---- HTTP ---- */

#define HTTP_MAX_HEADERS 64

typedef struct http_response {
    int status;
    char *head; /* status line and header lines, NUL-terminated */
    size_t n_headers;
    struct {
        const char *name, *value; /* point into head */
    } headers[HTTP_MAX_HEADERS];
    char *body; /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
} http_response;

/* Reads one response from c. head_request: the request was HEAD (no body
 * follows, whatever Content-Length says). 0, or TC_EOF / TC_RESET /
 * TC_TIMEOUT / TC_BAD. On success free with http_response_free. */
int http_read_response(tconn *c, int head_request, http_response *res, int timeout_ms);
void http_response_free(http_response *res);
/* The value of a header (case-insensitive name), or NULL. */
const char *http_response_header(const http_response *res, const char *name);
/* One request on a new connection with "Connection: close": method, target,
 * extra header lines (each ending in \r\n, may be NULL), body (may be NULL).
 * Fails the test if no response arrives. */
void http_expect_request(int port, const char *method, const char *target, const char *headers,
                         const void *body, size_t body_len, http_response *res);
void http_expect_get(int port, const char *target, http_response *res);
/* Sends raw bytes on a new connection and reads one response into res; the
 * connection is returned open (the caller closes it). Fails the test if no
 * valid response arrives. */
tconn *http_expect_raw(int port, const char *request, http_response *res);

/* ---- WebSocket ---- */

enum {
    WS_CONT = 0x0,
    WS_TEXT = 0x1,
    WS_BINARY = 0x2,
    WS_CLOSE = 0x8,
    WS_PING = 0x9,
    WS_PONG = 0xA,
};

typedef struct ws_frame {
    int opcode;
    int fin;
    char *data; /* payload, NUL-terminated (the NUL is not counted) */
    size_t len;
    int close_code;     /* CLOSE: the code, 1005 when the payload is empty */
    const char *reason; /* CLOSE: points into data (NUL-terminated) */
} ws_frame;

/* Sends the opening handshake for target (extra header lines may be NULL;
 * trailing bytes are sent in the same write, right after the request) and
 * reads the answer into res. Returns 0 when it is a 101 with the right
 * Sec-WebSocket-Accept, the HTTP status when it is another answer, or a
 * TC_* code. res is always set (empty when no answer was read): free it
 * with http_response_free. */
int ws_handshake(tconn *c, const char *target, const char *extra_headers, const void *trailing,
                 size_t trailing_len, http_response *res);
/* Connects and upgrades; fails the test unless the answer is a valid 101. */
tconn *ws_open(int port, const char *target);

/* Sends one masked frame with the given opcode and FIN bit. */
int ws_send_frame(tconn *c, int opcode, int fin, const void *data, size_t len);
/* Sends one frame whose first byte is given whole (FIN, RSV bits and opcode),
 * masked or not: for frames a correct client would never send. */
int ws_send_raw_frame(tconn *c, uint8_t first_byte, int masked, const void *data, size_t len);
int ws_send_text(tconn *c, const char *text);
/* A Close frame: code 0 sends an empty payload. */
int ws_send_close(tconn *c, int code, const char *reason);
/* Encodes a masked frame into out (header + payload; out must hold len + 14
 * bytes). Returns the frame size. */
size_t ws_encode_frame(char *out, uint8_t first_byte, int masked, const void *data, size_t len);

/* Receives one frame. Server frames must be unmasked with RSV bits clear.
 * 0, or TC_EOF / TC_RESET / TC_TIMEOUT / TC_BAD. Free with ws_frame_free. */
int ws_recv(tconn *c, ws_frame *f, int timeout_ms);
void ws_frame_free(ws_frame *f);

/* Fail the test unless the next frame is as described. */
void ws_expect_text(tconn *c, const char *text);
void ws_expect_binary(tconn *c, const void *data, size_t len);
/* reason NULL: any reason. */
void ws_expect_close(tconn *c, int code, const char *reason);
/* The next frame must be a text frame starting with prefix: its text (free). */
char *ws_expect_text_prefix(tconn *c, const char *prefix);
/* Fails unless the server closes the TCP connection within TC_TIMEOUT_MS,
 * sending nothing more. */
void tconn_expect_close(tconn *c);

/* ---- rooms over HTTP ---- */

/* GET /parties/<party>/<room>: the body (free). Fails the test unless the
 * status is 200. */
char *room_expect_record(int port, const char *party, const char *room);
/* The "count" of a room of the built-in counter party. Fails the test unless
 * the record has a count and the room's name. */
long long counter_expect_count(int port, const char *room);

/* ---- the probe party (tests/integration/probe_party.c) ---- */

/* Opens /parties/probe/<room>[?query], reads the "hello:<id>:..." greeting
 * and copies the id into id_out (at least 300 bytes; may be NULL). */
tconn *probe_open(int port, const char *room, const char *query, char *id_out);
/* A WebSocket to /parties/probe/<room> from the local address source
 * (NULL: any), after prefix_len bytes of prefix (a PROXY header; 0: none),
 * with extra header lines (may be NULL); its greeting is read. */
tconn *probe_open_behind(int port, const char *source, const void *prefix, size_t prefix_len,
                         const char *room, const char *headers);
/* GET of the room: its JSON record (free). */
char *probe_record(int port, const char *room);
/* Fails the test unless the room's record contains needle within
 * TC_TIMEOUT_MS (asked again while it does not). Returns the record (free). */
char *probe_expect_record(int port, const char *room, const char *needle);
/* Reads n answers from c, one per pipelined GET of the probe rooms
 * <prefix>0 .. <prefix>(n-1): fails the test unless each is a 200 with its
 * own room's name, in that order. */
void probe_expect_pipelined_records(tconn *c, const char *prefix, int n);

/* Fails the test unless the server is healthy: GET /_partyd/health on a
 * new connection answers 200 "ok", and a new WebSocket to the echo party
 * echoes a message. For after a hostile case. */
void partyd_expect_healthy(int port);

/* A monotonic clock in milliseconds (for deadlines and durations). */
int64_t test_now_ms(void);
/* 1, or 4 when partyd runs under PARTYD_WRAPPER (valgrind): the factor for
 * upper time bounds that a slowed-down partyd could miss. */
int test_slow_factor(void);
/* Removes path and everything below it, as far as it can (for cleanup:
 * errors are ignored, links are not followed). */
void test_remove_tree(const char *path);
/* Occurrences of needle in hay. */
size_t count_occurrences(const char *hay, const char *needle);
/* Plays systemd for the partyd processes started from now on: a datagram
 * socket bound at path, named in NOTIFY_SOCKET. The socket, or -1. */
int test_notify_listen(const char *path);
/* Reads notifications from fd until one says READY=1: its MAINPID (0:
 * none). Fails the test after 60 s without one (valgrind starts slowly). */
long test_notify_wait_ready(int fd);
/* Writes text to path (created or truncated); fails the test if it cannot. */
void test_write_file(const char *path, const char *text);

/* The value of series (a metric's name with its labels as written, e.g.
 * partyd_rooms_known{state="awake"}) in body, a /_partyd/metrics answer:
 * the number on the line that starts with it. Fails the test when no line
 * does. */
long long metrics_value(const char *body, const char *series);
/* GETs /_partyd/metrics from the partyd on port (it must answer 200): the
 * value of series in it, as metrics_value. */
long long metrics_get(int port, const char *series);

#endif
