/* WebSocket data frames end to end through the probe party's echo: payload
 * length encodings on both sides, text vs binary, fragmentation (also inside
 * a UTF-8 sequence, and with control frames between fragments), ping/pong,
 * and large messages. partyd runs with default limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define MIB (1024 * 1024)

static partyd *server;
static int port;

static int group_setup(void **state) {
    (void)state;
    return partyd_group_start(&server, &port, NULL, NULL);
}

static int group_teardown(void **state) {
    (void)state;
    return partyd_group_stop(server);
}

/* Sends a text message of len bytes and checks the "echo:" reply. */
static void text_round_trip(tconn *c, size_t len) {
    char *payload = malloc(len + 1), *expected = malloc(len + 6);
    size_t i;
    assert_non_null(payload);
    assert_non_null(expected);
    for (i = 0; i < len; i++)
        payload[i] = (char)('a' + i % 26);
    payload[len] = '\0';
    memcpy(expected, "echo:", 5);
    memcpy(expected + 5, payload, len + 1);
    assert_int_equal(ws_send_frame(c, WS_TEXT, 1, payload, len), 0);
    ws_expect_text(c, expected);
    free(payload);
    free(expected);
}

static void binary_round_trip(tconn *c, size_t len) {
    char *payload = malloc(len + 1);
    size_t i;
    assert_non_null(payload);
    for (i = 0; i < len; i++)
        payload[i] = (char)(i * 31 + 7); /* every byte value, not UTF-8 */
    assert_int_equal(ws_send_frame(c, WS_BINARY, 1, payload, len), 0);
    ws_expect_binary(c, payload, len);
    free(payload);
}

static void test_text_echo_at_length_encoding_boundaries(void **state) {
    /* Sent lengths at the client-side boundaries, and lengths whose reply
     * (5 bytes longer) lands on the server-side ones. */
    static const size_t lengths[] = {0,     1,     125, 126, 127,   65535,
                                     65536, 65537, 120, 121, 65530, 65531};
    tconn *c = probe_open(port, "textlen", NULL, NULL);
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++)
        text_round_trip(c, lengths[i]);
    tconn_close(c);
}

static void test_binary_echo_at_length_encoding_boundaries_stays_binary(void **state) {
    static const size_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 65537};
    tconn *c = probe_open(port, "binlen", NULL, NULL);
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++)
        binary_round_trip(c, lengths[i]);
    tconn_close(c);
}

static void test_binary_that_looks_like_a_command_is_not_a_command(void **state) {
    tconn *c = probe_open(port, "binlen", NULL, NULL);
    (void)state;
    assert_int_equal(ws_send_frame(c, WS_BINARY, 1, "close:4000:x", 12), 0);
    ws_expect_binary(c, "close:4000:x", 12);
    tconn_close(c);
}

static void test_non_minimal_length_encoding_is_accepted(void **state) {
    /* RFC 6455 5.2 asks for the minimal form, but the decoded length is what
     * counts; a 16-bit and a 64-bit encoding of 5 bytes. */
    unsigned char frame[32] = {0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4};
    static const char text[] = "hello";
    tconn *c = probe_open(port, "nonminimal", NULL, NULL);
    size_t i;
    (void)state;

    for (i = 0; i < 5; i++)
        frame[8 + i] = (unsigned char)(text[i] ^ frame[4 + i % 4]);
    assert_int_equal(tconn_send(c, frame, 13), 0);
    ws_expect_text(c, "echo:hello");

    memset(frame, 0, sizeof(frame));
    frame[0] = 0x81;
    frame[1] = 0x80 | 127;
    frame[9] = 5;
    memcpy(frame + 10, "\x01\x02\x03\x04", 4);
    for (i = 0; i < 5; i++)
        frame[14 + i] = (unsigned char)(text[i] ^ frame[10 + i % 4]);
    assert_int_equal(tconn_send(c, frame, 19), 0);
    ws_expect_text(c, "echo:hello");
    tconn_close(c);
}

static void test_fragmented_text_split_inside_utf8_sequences_arrives_whole(void **state) {
    /* "héllo €!" with é (C3 A9) and € (E2 82 AC) cut across fragments. */
    tconn *c = probe_open(port, "fragutf8", NULL, NULL);
    (void)state;
    assert_int_equal(ws_send_frame(c, WS_TEXT, 0, "h\xC3", 2), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 0, "\xA9llo \xE2", 6), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 0, "\x82", 1), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 0, "", 0), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 1, "\xAC!", 2), 0);
    ws_expect_text(c, "echo:h\xC3\xA9llo \xE2\x82\xAC!");
    tconn_close(c);
}

static void test_fragmented_binary_message_arrives_whole_as_binary(void **state) {
    tconn *c = probe_open(port, "fragbin", NULL, NULL);
    (void)state;
    assert_int_equal(ws_send_frame(c, WS_BINARY, 0, "\x00\xFF", 2), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 0, "\xC3", 1), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 1, "\x80\x01", 2), 0);
    ws_expect_binary(c, "\x00\xFF\xC3\x80\x01", 5);
    tconn_close(c);
}

static void test_ping_between_fragments_is_answered_before_the_message(void **state) {
    tconn *c = probe_open(port, "fragping", NULL, NULL);
    ws_frame f;
    (void)state;

    assert_int_equal(ws_send_frame(c, WS_TEXT, 0, "abc", 3), 0);
    assert_int_equal(ws_send_frame(c, WS_PING, 1, "between", 7), 0);
    assert_int_equal(ws_send_frame(c, WS_CONT, 1, "def", 3), 0);
    assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
    assert_int_equal(f.opcode, WS_PONG);
    assert_string_equal(f.data, "between");
    ws_frame_free(&f);
    ws_expect_text(c, "echo:abcdef");
    tconn_close(c);
}

