/* cli_rooms: `partyd rooms`, the admin listing of the rooms a running
 * partyd holds in memory (GET /_partyd/rooms with the Bearer token), as a
 * table or as the JSON partyd sent. One short blocking request: a plain
 * socket with a deadline is all it needs. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "http.h"
#include "alloc.h"

#define RESPONSE_MAX (64 * 1024 * 1024) /* a listing of very many rooms */
#define RESPONSE_HEAD_MAX (64 * 1024)
#define TIMEOUT_MS 10000
#define COLUMN_MAX 40 /* wider party or room names are cut short, ending in "…" */

static const char usage_text[] =
    "usage: partyd rooms [options]\n"
    "\n"
    "Prints the rooms a running partyd holds in memory (its /_partyd/rooms\n"
    "listing): party, room name, connections, status and id. partyd must run\n"
    "with --admin-token (or PARTYD_ADMIN_TOKEN); give the same token here.\n"
    "Names over 40 characters are cut short in the table (--json has them\n"
    "whole). Plain HTTP only: for a partyd serving https, use curl.\n"
    "Exit status: 0 listed, 1 refused or unreachable, 2 bad arguments or no\n"
    "token.\n"
    "\n"
    "  --host ADDR              partyd's address (default 127.0.0.1)\n"
    "  --port N                 partyd's port (default 1999)\n"
    "  --admin-token TOKEN      the token (default: $PARTYD_ADMIN_TOKEN)\n"
    "  --json                   print partyd's JSON as it came (names whole)\n"
    "  --help                   print this help and exit\n";

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events until deadline; 0 or -1 (timeout). */
static int wait_fd(int fd, short events, long long deadline) {
    struct pollfd p = {fd, events, 0};
    for (;;) {
        long long left = deadline - now_ms();
        int r;
        if (left <= 0)
            return -1;
        r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int open_socket(const char *host, const char *port, long long deadline) {
    struct addrinfo hints, *res, *ai;
    int fd = -1, r;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "partyd rooms: cannot resolve '%s': %s\n", host, gai_strerror(r));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int err = 0;
        socklen_t len = sizeof(err);
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0))
            break;
        fprintf(stderr, "partyd rooms: cannot connect to %s port %s: %s\n", host, port,
                strerror(err != 0               ? err
                         : errno == EINPROGRESS ? ETIMEDOUT
                                                : errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Sends the request and reads the whole answer (partyd closes after it:
 * the request says Connection: close). *out is malloc'd. */
static int fetch(int fd, const char *request, long long deadline, char **out, size_t *out_len) {
    size_t sent = 0, len = strlen(request), got = 0, cap = 16384;
    char *buf = party__malloc(cap + 1);

    if (buf == NULL)
        return -1;
    while (sent < len) {
        ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else if (n < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) == 0)
            continue;
        else if (!(n < 0 && errno == EINTR))
            goto fail;
    }
    for (;;) {
        ssize_t n;
        if (got == cap) {
            char *grown;
            if (cap >= RESPONSE_MAX)
                goto fail;
            cap *= 2;
            grown = party__realloc(buf, cap + 1);
            if (grown == NULL)
                goto fail;
            buf = grown;
        }
        n = recv(fd, buf + got, cap - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        else if (errno == EAGAIN && wait_fd(fd, POLLIN, deadline) == 0)
            continue;
        else if (errno != EINTR && got > 0)
            break; /* a reset after an answer (a TLS alert, say): keep what came */
        else if (errno != EINTR)
            goto fail;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return 0;
fail:
    party__free(buf);
    return -1;
}

static const char *json_text(const cJSON *obj, const char *key, const char *fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : fallback;
}

/* Characters (UTF-8 code points) in text: the columns it takes in a
 * terminal, wide characters aside. */
static int text_columns(const char *text) {
    int n = 0;
    for (; *text != '\0'; text++)
        n += ((unsigned char)*text & 0xC0) != 0x80;
    return n;
}

/* Prints text in a column of width characters: padded with spaces, or cut
 * short to width - 1 characters and "…" when longer. Control characters
 * (a room name may hold a newline) print as '?', keeping the row whole. */
static void print_cell(const char *text, int width) {
    int columns = text_columns(text), shown = 0;
    int keep = columns > width ? width - 1 : columns;
    const char *p = text;

    while (*p != '\0') {
        unsigned char c = (unsigned char)*p;
        if ((c & 0xC0) != 0x80 && shown++ == keep)
            break;
        putchar(c < 0x20 || c == 0x7F ? '?' : c);
        p++;
    }
    if (columns > width)
        fputs("\xE2\x80\xA6", stdout); /* … */
    for (shown = columns > width ? width : columns; shown < width; shown++)
        putchar(' ');
}

/* One row per room: the widths follow the longest party and room names,
 * up to COLUMN_MAX characters. */
static int print_table(const char *body) {
    cJSON *root = cJSON_Parse(body);
    const cJSON *rooms = cJSON_GetObjectItemCaseSensitive(root, "rooms"), *room;
    int party_w = 5, name_w = 4;

    if (!cJSON_IsArray(rooms)) {
        cJSON_Delete(root);
        fprintf(stderr, "partyd rooms: the answer is not a rooms listing\n");
        return PARTY__CLI_FAILED;
    }
    cJSON_ArrayForEach(room, rooms) {
        int p = text_columns(json_text(room, "party", "?"));
        int n = text_columns(json_text(room, "name", "-"));
        party_w = p > party_w ? (p < COLUMN_MAX ? p : COLUMN_MAX) : party_w;
        name_w = n > name_w ? (n < COLUMN_MAX ? n : COLUMN_MAX) : name_w;
    }
    print_cell("PARTY", party_w);
    fputs("  ", stdout);
    print_cell("ROOM", name_w);
    printf("  %11s  %-10s  %s\n", "CONNECTIONS", "STATUS", "ID");
    cJSON_ArrayForEach(room, rooms) {
        const cJSON *conns = cJSON_GetObjectItemCaseSensitive(room, "connections");
        print_cell(json_text(room, "party", "?"), party_w);
        fputs("  ", stdout);
        print_cell(json_text(room, "name", "-"), name_w);
        printf("  %11.0f  %-10s  %s\n", cJSON_IsNumber(conns) ? conns->valuedouble : 0.0,
               json_text(room, "status", "?"), json_text(room, "id", "?"));
    }
    printf("%d room%s in memory\n", cJSON_GetArraySize(rooms),
           cJSON_GetArraySize(rooms) == 1 ? "" : "s");
    cJSON_Delete(root);
    return PARTY__CLI_OK;
}

/* 1 if the answer is TLS rather than HTTP: a record whose content type is
 * an alert (0x15) or a handshake (0x16), or partyd's own plain 400 for
 * plain HTTP on its TLS port. */
static int answer_is_tls(const char *response, size_t len, int status, const char *body) {
    if (len > 0 && (response[0] == 0x15 || response[0] == 0x16))
        return 1;
    return status == 400 && body != NULL && strncmp(body, "this port speaks TLS", 20) == 0;
}

/* Parses the whole answer, read to the end of the stream: its status, and
 * its body NUL-terminated in place. 0, or -1 when it is not HTTP (*why
 * says how). */
static int answer_parse(char *response, size_t len, int *status, char **body, const char **why) {
    static const party__http_limits limits = {RESPONSE_HEAD_MAX, PARTY__HTTP_MAX_HEADERS,
                                              RESPONSE_MAX};
    party__http_parser p;
    party__http_response res;
    party__http_error err;
    size_t used;

    party__http_response_parser_init(&p, PARTY__HTTP_BODY_TO_EOF);
    if (party__http_response_parse(&p, response, len, 1, &limits, &res, &used, &err) !=
        PARTY__HTTP_DONE) {
        *why = err.reason;
        return -1;
    }
    *status = res.status;
    /* The body (decoded in place if chunked) starts at the end of the head
     * and ends within the bytes read; response[len] is a NUL of fetch's. */
    *body = response + res.head_len;
    (*body)[res.body.len] = '\0';
    return 0;
}

int party__cli_rooms(int argc, char **argv) {
    static const struct option options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"admin-token", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1", *port = "1999", *token = getenv("PARTYD_ADMIN_TOKEN");
    char authority[300], *request, *response = NULL, *body = NULL;
    const char *why = "no answer";
    long long deadline;
    size_t len, request_cap;
    int opt, fd, status = 0, json = 0, result;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'H':
            host = optarg;
            break;
        case 'p':
            if (party__cli_port_parse(optarg) < 0) {
                fprintf(stderr, "partyd rooms: --port: '%s' is not a port number\n", optarg);
                return PARTY__CLI_USAGE;
            }
            port = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return PARTY__CLI_OK;
        default:
            fputs(usage_text, stderr);
            return PARTY__CLI_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "partyd rooms: unexpected argument '%s'\n%s", argv[optind], usage_text);
        return PARTY__CLI_USAGE;
    }
    if (token == NULL || token[0] == '\0') {
        fprintf(stderr, "partyd rooms: no token given (use --admin-token or PARTYD_ADMIN_TOKEN)\n");
        return PARTY__CLI_USAGE;
    }
    if (strlen(host) > 255 || strpbrk(host, "\r\n") != NULL || strpbrk(token, "\r\n") != NULL) {
        fprintf(stderr, "partyd rooms: the host or the token is not valid in a request\n");
        return PARTY__CLI_USAGE;
    }
    snprintf(authority, sizeof(authority), strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s", host,
             port);
    request_cap = strlen(authority) + strlen(token) + 256;
    request = party__malloc(request_cap);
    if (request == NULL)
        return PARTY__CLI_FAILED;
    snprintf(request, request_cap,
             "GET /_partyd/rooms HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
             "Connection: close\r\n\r\n",
             authority, token);

    deadline = now_ms() + TIMEOUT_MS;
    fd = open_socket(host, port, deadline);
    if (fd < 0) {
        party__free(request);
        return PARTY__CLI_FAILED;
    }
    result = fetch(fd, request, deadline, &response, &len);
    close(fd);
    party__free(request);
    if (result == 0) {
        if (answer_parse(response, len, &status, &body, &why) != 0) {
            status = 0;
            body = NULL;
        }
        if (answer_is_tls(response, len, status, body)) {
            fprintf(stderr,
                    "partyd rooms: the server at %s speaks TLS (https); partyd rooms speaks "
                    "plain HTTP only: use curl -H 'Authorization: Bearer ...' "
                    "https://%s/_partyd/rooms\n",
                    authority, authority);
            party__free(response);
            return PARTY__CLI_FAILED;
        }
    }
    if (result != 0 || body == NULL) {
        fprintf(stderr, "partyd rooms: no valid HTTP answer from %s (%s)\n", authority, why);
        party__free(response);
        return PARTY__CLI_FAILED;
    }
    if (status == 200) {
        result = json ? (printf("%s\n", body), PARTY__CLI_OK) : print_table(body);
    } else {
        if (status == 401)
            fprintf(stderr, "partyd rooms: partyd refused the token (401): give the one it was "
                            "started with, in --admin-token or PARTYD_ADMIN_TOKEN\n");
        else if (status == 404)
            fprintf(stderr,
                    "partyd rooms: %s has no rooms listing (404): start partyd with "
                    "--admin-token or PARTYD_ADMIN_TOKEN\n",
                    authority);
        else
            fprintf(stderr, "partyd rooms: partyd answered %d: %s", status, body);
        result = PARTY__CLI_FAILED;
    }
    party__free(response);
    return result;
}
