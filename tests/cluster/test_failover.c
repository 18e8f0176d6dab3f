/* Failures of a partyd cluster under acknowledged writes: partyd nodes on
 * the private PostgreSQL of tests/cluster/with_pg.sh, HAProxy in front
 * (consistent hash on the room key, health checks, shutdown-sessions, as
 * examples/cluster/haproxy.cfg). Clients write to counter rooms and record
 * every acknowledged value with the node and epoch that answered
 * (X-Partyd-Node and X-Partyd-Epoch of the 101); the checker (history.c)
 * then proves that no room was served by two nodes at once and that no
 * acknowledged write was lost. Cases: kill -9 of nodes in turn under
 * continuous writes to many rooms; a hung node (SIGSTOP, then SIGCONT)
 * whose rooms move and which acknowledges nothing once resumed, with its
 * self-fencing on and off (then the database's epoch fence refuses it);
 * a node that loses PostgreSQL for longer than its lease (a loopback
 * relay the test freezes with SIGSTOP); rows of a room's own database
 * acknowledged, then kill -9, read back from the new owner; a restarted
 * node gets its rooms back. HAProxy's stderr comes to the test, which
 * waits for its lines marking a node down or up rather than for time.
 * Every wait is bounded; nothing waits on a clock for what an event
 * says. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "client.h"
#include "history.h"

static const char *server_uri; /* .../postgres: where test databases are made */
static int n_databases;

/* ---- PostgreSQL ---- */

/* A new, empty database: its URI into uri; its port into *port (may be
 * NULL). */
static void database_new(char *uri, size_t cap, int *port) {
    char sql[64];
    PGconn *c = PQconnectdb(server_uri);
    PGresult *res;
    const char *slash = strrchr(server_uri, '/');

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    if (port != NULL)
        *port = atoi(PQport(c));
    snprintf(sql, sizeof(sql), "CREATE DATABASE f%d", ++n_databases);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    snprintf(uri, cap, "%.*s/f%d", (int)(slash - server_uri), server_uri, n_databases);
}

/* Every counter room's name and count, read from the database, into h as
 * the values read back. */
static void read_back_counts(const char *uri, history *h) {
    PGconn *c = PQconnectdb(uri);
    PGresult *res;
    int i;
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, "SELECT convert_from(m.value, 'UTF8'), convert_from(k.value, 'UTF8')"
                    " FROM party_meta m JOIN party_kv k ON k.room_id = m.room_id"
                    " JOIN party_rooms r ON r.room_id = m.room_id"
                    " WHERE m.key = 'name' AND k.key = 'count' AND r.party = 'counter'");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("reading counts: %s", PQerrorMessage(c));
    for (i = 0; i < PQntuples(res); i++)
        assert_int_equal(history_final(h, PQgetvalue(res, i, 0), atoll(PQgetvalue(res, i, 1))), 0);
    PQclear(res);
    PQfinish(c);
}

/* ---- processes ---- */

/* Children this program forked (HAProxy, relays) and has not reaped yet:
 * a failed test leaves its own (cmocka jumps out of it), main stops them. */
static pid_t children[16];

static void child_add(pid_t pid) {
    size_t i;
    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

/* Stops a child by its pid (SIGCONT first: it may be frozen) and reaps it. */
static void child_stop(pid_t pid, int sig) {
    size_t i;
    kill(pid, sig);
    kill(pid, SIGCONT);
    waitpid(pid, NULL, 0);
    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] == pid)
            children[i] = 0;
}

static void children_stop_all(void) {
    size_t i;
    for (i = 0; i < sizeof(children) / sizeof(children[0]); i++)
        if (children[i] != 0)
            child_stop(children[i], SIGKILL);
}

static int free_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#define MAX_NODES 3

typedef struct cluster {
    char uri[512];    /* the nodes' store */
    char db_uri[512]; /* the same database, reached directly (not through a relay) */
    int n;            /* nodes */
    partyd *node[MAX_NODES];
    int port[MAX_NODES];
    const char *extra[MAX_NODES];  /* one more flag per node, or NULL */
    char node_uri[MAX_NODES][512]; /* a node's own way to the store ("": uri) */
    pid_t haproxy;
    int entry;
    /* HAProxy's stderr (its server state changes, "Server partyd/n2 is
     * UP"), read into log as the test waits for a line. */
    int haproxy_err;
    char log[65536];
    size_t log_len;
    char dir[64];
} cluster;

