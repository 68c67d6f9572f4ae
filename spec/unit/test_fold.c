/*
 * test_fold.c: the property of batch.c's folding. Random sequences of inserts,
 * updates, deletes and primary-key changes for a few keys (golden-gate messages
 * with partial `after` images, positions and timestamps that sometimes go back
 * or repeat) are applied one message per rtu_batch_run into database A and as
 * one run into database B; both must leave the same documents (every field but
 * _id, createdAt and updatedAt), report the same number of stale messages, end
 * with the same pr-update per key (the last one-by-one processing produced: its
 * operationType, before, after and __internal__kafkaInfo, produced to a librdkafka
 * mock cluster and read back), and the folded projection changes must include
 * every single view that the record before the run or after it gives (when it
 * changed), and nothing one by one did not give.
 * And a strategy failing (error, timeout, memory cap) on one record of a run: the
 * run stops at that record's message with the projection changes of the earlier
 * ones written.
 *
 * It starts its own MongoDB test server ($RTU_TOOLS_DIR/mongo-test-server.py).
 * RTU_FOLD_SEED=<n> replays a seed, RTU_FOLD_SEQUENCES=<n> changes the count.
 */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <mongoc/mongoc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "check.h"
#include "config.h"
#include "config_files.h"
#include "emit.h"
#include "helpers.h"
#include "mongo_server.h"
#include "log.h"
#include "script.h"
#include "store.h"
#include "store_mongo.h"

#define DB_A "rtu_fold_one_by_one"
#define DB_B "rtu_fold_folded"
#define TOPIC "items-topic"
#define PR_TOPIC_A "pr-one-by-one"
#define PR_TOPIC_B "pr-folded"
#define PC_COLL "pc"
#define MAX_MSGS 16
#define MAX_PRINTED 8 /* mismatching sequences printed in full */

/* ---- random ------------------------------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n) { /* splitmix64, uniform enough for tests */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return n ? (uint32_t)(z % n) : 0;
}

/* ---- configurations ------------------------------------------------------- */

static char *root, *map_dir, *strategies_dir, *pr_dir_a, *pr_dir_b;
static char mongo_url[256], brokers[512];

typedef struct {
  const char *name;
  rtu_config_t *cfg_a, *cfg_b;
  rtu_script_t *script_a, *script_b;
} mode_t_;

static mode_t_ modes[4] = {
    {"soft/pos", NULL, NULL, NULL, NULL},
    {"hard/pos", NULL, NULL, NULL, NULL},
    {"soft/timestamp", NULL, NULL, NULL, NULL},
    {"hard/timestamp", NULL, NULL, NULL, NULL},
};

static void fold_env(int mode, const char *db) {
  env_clear();
  env_set("KAFKA_BROKERS", brokers);
  env_set("KAFKA_GROUP_ID", "rtu-test");
  env_set("MONGODB_URL", mongo_url);
  env_set("PROJECTIONS_DATABASE_NAME", db);
  env_set("PROJECTIONS_CHANGES_ENABLED", "true");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", PC_COLL);
  env_set("STRATEGIES_FOLDER", strategies_dir);
  env_set("GENERATE_KAFKA_PROJECTION_UPDATES", "true");
  env_set("KAFKA_PROJECTION_UPDATES_FOLDER", strcmp(db, DB_B) ? pr_dir_a : pr_dir_b);
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("MAP_TABLE_FOLDER", map_dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"" TOPIC "\": \"items\"}");
  env_set("KAFKA_MESSAGE_ADAPTER", "golden-gate");
  env_set("USE_UPSERT", "true");
  env_set("FORCE_CHECK_ON_OFFSET", "true");
  env_set("DELETE_MECHANISM", mode % 2 ? "hard" : "soft");
  env_set("USE_POS_AS_COUNTER", mode < 2 ? "true" : "false");
}

static rtu_config_t *load_config(void) {
  rtu_problems_t p = {0};
  rtu_config_t *c = rtu_config_load(env_get, lua_runtime_dir(), &p);
  if (!c) {
    print_problems(&p);
    fprintf(stderr, "test configuration refused\n");
    exit(2);
  }
  rtu_problems_free(&p);
  return c;
}

static rtu_config_t *make_config(int mode, const char *db) {
  fold_env(mode, db);
  return load_config();
}

static rtu_script_t *make_script(const rtu_config_t *c) {
  rtu_problems_t p = {0};
  rtu_script_t *s = rtu_script_new(c, &p);
  if (!s) {
    print_problems(&p);
    fprintf(stderr, "script state refused\n");
    exit(2);
  }
  rtu_problems_free(&p);
  return s;
}

/* ---- sequences ------------------------------------------------------------ */

typedef struct {
  char value[2048];
  char key[32];
  rtu_msg_t msg; /* copied into a contiguous array for a run */
} gen_msg_t;

static int64_t pos_clock, ts_clock;

/* Moves a counter: mostly forward, sometimes equal, sometimes back (stale). */
static int64_t step(int64_t *clock) {
  uint32_t r = rnd(10);
  if (r < 2) *clock -= 1 + rnd(4);
  else if (r < 4) { /* equal */ }
  else *clock += 1 + rnd(3);
  return *clock;
}

