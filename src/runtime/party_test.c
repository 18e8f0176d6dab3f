/* party_test: the in-process test harness (include/party_test.h). It owns a
 * runtime on a temporary data directory with a virtual clock, the client
 * ends of fake connections (socketpairs whose other end the runtime adopts
 * as if accepted), an RFC 6455 client built on the ws codec, and the loop
 * driving: uv_run(NOWAIT) interleaved with poll() on the loop's backend fd
 * and the client fds, always bounded by a real-time deadline. */
#include "party_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conn.h"
#include "http.h"
#include "http_client.h"
#include "log.h"
#include "room.h"
#include "router.h"
#include "runtime.h"
#include "storage.h"
#include "ws.h"
#include "alloc.h"

#define READ_CHUNK (64 * 1024)
#define MAX_BLOCK_MS 50 /* longest single poll: waits re-check their condition this often */
#define QUIET_ROUNDS 3  /* loop turns in a row with nothing to do before "idle" */
#define FREE_DRAIN_MS 30000
#define CLIENT_MAX_MESSAGE (UINT64_C(1) << 32)
#define ANSWER_MAX_HEAD (1024 * 1024) /* an answer's head: status line and fields */

typedef enum client_mode {
    CLIENT_HTTP,      /* collecting one HTTP response */
    CLIENT_HANDSHAKE, /* waiting for the answer to a WebSocket upgrade */
    CLIENT_WS,        /* WebSocket open (or closed) */
} client_mode;

typedef enum answer_state {
    ANSWER_WAITING, /* the answer is not complete yet */
    ANSWER_DONE,    /* the answer is in, described by client_answer */
    ANSWER_BAD,     /* not HTTP, or cut short by the end of the stream */
} answer_state;

/* The HTTP answer (or the refusal of an upgrade), as offsets into the
 * client's in[], which no longer grows once the answer is done. */
typedef struct client_answer {
    answer_state state;
    int status;
    size_t fields, fields_len; /* the header lines, each "Name: value\r\n" */
    size_t body, body_len;
} client_answer;

typedef struct message {
    struct message *next;
    int binary;
    size_t len;
    char data[]; /* len bytes + NUL */
} message;

struct party_test_conn {
    party_test *t;
    party_test_conn *prev, *next; /* t's list of clients */
    int fd;                       /* -1 once the transport ended on our side */
    client_mode mode;
    int ended; /* the transport is over */
    char *in;  /* HTTP and handshake bytes received */
    size_t in_len, in_cap;
    party__http_parser parser; /* reading the answer in in[] */
    client_answer answer;
    char *out; /* bytes to send */
    size_t out_len, out_off, out_cap;
    char accept[29]; /* the Sec-WebSocket-Accept we expect */
    party__ws_reader reader;
    message *head, *tail;
    int close_sent, close_received;
    int nomem; /* the harness ran out of memory receiving: the transport was ended */
    int close_code;
    char close_reason[PARTY_MAX_CLOSE_REASON + 1];
    unsigned long pongs;
};

struct party_test {
    party_runtime *rt;
    party_config cfg; /* its strings point at data_dir and prefix */
    char *data_dir;
    char *prefix;
    const party_def **defs;
    size_t n_defs;
    int timeout_ms;
    unsigned commit_delay_ms;
    uint64_t virtual_now;
    uint64_t past_failures; /* commit failures of earlier runtimes */
    uint64_t past_groups;   /* group commits of earlier runtimes */
    party_test_conn *clients;
    char *read_buf;
    int dropping; /* restart or free: outbound requests in flight are not waited for */
};

static uint64_t real_now_ms(void) {
    return uv_hrtime() / 1000000u;
}

/* ---- the runtime ---- */

/* A runtime on t's data directory, its lock taken; NULL with *err set
 * (PARTY_ENOMEM, or the data directory's PARTY_EBUSY / PARTY_EIO). */
static party_runtime *runtime_start(party_test *t, int *err) {
    party_runtime *rt = party_runtime_new(&t->cfg);
    size_t i;

    *err = PARTY_ENOMEM;
    if (rt == NULL)
        return NULL;
    for (i = 0; i < t->n_defs; i++) {
        if ((*err = party_runtime_add(rt, t->defs[i])) != 0) {
            party_runtime_free(rt);
            return NULL;
        }
    }
    rt->main.lp.virtual_clock = 1;
    rt->main.lp.virtual_now = t->virtual_now;
    rt->commit_delay_ms = rt->main.rooms.commit_delay_ms = t->commit_delay_ms;
    if ((*err = party__runtime_begin(rt)) != 0) {
        party_runtime_free(rt);
        return NULL;
    }
    return rt;
}

static void remove_tree(const char *path) {
    struct stat st;
    DIR *dir;
    struct dirent *ent;

    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && (dir = opendir(path)) != NULL) {
        while ((ent = readdir(dir)) != NULL) {
            char *child;
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
                continue;
            child = party__malloc(strlen(path) + strlen(ent->d_name) + 2);
            if (child == NULL)
                continue;
            sprintf(child, "%s/%s", path, ent->d_name);
            remove_tree(child);
            party__free(child);
        }
        closedir(dir);
        rmdir(path);
        return;
    }
    unlink(path);
}

