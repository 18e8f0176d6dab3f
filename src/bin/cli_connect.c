/* cli_connect: `partyd connect URL`, a line-oriented WebSocket client. Lines
 * read from stdin are sent as text messages (hex-decoded binary with
 * --binary); messages received are printed on stdout, binary as hex; the
 * exit status reports the close code. I/O is libuv; frames are read and
 * written with partyd's own codec (ws.c), masked as a client must. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <uv.h>

#include "buf.h"
#include "http.h"
#include "party.h"
#include "url.h"
#include "utf8.h"
#include "ws.h"
#include "alloc.h"

#define MAX_EXTRA_HEADERS 64
#define RESPONSE_HEAD_MAX (16 * 1024)           /* the server's 101 answer */
#define MAX_MESSAGE_BYTES (64ULL * 1024 * 1024) /* largest message received */
#define LINE_MAX_BYTES (16 * 1024 * 1024)       /* longest stdin line */
#define WRITE_QUEUE_MAX (16 * 1024 * 1024)      /* unsent bytes before stdin pauses */
#define READ_CHUNK (64 * 1024)
#define CONNECT_TIMEOUT_MS 10000 /* resolve, connect and handshake */
#define CLOSE_WAIT_MS 5000       /* for the server's Close reply */

static const char usage_text[] =
    "usage: partyd connect [options] ws://HOST[:PORT]/PATH[?QUERY]\n"
    "\n"
    "Opens a WebSocket to URL. Each line read from stdin is sent as one text\n"
    "message; each message received is printed on stdout as one line (binary\n"
    "messages as lowercase hex). At the end of stdin, or on Ctrl-C, the\n"
    "connection is closed with 1000. The exit status reports the close code:\n"
    "0 for 1000 or a Close without a code, 11-25 for 1001-1015, 100-255 for\n"
    "4000-4155, 3 for any other code; 1 when the connection could not be made,\n"
    "was refused or broke without a Close; 2 for bad arguments.\n"
    "\n"
    "  --id ID                  the connection id (sent as the _pk query parameter)\n"
    "  --header 'NAME: VALUE'   an extra request header; repeatable\n"
    "  --binary                 stdin lines are hex, each sent as a binary message\n"
    "  --help                   print this help and exit\n";

typedef struct write_req {
    uv_write_t req;
    size_t len;
    char data[];
} write_req;

typedef struct client {
    uv_loop_t loop;
    uv_getaddrinfo_t resolve;
    struct addrinfo *addrs, *addr; /* every address of the host; the one tried */
    uv_connect_t connect;
    uv_tcp_t tcp;
    uv_shutdown_t shutdown;
    int connected;
    uv_timer_t timer;
    uv_signal_t sigint;
    union {
        uv_tty_t tty;
        uv_pipe_t pipe;
    } in;          /* stdin when it is a terminal, pipe or socket */
    uv_fs_t in_fs; /* stdin when it is a file: read with uv_fs_read */
    int in_kind;   /* 0: not read yet, 1: stream, 2: file */
    int in_done;   /* end of stdin seen (or stdin closed) */
    int in_paused; /* too much unsent: stdin waits for the socket */
    int in_reading;
    char in_buf[READ_CHUNK];
    char read_buf[READ_CHUNK];

    const char *host, *port;
    char *request;
    size_t request_len;
    char accept[29];
    int binary_lines;

    char head[RESPONSE_HEAD_MAX]; /* the answer to the upgrade, as read */
    size_t head_len;
    party__http_parser answer; /* reading it */
    int open;                  /* the 101 was checked: frames flow */
    party__ws_reader reader;

    char *line; /* the stdin line being read */
    size_t line_len, line_cap;

    size_t queued; /* bytes handed to uv_write, not yet written */
    int close_sent, close_received;
    int close_code; /* the code of the Close received */
    int finishing;
    int status;
} client;

static void finish(client *c, int status);

/* ---- the URL and the request ---- */

typedef struct target {
    char host[256];
    char port[6];
    char authority[300]; /* the Host header */
    const char *path;    /* path and query, from the URL */
} target;

