/* log: one line per event of interest on stderr, with a level and a UTC
 * timestamp. The runtime owns the level; there is no global logger. */
#ifndef PARTY_LOG_H
#define PARTY_LOG_H

enum { PARTY__LOG_ERROR = 0, PARTY__LOG_WARN = 1, PARTY__LOG_INFO = 2, PARTY__LOG_DEBUG = 3 };

/* Writes one line if level <= max_level: text ("<time> <level> <message>")
 * or, with json set, one JSON object ({"time":..,"level":..,"msg":..}). */
void party__log_write(int max_level, int json, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define party__log(rt, level, ...)                                                                 \
    party__log_write((rt)->cfg.log_level, (rt)->cfg.log_json, (level), __VA_ARGS__)
#define party__log_error(rt, ...) party__log(rt, PARTY__LOG_ERROR, __VA_ARGS__)
#define party__log_warn(rt, ...) party__log(rt, PARTY__LOG_WARN, __VA_ARGS__)
#define party__log_info(rt, ...) party__log(rt, PARTY__LOG_INFO, __VA_ARGS__)
#define party__log_debug(rt, ...) party__log(rt, PARTY__LOG_DEBUG, __VA_ARGS__)

#endif
