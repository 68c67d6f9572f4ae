/*
 * util.c: status names and clocks shared by every subsystem. No state.
 */
#include "rtu.h"

#include <stdio.h>
#include <time.h>

const char *rtu_err_name(rtu_err_t err) {
  switch (err) {
  case RTU_OK: return "ok";
  case RTU_ERR_CONFIG: return "config";
  case RTU_ERR_DATA: return "data";
  case RTU_ERR_SCRIPT: return "script";
  case RTU_ERR_TRANSIENT: return "transient";
  case RTU_ERR_FATAL: return "fatal";
  }
  return "unknown";
}

int64_t rtu_now_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rtu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rtu_iso8601(int64_t ms, char *buf, size_t size) {
  int64_t secs = ms / 1000, rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    secs -= 1;
  }
  time_t t = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(buf, size, "invalid");
    return;
  }
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}
