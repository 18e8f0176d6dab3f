/* Hibernation (room_idle.c's party__room_hibernate and the idle lists), through
 * the test harness on its virtual clock: a hibernated room drops its state
 * and store but keeps its connections, which answer pings without waking
 * it; the next message, close, HTTP request or alarm wakes it (on_start
 * runs again, then the handler) with every connection's id, uri, tags and
 * state intact, for replies, broadcasts, foreach and server-side closes;
 * rooms of hibernating parties hibernate by themselves after
 * hibernate_after, others never do; a hibernated room whose last
 * connection closes is evicted after idle_timeout. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"

/* ---- the hall party: reports what it knows about its connections ---- */

static struct {
    int starts, frees, alarms, closes, requests, connects, errors;
    int error_started; /* the room was started when on_error ran */
    char close_id[64], close_reason[PARTY_MAX_CLOSE_REASON + 1], close_room[64];
    int close_code, close_clean;
    int close_started; /* the room was started when on_close ran */
} rec;

typedef struct hall_state {
    int incarnation; /* rec.starts when on_start made it */
} hall_state;

static int hall_start(party_room *room, const char *props) {
    hall_state *s = calloc(1, sizeof(*s));
    (void)props;
    if (s == NULL)
        return -1;
    s->incarnation = ++rec.starts;
    party_room_set_state(room, s);
    return 0;
}

static void hall_free(void *state) {
    rec.frees++;
    free(state);
}

/* Tags from the "role" query parameter: "role-<role>" and "member". */
static int hall_tags(party_room *room, party_conn *conn, const party_request *req,
                     const char **tags, size_t max) {
    static char role[PARTY_MAX_TAG_LEN + 1];
    const char *q = party_request_query(req, "role");
    (void)room;
    (void)conn;
    if (q == NULL || max < 2)
        return 0;
    snprintf(role, sizeof(role), "role-%s", q);
    tags[0] = role;
    tags[1] = "member";
    return 2;
}

/* "<id>[tag|tag|...]{state}" into out. */
static void describe(party_conn *conn, char *out, size_t cap) {
    const char *const *tags = NULL;
    size_t n = party_conn_tags(conn, &tags), i, len = 0;
    const void *state = party_conn_state(conn, &len);
    size_t used;

    snprintf(out, cap, "%s[", party_conn_id(conn));
    for (i = 0; i < n; i++) {
        used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", i ? "|" : "", tags[i]);
    }
    used = strlen(out);
    snprintf(out + used, cap - used, "]{%.*s}", (int)len, state != NULL ? (const char *)state : "");
}

typedef struct collect {
    char text[2048];
} collect;

static int collect_cb(party_conn *conn, void *arg) {
    collect *c = arg;
    char one[512];
    size_t used = strlen(c->text);
    describe(conn, one, sizeof(one));
    snprintf(c->text + used, sizeof(c->text) - used, "%s;", one);
    return 0;
}

static void hall_message(party_room *room, party_conn *conn, const void *data, size_t len,
                         int binary) {
    hall_state *s = party_room_state(room);
    char msg[256], out[2300];
    (void)binary;

    snprintf(msg, sizeof(msg), "%.*s", (int)len, (const char *)data);
    if (s == NULL) {
        party_conn_send_text(conn, "no state: on_start did not run");
        return;
    }
    if (strncmp(msg, "state:", 6) == 0) {
        party_conn_set_state(conn, msg + 6, strlen(msg + 6));
        party_conn_send_text(conn, "ok");
    } else if (strcmp(msg, "whoami") == 0) {
        const char *name = party_room_name(room);
        char me[512];
        describe(conn, me, sizeof(me));
        snprintf(out, sizeof(out), "room=%s uri=%s me=%s start=%d", name ? name : "(null)",
                 party_conn_uri(conn), me, s->incarnation);
        party_conn_send_text(conn, out);
    } else if (strncmp(msg, "all", 3) == 0) {
        /* "all" or "all:<tag>": everyone (with that tag), to everyone */
        collect c;
        int r;
        memset(&c, 0, sizeof(c));
        r = party_room_foreach_conn(room, msg[3] == ':' ? msg + 4 : NULL, collect_cb, &c);
        snprintf(out, sizeof(out), "%d n=%zu %s", r, party_room_conn_count(room), c.text);
        party_room_broadcast(room, out, strlen(out), 0, NULL, 0, NULL);
    } else if (strncmp(msg, "kick:", 5) == 0) {
        party_conn *target = party_room_conn(room, msg + 5);
        int r = target != NULL ? party_conn_close(target, 4000, "kicked out") : PARTY_ENOTFOUND;
        snprintf(out, sizeof(out), "kick=%d", r);
        party_conn_send_text(conn, out);
    } else if (strncmp(msg, "alarm:", 6) == 0) {
        int r = party_alarm_set(room, strtoll(msg + 6, NULL, 10));
        snprintf(out, sizeof(out), "alarm=%d", r);
        party_conn_send_text(conn, out);
    } else {
        party_conn_send_text(conn, msg);
    }
}

