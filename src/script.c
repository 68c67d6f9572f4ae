/*
 * script.c: owns the Lua states. A state holds one script generation: the runtime
 * modules shipped in lua/ (trusted, loaded with a require limited to that folder),
 * and the user's casts and adapter, each loaded as a text chunk into its own
 * sandbox environment (rtu.sandbox). Every call into Lua runs under a wall-clock
 * limit enforced by an instruction-count hook, and the state's allocator enforces
 * a memory cap; what the hook cannot see (message handlers, finalizers, pattern
 * matching in C) rtu.sandbox closes, asking rtu.limits.timed_out() (here) whether
 * an error is the timeout. It does no I/O besides reading script files at load,
 * and never talks to Kafka or MongoDB.
 */
#include "script.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "log.h"
#include "bson_lua.h"
#include "bson_raw.h"
#include "json_module.h"
#include "json_write.h"

#define HOOK_EVERY 10000                  /* instructions between clock checks */
#define MEMORY_LIMIT (256u * 1024 * 1024) /* per state */

struct rtu_script_s {
  lua_State *L;
  const rtu_config_t *cfg;
  size_t mem_used, mem_limit;
  int64_t deadline; /* monotonic ms; 0 = no limit */
  int limit_ms;
  bool timed_out;
  bool last_timed_out; /* of the last pcall_limited */
  bool mem_refused;       /* the cap refused an allocation since arm() */
  bool last_out_of_memory; /* the last pcall_limited failed on the memory cap */
  int process_ref; /* pipeline process function */
  int log_ref;     /* the log table handed to scripts */
  int message_ref; /* the message table reused when only the runtime maps (see push_message) */
  int names_ref;   /* the names the core reads and writes, as Lua strings (see N_*) */
  int identify_ref; /* rtu.changes identify function, LUA_NOREF when strategies are off */
  int db_ref;       /* the read-only db object handed to strategies */
  bool *involved;   /* per projection: can trigger a single view */
  /* Per projection: the only top-level fields strategies read from its documents
   * (low-code without custom identifier functions), names NULL for all of them. */
  struct {
    char **names;
    size_t n;
  } *read_fields;
  unsigned char *map_kind; /* per projection: 0 not known yet, MAP_RUNTIME, MAP_USER */
  /* The lookup in force during an identify call. */
  rtu_find_fn find;
  void *find_ctx;
  rtu_err_t find_err;
  char find_errstr[RTU_ERRSTR_SIZE];
};

/* ---- memory cap --------------------------------------------------------- */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  rtu_script_t *s = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    s->mem_used -= old;
    return NULL;
  }
  if (nsize > old && s->mem_used + (nsize - old) > s->mem_limit) {
    s->mem_refused = true;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  s->mem_used = s->mem_used - old + nsize;
  return p;
}

size_t rtu_script_memory(const rtu_script_t *s) { return s->mem_used; }

/* ---- time limit --------------------------------------------------------- */

static rtu_script_t *script_of(lua_State *L) { return *(rtu_script_t **)lua_getextraspace(L); }

static void l_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  rtu_script_t *s = script_of(L);
  if (s->deadline == 0 || rtu_now_mono_ms() <= s->deadline) return;
  /* From now on every instruction raises again, so a pcall in the script can
   * catch the error but cannot go on running (Redis does the same). */
  s->timed_out = true;
  lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
  /* The main thread too: a coroutine that timed out must not let its resumer go on. */
  if (L != s->L) lua_sethook(s->L, l_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "script ran longer than STRATEGIES_MAX_EXEC_TIME_MS (%d ms)", s->limit_ms);
}

/* rtu.limits.timed_out(): lets the sandbox's pcall, xpcall and coroutine.resume
 * tell a timeout from a script error without trusting the error value. */
static int l_timed_out(lua_State *L) {
  lua_pushboolean(L, script_of(L)->timed_out);
  return 1;
}

static void arm(rtu_script_t *s) {
  s->deadline = s->limit_ms > 0 ? rtu_now_mono_ms() + s->limit_ms : 0;
  s->timed_out = false;
  s->mem_refused = false;
}