/* A random subset of the three non-key fields, with values of varied types. */
static void random_fields(char *out, size_t size) {
  static const char *names[] = {"A", "B", "C"};
  size_t n = 0;
  out[0] = '\0';
  for (int f = 0; f < 3; f++) {
    if (rnd(2)) continue;
    char v[64];
    switch (rnd(7)) {
    case 0: snprintf(v, sizeof v, "%u", rnd(10)); break;
    case 1: snprintf(v, sizeof v, "\"s%u\"", rnd(10)); break;
    case 2: snprintf(v, sizeof v, "%llu", 9007199254740993ULL + rnd(5)); break;
    case 3: snprintf(v, sizeof v, "%u.5", rnd(10)); break;
    case 4: snprintf(v, sizeof v, "null"); break;
    case 5: snprintf(v, sizeof v, "{\"x\": %u, \"y\": [%u]}", rnd(3), rnd(3)); break;
    default: snprintf(v, sizeof v, "%s", rnd(2) ? "true" : "false"); break;
    }
    n += (size_t)snprintf(out + n, size - n, ", \"%s\": %s", names[f], v);
  }
}

static void gen_message(gen_msg_t *g, int64_t offset, int nkeys) {
  int k = 1 + (int)rnd((uint32_t)nkeys);
  int64_t pos = step(&pos_clock), ts = step(&ts_clock);
  char pos_text[32], fa[256], fb[256];
  if (rnd(2)) snprintf(pos_text, sizeof pos_text, "\"%020lld\"", (long long)pos);
  else snprintf(pos_text, sizeof pos_text, "%lld", (long long)pos);
  random_fields(fa, sizeof fa);
  random_fields(fb, sizeof fb);
  uint32_t r = rnd(100);
  if (r < 25) {
    snprintf(g->value, sizeof g->value,
             "{\"op_type\": \"I\", \"pos\": %s, \"before\": null, \"after\": {\"ID\": %d%s}}",
             pos_text, k, fa);
  } else if (r < 60) {
    char before[400];
    if (rnd(2)) snprintf(before, sizeof before, "null");
    else snprintf(before, sizeof before, "{\"ID\": %d%s}", k, fb);
    snprintf(g->value, sizeof g->value,
             "{\"op_type\": \"U\", \"pos\": %s, \"before\": %s, \"after\": {\"ID\": %d%s}}",
             pos_text, before, k, fa);
  } else if (r < 82) {
    snprintf(g->value, sizeof g->value,
             "{\"op_type\": \"D\", \"pos\": %s, \"before\": {\"ID\": %d%s}, \"after\": null}",
             pos_text, k, fb);
  } else { /* primary-key change k -> k2 */
    int k2 = 1 + (int)rnd((uint32_t)nkeys);
    if (k2 == k) k2 = k % nkeys + 1;
    snprintf(g->value, sizeof g->value,
             "{\"op_type\": \"U\", \"pos\": %s, \"before\": {\"ID\": %d%s},"
             " \"after\": {\"ID\": %d%s}}",
             pos_text, k, fb, k2, fa);
  }
  snprintf(g->key, sizeof g->key, "%d", k);
  memset(&g->msg, 0, sizeof g->msg);
  g->msg.topic = TOPIC;
  g->msg.partition = 0;
  g->msg.offset = offset;
  g->msg.timestamp = ts;
  g->msg.key = g->key;
  g->msg.key_len = strlen(g->key);
  g->msg.value = g->value;
  g->msg.value_len = strlen(g->value);
}

/* ---- MongoDB helpers ------------------------------------------------------ */

static mongoc_client_t *client;

static void drop_db(const char *name) {
  mongoc_database_t *db = mongoc_client_get_database(client, name);
  bson_error_t err;
  if (!mongoc_database_drop(db, &err) && err.code != 26 /* NamespaceNotFound */)
    fprintf(stderr, "dropDatabase %s: %s\n", name, err.message);
  mongoc_database_destroy(db);
}

typedef struct {
  bson_t *docs[MAX_MSGS * 2];
  size_t n;
} docs_t;

static void read_docs(const char *db, docs_t *out) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "items");
  bson_t filter = BSON_INITIALIZER;
  bson_t *opts = json_doc("{\"sort\": {\"id\": 1}}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
  const bson_t *doc;
  out->n = 0;
  while (mongoc_cursor_next(cur, &doc))
    if (out->n < sizeof out->docs / sizeof out->docs[0]) out->docs[out->n++] = bson_copy(doc);
  bson_error_t err;
  if (mongoc_cursor_error(cur, &err)) fprintf(stderr, "find in %s: %s\n", db, err.message);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(&filter);
  mongoc_collection_destroy(coll);
}

static void free_docs(docs_t *d) {
  for (size_t i = 0; i < d->n; i++) bson_destroy(d->docs[i]);
  d->n = 0;
}

static void print_doc(const char *label, const bson_t *doc) {
  char *s = doc ? bson_as_relaxed_extended_json(doc, NULL) : NULL;
  fprintf(stderr, "      %s %s\n", label, s ? s : "(none)");
  bson_free(s);
}

/* ---- one sequence --------------------------------------------------------- */

typedef struct {
  rtu_store_t *store;
  rtu_batch_t *batch;
} side_t;

/* One producer for every side and case: a producer per case would cost its
 * threads and connection every time. */
static rtu_emit_t *emit;

static bool open_side(side_t *s, const rtu_config_t *cfg, rtu_script_t *script) {
  char err[RTU_ERRSTR_SIZE];
  s->store = rtu_store_mongo_new(cfg, err, sizeof err);
  if (!s->store) {
    fprintf(stderr, "rtu_store_mongo_new: %s\n", err);
    return false;
  }
  if (rtu_store_ensure_indexes(s->store, err, sizeof err) != RTU_OK) {
    fprintf(stderr, "rtu_store_ensure_indexes: %s\n", err);
    rtu_store_free(s->store);
    return false;
  }
  s->batch = rtu_batch_new(cfg, script, s->store);
  if (!s->batch) return false;
  if (cfg->gen_kafka_pr_updates) rtu_batch_set_emit(s->batch, emit);
  return true;
}