static void test_ping_is_answered_with_pong_with_the_same_payload(void **state) {
    char big[125];
    tconn *c = probe_open(port, "pingpong", NULL, NULL);
    ws_frame f;
    (void)state;

    assert_int_equal(ws_send_frame(c, WS_PING, 1, "are you there", 13), 0);
    assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
    assert_int_equal(f.opcode, WS_PONG);
    assert_int_equal(f.len, 13);
    assert_string_equal(f.data, "are you there");
    ws_frame_free(&f);

    assert_int_equal(ws_send_frame(c, WS_PING, 1, "", 0), 0);
    assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
    assert_int_equal(f.opcode, WS_PONG);
    assert_int_equal(f.len, 0);
    ws_frame_free(&f);

    memset(big, 0xEE, sizeof(big)); /* a ping payload is any bytes */
    assert_int_equal(ws_send_frame(c, WS_PING, 1, big, sizeof(big)), 0);
    assert_int_equal(ws_recv(c, &f, TC_TIMEOUT_MS), 0);
    assert_int_equal(f.opcode, WS_PONG);
    assert_int_equal(f.len, sizeof(big));
    assert_memory_equal(f.data, big, sizeof(big));
    ws_frame_free(&f);
    tconn_close(c);
}

static void test_unsolicited_pong_is_ignored(void **state) {
    tconn *c = probe_open(port, "pong", NULL, NULL);
    (void)state;
    assert_int_equal(ws_send_frame(c, WS_PONG, 1, "unasked", 7), 0);
    assert_int_equal(ws_send_text(c, "still here"), 0);
    ws_expect_text(c, "echo:still here");
    tconn_close(c);
}

static void test_many_frames_in_one_write_are_answered_in_order(void **state) {
    enum { N = 200 };
    char *frames = malloc(N * 32), text[32];
    tconn *c = probe_open(port, "burst", NULL, NULL);
    size_t n = 0;
    int i;
    (void)state;

    assert_non_null(frames);
    for (i = 0; i < N; i++) {
        int len = snprintf(text, sizeof(text), "m%d", i);
        n += ws_encode_frame(frames + n, 0x81, 1, text, (size_t)len);
    }
    assert_int_equal(tconn_send(c, frames, n), 0);
    for (i = 0; i < N; i++) {
        char expected[40];
        snprintf(expected, sizeof(expected), "echo:m%d", i);
        ws_expect_text(c, expected);
    }
    free(frames);
    tconn_close(c);
}

static void test_frame_sent_in_pieces_is_reassembled(void **state) {
    char frame[300], payload[200];
    tconn *c = probe_open(port, "pieces", NULL, NULL);
    size_t n, cuts[] = {1, 2, 3, 5, 150}, at = 0, i;
    (void)state;

    memset(payload, 'p', sizeof(payload));
    n = ws_encode_frame(frame, 0x81, 1, payload, sizeof(payload));
    /* Separate writes; the server may see them in one read or several, and
     * must reassemble either way. */
    for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        assert_int_equal(tconn_send(c, frame + at, cuts[i] - at), 0);
        at = cuts[i];
    }
    assert_int_equal(tconn_send(c, frame + at, n - at), 0);
    free(ws_expect_text_prefix(c, "echo:pppp"));
    tconn_close(c);
}

static void test_one_mebibyte_messages_round_trip(void **state) {
    tconn *c = probe_open(port, "large", NULL, NULL);
    (void)state;
    text_round_trip(c, MIB);
    binary_round_trip(c, MIB);
    tconn_close(c);
}

static void test_large_fragmented_message_round_trips(void **state) {
    enum { PIECE = 64 * 1024, PIECES = 16 };
    char *piece = malloc(PIECE), *expected = malloc(PIECE * PIECES);
    tconn *c = probe_open(port, "largefrag", NULL, NULL);
    int i;
    (void)state;

    assert_non_null(piece);
    assert_non_null(expected);
    for (i = 0; i < PIECES; i++) {
        memset(piece, 'A' + i, PIECE);
        memcpy(expected + (size_t)i * PIECE, piece, PIECE);
        assert_int_equal(
            ws_send_frame(c, i == 0 ? WS_BINARY : WS_CONT, i == PIECES - 1, piece, PIECE), 0);
    }
    ws_expect_binary(c, expected, (size_t)PIECE * PIECES);
    free(piece);
    free(expected);
    tconn_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_echo_at_length_encoding_boundaries),
        cmocka_unit_test(test_binary_echo_at_length_encoding_boundaries_stays_binary),
        cmocka_unit_test(test_binary_that_looks_like_a_command_is_not_a_command),
        cmocka_unit_test(test_non_minimal_length_encoding_is_accepted),
        cmocka_unit_test(test_fragmented_text_split_inside_utf8_sequences_arrives_whole),
        cmocka_unit_test(test_fragmented_binary_message_arrives_whole_as_binary),
        cmocka_unit_test(test_ping_between_fragments_is_answered_before_the_message),
        cmocka_unit_test(test_ping_is_answered_with_pong_with_the_same_payload),
        cmocka_unit_test(test_unsolicited_pong_is_ignored),
        cmocka_unit_test(test_many_frames_in_one_write_are_answered_in_order),
        cmocka_unit_test(test_frame_sent_in_pieces_is_reassembled),
        cmocka_unit_test(test_one_mebibyte_messages_round_trip),
        cmocka_unit_test(test_large_fragmented_message_round_trips),
    };
    return cmocka_run_group_tests_name("ws_frames", tests, group_setup, group_teardown);
}
