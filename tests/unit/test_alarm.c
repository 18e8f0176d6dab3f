/* Alarms and schedules (src/schedule.c, src/alarm.c, src/room_alarm.c's
 * handle_alarm and run_due_schedules), through the test harness on its virtual clock: an
 * alarm fires at or after its time, never before, also on an evicted room
 * and after a restart, knowing the room's name; set replaces, get and
 * delete; a new alarm set inside on_alarm is kept; a failing on_alarm is
 * retried after 2..64 s plus at most 25 % jitter, then abandoned; an alarm
 * whose commit failed fires again (at least once); schedules (at, after,
 * every, cron) fire with their name and payload, survive restarts, can be
 * cancelled and listed, and share the room's wake time with its alarm; bad
 * arguments and calls outside callbacks are refused; the runtime's alarm
 * index file records the room. And the heap of src/alarm.c on its own:
 * due entries go to the wake callback earliest first, a busy callback
 * keeps them, and the timer fires them without help. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "party.h"
#include "party_test.h"

#include "alarm.h"

#define T0 PARTY_TEST_EPOCH_MS
#define MAX_CALLS 16

/* ---- the clock party: an HTTP API over the alarm and schedule calls ---- */

static struct {
    int starts;
    int alarms;                       /* on_alarm calls */
    int retry_count[MAX_CALLS];       /* party_alarm_retry_count per call */
    int64_t get_on_entry[MAX_CALLS];  /* party_alarm_get when on_alarm began */
    int64_t get_after_set[MAX_CALLS]; /* party_alarm_get after it set a new one */
    char alarm_room[MAX_CALLS][64];   /* party_room_name per call */
    int schedules;                    /* on_schedule calls */
    char sched_log[1024];             /* "name:payload;" per call */
    char sched_room[64];              /* party_room_name in the last on_schedule */
    party_room *saved;                /* a room pointer kept past its callback */
} rec;

/* An alarm storm: on_alarm calls per room "storm-<i>". */
#define STORM_ROOMS 2000
static int storm_fired[STORM_ROOMS];

/* What on_alarm does, set by each test. */
static struct {
    int fail_calls;        /* calls that return non-zero (the first n; -1: all) */
    int64_t set_next_at;   /* > 0: the first call sets a new alarm for this time */
    int fail_commit;       /* the first call makes its own commit fail */
    int fail_starts;       /* on_start fails this many times */
    int sched_fail_commit; /* the first on_schedule makes its own commit fail */
} behave;

/* Commits to fail (the room's commit hook; runs on the commit's worker
 * thread, read here only after the commit completed). */
static int fail_commits;

static int failing_commit_hook(void *arg) {
    (void)arg;
    if (fail_commits > 0) {
        fail_commits--;
        return 1; /* the COMMIT becomes a ROLLBACK: the commit fails */
    }
    return 0;
}

static void copy_name(char *out, size_t cap, party_room *room) {
    const char *name = party_room_name(room);
    snprintf(out, cap, "%s", name != NULL ? name : "(null)");
}

static int clock_start(party_room *room, const char *props) {
    (void)room;
    (void)props;
    rec.starts++;
    if (behave.fail_starts > 0) {
        behave.fail_starts--;
        return -1;
    }
    return 0;
}

static int clock_alarm(party_room *room) {
    int n = rec.alarms++;
    int i = n < MAX_CALLS ? n : MAX_CALLS - 1;
    const char *name = party_room_name(room);
    long storm;

    if (name != NULL && strncmp(name, "storm-", 6) == 0 &&
        (storm = strtol(name + 6, NULL, 10)) >= 0 && storm < STORM_ROOMS)
        storm_fired[storm]++;

    rec.retry_count[i] = party_alarm_retry_count(room);
    rec.get_on_entry[i] = party_alarm_get(room);
    copy_name(rec.alarm_room[i], sizeof(rec.alarm_room[i]), room);
    if (n == 0 && behave.set_next_at > 0) {
        if (party_alarm_set(room, behave.set_next_at) != 0)
            return -7;
        rec.get_after_set[i] = party_alarm_get(room);
    }
    if (n == 0 && behave.fail_commit) {
        sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
        fail_commits = 1;
    }
    if (behave.fail_calls < 0 || n < behave.fail_calls)
        return -1;
    return 0;
}

static int clock_schedule(party_room *room, const char *name, const void *payload, size_t len) {
    size_t used = strlen(rec.sched_log);
    if (rec.schedules++ == 0 && behave.sched_fail_commit) {
        sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
        fail_commits = 1;
    }
    copy_name(rec.sched_room, sizeof(rec.sched_room), room);
    snprintf(rec.sched_log + used, sizeof(rec.sched_log) - used, "%s:%.*s;", name, (int)len,
             (const char *)payload);
    return 0;
}

typedef struct listing {
    char text[512];
    int stop_at; /* stop after this many (0: never) */
    int n;
} listing;

/* "name@(next - T0):payload," per schedule. */
static int list_cb(const char *id, const char *name, int64_t next_ms, const void *payload,
                   size_t len, void *arg) {
    listing *l = arg;
    size_t used = strlen(l->text);
    (void)id;
    snprintf(l->text + used, sizeof(l->text) - used, "%s@%lld:%.*s,", name,
             (long long)(next_ms - T0), (int)len, (const char *)payload);
    l->n++;
    return l->stop_at != 0 && l->n >= l->stop_at ? 9 : 0;
}

