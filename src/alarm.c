/* alarm: the runtime-wide alarm index (SQLite) and the in-memory indexed
 * min-heap that drives one timer per loop. O(log n) per change; an entry
 * costs one small node. */
#include "alarm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "loops.h"
#include "room.h"
#include "storage.h"

/* Re-arm at least this often, so a wall clock that jumps is noticed. */
#define MAX_TIMER_MS 60000
/* Rooms still opening their stores past which due alarms wait: more would
 * only queue on the worker threads and hold files open. */
#define MAX_ALARM_WAKES_LOADING 64

typedef struct party__alarm_node {
    int64_t due;
    uint32_t party; /* index into rt->parties */
    uint32_t heap_pos;
    struct party__alarm_node *hash_next;
    char id[PARTY_ID_MAX];
} alarm_node;

int64_t party__runtime_epoch_ms(party_runtime *rt) {
    struct timeval tv;
    if (rt->virtual_clock)
        return (int64_t)rt->virtual_now;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- the heap ---- */

static size_t bucket_of(const party_runtime *rt, const char *id) {
    size_t h = 0;
    int i;
    for (i = 0; i < 12; i++)
        h = h * 16 + (size_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return h & (rt->alarm_buckets_cap - 1);
}

static alarm_node *node_find(party_runtime *rt, const char *id) {
    alarm_node *n;
    if (rt->alarm_buckets_cap == 0)
        return NULL;
    for (n = rt->alarm_buckets[bucket_of(rt, id)]; n != NULL; n = n->hash_next)
        if (memcmp(n->id, id, PARTY_ID_MAX) == 0)
            return n;
    return NULL;
}

static int buckets_grow(party_runtime *rt) {
    size_t cap = rt->alarm_buckets_cap ? rt->alarm_buckets_cap * 2 : 1024, i;
    alarm_node **buckets = calloc(cap, sizeof(*buckets));
    size_t old_cap = rt->alarm_buckets_cap;
    alarm_node **old = rt->alarm_buckets;

    if (buckets == NULL)
        return PARTY_ENOMEM;
    rt->alarm_buckets = buckets;
    rt->alarm_buckets_cap = cap;
    for (i = 0; i < old_cap; i++) {
        alarm_node *n = old[i], *next;
        for (; n != NULL; n = next) {
            size_t b = bucket_of(rt, n->id);
            next = n->hash_next;
            n->hash_next = buckets[b];
            buckets[b] = n;
        }
    }
    free(old);
    return 0;
}

static void node_unhash(party_runtime *rt, alarm_node *node) {
    alarm_node **link = &rt->alarm_buckets[bucket_of(rt, node->id)];
    while (*link != node)
        link = &(*link)->hash_next;
    *link = node->hash_next;
}

static void heap_set(party_runtime *rt, uint32_t pos, alarm_node *node) {
    rt->alarm_heap[pos] = node;
    node->heap_pos = pos;
}

static void sift_up(party_runtime *rt, uint32_t pos) {
    alarm_node *node = rt->alarm_heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (rt->alarm_heap[parent]->due <= node->due)
            break;
        heap_set(rt, pos, rt->alarm_heap[parent]);
        pos = parent;
    }
    heap_set(rt, pos, node);
}

static void sift_down(party_runtime *rt, uint32_t pos) {
    alarm_node *node = rt->alarm_heap[pos];
    uint32_t len = (uint32_t)rt->alarm_heap_len;
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= len)
            break;
        if (child + 1 < len && rt->alarm_heap[child + 1]->due < rt->alarm_heap[child]->due)
            child++;
        if (node->due <= rt->alarm_heap[child]->due)
            break;
        heap_set(rt, pos, rt->alarm_heap[child]);
        pos = child;
    }
    heap_set(rt, pos, node);
}

static void heap_remove(party_runtime *rt, alarm_node *node) {
    uint32_t pos = node->heap_pos;
    alarm_node *last = rt->alarm_heap[--rt->alarm_heap_len];
    if (last != node) {
        heap_set(rt, pos, last);
        sift_up(rt, pos);
        sift_down(rt, last->heap_pos);
    }
    node_unhash(rt, node);
    free(node);
}

static uint32_t party_index(party_runtime *rt, const char *party) {
    size_t i;
    for (i = 0; i < rt->n_parties; i++)
        if (strcmp(rt->parties[i].name, party) == 0)
            return (uint32_t)i;
    return UINT32_MAX;
}

