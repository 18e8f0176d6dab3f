/* The OOM sweep: each party_test scenario below runs once to count its
 * allocations (and who makes each), then once per allocation with that
 * one failing: every one with PARTY_OOM_FULL=1 (make oom); else about
 * MAX_POINTS per scenario: partyd's, OpenSSL's and cJSON's allocations
 * (all of them while they fit in three quarters of it, else a spread)
 * and a spread of SQLite's. Each run must end with the scenario's
 * results right, or with an error the caller sees (PARTY_ENOMEM or another
 * error code from the harness, a refused handshake, an HTTP 5xx, a
 * WebSocket closed with 1011/1006/1001/1013, an on_start error frame);
 * never a crash, a leak (LeakSanitizer after each run), a hang (a harness
 * timeout), wrong data, or an on_connect without its on_close.
 *
 * The library is built for this test with PARTY_ALLOC_FAULTS (its
 * allocation family counts and can fail); main routes SQLite's, cJSON's
 * and OpenSSL's allocators through the same counter before any of them
 * allocates. libuv's allocations are counted apart and never failed: libuv
 * aborts when it cannot grow a loop's watcher array (PARTY_OOM_UV=1 fails
 * them too and shows it, in uv_loop_init).
 *
 * PARTY_OOM_ONLY=<scenario>[:<n>] runs one scenario (failing only its
 * allocation n); PARTY_OOM_TRACE=1 prints the stack of each failed
 * allocation; PARTY_OOM_VERBOSE=1 prints every run and the runtime's log. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <uv.h>

#include "alloc.h"
#include "asan.h"
#include "party.h"
#include "party_test.h"
#include "parties.h"

#ifdef PARTY__ASAN
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#endif

/* Scenarios with more allocations than this are swept with a stride over
 * SQLite's (see chosen). */
#define MAX_POINTS 100

/* ---- third-party allocators, routed through the fault counter ---- */

static uint64_t uv_allocs; /* counted, never failed */
static int fail_uv;        /* PARTY_OOM_UV=1: fail libuv's too (it aborts) */

static void *sqlite_malloc(int n) {
    return party__alloc_fault("sqlite") ? NULL : malloc((size_t)n);
}

static void sqlite_free(void *p) {
    free(p);
}

static void *sqlite_realloc(void *p, int n) {
    return party__alloc_fault("sqlite") ? NULL : realloc(p, (size_t)n);
}

static int sqlite_size(void *p) {
    return p != NULL ? (int)malloc_usable_size(p) : 0;
}

static int sqlite_roundup(int n) {
    return (n + 7) & ~7;
}

static int sqlite_init(void *arg) {
    (void)arg;
    return SQLITE_OK;
}

static void sqlite_shutdown(void *arg) {
    (void)arg;
}

static void *cjson_malloc(size_t n) {
    return party__alloc_fault("cjson") ? NULL : malloc(n);
}

static void *ssl_malloc(size_t n, const char *file, int line) {
    (void)file;
    (void)line;
    return party__alloc_fault("openssl") ? NULL : malloc(n);
}

static void *ssl_realloc(void *p, size_t n, const char *file, int line) {
    (void)file;
    (void)line;
    return party__alloc_fault("openssl") ? NULL : realloc(p, n);
}

static void ssl_free(void *p, const char *file, int line) {
    (void)file;
    (void)line;
    free(p);
}

static int uv_fault(void) {
    __atomic_add_fetch(&uv_allocs, 1, __ATOMIC_RELAXED);
    return fail_uv && party__alloc_fault("libuv");
}

static void *uv_malloc(size_t n) {
    return uv_fault() ? NULL : malloc(n);
}

static void *uv_realloc(void *p, size_t n) {
    return uv_fault() ? NULL : realloc(p, n);
}

static void *uv_calloc(size_t count, size_t n) {
    return uv_fault() ? NULL : calloc(count, n);
}

/* Before anything of SQLite, OpenSSL or libuv has run. */
static void hook_allocators(void) {
    static const sqlite3_mem_methods sqlite_methods = {
        sqlite_malloc,  sqlite_free, sqlite_realloc,  sqlite_size,
        sqlite_roundup, sqlite_init, sqlite_shutdown, NULL};
    cJSON_Hooks hooks = {cjson_malloc, free};
    const char *uv = getenv("PARTY_OOM_UV");

    fail_uv = uv != NULL && strcmp(uv, "1") == 0;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sqlite_methods) != SQLITE_OK ||
        !CRYPTO_set_mem_functions(ssl_malloc, ssl_realloc, ssl_free) ||
        uv_replace_allocator(uv_malloc, uv_realloc, uv_calloc, free) != 0) {
        fprintf(stderr, "oom: cannot hook the allocators: something allocated before main\n");
        exit(1);
    }
    cJSON_InitHooks(&hooks);
}

/* ---- the party the scenarios drive ----
 * Every library call it makes is checked: a failure closes the connection
 * with 1011 and the error's text (HTTP: 500), so the client sees it. */

/* on_connect and on_close calls of the current run: party.h promises one
 * on_close per connection, whatever failed. */
static struct { unsigned connects, closes; } calls;

static void fail_conn(party_conn *conn, const char *what, int rc) {
    char reason[100];
    snprintf(reason, sizeof(reason), "%s: %s", what, party_strerror(rc));
    (void)party_conn_close(conn, 1011, reason);
}

static void reply(party_conn *conn, const char *text, size_t len) {
    int rc = party_conn_send(conn, text, len, 0);
    if (rc != 0)
        fail_conn(conn, "send", rc);
}

static void oom_free(void *state) {
    free(state);
}

