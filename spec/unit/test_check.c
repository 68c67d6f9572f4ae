/*
 * test_check.c: rtu_check (checker.c), one rule at a time, on a small valid low-code
 * configuration in temporary folders with one file changed: each problem is
 * reported at its file, line and column with what is wrong, and a valid
 * configuration gives none.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "checker.h"
#include "helpers.h"

static char *root, *maps, *casts, *er, *pc, *strategies, *updates, *changes;

static const char *MAP_TABLE =
    "{\n"
    "  \"a\": {\n"
    "    \"destination\": \"a\",\n"
    "    \"conversion\": {\"ID\": {\"fieldName\": \"id\"}, \"NAME\": {\"fieldName\": \"name\","
    " \"cast\": \"__fromFile__[upper]\"}},\n"
    "    \"fieldsInKey\": [\"id\"]\n"
    "  },\n"
    "  \"b\": {\n"
    "    \"destination\": \"b\",\n"
    "    \"conversion\": {\"ID\": {\"fieldName\": \"id\"}, \"A_ID\": {\"fieldName\": \"aId\"}},\n"
    "    \"fieldsInKey\": [\"id\"]\n"
    "  }\n"
    "}\n";

static const char *ER_SCHEMA =
    "{\n"
    "  \"version\": \"1.0.0\",\n"
    "  \"config\": {\n"
    "    \"a\": {\"outgoing\": {\"b\": {\"conditions\": {\"a_to_b\": {\n"
    "      \"condition\": {\"aId\": \"id\"}, \"oneToMany\": true}}}}},\n"
    "    \"b\": {\"outgoing\": {\"a\": {\"conditions\": {\"b_to_a\": {\n"
    "      \"condition\": {\"id\": \"aId\", \"__STATE__\": \"__string__[PUBLIC]\"}}}}}}\n"
    "  }\n"
    "}\n";

static const char *PC_SCHEMA =
    "{\n"
    "  \"version\": \"1.0.0\",\n"
    "  \"config\": {\n"
    "    \"sv_a\": {\"paths\": [\n"
    "      {\"path\": [\"b\", \"a\"], \"identifier\": {\"ID\": \"id\"}}\n"
    "    ]}\n"
    "  }\n"
    "}\n";

static const char *UPDATES = "{\"a\": {\"updatesTopic\": \"a.pr-update\", \"strategy\": \"__automatic__\"},\n"
                             " \"b\": {\"strategy\": \"__automatic__\"}}\n";
static const char *CHANGES = "{\"a\": {\"projectionChanges\": {\"sv_a\": {\"topic\": \"sv_a.trigger\"}}}}\n";

static void unlink_file(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
}

static void base_env(void) {
  env_clear();
  env_set("KAFKA_BROKERS", "127.0.0.1:1");
  env_set("KAFKA_GROUP_ID", "rtu-test");
  env_set("MONGODB_URL", "mongodb://127.0.0.1:1");
  env_set("PROJECTIONS_DATABASE_NAME", "projections");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", "pc");
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("MAP_TABLE_FOLDER", maps);
  env_set("CAST_FUNCTIONS_FOLDER", casts);
  env_set("USE_AUTOMATIC_STRATEGIES", "true");
  env_set("ER_SCHEMA_FOLDER", er);
  env_set("PROJECTION_CHANGES_SCHEMA_FOLDER", pc);
  env_set("STRATEGIES_FOLDER", strategies);
  env_set("GENERATE_KAFKA_PROJECTION_UPDATES", "true");
  env_set("KAFKA_PROJECTION_UPDATES_FOLDER", updates);
  env_set("GENERATE_KAFKA_PROJECTION_CHANGES", "true");
  env_set("KAFKA_PROJECTION_CHANGES_FOLDER", changes);
  env_set("INVARIANT_TOPIC_MAP", "{\"t.a\": \"a\", \"t.b\": \"b\"}");
}

static void base_files(void) {
  write_file(maps, "mapTable.json", MAP_TABLE);
  write_file(er, "erSchema.json", ER_SCHEMA);
  write_file(pc, "projectionChangesSchema.json", PC_SCHEMA);
  write_file(updates, "kafkaProjectionUpdates.json", UPDATES);
  write_file(changes, "kafkaProjectionChanges.json", CHANGES);
}

static rtu_problems_t run(bool *ok) {
  rtu_problems_t p = {0};
  *ok = rtu_check(env_get, lua_runtime_dir(), false, &p);
  return p;
}

/* The check finds a problem line with every needle; errors decide ok. */
#define EXPECT(what, want_ok, ...)                                                                 \
  do {                                                                                             \
    bool ok_;                                                                                      \
    rtu_problems_t p_ = run(&ok_);                                                                 \
    CHECK(ok_ == (want_ok), "%s: the check %s", what, ok_ ? "passed" : "failed");                \
    const char *line_ = find_problem(&p_, __VA_ARGS__, NULL);                                      \
    CHECK(line_ != NULL, "%s: no such problem line", what);                                       \
    if (!line_ || ok_ != (want_ok)) print_problems(&p_);                                           \
    rtu_problems_free(&p_);                                                                        \
    base_env();                                                                                    \
    base_files();                                                                                  \
  } while (0)

