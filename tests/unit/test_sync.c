/* Synced state and RPC (src/rooms/sync.c, src/rooms/rpc.c) through the
 * test harness, in the Agents client's wire frames: the identity and
 * state sent on connect; party_state_set / party_state_get, stored with
 * the room and sent to every connection; client proposals validated,
 * refused with cf_agent_state_error or sent to the others; RPC results,
 * errors, unknown methods, malformed calls, streams, calls answered in a
 * later event (keeping the room awake) or after their connection left;
 * readonly connections; and the state after hibernation, eviction and a
 * restart. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"

/* ---- the board party ---- */

static struct {
    int changes;
    char change_from[64]; /* "" when the room set it */
    char change_json[256];
    party_call *later; /* a call left open by "later" */
    int later_result;  /* what answering it returned */
} rec;

/* Commits to fail from now on (a commit hook on the room's own database,
 * read on the commit's worker thread only after the test set it). */
static int fail_commits;

static int failing_commit_hook(void *arg) {
    (void)arg;
    if (fail_commits > 0) {
        fail_commits--;
        return 1; /* the COMMIT becomes a ROLLBACK */
    }
    return 0;
}

/* Text messages: "set:<json>" sets the state (answered "set:<rc>"),
 * "failset:<json>" the same in a batch whose commit fails, "hook" puts
 * the failing hook on the room's database (answered "hooked"),
 * "get" answers "get:<rc>:<json>", "finish" answers the call "later" left
 * open ("finish:<rc>"); anything else comes back as "msg:<text>". */
static void board_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    const char *text = data;
    char out[512];
    (void)binary;
    if (len == 4 && memcmp(text, "hook", 4) == 0) {
        /* fail_commits, set by the test once this is answered, says
         * which commit fails. */
        sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
        snprintf(out, sizeof(out), "hooked");
    } else if (len > 8 && memcmp(text, "failset:", 8) == 0) {
        sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
        fail_commits = 1;
        snprintf(out, sizeof(out), "set:%d", party_state_set(room, text + 8, len - 8));
    } else if (len > 4 && memcmp(text, "set:", 4) == 0) {
        snprintf(out, sizeof(out), "set:%d", party_state_set(room, text + 4, len - 4));
    } else if (len == 3 && memcmp(text, "get", 3) == 0) {
        const char *json = "";
        size_t n = 0;
        int r = party_state_get(room, &json, &n);
        snprintf(out, sizeof(out), "get:%d:%.*s", r, (int)n, json);
    } else if (len == 6 && memcmp(text, "finish", 6) == 0) {
        rec.later_result = party_call_result(rec.later, "\"finished\"");
        rec.later = NULL;
        snprintf(out, sizeof(out), "finish:%d", rec.later_result);
    } else {
        snprintf(out, sizeof(out), "msg:%.*s", (int)len, text);
    }
    party_conn_send_text(conn, out);
}

static int board_validate(party_room *room, party_conn *from, const char *json, size_t len,
                          char *reason, size_t reason_len) {
    (void)room;
    (void)from;
    if (strstr(json, "\"bad\"") == NULL || len == 0)
        return 0;
    snprintf(reason, reason_len, "bad state");
    return -1;
}

static void board_change(party_room *room, party_conn *from, const char *json, size_t len) {
    (void)room;
    rec.changes++;
    snprintf(rec.change_from, sizeof(rec.change_from), "%s", from ? party_conn_id(from) : "");
    snprintf(rec.change_json, sizeof(rec.change_json), "%.*s", (int)len, json);
}

static void board_connect(party_room *room, party_conn *conn, const party_request *req) {
    (void)room;
    if (party_request_query(req, "ro") != NULL)
        party_conn_set_readonly(conn, 1);
}

static void rpc_echo(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)len;
    party_call_result(call, args);
}

static void rpc_fail(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)args;
    (void)len;
    party_call_error(call, "it failed \"on purpose\"");
}

static void rpc_stream(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)args;
    (void)len;
    assert_int_equal(party_call_chunk(call, "1"), 0);
    assert_int_equal(party_call_chunk(call, "{\"two\":2}"), 0);
    assert_int_equal(party_call_chunk(call, "not json"), PARTY_EINVAL);
    assert_int_equal(party_call_chunk(call, "\"three\""), 0);
    assert_int_equal(party_call_result(call, "3"), 0);
}

