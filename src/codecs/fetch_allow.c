/* fetch_allow: parses the outbound HTTP allow-list and answers whether a
 * URL may be requested and whether an address may be connected to (see
 * fetch_allow.h). */
#include "fetch_allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "party.h"
#include "alloc.h"

enum { ENTRY_ANY, ENTRY_PREFIX, ENTRY_HOST, ENTRY_NET };

typedef struct allow_entry {
    int kind;
    int https;  /* PREFIX */
    int port;   /* PREFIX: always set; NET: 0 for any */
    char *host; /* PREFIX, HOST: lowercase, IPv6 without brackets */
    char *path; /* PREFIX: starts with '/' */
    int family; /* NET: 4 or 6 */
    unsigned char net[16];
    int bits; /* NET: prefix length */
} allow_entry;

struct party__allow {
    allow_entry *entries;
    size_t n;
};

void party__allow_free(party__allow *allow) {
    size_t i;
    if (allow == NULL)
        return;
    for (i = 0; i < allow->n; i++) {
        party__free(allow->entries[i].host);
        party__free(allow->entries[i].path);
    }
    party__free(allow->entries);
    party__free(allow);
}

size_t party__allow_count(const party__allow *allow) {
    return allow != NULL ? allow->n : 0;
}

/* ---- pieces ---- */

/* A port: 1..65535 in decimal, nothing else. -1 if not. */
static int parse_port(const char *s, size_t len) {
    int port = 0;
    size_t i;
    if (len == 0 || len > 5)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

/* An IP literal into family/addr: 0, or -1. */
static int parse_ip(const char *s, size_t len, int *family, unsigned char addr[16]) {
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = 6;
        return 0;
    }
    return -1;
}

/* A host name: letters, digits, '-' and '.', labels of 1..63 bytes, not
 * all digits and dots (that would be an IP address in a form we do not
 * take, such as 2130706433). */
static int host_name_valid(const char *s, size_t len) {
    size_t i, label = 0;
    int letters = 0;
    if (len == 0 || len > 253)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-')
            return 0;
        if (!isdigit(c))
            letters = 1;
        if (++label > 63)
            return 0;
    }
    return label > 0 && letters;
}

static char *lower_copy(const char *s, size_t len) {
    char *out = party__malloc(len + 1);
    size_t i;
    if (out == NULL)
        return NULL;
    for (i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
    return out;
}

/* ---- entries ---- */

static int fail(char *why, size_t why_len, const char *entry, size_t len, const char *what) {
    if (why != NULL && why_len > 0)
        snprintf(why, why_len, "--fetch-allow entry \"%.*s\": %s", (int)(len > 200 ? 200 : len),
                 entry, what);
    return PARTY_EINVAL;
}

/* http[s]://host[:port][/path] */
static int parse_prefix(const char *s, size_t len, allow_entry *e, char *why, size_t why_len) {
    size_t scheme = strncasecmp(s, "https://", 8) == 0 ? 8 : 7;
    const char *host = s + scheme, *end = s + len, *auth_end, *port_at = NULL, *p;
    size_t host_len;
    unsigned char addr[16];
    int family;

    e->kind = ENTRY_PREFIX;
    e->https = scheme == 8;
    for (auth_end = host; auth_end < end && *auth_end != '/'; auth_end++)
        if (*auth_end == '?' || *auth_end == '#' || *auth_end == '@')
            return fail(why, why_len, s, len, "a URL prefix has no query, fragment or user");
    if (host < auth_end && *host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (close == NULL)
            return fail(why, why_len, s, len, "unclosed '[' in the host");
        if (parse_ip(host + 1, (size_t)(close - host - 1), &family, addr) != 0 || family != 6)
            return fail(why, why_len, s, len, "not an IPv6 address between '[' and ']'");
        host_len = (size_t)(close - host - 1);
        if (close + 1 < auth_end) {
            if (close[1] != ':')
                return fail(why, why_len, s, len, "unexpected text after ']'");
            port_at = close + 2;
        }
        e->host = lower_copy(host + 1, host_len);
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));
        host_len = (size_t)((colon != NULL ? colon : auth_end) - host);
        if (colon != NULL)
            port_at = colon + 1;
        if (parse_ip(host, host_len, &family, addr) != 0 && !host_name_valid(host, host_len))
            return fail(why, why_len, s, len, "not a host name or IP address");
        e->host = lower_copy(host, host_len);
    }
    if (e->host == NULL)
        return PARTY_ENOMEM;
    e->port = e->https ? 443 : 80;
    if (port_at != NULL && (e->port = parse_port(port_at, (size_t)(auth_end - port_at))) < 0)
        return fail(why, why_len, s, len, "the port is not 1..65535");
    for (p = auth_end; p < end; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
            return fail(why, why_len, s, len, "the path has spaces, controls, '?' or '#'");
    e->path =
        auth_end < end ? party__strndup(auth_end, (size_t)(end - auth_end)) : party__strdup("/");
    return e->path != NULL ? 0 : PARTY_ENOMEM;
}

