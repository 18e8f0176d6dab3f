/* fetch: room-to-room requests. party_room_fetch writes the request as
 * HTTP/1.1 bytes into one end of a socketpair and hands the other end to
 * the runtime as an internal connection; the answer is read back, parsed
 * into a party_response and posted to the calling room as a RESPONSE
 * event, found again by name or id (it may have left memory meanwhile).
 * In a cluster with a shared secret, a request to a room another live
 * node owns goes over TCP to that node instead, carrying the secret. */
#include "fetch.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "request.h"
#include "room.h"
#include "router.h"
#include "rooms.h"
#include "utf8.h"
#include "alloc.h"

#define FETCH_TIMEOUT_DEFAULT 30.0
#define ANSWER_BUF_FIRST 4096

/* The loop handles of a request in flight. They outlive the request when
 * it finishes first (closing is asynchronous), hence their own block. */
typedef struct fetch_io {
    uv_pipe_t pipe;
    uv_timer_t timer;
    uv_write_t write;
    party__buf *request; /* the bytes being written */
    int open;            /* handles not closed yet */
    int pipe_open;       /* the pipe handle was initialised */
    party__fetch *fetch; /* NULL once the request finished */
} fetch_io;

struct party__fetch {
    party__rooms *rooms;
    party__fetch *prev, *next; /* the loop's list in flight, or a room's held list */
    char id[PARTY_ID_MAX];
    /* the caller, found again when the answer comes */
    const party__party *caller_party;
    char caller_id[PARTY_ID_MAX];
    char *caller_name; /* set when the caller is addressed by name */
    char *tag;
    const party__party *target; /* NULL: unknown party */
    party__buf *request;        /* until started */
    int head_only;
    int decided; /* the answer is a failure set by fetch_set_failure */
    fetch_io *io;
    /* Allocated with the request, so that starting it and posting its
     * answer to the caller cannot fail for memory. */
    fetch_io *io_spare;
    party__event *event_spare;
    char *in; /* the answer as read */
    size_t in_len, in_cap, in_max;
    party__http_parser answer; /* reading the answer in f->in */
    party_response res;
    /* In a cluster with a secret: the target room's id, and the asking
     * of the backend where its owner is (a worker thread), which leaves
     * a connection to that node in remote_fd (-1: serve it here) */
    char target_id[PARTY_ID_MAX];
    uv_work_t lookup;
    int looked_up, remote_fd, remote_failed;
};

/* ---- building the request ---- */

static int path_valid(const char *s) {
    if (*s == '\0')
        return 1;
    if (*s != '/' && *s != '?')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '#')
            return 0;
    return 1;
}

/* Headers the runtime writes itself. */
static int header_reserved(const char *name) {
    /* The room-id header would route the request by id, past the name. */
    static const char *const reserved[] = {"host",
                                           "connection",
                                           "content-length",
                                           "transfer-encoding",
                                           "upgrade",
                                           PARTY__FROM_ROOM_HEADER,
                                           PARTY__ROOM_ID_HEADER,
                                           PARTY__CLUSTER_SECRET_HEADER};
    size_t i;
    for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return 1;
    return 0;
}

static size_t encoded_len(const char *s) {
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += (isalnum((unsigned char)*s) || strchr("-._~", *s) != NULL) ? 1 : 3;
    return n;
}

static char *encode_into(char *out, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c) != NULL) {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    return out;
}

