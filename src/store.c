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

rtu_err_t rtu_store_write_unmapped(rtu_store_t *st, const rtu_projection_t *p,
                                   const rtu_unmapped_t *u, size_t n, char *errstr,
                                   size_t errstr_size) {
  if (n == 0 || !st->ops->write_unmapped) return RTU_OK;
  return st->ops->write_unmapped(st, p, u, n, errstr, errstr_size);
}

void rtu_unmapped_free(rtu_unmapped_t *u, size_t n) {
  if (!u) return;
  for (size_t i = 0; i < n; i++) {
    free(u[i].field);
    free(u[i].topic);
    if (u[i].sample) bson_destroy(u[i].sample);
  }
  free(u);
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

void rtu_store_keys_filter(const rtu_projection_t *p, bson_t *const *keys, size_t n,
                           bson_t *filter) {
  bson_t arr;
  char ibuf[16];
  const char *ikey;
  if (p->npk == 1) {
    /* {pk: {$in: [...]}}: one index range scan on a real server. */
    bson_t in;
    BSON_APPEND_DOCUMENT_BEGIN(filter, p->pk_dst[0], &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
      bson_iter_t it;
      bson_uint32_to_string((uint32_t)i, &ikey, ibuf, sizeof ibuf);
      if (bson_iter_init(&it, keys[i]) && bson_iter_next(&it))
        bson_append_iter(&arr, ikey, -1, &it);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(filter, &in);
    return;
  }
  BSON_APPEND_ARRAY_BEGIN(filter, "$or", &arr);
  for (size_t i = 0; i < n; i++) {
    bson_uint32_to_string((uint32_t)i, &ikey, ibuf, sizeof ibuf);
    BSON_APPEND_DOCUMENT(&arr, ikey, keys[i]);
  }
  bson_append_array_end(filter, &arr);
}