/* Node i (0-based) on its fixed port, named n<i+1>. */
static void node_up(cluster *cl, int i) {
    char port[16], name[16];
    const char *args[10];
    size_t n = 0;
    snprintf(port, sizeof(port), "%d", cl->port[i]);
    snprintf(name, sizeof(name), "n%d", i + 1);
    args[n++] = "--port"; /* after the client's own --port 0: this one wins */
    args[n++] = port;
    args[n++] = "--store";
    args[n++] = cl->node_uri[i][0] != '\0' ? cl->node_uri[i] : cl->uri;
    args[n++] = "--node";
    args[n++] = name;
    if (cl->extra[i] != NULL)
        args[n++] = cl->extra[i];
    args[n] = NULL;
    cl->node[i] = partyd_start(args);
    if (cl->node[i] == NULL)
        fail_msg("node %s did not start", name);
}

static void node_kill(cluster *cl, int i) {
    partyd_signal(cl->node[i], SIGKILL);
    assert_int_equal(partyd_wait_exit(cl->node[i], 5000), 128 + SIGKILL);
    partyd_free(cl->node[i]);
    cl->node[i] = NULL;
}

/* HAProxy in front of the nodes, configured as examples/cluster/haproxy.cfg
 * routes (without what that file may add for other features). Its
 * listening socket is made here and handed to it (bind fd@3): a client
 * may connect at once, its connection waits in the backlog until HAProxy
 * accepts it, so nothing waits for HAProxy to be up. */
static void haproxy_up(cluster *cl) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    http_response res;
    char path[128];
    FILE *f;
    int i, lfd, err[2];

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 512), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    cl->entry = ntohs(a.sin_port);
    snprintf(path, sizeof(path), "%s/haproxy.cfg", cl->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "global\n    maxconn 2000\n"
               "defaults\n    mode http\n    timeout connect 2s\n    timeout client 30s\n"
               "    timeout server 30s\n    timeout tunnel 1h\n    timeout check 1s\n"
               "frontend entry\n    bind fd@3\n"
               "    http-request set-var(txn.room) path,field(4,/),url_dec\n"
               "    http-request set-var(txn.key) path,field(3,/),lower,concat(/,txn.room)\n"
               "    default_backend partyd\n"
               "backend partyd\n    balance hash var(txn.key)\n    hash-type consistent\n"
               "    option httpchk GET /_partyd/health\n    http-check expect status 200\n"
               "    option redispatch 1\n    retries 2\n"
               "    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2"
               " weight 100 on-marked-down shutdown-sessions\n");
    for (i = 0; i < cl->n; i++)
        fprintf(f, "    server n%d 127.0.0.1:%d id %d check\n", i + 1, cl->port[i], i + 1);
    fclose(f);
    assert_int_equal(pipe(err), 0);
    cl->haproxy = fork();
    assert_true(cl->haproxy >= 0);
    if (cl->haproxy == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        dup2(err[1], 2);
        if (dup2(lfd, 3) != 3)
            _exit(127);
        execlp("haproxy", "haproxy", "-db", "-f", path, (char *)NULL);
        _exit(127);
    }
    child_add(cl->haproxy);
    close(lfd);
    close(err[1]);
    cl->haproxy_err = err[0];
    assert_int_equal(fcntl(err[0], F_SETFL, O_NONBLOCK), 0);
    cl->log_len = 0;
    /* Servers start up in HAProxy: a node answers through it. */
    http_expect_get(cl->entry, "/_partyd/health", &res);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
}

/* Reads what HAProxy wrote on its stderr so far; block: first wait for
 * it to write more. 0, or -1 once it closed it. */
