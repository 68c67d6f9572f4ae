/*
 * script.c: owns the making and freeing of a script generation's Lua state: the
 * sandboxed state (sandbox.c), the runtime modules of lua/, the user's casts
 * and adapter, rtu.pipeline built for the configuration's projections, and (when
 * projection changes are on) the strategies (strategies.c). It reads script
 * files at load, and never talks to Kafka or MongoDB; messages are mapped by
 * script_map.c.
 */
#include "script.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_lua.h"
#include "sandbox.h"
#include "script_map.h"
#include "script_state.h"
#include "strategies.h"

static const char *adapter_module(const char *adapter) {
  if (!strcmp(adapter, "golden-gate")) return "golden-gate";
  if (!strcmp(adapter, "debezium")) return "debezium";
  return "basic";
}

/* Builds the casts table: built-ins, overridden by CAST_FUNCTIONS_FOLDER files. */
static bool load_casts(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  bool ok = true;
  lua_newtable(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.casts");
  rtu_sandbox_copy_fields(L);
  for (size_t i = 0; i < s->cfg->nprojections; i++) {
    const rtu_projection_t *p = &s->cfg->projections[i];
    for (size_t j = 0; j < p->nfields; j++) {
      const char *name = p->fields[j].cast;
      char path[4096];
      if (!s->cfg->cast_functions_folder) continue;
      snprintf(path, sizeof path, "%s/%s.lua", s->cfg->cast_functions_folder, name);
      if (!rtu_script_file_exists(path)) continue;
      lua_pushstring(L, path);
      if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TNIL) { /* loaded already */
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
      if (!rtu_sandbox_load_function(&s->sb, path, problems)) {
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
  lua_State *L = s->sb.L;
  if (!strcmp(s->cfg->adapter, "custom")) {
    char path[4096];
    snprintf(path, sizeof path, "%s/kafkaMessageAdapter.lua", s->cfg->adapter_folder);
    if (!rtu_script_file_exists(path)) {
      rtu_problems_add(problems, "KAFKA_ADAPTER_FOLDER: %s not found", path);
      return false;
    }
    return rtu_sandbox_load_function(&s->sb, path, problems);
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

/* The spec of rtu.pipeline.build for the configuration, pushed, with the casts
 * and the adapter loaded into it. False with the problems recorded (a cast's
 * problems are recorded and the rest still checked). */
static bool push_pipeline_spec(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  const rtu_config_t *cfg = s->cfg;
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
    lua_pop(L, 1);
    return false;
  }
  lua_setfield(L, -2, "adapter");
  lua_pushboolean(L, cfg->use_upsert);
  lua_setfield(L, -2, "use_upsert");
  lua_pushboolean(L, strcmp(cfg->adapter, "golden-gate") || cfg->use_pos_as_counter);
  lua_setfield(L, -2, "use_position");
  lua_pushboolean(L, rtu_config_notes_unmapped(cfg));
  lua_setfield(L, -2, "unmapped");
  return true;
}

/* rtu.pipeline.build for the configuration: its process function at process_ref
 * (and its notes function at notes_ref when unmapped fields are noted). */
static bool build_pipeline(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.pipeline");
  lua_getfield(L, -1, "build");
  lua_remove(L, -2);
  if (!push_pipeline_spec(s, problems)) {
    lua_pop(L, 1);
    return false;
  }
  if (!rtu_sandbox_pcall(&s->sb, 1, 3)) {
    rtu_problems_add(problems, "Lua runtime: rtu.pipeline.build: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  if (lua_isfunction(L, -1)) s->notes_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  if (lua_isnil(L, -2)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      rtu_problems_add(problems, "%s/%s", s->cfg->map_table_folder, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return false;
  }
  lua_pop(L, 1);
  s->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
}

/* The runtime modules, rtu.value bound for the conversions, string methods
 * guarded, and what every mapping call hands over: the log, the reused message
 * table and the names. */
static bool load_runtime(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  if (!rtu_sandbox_require(&s->sb, "rtu.value", problems)) return false;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.value");
  rtu_bson_lua_bind(L, -1);
  lua_pop(L, 1);
  if (!rtu_sandbox_require(&s->sb, "rtu.sandbox", problems) ||
      !rtu_sandbox_guard_strings(&s->sb, problems) ||
      !rtu_sandbox_require(&s->sb, "rtu.casts", problems) ||
      !rtu_sandbox_require(&s->sb, "rtu.adapters", problems) ||
      !rtu_sandbox_require(&s->sb, "rtu.pipeline", problems))
    return false;
  rtu_sandbox_push_log(L);
  s->log_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 7);
  s->message_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rtu_script_map_push_names(L, s->cfg);
  s->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
}

rtu_script_t *rtu_script_new(const rtu_config_t *cfg, rtu_problems_t *problems) {
  size_t before = problems->n;
  rtu_script_t *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->cfg = cfg;
  s->process_ref = s->log_ref = s->identify_ref = s->db_ref = s->message_ref = LUA_NOREF;
  s->names_ref = s->notes_ref = LUA_NOREF;
  s->map_fast_on = true;
  if (!rtu_sandbox_open(&s->sb, cfg->lua_dir, cfg->strategies_max_exec_ms)) goto oom;
  if (load_runtime(s, problems) && build_pipeline(s, problems) &&
      (!cfg->pc_enabled || rtu_strategies_load(s, problems)))
    lua_gc(s->sb.L, LUA_GCGEN, 0, 0); /* short-lived per-message tables: generational fits */
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
  rtu_sandbox_close(&s->sb);
  rtu_strategies_unload(s);
  rtu_script_map_release(s);
  free(s);
}

size_t rtu_script_memory(const rtu_script_t *s) { return s->sb.mem_used; }
