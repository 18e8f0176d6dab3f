/* Static files end to end: partyd --static DIR over a temporary tree with
 * an index, a subdirectory, a hidden file, symlinks inward and outward and a
 * secret next to (not inside) the directory. Files are served with their
 * types and validators; every way out of the directory is a 404 that never
 * carries the secret; rooms keep their prefix. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "client.h"

#define SECRET "TOP-SECRET-OUTSIDE-THE-DIRECTORY"
#define INDEX_HTML "<h1>home</h1>\n"
#define STYLE_CSS "body { color: red; }\n"
#define APP_JS "console.log('app');\n"
#define SUB_HTML "<p>sub</p>\n"
/* Sun, 06 Nov 1994 08:49:37 GMT */
#define OLD_MTIME 784111777
#define LARGE_FILE_BYTES (12 * 1024 * 1024)

static partyd *server;
static int port;
static char base[64]; /* holds site/ (the static directory) and secret.txt */
static char site[128];
static int tree_broken; /* making the tree failed (setup cannot fail_msg) */

static void tree_error(const char *what, const char *path) {
    fprintf(stderr, "test_static: cannot %s %s\n", what, path);
    tree_broken = 1;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        tree_error("write", path);
        return;
    }
    if (fputs(text, f) < 0)
        tree_error("write", path);
    if (fclose(f) != 0)
        tree_error("write", path);
}

static void link_file(const char *target, const char *name) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", site, name);
    if (symlink(target, path) != 0)
        tree_error("link", path);
}

/* 0, or -1 (with the reason on stderr). */
static int make_tree(void) {
    char path[256];
    struct timeval times[2] = {{OLD_MTIME, 0}, {OLD_MTIME, 0}};
    int fd;

    strcpy(base, "/tmp/partyd-static-XXXXXX");
    if (mkdtemp(base) == NULL) {
        base[0] = '\0';
        tree_error("create", "/tmp/partyd-static-XXXXXX");
        return -1;
    }
    snprintf(site, sizeof(site), "%s/site", base);
    snprintf(path, sizeof(path), "%s/sub", site);
    if (mkdir(site, 0755) != 0 || mkdir(path, 0755) != 0) {
        tree_error("create", path);
        return -1;
    }
    write_file(base, "secret.txt", SECRET "\n");
    write_file(site, "index.html", INDEX_HTML);
    write_file(site, "style.css", STYLE_CSS);
    write_file(site, "app.js", APP_JS);
    write_file(site, "data.json", "{\"a\":1}\n");
    write_file(site, "notes.txt", "notes\n");
    write_file(site, "logo.svg", "<svg/>\n");
    write_file(site, "blob.bin", "\x01\x02\x03");
    write_file(site, "old.txt", "old\n");
    write_file(site, "sub/index.html", SUB_HTML);
    write_file(site, ".hidden", SECRET " (hidden)\n");
    snprintf(path, sizeof(path), "%s/secret.txt", base);
    link_file(path, "out-link.txt");           /* outward, absolute */
    link_file("../secret.txt", "out-rel.txt"); /* outward, relative */
    link_file(base, "out-dir");                /* a directory outside */
    link_file("style.css", "in-link.css");     /* inward */
    link_file("sub", "in-dir");                /* a directory inside */
    snprintf(path, sizeof(path), "%s/old.txt", site);
    if (utimes(path, times) != 0)
        tree_error("set the mtime of", path);
    snprintf(path, sizeof(path), "%s/pipe", site);
    if (mkfifo(path, 0644) != 0)
        tree_error("create", path);
    /* One byte over the 16 MiB limit, sparse: cheap to make. */
    snprintf(path, sizeof(path), "%s/big.bin", site);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 16 * 1024 * 1024 + 1) != 0)
        tree_error("create", path);
    if (fd >= 0 && close(fd) != 0)
        tree_error("create", path);
    /* Under the limit, but more than the kernel buffers for a client
     * that does not read: sparse too. */
    snprintf(path, sizeof(path), "%s/large.bin", site);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, LARGE_FILE_BYTES) != 0)
        tree_error("create", path);
    if (fd >= 0 && close(fd) != 0)
        tree_error("create", path);
    return tree_broken ? -1 : 0;
}