party_test *party_test_new_with(const party_config *cfg) {
    party_test *t = party__calloc(1, sizeof(*t));
    const char *tmp = getenv("TMPDIR");
    int made_dir = 0, r;

    if (t == NULL)
        return NULL;
    if (cfg != NULL) {
        t->cfg = *cfg;
    } else {
        party_config_init(&t->cfg);
        t->cfg.log_level = PARTY__LOG_WARN;
    }
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    t->data_dir = party__malloc(strlen(tmp) + sizeof("/party-test-XXXXXX"));
    t->prefix = party__strdup(t->cfg.prefix != NULL ? t->cfg.prefix : "parties");
    t->read_buf = party__malloc(READ_CHUNK);
    if (t->data_dir == NULL || t->prefix == NULL || t->read_buf == NULL)
        goto fail;
    sprintf(t->data_dir, "%s/party-test-XXXXXX", tmp);
    if (mkdtemp(t->data_dir) == NULL)
        goto fail;
    made_dir = 1;
    t->cfg.data_dir = t->data_dir;
    t->cfg.prefix = t->prefix;
    t->cfg.host = "127.0.0.1";
    t->cfg.port = 0;
    t->timeout_ms = PARTY_TEST_TIMEOUT_MS;
    t->virtual_now = (uint64_t)PARTY_TEST_EPOCH_MS;
    t->rt = runtime_start(t, &r);
    if (t->rt == NULL)
        goto fail;
    return t;
fail:
    if (made_dir)
        remove_tree(t->data_dir);
    party__free(t->data_dir);
    party__free(t->prefix);
    party__free(t->read_buf);
    party__free(t);
    return NULL;
}

party_test *party_test_new(void) {
    return party_test_new_with(NULL);
}

int party_test_add(party_test *t, const party_def *def) {
    const party_def **grown;
    int r = party_runtime_add(t->rt, def);

    if (r != 0)
        return r;
    grown = party__realloc(t->defs, (t->n_defs + 1) * sizeof(*grown));
    if (grown == NULL)
        return PARTY_ENOMEM; /* registered now, but not again after a restart */
    t->defs = grown;
    t->defs[t->n_defs++] = def;
    return 0;
}

party_runtime *party_test_runtime(party_test *t) {
    return t->rt;
}

const char *party_test_data_dir(party_test *t) {
    return t->data_dir;
}

void party_test_set_timeout(party_test *t, int ms) {
    t->timeout_ms = ms < 1 ? 1 : ms;
}

const char *party_test_strerror(int err) {
    if (err == PARTY_TEST_ETIMEDOUT)
        return "timed out waiting (party_test_set_timeout)";
    return party_strerror(err);
}

/* ---- client sockets ---- */

static int out_append(party_test_conn *c, const void *data, size_t len) {
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *grown;
        while (cap < c->out_len + len)
            cap *= 2;
        grown = party__realloc(c->out, cap);
        if (grown == NULL)
            return PARTY_ENOMEM;
        c->out = grown;
        c->out_cap = cap;
    }
    if (len > 0)
        memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

