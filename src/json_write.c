/*
 * json_write.c: owns the writing of JSON text from BSON, as JSON.stringify
 * writes it: integers exact, dates as ISO-8601 strings, ObjectIds as hex
 * strings, strings escaped with invalid UTF-8 as U+FFFD. It reads the BSON in
 * place (bson_raw.h) and appends to a bson_string_t; it holds no state and
 * knows nothing of Lua.
 */
#include "json_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_raw.h"

/* Room for n more bytes and the terminating NUL; the bytes go at the returned
 * pointer and count once sb_done moves the length past them. bson_string_append
 * wants a NUL-terminated string (a strlen per piece) and has no length form in
 * libbson 1.23, and bson_string_append_c is a call per character. */
static char *sb_room(bson_string_t *out, size_t n) {
  if ((size_t)out->alloc - out->len - 1 < n) {
    size_t want = (size_t)out->len + n + 1, alloc = out->alloc ? out->alloc : 16;
    while (alloc < want) alloc *= 2;
    out->str = bson_realloc(out->str, alloc);
    out->alloc = (uint32_t)alloc;
  }
  return out->str + out->len;
}

static void sb_done(bson_string_t *out, const char *end) {
  out->len = (uint32_t)(end - out->str);
  out->str[out->len] = '\0';
}

static void sb_put(bson_string_t *out, const char *s, size_t n) {
  char *d = sb_room(out, n);
  memcpy(d, s, n);
  sb_done(out, d + n);
}

static void sb_c(bson_string_t *out, char c) {
  char *d = sb_room(out, 1);
  *d = c;
  sb_done(out, d + 1);
}

/* The bytes of one UTF-8 sequence starting at s (its lead byte >= 0x80), or 0
 * when it is not one: what bson_utf8_validate accepts without NULs (no overlong
 * form, not even modified UTF-8's 0xC0 0x80, no surrogate, nothing above
 * U+10FFFF), without a call per character. */
static size_t utf8_seq(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n = c >= 0xf8 ? 0 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || n > left) return 0;
  uint32_t cp = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
  for (size_t k = 1; k < n; k++) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[k] & 0x3f);
  }
  if (n == 3 && (cp < 0x800 || (cp & 0xfffff800) == 0xd800)) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return n;
}

/* 1 for the bytes a JSON string holds as they are (ASCII, not a control
 * character, quote or backslash); the others go the slow way. */
static const unsigned char json_plain_byte[256] = {
#define P8 1, 1, 1, 1, 1, 1, 1, 1
    [0x20] = 1, 1, 0 /* " */, 1, 1, 1, 1, 1, P8, P8, P8, P8, P8, P8, /* to 0x57 */
    1, 1, 1, 1, 0 /* \ */, 1, 1, 1, P8, P8, P8, P8, /* to 0x7f */
#undef P8
};

/* Non-zero when one of the 8 bytes in x is not json_plain_byte: below 0x20,
 * from 0x80, a quote or a backslash (the classic "has a byte less than" and "has
 * a zero byte" tests; exact for the whole word, not per byte). */
static uint64_t json_look8(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & highs;
}

/* The escape of byte c (neither plain nor the start of a UTF-8 sequence) at d,
 * at most 6 bytes; returns past it. A byte from 0x80 is not UTF-8: U+FFFD. */
static char *json_escape_byte(char *d, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  *d++ = '\\';
  switch (c) {
  case '"': *d++ = '"'; break;
  case '\\': *d++ = '\\'; break;
  case '\b': *d++ = 'b'; break;
  case '\f': *d++ = 'f'; break;
  case '\n': *d++ = 'n'; break;
  case '\r': *d++ = 'r'; break;
  case '\t': *d++ = 't'; break;
  default:
    if (c >= 0x80) {
      memcpy(d, "ufffd", 5);
    } else {
      d[0] = 'u';
      d[1] = '0';
      d[2] = '0';
      d[3] = hex[c >> 4];
      d[4] = hex[c & 15];
    }
    d += 5;
  }
  return d;
}

/* A JSON string as JSON.stringify writes it: quote, backslash and control
 * characters escaped, other characters as they are. libbson's
 * bson_utf8_escape_for_json appends one code point at a time (see
 * docs/performance.md) and gives nothing at all for a string that is not
 * UTF-8; an invalid byte here becomes U+FFFD and the rest is kept. */
