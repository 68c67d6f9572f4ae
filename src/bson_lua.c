/*
 * bson_lua.c: owns the conversions between BSON and Lua values. It keeps
 * integer fidelity end to end (a 64-bit key read from Kafka is the same 64-bit
 * key written to MongoDB), and knows the rtu.value kinds by the metatables bound
 * with rtu_bson_lua_bind. It holds no state outside the Lua registry of each
 * state, and reads or writes no JSON (json_read.c, json_lua.c, json_write.c).
 */
#include "bson_lua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* Registry keys: the addresses of these are unique light userdata. */
const char rtu_bson_lua_date_mt_key = 'd';
const char rtu_bson_lua_array_mt_key = 'a';

void rtu_bson_lua_bind(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "Date");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rtu_bson_lua_date_mt_key);
  lua_getfield(L, idx, "Array");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rtu_bson_lua_array_mt_key);
}

void rtu_bson_lua_push_date(lua_State *L, int64_t ms) {
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, ms);
  lua_setfield(L, -2, "ms");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rtu_bson_lua_date_mt_key);
  lua_setmetatable(L, -2);
}

/* ---- BSON -> Lua --------------------------------------------------------- */

static void push_iter_depth(lua_State *L, const bson_iter_t *it, int depth);

static void push_children(lua_State *L, const bson_iter_t *parent, bool array, int depth) {
  bson_iter_t child;
  /* Made at its size, as json_lua.c's tables are: no rehash, and the same layout. */
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
  if (array) rtu_bson_lua_set_array_mt(L, lua_gettop(L));
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
  case BSON_TYPE_DATE_TIME: rtu_bson_lua_push_date(L, bson_iter_date_time(it)); break;
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
  default: rtu_bson_lua_push_null(L); break;
  }
}

void rtu_bson_lua_push_iter(lua_State *L, const bson_iter_t *it) { push_iter_depth(L, it, 0); }

void rtu_bson_lua_push_doc(lua_State *L, const bson_t *doc) {
  bson_iter_t it;
  lua_createtable(L, 0, (int)bson_count_keys(doc));
  if (!bson_iter_init(&it, doc)) return;
  while (bson_iter_next(&it)) {
    lua_pushlstring(L, bson_iter_key(&it), bson_iter_key_len(&it));
    push_iter_depth(L, &it, 0);
    lua_rawset(L, -3);
  }
}

void rtu_bson_lua_push_doc_fields(lua_State *L, const bson_t *doc, char *const *names,
                                  size_t n) {
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

/* ---- Lua -> BSON --------------------------------------------------------- */

static bool is_mt(lua_State *L, int idx, const void *key) {
  if (!lua_getmetatable(L, idx)) return false;
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  bool eq = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return eq;
}

/* What one rtu_bson_lua_append may write: MongoDB's largest document. Tables
 * shared within a value (a = {a, a}, nested 60 times) are written once per
 * reference, so without it a small table could make C work for hours, in memory
 * the Lua cap does not see. */
#define MAX_VALUE_BYTES (16u * 1024 * 1024)

/* The state of one rtu_bson_lua_append: what is left of MAX_VALUE_BYTES, the
 * empty-name mark and the error buffer. */
typedef struct {
  lua_State *L;
  size_t budget;
  bool *empty_key;
  char *errstr;
  size_t sz;
} append_t;

static rtu_err_t append_depth(append_t *a, int idx, bson_t *out, const char *key, int keylen,
                              int depth);

static rtu_err_t too_big(append_t *a, const char *key, int keylen) {
  snprintf(a->errstr, a->sz, "field '%.*s': document too large", keylen, key);
  return RTU_ERR_DATA;
}

static rtu_err_t append_date(append_t *a, int idx, bson_t *out, const char *key, int keylen) {
  lua_State *L = a->L;
  lua_getfield(L, idx, "ms");
  int isint;
  lua_Integer ms = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  if (!isint) {
    snprintf(a->errstr, a->sz, "field '%.*s': date without integer ms", keylen, key);
    return RTU_ERR_DATA;
  }
  bson_append_date_time(out, key, keylen, ms);
  return RTU_OK;
}

/* A table with the Array metatable, or a plain Lua sequence with no other keys;
 * *n its length. */
static bool is_array(lua_State *L, int idx, lua_Unsigned *n) {
  bool array = is_mt(L, idx, &rtu_bson_lua_array_mt_key);
  *n = lua_rawlen(L, idx);
  if (array || *n == 0) return array;
  lua_Unsigned count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
  }
  return count == *n;
}

