/* conn_record: encoding and decoding of the versioned connection record an
 * upgrade hands over (conn_record.h). Big-endian integers; each field is
 * a type byte, a u32 length and its bytes, so a newer build can add
 * fields an older decoder skips, while a change of meaning bumps the
 * version. */
#include "conn_record.h"

#include <string.h>

#include "party.h"

static const char magic[4] = {'P', 'C', 'R', '\0'};

/* Field types. Numbers are never reused. */
enum {
    F_FLAGS = 1,
    F_PEER = 2,
    F_ID = 3,
    F_URI = 4,
    F_PARTY = 5,
    F_ROOM_ID = 6,
    F_ROOM_NAME = 7,
    F_TAG = 8,
    F_STATE = 9,
    F_OUTPUT = 10,
    F_INPUT = 11,
    F_MSG = 12, /* opcode u8, utf8 state u32, then the fragments */
};

#define FIELD_HEAD 5

static void put_u16(char *p, uint16_t v) {
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static void put_u32(char *p, uint32_t v) {
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint16_t get_u16(const char *p) {
    return (uint16_t)(((unsigned)(uint8_t)p[0] << 8) | (uint8_t)p[1]);
}

static uint32_t get_u32(const char *p) {
    return ((uint32_t)(uint8_t)p[0] << 24) | ((uint32_t)(uint8_t)p[1] << 16) |
           ((uint32_t)(uint8_t)p[2] << 8) | (uint8_t)p[3];
}

static size_t peer_len(const party__conn_record *rec) {
    return rec->peer_family == 4 ? 4 : rec->peer_family == 6 ? 16 : 0;
}

/* The writer: counts when out is NULL, fails (sets bad) past cap. */
typedef struct writer {
    char *out;
    size_t cap, len;
    int bad;
} writer;

static void put_field(writer *w, int type, const void *a, size_t alen, const void *b, size_t blen) {
    size_t n = alen + blen;
    if (n > UINT32_MAX) {
        w->bad = 1;
        return;
    }
    if (w->out != NULL) {
        if (w->len + FIELD_HEAD + n > w->cap) {
            w->bad = 1;
            return;
        }
        w->out[w->len] = (char)type;
        put_u32(w->out + w->len + 1, (uint32_t)n);
        if (alen > 0)
            memcpy(w->out + w->len + FIELD_HEAD, a, alen);
        if (blen > 0)
            memcpy(w->out + w->len + FIELD_HEAD + alen, b, blen);
    }
    w->len += FIELD_HEAD + n;
}

/* A string or bytes field; an empty one is left out. */
static void put_slice(writer *w, int type, party__slice s) {
    if (s.len > 0)
        put_field(w, type, s.ptr, s.len, NULL, 0);
}

static void write_body(writer *w, const party__conn_record *rec) {
    char head[8];
    size_t i;

    put_u32(head, rec->flags);
    put_field(w, F_FLAGS, head, 4, NULL, 0);
    if (peer_len(rec) > 0) {
        head[0] = (char)rec->peer_family;
        put_u16(head + 1, rec->peer_port);
        put_field(w, F_PEER, head, 3, rec->peer_addr, peer_len(rec));
    }
    put_slice(w, F_ID, rec->id);
    put_slice(w, F_URI, rec->uri);
    put_slice(w, F_PARTY, rec->party);
    put_slice(w, F_ROOM_ID, rec->room_id);
    put_slice(w, F_ROOM_NAME, rec->room_name);
    if (rec->n_tags > PARTY__CONN_RECORD_MAX_TAGS) {
        w->bad = 1;
        return;
    }
    for (i = 0; i < rec->n_tags; i++)
        put_field(w, F_TAG, rec->tags[i].ptr, rec->tags[i].len, NULL, 0);
    put_slice(w, F_STATE, rec->state);
    put_slice(w, F_OUTPUT, rec->output);
    put_slice(w, F_INPUT, rec->input);
    if (rec->msg_opcode != 0) {
        head[0] = (char)rec->msg_opcode;
        put_u32(head + 1, rec->utf8_state);
        put_field(w, F_MSG, head, 5, rec->msg.ptr, rec->msg.len);
    }
}

size_t party__conn_record_size(const party__conn_record *rec) {
    writer w = {NULL, 0, 0, 0};
    write_body(&w, rec);
    return PARTY__CONN_RECORD_HEADER + w.len;
}

size_t party__conn_record_encode(const party__conn_record *rec, char *out, size_t cap) {
    writer w;

    if (cap < PARTY__CONN_RECORD_HEADER)
        return 0;
    w.out = out + PARTY__CONN_RECORD_HEADER;
    w.cap = cap - PARTY__CONN_RECORD_HEADER;
    w.len = 0;
    w.bad = 0;
    write_body(&w, rec);
    if (w.bad || w.len > UINT32_MAX)
        return 0;
    memcpy(out, magic, 4);
    put_u16(out + 4, PARTY__CONN_RECORD_VERSION);
    put_u16(out + 6, (uint16_t)rec->kind);
    put_u32(out + 8, (uint32_t)w.len);
    return PARTY__CONN_RECORD_HEADER + w.len;
}

unsigned party__conn_record_peek_version(const char *data, size_t len) {
    if (len < PARTY__CONN_RECORD_HEADER || memcmp(data, magic, 4) != 0)
        return 0;
    return get_u16(data + 4);
}

static int decode_field(party__conn_record *rec, int type, const char *v, uint32_t n) {
    party__slice s = party__slice_make(v, n);

    switch (type) {
    case F_FLAGS:
        if (n != 4)
            return PARTY_EINVAL;
        rec->flags = get_u32(v);
        return 0;
    case F_PEER:
        if (n < 3)
            return PARTY_EINVAL;
        rec->peer_family = (uint8_t)v[0];
        rec->peer_port = get_u16(v + 1);
        if (peer_len(rec) == 0 || n != 3 + peer_len(rec))
            return PARTY_EINVAL;
        memcpy(rec->peer_addr, v + 3, n - 3);
        return 0;
    case F_ID:
        rec->id = s;
        return 0;
    case F_URI:
        rec->uri = s;
        return 0;
    case F_PARTY:
        rec->party = s;
        return 0;
    case F_ROOM_ID:
        rec->room_id = s;
        return 0;
    case F_ROOM_NAME:
        rec->room_name = s;
        return 0;
    case F_TAG:
        if (rec->n_tags == PARTY__CONN_RECORD_MAX_TAGS)
            return PARTY_EINVAL;
        rec->tags[rec->n_tags++] = s;
        return 0;
    case F_STATE:
        rec->state = s;
        return 0;
    case F_OUTPUT:
        rec->output = s;
        return 0;
    case F_INPUT:
        rec->input = s;
        return 0;
    case F_MSG:
        if (n < 5 || v[0] == 0)
            return PARTY_EINVAL;
        rec->msg_opcode = (uint8_t)v[0];
        rec->utf8_state = get_u32(v + 1);
        rec->msg = party__slice_make(v + 5, n - 5);
        return 0;
    default:
        return 0; /* a newer build's field: skipped */
    }
}

int party__conn_record_decode(const char *data, size_t len, party__conn_record *rec, size_t *used) {
    size_t body, at;
    unsigned kind;
    int r;

    memset(rec, 0, sizeof(*rec));
    rec->version = party__conn_record_peek_version(data, len);
    if (rec->version == 0)
        return PARTY_EINVAL;
    if (rec->version != PARTY__CONN_RECORD_VERSION)
        return PARTY_ESTATE;
    kind = get_u16(data + 6);
    body = get_u32(data + 8);
    if (kind != PARTY__CONN_RECORD_WS && kind != PARTY__CONN_RECORD_HTTP)
        return PARTY_EINVAL;
    if (body > len - PARTY__CONN_RECORD_HEADER)
        return PARTY_EINVAL;
    rec->kind = (party__conn_record_kind)kind;
    at = PARTY__CONN_RECORD_HEADER;
    while (at < PARTY__CONN_RECORD_HEADER + body) {
        size_t end = PARTY__CONN_RECORD_HEADER + body;
        uint32_t n;
        if (end - at < FIELD_HEAD)
            return PARTY_EINVAL;
        n = get_u32(data + at + 1);
        if (n > end - at - FIELD_HEAD)
            return PARTY_EINVAL;
        r = decode_field(rec, (uint8_t)data[at], data + at + FIELD_HEAD, n);
        if (r != 0)
            return r;
        at += FIELD_HEAD + n;
    }
    if (rec->kind == PARTY__CONN_RECORD_WS &&
        (rec->id.len == 0 || rec->uri.len == 0 || rec->party.len == 0 || rec->room_id.len == 0))
        return PARTY_EINVAL;
    *used = at;
    return 0;
}
