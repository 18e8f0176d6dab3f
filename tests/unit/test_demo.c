/* Tests of the built-in demo party (parties/demo.c) through party_test.h:
 * the history it stores and trims, presence across hibernation, cursors
 * relayed to the others only, and the errors it answers bad input with. */
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
    if (t == NULL || party_test_add(t, party_builtin_demo()) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* The next message, parsed; fails unless it is JSON of this type. */
static cJSON *recv_type(party_test_conn *c, const char *type) {
    char *text = NULL;
    cJSON *json;
    const cJSON *got;
    int r = party_test_recv_text(c, &text);
    if (r != 0)
        fail_msg("waiting for a '%s' message: %s", type, party_test_strerror(r));
    json = cJSON_Parse(text);
    got = cJSON_GetObjectItemCaseSensitive(json, "type");
    if (!cJSON_IsString(got) || strcmp(got->valuestring, type) != 0)
        fail_msg("expected a '%s' message, got %s", type, text);
    free(text);
    return json;
}

static void expect_type(party_test_conn *c, const char *type) {
    cJSON_Delete(recv_type(c, type));
}

/* Connects as id, reads the welcome (returned) and joins as name; the join
 * comes back to the joiner too. */
static party_test_conn *join(party_test *t, const char *room, const char *id, const char *name,
                             cJSON **welcome) {
    char target[256], msg[128];
    party_test_conn *c;
    cJSON *w;

    snprintf(target, sizeof(target), "/parties/demo/%s?_pk=%s", room, id);
    c = party_test_connect(t, target, NULL);
    assert_non_null(c);
    w = recv_type(c, "welcome");
    assert_string_equal(cJSON_GetObjectItem(w, "id")->valuestring, id);
    if (welcome != NULL)
        *welcome = w;
    else
        cJSON_Delete(w);
    snprintf(msg, sizeof(msg), "{\"type\":\"join\",\"name\":\"%s\"}", name);
    assert_int_equal(party_test_send_text(c, msg), 0);
    expect_type(c, "join");
    return c;
}

static void send_chat(party_test_conn *c, int n) {
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"type\":\"chat\",\"text\":\"message %d\"}", n);
    assert_int_equal(party_test_send_text(c, msg), 0);
}

static void test_history_keeps_the_last_50_messages_across_a_restart(void **state) {
    party_test *t = *state;
    party_test_conn *ada = join(t, "history", "ada", "Ada", NULL), *bob;
    cJSON *welcome, *history, *first, *chat;
    int i;

    for (i = 1; i <= 55; i++)
        send_chat(ada, i);
    for (i = 1; i <= 55; i++) {
        chat = recv_type(ada, "chat");
        assert_string_equal(
            cJSON_GetObjectItem(cJSON_GetObjectItem(chat, "message"), "name")->valuestring, "Ada");
        cJSON_Delete(chat);
    }
    assert_int_equal(party_test_restart(t), 0);
    party_test_conn_free(ada);

    bob = join(t, "history", "bob", "Bob", &welcome);
    history = cJSON_GetObjectItem(welcome, "history");
    assert_int_equal(cJSON_GetArraySize(history), 50);
    first = cJSON_GetArrayItem(history, 0);
    assert_string_equal(cJSON_GetObjectItem(first, "text")->valuestring, "message 6");
    assert_string_equal(cJSON_GetObjectItem(first, "name")->valuestring, "Ada");
    assert_string_equal(cJSON_GetObjectItem(first, "id")->valuestring, "ada");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(history, 49), "text")->valuestring,
                        "message 55");
    /* Ada's connection did not survive the restart: nobody else is here. */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(welcome, "present")), 0);
    cJSON_Delete(welcome);
    party_test_conn_free(bob);
}

static void test_presence_survives_hibernation_and_follows_a_close(void **state) {
    party_test *t = *state;
    party_test_conn *ada = join(t, "presence", "ada", "Ada", NULL), *bob, *cy;
    cJSON *welcome, *present, *leave;

    bob = join(t, "presence", "bob", "Bob", &welcome);
    present = cJSON_GetObjectItem(welcome, "present");
    assert_int_equal(cJSON_GetArraySize(present), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(present, 0), "name")->valuestring,
                        "Ada");
    cJSON_Delete(welcome);
    expect_type(ada, "join"); /* Bob's */

    /* Names are connection state: the room can leave memory and still
     * tell a newcomer who is here. */
    assert_int_equal(party_test_hibernate(t, "demo", "presence"), 0);
    assert_int_equal(party_test_loaded(t, "demo", "presence"), 0);
    cy = join(t, "presence", "cy", "Cy", &welcome);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(welcome, "present")), 2);
    cJSON_Delete(welcome);
    expect_type(ada, "join");
    expect_type(bob, "join");

    assert_int_equal(party_test_close(bob, 1000, NULL), 0);
    leave = recv_type(ada, "leave");
    assert_string_equal(cJSON_GetObjectItem(leave, "id")->valuestring, "bob");
    cJSON_Delete(leave);
    expect_type(cy, "leave");
    party_test_conn_free(ada);
    party_test_conn_free(bob);
    party_test_conn_free(cy);
}

