/*
 * test_config.c: rtu_config_load with a fake environment and temporary folders:
 * the defaults of the reference (its section 7, with the product's choices where
 * it has none), the forced settings (basic adapter, USE_UPSERT=false), and one
 * line naming the variable, file and field for every problem, all at once.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_files.h"
#include "helpers.h"
#include "jsonpos.h"

static char *root;     /* temporary folder of this test */
static char *map_dir;  /* MAP_TABLE_FOLDER with a good mapTable.json */
static char *cast_dir; /* CAST_FUNCTIONS_FOLDER */

static const char *GOOD_MAP_TABLE =
    "{\n"
    "  \"registry\": {\n"
    "    \"destination\": \"registry-json\",\n"
    "    \"conversion\": {\n"
    "      \"USER_ID\": {\"fieldName\": \"userId\", \"cast\": \"__fromFile__[defaultCastToInteger]\"},\n"
    "      \"FISCAL_CODE\": {\"fieldName\": \"fiscalCode\"},\n"
    "      \"COINS\": {\"fieldName\": \"coins\", \"cast\": \"__fromFile__[myCast]\"}\n"
    "    },\n"
    "    \"fieldsInKey\": [\"fiscalCode\", \"userId\"],\n"
    "    \"changes\": {\"sv_pointofsale\": \"__fromFile__[pointOfSaleStrategy]\"}\n"
    "  },\n"
    "  \"orders\": {\n"
    "    \"destination\": \"orders-json\",\n"
    "    \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},\n"
    "    \"fieldsInKey\": [\"id\"]\n"
    "  }\n"
    "}\n";

/* The minimal environment of a valid configuration. */
static void base_env(void) {
  env_clear();
  env_set("KAFKA_BROKERS", "localhost:9092");
  env_set("KAFKA_GROUP_ID", "rtu-test");
  env_set("MONGODB_URL", "mongodb://localhost:27017");
  env_set("PROJECTIONS_DATABASE_NAME", "projections");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", "pc");
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("MAP_TABLE_FOLDER", map_dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"topic.registry\": \"registry\", \"topic.orders\": \"orders\"}");
}

static rtu_config_t *load(rtu_problems_t *p) {
  memset(p, 0, sizeof *p);
  return rtu_config_load(env_get, lua_runtime_dir(), p);
}

/* ---- happy path --------------------------------------------------------- */