static void disarm(rtu_script_t *s) {
  s->deadline = 0;
  if (s->timed_out) lua_sethook(s->L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  s->timed_out = false;
}

/* ---- runtime require ---------------------------------------------------- */

static int l_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  rtu_script_t *s = script_of(L);
  if (strncmp(name, "rtu.", 4) != 0 || strstr(name, ".."))
    return luaL_error(L, "module '%s' not found (only rtu.* runtime modules load)", name);
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/", s->cfg->lua_dir);
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

static void push_log_table(lua_State *L) {
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

/* Calls the function below nargs arguments with the time limit; leaves nres
 * results, or returns false with the error message on the stack top. */
static bool pcall_limited(rtu_script_t *s, int nargs, int nres) {
  lua_State *L = s->L;
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, l_traceback);
  lua_insert(L, fn);
  arm(s);
  int rc = lua_pcall(L, nargs, nres, fn);
  s->last_timed_out = s->timed_out;
  /* A memory error may reach here as LUA_ERRMEM, or as a runtime error after
   * Lua code caught it and raised its own message around it. */
  const char *msg = rc != LUA_OK ? lua_tostring(L, -1) : NULL;
  s->last_out_of_memory = !s->last_timed_out &&
                          (rc == LUA_ERRMEM || (s->mem_refused && (rc == LUA_ERRERR ||
                                                     (msg && strstr(msg, "not enough memory")))));
  disarm(s);
  lua_remove(L, fn);
  if (s->last_out_of_memory) {
    /* Free what the failed call left before allocating the message: an
     * allocation failing here, outside any pcall, would abort the process. */
    lua_gc(L, LUA_GCCOLLECT);
    lua_pushfstring(L, "Lua memory limit (%d MiB) reached: %s", (int)(s->mem_limit >> 20),
                    msg ? msg : "not enough memory");
    lua_remove(L, -2);
    return false;
  }
  if (rc == LUA_OK && s->last_timed_out) {
    /* The script caught the timeout (in a coroutine) and returned: still a timeout. */
    lua_pop(L, nres);
    lua_pushfstring(L, "script ran longer than STRATEGIES_MAX_EXEC_TIME_MS (%d ms)", s->limit_ms);
    return false;
  }
  return rc == LUA_OK;
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads a user file returning one function, in a fresh sandbox; pushes it. */
static bool load_user_function(rtu_script_t *s, const char *path, rtu_problems_t *problems) {
  lua_State *L = s->L;
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    rtu_problems_add(problems, "%s: %s", path, lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.sandbox");
  lua_getfield(L, -1, "new_env");
  lua_remove(L, -2);
  if (!pcall_limited(s, 0, 1)) {
    rtu_problems_add(problems, "%s: cannot build its sandbox: %s", path, lua_tostring(L, -1));
    lua_pop(L, 2);
    return false;
  }
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1); /* _ENV of the main chunk */
  if (!pcall_limited(s, 0, 1)) {
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

static bool require_into_registry(rtu_script_t *s, const char *name, rtu_problems_t *problems) {
  lua_State *L = s->L;
  lua_pushcfunction(L, l_require);
  lua_pushstring(L, name);
  if (!pcall_limited(s, 1, 1)) {
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
static void copy_fields_and_pop(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -5);
  }
  lua_pop(L, 1);
}

/* type() and math.type() answer with lua_pushstring, which finds the C string
 * in Lua's string cache by strcmp on every call: a food message makes about 25
 * such calls (the casts, the adapters and the pipeline test types); with the
 * glue's lua_getfield (see push_names) they put strcmp at 3 % of rtu's time.
 * These push the same interned strings, held as upvalues; arguments, results
 * and errors are the stock functions'. */
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
    copy_fields_and_pop(L);
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
static bool guard_string_methods(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->L;
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

/* ---- the db object of strategies ---------------------------------------- */

static void push_found(void *ctx, const bson_t *doc) {
  lua_State *L = ctx;
  rtu_bson_lua_push_doc(L, doc);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

/* db:find(collection, filter, options) -> array of documents. Read-only by
 * construction: the only operation there is. */
static int db_find_impl(lua_State *L, bool one) {
  rtu_script_t *s = script_of(L);
  const char *coll = luaL_checkstring(L, 2);
  if (!s->find) return luaL_error(L, "db is only available while strategies run");
  bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE];
  if (!lua_isnoneornil(L, 3)) {
    /* The filter table's own keys become the filter document. */
    if (!lua_istable(L, 3)) {
      bson_destroy(&filter);
      bson_destroy(&opts);
      return luaL_error(L, "db:find: the filter must be an object");
    }
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      size_t klen;
      if (lua_type(L, -2) != LUA_TSTRING) {
        bson_destroy(&filter);
        bson_destroy(&opts);
        return luaL_error(L, "db:find: filter keys must be strings");
      }
      const char *k = lua_tolstring(L, -2, &klen);
      if (rtu_bson_lua_append(L, -1, &filter, k, (int)klen, err, sizeof err) != RTU_OK) {
        bson_destroy(&filter);
        bson_destroy(&opts);
        return luaL_error(L, "db:find: filter %s", err);
      }
      lua_pop(L, 1);
    }
  }
  if (lua_istable(L, 4)) {
    static const char *allowed[] = {"projection", "sort", "limit", "skip"};
    for (size_t i = 0; i < 4; i++) {
      if (lua_getfield(L, 4, allowed[i]) != LUA_TNIL &&
          rtu_bson_lua_append(L, -1, &opts, allowed[i], -1, err, sizeof err) != RTU_OK) {
        bson_destroy(&filter);
        bson_destroy(&opts);
        return luaL_error(L, "db:find: option %s: %s", allowed[i], err);
      }
      lua_pop(L, 1);
    }
  }
  if (one) {
    bson_iter_t li;
    if (!bson_iter_init_find(&li, &opts, "limit")) BSON_APPEND_INT64(&opts, "limit", 1);
  }
  lua_newtable(L);
  /* The time limit bounds the script, not MongoDB: the lookup's time is given back. */
  int64_t t0 = rtu_now_mono_ms();
  rtu_err_t rc = s->find(s->find_ctx, coll, &filter, &opts, push_found, L, err, sizeof err);
  if (s->deadline) s->deadline += rtu_now_mono_ms() - t0;
  bson_destroy(&filter);
  bson_destroy(&opts);
  if (rc != RTU_OK) {
    s->find_err = rc;
    snprintf(s->find_errstr, sizeof s->find_errstr, "%s", err);
    return luaL_error(L, "db:find on %s failed: %s", coll, err);
  }
  if (one) {
    lua_rawgeti(L, -1, 1); /* nil when nothing matched, as Lua code expects */
  }
  return 1;
}

static int l_db_find(lua_State *L) { return db_find_impl(L, false); }
static int l_db_find_one(lua_State *L) { return db_find_impl(L, true); }

static void push_db(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushcfunction(L, l_db_find);
  lua_setfield(L, -2, "find");
  lua_pushcfunction(L, l_db_find_one);
  lua_setfield(L, -2, "findOne");
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

static const char *adapter_module(const char *adapter) {
  if (!strcmp(adapter, "golden-gate")) return "golden-gate";
  if (!strcmp(adapter, "debezium")) return "debezium";
  return "basic";
}

/* Builds the casts table: built-ins, overridden by CAST_FUNCTIONS_FOLDER files. */
static bool load_casts(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->L;
  bool ok = true;
  lua_newtable(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.casts");
  copy_fields_and_pop(L);
  for (size_t i = 0; i < s->cfg->nprojections; i++) {
    const rtu_projection_t *p = &s->cfg->projections[i];
    for (size_t j = 0; j < p->nfields; j++) {
      const char *name = p->fields[j].cast;
      char path[4096];
      if (!s->cfg->cast_functions_folder) continue;
      snprintf(path, sizeof path, "%s/%s.lua", s->cfg->cast_functions_folder, name);
      if (!file_exists(path)) continue;
      lua_pushstring(L, path);
      if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TNIL) { /* loaded already */
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
      if (!load_user_function(s, path, problems)) {
        /* Reported already; a placeholder keeps the mapping from also calling it
         * unknown, so `rtu check` goes on to the other files. */
        ok = false;
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, name);
        continue;
      }
      lua_pushstring(L, path);
      lua_pushvalue(L, -2);
      lua_rawset(L, LUA_REGISTRYINDEX);
      lua_setfield(L, -2, name);
    }
  }
  return ok;
}

static bool load_adapter(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->L;
  if (!strcmp(s->cfg->adapter, "custom")) {
    char path[4096];
    snprintf(path, sizeof path, "%s/kafkaMessageAdapter.lua", s->cfg->adapter_folder);
    if (!file_exists(path)) {
      rtu_problems_add(problems, "KAFKA_ADAPTER_FOLDER: %s not found", path);
      return false;
    }
    return load_user_function(s, path, problems);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.adapters");
  lua_getfield(L, -1, adapter_module(s->cfg->adapter));
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    rtu_problems_add(problems, "Lua runtime: adapter '%s' is missing", s->cfg->adapter);
    lua_pop(L, 1);
    return false;
  }
  return true;
}

/* Pushes a Lua sequence of the n strings. */
static void push_strings(lua_State *L, char *const *strings, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, strings[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void push_projection_spec(lua_State *L, const rtu_projection_t *p) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, p->name);
  lua_setfield(L, -2, "name");
  lua_createtable(L, (int)p->nfields, 0);
  for (size_t i = 0; i < p->nfields; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, p->fields[i].src);
    lua_setfield(L, -2, "src");
    lua_pushstring(L, p->fields[i].dst);
    lua_setfield(L, -2, "dst");
    lua_pushstring(L, p->fields[i].cast);
    lua_setfield(L, -2, "cast");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "fields");
  push_strings(L, p->pk_src, p->npk);
  lua_setfield(L, -2, "pk_src");
  push_strings(L, p->pk_dst, p->npk);
  lua_setfield(L, -2, "pk_dst");
}

/* Pushes the decoded JSON file folder/name, or records a problem. */
static bool push_json_file(rtu_script_t *s, const char *folder, const char *name,
                           rtu_problems_t *problems) {
  lua_State *L = s->L;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", folder, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    rtu_problems_add(problems, "%s: cannot read", path);
    return false;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char chunk[4096];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&b, chunk, got);
  fclose(f);
  luaL_pushresult(&b);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "rtu.json");
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_remove(L, -2);
  lua_insert(L, -2);
  if (!pcall_limited(s, 1, 1)) {
    rtu_problems_add(problems, "%s: %s", path, lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  if (!lua_istable(L, -1)) {
    rtu_problems_add(problems, "%s: expected a JSON object", path);
    lua_pop(L, 1);
    return false;
  }
  return true;
}

/* Every *.lua of a folder, loaded as user functions: name -> function. */
static bool push_folder_functions(rtu_script_t *s, const char *folder, rtu_problems_t *problems) {
  lua_State *L = s->L;
  bool ok = true;
  lua_newtable(L);
  if (!folder) return true;
  DIR *d = opendir(folder);
  if (!d) return true;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0 || e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
    if (!load_user_function(s, path, problems)) {
      ok = false;
      continue;
    }
    lua_pushlstring(L, e->d_name, len - 4);
    lua_insert(L, -2);
    lua_settable(L, -3);
  }
  closedir(d);
  return ok;
}

/* Builds rtu.changes for this configuration: identify function and the set of
 * projections involved. */
/* The list of field names at idx, as a NULL-terminated array of copies (an
 * empty list still gives an array: no field is read). */
static bool take_read_fields(lua_State *L, int idx, char ***out, size_t *n) {
  size_t len = (size_t)luaL_len(L, idx);
  char **names = calloc(len + 1, sizeof *names);
  if (!names) return false;
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    const char *f = lua_tostring(L, -1);
    names[i] = strdup(f ? f : "");
    lua_pop(L, 1);
    if (!names[i]) {
      for (size_t j = 0; j < i; j++) free(names[j]);
      free(names);
      return false;
    }
  }
  *out = names;
  *n = len;
  return true;
}

static bool load_strategies(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->L;
  const rtu_config_t *cfg = s->cfg;
  int top = lua_gettop(L);
  bool ok = true;
  if (!require_into_registry(s, "rtu.changes", problems)) return false;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.changes");
  lua_getfield(L, -1, "build");
  lua_remove(L, -2);
  lua_newtable(L); /* spec */
  int spec = lua_gettop(L);
  lua_pushboolean(L, cfg->use_automatic_strategies);
  lua_setfield(L, spec, "automatic");
  lua_newtable(L);
  for (size_t i = 0; i < cfg->nprojections; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, cfg->projections[i].name);
  }
  lua_setfield(L, spec, "projections");
  lua_newtable(L);
  for (size_t i = 0; i < cfg->nprojections; i++) {
    lua_pushstring(L, cfg->projections[i].destination);
    lua_setfield(L, -2, cfg->projections[i].name);
  }
  lua_setfield(L, spec, "collections");
  if (cfg->use_automatic_strategies) {
    if (push_json_file(s, cfg->er_schema_folder, "erSchema.json", problems))
      lua_setfield(L, spec, "er");
    else
      ok = false;
    if (push_json_file(s, cfg->pc_schema_folder, "projectionChangesSchema.json", problems))
      lua_setfield(L, spec, "pc");
    else
      ok = false;
    ok &= push_folder_functions(s, cfg->pc_schema_folder, problems);
    lua_setfield(L, spec, "custom");
  } else {
    lua_newtable(L); /* manual: projection -> bindings */
    for (size_t i = 0; i < cfg->nprojections; i++) {
      const rtu_projection_t *p = &cfg->projections[i];
      lua_newtable(L);
      for (size_t j = 0; j < p->nchanges; j++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.lua",
                 cfg->strategies_folder ? cfg->strategies_folder : ".", p->changes[j].strategy);
        if (!cfg->strategies_folder || !file_exists(path)) {
          rtu_problems_add(problems, "%s/mapTable.json: %s.changes.%s: strategy file %s not found "
                           "(STRATEGIES_FOLDER)", cfg->map_table_folder, p->name,
                           p->changes[j].single_view, path);
          ok = false;
          continue;
        }
        if (!load_user_function(s, path, problems)) {
          ok = false;
          continue;
        }
        lua_createtable(L, 0, 3);
        lua_insert(L, -2);
        lua_setfield(L, -2, "fn");
        lua_pushstring(L, p->changes[j].single_view);
        lua_setfield(L, -2, "sv");
        lua_pushstring(L, p->changes[j].strategy);
        lua_setfield(L, -2, "name");
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
      }
      lua_setfield(L, -2, p->name);
    }
    lua_setfield(L, spec, "manual");
  }
  if (!ok) goto done;
  if (!pcall_limited(s, 1, 2)) {
    rtu_problems_add(problems, "strategies: %s", lua_tostring(L, -1));
    ok = false;
    goto done;
  }
  if (lua_isnil(L, -2)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      rtu_problems_add(problems, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    ok = false;
    goto done;
  }
  s->involved = calloc(cfg->nprojections ? cfg->nprojections : 1, sizeof *s->involved);
  s->read_fields = calloc(cfg->nprojections ? cfg->nprojections : 1, sizeof *s->read_fields);
  if (!s->involved || !s->read_fields) {
    rtu_problems_add(problems, "strategies: out of memory");
    ok = false;
    goto done;
  }
  for (size_t i = 0; i < cfg->nprojections; i++) {
    lua_getfield(L, -1, cfg->projections[i].name);
    s->involved[i] = lua_toboolean(L, -1);
    if (lua_istable(L, -1) && !take_read_fields(L, lua_gettop(L), &s->read_fields[i].names,
                                                &s->read_fields[i].n)) {
      rtu_problems_add(problems, "strategies: out of memory");
      ok = false;
      goto done;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  s->identify_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_db(L);
  s->db_ref = luaL_ref(L, LUA_REGISTRYINDEX);
done:
  lua_settop(L, top);
  return ok;
}

/* The names the core reads from and writes to the pipeline's tables, made Lua
 * strings once: lua_getfield and lua_setfield find a C string in Lua's string
 * cache by strcmp on every call, about twenty per message (1 % of a basic
 * message's time in strcmp alone). names[N_*] are the fixed ones, names[N_COUNT
 * + j] projection j's field destinations then its primary-key destinations. The
 * pipeline's tables have no metatables, so raw access reads what a get would. */
enum { N_KEY = 1, N_VALUE, N_TIMESTAMP, N_OFFSET, N_TOPIC, N_PARTITION, N_HEADERS, N_OP,
       N_OLD_KEY, N_POSITION, N_FIELDS, N_COUNT = N_FIELDS };

static void push_names(lua_State *L, const rtu_config_t *cfg) {
  static const char *fixed[] = {"key",     "value", "timestamp", "offset",   "topic", "partition",
                                "headers", "op",    "old_key",   "position", "fields"};
  lua_createtable(L, N_COUNT + (int)cfg->nprojections, 0);
  for (int i = 0; i < N_COUNT; i++) {
    lua_pushstring(L, fixed[i]);
    lua_rawseti(L, -2, i + 1);
  }
  for (size_t j = 0; j < cfg->nprojections; j++) {
    const rtu_projection_t *p = &cfg->projections[j];
    lua_createtable(L, (int)(p->nfields + p->npk), 0);
    for (size_t i = 0; i < p->nfields; i++) {
      lua_pushstring(L, p->fields[i].dst);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (size_t i = 0; i < p->npk; i++) {
      lua_pushstring(L, p->pk_dst[i]);
      lua_rawseti(L, -2, (lua_Integer)(p->nfields + i) + 1);
    }
    lua_rawseti(L, -2, N_COUNT + (lua_Integer)j + 1);
  }
}

rtu_script_t *rtu_script_new(const rtu_config_t *cfg, rtu_problems_t *problems) {
  size_t before = problems->n;
  rtu_script_t *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->cfg = cfg;
  s->mem_limit = MEMORY_LIMIT;
  s->limit_ms = cfg->strategies_max_exec_ms;
  s->process_ref = s->log_ref = s->identify_ref = s->db_ref = s->message_ref = LUA_NOREF;
  s->names_ref = LUA_NOREF;
  s->L = lua_newstate(l_alloc, s);
  if (!s->L) goto oom;
  lua_State *L = s->L;
  *(rtu_script_t **)lua_getextraspace(L) = s;
  lua_sethook(L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  open_libs(L);

  if (!require_into_registry(s, "rtu.value", problems)) goto done;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.value");
  rtu_bson_lua_bind(L, -1);
  lua_pop(L, 1);
  if (!require_into_registry(s, "rtu.sandbox", problems) || !guard_string_methods(s, problems) ||
      !require_into_registry(s, "rtu.casts", problems) ||
      !require_into_registry(s, "rtu.adapters", problems) ||
      !require_into_registry(s, "rtu.pipeline", problems))
    goto done;

  push_log_table(L);
  s->log_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 7);
  s->message_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_names(L, cfg);
  s->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  /* spec for pipeline.build */
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.pipeline");
  lua_getfield(L, -1, "build");
  lua_remove(L, -2);
  lua_createtable(L, 0, 5);
  lua_createtable(L, (int)cfg->nprojections, 0);
  for (size_t i = 0; i < cfg->nprojections; i++) {
    push_projection_spec(L, &cfg->projections[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "projections");
  load_casts(s, problems); /* problems are collected; the rest is still checked */
  lua_setfield(L, -2, "casts");
  if (!load_adapter(s, problems)) {
    lua_pop(L, 2);
    goto done;
  }
  lua_setfield(L, -2, "adapter");
  lua_pushboolean(L, cfg->use_upsert);
  lua_setfield(L, -2, "use_upsert");
  lua_pushboolean(L, strcmp(cfg->adapter, "golden-gate") || cfg->use_pos_as_counter);
  lua_setfield(L, -2, "use_position");
  if (!pcall_limited(s, 1, 2)) {
    rtu_problems_add(problems, "Lua runtime: rtu.pipeline.build: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    goto done;
  }
  if (lua_isnil(L, -2)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      rtu_problems_add(problems, "%s/%s", cfg->map_table_folder, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    goto done;
  }
  lua_pop(L, 1);
  s->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (cfg->pc_enabled && !load_strategies(s, problems)) goto done;
  lua_gc(L, LUA_GCGEN, 0, 0); /* short-lived per-message tables: generational fits */

done:
  if (problems->n > before) {
    rtu_script_free(s);
    return NULL;
  }
  return s;
oom:
  rtu_problems_add(problems, "Lua: out of memory creating a state");
  rtu_script_free(s);
  return NULL;
}

void rtu_script_free(rtu_script_t *s) {
  if (!s) return;
  if (s->L) lua_close(s->L);
  free(s->involved);
  for (size_t i = 0; s->read_fields && i < s->cfg->nprojections; i++) {
    for (size_t j = 0; j < s->read_fields[i].n; j++) free(s->read_fields[i].names[j]);
    free(s->read_fields[i].names);
  }
  free(s->read_fields);
  free(s->map_kind);
  free(s);
}

/* ---- per message -------------------------------------------------------- */

void rtu_mapped_init(rtu_mapped_t *m) {
  memset(m, 0, sizeof *m);
  bson_init(&m->key);
  bson_init(&m->fields);
  bson_init(&m->old_key);
}

void rtu_mapped_reset(rtu_mapped_t *m) {
  bson_reinit(&m->key);
  bson_reinit(&m->fields);
  bson_reinit(&m->old_key);
  m->skip = m->has_old_key = m->has_position = m->empty_key = false;
  m->position = 0;
  m->op = RTU_OP_UPSERT;
}

void rtu_mapped_destroy(rtu_mapped_t *m) {
  bson_destroy(&m->key);
  bson_destroy(&m->fields);
  bson_destroy(&m->old_key);
}

/* t[names[name]] = the value at the top (popped); t is an absolute index. */
static void set_named(lua_State *L, int t, int names, int name) {
  lua_rawgeti(L, names, name);
  lua_insert(L, -2);
  lua_rawset(L, t);
}

/* Pushes t[names[name]] and returns its type; t is an absolute index. */
static int get_named(lua_State *L, int t, int names, lua_Integer name) {
  lua_rawgeti(L, names, name);
  return lua_rawget(L, t);
}

/* Pushes the message table. reuse_ref: a table refilled for every message
 * instead of a new one (a table and its seven fields per message are garbage
 * the collector pays for), only when the shipped runtime maps: its adapters read
 * the message and keep nothing of it, while user code might. */
static void push_message(lua_State *L, const rtu_msg_t *msg, int reuse_ref, int names) {
  if (reuse_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, reuse_ref);
  else lua_createtable(L, 0, 7);
  int t = lua_gettop(L);
  if (msg->key) lua_pushlstring(L, msg->key, msg->key_len);
  else lua_pushnil(L);
  set_named(L, t, names, N_KEY);
  if (msg->value) lua_pushlstring(L, msg->value, msg->value_len);
  else lua_pushnil(L);
  set_named(L, t, names, N_VALUE);
  lua_pushinteger(L, msg->timestamp);
  set_named(L, t, names, N_TIMESTAMP);
  lua_pushinteger(L, msg->offset);
  set_named(L, t, names, N_OFFSET);
  lua_pushstring(L, msg->topic);
  set_named(L, t, names, N_TOPIC);
  lua_pushinteger(L, msg->partition);
  set_named(L, t, names, N_PARTITION);
  /* Only user code can read them: the shipped adapters never do. */
  const rd_kafka_headers_t *hdrs = reuse_ref == LUA_NOREF ? rtu_msg_headers(msg) : NULL;
  if (hdrs) {
    lua_newtable(L);
    const char *name;
    const void *val;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
      if (val) lua_pushlstring(L, val, size);
      else rtu_bson_lua_push_null(L);
      lua_setfield(L, -2, name);
    }
    set_named(L, t, names, N_HEADERS);
  } else if (reuse_ref != LUA_NOREF) {
    lua_pushnil(L); /* none of the previous message's */
    set_named(L, t, names, N_HEADERS);
  }
}

/* Key fields in fieldsInKey order: the key document must be byte-identical for
 * one record whatever order the script built its table in. pnames: the
 * projection's names (push_names). */
static rtu_err_t take_key(lua_State *L, int tbl, const rtu_projection_t *p, int pnames,
                          bson_t *out, char *errstr, size_t sz) {
  for (size_t i = 0; i < p->npk; i++) {
    get_named(L, tbl, pnames, (lua_Integer)(p->nfields + i) + 1);
    rtu_err_t err = rtu_bson_lua_append(L, -1, out, p->pk_dst[i], -1, errstr, sz);
    lua_pop(L, 1);
    if (err != RTU_OK) return err;
  }
  return RTU_OK;
}

enum { MAP_RUNTIME = 1, MAP_USER = 2 };

/* Whether mapping a message of projection p runs only the shipped runtime (a
 * built-in adapter and built-in casts) or user code too (a custom adapter, or a
 * CAST_FUNCTIONS_FOLDER file, which overrides a built-in of its name: the same
 * test as load_casts). Decided once per projection. */
static bool map_runs_user_code(rtu_script_t *s, size_t projection) {
  const rtu_config_t *cfg = s->cfg;
  if (!s->map_kind) {
    s->map_kind = calloc(cfg->nprojections ? cfg->nprojections : 1, 1);
    if (!s->map_kind) return true; /* the safe answer */
  }
  if (s->map_kind[projection]) return s->map_kind[projection] == MAP_USER;
  const rtu_projection_t *p = &cfg->projections[projection];
  bool user = !strcmp(cfg->adapter, "custom");
  for (size_t j = 0; !user && cfg->cast_functions_folder && j < p->nfields; j++) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s.lua", cfg->cast_functions_folder, p->fields[j].cast);
    user = n < 0 || (size_t)n >= sizeof path || file_exists(path);
  }
  s->map_kind[projection] = user ? MAP_USER : MAP_RUNTIME;
  return user;
}

rtu_err_t rtu_script_map(rtu_script_t *s, size_t projection, const rtu_msg_t *msg,
                         rtu_mapped_t *out, char *errstr, size_t errstr_size) {
  lua_State *L = s->L;
  const rtu_projection_t *p = &s->cfg->projections[projection];
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;

  bool runtime_only = !map_runs_user_code(s, projection);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->names_ref);
  int names = top + 1;
  lua_rawgeti(L, names, N_COUNT + (lua_Integer)projection + 1);
  int pnames = top + 2;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->process_ref);
  lua_pushinteger(L, (lua_Integer)projection + 1);
  push_message(L, msg, runtime_only ? s->message_ref : LUA_NOREF, names);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->log_ref);
  /* A count hook makes Lua 5.4 call into the debug machinery before every VM
   * instruction, whatever the count (about an eighth of a basic message's
   * cost): the shipped runtime needs no time limit, so it runs without. */
  if (runtime_only) lua_sethook(L, NULL, 0, 0);
  bool called = pcall_limited(s, 3, 2);
  if (runtime_only) lua_sethook(L, l_hook, LUA_MASKCOUNT, HOOK_EVERY);
  if (!called) {
    snprintf(errstr, errstr_size, "%s", lua_tostring(L, -1));
    err = s->last_timed_out || s->last_out_of_memory ? RTU_ERR_SCRIPT : RTU_ERR_DATA;
    goto done;
  }
  int chg = pnames + 1;
  if (lua_isnil(L, chg)) {
    out->skip = true;
    snprintf(errstr, errstr_size, "%s", lua_isstring(L, chg + 1) ? lua_tostring(L, chg + 1) : "");
    goto done;
  }
  get_named(L, chg, names, N_OP);
  const char *op = lua_tostring(L, -1);
  if (!op) op = "";
  if (!strcmp(op, "upsert")) out->op = RTU_OP_UPSERT;
  else if (!strcmp(op, "insert")) out->op = RTU_OP_INSERT;
  else if (!strcmp(op, "update")) out->op = RTU_OP_UPDATE;
  else if (!strcmp(op, "delete")) out->op = RTU_OP_DELETE;
  else {
    snprintf(errstr, errstr_size, "pipeline returned unknown op '%s'", op);
    err = RTU_ERR_FATAL;
    goto done;
  }
  lua_pop(L, 1);

  get_named(L, chg, names, N_KEY);
  err = take_key(L, lua_gettop(L), p, pnames, &out->key, errstr, errstr_size);
  lua_pop(L, 1);
  if (err) goto done;

  if (get_named(L, chg, names, N_OLD_KEY) == LUA_TTABLE) {
    out->has_old_key = true;
    err = take_key(L, lua_gettop(L), p, pnames, &out->old_key, errstr, errstr_size);
  }
  lua_pop(L, 1);
  if (err) goto done;

  if (get_named(L, chg, names, N_POSITION) == LUA_TNUMBER) {
    out->has_position = true;
    out->position = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);

  if (out->op != RTU_OP_DELETE) {
    get_named(L, chg, names, N_FIELDS);
    int fields = lua_gettop(L);
    rtu_bson_raw_t raw;
    rtu_bson_raw_init(&raw);
    for (size_t i = 0; i < p->nfields && err == RTU_OK; i++) {
      if (get_named(L, fields, pnames, (lua_Integer)i + 1) != LUA_TNIL)
        err = rtu_bson_lua_raw_append_marked(L, -1, &raw, p->fields[i].dst, &out->empty_key, errstr,
                                          errstr_size);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!rtu_bson_raw_concat(&raw, &out->fields) && err == RTU_OK) {
      snprintf(errstr, errstr_size, "the mapped record is too large for a document");
      err = RTU_ERR_DATA;
    }
  }

done:
  lua_settop(L, top);
  return err;
}

/* ---- strategies --------------------------------------------------------- */

/* Past this much Lua memory after an identify call, its garbage is collected at once. */
#define IDENTIFY_GC_BYTES (4u << 20)

bool rtu_script_has_strategies(const rtu_script_t *s, size_t projection) {
  return s->identify_ref != LUA_NOREF && s->involved && s->involved[projection];
}

bool rtu_script_same_input(const rtu_script_t *s, size_t projection, const bson_t *a,
                           const bson_t *b) {
  if (!s->read_fields || !s->read_fields[projection].names) return false;
  return rtu_bson_raw_same_fields(a, b, s->read_fields[projection].names,
                               s->read_fields[projection].n);
}

bson_t *rtu_script_strategy_copy(const rtu_script_t *s, size_t projection, const bson_t *doc) {
  if (!s->read_fields || !s->read_fields[projection].names) return bson_copy(doc);
  const rtu_projection_t *p = &s->cfg->projections[projection];
  char *const *names = s->read_fields[projection].names;
  size_t n = s->read_fields[projection].n;
  bson_t *out = bson_new();
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return out;
  while (bson_iter_next(&it)) {
    const char *k = bson_iter_key(&it);
    bool keep = false;
    for (size_t i = 0; i < n && !keep; i++) keep = !strcmp(k, names[i]);
    for (size_t i = 0; i < p->npk && !keep; i++) keep = !strcmp(k, p->pk_dst[i]);
    if (keep) bson_append_iter(out, k, (int)bson_iter_key_len(&it), &it);
  }
  return out;
}

void rtu_identified_free(rtu_identified_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(ids[i].type);
    bson_destroy(&ids[i].identifier);
  }
  free(ids);
}

/* bson_t asks for 128-byte alignment, which calloc does not promise. */
static rtu_identified_t *identified_alloc(size_t n) {
  size_t size = n * sizeof(rtu_identified_t);
  rtu_identified_t *ids = aligned_alloc(_Alignof(rtu_identified_t), size);
  if (ids) memset(ids, 0, size);
  return ids;
}

/* Appends the results of an identify call (the table at res) to *ids; origins
 * index the n documents of the run. RTU_ERR_SCRIPT on a malformed result. */
static rtu_err_t take_identified(lua_State *L, int res, size_t n, rtu_identified_t **ids,
                                 size_t *nids, char *errstr, size_t errstr_size) {
  if (!lua_istable(L, res)) return RTU_OK;
  size_t count = (size_t)luaL_len(L, res);
  if (count == 0) return RTU_OK;
  /* Not realloc: a bson_t that outgrew its inline storage points into itself. */
  rtu_identified_t *grown = identified_alloc(*nids + count);
  if (!grown) {
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  for (size_t i = 0; i < *nids; i++) {
    grown[i].type = (*ids)[i].type;
    grown[i].origin = (*ids)[i].origin;
    bson_copy_to(&(*ids)[i].identifier, &grown[i].identifier);
    bson_destroy(&(*ids)[i].identifier);
  }
  free(*ids);
  *ids = grown;
  rtu_err_t err = RTU_OK;
  for (size_t i = 1; i <= count && err == RTU_OK; i++) {
    rtu_identified_t *id = &grown[*nids];
    lua_rawgeti(L, res, (lua_Integer)i);
    lua_getfield(L, -1, "type");
    lua_getfield(L, -2, "identifier");
    lua_getfield(L, -3, "origin");
    if (!lua_isstring(L, -3) || !lua_istable(L, -2)) {
      snprintf(errstr, errstr_size, "strategy result %zu has no type or identifier", i);
      err = RTU_ERR_SCRIPT;
      lua_pop(L, 4);
      break;
    }
    bson_init(&id->identifier);
    bson_t wrap = BSON_INITIALIZER;
    bson_iter_t it, child;
    err = rtu_bson_lua_append(L, -2, &wrap, "i", 1, errstr, errstr_size);
    if (err == RTU_OK && bson_iter_init_find(&it, &wrap, "i") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &child)) {
      while (bson_iter_next(&child)) bson_append_iter(&id->identifier, NULL, 0, &child);
    } else {
      if (err == RTU_OK)
        snprintf(errstr, errstr_size, "strategy result %zu: identifier is not an object", i);
      err = RTU_ERR_SCRIPT;
    }
    bson_destroy(&wrap);
    id->type = strdup(lua_tostring(L, -3));
    lua_Integer origin = lua_tointeger(L, -1);
    id->origin = origin >= 0 && (size_t)origin < n ? (uint32_t)origin : 0;
    (*nids)++; /* freed with the rest, whatever err says */
    lua_pop(L, 4);
    if (!id->type && err == RTU_OK) {
      snprintf(errstr, errstr_size, "out of memory");
      err = RTU_ERR_FATAL;
    }
  }
  return err;
}

/* One identify call under the time limit on docs[from..to), results appended to
 * *ids. The de-duplication table is at seen. */
static rtu_err_t identify_call(rtu_script_t *s, size_t projection, const bson_t *const *docs,
                               size_t from, size_t to, size_t n, int seen, rtu_identified_t **ids,
                               size_t *nids, char *errstr, size_t errstr_size) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->identify_ref);
  lua_pushstring(L, s->cfg->projections[projection].name);
  lua_createtable(L, (int)(to - from), 0);
  for (size_t i = from; i < to; i++) {
    lua_createtable(L, 0, 2);
    if (s->read_fields && s->read_fields[projection].names)
      rtu_bson_lua_push_doc_fields(L, docs[i], s->read_fields[projection].names,
                                s->read_fields[projection].n);
    else
      rtu_bson_lua_push_doc(L, docs[i]);
    lua_setfield(L, -2, "doc");
    lua_pushinteger(L, (lua_Integer)i);
    lua_setfield(L, -2, "origin");
    lua_rawseti(L, -2, (lua_Integer)(i - from) + 1);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->db_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->log_ref);
  lua_pushvalue(L, seen);
  s->find_err = RTU_OK;
  if (!pcall_limited(s, 5, 1)) {
    if (s->find_err == RTU_ERR_TRANSIENT) {
      snprintf(errstr, errstr_size, "%s", s->find_errstr);
      err = RTU_ERR_TRANSIENT;
    } else {
      snprintf(errstr, errstr_size, "%s", lua_tostring(L, -1));
      err = RTU_ERR_SCRIPT;
    }
    goto done;
  }
  err = take_identified(L, lua_gettop(L), n, ids, nids, errstr, errstr_size);
done:
  lua_settop(L, top);
  return err;
}

