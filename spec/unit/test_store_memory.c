/*
 * test_store_memory.c: the in-memory store of rtu test writes as the MongoDB
 * store reports the same writes (DONE / STALE), finds through rtu.matcher,
 * refuses an operator it does not know by name, and upserts projection changes
 * one per (type, identifier).
 */
#define _XOPEN_SOURCE 700
#include <bson/bson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "store_memory.h"

typedef struct {
  bson_t *docs[16];
  size_t n;
} found_t;

static void on_doc(void *ctx, const bson_t *doc) {
  found_t *f = ctx;
  if (f->n < 16) f->docs[f->n++] = bson_copy(doc);
}

static void found_free(found_t *f) {
  for (size_t i = 0; i < f->n; i++) bson_destroy(f->docs[i]);
  f->n = 0;
}

static bson_t *json(const char *text) {
  bson_error_t err;
  bson_t *b = bson_new_from_json((const uint8_t *)text, -1, &err);
  if (!b) {
    fprintf(stderr, "bad JSON in the test: %s: %s\n", text, err.message);
    exit(2);
  }
  return b;
}

static void set_write(rtu_write_t *w, rtu_write_kind_t kind, const char *filter,
                      const char *update, bool upsert) {
  bson_t *f = json(filter), *u = json(update);
  memset(w, 0, sizeof *w);
  w->kind = kind;
  bson_init(&w->filter);
  bson_init(&w->update);
  bson_concat(&w->filter, f);
  bson_concat(&w->update, u);
  w->upsert = upsert;
  bson_destroy(f);
  bson_destroy(u);
}

static void write_free(rtu_write_t *w) {
  bson_destroy(&w->filter);
  bson_destroy(&w->update);
  bson_free(w->error);
}

static int64_t field_int(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) ? bson_iter_as_int64(&it) : -1;
}

static const char *field_str(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)
             ? bson_iter_utf8(&it, NULL)
             : "";
}

static size_t find(rtu_store_t *st, const char *coll, const char *filter, found_t *f) {
  char err[RTU_ERRSTR_SIZE];
  bson_t *q = json(filter);
  found_free(f);
  rtu_err_t rc = rtu_store_find(st, coll, q, NULL, on_doc, f, err, sizeof err);
  CHECK(rc == RTU_OK, "find %s: %s", filter, err);
  bson_destroy(q);
  return f->n;
}

#define GUARD(c) "\"$or\": [{\"__internal__counter\": {\"$lte\": " #c "}}, " \
                 "{\"__internal__counter\": {\"$exists\": false}}]"