/* The request's bytes; NULL with *err set. */
static party__buf *request_build(party_room *caller, const char *party, const char *room_name,
                                 const char *method, const char *path, const char *const *headers,
                                 const void *body, size_t len, int *err) {
    party__rooms *rooms = caller->rooms;
    const char *const *h;
    size_t head = 0, name_len = strlen(room_name);
    int with_length = len > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
    char length_line[48] = "";
    party__buf *buf;
    char *p;

    if (name_len == 0 || name_len > PARTY_MAX_TAG_LEN || !party__utf8_valid(room_name, name_len) ||
        !party__http_token_valid(method) || !path_valid(path)) {
        *err = PARTY_EINVAL;
        return NULL;
    }
    for (h = headers; h != NULL && h[0] != NULL; h += 2) {
        if (h[1] == NULL || !party__http_token_valid(h[0]) ||
            !party__http_field_value_valid(h[1]) || header_reserved(h[0])) {
            *err = PARTY_EINVAL;
            return NULL;
        }
        head += strlen(h[0]) + 2 + strlen(h[1]) + 2;
    }
    if (len > rooms->lp->cfg.max_body_bytes) {
        *err = PARTY_ETOOBIG;
        return NULL;
    }
    if (with_length)
        snprintf(length_line, sizeof(length_line), "Content-Length: %zu\r\n", len);
    head += strlen(method) + 2 + strlen(rooms->prefix) + 1 + strlen(party) + 1 +
            encoded_len(room_name) + strlen(path) + sizeof(" HTTP/1.1\r\n") - 1 +
            sizeof("Host: partyd\r\nConnection: close\r\n") - 1 + sizeof(PARTY__FROM_ROOM_HEADER) -
            1 + 2 + PARTY_ID_MAX - 1 + 2 + strlen(length_line) + 2;
    if (head > rooms->lp->cfg.max_header_bytes) {
        *err = PARTY_ETOOBIG;
        return NULL;
    }
    buf = party__buf_new(head + len);
    if (buf == NULL) {
        *err = PARTY_ENOMEM;
        return NULL;
    }
    p = buf->data;
    p += sprintf(p, "%s /%s/%s/", method, rooms->prefix, party);
    p = encode_into(p, room_name);
    p += sprintf(p, "%s HTTP/1.1\r\nHost: partyd\r\nConnection: close\r\n%s: %s\r\n%s", path,
                 PARTY__FROM_ROOM_HEADER, caller->id, length_line);
    for (h = headers; h != NULL && h[0] != NULL; h += 2)
        p += sprintf(p, "%s: %s\r\n", h[0], h[1]);
    memcpy(p, "\r\n", 2);
    p += 2;
    if (len > 0) {
        memcpy(p, body, len);
        p += len;
    }
    buf->len = (size_t)(p - buf->data);
    return buf;
}

/* ---- the loop's list of requests in flight ---- */

static void list_add(party__fetch *f) {
    party__rooms *rooms = f->rooms;
    f->prev = NULL;
    f->next = rooms->fetches;
    if (rooms->fetches != NULL)
        rooms->fetches->prev = f;
    rooms->fetches = f;
    rooms->n_fetches++;
}

static void list_remove(party__fetch *f) {
    party__rooms *rooms = f->rooms;
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        rooms->fetches = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
    rooms->n_fetches--;
}

void party__fetch_free(party__fetch *f) {
    if (f == NULL)
        return;
    party__buf_release(f->request);
    party__response_free(&f->res);
    party__free(f->io_spare);
    party__free(f->event_spare);
    party__free(f->in);
    party__free(f->caller_name);
    party__free(f->tag);
    party__free(f);
}

/* ---- finishing ---- */

static void on_io_closed(uv_handle_t *handle) {
    fetch_io *io = handle->data;
    if (--io->open == 0) {
        party__buf_release(io->request);
        party__free(io);
    }
}

static void io_close(fetch_io *io) {
    io->fetch = NULL;
    uv_timer_stop(&io->timer);
    uv_close((uv_handle_t *)&io->timer, on_io_closed);
    if (io->pipe_open)
        uv_close((uv_handle_t *)&io->pipe, on_io_closed);
}

/* The answer (or the failure standing for it) goes to the caller, found
 * again by name or id: it may have left memory while it waited. */
static void fetch_post(party__fetch *f) {
    party__rooms *rooms = f->rooms;
    party_room *room;
    party__event ev, *spare;

    if (rooms->lp->stopping || rooms->lp->finished) {
        party__fetch_free(f);
        return;
    }
    /* By the id it had: computing it again from the name could fail. */
    room = f->caller_name != NULL
               ? party__room_get_named(rooms, f->caller_party, f->caller_name, f->caller_id)
               : party__room_get_by_id(rooms, f->caller_party, f->caller_id);
    memset(&ev, 0, sizeof(ev));
    ev.type = PARTY__EV_RESPONSE;
    ev.fetch = f;
    spare = f->event_spare;
    f->event_spare = NULL;
    if (room != NULL) {
        if (party__room_post_with(room, &ev, spare) == 0)
            return;
    } else {
        party__free(spare);
    }
    /* Only a caller that left memory and cannot come back gets here. */
    party__log_error(rooms->lp, "room %s/%s: out of memory delivering the answer to request %s",
                     f->caller_party->name, f->caller_name ? f->caller_name : f->caller_id, f->id);
    party__fetch_free(f);
}

