/* Operational endpoints of a real partyd process under /_partyd/: health,
 * Prometheus metrics (parsed here line by line, and checked to move with
 * the traffic the test makes), and the token-protected listing of rooms.
 * partyd runs with --admin-token s3cret; two tests start a partyd of
 * their own: one without a token (the rooms endpoint is off), one where
 * rooms hibernate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define TOKEN "s3cret"

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {"--admin-token", TOKEN, NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* ---- a Prometheus text-format checker ---- */

#define MAX_FAMILIES 64
#define MAX_SAMPLES 256

typedef struct sample {
    char key[256]; /* name{labels} as written, or name */
    double value;
} sample;

typedef struct metrics {
    char help[MAX_FAMILIES][128];
    size_t n_help;
    char type[MAX_FAMILIES][128];
    char type_kind[MAX_FAMILIES][16];
    size_t n_type;
    sample samples[MAX_SAMPLES];
    size_t n_samples;
} metrics;

static int is_name_start(int c) {
    return isalpha(c) || c == '_' || c == ':';
}

static int is_name_char(int c) {
    return isalnum(c) || c == '_' || c == ':';
}

/* Length of the metric or label name at s, 0 if none. */
static size_t name_len(const char *s) {
    size_t n = 0;
    if (!is_name_start((unsigned char)s[0]))
        return 0;
    while (is_name_char((unsigned char)s[n]))
        n++;
    return n;
}

/* Parses a sample value: a float, +Inf, -Inf or NaN, filling the rest of the
 * line. */
static int parse_value(const char *s, double *out) {
    char *end;
    if (strcmp(s, "+Inf") == 0) {
        *out = INFINITY;
        return 0;
    }
    if (strcmp(s, "-Inf") == 0) {
        *out = -INFINITY;
        return 0;
    }
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return -1;
    *out = strtod(s, &end);
    return *end == '\0' ? 0 : -1;
}

/* The family a sample belongs to: histogram series drop their suffix. */
static void family_of(const metrics *m, const char *name, size_t len, char *out, size_t cap) {
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t i, j;

    snprintf(out, cap, "%.*s", (int)len, name);
    for (i = 0; i < 3; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len <= sl || memcmp(name + len - sl, suffixes[i], sl) != 0)
            continue;
        for (j = 0; j < m->n_type; j++) {
            if (strlen(m->type[j]) == len - sl && memcmp(m->type[j], name, len - sl) == 0 &&
                strcmp(m->type_kind[j], "histogram") == 0) {
                snprintf(out, cap, "%.*s", (int)(len - sl), name);
                return;
            }
        }
    }
}

static int has_family(char list[][128], size_t n, const char *name) {
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return 1;
    return 0;
}

/* Parses the exposition in text, failing the test on any malformed line,
 * any sample without HELP and TYPE before it, or a duplicate series. */
