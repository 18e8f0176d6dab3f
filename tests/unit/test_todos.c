/* Tests of the built-in todos party (parties/todos.c) through party_test.h,
 * in the Agents client's frames: the empty list stored at the first start,
 * add / toggle / remove / count and the streamed export, the errors its
 * methods answer bad arguments with, the client states it refuses (and the
 * one it takes), readonly connections, and GET. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"
#include "parties.h"

static int setup(void **state) {
    party_test *t = party_test_new();
    if (t == NULL || party_test_add(t, party_builtin_todos()) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

static char *next_text(party_test_conn *c) {
    char *text = NULL;
    int r = party_test_recv_text(c, &text);
    if (r != 0)
        fail_msg("waiting for a message: %s", party_test_strerror(r));
    return text;
}

static void expect(party_test_conn *c, const char *want) {
    char *text = next_text(c);
    assert_string_equal(text, want);
    free(text);
}

/* Joins room and reads the identity and the state sent on connect. */
static party_test_conn *join(party_test *t, const char *room, const char *query,
                             const char *state) {
    char target[200], identity[200], frame[1024];
    int status = 0;
    party_test_conn *c;

    snprintf(target, sizeof(target), "/agents/todos/%s%s", room, query);
    c = party_test_connect(t, target, &status);
    assert_non_null(c);
    assert_int_equal(status, 101);
    snprintf(identity, sizeof(identity),
             "{\"type\":\"cf_agent_identity\",\"name\":\"%s\",\"agent\":\"todos\","
             "\"stateFollows\":true}",
             room);
    expect(c, identity);
    snprintf(frame, sizeof(frame), "{\"type\":\"cf_agent_state\",\"state\":%s}", state);
    expect(c, frame);
    return c;
}

/* Calls method with args (JSON array text) as id, and returns the answer
 * frame (the caller frees it), skipping state frames. */
static char *call(party_test_conn *c, const char *id, const char *method, const char *args) {
    char frame[512];
    snprintf(frame, sizeof(frame), "{\"type\":\"rpc\",\"id\":\"%s\",\"method\":\"%s\",\"args\":%s}",
             id, method, args);
    assert_int_equal(party_test_send_text(c, frame), 0);
    for (;;) {
        char *text = next_text(c);
        if (strncmp(text, "{\"type\":\"rpc\"", 13) == 0)
            return text;
        free(text);
    }
}

/* The result of a successful call, as JSON text (the caller frees it). */
static char *result_of(char *answer) {
    cJSON *doc = cJSON_Parse(answer);
    char *text;
    assert_non_null(doc);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(doc, "success")));
    text = cJSON_PrintUnformatted(cJSON_GetObjectItem(doc, "result"));
    cJSON_Delete(doc);
    free(answer);
    return text;
}

static void expect_error(char *answer, const char *id, const char *error) {
    char want[300];
    snprintf(want, sizeof(want),
             "{\"type\":\"rpc\",\"id\":\"%s\",\"success\":false,\"error\":\"%s\"}", id, error);
    assert_string_equal(answer, want);
    free(answer);
}

static void test_first_start_stores_an_empty_list(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "fresh", "", "{\"items\":[]}");
    party_test_response res;

    assert_int_equal(party_test_request(t, "GET", "/parties/todos/fresh", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"items\":[]}");
    party_test_response_free(&res);
    party_test_conn_free(c);
}

static void test_add_toggle_remove_count_and_export(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "list", "", "{\"items\":[]}");
    char *milk = result_of(call(c, "1", "add", "[\"milk\"]"));
    char *eggs = result_of(call(c, "2", "add", "[\"eggs\"]"));
    char args[64], want[256], *text;

    assert_int_equal(strlen(milk), 18); /* "16 hex digits" */
    snprintf(args, sizeof(args), "[%s]", eggs);
    text = result_of(call(c, "3", "toggle", args));
    assert_string_equal(text, "true");
    cJSON_free(text);
    text = result_of(call(c, "4", "count", "[]"));
    assert_string_equal(text, "2");
    cJSON_free(text);
    snprintf(args, sizeof(args), "[%s]", milk);
    text = result_of(call(c, "5", "remove", args));
    assert_string_equal(text, "true");
    cJSON_free(text);
    expect_error(call(c, "6", "remove", args), "6", "no item has this id");

    /* export: one chunk per item, then the count. */
    assert_int_equal(party_test_send_text(
                         c, "{\"type\":\"rpc\",\"id\":\"x\",\"method\":\"export\",\"args\":[]}"),
                     0);
    snprintf(want, sizeof(want),
             "{\"type\":\"rpc\",\"id\":\"x\",\"success\":true,\"done\":false,"
             "\"result\":{\"id\":%s,\"text\":\"eggs\",\"done\":true}}",
             eggs);
    expect(c, want);
    expect(c, "{\"type\":\"rpc\",\"id\":\"x\",\"success\":true,\"done\":true,\"result\":1}");
    cJSON_free(milk);
    cJSON_free(eggs);
    party_test_conn_free(c);
}