static int parse_url(const char *url, target *t) {
    const char *p = url, *end;
    size_t i, host_len;

    for (i = 0; url[i] != '\0'; i++) {
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f) {
            fprintf(stderr, "partyd connect: the URL has a space or control character\n");
            return -1;
        }
    }
    if (strncasecmp(p, "ws://", 5) == 0) {
        p += 5;
    } else if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncasecmp(p, "wss://", 6) == 0 || strncasecmp(p, "https://", 8) == 0) {
        fprintf(stderr, "partyd connect: wss:// is not supported yet; connect with ws:// to a "
                        "partyd without --tls-cert\n");
        return -1;
    } else {
        fprintf(stderr, "partyd connect: '%s' is not a ws:// URL\n", url);
        return -1;
    }
    end = p + strcspn(p, "/?#");
    if (end == p || (size_t)(end - p) >= sizeof(t->authority)) {
        fprintf(stderr, "partyd connect: '%s' has no host, or a host that is too long\n", url);
        return -1;
    }
    memcpy(t->authority, p, (size_t)(end - p));
    t->authority[end - p] = '\0';
    if (*end == '#') {
        fprintf(stderr, "partyd connect: a URL fragment (#) is not sent to servers\n");
        return -1;
    }
    t->path = *end == '\0' ? "/" : end;

    if (t->authority[0] == '[') {
        const char *close = strchr(t->authority, ']');
        if (close == NULL)
            goto bad_host;
        host_len = (size_t)(close - t->authority - 1);
        if (host_len >= sizeof(t->host))
            goto bad_host;
        memcpy(t->host, t->authority + 1, host_len);
        p = close + 1;
    } else {
        const char *colon = strchr(t->authority, ':');
        host_len = colon != NULL ? (size_t)(colon - t->authority) : strlen(t->authority);
        if (host_len >= sizeof(t->host))
            goto bad_host;
        memcpy(t->host, t->authority, host_len);
        p = t->authority + host_len;
    }
    t->host[host_len] = '\0';
    if (host_len == 0)
        goto bad_host;
    if (*p == '\0') {
        strcpy(t->port, "80");
    } else {
        int port = *p == ':' ? party__cli_port_parse(p + 1) : -1;
        if (port < 0)
            goto bad_host;
        snprintf(t->port, sizeof(t->port), "%hu", (unsigned short)port);
    }
    if (strchr(t->path, '#') != NULL) {
        fprintf(stderr, "partyd connect: a URL fragment (#) is not sent to servers\n");
        return -1;
    }
    return 0;
bad_host:
    fprintf(stderr, "partyd connect: '%s' is not HOST, HOST:PORT or [IPv6]:PORT\n", t->authority);
    return -1;
}

/* "NAME: VALUE" (or NAME:VALUE) with a token name and no CR/LF. */
static int header_valid(const char *h) {
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    const char *colon = strchr(h, ':');
    const char *p;
    if (colon == NULL || colon == h)
        return 0;
    for (p = h; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(tchar, *p) != NULL))
            return 0;
    for (p = colon + 1; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return 0;
    return 1;
}

/* Percent-encodes an id for the query string: unreserved characters stay. */
static void append_encoded(char *out, const char *id) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);
    for (; *id != '\0'; id++) {
        unsigned char ch = (unsigned char)*id;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
}

/* The opening handshake request; sets c->accept to the answer expected. */
static int build_request(client *c, const target *t, const char *id, char **headers,
                         size_t n_headers) {
    unsigned char nonce[16];
    char key[25];
    size_t cap = strlen(t->path) + (id != NULL ? 3 * strlen(id) + 8 : 0) + 512, i, n;
    char *path, *req;

    for (i = 0; i < n_headers; i++)
        cap += strlen(headers[i]) + 4;
    path = party__malloc(cap);
    req = party__malloc(cap * 2);
    if (path == NULL || req == NULL) {
        party__free(path);
        party__free(req);
        return -1;
    }
    strcpy(path, t->path);
    if (id != NULL) {
        strcat(path, strchr(path, '?') != NULL ? "&_pk=" : "?_pk=");
        append_encoded(path, id);
    }
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        party__free(path);
        party__free(req);
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
    if (party__ws_accept_value(NULL, party__slice_make(key, strlen(key)), c->accept) != 0) {
        party__free(path);
        party__free(req);
        return -1;
    }
    n = (size_t)snprintf(req, cap * 2,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\nUser-Agent: partyd-connect/%s\r\n",
                         path, t->authority, key, PARTY_VERSION_STRING);
    for (i = 0; i < n_headers; i++)
        n += (size_t)snprintf(req + n, cap * 2 - n, "%s\r\n", headers[i]);
    n += (size_t)snprintf(req + n, cap * 2 - n, "\r\n");
    party__free(path);
    c->request = req;
    c->request_len = n;
    return 0;
}

