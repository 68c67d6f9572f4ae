/*
 * log.c: owns stdout's log lines. Thread-safe: one line is built in a local buffer
 * and written with one fwrite under the stdio lock, so lines from workers never
 * interleave. It knows nothing of the pipeline.
 */
#include "log.h"
#include "rtu.h"
#include "util.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int log_level = RTU_LOG_INFO;

static const struct {
  const char *name;
  rtu_log_level_t level;
} levels[] = {
    {"trace", RTU_LOG_TRACE}, {"debug", RTU_LOG_DEBUG}, {"info", RTU_LOG_INFO},
    {"warn", RTU_LOG_WARN},   {"error", RTU_LOG_ERROR}, {"fatal", RTU_LOG_FATAL},
    {"silent", RTU_LOG_SILENT},
};

bool rtu_log_parse_level(const char *name, rtu_log_level_t *out) {
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
    if (strcasecmp(name, levels[i].name) == 0) {
      *out = levels[i].level;
      return true;
    }
  return false;
}

void rtu_log_set_level(rtu_log_level_t level) { log_level = level; }

bool rtu_log_enabled(rtu_log_level_t level) { return (int)level >= log_level; }

typedef struct {
  char buf[8192];
  size_t len;
} line_t;

static void put(line_t *l, const char *s, size_t n) {
  if (l->len + n >= sizeof l->buf - 2) n = sizeof l->buf - 2 - l->len;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void put_escaped(line_t *l, const char *s) {
  char tmp[8];
  put(l, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': put(l, "\\\"", 2); break;
    case '\\': put(l, "\\\\", 2); break;
    case '\n': put(l, "\\n", 2); break;
    case '\r': put(l, "\\r", 2); break;
    case '\t': put(l, "\\t", 2); break;
    default:
      if (*p < 0x20) {
        snprintf(tmp, sizeof tmp, "\\u%04x", *p);
        put(l, tmp, 6);
      } else {
        put(l, (const char *)p, 1);
      }
    }
  }
  put(l, "\"", 1);
}

void rtu_log(rtu_log_level_t level, const char *msg, ...) {
  if (!rtu_log_enabled(level)) return;
  line_t l = {.len = 0};
  char head[96];
  int n = snprintf(head, sizeof head, "{\"level\":%d,\"time\":%lld,\"pid\":%d,\"msg\":",
                   (int)level, (long long)rtu_now_ms(), (int)getpid());
  put(&l, head, (size_t)n);
  put_escaped(&l, msg);

  va_list ap;
  va_start(ap, msg);
  const char *key;
  while ((key = va_arg(ap, const char *)) != NULL) {
    const char *val = va_arg(ap, const char *);
    bool raw = key[0] == '#';
    if (raw) key++;
    put(&l, ",", 1);
    put_escaped(&l, key);
    put(&l, ":", 1);
    if (!val) put(&l, "null", 4);
    else if (raw) put(&l, val, strlen(val));
    else put_escaped(&l, val);
  }
  va_end(ap);
  put(&l, "}\n", 2);
  flockfile(stdout);
  fwrite(l.buf, 1, l.len, stdout);
  fflush(stdout);
  funlockfile(stdout);
}
