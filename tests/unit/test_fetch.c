/* Room-to-room requests (party_room_fetch) through the test harness: the
 * target sees an ordinary on_request with its name, the answer comes back
 * as an on_response event later, failures (unknown party, failed on_start,
 * timeout) are answers too, a request after a write waits for the commit
 * (and is dropped if the commit fails), a cold room can ask from on_alarm
 * after a restart, and a caller that left memory is brought back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "party.h"
#include "party_test.h"
#include "room.h"
#include "runtime.h"

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the target: svc ---- */

static struct {
    int requests;
    uint64_t last_at; /* mono_ms of the last on_request */
} svc_rec;

static int svc_start(party_room *room, const char *props) {
    (void)props;
    /* Rooms called fail-start never start. */
    return strcmp(party_room_name(room), "fail-start") == 0 ? -1 : 0;
}

static void svc_request(party_room *room, const party_request *req, party_response *res) {
    char json[1024];
    size_t len = 0;
    const void *body = party_request_body(req, &len);
    const char *q = party_request_query(req, "q");
    const char *hdr = party_request_header(req, "x-test");
    const char *from = party_request_header(req, "X-Partyd-From-Room");
    const char *path = party_request_path(req);

    svc_rec.requests++;
    svc_rec.last_at = mono_ms();
    if (strstr(path, "/big") != NULL) {
        /* An answer over the caller's max_body_bytes (see new_harness_limited). */
        static char big[8192];
        memset(big, 'x', sizeof(big));
        party_response_set_body(res, big, sizeof(big));
        return;
    }
    if (strstr(path, "/many-headers") != NULL) {
        /* An answer with more fields than a request head may have. */
        char name[32];
        int i;
        for (i = 0; i < 200; i++) {
            snprintf(name, sizeof(name), "X-Field-%d", i);
            party_response_add_header(res, name, "v");
        }
        party_response_text(res, 200, "many\n");
        return;
    }
    if (strstr(path, "/write") != NULL)
        party_kv_put(room, "written", "1", 1);
    snprintf(json, sizeof(json),
             "{\"room\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"q\":\"%s\",\"hdr\":\"%s\","
             "\"from\":\"%s\",\"body\":\"%.*s\"}",
             party_room_name(room), party_request_method(req), path, q ? q : "", hdr ? hdr : "",
             from ? from : "", (int)len, body ? (const char *)body : "");
    party_response_json(res, 201, json);
    party_response_add_header(res, "Set-Cookie", "a=1");
    party_response_add_header(res, "Set-Cookie", "b=2");
}

static const party_def svc_def = {
    .name = "svc",
    .on_start = svc_start,
    .on_request = svc_request,
};

/* ---- the caller ---- */

#define MAX_SEEN 8

typedef struct seen {
    char id[PARTY_ID_MAX];
    char tag[64];
    int status;
    char body[1024];
    char content_type[64];
    char cookies[64];
    char room_name[64];
} seen;

static struct {
    seen responses[MAX_SEEN];
    int n;
    int starts;
    int fetch_result;  /* of the last party_room_fetch */
    int fetches_taken; /* of a ?count= ask */
    char last_id[PARTY_ID_MAX];
    char caller_id[PARTY_ID_MAX];
} rec;

static int fail_commits;

static int failing_commit_hook(void *arg) {
    (void)arg;
    if (fail_commits > 0) {
        fail_commits--;
        return 1;
    }
    return 0;
}

static int caller_start(party_room *room, const char *props) {
    (void)props;
    rec.starts++;
    sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
    return 0;
}

static int collect_cookie(const char *name, const char *value, void *arg) {
    char *out = arg;
    if (strcmp(name, "Set-Cookie") == 0) {
        size_t n = strlen(out);
        snprintf(out + n, 64 - n, "%s%s", n > 0 ? "," : "", value);
    }
    return 0;
}