rtu_err_t rtu_script_identify(rtu_script_t *s, size_t projection, const bson_t *const *docs,
                              const uint32_t *rerun, size_t n, rtu_find_fn find, void *find_ctx,
                              rtu_identified_t **out, size_t *nout, size_t *failed_doc,
                              char *errstr, size_t errstr_size) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;
  rtu_identified_t *ids = NULL;
  size_t nids = 0;
  *out = NULL;
  *nout = 0;
  *failed_doc = n;
  if (!rtu_script_has_strategies(s, projection) || n == 0) return RTU_OK;
  s->find = find;
  s->find_ctx = find_ctx;
  lua_newtable(L);
  err = identify_call(s, projection, docs, 0, n, n, top + 1, &ids, &nids, errstr, errstr_size);
  if (err != RTU_ERR_SCRIPT) goto done;
  /* The batch failed: which document? Each on its own, in order, with its own
   * time limit; the single views of those before the failing one are kept. When
   * none fails alone (the batch as a whole was over the limit), this is the answer. */
  rtu_identified_free(ids, nids);
  ids = NULL;
  nids = 0;
  lua_newtable(L);
  lua_replace(L, top + 1);
  for (size_t r = 0; r < n; r++) {
    size_t i = rerun ? rerun[r] : r, keep = nids;
    err = identify_call(s, projection, docs, i, i + 1, n, top + 1, &ids, &nids, errstr, errstr_size);
    if (err == RTU_ERR_SCRIPT) {
      *failed_doc = i;
      /* a result taken before the failure is good; one of the failing call is not */
      for (size_t j = keep; j < nids; j++) {
        free(ids[j].type);
        bson_destroy(&ids[j].identifier);
      }
      nids = keep;
    }
    if (err != RTU_OK) break;
  }
done:
  s->find = NULL;
  s->find_ctx = NULL;
  lua_settop(L, top);
  /* A merged call over a batch's documents leaves megabytes of lookup answers
   * behind, which the generational collector keeps until its next major cycle:
   * collected now, each worker's heap stays near one call's, not several. */
  if (s->mem_used > IDENTIFY_GC_BYTES) lua_gc(L, LUA_GCCOLLECT);
  if (err == RTU_OK || err == RTU_ERR_SCRIPT) {
    *out = ids;
    *nout = nids;
  } else {
    rtu_identified_free(ids, nids);
  }
  return err;
}
