/* Tests for src/ws.c: the opening handshake check and accept value, the
 * incremental frame reader (RFC 6455 edges, every protocol error with its
 * close code, size limits, splitting a stream anywhere) and frame encoding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "ws.h"

static const uint8_t test_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- helpers: building client streams ---- */

typedef struct stream {
    char *data;
    size_t len;
} stream;

static void stream_raw(stream *s, const void *bytes, size_t len) {
    s->data = realloc(s->data, s->len + len + 1);
    assert_non_null(s->data);
    if (len > 0)
        memcpy(s->data + s->len, bytes, len);
    s->len += len;
}

/* Appends a masked client frame, as a browser would send it. */
static void stream_frame(stream *s, int opcode, int fin, const void *payload, size_t len) {
    char header[14];
    size_t header_len = party__ws_header_write(header, opcode, fin, len, test_key);
    size_t start;
    assert_int_equal(header_len, party__ws_header_size(len, 1));
    stream_raw(s, header, header_len);
    start = s->len;
    stream_raw(s, payload, len);
    party__ws_mask(s->data + start, len, test_key, 0);
}

static void stream_text(stream *s, int opcode, int fin, const char *text) {
    stream_frame(s, opcode, fin, text, strlen(text));
}

static void stream_close(stream *s, int code, const void *reason, size_t reason_len) {
    char payload[256];
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    memcpy(payload + 2, reason, reason_len);
    stream_frame(s, PARTY__WS_CLOSE, 1, payload, 2 + reason_len);
}

static void stream_free(stream *s) {
    free(s->data);
    s->data = NULL;
    s->len = 0;
}

/* ---- helpers: recording events ---- */

typedef struct recorded {
    int type;
    int binary;
    int close_code;
    const char *error;
    char *data;
    size_t len;
    const char *ptr; /* where the reader delivered it, for zero-copy checks */
} recorded;

typedef struct recorder {
    recorded ev[512];
    size_t n;
    size_t stop_after; /* return non-zero from this event on; 0: never */
    const party__ws_reader *reader;
    size_t max_partial_cap; /* the largest partial buffer seen during events */
} recorder;

static int record_cb(void *arg, const party__ws_event *event) {
    recorder *rec = arg;
    recorded *e;
    assert_true(rec->n < sizeof(rec->ev) / sizeof(rec->ev[0]));
    e = &rec->ev[rec->n++];
    e->type = event->type;
    e->binary = event->binary;
    e->close_code = event->close_code;
    e->error = event->error;
    e->len = event->data.len;
    e->ptr = event->data.ptr;
    assert_non_null(event->data.ptr);
    e->data = malloc(e->len + 1);
    assert_non_null(e->data);
    memcpy(e->data, event->data.ptr, e->len);
    e->data[e->len] = '\0';
    if (event->type == PARTY__WS_EV_ERROR)
        assert_non_null(event->error);
    return rec->stop_after != 0 && rec->n >= rec->stop_after;
}

static void recorder_free(recorder *rec) {
    size_t i;
    for (i = 0; i < rec->n; i++)
        free(rec->ev[i].data);
    rec->n = 0;
}

static void assert_same_events(const recorder *a, const recorder *b) {
    size_t i;
    assert_int_equal(a->n, b->n);
    for (i = 0; i < a->n; i++) {
        assert_int_equal(a->ev[i].type, b->ev[i].type);
        assert_int_equal(a->ev[i].binary, b->ev[i].binary);
        assert_int_equal(a->ev[i].close_code, b->ev[i].close_code);
        assert_ptr_equal(a->ev[i].error, b->ev[i].error);
        assert_int_equal(a->ev[i].len, b->ev[i].len);
        assert_memory_equal(a->ev[i].data, b->ev[i].data, a->ev[i].len);
    }
}

/* Feeds one piece through a heap copy: the reader writes into its input, and
 * ASan then catches any read past the piece. Returns the feed result. */
static int feed_piece(party__ws_reader *r, const char *bytes, size_t len, recorder *rec) {
    char *copy = malloc(len ? len : 1);
    int rc;
    assert_non_null(copy);
    memcpy(copy, bytes, len);
    rc = party__ws_reader_feed(r, copy, len, record_cb, rec);
    free(copy);
    return rc;
}

/* Feeds a stream split before each of the ascending offsets in cuts. Returns
 * the first non-zero feed result. */
static int feed_split(party__ws_reader *r, const stream *s, const size_t *cuts, size_t n_cuts,
                      recorder *rec) {
    size_t start = 0, i;
    int rc, first = 0;
    for (i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : s->len;
        rc = feed_piece(r, s->data + start, end - start, rec);
        if (first == 0)
            first = rc;
        start = end;
    }
    return first;
}

static int feed_whole(party__ws_reader *r, const stream *s, recorder *rec) {
    return feed_split(r, s, NULL, 0, rec);
}

static int feed_bytewise(party__ws_reader *r, const stream *s, recorder *rec) {
    size_t i;
    int rc, first = 0;
    for (i = 0; i < s->len; i++) {
        rc = feed_piece(r, s->data + i, 1, rec);
        if (first == 0)
            first = rc;
    }
    return first;
}

static void assert_idle(const party__ws_reader *r) {
    assert_false(party__ws_reader_busy(r));
    assert_null(r->b); /* no buffers held at all */
}

/* Feeds the stream to a fresh server reader and expects exactly one ERROR
 * event with this close code (after any events before it). */
static void expect_error(const stream *s, uint64_t max_message, int code) {
    party__ws_reader r;
    recorder rec = {0};
    int rc;
    party__ws_reader_init(&r, max_message, 1);
    rc = feed_whole(&r, s, &rec);
    assert_int_equal(rc, code);
    assert_true(rec.n >= 1);
    assert_int_equal(rec.ev[rec.n - 1].type, PARTY__WS_EV_ERROR);
    assert_int_equal(rec.ev[rec.n - 1].close_code, code);
    assert_true(r.failed);
    assert_idle(&r);
    recorder_free(&rec);
    party__ws_reader_reset(&r);
}

