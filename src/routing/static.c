/* static: files from a directory (--static DIR) for paths outside the room
 * prefix. GET and HEAD only; the URL path is percent-decoded and checked
 * segment by segment, then resolved with realpath() and kept inside the
 * directory. Content-Type by extension, ETag and Last-Modified with
 * If-None-Match / If-Modified-Since revalidation. */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "request.h"
#include "loop.h"
#include "url.h"
#include "alloc.h"

#define STATIC_MAX_FILE ((size_t)16 * 1024 * 1024)
#define STATIC_INDEX "index.html"
#define LOG_PATH_MAX 200 /* bytes of a refused path worth a log line */
#define HTTP_DATE_MAX 80 /* 29 for years 0..9999; room for any int year */

static void respond_text(party_conn *conn, int status, const char *text) {
    party_response res;
    party__response_init(&res);
    party__response_text(&res, status, text);
    if (status == 405)
        party_response_set_header(&res, "Allow", "GET, HEAD");
    party__conn_http_respond(conn, &res, 0);
    party__response_free(&res);
}

/* A refused path gets the same 404 as a missing file, so a client learns
 * nothing of why; the log says. */
static void refuse(party_conn *conn, const char *why) {
    party__slice path = party__conn_http(conn)->req.path;
    int len = path.len > LOG_PATH_MAX ? LOG_PATH_MAX : (int)path.len;

    /* The raw path is printable ASCII (the parser saw to it), so it is safe
     * to log; the decoded one need not be. */
    party__log_info(party__conn_loop(conn), "static: refused %.*s%s: %s", len, path.ptr,
                    path.len > LOG_PATH_MAX ? "..." : "", why);
    respond_text(conn, 404, "Not Found\n");
}

/* NULL if the decoded path may name a file under the directory, else why
 * not. Segments are checked after decoding, so "%2e%2e" is a "..". */
static const char *path_refusal(const char *path) {
    size_t i;

    if (path[0] != '/')
        return "not absolute";
    if (strstr(path, "..") != NULL)
        return "contains ..";
    for (i = 0; path[i] != '\0'; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '\\')
            return "contains a backslash";
        if (c < 0x20 || c == 0x7f)
            return "contains a control character";
        if (c == '/' && path[i + 1] == '/')
            return "empty segment";
        if (c == '/' && path[i + 1] == '.')
            return "hidden segment";
    }
    return NULL;
}

static const char *content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash != NULL ? slash : path, '.');
    size_t i;

    if (dot != NULL)
        for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

static const char day_names[] = "SunMonTueWedThuFriSat";
static const char month_names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"). Names are spelled
 * here rather than by strftime, whose names follow the locale. */
