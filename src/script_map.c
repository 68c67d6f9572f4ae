/*
 * script_map.c: owns the mapping of one message in a script generation's state:
 * the message handed to rtu.pipeline's process function (adapter, mapping and
 * casts run in Lua), and its result taken back into C as the normalised change
 * (rtu_mapped_t: operation, key, old key, position, fields as BSON). It calls
 * no I/O and keeps nothing of a message once the call returns.
 */
#include "script_map.h"

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_lua.h"
#include "bson_raw.h"
#include "json_lua.h"
#include "map_fast.h"
#include "script_state.h"
#include "store.h"

/* The names the core reads from and writes to the pipeline's tables, made Lua
 * strings once: lua_getfield and lua_setfield find a C string in Lua's string
 * cache by strcmp on every call, about twenty per message (see
 * docs/performance.md). names[N_*] are the fixed ones, names[N_COUNT
 * + j] projection j's field destinations then its primary-key destinations. The
 * pipeline's tables have no metatables, so raw access reads what a get would. */
enum { N_KEY = 1, N_VALUE, N_TIMESTAMP, N_OFFSET, N_TOPIC, N_PARTITION, N_HEADERS, N_OP,
       N_OLD_KEY, N_POSITION, N_FIELDS, N_COUNT = N_FIELDS };

void rtu_script_map_push_names(lua_State *L, const rtu_config_t *cfg) {
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
  m->skip = m->has_old_key = m->has_position = m->has_timestamp = m->empty_key = false;
  m->position = m->timestamp = 0;
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
    int n = snprintf(path, sizeof path, "%s/%s.lua", cfg->cast_functions_folder,
                     p->fields[j].cast);
    user = n < 0 || (size_t)n >= sizeof path || rtu_script_file_exists(path);
  }
  s->map_kind[projection] = user ? MAP_USER : MAP_RUNTIME;
  return user;
}

static void release_fast(rtu_script_t *s);

/* The registry reference of the user's cast function of field j of p (loaded
 * by script.c's load_casts under its path), LUA_NOREF when the field's cast is
 * not a CAST_FUNCTIONS_FOLDER file. */