static int64_t query_ms(const party_request *req, const char *name) {
    const char *v = party_request_query(req, name);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static const char *query_or(const party_request *req, const char *name, const char *dflt) {
    const char *v = party_request_query(req, name);
    return v != NULL ? v : dflt;
}

/* The argument checks, run inside a callback: "ok" or the first failure. */
static void check_invalid_args(party_room *room, char *out, size_t cap) {
#define EXPECT(call, want)                                                                         \
    do {                                                                                           \
        int got_ = (call);                                                                         \
        if (got_ != (want)) {                                                                      \
            snprintf(out, cap, "line %d: %s = %d, want %d", __LINE__, #call, got_, (int)(want));   \
            return;                                                                                \
        }                                                                                          \
    } while (0)
    char id[PARTY_ID_MAX];

    EXPECT(party_schedule_every(room, 999, "e", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_every(room, 0, "e", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_every(room, -1000, "e", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_cron(room, "bad", "c", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_cron(room, "*/5 * * *", "c", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_cron(room, "61 * * * *", "c", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_cron(room, "", "c", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_cron(room, NULL, "c", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_at(room, T0 + 1000, "", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_at(room, T0 + 1000, NULL, NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_schedule_after(room, -1, "a", NULL, 0, NULL), PARTY_EINVAL);
    EXPECT(party_alarm_set(room, 0), PARTY_EINVAL);
    EXPECT(party_alarm_set(room, -5), PARTY_EINVAL);
    EXPECT(party_schedule_cancel(room, "no-such-schedule"), PARTY_ENOTFOUND);
    /* Nothing of the refused calls was kept. */
    EXPECT(party_alarm_get(room) == 0 ? 0 : 1, 0);
    /* The smallest interval is fine. */
    EXPECT(party_schedule_every(room, 1000, "e", NULL, 0, id), 0);
    EXPECT(party_schedule_cancel(room, id), 0);
    snprintf(out, cap, "ok");
#undef EXPECT
}

static void clock_request(party_room *room, const party_request *req, party_response *res) {
    const char *path = party_request_path(req);
    const char *name = query_or(req, "name", "s");
    const char *payload = query_or(req, "payload", "");
    char text[600], id[PARTY_ID_MAX];
    int r = 0;

    id[0] = '\0';
    if (strstr(path, "/alarm-set") != NULL) {
        r = party_alarm_set(room, query_ms(req, "at"));
    } else if (strstr(path, "/alarm-get") != NULL) {
        snprintf(text, sizeof(text), "%lld", (long long)party_alarm_get(room));
        party_response_set_body(res, text, strlen(text));
        return;
    } else if (strstr(path, "/alarm-delete") != NULL) {
        r = party_alarm_delete(room);
    } else if (strstr(path, "/sched-at") != NULL) {
        r = party_schedule_at(room, query_ms(req, "at"), name, payload, strlen(payload), id);
    } else if (strstr(path, "/sched-after") != NULL) {
        r = party_schedule_after(room, query_ms(req, "ms"), name, payload, strlen(payload), id);
    } else if (strstr(path, "/sched-every") != NULL) {
        r = party_schedule_every(room, query_ms(req, "ms"), name, payload, strlen(payload), id);
    } else if (strstr(path, "/sched-cron5") != NULL) {
        r = party_schedule_cron(room, "*/5 * * * *", name, payload, strlen(payload), id);
    } else if (strstr(path, "/sched-cancel") != NULL) {
        r = party_schedule_cancel(room, query_or(req, "id", ""));
    } else if (strstr(path, "/sched-list") != NULL) {
        listing l;
        memset(&l, 0, sizeof(l));
        l.stop_at = (int)query_ms(req, "stop");
        r = party_schedule_list(room, list_cb, &l);
        snprintf(text, sizeof(text), "%d %s", r, l.text);
        party_response_set_body(res, text, strlen(text));
        return;
    } else if (strstr(path, "/invalid") != NULL) {
        check_invalid_args(room, text, sizeof(text));
        party_response_set_body(res, text, strlen(text));
        return;
    } else if (strstr(path, "/save") != NULL) {
        rec.saved = room;
    }
    /* "<code>" or "<code> <schedule id>" */
    snprintf(text, sizeof(text), "%d%s%s", r, id[0] != '\0' ? " " : "", id);
    party_response_set_body(res, text, strlen(text));
}

static const party_def clock_def = {
    .name = "clock",
    .on_start = clock_start,
    .on_request = clock_request,
    .on_alarm = clock_alarm,
    .on_schedule = clock_schedule,
};

static int setup(void **state) {
    party_test *t = party_test_new();
    memset(&rec, 0, sizeof(rec));
    memset(&behave, 0, sizeof(behave));
    memset(storm_fired, 0, sizeof(storm_fired));
    fail_commits = 0;
    if (t == NULL || party_test_add(t, &clock_def) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* ---- helpers ---- */

/* POST /parties/clock/<room>/<what>; fails unless 200. Returns the body
 * (free it). */
static char *call(party_test *t, const char *room, const char *what) {
    char target[512];
    party_test_response res;
    char *body;
    int got;

    snprintf(target, sizeof(target), "/parties/clock/%s/%s", room, what);
    assert_int_equal(party_test_request(t, "POST", target, NULL, "", 0, &res), 0);
    got = res.status;
    body = res.body;
    res.body = NULL;
    party_test_response_free(&res);
    if (got != 200) {
        print_error("POST %s: status %d (body: %s)\n", target, got, body);
        free(body);
        fail();
    }
    return body;
}

static void expect_call(party_test *t, const char *room, const char *what, const char *want) {
    char *got = call(t, room, what);
    if (strcmp(got, want) != 0) {
        print_error("%s/%s: got \"%s\", want \"%s\"\n", room, what, got, want);
        free(got);
        fail();
    }
    free(got);
}

/* Sets the room's alarm for at (absolute ms). */
static void alarm_set(party_test *t, const char *room, int64_t at) {
    char what[64];
    snprintf(what, sizeof(what), "alarm-set?at=%lld", (long long)at);
    expect_call(t, room, what, "0");
}

static int64_t alarm_get(party_test *t, const char *room) {
    char *body = call(t, room, "alarm-get");
    int64_t v = strtoll(body, NULL, 10);
    free(body);
    return v;
}

/* A schedule request ("sched-at?at=..."); returns its id into id_out. */
static void schedule(party_test *t, const char *room, const char *what, char id_out[PARTY_ID_MAX]) {
    char *body = call(t, room, what);
    if (strncmp(body, "0 ", 2) != 0 || strlen(body + 2) == 0 || strlen(body + 2) >= PARTY_ID_MAX) {
        print_error("%s/%s: got \"%s\", want \"0 <id>\"\n", room, what, body);
        free(body);
        fail();
    }
    if (id_out != NULL)
        snprintf(id_out, PARTY_ID_MAX, "%s", body + 2);
    free(body);
}

static void advance(party_test *t, int64_t ms) {
    assert_int_equal(party_test_advance(t, ms), 0);
}

/* Advances in steps of step ms until on_alarm has been called more than
 * before, at most limit ms. Returns the virtual ms that passed, or -1 if
 * the call never came. */
static int64_t advance_until_alarm(party_test *t, int64_t step, int64_t limit) {
    int before = rec.alarms;
    int64_t start = party_test_now(t);
    while (party_test_now(t) - start < limit) {
        advance(t, step);
        if (rec.alarms != before)
            return party_test_now(t) - start;
    }
    return -1;
}

/* The alarm index row of room (party "clock"): 1 with its party and due
 * time, or 0 if there is none. */
static int index_row(party_test *t, const char *room, char *party, size_t cap, int64_t *due) {
    char path[4096], id[PARTY_ID_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int found = 0;

    assert_int_equal(party_test_run_until_idle(t), 0);
    party_room_id_from_name("clock", room, id);
    snprintf(path, sizeof(path), "%s/alarms.db", party_test_data_dir(t));
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT party, due_ms FROM alarm_index WHERE room_id = ?1",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        found = 1;
        snprintf(party, cap, "%s", (const char *)sqlite3_column_text(stmt, 0));
        *due = sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return found;
}

/* ---- firing time ---- */

static void test_alarm_fires_at_its_time_not_before(void **state) {
    party_test *t = *state;

    alarm_set(t, "punctual", T0 + 10000);
    advance(t, 9999);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    assert_string_equal(rec.alarm_room[0], "punctual");
    assert_int_equal(rec.retry_count[0], 0);
    /* Once: it is consumed. */
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(alarm_get(t, "punctual"), 0);
}

static void test_alarm_due_now_fires_on_advance_zero(void **state) {
    party_test *t = *state;

    alarm_set(t, "now", T0);
    assert_int_equal(rec.alarms, 0);
    advance(t, 0);
    assert_int_equal(rec.alarms, 1);
}

static void test_alarm_in_the_past_fires_at_once(void **state) {
    party_test *t = *state;

    advance(t, 5000);
    alarm_set(t, "late", T0 + 1000);
    advance(t, 0);
    assert_int_equal(rec.alarms, 1);
}

static void test_alarm_fires_on_evicted_room_with_its_name(void **state) {
    party_test *t = *state;

    alarm_set(t, "cold", T0 + 30000);
    assert_int_equal(party_test_evict(t, "clock", "cold"), 0);
    assert_int_equal(party_test_in_memory(t, "clock", "cold"), 0);
    assert_int_equal(rec.starts, 1);
    advance(t, 29999);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(party_test_in_memory(t, "clock", "cold"), 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.starts, 2); /* a cold start, then on_alarm */
    assert_string_equal(rec.alarm_room[0], "cold");
}

/* Many rooms' alarms due at once, after a restart (every room cold):
 * woken rooms load and leave memory in groups, more than a group and more
 * than may load at once. Each alarm fires exactly once, with its room's
 * name, and stays consumed across the next restart. */
static void test_alarm_storm_after_restart_fires_each_once(void **state) {
    party_test *t = *state;
    char room[32];
    int i, once = 0;

    for (i = 0; i < STORM_ROOMS; i++) {
        snprintf(room, sizeof(room), "storm-%d", i);
        alarm_set(t, room, T0 + 10000);
    }
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 9999);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(party_test_run_until_idle(t), 0);
    for (i = 0; i < STORM_ROOMS; i++)
        once += storm_fired[i] == 1;
    assert_int_equal(once, STORM_ROOMS);
    assert_int_equal(rec.alarms, STORM_ROOMS);
    /* Past idle_timeout they all leave memory, in one eviction tick. */
    advance(t, 61000);
    assert_int_equal(party_test_in_memory(t, "clock", "storm-0"), 0);
    assert_int_equal(party_test_in_memory(t, "clock", "storm-1999"), 0);
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, STORM_ROOMS);
    snprintf(room, sizeof(room), "storm-%d", STORM_ROOMS - 1);
    assert_int_equal(alarm_get(t, room), 0);
}

/* Marks the room's records as moved to its own file (own 1) or back in
 * its shared file (own 0), in whichever shard holds its row, with a
 * connection of our own: with a directory where its own file goes, the
 * room's storage cannot be opened. */
static void set_own_file(party_test *t, const char *id, int own) {
    char path[4096];
    struct stat st;
    int k, changed = 0;

    for (k = 0; k < 256; k++) {
        sqlite3 *db = NULL;
        sqlite3_stmt *stmt = NULL;
        snprintf(path, sizeof(path), "%s/rooms-%d.db", party_test_data_dir(t), k);
        if (stat(path, &st) != 0)
            break;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "UPDATE _party_rooms SET own = ?1 WHERE room_id = ?2",
                                            -1, &stmt, NULL),
                         SQLITE_OK);
        sqlite3_bind_int(stmt, 1, own);
        sqlite3_bind_text(stmt, 2, id, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
        changed += sqlite3_changes(db);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    assert_int_equal(changed, 1);
}

/* A due alarm whose room cannot open its storage is tried again a little
 * later, not dropped until the next restart. */
static void test_alarm_whose_room_cannot_open_storage_is_retried_not_lost(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], path[4096], dir[4200];

    alarm_set(t, "broken", T0 + 10000);
    assert_int_equal(party_test_evict(t, "clock", "broken"), 0);
    party_room_id_from_name("clock", "broken", id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    set_own_file(t, id, 1);
    snprintf(dir, sizeof(dir), "mkdir -p %s", path);
    assert_int_equal(system(dir), 0); /* a directory: SQLite cannot open it */
    advance(t, 10000);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(rmdir(path), 0);
    set_own_file(t, id, 0);
    assert_true(advance_until_alarm(t, 500, 10000) >= 0);
    assert_int_equal(rec.alarms, 1);
    assert_string_equal(rec.alarm_room[0], "broken");
}

static void test_alarm_fires_on_idle_evicted_room(void **state) {
    party_test *t = *state;

    /* Eviction by idle_timeout (60 s) long before the alarm (1 h). */
    alarm_set(t, "sleepy", T0 + 3600 * 1000);
    advance(t, 61000);
    assert_int_equal(party_test_in_memory(t, "clock", "sleepy"), 0);
    advance(t, 3600 * 1000 - 61000 - 1);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    assert_string_equal(rec.alarm_room[0], "sleepy");
}

static void test_alarm_fires_after_restart_with_its_name(void **state) {
    party_test *t = *state;

    alarm_set(t, "phoenix", T0 + 20000);
    assert_int_equal(party_test_restart(t), 0);
    rec.starts = 0;
    assert_int_equal(party_test_in_memory(t, "clock", "phoenix"), 0);
    advance(t, 19999);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.starts, 1);
    assert_string_equal(rec.alarm_room[0], "phoenix");
}

static void test_alarm_due_while_down_fires_after_restart(void **state) {
    party_test *t = *state;

    alarm_set(t, "overdue", T0 + 5000);
    assert_int_equal(party_test_restart(t), 0);
    /* One step far past the due time, as after a long downtime. */
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 1);
    assert_string_equal(rec.alarm_room[0], "overdue");
}

/* ---- set, get, delete ---- */

static void test_alarm_set_replaces_the_previous_one(void **state) {
    party_test *t = *state;

    alarm_set(t, "replace", T0 + 10000);
    alarm_set(t, "replace", T0 + 20000);
    assert_int_equal(alarm_get(t, "replace"), T0 + 20000);
    advance(t, 10000);
    assert_int_equal(rec.alarms, 0);
    advance(t, 9999);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 1);
}

static void test_alarm_set_earlier_replaces_a_later_one(void **state) {
    party_test *t = *state;

    alarm_set(t, "sooner", T0 + 20000);
    alarm_set(t, "sooner", T0 + 5000);
    advance(t, 5000);
    assert_int_equal(rec.alarms, 1);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 1);
}

static void test_alarm_get_returns_time_or_zero(void **state) {
    party_test *t = *state;

    assert_int_equal(alarm_get(t, "getter"), 0);
    alarm_set(t, "getter", T0 + 7000);
    assert_int_equal(alarm_get(t, "getter"), T0 + 7000);
    /* Across a cold start and a restart too: it is stored. */
    assert_int_equal(party_test_evict(t, "clock", "getter"), 0);
    assert_int_equal(alarm_get(t, "getter"), T0 + 7000);
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(alarm_get(t, "getter"), T0 + 7000);
    advance(t, 7000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(alarm_get(t, "getter"), 0);
}

static void test_alarm_delete_cancels_it(void **state) {
    party_test *t = *state;

    alarm_set(t, "deleted", T0 + 10000);
    expect_call(t, "deleted", "alarm-delete", "0");
    assert_int_equal(alarm_get(t, "deleted"), 0);
    expect_call(t, "deleted", "alarm-delete", "0"); /* no-op without one */
    advance(t, 10000);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 0);
}

static void test_alarm_deleted_on_evicted_room_never_fires(void **state) {
    party_test *t = *state;

    alarm_set(t, "deleted-cold", T0 + 10000);
    assert_int_equal(party_test_evict(t, "clock", "deleted-cold"), 0);
    expect_call(t, "deleted-cold", "alarm-delete", "0");
    assert_int_equal(party_test_evict(t, "clock", "deleted-cold"), 0);
    rec.starts = 0;
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 0);
}

/* ---- inside on_alarm ---- */

static void test_alarm_get_inside_handler_is_zero(void **state) {
    party_test *t = *state;

    alarm_set(t, "inside", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.get_on_entry[0], 0);
    assert_int_equal(alarm_get(t, "inside"), 0);
}

static void test_alarm_set_inside_handler_is_kept_and_fires(void **state) {
    party_test *t = *state;

    behave.set_next_at = T0 + 50000;
    alarm_set(t, "again", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.get_on_entry[0], 0);
    assert_int_equal(rec.get_after_set[0], T0 + 50000);
    assert_int_equal(alarm_get(t, "again"), T0 + 50000);
    advance(t, 48999);
    assert_int_equal(rec.alarms, 1);
    advance(t, 1);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.get_on_entry[1], 0);
    assert_int_equal(rec.retry_count[1], 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 2);
}

static void test_alarm_of_room_whose_on_start_fails_fires_once_it_starts(void **state) {
    party_test *t = *state;

    alarm_set(t, "no-start", T0 + 1000);
    assert_int_equal(party_test_evict(t, "clock", "no-start"), 0);
    behave.fail_starts = 2;
    advance(t, 1000);
    assert_int_equal(rec.alarms, 0);
    assert_int_equal(rec.starts, 2);
    /* Tried again later, not lost. */
    assert_true(advance_until_alarm(t, 500, 60000) > 0);
    assert_int_equal(rec.starts, 4);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.retry_count[0], 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 1);
}

/* ---- retries ---- */

/* The handler's new alarm wins over a retry of the one that failed (as in
 * workerd's AlarmScheduler: "If an alarm is queued, there's no point in
 * retrying the current one"); semantics.md: "Setting an alarm inside
 * on_alarm keeps the new one." */
static void test_alarm_set_inside_failing_handler_is_kept_not_retried(void **state) {
    party_test *t = *state;

    behave.set_next_at = T0 + 50000;
    behave.fail_calls = 1;
    alarm_set(t, "set-then-fail", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.get_after_set[0], T0 + 50000);
    assert_int_equal(alarm_get(t, "set-then-fail"), T0 + 50000);
    advance(t, 48999);
    assert_int_equal(rec.alarms, 1);
    advance(t, 1);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.retry_count[1], 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 2);
}

static void test_failing_alarm_retried_with_backoff_then_abandoned(void **state) {
    party_test *t = *state;
    int i;

    behave.fail_calls = -1;
    alarm_set(t, "flaky", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.retry_count[0], 0);
    for (i = 1; i <= 6; i++) {
        int64_t base = (int64_t)2000 << (i - 1);
        int64_t took = advance_until_alarm(t, 100, base * 2);
        if (took < base || took > base + base / 4) {
            print_error("retry %d came after %lld ms; want %lld..%lld\n", i, (long long)took,
                        (long long)base, (long long)(base + base / 4));
            fail();
        }
        assert_int_equal(rec.alarms, i + 1);
        assert_int_equal(rec.retry_count[i], i);
        assert_int_equal(rec.get_on_entry[i], 0);
        assert_string_equal(rec.alarm_room[i], "flaky");
    }
    /* Six retries, then abandoned: no eighth call, and nothing pending. */
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 7);
    assert_int_equal(alarm_get(t, "flaky"), 0);
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 7);
}

static void test_alarm_succeeding_on_second_retry_stops_retries(void **state) {
    party_test *t = *state;

    behave.fail_calls = 2;
    alarm_set(t, "recovers", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_true(advance_until_alarm(t, 100, 4000) >= 2000);
    assert_true(advance_until_alarm(t, 100, 8000) >= 4000);
    assert_int_equal(rec.alarms, 3);
    assert_int_equal(rec.retry_count[0], 0);
    assert_int_equal(rec.retry_count[1], 1);
    assert_int_equal(rec.retry_count[2], 2);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 3);
}

static void test_alarm_retry_survives_restart(void **state) {
    party_test *t = *state;

    behave.fail_calls = 1;
    alarm_set(t, "retry-restart", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    /* The retry is stored: a restart before it is due keeps it, and its
     * count. */
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 2500);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.retry_count[1], 1);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 2);
}

/* ---- at least once ---- */

static void test_alarm_whose_commit_failed_fires_again(void **state) {
    party_test *t = *state;

    behave.fail_commit = 1;
    alarm_set(t, "twice", T0 + 1000);
    advance(t, 1000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(party_test_commit_failures(t), 1);
    /* The consumption of the alarm was rolled back with the rest. */
    advance(t, 1000);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.retry_count[1], 0);
    assert_string_equal(rec.alarm_room[1], "twice");
    assert_int_equal(party_test_commit_failures(t), 1);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.alarms, 2);
}