static void hall_close(party_room *room, party_conn *conn, int code, const char *reason,
                       int was_clean) {
    const char *name = party_room_name(room);
    rec.closes++;
    rec.close_code = code;
    rec.close_clean = was_clean;
    rec.close_started = party_room_state(room) != NULL;
    snprintf(rec.close_id, sizeof(rec.close_id), "%s", party_conn_id(conn));
    snprintf(rec.close_reason, sizeof(rec.close_reason), "%s", reason);
    snprintf(rec.close_room, sizeof(rec.close_room), "%s", name ? name : "(null)");
}

static void hall_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)conn;
    (void)req;
    if (party_room_state(room) != NULL)
        rec.connects++;
}

static void hall_error(party_room *room, party_conn *conn, const char *what) {
    (void)conn;
    (void)what;
    rec.errors++;
    rec.error_started = party_room_state(room) != NULL;
}

static void hall_request(party_room *room, const party_request *req, party_response *res) {
    hall_state *s = party_room_state(room);
    char text[64];
    (void)req;
    rec.requests++;
    snprintf(text, sizeof(text), "start=%d conns=%zu", s != NULL ? s->incarnation : -1,
             party_room_conn_count(room));
    party_response_set_body(res, text, strlen(text));
}

static int hall_alarm(party_room *room) {
    rec.alarms++;
    return party_room_state(room) != NULL ? 0 : -1;
}

static const party_def hall_def = {
    .name = "hall",
    .hibernate = 1,
    .on_start = hall_start,
    .on_message = hall_message,
    .on_close = hall_close,
    .on_connect = hall_connect,
    .on_error = hall_error,
    .on_request = hall_request,
    .on_alarm = hall_alarm,
    .connection_tags = hall_tags,
    .free_state = hall_free,
};

/* The same party, without hibernation. */
static const party_def awake_def = {
    .name = "awake",
    .hibernate = 0,
    .on_start = hall_start,
    .on_message = hall_message,
    .on_close = hall_close,
    .on_request = hall_request,
    .on_alarm = hall_alarm,
    .connection_tags = hall_tags,
    .free_state = hall_free,
};

static int start_with(void **state, party_test *t) {
    memset(&rec, 0, sizeof(rec));
    if (t == NULL || party_test_add(t, &hall_def) != 0 || party_test_add(t, &awake_def) != 0)
        return -1;
    *state = t;
    return 0;
}

static int setup(void **state) {
    return start_with(state, party_test_new());
}

