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
#include "json_scan.h"
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
 * to the bit (rtu_json_scan_decimal; lua_stringtonumber for the long ones). */
static int l_json_decimal(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t i;
  double d;
  switch (rtu_json_scan_decimal(s, n, &i, &d)) {
  case RTU_DECIMAL_INT: lua_pushinteger(L, (lua_Integer)i); break;
  case RTU_DECIMAL_FLOAT: lua_pushnumber(L, d); break;
  case RTU_DECIMAL_LONG:
    if (lua_stringtonumber(L, s) == 0) lua_pushnil(L); /* not reached: tonumber reads every plain decimal */
    break;
  case RTU_DECIMAL_NOT: lua_pushnil(L); break;
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