static void close_side(side_t *s) {
  rtu_batch_free(s->batch);
  rtu_store_free(s->store);
}

/* ---- pr-update messages, read back from the mock cluster ------------------ */

static rd_kafka_t *mock_rk, *reader;
static rd_kafka_mock_cluster_t *mcluster;

#define MAX_KEYS 16

typedef struct {
  char *key[MAX_KEYS], *value[MAX_KEYS]; /* the last value per message key */
  size_t n;
} last_t;

static void last_free(last_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->key[i]);
    free(l->value[i]);
  }
  l->n = 0;
}

static void last_put(last_t *l, const rd_kafka_message_t *m) {
  char *key = strndup(m->key ? m->key : "", m->key_len);
  char *value = strndup(m->payload ? m->payload : "", m->len);
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->key[i], key)) {
      free(key);
      free(l->value[i]);
      l->value[i] = value;
      return;
    }
  if (l->n == MAX_KEYS) {
    free(key);
    free(value);
    return;
  }
  l->key[l->n] = key;
  l->value[l->n++] = value;
}

static const char *last_get(const last_t *l, const char *key) {
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->key[i], key)) return l->value[i];
  return NULL;
}

static int64_t read_next[2]; /* per pr-update topic: the next offset to read */

static bool start_kafka(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err) != RD_KAFKA_CONF_OK) return false;
  mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!mock_rk) return false;
  mcluster = rd_kafka_mock_cluster_new(mock_rk, 1);
  if (!mcluster) return false;
  snprintf(brokers, sizeof brokers, "%s", rd_kafka_mock_cluster_bootstraps(mcluster));
  if (rd_kafka_mock_topic_create(mcluster, PR_TOPIC_A, 1, 1) ||
      rd_kafka_mock_topic_create(mcluster, PR_TOPIC_B, 1, 1))
    return false;
  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
      rd_kafka_conf_set(conf, "group.id", "fold-reader", err, sizeof err) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
      rd_kafka_conf_set(conf, "fetch.wait.max.ms", "5", err, sizeof err) ||
      rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err)) {
    fprintf(stderr, "reader: %s\n", err);
    rd_kafka_conf_destroy(conf);
    return false;
  }
  reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!reader) return false;
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(2);
  rd_kafka_topic_partition_list_add(parts, PR_TOPIC_A, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_topic_partition_list_add(parts, PR_TOPIC_B, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_resp_err_t e = rd_kafka_assign(reader, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  return e == RD_KAFKA_RESP_ERR_NO_ERROR;
}

static void stop_kafka(void) {
  if (reader) {
    rd_kafka_consumer_close(reader);
    rd_kafka_destroy(reader);
  }
  if (mcluster) rd_kafka_mock_cluster_destroy(mcluster);
  if (mock_rk) rd_kafka_destroy(mock_rk);
}

/* Reads every pr-update produced since the last call, the last per key of each
 * side into a and b (either may be NULL: the messages are then dropped). */
static bool read_pr_updates(last_t *a, last_t *b) {
  int64_t high[2];
  const char *topics[2] = {PR_TOPIC_A, PR_TOPIC_B};
  for (int t = 0; t < 2; t++) {
    int64_t low;
    if (rd_kafka_query_watermark_offsets(reader, topics[t], 0, &low, &high[t], 5000)) return false;
  }
  int64_t deadline = rtu_now_mono_ms() + 10000;
  while (read_next[0] < high[0] || read_next[1] < high[1]) {
    if (rtu_now_mono_ms() > deadline) return false;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(reader, 100);
    if (!m) continue;
    if (!m->err) {
      int t = !strcmp(rd_kafka_topic_name(m->rkt), PR_TOPIC_B);
      read_next[t] = m->offset + 1;
      last_t *l = t ? b : a;
      if (l) last_put(l, m);
    }
    rd_kafka_message_destroy(m);
  }
  return true;
}

/* One key's last pr-update one by one (a) and folded (b): the same operation,
 * the same before and after (but for what each run draws anew) and the same
 * message named. */
static bool same_pr_update(const char *a, const char *b) {
  if (!a || !b) return a == b;
  bson_error_t err;
  bson_t *da = bson_new_from_json((const uint8_t *)a, -1, &err);
  bson_t *db = bson_new_from_json((const uint8_t *)b, -1, &err);
  bool same = da && db;
  static const char *const skip[] = {"_id", "createdAt", "updatedAt", NULL};
  static const char *const fields[] = {"operationType", "before", "after", "__internal__kafkaInfo",
                                       "primaryKeys", "projectionName", NULL};
  for (size_t f = 0; same && fields[f]; f++) {
    bson_iter_t ia, ib;
    bool ha = bson_iter_init_find(&ia, da, fields[f]), hb = bson_iter_init_find(&ib, db, fields[f]);
    if (ha != hb) same = false;
    else if (!ha) continue;
    else if (BSON_ITER_HOLDS_DOCUMENT(&ia) && BSON_ITER_HOLDS_DOCUMENT(&ib)) {
      bson_t sa, sb;
      const uint8_t *d;
      uint32_t len;
      bson_iter_document(&ia, &len, &d);
      bson_init_static(&sa, d, len);
      bson_iter_document(&ib, &len, &d);
      bson_init_static(&sb, d, len);
      same = bson_equal_unordered(&sa, &sb, skip);
    } else {
      bson_t sa = BSON_INITIALIZER, sb = BSON_INITIALIZER;
      bson_append_iter(&sa, "v", 1, &ia);
      bson_append_iter(&sb, "v", 1, &ib);
      same = bson_equal_unordered(&sa, &sb, NULL);
      bson_destroy(&sa);
      bson_destroy(&sb);
    }
  }
  if (da) bson_destroy(da);
  if (db) bson_destroy(db);
  return same;
}

/* ---- projection changes ------------------------------------------------- */

/* The strategies of the random sequences, and the same in C: single view
 * sv_items, one per record, and sv_a, one per string value of its field a
 * (shared between records). */
static const char *VIEWS = "return function(doc, db, log) return { { ID = doc.id } } end\n";
static const char *VIEWS_A =
    "return function(doc, db, log)\n"
    "  if type(doc.a) == 'string' then return { { A = doc.a } } end\n"
    "  return {}\n"
    "end\n";

#define MAX_VIEWS 64

typedef struct {
  char name[MAX_VIEWS][48];
  size_t n;
} views_t;

static void views_add(views_t *v, const char *name) {
  for (size_t i = 0; i < v->n; i++)
    if (!strcmp(v->name[i], name)) return;
  if (v->n < MAX_VIEWS) snprintf(v->name[v->n++], sizeof v->name[0], "%s", name);
}

static bool views_has(const views_t *v, const char *name) {
  for (size_t i = 0; i < v->n; i++)
    if (!strcmp(v->name[i], name)) return true;
  return false;
}

/* The single views the strategy gives for a record (or identifier) doc, with the
 * identifier's field names or the record's. */
static void views_of(views_t *v, const bson_t *doc, const char *id_field, const char *a_field) {
  bson_iter_t it;
  char name[48];
  if (bson_iter_init_find(&it, doc, id_field) && BSON_ITER_HOLDS_NUMBER(&it)) {
    snprintf(name, sizeof name, "ID=%lld", (long long)bson_iter_as_int64(&it));
    views_add(v, name);
  }
  if (bson_iter_init_find(&it, doc, a_field) && BSON_ITER_HOLDS_UTF8(&it)) {
    snprintf(name, sizeof name, "A=%.40s", bson_iter_utf8(&it, NULL));
    views_add(v, name);
  }
}

static void read_views(const char *db, views_t *v) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, db, PC_COLL);
  bson_t filter = BSON_INITIALIZER;
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
  const bson_t *doc;
  v->n = 0;
  bson_iter_t it;
  while (mongoc_cursor_next(cur, &doc)) {
    if (!bson_iter_init_find(&it, doc, "identifier") || !BSON_ITER_HOLDS_DOCUMENT(&it)) continue;
    const uint8_t *d;
    uint32_t len;
    bson_t id;
    bson_iter_document(&it, &len, &d);
    if (bson_init_static(&id, d, len)) views_of(v, &id, "ID", "A");
  }
  bson_error_t err;
  if (mongoc_cursor_error(cur, &err)) fprintf(stderr, "find in %s: %s\n", db, err.message);
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  mongoc_collection_destroy(coll);
}

