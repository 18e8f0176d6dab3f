/* short_thread: one job, one thread, joined (see short_thread.h). */
#include "short_thread.h"

#include <uv.h>

typedef struct job {
    void (*fn)(void *arg);
    void *arg;
} job;

static void job_main(void *arg) {
    job *j = arg;
    j->fn(j->arg);
}

void party__short_thread_run(void (*fn)(void *arg), void *arg) {
    job j;
    uv_thread_t thread;

    j.fn = fn;
    j.arg = arg;
    if (uv_thread_create(&thread, job_main, &j) != 0) {
        fn(arg);
        return;
    }
    (void)uv_thread_join(&thread);
}
