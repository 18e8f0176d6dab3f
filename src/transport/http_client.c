/* http_client: outbound HTTP(S) through libcurl's multi interface, driven
 * by the loop (see http_client.h). Owns the multi handle, the uv_poll of
 * each socket libcurl asks to watch, one uv_timer for libcurl's timeouts,
 * one for handing finished transfers back on a later turn, and the
 * transfers. */
#include "http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "alloc.h"
#include "http.h"

#define BODY_FIRST 4096

/* A socket libcurl asked us to watch. Closed and freed on REMOVE. */
typedef struct sock_watch {
    uv_poll_t poll;
    party__http_client *client;
    curl_socket_t fd;
    struct sock_watch *prev, *next;
} sock_watch;

enum { TRANSFER_PREPARED, TRANSFER_RUNNING, TRANSFER_FINISHED };

struct party__http_transfer {
    party__http_client *client;
    party__http_transfer *prev, *next; /* the client's list (running or finished) */
    CURL *easy;
    struct curl_slist *header_list;
    char *method, *url, *body;
    size_t len;
    char **headers; /* name, value, ..., NULL: the caller's, copied */
    char host[256]; /* of the current URL, for redirects */
    uint64_t started_ms, deadline_ms;
    long redirects;
    party__http_done_cb done;
    void *arg;
    party__http_answer answer;
    char *in; /* the body read so far */
    size_t in_len, in_cap;
    size_t head_bytes;
    int too_big, head_too_big, policy_refused;
    int state; /* TRANSFER_*: which list it is on, if any */
    uint64_t timeout_ms;
    char refused_addr[INET6_ADDRSTRLEN + 8];
    char errbuf[CURL_ERROR_SIZE];
};

struct party__http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;      /* libcurl's timeout */
    uv_timer_t done_timer; /* hands finished transfers back */
    int open_timers;
    int freeing;
    char *ca_file;
    char *allow_source;
    party__http_client_config cfg;
    party__http_transfer *running, *finished, *finished_tail;
    sock_watch *watches;
    party__http_stats *stats; /* cfg.stats, or own */
    party__http_stats own;
};

/* ---- checks ---- */

/* Headers libcurl writes itself from what the request says. */
static int header_reserved(const char *name) {
    static const char *const reserved[] = {
        "host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te"};
    size_t i;
    for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return 1;
    return 0;
}

/* The parts of a URL the policy looks at, as libcurl reads them. 0, or
 * PARTY_EINVAL with why. */
typedef struct url_parts {
    int https;
    int port;
    char host[256];
    char path[2048];
} url_parts;

static int url_split(const char *url, url_parts *out, char *why, size_t why_len) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int r = PARTY_EINVAL;
    size_t n, i;

    if (u == NULL)
        return PARTY_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(why, why_len, "not a URL libcurl can parse: %.200s", url);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(why, why_len, "only http:// and https:// URLs: %.200s", url);
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        snprintf(why, why_len, "the URL has no host: %.200s", url);
        goto done;
    }
    out->https = strcmp(scheme, "https") == 0;
    out->port = atoi(port);
    /* An IPv6 literal comes with its brackets (and maybe a zone). */
    n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (strlen(host) >= sizeof(out->host) || strlen(path) >= sizeof(out->path)) {
        snprintf(why, why_len, "the URL's host or path is too long");
        goto done;
    }
    for (i = 0; host[i] != '\0'; i++)
        out->host[i] = (char)tolower((unsigned char)host[i]);
    out->host[i] = '\0';
    snprintf(out->path, sizeof(out->path), "%s", path);
    r = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return r;
}

int party__http_check(const party__http_out *out, char *why, size_t why_len) {
    const char *const *h;
    url_parts parts;

    if (!party__http_token_valid(out->method)) {
        snprintf(why, why_len, "the method is not an HTTP token");
        return PARTY_EINVAL;
    }
    for (h = out->headers; h != NULL && h[0] != NULL; h += 2) {
        if (h[1] == NULL || !party__http_token_valid(h[0]) ||
            !party__http_field_value_valid(h[1])) {
            snprintf(why, why_len, "a header name or value is malformed");
            return PARTY_EINVAL;
        }
        if (header_reserved(h[0])) {
            snprintf(why, why_len, "the header %s is written by the runtime", h[0]);
            return PARTY_EINVAL;
        }
    }
    if (out->url == NULL) {
        snprintf(why, why_len, "no URL");
        return PARTY_EINVAL;
    }
    return url_split(out->url, &parts, why, why_len);
}

