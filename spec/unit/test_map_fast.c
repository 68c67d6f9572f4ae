/*
 * test_map_fast.c: src/map_fast.c's C path of the debezium and basic mappings
 * gives what the Lua pipeline gives. Random Debezium and basic messages (common
 * ones, numbers sent as strings for the casts to convert, and every form
 * the C path must leave to Lua: tombstones, deletes, envelopes, escapes, '$'
 * names, repeated names, primary-key changes, values a cast converts, broken
 * JSON, odd keys) are mapped on the food-delivery example's projections by one
 * script state with the C path on and one with it off: the outcome (status,
 * skip, error text) and the change (operation, key, fields, old key) must be
 * the same bytes. A share of the messages must take the C path (so that the
 * comparison compares something), and the common form must always take it.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_files.h"
#include "helpers.h"
#include "map_fast.h"
#include "script.h"
#include "script_map.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* ---- a growing text ------------------------------------------------------ */

typedef struct {
  char *s;
  size_t n, cap;
} text_t;

static void put(text_t *t, const char *fmt, ...) {
  va_list ap;
  if (!t->s) {
    t->cap = 256;
    t->s = malloc(t->cap);
  }
  for (;;) {
    va_start(ap, fmt);
    int k = vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < t->cap - t->n) {
      t->n += (size_t)k;
      return;
    }
    t->cap = t->cap * 2 + (size_t)(k > 0 ? k : 64);
    t->s = realloc(t->s, t->cap);
  }
}

static void ws(text_t *t) {
  static const char *spaces[] = {"", "", "", " ", "\n ", "\t"};
  put(t, "%s", spaces[rnd(6)]);
}

/* ---- values -------------------------------------------------------------- */

/* A JSON value of any kind a record's field may hold. */
static void value(text_t *t, int depth) {
  static const char *strings[] = {
      "\"plain\"", "\"\"", "\"true\"", "\"false\"", "\"12\"", "\" 7 \"", "\"2024-03-01T10:00:00Z\"",
      "\"caf\xc3\xa9\"", "\"tab\\tbed\"", "\"quote\\\"d\"", "\"\\u00e9t\\u00e9\"", "\"333 123 4567\"",
      "\"1.5e3\"", "\"$dollar\"", "\"a longer plain string, past eight bytes\"",
      "\"a longer string with caf\xc3\xa9 past eight bytes\"", "\"twelve bytes\\\"quote and more\"",
      "\"a raw\ttab inside a longer string\"", "\"\xff\xfe not UTF-8 at all, longer\"",
      "\"-0\"", "\"-0.0\"", "\"12.\"", "\"007\"", "\"-3.50\"",
      "\"0.0000001\"", "\"0.000001\"", "\"99999999999999999999\"", "\"123456789012345678\"",
      "\"-0.5\"", "\"1e21\"", "\"12.0\"", "\"9007199254740993.5\"", "\"-12.75\"",
      "\"4503599627370497.5\"", "\"0.1\"", "\"-\"", "\".5\"", "\"5.5.5\""};
  static const char *numbers[] = {"0", "1", "-1", "42", "2147483647", "2147483648", "-2147483649",
                                  "9007199254740993", "9223372036854775807", "1.5", "-0.0",
                                  "1e3", "2.5E-3", "1709290937700", "8640000000000001",
                                  "123456789012345678901234567890", "0.1"};
  switch (rnd(depth > 2 ? 6 : 9)) {
  case 0: case 1: put(t, "%s", strings[rnd(sizeof strings / sizeof *strings)]); break;
  case 2: case 3: put(t, "%s", numbers[rnd(sizeof numbers / sizeof *numbers)]); break;
  case 4: put(t, "%s", rnd(2) ? "true" : "false"); break;
  case 5: put(t, "null"); break;
  case 6: put(t, "[]"); break;
  case 7:
    put(t, "[");
    value(t, depth + 1);
    put(t, ",");
    ws(t);
    value(t, depth + 1);
    put(t, "]");
    break;
  default:
    /* one member: the order of an object's members is the Lua table's, which
     * two states need not share */
    if (rnd(4)) {
      put(t, "{\"a\":");
      value(t, depth + 1);
      put(t, "}");
    } else {
      put(t, "{\"$b\":1}");
    }
  }
}

