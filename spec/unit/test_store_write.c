/*
 * test_store_write.c: store_mongo_write.c against the MongoDB test server: a
 * run's writes as update and delete commands, split where a command would pass
 * the server's size limit, each write's status read back from the right
 * command's writeErrors (a stale record on the primary-key index, a duplicate on
 * another unique index), and the bulk path kept for replacements and for updates
 * the driver must check.
 *
 * It starts its own MongoDB test server ($RTU_TOOLS_DIR/mongo-test-server.py).
 */
#define _GNU_SOURCE
#include <mongoc/mongoc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mongo_server.h"
#include "store_mongo_write.h"

#define DB "rtu_store_write"

static mongoc_client_t *client;
static mongoc_collection_t *coll;

static void reset_collection(void) {
  bson_error_t err;
  if (coll) {
    if (!mongoc_collection_drop(coll, &err) && err.code != 26 /* NamespaceNotFound */)
      fprintf(stderr, "drop: %s\n", err.message);
    mongoc_collection_destroy(coll);
  }
  coll = mongoc_client_get_collection(client, DB, "items");
  /* The indexes rtu creates: mia_primary_key_index on the key, plus one unique
   * index of the user's to meet a data problem on. */
  bson_t *cmd = BCON_NEW("createIndexes", "items", "indexes", "[",
                         "{", "key", "{", "id", BCON_INT32(1), "}", "name",
                         "mia_primary_key_index", "unique", BCON_BOOL(true), "}",
                         "{", "key", "{", "code", BCON_INT32(1), "}", "name", "code_unique",
                         "unique", BCON_BOOL(true), "}", "]");
  mongoc_database_t *db = mongoc_client_get_database(client, DB);
  if (!mongoc_database_command_simple(db, cmd, NULL, NULL, &err))
    fprintf(stderr, "createIndexes: %s\n", err.message);
  mongoc_database_destroy(db);
  bson_destroy(cmd);
}

/* An upsert of record id guarded by counter, setting v (a string of pad bytes)
 * and code. */
static void upsert(rtu_write_t *w, int id, int64_t counter, size_t pad, int code) {
  memset(w, 0, sizeof *w);
  w->kind = RTU_WRITE_UPDATE;
  w->upsert = true;
  bson_init(&w->filter);
  BSON_APPEND_INT32(&w->filter, "id", id);
  bson_t guard;
  BSON_APPEND_DOCUMENT_BEGIN(&w->filter, "counter", &guard);
  BSON_APPEND_INT64(&guard, "$lte", counter);
  bson_append_document_end(&w->filter, &guard);
  char *v = malloc(pad + 1);
  memset(v, 'x', pad);
  v[pad] = '\0';
  bson_init(&w->update);
  bson_t set;
  BSON_APPEND_DOCUMENT_BEGIN(&w->update, "$set", &set);
  BSON_APPEND_INT64(&set, "counter", counter);
  BSON_APPEND_UTF8(&set, "v", v);
  BSON_APPEND_INT32(&set, "code", code);
  bson_append_document_end(&w->update, &set);
  free(v);
}

static void remove_one(rtu_write_t *w, int id) {
  memset(w, 0, sizeof *w);
  w->kind = RTU_WRITE_DELETE;
  bson_init(&w->filter);
  BSON_APPEND_INT32(&w->filter, "id", id);
  bson_init(&w->update);
}

static void free_writes(rtu_write_t *w, size_t n) {
  for (size_t i = 0; i < n; i++) {
    bson_destroy(&w[i].filter);
    bson_destroy(&w[i].update);
    bson_free(w[i].error);
  }
}

static int64_t count(const bson_t *filter) {
  bson_error_t err;
  int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &err);
  if (n < 0) fprintf(stderr, "count: %s\n", err.message);
  return n;
}

static int64_t code_of(int id) {
  bson_t *filter = BCON_NEW("id", BCON_INT32(id));
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
  const bson_t *doc;
  int64_t code = -1;
  bson_iter_t it;
  if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "code"))
    code = bson_iter_as_int64(&it);
  mongoc_cursor_destroy(cur);
  bson_destroy(filter);
  return code;
}

/* 1,200 records of 20 KiB: about 24 MiB, more than one command may carry. */
static void test_split(rtu_store_mongo_writer_t *wr) {
  enum { N = 1200 };
  static rtu_write_t w[N];
  reset_collection();
  for (int i = 0; i < N; i++) upsert(&w[i], i, 1, 20 * 1024, i);
  char err[512] = "";
  uint64_t commands = 0;
  rtu_err_t rc = rtu_store_mongo_write(coll, wr, w, N, &commands, err, sizeof err);
  CHECK(rc == RTU_OK, "split: rc %d: %s", rc, err);
  CHECK(commands == 2, "split: %llu commands, expected 2", (unsigned long long)commands);
  size_t done = 0;
  for (int i = 0; i < N; i++) done += w[i].status == RTU_WRITE_DONE;
  CHECK(done == N, "split: %zu of %d done", done, N);
  bson_t empty = BSON_INITIALIZER;
  CHECK(count(&empty) == N, "split: %lld documents", (long long)count(&empty));
  CHECK(code_of(0) == 0 && code_of(N - 1) == N - 1);
  free_writes(w, N);
}

/* Statuses come back from the command that carried each write: a stale record
 * (the guard excluded it, the upsert met mia_primary_key_index) and a duplicate
 * on the user's unique index, both in the second command of the run. */