/* ---- writing frames ---- */

static void stdin_resume(client *c);

static void write_cb(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    client *c = req->data;
    c->queued -= w->len;
    party__free(w);
    if (status != 0 && !c->finishing) {
        fprintf(stderr, "partyd connect: write failed: %s\n", uv_strerror(status));
        finish(c, PARTY__CLI_FAILED);
        return;
    }
    if (c->in_paused && c->queued < WRITE_QUEUE_MAX / 2)
        stdin_resume(c);
}

static int send_raw(client *c, const void *data, size_t len) {
    write_req *w = party__malloc(sizeof(*w) + len);
    uv_buf_t buf;
    int r;
    if (w == NULL)
        return PARTY_ENOMEM;
    memcpy(w->data, data, len);
    w->len = len;
    w->req.data = c;
    buf = uv_buf_init(w->data, (unsigned)len);
    r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (r != 0) {
        party__free(w);
        return PARTY_EIO;
    }
    c->queued += len;
    return 0;
}

/* One masked frame: a client must mask with a fresh, unpredictable key. */
static int send_frame(client *c, int opcode, const void *data, size_t len) {
    uint8_t key[4];
    size_t header;
    write_req *w = party__malloc(sizeof(*w) + 14 + len);
    uv_buf_t buf;
    int r;

    if (w == NULL)
        return PARTY_ENOMEM;
    if (RAND_bytes(key, sizeof(key)) != 1) {
        party__free(w);
        return PARTY_EIO;
    }
    header = party__ws_header_write(w->data, opcode, 1, len, key);
    if (len > 0)
        memcpy(w->data + header, data, len);
    party__ws_mask(w->data + header, len, key, 0);
    w->len = header + len;
    w->req.data = c;
    buf = uv_buf_init(w->data, (unsigned)w->len);
    r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (r != 0) {
        party__free(w);
        return PARTY_EIO;
    }
    c->queued += w->len;
    return 0;
}

static void close_timeout_cb(uv_timer_t *timer) {
    client *c = timer->data;
    fprintf(stderr, "partyd connect: no Close reply within %d s\n", CLOSE_WAIT_MS / 1000);
    finish(c, PARTY__CLI_FAILED);
}

/* Sends Close(code) once (0: no code) and waits for the reply. */
static void send_close(client *c, int code) {
    char payload[2];
    if (c->close_sent)
        return;
    c->close_sent = 1;
    payload[0] = (char)(code >> 8);
    payload[1] = (char)(code & 0xff);
    if (send_frame(c, PARTY__WS_CLOSE, payload, code != 0 ? 2 : 0) != 0) {
        finish(c, PARTY__CLI_FAILED);
        return;
    }
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, close_timeout_cb, CLOSE_WAIT_MS, 0);
}

/* ---- stdin ---- */

static void send_line(client *c, char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (c->binary_lines) {
        size_t i, n = 0;
        for (i = 0; i < len; i++) {
            int hi, lo;
            if (line[i] == ' ' || line[i] == '\t')
                continue;
            hi = party__url_hex_value(line[i]);
            lo = i + 1 < len ? party__url_hex_value(line[i + 1]) : -1;
            if (hi < 0 || lo < 0) {
                fprintf(stderr, "partyd connect: --binary: not an even number of hex digits; "
                                "line not sent\n");
                return;
            }
            line[n++] = (char)(hi << 4 | lo); /* in place: n <= i */
            i++;
        }
        len = n;
    } else if (!party__utf8_valid(line, len)) {
        fprintf(stderr, "partyd connect: the line is not UTF-8; not sent (use --binary)\n");
        return;
    }
    if (send_frame(c, c->binary_lines ? PARTY__WS_BINARY : PARTY__WS_TEXT, line, len) != 0)
        finish(c, PARTY__CLI_FAILED);
}

static void stdin_eof(client *c) {
    c->in_done = 1;
    if (c->line_len > 0)
        send_line(c, c->line, c->line_len);
    c->line_len = 0;
    if (!c->finishing)
        send_close(c, 1000);
}

