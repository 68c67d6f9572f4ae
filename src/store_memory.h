/*
 * store_memory.h: the in-memory implementation of store.h, for `rtu test`:
 * collections of documents seeded by a test case, queried through the Lua
 * module rtu.matcher, written with the semantics the pipeline relies on.
 */
#ifndef RTU_STORE_MEMORY_H
#define RTU_STORE_MEMORY_H

#include <bson/bson.h>

#include "config.h"
#include "rtu.h"
#include "store.h"

/* An empty store. It borrows cfg (the projections' keys, the projection
 * changes' collection, the Lua runtime folder for rtu.matcher). */
rtu_store_t *rtu_store_memory_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);

/* Adds a copy of doc to collection, as stored (an _id is added when it has none). */
rtu_err_t rtu_store_memory_insert(rtu_store_t *st, const char *collection, const bson_t *doc,
                                  char *errstr, size_t errstr_size);

/* Calls fn on every document of collection, in insertion order. */
void rtu_store_memory_each(rtu_store_t *st, const char *collection, rtu_store_each_fn fn,
                           void *ctx);

/* Called for every lookup (rtu_store_find), with what it found: for --explain. */
typedef void (*rtu_store_trace_fn)(void *ctx, const char *collection, const bson_t *filter,
                                   const bson_t *opts, bson_t *const *found, size_t n);
void rtu_store_memory_set_trace(rtu_store_t *st, rtu_store_trace_fn fn, void *ctx);

#endif
