/*
 * value.c: owns the conversions between BSON, JSON and Lua values. It keeps
 * integer fidelity end to end (a 64-bit key read from Kafka is the same 64-bit key
 * written to MongoDB), and knows the rtu.value kinds by the metatables bound with
 * rtu_value_bind. It holds no state outside the Lua registry of each state.
 */
#include "value.h"

#include <lauxlib.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 100

/* Registry keys: the addresses of these statics are unique light userdata. */
static const char date_mt_key = 'd';
static const char array_mt_key = 'a';

void rtu_value_bind(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "Date");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &date_mt_key);
  lua_getfield(L, idx, "Array");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

void rtu_value_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

void rtu_value_push_date(lua_State *L, int64_t ms) {
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, ms);
  lua_setfield(L, -2, "ms");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &date_mt_key);
  lua_setmetatable(L, -2);
}

static void push_iter_depth(lua_State *L, const bson_iter_t *it, int depth);

static void push_children(lua_State *L, const bson_iter_t *parent, bool array, int depth) {
  bson_iter_t child;
  /* Made at its size, as jl_fill does: no rehash, and the same layout. */
  int n = 0;
  if (bson_iter_recurse(parent, &child))
    while (bson_iter_next(&child)) n++;
  lua_createtable(L, array ? n : 0, array ? 0 : n);
  if (!bson_iter_recurse(parent, &child)) return;
  lua_Integer i = 1;
  while (bson_iter_next(&child)) {
    if (array) {
      push_iter_depth(L, &child, depth + 1);
      lua_rawseti(L, -2, i++);
    } else {
      lua_pushlstring(L, bson_iter_key(&child), bson_iter_key_len(&child));
      push_iter_depth(L, &child, depth + 1);
      lua_rawset(L, -3);
    }
  }
  if (array) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    lua_setmetatable(L, -2);
  }
}

static void push_iter_depth(lua_State *L, const bson_iter_t *it, int depth) {
  luaL_checkstack(L, 4, "document too deep");
  switch (bson_iter_type(it)) {
  case BSON_TYPE_DOUBLE: lua_pushnumber(L, bson_iter_double(it)); break;
  case BSON_TYPE_UTF8: {
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    lua_pushlstring(L, s, len);
    break;
  }
  case BSON_TYPE_DOCUMENT: push_children(L, it, false, depth); break;
  case BSON_TYPE_ARRAY: push_children(L, it, true, depth); break;
  case BSON_TYPE_BINARY: {
    uint32_t len;
    const uint8_t *data;
    bson_iter_binary(it, NULL, &len, &data);
    lua_pushlstring(L, (const char *)data, len);
    break;
  }
  case BSON_TYPE_OID: {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(it), hex);
    lua_pushstring(L, hex);
    break;
  }
  case BSON_TYPE_BOOL: lua_pushboolean(L, bson_iter_bool(it)); break;
  case BSON_TYPE_DATE_TIME: rtu_value_push_date(L, bson_iter_date_time(it)); break;
  case BSON_TYPE_INT32: lua_pushinteger(L, bson_iter_int32(it)); break;
  case BSON_TYPE_INT64: lua_pushinteger(L, bson_iter_int64(it)); break;
  case BSON_TYPE_TIMESTAMP: {
    uint32_t ts, inc;
    bson_iter_timestamp(it, &ts, &inc);
    lua_pushinteger(L, ((lua_Integer)ts << 32) | inc);
    break;
  }
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d;
    char s[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &d);
    bson_decimal128_to_string(&d, s);
    lua_pushstring(L, s);
    break;
  }
  case BSON_TYPE_REGEX: lua_pushstring(L, bson_iter_regex(it, NULL)); break;
  default: rtu_value_push_null(L); break;
  }
}

void rtu_value_push_iter(lua_State *L, const bson_iter_t *it) { push_iter_depth(L, it, 0); }

void rtu_value_push_doc(lua_State *L, const bson_t *doc) {
  bson_iter_t it;
  lua_createtable(L, 0, (int)bson_count_keys(doc));
  if (!bson_iter_init(&it, doc)) return;
  while (bson_iter_next(&it)) {
    lua_pushlstring(L, bson_iter_key(&it), bson_iter_key_len(&it));
    push_iter_depth(L, &it, 0);
    lua_rawset(L, -3);
  }
}

void rtu_value_push_doc_fields(lua_State *L, const bson_t *doc, char *const *names, size_t n) {
  bson_iter_t it;
  lua_createtable(L, 0, (int)n);
  if (!bson_iter_init(&it, doc)) return;
  while (bson_iter_next(&it)) {
    const char *k = bson_iter_key(&it);
    for (size_t i = 0; i < n; i++) {
      if (strcmp(k, names[i])) continue;
      lua_pushlstring(L, k, bson_iter_key_len(&it));
      push_iter_depth(L, &it, 0);
      lua_rawset(L, -3);
      break;
    }
  }
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

bool rtu_value_same_fields(const bson_t *a, const bson_t *b, char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bson_iter_t ia, ib;
    bool ha = bson_iter_init_find(&ia, a, names[i]), hb = bson_iter_init_find(&ib, b, names[i]);
    if (ha != hb || (ha && !same_value(&ia, &ib))) return false;
  }
  return true;
}

/* ---- BSON read in place ------------------------------------------------- */

/* bson_iter_next and an accessor call per field were most of the cost of the
 * merges of batch.c and of writing pr-update messages; these read the bytes
 * with the bounds libbson's iterator checks. */

static uint32_t le32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return BSON_UINT32_FROM_LE(v);
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return BSON_UINT64_FROM_LE(v);
}

/* Where the element of the given type ends in a document of len bytes (its
 * value starts at o), 0 where bson_iter_next would stop: a damaged document is
 * read as far as libbson's iterator would have read it. */
static uint32_t raw_next(const uint8_t *data, uint32_t len, uint8_t type, uint32_t o) {
  uint32_t l, next;
  switch (type) {
  case BSON_TYPE_DATE_TIME:
  case BSON_TYPE_DOUBLE:
  case BSON_TYPE_INT64:
  case BSON_TYPE_TIMESTAMP: next = o + 8; break;
  case BSON_TYPE_CODE:
  case BSON_TYPE_SYMBOL:
  case BSON_TYPE_UTF8:
    if (o + 4 >= len) return 0;
    l = le32(data + o);
    if (l > len - (o + 4)) return 0;
    next = o + 4 + l;
    if (l == 0 || next >= len || data[o + 4 + l - 1] != '\0') return 0;
    break;
  case BSON_TYPE_BINARY:
    if (o >= len - 4) return 0;
    l = le32(data + o);
    if (l >= len - o - 4) return 0;
    if (data[o + 4] == BSON_SUBTYPE_BINARY_DEPRECATED && (l < 4 || le32(data + o + 5) + 4 != l))
      return 0;
    next = o + 5 + l;
    break;
  case BSON_TYPE_ARRAY:
  case BSON_TYPE_DOCUMENT:
    if (o >= len - 4) return 0;
    l = le32(data + o);
    if (l > len - o) return 0;
    next = o + l;
    break;
  case BSON_TYPE_OID: next = o + 12; break;
  case BSON_TYPE_BOOL:
    if (o >= len || data[o] > 1) return 0;
    next = o + 1;
    break;
  case BSON_TYPE_REGEX: {
    const uint8_t *z = o < len ? memchr(data + o, 0, len - o) : NULL;
    if (z) z = memchr(z + 1, 0, len - (uint32_t)(z + 1 - data));
    if (!z) return 0;
    next = (uint32_t)(z - data) + 1;
    break;
  }
  case BSON_TYPE_DBPOINTER:
    if (o >= len - 4) return 0;
    l = le32(data + o);
    if (l == 0 || l > len - o - 4 || data[o + l + 3]) return 0;
    next = o + 4 + l + 12;
    break;
  case BSON_TYPE_CODEWSCOPE: {
    if (len < 19 || o >= len - 14) return 0;
    l = le32(data + o);
    if (l < 14 || l >= len - o) return 0;
    next = o + l;
    uint32_t code = le32(data + o + 4);
    if (code == 0 || code >= len - o - 8 || o + 8 + code + 4 >= next ||
        o + 8 + code + le32(data + o + 8 + code) != next)
      return 0;
    break;
  }
  case BSON_TYPE_INT32: next = o + 4; break;
  case BSON_TYPE_DECIMAL128: next = o + 16; break;
  case BSON_TYPE_MAXKEY:
  case BSON_TYPE_MINKEY:
  case BSON_TYPE_NULL:
  case BSON_TYPE_UNDEFINED: next = o; break;
  default: return 0;
  }
  return next < len ? next : 0;
}

