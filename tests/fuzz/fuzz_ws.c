/* fuzz_ws: the frame reader must give the same events however its input is
 * split into reads. The first two bytes are configuration (mask requirement,
 * message limit, split pattern); the rest is the stream, fed to one reader
 * whole, to another in pieces of pseudo-random sizes (cut anywhere, also
 * inside a header or its mask key), and to a third one byte per read (every
 * cut at once), comparing hashed event sequences. Each read is a fresh
 * allocation freed right after, so a reader that kept a pointer into an
 * earlier read is caught by ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "utf8.h"
#include "ws.h"

typedef struct trace {
    uint64_t hash;
    size_t events;
    int first_code; /* the first non-zero feed result */
} trace;

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t hash_int(uint64_t h, int64_t v) {
    return hash_bytes(h, &v, sizeof(v));
}

static int event_cb(void *arg, const party__ws_event *ev) {
    trace *t = arg;
    if (ev->data.ptr == NULL)
        abort();
    switch (ev->type) {
    case PARTY__WS_EV_MESSAGE:
        if (!ev->binary && !party__utf8_valid(ev->data.ptr, ev->data.len))
            abort();
        break;
    case PARTY__WS_EV_PING:
    case PARTY__WS_EV_PONG:
        if (ev->data.len > 125)
            abort();
        break;
    case PARTY__WS_EV_CLOSE:
        if (ev->close_code != PARTY__WS_NO_STATUS && !party__ws_close_code_sendable(ev->close_code))
            abort();
        if (!party__utf8_valid(ev->data.ptr, ev->data.len) || ev->data.len > 123)
            abort();
        break;
    case PARTY__WS_EV_ERROR:
        if (ev->close_code != PARTY__WS_PROTOCOL_ERROR &&
            ev->close_code != PARTY__WS_INVALID_DATA && ev->close_code != PARTY__WS_TOO_BIG)
            abort();
        if (ev->error == NULL)
            abort();
        t->hash = hash_bytes(t->hash, ev->error, strlen(ev->error));
        break;
    default:
        abort();
    }
    t->hash = hash_int(t->hash, ev->type);
    t->hash = hash_int(t->hash, ev->binary);
    t->hash = hash_int(t->hash, ev->close_code);
    t->hash = hash_int(t->hash, (int64_t)ev->data.len);
    t->hash = hash_bytes(t->hash, ev->data.ptr, ev->data.len);
    t->events++;
    return 0;
}

static void check_bounds(const party__ws_reader *r) {
    uint64_t frame_max = (r->max_message > 125 ? r->max_message : 125) + 14;
    const party__ws_buffers *b = r->b;
    /* Buffers exist only while something is incomplete, and never empty. */
    if (b == NULL)
        return;
    if (b->partial == NULL && b->msg == NULL)
        abort();
    if (b->partial_cap > frame_max || b->msg_cap > r->max_message)
        abort();
    if (b->partial_len > b->partial_cap || b->msg_len > b->msg_cap)
        abort();
    if (!party__ws_reader_busy(r) || r->failed || r->closed)
        abort();
}

static void feed(party__ws_reader *r, const uint8_t *data, size_t len, trace *t) {
    char *copy = malloc(len ? len : 1);
    int rc;
    if (copy == NULL)
        return;
    memcpy(copy, data, len);
    rc = party__ws_reader_feed(r, copy, len, event_cb, t);
    if (t->first_code == 0)
        t->first_code = rc;
    free(copy);
    check_bounds(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint64_t limits[8] = {0, 1, 16, 125, 126, 1000, 65536, 1 << 20};
    party__ws_reader whole, split, bytes;
    trace a = {UINT64_C(0xcbf29ce484222325), 0, 0}, b = a, c = a;
    uint32_t rng;
    size_t pos, max_chunk;
    int require_mask;
    uint64_t max_message;

    if (size < 2)
        return 0;
    require_mask = data[0] & 1;
    max_message = limits[(data[0] >> 1) & 7];
    /* data[1]: the top 3 bits bound the piece size (1 .. 128 bytes), the
     * rest seeds the sequence of sizes. */
    max_chunk = (size_t)1 << (data[1] >> 5);
    rng = 0x9e3779b9u ^ data[1] ^ ((uint32_t)data[0] << 8);
    data += 2;
    size -= 2;

    party__ws_reader_init(&whole, max_message, require_mask);
    party__ws_reader_init(&split, max_message, require_mask);
    feed(&whole, data, size, &a);
    for (pos = 0; pos < size;) {
        size_t n;
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        n = 1 + rng % max_chunk;
        if (n > size - pos)
            n = size - pos;
        feed(&split, data + pos, n, &b);
        pos += n;
    }
    if (a.hash != b.hash || a.events != b.events || a.first_code != b.first_code)
        abort();
    if (whole.failed != split.failed || whole.closed != split.closed)
        abort();
    /* One byte per read: bounded, so long inputs do not slow every run. */
    if (size <= 4096) {
        party__ws_reader_init(&bytes, max_message, require_mask);
        for (pos = 0; pos < size; pos++)
            feed(&bytes, data + pos, 1, &c);
        if (a.hash != c.hash || a.events != c.events || a.first_code != c.first_code)
            abort();
        if (whole.failed != bytes.failed || whole.closed != bytes.closed)
            abort();
        party__ws_reader_reset(&bytes);
    }
    party__ws_reader_reset(&whole);
    party__ws_reader_reset(&split);
    return 0;
}
