/* listener: the listening socket. Connections are accepted here as
 * descriptors, and each is watched with a uv_poll_t (160 bytes, where
 * libuv's TCP handle is 248): most of what an idle connection costs is its
 * struct. Out of descriptors (EMFILE), the pending connections are taken
 * and closed at once with the help of one descriptor kept spare, so that
 * the backlog keeps moving and a listener that stays readable does not
 * spin the loop. */
#define _GNU_SOURCE /* accept4 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"

#define LISTEN_BACKLOG 511
/* Accepts per readable event: others wait for the next loop turn, so a
 * flood of connections cannot starve the loop's other work. */
#define ACCEPTS_PER_TURN 128

static int spare_fd_open(void) {
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: accepts and closes what waits, with the spare one
 * freed for that, then takes the spare back. Returns how many went. */
static unsigned shed_pending(party__loop *lp) {
    unsigned shed = 0;
    int fd;

    if (lp->spare_fd < 0)
        return 0;
    close(lp->spare_fd);
    lp->spare_fd = -1;
    while (shed < ACCEPTS_PER_TURN &&
           (fd = accept4(lp->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        close(fd);
        shed++;
    }
    lp->spare_fd = spare_fd_open();
    return shed;
}

static void on_accept_failed(party__loop *lp, int err) {
    unsigned shed = 0;

    if (err == EMFILE || err == ENFILE)
        shed = shed_pending(lp);
    lp->accept_errors += shed > 0 ? shed : 1;
    if (party__loop_warning_due(lp, &lp->last_accept_warning))
        party__log_warn(lp, "accept: %s (%llu refused so far); max_conns (--max-conns) is %zu",
                        strerror(err), (unsigned long long)lp->accept_errors, lp->cfg.max_conns);
}

static void on_listener_readable(uv_poll_t *handle, int status, int events) {
    party__loop *lp = handle->data;
    unsigned n;

    (void)events;
    if (status < 0) {
        /* An error on the socket (libuv stopped the handle): go on
         * accepting, as long as there is something to accept. */
        if (party__loop_warning_due(lp, &lp->last_accept_warning))
            party__log_error(lp, "listener: %s", uv_strerror(status));
        if (uv_poll_start(&lp->listener, UV_READABLE, on_listener_readable) != 0)
            party__log_error(lp, "listener: cannot watch the socket again; no longer accepting");
        return;
    }
    for (n = 0; n < ACCEPTS_PER_TURN && !lp->stopping; n++) {
        /* The peer's address comes with the accept: no getpeername call. */
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(lp->listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            on_accept_failed(lp, errno);
            return;
        }
        party__conn_accept_fd(lp, fd, lp->accept_transport, &peer);
    }
}

int party__listener_open(party__loop *lp, const struct sockaddr *addr) {
    socklen_t len =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int on = 1, r;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return uv_translate_sys_error(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, addr, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        r = uv_translate_sys_error(errno);
        close(fd);
        return r;
    }
    return party__listener_adopt(lp, fd);
}

int party__listener_adopt(party__loop *lp, int fd) {
    int r, flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        r = uv_translate_sys_error(errno);
        close(fd);
        return r;
    }
    r = uv_poll_init_socket(&lp->loop, &lp->listener, fd);
    if (r == 0)
        r = uv_poll_start(&lp->listener, UV_READABLE, on_listener_readable);
    if (r != 0) {
        uv_close((uv_handle_t *)&lp->listener, NULL);
        close(fd);
        return r;
    }
    lp->listener.data = lp;
    lp->listen_fd = fd;
    lp->spare_fd = spare_fd_open();
    return 0;
}

void party__listener_pause(party__loop *lp) {
    /* The socket stays open: connection attempts wait in its backlog. */
    if (lp->listen_fd >= 0)
        uv_poll_stop(&lp->listener);
}

void party__listener_resume(party__loop *lp) {
    if (lp->listen_fd >= 0 && !lp->stopping &&
        uv_poll_start(&lp->listener, UV_READABLE, on_listener_readable) != 0)
        party__log_error(lp, "listener: cannot watch the socket again; no longer accepting");
}

int party__listener_port(party__loop *lp) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);

    /* getsockname fills addr; zeroed first all the same, since the static
     * analyzer does not model that and sees ss_family read uninitialised. */
    memset(&addr, 0, sizeof(addr));
    if (lp->listen_fd < 0 || getsockname(lp->listen_fd, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

void party__sockaddr_text(const struct sockaddr *addr, char *buf, size_t size) {
    char ip[INET6_ADDRSTRLEN];

    if (addr->sa_family == AF_INET6 &&
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, ip, sizeof(ip)))
        snprintf(buf, size, "[%s]:%d", ip, ntohs(((const struct sockaddr_in6 *)addr)->sin6_port));
    else if (addr->sa_family == AF_INET &&
             inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, ip, sizeof(ip)))
        snprintf(buf, size, "%s:%d", ip, ntohs(((const struct sockaddr_in *)addr)->sin_port));
    else
        snprintf(buf, size, "?");
}

void party__listener_address(party__loop *lp, char *buf, size_t size) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);

    /* As in party__listener_port: the analyzer does not see getsockname
     * fill the family. */
    memset(&addr, 0, sizeof(addr));
    if (lp->listen_fd < 0 || getsockname(lp->listen_fd, (struct sockaddr *)&addr, &len) != 0)
        snprintf(buf, size, "?");
    else
        party__sockaddr_text((const struct sockaddr *)&addr, buf, size);
}

void party__listener_close(party__loop *lp) {
    if (lp->listen_fd < 0)
        return;
    /* The handle stops watching the socket now; the socket can go too. */
    uv_close((uv_handle_t *)&lp->listener, NULL);
    close(lp->listen_fd);
    lp->listen_fd = -1;
    if (lp->spare_fd >= 0)
        close(lp->spare_fd);
    lp->spare_fd = -1;
}