/* ---- transfers ---- */

static void list_remove(party__http_transfer **head, party__http_transfer *t) {
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        *head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void transfer_free(party__http_transfer *t) {
    size_t i;
    if (t->easy != NULL)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->header_list);
    for (i = 0; t->headers != NULL && t->headers[i] != NULL; i++)
        party__free(t->headers[i]);
    party__free(t->headers);
    party__free(t->method);
    party__free(t->url);
    party__free(t->body);
    party__free(t->in);
    party__response_free(&t->answer.res);
    party__free(t);
}

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
    party__http_transfer *t = userp;
    size_t len = size * n;

    if (t->in_len + len > t->client->cfg.max_response_bytes) {
        t->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (t->in_len + len + 1 > t->in_cap) {
        size_t cap = t->in_cap == 0 ? BODY_FIRST : t->in_cap;
        char *grown;
        while (cap < t->in_len + len + 1)
            cap *= 2;
        grown = party__realloc(t->in, cap);
        if (grown == NULL)
            return 0;
        t->in = grown;
        t->in_cap = cap;
    }
    memcpy(t->in + t->in_len, data, len);
    t->in_len += len;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp) {
    party__http_transfer *t = userp;
    party_response *res = &t->answer.res;
    size_t len = size * n, name_len;
    const char *colon, *value, *end = data + len;

    t->head_bytes += len;
    if (t->head_bytes > t->client->cfg.max_header_bytes) {
        t->head_too_big = 1;
        return 0;
    }
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new head (after a 100 Continue): only the last one counts. */
        party__response_free(res);
        party__response_init(res);
        t->head_bytes = len;
        return len;
    }
    while (end > data && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    colon = memchr(data, ':', (size_t)(end - data));
    if (colon == NULL || colon == data)
        return len; /* the blank line, or a folded line we do not keep */
    name_len = (size_t)(colon - data);
    value = colon + 1;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (res->n_headers >= t->client->cfg.max_headers) {
        t->head_too_big = 1;
        return 0;
    }
    if (party__response_append_header(res, data, name_len, value, (size_t)(end - value)) != 0)
        return 0;
    return len;
}