void rtu_json_write_string(bson_string_t *out, const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  /* Room for the quotes and every byte as it is; an escape asks for more. */
  char *d = sb_room(out, len + 2);
  *d++ = '"';
  size_t i = 0, stop = 0;
  while (i < len) {
    /* Eight bytes at a time while none needs a look (most text is plain
     * ASCII); past one that does, byte by byte to the end of those eight. */
    if (i >= stop && len - i >= 8) {
      uint64_t x;
      memcpy(&x, u + i, 8);
      if (!json_look8(x)) {
        memcpy(d, &x, 8);
        d += 8;
        i += 8;
        continue;
      }
      stop = i + 8;
    } else if (i >= stop && len >= 8) {
      /* the last eight bytes, the first of them written already (plain bytes
       * are written one for one, so they go at the same places again) */
      uint64_t x;
      memcpy(&x, u + len - 8, 8);
      if (!json_look8(x)) {
        memcpy(d - (i - (len - 8)), &x, 8);
        d += len - i;
        break;
      }
      stop = len;
    }
    unsigned char c = u[i];
    if (json_plain_byte[c]) {
      *d++ = (char)c;
      i++;
      continue;
    }
    size_t seq = c >= 0x80 ? utf8_seq(u + i, len - i) : 0;
    if (seq) {
      memcpy(d, u + i, seq);
      d += seq;
      i += seq;
      continue;
    }
    /* an escape is at most 6 bytes for the 1 counted */
    sb_done(out, d);
    d = json_escape_byte(sb_room(out, len - i + 1 + 5), c);
    i++;
  }
  *d++ = '"';
  sb_done(out, d);
}

void rtu_json_write_int(bson_string_t *out, int64_t v) {
  char *d = sb_room(out, 24);
  sb_done(out, d + rtu_int_text(v, d));
}

/* The digits of d when it has at most 15 significant ones, none of them past
 * the 9th decimal, and is at least 1e-4: what %.15g writes then (no exponent),
 * without snprintf and strtod. m / 10^k is the double nearest m * 10^-k (both
 * exact, one rounding), so it equals d exactly when strtod of the digits would;
 * and with at most DBL_DIG digits, digits that come back as d are the ones %.15g
 * gives. 0 when d is not such a number. */
static size_t short_double(double d, char buf[40]) {
  static const double pow10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
  double a = fabs(d);
  if (!(a >= 1e-4 && a < 1e15)) return 0;
  for (int k = 0; k < 10; k++) {
    double m = nearbyint(a * pow10[k]);
    if (m >= 1e15) return 0;
    if (m / pow10[k] != a) continue;
    uint64_t v = (uint64_t)m, unit = (uint64_t)pow10[k];
    char *p = buf;
    if (d < 0) *p++ = '-';
    p += rtu_int_text((int64_t)(v / unit), p);
    uint64_t frac = v % unit;
    int w = k;
    while (w > 0 && frac % 10 == 0) { /* %g drops trailing zeros */
      frac /= 10;
      w--;
    }
    if (w) {
      *p++ = '.';
      for (int j = w - 1; j >= 0; j--) {
        p[j] = (char)('0' + frac % 10);
        frac /= 10;
      }
      p += w;
    }
    return (size_t)(p - buf);
  }
  return 0;
}

/* d (finite, not 0) as JavaScript's Number::toString writes it: the fewest
 * significant digits that read back as d (%.*e correctly rounds, so the first
 * precision that round-trips gives them), plain from 1e-6 up to below 1e21,
 * else with an exponent written e+21 / e-7. Keys are compared as bytes by
 * Kafka's partitioner, so "1e+21" and "1e21" are different partitions.
 * One departure: from 2^63 up to 1e21 JavaScript writes the integer's digits,
 * which json_read.c refuses (an integer beyond 64 bits); there the exponent
 * form is kept, so rtu reads back what it writes. */
static size_t js_double(double d, char buf[40]) {
  char e[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(e, sizeof e, "%.*e", prec - 1, d);
    if (strtod(e, NULL) == d) break;
  }
  char digits[20];
  size_t k = 0;
  const char *p = e + (e[0] == '-');
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[k++] = *p;
  while (k > 1 && digits[k - 1] == '0') k--;
  int n = atoi(p + 1) + 1; /* the decimal point goes after n digits */
  char *o = buf;
  if (d < 0) *o++ = '-';
  bool beyond_int64 = fabs(d) >= 9223372036854775808.0;
  if ((int)k <= n && n <= 21 && !beyond_int64) {
    memcpy(o, digits, k);
    o += k;
    for (int i = (int)k; i < n; i++) *o++ = '0';
  } else if (0 < n && n <= 21 && !beyond_int64) {
    memcpy(o, digits, (size_t)n);
    o += n;
    *o++ = '.';
    memcpy(o, digits + n, k - (size_t)n);
    o += k - (size_t)n;
  } else if (-6 < n && n <= 0) {
    *o++ = '0';
    *o++ = '.';
    for (int i = n; i < 0; i++) *o++ = '0';
    memcpy(o, digits, k);
    o += k;
  } else {
    *o++ = digits[0];
    if (k > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, k - 1);
      o += k - 1;
    }
    o += snprintf(o, 8, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
  }
  return (size_t)(o - buf);
}