static void fetch_finish(party__fetch *f) {
    if (f->io != NULL) {
        io_close(f->io);
        f->io = NULL;
    }
    list_remove(f);
    party__free(f->in);
    f->in = NULL;
    f->in_len = f->in_cap = 0;
    fetch_post(f);
}

/* Replaces whatever was read with a runtime-made answer. */
static void fetch_set_failure(party__fetch *f, int status, const char *text) {
    f->decided = 1;
    party__response_free(&f->res);
    party__response_init(&f->res);
    party_response_text(&f->res, status, text);
    if (status != 404)
        party__log_warn(f->rooms->lp, "room %s/%s: request %s answered %d: %.*s",
                        f->caller_party->name, f->caller_name ? f->caller_name : f->caller_id,
                        f->id, status, (int)strcspn(text, "\n"), text);
}

static void fetch_fail(party__fetch *f, int status, const char *text) {
    fetch_set_failure(f, status, text);
    fetch_finish(f);
}

/* ---- reading the answer ---- */

/* Parses the answer read so far: 1 complete (f->res filled), 0 more
 * needed, -1 malformed (*why says how), -2 a body over max_body_bytes,
 * -3 out of memory. The runtime wrote it, but it is checked all the same:
 * a bad answer is a 502, never a crash. Its head is held to the limits of
 * a request head (max_header_bytes, max_headers). */
static int answer_parse(party__fetch *f, int eof, const char **why) {
    party__http_limits limits;
    party__http_response answer;
    party__http_error err;
    size_t used, i;
    char *body;
    int rc;

    limits.max_header_bytes = f->rooms->lp->cfg.max_header_bytes;
    limits.max_headers = f->rooms->lp->cfg.max_headers;
    limits.max_body = f->rooms->lp->cfg.max_body_bytes;
    rc = party__http_response_parse(&f->answer, f->in, f->in_len, eof, &limits, &answer, &used,
                                    &err);
    if (rc == PARTY__HTTP_AGAIN)
        return 0;
    if (rc == PARTY__HTTP_ERROR) {
        *why = err.reason;
        return err.status == 413 ? -2 : -1;
    }
    party__response_free(&f->res);
    party__response_init(&f->res);
    f->res.status = answer.status;
    for (i = 0; i < answer.n_headers; i++) {
        const party__http_header *h = &answer.headers[i];
        if (party__response_append_header(&f->res, h->name.ptr, h->name.len, h->value.ptr,
                                          h->value.len) != 0)
            return -3;
    }
    body = party__malloc(answer.body.len + 1);
    if (body == NULL)
        return -3;
    if (answer.body.len > 0)
        memcpy(body, answer.body.ptr, answer.body.len);
    body[answer.body.len] = '\0';
    f->res.body = body;
    f->res.body_len = answer.body.len;
    return 1;
}

static void on_answer_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
    fetch_io *io = handle->data;
    party__fetch *f = io->fetch;
    (void)suggested;

    *out = uv_buf_init(NULL, 0);
    if (f == NULL)
        return;
    if (f->in_len == f->in_cap) {
        size_t cap = f->in_cap == 0 ? ANSWER_BUF_FIRST : f->in_cap * 2;
        char *grown;
        if (cap > f->in_max)
            cap = f->in_max;
        if (cap <= f->in_cap)
            return; /* full: UV_ENOBUFS */
        grown = party__realloc(f->in, cap);
        if (grown == NULL)
            return;
        f->in = grown;
        f->in_cap = cap;
    }
    *out = uv_buf_init(f->in + f->in_len, (unsigned int)(f->in_cap - f->in_len));
}

