/*
 * fuzz_json_read: rtu's JSON reader and writer on arbitrary bytes, checked
 * against themselves (fuzz_json_bson checks the reader against libbson).
 *
 * - rtu_json_read_bson: an accepted text gives a valid document of one
 *   member "v"; the JSON that rtu writes of it (rtu_json_write_first, the
 *   writer of projection changes and Kafka outputs) reads back as the same
 *   value, but for what the writer documents: it writes as JSON.stringify does,
 *   so an integral double below 10^15 comes back as an integer of that value.
 * - rtu_key_text_append (the message key as stored): valid BSON, and a
 *   document exactly when the key reads as a JSON object.
 * - rtu_json_write_string: the JSON string of any bytes reads back as those
 *   bytes when they are UTF-8.
 */
#define _GNU_SOURCE /* memmem */
#include <math.h>

#include "fuzz.h"

static bool same_value(bson_iter_t *a, bson_iter_t *b);

static bool same_members(bson_iter_t *a, bson_iter_t *b) {
  for (;;) {
    bool na = bson_iter_next(a), nb = bson_iter_next(b);
    if (na != nb) return false;
    if (!na) return true;
    if (strcmp(bson_iter_key(a), bson_iter_key(b)) || !same_value(a, b)) return false;
  }
}

/* a as read, b as read again from rtu's JSON of a. */
static bool same_value(bson_iter_t *a, bson_iter_t *b) {
  bson_type_t ta = bson_iter_type(a), tb = bson_iter_type(b);
  bool ia = ta == BSON_TYPE_INT32 || ta == BSON_TYPE_INT64;
  bool ib = tb == BSON_TYPE_INT32 || tb == BSON_TYPE_INT64;
  if (ia && ib) return bson_iter_as_int64(a) == bson_iter_as_int64(b);
  if (ta == BSON_TYPE_DOUBLE && ib) {
    double d = bson_iter_double(a);
    fuzz_count("an integral double written as an integer");
    /* JSON.stringify writes integral doubles as digits up to 1e21; the writer
     * does so below 2^63, where int64 holds them exactly (json_write.c) */
    return d == trunc(d) && fabs(d) < 9223372036854775808.0 && (double)bson_iter_as_int64(b) == d;
  }
  if (ta != tb) return false;
  switch (ta) {
  case BSON_TYPE_DOUBLE: {
    double x = bson_iter_double(a), y = bson_iter_double(b);
    return !memcmp(&x, &y, sizeof x);
  }
  case BSON_TYPE_UTF8: {
    uint32_t n, m;
    const char *s = bson_iter_utf8(a, &n), *t = bson_iter_utf8(b, &m);
    return n == m && !memcmp(s, t, n);
  }
  case BSON_TYPE_BOOL: return bson_iter_bool(a) == bson_iter_bool(b);
  case BSON_TYPE_NULL: return true;
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    bson_iter_t ca, cb;
    return bson_iter_recurse(a, &ca) && bson_iter_recurse(b, &cb) && same_members(&ca, &cb);
  }
  default: return false;
  }
}

static bool has_nonfinite(bson_iter_t *it) {
  while (bson_iter_next(it)) {
    bson_iter_t child;
    if (BSON_ITER_HOLDS_DOUBLE(it) && !isfinite(bson_iter_double(it))) return true;
    if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) &&
        bson_iter_recurse(it, &child) && has_nonfinite(&child))
      return true;
  }
  return false;
}

