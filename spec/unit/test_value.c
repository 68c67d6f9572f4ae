/*
 * test_value.c: values between JSON, BSON and Lua (src/bson_*.c, src/json_*.c,
 * src/key_text.c): integers never
 * pass through doubles, every BSON type the core uses survives BSON -> Lua ->
 * BSON (an empty array stays an array, dates stay dates), what cannot be stored
 * is refused with the field named, and the JSON text written for Kafka has exact
 * integers, ISO dates and escaped strings.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "helpers.h"
#include "bson_lua.h"
#include "bson_raw.h"
#include "json_module.h"
#include "json_read.h"
#include "json_write.h"
#include "key_text.h"

static lua_State *L;

/* A plain state with rtu.json preloaded and rtu.value loaded from the runtime
 * folder and bound, as script.c sets them up. */
static lua_State *new_state(void) {
  lua_State *l = luaL_newstate();
  luaL_openlibs(l);
  luaL_requiref(l, "rtu.json", rtu_json_module_open, 0);
  lua_pop(l, 1);
  lua_getglobal(l, "package");
  lua_pushfstring(l, "%s/?.lua", lua_runtime_dir());
  lua_setfield(l, -2, "path");
  lua_pop(l, 1);
  if (luaL_dostring(l, "return (require('rtu.value'))") != LUA_OK) {
    fprintf(stderr, "cannot load rtu.value: %s\n", lua_tostring(l, -1));
    exit(2);
  }
  rtu_bson_lua_bind(l, -1);
  lua_setglobal(l, "V");
  return l;
}

/* Runs chunk (which returns one value) and leaves the value on the stack. */
static void eval(const char *chunk) {
  if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "Lua error in test chunk: %s\n", lua_tostring(L, -1));
    exit(2);
  }
}

/* ---- JSON -> BSON ------------------------------------------------------- */

/* Parses text; on success returns the iterator on "v" inside *doc. */
static bool parse(const char *text, bson_t *doc, bson_iter_t *it, char *err, size_t errsz) {
  err[0] = '\0';
  if (rtu_json_read_bson(text, strlen(text), doc, err, errsz) != RTU_OK) return false;
  if (!bson_iter_init_find(it, doc, "v")) {
    bson_destroy(doc);
    snprintf(err, errsz, "no v");
    return false;
  }
  return true;
}

static void expect_int(const char *text, bson_type_t type, int64_t want) {
  bson_t doc;
  bson_iter_t it;
  char err[RTU_ERRSTR_SIZE];
  if (!parse(text, &doc, &it, err, sizeof err)) {
    CHECK(false, "%s: refused: %s", text, err);
    return;
  }
  CHECK(bson_iter_type(&it) == type, "%s: BSON type 0x%02x, want 0x%02x", text,
        bson_iter_type(&it), type);
  if (bson_iter_type(&it) == type) {
    int64_t got = type == BSON_TYPE_INT32 ? bson_iter_int32(&it) : bson_iter_int64(&it);
    CHECK(got == want, "%s: got %lld", text, (long long)got);
  }
  bson_destroy(&doc);
}

static void expect_double(const char *text, double want) {
  bson_t doc;
  bson_iter_t it;
  char err[RTU_ERRSTR_SIZE];
  if (!parse(text, &doc, &it, err, sizeof err)) {
    CHECK(false, "%s: refused: %s", text, err);
    return;
  }
  CHECK(BSON_ITER_HOLDS_DOUBLE(&it), "%s: BSON type 0x%02x, want double", text,
        bson_iter_type(&it));
  if (BSON_ITER_HOLDS_DOUBLE(&it)) CHECK(bson_iter_double(&it) == want, "%s", text);
  bson_destroy(&doc);
}

static void expect_invalid(const char *text) {
  bson_t doc;
  bson_iter_t it;
  char err[RTU_ERRSTR_SIZE];
  bool ok = parse(text, &doc, &it, err, sizeof err);
  if (ok) {
    char *s = bson_canon(&doc);
    CHECK(false, "'%s' accepted as %s", text, s);
    bson_free(s);
    bson_destroy(&doc);
    return;
  }
  CHECK(err[0] != '\0', "'%s': refused without a message", text);
}

static void test_json_to_bson(void) {
  expect_int("0", BSON_TYPE_INT32, 0);
  expect_int("-7", BSON_TYPE_INT32, -7);
  expect_int("2147483647", BSON_TYPE_INT32, INT32_MAX);
  expect_int("-2147483648", BSON_TYPE_INT32, INT32_MIN);
  expect_int("2147483648", BSON_TYPE_INT64, 2147483648LL);
  expect_int("-2147483649", BSON_TYPE_INT64, -2147483649LL);
  expect_int("9007199254740993", BSON_TYPE_INT64, 9007199254740993LL);
  expect_int("-9007199254740993", BSON_TYPE_INT64, -9007199254740993LL);
  expect_int("-9223372036854775808", BSON_TYPE_INT64, INT64_MIN);
  expect_int("9223372036854775807", BSON_TYPE_INT64, INT64_MAX);
  expect_double("1.0", 1.0);
  expect_double("0.1", 0.1);
  expect_double("-2.5", -2.5);
  expect_double("1e3", 1000.0);
  expect_double("1.7976931348623157e308", 1.7976931348623157e308);

  /* Beyond int64: refused or a double, never a wrapped integer. */
  const char *huge[] = {"9223372036854775808", "-9223372036854775809", "18446744073709551616"};
  for (size_t i = 0; i < 3; i++) {
    bson_t doc;
    bson_iter_t it;
    char err[RTU_ERRSTR_SIZE];
    if (parse(huge[i], &doc, &it, err, sizeof err)) {
      char *got = bson_canon(&doc);
      CHECK(BSON_ITER_HOLDS_DOUBLE(&it), "%s became %s", huge[i], got);
      bson_free(got);
      bson_destroy(&doc);
    } else {
      CHECK(err[0] != '\0');
    }
  }

  /* Types stay apart inside documents and arrays. */
  bson_t doc;
  bson_iter_t it;
  char err[RTU_ERRSTR_SIZE];
  const char *text = "{\"a\": 1, \"b\": 1.0, \"c\": 9007199254740993, \"d\": [1, 2.5, "
                     "9223372036854775807, \"s\", true, null, {}, []], \"e\": {\"f\": -1}}";
  if (parse(text, &doc, &it, err, sizeof err)) {
    bson_t *want = json_doc(
        "{\"v\": {\"a\": {\"$numberInt\": \"1\"}, \"b\": {\"$numberDouble\": \"1.0\"},"
        " \"c\": {\"$numberLong\": \"9007199254740993\"},"
        " \"d\": [{\"$numberInt\": \"1\"}, {\"$numberDouble\": \"2.5\"},"
        " {\"$numberLong\": \"9223372036854775807\"}, \"s\", true, null, {}, []],"
        " \"e\": {\"f\": {\"$numberInt\": \"-1\"}}}}");
    char *got = bson_canon(&doc), *exp = bson_canon(want);
    CHECK(bson_equal(&doc, want), "got %s\n    want %s", got, exp);
    bson_free(got);
    bson_free(exp);
    bson_destroy(want);
    bson_destroy(&doc);
  } else {
    CHECK(false, "refused: %s", err);
  }

  /* Scalars and empty containers. */
  const struct {
    const char *text;
    bson_type_t type;
  } kinds[] = {{"\"x\"", BSON_TYPE_UTF8},   {"true", BSON_TYPE_BOOL}, {"false", BSON_TYPE_BOOL},
               {"null", BSON_TYPE_NULL},    {"[]", BSON_TYPE_ARRAY},  {"{}", BSON_TYPE_DOCUMENT},
               {" [1] ", BSON_TYPE_ARRAY}, {"\"\\u00e9\\n\"", BSON_TYPE_UTF8}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (parse(kinds[i].text, &doc, &it, err, sizeof err)) {
      CHECK(bson_iter_type(&it) == kinds[i].type, "%s: type 0x%02x", kinds[i].text,
            bson_iter_type(&it));
      bson_destroy(&doc);
    } else {
      CHECK(false, "%s refused: %s", kinds[i].text, err);
    }
  }
  if (parse("\"\\u00e9\\n\\\"\"", &doc, &it, err, sizeof err)) {
    CHECK_STR(bson_iter_utf8(&it, NULL), "\xc3\xa9\n\"");
    bson_destroy(&doc);
  }

  /* Not one JSON value: refused, and nothing of the wrapper leaks through. */
  expect_invalid("");
  expect_invalid("   ");
  expect_invalid("{");
  expect_invalid("[1,");
  expect_invalid("nul");
  expect_invalid("'a'");
  expect_invalid("1 2");
  expect_invalid("1, \"w\": 2");
  expect_invalid("1}{\"x\": 1");
  expect_invalid("1} //");
  expect_invalid("{\"a\": 1}}");

  /* A `$` field name would be read by libbson as MongoDB extended JSON
   * ({"$numberLong": "5"} -> 5), silently changing the data, and MongoDB
   * refuses such names in stored documents anyway: it is refused, named. */
  if (parse("{\"x\": {\"$numberLong\": \"5\"}, \"y\": {\"$date\": 0}}", &doc, &it, err,
            sizeof err)) {
    char *got = bson_canon(&doc);
    CHECK(false, "an object with a $-field accepted as %s", got);
    bson_free(got);
    bson_destroy(&doc);
  } else {
    CHECK(strstr(err, "$numberLong") != NULL, "the error names the field: %s", err);
  }
  /* The same with the '$' written as a JSON escape: libbson decodes the escape
   * and then reads extended JSON ({"$date": 0} becomes a BSON date). */
  const char *escaped[] = {"{\"x\": {\"\\u0024date\": 0}}",
                           "{\"x\": {\"\\u0024numberLong\": \"5\"}}",
                           "{\"x\": {\"\\u0024oid\": \"5f1d7a2b9c8e4d3f2a1b0c9d\"}}"};
  for (size_t i = 0; i < sizeof escaped / sizeof escaped[0]; i++) expect_invalid(escaped[i]);
  /* Not JSON either (JSON.parse refuses them). */
  expect_invalid("NaN");
  expect_invalid("Infinity");
  expect_invalid("[-Infinity]");
  /* A repeated name: JSON.parse keeps the last value, and so does the Lua value
   * that adapters and scripts see (the intermediate BSON holds both names and is
   * read only into Lua, where the later one wins). */
  eval("return require('rtu.json').decode('{\"a\": 1, \"a\": 2}').a");
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 2,
        "{\"a\": 1, \"a\": 2} decodes in Lua to a = %s", lua_tostring(L, -1));
  lua_pop(L, 1);
  /* Query operators are plain names (erSchema conditions use them). */
  if (parse("{\"$or\": [{\"a\": {\"$ne\": 1}}]}", &doc, &it, err, sizeof err)) bson_destroy(&doc);
  else CHECK(false, "a query operator key refused: %s", err);
  /* A '$' inside a string value is data. */
  if (parse("{\"x\": \"$5\"}", &doc, &it, err, sizeof err)) bson_destroy(&doc);
  else CHECK(false, "a '$' in a string value refused: %s", err);

  /* Deep nesting is refused cleanly (no crash). */
  char deep[4100];
  for (int i = 0; i < 2000; i++) deep[i] = '[';
  for (int i = 0; i < 2000; i++) deep[2000 + i] = ']';
  deep[4000] = '\0';
  if (parse(deep, &doc, &it, err, sizeof err)) bson_destroy(&doc);
  CHECK(true); /* got here */

  /* A long text goes through the heap buffer. */
  size_t n = 100000;
  char *big = malloc(n + 3);
  big[0] = '"';
  memset(big + 1, 'a', n);
  big[n + 1] = '"';
  big[n + 2] = '\0';
  if (parse(big, &doc, &it, err, sizeof err)) {
    uint32_t len;
    bson_iter_utf8(&it, &len);
    CHECK_EQ(len, n);
    bson_destroy(&doc);
  } else {
    CHECK(false, "long string refused: %s", err);
  }
  free(big);
}