static void format_http_date(time_t t, char out[HTTP_DATE_MAX]) {
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_mday = 1;
        tm.tm_year = 70;
        tm.tm_wday = 4;
    }
    snprintf(out, HTTP_DATE_MAX, "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
             day_names + tm.tm_wday * 3, tm.tm_mday, month_names + tm.tm_mon * 3, tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int digits(const char *s, size_t n) {
    int v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Parses an IMF-fixdate, the form browsers echo back from Last-Modified.
 * 0, or -1 when it is not one (the header is then ignored). */
static int parse_http_date(party__slice s, time_t *out) {
    const char *p = s.ptr;
    struct tm tm;
    const char *month;

    if (s.len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
        p[19] != ':' || p[22] != ':' || memcmp(p + 25, " GMT", 4) != 0)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = digits(p + 5, 2);
    tm.tm_year = digits(p + 12, 4) - 1900;
    tm.tm_hour = digits(p + 17, 2);
    tm.tm_min = digits(p + 20, 2);
    tm.tm_sec = digits(p + 23, 2);
    month = NULL;
    for (tm.tm_mon = 0; tm.tm_mon < 12; tm.tm_mon++) {
        if (memcmp(p + 8, month_names + tm.tm_mon * 3, 3) == 0) {
            month = p + 8;
            break;
        }
    }
    if (month == NULL || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 0 || tm.tm_hour < 0 ||
        tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
        return -1;
    *out = timegm(&tm);
    return 0;
}

/* 1 if the If-None-Match list ("*", or entity tags separated by commas)
 * matches etag by the weak comparison (RFC 7232 3.2). */
static int etag_list_matches(party__slice list, const char *etag) {
    size_t etag_len = strlen(etag);
    size_t i = 0, end;

    while (i < list.len) {
        if (list.ptr[i] == ' ' || list.ptr[i] == '\t' || list.ptr[i] == ',') {
            i++;
            continue;
        }
        if (list.ptr[i] == '*')
            return 1;
        if (list.len - i >= 2 && list.ptr[i] == 'W' && list.ptr[i + 1] == '/')
            i += 2;
        if (i >= list.len || list.ptr[i] != '"')
            return 0; /* malformed: no match, the full answer is safe */
        for (end = i + 1; end < list.len && list.ptr[end] != '"'; end++)
            ;
        if (end >= list.len)
            return 0;
        if (end + 1 - i == etag_len && memcmp(list.ptr + i, etag, etag_len) == 0)
            return 1;
        i = end + 1;
    }
    return 0;
}

/* 1 if the client's copy is current: If-None-Match when sent, else
 * If-Modified-Since (RFC 7232 6). */
static int not_modified(const party__http_request *req, const char *etag, time_t mtime) {
    party__slice inm = party__http_header_get(req, "If-None-Match");
    party__slice ims;
    time_t since;

    if (inm.ptr != NULL)
        return etag_list_matches(inm, etag);
    ims = party__http_header_get(req, "If-Modified-Since");
    return ims.ptr != NULL && parse_http_date(ims, &since) == 0 && mtime <= since;
}

/* Reads up to size bytes of fd into a new buffer (the caller frees it);
 * *len is what was read, less if the file shrank meanwhile. A blocking
 * read on the loop thread: the files of a demo site are small and local,
 * and STATIC_MAX_FILE bounds the stall. PARTY_ENOMEM, or PARTY_EIO with
 * errno set. */
static int try_read_file(int fd, size_t size, char **out, size_t *len) {
    char *data = party__malloc(size + 1);
    size_t n = 0;

    if (data == NULL)
        return PARTY_ENOMEM;
    while (n < size) {
        ssize_t r = read(fd, data + n, size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int saved = errno;
            party__free(data);
            errno = saved;
            return PARTY_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = data;
    *len = n;
    return 0;
}

/* Serves the regular file open on fd (resolved is its path, for the log;
 * name the requested one, for the type). */
static void serve_file(party_conn *conn, int fd, const char *resolved, const char *name) {
    party__loop *lp = party__conn_loop(conn);
    party_response res;
    struct stat st;
    char etag[48], modified[HTTP_DATE_MAX];
    char *data;
    size_t len;
    int r;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        respond_text(conn, 404, "Not Found\n");
        return;
    }
    if ((uintmax_t)st.st_size > STATIC_MAX_FILE) {
        party__log_warn(lp, "static: %s is over the %zu MiB limit for a file (%jd bytes)", resolved,
                        STATIC_MAX_FILE >> 20, (intmax_t)st.st_size);
        respond_text(conn, 500, "file too large to serve\n");
        return;
    }
    snprintf(etag, sizeof(etag), "\"%jx-%" PRIx64 "\"", (uintmax_t)st.st_size,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    format_http_date(st.st_mtim.tv_sec, modified);

    party__response_init(&res);
    party_response_set_header(&res, "ETag", etag);
    party_response_set_header(&res, "Last-Modified", modified);
    party_response_set_header(&res, "Cache-Control", "no-cache");
    if (not_modified(&party__conn_http(conn)->req, etag, st.st_mtim.tv_sec)) {
        party_response_set_status(&res, 304);
        party__conn_http_respond(conn, &res, 0);
        party__response_free(&res);
        return;
    }
    /* HEAD reads the file too: its Content-Length is what a GET would get. */
    r = try_read_file(fd, (size_t)st.st_size, &data, &len);
    if (r != 0) {
        if (r == PARTY_EIO)
            party__log_warn(lp, "static: reading %s: %s", resolved, strerror(errno));
        party__response_free(&res);
        respond_text(conn, r == PARTY_ENOMEM ? 503 : 500,
                     r == PARTY_ENOMEM ? "out of memory\n" : "cannot read the file\n");
        return;
    }
    party_response_set_header(&res, "Content-Type", content_type(name));
    party_response_set_header(&res, "X-Content-Type-Options", "nosniff");
    /* The response takes the buffer as it is: no second copy of the file. */
    res.body = data;
    res.body_len = len;
    party__conn_http_respond(conn, &res, 0);
    party__response_free(&res);
}

int party__static_handle(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);
    const party__http_request *req = &party__conn_http(conn)->req;
    char decoded[PATH_MAX], root[PATH_MAX], joined[PATH_MAX], resolved[PATH_MAX];
    const char *why;
    size_t root_len;
    int n, fd;

    if (lp->cfg.static_dir == NULL)
        return 0;
    if (!party__slice_eq_nocase(req->method, "GET") &&
        !party__slice_eq_nocase(req->method, "HEAD")) {
        respond_text(conn, 405, "Method Not Allowed\n");
        return 1;
    }
    if (req->path.len >= sizeof(decoded)) {
        respond_text(conn, 414, "URI Too Long\n");
        return 1;
    }
    n = party__url_decode(req->path, decoded, sizeof(decoded), 0);
    if (n < 0) {
        refuse(conn, "malformed escape or NUL");
        return 1;
    }
    why = path_refusal(decoded);
    if (why != NULL) {
        refuse(conn, why);
        return 1;
    }
    /* Resolved per request: the directory may be replaced while we run. */
    if (realpath(lp->cfg.static_dir, root) == NULL) {
        party__log_warn(lp, "static: directory %s: %s", lp->cfg.static_dir, strerror(errno));
        respond_text(conn, 404, "Not Found\n");
        return 1;
    }
    root_len = strlen(root);
    n = snprintf(joined, sizeof(joined), "%s%s%s", strcmp(root, "/") == 0 ? "" : root, decoded,
                 decoded[n - 1] == '/' ? STATIC_INDEX : "");
    if (n < 0 || (size_t)n >= sizeof(joined)) {
        respond_text(conn, 414, "URI Too Long\n");
        return 1;
    }
    if (realpath(joined, resolved) == NULL) {
        if (errno == ENAMETOOLONG) {
            respond_text(conn, 414, "URI Too Long\n");
            return 1;
        }
        if (errno != ENOENT && errno != ENOTDIR)
            party__log_info(lp, "static: %s: %s", joined, strerror(errno));
        respond_text(conn, 404, "Not Found\n");
        return 1;
    }
    /* A symlink may point anywhere; what it resolves to must still be under
     * the directory. */
    if (!(strncmp(resolved, root, root_len) == 0 &&
          (resolved[root_len] == '/' || (root_len == 1 && resolved[1] != '\0')))) {
        refuse(conn, "resolves outside the static directory");
        return 1;
    }
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then
     * refuses it). O_NOFOLLOW: the last component is the one realpath saw.
     * The directory's own contents are trusted: this guards against URLs,
     * not against someone swapping files in it between the two calls. */
    fd = open(resolved, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            party__log_info(lp, "static: %s: %s", resolved, strerror(errno));
        respond_text(conn, 404, "Not Found\n");
        return 1;
    }
    serve_file(conn, fd, resolved, joined);
    close(fd);
    return 1;
}
