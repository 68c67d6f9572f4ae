/*
 * store_memory.c: the in-memory implementation of store.h for `rtu test`. It
 * owns its collections (BSON documents in insertion order) and a private Lua
 * state in which rtu.matcher answers every query: the filters batch.c, stage.c
 * and strategies send, with MongoDB's matching rules, an operator it does not
 * know being an error that names it (never a silent non-match).
 *
 * Writes follow what store_mongo.c reports for the same bulk: an update or
 * replacement whose guard excludes the stored record, upserting, meets the
 * primary key of that record and is STALE (MongoDB's duplicate key on
 * mia_primary_key_index); an update without upsert that matches nothing is
 * DONE, as MongoDB's matched 0 is. It decides no policy and is never used by
 * `rtu run`.
 */
#include "store_memory.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_lua.h"
#include "json_module.h"
#include "util.h"

typedef struct {
  char *name;
  bson_t **docs;
  size_t n, cap;
} coll_t;

typedef struct {
  rtu_store_t base; /* first: the handle batch.c and stage.c hold */
  const rtu_config_t *cfg;
  lua_State *L;
  int find_ref; /* function(docs, filter, options) -> positions, documents */
  coll_t *colls;
  size_t ncolls, cap;
  rtu_store_stats_t stats;
  rtu_store_trace_fn trace;
  void *trace_ctx;
} memory_t;

static const rtu_store_ops_t memory_ops;

/* Positions of the documents found (0 for a projected copy), and the documents. */
static const char FIND_CHUNK[] =
    "local matcher = require('rtu.matcher')\n"
    "return function(docs, filter, options)\n"
    "  local found = matcher.find(docs, filter, options)\n"
    "  local pos, out = {}, {}\n"
    "  for i, d in ipairs(docs) do pos[d] = i end\n"
    "  for i, d in ipairs(found) do out[i] = pos[d] or 0 end\n"
    "  return out, found\n"
    "end\n";

static bool open_lua(memory_t *st, char *errstr, size_t sz) {
  lua_State *L = st->L = luaL_newstate();
  if (!L) {
    snprintf(errstr, sz, "out of memory");
    return false;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", st->cfg->lua_dir, st->cfg->lua_dir);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, rtu_json_module_open);
  lua_setfield(L, -2, "rtu.json");
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushstring(L, "rtu.value");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) goto fail;
  rtu_bson_lua_bind(L, -1);
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, FIND_CHUNK, sizeof FIND_CHUNK - 1, "=store_memory") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    goto fail;
  st->find_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
fail:
  snprintf(errstr, sz, "in-memory store: %s", lua_tostring(L, -1));
  return false;
}

rtu_store_t *rtu_store_memory_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  memory_t *st = calloc(1, sizeof *st);
  if (!st) {
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
  }
  st->base.ops = &memory_ops;
  st->cfg = cfg;
  if (!open_lua(st, errstr, errstr_size)) {
    if (st->L) lua_close(st->L);
    free(st);
    return NULL;
  }
  return &st->base;
}

static void memory_free(rtu_store_t *handle) {
  memory_t *st = (memory_t *)handle;
  for (size_t c = 0; c < st->ncolls; c++) {
    for (size_t i = 0; i < st->colls[c].n; i++) bson_destroy(st->colls[c].docs[i]);
    free(st->colls[c].docs);
    free(st->colls[c].name);
  }
  free(st->colls);
  lua_close(st->L);
  free(st);
}

static coll_t *get_coll(memory_t *st, const char *name, bool create) {
  for (size_t c = 0; c < st->ncolls; c++)
    if (!strcmp(st->colls[c].name, name)) return &st->colls[c];
  if (!create) return NULL;
  if (st->ncolls == st->cap) {
    size_t cap = st->cap ? 2 * st->cap : 8;
    coll_t *colls = realloc(st->colls, cap * sizeof *colls);
    if (!colls) return NULL;
    st->colls = colls;
    st->cap = cap;
  }
  coll_t *c = &st->colls[st->ncolls];
  *c = (coll_t){.name = strdup(name)};
  if (!c->name) return NULL;
  st->ncolls++;
  return c;
}

