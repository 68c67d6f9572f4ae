/*
 * fuzz_json_bson: rtu's JSON -> BSON reader (rtu_json_read_bson: its own
 * strict parser, libbson's behind a prescan) against libbson's JSON parser.
 *
 * When both accept a text, the documents must be equal: the same keys in the
 * same order, the same strings, integers equal (an int32 and an int64 of one
 * value are equal: both keep it exact), doubles equal bit for bit, the same
 * kind otherwise. rtu may not accept what libbson refuses. Where libbson
 * accepts and rtu refuses, the cause must be one rtu documents (libbson's
 * extensions of JSON: extended-JSON keywords as names, integers past 64 bits
 * that libbson wraps, NaN and Infinity, comments, text after the value);
 * each is counted by class and printed at exit, never dropped silently.
 * And the reader's halves: what its direct reader takes, the fallback (prescan
 * and libbson) reads byte for byte the same.
 */
#include <math.h>

#include "fuzz.h"

/* libbson parses documents only: the text goes under "v", as rtu itself does
 * when it falls back to libbson (a newline, so that a comment cannot eat the
 * closing brace). */
static bool libbson_read(const uint8_t *data, size_t size, bson_t *out) {
  uint8_t *buf = malloc(size + 7);
  if (!buf) fuzz_fail("out of memory");
  memcpy(buf, "{\"v\":", 5);
  memcpy(buf + 5, data, size);
  buf[size + 5] = '\n';
  buf[size + 6] = '}';
  bson_error_t err;
  bool ok = bson_init_from_json(out, (const char *)buf, (ssize_t)(size + 7), &err);
  free(buf);
  return ok;
}

static bool is_int(const bson_iter_t *it) {
  return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it);
}

static bool same_members(bson_iter_t *a, bson_iter_t *b, char *why, size_t whysz);

/* Whether a and b (each on an element) hold equal values, per the rules above. */
static bool same_value(bson_iter_t *a, bson_iter_t *b, char *why, size_t whysz) {
  const char *key = bson_iter_key(a);
  if (is_int(a) && is_int(b)) {
    if (bson_iter_as_int64(a) == bson_iter_as_int64(b)) return true;
    snprintf(why, whysz, "'%s': integer %lld, libbson %lld", key, (long long)bson_iter_as_int64(a),
             (long long)bson_iter_as_int64(b));
    return false;
  }
  if (bson_iter_type(a) != bson_iter_type(b)) {
    snprintf(why, whysz, "'%s': type 0x%02x, libbson 0x%02x", key, bson_iter_type(a),
             bson_iter_type(b));
    return false;
  }
  switch (bson_iter_type(a)) {
  case BSON_TYPE_DOUBLE: {
    double x = bson_iter_double(a), y = bson_iter_double(b);
    if (!memcmp(&x, &y, sizeof x)) return true;
    snprintf(why, whysz, "'%s': double %a, libbson %a", key, x, y);
    return false;
  }
  case BSON_TYPE_UTF8: {
    uint32_t n, m;
    const char *s = bson_iter_utf8(a, &n), *t = bson_iter_utf8(b, &m);
    if (n == m && !memcmp(s, t, n)) return true;
    snprintf(why, whysz, "'%s': string of %u bytes, libbson %u", key, n, m);
    return false;
  }
  case BSON_TYPE_BOOL:
    if (bson_iter_bool(a) == bson_iter_bool(b)) return true;
    snprintf(why, whysz, "'%s': boolean differs", key);
    return false;
  case BSON_TYPE_NULL: return true;
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    bson_iter_t ca, cb;
    if (!bson_iter_recurse(a, &ca) || !bson_iter_recurse(b, &cb)) {
      snprintf(why, whysz, "'%s': cannot recurse", key);
      return false;
    }
    return same_members(&ca, &cb, why, whysz);
  }
  default:
    /* JSON gives no other kind; libbson's extended JSON does, but rtu refuses
     * every text that would make one. */
    snprintf(why, whysz, "'%s': unexpected type 0x%02x", key, bson_iter_type(a));
    return false;
  }
}

