/* Outbound HTTP (party_room_fetch_url) through the test harness, against
 * an HTTP server this test runs on 127.0.0.1 in a thread of its own: the
 * answer (status, headers, body) comes back as an on_response event; a
 * timeout, a name that does not resolve, a refused connection, a body
 * too large, a policy refusal are
 * errors (party_response_get_error), never confused with an upstream
 * status; names and forms of loopback and redirects to it are refused at
 * connect time; a request leaves only after its commit and never after a
 * failed one; an evicted caller is brought back; a restart answers
 * requests in flight PARTY_EABORTED before the room's other events; HTTPS
 * works with the CA file configured (--fetch-ca-file) and fails as a TLS
 * error without it, and is answered over HTTP/2 by a server that speaks
 * only that. */
#define _GNU_SOURCE /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "party.h"
#include "parties.h"
#include "party_test.h"
#include "room.h"
#include "runtime.h"

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the server ---- */

#define MAX_HELD 16

static struct {
    int fd, port;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    int requests;
    int accepts; /* connections accepted */
    uint64_t last_at;
    char last[512]; /* "METHOD path x-test=.. body=.." */
    int held[MAX_HELD];
    int n_held;
} srv;

static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static void reply(int fd, int status, const char *extra, const char *body, size_t len) {
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status,
                     len, extra != NULL ? extra : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Reads one request; answers by its path. 1 if fd was kept (held), 2 if
 * the connection stays open for another request (/keep). */
static int serve_one(int fd) {
    char buf[8192], method[16] = "", path[1024] = "", *end;
    size_t got = 0, head_len, body_len = 0;
    const char *cl, *xt;
    char xtest[64] = "";

    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            return 0;
        got += (size_t)n;
        buf[got] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")) != NULL)
            break;
        if (got == sizeof(buf) - 1)
            return 0;
    }
    head_len = (size_t)(end + 4 - buf);
    cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl != NULL && cl < end)
        body_len = (size_t)strtoul(cl + 17, NULL, 10);
    while (got < head_len + body_len && got < sizeof(buf) - 1) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    sscanf(buf, "%15s %1023s", method, path);
    xt = strcasestr(buf, "\r\nx-test:");
    if (xt != NULL && xt < end)
        sscanf(xt + 9, " %63[^\r]", xtest);
    pthread_mutex_lock(&srv.mu);
    srv.requests++;
    srv.last_at = mono_ms();
    snprintf(srv.last, sizeof(srv.last), "%s %.200s x-test=%s body=%.*s", method, path, xtest,
             (int)(got - head_len), buf + head_len);
    pthread_mutex_unlock(&srv.mu);

    if (strcmp(path, "/hello") == 0) {
        reply(fd, 200, "X-Reply: yes\r\nContent-Type: text/plain\r\n", "hello from the server", 21);
    } else if (strncmp(path, "/status/", 8) == 0) {
        char text[64];
        int status = atoi(path + 8);
        snprintf(text, sizeof(text), "upstream says %d", status);
        reply(fd, status, NULL, text, strlen(text));
    } else if (strcmp(path, "/slow") == 0) {
        pthread_mutex_lock(&srv.mu);
        if (srv.n_held < MAX_HELD) {
            srv.held[srv.n_held++] = fd;
            pthread_mutex_unlock(&srv.mu);
            return 1;
        }
        pthread_mutex_unlock(&srv.mu);
    } else if (strcmp(path, "/big") == 0) {
        static char big[64 * 1024];
        char head[128];
        int i, n = snprintf(head, sizeof(head),
                            "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                            16 * (int)sizeof(big));
        memset(big, 'x', sizeof(big));
        send_all(fd, head, (size_t)n);
        for (i = 0; i < 16; i++)
            send_all(fd, big, sizeof(big));
    } else if (strncmp(path, "/redirect?to=", 13) == 0) {
        char extra[1200];
        snprintf(extra, sizeof(extra), "Location: %s\r\n", path + 13);
        reply(fd, 302, extra, "", 0);
    } else if (strcmp(path, "/see-other") == 0) {
        reply(fd, 303, "Location: /echo\r\n", "", 0);
    } else if (strcmp(path, "/loop") == 0) {
        reply(fd, 307, "Location: /loop\r\n", "", 0);
    } else if (strcmp(path, "/keep") == 0) {
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nkept";
        send_all(fd, answer, sizeof(answer) - 1);
        return 2;
    } else if (strcmp(path, "/hook") == 0) {
        reply(fd, 204, NULL, "", 0);
    } else if (strcmp(path, "/echo") == 0) {
        char text[600];
        pthread_mutex_lock(&srv.mu);
        snprintf(text, sizeof(text), "%s", srv.last);
        pthread_mutex_unlock(&srv.mu);
        reply(fd, 201, NULL, text, strlen(text));
    } else {
        reply(fd, 404, NULL, "no such path", 12);
    }
    return 0;
}