static void test_schedule_whose_commit_failed_fires_again(void **state) {
    party_test *t = *state;

    behave.sched_fail_commit = 1;
    schedule(t, "twice-sched", "sched-after?ms=1000&name=once&payload=p", NULL);
    advance(t, 1000);
    assert_int_equal(rec.schedules, 1);
    assert_int_equal(party_test_commit_failures(t), 1);
    advance(t, 1000);
    assert_int_equal(rec.schedules, 2);
    assert_string_equal(rec.sched_log, "once:p;once:p;");
    advance(t, 3600 * 1000);
    assert_int_equal(rec.schedules, 2);
    assert_int_equal(party_test_commit_failures(t), 1);
}

/* ---- schedules ---- */

static void test_schedule_at_and_after_fire_once_with_name_and_payload(void **state) {
    party_test *t = *state;
    char what[128];

    snprintf(what, sizeof(what), "sched-at?at=%lld&name=first&payload=one", (long long)(T0 + 5000));
    schedule(t, "sched", what, NULL);
    schedule(t, "sched", "sched-after?ms=8000&name=second&payload=two", NULL);
    advance(t, 4999);
    assert_int_equal(rec.schedules, 0);
    advance(t, 1);
    assert_int_equal(rec.schedules, 1);
    assert_string_equal(rec.sched_log, "first:one;");
    assert_string_equal(rec.sched_room, "sched");
    advance(t, 2999);
    assert_int_equal(rec.schedules, 1);
    advance(t, 1);
    assert_int_equal(rec.schedules, 2);
    assert_string_equal(rec.sched_log, "first:one;second:two;");
    advance(t, 3600 * 1000);
    assert_int_equal(rec.schedules, 2);
    assert_int_equal(rec.alarms, 0);
    expect_call(t, "sched", "sched-list", "0 ");
}

