/* Tests for src/cron.c: which expressions parse and to what, next-fire tables
 * checked by hand (month ends, leap days, weekday names, the day-of-month /
 * day-of-week rule), limits of the time range, and random expressions
 * compared with a brute-force search built on gmtime_r. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "party.h"

/* "YYYY-MM-DDTHH:MM[:SS[.mmm]]" UTC to epoch milliseconds; timegm is the
 * oracle here, independent of the module's own calendar code. */
static int64_t at(const char *iso) {
    struct tm tm;
    int y, mo, d, h, mi, s = 0, ms = 0;
    int n = sscanf(iso, "%d-%d-%dT%d:%d:%d.%d", &y, &mo, &d, &h, &mi, &s, &ms);
    assert_true(n >= 5);
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void format_ms(int64_t ms, char *buf, size_t cap) {
    time_t s = (time_t)(ms / 1000 - (ms % 1000 < 0));
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min);
}

static party__cron parse_ok(const char *expr) {
    party__cron c;
    const char *why = "unset";
    int rc = party__cron_parse(expr, &c, &why);
    if (rc != 0)
        print_error("'%s' rejected: %s\n", expr, why);
    assert_int_equal(rc, 0);
    assert_null(why);
    return c;
}

/* Checks that expr fires first at wants[0] after `after`, then at wants[1]
 * after that, and so on (NULL-terminated). */
static void expect_fires(const char *expr, const char *after, const char *const *wants) {
    party__cron c = parse_ok(expr);
    int64_t t = at(after), next;
    for (; *wants; wants++) {
        int rc = party__cron_next(&c, t, &next);
        if (rc != 0 || next != at(*wants)) {
            char got[32] = "(none)";
            if (rc == 0)
                format_ms(next, got, sizeof(got));
            print_error("'%s' after %s: got %s, want %s\n", expr, after, got, *wants);
        }
        assert_int_equal(rc, 0);
        assert_true(next == at(*wants));
        t = next;
    }
}

#define FIRES(expr, after, ...)                                                                    \
    do {                                                                                           \
        static const char *const wants_[] = {__VA_ARGS__, NULL};                                   \
        expect_fires(expr, after, wants_);                                                         \
    } while (0)

static void expect_never(const char *expr, const char *after) {
    party__cron c = parse_ok(expr);
    int64_t next = 12345;
    assert_int_equal(party__cron_next(&c, at(after), &next), PARTY_ENOTFOUND);
    assert_true(next == 12345);
}

static void assert_same_cron(party__cron a, party__cron b) {
    assert_true(a.minutes == b.minutes);
    assert_int_equal(a.hours, b.hours);
    assert_int_equal(a.days, b.days);
    assert_int_equal(a.months, b.months);
    assert_int_equal(a.weekdays, b.weekdays);
    assert_int_equal(a.flags, b.flags);
}

/* ---- parsing ------------------------------------------------------------- */

static void test_fields_parse_into_bitsets(void **state) {
    party__cron c;
    (void)state;
    c = parse_ok("* * * * *");
    assert_true(c.minutes == ((uint64_t)1 << 60) - 1);
    assert_int_equal(c.hours, (1u << 24) - 1);
    assert_int_equal(c.days, 0xfffffffeu);
    assert_int_equal(c.months, 0x1ffe);
    assert_int_equal(c.weekdays, 0x7f);
    assert_int_equal(c.flags, PARTY__CRON_DOM_STAR | PARTY__CRON_DOW_STAR);

    c = parse_ok("5 0-2 31 12 6");
    assert_true(c.minutes == (uint64_t)1 << 5);
    assert_int_equal(c.hours, 0x7);
    assert_int_equal(c.days, 1u << 31);
    assert_int_equal(c.months, 1 << 12);
    assert_int_equal(c.weekdays, 1 << 6);
    assert_int_equal(c.flags, 0);

    c = parse_ok("1,5-7,*/20 23 1,15 jan,JUL 0");
    assert_true(c.minutes == ((uint64_t)1 << 0 | 1 << 1 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 20 |
                              (uint64_t)1 << 40));
    assert_int_equal(c.hours, 1u << 23);
    assert_int_equal(c.days, 1u << 1 | 1u << 15);
    assert_int_equal(c.months, 1 << 1 | 1 << 7);
}

