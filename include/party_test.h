/* party_test.h — an in-process harness for testing parties without a network.
 *
 * A party_test is a runtime on a fresh temporary data directory with a
 * virtual clock. Fake WebSocket connections and HTTP requests reach it over
 * socketpairs, through the same HTTP parser, router, rooms, storage and
 * output gate as the real server. The harness runs the runtime's event loop
 * itself, only while one of its calls waits for something; every wait is
 * bounded by a real-time timeout (5 s unless changed), so a test fails
 * instead of hanging.
 *
 * Conventions are party.h's: int results are 0 or a negative PARTY_E* code
 * (or PARTY_TEST_ETIMEDOUT). Everything here must be called from the thread
 * that created the party_test, and never from inside a party callback.
 */
#ifndef PARTY_TEST_H
#define PARTY_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "party.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A harness call waited longer than its timeout (party_test_set_timeout)
 * for what it was waiting for. */
#define PARTY_TEST_ETIMEDOUT (-100)

/* The virtual clock's start: 2026-01-01T00:00:00Z, in ms since the epoch. */
#define PARTY_TEST_EPOCH_MS INT64_C(1767225600000)

/* The default real-time bound of every wait, in ms. */
#define PARTY_TEST_TIMEOUT_MS 5000

typedef struct party_test party_test;
typedef struct party_test_conn party_test_conn;

/* ---- the harness --------------------------------------------------------- */

/* A runtime with the default configuration (party_config_init) except:
 * data_dir is a new temporary directory (mkdtemp under $TMPDIR or /tmp),
 * the clock is virtual (starting at PARTY_TEST_EPOCH_MS, moved only by
 * party_test_advance), the log level is warn, and it never listens on TCP.
 * NULL on failure (out of memory, no temporary directory). Free it with
 * party_test_free. */
PARTY_EXTERN party_test *party_test_new(void);
/* Same, with cfg's settings (copied; e.g. idle_timeout, durability, limits,
 * log_level). data_dir, host and port are ignored: the harness always uses
 * its own temporary directory and no listening socket. cfg NULL: the
 * defaults of party_test_new. */
PARTY_EXTERN party_test *party_test_new_with(const party_config *cfg);
/* Ends everything: waits (bounded) for store work in flight, drops every
 * fake connection, frees the runtime (rooms leave memory: free_state runs)
 * and removes the data directory with its contents. Every party_test_conn
 * of t is freed too: free the ones you want to free before this call, and
 * do not use any afterwards. NULL is a no-op. */
PARTY_EXTERN void party_test_free(party_test *t);

/* Registers a party (party_runtime_add): PARTY_EEXIST, PARTY_EINVAL,
 * PARTY_ENOMEM. def must outlive t: it is registered again by
 * party_test_restart. */
PARTY_EXTERN int party_test_add(party_test *t, const party_def *def);
/* The runtime under test. It changes on party_test_restart; valid until
 * then or party_test_free. */
PARTY_EXTERN party_runtime *party_test_runtime(party_test *t);
/* The data directory (under $TMPDIR or /tmp), valid until party_test_free. It stays
 * the same across restarts. */
PARTY_EXTERN const char *party_test_data_dir(party_test *t);
/* The real-time bound, in ms, of every later wait of t (at least 1). */
PARTY_EXTERN void party_test_set_timeout(party_test *t, int ms);
/* Text for a code returned by this harness (party_strerror, plus
 * PARTY_TEST_ETIMEDOUT). Never NULL; static storage. */
PARTY_EXTERN const char *party_test_strerror(int err);

/* ---- WebSocket connections ----------------------------------------------- */

/* Opens a WebSocket to target (a request target such as
 * "/parties/chat/lobby?_pk=alice"), as a network client would: a real
 * RFC 6455 opening handshake, then masked client frames. Waits for the
 * answer. Returns the connection when the server upgraded it (*status 101),
 * else NULL with *status the HTTP status the server answered (0 if none
 * came: the transport ended or the wait timed out). status may be NULL. The
 * connection belongs to the caller (party_test_conn_free) and stays valid,
 * even after it closes or the runtime restarts, until freed. */
PARTY_EXTERN party_test_conn *party_test_connect(party_test *t, const char *target, int *status);
/* Same, with extra request header lines ("Name: value\r\n" each; NULL for
 * none), e.g. for before_connect hooks. */
PARTY_EXTERN party_test_conn *party_test_connect_with_headers(party_test *t, const char *target,
                                                              const char *headers, int *status);

/* Sends one message (one masked frame; binary != 0 for a binary frame).
 * Does not run the loop: the bytes are written to the socket now, as far as
 * it takes them, and the rest while the harness next waits. So several
 * sends in a row reach the server together. PARTY_ECLOSED once the
 * connection closed (or this side sent its Close); PARTY_ENOMEM. */