static void test_defaults(void) {
  base_env();
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c != NULL, "a valid configuration was refused");
  CHECK_EQ(p.n, 0);
  print_problems(&p);
  rtu_problems_free(&p);
  if (!c) return;

  CHECK_STR(c->kafka_brokers, "localhost:9092");
  CHECK_STR(c->kafka_group_id, "rtu-test");
  CHECK_STR(c->mongodb_url, "mongodb://localhost:27017");
  CHECK_STR(c->projections_db, "projections");
  CHECK_STR(c->pc_collection, "pc");
  CHECK_STR(c->system_of_records, "sor");
  CHECK_STR(c->map_table_folder, map_dir);

  /* Defaults of the reference, section 7. */
  CHECK_EQ(c->kafka_max_wait_ms, 500);
  CHECK_EQ(c->kafka_session_timeout_ms, 30000);
  CHECK_EQ(c->kafka_heartbeat_interval_ms, 3000);
  CHECK_EQ(c->kafka_connection_timeout_ms, 10000);
  CHECK(!c->kafka_latest);
  CHECK_STR(c->kafka_sasl_mechanism, "plain");
  CHECK(c->kafka_sasl_username == NULL);
  CHECK(c->kafka_sasl_password == NULL);
  CHECK(c->ca_cert_path == NULL);
  CHECK_STR(c->producer_compression, "none");
  CHECK(c->pc_enabled);
  CHECK_STR(c->adapter, "basic");
  CHECK(c->adapter_folder == NULL);
  CHECK(c->cast_functions_folder == NULL);
  CHECK(!c->use_automatic_strategies);
  CHECK(c->use_upsert);
  CHECK_EQ(c->delete_mechanism, RTU_DELETE_SOFT);
  CHECK(c->force_check_on_offset);
  CHECK(c->use_pos_as_counter);
  CHECK(!c->gen_kafka_pr_updates);
  CHECK(!c->gen_kafka_pc);
  CHECK(c->kafka_pr_updates_folder == NULL);
  CHECK(c->kafka_pc_folder == NULL);
  CHECK(!c->pause_topic_on_error);
  /* The product's choices where the reference has none. */
  CHECK_EQ(c->http_port, 3000);
  CHECK_STR(c->log_level, "info");
  CHECK(c->strategies_max_exec_ms > 0);
  CHECK(c->kafka_max_batch > 0);
  CHECK_STR(c->kafka_assignment_strategy, "cooperative-sticky");
  CHECK_STR(c->lua_dir, lua_runtime_dir());

  /* mapTable.json, in file order. */
  CHECK_EQ(c->nprojections, 2);
  if (c->nprojections == 2) {
    const rtu_projection_t *r = &c->projections[0];
    CHECK_STR(r->name, "registry");
    CHECK_STR(r->destination, "registry-json");
    CHECK_EQ(r->nfields, 3);
    if (r->nfields == 3) {
      CHECK_STR(r->fields[0].src, "USER_ID");
      CHECK_STR(r->fields[0].dst, "userId");
      CHECK_STR(r->fields[0].cast, "defaultCastToInteger");
      CHECK_STR(r->fields[1].src, "FISCAL_CODE");
      CHECK_STR(r->fields[1].dst, "fiscalCode");
      CHECK_STR(r->fields[1].cast, "defaultIdentity");
      CHECK_STR(r->fields[2].src, "COINS");
      CHECK_STR(r->fields[2].cast, "myCast");
    }
    CHECK_EQ(r->npk, 2);
    if (r->npk == 2) {
      CHECK_STR(r->pk_dst[0], "fiscalCode"); /* fieldsInKey order, not conversion order */
      CHECK_STR(r->pk_src[0], "FISCAL_CODE");
      CHECK_STR(r->pk_dst[1], "userId");
      CHECK_STR(r->pk_src[1], "USER_ID");
    }
    CHECK_EQ(r->nchanges, 1);
    if (r->nchanges == 1) {
      CHECK_STR(r->changes[0].single_view, "sv_pointofsale");
      CHECK_STR(r->changes[0].strategy, "pointOfSaleStrategy");
    }
    const rtu_projection_t *o = &c->projections[1];
    CHECK_STR(o->name, "orders");
    CHECK_STR(o->destination, "orders-json");
    CHECK_EQ(o->nchanges, 0);
  }
  CHECK_EQ(c->ntopics, 2);
  const rtu_projection_t *tp = rtu_config_projection_for_topic(c, "topic.orders");
  CHECK(tp && !strcmp(tp->name, "orders"));
  tp = rtu_config_projection_for_topic(c, "topic.registry");
  CHECK(tp && !strcmp(tp->name, "registry"));
  CHECK(rtu_config_projection_for_topic(c, "topic.unknown") == NULL);
  rtu_config_free(c);
}

static void test_explicit_values(void) {
  base_env();
  env_set("KAFKA_CONSUMER_MAX_WAIT_TIME", "250");
  env_set("KAFKA_USE_LATEST_DEQUEUE_STRATEGY", "true");
  env_set("KAFKA_SASL_USERNAME", "user");
  env_set("KAFKA_SASL_PASSWORD", "secret");
  env_set("KAFKA_SASL_MECHANISM", "scram-sha-256");
  env_set("PRODUCER_COMPRESSION", "gzip");
  env_set("KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "range,roundrobin");
  env_set("HTTP_PORT", "8080");
  env_set("LOG_LEVEL", "debug");
  env_set("KAFKA_MESSAGE_ADAPTER", "golden-gate");
  env_set("USE_UPSERT", "true");
  env_set("DELETE_MECHANISM", "hard");
  env_set("FORCE_CHECK_ON_OFFSET", "false");
  env_set("USE_POS_AS_COUNTER", "false");
  env_set("STRATEGIES_MAX_EXEC_TIME_MS", "1234");
  env_set("PAUSE_TOPIC_CONSUMPTION_ON_ERROR", "true");
  env_set("CAST_FUNCTIONS_FOLDER", cast_dir);
  env_set("PROJECTIONS_CHANGES_ENABLED", "false");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", NULL); /* optional when disabled */
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c != NULL);
  print_problems(&p);
  rtu_problems_free(&p);
  if (!c) return;
  CHECK_EQ(c->kafka_max_wait_ms, 250);
  CHECK(c->kafka_latest);
  CHECK_STR(c->kafka_sasl_username, "user");
  CHECK_STR(c->kafka_sasl_password, "secret");
  CHECK_STR(c->kafka_sasl_mechanism, "scram-sha-256");
  CHECK_STR(c->producer_compression, "gzip");
  CHECK_STR(c->kafka_assignment_strategy, "range,roundrobin");
  CHECK_EQ(c->http_port, 8080);
  CHECK_STR(c->log_level, "debug");
  CHECK_STR(c->adapter, "golden-gate");
  CHECK(c->use_upsert);
  CHECK_EQ(c->delete_mechanism, RTU_DELETE_HARD);
  CHECK(!c->force_check_on_offset);
  CHECK(!c->use_pos_as_counter);
  CHECK_EQ(c->strategies_max_exec_ms, 1234);
  CHECK(c->pause_topic_on_error);
  CHECK_STR(c->cast_functions_folder, cast_dir);
  CHECK(!c->pc_enabled);
  CHECK(c->pc_collection == NULL);
  rtu_config_free(c);
}