/* A field name: out and src do not change until the missing fields are
 * appended at the end, so the names can be pointed at. */
typedef struct {
  const uint8_t *p;
  uint32_t len;
} key_ref_t;

static void key_push(key_ref_t **keys, size_t *n, size_t *cap, key_ref_t *local, const uint8_t *p,
                     uint32_t len) {
  if (*n == *cap) {
    key_ref_t *grown = bson_malloc(2 * *cap * sizeof *grown);
    memcpy(grown, *keys, *n * sizeof *grown);
    if (*keys != local) bson_free(*keys);
    *keys = grown;
    *cap *= 2;
  }
  (*keys)[(*n)++] = (key_ref_t){p, len};
}

/* The element at *off: its name and where it ends; false at the end or where
 * the iterator would stop. */
static bool raw_element(const uint8_t *data, uint32_t len, uint32_t *off, const uint8_t **key,
                        uint32_t *key_len, uint32_t *next) {
  if (len < 5 || *off >= len - 1 || data[*off] == BSON_TYPE_EOD) return false;
  const uint8_t *k = data + *off + 1, *z = memchr(k, 0, len - (*off + 1));
  if (!z) return false;
  *next = raw_next(data, len, data[*off], (uint32_t)(z - data) + 1);
  *key = k;
  *key_len = (uint32_t)(z - k);
  return *next != 0;
}

bool rtu_value_find(bson_iter_t *it, const bson_t *doc, const char *key) {
  const uint8_t *data = bson_get_data(doc), *k;
  uint32_t off = 4, next, kl;
  size_t n = strlen(key);
  for (; raw_element(data, doc->len, &off, &k, &kl, &next); off = next)
    if (kl == n && !memcmp(k, key, n))
      return bson_iter_init_from_data_at_offset(it, data, doc->len, off, kl);
  return false;
}

void rtu_value_append_missing(bson_t *out, const bson_t *src) {
  const uint8_t *od = bson_get_data(out), *sd = bson_get_data(src), *k;
  uint32_t off = 4, next, kl;
  key_ref_t local[64], *keys = local;
  size_t n = 0, cap = sizeof local / sizeof local[0];
  while (raw_element(od, out->len, &off, &k, &kl, &next)) {
    key_push(&keys, &n, &cap, local, k, kl);
    off = next;
  }
  rtu_raw_t add;
  rtu_raw_init(&add);
  bool adding = false;
  /* The look-up starts after the last name found: the documents merged here
   * usually hold their common names in the same order, one step each. */
  size_t hint = 0;
  for (off = 4; raw_element(sd, src->len, &off, &k, &kl, &next); off = next) {
    size_t found = n;
    for (size_t step = 0; step < n; step++) {
      size_t j = hint + step < n ? hint + step : hint + step - n;
      if (keys[j].len == kl && !memcmp(keys[j].p, k, kl)) {
        found = j;
        break;
      }
    }
    if (found < n) {
      hint = found + 1;
      continue;
    }
    key_push(&keys, &n, &cap, local, k, kl); /* a name repeated in src: its first wins */
    rtu_raw_bytes(&add, sd + off, next - off);
    adding = true;
  }
  if (adding) rtu_raw_concat(&add, out);
  if (keys != local) bson_free(keys);
}

/* ---- raw BSON ------------------------------------------------------------- */

void rtu_raw_init(rtu_raw_t *r) {
  r->p = r->local;
  r->cap = sizeof r->local;
  r->n = 4; /* the document's length, set by rtu_raw_concat */
}

static void raw_reserve(rtu_raw_t *r, size_t more) {
  if (r->n + more <= r->cap) return;
  size_t cap = r->cap * 2;
  while (cap < r->n + more) cap *= 2;
  /* bson_malloc aborts when memory is exhausted, as every libbson append does */
  uint8_t *p = bson_malloc(cap);
  memcpy(p, r->p, r->n);
  if (r->p != r->local) bson_free(r->p);
  r->p = p;
  r->cap = cap;
}

void rtu_raw_bytes(rtu_raw_t *r, const void *s, size_t n) {
  raw_reserve(r, n);
  memcpy(r->p + r->n, s, n);
  r->n += n;
}

void rtu_raw_le(rtu_raw_t *r, uint64_t v, int bytes) {
  raw_reserve(r, (size_t)bytes);
  for (int i = 0; i < bytes; i++) r->p[r->n++] = (uint8_t)(v >> (8 * i));
}

void rtu_raw_head(rtu_raw_t *r, bson_type_t type, const char *key) {
  rtu_raw_le(r, (uint64_t)type, 1);
  rtu_raw_bytes(r, key, strlen(key) + 1);
}

void rtu_raw_utf8(rtu_raw_t *r, const char *key, const char *s, size_t n) {
  rtu_raw_head(r, BSON_TYPE_UTF8, key);
  rtu_raw_le(r, (uint64_t)(n + 1), 4);
  rtu_raw_bytes(r, s, n);
  rtu_raw_le(r, 0, 1);
}

void rtu_raw_int(rtu_raw_t *r, bson_type_t type, const char *key, int64_t v) {
  rtu_raw_head(r, type, key);
  rtu_raw_le(r, (uint64_t)v, type == BSON_TYPE_INT32 ? 4 : 8);
}

size_t rtu_raw_doc_begin(rtu_raw_t *r, bson_type_t type, const char *key) {
  rtu_raw_head(r, type, key);
  size_t at = r->n;
  rtu_raw_le(r, 0, 4);
  return at;
}

static void raw_set_len(rtu_raw_t *r, size_t at) {
  uint32_t len = (uint32_t)(r->n - at);
  for (int i = 0; i < 4; i++) r->p[at + (size_t)i] = (uint8_t)(len >> (8 * i));
}

void rtu_raw_doc_end(rtu_raw_t *r, size_t at) {
  rtu_raw_le(r, 0, 1);
  raw_set_len(r, at);
}

bool rtu_raw_concat(rtu_raw_t *r, bson_t *out) {
  bson_t doc;
  rtu_raw_le(r, 0, 1);
  raw_set_len(r, 0);
  bool ok = r->n <= INT32_MAX && bson_init_static(&doc, r->p, r->n) && bson_concat(out, &doc);
  if (r->p != r->local) bson_free(r->p);
  r->p = r->local;
  return ok;
}