static int oom_start(party_room *room, const char *props) {
    (void)props;
    party_room_set_state(room, malloc(16));
    return 0;
}

static void oom_connect(party_room *room, party_conn *conn, const party_request *req) {
    char text[128];
    (void)room;
    (void)req;
    calls.connects++;
    snprintf(text, sizeof(text), "hello %s", party_conn_id(conn));
    reply(conn, text, strlen(text));
}

static void oom_message(party_room *room, party_conn *conn, const void *data, size_t len,
                        int binary) {
    char *text = malloc(len + 1), *arg;
    int rc = 0;

    if (text == NULL || binary || memchr(data, ':', len) == NULL) {
        free(text);
        (void)party_conn_close(conn, 1003, "not a command");
        return;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    arg = strchr(text, ':') + 1;
    if (strncmp(text, "echo:", 5) == 0) {
        reply(conn, arg, strlen(arg));
    } else if (strncmp(text, "bcast:", 6) == 0) {
        if ((rc = party_room_broadcast(room, arg, strlen(arg), 0, NULL, 0, NULL)) != 0)
            fail_conn(conn, "broadcast", rc);
    } else if (strncmp(text, "put:", 4) == 0) {
        char *eq = strchr(arg, '=');
        *eq = '\0';
        if ((rc = party_kv_put(room, arg, eq + 1, strlen(eq + 1))) != 0)
            fail_conn(conn, "kv_put", rc);
        else
            reply(conn, "ok", 2);
    } else if (strncmp(text, "get:", 4) == 0) {
        void *val = NULL;
        size_t val_len = 0;
        rc = party_kv_get(room, arg, &val, &val_len);
        if (rc == PARTY_ENOTFOUND)
            reply(conn, "absent", 6);
        else if (rc != 0)
            fail_conn(conn, "kv_get", rc);
        else
            reply(conn, val, val_len);
        free(val);
    } else if (strncmp(text, "fetch_url:", 10) == 0) {
        /* With no allow-list: a refusal answered by the engine. */
        rc = party_room_fetch_url(room, "GET", arg, NULL, NULL, 0, 0, "url", NULL);
        if (rc != 0)
            fail_conn(conn, "fetch_url", rc);
        else /* held behind the record's commit: if it fails, 1011 says so */
            reply(conn, "sent", 4);
    } else if (strncmp(text, "fetch:", 6) == 0) {
        rc = party_room_fetch(room, "oom", arg, "GET", "/hello", NULL, NULL, 0, "tag", NULL);
        if (rc != 0)
            fail_conn(conn, "fetch", rc);
        else /* held behind the request's record: if its commit fails, 1011 says so */
            reply(conn, "sent", 4);
    } else {
        (void)party_conn_close(conn, 1003, "unknown command");
    }
    free(text);
}

/* GET /hello; GET|POST /kv?k=; POST /echo; POST /alarm?in=; POST /sched?in=. */
static void oom_request(party_room *room, const party_request *req, party_response *res) {
    const char *method = party_request_method(req), *path = party_request_path(req);
    const char *k = party_request_query(req, "k"), *in = party_request_query(req, "in");
    int post = strcmp(method, "POST") == 0, rc;
    size_t len;
    const void *body = party_request_body(req, &len);
    char text[160];

    if (strstr(path, "/hello") != NULL) {
        snprintf(text, sizeof(text), "hello from %s", party_room_name(room));
        party_response_text(res, 200, text);
    } else if (strstr(path, "/kv") != NULL && k != NULL && post) {
        rc = party_kv_put(room, k, body != NULL ? body : "", len);
        party_response_text(res, rc == 0 ? 204 : 500, party_strerror(rc));
    } else if (strstr(path, "/kv") != NULL && k != NULL) {
        void *val = NULL;
        size_t val_len = 0;
        rc = party_kv_get(room, k, &val, &val_len);
        if (rc == 0)
            party_response_set_body(res, val, val_len);
        else
            party_response_text(res, rc == PARTY_ENOTFOUND ? 404 : 500, party_strerror(rc));
        free(val);
    } else if (strstr(path, "/echo") != NULL && post) {
        party_response_set_header(res, "X-Echo", "yes");
        party_response_set_body(res, body, len);
    } else if (strstr(path, "/alarm") != NULL && in != NULL && post) {
        rc = party_alarm_set(room, party_now_ms(room) + atoi(in));
        party_response_text(res, rc == 0 ? 204 : 500, party_strerror(rc));
    } else if (strstr(path, "/sched") != NULL && in != NULL && post) {
        rc = party_schedule_after(room, atoi(in), "tick", "pay", 3, NULL);
        party_response_text(res, rc == 0 ? 204 : 500, party_strerror(rc));
    } else {
        party_response_text(res, 404, "no such route");
    }
}

/* A failed handler is retried with backoff (the documented behaviour). */
static int oom_alarm(party_room *room) {
    return party_kv_put(room, "alarm", "fired", 5);
}

static int oom_schedule(party_room *room, const char *name, const void *payload, size_t len) {
    char text[64];
    snprintf(text, sizeof(text), "%s:%.*s", name, (int)len, (const char *)payload);
    return party_kv_put(room, "sched", text, strlen(text));
}

static int close_each(party_conn *conn, void *arg) {
    fail_conn(conn, "on_response", *(int *)arg);
    return 0;
}

static void oom_response(party_room *room, const char *id, const char *tag,
                         const party_response *res) {
    size_t len;
    const void *body = party_response_get_body(res, &len);
    char text[300];
    int rc;
    (void)id;
    (void)tag;
    if (party_response_get_error(res) != 0)
        snprintf(text, sizeof(text), "error:%s", party_strerror(party_response_get_error(res)));
    else
        snprintf(text, sizeof(text), "fetched:%d:%.*s", party_response_get_status(res), (int)len,
                 body != NULL ? (const char *)body : "");
    rc = party_room_broadcast(room, text, strlen(text), 0, NULL, 0, NULL);
    if (rc != 0)
        party_room_foreach_conn(room, NULL, close_each, &rc);
}

static void oom_close(party_room *room, party_conn *conn, int code, const char *reason,
                      int was_clean) {
    (void)room;
    (void)conn;
    (void)code;
    (void)reason;
    (void)was_clean;
    calls.closes++;
}

static const party_def oom_def = {
    .name = "oom",
    .on_start = oom_start,
    .on_connect = oom_connect,
    .on_message = oom_message,
    .on_close = oom_close,
    .on_request = oom_request,
    .on_alarm = oom_alarm,
    .on_schedule = oom_schedule,
    .on_response = oom_response,
    .free_state = oom_free,
};

static const party_def oomh_def = {
    .name = "oomh",
    .hibernate = 1,
    .on_start = oom_start,
    .on_connect = oom_connect,
    .on_message = oom_message,
    .on_close = oom_close,
    .on_request = oom_request,
    .free_state = oom_free,
};

/* The built-in yjs party, its calls counted. */
static void yjs_connect(party_room *room, party_conn *conn, const party_request *req) {
    calls.connects++;
    party_yjs_on_connect(room, conn, req);
}

static void yjs_close(party_room *room, party_conn *conn, int code, const char *reason,
                      int was_clean) {
    calls.closes++;
    party_yjs_on_close(room, conn, code, reason, was_clean);
}

static const party_def yjs_def = {
    .name = "yjs",
    .hibernate = 1,
    .on_start = party_yjs_on_start,
    .on_connect = yjs_connect,
    .on_message = party_yjs_on_message,
    .on_close = yjs_close,
    .connection_tags = party_yjs_connection_tags,
    .free_state = party_yjs_free_state,
};

/* A party with synced state and RPC: "add" adds one to {"n":N} and
 * answers the new N (an error answer when it cannot). Hibernates. */
static void sync_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)room;
    (void)conn;
    (void)req;
    calls.connects++;
}

