/*
 * strategies_db.c: owns the `db` object of strategies, the only way Lua code
 * reaches MongoDB: read-only by construction (find and findOne are the only
 * operations), through the lookup function the strategies' run sets. It turns
 * Lua filters and options into BSON and documents found into Lua tables; it
 * opens no connection itself.
 */
#include "strategies_db.h"

#include <lauxlib.h>
#include <stdio.h>

#include "bson_lua.h"

static void push_found(void *ctx, const bson_t *doc) {
  lua_State *L = ctx;
  rtu_bson_lua_push_doc(L, doc);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

/* The filter table at index 3 (its own keys) into filter; false with the
 * message in msg. */
static bool take_filter(lua_State *L, bson_t *filter, char *msg, size_t sz) {
  char err[RTU_ERRSTR_SIZE];
  if (lua_isnoneornil(L, 3)) return true;
  if (!lua_istable(L, 3)) {
    snprintf(msg, sz, "db:find: the filter must be an object");
    return false;
  }
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    size_t klen;
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(msg, sz, "db:find: filter keys must be strings");
      return false;
    }
    const char *k = lua_tolstring(L, -2, &klen);
    if (rtu_bson_lua_append(L, -1, filter, k, (int)klen, err, sizeof err) != RTU_OK) {
      snprintf(msg, sz, "db:find: filter %s", err);
      return false;
    }
    lua_pop(L, 1);
  }
  return true;
}

/* The options table at index 4 (the allowed ones) into opts; false with the
 * message in msg. */
static bool take_options(lua_State *L, bson_t *opts, char *msg, size_t sz) {
  static const char *allowed[] = {"projection", "sort", "limit", "skip"};
  char err[RTU_ERRSTR_SIZE];
  if (!lua_istable(L, 4)) return true;
  for (size_t i = 0; i < 4; i++) {
    if (lua_getfield(L, 4, allowed[i]) != LUA_TNIL &&
        rtu_bson_lua_append(L, -1, opts, allowed[i], -1, err, sizeof err) != RTU_OK) {
      snprintf(msg, sz, "db:find: option %s: %s", allowed[i], err);
      return false;
    }
    lua_pop(L, 1);
  }
  return true;
}

/* db:find(collection, filter, options) -> array of documents; db:findOne the
 * first or nil. */
static int db_find_impl(lua_State *L, bool one) {
  rtu_strategies_db_t *db = lua_touserdata(L, lua_upvalueindex(1));
  const char *coll = luaL_checkstring(L, 2);
  if (!db->find) return luaL_error(L, "db is only available while strategies run");
  bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
  char msg[RTU_ERRSTR_SIZE + 64], err[RTU_ERRSTR_SIZE];
  if (!take_filter(L, &filter, msg, sizeof msg) || !take_options(L, &opts, msg, sizeof msg)) {
    bson_destroy(&filter);
    bson_destroy(&opts);
    return luaL_error(L, "%s", msg);
  }
  if (one) {
    bson_iter_t li;
    if (!bson_iter_init_find(&li, &opts, "limit")) BSON_APPEND_INT64(&opts, "limit", 1);
  }
  lua_newtable(L);
  /* The time limit bounds the script, not MongoDB: the lookup's time is given back. */
  int64_t t0 = rtu_now_mono_ms();
  rtu_err_t rc = db->find(db->find_ctx, coll, &filter, &opts, push_found, L, err, sizeof err);
  if (db->sb->deadline) db->sb->deadline += rtu_now_mono_ms() - t0;
  bson_destroy(&filter);
  bson_destroy(&opts);
  if (rc != RTU_OK) {
    db->find_err = rc;
    snprintf(db->find_errstr, sizeof db->find_errstr, "%s", err);
    return luaL_error(L, "db:find on %s failed: %s", coll, err);
  }
  if (one) lua_rawgeti(L, -1, 1); /* nil when nothing matched, as Lua code expects */
  return 1;
}

static int l_db_find(lua_State *L) { return db_find_impl(L, false); }
static int l_db_find_one(lua_State *L) { return db_find_impl(L, true); }

void rtu_strategies_db_push(lua_State *L, rtu_strategies_db_t *db) {
  lua_newtable(L);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushlightuserdata(L, db);
  lua_pushcclosure(L, l_db_find, 1);
  lua_setfield(L, -2, "find");
  lua_pushlightuserdata(L, db);
  lua_pushcclosure(L, l_db_find_one, 1);
  lua_setfield(L, -2, "findOne");
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}
