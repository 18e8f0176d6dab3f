/* Crash safety end to end: clients drive the counter party as fast as its
 * replies come while partyd is killed with SIGKILL at a random moment and
 * restarted on the same data directory, several times over. No value a
 * client saw may be lost, no count may pass the messages sent, and every
 * file holding rooms' records (the shared rooms-<k>.db, and any room's own
 * file) must pass PRAGMA integrity_check, both as the crash left it and
 * after the last restart.
 *
 * One test runs the same with one of the rooms a room with a file of its
 * own (the counter room of a data directory an earlier partyd wrote), and
 * one with 32 rooms of one connection each, whose commits are grouped.
 *
 * The mixed test (20 crashes) adds to that load, all along: reminders and
 * alarms set over HTTP on the reminder party (each acknowledged by a 201
 * that the output gate holds until it is durable), and connections opened
 * for one increment and closed again. After each restart every
 * acknowledged reminder and alarm must fire (at least once, also those
 * that came due while partyd was down).
 *
 * PARTY_CRASH_CYCLES (default 5, mixed 20) sets the number of crashes per
 * test; PARTY_CRASH_ONLY=<test name pattern> runs only matching tests
 * (scripts/crash.sh runs the mixed one for 200 cycles); PARTY_CRASH_SEED
 * replays the crash moments of an earlier run (the seed is printed). A
 * failing run keeps its data directory (printed too) for a post-mortem; a
 * passing one removes it. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define N_ROOMS 3
#define N_CONNS 4
#define MANY_ROOMS 32 /* the many-rooms test: one connection each */
#define MAX_ROOMS MANY_ROOMS
#define MAX_CONNS MANY_ROOMS
#define N_EXTRA 4 /* mixed load: short-lived connections at once */
#define DEFAULT_CYCLES 5
#define MIXED_CYCLES 20
#define MAX_REMINDERS 4096
#define REMINDER_EVERY_MS 30
#define CONNECT_EVERY_MS 20
#define MAX_CYCLES 1000
#define CRASH_MIN_MS 100
#define CRASH_MAX_MS 400

typedef struct room_track {
    char name[32];
    long long sent;       /* messages sent to the room, over all cycles */
    long long acked;      /* highest value any client was answered */
    long long base;       /* the count when the current cycle started */
    long long cycle_sent; /* messages sent in the current cycle */
    long long cycle_acks; /* replies received in the current cycle */
    long long disk;       /* the count in the file the last crash left */
    int on_disk;          /* disk is known */
} room_track;

typedef struct load_conn {
    tconn *c;
    int room;
    int in_flight;  /* a message was sent and its reply has not come */
    long long last; /* the last value this connection was answered */
    int one_shot;   /* mixed load: closes after its one reply */
} load_conn;

/* An acknowledged reminder (or alarm: name "alarm") that must fire. */
typedef struct reminder {
    char room[32];
    char name[32];
    int fired; /* seen in the room's record */
} reminder;

typedef struct mixed_state {
    reminder list[MAX_REMINDERS];
    size_t n;
    long cycle;
    int seq;
    long long connects; /* one-shot connections opened in all */
} mixed_state;

static mixed_state *mixed; /* NULL: counter load only */
/* The counter rooms and the connections to them of the running test. */
static int n_rooms = N_ROOMS, n_conns = N_CONNS;

static uint64_t rng_state;

/* splitmix64: a small seeded generator, so a failing run can be replayed. */
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static long env_long(const char *name, long fallback, long min, long max) {
    const char *text = getenv(name);
    char *end;
    long v;
    if (text == NULL || text[0] == '\0')
        return fallback;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "%s=%s is not a number in [%ld, %ld]; using %ld\n", name, text, min, max,
                fallback);
        return fallback;
    }
    return v;
}

/* Parses a whole decimal number; -1 if text is not one. */
static long long parse_count(const char *text, size_t len) {
    long long v = 0;
    size_t i;
    if (len == 0 || len > 18)
        return -1;
    for (i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
    }
    return v;
}

/* ---- partyd on a data directory that outlives it ---- */

/* The client gives every partyd a fresh --data; a second --data wins
 * (getopt keeps the last), so each restart finds the same rooms. */
