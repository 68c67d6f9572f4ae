/*
 * bson_lua.h: values between BSON and Lua, without passing integers through
 * doubles. Lua integers <-> BSON int32/int64, Lua floats <-> BSON double, and the
 * rtu.value kinds (null, date, array) <-> BSON null, date, array.
 */
#ifndef RTU_BSON_LUA_H
#define RTU_BSON_LUA_H

#include <bson/bson.h>
#include <lua.h>
#include <stdbool.h>

#include "bson_raw.h"
#include "rtu.h"

/* Nesting deeper than this is refused when a Lua value is written as BSON. */
#define RTU_BSON_LUA_MAX_DEPTH 100

/* Registry keys of the rtu.value metatables (their addresses are the keys). */
extern const char rtu_bson_lua_date_mt_key;
extern const char rtu_bson_lua_array_mt_key;

/* Stores the metatables of rtu.value (the table at idx) for the conversions. */
void rtu_bson_lua_bind(lua_State *L, int value_module_idx);

/* Pushes the null sentinel (a light userdata NULL, as lua-cjson's cjson.null). */
static inline void rtu_bson_lua_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

/* Sets the rtu.value Array metatable on the table at idx (an absolute index). */
static inline void rtu_bson_lua_set_array_mt(lua_State *L, int idx) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rtu_bson_lua_array_mt_key);
  lua_setmetatable(L, idx);
}

void rtu_bson_lua_push_date(lua_State *L, int64_t ms);

/* ---- BSON -> Lua ---------------------------------------------------------- */

void rtu_bson_lua_push_doc(lua_State *L, const bson_t *doc);
/* The same with only the top-level fields named in names[0..n). */
void rtu_bson_lua_push_doc_fields(lua_State *L, const bson_t *doc, char *const *names, size_t n);
void rtu_bson_lua_push_iter(lua_State *L, const bson_iter_t *it);

/* ---- Lua -> BSON ---------------------------------------------------------- */

/* Appends the Lua value at idx to out under key. Fails on functions, non-string
 * keys, invalid UTF-8, nesting deeper than 100 or more than 16 MiB written (a
 * table shared within the value counts once per reference). */
rtu_err_t rtu_bson_lua_append(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                              char *errstr, size_t errstr_size);

/* rtu_bson_lua_append for documents to be stored: *empty_key is set when a field
 * name anywhere in the value (or key itself) is empty, which MongoDB refuses. */
rtu_err_t rtu_bson_lua_append_marked(lua_State *L, int idx, bson_t *out, const char *key,
                                     int keylen, bool *empty_key, char *errstr,
                                     size_t errstr_size);

/* rtu_bson_lua_append_marked into a raw document: the same element bytes. */
rtu_err_t rtu_bson_lua_raw_append_marked(lua_State *L, int idx, rtu_bson_raw_t *r,
                                         const char *key, bool *empty_key, char *errstr,
                                         size_t errstr_size);

#endif
