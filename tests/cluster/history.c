/* history: the split-brain and lost-write checker (history.h). Records
 * are kept in arrays and sorted once when checked: a test records at most
 * a few hundred thousand writes. */
#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ack {
    char *room, *node;
    long long epoch, value;
} ack;

typedef struct final_value {
    char *room;
    long long value;
} final_value;

struct history {
    ack *acks;
    size_t n_acks, cap_acks;
    final_value *finals;
    size_t n_finals, cap_finals;
};

history *history_new(void) {
    return calloc(1, sizeof(history));
}

void history_free(history *h) {
    size_t i;
    if (h == NULL)
        return;
    for (i = 0; i < h->n_acks; i++) {
        free(h->acks[i].room);
        free(h->acks[i].node);
    }
    for (i = 0; i < h->n_finals; i++)
        free(h->finals[i].room);
    free(h->acks);
    free(h->finals);
    free(h);
}

static int grow(void **items, size_t *cap, size_t n, size_t size) {
    void *grown;
    size_t want;
    if (n < *cap)
        return 0;
    want = *cap > 0 ? *cap * 2 : 256;
    grown = realloc(*items, want * size);
    if (grown == NULL)
        return -1;
    *items = grown;
    *cap = want;
    return 0;
}

int history_ack(history *h, const char *room, const char *node, long long epoch, long long value) {
    ack *a;
    if (grow((void **)&h->acks, &h->cap_acks, h->n_acks, sizeof(ack)) != 0)
        return -1;
    a = &h->acks[h->n_acks];
    a->room = strdup(room);
    a->node = strdup(node);
    a->epoch = epoch;
    a->value = value;
    if (a->room == NULL || a->node == NULL) {
        free(a->room);
        free(a->node);
        return -1;
    }
    h->n_acks++;
    return 0;
}

int history_final(history *h, const char *room, long long value) {
    final_value *f;
    if (grow((void **)&h->finals, &h->cap_finals, h->n_finals, sizeof(final_value)) != 0)
        return -1;
    f = &h->finals[h->n_finals];
    if ((f->room = strdup(room)) == NULL)
        return -1;
    f->value = value;
    h->n_finals++;
    return 0;
}

size_t history_acks(const history *h) {
    return h->n_acks;
}

/* Room, then value, then epoch. */
static int by_room_value(const void *a_, const void *b_) {
    const ack *a = a_, *b = b_;
    int c = strcmp(a->room, b->room);
    if (c != 0)
        return c;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return a->epoch < b->epoch ? -1 : a->epoch > b->epoch;
}

/* Room, then epoch. */
static int by_room_epoch(const void *a_, const void *b_) {
    const ack *a = a_, *b = b_;
    int c = strcmp(a->room, b->room);
    if (c != 0)
        return c;
    return a->epoch < b->epoch ? -1 : a->epoch > b->epoch;
}

/* A sorted copy of the acks (NULL for want of memory, or with none). */
static ack *sorted(const history *h, int (*cmp)(const void *, const void *)) {
    ack *copy = malloc((h->n_acks > 0 ? h->n_acks : 1) * sizeof(ack));
    if (copy == NULL)
        return NULL;
    if (h->n_acks > 0)
        memcpy(copy, h->acks, h->n_acks * sizeof(ack));
    qsort(copy, h->n_acks, sizeof(ack), cmp);
    return copy;
}

size_t history_rooms(const history *h) {
    ack *s = sorted(h, by_room_epoch);
    size_t i, n = 0;
    for (i = 0; s != NULL && i < h->n_acks; i++)
        n += i == 0 || strcmp(s[i].room, s[i - 1].room) != 0;
    free(s);
    return n;
}

size_t history_epochs(const history *h) {
    ack *s = sorted(h, by_room_epoch);
    size_t i, n = 0;
    for (i = 0; s != NULL && i < h->n_acks; i++)
        n += i == 0 || strcmp(s[i].room, s[i - 1].room) != 0 || s[i].epoch != s[i - 1].epoch;
    free(s);
    return n;
}

int history_check(const history *h, char *why, size_t why_len) {
    ack *s;
    size_t i, j;
    int r = 0;

    /* One node per (room, epoch). */
    if ((s = sorted(h, by_room_epoch)) == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    for (i = 1; i < h->n_acks && r == 0; i++)
        if (strcmp(s[i].room, s[i - 1].room) == 0 && s[i].epoch == s[i - 1].epoch &&
            strcmp(s[i].node, s[i - 1].node) != 0) {
            snprintf(why, why_len, "room %s: epoch %lld served by two nodes, %s and %s", s[i].room,
                     s[i].epoch, s[i - 1].node, s[i].node);
            r = -1;
        }
    free(s);
    if (r != 0)
        return r;

    /* In value order, each value once and epochs never going back: the
     * epochs' ranges of values are disjoint and ordered. */
    if ((s = sorted(h, by_room_value)) == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    for (i = 1; i < h->n_acks && r == 0; i++) {
        if (strcmp(s[i].room, s[i - 1].room) != 0)
            continue;
        if (s[i].value == s[i - 1].value) {
            snprintf(why, why_len,
                     "room %s: value %lld acknowledged twice (%s epoch %lld, %s epoch %lld):"
                     " an acknowledged write was lost",
                     s[i].room, s[i].value, s[i - 1].node, s[i - 1].epoch, s[i].node, s[i].epoch);
            r = -1;
        } else if (s[i].epoch < s[i - 1].epoch) {
            snprintf(why, why_len,
                     "room %s: epochs overlap: %s epoch %lld acknowledged value %lld after"
                     " %s epoch %lld acknowledged value %lld (two owners at once)",
                     s[i].room, s[i].node, s[i].epoch, s[i].value, s[i - 1].node, s[i - 1].epoch,
                     s[i - 1].value);
            r = -1;
        }
    }
    /* The value read back covers every acknowledged one. */
    for (j = 0; j < h->n_finals && r == 0; j++) {
        long long max = -1;
        for (i = 0; i < h->n_acks; i++)
            if (strcmp(s[i].room, h->finals[j].room) == 0 && s[i].value > max)
                max = s[i].value;
        if (h->finals[j].value < max) {
            snprintf(why, why_len,
                     "room %s: reads back %lld, but %lld was acknowledged: an acknowledged"
                     " write was lost",
                     h->finals[j].room, h->finals[j].value, max);
            r = -1;
        }
    }
    free(s);
    return r;
}