/* ---- BSON -> Lua -> BSON ------------------------------------------------ */

/* Pushes doc into Lua and appends it back as "d"; compares with doc. */
static void roundtrip(const char *what, const bson_t *doc) {
  int top = lua_gettop(L);
  rtu_bson_lua_push_doc(L, doc);
  bson_t out = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE] = "";
  rtu_err_t rc = rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err);
  CHECK(rc == RTU_OK, "%s: append failed: %s", what, err);
  CHECK_EQ(lua_gettop(L), top + 1); /* the stack is left as it was */
  lua_settop(L, top);
  bson_iter_t it;
  if (rc == RTU_OK && bson_iter_init_find(&it, &out, "d") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    uint32_t len;
    const uint8_t *data;
    bson_t back;
    bson_iter_document(&it, &len, &data);
    bson_init_static(&back, data, len);
    char *a = bson_canon(doc), *b = bson_canon(&back);
    CHECK(bson_equal_unordered(doc, &back, NULL), "%s:\n    in  %s\n    out %s", what, a, b);
    bson_free(a);
    bson_free(b);
  } else if (rc == RTU_OK) {
    CHECK(false, "%s: no document d", what);
  }
  bson_destroy(&out);
}

static void test_roundtrip(void) {
  bson_t *doc = json_doc(
      "{\"i32\": {\"$numberInt\": \"7\"}, \"i32min\": {\"$numberInt\": \"-2147483648\"},"
      " \"i32max\": {\"$numberInt\": \"2147483647\"},"
      " \"i64\": {\"$numberLong\": \"9007199254740993\"},"
      " \"i64min\": {\"$numberLong\": \"-9223372036854775808\"},"
      " \"i64max\": {\"$numberLong\": \"9223372036854775807\"},"
      " \"i64edge\": {\"$numberLong\": \"2147483648\"},"
      " \"dbl\": {\"$numberDouble\": \"1.5\"}, \"dblwhole\": {\"$numberDouble\": \"2.0\"},"
      " \"dblbig\": {\"$numberDouble\": \"1e300\"}, \"dblneg\": {\"$numberDouble\": \"-0.001\"},"
      " \"inf\": {\"$numberDouble\": \"Infinity\"},"
      " \"str\": \"h\\u00e9llo \\\"q\\\" \\\\ \\n\", \"empty\": \"\", \"t\": true, \"f\": false,"
      " \"n\": null,"
      " \"doc\": {\"a\": {\"$numberInt\": \"1\"}, \"b\": {\"c\": [{\"$numberInt\": \"1\"}, \"x\"]}},"
      " \"emptydoc\": {},"
      " \"numkeys\": {\"1\": \"a\", \"2\": \"b\"},"
      " \"arr\": [{\"$numberInt\": \"1\"}, \"two\", {\"$numberDouble\": \"3.0\"}, null,"
      "           {\"x\": {\"$numberLong\": \"-9007199254740993\"}}, [], {}, true],"
      " \"emptyarr\": [], \"nestedarr\": [[[]], [{}]],"
      " \"arrnull\": [null, null],"
      " \"date\": {\"$date\": {\"$numberLong\": \"1700000000123\"}},"
      " \"date0\": {\"$date\": {\"$numberLong\": \"0\"}},"
      " \"dateneg\": {\"$date\": {\"$numberLong\": \"-62135596800000\"}},"
      " \"datesin\": [{\"$date\": {\"$numberLong\": \"1\"}}],"
      " \"\": \"empty key\", \"with space.dot\": {\"$numberInt\": \"1\"}}");
  roundtrip("every type", doc);
  bson_destroy(doc);

  doc = json_doc("{}");
  roundtrip("empty document", doc);
  bson_destroy(doc);

  /* A 64-bit integer that fits 32 bits comes back as int32: Lua has one integer
   * type; MongoDB compares them equal. Anything wider stays int64. */
  doc = json_doc("{\"small\": {\"$numberLong\": \"5\"}}");
  rtu_bson_lua_push_doc(L, doc);
  bson_t out = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE];
  CHECK(rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err) == RTU_OK);
  lua_pop(L, 1);
  bson_iter_t it;
  CHECK(bson_iter_init(&it, &out) && bson_iter_find_descendant(&it, "d.small", &it) &&
        BSON_ITER_HOLDS_INT32(&it) && bson_iter_int32(&it) == 5);
  bson_destroy(&out);
  bson_destroy(doc);

  /* What Lua sees: integers as integers, doubles as floats, the rtu.value kinds. */
  doc = json_doc("{\"i\": {\"$numberLong\": \"9007199254740993\"}, \"d\": {\"$numberDouble\": \"2.0\"},"
                 " \"a\": [], \"o\": {}, \"n\": null,"
                 " \"t\": {\"$date\": {\"$numberLong\": \"1700000000123\"}}}");
  rtu_bson_lua_push_doc(L, doc);
  lua_setglobal(L, "doc");
  eval("return math.type(doc.i) == 'integer' and doc.i == 9007199254740993"
       " and math.type(doc.d) == 'float' and V.is_array(doc.a) and not V.is_array(doc.o)"
       " and doc.n == V.null and V.is_date(doc.t) and doc.t.ms == 1700000000123"
       " and V.iso(doc.t) == '2023-11-14T22:13:20.123Z'");
  CHECK(lua_toboolean(L, -1), "the Lua view of a document");
  lua_pop(L, 1);
  bson_destroy(doc);

  /* Values built in Lua: an empty table is an object, V.array({}) an array, a
   * sequence an array, json.decode('[]') an array. */
  eval("local json = require('rtu.json')\n"
       "return {obj = {}, arr = V.array({}), seq = {1, 2, 3}, dec = json.decode('[]'),"
       " decobj = json.decode('{}'), date = V.date(86400000), null = V.null,"
       " flt = 0.5, int = 3, neg = -9223372036854775807 - 1}");
  bson_init(&out);
  CHECK(rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err) == RTU_OK, "%s", err);
  lua_pop(L, 1);
  bson_t *want = json_doc(
      "{\"d\": {\"obj\": {}, \"arr\": [], \"seq\": [{\"$numberInt\": \"1\"}, {\"$numberInt\": \"2\"},"
      " {\"$numberInt\": \"3\"}], \"dec\": [], \"decobj\": {},"
      " \"date\": {\"$date\": {\"$numberLong\": \"86400000\"}}, \"null\": null,"
      " \"flt\": {\"$numberDouble\": \"0.5\"}, \"int\": {\"$numberInt\": \"3\"},"
      " \"neg\": {\"$numberLong\": \"-9223372036854775808\"}}}");
  char *a = bson_canon(&out), *b = bson_canon(want);
  CHECK(bson_equal_unordered(&out, want, NULL), "Lua values:\n    got  %s\n    want %s", a, b);
  bson_free(a);
  bson_free(b);
  bson_destroy(want);
  bson_destroy(&out);

  /* json.encode of decoded values keeps the kinds. */
  eval("local json = require('rtu.json')\n"
       "return json.encode(json.decode('{\"a\":[],\"b\":{},\"c\":9007199254740993,\"d\":1.5}'))");
  const char *enc = lua_tostring(L, -1);
  CHECK(enc && strstr(enc, "\"a\":[]") && strstr(enc, "\"b\":{}") &&
            strstr(enc, "\"c\":9007199254740993") && strstr(enc, "\"d\":1.5"),
        "json.encode(json.decode(...)) = %s", enc ? enc : "(nil)");
  lua_pop(L, 1);
}

/* ---- what cannot be stored ---------------------------------------------- */

/* Evaluates chunk and appends the result as "d": must fail naming needle. */
static void expect_refused(const char *what, const char *chunk, const char *needle) {
  int top = lua_gettop(L);
  eval(chunk);
  bson_t out = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE] = "";
  rtu_err_t rc = rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err);
  CHECK(rc == RTU_ERR_DATA, "%s: append gave %s", what, rtu_err_name(rc));
  if (rc != RTU_OK) CHECK(strstr(err, needle) != NULL, "%s: error '%s' does not name '%s'", what,
                          err, needle);
  CHECK_EQ(lua_gettop(L), top + 1); /* the stack is left as it was */
  lua_settop(L, top);
  bson_destroy(&out);
}

static void test_refused(void) {
  expect_refused("invalid UTF-8", "return {ok = 'a', bad = 'x\\255y'}", "'bad'");
  expect_refused("invalid UTF-8, nested", "return {outer = {inner = {'ok', '\\192'}}}", "'1'");
  expect_refused("truncated UTF-8 sequence", "return {s = 'caf\\195'}", "'s'");
  expect_refused("overlong UTF-8", "return {s = '\\192\\175'}", "'s'");
  expect_refused("UTF-16 surrogate in UTF-8", "return {s = '\\237\\160\\128'}", "'s'");
  expect_refused("invalid UTF-8 key", "return {['k\\255'] = 1}", "UTF-8");
  expect_refused("NUL in a key", "return {['a\\0b'] = 1}", "a");
  expect_refused("number key in an object", "return {x = 1, [2] = 'a'}", "number");
  expect_refused("mixed table", "return {'a', 'b', x = 1}", "number");
  expect_refused("boolean key", "return {[true] = 1}", "boolean");
  expect_refused("float key", "return {[1.5] = 1}", "number");
  expect_refused("table key", "return {[{}] = 1}", "table");
  expect_refused("sparse array", "return {f = {[1] = 1, [3] = 3}}", "'f'");
  expect_refused("function", "return {f = function() end}", "'f'");
  expect_refused("function, says what", "return {f = print}", "function");
  expect_refused("function in an array", "return {list = {1, function() end}}", "'1'"); /* BSON index */
  expect_refused("coroutine", "return {co = coroutine.create(function() end)}", "'co'");
  expect_refused("userdata", "return {u = io.stdout}", "'u'");
  expect_refused("date without integer ms", "return {when = V.date(1.5)}", "'when'");

  /* A light userdata other than null. */
  int top = lua_gettop(L);
  lua_newtable(L);
  static int anything;
  lua_pushlightuserdata(L, &anything);
  lua_setfield(L, -2, "p");
  bson_t out = BSON_INITIALIZER;
  char err[RTU_ERRSTR_SIZE] = "";
  CHECK(rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err) == RTU_ERR_DATA);
  CHECK_HAS(err, "'p'");
  lua_settop(L, top);
  bson_destroy(&out);

  /* Nesting: 100 levels below the value are stored, 101 are refused, and a
   * cycle is refused rather than followed forever. */
  const char *nest = "local n, arr = ...\n"
                     "local root = {} local cur = root\n"
                     "for i = 1, n do local t = {} if arr then cur[1] = t else cur.x = t end cur = t end\n"
                     "return root";
  for (int arr = 0; arr < 2; arr++) {
    for (int n = 99; n <= 101; n++) {
      luaL_loadstring(L, nest);
      lua_pushinteger(L, n);
      lua_pushboolean(L, arr);
      lua_call(L, 2, 1);
      bson_init(&out);
      err[0] = '\0';
      rtu_err_t rc = rtu_bson_lua_append(L, -1, &out, "d", 1, err, sizeof err);
      lua_pop(L, 1);
      if (n <= 100) {
        CHECK(rc == RTU_OK, "%s nested %d deep refused: %s", arr ? "arrays" : "objects", n, err);
      } else {
        CHECK(rc == RTU_ERR_DATA, "%s nested %d deep accepted", arr ? "arrays" : "objects", n);
        CHECK_HAS(err, "deeper than 100");
      }
      bson_destroy(&out);
    }
  }
  expect_refused("cycle", "local t = {} t.self = t return t", "deeper than 100");
  expect_refused("cycle through an array", "local t = {} t[1] = t return t", "deeper than 100");

  /* After all of these the state is intact. */
  CHECK_EQ(lua_gettop(L), 0);
  eval("return 1 + 1");
  CHECK_EQ(lua_tointeger(L, -1), 2);
  lua_pop(L, 1);
}