/* ---- forced settings ---------------------------------------------------- */

static void test_forced(void) {
  /* basic and db2 carry no operation: every value is an upsert. */
  const char *adapters[] = {NULL, "basic", "db2"};
  for (size_t i = 0; i < 3; i++) {
    base_env();
    env_set("KAFKA_MESSAGE_ADAPTER", adapters[i]);
    env_set("USE_UPSERT", "false");
    rtu_problems_t p;
    rtu_config_t *c = load(&p);
    CHECK(c != NULL, "adapter %s", adapters[i] ? adapters[i] : "(default)");
    rtu_problems_free(&p);
    if (!c) continue;
    CHECK(c->use_upsert, "adapter %s must force USE_UPSERT=true",
          adapters[i] ? adapters[i] : "(default)");
    CHECK_EQ(c->delete_mechanism, RTU_DELETE_SOFT); /* upsert is on, so soft stays */
    rtu_config_free(c);
  }
  /* USE_UPSERT=false (with an adapter that keeps it) forces the hard delete. */
  const char *others[] = {"golden-gate", "debezium"};
  for (size_t i = 0; i < 2; i++) {
    base_env();
    env_set("KAFKA_MESSAGE_ADAPTER", others[i]);
    env_set("USE_UPSERT", "false");
    env_set("DELETE_MECHANISM", "soft");
    rtu_problems_t p;
    rtu_config_t *c = load(&p);
    CHECK(c != NULL, "adapter %s", others[i]);
    rtu_problems_free(&p);
    if (!c) continue;
    CHECK(!c->use_upsert, "adapter %s keeps USE_UPSERT=false", others[i]);
    CHECK_EQ(c->delete_mechanism, RTU_DELETE_HARD);
    rtu_config_free(c);
  }
  /* Booleans: true/false in any case, 1/0. */
  const struct {
    const char *v;
    bool want;
  } bools[] = {{"TRUE", true}, {"False", false}, {"1", true}, {"0", false}};
  for (size_t i = 0; i < 4; i++) {
    base_env();
    env_set("FORCE_CHECK_ON_OFFSET", bools[i].v);
    rtu_problems_t p;
    rtu_config_t *c = load(&p);
    CHECK(c != NULL, "FORCE_CHECK_ON_OFFSET=%s", bools[i].v);
    rtu_problems_free(&p);
    if (c) CHECK(c->force_check_on_offset == bools[i].want, "FORCE_CHECK_ON_OFFSET=%s", bools[i].v);
    rtu_config_free(c);
  }
}

/* ---- missing and malformed variables ------------------------------------ */

