/*
 * json_scan.h: the tokens of strict JSON (RFC 8259), shared by the two direct
 * readers: JSON text -> BSON (json_read.c) and JSON text -> Lua (json_lua.c).
 * Header only and static inline: both readers call these once per value or per
 * member, and a call across files each time would be what the direct readers
 * exist to avoid. Nothing here allocates.
 */
#ifndef RTU_JSON_SCAN_H
#define RTU_JSON_SCAN_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The direct readers give up on nesting deeper than this (libbson decides then). */
#define RTU_JSON_SCAN_MAX_DEPTH 64

static inline const char *rtu_json_scan_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

static inline int rtu_json_scan_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The UTF-8 bytes of code point cp (below 0x10000) into out; their count. */
static inline size_t rtu_json_scan_utf8(int cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  out[0] = (char)(0xE0 | (cp >> 12));
  out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[2] = (char)(0x80 | (cp & 0x3F));
  return 3;
}

/* The escape after a backslash at *pp (its letter): its UTF-8 bytes into out (at
 * most 3), *pp moved past it. \u0000 and surrogates are refused, as libbson's
 * reading of them differs from a plain decoder's. */
static inline bool rtu_json_scan_escape(const char **pp, const char *end, char out[4],
                                        size_t *k) {
  const char *p = *pp;
  if (p >= end) return false;
  char e = *p++;
  *k = 1;
  switch (e) {
  case '"': case '\\': case '/': out[0] = e; break;
  case 'b': out[0] = '\b'; break;
  case 'f': out[0] = '\f'; break;
  case 'n': out[0] = '\n'; break;
  case 'r': out[0] = '\r'; break;
  case 't': out[0] = '\t'; break;
  case 'u': {
    if (end - p < 4) return false;
    int cp = 0;
    for (int i = 0; i < 4; i++) {
      int h = rtu_json_scan_hexval(p[i]);
      if (h < 0) return false;
      cp = cp * 16 + h;
    }
    p += 4;
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) return false; /* libbson's call */
    *k = rtu_json_scan_utf8(cp, out);
    break;
  }
  default: return false;
  }
  *pp = p;
  return true;
}

/* The value of a number's text [start, p) that the digit loop could not give
 * (more than 18 digits, or not an integer): strtoll or strtod on a copy. */
static inline bool rtu_json_scan_number_slow(const char *start, const char *p, bool integral,
                                             int64_t *i, double *d) {
  char num[64];
  size_t n = (size_t)(p - start);
  if (n >= sizeof num) return false;
  memcpy(num, start, n);
  num[n] = '\0';
  errno = 0;
  char *stop;
  if (integral) {
    long long v = strtoll(num, &stop, 10);
    *i = (int64_t)v;
    return !errno && !*stop;
  }
  *d = strtod(num, &stop);
  return !errno && !*stop && isfinite(*d);
}

/* The number at *pp, strict JSON syntax: an integer (64-bit, anything beyond is
 * refused as json_read.c's prescan does) or a finite double; *pp moved past it. */
static inline bool rtu_json_scan_number(const char **pp, const char *end, bool *integral,
                                        int64_t *i, double *d) {
  const char *p = *pp, *start = p;
  bool neg = false;
  *integral = true;
  if (p < end && *p == '-') {
    neg = true;
    p++;
  }
  if (p >= end) return false;
  const char *digits = p;
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (p < end && *p >= '0' && *p <= '9') p++;
  else return false;
  size_t ndigits = (size_t)(p - digits);
  if (p < end && *p == '.') {
    *integral = false;
    if (++p >= end || *p < '0' || *p > '9') return false;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    *integral = false;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return false;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  *pp = p;
  if (*integral && ndigits <= 18) {
    /* 18 digits cannot overflow 64 bits: no strtoll needed. */
    uint64_t v = 0;
    for (size_t k = 0; k < ndigits; k++) v = v * 10 + (uint64_t)(digits[k] - '0');
    *i = neg ? -(int64_t)v : (int64_t)v;
    return true;
  }
  return rtu_json_scan_number_slow(start, p, *integral, i, d);
}

/* Between a member's name and its value: the colon, with the spaces around it. */
static inline bool rtu_json_scan_colon(const char **pp, const char *end) {
  const char *p = rtu_json_scan_ws(*pp, end);
  if (p >= end || *p != ':') return false;
  *pp = rtu_json_scan_ws(p + 1, end);
  return true;
}

/* After a member or element: 1 for a comma (another follows), 0 for the closing
 * bracket, -1 for anything else. */
static inline int rtu_json_scan_next(const char **pp, const char *end, char close) {
  const char *p = rtu_json_scan_ws(*pp, end);
  if (p < end && *p == ',') {
    *pp = rtu_json_scan_ws(p + 1, end);
    return 1;
  }
  if (p < end && *p == close) {
    *pp = p + 1;
    return 0;
  }
  return -1;
}

/* The unescaped stretch of a string from p: where it stops (its closing quote or a
 * backslash; end when neither comes), NULL at a control character, which JSON
 * refuses. *high is set when a byte needs UTF-8 validation. */
static inline const char *rtu_json_scan_plain(const char *p, const char *end, bool *high) {
  while (p < end && *p != '"' && *p != '\\') {
    unsigned char c = (unsigned char)*p++;
    if (c < 0x20) return NULL;
    *high |= c >= 0x80;
  }
  return p;
}

/* What rtu_json_scan_decimal found. */
typedef enum {
  RTU_DECIMAL_NOT,   /* not a plain decimal */
  RTU_DECIMAL_INT,   /* *i: an integer of at most 18 digits, as tonumber gives it */
  RTU_DECIMAL_FLOAT, /* *d: tonumber's double, to the bit */
  RTU_DECIMAL_LONG,  /* a plain decimal too long for the exact paths: strtod's to read */
} rtu_decimal_t;

/* A text that is a plain decimal, '-'? digit+ ('.' digit*)?, read as Lua's
 * tonumber reads it, without strtod where that is exact: the common CDC form of
 * numbers sent as strings ("42", "-3.50"), which the casts convert. An integer
 * of at most 18 digits is accumulated as tonumber does; a decimal whose digits
 * make at most 2^53 with at most 22 after the point is one division of two exact
 * doubles, which IEEE rounds correctly, as glibc's strtod does (Clinger's fast
 * path); anything longer is RTU_DECIMAL_LONG. */
static inline rtu_decimal_t rtu_json_scan_decimal(const char *s, size_t n, int64_t *i, double *d) {
  const char *p = s, *end = s + n;
  bool neg = p < end && *p == '-';
  if (neg) p++;
  const char *first = p;
  uint64_t m = 0;
  bool exact = true; /* every digit is in m, which stays below 10^18 */
  int frac = -1;     /* digits after the point, -1: no point */
  for (; p < end; p++) {
    unsigned digit = (unsigned char)*p - '0';
    if (digit > 9) {
      if (*p != '.' || frac >= 0 || p == first) break;
      frac = 0;
      continue;
    }
    if (m >= 100000000000000000ULL) exact = false;
    else m = m * 10 + digit;
    if (frac >= 0) frac++;
  }
  if (p != end || p == first) return RTU_DECIMAL_NOT;
  static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (exact && frac < 0) {
    *i = neg ? (int64_t)(0 - m) : (int64_t)m;
    return RTU_DECIMAL_INT;
  }
  if (exact && m <= (1ULL << 53) && frac <= 22) {
    double v = (double)m / pow10[frac];
    *d = neg ? -v : v;
    return RTU_DECIMAL_FLOAT;
  }
  return RTU_DECIMAL_LONG;
}

#endif
