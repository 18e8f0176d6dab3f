/* log: formats a line with timestamp and level and writes it to stderr in
 * one write, so lines from concurrent threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void party__log_write(int max_level, int level, const char *fmt, ...) {
    char line[1024];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int m;
    va_list ap;

    if (level > max_level || level < 0 || level > PARTY__LOG_DEBUG)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    m = snprintf(line + n, sizeof(line) - n, ".%03dZ %-5s ", (int)(tv.tv_usec / 1000),
                 level_names[level]);
    if (m > 0)
        n += (size_t)m;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}