static void test_missing_required(void) {
  const char *required[] = {"KAFKA_BROKERS", "KAFKA_GROUP_ID", "MONGODB_URL",
                            "PROJECTIONS_DATABASE_NAME", "PROJECTIONS_CHANGES_COLLECTION_NAME",
                            "SYSTEM_OF_RECORDS", "MAP_TABLE_FOLDER", "INVARIANT_TOPIC_MAP"};
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
    for (int empty = 0; empty < 2; empty++) {
      base_env();
      env_set(required[i], empty ? "" : NULL);
      rtu_problems_t p;
      rtu_config_t *c = load(&p);
      CHECK(c == NULL, "config loaded without %s", required[i]);
      CHECK(find_problem(&p, required[i], NULL) != NULL, "no problem names %s", required[i]);
      if (!find_problem(&p, required[i], NULL)) print_problems(&p);
      rtu_problems_free(&p);
      rtu_config_free(c);
    }
  }
  /* Required only with the features that use them. */
  struct {
    const char *flag, *var;
  } conditional[] = {
      {"GENERATE_KAFKA_PROJECTION_UPDATES", "KAFKA_PROJECTION_UPDATES_FOLDER"},
      {"GENERATE_KAFKA_PROJECTION_CHANGES", "KAFKA_PROJECTION_CHANGES_FOLDER"},
      {"USE_AUTOMATIC_STRATEGIES", "ER_SCHEMA_FOLDER"},
      {"USE_AUTOMATIC_STRATEGIES", "PROJECTION_CHANGES_SCHEMA_FOLDER"},
  };
  for (size_t i = 0; i < sizeof conditional / sizeof conditional[0]; i++) {
    base_env();
    env_set(conditional[i].flag, "true");
    rtu_problems_t p;
    rtu_config_t *c = load(&p);
    CHECK(c == NULL, "%s=true without %s", conditional[i].flag, conditional[i].var);
    CHECK(find_problem(&p, conditional[i].var, NULL) != NULL, "no problem names %s",
          conditional[i].var);
    rtu_problems_free(&p);
    rtu_config_free(c);
  }
  base_env();
  env_set("KAFKA_MESSAGE_ADAPTER", "custom");
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c == NULL);
  CHECK(find_problem(&p, "KAFKA_ADAPTER_FOLDER", NULL) != NULL);
  rtu_problems_free(&p);
  rtu_config_free(c);
}

/* One bad variable: the load fails and a line names the variable and the value. */
static void expect_bad_env(const char *name, const char *value, const char *needle) {
  base_env();
  env_set(name, value);
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c == NULL, "%s='%s' was accepted", name, value);
  const char *line = find_problem(&p, name, needle, NULL);
  CHECK(line != NULL, "no problem line names %s and '%s'", name, needle);
  if (!line) print_problems(&p);
  rtu_problems_free(&p);
  rtu_config_free(c);
}

static void test_malformed(void) {
  expect_bad_env("HTTP_PORT", "abc", "abc");
  expect_bad_env("HTTP_PORT", "70000", "70000");
  expect_bad_env("HTTP_PORT", "-1", "-1");
  expect_bad_env("HTTP_PORT", "80x", "80x");
  expect_bad_env("KAFKA_CONSUMER_MAX_WAIT_TIME", "soon", "soon");
  expect_bad_env("STRATEGIES_MAX_EXEC_TIME_MS", "0", "0");
  expect_bad_env("USE_UPSERT", "maybe", "maybe");
  expect_bad_env("FORCE_CHECK_ON_OFFSET", "yes please", "yes please");
  expect_bad_env("DELETE_MECHANISM", "x", "'x'");
  expect_bad_env("KAFKA_MESSAGE_ADAPTER", "kcop", "kcop");
  expect_bad_env("LOG_LEVEL", "verbose", "verbose");
  expect_bad_env("PRODUCER_COMPRESSION", "lz4", "lz4");
  expect_bad_env("KAFKA_SASL_MECHANISM", "kerberos", "kerberos");
  /* librdkafka refuses a mix of cooperative and eager strategies */
  expect_bad_env("KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "cooperative-sticky,range",
                 "cooperative-sticky,range");
  expect_bad_env("KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "sticky", "sticky");
  expect_bad_env("CAST_FUNCTIONS_FOLDER", "/nonexistent/casts", "/nonexistent/casts");
  expect_bad_env("MAP_TABLE_FOLDER", "/nonexistent/maps", "/nonexistent/maps");
  expect_bad_env("LUA_RUNTIME_FOLDER", "/nonexistent/lua", "/nonexistent/lua");
  expect_bad_env("INVARIANT_TOPIC_MAP", "{not json", "INVARIANT_TOPIC_MAP");
  expect_bad_env("INVARIANT_TOPIC_MAP", "{}", "no topic");
  expect_bad_env("INVARIANT_TOPIC_MAP", "{\"t\": 5}", "t");
  expect_bad_env("INVARIANT_TOPIC_MAP", "{\"topic.x\": \"ghost\"}", "ghost");
  /* The unknown projection line names the topic too. */
  expect_bad_env("INVARIANT_TOPIC_MAP", "{\"topic.orders\": \"orders\", \"topic.x\": \"ghost\"}",
                 "topic.x");
}

/* ---- mapTable.json ------------------------------------------------------ */

/* Writes a mapTable.json into a fresh folder; loads; the problem line must name
 * the file and contain each needle. */
static void expect_bad_map(const char *what, const char *map_table, const char *n1,
                           const char *n2) {
  char *dir = tmp_dir("maptable");
  write_file(dir, "mapTable.json", map_table);
  base_env();
  env_set("MAP_TABLE_FOLDER", dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t\": \"p\"}");
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c == NULL, "%s: accepted", what);
  const char *line = find_problem(&p, "mapTable.json", n1, n2, NULL);
  CHECK(line != NULL, "%s: no line names mapTable.json, '%s' and '%s'", what, n1, n2 ? n2 : "");
  if (!line) print_problems(&p);
  rtu_problems_free(&p);
  rtu_config_free(c);
  rm_rf(dir);
  free(dir);
}