static void test_schedule_every_fires_each_interval_and_survives_restart(void **state) {
    party_test *t = *state;

    schedule(t, "ticker", "sched-every?ms=5000&name=tick&payload=p", NULL);
    advance(t, 4999);
    assert_int_equal(rec.schedules, 0);
    advance(t, 1);
    assert_int_equal(rec.schedules, 1);
    advance(t, 5000);
    assert_int_equal(rec.schedules, 2);
    advance(t, 5000);
    assert_int_equal(rec.schedules, 3);
    assert_string_equal(rec.sched_log, "tick:p;tick:p;tick:p;");
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 4999);
    assert_int_equal(rec.schedules, 3);
    advance(t, 1);
    assert_int_equal(rec.schedules, 4);
    assert_string_equal(rec.sched_room, "ticker");
    expect_call(t, "ticker", "sched-list", "0 tick@25000:p,");
}

static void test_schedule_every_missed_runs_are_not_replayed(void **state) {
    party_test *t = *state;

    schedule(t, "missed", "sched-every?ms=5000&name=tick", NULL);
    assert_int_equal(party_test_restart(t), 0);
    /* Down for ten intervals: one run, not ten. */
    advance(t, 50000);
    assert_int_equal(rec.schedules, 1);
    advance(t, 4999);
    assert_int_equal(rec.schedules, 1);
    advance(t, 1);
    assert_int_equal(rec.schedules, 2);
}

