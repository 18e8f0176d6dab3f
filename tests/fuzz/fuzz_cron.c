/* fuzz_cron: the input up to its first NUL is an expression; the 8 bytes
 * after that NUL (or else a hash of the input) are the "after" time. Checks
 * that parsing is stable under printing back, and that a next time is after
 * "after", on a minute, matches every field (re-checked with gmtime_r) and
 * has no matching day or minute between "after" and it that we can see. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "party.h"

#define MINUTE_MS 60000
#define DAY_MS ((int64_t)86400000)

/* Fires past this are beyond one 400-year cycle and can only be wrong. */
#define MAX_WAIT_MS ((int64_t)401 * 366 * DAY_MS)

static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - (a % b < 0);
}

static int64_t time_from(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    uint64_t v = 1469598103934665603ull;
    size_t i;
    if (nul && size - (size_t)(nul - data) - 1 >= 8) {
        for (i = 0, v = 0; i < 8; i++)
            v = v << 8 | nul[1 + i];
        return (int64_t)v;
    }
    for (i = 0; i < size; i++)
        v = (v ^ data[i]) * 1099511628211ull;
    /* Half the time a date in 1900-2400, where people live; else anything. */
    if (v & 1)
        return -2208988800000LL + (int64_t)(v % (500ull * 366 * 86400000));
    return (int64_t)v;
}

static int day_matches(const party__cron *c, const struct tm *tm) {
    int dom = (c->days >> tm->tm_mday) & 1, dow = (c->weekdays >> tm->tm_wday) & 1;
    if (!((c->months >> (tm->tm_mon + 1)) & 1))
        return 0;
    if (c->flags & (PARTY__CRON_DOM_STAR | PARTY__CRON_DOW_STAR))
        return dom && dow;
    return dom || dow;
}

/* 1 match, 0 no match, -1 outside gmtime_r's range. */
static int minute_matches(const party__cron *c, int64_t ms, int whole_day) {
    time_t s = (time_t)floor_div(ms, 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm))
        return -1;
    if (!day_matches(c, &tm))
        return 0;
    return whole_day || (((c->hours >> tm.tm_hour) & 1) && ((c->minutes >> tm.tm_min) & 1));
}

static int same_sets(const party__cron *a, const party__cron *b) {
    return a->minutes == b->minutes && a->hours == b->hours && a->days == b->days &&
           a->months == b->months && a->weekdays == b->weekdays;
}

/* Prints a set as a comma list of runs ("1-5,7"). */
static void put_set(char **p, uint64_t set, unsigned lo, unsigned hi) {
    unsigned v = lo, first = 1;
    while (v <= hi) {
        unsigned end;
        if (!((set >> v) & 1)) {
            v++;
            continue;
        }
        for (end = v; end + 1 <= hi && ((set >> (end + 1)) & 1); end++)
            ;
        *p += sprintf(*p, end > v ? "%s%u-%u" : "%s%u", first ? "" : ",", v, end);
        first = 0;
        v = end + 1;
    }
    *(*p)++ = ' ';
}

/* Prints c back as an expression, parses that, and wants the same sets. */
static void check_round_trip(const party__cron *c) {
    char buf[512], *p = buf;
    party__cron again;
    put_set(&p, c->minutes, 0, 59);
    put_set(&p, c->hours, 0, 23);
    if (c->flags & PARTY__CRON_DOM_STAR && c->days == 0xfffffffeu)
        p += sprintf(p, "* ");
    else
        put_set(&p, c->days, 1, 31);
    put_set(&p, c->months, 1, 12);
    if (c->flags & PARTY__CRON_DOW_STAR && c->weekdays == 0x7f)
        p += sprintf(p, "*");
    else
        put_set(&p, c->weekdays, 0, 6);
    *p = '\0';
    if (p - buf > PARTY__CRON_MAX_LEN)
        return;
    if (party__cron_parse(buf, &again, NULL) != 0)
        abort();
    if (!same_sets(c, &again))
        abort();
}

static void check_next(const party__cron *c, int64_t after) {
    int64_t next = 0, first_minute = floor_div(after, MINUTE_MS) + 1, first, t, stop;
    int rc = party__cron_next(c, after, &next);

    if (rc == PARTY_ENOTFOUND) {
        /* Fine near the ends of int64_t; elsewhere no day may match soon. */
        if (after > INT64_MAX - MAX_WAIT_MS || after < INT64_MIN + MAX_WAIT_MS)
            return;
        first = first_minute * MINUTE_MS;
        for (t = first; t < first + 1000 * DAY_MS; t += DAY_MS)
            if (minute_matches(c, t, 1) == 1)
                abort();
        return;
    }
    if (rc != 0 || first_minute > INT64_MAX / MINUTE_MS)
        abort();
    first = first_minute * MINUTE_MS;
    if (next < first || next % MINUTE_MS != 0 || next - first > MAX_WAIT_MS)
        abort();
    if (minute_matches(c, next, 0) == 0)
        abort();

    /* Nothing earlier: minute by minute for two days, then day by day (a
     * matching day always has a matching minute). */
    stop = next - first < 2 * DAY_MS ? next : first + 2 * DAY_MS;
    for (t = first; t < stop; t += MINUTE_MS)
        if (minute_matches(c, t, 0) == 1)
            abort();
    if (next - first > 2 * DAY_MS) {
        int64_t next_day = floor_div(next, DAY_MS) * DAY_MS;
        for (t = first + DAY_MS; t < next_day && t - first < 1000 * DAY_MS; t += DAY_MS)
            if (minute_matches(c, t, 1) == 1)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *expr;
    party__cron c, again;
    const char *why = NULL;
    int rc;

    expr = malloc(size + 1);
    if (!expr)
        return 0;
    memcpy(expr, data, size);
    expr[size] = '\0';
    rc = party__cron_parse(expr, &c, &why);
    if (rc != 0) {
        if (rc != PARTY_EINVAL || !why)
            abort();
        free(expr);
        return 0;
    }
    if (why)
        abort();
    if (party__cron_parse(expr, &again, NULL) != 0 || !same_sets(&c, &again) ||
        c.flags != again.flags)
        abort();
    free(expr);

    if (!c.minutes || !c.hours || !c.months || (!c.days && !c.weekdays))
        abort();
    check_round_trip(&c);
    check_next(&c, time_from(data, size));
    return 0;
}
