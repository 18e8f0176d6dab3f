/* ops: the operational endpoints under /<ops_prefix>/ — health (for load
 * balancers), metrics (Prometheus text format, from the runtime's counters
 * and a walk of the room table) and rooms (a JSON listing of the rooms in
 * memory, behind a Bearer token). Every answer is made and sent here,
 * without involving any room; what metrics and rooms show is gathered
 * above routing, from every event loop (party__ops_upcalls.collect), and
 * handed back here to be answered. */
#include "ops.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "addr_limits.h"
#include "conn.h"
#include "http.h"
#include "http_client.h"
#include "log.h"
#include "request.h"

/* The metrics body is a few KB whatever the load: its size depends on the
 * number of families, not of rooms. */
#define METRICS_MAX_BYTES (1024 * 1024)

static void respond(party_conn *conn, party_response *res) {
    /* Operational answers describe this moment: never cached. */
    party_response_set_header(res, "Cache-Control", "no-store");
    party__conn_http_respond(conn, res, 0);
    party__response_free(res);
}

static void respond_text(party_conn *conn, int status, const char *text) {
    party_response res;
    party__response_init(&res);
    party__response_text(&res, status, text);
    respond(conn, &res);
}

/* ---- a growable text buffer with a hard maximum ---- */

typedef struct text_buf {
    char *data;
    size_t len, cap, max;
    int failed; /* out of memory or over max: the content is incomplete */
} text_buf;