/* A primary-key value: usually of the type its cast keeps. */
static void key_value(text_t *t, int which, const char *cast) {
  if (rnd(20) == 0) {
    value(t, 0);
    return;
  }
  if (strstr(cast, "Integer") || (rnd(10) == 0)) put(t, "%d", which);
  else put(t, "\"k-%d\"", which);
}

/* The cast of projection p's field of source src. */
static const char *cast_of(const rtu_projection_t *p, const char *src) {
  for (size_t i = 0; i < p->nfields; i++)
    if (!strcmp(p->fields[i].src, src)) return p->fields[i].cast;
  return "";
}

/* ---- messages ------------------------------------------------------------ */

/* An image of projection p with primary-key value `which`; only its primary keys
 * when keys_only. */
static void image(text_t *t, const rtu_projection_t *p, int which, bool keys_only) {
  put(t, "{");
  bool first = true;
  for (size_t i = 0; i < p->nfields; i++) {
    bool pk = false;
    for (size_t k = 0; k < p->npk; k++) pk |= !strcmp(p->pk_src[k], p->fields[i].src);
    if ((keys_only && !pk) || (!pk && rnd(10) == 0) || (pk && rnd(50) == 0)) continue;
    put(t, "%s", first ? "" : ",");
    ws(t);
    first = false;
    put(t, "\"%s\":", p->fields[i].src);
    ws(t);
    if (pk) key_value(t, which, p->fields[i].cast);
    else if (rnd(12)) {
      /* the common values of the field's cast */
      const char *c = p->fields[i].cast;
      if (strstr(c, "Integer") && rnd(2)) put(t, "\"%d\"", (int)rnd(200000) - 1000);
      else if (strstr(c, "Integer") || strstr(c, "Date")) put(t, "%d", 1000 + rnd(100000));
      else if (strstr(c, "Float") && rnd(2))
        put(t, rnd(2) ? "\"%d.%02d\"" : "\"-%d.%d\"", rnd(100000), rnd(100));
      else if (strstr(c, "Float")) put(t, rnd(2) ? "%d.5" : "%d", rnd(100));
      else if (strstr(c, "Boolean")) put(t, rnd(2) ? "\"true\"" : "\"false\"");
      else if (strstr(c, "Identity")) put(t, rnd(2) ? "true" : "[\"x\"]");
      else put(t, rnd(2) ? "\"v%d\"" : "\"a value of %d, longer than eight bytes\"", rnd(1000));
    } else {
      value(t, 0);
    }
    if (rnd(200) == 0) put(t, ",\"%s\":1", p->fields[i].src); /* repeated */
  }
  if (rnd(3) == 0) put(t, "%s\"EXTRA\":{\"deep\":[1,{\"x\":\"y\"}]}", first ? "" : ",");
  else if (rnd(50) == 0) put(t, "%s\"$set\":1", first ? "" : ",");
  put(t, "}");
}

static void value_text(text_t *t, const rtu_projection_t *p) {
  static const char *ops[] = {"\"c\"", "\"r\"", "\"u\"", "\"u\"", "\"u\"", "\"d\"", "\"t\"",
                              "\"x\"", "1", "\"cc\""};
  int which = (int)rnd(5);
  switch (rnd(40)) {
  case 0: return; /* no value */
  case 1: put(t, "null"); return;
  case 2: put(t, "[1]"); return;
  default: break;
  }
  bool envelope = rnd(25) == 0;
  if (envelope) put(t, "{\"schema\":{\"type\":\"struct\"},\"payload\":");
  ws(t);
  put(t, "{");
  ws(t);
  switch (rnd(8)) {
  case 0: put(t, "\"before\":null,"); break;
  case 1: break;
  case 2: put(t, "\"before\":7,"); break;
  default:
    put(t, "\"before\":");
    image(t, p, rnd(6) == 0 ? which + 1 : which, rnd(2));
    put(t, ",");
  }
  ws(t);
  switch (rnd(30)) {
  case 0: put(t, "\"after\":null,"); break;
  case 1: break;
  case 2: put(t, "\"after\":\"x\","); break;
  default:
    put(t, "\"after\":");
    image(t, p, which, false);
    put(t, ",");
  }
  ws(t);
  put(t, "\"source\":{\"version\":\"2.6.1.Final\",\"connector\":\"postgresql\",\"ts_ms\":%d,"
         "\"snapshot\":\"false\",\"db\":\"fooddb\",\"lsn\":24024432%s},",
      rnd(1000), rnd(30) ? "" : rnd(2) ? ",\"$x\":1" : ",\"q\":\"a\\\"b\"");
  if (rnd(30)) put(t, "\"op\":%s,", ops[rnd(sizeof ops / sizeof *ops)]);
  if (rnd(60) == 0) put(t, "\"op\":\"u\",");
  put(t, "\"ts_ms\":1709290937700}");
  if (envelope) put(t, "}");
  ws(t);
  if (rnd(40) == 0) t->n -= 1 + rnd((uint32_t)t->n / 2); /* broken */
}

