/* cron: parses 5-field cron expressions into bitsets and finds the next UTC
 * minute one fires, with its own civil-calendar arithmetic (days since the
 * epoch <-> year/month/day) instead of the C library's time-zone-bound
 * calls. Owns no memory. */
#include "cron.h"

#include <string.h>

#include "party.h"

/* The Gregorian calendar, weekdays included, repeats every 400 years
 * (146097 days is a whole number of weeks): a search over one full cycle
 * that finds nothing proves the expression never fires. The longest real
 * gap between firings is decades (Feb 29 falling on a Sunday, when the
 * weekday field is a star step so both day fields must match), so a shorter
 * horizon would wrongly report such expressions as never firing. */
#define HORIZON_YEARS 400

enum { MINUTE, HOUR, DOM, MONTH, DOW, N_FIELDS };

typedef struct field_spec {
    unsigned min, max;
    const char *const *names; /* NULL, or the names of min, min + 1, ... */
    unsigned n_names;
    const char *range_why;
} field_spec;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const weekday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const field_spec fields[N_FIELDS] = {
    {0, 59, NULL, 0, "minute must be 0-59"},
    {0, 23, NULL, 0, "hour must be 0-23"},
    {1, 31, NULL, 0, "day of month must be 1-31"},
    {1, 12, month_names, 12, "month must be 1-12 or JAN-DEC"},
    {0, 7, weekday_names, 7, "day of week must be 0-7 or SUN-SAT"},
};

static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"yearly", "0 0 1 1 *"}, {"annually", "0 0 1 1 *"}, {"monthly", "0 0 1 * *"},
    {"weekly", "0 0 * * 0"}, {"daily", "0 0 * * *"},    {"midnight", "0 0 * * *"},
    {"hourly", "0 * * * *"},
};

static int is_blank(char ch) {
    return ch == ' ' || ch == '\t';
}

static int is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static int is_alpha(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* ASCII-only case folding: names and macros are ASCII, and the C
 * library's version would follow the locale. */
static int same_letters(const char *a, const char *lower, size_t len) {
    size_t i;
    for (i = 0; i < len; i++) {
        char ch = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] - 'A' + 'a') : a[i];
        if (ch != lower[i])
            return 0;
    }
    return 1;
}

static const char *skip_blanks(const char *p) {
    while (is_blank(*p))
        p++;
    return p;
}

/* Reads digits at *p. Values past 9999 are clamped there: every field and
 * step check rejects them anyway, and the clamp keeps long runs of digits
 * from overflowing. */
static int parse_number(const char **p, unsigned *value) {
    const char *s = *p;
    unsigned v = 0;
    if (!is_digit(*s))
        return PARTY_EINVAL;
    for (; is_digit(*s); s++) {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > 9999)
            v = 9999;
    }
    *p = s;
    *value = v;
    return 0;
}

/* A number or, where the field has them, a three-letter name. */
static int parse_value(const char **p, const field_spec *f, unsigned *value, const char **why) {
    const char *s = *p;
    unsigned i, len = 0;
    if (is_digit(*s)) {
        parse_number(p, value);
        if (*value < f->min || *value > f->max) {
            *why = f->range_why;
            return PARTY_EINVAL;
        }
        return 0;
    }
    if (!is_alpha(*s)) {
        *why = *s == '\0' || is_blank(*s) || *s == ',' ? "empty list item" : "unexpected character";
        return PARTY_EINVAL;
    }
    while (is_alpha(s[len]))
        len++;
    for (i = 0; i < f->n_names && len == 3; i++) {
        if (same_letters(s, f->names[i], 3)) {
            *value = f->min + i;
            *p = s + len;
            return 0;
        }
    }
    *why = f->names ? "unknown name" : "names are only allowed for month and day of week";
    return PARTY_EINVAL;
}