static void clear_views(const char *db) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, db, PC_COLL);
  bson_t filter = BSON_INITIALIZER;
  bson_error_t err;
  if (!mongoc_collection_delete_many(coll, &filter, NULL, NULL, &err) && err.code != 26)
    fprintf(stderr, "delete in %s: %s\n", db, err.message);
  bson_destroy(&filter);
  mongoc_collection_destroy(coll);
}

/* Applies msgs one run per message; returns false on an error. */
static bool one_by_one(side_t *s, gen_msg_t *g, size_t n, size_t *stale, char *why, size_t wsz) {
  for (size_t i = 0; i < n; i++) {
    rtu_run_result_t res;
    rtu_err_t rc = rtu_batch_run(s->batch, 0, &g[i].msg, 1, NULL, &res);
    if (rc != RTU_OK || res.failed) {
      snprintf(why, wsz, "message %zu: %s %s", i, rtu_err_name(rc != RTU_OK ? rc : res.err),
               res.cause);
      return false;
    }
    if (stale) *stale += res.stale;
  }
  return true;
}

static size_t mismatches, printed;

static void print_sequence(const char *label, const mode_t_ *m, gen_msg_t *g, size_t npre,
                           size_t n) {
  fprintf(stderr, "  %s, mode %s\n", label, m->name);
  for (size_t i = 0; i < npre + n; i++)
    fprintf(stderr, "    %s offset %lld ts %lld %s\n", i < npre ? "prefix" : "msg   ",
            (long long)g[i].msg.offset, (long long)g[i].msg.timestamp, g[i].value);
}

/* Applies g[0..npre) one by one to both databases, then g[npre..npre+n) one by
 * one to A and as one run to B, and compares. */
