/* Tests for src/buf.c: refcounted buffers and the loop's pool of small
 * ones (reuse, the spare limit, large buffers outside it, a pool freed
 * while one of its buffers is still referenced). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"

static void test_released_small_buffer_is_taken_again_without_allocating(void **state) {
    party__buf_pool *pool = party__buf_pool_new();
    party__buf *a, *b;
    (void)state;

    assert_non_null(pool);
    a = party__buf_take(pool, 40);
    assert_non_null(a);
    assert_int_equal(a->len, 0);
    assert_true(a->cap >= 40);
    memcpy(a->data, "hello", 5);
    a->len = 5;
    party__buf_release(a);
    assert_int_equal(party__buf_pool_spares(pool), 1);

    b = party__buf_take(pool, PARTY__BUF_POOL_CAP);
    assert_ptr_equal(b, a); /* the spare, not a new allocation */
    assert_int_equal(b->len, 0);
    assert_int_equal(b->refs, 1);
    assert_int_equal(party__buf_pool_spares(pool), 0);
    party__buf_release(b);
    party__buf_pool_free(pool);
}

static void test_buffer_goes_back_only_after_its_last_reference(void **state) {
    party__buf_pool *pool = party__buf_pool_new();
    party__buf *a = party__buf_take(pool, 16);
    (void)state;

    party__buf_ref(a);
    party__buf_ref(a);
    party__buf_release(a);
    party__buf_release(a);
    assert_int_equal(party__buf_pool_spares(pool), 0);
    party__buf_release(a);
    assert_int_equal(party__buf_pool_spares(pool), 1);
    party__buf_pool_free(pool);
}

static void test_large_buffer_is_not_pooled(void **state) {
    party__buf_pool *pool = party__buf_pool_new();
    party__buf *big = party__buf_take(pool, PARTY__BUF_POOL_CAP + 1);
    (void)state;

    assert_non_null(big);
    assert_null(big->pool);
    assert_int_equal(big->cap, PARTY__BUF_POOL_CAP + 1);
    party__buf_release(big);
    assert_int_equal(party__buf_pool_spares(pool), 0);
    party__buf_pool_free(pool);
}

static void test_pool_keeps_at_most_its_spare_limit(void **state) {
    enum { N = PARTY__BUF_POOL_SPARES + 40 };
    static party__buf *bufs[N];
    party__buf_pool *pool = party__buf_pool_new();
    size_t i;
    (void)state;

    for (i = 0; i < N; i++)
        bufs[i] = party__buf_take(pool, 100);
    for (i = 0; i < N; i++)
        party__buf_release(bufs[i]);
    assert_int_equal(party__buf_pool_spares(pool), PARTY__BUF_POOL_SPARES);
    party__buf_pool_trim(pool);
    assert_int_equal(party__buf_pool_spares(pool), 0);
    party__buf_pool_free(pool);
}

static void test_tick_frees_the_spares_no_one_took_since_the_last_tick(void **state) {
    party__buf *bufs[10];
    party__buf_pool *pool = party__buf_pool_new();
    size_t i;
    (void)state;

    for (i = 0; i < 10; i++)
        bufs[i] = party__buf_take(pool, 64);
    for (i = 0; i < 10; i++)
        party__buf_release(bufs[i]);
    party__buf_pool_tick(pool); /* all ten were out during this tick */
    assert_int_equal(party__buf_pool_spares(pool), 10);

    for (i = 0; i < 4; i++)
        bufs[i] = party__buf_take(pool, 64);
    for (i = 0; i < 4; i++)
        party__buf_release(bufs[i]);
    party__buf_pool_tick(pool); /* six stayed unused: freed */
    assert_int_equal(party__buf_pool_spares(pool), 4);

    party__buf_pool_tick(pool); /* a quiet tick: nothing kept */
    assert_int_equal(party__buf_pool_spares(pool), 0);
    party__buf_pool_free(pool);
}

/* The pool outlives its free call while a buffer is out; the sanitizer's
 * leak check fails this test if either is lost. */
static void test_pool_freed_with_a_buffer_out_is_freed_by_its_release(void **state) {
    party__buf_pool *pool = party__buf_pool_new();
    party__buf *kept = party__buf_take(pool, 10);
    party__buf *spare = party__buf_take(pool, 10);
    (void)state;

    party__buf_release(spare);
    party__buf_pool_free(pool);
    memcpy(kept->data, "still mine", 10);
    kept->len = 10;
    assert_memory_equal(kept->data, "still mine", 10);
    party__buf_release(kept);
}

static void test_no_pool_means_plain_allocation(void **state) {
    party__buf *a = party__buf_take(NULL, 8);
    party__buf *b = party__buf_new(8);
    (void)state;

    assert_null(a->pool);
    assert_null(b->pool);
    assert_int_equal(a->cap, 8);
    party__buf_release(a);
    party__buf_release(b);
    party__buf_release(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_released_small_buffer_is_taken_again_without_allocating),
        cmocka_unit_test(test_buffer_goes_back_only_after_its_last_reference),
        cmocka_unit_test(test_large_buffer_is_not_pooled),
        cmocka_unit_test(test_pool_keeps_at_most_its_spare_limit),
        cmocka_unit_test(test_tick_frees_the_spares_no_one_took_since_the_last_tick),
        cmocka_unit_test(test_pool_freed_with_a_buffer_out_is_freed_by_its_release),
        cmocka_unit_test(test_no_pool_means_plain_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
