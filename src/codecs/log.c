/* log: formats a line with timestamp and level and writes it to stderr in
 * one write, so lines from concurrent threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Appends src to out as the inside of a JSON string. Returns the new
 * length (never past cap - 1). */
static size_t json_escape(char *out, size_t n, size_t cap, const char *src) {
    static const char hex[] = "0123456789abcdef";
    for (; *src != '\0' && n + 7 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            out[n++] = '\\';
            out[n++] = 'u';
            out[n++] = '0';
            out[n++] = '0';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

void party__log_write(int max_level, int json, int level, const char *fmt, ...) {
    char line[2048], msg[1024], stamp[40];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int m;
    va_list ap;

    if (level > max_level || level < 0 || level > PARTY__LOG_DEBUG)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    va_start(ap, fmt);
    m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    if (json) {
        n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                             stamp, level_names[level]);
        n = json_escape(line, n, sizeof(line) - 3, msg);
        line[n++] = '"';
        line[n++] = '}';
    } else {
        m = snprintf(line, sizeof(line) - 1, "%s %-5s %s", stamp, level_names[level], msg);
        n = m < 0 ? 0 : (size_t)m < sizeof(line) - 1 ? (size_t)m : sizeof(line) - 2;
    }
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}
