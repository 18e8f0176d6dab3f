/* forwarded: the client behind trusted proxies, from Forwarded or
 * X-Forwarded-For (see forwarded.h). */
#include "forwarded.h"

#include <string.h>

static party__slice trim(party__slice s) {
    while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t'))
        s.ptr++, s.len--;
    while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

static int all_digits(const char *p, size_t n) {
    size_t i;
    if (n == 0 || n > 5)
        return 0;
    for (i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

/* One hop: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]"
 * or "[2001:db8::1]:4711", quoted or not. 0 or -1. */
static int hop_parse(party__slice s, party__addr *out) {
    const char *colon;

    s = trim(s);
    if (s.len >= 2 && s.ptr[0] == '"' && s.ptr[s.len - 1] == '"')
        s = party__slice_make(s.ptr + 1, s.len - 2);
    if (s.len > 0 && s.ptr[0] == '[') {
        const char *close = memchr(s.ptr, ']', s.len);
        size_t rest;
        if (close == NULL)
            return -1;
        rest = s.len - (size_t)(close + 1 - s.ptr);
        if (rest != 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return -1;
        if (party__addr_parse(party__slice_make(s.ptr + 1, (size_t)(close - s.ptr - 1)), out) !=
                0 ||
            out->family != PARTY__ADDR_V6)
            return -1;
        return 0;
    }
    colon = memchr(s.ptr, ':', s.len);
    if (colon != NULL && memchr(colon + 1, ':', s.len - (size_t)(colon + 1 - s.ptr)) == NULL) {
        /* one colon: IPv4 and a port */
        if (!all_digits(colon + 1, s.len - (size_t)(colon + 1 - s.ptr)))
            return -1;
        s.len = (size_t)(colon - s.ptr);
        if (party__addr_parse(s, out) != 0 || out->family != PARTY__ADDR_V4)
            return -1;
        return 0;
    }
    return party__addr_parse(s, out) == 0 ? 0 : -1;
}

/* The for= value of one Forwarded element ("for=x;proto=https"), or a
 * slice with ptr NULL. */
static party__slice forwarded_for(party__slice element) {
    party__slice none = {NULL, 0};
    size_t i = 0;

    while (i < element.len) {
        size_t start = i;
        party__slice pair;
        while (i < element.len && element.ptr[i] != ';')
            i++;
        pair = trim(party__slice_make(element.ptr + start, i - start));
        i++;
        if (pair.len >= 4 && (pair.ptr[0] == 'f' || pair.ptr[0] == 'F') &&
            (pair.ptr[1] == 'o' || pair.ptr[1] == 'O') &&
            (pair.ptr[2] == 'r' || pair.ptr[2] == 'R') && pair.ptr[3] == '=')
            return party__slice_make(pair.ptr + 4, pair.len - 4);
    }
    return none;
}

int party__forwarded_client(const party__http_header *headers, size_t n_headers,
                            const party__cidr_list *trusted, party__addr *client) {
    const char *name = "X-Forwarded-For";
    int changed = 0;
    size_t i;

    if (trusted == NULL || trusted->n == 0 || !party__cidr_list_match(trusted, client))
        return 0;
    for (i = 0; i < n_headers; i++)
        if (party__slice_eq_nocase(headers[i].name, "Forwarded")) {
            name = "Forwarded";
            break;
        }
    /* Right to left: header lines from the last, elements from the last. */
    for (i = n_headers; i-- > 0;) {
        party__slice v = headers[i].value;
        size_t end = v.len;
        if (!party__slice_eq_nocase(headers[i].name, name))
            continue;
        for (;;) {
            size_t start = end;
            party__slice element, hop;
            party__addr addr;
            while (start > 0 && v.ptr[start - 1] != ',')
                start--;
            element = party__slice_make(v.ptr + start, end - start);
            hop = name[0] == 'F' ? forwarded_for(element) : element;
            if (hop.ptr == NULL || hop_parse(hop, &addr) != 0)
                return changed;
            *client = addr;
            changed = 1;
            if (!party__cidr_list_match(trusted, client))
                return 1;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    return changed;
}