static int sockaddr_split(const struct sockaddr *sa, int *family, unsigned char addr[16],
                          int *port) {
    memset(addr, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        *family = 4;
        memcpy(addr, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        *family = 6;
        memcpy(addr, &in6->sin6_addr, 16);
        *port = ntohs(in6->sin6_port);
        return 0;
    }
    return -1;
}

/* Every connection libcurl opens, the first and those of redirects, comes
 * through here: a private or special address is refused unless an IP or
 * CIDR entry of the allow-list covers it. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *address) {
    party__http_transfer *t = clientp;
    unsigned char addr[16];
    int family, port;
    (void)purpose;

    if (sockaddr_split(&address->addr, &family, addr, &port) != 0) {
        t->policy_refused = 1;
        snprintf(t->refused_addr, sizeof(t->refused_addr), "(not an IP address)");
        return CURL_SOCKET_BAD;
    }
    if (party__addr_special(family, addr) &&
        !party__allow_addr(t->client->cfg.allow, family, addr, port)) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(family == 4 ? AF_INET : AF_INET6, addr, text, sizeof(text));
        t->policy_refused = 1;
        snprintf(t->refused_addr, sizeof(t->refused_addr), family == 4 ? "%s:%d" : "[%s]:%d", text,
                 port);
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* The method and body on the easy handle, after a reset of both. */
static void easy_set_method(party__http_transfer *t) {
    CURL *e = t->easy;
    /* After a redirect to GET the old body is gone: libcurl must not keep
     * a pointer to it (setting POSTFIELDS makes a POST; HTTPGET undoes it). */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (strcmp(t->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(t->method, "GET") != 0 || t->len > 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body != NULL ? t->body : "");
        if (strcmp(t->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t->method);
    }
}

/* The header list from t->headers ("Expect:" keeps libcurl from waiting
 * for a 100 Continue). 0 or PARTY_ENOMEM. */
static int easy_set_headers(party__http_transfer *t) {
    struct curl_slist *list = NULL, *grown;
    char line[8192];
    size_t i;

    curl_slist_free_all(t->header_list);
    t->header_list = NULL;
    for (i = 0; t->headers != NULL && t->headers[i] != NULL; i += 2) {
        if (t->headers[i][0] == '\0')
            continue; /* dropped at a redirect */
        snprintf(line, sizeof(line), "%s: %s", t->headers[i], t->headers[i + 1]);
        if ((grown = curl_slist_append(list, line)) == NULL)
            goto fail;
        list = grown;
    }
    if ((grown = curl_slist_append(list, "Expect:")) == NULL)
        goto fail;
    list = grown;
    t->header_list = list;
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, list);
    return 0;
fail:
    curl_slist_free_all(list);
    return PARTY_ENOMEM;
}

static void done_timer_cb(uv_timer_t *timer);

/* The transfer is over: it goes to the finished list, handed back from
 * the done timer (never from inside start or libcurl's processing). */
static void transfer_finish(party__http_transfer *t, int error) {
    party__http_client *c = t->client;

    t->answer.error = error;
    t->answer.seconds = (double)(uv_now(c->loop) - t->started_ms) / 1000.0;
    if (error != 0) {
        party__response_free(&t->answer.res);
        party__response_init(&t->answer.res);
        t->answer.res.status = 0;
        party__response_text(&t->answer.res, 0, t->answer.why);
        t->answer.res.status = 0;
        c->stats->errors[party__http_error_index(error)]++;
    } else {
        c->stats->answered++;
    }
    c->stats->seconds_total += t->answer.seconds;
    {
        int b = 0;
        while (b + 1 < PARTY__HTTP_BUCKETS && t->answer.seconds > party__http_bucket_seconds[b])
            b++;
        c->stats->seconds_hist[b]++;
    }
    t->state = TRANSFER_FINISHED;
    t->prev = c->finished_tail;
    t->next = NULL;
    if (c->finished_tail != NULL)
        c->finished_tail->next = t;
    else
        c->finished = t;
    c->finished_tail = t;
    uv_timer_start(&c->done_timer, done_timer_cb, 0, 0);
}

static void transfer_fail(party__http_transfer *t, int error, const char *fmt, const char *arg) {
    snprintf(t->answer.why, sizeof(t->answer.why), fmt, arg);
    transfer_finish(t, error);
}

/* Checks the current URL against the policy and puts it on the handle.
 * 0, or the transfer failed (it is finished). */
/* The URL against a policy: 0 with *parts filled, or the refusal. */
static int url_allowed(const party__allow *allow, const char *source, const char *url,
                       url_parts *parts, char *why, size_t why_len) {
    int r = url_split(url, parts, why, why_len);
    if (r != 0)
        return r == PARTY_ENOMEM ? PARTY_ENOMEM : PARTY_EPOLICY;
    if (!party__allow_url(allow, parts->https, parts->host, parts->port, parts->path)) {
        snprintf(why, why_len, "%.200s is not allowed by %s (%s)", url, source,
                 party__allow_count(allow) == 0
                     ? "empty: outbound requests are off; list URL prefixes, hosts or "
                       "addresses to allow"
                     : "no entry covers it");
        return PARTY_EPOLICY;
    }
    return 0;
}

int party__http_url_allowed(const party__allow *allow, const char *source, const char *url,
                            char *why, size_t why_len) {
    url_parts parts;
    int r = url_allowed(allow, source, url, &parts, why, why_len);
    /* A URL libcurl cannot parse is a bad argument here, not a refusal. */
    if (r == PARTY_EPOLICY && url_split(url, &parts, why, why_len) != 0)
        return PARTY_EINVAL;
    return r;
}

static int transfer_aim(party__http_transfer *t) {
    party__http_client *c = t->client;
    url_parts parts;
    uint64_t now = uv_now(c->loop);
    int r = url_allowed(c->cfg.allow, c->cfg.allow_source, t->url, &parts, t->answer.why,
                        sizeof(t->answer.why));

    if (r != 0) {
        transfer_finish(t, r);
        return -1;
    }
    snprintf(t->host, sizeof(t->host), "%s", parts.host);
    if (now >= t->deadline_ms) {
        snprintf(t->answer.why, sizeof(t->answer.why), "no answer within the request's time");
        transfer_finish(t, PARTY_ETIMEDOUT);
        return -1;
    }
    curl_easy_setopt(t->easy, CURLOPT_URL, t->url);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)(t->deadline_ms - now));
    return 0;
}

