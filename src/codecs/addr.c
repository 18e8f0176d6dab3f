/* addr: binary client addresses, their text, and CIDR lists (see addr.h). */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc.h"
#include "party.h"

int party__addr_from_sockaddr(party__addr *out, const void *sockaddr) {
    const struct sockaddr *sa = sockaddr;
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = sockaddr;
        out->family = PARTY__ADDR_V4;
        memcpy(out->bytes, &in->sin_addr, 4);
        out->port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sockaddr;
        const uint8_t *b = (const uint8_t *)&in6->sin6_addr;
        out->port = ntohs(in6->sin6_port);
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they
         * are IPv4 clients for limits and logs all the same. */
        if (memcmp(b, v4_mapped, sizeof(v4_mapped)) == 0) {
            out->family = PARTY__ADDR_V4;
            memcpy(out->bytes, b + 12, 4);
        } else {
            out->family = PARTY__ADDR_V6;
            memcpy(out->bytes, b, 16);
        }
        return 0;
    }
    return PARTY_EINVAL;
}

int party__addr_parse(party__slice text, party__addr *out) {
    char buf[PARTY__ADDR_TEXT_MAX];

    memset(out, 0, sizeof(*out));
    if (text.len == 0 || text.len >= sizeof(buf))
        return PARTY_EINVAL;
    memcpy(buf, text.ptr, text.len);
    buf[text.len] = '\0';
    if (memchr(buf, ':', text.len) == NULL) {
        if (inet_pton(AF_INET, buf, out->bytes) != 1)
            return PARTY_EINVAL;
        out->family = PARTY__ADDR_V4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->bytes) != 1) {
        memset(out->bytes, 0, sizeof(out->bytes));
        return PARTY_EINVAL;
    }
    out->family = PARTY__ADDR_V6;
    return 0;
}

char *party__addr_text(const party__addr *addr, char *out, size_t size) {
    char text[PARTY__ADDR_TEXT_MAX];
    const char *s = "-";

    if (size == 0)
        return out;
    if (addr->family == PARTY__ADDR_V4 && inet_ntop(AF_INET, addr->bytes, text, sizeof(text)))
        s = text;
    else if (addr->family == PARTY__ADDR_V6 && inet_ntop(AF_INET6, addr->bytes, text, sizeof(text)))
        s = text;
    snprintf(out, size, "%s", s);
    return out;
}

int party__addr_text_checked(const party__addr *addr, char *out, size_t size) {
    char text[PARTY__ADDR_TEXT_MAX];
    size_t len;

    if (out == NULL || size == 0)
        return PARTY_EINVAL;
    out[0] = '\0';
    if (addr == NULL || addr->family == PARTY__ADDR_NONE)
        return PARTY_ENOTFOUND;
    party__addr_text(addr, text, sizeof(text));
    len = strlen(text);
    if (len >= size)
        return PARTY_ETOOBIG;
    memcpy(out, text, len + 1);
    return 0;
}

int party__addr_equal(const party__addr *a, const party__addr *b) {
    return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

/* One "net[/bits]" item of a list. */
static int cidr_parse(party__slice item, party__cidr *out) {
    const char *slash = memchr(item.ptr, '/', item.len);
    size_t addr_len = slash != NULL ? (size_t)(slash - item.ptr) : item.len;
    unsigned max, bits, i;

    if (party__addr_parse(party__slice_make(item.ptr, addr_len), &out->net) != 0)
        return PARTY_EINVAL;
    max = out->net.family == PARTY__ADDR_V4 ? 32 : 128;
    bits = max;
    if (slash != NULL) {
        size_t n = item.len - addr_len - 1;
        if (n == 0 || n > 3)
            return PARTY_EINVAL;
        bits = 0;
        for (i = 0; i < n; i++) {
            char c = slash[1 + i];
            if (c < '0' || c > '9')
                return PARTY_EINVAL;
            bits = bits * 10 + (unsigned)(c - '0');
        }
        if (bits > max)
            return PARTY_EINVAL;
    }
    out->bits = (uint8_t)bits;
    /* Host bits are cleared so matching compares whole bytes and a mask. */
    for (i = bits; i < 128; i++)
        out->net.bytes[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    return 0;
}

static int is_separator(char c) {
    return c == ',' || c == ' ' || c == '\t';
}

int party__cidr_list_parse(const char *text, party__cidr_list *list) {
    const char *p = text;
    size_t cap = 0;

    list->items = NULL;
    list->n = 0;
    for (;;) {
        const char *start;
        party__cidr item;

        while (*p != '\0' && is_separator(*p))
            p++;
        if (*p == '\0')
            return 0;
        start = p;
        while (*p != '\0' && !is_separator(*p))
            p++;
        if (cidr_parse(party__slice_make(start, (size_t)(p - start)), &item) != 0) {
            party__cidr_list_free(list);
            return PARTY_EINVAL;
        }
        if (list->n == cap) {
            size_t grown = cap == 0 ? 4 : cap * 2;
            party__cidr *items = party__realloc(list->items, grown * sizeof(*items));
            if (items == NULL) {
                party__cidr_list_free(list);
                return PARTY_ENOMEM;
            }
            list->items = items;
            cap = grown;
        }
        list->items[list->n++] = item;
    }
}

void party__cidr_list_free(party__cidr_list *list) {
    party__free(list->items);
    list->items = NULL;
    list->n = 0;
}

int party__cidr_list_match(const party__cidr_list *list, const party__addr *addr) {
    size_t i;

    for (i = 0; i < list->n; i++) {
        const party__cidr *c = &list->items[i];
        unsigned whole = c->bits / 8, rest = c->bits % 8;
        if (c->net.family != addr->family)
            continue;
        if (memcmp(c->net.bytes, addr->bytes, whole) != 0)
            continue;
        if (rest != 0 &&
            ((addr->bytes[whole] ^ c->net.bytes[whole]) & (uint8_t)(0xff00u >> rest)) != 0)
            continue;
        return 1;
    }
    return 0;
}