static int haproxy_read(cluster *cl, int block) {
    struct pollfd p = {cl->haproxy_err, POLLIN, 0};
    for (;;) {
        ssize_t n;
        if (cl->log_len + 1 >= sizeof(cl->log))
            fail_msg("haproxy: more than %zu bytes of messages", cl->log_len);
        if (block && poll(&p, 1, -1) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        n = read(cl->haproxy_err, cl->log + cl->log_len, sizeof(cl->log) - 1 - cl->log_len);
        if (n > 0) {
            cl->log_len += (size_t)n;
            cl->log[cl->log_len] = '\0';
            block = 0;
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && block)
            continue;
        return 0;
    }
}

/* Where HAProxy's messages end now: what it writes from here on is
 * after it (a line to wait for after an event the test causes). */
static size_t haproxy_mark(cluster *cl) {
    (void)haproxy_read(cl, 0);
    return cl->log_len;
}

/* Reads HAProxy's stderr until line appears in it at or after offset
 * from (each read waits for HAProxy to write: a server changing state);
 * returns the offset just past it. */
static size_t haproxy_wait_line(cluster *cl, size_t from, const char *line) {
    for (;;) {
        const char *at;
        cl->log[cl->log_len] = '\0';
        at = strstr(cl->log + from, line);
        if (at != NULL)
            return (size_t)(at - cl->log) + strlen(line);
        if (haproxy_read(cl, 1) != 0)
            fail_msg("haproxy ended before '%s':\n%s", line, cl->log);
    }
}

/* Waits for HAProxy to mark node i (0-based) down ("DOWN") or up ("UP")
 * after the mark from; returns the offset past that line. */
static size_t haproxy_wait_server(cluster *cl, size_t from, int i, const char *state) {
    char line[64];
    snprintf(line, sizeof(line), "Server partyd/n%d is %s", i + 1, state);
    return haproxy_wait_line(cl, from, line);
}

/* The nodes' database is made first; relay_port > 0: node 1 reaches it
 * through the relay on that port. */
static void cluster_up_relayed(cluster *cl, int n, const char *extra_last, int relay_port) {
    int i;
    memset(cl, 0, sizeof(*cl));
    database_new(cl->uri, sizeof(cl->uri), NULL);
    if (relay_port > 0) {
        const char *db = strrchr(cl->uri, '/');
        snprintf(cl->node_uri[0], sizeof(cl->node_uri[0]), "postgresql://postgres@127.0.0.1:%d%s",
                 relay_port, db);
    }
    snprintf(cl->db_uri, sizeof(cl->db_uri), "%s", cl->uri);
    snprintf(cl->dir, sizeof(cl->dir), "/tmp/partyd-failover-XXXXXX");
    assert_non_null(mkdtemp(cl->dir));
    cl->n = n;
    cl->extra[n - 1] = extra_last;
    for (i = 0; i < n; i++)
        cl->port[i] = free_port();
    for (i = 0; i < n; i++)
        node_up(cl, i);
    haproxy_up(cl);
}

static void cluster_up(cluster *cl, int n, const char *extra_last) {
    cluster_up_relayed(cl, n, extra_last, 0);
}

static void cluster_down(cluster *cl) {
    int i;
    if (cl->haproxy > 0) {
        child_stop(cl->haproxy, SIGTERM);
        close(cl->haproxy_err);
    }
    for (i = 0; i < cl->n; i++)
        if (cl->node[i] != NULL) {
            partyd_stop(cl->node[i]);
            partyd_free(cl->node[i]);
        }
    test_remove_tree(cl->dir);
}

/* ---- writers: one WebSocket per counter room through HAProxy ---- */

typedef struct writer {
    char room[32];
    tconn *c; /* NULL while disconnected */
    char node[64];
    long long epoch;
    long long acked; /* writes acknowledged */
    int64_t last_ack_ms;
} writer;

/* Connects w's room through the entry: 1 on a 101 (its node and epoch
 * recorded), 0 when refused for now (503: the room is moving). */
static int writer_connect(writer *w, int entry) {
    char target[64];
    http_response res;
    const char *node, *epoch;
    int code;
    tconn *c = tconn_open(entry, 0);
    if (c == NULL)
        return 0;
    snprintf(target, sizeof(target), "/parties/counter/%s", w->room);
    code = ws_handshake(c, target, NULL, NULL, 0, &res);
    if (code != 0) {
        http_response_free(&res);
        tconn_close(c);
        return 0;
    }
    node = http_response_header(&res, "X-Partyd-Node");
    epoch = http_response_header(&res, "X-Partyd-Epoch");
    if (node == NULL || epoch == NULL)
        fail_msg("a 101 without X-Partyd-Node / X-Partyd-Epoch:\n%s", res.head);
    snprintf(w->node, sizeof(w->node), "%s", node);
    w->epoch = atoll(epoch);
    http_response_free(&res);
    w->c = c;
    return 1;
}

static void writer_drop(writer *w) {
    tconn_close(w->c);
    w->c = NULL;
}

/* One round: every connected writer sends "+", then every answer is read
 * and recorded; a writer whose connection ended reconnects. Returns the
 * writes acknowledged in the round. */
static int writers_round(writer *ws, int n, int entry, history *h) {
    int i, acked = 0;
    for (i = 0; i < n; i++)
        if (ws[i].c == NULL)
            (void)writer_connect(&ws[i], entry);
    for (i = 0; i < n; i++)
        if (ws[i].c != NULL && ws_send_text(ws[i].c, "+") != 0)
            writer_drop(&ws[i]);
    for (i = 0; i < n; i++) {
        ws_frame f;
        if (ws[i].c == NULL)
            continue;
        if (ws_recv(ws[i].c, &f, TC_TIMEOUT_MS) != 0) {
            writer_drop(&ws[i]);
            continue;
        }
        if (f.opcode == WS_TEXT) {
            assert_int_equal(history_ack(h, ws[i].room, ws[i].node, ws[i].epoch, atoll(f.data)), 0);
            ws[i].acked++;
            ws[i].last_ack_ms = test_now_ms();
            acked++;
        } else {
            /* A close (1012: moved or fenced; 1006-like: the node died):
             * nothing of this write was acknowledged. */
            writer_drop(&ws[i]);
        }
        ws_frame_free(&f);
    }
    return acked;
}

/* Rounds until every writer has an acknowledged write after since_ms
 * (bounded by max_rounds; each round waits for answers, not for time).
 * Callers first wait for HAProxy to route around a failed node, so that a
 * round's handshakes are not refused at once for that: a refused one
 * (503) has waited in partyd for the room's owner to let it go. */
static void writers_until_all_acked(writer *ws, int n, int entry, history *h, int64_t since_ms,
                                    int max_rounds) {
    int round, i, all = 0;
    for (round = 0; round < max_rounds && !all; round++) {
        (void)writers_round(ws, n, entry, h);
        for (all = 1, i = 0; i < n; i++)
            all &= ws[i].last_ack_ms > since_ms;
    }
    if (!all)
        for (i = 0; i < n; i++)
            if (ws[i].last_ack_ms <= since_ms)
                fail_msg("room %s: no write acknowledged after the failure", ws[i].room);
}

static void expect_history_holds(cluster *cl, history *h) {
    char why[512];
    read_back_counts(cl->db_uri, h);
    if (history_check(h, why, sizeof(why)) != 0)
        fail_msg("checker: %s", why);
}

/* ---- kill -9 under writes ---- */

#define KILL_ROOMS 24
/* bench/cluster.sh runs 20 (FAILOVER_KILL_CYCLES). */
static int kill_cycles = 3;

static void test_kill_9_in_turn_loses_no_acknowledged_write(void **state) {
    cluster cl;
    writer ws[KILL_ROOMS];
    history *h = history_new();
    int i, cycle;
    (void)state;

    cluster_up(&cl, 3, NULL);
    memset(ws, 0, sizeof(ws));
    for (i = 0; i < KILL_ROOMS; i++)
        snprintf(ws[i].room, sizeof(ws[i].room), "k-%d", i);
    writers_until_all_acked(ws, KILL_ROOMS, cl.entry, h, 0, 100);
    for (cycle = 0; cycle < kill_cycles; cycle++) {
        int victim = cycle % cl.n;
        int64_t killed_at;
        size_t mark;
        for (i = 0; i < 5; i++)
            writers_round(ws, KILL_ROOMS, cl.entry, h);
        mark = haproxy_mark(&cl);
        node_kill(&cl, victim);
        killed_at = test_now_ms();
        /* Its rooms answer again through HAProxy, from the others, once
         * HAProxy marked it down (until then, it may refuse a few). */
        mark = haproxy_wait_server(&cl, mark, victim, "DOWN");
        writers_until_all_acked(ws, KILL_ROOMS, cl.entry, h, killed_at, 500);
        node_up(&cl, victim);
        (void)haproxy_wait_server(&cl, mark, victim, "UP");
        for (i = 0; i < 5; i++)
            writers_round(ws, KILL_ROOMS, cl.entry, h);
    }
    for (i = 0; i < KILL_ROOMS; i++)
        writer_drop(&ws[i]);
    expect_history_holds(&cl, h);
    /* The kills moved rooms: more epochs than rooms. */
    assert_true(history_epochs(h) > KILL_ROOMS);
    print_message("kill cycles %d: %zu writes acknowledged in %zu rooms over %zu epochs,"
                  " 0 lost, 0 rooms on two nodes\n",
                  kill_cycles, history_acks(h), history_rooms(h), history_epochs(h));
    history_free(h);
    cluster_down(&cl);
}

/* ---- a hung node ---- */

/* The GET of a metrics family's value on a node (-1 if absent). */
static long long metric(int port, const char *name) {
    http_response res;
    char needle[128];
    const char *at;
    long long v = -1;
    http_expect_get(port, "/_partyd/metrics", &res);
    snprintf(needle, sizeof(needle), "\n%s ", name);
    at = strstr(res.body, needle);
    if (at != NULL)
        v = atoll(at + strlen(needle));
    http_response_free(&res);
    return v;
}

/* A room name the entry routes to node (by the 101's X-Partyd-Node): its
 * writer, connected, with one acknowledged write. */
static void writer_on_node(writer *w, cluster *cl, const char *node, const char *prefix,
                           history *h) {
    int i;
    for (i = 0; i < 200; i++) {
        memset(w, 0, sizeof(*w));
        snprintf(w->room, sizeof(w->room), "%s-%d", prefix, i);
        if (!writer_connect(w, cl->entry))
            continue;
        if (strcmp(w->node, node) == 0) {
            writers_until_all_acked(w, 1, cl->entry, h, 0, 50);
            return;
        }
        writer_drop(w);
    }
    fail_msg("no room routed to %s", node);
}

/* GET /_partyd/health on port answers status (the caller waited for
 * the event that settles it). */
static void expect_health(int port, int status) {
    http_response res;
    http_expect_get(port, "/_partyd/health", &res);
    assert_int_equal(res.status, status);
    http_response_free(&res);
}

static void hung_node(const char *extra) {
    cluster cl;
    writer w;
    history *h = history_new();
    tconn *stale;
    ws_frame f;
    char target[64];
    int64_t stopped_at;
    size_t mark;
    int i;

    cluster_up(&cl, 2, extra);
    writer_on_node(&w, &cl, "n2", "hung", h);
    /* A connection straight to n2 (HAProxy would cut it): the stale
     * owner's client. */
    snprintf(target, sizeof(target), "/parties/counter/%s", w.room);
    stale = ws_open(cl.port[1], target);

    mark = haproxy_mark(&cl);
    partyd_signal(cl.node[1], SIGSTOP);
    stopped_at = test_now_ms();
    /* HAProxy cuts n2's clients once it marks it down (its checks time
     * out); the room answers again from n1 once n2's lease ran out (n1's
     * handshakes wait for it, up to 3 s each). */
    mark = haproxy_wait_server(&cl, mark, 1, "DOWN");
    writers_until_all_acked(&w, 1, cl.entry, h, stopped_at, 1000);
    assert_string_equal(w.node, "n1");

    partyd_signal(cl.node[1], SIGCONT);
    /* The resumed node acknowledges nothing: its commit is refused (by
     * itself, or by the database's fence when self-fencing is off) and the
     * connection closes with 1012. */
    assert_int_equal(ws_send_text(stale, "+"), 0);
    assert_int_equal(ws_recv(stale, &f, TC_TIMEOUT_MS), 0);
    if (f.opcode != WS_CLOSE || f.close_code != 1012)
        fail_msg("the resumed node answered opcode %d (%s), not a close 1012", f.opcode, f.data);
    ws_frame_free(&f);
    tconn_close(stale);
    if (extra != NULL) {
        /* Only the database's fence stood in its way, and counted it; the
         * node stays unhealthy (HAProxy keeps clients away). */
        assert_true(metric(cl.port[1], "partyd_storage_fenced_total") > 0);
        expect_health(cl.port[1], 503);
    } else {
        /* It gave its rooms up and registered again: healthy, which
         * HAProxy says once two checks in a row passed. */
        (void)haproxy_wait_server(&cl, mark, 1, "UP");
        expect_health(cl.port[1], 200);
    }
    /* Writes go on, wherever HAProxy and hand-offs put the room. */
    for (i = 0; i < 20; i++)
        writers_round(&w, 1, cl.entry, h);
    writer_drop(&w);
    expect_history_holds(&cl, h);
    history_free(h);
    cluster_down(&cl);
}

static void test_hung_node_resumed_acknowledges_nothing(void **state) {
    (void)state;
    hung_node(NULL);
}

static void test_hung_node_without_self_fencing_is_refused_by_the_database(void **state) {
    (void)state;
    hung_node("--test-no-self-fence");
}

/* ---- PostgreSQL lost for longer than the lease ---- */

/* A loopback TCP relay to the database, in a child process the test can
 * freeze (SIGSTOP): the node's connections stay open but nothing passes,
 * as in a network partition, with no firewall rule. */
#define RELAY_MAX 64

static void relay_main(int listener, int target_port) {
    struct pollfd p[1 + 2 * RELAY_MAX];
    int peer[1 + 2 * RELAY_MAX];
    nfds_t n = 1, i;
    char buf[16384];

    p[0].fd = listener;
    p[0].events = POLLIN;
    for (;;) {
        if (poll(p, n, -1) < 0 && errno != EINTR)
            _exit(1);
        if ((p[0].revents & POLLIN) && n + 2 <= 1 + 2 * RELAY_MAX) {
            int in = accept(listener, NULL, NULL), out;
            struct sockaddr_in a;
            if (in >= 0) {
                out = socket(AF_INET, SOCK_STREAM, 0);
                memset(&a, 0, sizeof(a));
                a.sin_family = AF_INET;
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a.sin_port = htons((uint16_t)target_port);
                if (out < 0 || connect(out, (struct sockaddr *)&a, sizeof(a)) != 0) {
                    close(in);
                    if (out >= 0)
                        close(out);
                } else {
                    p[n].fd = in;
                    p[n].events = POLLIN;
                    peer[n] = (int)n + 1;
                    p[n + 1].fd = out;
                    p[n + 1].events = POLLIN;
                    peer[n + 1] = (int)n;
                    n += 2;
                }
            }
        }
        for (i = 1; i < n; i++) {
            ssize_t got;
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            got = read(p[i].fd, buf, sizeof(buf));
            if (got <= 0 || write(p[peer[i]].fd, buf, (size_t)got) != got) {
                /* One side ended: so does the pair. */
                close(p[i].fd);
                close(p[peer[i]].fd);
                p[peer[i]].fd = -1;
                p[i].fd = -1;
            }
        }
    }
}

/* Starts the relay to the database's port; its pid, its port in *port. */
static pid_t relay_start(int target_port, int *port) {
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    pid_t pid;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        relay_main(fd, target_port);
    close(fd);
    child_add(pid);
    return pid;
}

static void test_node_that_loses_postgres_turns_unhealthy_and_acknowledges_nothing(void **state) {
    cluster cl;
    writer w;
    history *h = history_new();
    tconn *stale;
    ws_frame f;
    char target[64], probe[512];
    int pg_port, relay_port;
    pid_t relay;
    size_t mark;
    int64_t lost_at;
    (void)state;

    /* Node n1 reaches the database through the relay, n2 directly. */
    database_new(probe, sizeof(probe), &pg_port); /* only for the server's port */
    relay = relay_start(pg_port, &relay_port);
    cluster_up_relayed(&cl, 2, NULL, relay_port);
    writer_on_node(&w, &cl, "n1", "lost", h);
    snprintf(target, sizeof(target), "/parties/counter/%s", w.room);
    stale = ws_open(cl.port[0], target);

    mark = haproxy_mark(&cl);
    kill(relay, SIGSTOP);
    lost_at = test_now_ms();
    /* Past its lease, n1 says it is unhealthy (its heartbeat waits on the
     * frozen relay): HAProxy marks it down after two such answers. */
    (void)haproxy_wait_server(&cl, mark, 0, "DOWN");
    expect_health(cl.port[0], 503);
    /* It acknowledges nothing: the write closes its connection with 1012. */
    assert_int_equal(ws_send_text(stale, "+"), 0);
    assert_int_equal(ws_recv(stale, &f, TC_TIMEOUT_MS), 0);
    if (f.opcode != WS_CLOSE || f.close_code != 1012)
        fail_msg("the node without PostgreSQL answered opcode %d (%s), not a close 1012", f.opcode,
                 f.data);
    ws_frame_free(&f);
    tconn_close(stale);
    /* The room answers again, from n2, through HAProxy. */
    writers_until_all_acked(&w, 1, cl.entry, h, lost_at, 1000);
    assert_string_equal(w.node, "n2");
    writer_drop(&w);

    /* The relay goes; n1's connections end and it can stop. */
    child_stop(relay, SIGKILL);
    expect_history_holds(&cl, h);
    history_free(h);
    cluster_down(&cl);
}

/* ---- a room's own database after kill -9 ---- */

#define DB_ROOMS 6

typedef struct db_writer {
    char room[32];
    tconn *c;
    int acked; /* rows 1..acked acknowledged */
} db_writer;

/* Opens the probe room through the entry: 1 once greeted, else 0. */
static int db_writer_connect(db_writer *w, int entry) {
    char target[64];
    http_response res;
    ws_frame f;
    tconn *c = tconn_open(entry, 0);
    if (c == NULL)
        return 0;
    snprintf(target, sizeof(target), "/parties/probe/%s", w->room);
    if (ws_handshake(c, target, NULL, NULL, 0, &res) != 0) {
        http_response_free(&res);
        tconn_close(c);
        return 0;
    }
    http_response_free(&res);
    if (ws_recv(c, &f, TC_TIMEOUT_MS) != 0 || f.opcode != WS_TEXT ||
        strncmp(f.data, "hello:", 6) != 0) {
        if (f.data != NULL)
            ws_frame_free(&f);
        tconn_close(c);
        return 0;
    }
    ws_frame_free(&f);
    w->c = c;
    return 1;
}

/* Sends sql and reads the answer into out: 1, or 0 if the connection
 * ended (the caller reconnects). */
static int db_writer_sql(db_writer *w, const char *sql, char *out, size_t cap) {
    char text[256];
    ws_frame f;
    snprintf(text, sizeof(text), "sql:%s", sql);
    if (ws_send_text(w->c, text) != 0 || ws_recv(w->c, &f, TC_TIMEOUT_MS) != 0) {
        tconn_close(w->c);
        w->c = NULL;
        return 0;
    }
    if (f.opcode != WS_TEXT) {
        ws_frame_free(&f);
        tconn_close(w->c);
        w->c = NULL;
        return 0;
    }
    if (strncmp(f.data, "sql:", 4) != 0)
        fail_msg("room %s: %s answered %s", w->room, sql, f.data);
    snprintf(out, cap, "%s", f.data + 4);
    ws_frame_free(&f);
    return 1;
}

/* Inserts the next row of each room (rows up to acked are acknowledged);
 * a writer without a connection reconnects first. */
static void db_writers_round(db_writer *ws, int n, int entry) {
    char sql[160], out[64];
    int i;
    for (i = 0; i < n; i++) {
        if (ws[i].c == NULL && !db_writer_connect(&ws[i], entry))
            continue;
        /* OR REPLACE: a row written but not acknowledged may be there. */
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT);"
                 " INSERT OR REPLACE INTO t VALUES (%d, 'row %d')",
                 ws[i].acked + 1, ws[i].acked + 1);
        if (db_writer_sql(&ws[i], sql, out, sizeof(out)))
            ws[i].acked++;
    }
}

