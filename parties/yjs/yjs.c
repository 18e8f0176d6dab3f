/* yjs: a Yjs document per room, for y-partyserver's YProvider and stock
 * y-websocket clients (y-protocols sync and awareness over binary frames,
 * `__YPS:` custom messages over text frames). Received updates are appended
 * to a log table in the room's database before they are relayed, and the
 * log is compacted into one merged update past a threshold. Awareness lives
 * in each connection's state, so it survives hibernation. */
#include "../parties.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yjs_codec.h"

/* y-protocols message types. */
enum { MSG_SYNC = 0, MSG_AWARENESS = 1, MSG_AUTH = 2, MSG_QUERY_AWARENESS = 3 };
enum { SYNC_STEP1 = 0, SYNC_STEP2 = 1, SYNC_UPDATE = 2 };

#define CUSTOM_PREFIX "__YPS:"
#define CUSTOM_PREFIX_LEN 6
/* Clients one connection may announce in awareness (a tab has one). */
#define MAX_AWARENESS_CLIENTS 16
#define DEFAULT_COMPACT_ROWS 500
#define DEFAULT_COMPACT_BYTES ((size_t)4 << 20)
/* What one room's document may hold: bytes of the merged document plus the
 * updates not merged yet, and the structs and delete ranges in them. Kept
 * under the merge's own caps (YJS_MAX_*) with room to spare: a merge
 * writes at most ~50 bytes more than its input per struct (a Skip and a
 * cut struct's origin), so 32 MB + 512 Ki structs stays below its 64 MB
 * output cap. An update that would pass them is refused before it is
 * stored, so what is stored can always be merged. */
#define ROOM_MAX_BYTES (YJS_MAX_UPDATE / 2)
#define ROOM_MAX_STRUCTS (YJS_MAX_STRUCTS / 4)
#define ROOM_MAX_RANGES (YJS_MAX_STRUCTS / 2)
/* The first byte of a connection's state: it went through on_connect. */
#define CONN_STATE_MAGIC 0x59

typedef struct yjs_room {
    /* Every update stored, merged: doc plus the pending ones merged into it
     * when a sync needs the whole document. */
    uint8_t *doc;
    size_t doc_len;
    uint8_t **pending;
    size_t *pending_lens;
    size_t n_pending;
    size_t cap_pending;
    /* Upper bounds of what a merge of doc and pending would count: exact
     * for doc (measured after each merge), summed for pending. */
    size_t doc_structs;
    size_t doc_ranges;
    size_t pending_bytes;
    size_t pending_structs;
    size_t pending_ranges;
    party_room *room; /* for log lines */
    /* The log table's size, for compaction. */
    long long rows;
    size_t row_bytes;
    /* row_bytes at the last compaction (or start): the log compacts when it
     * has grown by compact_bytes since, not when it is past compact_bytes,
     * which a document that large always is. */
    size_t compacted_bytes;
    long long compact_rows;
    size_t compact_bytes;
    int gc_deleted; /* compaction drops the content of deleted items */
} yjs_room;

/* One awareness entry: a Yjs client id, its clock, its state (JSON). */
typedef struct awareness_entry {
    uint64_t client;
    uint64_t clock;
    const uint8_t *state; /* NULL: not kept (the connection's state was full) */
    size_t state_len;
} awareness_entry;

/* ---- storage --------------------------------------------------------------- */

static int db_exec(sqlite3 *db, const char *sql) {
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : PARTY_EIO;
}

