/* store_pg: the PostgreSQL backend of the storage seam (storage.h), for
 * several partyd nodes sharing one database. A room's records are rows
 * keyed by room id; a loaded room holds them in memory (the record ops
 * never wait for the network) and its batch's changes in an undo log that
 * commit_batch writes in one fenced transaction. Ownership: each node
 * registers a row with a lease (heartbeat thread) and holds a session
 * advisory lock on its control connection; a room is taken with a new
 * epoch and every write transaction checks it (FOR SHARE), so a stale
 * owner's commit is refused (PARTY_EFENCED). A room's own SQLite database
 * (party_room_db) is kept in memory and travels as session changesets,
 * with snapshots now and then, inside the same fenced transaction. See
 * docs/cluster.md. */
#include "storage.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
/* The session extension (changesets), built into Debian's SQLite. */
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>

#include "alloc.h"
#include "utf8.h"

/* The version of the schema this partyd writes. */
#define PG_FORMAT_VERSION 2
/* The advisory lock class of node locks, pg_advisory_lock(1885434484,
 * node_no) ("part"; the schema's lock is node_no 0): spelled out in the
 * SQL below, which party_node_alive() matches in pg_locks. */
#define LEASE_SECONDS 5
#define HEARTBEAT_MS 1000
/* The heartbeat thread also reads hand-off requests (LISTEN) this often. */
#define LISTEN_TICK_MS 100
/* An acquire refused because a live node holds the room asks that node to
 * hand it over, then tries again this often, for up to HANDOFF_WAIT_MS. */
#define HANDOFF_RETRY_MS 100
#define HANDOFF_WAIT_MS 3000
#define HANDOFF_HOLD_MS 1000
#define POOL_MAX 8
/* Connections a node opens for its worker threads at most, unless
 * configured (--store-connections). */
#define CONNECTIONS_DEFAULT 16
#define OWNED_BUCKETS 1024
/* An own-file room writes a whole snapshot instead of a changeset after
 * this many changesets (and whenever its schema changed). */
#define SNAPSHOT_EVERY 64

