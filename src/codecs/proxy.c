/* proxy: the PROXY protocol header, versions 1 (text) and 2 (binary), as
 * HAProxy specifies it. Parses from the start of what was read so far;
 * nothing is copied or allocated (see proxy.h). */
#include "proxy.h"

#include <string.h>

static const char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";

static int fail(const char **error, const char *what) {
    *error = what;
    return PARTY__PROXY_ERROR;
}

/* 1 when data (len bytes) begins with prefix, or is a beginning of it. */
static int starts_as(const char *data, size_t len, const char *prefix, size_t prefix_len) {
    return memcmp(data, prefix, len < prefix_len ? len : prefix_len) == 0;
}

/* A decimal port, 0-65535, without sign or leading zeros. */
static int port_parse(party__slice s, uint16_t *out) {
    unsigned v = 0;
    size_t i;

    if (s.len == 0 || s.len > 5 || (s.len > 1 && s.ptr[0] == '0'))
        return -1;
    for (i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s.ptr[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* The next space-separated field of line [*at, end): single spaces only. */
static party__slice next_field(const char *line, size_t end, size_t *at) {
    size_t start = *at, i = start;

    while (i < end && line[i] != ' ')
        i++;
    *at = i < end ? i + 1 : i;
    return party__slice_make(line + start, i - start);
}

static int parse_v1(const char *data, size_t len, party__proxy_header *out, const char **error) {
    size_t max = len < PARTY__PROXY_V1_MAX ? len : PARTY__PROXY_V1_MAX;
    const char *lf = memchr(data, '\n', max);
    size_t end, at = sizeof(v1_prefix) - 1;
    party__slice proto, src, dst, sport, dport;
    int family;

    if (lf == NULL)
        return len >= PARTY__PROXY_V1_MAX ? fail(error, "PROXY v1 line longer than 107 bytes")
                                          : PARTY__PROXY_AGAIN;
    end = (size_t)(lf - data);
    if (end == 0 || data[end - 1] != '\r')
        return fail(error, "PROXY v1 line does not end with CRLF");
    end--; /* the line without its CRLF */
    out->version = 1;
    out->len = end + 2;
    proto = next_field(data, end, &at);
    if (proto.len == 7 && memcmp(proto.ptr, "UNKNOWN", 7) == 0) {
        /* The proxy does not know the client (or speaks for itself): the
         * rest of the line is to be ignored. */
        out->local = 1;
        return PARTY__PROXY_DONE;
    }
    if (proto.len == 4 && memcmp(proto.ptr, "TCP4", 4) == 0)
        family = PARTY__ADDR_V4;
    else if (proto.len == 4 && memcmp(proto.ptr, "TCP6", 4) == 0)
        family = PARTY__ADDR_V6;
    else
        return fail(error, "PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    src = next_field(data, end, &at);
    dst = next_field(data, end, &at);
    sport = next_field(data, end, &at);
    dport = next_field(data, end, &at);
    if (at != end || dport.ptr + dport.len != data + end)
        return fail(error, "PROXY v1 line has not four fields after its protocol");
    if (party__addr_parse(src, &out->source) != 0 || out->source.family != family ||
        party__addr_parse(dst, &out->dest) != 0 || out->dest.family != family)
        return fail(error, "PROXY v1 address does not match its protocol");
    if (port_parse(sport, &out->source.port) != 0 || port_parse(dport, &out->dest.port) != 0)
        return fail(error, "PROXY v1 port is not 0-65535");
    return PARTY__PROXY_DONE;
}

static uint16_t be16(const char *p) {
    return (uint16_t)(((unsigned)(unsigned char)p[0] << 8) | (unsigned char)p[1]);
}

static int parse_v2(const char *data, size_t len, party__proxy_header *out, const char **error) {
    unsigned char ver_cmd, fam;
    size_t body;
    const char *a = data + 16;

    if (len < 16)
        return PARTY__PROXY_AGAIN;
    ver_cmd = (unsigned char)data[12];
    fam = (unsigned char)data[13];
    body = be16(data + 14);
    if ((ver_cmd >> 4) != 2)
        return fail(error, "PROXY v2 version is not 2");
    if ((ver_cmd & 0x0f) > 1)
        return fail(error, "PROXY v2 command is neither LOCAL nor PROXY");
    /* Checked before waiting for the body, so a bad header is refused as
     * soon as it shows. */
    if ((ver_cmd & 0x0f) == 1) {
        if ((fam >> 4) > 3 || (fam & 0x0f) > 2)
            return fail(error, "PROXY v2 address family or protocol unknown");
        if (fam == 0x11 && body < 12)
            return fail(error, "PROXY v2 IPv4 addresses do not fit its length");
        if (fam == 0x21 && body < 36)
            return fail(error, "PROXY v2 IPv6 addresses do not fit its length");
    }
    if (len - 16 < body)
        return PARTY__PROXY_AGAIN;
    out->version = 2;
    out->len = 16 + body;
    /* What follows the addresses (TLVs) is skipped: partyd uses none. */
    if ((ver_cmd & 0x0f) == 0 || (fam != 0x11 && fam != 0x21)) {
        out->local = 1;
        return PARTY__PROXY_DONE;
    }
    if (fam == 0x11) {
        out->source.family = out->dest.family = PARTY__ADDR_V4;
        memcpy(out->source.bytes, a, 4);
        memcpy(out->dest.bytes, a + 4, 4);
        out->source.port = be16(a + 8);
        out->dest.port = be16(a + 10);
    } else {
        out->source.family = out->dest.family = PARTY__ADDR_V6;
        memcpy(out->source.bytes, a, 16);
        memcpy(out->dest.bytes, a + 16, 16);
        out->source.port = be16(a + 32);
        out->dest.port = be16(a + 34);
    }
    return PARTY__PROXY_DONE;
}

int party__proxy_parse(const char *data, size_t len, party__proxy_header *out, const char **error) {
    memset(out, 0, sizeof(*out));
    *error = NULL;
    if (len == 0)
        return PARTY__PROXY_AGAIN;
    if (starts_as(data, len, v2_signature, sizeof(v2_signature)))
        return len < sizeof(v2_signature) ? PARTY__PROXY_AGAIN : parse_v2(data, len, out, error);
    if (starts_as(data, len, v1_prefix, sizeof(v1_prefix) - 1))
        return len < sizeof(v1_prefix) - 1 ? PARTY__PROXY_AGAIN : parse_v1(data, len, out, error);
    return fail(error, "connection did not start with a PROXY protocol header");
}