/* Splits what was read into lines and sends each. */
static void stdin_data(client *c, const char *data, size_t len) {
    while (len > 0 && !c->finishing && !c->close_sent) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - data) : len;
        if (c->line_len + take > LINE_MAX_BYTES) {
            fprintf(stderr, "partyd connect: a line is over %d MiB\n", LINE_MAX_BYTES >> 20);
            send_close(c, 1009);
            return;
        }
        if (c->line_len + take > c->line_cap) {
            size_t cap = c->line_cap > 0 ? c->line_cap : 4096;
            char *grown;
            while (cap < c->line_len + take)
                cap *= 2;
            grown = party__realloc(c->line, cap);
            if (grown == NULL) {
                finish(c, PARTY__CLI_FAILED);
                return;
            }
            c->line = grown;
            c->line_cap = cap;
        }
        memcpy(c->line + c->line_len, data, take);
        c->line_len += take;
        if (nl == NULL)
            return;
        send_line(c, c->line, c->line_len);
        c->line_len = 0;
        data = nl + 1;
        len -= take + 1;
    }
}

static void stdin_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    client *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->in_buf, sizeof(c->in_buf));
}

static void stdin_read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    client *c = stream->data;
    if (n > 0) {
        stdin_data(c, buf->base, (size_t)n);
        if (c->queued >= WRITE_QUEUE_MAX && !c->finishing && !c->in_done) {
            uv_read_stop(stream);
            c->in_paused = 1;
        }
    } else if (n < 0) {
        uv_read_stop(stream);
        stdin_eof(c);
    }
}

static void stdin_file_read(client *c);

static void stdin_file_cb(uv_fs_t *req) {
    client *c = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    c->in_reading = 0;
    if (c->finishing)
        return;
    if (n > 0) {
        stdin_data(c, c->in_buf, (size_t)n);
        if (c->queued >= WRITE_QUEUE_MAX)
            c->in_paused = 1;
        else if (!c->close_sent)
            stdin_file_read(c);
    } else {
        stdin_eof(c);
    }
}

static void stdin_file_read(client *c) {
    uv_buf_t buf = uv_buf_init(c->in_buf, sizeof(c->in_buf));
    c->in_fs.data = c;
    if (uv_fs_read(&c->loop, &c->in_fs, 0, &buf, 1, -1, stdin_file_cb) == 0)
        c->in_reading = 1;
    else
        stdin_eof(c);
}

static void stdin_resume(client *c) {
    c->in_paused = 0;
    if (c->finishing || c->in_done || c->close_sent)
        return;
    if (c->in_kind == 1)
        uv_read_start((uv_stream_t *)&c->in, stdin_alloc_cb, stdin_read_cb);
    else if (c->in_kind == 2 && !c->in_reading)
        stdin_file_read(c);
}

/* Terminals, pipes and sockets are read as streams; files (and /dev/null)
 * with uv_fs_read, which epoll cannot watch. */
static void stdin_start(client *c) {
    uv_handle_type type = uv_guess_handle(0);
    int r = -1;
    if (type == UV_TTY) {
        r = uv_tty_init(&c->loop, &c->in.tty, 0, 1);
    } else if (type == UV_NAMED_PIPE || type == UV_TCP) {
        r = uv_pipe_init(&c->loop, &c->in.pipe, 0);
        if (r == 0 && uv_pipe_open(&c->in.pipe, 0) != 0) {
            uv_close((uv_handle_t *)&c->in.pipe, NULL);
            r = -1;
            c->in_kind = 0;
        }
    }
    if (r == 0) {
        c->in_kind = 1;
        c->in.pipe.data = c;
        uv_read_start((uv_stream_t *)&c->in, stdin_alloc_cb, stdin_read_cb);
    } else {
        c->in_kind = 2;
        stdin_file_read(c);
    }
}

/* ---- reading frames ---- */

static void print_message(const party__ws_event *ev) {
    if (!ev->binary) {
        fwrite(ev->data.ptr, 1, ev->data.len, stdout);
    } else {
        char hex[2 * 4096 + 1];
        size_t off;
        for (off = 0; off < ev->data.len; off += 4096) {
            size_t n = ev->data.len - off < 4096 ? ev->data.len - off : 4096;
            party__hex_encode(ev->data.ptr + off, n, hex);
            fwrite(hex, 1, 2 * n, stdout);
        }
    }
    fputc('\n', stdout);
    fflush(stdout);
}