/* Takes doc (heap-allocated) into c. */
static bool coll_add(coll_t *c, bson_t *doc) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    bson_t **docs = realloc(c->docs, cap * sizeof *docs);
    if (!docs) return false;
    c->docs = docs;
    c->cap = cap;
  }
  c->docs[c->n++] = doc;
  return true;
}

static void coll_remove(coll_t *c, size_t i) {
  bson_destroy(c->docs[i]);
  memmove(&c->docs[i], &c->docs[i + 1], (c->n - i - 1) * sizeof *c->docs);
  c->n--;
}

/* A copy of doc with an _id first when it has none. */
static bson_t *with_id(const bson_t *doc) {
  if (bson_has_field(doc, "_id")) return bson_copy(doc);
  bson_t *out = bson_new();
  bson_oid_t oid;
  bson_oid_init(&oid, NULL);
  BSON_APPEND_OID(out, "_id", &oid);
  bson_concat(out, doc);
  return out;
}

rtu_err_t rtu_store_memory_insert(rtu_store_t *handle, const char *collection, const bson_t *doc,
                                  char *errstr, size_t errstr_size) {
  memory_t *st = (memory_t *)handle;
  coll_t *c = get_coll(st, collection, true);
  bson_t *copy = c ? with_id(doc) : NULL;
  if (!copy || !coll_add(c, copy)) {
    if (copy) bson_destroy(copy);
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  return RTU_OK;
}

void rtu_store_memory_each(rtu_store_t *handle, const char *collection, rtu_store_each_fn fn,
                           void *ctx) {
  coll_t *c = get_coll((memory_t *)handle, collection, false);
  for (size_t i = 0; c && i < c->n; i++) fn(ctx, c->docs[i]);
}

void rtu_store_memory_set_trace(rtu_store_t *handle, rtu_store_trace_fn fn, void *ctx) {
  memory_t *st = (memory_t *)handle;
  st->trace = fn;
  st->trace_ctx = ctx;
}

/* ---- queries --------------------------------------------------------------- */

/* The options for rtu.matcher: a sort of several fields as an array of pairs,
 * since a Lua table keeps no key order. */
static void push_options(lua_State *L, const bson_t *opts) {
  if (!opts) {
    lua_newtable(L);
    return;
  }
  rtu_bson_lua_push_doc(L, opts);
  bson_iter_t it, sub;
  if (!bson_iter_init_find(&it, opts, "sort") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
      !bson_iter_recurse(&it, &sub))
    return;
  lua_newtable(L);
  lua_Integer k = 0;
  while (bson_iter_next(&sub)) {
    lua_createtable(L, 2, 0);
    lua_pushstring(L, bson_iter_key(&sub));
    lua_rawseti(L, -2, 1);
    rtu_bson_lua_push_iter(L, &sub);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++k);
  }
  lua_setfield(L, -2, "sort");
}

/* The documents of c matching filter (with opts), in *found (copies, the
 * caller destroys them) and their positions in *pos (-1 for a projected copy).
 * RTU_ERR_DATA with rtu.matcher's message for a filter it refuses. */