static int transfer_add(party__http_transfer *t) {
    party__http_client *c = t->client;
    party__response_free(&t->answer.res);
    party__response_init(&t->answer.res);
    t->in_len = 0;
    t->head_bytes = 0;
    t->policy_refused = 0;
    t->errbuf[0] = '\0';
    if (curl_multi_add_handle(c->multi, t->easy) != CURLM_OK) {
        transfer_fail(t, PARTY_ENOMEM, "%s", "libcurl could not take the transfer");
        return -1;
    }
    t->prev = NULL;
    t->next = c->running;
    if (c->running != NULL)
        c->running->prev = t;
    c->running = t;
    return 0;
}

static int is_redirect(long status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follows a redirect: the new URL is checked against the policy like
 * the first; 303 (and 301/302 after a POST) turns the request into a
 * GET; credentials do not follow to another host. 1 if it went on. */
static int transfer_redirect(party__http_transfer *t, long status) {
    char *location = NULL, *copy;
    char old_host[256];
    size_t i;

    if (curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location) != CURLE_OK ||
        location == NULL)
        return 0;
    if (t->redirects >= t->client->cfg.max_redirects) {
        snprintf(t->answer.why, sizeof(t->answer.why), "more than %ld redirects",
                 t->client->cfg.max_redirects);
        transfer_finish(t, PARTY_ELIMIT);
        return 1;
    }
    copy = party__strdup(location);
    if (copy == NULL) {
        transfer_fail(t, PARTY_ENOMEM, "%s", "out of memory following a redirect");
        return 1;
    }
    party__free(t->url);
    t->url = copy;
    t->redirects++;
    t->client->stats->redirects++;
    if ((status == 303 && strcmp(t->method, "HEAD") != 0) ||
        ((status == 301 || status == 302) && strcmp(t->method, "POST") == 0)) {
        party__free(t->method);
        t->method = party__strdup("GET");
        party__free(t->body);
        t->body = NULL;
        t->len = 0;
        if (t->method == NULL) {
            transfer_fail(t, PARTY_ENOMEM, "%s", "out of memory following a redirect");
            return 1;
        }
    }
    snprintf(old_host, sizeof(old_host), "%s", t->host);
    if (transfer_aim(t) != 0)
        return 1;
    if (strcmp(old_host, t->host) != 0)
        for (i = 0; t->headers != NULL && t->headers[i] != NULL; i += 2)
            if (strcasecmp(t->headers[i], "authorization") == 0 ||
                strcasecmp(t->headers[i], "cookie") == 0 ||
                strcasecmp(t->headers[i], "proxy-authorization") == 0)
                t->headers[i][0] = '\0';
    easy_set_method(t);
    if (easy_set_headers(t) != 0) {
        transfer_fail(t, PARTY_ENOMEM, "%s", "out of memory following a redirect");
        return 1;
    }
    (void)transfer_add(t);
    return 1;
}

static int curl_error(party__http_transfer *t, CURLcode code, char *why, size_t why_len) {
    const char *detail = t->errbuf[0] != '\0' ? t->errbuf : curl_easy_strerror(code);
    if (t->policy_refused) {
        snprintf(why, why_len,
                 "connection to %s refused: a private or special address, and no IP or CIDR "
                 "entry of %s covers it",
                 t->refused_addr, t->client->cfg.allow_source);
        return PARTY_EPOLICY;
    }
    if (t->too_big || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, why_len, "the answer is larger than %zu bytes",
                 t->client->cfg.max_response_bytes);
        return PARTY_ETOOBIG;
    }
    if (t->head_too_big) {
        snprintf(why, why_len, "the answer's head is over %zu bytes or %zu fields",
                 t->client->cfg.max_header_bytes, t->client->cfg.max_headers);
        return PARTY_ETOOBIG;
    }
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(why, why_len, "no answer within the request's time (%s)", detail);
        return PARTY_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(why, why_len, "%s", detail);
        return PARTY_EDNS;
    case CURLE_COULDNT_CONNECT:
        snprintf(why, why_len, "%s", detail);
        return PARTY_ECONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        snprintf(why, why_len, "%s", detail);
        return PARTY_ETLS;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:
        snprintf(why, why_len, "out of memory reading the answer");
        return PARTY_ENOMEM;
    default:
        snprintf(why, why_len, "%s", detail);
        return PARTY_EIO;
    }
}