static void test_statuses(rtu_store_mongo_writer_t *wr) {
  enum { N = 1000 };
  static rtu_write_t w[N];
  reset_collection();
  char err[512] = "";
  uint64_t commands = 0;
  rtu_write_t first[2];
  upsert(&first[0], 900, 5, 10, 100000); /* stored with counter 5 */
  upsert(&first[1], 5000, 1, 10, 424242); /* holds code 424242, not in the run */
  CHECK(rtu_store_mongo_write(coll, wr, first, 2, &commands, err, sizeof err) == RTU_OK, "%s", err);
  free_writes(first, 2);

  for (int i = 0; i < N; i++) upsert(&w[i], i, 3, 32 * 1024, i);
  /* 900: counter 3 against the stored 5: stale. 950: code 424242 again. */
  bson_destroy(&w[950].filter);
  bson_destroy(&w[950].update);
  upsert(&w[950], 950, 3, 32 * 1024, 424242);
  commands = 0;
  rtu_err_t rc = rtu_store_mongo_write(coll, wr, w, N, &commands, err, sizeof err);
  CHECK(rc == RTU_OK, "statuses: rc %d: %s", rc, err);
  CHECK(commands == 2, "statuses: %llu commands", (unsigned long long)commands);
  CHECK(w[900].status == RTU_WRITE_STALE, "900: status %d", w[900].status);
  CHECK(w[950].status == RTU_WRITE_FAILED, "950: status %d", w[950].status);
  CHECK(w[950].error && strstr(w[950].error, "collection items") &&
            strstr(w[950].error, "11000"),
        "950: error %s", w[950].error ? w[950].error : "(none)");
  size_t done = 0;
  for (int i = 0; i < N; i++) done += w[i].status == RTU_WRITE_DONE;
  CHECK(done == N - 2, "statuses: %zu done", done);
  CHECK(code_of(900) == 100000, "the stale write changed nothing");
  CHECK(code_of(950) == -1, "the refused record was not written");
  free_writes(w, N);
}

/* Deletes go as a delete command beside the updates of the same run. */
static void test_deletes(rtu_store_mongo_writer_t *wr) {
  rtu_write_t w[3];
  reset_collection();
  char err[512] = "";
  uint64_t commands = 0;
  upsert(&w[0], 1, 1, 10, 1);
  upsert(&w[1], 2, 1, 10, 2);
  CHECK(rtu_store_mongo_write(coll, wr, w, 2, &commands, err, sizeof err) == RTU_OK, "%s", err);
  free_writes(w, 2);
  remove_one(&w[0], 1);
  upsert(&w[1], 3, 1, 10, 3);
  remove_one(&w[2], 99); /* nothing to delete: still done */
  commands = 0;
  CHECK(rtu_store_mongo_write(coll, wr, w, 3, &commands, err, sizeof err) == RTU_OK, "%s", err);
  CHECK(commands == 2, "deletes: %llu commands", (unsigned long long)commands);
  CHECK(w[0].status == RTU_WRITE_DONE && w[1].status == RTU_WRITE_DONE &&
        w[2].status == RTU_WRITE_DONE);
  CHECK(code_of(1) == -1 && code_of(2) == 2 && code_of(3) == 3);
  free_writes(w, 3);
}

/* What needs the driver's checks keeps going through libmongoc's bulk: a
 * replacement, and an update with an empty field name, which the driver refuses
 * before anything is sent. */
static void test_bulk_fallback(rtu_store_mongo_writer_t *wr) {
  rtu_write_t w[2];
  reset_collection();
  char err[512] = "";
  uint64_t commands = 0;
  upsert(&w[0], 7, 1, 10, 7);
  memset(&w[1], 0, sizeof w[1]);
  w[1].kind = RTU_WRITE_REPLACE;
  w[1].upsert = true;
  bson_init(&w[1].filter);
  BSON_APPEND_INT32(&w[1].filter, "id", 8);
  bson_init(&w[1].update);
  BSON_APPEND_INT32(&w[1].update, "id", 8);
  BSON_APPEND_INT32(&w[1].update, "code", 8);
  CHECK(rtu_store_mongo_write(coll, wr, w, 2, &commands, err, sizeof err) == RTU_OK, "%s", err);
  CHECK(code_of(7) == 7 && code_of(8) == 8);
  free_writes(w, 2);

  upsert(&w[0], 9, 1, 10, 9);
  upsert(&w[1], 10, 1, 10, 10);
  bson_destroy(&w[1].update);
  bson_init(&w[1].update);
  bson_t set;
  BSON_APPEND_DOCUMENT_BEGIN(&w[1].update, "$set", &set);
  BSON_APPEND_INT32(&set, "", 1);
  bson_append_document_end(&w[1].update, &set);
  w[1].validate = true;
  rtu_err_t rc = rtu_store_mongo_write(coll, wr, w, 2, &commands, err, sizeof err);
  CHECK(rc == RTU_ERR_DATA, "empty field name: rc %d", rc);
  CHECK(w[1].status == RTU_WRITE_FAILED && w[1].error != NULL);
  CHECK(code_of(9) == -1, "nothing was sent");
  free_writes(w, 2);
}

int main(void) {
  char url[256];
  if (!mongo_server_start("store-write", url, sizeof url)) return 1;
  mongoc_init();
  client = mongoc_client_new(url);
  if (!client) {
    fprintf(stderr, "cannot connect to %s\n", url);
    return 1;
  }
  rtu_store_mongo_writer_t wr;
  rtu_store_mongo_writer_init(&wr);
  test_split(&wr);
  test_statuses(&wr);
  test_deletes(&wr);
  test_bulk_fallback(&wr);
  rtu_store_mongo_writer_clear(&wr);
  mongoc_collection_destroy(coll);
  mongoc_client_destroy(client);
  mongoc_cleanup();
  mongo_server_stop();
  return CHECK_DONE();
}
