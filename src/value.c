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
  lua_newtable(L);
  if (!bson_iter_recurse(parent, &child)) return;
  lua_Integer i = 1;
  while (bson_iter_next(&child)) {
    push_iter_depth(L, &child, depth + 1);
    if (array) lua_rawseti(L, -2, i++);
    else lua_setfield(L, -2, bson_iter_key(&child));
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
  lua_newtable(L);
  if (!bson_iter_init(&it, doc)) return;
  while (bson_iter_next(&it)) {
    push_iter_depth(L, &it, 0);
    lua_setfield(L, -2, bson_iter_key(&it));
  }
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
                              int depth, size_t *budget, char *errstr, size_t sz);

static rtu_err_t append_table(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              int depth, size_t *budget, char *errstr, size_t sz) {
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
      err = append_depth(L, lua_gettop(L), &child, ikey, (int)ilen, depth + 1, budget, errstr, sz);
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
    err = append_depth(L, lua_gettop(L), &child, k, (int)klen, depth + 1, budget, errstr, sz);
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
                              int depth, size_t *budget, char *errstr, size_t sz) {
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
      return append_table(L, idx, out, key, keylen, depth, budget, errstr, sz);
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

rtu_err_t rtu_value_append(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                           char *errstr, size_t errstr_size) {
  luaL_checkstack(L, MAX_DEPTH * 3 + 8, "value too deep");
  size_t budget = MAX_VALUE_BYTES;
  return append_depth(L, lua_absindex(L, idx), out, key, keylen, 0, &budget, errstr, errstr_size);
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
      snprintf(errstr, sz, "'%.8s' is not a JSON value", s + i);
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

bool rtu_value_json_to_bson(const char *text, size_t len, bson_t *out, char *errstr,
                            size_t errstr_size) {
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

static void json_string(bson_string_t *out, const char *s, size_t len) {
  char *esc = bson_utf8_escape_for_json(s, (ssize_t)len);
  bson_string_append_c(out, '"');
  if (esc) bson_string_append(out, esc);
  bson_string_append_c(out, '"');
  bson_free(esc);
}

static void json_double(bson_string_t *out, double d) {
  if (!isfinite(d)) {
    bson_string_append(out, "null"); /* as JSON.stringify */
    return;
  }
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  bson_string_append(out, buf);
}

void rtu_value_iter_to_json(const bson_iter_t *it, bson_string_t *out) {
  switch (bson_iter_type(it)) {
  case BSON_TYPE_DOUBLE: json_double(out, bson_iter_double(it)); break;
  case BSON_TYPE_UTF8: {
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    json_string(out, s, len);
    break;
  }
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    bool array = BSON_ITER_HOLDS_ARRAY(it);
    bson_iter_t child;
    bson_string_append_c(out, array ? '[' : '{');
    if (bson_iter_recurse(it, &child)) {
      bool first = true;
      while (bson_iter_next(&child)) {
        if (!first) bson_string_append_c(out, ',');
        first = false;
        if (!array) {
          json_string(out, bson_iter_key(&child), bson_iter_key_len(&child));
          bson_string_append_c(out, ':');
        }
        rtu_value_iter_to_json(&child, out);
      }
    }
    bson_string_append_c(out, array ? ']' : '}');
    break;
  }
  case BSON_TYPE_OID: {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(it), hex);
    json_string(out, hex, 24);
    break;
  }
  case BSON_TYPE_BOOL: bson_string_append(out, bson_iter_bool(it) ? "true" : "false"); break;
  case BSON_TYPE_DATE_TIME: {
    char iso[40];
    rtu_iso8601(bson_iter_date_time(it), iso, sizeof iso);
    json_string(out, iso, strlen(iso));
    break;
  }
  case BSON_TYPE_INT32: bson_string_append_printf(out, "%d", bson_iter_int32(it)); break;
  case BSON_TYPE_INT64:
    bson_string_append_printf(out, "%lld", (long long)bson_iter_int64(it));
    break;
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d;
    char s[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &d);
    bson_decimal128_to_string(&d, s);
    bson_string_append(out, s);
    break;
  }
  default: bson_string_append(out, "null"); break;
  }
}

void rtu_value_append_original_key(bson_t *out, const char *field, const char *key,
                                   size_t key_len) {
  if (!key) {
    bson_append_null(out, field, -1);
    return;
  }
  size_t i = 0;
  while (i < key_len && (key[i] == ' ' || key[i] == '\t' || key[i] == '\n' || key[i] == '\r')) i++;
  /* Only what looks like an object is parsed: most keys are plain text. */
  if (i < key_len && key[i] == '{') {
    bson_t wrap;
    bson_iter_t it;
    char err[RTU_ERRSTR_SIZE];
    if (rtu_value_json_to_bson(key, key_len, &wrap, err, sizeof err)) {
      bool done = bson_iter_init_find(&it, &wrap, "v") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
                  bson_append_iter(out, field, -1, &it);
      bson_destroy(&wrap);
      if (done) return;
    }
  }
  if (bson_utf8_validate(key, key_len, false))
    bson_append_utf8(out, field, -1, key, (int)key_len);
  else
    bson_append_binary(out, field, -1, BSON_SUBTYPE_BINARY, (const uint8_t *)key, (uint32_t)key_len);
}

void rtu_value_doc_to_json(const bson_t *doc, bool as_array, bson_string_t *out) {
  bson_iter_t it;
  bson_string_append_c(out, as_array ? '[' : '{');
  bool first = true;
  if (bson_iter_init(&it, doc)) {
    while (bson_iter_next(&it)) {
      if (!first) bson_string_append_c(out, ',');
      first = false;
      if (!as_array) {
        json_string(out, bson_iter_key(&it), bson_iter_key_len(&it));
        bson_string_append_c(out, ':');
      }
      rtu_value_iter_to_json(&it, out);
    }
  }
  bson_string_append_c(out, as_array ? ']' : '}');
}

static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
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

static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  bson_t doc = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE];
  if (rtu_value_append(L, 1, &doc, "v", 1, err, sizeof err) != RTU_OK) {
    bson_destroy(&doc);
    return luaL_error(L, "cannot encode: %s", err);
  }
  bson_iter_t it;
  bson_string_t *out = bson_string_new(NULL);
  if (bson_iter_init(&it, &doc) && bson_iter_next(&it)) rtu_value_iter_to_json(&it, out);
  lua_pushlstring(L, out->str, out->len);
  bson_string_free(out, true);
  bson_destroy(&doc);
  return 1;
}

int rtu_value_open_json(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, l_json_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_json_encode);
  lua_setfield(L, -2, "encode");
  rtu_value_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
