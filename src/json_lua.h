/*
 * json_lua.h: JSON text -> Lua values, the tables built exactly as
 * bson_lua.c would build them from json_read.c's BSON of the same text (same
 * values, same null, the same Array metatable, the same pairs() order).
 *
 * Entry points for fuzzing: rtu_json_lua_decode (the whole path), and
 * rtu_json_lua_push_strict (the direct reader alone): where it takes a text,
 * the result must equal rtu_json_read_bson's pushed with rtu_bson_lua_push_iter.
 * Both raise Lua errors (memory) as any push does: call them inside a pcall'd
 * C function.
 */
#ifndef RTU_JSON_LUA_H
#define RTU_JSON_LUA_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "rtu.h"

/* Pushes the Lua value of JSON text and returns RTU_OK, or pushes nothing and
 * returns RTU_ERR_DATA with the cause. leave_out: 0, or the stack index of a
 * table mapping top-level member names the caller does not want whole to a set
 * of the names it reads in them, or to any other value for none (see rtu.json's
 * decode in json_module.c). */
rtu_err_t rtu_json_lua_decode(lua_State *L, const char *text, size_t len, int leave_out,
                              char *errstr, size_t errstr_size);

/* The direct reader alone (strict JSON only): pushes the value and returns true,
 * or pushes nothing and returns false where json_read.c's reading must decide. */
bool rtu_json_lua_push_strict(lua_State *L, const char *text, size_t len, int leave_out);

#endif