/* A basic (IBM KCOP) message's value: the whole record, or what the Lua path
 * takes as a delete or refuses. */
static void basic_value_text(text_t *t, const rtu_projection_t *p) {
  switch (rnd(40)) {
  case 0: return; /* no value: a delete */
  case 1: put(t, "null"); return;
  case 2: put(t, "[1]"); return;
  case 3: put(t, "\"text\""); return;
  default: break;
  }
  ws(t);
  image(t, p, (int)rnd(5), false);
  ws(t);
  if (rnd(40) == 0) t->n -= 1 + rnd((uint32_t)t->n / 2); /* broken */
}

static void key_text(text_t *t, const rtu_projection_t *p) {
  switch (rnd(12)) {
  case 0: return; /* no key */
  case 1: put(t, "null"); return;
  case 2: put(t, "\"k\""); return;
  case 3: put(t, "{\"schema\":{},\"payload\":{\"%s\":1}}", p->pk_src[0]); return;
  case 4: put(t, "{\"%s\":null}", p->pk_src[0]); return;
  case 5: put(t, "{\"%s\":1", p->pk_src[0]); return; /* broken */
  case 6: put(t, "{}"); return;
  default: break;
  }
  put(t, "{");
  for (size_t k = 0; k < p->npk; k++) {
    put(t, "%s\"%s\":", k ? "," : "", p->pk_src[k]);
    key_value(t, (int)rnd(5), cast_of(p, p->pk_src[k]));
  }
  put(t, "}");
}

/* ---- comparing ----------------------------------------------------------- */

typedef struct {
  rtu_err_t rc;
  char err[RTU_ERRSTR_SIZE];
  rtu_mapped_t m;
} outcome_t;

static void map_one(rtu_script_t *s, size_t p, const rtu_msg_t *msg, outcome_t *o) {
  rtu_mapped_reset(&o->m);
  o->err[0] = '\0';
  o->rc = rtu_script_map(s, p, msg, &o->m, o->err, sizeof o->err);
}

static bool same_bson(const bson_t *a, const bson_t *b) {
  return a->len == b->len && !memcmp(bson_get_data(a), bson_get_data(b), a->len);
}

static bool same_outcome(const outcome_t *a, const outcome_t *b) {
  if (a->rc != b->rc) return false;
  if (a->rc != RTU_OK || a->m.skip || b->m.skip)
    return a->m.skip == b->m.skip && !strcmp(a->err, b->err);
  return a->m.op == b->m.op && same_bson(&a->m.key, &b->m.key) &&
         same_bson(&a->m.fields, &b->m.fields) && a->m.has_old_key == b->m.has_old_key &&
         same_bson(&a->m.old_key, &b->m.old_key) && a->m.has_position == b->m.has_position &&
         a->m.has_timestamp == b->m.has_timestamp && a->m.empty_key == b->m.empty_key;
}

static char *example_dir(const char *sub) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/../examples/food-delivery/%s", lua_runtime_dir(), sub);
  return strdup(buf);
}

static void food_env(const char *adapter, bool upsert) {
  char *map = example_dir("mapTable"), *casts = example_dir("castFunctions");
  env_clear();
  env_set("KAFKA_BROKERS", "localhost:9092");
  env_set("KAFKA_GROUP_ID", "rtu-test");
  env_set("MONGODB_URL", "mongodb://localhost:27017");
  env_set("PROJECTIONS_DATABASE_NAME", "projections");
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("KAFKA_MESSAGE_ADAPTER", adapter);
  env_set("PROJECTIONS_CHANGES_ENABLED", "false");
  env_set("MAP_TABLE_FOLDER", map);
  env_set("CAST_FUNCTIONS_FOLDER", casts);
  env_set("USE_UPSERT", upsert ? "true" : "false");
  env_set("INVARIANT_TOPIC_MAP",
          "{\"a\":\"pr_registry\",\"b\":\"pr_restaurants\",\"c\":\"pr_dishes\",\"d\":"
          "\"pr_allergens\",\"e\":\"pr_dishes_allergens\",\"f\":\"pr_orders\",\"g\":"
          "\"pr_orders_dishes\",\"h\":\"pr_reviews\"}");
  env_set("LOG_LEVEL", "silent");
  free(map);
  free(casts);
}