static void metrics_parse(const char *text, metrics *m) {
    char *copy = strdup(text), *line, *save = NULL;
    assert_non_null(copy);
    memset(m, 0, sizeof(*m));
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');

    for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char family[128];
        size_t n, i;
        char *p;
        sample *s;

        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            int help = line[2] == 'H';
            n = name_len(line + 7);
            if (n == 0 || n >= 128 || line[7 + n] != ' ')
                fail_msg("malformed comment line: %s", line);
            if (help) {
                assert_true(m->n_help < MAX_FAMILIES);
                if (has_family(m->help, m->n_help, line + 7))
                    fail_msg("second HELP: %s", line);
                snprintf(m->help[m->n_help++], 128, "%.*s", (int)n, line + 7);
            } else {
                const char *kind = line + 7 + n + 1;
                if (strcmp(kind, "counter") != 0 && strcmp(kind, "gauge") != 0 &&
                    strcmp(kind, "histogram") != 0 && strcmp(kind, "summary") != 0 &&
                    strcmp(kind, "untyped") != 0)
                    fail_msg("unknown TYPE: %s", line);
                assert_true(m->n_type < MAX_FAMILIES);
                snprintf(m->type[m->n_type], 128, "%.*s", (int)n, line + 7);
                snprintf(m->type_kind[m->n_type++], 16, "%s", kind);
            }
            continue;
        }
        if (line[0] == '#')
            continue; /* another comment */

        /* name{label="value",...} value */
        n = name_len(line);
        if (n == 0)
            fail_msg("sample line without a metric name: %s", line);
        p = line + n;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t ln = name_len(p);
                if (ln == 0 || p[ln] != '=' || p[ln + 1] != '"')
                    fail_msg("malformed label in: %s", line);
                p += ln + 2;
                while (*p != '"') {
                    if (*p == '\0')
                        fail_msg("unterminated label value in: %s", line);
                    if (*p == '\\' && p[1] != '\0')
                        p++;
                    p++;
                }
                p++;
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    fail_msg("malformed label list in: %s", line);
            }
            p++;
        }
        if (*p != ' ')
            fail_msg("no space before the value in: %s", line);
        assert_true(m->n_samples < MAX_SAMPLES);
        s = &m->samples[m->n_samples];
        if ((size_t)(p - line) >= sizeof(s->key))
            fail_msg("series name too long: %s", line);
        memcpy(s->key, line, (size_t)(p - line));
        s->key[p - line] = '\0';
        if (parse_value(p + 1, &s->value) != 0)
            fail_msg("not a number (or a timestamp follows) in: %s", line);
        for (i = 0; i < m->n_samples; i++)
            if (strcmp(m->samples[i].key, s->key) == 0)
                fail_msg("series twice: %s", s->key);
        m->n_samples++;

        family_of(m, line, n, family, sizeof(family));
        if (!has_family(m->help, m->n_help, family))
            fail_msg("no HELP before %s", line);
        if (!has_family(m->type, m->n_type, family))
            fail_msg("no TYPE before %s", line);
    }
    free(copy);
}

/* The value of a series (exact key, e.g. partyd_rooms_known{state="awake"});
 * fails the test if absent. */
static double metric(const metrics *m, const char *key) {
    size_t i;
    for (i = 0; i < m->n_samples; i++)
        if (strcmp(m->samples[i].key, key) == 0)
            return m->samples[i].value;
    fail_msg("no series %s in the metrics", key);
    return 0;
}

/* ---- the naming rule of docs/operations.md ---- */

/* The subsystems a metric name may start with, after partyd_. */
static const char *const subsystems[] = {"runtime", "connections", "rooms", "storage",
                                         "alarms",  "outbound",    "limit"};

