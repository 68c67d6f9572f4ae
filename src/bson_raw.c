/*
 * bson_raw.c: owns the operations on BSON alone: documents written as bytes
 * (rtu_bson_raw_t), a field found without the iterator, the merge of an older
 * $set under a newer one, the comparison of named fields, the search for empty
 * field names. It knows nothing of Lua or JSON and holds no state; the readers
 * it shares with the JSON writer are in bson_raw.h.
 */
#include "bson_raw.h"

/* ---- reading ------------------------------------------------------------- */

bool rtu_bson_raw_find(bson_iter_t *it, const bson_t *doc, const char *key) {
  const uint8_t *data = bson_get_data(doc), *k;
  uint32_t off = 4, next, kl;
  size_t n = strlen(key);
  for (; rtu_bson_raw_element(data, doc->len, &off, &k, &kl, &next); off = next)
    if (kl == n && !memcmp(k, key, n))
      return bson_iter_init_from_data_at_offset(it, data, doc->len, off, kl);
  return false;
}

/* A field name: out and src do not change until the missing fields are
 * appended at the end, so the names can be pointed at. */
typedef struct {
  const uint8_t *p;
  uint32_t len;
} key_ref_t;

typedef struct {
  key_ref_t *keys, local[64];
  size_t n, cap;
} key_set_t;

static void key_push(key_set_t *ks, const uint8_t *p, uint32_t len) {
  if (ks->n == ks->cap) {
    key_ref_t *grown = bson_malloc(2 * ks->cap * sizeof *grown);
    memcpy(grown, ks->keys, ks->n * sizeof *grown);
    if (ks->keys != ks->local) bson_free(ks->keys);
    ks->keys = grown;
    ks->cap *= 2;
  }
  ks->keys[ks->n++] = (key_ref_t){p, len};
}

/* The index of the name k in ks, ks->n when it is not there. The look-up starts
 * at *hint, after the last name found: the documents merged here usually hold
 * their common names in the same order, one step each. */
static size_t key_find(const key_set_t *ks, size_t *hint, const uint8_t *k, uint32_t kl) {
  size_t n = ks->n;
  for (size_t step = 0; step < n; step++) {
    size_t j = *hint + step < n ? *hint + step : *hint + step - n;
    if (ks->keys[j].len == kl && !memcmp(ks->keys[j].p, k, kl)) {
      *hint = j + 1;
      return j;
    }
  }
  return n;
}

void rtu_bson_raw_append_missing(bson_t *out, const bson_t *src) {
  const uint8_t *od = bson_get_data(out), *sd = bson_get_data(src), *k;
  uint32_t off = 4, next, kl;
  key_set_t ks;
  ks.keys = ks.local;
  ks.n = 0;
  ks.cap = sizeof ks.local / sizeof ks.local[0];
  for (; rtu_bson_raw_element(od, out->len, &off, &k, &kl, &next); off = next)
    key_push(&ks, k, kl);
  rtu_bson_raw_t add;
  rtu_bson_raw_init(&add);
  bool adding = false;
  size_t hint = 0;
  for (off = 4; rtu_bson_raw_element(sd, src->len, &off, &k, &kl, &next); off = next) {
    size_t n = ks.n;
    if (key_find(&ks, &hint, k, kl) < n) continue;
    key_push(&ks, k, kl); /* a name repeated in src: its first wins */
    rtu_bson_raw_bytes(&add, sd + off, next - off);
    adding = true;
  }
  if (adding) rtu_bson_raw_concat(&add, out);
  if (ks.keys != ks.local) bson_free(ks.keys);
}