/* ---- handshake ---- */

static void request_add(party__http_request *req, const char *name, const char *value) {
    req->headers[req->n_headers].name = party__slice_make(name, strlen(name));
    req->headers[req->n_headers].value = party__slice_make(value, strlen(value));
    req->n_headers++;
}

static void request_init(party__http_request *req) {
    memset(req, 0, sizeof(*req));
    req->method = party__slice_make("GET", 3);
    req->target = req->path = party__slice_make("/parties/main/room", 18);
    req->version_minor = 1;
    req->upgrade = 1;
    request_add(req, "Host", "localhost");
    request_add(req, "Upgrade", "websocket");
    request_add(req, "Connection", "Upgrade");
    request_add(req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    request_add(req, "Sec-WebSocket-Version", "13");
}

/* Replaces the value of a header already in the request. */
static void request_set(party__http_request *req, const char *name, const char *value) {
    size_t i;
    for (i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].name.ptr, name) == 0)
            req->headers[i].value = party__slice_make(value, strlen(value));
}

static void request_remove(party__http_request *req, const char *name) {
    size_t i;
    for (i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].name.ptr, name) == 0)
            req->headers[i].name = party__slice_make("X-Removed", 9);
}

static void test_handshake_valid_request_is_accepted(void **state) {
    party__http_request req;
    const char *why = "unset";
    (void)state;
    request_init(&req);
    assert_int_equal(party__ws_handshake_check(&req, &why), 0);
    assert_int_equal(party__ws_handshake_check(&req, NULL), 0);
}

static void test_handshake_header_names_and_upgrade_token_are_case_insensitive(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    memset(&req, 0, sizeof(req));
    req.method = party__slice_make("GET", 3);
    req.version_minor = 1;
    req.upgrade = 1;
    request_add(&req, "upgrade", "WebSocket");
    request_add(&req, "SEC-WEBSOCKET-KEY", "AAAAAAAAAAAAAAAAAAAAAA==");
    request_add(&req, "sec-websocket-version", "13");
    assert_int_equal(party__ws_handshake_check(&req, &why), 0);
}

static void test_handshake_upgrade_token_in_a_list_is_accepted(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    request_set(&req, "Upgrade", "h2c, websocket");
    assert_int_equal(party__ws_handshake_check(&req, &why), 0);
}

static void test_handshake_missing_key_is_400(void **state) {
    party__http_request req;
    const char *why = NULL;
    (void)state;
    request_init(&req);
    request_remove(&req, "Sec-WebSocket-Key");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    assert_non_null(why);
}