static void test_methods_refuse_bad_arguments(void **state) {
    party_test *t = *state;
    party_test_conn *c = join(t, "bad", "", "{\"items\":[]}");

    expect_error(call(c, "1", "add", "[]"), "1",
                 "add(text): text must be a string of at most 1000 bytes");
    expect_error(call(c, "2", "add", "[7]"), "2",
                 "add(text): text must be a string of at most 1000 bytes");
    expect_error(call(c, "3", "toggle", "[]"), "3", "the argument must be an item's id (a string)");
    expect_error(call(c, "4", "toggle", "[\"nope\"]"), "4", "no item has this id");
    expect_error(call(c, "5", "rename", "[]"), "5", "Method rename does not exist");
    party_test_conn_free(c);
}

static void test_client_states_not_of_the_lists_shape_are_refused(void **state) {
    static const char *const bad[][2] = {
        {"[]", "state must be {\\\"items\\\": [...]}"},
        {"{\"items\":{}}", "state must be {\\\"items\\\": [...]}"},
        {"{\"items\":[{\"id\":\"a\",\"text\":\"t\"}]}",
         "each item must be {\\\"id\\\": string, \\\"text\\\": string, \\\"done\\\": boolean}"},
        {"{\"items\":[{\"id\":1,\"text\":\"t\",\"done\":false}]}",
         "each item must be {\\\"id\\\": string, \\\"text\\\": string, \\\"done\\\": boolean}"},
        {"{\"items\":[{\"id\":\"\",\"text\":\"t\",\"done\":false}]}",
         "an item's id must be 1..64 bytes and its text at most 1000"},
        {"{\"items\":[{\"id\":\"a\",\"text\":\"t\",\"done\":false},"
         "{\"id\":\"a\",\"text\":\"u\",\"done\":true}]}",
         "item ids must be unique"},
    };
    party_test *t = *state;
    party_test_conn *a = join(t, "shape", "", "{\"items\":[]}");
    party_test_conn *b = join(t, "shape", "", "{\"items\":[]}");
    char frame[512], want[512];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(frame, sizeof(frame), "{\"type\":\"cf_agent_state\",\"state\":%s}", bad[i][0]);
        assert_int_equal(party_test_send_text(a, frame), 0);
        snprintf(want, sizeof(want), "{\"type\":\"cf_agent_state_error\",\"error\":\"%s\"}",
                 bad[i][1]);
        expect(a, want);
    }
    /* A well-formed list is taken and reaches the other connection. */
    assert_int_equal(
        party_test_send_text(a, "{\"type\":\"cf_agent_state\",\"state\":{\"items\":[{\"id\":\"a\","
                                "\"text\":\"t\",\"done\":false}]}}"),
        0);
    expect(b, "{\"type\":\"cf_agent_state\",\"state\":{\"items\":[{\"id\":\"a\",\"text\":\"t\","
              "\"done\":false}]}}");
    party_test_conn_free(a);
    party_test_conn_free(b);
}

static void test_readonly_connection_reads_but_does_not_write(void **state) {
    party_test *t = *state;
    party_test_conn *ro = join(t, "ro", "?readonly=1", "{\"items\":[]}");
    char *text;

    expect_error(call(ro, "1", "add", "[\"tea\"]"), "1", "Connection is readonly");
    assert_int_equal(
        party_test_send_text(ro, "{\"type\":\"cf_agent_state\",\"state\":{\"items\":[]}}"), 0);
    expect(ro, "{\"type\":\"cf_agent_state_error\",\"error\":\"Connection is readonly\"}");
    text = result_of(call(ro, "2", "count", "[]"));
    assert_string_equal(text, "0");
    cJSON_free(text);
    party_test_conn_free(ro);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(test_first_start_stores_an_empty_list),
        TEST(test_add_toggle_remove_count_and_export),
        TEST(test_methods_refuse_bad_arguments),
        TEST(test_client_states_not_of_the_lists_shape_are_refused),
        TEST(test_readonly_connection_reads_but_does_not_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
