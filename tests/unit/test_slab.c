/* Tests for src/slab.c: fixed-size objects in blocks (reuse, many blocks
 * found again by address, partly used blocks filled before empty ones, empty
 * blocks handed back at the tick with one kept). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "slab.h"

typedef struct thing {
    uint64_t id;
    char body[200];
} thing;

static void test_given_back_object_is_taken_again(void **state) {
    party__slabs *s = party__slabs_new(sizeof(thing));
    thing *a, *b;
    (void)state;

    assert_non_null(s);
    a = party__slabs_take(s);
    assert_non_null(a);
    memset(a, 0xab, sizeof(*a));
    assert_int_equal(party__slabs_taken(s), 1);
    assert_int_equal(party__slabs_blocks(s), 1);
    party__slabs_give(s, a);
    assert_int_equal(party__slabs_taken(s), 0);
    b = party__slabs_take(s);
    assert_ptr_equal(b, a);
    party__slabs_give(s, b);
    party__slabs_free(s);
}

/* Several blocks' worth, each object written whole and checked whole
 * after all were taken: no two overlap, every one is aligned for its type,
 * and giving them back in another order finds each one's block. */
static void test_objects_of_many_blocks_are_distinct_and_go_back(void **state) {
    party__slabs *s = party__slabs_new(sizeof(thing));
    size_t per = party__slabs_per_block(s), n = per * 5 + 3, i;
    thing **all = calloc(n, sizeof(*all));
    (void)state;

    assert_non_null(all);
    assert_true(per > 100);
    assert_true(per * sizeof(thing) <= PARTY__SLAB_BYTES);
    for (i = 0; i < n; i++) {
        all[i] = party__slabs_take(s);
        assert_non_null(all[i]);
        assert_int_equal((uintptr_t)all[i] % _Alignof(thing), 0);
        all[i]->id = i;
        memset(all[i]->body, (int)(i & 0xff), sizeof(all[i]->body));
    }
    assert_int_equal(party__slabs_blocks(s), 6);
    assert_int_equal(party__slabs_taken(s), n);
    for (i = 0; i < n; i++) {
        assert_int_equal(all[i]->id, i);
        assert_int_equal((unsigned char)all[i]->body[0], i & 0xff);
        assert_int_equal((unsigned char)all[i]->body[sizeof(all[i]->body) - 1], i & 0xff);
    }
    /* odd ones first, then even ones from the end */
    for (i = 1; i < n; i += 2)
        party__slabs_give(s, all[i]);
    for (i = n; i-- > 0;)
        if (i % 2 == 0)
            party__slabs_give(s, all[i]);
    assert_int_equal(party__slabs_taken(s), 0);
    /* Every block is whole again: all of them empty, all but one go. */
    party__slabs_tick(s);
    assert_int_equal(party__slabs_blocks(s), 1);
    free(all);
    party__slabs_free(s);
}

/* 1 if obj is one of the n objects at block (the objects one block held
 * when it was filled). */
static int in_block(const void *obj, thing *const *block, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (block[i] == obj)
            return 1;
    return 0;
}

