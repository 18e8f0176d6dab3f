/* yjs_codec: the Yjs v1 update codec (see yjs_codec.h). An update is parsed into a flat
 * array of struct records that point into the caller's bytes; results are
 * written by copying those bytes, except for structs cut at a clock, which
 * are re-encoded the way yjs writes an item with an offset. Owns only the
 * temporary arrays of one call. */
#include "yjs_codec.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "utf8.h"

#define MAX_SAFE ((UINT64_C(1) << 53) - 1)

/* Struct kinds and the info byte's fields. */
enum { KIND_GC, KIND_SKIP, KIND_ITEM };
#define INFO_ORIGIN 0x80
#define INFO_RIGHT_ORIGIN 0x40
#define INFO_PARENT_SUB 0x20
#define INFO_CONTENT 0x1f
#define INFO_SKIP 10

/* Content kinds (the low 5 bits of an item's info byte). */
enum {
    CONTENT_DELETED = 1,
    CONTENT_JSON = 2,
    CONTENT_BINARY = 3,
    CONTENT_STRING = 4,
    CONTENT_EMBED = 5,
    CONTENT_FORMAT = 6,
    CONTENT_TYPE = 7,
    CONTENT_ANY = 8,
    CONTENT_DOC = 9,
};
/* Type refs of ContentType that carry a name: YXmlElement, YXmlHook. */
#define TYPE_XML_ELEMENT 3
#define TYPE_XML_HOOK 5
#define TYPE_LAST 6

typedef struct yjs_struct {
    uint64_t client;
    uint64_t clock;
    uint64_t len;
    const uint8_t *raw; /* from the info byte to the end of the struct */
    size_t raw_len;
    size_t content_at; /* offset of the content in raw */
    size_t right_at;   /* offset of the right origin ID in raw (items with one) */
    size_t right_len;  /* its length in bytes; 0 when none */
    uint8_t kind;
    uint8_t info;
    uint8_t has_sub; /* the item wrote a parentSub (no origins, bit 6) */
} yjs_struct;

typedef struct yjs_range {
    uint64_t client;
    uint64_t clock;
    uint64_t len;
} yjs_range;

typedef struct yjs_update {
    yjs_struct *structs;
    size_t n_structs;
    size_t cap_structs;
    yjs_range *deletes;
    size_t n_deletes;
    size_t cap_deletes;
    size_t n_skips;        /* of n_structs */
    const uint8_t *ds_raw; /* the delete set's bytes, copied whole by a diff */
    size_t ds_len;
} yjs_update;

/* ---- lib0 ---------------------------------------------------------------- */

int yjs_read_uint(yjs_reader *r, uint64_t *value) {
    uint64_t v = 0;
    unsigned shift = 0;

    while (r->pos < r->len) {
        uint8_t b = r->data[r->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            if (v > MAX_SAFE)
                return PARTY_EINVAL;
            *value = v;
            return 0;
        }
        shift += 7;
        /* 8 groups hold 56 bits: past that no value can be <= 2^53 - 1. */
        if (shift >= 56)
            return PARTY_EINVAL;
    }
    return PARTY_EINVAL;
}

int yjs_read_byte(yjs_reader *r, uint8_t *value) {
    if (r->pos >= r->len)
        return PARTY_EINVAL;
    *value = r->data[r->pos++];
    return 0;
}

