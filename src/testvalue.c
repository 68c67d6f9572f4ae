/*
 * testvalue.c: the values of rtu test's expectations: an expected value matched
 * against what was stored or produced (documents as a subset, field by field,
 * numbers whatever their BSON type, dates against their ISO text), and JSON
 * text for its messages (keys sorted where Lua tables gave them in no order).
 * It runs nothing and reads no file.
 */
#include "testvalue.h"

#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "json_write.h"
#include "util.h"

void rtu_testvalue_json(const bson_iter_t *it, bson_string_t *out) {
  bson_t tmp = BSON_INITIALIZER;
  bson_append_iter(&tmp, "v", 1, it);
  rtu_json_write_first(&tmp, out);
  bson_destroy(&tmp);
}

void rtu_testvalue_doc_json(const bson_t *doc, bson_string_t *out) {
  rtu_json_write_doc(doc, false, out);
}

static int key_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* JSON with every object's keys sorted: the filters and documents the
 * strategies build come from Lua tables, whose key order changes from run to
 * run, and --explain must read the same each time. */
static void canonical_json(const bson_iter_t *it, bson_string_t *out) {
  bson_iter_t sub;
  if (BSON_ITER_HOLDS_ARRAY(it) && bson_iter_recurse(it, &sub)) {
    bool first = true;
    bson_string_append_c(out, '[');
    while (bson_iter_next(&sub)) {
      if (!first) bson_string_append_c(out, ',');
      first = false;
      canonical_json(&sub, out);
    }
    bson_string_append_c(out, ']');
    return;
  }
  if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) {
    rtu_testvalue_json(it, out);
    return;
  }
  size_t n = 0, i = 0;
  while (bson_iter_next(&sub)) n++;
  const char **keys = calloc(n ? n : 1, sizeof *keys);
  if (!keys) return;
  bson_iter_recurse(it, &sub);
  while (bson_iter_next(&sub)) keys[i++] = bson_iter_key(&sub);
  qsort(keys, n, sizeof *keys, key_cmp);
  bson_string_append_c(out, '{');
  for (i = 0; i < n; i++) {
    if (i) bson_string_append_c(out, ',');
    rtu_json_write_string(out, keys[i], strlen(keys[i]));
    bson_string_append_c(out, ':');
    bson_iter_recurse(it, &sub);
    if (bson_iter_find(&sub, keys[i])) canonical_json(&sub, out);
  }
  bson_string_append_c(out, '}');
  free(keys);
}

void rtu_testvalue_canonical(const bson_t *doc, bson_string_t *out) {
  bson_t wrap = BSON_INITIALIZER;
  bson_iter_t it;
  BSON_APPEND_DOCUMENT(&wrap, "v", doc);
  if (bson_iter_init_find(&it, &wrap, "v")) canonical_json(&it, out);
  bson_destroy(&wrap);
}

/* JSON text, or else the text itself as a string, into {"v": ...}. */
void rtu_testvalue_parse(const char *text, size_t len, bson_t *out) {
  char err[RTU_ERRSTR_SIZE];
  if (text && rtu_json_read_bson(text, len, out, err, sizeof err) == RTU_OK) return;
  bson_init(out);
  if (text) bson_append_utf8(out, "v", 1, text, (int)len);
  else bson_append_null(out, "v", 1);
}

static bool is_number(const bson_iter_t *it) {
  return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_DOUBLE(it);
}

static bool doc_subset(const bson_iter_t *exp, const bson_iter_t *act, const char *path,
                       bson_string_t *diff) {
  bson_iter_t e, a;
  bool ok = true;
  if (!bson_iter_recurse(exp, &e)) return false;
  while (bson_iter_next(&e)) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", bson_iter_key(&e));
    if (!bson_iter_recurse(act, &a) || !bson_iter_find(&a, bson_iter_key(&e))) {
      bson_string_append_printf(diff, "    %s: missing, expected ", sub);
      rtu_testvalue_json(&e, diff);
      bson_string_append_c(diff, '\n');
      ok = false;
      continue;
    }
    ok &= rtu_testvalue_subset(&e, &a, sub, diff);
  }
  return ok;
}

