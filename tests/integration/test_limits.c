/* Connection limits in a real partyd: past --max-conns an upgrade gets 503
 * (and the log says which limit), and when the process runs out of file
 * descriptors accept() keeps working: once clients leave, new ones are
 * served again; a room that cannot open its storage for want of
 * descriptors answers 503 and the log names the open-file limit. (partyd
 * itself raises its soft limit to the hard one at start-up; the test
 * lowers it afterwards with prlimit.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <dirent.h>

#include "client.h"

#define MAX_CONNS 6

/* Opens a WebSocket, retrying while the server still refuses (it learns of
 * closed connections asynchronously); 1 once served, bounded to ~2 s. */
static int try_connect_until_served(int port, const char *target) {
    int attempt;
    for (attempt = 0; attempt < 100; attempt++) {
        http_response res;
        tconn *c = tconn_open(port, 0);
        int r = -1;
        memset(&res, 0, sizeof(res));
        if (c != NULL) {
            r = ws_handshake(c, target, NULL, NULL, 0, &res);
            if (r == 0) {
                ws_send_text(c, "still here");
                ws_expect_text(c, "still here");
            }
            http_response_free(&res);
            tconn_close(c);
        }
        if (r == 0)
            return 1;
        usleep(20 * 1000);
    }
    return 0;
}

static void test_upgrades_past_max_conns_get_503_and_the_limit_is_logged(void **state) {
    static const char *const args[] = {"--max-conns", "6", NULL};
    partyd *d = partyd_start(args);
    tconn *held[MAX_CONNS];
    http_response res;
    tconn *extra;
    int i, r;
    (void)state;

    assert_non_null(d);
    /* The connection that asks counts too: 5 are held, the 6th is refused
     * only once it would make 7. */
    for (i = 0; i < MAX_CONNS; i++) {
        char target[64];
        snprintf(target, sizeof(target), "/parties/echo/full?_pk=c%d", i);
        held[i] = ws_open(partyd_port(d), target);
    }
    memset(&res, 0, sizeof(res));
    extra = tconn_open(partyd_port(d), 0);
    r = ws_handshake(extra, "/parties/echo/full?_pk=extra", NULL, NULL, 0, &res);
    assert_int_equal(r, 503);
    http_response_free(&res);
    tconn_close(extra);
    assert_true(partyd_wait_stderr(d, "max_conns (6) reached", 5000));

    /* One leaves: there is room again (once the server saw it leave). */
    tconn_close(held[0]);
    assert_true(try_connect_until_served(partyd_port(d), "/parties/echo/full?_pk=again"));
    for (i = 1; i < MAX_CONNS; i++)
        tconn_close(held[i]);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* Lowers the running partyd's open-file limit with prlimit(1). */
static int lower_file_limit(int pid, int files) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "prlimit --pid %d --nofile=%d:%d", pid, files, files);
    return system(cmd);
}

/* Sets only the soft open-file limit, so that it can be raised again. */
static int set_soft_file_limit(int pid, int files) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "prlimit --pid %d --nofile=%d:", pid, files);
    return system(cmd);
}

static void test_accept_keeps_working_after_running_out_of_descriptors(void **state) {
    static const char *const args[] = {"--max-conns", "100000", NULL};
    partyd *d = partyd_start(args);
    tconn *conns[80];
    int i, n_open = 0, pid;
    (void)state;

    assert_non_null(d);
    pid = partyd_pid(d);
    /* prlimit is part of util-linux, on every Debian machine. */
    assert_int_equal(lower_file_limit(pid, 48), 0);
    /* More clients than the process has descriptors: some are turned away. */
    for (i = 0; i < 80; i++) {
        char target[64];
        http_response res;
        memset(&res, 0, sizeof(res));
        conns[i] = tconn_open(partyd_port(d), 0);
        snprintf(target, sizeof(target), "/parties/echo/many?_pk=m%d", i);
        if (conns[i] != NULL && ws_handshake(conns[i], target, NULL, NULL, 0, &res) == 0) {
            n_open++;
        } else if (conns[i] != NULL) {
            tconn_close(conns[i]);
            conns[i] = NULL;
        }
        http_response_free(&res);
    }
    /* Some were served, the rest turned away (the listener accepts and
     * closes what it cannot keep, so the backlog never jams). */
    assert_true(n_open > 0);
    assert_true(n_open < 80);
    for (i = 0; i < 80; i++)
        if (conns[i] != NULL)
            tconn_close(conns[i]);

    /* Everyone left: a new client is served. */
    assert_true(try_connect_until_served(partyd_port(d), "/parties/echo/many?_pk=late"));
    /* Those turned away at accept are counted, each once. */
    {
        long long refused =
            metrics_get(partyd_port(d), "partyd_runtime_errors_total{kind=\"accept\"}");
        assert_true(refused > 0);
        /* The late client may have tried up to 100 times. */
        assert_true(refused <= (long long)(80 - n_open + 100));
    }
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

/* The lowest descriptor number free in the process: the next file it opens
 * gets it, and a limit of n lets it open files numbered below n only. */
static int lowest_free_descriptor(int pid) {
    static unsigned char used[4096];
    char path[64];
    struct dirent *e;
    DIR *dir;
    int fd;

    memset(used, 0, sizeof(used));
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    dir = opendir(path);
    if (dir == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL) {
        fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= 0 && fd < (int)sizeof(used))
            used[fd] = 1;
    }
    closedir(dir);
    for (fd = 0; fd < (int)sizeof(used) && used[fd]; fd++)
        ;
    return fd;
}