/* libcurl says the transfer ended. */
static void transfer_ended(party__http_transfer *t, CURLcode code) {
    party__http_client *c = t->client;
    long status = 0;

    curl_multi_remove_handle(c->multi, t->easy);
    list_remove(&c->running, t);
    if (code != CURLE_OK) {
        int error = curl_error(t, code, t->answer.why, sizeof(t->answer.why));
        transfer_finish(t, error);
        return;
    }
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (is_redirect(status) && transfer_redirect(t, status))
        return;
    t->answer.res.status = (int)status;
    if (t->in_len > 0) {
        t->in[t->in_len] = '\0';
        t->answer.res.body = t->in;
        t->answer.res.body_len = t->in_len;
        t->in = NULL;
        t->in_len = t->in_cap = 0;
    }
    transfer_finish(t, 0);
}

static void check_done(party__http_client *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        party__http_transfer *t = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t != NULL)
            transfer_ended(t, msg->data.result);
    }
}

static void done_timer_cb(uv_timer_t *timer) {
    party__http_client *c = timer->data;
    party__http_transfer *t;

    /* One at a time from the head: a callback may start or cancel others. */
    while ((t = c->finished) != NULL) {
        c->finished = t->next;
        if (c->finished == NULL)
            c->finished_tail = NULL;
        else
            c->finished->prev = NULL;
        t->next = NULL;
        c->stats->in_flight--;
        t->done(&t->answer, t->arg);
        transfer_free(t);
    }
}

/* ---- the loop's side of libcurl ---- */

static void on_watch_closed(uv_handle_t *handle) {
    party__free(handle->data);
}

static void watch_close(sock_watch *w) {
    party__http_client *c = w->client;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        c->watches = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

static void on_poll(uv_poll_t *handle, int status, int events) {
    sock_watch *w = handle->data;
    party__http_client *c = w->client;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else
        flags = ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
                ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(c->multi, w->fd, flags, &running);
    check_done(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    party__http_client *c = userp;
    sock_watch *w = socketp;
    int events = 0;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            watch_close(w);
        }
        return 0;
    }
    if (w == NULL) {
        w = party__calloc(1, sizeof(*w));
        if (w == NULL)
            return -1;
        if (uv_poll_init_socket(c->loop, &w->poll, fd) != 0) {
            party__free(w);
            return -1;
        }
        w->poll.data = w;
        w->client = c;
        w->fd = fd;
        w->next = c->watches;
        if (c->watches != NULL)
            c->watches->prev = w;
        c->watches = w;
        curl_multi_assign(c->multi, fd, w);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *timer) {
    party__http_client *c = timer->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
    party__http_client *c = userp;
    (void)multi;
    if (c->freeing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the client ---- */

party__http_client *party__http_client_new(uv_loop_t *loop, const party__http_client_config *cfg) {
    party__http_client *c;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    c = party__calloc(1, sizeof(*c));
    if (c == NULL) {
        curl_global_cleanup();
        return NULL;
    }
    c->loop = loop;
    c->cfg = *cfg;
    c->ca_file = cfg->ca_file != NULL ? party__strdup(cfg->ca_file) : NULL;
    c->allow_source =
        party__strdup(cfg->allow_source != NULL ? cfg->allow_source : "--fetch-allow");
    c->multi = curl_multi_init();
    if (c->multi == NULL || (cfg->ca_file != NULL && c->ca_file == NULL) ||
        c->allow_source == NULL) {
        if (c->multi != NULL)
            curl_multi_cleanup(c->multi);
        party__free(c->ca_file);
        party__free(c->allow_source);
        party__free(c);
        curl_global_cleanup();
        return NULL;
    }
    c->cfg.ca_file = c->ca_file;
    c->cfg.allow_source = c->allow_source;
    c->stats = cfg->stats != NULL ? cfg->stats : &c->own;
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->done_timer);
    c->timer.data = c->done_timer.data = c;
    c->open_timers = 2;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* Several requests to one server share a connection (HTTP/2). */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return c;
}

static void on_timer_closed(uv_handle_t *handle) {
    party__http_client *c = handle->data;
    if (--c->open_timers == 0) {
        party__free(c->ca_file);
        party__free(c->allow_source);
        party__free(c);
        curl_global_cleanup();
    }
}

void party__http_client_free(party__http_client *c) {
    party__http_transfer *t;

    if (c == NULL)
        return;
    c->freeing = 1;
    while ((t = c->running) != NULL) {
        curl_multi_remove_handle(c->multi, t->easy);
        list_remove(&c->running, t);
        transfer_free(t);
    }
    while ((t = c->finished) != NULL) {
        c->finished = t->next;
        transfer_free(t);
    }
    c->finished_tail = NULL;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->watches != NULL)
        watch_close(c->watches);
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->done_timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->done_timer, on_timer_closed);
}

