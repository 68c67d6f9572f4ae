/*
 * store_mongo.c: the MongoDB implementation of store.h. It owns the connection
 * of one worker and every command it sends.
 * It sets up the indexes, reads the stored records of a run in one query, and
 * sends a run's projection writes as one unordered bulk per collection (mongoc
 * splits it by operation type only: updates, then deletes). It decides no policy:
 * what to write, and whether a message is stale, is batch.c's.
 */
#include "store_mongo.h"

#include <mongoc/mongoc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "metrics_client.h"
#include "store_mongo_errors.h"
#include "store_mongo_write.h"

#define MAX_PC_INDEXES 64

typedef struct {
  rtu_store_t base; /* first: the handle batch.c and stage.c hold */
  const rtu_config_t *cfg;
  char *pc_indexes[MAX_PC_INDEXES]; /* identifier key sets already indexed */
  size_t npc_indexes;
  mongoc_client_t *client;
  /* The command in flight (a client serves one thread, one command at a time):
   * its collection, which the succeeded and failed events do not carry. */
  int64_t apm_request_id;
  char apm_collection[128];
  mongoc_database_t *db;
  rtu_store_mongo_writer_t writer;
  rtu_store_stats_t stats;
} mongo_t;

static const rtu_store_ops_t mongo_ops;

static bool init_once_done = false;

/* APM sees every command the driver sends (getMore, bulk splits, index builds),
 * so rtu_mongodb_commands_total is exact without counting by hand. */
static void on_command_started(const mongoc_apm_command_started_t *ev) {
  rtu_metrics_add(RTU_C_MONGO_COMMANDS, mongoc_apm_command_started_get_command_name(ev), 1);
  mongo_t *st = mongoc_apm_command_started_get_context(ev);
  const bson_t *cmd = mongoc_apm_command_started_get_command(ev);
  bson_iter_t it;
  st->apm_request_id = mongoc_apm_command_started_get_request_id(ev);
  st->apm_collection[0] = '\0';
  /* {find: "coll"}, {insert: "coll"}, ...; getMore names it in "collection" */
  if (cmd && bson_iter_init(&it, cmd) && bson_iter_next(&it) &&
      (BSON_ITER_HOLDS_UTF8(&it) ||
       (bson_iter_init_find(&it, cmd, "collection") && BSON_ITER_HOLDS_UTF8(&it))))
    snprintf(st->apm_collection, sizeof st->apm_collection, "%s", bson_iter_utf8(&it, NULL));
}

/* The collection of the command that ended: the one started last. */
static const char *apm_collection(mongo_t *st, int64_t request_id) {
  return st->apm_request_id == request_id ? st->apm_collection : "";
}

static void on_command_succeeded(const mongoc_apm_command_succeeded_t *ev) {
  mongo_t *st = mongoc_apm_command_succeeded_get_context(ev);
  rtu_metrics_client_mongo(apm_collection(st, mongoc_apm_command_succeeded_get_request_id(ev)),
                           mongoc_apm_command_succeeded_get_command_name(ev), true,
                           (double)mongoc_apm_command_succeeded_get_duration(ev) / 1e6);
  rtu_health_dependency(RTU_DEP_MONGODB, true, NULL);
}

static void on_command_failed(const mongoc_apm_command_failed_t *ev) {
  mongo_t *st = mongoc_apm_command_failed_get_context(ev);
  rtu_metrics_client_mongo(apm_collection(st, mongoc_apm_command_failed_get_request_id(ev)),
                           mongoc_apm_command_failed_get_command_name(ev), false,
                           (double)mongoc_apm_command_failed_get_duration(ev) / 1e6);
}