static void run_case(const char *label, mode_t_ *m, gen_msg_t *g, size_t npre, size_t n) {
  drop_db(DB_A);
  drop_db(DB_B);
  side_t a = {0}, b = {0};
  if (!open_side(&a, m->cfg_a, m->script_a) || !open_side(&b, m->cfg_b, m->script_b)) {
    CHECK(false, "%s: cannot open the store", label);
    close_side(&a);
    close_side(&b);
    return;
  }

  char why[RTU_ERRSTR_SIZE + 64];
  size_t stale_a = 0, stale_b = 0;
  /* The same prefix one by one on both sides: records that exist before the run. */
  bool ok = one_by_one(&a, g, npre, NULL, why, sizeof why) &&
            one_by_one(&b, g, npre, NULL, why, sizeof why);
  CHECK(ok, "%s: prefix: %s", label, why);
  CHECK(read_pr_updates(NULL, NULL), "%s: the prefix's pr-updates cannot be read", label);
  clear_views(DB_A);
  clear_views(DB_B);
  docs_t d0;
  read_docs(DB_B, &d0);
  ok = ok && one_by_one(&a, g + npre, n, &stale_a, why, sizeof why);
  CHECK(ok, "%s: one by one: %s", label, why);
  rtu_run_result_t res;
  memset(&res, 0, sizeof res);
  rtu_msg_t run[MAX_MSGS];
  for (size_t i = 0; i < n; i++) run[i] = g[npre + i].msg;
  rtu_err_t rc = rtu_batch_run(b.batch, 0, run, n, NULL, &res);
  CHECK(rc == RTU_OK && !res.failed, "%s: folded run: %s %s", label, rtu_err_name(rc), res.cause);
  if (rc == RTU_OK && !res.failed) {
    CHECK_EQ(res.next_offset, g[npre + n - 1].msg.offset + 1);
    CHECK_EQ(res.messages, n);
  }
  stale_b = res.stale;

  docs_t da, db;
  read_docs(DB_A, &da);
  read_docs(DB_B, &db);
  static const char *const skip[] = {"_id", "createdAt", "updatedAt", NULL};
  bool same = da.n == db.n;
  for (size_t i = 0; same && i < da.n; i++) same = bson_equal_unordered(da.docs[i], db.docs[i], skip);
  CHECK(same, "%s (%s): the folded run left other documents than one by one", label, m->name);
  CHECK(stale_a == stale_b, "%s (%s): stale one by one %zu, folded %zu", label, m->name, stale_a,
        stale_b);

  last_t la = {0}, lb = {0};
  CHECK(read_pr_updates(&la, &lb), "%s: the pr-updates cannot be read", label);
  bool same_pr = la.n == lb.n;
  for (size_t i = 0; same_pr && i < la.n; i++)
    same_pr = same_pr_update(la.value[i], last_get(&lb, la.key[i]));
  CHECK(same_pr, "%s (%s): the folded run's last pr-update of a key is not one by one's", label,
        m->name);

  /* Projection changes: every view of a changed record before or after the run,
   * and none that one by one did not find. */
  views_t va, vb, expected = {.n = 0};
  read_views(DB_A, &va);
  read_views(DB_B, &vb);
  for (int side = 0; side < 2; side++) {
    const docs_t *from = side ? &db : &d0, *to = side ? &d0 : &db;
    for (size_t i = 0; i < from->n; i++) {
      bson_iter_t it, jt;
      const bson_t *other = NULL;
      if (!bson_iter_init_find(&it, from->docs[i], "id")) continue;
      for (size_t j = 0; j < to->n && !other; j++)
        if (bson_iter_init_find(&jt, to->docs[j], "id") &&
            bson_iter_as_int64(&jt) == bson_iter_as_int64(&it))
          other = to->docs[j];
      if (!other || !bson_equal(other, from->docs[i])) views_of(&expected, from->docs[i], "id", "a");
    }
  }
  bool views_ok = true;
  for (size_t i = 0; i < expected.n; i++) views_ok &= views_has(&vb, expected.name[i]);
  for (size_t i = 0; i < vb.n; i++) views_ok &= views_has(&va, vb.name[i]);
  CHECK(views_ok, "%s (%s): folded projection changes miss a view or find one too many", label,
        m->name);

  if (!same || stale_a != stale_b || !same_pr || !views_ok) {
    mismatches++;
    if (printed++ < MAX_PRINTED) {
      print_sequence(label, m, g, npre, n);
      fprintf(stderr, "    stale: one by one %zu, folded %zu\n", stale_a, stale_b);
      size_t max = da.n > db.n ? da.n : db.n;
      for (size_t i = 0; i < max; i++) {
        bool eq = i < da.n && i < db.n && bson_equal_unordered(da.docs[i], db.docs[i], skip);
        fprintf(stderr, "    document %zu%s\n", i, eq ? " (same)" : " DIFFERS");
        if (!eq) {
          print_doc("one by one:", i < da.n ? da.docs[i] : NULL);
          print_doc("folded:    ", i < db.n ? db.docs[i] : NULL);
        }
      }
      for (size_t i = 0; i < la.n || i < lb.n; i++) {
        const char *k = i < la.n ? la.key[i] : lb.key[i];
        if (i >= la.n && last_get(&la, k)) continue;
        const char *va_ = last_get(&la, k), *vb_ = last_get(&lb, k);
        if (same_pr_update(va_, vb_)) continue;
        fprintf(stderr, "    pr-update %s one by one: %s\n", k, va_ ? va_ : "(none)");
        fprintf(stderr, "    pr-update %s folded:     %s\n", k, vb_ ? vb_ : "(none)");
      }
      fprintf(stderr, "    views expected:");
      for (size_t i = 0; i < expected.n; i++) fprintf(stderr, " %s", expected.name[i]);
      fprintf(stderr, "\n    views folded:");
      for (size_t i = 0; i < vb.n; i++) fprintf(stderr, " %s", vb.name[i]);
      fprintf(stderr, "\n    views one by one:");
      for (size_t i = 0; i < va.n; i++) fprintf(stderr, " %s", va.name[i]);
      fprintf(stderr, "\n");
    }
  }
  last_free(&la);
  last_free(&lb);
  free_docs(&d0);
  free_docs(&da);
  free_docs(&db);
  close_side(&a);
  close_side(&b);
}