static void test_steps_select_every_nth_from_the_start(void **state) {
    party__cron c;
    (void)state;
    c = parse_ok("*/15 */6 */10 */5 */3");
    assert_true(c.minutes == ((uint64_t)1 << 0 | 1 << 15 | (uint64_t)1 << 30 | (uint64_t)1 << 45));
    assert_int_equal(c.hours, 1 << 0 | 1 << 6 | 1 << 12 | 1 << 18);
    assert_int_equal(c.days, 1u << 1 | 1u << 11 | 1u << 21 | 1u << 31);
    assert_int_equal(c.months, 1 << 1 | 1 << 6 | 1 << 11);
    assert_int_equal(c.weekdays, 1 << 0 | 1 << 3 | 1 << 6);
    /* A-B/S starts at A; N/S runs from N to the field's maximum. */
    c = parse_ok("10-30/10 5/6 2-9/7 11/1 1/2");
    assert_true(c.minutes == ((uint64_t)1 << 10 | 1 << 20 | (uint64_t)1 << 30));
    assert_int_equal(c.hours, 1 << 5 | 1 << 11 | 1 << 17 | 1 << 23);
    assert_int_equal(c.days, 1u << 2 | 1u << 9);
    assert_int_equal(c.months, 1 << 11 | 1 << 12);
    /* 1,3,5,7: 7 is Sunday. */
    assert_int_equal(c.weekdays, 1 << 1 | 1 << 3 | 1 << 5 | 1 << 0);
    /* The largest step allowed is the field's width. */
    c = parse_ok("*/60 */24 */31 */12 */8");
    assert_true(c.minutes == 1);
    assert_int_equal(c.hours, 1);
    assert_int_equal(c.days, 1u << 1);
    assert_int_equal(c.months, 1 << 1);
    assert_int_equal(c.weekdays, 1);
}

static void test_names_are_case_insensitive_and_work_in_ranges(void **state) {
    (void)state;
    assert_same_cron(parse_ok("0 0 1 JAN-MAR,oct 0"), parse_ok("0 0 1 1-3,10 0"));
    assert_same_cron(parse_ok("0 0 * * Mon-fRI"), parse_ok("0 0 * * 1-5"));
    assert_same_cron(parse_ok("0 0 * jan-dec/2 SAT,sun"), parse_ok("0 0 * 1,3,5,7,9,11 6,0"));
    assert_same_cron(parse_ok("0 0 * * wed/2"), parse_ok("0 0 * * 3,5,7"));
}

static void test_sunday_parses_the_same_as_0_7_and_name(void **state) {
    party__cron zero;
    (void)state;
    zero = parse_ok("30 8 * * 0");
    assert_int_equal(zero.weekdays, 1);
    assert_same_cron(zero, parse_ok("30 8 * * 7"));
    assert_same_cron(zero, parse_ok("30 8 * * SUN"));
    assert_same_cron(zero, parse_ok("30 8 * * 0,7"));
    assert_same_cron(parse_ok("0 0 * * 5-7"), parse_ok("0 0 * * 0,5,6"));
    assert_same_cron(parse_ok("0 0 * * 0-7"), parse_ok("0 0 * * 0-6"));
}

static void test_blanks_between_and_around_fields_are_allowed(void **state) {
    party__cron ref;
    (void)state;
    ref = parse_ok("0 12 * * 1");
    assert_same_cron(ref, parse_ok("  0 12 * * 1"));
    assert_same_cron(ref, parse_ok("0 12 * * 1   "));
    assert_same_cron(ref, parse_ok("\t0\t\t12  *\t * \t1\t"));
}

static void test_day_star_flags_follow_the_first_character(void **state) {
    (void)state;
    assert_int_equal(parse_ok("0 0 * * 1").flags, PARTY__CRON_DOM_STAR);
    assert_int_equal(parse_ok("0 0 1 * *").flags, PARTY__CRON_DOW_STAR);
    assert_int_equal(parse_ok("0 0 */2 * 1").flags, PARTY__CRON_DOM_STAR);
    assert_int_equal(parse_ok("0 0 1-31 * 0-7").flags, 0);
    /* '*' in the minute, hour and month fields changes no flag. */
    assert_int_equal(parse_ok("* * 1 * 1").flags, 0);
}

static void test_macros_expand_to_their_expressions(void **state) {
    (void)state;
    assert_same_cron(parse_ok("@yearly"), parse_ok("0 0 1 1 *"));
    assert_same_cron(parse_ok("@annually"), parse_ok("0 0 1 1 *"));
    assert_same_cron(parse_ok("@monthly"), parse_ok("0 0 1 * *"));
    assert_same_cron(parse_ok("@weekly"), parse_ok("0 0 * * 0"));
    assert_same_cron(parse_ok("@daily"), parse_ok("0 0 * * *"));
    assert_same_cron(parse_ok("@midnight"), parse_ok("0 0 * * *"));
    assert_same_cron(parse_ok("@hourly"), parse_ok("0 * * * *"));
    assert_same_cron(parse_ok(" \t@Daily \t"), parse_ok("0 0 * * *"));
}