rtu_store_t *rtu_store_mongo_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  if (!init_once_done) {
    mongoc_init(); /* idempotent in 1.23 and thread-safe behind pthread_once */
    init_once_done = true;
  }
  bson_error_t err;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->mongodb_url, &err);
  if (!uri) {
    snprintf(errstr, errstr_size, "MONGODB_URL: %s", err.message);
    return NULL;
  }
  /* Fail fast and let the caller's backoff decide: a worker must not block for the
   * driver's 30 s default while the consumer group waits. */
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
  /* The driver's 300 s would hold a worker (and the poll loop waiting for it) far
   * past the liveness interval (30 s by default) when a server stops answering
   * mid-command: every command has a deadline shorter than it. A bulk a real
   * server needs longer for is the user's to allow (socketTimeoutMS in the URL). */
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 20000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 5000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
    mongoc_uri_set_appname(uri, "rtu");
  mongo_t *st = calloc(1, sizeof *st);
  if (!st) {
    mongoc_uri_destroy(uri);
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
  }
  st->base.ops = &mongo_ops;
  st->cfg = cfg;
  st->client = mongoc_client_new_from_uri_with_error(uri, &err);
  mongoc_uri_destroy(uri);
  if (!st->client) {
    snprintf(errstr, errstr_size, "MONGODB_URL: %s", err.message);
    free(st);
    return NULL;
  }
  mongoc_client_set_error_api(st->client, MONGOC_ERROR_API_VERSION_2);
  mongoc_apm_callbacks_t *apm = mongoc_apm_callbacks_new();
  mongoc_apm_set_command_started_cb(apm, on_command_started);
  mongoc_apm_set_command_succeeded_cb(apm, on_command_succeeded);
  mongoc_apm_set_command_failed_cb(apm, on_command_failed);
  bool apm_ok = mongoc_client_set_apm_callbacks(st->client, apm, st);
  mongoc_apm_callbacks_destroy(apm);
  if (!apm_ok) {
    snprintf(errstr, errstr_size, "cannot set MongoDB command monitoring");
    mongoc_client_destroy(st->client);
    free(st);
    return NULL;
  }
  st->db = mongoc_client_get_database(st->client, cfg->projections_db);
  rtu_store_mongo_writer_init(&st->writer);
  return &st->base;
}

static void mongo_free(rtu_store_t *handle) {
  mongo_t *st = (mongo_t *)handle;
  if (!st) return;
  for (size_t i = 0; i < st->npc_indexes; i++) free(st->pc_indexes[i]);
  rtu_store_mongo_writer_clear(&st->writer);
  mongoc_database_destroy(st->db);
  mongoc_client_destroy(st->client);
  free(st);
}

static const rtu_store_stats_t *mongo_stats(const rtu_store_t *handle) {
  return &((const mongo_t *)handle)->stats;
}

static rtu_err_t mongo_ping(rtu_store_t *handle, char *errstr, size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  bson_t cmd = BSON_INITIALIZER;
  bson_error_t err;
  BSON_APPEND_INT32(&cmd, "ping", 1);
  bool ok = mongoc_database_command_simple(st->db, &cmd, NULL, NULL, &err);
  st->stats.commands++;
  bson_destroy(&cmd);
  if (!ok) return rtu_store_mongo_fail(&err, "ping", errstr, errstr_size);
  return RTU_OK;
}

/* createIndexes as a command: libmongoc 1.23 has no create_indexes_with_opts. */
static rtu_err_t create_index(mongo_t *st, const char *coll, const char *name,
                              const bson_t *keys, bool unique, const bson_t *partial,
                              char *errstr, size_t sz) {
  bson_t cmd = BSON_INITIALIZER, arr, idx;
  bson_error_t err;
  BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
  BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
  BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &idx);
  BSON_APPEND_DOCUMENT(&idx, "key", keys);
  BSON_APPEND_UTF8(&idx, "name", name);
  if (unique) BSON_APPEND_BOOL(&idx, "unique", true);
  if (partial) BSON_APPEND_DOCUMENT(&idx, "partialFilterExpression", partial);
  bson_append_document_end(&arr, &idx);
  bson_append_array_end(&cmd, &arr);
  bool ok = mongoc_database_write_command_with_opts(st->db, &cmd, NULL, NULL, &err);
  st->stats.commands++;
  bson_destroy(&cmd);
  if (ok) return RTU_OK;
  /* An index of that name with other options is the user's own: keep it. */
  if (err.code == 85 /* IndexOptionsConflict */ || err.code == 86 /* IndexKeySpecsConflict */) {
    rtu_log(RTU_LOG_WARN, "an index with this name exists with another definition; kept as is",
            "collection", coll, "index", name, "cause", err.message, NULL);
    return RTU_OK;
  }
  char what[256];
  snprintf(what, sizeof what, "createIndexes %.120s.%.120s", coll, name);
  return rtu_store_mongo_fail(&err, what, errstr, sz);
}

