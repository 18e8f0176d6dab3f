/* Tests for the old names (request.c, room_api.c): the names the API had before 0.2 still work
 * until 1.0 — party_response_status/_header/_body answer as the set_ names
 * do, and party_broadcast reaches the others and returns its count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"

/* This file calls the old names on purpose. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static int last_count;

static void old_request(party_room *room, const party_request *req, party_response *res) {
    (void)room;
    (void)req;
    party_response_status(res, 201);
    party_response_header(res, "X-Old", "yes");
    party_response_body(res, "made", 4);
}

static void old_message(party_room *room, party_conn *conn, const void *data, size_t len,
                        int binary) {
    const char *exclude[1] = {party_conn_id(conn)};
    last_count = party_broadcast(room, data, len, binary, exclude, 1);
}

static const party_def old_def = {
    .name = "old",
    .on_request = old_request,
    .on_message = old_message,
};

static void test_old_response_setters_answer_like_the_new_ones(void **state) {
    party_test *t = party_test_new();
    party_test_response res;
    char *header;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &old_def), 0);
    assert_int_equal(party_test_request(t, "GET", "/parties/old/r", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "made");
    header = party_test_response_header(&res, "X-Old");
    assert_non_null(header);
    assert_string_equal(header, "yes");
    free(header);
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_old_broadcast_reaches_the_others_and_returns_the_count(void **state) {
    party_test *t = party_test_new();
    party_test_conn *a, *b, *c;
    char *text = NULL;
    int status = 0;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &old_def), 0);
    a = party_test_connect(t, "/parties/old/r?_pk=a", &status);
    b = party_test_connect(t, "/parties/old/r?_pk=b", &status);
    c = party_test_connect(t, "/parties/old/r?_pk=c", &status);
    assert_true(a != NULL && b != NULL && c != NULL);
    last_count = -1;
    assert_int_equal(party_test_send_text(a, "hi"), 0);
    assert_int_equal(party_test_recv_text(b, &text), 0);
    assert_string_equal(text, "hi");
    free(text);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "hi");
    free(text);
    assert_int_equal(last_count, 2);
    party_test_conn_free(a);
    party_test_conn_free(b);
    party_test_conn_free(c);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_response_setters_answer_like_the_new_ones),
        cmocka_unit_test(test_old_broadcast_reaches_the_others_and_returns_the_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