PARTY_EXTERN int party_test_send(party_test_conn *conn, const void *data, size_t len, int binary);
/* party_test_send of a NUL-terminated text message (not checked for UTF-8,
 * so a test can send bad text on purpose). */
PARTY_EXTERN int party_test_send_text(party_test_conn *conn, const char *text);
/* Sends a Ping with payload (at most 125 bytes, PARTY_EINVAL) and waits for
 * a Pong. 0, PARTY_ECLOSED, or PARTY_TEST_ETIMEDOUT. */
PARTY_EXTERN int party_test_ping(party_test_conn *conn, const void *data, size_t len);

/* Receives the next message, running the loop until one arrives. *data is
 * malloc'd (the caller frees it; NUL-terminated past *len), *binary is 1
 * for a binary message, 0 for text; len and binary may be NULL. Messages
 * that arrived before the server closed are received first; then
 * PARTY_ECLOSED (see party_test_close_info), or PARTY_ENOMEM if the
 * harness ran out of memory receiving (it then dropped the connection,
 * rather than a message). PARTY_TEST_ETIMEDOUT if nothing came in time
 * (the connection stays usable). */
PARTY_EXTERN int party_test_recv(party_test_conn *conn, void **data, size_t *len, int *binary);
/* party_test_recv of a text message into *text (malloc'd, NUL-terminated).
 * A binary message is consumed and gives PARTY_EINVAL. */
PARTY_EXTERN int party_test_recv_text(party_test_conn *conn, char **text);
/* How the connection ended: 0 with *code the server's Close code (1005 if
 * its Close had none; 1006 if the transport ended without a Close: dropped,
 * restarted, or a protocol error by the server) and *reason its reason
 * (valid until party_test_conn_free; "" if none). PARTY_ESTATE while the
 * connection is still open. code and reason may be NULL. Does not wait. */
PARTY_EXTERN int party_test_close_info(party_test_conn *conn, int *code, const char **reason);

/* Starts the close handshake: sends Close(code, reason) (code 0: a Close
 * without a code) and waits for the server's Close. 0 when it came (its
 * code in party_test_close_info); PARTY_EIO if the transport ended without
 * one; PARTY_ECLOSED if the connection was already closed or closing;
 * PARTY_EINVAL for a code over 65535 or a reason over 123 bytes;
 * PARTY_TEST_ETIMEDOUT. The code is sent as given, valid or not. */
PARTY_EXTERN int party_test_close(party_test_conn *conn, int code, const char *reason);
/* Drops the transport without a Close (the room sees on_close with 1006),
 * then runs until idle, so the room has handled it on return. 0 or
 * PARTY_TEST_ETIMEDOUT. Dropping a closed connection does nothing (0). */
PARTY_EXTERN int party_test_drop(party_test_conn *conn);
/* Frees the connection; an open one is dropped first (not waited for).
 * NULL is a no-op. */
PARTY_EXTERN void party_test_conn_free(party_test_conn *conn);

/* ---- HTTP ---------------------------------------------------------------- */

/* A response. Free with party_test_response_free. */
typedef struct party_test_response {
    int status;      /* e.g. 200 */
    char *headers;   /* the header lines, each "Name: value\r\n"; NUL-terminated */
    char *body;      /* the body, NUL-terminated past body_len (never NULL) */
    size_t body_len; /* bytes of body */
} party_test_response;

/* One HTTP/1.1 request on a new connection, as a network client would send
 * it: method, target (path and query), extra header lines ("Name: v\r\n"
 * each; NULL for none), and a body (NULL/0 for none; a Content-Length is
 * added when body != NULL). Host and "Connection: close" are added. Waits
 * for the whole response into *res (free it). 0, PARTY_EIO if the server
 * closed without a complete response, PARTY_ENOMEM, PARTY_TEST_ETIMEDOUT.
 * On failure *res is empty (status 0) and needs no free. */
PARTY_EXTERN int party_test_request(party_test *t, const char *method, const char *target,
                                    const char *headers, const void *body, size_t len,
                                    party_test_response *res);
/* A request addressed to a room by id, as the runtime itself does it: on an
 * internal connection, to /<prefix>/<party>/_<path_rest> with the room-id
 * header, so the room sees no name in the path. path_rest: "" or a
 * "/rest?query" tail (NULL: ""). Otherwise as party_test_request. */
PARTY_EXTERN int party_test_request_room_id(party_test *t, const char *party, const char *room_id,
                                            const char *method, const char *path_rest,
                                            const char *headers, const void *body, size_t len,
                                            party_test_response *res);
/* The value of the first response header called name (case-insensitive),
 * as a malloc'd string (the caller frees it), or NULL. */