static void test_valid(void) {
  bool ok;
  rtu_problems_t p = run(&ok);
  CHECK(ok, "the valid configuration failed");
  CHECK_EQ(p.n, 0);
  print_problems(&p);
  rtu_problems_free(&p);
}

static void test_condition_fields(void) {
  char *s = strdup(ER_SCHEMA);
  char *at = strstr(s, "{\"aId\": \"id\"}");
  memcpy(at, "{\"aIx\": \"id\"}", 13); /* left side: a field of the related projection b */
  write_file(er, "erSchema.json", s);
  EXPECT("left side", false, "erSchema.json:5:21: error:",
         "config.a.outgoing.b.conditions.a_to_b.condition.aIx", "'aIx' is not a field of b",
         "did you mean 'aId'");
  at = strstr(s, "\"aIx\": \"id\"");
  memcpy(at, "\"aId\": \"ib\"", 11); /* right side: a field of the projection a */
  write_file(er, "erSchema.json", s);
  EXPECT("right side", false, "erSchema.json:5:28: error:", "'ib' is not a field of a");
  free(s);
}

static void test_er_projection(void) {
  char *s = strdup(ER_SCHEMA);
  memcpy(strstr(s, "\"b\": {\"outgoing\""), "\"c\"", 3);
  write_file(er, "erSchema.json", s);
  EXPECT("unknown projection", false, "erSchema.json:6:5: error: config.c:",
         "'c' is not a projection of mapTable.json");
  free(s);
}

static void test_identifier_and_hops(void) {
  char *s = strdup(PC_SCHEMA);
  memcpy(strstr(s, "{\"ID\": \"id\"}"), "{\"ID\": \"iD\"}", 12);
  write_file(pc, "projectionChangesSchema.json", s);
  EXPECT("identifier", false, "projectionChangesSchema.json:5:49: error:",
         "config.sv_a.paths[0].identifier.ID", "'iD' is not a field of a", "did you mean 'id'");
  free(s);
  write_file(pc, "projectionChangesSchema.json",
             "{\"version\": \"1.0.0\", \"config\": {\"sv_a\": {\"paths\": [\n"
             "  {\"path\": [\"a\", \"a\"], \"identifier\": {\"ID\": \"id\"}}]}}}\n");
  EXPECT("hop", false, "projectionChangesSchema.json:2:18: error: config.sv_a.paths[0].path[1]:",
         "no relation a -> a");
}

static void test_duplicate_key(void) {
  write_file(updates, "kafkaProjectionUpdates.json",
             "{\"a\": {\"updatesTopic\": \"x\",\n \"updatesTopic\": \"a.pr-update\"},"
             " \"b\": {}}");
  EXPECT("duplicate", true, "kafkaProjectionUpdates.json:1:8: warning: a.updatesTopic:",
         "duplicate key", "line 2 wins");
}

/* In erSchema.json too the last of a repeated key is the one used: the Lua
 * compiler of the generation (what `rtu run` loads) would refuse the first. */