static rtu_config_t *load_config(void) {
  rtu_problems_t pr = {0};
  rtu_config_t *c = rtu_config_load(env_get, lua_runtime_dir(), &pr);
  if (!c) {
    fprintf(stderr, "test configuration refused:\n");
    print_problems(&pr);
    exit(2);
  }
  rtu_problems_free(&pr);
  return c;
}

static rtu_script_t *new_script(const rtu_config_t *c) {
  rtu_problems_t pr = {0};
  rtu_script_t *s = rtu_script_new(c, &pr);
  if (!s) {
    print_problems(&pr);
    exit(2);
  }
  rtu_problems_free(&pr);
  return s;
}

/* n random messages compared; returns how many the C path mapped. */
static size_t compare_random(const rtu_config_t *cfg, rtu_script_t *fast, rtu_script_t *lua,
                             size_t n, bool basic) {
  outcome_t a, b;
  rtu_mapped_init(&a.m);
  rtu_mapped_init(&b.m);
  rtu_mapped_t direct;
  rtu_mapped_init(&direct);
  rtu_map_fast_t **plans = calloc(cfg->nprojections, sizeof *plans);
  for (size_t p = 0; p < cfg->nprojections; p++)
    if (strcmp(cfg->projections[p].name, "pr_registry") &&
        strcmp(cfg->projections[p].name, "pr_restaurants")) /* a user cast: Lua only */
      plans[p] = rtu_map_fast_plan(cfg, &cfg->projections[p], NULL);
  size_t taken = 0, failures = 0;
  text_t key = {0}, val = {0};
  for (size_t i = 0; i < n; i++) {
    size_t p = rnd((uint32_t)cfg->nprojections);
    key.n = val.n = 0;
    put(&key, "%s", "");
    put(&val, "%s", "");
    key_text(&key, &cfg->projections[p]);
    if (basic) basic_value_text(&val, &cfg->projections[p]);
    else value_text(&val, &cfg->projections[p]);
    rtu_msg_t msg = {.topic = "t", .offset = (int64_t)i, .timestamp = 1700000000000,
                     .key = key.n ? key.s : NULL, .key_len = key.n,
                     .value = val.n || rnd(2) ? val.s : NULL, .value_len = val.n};
    map_one(fast, p, &msg, &a);
    map_one(lua, p, &msg, &b);
    if (plans[p]) {
      rtu_mapped_reset(&direct);
      bool t = rtu_map_fast(plans[p], &msg, &direct, NULL, NULL);
      taken += t;
      static int shown;
      if (!t && getenv("SHOW_DEFERRED") && b.rc == RTU_OK && !b.m.skip && shown++ < 8)
        fprintf(stderr, "deferred: key %.*s value %.*s\n", (int)key.n, key.s, (int)val.n, val.s);
    }
    if (!same_outcome(&a, &b) && failures++ < 5) {
      char *ka = bson_as_canonical_extended_json(&a.m.key, NULL);
      char *kb = bson_as_canonical_extended_json(&b.m.key, NULL);
      char *fa = bson_as_canonical_extended_json(&a.m.fields, NULL);
      char *fb = bson_as_canonical_extended_json(&b.m.fields, NULL);
      fprintf(stderr, "%s: key %.*s value %.*s\n    C:   rc %d skip %d op %d err '%s' key %s "
              "fields %s\n    Lua: rc %d skip %d op %d err '%s' key %s fields %s\n",
              cfg->projections[p].name, (int)key.n, key.s, (int)val.n, val.s, a.rc, a.m.skip,
              a.m.op, a.err, ka, fa, b.rc, b.m.skip, b.m.op, b.err, kb, fb);
      bson_free(ka);
      bson_free(kb);
      bson_free(fa);
      bson_free(fb);
    }
  }
  CHECK(failures == 0, "%zu of %zu messages mapped differently", failures, n);
  /* the projections with a user's cast took the C path too (through the state) */
  CHECK(rtu_script_map_fast_count(fast) > taken, "%llu messages through the state's C path, "
        "%zu of the projections without a user's cast", (unsigned long long)rtu_script_map_fast_count(fast), taken);
  CHECK(rtu_script_map_fast_count(lua) == 0);
  for (size_t p = 0; p < cfg->nprojections; p++) rtu_map_fast_free(plans[p]);
  free(plans);
  free(key.s);
  free(val.s);
  rtu_mapped_destroy(&a.m);
  rtu_mapped_destroy(&b.m);
  rtu_mapped_destroy(&direct);
  return taken;
}

