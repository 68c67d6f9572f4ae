/*
 * strategies_db.h: the read-only `db` object handed to strategies:
 * db:find(collection, filter, options) and db:findOne(...), answered by a
 * lookup function the caller sets for the duration of a run.
 */
#ifndef RTU_STRATEGIES_DB_H
#define RTU_STRATEGIES_DB_H

#include <bson/bson.h>
#include <lua.h>

#include "rtu.h"
#include "sandbox.h"

/* The read-only lookups a strategy may make; store.c's rtu_store_find fits. */
typedef rtu_err_t (*rtu_find_fn)(void *ctx, const char *collection, const bson_t *filter,
                                 const bson_t *opts, void (*each)(void *each_ctx, const bson_t *doc),
                                 void *each_ctx, char *errstr, size_t errstr_size);

typedef struct {
  rtu_sandbox_t *sb; /* the state: a lookup's time is given back to its time limit */
  /* The lookup in force during a run (NULL outside: db then raises). */
  rtu_find_fn find;
  void *find_ctx;
  /* What the last failed lookup returned, and its message. */
  rtu_err_t find_err;
  char find_errstr[RTU_ERRSTR_SIZE];
} rtu_strategies_db_t;

/* Pushes the db object, bound to db (which must outlive the state). */
void rtu_strategies_db_push(lua_State *L, rtu_strategies_db_t *db);

#endif
