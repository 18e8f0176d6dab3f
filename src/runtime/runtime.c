/* runtime: party_runtime's life — configuration, the registry of parties,
 * the data directory (its lock), the listening socket, signals — and each
 * loop's context: its per-turn work (queued room events, then one flush of
 * every connection with output), what its connections and router hand up
 * (to the rooms, to the loop that owns a room, to a tour of the loops), and
 * its graceful shutdown. */
#include "runtime.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <stdio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/time.h>

#include "backends.h"
#include "conn.h"
#include "buf.h"
#include "digest.h"
#include "fetch.h"
#include "outbound.h"
#include "keepalive.h"
#include "addr_limits.h"
#include "listener.h"
#include "log.h"
#include "loops.h"
#include "orphans.h"
#include "room.h"
#include "router.h"
#include "rpc.h"
#include "slab.h"
#include "tls.h"
#include "upgrade.h"
#include "ws.h"
#include "alloc.h"

void party_config_init(party_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->abi = PARTY_ABI_VERSION;
    cfg->host = "127.0.0.1";
    cfg->port = 1999;
    cfg->prefix = "parties";
    cfg->max_message_bytes = 32u * 1024 * 1024;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_headers = 100;
    cfg->max_body_bytes = 32u * 1024 * 1024;
    cfg->send_queue_bytes = 64u * 1024 * 1024;
    cfg->max_room_conns = 32768;
    cfg->data_dir = "./data";
    cfg->durability = PARTY_DURABILITY_FULL;
    cfg->idle_timeout = 60.0;
    cfg->hibernate_after = 10.0;
    cfg->header_timeout = 10.0;
    cfg->close_timeout = 5.0;
    cfg->ping_interval = 30.0;
    cfg->shutdown_timeout = 10.0;
    cfg->log_level = PARTY__LOG_INFO;
    cfg->ops_prefix = "_partyd";
    cfg->agents_prefix = "agents";
    cfg->fetch_timeout = 30.0;
    cfg->fetch_max_bytes = 8u * 1024 * 1024;
    cfg->fetch_max_in_flight = PARTY_MAX_FETCH_URLS;
    cfg->threads = 1;
    cfg->limit_addr_conns = 20000;
    cfg->limit_addr_rate = 1000;
    cfg->limit_conn_msgs = 1000;
    cfg->limit_conn_bytes = 16.0 * 1024 * 1024;
    cfg->limit_addr_table = 65536;
    cfg->limit_exempt = "127.0.0.1,::1";
}

/* ---- per-loop-turn work ---- */

/* Output is flushed after I/O callbacks (check) and again before the loop
 * blocks (prepare), so what a timer or idle callback queued never waits
 * for unrelated I/O to wake the loop. */
static void on_flush_check(uv_check_t *check) {
    party__conn_flush_dirty(check->data);
}

static void on_flush_prepare(uv_prepare_t *prepare) {
    party__conn_flush_dirty(prepare->data);
}

static int runtime_can_finish(party__loop_ctx *lc);
static void runtime_finish(party__loop_ctx *lc);

/* A stopping loop finishes at the top of a turn, never under a caller
 * that still uses its rooms. */
static void on_finish_idle(uv_idle_t *idle) {
    party__loop_ctx *lc = idle->data;
    uv_idle_stop(idle);
    if (runtime_can_finish(lc)) {
        lc->lp.finished = 1;
        runtime_finish(lc);
    }
}

/* HTTP phases ended since the last trim that make a burst worth trimming
 * after: below it, what their requests freed is a few pages at most. */
#define HTTP_BURST 256

/* Eviction runs on a coarse tick: a room leaves memory between idle_timeout
 * and idle_timeout + one tick after its last work. */
static void on_evict_timer(uv_timer_t *timer) {
    party__loop_ctx *lc = timer->data;
    int quiet = lc->lp.http_ended == lc->http_ended_at_tick; /* no HTTP exchange ended this tick */
    if (!lc->lp.virtual_clock)
        party__room_evict_idle(&lc->rooms, party__loop_now(&lc->lp));
    party__buf_pool_tick(lc->lp.buf_pool);
    /* Blocks of connection and room structs that closed connections and
     * evicted rooms emptied go back, and the pages with them. */
    if (party__slabs_tick(lc->lp.conn_slabs) + party__slabs_tick(lc->rooms.room_slabs) > 0)
        lc->lp.trim_pending = 1;
    /* A burst of handshakes leaves the memory its requests used freed
     * between the new connections' structs; once a tick passes without
     * any, that burst is over. */
    if (quiet && lc->lp.http_ended - lc->http_ended_at_trim >= HTTP_BURST)
        lc->lp.trim_pending = 1;
    lc->http_ended_at_tick = lc->lp.http_ended;
    if (lc->lp.trim_pending) {
        /* Rooms left memory or a burst of handshakes ended since the last
         * tick: hand the pages freed between long-lived connection structs
         * back to the system, so that idle connections' cost shows in RSS
         * too. At most once a tick. */
        lc->lp.trim_pending = 0;
        lc->http_ended_at_trim = lc->lp.http_ended;
        party__buf_pool_trim(lc->lp.buf_pool);
        /* The handshakes' pools too, once no handshake went on this tick. */
        if (quiet)
            party__conn_pools_trim(&lc->lp);
        malloc_trim(0);
    }
}

static uint64_t evict_tick_ms(const party_config *cfg) {
    double shortest =
        cfg->idle_timeout < cfg->hibernate_after ? cfg->idle_timeout : cfg->hibernate_after;
    uint64_t ms = (uint64_t)(shortest * 1000.0 / 4);
    return ms < 100 ? 100 : ms > 5000 ? 5000 : ms;
}

/* ---- lifecycle ---- */

static void on_stop_async(uv_async_t *async) {
    party__runtime_begin_stop(async->data);
}

/* ---- what connections report (conn.h) ---- */

static inline int post_message(party_room *room, party_conn *conn, party__slice data, int binary) {
    party__event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_MESSAGE;
    ev.conn = conn;
    ev.data = data;
    ev.binary = binary;
    return party__room_post(room, &ev);
}

/* A message of a connection the limits apply to. Out of line: inlined,
 * the registers the meter needs were saved and restored for every
 * message of an exempt connection too. */
static __attribute__((noinline)) int message_metered(party_room *room, party_conn *conn,
                                                     party__slice data, int binary) {
    if (party__conn_meter(conn, data.len, &room->party->meter) != 0)
        return 0; /* closing with 1013: the client kept going over its limit */
    return post_message(room, conn, data, binary);
}

static int conn_message_cb(party_room *room, party_conn *conn, party__slice data, int binary) {
    if (!party__conn_unmetered(conn))
        return message_metered(room, conn, data, binary);
    return post_message(room, conn, data, binary);
}