/* The benchmark's form of a food message always takes the C path, and gives the
 * Lua pipeline's change. */
static void test_common_form(const rtu_config_t *cfg, rtu_script_t *lua) {
  size_t orders = 0;
  while (strcmp(cfg->projections[orders].name, "pr_orders")) orders++;
  rtu_map_fast_t *plan = rtu_map_fast_plan(cfg, &cfg->projections[orders], NULL);
  CHECK(plan != NULL, "pr_orders has no C plan");
  if (!plan) return;
  const char *key = "{\"ID_ORDER\":1785623401234567169}";
  const char *value =
      "{\"before\":{\"ID_ORDER\":1785623401234567169,\"ID_USER_ORDER\":\"user-0000001\","
      "\"ID_RESTAURANT_ORDER\":\"rest-00001\",\"ORDER_DATE\":1709290937700,\"STATUS\":\"CREATED\","
      "\"TOTAL_PRICE\":25.5,\"DELIVERY_ADDRESS\":\"Via Canonica 21, Milano\",\"PAYMENT_METHOD\":"
      "\"CARD\"},\"after\":{\"ID_ORDER\":1785623401234567169,\"ID_USER_ORDER\":\"user-0000001\","
      "\"ID_RESTAURANT_ORDER\":\"rest-00001\",\"ORDER_DATE\":1709290937700,\"STATUS\":"
      "\"ACCEPTED\",\"TOTAL_PRICE\":25.5,\"DELIVERY_ADDRESS\":\"Via Canonica 21, Milano\","
      "\"PAYMENT_METHOD\":\"CARD\"},\"source\":{\"version\":\"2.6.1.Final\",\"connector\":"
      "\"postgresql\",\"name\":\"food\",\"ts_ms\":1700000000000,\"snapshot\":\"false\",\"db\":"
      "\"fooddb\",\"schema\":\"public\",\"table\":\"orders\",\"txId\":1521,\"lsn\":24025736},"
      "\"op\":\"u\",\"ts_ms\":1700000000007}";
  rtu_msg_t msg = {.topic = "f", .key = key, .key_len = strlen(key), .value = value,
                   .value_len = strlen(value)};
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  CHECK(rtu_map_fast(plan, &msg, &m, NULL, NULL), "the common form was left to Lua");
  outcome_t b;
  rtu_mapped_init(&b.m);
  map_one(lua, orders, &msg, &b);
  CHECK(b.rc == RTU_OK && !b.m.skip && b.m.op == m.op && same_bson(&b.m.key, &m.key) &&
            same_bson(&b.m.fields, &m.fields),
        "the common form mapped differently");
  bson_iter_t it;
  CHECK(bson_iter_init_find(&it, &m.fields, "ORDER_DATE") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
        bson_iter_date_time(&it) == 1709290937700);
  rtu_mapped_destroy(&m);
  rtu_mapped_destroy(&b.m);
  rtu_map_fast_free(plan);
}

/* The benchmark's form of a basic message (numbers as strings, a boolean as
 * text) always takes the C path, and gives the Lua pipeline's change. */
static void test_basic_common_form(const rtu_config_t *cfg, rtu_script_t *lua) {
  size_t orders = 0;
  while (strcmp(cfg->projections[orders].name, "pr_orders")) orders++;
  rtu_map_fast_t *plan = rtu_map_fast_plan(cfg, &cfg->projections[orders], NULL);
  CHECK(plan != NULL, "pr_orders has no C plan with the basic adapter");
  if (!plan) return;
  const char *key = "{\"ID_ORDER\":17856234}";
  const char *value =
      "{\"ID_ORDER\":17856234,\"ID_USER_ORDER\":\"user-0000001\",\"ID_RESTAURANT_ORDER\":"
      "\"rest-00001\",\"ORDER_DATE\":1709290937700,\"STATUS\":\"ACCEPTED\",\"TOTAL_PRICE\":"
      "\"25.50\",\"DELIVERY_ADDRESS\":\"Via Canonica 21, Milano\",\"PAYMENT_METHOD\":\"CARD\"}";
  rtu_msg_t msg = {.topic = "f", .key = key, .key_len = strlen(key), .value = value,
                   .value_len = strlen(value)};
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  CHECK(rtu_map_fast(plan, &msg, &m, NULL, NULL), "the basic common form was left to Lua");
  outcome_t b;
  rtu_mapped_init(&b.m);
  map_one(lua, orders, &msg, &b);
  CHECK(b.rc == RTU_OK && !b.m.skip && b.m.op == m.op && same_bson(&b.m.key, &m.key) &&
            same_bson(&b.m.fields, &m.fields),
        "the basic common form mapped differently");
  rtu_mapped_destroy(&m);
  rtu_mapped_destroy(&b.m);
  rtu_map_fast_free(plan);
}