/* ---- Lua -> BSON -------------------------------------------------------- */

static bool is_mt(lua_State *L, int idx, const void *key) {
  if (!lua_getmetatable(L, idx)) return false;
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  bool eq = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return eq;
}

/* What one rtu_value_append may write: MongoDB's largest document. Tables shared
 * within a value (a = {a, a}, nested 60 times) are written once per reference,
 * so without it a small table could make C work for hours, in memory the Lua
 * cap does not see. */
#define MAX_VALUE_BYTES (16u * 1024 * 1024)

static rtu_err_t append_depth(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              int depth, size_t *budget, bool *empty_key, char *errstr, size_t sz);

static rtu_err_t append_table(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              int depth, size_t *budget, bool *empty_key, char *errstr, size_t sz) {
  if (depth > MAX_DEPTH) {
    snprintf(errstr, sz, "field '%.*s': nesting deeper than %d", keylen, key, MAX_DEPTH);
    return RTU_ERR_DATA;
  }
  if (is_mt(L, idx, &date_mt_key)) {
    lua_getfield(L, idx, "ms");
    int isint;
    lua_Integer ms = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (!isint) {
      snprintf(errstr, sz, "field '%.*s': date without integer ms", keylen, key);
      return RTU_ERR_DATA;
    }
    bson_append_date_time(out, key, keylen, ms);
    return RTU_OK;
  }
  bool array = is_mt(L, idx, &array_mt_key);
  lua_Unsigned n = lua_rawlen(L, idx);
  if (!array && n > 0) {
    /* A plain Lua sequence is an array when it has no other keys. */
    lua_Unsigned count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      count++;
    }
    array = count == n;
  }
  bson_t child;
  rtu_err_t err = RTU_OK;
  char ibuf[24];
  if (array) {
    if (!bson_append_array_begin(out, key, keylen, &child)) goto too_big;
    for (lua_Unsigned i = 1; i <= n && err == RTU_OK; i++) {
      const char *ikey;
      size_t ilen = bson_uint32_to_string((uint32_t)(i - 1), &ikey, ibuf, sizeof ibuf);
      lua_rawgeti(L, idx, (lua_Integer)i);
      err = append_depth(L, lua_gettop(L), &child, ikey, (int)ilen, depth + 1, budget, empty_key,
                         errstr, sz);
      lua_pop(L, 1);
    }
    if (!bson_append_array_end(out, &child) && err == RTU_OK) goto too_big;
    return err;
  }
  if (!bson_append_document_begin(out, key, keylen, &child)) goto too_big;
  lua_pushnil(L);
  while (err == RTU_OK && lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(errstr, sz, "field '%.*s': table key of type %s (object keys must be strings)",
               keylen, key, luaL_typename(L, -2));
      lua_pop(L, 1); /* the value; the key is popped below */
      err = RTU_ERR_DATA;
      break;
    }
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);
    if (!bson_utf8_validate(k, klen, false)) {
      snprintf(errstr, sz, "field '%.*s': a key is not valid UTF-8", keylen, key);
      lua_pop(L, 1);
      err = RTU_ERR_DATA;
      break;
    }
    if (klen == 0) *empty_key = true;
    err = append_depth(L, lua_gettop(L), &child, k, (int)klen, depth + 1, budget, empty_key,
                       errstr, sz);
    lua_pop(L, 1);
  }
  if (err != RTU_OK) lua_pop(L, 1); /* the key left by an interrupted lua_next */
  if (!bson_append_document_end(out, &child) && err == RTU_OK) goto too_big;
  return err;
too_big:
  snprintf(errstr, sz, "field '%.*s': document too large", keylen, key);
  return RTU_ERR_DATA;
}

static rtu_err_t append_depth(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              int depth, size_t *budget, bool *empty_key, char *errstr, size_t sz) {
  bool ok = true;
  /* a BSON element: type, key, NUL, and at least a few bytes of value */
  size_t cost = (keylen < 0 ? strlen(key) : (size_t)keylen) + 8;
  if (lua_type(L, idx) == LUA_TSTRING) cost += lua_rawlen(L, idx);
  if (cost > *budget) {
    snprintf(errstr, sz, "field '%.*s': value larger than %u MiB", keylen, key,
             MAX_VALUE_BYTES >> 20);
    return RTU_ERR_DATA;
  }
  *budget -= cost;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: ok = bson_append_null(out, key, keylen); break;
  case LUA_TBOOLEAN: ok = bson_append_bool(out, key, keylen, lua_toboolean(L, idx)); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer v = lua_tointeger(L, idx);
      ok = (v >= INT32_MIN && v <= INT32_MAX) ? bson_append_int32(out, key, keylen, (int32_t)v)
                                              : bson_append_int64(out, key, keylen, v);
    } else {
      ok = bson_append_double(out, key, keylen, lua_tonumber(L, idx));
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!bson_utf8_validate(s, len, true)) {
      snprintf(errstr, sz, "field '%.*s': string is not valid UTF-8", keylen, key);
      return RTU_ERR_DATA;
    }
    ok = bson_append_utf8(out, key, keylen, s, (int)len);
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      ok = bson_append_null(out, key, keylen);
      break;
    }
    /* fallthrough */
  default:
    if (lua_type(L, idx) == LUA_TTABLE)
      return append_table(L, idx, out, key, keylen, depth, budget, empty_key, errstr, sz);
    snprintf(errstr, sz, "field '%.*s': a %s cannot be stored", keylen, key,
             luaL_typename(L, idx));
    return RTU_ERR_DATA;
  }
  if (!ok) {
    snprintf(errstr, sz, "field '%.*s': document too large", keylen, key);
    return RTU_ERR_DATA;
  }
  return RTU_OK;
}

rtu_err_t rtu_value_append_marked(lua_State *L, int idx, bson_t *out, const char *key,
                                  int keylen, bool *empty_key, char *errstr, size_t errstr_size) {
  luaL_checkstack(L, MAX_DEPTH * 3 + 8, "value too deep");
  if (keylen == 0 || (keylen < 0 && key[0] == '\0')) *empty_key = true;
  size_t budget = MAX_VALUE_BYTES;
  return append_depth(L, lua_absindex(L, idx), out, key, keylen, 0, &budget, empty_key, errstr,
                      errstr_size);
}

rtu_err_t rtu_value_raw_append_marked(lua_State *L, int idx, rtu_raw_t *r, const char *key,
                                      bool *empty_key, char *errstr, size_t errstr_size) {
  size_t keylen = strlen(key), len;
  if (keylen == 0) *empty_key = true;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: rtu_raw_head(r, BSON_TYPE_NULL, key); return RTU_OK;
  case LUA_TBOOLEAN:
    rtu_raw_head(r, BSON_TYPE_BOOL, key);
    rtu_raw_le(r, lua_toboolean(L, idx) ? 1 : 0, 1);
    return RTU_OK;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer v = lua_tointeger(L, idx);
      rtu_raw_int(r, v >= INT32_MIN && v <= INT32_MAX ? BSON_TYPE_INT32 : BSON_TYPE_INT64, key, v);
    } else {
      double d = lua_tonumber(L, idx);
      uint64_t bits;
      memcpy(&bits, &d, sizeof bits);
      rtu_raw_head(r, BSON_TYPE_DOUBLE, key);
      rtu_raw_le(r, bits, 8);
    }
    return RTU_OK;
  case LUA_TSTRING: {
    const char *s = lua_tolstring(L, idx, &len);
    if (len + keylen + 8 > MAX_VALUE_BYTES) break; /* the general path says why */
    if (!bson_utf8_validate(s, len, true)) {
      snprintf(errstr, errstr_size, "field '%s': string is not valid UTF-8", key);
      return RTU_ERR_DATA;
    }
    rtu_raw_utf8(r, key, s, len);
    return RTU_OK;
  }
  default: break;
  }
  /* Tables, the null sentinel and what cannot be stored: libbson's path. */
  bson_t tmp = BSON_INITIALIZER;
  rtu_err_t err = rtu_value_append_marked(L, idx, &tmp, key, (int)keylen, empty_key, errstr,
                                          errstr_size);
  if (err == RTU_OK) rtu_raw_bytes(r, bson_get_data(&tmp) + 4, tmp.len - 5);
  bson_destroy(&tmp);
  return err;
}

