/* yjs_merge: times parties/yjs/yjs_codec.c on a log of Yjs updates (a file of lib0
 * varUint8Arrays, as bench/yjs.mjs writes it): merging the whole log into
 * one update, then the state vector and the diff for an empty peer of the
 * result. Prints one JSON line with the median of N runs in milliseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "yjs_codec.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Grows both arrays to cap entries. On failure either may have grown;
 * both stay valid to free. */
static int grow(const void ***updates, size_t **lens, size_t cap) {
    const void **u = realloc(*updates, cap * sizeof(**updates));
    size_t *l;
    if (u == NULL)
        return -1;
    *updates = u;
    l = realloc(*lens, cap * sizeof(**lens));
    if (l == NULL)
        return -1;
    *lens = l;
    return 0;
}

int main(int argc, char **argv) {
    FILE *f;
    uint8_t *file = NULL, *out = NULL, *sv = NULL, *diff = NULL;
    size_t file_len, n = 0, cap = 0, out_len = 0, sv_len, diff_len;
    const void **updates = NULL;
    size_t *lens = NULL;
    yjs_reader r;
    int runs = argc > 2 ? atoi(argv[2]) : 9, k, status = 1;
    double merge_ms[64], sv_ms[64], diff_ms[64];

    if (argc < 2 || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: yjs_merge LOG_FILE [RUNS<=64]\n");
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    file_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    file = malloc(file_len ? file_len : 1);
    if (file == NULL || fread(file, 1, file_len, f) != file_len) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        fclose(f);
        goto done;
    }
    fclose(f);
    r = yjs_reader_make(file, file_len);
    while (r.pos < r.len) {
        const uint8_t *p;
        size_t len;
        if (yjs_read_array(&r, &p, &len) != 0) {
            fprintf(stderr, "malformed log\n");
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            if (grow(&updates, &lens, cap) != 0) {
                fprintf(stderr, "out of memory\n");
                goto done;
            }
        }
        updates[n] = p;
        lens[n++] = len;
    }
    for (k = 0; k < runs; k++) {
        double t0 = now_ms(), t1, t2, t3;
        free(out);
        free(sv);
        free(diff);
        out = sv = diff = NULL;
        if (yjs_merge(updates, lens, n, &out, &out_len) != 0) {
            fprintf(stderr, "merge failed\n");
            goto done;
        }
        t1 = now_ms();
        if (yjs_state_vector(out, out_len, &sv, &sv_len) != 0)
            goto done;
        t2 = now_ms();
        if (yjs_diff(out, out_len, "\x00", 1, &diff, &diff_len) != 0)
            goto done;
        t3 = now_ms();
        merge_ms[k] = t1 - t0;
        sv_ms[k] = t2 - t1;
        diff_ms[k] = t3 - t2;
    }
    qsort(merge_ms, (size_t)runs, sizeof(double), compare_double);
    qsort(sv_ms, (size_t)runs, sizeof(double), compare_double);
    qsort(diff_ms, (size_t)runs, sizeof(double), compare_double);
    printf("{\"updates\":%zu,\"log_bytes\":%zu,\"merged_bytes\":%zu,\"merge_ms\":%.3f,"
           "\"sv_ms\":%.3f,\"diff_ms\":%.3f}\n",
           n, file_len, out_len, merge_ms[runs / 2], sv_ms[runs / 2], diff_ms[runs / 2]);
    status = 0;
done:
    free(out);
    free(sv);
    free(diff);
    free(updates);
    free(lens);
    free(file);
    return status;
}