static void sync_close(party_room *room, party_conn *conn, int code, const char *reason,
                       int was_clean) {
    (void)room;
    (void)conn;
    (void)code;
    (void)reason;
    (void)was_clean;
    calls.closes++;
}

static void sync_add(party_room *room, party_call *call, const char *args, size_t len) {
    const char *json;
    char next[40], result[24];
    long n = 0;
    int rc = party_state_get(room, &json, NULL);
    (void)args;
    (void)len;

    if (rc == 0)
        sscanf(json, "{\"n\":%ld}", &n);
    else if (rc != PARTY_ENOTFOUND) {
        party_call_error(call, party_strerror(rc));
        return;
    }
    snprintf(next, sizeof(next), "{\"n\":%ld}", n + 1);
    snprintf(result, sizeof(result), "%ld", n + 1);
    rc = party_state_set(room, next, strlen(next));
    if (rc != 0)
        party_call_error(call, party_strerror(rc));
    else
        party_call_result(call, result);
}

static const party_rpc_method sync_methods[] = {{"add", sync_add, 0}, {NULL, NULL, 0}};

static const party_def sync_def = {
    .name = "oomsync",
    .hibernate = 1,
    .on_connect = sync_connect,
    .on_close = sync_close,
    .rpc_methods = sync_methods,
};

/* ---- one run of a scenario, and what it saw ---- */

typedef enum outcome {
    RUN_OK,    /* every step gave the right result */
    RUN_ERROR, /* a step reported an error the caller can see */
    RUN_WRONG, /* a step gave a wrong result and no error */
    RUN_HUNG,  /* a wait timed out */
} outcome;

static const char *const outcome_names[] = {"ok", "error", "WRONG", "HUNG"};

typedef struct run {
    party_test *t;
    uint64_t allocations; /* counted, failed one included */
    uint64_t started;     /* ... of which the harness's start (start) */
    const char *failed;   /* who the failed allocation was; NULL: none failed */
    outcome out;
    char why[300];
} run;