static int user_cast_ref(rtu_script_t *s, const rtu_projection_t *p, size_t j) {
  const char *folder = s->cfg->cast_functions_folder;
  char path[4096];
  if (!folder) return LUA_NOREF;
  int n = snprintf(path, sizeof path, "%s/%s.lua", folder, p->fields[j].cast);
  if (n < 0 || (size_t)n >= sizeof path || !rtu_script_file_exists(path)) return LUA_NOREF;
  lua_State *L = s->sb.L;
  lua_pushstring(L, path);
  if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return LUA_REFNIL; /* not loaded (a problem reported): never the C path */
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The C path's plan for projection p, NULL when its messages all go through
 * Lua: an adapter but the built-in debezium and basic ones (a user's could see the
 * difference), notes of unmapped fields (the pipeline's), or a mapping
 * map_fast.c does not run. The user's
 * casts are called from C with what the pipeline would give them. Decided once
 * per projection. */
static const rtu_map_fast_t *fast_plan(rtu_script_t *s, size_t projection) {
  const rtu_config_t *cfg = s->cfg;
  if (!s->map_fast_on || s->notes_ref != LUA_NOREF ||
      (strcmp(cfg->adapter, "debezium") && strcmp(cfg->adapter, "basic") &&
       strcmp(cfg->adapter, "db2")))
    return NULL;
  if (!s->map_fast) {
    s->map_fast = calloc(cfg->nprojections, sizeof *s->map_fast);
    s->map_fast_refs = calloc(cfg->nprojections, sizeof *s->map_fast_refs);
    s->map_fast_tried = calloc(cfg->nprojections, 1);
    if (!s->map_fast || !s->map_fast_refs || !s->map_fast_tried) {
      release_fast(s);
      return NULL; /* the Lua path maps everything */
    }
  }
  if (s->map_fast_tried[projection]) return s->map_fast[projection];
  s->map_fast_tried[projection] = 1;
  const rtu_projection_t *p = &cfg->projections[projection];
  int *refs = malloc((p->nfields ? p->nfields : 1) * sizeof *refs);
  bool *user = calloc(p->nfields ? p->nfields : 1, sizeof *user);
  bool loaded = refs && user;
  for (size_t j = 0; loaded && j < p->nfields; j++) {
    refs[j] = user_cast_ref(s, p, j);
    user[j] = refs[j] != LUA_NOREF;
    loaded = refs[j] != LUA_REFNIL;
  }
  if (loaded) s->map_fast[projection] = rtu_map_fast_plan(cfg, p, user);
  free(user);
  s->map_fast_refs[projection] = refs; /* released with the plans */
  return s->map_fast[projection];
}

typedef struct {
  rtu_script_t *s;
  size_t projection;
  int pnames; /* stack index of the projection's names (push_names) */
} cast_ctx_t;

/* rtu_map_fast's call of a user's cast, as the pipeline's generated mapping
 * makes it: C(value, fieldName, log), nil taken as null, under the time limit. */
static bool call_user_cast(void *ctx, size_t field, const char *text, size_t len,
                           rtu_bson_raw_t *out, bool *empty_key) {
  cast_ctx_t *c = ctx;
  rtu_script_t *s = c->s;
  lua_State *L = s->sb.L;
  int top = lua_gettop(L);
  const char *dst = s->cfg->projections[c->projection].fields[field].dst;
  char err[RTU_ERRSTR_SIZE];
  bool ok = false;
  if (!lua_checkstack(L, 8)) return false;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->map_fast_refs[c->projection][field]);
  if (!rtu_json_lua_push_strict(L, text, len, 0)) goto done;
  lua_rawgeti(L, c->pnames, (lua_Integer)field + 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->log_ref);
  if (!rtu_sandbox_pcall(&s->sb, 3, 1)) goto done;
  ok = lua_isnil(L, -1) ? (rtu_bson_raw_head(out, BSON_TYPE_NULL, dst), *empty_key |= !dst[0], true)
                        : rtu_bson_lua_raw_append_marked(L, -1, out, dst, empty_key, err,
                                                         sizeof err) == RTU_OK;
done:
  lua_settop(L, top);
  return ok;
}

static void release_fast(rtu_script_t *s) {
  for (size_t i = 0; i < s->cfg->nprojections; i++) {
    if (s->map_fast) rtu_map_fast_free(s->map_fast[i]);
    if (s->map_fast_refs) free(s->map_fast_refs[i]);
  }
  free(s->map_fast);
  free(s->map_fast_refs);
  free(s->map_fast_tried);
  s->map_fast = NULL;
  s->map_fast_refs = NULL;
  s->map_fast_tried = NULL;
}

void rtu_script_map_set_fast(rtu_script_t *s, bool on) { s->map_fast_on = on; }

uint64_t rtu_script_map_fast_count(const rtu_script_t *s) { return s->map_fast_count; }

void rtu_script_map_release(rtu_script_t *s) {
  release_fast(s);
  free(s->map_kind);
  s->map_kind = NULL;
}

/* The operation of the change at chg into out->op; RTU_ERR_FATAL for one the
 * pipeline cannot return. */
static rtu_err_t take_op(lua_State *L, int chg, int names, rtu_mapped_t *out, char *errstr,
                         size_t errstr_size) {
  get_named(L, chg, names, N_OP);
  const char *op = lua_tostring(L, -1);
  if (!op) op = "";
  rtu_err_t err = RTU_OK;
  if (!strcmp(op, "upsert")) out->op = RTU_OP_UPSERT;
  else if (!strcmp(op, "insert")) out->op = RTU_OP_INSERT;
  else if (!strcmp(op, "update")) out->op = RTU_OP_UPDATE;
  else if (!strcmp(op, "delete")) out->op = RTU_OP_DELETE;
  else {
    snprintf(errstr, errstr_size, "pipeline returned unknown op '%s'", op);
    err = RTU_ERR_FATAL;
  }
  lua_pop(L, 1);
  return err;
}

/* The mapped fields of the change at chg, in the projection's order, into
 * out->fields. */
static rtu_err_t take_fields(lua_State *L, int chg, int names, const rtu_projection_t *p,
                             int pnames, rtu_mapped_t *out, char *errstr, size_t errstr_size) {
  rtu_err_t err = RTU_OK;
  get_named(L, chg, names, N_FIELDS);
  int fields = lua_gettop(L);
  rtu_bson_raw_t raw;
  rtu_bson_raw_init(&raw);
  for (size_t i = 0; i < p->nfields && err == RTU_OK; i++) {
    if (get_named(L, fields, pnames, (lua_Integer)i + 1) != LUA_TNIL)
      err = rtu_bson_lua_raw_append_marked(L, -1, &raw, p->fields[i].dst, &out->empty_key,
                                           errstr, errstr_size);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!rtu_bson_raw_concat(&raw, &out->fields) && err == RTU_OK) {
    snprintf(errstr, errstr_size, "the mapped record is too large for a document");
    err = RTU_ERR_DATA;
  }
  return err;
}

/* The change at chg (a table the pipeline returned) into out. */
static rtu_err_t take_change(lua_State *L, int chg, int names, const rtu_projection_t *p,
                             int pnames, rtu_mapped_t *out, char *errstr, size_t errstr_size) {
  rtu_err_t err = take_op(L, chg, names, out, errstr, errstr_size);
  if (err) return err;

  get_named(L, chg, names, N_KEY);
  err = take_key(L, lua_gettop(L), p, pnames, &out->key, errstr, errstr_size);
  lua_pop(L, 1);
  if (err) return err;

  if (get_named(L, chg, names, N_OLD_KEY) == LUA_TTABLE) {
    out->has_old_key = true;
    err = take_key(L, lua_gettop(L), p, pnames, &out->old_key, errstr, errstr_size);
  }
  lua_pop(L, 1);
  if (err) return err;

  if (get_named(L, chg, names, N_POSITION) == LUA_TNUMBER) {
    out->has_position = true;
    out->position = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);

  /* the message's "timestamp" name serves the change's too */
  if (get_named(L, chg, names, N_TIMESTAMP) == LUA_TNUMBER) {
    out->has_timestamp = true;
    out->timestamp = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);

  if (out->op == RTU_OP_DELETE) return RTU_OK;
  return take_fields(L, chg, names, p, pnames, out, errstr, errstr_size);
}

rtu_err_t rtu_script_map(rtu_script_t *s, size_t projection, const rtu_msg_t *msg,
                         rtu_mapped_t *out, char *errstr, size_t errstr_size) {
  lua_State *L = s->sb.L;
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;

  bool runtime_only = !map_runs_user_code(s, projection);
  const rtu_map_fast_t *fast = fast_plan(s, projection);
  if (fast) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->names_ref);
    lua_rawgeti(L, -1, N_COUNT + (lua_Integer)projection + 1);
    cast_ctx_t ctx = {s, projection, lua_gettop(L)};
    bool mapped = rtu_map_fast(fast, msg, out, call_user_cast, &ctx);
    lua_settop(L, top);
    if (mapped) {
      s->map_fast_count++;
      return RTU_OK;
    }
    rtu_mapped_reset(out); /* the Lua path decides, from the start */
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->names_ref);
  int names = top + 1;
  lua_rawgeti(L, names, N_COUNT + (lua_Integer)projection + 1);
  int pnames = top + 2;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->process_ref);
  lua_pushinteger(L, (lua_Integer)projection + 1);
  push_message(L, msg, runtime_only ? s->message_ref : LUA_NOREF, names);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->log_ref);
  /* The shipped runtime needs no time limit, so it runs without the hook's
   * cost (see rtu_sandbox_set_hook). */
  if (runtime_only) rtu_sandbox_set_hook(&s->sb, false);
  bool called = rtu_sandbox_pcall(&s->sb, 3, 2);
  if (runtime_only) rtu_sandbox_set_hook(&s->sb, true);
  int chg = pnames + 1;
  if (!called) {
    snprintf(errstr, errstr_size, "%s", lua_tostring(L, -1));
    err = s->sb.last_timed_out || s->sb.last_out_of_memory ? RTU_ERR_SCRIPT : RTU_ERR_DATA;
  } else if (lua_isnil(L, chg)) {
    out->skip = true;
    snprintf(errstr, errstr_size, "%s", lua_isstring(L, chg + 1) ? lua_tostring(L, chg + 1) : "");
  } else {
    err = take_change(L, chg, names, &s->cfg->projections[projection], pnames, out, errstr,
                      errstr_size);
  }
  lua_settop(L, top);
  return err;
}