static void test_schedule_cron_fires_at_next_multiple_of_five_minutes(void **state) {
    party_test *t = *state;

    /* 00:01:30 UTC */
    advance(t, 90000);
    schedule(t, "cron", "sched-cron5?name=five&payload=c", NULL);
    expect_call(t, "cron", "sched-list", "0 five@300000:c,");
    /* to 00:04:59.999 */
    advance(t, 300000 - 90000 - 1);
    assert_int_equal(rec.schedules, 0);
    advance(t, 1);
    assert_int_equal(rec.schedules, 1);
    assert_string_equal(rec.sched_log, "five:c;");
    expect_call(t, "cron", "sched-list", "0 five@600000:c,");
    advance(t, 299999);
    assert_int_equal(rec.schedules, 1);
    advance(t, 1);
    assert_int_equal(rec.schedules, 2);
}

static void test_schedule_cancel_stops_it(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], what[128], want[64];

    schedule(t, "cancel", "sched-every?ms=2000&name=gone", id);
    advance(t, 2000);
    assert_int_equal(rec.schedules, 1);
    snprintf(what, sizeof(what), "sched-cancel?id=%s", id);
    expect_call(t, "cancel", what, "0");
    snprintf(want, sizeof(want), "%d", PARTY_ENOTFOUND);
    expect_call(t, "cancel", what, want);
    expect_call(t, "cancel", "sched-list", "0 ");
    advance(t, 60000);
    assert_int_equal(rec.schedules, 1);
    assert_int_equal(party_test_restart(t), 0);
    advance(t, 3600 * 1000);
    assert_int_equal(rec.schedules, 1);
}