/* A payload ends where its length says, without a NUL after it (Kafka's do not
 * have one): each text sits at the very end of its allocation, so that reading
 * past it is caught (the refusal of NaN read 8 bytes whatever was left, found by
 * spec/fuzz/fuzz_json_bson). */
static void test_unterminated(void) {
  const char *texts[][2] = {
      {"NaN", "'NaN' is not a JSON value"},
      {"[In", "'In' is not a JSON value"},
      {"{\"a\": Infinity", "'Infinity' is not a JSON value"},
      {"[1, N", "'N' is not a JSON value"},
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    size_t n = strlen(texts[i][0]);
    char *exact = malloc(n);
    memcpy(exact, texts[i][0], n);
    bson_t doc;
    char err[RTU_ERRSTR_SIZE] = "";
    bool ok = rtu_json_read_bson(exact, n, &doc, err, sizeof err) == RTU_OK;
    CHECK(!ok, "%s accepted", texts[i][0]);
    if (ok) bson_destroy(&doc);
    CHECK(!strcmp(err, texts[i][1]), "%s: '%s', want '%s'", texts[i][0], err, texts[i][1]);
    free(exact);
  }
}

/* ---- BSON -> Lua, some fields -------------------------------------------- */

static void test_push_doc_fields(void) {
  bson_t doc = BSON_INITIALIZER, sub;
  BSON_APPEND_INT32(&doc, "a", 1);
  BSON_APPEND_UTF8(&doc, "b", "skipped");
  BSON_APPEND_DOCUMENT_BEGIN(&doc, "c", &sub);
  BSON_APPEND_UTF8(&sub, "d", "deep");
  bson_append_document_end(&doc, &sub);
  BSON_APPEND_NULL(&doc, "ab");
  char *names[] = {"c", "a", "missing"};
  int top = lua_gettop(L);
  rtu_bson_lua_push_doc_fields(L, &doc, names, 3);
  lua_setglobal(L, "PART");
  eval("local n = 0 for _ in pairs(PART) do n = n + 1 end\n"
       "return n == 2 and PART.a == 1 and PART.c.d == 'deep' and PART.b == nil and PART.ab == nil");
  CHECK(lua_toboolean(L, -1), "rtu_bson_lua_push_doc_fields pushed other fields or lost one");
  lua_settop(L, top);
  bson_destroy(&doc);
}

/* Equal means the strategies would be handed the same value: same type, same
 * bytes; absent on both sides counts as equal. */
static void test_same_fields(void) {
  bson_t *a = BCON_NEW("id", BCON_INT32(7), "ref", BCON_UTF8("r-1"), "n", BCON_DOUBLE(0.0),
                       "d", "{", "x", BCON_INT64(1), "}", "when", BCON_DATE_TIME(5), "none",
                       BCON_NULL, "name", BCON_UTF8("before"));
  bson_t *b = BCON_NEW("name", BCON_UTF8("after"), "none", BCON_NULL, "when", BCON_DATE_TIME(5),
                       "d", "{", "x", BCON_INT64(1), "}", "n", BCON_DOUBLE(0.0), "ref",
                       BCON_UTF8("r-1"), "id", BCON_INT32(7));
  char *same[] = {"id", "ref", "n", "d", "when", "none", "missing"};
  CHECK(rtu_bson_raw_same_fields(a, b, same, 7), "equal fields (in another order) differ");
  char *name[] = {"id", "name"};
  CHECK(!rtu_bson_raw_same_fields(a, b, name, 2), "a changed field compared equal");
  CHECK(rtu_bson_raw_same_fields(a, b, name, 0), "no field to compare is not equal");
  struct {
    bson_t *x, *y;
    const char *why;
  } differ[] = {
      {BCON_NEW("f", BCON_INT32(1)), BCON_NEW("f", BCON_INT64(1)), "int32 and int64"},
      {BCON_NEW("f", BCON_INT32(1)), BCON_NEW("f", BCON_DOUBLE(1.0)), "int and double"},
      {BCON_NEW("f", BCON_DOUBLE(0.0)), BCON_NEW("f", BCON_DOUBLE(-0.0)), "0.0 and -0.0"},
      {BCON_NEW("f", BCON_UTF8("ab")), BCON_NEW("f", BCON_UTF8("abc")), "a prefix"},
      {BCON_NEW("f", BCON_UTF8("ab")), BCON_NEW("g", BCON_UTF8("ab")), "absent on one side"},
      {BCON_NEW("f", BCON_NULL), BCON_NEW("g", BCON_INT32(0)), "null and absent"},
      {BCON_NEW("f", "[", BCON_INT32(1), "]"), BCON_NEW("f", "[", BCON_INT32(2), "]"), "arrays"},
      {BCON_NEW("f", "{", "a", BCON_INT32(1), "}"), BCON_NEW("f", "[", BCON_INT32(1), "]"),
       "object and array"},
      {BCON_NEW("f", BCON_BOOL(true)), BCON_NEW("f", BCON_BOOL(false)), "booleans"},
      {BCON_NEW("f", BCON_REGEX("a", "")), BCON_NEW("f", BCON_REGEX("a", "")),
       "regexes (no byte form)"},
  };
  char *f[] = {"f"};
  for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++) {
    CHECK(!rtu_bson_raw_same_fields(differ[i].x, differ[i].y, f, 1), "%s compared equal",
          differ[i].why);
    bson_destroy(differ[i].x);
    bson_destroy(differ[i].y);
  }
  bson_destroy(a);
  bson_destroy(b);
}

/* ---- Lua -> raw BSON ------------------------------------------------------ */

/* The raw writer gives the bytes of libbson's path for every kind of value. */
static void test_raw_append(void) {
  eval("return {s = 'caf\\195\\169', i = 42, big = 2^40 // 1, neg = -2147483649, d = 1.5,"
       " t = true, f = false, n = V.null, tab = {a = 1, b = {2, 3}}, arr = V.array({1, 'x'}),"
       " date = V.date(86400000), empty = ''}");
  int t = lua_gettop(L);
  const char *keys[] = {"s", "i", "big", "neg", "d", "t", "f", "n", "tab", "arr", "date", "empty", "absent"};
  bson_t want = BSON_INITIALIZER, got = BSON_INITIALIZER;
  rtu_bson_raw_t raw;
  rtu_bson_raw_init(&raw);
  char err[RTU_ERRSTR_SIZE];
  bool e1 = false, e2 = false;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    lua_getfield(L, t, keys[i]);
    CHECK(rtu_bson_lua_append_marked(L, -1, &want, keys[i], -1, &e1, err, sizeof err) == RTU_OK,
          "append %s: %s", keys[i], err);
    CHECK(rtu_bson_lua_raw_append_marked(L, -1, &raw, keys[i], &e2, err, sizeof err) == RTU_OK,
          "raw append %s: %s", keys[i], err);
    lua_pop(L, 1);
  }
  CHECK(rtu_bson_raw_concat(&raw, &got), "rtu_bson_raw_concat failed");
  CHECK(want.len == got.len && !memcmp(bson_get_data(&want), bson_get_data(&got), want.len),
        "raw bytes differ from libbson's (%u and %u bytes)", want.len, got.len);
  CHECK(!e1 && !e2, "no empty key here");
  /* an empty key is marked, a string that is not UTF-8 refused the same way */
  lua_pushstring(L, "x");
  rtu_bson_raw_init(&raw);
  CHECK(rtu_bson_lua_raw_append_marked(L, -1, &raw, "", &e2, err, sizeof err) == RTU_OK && e2,
        "an empty key is not marked");
  lua_pushstring(L, "\xff");
  CHECK(rtu_bson_lua_raw_append_marked(L, -1, &raw, "bad", &e2, err, sizeof err) == RTU_ERR_DATA &&
            strstr(err, "UTF-8"),
        "a string that is not UTF-8 is stored: %s", err);
  bson_t sink = BSON_INITIALIZER;
  rtu_bson_raw_concat(&raw, &sink);
  bson_destroy(&sink);
  /* more than the stack buffer */
  rtu_bson_raw_init(&raw);
  char big[3000];
  memset(big, 'y', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  for (int i = 0; i < 5; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%d", i);
    lua_pushstring(L, big);
    rtu_bson_lua_raw_append_marked(L, -1, &raw, k, &e2, err, sizeof err);
    lua_pop(L, 1);
  }
  bson_t grown = BSON_INITIALIZER;
  CHECK(rtu_bson_raw_concat(&raw, &grown) && bson_count_keys(&grown) == 5 && grown.len > 15000,
        "a raw document past its stack buffer");
  bson_destroy(&grown);
  bson_destroy(&want);
  bson_destroy(&got);
  lua_settop(L, t - 1);
}

/* ---- merging fields ----------------------------------------------------- */

/* The look-up rtu_bson_raw_append_missing replaced: a linear search per field. */
static void append_missing_ref(bson_t *out, const bson_t *src) {
  bson_iter_t it, seen;
  if (!bson_iter_init(&it, src)) return;
  while (bson_iter_next(&it))
    if (!bson_iter_init_find(&seen, out, bson_iter_key(&it))) bson_append_iter(out, NULL, 0, &it);
}

/* A document of fields named by the characters of names ('a' -> "ka"), or by
 * the numbers in nums[0..n) when names is NULL; the value is the position. */
static void merge_doc(bson_t *doc, const char *names, const int *nums, size_t n) {
  bson_init(doc);
  for (size_t i = 0; i < n; i++) {
    char key[16];
    if (names) snprintf(key, sizeof key, "k%c", names[i]);
    else snprintf(key, sizeof key, "f%d", nums[i]);
    /* values of several sizes: the elements are copied as they are */
    switch (i % 6) {
    case 0: BSON_APPEND_INT32(doc, key, (int32_t)i); break;
    case 1: BSON_APPEND_UTF8(doc, key, i % 4 ? "text" : ""); break;
    case 2: BSON_APPEND_DOUBLE(doc, key, (double)i / 4); break;
    case 3: {
      bson_t sub;
      BSON_APPEND_DOCUMENT_BEGIN(doc, key, &sub);
      BSON_APPEND_BOOL(&sub, "b", true);
      bson_append_document_end(doc, &sub);
      break;
    }
    case 4: BSON_APPEND_NULL(doc, key); break;
    default: BSON_APPEND_DATE_TIME(doc, key, (int64_t)i * 1000); break;
    }
  }
}

static void expect_merge(const char *what, const bson_t *out0, const bson_t *src) {
  bson_t want, got, parent, child;
  bson_copy_to(out0, &want);
  append_missing_ref(&want, src);
  bson_copy_to(out0, &got);
  rtu_bson_raw_append_missing(&got, src);
  char *g = bson_as_canonical_extended_json(&got, NULL),
       *w = bson_as_canonical_extended_json(&want, NULL);
  CHECK(got.len == want.len && !memcmp(bson_get_data(&got), bson_get_data(&want), got.len),
        "%s:\n    got  %s\n    want %s", what, g, w);
  bson_free(g);
  /* the same into a document being written inside another (a $set) */
  bson_init(&parent);
  BSON_APPEND_INT32(&parent, "before", 1);
  BSON_APPEND_DOCUMENT_BEGIN(&parent, "$set", &child);
  bson_concat(&child, out0);
  rtu_bson_raw_append_missing(&child, src);
  bson_append_document_end(&parent, &child);
  bson_iter_t it;
  uint32_t len = 0;
  const uint8_t *data = NULL;
  if (bson_iter_init_find(&it, &parent, "$set")) bson_iter_document(&it, &len, &data);
  CHECK(len == want.len && data && !memcmp(data, bson_get_data(&want), len), "%s, as a child",
        what);
  bson_free(w);
  bson_destroy(&parent);
  bson_destroy(&got);
  bson_destroy(&want);
}