/* hibernate_after 10 s, idle_timeout 60 s: the defaults, spelled out. */
static int setup_auto(void **state) {
    party_config cfg;
    party_config_init(&cfg);
    cfg.hibernate_after = 10;
    cfg.idle_timeout = 60;
    cfg.log_level = 1;
    return start_with(state, party_test_new_with(&cfg));
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* ---- helpers ---- */

static party_test_conn *join(party_test *t, const char *target) {
    int status = 0;
    party_test_conn *c = party_test_connect(t, target, &status);
    assert_int_equal(status, 101);
    assert_non_null(c);
    return c;
}

/* Sends text and expects the reply want. */
static void say(party_test_conn *c, const char *text, const char *want) {
    char *got = NULL;
    assert_int_equal(party_test_send_text(c, text), 0);
    assert_int_equal(party_test_recv_text(c, &got), 0);
    if (strcmp(got, want) != 0) {
        print_error("sent \"%s\": got \"%s\", want \"%s\"\n", text, got, want);
        free(got);
        fail();
    }
    free(got);
}

static void expect_recv(party_test_conn *c, const char *want) {
    char *got = NULL;
    assert_int_equal(party_test_recv_text(c, &got), 0);
    if (strcmp(got, want) != 0) {
        print_error("got \"%s\", want \"%s\"\n", got, want);
        free(got);
        fail();
    }
    free(got);
}

static void expect_get(party_test *t, const char *target, const char *want) {
    party_test_response res;
    assert_int_equal(party_test_request(t, "GET", target, NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, want);
    party_test_response_free(&res);
}

static void hibernate(party_test *t, const char *party, const char *room) {
    assert_int_equal(party_test_hibernate(t, party, room), 0);
    assert_int_equal(party_test_loaded(t, party, room), 0);
    assert_int_equal(party_test_in_memory(t, party, room), 1);
}

/* ---- forced hibernation ---- */

static void test_hibernate_frees_state_and_keeps_connections(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/quiet?_pk=alice");

    say(c, "hello", "hello");
    assert_int_equal(rec.starts, 1);
    assert_int_equal(party_test_loaded(t, "hall", "quiet"), 1);
    hibernate(t, "hall", "quiet");
    assert_int_equal(rec.frees, 1);
    assert_int_equal(rec.closes, 0);
    /* Already hibernated. */
    assert_int_equal(party_test_hibernate(t, "hall", "quiet"), PARTY_ESTATE);
    assert_int_equal(party_test_close_info(c, NULL, NULL), PARTY_ESTATE); /* still open */
    /* A ping is answered by the runtime and does not wake the room. */
    assert_int_equal(party_test_ping(c, "are you there", 13), 0);
    assert_int_equal(party_test_ping(c, "", 0), 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_loaded(t, "hall", "quiet"), 0);
    assert_int_equal(rec.starts, 1);
    assert_int_equal(rec.frees, 1);
    party_test_conn_free(c);
}

static void test_hibernated_room_with_connections_is_never_evicted(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/kept?_pk=alice");

    hibernate(t, "hall", "kept");
    assert_int_equal(party_test_evict(t, "hall", "kept"), PARTY_ESTATE);
    assert_int_equal(party_test_advance(t, 3600 * 1000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "kept"), 1);
    assert_int_equal(party_test_loaded(t, "hall", "kept"), 0);
    assert_int_equal(rec.starts, 1);
    assert_int_equal(party_test_ping(c, "x", 1), 0);
    say(c, "still here", "still here");
    assert_int_equal(rec.starts, 2);
    party_test_conn_free(c);
}

/* ---- waking ---- */

static void test_message_wakes_room_with_name_id_uri_tags_state_intact(void **state) {
    party_test *t = *state;
    const char *target = "/parties/hall/lobby?_pk=alice&role=admin&x=a%20b";
    party_test_conn *c = join(t, target);
    char want[512];

    say(c, "state:alice-state", "ok");
    snprintf(want, sizeof(want),
             "room=lobby uri=%s me=alice[alice|role-admin|member]{alice-state} start=1", target);
    say(c, "whoami", want);
    hibernate(t, "hall", "lobby");
    assert_int_equal(rec.frees, 1);

    snprintf(want, sizeof(want),
             "room=lobby uri=%s me=alice[alice|role-admin|member]{alice-state} start=2", target);
    say(c, "whoami", want);
    assert_int_equal(rec.starts, 2); /* on_start ran once more, before on_message */
    assert_int_equal(party_test_loaded(t, "hall", "lobby"), 1);
    /* Woken once only. */
    say(c, "whoami", want);
    assert_int_equal(rec.starts, 2);
    party_test_conn_free(c);
}

static void test_queued_messages_wake_the_room_once(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/burst?_pk=alice");

    hibernate(t, "hall", "burst");
    assert_int_equal(party_test_send_text(c, "one"), 0);
    assert_int_equal(party_test_send_text(c, "two"), 0);
    assert_int_equal(party_test_send_text(c, "three"), 0);
    expect_recv(c, "one");
    expect_recv(c, "two");
    expect_recv(c, "three");
    assert_int_equal(rec.starts, 2);
    party_test_conn_free(c);
}

static void test_room_hibernates_again_after_a_wake(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/cycle?_pk=alice");

    say(c, "state:s1", "ok");
    hibernate(t, "hall", "cycle");
    say(c, "whoami", "room=cycle uri=/parties/hall/cycle?_pk=alice me=alice[alice]{s1} start=2");
    hibernate(t, "hall", "cycle");
    assert_int_equal(rec.frees, 2);
    say(c, "whoami", "room=cycle uri=/parties/hall/cycle?_pk=alice me=alice[alice]{s1} start=3");
    party_test_conn_free(c);
}

static void test_client_close_on_hibernated_room_runs_on_close_after_wake(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/leave?_pk=alice");
    party_test_conn *b = join(t, "/parties/hall/leave?_pk=bob");
    const char *reason = NULL;
    int code = 0;

    hibernate(t, "hall", "leave");
    assert_int_equal(party_test_close(b, 4321, "bob goes home"), 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.closes, 1);
    assert_string_equal(rec.close_id, "bob");
    assert_int_equal(rec.close_code, 4321);
    assert_string_equal(rec.close_reason, "bob goes home");
    assert_int_equal(rec.close_clean, 1);
    assert_string_equal(rec.close_room, "leave");
    assert_int_equal(rec.close_started, 1); /* on_start ran first */
    assert_int_equal(rec.starts, 2);
    /* The close handshake: the reply echoes the code. */
    assert_int_equal(party_test_close_info(b, &code, &reason), 0);
    assert_int_equal(code, 4321);
    /* The other connection is untouched. */
    say(a, "all", "0 n=1 alice[alice]{};");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_dropped_connection_on_hibernated_room_runs_on_close_1006(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/dropped?_pk=alice");
    party_test_conn *b = join(t, "/parties/hall/dropped?_pk=bob");

    hibernate(t, "hall", "dropped");
    assert_int_equal(party_test_drop(b), 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.closes, 1);
    assert_string_equal(rec.close_id, "bob");
    assert_int_equal(rec.close_code, 1006);
    assert_int_equal(rec.close_clean, 0);
    assert_int_equal(rec.close_started, 1);
    say(a, "all", "0 n=1 alice[alice]{};");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_broadcast_and_foreach_after_wake_see_every_connection(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/crowd?_pk=alice&role=admin");
    party_test_conn *b = join(t, "/parties/hall/crowd?_pk=bob&role=guest");
    party_test_conn *c = join(t, "/parties/hall/crowd?_pk=carol&role=admin");
    const char *all = "0 n=3 alice[alice|role-admin|member]{sa};bob[bob|role-guest|member]{sb};"
                      "carol[carol|role-admin|member]{sc};";
    const char *admins = "0 n=3 alice[alice|role-admin|member]{sa};"
                         "carol[carol|role-admin|member]{sc};";

    say(a, "state:sa", "ok");
    say(b, "state:sb", "ok");
    say(c, "state:sc", "ok");
    hibernate(t, "hall", "crowd");

    assert_int_equal(party_test_send_text(b, "all"), 0);
    expect_recv(a, all);
    expect_recv(b, all);
    expect_recv(c, all);
    assert_int_equal(rec.starts, 2);

    hibernate(t, "hall", "crowd");
    assert_int_equal(party_test_send_text(c, "all:role-admin"), 0);
    expect_recv(a, admins);
    expect_recv(b, admins);
    expect_recv(c, admins);
    assert_int_equal(rec.starts, 3);
    party_test_conn_free(a);
    party_test_conn_free(b);
    party_test_conn_free(c);
}

static void test_server_close_on_woken_room_reaches_client(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/kick?_pk=alice");
    party_test_conn *b = join(t, "/parties/hall/kick?_pk=bob");
    char *text = NULL;
    const char *reason = NULL;
    int code = 0;

    hibernate(t, "hall", "kick");
    say(a, "kick:bob", "kick=0");
    assert_int_equal(party_test_recv_text(b, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(b, &code, &reason), 0);
    assert_int_equal(code, 4000);
    assert_string_equal(reason, "kicked out");
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.closes, 1);
    assert_string_equal(rec.close_id, "bob");
    say(a, "all", "0 n=1 alice[alice]{};");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_new_connection_wakes_hibernated_room(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/door?_pk=alice&role=admin");
    party_test_conn *b;

    say(a, "state:sa", "ok");
    hibernate(t, "hall", "door");
    b = join(t, "/parties/hall/door?_pk=bob");
    assert_int_equal(rec.starts, 2); /* on_start, then on_connect */
    assert_int_equal(rec.connects, 2);
    say(b, "all", "0 n=2 alice[alice|role-admin|member]{sa};bob[bob]{};");
    expect_recv(a, "0 n=2 alice[alice|role-admin|member]{sa};bob[bob]{};");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_protocol_error_wakes_hibernated_room(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/hall/bad?_pk=alice");
    party_test_conn *b = join(t, "/parties/hall/bad?_pk=bob");
    char *text = NULL;
    int code = 0;

    hibernate(t, "hall", "bad");
    assert_int_equal(party_test_send_text(b, "bad \xff utf-8"), 0);
    assert_int_equal(party_test_recv_text(b, &text), PARTY_ECLOSED);
    assert_int_equal(party_test_close_info(b, &code, NULL), 0);
    assert_int_equal(code, 1007);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.errors, 1);
    assert_int_equal(rec.error_started, 1);
    assert_int_equal(rec.closes, 1);
    assert_string_equal(rec.close_id, "bob");
    assert_int_equal(rec.close_started, 1);
    assert_int_equal(rec.starts, 2);
    say(a, "all", "0 n=1 alice[alice]{};");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_http_request_wakes_hibernated_room(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/web?_pk=alice");

    expect_get(t, "/parties/hall/web", "start=1 conns=1");
    hibernate(t, "hall", "web");
    expect_get(t, "/parties/hall/web", "start=2 conns=1");
    assert_int_equal(rec.starts, 2);
    assert_int_equal(party_test_loaded(t, "hall", "web"), 1);
    say(c, "whoami", "room=web uri=/parties/hall/web?_pk=alice me=alice[alice]{} start=2");
    party_test_conn_free(c);
}

static void test_alarm_wakes_hibernated_room(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/ring?_pk=alice");
    char msg[64];

    snprintf(msg, sizeof(msg), "alarm:%lld", (long long)(party_test_now(t) + 5000));
    say(c, msg, "alarm=0");
    hibernate(t, "hall", "ring");
    assert_int_equal(party_test_advance(t, 4999), 0);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(party_test_loaded(t, "hall", "ring"), 0);
    assert_int_equal(party_test_advance(t, 1), 0);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.starts, 2);
    assert_int_equal(party_test_loaded(t, "hall", "ring"), 1);
    /* Not retried: on_alarm found the state on_start made. */
    assert_int_equal(party_test_advance(t, 3600 * 1000), 0);
    assert_int_equal(rec.alarms, 1);
    /* Meanwhile it hibernated again (hibernate_after, 10 s by default). */
    assert_int_equal(party_test_loaded(t, "hall", "ring"), 0);
    assert_int_equal(rec.frees, 2);
    say(c, "whoami", "room=ring uri=/parties/hall/ring?_pk=alice me=alice[alice]{} start=3");
    party_test_conn_free(c);
}

static void test_alarm_set_before_hibernation_fires_once_after_message_wake(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/later?_pk=alice");
    char msg[64];

    snprintf(msg, sizeof(msg), "alarm:%lld", (long long)(party_test_now(t) + 5000));
    say(c, msg, "alarm=0");
    hibernate(t, "hall", "later");
    say(c, "hi", "hi"); /* woken by a message before the alarm is due */
    assert_int_equal(rec.starts, 2);
    assert_int_equal(party_test_advance(t, 4999), 0);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(party_test_advance(t, 1), 0);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(party_test_advance(t, 3600 * 1000), 0);
    assert_int_equal(rec.alarms, 1);
    party_test_conn_free(c);
}

/* ---- automatic hibernation ---- */

static void test_idle_room_hibernates_after_hibernate_after(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/auto?_pk=alice");
    party_test_conn *d = join(t, "/parties/awake/auto?_pk=dave");

    say(c, "state:x", "ok");
    say(d, "state:y", "ok");
    assert_int_equal(party_test_advance(t, 9000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "auto"), 1);
    assert_int_equal(party_test_loaded(t, "awake", "auto"), 1);
    assert_int_equal(rec.frees, 0);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "auto"), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "auto"), 1);
    assert_int_equal(rec.frees, 1);
    /* A non-hibernating party's room with connections stays. */
    assert_int_equal(party_test_loaded(t, "awake", "auto"), 1);
    assert_int_equal(party_test_advance(t, 3600 * 1000), 0);
    assert_int_equal(party_test_loaded(t, "awake", "auto"), 1);
    assert_int_equal(rec.frees, 1);
    assert_int_equal(rec.starts, 2);

    /* Woken, it hibernates again after another quiet 10 s. */
    say(c, "whoami", "room=auto uri=/parties/hall/auto?_pk=alice me=alice[alice]{x} start=3");
    assert_int_equal(party_test_advance(t, 9999), 0);
    assert_int_equal(party_test_loaded(t, "hall", "auto"), 1);
    assert_int_equal(party_test_advance(t, 1), 0);
    assert_int_equal(party_test_loaded(t, "hall", "auto"), 0);
    assert_int_equal(rec.frees, 2);
    party_test_conn_free(c);
    party_test_conn_free(d);
}

static void test_activity_postpones_hibernation(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/busy?_pk=alice");

    assert_int_equal(party_test_advance(t, 8000), 0);
    say(c, "ping-ish", "ping-ish");
    assert_int_equal(party_test_advance(t, 8000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "busy"), 1);
    assert_int_equal(party_test_advance(t, 2000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "busy"), 0);
    party_test_conn_free(c);
}

static void test_pings_do_not_postpone_hibernation(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/pinged?_pk=alice");

    assert_int_equal(party_test_advance(t, 8000), 0);
    assert_int_equal(party_test_ping(c, "x", 1), 0);
    assert_int_equal(party_test_advance(t, 2000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "pinged"), 0);
    party_test_conn_free(c);
}

static void test_room_without_connections_is_evicted_not_hibernated(void **state) {
    party_test *t = *state;

    expect_get(t, "/parties/hall/alone", "start=1 conns=0");
    assert_int_equal(party_test_advance(t, 10000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "alone"), 1);
    assert_int_equal(party_test_advance(t, 50000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "alone"), 0);
    assert_int_equal(rec.frees, 1);
}

/* ---- leaving memory ---- */

static void test_hibernated_room_evicted_after_last_connection_closes(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/last?_pk=alice");

    hibernate(t, "hall", "last");
    assert_int_equal(party_test_close(c, 1000, "bye"), 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.closes, 1);
    assert_int_equal(rec.close_code, 1000);
    assert_string_equal(rec.close_reason, "bye");
    assert_int_equal(party_test_advance(t, 59000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "last"), 1);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "last"), 0);
    assert_int_equal(rec.frees, 2); /* hibernation, then eviction */
    assert_int_equal(rec.starts, 2);
    party_test_conn_free(c);
}