static bool same_members(bson_iter_t *a, bson_iter_t *b, char *why, size_t whysz) {
  for (;;) {
    bool na = bson_iter_next(a), nb = bson_iter_next(b);
    if (na != nb) {
      snprintf(why, whysz, "%s has more members", na ? "rtu" : "libbson");
      return false;
    }
    if (!na) return true;
    const char *ka = bson_iter_key(a), *kb = bson_iter_key(b);
    if (strcmp(ka, kb)) {
      snprintf(why, whysz, "key '%.40s', libbson '%.40s'", ka, kb);
      return false;
    }
    if (!same_value(a, b, why, whysz)) return false;
  }
}

/* libbson accepted, rtu refused: the class of rtu's documented refusal, or NULL. */
static const char *refusal_class(const char *err) {
  static const struct {
    const char *needle, *name;
  } classes[] = {
      {"extended-JSON keyword", "libbson reads a $-keyword name as extended JSON"},
      {"does not fit in 64 bits", "integer past 64 bits (libbson wraps it)"},
      {"is not a JSON value", "NaN or Infinity (libbson takes them)"},
      {"unexpected '/'", "a comment (libbson skips it)"},
      {"unexpected ','", "text after the value (libbson reads more members)"},
      {"unexpected '}'", "text after the value (libbson reads more members)"},
      {"unexpected ']'", "text after the value (libbson reads more members)"},
      {"more than one JSON value", "text after the value (libbson reads more members)"},
      {"nesting deeper than", "nesting deeper than rtu's limit"},
  };
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
    if (strstr(err, classes[i].needle)) return classes[i].name;
  return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_report_at_exit();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bson_t mine, theirs;
  char err[RTU_ERRSTR_SIZE] = "";
  bool mine_ok = (rtu_json_read_bson((const char *)data, size, &mine, err, sizeof err) == RTU_OK);
  bool theirs_ok = libbson_read(data, size, &theirs);
  if (mine_ok && !theirs_ok)
    fuzz_fail("rtu accepts a text that libbson refuses: %.*s", (int)(size > 200 ? 200 : size),
              (const char *)data);
  if (!mine_ok && theirs_ok) {
    const char *cls = refusal_class(err);
    if (!cls)
      fuzz_fail("rtu refuses (%s) a text that libbson accepts: %.*s", err,
                (int)(size > 200 ? 200 : size), (const char *)data);
    fuzz_count(cls);
  }
  if (mine_ok && theirs_ok) {
    bson_iter_t a, b;
    char why[256];
    if (!bson_iter_init(&a, &mine) || !bson_iter_init(&b, &theirs) ||
        !same_members(&a, &b, why, sizeof why))
      fuzz_fail("rtu and libbson differ (%s) on: %.*s", why, (int)(size > 200 ? 200 : size),
                (const char *)data);
    fuzz_count(bson_equal(&mine, &theirs) ? "equal, byte for byte"
                                          : "equal values, other integer widths");
  }
  if (mine_ok) bson_destroy(&mine);
  if (theirs_ok) bson_destroy(&theirs);

  /* The reader's two halves: a text its direct reader takes reads the same,
   * byte for byte, through the fallback (the prescan, then libbson). */
  bson_t strict, fallback;
  if (rtu_json_read_strict((const char *)data, size, false, &strict)) {
    if (rtu_json_read_libbson((const char *)data, size, &fallback, err, sizeof err) != RTU_OK)
      fuzz_fail("the direct reader takes a text the fallback refuses (%s): %.*s", err,
                (int)(size > 200 ? 200 : size), (const char *)data);
    if (!bson_equal(&strict, &fallback))
      fuzz_fail("the direct reader and the fallback differ on: %.*s", (int)(size > 200 ? 200 : size),
                (const char *)data);
    bson_destroy(&fallback);
    bson_destroy(&strict);
  }
  return 0;
}
