/* Tests of the built-in reminder party (parties/reminder.c) through
 * party_test.h: what it answers when an alarm or a schedule is set, and
 * the 400 it gives times that are not whole numbers of milliseconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"
#include "party_test.h"
#include "parties.h"

static int setup(void **state) {
    party_test *t = party_test_new();
    if (t == NULL || party_test_add(t, party_builtin_reminder()) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    party_test_free(*state);
    return 0;
}

/* method target: its status, and its body parsed as JSON into *json. */
static int request_json(party_test *t, const char *method, const char *target, cJSON **json) {
    party_test_response res;
    int status;
    assert_int_equal(party_test_request(t, method, target, NULL, NULL, 0, &res), 0);
    status = res.status;
    *json = cJSON_Parse(res.body);
    if (*json == NULL)
        fail_msg("%s %s: %d, not JSON: %s", method, target, status, res.body);
    party_test_response_free(&res);
    return status;
}

static double number_of(const cJSON *json, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!cJSON_IsNumber(item))
        fail_msg("no number '%s'", key);
    return item->valuedouble;
}

static void test_alarm_answer_says_when_it_fires(void **state) {
    party_test *t = *state;
    cJSON *json, *fired;
    double at = (double)(party_test_now(t) + 60000);

    assert_int_equal(request_json(t, "POST", "/parties/reminder/r?alarm_in=60000", &json), 201);
    assert_true(number_of(json, "alarm") == at);
    assert_null(cJSON_GetObjectItemCaseSensitive(json, "id"));
    cJSON_Delete(json);
    /* The room says the same time. */
    assert_int_equal(request_json(t, "GET", "/parties/reminder/r", &json), 200);
    assert_true(number_of(json, "alarm") == at);
    cJSON_Delete(json);
    /* And it fires then. */
    assert_int_equal(party_test_advance(t, 60000), 0);
    assert_int_equal(request_json(t, "GET", "/parties/reminder/r", &json), 200);
    fired = cJSON_GetObjectItemCaseSensitive(json, "fired");
    assert_int_equal(cJSON_GetArraySize(fired), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fired, 0), "name")->valuestring,
                        "alarm");
    cJSON_Delete(json);
}

static void test_schedule_answer_carries_its_id(void **state) {
    party_test *t = *state;
    cJSON *json;
    const cJSON *id;

    assert_int_equal(request_json(t, "POST", "/parties/reminder/s?in=5000&name=tea", &json), 201);
    id = cJSON_GetObjectItemCaseSensitive(json, "id");
    assert_true(cJSON_IsString(id));
    assert_int_equal(strlen(id->valuestring), 32);
    cJSON_Delete(json);
}

static void test_times_that_are_not_whole_milliseconds_are_400(void **state) {
    static const char *const targets[] = {
        "/parties/reminder/b?alarm_in=soon",
        "/parties/reminder/b?alarm_in=",
        "/parties/reminder/b?alarm_in=10s",
        "/parties/reminder/b?alarm_in=%2B5",
        "/parties/reminder/b?alarm_in=%205",
        "/parties/reminder/b?in=1.5",
        "/parties/reminder/b?in=abc",
        "/parties/reminder/b?at=tomorrow",
        "/parties/reminder/b?every=1000x",
        "/parties/reminder/b?in=99999999999999999999",
        "/parties/reminder/b?alarm_in=9223372036854775807",
    };
    party_test *t = *state;
    size_t i;

    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        cJSON *json;
        const cJSON *error;
        int status = request_json(t, "POST", targets[i], &json);
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        if (status != 400 || !cJSON_IsString(error) ||
            strstr(error->valuestring, "is not a whole number of milliseconds") == NULL)
            fail_msg("POST %s: %d %s", targets[i], status,
                     cJSON_IsString(error) ? error->valuestring : "(no error)");
        cJSON_Delete(json);
    }
    /* Nothing was set. */
    {
        cJSON *json;
        assert_int_equal(request_json(t, "GET", "/parties/reminder/b", &json), 200);
        assert_true(number_of(json, "alarm") == 0);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "schedules")), 0);
        cJSON_Delete(json);
    }
}

static void test_post_without_a_time_is_400_naming_the_parameters(void **state) {
    party_test *t = *state;
    cJSON *json;

    assert_int_equal(request_json(t, "POST", "/parties/reminder/n?name=x", &json), 400);
    assert_string_equal(cJSON_GetObjectItem(json, "error")->valuestring,
                        "expected one of in, at, every, cron or alarm_in");
    cJSON_Delete(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alarm_answer_says_when_it_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schedule_answer_carries_its_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_times_that_are_not_whole_milliseconds_are_400, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_post_without_a_time_is_400_naming_the_parameters,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