/* ADDR[/BITS][:PORT] for IPv4; [ADDR][/BITS][:PORT] or ADDR[/BITS] for
 * IPv6. 1 if parsed, 0 if it is not an address entry at all, <0 error. */
static int parse_net(const char *s, size_t len, allow_entry *e, char *why, size_t why_len) {
    const char *end = s + len, *addr_end, *rest;
    const char *slash, *colon;
    size_t addr_len;
    int max_bits, bracketed = s[0] == '[';

    if (bracketed) {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return fail(why, why_len, s, len, "unclosed '['");
        if (parse_ip(s + 1, (size_t)(close - s - 1), &e->family, e->net) != 0 || e->family != 6)
            return fail(why, why_len, s, len, "not an IPv6 address between '[' and ']'");
        rest = close + 1;
    } else {
        /* The address runs to the first '/' or, for IPv4, ':'. */
        slash = memchr(s, '/', len);
        addr_end = slash != NULL ? slash : end;
        colon = memchr(s, ':', (size_t)(addr_end - s));
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(addr_end - colon - 1)) == NULL &&
            memchr(s, '.', (size_t)(colon - s)) != NULL)
            addr_end = colon; /* 1.2.3.4:80 */
        addr_len = (size_t)(addr_end - s);
        if (parse_ip(s, addr_len, &e->family, e->net) != 0)
            return 0;
        rest = addr_end;
    }
    e->kind = ENTRY_NET;
    max_bits = e->family == 4 ? 32 : 128;
    e->bits = max_bits;
    if (rest < end && *rest == '/') {
        const char *q = rest + 1;
        int bits = 0, digits = 0;
        while (q < end && *q >= '0' && *q <= '9' && digits < 4) {
            bits = bits * 10 + (*q - '0');
            q++;
            digits++;
        }
        if (digits == 0 || bits > max_bits)
            return fail(why, why_len, s, len, "the prefix length is out of range");
        e->bits = bits;
        rest = q;
    }
    if (rest < end) {
        if (*rest != ':' || (!bracketed && e->family == 6))
            return fail(why, why_len, s, len,
                        "unexpected text after the address (an IPv6 address with a port is "
                        "written [addr]:port)");
        if ((e->port = parse_port(rest + 1, (size_t)(end - rest - 1))) < 0)
            return fail(why, why_len, s, len, "the port is not 1..65535");
    }
    /* Host bits set below the prefix are a typo more often than not. */
    {
        int i;
        for (i = e->bits; i < max_bits; i++)
            if (e->net[i / 8] & (0x80 >> (i % 8)))
                return fail(why, why_len, s, len,
                            "the address has bits set past the prefix length");
    }
    return 1;
}

/* "xyz://" anywhere: a URL of a scheme other than http(s). */
static int has_scheme(const char *s, size_t len) {
    size_t i;
    for (i = 0; i + 3 <= len; i++)
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
            return 1;
    return 0;
}

static int parse_entry(const char *s, size_t len, allow_entry *e, char *why, size_t why_len) {
    int r;

    if (len > PARTY__ALLOW_MAX_ENTRY)
        return fail(why, why_len, s, len, "longer than 2048 bytes");
    if (len == 1 && s[0] == '*') {
        e->kind = ENTRY_ANY;
        return 0;
    }
    if ((len >= 7 && strncasecmp(s, "http://", 7) == 0) ||
        (len >= 8 && strncasecmp(s, "https://", 8) == 0))
        return parse_prefix(s, len, e, why, why_len);
    if (has_scheme(s, len))
        return fail(why, why_len, s, len, "only http:// and https:// URLs are allowed");
    r = parse_net(s, len, e, why, why_len);
    if (r < 0)
        return r;
    if (r == 1)
        return 0;
    if (!host_name_valid(s, len))
        return fail(why, why_len, s, len,
                    "not a URL prefix, host name, IP address or CIDR (or an address in a form "
                    "other than dotted decimal)");
    e->kind = ENTRY_HOST;
    e->host = lower_copy(s, len);
    return e->host != NULL ? 0 : PARTY_ENOMEM;
}