static void test_schedule_cancel_before_first_run(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX], keep[PARTY_ID_MAX], what[128];

    schedule(t, "cancel-early", "sched-after?ms=1000&name=never", id);
    schedule(t, "cancel-early", "sched-after?ms=3000&name=kept", keep);
    assert_string_not_equal(id, keep);
    snprintf(what, sizeof(what), "sched-cancel?id=%s", id);
    expect_call(t, "cancel-early", what, "0");
    advance(t, 3000);
    assert_int_equal(rec.schedules, 1);
    assert_string_equal(rec.sched_log, "kept:;");
}

static void test_schedule_list_returns_all_soonest_first(void **state) {
    party_test *t = *state;
    char what[128];

    snprintf(what, sizeof(what), "sched-at?at=%lld&name=c&payload=pc", (long long)(T0 + 30000));
    schedule(t, "listed", what, NULL);
    schedule(t, "listed", "sched-cron5?name=d", NULL);
    schedule(t, "listed", "sched-every?ms=12000&name=a&payload=pa", NULL);
    schedule(t, "listed", "sched-after?ms=20000&name=b", NULL);
    expect_call(t, "listed", "sched-list", "0 a@12000:pa,b@20000:,c@30000:pc,d@300000:,");
    /* fn's non-zero stops the walk and is returned. */
    expect_call(t, "listed", "sched-list?stop=2", "9 a@12000:pa,b@20000:,");
    advance(t, 12000);
    assert_int_equal(rec.schedules, 1);
    expect_call(t, "listed", "sched-list", "0 b@20000:,a@24000:pa,c@30000:pc,d@300000:,");
    assert_int_equal(party_test_restart(t), 0);
    /* to 32 s in one step: b, a (24 s) and c run, each once */
    advance(t, 20000);
    assert_int_equal(rec.schedules, 4);
    expect_call(t, "listed", "sched-list", "0 a@36000:pa,d@300000:,");
}

static void test_alarm_and_schedules_coexist_in_one_room(void **state) {
    party_test *t = *state;
    char what[128];

    alarm_set(t, "both", T0 + 20000);
    schedule(t, "both", "sched-after?ms=10000&name=early", NULL);
    schedule(t, "both", "sched-after?ms=30000&name=late", NULL);
    advance(t, 10000);
    assert_int_equal(rec.schedules, 1);
    assert_int_equal(rec.alarms, 0);
    advance(t, 9999);
    assert_int_equal(rec.alarms, 0);
    advance(t, 1);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.schedules, 1);
    advance(t, 9999);
    assert_int_equal(rec.schedules, 1);
    advance(t, 1);
    assert_int_equal(rec.schedules, 2);
    assert_string_equal(rec.sched_log, "early:;late:;");
    assert_int_equal(rec.alarms, 1);

    /* The other way round: the alarm first, a schedule later; and the
     * alarm's deletion leaves the schedule alone. */
    snprintf(what, sizeof(what), "sched-at?at=%lld&name=after", (long long)(T0 + 60000));
    schedule(t, "both", what, NULL);
    alarm_set(t, "both", T0 + 45000);
    advance(t, 15000);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.schedules, 2);
    alarm_set(t, "both", T0 + 50000);
    expect_call(t, "both", "alarm-delete", "0");
    advance(t, 15000);
    assert_int_equal(rec.alarms, 2);
    assert_int_equal(rec.schedules, 3);
}