static void run_sequence(uint64_t seed, int seq) {
  int mode = (int)rnd(4);
  int nkeys = 3 + (int)rnd(2);
  size_t npre = rnd(5), n = 1 + rnd(12);
  gen_msg_t g[MAX_MSGS];
  pos_clock = 1000 + rnd(100);
  ts_clock = 1700000000000LL + rnd(1000);
  for (size_t i = 0; i < npre + n; i++) gen_message(&g[i], (int64_t)i, nkeys);
  char label[160];
  snprintf(label, sizeof label, "random sequence %d (replay: RTU_FOLD_SEED=%llu)", seq,
           (unsigned long long)seed);
  run_case(label, &modes[mode], g, npre, n);
}

/* A hand-written case: values[] are golden-gate values, the first npre a prefix. */
static void directed(const char *label, int mode, const char *const *values, size_t npre,
                     size_t n) {
  gen_msg_t g[MAX_MSGS];
  for (size_t i = 0; i < npre + n; i++) {
    memset(&g[i], 0, sizeof g[i]);
    snprintf(g[i].value, sizeof g[i].value, "%s", values[i]);
    snprintf(g[i].key, sizeof g[i].key, "k");
    g[i].msg.topic = TOPIC;
    g[i].msg.offset = (int64_t)i;
    g[i].msg.timestamp = 1700000000000LL + (int64_t)i;
    g[i].msg.key = g[i].key;
    g[i].msg.key_len = 1;
    g[i].msg.value = g[i].value;
    g[i].msg.value_len = strlen(g[i].value);
  }
  run_case(label, &modes[mode], g, npre, n);
}

static void test_directed(void) {
  /* The plain cases of folding: updates merge, a soft delete keeps the data, a
   * hard delete and re-insert keeps only what came after, stale is skipped. */
  const char *merge[] = {
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": 1, \"B\": 1}}",
      "{\"op_type\": \"U\", \"pos\": 11, \"after\": {\"ID\": 1, \"B\": 2}}",
      "{\"op_type\": \"U\", \"pos\": 9, \"after\": {\"ID\": 1, \"C\": \"stale\"}}",
      "{\"op_type\": \"U\", \"pos\": 11, \"after\": {\"ID\": 1, \"C\": 3}}"};
  directed("directed: merge with a stale update", 0, merge, 0, 4);
  const char *soft[] = {
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": 1}}",
      "{\"op_type\": \"D\", \"pos\": 11, \"before\": {\"ID\": 1}}",
      "{\"op_type\": \"I\", \"pos\": 12, \"after\": {\"ID\": 1, \"B\": 2}}",
      "{\"op_type\": \"D\", \"pos\": 13, \"before\": {\"ID\": 1}}"};
  directed("directed: soft delete, re-insert, delete", 0, soft, 1, 3);
  directed("directed: hard delete, re-insert, delete", 1, soft, 1, 3);
  const char *key_change[] = {
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": 1}}",
      "{\"op_type\": \"U\", \"pos\": 11, \"before\": {\"ID\": 1}, \"after\": {\"ID\": 2, \"B\": 2}}",
      "{\"op_type\": \"U\", \"pos\": 12, \"before\": {\"ID\": 2}, \"after\": {\"ID\": 1, \"C\": 3}}"};
  directed("directed: key change there and back (soft)", 0, key_change, 1, 2);
  directed("directed: key change there and back (hard)", 1, key_change, 1, 2);

  /* Inserted and deleted within one run: one by one ends with a DELETE whose
   * before is the inserted record, even when a hard delete leaves nothing stored
   * (the fold once produced an INSERT of a DELETED record, or nothing). */
  const char *ins_del[] = {
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": \"s1\"}}",
      "{\"op_type\": \"U\", \"pos\": 11, \"after\": {\"ID\": 1, \"B\": 2}}",
      "{\"op_type\": \"D\", \"pos\": 12, \"before\": {\"ID\": 1}}"};
  directed("directed: insert, update and delete in one run (soft)", 0, ins_del, 0, 3);
  directed("directed: insert, update and delete in one run (hard)", 1, ins_del, 0, 3);
  const char *ins_del2[] = {ins_del[0], ins_del[2]};
  directed("directed: insert and delete in one run (soft)", 0, ins_del2, 0, 2);
  directed("directed: insert and delete in one run (hard)", 1, ins_del2, 0, 2);
  /* Deleted and inserted again: one by one ends with an INSERT, no before. */
  directed("directed: stored, hard delete and insert in one run", 1,
           (const char *[]){ins_del[0], ins_del[2], ins_del[0]}, 1, 2);

  /* A delete of a record that does not exist stores nothing one by one, so a
   * later message with a lower position is applied; the fold must agree. */
  const char *absent[] = {
      "{\"op_type\": \"D\", \"pos\": 20, \"before\": {\"ID\": 1}}",
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": 1}}"};
  directed("directed: delete of an absent record, then an older insert (soft)", 0, absent, 0, 2);
  directed("directed: delete of an absent record, then an older insert (hard)", 1, absent, 0, 2);
  /* A hard delete removes the record and its counter: one by one, an older
   * insert after it creates the record again. */
  const char *hard[] = {
      "{\"op_type\": \"I\", \"pos\": 10, \"after\": {\"ID\": 1, \"A\": 1}}",
      "{\"op_type\": \"D\", \"pos\": 20, \"before\": {\"ID\": 1}}",
      "{\"op_type\": \"I\", \"pos\": 15, \"after\": {\"ID\": 1, \"B\": 2}}"};
  directed("directed: hard delete, then an older insert", 1, hard, 1, 2);
}

/* ---- a strategy failing within a run ------------------------------------- */

#define DB_PC "rtu_fold_strategies"
#define PC_LIMIT_MS 1500