static void caller_response(party_room *room, const char *id, const char *tag,
                            const party_response *res) {
    seen *s;
    size_t len = 0;
    const char *body = party_response_get_body(res, &len);
    const char *ctype = party_response_get_header(res, "content-type");
    char value[1100];

    if (rec.n == MAX_SEEN)
        return;
    s = &rec.responses[rec.n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    s->status = party_response_get_status(res);
    snprintf(s->body, sizeof(s->body), "%s", body != NULL ? body : "");
    snprintf(s->content_type, sizeof(s->content_type), "%s", ctype != NULL ? ctype : "");
    party_response_foreach_header(res, collect_cookie, s->cookies);
    snprintf(s->room_name, sizeof(s->room_name), "%s", party_room_name(room));
    /* What an answer tells the room is kept like anything else it writes. */
    snprintf(value, sizeof(value), "%d %s", s->status, s->body);
    party_kv_put(room, tag, value, strlen(value));
}

/* GET /parties/caller/<name>?to=<party>/<room>&path=..&tag=..&write=1&alarm=1
 * makes one request; ?show=<tag> answers what on_response stored. */
static void caller_request(party_room *room, const party_request *req, party_response *res) {
    const char *show = party_request_query(req, "show");
    const char *to = party_request_query(req, "to");
    const char *path = party_request_query(req, "path");
    const char *tag = party_request_query(req, "tag");
    const char *method = party_request_query(req, "method");
    static const char *const headers[] = {"X-Test", "yes", NULL};
    /* ?roomid: a header that would route by id, past the name. */
    static const char *const by_id[] = {
        "X-Partyd-Room-Id", "0000000000000000000000000000000000000000000000000000000000000000",
        NULL};
    char party[64] = "", target[256] = "";
    const char *slash;

    snprintf(rec.caller_id, sizeof(rec.caller_id), "%s", party_room_id(room));
    if (show != NULL) {
        void *val = NULL;
        if (party_kv_get(room, show, &val, NULL) == 0) {
            party_response_text(res, 200, val);
            free(val);
        } else {
            party_response_text(res, 404, "none");
        }
        return;
    }
    if (party_request_query(req, "alarm") != NULL) {
        party_alarm_set(room, PARTY_TEST_EPOCH_MS + 1000);
        return;
    }
    if (party_request_query(req, "write") != NULL)
        party_kv_put(room, "before", "1", 1);
    slash = to != NULL ? strchr(to, '/') : NULL;
    if (slash != NULL) {
        snprintf(party, sizeof(party), "%.*s", (int)(slash - to), to);
        snprintf(target, sizeof(target), "%s", slash + 1);
    }
    if (party_request_query(req, "count") != NULL) {
        /* ?count=N: N requests in this one event; how many were taken. */
        int n = atoi(party_request_query(req, "count")), k;
        rec.fetches_taken = 0;
        for (k = 0; k < n; k++) {
            rec.fetch_result =
                party_room_fetch(room, party, target, NULL, NULL, NULL, NULL, 0, "many", NULL);
            if (rec.fetch_result != 0)
                break;
            rec.fetches_taken++;
        }
        party_response_set_status(res, 202);
        return;
    }
    rec.fetch_result =
        party_room_fetch(room, party, target, method, path,
                         party_request_query(req, "roomid") != NULL ? by_id : headers,
                         method != NULL ? "hello" : NULL, method != NULL ? 5 : 0, tag, rec.last_id);
    party_response_set_status(res, rec.fetch_result == 0 ? 202 : 400);
}

static int caller_alarm(party_room *room) {
    return party_room_fetch(room, "svc", "alarm-target", NULL, "/from-alarm", NULL, NULL, 0,
                            "alarm", rec.last_id);
}

static const party_def caller_def = {
    .name = "caller",
    .on_start = caller_start,
    .on_request = caller_request,
    .on_alarm = caller_alarm,
    .on_response = caller_response,
};

/* ---- helpers ---- */

static party_test *new_harness_with(double fetch_timeout, size_t max_body_bytes) {
    party_config cfg;
    party_test *t;

    party_config_init(&cfg);
    if (fetch_timeout > 0)
        cfg.fetch_timeout = fetch_timeout;
    if (max_body_bytes > 0)
        cfg.max_body_bytes = max_body_bytes;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &svc_def), 0);
    assert_int_equal(party_test_add(t, &caller_def), 0);
    memset(&rec, 0, sizeof(rec));
    memset(&svc_rec, 0, sizeof(svc_rec));
    fail_commits = 0;
    return t;
}

static party_test *new_harness(double fetch_timeout) {
    return new_harness_with(fetch_timeout, 0);
}

/* Asks the room caller/<name> to make a request; returns the status of
 * that ask (202 when party_room_fetch returned 0). */
static int ask(party_test *t, const char *name, const char *query) {
    party_test_response res;
    char target[512];
    int status;

    snprintf(target, sizeof(target), "/parties/caller/%s?%s", name, query);
    assert_int_equal(party_test_request(t, "GET", target, NULL, NULL, 0, &res), 0);
    status = res.status;
    party_test_response_free(&res);
    return status;
}

/* ---- tests ---- */