rtu_err_t rtu_value_append(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                           char *errstr, size_t errstr_size) {
  bool ignored = false;
  return rtu_value_append_marked(L, idx, out, key, keylen, &ignored, errstr, errstr_size);
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

bool rtu_value_has_empty_key(const bson_t *doc) {
  bson_iter_t it;
  return bson_iter_init(&it, doc) && iter_has_empty_key(&it, 0);
}

/* ---- JSON --------------------------------------------------------------- */

/*
 * libbson's JSON reader does three things JSON.parse does not, so the text is
 * scanned first: an integer beyond 64 bits wraps silently (2^64 becomes 0), text
 * after the value could close our wrapper and be read as more fields, and objects
 * with an extended-JSON key are read as such ({"$numberLong": "5"} becomes 5).
 * The scan refuses the first two and those keys, naming the cause; the
 * grammar itself is left to libbson.
 */
static bool prescan(const char *s, size_t len, char *errstr, size_t sz) {
  int depth = 0;
  bool expect_key = false; /* after '{' or ',' inside an object */
  char stack[128];          /* container kinds, to know when a ',' starts a key */
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '"') {
      size_t start = ++i;
      while (i < len && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      if (i >= len) break; /* unterminated: libbson says so */
      /* Only libbson's extended-JSON keywords change meaning; query operators
       * such as $or and $in (erSchema conditions) are plain names. */
      static const char *const ext[] = {"$oid", "$date", "$numberLong", "$numberInt",
                                        "$numberDouble", "$numberDecimal", "$binary", "$type",
                                        "$regex", "$options", "$regularExpression", "$timestamp",
                                        "$minKey", "$maxKey", "$undefined", "$symbol", "$code",
                                        "$scope", "$dbPointer", "$ref", "$id", "$uuid"};
      bool dollar = false;
      for (size_t k = 0; k < sizeof ext / sizeof ext[0] && i > start && s[start] == '$'; k++)
        dollar |= strlen(ext[k]) == i - start && !memcmp(ext[k], s + start, i - start);
      /* \u0024 is '$' too */
      if (i - start >= 6 && s[start] == '\\' && s[start + 1] == 'u' && s[start + 2] == '0' &&
          s[start + 3] == '0' && s[start + 4] == '2' && s[start + 5] == '4')
        dollar = true;
      if (expect_key && dollar) {
        snprintf(errstr, sz, "field name '%.*s' is a MongoDB extended-JSON keyword (not supported)",
                 (int)(i - start > 60 ? 60 : i - start), s + start);
        return false;
      }
      expect_key = false;
    } else if (c == '{' || c == '[') {
      if (depth >= (int)sizeof stack) {
        snprintf(errstr, sz, "nesting deeper than %d", (int)sizeof stack);
        return false;
      }
      stack[depth++] = c;
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (--depth < 0) {
        snprintf(errstr, sz, "unexpected '%c' at byte %zu", c, i);
        return false;
      }
      expect_key = false;
    } else if (c == ',') {
      if (depth == 0) {
        snprintf(errstr, sz, "unexpected ',' at byte %zu", i);
        return false;
      }
      expect_key = stack[depth - 1] == '{';
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = i;
      bool integral = true;
      while (i + 1 < len && strchr("0123456789+-.eE", s[i + 1])) {
        if (strchr(".eE", s[i + 1])) integral = false;
        i++;
      }
      if (integral) {
        char num[32];
        size_t n = i - start + 1;
        if (n >= sizeof num) goto range;
        memcpy(num, s + start, n);
        num[n] = '\0';
        errno = 0;
        (void)strtoll(num, NULL, 10);
        if (errno == ERANGE) goto range;
      }
      continue;
    range:
      snprintf(errstr, sz, "integer %.*s does not fit in 64 bits", (int)(i - start + 1 > 40 ? 40 : i - start + 1),
               s + start);
      return false;
    } else if (c == 'N' || c == 'I') {
      /* NaN and Infinity: libbson takes them, JSON.parse does not. */
      /* At most the bytes there are: a Kafka payload is not NUL-terminated. */
      snprintf(errstr, sz, "'%.*s' is not a JSON value", (int)(len - i < 8 ? len - i : 8), s + i);
      return false;
    } else if (c == '/') {
      snprintf(errstr, sz, "unexpected '/' at byte %zu", i);
      return false;
    }
  }
  if (depth != 0) {
    snprintf(errstr, sz, "unbalanced brackets");
    return false;
  }
  return true;
}

/* ---- strict JSON, parsed directly --------------------------------------- */

/* libbson's bson_init_from_json allocates and zeroes a reader of many KiB for
 * every call: with two or three parses per message (key, value, the original key
 * of the write) that cost more than all the rest of the mapping. Most CDC payloads
 * are plain, strict JSON, parsed here straight into BSON. The fast path gives up
 * (false, nothing kept) on anything where libbson's reading could differ or that
 * it would refuse: '$' names, \u0000 and surrogate escapes, control characters,
 * invalid UTF-8, non-JSON numbers or literals, out-of-range numbers, deep
 * nesting, trailing text. The caller then asks libbson, so results and error
 * messages stay libbson's. */
typedef struct {
  char *p;
  size_t len, cap;
  char stack[256];
} jbuf_t;

typedef struct {
  const char *p, *end;
  jbuf_t key, str;
} jp_t;

#define JP_MAX_DEPTH 64

static bool jbuf_put(jbuf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
    char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
    if (!np) return false;
    if (b->p == b->stack) memcpy(np, b->stack, b->len);
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return true;
}

/* ---- strict JSON scanning, shared by the BSON (jp_) and Lua (jl_) readers ---- */

static const char *json_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The escape after a backslash at *pp (its letter): its UTF-8 bytes into out (at
 * most 3), *pp moved past it. \u0000 and surrogates are refused, as libbson's
 * reading of them differs from a plain decoder's. */
static bool json_escape(const char **pp, const char *end, char out[4], size_t *k) {
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
      int h = hexval(p[i]);
      if (h < 0) return false;
      cp = cp * 16 + h;
    }
    p += 4;
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) return false; /* libbson's call */
    if (cp < 0x80) {
      out[0] = (char)cp;
    } else if (cp < 0x800) {
      out[0] = (char)(0xC0 | (cp >> 6));
      out[1] = (char)(0x80 | (cp & 0x3F));
      *k = 2;
    } else {
      out[0] = (char)(0xE0 | (cp >> 12));
      out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      out[2] = (char)(0x80 | (cp & 0x3F));
      *k = 3;
    }
    break;
  }
  default: return false;
  }
  *pp = p;
  return true;
}

/* The number at *pp, strict JSON syntax: an integer (64-bit, anything beyond is
 * refused as the prescan does) or a finite double; *pp moved past it. */