static void test_own_database_rows_acknowledged_survive_kill_9_of_their_node(void **state) {
    cluster cl;
    db_writer ws[DB_ROOMS];
    char out[64], sql[128];
    int i, round, victim, acked_at_kill[DB_ROOMS];
    size_t mark;
    (void)state;

    cluster_up(&cl, 3, NULL);
    memset(ws, 0, sizeof(ws));
    for (i = 0; i < DB_ROOMS; i++)
        snprintf(ws[i].room, sizeof(ws[i].room), "db-%d", i);
    for (round = 0; round < 20; round++)
        db_writers_round(ws, DB_ROOMS, cl.entry);
    /* kill -9 the node of the first room, mid-stream. */
    {
        http_response res;
        char target[64];
        const char *node;
        snprintf(target, sizeof(target), "/parties/probe/%s", ws[0].room);
        http_expect_get(cl.entry, target, &res);
        assert_int_equal(res.status, 200);
        node = http_response_header(&res, "X-Partyd-Node");
        assert_true(node != NULL);
        victim = node != NULL ? atoi(node + 1) - 1 : 0; /* "n2" is node 1 */
        http_response_free(&res);
    }
    for (i = 0; i < DB_ROOMS; i++)
        acked_at_kill[i] = ws[i].acked;
    mark = haproxy_mark(&cl);
    node_kill(&cl, victim);
    /* Once HAProxy routes around the dead node, each round's writes are
     * answered by the others (each waits for its answer). */
    (void)haproxy_wait_server(&cl, mark, victim, "DOWN");
    for (round = 0; round < 100; round++) {
        int all = 1;
        db_writers_round(ws, DB_ROOMS, cl.entry);
        for (i = 0; i < DB_ROOMS; i++)
            all &= ws[i].acked > acked_at_kill[i] + 5;
        if (all)
            break;
    }
    /* Every acknowledged row is read back, from whichever node owns the
     * room now (the first room's is another node). */
    for (i = 0; i < DB_ROOMS; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE k <= %d", ws[i].acked);
        assert_true(db_writer_sql(&ws[i], sql, out, sizeof(out)));
        if (atoi(out) != ws[i].acked)
            fail_msg("room %s: %s of %d acknowledged rows read back", ws[i].room, out, ws[i].acked);
        tconn_close(ws[i].c);
    }
    cluster_down(&cl);
}

