/*
 * fuzz_adapters: each shipped Kafka message adapter (basic, debezium,
 * golden-gate), with the mapping and every built-in cast behind it, on fuzzed
 * key and value bytes, through rtu_script_map as the pipeline calls it.
 *
 * Input: byte 0 picks the adapter (bits 0-1, mod 3), in bits 2 and 3 a message
 * without a key or without a value (a tombstone), and in bit 4 the projection
 * (p, with every built-in cast, or q, with those map_fast.c converts itself); the rest is the key,
 * a 0xFF byte (never in UTF-8 text), then the value; without a 0xFF, the rest is
 * the value and the message has no key.
 * Checks: the call ends with a mapped change, a skip, or a data or script error
 * with its cause, never otherwise; what it returns is valid BSON with a key.
 * And a second state of each adapter maps every input with map_fast.c's C path
 * off: both must give the same outcome, the same bytes, the same error text
 * (the C path reads basic and debezium messages of the common form itself).
 * The outcomes are counted per adapter, and the inputs the C path took, and
 * printed at exit.
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_files.h"
#include "fuzz.h"
#include "script.h"
#include "script_map.h"

static const char *const ADAPTERS[] = {"basic", "debezium", "golden-gate"};
#define N_ADAPTERS 3

static const char *const MAP_TABLE =
    "{\"p\": {\"destination\": \"p\", \"conversion\": {\n"
    "  \"ID\": {\"fieldName\": \"id\"},\n"
    "  \"CODE\": {\"fieldName\": \"code\", \"cast\": \"__fromFile__[castToString]\"},\n"
    "  \"NAME\": {\"fieldName\": \"name\", \"cast\": \"__fromFile__[defaultCastToString]\"},\n"
    "  \"QTY\": {\"fieldName\": \"qty\", \"cast\": \"__fromFile__[defaultCastToInteger]\"},\n"
    "  \"PRICE\": {\"fieldName\": \"price\", \"cast\": \"__fromFile__[defaultCastToFloat]\"},\n"
    "  \"TS\": {\"fieldName\": \"ts\", \"cast\": \"__fromFile__[defaultCastUnitTimestampToISOString]\"},\n"
    "  \"FLAG\": {\"fieldName\": \"flag\", \"cast\": \"__fromFile__[defaultCastStringToBoolean]\"},\n"
    "  \"DAY\": {\"fieldName\": \"day\", \"cast\": \"__fromFile__[defaultCastToDate]\"},\n"
    "  \"OBJ\": {\"fieldName\": \"obj\", \"cast\": \"__fromFile__[defaultCastToObject]\"},\n"
    "  \"ARR\": {\"fieldName\": \"arr\", \"cast\": \"__fromFile__[defaultCastToArrayOfObject]\"},\n"
    "  \"ANY\": {\"fieldName\": \"any\", \"cast\": \"__fromFile__[identity]\"}\n"
    " }, \"fieldsInKey\": [\"id\"]},\n"
    /* the casts map_fast.c converts itself: this projection takes the C path */
    " \"q\": {\"destination\": \"q\", \"conversion\": {\n"
    "  \"ID\": {\"fieldName\": \"id\", \"cast\": \"__fromFile__[defaultCastToInteger]\"},\n"
    "  \"CODE\": {\"fieldName\": \"code\", \"cast\": \"__fromFile__[castToString]\"},\n"
    "  \"QTY\": {\"fieldName\": \"qty\", \"cast\": \"__fromFile__[defaultCastToInteger]\"},\n"
    "  \"PRICE\": {\"fieldName\": \"price\", \"cast\": \"__fromFile__[defaultCastToFloat]\"},\n"
    "  \"FLAG\": {\"fieldName\": \"flag\", \"cast\": \"__fromFile__[defaultCastStringToBoolean]\"},\n"
    "  \"DAY\": {\"fieldName\": \"day\", \"cast\": \"__fromFile__[defaultCastToDate]\"},\n"
    "  \"ANY\": {\"fieldName\": \"any\", \"cast\": \"__fromFile__[defaultIdentity]\"}\n"
    " }, \"fieldsInKey\": [\"id\"]}}\n";

static rtu_config_t *configs[N_ADAPTERS];
static rtu_script_t *scripts[N_ADAPTERS], *lua_only[N_ADAPTERS];
static rtu_mapped_t *mapped, *mapped_lua;
static const char *adapter_now;

