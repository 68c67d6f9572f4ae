/*
 * store_mongo_write.c: sends a run's projection writes for store_mongo.c, and
 * reads what the server said of each one.
 *
 * Why not libmongoc's bulk API for every run: it copies each update into its
 * own buffer, checks it, copies it again into the OP_MSG payload and merges
 * every `upserted` entry of the reply into a result nobody reads; with its page
 * faults that was a fifth of a basic message's CPU (docs/performance.md). A
 * run's writes are instead appended once into `update` and `delete` commands,
 * in a buffer the worker keeps between runs. What the bulk adds besides is
 * libmongoc's one retry of a retryable write; rtu does not need it: an outage
 * retries the whole run, which reads the stored counters again and rewrites
 * exactly what the first attempt may have written (docs/decisions.md).
 * The bulk API stays for what needs the driver's checks (a replacement, an
 * update with an empty field name) and for a record too large for one command.
 *
 * It decides no policy (what to write, what is stale: batch.c) and classifies
 * no error itself (store_mongo_errors.c).
 */
#include "store_mongo_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "store_mongo_errors.h"

/* The server takes a command body up to 16 MiB + 16 KiB; the driver adds the
 * session, $db and the write concern. maxWriteBatchSize is 100,000. */
#define CMD_MAX_BYTES (16 * 1024 * 1024 - 16 * 1024)
#define CMD_MAX_STATEMENTS 100000

static void mark_done(rtu_write_t *writes, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (writes[i].status == RTU_WRITE_PENDING) writes[i].status = RTU_WRITE_DONE;
}

static bool is_primary_key_dup(const bson_t *write_error) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, write_error, "code") || bson_iter_as_int64(&it) != 11000)
    return false;
  if (bson_iter_init_find(&it, write_error, "errmsg") && BSON_ITER_HOLDS_UTF8(&it))
    return strstr(bson_iter_utf8(&it, NULL), "mia_primary_key_index") != NULL;
  return false;
}

/* Adds writes[0..n) to bulk; bulk_index[k] gets the write of the k-th operation
 * added. Returns how many were added: fewer than n when the driver refused some
 * (they are RTU_WRITE_FAILED). */
static size_t add_writes(mongoc_bulk_operation_t *bulk, rtu_write_t *writes, size_t n,
                         size_t *bulk_index, size_t *nupd, size_t *ndel) {
  bson_t upsert_opts = BSON_INITIALIZER, plain_opts = BSON_INITIALIZER;
  bson_t upsert_trusted = BSON_INITIALIZER, plain_trusted = BSON_INITIALIZER;
  bson_error_t err;
  BSON_APPEND_BOOL(&upsert_opts, "upsert", true);
  BSON_APPEND_BOOL(&upsert_trusted, "upsert", true);
  BSON_APPEND_BOOL(&upsert_trusted, "validate", false);
  BSON_APPEND_BOOL(&plain_trusted, "validate", false);
  size_t nadded = 0;
  for (size_t i = 0; i < n; i++) {
    rtu_write_t *w = &writes[i];
    bool ok = false;
    w->status = RTU_WRITE_PENDING;
    switch (w->kind) {
    case RTU_WRITE_UPDATE:
      ok = mongoc_bulk_operation_update_one_with_opts(
          bulk, &w->filter, &w->update,
          w->validate ? (w->upsert ? &upsert_opts : &plain_opts)
                      : (w->upsert ? &upsert_trusted : &plain_trusted),
          &err);
      (*nupd)++;
      break;
    case RTU_WRITE_REPLACE:
      ok = mongoc_bulk_operation_replace_one_with_opts(
          bulk, &w->filter, &w->update, w->upsert ? &upsert_opts : &plain_opts, &err);
      (*nupd)++;
      break;
    case RTU_WRITE_DELETE:
      ok = mongoc_bulk_operation_remove_one_with_opts(bulk, &w->filter, NULL, &err);
      (*ndel)++;
      break;
    }
    if (!ok) {
      /* The driver refused the operation itself (e.g. an empty field name): that
       * record fails, the others still go out. Indexes in the reply count only
       * the operations added, so remember where each write went. */
      w->status = RTU_WRITE_FAILED;
      bson_free(w->error);
      w->error = bson_strdup_printf("%.200s", err.message);
      continue;
    }
    bulk_index[nadded++] = i;
  }
  bson_destroy(&upsert_opts);
  bson_destroy(&plain_opts);
  bson_destroy(&upsert_trusted);
  bson_destroy(&plain_trusted);
  return nadded;
}