static void test_handshake_with_two_keys_is_400(void **state) {
    party__http_request req;
    const char *why = NULL;
    (void)state;
    request_init(&req);
    request_add(&req, "sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    assert_non_null(why);
}

static void test_handshake_key_of_wrong_length_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    request_set(&req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"); /* no padding */
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    request_set(&req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZSE="); /* 17 bytes */
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    request_set(&req, "Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA"); /* 18 bytes */
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    request_set(&req, "Sec-WebSocket-Key", "");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_handshake_key_with_non_base64_characters_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    request_set(&req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j!Q==");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    request_set(&req, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ=A=");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_handshake_version_12_is_426(void **state) {
    party__http_request req;
    const char *why = NULL;
    (void)state;
    request_init(&req);
    request_set(&req, "Sec-WebSocket-Version", "12");
    assert_int_equal(party__ws_handshake_check(&req, &why), 426);
    assert_non_null(why);
    request_set(&req, "Sec-WebSocket-Version", "13, 8");
    assert_int_equal(party__ws_handshake_check(&req, &why), 426);
}

static void test_handshake_missing_version_is_426(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    request_remove(&req, "Sec-WebSocket-Version");
    assert_int_equal(party__ws_handshake_check(&req, &why), 426);
}

static void test_handshake_post_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    req.method = party__slice_make("POST", 4);
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    req.method = party__slice_make("get", 3); /* methods are case-sensitive */
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_handshake_http_1_0_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    req.version_minor = 0;
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_handshake_missing_upgrade_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    request_remove(&req, "Upgrade");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
    request_init(&req);
    request_set(&req, "Upgrade", "h2c");
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_handshake_without_connection_upgrade_is_400(void **state) {
    party__http_request req;
    const char *why;
    (void)state;
    request_init(&req);
    req.upgrade = 0;
    assert_int_equal(party__ws_handshake_check(&req, &why), 400);
}

static void test_accept_value_matches_rfc_example(void **state) {
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    (void)state;
    memset(out, 'x', sizeof(out));
    assert_int_equal(party__ws_accept_value(NULL, party__slice_make(key, strlen(key)), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_value_of_oversized_key_is_empty(void **state) {
    char key[200], out[29];
    (void)state;
    memset(key, 'A', sizeof(key));
    assert_int_equal(party__ws_accept_value(NULL, party__slice_make(key, sizeof(key)), out),
                     PARTY_EINVAL);
    assert_string_equal(out, "");
}

static void test_close_code_sendable_ranges(void **state) {
    static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                               1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const int bad[] = {-1,   0,    999,  1004, 1005,  1006, 1015,
                              1016, 2000, 2999, 5000, 65535, 70000};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(party__ws_close_code_sendable(good[i]));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(party__ws_close_code_sendable(bad[i]));
}

/* ---- reading: messages ---- */

static void test_masked_text_frame_is_delivered_in_place(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 1, "Hello");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(party__ws_reader_feed(&r, s.data, s.len, record_cb, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_MESSAGE);
    assert_false(rec.ev[0].binary);
    assert_string_equal(rec.ev[0].data, "Hello");
    /* zero-copy: the event pointed into the input, unmasked in place */
    assert_ptr_equal(rec.ev[0].ptr, s.data + 6);
    assert_memory_equal(s.data + 6, "Hello", 5);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_rfc_example_frames_are_read(void **state) {
    /* RFC 6455 5.7: a masked "Hello", an unmasked one, and a fragmented one */
    char masked[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    char fragmented[] = "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f";
    char ping[] = "\x89\x05\x48\x65\x6c\x6c\x6f";
    party__ws_reader r;
    recorder rec = {0};
    (void)state;
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(party__ws_reader_feed(&r, masked, 11, record_cb, &rec), 0);
    party__ws_reader_init(&r, 1 << 20, 0);
    assert_int_equal(party__ws_reader_feed(&r, fragmented, 9, record_cb, &rec), 0);
    assert_int_equal(party__ws_reader_feed(&r, ping, 7, record_cb, &rec), 0);
    assert_int_equal(rec.n, 3);
    assert_string_equal(rec.ev[0].data, "Hello");
    assert_string_equal(rec.ev[1].data, "Hello");
    assert_int_equal(rec.ev[2].type, PARTY__WS_EV_PING);
    assert_string_equal(rec.ev[2].data, "Hello");
    assert_idle(&r);
    recorder_free(&rec);
}

static void test_payload_lengths_round_trip(void **state) {
    static const size_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
    static const size_t header_sizes[] = {6, 6, 6, 8, 8, 8, 14, 14};
    size_t i, j;
    (void)state;
    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        party__ws_reader r;
        recorder rec = {0};
        stream s = {0};
        char *payload = malloc(lengths[i] + 1);
        assert_non_null(payload);
        for (j = 0; j < lengths[i]; j++)
            payload[j] = (char)(j * 7 + i);
        assert_int_equal(party__ws_header_size(lengths[i], 1), header_sizes[i]);
        assert_int_equal(party__ws_header_size(lengths[i], 0), header_sizes[i] - 4);
        stream_frame(&s, PARTY__WS_BINARY, 1, payload, lengths[i]);
        assert_int_equal(s.len, header_sizes[i] + lengths[i]);
        party__ws_reader_init(&r, 1 << 20, 1);
        assert_int_equal(feed_whole(&r, &s, &rec), 0);
        assert_int_equal(rec.n, 1);
        assert_int_equal(rec.ev[0].type, PARTY__WS_EV_MESSAGE);
        assert_true(rec.ev[0].binary);
        assert_int_equal(rec.ev[0].len, lengths[i]);
        assert_memory_equal(rec.ev[0].data, payload, lengths[i]);
        assert_idle(&r);
        recorder_free(&rec);
        stream_free(&s);
        free(payload);
    }
}

static void test_non_minimal_length_encodings_are_accepted(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    /* "hi" with a 16-bit length of 2, then with a 64-bit length of 2 */
    char frames[] = "\x82\x7e\x00\x02hi"
                    "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x02hi";
    (void)state;
    party__ws_reader_init(&r, 1 << 20, 0);
    assert_int_equal(party__ws_reader_feed(&r, frames, sizeof(frames) - 1, record_cb, &rec), 0);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ev[0].data, "hi");
    assert_string_equal(rec.ev[1].data, "hi");
    recorder_free(&rec);
}

static void test_unmasked_frames_are_accepted_when_mask_not_required(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    party__buf *frame = party__ws_frame_new(NULL, PARTY__WS_TEXT, "server says", 11);
    (void)state;
    assert_non_null(frame);
    party__ws_reader_init(&r, 1 << 20, 0);
    assert_int_equal(party__ws_reader_feed(&r, frame->data, frame->len, record_cb, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ev[0].data, "server says");
    recorder_free(&rec);
    party__buf_release(frame);
}

static void test_binary_message_is_not_utf8_checked(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_frame(&s, PARTY__WS_BINARY, 1, "\xff\xfe\x00", 3);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_true(rec.ev[0].binary);
    assert_memory_equal(rec.ev[0].data, "\xff\xfe\x00", 3);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_fragmented_binary_message_is_assembled(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_frame(&s, PARTY__WS_BINARY, 0, "\x01\x02", 2);
    stream_frame(&s, PARTY__WS_CONT, 0, "", 0);
    stream_frame(&s, PARTY__WS_CONT, 1, "\x03", 1);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_true(rec.ev[0].binary);
    assert_int_equal(rec.ev[0].len, 3);
    assert_memory_equal(rec.ev[0].data, "\x01\x02\x03", 3);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_empty_fragments_make_an_empty_message(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "");
    stream_text(&s, PARTY__WS_CONT, 1, "");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_MESSAGE);
    assert_int_equal(rec.ev[0].len, 0);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_text_fragmented_inside_utf8_sequence_is_valid(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    /* U+1F600 split 1 + 2 + 1 bytes over three frames */
    stream_text(&s, PARTY__WS_TEXT, 0, "smile \xf0");
    stream_text(&s, PARTY__WS_CONT, 0, "\x9f\x98");
    stream_text(&s, PARTY__WS_CONT, 1, "\x80!");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_MESSAGE);
    assert_string_equal(rec.ev[0].data, "smile \xf0\x9f\x98\x80!");
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_text_fragmented_inside_invalid_utf8_sequence_is_1007(void **state) {
    stream s = {0};
    (void)state;
    /* ED A0 80 is a surrogate, split across fragments */
    stream_text(&s, PARTY__WS_TEXT, 0, "ab\xed");
    stream_text(&s, PARTY__WS_CONT, 1, "\xa0\x80");
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
}

static void test_invalid_utf8_fails_at_the_fragment_not_the_message_end(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    /* The final fragment never comes: the bad first one is enough. */
    stream_text(&s, PARTY__WS_TEXT, 0, "ok \xc0\xaf");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), PARTY__WS_INVALID_DATA);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_ERROR);
    assert_int_equal(rec.ev[0].close_code, PARTY__WS_INVALID_DATA);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_text_message_ending_inside_utf8_sequence_is_1007(void **state) {
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "ab\xe2\x82");
    stream_text(&s, PARTY__WS_CONT, 1, "");
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
}

static void test_unfragmented_invalid_utf8_text_is_1007(void **state) {
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 1, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80");
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
    stream_text(&s, PARTY__WS_TEXT, 1, "cut \xe2\x82");
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
}

/* ---- reading: control frames ---- */

static void test_ping_between_fragments_is_delivered_before_the_message(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "frag");
    stream_text(&s, PARTY__WS_PING, 1, "ping!");
    stream_text(&s, PARTY__WS_CONT, 0, "men");
    stream_text(&s, PARTY__WS_PONG, 1, "");
    stream_text(&s, PARTY__WS_CONT, 1, "ted");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_PING);
    assert_string_equal(rec.ev[0].data, "ping!");
    assert_int_equal(rec.ev[1].type, PARTY__WS_EV_PONG);
    assert_int_equal(rec.ev[1].len, 0);
    assert_int_equal(rec.ev[2].type, PARTY__WS_EV_MESSAGE);
    assert_string_equal(rec.ev[2].data, "fragmented");
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_control_frame_of_125_bytes_is_accepted(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[125];
    (void)state;
    memset(payload, 'p', sizeof(payload));
    stream_frame(&s, PARTY__WS_PING, 1, payload, sizeof(payload));
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_PING);
    assert_int_equal(rec.ev[0].len, 125);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_close_with_code_and_reason_is_reported(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_close(&s, 4001, "bye \xe2\x82\xac", 7);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
    assert_int_equal(rec.ev[0].close_code, 4001);
    assert_string_equal(rec.ev[0].data, "bye \xe2\x82\xac");
    assert_true(r.closed);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_close_without_payload_reports_1005(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_frame(&s, PARTY__WS_CLOSE, 1, "", 0);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
    assert_int_equal(rec.ev[0].close_code, PARTY__WS_NO_STATUS);
    assert_int_equal(rec.ev[0].len, 0);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_close_with_valid_codes_is_reported(void **state) {
    static const int codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                1010, 1011, 1012, 1013, 1014, 3000, 4999};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        party__ws_reader r;
        recorder rec = {0};
        stream s = {0};
        stream_close(&s, codes[i], "", 0);
        party__ws_reader_init(&r, 1 << 20, 1);
        assert_int_equal(feed_whole(&r, &s, &rec), 0);
        assert_int_equal(rec.n, 1);
        assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
        assert_int_equal(rec.ev[0].close_code, codes[i]);
        recorder_free(&rec);
        stream_free(&s);
    }
}

static void test_close_with_invalid_codes_is_1002(void **state) {
    static const int codes[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        stream s = {0};
        stream_close(&s, codes[i], "", 0);
        expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
        stream_free(&s);
    }
}

static void test_close_with_one_byte_payload_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_frame(&s, PARTY__WS_CLOSE, 1, "\x03", 1);
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_close_reason_with_invalid_utf8_is_1007(void **state) {
    stream s = {0};
    (void)state;
    stream_close(&s, 1000, "bad \xff", 5);
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
    stream_close(&s, 1000, "cut \xe2\x82", 6);
    expect_error(&s, 1 << 20, PARTY__WS_INVALID_DATA);
    stream_free(&s);
}

static void test_input_after_close_is_ignored(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_close(&s, 1000, "", 0);
    stream_text(&s, PARTY__WS_TEXT, 1, "after");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_close_inside_a_fragmented_message_frees_it(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "unfinished");
    stream_close(&s, 1001, "going", 5);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

/* ---- reading: protocol errors ---- */

static void test_reserved_bits_are_1002(void **state) {
    static const unsigned char rsv[] = {0x40, 0x20, 0x10};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(rsv); i++) {
        stream s = {0};
        stream_text(&s, PARTY__WS_TEXT, 1, "x");
        s.data[0] |= (char)rsv[i];
        expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
        stream_free(&s);
    }
}

static void test_unknown_opcodes_are_1002(void **state) {
    static const int opcodes[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(opcodes) / sizeof(opcodes[0]); i++) {
        stream s = {0};
        stream_text(&s, opcodes[i], 1, "x");
        expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
        stream_free(&s);
    }
}

static void test_unmasked_client_frame_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_raw(&s, "\x81\x02hi", 4);
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_control_frame_over_125_bytes_is_1002(void **state) {
    char payload[126];
    stream s = {0};
    (void)state;
    memset(payload, 'p', sizeof(payload));
    stream_frame(&s, PARTY__WS_PING, 1, payload, sizeof(payload));
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
    /* the 16-bit form announcing 126 */
    stream_raw(&s, "\x8a\xfe\x00\x7e", 4);
    stream_raw(&s, test_key, 4);
    stream_raw(&s, payload, 126);
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_control_frame_with_non_minimal_length_is_accepted(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    /* an unmasked pong of 5 bytes with its length in the 16-bit form */
    char frame[] = "\x8a\x7e\x00\x05hello";
    (void)state;
    party__ws_reader_init(&r, 1 << 20, 0);
    assert_int_equal(party__ws_reader_feed(&r, frame, sizeof(frame) - 1, record_cb, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_PONG);
    assert_string_equal(rec.ev[0].data, "hello");
    recorder_free(&rec);
}

static void test_fragmented_control_frame_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_PING, 0, "x");
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_continuation_without_a_message_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_CONT, 1, "x");
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
    /* also right after a message completed */
    stream_text(&s, PARTY__WS_TEXT, 0, "a");
    stream_text(&s, PARTY__WS_CONT, 1, "b");
    stream_text(&s, PARTY__WS_CONT, 1, "c");
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_new_message_inside_a_fragmented_one_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "a");
    stream_text(&s, PARTY__WS_TEXT, 1, "b");
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
    stream_text(&s, PARTY__WS_BINARY, 0, "a");
    stream_text(&s, PARTY__WS_BINARY, 0, "b");
    expect_error(&s, 1 << 20, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_64bit_length_with_high_bit_is_1002(void **state) {
    stream s = {0};
    (void)state;
    stream_raw(&s, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01", 10);
    stream_raw(&s, test_key, 4);
    expect_error(&s, UINT64_MAX, PARTY__WS_PROTOCOL_ERROR);
    stream_free(&s);
}

static void test_input_after_error_is_ignored(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0}, more = {0};
    (void)state;
    stream_raw(&s, "\x81\x02hi", 4); /* unmasked: error */
    stream_text(&more, PARTY__WS_TEXT, 1, "valid");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), PARTY__WS_PROTOCOL_ERROR);
    assert_int_equal(feed_whole(&r, &more, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_ERROR);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
    stream_free(&more);
}

static void test_error_mid_stream_keeps_earlier_events(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 1, "first");
    stream_text(&s, 0x3, 1, "bad");
    stream_text(&s, PARTY__WS_TEXT, 1, "never");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), PARTY__WS_PROTOCOL_ERROR);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ev[0].data, "first");
    assert_int_equal(rec.ev[1].type, PARTY__WS_EV_ERROR);
    recorder_free(&rec);
    stream_free(&s);
}

