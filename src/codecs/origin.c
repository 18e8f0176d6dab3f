/* origin: parses origins (RFC 6454 serialization: scheme "://" host
 * [":" port]) from an allow-list and from a request's Origin field, and
 * matches one against the other. Nothing is allocated: each check walks
 * the list text. */
#include "origin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "party.h"

/* One parsed origin; host points into the text it came from. */
typedef struct origin {
    int https;
    const char *host;
    size_t host_len;
    unsigned port;
    int wildcard; /* host was "*.rest": host is rest */
} origin;

static int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A DNS name or IPv4 address ([A-Za-z0-9.-_], labels not empty) or a
 * bracketed IPv6 literal. */
static int host_valid(const char *h, size_t len) {
    size_t i;

    if (len == 0)
        return 0;
    if (h[0] == '[') {
        if (len < 3 || h[len - 1] != ']')
            return 0;
        for (i = 1; i + 1 < len; i++) {
            unsigned char c = (unsigned char)h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == ':' || c == '.'))
                return 0;
        }
        return 1;
    }
    if (h[0] == '.' || h[len - 1] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '.' && h[i + 1] == '.')
            return 0;
        if (!(is_alnum(c) || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

/* Parses s[0..len) as an origin; wildcard_ok: its host may be "*.rest".
 * 0, or a static reason. */
static const char *origin_parse(const char *s, size_t len, origin *o, int wildcard_ok) {
    size_t i, host_end;

    memset(o, 0, sizeof(*o));
    if (len > PARTY__ORIGIN_MAX)
        return "longer than 255 bytes";
    if (len >= 7 && strncasecmp(s, "http://", 7) == 0) {
        i = 7;
    } else if (len >= 8 && strncasecmp(s, "https://", 8) == 0) {
        o->https = 1;
        i = 8;
    } else {
        return "not http:// or https://";
    }
    o->port = o->https ? 443 : 80;
    if (wildcard_ok && len - i >= 2 && s[i] == '*' && s[i + 1] == '.') {
        o->wildcard = 1;
        i += 2;
    }
    host_end = i;
    if (host_end < len && s[host_end] == '[') {
        while (host_end < len && s[host_end] != ']')
            host_end++;
        if (host_end < len)
            host_end++;
    } else {
        while (host_end < len && s[host_end] != ':' && s[host_end] != '/')
            host_end++;
    }
    o->host = s + i;
    o->host_len = host_end - i;
    if (!host_valid(o->host, o->host_len) || (o->wildcard && o->host[0] == '['))
        return "no valid host (a name, an IPv4 address or [IPv6])";
    if (host_end < len && s[host_end] == ':') {
        unsigned port = 0;
        size_t digits = 0;
        for (i = host_end + 1; i < len && s[i] >= '0' && s[i] <= '9' && digits < 6; i++, digits++)
            port = port * 10 + (unsigned)(s[i] - '0');
        if (digits == 0 || digits > 5 || port == 0 || port > 65535)
            return "its port is not 1-65535";
        o->port = port;
        host_end = i;
    }
    if (host_end != len)
        return "an origin is scheme://host[:port], with no path";
    return NULL;
}

static int origin_match(const origin *entry, const origin *o) {
    if (entry->https != o->https || entry->port != o->port)
        return 0;
    if (!entry->wildcard)
        return entry->host_len == o->host_len &&
               strncasecmp(entry->host, o->host, o->host_len) == 0;
    /* at least one label before ".rest" */
    return o->host_len > entry->host_len + 1 && o->host[o->host_len - entry->host_len - 1] == '.' &&
           strncasecmp(o->host + o->host_len - entry->host_len, entry->host, entry->host_len) == 0;
}

/* The next entry of the list from *p on: [start, start + len); 0 at the end. */
static int next_entry(const char **p, const char **start, size_t *len) {
    const char *s = *p, *end;

    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (*s == '\0')
        return 0;
    end = s;
    while (*end != '\0' && *end != ',')
        end++;
    *p = end;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *start = s;
    *len = (size_t)(end - s);
    return 1;
}

int party__origin_list_check(const char *list, const char *flag, char *why, size_t why_len) {
    const char *p = list != NULL ? list : "", *start;
    size_t len, n = 0;

    while (next_entry(&p, &start, &len)) {
        origin o;
        const char *reason = origin_parse(start, len, &o, 1);
        if (reason != NULL) {
            snprintf(why, why_len, "%s: '%.*s' is not an origin: %s", flag,
                     (int)(len > 80 ? 80 : len), start, reason);
            return PARTY_EINVAL;
        }
        n++;
    }
    if (n == 0) {
        snprintf(why, why_len, "%s: no origin in the list (scheme://host[:port], comma-separated)",
                 flag);
        return PARTY_EINVAL;
    }
    return 0;
}

int party__origin_allowed(const char *list, party__slice value) {
    const char *p = list, *start;
    size_t len;
    origin o;

    if (list == NULL)
        return 1;
    if (value.ptr == NULL || origin_parse(value.ptr, value.len, &o, 0) != NULL)
        return 0;
    while (next_entry(&p, &start, &len)) {
        origin entry;
        if (origin_parse(start, len, &entry, 1) == NULL && origin_match(&entry, &o))
            return 1;
    }
    return 0;
}
