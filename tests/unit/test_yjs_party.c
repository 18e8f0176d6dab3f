/* Tests for parties/yjs.c through the in-process harness: the sync
 * handshake, storing before relaying, read-only connections, compaction of
 * the log (counted in the room's database file), restarts, SyncStep1 after
 * a hibernation wake-up, awareness removal on close, refused updates, and a
 * party built from the yjs pieces with its own custom-message handler. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "parties.h"
#include "party.h"
#include "party_test.h"

/* Client 5 typed "hello" into root text "t"; then " w" after it. */
static const uint8_t HELLO[] = {0x01, 0x01, 0x05, 0x00, 0x04, 0x01, 0x01, 0x74,
                                0x05, 'h',  'e',  'l',  'l',  'o',  0x00};
static const uint8_t HELLO_MORE[] = {0x01, 0x01, 0x05, 0x05, 0x84, 0x05,
                                     0x04, 0x02, ' ',  'w',  0x00};

/* y-protocols messages: type, subtype, varUint8Array. */
static size_t sync_msg(uint8_t *out, int subtype, const uint8_t *payload, size_t len) {
    out[0] = 0;
    out[1] = (uint8_t)subtype;
    out[2] = (uint8_t)len; /* the payloads here are < 128 bytes */
    memcpy(out + 3, payload, len);
    return len + 3;
}

static void send_sync(party_test_conn *c, int subtype, const uint8_t *payload, size_t len) {
    uint8_t msg[256];
    assert_true(len < 128);
    assert_int_equal(party_test_send(c, msg, sync_msg(msg, subtype, payload, len), 1), 0);
}

/* Receives one binary message and checks it is exactly want. */
static void expect(party_test_conn *c, const uint8_t *want, size_t want_len) {
    void *data;
    size_t len;
    int binary;
    assert_int_equal(party_test_recv(c, &data, &len, &binary), 0);
    assert_int_equal(binary, 1);
    assert_int_equal(len, want_len);
    assert_memory_equal(data, want, want_len);
    free(data);
}

static void expect_sync(party_test_conn *c, int subtype, const uint8_t *payload, size_t len) {
    uint8_t msg[256];
    expect(c, msg, sync_msg(msg, subtype, payload, len));
}

static party_test *t_new(void) {
    party_test *t = party_test_new();
    assert_non_null(t);
    assert_int_equal(party_test_add(t, party_builtin_yjs()), 0);
    return t;
}

static party_test_conn *join(party_test *t, const char *target) {
    int status;
    party_test_conn *c = party_test_connect(t, target, &status);
    assert_non_null(c);
    return c;
}

static void test_connect_gets_step1_and_a_step1_gets_the_document(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/doc?_pk=a");
    party_test_conn *b;
    static const uint8_t sv_hello[] = {0x01, 0x05, 0x05};
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    send_sync(a, 2, HELLO, sizeof(HELLO));
    b = join(t, "/parties/yjs/doc?_pk=b");
    expect_sync(b, 0, sv_hello, sizeof(sv_hello));
    send_sync(b, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 1, HELLO, sizeof(HELLO));
    /* A SyncStep2 from b is stored and relayed to a as an Update. */
    send_sync(b, 1, HELLO_MORE, sizeof(HELLO_MORE));
    expect_sync(a, 2, HELLO_MORE, sizeof(HELLO_MORE));
    party_test_free(t);
}

static void test_updates_survive_a_restart(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/kept?_pk=a"), *b;
    static const uint8_t sv[] = {0x01, 0x05, 0x07};
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    send_sync(a, 2, HELLO, sizeof(HELLO));
    send_sync(a, 2, HELLO_MORE, sizeof(HELLO_MORE));
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_restart(t), 0);
    b = join(t, "/parties/yjs/kept?_pk=b");
    expect_sync(b, 0, sv, sizeof(sv));
    party_test_free(t);
}

