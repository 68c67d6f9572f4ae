/*
 * strategies.c: owns the strategies of a script generation: rtu.changes built
 * from the configuration (the low-code schemas and their custom functions, or
 * the strategy files of mapTable.json), and the identify calls that find the
 * single views a batch of changed documents leads to, with the db object of
 * strategies_db.c for their lookups. It reads the schema and strategy files at
 * load and makes no lookup itself.
 */
#include "strategies.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_lua.h"
#include "bson_raw.h"
#include "sandbox.h"
#include "script_state.h"

/* ---- loading ------------------------------------------------------------ */

/* Pushes the decoded JSON file folder/name, or records a problem. */
static bool push_json_file(rtu_script_t *s, const char *folder, const char *name,
                           rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
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
  if (!rtu_sandbox_pcall(&s->sb, 1, 1)) {
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
  lua_State *L = s->sb.L;
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
    if (!rtu_sandbox_load_function(&s->sb, path, problems)) {
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

/* spec.automatic, spec.projections and spec.collections of rtu.changes.build. */
static void push_spec_common(lua_State *L, const rtu_config_t *cfg, int spec) {
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
}

/* spec.er, spec.pc and spec.custom: the low-code schemas and the functions of
 * their folder. */
static bool spec_automatic(rtu_script_t *s, int spec, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  const rtu_config_t *cfg = s->cfg;
  bool ok = true;
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
  return ok;
}

/* Pushes the binding {fn, sv, name} of projection p's change j (its strategy
 * file loaded); false with the problem recorded. */
static bool push_binding(rtu_script_t *s, const rtu_projection_t *p, size_t j,
                         rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  const rtu_config_t *cfg = s->cfg;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.lua", cfg->strategies_folder ? cfg->strategies_folder : ".",
           p->changes[j].strategy);
  if (!cfg->strategies_folder || !rtu_script_file_exists(path)) {
    rtu_problems_add(problems, "%s/mapTable.json: %s.changes.%s: strategy file %s not found "
                     "(STRATEGIES_FOLDER)", cfg->map_table_folder, p->name,
                     p->changes[j].single_view, path);
    return false;
  }
  if (!rtu_sandbox_load_function(&s->sb, path, problems)) return false;
  lua_createtable(L, 0, 3);
  lua_insert(L, -2);
  lua_setfield(L, -2, "fn");
  lua_pushstring(L, p->changes[j].single_view);
  lua_setfield(L, -2, "sv");
  lua_pushstring(L, p->changes[j].strategy);
  lua_setfield(L, -2, "name");
  return true;
}

/* spec.manual: projection -> the strategies bound to it in mapTable.json. */
static bool spec_manual(rtu_script_t *s, int spec, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  const rtu_config_t *cfg = s->cfg;
  bool ok = true;
  lua_newtable(L);
  for (size_t i = 0; i < cfg->nprojections; i++) {
    const rtu_projection_t *p = &cfg->projections[i];
    lua_newtable(L);
    for (size_t j = 0; j < p->nchanges; j++) {
      if (!push_binding(s, p, j, problems)) {
        ok = false;
        continue;
      }
      lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
    lua_setfield(L, -2, p->name);
  }
  lua_setfield(L, spec, "manual");
  return ok;
}

/* What rtu.changes.build gave (the identify function, the table of what each
 * projection's strategies read and the table of those that run no user code;
 * or nil, the problems): the involved projections, their read fields, which
 * run only the runtime, identify_ref and the db object. */
static bool take_build(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  const rtu_config_t *cfg = s->cfg;
  if (lua_isnil(L, -3)) {
    lua_Integer n = luaL_len(L, -2);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -2, i);
      rtu_problems_add(problems, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    return false;
  }
  s->involved = calloc(cfg->nprojections ? cfg->nprojections : 1, sizeof *s->involved);
  s->pure = calloc(cfg->nprojections ? cfg->nprojections : 1, sizeof *s->pure);
  s->read_fields = calloc(cfg->nprojections ? cfg->nprojections : 1, sizeof *s->read_fields);
  if (!s->involved || !s->pure || !s->read_fields) {
    rtu_problems_add(problems, "strategies: out of memory");
    return false;
  }
  for (size_t i = 0; lua_istable(L, -1) && i < cfg->nprojections; i++) {
    lua_getfield(L, -1, cfg->projections[i].name);
    s->pure[i] = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (size_t i = 0; i < cfg->nprojections; i++) {
    lua_getfield(L, -1, cfg->projections[i].name);
    s->involved[i] = lua_toboolean(L, -1);
    if (lua_istable(L, -1) && !take_read_fields(L, lua_gettop(L), &s->read_fields[i].names,
                                                &s->read_fields[i].n)) {
      rtu_problems_add(problems, "strategies: out of memory");
      return false;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  s->identify_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->db.sb = &s->sb;
  rtu_strategies_db_push(L, &s->db);
  s->db_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
}

bool rtu_strategies_load(rtu_script_t *s, rtu_problems_t *problems) {
  lua_State *L = s->sb.L;
  int top = lua_gettop(L);
  bool ok = true;
  if (!rtu_sandbox_require(&s->sb, "rtu.changes", problems)) return false;
  lua_getfield(L, LUA_REGISTRYINDEX, "rtu.changes");
  lua_getfield(L, -1, "build");
  lua_remove(L, -2);
  lua_newtable(L); /* spec */
  int spec = lua_gettop(L);
  push_spec_common(L, s->cfg, spec);
  if (s->cfg->use_automatic_strategies) ok = spec_automatic(s, spec, problems);
  else ok = spec_manual(s, spec, problems);
  if (ok && !rtu_sandbox_pcall(&s->sb, 1, 3)) {
    rtu_problems_add(problems, "strategies: %s", lua_tostring(L, -1));
    ok = false;
  } else if (ok) {
    ok = take_build(s, problems);
  }
  lua_settop(L, top);
  return ok;
}

void rtu_strategies_unload(rtu_script_t *s) {
  free(s->involved);
  free(s->pure);
  s->pure = NULL;
  for (size_t i = 0; s->read_fields && i < s->cfg->nprojections; i++) {
    for (size_t j = 0; j < s->read_fields[i].n; j++) free(s->read_fields[i].names[j]);
    free(s->read_fields[i].names);
  }
  free(s->read_fields);
  s->involved = NULL;
  s->read_fields = NULL;
}

/* ---- running ------------------------------------------------------------ */

/* Past this much Lua memory after an identify call, its garbage is collected at once. */
#define IDENTIFY_GC_BYTES (4u << 20)

bool rtu_strategies_involved(const rtu_script_t *s, size_t projection) {
  return s->identify_ref != LUA_NOREF && s->involved && s->involved[projection];
}

bool rtu_strategies_same_input(const rtu_script_t *s, size_t projection, const bson_t *a,
                               const bson_t *b) {
  if (!s->read_fields || !s->read_fields[projection].names) return false;
  return rtu_bson_raw_same_fields(a, b, s->read_fields[projection].names,
                                  s->read_fields[projection].n);
}

bool rtu_strategies_whole_docs(const rtu_script_t *s, size_t projection) {
  return !s->read_fields || !s->read_fields[projection].names;
}

/* Whether the element name key (klen bytes, no NUL) is one of names[0..n). */
static bool named(const uint8_t *key, uint32_t klen, char *const *names, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strncmp(names[i], (const char *)key, klen) && names[i][klen] == '\0') return true;
  return false;
}

bson_t *rtu_strategies_copy_input(const rtu_script_t *s, size_t projection, const bson_t *doc) {
  if (!s->read_fields || !s->read_fields[projection].names) return bson_copy(doc);
  const rtu_projection_t *p = &s->cfg->projections[projection];
  char *const *names = s->read_fields[projection].names;
  size_t n = s->read_fields[projection].n;
  /* read in place and copied as bytes: a document each of a run's records, a
   * libbson iterator and appender call per field were most of this */
  const uint8_t *data = bson_get_data(doc), *key;
  uint32_t off = 4, next, klen;
  rtu_bson_raw_t raw;
  rtu_bson_raw_init(&raw);
  for (; rtu_bson_raw_element(data, doc->len, &off, &key, &klen, &next); off = next)
    if (named(key, klen, names, n) || named(key, klen, p->pk_dst, p->npk))
      rtu_bson_raw_bytes(&raw, data + off, next - off);
  bson_t *out = bson_new();
  rtu_bson_raw_concat(&raw, out);
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
  lua_State *L = s->sb.L;
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
  s->db.find_err = RTU_OK;
  /* A walk that runs no user code needs no time limit: without the hook's cost,
   * as the shipped runtime maps messages (see docs/performance.md). */
  bool pure = s->pure && s->pure[projection];
  if (pure) rtu_sandbox_set_hook(&s->sb, false);
  bool called = rtu_sandbox_pcall(&s->sb, 5, 1);
  if (pure) rtu_sandbox_set_hook(&s->sb, true);
  if (!called) {
    if (s->db.find_err == RTU_ERR_TRANSIENT) {
      snprintf(errstr, errstr_size, "%s", s->db.find_errstr);
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

rtu_err_t rtu_strategies_identify(rtu_script_t *s, size_t projection, const bson_t *const *docs,
                                  const uint32_t *rerun, size_t n, rtu_find_fn find,
                                  void *find_ctx, rtu_identified_t **out, size_t *nout,
                                  size_t *failed_doc, char *errstr, size_t errstr_size) {
  lua_State *L = s->sb.L;
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;
  rtu_identified_t *ids = NULL;
  size_t nids = 0;
  *out = NULL;
  *nout = 0;
  *failed_doc = n;
  if (!rtu_strategies_involved(s, projection) || n == 0) return RTU_OK;
  s->db.find = find;
  s->db.find_ctx = find_ctx;
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
  s->db.find = NULL;
  s->db.find_ctx = NULL;
  lua_settop(L, top);
  /* A merged call over a batch's documents leaves megabytes of lookup answers
   * behind, which the generational collector keeps until its next major cycle:
   * collected now, each worker's heap stays near one call's, not several. */
  if (s->sb.mem_used > IDENTIFY_GC_BYTES) lua_gc(L, LUA_GCCOLLECT);
  if (err == RTU_OK || err == RTU_ERR_SCRIPT) {
    *out = ids;
    *nout = nids;
  } else {
    rtu_identified_free(ids, nids);
  }
  return err;
}
