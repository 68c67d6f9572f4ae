/*
 * sandbox.c: owns a Lua state's limits and what its code can reach. The state's
 * allocator enforces a memory cap; every call into Lua (rtu_sandbox_pcall) runs
 * under a wall-clock limit enforced by an instruction-count hook; what the hook
 * cannot see (message handlers, finalizers, pattern matching in C) rtu.sandbox
 * closes, asking rtu.limits.timed_out() (here) whether an error is the
 * timeout. The standard libraries are opened without what reads files, runs
 * programs or reads the environment, require loads only rtu.* modules from the
 * runtime folder, and user files load as text chunks into their own sandbox
 * environments (rtu.sandbox.new_env). It reads script files and nothing else,
 * and knows nothing of the configuration, the pipeline or the strategies.
 */
#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bson_lua.h"
#include "json_module.h"
#include "json_write.h"
#include "log.h"

#define HOOK_EVERY 10000                  /* instructions between clock checks */
#define MEMORY_LIMIT (256u * 1024 * 1024) /* per state */

/* ---- memory cap --------------------------------------------------------- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  rtu_sandbox_t *sb = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    sb->mem_used -= old;
    return NULL;
  }
  if (nsize > old && sb->mem_used + (nsize - old) > sb->mem_limit) {
    sb->mem_refused = true;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  sb->mem_used = sb->mem_used - old + nsize;
  return p;
}

/* ---- time limit --------------------------------------------------------- */

static rtu_sandbox_t *sandbox_of(lua_State *L) {
  return *(rtu_sandbox_t **)lua_getextraspace(L);
}

static void l_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  rtu_sandbox_t *sb = sandbox_of(L);
  if (sb->deadline == 0 || rtu_now_mono_ms() <= sb->deadline) return;
  /* From now on every instruction raises again, so a pcall in the script can
   * catch the error but cannot go on running (Redis does the same). */
  sb->timed_out = true;
  lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
  /* The main thread too: a coroutine that timed out must not let its resumer go on. */
  if (L != sb->L) lua_sethook(sb->L, l_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "script ran longer than STRATEGIES_MAX_EXEC_TIME_MS (%d ms)", sb->limit_ms);
}

/* rtu.limits.timed_out(): lets the sandbox's pcall, xpcall and coroutine.resume
 * tell a timeout from a script error without trusting the error value. */
static int l_timed_out(lua_State *L) {
  lua_pushboolean(L, sandbox_of(L)->timed_out);
  return 1;
}

static void arm(rtu_sandbox_t *sb) {
  sb->deadline = sb->limit_ms > 0 ? rtu_now_mono_ms() + sb->limit_ms : 0;
  sb->timed_out = false;
  sb->mem_refused = false;
}

static void disarm(rtu_sandbox_t *sb) {
  sb->deadline = 0;
  if (sb->timed_out) lua_sethook(sb->L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  sb->timed_out = false;
}

/* ---- runtime require ---------------------------------------------------- */

static int l_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  rtu_sandbox_t *sb = sandbox_of(L);
  if (strncmp(name, "rtu.", 4) != 0 || strstr(name, ".."))
    return luaL_error(L, "module '%s' not found (only rtu.* runtime modules load)", name);
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/", sb->lua_dir);
  for (const char *p = name; *p && n < (int)sizeof path - 16; p++) path[n++] = *p == '.' ? '/' : *p;
  path[n] = '\0';
  char file[4200];
  struct stat st;
  snprintf(file, sizeof file, "%s.lua", path);
  if (stat(file, &st) != 0) snprintf(file, sizeof file, "%s/init.lua", path);
  if (luaL_loadfilex(L, file, "t") != LUA_OK) return lua_error(L);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

/* ---- the log handed to scripts ------------------------------------------ */

static int l_log(lua_State *L) {
  rtu_log_level_t level = (rtu_log_level_t)lua_tointeger(L, lua_upvalueindex(1));
  int base = 1;
  if (lua_istable(L, 1) && !lua_isstring(L, 1)) base = 2; /* called as log:info(...) */
  if (!rtu_log_enabled(level)) return 0;
  const char *msg = luaL_tolstring(L, base, NULL);
  if (lua_istable(L, base + 1)) {
    bson_t doc = BSON_INITIALIZER;
    char err[RTU_ERRSTR_SIZE];
    if (rtu_bson_lua_append(L, base + 1, &doc, "f", 1, err, sizeof err) == RTU_OK) {
      bson_string_t *out = bson_string_new(NULL);
      rtu_json_write_first(&doc, out);
      rtu_log(level, msg, "source", "script", "#fields", out->str, NULL);
      bson_string_free(out, true);
    } else {
      rtu_log(level, msg, "source", "script", NULL);
    }
    bson_destroy(&doc);
  } else {
    rtu_log(level, msg, "source", "script", NULL);
  }
  return 0;
}

void rtu_sandbox_push_log(lua_State *L) {
  static const struct {
    const char *name;
    rtu_log_level_t level;
  } fns[] = {{"trace", RTU_LOG_TRACE}, {"debug", RTU_LOG_DEBUG}, {"info", RTU_LOG_INFO},
             {"warn", RTU_LOG_WARN},   {"error", RTU_LOG_ERROR}, {"fatal", RTU_LOG_FATAL}};
  lua_newtable(L); /* proxy */
  lua_newtable(L); /* metatable */
  lua_newtable(L); /* functions */
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    lua_pushinteger(L, fns[i].level);
    lua_pushcclosure(L, l_log, 1);
    lua_setfield(L, -2, fns[i].name);
  }
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

/* ---- loading ------------------------------------------------------------ */

static int l_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  lua_pushstring(L, msg);
  return 1;
}