static int in_append(party_test_conn *c, const char *data, size_t len) {
    if (c->in_len + len + 1 > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 4096;
        char *grown;
        while (cap < c->in_len + len + 1)
            cap *= 2;
        grown = party__realloc(c->in, cap);
        if (grown == NULL)
            return PARTY_ENOMEM;
        c->in = grown;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
    c->in[c->in_len] = '\0';
    return 0;
}

/* The transport is over on our side: the socket is closed. A WebSocket
 * that saw no Close ended abnormally (1006). */
static void answer_read(party_test_conn *c, int eof);

static void client_end(party_test_conn *c) {
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->ended = 1;
    c->out_len = c->out_off = 0;
    /* The end of the stream ends an answer whose body runs to it. */
    if (c->mode != CLIENT_WS)
        answer_read(c, 1);
    if (c->mode == CLIENT_WS && !c->close_received) {
        c->close_code = PARTY__WS_ABNORMAL;
        c->close_reason[0] = '\0';
    }
}

/* Builds one masked client frame into the send buffer. */
static int client_frame(party_test_conn *c, int opcode, const void *payload, size_t len) {
    char header[14];
    uint8_t key[4];
    size_t header_len, start;
    int r;

    if (RAND_bytes(key, sizeof(key)) != 1)
        uv_random(NULL, NULL, key, sizeof(key), 0, NULL);
    header_len = party__ws_header_write(header, opcode, 1, len, key);
    r = out_append(c, header, header_len);
    if (r != 0)
        return r;
    start = c->out_len;
    r = out_append(c, payload, len);
    if (r != 0) {
        c->out_len -= header_len;
        return r;
    }
    party__ws_mask(c->out + start, len, key, 0);
    return 0;
}

static int close_frame(party_test_conn *c, int code, const char *reason, size_t reason_len) {
    char payload[2 + PARTY_MAX_CLOSE_REASON];
    if (code == 0)
        return client_frame(c, PARTY__WS_CLOSE, NULL, 0);
    payload[0] = (char)((code >> 8) & 0xff);
    payload[1] = (char)(code & 0xff);
    if (reason_len > 0)
        memcpy(payload + 2, reason, reason_len);
    return client_frame(c, PARTY__WS_CLOSE, payload, 2 + reason_len);
}

static int on_client_ws_event(void *arg, const party__ws_event *ev) {
    party_test_conn *c = arg;
    message *m;

    switch (ev->type) {
    case PARTY__WS_EV_MESSAGE:
        m = party__malloc(sizeof(*m) + ev->data.len + 1);
        if (m == NULL) {
            /* Not a gap the test cannot see: recv reports it. */
            c->nomem = 1;
            client_end(c);
            return 1;
        }
        m->next = NULL;
        m->binary = ev->binary;
        m->len = ev->data.len;
        if (ev->data.len > 0)
            memcpy(m->data, ev->data.ptr, ev->data.len);
        m->data[ev->data.len] = '\0';
        if (c->tail != NULL)
            c->tail->next = m;
        else
            c->head = m;
        c->tail = m;
        return 0;
    case PARTY__WS_EV_PING:
        if (client_frame(c, PARTY__WS_PONG, ev->data.ptr, ev->data.len) != 0) {
            c->nomem = 1;
            client_end(c);
            return 1;
        }
        return 0;
    case PARTY__WS_EV_PONG:
        c->pongs++;
        return 0;
    case PARTY__WS_EV_CLOSE: {
        size_t n = ev->data.len < PARTY_MAX_CLOSE_REASON ? ev->data.len : PARTY_MAX_CLOSE_REASON;
        c->close_received = 1;
        c->close_code = ev->close_code;
        memcpy(c->close_reason, ev->data.ptr, n);
        c->close_reason[n] = '\0';
        if (!c->close_sent) {
            /* Answer as a browser does: echo the code. */
            c->close_sent = 1;
            /* Without memory for the echo the transport ends: the server
             * need not wait for it, and the code is known already. */
            if (close_frame(c, ev->close_code == PARTY__WS_NO_STATUS ? 0 : ev->close_code, NULL,
                            0) != 0)
                client_end(c);
        }
        return 1;
    }
    case PARTY__WS_EV_ERROR:
        fprintf(stderr, "party_test: the server broke RFC 6455 (%s); dropping the connection\n",
                ev->error);
        client_end(c);
        return 1;
    }
    return 0;
}

/* Finds header name in a block of "Name: value\r\n" lines (up to a blank
 * line or the NUL), as party_test_response hands them out; the value
 * (trimmed) into *len. NULL when absent. */
static const char *header_find(const char *block, const char *name, size_t *len) {
    size_t name_len = strlen(name);
    const char *line = block;

    while (line != NULL && *line != '\0') {
        const char *eol = strstr(line, "\r\n");
        const char *end = eol != NULL ? eol : line + strlen(line);
        if (end == line)
            break; /* the blank line: the head is over */
        if ((size_t)(end - line) > name_len && line[name_len] == ':' &&
            strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            *len = (size_t)(end - v);
            return v;
        }
        line = eol != NULL ? eol + 2 : NULL;
    }
    return NULL;
}

static void client_ws_input(party_test_conn *c, char *data, size_t len) {
    int r;
    if (c->close_received || c->ended)
        return;
    r = party__ws_reader_feed(&c->reader, data, len, on_client_ws_event, c);
    if (r == PARTY_ENOMEM) {
        c->nomem = 1;
        client_end(c);
    }
}

/* The answer to a WebSocket upgrade is in: a 101 with the right
 * Sec-WebSocket-Accept opens the WebSocket (bytes behind it are frames);
 * anything else is an HTTP answer. */
static void handshake_answered(party_test_conn *c, const party__http_response *res, size_t used) {
    party__slice accept = party__http_response_header_get(res, "Sec-WebSocket-Accept");
    size_t rest;

    if (res->status != 101) {
        c->mode = CLIENT_HTTP;
        return;
    }
    if (accept.len != strlen(c->accept) || memcmp(accept.ptr, c->accept, accept.len) != 0) {
        fprintf(stderr, "party_test: 101 without the right Sec-WebSocket-Accept\n");
        c->mode = CLIENT_HTTP;
        client_end(c);
        return;
    }
    c->mode = CLIENT_WS;
    rest = c->in_len - used;
    if (rest > 0) {
        memmove(c->in, c->in + used, rest);
        c->in_len = 0;
        client_ws_input(c, c->in, rest);
    } else {
        c->in_len = 0;
    }
}

/* Reads the answer in in[] as far as it has come; eof: the transport
 * ended, so nothing more will. */
static void answer_read(party_test_conn *c, int eof) {
    static const party__http_limits limits = {ANSWER_MAX_HEAD, PARTY__HTTP_MAX_HEADERS, SIZE_MAX};
    party__http_response res;
    party__http_error err;
    size_t used;
    int rc;

    if (c->answer.state != ANSWER_WAITING)
        return;
    rc = party__http_response_parse(&c->parser, c->in, c->in_len, eof, &limits, &res, &used, &err);
    if (rc == PARTY__HTTP_AGAIN)
        return;
    if (rc == PARTY__HTTP_ERROR) {
        c->answer.state = ANSWER_BAD;
        if (c->mode == CLIENT_HANDSHAKE)
            c->mode = CLIENT_HTTP;
        return;
    }
    c->answer.state = ANSWER_DONE;
    c->answer.status = res.status;
    c->answer.fields = res.status_line.len + 2;
    c->answer.fields_len = res.head_len - 2 - c->answer.fields;
    c->answer.body = res.body.ptr != NULL ? (size_t)(res.body.ptr - c->in) : 0;
    c->answer.body_len = res.body.len;
    if (c->mode == CLIENT_HANDSHAKE)
        handshake_answered(c, &res, used);
}

static void client_input(party_test_conn *c, char *data, size_t len) {
    switch (c->mode) {
    case CLIENT_WS:
        client_ws_input(c, data, len);
        break;
    case CLIENT_HANDSHAKE:
    case CLIENT_HTTP:
        if (c->answer.state != ANSWER_WAITING)
            break; /* the answer is whole: what follows is not ours to read */
        if (in_append(c, data, len) != 0) {
            c->nomem = 1;
            client_end(c);
            return;
        }
        answer_read(c, 0);
        break;
    }
}

/* Writes what the socket takes and reads what it has, without blocking. */
static void client_io(party_test_conn *c) {
    party_test *t = c->t;
    int again;

    do {
        size_t queued;
        while (c->fd >= 0 && c->out_off < c->out_len) {
            ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                client_end(c); /* the server is gone */
                return;
            }
        }
        if (c->out_off == c->out_len)
            c->out_off = c->out_len = 0;
        queued = c->out_len;
        while (c->fd >= 0) {
            ssize_t n = recv(c->fd, t->read_buf, READ_CHUNK, 0);
            if (n > 0) {
                client_input(c, t->read_buf, (size_t)n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else {
                client_end(c); /* EOF or reset */
                return;
            }
        }
        if (c->fd < 0)
            return;
        /* The close handshake is over on our side once both Close frames
         * went by: end the transport, so the server need not linger. */
        if (c->mode == CLIENT_WS && c->close_received && c->close_sent && c->out_len == 0) {
            client_end(c);
            return;
        }
        /* Reading queued frames (a Close reply, a Pong): write them too. */
        again = c->out_len > queued;
    } while (again);
}

static void clients_io(party_test *t) {
    party_test_conn *c;
    for (c = t->clients; c != NULL; c = c->next)
        client_io(c);
}

static party_test_conn *client_open(party_test *t, int internal, client_mode mode) {
    party_test_conn *c = party__calloc(1, sizeof(*c));
    int fds[2], r;

    if (c == NULL)
        return NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        party__free(c);
        return NULL;
    }
    if (fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        party__free(c);
        return NULL;
    }
    r = party__conn_adopt(&t->rt->main.lp, fds[1], internal);
    if (r != 0) {
        close(fds[0]); /* the runtime owns fds[1] whatever happened */
        party__free(c);
        return NULL;
    }
    c->t = t;
    c->fd = fds[0];
    c->mode = mode;
    /* partyd ends an answer without a length by closing. */
    party__http_response_parser_init(&c->parser, PARTY__HTTP_BODY_TO_EOF);
    party__ws_reader_init(&c->reader, CLIENT_MAX_MESSAGE, 0);
    c->next = t->clients;
    if (t->clients != NULL)
        t->clients->prev = c;
    t->clients = c;
    return c;
}

static void client_free(party_test_conn *c) {
    message *m, *next;
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->t->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    for (m = c->head; m != NULL; m = next) {
        next = m->next;
        party__free(m);
    }
    party__ws_reader_reset(&c->reader);
    party__free(c->in);
    party__free(c->out);
    party__free(c);
}

/* ---- driving the loop ---- */

static void pump(party_test *t) {
    clients_io(t);
    uv_run(&t->rt->main.lp.loop, UV_RUN_NOWAIT);
    clients_io(t);
}

/* Polls the loop's backend fd and every open client socket (for input,
 * and for room to write when it has output queued). Returns poll's result;
 * -1 without memory for the set. */
static int poll_all(party_test *t, int timeout_ms) {
    struct pollfd stack[16], *fds = stack;
    party_test_conn *c;
    nfds_t n = 1, i = 1;
    int r;

    for (c = t->clients; c != NULL; c = c->next)
        n += c->fd >= 0;
    if (n > sizeof(stack) / sizeof(stack[0]) && (fds = party__malloc(n * sizeof(*fds))) == NULL)
        return -1;
    fds[0].fd = uv_backend_fd(&t->rt->main.lp.loop);
    fds[0].events = POLLIN;
    for (c = t->clients; c != NULL; c = c->next) {
        if (c->fd < 0)
            continue;
        fds[i].fd = c->fd;
        fds[i].events = (short)(POLLIN | (c->out_len > c->out_off ? POLLOUT : 0));
        i++;
    }
    r = poll(fds, n, timeout_ms);
    if (fds != stack)
        party__free(fds);
    return r;
}

/* Sleeps in poll() until the loop or a client socket has something, at
 * most max_ms. */
static void block(party_test *t, int max_ms) {
    int loop_ms = uv_backend_timeout(&t->rt->main.lp.loop);

    if (max_ms > MAX_BLOCK_MS)
        max_ms = MAX_BLOCK_MS;
    /* A loop with nothing alive says 0 ("do not block"), but nothing will
     * come from it then: wait for the client sockets instead. */
    if (uv_loop_alive(&t->rt->main.lp.loop) && loop_ms >= 0 && loop_ms < max_ms)
        max_ms = loop_ms;
    (void)poll_all(t, max_ms);
}

typedef int (*condition_fn)(party_test *t, void *arg);

/* Runs the loop until done() holds, bounded by the timeout. */
static int wait_until(party_test *t, condition_fn done, void *arg, int timeout_ms) {
    uint64_t deadline = real_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        uint64_t now;
        pump(t);
        if (done(t, arg))
            return 0;
        now = real_now_ms();
        if (now >= deadline)
            return PARTY_TEST_ETIMEDOUT;
        block(t, (int)(deadline - now));
    }
}