static int conn_close_cb(party_room *room, party_conn *conn, int code, party__slice reason,
                         int was_clean) {
    party__event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_CLOSE;
    ev.conn = conn;
    ev.code = code;
    ev.data = reason;
    ev.was_clean = was_clean;
    if (party__room_post(room, &ev) == 0)
        return 0;
    party__room_unlink_conn(room, conn); /* no on_close, but no dangling link either */
    return PARTY_ENOMEM;
}

static void conn_error_cb(party_room *room, party_conn *conn, const char *what) {
    party__event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_ERROR;
    ev.conn = conn;
    ev.what = what;
    (void)party__room_post(room, &ev);
}

/* A connection or a room's store work ended: while stopping, the loop
 * may be done. */
static void loop_quiet(party__loop *lp) {
    party__runtime_maybe_finish(party__loop_ctx_of(lp));
}

static void conn_request_cb(party_conn *conn) {
    party__router_handle(&party__conn_ctx(conn)->router, conn);
}

/* The transport layer hears from routing and rooms only through this
 * table (docs/architecture.md, "Upward callbacks"). */
static const party__conn_upcalls conn_upcalls = {
    .request = conn_request_cb,
    .message = conn_message_cb,
    .close = conn_close_cb,
    .error = conn_error_cb,
};

/* ---- what the router hands up (router.h) ---- */

/* A request for a room: to the loop that owns the room, or, here, to the
 * room once the router admitted it. */
static void route_cb(party_conn *conn, party__routed *r) {
    party__loop_ctx *lc = party__conn_ctx(conn), *owner;
    party_runtime *rt = lc->rt;

    /* A malformed id is refused by the loop that has it (no room to
     * hash it to). */
    if ((r->name != NULL || party__room_id_valid(r->id)) &&
        (owner = party__loop_of(lc, r->id)) != lc) {
        party__loop_handoff(conn, owner);
        return;
    }
    if (party__router_admit(conn, r) != 0)
        return;
    if (!r->upgrade) {
        party__rooms_request(&lc->rooms, conn, r);
        return;
    }
    if (party__runtime_conns(rt) > rt->cfg.max_conns) {
        party__log_warn(rt,
                        "room %s/%s: refused a connection: max_conns (%zu) reached (--max-conns)",
                        r->party->name, r->name, rt->cfg.max_conns);
        party__conn_http_fail(conn, 503, "server is full (max_conns)\n");
        return;
    }
    party__rooms_connect(&lc->rooms, conn, r);
}

/* /metrics: every loop's counters, added up by a tour (loops.h). */
typedef struct metrics_tour {
    party__tour tour;
    party__ops_stats stats;
} metrics_tour;

static void metrics_visit(party__loop_ctx *lc, party__tour *tour) {
    metrics_tour *m = (metrics_tour *)tour;
    party__ops_stats_add_loop(&m->stats, &lc->lp);
    party__rooms_stats(&lc->rooms, &m->stats);
    if (lc == &lc->rt->main) {
        party__upgrade_stats(lc->rt, &m->stats.upgrades, &m->stats.upgrades_failed,
                             &m->stats.upgrades_tls_closed);
        if (lc->rt->backend != NULL)
            m->stats.store_reconnects =
                __atomic_load_n(&lc->rt->backend->reconnects, __ATOMIC_RELAXED);
    }
}

static void metrics_done(party_conn *conn, party__tour *tour) {
    party__ops_answer_metrics(conn, &((metrics_tour *)tour)->stats, tour->failed);
}

/* /rooms: every loop's rooms, listed by a tour. */
typedef struct rooms_tour {
    party__tour tour;
    party__ops_listing listing;
    int oom;
} rooms_tour;

static void rooms_visit(party__loop_ctx *lc, party__tour *tour) {
    rooms_tour *t = (rooms_tour *)tour;
    if (!t->oom)
        t->oom = party__rooms_list(&lc->rooms, &t->listing) != 0;
}

static void rooms_done(party_conn *conn, party__tour *tour) {
    rooms_tour *t = (rooms_tour *)tour;
    party__ops_answer_rooms(conn, &t->listing, t->oom, tour->failed);
}

static void tour_free(party__tour *tour) {
    party__free(tour);
}

static void rooms_tour_free(party__tour *tour) {
    party__ops_listing_free(&((rooms_tour *)tour)->listing);
    party__free(tour);
}

static void ops_collect_cb(party_conn *conn, party__ops_what what) {
    if (what == PARTY__OPS_HEALTH) {
        /* No tour: the backend is process-wide, and its check does no I/O. */
        char why[320];
        party_runtime *rt = party__conn_ctx(conn)->rt;
        party__ops_answer_health(
            conn, party__backend_check(rt->backend, why, sizeof(why)) != 0 ? why : NULL,
            party__conn_ctx(conn)->rooms.node);
    } else if (what == PARTY__OPS_METRICS) {
        metrics_tour *m = party__calloc(1, sizeof(*m));
        if (m == NULL)
            party__ops_answer_metrics(conn, NULL, 0);
        else
            party__tour_start(conn, &m->tour, metrics_visit, metrics_done, tour_free);
    } else {
        rooms_tour *t = party__calloc(1, sizeof(*t));
        if (t == NULL)
            party__ops_answer_rooms(conn, NULL, 1, 0);
        else
            party__tour_start(conn, &t->tour, rooms_visit, rooms_done, rooms_tour_free);
    }
}

/* Routing hears from the runtime only through this table
 * (docs/architecture.md, "Upward callbacks"). */
static const party__router_upcalls router_upcalls = {
    .route = route_cb,
    .ops = {.collect = ops_collect_cb},
};

/* What a loop's router and rooms are handed of the runtime's: the
 * parties (again whenever one is added), the prefixes, the backend. */
static void runtime_share(party__loop_ctx *lc) {
    party_runtime *rt = lc->rt;
    lc->router.parties = lc->rooms.parties = rt->parties;
    lc->router.n_parties = lc->rooms.n_parties = rt->n_parties;
    lc->router.prefix = lc->rooms.prefix = rt->prefix;
    lc->router.agents_prefix = rt->agents_prefix;
    lc->router.cluster_secret = lc->rooms.cluster_secret = rt->cluster_secret;
    lc->rooms.backend = rt->backend;
    lc->rooms.node =
        rt->backend != NULL && rt->backend->node != NULL ? rt->backend->node : rt->node;
    lc->rooms.commit_delay_ms = rt->commit_delay_ms;
    lc->rooms.n_outbound = &rt->n_outbound;
}

/* A loop's context, its handles and its mailbox, for loop index of rt:
 * 0, or PARTY_ENOMEM with nothing left to free but what
 * party__runtime_free_loop (or, for loop 0, party_runtime_free) frees. */