static void test_append_missing(void) {
  const struct {
    const char *out, *src;
  } cases[] = {
      {"", ""},           {"", "abc"},         {"abc", ""},          {"abc", "abc"},
      {"abc", "cba"},     {"abcdef", "bdf"},   {"bdf", "abcdef"},    {"abc", "xyz"},
      {"abc", "axbycz"},  {"abc", "aabbxxyx"}, {"aab", "bax"},       {"abcdefgh", "hgfedcbaz"},
      {"abcdef", "defabcg"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bson_t out, src;
    merge_doc(&out, cases[i].out, NULL, strlen(cases[i].out));
    merge_doc(&src, cases[i].src, NULL, strlen(cases[i].src));
    char what[64];
    snprintf(what, sizeof what, "'%s' + '%s'", cases[i].out, cases[i].src);
    expect_merge(what, &out, &src);
    bson_destroy(&out);
    bson_destroy(&src);
  }
  /* More names than the look-up holds on the stack, on either side, and
   * shuffled: the heap copy and the wrap-around of the hint. */
  int a[300], b[300];
  unsigned seed = 7;
  for (int round = 0; round < 20; round++) {
    size_t na = (size_t)(round * 13 % 150), nb = (size_t)(round * 29 % 300);
    for (size_t i = 0; i < na; i++) a[i] = (int)(i * 2);
    for (size_t i = 0; i < nb; i++) b[i] = (int)i;
    for (size_t i = nb; i > 1; i--) {
      seed = seed * 1103515245u + 12345u;
      size_t j = (seed >> 8) % i;
      int t = b[i - 1];
      b[i - 1] = b[j];
      b[j] = t;
    }
    if (nb > 4) b[nb - 1] = b[1]; /* a repeated name: its first one wins */
    bson_t out, src;
    merge_doc(&out, NULL, a, na);
    merge_doc(&src, NULL, b, nb);
    char what[64];
    snprintf(what, sizeof what, "%zu names + %zu shuffled", na, nb);
    expect_merge(what, &out, &src);
    bson_destroy(&out);
    bson_destroy(&src);
  }
}

/* rtu_bson_raw_find gives the iterator bson_iter_init_find gives. */
static void test_find(void) {
  bson_t doc = BSON_INITIALIZER, sub;
  BSON_APPEND_UTF8(&doc, "a", "x");
  BSON_APPEND_INT32(&doc, "", 1);
  BSON_APPEND_DOCUMENT_BEGIN(&doc, "_idx", &sub);
  BSON_APPEND_INT32(&sub, "_id", 2);
  bson_append_document_end(&doc, &sub);
  BSON_APPEND_INT64(&doc, "_id", 3);
  BSON_APPEND_DOUBLE(&doc, "_id", 4.5);
  BSON_APPEND_NULL(&doc, "z");
  const char *keys[] = {"a", "", "_id", "_idx", "_i", "z", "absent", "Z"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    bson_iter_t want, got;
    bool w = bson_iter_init_find(&want, &doc, keys[i]), g = rtu_bson_raw_find(&got, &doc, keys[i]);
    CHECK(w == g, "'%s': found %d, want %d", keys[i], g, w);
    if (w && g) {
      CHECK(!strcmp(bson_iter_key(&got), bson_iter_key(&want)) &&
                bson_iter_type(&got) == bson_iter_type(&want) &&
                bson_iter_as_int64(&got) == bson_iter_as_int64(&want),
            "'%s': another field", keys[i]);
      /* and it goes on from there as the other does */
      bool nw = bson_iter_next(&want), ng = bson_iter_next(&got);
      CHECK(nw == ng && (!nw || !strcmp(bson_iter_key(&got), bson_iter_key(&want))),
            "'%s': the next field differs", keys[i]);
    }
  }
  bson_destroy(&doc);
  bson_init(&doc);
  bson_iter_t it;
  CHECK(!rtu_bson_raw_find(&it, &doc, "_id"), "found in an empty document");
  bson_destroy(&doc);
}

/* ---- BSON -> JSON text -------------------------------------------------- */

static void expect_json(const char *what, const bson_t *doc, bool as_array, const char *want) {
  bson_string_t *s = bson_string_new(NULL);
  rtu_json_write_doc(doc, as_array, s);
  CHECK(!strcmp(s->str, want), "%s:\n    got  %s\n    want %s", what, s->str, want);
  bson_string_free(s, true);
}

/* The JSON string and number writers as they were (a byte, a call, and
 * bson_utf8_validate per sequence; snprintf for every double): the new ones
 * must write the same bytes. */
static void json_string_ref(bson_string_t *out, const unsigned char *u, size_t len) {
  bson_string_append_c(out, '"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = u[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      bson_string_append_c(out, (char)c);
      continue;
    }
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n && n <= len - i && bson_utf8_validate((const char *)u + i, n, false)) {
      for (size_t k = 0; k < n; k++) bson_string_append_c(out, (char)u[i + k]);
      i += n - 1;
      continue;
    }
    char esc[8];
    switch (c) {
    case '"': strcpy(esc, "\\\""); break;
    case '\\': strcpy(esc, "\\\\"); break;
    case '\b': strcpy(esc, "\\b"); break;
    case '\f': strcpy(esc, "\\f"); break;
    case '\n': strcpy(esc, "\\n"); break;
    case '\r': strcpy(esc, "\\r"); break;
    case '\t': strcpy(esc, "\\t"); break;
    default:
      if (c >= 0x80) strcpy(esc, "\\ufffd");
      else snprintf(esc, sizeof esc, "\\u%04x", c);
    }
    bson_string_append(out, esc);
  }
  bson_string_append_c(out, '"');
}

static void expect_json_string(const char *what, const unsigned char *u, size_t len) {
  bson_string_t *got = bson_string_new(NULL), *want = bson_string_new(NULL);
  bson_string_append(got, "x"); /* after other text, as in a document */
  bson_string_append(want, "x");
  rtu_json_write_string(got, (const char *)u, len);
  json_string_ref(want, u, len);
  CHECK(got->len == want->len && !memcmp(got->str, want->str, got->len) &&
            strlen(got->str) == got->len,
        "%s (%zu bytes):\n    got  %s\n    want %s", what, len, got->str, want->str);
  bson_string_free(got, true);
  bson_string_free(want, true);
}

static void test_json_string(void) {
  unsigned char b[64];
  /* every byte alone, and inside runs of plain text on both sides */
  for (int c = 0; c < 256; c++) {
    b[0] = (unsigned char)c;
    expect_json_string("one byte", b, 1);
    memcpy(b, "abc", 3);
    b[3] = (unsigned char)c;
    memcpy(b + 4, "defg", 4);
    expect_json_string("a byte in a run", b, 8);
  }
  expect_json_string("empty", b, 0);
  /* every byte at every place of a longer run: the 8-byte steps see it */
  for (int c = 0; c < 256; c++)
    for (size_t at = 0; at < 20; at++) {
      memcpy(b, "The quick brown fox.", 20);
      b[at] = (unsigned char)c;
      expect_json_string("a byte in a long run", b, 20);
    }
  /* UTF-8 at the edges bson_utf8_validate draws: overlong forms, surrogates,
   * above U+10FFFF, lead bytes past 0xf4, cut sequences, stray continuations */
  static const char *const seqs[] = {
      "\xc2\x80", "\xdf\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
      "\xe0\xa0\x80", "\xed\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xee\x80\x80",
      "\xef\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", "\xf8\x88\x80\x80\x80",
      "\xfc\x84\x80\x80\x80\x80", "\xe2\x82", "\xf0\x9f\x98", "\x80\x80", "\xc3\xa9\xa9",
      "\xe2\x28\xa1", "\xc3\x28", "\xf0\x28\x8c\xbc", "a\"\\\x01\x1f\x7f\xc3\xa9\"\"",
  };
  for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
    size_t n = strlen(seqs[i]);
    expect_json_string("utf-8", (const unsigned char *)seqs[i], n);
    memcpy(b, "ab", 2);
    memcpy(b + 2, seqs[i], n);
    memcpy(b + 2 + n, "cd", 2);
    expect_json_string("utf-8 in a run", b, n + 4);
  }
  /* random bytes, mostly high ones and escapes */
  static const unsigned char pick[] = {'a', 'Z', ' ', '"', '\\', '\n', 0, 0x1f, 0x7f,
                                       0x80, 0xbf, 0xc2, 0xc3, 0xdf, 0xe0, 0xe2, 0xed,
                                       0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x90, 0xa0};
  unsigned seed = 11;
  for (int round = 0; round < 20000; round++) {
    size_t n = (size_t)(round % 17);
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      b[i] = (seed >> 20) % 4 == 0 ? (unsigned char)(seed >> 8) : pick[(seed >> 8) % sizeof pick];
    }
    expect_json_string("random", b, n);
  }
}

/* What JavaScript's String(d) prints, as the samples node wrote
 * (spec/unit/fixtures/js_samples.js): the number text of JSON.stringify. */
static const char *js_number_of(double d, char want[48]);

typedef struct {
  uint64_t bits;
  char text[40];
} js_sample_t;

static js_sample_t *js_samples;
static size_t njs_samples;

static void load_js_samples(void) {
  char path[4096];
  const char *here = __FILE__, *slash = strrchr(here, '/');
  snprintf(path, sizeof path, "%.*s/fixtures/js_numbers.txt", (int)(slash ? slash - here : 1),
           slash ? here : ".");
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return;
  char line[128];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    if (njs_samples == cap) {
      cap = cap ? cap * 2 : 1024;
      js_samples = realloc(js_samples, cap * sizeof *js_samples);
    }
    js_sample_t *s = &js_samples[njs_samples];
    if (sscanf(line, "%16" SCNx64 " %39s", &s->bits, s->text) == 2) njs_samples++;
  }
  fclose(f);
  CHECK(njs_samples > 3000, "%zu samples", njs_samples);
}

static const char *js_number_of(double d, char want[48]) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  for (size_t i = 0; i < njs_samples; i++)
    if (js_samples[i].bits == b) return strcpy(want, js_samples[i].text);
  return NULL;
}

static void expect_json_double(double d, const char *want) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_DOUBLE(&doc, "0", d);
  bson_string_t *s = bson_string_new(NULL);
  rtu_json_write_doc(&doc, true, s);
  size_t n = strlen(want);
  CHECK(s->len == n + 2 && !memcmp(s->str + 1, want, n), "%.17g: got %s, want [%s]", d, s->str,
        want);
  bson_string_free(s, true);
  bson_destroy(&doc);
}

/* Doubles as JSON.stringify writes them (shortest digits that read back, plain
 * from 1e-6 to below 1e21, e+21 / e-7 beyond, -0 as 0): every sample node
 * printed, and the non-finite ones as null. */