static void *server_main(void *arg) {
    (void)arg;
    for (;;) {
        struct pollfd fds[2] = {{srv.fd, POLLIN, 0}, {srv.stop_pipe[0], POLLIN, 0}};
        int fd;
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents != 0)
            return NULL;
        fd = accept(srv.fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&srv.mu);
        srv.accepts++;
        pthread_mutex_unlock(&srv.mu);
        for (;;) {
            struct pollfd more[2] = {{fd, POLLIN, 0}, {srv.stop_pipe[0], POLLIN, 0}};
            int kept = serve_one(fd);
            if (kept == 1)
                break;
            if (kept == 0) {
                close(fd);
                break;
            }
            /* Kept alive: the next request on it, or the end. */
            if (poll(more, 2, -1) < 0 || more[1].revents != 0) {
                close(fd);
                return NULL;
            }
        }
    }
}

static void server_start(void) {
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int one = 1;

    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.mu, NULL);
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv.fd >= 0);
    setsockopt(srv.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(srv.fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(srv.fd, 64), 0);
    assert_int_equal(getsockname(srv.fd, (struct sockaddr *)&addr, &len), 0);
    srv.port = ntohs(addr.sin_port);
    assert_int_equal(pipe(srv.stop_pipe), 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
}

static void server_stop(void) {
    int i;
    assert_int_equal(write(srv.stop_pipe[1], "x", 1), 1);
    pthread_join(srv.thread, NULL);
    for (i = 0; i < srv.n_held; i++)
        close(srv.held[i]);
    close(srv.fd);
    close(srv.stop_pipe[0]);
    close(srv.stop_pipe[1]);
    pthread_mutex_destroy(&srv.mu);
}

static int server_requests(void) {
    int n;
    pthread_mutex_lock(&srv.mu);
    n = srv.requests;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void) {
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- a resolver that fails for .invalid ----
 *
 * A name in the reserved .invalid TLD (RFC 6761) never resolves, but how
 * soon the system's resolver says so depends on the machine: with no
 * network it may time out instead, which is a different error. libcurl's
 * resolver calls getaddrinfo; this definition in the test program comes
 * before libc's, so a .invalid name fails at once with EAI_NONAME, the
 * answer of a name server that knows the name does not exist, and
 * libcurl takes its ordinary "could not resolve" path. Every other name
 * goes to libc's getaddrinfo. */

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    typedef int (*real_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    static real_fn real;
    size_t n = node != NULL ? strlen(node) : 0;

    if (n >= 8 && strcasecmp(node + n - 8, ".invalid") == 0)
        return EAI_NONAME;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}

/* ---- an HTTPS server: one certificate for 127.0.0.1, made by openssl ---- */

static struct {
    int fd, port;
    int stop_pipe[2];
    pthread_t thread;
    SSL_CTX *ctx;
    char dir[64], cert[96], key[96];
} tls;

static void *tls_main(void *arg) {
    (void)arg;
    for (;;) {
        struct pollfd fds[2] = {{tls.fd, POLLIN, 0}, {tls.stop_pipe[0], POLLIN, 0}};
        char buf[4096];
        size_t got = 0;
        SSL *ssl;
        int fd;
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents != 0)
            return NULL;
        fd = accept(tls.fd, NULL, NULL);
        if (fd < 0)
            continue;
        ssl = SSL_new(tls.ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            for (;;) {
                int n = SSL_read(ssl, buf + got, (int)(sizeof(buf) - 1 - got));
                if (n <= 0)
                    break;
                got += (size_t)n;
                buf[got] = '\0';
                if (strstr(buf, "\r\n\r\n") != NULL) {
                    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n"
                                                 "Connection: close\r\n\r\nhello, tls!\n";
                    SSL_write(ssl, answer, (int)sizeof(answer) - 1);
                    break;
                }
            }
            SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        close(fd);
    }
}

static int tls_setup(void **state) {
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    char command[512];
    (void)state;

    server_start();
    snprintf(tls.dir, sizeof(tls.dir), "/tmp/partyd-outbound-XXXXXX");
    assert_non_null(mkdtemp(tls.dir));
    snprintf(tls.cert, sizeof(tls.cert), "%s/cert.pem", tls.dir);
    snprintf(tls.key, sizeof(tls.key), "%s/key.pem", tls.dir);
    snprintf(command, sizeof(command),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s 2>/dev/null",
             tls.key, tls.cert);
    assert_int_equal(system(command), 0);
    tls.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(tls.ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(tls.ctx, tls.cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(tls.ctx, tls.key, SSL_FILETYPE_PEM), 1);
    tls.fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(tls.fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(tls.fd, 16), 0);
    assert_int_equal(getsockname(tls.fd, (struct sockaddr *)&addr, &len), 0);
    tls.port = ntohs(addr.sin_port);
    assert_int_equal(pipe(tls.stop_pipe), 0);
    assert_int_equal(pthread_create(&tls.thread, NULL, tls_main, NULL), 0);
    return 0;
}

static int tls_teardown(void **state) {
    char command[128];
    (void)state;
    assert_int_equal(write(tls.stop_pipe[1], "x", 1), 1);
    pthread_join(tls.thread, NULL);
    close(tls.fd);
    close(tls.stop_pipe[0]);
    close(tls.stop_pipe[1]);
    SSL_CTX_free(tls.ctx);
    snprintf(command, sizeof(command), "rm -rf %s", tls.dir);
    assert_int_equal(system(command), 0);
    server_stop();
    return 0;
}

/* ---- the party: out ---- */

#define MAX_SEEN 8

typedef struct seen {
    char id[PARTY_ID_MAX];
    char tag[64];
    int status;
    int error;
    char body[1024];
    char reply_header[32];
    char room_name[64];
} seen;

static struct {
    seen responses[MAX_SEEN];
    int n;
    int starts;
    int result; /* of the last party_room_fetch_url */
    int taken;  /* requests a ?count= ask started */
    char last_id[PARTY_ID_MAX];
    char log[256]; /* "start,request,response:<tag>,..." */
} rec;

static int fail_commits;

static int failing_commit_hook(void *arg) {
    (void)arg;
    if (fail_commits > 0) {
        fail_commits--;
        return 1;
    }
    return 0;
}

static void log_event(const char *what) {
    size_t n = strlen(rec.log);
    snprintf(rec.log + n, sizeof(rec.log) - n, "%s%s", n > 0 ? "," : "", what);
}

static int out_start(party_room *room, const char *props) {
    (void)props;
    rec.starts++;
    log_event("start");
    sqlite3_commit_hook(party_room_db(room), failing_commit_hook, NULL);
    return 0;
}

static void out_response(party_room *room, const char *id, const char *tag,
                         const party_response *res) {
    const char *body = party_response_get_body(res, NULL);
    const char *reply = party_response_get_header(res, "x-reply");
    char what[96];
    seen *s;

    snprintf(what, sizeof(what), "response:%s", tag);
    log_event(what);
    if (rec.n == MAX_SEEN)
        return;
    s = &rec.responses[rec.n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->tag, sizeof(s->tag), "%s", tag);
    s->status = party_response_get_status(res);
    s->error = party_response_get_error(res);
    snprintf(s->body, sizeof(s->body), "%s", body != NULL ? body : "");
    snprintf(s->reply_header, sizeof(s->reply_header), "%s", reply != NULL ? reply : "");
    snprintf(s->room_name, sizeof(s->room_name), "%s", party_room_name(room));
}

/* GET /parties/out/<room>?url=..&tag=..&method=..&timeout=..&write=1
 * starts one request (202 if party_room_fetch_url returned 0, else 400);
 * without url it only logs the request. */
static void out_request(party_room *room, const party_request *req, party_response *res) {
    const char *url = party_request_query(req, "url");
    const char *tag = party_request_query(req, "tag");
    const char *method = party_request_query(req, "method");
    const char *timeout = party_request_query(req, "timeout");
    static const char *const headers[] = {"X-Test", "yes", NULL};

    log_event("request");
    if (party_request_query(req, "write") != NULL)
        party_kv_put(room, "before", "1", 1);
    if (url == NULL)
        return;
    if (party_request_query(req, "count") != NULL) {
        /* ?count=N: N requests in this one event; how many were taken. */
        int n = atoi(party_request_query(req, "count")), k;
        rec.taken = 0;
        for (k = 0; k < n; k++) {
            rec.result = party_room_fetch_url(room, NULL, url, NULL, NULL, 0, 0.2, "many", NULL);
            if (rec.result != 0)
                break;
            rec.taken++;
        }
        return;
    }
    rec.result = party_room_fetch_url(room, method, url, headers, method != NULL ? "hello" : NULL,
                                      method != NULL ? 5 : 0, timeout != NULL ? atof(timeout) : 0,
                                      tag, rec.last_id);
    party_response_set_status(res, rec.result == 0 ? 202 : 400);
}

static const party_def out_def = {
    .name = "out",
    .on_start = out_start,
    .on_request = out_request,
    .on_response = out_response,
};

/* ---- helpers ---- */

static char allow_buf[256];

/* A harness whose fetch_allow is allow ("%d" is the server's port). */
static party_test *new_harness_with(const char *allow, size_t max_bytes) {
    party_config cfg;
    party_test *t;

    party_config_init(&cfg);
    if (allow != NULL) {
        snprintf(allow_buf, sizeof(allow_buf), allow, srv.port);
        cfg.fetch_allow = allow_buf;
    }
    if (max_bytes > 0)
        cfg.fetch_max_bytes = max_bytes;
    cfg.log_level = PARTY_LOG_ERROR;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &out_def), 0);
    memset(&rec, 0, sizeof(rec));
    fail_commits = 0;
    return t;
}

static party_test *new_harness(void) {
    return new_harness_with("127.0.0.1:%d", 0);
}

/* Asks room out/<name> to fetch url (a printf format: %d is the server's
 * port) with extra query parameters; the status of the ask. */
static int ask(party_test *t, const char *name, const char *url, const char *extra) {
    party_test_response res;
    char target[1024], full[512], *p;
    int status;
    size_t i;

    snprintf(full, sizeof(full), url, srv.port);
    /* Percent-encode the URL for the query. */
    p = target + snprintf(target, sizeof(target), "/parties/out/%s?%s%surl=", name,
                          extra != NULL ? extra : "", extra != NULL ? "&" : "");
    for (i = 0; full[i] != '\0'; i++)
        p += sprintf(p, "%%%02X", (unsigned char)full[i]);
    assert_int_equal(party_test_request(t, "GET", target, NULL, NULL, 0, &res), 0);
    status = res.status;
    party_test_response_free(&res);
    return status;
}

static int poke(party_test *t, const char *name) {
    party_test_response res;
    char target[256];
    int status;
    snprintf(target, sizeof(target), "/parties/out/%s", name);
    assert_int_equal(party_test_request(t, "GET", target, NULL, NULL, 0, &res), 0);
    status = res.status;
    party_test_response_free(&res);
    return status;
}

static int setup(void **state) {
    (void)state;
    server_start();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop();
    return 0;
}

/* ---- answers ---- */

static void test_answer_arrives_as_event_with_status_headers_and_body(void **state) {
    party_test *t = new_harness();
    seen *s;
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=first"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    s = &rec.responses[0];
    assert_string_equal(s->id, rec.last_id);
    assert_int_equal(strlen(s->id), 64);
    assert_string_equal(s->tag, "first");
    assert_int_equal(s->error, 0);
    assert_int_equal(s->status, 200);
    assert_string_equal(s->body, "hello from the server");
    assert_string_equal(s->reply_header, "yes");
    assert_string_equal(s->room_name, "alice");
    party_test_free(t);
}

static void test_method_headers_and_body_reach_the_server(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/echo", "tag=e&method=PUT"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 201);
    assert_string_equal(rec.responses[0].body, "PUT /echo x-test=yes body=hello");
    party_test_free(t);
}

static void test_upstream_504_is_an_answer_not_an_error(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/status/504", "tag=u"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, 0);
    assert_int_equal(rec.responses[0].status, 504);
    assert_string_equal(rec.responses[0].body, "upstream says 504");
    party_test_free(t);
}

static void test_no_answer_in_time_is_a_timeout_error(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/slow", "tag=slow&timeout=0.2"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_ETIMEDOUT);
    assert_int_equal(rec.responses[0].status, 0);
    assert_int_equal(server_requests(), 1);
    party_test_free(t);
}

static void test_body_over_fetch_max_bytes_is_refused(void **state) {
    party_test *t = new_harness_with("127.0.0.1:%d", 4096);
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/big", "tag=big"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_ETOOBIG);
    assert_int_equal(rec.responses[0].status, 0);
    assert_non_null(strstr(rec.responses[0].body, "larger than 4096 bytes"));
    party_test_free(t);
}

static void test_closed_port_is_a_connect_error(void **state) {
    party_test *t = new_harness_with("127.0.0.1", 0);
    char url[64];
    (void)state;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", closed_port());
    assert_int_equal(ask(t, "alice", url, "tag=c"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_ECONNECT);
    party_test_free(t);
}

static void test_unknown_host_is_a_dns_error_naming_it(void **state) {
    party_test *t = new_harness_with("no-such-host.invalid", 0);
    (void)state;

    assert_int_equal(ask(t, "alice", "http://no-such-host.invalid/", "tag=d"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_EDNS);
    assert_int_equal(rec.responses[0].status, 0);
    assert_non_null(strstr(rec.responses[0].body, "no-such-host.invalid"));
    party_test_free(t);
}

static void test_redirect_is_followed(void **state) {
    party_test *t = new_harness();
    char url[256];
    (void)state;

    snprintf(url, sizeof(url), "http://127.0.0.1:%%d/redirect?to=http://127.0.0.1:%d/hello",
             srv.port);
    assert_int_equal(ask(t, "alice", url, "tag=r"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, 0);
    assert_int_equal(rec.responses[0].status, 200);
    assert_string_equal(rec.responses[0].body, "hello from the server");
    assert_int_equal(server_requests(), 2);
    party_test_free(t);
}

static void test_post_redirected_by_303_continues_as_get_without_its_body(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/see-other", "tag=s&method=POST"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, 0);
    assert_int_equal(rec.responses[0].status, 201);
    assert_string_equal(rec.responses[0].body, "GET /echo x-test=yes body=");
    assert_int_equal(server_requests(), 2);
    party_test_free(t);
}

static void test_too_many_redirects_are_an_error(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/loop", "tag=loop"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_ELIMIT);
    assert_int_equal(rec.responses[0].status, 0);
    assert_non_null(strstr(rec.responses[0].body, "more than 5 redirects"));
    /* The first request and the five redirects it followed. */
    assert_int_equal(server_requests(), 1 + PARTY_FETCH_URL_MAX_REDIRECTS);
    party_test_free(t);
}

static void test_connections_are_reused(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/keep", "tag=one"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(ask(t, "bob", "http://127.0.0.1:%d/keep", "tag=two"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.responses[0].body, "kept");
    assert_string_equal(rec.responses[1].body, "kept");
    assert_int_equal(server_requests(), 2);
    pthread_mutex_lock(&srv.mu);
    assert_int_equal(srv.accepts, 1);
    pthread_mutex_unlock(&srv.mu);
    party_test_free(t);
}

static void test_bad_arguments_are_refused_at_once(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(ask(t, "alice", "ftp://127.0.0.1:%d/x", NULL), 400);
    assert_int_equal(rec.result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "not a url", NULL), 400);
    assert_int_equal(rec.result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/x", "method=G%20T"), 400);
    assert_int_equal(rec.result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/x", "timeout=-1"), 400);
    assert_int_equal(rec.result, PARTY_EINVAL);
    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/x", "timeout=1e300"), 400);
    assert_int_equal(rec.result, PARTY_EINVAL);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 0);
    assert_int_equal(server_requests(), 0);
    party_test_free(t);
}

/* ---- policy ---- */

static void test_without_an_allow_list_every_request_is_refused_naming_the_flag(void **state) {
    party_test *t = new_harness_with(NULL, 0);
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=p"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_EPOLICY);
    assert_int_equal(rec.responses[0].status, 0);
    assert_non_null(strstr(rec.responses[0].body, "--fetch-allow"));
    assert_non_null(strstr(party_strerror(PARTY_EPOLICY), "--fetch-allow"));
    assert_int_equal(server_requests(), 0);
    party_test_free(t);
}

static void test_host_not_in_the_list_is_refused(void **state) {
    party_test *t = new_harness_with("api.example.com,https://other.example.com/v1/", 0);
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=p"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_EPOLICY);
    assert_non_null(strstr(rec.responses[0].body, "no entry covers it"));
    assert_int_equal(server_requests(), 0);
    party_test_free(t);
}

/* Any host is allowed ("*"), so only the connect-time check stands
 * between these URLs and the server on loopback. */
static void test_names_and_forms_of_loopback_are_refused_at_connect(void **state) {
    party_test *t = new_harness_with("*,localhost", 0);
    int i;
    (void)state;

    assert_int_equal(ask(t, "alice", "http://localhost:%d/hello", "tag=localhost"), 202);
    assert_int_equal(ask(t, "alice", "http://[::ffff:127.0.0.1]:%d/hello", "tag=mapped"), 202);
    assert_int_equal(ask(t, "alice", "http://2130706433:%d/hello", "tag=decimal"), 202);
    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=literal"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(rec.responses[i].error, PARTY_EPOLICY);
        assert_non_null(strstr(rec.responses[i].body, "private or special address"));
    }
    assert_int_equal(server_requests(), 0);
    party_test_free(t);
}

static void test_redirect_to_loopback_is_refused(void **state) {
    /* The server's own port is allowed by address; the redirect's is not. */
    party_test *t = new_harness_with("127.0.0.1:%d,*", 0);
    char url[256];
    (void)state;

    snprintf(url, sizeof(url), "http://127.0.0.1:%%d/redirect?to=http://127.0.0.1:%d/",
             closed_port());
    assert_int_equal(ask(t, "alice", url, "tag=r"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_EPOLICY);
    assert_int_equal(server_requests(), 1);
    party_test_free(t);
}

/* ---- durability ---- */

static void test_request_leaves_only_after_its_commit(void **state) {
    party_test *t = new_harness();
    uint64_t asked;
    (void)state;

    party_test_set_commit_delay(t, 300);
    asked = mono_ms();
    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=g&write=1"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(server_requests(), 1);
    assert_true(srv.last_at >= asked + 300);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 200);
    party_test_free(t);
}

static void test_request_whose_commit_fails_is_never_sent(void **state) {
    party_test *t = new_harness();
    (void)state;

    assert_int_equal(poke(t, "alice"), 200); /* started, its start committed */
    fail_commits = 1;
    ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=d&write=1");
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(party_test_commit_failures(t), 1);
    assert_int_equal(server_requests(), 0);
    assert_int_equal(rec.n, 0);
    /* Nothing of it was kept: a later incarnation has nothing to abort. */
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(poke(t, "alice"), 200);
    assert_int_equal(rec.n, 0);
    party_test_free(t);
}

static void test_answer_to_an_evicted_room_brings_it_back(void **state) {
    party_test *t = new_harness();
    char id[PARTY_ID_MAX];
    party_room *room;
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=late"), 202);
    /* The request has left; the room goes before its answer comes. */
    assert_int_equal(party_room_id_from_name("out", "alice", id), 0);
    room = party__room_find(party__runtime_rooms(party_test_runtime(t)), id);
    assert_non_null(room);
    assert_int_equal(party__room_evict(room), 0);
    assert_int_equal(rec.starts, 1);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].status, 200);
    assert_string_equal(rec.responses[0].room_name, "alice");
    assert_int_equal(rec.starts, 2); /* on_start ran again before on_response */
    party_test_free(t);
}

static void test_restart_answers_a_request_in_flight_aborted_before_other_events(void **state) {
    party_test *t = new_harness();
    char id[PARTY_ID_MAX];
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/slow", "tag=inflight"), 202);
    memcpy(id, rec.last_id, sizeof(id));
    assert_int_equal(party_test_restart(t), 0);
    assert_int_equal(rec.n, 0);
    rec.log[0] = '\0';
    assert_int_equal(poke(t, "alice"), 200);
    assert_string_equal(rec.log, "start,response:inflight,request");
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.responses[0].id, id);
    assert_int_equal(rec.responses[0].error, PARTY_EABORTED);
    assert_int_equal(rec.responses[0].status, 0);
    /* Answered once: the record went with that event. */
    assert_int_equal(party_test_restart(t), 0);
    rec.log[0] = '\0';
    assert_int_equal(poke(t, "alice"), 200);
    assert_string_equal(rec.log, "start,request");
    assert_int_equal(rec.n, 1);
    party_test_free(t);
}

