/* http: strict, incremental HTTP/1.1 request and response parsers. Both find
 * the end of the head with a scan that resumes where the previous call
 * stopped, validate the head in one pass, then read a Content-Length body,
 * decode a chunked one in place or (responses) read one to the end of the
 * stream. The two share every step but the first line and the framing rules.
 * They own nothing: every slice points into the caller's buffer, and all
 * state between calls lives in party__http_parser. */
#include "http.h"

#include <string.h>
#include <strings.h>

#include "url.h"

/* Chunked decoding states. The zero state is the first one, so a zeroed
 * parser starts at the first chunk-size line. */
enum {
    CHUNK_SIZE_FIRST = 0, /* expecting the first hex digit of a chunk size */
    CHUNK_SIZE,           /* more hex digits, ';', BWS or CR */
    CHUNK_SIZE_SPACE,     /* BWS after the size: only ';' may follow */
    CHUNK_EXT,            /* a chunk extension, ignored up to CR */
    CHUNK_SIZE_LF,        /* the LF ending a chunk-size line */
    CHUNK_DATA,           /* chunk_left bytes of data */
    CHUNK_DATA_CR,        /* the CRLF after the data */
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START, /* start of a trailer line, or of the final CRLF */
    CHUNK_TRAILER_NAME,
    CHUNK_TRAILER_VALUE,
    CHUNK_TRAILER_LF,
    CHUNK_END_LF, /* the LF of the final CRLF */
    CHUNK_DONE
};

/* The error texts that name the kind of message, so a log line says
 * whether a request or a response was at fault. */
typedef struct message_texts {
    const char *bare_lf;
    const char *empty_first_line;
    const char *head_too_big;
    const char *too_many_fields;
    const char *obs_fold;
    const char *body_too_big;
    const char *trailers_too_big;
    const char *encoding_in_http10;
} message_texts;

static const message_texts request_texts = {
    "bare LF in request head",
    "empty request line",
    "request head exceeds max_header_bytes",
    "request has more header fields than max_headers",
    "obsolete line folding in request head",
    "request body exceeds max_body_bytes",
    "request head and trailers exceed max_header_bytes",
    "Transfer-Encoding in an HTTP/1.0 request",
};

static const message_texts response_texts = {
    "bare LF in response head",
    "empty status line",
    "response head exceeds max_header_bytes",
    "response has more header fields than max_headers",
    "obsolete line folding in response head",
    "response body exceeds max_body",
    "response head and trailers exceed max_header_bytes",
    "Transfer-Encoding in an HTTP/1.0 response",
};

static const message_texts *texts_of(const party__http_parser *p) {
    return p->response ? &response_texts : &request_texts;
}

static int fail(party__http_error *err, int status, const char *reason) {
    err->status = status;
    err->reason = reason;
    return PARTY__HTTP_ERROR;
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t';
}