static void rpc_later(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)args;
    (void)len;
    rec.later = call;
}

static void rpc_nothing(party_room *room, party_call *call, const char *args, size_t len) {
    (void)room;
    (void)args;
    (void)len;
    assert_int_equal(party_call_result(call, "{oops"), PARTY_EINVAL); /* still open */
    party_call_result(call, NULL);
}

static void rpc_write(party_room *room, party_call *call, const char *args, size_t len) {
    (void)args;
    (void)len;
    party_call_result(call,
                      party_state_set(room, "{\"written\":true}", 16) == 0 ? "true" : "false");
}

static const party_rpc_method board_methods[] = {
    {"echo", rpc_echo, 0},   {"fail", rpc_fail, 0},       {"stream", rpc_stream, 0},
    {"later", rpc_later, 0}, {"nothing", rpc_nothing, 0}, {"write", rpc_write, PARTY_RPC_WRITES},
    {NULL, NULL, 0},
};

static const party_def board = {
    PARTY_DEF_INIT,
    .name = "board",
    .hibernate = 1,
    .on_connect = board_connect,
    .on_message = board_message,
    .validate_state = board_validate,
    .on_state_change = board_change,
    .rpc_methods = board_methods,
};

/* A party that does not speak the protocol: its frames are its own. */
static const party_def plain = {
    PARTY_DEF_INIT,
    .name = "plain",
    .on_message = board_message,
};

