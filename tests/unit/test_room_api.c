/* Tests for room_api.c's broadcast, over real sockets through party_test.h:
 * the connections whose ids are excluded, and only they, miss a message,
 * whatever the ids share (a first byte, a prefix), and the count of
 * receivers says so. */
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

#define MAX_EXCLUDE 8

/* "id,id,...|text": broadcasts text to all but the listed ids (none
 * before an empty list), then tells the sender "sent=N". */
static void exclude_message(party_room *room, party_conn *conn, const void *data, size_t len,
                            int binary) {
    char list[256], reply[32];
    const char *exclude[MAX_EXCLUDE];
    const char *bar = memchr(data, '|', len);
    size_t n = 0, sent = 0, list_len;
    char *id, *save = NULL;

    (void)binary;
    if (bar == NULL || (list_len = (size_t)(bar - (const char *)data)) >= sizeof(list)) {
        party_conn_send_text(conn, "bad");
        return;
    }
    memcpy(list, data, list_len);
    list[list_len] = '\0';
    for (id = strtok_r(list, ",", &save); id != NULL && n < MAX_EXCLUDE;
         id = strtok_r(NULL, ",", &save))
        exclude[n++] = id;
    if (party_room_broadcast(room, bar + 1, len - list_len - 1, 0, exclude, n, &sent) != 0) {
        party_conn_send_text(conn, "failed");
        return;
    }
    snprintf(reply, sizeof(reply), "sent=%zu", sent);
    party_conn_send_text(conn, reply);
}

static const party_def exclude_def = {
    .name = "exclude",
    .on_message = exclude_message,
};

static void expect_text(party_test_conn *conn, const char *want) {
    char *text = NULL;
    assert_int_equal(party_test_recv_text(conn, &text), 0);
    assert_string_equal(text, want);
    free(text);
}

/* Whether id is in the comma-separated list. */
static int listed(const char *list, const char *id) {
    size_t n = strlen(id);
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, id, n) == 0)
            return 1;
        p += len + (end != NULL);
    }
    return 0;
}

static void test_broadcast_leaves_out_exactly_the_excluded_ids(void **state) {
    /* Ids that share a first byte or a prefix with an excluded one, or
     * are a prefix of one. */
    static const char *const ids[] = {"a", "a1", "a2", "ab", "b1", "sender"};
    /* What each round excludes, and how many it reaches. */
    static const struct {
        const char *exclude, *text, *sent;
    } rounds[] = {
        {"a1,a", "first", "sent=4"},
        {"ab", "second", "sent=5"},
        {"", "third", "sent=6"},
    };
    enum { N = sizeof(ids) / sizeof(ids[0]), SENDER = N - 1 };
    const size_t n_rounds = sizeof(rounds) / sizeof(rounds[0]);
    party_test_conn *conns[N];
    party_test *t = party_test_new();
    char target[64];
    size_t i, r;
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &exclude_def), 0);
    for (i = 0; i < N; i++) {
        snprintf(target, sizeof(target), "/parties/exclude/r?_pk=%s", ids[i]);
        conns[i] = party_test_connect(t, target, NULL);
        assert_non_null(conns[i]);
    }
    /* The sender is never excluded: it has each message, then the count. */
    for (r = 0; r < n_rounds; r++) {
        char msg[64];
        snprintf(msg, sizeof(msg), "%s|%s", rounds[r].exclude, rounds[r].text);
        assert_int_equal(party_test_send_text(conns[SENDER], msg), 0);
        expect_text(conns[SENDER], rounds[r].text);
        expect_text(conns[SENDER], rounds[r].sent);
    }
    /* The others receive in order what they were not excluded from: the
     * last round excludes nobody, so a message missed is one never sent
     * to them, not one still on its way. */
    for (i = 0; i < SENDER; i++)
        for (r = 0; r < n_rounds; r++)
            if (!listed(rounds[r].exclude, ids[i]))
                expect_text(conns[i], rounds[r].text);
    for (i = 0; i < N; i++)
        party_test_conn_free(conns[i]);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_leaves_out_exactly_the_excluded_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