/* ---- reading: size limits and buffers ---- */

static void test_oversize_frame_is_1009_from_the_header_alone(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[100];
    (void)state;
    /* The header announces 1 TiB; only the header and a little payload come. */
    stream_raw(&s, "\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00", 10);
    stream_raw(&s, test_key, 4);
    memset(payload, 'x', sizeof(payload));
    stream_raw(&s, payload, sizeof(payload));
    party__ws_reader_init(&r, 1000, 1);
    assert_int_equal(feed_piece(&r, s.data, 14, &rec), PARTY__WS_TOO_BIG);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_ERROR);
    assert_int_equal(rec.ev[0].close_code, PARTY__WS_TOO_BIG);
    assert_true(r.b == NULL || r.b->partial == NULL);
    assert_int_equal(feed_piece(&r, s.data + 14, 100, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_oversize_frame_split_in_header_is_1009_without_buffering_payload(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[1001];
    (void)state;
    memset(payload, 'x', sizeof(payload));
    stream_frame(&s, PARTY__WS_BINARY, 1, payload, sizeof(payload));
    party__ws_reader_init(&r, 1000, 1);
    assert_int_equal(feed_piece(&r, s.data, 3, &rec), 0);
    assert_non_null(r.b);
    assert_non_null(r.b->partial);
    assert_true(r.b->partial_cap <= 14);
    assert_int_equal(feed_piece(&r, s.data + 3, s.len - 3, &rec), PARTY__WS_TOO_BIG);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].close_code, PARTY__WS_TOO_BIG);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_message_at_the_limit_is_accepted_one_over_is_1009(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[1001];
    (void)state;
    memset(payload, 'x', sizeof(payload));
    stream_frame(&s, PARTY__WS_TEXT, 1, payload, 1000);
    party__ws_reader_init(&r, 1000, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].len, 1000);
    recorder_free(&rec);
    stream_free(&s);
    stream_frame(&s, PARTY__WS_TEXT, 1, payload, 1001);
    expect_error(&s, 1000, PARTY__WS_TOO_BIG);
    stream_free(&s);
}