static rtu_err_t mongo_ensure_indexes(rtu_store_t *handle, char *errstr, size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  for (size_t i = 0; i < st->cfg->nprojections; i++) {
    const rtu_projection_t *p = &st->cfg->projections[i];
    bson_t pk = BSON_INITIALIZER, counter = BSON_INITIALIZER, type = BSON_INITIALIZER;
    for (size_t k = 0; k < p->npk; k++) {
      BSON_APPEND_INT32(&pk, p->pk_dst[k], 1);
      BSON_APPEND_INT32(&counter, p->pk_dst[k], 1);
      BSON_APPEND_INT32(&type, p->pk_dst[k], 1);
    }
    BSON_APPEND_INT32(&counter, "__internal__counter", 1);
    BSON_APPEND_INT32(&counter, "__internal__counterType", 1);
    BSON_APPEND_INT32(&type, "__internal__counterType", 1);
    rtu_err_t err = create_index(st, p->destination, "mia_primary_key_index", &pk, true, NULL,
                                 errstr, errstr_size);
    if (err == RTU_ERR_DATA) {
      /* Without the unique key index an upsert could duplicate a record: no
       * start. The server's message names the collection and a duplicate key. */
      char cause[RTU_ERRSTR_SIZE + 200];
      snprintf(cause, sizeof cause,
               "the primary-key index of collection %.100s cannot be built over the documents "
               "it holds (remove the duplicates): %.500s",
               p->destination, errstr);
      snprintf(errstr, errstr_size, "%.*s", (int)(errstr_size ? errstr_size - 1 : 0), cause);
      err = RTU_ERR_CONFIG;
    }
    if (!err)
      err = create_index(st, p->destination, "mia_internal_counter_index", &counter, false, NULL,
                         errstr, errstr_size);
    if (!err)
      err = create_index(st, p->destination, "mia_internal_counter_type_index", &type, false,
                         NULL, errstr, errstr_size);
    bson_destroy(&pk);
    bson_destroy(&counter);
    bson_destroy(&type);
    if (err) return err;
  }
  if (!st->cfg->unmapped_collection) return RTU_OK;
  /* One document per (projection, field, type): workers of one projection upsert
   * concurrently, and without the index two could insert the same one. */
  bson_t keys = BSON_INITIALIZER;
  BSON_APPEND_INT32(&keys, "projection", 1);
  BSON_APPEND_INT32(&keys, "field", 1);
  BSON_APPEND_INT32(&keys, "type", 1);
  rtu_err_t err = create_index(st, st->cfg->unmapped_collection, "rtu_unmapped_field_index", &keys,
                               true, NULL, errstr, errstr_size);
  bson_destroy(&keys);
  return err;
}

static rtu_err_t mongo_find_keys(rtu_store_t *handle, const rtu_projection_t *p,
                                 bson_t *const *keys, size_t n, rtu_store_each_fn fn, void *ctx,
                                 char *errstr, size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  if (n == 0) return RTU_OK;
  bson_t filter = BSON_INITIALIZER;
  rtu_store_keys_filter(p, keys, n, &filter);
  bson_t opts = BSON_INITIALIZER;
  BSON_APPEND_INT32(&opts, "batchSize", (int32_t)(n < 100000 ? n + 1 : 100000));
  mongoc_collection_t *coll = mongoc_database_get_collection(st->db, p->destination);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
  const bson_t *doc;
  uint64_t batches = 1;
  while (mongoc_cursor_next(cur, &doc)) fn(ctx, doc);
  bson_error_t err;
  rtu_err_t rc = RTU_OK;
  if (mongoc_cursor_error(cur, &err)) rc = rtu_store_mongo_fail(&err, "find", errstr, errstr_size);
  if (mongoc_cursor_get_id(cur) != 0) batches++;
  st->stats.commands += batches;
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(coll);
  bson_destroy(&opts);
  bson_destroy(&filter);
  return rc;
}

