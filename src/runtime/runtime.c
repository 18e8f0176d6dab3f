/* runtime: party_runtime's life — configuration, the registry of parties,
 * the data directory (its lock), the listening socket, the loop's
 * per-turn work (queued room events, then one flush of every connection
 * with output), signals and graceful shutdown. */
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

#include "conn.h"
#include "buf.h"
#include "digest.h"
#include "fetch.h"
#include "keepalive.h"
#include "listener.h"
#include "log.h"
#include "loops.h"
#include "room.h"
#include "router.h"
#include "slab.h"
#include "tls.h"
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
    cfg->fetch_timeout = 30.0;
    cfg->threads = 1;
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

static int runtime_can_finish(party_runtime *rt);
static void runtime_finish(party_runtime *rt);

static void on_drain_idle(uv_idle_t *idle) {
    party_runtime *rt = idle->data;
    party__room_drain_ready(rt);
    if (rt->ready_head == NULL)
        uv_idle_stop(idle);
    if (runtime_can_finish(rt)) {
        rt->finished = 1;
        runtime_finish(rt);
    }
}

void party__runtime_mark_ready(party_runtime *rt, party_room *room) {
    if (room->queued)
        return;
    room->queued = 1;
    room->ready_next = NULL;
    if (rt->ready_tail != NULL)
        rt->ready_tail->ready_next = room;
    else
        rt->ready_head = room;
    rt->ready_tail = room;
    uv_idle_start(&rt->drain_idle, on_drain_idle);
}

uint64_t party__runtime_now(party_runtime *rt) {
    return rt->virtual_clock ? rt->virtual_now : uv_now(&rt->loop);
}