static void timer_rearm(party_runtime *rt);

int party__alarm_heap_put(party_runtime *rt, const char *room_id, const char *party,
                          int64_t due_ms) {
    alarm_node *node = node_find(rt, room_id);
    uint32_t p;

    if (due_ms <= 0) {
        if (node != NULL) {
            heap_remove(rt, node);
            timer_rearm(rt);
        }
        return 0;
    }
    if (node != NULL) {
        int64_t old = node->due;
        node->due = due_ms;
        if (due_ms < old)
            sift_up(rt, node->heap_pos);
        else
            sift_down(rt, node->heap_pos);
        timer_rearm(rt);
        return 0;
    }
    p = party_index(rt, party);
    if (p == UINT32_MAX)
        return PARTY_ENOTFOUND;
    if (rt->alarm_heap_len + 1 > rt->alarm_buckets_cap && buckets_grow(rt) != 0)
        return PARTY_ENOMEM;
    if (rt->alarm_heap_len == rt->alarm_heap_cap) {
        size_t cap = rt->alarm_heap_cap ? rt->alarm_heap_cap * 2 : 1024;
        alarm_node **grown = realloc(rt->alarm_heap, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        rt->alarm_heap = grown;
        rt->alarm_heap_cap = cap;
    }
    node = malloc(sizeof(*node));
    if (node == NULL)
        return PARTY_ENOMEM;
    node->due = due_ms;
    node->party = p;
    memcpy(node->id, room_id, PARTY_ID_MAX);
    node->hash_next = rt->alarm_buckets[bucket_of(rt, room_id)];
    rt->alarm_buckets[bucket_of(rt, room_id)] = node;
    heap_set(rt, (uint32_t)rt->alarm_heap_len++, node);
    sift_up(rt, node->heap_pos);
    timer_rearm(rt);
    return 0;
}

size_t party__alarm_heap_size(party_runtime *rt) {
    return rt->alarm_heap_len;
}

/* ---- firing ---- */

static void on_alarm_timer(uv_timer_t *timer) {
    party__alarms_fire_due(timer->data);
}

static void timer_rearm(party_runtime *rt) {
    int64_t wait;
    if (!rt->alarms_started || rt->virtual_clock)
        return;
    if (rt->alarm_heap_len == 0) {
        uv_timer_stop(&rt->alarm_timer);
        return;
    }
    wait = rt->alarm_heap[0]->due - party__runtime_epoch_ms(rt);
    /* Due but held back while rooms load: their loads call back in
     * (party__alarms_room_loaded); the timer is only a backstop. */
    if (wait <= 0 && rt->n_loading >= MAX_ALARM_WAKES_LOADING)
        wait = 100;
    if (wait < 0)
        wait = 0;
    if (wait > MAX_TIMER_MS)
        wait = MAX_TIMER_MS;
    uv_timer_start(&rt->alarm_timer, on_alarm_timer, (uint64_t)wait, 0);
}

void party__alarms_fire_due(party_runtime *rt) {
    int64_t now = party__runtime_epoch_ms(rt);
    size_t budget = rt->alarm_heap_len;

    /* budget: an entry re-added while firing waits for the next turn */
    while (rt->alarm_heap_len > 0 && rt->alarm_heap[0]->due <= now && budget-- > 0 &&
           rt->n_loading < MAX_ALARM_WAKES_LOADING) {
        alarm_node *node = rt->alarm_heap[0];
        const party__party *party = &rt->parties[node->party];
        char id[PARTY_ID_MAX];
        party_room *room;
        party__event ev;

        /* The room takes over the entry: it re-adds its next wake time when
         * its batch commits (or a retry, if the handler fails). Removed
         * first, since the room may run (and re-add) right inside post. */
        memcpy(id, node->id, PARTY_ID_MAX);
        heap_remove(rt, node);
        room = party__room_get_by_id(rt, party, id);
        memset(&ev, 0, sizeof(ev));
        ev.type = PARTY__EV_ALARM;
        if (room != NULL)
            room->wake_indexed = -1;
        if (room == NULL || party__room_post(room, &ev) != 0) {
            party__log_warn(rt, "alarm for room %s/%s: cannot wake the room; retrying in 1 s",
                            party->name, id);
            (void)party__alarm_heap_put(rt, id, party->name, now + 1000);
        }
    }
    timer_rearm(rt);
}

void party__alarms_room_loaded(party_runtime *rt) {
    if (rt->alarms_started && rt->alarm_heap_len > 0 &&
        rt->alarm_heap[0]->due <= party__runtime_epoch_ms(rt))
        party__alarms_fire_due(rt);
}

/* ---- the index ---- */

static const char index_schema[] =
    "CREATE TABLE IF NOT EXISTS alarm_index (room_id TEXT PRIMARY KEY NOT NULL,"
    " party TEXT NOT NULL, due_ms INTEGER NOT NULL) WITHOUT ROWID;";

/* The index's statements, prepared once (SQLITE_OK or SQLite's error). */
static int index_statements_prepare(party_runtime *rt) {
    int rc =
        sqlite3_prepare_v2(rt->alarm_db,
                           "INSERT INTO alarm_index (room_id, party, due_ms) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (room_id) DO UPDATE SET party = excluded.party,"
                           " due_ms = excluded.due_ms",
                           -1, &rt->alarm_upsert, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(rt->alarm_db, "DELETE FROM alarm_index WHERE room_id = ?1", -1,
                                &rt->alarm_delete, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(rt->alarm_db, "PRAGMA synchronous=NORMAL", -1, &rt->alarm_sync_off,
                                NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(rt->alarm_db, "PRAGMA synchronous=FULL", -1, &rt->alarm_sync_on,
                                NULL);
    return rc;
}

static void index_statements_finalize(party_runtime *rt) {
    sqlite3_finalize(rt->alarm_upsert);
    sqlite3_finalize(rt->alarm_delete);
    sqlite3_finalize(rt->alarm_sync_off);
    sqlite3_finalize(rt->alarm_sync_on);
    rt->alarm_upsert = rt->alarm_delete = rt->alarm_sync_off = rt->alarm_sync_on = NULL;
}

/* Why the index could not be opened, into why: the OS error when SQLite
 * has one (it says only "unable to open database file" whatever the
 * cause), else SQLite's message. */
static void describe_index_failure(party_runtime *rt, int rc, char *why, size_t why_len) {
    int code = rc & 0xff;
    /* The system errno is the failed call's only for these two. */
    int sys_errno = rt->alarm_db != NULL && (code == SQLITE_CANTOPEN || code == SQLITE_IOERR)
                        ? sqlite3_system_errno(rt->alarm_db)
                        : 0;

    if (sys_errno != 0)
        snprintf(why, why_len, "%s", strerror(sys_errno));
    else
        snprintf(why, why_len, "%s",
                 rt->alarm_db != NULL ? sqlite3_errmsg(rt->alarm_db) : sqlite3_errstr(rc));
}

int party__alarm_index_open(party_runtime *rt) {
    char path[4096], why[512];
    struct stat st;
    int rc, fd, existed = 1;

    if (rt->alarm_db != NULL)
        return 0;
    if (rt->data_dir != NULL) {
        if ((size_t)snprintf(path, sizeof(path), "%s/alarms.db", rt->data_dir) >= sizeof(path)) {
            party__log_error(rt, "data directory %s: path too long", rt->data_dir);
            return PARTY_EIO;
        }
        existed = stat(path, &st) == 0;
        /* Opened once by hand first: when SQLite cannot open a file it
         * retries read-only, and the OS error it keeps is the retry's
         * (ENOENT for a directory we may not write), not the cause. */
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            party__log_error(rt, "data directory %s: cannot %s alarms.db: %s", rt->data_dir,
                             existed ? "open" : "create", strerror(errno));
            return PARTY_EIO;
        }
        close(fd);
    } else {
        snprintf(path, sizeof(path), ":memory:");
    }
    rc = sqlite3_open_v2(path, &rt->alarm_db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(rt->alarm_db, 5000);
        rc = sqlite3_exec(rt->alarm_db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(rt->alarm_db,
                          rt->durability_full ? "PRAGMA synchronous=FULL"
                                              : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(rt->alarm_db, index_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = index_statements_prepare(rt);
    if (rc != SQLITE_OK) {
        describe_index_failure(rt, rc, why, sizeof(why));
        if (rt->data_dir != NULL)
            party__log_error(rt, "data directory %s: cannot %s alarms.db: %s", rt->data_dir,
                             existed ? "open" : "create", why);
        else
            party__log_error(rt, "alarm index (in memory): %s", why);
        index_statements_finalize(rt);
        sqlite3_close(rt->alarm_db);
        rt->alarm_db = NULL;
        return rc == SQLITE_NOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    uv_mutex_init(&rt->alarm_mutex);
    return 0;
}

void party__alarm_index_close(party_runtime *rt) {
    if (rt->alarm_db == NULL)
        return;
    index_statements_finalize(rt);
    sqlite3_close(rt->alarm_db);
    rt->alarm_db = NULL;
    uv_mutex_destroy(&rt->alarm_mutex);
}

int party__alarms_start(party_runtime *rt) {
    sqlite3_stmt *stmt = NULL;
    size_t loaded = 0, skipped = 0;
    int rc;

    if (rt->alarms_started)
        return 0;
    if (rt != rt->main) {
        /* Another loop: a heap and a timer of its own; the index is main's,
         * which loads this loop's rooms into this heap. */
        uv_timer_init(&rt->loop, &rt->alarm_timer);
        rt->alarm_timer.data = rt;
        rt->alarms_started = 1;
        return 0;
    }
    rc = party__alarm_index_open(rt);
    if (rc != 0)
        return rc;
    if (sqlite3_prepare_v2(rt->alarm_db, "SELECT room_id, party, due_ms FROM alarm_index", -1,
                           &stmt, NULL) != SQLITE_OK) {
        party__log_error(rt, "alarm index: %s", sqlite3_errmsg(rt->alarm_db));
        return PARTY_EIO;
    }
    uv_timer_init(&rt->loop, &rt->alarm_timer);
    rt->alarm_timer.data = rt;
    rt->alarms_started = 1;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        const char *party = (const char *)sqlite3_column_text(stmt, 1);
        int64_t due = sqlite3_column_int64(stmt, 2);
        /* The other loops do not run yet: their heaps are filled from here. */
        if (id == NULL || party == NULL || !party__room_id_valid(id) ||
            party__alarm_heap_put(party__loop_of(rt, id), id, party, due) != 0)
            skipped++;
        else
            loaded++;
    }
    sqlite3_finalize(stmt);
    if (loaded > 0 || skipped > 0)
        party__log_info(rt, "alarm index: %zu rooms to wake%s", loaded,
                        skipped ? " (some belong to parties not registered; kept on disk)" : "");
    timer_rearm(rt);
    return 0;
}

void party__alarms_stop(party_runtime *rt) {
    size_t i;
    if (rt == rt->main)
        party__alarm_index_close(rt); /* opened at listen even if never started */
    if (!rt->alarms_started)
        return;
    for (i = 0; i < rt->alarm_heap_len; i++)
        free(rt->alarm_heap[i]);
    free(rt->alarm_heap);
    free(rt->alarm_buckets);
    rt->alarm_heap = NULL;
    rt->alarm_buckets = NULL;
    rt->alarm_heap_len = rt->alarm_heap_cap = rt->alarm_buckets_cap = 0;
    if (!uv_is_closing((uv_handle_t *)&rt->alarm_timer))
        uv_close((uv_handle_t *)&rt->alarm_timer, NULL);
    rt->alarms_started = 0;
}

int party__alarm_index_put(party_runtime *rt, const char *room_id, const char *party,
                           int64_t due_ms) {
    sqlite3_stmt *stmt;
    int rc;

    rt = rt->main; /* the index is loop 0's, shared by every loop */
    if (!rt->alarms_started)
        return 0;
    uv_mutex_lock(&rt->alarm_mutex);
    if (due_ms > 0) {
        stmt = rt->alarm_upsert;
        sqlite3_bind_text(stmt, 1, room_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, party, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, due_ms);
    } else {
        /* A delete lost in a crash only wakes a room that finds nothing
         * due: with durability full it is not worth an fsync. */
        if (rt->durability_full)
            (void)party__store_step_done(rt->alarm_sync_off);
        stmt = rt->alarm_delete;
        sqlite3_bind_text(stmt, 1, room_id, -1, SQLITE_STATIC);
    }
    rc = party__store_step_done(stmt);
    if (due_ms <= 0 && rt->durability_full)
        (void)party__store_step_done(rt->alarm_sync_on);
    uv_mutex_unlock(&rt->alarm_mutex);
    return rc;
}
