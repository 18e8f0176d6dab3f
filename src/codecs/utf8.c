/* utf8: a table-driven DFA that validates UTF-8 incrementally. Each byte maps
 * to a class and each (state, class) to the next state; the tables hold only
 * RFC 3629's well-formed sequences, so overlongs, surrogates and code points
 * above U+10FFFF have no path back to ACCEPT. Owns no memory. */
#include "utf8.h"

#include <string.h>

/* Byte classes. The second byte is where overlongs (E0, F0), surrogates (ED)
 * and code points above U+10FFFF (F4) show, so those leads get classes of
 * their own; C0, C1 and F5..FF can start nothing valid (XX). */
enum {
    AS, /* 00..7F */
    LO, /* 80..8F continuation */
    MI, /* 90..9F continuation */
    HI, /* A0..BF continuation */
    XX, /* C0, C1, F5..FF */
    L2, /* C2..DF */
    E0, /* E0: next A0..BF */
    L3, /* E1..EC, EE, EF */
    ED, /* ED: next 80..9F */
    F0, /* F0: next 90..BF */
    L4, /* F1..F3 */
    F4, /* F4: next 80..8F */
    N_CLASSES
};

/* clang-format off */
static const uint8_t byte_class[256] = {
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 00..0F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 10..1F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 20..2F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 30..3F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 40..4F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 50..5F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 60..6F */
    AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, AS, /* 70..7F */
    LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, LO, /* 80..8F */
    MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, MI, /* 90..9F */
    HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, /* A0..AF */
    HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, HI, /* B0..BF */
    XX, XX, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* C0..CF */
    L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, /* D0..DF */
    E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, ED, L3, L3, /* E0..EF */
    F0, L4, L4, L4, F4, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, /* F0..FF */
};
/* clang-format on */

/* States. 0 and 1 are fixed by utf8.h; the others say what must follow. */
enum {
    OK = PARTY__UTF8_ACCEPT,
    NO = PARTY__UTF8_REJECT,
    N1,  /* one more continuation byte */
    N2,  /* two more */
    N3,  /* three more */
    AE0, /* after E0: A0..BF, then one more */
    AED, /* after ED: 80..9F, then one more */
    AF0, /* after F0: 90..BF, then two more */
    AF4, /* after F4: 80..8F, then two more */
    N_STATES
};

/* clang-format off */
static const uint8_t transition[N_STATES][N_CLASSES] = {
    /*      AS  LO  MI  HI  XX  L2  E0   L3  ED   F0   L4  F4 */
    [OK] = {OK, NO, NO, NO, NO, N1, AE0, N2, AED, AF0, N3, AF4},
    [NO] = {NO, NO, NO, NO, NO, NO, NO,  NO, NO,  NO,  NO, NO},
    [N1] = {NO, OK, OK, OK, NO, NO, NO,  NO, NO,  NO,  NO, NO},
    [N2] = {NO, N1, N1, N1, NO, NO, NO,  NO, NO,  NO,  NO, NO},
    [N3] = {NO, N2, N2, N2, NO, NO, NO,  NO, NO,  NO,  NO, NO},
    [AE0] = {NO, NO, NO, N1, NO, NO, NO, NO, NO,  NO,  NO, NO},
    [AED] = {NO, N1, N1, NO, NO, NO, NO, NO, NO,  NO,  NO, NO},
    [AF0] = {NO, NO, N2, N2, NO, NO, NO, NO, NO,  NO,  NO, NO},
    [AF4] = {NO, N2, NO, NO, NO, NO, NO, NO, NO,  NO,  NO, NO},
};
/* clang-format on */

uint32_t party__utf8_feed(uint32_t state, const void *data, size_t len) {
    const unsigned char *p = data;
    size_t i = 0;

    if (state >= N_STATES)
        return NO;
    while (i < len && state != NO) {
        /* Chat text is mostly ASCII: at a boundary, skip it 8 bytes at a time. */
        if (state == OK) {
            while (len - i >= 8) {
                uint64_t word;
                memcpy(&word, p + i, 8);
                if (word & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        state = transition[state][byte_class[p[i]]];
        i++;
    }
    return state;
}

int party__utf8_valid(const void *data, size_t len) {
    return party__utf8_feed(PARTY__UTF8_ACCEPT, data, len) == PARTY__UTF8_ACCEPT;
}