static int setup(void **state) {
    party_test *t = party_test_new();
    memset(&rec, 0, sizeof(rec));
    fail_commits = 0;
    if (t == NULL || party_test_add(t, &board) != 0 || party_test_add(t, &plain) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* ---- helpers ---- */

static party_test_conn *join(party_test *t, const char *target) {
    int status = 0;
    party_test_conn *c = party_test_connect(t, target, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    return c;
}

/* The next message must be expected. */
static void expect(party_test_conn *c, const char *expected) {
    char *text = NULL;
    int r = party_test_recv_text(c, &text);
    if (r != 0)
        fail_msg("waiting for %s: %s", expected, party_test_strerror(r));
    assert_string_equal(text, expected);
    free(text);
}

static void send_text(party_test_conn *c, const char *text) {
    assert_int_equal(party_test_send_text(c, text), 0);
}

#define IDENTITY(room) "{\"type\":\"cf_agent_identity\",\"name\":\"" room "\",\"agent\":\"board\"}"
#define IDENTITY_STATE(room)                                                                       \
    "{\"type\":\"cf_agent_identity\",\"name\":\"" room                                             \
    "\",\"agent\":\"board\",\"stateFollows\":true}"

/* ---- state ---- */

static void test_identity_on_connect_then_state_once_one_exists(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r1?_pk=a"), *b;

    expect(a, IDENTITY("r1")); /* no state yet: nothing follows */
    send_text(a, "get");
    expect(a, "get:-5:");
    send_text(a, "set:{\"n\":1}");
    expect(a, "{\"type\":\"cf_agent_state\",\"state\":{\"n\":1}}");
    expect(a, "set:0");
    b = join(t, "/parties/board/r1?_pk=b");
    expect(b, IDENTITY_STATE("r1"));
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":{\"n\":1}}");
    assert_int_equal(rec.changes, 1);
    assert_string_equal(rec.change_from, "");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_state_set_by_room_goes_to_every_connection(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r2?_pk=a"),
                    *b = join(t, "/parties/board/r2?_pk=b");

    expect(a, IDENTITY("r2"));
    expect(b, IDENTITY("r2"));
    send_text(a, "set:[1, 2, \"three\"]");
    expect(a, "{\"type\":\"cf_agent_state\",\"state\":[1, 2, \"three\"]}");
    expect(a, "set:0");
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":[1, 2, \"three\"]}");
    send_text(b, "get");
    expect(b, "get:0:[1, 2, \"three\"]");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_state_set_refuses_bad_json_and_oversize(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r3?_pk=a");
    size_t big = PARTY_MAX_STATE + 16, i;
    char *msg = malloc(big + 8);

    assert_non_null(msg);
    expect(a, IDENTITY("r3"));
    send_text(a, "set:{\"n\":");
    expect(a, "set:-1"); /* PARTY_EINVAL */
    send_text(a, "set:{} trailing");
    expect(a, "set:-1");
    /* A string of PARTY_MAX_STATE bytes and more: valid JSON, too big. */
    memcpy(msg, "set:\"", 5);
    for (i = 5; i < big; i++)
        msg[i] = 'x';
    msg[big] = '"';
    msg[big + 1] = '\0';
    send_text(a, msg);
    expect(a, "set:-4"); /* PARTY_ETOOBIG */
    free(msg);
    send_text(a, "get");
    expect(a, "get:-5:"); /* nothing was stored */
    assert_int_equal(rec.changes, 0);
    party_test_conn_free(a);
}

/* The state's frames pass the output gate: a commit that fails drops them
 * (their connections close with 1011), and the room forgets the state it
 * held in memory. */
static void test_state_of_a_failed_commit_is_never_sent_nor_kept(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/lost?_pk=a"),
                    *b = join(t, "/parties/board/lost?_pk=b");
    char *text = NULL;
    int code = 0;

    expect(a, IDENTITY("lost"));
    expect(b, IDENTITY("lost"));
    send_text(a, "failset:{\"lost\":true}");
    assert_int_equal(party_test_recv_text(b, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(b, &code, NULL), 0);
    assert_int_equal(code, 1011);
    assert_int_equal(party_test_recv_text(a, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_commit_failures(t), 1);
    party_test_conn_free(a);
    party_test_conn_free(b);
    a = join(t, "/parties/board/lost?_pk=c");
    expect(a, IDENTITY("lost")); /* no state follows */
    send_text(a, "get");
    expect(a, "get:-5:");
    party_test_conn_free(a);
}

/* A client's state whose commit fails: it is not kept, and the client
 * that proposed it, told nothing when a state is kept, is closed with
 * 1011 like the one whose broadcast was dropped. */
static void test_client_state_of_a_failed_commit_closes_its_client(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/lost2?_pk=a"),
                    *b = join(t, "/parties/board/lost2?_pk=b");
    char *text = NULL;
    int code = 0;

    expect(a, IDENTITY("lost2"));
    expect(b, IDENTITY("lost2"));
    send_text(a, "hook");
    expect(a, "hooked");
    assert_int_equal(party_test_commit_failures(t), 0);
    fail_commits = 1; /* the commit of b's state */
    send_text(b, "{\"type\":\"cf_agent_state\",\"state\":{\"lost\":true}}");
    assert_int_equal(party_test_recv_text(b, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_close_info(b, &code, NULL), 0);
    assert_int_equal(code, 1011);
    assert_int_equal(party_test_recv_text(a, &text), PARTY_ECLOSED);
    assert_null(text);
    assert_int_equal(party_test_commit_failures(t), 1);
    party_test_conn_free(a);
    party_test_conn_free(b);
    a = join(t, "/parties/board/lost2?_pk=c");
    expect(a, IDENTITY("lost2")); /* no state follows */
    send_text(a, "get");
    expect(a, "get:-5:");
    party_test_conn_free(a);
}

static void test_client_state_goes_to_the_others_not_back(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r4?_pk=a"),
                    *b = join(t, "/parties/board/r4?_pk=b");

    expect(a, IDENTITY("r4"));
    expect(b, IDENTITY("r4"));
    send_text(a, "{\"type\":\"cf_agent_state\",\"state\":{\"from\":\"a\"}}");
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":{\"from\":\"a\"}}");
    /* a's next message is the answer to its next message: no echo of the
     * state came before it. */
    send_text(a, "get");
    expect(a, "get:0:{\"from\":\"a\"}");
    assert_int_equal(rec.changes, 1);
    assert_string_equal(rec.change_from, "a");
    assert_string_equal(rec.change_json, "{\"from\":\"a\"}");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_rejected_state_gets_error_and_changes_nothing(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r5?_pk=a"),
                    *b = join(t, "/parties/board/r5?_pk=b");

    expect(a, IDENTITY("r5"));
    expect(b, IDENTITY("r5"));
    send_text(a, "{\"type\":\"cf_agent_state\",\"state\":{\"bad\":1}}");
    expect(a, "{\"type\":\"cf_agent_state_error\",\"error\":\"bad state\"}");
    send_text(b, "get");
    expect(b, "get:-5:"); /* b saw no state frame first, and nothing is stored */
    assert_int_equal(rec.changes, 0);
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_client_state_over_1_mib_is_refused(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/huge?_pk=a");
    static const char head[] = "{\"type\":\"cf_agent_state\",\"state\":\"";
    size_t n = sizeof(head) - 1 + PARTY_MAX_STATE + 3;
    char *msg = malloc(n + 1);

    assert_non_null(msg);
    expect(a, IDENTITY("huge"));
    memcpy(msg, head, sizeof(head) - 1);
    memset(msg + sizeof(head) - 1, 'x', PARTY_MAX_STATE); /* with its quotes: over 1 MiB */
    memcpy(msg + n - 3, "\"}", 3);
    assert_int_equal(party_test_send(a, msg, n - 1, 0), 0);
    free(msg);
    expect(a, "{\"type\":\"cf_agent_state_error\",\"error\":\"State update rejected: larger than "
              "1 MiB\"}");
    send_text(a, "get");
    expect(a, "get:-5:");
    assert_int_equal(rec.changes, 0);
    party_test_conn_free(a);
}

static void test_other_frames_reach_on_message(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/r6?_pk=a"), *p;

    expect(a, IDENTITY("r6"));
    send_text(a, "{\"type\":\"chat\",\"text\":\"hi\"}");
    expect(a, "msg:{\"type\":\"chat\",\"text\":\"hi\"}");
    send_text(a, "{\"type\":\"cf_agent_state\"}"); /* no state: not a state frame */
    expect(a, "msg:{\"type\":\"cf_agent_state\"}");
    send_text(a, "{not json");
    expect(a, "msg:{not json");
    /* A party without sync gets every frame, and sends no identity. */
    p = join(t, "/parties/plain/r6?_pk=p");
    send_text(p, "{\"type\":\"cf_agent_state\",\"state\":1}");
    expect(p, "msg:{\"type\":\"cf_agent_state\",\"state\":1}");
    send_text(p, "{\"type\":\"rpc\",\"id\":\"1\",\"method\":\"echo\",\"args\":[]}");
    expect(p, "msg:{\"type\":\"rpc\",\"id\":\"1\",\"method\":\"echo\",\"args\":[]}");
    party_test_conn_free(a);
    party_test_conn_free(p);
}

static void test_state_survives_hibernation_eviction_and_restart(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/keep?_pk=a"), *b;

    expect(a, IDENTITY("keep"));
    send_text(a, "set:{\"kept\":true}");
    expect(a, "{\"type\":\"cf_agent_state\",\"state\":{\"kept\":true}}");
    expect(a, "set:0");
    assert_int_equal(party_test_hibernate(t, "board", "keep"), 0);
    send_text(a, "get");
    expect(a, "get:0:{\"kept\":true}");
    assert_int_equal(party_test_close(a, 1000, NULL), 0);
    assert_int_equal(party_test_evict(t, "board", "keep"), 0);
    b = join(t, "/parties/board/keep?_pk=b");
    expect(b, IDENTITY_STATE("keep"));
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":{\"kept\":true}}");
    assert_int_equal(party_test_restart(t), 0);
    party_test_conn_free(b);
    b = join(t, "/parties/board/keep?_pk=b");
    expect(b, IDENTITY_STATE("keep"));
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":{\"kept\":true}}");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

/* ---- RPC ---- */

static void test_rpc_result_and_error(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/c1?_pk=a");

    expect(a, IDENTITY("c1"));
    send_text(a, "{\"type\":\"rpc\",\"id\":\"1\",\"method\":\"echo\",\"args\":[1,\"two\",{}]}");
    expect(
        a,
        "{\"type\":\"rpc\",\"id\":\"1\",\"success\":true,\"done\":true,\"result\":[1,\"two\",{}]}");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"q\\\"2\",\"method\":\"fail\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"q\\\"2\",\"success\":false,"
              "\"error\":\"it failed \\\"on purpose\\\"\"}");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"3\",\"method\":\"nothing\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"3\",\"success\":true,\"done\":true}");
    party_test_conn_free(a);
}

static void test_rpc_unknown_and_malformed_calls_get_errors(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/c2?_pk=a");

    expect(a, IDENTITY("c2"));
    send_text(a, "{\"type\":\"rpc\",\"id\":\"1\",\"method\":\"nope\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"1\",\"success\":false,"
              "\"error\":\"Method nope does not exist\"}");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"2\",\"method\":\"echo\"}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"2\",\"success\":false,\"error\":\"malformed RPC call: it "
              "needs a string id, a string method and an array args\"}");
    send_text(a, "{\"type\":\"rpc\",\"id\":7,\"method\":\"echo\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":null,\"success\":false,\"error\":\"malformed RPC call: it "
              "needs a string id, a string method and an array args\"}");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"4\",\"method\":\"toString\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"4\",\"success\":false,"
              "\"error\":\"Method toString does not exist\"}");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"5\",\"method\":\"echo\",\"args\":[5]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"5\",\"success\":true,\"done\":true,\"result\":[5]}");
    party_test_conn_free(a);
}

static void test_rpc_stream_sends_chunks_then_done(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/c3?_pk=a");

    expect(a, IDENTITY("c3"));
    send_text(a, "{\"type\":\"rpc\",\"id\":\"s\",\"method\":\"stream\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"s\",\"success\":true,\"done\":false,\"result\":1}");
    expect(
        a,
        "{\"type\":\"rpc\",\"id\":\"s\",\"success\":true,\"done\":false,\"result\":{\"two\":2}}");
    expect(a,
           "{\"type\":\"rpc\",\"id\":\"s\",\"success\":true,\"done\":false,\"result\":\"three\"}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"s\",\"success\":true,\"done\":true,\"result\":3}");
    party_test_conn_free(a);
}

static void test_open_call_keeps_room_awake_until_answered(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/c4?_pk=a");

    expect(a, IDENTITY("c4"));
    send_text(a, "{\"type\":\"rpc\",\"id\":\"L\",\"method\":\"later\",\"args\":[]}");
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_non_null(rec.later);
    /* Open: the room neither hibernates when asked nor by itself. */
    assert_int_equal(party_test_hibernate(t, "board", "c4"), PARTY_ESTATE);
    assert_int_equal(party_test_advance(t, 60000), 0);
    assert_int_equal(party_test_loaded(t, "board", "c4"), 1);
    send_text(a, "finish");
    expect(
        a,
        "{\"type\":\"rpc\",\"id\":\"L\",\"success\":true,\"done\":true,\"result\":\"finished\"}");
    expect(a, "finish:0");
    assert_int_equal(party_test_hibernate(t, "board", "c4"), 0);
    party_test_conn_free(a);
}

static void test_answer_after_the_caller_left_is_dropped(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/c5?_pk=a"),
                    *b = join(t, "/parties/board/c5?_pk=b");

    expect(a, IDENTITY("c5"));
    expect(b, IDENTITY("c5"));
    send_text(a, "{\"type\":\"rpc\",\"id\":\"L\",\"method\":\"later\",\"args\":[]}");
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_non_null(rec.later);
    assert_int_equal(party_test_drop(a), 0);
    send_text(b, "finish");
    expect(b, "finish:-3"); /* PARTY_ECLOSED: dropped, and the call ended */
    assert_int_equal(party_test_close(b, 1000, NULL), 0);
    assert_int_equal(party_test_evict(t, "board", "c5"), 0); /* nothing keeps it */
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_open_calls_are_bounded_per_room(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/parties/board/many?_pk=a");
    char frame[128];
    int i;

    expect(a, IDENTITY("many"));
    for (i = 0; i < 4096; i++) {
        snprintf(frame, sizeof(frame),
                 "{\"type\":\"rpc\",\"id\":\"%d\",\"method\":\"later\",\"args\":[]}", i);
        send_text(a, frame);
    }
    send_text(a, "{\"type\":\"rpc\",\"id\":\"over\",\"method\":\"echo\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"over\",\"success\":false,"
              "\"error\":\"too many calls in flight in this room\"}");
    /* One answered, one more fits. */
    send_text(a, "finish");
    expect(a, "{\"type\":\"rpc\",\"id\":\"4095\",\"success\":true,\"done\":true,"
              "\"result\":\"finished\"}");
    expect(a, "finish:0");
    send_text(a, "{\"type\":\"rpc\",\"id\":\"fits\",\"method\":\"echo\",\"args\":[]}");
    expect(a, "{\"type\":\"rpc\",\"id\":\"fits\",\"success\":true,\"done\":true,\"result\":[]}");
    party_test_conn_free(a);
}

/* ---- readonly ---- */

static void test_readonly_connection_refused_state_and_writes(void **state) {
    party_test *t = *state;
    party_test_conn *ro = join(t, "/parties/board/ro?_pk=ro&ro=1");
    party_test_conn *rw = join(t, "/parties/board/ro?_pk=rw");
    int pass;

    expect(ro, IDENTITY("ro"));
    expect(rw, IDENTITY("ro"));
    for (pass = 0; pass < 2; pass++) {
        send_text(ro, "{\"type\":\"cf_agent_state\",\"state\":{\"n\":1}}");
        expect(ro, "{\"type\":\"cf_agent_state_error\",\"error\":\"Connection is readonly\"}");
        send_text(ro, "{\"type\":\"rpc\",\"id\":\"w\",\"method\":\"write\",\"args\":[]}");
        expect(ro, "{\"type\":\"rpc\",\"id\":\"w\",\"success\":false,"
                   "\"error\":\"Connection is readonly\"}");
        send_text(ro, "{\"type\":\"rpc\",\"id\":\"e\",\"method\":\"echo\",\"args\":[]}");
        expect(ro, "{\"type\":\"rpc\",\"id\":\"e\",\"success\":true,\"done\":true,\"result\":[]}");
        /* The flag stays across hibernation. */
        if (pass == 0)
            assert_int_equal(party_test_hibernate(t, "board", "ro"), 0);
    }
    send_text(ro, "get");
    expect(ro, "get:-5:");
    send_text(rw, "{\"type\":\"rpc\",\"id\":\"w\",\"method\":\"write\",\"args\":[]}");
    expect(rw, "{\"type\":\"cf_agent_state\",\"state\":{\"written\":true}}");
    expect(rw, "{\"type\":\"rpc\",\"id\":\"w\",\"success\":true,\"done\":true,\"result\":true}");
    expect(ro, "{\"type\":\"cf_agent_state\",\"state\":{\"written\":true}}");
    party_test_conn_free(ro);
    party_test_conn_free(rw);
}

/* ---- the agents prefix ---- */

static void test_rooms_answer_at_the_agents_prefix(void **state) {
    party_test *t = *state;
    party_test_conn *a = join(t, "/agents/board/same?_pk=a"),
                    *b = join(t, "/parties/board/same?_pk=b");

    expect(a, IDENTITY("same"));
    expect(b, IDENTITY("same"));
    send_text(a, "{\"type\":\"cf_agent_state\",\"state\":2}");
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":2}"); /* one room at both prefixes */
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_agents_prefix_is_configurable_and_can_be_off(void **state) {
    party_config cfg;
    party_test *t;
    party_test_conn *c;
    int status = 0;
    (void)state;

    party_config_init(&cfg);
    cfg.log_level = PARTY_LOG_WARN;
    cfg.agents_prefix = "/ai/";
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &board), 0);
    c = join(t, "/ai/board/p?_pk=a");
    expect(c, IDENTITY("p"));
    party_test_conn_free(c);
    assert_null(party_test_connect(t, "/agents/board/p?_pk=b", &status));
    assert_int_equal(status, 404);
    party_test_free(t);

    cfg.agents_prefix = "";
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &board), 0);
    assert_null(party_test_connect(t, "/agents/board/p?_pk=b", &status));
    assert_int_equal(status, 404);
    c = join(t, "/parties/board/p?_pk=a");
    expect(c, IDENTITY("p"));
    party_test_conn_free(c);
    party_test_free(t);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(test_identity_on_connect_then_state_once_one_exists),
        TEST(test_state_set_by_room_goes_to_every_connection),
        TEST(test_state_set_refuses_bad_json_and_oversize),
        TEST(test_state_of_a_failed_commit_is_never_sent_nor_kept),
        TEST(test_client_state_of_a_failed_commit_closes_its_client),
        TEST(test_client_state_goes_to_the_others_not_back),
        TEST(test_rejected_state_gets_error_and_changes_nothing),
        TEST(test_client_state_over_1_mib_is_refused),
        TEST(test_other_frames_reach_on_message),
        TEST(test_state_survives_hibernation_eviction_and_restart),
        TEST(test_rpc_result_and_error),
        TEST(test_rpc_unknown_and_malformed_calls_get_errors),
        TEST(test_rpc_stream_sends_chunks_then_done),
        TEST(test_open_call_keeps_room_awake_until_answered),
        TEST(test_answer_after_the_caller_left_is_dropped),
        TEST(test_open_calls_are_bounded_per_room),
        TEST(test_readonly_connection_refused_state_and_writes),
        TEST(test_rooms_answer_at_the_agents_prefix),
        cmocka_unit_test(test_agents_prefix_is_configurable_and_can_be_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