static void on_answer_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    fetch_io *io = stream->data;
    party__fetch *f = io->fetch;
    const char *why = NULL;
    char text[160];
    int r;
    (void)buf;

    if (f == NULL || nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        fetch_fail(f, 502,
                   f->in_len >= f->in_max ? "the answer is larger than max_body_bytes\n"
                                          : "out of memory reading the answer\n");
        return;
    }
    if (nread > 0)
        f->in_len += (size_t)nread;
    r = answer_parse(f, nread < 0, &why);
    if (r == 1) {
        fetch_finish(f);
    } else if (r == -2) {
        fetch_fail(f, 502, "the answer is larger than max_body_bytes\n");
    } else if (r == -3) {
        fetch_fail(f, 502, "out of memory reading the answer\n");
    } else if (r < 0) {
        snprintf(text, sizeof(text), "malformed or incomplete answer: %s\n", why);
        fetch_fail(f, 502, text);
    }
}

static void on_request_written(uv_write_t *req, int status) {
    fetch_io *io = req->data;
    if (io->fetch != NULL && status < 0)
        fetch_fail(io->fetch, 503, "could not send the request\n");
}

static void on_timeout(uv_timer_t *timer) {
    fetch_io *io = timer->data;
    party__fetch *f = io->fetch;
    char text[96];

    if (f == NULL)
        return;
    if (f->decided) {
        fetch_finish(f); /* a failure decided when it started */
        return;
    }
    snprintf(text, sizeof(text), "no answer within fetch_timeout (%.3g s)\n",
             f->rooms->lp->cfg.fetch_timeout);
    fetch_fail(f, 504, text);
}

/* ---- another node's room ---- */

/* A TCP connection to "host:port" (IPv4, or IPv6 in brackets), blocking,
 * at most 2 s to connect; -1 on failure. A worker thread. */
static int connect_addr(const char *addr) {
    char host[128];
    const char *colon = strrchr(addr, ':');
    struct addrinfo hints, *res = NULL;
    struct timeval tv = {2, 0};
    size_t n;
    int fd = -1;

    if (colon == NULL || colon == addr)
        return -1;
    n = (size_t)(colon - addr);
    if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
        addr++;
        n -= 2;
    }
    if (n >= sizeof(host))
        return -1;
    memcpy(host, addr, n);
    host[n] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -1;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
                    connect(fd, res->ai_addr, res->ai_addrlen) != 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void lookup_work(uv_work_t *req) {
    party__fetch *f = req->data;
    char addr[128];
    if (party__backend_owner_addr(f->rooms->backend, f->target_id, addr, sizeof(addr)) != 1)
        return; /* no other live node holds it (or none can be told): here */
    f->remote_fd = connect_addr(addr);
    f->remote_failed = f->remote_fd < 0;
}

static void fetch_open(party__fetch *f);

static void lookup_done(uv_work_t *req, int status) {
    party__fetch *f = req->data;
    (void)status;
    f->rooms->n_busy--;
    fetch_open(f);
    party__loop_maybe_finish(f->rooms->lp);
}

/* The request with the cluster secret after its request line, for the
 * node that owns the room. NULL for want of memory. */
static party__buf *request_with_secret(const party__buf *request, const char *secret) {
    const char *eol = memchr(request->data, '\n', request->len);
    size_t line = eol != NULL ? (size_t)(eol - request->data) + 1 : request->len;
    size_t extra = sizeof(PARTY__CLUSTER_SECRET_HEADER ": \r\n") - 1 + strlen(secret);
    party__buf *buf = party__buf_new(request->len + extra);
    if (buf == NULL)
        return NULL;
    memcpy(buf->data, request->data, line);
    buf->len = line;
    buf->len += (size_t)snprintf(buf->data + buf->len, extra + 1,
                                 PARTY__CLUSTER_SECRET_HEADER ": %s\r\n", secret);
    memcpy(buf->data + buf->len, request->data + line, request->len - line);
    buf->len += request->len - line;
    return buf;
}

/* ---- starting ---- */

/* Starts the request: in a cluster whose nodes share a secret, first
 * asks where the target room's owner is (fetch_open follows). */
static void fetch_start(party__fetch *f) {
    party__rooms *rooms = f->rooms;
    f->remote_fd = -1;
    if (!f->looked_up && f->target != NULL && rooms->cluster_secret != NULL &&
        rooms->backend != NULL && rooms->backend->node != NULL && !rooms->lp->stopping) {
        f->looked_up = 1;
        f->lookup.data = f;
        /* Store work of the loop's rooms: the loop waits for it. */
        rooms->n_busy++;
        if (uv_queue_work(&rooms->lp->loop, &f->lookup, lookup_work, lookup_done) == 0)
            return;
        rooms->n_busy--;
    }
    fetch_open(f);
}