static rtu_err_t query(memory_t *st, coll_t *c, const bson_t *filter, const bson_t *opts,
                       bson_t ***found, ssize_t **pos, size_t *n, char *errstr, size_t sz) {
  lua_State *L = st->L;
  int top = lua_gettop(L);
  rtu_err_t rc = RTU_OK;
  *found = NULL;
  *pos = NULL;
  *n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->find_ref);
  size_t ndocs = c ? c->n : 0;
  lua_createtable(L, (int)ndocs, 0);
  for (size_t i = 0; i < ndocs; i++) {
    rtu_bson_lua_push_doc(L, c->docs[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  rtu_bson_lua_push_doc(L, filter);
  push_options(L, opts);
  if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
    snprintf(errstr, sz, "%s", lua_tostring(L, -1));
    rc = RTU_ERR_DATA;
    goto done;
  }
  size_t m = (size_t)luaL_len(L, -2);
  *found = calloc(m ? m : 1, sizeof **found);
  *pos = calloc(m ? m : 1, sizeof **pos);
  if (!*found || !*pos) {
    snprintf(errstr, sz, "out of memory");
    rc = RTU_ERR_FATAL;
    goto done;
  }
  for (size_t i = 0; i < m; i++) {
    lua_rawgeti(L, -2, (lua_Integer)i + 1);
    lua_Integer p = lua_tointeger(L, -1);
    lua_pop(L, 1);
    (*pos)[i] = p > 0 ? (ssize_t)p - 1 : -1;
    if (p > 0) {
      (*found)[i] = bson_copy(c->docs[p - 1]);
    } else {
      /* a projection: the new table back as a document */
      bson_t wrap = BSON_INITIALIZER;
      bson_iter_t it;
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      rc = rtu_bson_lua_append(L, -1, &wrap, "d", 1, errstr, sz);
      lua_pop(L, 1);
      if (rc == RTU_OK && bson_iter_init_find(&it, &wrap, "d") &&
          BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *data;
        uint32_t len;
        bson_iter_document(&it, &len, &data);
        (*found)[i] = bson_new_from_data(data, len);
      } else {
        (*found)[i] = bson_new();
      }
      bson_destroy(&wrap);
      if (rc != RTU_OK) goto done;
    }
    (*n)++;
  }
done:
  lua_settop(L, top);
  return rc;
}

static void free_found(bson_t **found, ssize_t *pos, size_t n) {
  for (size_t i = 0; found && i < n; i++) bson_destroy(found[i]);
  free(found);
  free(pos);
}

/* The position of the first document of c matching filter, -1 when none. */
static rtu_err_t find_one(memory_t *st, coll_t *c, const bson_t *filter, ssize_t *at,
                          char *errstr, size_t sz) {
  bson_t **found;
  ssize_t *pos;
  size_t n;
  *at = -1;
  rtu_err_t rc = query(st, c, filter, NULL, &found, &pos, &n, errstr, sz);
  if (rc == RTU_OK && n > 0) *at = pos[0];
  free_found(found, pos, n);
  return rc;
}

static rtu_err_t memory_ping(rtu_store_t *handle, char *errstr, size_t errstr_size) {
  (void)handle, (void)errstr, (void)errstr_size;
  return RTU_OK;
}

static rtu_err_t memory_ensure_indexes(rtu_store_t *handle, char *errstr, size_t errstr_size) {
  (void)handle, (void)errstr, (void)errstr_size;
  return RTU_OK; /* the primary key's uniqueness is checked by each upsert */
}

static rtu_err_t memory_find(rtu_store_t *handle, const char *collection, const bson_t *filter,
                             const bson_t *opts, rtu_store_each_fn fn, void *ctx, char *errstr,
                             size_t errstr_size) {
  memory_t *st = (memory_t *)handle;
  bson_t **found;
  ssize_t *pos;
  size_t n;
  bson_t empty = BSON_INITIALIZER;
  rtu_err_t rc = query(st, get_coll(st, collection, false), filter ? filter : &empty, opts,
                       &found, &pos, &n, errstr, errstr_size);
  st->stats.commands++;
  st->stats.lookups++;
  if (rc == RTU_OK) {
    if (st->trace) st->trace(st->trace_ctx, collection, filter ? filter : &empty, opts, found, n);
    for (size_t i = 0; i < n; i++) fn(ctx, found[i]);
  }
  free_found(found, pos, n);
  return rc;
}

static rtu_err_t memory_find_keys(rtu_store_t *handle, const rtu_projection_t *p,
                                  bson_t *const *keys, size_t n, rtu_store_each_fn fn, void *ctx,
                                  char *errstr, size_t errstr_size) {
  memory_t *st = (memory_t *)handle;
  if (n == 0) return RTU_OK;
  bson_t filter = BSON_INITIALIZER;
  rtu_store_keys_filter(p, keys, n, &filter);
  bson_t **found;
  ssize_t *pos;
  size_t m;
  rtu_err_t rc = query(st, get_coll(st, p->destination, false), &filter, NULL, &found, &pos, &m,
                       errstr, errstr_size);
  st->stats.commands++;
  if (rc == RTU_OK)
    for (size_t i = 0; i < m; i++) fn(ctx, found[i]);
  free_found(found, pos, m);
  bson_destroy(&filter);
  return rc;
}

/* ---- writes ----------------------------------------------------------------- */

/* The equality fields of filter (no operator, no operator document), as an
 * upsert inserts them. */
static void append_equalities(bson_t *out, const bson_t *filter) {
  bson_iter_t it, sub;
  if (!bson_iter_init(&it, filter)) return;
  while (bson_iter_next(&it)) {
    const char *k = bson_iter_key(&it);
    if (k[0] == '$' || strchr(k, '.')) continue;
    if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) && bson_iter_next(&sub) &&
        bson_iter_key(&sub)[0] == '$')
      continue;
    if (!bson_has_field(out, k)) bson_append_iter(out, k, -1, &it);
  }
}