static int group_setup(void **state) {
    const char *args[] = {"--static", site, NULL};
    (void)state;
    if (make_tree() != 0)
        return -1;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    int r;
    (void)state;
    r = partyd_group_stop(server);
    if (base[0] != '\0')
        test_remove_tree(base);
    return r;
}

/* GETs target; checks the status, and the body and Content-Type when not
 * NULL. */
static void expect_file(const char *target, int status, const char *type, const char *body) {
    http_response res;
    const char *ct;
    http_expect_get(port, target, &res);
    if (res.status != status)
        fail_msg("GET %s: expected %d, got %d: %s", target, status, res.status, res.body);
    ct = http_response_header(&res, "Content-Type");
    if (type != NULL && (ct == NULL || strcmp(ct, type) != 0))
        fail_msg("GET %s: expected Content-Type %s, got %s", target, type, ct ? ct : "(none)");
    if (body != NULL && strcmp(res.body, body) != 0)
        fail_msg("GET %s: expected body %s, got %s", target, body, res.body);
    http_response_free(&res);
}

/* Sends a raw GET of target (bytes as given, not normalised by anyone) and
 * expects a 404 that does not carry the secret. */
static void expect_refused(const char *target) {
    char request[512];
    http_response res;
    tconn *c;

    snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             target);
    c = http_expect_raw(port, request, &res);
    tconn_close(c);
    if (res.status != 404)
        fail_msg("GET %s: expected 404, got %d: %s", target, res.status, res.body);
    if (strstr(res.body, "TOP-SECRET") != NULL)
        fail_msg("GET %s: the body leaks the secret: %s", target, res.body);
    http_response_free(&res);
}

static void test_files_are_served_with_their_content_types(void **state) {
    (void)state;
    expect_file("/index.html", 200, "text/html; charset=utf-8", INDEX_HTML);
    expect_file("/style.css", 200, "text/css; charset=utf-8", STYLE_CSS);
    expect_file("/app.js", 200, "text/javascript; charset=utf-8", APP_JS);
    expect_file("/data.json", 200, "application/json", "{\"a\":1}\n");
    expect_file("/notes.txt", 200, "text/plain; charset=utf-8", "notes\n");
    expect_file("/logo.svg", 200, "image/svg+xml", "<svg/>\n");
    expect_file("/blob.bin", 200, "application/octet-stream", "\x01\x02\x03");
    expect_file("/style.css?v=3", 200, "text/css; charset=utf-8", STYLE_CSS);
    expect_file("/%73tyle.css", 200, "text/css; charset=utf-8", STYLE_CSS);
}

static void test_directories_serve_their_index(void **state) {
    (void)state;
    expect_file("/", 200, "text/html; charset=utf-8", INDEX_HTML);
    expect_file("/sub/", 200, "text/html; charset=utf-8", SUB_HTML);
    expect_file("/sub/index.html", 200, "text/html; charset=utf-8", SUB_HTML);
    /* Without the slash a directory is not a file. */
    expect_file("/sub", 404, NULL, NULL);
}

static void test_missing_files_and_non_files_are_404(void **state) {
    (void)state;
    expect_file("/nope.html", 404, NULL, NULL);
    expect_file("/sub/nope/", 404, NULL, NULL);
    expect_file("/index.html/x", 404, NULL, NULL);
    expect_file("/pipe", 404, NULL, NULL); /* a FIFO: answered at once, not opened for reading */
}

static void test_head_has_length_and_no_body(void **state) {
    http_response res;
    char len[32];
    (void)state;
    http_expect_request(port, "HEAD", "/style.css", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 200);
    snprintf(len, sizeof(len), "%zu", strlen(STYLE_CSS));
    assert_non_null(http_response_header(&res, "Content-Length"));
    assert_string_equal(http_response_header(&res, "Content-Length"), len);
    assert_string_equal(http_response_header(&res, "Content-Type"), "text/css; charset=utf-8");
    assert_non_null(http_response_header(&res, "ETag"));
    assert_int_equal(res.body_len, 0);
    http_response_free(&res);
}

