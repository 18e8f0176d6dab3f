/* alarm: an indexed min-heap of wake times that drives one loop timer.
 * O(log n) per change; an entry costs one small node, found by room id
 * through a hash table of its own. A parked entry is due at PARKED, after
 * every real time: it sits at the heap's bottom and never fires. */
#include "alarm.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* Re-arm at least this often, so a wall clock that jumps is noticed. */
#define MAX_TIMER_MS 60000
/* While the wake callback holds entries back, look again this often:
 * the user usually calls back sooner (party__alarms_fire_due). */
#define PAUSED_RETRY_MS 100
/* The due time of an entry kept for a room without a wake time now. */
#define PARKED INT64_MAX

typedef struct party__alarm_node {
    int64_t due;
    uint32_t tag;
    uint32_t heap_pos;
    struct party__alarm_node *hash_next;
    char id[PARTY_ID_MAX];
} alarm_node;

/* ---- the hash table (room ids are hex hashes already) ---- */

static size_t bucket_of(const party__alarms *a, const char *id) {
    size_t h = 0;
    int i;
    for (i = 0; i < 12 && id[i] != '\0'; i++)
        h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : (id[i] | 0x20) - 'a' + 10);
    return h & (a->buckets_cap - 1);
}

static alarm_node *node_find(party__alarms *a, const char *id) {
    alarm_node *n;
    if (a->buckets_cap == 0)
        return NULL;
    for (n = a->buckets[bucket_of(a, id)]; n != NULL; n = n->hash_next)
        if (strcmp(n->id, id) == 0)
            return n;
    return NULL;
}

static int buckets_grow(party__alarms *a) {
    size_t cap = a->buckets_cap ? a->buckets_cap * 2 : 1024, i;
    alarm_node **buckets = party__calloc(cap, sizeof(*buckets));
    size_t old_cap = a->buckets_cap;
    alarm_node **old = a->buckets;

    if (buckets == NULL)
        return PARTY_ENOMEM;
    a->buckets = buckets;
    a->buckets_cap = cap;
    for (i = 0; i < old_cap; i++) {
        alarm_node *n = old[i], *next;
        for (; n != NULL; n = next) {
            size_t b = bucket_of(a, n->id);
            next = n->hash_next;
            n->hash_next = buckets[b];
            buckets[b] = n;
        }
    }
    party__free(old);
    return 0;
}

static void node_unhash(party__alarms *a, alarm_node *node) {
    alarm_node **link = &a->buckets[bucket_of(a, node->id)];
    while (*link != node)
        link = &(*link)->hash_next;
    *link = node->hash_next;
}

/* ---- the heap ---- */

static void heap_set(party__alarms *a, uint32_t pos, alarm_node *node) {
    a->heap[pos] = node;
    node->heap_pos = pos;
}

static void sift_up(party__alarms *a, uint32_t pos) {
    alarm_node *node = a->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (a->heap[parent]->due <= node->due)
            break;
        heap_set(a, pos, a->heap[parent]);
        pos = parent;
    }
    heap_set(a, pos, node);
}

static void sift_down(party__alarms *a, uint32_t pos) {
    alarm_node *node = a->heap[pos];
    uint32_t len = (uint32_t)a->len;
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= len)
            break;
        if (child + 1 < len && a->heap[child + 1]->due < a->heap[child]->due)
            child++;
        if (node->due <= a->heap[child]->due)
            break;
        heap_set(a, pos, a->heap[child]);
        pos = child;
    }
    heap_set(a, pos, node);
}

static void heap_remove(party__alarms *a, alarm_node *node) {
    uint32_t pos = node->heap_pos;
    alarm_node *last = a->heap[--a->len];
    a->parked -= node->due == PARKED;
    if (last != node) {
        heap_set(a, pos, last);
        sift_up(a, pos);
        sift_down(a, last->heap_pos);
    }
    node_unhash(a, node);
    party__free(node);
}

/* ---- the timer ---- */

static void on_timer(uv_timer_t *timer) {
    party__alarms_fire_due(timer->data);
}

static void timer_rearm(party__alarms *a) {
    int64_t wait;
    if (!a->started || a->manual)
        return;
    if (a->len == 0 || a->heap[0]->due == PARKED) {
        uv_timer_stop(&a->timer);
        return;
    }
    wait = a->heap[0]->due - a->clock_cb(a);
    /* Due but held back: the user calls back when it can take more; the
     * timer is only a backstop. */
    if (wait <= 0 && a->paused)
        wait = PAUSED_RETRY_MS;
    if (wait < 0)
        wait = 0;
    if (wait > MAX_TIMER_MS)
        wait = MAX_TIMER_MS;
    uv_timer_start(&a->timer, on_timer, (uint64_t)wait, 0);
}