int party__allow_parse(const char *text, party__allow **out, char *why, size_t why_len) {
    party__allow *allow;
    const char *p = text != NULL ? text : "";
    size_t cap = 0;
    int r;

    *out = NULL;
    allow = party__calloc(1, sizeof(*allow));
    if (allow == NULL)
        return PARTY_ENOMEM;
    while (*p != '\0') {
        const char *start, *end;
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        start = p;
        while (*p != '\0' && *p != ',')
            p++;
        end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (allow->n == PARTY__ALLOW_MAX_ENTRIES) {
            if (why != NULL && why_len > 0)
                snprintf(why, why_len, "--fetch-allow: more than %d entries",
                         PARTY__ALLOW_MAX_ENTRIES);
            party__allow_free(allow);
            return PARTY_EINVAL;
        }
        if (allow->n == cap) {
            size_t grown_cap = cap == 0 ? 4 : cap * 2;
            allow_entry *grown = party__realloc(allow->entries, grown_cap * sizeof(*grown));
            if (grown == NULL) {
                party__allow_free(allow);
                return PARTY_ENOMEM;
            }
            allow->entries = grown;
            cap = grown_cap;
        }
        memset(&allow->entries[allow->n], 0, sizeof(allow->entries[0]));
        /* Counted first: a half-filled entry is freed with the list. */
        allow->n++;
        r = parse_entry(start, (size_t)(end - start), &allow->entries[allow->n - 1], why, why_len);
        if (r != 0) {
            party__allow_free(allow);
            return r;
        }
    }
    *out = allow;
    return 0;
}

/* ---- checks ---- */

static int net_covers(const allow_entry *e, int family, const unsigned char *addr) {
    int full = e->bits / 8, rest = e->bits % 8;
    if (e->family != family)
        return 0;
    if (memcmp(e->net, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((e->net[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

static int path_under(const char *prefix, const char *path) {
    size_t n = strlen(prefix);
    if (strncmp(prefix, path, n) != 0)
        return 0;
    /* "/v1" covers "/v1" and "/v1/x", not "/v10". */
    return prefix[n - 1] == '/' || path[n] == '\0' || path[n] == '/';
}

int party__allow_url(const party__allow *allow, int https, const char *host, int port,
                     const char *path) {
    unsigned char addr[16];
    int family = 0, is_ip;
    size_t i;

    if (allow == NULL || host == NULL || path == NULL)
        return 0;
    is_ip = parse_ip(host, strlen(host), &family, addr) == 0;
    for (i = 0; i < allow->n; i++) {
        const allow_entry *e = &allow->entries[i];
        switch (e->kind) {
        case ENTRY_ANY:
            return 1;
        case ENTRY_HOST:
            if (strcasecmp(e->host, host) == 0)
                return 1;
            break;
        case ENTRY_PREFIX:
            if (e->https == https && e->port == port && strcasecmp(e->host, host) == 0 &&
                path_under(e->path, path))
                return 1;
            break;
        case ENTRY_NET:
            if (is_ip && (e->port == 0 || e->port == port) && net_covers(e, family, addr))
                return 1;
            break;
        }
    }
    return 0;
}

static int v4_special(const unsigned char *a) {
    return a[0] == 0 ||                            /* 0.0.0.0/8 */
           a[0] == 10 ||                           /* 10/8 */
           (a[0] == 100 && (a[1] & 0xc0) == 64) || /* 100.64/10 */
           a[0] == 127 ||                          /* 127/8 */
           (a[0] == 169 && a[1] == 254) ||         /* 169.254/16 */
           (a[0] == 172 && (a[1] & 0xf0) == 16) || /* 172.16/12 */
           (a[0] == 192 && a[1] == 168) ||         /* 192.168/16 */
           a[0] >= 224;                            /* multicast, reserved, broadcast */
}

/* The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or
 * IPv4-compatible (::a.b.c.d) IPv6 address, or NULL. */
static const unsigned char *v4_inside(const unsigned char *a) {
    static const unsigned char zeros[12] = {0};
    if (memcmp(a, zeros, 10) == 0 &&
        ((a[10] == 0xff && a[11] == 0xff) || (a[10] == 0 && a[11] == 0)))
        return a + 12;
    return NULL;
}

int party__addr_special(int family, const unsigned char *addr) {
    const unsigned char *v4;
    if (family == 4)
        return v4_special(addr);
    if (family != 6)
        return 1;
    v4 = v4_inside(addr);
    if (v4 != NULL)
        return v4_special(v4);         /* ::1 and :: land here too: 0.0.0.1 and 0.0.0.0 */
    return (addr[0] & 0xfe) == 0xfc || /* fc00::/7 */
           (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) || /* fe80::/10 */
           addr[0] == 0xff;                                 /* multicast */
}

int party__allow_addr(const party__allow *allow, int family, const unsigned char *addr, int port) {
    const unsigned char *v4 = family == 6 ? v4_inside(addr) : NULL;
    size_t i;

    if (allow == NULL)
        return 0;
    for (i = 0; i < allow->n; i++) {
        const allow_entry *e = &allow->entries[i];
        if (e->kind != ENTRY_NET || (e->port != 0 && e->port != port))
            continue;
        if (net_covers(e, family, addr) || (v4 != NULL && net_covers(e, 4, v4)))
            return 1;
    }
    return 0;
}
