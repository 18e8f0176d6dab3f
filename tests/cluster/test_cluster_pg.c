/* partyd on PostgreSQL (--store), against a private server that
 * tests/cluster/with_pg.sh starts (PARTYD_TEST_PG): the same party
 * behaviour as on the embedded SQLite store (a counter survives a
 * restart; after kill -9 and a restart an alarm and a schedule fire on a
 * cold room that knows its name), a newer schema refused, and ownership
 * between two nodes on one database: the second node answers 503 for a
 * room the first holds, and takes it once the first stops; a stale owner
 * (its room's epoch moved on in SQL) has its commit fenced: nothing is
 * acknowledged, the connection closes with 1012 (an HTTP request gets
 * 503 + Retry-After), and partyd_storage_fenced_total counts it; a node
 * whose lease ran out answers 503 on /_partyd/health and commits nothing.
 * The store and node come from flags or the config file. A room's own
 * database (party_room_db) survives kill -9 on both stores and is fenced
 * like the rest. A room's clients do not notice the server closing the
 * node's idle connections (pg_terminate_backend). Each test has its own
 * database. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "client.h"
#include "pg_sessions.h"

static const char *server_uri; /* .../postgres: where test databases are made */
static int n_databases;

/* A new, empty database: its URI into uri. */
static void database_new(char *uri, size_t cap) {
    char sql[64];
    PGconn *c = PQconnectdb(server_uri);
    PGresult *res;
    const char *slash = strrchr(server_uri, '/');

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "CREATE DATABASE t%d", ++n_databases);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    snprintf(uri, cap, "%.*s/t%d", (int)(slash - server_uri), server_uri, n_databases);
}

/* Runs sql on the database at uri; the first value of its answer (free),
 * or NULL when it has none. Fails the test on an error. */
static char *sql_value(const char *uri, const char *sql) {
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    char *value = NULL;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0)
        value = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    return value;
}

/* A node on the database at uri (NULL: the SQLite store) named node, on
 * data_dir (NULL: a fresh one). */
static partyd *node_start(const char *uri, const char *node, const char *data_dir) {
    const char *args[8];
    size_t n = 0;
    partyd *d;
    if (uri != NULL) {
        args[n++] = "--store";
        args[n++] = uri;
        args[n++] = "--node";
        args[n++] = node;
    }
    if (data_dir != NULL) {
        /* A second --data wins over the client's own fresh one. */
        args[n++] = "--data";
        args[n++] = data_dir;
    }
    args[n] = NULL;
    d = partyd_start(args);
    if (d == NULL)
        fail_msg("partyd (%s) did not start", uri != NULL ? uri : "sqlite");
    return d;
}

static void post(int port, const char *target) {
    http_response res;
    http_expect_request(port, "POST", target, NULL, "p", 1, &res);
    if (res.status != 201)
        fail_msg("POST %s: %d %s", target, res.status, res.body);
    http_response_free(&res);
}

/* Asks for the reminder room's record until it contains needle; each ask
 * is a real request, their number bounded (the room's timer is what
 * makes it true). */
static void wait_record(int port, const char *room, const char *needle) {
    int attempt;
    for (attempt = 0; attempt < 100; attempt++) {
        char *body = room_expect_record(port, "reminder", room);
        int found = strstr(body, needle) != NULL;
        if (found || attempt == 99) {
            if (!found)
                fail_msg("room %s: no '%s' in %s", room, needle, body);
            free(body);
            return;
        }
        free(body);
        usleep(100 * 1000);
    }
}

/* ---- the same behaviour on both stores ---- */

static void counter_survives_restart(const char *uri) {
    char dir[] = "/tmp/partyd-cluster-XXXXXX";
    partyd *d;
    tconn *c;

    assert_non_null(mkdtemp(dir));
    d = node_start(uri, "n1", uri != NULL ? NULL : dir);
    c = ws_open(partyd_port(d), "/parties/counter/keep");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");
    ws_send_text(c, "+");
    ws_expect_text(c, "2");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);

    /* On PostgreSQL the new process has a new data directory: the records
     * are in the database. */
    d = node_start(uri, "n1", uri != NULL ? NULL : dir);
    assert_int_equal(counter_expect_count(partyd_port(d), "keep"), 2);
    c = ws_open(partyd_port(d), "/parties/counter/keep");
    ws_send_text(c, "+");
    ws_expect_text(c, "3");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

static void test_counter_survives_restart_on_sqlite(void **state) {
    (void)state;
    counter_survives_restart(NULL);
}

static void test_counter_survives_restart_on_postgres(void **state) {
    char uri[512];
    (void)state;
    database_new(uri, sizeof(uri));
    counter_survives_restart(uri);
}

