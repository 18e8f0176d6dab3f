/* addr_limits: the per-address table (see addr_limits.h). A hash of chained
 * entries with an LRU list through them; an entry is 48 bytes. New
 * connections per second use GCRA: one "theoretical arrival time" per
 * address instead of a counter and a timer, so nothing runs between
 * connections. */
#include "addr_limits.h"

#include <string.h>
#include <uv.h>

#include "alloc.h"
#include "party.h"

typedef struct entry {
    uint8_t key[9];  /* family, then 4 (IPv4) or 8 (IPv6 /64) address bytes */
    uint32_t open;   /* connections counted and not given back */
    uint64_t tat_us; /* GCRA: when the address's next connection is "due" */
    struct entry *hash_next;
    struct entry *lru_prev, *lru_next; /* most recently seen first */
} entry;

struct party__addr_limits {
    uv_mutex_t lock;
    entry **buckets;
    size_t mask; /* buckets - 1 (a power of two) */
    size_t n, max;
    uint64_t evicted;
    entry *lru_head, *lru_tail;
};

static void key_of(const party__addr *addr, uint8_t key[9]) {
    memset(key, 0, 9);
    key[0] = addr->family;
    memcpy(key + 1, addr->bytes, addr->family == PARTY__ADDR_V4 ? 4 : 8);
}

static size_t hash_of(const uint8_t key[9]) {
    /* FNV-1a: the keys are short and an attacker choosing addresses can
     * only fill chains of one table it cannot see the size of. */
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < 9; i++) {
        h ^= key[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

party__addr_limits *party__addr_limits_new(size_t max_entries) {
    party__addr_limits *lim = party__calloc(1, sizeof(*lim));
    size_t buckets = 16;

    if (lim == NULL)
        return NULL;
    if (max_entries == 0)
        max_entries = 1;
    while (buckets < max_entries && buckets < ((size_t)1 << 30))
        buckets <<= 1;
    lim->buckets = party__calloc(buckets, sizeof(*lim->buckets));
    if (lim->buckets == NULL || uv_mutex_init(&lim->lock) != 0) {
        party__free(lim->buckets);
        party__free(lim);
        return NULL;
    }
    lim->mask = buckets - 1;
    lim->max = max_entries;
    return lim;
}

void party__addr_limits_free(party__addr_limits *lim) {
    entry *e, *next;

    if (lim == NULL)
        return;
    for (e = lim->lru_head; e != NULL; e = next) {
        next = e->lru_next;
        party__free(e);
    }
    party__free(lim->buckets);
    uv_mutex_destroy(&lim->lock);
    party__free(lim);
}

static void lru_unlink(party__addr_limits *lim, entry *e) {
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        lim->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        lim->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(party__addr_limits *lim, entry *e) {
    e->lru_prev = NULL;
    e->lru_next = lim->lru_head;
    if (lim->lru_head != NULL)
        lim->lru_head->lru_prev = e;
    lim->lru_head = e;
    if (lim->lru_tail == NULL)
        lim->lru_tail = e;
}

static entry **find_slot(party__addr_limits *lim, const uint8_t key[9]) {
    entry **slot = &lim->buckets[hash_of(key) & lim->mask];
    while (*slot != NULL && memcmp((*slot)->key, key, 9) != 0)
        slot = &(*slot)->hash_next;
    return slot;
}

/* Forgets the address seen least recently (its open connections, if
 * any, are then no longer counted: the table stays bounded whatever the
 * clients do). */
static void evict_one(party__addr_limits *lim) {
    entry *e = lim->lru_tail;
    entry **slot;

    if (e == NULL)
        return;
    slot = find_slot(lim, e->key);
    *slot = e->hash_next;
    lru_unlink(lim, e);
    party__free(e);
    lim->n--;
    lim->evicted++;
}

int party__addr_limits_take(party__addr_limits *lim, const party__addr *addr, uint64_t now_ms,
                            size_t max_open, double rate, unsigned *retry_after_s, int *counted) {
    uint8_t key[9];
    entry **slot, *e;
    uint64_t now_us = now_ms * 1000, tat, interval_us = 0, tolerance_us = 0;
    int r = PARTY__LIMIT_OK;

    *counted = 0;
    *retry_after_s = 0;
    if (lim == NULL || (addr->family != PARTY__ADDR_V4 && addr->family != PARTY__ADDR_V6))
        return PARTY__LIMIT_OK;
    if (rate > 0) {
        double burst = rate < 1 ? 1 : rate;
        interval_us = (uint64_t)(1e6 / rate);
        tolerance_us = (uint64_t)((burst - 1) * (double)interval_us);
    }
    key_of(addr, key);
    uv_mutex_lock(&lim->lock);
    slot = find_slot(lim, key);
    e = *slot;
    if (e == NULL) {
        if (lim->n >= lim->max)
            evict_one(lim);
        slot = find_slot(lim, key); /* eviction may have changed the chain */
        e = party__calloc(1, sizeof(*e));
        if (e == NULL) {
            uv_mutex_unlock(&lim->lock);
            return PARTY_ENOMEM;
        }
        memcpy(e->key, key, sizeof(key));
        *slot = e;
        lim->n++;
    } else {
        lru_unlink(lim, e);
    }
    lru_push_front(lim, e);
    tat = e->tat_us > now_us ? e->tat_us : now_us;
    if (max_open > 0 && e->open >= max_open) {
        r = PARTY__LIMIT_CONNS;
        *retry_after_s = 1;
    } else if (interval_us > 0 && tat - now_us > tolerance_us) {
        uint64_t wait_us = tat - now_us - tolerance_us;
        r = PARTY__LIMIT_RATE;
        *retry_after_s = (unsigned)((wait_us + 999999) / 1000000);
        if (*retry_after_s == 0)
            *retry_after_s = 1;
    } else {
        e->open++;
        e->tat_us = tat + interval_us;
        *counted = 1;
    }
    uv_mutex_unlock(&lim->lock);
    return r;
}

void party__addr_limits_give(party__addr_limits *lim, const party__addr *addr) {
    uint8_t key[9];
    entry *e;

    if (lim == NULL)
        return;
    key_of(addr, key);
    uv_mutex_lock(&lim->lock);
    e = *find_slot(lim, key);
    if (e != NULL && e->open > 0)
        e->open--;
    uv_mutex_unlock(&lim->lock);
}

void party__addr_limits_stats(party__addr_limits *lim, uint64_t *entries, uint64_t *evicted) {
    *entries = *evicted = 0;
    if (lim == NULL)
        return;
    uv_mutex_lock(&lim->lock);
    *entries = lim->n;
    *evicted = lim->evicted;
    uv_mutex_unlock(&lim->lock);
}
