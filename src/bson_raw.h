/*
 * bson_raw.h: BSON documents read and written as bytes, and the other
 * operations on BSON alone (no Lua, no JSON): find a field, merge the fields of
 * an older $set under a newer one, compare fields, look for empty field names.
 *
 * The readers and the small writers are static inline here: the JSON writer
 * (json_write.c) walks every element with rtu_bson_raw_element, and the Lua ->
 * BSON path (bson_lua.c) writes every mapped field with rtu_bson_raw_head and
 * rtu_bson_raw_le; a call across files per element would be the cost they save.
 */
#ifndef RTU_BSON_RAW_H
#define RTU_BSON_RAW_H

#include <bson/bson.h>
#include <stdbool.h>
#include <string.h>

/* ---- reading in place ----------------------------------------------------- */

/* bson_iter_next and an accessor call per field cost more than the bytes they
 * read; these read the bytes with the bounds libbson's iterator checks. */

static inline uint32_t rtu_bson_raw_le32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return BSON_UINT32_FROM_LE(v);
}

static inline uint64_t rtu_bson_raw_le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return BSON_UINT64_FROM_LE(v);
}

/* Where a variable-length value (string, code, symbol, binary, document,
 * array, regex, DBPointer, code with scope) of the given type, starting at o
 * in a document of len bytes, ends; 0 where bson_iter_next would stop. */
static inline uint32_t rtu_bson_raw_next_var(const uint8_t *data, uint32_t len, uint8_t type,
                                             uint32_t o) {
  uint32_t l, next;
  switch (type) {
  case BSON_TYPE_CODE:
  case BSON_TYPE_SYMBOL:
  case BSON_TYPE_UTF8:
    if (o + 4 >= len) return 0;
    l = rtu_bson_raw_le32(data + o);
    if (l > len - (o + 4)) return 0;
    next = o + 4 + l;
    if (l == 0 || next >= len || data[o + 4 + l - 1] != '\0') return 0;
    return next;
  case BSON_TYPE_BINARY:
    if (o >= len - 4) return 0;
    l = rtu_bson_raw_le32(data + o);
    if (l >= len - o - 4) return 0;
    if (data[o + 4] == BSON_SUBTYPE_BINARY_DEPRECATED &&
        (l < 4 || rtu_bson_raw_le32(data + o + 5) + 4 != l))
      return 0;
    return o + 5 + l;
  case BSON_TYPE_ARRAY:
  case BSON_TYPE_DOCUMENT:
    if (o >= len - 4) return 0;
    l = rtu_bson_raw_le32(data + o);
    if (l > len - o) return 0;
    return o + l;
  case BSON_TYPE_REGEX: {
    const uint8_t *z = o < len ? memchr(data + o, 0, len - o) : NULL;
    if (z) z = memchr(z + 1, 0, len - (uint32_t)(z + 1 - data));
    if (!z) return 0;
    return (uint32_t)(z - data) + 1;
  }
  case BSON_TYPE_DBPOINTER:
    if (o >= len - 4) return 0;
    l = rtu_bson_raw_le32(data + o);
    if (l == 0 || l > len - o - 4 || data[o + l + 3]) return 0;
    return o + 4 + l + 12;
  case BSON_TYPE_CODEWSCOPE: {
    if (len < 19 || o >= len - 14) return 0;
    l = rtu_bson_raw_le32(data + o);
    if (l < 14 || l >= len - o) return 0;
    next = o + l;
    uint32_t code = rtu_bson_raw_le32(data + o + 4);
    if (code == 0 || code >= len - o - 8 || o + 8 + code + 4 >= next ||
        o + 8 + code + rtu_bson_raw_le32(data + o + 8 + code) != next)
      return 0;
    return next;
  }
  default: return 0;
  }
}

/* Where the element of the given type ends in a document of len bytes (its
 * value starts at o), 0 where bson_iter_next would stop: a damaged document is
 * read as far as libbson's iterator would have read it. */
static inline uint32_t rtu_bson_raw_next(const uint8_t *data, uint32_t len, uint8_t type,
                                         uint32_t o) {
  uint32_t next;
  switch (type) {
  case BSON_TYPE_DATE_TIME:
  case BSON_TYPE_DOUBLE:
  case BSON_TYPE_INT64:
  case BSON_TYPE_TIMESTAMP: next = o + 8; break;
  case BSON_TYPE_OID: next = o + 12; break;
  case BSON_TYPE_BOOL:
    if (o >= len || data[o] > 1) return 0;
    next = o + 1;
    break;
  case BSON_TYPE_INT32: next = o + 4; break;
  case BSON_TYPE_DECIMAL128: next = o + 16; break;
  case BSON_TYPE_MAXKEY:
  case BSON_TYPE_MINKEY:
  case BSON_TYPE_NULL:
  case BSON_TYPE_UNDEFINED: next = o; break;
  default: next = rtu_bson_raw_next_var(data, len, type, o); break;
  }
  return next < len ? next : 0;
}

