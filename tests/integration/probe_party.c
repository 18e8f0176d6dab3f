/* probe: a party for tests, loaded from a shared object like any user party.
 * It records what the runtime tells it and answers GET with that record as
 * JSON, and it obeys text commands so a test can drive the room API:
 *   close:<code>:<reason>   party_conn_close on the sender
 *   state:<text>            party_conn_set_state; with the state "kv-on-close",
 *                           on_close stores the connection's id under the key
 *                           "closed" (GET answers it as "closed")
 *   getstate                reply "state:<text>"
 *   addr                    reply "addr:<party_conn_remote_addr>" (or "addr-error:<text>")
 *   tags                    reply "tags:<t1>,<t2>,..."
 *   broadcast:<text>        party_room_broadcast to all but the sender
 *   count:<tag>             reply "count:<n>" (foreach_conn with that tag)
 *   whois:<id>              reply "whois:<id>:<found 0|1>" (party_room_conn)
 *   big:<n>                 reply with n bytes of 'x'
 *   log:<level>:<text>      party_room_log(room, level, "%s", text)
 *   sql:<statements>        run on party_room_db(); reply "sql:<first column of the
 *                           last row>" or "sqlerr:<message>"
 *   fetch:<party>/<room>[/path?query]  party_room_fetch (GET); the answer is
 *                           sent to the sender as "response:<status>:<body>";
 *                           an answer with an error (PARTY_EABORTED) is also
 *                           recorded as "response:<status>:<error>:<body>"
 * GET /hold?until=<file>[&offmain=1] holds its answer: it logs "probe: hold
 * <room>: holding" and blocks its loop's thread until <file> exists (60 s at most),
 * then answers 200 "released"; with offmain=1 a room on the main thread
 * answers 409 "main thread" at once instead, logging "probe: hold <room>:
 * main thread" (an upgrade needs that thread).
 * Any other text is echoed as "echo:<text>"; binary is echoed as binary.
 * Rooms named "fail-start-<n>" fail on_start their first n times.
 * Hooks, driven by the query string: ?deny=<status> answers in the hook;
 * ?redirect=<url> answers 302; ?hook=<value> lets the request through with
 * the header X-Probe-Hook: <value>, which on_connect reports as
 * "hook:<value>" right after the greeting (and on_request as a header).
 * PARTYD_PROBE_CORS in partyd's environment turns CORS on for probe with
 * custom headers (Access-Control-Allow-Origin: https://example.test).
 * Connections opened with ?tags=a,b get those tags. */
#define _GNU_SOURCE /* syscall */
#include <party.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX 64

/* What survives across incarnations of one room in this process: only the
 * on_start attempt counts, so fail-start rooms can recover. */
typedef struct attempt {
    char id[PARTY_ID_MAX];
    int attempts;
} attempt;
static attempt attempts[256];
static size_t n_attempts;

typedef struct probe_state {
    int starts;
    int connects;
    char *log[LOG_MAX]; /* on_close / on_error records, oldest first */
    int n_log;
    char *props; /* what the last on_start received */
} probe_state;

static int *attempt_count(party_room *room) {
    size_t i;
    for (i = 0; i < n_attempts; i++)
        if (strcmp(attempts[i].id, party_room_id(room)) == 0)
            return &attempts[i].attempts;
    if (n_attempts == sizeof(attempts) / sizeof(attempts[0]))
        return NULL;
    strcpy(attempts[n_attempts].id, party_room_id(room));
    return &attempts[n_attempts++].attempts;
}

static void state_free(void *p) {
    probe_state *st = p;
    int i;
    for (i = 0; i < st->n_log; i++)
        free(st->log[i]);
    free(st->props);
    free(st);
}

static void record(party_room *room, const char *line) {
    probe_state *st = party_room_state(room);
    if (st == NULL)
        return;
    if (st->n_log == LOG_MAX) {
        free(st->log[0]);
        memmove(st->log, st->log + 1, (LOG_MAX - 1) * sizeof(char *));
        st->n_log--;
    }
    st->log[st->n_log++] = strdup(line);
}

