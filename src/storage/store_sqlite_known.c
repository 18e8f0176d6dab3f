/* store_sqlite_known: the rooms of a data directory that may have records,
 * kept in memory so that a new room is told from a cold one without a
 * read: a set of 32-bit fingerprints of room ids, filled when the backend
 * opens (every room its shards list, every file under rooms/) and on every
 * load. A room whose fingerprint is absent has no row in its shard and no
 * file of its own: it loads empty on the loop thread (load_quick). A
 * fingerprint present only sends the load the long way (it may be another
 * room's): the set never says "new" of a room that has records.
 *
 * That holds while nothing writes a room's records into the data
 * directory that this process's set has not seen. Who keeps it: the LOCK
 * (one partyd per directory; the CLI subcommands only speak HTTP); load
 * and load_quick add a room before it can write, and a room is loaded on
 * one loop at a time; the set only grows while the backend is open
 * (eviction, a failed first commit, a room made again: the long way); a
 * set that cannot grow, or a rooms/ directory that cannot be listed
 * whole, answers "maybe" to every room. In an upgrade the new process
 * opens once the old one has committed and hibernated every room, and
 * the old one loads no room after the hand-over (party__room_load). The
 * one other writer is a new process that took over and then died: the
 * old process, serving again, waits for its exit and rescans (upgrade.c)
 * before its loops thaw. */
#include "store_sqlite_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

/* The id's hash; 0 marks an empty slot, so 0 is taken as 1. */
static uint32_t fingerprint(const char *id, size_t len) {
    uint32_t h = party__id_hash(id, len);
    return h != 0 ? h : 1;
}

/* The slot of fp in a table of cap (a power of two) slots: where it is,
 * or the empty slot where it would go (linear probing). */
static size_t slot_of(const uint32_t *slots, size_t cap, uint32_t fp) {
    size_t i = fp & (cap - 1);
    while (slots[i] != 0 && slots[i] != fp)
        i = (i + 1) & (cap - 1);
    return i;
}

/* Adds under known_mutex. 0, or PARTY_ENOMEM (the set cannot grow: it no
 * longer answers "absent", so every load goes the long way). */
static int known_put_locked(sqlite_backend *be, uint32_t fp) {
    size_t at;

    if (be->known_broken)
        return PARTY_ENOMEM;
    if ((be->known_n + 1) * 2 > be->known_cap) {
        size_t cap = be->known_cap != 0 ? be->known_cap * 2 : 1024, i;
        uint32_t *slots = party__calloc(cap, sizeof(*slots));
        if (slots == NULL) {
            be->known_broken = 1;
            return PARTY_ENOMEM;
        }
        for (i = 0; i < be->known_cap; i++)
            if (be->known[i] != 0)
                slots[slot_of(slots, cap, be->known[i])] = be->known[i];
        party__free(be->known);
        be->known = slots;
        be->known_cap = cap;
    }
    at = slot_of(be->known, be->known_cap, fp);
    if (be->known[at] == 0) {
        be->known[at] = fp;
        be->known_n++;
    }
    return 0;
}

int party__sqlite_known_init(sqlite_backend *be) {
    if (uv_mutex_init(&be->known_mutex) != 0)
        return PARTY_ENOMEM;
    be->known_mutex_ok = 1;
    return 0;
}

void party__sqlite_known_free(sqlite_backend *be) {
    party__free(be->known);
    be->known = NULL;
    be->known_cap = be->known_n = 0;
    if (be->known_mutex_ok)
        uv_mutex_destroy(&be->known_mutex);
    be->known_mutex_ok = 0;
}

int party__sqlite_known_add(sqlite_backend *be, const char *room_id) {
    int r;
    uv_mutex_lock(&be->known_mutex);
    r = known_put_locked(be, fingerprint(room_id, strlen(room_id)));
    uv_mutex_unlock(&be->known_mutex);
    return r;
}

int party__sqlite_known_claim(sqlite_backend *be, const char *room_id) {
    uint32_t fp = fingerprint(room_id, strlen(room_id));
    int absent = 0;

    uv_mutex_lock(&be->known_mutex);
    if (!be->known_broken && be->known_cap > 0) {
        absent = be->known[slot_of(be->known, be->known_cap, fp)] == 0;
    } else if (!be->known_broken) {
        absent = 1;
    }
    /* Known from now on, whatever happens to the load: the room may write
     * rows from its first commit on. A set that cannot take it answers
     * "maybe" to everything. */
    if (absent && known_put_locked(be, fp) != 0)
        absent = 0;
    uv_mutex_unlock(&be->known_mutex);
    return absent;
}

