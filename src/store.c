/*
 * store.c: the store interface's calls, each handed to the implementation behind
 * the handle. It holds no state and knows no database: store_mongo.c is the
 * MongoDB implementation, store_memory.c the in-memory one of rtu test. The
 * projection change's entry is formatted here, the same for both.
 */
#include "store.h"

#include "key_text.h"
#include "util.h"

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

/* True when the original key has an empty field name (the update must then be
 * validated, so the driver refuses it as MongoDB would). */
bool rtu_store_append_change(bson_t *arr, const rtu_msg_t *msg) {
  bson_t ch;
  char iso[40], offset[24];
  rtu_iso8601(msg->timestamp, iso, sizeof iso);
  rtu_int_text(msg->offset, offset);
  BSON_APPEND_DOCUMENT_BEGIN(arr, "0", &ch);
  BSON_APPEND_UTF8(&ch, "state", "NEW");
  BSON_APPEND_UTF8(&ch, "topic", msg->topic);
  BSON_APPEND_INT32(&ch, "partition", msg->partition);
  BSON_APPEND_UTF8(&ch, "offset", offset);
  bool empty = rtu_key_text_append(&ch, "key", msg->key, msg->key_len);
  BSON_APPEND_UTF8(&ch, "timestamp", iso);
  bson_append_document_end(arr, &ch);
  return empty;
}

