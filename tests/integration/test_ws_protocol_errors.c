/* WebSocket protocol violations end to end: each must get a Close with the
 * RFC 6455 code (1002 protocol error, 1007 invalid data, 1009 too big), then
 * the TCP close, with on_error and then on_close (once) reported to the room,
 * and the server must stay healthy. partyd runs with --max-message-bytes
 * 1024. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define MAX_MESSAGE 1024

static partyd *server;
static int port;

static int group_setup(void **state) {
    static const char *const args[] = {"--max-message-bytes", "1024", NULL};
    (void)state;
    return partyd_group_start(&server, &port, args, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Opens a connection with id "bad" to room, sends bytes, and checks what
 * follows: Close(code), the TCP close, the room's on_error then on_close
 * (exactly once, unclean) for it, and a new connection to the same room that
 * works. */
static void expect_protocol_close(const char *room, const void *bytes, size_t len, int code) {
    char needle[128];
    char *record, *error_at, *close_at;
    tconn *c = probe_open(port, room, "_pk=bad", NULL);

    assert_int_equal(tconn_send(c, bytes, len), 0);
    ws_expect_close(c, code, NULL);
    tconn_expect_close(c);
    tconn_close(c);

    snprintf(needle, sizeof(needle), "\"close:bad:%d:", code);
    record = probe_expect_record(port, room, needle);
    error_at = strstr(record, "\"error:bad:");
    close_at = strstr(record, needle);
    if (error_at == NULL || error_at > close_at)
        fail_msg("room %s: no on_error before on_close: %s", room, record);
    assert_int_equal(count_occurrences(record, "\"close:bad:"), 1);
    /* Not a clean close: no Close handshake completed. */
    assert_non_null(strstr(close_at, ":0\""));
    free(record);

    c = probe_open(port, room, "_pk=after", NULL);
    assert_int_equal(ws_send_text(c, "alive"), 0);
    ws_expect_text(c, "echo:alive");
    tconn_close(c);
}

/* One frame with an explicit first byte, masked or not. */
static void expect_frame_closes(const char *room, uint8_t first_byte, int masked,
                                const void *payload, size_t len, int code) {
    char *frame = malloc(len + 14);
    size_t n;
    assert_non_null(frame);
    n = ws_encode_frame(frame, first_byte, masked, payload, len);
    expect_protocol_close(room, frame, n, code);
    free(frame);
}

static void test_unmasked_frame_closes_with_1002(void **state) {
    (void)state;
    expect_frame_closes("unmasked", 0x81, 0, "hi", 2, 1002);
}

static void test_reserved_bits_close_with_1002(void **state) {
    (void)state;
    expect_frame_closes("rsv1", 0x80 | 0x40 | WS_TEXT, 1, "hi", 2, 1002);
    expect_frame_closes("rsv2", 0x80 | 0x20 | WS_TEXT, 1, "hi", 2, 1002);
    expect_frame_closes("rsv3", 0x80 | 0x10 | WS_PING, 1, "", 0, 1002);
}

static void test_unknown_opcode_closes_with_1002(void **state) {
    (void)state;
    expect_frame_closes("opcode3", 0x80 | 0x3, 1, "hi", 2, 1002);
    expect_frame_closes("opcodeB", 0x80 | 0xB, 1, "", 0, 1002);
}

static void test_fragmented_control_frame_closes_with_1002(void **state) {
    (void)state;
    expect_frame_closes("fragping", WS_PING, 1, "p", 1, 1002);
}

static void test_control_frame_over_125_bytes_closes_with_1002(void **state) {
    char payload[126];
    (void)state;
    memset(payload, 'p', sizeof(payload));
    expect_frame_closes("bigping", 0x80 | WS_PING, 1, payload, sizeof(payload), 1002);
}

static void test_continuation_without_a_message_closes_with_1002(void **state) {
    (void)state;
    expect_frame_closes("orphancont", 0x80 | WS_CONT, 1, "hi", 2, 1002);
}