static bool json_number(const char **pp, const char *end, bool *integral, int64_t *i, double *d) {
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
  char num[64];
  size_t n = (size_t)(p - start);
  if (n >= sizeof num) return false;
  memcpy(num, start, n);
  num[n] = '\0';
  errno = 0;
  char *stop;
  if (*integral) {
    long long v = strtoll(num, &stop, 10);
    *i = (int64_t)v;
    return !errno && !*stop;
  }
  *d = strtod(num, &stop);
  return !errno && !*stop && isfinite(*d);
}

/* Between a member's name and its value: the colon, with the spaces around it. */
static bool json_colon(const char **pp, const char *end) {
  const char *p = json_ws(*pp, end);
  if (p >= end || *p != ':') return false;
  *pp = json_ws(p + 1, end);
  return true;
}

/* After a member or element: 1 for a comma (another follows), 0 for the closing
 * bracket, -1 for anything else. */
static int json_next(const char **pp, const char *end, char close) {
  const char *p = json_ws(*pp, end);
  if (p < end && *p == ',') {
    *pp = json_ws(p + 1, end);
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
static const char *json_plain(const char *p, const char *end, bool *high) {
  while (p < end && *p != '"' && *p != '\\') {
    unsigned char c = (unsigned char)*p++;
    if (c < 0x20) return NULL;
    *high |= c >= 0x80;
  }
  return p;
}

static void jp_ws(jp_t *j) { j->p = json_ws(j->p, j->end); }

/* The string at j->p (its opening quote): s and n point into the input when it has
 * no escape, else into b. */
static bool jp_string(jp_t *j, jbuf_t *b, const char **s, size_t *n) {
  const char *end = j->end, *start = ++j->p;
  bool high = false;
  const char *p = json_plain(start, end, &high);
  if (!p || p >= end) return false;
  if (*p == '"') {
    *s = start;
    *n = (size_t)(p - start);
  } else {
    b->len = 0;
    if (!jbuf_put(b, start, (size_t)(p - start))) return false;
    while (p < end && *p != '"') {
      unsigned char c = (unsigned char)*p;
      if (c < 0x20) return false;
      if (c != '\\') {
        high |= c >= 0x80;
        const char *run = p;
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) {
          high |= (unsigned char)*p >= 0x80;
          p++;
        }
        if (!jbuf_put(b, run, (size_t)(p - run))) return false;
        continue;
      }
      char out[4];
      size_t k;
      p++;
      if (!json_escape(&p, end, out, &k) || !jbuf_put(b, out, k)) return false;
    }
    if (p >= end) return false;
    *s = b->p;
    *n = b->len;
  }
  j->p = p + 1;
  if (*n > INT32_MAX - 1) return false;
  return !high || bson_utf8_validate(*s, *n, false);
}

static bool jp_value(jp_t *j, bson_t *out, const char *key, int keylen, int depth);

/* The members of an object, j->p on its '{', appended to out. */
static bool jp_members(jp_t *j, bson_t *out, int depth) {
  j->p++;
  jp_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return true;
  }
  for (;;) {
    if (j->p >= j->end || *j->p != '"') return false;
    const char *k;
    size_t kn;
    if (!jp_string(j, &j->key, &k, &kn)) return false;
    if (kn > 0 && k[0] == '$') return false; /* extended JSON, or an operator: libbson's */
    /* k may live in j->key: a scalar value is read into j->str, and a container
     * takes k (document_begin) before its own members reuse j->key. */
    if (!json_colon(&j->p, j->end) || !jp_value(j, out, k, (int)kn, depth)) return false;
    int next = json_next(&j->p, j->end, '}');
    if (next <= 0) return next == 0;
  }
}

static bool jp_number(jp_t *j, bson_t *out, const char *key, int keylen) {
  bool integral;
  int64_t v = 0;
  double d = 0;
  if (!json_number(&j->p, j->end, &integral, &v, &d)) return false;
  if (!integral) return bson_append_double(out, key, keylen, d);
  return v >= INT32_MIN && v <= INT32_MAX ? bson_append_int32(out, key, keylen, (int32_t)v)
                                          : bson_append_int64(out, key, keylen, v);
}

static bool jp_literal(jp_t *j, const char *lit, size_t n) {
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n)) return false;
  j->p += n;
  return true;
}

static bool jp_value(jp_t *j, bson_t *out, const char *key, int keylen, int depth) {
  if (j->p >= j->end) return false;
  switch (*j->p) {
  case '{': {
    if (depth >= JP_MAX_DEPTH) return false;
    bson_t child;
    if (!bson_append_document_begin(out, key, keylen, &child)) return false;
    bool ok = jp_members(j, &child, depth + 1);
    return bson_append_document_end(out, &child) && ok;
  }
  case '[': {
    if (depth >= JP_MAX_DEPTH) return false;
    bson_t child;
    if (!bson_append_array_begin(out, key, keylen, &child)) return false;
    bool ok = true;
    j->p++;
    jp_ws(j);
    if (j->p < j->end && *j->p == ']') j->p++;
    else
      for (uint32_t i = 0;; i++) {
        char ibuf[16];
        const char *ik;
        size_t ikl = bson_uint32_to_string(i, &ik, ibuf, sizeof ibuf);
        if (!(ok = jp_value(j, &child, ik, (int)ikl, depth + 1))) break;
        int next = json_next(&j->p, j->end, ']');
        if (next > 0) continue;
        ok = next == 0;
        break;
      }
    return bson_append_array_end(out, &child) && ok;
  }
  case '"': {
    const char *s;
    size_t n;
    return jp_string(j, &j->str, &s, &n) && bson_append_utf8(out, key, keylen, s, (int)n);
  }
  case 't': return jp_literal(j, "true", 4) && bson_append_bool(out, key, keylen, true);
  case 'f': return jp_literal(j, "false", 5) && bson_append_bool(out, key, keylen, false);
  case 'n': return jp_literal(j, "null", 4) && bson_append_null(out, key, keylen);
  default: return jp_number(j, out, key, keylen);
  }
}

/* Fast path: the value of text as {"v": value} (as_doc false) or the object text
 * itself as out (as_doc true). False, out left uninitialised, when libbson must
 * decide. */
static bool fast_json(const char *text, size_t len, bool as_doc, bson_t *out) {
  jp_t j = {.p = text, .end = text + len};
  j.key.p = j.key.stack;
  j.key.cap = sizeof j.key.stack;
  j.str.p = j.str.stack;
  j.str.cap = sizeof j.str.stack;
  bson_init(out);
  jp_ws(&j);
  bool ok;
  if (as_doc) ok = j.p < j.end && *j.p == '{' && jp_members(&j, out, 1);
  else ok = jp_value(&j, out, "v", 1, 0);
  if (ok) {
    jp_ws(&j);
    ok = j.p == j.end;
  }
  if (j.key.p != j.key.stack) free(j.key.p);
  if (j.str.p != j.str.stack) free(j.str.p);
  if (!ok) bson_destroy(out);
  return ok;
}

/* ---- strict JSON, straight into Lua ------------------------------------- */

/* rtu.json.decode used to read JSON into BSON, then BSON into Lua tables: for a
 * basic message that was a fifth of its whole cost. This reads the same strict
 * JSON that fast_json takes straight into Lua, building the tables exactly as
 * rtu_value_push_iter would from fast_json's BSON (same values, same null, the
 * same array metatable, the same insertion order, so even pairs() visits keys in
 * the same order). It gives up (false) on everything fast_json gives up on, which
 * includes all that the prescan refuses ('$' names, integers beyond 64 bits,
 * NaN/Infinity, trailing text), and on strings or texts too large for BSON; the
 * caller then drops what was pushed and takes the BSON path, so results and error
 * messages outside the strict subset stay as they were. Lua memory errors are
 * raised as by any push: nothing here holds C memory. */