/* One entry of a bulk reply's writeErrors: a stale or a failed write. Returns
 * what its code means (RTU_ERR_TRANSIENT: the whole bulk is retried). */
static rtu_err_t on_write_error(const bson_t *we, rtu_write_t *w, const char *coll) {
  bson_iter_t f;
  if (is_primary_key_dup(we)) {
    /* The guard excluded the stored record and the upsert hit its key: a newer
     * change is already stored. */
    w->status = RTU_WRITE_STALE;
    return RTU_OK;
  }
  w->status = RTU_WRITE_FAILED;
  const char *msg = "write error";
  if (bson_iter_init_find(&f, we, "errmsg") && BSON_ITER_HOLDS_UTF8(&f))
    msg = bson_iter_utf8(&f, NULL);
  int64_t code = 0;
  if (bson_iter_init_find(&f, we, "code")) code = bson_iter_as_int64(&f);
  bson_free(w->error);
  /* The server's message names the index and the duplicate key of an E11000. */
  w->error = bson_strdup_printf("collection %.100s: %.400s (code %lld)", coll, msg,
                                (long long)code);
  return rtu_store_mongo_classify(MONGOC_ERROR_SERVER, (uint32_t)code);
}

/* Sets the status of the writes the reply's writeErrors name; *any when there
 * is one. RTU_ERR_TRANSIENT when one of them is an outage. */
static rtu_err_t read_write_errors(const bson_t *reply, rtu_write_t *writes,
                                   const size_t *bulk_index, size_t nadded, const char *coll,
                                   bool *any) {
  bson_iter_t it, arr;
  rtu_err_t rc = RTU_OK;
  *any = false;
  if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &arr))
    return RTU_OK;
  while (bson_iter_next(&arr)) {
    bson_t we;
    const uint8_t *data;
    uint32_t len;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) continue;
    bson_iter_document(&arr, &len, &data);
    if (!bson_init_static(&we, data, len)) continue;
    bson_iter_t f;
    int64_t index = -1;
    if (bson_iter_init_find(&f, &we, "index")) index = bson_iter_as_int64(&f);
    if (index < 0 || (size_t)index >= nadded) continue;
    *any = true;
    if (on_write_error(&we, &writes[bulk_index[index]], coll) == RTU_ERR_TRANSIENT)
      rc = RTU_ERR_TRANSIENT;
  }
  return rc;
}

static rtu_err_t write_bulk(mongoc_collection_t *coll, rtu_write_t *writes, size_t n,
                            uint64_t *commands, char *errstr, size_t errstr_size) {
  const char *name = mongoc_collection_get_name(coll);
  rtu_err_t rc = RTU_OK;
  bson_t opts = BSON_INITIALIZER, reply;
  bson_error_t err;
  BSON_APPEND_BOOL(&opts, "ordered", false);
  mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
  size_t nupd = 0, ndel = 0;
  size_t *bulk_index = malloc(n * sizeof *bulk_index);
  if (!bulk_index) {
    snprintf(errstr, errstr_size, "out of memory");
    rc = RTU_ERR_FATAL;
    goto done;
  }
  size_t nadded = add_writes(bulk, writes, n, bulk_index, &nupd, &ndel);
  if (nadded < n) {
    /* Nothing is sent: the caller shortens the run before the refused record. */
    snprintf(errstr, errstr_size, "MongoDB driver refused a write");
    rc = RTU_ERR_DATA;
    goto done;
  }

  uint32_t server_id = mongoc_bulk_operation_execute(bulk, &reply, &err);
  /* One command per operation type, more only past maxWriteBatchSize. */
  *commands += (nupd ? 1 + nupd / 100000 : 0) + (ndel ? 1 + ndel / 100000 : 0);
  bool has_write_errors;
  rtu_err_t kind = read_write_errors(&reply, writes, bulk_index, nadded, name,
                                     &has_write_errors);
  bson_iter_t it;
  if (kind == RTU_ERR_TRANSIENT) {
    /* A write met an outage (not primary...): retry them all. */
    snprintf(errstr, errstr_size, "MongoDB bulk write on %s: %s (code %u)", name,
             err.message, err.code);
    rtu_health_dependency(RTU_DEP_MONGODB, false, errstr);
    rc = RTU_ERR_TRANSIENT;
  } else if (!server_id && !has_write_errors) {
    rc = rtu_store_mongo_fail(&err, "bulk write", errstr, errstr_size);
  } else if (!server_id && bson_iter_init_find(&it, &reply, "writeConcernErrors") &&
             BSON_ITER_HOLDS_ARRAY(&it)) {
    rc = rtu_store_mongo_fail(&err, "bulk write (write concern)", errstr, errstr_size);
  }
  if (rc == RTU_OK)
      mark_done(writes, n);
  bson_destroy(&reply);
done:
  free(bulk_index);
  mongoc_bulk_operation_destroy(bulk);
  bson_destroy(&opts);
  return rc;
}