/* Numbers sent as strings, each through defaultCastToInteger and
 * defaultCastToFloat on both paths: the edges of JavaScript's Number and
 * parseInt the C path converts itself (-0, integral decimals, truncation) or
 * must leave to Lua (exponents in parseInt's text, past 2^53, not plain). */
static void test_number_strings(const rtu_config_t *cfg, rtu_script_t *fast, rtu_script_t *lua) {
  static const char *texts[] = {
      "0", "-0", "-0.0", "0.0", "7", "007", "-7", "12.", "12.0", "-3.50", "25.5", "0.5", "-0.5",
      "0.999999", "-0.9999999999999999", "2.9999999999999996", "0.000001", "0.0000001",
      "-0.00000099", "123456789012345678", "-123456789012345678", "1234567890123456789",
      "99999999999999999999", "9007199254740991.5", "9007199254740993.5", "4503599627370497.5",
      "1e3", "1.5e3", " 7", "7 ", "", "-", ".5", "5.5.5", "+5", "0x10", "Infinity", "12a",
      "100000000000000000000000.5", "0.30000000000000004", "1234.5678e0"};
  size_t lines = 0;
  while (strcmp(cfg->projections[lines].name, "pr_orders_dishes")) lines++;
  outcome_t a, b;
  rtu_mapped_init(&a.m);
  rtu_mapped_init(&b.m);
  size_t differ = 0;
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    char value[512];
    snprintf(value, sizeof value,
             "{\"ID_ORDER_DISH\":%zu,\"QUANTITY\":\"%s\",\"UNIT_PRICE\":\"%s\"}", i, texts[i],
             texts[i]);
    rtu_msg_t msg = {.topic = "g", .value = value, .value_len = strlen(value)};
    map_one(fast, lines, &msg, &a);
    map_one(lua, lines, &msg, &b);
    if (!same_outcome(&a, &b)) {
      char *fa = bson_as_canonical_extended_json(&a.m.fields, NULL);
      char *fb = bson_as_canonical_extended_json(&b.m.fields, NULL);
      fprintf(stderr, "\"%s\": C %s, Lua %s\n", texts[i], fa, fb);
      bson_free(fa);
      bson_free(fb);
      differ++;
    }
  }
  CHECK(differ == 0, "%zu number strings cast differently", differ);
  rtu_mapped_destroy(&a.m);
  rtu_mapped_destroy(&b.m);
}

int main(void) {
  static const char *adapters[] = {"debezium", "basic"};
  for (int a = 0; a < 2; a++)
    for (int upsert = 1; upsert >= 0; upsert--) {
      bool basic = a == 1;
      food_env(adapters[a], upsert);
      rtu_config_t *cfg = load_config();
      rtu_script_t *fast = new_script(cfg), *lua = new_script(cfg);
      rtu_script_map_set_fast(lua, false);
      if (basic) {
        test_basic_common_form(cfg, lua);
        test_number_strings(cfg, fast, lua);
      }
      else test_common_form(cfg, lua);
      size_t n = 20000, taken = compare_random(cfg, fast, lua, n, basic);
      /* a share of the random messages has the common form */
      CHECK(taken > n / 20, "%s: only %zu of %zu random messages took the C path", adapters[a],
            taken, n);
      fprintf(stderr, "%s upsert=%d: %zu of %zu random messages took the C path\n", adapters[a],
              upsert, taken, n);
      rtu_script_free(fast);
      rtu_script_free(lua);
      rtu_config_free(cfg);
    }
  env_clear();
  return CHECK_DONE();
}