/* 1 if nothing is to do right now: no store work, no queued events, no
 * output unwritten, no socket with input. */
static int quiet_now(party_test *t) {
    party_runtime *rt = t->rt;
    party_test_conn *c;

    if (rt->main.rooms.n_busy > 0 || rt->main.rooms.ready_head != NULL ||
        rt->main.lp.dirty_head != NULL || rt->main.rooms.n_fetches > 0 ||
        (!t->dropping && rt->main.lp.http_stats.in_flight > 0) ||
        rt->main.lp.loop.closing_handles != NULL)
        return 0;
    for (c = t->clients; c != NULL; c = c->next)
        if (c->fd >= 0 && c->out_len > c->out_off)
            return 0;
    return poll_all(t, 0) == 0;
}

static int wait_idle(party_test *t, int timeout_ms) {
    uint64_t deadline = real_now_ms() + (uint64_t)timeout_ms;
    int quiet = 0;

    for (;;) {
        uint64_t now;
        pump(t);
        /* Quiet several turns in a row: what one turn deferred (write
         * callbacks, closing handles) has run in the next. */
        if (quiet_now(t)) {
            if (++quiet >= QUIET_ROUNDS)
                return 0;
            continue;
        }
        quiet = 0;
        now = real_now_ms();
        if (now >= deadline)
            return PARTY_TEST_ETIMEDOUT;
        block(t, (int)(deadline - now));
    }
}