static int count_rows(party_test *t, const char *room) {
    char id[PARTY_ID_MAX], path[4096];
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = -1;

    party_room_id_from_name("yjs", room, id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM yjs_updates", -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Client 6 types count characters into the text "t", one update each
 * (the first creates it, each next one follows the previous). */
static void type_keystrokes(party_test_conn *conn, int count) {
    uint8_t update[16];
    int i;
    for (i = 0; i < count; i++) {
        size_t n = 0;
        update[n++] = 1, update[n++] = 1, update[n++] = 6, update[n++] = (uint8_t)i;
        if (i == 0) {
            update[n++] = 0x04, update[n++] = 0x01, update[n++] = 0x01, update[n++] = 't';
        } else {
            update[n++] = 0x84, update[n++] = 6, update[n++] = (uint8_t)(i - 1);
        }
        update[n++] = 1, update[n++] = (uint8_t)('a' + i), update[n++] = 0;
        send_sync(conn, 2, update, n);
    }
}

static void test_log_is_compacted_past_the_row_threshold(void **state) {
    party_test *t;
    party_test_conn *a, *b;
    /* Client 6 types one character at a time: 8 updates. */
    static const uint8_t sv[] = {0x01, 0x06, 0x08};
    (void)state;

    setenv("PARTYD_YJS_COMPACT_ROWS", "3", 1);
    t = t_new();
    a = join(t, "/parties/yjs/log?_pk=a");
    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    type_keystrokes(a, 8);
    assert_int_equal(party_test_run_until_idle(t), 0);
    unsetenv("PARTYD_YJS_COMPACT_ROWS");
    assert_in_range(count_rows(t, "log"), 1, 4);
    assert_int_equal(party_test_restart(t), 0);
    b = join(t, "/parties/yjs/log?_pk=b");
    expect_sync(b, 0, sv, sizeof(sv));
    party_test_free(t);
}

static void test_a_large_document_is_not_compacted_on_every_update(void **state) {
    /* Compaction past 30 bytes of log growth: once the document itself is
     * near that size, further updates must not compact it again until the
     * log has grown by 30 bytes more. */
    party_test *t;
    party_test_conn *a, *b;
    static const uint8_t sv[] = {0x01, 0x06, 0x06};
    (void)state;

    setenv("PARTYD_YJS_COMPACT_BYTES", "30", 1);
    t = t_new();
    a = join(t, "/parties/yjs/grow?_pk=a");
    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    type_keystrokes(a, 6);
    assert_int_equal(party_test_run_until_idle(t), 0);
    unsetenv("PARTYD_YJS_COMPACT_BYTES");
    /* 11 + 10 + 10 bytes compact into one row; the next three (30 bytes)
     * stay rows of their own. */
    assert_int_equal(count_rows(t, "grow"), 4);
    assert_int_equal(party_test_restart(t), 0);
    b = join(t, "/parties/yjs/grow?_pk=b");
    expect_sync(b, 0, sv, sizeof(sv));
    party_test_free(t);
}

static void test_compaction_can_drop_deleted_content(void **state) {
    /* "hello" deleted whole: with PARTYD_YJS_GC_DELETED=1 the compacted
     * document keeps a placeholder of length 5 instead of the text. */
    static const uint8_t deletion[] = {0x00, 0x01, 0x05, 0x01, 0x00, 0x05};
    static const uint8_t collected[] = {0x01, 0x01, 0x05, 0x00, 0x01, 0x01, 0x01,
                                        0x74, 0x05, 0x01, 0x05, 0x01, 0x00, 0x05};
    party_test *t;
    party_test_conn *a, *b;
    (void)state;

    setenv("PARTYD_YJS_COMPACT_ROWS", "1", 1);
    setenv("PARTYD_YJS_GC_DELETED", "1", 1);
    t = t_new();
    a = join(t, "/parties/yjs/gc?_pk=a");
    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    send_sync(a, 2, HELLO, sizeof(HELLO));
    send_sync(a, 2, deletion, sizeof(deletion));
    assert_int_equal(party_test_run_until_idle(t), 0);
    unsetenv("PARTYD_YJS_COMPACT_ROWS");
    unsetenv("PARTYD_YJS_GC_DELETED");
    assert_int_equal(count_rows(t, "gc"), 1);
    assert_int_equal(party_test_restart(t), 0);
    b = join(t, "/parties/yjs/gc?_pk=b");
    expect_sync(b, 0, (const uint8_t *)"\x01\x05\x05", 3);
    send_sync(b, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 1, collected, sizeof(collected));
    party_test_free(t);
}

static void test_readonly_connection_syncs_but_does_not_write(void **state) {
    party_test *t = t_new();
    party_test_conn *ro = join(t, "/parties/yjs/ro?_pk=r&readonly=1");
    party_test_conn *w = join(t, "/parties/yjs/ro?_pk=w");
    (void)state;

    expect_sync(ro, 0, (const uint8_t *)"\x00", 1);
    expect_sync(w, 0, (const uint8_t *)"\x00", 1);
    send_sync(ro, 2, HELLO, sizeof(HELLO));
    send_sync(w, 0, (const uint8_t *)"\x00", 1);
    /* Nothing stored: w's Step 2 is the empty update. */
    expect_sync(w, 1, (const uint8_t *)"\x00\x00", 2);
    send_sync(w, 2, HELLO, sizeof(HELLO));
    expect_sync(ro, 2, HELLO, sizeof(HELLO));
    party_test_free(t);
}

static void test_wake_up_sends_step1_to_every_connection(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/nap?_pk=a");
    party_test_conn *b = join(t, "/parties/yjs/nap?_pk=b");
    static const uint8_t sv[] = {0x01, 0x05, 0x05};
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 0, (const uint8_t *)"\x00", 1);
    send_sync(a, 2, HELLO, sizeof(HELLO));
    expect_sync(b, 2, HELLO, sizeof(HELLO));
    assert_int_equal(party_test_hibernate(t, "yjs", "nap"), 0);
    assert_int_equal(party_test_loaded(t, "yjs", "nap"), 0);
    /* A query for awareness wakes the room: both get a Step 1 first. */
    assert_int_equal(party_test_send(a, "\x03", 1, 1), 0);
    expect_sync(a, 0, sv, sizeof(sv));
    expect_sync(b, 0, sv, sizeof(sv));
    party_test_free(t);
}

static void test_awareness_is_forwarded_and_removed_on_close(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/aw?_pk=a");
    party_test_conn *b = join(t, "/parties/yjs/aw?_pk=b");
    party_test_conn *c;
    /* awareness: client 42, clock 3, state {"u":1} */
    static const uint8_t msg[] = {0x01, 0x0b, 0x01, 0x2a, 0x03, 0x07, '{',
                                  '"',  'u',  '"',  ':',  '1',  '}'};
    static const uint8_t gone[] = {0x01, 0x08, 0x01, 0x2a, 0x04, 0x04, 'n', 'u', 'l', 'l'};
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_send(a, msg, sizeof(msg), 1), 0);
    expect(a, msg, sizeof(msg)); /* the sender too */
    expect(b, msg, sizeof(msg));
    /* A newcomer gets the known states after its Step 1. */
    c = join(t, "/parties/yjs/aw?_pk=c");
    expect_sync(c, 0, (const uint8_t *)"\x00", 1);
    expect(c, msg, sizeof(msg));
    assert_int_equal(party_test_drop(a), 0);
    expect(b, gone, sizeof(gone));
    expect(c, gone, sizeof(gone));
    party_test_free(t);
}