static int frame_cb(void *arg, const party__ws_event *ev) {
    client *c = arg;
    switch (ev->type) {
    case PARTY__WS_EV_MESSAGE:
        print_message(ev);
        return 0;
    case PARTY__WS_EV_PING:
        if (!c->close_sent)
            send_frame(c, PARTY__WS_PONG, ev->data.ptr, ev->data.len);
        return 0;
    case PARTY__WS_EV_PONG:
        return 0;
    case PARTY__WS_EV_CLOSE:
        c->close_received = 1;
        c->close_code = ev->close_code;
        if (ev->close_code != 1000 && ev->close_code != PARTY__WS_NO_STATUS)
            fprintf(stderr, "partyd connect: closed by the server: %d%s%.*s\n", ev->close_code,
                    ev->data.len > 0 ? " " : "", (int)ev->data.len, ev->data.ptr);
        /* Answer with the same code (none for 1005), as RFC 6455 5.5.1 asks. */
        send_close(c, ev->close_code == PARTY__WS_NO_STATUS ? 0 : ev->close_code);
        finish(c, party__cli_close_status(ev->close_code));
        return 1;
    case PARTY__WS_EV_ERROR:
        fprintf(stderr, "partyd connect: the server broke the protocol: %s\n", ev->error);
        send_close(c, ev->close_code);
        finish(c, PARTY__CLI_FAILED);
        return 1;
    }
    return 0;
}

/* Reads the server's answer to the upgrade as far as it has come: 1 a valid
 * 101 (*used: its bytes in c->head; what follows are frames), 0 incomplete,
 * -1 refused or not a WebSocket answer (reported). Only the head is parsed:
 * a refusal's body is printed as far as it came with the head. */
static int handshake_answer(client *c, size_t *used) {
    static const party__http_limits limits = {RESPONSE_HEAD_MAX, PARTY__HTTP_MAX_HEADERS, 0};
    party__http_response res;
    party__http_error err;
    size_t i;
    int upgrade = 0, accept = 0, rc;

    rc = party__http_response_parse(&c->answer, c->head, c->head_len, 0, &limits, &res, used, &err);
    if (rc == PARTY__HTTP_AGAIN)
        return 0;
    if (rc == PARTY__HTTP_ERROR) {
        if (err.status == 431)
            fprintf(stderr,
                    "partyd connect: the server's answer head is over %d KiB or %d fields\n",
                    RESPONSE_HEAD_MAX / 1024, PARTY__HTTP_MAX_HEADERS);
        else
            fprintf(stderr, "partyd connect: the server did not answer with HTTP/1.1: %s\n",
                    err.reason);
        return -1;
    }
    if (res.status != 101) {
        const char *body = c->head + *used;
        size_t body_len = c->head_len - *used;
        fprintf(stderr, "partyd connect: the server refused the WebSocket: %.*s\n",
                (int)res.status_line.len, res.status_line.ptr);
        if (body_len > 0)
            fprintf(stderr, "%.*s%s", (int)body_len, body, body[body_len - 1] == '\n' ? "" : "\n");
        return -1;
    }
    for (i = 0; i < res.n_headers; i++) {
        const party__http_header *h = &res.headers[i];
        if (party__slice_eq_nocase(h->name, "Upgrade") &&
            party__slice_eq_nocase(h->value, "websocket"))
            upgrade = 1;
        else if (party__slice_eq_nocase(h->name, "Sec-WebSocket-Accept") &&
                 h->value.len == strlen(c->accept) &&
                 memcmp(h->value.ptr, c->accept, h->value.len) == 0)
            accept = 1;
    }
    if (!upgrade || !res.upgrade || !accept) {
        fprintf(stderr, "partyd connect: the server's 101 answer is not a valid WebSocket "
                        "upgrade (Upgrade, Connection or Sec-WebSocket-Accept)\n");
        return -1;
    }
    return 1;
}

static void tcp_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    client *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->read_buf, sizeof(c->read_buf));
}

static void feed(client *c, char *data, size_t len) {
    int r = party__ws_reader_feed(&c->reader, data, len, frame_cb, c);
    if (r == PARTY_ENOMEM && !c->finishing) {
        fprintf(stderr, "partyd connect: out of memory reading a message\n");
        finish(c, PARTY__CLI_FAILED);
    }
}