static void test_map_table(void) {
  expect_bad_map("not JSON", "{\"p\": {\"destination\": ", "not a valid JSON", NULL);
  expect_bad_map("empty", "{}", "no projection", NULL);
  expect_bad_map("projection not an object", "{\"p\": 3}", "p", "expected an object");
  expect_bad_map("missing destination",
                 "{\"p\": {\"conversion\": {\"ID\": {\"fieldName\": \"id\"}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.destination", NULL);
  expect_bad_map("destination not a string",
                 "{\"p\": {\"destination\": 1, \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": [\"id\"]}}",
                 "p.destination", NULL);
  expect_bad_map("missing conversion", "{\"p\": {\"destination\": \"d\", \"fieldsInKey\": []}}",
                 "p.conversion", NULL);
  expect_bad_map("conversion entry without fieldName",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
                 " \"NAME\": {\"cast\": \"__fromFile__[defaultIdentity]\"}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.NAME.fieldName", NULL);
  expect_bad_map("conversion entry not an object",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
                 " \"NAME\": \"name\"}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.NAME", NULL);
  expect_bad_map("cast not __fromFile__[x]",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\","
                 " \"cast\": \"defaultIdentity\"}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.ID.cast", "defaultIdentity");
  expect_bad_map("cast with an empty name",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\","
                 " \"cast\": \"__fromFile__[]\"}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.ID.cast", NULL);
  expect_bad_map("cast naming a path",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\","
                 " \"cast\": \"__fromFile__[../../etc/x]\"}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.ID.cast", NULL);
  /* A cast that is not even a string is not of the form __fromFile__[x] either. */
  expect_bad_map("cast not a string",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\","
                 " \"cast\": 5}}, \"fieldsInKey\": [\"id\"]}}",
                 "p.conversion.ID.cast", NULL);
  expect_bad_map("fieldsInKey naming no fieldName",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": [\"ID\"]}}",
                 "p.fieldsInKey", "'ID'");
  expect_bad_map("fieldsInKey empty",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": []}}",
                 "p.fieldsInKey", NULL);
  expect_bad_map("fieldsInKey missing",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}}}}",
                 "p.fieldsInKey", NULL);
  expect_bad_map("fieldsInKey entry not a string",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": [\"id\", 3]}}",
                 "p.fieldsInKey", NULL);
  expect_bad_map("changes not __fromFile__",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": [\"id\"], \"changes\": {\"sv\": \"strategy\"}}}",
                 "p.changes.sv", NULL);
  expect_bad_map("changes not an object",
                 "{\"p\": {\"destination\": \"d\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
                 " \"fieldsInKey\": [\"id\"], \"changes\": [1]}}",
                 "p.changes", NULL);

  /* No mapTable.json in the folder. */
  char *dir = tmp_dir("nomap");
  base_env();
  env_set("MAP_TABLE_FOLDER", dir);
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c == NULL);
  CHECK(find_problem(&p, dir, "mapTable.json", "cannot read", NULL) != NULL);
  rtu_problems_free(&p);
  rtu_config_free(c);
  rm_rf(dir);
  free(dir);
}

/* ---- every problem at once ---------------------------------------------- */