/* One entry of the pipeline's notes (the table at the top) into u. */
static rtu_err_t take_note(lua_State *L, rtu_unmapped_t *u, char *errstr, size_t errstr_size) {
  int e = lua_gettop(L);
  lua_getfield(L, e, "type");
  const char *type = lua_tostring(L, -1);
  u->type = type && !strcmp(type, "UNKNOWN_FIELD") ? "UNKNOWN_FIELD" : "UNCASTABLE_FIELD";
  lua_getfield(L, e, "field");
  const char *field = lua_tostring(L, -1);
  u->field = strdup(field ? field : "");
  lua_getfield(L, e, "topic");
  const char *topic = lua_tostring(L, -1);
  u->topic = strdup(topic ? topic : "");
  lua_getfield(L, e, "count");
  u->count = lua_tointeger(L, -1);
  lua_getfield(L, e, "partition");
  u->partition = (int32_t)lua_tointeger(L, -1);
  lua_getfield(L, e, "offset");
  u->offset = lua_tointeger(L, -1);
  lua_getfield(L, e, "value");
  u->sample = bson_new();
  if (!u->field || !u->topic || !u->sample) {
    lua_settop(L, e);
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  /* A value that has no BSON form (it cannot come from JSON) is recorded as null. */
  char ignored[RTU_ERRSTR_SIZE];
  if (lua_isnil(L, -1) ||
      rtu_bson_lua_append(L, -1, u->sample, "value", -1, ignored, sizeof ignored) != RTU_OK) {
    bson_reinit(u->sample);
    BSON_APPEND_NULL(u->sample, "value");
  }
  lua_settop(L, e);
  return RTU_OK;
}

rtu_err_t rtu_script_map_notes(rtu_script_t *s, size_t projection, rtu_unmapped_t **out,
                               size_t *n, char *errstr, size_t errstr_size) {
  *out = NULL;
  *n = 0;
  if (s->notes_ref == LUA_NOREF) return RTU_OK;
  lua_State *L = s->sb.L;
  int top = lua_gettop(L);
  rtu_err_t err = RTU_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->notes_ref);
  lua_pushinteger(L, (lua_Integer)projection + 1);
  if (!rtu_sandbox_pcall(&s->sb, 1, 1)) {
    snprintf(errstr, errstr_size, "unmapped fields: %s", lua_tostring(L, -1));
    err = RTU_ERR_FATAL;
    goto done;
  }
  size_t len = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
  if (len == 0) goto done;
  rtu_unmapped_t *u = calloc(len, sizeof *u);
  if (!u) {
    snprintf(errstr, errstr_size, "out of memory");
    err = RTU_ERR_FATAL;
    goto done;
  }
  size_t i = 0;
  for (; i < len && err == RTU_OK; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    if (lua_istable(L, -1)) err = take_note(L, &u[i], errstr, errstr_size);
    lua_pop(L, 1);
  }
  if (err != RTU_OK) {
    rtu_unmapped_free(u, i);
    goto done;
  }
  *out = u;
  *n = len;
done:
  lua_settop(L, top);
  return err;
}