static void alarm_knows_name_after_kill(const char *uri) {
    char dir[] = "/tmp/partyd-cluster-XXXXXX";
    partyd *d;
    http_response res;
    char target[128], *id;

    assert_non_null(mkdtemp(dir));
    d = node_start(uri, "n1", uri != NULL ? NULL : dir);
    post(partyd_port(d), "/parties/reminder/wake-me?alarm_in=1500");
    post(partyd_port(d), "/parties/reminder/wake-me?in=1500&name=later");
    http_expect_request(partyd_port(d), "POST", "/parties/reminder/wake-me?in=1000&name=never",
                        NULL, NULL, 0, &res);
    assert_int_equal(res.status, 201);
    id = strstr(res.body, "\"id\":\"");
    assert_non_null(id);
    snprintf(target, sizeof(target), "/parties/reminder/wake-me?id=%.32s", id + 6);
    http_response_free(&res);
    http_expect_request(partyd_port(d), "DELETE", target, NULL, NULL, 0, &res);
    assert_int_equal(res.status, 204);
    http_response_free(&res);
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, 5000), 128 + SIGKILL);
    partyd_free(d);

    d = node_start(uri, "n1", uri != NULL ? NULL : dir);
    /* The room is cold: the alarm index wakes it, and on_alarm and
     * on_schedule know its name (the reminder party records it). */
    assert_true(partyd_wait_stderr(d, "alarm index: 1 rooms to wake", 5000));
    wait_record(partyd_port(d), "wake-me", "\"name\":\"alarm\",\"room\":\"wake-me\"");
    wait_record(partyd_port(d), "wake-me", "\"name\":\"later\",\"room\":\"wake-me\"");
    {
        char *body = room_expect_record(partyd_port(d), "reminder", "wake-me");
        assert_null(strstr(body, "\"name\":\"never\""));
        free(body);
    }
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

static void test_alarm_knows_name_after_kill_on_sqlite(void **state) {
    (void)state;
    alarm_knows_name_after_kill(NULL);
}

static void test_alarm_knows_name_after_kill_on_postgres(void **state) {
    char uri[512];
    (void)state;
    database_new(uri, sizeof(uri));
    alarm_knows_name_after_kill(uri);
}

/* sql:<statements> to the probe room on c: fails unless the answer is
 * "sql:<expect>". */
static void sql_expect(tconn *c, const char *statements, const char *expect) {
    char want[256];
    ws_send_text(c, statements);
    snprintf(want, sizeof(want), "sql:%s", expect);
    ws_expect_text(c, want);
}

/* The room's own database (party_room_db): tables with and without a
 * primary key, more batches than a snapshot is taken after, then kill -9:
 * a new process (on PostgreSQL another node, with a new data directory)
 * finds every row. */
static void own_database_survives_kill(const char *uri) {
    char dir[] = "/tmp/partyd-cluster-XXXXXX", sql[128];
    partyd *d;
    tconn *c;
    int i;

    assert_non_null(mkdtemp(dir));
    d = node_start(uri, "n1", uri != NULL ? NULL : dir);
    c = probe_open(partyd_port(d), "owndb", NULL, NULL);
    sql_expect(c, "sql:CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", "");
    for (i = 1; i <= 70; i++) {
        snprintf(sql, sizeof(sql), "sql:INSERT INTO t VALUES (%d, 'v%d')", i, i);
        sql_expect(c, sql, "");
    }
    sql_expect(c, "sql:UPDATE t SET v = 'changed' WHERE k = 3; DELETE FROM t WHERE k = 4", "");
    /* A table without a primary key: its rows are shipped in snapshots. */
    sql_expect(c, "sql:CREATE TABLE nopk (x)", "");
    sql_expect(c, "sql:INSERT INTO nopk VALUES (42)", "");
    sql_expect(c, "sql:INSERT INTO t VALUES (100, 'last')", "");
    partyd_signal(d, SIGKILL);
    assert_int_equal(partyd_wait_exit(d, 5000), 128 + SIGKILL);
    partyd_free(d);
    tconn_close(c);

    if (uri != NULL) {
        /* Snapshots replace the changesets they include: 75 batches left
         * a snapshot and fewer changesets than a snapshot is taken after. */
        char *n = sql_value(uri, "SELECT count(*) FROM party_room_changes");
        char *snapshots = sql_value(uri, "SELECT count(*) FROM party_room_files");
        assert_true(atoi(n) < 64);
        assert_string_equal(snapshots, "1");
        free(n);
        free(snapshots);
    }

    d = node_start(uri, "n2", uri != NULL ? NULL : dir);
    c = probe_open(partyd_port(d), "owndb", NULL, NULL);
    sql_expect(c, "sql:SELECT count(*) FROM t", "70");
    sql_expect(c, "sql:SELECT v FROM t WHERE k = 3", "changed");
    sql_expect(c, "sql:SELECT count(*) FROM t WHERE k = 4", "0");
    sql_expect(c, "sql:SELECT v FROM t WHERE k = 100", "last");
    sql_expect(c, "sql:SELECT x FROM nopk", "42");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

static void test_own_database_survives_kill_on_sqlite(void **state) {
    (void)state;
    own_database_survives_kill(NULL);
}

static void test_own_database_survives_kill_on_postgres(void **state) {
    char uri[512];
    (void)state;
    database_new(uri, sizeof(uri));
    own_database_survives_kill(uri);
}

/* ---- the schema's version ---- */

static void test_newer_schema_is_refused_naming_both_versions(void **state) {
    char uri[512], *err;
    partyd *d;
    (void)state;

    database_new(uri, sizeof(uri));
    d = node_start(uri, "n1", NULL);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    free(sql_value(uri, "UPDATE party_format SET version = 99"));
    {
        const char *args[] = {"--store", uri, "--node", "n1", NULL};
        d = partyd_spawn(args);
    }
    assert_non_null(d);
    assert_int_equal(partyd_wait_exit(d, 20000), 1);
    err = partyd_stderr(d);
    if (strstr(err, "storage format version 99, newer than this partyd's (version 2)") == NULL)
        fail_msg("no versions named in: %s", err);
    free(err);
    partyd_free(d);
}

/* ---- configuration ---- */

static void test_config_file_store_and_node_keys(void **state) {
    char uri[512], path[] = "/tmp/partyd-cluster-config-XXXXXX", *owner;
    const char *args[] = {"--config", path, NULL};
    partyd *d;
    FILE *f;
    int fd;
    (void)state;

    database_new(uri, sizeof(uri));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "{\"store\": \"%s\", \"node\": \"from-config\"}\n", uri);
    fclose(f);
    d = partyd_start(args);
    assert_non_null(d);
    assert_int_equal(counter_expect_count(partyd_port(d), "configured"), 0);
    owner = sql_value(uri, "SELECT owner FROM party_rooms WHERE party = 'counter'");
    assert_non_null(owner);
    assert_true(strncmp(owner, "from-config:", 12) == 0);
    free(owner);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    unlink(path);
}