/* A statement's size in the command, its key and braces included. */
static size_t statement_size(const rtu_write_t *w) {
  return w->filter.len + (w->kind == RTU_WRITE_DELETE ? 8 : w->update.len) + 48;
}

/* Whether every write can go as a plain statement: no driver check needed, and
 * none too large for a command of its own. */
static bool statements_fit(const rtu_write_t *writes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const rtu_write_t *w = &writes[i];
    if (w->kind == RTU_WRITE_REPLACE || (w->kind == RTU_WRITE_UPDATE && w->validate)) return false;
    if (statement_size(w) > CMD_MAX_BYTES / 2) return false;
  }
  return true;
}

static bool append_statement(bson_t *array, uint32_t k, const rtu_write_t *w) {
  const char *key;
  char buf[16];
  uint32_t key_len = (uint32_t)bson_uint32_to_string(k, &key, buf, sizeof buf);
  bson_t st;
  bool ok = bson_append_document_begin(array, key, (int)key_len, &st) &&
            BSON_APPEND_DOCUMENT(&st, "q", &w->filter);
  if (w->kind == RTU_WRITE_DELETE)
    ok = ok && BSON_APPEND_INT32(&st, "limit", 1);
  else
    ok = ok && BSON_APPEND_DOCUMENT(&st, "u", &w->update) && BSON_APPEND_BOOL(&st, "upsert", w->upsert);
  return bson_append_document_end(array, &st) && ok;
}

/* Builds in wr->cmd one command of the writes of one kind from *next on, as
 * many as fit; wr->index[k] is the write of its k-th statement. Returns how
 * many statements; *next moves past the last write taken. */
static size_t build_command(rtu_store_mongo_writer_t *wr, const char *coll, bool deletes,
                            rtu_write_t *writes, size_t n, size_t *next) {
  bson_t array;
  size_t k = 0, i = *next;
  bson_reinit(&wr->cmd);
  bool ok = BSON_APPEND_UTF8(&wr->cmd, deletes ? "delete" : "update", coll) &&
            BSON_APPEND_BOOL(&wr->cmd, "ordered", false) &&
            bson_append_array_begin(&wr->cmd, deletes ? "deletes" : "updates", -1, &array);
  for (; ok && i < n; i++) {
    rtu_write_t *w = &writes[i];
    if ((w->kind == RTU_WRITE_DELETE) != deletes) continue;
    if (k == CMD_MAX_STATEMENTS ||
        (k > 0 && wr->cmd.len + array.len + statement_size(w) > CMD_MAX_BYTES))
      break;
    ok = append_statement(&array, (uint32_t)k, w);
    wr->index[k++] = i;
  }
  ok = bson_append_array_end(&wr->cmd, &array) && ok;
  *next = i;
  return ok ? k : 0;
}