/* old with the fields of set replaced in place and the others appended. */
static bson_t *apply_set(const bson_t *old, const bson_t *set) {
  bson_t *out = bson_new();
  bson_iter_t it, f;
  if (bson_iter_init(&it, old))
    while (bson_iter_next(&it)) {
      const char *k = bson_iter_key(&it);
      if (bson_iter_init_find(&f, set, k)) bson_append_iter(out, k, -1, &f);
      else bson_append_iter(out, k, -1, &it);
    }
  if (bson_iter_init(&it, set))
    while (bson_iter_next(&it))
      if (!bson_has_field(out, bson_iter_key(&it))) bson_append_iter(out, NULL, 0, &it);
  return out;
}

static bool sub_doc(const bson_t *doc, const char *key, bson_t *out) {
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DOCUMENT(&it)) return false;
  bson_iter_document(&it, &len, &data);
  return bson_init_static(out, data, len);
}

/* An upsert that matched nothing: the record of the same primary key, if stored,
 * makes it STALE (MongoDB's duplicate key on mia_primary_key_index). */
static rtu_err_t upsert_insert(memory_t *st, coll_t *c, const rtu_projection_t *p,
                               rtu_write_t *w, char *errstr, size_t sz) {
  bson_t pk = BSON_INITIALIZER;
  bson_iter_t it;
  for (size_t k = 0; k < p->npk; k++)
    if (bson_iter_init_find(&it, &w->filter, p->pk_dst[k]))
      bson_append_iter(&pk, p->pk_dst[k], -1, &it);
  ssize_t at;
  rtu_err_t rc = find_one(st, c, &pk, &at, errstr, sz);
  bson_destroy(&pk);
  if (rc != RTU_OK) return rc;
  if (at >= 0) {
    w->status = RTU_WRITE_STALE;
    return RTU_OK;
  }
  bson_t doc = BSON_INITIALIZER, part;
  if (w->kind == RTU_WRITE_REPLACE) {
    bson_concat(&doc, &w->update);
  } else {
    if (sub_doc(&w->update, "$set", &part)) bson_concat(&doc, &part);
    if (sub_doc(&w->update, "$setOnInsert", &part)) {
      bson_t *merged = apply_set(&doc, &part);
      bson_reinit(&doc);
      bson_concat(&doc, merged);
      bson_destroy(merged);
    }
  }
  append_equalities(&doc, &w->filter);
  bson_t *stored = with_id(&doc);
  bson_destroy(&doc);
  if (!coll_add(c, stored)) {
    bson_destroy(stored);
    snprintf(errstr, sz, "out of memory");
    return RTU_ERR_FATAL;
  }
  w->status = RTU_WRITE_DONE;
  return RTU_OK;
}

static rtu_err_t write_one(memory_t *st, coll_t *c, const rtu_projection_t *p, rtu_write_t *w,
                           char *errstr, size_t sz) {
  ssize_t at;
  rtu_err_t rc = find_one(st, c, &w->filter, &at, errstr, sz);
  if (rc != RTU_OK) return rc;
  if (at < 0) {
    if (w->kind != RTU_WRITE_DELETE && w->upsert) return upsert_insert(st, c, p, w, errstr, sz);
    w->status = RTU_WRITE_DONE; /* matched nothing, as MongoDB reports it */
    return RTU_OK;
  }
  bson_t *old = c->docs[at], *next = NULL, part;
  bson_iter_t id;
  switch (w->kind) {
  case RTU_WRITE_DELETE:
    coll_remove(c, (size_t)at);
    break;
  case RTU_WRITE_REPLACE:
    next = bson_new();
    if (bson_iter_init_find(&id, old, "_id")) bson_append_iter(next, "_id", 3, &id);
    if (bson_iter_init(&id, &w->update))
      while (bson_iter_next(&id))
        if (strcmp(bson_iter_key(&id), "_id")) bson_append_iter(next, NULL, 0, &id);
    break;
  case RTU_WRITE_UPDATE:
    if (sub_doc(&w->update, "$set", &part)) next = apply_set(old, &part);
    else next = bson_copy(old);
    break;
  }
  if (next) {
    bson_destroy(old);
    c->docs[at] = next;
  }
  w->status = RTU_WRITE_DONE;
  return RTU_OK;
}

