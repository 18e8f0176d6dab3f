/* log: one line per event of interest on stderr, with a level and a UTC
 * timestamp. The runtime owns the level; there is no global logger. */
#ifndef PARTY_LOG_H
#define PARTY_LOG_H

#include "party.h"

/* The levels of party.h (party_config.log_level, party_room_log). */
enum {
    PARTY__LOG_ERROR = PARTY_LOG_ERROR,
    PARTY__LOG_WARN = PARTY_LOG_WARN,
    PARTY__LOG_INFO = PARTY_LOG_INFO,
    PARTY__LOG_DEBUG = PARTY_LOG_DEBUG,
};

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