static void json_double(bson_string_t *out, double d) {
  if (!isfinite(d)) {
    sb_put(out, "null", 4); /* as JSON.stringify */
    return;
  }
  char buf[40];
  size_t n;
  if (d == 0) {
    n = 1; /* -0 too: JSON.stringify(-0) is "0" */
    buf[0] = '0';
  } else {
    n = short_double(d, buf);
  }
  if (n == 0) n = js_double(d, buf);
  sb_put(out, buf, n);
}

/* Text that needs no escape, quoted. */
static void json_quoted(bson_string_t *out, const char *s, size_t n) {
  char *d = sb_room(out, n + 2);
  *d = '"';
  memcpy(d + 1, s, n);
  d[n + 1] = '"';
  sb_done(out, d + n + 2);
}

static void json_raw_members(const uint8_t *data, uint32_t len, bool array, bson_string_t *out);

/* The value of the given type whose bytes start at v, read in place (within the
 * bounds rtu_bson_raw_element checked). */
static void json_raw_value(uint8_t type, const uint8_t *v, bson_string_t *out) {
  switch (type) {
  case BSON_TYPE_DOUBLE: {
    uint64_t bits = rtu_bson_raw_le64(v);
    double d;
    memcpy(&d, &bits, sizeof d);
    json_double(out, d);
    break;
  }
  case BSON_TYPE_UTF8:
    rtu_json_write_string(out, (const char *)v + 4, rtu_bson_raw_le32(v) - 1);
    break;
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY:
    sb_c(out, type == BSON_TYPE_ARRAY ? '[' : '{');
    json_raw_members(v, rtu_bson_raw_le32(v), type == BSON_TYPE_ARRAY, out);
    sb_c(out, type == BSON_TYPE_ARRAY ? ']' : '}');
    break;
  case BSON_TYPE_OID: {
    char hex[25];
    bson_oid_t oid;
    memcpy(oid.bytes, v, 12);
    bson_oid_to_string(&oid, hex);
    json_quoted(out, hex, 24);
    break;
  }
  case BSON_TYPE_BOOL:
    if (*v) sb_put(out, "true", 4);
    else sb_put(out, "false", 5);
    break;
  case BSON_TYPE_DATE_TIME: {
    char iso[40];
    rtu_iso8601((int64_t)rtu_bson_raw_le64(v), iso, sizeof iso);
    json_quoted(out, iso, strlen(iso));
    break;
  }
  case BSON_TYPE_INT32: rtu_json_write_int(out, (int32_t)rtu_bson_raw_le32(v)); break;
  case BSON_TYPE_INT64: rtu_json_write_int(out, (int64_t)rtu_bson_raw_le64(v)); break;
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d = {.low = rtu_bson_raw_le64(v), .high = rtu_bson_raw_le64(v + 8)};
    char s[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(&d, s);
    sb_put(out, s, strlen(s));
    break;
  }
  default: sb_put(out, "null", 4); break;
  }
}

/* The members of a document's len bytes, without the brackets, read in place
 * (len from the element, within its parent, as bson_iter_recurse takes it). */
static void json_raw_members(const uint8_t *data, uint32_t len, bool array, bson_string_t *out) {
  const uint8_t *key;
  uint32_t off = 4, next, kl;
  bool first = true;
  for (; rtu_bson_raw_element(data, len, &off, &key, &kl, &next); off = next) {
    if (!first) sb_c(out, ',');
    first = false;
    if (!array) {
      rtu_json_write_string(out, (const char *)key, kl);
      sb_c(out, ':');
    }
    json_raw_value(data[off], key + kl + 1, out);
  }
}

void rtu_json_write_first(const bson_t *doc, bson_string_t *out) {
  const uint8_t *data = bson_get_data(doc), *key;
  uint32_t off = 4, next, kl;
  if (rtu_bson_raw_element(data, doc->len, &off, &key, &kl, &next))
    json_raw_value(data[off], key + kl + 1, out);
}

void rtu_json_write_doc(const bson_t *doc, bool as_array, bson_string_t *out) {
  sb_c(out, as_array ? '[' : '{');
  json_raw_members(bson_get_data(doc), doc->len, as_array, out);
  sb_c(out, as_array ? ']' : '}');
}