static const char *env_adapter_;
static const char *env_map_dir_;

static const char *fake_env(const char *name) {
  if (!strcmp(name, "KAFKA_BROKERS")) return "127.0.0.1:1";
  if (!strcmp(name, "KAFKA_GROUP_ID")) return "rtu-fuzz";
  if (!strcmp(name, "MONGODB_URL")) return "mongodb://127.0.0.1:1";
  if (!strcmp(name, "PROJECTIONS_DATABASE_NAME")) return "projections";
  if (!strcmp(name, "PROJECTIONS_CHANGES_COLLECTION_NAME")) return "pc";
  if (!strcmp(name, "SYSTEM_OF_RECORDS")) return "sor";
  if (!strcmp(name, "MAP_TABLE_FOLDER")) return env_map_dir_;
  if (!strcmp(name, "INVARIANT_TOPIC_MAP")) return "{\"t\": \"p\", \"u\": \"q\"}";
  if (!strcmp(name, "KAFKA_MESSAGE_ADAPTER")) return env_adapter_;
  if (!strcmp(name, "LOG_LEVEL")) return "silent";
  return NULL;
}

static void print_problems(const rtu_problems_t *p) {
  for (size_t i = 0; i < p->n; i++) fprintf(stderr, "  %s\n", p->lines[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char dir[] = "/tmp/rtu-fuzz-adapters-XXXXXX";
  if (!mkdtemp(dir)) fuzz_fail("mkdtemp: %s", strerror(errno));
  char path[sizeof dir + 32];
  snprintf(path, sizeof path, "%s/mapTable.json", dir);
  FILE *f = fopen(path, "wb");
  if (!f || fputs(MAP_TABLE, f) < 0 || fclose(f) != 0) fuzz_fail("cannot write %s", path);
  env_map_dir_ = dir;
  /* Everything is read now: the folder goes before any input runs. */
  for (int i = 0; i < N_ADAPTERS; i++) {
    rtu_problems_t p = {0};
    env_adapter_ = ADAPTERS[i];
    configs[i] = rtu_config_load(fake_env, fuzz_lua_dir(), &p);
    if (configs[i]) scripts[i] = rtu_script_new(configs[i], &p);
    if (scripts[i]) lua_only[i] = rtu_script_new(configs[i], &p);
    if (!scripts[i] || !lua_only[i]) {
      print_problems(&p);
      fuzz_fail("cannot set up the %s adapter", ADAPTERS[i]);
    }
    rtu_script_map_set_fast(lua_only[i], false);
    rtu_problems_free(&p);
  }
  if (remove(path) != 0 || rmdir(dir) != 0) fuzz_fail("cannot remove %s: %s", dir, strerror(errno));
  env_map_dir_ = NULL;
  mapped = rtu_aligned_calloc(1, sizeof *mapped);
  mapped_lua = rtu_aligned_calloc(1, sizeof *mapped_lua);
  if (!mapped || !mapped_lua) fuzz_fail("out of memory");
  rtu_mapped_init(mapped);
  rtu_mapped_init(mapped_lua);
  fuzz_report_at_exit();
  return 0;
}

static void check_doc(const bson_t *doc, const char *what) {
  size_t offset;
  if (!bson_validate(doc, BSON_VALIDATE_NONE, &offset))
    fuzz_fail("%s adapter: %s is invalid BSON at byte %zu", adapter_now, what, offset);
}

static bool same_bson(const bson_t *a, const bson_t *b) {
  return a->len == b->len && !memcmp(bson_get_data(a), bson_get_data(b), a->len);
}

/* The C path's outcome against the Lua pipeline's on the same message. */
static void compare_paths(int a, size_t proj, const rtu_msg_t *m, rtu_err_t rc, const char *err) {
  char err_lua[RTU_ERRSTR_SIZE] = "";
  rtu_mapped_reset(mapped_lua);
  rtu_err_t rc_lua = rtu_script_map(lua_only[a], proj, m, mapped_lua, err_lua, sizeof err_lua);
  const rtu_mapped_t *x = mapped, *y = mapped_lua;
  bool same = rc == rc_lua && x->skip == y->skip;
  if (same && (rc != RTU_OK || x->skip)) same = !strcmp(err, err_lua);
  else if (same)
    same = x->op == y->op && same_bson(&x->key, &y->key) && same_bson(&x->fields, &y->fields) &&
           x->has_old_key == y->has_old_key && same_bson(&x->old_key, &y->old_key) &&
           x->has_position == y->has_position && x->has_timestamp == y->has_timestamp &&
           x->empty_key == y->empty_key;
  if (!same) {
    char *kx = bson_as_canonical_extended_json(&x->key, NULL);
    char *ky = bson_as_canonical_extended_json(&y->key, NULL);
    char *fx = bson_as_canonical_extended_json(&x->fields, NULL);
    char *fy = bson_as_canonical_extended_json(&y->fields, NULL);
    fuzz_fail("%s adapter: the C path and Lua differ:\n  C:   %s %s key %s fields %s\n  Lua: %s %s "
              "key %s fields %s",
              adapter_now, rtu_err_name(rc), err, kx ? kx : "?", fx ? fx : "?",
              rtu_err_name(rc_lua), err_lua, ky ? ky : "?", fy ? fy : "?");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int a = (data[0] & 3) % N_ADAPTERS; /* bits 0-1: the flags above them must not change it */
  adapter_now = ADAPTERS[a];
  const char *rest = (const char *)data + 1;
  size_t n = size - 1;
  const char *sep = memchr(rest, 0xFF, n);
  rtu_msg_t m = {.topic = "t", .partition = 0, .offset = 7, .timestamp = 1700000000000};
  if (sep) {
    m.key = rest;
    m.key_len = (size_t)(sep - rest);
    m.value = sep + 1;
    m.value_len = n - m.key_len - 1;
  } else {
    m.value = rest;
    m.value_len = n;
  }
  if (data[0] & 4) {
    m.key = NULL;
    m.key_len = 0;
  }
  if (data[0] & 8) {
    m.value = NULL;
    m.value_len = 0;
  }
  char err[RTU_ERRSTR_SIZE] = "";
  rtu_mapped_reset(mapped);
  /* bit 4: projection q, whose casts the C path converts itself */
  size_t proj = (data[0] & 16) ? 1 : 0;
  if (strcmp(configs[a]->projections[proj].name, proj ? "q" : "p"))
    fuzz_fail("projection %zu is %s", proj, configs[a]->projections[proj].name);
  uint64_t fast_before = rtu_script_map_fast_count(scripts[a]);
  rtu_err_t rc = rtu_script_map(scripts[a], proj, &m, mapped, err, sizeof err);
  bool took_fast = rtu_script_map_fast_count(scripts[a]) > fast_before;
  compare_paths(a, proj, &m, rc, err);
  char cls[96];
  switch (rc) {
  case RTU_OK:
    if (mapped->skip) {
      snprintf(cls, sizeof cls, "%s: skipped", adapter_now);
      break;
    }
    check_doc(&mapped->key, "the key");
    if (bson_empty(&mapped->key)) fuzz_fail("%s adapter: a change without a key", adapter_now);
    check_doc(&mapped->fields, "the fields");
    if (mapped->has_old_key) check_doc(&mapped->old_key, "the old key");
    snprintf(cls, sizeof cls, "%s: mapped (%s%s)", adapter_now,
             mapped->op == RTU_OP_DELETE ? "delete" : "write", took_fast ? ", C path" : "");
    break;
  case RTU_ERR_DATA:
  case RTU_ERR_SCRIPT:
    if (!err[0]) fuzz_fail("%s adapter: %s without a cause", adapter_now, rtu_err_name(rc));
    snprintf(cls, sizeof cls, "%s: %s", adapter_now, rtu_err_name(rc));
    break;
  default: fuzz_fail("%s adapter: %s: %s", adapter_now, rtu_err_name(rc), err);
  }
  /* fuzz_count keeps the name: one interned copy per class. */
  static char names[FUZZ_MAX_CLASSES][96];
  for (int i = 0; i < FUZZ_MAX_CLASSES; i++) {
    if (!names[i][0]) snprintf(names[i], sizeof names[i], "%s", cls);
    if (!strcmp(names[i], cls)) {
      fuzz_count(names[i]);
      break;
    }
  }
  return 0;
}