static void test_oversize_fragmented_message_is_1009_at_the_fragment_header(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[600];
    (void)state;
    memset(payload, 'x', sizeof(payload));
    stream_frame(&s, PARTY__WS_BINARY, 0, payload, 600);
    stream_frame(&s, PARTY__WS_CONT, 0, payload, 400); /* exactly 1000 */
    stream_frame(&s, PARTY__WS_CONT, 1, payload, 1);   /* one over */
    party__ws_reader_init(&r, 1000, 1);
    /* feed up to the last header only: the error needs no payload */
    assert_int_equal(feed_piece(&r, s.data, s.len - 1, &rec), PARTY__WS_TOO_BIG);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].close_code, PARTY__WS_TOO_BIG);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_control_frames_do_not_count_towards_the_message_limit(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    char payload[100];
    (void)state;
    memset(payload, 'x', sizeof(payload));
    stream_frame(&s, PARTY__WS_TEXT, 0, payload, 10);
    stream_frame(&s, PARTY__WS_PING, 1, payload, 100);
    stream_frame(&s, PARTY__WS_CONT, 1, payload, 10);
    party__ws_reader_init(&r, 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.ev[1].len, 20);
    recorder_free(&rec);
    stream_free(&s);
}

static int check_partial_bound_cb(void *arg, const party__ws_event *event) {
    recorder *rec = arg;
    if (rec->reader->b != NULL && rec->reader->b->partial_cap > rec->max_partial_cap)
        rec->max_partial_cap = rec->reader->b->partial_cap;
    return record_cb(arg, event);
}