static rtu_err_t mongo_write(rtu_store_t *handle, const rtu_projection_t *p, rtu_write_t *writes,
                             size_t n, char *errstr, size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  mongoc_collection_t *coll = mongoc_database_get_collection(st->db, p->destination);
  rtu_err_t rc = rtu_store_mongo_write(coll, &st->writer, writes, n, &st->stats.commands, errstr,
                                       errstr_size);
  mongoc_collection_destroy(coll);
  return rc;
}

static rtu_err_t mongo_find(rtu_store_t *handle, const char *collection, const bson_t *filter,
                            const bson_t *opts, rtu_store_each_fn fn, void *ctx, char *errstr,
                            size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  mongoc_collection_t *coll = mongoc_database_get_collection(st->db, collection);
  /* The server's first batch is 101 documents by default: a lookup of a whole
   * poll's projection finds more, and would pay a getMore round trip. One batch
   * (up to the server's 16 MiB) unless the strategy asked otherwise. */
  bson_t sized = BSON_INITIALIZER;
  if (opts) bson_concat(&sized, opts);
  if (!opts || !bson_has_field(opts, "batchSize")) BSON_APPEND_INT32(&sized, "batchSize", 100000);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &sized, NULL);
  const bson_t *doc;
  uint64_t batches = 1;
  while (mongoc_cursor_next(cur, &doc)) {
    fn(ctx, doc);
    if (mongoc_cursor_get_id(cur) != 0) batches = 2; /* at least one getMore */
  }
  bson_error_t err;
  rtu_err_t rc = RTU_OK;
  if (mongoc_cursor_error(cur, &err)) {
    char what[256];
    snprintf(what, sizeof what, "find on %.200s", collection);
    rc = rtu_store_mongo_fail(&err, what, errstr, errstr_size);
  }
  st->stats.commands += batches;
  st->stats.lookups += batches;
  rtu_metrics_add(RTU_C_STRATEGY_LOOKUPS, NULL, 1);
  mongoc_cursor_destroy(cur);
  mongoc_collection_destroy(coll);
  bson_destroy(&sized);
  return rc;
}

static rtu_err_t ensure_pc_index(mongo_t *st, const char *type, const bson_t *identifier,
                                 char *errstr, size_t errstr_size) {
  /* One unique index per single view, partial on its type: the identifier keys of
   * one single view are absent (null) in the documents of another, so an index
   * over all types would see duplicates. */
  char sig[600];
  size_t len = (size_t)snprintf(sig, sizeof sig, "type_%.200s", type);
  bson_iter_t it;
  if (!bson_iter_init(&it, identifier)) return RTU_OK;
  while (bson_iter_next(&it) && len < sizeof sig - 2)
    len += (size_t)snprintf(sig + len, sizeof sig - len, "_%.100s", bson_iter_key(&it));
  if (len >= sizeof sig) len = sizeof sig - 1;
  for (size_t i = 0; i < st->npc_indexes; i++)
    if (!strcmp(st->pc_indexes[i], sig)) return RTU_OK;
  bson_t keys = BSON_INITIALIZER, partial = BSON_INITIALIZER;
  char path[300];
  BSON_APPEND_INT32(&keys, "type", 1);
  bson_iter_init(&it, identifier);
  while (bson_iter_next(&it)) {
    snprintf(path, sizeof path, "identifier.%.250s", bson_iter_key(&it));
    BSON_APPEND_INT32(&keys, path, 1);
  }
  BSON_APPEND_UTF8(&partial, "type", type);
  rtu_err_t rc = create_index(st, st->cfg->pc_collection, sig, &keys, true, &partial, errstr,
                              errstr_size);
  bson_destroy(&keys);
  bson_destroy(&partial);
  if (rc == RTU_ERR_DATA) {
    /* Old documents already break it (two of one single view): the upserts
     * still find one of them by type and identifier, so writing goes on, loudly,
     * and the index is not tried again before a restart. */
    char warning[RTU_ERRSTR_SIZE + 200];
    snprintf(warning, sizeof warning,
             "projection changes collection %.100s: unique index %.200s cannot be built; "
             "projection changes go on without it: %s",
             st->cfg->pc_collection, sig, errstr);
    rtu_log(RTU_LOG_ERROR, "projection changes index cannot be built; going on without it",
            "collection", st->cfg->pc_collection, "index", sig, "cause", errstr, NULL);
    rtu_health_warning(warning);
    rtu_metrics_add(RTU_C_INDEX_FAILURES, st->cfg->pc_collection, 1);
    rc = RTU_OK;
  }
  if (rc == RTU_OK && st->npc_indexes < MAX_PC_INDEXES)
    st->pc_indexes[st->npc_indexes++] = strdup(sig);
  return rc;
}

