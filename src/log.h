/*
 * log.h: JSON log lines on stdout, one object per line, pino-shaped
 * ({"level":30,"time":...,"msg":"..."} plus fields), filtered by LOG_LEVEL.
 */
#ifndef RTU_LOG_H
#define RTU_LOG_H

#include <stdbool.h>

typedef enum {
  RTU_LOG_TRACE = 10,
  RTU_LOG_DEBUG = 20,
  RTU_LOG_INFO = 30,
  RTU_LOG_WARN = 40,
  RTU_LOG_ERROR = 50,
  RTU_LOG_FATAL = 60,
  RTU_LOG_SILENT = 100,
} rtu_log_level_t;

/* Parses a pino level name; returns false when unknown. */
bool rtu_log_parse_level(const char *name, rtu_log_level_t *out);
void rtu_log_set_level(rtu_log_level_t level);
bool rtu_log_enabled(rtu_log_level_t level);

/*
 * Writes one line: msg, then key/value string pairs terminated by NULL. Values are
 * JSON-escaped strings; a key starting with '#' writes its value raw (numbers, or
 * JSON already encoded), without the '#'.
 */
void rtu_log(rtu_log_level_t level, const char *msg, ...)
    __attribute__((sentinel));

#endif