static void test_all_at_once(void) {
  int failed_before = check_failed;
  char *dir = tmp_dir("many");
  write_file(dir, "mapTable.json",
             "{\"a\": {\"conversion\": {\"ID\": {\"fieldName\": \"id\"}}, \"fieldsInKey\": [\"id\"]},\n"
             " \"b\": {\"destination\": \"b\", \"conversion\": {\"X\": {\"cast\": \"__fromFile__[y]\"},"
             " \"ID\": {\"fieldName\": \"id\", \"cast\": \"bad\"}}, \"fieldsInKey\": [\"nope\"]}}");
  base_env();
  env_set("MAP_TABLE_FOLDER", dir);
  env_set("KAFKA_BROKERS", NULL);
  env_set("HTTP_PORT", "abc");
  env_set("USE_UPSERT", "maybe");
  env_set("DELETE_MECHANISM", "x");
  env_set("INVARIANT_TOPIC_MAP", "{\"t1\": \"a\", \"t2\": \"ghost\"}");
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c == NULL);
  CHECK(find_problem(&p, "KAFKA_BROKERS", NULL) != NULL);
  CHECK(find_problem(&p, "HTTP_PORT", "abc", NULL) != NULL);
  CHECK(find_problem(&p, "USE_UPSERT", "maybe", NULL) != NULL);
  CHECK(find_problem(&p, "DELETE_MECHANISM", "x", NULL) != NULL);
  CHECK(find_problem(&p, "mapTable.json", "a.destination", NULL) != NULL);
  CHECK(find_problem(&p, "mapTable.json", "b.conversion.X.fieldName", NULL) != NULL);
  CHECK(find_problem(&p, "mapTable.json", "b.conversion.ID.cast", "bad", NULL) != NULL);
  CHECK(find_problem(&p, "mapTable.json", "b.fieldsInKey", "nope", NULL) != NULL);
  CHECK(find_problem(&p, "INVARIANT_TOPIC_MAP", "t2", "ghost", NULL) != NULL);
  CHECK(p.n >= 9, "expected at least 9 problems, got %zu", p.n);
  /* one line per problem: no line is empty, none is repeated */
  for (size_t i = 0; i < p.n; i++) {
    CHECK(p.lines[i] && p.lines[i][0]);
    for (size_t j = i + 1; j < p.n; j++)
      CHECK(strcmp(p.lines[i], p.lines[j]) != 0, "repeated line: %s", p.lines[i]);
  }
  if (check_failed > failed_before) print_problems(&p);
  rtu_problems_free(&p);
  rtu_config_free(c);
  rm_rf(dir);
  free(dir);
}


/* ---- the position-keeping JSON reader ------------------------------------ */

static void test_jsonpos(void) {
  const char *text = "{\n  \"a\": 1,\n  \"b\": {\"c\": [true, null, \"x\\u00e9\\ud83d\\ude00\"]},\n  \"a\": 2\n}";
  int line = 0, col = 0;
  char err[256];
  rtu_jnode_t *root = rtu_jsonpos_parse(text, strlen(text), &line, &col, err, sizeof err);
  CHECK(root != NULL, "refused: %s", err);
  if (!root) return;
  CHECK_EQ(root->n, 3);
  CHECK(root->kids[0].shadowed, "the first 'a' is not marked as replaced");
  CHECK(!root->kids[2].shadowed);
  const rtu_jnode_t *a = rtu_jsonpos_get(root, "a");
  CHECK(a && a->num == 2, "the last 'a' does not win, as JSON.parse");
  CHECK_EQ(a->key_line, 4);
  CHECK_EQ(a->key_col, 3);
  CHECK_EQ(a->col, 8);
  const rtu_jnode_t *x = rtu_jsonpos_find(root, "b.c[2]");
  CHECK(x && x->type == RTU_J_STRING);
  CHECK_STR(x->str, "x\xc3\xa9\xf0\x9f\x98\x80");
  CHECK_EQ(x->line, 3);
  CHECK_EQ(x->col, 27);
  /* a path that goes too far ends at the deepest node on the way */
  CHECK(rtu_jsonpos_find(root, "b.nope.deeper") == rtu_jsonpos_get(root, "b"));
  rtu_jsonpos_free(root);

  /* keys holding dots are found whole */
  text = "{\"topic.a.b\": {\"x\": 1}}";
  root = rtu_jsonpos_parse(text, strlen(text), &line, &col, err, sizeof err);
  CHECK(root && rtu_jsonpos_find(root, "topic.a.b.x")->num == 1);
  rtu_jsonpos_free(root);

  struct {
    const char *text, *needle;
    int line, col;
  } bad[] = {
      {"{\n  \"a\": 1\n  \"b\": 2\n}", "expected ','", 3, 3},
      {"{\"a\": 1,}", "trailing comma", 1, 9},
      {"{\"a\": tru}", "expected a JSON value", 1, 7},
      {"{\"a\": \"x", "unterminated", 1, 9},
      {"{\"a\": 01}", "cannot start with 0", 1, 8},
      {"{\"a\": 1} x", "after the JSON value", 1, 10},
      {"{\"a\" 1}", "expected ':'", 1, 6},
      {"{'a': 1}", "double quotes", 1, 2},
      {"", "end of the file", 1, 1},
      {"{\"a\": \"\\q\"}", "invalid escape", 1, 9},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    root = rtu_jsonpos_parse(bad[i].text, strlen(bad[i].text), &line, &col, err, sizeof err);
    CHECK(root == NULL, "accepted %s", bad[i].text);
    rtu_jsonpos_free(root);
    CHECK(strstr(err, bad[i].needle) != NULL, "%s: '%s' lacks '%s'", bad[i].text, err, bad[i].needle);
    CHECK(line == bad[i].line && col == bad[i].col, "%s: at %d:%d, expected %d:%d", bad[i].text,
          line, col, bad[i].line, bad[i].col);
  }
  /* nesting is bounded: no stack overflow on hostile input */
  char deep[4000];
  memset(deep, '[', sizeof deep - 1);
  deep[sizeof deep - 1] = '\0';
  root = rtu_jsonpos_parse(deep, strlen(deep), &line, &col, err, sizeof err);
  CHECK(root == NULL && strstr(err, "nested"));
  rtu_jsonpos_free(root);
}