static void test_one_room_cannot_take_every_request_slot(void **state) {
    party_test *t = new_harness();
    char count[32];
    (void)state;

    snprintf(count, sizeof(count), "count=%d", PARTY_MAX_ROOM_FETCH_URLS + 10);
    assert_int_equal(ask(t, "greedy", "http://127.0.0.1:%d/slow", count), 200);
    assert_int_equal(rec.taken, PARTY_MAX_ROOM_FETCH_URLS);
    assert_int_equal(rec.result, PARTY_ELIMIT);
    /* Another room still may ask. */
    assert_int_equal(ask(t, "modest", "http://127.0.0.1:%d/hello", "tag=m"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    party_test_free(t);
}

static void test_requests_over_fetch_max_in_flight_are_refused_until_one_answers(void **state) {
    party_config cfg;
    party_test *t;
    (void)state;

    party_config_init(&cfg);
    snprintf(allow_buf, sizeof(allow_buf), "127.0.0.1:%d", srv.port);
    cfg.fetch_allow = allow_buf;
    cfg.fetch_max_in_flight = 2;
    cfg.log_level = PARTY_LOG_ERROR;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &out_def), 0);
    memset(&rec, 0, sizeof(rec));

    /* Two requests the server holds take the process's two slots. */
    assert_int_equal(ask(t, "first", "http://127.0.0.1:%d/slow", "count=3"), 200);
    assert_int_equal(rec.taken, 2);
    assert_int_equal(rec.result, PARTY_ELIMIT);
    /* The limit is the process's: another room is refused too, at once. */
    assert_int_equal(ask(t, "second", "http://127.0.0.1:%d/hello", "tag=early"), 400);
    assert_int_equal(rec.result, PARTY_ELIMIT);
    assert_int_equal(rec.n, 0);
    /* Once they are answered (timed out), the slots are free again. */
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.responses[0].error, PARTY_ETIMEDOUT);
    assert_int_equal(ask(t, "second", "http://127.0.0.1:%d/hello", "tag=later"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.responses[2].error, 0);
    assert_int_equal(rec.responses[2].status, 200);
    assert_string_equal(rec.responses[2].tag, "later");
    party_test_free(t);
}

