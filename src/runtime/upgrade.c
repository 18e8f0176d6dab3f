/* upgrade: both sides of a hand-over to a new process (upgrade.h). The old
 * side is a state machine on loop 0: a child started on SIGUSR2, its
 * "ready", a freeze of every loop (each on its own thread, by mail: no
 * socket read, rooms hibernated, connections exported as records, nothing
 * written), the transfer, then "adopted" (the loops forget what moved and
 * the process stops) or a failure (the loops thaw and go on serving; once
 * the transfer was sent, only after the new process is gone and what it
 * may have written, rooms and alarms, was read again). The new side
 * receives everything before its loops run and adopts the connections
 * through the same entry point the listener uses.
 * The loops drain and export in rounds: a loop exports only once every
 * loop was quiet and none was handed a connection since, as a request
 * answered on one loop may hand the pipelined next to another. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "conn_record.h"
#include "listener.h"
#include "log.h"
#include "loops.h"
#include "room.h"
#include "rpc.h"
#include "fetch.h"
#include "outbound.h"
#include "runtime.h"
#include "storage.h"
#include "alloc.h"

extern char **environ;

/* Messages over the unix socket (SOCK_SEQPACKET: one message each), by
 * their first byte:
 *   R  new -> old: parties loaded; u16 the record version it reads
 *   H  old -> new: u16 record version, u8 lock sent, u32 upgrades so far,
 *      u32 TLS connections upgrades closed so far; descriptors: the
 *      listener[, the data directory's lock]
 *   C  old -> new: records, one stream over all C messages; descriptors:
 *      one per record, with the message its record starts in
 *   E  old -> new: that was all
 *   A  new -> old: u32 connections adopted
 *   X  new -> old: refused, and why (text) */
#define MSG_READY 'R'
#define MSG_HEAD 'H'
#define MSG_RECORDS 'C'
#define MSG_END 'E'
#define MSG_ADOPTED 'A'
#define MSG_REFUSED 'X'

/* What one message may carry: the kernel caps descriptors at 253 a
 * message, and a datagram must fit the socket's send buffer. */
#define FDS_PER_MSG 200
#define BYTES_PER_MSG (96 * 1024)

#define READY_TIMEOUT_MS 60000   /* the new binary loads its parties */
#define FREEZE_TIMEOUT_MS 10000  /* requests in flight end, rooms commit */
#define ADOPTED_TIMEOUT_MS 30000 /* the new process adopts everything */
#define FREEZE_TICK_MS 1

enum { IDLE, STARTING, FREEZING, SENT, DONE };

/* One loop's share of a hand-over (used on that loop's thread, then read
 * by loop 0 once the loop reported). */
typedef struct upgrade_loop {
    party__upgrade *up;
    party__loop_ctx *lc;
    uv_timer_t tick;
    int tick_open;
    uint64_t deadline;
    uint64_t handoffs_at_quiet; /* the loop's handoffs_in when it was last quiet */
    int unsettled;              /* it was handed a connection after it was quiet */
    party_conn **conns;         /* exported, one reference each */
    size_t n_conns, cap_conns;
    char *records; /* their records back to back, in the same order */
    size_t len, cap;
    unsigned moved_ws, moved_http, tls_closed;
    unsigned with_output, with_input; /* records carrying unsent output, unread input */
    int failed;
    /* A failed upgrade's reading of the alarm index: this loop's rooms,
     * filed in its heap when it thaws. */
    struct upgrade_wake *wakes;
    size_t n_wakes, cap_wakes;
} upgrade_loop;

typedef struct upgrade_wake {
    char id[PARTY_ID_MAX];
    uint32_t party;
    int64_t due_ms;
} upgrade_wake;

/* Work for a loop, or a loop's report to loop 0. */
typedef struct upgrade_mail {
    party__mail mail;
    upgrade_loop *ul;
} upgrade_mail;

struct party__upgrade {
    party_runtime *rt;
    char *exe;
    char **argv;
    uv_signal_t sigusr2;
    int state;
    uv_process_t child;
    int child_open, child_exited;
    int sock; /* old side: ours of the pair; -1: none */
    uv_poll_t sock_poll;
    int sock_poll_open;
    uv_timer_t timer;
    uint64_t started_ns, frozen_ns;
    upgrade_loop *loops;
    unsigned n_loops, pending;
    int failing; /* failed while frozen: the loops thaw */
    /* Failed after everything was sent: the new process may have opened
     * the data directory and written rooms this one never loaded. The
     * loops thaw once it is gone (reap_wait: its exit is awaited) and
     * the backend has read the directory again (rescan). */
    int reap_wait, rescan;
    int stop_pending; /* SIGTERM/SIGINT came during the upgrade: stop once it is over */
    int closed;
    /* new side: what the old process handed over */
    int in_sock;
    char *in_records;
    size_t in_len, in_cap;
    int *in_fds;
    size_t n_in_fds, cap_in_fds;
    size_t adopted;        /* new side: what "adopted" says */
    uv_timer_t hold_timer; /* new side: test hook hold-adopted */
    int hold_open;
    /* counters (loop 0) */
    uint64_t upgrades; /* that led to this process, from process to process */
    uint64_t failures, tls_closed;
};

/* ---- systemd ---- */

int party__sd_notify(const char *text) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    socklen_t len;
    size_t n;
    int fd, r = 0;

    if (path == NULL || path[0] == '\0')
        return 0;
    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(addr.sun_path))
        return -EINVAL;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, n);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* an abstract name */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&addr, len) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* ---- messages ---- */