int party_test_run_until_idle(party_test *t) {
    return wait_idle(t, t->timeout_ms);
}

/* ---- WebSocket connections ---- */

static int handshake_over(party_test *t, void *arg) {
    party_test_conn *c = arg;
    (void)t;
    return c->mode != CLIENT_HANDSHAKE || c->ended;
}

static int http_over(party_test *t, void *arg) {
    party_test_conn *c = arg;
    (void)t;
    return c->ended || c->answer.state != ANSWER_WAITING;
}

party_test_conn *party_test_connect_with_headers(party_test *t, const char *target,
                                                 const char *headers, int *status) {
    party_test_conn *c;
    unsigned char raw[16];
    char key[25];
    char *req;
    size_t cap;
    int n;

    if (status != NULL)
        *status = 0;
    if (t == NULL || target == NULL)
        return NULL;
    c = client_open(t, 0, CLIENT_HANDSHAKE);
    if (c == NULL)
        return NULL;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL);
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    cap = strlen(target) + (headers != NULL ? strlen(headers) : 0) + 256;
    req = party__malloc(cap);
    if (req == NULL ||
        party__ws_accept_value(NULL, party__slice_make(key, strlen(key)), c->accept) != 0) {
        party__free(req);
        client_free(c);
        return NULL;
    }
    n = snprintf(req, cap,
                 "GET %s HTTP/1.1\r\nHost: party.test\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "%s\r\n",
                 target, key, headers != NULL ? headers : "");
    if (out_append(c, req, (size_t)n) != 0) {
        party__free(req);
        client_free(c);
        return NULL;
    }
    party__free(req);
    if (wait_until(t, handshake_over, c, t->timeout_ms) != 0) {
        client_free(c);
        return NULL;
    }
    if (c->mode == CLIENT_WS && !c->ended) {
        if (status != NULL)
            *status = 101;
        return c;
    }
    /* Refused: read the whole answer, so the server is done with it. */
    if (c->mode == CLIENT_HTTP && wait_until(t, http_over, c, t->timeout_ms) == 0 &&
        c->answer.state == ANSWER_DONE && status != NULL)
        *status = c->answer.status;
    client_free(c);
    return NULL;
}

party_test_conn *party_test_connect(party_test *t, const char *target, int *status) {
    return party_test_connect_with_headers(t, target, NULL, status);
}

static int ws_done(const party_test_conn *c) {
    return c->close_received || c->ended;
}

int party_test_send(party_test_conn *conn, const void *data, size_t len, int binary) {
    int r;
    if (conn == NULL || (data == NULL && len > 0))
        return PARTY_EINVAL;
    if (ws_done(conn) || conn->close_sent)
        return PARTY_ECLOSED;
    r = client_frame(conn, binary ? PARTY__WS_BINARY : PARTY__WS_TEXT, data, len);
    if (r == 0)
        client_io(conn);
    return r;
}

int party_test_send_text(party_test_conn *conn, const char *text) {
    if (text == NULL)
        return PARTY_EINVAL;
    return party_test_send(conn, text, strlen(text), 0);
}