static partyd *start_on(const char *data_dir, const char *durability) {
    const char *args[] = {"--data", data_dir, "--durability", durability, NULL};
    partyd *d = partyd_start(args);
    if (d == NULL)
        fail_msg("partyd did not start on %s", data_dir);
    return d;
}

static void kill_hard(partyd *d) {
    int status;
    partyd_signal(d, SIGKILL);
    status = partyd_wait_exit(d, TC_TIMEOUT_MS);
    if (status != 128 + SIGKILL) {
        char *err = partyd_stderr(d);
        fprintf(stderr, "partyd stderr:\n%s\n", err != NULL ? err : "");
        free(err);
        fail_msg("partyd should have died of SIGKILL, exit status %d", status);
    }
}

/* Fails if partyd logged an error (a failed commit, a store it could not
 * open): under this load it has no reason to. */
static void expect_no_logged_error(partyd *d, const char *when) {
    char *err = partyd_stderr(d);
    if (err != NULL && strstr(err, "Z error ") != NULL) {
        fprintf(stderr, "partyd stderr:\n%s\n", err);
        free(err);
        fail_msg("partyd logged an error %s", when);
    }
    free(err);
}

/* ---- the load ---- */

static void send_next(load_conn *lc, room_track *rooms) {
    room_track *r = &rooms[lc->room];
    /* Counted before it leaves: a message that may have reached the server
     * can only raise the bound "count <= sent", never break it. */
    r->sent++;
    r->cycle_sent++;
    lc->in_flight = 1;
    if (ws_send_text(lc->c, "+") != 0)
        fail_msg("room %s: cannot send while partyd runs", r->name);
}

/* A reply is the room's new value: above what the room had when the cycle
 * began, above this connection's last value (each message adds one and
 * replies come in order), and at most one per message sent. */
static void take_reply(load_conn *lc, room_track *rooms, ws_frame *f) {
    room_track *r = &rooms[lc->room];
    long long v = f->opcode == WS_TEXT ? parse_count(f->data, f->len) : -1;

    if (v < 0)
        fail_msg("room %s: expected a count, got opcode %d \"%.100s\" (close code %d)", r->name,
                 f->opcode, f->data, f->close_code);
    if (!lc->in_flight)
        fail_msg("room %s: reply %lld to no message", r->name, v);
    if (v <= lc->last || v <= r->base || v > r->base + r->cycle_sent)
        fail_msg("room %s: reply %lld out of order (last on this connection %lld, count at "
                 "start %lld, sent this cycle %lld)",
                 r->name, v, lc->last, r->base, r->cycle_sent);
    lc->in_flight = 0;
    lc->last = v;
    r->cycle_acks++;
    if (v > r->acked)
        r->acked = v;
}

/* Takes every reply already complete on lc; with keep_going, answers each
 * with the next message. */
static void take_ready(load_conn *lc, room_track *rooms, int keep_going) {
    for (;;) {
        ws_frame f;
        int r = ws_recv(lc->c, &f, 0);
        if (r == TC_TIMEOUT)
            return;
        if (r != 0)
            fail_msg("room %s: connection lost while partyd runs (%d)", rooms[lc->room].name, r);
        take_reply(lc, rooms, &f);
        ws_frame_free(&f);
        if (lc->one_shot) {
            tconn_close(lc->c);
            lc->c = NULL;
            return;
        }
        if (keep_going)
            send_next(lc, rooms);
    }
}

/* ---- the mixed load's extras ---- */

/* POSTs a reminder due in 20..600 ms (or the room's one alarm) and, once
 * it is acknowledged with 201, records that it must fire. */
