/* short_thread: the job runs once, with its argument, on a thread other
 * than the caller's, and is over when the call returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "short_thread.h"

typedef struct probe {
    int runs;
    uv_thread_t ran_on;
    char *made; /* allocated by the job, freed by the caller */
} probe;

static void probe_job(void *arg) {
    probe *p = arg;
    p->runs++;
    p->ran_on = uv_thread_self();
    p->made = malloc(16);
    if (p->made != NULL)
        strcpy(p->made, "from the job");
}

static void test_job_runs_once_on_another_thread_before_the_call_returns(void **state) {
    probe p;
    uv_thread_t self = uv_thread_self();
    (void)state;
    memset(&p, 0, sizeof(p));

    party__short_thread_run(probe_job, &p);
    assert_int_equal(p.runs, 1);
    assert_false(uv_thread_equal(&p.ran_on, &self));
    assert_non_null(p.made);
    assert_string_equal(p.made, "from the job");
    free(p.made);
}

static void slow_job(void *arg) {
    int *done = arg;
    uv_sleep(50);
    *done = 1;
}

static void test_the_call_waits_for_a_slow_job(void **state) {
    int done = 0;
    (void)state;
    party__short_thread_run(slow_job, &done);
    assert_int_equal(done, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_runs_once_on_another_thread_before_the_call_returns),
        cmocka_unit_test(test_the_call_waits_for_a_slow_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