static bool same_value(bson_iter_t *ia, bson_iter_t *ib) {
  bson_type_t t = bson_iter_type(ia);
  if (t != bson_iter_type(ib)) return false;
  const bson_value_t *a = bson_iter_value(ia), *b = bson_iter_value(ib);
  switch (t) {
  case BSON_TYPE_UTF8:
    return a->value.v_utf8.len == b->value.v_utf8.len &&
           !memcmp(a->value.v_utf8.str, b->value.v_utf8.str, a->value.v_utf8.len);
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY:
    return a->value.v_doc.data_len == b->value.v_doc.data_len &&
           !memcmp(a->value.v_doc.data, b->value.v_doc.data, a->value.v_doc.data_len);
  case BSON_TYPE_BINARY:
    return a->value.v_binary.subtype == b->value.v_binary.subtype &&
           a->value.v_binary.data_len == b->value.v_binary.data_len &&
           !memcmp(a->value.v_binary.data, b->value.v_binary.data, a->value.v_binary.data_len);
  case BSON_TYPE_DOUBLE: /* bits, not ==: NaN stays NaN, -0.0 is not 0.0 */
    return !memcmp(&a->value.v_double, &b->value.v_double, sizeof a->value.v_double);
  case BSON_TYPE_INT32: return a->value.v_int32 == b->value.v_int32;
  case BSON_TYPE_INT64: return a->value.v_int64 == b->value.v_int64;
  case BSON_TYPE_BOOL: return a->value.v_bool == b->value.v_bool;
  case BSON_TYPE_DATE_TIME: return a->value.v_datetime == b->value.v_datetime;
  case BSON_TYPE_OID: return !memcmp(&a->value.v_oid, &b->value.v_oid, sizeof a->value.v_oid);
  case BSON_TYPE_TIMESTAMP:
    return a->value.v_timestamp.timestamp == b->value.v_timestamp.timestamp &&
           a->value.v_timestamp.increment == b->value.v_timestamp.increment;
  case BSON_TYPE_DECIMAL128:
    return a->value.v_decimal128.low == b->value.v_decimal128.low &&
           a->value.v_decimal128.high == b->value.v_decimal128.high;
  case BSON_TYPE_NULL:
  case BSON_TYPE_UNDEFINED:
  case BSON_TYPE_MINKEY:
  case BSON_TYPE_MAXKEY: return true;
  default: return false;
  }
}

bool rtu_bson_raw_same_fields(const bson_t *a, const bson_t *b, char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bson_iter_t ia, ib;
    bool ha = rtu_bson_raw_find(&ia, a, names[i]), hb = rtu_bson_raw_find(&ib, b, names[i]);
    if (ha != hb || (ha && !same_value(&ia, &ib))) return false;
  }
  return true;
}

static bool iter_has_empty_key(bson_iter_t *it, int depth) {
  while (bson_iter_next(it)) {
    if (bson_iter_key_len(it) == 0) return true;
    bson_iter_t child;
    if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) && depth < 200 &&
        bson_iter_recurse(it, &child) && iter_has_empty_key(&child, depth + 1))
      return true;
  }
  return false;
}

bool rtu_bson_raw_has_empty_key(const bson_t *doc) {
  bson_iter_t it;
  return bson_iter_init(&it, doc) && iter_has_empty_key(&it, 0);
}

/* ---- writing ------------------------------------------------------------- */

void rtu_bson_raw_init(rtu_bson_raw_t *r) {
  r->p = r->local;
  r->cap = sizeof r->local;
  r->n = 4; /* the document's length, set by rtu_bson_raw_concat */
}

void rtu_bson_raw_grow(rtu_bson_raw_t *r, size_t more) {
  if (r->n + more <= r->cap) return;
  size_t cap = r->cap * 2;
  while (cap < r->n + more) cap *= 2;
  uint8_t *p = bson_malloc(cap);
  memcpy(p, r->p, r->n);
  if (r->p != r->local) bson_free(r->p);
  r->p = p;
  r->cap = cap;
}

size_t rtu_bson_raw_doc_begin(rtu_bson_raw_t *r, bson_type_t type, const char *key) {
  rtu_bson_raw_head(r, type, key);
  size_t at = r->n;
  rtu_bson_raw_le(r, 0, 4);
  return at;
}

static void set_len(rtu_bson_raw_t *r, size_t at) {
  uint32_t len = (uint32_t)(r->n - at);
  for (int i = 0; i < 4; i++) r->p[at + (size_t)i] = (uint8_t)(len >> (8 * i));
}

void rtu_bson_raw_doc_end(rtu_bson_raw_t *r, size_t at) {
  rtu_bson_raw_le(r, 0, 1);
  set_len(r, at);
}

bool rtu_bson_raw_concat(rtu_bson_raw_t *r, bson_t *out) {
  bson_t doc;
  rtu_bson_raw_le(r, 0, 1);
  set_len(r, 0);
  bool ok = r->n <= INT32_MAX && bson_init_static(&doc, r->p, r->n) && bson_concat(out, &doc);
  if (r->p != r->local) bson_free(r->p);
  r->p = r->local;
  return ok;
}
