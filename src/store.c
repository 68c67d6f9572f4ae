/*
 * store.c: the store interface's calls, each handed to the implementation behind
 * the handle. It holds no state and knows no database: store_mongo.c is the
 * MongoDB implementation.
 */
#include "store.h"

void rtu_store_free(rtu_store_t *st) {
  if (st) st->ops->free(st);
}

rtu_err_t rtu_store_ping(rtu_store_t *st, char *errstr, size_t errstr_size) {
  return st->ops->ping(st, errstr, errstr_size);
}

rtu_err_t rtu_store_ensure_indexes(rtu_store_t *st, char *errstr, size_t errstr_size) {
  return st->ops->ensure_indexes(st, errstr, errstr_size);
}

rtu_err_t rtu_store_find_keys(rtu_store_t *st, const rtu_projection_t *p, bson_t *const *keys,
                              size_t n, rtu_store_each_fn fn, void *ctx, char *errstr,
                              size_t errstr_size) {
  return st->ops->find_keys(st, p, keys, n, fn, ctx, errstr, errstr_size);
}

rtu_err_t rtu_store_write(rtu_store_t *st, const rtu_projection_t *p, rtu_write_t *writes,
                          size_t n, char *errstr, size_t errstr_size) {
  return st->ops->write(st, p, writes, n, errstr, errstr_size);
}

rtu_err_t rtu_store_find(rtu_store_t *st, const char *collection, const bson_t *filter,
                         const bson_t *opts, rtu_store_each_fn fn, void *ctx, char *errstr,
                         size_t errstr_size) {
  return st->ops->find(st, collection, filter, opts, fn, ctx, errstr, errstr_size);
}

rtu_err_t rtu_store_write_pcs(rtu_store_t *st, const rtu_pc_t *pcs, size_t n, char *errstr,
                              size_t errstr_size) {
  return st->ops->write_pcs(st, pcs, n, errstr, errstr_size);
}

const rtu_store_stats_t *rtu_store_stats(const rtu_store_t *st) { return st->ops->stats(st); }