static void post_reminder(int port, int alarm) {
    reminder *r;
    char target[256];
    http_response res;
    int in_ms = 20 + (int)(rng_next() % 581);

    if (mixed->n == MAX_REMINDERS)
        return;
    r = &mixed->list[mixed->n];
    memset(r, 0, sizeof(*r));
    if (alarm) {
        snprintf(r->room, sizeof(r->room), "alarm-%ld", mixed->cycle);
        snprintf(r->name, sizeof(r->name), "alarm");
        snprintf(target, sizeof(target), "/parties/reminder/%s?alarm_in=%d", r->room, in_ms);
    } else {
        /* A room per cycle keeps each under the 50 fired entries it records. */
        snprintf(r->room, sizeof(r->room), "rem-%ld", mixed->cycle);
        snprintf(r->name, sizeof(r->name), "c%ld-%d", mixed->cycle, mixed->seq++);
        snprintf(target, sizeof(target), "/parties/reminder/%s?in=%d&name=%s", r->room, in_ms,
                 r->name);
    }
    http_expect_request(port, "POST", target, NULL, "p", 1, &res);
    if (res.status != 201)
        fail_msg("POST %s: %d %s", target, res.status, res.body);
    http_response_free(&res);
    mixed->n++;
}

/* Opens a connection to a random counter room for one increment. */
static void open_one_shot(int port, room_track *rooms, load_conn *lc) {
    char target[128];
    lc->room = (int)(rng_next() % n_rooms);
    lc->in_flight = 0;
    lc->last = 0;
    lc->one_shot = 1;
    snprintf(target, sizeof(target), "/parties/counter/%s", rooms[lc->room].name);
    lc->c = ws_open(port, target);
    mixed->connects++;
    send_next(lc, rooms);
}

/* Every acknowledged reminder and alarm has fired (or fires within 10 s:
 * those due while partyd was down fire after its start). only_new: skip
 * those already seen fired (their record is checked again at the end). */
static void expect_reminders_fired(int port, int only_new) {
    int64_t deadline = test_now_ms() + 10000;
    size_t i, missing;

    for (;;) {
        const char *last_room = "";
        char *body = NULL;
        missing = 0;
        for (i = 0; i < mixed->n; i++) {
            reminder *r = &mixed->list[i];
            char needle[96];
            if (only_new && r->fired)
                continue;
            if (body == NULL || strcmp(r->room, last_room) != 0) {
                free(body);
                body = room_expect_record(port, "reminder", r->room);
                last_room = r->room;
            }
            snprintf(needle, sizeof(needle), "\"name\":\"%s\",\"room\":\"%s\"", r->name, r->room);
            r->fired = strstr(body, needle) != NULL;
            if (!r->fired)
                missing++;
        }
        free(body);
        if (missing == 0)
            return;
        if (test_now_ms() > deadline) {
            for (i = 0; i < mixed->n; i++)
                if (!mixed->list[i].fired)
                    fprintf(stderr, "  never fired: %s in %s\n", mixed->list[i].name,
                            mixed->list[i].room);
            fail_msg("%zu acknowledged reminders or alarms did not fire within 10 s", missing);
        }
        /* The reminders' own timers are what we wait for; look again soon. */
        poll(NULL, 0, 50);
    }
}

/* Opens the connections and keeps one message in flight on each until the
 * deadline. */
static void run_load(int port, room_track *rooms, load_conn *conns, int64_t until) {
    struct pollfd pfd[MAX_CONNS + N_EXTRA];
    int64_t next_reminder = test_now_ms(), next_connect = test_now_ms();
    int i, n_all = mixed != NULL ? n_conns + N_EXTRA : n_conns;

    for (i = n_conns; i < n_all; i++)
        conns[i].c = NULL;
    if (mixed != NULL)
        post_reminder(port, 1);
    for (i = 0; i < n_conns; i++) {
        char target[128];
        conns[i].room = i % n_rooms;
        conns[i].in_flight = 0;
        conns[i].last = 0;
        snprintf(target, sizeof(target), "/parties/counter/%s", rooms[conns[i].room].name);
        conns[i].one_shot = 0;
        conns[i].c = ws_open(port, target);
        send_next(&conns[i], rooms);
    }
    while (test_now_ms() < until) {
        int left = (int)(until - test_now_ms());
        if (mixed != NULL) {
            int64_t now = test_now_ms();
            if (now >= next_reminder) {
                post_reminder(port, 0);
                next_reminder = now + REMINDER_EVERY_MS;
            }
            if (now >= next_connect) {
                for (i = n_conns; i < n_all; i++)
                    if (conns[i].c == NULL) {
                        open_one_shot(port, rooms, &conns[i]);
                        break;
                    }
                next_connect = now + CONNECT_EVERY_MS;
            }
            if (left > 10)
                left = 10;
        }
        for (i = 0; i < n_all; i++) {
            pfd[i].fd = conns[i].c != NULL ? conns[i].c->fd : -1;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)n_all, left > 0 ? left : 0) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        for (i = 0; i < n_all; i++)
            if (pfd[i].revents != 0 && conns[i].c != NULL)
                take_ready(&conns[i], rooms, 1);
    }
}