static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS party_format (k int PRIMARY KEY CHECK (k = 1),"
    " version int NOT NULL);"
    "CREATE TABLE IF NOT EXISTS party_nodes (node_no serial PRIMARY KEY,"
    " name text UNIQUE NOT NULL, node_id text UNIQUE, lease_until timestamptz NOT NULL"
    " DEFAULT '-infinity');"
    "CREATE TABLE IF NOT EXISTS party_rooms (room_id text COLLATE \"C\" PRIMARY KEY,"
    " party text NOT NULL, owner text, epoch bigint NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS party_kv (room_id text COLLATE \"C\" NOT NULL,"
    " key text COLLATE \"C\" NOT NULL, value bytea NOT NULL, PRIMARY KEY (room_id, key));"
    "CREATE TABLE IF NOT EXISTS party_meta (room_id text COLLATE \"C\" NOT NULL,"
    " key text COLLATE \"C\" NOT NULL, value bytea NOT NULL, PRIMARY KEY (room_id, key));"
    "CREATE TABLE IF NOT EXISTS party_alarm (room_id text COLLATE \"C\" PRIMARY KEY,"
    " at_ms bigint NOT NULL, retries int NOT NULL);"
    "CREATE TABLE IF NOT EXISTS party_schedules (room_id text COLLATE \"C\" NOT NULL,"
    " id text COLLATE \"C\" NOT NULL, name text NOT NULL, payload bytea NOT NULL,"
    " kind int NOT NULL, interval_ms bigint NOT NULL, cron text, next_ms bigint NOT NULL,"
    " PRIMARY KEY (room_id, id));"
    "CREATE TABLE IF NOT EXISTS party_alarm_index (room_id text COLLATE \"C\" PRIMARY KEY,"
    " party text NOT NULL, due_ms bigint NOT NULL);"
    "CREATE INDEX IF NOT EXISTS party_alarm_index_due ON party_alarm_index (due_ms);"
    "CREATE TABLE IF NOT EXISTS party_room_files (room_id text COLLATE \"C\" PRIMARY KEY,"
    " snapshot bytea NOT NULL, seq bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS party_room_changes (room_id text COLLATE \"C\" NOT NULL,"
    " seq bigint NOT NULL, changeset bytea NOT NULL, PRIMARY KEY (room_id, seq));"
    /* A node is alive while its lease runs and its control session holds
     * its advisory lock: a crashed process loses the lock at once. */
    "CREATE OR REPLACE FUNCTION party_node_alive(p_owner text) RETURNS boolean"
    " LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM party_nodes n"
    " WHERE n.node_id = p_owner AND n.lease_until >= now() AND EXISTS (SELECT 1 FROM pg_locks l"
    " WHERE l.locktype = 'advisory' AND l.classid = 1885434484 AND l.objid = n.node_no"
    " AND l.objsubid = 2 AND l.granted)) $$;";

/* Version 2: where each node is reached for room-to-room requests. */
static const char schema_v2[] = "ALTER TABLE party_nodes ADD COLUMN IF NOT EXISTS addr text;";

/* steps[v] brings the schema from version v to v + 1. */
static const char *const schema_steps[PG_FORMAT_VERSION] = {schema_v1, schema_v2};

/* ---- the backend ---- */

/* A room this process holds: how many acquires are not released yet, and
 * the epoch of the last one that completed (release gives up that one). */
typedef struct owned_room {
    struct owned_room *next;
    char id[PARTY_ID_MAX];
    unsigned count;
    int64_t epoch;
    uint64_t since; /* uv_hrtime() when that epoch was taken */
} owned_room;

typedef struct pg_backend {
    party__backend base;
    char *conninfo;
    char node_name[256];
    /* node_name:incarnation; a new incarnation after a lost lease, while
     * this node holds no room (read under beat_mutex off the heartbeat
     * thread: node_id_copy) */
    char node_id[300];
    char addr[128]; /* where other nodes reach this one ("": nowhere); under beat_mutex */
    void (*give_up)(void *arg, const char *room_id);
    void *give_up_arg;
    uint64_t hold_ns; /* hand a room over only after holding it this long */
    int node_no;
    /* Connections for worker threads, idle ones here (up to POOL_MAX);
     * n_open counts them and those in use, at most max_conns: a thread
     * that wants one more waits on pool_cond for one to come back. */
    uv_mutex_t pool_mutex;
    uv_cond_t pool_cond;
    PGconn *pool[POOL_MAX];
    size_t n_pool, n_open, max_conns;
    /* The control connection: node lock and heartbeat (its thread only,
     * once started). */
    PGconn *control;
    uv_thread_t heartbeat;
    uv_mutex_t beat_mutex;
    uv_cond_t beat_cond;
    int beat_started, beat_stop;
    int lease_lost;      /* under beat_mutex: the lease could not be renewed */
    int no_self_fence;   /* test hook: lease_lost does not stop commits or acquires */
    char rereg_why[160]; /* under beat_mutex: why registering again failed last */
    /* under beat_mutex: uv_hrtime() past which the lease may have run out
     * (sent time of the last renewal + the lease - a second) */
    uint64_t lease_deadline;
    /* Rooms held: the ownership map. */
    uv_mutex_t owned_mutex;
    owned_room *owned[OWNED_BUCKETS];
} pg_backend;

static const party__store_ops pg_ops;

static PGconn *connect_db(const char *conninfo, int control, char *why, size_t why_len) {
    /* The control session's keepalives bound how long a partitioned node
     * keeps its lock (reference: 4 s with these). */
    const char *keys[] = {"dbname",
                          "application_name",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "connect_timeout",
                          NULL};
    /* A server that accepts but never answers (a partition) must not hold
     * a (re)connect forever: the heartbeat thread reconnects, and close
     * waits for it. */
    const char *vals[] = {conninfo, control ? "partyd-control" : "partyd", "1", "2", "1", "3", "10",
                          NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(why, why_len, "postgres: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        const char *m = PQerrorMessage(c);
        size_t n = strlen(m);
        while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
            n--;
        snprintf(why, why_len, "postgres: cannot connect: %.*s", (int)n, m);
        PQfinish(c);
        return NULL;
    }
    return c;
}

static int prepare_commits(PGconn *c, char *why, size_t why_len);

/* 1 if an idle connection of the pool may still be used. The server
 * closes idle sessions on its own (a restart, idle_session_timeout, a
 * pooler's timeout, pg_terminate_backend) and libpq notices only when the
 * next query fails, losing that query's batch. An idle connection has
 * nothing to read: a socket that is readable or hung up holds the
 * server's last words (its FATAL) or its end of file. Anything else the
 * server might send an idle session (a notice, a changed setting) is
 * rare enough that a new connection is the cheaper answer than telling
 * it apart: no byte of ours is at stake here. */
static int idle_alive(PGconn *c) {
    struct pollfd p;
    int n;
    if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE ||
        PQpipelineStatus(c) != PQ_PIPELINE_OFF || (p.fd = PQsocket(c)) < 0)
        return 0;
    p.events = POLLIN;
    p.revents = 0;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n == 0;
}

/* A new connection of the pool, its commit statements prepared; NULL
 * with why. */
static PGconn *pool_connect(pg_backend *be, char *why, size_t why_len) {
    PGconn *c = connect_db(be->conninfo, 0, why, why_len);
    if (c != NULL && prepare_commits(c, why, why_len) != 0) {
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* A connection for this thread's work: an idle one still open, or a new
 * one while fewer than max_conns are open, else the next one given back.
 * An idle one the server closed is replaced by a new one (counted in
 * reconnects) before anything is sent on it. A thread holds at most one
 * at a time, so waiting cannot deadlock. */
static PGconn *pool_get(pg_backend *be, char *why, size_t why_len) {
    PGconn *c = NULL;
    uv_mutex_lock(&be->pool_mutex);
    while (be->n_pool == 0 && be->n_open >= be->max_conns)
        uv_cond_wait(&be->pool_cond, &be->pool_mutex);
    if (be->n_pool > 0)
        c = be->pool[--be->n_pool];
    else
        be->n_open++;
    uv_mutex_unlock(&be->pool_mutex);
    if (c != NULL && idle_alive(c))
        return c;
    if (c != NULL) {
        PQfinish(c); /* its place is the new one's */
        __atomic_add_fetch(&be->base.reconnects, 1, __ATOMIC_RELAXED);
    }
    c = pool_connect(be, why, why_len);
    if (c == NULL) {
        uv_mutex_lock(&be->pool_mutex);
        be->n_open--;
        uv_cond_signal(&be->pool_cond);
        uv_mutex_unlock(&be->pool_mutex);
    }
    return c;
}

/* Gives a connection back; one broken or left inside a transaction is
 * closed instead, and so is one past the idle ones kept. */
static void pool_put(pg_backend *be, PGconn *c) {
    int keep;
    if (c == NULL)
        return;
    keep = PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE &&
           PQpipelineStatus(c) == PQ_PIPELINE_OFF;
    uv_mutex_lock(&be->pool_mutex);
    if (keep && be->n_pool < POOL_MAX) {
        be->pool[be->n_pool++] = c;
        c = NULL;
    } else {
        be->n_open--;
    }
    uv_cond_signal(&be->pool_cond);
    uv_mutex_unlock(&be->pool_mutex);
    if (c != NULL)
        PQfinish(c);
}

/* The server's message, one line, into why. */
static void describe(PGconn *c, const PGresult *res, const char *what, char *why, size_t why_len) {
    const char *m = res != NULL ? PQresultErrorMessage(res) : "";
    size_t n;
    if (m == NULL || m[0] == '\0')
        m = PQerrorMessage(c);
    n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    snprintf(why, why_len, "postgres: %s: %.*s", what, (int)n, m);
}

/* Runs sql with text parameters (lens[i] > 0 or formats[i] 1: binary),
 * results in binary. NULL on a connection failure. */
static PGresult *run(PGconn *c, const char *sql, int n, const char *const *vals, const int *lens,
                     const int *formats) {
    return PQexecParams(c, sql, n, NULL, vals, lens, formats, 1);
}

/* A command that returns nothing: 0 or PARTY_EIO. */
static int exec_ok(PGconn *c, const char *sql) {
    PGresult *res = PQexec(c, sql);
    int ok = res != NULL &&
             (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    return ok ? 0 : PARTY_EIO;
}

static int ok_status(const PGresult *res) {
    return res != NULL &&
           (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
}

/* Binary results. */
static int64_t col_i64(const PGresult *res, int row, int col) {
    uint64_t v;
    if (PQgetlength(res, row, col) == 4) {
        uint32_t w;
        memcpy(&w, PQgetvalue(res, row, col), 4);
        return (int32_t)be32toh(w);
    }
    memcpy(&v, PQgetvalue(res, row, col), 8);
    return (int64_t)be64toh(v);
}

/* ---- schema and format version ---- */

static int schema_check(PGconn *c, char *why, size_t why_len) {
    PGresult *res;
    int version = 0, v, r = 0;
    char sql[160];

    /* One node migrates at a time; the others wait for it here. */
    if (exec_ok(c, "BEGIN") != 0)
        goto fail;
    res = PQexec(c, "SELECT pg_advisory_xact_lock(1885434484, 0)");
    if (!ok_status(res)) {
        describe(c, res, "locking the schema", why, why_len);
        PQclear(res);
        goto failed;
    }
    PQclear(res);
    res = PQexec(c, "SELECT to_regclass('party_format') IS NOT NULL");
    if (!ok_status(res) || PQntuples(res) != 1) {
        describe(c, res, "reading the format version", why, why_len);
        PQclear(res);
        goto failed;
    }
    if (PQgetvalue(res, 0, 0)[0] == 't') {
        PQclear(res);
        res = PQexec(c, "SELECT version FROM party_format WHERE k = 1");
        if (!ok_status(res)) {
            describe(c, res, "reading the format version", why, why_len);
            PQclear(res);
            goto failed;
        }
        if (PQntuples(res) == 1)
            version = atoi(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    if (version > PG_FORMAT_VERSION || version < 0) {
        snprintf(why, why_len,
                 "postgres: storage format version %d, newer than this partyd's (version %d):"
                 " written by a newer partyd; run that one or a later one",
                 version, PG_FORMAT_VERSION);
        (void)exec_ok(c, "ROLLBACK");
        return PARTY_EIO;
    }
    for (v = version; v < PG_FORMAT_VERSION; v++) {
        res = PQexec(c, schema_steps[v]);
        if (!ok_status(res)) {
            char what[64];
            snprintf(what, sizeof(what), "migrating from format version %d to %d", version,
                     PG_FORMAT_VERSION);
            describe(c, res, what, why, why_len);
            PQclear(res);
            goto failed;
        }
        PQclear(res);
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO party_format (k, version) VALUES (1, %d)"
             " ON CONFLICT (k) DO UPDATE SET version = excluded.version",
             PG_FORMAT_VERSION);
    if (version != PG_FORMAT_VERSION && exec_ok(c, sql) != 0)
        goto fail;
    if (exec_ok(c, "COMMIT") != 0)
        goto fail;
    return r;
fail:
    describe(c, NULL, "creating the schema", why, why_len);
failed:
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        (void)exec_ok(c, "ROLLBACK");
    return PARTY_EIO;
}

/* ---- the node: registration, lock, heartbeat ---- */

static void lease_extend(pg_backend *be, uint64_t sent);

static int node_register(pg_backend *be, char *why, size_t why_len) {
    PGconn *c = be->control;
    const char *p[2];
    char lease[32], node_no[16];
    uint64_t sent;
    PGresult *res;

    p[0] = be->node_name;
    res = PQexecParams(c,
                       "WITH i AS (INSERT INTO party_nodes (name) VALUES ($1)"
                       " ON CONFLICT (name) DO NOTHING RETURNING node_no)"
                       " SELECT node_no FROM i UNION ALL"
                       " SELECT node_no FROM party_nodes WHERE name = $1",
                       1, NULL, p, NULL, NULL, 0);
    if (!ok_status(res) || PQntuples(res) < 1) {
        describe(c, res, "registering the node", why, why_len);
        PQclear(res);
        return PARTY_EIO;
    }
    be->node_no = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    /* The lock of a crashed incarnation of this node is released as soon
     * as the server sees its connection close: wait for that, a while. */
    snprintf(node_no, sizeof(node_no), "%d", be->node_no);
    p[0] = node_no;
    (void)exec_ok(c, "SET lock_timeout = '10s'");
    res =
        PQexecParams(c, "SELECT pg_advisory_lock(1885434484, $1::int)", 1, NULL, p, NULL, NULL, 0);
    (void)exec_ok(c, "SET lock_timeout = 0");
    if (!ok_status(res)) {
        if (res != NULL && PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL &&
            strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "55P03") == 0)
            snprintf(why, why_len,
                     "postgres: node %s is in use by another running partyd (its lock was held"
                     " for 10 s); give this one another --node name",
                     be->node_name);
        else
            describe(c, res, "locking the node", why, why_len);
        PQclear(res);
        return PARTY_EBUSY;
    }
    PQclear(res);
    snprintf(lease, sizeof(lease), "%d", LEASE_SECONDS);
    sent = uv_hrtime();
    {
        const char *q[4] = {be->node_name, be->node_id, lease,
                            be->addr[0] != '\0' ? be->addr : NULL};
        res = PQexecParams(c,
                           "UPDATE party_nodes SET node_id = $2, addr = $4,"
                           " lease_until = now() + make_interval(secs => $3::int) WHERE name = $1",
                           4, NULL, q, NULL, NULL, 0);
    }
    if (!ok_status(res)) {
        describe(c, res, "registering the node", why, why_len);
        PQclear(res);
        return PARTY_EIO;
    }
    PQclear(res);
    lease_extend(be, sent);
    return 0;
}

/* Renews the lease: 0, or -1 when it could not be (the node must stop
 * writing: commits are refused from then on). */
/* A renewal sent at sent (uv_hrtime) succeeded: the lease runs until at
 * least sent + LEASE_SECONDS by the server's clock; this node stops
 * trusting it a second earlier. */
static void lease_extend(pg_backend *be, uint64_t sent) {
    uv_mutex_lock(&be->beat_mutex);
    be->lease_deadline = sent + (uint64_t)(LEASE_SECONDS - 1) * 1000000000u;
    uv_mutex_unlock(&be->beat_mutex);
}

static void pg_set_addr(party__backend *be_, const char *addr) {
    pg_backend *be = (pg_backend *)be_;
    char why[256], me[300];
    const char *p[2] = {me, addr};
    PGconn *c;
    uv_mutex_lock(&be->beat_mutex);
    snprintf(be->addr, sizeof(be->addr), "%s", addr);
    snprintf(me, sizeof(me), "%s", be->node_id);
    uv_mutex_unlock(&be->beat_mutex);
    /* Recorded now, before the node serves (a failure here is mended by
     * the next heartbeat, which records it too). */
    c = pool_get(be, why, sizeof(why));
    if (c != NULL)
        PQclear(run(c, "UPDATE party_nodes SET addr = $2 WHERE node_id = $1", 2, p, NULL, NULL));
    pool_put(be, c);
}

static int lease_renew(pg_backend *be) {
    uint64_t sent = uv_hrtime();
    const char *p[3] = {be->node_id, NULL, NULL};
    char lease[16], addr[128];
    PGresult *res;
    int ok;
    snprintf(lease, sizeof(lease), "%d", LEASE_SECONDS);
    uv_mutex_lock(&be->beat_mutex);
    snprintf(addr, sizeof(addr), "%s", be->addr);
    uv_mutex_unlock(&be->beat_mutex);
    p[1] = lease;
    p[2] = addr[0] != '\0' ? addr : NULL;
    /* The address too: it is known only once the node listens. */
    res = PQexecParams(be->control,
                       "UPDATE party_nodes SET lease_until = now() + make_interval(secs =>"
                       " $2::int), addr = coalesce($3, addr) WHERE node_id = $1"
                       " AND lease_until >= now()",
                       3, NULL, p, NULL, NULL, 0);
    ok = ok_status(res) && atoi(PQcmdTuples(res)) == 1;
    PQclear(res);
    if (ok)
        lease_extend(be, sent);
    return ok ? 0 : -1;
}

static owned_room *owned_find(pg_backend *be, const char *id, int create);

/* A node asked for a room this node holds (NOTIFY party_handoff, payload
 * "<owner node_id>\n<room id>"): given up when this incarnation holds it
 * and has held it long enough. The heartbeat thread. */
static void handoff_asked(pg_backend *be, const char *payload) {
    const char *nl = strchr(payload, '\n');
    char id[PARTY_ID_MAX];
    owned_room *o;
    int give = 0;

    if (nl == NULL || (size_t)(nl - payload) != strlen(be->node_id) ||
        memcmp(payload, be->node_id, (size_t)(nl - payload)) != 0 || strlen(nl + 1) >= sizeof(id))
        return;
    snprintf(id, sizeof(id), "%s", nl + 1);
    uv_mutex_lock(&be->owned_mutex);
    o = owned_find(be, id, 0);
    give = o != NULL && o->count > 0 && o->since != 0 && uv_hrtime() - o->since >= be->hold_ns;
    uv_mutex_unlock(&be->owned_mutex);
    if (give)
        be->give_up(be->give_up_arg, id);
}

/* Reads the hand-off requests that arrived on the control connection
 * (never waits). */
static void handoffs_read(pg_backend *be) {
    PGnotify *n;
    if (be->give_up == NULL || PQconsumeInput(be->control) == 0)
        return; /* a broken connection: the next renewal finds out */
    while ((n = PQnotifies(be->control)) != NULL) {
        handoff_asked(be, n->extra);
        PQfreemem(n);
    }
}

/* Every room this node holds is given up (its lease is lost). 1 if it
 * holds none. */
static int give_up_all(pg_backend *be) {
    char(*ids)[PARTY_ID_MAX] = NULL;
    size_t n = 0, cap = 0, i;
    owned_room *o;

    uv_mutex_lock(&be->owned_mutex);
    for (i = 0; i < OWNED_BUCKETS; i++)
        for (o = be->owned[i]; o != NULL; o = o->next)
            cap++;
    if (cap > 0 && (ids = party__malloc(cap * sizeof(*ids))) != NULL)
        for (i = 0; i < OWNED_BUCKETS; i++)
            for (o = be->owned[i]; o != NULL; o = o->next)
                memcpy(ids[n++], o->id, PARTY_ID_MAX);
    uv_mutex_unlock(&be->owned_mutex);
    for (i = 0; i < n && be->give_up != NULL; i++)
        be->give_up(be->give_up_arg, ids[i]);
    party__free(ids);
    return cap == 0;
}

static void incarnation(char *out, size_t cap);

/* After a lost lease, once this node holds no room: registers again as
 * a new incarnation (the old one's rooms are anybody's), so the node
 * serves again. 0, or -1 (tried again at the next beat). The heartbeat
 * thread. */
/* Why registering again failed, for health answers. */
static void rereg_failed(pg_backend *be, const char *why) {
    uv_mutex_lock(&be->beat_mutex);
    snprintf(be->rereg_why, sizeof(be->rereg_why), "%s", why);
    uv_mutex_unlock(&be->beat_mutex);
}

static int node_reregister(pg_backend *be) {
    char inc[16], id[300], lease[16], node_no[16], addr[128];
    const char *p[4];
    PGresult *res;
    uint64_t sent;
    int ok;

    if (!give_up_all(be)) {
        rereg_failed(be, "rooms still held");
        return -1;
    }
    if (PQstatus(be->control) != CONNECTION_OK) {
        PQreset(be->control);
        if (PQstatus(be->control) != CONNECTION_OK ||
            exec_ok(be->control, "LISTEN party_handoff")) {
            rereg_failed(be, "the database cannot be reached");
            return -1;
        }
    }
    /* Still this session's after a lost lease (it stacks), or taken
     * again after a reconnect; another process of this name holds it
     * otherwise. */
    snprintf(node_no, sizeof(node_no), "%d", be->node_no);
    p[0] = node_no;
    res = PQexecParams(be->control, "SELECT pg_try_advisory_lock(1885434484, $1::int)", 1, NULL, p,
                       NULL, NULL, 0);
    ok = ok_status(res) && PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!ok) {
        rereg_failed(be, "its node lock is held by another process");
        return -1;
    }
    incarnation(inc, sizeof(inc));
    snprintf(id, sizeof(id), "%s:%s", be->node_name, inc);
    snprintf(lease, sizeof(lease), "%d", LEASE_SECONDS);
    p[0] = be->node_name;
    p[1] = id;
    p[2] = lease;
    uv_mutex_lock(&be->beat_mutex);
    snprintf(addr, sizeof(addr), "%s", be->addr);
    uv_mutex_unlock(&be->beat_mutex);
    p[3] = addr[0] != '\0' ? addr : NULL;
    sent = uv_hrtime();
    res = PQexecParams(be->control,
                       "UPDATE party_nodes SET node_id = $2, addr = $4,"
                       " lease_until = now() + make_interval(secs => $3::int) WHERE name = $1",
                       4, NULL, p, NULL, NULL, 0);
    ok = ok_status(res) && atoi(PQcmdTuples(res)) == 1;
    PQclear(res);
    if (!ok) {
        rereg_failed(be, "its row could not be updated");
        return -1;
    }
    uv_mutex_lock(&be->beat_mutex);
    be->rereg_why[0] = '\0';
    snprintf(be->node_id, sizeof(be->node_id), "%s", id);
    be->lease_deadline = sent + (uint64_t)(LEASE_SECONDS - 1) * 1000000000u;
    be->lease_lost = 0;
    uv_mutex_unlock(&be->beat_mutex);
    return 0;
}

/* The heartbeat thread: renews the lease every HEARTBEAT_MS and reads
 * hand-off requests every LISTEN_TICK_MS; once the lease is lost, gives
 * every room up and registers again (unless self-fencing is off: a test
 * hook for a node that does not notice). */
static void heartbeat_main(void *arg) {
    pg_backend *be = arg;
    uint64_t last_beat = uv_hrtime();
    uv_mutex_lock(&be->beat_mutex);
    while (!be->beat_stop) {
        int lost;
        /* A timed wait: close wakes it at once. */
        (void)uv_cond_timedwait(&be->beat_cond, &be->beat_mutex,
                                (uint64_t)LISTEN_TICK_MS * 1000000u);
        if (be->beat_stop)
            break;
        if (!be->lease_lost && uv_hrtime() > be->lease_deadline)
            be->lease_lost = 1;
        lost = be->lease_lost;
        uv_mutex_unlock(&be->beat_mutex);
        if (!lost)
            handoffs_read(be);
        if (uv_hrtime() - last_beat >= (uint64_t)HEARTBEAT_MS * 1000000u) {
            last_beat = uv_hrtime();
            if (!lost && lease_renew(be) != 0) {
                uv_mutex_lock(&be->beat_mutex);
                be->lease_lost = 1;
                uv_mutex_unlock(&be->beat_mutex);
                lost = 1;
            }
            if (lost && !be->no_self_fence)
                (void)node_reregister(be);
        }
        uv_mutex_lock(&be->beat_mutex);
    }
    uv_mutex_unlock(&be->beat_mutex);
}

/* 1 once the lease could not be renewed in time: from then on this node
 * commits nothing and acquires no room (until it is restarted), even
 * before the database would refuse it. */
static int lease_lost(pg_backend *be) {
    int lost;
    uv_mutex_lock(&be->beat_mutex);
    if (!be->lease_lost && uv_hrtime() > be->lease_deadline)
        be->lease_lost = 1;
    lost = be->lease_lost;
    uv_mutex_unlock(&be->beat_mutex);
    return lost;
}

/* lease_lost, unless self-fencing is off (a test hook): what stops this
 * node's commits and acquires before the database would. Health still
 * says the truth. */
static int self_fenced(pg_backend *be) {
    return !be->no_self_fence && lease_lost(be);
}

static int pg_check(party__backend *be_, char *why, size_t why_len) {
    pg_backend *be = (pg_backend *)be_;
    if (!lease_lost(be))
        return 0;
    uv_mutex_lock(&be->beat_mutex);
    snprintf(why, why_len,
             "postgres: node %s lost its lease: it commits nothing until it has given its rooms"
             " up and registered again%s%s\n",
             be->node_name, be->rereg_why[0] != '\0' ? "; not yet: " : "", be->rereg_why);
    uv_mutex_unlock(&be->beat_mutex);
    return PARTY_EFENCED;
}

static void pg_close(party__backend *be_) {
    pg_backend *be = (pg_backend *)be_;
    size_t i;
    if (be == NULL)
        return;
    if (be->beat_started) {
        uv_mutex_lock(&be->beat_mutex);
        be->beat_stop = 1;
        uv_cond_signal(&be->beat_cond);
        uv_mutex_unlock(&be->beat_mutex);
        uv_thread_join(&be->heartbeat);
    }
    if (be->control != NULL && PQstatus(be->control) == CONNECTION_OK && be->node_id[0] != '\0') {
        /* Every room still held is given up, and the node leaves: others
         * may take its rooms at once. */
        const char *p[1] = {be->node_id};
        PQclear(PQexecParams(be->control, "UPDATE party_rooms SET owner = NULL WHERE owner = $1", 1,
                             NULL, p, NULL, NULL, 0));
        PQclear(PQexecParams(be->control,
                             "UPDATE party_nodes SET lease_until = '-infinity', node_id = NULL"
                             " WHERE node_id = $1",
                             1, NULL, p, NULL, NULL, 0));
    }
    PQfinish(be->control);
    for (i = 0; i < be->n_pool; i++)
        PQfinish(be->pool[i]);
    for (i = 0; i < OWNED_BUCKETS; i++) {
        owned_room *o = be->owned[i], *next;
        for (; o != NULL; o = next) {
            next = o->next;
            party__free(o);
        }
    }
    uv_mutex_destroy(&be->pool_mutex);
    uv_cond_destroy(&be->pool_cond);
    uv_mutex_destroy(&be->beat_mutex);
    uv_cond_destroy(&be->beat_cond);
    uv_mutex_destroy(&be->owned_mutex);
    party__free(be->conninfo);
    party__free(be);
}

static void incarnation(char *out, size_t cap) {
    unsigned char b[6];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t n = f != NULL ? fread(b, 1, sizeof(b), f) : 0;
    if (f != NULL)
        fclose(f);
    if (n != sizeof(b)) {
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        memcpy(b, &t, sizeof(b));
    }
    snprintf(out, cap, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

static int pg_open(const party__backend_config *cfg, party__backend **out, char *why,
                   size_t why_len) {
    pg_backend *be = party__calloc(1, sizeof(*be));
    char inc[16];
    int r;

    *out = NULL;
    if (be == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (uv_mutex_init(&be->pool_mutex) != 0) {
        party__free(be);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    if (uv_mutex_init(&be->beat_mutex) != 0 || uv_cond_init(&be->beat_cond) != 0 ||
        uv_mutex_init(&be->owned_mutex) != 0 || uv_cond_init(&be->pool_cond) != 0) {
        /* Not worth unwinding one by one: these do not fail on Linux. */
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    be->base.ops = &pg_ops;
    be->base.commit_on_loop = 0;
    be->base.node = be->node_name;
    be->no_self_fence = cfg->no_self_fence;
    if (cfg->addr != NULL)
        snprintf(be->addr, sizeof(be->addr), "%s", cfg->addr);
    be->max_conns = cfg->max_connections > 0 ? cfg->max_connections : CONNECTIONS_DEFAULT;
    be->give_up = cfg->give_up;
    be->give_up_arg = cfg->give_up_arg;
    be->hold_ns =
        (uint64_t)(cfg->handoff_hold_ms > 0 ? cfg->handoff_hold_ms : HANDOFF_HOLD_MS) * 1000000u;
    if (cfg->node != NULL && cfg->node[0] != '\0') {
        snprintf(be->node_name, sizeof(be->node_name), "%s", cfg->node);
    } else {
        char host[200] = "localhost";
        (void)gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(be->node_name, sizeof(be->node_name), "%s:%ld", host, (long)getpid());
    }
    incarnation(inc, sizeof(inc));
    snprintf(be->node_id, sizeof(be->node_id), "%s:%s", be->node_name, inc);
    be->conninfo = party__strdup(cfg->store);
    if (be->conninfo == NULL) {
        be->node_id[0] = '\0';
        pg_close(&be->base);
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    be->control = connect_db(be->conninfo, 1, why, why_len);
    if (be->control == NULL) {
        be->node_id[0] = '\0';
        pg_close(&be->base);
        return PARTY_EIO;
    }
    r = schema_check(be->control, why, why_len);
    if (r == 0)
        r = node_register(be, why, why_len);
    if (r == 0 && be->give_up != NULL && exec_ok(be->control, "LISTEN party_handoff") != 0) {
        describe(be->control, NULL, "listening for hand-offs", why, why_len);
        r = PARTY_EIO;
    }
    if (r == 0 && uv_thread_create(&be->heartbeat, heartbeat_main, be) != 0) {
        snprintf(why, why_len, "postgres: cannot start the heartbeat thread");
        r = PARTY_EIO;
    }
    if (r != 0) {
        be->node_id[0] = '\0';
        pg_close(&be->base);
        return r;
    }
    be->beat_started = 1;
    *out = &be->base;
    return 0;
}

/* ---- ownership ---- */

static unsigned owned_bucket(const char *id) {
    return party__id_hash(id, strlen(id)) % OWNED_BUCKETS;
}

/* The entry of room id; created (count 0) when create. Under owned_mutex. */
static owned_room *owned_find(pg_backend *be, const char *id, int create) {
    owned_room **slot = &be->owned[owned_bucket(id)], *o;
    for (o = *slot; o != NULL; o = o->next)
        if (strcmp(o->id, id) == 0)
            return o;
    if (!create || (o = party__calloc(1, sizeof(*o))) == NULL)
        return NULL;
    snprintf(o->id, sizeof(o->id), "%s", id);
    o->next = *slot;
    *slot = o;
    return o;
}

static void owned_drop(pg_backend *be, const char *id) {
    owned_room **slot = &be->owned[owned_bucket(id)], *o;
    for (; (o = *slot) != NULL; slot = &o->next)
        if (strcmp(o->id, id) == 0) {
            *slot = o->next;
            party__free(o);
            return;
        }
}

typedef struct own_work {
    uv_work_t work;
    uv_timer_t retry; /* an acquire waiting for a hand-off tries again */
    pg_backend *be;
    party__store_req *req;
    int release;
    int64_t epoch; /* release: the epoch given up; acquire: the one taken */
    int result;
    int asked;              /* an acquire asked the room's owner to hand it over */
    uint64_t handoff_until; /* uv_hrtime() until which it tries again */
    char node_id[300];      /* this node's incarnation when the work began */
} own_work;

static void own_run(uv_work_t *work) {
    own_work *w = work->data;
    pg_backend *be = w->be;
    char why[256], epoch[24];
    PGresult *res;
    PGconn *c;

    if (!w->release && self_fenced(be)) {
        w->result = PARTY_EBUSY;
        return;
    }
    c = pool_get(be, why, sizeof(why));
    if (c == NULL) {
        w->result = PARTY_EIO;
        return;
    }
    if (w->release) {
        const char *p[3] = {w->req->room_id, w->node_id, epoch};
        snprintf(epoch, sizeof(epoch), "%lld", (long long)w->epoch);
        /* Only the epoch this process took: a later acquire's is kept. */
        res = run(c,
                  "UPDATE party_rooms SET owner = NULL WHERE room_id = $1 AND owner = $2"
                  " AND epoch = $3::bigint",
                  3, p, NULL, NULL);
        w->result = ok_status(res) ? 0 : PARTY_EIO;
    } else {
        const char *p[3] = {w->req->room_id, w->req->party, w->node_id};
        res = run(c,
                  "INSERT INTO party_rooms AS r (room_id, party, owner, epoch)"
                  " VALUES ($1, $2, $3, 1) ON CONFLICT (room_id) DO UPDATE"
                  " SET owner = EXCLUDED.owner, epoch = r.epoch + 1, party = EXCLUDED.party"
                  " WHERE r.owner IS NULL OR r.owner = EXCLUDED.owner"
                  " OR NOT party_node_alive(r.owner) RETURNING epoch",
                  3, p, NULL, NULL);
        if (!ok_status(res))
            w->result = PARTY_EIO;
        else if (PQntuples(res) == 0)
            w->result = PARTY_EBUSY; /* a live node holds it */
        else
            w->epoch = col_i64(res, 0, 0);
        if (w->result == PARTY_EBUSY && be->give_up != NULL && !lease_lost(be)) {
            /* Ask its owner to hand it over (failback, a moved ring): it
             * does once it has held the room long enough. */
            const char *q[2] = {w->req->room_id, w->node_id};
            PQclear(res);
            res = run(c,
                      "SELECT pg_notify('party_handoff', owner || chr(10) || room_id)"
                      " FROM party_rooms WHERE room_id = $1 AND owner IS NOT NULL AND owner <> $2",
                      2, q, NULL, NULL);
            w->asked = ok_status(res) && PQntuples(res) == 1;
        }
    }
    PQclear(res);
    pool_put(be, c);
}

static void own_retry_closed(uv_handle_t *handle);
static void own_retry_fire(uv_timer_t *timer);
static void own_finish(own_work *w, int result);

/* An acquire ended: the epoch it took is the one to give up later; one
 * that failed does not count. */
static void acquire_settle(pg_backend *be, const char *room_id, int result, int64_t epoch) {
    owned_room *o;
    uv_mutex_lock(&be->owned_mutex);
    o = owned_find(be, room_id, 0);
    if (o != NULL) {
        if (result == 0 && epoch > o->epoch) {
            o->epoch = epoch;
            o->since = uv_hrtime();
        }
        if (result != 0 && --o->count == 0)
            owned_drop(be, room_id);
    }
    uv_mutex_unlock(&be->owned_mutex);
}

static void own_done(uv_work_t *work, int status) {
    own_work *w = work->data;
    party__store_req *req = w->req;
    int result = status != 0 ? PARTY_EIO : w->result;

    if (result == PARTY_EBUSY && w->asked && uv_hrtime() < w->handoff_until &&
        uv_timer_init(req->loop, &w->retry) == 0) {
        /* The owner was asked: try again shortly, within a bounded wait. */
        w->retry.data = w;
        (void)uv_timer_start(&w->retry, own_retry_fire, HANDOFF_RETRY_MS, 0);
        return;
    }
    own_finish(w, result);
}

static void own_retry_fire(uv_timer_t *timer) {
    uv_close((uv_handle_t *)timer, own_retry_closed);
}

static void own_retry_closed(uv_handle_t *handle) {
    own_work *w = handle->data;
    w->result = 0;
    w->asked = 0;
    if (uv_queue_work(w->req->loop, &w->work, own_run, own_done) != 0)
        own_finish(w, PARTY_EBUSY);
}

static void own_finish(own_work *w, int result) {
    pg_backend *be = w->be;
    party__store_req *req = w->req;

    if (!w->release)
        acquire_settle(be, req->room_id, result, w->epoch);
    if (!w->release && result == 0)
        req->epoch = w->epoch;
    party__free(w);
    req->backend_data = NULL;
    req->done(req, result);
}

static void own_start(pg_backend *be, party__store_req *req, int release, int64_t epoch) {
    own_work *w = party__calloc(1, sizeof(*w));
    if (w == NULL) {
        if (!release)
            acquire_settle(be, req->room_id, PARTY_ENOMEM, 0);
        req->done(req, PARTY_ENOMEM);
        return;
    }
    w->be = be;
    w->req = req;
    w->release = release;
    w->epoch = epoch;
    w->handoff_until = uv_hrtime() + (uint64_t)HANDOFF_WAIT_MS * 1000000u;
    uv_mutex_lock(&be->beat_mutex);
    snprintf(w->node_id, sizeof(w->node_id), "%s", be->node_id);
    uv_mutex_unlock(&be->beat_mutex);
    w->work.data = w;
    req->backend_data = w;
    if (uv_queue_work(req->loop, &w->work, own_run, own_done) != 0) {
        party__free(w);
        req->backend_data = NULL;
        if (!release)
            acquire_settle(be, req->room_id, PARTY_ENOMEM, 0);
        req->done(req, PARTY_ENOMEM);
    }
}

static void pg_acquire(party__backend *be_, party__store_req *req) {
    pg_backend *be = (pg_backend *)be_;
    owned_room *o;
    uv_mutex_lock(&be->owned_mutex);
    o = owned_find(be, req->room_id, 1);
    if (o != NULL)
        o->count++;
    uv_mutex_unlock(&be->owned_mutex);
    if (o == NULL) {
        req->done(req, PARTY_ENOMEM);
        return;
    }
    /* A failed acquire takes its count back (acquire_settle). */
    own_start(be, req, 0, 0);
}

static void pg_release(party__backend *be_, party__store_req *req) {
    pg_backend *be = (pg_backend *)be_;
    owned_room *o;
    int64_t epoch = 0;
    int last = 0;
    /* An acquire of the same room may have been asked for meanwhile (a new
     * event after eviction): then the room stays this process's. */
    uv_mutex_lock(&be->owned_mutex);
    o = owned_find(be, req->room_id, 0);
    if (o != NULL && --o->count == 0) {
        last = 1;
        epoch = o->epoch;
        owned_drop(be, req->room_id);
    }
    uv_mutex_unlock(&be->owned_mutex);
    if (!last) {
        req->done(req, 0);
        return;
    }
    own_start(be, req, 1, epoch);
}

/* ---- a loaded room: its records in memory ---- */

typedef struct pair {
    char *key;
    char *val; /* NUL-terminated past len */
    size_t len;
} pair;

typedef struct pairs {
    pair *items;
    size_t n, cap;
} pairs;

typedef struct sched {
    char *id, *name, *cron;
    char *payload;
    size_t len;
    int kind;
    int64_t interval_ms, next_ms;
} sched;

enum { REC_KV, REC_META, REC_ALARM, REC_SCHED };

/* What a record was before the batch changed it: rollback puts it back,
 * commit writes the record as it is now. */
typedef struct undo {
    int what;
    char *key; /* KV, META: the key; SCHED: the id */
    int had;   /* the record existed */
    pair old;  /* KV, META (key unused) */
    sched olds;
    int64_t at_ms;
    int retries;
} undo;

typedef struct pg_room {
    party__room_store base;
    pg_backend *backend;
    const char *party;
    char id[PARTY_ID_MAX];
    int64_t epoch;
    pairs kv, meta;
    int64_t alarm_at;
    int alarm_retries;
    sched *scheds;
    size_t n_scheds, cap_scheds;
    undo *log;
    size_t n_log, cap_log;
    int fenced; /* a commit was refused: the room is another node's */
    /* The room's own database (party_room_db), in memory: NULL until the
     * room first asks for it or has one in the database. */
    sqlite3 *db;
    sqlite3_session *session; /* this batch's changes, since db_begun */
    int db_begun;             /* BEGIN ran on db for this batch */
    int db_lost;              /* ... and that transaction ended by itself */
    int db_broken;            /* db could not be rebuilt after a failed commit */
    int schema_at_begin;      /* PRAGMA schema_version when the batch began */
    int64_t file_seq;         /* the last change (or snapshot) committed */
    int changes_since_snapshot;
} pg_room;

static int key_ok(const char *key) {
    return key != NULL && party__utf8_valid(key, strlen(key));
}

/* The index where key is or would go; *found says which. */
static size_t pairs_find(const pairs *t, const char *key, int *found) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->items[mid].key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static int pairs_reserve(pairs *t) {
    pair *grown;
    size_t cap;
    if (t->n < t->cap)
        return 0;
    cap = t->cap > 0 ? t->cap * 2 : 8;
    grown = party__realloc(t->items, cap * sizeof(*grown));
    if (grown == NULL)
        return PARTY_ENOMEM;
    t->items = grown;
    t->cap = cap;
    return 0;
}

/* Inserts at i, taking key and val; capacity must be there. */
static void pairs_insert_at(pairs *t, size_t i, char *key, char *val, size_t len) {
    memmove(&t->items[i + 1], &t->items[i], (t->n - i) * sizeof(pair));
    t->items[i].key = key;
    t->items[i].val = val;
    t->items[i].len = len;
    t->n++;
}

static void pairs_remove_at(pairs *t, size_t i, int free_key) {
    if (free_key)
        party__free(t->items[i].key);
    party__free(t->items[i].val);
    memmove(&t->items[i], &t->items[i + 1], (t->n - i - 1) * sizeof(pair));
    t->n--;
}

static void pairs_free(pairs *t) {
    size_t i;
    for (i = 0; i < t->n; i++) {
        party__free(t->items[i].key);
        party__free(t->items[i].val);
    }
    party__free(t->items);
    t->items = NULL;
    t->n = t->cap = 0;
}

static char *copy_bytes(const void *data, size_t len) {
    char *p = party__malloc(len + 1);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, data, len);
    p[len] = '\0';
    return p;
}

static void sched_free(sched *s) {
    party__free(s->id);
    party__free(s->name);
    party__free(s->cron);
    party__free(s->payload);
    memset(s, 0, sizeof(*s));
}

static int sched_copy(sched *out, const party__schedule *s) {
    memset(out, 0, sizeof(*out));
    out->id = party__strdup(s->id);
    out->name = party__strdup(s->name);
    out->cron = s->cron != NULL ? party__strdup(s->cron) : NULL;
    out->payload = copy_bytes(s->payload, s->len);
    out->len = s->len;
    out->kind = s->kind;
    out->interval_ms = s->interval_ms;
    out->next_ms = s->next_ms;
    if (out->id == NULL || out->name == NULL || (s->cron != NULL && out->cron == NULL) ||
        out->payload == NULL) {
        sched_free(out);
        return PARTY_ENOMEM;
    }
    return 0;
}

static int sched_index(const pg_room *s, const char *id) {
    size_t i;
    for (i = 0; i < s->n_scheds; i++)
        if (strcmp(s->scheds[i].id, id) == 0)
            return (int)i;
    return -1;
}

static int scheds_reserve(pg_room *s) {
    sched *grown;
    size_t cap;
    if (s->n_scheds < s->cap_scheds)
        return 0;
    cap = s->cap_scheds > 0 ? s->cap_scheds * 2 : 4;
    grown = party__realloc(s->scheds, cap * sizeof(*grown));
    if (grown == NULL)
        return PARTY_ENOMEM;
    s->scheds = grown;
    s->cap_scheds = cap;
    return 0;
}

/* A new undo entry (zeroed), or NULL for want of memory. */
static undo *log_add(pg_room *s, int what, const char *key) {
    undo *u;
    if (s->n_log == s->cap_log) {
        size_t cap = s->cap_log > 0 ? s->cap_log * 2 : 8;
        undo *grown = party__realloc(s->log, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        s->log = grown;
        s->cap_log = cap;
    }
    u = &s->log[s->n_log];
    memset(u, 0, sizeof(*u));
    u->what = what;
    if (key != NULL && (u->key = party__strdup(key)) == NULL)
        return NULL;
    s->n_log++;
    return u;
}

/* Puts the records back as they were before the batch, newest change first.
 * Never allocates: restored records fit the room the tables had. */
static void log_undo(pg_room *s) {
    while (s->n_log > 0) {
        undo *u = &s->log[--s->n_log];
        if (u->what == REC_KV || u->what == REC_META) {
            pairs *t = u->what == REC_KV ? &s->kv : &s->meta;
            int found;
            size_t i = pairs_find(t, u->key, &found);
            if (found)
                pairs_remove_at(t, i, 1);
            if (u->had) {
                pairs_insert_at(t, i, u->key, u->old.val, u->old.len);
                u->key = NULL;
            }
        } else if (u->what == REC_SCHED) {
            int i = sched_index(s, u->key);
            if (i >= 0) {
                sched_free(&s->scheds[i]);
                s->scheds[i] = s->scheds[--s->n_scheds];
            }
            if (u->had)
                s->scheds[s->n_scheds++] = u->olds;
        } else {
            s->alarm_at = u->at_ms;
            s->alarm_retries = u->retries;
        }
        party__free(u->key);
    }
}

/* The batch is kept: the undo entries go. */
static void log_clear(pg_room *s) {
    size_t i;
    for (i = 0; i < s->n_log; i++) {
        undo *u = &s->log[i];
        party__free(u->key);
        if (u->had) {
            party__free(u->old.val);
            sched_free(&u->olds);
        }
    }
    s->n_log = 0;
}

/* ---- the room's own database ---- */

static void file_close(pg_room *s) {
    if (s->session != NULL)
        sqlite3session_delete(s->session); /* unlike most of SQLite, NULL is not a no-op */
    s->session = NULL;
    if (s->db != NULL && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(s->db);
    s->db = NULL;
    s->db_begun = s->db_lost = 0;
}

static int file_new(pg_room *s) {
    if (sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(s->db);
        s->db = NULL;
        return PARTY_ENOMEM;
    }
    return 0;
}

static int schema_version(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA schema_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* 1 if a table of db has no declared primary key: the session extension
 * does not record its rows, so only a snapshot carries them. */
static int has_pkless_table(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    int n = 1;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_schema s WHERE s.type = 'table'"
                           " AND s.name NOT LIKE 'sqlite_%' AND NOT EXISTS"
                           " (SELECT 1 FROM pragma_table_info(s.name) WHERE pk > 0)",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n > 0;
}

static int replay_conflict(void *arg, int kind, sqlite3_changeset_iter *it) {
    (void)arg;
    (void)kind;
    (void)it;
    return SQLITE_CHANGESET_ABORT; /* a replay never conflicts unless corrupt */
}

/* Builds the room's own database from its snapshot and later changesets
 * (none: no database). On a worker thread. 0, PARTY_EIO or PARTY_ENOMEM. */
static int file_load(pg_room *s, PGconn *c) {
    const char *p[2] = {s->id, NULL};
    char since[24];
    PGresult *res;
    int i, n, r = 0;

    file_close(s);
    s->file_seq = 0;
    s->changes_since_snapshot = 0;
    res = run(c, "SELECT snapshot, seq FROM party_room_files WHERE room_id = $1", 1, p, NULL, NULL);
    if (!ok_status(res)) {
        PQclear(res);
        return PARTY_EIO;
    }
    if (PQntuples(res) == 1) {
        sqlite3_int64 len = PQgetlength(res, 0, 0);
        unsigned char *copy = sqlite3_malloc64(len > 0 ? (sqlite3_uint64)len : 1);
        if (copy == NULL || file_new(s) != 0) {
            sqlite3_free(copy);
            PQclear(res);
            return PARTY_ENOMEM;
        }
        memcpy(copy, PQgetvalue(res, 0, 0), (size_t)len);
        if (sqlite3_deserialize(s->db, "main", copy, len, len,
                                SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
            SQLITE_OK)
            r = PARTY_EIO;
        s->file_seq = col_i64(res, 0, 1);
    }
    PQclear(res);
    if (r != 0)
        return r;
    snprintf(since, sizeof(since), "%lld", (long long)s->file_seq);
    p[1] = since;
    res = run(c,
              "SELECT seq, changeset FROM party_room_changes WHERE room_id = $1"
              " AND seq > $2::bigint ORDER BY seq",
              2, p, NULL, NULL);
    if (!ok_status(res)) {
        PQclear(res);
        return PARTY_EIO;
    }
    n = PQntuples(res);
    if (n > 0 && s->db == NULL && file_new(s) != 0)
        r = PARTY_ENOMEM;
    for (i = 0; i < n && r == 0; i++) {
        if (sqlite3changeset_apply(s->db, PQgetlength(res, i, 1), PQgetvalue(res, i, 1), NULL,
                                   replay_conflict, NULL) != SQLITE_OK)
            r = PARTY_EIO;
        s->file_seq = col_i64(res, i, 0);
        s->changes_since_snapshot++;
    }
    PQclear(res);
    return r;
}

static struct sqlite3 *room_file_open(party__room_store *rs) {
    pg_room *s = (pg_room *)rs;
    if (s->db_broken || (s->db == NULL && file_new(s) != 0))
        return NULL;
    if (s->db_begun && sqlite3_get_autocommit(s->db))
        s->db_lost = 1; /* the room's SQL ended the batch's transaction */
    if (sqlite3_get_autocommit(s->db)) {
        if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
            return NULL;
        if (!s->db_begun)
            s->schema_at_begin = schema_version(s->db);
        s->db_begun = 1;
    }
    if (s->session == NULL) {
        if (sqlite3session_create(s->db, "main", &s->session) != SQLITE_OK ||
            sqlite3session_attach(s->session, NULL) != SQLITE_OK) {
            if (s->session != NULL)
                sqlite3session_delete(s->session);
            s->session = NULL;
            return NULL;
        }
    }
    return s->db;
}

/* 1 if the batch wrote to the room's own database (or lost what it did). */
static int file_wrote(const pg_room *s) {
    return s->db_begun && (s->db_lost || sqlite3_get_autocommit(s->db) ||
                           sqlite3_txn_state(s->db, NULL) == SQLITE_TXN_WRITE);
}

/* The batch's own-database transaction ends keeping nothing. */
static void file_rollback(pg_room *s) {
    if (!s->db_begun)
        return;
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (s->session != NULL)
        sqlite3session_delete(s->session);
    s->session = NULL;
    s->db_begun = s->db_lost = 0;
}

static void pg_unload(party__room_store *rs) {
    pg_room *s = (pg_room *)rs;
    size_t i;
    if (s == NULL)
        return;
    log_undo(s);
    file_close(s);
    party__free(s->log);
    pairs_free(&s->kv);
    pairs_free(&s->meta);
    for (i = 0; i < s->n_scheds; i++)
        sched_free(&s->scheds[i]);
    party__free(s->scheds);
    party__free(s);
}

/* Reads key/value rows (binary) into t, in key order. */
static int pairs_load(pairs *t, const PGresult *res) {
    int i, n = PQntuples(res);
    for (i = 0; i < n; i++) {
        char *key = copy_bytes(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
        char *val = copy_bytes(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
        int found;
        size_t at;
        if (key == NULL || val == NULL || pairs_reserve(t) != 0) {
            party__free(key);
            party__free(val);
            return PARTY_ENOMEM;
        }
        at = pairs_find(t, key, &found);
        pairs_insert_at(t, at, key, val, (size_t)PQgetlength(res, i, 1));
    }
    return 0;
}

static int load_rows(pg_room *s, PGconn *c, char *why, size_t why_len) {
    const char *p[2] = {s->id, s->backend->node_id};
    PGresult *res;
    int i, n, r = 0;

    res =
        run(c, "SELECT epoch FROM party_rooms WHERE room_id = $1 AND owner = $2", 2, p, NULL, NULL);
    if (!ok_status(res)) {
        describe(c, res, "loading a room", why, why_len);
        PQclear(res);
        return PARTY_EIO;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        snprintf(why, why_len, "postgres: the room is owned by another node now");
        return PARTY_EFENCED;
    }
    s->epoch = col_i64(res, 0, 0);
    PQclear(res);
    res = run(c, "SELECT key, value FROM party_kv WHERE room_id = $1", 1, p, NULL, NULL);
    r = ok_status(res) ? pairs_load(&s->kv, res) : PARTY_EIO;
    PQclear(res);
    if (r == 0) {
        res = run(c, "SELECT key, value FROM party_meta WHERE room_id = $1", 1, p, NULL, NULL);
        r = ok_status(res) ? pairs_load(&s->meta, res) : PARTY_EIO;
        PQclear(res);
    }
    if (r == 0) {
        res = run(c, "SELECT at_ms, retries FROM party_alarm WHERE room_id = $1", 1, p, NULL, NULL);
        if (!ok_status(res))
            r = PARTY_EIO;
        else if (PQntuples(res) == 1) {
            s->alarm_at = col_i64(res, 0, 0);
            s->alarm_retries = (int)col_i64(res, 0, 1);
        }
        PQclear(res);
    }
    if (r == 0) {
        res = run(c,
                  "SELECT id, name, payload, kind, interval_ms, cron, next_ms FROM party_schedules"
                  " WHERE room_id = $1",
                  1, p, NULL, NULL);
        if (!ok_status(res))
            r = PARTY_EIO;
        n = r == 0 ? PQntuples(res) : 0;
        for (i = 0; i < n && r == 0; i++) {
            party__schedule sc;
            char *id = copy_bytes(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
            char *name = copy_bytes(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
            char *cron = PQgetisnull(res, i, 5)
                             ? NULL
                             : copy_bytes(PQgetvalue(res, i, 5), (size_t)PQgetlength(res, i, 5));
            sc.id = id;
            sc.name = name;
            sc.cron = cron;
            sc.payload = PQgetvalue(res, i, 2);
            sc.len = (size_t)PQgetlength(res, i, 2);
            sc.kind = (int)col_i64(res, i, 3);
            sc.interval_ms = col_i64(res, i, 4);
            sc.next_ms = col_i64(res, i, 6);
            if (id == NULL || name == NULL || (!PQgetisnull(res, i, 5) && cron == NULL) ||
                scheds_reserve(s) != 0 || sched_copy(&s->scheds[s->n_scheds], &sc) != 0)
                r = PARTY_ENOMEM;
            else
                s->n_scheds++;
            party__free(id);
            party__free(name);
            party__free(cron);
        }
        PQclear(res);
    }
    if (r == PARTY_EIO)
        describe(c, NULL, "loading a room's records", why, why_len);
    else if (r == PARTY_ENOMEM)
        snprintf(why, why_len, "out of memory");
    return r;
}

static int room_sched_earliest(party__room_store *rs, int64_t *next_ms);

/* One read of the room's rows into a new room store (*out), on c. */
static int load_on(pg_backend *be, PGconn *c, const char *room_id, const char *party, pg_room **out,
                   char *why, size_t why_len) {
    pg_room *s = party__calloc(1, sizeof(*s));
    int r;

    *out = NULL;
    if (s == NULL) {
        snprintf(why, why_len, "out of memory");
        return PARTY_ENOMEM;
    }
    s->base.ops = &pg_ops;
    s->backend = be;
    s->party = party;
    snprintf(s->id, sizeof(s->id), "%s", room_id);
    /* One snapshot: records written by one commit are read together. */
    r = exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (r != 0)
        describe(c, NULL, "loading a room", why, why_len);
    else
        r = load_rows(s, c, why, why_len);
    if (r == 0 && (r = file_load(s, c)) != 0)
        snprintf(why, why_len, "postgres: cannot rebuild the room's own database");
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        (void)exec_ok(c, r == 0 ? "COMMIT" : "ROLLBACK");
    if (r != 0) {
        pg_unload(&s->base);
        return r;
    }
    *out = s;
    return 0;
}

static int pg_load(party__backend *be_, const char *room_id, const char *party,
                   party__room_store **out, party__room_loaded *loaded, char *why, size_t why_len) {
    pg_backend *be = (pg_backend *)be_;
    pg_room *s = NULL;
    PGconn *c;
    int r, lost, tries;

    *out = NULL;
    memset(loaded, 0, sizeof(*loaded));
    for (tries = 0;; tries++) {
        c = pool_get(be, why, why_len);
        if (c == NULL)
            return PARTY_EIO;
        r = load_on(be, c, room_id, party, &s, why, why_len);
        lost = r != 0 && PQstatus(c) != CONNECTION_OK;
        pool_put(be, c);
        /* A load writes nothing: one whose connection failed under it
         * (the server closed it at that moment) is read again, once, on
         * another connection. */
        if (!lost || tries > 0)
            break;
        __atomic_add_fetch(&be->base.reconnects, 1, __ATOMIC_RELAXED);
    }
    if (r != 0)
        return r;
    loaded->alarm_at = s->alarm_at;
    loaded->alarm_retries = s->alarm_retries;
    (void)room_sched_earliest(&s->base, &loaded->sched_next);
    *out = &s->base;
    return 0;
}

/* ---- records ---- */

static int pairs_get(pairs *t, const char *key, void **val, size_t *len) {
    int found;
    size_t i;
    char *copy;
    if (!key_ok(key) || val == NULL)
        return PARTY_EINVAL;
    *val = NULL;
    if (len != NULL)
        *len = 0;
    i = pairs_find(t, key, &found);
    if (!found)
        return PARTY_ENOTFOUND;
    copy = copy_bytes(t->items[i].val, t->items[i].len);
    if (copy == NULL)
        return PARTY_ENOMEM;
    *val = copy;
    if (len != NULL)
        *len = t->items[i].len;
    return 0;
}

static int pairs_put(pg_room *s, int what, const char *key, const void *val, size_t len) {
    pairs *t = what == REC_KV ? &s->kv : &s->meta;
    char *copy, *key_copy = NULL;
    int found;
    size_t i;
    undo *u;

    if (!key_ok(key) || (val == NULL && len > 0))
        return PARTY_EINVAL;
    if (strlen(key) + len > PARTY__KV_MAX)
        return PARTY_ETOOBIG;
    i = pairs_find(t, key, &found);
    copy = copy_bytes(val, len);
    if (copy == NULL ||
        (!found && ((key_copy = party__strdup(key)) == NULL || pairs_reserve(t) != 0))) {
        party__free(copy);
        party__free(key_copy);
        return PARTY_ENOMEM;
    }
    if ((u = log_add(s, what, key)) == NULL) {
        party__free(copy);
        party__free(key_copy);
        return PARTY_ENOMEM;
    }
    if (found) {
        u->had = 1;
        u->old.val = t->items[i].val;
        u->old.len = t->items[i].len;
        t->items[i].val = copy;
        t->items[i].len = len;
    } else {
        pairs_insert_at(t, i, key_copy, copy, len);
    }
    return 0;
}

static int pairs_delete(pg_room *s, int what, const char *key) {
    pairs *t = what == REC_KV ? &s->kv : &s->meta;
    int found;
    size_t i;
    undo *u;
    if (!key_ok(key))
        return PARTY_EINVAL;
    i = pairs_find(t, key, &found);
    if (!found)
        return PARTY_ENOTFOUND;
    if ((u = log_add(s, what, key)) == NULL)
        return PARTY_ENOMEM;
    u->had = 1;
    u->old.val = t->items[i].val;
    u->old.len = t->items[i].len;
    t->items[i].val = NULL;
    pairs_remove_at(t, i, 1);
    return 0;
}

static int pairs_list(pairs *t, const char *prefix, party__kv_fn fn, void *arg) {
    size_t plen = prefix != NULL ? strlen(prefix) : 0, i;
    int found, r;
    if (fn == NULL || (prefix != NULL && !key_ok(prefix)))
        return PARTY_EINVAL;
    i = plen > 0 ? pairs_find(t, prefix, &found) : 0;
    for (; i < t->n; i++) {
        if (plen > 0 && strncmp(t->items[i].key, prefix, plen) != 0)
            break;
        r = fn(t->items[i].key, t->items[i].val, t->items[i].len, arg);
        if (r != 0)
            return r;
    }
    return 0;
}

static int room_kv_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    return pairs_get(&((pg_room *)rs)->kv, key, val, len);
}
static int room_kv_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    return pairs_put((pg_room *)rs, REC_KV, key, val, len);
}
static int room_kv_delete(party__room_store *rs, const char *key) {
    return pairs_delete((pg_room *)rs, REC_KV, key);
}
static int room_kv_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    return pairs_list(&((pg_room *)rs)->kv, prefix, fn, arg);
}
static int room_meta_get(party__room_store *rs, const char *key, void **val, size_t *len) {
    return pairs_get(&((pg_room *)rs)->meta, key, val, len);
}
static int room_meta_put(party__room_store *rs, const char *key, const void *val, size_t len) {
    return pairs_put((pg_room *)rs, REC_META, key, val, len);
}
static int room_meta_delete(party__room_store *rs, const char *key) {
    return pairs_delete((pg_room *)rs, REC_META, key);
}
static int room_meta_list(party__room_store *rs, const char *prefix, party__kv_fn fn, void *arg) {
    return pairs_list(&((pg_room *)rs)->meta, prefix, fn, arg);
}

static int room_alarm_get(party__room_store *rs, int64_t *at_ms, int *retries) {
    pg_room *s = (pg_room *)rs;
    *at_ms = s->alarm_at;
    if (retries != NULL)
        *retries = s->alarm_retries;
    return 0;
}

static int room_alarm_set(party__room_store *rs, int64_t at_ms, int retries) {
    pg_room *s = (pg_room *)rs;
    undo *u = log_add(s, REC_ALARM, NULL);
    if (u == NULL)
        return PARTY_ENOMEM;
    u->at_ms = s->alarm_at;
    u->retries = s->alarm_retries;
    s->alarm_at = at_ms > 0 ? at_ms : 0;
    s->alarm_retries = at_ms > 0 ? retries : 0;
    return 0;
}

static int room_sched_add(party__room_store *rs, const party__schedule *sc) {
    pg_room *s = (pg_room *)rs;
    sched copy;
    if (sched_index(s, sc->id) >= 0)
        return PARTY_EEXIST;
    if (scheds_reserve(s) != 0 || sched_copy(&copy, sc) != 0)
        return PARTY_ENOMEM;
    if (log_add(s, REC_SCHED, sc->id) == NULL) {
        sched_free(&copy);
        return PARTY_ENOMEM;
    }
    s->scheds[s->n_scheds++] = copy;
    return 0;
}

static int room_sched_cancel(party__room_store *rs, const char *id) {
    pg_room *s = (pg_room *)rs;
    int i = sched_index(s, id);
    undo *u;
    if (i < 0)
        return PARTY_ENOTFOUND;
    if ((u = log_add(s, REC_SCHED, id)) == NULL)
        return PARTY_ENOMEM;
    u->had = 1;
    u->olds = s->scheds[i];
    s->scheds[i] = s->scheds[--s->n_scheds];
    return 0;
}

static int room_sched_set_next(party__room_store *rs, const char *id, int64_t next_ms) {
    pg_room *s = (pg_room *)rs;
    int i = sched_index(s, id);
    party__schedule sc;
    sched copy;
    undo *u;
    if (i < 0)
        return 0; /* as an UPDATE of no row */
    sc.id = s->scheds[i].id;
    sc.name = s->scheds[i].name;
    sc.cron = s->scheds[i].cron;
    sc.payload = s->scheds[i].payload;
    sc.len = s->scheds[i].len;
    sc.kind = s->scheds[i].kind;
    sc.interval_ms = s->scheds[i].interval_ms;
    sc.next_ms = next_ms;
    if (sched_copy(&copy, &sc) != 0)
        return PARTY_ENOMEM;
    if ((u = log_add(s, REC_SCHED, id)) == NULL) {
        sched_free(&copy);
        return PARTY_ENOMEM;
    }
    u->had = 1;
    u->olds = s->scheds[i];
    s->scheds[i] = copy;
    return 0;
}

static int room_sched_earliest(party__room_store *rs, int64_t *next_ms) {
    pg_room *s = (pg_room *)rs;
    size_t i;
    *next_ms = 0;
    for (i = 0; i < s->n_scheds; i++)
        if (*next_ms == 0 || s->scheds[i].next_ms < *next_ms)
            *next_ms = s->scheds[i].next_ms;
    return 0;
}

static int sched_order(const void *a, const void *b) {
    const sched *x = *(const sched *const *)a, *y = *(const sched *const *)b;
    if (x->next_ms != y->next_ms)
        return x->next_ms < y->next_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int room_sched_each(party__room_store *rs, int64_t until, party__sched_fn fn, void *arg) {
    pg_room *s = (pg_room *)rs;
    const sched **due;
    size_t i, n = 0;
    int r = 0;
    if (s->n_scheds == 0)
        return 0;
    due = party__malloc(s->n_scheds * sizeof(*due));
    if (due == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < s->n_scheds; i++)
        if (s->scheds[i].next_ms <= until)
            due[n++] = &s->scheds[i];
    qsort(due, n, sizeof(*due), sched_order);
    for (i = 0; i < n && r == 0; i++) {
        party__schedule sc;
        sc.id = due[i]->id;
        sc.name = due[i]->name;
        sc.cron = due[i]->cron;
        sc.payload = due[i]->payload;
        sc.len = due[i]->len;
        sc.kind = due[i]->kind;
        sc.interval_ms = due[i]->interval_ms;
        sc.next_ms = due[i]->next_ms;
        r = fn(&sc, arg);
    }
    party__free(due);
    return r;
}

static int room_wrote(party__room_store *rs) {
    pg_room *s = (pg_room *)rs;
    return s->n_log > 0 || file_wrote(s);
}

static void room_rollback(party__room_store *rs) {
    pg_room *s = (pg_room *)rs;
    log_undo(s);
    file_rollback(s);
}

/* ---- commits ---- */

/* What a batch wrote to the room's own database, to ship. */
enum { FILE_NONE, FILE_CHANGESET, FILE_SNAPSHOT };
typedef struct file_part {
    int mode;
    void *data; /* sqlite3_malloc'd */
    int len;
    int local_changed; /* the local database moved past what is committed */
} file_part;

/* Ends the batch's own-database transaction, committing it locally, and
 * says what to ship: a changeset, or a snapshot when the schema changed,
 * a table has no primary key (the session cannot see its rows) or enough
 * changesets piled up. 0, or PARTY_EIO when the transaction was lost (the
 * room's SQL made SQLite roll it back) or cannot commit. */
static int file_prepare(pg_room *s, file_part *fp) {
    sqlite3_int64 size = 0;
    int r = 0;

    memset(fp, 0, sizeof(*fp));
    if (!s->db_begun)
        return 0;
    if (s->db_lost || sqlite3_get_autocommit(s->db)) {
        /* Whatever ran after the loss ran outside any transaction. */
        fp->local_changed = 1;
        r = PARTY_EIO;
    } else if (sqlite3_txn_state(s->db, NULL) == SQLITE_TXN_WRITE) {
        if (schema_version(s->db) != s->schema_at_begin ||
            s->changes_since_snapshot + 1 >= SNAPSHOT_EVERY || has_pkless_table(s->db))
            fp->mode = FILE_SNAPSHOT;
        else if (sqlite3session_changeset(s->session, &fp->len, &fp->data) != SQLITE_OK)
            r = PARTY_EIO;
        else
            fp->mode = fp->len > 0 ? FILE_CHANGESET : FILE_NONE;
    }
    if (r == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        r = PARTY_EIO;
    if (r == 0 && fp->mode != FILE_NONE)
        fp->local_changed = 1;
    if (r == 0 && fp->mode == FILE_SNAPSHOT) {
        fp->data = sqlite3_serialize(s->db, "main", &size, 0);
        fp->len = (int)size;
        if (fp->data == NULL || size > INT32_MAX)
            r = PARTY_EIO;
    }
    if (r != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    if (s->session != NULL)
        sqlite3session_delete(s->session);
    s->session = NULL;
    s->db_begun = s->db_lost = 0;
    return r;
}

/* ---- group commits: one transaction, pipelined ----
 *
 * A group's rooms commit in one transaction on one connection, sent in
 * libpq's pipeline mode: BEGIN, one statement that checks every room's
 * epoch (FOR SHARE) and fails unless all hold, each room's writes, and
 * COMMIT go out together and are answered together, one round trip in
 * all. When a room was fenced the check fails and the transaction rolls
 * back; the rooms still held are then found first (a second pipeline)
 * and only they are written, so a fenced room fails alone. A statement
 * the server refuses for other reasons sends the rooms back to one
 * transaction each (commit_room), so one room's bad write fails that
 * room only. */

/* The statements of a commit, prepared once on each connection of the
 * pool (prepare_commits): planned once, not at each commit (the fence's
 * join costs more to plan than to run: docs/benchmarks.md). Named by
 * their index ("c0", "c1", ...). */
enum {
    ST_KV_PUT,
    ST_META_PUT,
    ST_KV_DEL,
    ST_META_DEL,
    ST_ALARM_PUT,
    ST_ALARM_DEL,
    ST_SCHED_PUT,
    ST_SCHED_DEL,
    ST_CHANGE_ADD,
    ST_SNAPSHOT_PUT,
    ST_CHANGES_DROP,
    ST_INDEX_PUT,
    ST_INDEX_DEL,
    ST_FENCE_STRICT,
    ST_FENCE_ROWS,
    ST_COUNT
};

/* The rooms of the attempt that this node holds at their epoch, locked
 * FOR SHARE (a takeover waits for the commit, and the commit for a
 * takeover), in room order. */
#define FENCE_ROWS                                                                                 \
    "SELECT r.room_id FROM party_rooms r JOIN unnest($2::text[], $3::bigint[]) AS w(id, epoch)"    \
    " ON r.room_id = w.id AND r.epoch = w.epoch WHERE r.owner = $1"                                \
    " ORDER BY r.room_id FOR SHARE OF r"

static const char *const commit_sql[ST_COUNT] = {
    [ST_KV_PUT] = "INSERT INTO party_kv (room_id, key, value) VALUES ($1, $2, $3)"
                  " ON CONFLICT (room_id, key) DO UPDATE SET value = EXCLUDED.value",
    [ST_META_PUT] = "INSERT INTO party_meta (room_id, key, value) VALUES ($1, $2, $3)"
                    " ON CONFLICT (room_id, key) DO UPDATE SET value = EXCLUDED.value",
    [ST_KV_DEL] = "DELETE FROM party_kv WHERE room_id = $1 AND key = $2",
    [ST_META_DEL] = "DELETE FROM party_meta WHERE room_id = $1 AND key = $2",
    [ST_ALARM_PUT] = "INSERT INTO party_alarm (room_id, at_ms, retries) VALUES ($1, $2, $3)"
                     " ON CONFLICT (room_id) DO UPDATE SET at_ms = EXCLUDED.at_ms,"
                     " retries = EXCLUDED.retries",
    [ST_ALARM_DEL] = "DELETE FROM party_alarm WHERE room_id = $1",
    [ST_SCHED_PUT] = "INSERT INTO party_schedules (room_id, id, name, payload, kind,"
                     " interval_ms, cron, next_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                     " ON CONFLICT (room_id, id) DO UPDATE SET name = EXCLUDED.name,"
                     " payload = EXCLUDED.payload, kind = EXCLUDED.kind,"
                     " interval_ms = EXCLUDED.interval_ms, cron = EXCLUDED.cron,"
                     " next_ms = EXCLUDED.next_ms",
    [ST_SCHED_DEL] = "DELETE FROM party_schedules WHERE room_id = $1 AND id = $2",
    [ST_CHANGE_ADD] = "INSERT INTO party_room_changes (room_id, seq, changeset)"
                      " VALUES ($1, $2::bigint, $3)",
    [ST_SNAPSHOT_PUT] = "INSERT INTO party_room_files (room_id, snapshot, seq)"
                        " VALUES ($1, $3, $2::bigint) ON CONFLICT (room_id) DO UPDATE"
                        " SET snapshot = EXCLUDED.snapshot, seq = EXCLUDED.seq",
    [ST_CHANGES_DROP] = "DELETE FROM party_room_changes WHERE room_id = $1 AND seq <= $2::bigint",
    [ST_INDEX_PUT] = "INSERT INTO party_alarm_index (room_id, party, due_ms) VALUES ($1, $2, $3)"
                     " ON CONFLICT (room_id) DO UPDATE SET party = EXCLUDED.party,"
                     " due_ms = EXCLUDED.due_ms",
    [ST_INDEX_DEL] = "DELETE FROM party_alarm_index WHERE room_id = $1",
    /* Not held: an error (the cast fails, SQLSTATE 22P02) so that nothing
     * after it runs; its text is what the server logs. */
    [ST_FENCE_STRICT] = "SELECT CASE WHEN count(*) = $4::bigint THEN 0 ELSE ('partyd: rooms of the"
                        " commit are held by another node now (fenced): ' || $4::bigint - count(*))"
                        "::int END FROM (" FENCE_ROWS ") f",
    [ST_FENCE_ROWS] = FENCE_ROWS,
};

/* The name statement st of commit_sql is prepared under. */
static const char *statement_name(int st, char name[16]) {
    snprintf(name, 16, "c%d", st);
    return name;
}

/* Prepares commit_sql on a new connection of the pool: 0 or PARTY_EIO
 * with why. */
static int prepare_commits(PGconn *c, char *why, size_t why_len) {
    char name[16];
    int i;
    for (i = 0; i < ST_COUNT; i++) {
        PGresult *res;
        statement_name(i, name);
        res = PQprepare(c, name, commit_sql[i], 0, NULL);
        if (!ok_status(res)) {
            describe(c, res, "preparing the commit statements", why, why_len);
            PQclear(res);
            return PARTY_EIO;
        }
        PQclear(res);
    }
    return 0;
}

/* Statements sent before a sync reads their answers: bounds what waits
 * in the socket buffers (blocking sends must not wait on a server that
 * waits on us to read). */
#define PIPE_CHUNK 256

typedef struct pipe_run {
    PGconn *c;
    int queued;    /* statements sent since the last sync */
    int failed;    /* a statement failed or was skipped */
    int broken;    /* the connection failed: no answer can be trusted */
    int sent;      /* libpq took a statement of this run to send */
    int fence_at;  /* the fence statement's index in this segment, or -1 */
    int fence_bad; /* ... and it said a room is not held (SQLSTATE 22P02) */
    PGresult *fence;
} pipe_run;

static void pipe_sync(pipe_run *p) {
    PGresult *res;
    int k;
    if (p->broken)
        return;
    if (PQpipelineSync(p->c) != 1) {
        p->broken = p->failed = 1;
        return;
    }
    for (k = 0; k < p->queued; k++) {
        res = PQgetResult(p->c);
        if (res == NULL) {
            p->broken = p->failed = 1;
            return;
        }
        if (!ok_status(res)) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            p->failed = 1;
            if (k == p->fence_at && state != NULL && strcmp(state, "22P02") == 0)
                p->fence_bad = 1;
        }
        if (k == p->fence_at && p->fence == NULL)
            p->fence = res;
        else
            PQclear(res);
        /* Each statement's answer ends with a NULL. */
        if ((res = PQgetResult(p->c)) != NULL) {
            PQclear(res);
            p->broken = p->failed = 1;
            return;
        }
    }
    res = PQgetResult(p->c);
    if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
        p->broken = p->failed = 1;
    PQclear(res);
    p->queued = 0;
    p->fence_at = -1;
}

static void pipe_sent(pipe_run *p, int ok) {
    if (!ok) {
        p->broken = p->failed = 1;
        return;
    }
    p->sent = 1;
    if (++p->queued >= PIPE_CHUNK)
        pipe_sync(p);
}

/* Transaction control (BEGIN, COMMIT, ROLLBACK: nothing to plan). */
static void pipe_send_sql(pipe_run *p, const char *sql) {
    if (!p->broken)
        pipe_sent(p, PQsendQueryParams(p->c, sql, 0, NULL, NULL, NULL, NULL, 1) == 1);
}

/* A prepared statement of commit_sql. */
static void pipe_send(pipe_run *p, int st, int n, const char *const *vals, const int *lens,
                      const int *formats) {
    char name[16];
    if (p->broken)
        return;
    pipe_sent(p,
              PQsendQueryPrepared(p->c, statement_name(st, name), n, vals, lens, formats, 1) == 1);
}

/* Writes the record an undo entry names as it is now. */
static void send_record(pipe_run *pr, pg_room *s, const undo *u) {
    char a[24], b[24], kind[16], next[24];
    const char *p[8];
    int lens[8] = {0}, fmts[8] = {0};

    p[0] = s->id;
    if (u->what == REC_KV || u->what == REC_META) {
        pairs *t = u->what == REC_KV ? &s->kv : &s->meta;
        int found;
        size_t i = pairs_find(t, u->key, &found);
        p[1] = u->key;
        if (found) {
            p[2] = t->items[i].val;
            lens[2] = (int)t->items[i].len;
            fmts[2] = 1;
            pipe_send(pr, u->what == REC_KV ? ST_KV_PUT : ST_META_PUT, 3, p, lens, fmts);
        } else {
            pipe_send(pr, u->what == REC_KV ? ST_KV_DEL : ST_META_DEL, 2, p, NULL, NULL);
        }
    } else if (u->what == REC_ALARM) {
        if (s->alarm_at > 0) {
            snprintf(a, sizeof(a), "%lld", (long long)s->alarm_at);
            snprintf(b, sizeof(b), "%d", s->alarm_retries);
            p[1] = a;
            p[2] = b;
            pipe_send(pr, ST_ALARM_PUT, 3, p, NULL, NULL);
        } else {
            pipe_send(pr, ST_ALARM_DEL, 1, p, NULL, NULL);
        }
    } else {
        int i = sched_index(s, u->key);
        p[1] = u->key;
        if (i >= 0) {
            const sched *sc = &s->scheds[i];
            snprintf(kind, sizeof(kind), "%d", sc->kind);
            snprintf(a, sizeof(a), "%lld", (long long)sc->interval_ms);
            snprintf(next, sizeof(next), "%lld", (long long)sc->next_ms);
            p[2] = sc->name;
            p[3] = sc->payload;
            lens[3] = (int)sc->len;
            fmts[3] = 1;
            p[4] = kind;
            p[5] = a;
            p[6] = sc->cron;
            p[7] = next;
            pipe_send(pr, ST_SCHED_PUT, 8, p, lens, fmts);
        } else {
            pipe_send(pr, ST_SCHED_DEL, 2, p, NULL, NULL);
        }
    }
}

/* Undo entries in record order: the same record changed twice in a
 * batch is written once (its last value). */
static int undo_order(const void *a, const void *b) {
    const undo *x = *(const undo *const *)a, *y = *(const undo *const *)b;
    if (x->what != y->what)
        return x->what < y->what ? -1 : 1;
    if (x->key == NULL || y->key == NULL)
        return (x->key != NULL) - (y->key != NULL);
    return strcmp(x->key, y->key);
}

/* Sends one room's writes: its records, its own database's part and its
 * alarm index entry. 0, or PARTY_ENOMEM. */
static int send_room(pipe_run *pr, pg_room *s, const party__commit *cm, const file_part *fp) {
    char seq[24], due[24];
    const char *p[3];
    int lens[3] = {0}, fmts[3] = {0};
    size_t i;

    if (s->n_log > 0) {
        const undo **order = party__malloc(s->n_log * sizeof(*order));
        if (order == NULL)
            return PARTY_ENOMEM;
        for (i = 0; i < s->n_log; i++)
            order[i] = &s->log[i];
        qsort(order, s->n_log, sizeof(*order), undo_order);
        for (i = 0; i < s->n_log; i++)
            if (i == 0 || undo_order(&order[i - 1], &order[i]) != 0)
                send_record(pr, s, order[i]);
        party__free(order);
    }
    p[0] = s->id;
    if (fp->mode != FILE_NONE) {
        snprintf(seq, sizeof(seq), "%lld", (long long)(s->file_seq + 1));
        p[1] = seq;
        p[2] = fp->data;
        lens[2] = fp->len;
        fmts[2] = 1;
        if (fp->mode == FILE_CHANGESET) {
            pipe_send(pr, ST_CHANGE_ADD, 3, p, lens, fmts);
        } else {
            pipe_send(pr, ST_SNAPSHOT_PUT, 3, p, lens, fmts);
            pipe_send(pr, ST_CHANGES_DROP, 2, p, NULL, NULL);
        }
    }
    if (cm->wake_changed) {
        if (cm->wake_ms > 0) {
            snprintf(due, sizeof(due), "%lld", (long long)cm->wake_ms);
            p[1] = s->party;
            p[2] = due;
            pipe_send(pr, ST_INDEX_PUT, 3, p, NULL, NULL);
        } else {
            pipe_send(pr, ST_INDEX_DEL, 1, p, NULL, NULL);
        }
    }
    return 0;
}

/* The rooms of the attempt as array literals: their ids ({"a","b"})
 * and epochs ({1,2}). 0 or PARTY_ENOMEM. */
static int fence_arrays(const party__commit *rooms, size_t n, const int *want, char **ids,
                        char **epochs) {
    size_t i, id_cap = 3, ep_cap = 3;
    char *o, *e;
    for (i = 0; i < n; i++) {
        if (want[i]) {
            id_cap += 2 * strlen(((pg_room *)rooms[i].store)->id) + 3;
            ep_cap += 22;
        }
    }
    *ids = party__malloc(id_cap);
    *epochs = party__malloc(ep_cap);
    if (*ids == NULL || *epochs == NULL) {
        party__free(*ids);
        party__free(*epochs);
        return PARTY_ENOMEM;
    }
    o = *ids;
    e = *epochs;
    *o++ = '{';
    *e++ = '{';
    for (i = 0; i < n; i++) {
        const pg_room *s = (const pg_room *)rooms[i].store;
        const char *c;
        if (!want[i])
            continue;
        if (o > *ids + 1) {
            *o++ = ',';
            *e++ = ',';
        }
        *o++ = '"';
        for (c = s->id; *c != '\0'; c++) {
            if (*c == '"' || *c == '\\')
                *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
        e += snprintf(e, 22, "%lld", (long long)s->epoch);
    }
    memcpy(o, "}", 2);
    memcpy(e, "}", 2);
    return 0;
}

enum { ATTEMPT_OK, ATTEMPT_FENCED, ATTEMPT_FAILED, ATTEMPT_BROKEN };

/* Ends a failed attempt's transaction. */
static int attempt_abort(pipe_run *pr) {
    if (pr->broken)
        return ATTEMPT_BROKEN;
    pr->failed = 0;
    pipe_send_sql(pr, "ROLLBACK");
    pipe_sync(pr);
    return pr->broken ? ATTEMPT_BROKEN : ATTEMPT_FAILED;
}

/* One transaction for the rooms with want[i]. strict: one round trip,
 * ATTEMPT_FENCED (nothing written) when a room is not held; else the
 * held rooms are listed first, the others get PARTY_EFENCED and leave
 * want, and the rest are written. ATTEMPT_FAILED: a statement failed,
 * nothing written; ATTEMPT_BROKEN: the connection failed (a COMMIT's
 * outcome is then unknown: reported as a failure). */
static int attempt(pipe_run *pr, const char *me, const party__commit *rooms, size_t n,
                   const file_part *fps, int *want, int *results, int strict) {
    char *ids, *epochs, count[24];
    const char *p[4];
    size_t i, m = 0;
    int r = ATTEMPT_OK;

    for (i = 0; i < n; i++)
        m += want[i] != 0;
    if (m == 0)
        return ATTEMPT_OK;
    if (fence_arrays(rooms, n, want, &ids, &epochs) != 0)
        return ATTEMPT_FAILED;
    snprintf(count, sizeof(count), "%zu", m);
    p[0] = me;
    p[1] = ids;
    p[2] = epochs;
    p[3] = count;
    pr->failed = pr->fence_bad = 0;
    pr->fence = NULL;
    pipe_send_sql(pr, "BEGIN");
    pr->fence_at = pr->queued;
    if (strict) {
        pipe_send(pr, ST_FENCE_STRICT, 4, p, NULL, NULL);
    } else {
        pipe_send(pr, ST_FENCE_ROWS, 3, p, NULL, NULL);
        pipe_sync(pr);
        if (!pr->failed && pr->fence != NULL) {
            /* Rooms not listed are another node's now: left out. */
            int k, rows = PQntuples(pr->fence);
            for (i = 0; i < n; i++) {
                const char *id = ((pg_room *)rooms[i].store)->id;
                int held = 0;
                if (!want[i])
                    continue;
                for (k = 0; k < rows && !held; k++)
                    held = strcmp(PQgetvalue(pr->fence, k, 0), id) == 0;
                if (!held) {
                    want[i] = 0;
                    results[i] = PARTY_EFENCED;
                }
            }
        }
    }
    party__free(ids);
    party__free(epochs);
    for (i = 0; i < n && !pr->failed; i++)
        if (want[i] && send_room(pr, (pg_room *)rooms[i].store, &rooms[i], &fps[i]) != 0)
            pr->failed = 1;
    if (!pr->failed) {
        pipe_send_sql(pr, "COMMIT");
        pipe_sync(pr);
    }
    PQclear(pr->fence);
    pr->fence = NULL;
    if (pr->failed) {
        int fenced = pr->fence_bad;
        r = attempt_abort(pr);
        if (r == ATTEMPT_FAILED && fenced)
            r = ATTEMPT_FENCED;
    }
    return r;
}

/* Commits the rooms with want[i] (their own-database parts in fps) on c,
 * setting their results: one transaction for all when every room is
 * held, else for the held ones; one each when the server refused a
 * statement, so that room fails alone. 1 if the connection failed before
 * libpq took anything of it to send (want is as it came, nothing can
 * have reached the server), else 0. */
static int group_commit(pg_backend *be, PGconn *c, const party__commit *rooms, size_t n,
                        const file_part *fps, int *want, int *results) {
    pipe_run pr = {c, 0, 0, 0, 0, -1, 0, NULL};
    char me[300];
    size_t i, j;
    int r;

    uv_mutex_lock(&be->beat_mutex);
    snprintf(me, sizeof(me), "%s", be->node_id);
    uv_mutex_unlock(&be->beat_mutex);

    if (PQenterPipelineMode(c) != 1) {
        r = ATTEMPT_BROKEN;
    } else {
        r = attempt(&pr, me, rooms, n, fps, want, results, 1);
        if (r == ATTEMPT_FENCED)
            r = attempt(&pr, me, rooms, n, fps, want, results, 0);
    }
    if (r == ATTEMPT_FAILED) {
        for (i = 0; i < n; i++) {
            int *one;
            if (!want[i])
                continue;
            one = party__calloc(n, sizeof(*one));
            if (one == NULL) {
                results[i] = PARTY_EIO;
                continue;
            }
            one[i] = 1;
            r = attempt(&pr, me, rooms, n, fps, one, results, 0);
            results[i] = one[i] == 0 ? results[i] : r == ATTEMPT_OK ? 0 : PARTY_EIO;
            party__free(one);
            if (r == ATTEMPT_BROKEN) {
                for (j = i + 1; j < n; j++)
                    if (want[j])
                        results[j] = PARTY_EIO;
                break;
            }
        }
    } else {
        for (i = 0; i < n; i++)
            if (want[i])
                results[i] = r == ATTEMPT_OK ? 0 : PARTY_EIO;
    }
    if (!pr.broken && PQpipelineStatus(c) != PQ_PIPELINE_OFF && PQexitPipelineMode(c) != 1)
        pr.broken = 1;
    return r == ATTEMPT_BROKEN && !pr.sent;
}

static void pg_commit_batch(party__backend *be_, const party__commit *rooms, size_t n,
                            int *results) {
    pg_backend *be = (pg_backend *)be_;
    char why[256];
    PGconn *c = NULL;
    file_part *fps = party__calloc(n > 0 ? n : 1, sizeof(*fps));
    int *want = party__calloc(n > 0 ? n : 1, sizeof(*want));
    size_t i, m = 0;
    int lost = self_fenced(be), tries;

    for (i = 0; i < n; i++) {
        pg_room *s = (pg_room *)rooms[i].store;
        results[i] = 0;
        if (s->fenced || lost)
            results[i] = PARTY_EFENCED;
        else if (s->n_log == 0 && !rooms[i].wake_changed && !s->db_begun)
            continue;
        else if (fps == NULL || want == NULL || file_prepare(s, &fps[i]) != 0)
            results[i] = PARTY_EIO;
        else
            want[i] = 1, m++;
    }
    for (tries = 0; m > 0; tries++) {
        int unsent;
        if ((c = pool_get(be, why, sizeof(why))) == NULL) {
            for (i = 0; tries == 0 && i < n; i++)
                if (want[i])
                    results[i] = PARTY_EIO;
            break;
        }
        unsent = group_commit(be, c, rooms, n, fps, want, results);
        if (PQstatus(c) != CONNECTION_OK || PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
            pool_put(be, c); /* closes it */
            c = NULL;
        }
        /* Again, once, only when the connection failed before anything
         * of the batch left: its outcome is known (nothing written). A
         * failure after that (the COMMIT may have been sent) fails the
         * batch: nothing of it is acknowledged, and it is not tried
         * again, since it may have been written. */
        if (!unsent || tries > 0)
            break;
        __atomic_add_fetch(&be->base.reconnects, 1, __ATOMIC_RELAXED);
        pool_put(be, c);
        c = NULL;
    }
    for (i = 0; i < n; i++) {
        pg_room *s = (pg_room *)rooms[i].store;
        file_part *fp = fps != NULL ? &fps[i] : NULL;
        int r = results[i];
        if (fp != NULL && r == 0 && fp->mode != FILE_NONE) {
            s->file_seq++;
            s->changes_since_snapshot =
                fp->mode == FILE_SNAPSHOT ? 0 : s->changes_since_snapshot + 1;
        } else if (fp != NULL && r != 0 && fp->local_changed) {
            /* The local database moved on without the commit: it is
             * built again from what the database holds. */
            if (c == NULL)
                c = pool_get(be, why, sizeof(why));
            if (c == NULL || file_load(s, c) != 0)
                s->db_broken = 1;
        }
        if (fp != NULL)
            sqlite3_free(fp->data);
        if (r != 0)
            file_rollback(s);
        if (r == PARTY_EFENCED)
            s->fenced = 1;
        if (r == 0)
            log_clear(s);
        else
            log_undo(s);
    }
    pool_put(be, c);
    party__free(fps);
    party__free(want);
}

/* ---- where a room's owner is ---- */

static int pg_owner_addr(party__backend *be_, const char *room_id, char *addr, size_t cap) {
    pg_backend *be = (pg_backend *)be_;
    char why[256], me[300];
    const char *p[2] = {room_id, me};
    PGconn *c;
    PGresult *res;
    int r = 0;

    uv_mutex_lock(&be->beat_mutex);
    snprintf(me, sizeof(me), "%s", be->node_id);
    uv_mutex_unlock(&be->beat_mutex);
    c = pool_get(be, why, sizeof(why));
    if (c == NULL)
        return PARTY_EIO;
    res = run(c,
              "SELECT n.addr FROM party_rooms r JOIN party_nodes n ON n.node_id = r.owner"
              " WHERE r.room_id = $1 AND r.owner <> $2 AND n.addr IS NOT NULL"
              " AND party_node_alive(r.owner)",
              2, p, NULL, NULL);
    if (!ok_status(res))
        r = PARTY_EIO;
    else if (PQntuples(res) == 1 && (size_t)PQgetlength(res, 0, 0) < cap) {
        memcpy(addr, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
        addr[PQgetlength(res, 0, 0)] = '\0';
        r = 1;
    }
    PQclear(res);
    pool_put(be, c);
    return r;
}

/* ---- the alarm index ---- */

static int index_rows(pg_backend *be, const char *sql, int n, const char *const *p,
                      party__index_fn fn, void *arg) {
    char why[256];
    PGconn *c = pool_get(be, why, sizeof(why));
    PGresult *res;
    int i, rows, r = 0;
    if (c == NULL)
        return PARTY_EIO;
    res = run(c, sql, n, p, NULL, NULL);
    if (!ok_status(res)) {
        PQclear(res);
        pool_put(be, c);
        return PARTY_EIO;
    }
    rows = PQntuples(res);
    for (i = 0; i < rows && r == 0; i++)
        r = fn(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), col_i64(res, i, 2), arg);
    PQclear(res);
    pool_put(be, c);
    return r;
}

static int pg_index_load(party__backend *be, party__index_fn fn, void *arg) {
    /* Rooms a live node holds are that node's to wake. */
    return index_rows((pg_backend *)be,
                      "SELECT i.room_id, i.party, i.due_ms FROM party_alarm_index i"
                      " LEFT JOIN party_rooms r ON r.room_id = i.room_id"
                      " WHERE r.owner IS NULL OR NOT party_node_alive(r.owner)",
                      0, NULL, fn, arg);
}

static int pg_index_due(party__backend *be, int64_t until_ms, party__index_fn fn, void *arg) {
    char until[24];
    const char *p[1] = {until};
    snprintf(until, sizeof(until), "%lld", (long long)until_ms);
    /* Only rooms no live node holds: the others are their owners' to wake. */
    return index_rows((pg_backend *)be,
                      "SELECT i.room_id, i.party, i.due_ms FROM party_alarm_index i"
                      " LEFT JOIN party_rooms r ON r.room_id = i.room_id"
                      " WHERE i.due_ms <= $1::bigint"
                      " AND (r.owner IS NULL OR NOT party_node_alive(r.owner))"
                      " ORDER BY i.due_ms, i.room_id",
                      1, p, fn, arg);
}

static const party__store_ops pg_ops = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .acquire = pg_acquire,
    .release = pg_release,
    .load = pg_load,
    .unload = pg_unload,
    .kv_get = room_kv_get,
    .kv_put = room_kv_put,
    .kv_delete = room_kv_delete,
    .kv_list = room_kv_list,
    .meta_get = room_meta_get,
    .meta_put = room_meta_put,
    .meta_delete = room_meta_delete,
    .meta_list = room_meta_list,
    .alarm_get = room_alarm_get,
    .alarm_set = room_alarm_set,
    .sched_add = room_sched_add,
    .sched_cancel = room_sched_cancel,
    .sched_set_next = room_sched_set_next,
    .sched_earliest = room_sched_earliest,
    .sched_each = room_sched_each,
    .room_file_open = room_file_open,
    .wrote = room_wrote,
    .rollback = room_rollback,
    .commit_batch = pg_commit_batch,
    .index_load = pg_index_load,
    .index_due = pg_index_due,
    .check = pg_check,
    .owner_addr = pg_owner_addr,
    .set_addr = pg_set_addr,
};

const party__store_ops *party__store_pg_ops(void) {
    return &pg_ops;
}