static rtu_err_t memory_write(rtu_store_t *handle, const rtu_projection_t *p, rtu_write_t *writes,
                              size_t n, char *errstr, size_t errstr_size) {
  memory_t *st = (memory_t *)handle;
  if (n == 0) return RTU_OK;
  coll_t *c = get_coll(st, p->destination, true);
  if (!c) {
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  st->stats.commands++;
  for (size_t i = 0; i < n; i++) {
    char err[RTU_ERRSTR_SIZE];
    writes[i].status = RTU_WRITE_PENDING;
    rtu_err_t rc = write_one(st, c, p, &writes[i], err, sizeof err);
    if (rc == RTU_ERR_FATAL) {
      snprintf(errstr, errstr_size, "%s", err);
      return rc;
    }
    if (rc != RTU_OK) {
      /* as MongoDB's writeErrors: this write failed, the others go on */
      writes[i].status = RTU_WRITE_FAILED;
      bson_free(writes[i].error);
      writes[i].error = bson_strdup_printf("%.400s", err);
    }
  }
  return RTU_OK;
}

static rtu_err_t memory_write_pcs(rtu_store_t *handle, const rtu_pc_t *pcs, size_t n,
                                  char *errstr, size_t errstr_size) {
  memory_t *st = (memory_t *)handle;
  if (n == 0) return RTU_OK;
  coll_t *c = get_coll(st, st->cfg->pc_collection, true);
  if (!c) {
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  st->stats.commands++;
  int64_t now = rtu_now_ms();
  for (size_t i = 0; i < n; i++) {
    bson_t filter = BSON_INITIALIZER, set = BSON_INITIALIZER, arr;
    bson_iter_t it;
    char path[300];
    BSON_APPEND_UTF8(&filter, "type", pcs[i].type);
    if (bson_iter_init(&it, pcs[i].identifier))
      while (bson_iter_next(&it)) {
        snprintf(path, sizeof path, "identifier.%.250s", bson_iter_key(&it));
        bson_append_iter(&filter, path, -1, &it);
      }
    BSON_APPEND_ARRAY_BEGIN(&set, "changes", &arr);
    rtu_store_append_change(&arr, pcs[i].msg);
    bson_append_array_end(&set, &arr);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
    ssize_t at;
    rtu_err_t rc = find_one(st, c, &filter, &at, errstr, errstr_size);
    if (rc == RTU_OK && at >= 0) {
      bson_t *next = apply_set(c->docs[at], &set);
      bson_destroy(c->docs[at]);
      c->docs[at] = next;
    } else if (rc == RTU_OK) {
      bson_t doc = BSON_INITIALIZER;
      BSON_APPEND_UTF8(&doc, "type", pcs[i].type);
      BSON_APPEND_DOCUMENT(&doc, "identifier", pcs[i].identifier);
      bson_concat(&doc, &set);
      BSON_APPEND_DATE_TIME(&doc, "createdAt", now);
      bson_t *stored = with_id(&doc);
      bson_destroy(&doc);
      if (!coll_add(c, stored)) {
        bson_destroy(stored);
        snprintf(errstr, errstr_size, "out of memory");
        rc = RTU_ERR_FATAL;
      }
    }
    bson_destroy(&filter);
    bson_destroy(&set);
    if (rc != RTU_OK) return rc;
  }
  return RTU_OK;
}

static const rtu_store_stats_t *memory_stats(const rtu_store_t *handle) {
  return &((const memory_t *)handle)->stats;
}

static const rtu_store_ops_t memory_ops = {
    .ping = memory_ping,
    .ensure_indexes = memory_ensure_indexes,
    .find_keys = memory_find_keys,
    .write = memory_write,
    .find = memory_find,
    .write_pcs = memory_write_pcs,
    .stats = memory_stats,
    .free = memory_free,
};