/* After the kill: replies that reached our sockets before partyd died were
 * answers too, so they count as acknowledged. Then the connections end. */
static void drain_after_crash(load_conn *conns, room_track *rooms) {
    int i;
    for (i = 0; i < n_conns + N_EXTRA; i++) {
        if (conns[i].c == NULL)
            continue;
        for (;;) {
            ws_frame f;
            int r = ws_recv(conns[i].c, &f, TC_TIMEOUT_MS);
            if (r == TC_EOF || r == TC_RESET || r == TC_BAD)
                break; /* TC_BAD: a frame cut by the kill, which answered nothing */
            if (r != 0)
                fail_msg("room %s: the connection outlived partyd (%d)", rooms[conns[i].room].name,
                         r);
            take_reply(&conns[i], rooms, &f);
            ws_frame_free(&f);
        }
        tconn_close(conns[i].c);
        conns[i].c = NULL;
    }
}

/* ---- files of rooms' records ---- */

typedef int (*db_fn)(const char *path, void *arg);

/* Calls fn for every file that holds rooms' records: the shared
 * <dir>/rooms-<k>.db and the own files <dir>/rooms/xx/<id>.db; returns
 * the number of files. */
static int for_each_room_file(const char *dir, db_fn fn, void *arg) {
    char rooms_dir[512];
    DIR *top;
    struct dirent *shard;
    int n = 0;

    top = opendir(dir);
    if (top == NULL)
        fail_msg("cannot open %s: %s", dir, strerror(errno));
    while ((shard = readdir(top)) != NULL) {
        size_t len = strlen(shard->d_name);
        char path[2048];
        if (strncmp(shard->d_name, "rooms-", 6) != 0 || len < 4 ||
            strcmp(shard->d_name + len - 3, ".db") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, shard->d_name);
        n++;
        if (fn(path, arg) != 0) {
            closedir(top);
            fail_msg("%s: check failed", path);
        }
    }
    closedir(top);
    snprintf(rooms_dir, sizeof(rooms_dir), "%s/rooms", dir);
    top = opendir(rooms_dir);
    if (top == NULL && errno == ENOENT)
        return n; /* no room has a file of its own */
    if (top == NULL)
        fail_msg("cannot open %s: %s", rooms_dir, strerror(errno));
    while ((shard = readdir(top)) != NULL) {
        char shard_dir[1024];
        DIR *sub;
        struct dirent *e;
        if (shard->d_name[0] == '.')
            continue;
        snprintf(shard_dir, sizeof(shard_dir), "%s/%s", rooms_dir, shard->d_name);
        sub = opendir(shard_dir);
        if (sub == NULL)
            continue;
        while ((e = readdir(sub)) != NULL) {
            size_t len = strlen(e->d_name);
            char path[2048];
            if (len < 4 || strcmp(e->d_name + len - 3, ".db") != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", shard_dir, e->d_name);
            n++;
            if (fn(path, arg) != 0) {
                closedir(sub);
                closedir(top);
                fail_msg("%s: check failed", path);
            }
        }
        closedir(sub);
    }
    closedir(top);
    return n;
}

static int integrity_row(void *arg, int n, char **values, char **names) {
    char *result = arg;
    size_t used = strlen(result);
    (void)names;
    if (n > 0 && values[0] != NULL)
        snprintf(result + used, 1024 - used, "%s%s", used > 0 ? "; " : "", values[0]);
    return 0;
}

/* A room found in a file: its name and count (-1 when it has none yet).
 * 0, or -1 after printing why. */
typedef int (*room_fn)(const char *path, const char *name, long long count, void *arg);

/* Opens path, checks its integrity and calls fn for each room it holds
 * records of (a shared file: every room with a name; an own file: its
 * room). 0, or -1 after printing why. */
static int read_room_file(const char *path, room_fn fn, void *arg) {
    char result[1024] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int ok = -1, shared, rc;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: cannot open: %s\n", path, db ? sqlite3_errmsg(db) : "?");
        goto out;
    }
    if (sqlite3_exec(db, "PRAGMA integrity_check", integrity_row, result, NULL) != SQLITE_OK ||
        strcmp(result, "ok") != 0) {
        fprintf(stderr, "%s: integrity_check: %s (%s)\n", path, result, sqlite3_errmsg(db));
        goto out;
    }
    shared = sqlite3_table_column_metadata(db, NULL, "_party_rooms", "room_id", NULL, NULL, NULL,
                                           NULL, NULL) == SQLITE_OK;
    if (sqlite3_prepare_v2(db,
                           shared
                               ? "SELECT m.value, k.value FROM _party_meta m LEFT JOIN _party_kv k"
                                 " ON k.room_id = m.room_id AND k.key = 'count'"
                                 " WHERE m.key = 'name'"
                               : "SELECT (SELECT value FROM _party_meta WHERE key = 'name'),"
                                 " (SELECT value FROM _party_kv WHERE key = 'count')",
                           -1, &stmt, NULL) != SQLITE_OK)
        goto sql_error;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);
        long long count = -1;
        if (sqlite3_column_type(stmt, 1) != SQLITE_NULL) {
            count =
                parse_count(sqlite3_column_blob(stmt, 1), (size_t)sqlite3_column_bytes(stmt, 1));
            if (count < 0) {
                fprintf(stderr, "%s: room %s: stored count is not a number\n", path,
                        name != NULL ? name : "");
                sqlite3_finalize(stmt);
                goto out;
            }
        }
        if (fn(path, name != NULL ? name : "", count, arg) != 0) {
            sqlite3_finalize(stmt);
            goto out;
        }
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        goto sql_error;
    ok = 0;
    goto out;