static int probe_start(party_room *room, const char *props) {
    const char *name = party_room_name(room);
    int *count = attempt_count(room);
    probe_state *st;

    if (count != NULL)
        (*count)++;
    if (name != NULL && strncmp(name, "fail-start-", 11) == 0 && count != NULL &&
        *count <= atoi(name + 11))
        return -1;
    st = party_room_state(room);
    if (st == NULL) {
        st = calloc(1, sizeof(*st));
        if (st == NULL)
            return -1;
        party_room_set_state(room, st);
    }
    st->starts++;
    free(st->props);
    st->props = props != NULL ? strdup(props) : NULL;
    return 0;
}

static int probe_tags(party_room *room, party_conn *conn, const party_request *req,
                      const char **tags, size_t max) {
    /* One per thread: with --threads, loops tag connections at once (the
     * runtime copies the tags before the next call on this thread). */
    static __thread char buf[4096];
    const char *list = party_request_query(req, "tags");
    size_t n = 0;
    char *p, *save = NULL;
    (void)room;
    (void)conn;
    if (list == NULL)
        return 0;
    snprintf(buf, sizeof(buf), "%s", list);
    /* Passes every tag, even too many: the runtime enforces the limit. */
    for (p = strtok_r(buf, ",", &save); p != NULL && n < max + 2; p = strtok_r(NULL, ",", &save))
        if (n < max)
            tags[n++] = p;
        else
            n++;
    return (int)n;
}

static void probe_connect(party_room *room, party_conn *conn, const party_request *req) {
    probe_state *st = party_room_state(room);
    const char *hook = party_request_header(req, "X-Probe-Hook");
    char line[2048];
    st->connects++;
    snprintf(line, sizeof(line), "hello:%s:%s:%s", party_conn_id(conn), party_room_name(room),
             party_conn_uri(conn));
    party_conn_send_text(conn, line);
    if (hook != NULL) {
        snprintf(line, sizeof(line), "hook:%s", hook);
        party_conn_send_text(conn, line);
    }
}

/* Both hooks: deny, redirect, or add a header, as the query asks. */
static int probe_hook(const party_lobby *lobby, party_request *req, party_response *res) {
    const char *deny = party_request_query(req, "deny");
    const char *redirect = party_request_query(req, "redirect");
    const char *hook = party_request_query(req, "hook");
    char body[300];

    if (deny != NULL) {
        int n = snprintf(body, sizeof(body), "denied by hook for %s/%s\n", party_lobby_party(lobby),
                         party_lobby_room(lobby));
        party_response_set_status(res, atoi(deny));
        party_response_set_header(res, "Content-Type", "text/plain");
        party_response_set_body(res, body, (size_t)n);
        return PARTY_RESPOND;
    }
    if (redirect != NULL) {
        party_response_set_status(res, 302);
        party_response_set_header(res, "Location", redirect);
        return PARTY_RESPOND;
    }
    if (hook != NULL)
        party_request_set_header(req, "X-Probe-Hook", hook);
    return PARTY_CONTINUE;
}

typedef struct count_arg {
    int n;
} count_arg;

static int count_one(party_conn *conn, void *arg) {
    (void)conn;
    ((count_arg *)arg)->n++;
    return 0;
}

/* sql:<statements>: runs them on party_room_db(); replies "sql:<the first
 * column of the last row returned>" ("sql:" when none), or
 * "sqlerr:<message>". */
static void sql_command(party_room *room, party_conn *conn, const char *sql) {
    sqlite3 *db = party_room_db(room);
    sqlite3_stmt *st = NULL;
    const char *tail = sql;
    char reply[512] = "sql:";
    int rc = SQLITE_OK;

    if (db == NULL) {
        party_conn_send_text(conn, "sqlerr:no database");
        return;
    }
    while (rc == SQLITE_OK && tail != NULL && *tail != '\0') {
        rc = sqlite3_prepare_v2(db, tail, -1, &st, &tail);
        if (rc != SQLITE_OK || st == NULL)
            break;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            snprintf(reply, sizeof(reply), "sql:%s", v != NULL ? (const char *)v : "");
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc != SQLITE_OK)
        snprintf(reply, sizeof(reply), "sqlerr:%s", sqlite3_errmsg(db));
    party_conn_send_text(conn, reply);
}