/* field-vchar, SP or HTAB; obs-text (0x80-0xFF) is allowed as RFC 9110 does. */
static int is_value_char(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int party__http_token_valid(const char *s) {
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

int party__http_field_value_valid(const char *s) {
    for (; *s != '\0'; s++)
        if (!is_value_char((unsigned char)*s))
            return 0;
    return 1;
}

static int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static size_t max_headers_of(const party__http_limits *limits) {
    return limits->max_headers < PARTY__HTTP_MAX_HEADERS ? limits->max_headers
                                                         : PARTY__HTTP_MAX_HEADERS;
}

void party__http_parser_init(party__http_parser *p) {
    memset(p, 0, sizeof(*p));
}

void party__http_response_parser_init(party__http_parser *p, int flags) {
    memset(p, 0, sizeof(*p));
    p->response = 1;
    p->flags = flags;
}

/* Looks for the blank line ending the head, from where the last call stopped.
 * Every LF seen is checked to follow a CR, so the head parser can split lines
 * on CRLF without looking for bare LFs again. */
static int scan_head(party__http_parser *p, const char *buf, size_t len,
                     const party__http_limits *limits, party__http_error *err) {
    const message_texts *texts = texts_of(p);
    size_t end = len < limits->max_header_bytes ? len : limits->max_header_bytes;
    size_t i = p->scanned;

    while (i < end) {
        const char *nl = memchr(buf + i, '\n', end - i);
        if (nl == NULL) {
            i = end;
            break;
        }
        i = (size_t)(nl - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return fail(err, 400, texts->bare_lf);
        if (i == 1)
            return fail(err, 400, texts->empty_first_line);
        if (buf[i - 2] == '\n') {
            p->head_len = i + 1;
            p->scanned = i + 1;
            return PARTY__HTTP_DONE;
        }
        i++;
    }
    p->scanned = i;
    /* The blank line would end past the limit: no need to wait for it. */
    if (i >= limits->max_header_bytes) {
        /* RFC 9112 3: a request-target too long to parse is a 414. */
        if (!p->response && memchr(buf, '\n', i) == NULL)
            return fail(err, 414, "request line exceeds max_header_bytes");
        return fail(err, 431, texts->head_too_big);
    }
    return PARTY__HTTP_AGAIN;
}

/* RFC 3986 unreserved and sub-delims: the bytes of a reg-name besides
 * percent-encodings (a bit table: every request's Host goes through it). */
static int is_host_char(unsigned char c) {
    static const uint32_t bits[8] = {0,          /* 0x00-0x1f */
                                     0x2bff7fd2, /* 0x20-0x3f: ! $ & ' ( ) * + , - . 0-9 ; = */
                                     0x87fffffe, /* 0x40-0x5f: A-Z _ */
                                     0x47fffffe, /* 0x60-0x7f: a-z ~ */
                                     0,          0, 0, 0};
    return (int)((bits[c >> 5] >> (c & 31)) & 1);
}

int party__http_host_valid(party__slice v) {
    size_t i = 0;

    if (v.len == 0)
        return 1; /* RFC 9112 3.2: a target without authority sends Host empty */
    if (v.ptr[0] == '[') {
        /* IP-literal: hex digits, ':' and '.' (IPv6, an IPv4 tail), or an
         * IPvFuture "v" form; checked for its characters, not its shape. */
        for (i = 1; i < v.len && v.ptr[i] != ']'; i++)
            if (!(party__url_hex_value(v.ptr[i]) >= 0 || v.ptr[i] == ':' || v.ptr[i] == '.' ||
                  v.ptr[i] == 'v' || v.ptr[i] == 'V'))
                return 0;
        if (i == v.len || i == 1)
            return 0;
        i++;
    } else {
        while (i < v.len && v.ptr[i] != ':') {
            unsigned char c = (unsigned char)v.ptr[i];
            if (c == '%') {
                if (i + 2 >= v.len || party__url_hex_value(v.ptr[i + 1]) < 0 ||
                    party__url_hex_value(v.ptr[i + 2]) < 0)
                    return 0;
                i += 3;
            } else if (is_host_char(c)) {
                i++;
            } else {
                return 0;
            }
        }
    }
    if (i == v.len)
        return 1;
    if (v.ptr[i] != ':')
        return 0;
    /* port = *DIGIT (may be empty), at most 5 digits to be a port at all */
    if (v.len - i - 1 > 5)
        return 0;
    for (i++; i < v.len; i++)
        if (!is_digit((unsigned char)v.ptr[i]))
            return 0;
    return 1;
}

/* The scheme of an absolute-form target: 1 http, 2 https, 0 neither.
 * *after is where "//" would begin. */
static int target_scheme(const char *t, size_t len, size_t *after) {
    if (len >= 5 && strncasecmp(t, "http:", 5) == 0) {
        *after = 5;
        return 1;
    }
    if (len >= 6 && strncasecmp(t, "https:", 6) == 0) {
        *after = 6;
        return 2;
    }
    return 0;
}

/* RFC 9112 3.2: origin-form (/path?query), absolute-form
 * (http://authority/path?query, which a server MUST accept; the authority
 * then stands for Host), asterisk-form (OPTIONS *). CONNECT's
 * authority-form asks for a tunnel, which an origin server does not offer. */
static int parse_target(const char *method, size_t method_len, const char *t, size_t len,
                        party__http_request *req, party__http_error *err) {
    const char *query, *path = t;
    size_t path_len = len, after;

    req->authority = party__slice_make(NULL, 0);
    if (t[0] == '*' && len == 1) {
        if (method_len != 7 || memcmp(method, "OPTIONS", 7) != 0)
            return fail(err, 400, "request target \"*\" is only for OPTIONS");
        req->target = req->path = party__slice_make(t, 1);
        req->query = party__slice_make(NULL, 0);
        return 0;
    }
    if (t[0] != '/') {
        size_t a, end;
        int scheme = target_scheme(t, len, &after);
        if (scheme == 0)
            return fail(err, 400, "request target is not in origin-form or an http(s) URI");
        if (len < after + 2 || t[after] != '/' || t[after + 1] != '/')
            return fail(err, 400, "request target is an http(s) URI without an authority");
        a = after + 2;
        end = a;
        while (end < len && t[end] != '/' && t[end] != '?' && t[end] != '#')
            end++;
        req->authority = party__slice_make(t + a, end - a);
        /* RFC 9110 4.2.4: userinfo in an http(s) URI is an error; 4.2.1 and
         * 4.2.2: so is an empty host. */
        if (memchr(t + a, '@', end - a) != NULL)
            return fail(err, 400, "request target has userinfo (user@host)");
        if (end == a || t[a] == ':' || !party__http_host_valid(req->authority))
            return fail(err, 400, "request target has an invalid authority");
        path = t + end;
        path_len = len - end;
    }
    /* An absolute-form target may end at its authority: path and target are
     * then empty (the path "/"), and target begins with the query if any. */
    req->target = party__slice_make(path, path_len);
    query = memchr(path, '?', path_len);
    if (query != NULL) {
        req->path = party__slice_make(path, (size_t)(query - path));
        req->query = party__slice_make(query + 1, path_len - req->path.len - 1);
    } else {
        req->path = req->target;
        req->query = party__slice_make(NULL, 0);
    }
    return 0;
}

static int parse_request_line(const char *buf, size_t line_end, party__http_request *req,
                              party__http_error *err) {
    size_t i = 0, target;

    /* buf[line_end] is the CR, so reading buf[i] for i <= line_end is safe. */
    while (i < line_end && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == 0 || buf[i] != ' ')
        return fail(err, 400, "invalid request method");
    req->method = party__slice_make(buf, i);
    if (i == 7 && memcmp(buf, "CONNECT", 7) == 0)
        return fail(err, 501, "CONNECT is not supported: partyd is not a proxy");

    target = ++i;
    while (i < line_end && buf[i] >= 0x21 && buf[i] <= 0x7e && buf[i] != '#')
        i++;
    if (i == target)
        return fail(err, 400, "empty request target");
    if (buf[i] == '#')
        return fail(err, 400, "request target has a fragment (#)");
    if (buf[i] != ' ')
        return fail(err, 400, "invalid character in request target");
    if (parse_target(buf, req->method.len, buf + target, i - target, req, err) != 0)
        return PARTY__HTTP_ERROR;

    i++;
    if (line_end - i != 8 || memcmp(buf + i, "HTTP/", 5) != 0 ||
        !is_digit((unsigned char)buf[i + 5]) || buf[i + 6] != '.' ||
        !is_digit((unsigned char)buf[i + 7]))
        return fail(err, 400, "invalid HTTP version");
    if (buf[i + 5] != '1')
        return fail(err, 505, "HTTP version not supported");
    /* RFC 9110 6.2: a later 1.x is read as the highest 1.x we implement. */
    req->version_minor = buf[i + 7] == '0' ? 0 : 1;
    return 0;
}

/* Splits the header lines from pos to the blank line into headers[],
 * *n_headers of them. */
static int parse_header_lines(const party__http_parser *p, const char *buf, size_t pos,
                              const party__http_limits *limits, party__http_header *headers,
                              size_t *n_headers, party__http_error *err) {
    const message_texts *texts = texts_of(p);
    size_t max_headers = max_headers_of(limits), head_len = p->head_len;

    *n_headers = 0;
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', head_len - pos);
        size_t end = (size_t)(nl - buf) - 1, i = pos, value;
        party__http_header *h;

        if (end == pos)
            return 0;
        if (*n_headers == max_headers)
            return fail(err, 431, texts->too_many_fields);
        if (is_space((unsigned char)buf[pos]))
            return fail(err, 400, texts->obs_fold);
        while (i < end && is_tchar((unsigned char)buf[i]))
            i++;
        if (i == pos || buf[i] != ':')
            return fail(err, 400, "invalid header field name");
        h = &headers[(*n_headers)++];
        h->name = party__slice_make(buf + pos, i - pos);
        i++;
        while (i < end && is_space((unsigned char)buf[i]))
            i++;
        value = i;
        for (; i < end; i++)
            if (!is_value_char((unsigned char)buf[i]))
                return fail(err, 400, "invalid character in header field value");
        while (end > value && is_space((unsigned char)buf[end - 1]))
            end--;
        h->value = party__slice_make(buf + value, end - value);
        pos = (size_t)(nl - buf) + 1;
    }
}

/* Digits only: a sign, spaces or a list would let two parsers on the path
 * disagree about where the body ends. Saturates instead of overflowing; any
 * saturated value is over every max_body. */
static int parse_content_length(party__slice v, uint64_t *out) {
    uint64_t n = 0;
    size_t i;

    if (v.len == 0)
        return -1;
    for (i = 0; i < v.len; i++) {
        unsigned d;
        if (!is_digit((unsigned char)v.ptr[i]))
            return -1;
        d = (unsigned)(v.ptr[i] - '0');
        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
    }
    *out = n;
    return 0;
}

/* Counts the codings of one Transfer-Encoding value. Anything but chunked is a
 * coding we do not implement. */
static void count_codings(party__slice v, size_t *chunked, size_t *other, int *last_chunked) {
    size_t i = 0;

    while (i < v.len) {
        size_t start, end;
        while (i < v.len && (is_space((unsigned char)v.ptr[i]) || v.ptr[i] == ','))
            i++;
        start = i;
        while (i < v.len && v.ptr[i] != ',')
            i++;
        end = i;
        while (end > start && is_space((unsigned char)v.ptr[end - 1]))
            end--;
        if (end == start)
            continue;
        *last_chunked =
            party__slice_eq_nocase(party__slice_make(v.ptr + start, end - start), "chunked");
        if (*last_chunked)
            (*chunked)++;
        else
            (*other)++;
    }
}

/* What the header fields say about the message's framing and connection. */
typedef struct framing {
    size_t hosts, lengths, encodings, chunked, other;
    uint64_t length;
    int conn_close, keep_alive, upgrade;
    int last_chunked;    /* the last transfer coding named is chunked */
    int websocket;       /* an Upgrade field lists websocket */
    party__slice host;   /* the (first) Host value */
    party__slice expect; /* the (first) Expect value; ptr NULL if none */
    size_t expects;
} framing;

/* Reads the fields that shape a message: Host, body framing and Connection. */
static int read_framing(const party__http_header *headers, size_t n_headers, framing *f,
                        party__http_error *err) {
    size_t i;

    memset(f, 0, sizeof(*f));
    for (i = 0; i < n_headers; i++) {
        const party__http_header *h = &headers[i];
        /* By length first: most fields are none of these, and cost one
         * switch instead of a comparison with each name. */
        switch (h->name.len) {
        case 4:
            if (strncasecmp(h->name.ptr, "host", 4) == 0 && f->hosts++ == 0)
                f->host = h->value;
            break;
        case 6:
            if (strncasecmp(h->name.ptr, "expect", 6) == 0 && f->expects++ == 0)
                f->expect = h->value;
            break;
        case 7:
            if (strncasecmp(h->name.ptr, "upgrade", 7) == 0)
                f->websocket |= party__slice_has_token(h->value, "websocket");
            break;
        case 10:
            if (strncasecmp(h->name.ptr, "connection", 10) == 0) {
                f->conn_close |= party__slice_has_token(h->value, "close");
                f->keep_alive |= party__slice_has_token(h->value, "keep-alive");
                f->upgrade |= party__slice_has_token(h->value, "upgrade");
            }
            break;
        case 14:
            if (strncasecmp(h->name.ptr, "content-length", 14) == 0) {
                uint64_t n;
                if (parse_content_length(h->value, &n) != 0)
                    return fail(err, 400, "invalid Content-Length");
                if (f->lengths++ > 0 && n != f->length)
                    return fail(err, 400, "conflicting Content-Length fields");
                f->length = n;
            }
            break;
        case 17:
            if (strncasecmp(h->name.ptr, "transfer-encoding", 17) == 0) {
                f->encodings++;
                count_codings(h->value, &f->chunked, &f->other, &f->last_chunked);
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

/* A message with Transfer-Encoding: chunked must be its only coding, with
 * no Content-Length beside it. */
static int check_encodings(const party__http_parser *p, const framing *f, int version_minor,
                           party__http_error *err) {
    /* RFC 9112 6.1 and 6.3: framing that two hops could read differently
     * is how requests get smuggled, so refuse it outright. */
    if (f->lengths > 0)
        return fail(err, 400, "both Content-Length and Transfer-Encoding");
    if (version_minor == 0)
        return fail(err, 400, texts_of(p)->encoding_in_http10);
    /* RFC 9112 6.3: a request whose final coding is not chunked has no
     * length anyone can find: 400, before the 501 for codings we lack. */
    if (!p->response && !f->last_chunked)
        return fail(err, 400, "chunked is not the final transfer coding");
    if (f->other > 0)
        return fail(err, 501, "unsupported transfer coding");
    if (f->chunked != 1)
        return fail(err, 400, "invalid Transfer-Encoding");
    return 0;
}

static int keep_alive_of(const framing *f, int version_minor) {
    return version_minor == 1 ? !f->conn_close : f->keep_alive && !f->conn_close;
}

/* Applies the header fields that shape a request: Host, body framing and
 * Connection. */
static int apply_headers(party__http_parser *p, const party__http_limits *limits,
                         party__http_request *req, party__http_error *err) {
    framing f;

    if (read_framing(req->headers, req->n_headers, &f, err) != 0)
        return PARTY__HTTP_ERROR;
    if (f.hosts > 1)
        return fail(err, 400, "more than one Host field");
    if (f.hosts == 0 && req->version_minor == 1)
        return fail(err, 400, "HTTP/1.1 request without Host");
    if (f.hosts == 1 && !party__http_host_valid(f.host))
        return fail(err, 400, "invalid Host field value");
    /* RFC 9110 10.1.1: 100-continue is the one expectation defined; an
     * HTTP/1.0 request's is ignored. Any other cannot be met. */
    req->expect_continue = 0;
    if (f.expects > 0 && req->version_minor == 1) {
        if (f.expects > 1 || !party__slice_eq_nocase(f.expect, "100-continue"))
            return fail(err, 417, "unsupported expectation (only Expect: 100-continue)");
        req->expect_continue = 1;
    }
    p->expect_continue = req->expect_continue;

    p->content_length = 0;
    p->chunked = 0;
    req->chunked = 0;
    if (f.encodings > 0) {
        if (check_encodings(p, &f, req->version_minor, err) != 0)
            return PARTY__HTTP_ERROR;
        req->chunked = 1;
        p->chunked = 1;
    } else if (f.lengths > 0) {
        if (f.length > limits->max_body)
            return fail(err, 413, request_texts.body_too_big);
        p->content_length = f.length;
    }

    req->upgrade = f.upgrade;
    /* RFC 9110 7.8: an HTTP/1.0 request's Upgrade is ignored. */
    req->upgrade_websocket = f.websocket && req->version_minor == 1;
    req->keep_alive = keep_alive_of(&f, req->version_minor);
    return 0;
}

/* Parses the complete head buf[0..p->head_len) into req. Run once when the
 * head is found, and again on DONE if the body came in a later call, since
 * the buffer may have moved in between. */
static int parse_head(party__http_parser *p, const char *buf, const party__http_limits *limits,
                      party__http_request *req, party__http_error *err) {
    const char *nl = memchr(buf, '\n', p->head_len);
    size_t line_end = (size_t)(nl - buf) - 1;

    if (parse_request_line(buf, line_end, req, err) != 0)
        return PARTY__HTTP_ERROR;
    if (parse_header_lines(p, buf, line_end + 2, limits, req->headers, &req->n_headers, err) != 0)
        return PARTY__HTTP_ERROR;
    if (apply_headers(p, limits, req, err) != 0)
        return PARTY__HTTP_ERROR;
    p->n_headers = req->n_headers;
    return 0;
}

/* Decodes chunked framing from p->scanned on, moving each chunk's data down
 * so the body is contiguous at body_start. Each byte is looked at once. */
static int decode_chunked(party__http_parser *p, char *buf, size_t len,
                          const party__http_limits *limits, party__http_error *err) {
    const message_texts *texts = texts_of(p);
    size_t max_headers = max_headers_of(limits);

    while (p->scanned < len && p->chunk_state != CHUNK_DONE) {
        unsigned char c = (unsigned char)buf[p->scanned];

        if (p->chunk_state == CHUNK_DATA) {
            size_t n = len - p->scanned < p->chunk_left ? len - p->scanned : p->chunk_left;
            memmove(buf + p->body_start + p->decoded, buf + p->scanned, n);
            p->decoded += n;
            p->chunk_left -= n;
            p->scanned += n;
            if (p->chunk_left == 0)
                p->chunk_state = CHUNK_DATA_CR;
            continue;
        }

        if (p->chunk_state <= CHUNK_SIZE_LF) {
            /* Extensions are ignored, but not stored without bound. */
            if (++p->line_len > limits->max_header_bytes)
                return fail(err, 413, "chunk size line exceeds max_header_bytes");
        } else if (p->chunk_state >= CHUNK_TRAILER_START) {
            /* The trailer section counts against the head limits. */
            if (++p->line_len > limits->max_header_bytes - p->head_len)
                return fail(err, 431, texts->trailers_too_big);
        }

        switch (p->chunk_state) {
        case CHUNK_SIZE_FIRST:
        case CHUNK_SIZE: {
            int d = party__url_hex_value((char)c);
            size_t room = limits->max_body - p->decoded;
            if (d >= 0) {
                if (p->chunk_left > room / 16 || (size_t)d > room - p->chunk_left * 16)
                    return fail(err, 413, texts->body_too_big);
                p->chunk_left = p->chunk_left * 16 + (size_t)d;
                p->chunk_state = CHUNK_SIZE;
            } else if (p->chunk_state == CHUNK_SIZE_FIRST) {
                return fail(err, 400, "invalid chunk size");
            } else if (c == ';') {
                p->chunk_state = CHUNK_EXT;
            } else if (is_space(c)) {
                p->chunk_state = CHUNK_SIZE_SPACE;
            } else if (c == '\r') {
                p->chunk_state = CHUNK_SIZE_LF;
            } else {
                return fail(err, 400, "invalid chunk size");
            }
            break;
        }
        case CHUNK_SIZE_SPACE:
            if (c == ';')
                p->chunk_state = CHUNK_EXT;
            else if (!is_space(c))
                return fail(err, 400, "invalid chunk size line");
            break;
        case CHUNK_EXT:
            if (c == '\r')
                p->chunk_state = CHUNK_SIZE_LF;
            else if (!is_value_char(c))
                return fail(err, 400, "invalid character in chunk extension");
            break;
        case CHUNK_SIZE_LF:
            if (c != '\n')
                return fail(err, 400, "chunk size line not ended by CRLF");
            p->line_len = 0;
            if (p->chunk_left == 0) {
                p->chunk_state = CHUNK_TRAILER_START;
            } else {
                p->chunk_state = CHUNK_DATA;
            }
            break;
        case CHUNK_DATA_CR:
            if (c != '\r')
                return fail(err, 400, "chunk data not followed by CRLF");
            p->chunk_state = CHUNK_DATA_LF;
            break;
        case CHUNK_DATA_LF:
            if (c != '\n')
                return fail(err, 400, "chunk data not followed by CRLF");
            p->chunk_state = CHUNK_SIZE_FIRST;
            break;
        case CHUNK_TRAILER_START:
            if (c == '\r') {
                p->chunk_state = CHUNK_END_LF;
            } else if (is_tchar(c)) {
                if (p->n_headers + ++p->n_trailers > max_headers)
                    return fail(err, 431, texts->too_many_fields);
                p->chunk_state = CHUNK_TRAILER_NAME;
            } else if (is_space(c)) {
                return fail(err, 400, "obsolete line folding in trailer section");
            } else {
                return fail(err, 400, "invalid trailer field name");
            }
            break;
        case CHUNK_TRAILER_NAME:
            if (c == ':')
                p->chunk_state = CHUNK_TRAILER_VALUE;
            else if (!is_tchar(c))
                return fail(err, 400, "invalid trailer field name");
            break;
        case CHUNK_TRAILER_VALUE:
            if (c == '\r')
                p->chunk_state = CHUNK_TRAILER_LF;
            else if (!is_value_char(c))
                return fail(err, 400, "invalid character in trailer field value");
            break;
        case CHUNK_TRAILER_LF:
            if (c != '\n')
                return fail(err, 400, "trailer field not ended by CRLF");
            p->chunk_state = CHUNK_TRAILER_START;
            break;
        case CHUNK_END_LF:
            if (c != '\n')
                return fail(err, 400, "chunked body not ended by CRLF");
            p->chunk_state = CHUNK_DONE;
            break;
        }
        p->scanned++;
    }
    return p->chunk_state == CHUNK_DONE ? PARTY__HTTP_DONE : PARTY__HTTP_AGAIN;
}

int party__http_parse(party__http_parser *p, char *buf, size_t len,
                      const party__http_limits *limits, party__http_request *req, size_t *consumed,
                      party__http_error *err) {
    int head_parsed_now = 0, rc;
    size_t body_len, used;

    if (!p->have_request) {
        rc = scan_head(p, buf, len, limits, err);
        if (rc != PARTY__HTTP_DONE)
            return rc;
        if (parse_head(p, buf, limits, req, err) != 0)
            return PARTY__HTTP_ERROR;
        head_parsed_now = 1;
        p->have_request = 1;
        p->body_start = p->head_len;
    }

    if (p->chunked) {
        rc = decode_chunked(p, buf, len, limits, err);
        if (rc != PARTY__HTTP_DONE)
            return rc;
        body_len = p->decoded;
        used = p->scanned;
    } else {
        if (len < p->body_start || (uint64_t)(len - p->body_start) < p->content_length)
            return PARTY__HTTP_AGAIN;
        body_len = (size_t)p->content_length;
        used = p->body_start + body_len;
    }

    if (!head_parsed_now && parse_head(p, buf, limits, req, err) != 0)
        return PARTY__HTTP_ERROR;
    req->body = body_len > 0 ? party__slice_make(buf + p->body_start, body_len)
                             : party__slice_make(NULL, 0);
    *consumed = used;
    return PARTY__HTTP_DONE;
}

/* ---- responses ---- */

/* "HTTP/1.x SSS reason". The reason phrase may be empty, and the space
 * before it missing (RFC 9112 4 asks for it; a client gains nothing by
 * refusing the response for it). */
static int parse_status_line(const char *buf, size_t line_end, party__http_response *res,
                             party__http_error *err) {
    size_t i;

    /* buf[line_end] is the CR, so reading buf[i] for i <= line_end is safe. */
    if (line_end < 8 || memcmp(buf, "HTTP/", 5) != 0 || !is_digit((unsigned char)buf[5]) ||
        buf[6] != '.' || !is_digit((unsigned char)buf[7]) || buf[8] != ' ')
        return fail(err, 400, "invalid HTTP version");
    if (buf[5] != '1' || (buf[7] != '0' && buf[7] != '1'))
        return fail(err, 505, "HTTP version not supported");
    res->version_minor = buf[7] - '0';
    if (line_end < 12 || buf[9] < '1' || buf[9] > '9' || !is_digit((unsigned char)buf[10]) ||
        !is_digit((unsigned char)buf[11]) || (line_end > 12 && buf[12] != ' '))
        return fail(err, 400, "invalid status code");
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    i = line_end > 12 ? 13 : 12;
    res->reason = party__slice_make(buf + i, line_end - i);
    for (; i < line_end; i++)
        if (!is_value_char((unsigned char)buf[i]))
            return fail(err, 400, "invalid character in reason phrase");
    res->status_line = party__slice_make(buf, line_end);
    return 0;
}

/* RFC 9112 6.3: what ends a response's body, in the order the RFC gives. */
static int apply_response_headers(party__http_parser *p, const party__http_limits *limits,
                                  party__http_response *res, party__http_error *err) {
    framing f;
    int no_body = (p->flags & PARTY__HTTP_NO_BODY) || res->status < 200 || res->status == 204 ||
                  res->status == 304;

    if (read_framing(res->headers, res->n_headers, &f, err) != 0)
        return PARTY__HTTP_ERROR;
    /* A framing the sender got wrong is refused even when no body follows:
     * the sender cannot be trusted with the next message either. */
    if (f.encodings > 0 && check_encodings(p, &f, res->version_minor, err) != 0)
        return PARTY__HTTP_ERROR;

    p->content_length = 0;
    p->chunked = 0;
    p->to_eof = 0;
    res->chunked = 0;
    if (no_body) {
        /* nothing to read */
    } else if (f.encodings > 0) {
        res->chunked = 1;
        p->chunked = 1;
    } else if (f.lengths > 0) {
        if (f.length > limits->max_body)
            return fail(err, 413, response_texts.body_too_big);
        p->content_length = f.length;
    } else if (p->flags & PARTY__HTTP_BODY_TO_EOF) {
        p->to_eof = 1;
    } else {
        return fail(err, 400, "response body has no length (no Content-Length, not chunked)");
    }

    res->upgrade = f.upgrade;
    res->keep_alive = !p->to_eof && keep_alive_of(&f, res->version_minor);
    return 0;
}

static int parse_response_head(party__http_parser *p, const char *buf,
                               const party__http_limits *limits, party__http_response *res,
                               party__http_error *err) {
    const char *nl = memchr(buf, '\n', p->head_len);
    size_t line_end = (size_t)(nl - buf) - 1;

    if (parse_status_line(buf, line_end, res, err) != 0)
        return PARTY__HTTP_ERROR;
    if (parse_header_lines(p, buf, line_end + 2, limits, res->headers, &res->n_headers, err) != 0)
        return PARTY__HTTP_ERROR;
    if (apply_response_headers(p, limits, res, err) != 0)
        return PARTY__HTTP_ERROR;
    res->head_len = p->head_len;
    p->n_headers = res->n_headers;
    return 0;
}

int party__http_response_parse(party__http_parser *p, char *buf, size_t len, int eof,
                               const party__http_limits *limits, party__http_response *res,
                               size_t *consumed, party__http_error *err) {
    int head_parsed_now = 0, rc;
    size_t body_len, used;

    if (!p->have_request) {
        rc = scan_head(p, buf, len, limits, err);
        if (rc == PARTY__HTTP_AGAIN && eof)
            return fail(err, 400, "the stream ended inside the response head");
        if (rc != PARTY__HTTP_DONE)
            return rc;
        if (parse_response_head(p, buf, limits, res, err) != 0)
            return PARTY__HTTP_ERROR;
        head_parsed_now = 1;
        p->have_request = 1;
        p->body_start = p->head_len;
    }

    if (p->chunked) {
        rc = decode_chunked(p, buf, len, limits, err);
        if (rc == PARTY__HTTP_AGAIN && eof)
            return fail(err, 400, "the stream ended inside the chunked response body");
        if (rc != PARTY__HTTP_DONE)
            return rc;
        body_len = p->decoded;
        used = p->scanned;
    } else if (p->to_eof) {
        body_len = len - p->body_start;
        /* Refused as soon as it is too long, not when the stream ends. */
        if (body_len > limits->max_body)
            return fail(err, 413, response_texts.body_too_big);
        if (!eof)
            return PARTY__HTTP_AGAIN;
        used = len;
    } else {
        if (len < p->body_start || (uint64_t)(len - p->body_start) < p->content_length)
            return eof ? fail(err, 400, "the stream ended inside the response body")
                       : PARTY__HTTP_AGAIN;
        body_len = (size_t)p->content_length;
        used = p->body_start + body_len;
    }

    if (!head_parsed_now && parse_response_head(p, buf, limits, res, err) != 0)
        return PARTY__HTTP_ERROR;
    res->body = body_len > 0 ? party__slice_make(buf + p->body_start, body_len)
                             : party__slice_make(NULL, 0);
    *consumed = used;
    return PARTY__HTTP_DONE;
}

party__slice party__http_response_header_get(const party__http_response *res, const char *name) {
    size_t i;

    for (i = 0; i < res->n_headers; i++)
        if (party__slice_eq_nocase(res->headers[i].name, name))
            return res->headers[i].value;
    return party__slice_make(NULL, 0);
}

party__slice party__http_header_get(const party__http_request *req, const char *name) {
    size_t i;

    for (i = 0; i < req->n_headers; i++)
        if (party__slice_eq_nocase(req->headers[i].name, name))
            return req->headers[i].value;
    return party__slice_make(NULL, 0);
}

const char *party__http_status_text(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