static int runtime_init_loop(party_runtime *rt, party__loop_ctx *lc, unsigned index) {
    lc->rt = rt;
    lc->index = index;
    if (party__loop_init(&lc->lp, &rt->cfg, index) != 0)
        return PARTY_ENOMEM;
    lc->lp.conn_upcalls = &conn_upcalls;
    lc->lp.on_quiet = loop_quiet;
    lc->lp.trusted_proxies = &rt->trusted_proxies_list;
    lc->lp.addr_limits = rt->addr_limits;
    lc->lp.limit_exempt = &rt->limit_exempt_list;
    lc->router.up = &router_upcalls;
    party__rooms_init(&lc->rooms, &lc->lp);
    runtime_share(lc);
    uv_check_init(&lc->lp.loop, &lc->flush_check);
    lc->flush_check.data = &lc->lp;
    uv_check_start(&lc->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&lc->flush_check);
    uv_prepare_init(&lc->lp.loop, &lc->flush_prepare);
    lc->flush_prepare.data = &lc->lp;
    uv_prepare_start(&lc->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&lc->flush_prepare);
    uv_idle_init(&lc->lp.loop, &lc->finish_idle);
    lc->finish_idle.data = lc;
    uv_async_init(&lc->lp.loop, &lc->stop_async, on_stop_async);
    lc->stop_async.data = lc;
    uv_unref((uv_handle_t *)&lc->stop_async);
    uv_timer_init(&lc->lp.loop, &lc->shutdown_timer);
    lc->shutdown_timer.data = lc;
    uv_timer_init(&lc->lp.loop, &lc->evict_timer);
    lc->evict_timer.data = lc;
    uv_timer_init(&lc->lp.loop, &lc->lp.keepalive_timer);
    lc->lp.keepalive_timer.data = &lc->lp;
    return party__inbox_init(lc);
}

party__loop_ctx *party__runtime_new_loop(party_runtime *rt, unsigned index) {
    party__loop_ctx *lc = party__calloc(1, sizeof(*lc));

    if (lc == NULL)
        return NULL;
    if (runtime_init_loop(rt, lc, index) != 0) {
        party__runtime_free_loop(lc);
        return NULL;
    }
    /* The TLS context is the runtime's; each loop has a buffer of its
     * own for ciphertext. */
    lc->lp.tls_ctx = rt->tls_ctx;
    if (lc->lp.tls_ctx != NULL && party__tls_init_loop(&lc->lp) != 0) {
        party__runtime_free_loop(lc);
        return NULL;
    }
    return lc;
}

void party__runtime_start_timers(party__loop_ctx *lc) {
    uint64_t tick = evict_tick_ms(&lc->rt->cfg);
    uv_timer_start(&lc->evict_timer, on_evict_timer, tick, tick);
    uv_unref((uv_handle_t *)&lc->evict_timer);
    party__keepalive_start(&lc->lp);
}

/* Whether a struct of this abi can be read: 0 means "compiled with this
 * header" (the struct was not set up by party_config_init or
 * PARTY_DEF_INIT); ABI 2's and 3's structs are read up to where the next
 * ABI appended fields, which take their defaults. Any other value, 1 included
 * (party.h 0.1 had no abi field, so a 1 there is another field's bytes),
 * is refused. */
static int abi_readable(unsigned abi) {
    return abi == 0 || abi == PARTY__ABI2 || abi == PARTY__ABI3 || abi == PARTY_ABI_VERSION;
}