/* Sends wr->cmd; sets the status of the writes its reply names. */
static rtu_err_t send_command(mongoc_collection_t *coll, rtu_store_mongo_writer_t *wr,
                              const char *what, rtu_write_t *writes, size_t k,
                              uint64_t *commands, char *errstr, size_t errstr_size) {
  const char *name = mongoc_collection_get_name(coll);
  bson_t opts = BSON_INITIALIZER, reply;
  bson_error_t err;
  rtu_err_t rc = RTU_OK;
  const mongoc_write_concern_t *wc = mongoc_collection_get_write_concern(coll);
  if (!mongoc_write_concern_is_default(wc) &&
      !mongoc_write_concern_append((mongoc_write_concern_t *)wc, &opts)) {
    snprintf(errstr, errstr_size, "MongoDB %s on %s: invalid write concern", what, name);
    bson_destroy(&opts);
    return RTU_ERR_CONFIG;
  }
  bool ok = mongoc_collection_write_command_with_opts(coll, &wr->cmd, &opts, &reply, &err);
  (*commands)++;
  bool any;
  if (read_write_errors(&reply, writes, wr->index, k, name, &any) == RTU_ERR_TRANSIENT) {
    const char *cause = "a write met an outage";
    for (size_t s = 0; s < k; s++)
      if (writes[wr->index[s]].status == RTU_WRITE_FAILED && writes[wr->index[s]].error) {
        cause = writes[wr->index[s]].error;
        break;
      }
    snprintf(errstr, errstr_size, "MongoDB %s on %s: %s", what, name, cause);
    rtu_health_dependency(RTU_DEP_MONGODB, false, errstr);
    rc = RTU_ERR_TRANSIENT;
  } else if (!ok) {
    /* Unreachable, ok: 0, or a write concern error: nothing is known applied. */
    rc = rtu_store_mongo_fail(&err, what, errstr, errstr_size);
  }
  bson_destroy(&reply);
  bson_destroy(&opts);
  return rc;
}

static rtu_err_t write_commands(mongoc_collection_t *coll, rtu_store_mongo_writer_t *wr,
                                rtu_write_t *writes, size_t n, uint64_t *commands, char *errstr,
                                size_t errstr_size) {
  if (n > wr->index_cap) {
    size_t *index = realloc(wr->index, n * sizeof *index);
    if (!index) {
      snprintf(errstr, errstr_size, "out of memory");
      return RTU_ERR_FATAL;
    }
    wr->index = index;
    wr->index_cap = n;
  }
  for (size_t i = 0; i < n; i++) writes[i].status = RTU_WRITE_PENDING;
  /* Updates, then deletes, as libmongoc's unordered bulk sends them: a run
   * holds one write per record, so their order does not matter. */
  for (int deletes = 0; deletes <= 1; deletes++) {
    size_t next = 0;
    while (next < n) {
      size_t k = build_command(wr, mongoc_collection_get_name(coll), deletes, writes, n, &next);
      if (k == 0) {
        if (next < n) {
          snprintf(errstr, errstr_size, "cannot build the write command of %s",
                   mongoc_collection_get_name(coll));
          return RTU_ERR_FATAL;
        }
        break;
      }
      rtu_err_t rc = send_command(coll, wr, deletes ? "delete" : "update", writes, k, commands,
                                  errstr, errstr_size);
      if (rc != RTU_OK) return rc;
    }
  }
  mark_done(writes, n);
  return RTU_OK;
}

rtu_err_t rtu_store_mongo_write(mongoc_collection_t *coll, rtu_store_mongo_writer_t *wr,
                                rtu_write_t *writes, size_t n, uint64_t *commands, char *errstr,
                                size_t errstr_size) {
  if (n == 0) return RTU_OK;
  if (statements_fit(writes, n))
    return write_commands(coll, wr, writes, n, commands, errstr, errstr_size);
  return write_bulk(coll, writes, n, commands, errstr, errstr_size);
}

void rtu_store_mongo_writer_init(rtu_store_mongo_writer_t *wr) {
  memset(wr, 0, sizeof *wr);
  bson_init(&wr->cmd);
}

void rtu_store_mongo_writer_clear(rtu_store_mongo_writer_t *wr) {
  bson_destroy(&wr->cmd);
  free(wr->index);
  memset(wr, 0, sizeof *wr);
}