sql_error:
    fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
out:
    sqlite3_close(db);
    return ok;
}

static int copy_file(const char *from, const char *to) {
    char chunk[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n = 0;

    if (in < 0)
        return errno == ENOENT ? 0 : -1; /* no -wal: nothing to copy */
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((n = read(in, chunk, sizeof(chunk))) > 0)
        if (write(out, chunk, (size_t)n) != n) {
            n = -1;
            break;
        }
    close(in);
    close(out);
    return n < 0 ? -1 : 0;
}

typedef struct crashed_check {
    const char *scratch;
    room_track *rooms;
    int counter_files;
} crashed_check;

/* The mixed load's reminder rooms: checked for integrity like the others,
 * their contents through partyd. */
static int is_reminder_room(const char *name) {
    return strncmp(name, "rem-", 4) == 0 || strncmp(name, "alarm-", 6) == 0;
}

static room_track *find_room(room_track *rooms, const char *name) {
    int i;
    for (i = 0; i < n_rooms; i++)
        if (strcmp(rooms[i].name, name) == 0)
            return &rooms[i];
    return NULL;
}

static int crashed_room(const char *path, const char *name, long long count, void *arg) {
    crashed_check *cc = arg;
    room_track *room;
    if (name[0] == '\0' || (mixed != NULL && is_reminder_room(name)))
        return 0;
    cc->counter_files++;
    room = find_room(cc->rooms, name);
    if (room == NULL) {
        fprintf(stderr, "%s: room '%s' is none of the test's\n", path, name);
        return -1;
    }
    room->disk = count < 0 ? 0 : count;
    room->on_disk = 1;
    return 0;
}

/* A file as the crash left it, examined on a copy (the database and its
 * WAL) so that partyd itself recovers the original on restart. */
static int check_crashed_file(const char *path, void *arg) {
    crashed_check *cc = arg;
    char db[1024], wal[1024], from_wal[2100];
    int r;

    snprintf(db, sizeof(db), "%s/copy.db", cc->scratch);
    snprintf(wal, sizeof(wal), "%s/copy.db-wal", cc->scratch);
    snprintf(from_wal, sizeof(from_wal), "%s-wal", path);
    unlink(wal);
    if (copy_file(path, db) != 0 || copy_file(from_wal, wal) != 0) {
        fprintf(stderr, "%s: cannot copy into %s\n", path, cc->scratch);
        return -1;
    }
    r = read_room_file(db, crashed_room, cc);
    unlink(db);
    unlink(wal);
    snprintf(db, sizeof(db), "%s/copy.db-shm", cc->scratch);
    unlink(db);
    return r;
}

typedef struct final_check {
    room_track *rooms;
    long long counts[MAX_ROOMS];
    int counter_files;
} final_check;

static int final_room(const char *path, const char *name, long long count, void *arg) {
    final_check *fc = arg;
    room_track *room;
    if (name[0] == '\0' || (mixed != NULL && is_reminder_room(name)))
        return 0;
    fc->counter_files++;
    room = find_room(fc->rooms, name);
    if (room == NULL) {
        fprintf(stderr, "%s: room '%s' is none of the test's\n", path, name);
        return -1;
    }
    fc->counts[room - fc->rooms] = count < 0 ? 0 : count;
    return 0;
}

static int check_final_file(const char *path, void *arg) {
    return read_room_file(path, final_room, arg);
}

/* The runtime's own databases next to rooms/ (the alarm index): intact too. */
static void check_runtime_files(const char *dir) {
    DIR *top = opendir(dir);
    struct dirent *e;

    if (top == NULL)
        fail_msg("cannot open %s: %s", dir, strerror(errno));
    while ((e = readdir(top)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[1024], result[1024] = "";
        sqlite3 *db = NULL;
        int rc;
        if (len < 4 || strcmp(e->d_name + len - 3, ".db") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, "PRAGMA integrity_check", integrity_row, result, NULL);
        sqlite3_close(db);
        if (rc != SQLITE_OK || strcmp(result, "ok") != 0) {
            closedir(top);
            fail_msg("%s: integrity_check: %s (%d)", path, result, rc);
        }
        printf("  final: %s: integrity ok\n", e->d_name);
    }
    closedir(top);
}

/* ---- the test ---- */

/* After a restart: every acknowledged value survived, nothing counted
 * twice, and partyd serves exactly what the crashed file held. */
static void check_after_restart(int port, room_track *rooms, int cycle) {
    int i;
    for (i = 0; i < n_rooms; i++) {
        room_track *r = &rooms[i];
        long long count = counter_expect_count(port, r->name);
        printf("  cycle %d: room %s: count %lld (acked %lld, sent %lld, on disk %lld)\n", cycle,
               r->name, count, r->acked, r->sent, r->on_disk ? r->disk : 0);
        if (count < r->acked)
            fail_msg("room %s: LOST ACKNOWLEDGED WRITES: count %lld after restart, but a client "
                     "was answered %lld before the crash",
                     r->name, count, r->acked);
        if (count < r->base + r->cycle_acks)
            fail_msg("room %s: count %lld after restart, but %lld messages were answered on top "
                     "of %lld",
                     r->name, count, r->cycle_acks, r->base);
        if (count > r->sent)
            fail_msg("room %s: count %lld is more than the %lld messages ever sent", r->name, count,
                     r->sent);
        if (r->on_disk && count != r->disk)
            fail_msg("room %s: partyd serves count %lld but the crashed file held %lld", r->name,
                     count, r->disk);
        r->base = count;
        r->cycle_sent = 0;
        r->cycle_acks = 0;
        r->on_disk = 0;
    }
}

/* The many-rooms load: some group commit held more than one room's batch
 * (fewer groups than rooms' commits). */
static void expect_grouped_commits(int port) {
    http_response res;
    unsigned long long groups, commits;
    http_expect_get(port, "/_partyd/metrics", &res);
    assert_int_equal(res.status, 200);
    groups = (unsigned long long)metrics_value(res.body, "partyd_storage_commit_groups_total");
    commits = (unsigned long long)metrics_value(res.body, "partyd_storage_commit_seconds_count");
    printf("  %llu rooms' commits in %llu group commits\n", commits, groups);
    http_response_free(&res);
    assert_true(groups > 0);
    assert_true(groups < commits);
}

/* legacy: the data directory starts with the counter room "fixture" of
 * one an earlier partyd wrote (tests/fixtures/data-v1), at 3, as the first
 * room: a room with a file of its own. */
static void run_crash_cycles(const char *durability, int with_mixed, int legacy) {
    long cycles =
        env_long("PARTY_CRASH_CYCLES", with_mixed ? MIXED_CYCLES : DEFAULT_CYCLES, 1, MAX_CYCLES);
    uint64_t seed =
        (uint64_t)env_long("PARTY_CRASH_SEED", (long)(time(NULL) ^ getpid()), 0, 0x7FFFFFFFL);
    char dir[] = "/tmp/partyd-crash-XXXXXX";
    char scratch[sizeof(dir) + 16];
    room_track rooms[MAX_ROOMS];
    load_conn conns[MAX_CONNS + N_EXTRA];
    crashed_check cc;
    final_check fc;
    partyd *d;
    int64_t started = test_now_ms();
    long cycle;
    int i, files, status;

    rng_state = seed;
    assert_non_null(mkdtemp(dir));
    snprintf(scratch, sizeof(scratch), "%s/scratch", dir);
    assert_int_equal(mkdir(scratch, 0755), 0);
    memset(rooms, 0, sizeof(rooms));
    memset(conns, 0, sizeof(conns));
    for (i = 0; i < n_rooms; i++)
        snprintf(rooms[i].name, sizeof(rooms[i].name), "crash-%d", i);
    if (legacy) {
        char cmd[1024];
        /* Its counter room only (the reminder room has the same name). */
        snprintf(cmd, sizeof(cmd),
                 "mkdir -p %s/rooms/5e && cp %s/data-v1/alarms.db %s/ &&"
                 " cp %s/data-v1/rooms/5e/*.db %s/rooms/5e/",
                 dir, PARTY_FIXTURES, dir, PARTY_FIXTURES, dir);
        assert_int_equal(system(cmd), 0);
        snprintf(rooms[0].name, sizeof(rooms[0].name), "fixture");
        rooms[0].sent = rooms[0].acked = rooms[0].base = 3;
    }
    if (with_mixed) {
        mixed = calloc(1, sizeof(*mixed));
        assert_non_null(mixed);
    }
    printf("crash test (--durability %s%s): seed %llu (PARTY_CRASH_SEED to replay), %ld cycles, "
           "%d connections over %d rooms, data %s\n",
           durability, with_mixed ? ", mixed load" : "", (unsigned long long)seed, cycles, n_conns,
           n_rooms, dir);

    for (cycle = 1; cycle <= cycles; cycle++) {
        int crash_ms = CRASH_MIN_MS + (int)(rng_next() % (CRASH_MAX_MS - CRASH_MIN_MS + 1));
        int64_t until;

        d = start_on(dir, durability);
        check_after_restart(partyd_port(d), rooms, (int)cycle);
        if (mixed != NULL) {
            expect_reminders_fired(partyd_port(d), 1);
            mixed->cycle = cycle;
        }
        until = test_now_ms() + crash_ms;
        printf("  cycle %ld: kill -9 after %d ms of load\n", cycle, crash_ms);
        /* The load runs until the crash moment, then the kill lands. */
        run_load(partyd_port(d), rooms, conns, until);
        if (n_rooms == MANY_ROOMS)
            expect_grouped_commits(partyd_port(d));
        expect_no_logged_error(d, "before the kill");
        kill_hard(d);
        partyd_free(d);
        drain_after_crash(conns, rooms);

        cc.scratch = scratch;
        cc.rooms = rooms;
        cc.counter_files = 0;
        files = for_each_room_file(dir, check_crashed_file, &cc);
        assert_int_equal(cc.counter_files, n_rooms);
        assert_true(files >= 1);
        for (i = 0; i < n_rooms; i++) {
            room_track *r = &rooms[i];
            if (r->cycle_acks > 0 && r->acked < r->base + r->cycle_acks)
                fail_msg("room %s: %lld replies above %lld but the highest is %lld: two "
                         "messages were given the same value",
                         r->name, r->cycle_acks, r->base, r->acked);
            if (r->disk < r->acked)
                fail_msg("room %s: LOST ACKNOWLEDGED WRITES: the crashed file holds %lld, but a "
                         "client was answered %lld",
                         r->name, r->disk, r->acked);
        }
    }

    /* One more start: recovery from the last crash, then a clean stop. */
    d = start_on(dir, durability);
    check_after_restart(partyd_port(d), rooms, (int)cycle);
    if (mixed != NULL) {
        /* All of them, once more: a fired record survives later crashes. */
        expect_reminders_fired(partyd_port(d), 0);
        printf("  final: %zu reminders and alarms acknowledged, all fired; %lld short "
               "connections\n",
               mixed->n, mixed->connects);
    }
    expect_no_logged_error(d, "after the last restart");
    status = partyd_stop(d);
    if (status != 0) {
        char *err = partyd_stderr(d);
        fprintf(stderr, "partyd stderr:\n%s\n", err != NULL ? err : "");
        free(err);
    }
    partyd_free(d);
    assert_int_equal(status, 0);

    memset(&fc, 0, sizeof(fc));
    fc.rooms = rooms;
    assert_true(for_each_room_file(dir, check_final_file, &fc) >= 1);
    assert_int_equal(fc.counter_files, n_rooms);
    check_runtime_files(dir);
    for (i = 0; i < n_rooms; i++) {
        printf("  final: room %s: %lld in the file, %lld acknowledged, %lld sent\n", rooms[i].name,
               fc.counts[i], rooms[i].acked, rooms[i].sent);
        assert_true(fc.counts[i] == rooms[i].base);
        assert_true(rooms[i].acked > 0);
    }
    printf("crash test (--durability %s%s): %ld crashes, no acknowledged write lost%s, %.1f s\n",
           durability, with_mixed ? ", mixed load" : "", cycles,
           with_mixed ? ", every acknowledged reminder and alarm fired" : "",
           (double)(test_now_ms() - started) / 1000.0);
    test_remove_tree(dir);
    free(mixed);
    mixed = NULL;
}

static void test_no_acknowledged_count_is_lost_across_kill_9_durability_full(void **state) {
    (void)state;
    run_crash_cycles("full", 0, 0);
}

/* A room with a file of its own (here: one an earlier partyd made) is
 * as safe as the rooms of the shared files, next to them. */
static void test_own_file_room_loses_no_acknowledged_count_across_kill_9(void **state) {
    (void)state;
    run_crash_cycles("full", 0, 1);
}

/* normal promises to survive a process crash too (not a power loss). */
static void test_no_acknowledged_count_is_lost_across_kill_9_durability_normal(void **state) {
    (void)state;
    run_crash_cycles("normal", 0, 0);
}

/* Many rooms, one connection each: their batches end together and commit
 * in groups (one commit_batch for every room of a loop turn); each
 * room's acknowledged count is durable all the same. */
static void test_many_rooms_lose_no_acknowledged_count_across_kill_9(void **state) {
    (void)state;
    n_rooms = n_conns = MANY_ROOMS;
    run_crash_cycles("full", 0, 0);
    n_rooms = N_ROOMS;
    n_conns = N_CONNS;
}

/* Counter writes, reminders, alarms and new connections at once. */
static void test_mixed_load_loses_no_write_and_no_alarm_across_kill_9(void **state) {
    (void)state;
    run_crash_cycles("full", 1, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_acknowledged_count_is_lost_across_kill_9_durability_full),
        cmocka_unit_test(test_no_acknowledged_count_is_lost_across_kill_9_durability_normal),
        cmocka_unit_test(test_own_file_room_loses_no_acknowledged_count_across_kill_9),
        cmocka_unit_test(test_many_rooms_lose_no_acknowledged_count_across_kill_9),
        cmocka_unit_test(test_mixed_load_loses_no_write_and_no_alarm_across_kill_9),
    };
    const char *only = getenv("PARTY_CRASH_ONLY");
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (only != NULL && only[0] != '\0')
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