static void test_alarm_and_schedule_due_together_both_fire(void **state) {
    party_test *t = *state;

    alarm_set(t, "same-time", T0 + 5000);
    schedule(t, "same-time", "sched-after?ms=5000&name=s", NULL);
    assert_int_equal(party_test_evict(t, "clock", "same-time"), 0);
    advance(t, 5000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(rec.schedules, 1);
}

/* ---- arguments and state ---- */

static void test_invalid_arguments_are_einval(void **state) {
    party_test *t = *state;

    expect_call(t, "args", "invalid", "ok");
    advance(t, 3600 * 1000);
    assert_int_equal(rec.schedules, 0);
    assert_int_equal(rec.alarms, 0);
}

static int never_cb(const char *id, const char *name, int64_t next_ms, const void *payload,
                    size_t len, void *arg) {
    (void)id;
    (void)name;
    (void)next_ms;
    (void)payload;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static void test_calls_outside_callbacks_are_estate(void **state) {
    party_test *t = *state;
    char id[PARTY_ID_MAX];
    int n = 0;

    alarm_set(t, "outside", T0 + 10000);
    schedule(t, "outside", "sched-after?ms=20000&name=s", id);
    expect_call(t, "outside", "save", "0");
    assert_non_null(rec.saved);
    assert_int_equal(party_test_in_memory(t, "clock", "outside"), 1);

    assert_int_equal(party_alarm_set(rec.saved, T0 + 1000), PARTY_ESTATE);
    assert_int_equal(party_alarm_delete(rec.saved), PARTY_ESTATE);
    assert_true(party_alarm_get(rec.saved) <= 0); /* no time outside a callback */
    assert_int_equal(party_alarm_retry_count(rec.saved), 0);
    assert_int_equal(party_schedule_at(rec.saved, T0 + 1000, "x", NULL, 0, NULL), PARTY_ESTATE);
    assert_int_equal(party_schedule_after(rec.saved, 1000, "x", NULL, 0, NULL), PARTY_ESTATE);
    assert_int_equal(party_schedule_every(rec.saved, 1000, "x", NULL, 0, NULL), PARTY_ESTATE);
    assert_int_equal(party_schedule_cron(rec.saved, "*/5 * * * *", "x", NULL, 0, NULL),
                     PARTY_ESTATE);
    assert_int_equal(party_schedule_cancel(rec.saved, id), PARTY_ESTATE);
    assert_int_equal(party_schedule_list(rec.saved, never_cb, &n), PARTY_ESTATE);
    assert_int_equal(n, 0);
    assert_int_equal(party_alarm_set(NULL, T0 + 1000), PARTY_ESTATE);

    /* Nothing changed: the alarm and the schedule fire as set. */
    advance(t, 10000);
    assert_int_equal(rec.alarms, 1);
    advance(t, 10000);
    assert_int_equal(rec.schedules, 1);
    assert_string_equal(rec.sched_log, "s:;");
}

/* ---- the alarm index ---- */

static void test_alarm_index_file_has_a_row_for_the_room(void **state) {
    party_test *t = *state;
    char party[64];
    int64_t due = 0;

    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 0);
    alarm_set(t, "indexed", T0 + 40000);
    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 1);
    assert_string_equal(party, "clock");
    assert_int_equal(due, T0 + 40000);
    /* The index follows the room's earliest wake time. */
    schedule(t, "indexed", "sched-after?ms=15000&name=s", NULL);
    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 1);
    assert_int_equal(due, T0 + 15000);
    /* Across a restart it is still there (it is how a restart finds it). */
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 1);
    assert_int_equal(due, T0 + 15000);
    advance(t, 15000);
    assert_int_equal(rec.schedules, 1);
    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 1);
    assert_int_equal(due, T0 + 40000);
    /* Nothing left to wake for: the entry goes. */
    advance(t, 25000);
    assert_int_equal(rec.alarms, 1);
    assert_int_equal(index_row(t, "indexed", party, sizeof(party), &due), 0);
}

/* ---- the heap on its own (src/alarm.c) ---- */

static struct {
    int64_t now;
    int calls;
    char woken[MAX_CALLS][PARTY_ID_MAX];
    uint32_t tags[MAX_CALLS];
    int busy;         /* calls still to answer PARTY_EBUSY */
    int64_t put_back; /* > 0: the first call puts its room back at this time */
} heap;

static int64_t heap_clock(party__alarms *alarms) {
    (void)alarms;
    return heap.now;
}

static int heap_wake(party__alarms *alarms, const char *id, uint32_t tag) {
    if (heap.busy > 0) {
        heap.busy--;
        return PARTY_EBUSY;
    }
    if (heap.calls < MAX_CALLS) {
        snprintf(heap.woken[heap.calls], PARTY_ID_MAX, "%s", id);
        heap.tags[heap.calls] = tag;
    }
    if (heap.calls++ == 0 && heap.put_back > 0)
        assert_int_equal(party__alarms_put(alarms, id, tag, heap.put_back), 0);
    return 0;
}

/* A manual heap (no timer) on loop, the clock at T0. */
static void heap_start(party__alarms *alarms, uv_loop_t *loop, int manual) {
    memset(&heap, 0, sizeof(heap));
    memset(alarms, 0, sizeof(*alarms));
    heap.now = T0;
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(party__alarms_init(alarms, loop, manual, heap_wake, heap_clock, NULL), 0);
}

static void heap_end(party__alarms *alarms, uv_loop_t *loop) {
    party__alarms_close(alarms);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_heap_wakes_due_rooms_earliest_first(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 1);
    assert_int_equal(party__alarms_put(&alarms, "c", 3, T0 + 300), 0);
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0 + 100), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 2, T0 + 200), 0);
    assert_int_equal(party__alarms_size(&alarms), 3);
    assert_int_equal(party__alarms_next(&alarms), T0 + 100);
    heap.now = T0 + 99;
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 0);
    heap.now = T0 + 200;
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 2);
    assert_string_equal(heap.woken[0], "a");
    assert_int_equal(heap.tags[0], 1);
    assert_string_equal(heap.woken[1], "b");
    assert_int_equal(heap.tags[1], 2);
    /* Handed over: parked, with no wake time. */
    assert_int_equal(party__alarms_size(&alarms), 1);
    assert_int_equal(party__alarms_next(&alarms), T0 + 300);
    heap_end(&alarms, &loop);
}

static void test_heap_put_moves_or_removes_a_rooms_entry(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 1);
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0 + 100), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 1, T0 + 200), 0);
    /* One entry per room: a later time moves it. */
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0 + 300), 0);
    assert_int_equal(party__alarms_size(&alarms), 2);
    assert_int_equal(party__alarms_next(&alarms), T0 + 200);
    assert_int_equal(party__alarms_put(&alarms, "b", 1, 0), 0);
    assert_int_equal(party__alarms_size(&alarms), 1);
    heap.now = T0 + 1000;
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 1);
    assert_string_equal(heap.woken[0], "a");
    heap_end(&alarms, &loop);
}