int yjs_read_array(yjs_reader *r, const uint8_t **data, size_t *len) {
    uint64_t n;
    int rc = yjs_read_uint(r, &n);

    if (rc != 0)
        return rc;
    if (n > r->len - r->pos)
        return PARTY_EINVAL;
    *data = r->data + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

/* Skips n bytes. */
static int read_skip(yjs_reader *r, size_t n) {
    if (n > r->len - r->pos)
        return PARTY_EINVAL;
    r->pos += n;
    return 0;
}

/* Skips a signed varInt (lib0: sign in bit 6 of the first byte). */
static int read_skip_int(yjs_reader *r) {
    int i;
    for (i = 0; i < 10; i++) {
        uint8_t b;
        if (yjs_read_byte(r, &b) != 0)
            return PARTY_EINVAL;
        if (b < 0x80)
            return 0;
    }
    return PARTY_EINVAL;
}

void yjs_writer_init(yjs_writer *w, size_t max) {
    memset(w, 0, sizeof(*w));
    w->max = max;
}

static int writer_reserve(yjs_writer *w, size_t n) {
    size_t cap;
    uint8_t *p;

    if (w->err != 0)
        return w->err;
    if (n > w->max || w->len > w->max - n) {
        w->err = PARTY_ETOOBIG;
        return w->err;
    }
    if (w->len + n <= w->cap)
        return 0;
    cap = w->cap < 64 ? 64 : w->cap;
    while (cap < w->len + n)
        cap = cap > w->max / 2 ? w->max : cap * 2;
    p = realloc(w->data, cap);
    if (p == NULL) {
        w->err = PARTY_ENOMEM;
        return w->err;
    }
    w->data = p;
    w->cap = cap;
    return 0;
}

void yjs_write_uint(yjs_writer *w, uint64_t value) {
    uint8_t tmp[10];
    size_t n = 0;

    do {
        uint8_t b = value & 0x7f;
        value >>= 7;
        tmp[n++] = (uint8_t)(b | (value != 0 ? 0x80 : 0));
    } while (value != 0);
    yjs_write_raw(w, tmp, n);
}

void yjs_write_byte(yjs_writer *w, uint8_t value) {
    yjs_write_raw(w, &value, 1);
}

void yjs_write_raw(yjs_writer *w, const void *data, size_t len) {
    if (len == 0 || writer_reserve(w, len) != 0)
        return;
    memcpy(w->data + w->len, data, len);
    w->len += len;
}

void yjs_write_array(yjs_writer *w, const void *data, size_t len) {
    yjs_write_uint(w, len);
    yjs_write_raw(w, data, len);
}

int yjs_writer_finish(yjs_writer *w, uint8_t **data, size_t *len) {
    int err = w->err;

    *data = NULL;
    *len = 0;
    if (err == 0 && w->data == NULL) {
        w->data = malloc(1);
        if (w->data == NULL)
            err = PARTY_ENOMEM;
    }
    if (err != 0) {
        yjs_writer_release(w);
        return err;
    }
    *data = w->data;
    *len = w->len;
    memset(w, 0, sizeof(*w));
    return 0;
}

void yjs_writer_release(yjs_writer *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

/* ---- parsing -------------------------------------------------------------- */

static void update_release(yjs_update *u) {
    free(u->structs);
    free(u->deletes);
    memset(u, 0, sizeof(*u));
}

static int push_struct(yjs_update *u, const yjs_struct *s) {
    if (u->n_structs == u->cap_structs) {
        size_t cap = u->cap_structs == 0 ? 16 : u->cap_structs * 2;
        yjs_struct *p;
        if (u->n_structs >= YJS_MAX_STRUCTS)
            return PARTY_ETOOBIG;
        if (cap > YJS_MAX_STRUCTS)
            cap = YJS_MAX_STRUCTS;
        p = realloc(u->structs, cap * sizeof(*p));
        if (p == NULL)
            return PARTY_ENOMEM;
        u->structs = p;
        u->cap_structs = cap;
    }
    u->structs[u->n_structs++] = *s;
    return 0;
}

static int push_range(yjs_range **ranges, size_t *n, size_t *cap, const yjs_range *range) {
    if (*n == *cap) {
        size_t c = *cap == 0 ? 16 : *cap * 2;
        yjs_range *p;
        if (*n >= YJS_MAX_STRUCTS)
            return PARTY_ETOOBIG;
        if (c > YJS_MAX_STRUCTS)
            c = YJS_MAX_STRUCTS;
        p = realloc(*ranges, c * sizeof(*p));
        if (p == NULL)
            return PARTY_ENOMEM;
        *ranges = p;
        *cap = c;
    }
    (*ranges)[(*n)++] = *range;
    return 0;
}

static int read_id(yjs_reader *r) {
    uint64_t v;
    int rc = yjs_read_uint(r, &v);
    return rc != 0 ? rc : yjs_read_uint(r, &v);
}

/* A varUint8Array (binary, any UTF-8 or not). */
static int read_bytes(yjs_reader *r) {
    const uint8_t *p;
    size_t n;
    return yjs_read_array(r, &p, &n);
}

/* A varString: yjs decodes strings with a fatal UTF-8 decoder, so a string
 * that is not UTF-8 would make every client fail on the update. */
static int read_string(yjs_reader *r) {
    const uint8_t *p;
    size_t n;
    int rc = yjs_read_array(r, &p, &n);
    if (rc == 0 && !party__utf8_valid(p, n))
        rc = PARTY_EINVAL;
    return rc;
}

static int is_digit(uint8_t c) {
    return c >= '0' && c <= '9';
}

static int is_json_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_hex(uint8_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* What RFC 8259 (and JSON.parse) refuses but cJSON lets through: control
 * characters in strings and between tokens, unknown escapes, numbers with
 * leading zeros, a bare '.', no digits after '.' or the exponent, or glued
 * to the next token. The structure itself is left to cJSON. */
static int json_scan_strict(const uint8_t *p, size_t n) {
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        if (c == '"') {
            for (i++;; i++) {
                if (i >= n || p[i] < 0x20)
                    return PARTY_EINVAL;
                if (p[i] == '"')
                    break;
                if (p[i] != '\\')
                    continue;
                if (++i >= n)
                    return PARTY_EINVAL;
                if (p[i] == 'u') {
                    if (n - i < 5 || !is_hex(p[i + 1]) || !is_hex(p[i + 2]) || !is_hex(p[i + 3]) ||
                        !is_hex(p[i + 4]))
                        return PARTY_EINVAL;
                    i += 4;
                } else if (memchr("\"\\/bfnrt", p[i], 8) == NULL) {
                    return PARTY_EINVAL;
                }
            }
            i++;
        } else if (c == '-' || is_digit(c)) {
            if (c == '-')
                i++;
            if (i >= n || !is_digit(p[i]))
                return PARTY_EINVAL;
            if (p[i++] != '0') {
                while (i < n && is_digit(p[i]))
                    i++;
            }
            if (i < n && p[i] == '.') {
                if (++i >= n || !is_digit(p[i]))
                    return PARTY_EINVAL;
                while (i < n && is_digit(p[i]))
                    i++;
            }
            if (i < n && (p[i] == 'e' || p[i] == 'E')) {
                if (++i < n && (p[i] == '+' || p[i] == '-'))
                    i++;
                if (i >= n || !is_digit(p[i]))
                    return PARTY_EINVAL;
                while (i < n && is_digit(p[i]))
                    i++;
            }
            /* "01" would otherwise scan as two numbers. */
            if (i < n && !is_json_space(p[i]) && p[i] != ',' && p[i] != ']' && p[i] != '}')
                return PARTY_EINVAL;
        } else if (c < 0x20 && !is_json_space(c)) {
            return PARTY_EINVAL;
        } else {
            i++;
        }
    }
    return 0;
}

int yjs_json_check(const void *text, size_t len) {
    const uint8_t *p = text;
    const char *end = NULL;
    cJSON *json;
    int rc;

    if (len == 0 || memchr(p, 0, len) != NULL || !party__utf8_valid(p, len))
        return PARTY_EINVAL;
    if ((rc = json_scan_strict(p, len)) != 0)
        return rc;
    json = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (json == NULL)
        return PARTY_EINVAL;
    cJSON_Delete(json);
    /* The whole input is one value: only whitespace may follow. */
    for (; end < (const char *)p + len; end++) {
        if (!is_json_space((uint8_t)*end))
            return PARTY_EINVAL;
    }
    return 0;
}

/* A varString holding JSON (yjs JSON.parses it; "undefined" also passes for
 * the entries of legacy JSON content). */
static int read_json(yjs_reader *r, int undefined_ok) {
    const uint8_t *p;
    size_t n;
    int rc = yjs_read_array(r, &p, &n);

    if (rc != 0)
        return rc;
    if (undefined_ok && n == 9 && memcmp(p, "undefined", 9) == 0)
        return 0;
    return yjs_json_check(p, n);
}

/* Skips one lib0 `any` value. */
static int read_skip_any(yjs_reader *r, int depth) {
    uint8_t type;
    uint64_t n, i;
    int rc;

    if (depth > YJS_MAX_DEPTH)
        return PARTY_EINVAL;
    if ((rc = yjs_read_byte(r, &type)) != 0)
        return rc;
    switch (type) {
    case 127: /* undefined */
    case 126: /* null */
    case 121: /* false */
    case 120: /* true */
        return 0;
    case 125: /* integer */
        return read_skip_int(r);
    case 124: /* float32 */
        return read_skip(r, 4);
    case 123: /* float64 */
    case 122: /* bigint64 */
        return read_skip(r, 8);
    case 119: /* string */
        return read_string(r);
    case 116: /* Uint8Array */
        return read_bytes(r);
    case 118: /* object: count, then key and value each */
        if ((rc = yjs_read_uint(r, &n)) != 0)
            return rc;
        for (i = 0; i < n; i++) {
            if ((rc = read_string(r)) != 0 || (rc = read_skip_any(r, depth + 1)) != 0)
                return rc;
        }
        return 0;
    case 117: /* array */
        if ((rc = yjs_read_uint(r, &n)) != 0)
            return rc;
        for (i = 0; i < n; i++) {
            if ((rc = read_skip_any(r, depth + 1)) != 0)
                return rc;
        }
        return 0;
    default:
        return PARTY_EINVAL;
    }
}

/* Length in UTF-16 code units of valid UTF-8 (what JavaScript counts). */
static uint64_t utf16_length(const uint8_t *s, size_t n) {
    uint64_t units = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            units++;
        if (s[i] >= 0xf0)
            units++;
    }
    return units;
}

/* Reads an item's content of kind ref; sets *len to its length in clock
 * units. */
static int read_content(yjs_reader *r, uint8_t ref, uint64_t *len) {
    const uint8_t *p;
    size_t n;
    uint64_t count, i, type;
    int rc;

    switch (ref) {
    case CONTENT_DELETED:
        return yjs_read_uint(r, len);
    case CONTENT_JSON:
        if ((rc = yjs_read_uint(r, &count)) != 0)
            return rc;
        for (i = 0; i < count; i++) {
            if ((rc = read_json(r, 1)) != 0)
                return rc;
        }
        *len = count;
        return 0;
    case CONTENT_BINARY:
        *len = 1;
        return read_bytes(r);
    case CONTENT_EMBED:
        *len = 1;
        return read_json(r, 0);
    case CONTENT_STRING:
        if ((rc = yjs_read_array(r, &p, &n)) != 0)
            return rc;
        /* Lengths are UTF-16 units: only valid UTF-8 has a definite one. */
        if (!party__utf8_valid(p, n))
            return PARTY_EINVAL;
        *len = utf16_length(p, n);
        return 0;
    case CONTENT_FORMAT:
        *len = 1;
        if ((rc = read_string(r)) != 0)
            return rc;
        return read_json(r, 0);
    case CONTENT_TYPE:
        *len = 1;
        if ((rc = yjs_read_uint(r, &type)) != 0)
            return rc;
        if (type > TYPE_LAST)
            return PARTY_EINVAL;
        if (type == TYPE_XML_ELEMENT || type == TYPE_XML_HOOK)
            return read_string(r);
        return 0;
    case CONTENT_ANY:
        if ((rc = yjs_read_uint(r, &count)) != 0)
            return rc;
        for (i = 0; i < count; i++) {
            if ((rc = read_skip_any(r, 0)) != 0)
                return rc;
        }
        *len = count;
        return 0;
    case CONTENT_DOC:
        *len = 1;
        if ((rc = read_string(r)) != 0)
            return rc;
        return read_skip_any(r, 0);
    default:
        return PARTY_EINVAL;
    }
}

static int read_struct(yjs_reader *r, yjs_struct *s) {
    size_t start = r->pos;
    uint8_t info;
    uint64_t parent_is_key;
    int rc;

    if ((rc = yjs_read_byte(r, &info)) != 0)
        return rc;
    s->info = info;
    s->has_sub = 0;
    s->right_at = s->right_len = 0;
    if (info == INFO_SKIP) {
        s->kind = KIND_SKIP;
        rc = yjs_read_uint(r, &s->len);
    } else if ((info & INFO_CONTENT) == 0) {
        s->kind = KIND_GC;
        rc = yjs_read_uint(r, &s->len);
    } else {
        s->kind = KIND_ITEM;
        if ((info & INFO_ORIGIN) && (rc = read_id(r)) != 0)
            return rc;
        if (info & INFO_RIGHT_ORIGIN) {
            s->right_at = r->pos - start;
            if ((rc = read_id(r)) != 0)
                return rc;
            s->right_len = r->pos - start - s->right_at;
        }
        if ((info & (INFO_ORIGIN | INFO_RIGHT_ORIGIN)) == 0) {
            /* No origin to copy the parent from: the parent is written,
             * as a root type's name (1) or the ID of its type item. */
            if ((rc = yjs_read_uint(r, &parent_is_key)) != 0)
                return rc;
            rc = parent_is_key == 1 ? read_string(r) : read_id(r);
            if (rc != 0)
                return rc;
            if (info & INFO_PARENT_SUB) {
                s->has_sub = 1;
                if ((rc = read_string(r)) != 0)
                    return rc;
            }
        }
        s->content_at = r->pos - start;
        rc = read_content(r, info & INFO_CONTENT, &s->len);
    }
    if (rc != 0)
        return rc;
    /* A zero-length struct would share its ID with the next one. */
    if (s->len == 0)
        return PARTY_EINVAL;
    s->raw = r->data + start;
    s->raw_len = r->pos - start;
    return 0;
}

/* Parses update into u. Stops with PARTY_ETOOBIG as soon as it holds more
 * than max_structs structs or max_ranges delete ranges, so a caller adding
 * up several updates bounds the memory of all of them. With count_only the
 * structs and ranges are counted, not kept (u->n_structs and u->n_deletes
 * are set, the arrays stay NULL). */
static int parse_update_limited(const void *data, size_t len, yjs_update *u, size_t max_structs,
                                size_t max_ranges, int count_only) {
    yjs_reader r = yjs_reader_make(data, len);
    uint64_t n_clients, n_structs, client, clock, i, j, n_ranges;
    size_t ds_start;
    int rc;

    memset(u, 0, sizeof(*u));
    if (len > YJS_MAX_UPDATE)
        return PARTY_ETOOBIG;
    if ((rc = yjs_read_uint(&r, &n_clients)) != 0)
        goto fail;
    for (i = 0; i < n_clients; i++) {
        if ((rc = yjs_read_uint(&r, &n_structs)) != 0 || (rc = yjs_read_uint(&r, &client)) != 0 ||
            (rc = yjs_read_uint(&r, &clock)) != 0)
            goto fail;
        for (j = 0; j < n_structs; j++) {
            yjs_struct s;
            if ((rc = read_struct(&r, &s)) != 0)
                goto fail;
            s.client = client;
            s.clock = clock;
            if (s.len > MAX_SAFE - clock) {
                rc = PARTY_EINVAL;
                goto fail;
            }
            clock += s.len;
            if (u->n_structs >= max_structs) {
                rc = PARTY_ETOOBIG;
                goto fail;
            }
            if (s.kind == KIND_SKIP)
                u->n_skips++;
            if (count_only)
                u->n_structs++;
            else if ((rc = push_struct(u, &s)) != 0)
                goto fail;
        }
    }
    ds_start = r.pos;
    if ((rc = yjs_read_uint(&r, &n_clients)) != 0)
        goto fail;
    for (i = 0; i < n_clients; i++) {
        if ((rc = yjs_read_uint(&r, &client)) != 0 || (rc = yjs_read_uint(&r, &n_ranges)) != 0)
            goto fail;
        for (j = 0; j < n_ranges; j++) {
            yjs_range d;
            d.client = client;
            if ((rc = yjs_read_uint(&r, &d.clock)) != 0 || (rc = yjs_read_uint(&r, &d.len)) != 0)
                goto fail;
            if (d.len > MAX_SAFE - d.clock) {
                rc = PARTY_EINVAL;
                goto fail;
            }
            if (u->n_deletes >= max_ranges) {
                rc = PARTY_ETOOBIG;
                goto fail;
            }
            if (count_only)
                u->n_deletes++;
            else if ((rc = push_range(&u->deletes, &u->n_deletes, &u->cap_deletes, &d)) != 0)
                goto fail;
        }
    }
    /* Bytes after the delete set are ignored, as yjs does. */
    u->ds_raw = r.data + ds_start;
    u->ds_len = r.pos - ds_start;
    return 0;
fail:
    update_release(u);
    return rc;
}

static int parse_update(const void *data, size_t len, yjs_update *u) {
    return parse_update_limited(data, len, u, YJS_MAX_STRUCTS, YJS_MAX_STRUCTS, 0);
}

int yjs_update_measure(const void *update, size_t len, size_t *n_structs, size_t *n_ranges) {
    yjs_update u;
    int rc = parse_update_limited(update, len, &u, YJS_MAX_STRUCTS, YJS_MAX_STRUCTS, 1);
    if (n_structs != NULL)
        *n_structs = rc == 0 ? u.n_structs : 0;
    if (n_ranges != NULL)
        *n_ranges = rc == 0 ? u.n_deletes : 0;
    update_release(&u);
    return rc;
}

int yjs_update_check(const void *update, size_t len) {
    return yjs_update_measure(update, len, NULL, NULL);
}

int yjs_update_is_empty(const void *update, size_t len) {
    yjs_reader r = yjs_reader_make(update, len);
    uint64_t n_clients, client, n_ranges, i;

    if (yjs_read_uint(&r, &n_clients) != 0 || n_clients != 0)
        return 0;
    if (yjs_read_uint(&r, &n_clients) != 0)
        return 0;
    for (i = 0; i < n_clients; i++) {
        if (yjs_read_uint(&r, &client) != 0 || yjs_read_uint(&r, &n_ranges) != 0 || n_ranges != 0)
            return 0;
        (void)client;
    }
    return 1;
}

/* ---- writing structs -------------------------------------------------------- */

/* Writes s starting offset clock units in. Whole structs are copied; a cut
 * one is written the way yjs writes an item with an offset: its origin
 * becomes its own previous clock, so no parent is written, and the content
 * loses its first offset units. */
static void write_struct(yjs_writer *w, const yjs_struct *s, uint64_t offset) {
    yjs_reader r;
    uint8_t ref;
    uint64_t count, i;

    if (offset == 0) {
        yjs_write_raw(w, s->raw, s->raw_len);
        return;
    }
    if (s->kind != KIND_ITEM) {
        yjs_write_byte(w, s->kind == KIND_SKIP ? INFO_SKIP : 0);
        yjs_write_uint(w, s->len - offset);
        return;
    }
    ref = s->info & INFO_CONTENT;
    yjs_write_byte(w, (uint8_t)(ref | INFO_ORIGIN | (s->right_len ? INFO_RIGHT_ORIGIN : 0) |
                                (s->has_sub ? INFO_PARENT_SUB : 0)));
    yjs_write_uint(w, s->client);
    yjs_write_uint(w, s->clock + offset - 1);
    yjs_write_raw(w, s->raw + s->right_at, s->right_len);
    r = yjs_reader_make(s->raw + s->content_at, s->raw_len - s->content_at);
    switch (ref) {
    case CONTENT_DELETED:
        yjs_write_uint(w, s->len - offset);
        return;
    case CONTENT_JSON:
    case CONTENT_ANY:
        /* Count, then elements: skip the first offset ones, copy the rest.
         * The struct parsed, so these reads succeed; a failure would be a
         * bug here, and makes the result an error rather than bad bytes. */
        if (yjs_read_uint(&r, &count) != 0 || count < offset) {
            w->err = PARTY_EINVAL;
            return;
        }
        for (i = 0; i < offset; i++) {
            if ((ref == CONTENT_JSON ? read_bytes(&r) : read_skip_any(&r, 0)) != 0) {
                w->err = PARTY_EINVAL;
                return;
            }
        }
        yjs_write_uint(w, count - offset);
        yjs_write_raw(w, r.data + r.pos, r.len - r.pos);
        return;
    case CONTENT_STRING: {
        const uint8_t *p;
        size_t n, at = 0;
        uint64_t units = 0;
        int half_pair = 0;
        /* As above: the parse saw a valid string of more than offset
         * units, so neither check below fails on a parsed struct. */
        if (yjs_read_array(&r, &p, &n) != 0) {
            w->err = PARTY_EINVAL;
            return;
        }
        while (units < offset) {
            if (at >= n) {
                w->err = PARTY_EINVAL;
                return;
            }
            if (p[at] >= 0xf0) {
                units += 2;
                at += 4;
                /* The cut falls between the two halves of a surrogate
                 * pair: the low half left alone becomes U+FFFD, as
                 * JavaScript's UTF-8 encoder makes of it. */
                half_pair = units > offset;
            } else {
                units++;
                at += p[at] >= 0xe0 ? 3 : p[at] >= 0xc0 ? 2 : 1;
            }
        }
        if (at > n) {
            w->err = PARTY_EINVAL;
            return;
        }
        if (half_pair) {
            yjs_write_uint(w, n - at + 3);
            yjs_write_raw(w, "\xef\xbf\xbd", 3);
        } else {
            yjs_write_uint(w, n - at);
        }
        yjs_write_raw(w, p + at, n - at);
        return;
    }
    default:
        /* Every other content has length 1 and is never cut. */
        w->err = PARTY_EINVAL;
        return;
    }
}

/* ---- state vector ------------------------------------------------------------ */

int yjs_state_vector(const void *update, size_t len, uint8_t **out, size_t *out_len) {
    yjs_update u;
    yjs_writer body, w;
    uint64_t size = 0, client = 0, clock = 0;
    int stop = 0, rc;
    size_t i;

    *out = NULL;
    *out_len = 0;
    if ((rc = parse_update(update, len, &u)) != 0)
        return rc;
    yjs_writer_init(&body, YJS_MAX_UPDATE);
    for (i = 0; i < u.n_structs; i++) {
        const yjs_struct *s = &u.structs[i];
        if (i == 0 || s->client != client) {
            if (i > 0 && clock != 0) {
                size++;
                yjs_write_uint(&body, client);
                yjs_write_uint(&body, clock);
            }
            client = s->client;
            clock = 0;
            /* Only structs contiguous from clock 0 count. */
            stop = s->clock != 0;
        }
        if (s->kind == KIND_SKIP)
            stop = 1;
        if (!stop)
            clock = s->clock + s->len;
    }
    if (u.n_structs > 0 && clock != 0) {
        size++;
        yjs_write_uint(&body, client);
        yjs_write_uint(&body, clock);
    }
    update_release(&u);
    yjs_writer_init(&w, YJS_MAX_UPDATE);
    yjs_write_uint(&w, size);
    yjs_write_raw(&w, body.data, body.len);
    if (body.err != 0 && w.err == 0)
        w.err = body.err;
    yjs_writer_release(&body);
    return yjs_writer_finish(&w, out, out_len);
}

/* ---- merge ------------------------------------------------------------------- */

static int compare_u64(uint64_t a, uint64_t b) {
    return a < b ? -1 : a > b ? 1 : 0;
}

/* Clients in descending order (as yjs writes them), then by clock; at one
 * clock the longer struct first, and an item before a GC of the same range
 * (it carries more). */
static int compare_structs(const void *pa, const void *pb) {
    const yjs_struct *a = *(const yjs_struct *const *)pa;
    const yjs_struct *b = *(const yjs_struct *const *)pb;
    int c;

    if ((c = compare_u64(b->client, a->client)) != 0)
        return c;
    if ((c = compare_u64(a->clock, b->clock)) != 0)
        return c;
    if ((c = compare_u64(b->len, a->len)) != 0)
        return c;
    return (a->kind == KIND_ITEM ? 0 : 1) - (b->kind == KIND_ITEM ? 0 : 1);
}

static int compare_ranges(const void *pa, const void *pb) {
    const yjs_range *a = pa, *b = pb;
    int c;
    if ((c = compare_u64(b->client, a->client)) != 0)
        return c;
    return compare_u64(a->clock, b->clock);
}

/* One struct of the output: a (possibly cut) input struct, or a GC or Skip
 * made here (src NULL). */
typedef struct yjs_out {
    const yjs_struct *src;
    uint64_t offset;
    uint64_t clock;
    uint64_t len;
    uint8_t kind;
} yjs_out;

static void write_out(yjs_writer *w, const yjs_out *o) {
    if (o->src != NULL) {
        write_struct(w, o->src, o->offset);
        return;
    }
    yjs_write_byte(w, o->kind == KIND_SKIP ? INFO_SKIP : 0);
    yjs_write_uint(w, o->len);
}

/* Sorts ranges (by client descending, clock) and joins overlapping or
 * touching ones in place; drops empty ones. Returns the new count. */
static size_t ranges_normalize(yjs_range *d, size_t n) {
    size_t i, k = 0;

    if (n == 0)
        return 0;
    qsort(d, n, sizeof(*d), compare_ranges);
    for (i = 0; i < n; i++) {
        if (d[i].len == 0)
            continue;
        if (k > 0 && d[k - 1].client == d[i].client &&
            d[k - 1].clock + d[k - 1].len >= d[i].clock) {
            uint64_t end = d[i].clock + d[i].len;
            if (end > d[k - 1].clock + d[k - 1].len)
                d[k - 1].len = end - d[k - 1].clock;
            continue;
        }
        d[k++] = d[i];
    }
    return k;
}

static void write_delete_set(yjs_writer *w, const yjs_range *d, size_t n) {
    size_t i, j, n_clients = 0;

    for (i = 0; i < n; i++) {
        if (i == 0 || d[i].client != d[i - 1].client)
            n_clients++;
    }
    yjs_write_uint(w, n_clients);
    for (i = 0; i < n; i = j) {
        for (j = i; j < n && d[j].client == d[i].client; j++)
            ;
        yjs_write_uint(w, d[i].client);
        yjs_write_uint(w, j - i);
        for (; i < j; i++) {
            yjs_write_uint(w, d[i].clock);
            yjs_write_uint(w, d[i].len);
        }
    }
}

int yjs_merge(const void *const *updates, const size_t *lens, size_t n, uint8_t **out,
              size_t *out_len) {
    yjs_update *parsed = NULL;
    const yjs_struct **all = NULL;
    yjs_out *plan = NULL;
    yjs_range *deletes = NULL;
    size_t n_all = 0, n_parsed = 0, n_deletes = 0, cap_deletes = 0, n_plan, n_clients = 0, i, j, k,
           total = 0;
    yjs_writer w;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    yjs_writer_init(&w, YJS_MAX_UPDATE);
    parsed = calloc(n ? n : 1, sizeof(*parsed));
    if (parsed == NULL)
        return PARTY_ENOMEM;
    for (i = 0; i < n; i++) {
        total += lens[i];
        if (total > YJS_MAX_UPDATE * 2) {
            rc = PARTY_ETOOBIG;
            goto done;
        }
        /* Each input may only use what the ones before left of the caps:
         * parsed structs cost far more memory than their bytes. */
        if ((rc = parse_update_limited(updates[i], lens[i], &parsed[i], YJS_MAX_STRUCTS - n_parsed,
                                       YJS_MAX_STRUCTS - n_deletes, 0)) != 0)
            goto done;
        n_parsed += parsed[i].n_structs;
        n_all += parsed[i].n_structs - parsed[i].n_skips;
        for (j = 0; j < parsed[i].n_deletes; j++) {
            if ((rc = push_range(&deletes, &n_deletes, &cap_deletes, &parsed[i].deletes[j])) != 0)
                goto done;
        }
    }
    if (n_all > YJS_MAX_STRUCTS) {
        rc = PARTY_ETOOBIG;
        goto done;
    }
    /* Skips are gaps, not content: the output makes its own. */
    all = malloc((n_all ? n_all : 1) * sizeof(*all));
    /* At most one Skip per struct on top of the structs themselves. */
    plan = malloc((n_all ? n_all : 1) * 2 * sizeof(*plan));
    if (all == NULL || plan == NULL) {
        rc = PARTY_ENOMEM;
        goto done;
    }
    for (i = 0, k = 0; i < n; i++) {
        for (j = 0; j < parsed[i].n_structs; j++) {
            if (parsed[i].structs[j].kind != KIND_SKIP)
                all[k++] = &parsed[i].structs[j];
        }
    }
    if (n_all > 0)
        qsort(all, n_all, sizeof(*all), compare_structs);
    for (i = 0; i < n_all; i = j) {
        for (j = i; j < n_all && all[j]->client == all[i]->client; j++)
            ;
        n_clients++;
    }
    yjs_write_uint(&w, n_clients);
    for (i = 0; i < n_all; i = j) {
        uint64_t covered = all[i]->clock;
        n_plan = 0;
        for (j = i; j < n_all && all[j]->client == all[i]->client; j++) {
            const yjs_struct *s = all[j];
            uint64_t end = s->clock + s->len;
            yjs_out o;
            if (end <= covered && j > i)
                continue;
            if (s->clock > covered) {
                o.src = NULL, o.offset = 0, o.kind = KIND_SKIP;
                o.clock = covered, o.len = s->clock - covered;
                plan[n_plan++] = o;
                covered = s->clock;
            }
            if (s->kind == KIND_GC && n_plan > 0 && plan[n_plan - 1].kind == KIND_GC) {
                /* Adjacent GCs join, as in yjs. */
                plan[n_plan - 1].src = NULL;
                plan[n_plan - 1].len = end - plan[n_plan - 1].clock;
            } else {
                o.src = s, o.offset = covered - s->clock, o.kind = s->kind;
                o.clock = covered, o.len = end - covered;
                plan[n_plan++] = o;
            }
            covered = end;
        }
        yjs_write_uint(&w, n_plan);
        yjs_write_uint(&w, all[i]->client);
        yjs_write_uint(&w, all[i]->clock);
        for (k = 0; k < n_plan; k++)
            write_out(&w, &plan[k]);
    }
    if (n_deletes > 0)
        n_deletes = ranges_normalize(deletes, n_deletes);
    write_delete_set(&w, deletes, n_deletes);
done:
    if (parsed != NULL) {
        for (i = 0; i < n; i++)
            update_release(&parsed[i]);
    }
    free(parsed);
    free(all);
    free(plan);
    free(deletes);
    if (rc != 0) {
        yjs_writer_release(&w);
        return rc;
    }
    return yjs_writer_finish(&w, out, out_len);
}

/* ---- diff -------------------------------------------------------------------- */

static int compare_sv(const void *pa, const void *pb) {
    const yjs_range *a = pa, *b = pb;
    return compare_u64(a->client, b->client);
}

int yjs_diff(const void *update, size_t len, const void *sv, size_t sv_len, uint8_t **out,
             size_t *out_len) {
    yjs_reader r = yjs_reader_make(sv, sv_len);
    yjs_range *clocks = NULL;
    size_t n_clocks = 0, cap_clocks = 0, i, j, k, n_clients = 0;
    uint64_t count, c;
    yjs_writer body, w;
    yjs_update u;
    int rc;

    *out = NULL;
    *out_len = 0;
    if ((rc = yjs_read_uint(&r, &count)) != 0)
        return rc;
    for (c = 0; c < count; c++) {
        yjs_range e = {0, 0, 0};
        if ((rc = yjs_read_uint(&r, &e.client)) != 0 || (rc = yjs_read_uint(&r, &e.clock)) != 0 ||
            (rc = push_range(&clocks, &n_clocks, &cap_clocks, &e)) != 0) {
            free(clocks);
            return rc;
        }
    }
    if (n_clocks > 0)
        qsort(clocks, n_clocks, sizeof(*clocks), compare_sv);
    if ((rc = parse_update(update, len, &u)) != 0) {
        free(clocks);
        return rc;
    }
    yjs_writer_init(&body, YJS_MAX_UPDATE);
    for (i = 0; i < u.n_structs; i = j) {
        yjs_range key = {u.structs[i].client, 0, 0};
        const yjs_range *found;
        uint64_t known = 0;
        size_t first;
        for (j = i; j < u.n_structs && u.structs[j].client == u.structs[i].client; j++)
            ;
        found = n_clocks > 0 ? bsearch(&key, clocks, n_clocks, sizeof(*clocks), compare_sv) : NULL;
        if (found != NULL)
            known = found->clock;
        /* The first struct the peer lacks; Skips before it are dropped
         * (the output never starts a client with a Skip). */
        for (first = i; first < j; first++) {
            const yjs_struct *s = &u.structs[first];
            if (s->kind != KIND_SKIP && s->clock + s->len > known)
                break;
        }
        if (first == j)
            continue;
        n_clients++;
        {
            const yjs_struct *s = &u.structs[first];
            uint64_t offset = known > s->clock ? known - s->clock : 0;
            yjs_write_uint(&body, j - first);
            yjs_write_uint(&body, s->client);
            yjs_write_uint(&body, s->clock + offset);
            write_struct(&body, s, offset);
        }
        for (k = first + 1; k < j; k++)
            write_struct(&body, &u.structs[k], 0);
    }
    yjs_writer_init(&w, YJS_MAX_UPDATE);
    yjs_write_uint(&w, n_clients);
    yjs_write_raw(&w, body.data, body.len);
    yjs_write_raw(&w, u.ds_raw, u.ds_len);
    if (body.err != 0 && w.err == 0)
        w.err = body.err;
    yjs_writer_release(&body);
    update_release(&u);
    free(clocks);
    return yjs_writer_finish(&w, out, out_len);
}

/* ---- garbage collection of deleted content ----------------------------------- */

/* 1 if [clock, clock + len) of client lies inside one range of d (sorted and
 * joined by ranges_normalize). */
static int ranges_cover(const yjs_range *d, size_t n, uint64_t client, uint64_t clock,
                        uint64_t len) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const yjs_range *m = &d[mid];
        if (m->client > client || (m->client == client && m->clock <= clock))
            lo = mid + 1;
        else
            hi = mid;
    }
    /* lo: the first range after (client, clock); the candidate is before. */
    if (lo == 0)
        return 0;
    d = &d[lo - 1];
    return d->client == client && d->clock <= clock && clock + len <= d->clock + d->len;
}