static void test_default_node_name_is_host_and_pid_with_port_0(void **state) {
    char uri[512], expect[300], host[256] = "", *owner;
    const char *args[] = {"--store", uri, NULL};
    partyd *d;
    (void)state;

    database_new(uri, sizeof(uri));
    d = partyd_start(args);
    assert_non_null(d);
    assert_int_equal(counter_expect_count(partyd_port(d), "unnamed"), 0);
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    snprintf(expect, sizeof(expect), "%s:pid%d:", host, partyd_pid(d));
    owner = sql_value(uri, "SELECT owner FROM party_rooms WHERE party = 'counter'");
    assert_non_null(owner);
    if (strncmp(owner, expect, strlen(expect)) != 0)
        fail_msg("owner %s, expected %s<incarnation>", owner, expect);
    free(owner);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- upgrades ---- */

/* A node of a cluster refuses SIGUSR2 with a log line that says what to do
 * instead, and goes on serving its connections. */
static void test_sigusr2_is_refused_on_a_shared_store(void **state) {
    char uri[512];
    partyd *d;
    tconn *c;
    (void)state;

    database_new(uri, sizeof(uri));
    d = node_start(uri, "up1", NULL);
    c = ws_open(partyd_port(d), "/parties/echo/refused?_pk=a");
    partyd_signal(d, SIGUSR2);
    assert_true(partyd_wait_stderr(d, "upgrade: SIGUSR2 refused: with --store", 20000));
    ws_send_text(c, "still here");
    ws_expect_text(c, "still here");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- ownership ---- */

static void test_second_node_answers_503_for_a_room_the_first_will_not_hand_over(void **state) {
    char uri[512];
    partyd *n1, *n2;
    http_response res;
    tconn *c;
    int code;
    (void)state;

    database_new(uri, sizeof(uri));
    {
        /* n1 hands a room over only after holding it a minute. */
        const char *args[] = {"--store", uri, "--node", "n1", "--handoff-hold", "60", NULL};
        n1 = partyd_start(args);
        assert_non_null(n1);
    }
    n2 = node_start(uri, "n2", NULL);
    c = ws_open(partyd_port(n1), "/parties/counter/shared");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");

    /* n2 asks n1 for the room and waits (bounded); n1 keeps it: 503. */
    http_expect_get(partyd_port(n2), "/parties/counter/shared", &res);
    assert_int_equal(res.status, 503);
    assert_non_null(http_response_header(&res, "Retry-After"));
    assert_non_null(strstr(res.body, "held by another node"));
    /* Named like every answer: the node that said it. */
    assert_non_null(http_response_header(&res, "X-Partyd-Node"));
    assert_string_equal(http_response_header(&res, "X-Partyd-Node"), "n2");
    http_response_free(&res);
    {
        tconn *w = tconn_open(partyd_port(n2), 0);
        assert_non_null(w);
        code = ws_handshake(w, "/parties/counter/shared", NULL, NULL, 0, &res);
        assert_int_equal(code, 503);
        assert_non_null(http_response_header(&res, "X-Partyd-Node"));
        assert_string_equal(http_response_header(&res, "X-Partyd-Node"), "n2");
        http_response_free(&res);
        tconn_close(w);
    }
    /* n1's client was never disturbed. */
    ws_send_text(c, "+");
    ws_expect_text(c, "2");
    /* Other rooms are n2's to take. */
    assert_int_equal(counter_expect_count(partyd_port(n2), "other"), 0);

    /* n1 stops and gives its rooms up: n2 takes the room, with its count. */
    tconn_close(c);
    assert_int_equal(partyd_stop(n1), 0);
    partyd_free(n1);
    assert_int_equal(counter_expect_count(partyd_port(n2), "shared"), 2);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

static void test_node_asked_for_a_room_hands_it_over_with_1012(void **state) {
    char uri[512];
    partyd *n1, *n2;
    http_response res;
    tconn *c;
    long long epoch;
    (void)state;

    database_new(uri, sizeof(uri));
    {
        /* This client reads n1's close only after n2 answered: n1 stops
         * waiting for its Close reply after half a second (the hand-off
         * waits for the room's clients, up to close_timeout). */
        const char *args[] = {"--store", uri, "--node", "n1", "--close-timeout", "0.5", NULL};
        n1 = partyd_start(args);
        assert_non_null(n1);
    }
    n2 = node_start(uri, "n2", NULL);
    c = tconn_open(partyd_port(n1), 0);
    assert_non_null(c);
    assert_int_equal(ws_handshake(c, "/parties/counter/moving", NULL, NULL, 0, &res), 0);
    epoch = atoll(http_response_header(&res, "X-Partyd-Epoch"));
    http_response_free(&res);
    ws_send_text(c, "+");
    ws_expect_text(c, "1");

    /* n2 is asked for the room (a failback, a moved ring): n1 hands it
     * over once it has held it a second; n2 answers with its count. */
    http_expect_get(partyd_port(n2), "/parties/counter/moving", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "X-Partyd-Node"), "n2");
    assert_true(atoll(http_response_header(&res, "X-Partyd-Epoch")) > epoch);
    assert_non_null(strstr(res.body, "\"count\":1"));
    http_response_free(&res);
    /* n1's client was told the room moved. */
    ws_expect_close(c, 1012, NULL);
    tconn_close(c);
    assert_true(partyd_wait_stderr(n1, "given up to another node", 5000));
    assert_int_equal(partyd_stop(n1), 0);
    partyd_free(n1);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

/* A connection to the database at uri that runs setup (a trigger the
 * test adds to partyd's tables, which notifies channel in the writing
 * transaction's commit) and listens on channel. */
static PGconn *sql_listen(const char *uri, const char *setup, const char *channel) {
    char sql[64];
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, setup);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", setup, PQerrorMessage(c));
    PQclear(res);
    snprintf(sql, sizeof(sql), "LISTEN %s", channel);
    res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return c;
}

/* Waits (on the socket of c, from sql_listen) for a notification whose
 * payload is payload. */
static void sql_wait_notify(PGconn *c, const char *payload) {
    for (;;) {
        struct pollfd p = {PQsocket(c), POLLIN, 0};
        PGnotify *n;
        int found = 0;
        if (PQconsumeInput(c) == 0)
            fail_msg("sql_wait_notify: %s", PQerrorMessage(c));
        while ((n = PQnotifies(c)) != NULL) {
            found |= strcmp(n->extra, payload) == 0;
            PQfreemem(n);
        }
        if (found)
            return;
        (void)poll(&p, 1, -1);
    }
}

/* Told of every write of a record in party_kv (the payload: its key). */
static PGconn *kv_listen(const char *uri) {
    return sql_listen(uri,
                      "CREATE FUNCTION test_kv_written() RETURNS trigger LANGUAGE plpgsql AS"
                      " $$ BEGIN PERFORM pg_notify('test_kv', NEW.key); RETURN NEW; END $$;"
                      "CREATE TRIGGER test_kv_written AFTER INSERT OR UPDATE ON party_kv"
                      " FOR EACH ROW EXECUTE FUNCTION test_kv_written()",
                      "test_kv");
}

static void test_alarm_of_a_dead_nodes_room_fires_on_another_node(void **state) {
    char uri[512], *fired = NULL, *owner;
    partyd *n1, *n2;
    PGconn *listen;
    (void)state;

    database_new(uri, sizeof(uri));
    n1 = node_start(uri, "n1", NULL);
    n2 = node_start(uri, "n2", NULL);
    listen = kv_listen(uri);
    post(partyd_port(n1), "/parties/reminder/orphan?alarm_in=1000");
    partyd_signal(n1, SIGKILL);
    assert_int_equal(partyd_wait_exit(n1, 5000), 128 + SIGKILL);
    partyd_free(n1);
    /* Nobody reaches the room: n2 finds its alarm in the index by itself
     * (seen in SQL, not over HTTP, which would wake the room): the room's
     * alarm writes its "fired" record. */
    for (;;) {
        sql_wait_notify(listen, "fired");
        fired = sql_value(uri, "SELECT convert_from(value, 'UTF8') FROM party_kv"
                               " WHERE key = 'fired'");
        if (fired != NULL && strstr(fired, "\"name\":\"alarm\",\"room\":\"orphan\"") != NULL)
            break;
        free(fired);
    }
    PQfinish(listen);
    free(fired);
    owner = sql_value(uri, "SELECT owner FROM party_rooms WHERE party = 'reminder'");
    assert_non_null(owner);
    assert_true(strncmp(owner, "n2:", 3) == 0);
    free(owner);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

static void test_stale_owner_commit_is_fenced_and_closes_1012(void **state) {
    char uri[512], *v;
    partyd *d;
    http_response res;
    tconn *c;
    (void)state;

    database_new(uri, sizeof(uri));
    d = node_start(uri, "n1", NULL);
    c = ws_open(partyd_port(d), "/parties/counter/stale");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");
    /* Another node took the room: its epoch moved on. */
    free(sql_value(uri, "UPDATE party_rooms SET epoch = epoch + 1 WHERE party = 'counter'"));
    ws_send_text(c, "+");
    /* Not "2": nothing of the refused commit is acknowledged. */
    ws_expect_close(c, 1012, NULL);
    tconn_close(c);
    v = sql_value(uri, "SELECT convert_from(value, 'UTF8') FROM party_kv WHERE key = 'count'");
    assert_non_null(v);
    assert_string_equal(v, "1");
    free(v);
    /* A write to the room's own database is fenced the same way, and the
     * node that takes the room over does not see it. */
    c = probe_open(partyd_port(d), "stale-db", NULL, NULL);
    sql_expect(c, "sql:CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)", "");
    free(sql_value(uri, "UPDATE party_rooms SET epoch = epoch + 1 WHERE party = 'probe'"));
    ws_send_text(c, "sql:INSERT INTO t VALUES (2)");
    ws_expect_close(c, 1012, NULL);
    tconn_close(c);

    /* An HTTP request whose batch writes gets 503 + Retry-After. */
    post(partyd_port(d), "/parties/reminder/stale-http?in=60000&name=a");
    free(sql_value(uri, "UPDATE party_rooms SET epoch = epoch + 1 WHERE party = 'reminder'"));
    http_expect_request(partyd_port(d), "POST", "/parties/reminder/stale-http?in=60000&name=b",
                        NULL, "p", 1, &res);
    assert_int_equal(res.status, 503);
    assert_non_null(http_response_header(&res, "Retry-After"));
    http_response_free(&res);
    v = sql_value(uri, "SELECT count(*) FROM party_schedules");
    assert_string_equal(v, "1");
    free(v);

    http_expect_get(partyd_port(d), "/_partyd/metrics", &res);
    assert_int_equal(res.status, 200);
    if (strstr(res.body, "\npartyd_storage_fenced_total 3\n") == NULL)
        fail_msg("no fenced commit counted: %s", res.body);
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);

    d = node_start(uri, "n2", NULL);
    c = probe_open(partyd_port(d), "stale-db", NULL, NULL);
    sql_expect(c, "sql:SELECT count(*) FROM t", "1");
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

static void test_node_that_lost_its_lease_commits_nothing_then_registers_again(void **state) {
    char uri[512];
    partyd *d;
    http_response res;
    PGconn *listen;
    tconn *c;
    int attempt, status = 0;
    (void)state;

    database_new(uri, sizeof(uri));
    d = node_start(uri, "n1", NULL);
    c = ws_open(partyd_port(d), "/parties/counter/leased");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");
    http_expect_get(partyd_port(d), "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    /* Told when the node registers again (a new incarnation). */
    listen = sql_listen(uri,
                        "CREATE FUNCTION test_node_again() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$ BEGIN PERFORM pg_notify('test_nodes', NEW.name); RETURN NEW; END $$;"
                        "CREATE TRIGGER test_node_again AFTER UPDATE ON party_nodes FOR EACH ROW"
                        " WHEN (OLD.node_id IS DISTINCT FROM NEW.node_id)"
                        " EXECUTE FUNCTION test_node_again()",
                        "test_nodes");
    /* The lease runs out: the next heartbeat (every second) cannot renew
     * it, and the node gives its rooms up: c's Close (1012) says it knows. */
    free(sql_value(uri, "UPDATE party_nodes SET lease_until = '-infinity' WHERE name = 'n1'"));
    ws_expect_close(c, 1012, NULL);
    http_expect_get(partyd_port(d), "/_partyd/health", &res);
    assert_int_equal(res.status, 503);
    assert_non_null(strstr(res.body, "lost its lease"));
    http_response_free(&res);
    /* Nor does it take rooms (while it still holds one: c has not
     * answered the close yet). */
    http_expect_get(partyd_port(d), "/parties/counter/another", &res);
    assert_int_equal(res.status, 503);
    http_response_free(&res);
    tconn_close(c);

    /* Its rooms given up, it registers again and serves: the room's
     * count is the one acknowledged. Once its new row is committed, the
     * node has only to read the answer: health is asked again until then,
     * each ask a round trip. */
    sql_wait_notify(listen, "n1");
    PQfinish(listen);
    for (attempt = 0; attempt < 1000 && status != 200; attempt++) {
        http_expect_get(partyd_port(d), "/_partyd/health", &res);
        status = res.status;
        http_response_free(&res);
    }
    assert_int_equal(status, 200);
    assert_int_equal(counter_expect_count(partyd_port(d), "leased"), 1);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- which node answers ---- */

/* The header's value in res, failing the test when it is absent. */
static const char *header(const http_response *res, const char *name) {
    const char *v = http_response_header(res, name);
    if (v == NULL)
        fail_msg("no %s in:\n%s", name, res->head);
    return v;
}

static void test_answers_name_the_node_and_the_rooms_epoch(void **state) {
    char uri[512], *epoch;
    partyd *n1, *n2;
    http_response res;
    tconn *c;
    (void)state;

    database_new(uri, sizeof(uri));
    n1 = node_start(uri, "n1", NULL);
    c = tconn_open(partyd_port(n1), 0);
    assert_non_null(c);
    assert_int_equal(ws_handshake(c, "/parties/counter/named", NULL, NULL, 0, &res), 0);
    epoch = sql_value(uri, "SELECT epoch FROM party_rooms WHERE party = 'counter'");
    assert_non_null(epoch);
    assert_string_equal(header(&res, "X-Partyd-Node"), "n1");
    assert_string_equal(header(&res, "X-Partyd-Epoch"), epoch);
    http_response_free(&res);
    ws_send_text(c, "+");
    ws_expect_text(c, "1");
    http_expect_get(partyd_port(n1), "/parties/counter/named", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(header(&res, "X-Partyd-Node"), "n1");
    assert_string_equal(header(&res, "X-Partyd-Epoch"), epoch);
    http_response_free(&res);
    http_expect_get(partyd_port(n1), "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(header(&res, "X-Partyd-Node"), "n1");
    http_response_free(&res);
    tconn_close(c);
    assert_int_equal(partyd_stop(n1), 0);
    partyd_free(n1);

    /* Another node takes the room with a newer epoch. */
    n2 = node_start(uri, "n2", NULL);
    http_expect_get(partyd_port(n2), "/parties/counter/named", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(header(&res, "X-Partyd-Node"), "n2");
    assert_true(atoll(header(&res, "X-Partyd-Epoch")) > atoll(epoch));
    http_response_free(&res);
    free(epoch);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

static void test_single_process_names_itself_only_with_node(void **state) {
    const char *named[] = {"--node", "solo", NULL};
    partyd *d;
    http_response res;
    tconn *c;
    (void)state;

    d = partyd_start(named);
    assert_non_null(d);
    c = tconn_open(partyd_port(d), 0);
    assert_non_null(c);
    assert_int_equal(ws_handshake(c, "/parties/counter/solo", NULL, NULL, 0, &res), 0);
    assert_string_equal(header(&res, "X-Partyd-Node"), "solo");
    /* No epochs without a cluster store. */
    assert_null(http_response_header(&res, "X-Partyd-Epoch"));
    http_response_free(&res);
    tconn_close(c);
    http_expect_get(partyd_port(d), "/parties/counter/solo", &res);
    assert_string_equal(header(&res, "X-Partyd-Node"), "solo");
    assert_null(http_response_header(&res, "X-Partyd-Epoch"));
    http_response_free(&res);
    http_expect_get(partyd_port(d), "/_partyd/health", &res);
    assert_string_equal(header(&res, "X-Partyd-Node"), "solo");
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);

    d = partyd_start(NULL);
    assert_non_null(d);
    http_expect_get(partyd_port(d), "/parties/counter/solo", &res);
    assert_null(http_response_header(&res, "X-Partyd-Node"));
    http_response_free(&res);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- connections to PostgreSQL ---- */

static void test_store_connections_are_capped(void **state) {
    char uri[512], request[160], *n;
    const char *args[] = {"--store", uri, "--node", "n1", "--store-connections", "1", NULL};
    tconn *c[20];
    partyd *d;
    int i;
    (void)state;

    database_new(uri, sizeof(uri));
    d = partyd_start(args);
    assert_non_null(d);
    /* Twenty cold rooms asked for at once: their acquires and loads run
     * in parallel, and share one connection (they wait for it, none
     * fails). */
    for (i = 0; i < 20; i++) {
        c[i] = tconn_open(partyd_port(d), 0);
        assert_non_null(c[i]);
        snprintf(request, sizeof(request),
                 "GET /parties/counter/cap-%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", i);
        assert_int_equal(tconn_send_str(c[i], request), 0);
    }
    for (i = 0; i < 20; i++) {
        http_response res;
        assert_int_equal(http_read_response(c[i], 0, &res, TC_TIMEOUT_MS), 0);
        assert_int_equal(res.status, 200);
        http_response_free(&res);
        tconn_close(c[i]);
    }
    n = sql_value(uri, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'partyd'"
                       " AND datname = current_database()");
    assert_non_null(n);
    if (atoi(n) > 1)
        fail_msg("%s connections open, capped at 1", n);
    free(n);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* The server ends the node's record connections while they are idle (a
 * restart of PostgreSQL, idle_session_timeout, a pooler, an operator's
 * pg_terminate_backend): a client of a counter room goes on getting its
 * increments acknowledged on the same WebSocket, a room opened afterwards
 * loads, and nothing is lost; the node counts the connections it opened
 * again. */
static void test_room_goes_on_when_the_server_closes_idle_connections(void **state) {
    char uri[512], expect[16];
    partyd *d;
    tconn *c, *other;
    int round;
    (void)state;

    database_new(uri, sizeof(uri));
    d = node_start(uri, "n1", NULL);
    c = ws_open(partyd_port(d), "/parties/counter/steady");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");
    for (round = 2; round <= 6; round++) {
        assert_true(pg_sessions_terminate(uri, "partyd") >= 1);
        ws_send_text(c, "+");
        snprintf(expect, sizeof(expect), "%d", round);
        ws_expect_text(c, expect);
    }
    /* A cold room: acquired and loaded on connections found closed. */
    assert_true(pg_sessions_terminate(uri, "partyd") >= 1);
    other = ws_open(partyd_port(d), "/parties/counter/later");
    ws_send_text(other, "+");
    ws_expect_text(other, "1");
    tconn_close(other);
    tconn_close(c);
    assert_true(metrics_get(partyd_port(d), "partyd_storage_pg_reconnects_total") >= 6);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);

    d = node_start(uri, "n1", NULL);
    assert_int_equal(counter_expect_count(partyd_port(d), "steady"), 6);
    assert_int_equal(counter_expect_count(partyd_port(d), "later"), 1);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* ---- room-to-room requests between nodes ---- */

static partyd *node_with_secret(const char *uri, const char *node) {
    const char *args[] = {"--store", uri, "--node", node, "--cluster-secret", "s3cret", NULL};
    partyd *d = partyd_start(args);
    assert_non_null(d);
    return d;
}

/* A raw request to the counter room "far" on port, from another node's
 * room (X-Partyd-From-Room) with secret (NULL: none): its status. */
static int from_other_node(int port, const char *secret) {
    char headers[160];
    http_response res;
    int status;
    snprintf(headers, sizeof(headers), "X-Partyd-From-Room: %064d\r\n%s%s%s", 0,
             secret != NULL ? "X-Partyd-Cluster-Secret: " : "", secret != NULL ? secret : "",
             secret != NULL ? "\r\n" : "");
    http_expect_request(port, "GET", "/parties/counter/far", headers, NULL, 0, &res);
    status = res.status;
    http_response_free(&res);
    return status;
}

static void test_room_fetch_reaches_a_room_another_node_owns(void **state) {
    char uri[512], *answer;
    partyd *n1, *n2;
    tconn *c, *p;
    (void)state;

    database_new(uri, sizeof(uri));
    n1 = node_with_secret(uri, "n1");
    n2 = node_with_secret(uri, "n2");
    c = ws_open(partyd_port(n2), "/parties/counter/far");
    ws_send_text(c, "+");
    ws_expect_text(c, "1");

    /* A room of n1 asks for the room n2 owns: n1 sends the request to
     * n2, which answers from the room (no hand-off: it stays on n2). */
    p = probe_open(partyd_port(n1), "near", NULL, NULL);
    ws_send_text(p, "fetch:counter/far");
    answer = ws_expect_text_prefix(p, "response:200:");
    if (strstr(answer, "\"count\":1") == NULL)
        fail_msg("answer %s", answer);
    free(answer);
    ws_send_text(c, "+");
    ws_expect_text(c, "2");
    tconn_close(p);
    tconn_close(c);

    /* n2 takes such requests only with the secret. */
    assert_int_equal(from_other_node(partyd_port(n2), NULL), 400);
    assert_int_equal(from_other_node(partyd_port(n2), "wrong"), 400);
    assert_int_equal(from_other_node(partyd_port(n2), "s3cret"), 200);
    assert_int_equal(partyd_stop(n1), 0);
    partyd_free(n1);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

/* A request in flight when its node dies (DESIGN.md D4): the room's next
 * incarnation, on another node, answers it "aborted". The reminder
 * party's webhook goes to a listener of this test that accepts it and
 * never answers. */
static void test_outbound_request_in_flight_on_a_dead_node_is_aborted_on_the_next(void **state) {
    char uri[512], allow[64], target[512];
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    struct pollfd pfd;
    http_response res;
    partyd *n1, *n2;
    int listener, held, port;
    (void)state;

    listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(listener >= 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 4), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
    port = ntohs(addr.sin_port);
    snprintf(allow, sizeof(allow), "127.0.0.1:%d", port);

    database_new(uri, sizeof(uri));
    {
        const char *args[] = {"--store", uri, "--node", "n1", "--fetch-allow", allow, NULL};
        n1 = partyd_start(args);
    }
    {
        const char *args[] = {"--store", uri, "--node", "n2", "--fetch-allow", allow, NULL};
        n2 = partyd_start(args);
    }
    assert_non_null(n1);
    assert_non_null(n2);
    snprintf(
        target, sizeof(target),
        "/parties/reminder/desk?in=50&name=tea&webhook=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fslow",
        port);
    http_expect_request(partyd_port(n1), "POST", target, NULL, "cup", 3, &res);
    assert_int_equal(res.status, 201);
    http_response_free(&res);
    /* The webhook reached the listener: in flight. */
    pfd.fd = listener;
    pfd.events = POLLIN;
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    held = accept(listener, NULL, NULL);
    assert_true(held >= 0);
    partyd_signal(n1, SIGKILL);
    assert_int_equal(partyd_wait_exit(n1, 5000), 128 + SIGKILL);
    partyd_free(n1);

    /* n2 takes the room: its next incarnation answers the request. */
    http_expect_get(partyd_port(n2), "/parties/reminder/desk", &res);
    assert_int_equal(res.status, 200);
    if (strstr(res.body, "\"webhooks\":[{\"name\":\"tea\",\"status\":0,\"error\":\"aborted") ==
        NULL)
        fail_msg("no aborted webhook in %s", res.body);
    assert_string_equal(http_response_header(&res, "X-Partyd-Node"), "n2");
    http_response_free(&res);
    close(held);
    close(listener);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
}

/* The same for a room-to-room request: a probe room of n1 asks another
 * room of n1 that holds its answer (probe's GET /hold blocks n1's loop
 * until a file that never appears); n1 is killed; n2 takes the caller,
 * whose next incarnation answers the request aborted, once. */
static void test_room_request_in_flight_on_a_dead_node_is_aborted_on_the_next(void **state) {
    char uri[512], dir[] = "/tmp/partyd-cluster-hold-XXXXXX", fetch[256], *at;
    partyd *n1, *n2;
    http_response res;
    tconn *c;
    (void)state;

    assert_non_null(mkdtemp(dir));
    database_new(uri, sizeof(uri));
    n1 = node_start(uri, "n1", NULL);
    n2 = node_start(uri, "n2", NULL);
    c = probe_open(partyd_port(n1), "caller", NULL, NULL);
    snprintf(fetch, sizeof(fetch), "fetch:probe/held/hold?until=%s/never", dir);
    ws_send_text(c, fetch);
    assert_true(partyd_wait_stderr(n1, "probe: hold held: holding", 30000));
    partyd_signal(n1, SIGKILL);
    assert_int_equal(partyd_wait_exit(n1, 5000), 128 + SIGKILL);
    tconn_close(c);
    partyd_free(n1);

    http_expect_get(partyd_port(n2), "/parties/probe/caller", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "X-Partyd-Node"), "n2");
    at = strstr(res.body, "response:0:");
    if (at == NULL || strstr(at + 1, "response:0:") != NULL ||
        strstr(res.body, "in flight") == NULL)
        fail_msg("not one aborted answer in %s", res.body);
    http_response_free(&res);
    assert_int_equal(partyd_stop(n2), 0);
    partyd_free(n2);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_survives_restart_on_sqlite),
        cmocka_unit_test(test_counter_survives_restart_on_postgres),
        cmocka_unit_test(test_alarm_knows_name_after_kill_on_sqlite),
        cmocka_unit_test(test_alarm_knows_name_after_kill_on_postgres),
        cmocka_unit_test(test_own_database_survives_kill_on_sqlite),
        cmocka_unit_test(test_own_database_survives_kill_on_postgres),
        cmocka_unit_test(test_newer_schema_is_refused_naming_both_versions),
        cmocka_unit_test(test_config_file_store_and_node_keys),
        cmocka_unit_test(test_default_node_name_is_host_and_pid_with_port_0),
        cmocka_unit_test(test_second_node_answers_503_for_a_room_the_first_will_not_hand_over),
        cmocka_unit_test(test_node_asked_for_a_room_hands_it_over_with_1012),
        cmocka_unit_test(test_alarm_of_a_dead_nodes_room_fires_on_another_node),
        cmocka_unit_test(test_stale_owner_commit_is_fenced_and_closes_1012),
        cmocka_unit_test(test_node_that_lost_its_lease_commits_nothing_then_registers_again),
        cmocka_unit_test(test_answers_name_the_node_and_the_rooms_epoch),
        cmocka_unit_test(test_single_process_names_itself_only_with_node),
        cmocka_unit_test(test_store_connections_are_capped),
        cmocka_unit_test(test_room_goes_on_when_the_server_closes_idle_connections),
        cmocka_unit_test(test_sigusr2_is_refused_on_a_shared_store),
        cmocka_unit_test(test_room_fetch_reaches_a_room_another_node_owns),
        cmocka_unit_test(test_outbound_request_in_flight_on_a_dead_node_is_aborted_on_the_next),
        cmocka_unit_test(test_room_request_in_flight_on_a_dead_node_is_aborted_on_the_next),
    };
    server_uri = getenv("PARTYD_TEST_PG");
    if (server_uri == NULL) {
        fprintf(stderr, "PARTYD_TEST_PG is not set: run me through tests/cluster/with_pg.sh\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