static void test_partial_frame_buffer_is_bounded_by_the_frame(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    size_t len = 100000, pos, chunk = 999;
    char *payload = calloc(1, len);
    (void)state;
    assert_non_null(payload);
    stream_frame(&s, PARTY__WS_BINARY, 1, payload, len);
    party__ws_reader_init(&r, 1 << 20, 1);
    rec.reader = &r;
    for (pos = 0; pos < s.len; pos += chunk) {
        size_t n = s.len - pos < chunk ? s.len - pos : chunk;
        char *copy = malloc(n);
        assert_non_null(copy);
        memcpy(copy, s.data + pos, n);
        assert_int_equal(party__ws_reader_feed(&r, copy, n, check_partial_bound_cb, &rec), 0);
        free(copy);
        assert_true(r.b == NULL || r.b->partial_cap <= s.len);
        if (pos + n < s.len)
            assert_true(party__ws_reader_busy(&r));
    }
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].len, len);
    assert_true(rec.max_partial_cap <= len + 14);
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
    free(payload);
}

static void test_no_buffers_owned_after_complete_messages(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    size_t i;
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "part one, ");
    stream_text(&s, PARTY__WS_PING, 1, "");
    stream_text(&s, PARTY__WS_CONT, 1, "part two");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_idle(&r);
    for (i = 0; i < s.len; i++) {
        assert_int_equal(feed_piece(&r, s.data + i, 1, &rec), 0);
        if (i + 1 < s.len)
            assert_true(party__ws_reader_busy(&r));
    }
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.ev[1].data, "part one, part two");
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

static void test_reset_frees_a_partial_frame_and_message(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 0, "first part");
    stream_text(&s, PARTY__WS_CONT, 1, "second part");
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_piece(&r, s.data, s.len - 3, &rec), 0);
    assert_non_null(r.b);
    assert_non_null(r.b->partial);
    assert_non_null(r.b->msg);
    party__ws_reader_reset(&r);
    assert_idle(&r);
    assert_int_equal(rec.n, 0);
    stream_free(&s);
}

static void test_callback_stop_drops_the_rest_of_the_input(void **state) {
    party__ws_reader r;
    recorder rec = {0};
    stream s = {0};
    (void)state;
    stream_text(&s, PARTY__WS_TEXT, 1, "one");
    stream_text(&s, PARTY__WS_TEXT, 1, "two");
    stream_text(&s, PARTY__WS_TEXT, 1, "thr");
    rec.stop_after = 1;
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_string_equal(rec.ev[0].data, "one");
    assert_idle(&r);
    recorder_free(&rec);
    stream_free(&s);
}

/* A stream touching every reader path: fragments with control frames between
 * them, every length form, a frame at the control limit, and a close. */
static void build_mixed_stream(stream *s) {
    static char big[70000];
    size_t i;
    for (i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    stream_text(s, PARTY__WS_TEXT, 1, "hello");
    stream_text(s, PARTY__WS_TEXT, 0, "caf\xc3");
    stream_text(s, PARTY__WS_PING, 1, "p");
    stream_text(s, PARTY__WS_CONT, 0, "\xa9 \xf0\x9f");
    stream_frame(s, PARTY__WS_PONG, 1, big, 125);
    stream_text(s, PARTY__WS_CONT, 1, "\x98\x80");
    stream_frame(s, PARTY__WS_BINARY, 1, big, 300);
    stream_frame(s, PARTY__WS_BINARY, 1, big, 0);
    stream_frame(s, PARTY__WS_BINARY, 0, big, 200);
    stream_frame(s, PARTY__WS_CONT, 1, big, 70000);
    stream_close(s, 1000, "done", 4);
}

static void test_stream_split_anywhere_gives_identical_events(void **state) {
    party__ws_reader r;
    recorder whole = {0}, split = {0};
    stream s = {0};
    size_t cut;
    (void)state;
    build_mixed_stream(&s);
    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_whole(&r, &s, &whole), 0);
    assert_int_equal(whole.n, 8);
    assert_int_equal(whole.ev[7].type, PARTY__WS_EV_CLOSE);
    assert_idle(&r);

    party__ws_reader_init(&r, 1 << 20, 1);
    assert_int_equal(feed_bytewise(&r, &s, &split), 0);
    assert_same_events(&whole, &split);
    assert_idle(&r);
    recorder_free(&split);

    /* every two-piece split of the part before the big frame, and a sample
     * of the rest (each split re-feeds the whole stream) */
    for (cut = 0; cut <= s.len; cut += cut < 800 ? 1 : 997) {
        party__ws_reader_init(&r, 1 << 20, 1);
        assert_int_equal(feed_split(&r, &s, &cut, 1, &split), 0);
        assert_same_events(&whole, &split);
        assert_idle(&r);
        recorder_free(&split);
    }
    {
        size_t cuts[3] = {7, 8, s.len - 5};
        party__ws_reader_init(&r, 1 << 20, 1);
        assert_int_equal(feed_split(&r, &s, cuts, 3, &split), 0);
        assert_same_events(&whole, &split);
        recorder_free(&split);
    }
    recorder_free(&whole);
    stream_free(&s);
}

static void test_errors_are_identical_at_every_split_point(void **state) {
    stream streams[4] = {{0}};
    size_t i, cut;
    (void)state;
    stream_text(&streams[0], PARTY__WS_TEXT, 0, "ab\xe2");
    stream_text(&streams[0], PARTY__WS_CONT, 1, "\x82\xff");
    stream_raw(&streams[1], "\xc1\x02", 2); /* RSV1 and unmasked: RSV wins */
    stream_text(&streams[2], PARTY__WS_TEXT, 1, "ok");
    stream_raw(&streams[2], "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00", 10); /* 64 KiB */
    stream_raw(&streams[2], test_key, 4);
    stream_close(&streams[3], 1000, "\xc3", 1);
    for (i = 0; i < 4; i++) {
        party__ws_reader r;
        recorder whole = {0}, split = {0};
        int code;
        party__ws_reader_init(&r, 1000, 1);
        code = feed_whole(&r, &streams[i], &whole);
        assert_true(code >= 1000);
        for (cut = 0; cut <= streams[i].len; cut++) {
            party__ws_reader_init(&r, 1000, 1);
            assert_int_equal(feed_split(&r, &streams[i], &cut, 1, &split), code);
            assert_same_events(&whole, &split);
            assert_idle(&r);
            recorder_free(&split);
        }
        party__ws_reader_init(&r, 1000, 1);
        assert_int_equal(feed_bytewise(&r, &streams[i], &split), code);
        assert_same_events(&whole, &split);
        recorder_free(&split);
        recorder_free(&whole);
        stream_free(&streams[i]);
    }
}