/* One list item: '*', 'N', 'A-B', each optionally followed by '/S'. */
static int parse_item(const char **p, const field_spec *f, uint64_t *set, const char **why) {
    unsigned lo, hi, step = 1, v;
    int ranged = 0;
    if (**p == '*') {
        (*p)++;
        lo = f->min;
        hi = f->max;
        ranged = 1;
    } else {
        if (parse_value(p, f, &lo, why) < 0)
            return PARTY_EINVAL;
        hi = lo;
        if (**p == '-') {
            (*p)++;
            if (!is_digit(**p) && !is_alpha(**p)) {
                *why = "range has no end";
                return PARTY_EINVAL;
            }
            if (parse_value(p, f, &hi, why) < 0)
                return PARTY_EINVAL;
            if (lo > hi) {
                *why = "range start is after its end";
                return PARTY_EINVAL;
            }
            ranged = 1;
        }
    }
    if (**p == '/') {
        (*p)++;
        if (parse_number(p, &step) < 0) {
            *why = "step must be a number";
            return PARTY_EINVAL;
        }
        if (step == 0) {
            *why = "step must be at least 1";
            return PARTY_EINVAL;
        }
        /* A step past the field's width can only ever select the start,
         * which is almost certainly not what was meant (e.g. minute 90). */
        if (step > f->max - f->min + 1) {
            *why = "step is larger than the field's range";
            return PARTY_EINVAL;
        }
        if (!ranged)
            hi = f->max;
    }
    for (v = lo; v <= hi; v += step)
        *set |= (uint64_t)1 << v;
    return 0;
}

/* A comma list up to the next blank or the end; *p is left there. */
static int parse_field(const char **p, const field_spec *f, uint64_t *set, const char **why) {
    for (;;) {
        if (parse_item(p, f, set, why) < 0)
            return PARTY_EINVAL;
        if (**p == '\0' || is_blank(**p))
            return 0;
        if (**p != ',') {
            *why = "unexpected character";
            return PARTY_EINVAL;
        }
        (*p)++;
    }
}

static int parse_macro(const char *p, party__cron *out, const char **why) {
    size_t i, len = 0;
    p++;
    while (is_alpha(p[len]))
        len++;
    if (*skip_blanks(p + len) != '\0') {
        *why = len ? "nothing may follow a macro" : "unknown macro";
        return PARTY_EINVAL;
    }
    for (i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
        if (strlen(macros[i].name) == len && same_letters(p, macros[i].name, len))
            return party__cron_parse(macros[i].expr, out, why);
    }
    *why = "unknown macro";
    return PARTY_EINVAL;
}

int party__cron_parse(const char *expr, party__cron *out, const char **why) {
    const char *ignored, *p;
    uint64_t sets[N_FIELDS] = {0};
    party__cron c;
    size_t len;
    int i;

    if (!why)
        why = &ignored;
    *why = NULL;
    if (!expr || !out) {
        *why = "no expression";
        return PARTY_EINVAL;
    }
    /* Counting stops at the limit: a huge string is not read to its end. */
    for (len = 0; len <= PARTY__CRON_MAX_LEN && expr[len]; len++)
        ;
    if (len > PARTY__CRON_MAX_LEN) {
        *why = "expression is longer than 256 bytes";
        return PARTY_EINVAL;
    }
    p = skip_blanks(expr);
    if (*p == '@')
        return parse_macro(p, out, why);

    memset(&c, 0, sizeof(c));
    for (i = 0; i < N_FIELDS; i++) {
        if (*p == '\0') {
            *why = i == 0 ? "empty expression" : "too few fields (need 5)";
            return PARTY_EINVAL;
        }
        /* Vixie cron decides "unrestricted" by the first character. */
        if (*p == '*' && i == DOM)
            c.flags |= PARTY__CRON_DOM_STAR;
        if (*p == '*' && i == DOW)
            c.flags |= PARTY__CRON_DOW_STAR;
        if (parse_field(&p, &fields[i], &sets[i], why) < 0)
            return PARTY_EINVAL;
        p = skip_blanks(p);
    }
    if (*p != '\0') {
        *why = "too many fields (need 5)";
        return PARTY_EINVAL;
    }
    c.minutes = sets[MINUTE];
    c.hours = (uint32_t)sets[HOUR];
    c.days = (uint32_t)sets[DOM];
    c.months = (uint16_t)sets[MONTH];
    c.weekdays = (uint8_t)((sets[DOW] | sets[DOW] >> 7) & 0x7f);
    *out = c;
    return 0;
}