static rtu_err_t append_array(append_t *a, int idx, lua_Unsigned n, bson_t *out,
                              const char *key, int keylen, int depth) {
  lua_State *L = a->L;
  bson_t child;
  rtu_err_t err = RTU_OK;
  char ibuf[24];
  if (!bson_append_array_begin(out, key, keylen, &child)) return too_big(a, key, keylen);
  for (lua_Unsigned i = 1; i <= n && err == RTU_OK; i++) {
    const char *ikey;
    size_t ilen = bson_uint32_to_string((uint32_t)(i - 1), &ikey, ibuf, sizeof ibuf);
    lua_rawgeti(L, idx, (lua_Integer)i);
    err = append_depth(a, lua_gettop(L), &child, ikey, (int)ilen, depth + 1);
    lua_pop(L, 1);
  }
  if (!bson_append_array_end(out, &child) && err == RTU_OK) return too_big(a, key, keylen);
  return err;
}

/* The member under the key at -2 and the value at -1 (popped), appended to child. */
static rtu_err_t append_member(append_t *a, bson_t *child, const char *key, int keylen,
                               int depth) {
  lua_State *L = a->L;
  if (lua_type(L, -2) != LUA_TSTRING) {
    snprintf(a->errstr, a->sz,
             "field '%.*s': table key of type %s (object keys must be strings)", keylen, key,
             luaL_typename(L, -2));
    lua_pop(L, 1); /* the value; the key is popped by the caller */
    return RTU_ERR_DATA;
  }
  size_t klen;
  const char *k = lua_tolstring(L, -2, &klen);
  if (!bson_utf8_validate(k, klen, false)) {
    snprintf(a->errstr, a->sz, "field '%.*s': a key is not valid UTF-8", keylen, key);
    lua_pop(L, 1);
    return RTU_ERR_DATA;
  }
  if (klen == 0) *a->empty_key = true;
  rtu_err_t err = append_depth(a, lua_gettop(L), child, k, (int)klen, depth + 1);
  lua_pop(L, 1);
  return err;
}

static rtu_err_t append_object(append_t *a, int idx, bson_t *out, const char *key, int keylen,
                               int depth) {
  lua_State *L = a->L;
  bson_t child;
  rtu_err_t err = RTU_OK;
  if (!bson_append_document_begin(out, key, keylen, &child)) return too_big(a, key, keylen);
  lua_pushnil(L);
  while (err == RTU_OK && lua_next(L, idx)) err = append_member(a, &child, key, keylen, depth);
  if (err != RTU_OK) lua_pop(L, 1); /* the key left by an interrupted lua_next */
  if (!bson_append_document_end(out, &child) && err == RTU_OK) return too_big(a, key, keylen);
  return err;
}

static rtu_err_t append_table(append_t *a, int idx, bson_t *out, const char *key, int keylen,
                              int depth) {
  if (depth > RTU_BSON_LUA_MAX_DEPTH) {
    snprintf(a->errstr, a->sz, "field '%.*s': nesting deeper than %d", keylen, key,
             RTU_BSON_LUA_MAX_DEPTH);
    return RTU_ERR_DATA;
  }
  if (is_mt(a->L, idx, &rtu_bson_lua_date_mt_key)) return append_date(a, idx, out, key, keylen);
  lua_Unsigned n;
  if (is_array(a->L, idx, &n)) return append_array(a, idx, n, out, key, keylen, depth);
  return append_object(a, idx, out, key, keylen, depth);
}