typedef struct {
  lua_State *L;
  const char *p, *end;
  int skip; /* stack index of the caller's leave_out (see l_json_decode), 0: none */
} jl_t;

static void jl_ws(jl_t *j) { j->p = json_ws(j->p, j->end); }

/* The stack is grown by this many members at a time while an object or array
 * is read. */
#define JL_CHUNK 32

/* Makes the table of the `held` members above slot (key/value pairs, or values
 * of an array) at its size, sets them in order (a later duplicate name wins) and
 * leaves it in slot. */
static void jl_fill(lua_State *L, int slot, int held, bool array) {
  lua_createtable(L, array ? held : 0, array ? 0 : held);
  for (int k = 0; k < held; k++) {
    if (array) {
      lua_pushvalue(L, slot + 1 + k);
      lua_rawseti(L, -2, k + 1);
    } else {
      lua_pushvalue(L, slot + 1 + 2 * k);
      lua_pushvalue(L, slot + 2 + 2 * k);
      lua_rawset(L, -3);
    }
  }
  lua_replace(L, slot);
  lua_settop(L, slot);
}

/* Pushes the string at j->p (its opening quote), unescaped. */
static bool jl_string(jl_t *j) {
  const char *end = j->end, *start = ++j->p;
  bool high = false;
  const char *p = json_plain(start, end, &high);
  if (!p || p >= end) return false;
  if (*p == '"') {
    size_t n = (size_t)(p - start);
    if (n > INT32_MAX - 1) return false; /* fast_json's limit */
    if (high && !bson_utf8_validate(start, n, false)) return false;
    lua_pushlstring(j->L, start, n);
    j->p = p + 1;
    return true;
  }
  /* Escapes: the text is never shorter than what it stands for, so one buffer of
   * the escaped length holds the result. */
  const char *q = p;
  while (q < end && *q != '"') {
    if (*q == '\\' && end - q < 2) return false;
    q += *q == '\\' ? 2 : 1;
  }
  if (q >= end) return false;
  size_t cap = (size_t)(q - start);
  if (cap > INT32_MAX - 1) return false;
  luaL_Buffer b;
  char *o = luaL_buffinitsize(j->L, &b, cap), *o0 = o;
  memcpy(o, start, (size_t)(p - start));
  o += p - start;
  while (p < q) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20) return false;
    if (c != '\\') {
      high |= c >= 0x80;
      *o++ = (char)c;
      p++;
      continue;
    }
    char out[4];
    size_t k;
    p++;
    if (!json_escape(&p, q, out, &k)) return false;
    memcpy(o, out, k);
    o += k;
  }
  size_t n = (size_t)(o - o0);
  if (high && !bson_utf8_validate(o0, n, false)) return false;
  luaL_pushresultsize(&b, n);
  j->p = q + 1;
  return true;
}

static bool jl_number(jl_t *j) {
  bool integral;
  int64_t v = 0;
  double d = 0;
  if (!json_number(&j->p, j->end, &integral, &v, &d)) return false;
  if (integral) lua_pushinteger(j->L, (lua_Integer)v);
  else lua_pushnumber(j->L, d);
  return true;
}

/* Reads the value at j->p as jl_value would and builds nothing: a member the
 * caller leaves out (a Debezium record's source block is a third of its text).
 * false wherever jl_value could give up, so the BSON path then decides on the
 * whole text, this member included. */
static bool jl_skip(jl_t *j, int depth) {
  if (j->p >= j->end) return false;
  char c = *j->p;
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    if (depth >= JP_MAX_DEPTH) return false;
    j->p++;
    jl_ws(j);
    if (j->p < j->end && *j->p == close) {
      j->p++;
      return true;
    }
    for (;;) {
      if (c == '{') {
        /* a name: plain (no escape, so '$' shows) and not extended JSON's */
        if (j->p >= j->end || *j->p != '"') return false;
        bool high = false;
        const char *start = j->p + 1, *q = json_plain(start, j->end, &high);
        if (!q || q >= j->end || *q != '"' || (q > start && *start == '$')) return false;
        if (high && !bson_utf8_validate(start, (size_t)(q - start), false)) return false;
        j->p = q + 1;
        if (!json_colon(&j->p, j->end)) return false;
      }
      if (!jl_skip(j, depth + 1)) return false;
      int next = json_next(&j->p, j->end, close);
      if (next < 0) return false;
      if (next == 0) return true;
    }
  }
  if (c == '"') {
    bool high = false;
    const char *start = j->p + 1, *q = json_plain(start, j->end, &high);
    if (!q || q >= j->end) return false;
    if (*q == '"') {
      if ((size_t)(q - start) > INT32_MAX - 1) return false;
      if (high && !bson_utf8_validate(start, (size_t)(q - start), false)) return false;
      j->p = q + 1;
      return true;
    }
    /* escapes: rare in what is left out; read as kept, then dropped */
    if (!lua_checkstack(j->L, 2) || !jl_string(j)) return false;
    lua_pop(j->L, 1);
    return true;
  }
  if (c == 't' || c == 'f' || c == 'n') {
    const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) return false;
    j->p += n;
    return true;
  }
  bool integral;
  int64_t v;
  double d;
  return json_number(&j->p, j->end, &integral, &v, &d);
}

static bool jl_value(jl_t *j, int depth);

/* At most this many names in a set of members to keep are matched in C; a
 * larger set is looked up in its table, name by name. */
#define JL_KEEP_MAX 8

typedef struct {
  const char *s;
  size_t n;
} jl_name_t;

/* For a member of an object that keeps only some (names[0..nnames)): when its
 * name is plain and not one of them, reads the member as jl_skip would without
 * making its name a Lua string (most of what a before image holds is left out),
 * and returns 1; 0 when the caller must read the member; -1 on what jl_value
 * gives up on. */
static int jl_skip_unnamed(jl_t *j, int depth, const jl_name_t *names, int nnames) {
  bool high = false;
  const char *start = j->p + 1, *q = json_plain(start, j->end, &high);
  if (!q || q >= j->end || *q != '"') return 0; /* escapes: read as usual */
  size_t n = (size_t)(q - start);
  if (n > 0 && *start == '$') return -1;
  if (high && !bson_utf8_validate(start, n, false)) return -1;
  for (int i = 0; i < nnames; i++)
    if (names[i].n == n && !memcmp(names[i].s, start, n)) return 0;
  j->p = q + 1;
  if (!json_colon(&j->p, j->end) || !jl_skip(j, depth + 1)) return -1;
  return 1;
}

/* Pushes the object at j->p. keep: 0, or the stack index of the set of names of
 * the members to build (the others are read with jl_skip). At depth 0 the
 * members named in j->skip are left out, or, for a set given as their value,
 * built with only the members it names when they are objects. */