PARTY_EXTERN char *party_test_response_header(const party_test_response *res, const char *name);
/* Frees what res holds and empties it. NULL is a no-op. */
PARTY_EXTERN void party_test_response_free(party_test_response *res);

/* ---- waiting, time and memory --------------------------------------------- */

/* Runs the loop until nothing is left to do right now: no store work in
 * flight (opens, commits, closes), no room with queued events, no
 * room-to-room request (party_room_fetch) or outbound HTTP request
 * (party_room_fetch_url) in flight, no output unwritten
 * on either side. 0 or PARTY_TEST_ETIMEDOUT. fetch_timeout counts real
 * time, not the virtual clock. */
PARTY_EXTERN int party_test_run_until_idle(party_test *t);

/* The virtual clock, ms since the epoch. */
PARTY_EXTERN int64_t party_test_now(party_test *t);
/* Runs until idle, moves the virtual clock forward by ms (>= 0) in one
 * step, runs what came due by then (alarms and schedules fire, rooms idle
 * for idle_timeout are evicted), then runs until idle again. ms 0 runs
 * what is due now. 0, PARTY_EINVAL, PARTY_TEST_ETIMEDOUT. */
PARTY_EXTERN int party_test_advance(party_test *t, int64_t ms);

/* Forces the room (party, name) out of memory now, as eviction does
 * (free_state, store closed), after running until idle. PARTY_ENOTFOUND if
 * it is not in memory; PARTY_ESTATE if it still has connections or work;
 * PARTY_TEST_ETIMEDOUT. */
PARTY_EXTERN int party_test_evict(party_test *t, const char *party, const char *room);
/* The same for a room known by id. */
PARTY_EXTERN int party_test_evict_id(party_test *t, const char *room_id);
/* Forces the room (party, name) to hibernate now, as hibernate_after would
 * (free_state, store closed, connections kept open), after running until
 * idle. Works for any party, hibernating or not. PARTY_ENOTFOUND if not in
 * memory; PARTY_ESTATE if it has work or is already hibernated;
 * PARTY_TEST_ETIMEDOUT. */
PARTY_EXTERN int party_test_hibernate(party_test *t, const char *party, const char *room);
/* 1 if the room (party, name) is awake: in memory with its state and store
 * (not evicted, not hibernated), else 0. Does not run the loop. */
PARTY_EXTERN int party_test_loaded(party_test *t, const char *party, const char *room);

/* 1 if the room (party, name) is in memory, else 0. Does not run the loop. */
PARTY_EXTERN int party_test_in_memory(party_test *t, const char *party, const char *room);
/* The same for a room known by id. */
PARTY_EXTERN int party_test_in_memory_id(party_test *t, const char *room_id);

/* Restarts the runtime on the same data directory, as a process restart
 * would: open connections are dropped (rooms see on_close with 1006), store
 * work in flight finishes, outbound HTTP requests in flight are dropped
 * (the rooms' next incarnation answers them PARTY_EABORTED), then the
 * runtime is freed (every room leaves
 * memory: free_state runs) and a new one starts with the same parties,
 * configuration, commit delay and virtual time (alarms that are due fire
 * on the next party_test_advance). Fake connections of the old runtime are
 * closed (close code 1006) but stay valid until freed. The new runtime
 * takes the data directory's lock again (see party_runtime_listen).
 * 0, PARTY_ENOMEM, PARTY_TEST_ETIMEDOUT (then nothing was restarted),
 * PARTY_EBUSY (another runtime holds the data directory), PARTY_EIO (the
 * data directory or its alarm index cannot be opened). */
PARTY_EXTERN int party_test_restart(party_test *t);

/* Test hook of the output gate: every durable commit from now on first
 * waits ms of real time on its worker thread (0: no wait). Output held
 * behind a commit is released only after it. Kept across restarts. */
PARTY_EXTERN void party_test_set_commit_delay(party_test *t, unsigned ms);
/* Commits that failed (rolled back) since party_test_new, restarts
 * included. */
PARTY_EXTERN uint64_t party_test_commit_failures(party_test *t);
/* Group commits on worker threads since party_test_new, restarts included:
 * the rooms whose batches ended in one turn of the event loop commit
 * together, as one group (partyd_storage_commit_groups_total). */
PARTY_EXTERN uint64_t party_test_commit_groups(party_test *t);

/* A new random room id (party_room_id_new), for rooms addressed by id. */
PARTY_EXTERN void party_test_new_room_id(char id_out[PARTY_ID_MAX]);
/* The path of a room's own database file under the data directory, into
 * out (cap bytes). 0 or PARTY_EINVAL (malformed id, out too small). The
 * file exists once the room called party_room_db() (or if an earlier
 * partyd, which gave every room one, wrote the room); until then the
 * room's records are in a shared file. */
PARTY_EXTERN int party_test_room_file(party_test *t, const char *room_id, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* PARTY_TEST_H */