static void test_invalid_update_closes_the_connection(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/bad?_pk=a");
    void *data;
    int code;
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    send_sync(a, 2, HELLO, sizeof(HELLO) - 3);
    assert_int_equal(party_test_recv(a, &data, NULL, NULL), PARTY_ECLOSED);
    assert_int_equal(party_test_close_info(a, &code, NULL), 0);
    assert_int_equal(code, 1003);
    party_test_free(t);
}

/* lib0 varUint into p; returns its length. */
static size_t put_uint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            p[n] |= 0x80;
        n++;
    } while (v != 0);
    return n;
}

/* A SyncUpdate message holding n deleted items of client (1 clock unit
 * each, parent root type "t"): n structs a merge cannot join. */
static uint8_t *many_items_msg(uint64_t client, size_t n, size_t *len) {
    size_t body = 3 * 10 + n * 5 + 1, at = 0, i;
    uint8_t *update = malloc(body), *msg = malloc(body + 12);
    assert_non_null(update);
    assert_non_null(msg);
    at += put_uint(update + at, 1);
    at += put_uint(update + at, n);
    at += put_uint(update + at, client);
    at += put_uint(update + at, 0);
    for (i = 0; i < n; i++) {
        memcpy(update + at, "\x01\x01\x01t\x01", 5);
        at += 5;
    }
    update[at++] = 0; /* empty delete set */
    msg[0] = 0;
    msg[1] = 2;
    *len = 2 + put_uint(msg + 2, at);
    memcpy(msg + *len, update, at);
    *len += at;
    free(update);
    return msg;
}