static void probe_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    char *text;
    char reply[512];

    if (binary) {
        party_conn_send(conn, data, len, 1);
        return;
    }
    text = malloc(len + 1);
    if (text == NULL)
        return;
    memcpy(text, data, len);
    text[len] = '\0';
    if (strncmp(text, "close:", 6) == 0) {
        char *colon = strchr(text + 6, ':');
        int code = atoi(text + 6);
        int r = party_conn_close(conn, code, colon != NULL ? colon + 1 : "");
        if (r != 0) {
            snprintf(reply, sizeof(reply), "error:%s", party_strerror(r));
            party_conn_send_text(conn, reply);
        }
    } else if (strncmp(text, "state:", 6) == 0) {
        party_conn_set_state(conn, text + 6, len - 6);
    } else if (strcmp(text, "addr") == 0) {
        char addr[PARTY_ADDR_MAX];
        int r = party_conn_remote_addr(conn, addr, sizeof(addr));
        if (r == 0)
            snprintf(reply, sizeof(reply), "addr:%s", addr);
        else
            snprintf(reply, sizeof(reply), "addr-error:%s", party_strerror(r));
        party_conn_send_text(conn, reply);
    } else if (strcmp(text, "getstate") == 0) {
        size_t n;
        const char *s = party_conn_state(conn, &n);
        snprintf(reply, sizeof(reply), "state:%.*s", (int)n, s != NULL ? s : "");
        party_conn_send_text(conn, reply);
    } else if (strcmp(text, "tags") == 0) {
        const char *const *tags;
        size_t n = party_conn_tags(conn, &tags), i, used;
        used = (size_t)snprintf(reply, sizeof(reply), "tags:");
        for (i = 0; i < n && used < sizeof(reply); i++)
            used +=
                (size_t)snprintf(reply + used, sizeof(reply) - used, "%s%s", i ? "," : "", tags[i]);
        party_conn_send_text(conn, reply);
    } else if (strncmp(text, "broadcast:", 10) == 0) {
        const char *exclude[1] = {party_conn_id(conn)};
        party_room_broadcast(room, text + 10, len - 10, 0, exclude, 1, NULL);
    } else if (strncmp(text, "count:", 6) == 0) {
        count_arg arg = {0};
        party_room_foreach_conn(room, text[6] ? text + 6 : NULL, count_one, &arg);
        snprintf(reply, sizeof(reply), "count:%d", arg.n);
        party_conn_send_text(conn, reply);
    } else if (strncmp(text, "whois:", 6) == 0) {
        snprintf(reply, sizeof(reply), "whois:%s:%d", text + 6,
                 party_room_conn(room, text + 6) != NULL);
        party_conn_send_text(conn, reply);
    } else if (strncmp(text, "fetch:", 6) == 0) {
        /* party/room[/rest]: the room segment ends at the next '/' or '?'. */
        char *party = text + 6, *room_name = strchr(party, '/'), *rest, save;
        int r = PARTY_EINVAL;
        if (room_name != NULL) {
            *room_name++ = '\0';
            rest = room_name + strcspn(room_name, "/?");
            save = *rest;
            *rest = '\0';
            {
                char path[256];
                snprintf(path, sizeof(path), "%c%s", save, save != '\0' ? rest + 1 : "");
                r = party_room_fetch(room, party, room_name, NULL, path, NULL, NULL, 0,
                                     party_conn_id(conn), NULL);
            }
        }
        if (r != 0) {
            snprintf(reply, sizeof(reply), "error:%s", party_strerror(r));
            party_conn_send_text(conn, reply);
        }
    } else if (strncmp(text, "log:", 4) == 0) {
        char *colon = strchr(text + 4, ':');
        party_room_log(room, atoi(text + 4), "%s", colon != NULL ? colon + 1 : "");
    } else if (strncmp(text, "sql:", 4) == 0) {
        sql_command(room, conn, text + 4);
    } else if (strncmp(text, "big:", 4) == 0) {
        size_t n = strtoul(text + 4, NULL, 10);
        char *big = malloc(n);
        if (big != NULL) {
            memset(big, 'x', n);
            party_conn_send(conn, big, n, 0);
            free(big);
        }
    } else {
        char *echo = malloc(len + 6);
        if (echo != NULL) {
            memcpy(echo, "echo:", 5);
            memcpy(echo + 5, text, len);
            party_conn_send(conn, echo, len + 5, 0);
            free(echo);
        }
    }
    free(text);
}