bool rtu_sandbox_pcall(rtu_sandbox_t *sb, int nargs, int nres) {
  lua_State *L = sb->L;
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, l_traceback);
  lua_insert(L, fn);
  arm(sb);
  int rc = lua_pcall(L, nargs, nres, fn);
  sb->last_timed_out = sb->timed_out;
  /* A memory error may reach here as LUA_ERRMEM, or as a runtime error after
   * Lua code caught it and raised its own message around it. */
  const char *msg = rc != LUA_OK ? lua_tostring(L, -1) : NULL;
  sb->last_out_of_memory =
      !sb->last_timed_out &&
      (rc == LUA_ERRMEM ||
       (sb->mem_refused && (rc == LUA_ERRERR || (msg && strstr(msg, "not enough memory")))));
  disarm(sb);
  lua_remove(L, fn);
  if (sb->last_out_of_memory) {
    /* Free what the failed call left before allocating the message: an
     * allocation failing here, outside any pcall, would abort the process. */
    lua_gc(L, LUA_GCCOLLECT);
    lua_pushfstring(L, "Lua memory limit (%d MiB) reached: %s", (int)(sb->mem_limit >> 20),
                    msg ? msg : "not enough memory");
    lua_remove(L, -2);
    return false;
  }
  if (rc == LUA_OK && sb->last_timed_out) {
    /* The script caught the timeout (in a coroutine) and returned: still a timeout. */
    lua_pop(L, nres);
    lua_pushfstring(L, "script ran longer than STRATEGIES_MAX_EXEC_TIME_MS (%d ms)",
                    sb->limit_ms);
    return false;
  }
  return rc == LUA_OK;
}