static void expect_closed(party_test_conn *c, int want_code, const char *want_in_reason) {
    void *data;
    int code;
    const char *reason;
    assert_int_equal(party_test_recv(c, &data, NULL, NULL), PARTY_ECLOSED);
    assert_int_equal(party_test_close_info(c, &code, &reason), 0);
    assert_int_equal(code, want_code);
    if (want_in_reason != NULL)
        assert_non_null(strstr(reason, want_in_reason));
}

static void test_update_past_the_room_limits_is_refused_before_it_is_stored(void **state) {
    /* 300 Ki structs fit; re-sent they count once; another 300 Ki of a
     * second client would take the document past 512 Ki structs. */
    size_t n = 300 * 1024, len7, len8, got_len;
    uint8_t *u7 = many_items_msg(7, n, &len7), *u8 = many_items_msg(8, n, &len8);
    uint8_t sv[16];
    size_t sv_len = 0;
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/big?_pk=a");
    party_test_conn *b = join(t, "/parties/yjs/big?_pk=b");
    party_test_conn *c;
    void *got;
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_send(a, u7, len7, 1), 0);
    expect(b, u7, len7);
    assert_int_equal(party_test_send(a, u7, len7, 1), 0);
    expect(b, u7, len7);
    assert_int_equal(party_test_send(a, u8, len8, 1), 0);
    expect_closed(a, 1009, "struct count");
    /* Not relayed: b's next message is the answer to its own Step 1. */
    assert_int_equal(party_test_send(b, "\x00\x00\x01\x00", 4, 1), 0);
    assert_int_equal(party_test_recv(b, &got, &got_len, NULL), 0);
    assert_true(got_len < len7 + 64);
    free(got);
    /* Nothing stored that breaks the room: it starts again and serves. */
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_restart(t), 0);
    c = join(t, "/parties/yjs/big?_pk=c");
    sv_len += put_uint(sv + sv_len, 1);
    sv_len += put_uint(sv + sv_len, 7);
    sv_len += put_uint(sv + sv_len, n);
    expect_sync(c, 0, sv, sv_len);
    free(u7);
    free(u8);
    party_test_free(t);
}

static void insert_row(party_test *t, const char *room, const uint8_t *data, size_t len) {
    char id[PARTY_ID_MAX], path[4096];
    sqlite3 *db;
    sqlite3_stmt *st;

    party_room_id_from_name("yjs", room, id);
    assert_int_equal(party_test_room_file(t, id, path, sizeof(path)), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO yjs_updates (data) VALUES (?)", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_bind_blob(st, 1, data, (int)len, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_a_stored_log_past_the_limits_does_not_stop_the_room(void **state) {
    /* A log written before the limits: 2 x 300 Ki structs. The room still
     * starts and serves what fits (client 7), leaving out client 8. */
    size_t n = 300 * 1024, len7, len8;
    uint8_t *u7 = many_items_msg(7, n, &len7), *u8 = many_items_msg(8, n, &len8);
    uint8_t sv[16];
    size_t sv_len = 0, skip7 = 2 + put_uint(sv, len7 - 6), skip8 = 2 + put_uint(sv, len8 - 6);
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/old?_pk=a"), *c;
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_run_until_idle(t), 0);
    insert_row(t, "old", u7 + skip7, len7 - skip7);
    insert_row(t, "old", u8 + skip8, len8 - skip8);
    assert_int_equal(party_test_restart(t), 0);
    c = join(t, "/parties/yjs/old?_pk=c");
    sv_len += put_uint(sv + sv_len, 1);
    sv_len += put_uint(sv + sv_len, 7);
    sv_len += put_uint(sv + sv_len, n);
    expect_sync(c, 0, sv, sv_len);
    free(u7);
    free(u8);
    party_test_free(t);
}

/* An awareness message of n entries (clients 1..n, clock 1, state). */
static size_t awareness_msg(uint8_t *out, size_t n, const char *state) {
    uint8_t inner[1024];
    size_t at = 0, len = strlen(state), i, m = 0;
    at += put_uint(inner + at, n);
    for (i = 0; i < n; i++) {
        at += put_uint(inner + at, i + 1);
        at += put_uint(inner + at, 1);
        at += put_uint(inner + at, len);
        memcpy(inner + at, state, len);
        at += len;
    }
    out[m++] = 1;
    m += put_uint(out + m, at);
    memcpy(out + m, inner, at);
    return m + at;
}