static void test_new_message_inside_a_fragmented_one_closes_with_1002(void **state) {
    char frames[64];
    size_t n;
    (void)state;
    n = ws_encode_frame(frames, WS_TEXT, 1, "part", 4);
    n += ws_encode_frame(frames + n, 0x80 | WS_TEXT, 1, "whole", 5);
    expect_protocol_close("interleaved", frames, n, 1002);
}

static void test_invalid_utf8_text_closes_with_1007(void **state) {
    (void)state;
    expect_frame_closes("badutf8", 0x81, 1, "ab\xC3\x28", 4, 1007);
    expect_frame_closes("overlong", 0x81, 1, "\xC0\xAF", 2, 1007);
    expect_frame_closes("surrogate", 0x81, 1, "\xED\xA0\x80", 3, 1007);
    expect_frame_closes("above10ffff", 0x81, 1, "\xF4\x90\x80\x80", 4, 1007);
}

static void test_text_ending_inside_a_utf8_sequence_closes_with_1007(void **state) {
    char frames[64];
    size_t n;
    (void)state;
    expect_frame_closes("truncutf8", 0x81, 1, "ok\xE2\x82", 4, 1007);
    n = ws_encode_frame(frames, WS_TEXT, 1, "ok\xE2", 3);
    n += ws_encode_frame(frames + n, 0x80 | WS_CONT, 1, "\x82", 1);
    expect_protocol_close("truncfrag", frames, n, 1007);
}

static void test_invalid_utf8_in_a_middle_fragment_closes_with_1007(void **state) {
    char frames[64];
    size_t n;
    (void)state;
    /* The message never ends: the bad fragment alone must be refused. */
    n = ws_encode_frame(frames, WS_TEXT, 1, "fine", 4);
    n += ws_encode_frame(frames + n, WS_CONT, 1, "\xFF", 1);
    expect_protocol_close("badfrag", frames, n, 1007);
}

static void test_message_over_max_message_bytes_closes_with_1009(void **state) {
    char payload[MAX_MESSAGE + 1];
    (void)state;
    memset(payload, 'm', sizeof(payload));
    expect_frame_closes("toobig", 0x82, 1, payload, sizeof(payload), 1009);
}

static void test_fragmented_message_over_max_message_bytes_closes_with_1009(void **state) {
    char frames[2 * 600 + 64], payload[600];
    size_t n;
    (void)state;
    memset(payload, 'm', sizeof(payload));
    n = ws_encode_frame(frames, WS_TEXT, 1, payload, sizeof(payload));
    n += ws_encode_frame(frames + n, 0x80 | WS_CONT, 1, payload, sizeof(payload));
    expect_protocol_close("toobigfrag", frames, n, 1009);
}

static void test_message_of_exactly_max_message_bytes_is_accepted(void **state) {
    char payload[MAX_MESSAGE];
    tconn *c = probe_open(port, "atlimit", NULL, NULL);
    (void)state;
    memset(payload, 'k', sizeof(payload));
    assert_int_equal(ws_send_frame(c, WS_BINARY, 1, payload, sizeof(payload)), 0);
    ws_expect_binary(c, payload, sizeof(payload));
    assert_int_equal(ws_send_frame(c, WS_BINARY, 0, payload, 1000), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 1, payload, 24), 0);
    ws_expect_binary(c, payload, sizeof(payload));
    tconn_close(c);
}

static void test_64_bit_length_with_the_high_bit_set_closes_with_1002(void **state) {
    static const unsigned char header[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    (void)state;
    expect_protocol_close("highbit", header, sizeof(header), 1002);
}

static void test_oversized_length_is_refused_from_the_header_alone(void **state) {
    /* A 1 GiB frame is announced; no payload follows. The limit must be
     * enforced on the announced length, not after buffering. */
    static const unsigned char header[] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4};
    (void)state;
    expect_protocol_close("hugeheader", header, sizeof(header), 1009);
}