/* Ends the run with o (the first stop counts). Returns 1: "stop". */
static int stop(run *r, outcome o, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int stop(run *r, outcome o, const char *fmt, ...) {
    va_list ap;
    if (r->out != RUN_OK)
        return 1;
    r->out = o;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    return 1;
}

/* A harness result: 0 goes on; a timeout is a hang; any other code is an
 * error reported to the caller. */
static int check(run *r, int rc, const char *what) {
    if (rc == 0)
        return 0;
    if (rc == PARTY_TEST_ETIMEDOUT)
        return stop(r, RUN_HUNG, "%s: timed out", what);
    return stop(r, RUN_ERROR, "%s: %s", what, party_test_strerror(rc));
}

/* The connection closed: a close code that says "failed" is an error the
 * client sees; any other is wrong, since the scenario closes nothing. */
static int closed(run *r, party_test_conn *c, const char *what) {
    int code = 0;
    const char *reason = "";
    (void)party_test_close_info(c, &code, &reason);
    if (code == 1011 || code == 1006 || code == 1001 || code == 1013)
        return stop(r, RUN_ERROR, "%s: closed %d %s", what, code, reason);
    return stop(r, RUN_WRONG, "%s: closed %d %s", what, code, reason);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int start(run *r) {
    party_config cfg;

    party_config_init(&cfg);
    cfg.log_level = getenv("PARTY_OOM_VERBOSE") != NULL ? 1 : -1;
    r->t = party_test_new_with(&cfg);
    if (r->t == NULL)
        return stop(r, RUN_ERROR, "party_test_new: NULL");
    if (check(r, party_test_add(r->t, &oom_def), "add oom") ||
        check(r, party_test_add(r->t, &oomh_def), "add oomh") ||
        check(r, party_test_add(r->t, &yjs_def), "add yjs") ||
        check(r, party_test_add(r->t, &sync_def), "add oomsync"))
        return 1;
    return 0;
}

/* Opens a WebSocket; NULL when the run stopped. */
static party_test_conn *open_ws(run *r, const char *target) {
    uint64_t begin = mono_ms();
    int status = 0;
    party_test_conn *c = party_test_connect(r->t, target, &status);

    if (c != NULL)
        return c;
    /* No answer at all: the transport ended (a refused handshake), unless
     * the wait ran out. */
    if (status == 0 && mono_ms() - begin >= PARTY_TEST_TIMEOUT_MS)
        stop(r, RUN_HUNG, "connect %s: timed out", target);
    else if (status == 0 || status >= 500)
        stop(r, RUN_ERROR, "connect %s: refused (%d)", target, status);
    else
        stop(r, RUN_WRONG, "connect %s: status %d", target, status);
    return NULL;
}

/* A message as text, or as hex if binary (at most 32 bytes), into out. */
static const char *shown(const void *data, size_t len, int binary, char out[100]) {
    size_t i;
    if (!binary) {
        snprintf(out, 100, "\"%.*s\"", len > 90 ? 90 : (int)len, (const char *)data);
        return out;
    }
    out[0] = '\0';
    for (i = 0; i < len && i < 32; i++)
        snprintf(out + 3 * i, 4, "%02x ", ((const unsigned char *)data)[i]);
    return out;
}

/* Receives one message and compares it with want (len bytes). */
static int expect_msg(run *r, party_test_conn *c, const void *want, size_t want_len,
                      int want_binary) {
    void *data = NULL;
    size_t len = 0;
    int binary = 0, rc = party_test_recv(c, &data, &len, &binary);
    char got[100], wanted[100];

    if (rc == PARTY_ECLOSED)
        return closed(r, c, "recv");
    if (check(r, rc, "recv"))
        return 1;
    if (binary == want_binary && len == want_len && memcmp(data, want, len) == 0) {
        free(data);
        return 0;
    }
    if (!binary && len > 15 && memcmp(data, "{\"type\":\"error\"", 15) == 0)
        stop(r, RUN_ERROR, "recv: error frame %.*s", (int)len, (char *)data);
    else if (!binary &&
             ((len > 30 && memcmp(data, "{\"type\":\"cf_agent_state_error\"", 30) == 0) ||
              (len > 13 && memcmp(data, "{\"type\":\"rpc\"", 13) == 0 &&
               strstr(data, "\"success\":false") != NULL)))
        stop(r, RUN_ERROR, "recv: error answer %.*s", (int)len, (char *)data);
    else if (!binary && len > 10 && memcmp(data, "fetched:5", 9) == 0)
        stop(r, RUN_ERROR, "recv: %.*s", (int)len, (char *)data); /* a failed fetch's answer */
    else
        stop(r, RUN_WRONG, "recv: got %s, want %s", shown(data, len, binary, got),
             shown(want, want_len, want_binary, wanted));
    free(data);
    return 1;
}

static int expect_text(run *r, party_test_conn *c, const char *want) {
    return expect_msg(r, c, want, strlen(want), 0);
}

static int send_msg(run *r, party_test_conn *c, const void *data, size_t len, int binary) {
    int rc = party_test_send(c, data, len, binary);
    if (rc == PARTY_ECLOSED)
        return closed(r, c, "send");
    return check(r, rc, "send");
}

static int send_text(run *r, party_test_conn *c, const char *text) {
    return send_msg(r, c, text, strlen(text), 0);
}

/* Opens a WebSocket and expects the greeting "hello <pk>". */
static party_test_conn *join(run *r, const char *target, const char *pk) {
    char url[200], hello[100];
    party_test_conn *c;

    snprintf(url, sizeof(url), "%s?_pk=%s", target, pk);
    snprintf(hello, sizeof(hello), "hello %s", pk);
    c = open_ws(r, url);
    if (c != NULL && expect_text(r, c, hello) != 0) {
        party_test_conn_free(c);
        return NULL;
    }
    return c;
}

/* One HTTP request; its answer must have status want_status and body want
 * (NULL: any). *status_out (may be NULL) gets the status of an answer
 * that is neither right nor an error, for the caller to judge; then the
 * result is 2 and the run goes on. */
static int http(run *r, const char *method, const char *target, const char *body, int want_status,
                const char *want, int *status_out) {
    party_test_response res;
    int rc =
        party_test_request(r->t, method, target, NULL, body, body != NULL ? strlen(body) : 0, &res);
    char what[200];

    snprintf(what, sizeof(what), "%s %s", method, target);
    if (check(r, rc, what))
        return 1;
    if (res.status == want_status && (want == NULL || strcmp(res.body, want) == 0)) {
        party_test_response_free(&res);
        return 0;
    }
    if (res.status >= 500)
        stop(r, RUN_ERROR, "%s: %d %s", what, res.status, res.body);
    else if (status_out != NULL)
        *status_out = res.status;
    else
        stop(r, RUN_WRONG, "%s: %d %s, want %d %s", what, res.status, res.body, want_status,
             want != NULL ? want : "");
    party_test_response_free(&res);
    return r->out != RUN_OK ? 1 : 2;
}

/* The client closes; the server must answer with the same code. */
static int close_ws(run *r, party_test_conn *c) {
    int rc = party_test_close(c, 1000, "bye"), code = 0;
    if (rc == PARTY_ECLOSED)
        return closed(r, c, "close");
    if (check(r, rc, "close"))
        return 1;
    (void)party_test_close_info(c, &code, NULL);
    if (code != 1000)
        return stop(r, RUN_WRONG, "close: the server answered %d", code);
    return 0;
}

/* Waits for a stored effect of an alarm or schedule: after advancing ms,
 * GET target must answer want; a handler that failed is retried within
 * 2.5 s (its first backoff), so one more advance must bring it. */
static int expect_fired(run *r, int64_t ms, const char *target, const char *want) {
    int status = 0, rc;

    if (check(r, party_test_advance(r->t, ms), "advance"))
        return 1;
    rc = http(r, "GET", target, NULL, 200, want, &status);
    if (rc != 2)
        return rc;
    if (status != 404)
        return stop(r, RUN_WRONG, "GET %s: %d", target, status);
    if (check(r, party_test_advance(r->t, 5000), "advance"))
        return 1;
    return http(r, "GET", target, NULL, 200, want, NULL);
}

/* ---- the scenarios ---- */

static void sc_echo(run *r) {
    party_test_conn *c = join(r, "/parties/oom/e", "a");
    char *big;

    if (c == NULL)
        return;
    if (send_text(r, c, "echo:hi") || expect_text(r, c, "hi"))
        goto out;
    /* Larger than the frame pool's buffers and the loop's read buffer. */
    big = malloc(100 * 1024);
    memcpy(big, "echo:", 5);
    memset(big + 5, 'x', 100 * 1024 - 6);
    big[100 * 1024 - 1] = '\0';
    if (send_text(r, c, big) == 0)
        (void)expect_text(r, c, big + 5);
    free(big);
    if (r->out != RUN_OK || check(r, party_test_ping(c, "p", 1), "ping"))
        goto out;
    (void)close_ws(r, c);
out:
    party_test_conn_free(c);
}

static void sc_broadcast(run *r) {
    party_test_conn *c[3] = {NULL, NULL, NULL};
    const char *pks[3] = {"a", "b", "c"};
    int i;

    for (i = 0; i < 3; i++)
        if ((c[i] = join(r, "/parties/oom/b", pks[i])) == NULL)
            goto out;
    if (send_text(r, c[0], "bcast:to all"))
        goto out;
    for (i = 0; i < 3; i++)
        if (expect_text(r, c[i], "to all"))
            goto out;
out:
    for (i = 0; i < 3; i++)
        party_test_conn_free(c[i]);
}

static void sc_kv(run *r) {
    party_test_conn *c = join(r, "/parties/oom/kv", "a");

    if (c == NULL)
        return;
    if (send_text(r, c, "put:k=v1") || expect_text(r, c, "ok") || send_text(r, c, "get:k") ||
        expect_text(r, c, "v1"))
        goto out;
    (void)http(r, "GET", "/parties/oom/kv/kv?k=k", NULL, 200, "v1", NULL);
out:
    party_test_conn_free(c);
}

static void sc_alarm(run *r) {
    if (http(r, "POST", "/parties/oom/al/alarm?in=1000", NULL, 204, NULL, NULL))
        return;
    (void)expect_fired(r, 1000, "/parties/oom/al/kv?k=alarm", "fired");
}

static void sc_schedule(run *r) {
    if (http(r, "POST", "/parties/oom/sc/sched?in=500", NULL, 204, NULL, NULL))
        return;
    (void)expect_fired(r, 500, "/parties/oom/sc/kv?k=sched", "tick:pay");
}

static void sc_hibernate(run *r) {
    party_test_conn *c = join(r, "/parties/oomh/h", "a");

    if (c == NULL)
        return;
    if (send_text(r, c, "put:k=v") || expect_text(r, c, "ok") ||
        check(r, party_test_hibernate(r->t, "oomh", "h"), "hibernate"))
        goto out;
    if (party_test_loaded(r->t, "oomh", "h")) {
        stop(r, RUN_WRONG, "hibernate: 0, but the room is still loaded");
        goto out;
    }
    (void)(send_text(r, c, "get:k") || expect_text(r, c, "v"));
out:
    party_test_conn_free(c);
}

static void sc_evict(run *r) {
    if (http(r, "POST", "/parties/oom/ev/kv?k=k", "kept", 204, NULL, NULL) ||
        check(r, party_test_evict(r->t, "oom", "ev"), "evict"))
        return;
    if (party_test_in_memory(r->t, "oom", "ev")) {
        stop(r, RUN_WRONG, "evict: 0, but the room is still in memory");
        return;
    }
    (void)http(r, "GET", "/parties/oom/ev/kv?k=k", NULL, 200, "kept", NULL);
}

static void sc_http_body(run *r) {
    party_test_response res;
    char body[3000];
    int rc;

    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    rc = party_test_request(r->t, "POST", "/parties/oom/hb/echo", "X-Note: n\r\n", body,
                            strlen(body), &res);
    if (check(r, rc, "POST echo"))
        return;
    if (res.status >= 500)
        stop(r, RUN_ERROR, "POST echo: %d %s", res.status, res.body);
    else if (res.status != 200 || strcmp(res.body, body) != 0 ||
             strstr(res.headers, "X-Echo: yes\r\n") == NULL)
        stop(r, RUN_WRONG, "POST echo: %d, %zu bytes", res.status, res.body_len);
    party_test_response_free(&res);
}

static void sc_restart(run *r) {
    if (http(r, "POST", "/parties/oom/rs/kv?k=k", "durable", 204, NULL, NULL) ||
        http(r, "POST", "/parties/oom/rs/alarm?in=1000", NULL, 204, NULL, NULL) ||
        check(r, party_test_restart(r->t), "restart") ||
        http(r, "GET", "/parties/oom/rs/kv?k=k", NULL, 200, "durable", NULL))
        return;
    (void)expect_fired(r, 1000, "/parties/oom/rs/kv?k=alarm", "fired");
}

/* A room-to-room request: recorded with the room (DESIGN.md D4), sent
 * after the commit, answered as an event. A commit that fails drops the
 * request unsent (no answer); the room's "sent", held behind it, is
 * dropped too and the connection closed 1011, so the client hears of it. */
static void sc_fetch(run *r) {
    party_test_conn *c = join(r, "/parties/oom/fa", "a");

    if (c == NULL)
        return;
    (void)(send_text(r, c, "fetch:fb") || expect_text(r, c, "sent") ||
           expect_text(r, c, "fetched:200:hello from fb"));
    party_test_conn_free(c);
}

/* An outbound request, refused by the (empty) allow-list: recorded with
 * the room, started after the commit, answered by the engine, delivered
 * as an event that removes the record. A commit that fails drops the
 * request unsent; the room's "sent", held behind it, is dropped too and
 * the connection closed 1011, so the client hears of it. */
static void sc_fetch_url(run *r) {
    party_test_conn *c = join(r, "/parties/oom/fu", "a");

    if (c == NULL)
        return;
    (void)(send_text(r, c, "fetch_url:http://refused.example/") || expect_text(r, c, "sent") ||
           expect_text(r, c, "error:refused by the fetch policy (--fetch-allow)"));
    party_test_conn_free(c);
}

/* y-protocols: Yjs client 5 typed "hello" into root text "t". */
static const uint8_t HELLO[] = {0x01, 0x01, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74,
                                0x05, 'h',  'e',  'l',  'l',  'o',  0x00};

static size_t sync_msg(uint8_t *out, int subtype, const uint8_t *payload, size_t len) {
    out[0] = 0;
    out[1] = (uint8_t)subtype;
    out[2] = (uint8_t)len;
    memcpy(out + 3, payload, len);
    return len + 3;
}

static int expect_sync(run *r, party_test_conn *c, int subtype, const uint8_t *payload,
                       size_t len) {
    uint8_t msg[64];
    return expect_msg(r, c, msg, sync_msg(msg, subtype, payload, len), 1);
}

static int send_sync(run *r, party_test_conn *c, int subtype, const uint8_t *payload, size_t len) {
    uint8_t msg[64];
    return send_msg(r, c, msg, sync_msg(msg, subtype, payload, len), 1);
}

/* After running until idle, c must still be open: an update refused by
 * the server (closed 1011) is an error its sender sees. */
static int still_open(run *r, party_test_conn *c) {
    if (check(r, party_test_run_until_idle(r->t), "run until idle"))
        return 1;
    return party_test_close_info(c, NULL, NULL) == 0 ? closed(r, c, "after sending") : 0;
}

static void sc_yjs(run *r) {
    static const uint8_t empty_sv[] = {0x00}, hello_sv[] = {0x01, 0x05, 0x05};
    party_test_conn *a = open_ws(r, "/parties/yjs/doc?_pk=a"), *b = NULL;

    if (a == NULL)
        return;
    if (expect_sync(r, a, 0, empty_sv, 1) || send_sync(r, a, 2, HELLO, sizeof(HELLO)) ||
        still_open(r, a) || (b = open_ws(r, "/parties/yjs/doc?_pk=b")) == NULL)
        goto out;
    (void)(expect_sync(r, b, 0, hello_sv, sizeof(hello_sv)) || send_sync(r, b, 0, empty_sv, 1) ||
           expect_sync(r, b, 1, HELLO, sizeof(HELLO)));
out:
    party_test_conn_free(a);
    party_test_conn_free(b);
}

typedef struct scenario {
    const char *name;
    void (*fn)(run *r);
} scenario;

/* Synced state and RPC: identity and state on connect, a call that sets
 * the state, a client's state to the other client, the same after a
 * hibernation. */
#define SYNC_IDENTITY "{\"type\":\"cf_agent_identity\",\"name\":\"s\",\"agent\":\"oomsync\""
#define SYNC_STATE(n) "{\"type\":\"cf_agent_state\",\"state\":{\"n\":" n "}}"
#define SYNC_CALL(id) "{\"type\":\"rpc\",\"id\":\"" id "\",\"method\":\"add\",\"args\":[]}"
#define SYNC_RESULT(id, n)                                                                         \
    "{\"type\":\"rpc\",\"id\":\"" id "\",\"success\":true,\"done\":true,\"result\":" n "}"

static void sc_sync(run *r) {
    party_test_conn *a = open_ws(r, "/parties/oomsync/s?_pk=a"), *b = NULL;

    if (a == NULL)
        return;
    if (expect_text(r, a, SYNC_IDENTITY "}") || send_text(r, a, SYNC_CALL("1")) ||
        expect_text(r, a, SYNC_STATE("1")) || expect_text(r, a, SYNC_RESULT("1", "1")))
        goto out;
    if ((b = open_ws(r, "/parties/oomsync/s?_pk=b")) == NULL ||
        expect_text(r, b, SYNC_IDENTITY ",\"stateFollows\":true}") ||
        expect_text(r, b, SYNC_STATE("1")))
        goto out;
    /* The proposal has no answer of its own: b's next call, run after it,
     * tells b whether it failed (then b is closed). */
    if (send_text(r, b, "{\"type\":\"cf_agent_state\",\"state\":{\"n\":5}}") ||
        send_text(r, b, SYNC_CALL("2")) || expect_text(r, b, SYNC_STATE("6")) ||
        expect_text(r, b, SYNC_RESULT("2", "6")) || expect_text(r, a, SYNC_STATE("5")) ||
        expect_text(r, a, SYNC_STATE("6")) ||
        check(r, party_test_hibernate(r->t, "oomsync", "s"), "hibernate"))
        goto out;
    (void)(send_text(r, b, SYNC_CALL("3")) || expect_text(r, b, SYNC_STATE("7")) ||
           expect_text(r, b, SYNC_RESULT("3", "7")));
out:
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static const scenario scenarios[] = {
    {"echo", sc_echo},   {"broadcast", sc_broadcast}, {"kv", sc_kv},
    {"alarm", sc_alarm}, {"schedule", sc_schedule},   {"hibernate", sc_hibernate},
    {"evict", sc_evict}, {"http_body", sc_http_body}, {"restart", sc_restart},
    {"fetch", sc_fetch}, {"fetch_url", sc_fetch_url}, {"yjs", sc_yjs},
    {"sync", sc_sync},
};

/* ---- the sweep ---- */

static struct {
    const char *scenario;
    uint64_t point;
} current;

static struct {
    uint64_t allocations, points, errors, absorbed, bad;
    uint64_t by_party, by_sqlite, by_cjson, by_openssl, by_libuv;
} total;

#ifdef PARTY__ASAN
static void on_death(void) {
    fprintf(stderr, "oom: died in scenario %s, failing allocation %" PRIu64 "\n",
            current.scenario != NULL ? current.scenario : "?", current.point);
}
#endif

/* Who made each allocation of the counting run (up to MAX_RECORDED). */
#define MAX_RECORDED 65536
static const char *recorded[MAX_RECORDED + 1];
static int recording, tracing;

/* Records who allocates when; with PARTY_OOM_TRACE=1, prints where the
 * failed allocation was. */
static void observe(uint64_t n, const char *who, int failing) {
    if (recording && n <= MAX_RECORDED)
        recorded[n] = who;
    if (failing && tracing) {
        fprintf(stderr, "oom: %s, allocation %" PRIu64 " (%s) fails here:\n", current.scenario, n,
                who);
#ifdef PARTY__ASAN
        __sanitizer_print_stack_trace();
#endif
    }
}

static int leak_check(void) {
#ifdef PARTY__ASAN
    return __lsan_do_recoverable_leak_check();
#else
    return 0;
#endif
}

/* Runs sc once with allocation n failing (0: none); the outcome in *r. */
static void run_once(const scenario *sc, uint64_t n, run *r) {
    memset(r, 0, sizeof(*r));
    current.scenario = sc->name;
    current.point = n;
    memset(&calls, 0, sizeof(calls));
    party__alloc_fail_nth(n);
    if (start(r) == 0) {
        r->started = party__alloc_count();
        sc->fn(r);
    }
    party_test_free(r->t);
    r->t = NULL;
    if (calls.connects != calls.closes && r->out != RUN_WRONG && r->out != RUN_HUNG) {
        char before[sizeof(r->why)];
        memcpy(before, r->why, sizeof(before));
        r->out = RUN_OK;
        stop(r, RUN_WRONG, "%u on_connect, %u on_close (after: %s)", calls.connects, calls.closes,
             before);
    }
    r->allocations = party__alloc_count();
    r->failed = party__alloc_failed();
    party__alloc_fail_nth(0);
}

static void count_who(const char *who) {
    if (strcmp(who, "party") == 0)
        total.by_party++;
    else if (strcmp(who, "sqlite") == 0)
        total.by_sqlite++;
    else if (strcmp(who, "cjson") == 0)
        total.by_cjson++;
    else if (strcmp(who, "openssl") == 0)
        total.by_openssl++;
    else
        total.by_libuv++;
}

/* Which allocations a strided sweep fails: SQLite's (nearly all of a
 * scenario's) evenly spread over what MAX_POINTS leaves, and the others
 * (partyd's, cJSON's, OpenSSL's) every one while they fit in three
 * quarters of MAX_POINTS, else evenly spread over that share. */
typedef struct stride {
    uint64_t sqlite, other;           /* 1 in this many of each is failed */
    uint64_t sqlite_seen, other_seen; /* of each, met so far */
} stride;

static int chosen(uint64_t k, stride *st) {
    const char *who = k <= MAX_RECORDED ? recorded[k] : NULL;
    if (who == NULL || strcmp(who, "sqlite") != 0)
        return st->other_seen++ % st->other == 0;
    return st->sqlite_seen++ % st->sqlite == 0;
}

/* Sweeps one scenario; returns how many runs went bad. */
static unsigned sweep(const scenario *sc, int full, uint64_t only) {
    uint64_t n, k, first = 1, n_sqlite = 0;
    stride st = {1, 1, 0, 0};
    uint64_t points = 0, errors = 0, absorbed = 0;
    unsigned bad = 0;
    int verbose = getenv("PARTY_OOM_VERBOSE") != NULL;
    run r;

    /* Once to warm up what the process sets up once (SQLite, OpenSSL),
     * then once to count (and record) what a run allocates. */
    run_once(sc, 0, &r);
    memset(recorded, 0, sizeof(recorded));
    recording = 1;
    run_once(sc, 0, &r);
    recording = 0;
    n = r.allocations;
    if (r.out != RUN_OK || leak_check()) {
        fprintf(stderr, "oom: %s fails without any failed allocation: %s %s\n", sc->name,
                outcome_names[r.out], r.why);
        return 1;
    }
    /* The harness's start (a runtime, its alarm index) is the same in
     * every scenario: a strided sweep covers it in the first one only. */
    if (!full && sc != &scenarios[0])
        first = r.started + 1;
    for (k = first; k <= n && k <= MAX_RECORDED; k++)
        n_sqlite += recorded[k] != NULL && strcmp(recorded[k], "sqlite") == 0;
    if (!full && n - first + 1 > MAX_POINTS) {
        uint64_t others = n - first + 1 - n_sqlite;
        uint64_t share = MAX_POINTS * 3 / 4, others_failed, room;
        st.other = others > share ? (others + share - 1) / share : 1;
        others_failed = (others + st.other - 1) / st.other; /* at most share */
        room = others_failed < MAX_POINTS ? MAX_POINTS - others_failed : 1;
        st.sqlite = room > 0 && n_sqlite > room ? (n_sqlite + room - 1) / room : 1;
    }
    for (k = only ? only : first; k <= n; k++) {
        const char *who;
        int leaked;

        if (!only && !chosen(k, &st))
            continue;
        run_once(sc, k, &r);
        who = r.failed;
        leaked = leak_check();
        if (verbose)
            fprintf(stderr, "oom: %s #%" PRIu64 " (%s): %s %s%s\n", sc->name, k,
                    who != NULL ? who : "not reached", outcome_names[r.out], r.why,
                    leaked ? " LEAK" : "");
        if (who != NULL) {
            points++;
            count_who(who);
            errors += r.out == RUN_ERROR;
            absorbed += r.out == RUN_OK;
        }
        if (r.out == RUN_WRONG || r.out == RUN_HUNG || leaked) {
            fprintf(stderr, "oom: %s, allocation %" PRIu64 " (%s) failing: %s %s%s\n", sc->name, k,
                    who != NULL ? who : "not reached", outcome_names[r.out], r.why,
                    leaked ? " and leaked (above)" : "");
            bad++;
        }
        if (only)
            break;
    }
    printf("oom: %-10s %5" PRIu64 " allocations, swept from #%" PRIu64 " (%" PRIu64
           " by SQLite, 1 in %" PRIu64 " of those failed, 1 in %" PRIu64
           " of the others): %4" PRIu64 " failed, %" PRIu64 " reported an error, %" PRIu64
           " absorbed, %u bad\n",
           sc->name, n, first, n_sqlite, st.sqlite, st.other, points, errors, absorbed, bad);
    total.allocations += n;
    total.points += points;
    total.errors += errors;
    total.absorbed += absorbed;
    total.bad += bad;
    return bad;
}

static int sweep_full;
static uint64_t sweep_point; /* PARTY_OOM_ONLY=<scenario>:<n> */

/* One test per scenario: each failed allocation of it ends in an error the
 * caller sees or in right results; never a crash, leak, hang or wrong data. */
static void test_each_failed_allocation_is_an_error_or_harmless(void **state) {
    assert_int_equal(sweep(*state, sweep_full, sweep_point), 0);
}

static int print_totals(void **state) {
    (void)state;
    printf("oom: total %" PRIu64 " allocations, %" PRIu64 " failed (party %" PRIu64
           ", sqlite %" PRIu64 ", cjson %" PRIu64 ", openssl %" PRIu64 ", libuv %" PRIu64
           "): %" PRIu64 " reported an error, %" PRIu64 " absorbed, %" PRIu64
           " bad; libuv allocations seen %" PRIu64 " (%s)\n",
           total.allocations, total.points, total.by_party, total.by_sqlite, total.by_cjson,
           total.by_openssl, total.by_libuv, total.errors, total.absorbed, total.bad,
           __atomic_load_n(&uv_allocs, __ATOMIC_RELAXED), fail_uv ? "failed too" : "never failed");
#ifndef PARTY__ASAN
    printf("oom: not an AddressSanitizer build: leaks were not checked\n");
#endif
    return 0;
}

int main(void) {
    enum { N = sizeof(scenarios) / sizeof(scenarios[0]) };
    struct CMUnitTest tests[N];
    const char *full = getenv("PARTY_OOM_FULL"), *only = getenv("PARTY_OOM_ONLY");
    size_t i, n = 0, only_len = 0;

    hook_allocators();
    /* Thousands of harnesses come and go: keep their data directories off
     * the disk, whose syncs would be most of the sweep's time. */
    if (getenv("TMPDIR") == NULL && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
#ifdef PARTY__ASAN
    __sanitizer_set_death_callback(on_death);
#endif
    tracing = getenv("PARTY_OOM_TRACE") != NULL;
    party__alloc_observe(observe);
    sweep_full = full != NULL && strcmp(full, "1") == 0;
    if (only != NULL) {
        const char *colon = strchr(only, ':');
        only_len = colon != NULL ? (size_t)(colon - only) : strlen(only);
        sweep_point = colon != NULL ? strtoull(colon + 1, NULL, 10) : 0;
    }
    for (i = 0; i < N; i++) {
        if (only != NULL &&
            (strlen(scenarios[i].name) != only_len || strncmp(scenarios[i].name, only, only_len)))
            continue;
        memset(&tests[n], 0, sizeof(tests[n]));
        tests[n].name = scenarios[i].name;
        tests[n].test_func = test_each_failed_allocation_is_an_error_or_harmless;
        tests[n].initial_state = (void *)&scenarios[i];
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "oom: no scenario called %s\n", only);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    return _cmocka_run_group_tests("oom", tests, n, NULL, print_totals);
}