static void test_duplicate_key_lowcode(void) {
  char *s = strdup(ER_SCHEMA);
  char *at = strstr(s, "\"condition\": {\"aId\"");
  char *t = NULL;
  if (asprintf(&t, "%.*s\"condition\": 5, %s", (int)(at - s), s, at) < 0) t = NULL;
  write_file(er, "erSchema.json", t);
  EXPECT("duplicate in erSchema.json", true, "erSchema.json:5:7: warning:",
         "config.a.outgoing.b.conditions.a_to_b.condition:", "duplicate key 'condition'");
  free(t);
  free(s);
}

static void test_unknown_keys(void) {
  write_file(updates, "kafkaProjectionUpdates.json",
             "{\"a\": {\"updateTopic\": \"a.pr-update\"}, \"b\": {}}");
  EXPECT("kafkaProjectionUpdates", true, "kafkaProjectionUpdates.json:1:8: warning: a.updateTopic:",
         "did you mean 'updatesTopic'");
  char *s = strdup(MAP_TABLE);
  memcpy(strstr(s, "\"fieldsInKey\""), "\"fieldsInkey\"", 13);
  write_file(maps, "mapTable.json", s);
  EXPECT("mapTable", false, "mapTable.json:5:5: warning: a.fieldsInkey:", "did you mean 'fieldsInKey'");
  free(s);
}

static void test_env(void) {
  env_set("MONGODB_URL", "not-a-url");
  EXPECT("MONGODB_URL", false, "env:MONGODB_URL: error:", "not a MongoDB connection string");
  env_set("KAFKA_SASL_USERNAME", "u");
  env_set("KAFKA_SASL_PASSWORD", "p");
  EXPECT("SASL without TLS", true, "env:KAFKA_SASL_MECHANISM: warning:", "without TLS", "CA_CERT_PATH");
  env_set("CONTROL_PLANE_BINDINGS_PATH", "/bindings");
  EXPECT("not honoured", true, "env:CONTROL_PLANE_BINDINGS_PATH: warning:", "does not honour");
}

/* A bad variable does not hide a file's problem, nor one file another's. */
static void test_all_at_once(void) {
  env_set("HTTP_PORT", "abc");
  env_set("MONGODB_URL", NULL);
  write_file(updates, "kafkaProjectionUpdates.json", "{\"a\": {\"updatesTopic\": 5}}");
  char *s = strdup(ER_SCHEMA);
  memcpy(strstr(s, "{\"aId\": \"id\"}"), "{\"aIx\": \"id\"}", 13);
  write_file(er, "erSchema.json", s);
  free(s);
  write_file(casts, "broken.lua", "return function(v)\n  return v +\nend\n");
  bool ok;
  rtu_problems_t p = run(&ok);
  CHECK(!ok);
  CHECK(find_problem(&p, "env:HTTP_PORT: error:", NULL));
  CHECK(find_problem(&p, "env:MONGODB_URL: error: required", NULL));
  CHECK(find_problem(&p, "kafkaProjectionUpdates.json:1:24: error: a.updatesTopic:", NULL));
  CHECK(find_problem(&p, "erSchema.json:5:21: error:", NULL));
  CHECK(find_problem(&p, "broken.lua:3:1: error:", "unexpected symbol", NULL));
  /* sorted: variables, then files by name and line */
  int failed_before = check_failed;
  for (size_t i = 1; i < p.n; i++)
    CHECK(!(p.items[i - 1].file && !p.items[i].file && p.items[i].var), "not sorted");
  if (check_failed > failed_before) print_problems(&p);
  rtu_problems_free(&p);
  unlink_file(casts, "broken.lua");
  base_env();
  base_files();
}

static void test_projection_without_topic(void) {
  env_set("INVARIANT_TOPIC_MAP", "{\"t.a\": \"a\"}");
  EXPECT("no topic", true, "mapTable.json:7:3: warning: b:", "no topic of INVARIANT_TOPIC_MAP");
}