static void test_close_with_one_byte_payload_closes_with_1002(void **state) {
    (void)state;
    expect_frame_closes("close1byte", 0x80 | WS_CLOSE, 1, "\x03", 1, 1002);
}

static void test_close_with_a_code_never_sent_on_the_wire_closes_with_1002(void **state) {
    /* 1005 and 1006 are for APIs only; 999, 1004, 1016 and 2999 are not
     * assigned; 5000 is out of range. */
    (void)state;
    expect_frame_closes("close1005", 0x80 | WS_CLOSE, 1, "\x03\xED", 2, 1002);
    expect_frame_closes("close1006", 0x80 | WS_CLOSE, 1, "\x03\xEE", 2, 1002);
    expect_frame_closes("close999", 0x80 | WS_CLOSE, 1, "\x03\xE7", 2, 1002);
    expect_frame_closes("close1004", 0x80 | WS_CLOSE, 1, "\x03\xEC", 2, 1002);
    expect_frame_closes("close2999", 0x80 | WS_CLOSE, 1, "\x0B\xB7", 2, 1002);
    expect_frame_closes("close5000", 0x80 | WS_CLOSE, 1, "\x13\x88", 2, 1002);
}

static void test_close_reason_that_is_not_utf8_closes_with_1007(void **state) {
    (void)state;
    expect_frame_closes("closeutf8", 0x80 | WS_CLOSE, 1, "\x03\xE8\xFF", 3, 1007);
}

static void test_error_after_good_frames_in_the_same_write_keeps_their_replies(void **state) {
    char frames[64];
    size_t n;
    tconn *c = probe_open(port, "goodthenbad", "_pk=gb", NULL);
    (void)state;

    n = ws_encode_frame(frames, 0x81, 1, "one", 3);
    n += ws_encode_frame(frames + n, 0x81, 0, "two", 3); /* unmasked */
    assert_int_equal(tconn_send(c, frames, n), 0);
    ws_expect_text(c, "echo:one");
    ws_expect_close(c, 1002, NULL);
    tconn_expect_close(c);
    tconn_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmasked_frame_closes_with_1002),
        cmocka_unit_test(test_reserved_bits_close_with_1002),
        cmocka_unit_test(test_unknown_opcode_closes_with_1002),
        cmocka_unit_test(test_fragmented_control_frame_closes_with_1002),
        cmocka_unit_test(test_control_frame_over_125_bytes_closes_with_1002),
        cmocka_unit_test(test_continuation_without_a_message_closes_with_1002),
        cmocka_unit_test(test_new_message_inside_a_fragmented_one_closes_with_1002),
        cmocka_unit_test(test_invalid_utf8_text_closes_with_1007),
        cmocka_unit_test(test_text_ending_inside_a_utf8_sequence_closes_with_1007),
        cmocka_unit_test(test_invalid_utf8_in_a_middle_fragment_closes_with_1007),
        cmocka_unit_test(test_message_over_max_message_bytes_closes_with_1009),
        cmocka_unit_test(test_fragmented_message_over_max_message_bytes_closes_with_1009),
        cmocka_unit_test(test_message_of_exactly_max_message_bytes_is_accepted),
        cmocka_unit_test(test_64_bit_length_with_the_high_bit_set_closes_with_1002),
        cmocka_unit_test(test_oversized_length_is_refused_from_the_header_alone),
        cmocka_unit_test(test_close_with_one_byte_payload_closes_with_1002),
        cmocka_unit_test(test_close_with_a_code_never_sent_on_the_wire_closes_with_1002),
        cmocka_unit_test(test_close_reason_that_is_not_utf8_closes_with_1007),
        cmocka_unit_test(test_error_after_good_frames_in_the_same_write_keeps_their_replies),
    };
    return cmocka_run_group_tests_name("ws_protocol_errors", tests, group_setup, group_teardown);
}