/* ---- failback ---- */

#define BACK_ROOMS 12

static void test_restarted_node_gets_its_rooms_back_never_open_on_two(void **state) {
    cluster cl;
    writer ws[BACK_ROOMS];
    history *h = history_new();
    int i, round, on_n2 = 0, back = 0, home[BACK_ROOMS];
    size_t mark;
    int64_t killed_at;
    (void)state;

    cluster_up(&cl, 2, NULL);
    memset(ws, 0, sizeof(ws));
    for (i = 0; i < BACK_ROOMS; i++)
        snprintf(ws[i].room, sizeof(ws[i].room), "back-%d", i);
    writers_until_all_acked(ws, BACK_ROOMS, cl.entry, h, 0, 100);
    for (i = 0; i < BACK_ROOMS; i++) {
        home[i] = strcmp(ws[i].node, "n2") == 0;
        on_n2 += home[i];
    }
    assert_true(on_n2 > 0 && on_n2 < BACK_ROOMS);
    mark = haproxy_mark(&cl);
    node_kill(&cl, 1);
    killed_at = test_now_ms();
    mark = haproxy_wait_server(&cl, mark, 1, "DOWN");
    writers_until_all_acked(ws, BACK_ROOMS, cl.entry, h, killed_at, 500);
    /* HAProxy marked n2 down, and marks it up once it runs again (two
     * health checks a second apart): each is a line HAProxy writes. n1
     * has held n2's rooms since before n2 started again, so longer than
     * the hand-off hold (1 s) by then: it hands them over when asked. */
    node_up(&cl, 1);
    (void)haproxy_wait_server(&cl, mark, 1, "UP");
    /* HAProxy sends n2's rooms back to it, for new connections: the
     * writers of those rooms reconnect (as clients do), n2 asks n1 for
     * each room and n1 hands it over (closing its connections there with
     * 1012); each handshake waits for that. A round waits for every
     * answer; a handshake refused for now (503) is tried in the next. */
    for (round = 0; round < 50 && back < on_n2; round++) {
        for (i = 0; i < BACK_ROOMS; i++)
            if (home[i] && ws[i].c != NULL && strcmp(ws[i].node, "n2") != 0)
                writer_drop(&ws[i]);
        (void)writers_round(ws, BACK_ROOMS, cl.entry, h);
        for (back = 0, i = 0; i < BACK_ROOMS; i++)
            back += home[i] && ws[i].c != NULL && strcmp(ws[i].node, "n2") == 0;
    }
    assert_int_equal(back, on_n2);
    /* By hand-offs: n1 gave the rooms up when asked. */
    assert_true(partyd_wait_stderr(cl.node[0], "given up to another node", 1000));
    for (i = 0; i < BACK_ROOMS; i++)
        writer_drop(&ws[i]);
    /* No room was open on two nodes at once, nothing acknowledged lost. */
    expect_history_holds(&cl, h);
    history_free(h);
    cluster_down(&cl);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_9_in_turn_loses_no_acknowledged_write),
        cmocka_unit_test(test_hung_node_resumed_acknowledges_nothing),
        cmocka_unit_test(test_hung_node_without_self_fencing_is_refused_by_the_database),
        cmocka_unit_test(test_node_that_loses_postgres_turns_unhealthy_and_acknowledges_nothing),
        cmocka_unit_test(test_restarted_node_gets_its_rooms_back_never_open_on_two),
        cmocka_unit_test(test_own_database_rows_acknowledged_survive_kill_9_of_their_node),
    };
    int r;
    const struct CMUnitTest kill_only[] = {
        cmocka_unit_test(test_kill_9_in_turn_loses_no_acknowledged_write),
    };
    const char *cycles = getenv("FAILOVER_KILL_CYCLES");
    if (cycles != NULL && atoi(cycles) > 0)
        kill_cycles = atoi(cycles);
    server_uri = getenv("PARTYD_TEST_PG");
    if (server_uri == NULL) {
        fprintf(stderr, "PARTYD_TEST_PG is not set: run me through tests/cluster/with_pg.sh\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* FAILOVER_ONLY_KILL=1: the kill cycles alone (bench/cluster.sh). */
    if (getenv("FAILOVER_ONLY_KILL") != NULL)
        r = cmocka_run_group_tests(kill_only, NULL, NULL);
    else
        r = cmocka_run_group_tests(tests, NULL, NULL);
    children_stop_all();
    return r;
}