static void test_head_sends_no_body_bytes_on_keep_alive(void **state) {
    tconn *c = tconn_open(port, 0);
    http_response res;
    (void)state;
    assert_non_null(c);
    /* If HEAD sent body bytes, the second response would not parse. */
    assert_int_equal(tconn_send_str(c, "HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    assert_int_equal(http_read_response(c, 1, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    http_response_free(&res);
    assert_int_equal(http_read_response(c, 0, &res, TC_TIMEOUT_MS), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, STYLE_CSS);
    http_response_free(&res);
    tconn_close(c);
}

static void test_validators_are_sent(void **state) {
    http_response res;
    const char *etag;
    (void)state;
    http_expect_get(port, "/old.txt", &res);
    assert_int_equal(res.status, 200);
    etag = http_response_header(&res, "ETag");
    assert_non_null(etag);
    assert_true(strlen(etag) > 2 && etag[0] == '"' && etag[strlen(etag) - 1] == '"');
    assert_non_null(http_response_header(&res, "Last-Modified"));
    assert_string_equal(http_response_header(&res, "Last-Modified"),
                        "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_non_null(http_response_header(&res, "Cache-Control"));
    assert_string_equal(http_response_header(&res, "Cache-Control"), "no-cache");
    http_response_free(&res);
}

/* GETs target with extra header lines and returns the status; *body_len
 * (when not NULL) gets the body's length. */
static int get_with(const char *target, const char *header, size_t *body_len) {
    http_response res;
    int status;
    http_expect_request(port, "GET", target, header, NULL, 0, &res);
    status = res.status;
    if (body_len != NULL)
        *body_len = res.body_len;
    http_response_free(&res);
    return status;
}

static void test_if_none_match_revalidates(void **state) {
    http_response res;
    char etag[128], header[256];
    size_t body_len = 99;
    (void)state;
    http_expect_get(port, "/style.css", &res);
    assert_non_null(http_response_header(&res, "ETag"));
    snprintf(etag, sizeof(etag), "%s", http_response_header(&res, "ETag"));
    http_response_free(&res);

    snprintf(header, sizeof(header), "If-None-Match: %s\r\n", etag);
    assert_int_equal(get_with("/style.css", header, &body_len), 304);
    assert_int_equal(body_len, 0);
    snprintf(header, sizeof(header), "If-None-Match: \"other\", W/%s\r\n", etag);
    assert_int_equal(get_with("/style.css", header, NULL), 304);
    assert_int_equal(get_with("/style.css", "If-None-Match: *\r\n", NULL), 304);
    assert_int_equal(get_with("/style.css", "If-None-Match: \"other\"\r\n", NULL), 200);
    /* The tag of one file does not validate another. */
    snprintf(header, sizeof(header), "If-None-Match: %s\r\n", etag);
    assert_int_equal(get_with("/app.js", header, NULL), 200);

    /* A 304 keeps the validators. */
    http_expect_request(port, "GET", "/style.css", header, NULL, 0, &res);
    assert_int_equal(res.status, 304);
    assert_non_null(http_response_header(&res, "ETag"));
    assert_string_equal(http_response_header(&res, "ETag"), etag);
    assert_non_null(http_response_header(&res, "Last-Modified"));
    http_response_free(&res);
}

static void test_if_modified_since_revalidates(void **state) {
    (void)state;
    assert_int_equal(
        get_with("/old.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n", NULL), 304);
    assert_int_equal(
        get_with("/old.txt", "If-Modified-Since: Mon, 07 Nov 1994 00:00:00 GMT\r\n", NULL), 304);
    assert_int_equal(
        get_with("/old.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n", NULL), 200);
    assert_int_equal(get_with("/old.txt", "If-Modified-Since: yesterday\r\n", NULL), 200);
    /* If-None-Match wins over If-Modified-Since. */
    assert_int_equal(get_with("/old.txt",
                              "If-None-Match: \"other\"\r\n"
                              "If-Modified-Since: Mon, 07 Nov 1994 00:00:00 GMT\r\n",
                              NULL),
                     200);
}

static void test_traversal_is_refused(void **state) {
    (void)state;
    expect_refused("/../secret.txt");
    expect_refused("/sub/../../secret.txt");
    expect_refused("/%2e%2e/secret.txt");
    expect_refused("/%2E%2E%2Fsecret.txt");
    expect_refused("/..%2fsecret.txt");
    expect_refused("/sub/%2e%2e/%2e%2e/secret.txt");
    expect_refused("/%2e%2e%5csecret.txt");
    expect_refused("/..\\secret.txt");
    /* A ".." that would stay inside is refused all the same. */
    expect_refused("/sub/../index.html");
    expect_refused("/sub/%2e%2e/index.html");
    expect_refused("/./index.html");
}

static void test_absolute_looking_paths_are_refused(void **state) {
    char target[300];
    (void)state;
    expect_refused("//etc/passwd");
    expect_refused("/%2fetc/passwd");
    snprintf(target, sizeof(target), "/%s/secret.txt", base);
    expect_refused(target);
    snprintf(target, sizeof(target), "/%%2F%s/secret.txt", base + 1);
    expect_refused(target);
}

static void test_nul_and_bad_escapes_are_refused(void **state) {
    (void)state;
    expect_refused("/index.html%00.css");
    expect_refused("/%00");
    expect_refused("/index%zz.html");
    expect_refused("/index.html%");
    expect_refused("/%0a");
}

static void test_hidden_files_are_refused(void **state) {
    (void)state;
    expect_refused("/.hidden");
    expect_refused("/%2ehidden");
    expect_refused("/sub/.hidden");
    assert_true(partyd_wait_stderr(server, "static: refused /%2ehidden", TC_TIMEOUT_MS));
}

static void test_symlinks_out_of_the_directory_are_refused(void **state) {
    (void)state;
    expect_refused("/out-link.txt");
    expect_refused("/out-rel.txt");
    expect_refused("/out-dir/secret.txt");
    assert_true(partyd_wait_stderr(server, "resolves outside the static directory", TC_TIMEOUT_MS));
}

static void test_symlinks_inside_the_directory_are_followed(void **state) {
    (void)state;
    expect_file("/in-link.css", 200, "text/css; charset=utf-8", STYLE_CSS);
    expect_file("/in-dir/", 200, "text/html; charset=utf-8", SUB_HTML);
    expect_file("/in-dir/index.html", 200, "text/html; charset=utf-8", SUB_HTML);
}

static void test_other_methods_are_405(void **state) {
    http_response res;
    (void)state;
    http_expect_request(port, "POST", "/index.html", NULL, "x", 1, &res);
    assert_int_equal(res.status, 405);
    assert_non_null(http_response_header(&res, "Allow"));
    assert_string_equal(http_response_header(&res, "Allow"), "GET, HEAD");
    http_response_free(&res);
    http_expect_request(port, "DELETE", "/style.css", NULL, NULL, 0, &res);
    assert_int_equal(res.status, 405);
    http_response_free(&res);
}

/* CPU time (user + system) the process has used, in clock ticks; -1 if
 * /proc cannot say. */
static long process_cpu_ticks(int pid) {
    char path[64], line[1024], *p;
    unsigned long utime, stime;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    p = strrchr(line, ')'); /* the command name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (long)(utime + stime);
}

/* Bytes a client sends while partyd is not reading from it (its answer is
 * still on the way out; the connection closes after it) wait in the
 * socket: partyd does not wake for them again and again. Over the second
 * measured here a loop that did would burn the whole second. Then the
 * answer arrives whole. */
static void test_input_while_an_answer_waits_does_not_spin(void **state) {
    static const char request[] = "GET /large.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct pollfd p;
    long before, after, tick = sysconf(_SC_CLK_TCK);
    size_t received = 0;
    tconn *c = tconn_open(port, 4096);
    (void)state;

    assert_non_null(c);
    assert_int_equal(tconn_send_str(c, request), 0);
    /* The answer has begun: partyd has queued it and no longer reads. */
    p.fd = c->fd;
    p.events = POLLIN;
    assert_int_equal(poll(&p, 1, TC_TIMEOUT_MS), 1);
    assert_int_equal(tconn_send_str(c, "more bytes nobody asked for\r\n"), 0);
    before = process_cpu_ticks(partyd_pid(server));
    usleep(1000 * 1000);
    after = process_cpu_ticks(partyd_pid(server));
    assert_true(before >= 0 && after >= before);
    if ((after - before) * 2 > tick)
        fail_msg("partyd used %ld of %ld ticks while a connection it does not read from waited",
                 after - before, tick);
    assert_int_equal(tconn_wait_close(c, 30000, &received), TC_EOF);
    /* The head, then every byte of the file. */
    assert_true(received > LARGE_FILE_BYTES);
    assert_true(received < LARGE_FILE_BYTES + 1024);
    tconn_close(c);
}

static void test_a_file_over_the_limit_is_not_served(void **state) {
    (void)state;
    expect_file("/big.bin", 500, NULL, NULL);
    assert_true(partyd_wait_stderr(server, "over the 16 MiB limit", TC_TIMEOUT_MS));
}

static void test_overlong_path_is_414(void **state) {
    size_t n = 5000;
    char *request = malloc(n + 64);
    http_response res;
    tconn *c;
    (void)state;
    assert_non_null(request);
    memcpy(request, "GET /", 5);
    memset(request + 5, 'a', n);
    strcpy(request + 5 + n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c = http_expect_raw(port, request, &res);
    free(request);
    tconn_close(c);
    assert_int_equal(res.status, 414);
    http_response_free(&res);
}

static void test_rooms_keep_their_prefix(void **state) {
    http_response res;
    (void)state;
    http_expect_get(port, "/parties/probe/r", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(http_response_header(&res, "Content-Type"), "application/json");
    assert_non_null(strstr(res.body, "\"name\":\"r\""));
    http_response_free(&res);
    /* A POST to a room is the room's, not a 405. */
    http_expect_request(port, "POST", "/parties/probe/r", NULL, "hi", 2, &res);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "hi");
    http_response_free(&res);
}

static void test_without_static_files_are_404(void **state) {
    partyd *plain = partyd_start(NULL);
    http_response res;
    (void)state;
    assert_non_null(plain);
    http_expect_get(partyd_port(plain), "/index.html", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    http_expect_get(partyd_port(plain), "/", &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    http_expect_request(partyd_port(plain), "POST", "/index.html", NULL, "x", 1, &res);
    assert_int_equal(res.status, 404);
    http_response_free(&res);
    assert_int_equal(partyd_stop(plain), 0);
    partyd_free(plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_are_served_with_their_content_types),
        cmocka_unit_test(test_directories_serve_their_index),
        cmocka_unit_test(test_missing_files_and_non_files_are_404),
        cmocka_unit_test(test_head_has_length_and_no_body),
        cmocka_unit_test(test_head_sends_no_body_bytes_on_keep_alive),
        cmocka_unit_test(test_validators_are_sent),
        cmocka_unit_test(test_if_none_match_revalidates),
        cmocka_unit_test(test_if_modified_since_revalidates),
        cmocka_unit_test(test_traversal_is_refused),
        cmocka_unit_test(test_absolute_looking_paths_are_refused),
        cmocka_unit_test(test_nul_and_bad_escapes_are_refused),
        cmocka_unit_test(test_hidden_files_are_refused),
        cmocka_unit_test(test_symlinks_out_of_the_directory_are_refused),
        cmocka_unit_test(test_symlinks_inside_the_directory_are_followed),
        cmocka_unit_test(test_other_methods_are_405),
        cmocka_unit_test(test_a_file_over_the_limit_is_not_served),
        cmocka_unit_test(test_input_while_an_answer_waits_does_not_spin),
        cmocka_unit_test(test_overlong_path_is_414),
        cmocka_unit_test(test_rooms_keep_their_prefix),
        cmocka_unit_test(test_without_static_files_are_404),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
