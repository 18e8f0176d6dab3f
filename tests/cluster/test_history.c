/* The cluster tests' checker (history.c) on crafted histories: a clean
 * failover passes; two owners at once (overlapping epochs, or one epoch on
 * two nodes), a value acknowledged twice and a read-back below an
 * acknowledged value each fail, naming what broke. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "history.h"

static void ack(history *h, const char *room, const char *node, long long epoch, long long value) {
    assert_int_equal(history_ack(h, room, node, epoch, value), 0);
}

static void expect_broken(history *h, const char *needle) {
    char why[512] = "";
    assert_int_equal(history_check(h, why, sizeof(why)), -1);
    if (strstr(why, needle) == NULL)
        fail_msg("expected '%s' in: %s", needle, why);
}

static void test_failover_in_order_passes(void **state) {
    history *h = history_new();
    char why[512] = "";
    (void)state;
    /* n2 held r1 (epoch 3), died; n1 took it (epoch 4) and went on from
     * the last acknowledged value. Acks of rooms may come in any order. */
    ack(h, "r1", "n2", 3, 1);
    ack(h, "r2", "n1", 1, 1);
    ack(h, "r1", "n2", 3, 2);
    ack(h, "r1", "n1", 4, 3);
    ack(h, "r2", "n1", 1, 2);
    ack(h, "r1", "n1", 4, 4);
    assert_int_equal(history_final(h, "r1", 4), 0);
    /* An unacknowledged write may have committed. */
    assert_int_equal(history_final(h, "r2", 3), 0);
    if (history_check(h, why, sizeof(why)) != 0)
        fail_msg("%s", why);
    assert_int_equal(history_acks(h), 6);
    assert_int_equal(history_rooms(h), 2);
    assert_int_equal(history_epochs(h), 3);
    history_free(h);
}

static void test_overlapping_epochs_fail(void **state) {
    history *h = history_new();
    (void)state;
    /* n1 (epoch 1) acknowledged 4 after n2 (epoch 2) acknowledged 3: both
     * owned the room at once. */
    ack(h, "r1", "n1", 1, 1);
    ack(h, "r1", "n1", 1, 2);
    ack(h, "r1", "n2", 2, 3);
    ack(h, "r1", "n1", 1, 4);
    expect_broken(h, "room r1: epochs overlap: n1 epoch 1 acknowledged value 4");
    history_free(h);
}

static void test_one_epoch_on_two_nodes_fails(void **state) {
    history *h = history_new();
    (void)state;
    ack(h, "r1", "n1", 5, 1);
    ack(h, "r1", "n2", 5, 2);
    expect_broken(h, "room r1: epoch 5 served by two nodes");
    history_free(h);
}

static void test_value_acknowledged_twice_fails(void **state) {
    history *h = history_new();
    (void)state;
    /* n1's write of 2 was acknowledged but not kept: n2 counted 2 again. */
    ack(h, "r1", "n1", 1, 1);
    ack(h, "r1", "n1", 1, 2);
    ack(h, "r1", "n2", 2, 2);
    ack(h, "r1", "n2", 2, 3);
    expect_broken(h, "room r1: value 2 acknowledged twice");
    history_free(h);
}

static void test_read_back_below_an_acknowledged_value_fails(void **state) {
    history *h = history_new();
    (void)state;
    ack(h, "r1", "n1", 1, 1);
    ack(h, "r1", "n1", 1, 2);
    assert_int_equal(history_final(h, "r1", 1), 0);
    expect_broken(h, "room r1: reads back 1, but 2 was acknowledged");
    history_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_in_order_passes),
        cmocka_unit_test(test_overlapping_epochs_fail),
        cmocka_unit_test(test_one_epoch_on_two_nodes_fails),
        cmocka_unit_test(test_value_acknowledged_twice_fails),
        cmocka_unit_test(test_read_back_below_an_acknowledged_value_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