static void text_appendf(text_buf *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_appendf(text_buf *tb, const char *fmt, ...) {
    va_list ap;
    int n;

    if (tb->failed)
        return;
    for (;;) {
        size_t room = tb->cap - tb->len;
        va_start(ap, fmt);
        n = vsnprintf(tb->data != NULL ? tb->data + tb->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            tb->len += (size_t)n;
            return;
        }
        {
            size_t want = tb->len + (size_t)n + 1;
            size_t cap = tb->cap > 0 ? tb->cap : 4096;
            char *grown;
            while (cap < want)
                cap *= 2;
            if (cap > tb->max)
                cap = tb->max;
            if (cap < want) {
                tb->failed = 1;
                return;
            }
            grown = party__realloc(tb->data, cap);
            if (grown == NULL) {
                tb->failed = 1;
                return;
            }
            tb->data = grown;
            tb->cap = cap;
        }
    }
}

/* ---- health ---- */

/* A stopping loop answers at once; otherwise the runtime says whether
 * the storage backend can commit (a cluster node that lost its lease
 * cannot: it takes no clients) and calls party__ops_answer_health. */
static void ops_health(party_conn *conn, const party__ops_upcalls *up) {
    if (party__conn_loop(conn)->stopping)
        respond_text(conn, 503, "stopping\n");
    else
        up->collect(conn, PARTY__OPS_HEALTH);
}

void party__ops_answer_health(party_conn *conn, const char *why, const char *node) {
    party_response res;
    party__response_init(&res);
    party__response_text(&res, why != NULL ? 503 : 200, why != NULL ? why : "ok\n");
    if (node != NULL)
        party_response_set_header(&res, "X-Partyd-Node", node);
    respond(conn, &res);
}

/* ---- metrics ---- */

const double party__commit_bucket_ms[PARTY__COMMIT_BUCKETS] = {0.25, 0.5, 1,   2,   5,    10,
                                                               25,   50,  100, 250, 1000, 1e300};

void party__ops_stats_add_loop(party__ops_stats *m, const party__loop *lp) {
    const party__http_stats *o;
    size_t i;

    m->loops++;
    m->conns += lp->n_conns;
    m->bytes_in += lp->bytes_in;
    m->bytes_out += lp->bytes_out;
    m->http_requests += lp->http_requests;
    m->http_errors += lp->http_errors;
    m->protocol_errors += lp->protocol_errors;
    m->send_queue_drops += lp->send_queue_drops;
    m->accept_errors += lp->accept_errors;
    m->tls_errors += lp->tls_errors;
    m->proxy_refused += lp->proxy_refused;
    m->limit_addr_conns += lp->limit_addr_conns;
    m->limit_addr_rate += lp->limit_addr_rate;
    m->limit_conn_msgs += lp->limit_conn_msgs;
    m->limit_conn_bytes += lp->limit_conn_bytes;
    m->limit_conn_closed += lp->limit_conn_closed;
    m->limit_room_conns += lp->limit_room_conns;
    if (lp->index == 0) /* one table for every loop: counted once */
        party__addr_limits_stats(lp->addr_limits, &m->limit_addresses, &m->limit_addresses_evicted);
    m->origin_refused += lp->origin_refused;
    o = &lp->http_stats;
    m->outbound.requests += o->requests;
    m->outbound.answered += o->answered;
    for (i = 0; i < sizeof(o->errors) / sizeof(o->errors[0]); i++)
        m->outbound.errors[i] += o->errors[i];
    m->outbound.redirects += o->redirects;
    m->outbound.seconds_total += o->seconds_total;
    for (i = 0; i < PARTY__HTTP_BUCKETS; i++)
        m->outbound.seconds_hist[i] += o->seconds_hist[i];
    m->outbound.in_flight += o->in_flight;
}

/* ---- the metrics table ----
 * Names follow docs/operations.md: partyd_<subsystem>_<what>, then the unit
 * (_seconds, _bytes) if it has one, then _total for a counter; kinds are
 * labels. tests/integration/test_ops.c checks every name against it. Each
 * family is one row, written in the table's order: its HELP and TYPE, then
 * its samples — one value (a field of party__ops_stats), one value per
 * label, or what its write function prints (histograms, labels known only
 * at run time, values not in the stats). */

typedef struct metric_label {
    const char *value; /* NULL: the end of the list */
    size_t offset;     /* of its uint64_t in party__ops_stats */
} metric_label;

typedef struct metric_def {
    const char *name, *type, *help;
    size_t offset;              /* a single value: its uint64_t in party__ops_stats */
    const char *label;          /* labelled values: the label's name ... */
    const metric_label *labels; /* ... and its values */
    void (*write)(const struct metric_def *def, const party__ops_stats *m, text_buf *tb);
} metric_def;

#define STAT(field) offsetof(party__ops_stats, field)
#define SCALAR(name, type, help, field)                                                            \
    { name, type, help, STAT(field), NULL, NULL, NULL }
#define LABELLED(name, type, help, label, labels)                                                  \
    { name, type, help, 0, label, labels, NULL }
#define WRITTEN(name, type, help, write)                                                           \
    { name, type, help, 0, NULL, NULL, write }

static uint64_t stat_at(const party__ops_stats *m, size_t offset) {
    uint64_t value;
    memcpy(&value, (const char *)m + offset, sizeof(value));
    return value;
}

/* A histogram's buckets (cumulative; bounds in units of divisor), the
 * last one +Inf. The count. */
static uint64_t write_buckets(text_buf *tb, const char *name, const uint64_t *hist, size_t n,
                              const double *bound, double divisor) {
    uint64_t cumulative = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        cumulative += hist[i];
        if (i + 1 < n)
            text_appendf(tb, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bound[i] / divisor,
                         cumulative);
        else
            text_appendf(tb, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    }
    return cumulative;
}

static void write_commit_seconds(const metric_def *def, const party__ops_stats *m, text_buf *tb) {
    (void)write_buckets(tb, def->name, m->commit_hist, PARTY__COMMIT_BUCKETS,
                        party__commit_bucket_ms, 1000.0);
    text_appendf(tb, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", def->name, m->commit_us_total / 1000000,
                 m->commit_us_total % 1000000);
    text_appendf(tb, "%s_count %" PRIu64 "\n", def->name, m->commits);
}

static void write_outbound_errors(const metric_def *def, const party__ops_stats *m, text_buf *tb) {
    size_t i;
    for (i = 0; i < sizeof(m->outbound.errors) / sizeof(m->outbound.errors[0]); i++)
        text_appendf(tb, "%s{kind=\"%s\"} %" PRIu64 "\n", def->name,
                     party__http_error_label((int)i), m->outbound.errors[i]);
}

static void write_outbound_seconds(const metric_def *def, const party__ops_stats *m, text_buf *tb) {
    uint64_t count = write_buckets(tb, def->name, m->outbound.seconds_hist, PARTY__HTTP_BUCKETS,
                                   party__http_bucket_seconds, 1);
    text_appendf(tb, "%s_sum %.6f\n", def->name, m->outbound.seconds_total);
    text_appendf(tb, "%s_count %" PRIu64 "\n", def->name, count);
}

static void write_build_info(const metric_def *def, const party__ops_stats *m, text_buf *tb) {
    (void)m;
    text_appendf(tb, "%s{version=\"%s\"} 1\n", def->name, PARTY_VERSION_STRING);
}

static void write_process_id(const metric_def *def, const party__ops_stats *m, text_buf *tb) {
    (void)m;
    text_appendf(tb, "%s %" PRIu64 "\n", def->name, (uint64_t)getpid());
}

/* In the order of the room states: also the names of the rooms list. */
static const metric_label room_states[] = {
    {"awake", STAT(rooms[PARTY__OPS_ROOM_AWAKE])},
    {"hibernated", STAT(rooms[PARTY__OPS_ROOM_HIBERNATED])},
    {"cold", STAT(rooms[PARTY__OPS_ROOM_COLD])},
    {NULL, 0},
};

/* events[] is indexed by the room event type; 5 is not delivered. */
static const metric_label room_events[] = {
    {"connect", STAT(events[0])},
    {"message", STAT(events[1])},
    {"close", STAT(events[2])},
    {"error", STAT(events[3])},
    {"request", STAT(events[4])},
    {"response", STAT(events[6])},
    {"alarm", STAT(alarms_fired)},
    {"schedule", STAT(schedules_fired)},
    {NULL, 0},
};

static const metric_label error_kinds[] = {
    {"http", STAT(http_errors)},
    {"websocket_protocol", STAT(protocol_errors)},
    {"send_queue", STAT(send_queue_drops)},
    {"commit", STAT(commit_failures)},
    {"accept", STAT(accept_errors)},
    {"tls", STAT(tls_errors)},
    {NULL, 0},
};

static const metric_def metric_defs[] = {
    SCALAR("partyd_runtime_event_loops", "gauge", "Event-loop threads serving rooms (--threads).",
           loops),
    SCALAR("partyd_connections_open", "gauge", "Open client connections (HTTP and WebSocket).",
           conns),
    SCALAR("partyd_connections_received_bytes_total", "counter", "Bytes read from client sockets.",
           bytes_in),
    SCALAR("partyd_connections_sent_bytes_total", "counter", "Bytes written to client sockets.",
           bytes_out),
    SCALAR("partyd_connections_requests_total", "counter",
           "HTTP requests read and parsed, WebSocket handshakes included.", http_requests),
    SCALAR("partyd_connections_proxy_refused_total", "counter",
           "Connections closed because they did not start with a valid PROXY protocol header "
           "(--proxy-protocol).",
           proxy_refused),
    SCALAR("partyd_connections_origin_refused_total", "counter",
           "WebSocket handshakes (403) and CORS preflights (403) refused because their Origin is "
           "not in --allowed-origins.",
           origin_refused),
    LABELLED("partyd_rooms_known", "gauge",
             "Rooms known to the runtime: awake (in memory), hibernated (out of memory with "
             "connections open) or cold (out of memory, no connections).",
             "state", room_states),
    LABELLED("partyd_rooms_events_total", "counter",
             "Events delivered to rooms, by type: alarm counts on_alarm runs, schedule "
             "on_schedule runs.",
             "type", room_events),
    WRITTEN("partyd_storage_commit_seconds", "histogram",
            "Time to commit a room's batch of writes durably.", write_commit_seconds),
    SCALAR("partyd_storage_commit_groups_total", "counter",
           "Group commits: the rooms whose batches ended in one loop turn, committed together "
           "(one storage transaction and sync per file).",
           commit_groups),
    SCALAR("partyd_alarms_pending", "gauge", "Rooms waiting for an alarm or schedule to fire.",
           alarms_pending),
    SCALAR("partyd_alarms_fired_total", "counter",
           "on_alarm runs (schedules are not alarms: see partyd_rooms_events_total).",
           alarms_fired),
    SCALAR("partyd_alarms_retried_total", "counter",
           "Alarms scheduled again after on_alarm failed.", alarms_retried),
    SCALAR("partyd_alarms_abandoned_total", "counter",
           "Alarms given up after their last retry failed.", alarms_abandoned),
    LABELLED("partyd_runtime_errors_total", "counter",
             "Errors by kind: http (requests refused by the parser or the handshake check), "
             "websocket_protocol (connections closed for a bad frame), send_queue (slow readers "
             "dropped), commit (failed commits), accept (failed accepts), tls (failed TLS "
             "handshakes or records).",
             "kind", error_kinds),
    SCALAR("partyd_outbound_requests_total", "counter",
           "Outbound HTTP requests of rooms (party_room_fetch_url) that left.", outbound.requests),
    SCALAR("partyd_outbound_in_flight", "gauge", "Outbound HTTP requests waiting for their answer.",
           outbound.in_flight),
    SCALAR("partyd_outbound_redirects_total", "counter", "Redirects outbound requests followed.",
           outbound.redirects),
    WRITTEN("partyd_outbound_errors_total", "counter",
            "Outbound requests that ended without an HTTP answer, by kind: timeout, dns, "
            "connect, tls, too_large, policy, aborted (in flight when an earlier process "
            "stopped), other.",
            write_outbound_errors),
    WRITTEN("partyd_outbound_request_seconds", "histogram",
            "Time from an outbound request leaving to its answer or error.",
            write_outbound_seconds),
    SCALAR("partyd_limit_addr_conns_total", "counter",
           "Requests answered 429: their client address had --limit-addr-conns connections "
           "open.",
           limit_addr_conns),
    SCALAR("partyd_limit_addr_rate_total", "counter",
           "Requests answered 429: their client address opened more than --limit-addr-rate "
           "connections a second.",
           limit_addr_rate),
    SCALAR("partyd_limit_conn_msgs_total", "counter",
           "Times a WebSocket's reading paused: over --limit-conn-msgs messages a second.",
           limit_conn_msgs),
    SCALAR("partyd_limit_conn_bytes_total", "counter",
           "Times a WebSocket's reading paused: over --limit-conn-bytes bytes a second.",
           limit_conn_bytes),
    SCALAR("partyd_limit_conn_closed_total", "counter",
           "WebSockets closed with 1013: over their message or byte limit again after every "
           "pause.",
           limit_conn_closed),
    SCALAR("partyd_limit_room_conns_total", "counter",
           "Upgrades refused (503): their room had max_room_conns connections.", limit_room_conns),
    SCALAR("partyd_limit_addresses", "gauge",
           "Client addresses whose connections are counted now (at most --limit-addr-table).",
           limit_addresses),
    SCALAR("partyd_limit_addresses_evicted_total", "counter",
           "Client addresses forgotten to make room in the table, least recently seen first.",
           limit_addresses_evicted),
    WRITTEN("partyd_runtime_build_info", "gauge", "The running build, by its version (always 1).",
            write_build_info),
    WRITTEN("partyd_runtime_process_id", "gauge",
            "The pid of the process serving now (an upgrade changes it).", write_process_id),
    SCALAR("partyd_runtime_upgrades_total", "counter",
           "Upgrades (SIGUSR2) that handed the service over to a new process, counted from "
           "process to process since the last plain start.",
           upgrades),
    SCALAR("partyd_runtime_upgrade_failures_total", "counter",
           "Upgrades this process started that failed: it went on serving.", upgrades_failed),
    SCALAR("partyd_runtime_upgrade_tls_closed_total", "counter",
           "TLS connections closed with 1012 by upgrades (a TLS session cannot be handed over), "
           "counted from process to process like the upgrades.",
           upgrades_tls_closed),
    SCALAR("partyd_storage_fenced_total", "counter",
           "Commits refused because the room is owned by another node now (a cluster store): "
           "nothing of them was kept, their connections closed with 1012.",
           commits_fenced),
    SCALAR("partyd_storage_pg_reconnects_total", "counter",
           "PostgreSQL connections of the store found closed by the server (a restart, an idle "
           "timeout, a terminated session) and replaced by new ones before a commit or a load "
           "used them.",
           store_reconnects),
};

static void metrics_write(const party__ops_stats *m, text_buf *tb) {
    size_t i;

    for (i = 0; i < sizeof(metric_defs) / sizeof(metric_defs[0]); i++) {
        const metric_def *def = &metric_defs[i];
        const metric_label *l;

        text_appendf(tb, "# HELP %s %s\n# TYPE %s %s\n", def->name, def->help, def->name,
                     def->type);
        if (def->write != NULL)
            def->write(def, m, tb);
        else if (def->labels != NULL)
            for (l = def->labels; l->value != NULL; l++)
                text_appendf(tb, "%s{%s=\"%s\"} %" PRIu64 "\n", def->name, def->label, l->value,
                             stat_at(m, l->offset));
        else
            text_appendf(tb, "%s %" PRIu64 "\n", def->name, stat_at(m, def->offset));
    }
}

void party__ops_answer_metrics(party_conn *conn, const party__ops_stats *stats, int failed) {
    text_buf tb = {NULL, 0, 0, METRICS_MAX_BYTES, 0};
    party_response res;

    if (failed) {
        respond_text(conn, 503, "stopping\n");
        return;
    }
    if (stats == NULL) {
        respond_text(conn, 500, "out of memory building the metrics\n");
        return;
    }
    metrics_write(stats, &tb);
    if (tb.failed) {
        party__free(tb.data);
        respond_text(conn, 500, "out of memory building the metrics\n");
        return;
    }
    party__response_init(&res);
    party_response_set_header(&res, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    party_response_set_body(&res, tb.data, tb.len);
    party__free(tb.data);
    respond(conn, &res);
}

/* ---- rooms ---- */

static int sha256(const void *data, size_t len, unsigned char out[32]) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

/* 1 if the request carries "Authorization: Bearer <admin_token>" (the
 * scheme in any case). The tokens are compared as SHA-256 digests with
 * CRYPTO_memcmp: the time taken says nothing about how much of the token,
 * or its length, was right. */
static int request_authorized(const char *token, const party__http_request *req) {
    static const char scheme[] = "Bearer";
    party__slice auth = party__http_header_get(req, "Authorization");
    unsigned char want[32], got[32];
    size_t skip = sizeof(scheme) - 1;

    if (auth.ptr == NULL || auth.len <= skip ||
        !party__slice_eq_nocase(party__slice_make(auth.ptr, skip), scheme) ||
        (auth.ptr[skip] != ' ' && auth.ptr[skip] != '\t'))
        return 0;
    while (skip < auth.len && (auth.ptr[skip] == ' ' || auth.ptr[skip] == '\t'))
        skip++;
    if (!sha256(token, strlen(token), want) || !sha256(auth.ptr + skip, auth.len - skip, got))
        return 0;
    return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

int party__ops_listing_add(party__ops_listing *t, const char *party, const char *name,
                           const char *id, size_t conns, party__ops_room_state state) {
    party__ops_room *e;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        party__ops_room *grown = party__realloc(t->items, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        t->items = grown;
        t->cap = cap;
    }
    e = &t->items[t->n];
    e->name = name != NULL ? party__strdup(name) : NULL;
    if (name != NULL && e->name == NULL)
        return PARTY_ENOMEM;
    e->party = party;
    memcpy(e->id, id, PARTY_ID_MAX);
    e->conns = conns;
    e->state = state;
    t->n++;
    return 0;
}

void party__ops_listing_free(party__ops_listing *t) {
    size_t i;

    for (i = 0; i < t->n; i++)
        party__free(t->items[i].name);
    party__free(t->items);
    t->items = NULL;
    t->n = t->cap = 0;
}

static int room_compare(const void *a, const void *b) {
    const party__ops_room *x = a, *y = b;
    int c = strcmp(x->party, y->party);

    if (c != 0)
        return c;
    /* Rooms known only by id sort after the named ones of their party. */
    if (x->name != NULL && y->name != NULL)
        c = strcmp(x->name, y->name);
    else if (x->name != NULL || y->name != NULL)
        c = x->name != NULL ? -1 : 1;
    return c != 0 ? c : strcmp(x->id, y->id);
}

/* The JSON listing of the rooms in memory; NULL on OOM. The caller frees it
 * with cJSON_free. */
static char *rooms_json(party__ops_listing *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "rooms");
    char *text = NULL;
    size_t i;

    if (root == NULL || list == NULL)
        goto done;
    if (t->n > 1)
        qsort(t->items, t->n, sizeof(*t->items), room_compare);
    for (i = 0; i < t->n; i++) {
        const party__ops_room *room = &t->items[i];
        cJSON *item = cJSON_CreateObject();

        if (item == NULL)
            goto done;
        if (!cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            goto done;
        }
        if (cJSON_AddStringToObject(item, "party", room->party) == NULL ||
            (room->name != NULL ? cJSON_AddStringToObject(item, "name", room->name)
                                : cJSON_AddNullToObject(item, "name")) == NULL ||
            cJSON_AddStringToObject(item, "id", room->id) == NULL ||
            cJSON_AddNumberToObject(item, "connections", (double)room->conns) == NULL ||
            cJSON_AddStringToObject(item, "status", room_states[room->state].value) == NULL)
            goto done;
    }
    text = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return text;
}

void party__ops_answer_rooms(party_conn *conn, party__ops_listing *listing, int oom, int failed) {
    party_response res;
    char *text;

    if (failed) {
        respond_text(conn, 503, "stopping\n");
        return;
    }
    text = oom ? NULL : rooms_json(listing);
    if (text == NULL) {
        respond_text(conn, 500, "out of memory listing the rooms\n");
        return;
    }
    party__response_init(&res);
    party_response_set_header(&res, "Content-Type", "application/json");
    party_response_set_body(&res, text, strlen(text));
    cJSON_free(text);
    respond(conn, &res);
}

static int rooms_authorized(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    party_response res;

    if (request_authorized(lp->cfg.admin_token, &party__conn_http(conn)->req))
        return 1;
    party__log_info(lp, "ops: refused /%s/rooms: missing or wrong Bearer token",
                    lp->cfg.ops_prefix);
    party__response_init(&res);
    party__response_text(&res, 401, "unauthorized: send Authorization: Bearer <token>\n");
    party_response_set_header(&res, "WWW-Authenticate", "Bearer realm=\"partyd\"");
    respond(conn, &res);
    return 0;
}

/* ---- dispatch ---- */

int party__ops_handle(party_conn *conn, const party__ops_upcalls *up) {
    const party__loop *lp = party__conn_loop(conn);
    const party__http_request *req = &party__conn_http(conn)->req;
    const char *prefix = lp->cfg.ops_prefix;
    size_t prefix_len = strlen(prefix);
    party__slice path = req->path, name;
    int endpoint = -1; /* 0: health, else 1 + a party__ops_what */

    /* "/" ops_prefix "/" name */
    if (path.len < prefix_len + 2 || path.ptr[0] != '/' ||
        memcmp(path.ptr + 1, prefix, prefix_len) != 0 || path.ptr[prefix_len + 1] != '/')
        return 0;
    name = party__slice_make(path.ptr + prefix_len + 2, path.len - prefix_len - 2);
    if (name.len == 6 && memcmp(name.ptr, "health", 6) == 0)
        endpoint = 0;
    else if (name.len == 7 && memcmp(name.ptr, "metrics", 7) == 0)
        endpoint = 1 + PARTY__OPS_METRICS;
    else if (name.len == 5 && memcmp(name.ptr, "rooms", 5) == 0 && lp->cfg.admin_token != NULL)
        endpoint = 1 + PARTY__OPS_ROOMS; /* without a token the endpoint does not exist */

    if (endpoint < 0) {
        respond_text(conn, 404, "Not Found\n");
        return 1;
    }
    if (!(req->method.len == 3 && memcmp(req->method.ptr, "GET", 3) == 0) &&
        !(req->method.len == 4 && memcmp(req->method.ptr, "HEAD", 4) == 0)) {
        party_response res;
        party__response_init(&res);
        party__response_text(&res, 405, "method not allowed: use GET or HEAD\n");
        party_response_set_header(&res, "Allow", "GET, HEAD");
        respond(conn, &res);
        return 1;
    }
    if (endpoint == 0)
        ops_health(conn, up);
    else if (endpoint - 1 == PARTY__OPS_METRICS || rooms_authorized(conn))
        up->collect(conn, (party__ops_what)(endpoint - 1));
    return 1;
}