static void test_lua_files(void) {
  write_file(casts, "unused.lua", "return function(v)\n  return v +\nend\n");
  EXPECT("unreferenced syntax error", false, "unused.lua:3:1: error:", "unexpected symbol");
  unlink_file(casts, "unused.lua");
  write_file(casts, "unusedNotFn.lua", "local M = {}\nreturn M\n");
  EXPECT("unreferenced, not a function", false, "unusedNotFn.lua: error:",
         "must return a function, returned a table");
  unlink_file(casts, "unusedNotFn.lua");
  write_file(casts, "wide.lua", "local fmt = string.format\nreturn function(a, b, c, d) return a end\n");
  EXPECT("four parameters", true, "wide.lua: warning:", "takes 4 parameters",
         "value, fieldName, log");
  unlink_file(casts, "wide.lua");
  write_file(casts, "upper.lua", "return 42\n");
  EXPECT("not a function", false, "upper.lua", "must return a function");
  unlink_file(casts, "upper.lua");
  write_file(casts, "upper.js", "module.exports = v => v\n");
  EXPECT("leftover .js", false, "mapTable.json:4:85: error: a.conversion.NAME.cast:", "upper.js",
         "write", "upper.lua");
  unlink_file(casts, "upper.js");
  write_file(casts, "upper.lua", "return function(v) return v end\n");
}

static void test_unknown_cast(void) {
  char *s = strdup(MAP_TABLE);
  memcpy(strstr(s, "[upper]"), "[upepr]", 7);
  write_file(maps, "mapTable.json", s);
  EXPECT("cast", false, "mapTable.json:4:85: error: a.conversion.NAME.cast:",
         "unknown cast function 'upepr'", "did you mean 'upper'");
  free(s);
}

static void test_changes_bindings(void) {
  char *s = strdup(MAP_TABLE);
  char *at = strstr(s, "\"fieldsInKey\": [\"id\"]\n  },\n  \"b\"");
  char *t = NULL;
  if (asprintf(&t, "%.*s\"fieldsInKey\": [\"id\"], \"changes\": {\"sv_a\": \"__fromFile__[aStrategy]\"}%s",
               (int)(at - s), s, at + strlen("\"fieldsInKey\": [\"id\"]")) < 0)
    t = NULL;
  write_file(maps, "mapTable.json", t);
  EXPECT("ignored binding", true, "mapTable.json:5:48: warning: a.changes.sv_a:", "ignored");
  write_file(maps, "mapTable.json", t);
  env_set("USE_AUTOMATIC_STRATEGIES", "false");
  write_file(strategies, "aStrategy.js", "module.exports = async () => []\n");
  EXPECT("manual, .js", false, "mapTable.json:5:48: error: a.changes.sv_a:", "aStrategy.js",
         "aStrategy.lua");
  unlink_file(strategies, "aStrategy.js");
  free(t);
  free(s);
}

static void test_json_syntax(void) {
  write_file(pc, "projectionChangesSchema.json", "{\n  \"version\": \"1.0.0\"\n  \"config\": {}\n}\n");
  EXPECT("syntax", false, "projectionChangesSchema.json:3:3: error: not a valid JSON file:",
         "expected ','");
}

static void test_kafka_pc_single_view(void) {
  write_file(changes, "kafkaProjectionChanges.json",
             "{\"a\": {\"projectionChanges\": {\"sv_b\": {\"topic\": \"sv_b.trigger\"}}}}");
  EXPECT("single view", true, "kafkaProjectionChanges.json:1:30: warning: a.projectionChanges.sv_b:",
         "single view 'sv_b'");
}

int main(void) {
  root = tmp_dir("check");
  maps = sub_dir(root, "maps");
  casts = sub_dir(root, "casts");
  er = sub_dir(root, "er");
  pc = sub_dir(root, "pc");
  strategies = sub_dir(root, "strategies");
  updates = sub_dir(root, "updates");
  changes = sub_dir(root, "changes");
  write_file(casts, "upper.lua", "return function(v) return v end\n");
  base_env();
  base_files();

  test_valid();
  test_condition_fields();
  test_er_projection();
  test_identifier_and_hops();
  test_duplicate_key();
  test_duplicate_key_lowcode();
  test_unknown_keys();
  test_env();
  test_all_at_once();
  test_projection_without_topic();
  test_lua_files();
  test_unknown_cast();
  test_changes_bindings();
  test_json_syntax();
  test_kafka_pc_single_view();

  env_clear();
  rm_rf(root);
  char *dirs[] = {root, maps, casts, er, pc, strategies, updates, changes};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) free(dirs[i]);
  return CHECK_DONE();
}
