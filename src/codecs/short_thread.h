/* short_thread: runs one job on a thread that ends with it. The C
 * library's malloc keeps blocks a thread freed in that thread's own cache
 * (glibc's tcache), scattered over the pages they came from, until the
 * thread ends; libuv's worker threads live as long as partyd, so whatever
 * SQLite freed on them last stayed resident. Opening and closing a room's
 * database, the work that allocates most, runs here instead. */
#ifndef PARTY_SHORT_THREAD_H
#define PARTY_SHORT_THREAD_H

/* Runs fn(arg) on a new thread and returns once that thread has ended
 * (call from a thread that may block, e.g. a libuv worker). If no thread
 * can be created, fn runs on the calling thread: the job is done either
 * way. */
void party__short_thread_run(void (*fn)(void *arg), void *arg);

#endif
