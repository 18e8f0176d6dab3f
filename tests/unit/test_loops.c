/* Several event loops through the embedding API (src/loops.c): a runtime
 * with party_config.threads = 3 serves rooms from its run thread and the
 * loops it starts, refuses party_runtime_add while they run, and stops
 * when party_runtime_stop is called from another thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cmocka.h>
#include <uv.h>

#include "party.h"

static party_runtime *runtime; /* what the party's callback adds to */

static const party_def late_def = {.name = "late"};

/* Answers with its room's name and what adding a party now returned. */
static void loops_request(party_room *room, const party_request *req, party_response *res) {
    char body[128];
    int r = party_runtime_add(runtime, &late_def);
    (void)req;
    snprintf(body, sizeof(body), "%s %d", party_room_name(room), r);
    party_response_set_body(res, body, strlen(body));
}

static const party_def loops_def = {.name = "loops", .on_request = loops_request};

/* One GET on a new connection; the body, or NULL. */
static char *http_get(int port, const char *path) {
    struct sockaddr_in addr;
    struct timeval tv = {5, 0};
    char request[256], buf[4096];
    size_t len = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *body;

    if (fd < 0)
        return NULL;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        write(fd, request, strlen(request)) != (ssize_t)strlen(request)) {
        close(fd);
        return NULL;
    }
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    body = strstr(buf, "\r\n\r\n");
    return body != NULL ? strdup(body + 4) : NULL;
}

static void run_thread(void *arg) {
    *(int *)arg = party_runtime_run(runtime);
}

static void test_three_loops_serve_rooms_refuse_new_parties_and_stop(void **state) {
    party_config cfg;
    uv_thread_t thread;
    int run_result = -1, port, i;
    (void)state;

    party_config_init(&cfg);
    cfg.port = 0;
    cfg.data_dir = NULL; /* rooms in memory */
    cfg.threads = 3;
    cfg.log_level = 0;
    runtime = party_runtime_new(&cfg);
    assert_non_null(runtime);
    assert_int_equal(party_runtime_add(runtime, &loops_def), 0);
    assert_int_equal(party_runtime_listen(runtime), 0);
    port = party_runtime_port(runtime);
    assert_true(port > 0);
    assert_int_equal(uv_thread_create(&thread, run_thread, &run_result), 0);

    /* Twelve rooms: with three loops, most are served by a loop the run
     * thread started, each answers with its own name, and adding a party
     * while the loops run is refused. */
    for (i = 0; i < 12; i++) {
        char path[64], want[64];
        char *body;
        snprintf(path, sizeof(path), "/parties/loops/room-%d", i);
        snprintf(want, sizeof(want), "room-%d %d", i, PARTY_ESTATE);
        body = http_get(port, path);
        assert_non_null(body);
        assert_string_equal(body, want);
        free(body);
    }

    party_runtime_stop(runtime); /* from another thread than the loops' */
    uv_thread_join(&thread);
    assert_int_equal(run_result, 0);
    party_runtime_free(runtime);
    runtime = NULL;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_loops_serve_rooms_refuse_new_parties_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