int main(void) {
  char err[RTU_ERRSTR_SIZE];
  char *pk[] = {"ID"};
  rtu_projection_t p = {.name = "pr", .destination = "pr", .pk_dst = pk, .npk = 1};
  rtu_config_t cfg = {.lua_dir = (char *)lua_runtime_dir(), .pc_collection = "pc"};
  rtu_store_t *st = rtu_store_memory_new(&cfg, err, sizeof err);
  CHECK(st != NULL, "%s", err);
  if (!st) return CHECK_DONE();
  found_t f = {0};

  /* seeded: one record with counter 10 */
  bson_t *seed = json("{\"ID\": 1, \"name\": \"a\", \"__internal__counter\": 10}");
  CHECK(rtu_store_memory_insert(st, "pr", seed, err, sizeof err) == RTU_OK);
  bson_destroy(seed);

  rtu_write_t w[5];
  /* an update under a guard the stored counter passes: applied in place */
  set_write(&w[0], RTU_WRITE_UPDATE, "{\"ID\": 1, " GUARD(20) "}",
            "{\"$set\": {\"name\": \"b\", \"__internal__counter\": 20}, "
            "\"$setOnInsert\": {\"createdAt\": 1}}", true);
  /* an older change: the guard excludes the record, the upsert meets its key: STALE */
  set_write(&w[1], RTU_WRITE_UPDATE, "{\"ID\": 1, " GUARD(5) "}",
            "{\"$set\": {\"name\": \"old\", \"__internal__counter\": 5}}", true);
  /* a new record: inserted with the filter's key, $set and $setOnInsert */
  set_write(&w[2], RTU_WRITE_UPDATE, "{\"ID\": 2, " GUARD(7) "}",
            "{\"$set\": {\"name\": \"n\"}, \"$setOnInsert\": {\"createdAt\": 3}}", true);
  /* no upsert and no record: nothing, and DONE (MongoDB's matched 0) */
  set_write(&w[3], RTU_WRITE_UPDATE, "{\"ID\": 3}", "{\"$set\": {\"name\": \"x\"}}", false);
  /* a replacement upserted */
  set_write(&w[4], RTU_WRITE_REPLACE, "{\"ID\": 4, " GUARD(9) "}",
            "{\"ID\": 4, \"name\": \"r\", \"__internal__counter\": 9}", true);
  CHECK(rtu_store_write(st, &p, w, 5, err, sizeof err) == RTU_OK, "%s", err);
  CHECK_EQ(w[0].status, RTU_WRITE_DONE);
  CHECK_EQ(w[1].status, RTU_WRITE_STALE);
  CHECK_EQ(w[2].status, RTU_WRITE_DONE);
  CHECK_EQ(w[3].status, RTU_WRITE_DONE);
  CHECK_EQ(w[4].status, RTU_WRITE_DONE);
  for (int i = 0; i < 5; i++) write_free(&w[i]);

  CHECK_EQ(find(st, "pr", "{\"ID\": 1}", &f), 1);
  if (f.n == 1) {
    CHECK(!strcmp(field_str(f.docs[0], "name"), "b"), "name %s", field_str(f.docs[0], "name"));
    CHECK_EQ(field_int(f.docs[0], "__internal__counter"), 20);
    CHECK_EQ(field_int(f.docs[0], "createdAt"), -1); /* $setOnInsert only on insert */
    CHECK(bson_has_field(f.docs[0], "_id"));
  }
  CHECK_EQ(find(st, "pr", "{\"ID\": 2}", &f), 1);
  if (f.n == 1) {
    CHECK(!strcmp(field_str(f.docs[0], "name"), "n"));
    CHECK_EQ(field_int(f.docs[0], "createdAt"), 3);
    CHECK(!bson_has_field(f.docs[0], "$or"), "the guard is not stored");
  }
  CHECK_EQ(find(st, "pr", "{\"ID\": 3}", &f), 0);
  CHECK_EQ(find(st, "pr", "{\"ID\": 4, \"name\": \"r\"}", &f), 1);

  /* a replacement keeps the stored _id and drops the fields it does not have */
  CHECK_EQ(find(st, "pr", "{\"ID\": 1}", &f), 1);
  bson_iter_t id_before;
  bson_oid_t oid;
  bson_oid_init(&oid, NULL);
  if (f.n == 1 && bson_iter_init_find(&id_before, f.docs[0], "_id"))
    bson_oid_copy(bson_iter_oid(&id_before), &oid);
  set_write(&w[0], RTU_WRITE_REPLACE, "{\"ID\": 1, " GUARD(30) "}",
            "{\"ID\": 1, \"other\": true, \"__internal__counter\": 30}", true);
  /* a delete under a guard the record passes removes it */
  set_write(&w[1], RTU_WRITE_DELETE, "{\"ID\": 2, " GUARD(8) "}", "{}", false);
  /* a delete under a guard it does not pass removes nothing */
  set_write(&w[2], RTU_WRITE_DELETE, "{\"ID\": 4, " GUARD(1) "}", "{}", false);
  CHECK(rtu_store_write(st, &p, w, 3, err, sizeof err) == RTU_OK, "%s", err);
  CHECK_EQ(w[0].status, RTU_WRITE_DONE);
  CHECK_EQ(w[1].status, RTU_WRITE_DONE);
  CHECK_EQ(w[2].status, RTU_WRITE_DONE);
  for (int i = 0; i < 3; i++) write_free(&w[i]);
  CHECK_EQ(find(st, "pr", "{\"ID\": 1}", &f), 1);
  if (f.n == 1) {
    bson_iter_t it;
    CHECK(!bson_has_field(f.docs[0], "name"), "a replacement drops the old fields");
    CHECK(bson_iter_init_find(&it, f.docs[0], "_id") && bson_oid_equal(bson_iter_oid(&it), &oid),
          "a replacement keeps _id");
  }
  CHECK_EQ(find(st, "pr", "{\"ID\": 2}", &f), 0);
  CHECK_EQ(find(st, "pr", "{\"ID\": 4}", &f), 1);

  /* find_keys: the stored records of a run's keys */
  bson_t *k1 = json("{\"ID\": 1}"), *k9 = json("{\"ID\": 9}"), *k4 = json("{\"ID\": 4}");
  bson_t *keys[] = {k1, k9, k4};
  found_free(&f);
  CHECK(rtu_store_find_keys(st, &p, keys, 3, on_doc, &f, err, sizeof err) == RTU_OK, "%s", err);
  CHECK_EQ(f.n, 2);
  bson_destroy(k1);
  bson_destroy(k9);
  bson_destroy(k4);

  /* lookups with options, and an operator the matcher does not know */
  bson_t *q = json("{\"ID\": {\"$gte\": 1}}"), *opts = json("{\"sort\": {\"ID\": -1}, \"limit\": 1}");
  found_free(&f);
  CHECK(rtu_store_find(st, "pr", q, opts, on_doc, &f, err, sizeof err) == RTU_OK, "%s", err);
  CHECK(f.n == 1 && field_int(f.docs[0], "ID") == 4, "sort and limit");
  bson_destroy(q);
  bson_destroy(opts);
  q = json("{\"name\": {\"$size\": 1}}");
  found_free(&f);
  CHECK(rtu_store_find(st, "pr", q, NULL, on_doc, &f, err, sizeof err) == RTU_ERR_DATA);
  CHECK(strstr(err, "$size") != NULL, "the error names the operator: %s", err);
  bson_destroy(q);

  /* projection changes: one document per (type, identifier), whatever the key order */
  rtu_msg_t msg = {.topic = "t", .partition = 0, .offset = 5, .timestamp = 1000,
                   .key = "{\"ID\":1}", .key_len = 8};
  bson_t *id1 = json("{\"a\": 1, \"b\": 2}"), *id2 = json("{\"b\": 2, \"a\": 1}");
  rtu_pc_t pcs[] = {{"sv", id1, &msg}, {"sv", id2, &msg}, {"other", id1, &msg}};
  CHECK(rtu_store_write_pcs(st, pcs, 3, err, sizeof err) == RTU_OK, "%s", err);
  CHECK_EQ(find(st, "pc", "{\"type\": \"sv\"}", &f), 1);
  CHECK_EQ(find(st, "pc", "{}", &f), 2);
  CHECK_EQ(find(st, "pc", "{\"changes.state\": \"NEW\", \"changes.offset\": \"5\"}", &f), 2);
  bson_destroy(id1);
  bson_destroy(id2);

  found_free(&f);
  rtu_store_free(st);
  return CHECK_DONE();
}