static void test_json_double(void) {
  size_t departures = 0;
  for (size_t i = 0; i < njs_samples; i++) {
    double d;
    memcpy(&d, &js_samples[i].bits, sizeof d);
    if (fabs(d) >= 9223372036854775808.0 && fabs(d) < 1e21) {
      /* JavaScript's digits there are an integer beyond 64 bits, which rtu's
       * reader refuses: the exponent form instead, the same number */
      char want[48];
      snprintf(want, sizeof want, "%s", js_samples[i].text);
      bson_t doc = BSON_INITIALIZER;
      BSON_APPEND_DOUBLE(&doc, "0", d);
      bson_string_t *s = bson_string_new(NULL);
      rtu_json_write_doc(&doc, true, s);
      CHECK(strchr(s->str, 'e') && strtod(s->str + 1, NULL) == d, "%s: got %s", want, s->str);
      bson_string_free(s, true);
      bson_destroy(&doc);
      departures++;
      continue;
    }
    expect_json_double(d, js_samples[i].text);
  }
  CHECK(departures > 10 && departures < njs_samples / 10, "%zu departures", departures);
  expect_json_double(INFINITY, "null");
  expect_json_double(-INFINITY, "null");
  expect_json_double(NAN, "null");
}

/* rtu_iso8601 against gmtime_r over years 0 to 9999, where it writes by hand. */
static void test_iso8601(void) {
  unsigned long long seed = 3;
  for (int round = 0; round < 20000; round++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t lo = -62167219200000LL, span = 253402300799999LL - lo + 1;
    int64_t ms = round < 2 ? (round ? lo : lo + span - 1)
                           : lo + (int64_t)((seed >> 1) % (uint64_t)span);
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    char want[96], got[40];
    gmtime_r(&t, &tm);
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - secs * 1000));
    rtu_iso8601(ms, got, sizeof got);
    CHECK(!strcmp(got, want), "%lld: got %s, want %s", (long long)ms, got, want);
  }
}

/* A scalar as the writer did on libbson's accessors, before it read in place. */
static void scalar_json_ref(const bson_iter_t *it, bson_string_t *out) {
  char buf[64];
  switch (bson_iter_type(it)) {
  case BSON_TYPE_DOUBLE: {
    double d = bson_iter_double(it);
    if (!isfinite(d)) {
      bson_string_append(out, "null");
      break;
    }
    /* JavaScript's text where node gave it; the writer's own for the others
     * (test_json_double holds it to node's samples). */
    if (js_number_of(d, buf) && !(fabs(d) >= 9223372036854775808.0 && fabs(d) < 1e21)) {
      bson_string_append(out, buf);
    } else {
      bson_t one = BSON_INITIALIZER;
      BSON_APPEND_DOUBLE(&one, "0", d);
      bson_string_t *s = bson_string_new(NULL);
      rtu_json_write_doc(&one, true, s);
      bson_string_append(out, s->str + 1);
      out->len--; /* the closing bracket */
      out->str[out->len] = '\0';
      bson_string_free(s, true);
      bson_destroy(&one);
    }
    break;
  }
  case BSON_TYPE_UTF8: {
    uint32_t len;
    const char *str = bson_iter_utf8(it, &len);
    rtu_json_write_string(out, str, len);
    break;
  }
  case BSON_TYPE_OID:
    bson_oid_to_string(bson_iter_oid(it), buf);
    bson_string_append_printf(out, "\"%s\"", buf);
    break;
  case BSON_TYPE_BOOL: bson_string_append(out, bson_iter_bool(it) ? "true" : "false"); break;
  case BSON_TYPE_DATE_TIME:
    rtu_iso8601(bson_iter_date_time(it), buf, sizeof buf);
    bson_string_append_printf(out, "\"%s\"", buf);
    break;
  case BSON_TYPE_INT32: bson_string_append_printf(out, "%d", bson_iter_int32(it)); break;
  case BSON_TYPE_INT64:
    bson_string_append_printf(out, "%lld", (long long)bson_iter_int64(it));
    break;
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d;
    char str[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &d);
    bson_decimal128_to_string(&d, str);
    bson_string_append(out, str);
    break;
  }
  default: bson_string_append(out, "null"); break;
  }
}

/* The document writer as it was, on libbson's iterator. */
static void json_members_ref(bson_iter_t *it, bool array, bson_string_t *out) {
  bool first = true;
  while (bson_iter_next(it)) {
    if (!first) bson_string_append_c(out, ',');
    first = false;
    if (!array) {
      rtu_json_write_string(out, bson_iter_key(it), bson_iter_key_len(it));
      bson_string_append_c(out, ':');
    }
    if (BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) {
      bool arr = BSON_ITER_HOLDS_ARRAY(it);
      bson_iter_t child;
      bson_string_append_c(out, arr ? '[' : '{');
      if (bson_iter_recurse(it, &child)) json_members_ref(&child, arr, out);
      bson_string_append_c(out, arr ? ']' : '}');
    } else {
      scalar_json_ref(it, out);
    }
  }
}

/* The first value alone (json.encode, log fields, kafkaInfo's key); nothing for
 * an empty document. */
static void test_first_to_json(void) {
  bson_t doc = BSON_INITIALIZER;
  bson_string_t *out = bson_string_new(NULL);
  rtu_json_write_first(&doc, out);
  CHECK_STR(out->str, "");
  BSON_APPEND_UTF8(&doc, "key", "a\"b");
  BSON_APPEND_INT32(&doc, "second", 2);
  rtu_json_write_first(&doc, out);
  CHECK_STR(out->str, "\"a\\\"b\"");
  bson_string_free(out, true);
  bson_destroy(&doc);
}

static bool expect_doc_json(const char *what, const bson_t *doc) {
  bson_string_t *got = bson_string_new(NULL), *want = bson_string_new(NULL);
  bson_iter_t it;
  rtu_json_write_doc(doc, false, got);
  bson_string_append_c(want, '{');
  if (bson_iter_init(&it, doc)) json_members_ref(&it, false, want);
  bson_string_append_c(want, '}');
  bool same = got->len == want->len && !memcmp(got->str, want->str, got->len);
  CHECK(same, "%s:\n    got  %s\n    want %s", what, got->str, want->str);
  bson_string_free(got, true);
  bson_string_free(want, true);
  return same;
}

/* Every BSON type, then the same bytes damaged one at a time: the in-place
 * reader stops where libbson's iterator stopped. */
static void test_doc_json_raw(void) {
  bson_t doc = BSON_INITIALIZER, sub, scope = BSON_INITIALIZER;
  bson_oid_t oid;
  bson_decimal128_t dec;
  bson_oid_init_from_string(&oid, "5f1d7a2b9c8e4d3f2a1b0c9d");
  bson_decimal128_from_string("-12.345E+6", &dec);
  BSON_APPEND_DOUBLE(&doc, "d", 9.75);
  BSON_APPEND_UTF8(&doc, "s", "t\xc3\xa9xt \"q\"");
  BSON_APPEND_DOCUMENT_BEGIN(&doc, "doc", &sub);
  BSON_APPEND_INT32(&sub, "x", 1);
  BSON_APPEND_UTF8(&sub, "", "empty name");
  bson_append_document_end(&doc, &sub);
  BSON_APPEND_ARRAY_BEGIN(&doc, "arr", &sub);
  BSON_APPEND_INT64(&sub, "0", -3);
  BSON_APPEND_NULL(&sub, "1");
  bson_append_array_end(&doc, &sub);
  BSON_APPEND_BINARY(&doc, "bin", BSON_SUBTYPE_BINARY, (const uint8_t *)"abc", 3);
  BSON_APPEND_BINARY(&doc, "old", BSON_SUBTYPE_BINARY_DEPRECATED, (const uint8_t *)"abcd", 4);
  BSON_APPEND_UNDEFINED(&doc, "u");
  BSON_APPEND_OID(&doc, "oid", &oid);
  BSON_APPEND_BOOL(&doc, "t", true);
  BSON_APPEND_BOOL(&doc, "f", false);
  BSON_APPEND_DATE_TIME(&doc, "date", 1700000000123LL);
  BSON_APPEND_NULL(&doc, "n");
  BSON_APPEND_REGEX(&doc, "re", "^a.*b$", "i");
  BSON_APPEND_DBPOINTER(&doc, "ptr", "coll", &oid);
  BSON_APPEND_CODE(&doc, "code", "return 1;");
  BSON_APPEND_SYMBOL(&doc, "sym", "symbol");
  BSON_APPEND_INT32(&scope, "a", 1);
  BSON_APPEND_CODE_WITH_SCOPE(&doc, "cws", "return a;", &scope);
  BSON_APPEND_INT32(&doc, "i", -2147483647 - 1);
  BSON_APPEND_TIMESTAMP(&doc, "ts", 5, 6);
  BSON_APPEND_INT64(&doc, "l", INT64_MIN);
  BSON_APPEND_DECIMAL128(&doc, "dec", &dec);
  BSON_APPEND_MAXKEY(&doc, "max");
  BSON_APPEND_MINKEY(&doc, "min");
  BSON_APPEND_DOUBLE(&doc, "last", -0.0);
  expect_doc_json("every type", &doc);

  uint8_t *bytes = bson_malloc(doc.len);
  static const uint8_t values[] = {0x00, 0x01, 0x02, 0x05, 0x0b, 0x10, 0x7f, 0x80, 0xff};
  int damaged = 0;
  bool same = true;
  for (uint32_t at = 4; same && at + 1 < doc.len; at++)
    for (size_t v = 0; same && v < sizeof values; v++) {
      memcpy(bytes, bson_get_data(&doc), doc.len);
      if (bytes[at] == values[v]) continue;
      bytes[at] = values[v];
      bson_t bad;
      if (!bson_init_static(&bad, bytes, doc.len)) continue;
      char what[64];
      snprintf(what, sizeof what, "byte %u set to 0x%02x", at, values[v]);
      same = expect_doc_json(what, &bad); /* one report is enough */
      damaged++;
    }
  CHECK(damaged > 1000, "%d damaged documents", damaged);
  bson_free(bytes);
  bson_destroy(&scope);
  bson_destroy(&doc);
}

/* rtu_int_text against printf, digits of every count and both signs. */
static void test_int_text(void) {
  unsigned long long seed = 9;
  for (int round = 0; round < 20000; round++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    int64_t v = round == 0 ? INT64_MIN : round == 1 ? INT64_MAX : round == 2 ? 0
                : (int64_t)(seed >> (round % 64));
    if (round % 2) v = (int64_t)(0 - (uint64_t)v);
    char got[24], want[32];
    size_t n = rtu_int_text(v, got);
    snprintf(want, sizeof want, "%lld", (long long)v);
    CHECK(n == strlen(want) && !strcmp(got, want), "%s written as %s", want, got);
  }
}