static void test_heap_busy_wake_keeps_the_entry_until_called_again(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 1);
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 1, T0), 0);
    heap.busy = 1;
    party__alarms_fire_due(&alarms);
    /* Held back, and firing paused: the second entry was not offered. */
    assert_int_equal(heap.calls, 0);
    assert_int_equal(heap.busy, 0);
    assert_int_equal(party__alarms_size(&alarms), 2);
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 2);
    assert_int_equal(party__alarms_size(&alarms), 0);
    heap_end(&alarms, &loop);
}

static void test_heap_wake_may_put_its_room_back(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 1);
    heap.put_back = T0;
    assert_int_equal(party__alarms_put(&alarms, "a", 7, T0), 0);
    party__alarms_fire_due(&alarms);
    /* Put back due at once, it waits for the next turn. */
    assert_int_equal(heap.calls, 1);
    assert_int_equal(party__alarms_size(&alarms), 1);
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 2);
    assert_int_equal(heap.tags[1], 7);
    heap_end(&alarms, &loop);
}

/* A reserved entry, and one that woke its room, is kept parked: never due,
 * not counted, until the room's next wake time is put (which then needs no
 * memory) or the room has none. Reserving keeps a wake time already there. */
static void test_heap_reserved_and_woken_entries_are_parked_until_put(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 1);
    assert_int_equal(party__alarms_reserve(&alarms, "a", 1), 0);
    assert_int_equal(party__alarms_size(&alarms), 0);
    assert_int_equal(party__alarms_next(&alarms), 0);
    heap.now = T0 + 3600 * 1000;
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 0);
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0 + 100), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 2, T0 + 50), 0);
    assert_int_equal(party__alarms_reserve(&alarms, "b", 2), 0);
    assert_int_equal(party__alarms_size(&alarms), 2);
    assert_int_equal(party__alarms_next(&alarms), T0 + 50);
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 2);
    assert_int_equal(party__alarms_size(&alarms), 0);
    assert_int_equal(party__alarms_next(&alarms), 0);
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 2);
    /* The room files its next wake time, or none. */
    assert_int_equal(party__alarms_put(&alarms, "a", 1, heap.now + 500), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 2, 0), 0);
    assert_int_equal(party__alarms_size(&alarms), 1);
    assert_int_equal(party__alarms_next(&alarms), heap.now + 500);
    heap.now += 500;
    party__alarms_fire_due(&alarms);
    assert_int_equal(heap.calls, 3);
    assert_string_equal(heap.woken[2], "a");
    heap_end(&alarms, &loop);
}

static void test_heap_timer_wakes_due_rooms_by_itself(void **state) {
    party__alarms alarms;
    uv_loop_t loop;
    (void)state;

    heap_start(&alarms, &loop, 0);
    assert_int_equal(party__alarms_put(&alarms, "a", 1, T0 - 1), 0);
    assert_int_equal(party__alarms_put(&alarms, "b", 1, T0 + 3600 * 1000), 0);
    while (heap.calls == 0)
        assert_int_not_equal(uv_run(&loop, UV_RUN_ONCE), 0);
    assert_int_equal(heap.calls, 1);
    assert_string_equal(heap.woken[0], "a");
    heap_end(&alarms, &loop);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(test_alarm_fires_at_its_time_not_before),
        TEST(test_alarm_due_now_fires_on_advance_zero),
        TEST(test_alarm_in_the_past_fires_at_once),
        TEST(test_alarm_fires_on_evicted_room_with_its_name),
        TEST(test_alarm_whose_room_cannot_open_storage_is_retried_not_lost),
        TEST(test_alarm_fires_on_idle_evicted_room),
        TEST(test_alarm_storm_after_restart_fires_each_once),
        TEST(test_alarm_fires_after_restart_with_its_name),
        TEST(test_alarm_due_while_down_fires_after_restart),
        TEST(test_alarm_set_replaces_the_previous_one),
        TEST(test_alarm_set_earlier_replaces_a_later_one),
        TEST(test_alarm_get_returns_time_or_zero),
        TEST(test_alarm_delete_cancels_it),
        TEST(test_alarm_deleted_on_evicted_room_never_fires),
        TEST(test_alarm_get_inside_handler_is_zero),
        TEST(test_alarm_set_inside_handler_is_kept_and_fires),
        TEST(test_alarm_of_room_whose_on_start_fails_fires_once_it_starts),
        TEST(test_alarm_set_inside_failing_handler_is_kept_not_retried),
        TEST(test_failing_alarm_retried_with_backoff_then_abandoned),
        TEST(test_alarm_succeeding_on_second_retry_stops_retries),
        TEST(test_alarm_retry_survives_restart),
        TEST(test_alarm_whose_commit_failed_fires_again),
        TEST(test_schedule_whose_commit_failed_fires_again),
        TEST(test_schedule_at_and_after_fire_once_with_name_and_payload),
        TEST(test_schedule_every_fires_each_interval_and_survives_restart),
        TEST(test_schedule_every_missed_runs_are_not_replayed),
        TEST(test_schedule_cron_fires_at_next_multiple_of_five_minutes),
        TEST(test_schedule_cancel_stops_it),
        TEST(test_schedule_cancel_before_first_run),
        TEST(test_schedule_list_returns_all_soonest_first),
        TEST(test_alarm_and_schedules_coexist_in_one_room),
        TEST(test_alarm_and_schedule_due_together_both_fire),
        TEST(test_invalid_arguments_are_einval),
        TEST(test_calls_outside_callbacks_are_estate),
        TEST(test_alarm_index_file_has_a_row_for_the_room),
        cmocka_unit_test(test_heap_wakes_due_rooms_earliest_first),
        cmocka_unit_test(test_heap_put_moves_or_removes_a_rooms_entry),
        cmocka_unit_test(test_heap_busy_wake_keeps_the_entry_until_called_again),
        cmocka_unit_test(test_heap_wake_may_put_its_room_back),
        cmocka_unit_test(test_heap_reserved_and_woken_entries_are_parked_until_put),
        cmocka_unit_test(test_heap_timer_wakes_due_rooms_by_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
