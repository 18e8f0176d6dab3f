/* yjs_codec: a codec for Yjs v1 document updates and the lib0 encoding under them.
 * It never builds the CRDT: it parses structs and delete sets, merges
 * updates, computes state vectors and diffs, copying the bytes of structs
 * written whole and re-encoding only the ones it slices. Every result is a
 * malloc'd buffer the caller frees; all input is untrusted and bounded. */
#ifndef YJS_CODEC_H
#define YJS_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits. An update or result larger than YJS_MAX_UPDATE bytes,
 * or one holding more than YJS_MAX_STRUCTS structs or delete ranges,
 * is refused with PARTY_ETOOBIG. Nested `any` values deeper than
 * YJS_MAX_DEPTH are refused with PARTY_EINVAL. */
#define YJS_MAX_UPDATE ((size_t)64 << 20)
#define YJS_MAX_STRUCTS ((size_t)1 << 21)
#define YJS_MAX_DEPTH 128

/* ---- lib0 encoding --------------------------------------------------------
 * varUint: 7-bit groups, least significant first, high bit = more follows;
 * values up to 2^53 - 1 (what JavaScript numbers hold). varUint8Array and
 * varString: a varUint length, then that many bytes. */

/* Reads data[pos..len); never past len. */
typedef struct yjs_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} yjs_reader;

static inline yjs_reader yjs_reader_make(const void *data, size_t len) {
    yjs_reader r = {(const uint8_t *)data, len, 0};
    return r;
}
/* A varUint into *value. PARTY_EINVAL when truncated or above 2^53 - 1. */
int yjs_read_uint(yjs_reader *r, uint64_t *value);
/* One byte. PARTY_EINVAL at the end. */
int yjs_read_byte(yjs_reader *r, uint8_t *value);
/* A varUint8Array (or varString): *data points into the reader's input,
 * valid as long as it is. PARTY_EINVAL when truncated. */
int yjs_read_array(yjs_reader *r, const uint8_t **data, size_t *len);

/* A growable output buffer with a hard maximum. The first failure sticks in
 * err (PARTY_ENOMEM, PARTY_ETOOBIG) and later writes do nothing, so a caller
 * writes a whole message and checks once. */
typedef struct yjs_writer {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
    int err;
} yjs_writer;

/* An empty writer that refuses to grow past max bytes. Owns nothing yet. */
void yjs_writer_init(yjs_writer *w, size_t max);
void yjs_write_uint(yjs_writer *w, uint64_t value);
void yjs_write_byte(yjs_writer *w, uint8_t value);
void yjs_write_raw(yjs_writer *w, const void *data, size_t len);
/* varUint length, then the bytes. */
void yjs_write_array(yjs_writer *w, const void *data, size_t len);
/* Hands the bytes to the caller (*data malloc'd, caller frees; never NULL on
 * success, even for 0 bytes) and empties the writer. Returns w->err (then
 * nothing is handed over and the writer's memory is freed). */
int yjs_writer_finish(yjs_writer *w, uint8_t **data, size_t *len);
/* Frees the writer's memory (after an error, or to discard). */
void yjs_writer_release(yjs_writer *w);

/* ---- updates ---------------------------------------------------------------
 * Each function returns 0 or a negative PARTY_E* code: PARTY_EINVAL for
 * bytes that are not a well-formed v1 update (or state vector),
 * PARTY_ETOOBIG past the limits above, PARTY_ENOMEM. On failure *out is
 * NULL. On success *out is malloc'd (the caller frees it). */

/* 0 if update is a well-formed v1 update that yjs would decode (structs of
 * non-zero length, known content kinds, ContentString valid UTF-8). */
int yjs_update_check(const void *update, size_t len);

/* yjs_update_check that also reports how many structs (Skips
 * included) and delete ranges the update holds, without keeping them:
 * what it adds at most to a merge's counts. */
int yjs_update_measure(const void *update, size_t len, size_t *n_structs, size_t *n_ranges);

/* 0 if text is one JSON value that JSON.parse accepts (RFC 8259: no NUL
 * or control characters, strict numbers, nothing after the value but
 * whitespace), PARTY_EINVAL if not. */
int yjs_json_check(const void *text, size_t len);

/* 1 if update (well-formed) has no structs and no deleted ranges. */
int yjs_update_is_empty(const void *update, size_t len);

/* The state vector of update, byte for byte what yjs'
 * encodeStateVectorFromUpdate gives: per client in order of appearance, the
 * clock up to which structs are contiguous from 0 (Skips stop it). */
int yjs_state_vector(const void *update, size_t len, uint8_t **out, size_t *out_len);

/* One update equivalent to applying all n (the structs and ranges of all
 * inputs together are capped at YJS_MAX_STRUCTS each, counted while
 * parsing): per client the union of the
 * structs (overlaps cut, gaps kept as Skip structs, adjacent GCs joined),
 * clients in descending order, and the union of the delete sets. n == 0
 * gives the empty update. */
int yjs_merge(const void *const *updates, const size_t *lens, size_t n, uint8_t **out,
              size_t *out_len);

/* The part of update that a peer with state vector sv lacks: per client the
 * structs past the peer's clock (the first one sliced where it straddles
 * it), and the whole delete set. */
int yjs_diff(const void *update, size_t len, const void *sv, size_t sv_len, uint8_t **out,
             size_t *out_len);

/* update with the content of every item whose whole range is in the delete
 * set replaced by a deleted-content placeholder of the same length (what
 * yjs' garbage collection does to deleted items). Type items are kept so
 * their children still find their parent. Off unless called. */
int yjs_gc_deleted(const void *update, size_t len, uint8_t **out, size_t *out_len);

#endif
