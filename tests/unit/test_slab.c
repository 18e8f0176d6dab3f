/* Tests for src/slab.c: fixed-size objects in blocks (reuse, many blocks
 * found again by address, partly used blocks filled before empty ones, empty
 * blocks handed back at the tick with one kept), and the walk over the
 * objects taken (each once; one given back before the walk reaches it is
 * skipped), with party__slabs_take and with party__slabs_calloc. */
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

/* ---- the walk ---- */

typedef struct walk {
    party__slabs *set;
    size_t seen, sum;
    int use_release;
    thing *candidates[2]; /* at the first object met, one of them not met yet is given back */
    thing *given_back;
    int met_given_back;
} walk;

static void walk_visit(void *obj, void *arg) {
    walk *w = arg;
    thing *t = obj;
    w->seen++;
    w->sum += (size_t)t->id;
    if (t == w->given_back)
        w->met_given_back = 1;
    if (w->candidates[0] != NULL && w->given_back == NULL) {
        w->given_back = w->candidates[0] != t ? w->candidates[0] : w->candidates[1];
        if (w->use_release)
            party__slabs_release(w->set, w->given_back);
        else
            party__slabs_give(w->set, w->given_back);
    }
}

static void give(party__slabs *s, thing *t, int use_calloc) {
    if (use_calloc)
        party__slabs_release(s, t);
    else
        party__slabs_give(s, t);
}

/* Objects 1..n of several blocks, every third given back: the walk meets
 * each taken one once; one that the walk gives back before reaching it is
 * skipped. */
static void walk_over(int use_calloc) {
    party__slabs *s = use_calloc ? NULL : party__slabs_new(sizeof(thing));
    size_t per, n, i, k, taken, expected = 0;
    thing **all;
    walk w;

    if (!use_calloc)
        assert_non_null(s);
    per = s != NULL ? party__slabs_per_block(s) : 100;
    n = per * 3 + 7;
    all = calloc(n, sizeof(*all));
    assert_non_null(all);
    for (i = 0; i < n; i++) {
        all[i] = use_calloc ? party__slabs_calloc(&s, sizeof(thing)) : party__slabs_take(s);
        assert_non_null(all[i]);
        all[i]->id = i + 1;
    }
    for (i = 0; i < n; i += 3) {
        give(s, all[i], use_calloc);
        all[i] = NULL;
    }
    for (i = 0; i < n; i++)
        expected += all[i] != NULL ? i + 1 : 0;
    taken = n - (n + 2) / 3;
    memset(&w, 0, sizeof(w));
    w.set = s;
    w.use_release = use_calloc;
    party__slabs_foreach(s, walk_visit, &w);
    assert_int_equal(w.seen, taken);
    assert_int_equal(w.sum, expected);

    /* The walk gives back, at the first object it meets, another one: it
     * never meets that one. */
    memset(&w, 0, sizeof(w));
    w.set = s;
    w.use_release = use_calloc;
    for (i = 0, k = 0; i < n && k < 2; i++)
        if (all[i] != NULL)
            w.candidates[k++] = all[i];
    party__slabs_foreach(s, walk_visit, &w);
    assert_non_null(w.given_back);
    assert_false(w.met_given_back);
    assert_int_equal(w.seen, taken - 1);
    for (i = 0; i < n; i++)
        if (all[i] != NULL && all[i] != w.given_back)
            give(s, all[i], use_calloc);
    memset(&w, 0, sizeof(w));
    party__slabs_foreach(s, walk_visit, &w);
    assert_int_equal(w.seen, 0);
    party__slabs_foreach(NULL, walk_visit, &w);
    party__slabs_free(s);
    free(all);
}

static void test_walk_meets_each_taken_object_once(void **state) {
    (void)state;
    walk_over(0);
}

static void test_walk_meets_each_object_of_calloc_once(void **state) {
    (void)state;
    walk_over(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_given_back_object_is_taken_again),
        cmocka_unit_test(test_objects_of_many_blocks_are_distinct_and_go_back),
        cmocka_unit_test(test_empty_blocks_go_back_at_the_tick_but_one),
        cmocka_unit_test(test_partly_used_block_is_filled_before_an_empty_one),
        cmocka_unit_test(test_odd_sizes_are_refused_or_served),
        cmocka_unit_test(test_calloc_makes_the_set_and_zeroes_objects),
        cmocka_unit_test(test_walk_meets_each_taken_object_once),
        cmocka_unit_test(test_walk_meets_each_object_of_calloc_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