/* ---- writing ---- */

static void test_mask_in_pieces_equals_mask_whole(void **state) {
    char whole[37], pieces[37];
    size_t i, cut;
    (void)state;
    for (i = 0; i < sizeof(whole); i++)
        whole[i] = (char)i;
    party__ws_mask(whole, sizeof(whole), test_key, 0);
    for (i = 0; i < sizeof(whole); i++)
        assert_int_equal((unsigned char)whole[i], i ^ test_key[i % 4]);
    for (cut = 0; cut <= sizeof(pieces); cut++) {
        for (i = 0; i < sizeof(pieces); i++)
            pieces[i] = (char)i;
        party__ws_mask(pieces, cut, test_key, 0);
        party__ws_mask(pieces + cut, sizeof(pieces) - cut, test_key, cut);
        assert_memory_equal(pieces, whole, sizeof(whole));
    }
}

static void test_frame_new_encodes_each_length_form(void **state) {
    static char payload[70000];
    party__buf *b;
    (void)state;
    b = party__ws_frame_new(NULL, PARTY__WS_TEXT, "", 0);
    assert_non_null(b);
    assert_int_equal(b->len, 2);
    assert_memory_equal(b->data, "\x81\x00", 2);
    party__buf_release(b);

    b = party__ws_frame_new(NULL, PARTY__WS_BINARY, payload, 125);
    assert_int_equal(b->len, 127);
    assert_memory_equal(b->data, "\x82\x7d", 2);
    party__buf_release(b);

    b = party__ws_frame_new(NULL, PARTY__WS_BINARY, payload, 126);
    assert_int_equal(b->len, 130);
    assert_memory_equal(b->data, "\x82\x7e\x00\x7e", 4);
    party__buf_release(b);

    b = party__ws_frame_new(NULL, PARTY__WS_BINARY, payload, 65535);
    assert_int_equal(b->len, 65539);
    assert_memory_equal(b->data, "\x82\x7e\xff\xff", 4);
    party__buf_release(b);

    b = party__ws_frame_new(NULL, PARTY__WS_PONG, payload, 65536);
    assert_int_equal(b->len, 65546);
    assert_memory_equal(b->data, "\x8a\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    party__buf_release(b);
}

static void test_header_write_sets_fin_and_mask_key(void **state) {
    char out[14];
    (void)state;
    assert_int_equal(party__ws_header_write(out, PARTY__WS_CONT, 0, 5, test_key), 6);
    assert_memory_equal(out, "\x00\x85\x37\xfa\x21\x3d", 6);
    assert_int_equal(party__ws_header_write(out, PARTY__WS_TEXT, 1, 1ull << 40, NULL), 10);
    assert_memory_equal(out, "\x81\x7f\x00\x00\x01\x00\x00\x00\x00\x00", 10);
}

static void test_close_frame_without_code_is_empty(void **state) {
    party__buf *b = party__ws_close_frame_new(0, "ignored", 7);
    (void)state;
    assert_non_null(b);
    assert_int_equal(b->len, 2);
    assert_memory_equal(b->data, "\x88\x00", 2);
    party__buf_release(b);
}

static void test_close_frame_carries_code_and_reason(void **state) {
    party__buf *b = party__ws_close_frame_new(1001, "bye", 3);
    (void)state;
    assert_non_null(b);
    assert_int_equal(b->len, 7);
    assert_memory_equal(b->data,
                        "\x88\x05\x03\xe9"
                        "bye",
                        7);
    party__buf_release(b);
    b = party__ws_close_frame_new(1000, NULL, 0);
    assert_int_equal(b->len, 4);
    assert_memory_equal(b->data, "\x88\x02\x03\xe8", 4);
    party__buf_release(b);
}

/* Encodes a close with this reason, reads it back with a client reader and
 * returns the reason length the peer sees. */
static size_t close_reason_round_trip(const char *reason, size_t len) {
    party__ws_reader r;
    recorder rec = {0};
    party__buf *b = party__ws_close_frame_new(4000, reason, len);
    size_t seen;
    assert_non_null(b);
    assert_true(b->len <= 2 + 125);
    party__ws_reader_init(&r, 1 << 20, 0);
    assert_int_equal(party__ws_reader_feed(&r, b->data, b->len, record_cb, &rec), 0);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.ev[0].type, PARTY__WS_EV_CLOSE);
    assert_int_equal(rec.ev[0].close_code, 4000);
    assert_memory_equal(rec.ev[0].data, reason, rec.ev[0].len);
    seen = rec.ev[0].len;
    recorder_free(&rec);
    party__buf_release(b);
    return seen;
}