static int ends_with(const char *s, size_t len, const char *suffix) {
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

/* Why name (a family of TYPE kind) breaks the rule
 * partyd_<subsystem>_<what>[_<unit>][_total], or NULL when it follows it:
 * lower case, a known subsystem, something after it, _total exactly on
 * counters, units (_seconds, _bytes) spelled out and last but for _total,
 * a histogram named by its unit. */
static const char *metric_name_problem(const char *name, const char *kind) {
    static const char *const bad_units[] = {"_ms",      "_us",    "_milliseconds", "_microseconds",
                                            "_minutes", "_hours", "_kb",           "_mb",
                                            "_kib",     "_mib",   "_percent",      "_count"};
    const char *rest, *what = NULL;
    size_t i, len = strlen(name), core;

    if (strncmp(name, "partyd_", 7) != 0)
        return "does not start with partyd_";
    for (i = 0; name[i] != '\0'; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return "has a character other than a-z, 0-9 and _";
    if (strstr(name, "__") != NULL || name[len - 1] == '_')
        return "has an empty word";
    rest = name + 7;
    for (i = 0; i < sizeof(subsystems) / sizeof(subsystems[0]); i++) {
        size_t sl = strlen(subsystems[i]);
        if (strncmp(rest, subsystems[i], sl) == 0 && rest[sl] == '_') {
            what = rest + sl + 1;
            break;
        }
    }
    if (what == NULL)
        return "has no known subsystem after partyd_ (runtime, connections, rooms, storage, "
               "alarms, outbound, limit)";
    core = len;
    if (strcmp(kind, "counter") == 0) {
        if (!ends_with(name, len, "_total"))
            return "is a counter whose name does not end in _total";
        core -= 6;
    }
    if (strstr(name, "_total") != NULL &&
        (strcmp(kind, "counter") != 0 || strstr(name, "_total") != name + len - 6))
        return "has _total where it is not the counter suffix";
    if (name + core <= what || (ends_with(name, core, "_seconds") && name + core - 8 < what + 1) ||
        (ends_with(name, core, "_bytes") && name + core - 6 < what + 1))
        return "says nothing after its subsystem but a unit";
    for (i = 0; i < sizeof(bad_units) / sizeof(bad_units[0]); i++) {
        size_t ul = strlen(bad_units[i]);
        const char *at;
        for (at = strstr(name, bad_units[i]); at != NULL; at = strstr(at + 1, bad_units[i]))
            if (at[ul] == '_' || at[ul] == '\0')
                return "has a unit other than seconds or bytes, or a count suffix";
    }
    {
        const char *units[] = {"_seconds", "_bytes"};
        for (i = 0; i < 2; i++) {
            const char *at = strstr(name, units[i]);
            if (at != NULL && at + strlen(units[i]) != name + core)
                return "has its unit somewhere other than at the end (before _total)";
        }
    }
    if (strcmp(kind, "histogram") == 0 && !ends_with(name, core, "_seconds") &&
        !ends_with(name, core, "_bytes"))
        return "is a histogram not named by its unit";
    return NULL;
}

/* GETs /_partyd/metrics from the partyd on port, checks the answer, and
 * parses it into m. */
static void metrics_fetch_from(int from_port, metrics *m) {
    http_response res;
    const char *type;

    http_expect_get(from_port, "/_partyd/metrics", &res);
    assert_int_equal(res.status, 200);
    type = http_response_header(&res, "Content-Type");
    assert_non_null(type);
    if (strncmp(type, "text/plain; version=0.0.4", 25) != 0)
        fail_msg("metrics Content-Type: %s", type);
    metrics_parse(res.body, m);
    http_response_free(&res);
}

static void metrics_fetch(metrics *m) {
    metrics_fetch_from(port, m);
}

/* ---- health ---- */

static void test_health_says_ok(void **state) {
    http_response res;
    (void)state;

    http_expect_get(port, "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "ok\n");
    assert_non_null(strstr(http_response_header(&res, "Content-Type"), "text/plain"));
    assert_string_equal(http_response_header(&res, "Cache-Control"), "no-store");
    http_response_free(&res);

    /* The query string does not change the path. */
    http_expect_get(port, "/_partyd/health?verbose=1", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
}

static void test_head_answers_without_a_body(void **state) {
    http_response res;
    (void)state;

    http_expect_request(port, "HEAD", "/_partyd/health", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, 0);
    assert_string_equal(http_response_header(&res, "Content-Length"), "3");
    http_response_free(&res);

    http_expect_request(port, "HEAD", "/_partyd/metrics", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, 0);
    assert_true(atoi(http_response_header(&res, "Content-Length")) > 0);
    http_response_free(&res);

    http_expect_request(port, "HEAD", "/_partyd/rooms", "Authorization: Bearer " TOKEN "\r\n", NULL,
                        0, &res);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, 0);
    http_response_free(&res);
}

static void test_other_methods_get_405_with_allow(void **state) {
    static const char *const paths[] = {"/_partyd/health", "/_partyd/metrics", "/_partyd/rooms"};
    http_response res;
    size_t i;
    (void)state;

    for (i = 0; i < 3; i++) {
        http_expect_request(port, "POST", paths[i], NULL, "x", 1, &res);
        assert_int_equal(res.status, 405);
        assert_string_equal(http_response_header(&res, "Allow"), "GET, HEAD");
        http_response_free(&res);
    }
    http_expect_request(port, "DELETE", "/_partyd/health", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 405);
    http_response_free(&res);
}

static void test_unknown_paths_under_the_prefix_get_404(void **state) {
    static const char *const paths[] = {"/_partyd/x", "/_partyd/", "/_partyd/health/",
                                        "/_partyd/metrics/x", "/_partyd/HEALTH"};
    http_response res;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http_expect_get(port, paths[i], &res);
        if (res.status != 404)
            fail_msg("GET %s: %d", paths[i], res.status);
        http_response_free(&res);
    }
    /* Not under the prefix: the router's own 404. */
    http_expect_get(port, "/_partydx/health", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
}

static void test_keep_alive_serves_several_requests(void **state) {
    http_response res;
    tconn *c;
    int i;
    (void)state;

    /* Pipelined: both requests in one write. */
    c = http_expect_raw(port,
                        "GET /_partyd/health HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /_partyd/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                        &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "ok\n");
    assert_string_equal(http_response_header(&res, "Connection"), "keep-alive");
    http_response_free(&res);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "partyd_connections_open "));
    http_response_free(&res);

    /* And one after the other, a 404 and a 405 included. */
    for (i = 0; i < 3; i++) {
        static const char *const requests[] = {
            "GET /_partyd/nope HTTP/1.1\r\nHost: x\r\n\r\n",
            "PUT /_partyd/health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET /_partyd/health HTTP/1.1\r\nHost: x\r\n\r\n",
        };
        static const int statuses[] = {404, 405, 200};
        assert_int_equal(tconn_send_str(c, requests[i]), 0);
        assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
        assert_int_equal(res.status, statuses[i]);
        http_response_free(&res);
    }
    tconn_close(c);
}

/* ---- metrics ---- */

static void test_metrics_are_well_formed_with_every_family(void **state) {
    static const char *const families[] = {
        "partyd_connections_open",
        "partyd_rooms_known",
        "partyd_rooms_events_total",
        "partyd_storage_commit_seconds",
        "partyd_connections_received_bytes_total",
        "partyd_connections_sent_bytes_total",
        "partyd_connections_requests_total",
        "partyd_alarms_pending",
        "partyd_alarms_fired_total",
        "partyd_alarms_retried_total",
        "partyd_alarms_abandoned_total",
        "partyd_runtime_errors_total",
        "partyd_runtime_event_loops",
    };
    static const char *const series[] = {
        "partyd_rooms_known{state=\"awake\"}",
        "partyd_rooms_known{state=\"hibernated\"}",
        "partyd_rooms_known{state=\"cold\"}",
        "partyd_rooms_events_total{type=\"connect\"}",
        "partyd_rooms_events_total{type=\"message\"}",
        "partyd_rooms_events_total{type=\"close\"}",
        "partyd_rooms_events_total{type=\"error\"}",
        "partyd_rooms_events_total{type=\"request\"}",
        "partyd_rooms_events_total{type=\"alarm\"}",
        "partyd_rooms_events_total{type=\"schedule\"}",
        "partyd_rooms_events_total{type=\"response\"}",
        "partyd_storage_commit_seconds_bucket{le=\"+Inf\"}",
        "partyd_storage_commit_seconds_sum",
        "partyd_storage_commit_seconds_count",
        "partyd_runtime_errors_total{kind=\"http\"}",
        "partyd_runtime_errors_total{kind=\"websocket_protocol\"}",
        "partyd_runtime_errors_total{kind=\"send_queue\"}",
        "partyd_runtime_errors_total{kind=\"commit\"}",
        "partyd_runtime_errors_total{kind=\"accept\"}",
    };
    metrics m;
    size_t i;
    (void)state;

    metrics_fetch(&m);
    for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        if (!has_family(m.help, m.n_help, families[i]))
            fail_msg("no HELP for %s", families[i]);
        if (!has_family(m.type, m.n_type, families[i]))
            fail_msg("no TYPE for %s", families[i]);
    }
    for (i = 0; i < sizeof(series) / sizeof(series[0]); i++)
        assert_true(metric(&m, series[i]) >= 0);
    /* The request being answered was read, so some bytes were received. */
    assert_true(metric(&m, "partyd_connections_received_bytes_total") > 0);
    assert_true(metric(&m, "partyd_connections_open") >= 1);
}

/* Every family partyd exposes follows the naming rule, and every label
 * name is one of the kinds the documentation lists. */
static void test_metric_names_follow_the_naming_rule(void **state) {
    static const char *const labels[] = {"state", "type", "kind", "le", "version"};
    metrics m;
    size_t i, j;
    (void)state;

    metrics_fetch(&m);
    assert_true(m.n_type >= 10);
    for (i = 0; i < m.n_type; i++) {
        const char *why = metric_name_problem(m.type[i], m.type_kind[i]);
        if (why != NULL)
            fail_msg("metric %s (%s) %s", m.type[i], m.type_kind[i], why);
    }
    for (i = 0; i < m.n_samples; i++) {
        const char *p = strchr(m.samples[i].key, '{');
        while (p != NULL && *p != '}' && *p != '\0') {
            size_t n = name_len(p + 1);
            int known = 0;
            for (j = 0; j < sizeof(labels) / sizeof(labels[0]); j++)
                known |= strlen(labels[j]) == n && strncmp(p + 1, labels[j], n) == 0;
            if (!known)
                fail_msg("series %s has a label that is not state, type, kind or le",
                         m.samples[i].key);
            p = strchr(p + 1 + n + 2, '"'); /* the value's closing quote */
            if (p != NULL)
                p++;
        }
    }
}

/* The checker above refuses the names partyd used before the rule. */
static void test_the_naming_rule_refuses_names_that_break_it(void **state) {
    static const char *const bad[][2] = {
        {"partyd_connections", "gauge"},
        {"partyd_rooms", "gauge"},
        {"partyd_events_total", "counter"},
        {"partyd_bytes_received_total", "counter"},
        {"partyd_commit_seconds", "histogram"},
        {"partyd_errors_total", "counter"},
        {"partyd_event_loops", "gauge"},
        {"partyd_alarms_fired", "counter"},
        {"partyd_alarms_pending_total", "gauge"},
        {"partyd_storage_commit_ms", "histogram"},
        {"partyd_connections_bytes_received_total", "counter"},
        {"partyd_rooms_total", "counter"},
        {"partyd_storage_commit", "histogram"},
        {"partyd_Rooms_known", "gauge"},
    };
    static const char *const good[][2] = {
        {"partyd_connections_open", "gauge"},
        {"partyd_connections_received_bytes_total", "counter"},
        {"partyd_storage_commit_seconds", "histogram"},
        {"partyd_alarms_fired_total", "counter"},
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (metric_name_problem(bad[i][0], bad[i][1]) == NULL)
            fail_msg("the naming rule let %s (%s) through", bad[i][0], bad[i][1]);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (metric_name_problem(good[i][0], good[i][1]) != NULL)
            fail_msg("the naming rule refused %s: %s", good[i][0],
                     metric_name_problem(good[i][0], good[i][1]));
}

/* POSTs target to the reminder room and waits for the reminder it sets to
 * reach the room's WebSocket c; returns the metrics after it. */
static void reminder_fire(tconn *c, const char *target, const char *name, metrics *after) {
    http_response res;
    char needle[64];
    char *text;

    http_expect_request(port, "POST", target, NULL, "", 0, &res);
    if (res.status != 201)
        fail_msg("POST %s: %d %s", target, res.status, res.body);
    http_response_free(&res);
    text = ws_expect_text_prefix(c, "{");
    snprintf(needle, sizeof(needle), "\"name\":\"%s\"", name);
    if (strstr(text, needle) == NULL)
        fail_msg("expected the reminder %s, got %s", name, text);
    free(text);
    metrics_fetch(after);
}

static double delta(const metrics *after, const metrics *before, const char *key) {
    return metric(after, key) - metric(before, key);
}

/* An alarm counts as type="alarm" and in partyd_alarms_fired_total; a
 * schedule as type="schedule" only. */
static void test_an_alarm_and_a_schedule_are_counted_apart(void **state) {
    static const char alarm[] = "partyd_rooms_events_total{type=\"alarm\"}";
    static const char schedule[] = "partyd_rooms_events_total{type=\"schedule\"}";
    static const char fired[] = "partyd_alarms_fired_total";
    metrics before, mid, after;
    tconn *c;
    (void)state;

    c = ws_open(port, "/parties/reminder/ops-alarms");
    metrics_fetch(&before);
    reminder_fire(c, "/parties/reminder/ops-alarms?alarm_in=1", "alarm", &mid);
    assert_true(delta(&mid, &before, alarm) == 1);
    assert_true(delta(&mid, &before, fired) == 1);
    assert_true(delta(&mid, &before, schedule) == 0);

    reminder_fire(c, "/parties/reminder/ops-alarms?in=1&name=tea", "tea", &after);
    assert_true(delta(&after, &mid, schedule) == 1);
    assert_true(delta(&after, &mid, alarm) == 0);
    assert_true(delta(&after, &mid, fired) == 0);
    tconn_close(c);
}

static void test_messages_and_connections_are_counted(void **state) {
    metrics before, after;
    tconn *a, *b;
    int i;
    (void)state;

    metrics_fetch(&before);
    a = ws_open(port, "/parties/echo/x");
    b = ws_open(port, "/parties/echo/x");
    for (i = 0; i < 3; i++) {
        assert_int_equal(ws_send_text(a, "hi"), 0);
        ws_expect_text(a, "hi");
    }
    metrics_fetch(&after);
    /* a, b and the connection asking. */
    assert_true(metric(&after, "partyd_connections_open") >= 3);
    assert_true(metric(&after, "partyd_rooms_events_total{type=\"message\"}") -
                    metric(&before, "partyd_rooms_events_total{type=\"message\"}") >=
                3);
    assert_true(metric(&after, "partyd_rooms_events_total{type=\"connect\"}") -
                    metric(&before, "partyd_rooms_events_total{type=\"connect\"}") >=
                2);
    assert_true(metric(&after, "partyd_rooms_known{state=\"awake\"}") >= 1);
    assert_true(metric(&after, "partyd_connections_received_bytes_total") >
                metric(&before, "partyd_connections_received_bytes_total"));
    assert_true(metric(&after, "partyd_connections_sent_bytes_total") >
                metric(&before, "partyd_connections_sent_bytes_total"));
    tconn_close(a);
    tconn_close(b);
}

static void test_commits_fill_a_cumulative_histogram(void **state) {
    static const char prefix[] = "partyd_storage_commit_seconds_bucket{le=\"";
    double last = -1, prev = 0, count;
    int saw_inf = 0;
    metrics m;
    tconn *c;
    size_t i;
    (void)state;

    /* A counter message is a durable write: its reply waits for the commit. */
    c = ws_open(port, "/parties/counter/ops-hist");
    assert_int_equal(ws_send_text(c, "+1"), 0);
    free(ws_expect_text_prefix(c, ""));
    tconn_close(c);

    metrics_fetch(&m);
    count = metric(&m, "partyd_storage_commit_seconds_count");
    assert_true(count >= 1);
    assert_true(metric(&m, "partyd_storage_commit_seconds_sum") >= 0);
    for (i = 0; i < m.n_samples; i++) {
        const char *key = m.samples[i].key;
        double le;
        char *end;

        if (strncmp(key, prefix, sizeof(prefix) - 1) != 0)
            continue;
        if (saw_inf)
            fail_msg("bucket after +Inf: %s", key);
        if (strcmp(key + sizeof(prefix) - 1, "+Inf\"}") == 0) {
            saw_inf = 1;
            le = INFINITY;
        } else {
            le = strtod(key + sizeof(prefix) - 1, &end);
            if (strcmp(end, "\"}") != 0)
                fail_msg("malformed le in %s", key);
        }
        if (le <= last)
            fail_msg("le not increasing at %s", key);
        if (m.samples[i].value < prev)
            fail_msg("buckets not cumulative at %s", key);
        last = le;
        prev = m.samples[i].value;
    }
    assert_true(saw_inf);
    /* The +Inf bucket counts every commit. */
    assert_true(prev == count);
}

static void test_a_bad_frame_counts_as_a_protocol_error(void **state) {
    static const char payload[] = "x";
    metrics before, after;
    tconn *c;
    (void)state;

    metrics_fetch(&before);
    c = ws_open(port, "/parties/echo/bad-frame");
    /* RSV1 set without an extension: Close 1002. */
    assert_int_equal(ws_send_raw_frame(c, 0x80 | 0x40 | WS_TEXT, 1, payload, 1), 0);
    ws_expect_close(c, 1002, NULL);
    tconn_close(c);
    metrics_fetch(&after);
    assert_true(metric(&after, "partyd_runtime_errors_total{kind=\"websocket_protocol\"}") -
                    metric(&before, "partyd_runtime_errors_total{kind=\"websocket_protocol\"}") >=
                1);
}

static void test_a_malformed_request_counts_as_an_http_error(void **state) {
    http_response res;
    metrics before, after;
    tconn *c;
    (void)state;

    metrics_fetch(&before);
    c = http_expect_raw(port, "GET / HTTP/9.9\r\n\r\n", &res);
    assert_true(res.status >= 400);
    http_response_free(&res);
    tconn_close(c);
    metrics_fetch(&after);
    assert_true(metric(&after, "partyd_runtime_errors_total{kind=\"http\"}") -
                    metric(&before, "partyd_runtime_errors_total{kind=\"http\"}") >=
                1);
}

/* Every request read counts once, a WebSocket handshake too; the scrape
 * that reads the counter has counted itself. */
static void test_each_request_and_handshake_is_counted_once(void **state) {
    static const char requests[] = "partyd_connections_requests_total";
    metrics before, after;
    http_response res;
    tconn *c;
    int i;
    (void)state;

    metrics_fetch(&before);
    for (i = 0; i < 3; i++) {
        http_expect_get(port, "/parties/probe/ops-requests", &res);
        assert_int_equal(res.status, 200);
        http_response_free(&res);
    }
    c = ws_open(port, "/parties/echo/ops-requests");
    metrics_fetch(&after);
    assert_true(delta(&after, &before, requests) == 3 + 1 + 1);
    tconn_close(c);
}

/* ---- rooms ---- */

static void test_rooms_needs_the_bearer_token(void **state) {
    static const char *const wrong[] = {
        NULL,
        "Authorization: Bearer nope\r\n",
        "Authorization: Bearer s3cre\r\n",
        "Authorization: Bearer s3cret2\r\n",
        "Authorization: Basic czNjcmV0\r\n",
        "Authorization: Bearer\r\n",
        "Authorization: s3cret\r\n",
    };
    http_response res;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        const char *challenge;
        http_expect_request(port, "GET", "/_partyd/rooms", wrong[i], NULL, 0, &res);
        if (res.status != 401)
            fail_msg("%s: %d", wrong[i] != NULL ? wrong[i] : "no header", res.status);
        challenge = http_response_header(&res, "WWW-Authenticate");
        assert_non_null(challenge);
        assert_int_equal(strncmp(challenge, "Bearer", 6), 0);
        assert_null(strstr(res.body, "rooms"));
        http_response_free(&res);
    }
    /* The scheme is case-insensitive. */
    http_expect_request(port, "GET", "/_partyd/rooms", "Authorization: bearer " TOKEN "\r\n", NULL,
                        0, &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
}

/* The JSON object of the room (party, name) in the listing, up to its '}'
 * (copied; free it), or NULL. */
static char *room_entry(const char *json, const char *party, const char *name) {
    char needle[256];
    const char *at, *end;
    char *out;

    snprintf(needle, sizeof(needle), "{\"party\":\"%s\",\"name\":\"%s\",", party, name);
    at = strstr(json, needle);
    if (at == NULL)
        return NULL;
    end = strchr(at, '}');
    assert_non_null(end);
    out = strndup(at, (size_t)(end - at + 1));
    assert_non_null(out);
    return out;
}

static void test_rooms_lists_rooms_with_connections_sorted(void **state) {
    http_response res;
    tconn *p1, *p2, *e1, *c1;
    char *entry;
    const char *alpha, *beta, *echo, *counter;
    (void)state;

    p1 = probe_open(port, "ops-beta", NULL, NULL);
    p2 = probe_open(port, "ops-beta", NULL, NULL);
    c1 = probe_open(port, "ops-alpha", NULL, NULL);
    e1 = ws_open(port, "/parties/echo/ops-room");
    tconn_close(c1); /* ops-alpha stays in memory (idle) */

    http_expect_request(port, "GET", "/_partyd/rooms", "Authorization: Bearer " TOKEN "\r\n", NULL,
                        0, &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Content-Type"), "application/json");
    if (strncmp(res.body, "{\"rooms\":[", 10) != 0)
        fail_msg("rooms body: %s", res.body);

    entry = room_entry(res.body, "probe", "ops-beta");
    if (entry == NULL)
        fail_msg("no probe/ops-beta in %s", res.body);
    assert_non_null(strstr(entry, "\"connections\":2"));
    assert_non_null(strstr(entry, "\"status\":\"awake\""));
    assert_non_null(strstr(entry, "\"id\":\""));
    free(entry);
    entry = room_entry(res.body, "echo", "ops-room");
    if (entry == NULL)
        fail_msg("no echo/ops-room in %s", res.body);
    assert_non_null(strstr(entry, "\"connections\":1"));
    free(entry);
    entry = room_entry(res.body, "probe", "ops-alpha");
    if (entry == NULL)
        fail_msg("no probe/ops-alpha in %s", res.body);
    free(entry);

    /* Sorted by party, then by name. */
    alpha = strstr(res.body, "\"name\":\"ops-alpha\"");
    beta = strstr(res.body, "\"name\":\"ops-beta\"");
    echo = strstr(res.body, "\"name\":\"ops-room\"");
    counter = strstr(res.body, "\"party\":\"counter\"");
    assert_true(echo < alpha && alpha < beta);
    if (counter != NULL) /* from the histogram test, when it ran first */
        assert_true(counter < echo);

    http_response_free(&res);
    tconn_close(p1);
    tconn_close(p2);
    tconn_close(e1);
}

static void test_rooms_is_off_without_a_token(void **state) {
    static const char *const args[] = {NULL};
    partyd *plain;
    http_response res;
    int plain_port;
    (void)state;

    unsetenv("PARTYD_ADMIN_TOKEN");
    plain = partyd_start(args);
    assert_non_null(plain);
    plain_port = partyd_port(plain);
    http_expect_request(plain_port, "GET", "/_partyd/rooms", "Authorization: Bearer " TOKEN "\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 404);
    assert_null(http_response_header(&res, "WWW-Authenticate"));
    http_response_free(&res);
    /* The other endpoints still work. */
    http_expect_get(plain_port, "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    assert_int_equal(partyd_stop(plain), 0);
    partyd_free(plain);
}

static void test_a_hibernated_room_is_listed_as_hibernated(void **state) {
    static const char *const args[] = {
        "--admin-token", TOKEN, "--hibernate-after", "0.2", "--log-level", "debug", NULL};
    partyd *sleepy;
    http_response res;
    metrics m;
    tconn *c;
    char *entry;
    int sleepy_port;
    (void)state;

    sleepy = partyd_start_env(args, "PARTYD_PROBE_HIBERNATE");
    assert_non_null(sleepy);
    sleepy_port = partyd_port(sleepy);
    c = probe_open(sleepy_port, "dozy", NULL, NULL);
    if (!partyd_wait_stderr(sleepy, "room probe/dozy: hibernated with 1 connections", 8000)) {
        char *err = partyd_stderr(sleepy);
        fail_msg("the room did not hibernate:\n%s", err);
    }

    http_expect_request(sleepy_port, "GET", "/_partyd/rooms", "Authorization: Bearer " TOKEN "\r\n",
                        NULL, 0, &res);
    assert_int_equal(res.status, 200);
    entry = room_entry(res.body, "probe", "dozy");
    if (entry == NULL)
        fail_msg("no probe/dozy in %s", res.body);
    if (strstr(entry, "\"status\":\"hibernated\"") == NULL ||
        strstr(entry, "\"connections\":1") == NULL)
        fail_msg("not hibernated with 1 connection: %s", entry);
    free(entry);
    http_response_free(&res);

    metrics_fetch_from(sleepy_port, &m);
    assert_true(metric(&m, "partyd_rooms_known{state=\"hibernated\"}") >= 1);

    tconn_close(c);
    assert_int_equal(partyd_stop(sleepy), 0);
    partyd_free(sleepy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_says_ok),
        cmocka_unit_test(test_head_answers_without_a_body),
        cmocka_unit_test(test_other_methods_get_405_with_allow),
        cmocka_unit_test(test_unknown_paths_under_the_prefix_get_404),
        cmocka_unit_test(test_keep_alive_serves_several_requests),
        cmocka_unit_test(test_metrics_are_well_formed_with_every_family),
        cmocka_unit_test(test_metric_names_follow_the_naming_rule),
        cmocka_unit_test(test_the_naming_rule_refuses_names_that_break_it),
        cmocka_unit_test(test_messages_and_connections_are_counted),
        cmocka_unit_test(test_an_alarm_and_a_schedule_are_counted_apart),
        cmocka_unit_test(test_commits_fill_a_cumulative_histogram),
        cmocka_unit_test(test_a_bad_frame_counts_as_a_protocol_error),
        cmocka_unit_test(test_a_malformed_request_counts_as_an_http_error),
        cmocka_unit_test(test_each_request_and_handshake_is_counted_once),
        cmocka_unit_test(test_rooms_needs_the_bearer_token),
        cmocka_unit_test(test_rooms_lists_rooms_with_connections_sorted),
        cmocka_unit_test(test_rooms_is_off_without_a_token),
        cmocka_unit_test(test_a_hibernated_room_is_listed_as_hibernated),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