/* Hand-written strategy: ID 3 raises, ID 4 never ends, ID 6 exhausts the memory
 * cap, IDs 10..21 spin 0.15 s of CPU each: alone within the limit even on a
 * machine loaded ten times over (at 0.35 s, four times over was the margin, and a
 * callgrind benchmark beside the tests once used it up), twelve of them together
 * over it whatever the load (wall time is never less than the process's CPU time). */
static const char *PICKY =
    "return function(doc, db, log)\n"
    "  if doc.id == 3 then error('no single view for 3') end\n"
    "  if doc.id == 4 then while true do end end\n"
    "  if doc.id == 6 then local s = 'x' while true do s = s .. s end end\n"
    "  if doc.id >= 10 then local t = os.clock() while os.clock() - t < 0.15 do end end\n"
    "  return { { ID = doc.id } }\n"
    "end\n";

/* The ID of every projection change of single view sv_items, ascending. */
static size_t read_pc_ids(int64_t *ids, size_t cap) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, DB_PC, "pc");
  bson_t *filter = json_doc("{\"type\": \"sv_items\"}");
  bson_t *opts = json_doc("{\"sort\": {\"identifier.ID\": 1}}");
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
  const bson_t *doc;
  size_t n = 0;
  bson_iter_t it, id;
  while (mongoc_cursor_next(cur, &doc))
    if (n < cap && bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, "identifier.ID", &id))
      ids[n++] = bson_iter_as_int64(&id);
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  bson_destroy(filter);
  mongoc_collection_destroy(coll);
  return n;
}

/* Inserts of ids[0..n), offsets 100.. in order, as one run. */
static void run_inserts(side_t *side, const int *ids, size_t n, rtu_run_result_t *res,
                        rtu_err_t *rc) {
  gen_msg_t g[MAX_MSGS];
  rtu_msg_t msgs[MAX_MSGS];
  for (size_t i = 0; i < n; i++) {
    memset(&g[i], 0, sizeof g[i]);
    snprintf(g[i].value, sizeof g[i].value,
             "{\"op_type\": \"I\", \"pos\": %zu, \"after\": {\"ID\": %d, \"A\": 1}}", i + 1,
             ids[i]);
    snprintf(g[i].key, sizeof g[i].key, "{\"ID\": %d}", ids[i]);
    msgs[i] = (rtu_msg_t){.topic = TOPIC, .offset = 100 + (int64_t)i,
                          .timestamp = 1700000000000LL + (int64_t)i, .key = g[i].key,
                          .key_len = strlen(g[i].key), .value = g[i].value,
                          .value_len = strlen(g[i].value)};
  }
  *rc = rtu_batch_run(side->batch, 0, msgs, n, NULL, res);
}

static void test_strategy_failure(void) {
  char *maps = sub_dir(root, "pc-maps"), *strategies = sub_dir(root, "pc-strategies");
  write_file(maps, "mapTable.json",
             "{\"items\": {\"destination\": \"items\", \"conversion\": {"
             "\"ID\": {\"fieldName\": \"id\"}, \"A\": {\"fieldName\": \"a\"}},"
             " \"fieldsInKey\": [\"id\"], \"changes\": {\"sv_items\": \"__fromFile__[picky]\"}}}");
  write_file(strategies, "picky.lua", PICKY);
  fold_env(0, DB_PC);
  env_set("MAP_TABLE_FOLDER", maps);
  env_set("PROJECTIONS_CHANGES_ENABLED", "true");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", "pc");
  env_set("STRATEGIES_FOLDER", strategies);
  char limit[16];
  snprintf(limit, sizeof limit, "%d", PC_LIMIT_MS);
  env_set("STRATEGIES_MAX_EXEC_TIME_MS", limit);
  rtu_config_t *cfg = load_config();
  rtu_script_t *script = make_script(cfg);
  side_t side;
  drop_db(DB_PC);
  if (!open_side(&side, cfg, script)) {
    CHECK(false, "cannot open the store");
    goto done;
  }
  rtu_run_result_t res;
  rtu_err_t rc;
  int64_t got[MAX_MSGS];

  /* An error on the third message's record: the first two are fully done. */
  const int error_run[] = {1, 2, 3, 5, 6};
  run_inserts(&side, error_run, 5, &res, &rc);
  CHECK(rc == RTU_OK, "%s", res.cause);
  CHECK(res.failed && res.err == RTU_ERR_SCRIPT, "failed %d err %s", res.failed,
        rtu_err_name(res.err));
  CHECK_EQ(res.fail_offset, 102);
  CHECK_EQ(res.next_offset, 102);
  CHECK_EQ(res.changes, 2);
  CHECK_HAS(res.cause, "no single view for 3");
  CHECK_HAS(res.cause, "{\"id\":3}");
  size_t n = read_pc_ids(got, MAX_MSGS);
  CHECK(n == 2 && got[0] == 1 && got[1] == 2, "projection changes: %zu", n);

  /* A timeout on the second message's record. */
  drop_db(DB_PC);
  const int timeout_run[] = {7, 4, 8};
  int64_t t0 = rtu_now_mono_ms();
  run_inserts(&side, timeout_run, 3, &res, &rc);
  CHECK(rc == RTU_OK, "%s", res.cause);
  CHECK(res.failed && res.err == RTU_ERR_SCRIPT, "timeout: failed %d", res.failed);
  CHECK_EQ(res.fail_offset, 101);
  CHECK_HAS(res.cause, "STRATEGIES_MAX_EXEC_TIME_MS");
  CHECK(rtu_now_mono_ms() - t0 < 10 * PC_LIMIT_MS, "took %lld ms",
        (long long)(rtu_now_mono_ms() - t0));
  n = read_pc_ids(got, MAX_MSGS);
  CHECK(n == 1 && got[0] == 7, "projection changes after a timeout: %zu", n);

  /* The memory cap: a script error that says so. */
  drop_db(DB_PC);
  const int memory_run[] = {1, 6};
  run_inserts(&side, memory_run, 2, &res, &rc);
  CHECK(rc == RTU_OK, "%s", res.cause);
  CHECK(res.failed && res.err == RTU_ERR_SCRIPT, "memory: failed %d", res.failed);
  CHECK_EQ(res.fail_offset, 101);
  CHECK_HAS(res.cause, "memory limit");
  n = read_pc_ids(got, MAX_MSGS);
  CHECK(n == 1 && got[0] == 1, "projection changes after a memory error: %zu", n);

  /* Over the limit only as a batch: each record alone is within it, so the run
   * is applied whole, as the reference (one call per message) would. */
  drop_db(DB_PC);
  const int slow_run[] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
  run_inserts(&side, slow_run, 12, &res, &rc);
  CHECK(rc == RTU_OK && !res.failed, "slow batch: %s", res.cause);
  CHECK_EQ(res.next_offset, 112);
  n = read_pc_ids(got, MAX_MSGS);
  CHECK(n == 12 && got[0] == 10 && got[11] == 21, "projection changes of a slow batch: %zu", n);
  close_side(&side);
done:
  drop_db(DB_PC);
  rtu_script_free(script);
  rtu_config_free(cfg);
  free(maps);
  free(strategies);
}