/* The element at *off of a document of len bytes: its name and where it ends;
 * false at the end or where the iterator would stop. Its value starts at
 * *key + *key_len + 1, its type is data[*off]. */
static inline bool rtu_bson_raw_element(const uint8_t *data, uint32_t len, uint32_t *off,
                                        const uint8_t **key, uint32_t *key_len, uint32_t *next) {
  if (len < 5 || *off >= len - 1 || data[*off] == BSON_TYPE_EOD) return false;
  const uint8_t *k = data + *off + 1, *z = memchr(k, 0, len - (*off + 1));
  if (!z) return false;
  *next = rtu_bson_raw_next(data, len, data[*off], (uint32_t)(z - data) + 1);
  *key = k;
  *key_len = (uint32_t)(z - k);
  return *next != 0;
}

/* bson_iter_init_find (the first field named key, it on it) without an
 * iterator call per field before it. */
bool rtu_bson_raw_find(bson_iter_t *it, const bson_t *doc, const char *key);

/* ---- operations on whole documents ----------------------------------------- */

/* Appends to out the fields of src whose name is not in out yet, in src's order
 * (of a name repeated in src, the first): the $set of an older message under a
 * newer one. Linear when both hold their common names in the same order. */
void rtu_bson_raw_append_missing(bson_t *out, const bson_t *src);

/* True when a and b hold the same top-level fields named in names[0..n): both
 * absent, or the same type and the same bytes (so 1 and 1.0, or 0.0 and -0.0,
 * differ). Kinds without a byte form here (regex, code, pointers) never match. */
bool rtu_bson_raw_same_fields(const bson_t *a, const bson_t *b, char *const *names, size_t n);

/* True when a field name anywhere in doc is empty. */
bool rtu_bson_raw_has_empty_key(const bson_t *doc);

/* ---- writing ---------------------------------------------------------------- */

/* A BSON document written as bytes, appended to a bson_t in one bson_concat:
 * libbson's appender is generic (variadic pieces, a memcpy each); see
 * docs/performance.md. Keys are C strings; rtu_bson_raw_concat appends the
 * elements to out and releases r (false when out would be too large). */
typedef struct rtu_bson_raw_s {
  uint8_t *p;
  size_t n, cap;
  uint8_t local[512];
} rtu_bson_raw_t;

void rtu_bson_raw_init(rtu_bson_raw_t *r);
/* Room for more bytes past r->n (bson_malloc aborts when memory is exhausted,
 * as every libbson append does). */
void rtu_bson_raw_grow(rtu_bson_raw_t *r, size_t more);

static inline void rtu_bson_raw_bytes(rtu_bson_raw_t *r, const void *s, size_t n) {
  if (r->n + n > r->cap) rtu_bson_raw_grow(r, n);
  memcpy(r->p + r->n, s, n);
  r->n += n;
}

/* A little-endian integer of the given bytes. */
static inline void rtu_bson_raw_le(rtu_bson_raw_t *r, uint64_t v, int bytes) {
  if (r->n + (size_t)bytes > r->cap) rtu_bson_raw_grow(r, (size_t)bytes);
  for (int i = 0; i < bytes; i++) r->p[r->n++] = (uint8_t)(v >> (8 * i));
}

/* An element's type and name; its value follows. */
static inline void rtu_bson_raw_head(rtu_bson_raw_t *r, bson_type_t type, const char *key) {
  rtu_bson_raw_le(r, (uint64_t)type, 1);
  rtu_bson_raw_bytes(r, key, strlen(key) + 1);
}

static inline void rtu_bson_raw_utf8(rtu_bson_raw_t *r, const char *key, const char *s,
                                     size_t n) {
  rtu_bson_raw_head(r, BSON_TYPE_UTF8, key);
  rtu_bson_raw_le(r, (uint64_t)(n + 1), 4);
  rtu_bson_raw_bytes(r, s, n);
  rtu_bson_raw_le(r, 0, 1);
}

/* type: INT32, INT64 or DATE_TIME. */
static inline void rtu_bson_raw_int(rtu_bson_raw_t *r, bson_type_t type, const char *key,
                                    int64_t v) {
  rtu_bson_raw_head(r, type, key);
  rtu_bson_raw_le(r, (uint64_t)v, type == BSON_TYPE_INT32 ? 4 : 8);
}

/* type: DOCUMENT or ARRAY; returns where its length goes, for doc_end. */
size_t rtu_bson_raw_doc_begin(rtu_bson_raw_t *r, bson_type_t type, const char *key);
void rtu_bson_raw_doc_end(rtu_bson_raw_t *r, size_t at);
bool rtu_bson_raw_concat(rtu_bson_raw_t *r, bson_t *out);

#endif