static void test_answer_arrives_as_event_with_name_query_header_and_body(void **state) {
    party_test *t = new_harness(0);
    seen *s;
    (void)state;

    assert_int_equal(
        ask(t, "alice", "to=svc/r%C3%B6om%201&method=POST&path=/items%3Fq%3Da%2520b&tag=first"),
        202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    s = &rec.responses[0];
    assert_string_equal(s->id, rec.last_id);
    assert_int_equal(strlen(s->id), 64);
    assert_string_equal(s->tag, "first");
    assert_int_equal(s->status, 201);
    assert_string_equal(s->content_type, "application/json");
    assert_string_equal(s->cookies, "a=1,b=2");
    assert_string_equal(s->room_name, "alice");
    /* The target knows its (decoded) name, the method, path, decoded query,
     * the caller's header and body, and which room asked. */
    {
        char expect[1024];
        snprintf(expect, sizeof(expect),
                 "{\"room\":\"r\xc3\xb6om 1\",\"method\":\"POST\","
                 "\"path\":\"/parties/svc/r%%C3%%B6om%%201/items\",\"q\":\"a b\",\"hdr\":\"yes\","
                 "\"from\":\"%s\",\"body\":\"hello\"}",
                 rec.caller_id);
        assert_string_equal(s->body, expect);
    }
    party_test_free(t);
}

static void test_unknown_party_is_answered_404(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=nope/x&tag=u"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 404);
    assert_string_equal(rec.responses[0].body, "unknown party\n");
    assert_string_equal(rec.responses[0].tag, "u");
    party_test_free(t);
}

static void test_failed_on_start_in_target_is_answered_500(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=svc/fail-start&tag=f"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 500);
    assert_non_null(strstr(rec.responses[0].body, "on_start failed"));
    party_test_free(t);
}

static void test_answer_over_max_body_bytes_is_answered_502(void **state) {
    party_test *t = new_harness_with(0, 4096);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=svc/big&path=/big&tag=b"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(svc_rec.requests, 1);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 502);
    assert_string_equal(rec.responses[0].body, "the answer is larger than max_body_bytes\n");
    assert_string_equal(rec.responses[0].tag, "b");
    party_test_free(t);
}

static void test_answer_head_over_the_request_limits_is_answered_502_naming_them(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=svc/h&path=/many-headers&tag=h"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(svc_rec.requests, 1);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 502);
    assert_string_equal(rec.responses[0].body, "malformed or incomplete answer: response has more "
                                               "header fields than max_headers\n");
    party_test_free(t);
}

static void test_no_answer_in_time_is_answered_504(void **state) {
    party_test *t = new_harness(0.2);
    (void)state;

    /* The target's answer waits behind its commit, which takes 1 s. */
    party_test_set_commit_delay(t, 1000);
    assert_int_equal(ask(t, "alice", "to=svc/slow&path=/write&tag=slow"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 504);
    assert_non_null(strstr(rec.responses[0].body, "fetch_timeout"));
    assert_int_equal(svc_rec.requests, 1);
    party_test_free(t);
}

static void test_request_after_a_write_leaves_after_the_commit(void **state) {
    party_test *t = new_harness(0);
    uint64_t asked;
    (void)state;

    party_test_set_commit_delay(t, 300);
    asked = mono_ms();
    assert_int_equal(ask(t, "alice", "to=svc/gated&write=1&tag=g"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(svc_rec.requests, 1);
    assert_true(svc_rec.last_at >= asked + 300);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 201);
    party_test_free(t);
}

static void test_request_whose_write_fails_to_commit_is_dropped(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    /* The room starts (and its start commits) first. */
    assert_int_equal(ask(t, "alice", "show=x"), 404);
    fail_commits = 1;
    ask(t, "alice", "to=svc/never&write=1&tag=d");
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(svc_rec.requests, 0);
    assert_int_equal(rec.n, 0);
    party_test_free(t);
}

static void test_cold_room_asks_from_on_alarm_after_restart(void **state) {
    party_test *t = new_harness(0);
    party_test_response res;
    (void)state;

    assert_int_equal(ask(t, "sleeper", "alarm=1"), 200);
    assert_int_equal(party_test_restart(t), 0);
    assert_false(party_test_in_memory(t, "caller", "sleeper"));
    rec.starts = 0;
    assert_int_equal(party_test_advance(t, 2000), 0);
    assert_int_equal(rec.starts, 1);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.responses[0].tag, "alarm");
    assert_int_equal(rec.responses[0].status, 201);
    assert_string_equal(rec.responses[0].room_name, "sleeper");
    assert_non_null(strstr(rec.responses[0].body, "\"room\":\"alarm-target\""));
    assert_non_null(
        strstr(rec.responses[0].body, "\"path\":\"/parties/svc/alarm-target/from-alarm\""));
    /* on_response's write was committed like any event's. */
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(
        party_test_request(t, "GET", "/parties/caller/sleeper?show=alarm", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "201 {\"room\":\"alarm-target\""));
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_caller_evicted_while_waiting_is_brought_back(void **state) {
    party_test *t = new_harness(0);
    char id[PARTY_ID_MAX];
    party_room *room;
    (void)state;

    /* The answer is held 300 ms behind the target's commit; meanwhile the
     * caller, which did not write, leaves memory. */
    party_test_set_commit_delay(t, 300);
    assert_int_equal(ask(t, "alice", "to=svc/slow&path=/write&tag=late"), 202);
    party_room_id_from_name("caller", "alice", id);
    room = party__room_find(party__runtime_rooms(party_test_runtime(t)), id);
    assert_non_null(room);
    assert_int_equal(party__room_evict(room), 0);
    assert_int_equal(rec.starts, 1);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 201);
    assert_string_equal(rec.responses[0].room_name, "alice");
    assert_int_equal(rec.starts, 2); /* on_start ran again before on_response */
    party_test_free(t);
}

static void test_room_can_ask_itself(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=caller/alice&tag=self"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    /* caller's on_request answered the inner request with 400: no "to". */
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 400);
    party_test_free(t);
}

static void test_bad_arguments_are_refused(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "alice", "to=svc/x&method=GE%20T"), 400);
    assert_int_equal(rec.fetch_result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "to=svc/x&path=nope"), 400);
    assert_int_equal(rec.fetch_result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "to=svc/x&path=/a%20b"), 400);
    assert_int_equal(rec.fetch_result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "to=svc/"), 400); /* empty room name */
    assert_int_equal(rec.fetch_result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "to=svc/x&roomid=1"), 400); /* a header the runtime owns */
    assert_int_equal(rec.fetch_result, PARTY_EINVAL);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 0);
    assert_int_equal(svc_rec.requests, 0);
    party_test_free(t);
}