static void test_metrics_count_requests_errors_and_latency(void **state) {
    party_test *t = new_harness();
    party_test_response res;
    (void)state;

    assert_int_equal(ask(t, "alice", "http://127.0.0.1:%d/hello", "tag=a"), 202);
    assert_int_equal(ask(t, "alice", "http://not-allowed.example/", "tag=b"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 2);
    assert_int_equal(party_test_request(t, "GET", "/_partyd/metrics", NULL, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body, "\npartyd_outbound_requests_total 2\n"));
    assert_non_null(strstr(res.body, "\npartyd_outbound_errors_total{kind=\"policy\"} 1\n"));
    assert_non_null(strstr(res.body, "\npartyd_outbound_errors_total{kind=\"timeout\"} 0\n"));
    assert_non_null(strstr(res.body, "\npartyd_outbound_request_seconds_count 2\n"));
    assert_non_null(strstr(res.body, "\npartyd_outbound_in_flight 0\n"));
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_https_answer_with_the_ca_file_configured(void **state) {
    party_config cfg;
    party_test *t;
    char url[96];
    (void)state;

    party_config_init(&cfg);
    snprintf(allow_buf, sizeof(allow_buf), "127.0.0.1:%d", tls.port);
    cfg.fetch_allow = allow_buf;
    cfg.fetch_ca_file = tls.cert;
    cfg.log_level = PARTY_LOG_ERROR;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &out_def), 0);
    memset(&rec, 0, sizeof(rec));
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", tls.port);
    assert_int_equal(ask(t, "alice", url, "tag=tls"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, 0);
    assert_int_equal(rec.responses[0].status, 200);
    assert_string_equal(rec.responses[0].body, "hello, tls!\n");
    party_test_free(t);
}

static void test_https_to_an_untrusted_certificate_is_a_tls_error(void **state) {
    party_test *t;
    char url[96];
    (void)state;

    t = new_harness_with("127.0.0.1", 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", tls.port);
    assert_int_equal(ask(t, "alice", url, "tag=tls"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, PARTY_ETLS);
    assert_int_equal(rec.responses[0].status, 0);
    party_test_free(t);
}

/* ---- HTTP/2 ----
 *
 * libcurl speaks HTTP/2 only when built with it (nghttp2): without it the
 * test is skipped, not passed. The server is node's http2 module with
 * HTTP/1.1 turned off, started from tests/unit/h2_server.js with the
 * certificate tls_setup made; it answers with the version it saw. */

static struct {
    pid_t pid;
    int to_child; /* its stdin: closing it ends the server */
    int port;
} h2;

/* Starts the server; 0, or -1 if node is not there to run it (any other
 * failure to start fails the test). */
static int h2_start(void) {
    int in[2], out[2];
    char line[32];
    size_t got = 0;

    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    h2.pid = fork();
    assert_true(h2.pid >= 0);
    if (h2.pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execlp("node", "node", PARTY_H2_SERVER, tls.cert, tls.key, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    h2.to_child = in[1];
    while (got < sizeof(line) - 1 && read(out[0], line + got, 1) == 1 && line[got] != '\n')
        got++;
    line[got] = '\0';
    close(out[0]);
    h2.port = atoi(line);
    if (h2.port <= 0) {
        int status;
        close(h2.to_child);
        assert_int_equal(waitpid(h2.pid, &status, 0), h2.pid);
        h2.pid = 0;
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 127);
        return -1;
    }
    return 0;
}

static int h2_teardown(void **state) {
    if (h2.pid > 0) {
        close(h2.to_child);
        assert_int_equal(waitpid(h2.pid, NULL, 0), h2.pid);
        h2.pid = 0;
    }
    return tls_teardown(state);
}

static void test_https_answer_comes_over_http2(void **state) {
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    party_config cfg;
    party_test *t;
    char url[96];
    (void)state;

    if ((curl->features & CURL_VERSION_HTTP2) == 0) {
        print_message("libcurl %s has no HTTP/2: skipped\n", curl->version);
        skip();
    }
    if (h2_start() != 0) {
        print_message("node could not run %s: skipped\n", PARTY_H2_SERVER);
        skip();
    }
    party_config_init(&cfg);
    snprintf(allow_buf, sizeof(allow_buf), "127.0.0.1:%d", h2.port);
    cfg.fetch_allow = allow_buf;
    cfg.fetch_ca_file = tls.cert;
    cfg.log_level = PARTY_LOG_ERROR;
    t = party_test_new_with(&cfg);
    assert_non_null(t);
    assert_int_equal(party_test_add(t, &out_def), 0);
    memset(&rec, 0, sizeof(rec));
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/version", h2.port);
    assert_int_equal(ask(t, "alice", url, "tag=h2"), 202);
    assert_int_equal(party_test_run_until_idle(t), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.responses[0].error, 0);
    assert_int_equal(rec.responses[0].status, 200);
    assert_string_equal(rec.responses[0].body, "HTTP/2.0");
    party_test_free(t);
}

/* ---- the reminder party's webhooks ---- */

static party_test *reminder_harness(const char *allow) {
    party_test *t = new_harness_with(allow, 0);
    assert_int_equal(party_test_add(t, party_builtin_reminder()), 0);
    return t;
}

static int reminder_post(party_test *t, const char *query, const char *webhook,
                         party_test_response *res) {
    char target[1024], *p;
    size_t i;

    p = target + snprintf(target, sizeof(target), "/parties/reminder/desk?%s&webhook=", query);
    for (i = 0; webhook[i] != '\0'; i++)
        p += sprintf(p, "%%%02X", (unsigned char)webhook[i]);
    return party_test_request(t, "POST", target, NULL, "tea", 3, res);
}

static void test_reminder_posts_its_webhook_when_it_fires(void **state) {
    party_test *t = reminder_harness("127.0.0.1:%d");
    party_test_response res;
    char hook[96];
    (void)state;

    snprintf(hook, sizeof(hook), "http://127.0.0.1:%d/hook", srv.port);
    assert_int_equal(reminder_post(t, "in=1000&name=break", hook, &res), 0);
    assert_int_equal(res.status, 201);
    party_test_response_free(&res);
    assert_int_equal(server_requests(), 0);
    assert_int_equal(party_test_advance(t, 1000), 0);
    assert_int_equal(server_requests(), 1);
    assert_string_equal(srv.last, "POST /hook x-test= body={\"room\":\"desk\",\"name\":\"break\","
                                  "\"payload\":\"tea\"}");
    /* The outcome is kept; the fired record has the payload alone. */
    assert_int_equal(party_test_request(t, "GET", "/parties/reminder/desk", NULL, NULL, 0, &res),
                     0);
    assert_non_null(strstr(res.body, "\"webhooks\":[{\"name\":\"break\",\"status\":204,"
                                     "\"error\":\"\""));
    assert_non_null(strstr(res.body, "\"payload\":\"tea\""));
    party_test_response_free(&res);
    party_test_free(t);
}

static void test_reminder_says_webhooks_are_off_without_an_allow_list(void **state) {
    party_test *t = reminder_harness(NULL);
    party_test_response res;
    char hook[96];
    (void)state;

    snprintf(hook, sizeof(hook), "http://127.0.0.1:%d/hook", srv.port);
    assert_int_equal(reminder_post(t, "in=1000&name=break", hook, &res), 0);
    assert_int_equal(res.status, 403);
    assert_non_null(strstr(res.body, "webhooks are off"));
    assert_non_null(strstr(res.body, "--fetch-allow"));
    party_test_response_free(&res);
    /* Nothing was scheduled. */
    assert_int_equal(party_test_request(t, "GET", "/parties/reminder/desk", NULL, NULL, 0, &res),
                     0);
    assert_non_null(strstr(res.body, "\"schedules\":[]"));
    party_test_response_free(&res);
    assert_int_equal(party_test_advance(t, 2000), 0);
    assert_int_equal(server_requests(), 0);
    party_test_free(t);
}

static void test_reminder_refuses_a_webhook_outside_the_allow_list(void **state) {
    party_test *t = reminder_harness("127.0.0.1:%d");
    party_test_response res;
    (void)state;

    assert_int_equal(reminder_post(t, "in=1000", "https://elsewhere.example/hook", &res), 0);
    assert_int_equal(res.status, 403);
    assert_non_null(strstr(res.body, "webhook not allowed"));
    party_test_response_free(&res);
    assert_int_equal(reminder_post(t, "in=1000", "ftp://x.example/", &res), 0);
    assert_int_equal(res.status, 400);
    party_test_response_free(&res);
    party_test_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer_arrives_as_event_with_status_headers_and_body,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_headers_and_body_reach_the_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upstream_504_is_an_answer_not_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_answer_in_time_is_a_timeout_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_over_fetch_max_bytes_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_port_is_a_connect_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_host_is_a_dns_error_naming_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redirect_is_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_post_redirected_by_303_continues_as_get_without_its_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_redirects_are_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_are_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_are_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_without_an_allow_list_every_request_is_refused_naming_the_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_not_in_the_list_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_forms_of_loopback_are_refused_at_connect,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_to_loopback_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_leaves_only_after_its_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_whose_commit_fails_is_never_sent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_answer_to_an_evicted_room_brings_it_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_restart_answers_a_request_in_flight_aborted_before_other_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_room_cannot_take_every_request_slot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_requests_over_fetch_max_in_flight_are_refused_until_one_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_count_requests_errors_and_latency, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_https_answer_with_the_ca_file_configured, tls_setup,
                                        tls_teardown),
        cmocka_unit_test_setup_teardown(test_https_to_an_untrusted_certificate_is_a_tls_error,
                                        tls_setup, tls_teardown),
        cmocka_unit_test_setup_teardown(test_https_answer_comes_over_http2, tls_setup, h2_teardown),
        cmocka_unit_test_setup_teardown(test_reminder_posts_its_webhook_when_it_fires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reminder_says_webhooks_are_off_without_an_allow_list,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reminder_refuses_a_webhook_outside_the_allow_list,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