static int db_append(party_room *room, const void *update, size_t len) {
    sqlite3 *db = party_room_db(room);
    sqlite3_stmt *st = NULL;
    int rc = PARTY_EIO;

    if (db != NULL &&
        sqlite3_prepare_v2(db, "INSERT INTO yjs_updates (data) VALUES (?)", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_bind_blob(st, 1, update, (int)len, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
    sqlite3_finalize(st);
    return rc;
}

static long long env_number(const char *name, long long fallback) {
    const char *v = getenv(name);
    char *end;
    long long n;
    if (v == NULL || *v == '\0')
        return fallback;
    n = strtoll(v, &end, 10);
    return *end == '\0' && n > 0 ? n : fallback;
}

static void yjs_room_free(void *state) {
    yjs_room *y = state;
    size_t i;
    if (y == NULL)
        return;
    for (i = 0; i < y->n_pending; i++)
        free(y->pending[i]);
    free(y->pending);
    free(y->pending_lens);
    free(y->doc);
    free(y);
}

static int pending_push(yjs_room *y, const void *update, size_t len, size_t n_structs,
                        size_t n_ranges) {
    uint8_t *copy;
    if (y->n_pending == y->cap_pending) {
        size_t cap = y->cap_pending ? y->cap_pending * 2 : 16;
        uint8_t **p = realloc(y->pending, cap * sizeof(*p));
        size_t *l;
        if (p == NULL)
            return PARTY_ENOMEM;
        y->pending = p;
        l = realloc(y->pending_lens, cap * sizeof(*l));
        if (l == NULL)
            return PARTY_ENOMEM;
        y->pending_lens = l;
        y->cap_pending = cap;
    }
    copy = malloc(len ? len : 1);
    if (copy == NULL)
        return PARTY_ENOMEM;
    memcpy(copy, update, len);
    y->pending[y->n_pending] = copy;
    y->pending_lens[y->n_pending++] = len;
    y->pending_bytes += len;
    y->pending_structs += n_structs;
    y->pending_ranges += n_ranges;
    return 0;
}

static void pending_clear(yjs_room *y) {
    size_t i;
    for (i = 0; i < y->n_pending; i++)
        free(y->pending[i]);
    y->n_pending = 0;
    y->pending_bytes = y->pending_structs = y->pending_ranges = 0;
}

/* Replaces doc with out (a merge result) and measures it. */
static void doc_replace(yjs_room *y, uint8_t *out, size_t out_len) {
    free(y->doc);
    y->doc = out;
    y->doc_len = out_len;
    if (yjs_update_measure(out, out_len, &y->doc_structs, &y->doc_ranges) != 0)
        y->doc_structs = y->doc_ranges = 0; /* cannot happen: a merge result parses */
}

/* The name of the room limit that adding an update of len bytes, n_structs
 * structs and n_ranges delete ranges could pass; NULL if none. */
static const char *room_limit(const yjs_room *y, size_t len, size_t n_structs, size_t n_ranges) {
    if (y->doc_len + y->pending_bytes + len > ROOM_MAX_BYTES)
        return "document size";
    if (y->doc_structs + y->pending_structs + n_structs > ROOM_MAX_STRUCTS)
        return "struct count";
    if (y->doc_ranges + y->pending_ranges + n_ranges > ROOM_MAX_RANGES)
        return "deleted range count";
    return NULL;
}

static int doc_flush(yjs_room *y);

/* NULL if update (measured: n_structs, n_ranges) fits in the room, else
 * the name of the limit it would pass. The bounds are sums; near a limit
 * the pending updates are merged first, then the update itself is merged
 * into the document to get exact counts (re-sent or overlapping updates
 * count once). *merged is set when the update is already in doc then. */
static const char *room_admit(yjs_room *y, const void *update, size_t len, size_t n_structs,
                              size_t n_ranges, int *merged) {
    const char *limit = room_limit(y, len, n_structs, n_ranges);
    const void *in[2];
    size_t lens[2], out_len, out_structs, out_ranges;
    uint8_t *out;

    *merged = 0;
    if (limit != NULL && y->n_pending > 0 && doc_flush(y) == 0)
        limit = room_limit(y, len, n_structs, n_ranges);
    if (limit == NULL || y->n_pending > 0)
        return limit;
    in[0] = y->doc, lens[0] = y->doc_len;
    in[1] = update, lens[1] = len;
    if (yjs_merge(in, lens, 2, &out, &out_len) != 0)
        return limit;
    if (yjs_update_measure(out, out_len, &out_structs, &out_ranges) != 0 ||
        out_len > ROOM_MAX_BYTES || out_structs > ROOM_MAX_STRUCTS ||
        out_ranges > ROOM_MAX_RANGES) {
        free(out);
        return limit;
    }
    doc_replace(y, out, out_len);
    *merged = 1;
    return NULL;
}

/* Merges the pending updates into doc (memory only). */
static int doc_flush(yjs_room *y) {
    const void **in;
    size_t *lens, i;
    uint8_t *out;
    size_t out_len;
    int rc;

    if (y->n_pending == 0)
        return 0;
    in = malloc((y->n_pending + 1) * sizeof(*in));
    lens = malloc((y->n_pending + 1) * sizeof(*lens));
    if (in == NULL || lens == NULL) {
        free(in);
        free(lens);
        return PARTY_ENOMEM;
    }
    in[0] = y->doc;
    lens[0] = y->doc_len;
    for (i = 0; i < y->n_pending; i++) {
        in[i + 1] = y->pending[i];
        lens[i + 1] = y->pending_lens[i];
    }
    rc = yjs_merge(in, lens, y->n_pending + 1, &out, &out_len);
    if (rc == 0) {
        doc_replace(y, out, out_len);
    } else if (rc == PARTY_ETOOBIG) {
        /* Only a log stored before the room limits existed gets here. An
         * update that cannot be merged would fail every sync and every
         * start of the room: merge one at a time and leave out (loudly)
         * what does not fit; the next compaction drops it from the log. */
        for (i = 0; i < y->n_pending; i++) {
            in[1] = y->pending[i];
            lens[1] = y->pending_lens[i];
            rc = yjs_merge(in, lens, 2, &out, &out_len);
            if (rc == PARTY_ETOOBIG) {
                party_room_log(y->room, PARTY_LOG_ERROR,
                               "a stored update of %zu bytes cannot be merged into the "
                               "document (too big); it is left out",
                               lens[1]);
                continue;
            }
            if (rc != 0)
                break;
            doc_replace(y, out, out_len);
            in[0] = y->doc;
            lens[0] = y->doc_len;
        }
    }
    free(in);
    free(lens);
    if (rc != 0 && rc != PARTY_ETOOBIG)
        return rc;
    pending_clear(y);
    return 0;
}

/* Replaces the log with one row holding the merged document. Part of the
 * current event's transaction, like the appends. The merged row goes in
 * first: if anything fails after it, the log holds the old rows too, which
 * merge to the same document. */
static int log_compact(party_room *room, yjs_room *y) {
    sqlite3 *db = party_room_db(room);
    sqlite3_stmt *st = NULL;
    int rc = doc_flush(y);

    if (rc == 0 && y->gc_deleted) {
        uint8_t *out;
        size_t out_len;
        rc = yjs_gc_deleted(y->doc, y->doc_len, &out, &out_len);
        if (rc == 0)
            doc_replace(y, out, out_len);
    }
    if (rc == 0)
        rc = db_append(room, y->doc, y->doc_len);
    if (rc == 0) {
        if (sqlite3_prepare_v2(db, "DELETE FROM yjs_updates WHERE id < ?", -1, &st, NULL) !=
                SQLITE_OK ||
            sqlite3_bind_int64(st, 1, sqlite3_last_insert_rowid(db)) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_DONE)
            rc = PARTY_EIO;
        sqlite3_finalize(st);
    }
    if (rc == 0) {
        y->rows = 1;
        y->row_bytes = y->compacted_bytes = y->doc_len;
    }
    return rc;
}

/* One row of the log at start. A row that is not a valid update or does
 * not fit in the room limits (stored by an older partyd) is left out of
 * the document and logged rather than failing the start for good. */
static int load_row(yjs_room *y, const void *data, size_t len) {
    size_t n_structs, n_ranges;
    const char *limit;
    int merged = 0, rc = yjs_update_measure(data, len, &n_structs, &n_ranges);

    y->rows++;
    y->row_bytes += len;
    if (rc == PARTY_ENOMEM)
        return rc;
    limit = rc != 0 ? "not a valid update" : room_admit(y, data, len, n_structs, n_ranges, &merged);
    if (limit != NULL) {
        party_room_log(y->room, PARTY_LOG_ERROR,
                       "a stored update of %zu bytes is left out of the document (%s)", len, limit);
        return 0;
    }
    return merged ? 0 : pending_push(y, data, len, n_structs, n_ranges);
}

/* ---- messages ---------------------------------------------------------------- */

/* Sends type, subtype, varUint8Array(payload) to conn. */
static int send_sync(party_conn *conn, int subtype, const void *payload, size_t len) {
    yjs_writer w;
    uint8_t *msg;
    size_t msg_len;
    int rc;

    yjs_writer_init(&w, YJS_MAX_UPDATE + 32);
    yjs_write_uint(&w, MSG_SYNC);
    yjs_write_uint(&w, (uint64_t)subtype);
    yjs_write_array(&w, payload, len);
    if ((rc = yjs_writer_finish(&w, &msg, &msg_len)) != 0)
        return rc;
    rc = party_conn_send(conn, msg, msg_len, 1);
    free(msg);
    return rc;
}

static int send_step1(party_conn *conn, yjs_room *y) {
    uint8_t *sv;
    size_t sv_len;
    int rc = doc_flush(y);

    if (rc == 0)
        rc = yjs_state_vector(y->doc, y->doc_len, &sv, &sv_len);
    if (rc != 0)
        return rc;
    rc = send_sync(conn, SYNC_STEP1, sv, sv_len);
    free(sv);
    return rc;
}

/* Reads the awareness entries of a connection's state. The state is:
 * magic byte, varUint count, then per entry varUint client, varUint clock,
 * varUint has_state, [varString state]. Returns the count (0 if none). */
static size_t conn_awareness(party_conn *conn, awareness_entry *out) {
    size_t len, n = 0;
    const uint8_t *state = party_conn_state(conn, &len);
    yjs_reader r;
    uint64_t count, i, has;

    if (state == NULL || len < 1 || state[0] != CONN_STATE_MAGIC)
        return 0;
    r = yjs_reader_make(state + 1, len - 1);
    if (yjs_read_uint(&r, &count) != 0)
        return 0;
    for (i = 0; i < count && n < MAX_AWARENESS_CLIENTS; i++) {
        awareness_entry *e = &out[n];
        if (yjs_read_uint(&r, &e->client) != 0 || yjs_read_uint(&r, &e->clock) != 0 ||
            yjs_read_uint(&r, &has) != 0)
            break;
        e->state = NULL;
        e->state_len = 0;
        if (has && yjs_read_array(&r, &e->state, &e->state_len) != 0)
            break;
        n++;
    }
    return n;
}

/* Writes entries as the connection's state; the states are left out if
 * they do not fit in PARTY_MAX_CONN_STATE (the ids and clocks always do,
 * so a close still removes them). */
static int conn_set_awareness(party_conn *conn, const awareness_entry *e, size_t n) {
    int with_states;
    for (with_states = 1; with_states >= 0; with_states--) {
        yjs_writer w;
        uint8_t *data;
        size_t len, i;
        int rc;
        yjs_writer_init(&w, PARTY_MAX_CONN_STATE);
        yjs_write_byte(&w, CONN_STATE_MAGIC);
        yjs_write_uint(&w, n);
        for (i = 0; i < n; i++) {
            int has = with_states && e[i].state != NULL;
            yjs_write_uint(&w, e[i].client);
            yjs_write_uint(&w, e[i].clock);
            yjs_write_uint(&w, (uint64_t)has);
            if (has)
                yjs_write_array(&w, e[i].state, e[i].state_len);
        }
        rc = yjs_writer_finish(&w, &data, &len);
        if (rc == PARTY_ETOOBIG && with_states)
            continue;
        if (rc != 0)
            return rc;
        rc = party_conn_set_state(conn, data, len);
        free(data);
        return rc;
    }
    return PARTY_ETOOBIG;
}

typedef struct awareness_collect {
    yjs_writer body;
    size_t count;
} awareness_collect;

static int collect_awareness_cb(party_conn *conn, void *arg) {
    awareness_collect *c = arg;
    awareness_entry e[MAX_AWARENESS_CLIENTS];
    size_t n = conn_awareness(conn, e), i;
    for (i = 0; i < n; i++) {
        if (e[i].state == NULL)
            continue;
        yjs_write_uint(&c->body, e[i].client);
        yjs_write_uint(&c->body, e[i].clock);
        yjs_write_array(&c->body, e[i].state, e[i].state_len);
        c->count++;
    }
    return 0;
}

/* Sends every known awareness state to conn, if there is any. */
static int send_all_awareness(party_room *room, party_conn *conn) {
    awareness_collect c;
    yjs_writer inner, w;
    uint8_t *msg;
    size_t msg_len;
    int rc;

    c.count = 0;
    yjs_writer_init(&c.body, YJS_MAX_UPDATE);
    party_room_foreach_conn(room, NULL, collect_awareness_cb, &c);
    if (c.count == 0 || c.body.err != 0) {
        rc = c.body.err;
        yjs_writer_release(&c.body);
        return rc;
    }
    yjs_writer_init(&inner, YJS_MAX_UPDATE);
    yjs_write_uint(&inner, c.count);
    yjs_write_raw(&inner, c.body.data, c.body.len);
    yjs_writer_release(&c.body);
    yjs_writer_init(&w, YJS_MAX_UPDATE + 16);
    yjs_write_uint(&w, MSG_AWARENESS);
    yjs_write_array(&w, inner.data, inner.len);
    if (inner.err != 0)
        w.err = inner.err;
    yjs_writer_release(&inner);
    if ((rc = yjs_writer_finish(&w, &msg, &msg_len)) != 0)
        return rc;
    rc = party_conn_send(conn, msg, msg_len, 1);
    free(msg);
    return rc;
}

/* An awareness update from conn: remember its clients' states, then
 * forward it to everyone, the sender included (a y-websocket client counts
 * its own echoed heartbeat as a sign of life). A state that is not JSON
 * (every client JSON.parses it) drops the whole message; entries past
 * MAX_AWARENESS_CLIENTS are neither kept nor forwarded. */
static void handle_awareness(party_room *room, party_conn *conn, const void *msg, size_t msg_len,
                             const uint8_t *update, size_t len) {
    awareness_entry old[MAX_AWARENESS_CLIENTS], next[MAX_AWARENESS_CLIENTS];
    awareness_entry got[MAX_AWARENESS_CLIENTS];
    size_t n_old = conn_awareness(conn, old), n_next = 0, n_got, k;
    yjs_reader r = yjs_reader_make(update, len);
    uint8_t *trimmed = NULL;
    uint64_t count, c;

    if (yjs_read_uint(&r, &count) != 0)
        return;
    n_got = count < MAX_AWARENESS_CLIENTS ? (size_t)count : MAX_AWARENESS_CLIENTS;
    for (c = 0; c < n_got; c++) {
        awareness_entry *e = &got[c];
        if (yjs_read_uint(&r, &e->client) != 0 || yjs_read_uint(&r, &e->clock) != 0 ||
            yjs_read_array(&r, &e->state, &e->state_len) != 0 ||
            yjs_json_check(e->state, e->state_len) != 0)
            return; /* malformed: neither kept nor forwarded */
    }
    memcpy(next, old, n_old * sizeof(*old));
    n_next = n_old;
    for (c = 0; c < n_got; c++) {
        const awareness_entry *e = &got[c];
        for (k = 0; k < n_next && next[k].client != e->client; k++)
            ;
        if (e->state_len == 4 && memcmp(e->state, "null", 4) == 0) {
            if (k < n_next)
                next[k] = next[--n_next];
        } else if (k < n_next) {
            next[k] = *e;
        } else if (n_next < MAX_AWARENESS_CLIENTS) {
            next[n_next++] = *e;
        }
    }
    if (count > n_got) {
        /* Forward only the entries read. */
        yjs_writer inner, w;
        size_t trimmed_len;
        yjs_writer_init(&inner, len);
        yjs_write_uint(&inner, n_got);
        for (c = 0; c < n_got; c++) {
            yjs_write_uint(&inner, got[c].client);
            yjs_write_uint(&inner, got[c].clock);
            yjs_write_array(&inner, got[c].state, got[c].state_len);
        }
        yjs_writer_init(&w, msg_len);
        yjs_write_uint(&w, MSG_AWARENESS);
        yjs_write_array(&w, inner.data, inner.len);
        if (inner.err != 0)
            w.err = inner.err;
        yjs_writer_release(&inner);
        if (yjs_writer_finish(&w, &trimmed, &trimmed_len) != 0)
            return;
        msg = trimmed;
        msg_len = trimmed_len;
    }
    /* The entries point into the old state and the message; the new state
     * is built from them before it replaces the old one. */
    conn_set_awareness(conn, next, n_next);
    party_room_broadcast(room, msg, msg_len, 1, NULL, 0, NULL);
    free(trimmed);
}

/* Tells the others that conn's awareness clients are gone (state null). */
static void broadcast_awareness_removed(party_room *room, party_conn *conn) {
    awareness_entry e[MAX_AWARENESS_CLIENTS];
    size_t n = conn_awareness(conn, e), i;
    yjs_writer inner, w;
    uint8_t *msg;
    size_t msg_len;
    const char *exclude[1];

    if (n == 0)
        return;
    yjs_writer_init(&inner, PARTY_MAX_CONN_STATE + 64);
    yjs_write_uint(&inner, n);
    for (i = 0; i < n; i++) {
        yjs_write_uint(&inner, e[i].client);
        yjs_write_uint(&inner, e[i].clock + 1);
        yjs_write_array(&inner, "null", 4);
    }
    yjs_writer_init(&w, PARTY_MAX_CONN_STATE + 128);
    yjs_write_uint(&w, MSG_AWARENESS);
    yjs_write_array(&w, inner.data, inner.len);
    if (inner.err != 0)
        w.err = inner.err;
    yjs_writer_release(&inner);
    if (yjs_writer_finish(&w, &msg, &msg_len) != 0)
        return;
    exclude[0] = party_conn_id(conn);
    party_room_broadcast(room, msg, msg_len, 1, exclude, 1, NULL);
    free(msg);
}

/* An update from conn: checked, stored, then relayed to the others as an
 * Update message (msg itself when it already is one). */
static void handle_update(party_room *room, party_conn *conn, yjs_room *y, const uint8_t *update,
                          size_t len, const void *msg, size_t msg_len, int is_update_msg) {
    const char *exclude[1];
    uint8_t *relay = NULL;
    size_t relay_len = 0, n_structs, n_ranges;
    const char *limit;
    char reason[96];
    int merged, rc;

    if (party_yjs_conn_readonly(conn))
        return; /* read-only: may sync, not write */
    rc = yjs_update_measure(update, len, &n_structs, &n_ranges);
    if (rc == PARTY_ETOOBIG) {
        party_conn_close(conn, 1009, "Yjs update too big");
        return;
    }
    if (rc != 0) {
        party_conn_close(conn, rc == PARTY_ENOMEM ? 1011 : 1003, "invalid Yjs update");
        return;
    }
    if (yjs_update_is_empty(update, len))
        return;
    /* Refused before it is stored: once stored, an update that made the
     * document unmergeable would break the room for everyone. */
    if ((limit = room_admit(y, update, len, n_structs, n_ranges, &merged)) != NULL) {
        party_room_log(room, PARTY_LOG_WARN, "update of %zu bytes refused: document %s limit", len,
                       limit);
        snprintf(reason, sizeof(reason), "Yjs document %s limit reached", limit);
        party_conn_close(conn, 1009, reason);
        return;
    }
    if (db_append(room, update, len) != 0 ||
        (!merged && pending_push(y, update, len, n_structs, n_ranges) != 0)) {
        party_conn_close(conn, 1011, "cannot store the update");
        return;
    }
    y->rows++;
    y->row_bytes += len;
    if (!is_update_msg) {
        yjs_writer w;
        yjs_writer_init(&w, YJS_MAX_UPDATE + 32);
        yjs_write_uint(&w, MSG_SYNC);
        yjs_write_uint(&w, SYNC_UPDATE);
        yjs_write_array(&w, update, len);
        if (yjs_writer_finish(&w, &relay, &relay_len) != 0) {
            party_conn_close(conn, 1011, "out of memory");
            return;
        }
        msg = relay;
        msg_len = relay_len;
    }
    exclude[0] = party_conn_id(conn);
    party_room_broadcast(room, msg, msg_len, 1, exclude, 1, NULL);
    free(relay);
    if (y->rows > y->compact_rows || y->row_bytes - y->compacted_bytes > y->compact_bytes) {
        rc = log_compact(room, y);
        if (rc != 0)
            party_conn_close(conn, 1011, "cannot compact the document");
    } else if (y->n_pending >= 64) {
        /* Keep the pending list short; the log stays as it is. */
        (void)doc_flush(y);
    }
}

static void handle_sync(party_room *room, party_conn *conn, yjs_room *y, yjs_reader *r,
                        const void *msg, size_t msg_len) {
    uint64_t subtype;
    const uint8_t *payload;
    size_t len;
    uint8_t *diff;
    size_t diff_len;
    int rc;

    if (yjs_read_uint(r, &subtype) != 0 || yjs_read_array(r, &payload, &len) != 0)
        return;
    switch (subtype) {
    case SYNC_STEP1:
        if (doc_flush(y) != 0) {
            party_conn_close(conn, 1011, "cannot read the document");
            return;
        }
        rc = yjs_diff(y->doc, y->doc_len, payload, len, &diff, &diff_len);
        if (rc != 0) {
            /* Else a malformed state vector: the client is broken. */
            party_conn_close(conn, rc == PARTY_ENOMEM ? 1011 : 1003,
                             rc == PARTY_ENOMEM ? "out of memory" : "invalid Yjs state vector");
            return;
        }
        /* Unanswered, the client would wait for the document forever. */
        if (send_sync(conn, SYNC_STEP2, diff, diff_len) != 0)
            party_conn_close(conn, 1011, "cannot send the document");
        free(diff);
        return;
    case SYNC_STEP2:
    case SYNC_UPDATE:
        handle_update(room, conn, y, payload, len, msg, msg_len, subtype == SYNC_UPDATE);
        return;
    default:
        return;
    }
}

/* ---- the party's callbacks ------------------------------------------------------ */

static int step1_after_wake_cb(party_conn *conn, void *arg) {
    size_t len;
    const uint8_t *state = party_conn_state(conn, &len);
    /* Only connections that were here before: a new one gets its Step 1
     * from on_connect. */
    if (state != NULL && len > 0 && state[0] == CONN_STATE_MAGIC && send_step1(conn, arg) != 0)
        party_conn_close(conn, 1011, "cannot read the document");
    return 0;
}

int party_yjs_on_start(party_room *room, const char *props) {
    sqlite3 *db = party_room_db(room);
    sqlite3_stmt *st = NULL;
    yjs_room *y = calloc(1, sizeof(*y));
    int rc = 0, step;
    (void)props;

    if (y == NULL)
        return -1;
    y->room = room;
    y->compact_rows = env_number("PARTYD_YJS_COMPACT_ROWS", DEFAULT_COMPACT_ROWS);
    y->compact_bytes =
        (size_t)env_number("PARTYD_YJS_COMPACT_BYTES", (long long)DEFAULT_COMPACT_BYTES);
    y->gc_deleted = env_number("PARTYD_YJS_GC_DELETED", 0) == 1;
    y->doc = malloc(2);
    if (db == NULL || y->doc == NULL)
        goto fail;
    memcpy(y->doc, "\x00\x00", 2); /* the empty update */
    y->doc_len = 2;
    if (db_exec(db, "CREATE TABLE IF NOT EXISTS yjs_updates ("
                    "id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL)") != 0)
        goto fail;
    if (sqlite3_prepare_v2(db, "SELECT data FROM yjs_updates ORDER BY id", -1, &st, NULL) !=
        SQLITE_OK)
        goto fail;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        if (load_row(y, data, len) != 0)
            goto fail;
        if (y->n_pending >= 64 && doc_flush(y) != 0)
            goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (step != SQLITE_DONE || doc_flush(y) != 0)
        goto fail;
    y->compacted_bytes = y->doc_len < y->row_bytes ? y->doc_len : y->row_bytes;
    party_room_set_state(room, y);
    /* After a hibernation wake-up (connections kept, memory dropped) each
     * client may have missed nothing, but a Step 1 makes sure both sides
     * hold everything. */
    party_room_foreach_conn(room, NULL, step1_after_wake_cb, y);
    return rc;
fail:
    sqlite3_finalize(st);
    yjs_room_free(y);
    return -1;
}

void party_yjs_on_connect(party_room *room, party_conn *conn, const party_request *req) {
    yjs_room *y = party_room_state(room);
    (void)req;

    /* Marks the connection as synced once (see step1_after_wake_cb). */
    conn_set_awareness(conn, NULL, 0);
    if (send_step1(conn, y) != 0) {
        party_conn_close(conn, 1011, "cannot read the document");
        return;
    }
    send_all_awareness(room, conn);
}

void party_yjs_on_message_with(party_room *room, party_conn *conn, const void *data, size_t len,
                               int binary, party_yjs_custom_cb custom) {
    yjs_room *y = party_room_state(room);
    yjs_reader r = yjs_reader_make(data, len);
    uint64_t type;
    const uint8_t *payload;
    size_t payload_len;

    if (!binary) {
        if (len >= CUSTOM_PREFIX_LEN && memcmp(data, CUSTOM_PREFIX, CUSTOM_PREFIX_LEN) == 0) {
            const char *text = (const char *)data + CUSTOM_PREFIX_LEN;
            if (custom != NULL)
                custom(room, conn, text, len - CUSTOM_PREFIX_LEN);
            else
                party_yjs_broadcast_custom(room, text, len - CUSTOM_PREFIX_LEN, conn);
        }
        return;
    }
    if (yjs_read_uint(&r, &type) != 0)
        return;
    switch (type) {
    case MSG_SYNC:
        handle_sync(room, conn, y, &r, data, len);
        return;
    case MSG_AWARENESS:
        if (yjs_read_array(&r, &payload, &payload_len) == 0)
            handle_awareness(room, conn, data, len, payload, payload_len);
        return;
    case MSG_QUERY_AWARENESS:
        send_all_awareness(room, conn);
        return;
    default: /* MSG_AUTH is server to client only; others are unknown */
        return;
    }
}

void party_yjs_on_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    party_yjs_on_message_with(room, conn, data, len, binary, NULL);
}

void party_yjs_on_close(party_room *room, party_conn *conn, int code, const char *reason,
                        int was_clean) {
    (void)code;
    (void)reason;
    (void)was_clean;
    broadcast_awareness_removed(room, conn);
}

int party_yjs_connection_tags(party_room *room, party_conn *conn, const party_request *req,
                              const char **tags, size_t max) {
    const char *ro = party_request_query(req, "readonly");
    (void)room;
    (void)conn;
    if (max > 0 && ro != NULL && (strcmp(ro, "1") == 0 || strcmp(ro, "true") == 0)) {
        tags[0] = PARTY_YJS_READONLY_TAG;
        return 1;
    }
    return 0;
}

int party_yjs_conn_readonly(party_conn *conn) {
    const char *const *tags;
    size_t n = party_conn_tags(conn, &tags), i;
    for (i = 1; i < n; i++) {
        if (strcmp(tags[i], PARTY_YJS_READONLY_TAG) == 0)
            return 1;
    }
    return 0;
}

void party_yjs_free_state(void *state) {
    yjs_room_free(state);
}

static int custom_frame(const char *msg, size_t len, char **out, size_t *out_len) {
    char *frame = malloc(CUSTOM_PREFIX_LEN + len + 1);
    if (frame == NULL)
        return PARTY_ENOMEM;
    memcpy(frame, CUSTOM_PREFIX, CUSTOM_PREFIX_LEN);
    memcpy(frame + CUSTOM_PREFIX_LEN, msg, len);
    frame[CUSTOM_PREFIX_LEN + len] = '\0';
    *out = frame;
    *out_len = CUSTOM_PREFIX_LEN + len;
    return 0;
}

int party_yjs_send_custom(party_conn *conn, const char *msg, size_t len) {
    char *frame;
    size_t frame_len;
    int rc = custom_frame(msg, len, &frame, &frame_len);
    if (rc != 0)
        return rc;
    rc = party_conn_send(conn, frame, frame_len, 0);
    free(frame);
    return rc;
}

int party_yjs_broadcast_custom(party_room *room, const char *msg, size_t len, party_conn *except) {
    const char *exclude[1];
    char *frame;
    size_t frame_len;
    int rc = custom_frame(msg, len, &frame, &frame_len);
    if (rc != 0)
        return rc;
    if (except != NULL)
        exclude[0] = party_conn_id(except);
    rc = party_room_broadcast(room, frame, frame_len, 0, exclude, except != NULL ? 1 : 0, NULL);
    free(frame);
    return rc;
}

static const party_def yjs_def = {
    .name = "yjs",
    .hibernate = 1,
    .on_start = party_yjs_on_start,
    .on_connect = party_yjs_on_connect,
    .on_message = party_yjs_on_message,
    .on_close = party_yjs_on_close,
    .connection_tags = party_yjs_connection_tags,
    .free_state = party_yjs_free_state,
};

const party_def *party_builtin_yjs(void) {
    return &yjs_def;
}
