/*
 * store.h: the store a worker writes through: index set-up, the read of the
 * stored records of a run, the bulk of projection writes with the counter guard,
 * the strategies' lookups and the projection changes. An interface: a table of
 * operations behind a handle, so batch.c and stage.c run the same against
 * MongoDB (store_mongo.c) or another implementation. The calls are per bulk or
 * per lookup, never per message. Policy (what to write) is batch.c's; a store
 * only says what happened to each write. Nothing here needs more than libbson.
 */
#ifndef RTU_STORE_H
#define RTU_STORE_H

#include <bson/bson.h>
#include <stdbool.h>

#include "config.h"
#include "rtu.h"

typedef struct rtu_store_s rtu_store_t;

typedef enum {
  RTU_WRITE_UPDATE,  /* updateOne(filter, {$set, $setOnInsert}, upsert) */
  RTU_WRITE_REPLACE, /* replaceOne(filter, doc, upsert) */
  RTU_WRITE_DELETE,  /* deleteOne(filter) */
} rtu_write_kind_t;

typedef enum {
  RTU_WRITE_PENDING,
  RTU_WRITE_DONE,
  RTU_WRITE_STALE, /* the guard did not match: a newer change was stored meanwhile */
  RTU_WRITE_FAILED,
} rtu_write_status_t;

typedef struct {
  rtu_write_kind_t kind;
  bson_t filter; /* primary key, plus the guard */
  bson_t update; /* update document or replacement; unused for deletes */
  bool upsert;
  /* Check the update client-side (costly, so only when needed). The values were
   * checked for UTF-8 where they were built (value.c); only an empty field name
   * is left for the driver to refuse, so batch.c asks for the check when there
   * is one. */
  bool validate;
  rtu_write_status_t status;
  /* Why it failed (bson_malloc'd), NULL otherwise: not inline, as a run holds a
   * write per record and almost none fail. */
  char *error;
} rtu_write_t;

typedef struct {
  uint64_t commands; /* MongoDB commands sent, for the benchmark and metrics */
  uint64_t lookups;  /* of which strategy lookups */
} rtu_store_stats_t;

/* One projection change to record: single view `type`, its identifier, and the
 * message that caused it. */
typedef struct {
  const char *type;
  const bson_t *identifier;
  const rtu_msg_t *msg;
} rtu_pc_t;

/* One unmapped or uncastable field of a projection met during a run: the
 * document recorded for (projection, field, type) on
 * COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE gets count more and the rest as its
 * latest values. */
typedef struct rtu_unmapped_s {
  const char *type; /* "UNKNOWN_FIELD" or "UNCASTABLE_FIELD" (static) */
  char *field;      /* its name in the message */
  bson_t *sample;   /* {"value": the last value met} */
  int64_t count;
  char *topic; /* of the last message that had it */
  int32_t partition;
  int64_t offset;
} rtu_unmapped_t;

void rtu_unmapped_free(rtu_unmapped_t *u, size_t n);

/* Called for each document a read finds. */
typedef void (*rtu_store_each_fn)(void *ctx, const bson_t *doc);

/* What an implementation provides; see the rtu_store_* calls below for each. */
typedef struct {
  rtu_err_t (*ping)(rtu_store_t *st, char *errstr, size_t errstr_size);
  rtu_err_t (*ensure_indexes)(rtu_store_t *st, char *errstr, size_t errstr_size);
  rtu_err_t (*find_keys)(rtu_store_t *st, const rtu_projection_t *p, bson_t *const *keys,
                         size_t n, rtu_store_each_fn fn, void *ctx, char *errstr,
                         size_t errstr_size);
  rtu_err_t (*write)(rtu_store_t *st, const rtu_projection_t *p, rtu_write_t *writes, size_t n,
                     char *errstr, size_t errstr_size);
  rtu_err_t (*find)(rtu_store_t *st, const char *collection, const bson_t *filter,
                    const bson_t *opts, rtu_store_each_fn fn, void *ctx, char *errstr,
                    size_t errstr_size);
  rtu_err_t (*write_pcs)(rtu_store_t *st, const rtu_pc_t *pcs, size_t n, char *errstr,
                         size_t errstr_size);
  /* Optional (NULL: nothing is recorded). */
  rtu_err_t (*write_unmapped)(rtu_store_t *st, const rtu_projection_t *p, const rtu_unmapped_t *u,
                              size_t n, char *errstr, size_t errstr_size);
  const rtu_store_stats_t *(*stats)(const rtu_store_t *st);
  void (*free)(rtu_store_t *st);
} rtu_store_ops_t;