static void test_awareness_states_must_be_json_and_are_capped(void **state) {
    party_test *t = t_new();
    party_test_conn *a = join(t, "/parties/yjs/aw2?_pk=a");
    party_test_conn *b = join(t, "/parties/yjs/aw2?_pk=b");
    uint8_t msg[2048], want[2048];
    size_t len, want_len;
    (void)state;

    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    expect_sync(b, 0, (const uint8_t *)"\x00", 1);
    /* Not JSON for JSON.parse: neither kept nor forwarded. */
    len = awareness_msg(msg, 1, "{\"n\":01}");
    assert_int_equal(party_test_send(a, msg, len, 1), 0);
    len = awareness_msg(msg, 1, "{\"n\":\"a\nb\"}");
    assert_int_equal(party_test_send(a, msg, len, 1), 0);
    /* 20 entries: only the first 16 are forwarded. */
    len = awareness_msg(msg, 20, "{\"n\":1}");
    want_len = awareness_msg(want, 16, "{\"n\":1}");
    assert_int_equal(party_test_send(a, msg, len, 1), 0);
    expect(b, want, want_len);
    expect(a, want, want_len);
    party_test_free(t);
}

/* A party of its own, built from the yjs pieces: custom messages are
 * answered by the server. */
static void shout_custom(party_room *room, party_conn *conn, const char *msg, size_t len) {
    char reply[64];
    size_t n = len < 40 ? len : 40;
    (void)room;
    memcpy(reply, "got ", 4);
    memcpy(reply + 4, msg, n);
    party_yjs_send_custom(conn, reply, n + 4);
}

static void shout_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary) {
    party_yjs_on_message_with(room, conn, data, len, binary, shout_custom);
}

static const party_def shout_def = {
    .name = "shout",
    .hibernate = 1,
    .on_start = party_yjs_on_start,
    .on_connect = party_yjs_on_connect,
    .on_message = shout_message,
    .on_close = party_yjs_on_close,
    .connection_tags = party_yjs_connection_tags,
    .free_state = party_yjs_free_state,
};

static void test_custom_messages_reach_an_overriding_handler(void **state) {
    party_test *t = t_new();
    party_test_conn *a, *b, *c, *d;
    char *text;
    (void)state;

    assert_int_equal(party_test_add(t, &shout_def), 0);
    a = join(t, "/parties/shout/x?_pk=a");
    expect_sync(a, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_send_text(a, "__YPS:{\"hi\":1}"), 0);
    assert_int_equal(party_test_recv_text(a, &text), 0);
    assert_string_equal(text, "__YPS:got {\"hi\":1}");
    free(text);

    /* The built-in relays to the others, not back. */
    b = join(t, "/parties/yjs/x?_pk=b");
    c = join(t, "/parties/yjs/x?_pk=c");
    expect_sync(b, 0, (const uint8_t *)"\x00", 1);
    expect_sync(c, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_send_text(b, "__YPS:ping"), 0);
    assert_int_equal(party_test_recv_text(c, &text), 0);
    assert_string_equal(text, "__YPS:ping");
    free(text);
    /* Text without the prefix is ignored. */
    d = join(t, "/parties/yjs/x?_pk=d");
    expect_sync(d, 0, (const uint8_t *)"\x00", 1);
    assert_int_equal(party_test_send_text(d, "hello"), 0);
    assert_int_equal(party_test_send_text(c, "__YPS:after"), 0);
    assert_int_equal(party_test_recv_text(b, &text), 0);
    assert_string_equal(text, "__YPS:after");
    free(text);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_gets_step1_and_a_step1_gets_the_document),
        cmocka_unit_test(test_updates_survive_a_restart),
        cmocka_unit_test(test_log_is_compacted_past_the_row_threshold),
        cmocka_unit_test(test_a_large_document_is_not_compacted_on_every_update),
        cmocka_unit_test(test_compaction_can_drop_deleted_content),
        cmocka_unit_test(test_readonly_connection_syncs_but_does_not_write),
        cmocka_unit_test(test_wake_up_sends_step1_to_every_connection),
        cmocka_unit_test(test_awareness_is_forwarded_and_removed_on_close),
        cmocka_unit_test(test_invalid_update_closes_the_connection),
        cmocka_unit_test(test_update_past_the_room_limits_is_refused_before_it_is_stored),
        cmocka_unit_test(test_a_stored_log_past_the_limits_does_not_stop_the_room),
        cmocka_unit_test(test_awareness_states_must_be_json_and_are_capped),
        cmocka_unit_test(test_custom_messages_reach_an_overriding_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