static void check_read_write(const char *text, size_t size) {
  bson_t doc;
  char err[RTU_ERRSTR_SIZE];
  if (rtu_json_read_bson(text, size, &doc, err, sizeof err) != RTU_OK) {
    if (!err[0]) fuzz_fail("refused without a message");
    return;
  }
  size_t offset;
  if (!bson_validate(&doc, BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL, &offset))
    fuzz_fail("invalid BSON at byte %zu", offset);
  bson_iter_t it;
  if (bson_count_keys(&doc) != 1 || !bson_iter_init_find(&it, &doc, "v"))
    fuzz_fail("not one member v");
  /* The writer has no form for non-finite doubles (it writes null, as
   * JSON.stringify), and JSON text gives none but through libbson's reading of
   * a huge exponent: such texts are left out of the round trip, counted. */
  bson_string_t *json = bson_string_new(NULL);
  rtu_json_write_first(&doc, json);
  bson_t again;
  if (rtu_json_read_bson(json->str, json->len, &again, err, sizeof err) != RTU_OK)
    fuzz_fail("rtu cannot read its own JSON (%s): %s", err, json->str);
  bson_iter_t a, b;
  if (!bson_iter_init(&a, &doc) || !bson_iter_init(&b, &again) || !same_members(&a, &b)) {
    bson_iter_t all;
    /* The readers take modified UTF-8's overlong NUL (0xC0 0x80: libbson's UTF-8
     * check and JSON reader accept it) and store it; the writer gives U+FFFD for
     * each byte, as a JavaScript decoder does. Counted, not a failure. */
    bool overlong_nul = memmem(text, size, "\xc0\x80", 2) != NULL;
    if (overlong_nul) {
      fuzz_count("an overlong NUL read as is, written as U+FFFD");
    } else if (!bson_iter_init(&all, &doc) || !has_nonfinite(&all)) {
      char *j = bson_as_canonical_extended_json(&doc, NULL);
      fuzz_fail("read(write(x)) differs from x: %s became %s", j, json->str);
    } else {
      fuzz_count("a non-finite double written as null");
    }
  }
  bson_destroy(&again);
  bson_string_free(json, true);
  bson_destroy(&doc);
}

static void check_original_key(const char *text, size_t size) {
  bson_t out = BSON_INITIALIZER;
  rtu_key_text_append(&out, "key", text, size);
  size_t offset;
  if (!bson_validate(&out, BSON_VALIDATE_NONE, &offset))
    fuzz_fail("original key: invalid BSON at byte %zu", offset);
  bson_iter_t it;
  if (!bson_iter_init_find(&it, &out, "key")) fuzz_fail("original key: no field");
  bson_t doc;
  char err[RTU_ERRSTR_SIZE];
  bool object = false;
  if (rtu_json_read_bson(text, size, &doc, err, sizeof err) == RTU_OK) {
    bson_iter_t v;
    object = bson_iter_init_find(&v, &doc, "v") && BSON_ITER_HOLDS_DOCUMENT(&v);
    bson_destroy(&doc);
  }
  if (object != BSON_ITER_HOLDS_DOCUMENT(&it))
    fuzz_fail("original key: a document %s, a JSON object %s", BSON_ITER_HOLDS_DOCUMENT(&it) ? "yes" : "no",
              object ? "yes" : "no");
  bson_destroy(&out);
}

static void check_json_string(const char *s, size_t size) {
  bson_string_t *json = bson_string_new(NULL);
  rtu_json_write_string(json, s, size);
  bson_t doc;
  char err[RTU_ERRSTR_SIZE];
  if (rtu_json_read_bson(json->str, json->len, &doc, err, sizeof err) != RTU_OK)
    fuzz_fail("rtu cannot read its JSON string (%s)", err);
  bson_iter_t it;
  if (!bson_iter_init_find(&it, &doc, "v") || !BSON_ITER_HOLDS_UTF8(&it))
    fuzz_fail("its JSON string is not a string");
  uint32_t n;
  const char *back = bson_iter_utf8(&it, &n);
  /* libbson's check accepts 0xC0 0x80, modified UTF-8's overlong NUL, when NULs
   * are allowed; it is not UTF-8 (RFC 3629), rtu's readers refuse it, and the
   * writer gives U+FFFD for each of its bytes, as a JavaScript decoder does. */
  bool overlong_nul = memmem(s, size, "\xc0\x80", 2) != NULL;
  if (overlong_nul) fuzz_count("an overlong NUL written as U+FFFD");
  if (bson_utf8_validate(s, size, true) && !overlong_nul && (n != size || memcmp(back, s, size)))
    fuzz_fail("JSON string round trip changed %zu bytes into %u", size, n);
  bson_destroy(&doc);
  bson_string_free(json, true);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_report_at_exit();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  check_read_write(text, size);
  check_original_key(text, size);
  check_json_string(text, size);
  return 0;
}