/* Opens the connection — internal, or to the node that owns the room —
 * and sends the request. Failures (unknown party, no descriptors, the
 * owner unreachable) are answers too, delivered from the next loop turn
 * so the caller never sees its answer while inside a callback or a
 * commit. */
static void fetch_open(party__fetch *f) {
    party__rooms *rooms = f->rooms;
    fetch_io *io;
    double timeout = rooms->lp->cfg.fetch_timeout;
    int fds[2] = {-1, -1};
    uv_buf_t wbuf;

    if (rooms->lp->stopping) {
        if (f->remote_fd >= 0)
            close(f->remote_fd);
        party__fetch_free(f);
        return;
    }
    io = f->io_spare;
    f->io_spare = NULL;
    io->fetch = f;
    f->io = io;
    uv_timer_init(&rooms->lp->loop, &io->timer);
    io->timer.data = io;
    io->open = 1;
    list_add(f);

    if (f->target == NULL) {
        fetch_set_failure(f, 404, "unknown party\n");
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    if (f->remote_failed) {
        fetch_set_failure(f, 503, "the node that holds the room cannot be reached\n");
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    if (f->remote_fd >= 0) {
        party__buf *with = request_with_secret(f->request, rooms->cluster_secret);
        fds[0] = f->remote_fd;
        f->remote_fd = -1;
        if (with == NULL) {
            close(fds[0]);
            fetch_set_failure(f, 503, "out of memory\n");
            uv_timer_start(&io->timer, on_timeout, 0, 0);
            return;
        }
        party__buf_release(f->request);
        f->request = with;
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        char text[128];
        snprintf(text, sizeof(text), "cannot open an internal connection: %s\n",
                 uv_strerror(uv_translate_sys_error(errno)));
        fetch_set_failure(f, 503, text);
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    if (fds[1] >= 0 && party__conn_adopt(rooms->lp, fds[1], 1) != 0) {
        close(fds[0]);
        fetch_set_failure(f, 503, "cannot serve an internal connection\n");
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    uv_pipe_init(&rooms->lp->loop, &io->pipe, 0);
    io->pipe.data = io;
    io->pipe_open = 1;
    io->open = 2;
    io->request = f->request;
    f->request = NULL;
    wbuf = uv_buf_init(io->request->data, (unsigned int)io->request->len);
    io->write.data = io;
    if (uv_pipe_open(&io->pipe, fds[0]) != 0) {
        close(fds[0]); /* not the handle's: ours to close */
        fetch_set_failure(f, 503, "cannot open an internal connection\n");
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    if (uv_write(&io->write, (uv_stream_t *)&io->pipe, &wbuf, 1, on_request_written) != 0 ||
        uv_read_start((uv_stream_t *)&io->pipe, on_answer_alloc, on_answer_read) != 0) {
        fetch_set_failure(f, 503, "cannot send on an internal connection\n");
        uv_timer_start(&io->timer, on_timeout, 0, 0);
        return;
    }
    if (timeout <= 0)
        timeout = FETCH_TIMEOUT_DEFAULT;
    uv_timer_start(&io->timer, on_timeout, (uint64_t)(timeout * 1000.0 + 0.5), 0);
}

void party__fetch_release_held(party_room *room, int committed) {
    party__fetch *f = room->fetch_held, *next;

    room->fetch_held = NULL;
    for (; f != NULL; f = next) {
        next = f->next;
        f->next = NULL;
        room->rooms->n_fetches_held--;
        if (committed) {
            fetch_start(f);
        } else {
            party__log_warn(room->rooms->lp,
                            "room %s/%s: request %s dropped: the write before it was not committed",
                            room->party->name, room->name ? room->name : room->id, f->id);
            party__fetch_free(f);
        }
    }
}

void party__fetch_stop_all(party__rooms *rooms) {
    party__fetch *f = rooms->fetches, *next;

    /* Every request goes: the list is emptied at once and walked by each
     * one's saved successor, so no freed request is read again. */
    rooms->fetches = NULL;
    for (; f != NULL; f = next) {
        next = f->next;
        f->prev = f->next = NULL;
        rooms->n_fetches--;
        if (f->io != NULL)
            io_close(f->io);
        party__fetch_free(f);
    }
}

void party__fetch_deliver(party_room *room, party__fetch *f) {
    const party_def *def = room->party->def;
    if (def->on_response == NULL) {
        party__log_debug(room->rooms->lp,
                         "room %s/%s: answer to request %s ignored (no on_response)",
                         room->party->name, room->name ? room->name : room->id, f->id);
        return;
    }
    def->on_response(room, f->id, f->tag != NULL ? f->tag : "", &f->res);
}

/* ---- public ---- */

/* The room's requests in flight: waiting for an answer (the loop's
 * list, by caller id: the room may have left memory meanwhile) or held by
 * its output gate. */
static size_t room_fetches(const party_room *room) {
    const party__fetch *f;
    size_t n = 0;
    for (f = room->rooms->fetches; f != NULL; f = f->next)
        n += memcmp(f->caller_id, room->id, PARTY_ID_MAX) == 0;
    for (f = room->fetch_held; f != NULL; f = f->next)
        n++;
    return n;
}

int party_room_fetch(party_room *room, const char *party, const char *room_name, const char *method,
                     const char *path, const char *const *headers, const void *body, size_t len,
                     const char *tag, char id_out[PARTY_ID_MAX]) {
    party__rooms *rooms;
    party__fetch *f;
    int err = PARTY_ENOMEM;

    if (room == NULL || party == NULL || room_name == NULL || (body == NULL && len > 0))
        return PARTY_EINVAL;
    rooms = room->rooms;
    if (!party__room_in_callback(room) || rooms->lp->stopping)
        return PARTY_ESTATE;
    if (rooms->n_fetches + rooms->n_fetches_held >= PARTY_MAX_FETCHES ||
        room_fetches(room) >= PARTY_MAX_ROOM_FETCHES)
        return PARTY_ELIMIT;
    if (method == NULL)
        method = "GET";
    if (path == NULL)
        path = "";
    f = party__calloc(1, sizeof(*f));
    if (f == NULL)
        return PARTY_ENOMEM;
    f->rooms = rooms;
    f->caller_party = room->party;
    memcpy(f->caller_id, room->id, PARTY_ID_MAX);
    f->target = party__party_find(rooms->parties, rooms->n_parties, party, strlen(party));
    f->head_only = strcmp(method, "HEAD") == 0;
    f->in_max = rooms->lp->cfg.max_body_bytes + rooms->lp->cfg.max_header_bytes + 1024;
    /* The runtime ends an answer by closing when it has no length. */
    party__http_response_parser_init(&f->answer, PARTY__HTTP_BODY_TO_EOF |
                                                     (f->head_only ? PARTY__HTTP_NO_BODY : 0));
    party__response_init(&f->res);
    f->res.status = 0; /* no answer yet */
    party__random_hex(32, f->id);
    if (f->target != NULL && rooms->cluster_secret != NULL &&
        party__room_id(rooms->lp->digest, f->target->name, room_name, f->target_id) != 0)
        f->target = NULL; /* cannot be addressed: answered 404 like an unknown party */
    f->request = request_build(room, f->target != NULL ? f->target->name : party, room_name, method,
                               path, headers, body, len, &err);
    if (f->request == NULL ||
        (room->by_name && (f->caller_name = party__strdup(room->name)) == NULL) ||
        (tag != NULL && (f->tag = party__strdup(tag)) == NULL) ||
        (f->io_spare = party__calloc(1, sizeof(*f->io_spare))) == NULL ||
        (f->event_spare = party__malloc(sizeof(*f->event_spare))) == NULL) {
        if (f->request != NULL)
            err = PARTY_ENOMEM;
        party__fetch_free(f);
        return err;
    }
    if (id_out != NULL)
        memcpy(id_out, f->id, PARTY_ID_MAX);
    if (party__room_holding(room)) {
        /* Output gate: it leaves with the output of this batch. */
        party__fetch **link = &room->fetch_held;
        while (*link != NULL)
            link = &(*link)->next;
        *link = f;
        rooms->n_fetches_held++;
        return 0;
    }
    fetch_start(f);
    return 0;
}