static rtu_err_t append_depth(append_t *a, int idx, bson_t *out, const char *key, int keylen,
                              int depth) {
  lua_State *L = a->L;
  bool ok = true;
  /* a BSON element: type, key, NUL, and at least a few bytes of value */
  size_t cost = (keylen < 0 ? strlen(key) : (size_t)keylen) + 8;
  if (lua_type(L, idx) == LUA_TSTRING) cost += lua_rawlen(L, idx);
  if (cost > a->budget) {
    snprintf(a->errstr, a->sz, "field '%.*s': value larger than %u MiB", keylen, key,
             MAX_VALUE_BYTES >> 20);
    return RTU_ERR_DATA;
  }
  a->budget -= cost;
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
      snprintf(a->errstr, a->sz, "field '%.*s': string is not valid UTF-8", keylen, key);
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
    if (lua_type(L, idx) == LUA_TTABLE) return append_table(a, idx, out, key, keylen, depth);
    snprintf(a->errstr, a->sz, "field '%.*s': a %s cannot be stored", keylen, key,
             luaL_typename(L, idx));
    return RTU_ERR_DATA;
  }
  return ok ? RTU_OK : too_big(a, key, keylen);
}

rtu_err_t rtu_bson_lua_append_marked(lua_State *L, int idx, bson_t *out, const char *key,
                                     int keylen, bool *empty_key, char *errstr,
                                     size_t errstr_size) {
  luaL_checkstack(L, RTU_BSON_LUA_MAX_DEPTH * 3 + 8, "value too deep");
  if (keylen == 0 || (keylen < 0 && key[0] == '\0')) *empty_key = true;
  append_t a = {.L = L, .budget = MAX_VALUE_BYTES, .empty_key = empty_key, .errstr = errstr,
                .sz = errstr_size};
  return append_depth(&a, lua_absindex(L, idx), out, key, keylen, 0);
}

rtu_err_t rtu_bson_lua_raw_append_marked(lua_State *L, int idx, rtu_bson_raw_t *r,
                                         const char *key, bool *empty_key, char *errstr,
                                         size_t errstr_size) {
  size_t keylen = strlen(key), len;
  if (keylen == 0) *empty_key = true;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: rtu_bson_raw_head(r, BSON_TYPE_NULL, key); return RTU_OK;
  case LUA_TBOOLEAN:
    rtu_bson_raw_head(r, BSON_TYPE_BOOL, key);
    rtu_bson_raw_le(r, lua_toboolean(L, idx) ? 1 : 0, 1);
    return RTU_OK;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer v = lua_tointeger(L, idx);
      rtu_bson_raw_int(r, v >= INT32_MIN && v <= INT32_MAX ? BSON_TYPE_INT32 : BSON_TYPE_INT64,
                       key, v);
    } else {
      double d = lua_tonumber(L, idx);
      uint64_t bits;
      memcpy(&bits, &d, sizeof bits);
      rtu_bson_raw_head(r, BSON_TYPE_DOUBLE, key);
      rtu_bson_raw_le(r, bits, 8);
    }
    return RTU_OK;
  case LUA_TSTRING: {
    const char *s = lua_tolstring(L, idx, &len);
    if (len + keylen + 8 > MAX_VALUE_BYTES) break; /* the general path says why */
    if (!bson_utf8_validate(s, len, true)) {
      snprintf(errstr, errstr_size, "field '%s': string is not valid UTF-8", key);
      return RTU_ERR_DATA;
    }
    rtu_bson_raw_utf8(r, key, s, len);
    return RTU_OK;
  }
  default: break;
  }
  /* Tables, the null sentinel and what cannot be stored: libbson's path. */
  bson_t tmp = BSON_INITIALIZER;
  rtu_err_t err = rtu_bson_lua_append_marked(L, idx, &tmp, key, (int)keylen, empty_key, errstr,
                                             errstr_size);
  if (err == RTU_OK) rtu_bson_raw_bytes(r, bson_get_data(&tmp) + 4, tmp.len - 5);
  bson_destroy(&tmp);
  return err;
}

rtu_err_t rtu_bson_lua_append(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              char *errstr, size_t errstr_size) {
  bool ignored = false;
  return rtu_bson_lua_append_marked(L, idx, out, key, keylen, &ignored, errstr, errstr_size);
}
