/* request: party_request accessors over a copied, parsed HTTP request, and
 * party_response building and serialisation. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url.h"
#include "alloc.h"

static char *copy_slice(char **cursor, party__slice s) {
    char *out = *cursor;
    if (s.len > 0)
        memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    *cursor += s.len + 1;
    return out;
}

int party__request_init(party_request *req, const party__http_request *http) {
    size_t total =
        http->method.len + 1 + http->target.len + 1 + http->path.len + 1 + http->query.len + 1;
    size_t i;
    char *cursor;

    memset(req, 0, sizeof(*req));
    for (i = 0; i < http->n_headers; i++)
        total += http->headers[i].name.len + 1 + http->headers[i].value.len + 1;
    req->arena = party__malloc(total);
    req->cap_headers = http->n_headers + 4;
    req->headers = party__calloc(req->cap_headers, sizeof(*req->headers));
    if (req->arena == NULL || req->headers == NULL) {
        party__request_free(req);
        return PARTY_ENOMEM;
    }
    cursor = req->arena;
    req->method = copy_slice(&cursor, http->method);
    req->url = copy_slice(&cursor, http->target);
    req->path = copy_slice(&cursor, http->path);
    for (i = 0; i < http->n_headers; i++) {
        req->headers[i].name = copy_slice(&cursor, http->headers[i].name);
        req->headers[i].value = copy_slice(&cursor, http->headers[i].value);
    }
    req->n_headers = http->n_headers;
    req->decoded = cursor;
    req->decoded[0] = '\0';
    req->query = http->query;
    req->body = http->body;
    return 0;
}

void party__request_free(party_request *req) {
    size_t i;
    if (req == NULL)
        return;
    for (i = 0; i < req->n_extra; i++)
        party__free(req->extra[i]);
    party__free(req->extra);
    party__free(req->headers);
    party__free(req->arena);
    memset(req, 0, sizeof(*req));
}

/* Keeps s alive until the request is freed. */
static char *request_keep(party_request *req, char *s) {
    char **grown;
    if (s == NULL)
        return NULL;
    grown = party__realloc(req->extra, (req->n_extra + 1) * sizeof(*grown));
    if (grown == NULL) {
        party__free(s);
        return NULL;
    }
    req->extra = grown;
    req->extra[req->n_extra++] = s;
    return s;
}

const char *party_request_method(const party_request *req) {
    return req->method;
}

const char *party_request_url(const party_request *req) {
    return req->url;
}

const char *party_request_path(const party_request *req) {
    return req->path;
}

/* Requests and responses keep their headers the same way: these two serve
 * both. The first value called name (case-insensitive), or NULL. */
static const char *headers_find(const party__header *headers, size_t n, const char *name) {
    size_t i;
    for (i = 0; i < n; i++)
        if (strcasecmp(headers[i].name, name) == 0)
            return headers[i].value;
    return NULL;
}

/* Calls fn for each header in order until it returns non-zero. */
static int headers_foreach(const party__header *headers, size_t n,
                           int (*fn)(const char *name, const char *value, void *arg), void *arg) {
    size_t i;
    int r;
    if (fn == NULL)
        return PARTY_EINVAL;
    for (i = 0; i < n; i++)
        if ((r = fn(headers[i].name, headers[i].value, arg)) != 0)
            return r;
    return 0;
}

const char *party_request_header(const party_request *req, const char *name) {
    if (name == NULL)
        return NULL;
    return headers_find(req->headers, req->n_headers, name);
}

int party_request_foreach_header(const party_request *req,
                                 int (*fn)(const char *name, const char *value, void *arg),
                                 void *arg) {
    if (req == NULL)
        return PARTY_EINVAL;
    return headers_foreach(req->headers, req->n_headers, fn, arg);
}

const char *party_request_query(const party_request *req, const char *name) {
    party__slice raw;
    char *value;

    if (name == NULL)
        return NULL;
    raw = party__url_query_find(req->query, name);
    if (raw.ptr == NULL)
        return NULL;
    /* Decoded into the room the request reserved for it, at the raw value's
     * offset: never longer than the raw value, its NUL lands on the '&'
     * after it, and decoding it again writes the same bytes, so a pointer
     * returned earlier stays valid. No allocation: NULL means absent or
     * undecodable, never out of memory. */
    value = req->decoded + (raw.ptr - req->query.ptr);
    if (party__url_decode(raw, value, raw.len + 1, 1) < 0)
        return NULL;
    return value;
}

