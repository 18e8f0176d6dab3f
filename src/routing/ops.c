/* ops: the operational endpoints under /<ops_prefix>/ — health (for load
 * balancers), metrics (Prometheus text format, from the runtime's counters
 * and a walk of the room table) and rooms (a JSON listing of the rooms in
 * memory, behind a Bearer token). Every answer is made and sent here,
 * without involving any room; metrics and rooms gather what each event
 * loop holds by visiting the loops in turn (a tour, loops.h). */
#include "ops.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alarm.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "loops.h"
#include "request.h"
#include "room.h"
#include "runtime.h"
#include "storage.h"
#include "alloc.h"

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

static void ops_health(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    char why[160];
    if (rt->stopping)
        respond_text(conn, 503, "stopping\n");
    else if (party__backend_check(rt->main->backend, why, sizeof(why)) != 0)
        respond_text(conn, 503, why); /* a node that cannot commit takes no clients */
    else
        respond_text(conn, 200, "ok\n");
}

/* ---- metrics ---- */

typedef enum room_state { ROOM_AWAKE, ROOM_HIBERNATED, ROOM_COLD } room_state;

static const char *const room_state_names[] = {"awake", "hibernated", "cold"};

static room_state room_state_of(const party_room *room) {
    if (room->life == PARTY__ROOM_READY)
        return ROOM_AWAKE;
    /* Out of memory (or on its way in or out) while connections stay open:
     * a hibernated room, not a cold one. */
    if (room->n_conns > 0)
        return ROOM_HIBERNATED;
    return ROOM_COLD;
}