typedef struct pong_wait {
    party_test_conn *conn;
    unsigned long pongs;
} pong_wait;

static int pong_came(party_test *t, void *arg) {
    pong_wait *w = arg;
    (void)t;
    return w->conn->pongs > w->pongs || ws_done(w->conn);
}

int party_test_ping(party_test_conn *conn, const void *data, size_t len) {
    pong_wait w;
    int r;

    if (conn == NULL || len > 125 || (data == NULL && len > 0))
        return PARTY_EINVAL;
    if (ws_done(conn) || conn->close_sent)
        return PARTY_ECLOSED;
    w.conn = conn;
    w.pongs = conn->pongs;
    r = client_frame(conn, PARTY__WS_PING, data, len);
    if (r != 0)
        return r;
    r = wait_until(conn->t, pong_came, &w, conn->t->timeout_ms);
    if (r != 0)
        return r;
    return conn->pongs > w.pongs ? 0 : PARTY_ECLOSED;
}

static int message_or_end(party_test *t, void *arg) {
    party_test_conn *c = arg;
    (void)t;
    return c->head != NULL || ws_done(c);
}

int party_test_recv(party_test_conn *conn, void **data, size_t *len, int *binary) {
    message *m;
    int r;

    if (conn == NULL || data == NULL)
        return PARTY_EINVAL;
    *data = NULL;
    if (len != NULL)
        *len = 0;
    r = wait_until(conn->t, message_or_end, conn, conn->t->timeout_ms);
    if (r != 0)
        return r;
    m = conn->head;
    if (m == NULL)
        return conn->nomem ? PARTY_ENOMEM : PARTY_ECLOSED;
    conn->head = m->next;
    if (conn->head == NULL)
        conn->tail = NULL;
    if (len != NULL)
        *len = m->len;
    if (binary != NULL)
        *binary = m->binary;
    /* The message block becomes the caller's buffer. */
    memmove(m, m->data, m->len + 1);
    *data = m;
    return 0;
}

int party_test_recv_text(party_test_conn *conn, char **text) {
    void *data;
    int binary = 0, r;

    if (text == NULL)
        return PARTY_EINVAL;
    *text = NULL;
    r = party_test_recv(conn, &data, NULL, &binary);
    if (r != 0)
        return r;
    if (binary) {
        party__free(data);
        return PARTY_EINVAL;
    }
    *text = data;
    return 0;
}

int party_test_close_info(party_test_conn *conn, int *code, const char **reason) {
    if (conn == NULL)
        return PARTY_EINVAL;
    if (!ws_done(conn))
        return PARTY_ESTATE;
    if (code != NULL)
        *code = conn->close_code;
    if (reason != NULL)
        *reason = conn->close_reason;
    return 0;
}

static int close_reply_came(party_test *t, void *arg) {
    (void)t;
    return ws_done(arg);
}

int party_test_close(party_test_conn *conn, int code, const char *reason) {
    size_t reason_len = reason != NULL ? strlen(reason) : 0;
    int r;

    if (conn == NULL || code < 0 || code > 65535 || reason_len > PARTY_MAX_CLOSE_REASON)
        return PARTY_EINVAL;
    if (ws_done(conn) || conn->close_sent)
        return PARTY_ECLOSED;
    r = close_frame(conn, code, reason, reason_len);
    if (r != 0)
        return r;
    conn->close_sent = 1;
    r = wait_until(conn->t, close_reply_came, conn, conn->t->timeout_ms);
    if (r != 0)
        return r;
    return conn->close_received ? 0 : PARTY_EIO;
}

int party_test_drop(party_test_conn *conn) {
    if (conn == NULL)
        return PARTY_EINVAL;
    if (ws_done(conn))
        return 0;
    client_end(conn);
    return wait_idle(conn->t, conn->t->timeout_ms);
}

void party_test_conn_free(party_test_conn *conn) {
    client_free(conn);
}

/* ---- HTTP ---- */

static void response_clear(party_test_response *res) {
    res->status = 0;
    res->headers = NULL;
    res->body = NULL;
    res->body_len = 0;
}

/* Copies the answer read on c into res. */
static int response_parse(const party_test_conn *c, party_test_response *res) {
    const client_answer *a = &c->answer;

    if (a->state != ANSWER_DONE)
        return PARTY_EIO; /* not HTTP, or cut short */
    res->headers = party__malloc(a->fields_len + 1);
    res->body = party__malloc(a->body_len + 1);
    if (res->headers == NULL || res->body == NULL) {
        party__free(res->headers);
        party__free(res->body);
        response_clear(res);
        return PARTY_ENOMEM;
    }
    memcpy(res->headers, c->in + a->fields, a->fields_len);
    res->headers[a->fields_len] = '\0';
    if (a->body_len > 0)
        memcpy(res->body, c->in + a->body, a->body_len);
    res->body[a->body_len] = '\0';
    res->body_len = a->body_len;
    res->status = a->status;
    return 0;
}