static void tcp_read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    client *c = stream->data;
    if (c->finishing)
        return;
    if (n < 0) {
        if (!c->open)
            fprintf(stderr, "partyd connect: the server closed the connection during the "
                            "handshake\n");
        else
            fprintf(stderr, "partyd connect: the connection dropped without a Close (1006)\n");
        finish(c, PARTY__CLI_FAILED);
        return;
    }
    if (n == 0)
        return;
    if (c->open) {
        feed(c, buf->base, (size_t)n);
        return;
    }
    {
        size_t take = (size_t)n, head;
        int r;
        if (take > RESPONSE_HEAD_MAX - c->head_len)
            take = RESPONSE_HEAD_MAX - c->head_len;
        memcpy(c->head + c->head_len, buf->base, take);
        c->head_len += take;
        r = handshake_answer(c, &head);
        if (r < 0) {
            finish(c, PARTY__CLI_FAILED);
            return;
        }
        if (r == 0)
            return;
        c->open = 1;
        uv_timer_stop(&c->timer);
        fprintf(stderr, "partyd connect: connected to %s:%s\n", c->host, c->port);
        /* Bytes past the head are the first frames (before this read's
         * overflow, if the head straddled reads). */
        {
            size_t extra_in_head = c->head_len - head;
            size_t rest = (size_t)n - take;
            if (extra_in_head > 0)
                feed(c, c->head + head, extra_in_head);
            if (rest > 0 && !c->finishing)
                feed(c, buf->base + take, rest);
        }
        if (!c->finishing)
            stdin_start(c);
    }
}

/* ---- connecting ---- */

static void try_connect(client *c);

static void retry_close_cb(uv_handle_t *handle) {
    client *c = handle->data;
    if (!c->finishing)
        try_connect(c);
}

static void connect_cb(uv_connect_t *req, int status) {
    client *c = req->data;
    if (c->finishing)
        return;
    if (status != 0) {
        char addr[64] = "?";
        if (c->addr->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)c->addr->ai_addr, addr, sizeof(addr));
        else
            uv_ip4_name((const struct sockaddr_in *)c->addr->ai_addr, addr, sizeof(addr));
        fprintf(stderr, "partyd connect: %s port %s: %s\n", addr, c->port, uv_strerror(status));
        c->addr = c->addr->ai_next;
        /* The next address gets the handle once it is closed. */
        uv_close((uv_handle_t *)&c->tcp, c->addr != NULL ? retry_close_cb : NULL);
        if (c->addr == NULL)
            finish(c, PARTY__CLI_FAILED);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    /* The head is all that is read as HTTP: after a 101 come frames, and a
     * refusal is reported from its head. */
    party__http_response_parser_init(&c->answer, PARTY__HTTP_NO_BODY);
    uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc_cb, tcp_read_cb);
    if (send_raw(c, c->request, c->request_len) != 0)
        finish(c, PARTY__CLI_FAILED);
}

static void try_connect(client *c) {
    int r;
    uv_tcp_init(&c->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    r = uv_tcp_connect(&c->connect, &c->tcp, c->addr->ai_addr, connect_cb);
    if (r != 0) {
        fprintf(stderr, "partyd connect: %s\n", uv_strerror(r));
        finish(c, PARTY__CLI_FAILED);
    }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    client *c = req->data;
    if (c->finishing) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status != 0) {
        fprintf(stderr, "partyd connect: cannot resolve '%s': %s\n", c->host, uv_strerror(status));
        finish(c, PARTY__CLI_FAILED);
        return;
    }
    c->addrs = c->addr = res;
    try_connect(c);
}

static void connect_timeout_cb(uv_timer_t *timer) {
    client *c = timer->data;
    fprintf(stderr, "partyd connect: no WebSocket within %d s\n", CONNECT_TIMEOUT_MS / 1000);
    finish(c, PARTY__CLI_FAILED);
}

static void sigint_cb(uv_signal_t *handle, int signum) {
    client *c = handle->data;
    (void)signum;
    if (c->open && !c->close_sent)
        send_close(c, 1000); /* a second Ctrl-C ends at once */
    else
        finish(c, 130);
}

/* ---- ending ---- */

static void close_if_open(uv_handle_t *h) {
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
    (void)status;
    close_if_open((uv_handle_t *)req->handle);
}

/* Stops everything; the loop then runs out of work and returns. Only the
 * first status counts. */