static void metric_family(text_buf *tb, const char *name, const char *type, const char *help) {
    text_appendf(tb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_scalar(text_buf *tb, const char *name, const char *type, const char *help,
                          uint64_t value) {
    metric_family(tb, name, type, help);
    text_appendf(tb, "%s %" PRIu64 "\n", name, value);
}

/* The counters of every loop, added up by a tour (see loops.h). */
typedef struct metrics_tour {
    party__tour tour;
    uint64_t loops, conns, rooms[3], events[7], commit_hist[PARTY__COMMIT_BUCKETS];
    uint64_t commits, commit_us_total, bytes_in, bytes_out, http_requests;
    uint64_t alarms_pending, alarms_fired, alarms_retried, alarms_abandoned, schedules_fired;
    uint64_t http_errors, protocol_errors, send_queue_drops, commit_failures, accept_errors,
        tls_errors;
    uint64_t commits_fenced;
} metrics_tour;

static void metrics_visit(party_runtime *rt, party__tour *tour) {
    metrics_tour *m = (metrics_tour *)tour;
    size_t i;

    for (i = 0; i < rt->rooms_cap; i++) {
        const party_room *room;
        for (room = rt->rooms[i]; room != NULL; room = room->hash_next)
            m->rooms[room_state_of(room)]++;
    }
    m->loops++;
    m->conns += rt->n_conns;
    for (i = 0; i < sizeof(m->events) / sizeof(m->events[0]); i++)
        m->events[i] += rt->events[i];
    for (i = 0; i < PARTY__COMMIT_BUCKETS; i++)
        m->commit_hist[i] += rt->commit_hist[i];
    m->commits += rt->commits;
    m->commit_us_total += rt->commit_us_total;
    m->bytes_in += rt->bytes_in;
    m->bytes_out += rt->bytes_out;
    m->http_requests += rt->http_requests;
    m->alarms_pending += party__alarm_heap_size(rt);
    m->alarms_fired += rt->alarms_fired;
    m->alarms_retried += rt->alarms_retried;
    m->alarms_abandoned += rt->alarms_abandoned;
    m->schedules_fired += rt->schedules_fired;
    m->http_errors += rt->http_errors;
    m->protocol_errors += rt->protocol_errors;
    m->send_queue_drops += rt->send_queue_drops;
    m->commit_failures += rt->commit_failures;
    m->commits_fenced += rt->commits_fenced;
    m->accept_errors += rt->accept_errors;
    m->tls_errors += rt->tls_errors;
}

/* Names follow docs/operations.md: partyd_<subsystem>_<what>, then the unit
 * (_seconds, _bytes) if it has one, then _total for a counter; kinds are
 * labels. tests/integration/test_ops.c checks every name against it. */
static void metrics_write(const metrics_tour *m, text_buf *tb) {
    static const char *const event_names[] = {"connect", "message", "close",   "error",
                                              "request", NULL,      "response"};
    uint64_t cumulative = 0;
    size_t i;

    metric_scalar(tb, "partyd_runtime_event_loops", "gauge",
                  "Event-loop threads serving rooms (--threads).", m->loops);
    metric_scalar(tb, "partyd_connections_open", "gauge",
                  "Open client connections (HTTP and WebSocket).", m->conns);
    metric_scalar(tb, "partyd_connections_received_bytes_total", "counter",
                  "Bytes read from client sockets.", m->bytes_in);
    metric_scalar(tb, "partyd_connections_sent_bytes_total", "counter",
                  "Bytes written to client sockets.", m->bytes_out);
    metric_scalar(tb, "partyd_connections_requests_total", "counter",
                  "HTTP requests read and parsed, WebSocket handshakes included.",
                  m->http_requests);

    metric_family(tb, "partyd_rooms_known", "gauge",
                  "Rooms known to the runtime: awake (in memory), hibernated (out of memory "
                  "with connections open) or cold (out of memory, no connections).");
    for (i = 0; i < 3; i++)
        text_appendf(tb, "partyd_rooms_known{state=\"%s\"} %" PRIu64 "\n", room_state_names[i],
                     m->rooms[i]);

    metric_family(tb, "partyd_rooms_events_total", "counter",
                  "Events delivered to rooms, by type: alarm counts on_alarm runs, schedule "
                  "on_schedule runs.");
    for (i = 0; i < sizeof(event_names) / sizeof(event_names[0]); i++)
        if (event_names[i] != NULL)
            text_appendf(tb, "partyd_rooms_events_total{type=\"%s\"} %" PRIu64 "\n", event_names[i],
                         m->events[i]);
    text_appendf(tb, "partyd_rooms_events_total{type=\"alarm\"} %" PRIu64 "\n", m->alarms_fired);
    text_appendf(tb, "partyd_rooms_events_total{type=\"schedule\"} %" PRIu64 "\n",
                 m->schedules_fired);

    metric_family(tb, "partyd_storage_commit_seconds", "histogram",
                  "Time to commit a room's batch of writes durably.");
    for (i = 0; i < PARTY__COMMIT_BUCKETS; i++) {
        cumulative += m->commit_hist[i];
        if (i + 1 < PARTY__COMMIT_BUCKETS)
            text_appendf(tb, "partyd_storage_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                         party__commit_bucket_ms[i] / 1000.0, cumulative);
        else
            text_appendf(tb, "partyd_storage_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                         cumulative);
    }
    text_appendf(tb, "partyd_storage_commit_seconds_sum %" PRIu64 ".%06" PRIu64 "\n",
                 m->commit_us_total / 1000000, m->commit_us_total % 1000000);
    text_appendf(tb, "partyd_storage_commit_seconds_count %" PRIu64 "\n", m->commits);

    metric_scalar(tb, "partyd_alarms_pending", "gauge",
                  "Rooms waiting for an alarm or schedule to fire.", m->alarms_pending);
    metric_scalar(tb, "partyd_alarms_fired_total", "counter",
                  "on_alarm runs (schedules are not alarms: see partyd_rooms_events_total).",
                  m->alarms_fired);
    metric_scalar(tb, "partyd_alarms_retried_total", "counter",
                  "Alarms scheduled again after on_alarm failed.", m->alarms_retried);
    metric_scalar(tb, "partyd_alarms_abandoned_total", "counter",
                  "Alarms given up after their last retry failed.", m->alarms_abandoned);

    metric_family(tb, "partyd_runtime_errors_total", "counter",
                  "Errors by kind: http (requests refused by the parser or the handshake "
                  "check), websocket_protocol (connections closed for a bad frame), "
                  "send_queue (slow readers dropped), commit (failed commits), accept "
                  "(failed accepts), tls (failed TLS handshakes or records).");
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"http\"} %" PRIu64 "\n", m->http_errors);
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"websocket_protocol\"} %" PRIu64 "\n",
                 m->protocol_errors);
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"send_queue\"} %" PRIu64 "\n",
                 m->send_queue_drops);
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"commit\"} %" PRIu64 "\n",
                 m->commit_failures);
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"accept\"} %" PRIu64 "\n",
                 m->accept_errors);
    text_appendf(tb, "partyd_runtime_errors_total{kind=\"tls\"} %" PRIu64 "\n", m->tls_errors);

    metric_family(tb, "partyd_storage_fenced_total", "counter",
                  "Commits refused because the room is owned by another node now (a cluster "
                  "store): nothing of them was kept, their connections closed with 1012.");
    text_appendf(tb, "partyd_storage_fenced_total %" PRIu64 "\n", m->commits_fenced);
}