static bool jl_object(jl_t *j, int depth, int keep) {
  /* Members wait on the stack so that the table is made at its size: built by
   * lua_rawset from empty, a record of ten fields was rehashed four times, a
   * fifth of its decoding. push_children sizes its tables the same way, so
   * both paths lay a table out alike (the same pairs() order), unless members
   * are left out. */
  lua_State *L = j->L;
  if (depth >= JP_MAX_DEPTH || !lua_checkstack(L, 2 * JL_CHUNK + 4)) return false;
  jl_name_t names[JL_KEEP_MAX];
  int nnames = 0;
  if (keep) {
    /* the strings stay alive as keys of the set, which is on the stack */
    lua_pushnil(L);
    while (lua_next(L, keep)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue; /* never a JSON name */
      if (nnames == JL_KEEP_MAX) {
        lua_pop(L, 1);
        nnames = -1;
        break;
      }
      names[nnames].s = lua_tolstring(L, -1, &names[nnames].n);
      nnames++;
    }
  }
  int slot = lua_gettop(L) + 1, held = 0;
  lua_pushnil(L); /* the table's slot */
  j->p++;
  jl_ws(j);
  if (j->p < j->end && *j->p == '}') j->p++;
  else
    for (;;) {
      /* past what the stack can hold, the BSON path decides */
      if (held % JL_CHUNK == JL_CHUNK - 1 && !lua_checkstack(L, 2 * JL_CHUNK + 4)) return false;
      if (j->p >= j->end || *j->p != '"') return false;
      int skipped = keep && nnames >= 0 ? jl_skip_unnamed(j, depth, names, nnames) : 0;
      if (skipped < 0) return false;
      if (!skipped) {
        if (!jl_string(j)) return false;
        size_t kn;
        const char *k = lua_tolstring(L, -1, &kn);
        if (kn > 0 && k[0] == '$') return false; /* extended JSON, or an operator: libbson's */
        if (!json_colon(&j->p, j->end)) return false;
        bool build = true;
        int sub = 0; /* stack index of the set to build this member with */
        if (keep) {
          lua_pushvalue(L, -1);
          build = lua_rawget(L, keep) != LUA_TNIL;
          lua_pop(L, 1);
        } else if (depth == 0 && j->skip) {
          lua_pushvalue(L, -1);
          int t = lua_rawget(L, j->skip);
          /* a member that is not an object is built whole: its reader says
           * what is wrong with it */
          if (t == LUA_TTABLE && j->p < j->end && *j->p == '{') sub = lua_gettop(L);
          else lua_pop(L, 1);
          build = t == LUA_TNIL || t == LUA_TTABLE;
        }
        if (build) {
          if (!(sub ? jl_object(j, depth + 1, sub) : jl_value(j, depth + 1))) return false;
          if (sub) lua_remove(L, sub);
          held++;
        } else {
          lua_pop(L, 1);
          if (!jl_skip(j, depth + 1)) return false;
        }
      }
      int next = json_next(&j->p, j->end, '}');
      if (next < 0) return false;
      if (next == 0) break;
    }
  jl_fill(L, slot, held, false);
  return true;
}

/* Pushes the value at j->p. */
static bool jl_value(jl_t *j, int depth) {
  lua_State *L = j->L;
  if (j->p >= j->end) return false;
  switch (*j->p) {
  case '{': return jl_object(j, depth, 0);
  case '[': {
    if (depth >= JP_MAX_DEPTH || !lua_checkstack(L, JL_CHUNK + 4)) return false;
    int slot = lua_gettop(L) + 1, held = 0;
    lua_pushnil(L);
    j->p++;
    jl_ws(j);
    if (j->p < j->end && *j->p == ']') j->p++;
    else
      for (;;) {
        if (held % JL_CHUNK == JL_CHUNK - 1 && !lua_checkstack(L, JL_CHUNK + 4)) return false;
        if (!jl_value(j, depth + 1)) return false;
        held++;
        int next = json_next(&j->p, j->end, ']');
        if (next < 0) return false;
        if (next == 0) break;
      }
    jl_fill(L, slot, held, true);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    lua_setmetatable(L, slot);
    return true;
  }
  case '"': return jl_string(j);
  case 't':
    if ((size_t)(j->end - j->p) < 4 || memcmp(j->p, "true", 4)) return false;
    j->p += 4;
    lua_pushboolean(L, 1);
    return true;
  case 'f':
    if ((size_t)(j->end - j->p) < 5 || memcmp(j->p, "false", 5)) return false;
    j->p += 5;
    lua_pushboolean(L, 0);
    return true;
  case 'n':
    if ((size_t)(j->end - j->p) < 4 || memcmp(j->p, "null", 4)) return false;
    j->p += 4;
    rtu_value_push_null(L);
    return true;
  default: return jl_number(j);
  }
}

/* Pushes the value of text and returns true, or pushes nothing and returns false
 * when the BSON path must decide. */
static bool json_push_direct(lua_State *L, const char *text, size_t len, int skip) {
  /* What BSON could not hold (a document is at most 2 GiB, and JSON text grows
   * up to about 7 times in BSON) is left to the BSON path and its refusal. */
  if (len > (size_t)INT32_MAX / 8) return false;
  int top = lua_gettop(L);
  jl_t j = {.L = L, .p = text, .end = text + len, .skip = skip};
  jl_ws(&j);
  bool ok = jl_value(&j, 0);
  if (ok) {
    jl_ws(&j);
    ok = j.p == j.end;
  }
  if (!ok) lua_settop(L, top);
  return ok;
}

bool rtu_value_json_to_bson(const char *text, size_t len, bson_t *out, char *errstr,
                            size_t errstr_size) {
  /* fast_json takes nothing the prescan refuses (it gives up on '$' names,
   * integers beyond 64 bits, NaN, Infinity, comments, trailing text and deeper
   * nesting), so the prescan is only needed before libbson. */
  if (fast_json(text, len, false, out)) return true;
  if (!prescan(text, len, errstr, errstr_size)) return false;
  /* libbson parses only documents: wrap the value so scalars and arrays work too. */
  char stackbuf[1024];
  size_t need = len + 7;
  char *buf = need <= sizeof stackbuf ? stackbuf : bson_malloc(need);
  memcpy(buf, "{\"v\":", 5);
  memcpy(buf + 5, text, len);
  buf[len + 5] = '\n'; /* a newline, so a trailing // comment cannot eat the brace */
  buf[len + 6] = '}';
  bson_error_t err;
  bool ok = bson_init_from_json(out, buf, (ssize_t)need, &err);
  if (buf != stackbuf) bson_free(buf);
  if (!ok) {
    snprintf(errstr, errstr_size, "%s", err.message);
    return false;
  }
  if (bson_count_keys(out) != 1) {
    bson_destroy(out);
    snprintf(errstr, errstr_size, "more than one JSON value");
    return false;
  }
  return true;
}

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
 * when it is not one: what bson_utf8_validate accepts (no overlong form, no
 * surrogate, nothing above U+10FFFF), without a call per character. */
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

/* A JSON string as JSON.stringify writes it: quote, backslash and control
 * characters escaped, other characters as they are. libbson's
 * bson_utf8_escape_for_json appends one code point at a time (it was 15 % of
 * the process with Kafka outputs on) and gives nothing at all for a string that
 * is not UTF-8; an invalid byte here becomes U+FFFD and the rest is kept. */
void rtu_value_json_string(bson_string_t *out, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
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
    d = sb_room(out, len - i + 1 + 5);
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
    i++;
  }
  *d++ = '"';
  sb_done(out, d);
}

void rtu_value_json_int(bson_string_t *out, int64_t v) {
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

static void json_double(bson_string_t *out, double d) {
  if (!isfinite(d)) {
    sb_put(out, "null", 4); /* as JSON.stringify */
    return;
  }
  char buf[40];
  size_t n;
  if (d == 0) {
    n = signbit(d) ? 2 : 1;
    memcpy(buf, signbit(d) ? "-0" : "0", n);
  } else {
    n = short_double(d, buf);
  }
  if (n == 0) {
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, d);
      if (strtod(buf, NULL) == d) break;
    }
    n = strlen(buf);
  }
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
 * bounds raw_element checked). */