int party__http_prepare(party__http_client *c, const party__http_out *out,
                        party__http_transfer **transfer) {
    party__http_transfer *t = party__calloc(1, sizeof(*t));
    size_t n = 0, i;

    if (t == NULL)
        return PARTY_ENOMEM;
    t->client = c;
    party__response_init(&t->answer.res);
    for (n = 0; out->headers != NULL && out->headers[n] != NULL; n++)
        ;
    t->method = party__strdup(out->method != NULL ? out->method : "GET");
    t->url = party__strdup(out->url != NULL ? out->url : "");
    t->headers = party__calloc(n + 1, sizeof(char *));
    t->len = out->len;
    if (out->len > 0 && (t->body = party__malloc(out->len)) != NULL)
        memcpy(t->body, out->body, out->len);
    t->easy = curl_easy_init();
    if (t->method == NULL || t->url == NULL || t->headers == NULL ||
        (out->len > 0 && t->body == NULL) || t->easy == NULL)
        goto fail;
    for (i = 0; i < n; i++)
        if ((t->headers[i] = party__strdup(out->headers[i])) == NULL)
            goto fail;
    t->timeout_ms = out->timeout_ms > 0 ? out->timeout_ms : 1;

    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
    /* Proxies from the environment would connect past the address checks. */
    curl_easy_setopt(t->easy, CURLOPT_PROXY, "");
    curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cfg.max_response_bytes);
    if (c->ca_file != NULL)
        curl_easy_setopt(t->easy, CURLOPT_CAINFO, c->ca_file);
    easy_set_method(t);
    if (easy_set_headers(t) != 0)
        goto fail;
    *transfer = t;
    return 0;
fail:
    transfer_free(t);
    return PARTY_ENOMEM;
}

void party__http_go(party__http_transfer *t, party__http_done_cb done, void *arg) {
    party__http_client *c = t->client;

    t->done = done;
    t->arg = arg;
    t->state = TRANSFER_RUNNING;
    t->started_ms = uv_now(c->loop);
    t->deadline_ms = t->started_ms + t->timeout_ms;
    c->stats->requests++;
    c->stats->in_flight++;
    /* A refusal is an answer like any other, from a later loop turn. */
    if (transfer_aim(t) == 0)
        (void)transfer_add(t);
}

void party__http_cancel(party__http_transfer *t) {
    party__http_client *c;
    if (t == NULL)
        return;
    c = t->client;
    if (t->state == TRANSFER_PREPARED) {
        transfer_free(t);
        return;
    }
    if (t->state == TRANSFER_FINISHED) {
        if (t->prev != NULL)
            t->prev->next = t->next;
        else
            c->finished = t->next;
        if (t->next != NULL)
            t->next->prev = t->prev;
        else
            c->finished_tail = t->prev;
    } else {
        curl_multi_remove_handle(c->multi, t->easy);
        list_remove(&c->running, t);
    }
    c->stats->in_flight--;
    transfer_free(t);
}

const double party__http_bucket_seconds[PARTY__HTTP_BUCKETS] = {0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                                2.5,  5,    10,  30,   0};

static const char *const error_labels[8] = {"timeout",   "dns",    "connect", "tls",
                                            "too_large", "policy", "aborted", "other"};

const char *party__http_error_label(int index) {
    return index >= 0 && index < 8 ? error_labels[index] : "other";
}

int party__http_error_index(int error) {
    switch (error) {
    case PARTY_ETIMEDOUT:
        return 0;
    case PARTY_EDNS:
        return 1;
    case PARTY_ECONNECT:
        return 2;
    case PARTY_ETLS:
        return 3;
    case PARTY_ETOOBIG:
        return 4;
    case PARTY_EPOLICY:
        return 5;
    case PARTY_EABORTED:
        return 6;
    default:
        return 7;
    }
}