int yjs_gc_deleted(const void *update, size_t len, uint8_t **out, size_t *out_len) {
    yjs_reader r = yjs_reader_make(update, len);
    yjs_writer w;
    yjs_update u;
    uint64_t n_clients = 0, n_structs, client, clock, i, j;
    size_t n_deletes, at = 0;
    int rc;

    *out = NULL;
    *out_len = 0;
    if ((rc = parse_update(update, len, &u)) != 0)
        return rc;
    n_deletes = ranges_normalize(u.deletes, u.n_deletes);
    yjs_writer_init(&w, YJS_MAX_UPDATE);
    /* The client headers are copied as they are: walk them again beside
     * the parsed structs. The parse succeeded, so these reads do too and
     * name exactly u.n_structs structs; a mismatch would be a bug here,
     * and makes the result an error rather than a read past the array. */
    if (yjs_read_uint(&r, &n_clients) != 0)
        w.err = PARTY_EINVAL;
    yjs_write_uint(&w, n_clients);
    for (i = 0; i < n_clients && w.err == 0; i++) {
        if (yjs_read_uint(&r, &n_structs) != 0 || yjs_read_uint(&r, &client) != 0 ||
            yjs_read_uint(&r, &clock) != 0 || n_structs > u.n_structs - at) {
            w.err = PARTY_EINVAL;
            break;
        }
        yjs_write_uint(&w, n_structs);
        yjs_write_uint(&w, client);
        yjs_write_uint(&w, clock);
        for (j = 0; j < n_structs; j++, at++) {
            const yjs_struct *s = &u.structs[at];
            uint8_t ref = s->info & INFO_CONTENT;
            if (s->kind == KIND_ITEM && ref != CONTENT_DELETED && ref != CONTENT_TYPE &&
                ranges_cover(u.deletes, n_deletes, s->client, s->clock, s->len)) {
                yjs_write_byte(&w, (uint8_t)((s->info & ~INFO_CONTENT) | CONTENT_DELETED));
                yjs_write_raw(&w, s->raw + 1, s->content_at - 1);
                yjs_write_uint(&w, s->len);
            } else {
                yjs_write_raw(&w, s->raw, s->raw_len);
            }
            r.pos = (size_t)(s->raw + s->raw_len - r.data);
        }
    }
    yjs_write_raw(&w, u.ds_raw, u.ds_len);
    update_release(&u);
    return yjs_writer_finish(&w, out, out_len);
}