static void test_expression_of_256_bytes_parses_and_257_does_not(void **state) {
    char expr[PARTY__CRON_MAX_LEN + 2];
    party__cron c;
    const char *why = NULL;
    (void)state;
    memset(expr, ' ', sizeof(expr));
    memcpy(expr, "* * * * *", 9);
    expr[PARTY__CRON_MAX_LEN] = '\0';
    assert_int_equal(party__cron_parse(expr, &c, &why), 0);
    expr[PARTY__CRON_MAX_LEN] = ' ';
    expr[PARTY__CRON_MAX_LEN + 1] = '\0';
    assert_int_equal(party__cron_parse(expr, &c, &why), PARTY_EINVAL);
    assert_string_equal(why, "expression is longer than 256 bytes");
}

static void test_malformed_expressions_are_rejected_with_a_reason(void **state) {
    static const struct {
        const char *expr, *why;
    } bad[] = {
        {"", "empty expression"},
        {" \t ", "empty expression"},
        {"* * * *", "too few fields (need 5)"},
        {"*", "too few fields (need 5)"},
        {"* * * * * *", "too many fields (need 5)"},
        {"* * * * * root /bin/true", "too many fields (need 5)"},
        {"60 * * * *", "minute must be 0-59"},
        {"* 24 * * *", "hour must be 0-23"},
        {"* * 0 * *", "day of month must be 1-31"},
        {"* * 32 * *", "day of month must be 1-31"},
        {"* * * 0 *", "month must be 1-12 or JAN-DEC"},
        {"* * * 13 *", "month must be 1-12 or JAN-DEC"},
        {"* * * * 8", "day of week must be 0-7 or SUN-SAT"},
        {"0-60 * * * *", "minute must be 0-59"},
        {"99999999999999999999 * * * *", "minute must be 0-59"},
        {"30-10 * * * *", "range start is after its end"},
        {"* * * DEC-JAN *", "range start is after its end"},
        {"* * * * SAT-SUN", "range start is after its end"},
        {"*/0 * * * *", "step must be at least 1"},
        {"0-30/0 * * * *", "step must be at least 1"},
        {"5/0 * * * *", "step must be at least 1"},
        {"*/61 * * * *", "step is larger than the field's range"},
        {"* */25 * * *", "step is larger than the field's range"},
        {"*/ * * * *", "step must be a number"},
        {"*/x * * * *", "step must be a number"},
        {"*/-1 * * * *", "step must be a number"},
        {"*/5/5 * * * *", "unexpected character"},
        {"1,,2 * * * *", "empty list item"},
        {",1 * * * *", "empty list item"},
        {"1, * * * *", "empty list item"},
        {"1,* * * * *,", "empty list item"},
        {"5- * * * *", "range has no end"},
        {"5-* * * * *", "range has no end"},
        {"1-2-3 * * * *", "unexpected character"},
        {"-5 * * * *", "unexpected character"},
        {"** * * * *", "unexpected character"},
        {"*5 * * * *", "unexpected character"},
        {"5x * * * *", "unexpected character"},
        {"? * * * *", "unexpected character"},
        {"* * ? * *", "unexpected character"},
        {"* * L * *", "names are only allowed for month and day of week"},
        {"* * * * 5#2", "unexpected character"},
        {"0 0 * * *\n", "unexpected character"},
        {"0\n0 * * *", "unexpected character"},
        {"0 0 * * \xe2\x80\x83", "unexpected character"},
        {"0 0 * JANUARY *", "unknown name"},
        {"0 0 * JA *", "unknown name"},
        {"0 0 * * SUNDAY", "unknown name"},
        {"0 0 * MON *", "unknown name"},
        {"0 0 * * JAN", "unknown name"},
        {"jan * * * *", "names are only allowed for month and day of week"},
        {"* * mon * *", "names are only allowed for month and day of week"},
        {"@reboot", "unknown macro"},
        {"@", "unknown macro"},
        {"@daily x", "nothing may follow a macro"},
        {"@ daily", "unknown macro"},
        {"@daily5", "nothing may follow a macro"},
        {"0 0 * * * @daily", "too many fields (need 5)"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        party__cron c;
        const char *why = NULL;
        int rc;
        memset(&c, 0xab, sizeof(c));
        rc = party__cron_parse(bad[i].expr, &c, &why);
        if (rc != PARTY_EINVAL || !why || strcmp(why, bad[i].why) != 0)
            print_error("'%s': rc %d, why '%s', want '%s'\n", bad[i].expr, rc, why ? why : "(null)",
                        bad[i].why);
        assert_int_equal(rc, PARTY_EINVAL);
        assert_non_null(why);
        assert_string_equal(why, bad[i].why);
        /* The output is untouched on failure. */
        assert_true(c.minutes == 0xababababababababull);
        assert_int_equal(c.flags, 0xab);
        /* why is optional. */
        assert_int_equal(party__cron_parse(bad[i].expr, &c, NULL), PARTY_EINVAL);
    }
}

static void test_null_arguments_are_rejected(void **state) {
    party__cron c;
    int64_t next;
    const char *why = NULL;
    (void)state;
    assert_int_equal(party__cron_parse(NULL, &c, &why), PARTY_EINVAL);
    assert_non_null(why);
    assert_int_equal(party__cron_parse("* * * * *", NULL, &why), PARTY_EINVAL);
    c = parse_ok("* * * * *");
    assert_int_equal(party__cron_next(NULL, 0, &next), PARTY_EINVAL);
    assert_int_equal(party__cron_next(&c, 0, NULL), PARTY_EINVAL);
}

/* ---- next fire times ----------------------------------------------------- */

static void test_day_31_skips_months_without_one(void **state) {
    (void)state;
    FIRES("0 0 31 * *", "2026-01-31T00:00", "2026-03-31T00:00", "2026-05-31T00:00",
          "2026-07-31T00:00", "2026-08-31T00:00", "2026-10-31T00:00", "2026-12-31T00:00",
          "2027-01-31T00:00");
    FIRES("0 12 30 * *", "2026-01-30T12:00", "2026-03-30T12:00", "2026-04-30T12:00");
    FIRES("15 6 29 * *", "2027-01-29T06:15", "2027-03-29T06:15");
    FIRES("15 6 29 * *", "2028-01-29T06:15", "2028-02-29T06:15", "2028-03-29T06:15");
}

static void test_feb_29_waits_for_the_next_leap_year(void **state) {
    (void)state;
    FIRES("0 0 29 2 *", "2026-01-01T00:00", "2028-02-29T00:00", "2032-02-29T00:00");
    FIRES("0 0 29 2 *", "2024-02-29T00:00", "2028-02-29T00:00");
    /* 2000 is a leap year (divisible by 400); 1900 and 2100 are not. */
    FIRES("0 0 29 2 *", "1999-03-01T00:00", "2000-02-29T00:00", "2004-02-29T00:00");
    FIRES("0 0 29 2 *", "1896-03-01T00:00", "1904-02-29T00:00");
    FIRES("0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00");
    FIRES("59 23 28 feb *", "2100-02-28T23:59", "2101-02-28T23:59");
    FIRES("0 0 1 3 *", "2100-02-28T12:00", "2100-03-01T00:00");
}

static void test_sunday_as_0_or_7_fires_at_the_same_times(void **state) {
    static const char *const exprs[] = {"30 8 * * 0", "30 8 * * 7", "30 8 * * SUN", "30 8 * * sun"};
    size_t i;
    (void)state;
    /* 2026-03-04 is a Wednesday. */
    for (i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++)
        FIRES(exprs[i], "2026-03-04T12:00", "2026-03-08T08:30", "2026-03-15T08:30",
              "2026-03-22T08:30");
    FIRES("0 0 * * 5-7", "2026-03-04T12:00", "2026-03-06T00:00", "2026-03-07T00:00",
          "2026-03-08T00:00", "2026-03-13T00:00");
}

static void test_ranges_fire_at_each_value_in_them(void **state) {
    (void)state;
    FIRES("0 9-11 * * *", "2026-03-04T10:30", "2026-03-04T11:00", "2026-03-05T09:00",
          "2026-03-05T10:00");
    FIRES("58-59 23 * * *", "2026-03-04T23:58", "2026-03-04T23:59", "2026-03-05T23:58");
    FIRES("0 0 * * MON-FRI", "2026-03-06T12:00", "2026-03-09T00:00", "2026-03-10T00:00");
}

static void test_steps_fire_every_nth_value(void **state) {
    (void)state;
    FIRES("*/5 * * * *", "2026-03-04T12:03", "2026-03-04T12:05", "2026-03-04T12:10");
    FIRES("*/5 * * * *", "2026-03-04T23:57", "2026-03-05T00:00");
    FIRES("10-30/10 * * * *", "2026-03-04T12:30", "2026-03-04T13:10", "2026-03-04T13:20",
          "2026-03-04T13:30", "2026-03-04T14:10");
    FIRES("50/5 * * * *", "2026-03-04T12:00", "2026-03-04T12:50", "2026-03-04T12:55",
          "2026-03-04T13:50");
    FIRES("0 */6 * * *", "2026-03-04T13:00", "2026-03-04T18:00", "2026-03-05T00:00");
    FIRES("0 0 1 */4 *", "2026-02-01T00:00", "2026-05-01T00:00", "2026-09-01T00:00",
          "2027-01-01T00:00");
}

static void test_lists_fire_at_each_item(void **state) {
    (void)state;
    FIRES("0,15,45 * * * *", "2026-03-04T12:10", "2026-03-04T12:15", "2026-03-04T12:45",
          "2026-03-04T13:00");
    FIRES("0 0 1 jan,jul *", "2026-03-04T00:00", "2026-07-01T00:00", "2027-01-01T00:00");
    FIRES("30 1,13 * * *", "2026-03-04T13:30", "2026-03-05T01:30", "2026-03-05T13:30");
}

static void test_later_hour_restarts_from_the_first_minute(void **state) {
    (void)state;
    /* At 10:40 the minute 30 is gone in this hour; in the next one it is not. */
    FIRES("10,30 10-12 * * *", "2026-03-04T10:40", "2026-03-04T11:10", "2026-03-04T11:30");
    FIRES("5 10,14 * * *", "2026-03-04T10:30", "2026-03-04T14:05");
}

static void test_both_day_fields_restricted_fire_on_either(void **state) {
    (void)state;
    /* The 13th or any Friday. 2026-03-01 is a Sunday; 2026-04-13 a Monday. */
    FIRES("0 0 13 * 5", "2026-03-01T00:00", "2026-03-06T00:00", "2026-03-13T00:00",
          "2026-03-20T00:00", "2026-03-27T00:00", "2026-04-03T00:00", "2026-04-10T00:00",
          "2026-04-13T00:00", "2026-04-17T00:00");
    /* Feb 30 never exists, but Mondays in February do. */
    FIRES("0 0 30 2 1", "2026-03-01T00:00", "2027-02-01T00:00", "2027-02-08T00:00");
}

static void test_one_day_field_star_lets_only_the_other_restrict(void **state) {
    (void)state;
    FIRES("0 0 13 * *", "2026-03-01T00:00", "2026-03-13T00:00", "2026-04-13T00:00");
    FIRES("0 0 * * 5", "2026-03-01T00:00", "2026-03-06T00:00", "2026-03-13T00:00",
          "2026-03-20T00:00");
}

static void test_star_step_day_field_requires_both_days_to_match(void **state) {
    (void)state;
    /* Vixie cron: a day field starting with '*' counts as unrestricted for
     * the either-rule, so here a day must be odd AND a Monday. */
    FIRES("0 0 */2 * 1", "2026-03-01T00:00", "2026-03-09T00:00", "2026-03-23T00:00",
          "2026-04-13T00:00", "2026-04-27T00:00");
    FIRES("0 0 13 * */7", "2026-03-01T00:00", "2026-09-13T00:00", "2026-12-13T00:00");
}

static void test_rare_dates_decades_away_are_found(void **state) {
    (void)state;
    /* Feb 29 on a Sunday: 2088, then 2128 (2100 is no leap year). */
    FIRES("0 0 29 2 */7", "2060-03-01T00:00", "2088-02-29T00:00", "2128-02-29T00:00");
}

static void test_new_year_rolls_over(void **state) {
    (void)state;
    FIRES("0 0 1 1 *", "2026-12-31T23:59:59.999", "2027-01-01T00:00", "2028-01-01T00:00");
    FIRES("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59");
    FIRES("* * * * *", "2026-12-31T23:59", "2027-01-01T00:00");
    FIRES("0 0 * 1 *", "2026-02-01T00:00", "2027-01-01T00:00", "2027-01-02T00:00");
}

static void test_after_on_a_matching_minute_gives_the_next_one(void **state) {
    (void)state;
    FIRES("0 * * * *", "2026-03-04T12:00", "2026-03-04T13:00");
    FIRES("* * * * *", "2026-03-04T12:00", "2026-03-04T12:01");
    FIRES("30 12 4 3 *", "2026-03-04T12:30", "2027-03-04T12:30");
}

static void test_after_inside_a_minute_gives_a_later_minute(void **state) {
    (void)state;
    FIRES("* * * * *", "2026-03-04T12:00:00.001", "2026-03-04T12:01");
    FIRES("* * * * *", "2026-03-04T12:00:59.999", "2026-03-04T12:01");
    FIRES("30 12 * * *", "2026-03-04T12:29:59.999", "2026-03-04T12:30");
    /* Inside the matching minute itself: it has begun, so the next one. */
    FIRES("30 12 * * *", "2026-03-04T12:30:00.500", "2026-03-05T12:30");
}

static void test_times_before_1970_work(void **state) {
    party__cron c;
    int64_t next;
    (void)state;
    FIRES("0 0 29 2 *", "1950-01-01T00:00", "1952-02-29T00:00");
    FIRES("0 0 * * 4", "1969-12-25T00:00", "1970-01-01T00:00");
    FIRES("0 0 1 1 *", "1600-06-01T00:00", "1601-01-01T00:00");
    c = parse_ok("* * * * *");
    assert_int_equal(party__cron_next(&c, -1, &next), 0);
    assert_true(next == 0);
    assert_int_equal(party__cron_next(&c, -60000, &next), 0);
    assert_true(next == 0);
    assert_int_equal(party__cron_next(&c, -60001, &next), 0);
    assert_true(next == -60000);
}

static void test_dates_that_never_exist_are_not_found(void **state) {
    (void)state;
    expect_never("0 0 30 2 *", "2026-01-01T00:00");
    expect_never("0 0 31 2 *", "2026-01-01T00:00");
    expect_never("0 0 30,31 feb *", "1900-01-01T00:00");
    expect_never("0 0 31 4,6,9,11 *", "2026-01-01T00:00");
    expect_never("0 0 31 2 */2", "2026-01-01T00:00");
}

static void test_times_at_the_ends_of_int64_do_not_overflow(void **state) {
    party__cron every = parse_ok("* * * * *"), yearly = parse_ok("@yearly");
    int64_t last = INT64_MAX / 60000 * 60000, next = 1;
    (void)state;
    assert_int_equal(party__cron_next(&every, INT64_MAX, &next), PARTY_ENOTFOUND);
    assert_int_equal(party__cron_next(&every, last, &next), PARTY_ENOTFOUND);
    assert_int_equal(party__cron_next(&every, last - 60000, &next), 0);
    assert_true(next == last);
    assert_int_equal(party__cron_next(&yearly, last - 60000LL * 60 * 24 * 100, &next),
                     PARTY_ENOTFOUND);
    assert_int_equal(party__cron_next(&every, INT64_MIN, &next), 0);
    assert_true(next == (INT64_MIN / 60000) * 60000);
    assert_int_equal(party__cron_next(&yearly, INT64_MIN, &next), 0);
    assert_true(next > INT64_MIN && next % 60000 == 0);
}

static void test_hand_built_structs_stay_in_range(void **state) {
    party__cron c;
    int64_t next;
    (void)state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(party__cron_next(&c, 0, &next), PARTY_ENOTFOUND);
    /* Each field with only values that do not exist is never satisfied. */
    memset(&c, 0xff, sizeof(c));
    c.minutes = ~(((uint64_t)1 << 60) - 1);
    assert_int_equal(party__cron_next(&c, 0, &next), PARTY_ENOTFOUND);
    memset(&c, 0xff, sizeof(c));
    c.hours = 0xff000000u;
    assert_int_equal(party__cron_next(&c, 0, &next), PARTY_ENOTFOUND);
    memset(&c, 0xff, sizeof(c));
    c.months = 0xe001;
    assert_int_equal(party__cron_next(&c, 0, &next), PARTY_ENOTFOUND);
    memset(&c, 0xff, sizeof(c));
    c.days = 1;
    c.weekdays = 0x80;
    assert_int_equal(party__cron_next(&c, 0, &next), PARTY_ENOTFOUND);
    /* Next to real values they are ignored. */
    c = parse_ok("7 3 * * *");
    c.minutes |= (uint64_t)0xf << 60;
    c.hours |= 0xff000000u;
    c.months |= 0xe001;
    c.days |= 1;
    assert_int_equal(party__cron_next(&c, at("2026-03-04T12:00"), &next), 0);
    assert_true(next == at("2026-03-05T03:07"));
}

/* ---- against a brute-force oracle ---------------------------------------- */

typedef struct ref_cron {
    char expr[160];
    unsigned char member[5][64];
    int dom_star, dow_star;
} ref_cron;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void) {
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static unsigned pick(unsigned lo, unsigned hi) {
    return lo + (unsigned)(rng() % (hi - lo + 1));
}

static const unsigned field_min[5] = {0, 0, 1, 1, 0}, field_max[5] = {59, 23, 31, 12, 7};

/* Appends a value, as a name now and then where the field has names. */
static void put_value(char *buf, size_t cap, int field, unsigned v) {
    static const char *const months[] = {"JAN", "feb", "Mar", "apr", "MAY", "jun",
                                         "jul", "Aug", "sep", "OCT", "nov", "dec"};
    static const char *const days[] = {"sun", "MON", "Tue", "wed", "THU", "fri", "sat"};
    size_t len = strlen(buf);
    if (field == 3 && rng() % 3 == 0)
        snprintf(buf + len, cap - len, "%s", months[v - 1]);
    else if (field == 4 && v < 7 && rng() % 3 == 0)
        snprintf(buf + len, cap - len, "%s", days[v]);
    else
        snprintf(buf + len, cap - len, "%u", v);
}

/* One list item of the given form, its members marked in member[]. Forms:
 * 0 '*' (or '*' '/' 'S' at random), 1 'N', 2 'A-B', 3 'A-B/S', 4 'N/S',
 * 5 '*' '/' 'S'. */
static void gen_item(char *buf, size_t cap, int field, unsigned form, unsigned char *member) {
    unsigned lo = field_min[field], hi = field_max[field], step = 1, v;
    size_t len;
    if (form == 0 || form == 5) {
        strncat(buf, "*", cap - strlen(buf) - 1);
    } else {
        lo = pick(field_min[field], field_max[field]);
        put_value(buf, cap, field, lo);
        if (form == 1) {
            hi = lo;
        } else if (form == 2 || form == 3) {
            hi = pick(lo, field_max[field]);
            strncat(buf, "-", cap - strlen(buf) - 1);
            put_value(buf, cap, field, hi);
        }
    }
    if (form >= 3 || (form == 0 && rng() % 2)) {
        step = pick(1, field_max[field] - field_min[field] + 1);
        len = strlen(buf);
        snprintf(buf + len, cap - len, "/%u", step);
    }
    for (v = lo; v <= hi; v += step)
        member[v] = 1;
}

/* A random expression. Day and month fields are often '*', as in real
 * crontabs, so most expressions fire within the oracle's reach; one in four
 * is sparse instead: one month, one day of month and a weekday step, which
 * makes a day match both fields and can push firings years apart or make
 * them impossible. */
static void gen_cron(ref_cron *r) {
    int f, sparse = rng() % 4 == 0;
    memset(r, 0, sizeof(*r));
    for (f = 0; f < 5; f++) {
        char field[64] = "";
        unsigned n = 1;
        if (sparse && f >= 2) {
            gen_item(field, sizeof(field), f, f == 4 ? 5 : 1, r->member[f]);
        } else if (f >= 2 && rng() % 2 == 0) {
            strcpy(field, "*");
            memset(r->member[f], 1, sizeof(r->member[f]));
        } else {
            n = rng() % 4 == 0 ? pick(2, 3) : 1;
            while (n--) {
                gen_item(field, sizeof(field), f, pick(0, 4), r->member[f]);
                if (n)
                    strncat(field, ",", sizeof(field) - strlen(field) - 1);
            }
        }
        if (f == 2)
            r->dom_star = field[0] == '*';
        if (f == 4)
            r->dow_star = field[0] == '*';
        strncat(r->expr, field, sizeof(r->expr) - strlen(r->expr) - 1);
        strncat(r->expr, rng() % 4 ? " " : " \t ", sizeof(r->expr) - strlen(r->expr) - 1);
    }
}

static int ref_day_matches(const ref_cron *r, const struct tm *tm) {
    int dom = r->member[2][tm->tm_mday];
    int dow = r->member[4][tm->tm_wday] || (tm->tm_wday == 0 && r->member[4][7]);
    if (!r->member[3][tm->tm_mon + 1])
        return 0;
    return r->dom_star || r->dow_star ? dom && dow : dom || dow;
}

/* Minute by minute from the first whole minute after after_ms, for at most
 * limit minutes; a day whose date does not match is skipped whole, since no
 * minute in it can. 1 and *next_ms when found. */
static int ref_next(const ref_cron *r, int64_t after_ms, int64_t limit, int64_t *next_ms) {
    int64_t t = after_ms / 60000 - (after_ms % 60000 < 0) + 1, end = t + limit;
    while (t < end) {
        time_t s = (time_t)(t * 60);
        struct tm tm;
        gmtime_r(&s, &tm);
        if (!ref_day_matches(r, &tm)) {
            t += 1440 - (tm.tm_hour * 60 + tm.tm_min);
            continue;
        }
        if (r->member[1][tm.tm_hour] && r->member[0][tm.tm_min]) {
            *next_ms = t * 60000;
            return 1;
        }
        t++;
    }
    return 0;
}

static void test_random_expressions_agree_with_brute_force_search(void **state) {
    const int64_t lo = at("1890-01-01T00:00"), hi = at("2310-01-01T00:00");
    /* One whole 400-year calendar cycle and a bit: the oracle finding
     * nothing in it proves the expression never fires. */
    const int64_t limit = (int64_t)401 * 366 * 1440;
    const int64_t five_years = (int64_t)5 * 365 * 1440 * 60000;
    int i, j, f, soon = 0, far = 0, never = 0;
    (void)state;
    for (i = 0; i < 2000; i++) {
        ref_cron r;
        party__cron c;
        const char *why = NULL;
        gen_cron(&r);
        if (party__cron_parse(r.expr, &c, &why) != 0)
            print_error("'%s' rejected: %s\n", r.expr, why);
        assert_null(why);
        for (f = 0; f < 60; f++)
            assert_int_equal((c.minutes >> f) & 1, r.member[0][f]);
        for (f = 0; f < 24; f++)
            assert_int_equal((c.hours >> f) & 1, r.member[1][f]);
        for (f = 1; f <= 31; f++)
            assert_int_equal((c.days >> f) & 1, r.member[2][f]);
        for (f = 1; f <= 12; f++)
            assert_int_equal((c.months >> f) & 1, r.member[3][f]);
        for (f = 0; f < 7; f++)
            assert_int_equal((c.weekdays >> f) & 1, r.member[4][f] || (f == 0 && r.member[4][7]));
        assert_int_equal(!!(c.flags & PARTY__CRON_DOM_STAR), r.dom_star);
        assert_int_equal(!!(c.flags & PARTY__CRON_DOW_STAR), r.dow_star);

        for (j = 0; j < 4; j++) {
            int64_t after = lo + (int64_t)(rng() % (uint64_t)(hi - lo)), want = 0, got = 0;
            int rc, ok;
            if (j == 0)
                after -= after % 60000;
            rc = party__cron_next(&c, after, &got);
            ok = ref_next(&r, after, limit, &want);
            if (ok != (rc == 0) || got != want) {
                char a[32], w[32] = "(never)", g[32] = "(never)";
                format_ms(after, a, sizeof(a));
                if (ok)
                    format_ms(want, w, sizeof(w));
                if (rc == 0)
                    format_ms(got, g, sizeof(g));
                print_error("'%s' after %s (%lld ms): got %s, want %s\n", r.expr, a,
                            (long long)after, g, w);
            }
            assert_int_equal(rc, ok ? 0 : PARTY_ENOTFOUND);
            assert_true(got == want);
            if (!ok)
                never++;
            else if (got - after > five_years)
                far++;
            else
                soon++;
        }
    }
    /* The generator must reach every kind of answer. */
    print_message("%d within five years, %d further, %d never\n", soon, far, never);
    assert_true(soon > 4000 && far > 0 && never > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_parse_into_bitsets),
        cmocka_unit_test(test_steps_select_every_nth_from_the_start),
        cmocka_unit_test(test_names_are_case_insensitive_and_work_in_ranges),
        cmocka_unit_test(test_sunday_parses_the_same_as_0_7_and_name),
        cmocka_unit_test(test_blanks_between_and_around_fields_are_allowed),
        cmocka_unit_test(test_day_star_flags_follow_the_first_character),
        cmocka_unit_test(test_macros_expand_to_their_expressions),
        cmocka_unit_test(test_expression_of_256_bytes_parses_and_257_does_not),
        cmocka_unit_test(test_malformed_expressions_are_rejected_with_a_reason),
        cmocka_unit_test(test_null_arguments_are_rejected),
        cmocka_unit_test(test_day_31_skips_months_without_one),
        cmocka_unit_test(test_feb_29_waits_for_the_next_leap_year),
        cmocka_unit_test(test_sunday_as_0_or_7_fires_at_the_same_times),
        cmocka_unit_test(test_ranges_fire_at_each_value_in_them),
        cmocka_unit_test(test_steps_fire_every_nth_value),
        cmocka_unit_test(test_lists_fire_at_each_item),
        cmocka_unit_test(test_later_hour_restarts_from_the_first_minute),
        cmocka_unit_test(test_both_day_fields_restricted_fire_on_either),
        cmocka_unit_test(test_one_day_field_star_lets_only_the_other_restrict),
        cmocka_unit_test(test_star_step_day_field_requires_both_days_to_match),
        cmocka_unit_test(test_rare_dates_decades_away_are_found),
        cmocka_unit_test(test_new_year_rolls_over),
        cmocka_unit_test(test_after_on_a_matching_minute_gives_the_next_one),
        cmocka_unit_test(test_after_inside_a_minute_gives_a_later_minute),
        cmocka_unit_test(test_times_before_1970_work),
        cmocka_unit_test(test_dates_that_never_exist_are_not_found),
        cmocka_unit_test(test_times_at_the_ends_of_int64_do_not_overflow),
        cmocka_unit_test(test_hand_built_structs_stay_in_range),
        cmocka_unit_test(test_random_expressions_agree_with_brute_force_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