bool rtu_sandbox_load_function(rtu_sandbox_t *sb, const char *path, rtu_problems_t *problems) {
  lua_State *L = sb->L;
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    rtu_problems_add(problems, "%s: %s", path, lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.sandbox");
  lua_getfield(L, -1, "new_env");
  lua_remove(L, -2);
  if (!rtu_sandbox_pcall(sb, 0, 1)) {
    rtu_problems_add(problems, "%s: cannot build its sandbox: %s", path, lua_tostring(L, -1));
    lua_pop(L, 2);
    return false;
  }
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1); /* _ENV of the main chunk */
  if (!rtu_sandbox_pcall(sb, 0, 1)) {
    rtu_problems_add(problems, "%s: %s", path, lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  if (!lua_isfunction(L, -1)) {
    rtu_problems_add(problems, "%s: must return a function, returned a %s", path,
                     luaL_typename(L, -1));
    lua_pop(L, 1);
    return false;
  }
  return true;
}

bool rtu_sandbox_require(rtu_sandbox_t *sb, const char *name, rtu_problems_t *problems) {
  lua_State *L = sb->L;
  lua_pushcfunction(L, l_require);
  lua_pushstring(L, name);
  if (!rtu_sandbox_pcall(sb, 1, 1)) {
    rtu_problems_add(problems, "Lua runtime: cannot load %s: %s", name, lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  lua_setfield(L, LUA_REGISTRYINDEX, name);
  return true;
}

/* Copies every field of the table at the top of the stack into the table just
 * below it, then pops the copied table: the copy can then be changed (string
 * methods without dump, built-in casts overridden by files) while the original
 * stays as it was. */
void rtu_sandbox_copy_fields(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -5);
  }
  lua_pop(L, 1);
}

/* type() and math.type() answer with lua_pushstring, which finds the C string
 * in Lua's string cache by strcmp on every call, and a message makes dozens of
 * such calls (the casts, the adapters and the pipeline test types; see
 * docs/performance.md). These push the same interned strings, held as
 * upvalues; arguments, results and errors are the stock functions'. */
static int l_type(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argcheck(L, t != LUA_TNONE, 1, "value expected");
  lua_pushvalue(L, lua_upvalueindex(t + 1));
  return 1;
}

static int l_math_type(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_pushvalue(L, lua_upvalueindex(lua_isinteger(L, 1) ? 1 : 2));
  } else {
    luaL_checkany(L, 1);
    luaL_pushfail(L);
  }
  return 1;
}

static void replace_type_functions(lua_State *L) {
  for (int t = 0; t < LUA_NUMTYPES; t++) lua_pushstring(L, lua_typename(L, t));
  lua_pushcclosure(L, l_type, LUA_NUMTYPES);
  lua_setglobal(L, "type");
  lua_getglobal(L, LUA_MATHLIBNAME);
  lua_pushliteral(L, "integer");
  lua_pushliteral(L, "float");
  lua_pushcclosure(L, l_math_type, 2);
  lua_setfield(L, -2, "type");
  lua_pop(L, 1);
}

/* The standard libraries the runtime needs, without what user code must never
 * reach, and the C modules rtu.json and rtu.limits preloaded. */
static void open_libs(lua_State *L) {
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_TABLIBNAME, luaopen_table},
      {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
      {LUA_OSLIBNAME, luaopen_os},
  };
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    luaL_requiref(L, libs[i].name, libs[i].func, 1);
    lua_pop(L, 1);
  }
  replace_type_functions(L);
  /* The runtime needs none of these, and user code must never see them. */
  static const char *drop[] = {"dofile", "loadfile", "print", "collectgarbage"};
  for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
    lua_pushnil(L);
    lua_setglobal(L, drop[i]);
  }
  lua_getglobal(L, "os");
  static const char *os_drop[] = {"execute", "exit", "getenv", "remove", "rename",
                                  "tmpname", "setlocale"};
  for (size_t i = 0; i < sizeof os_drop / sizeof os_drop[0]; i++) {
    lua_pushnil(L);
    lua_setfield(L, -2, os_drop[i]);
  }
  lua_pop(L, 1);
  /* getmetatable("") must not hand out the shared string library, and string
   * methods ("":dump()) must not reach what the sandbox removed. */
  lua_pushliteral(L, "");
  if (lua_getmetatable(L, -1)) {
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_newtable(L);
    lua_getglobal(L, "string");
    rtu_sandbox_copy_fields(L);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_require);
  lua_setglobal(L, "require");
  /* rtu.json and rtu.limits are C: preload them in the loaded table. */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  rtu_json_module_open(L);
  lua_setfield(L, -2, "rtu.json");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_setfield(L, -2, "rtu.limits");
  lua_pop(L, 1);
}

/* String methods ("s:find(p)") get the sandbox's guarded string library, so a
 * method call cannot reach the unguarded pattern functions either. */
bool rtu_sandbox_guard_strings(rtu_sandbox_t *sb, rtu_problems_t *problems) {
  lua_State *L = sb->L;
  int top = lua_gettop(L);
  bool ok = false;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.sandbox");
  lua_pushliteral(L, "");
  if (lua_getfield(L, -2, "string") != LUA_TTABLE || !lua_getmetatable(L, -2)) {
    rtu_problems_add(problems, "Lua runtime: rtu.sandbox has no string library");
    goto done;
  }
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  ok = true;
done:
  lua_settop(L, top);
  return ok;
}

/* ---- the state ---------------------------------------------------------- */

bool rtu_sandbox_open(rtu_sandbox_t *sb, const char *lua_dir, int limit_ms) {
  memset(sb, 0, sizeof *sb);
  sb->lua_dir = lua_dir;
  sb->mem_limit = MEMORY_LIMIT;
  sb->limit_ms = limit_ms;
  sb->L = lua_newstate(l_alloc, sb);
  if (!sb->L) return false;
  *(rtu_sandbox_t **)lua_getextraspace(sb->L) = sb;
  lua_sethook(sb->L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  open_libs(sb->L);
  return true;
}

void rtu_sandbox_close(rtu_sandbox_t *sb) {
  if (sb->L) lua_close(sb->L);
  sb->L = NULL;
}

void rtu_sandbox_set_hook(rtu_sandbox_t *sb, bool on) {
  if (on) lua_sethook(sb->L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  else lua_sethook(sb->L, NULL, 0, 0);
}