static void probe_response(party_room *room, const char *id, const char *tag,
                           const party_response *res) {
    party_conn *conn = party_room_conn(room, tag);
    size_t len;
    const char *body = party_response_get_body(res, &len);
    char reply[4096];
    (void)id;
    if (party_response_get_error(res) != 0) {
        snprintf(reply, sizeof(reply), "response:%d:%s:%.*s", party_response_get_status(res),
                 party_strerror(party_response_get_error(res)),
                 (int)strcspn(body != NULL ? body : "", "\n"), body != NULL ? body : "");
        record(room, reply);
    }
    if (conn == NULL)
        return;
    snprintf(reply, sizeof(reply), "response:%d:%.*s", party_response_get_status(res), (int)len,
             body != NULL ? body : "");
    party_conn_send_text(conn, reply);
}

static void probe_close(party_room *room, party_conn *conn, int code, const char *reason,
                        int was_clean) {
    char line[512];
    size_t n;
    const char *state = party_conn_state(conn, &n);
    snprintf(line, sizeof(line), "close:%s:%d:%s:%d", party_conn_id(conn), code, reason, was_clean);
    record(room, line);
    if (state != NULL && n == 11 && memcmp(state, "kv-on-close", 11) == 0)
        (void)party_kv_put(room, "closed", party_conn_id(conn), strlen(party_conn_id(conn)));
}

static void probe_error(party_room *room, party_conn *conn, const char *what) {
    char line[512];
    snprintf(line, sizeof(line), "error:%s:%s", party_conn_id(conn), what);
    record(room, line);
}

/* Appends s to out as a JSON string (escaping quotes, backslashes and
 * control characters). */
static size_t json_string(char *out, size_t cap, size_t used, const char *s) {
    if (used < cap)
        out[used] = '"';
    used++;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            used += (size_t)snprintf(out + (used < cap ? used : cap), used < cap ? cap - used : 0,
                                     "\\%c", c);
        else if (c < 0x20)
            used += (size_t)snprintf(out + (used < cap ? used : cap), used < cap ? cap - used : 0,
                                     "\\u%04x", c);
        else {
            if (used < cap)
                out[used] = (char)c;
            used++;
        }
    }
    if (used < cap)
        out[used] = '"';
    return used + 1;
}

/* GET /hold: see the header. */
static void hold(party_room *room, const party_request *req, party_response *res) {
    const char *until = party_request_query(req, "until");
    const char *offmain = party_request_query(req, "offmain");
    struct timespec tick = {0, 10 * 1000 * 1000};
    int i;

    if (offmain != NULL && syscall(SYS_gettid) == getpid()) {
        party_room_log(room, PARTY_LOG_WARN, "probe: hold %s: main thread", party_room_name(room));
        party_response_set_status(res, 409);
        party_response_set_body(res, "main thread", 11);
        return;
    }
    party_room_log(room, PARTY_LOG_WARN, "probe: hold %s: holding", party_room_name(room));
    for (i = 0; i < 6000 && until != NULL && access(until, F_OK) != 0; i++)
        nanosleep(&tick, NULL);
    party_response_set_body(res, "released", 8);
}