int main(void) {
  uint64_t seed = 20240611;
  const char *env_seed = getenv("RTU_FOLD_SEED");
  if (env_seed && *env_seed) seed = strtoull(env_seed, NULL, 10);
  int sequences = 200;
  const char *env_n = getenv("RTU_FOLD_SEQUENCES");
  if (env_n && *env_n) sequences = atoi(env_n);
  printf("test_fold: seed %llu, %d sequences (RTU_FOLD_SEED / RTU_FOLD_SEQUENCES to change)\n",
         (unsigned long long)seed, sequences);
  fflush(stdout);
  rng_state = seed;
  rtu_log_set_level(RTU_LOG_ERROR);

  if (!mongo_server_start("fold", mongo_url, sizeof mongo_url)) {
    CHECK(false, "cannot start the MongoDB test server");
    mongo_server_stop();
    return CHECK_DONE();
  }
  setenv("MONGODB_URL", mongo_url, 1);
  if (!start_kafka()) {
    CHECK(false, "cannot start the librdkafka mock cluster");
    stop_kafka();
    mongo_server_stop();
    return CHECK_DONE();
  }
  mongoc_init();
  client = mongoc_client_new(mongo_url);
  mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);

  root = tmp_dir("fold");
  map_dir = sub_dir(root, "maps");
  write_file(map_dir, "mapTable.json",
             "{\"items\": {\"destination\": \"items\", \"conversion\": {"
             "\"ID\": {\"fieldName\": \"id\"}, \"A\": {\"fieldName\": \"a\"},"
             " \"B\": {\"fieldName\": \"b\"}, \"C\": {\"fieldName\": \"c\"}},"
             " \"fieldsInKey\": [\"id\"], \"changes\": {\"sv_items\": \"__fromFile__[views]\","
             " \"sv_a\": \"__fromFile__[views_a]\"}}}");
  strategies_dir = sub_dir(root, "strategies");
  write_file(strategies_dir, "views.lua", VIEWS);
  write_file(strategies_dir, "views_a.lua", VIEWS_A);
  pr_dir_a = sub_dir(root, "pr-a");
  pr_dir_b = sub_dir(root, "pr-b");
  write_file(pr_dir_a, "kafkaProjectionUpdates.json",
             "{\"items\": {\"updatesTopic\": \"" PR_TOPIC_A "\"}}");
  write_file(pr_dir_b, "kafkaProjectionUpdates.json",
             "{\"items\": {\"updatesTopic\": \"" PR_TOPIC_B "\"}}");
  for (int i = 0; i < 4; i++) {
    modes[i].cfg_a = make_config(i, DB_A);
    modes[i].cfg_b = make_config(i, DB_B);
    modes[i].script_a = make_script(modes[i].cfg_a);
    modes[i].script_b = make_script(modes[i].cfg_b);
  }
  char err[RTU_ERRSTR_SIZE];
  emit = rtu_emit_new(modes[0].cfg_a, err, sizeof err);
  CHECK(emit != NULL, "rtu_emit_new: %s", err);

  test_strategy_failure();
  test_directed();
  size_t directed_mismatches = mismatches;
  mismatches = 0;
  int64_t t0 = rtu_now_mono_ms();
  for (int s = 0; s < sequences; s++) run_sequence(seed, s);
  double secs = (double)(rtu_now_mono_ms() - t0) / 1000.0;
  printf("test_fold: %zu directed cases differed; %d random sequences in %.1f s (%.1f a second),"
         " %zu differed\n",
         directed_mismatches, sequences, secs, secs > 0 ? sequences / secs : 0.0, mismatches);

  drop_db(DB_A);
  drop_db(DB_B);
  for (int i = 0; i < 4; i++) {
    rtu_script_free(modes[i].script_a);
    rtu_script_free(modes[i].script_b);
    rtu_config_free(modes[i].cfg_a);
    rtu_config_free(modes[i].cfg_b);
  }
  rtu_emit_free(emit);
  mongoc_client_destroy(client);
  mongoc_cleanup();
  stop_kafka();
  mongo_server_stop();
  env_clear();
  rm_rf(root);
  free(root);
  free(map_dir);
  free(strategies_dir);
  free(pr_dir_a);
  free(pr_dir_b);
  return CHECK_DONE();
}