/* The handle: an implementation's own struct begins with it. */
struct rtu_store_s {
  const rtu_store_ops_t *ops;
};

void rtu_store_free(rtu_store_t *st);

/* Pings the server; RTU_ERR_TRANSIENT when it cannot be reached. */
rtu_err_t rtu_store_ping(rtu_store_t *st, char *errstr, size_t errstr_size);

/* Creates the indexes of every projection if missing (mia_primary_key_index, ...). */
rtu_err_t rtu_store_ensure_indexes(rtu_store_t *st, char *errstr, size_t errstr_size);

/* Reads the stored documents whose primary keys are among keys[0..n); calls fn
 * for each. One query (and its getMores) for the whole set. */
rtu_err_t rtu_store_find_keys(rtu_store_t *st, const rtu_projection_t *p, bson_t *const *keys,
                              size_t n, rtu_store_each_fn fn, void *ctx, char *errstr,
                              size_t errstr_size);

/* Executes writes[0..n) on p's collection as one unordered bulk (writes touch
 * distinct records). Per-write outcome in status; RTU_ERR_TRANSIENT when the bulk
 * as a whole could not be applied (retry it all: the writes are idempotent);
 * RTU_ERR_DATA, with nothing sent, when the driver refused some writes (they are
 * RTU_WRITE_FAILED). */
rtu_err_t rtu_store_write(rtu_store_t *st, const rtu_projection_t *p, rtu_write_t *writes,
                          size_t n, char *errstr, size_t errstr_size);

/* A read-only lookup over the projections database for strategies: find with
 * options (projection, sort, limit, skip). Counts as a lookup. */
rtu_err_t rtu_store_find(rtu_store_t *st, const char *collection, const bson_t *filter,
                         const bson_t *opts, rtu_store_each_fn fn, void *ctx, char *errstr,
                         size_t errstr_size);

/* Upserts the projection changes as one unordered bulk on
 * PROJECTIONS_CHANGES_COLLECTION_NAME: one document per (type, identifier), its
 * `changes` set to one NEW change (with the unique index of each single view
 * created first, once per store). */
rtu_err_t rtu_store_write_pcs(rtu_store_t *st, const rtu_pc_t *pcs, size_t n, char *errstr,
                              size_t errstr_size);

/* Upserts u[0..n) as one unordered bulk on COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE
 * (see README, outputs): one document per (projection, field, type). RTU_OK
 * doing nothing when the store records none. RTU_ERR_TRANSIENT: retry. */
rtu_err_t rtu_store_write_unmapped(rtu_store_t *st, const rtu_projection_t *p,
                                   const rtu_unmapped_t *u, size_t n, char *errstr,
                                   size_t errstr_size);

const rtu_store_stats_t *rtu_store_stats(const rtu_store_t *st);

/* Appends to arr, as element "0", the NEW change of a projection-change
 * document naming msg. True when the original key has an empty field name (the
 * update must then be validated, so the driver refuses it as MongoDB would). */
bool rtu_store_append_change(bson_t *arr, const rtu_msg_t *msg);

/* Appends to filter the query that finds the stored records of keys[0..n) of
 * p: {pk: {$in: [...]}} for a one-field key, else {$or: [key, ...]}. Shared by
 * the implementations so that both answer find_keys from the same query. */
void rtu_store_keys_filter(const rtu_projection_t *p, bson_t *const *keys, size_t n,
                           bson_t *filter);

#endif
