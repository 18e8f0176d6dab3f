/* write_set: a shared room's open batch in memory (write_set.h). Sorted
 * arrays: a batch writes a handful of keys, and a list walks them in key
 * order next to the committed rows. */
#include "write_set.h"

#include <string.h>

#include "alloc.h"

static void pairs_clear(party__pending_pairs *p) {
    size_t i;
    for (i = 0; i < p->len; i++)
        party__free(p->items[i].key);
    party__free(p->items);
    p->items = NULL;
    p->len = p->cap = 0;
}

void party__write_set_clear_all(party__write_set *ws) {
    size_t i;
    pairs_clear(&ws->kv);
    pairs_clear(&ws->meta);
    for (i = 0; i < ws->n_scheds; i++)
        party__free(ws->scheds[i].block);
    party__free(ws->scheds);
    ws->scheds = NULL;
    ws->n_scheds = ws->cap_scheds = 0;
    ws->alarm_set = 0;
    ws->alarm_at = 0;
    ws->alarm_retries = 0;
}

size_t party__pending_lower_bound(const party__pending_pairs *p, const char *key) {
    size_t lo = 0, hi = p->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(p->items[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

party__pending_pair *party__pending_find(const party__pending_pairs *p, const char *key) {
    size_t i = party__pending_lower_bound(p, key);
    return i < p->len && strcmp(p->items[i].key, key) == 0 ? &p->items[i] : NULL;
}

int party__pending_set(party__pending_pairs *p, const char *key, const void *val, size_t len,
                       int deleted) {
    size_t i = party__pending_lower_bound(p, key), klen = strlen(key);
    char *block;

    if (deleted)
        len = 0;
    /* Key, NUL, value, NUL: the value reads as a string too. */
    block = party__malloc(klen + 1 + len + 1);
    if (block == NULL)
        return PARTY_ENOMEM;
    memcpy(block, key, klen + 1);
    if (len > 0)
        memcpy(block + klen + 1, val, len);
    block[klen + 1 + len] = '\0';
    if (i < p->len && strcmp(p->items[i].key, key) == 0) {
        party__free(p->items[i].key);
    } else {
        if (p->len == p->cap) {
            size_t cap = p->cap > 0 ? p->cap * 2 : 8;
            party__pending_pair *items = party__realloc(p->items, cap * sizeof(*items));
            if (items == NULL) {
                party__free(block);
                return PARTY_ENOMEM;
            }
            p->items = items;
            p->cap = cap;
        }
        memmove(&p->items[i + 1], &p->items[i], (p->len - i) * sizeof(p->items[0]));
        p->len++;
    }
    p->items[i].key = block;
    p->items[i].val = block + klen + 1;
    p->items[i].len = len;
    p->items[i].deleted = deleted;
    return 0;
}

static size_t sched_lower_bound(const party__write_set *ws, const char *id) {
    size_t lo = 0, hi = ws->n_scheds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(ws->scheds[mid].s.id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

party__pending_sched *party__pending_sched_find(const party__write_set *ws, const char *id) {
    size_t i = sched_lower_bound(ws, id);
    return i < ws->n_scheds && strcmp(ws->scheds[i].s.id, id) == 0 ? &ws->scheds[i] : NULL;
}

/* A copy of s in one block (the strings and payload of an ADD, the id
 * only otherwise) into *out. */
static void *sched_copy(int op, const party__schedule *s, party__schedule *out) {
    size_t id_len = strlen(s->id) + 1;
    size_t name_len = op == PARTY__PENDING_ADD ? strlen(s->name) + 1 : 0;
    size_t cron_len = op == PARTY__PENDING_ADD && s->cron != NULL ? strlen(s->cron) + 1 : 0;
    size_t payload_len = op == PARTY__PENDING_ADD ? s->len : 0;
    char *block = party__malloc(id_len + name_len + cron_len + payload_len + 1), *at;

    if (block == NULL)
        return NULL;
    *out = *s;
    at = block;
    memcpy(at, s->id, id_len);
    out->id = at;
    at += id_len;
    if (op != PARTY__PENDING_ADD) {
        out->name = out->cron = NULL;
        out->payload = NULL;
        out->len = 0;
        return block;
    }
    memcpy(at, s->name, name_len);
    out->name = at;
    at += name_len;
    if (cron_len > 0) {
        memcpy(at, s->cron, cron_len);
        out->cron = at;
        at += cron_len;
    }
    if (payload_len > 0)
        memcpy(at, s->payload, payload_len);
    *(at + payload_len) = '\0';
    out->payload = at;
    return block;
}

int party__pending_sched_set(party__write_set *ws, int op, const party__schedule *s) {
    size_t i = sched_lower_bound(ws, s->id);
    party__schedule copy;
    void *block = sched_copy(op, s, &copy);

    if (block == NULL)
        return PARTY_ENOMEM;
    if (i < ws->n_scheds && strcmp(ws->scheds[i].s.id, s->id) == 0) {
        party__free(ws->scheds[i].block);
    } else {
        if (ws->n_scheds == ws->cap_scheds) {
            size_t cap = ws->cap_scheds > 0 ? ws->cap_scheds * 2 : 4;
            party__pending_sched *items = party__realloc(ws->scheds, cap * sizeof(*items));
            if (items == NULL) {
                party__free(block);
                return PARTY_ENOMEM;
            }
            ws->scheds = items;
            ws->cap_scheds = cap;
        }
        memmove(&ws->scheds[i + 1], &ws->scheds[i], (ws->n_scheds - i) * sizeof(ws->scheds[0]));
        ws->n_scheds++;
    }
    ws->scheds[i].op = op;
    ws->scheds[i].s = copy;
    ws->scheds[i].block = block;
    return 0;
}

void party__pending_sched_forget(party__write_set *ws, const char *id) {
    size_t i = sched_lower_bound(ws, id);
    if (i >= ws->n_scheds || strcmp(ws->scheds[i].s.id, id) != 0)
        return;
    party__free(ws->scheds[i].block);
    memmove(&ws->scheds[i], &ws->scheds[i + 1], (ws->n_scheds - i - 1) * sizeof(ws->scheds[0]));
    ws->n_scheds--;
}