static void test_one_room_cannot_take_every_request_slot(void **state) {
    party_test *t = new_harness(0);
    (void)state;

    assert_int_equal(ask(t, "greedy", "to=svc/x&count=300"), 202);
    assert_int_equal(rec.fetches_taken, PARTY_MAX_ROOM_FETCHES);
    assert_int_equal(rec.fetch_result, PARTY_ELIMIT);
    /* Another room still may ask. */
    assert_int_equal(ask(t, "modest", "to=svc/y&tag=m"), 202);
    assert_int_equal(rec.fetch_result, 0);
    assert_int_equal(party_test_run_until_idle(t), 0);
    party_test_free(t);
}

static void test_network_client_cannot_claim_to_be_a_room(void **state) {
    party_test *t = new_harness(0);
    party_test_response res;
    (void)state;

    assert_int_equal(party_test_request(t, "GET", "/parties/svc/x", "X-Partyd-From-Room: 0000\r\n",
                                        NULL, 0, &res),
                     0);
    assert_int_equal(res.status, 400);
    party_test_response_free(&res);
    assert_int_equal(svc_rec.requests, 0);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_arrives_as_event_with_name_query_header_and_body),
        cmocka_unit_test(test_unknown_party_is_answered_404),
        cmocka_unit_test(test_failed_on_start_in_target_is_answered_500),
        cmocka_unit_test(test_answer_over_max_body_bytes_is_answered_502),
        cmocka_unit_test(test_answer_head_over_the_request_limits_is_answered_502_naming_them),
        cmocka_unit_test(test_no_answer_in_time_is_answered_504),
        cmocka_unit_test(test_request_after_a_write_leaves_after_the_commit),
        cmocka_unit_test(test_request_whose_write_fails_to_commit_is_dropped),
        cmocka_unit_test(test_cold_room_asks_from_on_alarm_after_restart),
        cmocka_unit_test(test_caller_evicted_while_waiting_is_brought_back),
        cmocka_unit_test(test_room_can_ask_itself),
        cmocka_unit_test(test_bad_arguments_are_refused),
        cmocka_unit_test(test_one_room_cannot_take_every_request_slot),
        cmocka_unit_test(test_network_client_cannot_claim_to_be_a_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