static void test_doc_to_json(void) {
  bson_t doc = BSON_INITIALIZER;
  BSON_APPEND_INT32(&doc, "i", -5);
  BSON_APPEND_INT64(&doc, "l", 9007199254740993LL);
  BSON_APPEND_INT64(&doc, "min", INT64_MIN);
  BSON_APPEND_INT64(&doc, "max", INT64_MAX);
  BSON_APPEND_DOUBLE(&doc, "d", 1.5);
  BSON_APPEND_DOUBLE(&doc, "tenth", 0.1);
  BSON_APPEND_DOUBLE(&doc, "third", 1.0 / 3.0);
  BSON_APPEND_DOUBLE(&doc, "whole", 2.0);
  BSON_APPEND_DOUBLE(&doc, "nan", NAN);
  BSON_APPEND_DOUBLE(&doc, "inf", INFINITY);
  BSON_APPEND_UTF8(&doc, "s", "a\"b\\c\n\t\r\b\f\x01/\xc3\xa9");
  BSON_APPEND_BOOL(&doc, "t", true);
  BSON_APPEND_BOOL(&doc, "f", false);
  BSON_APPEND_NULL(&doc, "n");
  BSON_APPEND_DATE_TIME(&doc, "date", 1700000000123LL);
  BSON_APPEND_DATE_TIME(&doc, "epoch", 0);
  BSON_APPEND_DATE_TIME(&doc, "before", -1);
  bson_t arr, sub;
  BSON_APPEND_ARRAY_BEGIN(&doc, "arr", &arr);
  BSON_APPEND_INT32(&arr, "0", 1);
  BSON_APPEND_UTF8(&arr, "1", "x");
  BSON_APPEND_ARRAY_BEGIN(&arr, "2", &sub);
  bson_append_array_end(&arr, &sub);
  bson_append_array_end(&doc, &arr);
  BSON_APPEND_DOCUMENT_BEGIN(&doc, "k\"ey", &sub);
  BSON_APPEND_INT64(&sub, "deep", -9007199254740993LL);
  bson_append_document_end(&doc, &sub);
  BSON_APPEND_DOCUMENT_BEGIN(&doc, "empty", &sub);
  bson_append_document_end(&doc, &sub);
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, "5f1d7a2b9c8e4d3f2a1b0c9d");
  BSON_APPEND_OID(&doc, "oid", &oid);
  bson_append_utf8(&doc, "nul", 3, "a\0b", 3);

  expect_json("document", &doc, false,
              "{\"i\":-5,\"l\":9007199254740993,\"min\":-9223372036854775808,"
              "\"max\":9223372036854775807,\"d\":1.5,\"tenth\":0.1,"
              "\"third\":0.3333333333333333,\"whole\":2,\"nan\":null,\"inf\":null,"
              "\"s\":\"a\\\"b\\\\c\\n\\t\\r\\b\\f\\u0001/\xc3\xa9\",\"t\":true,\"f\":false,"
              "\"n\":null,\"date\":\"2023-11-14T22:13:20.123Z\","
              "\"epoch\":\"1970-01-01T00:00:00.000Z\",\"before\":\"1969-12-31T23:59:59.999Z\","
              "\"arr\":[1,\"x\",[]],\"k\\\"ey\":{\"deep\":-9007199254740993},\"empty\":{},"
              "\"oid\":\"5f1d7a2b9c8e4d3f2a1b0c9d\",\"nul\":\"a\\u0000b\"}");
  bson_destroy(&doc);

  bson_init(&doc);
  BSON_APPEND_INT32(&doc, "0", 1);
  BSON_APPEND_UTF8(&doc, "1", "two");
  expect_json("as array", &doc, true, "[1,\"two\"]");
  bson_destroy(&doc);
  bson_init(&doc);
  expect_json("empty array", &doc, true, "[]");
  expect_json("empty object", &doc, false, "{}");
  bson_destroy(&doc);

  /* Multi-byte characters and DEL stay as they are; a byte that is not UTF-8
   * becomes U+FFFD and the rest of the string is kept (libbson's escape gave
   * an empty string). */
  bson_init(&doc);
  BSON_APPEND_UTF8(&doc, "u", "\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  bson_append_utf8(&doc, "bad", 3, "a\xff" "b\xc3(\xe2\x82", 7);
  expect_json("utf-8", &doc, false,
              "{\"u\":\"\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
              "\"bad\":\"a\\ufffdb\\ufffd(\\ufffd\\ufffd\"}");
  bson_destroy(&doc);
  /* A long string grows the buffer more than once. */
  bson_init(&doc);
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  big[2500] = '"';
  BSON_APPEND_UTF8(&doc, "big", big);
  {
    bson_string_t *s = bson_string_new(NULL);
    rtu_json_write_doc(&doc, false, s);
    CHECK(s->len == 5000 + 10 && strlen(s->str) == s->len && s->str[2508] == '\\' &&
              s->str[2509] == '"',
          "long string written as %u bytes", s->len);
    bson_string_free(s, true);
  }
  bson_destroy(&doc);

  /* Dates as JavaScript's toISOString writes them, also outside years 0-9999. */
  const struct {
    int64_t ms;
    const char *iso;
  } dates[] = {
      {253402300799999LL, "9999-12-31T23:59:59.999Z"},
      {-62167219200000LL, "0000-01-01T00:00:00.000Z"},
      {253402300800000LL, "+010000-01-01T00:00:00.000Z"},
      {-62198755200000LL, "-000001-01-01T00:00:00.000Z"},
  };
  for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++) {
    bson_init(&doc);
    BSON_APPEND_DATE_TIME(&doc, "t", dates[i].ms);
    char want[64];
    snprintf(want, sizeof want, "{\"t\":\"%s\"}", dates[i].iso);
    expect_json("date", &doc, false, want);
    bson_destroy(&doc);
    /* and the same as rtu.value's iso, which the Lua side writes */
    lua_getglobal(L, "V");
    lua_getfield(L, -1, "iso");
    lua_pushinteger(L, dates[i].ms);
    lua_call(L, 1, 1);
    CHECK_STR(lua_tostring(L, -1), dates[i].iso);
    lua_pop(L, 2);
  }

  /* Every double comes back exactly from its text. */
  double ds[] = {0.1 + 0.2, 1e21, 5e-324, 123456789.123456789, -1.7976931348623157e308};
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    bson_init(&doc);
    BSON_APPEND_DOUBLE(&doc, "x", ds[i]);
    bson_string_t *s = bson_string_new(NULL);
    rtu_json_write_doc(&doc, false, s);
    const char *colon = strchr(s->str, ':');
    CHECK(colon && strtod(colon + 1, NULL) == ds[i], "%.17g written as %s", ds[i], s->str);
    bson_string_free(s, true);
    bson_destroy(&doc);
  }
}

/* ---- the fast path agrees with libbson ------------------------------------ */

/* d empty arrays nested in one another ("[[...]]") in buf; returns its length. */
static size_t nested_arrays(char *buf, int d) {
  size_t n = 0;
  for (int i = 0; i < d; i++) buf[n++] = '[';
  for (int i = 0; i < d; i++) buf[n++] = ']';
  buf[n] = '\0';
  return n;
}

/* rtu_json_read_bson parses strict JSON itself and leaves the rest to
 * libbson: for every text, the BSON must be byte for byte what libbson makes of
 * the same text, and a text libbson refuses must stay refused. */
static void expect_same_as_libbson(const char *text) {
  size_t len = strlen(text);
  char wrapped[4096];
  int n = snprintf(wrapped, sizeof wrapped, "{\"v\":%s\n}", text);
  bson_t want, got;
  bson_error_t e;
  bool want_ok = n > 0 && (size_t)n < sizeof wrapped && bson_init_from_json(&want, wrapped, n, &e);
  char err[RTU_ERRSTR_SIZE];
  bool got_ok = rtu_json_read_bson(text, len, &got, err, sizeof err) == RTU_OK;
  CHECK(got_ok == want_ok || (!got_ok && want_ok), "%s: libbson %s it, rtu %s it", text,
        want_ok ? "accepts" : "refuses", got_ok ? "accepts" : "refuses");
  if (got_ok && want_ok) {
    char *a = bson_canon(&got), *b = bson_canon(&want);
    CHECK(got.len == want.len && !memcmp(bson_get_data(&got), bson_get_data(&want), got.len),
          "%s: rtu %s, libbson %s", text, a, b);
    bson_free(a);
    bson_free(b);
  }
  if (got_ok) bson_destroy(&got);
  if (want_ok) bson_destroy(&want);
}

static void test_fast_path(void) {
  const char *texts[] = {
      "0", "-0", "1", "-1", "2147483647", "2147483648", "-2147483648", "-2147483649",
      "9007199254740993", "9223372036854775807", "-9223372036854775808", "1.5", "-0.0",
      "1e3", "1E-3", "2.5e+10", "123456789.123456789", "0.1", "true", "false", "null",
      "\"\"", "\"abc\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u20ac\\u0041\"",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\"", "\"a\\u0000b\"",
      "[]", "{}", "[1,2,3]", "[ 1 , \"x\" , null , [ ] , { } ]", "{\"a\":1,\"a\":2}",
      "{\"ID\":123,\"NAME\":\"alpha\",\"QTY\":\"42\",\"BIG\":9007199254740993}",
      "{\"before\":null,\"after\":{\"ID_ORDER\":1785623401234567169,\"TOTAL\":25.5,"
      "\"TAGS\":[\"v\",\"g\"]},\"source\":{\"lsn\":24024432,\"snapshot\":\"false\"},"
      "\"op\":\"c\",\"ts_ms\":1709290800200}",
      " \t\n{ \"a\" : { \"b\" : [ { \"c\" : -12.5e-1 } ] } } \r\n", "{\"k\\u00e9y\":1}",
      "{\"$or\":[{\"a\":{\"$ne\":1}}]}", "{\"x\":\"$5\"}", "{\"\":1}",
      /* not strict JSON: whatever libbson says, rtu may only refuse more */
      "01", "1.", ".5", "+1", "-", "1e", "tru", "nulls", "[1,]", "{\"a\":1,}", "{\"a\" 1}",
      "\"\\x\"", "\"\\u12\"", "\"tab\there\"", "\"\xff\"", "1 // c", "[1] x", "{\"a\":1}}",
      "1e400", "-1e400", "1e-400", "99999999999999999999",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) expect_same_as_libbson(texts[i]);
  char deep[300];
  for (int d = 60; d <= 70; d += 10) {
    nested_arrays(deep, d);
    expect_same_as_libbson(deep);
  }
}

/* rtu.json.decode reads strict JSON straight into Lua and leaves the rest to the
 * BSON path: for every text, the Lua value must be the one the BSON path makes
 * (rtu_json_read_bson, then rtu_bson_lua_push_iter): the same types (integer or
 * float), values, null, array and date marks, and even the same pairs() order;
 * and a text the BSON path refuses must be refused with its message. */
static void expect_same_decode(const char *text, size_t len) {
  static bool defined = false;
  if (!defined) {
    eval("SAME = function(a, b)\n"
         "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
         "  if type(a) ~= 'table' then return a == b or (a ~= a and b ~= b) end\n"
         "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
         "  local ka, kb = {}, {}\n"
         "  for k in pairs(a) do ka[#ka + 1] = k end\n"
         "  for k in pairs(b) do kb[#kb + 1] = k end\n"
         "  if #ka ~= #kb then return false end\n"
         "  for i = 1, #ka do\n"
         "    if ka[i] ~= kb[i] or not SAME(a[ka[i]], b[kb[i]]) then return false end\n"
         "  end\n"
         "  return true\n"
         "end\n"
         "return true");
    lua_pop(L, 1);
    defined = true;
  }
  int top = lua_gettop(L);
  bson_t doc;
  char err[RTU_ERRSTR_SIZE];
  bool want_ok = rtu_json_read_bson(text, len, &doc, err, sizeof err) == RTU_OK;
  if (want_ok) {
    bson_iter_t it;
    if (bson_iter_init(&it, &doc) && bson_iter_next(&it)) rtu_bson_lua_push_iter(L, &it);
    else lua_pushnil(L);
    bson_destroy(&doc);
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, "rtu.json");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_pushlstring(L, text, len);
  bool got_ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
  CHECK(got_ok == want_ok, "%s: BSON path %s it, decode %s it", text,
        want_ok ? "accepts" : "refuses", got_ok ? "accepts" : "refuses");
  if (got_ok && want_ok) {
    lua_getglobal(L, "SAME");
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_call(L, 2, 1);
    CHECK(lua_toboolean(L, -1), "%s: decode differs from the BSON path", text);
  } else if (!got_ok && !want_ok) {
    const char *msg = lua_tostring(L, -1);
    CHECK(msg && strstr(msg, err), "%s: decode says '%s', the BSON path '%s'", text,
          msg ? msg : "(none)", err);
  }
  lua_settop(L, top);
}