/* ---- the API ---- */

int party__alarms_init(party__alarms *a, uv_loop_t *loop, int manual, party__alarm_wake_cb wake_cb,
                       party__alarm_clock_cb clock_cb, void *data) {
    if (a->started)
        return 0;
    memset(a, 0, sizeof(*a));
    if (uv_timer_init(loop, &a->timer) != 0)
        return PARTY_EIO;
    a->timer.data = a;
    a->wake_cb = wake_cb;
    a->clock_cb = clock_cb;
    a->data = data;
    a->manual = manual;
    a->started = 1;
    return 0;
}

void party__alarms_close(party__alarms *a) {
    size_t i;
    if (!a->started)
        return;
    for (i = 0; i < a->len; i++)
        party__free(a->heap[i]);
    party__free(a->heap);
    party__free(a->buckets);
    a->heap = NULL;
    a->buckets = NULL;
    a->len = a->cap = a->buckets_cap = a->parked = 0;
    if (!uv_is_closing((uv_handle_t *)&a->timer))
        uv_close((uv_handle_t *)&a->timer, NULL);
    a->started = 0;
}

int party__alarms_put(party__alarms *a, const char *room_id, uint32_t tag, int64_t due_ms) {
    alarm_node *node = node_find(a, room_id);
    size_t b;

    if (due_ms <= 0) {
        if (node != NULL) {
            heap_remove(a, node);
            timer_rearm(a);
        }
        return 0;
    }
    if (node != NULL) {
        int64_t old = node->due;
        a->parked += (size_t)(due_ms == PARKED) - (size_t)(old == PARKED);
        node->due = due_ms;
        if (due_ms < old)
            sift_up(a, node->heap_pos);
        else
            sift_down(a, node->heap_pos);
        timer_rearm(a);
        return 0;
    }
    if (strlen(room_id) >= PARTY_ID_MAX)
        return PARTY_EINVAL;
    if (a->len + 1 > a->buckets_cap && buckets_grow(a) != 0)
        return PARTY_ENOMEM;
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        alarm_node **grown = party__realloc(a->heap, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        a->heap = grown;
        a->cap = cap;
    }
    node = party__malloc(sizeof(*node));
    if (node == NULL)
        return PARTY_ENOMEM;
    node->due = due_ms;
    a->parked += due_ms == PARKED;
    node->tag = tag;
    strcpy(node->id, room_id);
    b = bucket_of(a, room_id);
    node->hash_next = a->buckets[b];
    a->buckets[b] = node;
    heap_set(a, (uint32_t)a->len++, node);
    sift_up(a, node->heap_pos);
    timer_rearm(a);
    return 0;
}

int party__alarms_reserve(party__alarms *a, const char *room_id, uint32_t tag) {
    if (node_find(a, room_id) != NULL)
        return 0;
    return party__alarms_put(a, room_id, tag, PARKED);
}

size_t party__alarms_size(const party__alarms *a) {
    return a->len - a->parked;
}

int64_t party__alarms_next(const party__alarms *a) {
    return a->len > 0 && a->heap[0]->due != PARKED ? a->heap[0]->due : 0;
}

void party__alarms_fire_due(party__alarms *a) {
    int64_t now;
    size_t budget = a->len;

    if (!a->started)
        return;
    now = a->clock_cb(a);
    a->paused = 0;
    /* budget: an entry put back while firing waits for the next turn */
    while (a->len > 0 && a->heap[0]->due <= now && budget-- > 0) {
        alarm_node *node = a->heap[0];
        char id[PARTY_ID_MAX];
        uint32_t tag = node->tag;
        int64_t due = node->due;

        /* Parked first: the user may put the room back from inside the
         * callback (its room can run right there); kept, so that putting
         * it back needs no memory. */
        memcpy(id, node->id, PARTY_ID_MAX);
        (void)party__alarms_put(a, id, tag, PARKED);
        if (a->wake_cb(a, id, tag) == PARTY_EBUSY) {
            (void)party__alarms_put(a, id, tag, due);
            a->paused = 1;
            break;
        }
    }
    timer_rearm(a);
}