static void metrics_done(party_conn *conn, party__tour *tour) {
    text_buf tb = {NULL, 0, 0, METRICS_MAX_BYTES, 0};
    party_response res;

    if (tour->failed) {
        respond_text(conn, 503, "stopping\n");
        return;
    }
    metrics_write((const metrics_tour *)tour, &tb);
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

static void metrics_free(party__tour *tour) {
    party__free(tour);
}

static void ops_metrics(party_conn *conn) {
    metrics_tour *m = party__calloc(1, sizeof(*m));

    if (m == NULL) {
        respond_text(conn, 500, "out of memory building the metrics\n");
        return;
    }
    party__tour_start(conn, &m->tour, metrics_visit, metrics_done, metrics_free);
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
static int request_authorized(party_runtime *rt, const party__http_request *req) {
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
    if (!sha256(rt->admin_token, strlen(rt->admin_token), want) ||
        !sha256(auth.ptr + skip, auth.len - skip, got))
        return 0;
    return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

/* What the listing shows of one room, copied on the room's loop. */
typedef struct room_entry {
    const char *party; /* the party's registered name (lives as long as the runtime) */
    char *name;        /* NULL: known only by id */
    char id[PARTY_ID_MAX];
    size_t conns;
    room_state state;
} room_entry;

typedef struct rooms_tour {
    party__tour tour;
    room_entry *items;
    size_t n, cap;
    int oom;
} rooms_tour;

/* Copies what the listing shows of room; 0, or -1 on OOM. */
static int rooms_add(rooms_tour *t, const party_room *room) {
    room_entry *e;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        room_entry *grown = party__realloc(t->items, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        t->items = grown;
        t->cap = cap;
    }
    e = &t->items[t->n];
    e->name = room->name != NULL ? party__strdup(room->name) : NULL;
    if (room->name != NULL && e->name == NULL)
        return -1;
    e->party = room->party->name;
    memcpy(e->id, room->id, PARTY_ID_MAX);
    e->conns = room->n_conns;
    e->state = room_state_of(room);
    t->n++;
    return 0;
}

static void rooms_visit(party_runtime *rt, party__tour *tour) {
    rooms_tour *t = (rooms_tour *)tour;
    size_t i;

    for (i = 0; i < rt->rooms_cap && !t->oom; i++) {
        const party_room *room;
        for (room = rt->rooms[i]; room != NULL && !t->oom; room = room->hash_next)
            t->oom = rooms_add(t, room) != 0;
    }
}

static int room_compare(const void *a, const void *b) {
    const room_entry *x = a, *y = b;
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
static char *rooms_json(rooms_tour *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(root, "rooms");
    char *text = NULL;
    size_t i;

    if (root == NULL || list == NULL || t->oom)
        goto done;
    if (t->n > 1)
        qsort(t->items, t->n, sizeof(*t->items), room_compare);
    for (i = 0; i < t->n; i++) {
        const room_entry *room = &t->items[i];
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
            cJSON_AddStringToObject(item, "status", room_state_names[room->state]) == NULL)
            goto done;
    }
    text = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return text;
}

static void rooms_done(party_conn *conn, party__tour *tour) {
    party_response res;
    char *text;

    if (tour->failed) {
        respond_text(conn, 503, "stopping\n");
        return;
    }
    text = rooms_json((rooms_tour *)tour);
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

static void rooms_free(party__tour *tour) {
    rooms_tour *t = (rooms_tour *)tour;
    size_t i;

    for (i = 0; i < t->n; i++)
        party__free(t->items[i].name);
    party__free(t->items);
    party__free(t);
}

static void ops_rooms(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    party_response res;
    rooms_tour *t;

    if (!request_authorized(rt, &conn->http->req)) {
        party__log_info(rt, "ops: refused /%s/rooms: missing or wrong Bearer token",
                        rt->ops_prefix);
        party__response_init(&res);
        party__response_text(&res, 401, "unauthorized: send Authorization: Bearer <token>\n");
        party_response_set_header(&res, "WWW-Authenticate", "Bearer realm=\"partyd\"");
        respond(conn, &res);
        return;
    }
    t = party__calloc(1, sizeof(*t));
    if (t == NULL) {
        respond_text(conn, 500, "out of memory listing the rooms\n");
        return;
    }
    party__tour_start(conn, &t->tour, rooms_visit, rooms_done, rooms_free);
}

/* ---- dispatch ---- */

int party__ops_handle(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    const party__http_request *req = &conn->http->req;
    size_t prefix_len = strlen(rt->ops_prefix);
    party__slice path = req->path, name;
    void (*endpoint)(party_conn *) = NULL;

    /* "/" ops_prefix "/" name */
    if (path.len < prefix_len + 2 || path.ptr[0] != '/' ||
        memcmp(path.ptr + 1, rt->ops_prefix, prefix_len) != 0 || path.ptr[prefix_len + 1] != '/')
        return 0;
    name = party__slice_make(path.ptr + prefix_len + 2, path.len - prefix_len - 2);
    if (name.len == 6 && memcmp(name.ptr, "health", 6) == 0)
        endpoint = ops_health;
    else if (name.len == 7 && memcmp(name.ptr, "metrics", 7) == 0)
        endpoint = ops_metrics;
    else if (name.len == 5 && memcmp(name.ptr, "rooms", 5) == 0 && rt->admin_token != NULL)
        endpoint = ops_rooms; /* without a token the endpoint does not exist */

    if (endpoint == NULL) {
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
    endpoint(conn);
    return 1;
}