/* Every room its shard lists. */
static int known_fill_shard(sqlite_backend *be, shard *sh, char *why, size_t why_len) {
    sqlite3_stmt *stmt = NULL;
    int rc, r = 0;

    if (sqlite3_prepare_v2(sh->writer, "SELECT room_id FROM _party_rooms", -1, &stmt, NULL) !=
        SQLITE_OK) {
        snprintf(why, why_len, "%s: cannot list its rooms: %s", sh->path,
                 sqlite3_errmsg(sh->writer));
        return PARTY_EIO;
    }
    while (r == 0 && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(stmt, 0);
        if (id != NULL)
            r = party__sqlite_known_add(be, id);
    }
    if (r == 0 && rc != SQLITE_DONE) {
        snprintf(why, why_len, "%s: cannot list its rooms: %s", sh->path,
                 sqlite3_errmsg(sh->writer));
        r = PARTY_EIO;
    } else if (r != 0) {
        snprintf(why, why_len, "out of memory");
    }
    sqlite3_finalize(stmt);
    return r;
}

/* Every file under <data>/rooms/<xx>/ (own files, an earlier partyd's
 * files, what a move left): its name less ".db" and the SQLite suffixes is
 * a room id that may have records. Whatever is not a room's name only adds
 * a fingerprint no room uses (or a room goes the long way). A directory
 * that cannot be listed (out of descriptors, no permission, a loop of
 * links) is not taken for an empty one: PARTY_EIO, as a file in it may
 * be an earlier partyd's room that its shard does not list. */
static int known_fill_files(sqlite_backend *be, char *why, size_t why_len) {
    char dir[4096], sub[4096];
    DIR *top, *d;
    struct dirent *e, *f;
    int r = 0;

    snprintf(dir, sizeof(dir), "%s/rooms", be->data_dir);
    top = opendir(dir);
    if (top == NULL && errno == ENOENT)
        return 0; /* no own file yet */
    if (top == NULL) {
        snprintf(why, why_len, "%s: cannot list it: %s", dir, strerror(errno));
        return PARTY_EIO;
    }
    while (r == 0) {
        errno = 0;
        if ((e = readdir(top)) == NULL) {
            if (errno != 0) {
                snprintf(why, why_len, "%s: cannot list it: %s", dir, strerror(errno));
                r = PARTY_EIO;
            }
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= sizeof(sub))
            continue;
        d = opendir(sub);
        if (d == NULL && (errno == ENOTDIR || errno == ENOENT))
            continue; /* not a directory, or gone since */
        if (d == NULL) {
            snprintf(why, why_len, "%s: cannot list it: %s", sub, strerror(errno));
            r = PARTY_EIO;
            break;
        }
        while (r == 0) {
            const char *dot;
            errno = 0;
            if ((f = readdir(d)) == NULL) {
                if (errno != 0) {
                    snprintf(why, why_len, "%s: cannot list it: %s", sub, strerror(errno));
                    r = PARTY_EIO;
                }
                break;
            }
            dot = strchr(f->d_name, '.');
            if (f->d_name[0] == '.' || dot == NULL)
                continue;
            uv_mutex_lock(&be->known_mutex);
            r = known_put_locked(be, fingerprint(f->d_name, (size_t)(dot - f->d_name)));
            uv_mutex_unlock(&be->known_mutex);
            if (r != 0)
                snprintf(why, why_len, "out of memory");
        }
        closedir(d);
    }
    closedir(top);
    return r;
}

/* The set answers "maybe" to every room from now on. */
static void known_break(sqlite_backend *be) {
    uv_mutex_lock(&be->known_mutex);
    be->known_broken = 1;
    uv_mutex_unlock(&be->known_mutex);
}

int party__sqlite_known_fill(sqlite_backend *be, char *why, size_t why_len) {
    unsigned k;
    int r = 0;
    for (k = 0; r == 0 && k < be->n_shards; k++)
        r = known_fill_shard(be, &be->shards[k], why, why_len);
    if (r == 0 && be->data_dir != NULL && known_fill_files(be, why, why_len) != 0) {
        /* The rooms' files cannot be listed whole: every load goes the
         * long way, which reads each room's own path. */
        known_break(be);
        why[0] = '\0';
    }
    return r;
}

void party__sqlite_known_rescan(sqlite_backend *be) {
    char why[512];
    unsigned k;
    int r = 0;

    /* Only adds: a load_quick of another loop meanwhile finds the set as
     * it was or larger, never smaller. The shard's writer is its commits'
     * too: taken as they take it. */
    for (k = 0; r == 0 && k < be->n_shards; k++) {
        uv_mutex_lock(&be->shards[k].write_mutex);
        r = known_fill_shard(be, &be->shards[k], why, sizeof(why));
        uv_mutex_unlock(&be->shards[k].write_mutex);
    }
    if (r == 0 && be->data_dir != NULL)
        r = known_fill_files(be, why, sizeof(why));
    if (r != 0)
        known_break(be); /* a room it could not list may have records */
}