static rtu_err_t mongo_write_pcs(rtu_store_t *handle, const rtu_pc_t *pcs, size_t n, char *errstr,
                                 size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  if (n == 0) return RTU_OK;
  rtu_err_t rc = RTU_OK;
  for (size_t i = 0; i < n && rc == RTU_OK; i++)
    rc = ensure_pc_index(st, pcs[i].type, pcs[i].identifier, errstr, errstr_size);
  if (rc != RTU_OK) return rc;
  bson_t opts = BSON_INITIALIZER, upsert = BSON_INITIALIZER, trusted = BSON_INITIALIZER, reply;
  bson_error_t err;
  BSON_APPEND_BOOL(&opts, "ordered", false);
  BSON_APPEND_BOOL(&upsert, "upsert", true);
  /* Every string here was checked for UTF-8 where it was built (value.c), as for
   * the projection writes: the driver's validation (costly) is kept only for
   * an original key with an empty field name. */
  BSON_APPEND_BOOL(&trusted, "upsert", true);
  BSON_APPEND_BOOL(&trusted, "validate", false);
  mongoc_collection_t *coll = mongoc_database_get_collection(st->db, st->cfg->pc_collection);
  mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
  int64_t now = rtu_now_ms();
  for (size_t i = 0; i < n; i++) {
    /* Filter by type and each identifier key (the unique index's fields), so the
     * upsert finds the record whatever the order of the identifier's keys. */
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, arr, soi;
    bson_iter_t it;
    char path[300];
    BSON_APPEND_UTF8(&filter, "type", pcs[i].type);
    if (bson_iter_init(&it, pcs[i].identifier))
      while (bson_iter_next(&it)) {
        snprintf(path, sizeof path, "identifier.%.250s", bson_iter_key(&it));
        bson_append_iter(&filter, path, -1, &it);
      }
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_ARRAY_BEGIN(&set, "changes", &arr);
    bool empty = rtu_store_append_change(&arr, pcs[i].msg);
    bson_append_array_end(&set, &arr);
    BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
    bson_append_document_end(&update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$setOnInsert", &soi);
    BSON_APPEND_DATE_TIME(&soi, "createdAt", now);
    bson_append_document_end(&update, &soi);
    bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &filter, &update,
                                                         empty ? &upsert : &trusted, &err);
    bson_destroy(&filter);
    bson_destroy(&update);
    if (!ok) {
      snprintf(errstr, errstr_size, "projection change: %.400s", err.message);
      rc = RTU_ERR_DATA;
      goto done;
    }
  }
  if (!mongoc_bulk_operation_execute(bulk, &reply, &err)) {
    char what[200];
    snprintf(what, sizeof what, "projection changes bulk on %.150s", st->cfg->pc_collection);
    /* With writeErrors, err carries the first one's code and message. */
    rc = rtu_store_mongo_fail(&err, what, errstr, errstr_size);
  }
  st->stats.commands += 1 + n / 100000;
  bson_destroy(&reply);
done:
  mongoc_bulk_operation_destroy(bulk);
  mongoc_collection_destroy(coll);
  bson_destroy(&opts);
  bson_destroy(&upsert);
  bson_destroy(&trusted);
  return rc;
}