party_runtime *party_runtime_new(const party_config *cfg) {
    party_runtime *rt;
    party_config defaults;
    const char *agents;
    int r;

    /* Only abi is read before this check: it is the one field every
     * layout has at the same place. */
    if (cfg != NULL && !abi_readable(cfg->abi)) {
        party__log_write(PARTY__LOG_ERROR, 0, PARTY__LOG_ERROR,
                         "party_runtime_new: the party_config is ABI %u; this libparty is %s "
                         "(ABI %d): build the program against this party.h",
                         cfg->abi, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
        return NULL;
    }
    rt = party__calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    rt->data_lock_fd = -1;
    party__store_configure();
    if (cfg == NULL) {
        party_config_init(&defaults);
        cfg = &defaults;
    } else if (cfg->abi == PARTY__ABI2) {
        /* Its fields, then ABI 3's: no /agents/ prefix it did not ask for, no
         * outbound HTTP (fetch_allow NULL; fetch_max_bytes and fetch_max_in_flight 0
         * are the defaults). */
        memset(&defaults, 0, sizeof(defaults));
        memcpy(&defaults, cfg, PARTY__CONFIG_ABI2_SIZE);
        defaults.abi = PARTY_ABI_VERSION;
        defaults.agents_prefix = NULL;
        cfg = &defaults;
    } else if (cfg->abi == PARTY__ABI3) {
        memset(&defaults, 0, sizeof(defaults));
        memcpy(&defaults, cfg, PARTY__CONFIG_ABI3_SIZE);
        defaults.abi = PARTY_ABI_VERSION;
        cfg = &defaults;
    }
    if (cfg == &defaults && defaults.limit_addr_table == 0) {
        /* An older ABI's struct: ABI 4's fields take the defaults (no PROXY
         * protocol, no trusted proxies, the generous limits). */
        party_config fresh;
        party_config_init(&fresh);
        memcpy((char *)&defaults + PARTY__CONFIG_ABI3_SIZE,
               (char *)&fresh + PARTY__CONFIG_ABI3_SIZE,
               sizeof(defaults) - PARTY__CONFIG_ABI3_SIZE);
    }
    rt->cfg = *cfg;
    rt->host = party__strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
    /* The prefix is kept without leading or trailing slashes. */
    {
        const char *p = cfg->prefix != NULL ? cfg->prefix : "parties";
        size_t len;
        while (*p == '/')
            p++;
        len = strlen(p);
        while (len > 0 && p[len - 1] == '/')
            len--;
        rt->prefix = party__strndup(p, len);
    }
    /* The second prefix, the Agents clients' (kept the same way; "": off). */
    agents = cfg->agents_prefix != NULL ? cfg->agents_prefix + strspn(cfg->agents_prefix, "/") : "";
    if (*agents != '\0') {
        size_t len = strlen(agents);
        while (len > 0 && agents[len - 1] == '/')
            len--;
        rt->agents_prefix = party__strndup(agents, len);
    }
    rt->data_dir = cfg->data_dir != NULL ? party__strdup(cfg->data_dir) : NULL;
    rt->ops_prefix = party__strdup(cfg->ops_prefix != NULL ? cfg->ops_prefix : "_partyd");
    rt->admin_token = cfg->admin_token != NULL ? party__strdup(cfg->admin_token) : NULL;
    rt->static_dir = cfg->static_dir != NULL ? party__strdup(cfg->static_dir) : NULL;
    rt->tls_cert = cfg->tls_cert != NULL ? party__strdup(cfg->tls_cert) : NULL;
    rt->tls_key = cfg->tls_key != NULL ? party__strdup(cfg->tls_key) : NULL;
    rt->fetch_allow = cfg->fetch_allow != NULL ? party__strdup(cfg->fetch_allow) : NULL;
    rt->allowed_origins = cfg->allowed_origins != NULL ? party__strdup(cfg->allowed_origins) : NULL;
    rt->fetch_ca_file = cfg->fetch_ca_file != NULL ? party__strdup(cfg->fetch_ca_file) : NULL;
    rt->trusted_proxies = cfg->trusted_proxies != NULL ? party__strdup(cfg->trusted_proxies) : NULL;
    rt->limit_exempt = cfg->limit_exempt != NULL ? party__strdup(cfg->limit_exempt) : NULL;
    if (rt->host == NULL || rt->prefix == NULL || (cfg->data_dir != NULL && rt->data_dir == NULL) ||
        rt->ops_prefix == NULL || (cfg->admin_token != NULL && rt->admin_token == NULL) ||
        (cfg->static_dir != NULL && rt->static_dir == NULL) ||
        (cfg->tls_cert != NULL && rt->tls_cert == NULL) ||
        (cfg->tls_key != NULL && rt->tls_key == NULL) ||
        (cfg->fetch_allow != NULL && rt->fetch_allow == NULL) ||
        (cfg->allowed_origins != NULL && rt->allowed_origins == NULL) ||
        (cfg->fetch_ca_file != NULL && rt->fetch_ca_file == NULL) ||
        (cfg->trusted_proxies != NULL && rt->trusted_proxies == NULL) ||
        (cfg->limit_exempt != NULL && rt->limit_exempt == NULL) ||
        (*agents != '\0' && rt->agents_prefix == NULL))
        goto fail;
    rt->cfg.host = rt->host;
    rt->cfg.prefix = rt->prefix;
    rt->cfg.data_dir = rt->data_dir;
    rt->cfg.ops_prefix = rt->ops_prefix;
    rt->cfg.admin_token = rt->admin_token;
    rt->cfg.static_dir = rt->static_dir;
    rt->cfg.tls_cert = rt->tls_cert;
    rt->cfg.tls_key = rt->tls_key;
    rt->cfg.fetch_allow = rt->fetch_allow;
    rt->cfg.allowed_origins = rt->allowed_origins;
    rt->cfg.fetch_ca_file = rt->fetch_ca_file;
    rt->cfg.trusted_proxies = rt->trusted_proxies;
    if (rt->trusted_proxies != NULL &&
        (r = party__cidr_list_parse(rt->trusted_proxies, &rt->trusted_proxies_list)) != 0) {
        /* Out of memory is not a bad list: say which it was. */
        if (r == PARTY_ENOMEM)
            party__log_write(PARTY__LOG_ERROR, 0, PARTY__LOG_ERROR,
                             "party_runtime_new: trusted_proxies: out of memory");
        else
            party__log_write(
                PARTY__LOG_ERROR, 0, PARTY__LOG_ERROR,
                "party_runtime_new: trusted_proxies '%s' is not a list of IP addresses "
                "and CIDRs",
                rt->trusted_proxies);
        goto fail;
    }
    rt->cfg.limit_exempt = rt->limit_exempt;
    if (rt->limit_exempt != NULL &&
        (r = party__cidr_list_parse(rt->limit_exempt, &rt->limit_exempt_list)) != 0) {
        /* Out of memory is not a bad list: say which it was. */
        if (r == PARTY_ENOMEM)
            party__log_write(PARTY__LOG_ERROR, 0, PARTY__LOG_ERROR,
                             "party_runtime_new: limit_exempt: out of memory");
        else
            party__log_write(PARTY__LOG_ERROR, 0, PARTY__LOG_ERROR,
                             "party_runtime_new: limit_exempt '%s' is not a list of IP addresses "
                             "and CIDRs",
                             rt->limit_exempt);
        goto fail;
    }
    rt->cfg.agents_prefix = rt->agents_prefix;
    rt->durability_full = cfg->durability != PARTY_DURABILITY_NORMAL;
    if (rt->cfg.max_headers > PARTY__HTTP_MAX_HEADERS)
        rt->cfg.max_headers = PARTY__HTTP_MAX_HEADERS;
    if (rt->cfg.max_conns == 0)
        rt->cfg.max_conns = party__default_max_conns();
    rt->own_handles = party__default_own_handles();
    if (rt->cfg.send_queue_bytes > UINT32_MAX)
        rt->cfg.send_queue_bytes = UINT32_MAX; /* connections count it in 32 bits */
    rt->addr_limits = party__addr_limits_new(rt->cfg.limit_addr_table);
    if (rt->addr_limits == NULL)
        goto fail;
    rt->n_loops = 1;
    if (runtime_init_loop(rt, &rt->main, 0) != 0) {
        if (rt->main.lp.loop.data == NULL)
            goto fail; /* no loop yet: nothing of it to close */
        party_runtime_free(rt);
        return NULL;
    }
    /* Signals are loop 0's to catch (party_runtime_run starts them). */
    uv_signal_init(&rt->main.lp.loop, &rt->sigint);
    uv_signal_init(&rt->main.lp.loop, &rt->sigterm);
    rt->sigint.data = rt->sigterm.data = rt;
    return rt;
fail:
    party__free(rt->host);
    party__free(rt->prefix);
    party__free(rt->agents_prefix);
    party__free(rt->data_dir);
    party__free(rt->ops_prefix);
    party__free(rt->admin_token);
    party__free(rt->static_dir);
    party__free(rt->tls_cert);
    party__free(rt->tls_key);
    party__free(rt->fetch_allow);
    party__free(rt->allowed_origins);
    party__free(rt->fetch_ca_file);
    party__free(rt->trusted_proxies);
    party__cidr_list_free(&rt->trusted_proxies_list);
    party__free(rt->limit_exempt);
    party__cidr_list_free(&rt->limit_exempt_list);
    party__addr_limits_free(rt->addr_limits);
    party__free(rt);
    return NULL;
}

static int party_name_valid(const char *name) {
    const char *p;
    if (name == NULL || name[0] == '\0' || strlen(name) > 64)
        return 0;
    for (p = name; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return 0;
    return 1;
}

int party_runtime_add(party_runtime *rt, const party_def *def) {
    party__party *grown;

    if (rt == NULL || def == NULL)
        return PARTY_EINVAL;
    if (!abi_readable(def->abi)) {
        /* Not even the name is read: in another layout it may be anything. */
        party__log_error(rt,
                         "party_runtime_add: a party_def of ABI %u; this libparty is %s (ABI %d): "
                         "build the party against this party.h",
                         def->abi, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
        return PARTY_EINVAL;
    }
    if (!party_name_valid(def->name))
        return PARTY_EINVAL;
    /* Once run has started, rooms and the other loops point into the table. */
    if (rt->main.running && rt->loops != NULL)
        return PARTY_ESTATE;
    if (party__party_find(rt->parties, rt->n_parties, def->name, strlen(def->name)) != NULL)
        return PARTY_EEXIST;
    grown = party__realloc(rt->parties, (rt->n_parties + 1) * sizeof(*grown));
    if (grown == NULL)
        return PARTY_ENOMEM;
    rt->parties = grown;
    runtime_share(&rt->main);
    rt->parties[rt->n_parties].own_def = NULL;
    if (def->abi == PARTY__ABI2 || def->abi == PARTY__ABI3) {
        /* Read as far as its ABI went; the rest zero (no synced state, the
         * runtime's limits). */
        party_def *copy = party__calloc(1, sizeof(*copy));
        if (copy == NULL)
            return PARTY_ENOMEM;
        memcpy(copy, def, def->abi == PARTY__ABI2 ? PARTY__DEF_ABI2_SIZE : PARTY__DEF_ABI3_SIZE);
        copy->abi = PARTY_ABI_VERSION;
        rt->parties[rt->n_parties].own_def = copy;
        def = copy;
    }
    rt->parties[rt->n_parties].def = def;
    /* Asked on every message: read once from the definition. */
    rt->parties[rt->n_parties].sync = party__sync_enabled(def);
    rt->parties[rt->n_parties].max_room_conns =
        def->max_room_conns != 0 ? def->max_room_conns : rt->cfg.max_room_conns;
    party__meter_init(&rt->parties[rt->n_parties].meter,
                      def->limit_conn_msgs != 0 ? def->limit_conn_msgs : rt->cfg.limit_conn_msgs,
                      def->limit_conn_bytes != 0 ? def->limit_conn_bytes
                                                 : rt->cfg.limit_conn_bytes);
    rt->parties[rt->n_parties].name = party__strdup(def->name);
    if (rt->parties[rt->n_parties].name == NULL) {
        party__free(rt->parties[rt->n_parties].own_def);
        return PARTY_ENOMEM;
    }
    rt->n_parties++;
    runtime_share(&rt->main);
    return 0;
}

size_t party__default_own_handles(void) {
    struct rlimit lim;
    size_t files;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    files = (size_t)lim.rlim_cur;
    /* A third of the files for own files' handles, three files each
     * (database, WAL, shared memory); shared rooms hold none. */
    return files / 9 > 16 ? files / 9 : 16;
}

size_t party__default_max_conns(void) {
    struct rlimit lim;
    size_t files, reserve;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    files = (size_t)lim.rlim_cur;
    /* The shared files (a writer and a few readers each), own-file rooms'
     * databases, the alarm index and the loop's own descriptors need files
     * too. */
    reserve = files / 10 > 64 ? files / 10 : 64;
    return files > reserve + 16 ? files - reserve : 16;
}

/* ---- the data directory ---- */

/* The pid written in a lock file, or 0 if it holds none (yet). */
static long lock_holder_pid(int fd) {
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    long pid;
    char *end;

    if (n <= 0)
        return 0;
    text[n] = '\0';
    pid = strtol(text, &end, 10);
    return end != text && pid > 0 ? pid : 0;
}

/* Takes <data_dir>/LOCK: 0 with rt->data_lock_fd set, or PARTY_EBUSY /
 * PARTY_EIO / PARTY_ENOMEM (logged) with nothing open. */
static int data_dir_lock(party_runtime *rt) {
    size_t len = strlen(rt->data_dir) + sizeof("/LOCK");
    char *path = party__malloc(len), pid_text[32];
    struct stat st;
    int fd, n, existed, err;
    long pid;

    if (path == NULL)
        return PARTY_ENOMEM;
    snprintf(path, len, "%s/LOCK", rt->data_dir);
    /* One level, as partyd always did: a missing parent is more likely a
     * typo than a wish. */
    if (mkdir(rt->data_dir, 0755) != 0 && errno != EEXIST) {
        party__log_error(rt, "data directory %s: cannot create it: %s", rt->data_dir,
                         strerror(errno));
        party__free(path);
        return PARTY_EIO;
    }
    err = stat(rt->data_dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    if (err != 0) {
        party__log_error(rt, "data directory %s: %s", rt->data_dir, strerror(err));
        party__free(path);
        return PARTY_EIO;
    }
    existed = stat(path, &st) == 0;
    /* Close-on-exec: a child the process starts must not hold the lock
     * after the runtime let it go. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        party__log_error(rt, "data directory %s: cannot %s LOCK: %s", rt->data_dir,
                         existed ? "open" : "create", strerror(errno));
        party__free(path);
        return PARTY_EIO;
    }
    /* flock, not fcntl locks: it belongs to this open file, so a second
     * runtime in this same process is refused too, and the descriptor can
     * be handed to another process with the lock still held. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        err = errno;
        pid = err == EWOULDBLOCK ? lock_holder_pid(fd) : 0;
        if (err != EWOULDBLOCK)
            party__log_error(rt, "data directory %s: cannot lock %s: %s", rt->data_dir, path,
                             strerror(err));
        else if (pid > 0)
            party__log_error(rt,
                             "data directory %s is in use by another runtime (pid %ld; lock "
                             "file %s)",
                             rt->data_dir, pid, path);
        else
            party__log_error(rt, "data directory %s is in use by another runtime (lock file %s)",
                             rt->data_dir, path);
        close(fd);
        party__free(path);
        return err == EWOULDBLOCK ? PARTY_EBUSY : PARTY_EIO;
    }
    /* The pid is for people (and the next partyd's message); the flock is
     * what counts. Overwritten in place, then cut: a reader never sees an
     * empty file where a stale pid was. */
    n = snprintf(pid_text, sizeof(pid_text), "%ld\n", (long)getpid());
    if (pwrite(fd, pid_text, (size_t)n, 0) != n || ftruncate(fd, n) != 0) {
        party__log_error(rt, "data directory %s: cannot write %s: %s", rt->data_dir, path,
                         strerror(errno));
        close(fd);
        party__free(path);
        return PARTY_EIO;
    }
    party__free(path);
    rt->data_lock_fd = fd;
    return 0;
}

/* A room the backend says this node must give up, for the loop that owns
 * it. */
typedef struct give_up_mail {
    party__mail mail;
    char id[PARTY_ID_MAX];
} give_up_mail;

static void give_up_mail_run(party__loop_ctx *lc, party__mail *mail) {
    give_up_mail *m = (give_up_mail *)mail;
    party__rooms_give_up(&lc->rooms, m->id);
    party__free(m);
}

static void give_up_mail_drop(party__mail *mail) {
    party__free(mail);
}

/* The backend's upward callback (storage.h, give_up; listed in
 * docs/architecture.md): on a thread of the backend's, so the room's loop
 * gets it by mail. Lost for want of memory: the asker asks again. */
static void backend_give_up_cb(void *arg, const char *room_id) {
    party_runtime *rt = arg;
    give_up_mail *m;
    if (strlen(room_id) >= PARTY_ID_MAX || (m = party__calloc(1, sizeof(*m))) == NULL)
        return;
    memcpy(m->id, room_id, strlen(room_id) + 1);
    m->mail.run = give_up_mail_run;
    m->mail.drop = give_up_mail_drop;
    party__mail_post(party__loop_of(&rt->main, room_id), &m->mail);
}

/* Opens the storage backend (with it the alarm index) once, on loop 0:
 * 0, or PARTY_EIO / PARTY_ENOMEM after logging why. */
static int backend_open(party_runtime *rt) {
    party__backend_config cfg;
    char why[1024];
    int r;

    if (rt->backend != NULL)
        return 0;
    cfg.data_dir = rt->data_dir;
    cfg.durability_full = rt->durability_full;
    cfg.store = rt->store;
    cfg.node = rt->node;
    cfg.own_handles = rt->own_handles;
    cfg.no_self_fence = rt->no_self_fence;
    cfg.give_up = backend_give_up_cb;
    cfg.give_up_arg = rt;
    cfg.handoff_hold_ms = rt->handoff_hold_ms;
    cfg.max_connections = rt->store_connections;
    cfg.addr = rt->cluster_addr;
    r = party__backend_open(&cfg, &rt->backend, why, sizeof(why));
    if (r != 0) {
        party__log_error(rt, "%s", why);
        return r == PARTY_ENOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    return 0;
}

int party__runtime_open_data(party_runtime *rt) {
    int r, locked_now = 0;

    if (rt->data_dir != NULL && rt->data_lock_fd < 0) {
        if ((r = data_dir_lock(rt)) != 0)
            return r;
        locked_now = 1;
    }
    r = backend_open(rt);
    if (r != 0 && locked_now) {
        close(rt->data_lock_fd);
        rt->data_lock_fd = -1;
    }
    return r;
}

/* A reading of the alarm index: each entry of a party served here goes to
 * fn with the loop that owns its room. */
typedef struct index_load {
    party_runtime *rt;
    party__index_file_fn fn;
    void *arg;
    size_t loaded, skipped;
} index_load;

static int file_index_entry(const char *id, const char *party, int64_t due_ms, void *arg) {
    index_load *load = arg;
    party_runtime *rt = load->rt;
    size_t i;
    int r;

    for (i = 0; i < rt->n_parties; i++)
        if (strcmp(rt->parties[i].name, party) == 0)
            break;
    if (i == rt->n_parties || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id)) {
        load->skipped++;
        return 0;
    }
    if ((r = load->fn(party__loop_of(&rt->main, id), id, (uint32_t)i, due_ms, load->arg)) != 0)
        return r;
    load->loaded++;
    return 0;
}

int party__runtime_read_alarm_index(party_runtime *rt, party__index_file_fn fn, void *arg) {
    index_load load;
    int r;

    memset(&load, 0, sizeof(load));
    load.rt = rt;
    load.fn = fn;
    load.arg = arg;
    r = rt->backend->ops->index_load(rt->backend, file_index_entry, &load);
    if (r != 0) {
        party__log_error(rt, "alarm index: cannot load it: %s",
                         r == PARTY_ENOMEM ? "out of memory" : "cannot read it");
        return r;
    }
    if (load.loaded > 0 || load.skipped > 0)
        party__log_info(rt, "alarm index: %zu rooms to wake%s", load.loaded,
                        load.skipped ? " (some belong to parties not registered; kept on disk)"
                                     : "");
    return 0;
}

/* At start-up, straight into the heap of the loop that owns the room (the
 * other loops do not run yet). Out of memory stops the load: an entry
 * left out would not wake its room until the next start. */
static int file_at_start(party__loop_ctx *lc, const char *id, uint32_t party, int64_t due_ms,
                         void *arg) {
    (void)arg;
    return party__rooms_file_wake(&lc->rooms, id, party, due_ms);
}

int party__runtime_start_rooms(party__loop_ctx *lc) {
    party_runtime *rt = lc->rt;
    int r;

    if (lc->rooms.alarms.started)
        return 0;
    if (lc == &rt->main && (r = backend_open(rt)) != 0)
        return r;
    if (lc == &rt->main && rt->cluster_addr == NULL && lc->lp.listen_fd >= 0) {
        /* Where other nodes send this one room-to-room requests: where it
         * listens, unless told (--cluster-addr). */
        char addr[INET6_ADDRSTRLEN + 16];
        party__listener_address(&lc->lp, addr, sizeof(addr));
        party__backend_set_addr(rt->backend, addr);
    }
    runtime_share(lc);
    if (party__rooms_start(&lc->rooms) != 0)
        return PARTY_EIO;
    if (lc != &rt->main)
        return 0;
    /* A room left out would not wake until the next start: fatal. */
    if ((r = party__runtime_read_alarm_index(rt, file_at_start, NULL)) != 0)
        return r;
    return party__orphans_start(rt);
}

int party__runtime_data_lock_fd(party_runtime *rt) {
    return rt->data_lock_fd;
}

/* ---- listening ---- */

/* The address to listen on: host as an IP address, or the first IPv4 or
 * IPv6 address a name resolves to (getaddrinfo: /etc/hosts, then DNS; it
 * blocks, once, at start-up). 0, or PARTY_EADDR after logging why. */
static int listen_address(party_runtime *rt, struct sockaddr_storage *out) {
    struct addrinfo hints, *res, *ai;
    char port[16];
    int r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", rt->cfg.port);
    r = getaddrinfo(rt->host, port, &hints, &res);
    if (r != 0) {
        party__log_error(rt, "listen: cannot resolve %s: %s", rt->host,
                         r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        return PARTY_EADDR;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next)
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof(*out))
            break;
    if (ai == NULL) {
        freeaddrinfo(res);
        party__log_error(rt, "listen: %s has no IPv4 or IPv6 address", rt->host);
        return PARTY_EADDR;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int party_runtime_listen(party_runtime *rt) {
    struct sockaddr_storage addr;
    char where[INET6_ADDRSTRLEN + 16];
    int r;

    if (rt->main.lp.listening)
        return 0;
    /* Before the port is bound: a client that can connect finds a runtime
     * that can keep what it sends. */
    if ((r = party__runtime_open_data(rt)) != 0)
        return r;
    if (rt->tls_ctx == NULL && (r = party__tls_init(&rt->main.lp)) != 0)
        return r;
    rt->tls_ctx = rt->main.lp.tls_ctx;
    rt->main.lp.accept_transport = party__tls_enabled(&rt->main.lp) ? &party__transport_tls : NULL;
    r = listen_address(rt, &addr);
    if (r != 0)
        return r;
    r = party__listener_open(&rt->main.lp, (const struct sockaddr *)&addr);
    if (r != 0) {
        struct in6_addr literal;
        int named = inet_pton(AF_INET, rt->host, &literal) != 1 &&
                    inet_pton(AF_INET6, rt->host, &literal) != 1;
        party__sockaddr_text((const struct sockaddr *)&addr, where, sizeof(where));
        party__log_error(rt, "listen on %s%s%s: %s", where, named ? ", the address of " : "",
                         named ? rt->host : "", uv_strerror(r));
        return PARTY_EADDR;
    }
    rt->main.lp.listening = 1;
    return 0;
}

int party__runtime_take_over(party_runtime *rt, int listen_fd, int lock_fd) {
    char pid_text[32];
    int n, r;

    if (rt->main.lp.listening || rt->data_lock_fd >= 0) {
        close(listen_fd);
        if (lock_fd >= 0)
            close(lock_fd);
        return PARTY_ESTATE;
    }
    if (lock_fd >= 0) {
        /* The flock belongs to the open file, which this process holds now
         * as well: the old process lets its descriptor go when it exits. */
        n = snprintf(pid_text, sizeof(pid_text), "%ld\n", (long)getpid());
        if (pwrite(lock_fd, pid_text, (size_t)n, 0) != n || ftruncate(lock_fd, n) != 0)
            party__log_warn(rt, "data directory %s: cannot write this pid into LOCK: %s",
                            rt->data_dir != NULL ? rt->data_dir : "-", strerror(errno));
        rt->data_lock_fd = lock_fd;
    }
    r = party__runtime_open_data(rt);
    if (r == 0 && rt->tls_ctx == NULL && (r = party__tls_init(&rt->main.lp)) == 0)
        rt->tls_ctx = rt->main.lp.tls_ctx;
    if (r != 0) {
        close(listen_fd);
        return r;
    }
    rt->main.lp.accept_transport = party__tls_enabled(&rt->main.lp) ? &party__transport_tls : NULL;
    r = party__listener_adopt(&rt->main.lp, listen_fd);
    if (r != 0) {
        party__log_error(rt, "upgrade: cannot listen on the socket handed over: %s",
                         uv_strerror(r));
        return PARTY_EADDR;
    }
    rt->main.lp.listening = 1;
    return 0;
}

int party_runtime_port(party_runtime *rt) {
    return party__listener_port(&rt->main.lp);
}

static void on_signal(uv_signal_t *sig, int signum) {
    party_runtime *rt = sig->data;
    if (party__upgrade_defer_stop(rt)) {
        party__log_info(rt, "received %s during an upgrade: stopping once it is over",
                        signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    party__log_info(rt, "received %s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    party_runtime_stop(rt);
}

static void close_handle(uv_handle_t *handle) {
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

/* Everything is closed: rooms leave memory and the loop's own handles close,
 * so uv_run returns. */
static void runtime_finish(party__loop_ctx *lc) {
    party_runtime *rt = lc->rt;

    party__inbox_close(lc);
    party__rooms_free_all(&lc->rooms);
    party__rooms_stop(&lc->rooms);
    if (lc == &rt->main) {
        /* Loop 0 finishes last: every loop's rooms are gone. */
        party__orphans_stop(rt);
        party__backend_close(rt->backend);
        rt->backend = lc->rooms.backend = NULL;
        if (rt->sigint.loop != NULL) {
            close_handle((uv_handle_t *)&rt->sigint);
            close_handle((uv_handle_t *)&rt->sigterm);
        }
        party__upgrade_close(rt);
    }
    party__conn_pools_free(&lc->lp);
    party__listener_close(&lc->lp);
    close_handle((uv_handle_t *)&lc->flush_check);
    close_handle((uv_handle_t *)&lc->flush_prepare);
    close_handle((uv_handle_t *)&lc->finish_idle);
    close_handle((uv_handle_t *)&lc->stop_async);
    close_handle((uv_handle_t *)&lc->shutdown_timer);
    close_handle((uv_handle_t *)&lc->evict_timer);
    close_handle((uv_handle_t *)&lc->lp.keepalive_timer);
}

/* Loop 0 finishes last: the storage backend and the TLS context the
 * runtime owns are in use until every other loop is done. */
static int runtime_can_finish(party__loop_ctx *lc) {
    return lc->lp.stopping && lc->lp.n_conns == 0 && !party__rooms_busy(&lc->rooms) &&
           lc->running && !lc->lp.finished && (lc != &lc->rt->main || lc->rt->loops_running == 0);
}

/* Called from deep inside callbacks (a connection freed while its room runs
 * a batch): the rooms are freed at the top of the next loop turn, never
 * under a caller that still uses them. */
void party__runtime_maybe_finish(party__loop_ctx *lc) {
    if (runtime_can_finish(lc))
        uv_idle_start(&lc->finish_idle, on_finish_idle);
}

static void on_shutdown_timeout(uv_timer_t *timer) {
    party__loop_ctx *lc = timer->data;
    party__log_warn(&lc->lp, "shutdown: %zu connections did not close in time; dropping them",
                    lc->lp.n_conns);
    party__conn_foreach(&lc->lp, party__conn_abort);
}

static void stop_one(party_conn *conn) {
    switch (conn->phase) {
    case PARTY__CONN_OPEN:
        /* A peer whose Close the room has not reached yet gets its own
         * code back when it does. */
        if (!conn->close_received)
            party__conn_start_close(conn, PARTY__WS_GOING_AWAY, "server shutting down");
        break;
    case PARTY__CONN_HTTP:
    case PARTY__CONN_UPGRADING:
        party__conn_abort(conn);
        break;
    default:
        break; /* an answer or a close is already on its way */
    }
}

void party__runtime_begin_stop(party__loop_ctx *lc) {
    double timeout = lc->rt->cfg.shutdown_timeout;

    if (lc->lp.stopping)
        return;
    lc->lp.stopping = 1;
    if (lc == &lc->rt->main)
        party__loops_stop(lc->rt);
    party__fetch_stop_all(&lc->rooms);
    party__outbound_stop_all(&lc->rooms);
    party__rpc_stop_all(&lc->rooms); /* open RPC calls get an error before the 1001 */
    party__listener_close(&lc->lp);
    party__conn_foreach(&lc->lp, stop_one);
    uv_timer_start(&lc->shutdown_timer, on_shutdown_timeout,
                   timeout > 0 ? (uint64_t)(timeout * 1000.0) : 0, 0);
    uv_unref((uv_handle_t *)&lc->shutdown_timer);
    party__runtime_maybe_finish(lc);
}

int party__runtime_begin(party_runtime *rt) {
    struct sigaction sa;
    int r = party__runtime_open_data(rt);
    if (r == 0)
        r = party__runtime_start_rooms(&rt->main);
    if (r != 0)
        return r;
    /* A peer that vanishes mid-write must give EPIPE, not kill the process. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    rt->main.loop_thread = uv_thread_self();
    rt->main.running = 1;
    return 0;
}

void party__runtime_advance(party_runtime *rt, uint64_t ms) {
    party__loop_ctx *lc = &rt->main;
    lc->lp.virtual_now += ms;
    party__rooms_fire_due(&lc->rooms);
    party__room_evict_idle(&lc->rooms, party__loop_now(&lc->lp));
}

/* How many loops: the configured count, or one per core. */
static unsigned loops_wanted(const party_runtime *rt) {
    unsigned n = rt->cfg.threads > 0 ? (unsigned)rt->cfg.threads : uv_available_parallelism();
    if (n < 1)
        n = 1;
    return n > PARTY_MAX_THREADS ? PARTY_MAX_THREADS : n;
}

int party_runtime_run(party_runtime *rt) {
    int r;

    if (rt->main.running)
        return PARTY_ESTATE;
    rt->n_loops = loops_wanted(rt);
    r = party_runtime_listen(rt);
    /* The other loops first: the alarm index loads each room's wake time
     * into the heap of the loop that owns the room. */
    if (r == 0 && rt->n_loops > 1)
        r = party__loops_create(rt);
    if (r == 0)
        r = party__runtime_start_rooms(&rt->main);
    if (r != 0) {
        party__loops_free(rt);
        return r;
    }
    uv_signal_start(&rt->sigint, on_signal, SIGINT);
    uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
    uv_ref((uv_handle_t *)&rt->main.stop_async);
    party__runtime_start_timers(&rt->main);
    (void)party__runtime_begin(rt); /* its one failure was checked above */
    /* Before any loop runs: connections an upgrade handed over join their
     * rooms' loops. */
    if (party__upgrade_serve(rt) != 0) {
        party_runtime_stop(rt);
        uv_run(&rt->main.lp.loop, UV_RUN_DEFAULT);
        party__loops_free(rt);
        rt->main.running = 0;
        return PARTY_EIO;
    }
    party__loops_run(rt);
    {
        char where[INET6_ADDRSTRLEN + 16];
        party__listener_address(&rt->main.lp, where, sizeof(where));
        party__log_info(rt, "listening on %s://%s (prefix /%s/, %u event loop%s)",
                        party__tls_enabled(&rt->main.lp) ? "https" : "http", where, rt->prefix,
                        rt->n_loops, rt->n_loops == 1 ? "" : "s");
    }
    uv_run(&rt->main.lp.loop, UV_RUN_DEFAULT);
    party__loops_free(rt);
    rt->main.running = 0;
    party__log_info(rt, "stopped");
    return 0;
}

void party_runtime_stop(party_runtime *rt) {
    uv_thread_t self = uv_thread_self();
    if (rt == NULL)
        return;
    if (rt->main.running && uv_thread_equal(&self, &rt->main.loop_thread))
        party__runtime_begin_stop(&rt->main);
    else
        uv_async_send(&rt->main.stop_async); /* lands on the loop, also before run */
}

/* Frees what a loop's context holds once its loop has stopped: only
 * closes still pending remain. */
static void loop_ctx_free(party__loop_ctx *lc) {
    if (lc->lp.loop.data == NULL)
        return; /* its loop never started */
    runtime_finish(lc);
    uv_run(&lc->lp.loop, UV_RUN_DEFAULT);
    uv_loop_close(&lc->lp.loop);
    party__slabs_free(lc->lp.conn_slabs);
    party__rooms_free(&lc->rooms);
    party__loop_free(&lc->lp);
    party__conn_slots_free(&lc->lp);
    party__inbox_free(lc);
}

void party_runtime_free(party_runtime *rt) {
    party__loop_ctx *lc;
    size_t i;

    if (rt == NULL)
        return;
    lc = &rt->main;
    party__fetch_stop_all(&lc->rooms);
    party__outbound_stop_all(&lc->rooms);
    party__conn_foreach(&lc->lp, party__conn_abort);
    /* Store work on worker threads finishes before the stores close. */
    while (party__rooms_busy(&lc->rooms) || lc->rooms.ready_head != NULL)
        uv_run(&lc->lp.loop, UV_RUN_ONCE);
    loop_ctx_free(lc);
    party__tls_cleanup(&lc->lp); /* the runtime's context with loop 0's buffer */
    for (i = 0; i < rt->n_parties; i++) {
        party__free(rt->parties[i].name);
        party__free(rt->parties[i].own_def);
    }
    party__free(rt->parties);
    party__free(rt->host);
    party__free(rt->prefix);
    party__free(rt->agents_prefix);
    party__free(rt->data_dir);
    party__free(rt->store);
    party__free(rt->node);
    party__free(rt->cluster_secret);
    party__free(rt->cluster_addr);
    party__free(rt->ops_prefix);
    party__free(rt->admin_token);
    party__free(rt->static_dir);
    party__free(rt->tls_cert);
    party__free(rt->tls_key);
    party__free(rt->allowed_origins);
    party__free(rt->fetch_allow);
    party__free(rt->fetch_ca_file);
    party__free(rt->trusted_proxies);
    party__cidr_list_free(&rt->trusted_proxies_list);
    party__addr_limits_free(rt->addr_limits);
    party__free(rt->limit_exempt);
    party__cidr_list_free(&rt->limit_exempt_list);
    party__upgrade_free(rt);
    /* Last: the data directory is this runtime's until everything in it
     * is closed. */
    if (rt->data_lock_fd >= 0)
        close(rt->data_lock_fd);
    party__free(rt);
}

void party__runtime_free_loop(party__loop_ctx *lc) {
    loop_ctx_free(lc);
    party__tls_cleanup_loop(&lc->lp);
    party__free(lc);
}

size_t party__runtime_conns(party_runtime *rt) {
    size_t n = 0;
    unsigned i;

    if (rt->n_loops <= 1 || rt->loops == NULL)
        return rt->main.lp.n_conns;
    for (i = 0; i < rt->n_loops; i++)
        n += __atomic_load_n(&rt->loops[i]->lp.n_conns, __ATOMIC_RELAXED);
    return n;
}