/* ---- calendar ------------------------------------------------------------
 * Days since 1970-01-01 <-> proleptic Gregorian dates, after Howard
 * Hinnant's days_from_civil: shift the year to start in March so the leap
 * day is last, then count whole 400-year eras. Exact for any int64_t day
 * count a minute count can produce. */

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    int64_t era;
    unsigned yoe, doy, doe;
    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    int64_t era;
    unsigned doe, yoe, doy, mp;
    z += 719468;
    era = floor_div(z, 146097);
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned weekday_from_days(int64_t z) {
    /* 1970-01-01 was a Thursday. */
    int64_t w = (z + 4) % 7;
    return (unsigned)(w < 0 ? w + 7 : w);
}

static unsigned days_in_month(int64_t y, unsigned m) {
    static const unsigned char len[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return len[m] + (m == 2 && leap ? 1u : 0u);
}

/* ---- search ----------------------------------------------------------- */

static int day_matches(const party__cron *c, int both, unsigned d, unsigned wday) {
    int dom = (c->days >> d) & 1, dow = (c->weekdays >> wday) & 1;
    return both ? dom && dow : dom || dow;
}

int party__cron_next(const party__cron *c, int64_t after_ms, int64_t *next_ms) {
    party__cron k;
    int64_t start, day, y, last_year, found;
    unsigned m, d, h, mi, wday, dim;
    int both;

    if (!c || !next_ms)
        return PARTY_EINVAL;
    /* Bits outside each field's range come only from a hand-built struct;
     * dropping them keeps the search inside real dates and times. */
    k = *c;
    k.minutes &= ((uint64_t)1 << 60) - 1;
    k.hours &= ((uint32_t)1 << 24) - 1;
    k.days &= ~(uint32_t)1;
    k.months &= 0x1ffe;
    k.weekdays &= 0x7f;
    if (!k.minutes || !k.hours || !k.months || (!k.days && !k.weekdays))
        return PARTY_ENOTFOUND;
    both = (k.flags & (PARTY__CRON_DOM_STAR | PARTY__CRON_DOW_STAR)) != 0;

    start = floor_div(after_ms, 60000) + 1;
    day = floor_div(start, 1440);
    h = (unsigned)(start - day * 1440) / 60;
    mi = (unsigned)(start - day * 1440) % 60;
    civil_from_days(day, &y, &m, &d);
    last_year = y + HORIZON_YEARS;

    for (;;) {
        dim = days_in_month(y, m);
        /* Skip whole months the month field or (when a day must match both
         * fields) the day-of-month field rules out, without visiting days. */
        if (((k.months >> m) & 1) && (!both || (k.days & (((uint32_t)2 << dim) - 2)))) {
            wday = weekday_from_days(days_from_civil(y, m, d));
            for (; d <= dim; d++, h = 0, mi = 0, wday = (wday + 1) % 7) {
                uint32_t hours;
                if (!day_matches(&k, both, d, wday))
                    continue;
                for (hours = k.hours & (~(uint32_t)0 << h); hours; hours &= hours - 1) {
                    uint64_t minutes;
                    unsigned hour = (unsigned)__builtin_ctz(hours);
                    /* Only the starting hour resumes mid-hour. */
                    if (hour != h)
                        mi = 0;
                    h = hour;
                    minutes = k.minutes & (~(uint64_t)0 << mi);
                    if (minutes) {
                        mi = (unsigned)__builtin_ctzll(minutes);
                        goto done;
                    }
                }
            }
        }
        d = 1;
        h = 0;
        mi = 0;
        if (++m > 12) {
            m = 1;
            if (++y > last_year)
                return PARTY_ENOTFOUND;
        }
    }
done:
    found = days_from_civil(y, m, d) * 1440 + h * 60 + mi;
    if (found > INT64_MAX / 60000)
        return PARTY_ENOTFOUND;
    *next_ms = found * 60000;
    return 0;
}