static void json_raw_value(uint8_t type, const uint8_t *v, bson_string_t *out) {
  switch (type) {
  case BSON_TYPE_DOUBLE: {
    uint64_t bits = le64(v);
    double d;
    memcpy(&d, &bits, sizeof d);
    json_double(out, d);
    break;
  }
  case BSON_TYPE_UTF8: rtu_value_json_string(out, (const char *)v + 4, le32(v) - 1); break;
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY:
    sb_c(out, type == BSON_TYPE_ARRAY ? '[' : '{');
    json_raw_members(v, le32(v), type == BSON_TYPE_ARRAY, out);
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
    rtu_iso8601((int64_t)le64(v), iso, sizeof iso);
    json_quoted(out, iso, strlen(iso));
    break;
  }
  case BSON_TYPE_INT32: rtu_value_json_int(out, (int32_t)le32(v)); break;
  case BSON_TYPE_INT64: rtu_value_json_int(out, (int64_t)le64(v)); break;
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d = {.low = le64(v), .high = le64(v + 8)};
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
  for (; raw_element(data, len, &off, &key, &kl, &next); off = next) {
    if (!first) sb_c(out, ',');
    first = false;
    if (!array) {
      rtu_value_json_string(out, (const char *)key, kl);
      sb_c(out, ':');
    }
    json_raw_value(data[off], key + kl + 1, out);
  }
}

void rtu_value_first_to_json(const bson_t *doc, bson_string_t *out) {
  const uint8_t *data = bson_get_data(doc), *key;
  uint32_t off = 4, next, kl;
  if (raw_element(data, doc->len, &off, &key, &kl, &next)) json_raw_value(data[off], key + kl + 1, out);
}

bool rtu_value_append_original_key(bson_t *out, const char *field, const char *key,
                                   size_t key_len) {
  if (!key) {
    bson_append_null(out, field, -1);
    return false;
  }
  size_t i = 0;
  while (i < key_len && (key[i] == ' ' || key[i] == '\t' || key[i] == '\n' || key[i] == '\r')) i++;
  /* Only what looks like an object is parsed: most keys are plain text. */
  if (i < key_len && key[i] == '{') {
    bson_t wrap, doc;
    bson_iter_t it;
    char err[RTU_ERRSTR_SIZE];
    /* Read straight as a document when fast_json can (it is the same parse as
     * under "v"): the wrapper's begin/end, look-up and copy were a third of a
     * call, once per record written and per message produced. */
    if (fast_json(key, key_len, true, &doc)) {
      bool empty = rtu_value_has_empty_key(&doc);
      bool done = bson_append_document(out, field, -1, &doc);
      bson_destroy(&doc);
      if (done) return empty;
    } else if (rtu_value_json_to_bson(key, key_len, &wrap, err, sizeof err)) {
      bool done = false, empty = false;
      if (bson_iter_init_find(&it, &wrap, "v") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        empty = bson_init_static(&doc, data, len) && rtu_value_has_empty_key(&doc);
        done = bson_append_iter(out, field, -1, &it);
      }
      bson_destroy(&wrap);
      if (done) return empty;
    }
  }
  if (bson_utf8_validate(key, key_len, false))
    bson_append_utf8(out, field, -1, key, (int)key_len);
  else
    bson_append_binary(out, field, -1, BSON_SUBTYPE_BINARY, (const uint8_t *)key, (uint32_t)key_len);
  return false;
}

void rtu_value_doc_to_json(const bson_t *doc, bool as_array, bson_string_t *out) {
  sb_c(out, as_array ? '[' : '{');
  json_raw_members(bson_get_data(doc), doc->len, as_array, out);
  sb_c(out, as_array ? ']' : '}');
}

/* json.decode(text [, leave_out]): leave_out maps top-level member names the
 * caller does not want whole to a set of the names it reads in them, or to any
 * other value for none: {source = true, before = {ID = true}} builds no source
 * and a before object with at most its ID (a before that is not an object is
 * built as is, so that the caller can tell). What is left out may still be there
 * when the text is outside the direct path's subset: the decoder only spares the
 * work, and a text decodes with leave_out exactly when it does without. */
static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  if (json_push_direct(L, s, len, lua_istable(L, 2) ? 2 : 0)) return 1;
  bson_t doc;
  char err[RTU_ERRSTR_SIZE];
  if (!rtu_value_json_to_bson(s, len, &doc, err, sizeof err))
    return luaL_error(L, "invalid JSON: %s", err);
  bson_iter_t it;
  if (bson_iter_init(&it, &doc) && bson_iter_next(&it)) rtu_value_push_iter(L, &it);
  else lua_pushnil(L);
  bson_destroy(&doc);
  return 1;
}

/* json.decimal(text): tonumber(text) when text is a plain decimal, '-'? digit+
 * ('.' digit*)?, and nil for any other text, which a cast then reads with the
 * general JavaScript grammar. Most numbers of a basic or Golden Gate record come
 * as such strings ("42", "-3.50"), and in Lua the shape test (string.find) and
 * tonumber (strtod) cost about 1,500 instructions each. The result is tonumber's
 * to the bit: an integer of at most 18 digits is accumulated as tonumber does; a
 * decimal whose digits make at most 2^53 with at most 22 after the point is one
 * division of two exact doubles, which IEEE rounds correctly, as glibc's strtod
 * does (Clinger's fast path); anything longer goes to lua_stringtonumber. */
static int l_json_decimal(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *p = s, *end = s + n;
  bool neg = p < end && *p == '-';
  if (neg) p++;
  const char *first = p;
  uint64_t m = 0;
  bool exact = true; /* every digit is in m, which stays below 10^18 */
  int frac = -1;     /* digits after the point, -1: no point */
  for (; p < end; p++) {
    unsigned d = (unsigned char)*p - '0';
    if (d > 9) {
      if (*p != '.' || frac >= 0 || p == first) break;
      frac = 0;
      continue;
    }
    if (m >= 100000000000000000ULL) exact = false;
    else m = m * 10 + d;
    if (frac >= 0) frac++;
  }
  if (p != end || p == first) {
    lua_pushnil(L);
    return 1;
  }
  static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (exact && frac < 0) {
    lua_pushinteger(L, neg ? (lua_Integer)(0 - m) : (lua_Integer)m);
  } else if (exact && m <= (1ULL << 53) && frac <= 22) {
    double d = (double)m / pow10[frac];
    lua_pushnumber(L, neg ? -d : d);
  } else if (lua_stringtonumber(L, s) == 0) {
    lua_pushnil(L); /* not reached: tonumber reads every plain decimal */
  }
  return 1;
}

static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  bson_t doc = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE];
  if (rtu_value_append(L, 1, &doc, "v", 1, err, sizeof err) != RTU_OK) {
    bson_destroy(&doc);
    return luaL_error(L, "cannot encode: %s", err);
  }
  bson_string_t *out = bson_string_new(NULL);
  rtu_value_first_to_json(&doc, out);
  lua_pushlstring(L, out->str, out->len);
  bson_string_free(out, true);
  bson_destroy(&doc);
  return 1;
}

int rtu_value_open_json(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushcfunction(L, l_json_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_json_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_json_decimal);
  lua_setfield(L, -2, "decimal");
  rtu_value_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