static void test_decode_direct(void) {
  const char *texts[] = {
      "0", "-0", "1", "-1", "2147483647", "2147483648", "-2147483648", "-2147483649",
      "9007199254740993", "999999999999999999", "-999999999999999999", "1000000000000000000",
      "9223372036854775807", "-9223372036854775808", "9223372036854775808",
      "-9223372036854775809", "99999999999999999999", "1.5", "-0.0", "1e3", "1E-3", "2.5e+10",
      "123456789.123456789", "0.1", "1e400", "-1e400", "1e-400", "true", "false", "null",
      "\"\"", "\"abc\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u20ac\\u0041\"",
      "\"x\\u00e9\"", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\"",
      "\"a\\u0000b\"", "\"\xc3\xa9\\n\xff\"", "\"\xff\"", "\"tab\there\"", "\"\\x\"", "\"\\u12\"",
      "\"abc\\\"", "\"abc\\", "\"abc",
      "[]", "{}", "[1,2,3]", "[ 1 , \"x\" , null , [ ] , { } ]", "{\"a\":1,\"a\":2}",
      "{\"a\":1,\"b\":2,\"a\":3,\"c\":[null,{\"d\":[]}]}",
      "{\"ID\":123,\"NAME\":\"alpha\",\"QTY\":\"42\",\"BIG\":9007199254740993}",
      "{\"before\":null,\"after\":{\"ID_ORDER\":1785623401234567169,\"TOTAL\":25.5,"
      "\"TAGS\":[\"v\",\"g\"]},\"source\":{\"lsn\":24024432,\"snapshot\":\"false\"},"
      "\"op\":\"c\",\"ts_ms\":1709290800200}",
      " \t\n{ \"a\" : { \"b\" : [ { \"c\" : -12.5e-1 } ] } } \r\n", "{\"k\\u00e9y\":1}",
      "{\"$or\":[{\"a\":{\"$ne\":1}}]}", "{\"x\":\"$5\"}", "{\"\":1}", "{\"\\u0024date\":0}",
      "{\"x\":{\"$numberLong\":\"5\"}}", "{\"x\":{\"$date\":0}}", "{\"a\":99999999999999999999}",
      "01", "1.", ".5", "+1", "-", "1e", "tru", "nulls", "[1,]", "{\"a\":1,}", "{\"a\" 1}",
      "1 // c", "[1] x", "{\"a\":1}}", "{\"a\":1} {\"b\":2}", "NaN", "[-Infinity]", "",
      "   ", "{", "[", "[1", "{\"a\"", "{\"a\":", "{\"a\":1", "/* c */ 1",
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
    expect_same_decode(texts[i], strlen(texts[i]));
  /* An embedded NUL, and a text cut in the middle of an escape. */
  expect_same_decode("\"a\0b\"", 5);
  expect_same_decode("\"a\\", 3);
  char deep[400];
  for (int d = 60; d <= 130; d += 10) expect_same_decode(deep, nested_arrays(deep, d));
  /* Objects and arrays past the members held on the stack before their table is
   * made (32), with a duplicate name on each side of that point. */
  for (int size = 30; size <= 70; size += 20) {
    char text[2000];
    int m = 0;
    text[m++] = '{';
    for (int i = 0; i < size; i++) m += snprintf(text + m, sizeof text - (size_t)m, "\"k%d\":%d,", i, i);
    m += snprintf(text + m, sizeof text - (size_t)m, "\"k3\":\"again\",\"k%d\":[", size - 1);
    for (int i = 0; i < size; i++) m += snprintf(text + m, sizeof text - (size_t)m, "%s%d", i ? "," : "", i);
    m += snprintf(text + m, sizeof text - (size_t)m, "]}");
    expect_same_decode(text, (size_t)m);
  }
  /* Escaped strings longer than a Lua buffer's first block. */
  char big[3000];
  int n = 0;
  big[n++] = '"';
  for (int i = 0; i < 250; i++) n += snprintf(big + n, sizeof big - (size_t)n, "\\u00e9ab\\n");
  big[n++] = '"';
  big[n] = '\0';
  expect_same_decode(big, (size_t)n);
}

/* same(a, b) for the decoder checks: equal values, tables compared without
 * relying on pairs() order (a table made without a member lays its keys out
 * otherwise). */
#define LUA_SAME \
  "local function same(a, b)\n" \
  "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n" \
  "  if type(a) ~= 'table' then return a == b end\n" \
  "  if getmetatable(a) ~= getmetatable(b) then return false end\n" \
  "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n" \
  "  for k in pairs(b) do if a[k] == nil then return false end end\n" \
  "  return true\n" \
  "end\n"

/* json.decode(text, leave_out): the same answer as without, but for the
 * top-level members named, which the direct path does not build; a text either
 * decodes both ways or neither. */
static void test_decode_leave_out(void) {
  /* a table made without a member lays its keys out otherwise: pairs() order
   * is not compared here */
  eval("local json = require('rtu.json')\n"
       LUA_SAME
       "local LEAVE = { source = true }\n"
       "local texts = {\n"
       "  -- { text, the source is gone (direct path) }\n"
       "  { '{\"op\":\"u\",\"source\":{\"lsn\":1,\"db\":\"x\",\"snapshot\":\"false\"},\"after\":{\"A\":1}}', true },\n"
       "  { '{\"source\":{\"e\":\"a\\\\\"b\\\\u00e9\\\\n\",\"l\":[1,-2.5e3,true,false,null,[],{}],\"o\":{\"p\":{\"q\":[{}]}}},\"a\":1}', true },\n"
       "  { '{\"source\":\"caf\xc3\xa9\",\"source\":7,\"after\":null}', true },\n"
       "  { '{\"sour\\\\u0063e\":{\"x\":1},\"b\":[1]}', true },\n"
       "  { '{\"payload\":{\"source\":{\"x\":1}},\"schema\":{}}', false },\n"
       "  { '[{\"source\":1}]', false },\n"
       "  { '{\"source\":{\"$x\":1},\"a\":2}', false },\n"
       "  { '{\"source\":{\"x\":{\"$date\":0}},\"a\":2}', false },\n"
       "  { '{\"source\":{\"big\":99999999999999999999},\"a\":2}', false },\n"
       "  { '{\"source\":{\"a\":tru},\"a\":2}', false },\n"
       "  { '{\"source\":{\"a\":\"\x01\"},\"a\":2}', false },\n"
       "  { '{\"source\":{\"a\":\"\xff\"},\"a\":2}', false },\n"
       "  { '{\"source\":{\"a\":\"x\\\\q\"},\"a\":2}', false },\n"
       "  { '{\"source\":[1,],\"a\":2}', false },\n"
       "  { '{\"source\":{\"a\":1}', false },\n"
       "  { '{\"source\":NaN,\"a\":2}', false },\n"
       "}\n"
       "for i, t in ipairs(texts) do\n"
       "  local ok1, full = pcall(json.decode, t[1])\n"
       "  local ok2, part = pcall(json.decode, t[1], LEAVE)\n"
       "  if ok1 ~= ok2 then return 'text ' .. i .. ': decoded ' .. tostring(ok1) .. ' without, ' .. tostring(ok2) .. ' with leave_out' end\n"
       "  if ok1 and type(full) == 'table' then\n"
       "    if t[2] and part.source ~= nil then return 'text ' .. i .. ': source built' end\n"
       "    full.source, part.source = nil, nil\n"
       "    if not same(full, part) then return 'text ' .. i .. ': the other members differ' end\n"
       "  end\n"
       "end\n"
       "if pcall(json.decode, '{}', 5) then return 'a number as leave_out was taken' end\n"
       "return 'ok'");
  CHECK_STR(lua_tostring(L, -1), "ok");
  lua_pop(L, 1);
}

/* json.decode(text, {before = {names}}): before, when an object, holds only the
 * members named (the others are read, not built); anything else, and every other
 * member, is as without; a text decodes with it exactly when it does without.
 * Where the direct path gives up, the BSON path builds before whole. */
static void test_decode_leave_out_keep(void) {
  eval("local json = require('rtu.json')\n"
       LUA_SAME
       "local KEEP = { source = true, before = { ID = true, K2 = true } }\n"
       "local NONE = { before = {} }\n"
       "local MANY = { before = { ID = true, a = 1, b = 1, c = 1, d = 1, e = 1, f = 1, g = 1, h = 1, i = 1, [1] = 'x' } }\n"
       "local W, F = 'whole', 'fallback'\n"
       "local texts = {\n"
       "  -- { text, leave_out, before as built: a table, W (as without), nil (fails)\n"
       "  --   or F (W when the BSON path takes it) }\n"
       "  { [[{\"op\":\"u\",\"before\":{\"ID\":1,\"NAME\":\"x\",\"K2\":\"k\",\"N\":2.5},\"after\":{\"ID\":1,\"NAME\":\"y\"}}]], KEEP, { ID = 1, K2 = 'k' } },\n"
       "  { [[{\"before\":{\"S\":\"a\\\"b\\u00e9\\n\\\\\",\"O\":{\"p\":{\"q\":[{}, [], {\"r\":null}]}},\"L\":[1,-2.5e3,true,false,null,\"\\t\"],\"ID\":7},\"a\":1}]], KEEP, { ID = 7 } },\n"
       "  { [[{\"before\":{\"I\\u0044\":3,\"N\\u0041ME\":\"x\",\"K2\":{\"x\":[1]}},\"a\":1}]], KEEP, { ID = 3, K2 = { x = json.decode('[1]') } } },\n"
       "  { [[{\"before\":{\"ID\":1,\"ID\":2,\"X\":1,\"X\":2}}]], KEEP, { ID = 2 } },\n"
       "  { [[{\"before\":{\"caf\xc3\xa9\":1,\"ID\":1}}]], KEEP, { ID = 1 } },\n"
       "  { [[{\"before\":{},\"after\":{}}]], KEEP, {} },\n"
       "  { [[{\"before\":{ \"X\" : 1 , \"ID\" : 1 } ,\"a\":1}]], KEEP, { ID = 1 } },\n"
       "  { [[{\"before\":{\"ID\":1,\"X\":2}}]], NONE, {} },\n"
       "  { [[{\"before\":{\"ID\":1,\"X\":2,\"e\":3,\"Y\":4}}]], MANY, { ID = 1, e = 3 } },\n"
       "  -- not an object: built whole\n"
       "  { [[{\"before\":[{\"ID\":1,\"X\":2}],\"a\":1}]], KEEP, W },\n"
       "  { [[{\"before\":\"text\",\"a\":1}]], KEEP, W },\n"
       "  { [[{\"before\":12,\"a\":1}]], KEEP, W },\n"
       "  { [[{\"before\":null,\"a\":1}]], KEEP, W },\n"
       "  { [[{\"before\":true,\"a\":1}]], KEEP, W },\n"
       "  -- absent, or not at the top level\n"
       "  { [[{\"after\":{\"ID\":1,\"X\":2}}]], KEEP, W },\n"
       "  { [[{\"payload\":{\"before\":{\"ID\":1,\"X\":2}},\"schema\":{}}]], KEEP, W },\n"
       "  { [=[[{\"before\":{\"ID\":1,\"X\":2}}]]=], KEEP, W },\n"
       "  -- the direct path gives up: the BSON path decides, and builds it whole\n"
       "  { [[{\"before\":{\"X\":{\"$date\":0},\"ID\":1},\"a\":2}]], KEEP, F },\n"
       "  { [[{\"before\":{\"$x\":1,\"ID\":1},\"a\":2}]], KEEP, F },\n"
       "  { [[{\"before\":{\"X\":{\"$or\":[{\"a\":{\"$ne\":1}}]},\"ID\":1},\"a\":2}]], KEEP, F },\n"
       "  { [[{\"before\":{\"X\":1,\"ID\":1},\"a\":2} ]] .. '\\n', KEEP, { ID = 1 } },\n"
       "  { [[{\"before\":{\"X\":99999999999999999999,\"ID\":1},\"a\":2}]], KEEP, F },\n"
       "  -- invalid inside a member left out\n"
       "  { [[{\"before\":{\"X\":tru,\"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "  { '{\"before\":{\"X\":\"\x01\",\"ID\":1},\"a\":2}', KEEP, nil },\n"
       "  { '{\"before\":{\"X\":\"\xff\",\"ID\":1},\"a\":2}', KEEP, nil },\n"
       "  { '{\"before\":{\"\xff\":1,\"ID\":1},\"a\":2}', KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":\"x\\q\",\"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":[1,],\"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":{\"a\" 1},\"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":1,\"ID\":1,},\"a\":2}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":1 \"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":1,\"ID\":1}]], KEEP, nil },\n"
       "  { [[{\"before\":{\"X\":NaN,\"ID\":1},\"a\":2}]], KEEP, nil },\n"
       "}\n"
       "local fallbacks = 0\n"
       "for i, t in ipairs(texts) do\n"
       "  local ok1, full = pcall(json.decode, t[1])\n"
       "  local ok2, part = pcall(json.decode, t[1], t[2])\n"
       "  if ok1 ~= ok2 then return 'text ' .. i .. ': decoded ' .. tostring(ok1) .. ' without, ' .. tostring(ok2) .. ' with leave_out' end\n"
       "  if t[3] ~= F and ok1 ~= (t[3] ~= nil) then return 'text ' .. i .. ': decoded ' .. tostring(ok1) end\n"
       "  if ok1 and t[3] == F then fallbacks = fallbacks + 1 end\n"
       "  if ok1 and type(full) == 'table' then\n"
       "    local whole = t[3] == W or t[3] == F\n"
       "    if not whole and not same(part.before, t[3]) then return 'text ' .. i .. ': before is not as kept' end\n"
       "    if whole and not same(part.before, full.before) then return 'text ' .. i .. ': before is not whole' end\n"
       "    full.before, part.before, full.source = nil, nil, nil\n"
       "    if not same(full, part) then return 'text ' .. i .. ': the other members differ' end\n"
       "  end\n"
       "end\n"
       "if fallbacks == 0 then return 'no text took the BSON path' end\n"
       "if pcall(json.decode, '{}', { before = 5 }) ~= true then return 'a number in leave_out was refused' end\n"
       "return 'ok'");
  CHECK_STR(lua_tostring(L, -1), "ok");
  lua_pop(L, 1);
}

/* The original Kafka key, as projections and projection changes both record it. */
static void test_original_key(void) {
  static const struct {
    const char *key;
    size_t len;
    const char *want;
  } cases[] = {
      {"{\"ID\": 123, \"BIG\": 9007199254740993}", 0,
       "{\"k\": {\"ID\": {\"$numberInt\": \"123\"}, \"BIG\": {\"$numberLong\": \"9007199254740993\"}}}"},
      {" \n{\"a\": \"x\"}", 0, "{\"k\": {\"a\": \"x\"}}"},      /* leading blanks */
      {"plain-key", 0, "{\"k\": \"plain-key\"}"},
      {"{not json", 0, "{\"k\": \"{not json\"}"},                  /* text, as given */
      {"[1, 2]", 0, "{\"k\": \"[1, 2]\"}"},                        /* only objects */
      {"{\"$oid\": \"5f0000000000000000000000\"}", 0,              /* no extended JSON */
       "{\"k\": \"{\\\"$oid\\\": \\\"5f0000000000000000000000\\\"}\"}"},
      {"", 0, "{\"k\": \"\"}"},
      {"\xff\xfe", 2, "{\"k\": {\"$binary\": {\"base64\": \"//4=\", \"subType\": \"00\"}}}"},
      {NULL, 0, "{\"k\": null}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bson_t got = BSON_INITIALIZER;
    size_t len = cases[i].len ? cases[i].len : cases[i].key ? strlen(cases[i].key) : 0;
    rtu_key_text_append(&got, "k", cases[i].key, len);
    bson_t *want = json_doc(cases[i].want);
    char *g = bson_canon(&got), *w = bson_canon(want);
    CHECK(bson_equal(&got, want), "key %zu:\n    got  %s\n    want %s", i, g, w);
    bson_free(g);
    bson_free(w);
    bson_destroy(want);
    bson_destroy(&got);
  }
  /* The flag for a field name MongoDB refuses, at any depth, on both paths
   * (the direct one, and libbson's when the direct reader gives up: a '$' name
   * here). */
  static const struct {
    const char *key;
    bool empty;
    const char *want;
  } flags[] = {
      {"{\"\": 1}", true, "{\"k\": {\"\": {\"$numberInt\": \"1\"}}}"},
      {"{\"a\": {\"b\": [{\"\": null}]}}", true, "{\"k\": {\"a\": {\"b\": [{\"\": null}]}}}"},
      {"{\"a\": \"\"}", false, "{\"k\": {\"a\": \"\"}}"},
      {"{}", false, "{\"k\": {}}"},
      {"{\"$in\": 1}", false, "{\"k\": {\"$in\": {\"$numberInt\": \"1\"}}}"},
      {"{\"\": {\"$in\": 1}}", true, "{\"k\": {\"\": {\"$in\": {\"$numberInt\": \"1\"}}}}"},
  };
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    bson_t got = BSON_INITIALIZER;
    bool empty = rtu_key_text_append(&got, "k", flags[i].key, strlen(flags[i].key));
    bson_t *want = json_doc(flags[i].want);
    char *g = bson_canon(&got);
    CHECK(empty == flags[i].empty && bson_equal(&got, want), "%s: %s, empty %d", flags[i].key, g,
          empty);
    bson_free(g);
    bson_destroy(want);
    bson_destroy(&got);
  }
}

/* rtu_json_read_object: an object text as the document itself, the same bytes
 * as the object under "v" of rtu_json_read_bson, through the direct reader or
 * (a '$' name, a surrogate pair) libbson's; any other value or invalid text
 * refused. */
static void test_read_object(void) {
  const char *objects[] = {"{\"a\":1,\"b\":[true,null,\"x\"]}", " {} ",
                           "{\"a\":{\"$in\":[2]},\"c\":9007199254740993}",
                           "{\"e\":\"\\ud83d\\ude00\"}"};
  for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
    const char *text = objects[i];
    bson_t got, wrap;
    char err[RTU_ERRSTR_SIZE];
    bool got_ok = rtu_json_read_object(text, strlen(text), &got, err, sizeof err) == RTU_OK;
    CHECK(got_ok, "%s: refused: %s", text, err);
    if (!got_ok) continue;
    bson_iter_t it;
    uint32_t len = 0;
    const uint8_t *data = NULL;
    if (rtu_json_read_bson(text, strlen(text), &wrap, err, sizeof err) == RTU_OK) {
      if (bson_iter_init_find(&it, &wrap, "v") && BSON_ITER_HOLDS_DOCUMENT(&it))
        bson_iter_document(&it, &len, &data);
      CHECK(data && got.len == len && !memcmp(bson_get_data(&got), data, len),
            "%s: not the document under v", text);
      bson_destroy(&wrap);
    } else {
      CHECK(false, "%s: rtu_json_read_bson refused it: %s", text, err);
    }
    bson_destroy(&got);
  }
  static const struct {
    const char *text, *cause;
  } refused[] = {{"[1,2]", "not a JSON object"}, {"5", "not a JSON object"},
                 {"\"{}\"", "not a JSON object"}, {"{\"a\":", ""}, {"{\"a\":1} x", ""}};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    bson_t got;
    char err[RTU_ERRSTR_SIZE] = "";
    rtu_err_t rc = rtu_json_read_object(refused[i].text, strlen(refused[i].text), &got, err,
                                        sizeof err);
    CHECK(rc == RTU_ERR_DATA, "%s: gave %s", refused[i].text, rtu_err_name(rc));
    if (rc == RTU_OK) bson_destroy(&got);
    CHECK(err[0] != '\0', "%s: no cause given", refused[i].text);
    CHECK_HAS(err, refused[i].cause);
  }
}