static void test_close_reason_is_cut_to_123_bytes_at_a_utf8_boundary(void **state) {
    char reason[200];
    (void)state;
    memset(reason, 'a', sizeof(reason));
    assert_int_equal(close_reason_round_trip(reason, 123), 123);
    assert_int_equal(close_reason_round_trip(reason, 200), 123);
    /* a 2-byte character at bytes 122-123 straddles the limit */
    memcpy(reason + 122, "\xc3\xa9", 2);
    assert_int_equal(close_reason_round_trip(reason, 150), 122);
    /* a 2-byte character ending exactly at the limit is kept */
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 121, "\xc3\xa9", 2);
    assert_int_equal(close_reason_round_trip(reason, 150), 123);
    /* 3- and 4-byte characters cut after their first, second or third byte */
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 121, "\xe2\x82\xac", 3);
    assert_int_equal(close_reason_round_trip(reason, 150), 121);
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 120, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(close_reason_round_trip(reason, 150), 120);
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 122, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(close_reason_round_trip(reason, 150), 122);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_valid_request_is_accepted),
        cmocka_unit_test(test_handshake_header_names_and_upgrade_token_are_case_insensitive),
        cmocka_unit_test(test_handshake_upgrade_token_in_a_list_is_accepted),
        cmocka_unit_test(test_handshake_missing_key_is_400),
        cmocka_unit_test(test_handshake_with_two_keys_is_400),
        cmocka_unit_test(test_handshake_key_of_wrong_length_is_400),
        cmocka_unit_test(test_handshake_key_with_non_base64_characters_is_400),
        cmocka_unit_test(test_handshake_version_12_is_426),
        cmocka_unit_test(test_handshake_missing_version_is_426),
        cmocka_unit_test(test_handshake_post_is_400),
        cmocka_unit_test(test_handshake_http_1_0_is_400),
        cmocka_unit_test(test_handshake_missing_upgrade_is_400),
        cmocka_unit_test(test_handshake_without_connection_upgrade_is_400),
        cmocka_unit_test(test_accept_value_matches_rfc_example),
        cmocka_unit_test(test_accept_value_of_oversized_key_is_empty),
        cmocka_unit_test(test_close_code_sendable_ranges),
        cmocka_unit_test(test_masked_text_frame_is_delivered_in_place),
        cmocka_unit_test(test_rfc_example_frames_are_read),
        cmocka_unit_test(test_payload_lengths_round_trip),
        cmocka_unit_test(test_non_minimal_length_encodings_are_accepted),
        cmocka_unit_test(test_unmasked_frames_are_accepted_when_mask_not_required),
        cmocka_unit_test(test_binary_message_is_not_utf8_checked),
        cmocka_unit_test(test_fragmented_binary_message_is_assembled),
        cmocka_unit_test(test_empty_fragments_make_an_empty_message),
        cmocka_unit_test(test_text_fragmented_inside_utf8_sequence_is_valid),
        cmocka_unit_test(test_text_fragmented_inside_invalid_utf8_sequence_is_1007),
        cmocka_unit_test(test_invalid_utf8_fails_at_the_fragment_not_the_message_end),
        cmocka_unit_test(test_text_message_ending_inside_utf8_sequence_is_1007),
        cmocka_unit_test(test_unfragmented_invalid_utf8_text_is_1007),
        cmocka_unit_test(test_ping_between_fragments_is_delivered_before_the_message),
        cmocka_unit_test(test_control_frame_of_125_bytes_is_accepted),
        cmocka_unit_test(test_close_with_code_and_reason_is_reported),
        cmocka_unit_test(test_close_without_payload_reports_1005),
        cmocka_unit_test(test_close_with_valid_codes_is_reported),
        cmocka_unit_test(test_close_with_invalid_codes_is_1002),
        cmocka_unit_test(test_close_with_one_byte_payload_is_1002),
        cmocka_unit_test(test_close_reason_with_invalid_utf8_is_1007),
        cmocka_unit_test(test_input_after_close_is_ignored),
        cmocka_unit_test(test_close_inside_a_fragmented_message_frees_it),
        cmocka_unit_test(test_reserved_bits_are_1002),
        cmocka_unit_test(test_unknown_opcodes_are_1002),
        cmocka_unit_test(test_unmasked_client_frame_is_1002),
        cmocka_unit_test(test_control_frame_over_125_bytes_is_1002),
        cmocka_unit_test(test_control_frame_with_non_minimal_length_is_accepted),
        cmocka_unit_test(test_fragmented_control_frame_is_1002),
        cmocka_unit_test(test_continuation_without_a_message_is_1002),
        cmocka_unit_test(test_new_message_inside_a_fragmented_one_is_1002),
        cmocka_unit_test(test_64bit_length_with_high_bit_is_1002),
        cmocka_unit_test(test_input_after_error_is_ignored),
        cmocka_unit_test(test_error_mid_stream_keeps_earlier_events),
        cmocka_unit_test(test_oversize_frame_is_1009_from_the_header_alone),
        cmocka_unit_test(test_oversize_frame_split_in_header_is_1009_without_buffering_payload),
        cmocka_unit_test(test_message_at_the_limit_is_accepted_one_over_is_1009),
        cmocka_unit_test(test_oversize_fragmented_message_is_1009_at_the_fragment_header),
        cmocka_unit_test(test_control_frames_do_not_count_towards_the_message_limit),
        cmocka_unit_test(test_partial_frame_buffer_is_bounded_by_the_frame),
        cmocka_unit_test(test_no_buffers_owned_after_complete_messages),
        cmocka_unit_test(test_reset_frees_a_partial_frame_and_message),
        cmocka_unit_test(test_callback_stop_drops_the_rest_of_the_input),
        cmocka_unit_test(test_stream_split_anywhere_gives_identical_events),
        cmocka_unit_test(test_errors_are_identical_at_every_split_point),
        cmocka_unit_test(test_mask_in_pieces_equals_mask_whole),
        cmocka_unit_test(test_frame_new_encodes_each_length_form),
        cmocka_unit_test(test_header_write_sets_fin_and_mask_key),
        cmocka_unit_test(test_close_frame_without_code_is_empty),
        cmocka_unit_test(test_close_frame_carries_code_and_reason),
        cmocka_unit_test(test_close_reason_is_cut_to_123_bytes_at_a_utf8_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