static void put_u16(char *p, unsigned v) {
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static unsigned get_u16(const char *p) {
    return ((unsigned)(uint8_t)p[0] << 8) | (uint8_t)p[1];
}

static void put_u32(char *p, uint32_t v) {
    put_u16(p, v >> 16);
    put_u16(p + 2, v & 0xffff);
}

static uint32_t get_u32(const char *p) {
    return ((uint32_t)get_u16(p) << 16) | get_u16(p + 2);
}

/* Sends one message with n descriptors (blocking socket). 0 or -errno. */
static int send_msg(int sock, const void *data, size_t len, const int *fds, size_t n) {
    struct msghdr msg;
    struct iovec iov;
    char control[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
    ssize_t r;

    memset(&msg, 0, sizeof(msg));
    memset(control, 0, sizeof(control));
    iov.iov_base = (void *)data;
    iov.iov_len = len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        struct cmsghdr *c;
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    do
        r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

/* Receives one message into buf (cap bytes) and up to FDS_PER_MSG
 * descriptors (close-on-exec) into fds. The length (0: the peer is
 * gone), or -errno. A message cut short is -EMSGSIZE (its descriptors
 * closed). */
static ssize_t recv_msg(int sock, char *buf, size_t cap, int *fds, size_t *n_fds, int flags) {
    struct msghdr msg;
    struct iovec iov;
    char control[CMSG_SPACE(sizeof(int) * FDS_PER_MSG)];
    struct cmsghdr *c;
    ssize_t r;

    *n_fds = 0;
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = buf;
    iov.iov_len = cap;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    do
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *n_fds, CMSG_DATA(c), n * sizeof(int));
            *n_fds += n;
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        size_t i;
        for (i = 0; i < *n_fds; i++)
            close(fds[i]);
        *n_fds = 0;
        return -EMSGSIZE;
    }
    return r;
}

/* Test hooks: with PARTYD_TEST_HOOKS naming a directory, the file <name>
 * in it, when present, holds a hook's value (read when needed, so a test
 * arms and disarms a hook of a running process). Into buf; NULL when
 * unset. */
static const char *test_hook(const char *name, char *buf, size_t size) {
    const char *dir = getenv("PARTYD_TEST_HOOKS");
    char path[1024];
    ssize_t n;
    int fd;

    if (dir == NULL || dir[0] == '\0')
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

/* The record version this process writes: the build's, or the test
 * hook record-version's, to see a new binary refuse one it does not
 * know. */
static unsigned record_version_sent(void) {
    char buf[32];
    const char *v = test_hook("record-version", buf, sizeof(buf));
    long n = v != NULL ? strtol(v, NULL, 10) : 0;
    return n > 0 && n < 65536 ? (unsigned)n : PARTY__CONN_RECORD_VERSION;
}

/* ==== the old side ==== */

static void upgrade_fail(party__upgrade *up, const char *why);

static double ms_since(uint64_t ns) {
    return (double)(uv_hrtime() - ns) / 1e6;
}

/* ---- on each loop's thread ---- */

static void mail_free(party__mail *mail) {
    party__free(mail);
}

static void post(party__loop_ctx *lc, upgrade_loop *ul,
                 void (*run)(party__loop_ctx *, party__mail *)) {
    upgrade_mail *m = party__calloc(1, sizeof(*m));
    if (m == NULL) {
        /* A mail of a few bytes: without it the hand-over cannot go on, nor
         * back. The loop would stay frozen; better to say so loudly. */
        party__log_error(lc->rt, "upgrade: out of memory passing work between loops");
        return;
    }
    m->mail.run = run;
    m->mail.drop = mail_free;
    m->ul = ul;
    party__mail_post(lc, &m->mail);
}

static void loop_drained(party__loop_ctx *lc, party__mail *mail);
static void loop_reported(party__loop_ctx *lc, party__mail *mail);

/* Tells loop 0 this loop is exported (or failed to be, or was not yet
 * settled). */
static void loop_report(upgrade_loop *ul) {
    post(&ul->up->rt->main, ul, loop_reported);
}

static int append_conn(upgrade_loop *ul, party_conn *conn) {
    if (ul->n_conns == ul->cap_conns) {
        size_t cap = ul->cap_conns ? ul->cap_conns * 2 : 64;
        party_conn **grown = party__realloc(ul->conns, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        ul->conns = grown;
        ul->cap_conns = cap;
    }
    ul->conns[ul->n_conns++] = conn;
    party__conn_ref(conn);
    return 0;
}

static int append_record(upgrade_loop *ul, const party__conn_record *rec, size_t size) {
    if (ul->len + size > ul->cap) {
        size_t cap = ul->cap ? ul->cap * 2 : 64 * 1024;
        char *grown;
        while (cap < ul->len + size)
            cap *= 2;
        grown = party__realloc(ul->records, cap);
        if (grown == NULL)
            return PARTY_ENOMEM;
        ul->records = grown;
        ul->cap = cap;
    }
    if (party__conn_record_encode(rec, ul->records + ul->len, size) != size)
        return PARTY_EINVAL;
    ul->len += size;
    return 0;
}

/* Frozen: a TLS connection cannot move (its session stays here), so it is
 * closed now with 1012 and its client reconnects. */
static void freeze_one(party_conn *conn, void *arg) {
    upgrade_loop *ul = arg;
    party__conn_freeze(conn);
    if (party__conn_handover_kind(conn) != -1)
        return;
    ul->tls_closed++;
    if (party__conn_is_open(conn))
        party__conn_start_close(conn, PARTY__WS_SERVICE_RESTART, "server restarting");
    else
        party__conn_abort(conn);
}

static void count_busy(party_conn *conn, void *arg) {
    if (!party__conn_quiet(conn))
        (*(size_t *)arg)++;
}

static void export_one(party_conn *conn, void *arg) {
    upgrade_loop *ul = arg;
    party__conn_record rec;
    char *owned = NULL;
    party_room *room = party__conn_room(conn);
    size_t size;
    int kind;

    if (ul->failed)
        return;
    kind = party__conn_export(conn, &rec, &owned);
    if (kind == PARTY_ENOMEM) {
        ul->failed = 1;
        return;
    }
    if (kind <= 0)
        return; /* stays: it ends here (closing, internal, TLS) */
    if (kind == PARTY__CONN_RECORD_WS) {
        rec.party = party__slice_make(room->party->name, strlen(room->party->name));
        rec.room_id = party__slice_make(room->id, strlen(room->id));
        if (room->name != NULL)
            rec.room_name = party__slice_make(room->name, strlen(room->name));
    }
    size = party__conn_record_size(&rec);
    if (append_record(ul, &rec, size) != 0 || append_conn(ul, conn) != 0) {
        ul->failed = 1;
    } else {
        if (kind == PARTY__CONN_RECORD_WS)
            ul->moved_ws++;
        else
            ul->moved_http++;
        ul->with_output += rec.output.len > 0;
        ul->with_input += rec.input.len > 0 || rec.msg_opcode != 0;
    }
    party__free(owned);
}

static void tick_closed(uv_handle_t *handle) {
    (void)handle;
}

/* Tells loop 0 this loop drained (or could not). */
static void freeze_done(upgrade_loop *ul) {
    uv_timer_stop(&ul->tick);
    post(&ul->up->rt->main, ul, loop_drained);
}

/* 1 when nothing on the loop is under way: no connection busy, every room
 * hibernated or evicted (once their connections' requests are answered).
 * *busy: the connections still busy. */
static int loop_quiet(party__loop_ctx *lc, size_t *busy) {
    *busy = 0;
    party__conn_foreach_with(&lc->lp, count_busy, busy);
    return *busy == 0 && party__rooms_quiesce(&lc->rooms);
}

static void on_freeze_tick(uv_timer_t *timer) {
    upgrade_loop *ul = timer->data;
    party__loop_ctx *lc = ul->lc;
    size_t not_quiet;

    if (!loop_quiet(lc, &not_quiet)) {
        if (uv_now(&lc->lp.loop) >= ul->deadline) {
            party__log_warn(&lc->lp,
                            "upgrade: loop %u: %zu connections still busy or rooms still "
                            "committing after %d ms",
                            lc->index, not_quiet, FREEZE_TIMEOUT_MS);
            ul->failed = 1;
            freeze_done(ul);
        }
        return;
    }
    ul->handoffs_at_quiet = lc->handoffs_in;
    freeze_done(ul);
}

/* Every loop drained: this one exports, unless another loop handed it a
 * connection since (a request answered there had the next one pipelined
 * behind it, for a room of this loop). That connection is served and
 * exported in another round; exporting without it would leave it behind,
 * its answers unwritten. A hand-off posted before its loop drained is
 * here before this mail (loop 0 posts this once it heard that loop). */
static void export_run(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    size_t not_quiet;

    party__free(mail);
    if (lc->handoffs_in != ul->handoffs_at_quiet || !loop_quiet(lc, &not_quiet)) {
        ul->unsettled = 1;
        loop_report(ul);
        return;
    }
    /* Nothing moves any more: from here on no byte is written either, so
     * each record is what the socket's next bytes continue. */
    lc->lp.frozen = 2;
    party__conn_foreach_with(&lc->lp, export_one, ul);
    loop_report(ul);
}

static void loop_frozen(party__loop_ctx *lc, party__mail *mail);

static void freeze_run(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;

    party__free(mail);
    lc->lp.frozen = 1;
    if (lc->index == 0)
        party__listener_pause(&lc->lp);
    /* Open RPC calls end with an error reply; requests to other rooms
     * and outbound requests are answered "aborted" by the room's next
     * incarnation (D4). */
    party__rpc_stop_all(&lc->rooms);
    party__fetch_stop_all(&lc->rooms);
    party__outbound_stop_all(&lc->rooms);
    party__conn_foreach_with(&lc->lp, freeze_one, ul);
    post(&ul->up->rt->main, ul, loop_frozen);
}

/* Forgets what the loop exported (the records, the references). */
static void loop_unexport(upgrade_loop *ul) {
    size_t i;
    for (i = 0; i < ul->n_conns; i++)
        party__conn_unref(ul->conns[i]);
    party__free(ul->conns);
    ul->conns = NULL;
    ul->n_conns = ul->cap_conns = 0;
    party__free(ul->records);
    ul->records = NULL;
    ul->len = ul->cap = 0;
    ul->moved_ws = ul->moved_http = ul->with_output = ul->with_input = 0;
}

/* Every loop reads no more: this one lets what is in flight end, then
 * tells loop 0 (which has every loop export once all drained). Mail
 * arrives in order, so a request another loop handed to this one before
 * it froze is here already, and is waited for. Again in a next round: a
 * loop that exported writes again (frozen 1) and exports anew later. */
static void drain_run(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;

    party__free(mail);
    if (lc->lp.frozen == 2) {
        loop_unexport(ul);
        lc->lp.frozen = 1;
        /* Output that waited (a full socket stops being watched while
         * nothing may be written) goes on; nothing is read at frozen 1. */
        party__conn_foreach(&lc->lp, party__conn_thaw);
        party__loop_release_held(lc);
        party__rooms_load_waiting(&lc->rooms);
    }
    ul->unsettled = 0;
    if (!ul->tick_open) {
        ul->deadline = uv_now(&lc->lp.loop) + FREEZE_TIMEOUT_MS;
        uv_timer_init(&lc->lp.loop, &ul->tick);
        ul->tick.data = ul;
        ul->tick_open = 1;
    }
    uv_timer_start(&ul->tick, on_freeze_tick, 0, FREEZE_TICK_MS);
}

static void loop_release(upgrade_loop *ul) {
    loop_unexport(ul);
    party__free(ul->wakes);
    ul->wakes = NULL;
    ul->n_wakes = ul->cap_wakes = 0;
    if (ul->tick_open) {
        ul->tick_open = 0;
        uv_close((uv_handle_t *)&ul->tick, tick_closed);
    }
}

static void loop_done(party__loop_ctx *lc, party__mail *mail);

/* The alarm index read again after a failed upgrade, into this loop's
 * heap, before anything of it runs again. A loaded room keeps its own
 * wake time; another room's entry takes the index's time: one entry per
 * room, so none is filed twice, and an entry earlier than the room's
 * wake time costs a wake-up with nothing due. */
static void file_wakes(party__loop_ctx *lc, upgrade_loop *ul) {
    size_t i, lost = 0;
    for (i = 0; i < ul->n_wakes; i++)
        if (party__rooms_file_reread(&lc->rooms, ul->wakes[i].id, ul->wakes[i].party,
                                     ul->wakes[i].due_ms) != 0)
            lost++;
    if (lost > 0)
        party__log_error(lc->rt,
                         "upgrade: no memory to file the alarms of %zu rooms; they wake at their "
                         "next visit or the next start",
                         lost);
    party__free(ul->wakes);
    ul->wakes = NULL;
    ul->n_wakes = ul->cap_wakes = 0;
}

/* The hand-over failed: the loop serves again. */
static void thaw_run(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;

    party__free(mail);
    file_wakes(lc, ul);
    lc->lp.frozen = 0;
    party__conn_foreach(&lc->lp, party__conn_thaw);
    party__loop_release_held(lc);
    party__rooms_load_waiting(&lc->rooms);
    if (lc->index == 0)
        party__listener_resume(&lc->lp);
    party__rooms_fire_due(&lc->rooms); /* what came due meanwhile */
    loop_release(ul);
    post(&ul->up->rt->main, ul, loop_done);
}

/* The new process adopted everything: what moved is forgotten here. */
static void forget_run(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    size_t i;

    party__free(mail);
    for (i = 0; i < ul->n_conns; i++) {
        party_conn *conn = ul->conns[i];
        party_room *room = party__conn_room(conn);
        if (room != NULL) {
            party__room_unlink_conn(room, conn);
            party__rpc_forget_conn(room, conn);
            party__conn_leave_room(conn);
        }
        party__conn_forget(conn);
    }
    /* What stayed (closing connections) ends as at a shutdown; no room
     * of this process runs again (its alarms are the new process's). */
    lc->lp.handed_over = 1;
    lc->lp.frozen = 0;
    party__loop_release_held(lc);          /* none: every loop was settled */
    party__rooms_load_waiting(&lc->rooms); /* their events fail */
    loop_release(ul);
    post(&ul->up->rt->main, ul, loop_done);
}

/* ---- on loop 0 ---- */

static void close_sock(party__upgrade *up) {
    if (up->sock_poll_open) {
        up->sock_poll_open = 0;
        uv_close((uv_handle_t *)&up->sock_poll, NULL);
    }
    if (up->sock >= 0)
        close(up->sock);
    up->sock = -1;
}

static void on_child_closed(uv_handle_t *handle) {
    (void)handle;
}

static void child_close(party__upgrade *up, int kill_it) {
    if (!up->child_open)
        return;
    if (kill_it)
        (void)uv_process_kill(&up->child, SIGKILL);
    up->child_open = 0;
    uv_close((uv_handle_t *)&up->child, on_child_closed);
}

/* A failed upgrade is over: every loop serves as before, and a next
 * SIGUSR2 may try again. */
static void back_to_serving(party__upgrade *up) {
    up->state = IDLE;
    up->failing = 0;
    party__log_info(up->rt,
                    "upgrade: this process (pid %ld) serves as before; SIGUSR2 may try "
                    "again",
                    (long)getpid());
    /* Type=notify: the reload is over, this process still serves. */
    (void)party__sd_notify("READY=1");
    if (up->stop_pending) {
        party__log_info(up->rt, "upgrade: stopping now, as asked during the upgrade");
        party_runtime_stop(up->rt);
    }
}

static void loop_done(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    party__upgrade *up = ul->up;

    (void)lc;
    party__free(mail);
    if (--up->pending > 0)
        return;
    party__free(up->loops);
    up->loops = NULL;
    if (up->state == DONE) {
        party__log_info(up->rt, "upgrade: the new process serves now; this one (pid %ld) exits",
                        (long)getpid());
        party_runtime_stop(up->rt);
        return;
    }
    back_to_serving(up);
}

/* Tells every loop to thaw (or forget, once adopted). */
static void loops_finish(party__upgrade *up, int adopted) {
    unsigned i;
    up->pending = up->n_loops;
    for (i = 0; i < up->n_loops; i++)
        post(up->loops[i].lc, &up->loops[i], adopted ? forget_run : thaw_run);
}

/* An entry of the alarm index, for its loop's list (the loops are frozen:
 * nothing else touches it until the loop thaws). */
static int collect_wake(party__loop_ctx *lc, const char *id, uint32_t party, int64_t due_ms,
                        void *arg) {
    party__upgrade *up = arg;
    upgrade_loop *ul;

    /* up->loops[i] is the loop of index i (set where the upgrade starts). */
    if (lc->index >= up->n_loops)
        return 0;
    ul = &up->loops[lc->index];
    if (ul->n_wakes == ul->cap_wakes) {
        size_t cap = ul->cap_wakes ? ul->cap_wakes * 2 : 64;
        upgrade_wake *wakes = party__realloc(ul->wakes, cap * sizeof(*wakes));
        if (wakes == NULL)
            return PARTY_ENOMEM;
        ul->wakes = wakes;
        ul->cap_wakes = cap;
    }
    memcpy(ul->wakes[ul->n_wakes].id, id, PARTY_ID_MAX);
    ul->wakes[ul->n_wakes].party = party;
    ul->wakes[ul->n_wakes].due_ms = due_ms;
    ul->n_wakes++;
    return 0;
}

/* The new process may have set alarms (or moved them earlier) for rooms
 * this one does not hold: their wake-ups are in the alarm index only. It
 * is read again as at start-up, and each loop files its rooms when it
 * thaws. What could not be read is logged: those rooms wake at their next
 * visit or the next start. */
static void reread_alarms(party__upgrade *up) {
    uint64_t t0 = uv_hrtime();
    if (party__runtime_read_alarm_index(up->rt, collect_wake, up) != 0)
        party__log_error(up->rt, "upgrade: some rooms' alarms wait for their next visit or the "
                                 "next start");
    party__log_info(up->rt, "upgrade: read the alarm index again in %.1f ms", ms_since(t0));
}

/* The loops of a failed upgrade thaw, once every one has reported and
 * the new process can write no more. A new process that had the data
 * directory may have committed rooms this one never saw: the backend
 * learns them first, or load_quick would take them for new (and their
 * first commit here would overwrite them). */
static void thaw_failed(party__upgrade *up) {
    party__backend *be = up->rt->backend;
    if (up->pending > 0 || up->reap_wait)
        return;
    if (up->rescan && be != NULL && be->ops->rescan != NULL) {
        uint64_t t0 = uv_hrtime();
        be->ops->rescan(be);
        party__log_info(up->rt,
                        "upgrade: read again which rooms have records (the new process may have "
                        "written some) in %.1f ms",
                        ms_since(t0));
    }
    if (up->rescan && be != NULL)
        reread_alarms(up);
    up->rescan = 0;
    loops_finish(up, 0);
}

static void upgrade_fail(party__upgrade *up, const char *why) {
    if (up->state == IDLE || up->state == DONE || up->failing)
        return;
    up->failures++;
    uv_timer_stop(&up->timer);
    close_sock(up);
    if (up->state == SENT) {
        /* It had everything, the data directory included: nothing of it
         * may write once the loops thaw, so its exit is awaited (SIGKILL
         * ends it; the kernel reports the exit once no thread of it runs
         * a write any more). */
        up->rescan = 1;
        if (up->child_open && !up->child_exited) {
            (void)uv_process_kill(&up->child, SIGKILL);
            up->reap_wait = 1;
        } else {
            child_close(up, 0);
        }
    } else {
        child_close(up, !up->child_exited);
    }
    party__log_error(up->rt, "upgrade failed: %s; this process (pid %ld) goes on serving", why,
                     (long)getpid());
    if (up->state == STARTING) {
        back_to_serving(up);
        return;
    }
    up->failing = 1;
    /* Loops still freezing thaw once the last one reports. */
    thaw_failed(up);
}

/* Everything goes to the new process, message by message. */
static int send_all(party__upgrade *up) {
    party_runtime *rt = up->rt;
    char head[12], *batch;
    int fds[2], n_fds = 0, r;
    unsigned version = record_version_sent(), i;
    int flags = fcntl(up->sock, F_GETFL);

    /* The new process reads as fast as we write: blocking sends. */
    if (flags < 0 || fcntl(up->sock, F_SETFL, flags & ~O_NONBLOCK) != 0)
        return -errno;
    head[0] = MSG_HEAD;
    put_u16(head + 1, version);
    fds[n_fds++] = rt->main.lp.listen_fd;
    head[3] = party__runtime_data_lock_fd(rt) >= 0;
    if (head[3])
        fds[n_fds++] = party__runtime_data_lock_fd(rt);
    put_u32(head + 4, (uint32_t)up->upgrades);
    put_u32(head + 8, (uint32_t)up->tls_closed);
    if ((r = send_msg(up->sock, head, sizeof(head), fds, (size_t)n_fds)) != 0)
        return r;
    batch = party__malloc(BYTES_PER_MSG + 1);
    if (batch == NULL)
        return -ENOMEM;
    /* The receiver reads one stream of records: a large one (output not
     * written yet) spans messages, and each socket travels with the
     * message its record starts in. */
    for (i = 0; i < up->n_loops; i++) {
        upgrade_loop *ul = &up->loops[i];
        size_t at = 0, k = 0, next = 0;
        if (version != PARTY__CONN_RECORD_VERSION)
            for (; next < ul->len;
                 next += PARTY__CONN_RECORD_HEADER + get_u32(ul->records + next + 8))
                put_u16(ul->records + next + 4, version); /* the test's override */
        next = 0;
        while (at < ul->len) {
            int batch_fds[FDS_PER_MSG];
            size_t len = ul->len - at < BYTES_PER_MSG ? ul->len - at : BYTES_PER_MSG, n = 0;
            while (k < ul->n_conns && next < at + len) {
                if (n == FDS_PER_MSG) {
                    len = next - at; /* the next record starts the next message */
                    break;
                }
                batch_fds[n++] = party__conn_fd(ul->conns[k++]);
                next += PARTY__CONN_RECORD_HEADER + get_u32(ul->records + next + 8);
            }
            batch[0] = MSG_RECORDS;
            memcpy(batch + 1, ul->records + at, len);
            if ((r = send_msg(up->sock, batch, len + 1, batch_fds, n)) != 0) {
                party__free(batch);
                return r;
            }
            at += len;
        }
    }
    party__free(batch);
    head[0] = MSG_END;
    r = send_msg(up->sock, head, 1, NULL, 0);
    if (r == 0)
        (void)fcntl(up->sock, F_SETFL, flags | O_NONBLOCK);
    return r;
}

static void on_timeout(uv_timer_t *timer) {
    party__upgrade *up = timer->data;
    upgrade_fail(up, up->state == STARTING
                         ? "the new process did not get ready in time"
                         : "the new process did not adopt the connections in time");
}

/* Posts work to every loop; each reports back to loop 0. */
static void post_all(party__upgrade *up, void (*run)(party__loop_ctx *, party__mail *)) {
    unsigned i;
    up->pending = up->n_loops;
    for (i = 0; i < up->n_loops; i++)
        post(up->loops[i].lc, &up->loops[i], run);
}

/* A loop's report reached loop 0: 1 once every loop has reported and the
 * upgrade goes on; 0 while others are still to report, or when it failed
 * meanwhile (the child died: the loops thaw). */
static int all_reported(party__upgrade *up) {
    if (--up->pending > 0)
        return 0;
    if (up->failing) {
        thaw_failed(up);
        return 0;
    }
    return 1;
}

/* A loop drained (loop 0). Once every loop has, each exports. */
static void loop_drained(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    party__upgrade *up = ul->up;
    unsigned i;
    int failed = 0;

    (void)lc;
    party__free(mail);
    if (!all_reported(up))
        return;
    for (i = 0; i < up->n_loops; i++)
        failed |= up->loops[i].failed;
    if (failed) {
        upgrade_fail(up, "the loops could not be frozen (see above)");
        return;
    }
    post_all(up, export_run);
}

static void loop_reported(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    party__upgrade *up = ul->up;
    unsigned i, ws = 0, http = 0, tls = 0, out = 0, in = 0;
    int failed = 0, unsettled = 0, r;

    (void)lc;
    party__free(mail);
    if (!all_reported(up))
        return;
    for (i = 0; i < up->n_loops; i++) {
        failed |= up->loops[i].failed;
        unsettled |= up->loops[i].unsettled;
        ws += up->loops[i].moved_ws;
        http += up->loops[i].moved_http;
        tls += up->loops[i].tls_closed;
        out += up->loops[i].with_output;
        in += up->loops[i].with_input;
    }
    if (failed) {
        upgrade_fail(up, "the loops could not be frozen (see above)");
        return;
    }
    if (unsettled) {
        /* A connection moved between loops after they drained: another
         * round, until one passes with none. */
        party__log_info(up->rt, "upgrade: a connection moved between loops after they "
                                "drained; draining again");
        post_all(up, drain_run);
        return;
    }
    up->tls_closed += tls;
    if (tls > 0)
        party__log_warn(up->rt,
                        "upgrade: %u TLS connections closed with 1012 (a TLS session "
                        "cannot be handed over)",
                        tls);
    r = send_all(up);
    if (r != 0) {
        party__log_error(up->rt, "upgrade: sending to the new process: %s", strerror(-r));
        upgrade_fail(up, "the hand-over could not be sent");
        return;
    }
    up->state = SENT;
    party__log_info(up->rt,
                    "upgrade: handed %u WebSockets and %u HTTP connections to the new process "
                    "(%u with output not yet written, %u with input not yet read whole; frozen "
                    "%.1f ms so far); waiting for it to adopt them",
                    ws, http, out, in, ms_since(up->frozen_ns));
    uv_timer_start(&up->timer, on_timeout, ADOPTED_TIMEOUT_MS, 0);
}

/* A loop reads no more (loop 0). Once every loop is there, each drains
 * and exports. */
static void loop_frozen(party__loop_ctx *lc, party__mail *mail) {
    upgrade_loop *ul = ((upgrade_mail *)mail)->ul;
    party__upgrade *up = ul->up;

    (void)lc;
    party__free(mail);
    if (all_reported(up))
        post_all(up, drain_run);
}

/* The new process is ready: every loop freezes, then drains and exports. */
static void freeze_all(party__upgrade *up) {
    party_runtime *rt = up->rt;
    unsigned i, n = rt->loops != NULL ? rt->n_loops : 1;

    up->loops = party__calloc(n, sizeof(*up->loops));
    if (up->loops == NULL) {
        upgrade_fail(up, "out of memory");
        return;
    }
    up->n_loops = n;
    up->pending = n;
    up->state = FREEZING;
    up->frozen_ns = uv_hrtime();
    uv_timer_stop(&up->timer);
    for (i = 0; i < n; i++) {
        up->loops[i].up = up;
        up->loops[i].lc = rt->loops != NULL ? rt->loops[i] : &rt->main;
        post(up->loops[i].lc, &up->loops[i], freeze_run);
    }
}

/* What the new process says. */
static void on_sock(uv_poll_t *handle, int status, int events) {
    party__upgrade *up =
        (party__upgrade *)(void *)((char *)handle - offsetof(party__upgrade, sock_poll));
    char buf[512];
    int fds[FDS_PER_MSG];
    size_t n_fds, i;
    ssize_t n;

    (void)status;
    (void)events;
    n = recv_msg(up->sock, buf, sizeof(buf) - 1, fds, &n_fds, MSG_DONTWAIT);
    for (i = 0; i < n_fds; i++)
        close(fds[i]); /* the new process sends none */
    if (n == -EAGAIN || n == -EWOULDBLOCK)
        return;
    if (n <= 0) {
        /* Its exit status says more: wait for it (the timeout still runs). */
        close_sock(up);
        if (!up->child_open || up->child_exited)
            upgrade_fail(up, "the new process went away before it adopted the connections (see "
                             "its log lines above)");
        return;
    }
    buf[n] = '\0';
    if (buf[0] == MSG_READY && up->state == STARTING) {
        party__log_info(up->rt,
                        "upgrade: the new process is ready (%.1f ms after the signal); "
                        "handing over",
                        ms_since(up->started_ns));
        freeze_all(up);
    } else if (buf[0] == MSG_ADOPTED && up->state == SENT && n >= 5) {
        uv_timer_stop(&up->timer);
        party__log_info(up->rt,
                        "upgrade: the new process (pid %ld) adopted %u connections; hand-over "
                        "took %.1f ms (connections frozen %.1f ms)",
                        (long)up->child.pid, (unsigned)get_u32(buf + 1), ms_since(up->started_ns),
                        ms_since(up->frozen_ns));
        up->state = DONE;
        close_sock(up);
        if (up->stop_pending) {
            /* Asked to stop during the upgrade: the new process stops. */
            party__log_info(up->rt, "upgrade: passing the stop asked meanwhile to pid %ld",
                            (long)up->child.pid);
            (void)uv_process_kill(&up->child, SIGTERM);
        }
        child_close(up, 0);
        loops_finish(up, 1);
    } else if (buf[0] == MSG_REFUSED) {
        char why[600];
        snprintf(why, sizeof(why), "the new process refused the hand-over: %s", buf + 1);
        upgrade_fail(up, why);
    } else {
        upgrade_fail(up, "the new process sent what is not part of a hand-over");
    }
}

static void on_child_exit(uv_process_t *child, int64_t status, int signal) {
    party__upgrade *up = child->data;
    char why[200];

    up->child_exited = 1;
    if (up->reap_wait) {
        /* Killed after a failure: gone now, nothing of it writes. */
        up->reap_wait = 0;
        child_close(up, 0);
        thaw_failed(up);
        return;
    }
    if (up->state == DONE || up->state == IDLE)
        return;
    /* It may have said "adopted" just before: read that first. */
    if (up->sock >= 0)
        on_sock(&up->sock_poll, 0, UV_READABLE);
    if (up->state == DONE || up->state == IDLE)
        return;
    if (signal != 0)
        snprintf(why, sizeof(why), "the new process was killed by signal %d", signal);
    else
        snprintf(why, sizeof(why), "the new process exited with status %lld", (long long)status);
    upgrade_fail(up, why);
}

/* Starts the new process with its end of a fresh socket pair as fd 3. */
static int spawn_child(party__upgrade *up) {
    uv_process_options_t opt;
    uv_stdio_container_t stdio[4];
    int pair[2], r;
    size_t n_env = 0, i, k = 0;
    char **env, fd_var[64];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
        return -errno;
    while (environ[n_env] != NULL)
        n_env++;
    env = party__calloc(n_env + 2, sizeof(*env));
    if (env == NULL) {
        close(pair[0]);
        close(pair[1]);
        return -ENOMEM;
    }
    for (i = 0; i < n_env; i++)
        if (strncmp(environ[i], PARTY__UPGRADE_FD_ENV "=", sizeof(PARTY__UPGRADE_FD_ENV)) != 0)
            env[k++] = environ[i];
    snprintf(fd_var, sizeof(fd_var), "%s=3", PARTY__UPGRADE_FD_ENV);
    env[k++] = fd_var;
    env[k] = NULL;
    memset(&opt, 0, sizeof(opt));
    memset(stdio, 0, sizeof(stdio));
    for (i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = (int)i;
    }
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = pair[1];
    opt.file = up->exe;
    opt.args = up->argv;
    opt.env = env;
    opt.stdio = stdio;
    opt.stdio_count = 4;
    opt.exit_cb = on_child_exit;
    up->child.data = up;
    r = uv_spawn(&up->rt->main.lp.loop, &up->child, &opt);
    party__free(env);
    close(pair[1]);
    if (r != 0) {
        /* libuv made a handle all the same: it is closed. */
        uv_close((uv_handle_t *)&up->child, NULL);
        close(pair[0]);
        return r;
    }
    up->child_open = 1;
    up->child_exited = 0;
    up->sock = pair[0];
    (void)fcntl(up->sock, F_SETFL, fcntl(up->sock, F_GETFL) | O_NONBLOCK);
    uv_poll_init(&up->rt->main.lp.loop, &up->sock_poll, up->sock);
    up->sock_poll_open = 1;
    uv_poll_start(&up->sock_poll, UV_READABLE | UV_DISCONNECT, on_sock);
    return 0;
}

static void on_sigusr2(uv_signal_t *sig, int signum) {
    party__upgrade *up = sig->data;
    party_runtime *rt = up->rt;
    int r;

    (void)signum;
    if (up->state != IDLE || rt->main.lp.stopping) {
        party__log_warn(rt, "upgrade: SIGUSR2 ignored: %s",
                        rt->main.lp.stopping ? "shutting down" : "an upgrade is under way");
        return;
    }
    if (rt->store != NULL) {
        /* The store's URI is not logged: it may hold a password. */
        party__log_error(rt, "upgrade: SIGUSR2 refused: with --store (a cluster node), restart "
                             "nodes one by one instead (SIGTERM: the load balancer moves their "
                             "rooms to the other nodes); this node keeps running");
        return;
    }
    party__log_info(rt, "upgrade: SIGUSR2: starting %s", up->exe);
    up->started_ns = uv_hrtime();
    r = spawn_child(up);
    if (r != 0) {
        up->failures++;
        party__log_error(rt, "upgrade failed: cannot start %s: %s; this process goes on serving",
                         up->exe, r < 0 && r > -4096 ? uv_strerror(r) : "error");
        return;
    }
    up->state = STARTING;
    (void)party__sd_notify("RELOADING=1");
    uv_timer_start(&up->timer, on_timeout, READY_TIMEOUT_MS, 0);
}

int party__upgrade_enable(party_runtime *rt, const char *exe, char *const *argv) {
    party__upgrade *up = rt->upgrade;
    size_t n = 0, i;

    if (up != NULL && up->exe != NULL)
        return PARTY_ESTATE;
    if (up == NULL) {
        up = party__calloc(1, sizeof(*up));
        if (up == NULL)
            return PARTY_ENOMEM;
        up->rt = rt;
        up->sock = up->in_sock = -1;
        rt->upgrade = up;
    }
    while (argv[n] != NULL)
        n++;
    up->exe = party__strdup(exe);
    up->argv = party__calloc(n + 1, sizeof(char *));
    if (up->exe == NULL || up->argv == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < n; i++)
        if ((up->argv[i] = party__strdup(argv[i])) == NULL)
            return PARTY_ENOMEM;
    return 0;
}

/* ==== the new side ==== */

static void refuse(int sock, const char *why) {
    char msg[600];
    msg[0] = MSG_REFUSED;
    snprintf(msg + 1, sizeof(msg) - 1, "%s", why);
    (void)send_msg(sock, msg, 1 + strlen(msg + 1), NULL, 0);
}

static int take_fds(party__upgrade *up, const int *fds, size_t n) {
    if (up->n_in_fds + n > up->cap_in_fds) {
        size_t cap = up->cap_in_fds ? up->cap_in_fds * 2 : 256;
        int *grown;
        while (cap < up->n_in_fds + n)
            cap *= 2;
        grown = party__realloc(up->in_fds, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        up->in_fds = grown;
        up->cap_in_fds = cap;
    }
    memcpy(up->in_fds + up->n_in_fds, fds, n * sizeof(*fds));
    up->n_in_fds += n;
    return 0;
}

static void close_fds(const int *fds, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        close(fds[i]);
}

/* Receives the records and their descriptors up to MSG_END. */
static int receive_records(party__upgrade *up, party_runtime *rt, char *buf) {
    int fds[FDS_PER_MSG];
    size_t n_fds;

    for (;;) {
        ssize_t n = recv_msg(up->in_sock, buf, BYTES_PER_MSG + 1, fds, &n_fds, 0);
        if (n <= 0) {
            party__log_error(rt, "upgrade: the old process went away during the hand-over");
            return PARTY_EIO;
        }
        if (buf[0] == MSG_END && n_fds == 0)
            return 0;
        if (buf[0] != MSG_RECORDS) {
            close_fds(fds, n_fds);
            party__log_error(rt, "upgrade: the old process sent what is not a hand-over");
            return PARTY_EIO;
        }
        if (take_fds(up, fds, n_fds) != 0) {
            close_fds(fds, n_fds);
            return PARTY_ENOMEM;
        }
        if (up->in_len + (size_t)n - 1 > up->in_cap) {
            size_t cap = up->in_cap ? up->in_cap * 2 : BYTES_PER_MSG;
            char *grown;
            while (cap < up->in_len + (size_t)n - 1)
                cap *= 2;
            grown = party__realloc(up->in_records, cap);
            if (grown == NULL)
                return PARTY_ENOMEM;
            up->in_records = grown;
            up->in_cap = cap;
        }
        memcpy(up->in_records + up->in_len, buf + 1, (size_t)n - 1);
        up->in_len += (size_t)n - 1;
    }
}

/* Every record must decode, one per descriptor: what does not is refused
 * as a whole, before anything is adopted. */
static int check_records(party__upgrade *up, char *why, size_t why_len) {
    size_t at = 0, n = 0;

    while (at < up->in_len) {
        party__conn_record rec;
        size_t used;
        int r = party__conn_record_decode(up->in_records + at, up->in_len - at, &rec, &used);
        if (r == PARTY_ESTATE) {
            snprintf(why, why_len,
                     "connection record version %u is not known to this build (it reads "
                     "version %d)",
                     rec.version, PARTY__CONN_RECORD_VERSION);
            return r;
        }
        if (r != 0) {
            snprintf(why, why_len, "connection record %zu is malformed", n);
            return PARTY_EIO;
        }
        at += used;
        n++;
    }
    if (n != up->n_in_fds) {
        snprintf(why, why_len, "%zu records came with %zu sockets", n, up->n_in_fds);
        return PARTY_EIO;
    }
    return 0;
}

/* The test hook hold: while its file holds "1", the new process waits
 * before it speaks to the old one, so a test can act on the old process
 * while an upgrade is certainly under way (signals sent back to back may
 * reach two threads and be handled in either order). */
static void hold_while_hooked(void) {
    char buf[8];
    const char *v;
    while ((v = test_hook("hold", buf, sizeof(buf))) != NULL && strcmp(v, "1") == 0)
        usleep(10000);
}

int party__upgrade_receive(party_runtime *rt, int sock) {
    party__upgrade *up = rt->upgrade;
    char *buf, why[300];
    int fds[FDS_PER_MSG], flags, r;
    size_t n_fds;
    ssize_t n;
    unsigned version;

    hold_while_hooked();

    if (up == NULL) {
        up = party__calloc(1, sizeof(*up));
        if (up == NULL) {
            close(sock);
            return PARTY_ENOMEM;
        }
        up->rt = rt;
        up->sock = -1;
        rt->upgrade = up;
    }
    up->in_sock = sock;
    (void)fcntl(sock, F_SETFD, FD_CLOEXEC);
    flags = fcntl(sock, F_GETFL);
    if (flags >= 0)
        (void)fcntl(sock, F_SETFL, flags & ~O_NONBLOCK);
    buf = party__malloc(BYTES_PER_MSG + 1);
    if (buf == NULL)
        return PARTY_ENOMEM;
    buf[0] = MSG_READY;
    put_u16(buf + 1, PARTY__CONN_RECORD_VERSION);
    if (send_msg(sock, buf, 3, NULL, 0) != 0) {
        party__log_error(rt, "upgrade: the old process is gone (%s)", strerror(errno));
        party__free(buf);
        return PARTY_EIO;
    }
    n = recv_msg(sock, buf, BYTES_PER_MSG + 1, fds, &n_fds, 0);
    if (n < 12 || buf[0] != MSG_HEAD || n_fds != (size_t)(buf[3] ? 2 : 1)) {
        close_fds(fds, n_fds);
        party__log_error(rt, "upgrade: the old process %s",
                         n <= 0 ? "went away" : "sent what is not a hand-over");
        party__free(buf);
        return PARTY_EIO;
    }
    version = get_u16(buf + 1);
    up->upgrades = (uint64_t)get_u32(buf + 4) + 1;
    up->tls_closed = get_u32(buf + 8);
    r = receive_records(up, rt, buf);
    if (r == 0 && version != PARTY__CONN_RECORD_VERSION) {
        /* Refused after everything was read: a socket closed with unread
         * messages would reset the old process's end before it reads why. */
        close_fds(fds, n_fds);
        snprintf(why, sizeof(why),
                 "connection record version %u is not known to this build (it reads version %d)",
                 version, PARTY__CONN_RECORD_VERSION);
        party__log_error(rt, "upgrade: refused: %s", why);
        refuse(sock, why);
        party__free(buf);
        return PARTY_ESTATE;
    }
    party__free(buf);
    if (r == 0 && (r = check_records(up, why, sizeof(why))) != 0) {
        party__log_error(rt, "upgrade: refused: %s", why);
        refuse(sock, why);
    }
    if (r == 0)
        r = party__runtime_take_over(rt, fds[0], n_fds > 1 ? fds[1] : -1);
    else
        close_fds(fds, n_fds);
    if (r != 0 && r != PARTY_ESTATE && r != PARTY_EIO)
        refuse(sock, party_strerror(r));
    return r;
}

/* The test hook die-after: the new process dies after adopting this many
 * records ("half": half of them), as a crash in the middle of an upgrade
 * would. */
static size_t die_after(size_t total) {
    char buf[32];
    const char *v = test_hook("die-after", buf, sizeof(buf));
    if (v == NULL)
        return SIZE_MAX;
    if (strcmp(v, "half") == 0)
        return total / 2;
    return (size_t)strtoul(v, NULL, 10);
}

/* Adopts every record received: each socket through the same entry point
 * as an accepted one, each WebSocket into its room on the loop that owns
 * it. The number adopted. */
static size_t adopt_all(party__upgrade *up) {
    party_runtime *rt = up->rt;
    size_t at = 0, k = 0, adopted = 0, lost = 0, stop = die_after(up->n_in_fds);

    while (at < up->in_len && k < up->n_in_fds) {
        party__conn_record rec;
        party__loop_ctx *lc = &rt->main;
        party_conn *conn;
        size_t used;
        char id[PARTY_ID_MAX];

        if (k == stop) {
            party__log_error(rt, "upgrade: test hook: process %ld dies after %zu of %zu records",
                             (long)getpid(), k, up->n_in_fds);
            _exit(3);
        }
        (void)party__conn_record_decode(up->in_records + at, up->in_len - at, &rec, &used);
        at += used;
        if (rec.kind == PARTY__CONN_RECORD_WS && rec.room_id.len == PARTY_ID_MAX - 1) {
            memcpy(id, rec.room_id.ptr, PARTY_ID_MAX - 1);
            id[PARTY_ID_MAX - 1] = '\0';
            lc = party__loop_of(&rt->main, id);
        }
        conn = party__conn_adopt_record(&lc->lp, up->in_fds[k++], &rec);
        if (conn == NULL) {
            lost++;
            continue;
        }
        if (rec.kind == PARTY__CONN_RECORD_WS) {
            int r =
                party__rooms_adopt_conn(&lc->rooms, conn, rec.party, rec.room_id, rec.room_name);
            if (r != 0) {
                party__log_warn(rt, "upgrade: connection %.*s of %.*s: %s; closing it with 1012",
                                (int)rec.id.len, rec.id.ptr, (int)rec.party.len, rec.party.ptr,
                                r == PARTY_ENOTFOUND ? "no such party in this build"
                                                     : party_strerror(r));
                party__conn_start_close(conn, PARTY__WS_SERVICE_RESTART, "server restarting");
                lost++;
                continue;
            }
        }
        party__conn_adopt_start(conn, rec.input);
        adopted++;
    }
    if (k < up->n_in_fds)
        close_fds(up->in_fds + k, up->n_in_fds - k); /* none, unless records ran out */
    if (lost > 0)
        party__log_warn(rt, "upgrade: %zu connections could not be adopted", lost);
    return adopted;
}

static void free_received(party__upgrade *up) {
    party__free(up->in_records);
    up->in_records = NULL;
    up->in_len = up->in_cap = 0;
    party__free(up->in_fds);
    up->in_fds = NULL;
    up->n_in_fds = up->cap_in_fds = 0;
}

/* Tells the old process the connections are adopted. 0, or PARTY_EIO:
 * it goes on serving, so this one stops. */
static int say_adopted(party__upgrade *up, uint64_t t0) {
    party_runtime *rt = up->rt;
    char msg[5];

    msg[0] = MSG_ADOPTED;
    put_u32(msg + 1, (uint32_t)up->adopted);
    if (send_msg(up->in_sock, msg, sizeof(msg), NULL, 0) != 0) {
        party__log_error(rt,
                         "upgrade: cannot tell the old process the connections are "
                         "adopted (%s); it goes on serving, so this one stops",
                         strerror(errno));
        close(up->in_sock);
        up->in_sock = -1;
        return PARTY_EIO;
    }
    close(up->in_sock);
    up->in_sock = -1;
    party__log_info(rt, "upgrade: adopted %zu connections in %.1f ms; serving (pid %ld)",
                    up->adopted, ms_since(t0), (long)getpid());
    return 0;
}

/* systemd (Type=notify): this process is the service's main one now. */
static void notify_main(void) {
    char text[64];
    snprintf(text, sizeof(text), "MAINPID=%ld\nREADY=1", (long)getpid());
    (void)party__sd_notify(text);
}

static void on_hold_closed(uv_handle_t *handle) {
    (void)handle;
}

/* The test hook hold-adopted: while it holds 1, the new process serves
 * (its loops run, clients reach it) but does not say "adopted", so the
 * old one still waits, as when the old one gives up (its timeout) just as
 * the new one begins to serve. A test then ends it (SIGKILL) and the old
 * process goes on serving. */
static void on_hold_tick(uv_timer_t *timer) {
    party__upgrade *up = timer->data;
    char buf[8];
    const char *v = test_hook("hold-adopted", buf, sizeof(buf));

    if (v != NULL && strcmp(v, "1") == 0)
        return;
    up->hold_open = 0;
    uv_close((uv_handle_t *)&up->hold_timer, on_hold_closed);
    if (say_adopted(up, uv_hrtime()) != 0)
        party_runtime_stop(up->rt);
    else
        notify_main();
}

int party__upgrade_serve(party_runtime *rt) {
    party__upgrade *up = rt->upgrade;

    if (up == NULL)
        return 0;
    if (up->in_sock >= 0) {
        uint64_t t0 = uv_hrtime();
        char buf[8];
        const char *hold;
        up->adopted = adopt_all(up);
        free_received(up);
        hold = test_hook("hold-adopted", buf, sizeof(buf));
        if (hold != NULL && strcmp(hold, "1") == 0 &&
            uv_timer_init(&rt->main.lp.loop, &up->hold_timer) == 0) {
            party__log_info(rt, "upgrade: test hook: process %ld serves before it says adopted",
                            (long)getpid());
            up->hold_timer.data = up;
            up->hold_open = 1;
            uv_timer_start(&up->hold_timer, on_hold_tick, 10, 10);
        } else if (say_adopted(up, t0) != 0) {
            return PARTY_EIO;
        }
    }
    if (up->exe != NULL) {
        uv_signal_init(&rt->main.lp.loop, &up->sigusr2);
        up->sigusr2.data = up;
        uv_signal_start(&up->sigusr2, on_sigusr2, SIGUSR2);
        uv_unref((uv_handle_t *)&up->sigusr2);
        uv_timer_init(&rt->main.lp.loop, &up->timer);
        up->timer.data = up;
        uv_unref((uv_handle_t *)&up->timer);
        up->closed = 0;
    }
    if (!up->hold_open)
        notify_main();
    return 0;
}

void party__upgrade_close(party_runtime *rt) {
    party__upgrade *up = rt->upgrade;

    if (up != NULL && up->hold_open) {
        up->hold_open = 0;
        uv_close((uv_handle_t *)&up->hold_timer, on_hold_closed);
    }
    if (up == NULL || up->exe == NULL || up->closed)
        return;
    up->closed = 1;
    close_sock(up);
    child_close(up, up->state != DONE);
    if (uv_is_active((uv_handle_t *)&up->sigusr2) || up->sigusr2.loop != NULL) {
        if (!uv_is_closing((uv_handle_t *)&up->sigusr2))
            uv_close((uv_handle_t *)&up->sigusr2, NULL);
        if (!uv_is_closing((uv_handle_t *)&up->timer))
            uv_close((uv_handle_t *)&up->timer, NULL);
    }
}

void party__upgrade_free(party_runtime *rt) {
    party__upgrade *up = rt->upgrade;
    size_t i;

    if (up == NULL)
        return;
    if (up->in_sock >= 0)
        close(up->in_sock);
    if (up->in_fds != NULL)
        close_fds(up->in_fds, up->n_in_fds);
    free_received(up);
    if (up->sock >= 0)
        close(up->sock);
    for (i = 0; up->argv != NULL && up->argv[i] != NULL; i++)
        party__free(up->argv[i]);
    party__free(up->argv);
    party__free(up->exe);
    party__free(up->loops);
    party__free(up);
    rt->upgrade = NULL;
}

int party__upgrade_defer_stop(party_runtime *rt) {
    party__upgrade *up = rt->upgrade;
    if (up == NULL || up->state == IDLE)
        return 0;
    /* Frozen connections may be another process's already: a Close from
     * here could reach a client the new process serves. The upgrade ends
     * first (within its timeouts); then this process stops, or the new
     * one serves and this one exits anyway. */
    up->stop_pending = 1;
    return 1;
}

void party__upgrade_stats(const party_runtime *rt, uint64_t *upgrades, uint64_t *failed,
                          uint64_t *tls_closed) {
    const party__upgrade *up = rt->upgrade;
    *upgrades = up != NULL ? up->upgrades : 0;
    *failed = up != NULL ? up->failures : 0;
    *tls_closed = up != NULL ? up->tls_closed : 0;
}