static void probe_request(party_room *room, const party_request *req, party_response *res) {
    probe_state *st = party_room_state(room);
    static __thread char body[65536]; /* one per loop: two loops answer at once */
    size_t used = 0;
    size_t blen;
    const char *b = party_request_body(req, &blen);
    const char *url = party_request_url(req);
    int i;

    if (strstr(url, "/hold?") != NULL) {
        hold(room, req, res);
        return;
    }
    if (party_request_header(req, "X-Probe-Hook") != NULL)
        party_response_set_header(res, "X-Probe-Hook", party_request_header(req, "X-Probe-Hook"));
    {
        char addr[PARTY_ADDR_MAX];
        if (party_request_remote_addr(req, addr, sizeof(addr)) == 0)
            party_response_set_header(res, "X-Probe-Addr", addr);
    }
    if (strcmp(party_request_method(req), "POST") == 0) {
        party_response_set_status(res, 201);
        party_response_set_header(res, "X-Probe-Method", "POST");
        party_response_set_body(res, b, blen);
        return;
    }
    used += (size_t)snprintf(body, sizeof(body), "{\"name\":");
    used = json_string(body, sizeof(body), used, party_room_name(room));
    used += (size_t)snprintf(body + used, sizeof(body) - used,
                             ",\"starts\":%d,\"connects\":%d,\"connections\":%zu,"
                             "\"attempts\":%d,\"url\":",
                             st->starts, st->connects, party_room_conn_count(room),
                             attempt_count(room) != NULL ? *attempt_count(room) : -1);
    used = json_string(body, sizeof(body), used, party_request_url(req));
    used += (size_t)snprintf(body + used, sizeof(body) - used, ",\"props\":");
    used = json_string(body, sizeof(body), used, st->props != NULL ? st->props : "");
    {
        void *closed = NULL;
        size_t closed_len;
        if (party_kv_get(room, "closed", &closed, &closed_len) == 0) {
            used += (size_t)snprintf(body + used, sizeof(body) - used, ",\"closed\":");
            used = json_string(body, sizeof(body), used, closed);
        }
        free(closed);
    }
    used += (size_t)snprintf(body + used, sizeof(body) - used, ",\"log\":[");
    for (i = 0; i < st->n_log && used < sizeof(body) - 64; i++) {
        if (i > 0)
            body[used++] = ',';
        used = json_string(body, sizeof(body) - 64, used, st->log[i]);
    }
    used += (size_t)snprintf(body + used, sizeof(body) - used, "]}");
    party_response_set_header(res, "Content-Type", "application/json");
    party_response_set_body(res, body, used);
}

static const party_def probe = {
    PARTY_DEF_INIT,
    .name = "probe",
    .on_start = probe_start,
    .on_connect = probe_connect,
    .on_message = probe_message,
    .on_close = probe_close,
    .on_error = probe_error,
    .on_request = probe_request,
    .on_response = probe_response,
    .connection_tags = probe_tags,
    .free_state = state_free,
    .before_connect = probe_hook,
    .before_request = probe_hook,
};

static const char *const probe_cors[] = {
    "Access-Control-Allow-Origin",
    "https://example.test",
    "Access-Control-Allow-Methods",
    "GET, POST",
    "Access-Control-Allow-Headers",
    "X-Probe",
    NULL,
    NULL,
};

/* RPC methods, with PARTYD_PROBE_RPC: "ok" answers true, "hang" never
 * answers (its call stays open until partyd stops). */
static void probe_rpc_ok(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)args;
    (void)len;
    party_call_result(call, "true");
}

static void probe_rpc_hang(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)call;
    (void)args;
    (void)len;
}

static const party_rpc_method probe_methods[] = {
    {"ok", probe_rpc_ok, 0},
    {"hang", probe_rpc_hang, 0},
    {NULL, NULL, 0},
};

/* The definition is made at load time, so the module is written out:
 * PARTY_MODULE_ABI exports party_abi, and party_module is exported by hand.
 * PARTYD_PROBE_HIBERNATE in partyd's environment makes probe a hibernating
 * party (for the hibernation tests); PARTYD_PROBE_RPC gives it RPC
 * methods (and with them the Agents client's protocol). */
PARTY_MODULE_ABI;
PARTY_EXTERN const party_def *party_module(void);
PARTY_EXTERN const party_def *party_module(void) {
    static party_def def;
    def = probe;
    def.hibernate = getenv("PARTYD_PROBE_HIBERNATE") != NULL;
    if (getenv("PARTYD_PROBE_RPC") != NULL)
        def.rpc_methods = probe_methods;
    if (getenv("PARTYD_PROBE_CORS") != NULL) {
        def.cors = PARTY_CORS_ON;
        def.cors_headers = probe_cors;
    }
    return &def;
}