static void test_empty_blocks_go_back_at_the_tick_but_one(void **state) {
    party__slabs *s = party__slabs_new(sizeof(thing));
    size_t per = party__slabs_per_block(s), n = per * 4, i;
    thing **all = calloc(n, sizeof(*all));
    thing **second = calloc(per, sizeof(*second));
    thing *kept;
    (void)state;

    /* Blocks fill one after another: the second block holds all[per, 2 per). */
    for (i = 0; i < n; i++)
        all[i] = party__slabs_take(s);
    memcpy(second, all + per, per * sizeof(*second));
    assert_int_equal(party__slabs_blocks(s), 4);
    assert_int_equal(party__slabs_tick(s), 0); /* all full */

    /* Every object but one goes back: three blocks are empty. */
    kept = all[per + 7];
    for (i = 0; i < n; i++)
        if (all[i] != kept)
            party__slabs_give(s, all[i]);
    assert_true(party__slabs_tick(s) >= 2 * per * sizeof(thing));
    assert_int_equal(party__slabs_blocks(s), 2); /* kept's block and one spare */
    assert_int_equal(party__slabs_tick(s), 0);   /* nothing more to hand back */
    assert_int_equal(party__slabs_blocks(s), 2);

    /* The block still in use is filled before the spare is touched, and the
     * remaining objects still go back to the right blocks. */
    for (i = 0; i < per - 1; i++) {
        all[i] = party__slabs_take(s);
        assert_true(in_block(all[i], second, per));
    }
    assert_int_equal(party__slabs_blocks(s), 2);
    all[per - 1] = party__slabs_take(s); /* the spare's first */
    assert_false(in_block(all[per - 1], second, per));
    assert_int_equal(party__slabs_blocks(s), 2);
    assert_int_equal(party__slabs_taken(s), per + 1);
    for (i = 0; i < per; i++)
        party__slabs_give(s, all[i]);
    party__slabs_give(s, kept);
    assert_int_equal(party__slabs_taken(s), 0);
    party__slabs_tick(s);
    assert_int_equal(party__slabs_blocks(s), 1);
    free(all);
    free(second);
    party__slabs_free(s);
}

static void test_partly_used_block_is_filled_before_an_empty_one(void **state) {
    party__slabs *s = party__slabs_new(sizeof(thing));
    size_t per = party__slabs_per_block(s), i;
    thing **first = calloc(per, sizeof(*first));
    thing *second, *again;
    (void)state;

    for (i = 0; i < per; i++)
        first[i] = party__slabs_take(s);
    second = party__slabs_take(s); /* a second block */
    assert_int_equal(party__slabs_blocks(s), 2);
    party__slabs_give(s, second); /* the second block is empty again */
    party__slabs_give(s, first[3]);
    again = party__slabs_take(s);
    assert_ptr_equal(again, first[3]);
    party__slabs_give(s, again);
    for (i = 0; i < per; i++)
        if (i != 3)
            party__slabs_give(s, first[i]);
    free(first);
    party__slabs_free(s);
}

static void test_odd_sizes_are_refused_or_served(void **state) {
    party__slabs *s;
    void *p;
    (void)state;

    assert_null(party__slabs_new(0));
    assert_null(party__slabs_new(PARTY__SLAB_BYTES));
    s = party__slabs_new(1); /* tiny objects: the index stack bounds a block */
    assert_non_null(s);
    assert_true(party__slabs_per_block(s) <= 65536);
    p = party__slabs_take(s);
    assert_non_null(p);
    party__slabs_give(s, p);
    party__slabs_free(s);
    party__slabs_free(NULL);
}

/* What connections and rooms use: the set made on first use, objects
 * zeroed (also one given back dirty), and the set freed with its blocks. */
static void test_calloc_makes_the_set_and_zeroes_objects(void **state) {
    party__slabs *set = NULL;
    thing *a, *b;
    size_t i;
    (void)state;

    a = party__slabs_calloc(&set, sizeof(thing));
    assert_non_null(a);
    for (i = 0; i < sizeof(a->body); i++)
        assert_int_equal(a->body[i], 0);
    assert_int_equal(a->id, 0);
    memset(a, 0xee, sizeof(*a));
    party__slabs_release(set, a);
    b = party__slabs_calloc(&set, sizeof(thing));
    assert_non_null(b);
    for (i = 0; i < sizeof(b->body); i++)
        assert_int_equal(b->body[i], 0);
    assert_int_equal(b->id, 0);
    party__slabs_release(set, b);
    assert_int_equal(party__slabs_tick(NULL), 0);
    party__slabs_tick(set);
    party__slabs_free(set);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_given_back_object_is_taken_again),
        cmocka_unit_test(test_objects_of_many_blocks_are_distinct_and_go_back),
        cmocka_unit_test(test_empty_blocks_go_back_at_the_tick_but_one),
        cmocka_unit_test(test_partly_used_block_is_filled_before_an_empty_one),
        cmocka_unit_test(test_odd_sizes_are_refused_or_served),
        cmocka_unit_test(test_calloc_makes_the_set_and_zeroes_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