const void *party_request_body(const party_request *req, size_t *len) {
    if (len != NULL)
        *len = req->body.len;
    return req->body.len > 0 ? req->body.ptr : NULL;
}

int party_request_set_header(party_request *req, const char *name, const char *value) {
    size_t i;
    char *name_copy, *value_copy;

    if (req == NULL || name == NULL || value == NULL || name[0] == '\0' ||
        strpbrk(name, ":\r\n") != NULL || strpbrk(value, "\r\n") != NULL)
        return PARTY_EINVAL;
    value_copy = request_keep(req, party__strdup(value));
    if (value_copy == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            req->headers[i].value = value_copy;
            return 0;
        }
    }
    if (req->n_headers == req->cap_headers) {
        /* party__request_init leaves room for 4 more; a capacity of 0 is
         * not expected, but doubling it would allocate nothing. */
        size_t cap = req->cap_headers > 0 ? 2 * req->cap_headers : 8;
        party__header *grown = party__realloc(req->headers, cap * sizeof(*grown));
        if (grown == NULL)
            return PARTY_ENOMEM;
        req->headers = grown;
        req->cap_headers = cap;
    }
    name_copy = request_keep(req, party__strdup(name));
    if (name_copy == NULL)
        return PARTY_ENOMEM;
    req->headers[req->n_headers].name = name_copy;
    req->headers[req->n_headers].value = value_copy;
    req->n_headers++;
    return 0;
}

int party_request_set_props(party_request *req, const char *props) {
    char *copy;
    if (req == NULL || props == NULL)
        return PARTY_EINVAL;
    copy = request_keep(req, party__strdup(props));
    if (copy == NULL)
        return PARTY_ENOMEM;
    req->props = copy;
    return 0;
}

/* ---- responses ---- */

void party__response_init(party_response *res) {
    memset(res, 0, sizeof(*res));
    res->status = 200;
}

void party__response_free(party_response *res) {
    size_t i;
    if (res == NULL)
        return;
    for (i = 0; i < res->n_headers; i++) {
        party__free(res->headers[i].name);
        party__free(res->headers[i].value);
    }
    party__free(res->headers);
    party__free(res->body);
    party__response_init(res);
}

void party_response_set_status(party_response *res, int status) {
    if (res != NULL && status >= 100 && status <= 999)
        res->status = status;
}

/* Headers the runtime writes itself; a party cannot set them. */
static int header_is_framing(const char *name) {
    return strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
           strcasecmp(name, "connection") == 0;
}

static int header_settable(const char *name, const char *value) {
    return name != NULL && value != NULL && name[0] != '\0' && strpbrk(name, ":\r\n \t") == NULL &&
           strpbrk(value, "\r\n") == NULL && !header_is_framing(name);
}

int party__response_append_header(party_response *res, const char *name, size_t name_len,
                                  const char *value, size_t value_len) {
    party__header *grown = party__realloc(res->headers, (res->n_headers + 1) * sizeof(*grown));
    party__header *h;

    if (grown == NULL)
        return PARTY_ENOMEM;
    res->headers = grown;
    h = &res->headers[res->n_headers];
    h->name = party__strndup(name, name_len);
    h->value = party__strndup(value, value_len);
    if (h->name == NULL || h->value == NULL) {
        party__free(h->name);
        party__free(h->value);
        return PARTY_ENOMEM;
    }
    res->n_headers++;
    return 0;
}

void party_response_set_header(party_response *res, const char *name, const char *value) {
    size_t i;

    if (res == NULL || !header_settable(name, value))
        return;
    for (i = 0; i < res->n_headers; i++) {
        if (strcasecmp(res->headers[i].name, name) == 0) {
            char *copy = party__strdup(value);
            if (copy == NULL) {
                res->failed = 1;
                return;
            }
            party__free(res->headers[i].value);
            res->headers[i].value = copy;
            return;
        }
    }
    if (party__response_append_header(res, name, strlen(name), value, strlen(value)) != 0)
        res->failed = 1;
}

void party_response_add_header(party_response *res, const char *name, const char *value) {
    if (res == NULL || !header_settable(name, value))
        return;
    if (party__response_append_header(res, name, strlen(name), value, strlen(value)) != 0)
        res->failed = 1;
}

void party_response_set_body(party_response *res, const void *data, size_t len) {
    char *copy = NULL;
    if (res == NULL)
        return;
    if (len > 0) {
        /* NUL-terminated past len, so a text body reads as a string. */
        copy = party__malloc(len + 1);
        if (copy == NULL) {
            res->failed = 1;
            return;
        }
        memcpy(copy, data, len);
        copy[len] = '\0';
    }
    party__free(res->body);
    res->body = copy;
    res->body_len = len;
}

