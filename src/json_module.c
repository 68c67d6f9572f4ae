/*
 * json_module.c: owns the `rtu.json` Lua module (decode, encode, decimal,
 * null), the JSON the scripts see. It is glue: decoding is json_lua.c's, encoding
 * bson_lua.c's Lua -> BSON then json_write.c's BSON -> text. No state.
 */
#include "json_module.h"

#include <bson/bson.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stdint.h>

#include "bson_lua.h"
#include "json_lua.h"
#include "json_write.h"

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
  char err[RTU_ERRSTR_SIZE];
  if (rtu_json_lua_decode(L, s, len, lua_istable(L, 2) ? 2 : 0, err, sizeof err) != RTU_OK)
    return luaL_error(L, "invalid JSON: %s", err);
  return 1;
}

/* json.decimal(text): tonumber(text) when text is a plain decimal, '-'? digit+
 * ('.' digit*)?, and nil for any other text, which a cast then reads with the
 * general JavaScript grammar. Most numbers of a basic or Golden Gate record come
 * as such strings ("42", "-3.50"), and in Lua the shape test (string.find) and
 * tonumber (strtod) are dear (see docs/performance.md). The result is tonumber's
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
  if (rtu_bson_lua_append(L, 1, &doc, "v", 1, err, sizeof err) != RTU_OK) {
    bson_destroy(&doc);
    return luaL_error(L, "cannot encode: %s", err);
  }
  bson_string_t *out = bson_string_new(NULL);
  rtu_json_write_first(&doc, out);
  lua_pushlstring(L, out->str, out->len);
  bson_string_free(out, true);
  bson_destroy(&doc);
  return 1;
}

int rtu_json_module_open(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushcfunction(L, l_json_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_json_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_json_decimal);
  lua_setfield(L, -2, "decimal");
  rtu_bson_lua_push_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}