static bool array_subset(const bson_iter_t *exp, const bson_iter_t *act) {
  bson_iter_t e, a;
  if (!bson_iter_recurse(exp, &e) || !bson_iter_recurse(act, &a)) return false;
  bson_string_t *ignored = bson_string_new(NULL);
  bool ok = true;
  for (;;) {
    bool more_e = bson_iter_next(&e), more_a = bson_iter_next(&a);
    if (more_e != more_a) ok = false;
    if (!more_e || !more_a || !ok) break;
    ok = rtu_testvalue_subset(&e, &a, "", ignored);
  }
  bson_string_free(ignored, true);
  return ok;
}

/* The expected value matches the actual one: documents as a subset (field by
 * field, recursively), arrays element by element, numbers by value whatever
 * their type, a date against its ISO text or its milliseconds. */
bool rtu_testvalue_same(const bson_iter_t *exp, const bson_iter_t *act) {
  if (is_number(exp) && is_number(act)) {
    if (BSON_ITER_HOLDS_DOUBLE(exp) || BSON_ITER_HOLDS_DOUBLE(act))
      return bson_iter_as_double(exp) == bson_iter_as_double(act);
    return bson_iter_as_int64(exp) == bson_iter_as_int64(act);
  }
  if (BSON_ITER_HOLDS_DATE_TIME(act)) {
    if (is_number(exp)) return bson_iter_as_int64(exp) == bson_iter_date_time(act);
    if (BSON_ITER_HOLDS_UTF8(exp)) {
      char iso[40];
      rtu_iso8601(bson_iter_date_time(act), iso, sizeof iso);
      return !strcmp(iso, bson_iter_utf8(exp, NULL));
    }
  }
  if (BSON_ITER_HOLDS_OID(act) && BSON_ITER_HOLDS_UTF8(exp)) {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(act), hex);
    return !strcmp(hex, bson_iter_utf8(exp, NULL));
  }
  if (BSON_ITER_HOLDS_ARRAY(exp) && BSON_ITER_HOLDS_ARRAY(act)) return array_subset(exp, act);
  bson_string_t *e = bson_string_new(NULL), *a = bson_string_new(NULL);
  rtu_testvalue_json(exp, e);
  rtu_testvalue_json(act, a);
  bool same = !strcmp(e->str, a->str);
  bson_string_free(e, true);
  bson_string_free(a, true);
  return same;
}

bool rtu_testvalue_subset(const bson_iter_t *exp, const bson_iter_t *act, const char *path,
                   bson_string_t *diff) {
  if (BSON_ITER_HOLDS_DOCUMENT(exp) && BSON_ITER_HOLDS_DOCUMENT(act))
    return doc_subset(exp, act, path, diff);
  if (rtu_testvalue_same(exp, act)) return true;
  bson_string_append_printf(diff, "    %s: expected ", path[0] ? path : "value");
  rtu_testvalue_json(exp, diff);
  bson_string_append(diff, ", got ");
  rtu_testvalue_json(act, diff);
  bson_string_append_c(diff, '\n');
  return false;
}

/* Documents: expected a subset of actual. */
bool rtu_testvalue_doc_matches(const bson_t *exp, const bson_t *act, bson_string_t *diff) {
  bson_t we = BSON_INITIALIZER, wa = BSON_INITIALIZER;
  bson_iter_t e, a;
  BSON_APPEND_DOCUMENT(&we, "v", exp);
  BSON_APPEND_DOCUMENT(&wa, "v", act);
  bool ok = bson_iter_init_find(&e, &we, "v") && bson_iter_init_find(&a, &wa, "v") &&
            doc_subset(&e, &a, "", diff);
  bson_destroy(&we);
  bson_destroy(&wa);
  return ok;
}

bool rtu_testvalue_sub_doc(const bson_iter_t *it, bson_t *out) {
  const uint8_t *data;
  uint32_t len;
  if (!BSON_ITER_HOLDS_DOCUMENT(it) && !BSON_ITER_HOLDS_ARRAY(it)) return false;
  if (BSON_ITER_HOLDS_DOCUMENT(it)) bson_iter_document(it, &len, &data);
  else bson_iter_array(it, &len, &data);
  return bson_init_static(out, data, len);
}

bool rtu_testvalue_field_doc(const bson_t *doc, const char *key, bson_t *out) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && rtu_testvalue_sub_doc(&it, out);
}