void party__response_text(party_response *res, int status, const char *text) {
    party_response_text(res, status, text);
}

void party_response_text(party_response *res, int status, const char *text) {
    if (res == NULL)
        return;
    if (text == NULL)
        text = "";
    party_response_set_status(res, status);
    party_response_set_header(res, "Content-Type", "text/plain; charset=utf-8");
    party_response_set_body(res, text, strlen(text));
}

void party_response_json(party_response *res, int status, const char *json_text) {
    if (res == NULL)
        return;
    if (json_text == NULL)
        json_text = "null";
    party_response_set_status(res, status);
    party_response_set_header(res, "Content-Type", "application/json");
    party_response_set_body(res, json_text, strlen(json_text));
}

const char *party__response_header_get(const party_response *res, const char *name) {
    return headers_find(res->headers, res->n_headers, name);
}

int party_response_get_status(const party_response *res) {
    return res != NULL ? res->status : 0;
}

const char *party_response_get_header(const party_response *res, const char *name) {
    if (res == NULL || name == NULL)
        return NULL;
    return party__response_header_get(res, name);
}

int party_response_foreach_header(const party_response *res,
                                  int (*fn)(const char *name, const char *value, void *arg),
                                  void *arg) {
    if (res == NULL)
        return PARTY_EINVAL;
    return headers_foreach(res->headers, res->n_headers, fn, arg);
}

const void *party_response_get_body(const party_response *res, size_t *len) {
    size_t n = res != NULL ? res->body_len : 0;
    if (len != NULL)
        *len = n;
    return n > 0 ? res->body : NULL;
}

party__buf *party__response_serialize(const party_response *res, int head_only, int keep_alive,
                                      const char *date) {
    static const char failed_body[] = "internal error: out of memory building the response\n";
    int status = res->failed ? 500 : res->status;
    const char *body = res->failed ? failed_body : res->body;
    size_t body_len = res->failed ? sizeof(failed_body) - 1 : res->body_len;
    /* 1xx, 204 and 304 carry no body and (except 1xx upgrades) no length. */
    int no_body = status < 200 || status == 204 || status == 304;
    size_t cap =
        128 + (date != NULL ? strlen(date) + 8 : 0) + (head_only || no_body ? 0 : body_len);
    size_t i;
    party__buf *buf;
    int n;

    if (!res->failed)
        for (i = 0; i < res->n_headers; i++)
            cap += strlen(res->headers[i].name) + strlen(res->headers[i].value) + 4;
    buf = party__buf_new(cap);
    if (buf == NULL)
        return NULL;
    n = snprintf(buf->data, cap, "HTTP/1.1 %d %s\r\n", status, party__http_status_text(status));
    buf->len = (size_t)n;
    if (!res->failed) {
        for (i = 0; i < res->n_headers; i++) {
            n = snprintf(buf->data + buf->len, cap - buf->len, "%s: %s\r\n", res->headers[i].name,
                         res->headers[i].value);
            buf->len += (size_t)n;
        }
    }
    if (status >= 200 && status != 204 && status != 304) {
        n = snprintf(buf->data + buf->len, cap - buf->len, "Content-Length: %zu\r\n", body_len);
        buf->len += (size_t)n;
    }
    if (status >= 200 && date != NULL &&
        (res->failed || party__response_header_get(res, "Date") == NULL)) {
        n = snprintf(buf->data + buf->len, cap - buf->len, "Date: %s\r\n", date);
        buf->len += (size_t)n;
    }
    if (status >= 200) {
        n = snprintf(buf->data + buf->len, cap - buf->len, "Connection: %s\r\n",
                     keep_alive ? "keep-alive" : "close");
        buf->len += (size_t)n;
    }
    memcpy(buf->data + buf->len, "\r\n", 2);
    buf->len += 2;
    if (!head_only && !no_body && body_len > 0) {
        memcpy(buf->data + buf->len, body, body_len);
        buf->len += body_len;
    }
    return buf;
}

/* ---- old names, kept until 1.0 (party.h) ---- */

void party_response_status(party_response *res, int status) {
    party_response_set_status(res, status);
}

void party_response_header(party_response *res, const char *name, const char *value) {
    party_response_set_header(res, name, value);
}

void party_response_body(party_response *res, const void *data, size_t len) {
    party_response_set_body(res, data, len);
}

int party_request_remote_addr(const party_request *req, char *out, size_t size) {
    return party__addr_text_checked(req != NULL ? &req->remote : NULL, out, size);
}