static void test_auto_hibernated_room_evicted_after_last_connection_drops(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/fade?_pk=alice");

    assert_int_equal(party_test_advance(t, 10000), 0);
    assert_int_equal(party_test_loaded(t, "hall", "fade"), 0);
    assert_int_equal(party_test_drop(c), 0);
    assert_int_equal(rec.closes, 1);
    assert_int_equal(rec.close_code, 1006);
    assert_int_equal(party_test_advance(t, 59000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "fade"), 1);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(party_test_in_memory(t, "hall", "fade"), 0);
    party_test_conn_free(c);
}

static void test_restart_with_hibernated_room_drops_connections(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "/parties/hall/reboot?_pk=alice");
    int code = 0;

    hibernate(t, "hall", "reboot");
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(party_test_close_info(c, &code, NULL), 0);
    assert_int_equal(code, 1006);
    assert_int_equal(rec.closes, 1); /* on_close, after a wake */
    assert_int_equal(rec.close_code, 1006);
    assert_int_equal(rec.close_started, 1);
    assert_int_equal(party_test_in_memory(t, "hall", "reboot"), 0);
    assert_int_equal(rec.frees, rec.starts);
    party_test_conn_free(c);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TEST_AUTO(fn) cmocka_unit_test_setup_teardown(fn, setup_auto, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(test_hibernate_frees_state_and_keeps_connections),
        TEST(test_hibernated_room_with_connections_is_never_evicted),
        TEST(test_message_wakes_room_with_name_id_uri_tags_state_intact),
        TEST(test_queued_messages_wake_the_room_once),
        TEST(test_room_hibernates_again_after_a_wake),
        TEST(test_client_close_on_hibernated_room_runs_on_close_after_wake),
        TEST(test_dropped_connection_on_hibernated_room_runs_on_close_1006),
        TEST(test_broadcast_and_foreach_after_wake_see_every_connection),
        TEST(test_server_close_on_woken_room_reaches_client),
        TEST(test_new_connection_wakes_hibernated_room),
        TEST(test_protocol_error_wakes_hibernated_room),
        TEST(test_http_request_wakes_hibernated_room),
        TEST(test_alarm_wakes_hibernated_room),
        TEST(test_alarm_set_before_hibernation_fires_once_after_message_wake),
        TEST_AUTO(test_idle_room_hibernates_after_hibernate_after),
        TEST_AUTO(test_activity_postpones_hibernation),
        TEST_AUTO(test_pings_do_not_postpone_hibernation),
        TEST_AUTO(test_room_without_connections_is_evicted_not_hibernated),
        TEST_AUTO(test_hibernated_room_evicted_after_last_connection_closes),
        TEST_AUTO(test_auto_hibernated_room_evicted_after_last_connection_drops),
        TEST(test_restart_with_hibernated_room_drops_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
