/*
 * util.c: clocks, number and date text, aligned allocation, shared by every
 * subsystem. No state.
 */
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t rtu_now_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rtu_now_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t rtu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t rtu_int_text(int64_t v, char buf[24]) {
  /* two digits a division: it runs for several numbers of every pr-update message */
  static const char pairs[201] =
      "00010203040506070809101112131415161718192021222324"
      "25262728293031323334353637383940414243444546474849"
      "50515253545556575859606162636465666768697071727374"
      "75767778798081828384858687888990919293949596979899";
  char tmp[24], *p = tmp + sizeof tmp;
  uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  while (m >= 100) {
    p -= 2;
    memcpy(p, pairs + 2 * (m % 100), 2);
    m /= 100;
  }
  if (m >= 10) {
    p -= 2;
    memcpy(p, pairs + 2 * m, 2);
  } else {
    *--p = (char)('0' + m);
  }
  if (v < 0) *--p = '-';
  size_t n = (size_t)(tmp + sizeof tmp - p);
  memcpy(buf, p, n);
  buf[n] = '\0';
  return n;
}

static char *two_digits(char *p, unsigned v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
  return p + 2;
}

/* JavaScript's toISOString: years outside 0..9999 get six digits and a sign.
 * Civil-from-days (H. Hinnant) keeps it exact for the whole JS date range,
 * without gmtime's limits. */
void rtu_iso8601(int64_t ms, char *buf, size_t size) {
  int64_t days = ms / 86400000, rem = ms % 86400000;
  if (rem < 0) {
    rem += 86400000;
    days -= 1;
  }
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) y += 1;
  if (y >= 0 && y <= 9999 && size >= 25) {
    /* Written by hand, two digits at a time in 32 bits: it runs once per message
     * for the metadata, several times for a pr-update message. */
    unsigned r = (unsigned)rem, yy = (unsigned)y;
    char *p = buf;
    p = two_digits(p, yy / 100);
    p = two_digits(p, yy % 100);
    *p++ = '-';
    p = two_digits(p, (unsigned)m);
    *p++ = '-';
    p = two_digits(p, (unsigned)d);
    *p++ = 'T';
    p = two_digits(p, r / 3600000);
    *p++ = ':';
    p = two_digits(p, r / 60000 % 60);
    *p++ = ':';
    p = two_digits(p, r / 1000 % 60);
    *p++ = '.';
    *p++ = (char)('0' + r % 1000 / 100);
    p = two_digits(p, r % 100);
    *p++ = 'Z';
    *p = '\0';
    return;
  }
  char year[16];
  if (y >= 0 && y <= 9999) snprintf(year, sizeof year, "%04lld", (long long)y);
  else snprintf(year, sizeof year, "%c%06lld", y < 0 ? '-' : '+', (long long)(y < 0 ? -y : y));
  snprintf(buf, size, "%s-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ", year, (long long)m,
           (long long)d, (long long)(rem / 3600000), (long long)(rem / 60000 % 60),
           (long long)(rem / 1000 % 60), (long long)(rem % 1000));
}

void *rtu_aligned_calloc(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  size_t bytes = n * size;
  if (bytes == 0) bytes = 1;
  void *p = NULL;
  if (posix_memalign(&p, 128, bytes) != 0) return NULL;
  memset(p, 0, bytes);
  return p;
}