/* json.decimal is tonumber for the texts the Lua pattern below takes, nil for
 * the others: the same type and the same bits (the sign of a zero included), on
 * the edges of its fast paths (18 digits, 2^53, 22 decimals) and on random texts
 * of digits, points and signs. */
static void test_decimal(void) {
  eval("local json = require('rtu.json')\n"
       "local function want(s)\n"
       "  if s:find('^%-?%d+%.?%d*$') then return tonumber(s) end\n"
       "end\n"
       "local function same(a, b)\n"
       "  if a == nil or b == nil then return a == b end\n"
       "  return math.type(a) == math.type(b) and string.format('%a', a) == string.format('%a', b)\n"
       "    and (a ~= 0 or 1 / a == 1 / b)\n"
       "end\n"
       "local cases = { '0', '-0', '-0.0', '0.', '5.', '.5', '-', '', '-.', '1.2.3', '--1', '+1',\n"
       "  ' 1', '1 ', '1e5', '0x10', '12.34', '-3.50', '007', '00.5', 'inf', 'nan', '1,5',\n"
       "  '999999999999999999', '1000000000000000000', '9223372036854775807',\n"
       "  '9223372036854775808', '-9223372036854775808', '-9223372036854775809',\n"
       "  '99999999999999999999999', '9007199254740992', '9007199254740993',\n"
       "  '900719925474099.3', '9007199254740.993', '900719925474099.31', '0.1', '0.3',\n"
       "  '1.7976931348623157', '0.0000000000000000000001', '0.00000000000000000000001',\n"
       "  '123456789012345.678901234567', '2.2250738585072014' }\n"
       "local bad, first = 0, nil\n"
       "local function try(s)\n"
       "  local g, w = json.decimal(s), want(s)\n"
       "  if not same(g, w) then\n"
       "    bad = bad + 1\n"
       "    first = first or string.format('%q: %s, want %s', s, tostring(g), tostring(w))\n"
       "  end\n"
       "end\n"
       "for _, s in ipairs(cases) do try(s) end\n"
       "math.randomseed(7)\n"
       "local alphabet = { '0', '1', '5', '9', '.', '-', 'e', ' ' }\n"
       "for _ = 1, 200000 do\n"
       "  local t, len = {}, math.random(1, 26)\n"
       "  for i = 1, len do\n"
       "    local r = math.random(1, 20)\n"
       "    t[i] = r <= 16 and tostring(math.random(0, 9)) or alphabet[r - 12]\n"
       "  end\n"
       "  try(table.concat(t))\n"
       "end\n"
       "return string.format('%d %s', bad, first or '')");
  const char *r = lua_tostring(L, -1);
  CHECK(r && strncmp(r, "0 ", 2) == 0, "json.decimal differs from tonumber: %s", r ? r : "?");
  lua_pop(L, 1);
}

int main(void) {
  load_js_samples();
  L = new_state();
  test_fast_path();
  test_unterminated();
  test_decode_direct();
  test_decode_leave_out();
  test_decode_leave_out_keep();
  test_original_key();
  test_read_object();
  test_decimal();
  test_json_to_bson();
  test_roundtrip();
  test_refused();
  test_doc_to_json();
  test_json_string();
  test_json_double();
  test_iso8601();
  test_int_text();
  test_doc_json_raw();
  test_first_to_json();
  test_push_doc_fields();
  test_same_fields();
  test_append_missing();
  test_find();
  test_raw_append();
  lua_close(L);
  free(js_samples);
  return CHECK_DONE();
}
