/* yjs_tool: parties/yjs/yjs_codec.c behind a line protocol, for the differential test
 * against the npm yjs package (codec.test.mjs). Each request is one line,
 * the arguments hex-encoded updates or state vectors:
 *   merge HEX...   sv HEX   diff HEX SVHEX   gc HEX   check HEX
 * and each answer one line: "ok HEX" (check: "ok") or "err CODE". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "yjs_codec.h"

#define MAX_ARGS 4096

static int hex_value(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex in place (the text becomes the bytes); -1 if malformed. */
static long hex_decode(char *text) {
    size_t n = strlen(text), i;
    if (n % 2 != 0)
        return -1;
    for (i = 0; i < n; i += 2) {
        int hi = hex_value((unsigned char)text[i]), lo = hex_value((unsigned char)text[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        text[i / 2] = (char)(hi * 16 + lo);
    }
    return (long)(n / 2);
}

static void answer(int rc, const uint8_t *out, size_t len, int with_bytes) {
    size_t i;
    if (rc != 0) {
        printf("err %d\n", rc);
        return;
    }
    fputs("ok", stdout);
    if (with_bytes) {
        putchar(' ');
        for (i = 0; i < len; i++)
            printf("%02x", out[i]);
    }
    putchar('\n');
}

int main(void) {
    static const void *args[MAX_ARGS];
    static size_t lens[MAX_ARGS];
    char *line = NULL, *cmd, *word, *save = NULL;
    size_t cap = 0, n;
    ssize_t got;

    while ((got = getline(&line, &cap, stdin)) > 0) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        int rc = 0, bad = 0;

        if (line[got - 1] == '\n')
            line[got - 1] = '\0';
        cmd = strtok_r(line, " ", &save);
        if (cmd == NULL)
            continue;
        for (n = 0; (word = strtok_r(NULL, " ", &save)) != NULL;) {
            long len = hex_decode(word);
            if (len < 0 || n == MAX_ARGS) {
                bad = 1;
                break;
            }
            args[n] = word;
            lens[n++] = (size_t)len;
        }
        if (bad) {
            printf("err bad-request\n");
        } else if (strcmp(cmd, "merge") == 0) {
            rc = yjs_merge(args, lens, n, &out, &out_len);
            answer(rc, out, out_len, 1);
        } else if (strcmp(cmd, "sv") == 0 && n == 1) {
            rc = yjs_state_vector(args[0], lens[0], &out, &out_len);
            answer(rc, out, out_len, 1);
        } else if (strcmp(cmd, "diff") == 0 && n == 2) {
            rc = yjs_diff(args[0], lens[0], args[1], lens[1], &out, &out_len);
            answer(rc, out, out_len, 1);
        } else if (strcmp(cmd, "gc") == 0 && n == 1) {
            rc = yjs_gc_deleted(args[0], lens[0], &out, &out_len);
            answer(rc, out, out_len, 1);
        } else if (strcmp(cmd, "check") == 0 && n == 1) {
            answer(yjs_update_check(args[0], lens[0]), NULL, 0, 0);
        } else {
            printf("err bad-request\n");
        }
        free(out);
        fflush(stdout);
    }
    free(line);
    return 0;
}
