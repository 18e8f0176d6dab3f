/* party_room_log from parties loaded into partyd: each line on partyd's
 * stderr carries its level, the party and the room, like the runtime's own
 * room lines; --log-level filters them and --log-format json escapes them.
 * Lines of one room are written in the order it logged them, so waiting for
 * the last one means every earlier one was written or dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static void expect_stderr(partyd *d, const char *needle) {
    if (!partyd_wait_stderr(d, needle, TC_TIMEOUT_MS)) {
        char *err = partyd_stderr(d);
        fail_msg("expected \"%s\" on partyd's stderr:\n%s", needle, err);
    }
}

static void test_party_log_lines_carry_level_party_and_room(void **state) {
    partyd *d = partyd_start(NULL);
    tconn *c;
    char *err;
    (void)state;

    assert_non_null(d);
    c = probe_open(partyd_port(d), "logroom", NULL, NULL);
    assert_int_equal(ws_send_text(c, "log:3:a debug line"), 0);
    assert_int_equal(ws_send_text(c, "log:9:a line of no level"), 0);
    assert_int_equal(ws_send_text(c, "log:1:disk 93% full"), 0);
    assert_int_equal(ws_send_text(c, "log:2:an info line"), 0);
    assert_int_equal(ws_send_text(c, "log:0:it broke"), 0);
    expect_stderr(d, " warn  room probe/logroom: disk 93% full\n");
    expect_stderr(d, " info  room probe/logroom: an info line\n");
    expect_stderr(d, " error room probe/logroom: it broke\n");
    /* The default level is info: no debug line, and no line of no level. */
    err = partyd_stderr(d);
    assert_null(strstr(err, "a debug line"));
    assert_null(strstr(err, "a line of no level"));
    free(err);
    tconn_close(c);
    assert_int_equal(partyd_group_stop(d), 0);
}

static void test_party_log_at_debug_in_json(void **state) {
    static const char *const args[] = {"--log-level", "debug", "--log-format", "json", NULL};
    partyd *d = partyd_start(args);
    tconn *probe, *greeter;
    (void)state;

    assert_non_null(d);
    /* The greeter example logs each greeting at debug. */
    greeter = ws_open(partyd_port(d), "/parties/greeter/lobby?name=ada");
    ws_expect_text(greeter, "hello ada, welcome to lobby");
    expect_stderr(d, "\"level\":\"debug\",\"msg\":\"room greeter/lobby: greeted ada (1 so far)\"}");
    probe = probe_open(partyd_port(d), "json", NULL, NULL);
    assert_int_equal(ws_send_text(probe, "log:3:say \"hi\""), 0);
    expect_stderr(d, "\"level\":\"debug\",\"msg\":\"room probe/json: say \\\"hi\\\"\"}");
    tconn_close(probe);
    tconn_close(greeter);
    assert_int_equal(partyd_group_stop(d), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_party_log_lines_carry_level_party_and_room),
        cmocka_unit_test(test_party_log_at_debug_in_json),
    };
    return cmocka_run_group_tests_name("party_log", tests, NULL, NULL);
}