/* ---- problems: place, format, order -------------------------------------- */

static void test_problems(void) {
  rtu_problems_t p = {0};
  rtu_problems_at(&p, RTU_PROBLEM_WARNING, NULL, "/c/b.json", 7, 3, "x.y", "second in b");
  rtu_problems_at(&p, RTU_PROBLEM_ERROR, NULL, "/c/b.json", 2, 9, "x", "first in b");
  rtu_problems_at(&p, RTU_PROBLEM_ERROR, "HTTP_PORT", NULL, 0, 0, NULL, "bad port");
  rtu_problems_add(&p, "/c/a.lua: /c/a.lua:12: unexpected symbol");
  rtu_problems_add(&p, "/c/m/mapTable.json: p.conversion.X.cast: unknown");
  rtu_problems_add(&p, "MAP_TABLE_FOLDER: not a folder");
  rtu_problems_add(&p, "Lua runtime: cannot load");
  rtu_problems_add(&p, "MAP_TABLE_FOLDER: not a folder"); /* a repeat */
  CHECK_EQ(p.nerrors, 7);
  rtu_problems_sort(&p);
  CHECK_EQ(p.n, 7);
  CHECK_EQ(p.nerrors, 6);
  const char *want[] = {
      "env:HTTP_PORT: error: bad port",
      "env:MAP_TABLE_FOLDER: error: not a folder",
      "/c/a.lua:12:1: error: unexpected symbol",
      "/c/b.json:2:9: error: x: first in b",
      "/c/b.json:7:3: warning: x.y: second in b",
      "/c/m/mapTable.json: error: p.conversion.X.cast: unknown",
      "rtu: error: Lua runtime: cannot load",
  };
  for (size_t i = 0; i < p.n && i < 7; i++) CHECK_STR(p.lines[i], want[i]);

  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  rtu_problems_print(&p, f, false);
  rtu_problems_summary(&p, f);
  fclose(f);
  CHECK(out && strstr(out, "\nrtu: error: Lua runtime: cannot load\n6 errors, 1 warning\n"),
        "summary: %s", out);
  free(out);
  f = open_memstream(&out, &len);
  rtu_problems_print(&p, f, true);
  fclose(f);
  CHECK(out && strstr(out, "{\"file\":\"/c/b.json\",\"variable\":null,\"line\":2,\"column\":9,"
                           "\"severity\":\"error\",\"path\":\"x\",\"message\":\"first in b\"}\n"),
        "json: %s", out);
  CHECK(out && strstr(out, "{\"file\":null,\"variable\":\"HTTP_PORT\","), "json: %s", out);
  free(out);
  rtu_problems_free(&p);
}

static void test_closest(void) {
  const char *names[] = {"ID_CUSTOMER", "ID_ORDER", "updatesTopic", "strategy", "id"};
  CHECK_STR(rtu_closest("ID_CUSTMER", names, 5), "ID_CUSTOMER");
  CHECK_STR(rtu_closest("updateTopic", names, 5), "updatesTopic");
  CHECK_STR(rtu_closest("id_order", names, 5), "ID_ORDER");
  CHECK(rtu_closest("somethingElse", names, 5) == NULL, "a far name was offered");
  CHECK(rtu_closest("x", names, 0) == NULL);
}

/* ---- the table ------------------------------------------------------------ */