/* The update of one unmapped-field document (README, outputs). */
static void unmapped_update(const rtu_unmapped_t *u, int64_t now, bson_t *update) {
  bson_t set, inc, soi;
  bson_iter_t it;
  char offset[24];
  rtu_int_text(u->offset, offset);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
  BSON_APPEND_UTF8(&set, "__STATE__", "PUBLIC");
  if (bson_iter_init_find(&it, u->sample, "value")) bson_append_iter(&set, "value", -1, &it);
  BSON_APPEND_UTF8(&set, "topic", u->topic ? u->topic : "");
  BSON_APPEND_INT32(&set, "partition", u->partition);
  BSON_APPEND_UTF8(&set, "offset", offset);
  BSON_APPEND_DATE_TIME(&set, "updatedAt", now);
  bson_append_document_end(update, &set);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$inc", &inc);
  BSON_APPEND_INT64(&inc, "count", u->count);
  bson_append_document_end(update, &inc);
  BSON_APPEND_DOCUMENT_BEGIN(update, "$setOnInsert", &soi);
  BSON_APPEND_DATE_TIME(&soi, "createdAt", now);
  bson_append_document_end(update, &soi);
}

static rtu_err_t mongo_write_unmapped(rtu_store_t *handle, const rtu_projection_t *p,
                                      const rtu_unmapped_t *u, size_t n, char *errstr,
                                      size_t errstr_size) {
  mongo_t *st = (mongo_t *)handle;
  if (n == 0 || !st->cfg->unmapped_collection) return RTU_OK;
  rtu_err_t rc = RTU_OK;
  bson_t opts = BSON_INITIALIZER, upsert = BSON_INITIALIZER, reply = BSON_INITIALIZER;
  bson_error_t err;
  BSON_APPEND_BOOL(&opts, "ordered", false);
  BSON_APPEND_BOOL(&upsert, "upsert", true);
  mongoc_collection_t *coll =
      mongoc_database_get_collection(st->db, st->cfg->unmapped_collection);
  mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
  int64_t now = rtu_now_ms();
  size_t added = 0;
  for (size_t i = 0; i < n; i++) {
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "projection", p->name);
    BSON_APPEND_UTF8(&filter, "field", u[i].field);
    BSON_APPEND_UTF8(&filter, "type", u[i].type);
    unmapped_update(&u[i], now, &update);
    bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, &filter, &update, &upsert, &err);
    bson_destroy(&filter);
    bson_destroy(&update);
    if (!ok) {
      /* a field name or value MongoDB refuses: not worth stopping the partition */
      rtu_log(RTU_LOG_WARN, "unmapped field not recorded", "projection", p->name, "field",
              u[i].field, "cause", err.message, NULL);
      continue;
    }
    added++;
  }
  if (added) {
    if (!mongoc_bulk_operation_execute(bulk, &reply, &err))
      rc = rtu_store_mongo_fail(&err, "unmapped fields bulk", errstr, errstr_size);
    st->stats.commands += 1 + added / 100000;
  }
  bson_destroy(&reply);
  mongoc_bulk_operation_destroy(bulk);
  mongoc_collection_destroy(coll);
  bson_destroy(&opts);
  bson_destroy(&upsert);
  return rc;
}

static const rtu_store_ops_t mongo_ops = {
    .ping = mongo_ping,
    .ensure_indexes = mongo_ensure_indexes,
    .find_keys = mongo_find_keys,
    .write = mongo_write,
    .find = mongo_find,
    .write_pcs = mongo_write_pcs,
    .write_unmapped = mongo_write_unmapped,
    .stats = mongo_stats,
    .free = mongo_free,
};