static void finish(client *c, int status) {
    if (c->finishing)
        return;
    c->finishing = 1;
    c->status = status;
    uv_timer_stop(&c->timer);
    close_if_open((uv_handle_t *)&c->timer);
    close_if_open((uv_handle_t *)&c->sigint);
    if (c->in_kind == 1)
        close_if_open((uv_handle_t *)&c->in);
    /* uv_close would cancel pending writes: a Close frame just queued is
     * flushed first by shutting down the sending side. */
    if (c->connected && !uv_is_closing((uv_handle_t *)&c->tcp) &&
        uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_cb) == 0)
        return;
    close_if_open((uv_handle_t *)&c->tcp);
}

int party__cli_close_status(int code) {
    if (code == 1000 || code == PARTY__WS_NO_STATUS)
        return PARTY__CLI_OK;
    if (code == PARTY__WS_ABNORMAL)
        return PARTY__CLI_FAILED;
    if (code >= 1001 && code <= 1015)
        return code - 990;
    if (code >= 4000 && code <= 4155)
        return code - 3900;
    return 3;
}

int party__cli_connect(int argc, char **argv) {
    static const struct option options[] = {
        {"id", required_argument, NULL, 'i'},
        {"header", required_argument, NULL, 'H'},
        {"binary", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *headers[MAX_EXTRA_HEADERS];
    size_t n_headers = 0;
    const char *id = NULL;
    struct addrinfo hints;
    target t;
    client *c;
    int opt, status, binary = 0;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'i':
            if (optarg[0] == '\0' || strlen(optarg) > PARTY_MAX_TAG_LEN) {
                fprintf(stderr, "partyd connect: --id: 1 to %d bytes\n", PARTY_MAX_TAG_LEN);
                return PARTY__CLI_USAGE;
            }
            id = optarg;
            break;
        case 'H':
            if (!header_valid(optarg)) {
                fprintf(stderr, "partyd connect: --header: '%s' is not NAME: VALUE\n", optarg);
                return PARTY__CLI_USAGE;
            }
            if (n_headers == MAX_EXTRA_HEADERS) {
                fprintf(stderr, "partyd connect: at most %d --header\n", MAX_EXTRA_HEADERS);
                return PARTY__CLI_USAGE;
            }
            headers[n_headers++] = optarg;
            break;
        case 'b':
            binary = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return PARTY__CLI_OK;
        default:
            fputs(usage_text, stderr);
            return PARTY__CLI_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "partyd connect: expected one URL\n%s", usage_text);
        return PARTY__CLI_USAGE;
    }
    if (parse_url(argv[optind], &t) != 0)
        return PARTY__CLI_USAGE;
    if (id != NULL && (strstr(t.path, "?_pk=") != NULL || strstr(t.path, "&_pk=") != NULL)) {
        fprintf(stderr, "partyd connect: give the id either as _pk in the URL or with --id\n");
        return PARTY__CLI_USAGE;
    }

    c = party__calloc(1, sizeof(*c));
    if (c == NULL || uv_loop_init(&c->loop) != 0) {
        party__free(c);
        fprintf(stderr, "partyd connect: out of memory\n");
        return PARTY__CLI_FAILED;
    }
    c->binary_lines = binary;
    c->host = t.host;
    c->port = t.port;
    party__ws_reader_init(&c->reader, MAX_MESSAGE_BYTES, 0);
    if (build_request(c, &t, id, headers, n_headers) != 0) {
        uv_loop_close(&c->loop);
        party__free(c);
        fprintf(stderr, "partyd connect: out of memory or no random numbers\n");
        return PARTY__CLI_FAILED;
    }
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, connect_timeout_cb, CONNECT_TIMEOUT_MS, 0);
    uv_signal_init(&c->loop, &c->sigint);
    c->sigint.data = c;
    uv_signal_start(&c->sigint, sigint_cb, SIGINT);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->resolve.data = c;
    if (uv_getaddrinfo(&c->loop, &c->resolve, resolve_cb, t.host, t.port, &hints) != 0) {
        fprintf(stderr, "partyd connect: cannot resolve '%s'\n", t.host);
        finish(c, PARTY__CLI_FAILED);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);

    status = c->status;
    uv_freeaddrinfo(c->addrs);
    party__ws_reader_reset(&c->reader);
    uv_loop_close(&c->loop);
    if (c->in_kind == 1)
        uv_tty_reset_mode();
    party__free(c->request);
    party__free(c->line);
    party__free(c);
    return status;
}