static void test_table(void) {
  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    CHECK(v->meaning && v->meaning[0], "%s has no meaning", v->name);
    CHECK(rtu_config_var(v->name) == v, "%s is in the table twice", v->name);
    if (v->type == RTU_VAR_INT && v->def && v->def[0] >= '0' && v->def[0] <= '9')
      CHECK(atoi(v->def) >= v->min && atoi(v->def) <= v->max, "%s: default out of range", v->name);
  }
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  rtu_config_print_table(f, true);
  fclose(f);
  for (size_t i = 0; out && i < rtu_config_nvars; i++) {
    char cell[128];
    snprintf(cell, sizeof cell, "| `%s` |", rtu_config_vars[i].name);
    CHECK(strstr(out, cell) != NULL, "%s not in the Markdown table", rtu_config_vars[i].name);
  }
  CHECK(out && strstr(out, "| `HTTP_PORT` | integer 0–65535 | `3000` |"), "%s", out);
  free(out);

  /* A variable of the contract rtu does not honour: a warning, the load goes on. */
  base_env();
  env_set("CONTROL_PLANE_CONFIG_PATH", "/etc/control-plane.json");
  env_set("LC39_HTTP_PORT", "8080");
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c != NULL, "a warning refused the configuration");
  CHECK_EQ(p.nerrors, 0);
  CHECK(find_problem(&p, "env:CONTROL_PLANE_CONFIG_PATH: warning:", "Runtime Management", NULL));
  CHECK(find_problem(&p, "env:LC39_HTTP_PORT: warning:", "HTTP_PORT", NULL));
  rtu_problems_free(&p);
  rtu_config_free(c);
}

/* mapTable.json with a key twice: the last one is used (JSON.parse), with a
 * warning at the ignored one. */
static void test_duplicate_keys(void) {
  char *dir = tmp_dir("dups");
  write_file(dir, "mapTable.json",
             "{\"p\": {\"destination\": \"first\",\n"
             "       \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},\n"
             "       \"destination\": \"second\", \"fieldsInKey\": [\"id\"]}}");
  base_env();
  env_set("MAP_TABLE_FOLDER", dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t\": \"q\", \"t\": \"p\"}");
  rtu_problems_t p;
  rtu_config_t *c = load(&p);
  CHECK(c != NULL, "duplicate keys refused");
  if (c) {
    CHECK_STR(c->projections[0].destination, "second");
    CHECK_EQ(c->ntopics, 1);
  }
  CHECK(find_problem(&p, "mapTable.json:1:8: warning: p.destination: duplicate key 'destination'",
                     "line 3 wins", NULL));
  CHECK(find_problem(&p, "env:INVARIANT_TOPIC_MAP: warning: t: duplicate key 't'", NULL));
  if (!c) print_problems(&p);
  rtu_problems_free(&p);
  rtu_config_free(c);
  rm_rf(dir);
  free(dir);
}

static void test_mongodb_url(void) {
  expect_bad_env("MONGODB_URL", "not-a-url", "MongoDB connection string");
  expect_bad_env("MONGODB_URL", "mongodb://host:99999", "MONGODB_URL");
  expect_bad_env("KAFKA_BROKERS", "broker:port", "'broker:port'");
  expect_bad_env("KAFKA_BROKERS", "a:9092,,b:9092", "empty");
}

static void test_from_file_name(void) {
  char *s = rtu_config_from_file_name("__fromFile__[castToString]");
  CHECK_STR(s, "castToString");
  free(s);
  const char *bad[] = {"castToString", "__fromFile__[", "__fromFile__[]", "__fromFile__[x",
                       "__fromFile__x]", "__fromFile__[a/b]", "__fromFile__[a[b]", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s = rtu_config_from_file_name(bad[i]);
    CHECK(s == NULL, "'%s' gave '%s'", bad[i], s);
    free(s);
  }
}

int main(void) {
  root = tmp_dir("config");
  map_dir = sub_dir(root, "maps");
  cast_dir = sub_dir(root, "casts");
  write_file(map_dir, "mapTable.json", GOOD_MAP_TABLE);

  test_defaults();
  test_explicit_values();
  test_forced();
  test_missing_required();
  test_malformed();
  test_map_table();
  test_all_at_once();
  test_from_file_name();
  test_jsonpos();
  test_problems();
  test_closest();
  test_table();
  test_duplicate_keys();
  test_mongodb_url();

  env_clear();
  rm_rf(root);
  free(root);
  free(map_dir);
  free(cast_dir);
  return CHECK_DONE();
}
