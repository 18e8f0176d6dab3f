/* url: percent-decoding and query-string lookup. */
#include "url.h"

#include <string.h>

int party__url_hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int party__url_decode(party__slice src, char *out, size_t cap, int plus_as_space) {
    size_t i, n = 0;

    for (i = 0; i < src.len; i++) {
        char c = src.ptr[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= src.len)
                return -1;
            hi = party__url_hex_value(src.ptr[i + 1]);
            lo = party__url_hex_value(src.ptr[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        }
        /* A NUL, raw or escaped, would cut the C string short. */
        if (c == '\0')
            return -1;
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    if (n >= cap)
        return -1;
    out[n] = '\0';
    return (int)n;
}

party__slice party__url_query_find(party__slice query, const char *name) {
    party__slice none = {NULL, 0};
    size_t name_len = strlen(name);
    size_t i = 0;

    while (i <= query.len && query.len > 0) {
        size_t start = i, eq, end;
        char decoded[256];
        int n;

        while (i < query.len && query.ptr[i] != '&')
            i++;
        end = i;
        for (eq = start; eq < end && query.ptr[eq] != '='; eq++)
            ;
        n = party__url_decode(party__slice_make(query.ptr + start, eq - start), decoded,
                              sizeof(decoded), 1);
        if (n >= 0 && (size_t)n == name_len && memcmp(decoded, name, name_len) == 0) {
            if (eq == end)
                return party__slice_make(query.ptr + end, 0);
            return party__slice_make(query.ptr + eq + 1, end - eq - 1);
        }
        i++;
    }
    return none;
}

static int is_unreserved(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int party__url_decode_unreserved(party__slice src, char *out, size_t cap, party__slice *norm) {
    size_t i = 0, n = 0;

    while (i < src.len) {
        int c = (unsigned char)src.ptr[i], len = 1;
        if (c == '%') {
            /* A malformed escape is refused, not copied: "%4%41" must not
             * become "%4A", an escape the client never sent. */
            int hi = i + 2 < src.len ? party__url_hex_value(src.ptr[i + 1]) : -1;
            int lo = i + 2 < src.len ? party__url_hex_value(src.ptr[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            if (is_unreserved(hi * 16 + lo)) {
                c = hi * 16 + lo;
                len = 3;
            }
        }
        if (n == cap)
            return -1;
        out[n++] = (char)c;
        i += (size_t)len;
    }
    *norm = party__slice_make(out, n);
    return 0;
}
