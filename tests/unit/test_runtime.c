/* runtime: the data directory. One runtime at a time holds it (a flock on
 * <data>/LOCK, with the holder's pid), across processes and within one:
 * a second runtime, or a party_test's, is refused with PARTY_EBUSY before
 * it binds its port; freeing the holder (or restarting a party_test) lets
 * it go. A missing directory is created; one that cannot be used fails
 * listen and run before the port is bound, with a log line that names it
 * and the OS error. Real directories under /tmp, real sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "as_nobody.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "party.h"
#include "party_test.h"
#include "runtime.h"

/* ---- helpers ---- */

static void make_dir(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/partyd-test-runtime-XXXXXX");
    assert_non_null(mkdtemp(path));
}

static void remove_dir(const char *path) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", path, path);
    assert_int_equal(system(cmd), 0);
}

static party_runtime *runtime_on(const char *data_dir, int port) {
    party_config cfg;
    party_runtime *rt;
    party_config_init(&cfg);
    cfg.port = port;
    cfg.data_dir = data_dir;
    cfg.threads = 1;
    cfg.log_level = 0; /* errors only: what these tests read */
    rt = party_runtime_new(&cfg);
    assert_non_null(rt);
    return rt;
}

/* A port free a moment ago (the kernel's choice for port 0). */
static int free_port(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(fd >= 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

/* 1 if this process can listen on 127.0.0.1:port, i.e. no runtime did. */
static int port_unbound(int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, ok;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    ok = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* What the runtime logs while fn runs, read from a file that stands in
 * for stderr. */
static char captured[4096];

static int capture(int (*fn)(party_runtime *), party_runtime *rt) {
    char path[] = "/tmp/partyd-test-runtime-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO), r;
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    r = fn(rt);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    n = pread(fd, captured, sizeof(captured) - 1, 0);
    captured[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return r;
}

static void expect_logged(const char *needle) {
    if (strstr(captured, needle) == NULL)
        fail_msg("expected \"%s\" in the log:\n%s", needle, captured);
}

/* 1 if nobody holds dir's lock: this process can take it itself (a new
 * open file, so even a lock of this process would refuse it). */
static int lock_free(const char *dir) {
    char path[256];
    int fd, ok;
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 1; /* no lock file: nothing was ever locked */
    ok = flock(fd, LOCK_EX | LOCK_NB) == 0;
    close(fd);
    return ok;
}

/* ---- one runtime per data directory ---- */

static void test_second_runtime_on_a_data_dir_in_use_is_refused_before_binding(void **state) {
    char dir[64], expected[256];
    party_runtime *first, *second;
    int port = free_port();
    (void)state;

    make_dir(dir, sizeof(dir));
    first = runtime_on(dir, 0);
    assert_int_equal(party_runtime_listen(first), 0);

    /* Same process, same directory: flock belongs to the open file, so
     * the second open of LOCK is refused like another process's. */
    second = runtime_on(dir, port);
    assert_int_equal(capture(party_runtime_listen, second), PARTY_EBUSY);
    snprintf(expected, sizeof(expected),
             "data directory %s is in use by another runtime (pid %ld; lock file %s/LOCK)", dir,
             (long)getpid(), dir);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(second), -1);
    assert_true(port_unbound(port));
    /* run listens first: the same refusal, nothing served. */
    assert_int_equal(capture(party_runtime_run, second), PARTY_EBUSY);
    assert_int_equal(party_runtime_port(second), -1);
    assert_string_equal(party_strerror(PARTY_EBUSY), "in use by another runtime or process");

    /* Freed, the first lets it go: the refused runtime can try again. */
    party_runtime_free(first);
    assert_int_equal(party_runtime_listen(second), 0);
    assert_true(party_runtime_port(second) > 0);
    party_runtime_free(second);
    remove_dir(dir);
}

static void test_lock_file_holds_the_pid_on_one_close_on_exec_descriptor(void **state) {
    char dir[64], path[128], text[32] = "";
    party_runtime *rt;
    FILE *f;
    int fd;
    (void)state;

    make_dir(dir, sizeof(dir));
    rt = runtime_on(dir, 0);
    assert_int_equal(party__runtime_data_lock_fd(rt), -1); /* not before listen */
    assert_int_equal(party_runtime_listen(rt), 0);
    fd = party__runtime_data_lock_fd(rt);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_false(lock_free(dir));
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    assert_int_equal(strtol(text, NULL, 10), (long)getpid());
    party_runtime_free(rt);
    /* The file stays; the lock does not. */
    assert_true(access(path, F_OK) == 0);
    assert_true(lock_free(dir));
    remove_dir(dir);
}

static void test_memory_only_runtimes_take_no_lock(void **state) {
    party_runtime *a = runtime_on(NULL, 0), *b = runtime_on(NULL, 0);
    (void)state;

    assert_int_equal(party_runtime_listen(a), 0);
    assert_int_equal(party_runtime_listen(b), 0);
    assert_int_equal(party__runtime_data_lock_fd(a), -1);
    assert_int_equal(party__runtime_data_lock_fd(b), -1);
    party_runtime_free(a);
    party_runtime_free(b);
}

static const party_def echo_def = {.name = "echo"};

static void test_party_test_holds_its_data_dir_and_restart_takes_it_again(void **state) {
    party_test *t = party_test_new();
    party_runtime *other;
    char dir[256];
    (void)state;

    assert_non_null(t);
    assert_int_equal(party_test_add(t, &echo_def), 0);
    snprintf(dir, sizeof(dir), "%s", party_test_data_dir(t));
    other = runtime_on(dir, 0);
    assert_int_equal(capture(party_runtime_listen, other), PARTY_EBUSY);

    /* A restart frees the runtime (the lock goes) and starts a new one on
     * the same directory (it comes back). */
    assert_int_equal(party_test_restart(t), 0);
    assert_false(lock_free(dir));
    assert_int_equal(capture(party_runtime_listen, other), PARTY_EBUSY);
    assert_int_equal(party_test_restart(t), 0);
    assert_false(lock_free(dir));

    /* Freed, the harness lets it go. */
    party_test_free(t);
    assert_int_equal(party_runtime_listen(other), 0);
    party_runtime_free(other);
    remove_dir(dir);
}

/* ---- creating and checking the data directory ---- */

static void test_missing_data_dir_is_created(void **state) {
    char parent[64], dir[128];
    struct stat st;
    party_runtime *rt;
    (void)state;

    make_dir(parent, sizeof(parent));
    snprintf(dir, sizeof(dir), "%s/data", parent);
    rt = runtime_on(dir, 0);
    assert_int_equal(party_runtime_listen(rt), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0700, 0700);
    party_runtime_free(rt);
    remove_dir(parent);
}

static void test_data_dir_below_a_file_fails_listen_before_binding(void **state) {
    char parent[64], file[128], dir[160], expected[256];
    party_runtime *rt;
    int port = free_port();
    FILE *f;
    (void)state;

    /* Nobody, root included, can create a directory below a file. */
    make_dir(parent, sizeof(parent));
    snprintf(file, sizeof(file), "%s/file", parent);
    snprintf(dir, sizeof(dir), "%s/data", file);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    rt = runtime_on(dir, port);
    assert_int_equal(capture(party_runtime_listen, rt), PARTY_EIO);
    snprintf(expected, sizeof(expected), "data directory %s: cannot create it: Not a directory",
             dir);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    assert_true(port_unbound(port));
    /* run fails the same way, before anything is bound. */
    assert_int_equal(capture(party_runtime_run, rt), PARTY_EIO);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    party_runtime_free(rt);

    /* A file given as the data directory itself. */
    rt = runtime_on(file, port);
    assert_int_equal(capture(party_runtime_listen, rt), PARTY_EIO);
    snprintf(expected, sizeof(expected), "data directory %s: Not a directory", file);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    party_runtime_free(rt);
    remove_dir(parent);
}

static void test_alarm_index_that_cannot_open_fails_listen_and_releases_the_lock(void **state) {
    char dir[64], index[128], expected[256];
    party_runtime *rt;
    int port = free_port();
    (void)state;

    /* alarms.db is a directory: SQLite cannot open it, root or not. */
    make_dir(dir, sizeof(dir));
    snprintf(index, sizeof(index), "%s/alarms.db", dir);
    assert_int_equal(mkdir(index, 0755), 0);

    rt = runtime_on(dir, port);
    assert_int_equal(capture(party_runtime_listen, rt), PARTY_EIO);
    snprintf(expected, sizeof(expected), "data directory %s: cannot open alarms.db: Is a directory",
             dir);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    assert_true(port_unbound(port));
    /* Nothing is left held by a runtime that could not start. */
    assert_int_equal(party__runtime_data_lock_fd(rt), -1);
    assert_true(lock_free(dir));
    party_runtime_free(rt);
    remove_dir(dir);
}

static void test_unwritable_data_dir_names_the_os_error(void **state) {
    char dir[64], path[128], expected[256];
    party_runtime *rt;
    int fd;
    (void)state;

    RUN_AS_NOBODY_IF_ROOT();
    make_dir(dir, sizeof(dir));
    assert_int_equal(chmod(dir, 0555), 0);
    rt = runtime_on(dir, 0);
    assert_int_equal(capture(party_runtime_listen, rt), PARTY_EIO);
    snprintf(expected, sizeof(expected), "data directory %s: cannot create LOCK: Permission denied",
             dir);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    party_runtime_free(rt);

    /* With the lock file there already, the index is what cannot be made. */
    assert_int_equal(chmod(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    fd = open(path, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(dir, 0555), 0);
    rt = runtime_on(dir, 0);
    assert_int_equal(capture(party_runtime_listen, rt), PARTY_EIO);
    snprintf(expected, sizeof(expected),
             "data directory %s: cannot create alarms.db: Permission denied", dir);
    expect_logged(expected);
    assert_int_equal(party_runtime_port(rt), -1);
    party_runtime_free(rt);
    remove_dir(dir);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_runtime_on_a_data_dir_in_use_is_refused_before_binding),
        cmocka_unit_test(test_lock_file_holds_the_pid_on_one_close_on_exec_descriptor),
        cmocka_unit_test(test_memory_only_runtimes_take_no_lock),
        cmocka_unit_test(test_party_test_holds_its_data_dir_and_restart_takes_it_again),
        cmocka_unit_test(test_missing_data_dir_is_created),
        cmocka_unit_test(test_data_dir_below_a_file_fails_listen_before_binding),
        cmocka_unit_test(test_alarm_index_that_cannot_open_fails_listen_and_releases_the_lock),
        cmocka_unit_test(test_unwritable_data_dir_names_the_os_error),
    };
    as_nobody_main(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