static int http_exchange(party_test *t, int internal, const char *method, const char *target,
                         const char *headers, const void *body, size_t len,
                         party_test_response *res) {
    party_test_conn *c;
    char *head;
    size_t cap;
    int n, r;

    cap = strlen(method) + strlen(target) + (headers != NULL ? strlen(headers) : 0) + 128;
    head = party__malloc(cap);
    if (head == NULL)
        return PARTY_ENOMEM;
    if (body != NULL)
        n = snprintf(head, cap,
                     "%s %s HTTP/1.1\r\nHost: party.test\r\n%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     method, target, headers != NULL ? headers : "", len);
    else
        n = snprintf(head, cap, "%s %s HTTP/1.1\r\nHost: party.test\r\n%sConnection: close\r\n\r\n",
                     method, target, headers != NULL ? headers : "");
    c = client_open(t, internal, CLIENT_HTTP);
    if (c == NULL) {
        party__free(head);
        return PARTY_ENOMEM;
    }
    if (strcasecmp(method, "HEAD") == 0)
        party__http_response_parser_init(&c->parser, PARTY__HTTP_BODY_TO_EOF | PARTY__HTTP_NO_BODY);
    r = out_append(c, head, (size_t)n);
    party__free(head);
    if (r == 0 && body != NULL)
        r = out_append(c, body, len);
    if (r == 0)
        r = wait_until(t, http_over, c, t->timeout_ms);
    if (r == 0)
        r = c->nomem ? PARTY_ENOMEM : response_parse(c, res);
    client_free(c);
    return r;
}

int party_test_request(party_test *t, const char *method, const char *target, const char *headers,
                       const void *body, size_t len, party_test_response *res) {
    if (res == NULL)
        return PARTY_EINVAL;
    response_clear(res);
    if (t == NULL || method == NULL || target == NULL || (body == NULL && len > 0))
        return PARTY_EINVAL;
    return http_exchange(t, 0, method, target, headers, body, len, res);
}

int party_test_request_room_id(party_test *t, const char *party, const char *room_id,
                               const char *method, const char *path_rest, const char *headers,
                               const void *body, size_t len, party_test_response *res) {
    char *target, *all_headers;
    int r;

    if (res == NULL)
        return PARTY_EINVAL;
    response_clear(res);
    if (t == NULL || party == NULL || room_id == NULL || method == NULL ||
        (body == NULL && len > 0))
        return PARTY_EINVAL;
    if (path_rest == NULL)
        path_rest = "";
    target = party__malloc(strlen(t->rt->prefix) + strlen(party) + strlen(path_rest) + 8);
    all_headers = party__malloc(strlen(PARTY__ROOM_ID_HEADER) + strlen(room_id) + 8 +
                                (headers != NULL ? strlen(headers) : 0));
    if (target == NULL || all_headers == NULL) {
        party__free(target);
        party__free(all_headers);
        return PARTY_ENOMEM;
    }
    sprintf(target, "/%s/%s/_%s", t->rt->prefix, party, path_rest);
    sprintf(all_headers, "%s: %s\r\n%s", PARTY__ROOM_ID_HEADER, room_id,
            headers != NULL ? headers : "");
    r = http_exchange(t, 1, method, target, all_headers, body, len, res);
    party__free(target);
    party__free(all_headers);
    return r;
}

char *party_test_response_header(const party_test_response *res, const char *name) {
    size_t len;
    const char *v;
    char *copy;

    if (res == NULL || res->headers == NULL || name == NULL)
        return NULL;
    v = header_find(res->headers, name, &len);
    if (v == NULL || (copy = party__malloc(len + 1)) == NULL)
        return NULL;
    memcpy(copy, v, len);
    copy[len] = '\0';
    return copy;
}

void party_test_response_free(party_test_response *res) {
    if (res == NULL)
        return;
    party__free(res->headers);
    party__free(res->body);
    response_clear(res);
}

/* ---- time and memory ---- */

int64_t party_test_now(party_test *t) {
    return (int64_t)t->rt->main.lp.virtual_now;
}

int party_test_advance(party_test *t, int64_t ms) {
    int r;
    if (t == NULL || ms < 0)
        return PARTY_EINVAL;
    /* Whatever is running now finishes at the old time first. */
    r = wait_idle(t, t->timeout_ms);
    if (r != 0)
        return r;
    party__runtime_advance(t->rt, (uint64_t)ms);
    t->virtual_now = t->rt->main.lp.virtual_now;
    return wait_idle(t, t->timeout_ms);
}

int party_test_evict_id(party_test *t, const char *room_id) {
    party_room *room;
    int r;

    if (t == NULL || room_id == NULL)
        return PARTY_EINVAL;
    r = wait_idle(t, t->timeout_ms);
    if (r != 0)
        return r;
    room = party__room_find(party__runtime_rooms(t->rt), room_id);
    if (room == NULL)
        return PARTY_ENOTFOUND;
    r = party__room_evict(room);
    if (r != 0)
        return r;
    return wait_idle(t, t->timeout_ms);
}

/* Waits until nothing is under way, applies act to the room called room of
 * party, and waits again (what act started finishes). */
static int act_on_named_room(party_test *t, const char *party, const char *room,
                             int (*act)(party_room *room)) {
    party_room *found;
    int r;

    if (t == NULL || party == NULL || room == NULL)
        return PARTY_EINVAL;
    r = wait_idle(t, t->timeout_ms);
    if (r != 0)
        return r;
    /* Found by name, not by a computed id: hashing can run out of memory. */
    found = party__room_find_named(party__runtime_rooms(t->rt), party, room);
    if (found == NULL)
        return PARTY_ENOTFOUND;
    r = act(found);
    if (r != 0)
        return r;
    return wait_idle(t, t->timeout_ms);
}

int party_test_evict(party_test *t, const char *party, const char *room) {
    return act_on_named_room(t, party, room, party__room_evict);
}

int party_test_hibernate(party_test *t, const char *party, const char *room) {
    return act_on_named_room(t, party, room, party__room_hibernate);
}

int party_test_loaded(party_test *t, const char *party, const char *room) {
    party_room *found;
    if (t == NULL || party == NULL || room == NULL)
        return 0;
    found = party__room_find_named(party__runtime_rooms(t->rt), party, room);
    return found != NULL && found->life == PARTY__ROOM_READY;
}

int party_test_in_memory_id(party_test *t, const char *room_id) {
    if (t == NULL || room_id == NULL)
        return 0;
    return party__room_find(party__runtime_rooms(t->rt), room_id) != NULL;
}

int party_test_in_memory(party_test *t, const char *party, const char *room) {
    if (t == NULL || party == NULL || room == NULL)
        return 0;
    return party__room_find_named(party__runtime_rooms(t->rt), party, room) != NULL;
}

static int no_conns_and_idle(party_test *t, void *arg) {
    (void)arg;
    return t->rt->main.lp.n_conns == 0 && quiet_now(t);
}

/* Drops every client, waits until the runtime has no connection and no
 * work left, so it can be freed safely. */
static int runtime_drain(party_test *t, int timeout_ms) {
    party_test_conn *c;
    int r;

    /* A process that stops drops its outbound requests in flight, as it
     * drops its connections: their rooms' next incarnation answers them. */
    t->dropping = 1;
    r = wait_idle(t, timeout_ms);
    if (r != 0) {
        t->dropping = 0;
        return r;
    }
    for (c = t->clients; c != NULL; c = c->next)
        client_end(c);
    r = wait_until(t, no_conns_and_idle, NULL, timeout_ms);
    if (r == 0)
        r = wait_idle(t, timeout_ms);
    t->dropping = 0;
    return r;
}

int party_test_restart(party_test *t) {
    party_runtime *fresh;
    int r;

    if (t == NULL)
        return PARTY_EINVAL;
    r = runtime_drain(t, t->timeout_ms);
    if (r != 0)
        return r;
    t->virtual_now = t->rt->main.lp.virtual_now;
    t->past_failures += t->rt->main.rooms.commit_failures;
    t->past_groups += t->rt->main.rooms.commit_groups;
    party_runtime_free(t->rt);
    t->rt = NULL;
    fresh = runtime_start(t, &r);
    if (fresh == NULL) {
        /* Without a runtime t cannot go on; a last attempt keeps it usable
         * for party_test_free. */
        fprintf(stderr, "party_test: cannot restart the runtime: %s\n", party_strerror(r));
        t->rt = runtime_start(t, &r);
        return t->rt != NULL ? 0 : r;
    }
    t->rt = fresh;
    return 0;
}

void party_test_set_commit_delay(party_test *t, unsigned ms) {
    t->commit_delay_ms = ms;
    t->rt->commit_delay_ms = t->rt->main.rooms.commit_delay_ms = ms;
}

uint64_t party_test_commit_failures(party_test *t) {
    return t->past_failures + t->rt->main.rooms.commit_failures;
}

uint64_t party_test_commit_groups(party_test *t) {
    return t->past_groups + t->rt->main.rooms.commit_groups;
}

void party_test_new_room_id(char id_out[PARTY_ID_MAX]) {
    party_room_id_new(id_out);
}

int party_test_room_file(party_test *t, const char *room_id, char *out, size_t cap) {
    if (t == NULL || room_id == NULL || out == NULL || strlen(room_id) != PARTY_ID_MAX - 1 ||
        !party__room_id_valid(room_id))
        return PARTY_EINVAL;
    return party__store_path(t->data_dir, room_id, out, cap);
}

void party_test_free(party_test *t) {
    party_test_conn *c, *next;

    if (t == NULL)
        return;
    if (t->rt != NULL) {
        /* Freeing a runtime with store work in flight would free rooms a
         * worker thread still uses: wait for it, longer than usual. */
        int timeout = t->timeout_ms > FREE_DRAIN_MS ? t->timeout_ms : FREE_DRAIN_MS;
        if (runtime_drain(t, timeout) != 0 && t->rt->main.rooms.n_busy > 0) {
            fprintf(stderr,
                    "party_test: store work still in flight after %d ms; leaking the "
                    "runtime rather than freeing it under a worker thread\n",
                    timeout);
        } else {
            party_runtime_free(t->rt);
        }
    }
    /* Each client unlinks itself; walking by the saved successor reads
     * no freed client whatever the links say. */
    for (c = t->clients; c != NULL; c = next) {
        next = c->next;
        client_free(c);
    }
    remove_tree(t->data_dir);
    party__free(t->data_dir);
    party__free(t->prefix);
    party__free(t->defs);
    party__free(t->read_buf);
    party__free(t);
}