static void test_room_out_of_descriptors_answers_503_and_names_the_limit(void **state) {
    /* One loop: the request is served where it was accepted, so the
     * descriptors counted below are all it needs. The data directory is a
     * copy of one an earlier partyd wrote: its counter room "fixture" has
     * a file of its own. */
    char dir[] = "/tmp/partyd-limits-XXXXXX", cmd[1024];
    const char *const args[] = {"--max-conns", "100000", "--threads", "1", "--data", dir, NULL};
    partyd *d;
    http_response res;
    tconn *c;
    int pid, next_fd, r;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "cp -r %s/data-v1/alarms.db %s/data-v1/rooms %s/", PARTY_FIXTURES,
             PARTY_FIXTURES, dir);
    assert_int_equal(system(cmd), 0);
    d = partyd_start(args);
    assert_non_null(d);
    pid = partyd_pid(d);
    next_fd = lowest_free_descriptor(pid);
    assert_true(next_fd > 2);
    /* Room for the accepted socket and the database file at most, not for
     * the database's WAL and shared-memory files. */
    assert_int_equal(set_soft_file_limit(pid, next_fd + 2), 0);
    /* A room whose records are in a shared file needs no descriptor. */
    c = ws_open(partyd_port(d), "/parties/counter/starved");
    assert_non_null(c);
    tconn_close(c);
    /* A room with its own file does. */
    memset(&res, 0, sizeof(res));
    c = tconn_open(partyd_port(d), 0);
    assert_non_null(c);
    r = ws_handshake(c, "/parties/counter/fixture", NULL, NULL, 0, &res);
    assert_int_equal(r, 503);
    http_response_free(&res);
    tconn_close(c);
    assert_true(partyd_wait_stderr(d, "Too many open files (open-file limit", 5000));

    /* With descriptors again, the same room opens. */
    assert_int_equal(set_soft_file_limit(pid, next_fd + 64), 0);
    c = ws_open(partyd_port(d), "/parties/counter/fixture");
    assert_non_null(c);
    tconn_close(c);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
    test_remove_tree(dir);
}

/* Waits (at most 5 s) until partyd's lowest free descriptor is fd again:
 * the socket of a connection that ended is closed. */
static int wait_lowest_free(int pid, int fd) {
    int i;
    for (i = 0; i < 500; i++) {
        if (lowest_free_descriptor(pid) == fd)
            return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* A connection routed to a room on another loop moves there with its own
 * socket: with no descriptor left but the one it came in on, it is still
 * served. Rooms are spread over the two loops by their ids; of eight, some
 * live on the loop that did not accept. */
static void test_routed_connections_need_no_descriptor_of_their_own(void **state) {
    static const char *const args[] = {"--max-conns", "100000", "--threads", "2", NULL};
    partyd *d = partyd_start(args);
    tconn *held[8];
    int i, pid, next_fd;
    (void)state;

    assert_non_null(d);
    pid = partyd_pid(d);
    /* Each room loaded (its files open) and kept so by a connection. */
    for (i = 0; i < 8; i++) {
        char target[64];
        snprintf(target, sizeof(target), "/parties/counter/routed-%d", i);
        held[i] = ws_open(partyd_port(d), target);
    }
    next_fd = lowest_free_descriptor(pid);
    assert_true(next_fd > 2);
    /* Room for one socket more and nothing else. */
    assert_int_equal(set_soft_file_limit(pid, next_fd + 1), 0);
    for (i = 0; i < 8; i++) {
        char target[64];
        http_response res;
        tconn *c = tconn_open(partyd_port(d), 0);
        int r;
        assert_non_null(c);
        snprintf(target, sizeof(target), "/parties/counter/routed-%d", i);
        memset(&res, 0, sizeof(res));
        r = ws_handshake(c, target, NULL, NULL, 0, &res);
        if (r != 0)
            fail_msg("room routed-%d: the upgrade got %d: %s", i, r, res.body ? res.body : "");
        http_response_free(&res);
        tconn_close(c);
        assert_true(wait_lowest_free(pid, next_fd));
    }
    assert_int_equal(set_soft_file_limit(pid, next_fd + 64), 0);
    for (i = 0; i < 8; i++)
        tconn_close(held[i]);
    assert_int_equal(partyd_stop(d), 0);
    partyd_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrades_past_max_conns_get_503_and_the_limit_is_logged),
        cmocka_unit_test(test_accept_keeps_working_after_running_out_of_descriptors),
        cmocka_unit_test(test_room_out_of_descriptors_answers_503_and_names_the_limit),
        cmocka_unit_test(test_routed_connections_need_no_descriptor_of_their_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
