/* cron: 5-field cron expressions (minute hour day-of-month month day-of-week)
 * parsed into bitsets, and the next UTC minute an expression fires after a
 * given time. Vixie cron semantics; no time zones, no allocation. */
#ifndef PARTY_CRON_H
#define PARTY_CRON_H

#include <stdint.h>

/* Longest expression accepted, in bytes (without the NUL). */
#define PARTY__CRON_MAX_LEN 256

/* party__cron.flags: the day field was written starting with '*' ('*' or
 * '*' '/' step). As in Vixie cron, when either day field has its flag, a day
 * must match both fields; when neither has it, a day matching either field
 * fires. So with one day field '*', only the other restricts. */
enum {
    PARTY__CRON_DOM_STAR = 1,
    PARTY__CRON_DOW_STAR = 2,
};

/* A parsed expression. Bit i set means value i is in the field's set:
 * minutes 0-59, hours 0-23, days 1-31, months 1-12, weekdays 0-6 (0 is
 * Sunday; a 7 in the expression sets bit 0). Plain data: copy it freely. */
typedef struct party__cron {
    uint64_t minutes;
    uint32_t hours;
    uint32_t days;
    uint16_t months;
    uint8_t weekdays;
    uint8_t flags;
} party__cron;

/* Parses expr (NUL-terminated, at most PARTY__CRON_MAX_LEN bytes) into *out.
 * Five fields separated by spaces or tabs (leading and trailing ones
 * allowed): minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
 * JAN-DEC, day of week 0-7 (0 and 7 are Sunday) or SUN-SAT; names in any
 * case. Each field is a comma list of '*', 'N', 'A-B', '*' '/' 'S', 'A-B/S'
 * or 'N/S' (N to the field's maximum, every S). Also accepted alone:
 * @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.
 * Returns 0, or PARTY_EINVAL with *out untouched and, when why is not NULL,
 * *why set to static text naming the problem (NULL on success). */
int party__cron_parse(const char *expr, party__cron *out, const char **why);

/* The first whole minute strictly after after_ms (milliseconds since the
 * epoch, UTC; any int64_t, also before 1970) at which c fires, in *next_ms.
 * The proleptic Gregorian calendar repeats every 400 years, weekdays
 * included, so the search covers 400 years and PARTY_ENOTFOUND means the
 * expression never fires (e.g. "0 0 30 2 *") or the time would not fit an
 * int64_t. PARTY_EINVAL if c or next_ms is NULL. */
int party__cron_next(const party__cron *c, int64_t after_ms, int64_t *next_ms);

#endif