int64_t party__runtime_epoch_ms(party_runtime *rt) {
    struct timeval tv;
    if (rt->virtual_clock)
        return (int64_t)rt->virtual_now;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* HTTP phases ended since the last trim that make a burst worth trimming
 * after: below it, what their requests freed is a few pages at most. */
#define HTTP_BURST 256

/* Eviction runs on a coarse tick: a room leaves memory between idle_timeout
 * and idle_timeout + one tick after its last work. */
static void on_evict_timer(uv_timer_t *timer) {
    party_runtime *rt = timer->data;
    int quiet = rt->http_ended == rt->http_ended_at_tick; /* no HTTP exchange ended this tick */
    if (!rt->virtual_clock)
        party__room_evict_idle(rt, party__runtime_now(rt));
    party__buf_pool_tick(rt->buf_pool);
    /* Blocks of connection and room structs that closed connections and
     * evicted rooms emptied go back, and the pages with them. */
    if (party__slabs_tick(rt->conn_slabs) + party__slabs_tick(rt->room_slabs) > 0)
        rt->trim_pending = 1;
    /* A burst of handshakes leaves the memory its requests used freed
     * between the new connections' structs; once a tick passes without
     * any, that burst is over. */
    if (quiet && rt->http_ended - rt->http_ended_at_trim >= HTTP_BURST)
        rt->trim_pending = 1;
    rt->http_ended_at_tick = rt->http_ended;
    if (rt->trim_pending) {
        /* Rooms left memory or a burst of handshakes ended since the last
         * tick: hand the pages freed between long-lived connection structs
         * back to the system, so that idle connections' cost shows in RSS
         * too. At most once a tick. */
        rt->trim_pending = 0;
        rt->http_ended_at_trim = rt->http_ended;
        party__buf_pool_trim(rt->buf_pool);
        /* The handshakes' pools too, once no handshake went on this tick. */
        if (quiet)
            party__conn_pools_trim(rt);
        malloc_trim(0);
    }
}

static uint64_t evict_tick_ms(const party_runtime *rt) {
    double shortest = rt->cfg.idle_timeout < rt->cfg.hibernate_after ? rt->cfg.idle_timeout
                                                                     : rt->cfg.hibernate_after;
    uint64_t ms = (uint64_t)(shortest * 1000.0 / 4);
    return ms < 100 ? 100 : ms > 5000 ? 5000 : ms;
}

/* ---- lifecycle ---- */

/* Frees what loop_buffers_new allocated (NULL members too). */
static void loop_buffers_free(party_runtime *rt) {
    party__free(rt->read_buf);
    party__buf_pool_free(rt->buf_pool);
    party__digest_free(rt->digest);
    rt->read_buf = NULL;
    rt->buf_pool = NULL;
    rt->digest = NULL;
}

/* What each loop has of its own for the hot path: the read buffer, the
 * pool of frame buffers, the digest state. 0, or PARTY_ENOMEM with none
 * of them left allocated. */
static int loop_buffers_new(party_runtime *rt) {
    rt->read_buf = party__malloc(PARTY__READ_BUF_SIZE);
    rt->buf_pool = party__buf_pool_new();
    rt->digest = party__digest_new();
    if (rt->read_buf != NULL && rt->buf_pool != NULL && rt->digest != NULL)
        return 0;
    loop_buffers_free(rt);
    return PARTY_ENOMEM;
}

static void on_stop_async(uv_async_t *async) {
    party_runtime *rt = async->data;
    party_runtime_stop(rt);
}

/* ---- what connections report (conn.h) ---- */

static int conn_message_cb(party_room *room, party_conn *conn, party__slice data, int binary) {
    party__event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_MESSAGE;
    ev.conn = conn;
    ev.data = data;
    ev.binary = binary;
    return party__room_post(room, &ev);
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

/* The transport layer hears from routing and rooms only through this
 * table (docs/architecture.md, "Upward callbacks"). */
static const party__conn_upcalls conn_upcalls = {
    .request = party__router_handle,
    .message = conn_message_cb,
    .close = conn_close_cb,
    .error = conn_error_cb,
};

/* The loop and its handles, the read buffer and the mailbox: what every
 * loop's runtime has of its own. */
static int runtime_init_loop(party_runtime *rt) {
    rt->loop.data = rt;
    rt->conn_upcalls = &conn_upcalls;
    rt->listen_fd = rt->spare_fd = -1;
    uv_check_init(&rt->loop, &rt->flush_check);
    rt->flush_check.data = rt;
    uv_check_start(&rt->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&rt->flush_check);
    uv_prepare_init(&rt->loop, &rt->flush_prepare);
    rt->flush_prepare.data = rt;
    uv_prepare_start(&rt->flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&rt->flush_prepare);
    uv_idle_init(&rt->loop, &rt->drain_idle);
    rt->drain_idle.data = rt;
    uv_async_init(&rt->loop, &rt->stop_async, on_stop_async);
    rt->stop_async.data = rt;
    uv_unref((uv_handle_t *)&rt->stop_async);
    /* Signals are loop 0's to catch (party_runtime_run starts them); the
     * other loops have no handles for them. */
    if (rt->main == rt) {
        uv_signal_init(&rt->loop, &rt->sigint);
        uv_signal_init(&rt->loop, &rt->sigterm);
        rt->sigint.data = rt->sigterm.data = rt;
    }
    uv_timer_init(&rt->loop, &rt->shutdown_timer);
    rt->shutdown_timer.data = rt;
    uv_timer_init(&rt->loop, &rt->evict_timer);
    rt->evict_timer.data = rt;
    uv_timer_init(&rt->loop, &rt->keepalive_timer);
    rt->keepalive_timer.data = rt;
    return party__inbox_init(rt);
}

party_runtime *party__runtime_new_loop(party_runtime *main, unsigned index) {
    party_runtime *rt = party__calloc(1, sizeof(*rt));

    if (rt == NULL)
        return NULL;
    /* The configuration, its strings and the parties are main's, shared
     * read-only; everything the loop changes is its own. */
    rt->cfg = main->cfg;
    rt->host = main->host;
    rt->prefix = main->prefix;
    rt->data_dir = main->data_dir;
    rt->ops_prefix = main->ops_prefix;
    rt->admin_token = main->admin_token;
    rt->static_dir = main->static_dir;
    rt->tls_cert = main->tls_cert;
    rt->tls_key = main->tls_key;
    rt->durability_full = main->durability_full;
    rt->parties = main->parties;
    rt->n_parties = main->n_parties;
    rt->tls_ctx = main->tls_ctx;
    rt->commit_delay_ms = main->commit_delay_ms;
    rt->main = main;
    rt->n_loops = 1;
    rt->loop_index = index;
    rt->data_lock_fd = -1; /* main's is the one */
    if (loop_buffers_new(rt) != 0 || (rt->tls_ctx != NULL && party__tls_init_loop(rt) != 0) ||
        uv_loop_init(&rt->loop) != 0) {
        loop_buffers_free(rt);
        party__tls_cleanup_loop(rt);
        party__free(rt);
        return NULL;
    }
    if (runtime_init_loop(rt) != 0) {
        party__runtime_free_loop(rt);
        return NULL;
    }
    return rt;
}

void party__runtime_start_timers(party_runtime *rt) {
    uv_timer_start(&rt->evict_timer, on_evict_timer, evict_tick_ms(rt), evict_tick_ms(rt));
    uv_unref((uv_handle_t *)&rt->evict_timer);
    party__keepalive_start(rt);
}

/* Whether a struct of this abi can be read: 0 means "compiled with this
 * header" (the struct was not set up by party_config_init or
 * PARTY_DEF_INIT). Any other value, 1 included (party.h 0.1 had no abi
 * field, so a 1 there is another field's bytes), is refused until an ABI
 * this runtime can read in part exists. */
static int abi_readable(unsigned abi) {
    return abi == 0 || abi == PARTY_ABI_VERSION;
}

party_runtime *party_runtime_new(const party_config *cfg) {
    party_runtime *rt;
    party_config defaults;

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
    (void)loop_buffers_new(rt); /* checked with the rest below */
    rt->data_dir = cfg->data_dir != NULL ? party__strdup(cfg->data_dir) : NULL;
    rt->ops_prefix = party__strdup(cfg->ops_prefix != NULL ? cfg->ops_prefix : "_partyd");
    rt->admin_token = cfg->admin_token != NULL ? party__strdup(cfg->admin_token) : NULL;
    rt->static_dir = cfg->static_dir != NULL ? party__strdup(cfg->static_dir) : NULL;
    rt->tls_cert = cfg->tls_cert != NULL ? party__strdup(cfg->tls_cert) : NULL;
    rt->tls_key = cfg->tls_key != NULL ? party__strdup(cfg->tls_key) : NULL;
    if (rt->host == NULL || rt->prefix == NULL || rt->read_buf == NULL ||
        (cfg->data_dir != NULL && rt->data_dir == NULL) || rt->ops_prefix == NULL ||
        (cfg->admin_token != NULL && rt->admin_token == NULL) ||
        (cfg->static_dir != NULL && rt->static_dir == NULL) ||
        (cfg->tls_cert != NULL && rt->tls_cert == NULL) ||
        (cfg->tls_key != NULL && rt->tls_key == NULL) || uv_loop_init(&rt->loop) != 0) {
        party__free(rt->host);
        party__free(rt->prefix);
        party__free(rt->data_dir);
        party__free(rt->ops_prefix);
        party__free(rt->admin_token);
        party__free(rt->static_dir);
        party__free(rt->tls_cert);
        party__free(rt->tls_key);
        loop_buffers_free(rt);
        party__free(rt);
        return NULL;
    }
    rt->cfg.host = rt->host;
    rt->cfg.prefix = rt->prefix;
    rt->cfg.data_dir = rt->data_dir;
    rt->cfg.ops_prefix = rt->ops_prefix;
    rt->cfg.admin_token = rt->admin_token;
    rt->cfg.static_dir = rt->static_dir;
    rt->cfg.tls_cert = rt->tls_cert;
    rt->cfg.tls_key = rt->tls_key;
    rt->durability_full = cfg->durability != PARTY_DURABILITY_NORMAL;
    if (rt->cfg.max_headers > PARTY__HTTP_MAX_HEADERS)
        rt->cfg.max_headers = PARTY__HTTP_MAX_HEADERS;
    if (rt->cfg.max_conns == 0)
        rt->cfg.max_conns = party__default_max_conns();
    rt->max_loaded_rooms = party__default_max_loaded_rooms();
    if (rt->cfg.send_queue_bytes > UINT32_MAX)
        rt->cfg.send_queue_bytes = UINT32_MAX; /* connections count it in 32 bits */
    rt->main = rt;
    rt->n_loops = 1;
    if (runtime_init_loop(rt) != 0) {
        party_runtime_free(rt);
        return NULL;
    }
    return rt;
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
    if (rt->running && rt->loops != NULL)
        return PARTY_ESTATE;
    if (party__runtime_find_party(rt, def->name, strlen(def->name)) != NULL)
        return PARTY_EEXIST;
    grown = party__realloc(rt->parties, (rt->n_parties + 1) * sizeof(*grown));
    if (grown == NULL)
        return PARTY_ENOMEM;
    rt->parties = grown;
    rt->parties[rt->n_parties].def = def;
    rt->parties[rt->n_parties].name = party__strdup(def->name);
    if (rt->parties[rt->n_parties].name == NULL)
        return PARTY_ENOMEM;
    rt->n_parties++;
    return 0;
}

const party__party *party__runtime_find_party(party_runtime *rt, const char *name, size_t len) {
    size_t i;
    for (i = 0; i < rt->n_parties; i++)
        if (strlen(rt->parties[i].name) == len && strncasecmp(rt->parties[i].name, name, len) == 0)
            return &rt->parties[i];
    return NULL;
}

const double party__commit_bucket_ms[PARTY__COMMIT_BUCKETS] = {0.25, 0.5, 1,   2,   5,    10,
                                                               25,   50,  100, 250, 1000, 1e300};

void party__runtime_record_commit(party_runtime *rt, uint64_t us) {
    int i = 0;
    while (i < PARTY__COMMIT_BUCKETS - 1 && (double)us / 1000.0 > party__commit_bucket_ms[i])
        i++;
    rt->commit_hist[i]++;
    rt->commits++;
    rt->commit_us_total += us;
}

size_t party__default_max_loaded_rooms(void) {
    struct rlimit lim;
    size_t files;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    files = (size_t)lim.rlim_cur;
    /* A third of the files for rooms, three files each. */
    return files / 9 > 16 ? files / 9 : 16;
}

size_t party__default_max_conns(void) {
    struct rlimit lim;
    size_t files, reserve;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    files = (size_t)lim.rlim_cur;
    /* Room databases (up to three files each while loaded), the alarm index
     * and the loop's own descriptors need files too. */
    reserve = files / 10 > 64 ? files / 10 : 64;
    return files > reserve + 16 ? files - reserve : 16;
}

int party__runtime_warning_due(party_runtime *rt, uint64_t *last) {
    uint64_t now = uv_now(&rt->loop);
    if (*last != 0 && now - *last < 1000)
        return 0;
    *last = now;
    return 1;
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
    r = party__backend_open(&cfg, &rt->backend, why, sizeof(why));
    if (r != 0) {
        party__log_error(rt, "%s", why);
        return r == PARTY_ENOMEM ? PARTY_ENOMEM : PARTY_EIO;
    }
    return 0;
}

int party__runtime_open_data(party_runtime *rt) {
    int r, locked_now = 0;

    rt = rt->main;
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

int party__runtime_data_lock_fd(party_runtime *rt) {
    return rt->main->data_lock_fd;
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

    if (rt->listening)
        return 0;
    /* Before the port is bound: a client that can connect finds a runtime
     * that can keep what it sends. */
    if ((r = party__runtime_open_data(rt)) != 0)
        return r;
    if (rt->tls_ctx == NULL && (r = party__tls_init(rt)) != 0)
        return r;
    rt->accept_transport = party__tls_enabled(rt) ? &party__transport_tls : NULL;
    r = listen_address(rt, &addr);
    if (r != 0)
        return r;
    r = party__listener_open(rt, (const struct sockaddr *)&addr);
    if (r != 0) {
        struct in6_addr literal;
        int named = inet_pton(AF_INET, rt->host, &literal) != 1 &&
                    inet_pton(AF_INET6, rt->host, &literal) != 1;
        party__sockaddr_text((const struct sockaddr *)&addr, where, sizeof(where));
        party__log_error(rt, "listen on %s%s%s: %s", where, named ? ", the address of " : "",
                         named ? rt->host : "", uv_strerror(r));
        return PARTY_EADDR;
    }
    rt->listening = 1;
    return 0;
}

int party_runtime_port(party_runtime *rt) {
    return party__listener_port(rt);
}

static void on_signal(uv_signal_t *sig, int signum) {
    party_runtime *rt = sig->data;
    party__log_info(rt, "received %s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    party_runtime_stop(rt);
}

static void close_handle(uv_handle_t *handle) {
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

/* Everything is closed: rooms leave memory and the loop's own handles close,
 * so uv_run returns. */
static void runtime_finish(party_runtime *rt) {
    party__inbox_close(rt);
    party__rooms_free_all(rt);
    party__rooms_stop(rt);
    party__conn_pools_free(rt);
    party__listener_close(rt);
    close_handle((uv_handle_t *)&rt->flush_check);
    close_handle((uv_handle_t *)&rt->flush_prepare);
    close_handle((uv_handle_t *)&rt->drain_idle);
    close_handle((uv_handle_t *)&rt->stop_async);
    if (rt->main == rt) {
        close_handle((uv_handle_t *)&rt->sigint);
        close_handle((uv_handle_t *)&rt->sigterm);
    }
    close_handle((uv_handle_t *)&rt->shutdown_timer);
    close_handle((uv_handle_t *)&rt->evict_timer);
    close_handle((uv_handle_t *)&rt->keepalive_timer);
}

/* Loop 0 finishes last: the storage backend and the TLS context it owns are
 * in use until every other loop is done. */
static int runtime_can_finish(party_runtime *rt) {
    return rt->stopping && rt->n_conns == 0 && !party__rooms_busy(rt) && rt->running &&
           !rt->finished && rt->loops_running == 0;
}

/* Called from deep inside callbacks (a connection freed while its room runs
 * a batch): the rooms are freed at the top of the next loop turn, never
 * under a caller that still uses them. */
void party__runtime_maybe_finish(party_runtime *rt) {
    if (runtime_can_finish(rt))
        uv_idle_start(&rt->drain_idle, on_drain_idle);
}

static void on_shutdown_timeout(uv_timer_t *timer) {
    party_runtime *rt = timer->data;
    party__log_warn(rt, "shutdown: %zu connections did not close in time; dropping them",
                    rt->n_conns);
    party__conn_foreach(rt, party__conn_abort);
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

void party__runtime_begin_stop(party_runtime *rt) {
    if (rt->stopping)
        return;
    rt->stopping = 1;
    if (rt == rt->main)
        party__loops_stop(rt);
    party__fetch_stop_all(rt);
    party__listener_close(rt);
    party__conn_foreach(rt, stop_one);
    uv_timer_start(&rt->shutdown_timer, on_shutdown_timeout,
                   rt->cfg.shutdown_timeout > 0 ? (uint64_t)(rt->cfg.shutdown_timeout * 1000.0) : 0,
                   0);
    uv_unref((uv_handle_t *)&rt->shutdown_timer);
    party__runtime_maybe_finish(rt);
}

int party__runtime_begin(party_runtime *rt) {
    struct sigaction sa;
    int r = party__runtime_open_data(rt);
    if (r == 0)
        r = party__rooms_start(rt);
    if (r != 0)
        return r;
    /* A peer that vanishes mid-write must give EPIPE, not kill the process. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    rt->loop_thread = uv_thread_self();
    rt->running = 1;
    return 0;
}

void party__runtime_advance(party_runtime *rt, uint64_t ms) {
    rt->virtual_now += ms;
    party__rooms_fire_due(rt);
    party__room_evict_idle(rt, party__runtime_now(rt));
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

    if (rt->running)
        return PARTY_ESTATE;
    rt->n_loops = loops_wanted(rt);
    r = party_runtime_listen(rt);
    /* The other loops first: the alarm index loads each room's wake time
     * into the heap of the loop that owns the room. */
    if (r == 0 && rt->n_loops > 1)
        r = party__loops_create(rt);
    if (r == 0)
        r = party__rooms_start(rt);
    if (r != 0) {
        party__loops_free(rt);
        return r;
    }
    uv_signal_start(&rt->sigint, on_signal, SIGINT);
    uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
    uv_ref((uv_handle_t *)&rt->stop_async);
    party__runtime_start_timers(rt);
    (void)party__runtime_begin(rt); /* its one failure was checked above */
    party__loops_run(rt);
    {
        char where[INET6_ADDRSTRLEN + 16];
        party__listener_address(rt, where, sizeof(where));
        party__log_info(rt, "listening on %s://%s (prefix /%s/, %u event loop%s)",
                        party__tls_enabled(rt) ? "https" : "http", where, rt->prefix, rt->n_loops,
                        rt->n_loops == 1 ? "" : "s");
    }
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    party__loops_free(rt);
    rt->running = 0;
    party__log_info(rt, "stopped");
    return 0;
}

void party_runtime_stop(party_runtime *rt) {
    uv_thread_t self = uv_thread_self();
    if (rt == NULL)
        return;
    if (rt->running && uv_thread_equal(&self, &rt->loop_thread))
        party__runtime_begin_stop(rt);
    else
        uv_async_send(&rt->stop_async); /* lands on the loop, also before run */
}

void party_runtime_free(party_runtime *rt) {
    size_t i;

    if (rt == NULL)
        return;
    party__fetch_stop_all(rt);
    party__conn_foreach(rt, party__conn_abort);
    /* Store work on worker threads finishes before the stores close. */
    while (party__rooms_busy(rt) || rt->ready_head != NULL)
        uv_run(&rt->loop, UV_RUN_ONCE);
    runtime_finish(rt);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
    party__slabs_free(rt->conn_slabs);
    party__slabs_free(rt->room_slabs);
    for (i = 0; i < rt->n_parties; i++)
        party__free(rt->parties[i].name);
    party__free(rt->parties);
    party__free(rt->rooms);
    loop_buffers_free(rt);
    party__free(rt->host);
    party__free(rt->prefix);
    party__free(rt->data_dir);
    party__free(rt->store);
    party__free(rt->node);
    party__free(rt->ops_prefix);
    party__free(rt->admin_token);
    party__free(rt->static_dir);
    party__tls_cleanup(rt);
    party__conn_slots_free(rt);
    party__free(rt->tls_cert);
    party__free(rt->tls_key);
    party__inbox_free(rt);
    /* Last: the data directory is this runtime's until everything in it
     * is closed. */
    if (rt->data_lock_fd >= 0)
        close(rt->data_lock_fd);
    party__free(rt);
}

void party__runtime_free_loop(party_runtime *rt) {
    /* Its thread has ended its loop: only closes still pending remain. */
    runtime_finish(rt);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
    party__slabs_free(rt->conn_slabs);
    party__slabs_free(rt->room_slabs);
    party__free(rt->rooms);
    loop_buffers_free(rt);
    party__tls_cleanup_loop(rt);
    party__conn_slots_free(rt);
    party__inbox_free(rt);
    party__free(rt);
}

size_t party__runtime_conns(party_runtime *rt) {
    party_runtime *main = rt->main;
    size_t n = 0;
    unsigned i;

    if (main->n_loops <= 1 || main->loops == NULL)
        return rt->n_conns;
    for (i = 0; i < main->n_loops; i++)
        n += __atomic_load_n(&main->loops[i]->n_conns, __ATOMIC_RELAXED);
    return n;
}