static void test_cursors_reach_the_others_and_are_not_stored(void **state) {
    party_test *t = *state;
    party_test_conn *ada = join(t, "cursors", "ada", "Ada", NULL);
    party_test_conn *bob = join(t, "cursors", "bob", "Bob", NULL);
    party_test_response res;
    cJSON *cursor, *stored, *history;

    expect_type(ada, "join");
    assert_int_equal(party_test_send_text(ada, "{\"type\":\"cursor\",\"x\":0.25,\"y\":0.5}"), 0);
    assert_int_equal(party_test_send_text(ada, "{\"type\":\"cursor\",\"x\":7,\"y\":0.5}"), 0);
    cursor = recv_type(bob, "cursor");
    assert_string_equal(cJSON_GetObjectItem(cursor, "id")->valuestring, "ada");
    assert_true(cJSON_GetObjectItem(cursor, "x")->valuedouble == 0.25);
    assert_true(cJSON_GetObjectItem(cursor, "y")->valuedouble == 0.5);
    cJSON_Delete(cursor);
    /* Out of range: the cursor is hidden (no coordinates). */
    cursor = recv_type(bob, "cursor");
    assert_null(cJSON_GetObjectItem(cursor, "x"));
    cJSON_Delete(cursor);

    /* The sender gets nothing back; a chat message is the next thing. */
    send_chat(ada, 1);
    expect_type(ada, "chat");
    expect_type(bob, "chat");
    assert_int_equal(party_test_request(t, "GET", "/parties/demo/cursors", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    stored = cJSON_Parse(res.body);
    history = cJSON_GetObjectItem(stored, "history");
    assert_int_equal(cJSON_GetArraySize(history), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(history, 0), "text")->valuestring,
                        "message 1");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(stored, "present")), 2);
    cJSON_Delete(stored);
    party_test_response_free(&res);
    party_test_conn_free(ada);
    party_test_conn_free(bob);
}

static void expect_error(party_test_conn *c, const char *needle) {
    cJSON *err = recv_type(c, "error");
    const char *message = cJSON_GetObjectItem(err, "message")->valuestring;
    if (strstr(message, needle) == NULL)
        fail_msg("error '%s' does not say '%s'", message, needle);
    cJSON_Delete(err);
}

static void test_bad_input_gets_an_error_message(void **state) {
    party_test *t = *state;
    party_test_conn *c = party_test_connect(t, "/parties/demo/errors?_pk=x", NULL);
    char long_text[1100];
    char msg[1200];
    cJSON *joined;

    assert_non_null(c);
    expect_type(c, "welcome");
    assert_int_equal(party_test_send_text(c, "{\"type\":\"chat\",\"text\":\"hi\"}"), 0);
    expect_error(c, "before chatting");
    assert_int_equal(party_test_send_text(c, "not json"), 0);
    expect_error(c, "JSON object");
    assert_int_equal(party_test_send(c, "\x01\x02", 2, 1), 0);
    expect_error(c, "JSON object");
    assert_int_equal(party_test_send_text(c, "{\"type\":\"dance\"}"), 0);
    expect_error(c, "unknown type");
    assert_int_equal(party_test_send_text(c, "{\"type\":\"join\",\"name\":\"\"}"), 0);
    expect_error(c, "non-empty");

    /* A long name is cut to 32 bytes, never inside a UTF-8 character. */
    assert_int_equal(party_test_send_text(c,
                                          "{\"type\":\"join\",\"name\":"
                                          "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9\"}"),
                     0);
    joined = recv_type(c, "join");
    assert_string_equal(cJSON_GetObjectItem(joined, "name")->valuestring,
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    cJSON_Delete(joined);

    memset(long_text, 'z', 1001);
    long_text[1001] = '\0';
    snprintf(msg, sizeof(msg), "{\"type\":\"chat\",\"text\":\"%s\"}", long_text);
    assert_int_equal(party_test_send_text(c, msg), 0);
    expect_error(c, "1 to 1000 bytes");
    party_test_conn_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_history_keeps_the_last_50_messages_across_a_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_survives_hibernation_and_follows_a_close,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursors_reach_the_others_and_are_not_stored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_gets_an_error_message, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
