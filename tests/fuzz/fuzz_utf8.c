/* fuzz_utf8: the incremental validator must agree with itself when the
 * input is split (at a point from the first byte, and byte by byte) and with
 * a plain decode-then-check-range reference written here. */
#include <stdint.h>
#include <stdlib.h>

#include "utf8.h"

static int reference_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint32_t cp, min;
        size_t n, k;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if ((s[i] & 0xE0) == 0xC0) {
            n = 2, cp = s[i] & 0x1F, min = 0x80;
        } else if ((s[i] & 0xF0) == 0xE0) {
            n = 3, cp = s[i] & 0x0F, min = 0x800;
        } else if ((s[i] & 0xF8) == 0xF0) {
            n = 4, cp = s[i] & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i < n)
            return 0;
        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint32_t whole, split, bytewise = PARTY__UTF8_ACCEPT;
    size_t cut, i;

    if (size < 1)
        return 0;
    cut = data[0] % size;
    data++;
    size--;
    if (cut > size)
        cut = size;

    whole = party__utf8_feed(PARTY__UTF8_ACCEPT, data, size);
    split = party__utf8_feed(PARTY__UTF8_ACCEPT, data, cut);
    split = party__utf8_feed(split, data + cut, size - cut);
    for (i = 0; i < size; i++)
        bytewise = party__utf8_feed(bytewise, data + i, 1);
    if (whole != split || whole != bytewise)
        abort();
    if ((whole == PARTY__UTF8_ACCEPT) != reference_valid(data, size))
        abort();
    if (party__utf8_valid(data, size) != reference_valid(data, size))
        abort();
    return 0;
}
