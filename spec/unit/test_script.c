/*
 * test_script.c: the Lua states of src/script.c, sandbox.c, script_map.c and
 * strategies.c: mapping a message with the
 * built-in adapters and the casts (key and fields BSON exactly as expected), a
 * failing cast, the wall-clock limit (which neither pcall, xpcall and its message
 * handler, coroutines nor __close can swallow), pattern calls too complex to run
 * unhooked in C (refused), __gc finalizers (refused), the memory cap (a script
 * error, after which the state goes on), the sandbox of user files against the
 * escapes of issue 4, and the problems rtu_script_new reports for bad files.
 */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "config_files.h"
#include "helpers.h"
#include "script.h"
#include "script_map.h"
#include "strategies.h"

#include <sys/wait.h>

#define LIMIT_MS 200   /* STRATEGIES_MAX_EXEC_TIME_MS of the main state */
#define SLACK_MS 800   /* what a timeout may overrun (sanitizers, a loaded machine) */

static char *root, *map_dir, *cast_dir;

/* ---- fixtures ------------------------------------------------------------ */

static const char *MAP_TABLE =
    "{\n"
    "  \"people\": {\"destination\": \"people\",\n"
    "    \"conversion\": {\n"
    "      \"ID\": {\"fieldName\": \"id\"},\n"
    "      \"CODE\": {\"fieldName\": \"code\", \"cast\": \"__fromFile__[defaultIdentity]\"},\n"
    "      \"NAME\": {\"fieldName\": \"name\", \"cast\": \"__fromFile__[upper]\"},\n"
    "      \"AGE\": {\"fieldName\": \"age\", \"cast\": \"__fromFile__[defaultCastToInteger]\"},\n"
    "      \"BIG\": {\"fieldName\": \"big\"},\n"
    "      \"TAGS\": {\"fieldName\": \"tags\"}\n"
    "    },\n"
    "    \"fieldsInKey\": [\"code\", \"id\"]},\n"
    "  \"boom\": {\"destination\": \"boom\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[boom]\"}}, \"fieldsInKey\": [\"id\"]},\n"
    "  \"loop\": {\"destination\": \"loop\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[loop]\"}}, \"fieldsInKey\": [\"id\"]},\n"
    "  \"grow\": {\"destination\": \"grow\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[grow]\"}}, \"fieldsInKey\": [\"id\"]},\n"
    "  \"probe\": {\"destination\": \"probe\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[probe]\"}}, \"fieldsInKey\": [\"id\"]},\n"
    "  \"leakA\": {\"destination\": \"la\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[leakA]\"}}, \"fieldsInKey\": [\"id\"]},\n"
    "  \"leakB\": {\"destination\": \"lb\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"X\": {\"fieldName\": \"x\", \"cast\": \"__fromFile__[leakB]\"}}, \"fieldsInKey\": [\"id\"]}\n"
    "}\n";

enum { P_PEOPLE, P_BOOM, P_LOOP, P_GROW, P_PROBE, P_LEAKA, P_LEAKB };

static const char *CAST_UPPER =
    "return function(v, fieldName, log)\n"
    "  if type(v) == 'string' then return string.upper(v) end\n"
    "  return v\n"
    "end\n";

static const char *CAST_BOOM =
    "return function(v, fieldName, log)\n"
    "  if v == 'ok' then return 'fine' end\n"
    "  error('boom: cannot cast ' .. tostring(v) .. ' for ' .. fieldName)\n"
    "end\n";

/* One cast, many endless behaviours, chosen by the value. */
static const char *CAST_LOOP =
    "return function(v)\n"
    "  if v == 'plain' then while true do end end\n"
    "  if v == 'pcall' then\n"
    "    local ok, e = pcall(function() while true do end end)\n"
    "    return 'escaped: ' .. tostring(e)\n"
    "  end\n"
    "  if v == 'pcall-loop' then\n"
    "    while true do pcall(function() while true do end end) end\n"
    "  end\n"
    "  if v == 'xpcall' then\n"
    "    local ok = xpcall(function() while true do end end, function(e) while true do end end)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  if v == 'error-object' then\n"
    "    local ok, e = pcall(function() while true do end end)\n"
    "    error(setmetatable({}, {__tostring = function() return 'swallowed' end}))\n"
    "  end\n"
    "  if v == 'coroutine' then\n"
    "    while true do coroutine.resume(coroutine.create(function() while true do end end)) end\n"
    "  end\n"
    "  if v == 'coroutine-wrap' then\n"
    "    local co = coroutine.wrap(function() while true do end end)\n"
    "    local ok = pcall(co)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  if v == 'xpcall-error' then\n"
    "    xpcall(function() error('plain error') end, function(e) while true do end end)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  if v == 'sort' then\n"
    "    local t = {} for i = 1, 100 do t[i] = 101 - i end\n"
    "    table.sort(t, function(a, b) while true do end end)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  if v == 'close' then\n"
    "    local ok = pcall(function()\n"
    "      local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
    "      while true do end\n"
    "    end)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  if v == 'gsub-callback' then\n"
    "    string.gsub('abc', '%w', function() while true do end end)\n"
    "    return 'escaped'\n"
    "  end\n"
    "  -- Pattern matching runs in C, where no hook fires: these must be refused.\n"
    "  if v == 'pattern' then\n"
    "    local n = 22\n"
    "    return tostring(string.find(string.rep('a', n), string.rep('a?', n) .. string.rep('a', n) .. 'b'))\n"
    "  end\n"
    "  if v == 'pattern-poly' then\n"
    "    return tostring(string.find(string.rep('a', 1e5), '.-.-.-.-.-b'))\n"
    "  end\n"
    "  if v == 'pattern-method' then\n"
    "    return tostring((string.rep('a', 1e5)):match('(.-)(.-)(.-)(.-)b'))\n"
    "  end\n"
    "  if v == 'pattern-gsub' then\n"
    "    return tostring((string.rep('a', 1e5)):gsub('a*a*a*b', 'x'))\n"
    "  end\n"
    "  if v == 'pattern-gmatch' then\n"
    "    for m in string.rep('ab', 5e4):gmatch('.-.-.-c') do return m end\n"
    "    return 'none'\n"
    "  end\n"
    "  if v == 'pattern-plain' then\n"
    "    return tostring(string.find(string.rep('a', 2e5), string.rep('a', 1e5) .. 'b', 1, true))\n"
    "  end\n"
    "  if v == 'pattern-pcall' then\n"
    "    local ok, e = pcall(string.find, string.rep('a', 1e5), '.-.-.-.-.-b')\n"
    "    return ok and 'ran' or 'refused'\n"
    "  end\n"
    "  if v == 'pattern-fine' then\n"
    "    local s = '  ' .. string.rep('word ', 200) .. ' '\n"
    "    local trimmed = s:match('^%s*(.-)%s*$')\n"
    "    local n = select(2, s:gsub('%s+', ' '))\n"
    "    local parts = 0\n"
    "    for _ in ('a.b.c.' .. string.rep('d', 1000)):gmatch('[^.]+') do parts = parts + 1 end\n"
    "    return #trimmed .. '/' .. n .. '/' .. parts .. '/' .. tostring(s:find('word', 1, true))\n"
    "  end\n"
    "  local spin = function() local t = os.clock() while os.clock() - t < 2 do end end\n"
    "  if v == 'gc' then\n"
    "    setmetatable({}, {__gc = spin})\n"
    "    return 'armed'\n"
    "  end\n"
    "  if v == 'gc-pcall' then\n"
    "    local ok = pcall(setmetatable, {}, {__gc = spin})\n"
    "    return ok and 'armed' or 'refused'\n"
    "  end\n"
    "  if v == 'gc-late' then\n"
    "    -- Lua marks an object for finalization only when its metatable has __gc at\n"
    "    -- setmetatable: one added later is never called, and reusing it is refused.\n"
    "    local mt = {}\n"
    "    local t = setmetatable({}, mt)\n"
    "    mt.__gc = spin\n"
    "    local ok = pcall(setmetatable, {}, mt)\n"
    "    return ok and 'armed twice' or 'armed'\n"
    "  end\n"
    "  return v\n"
    "end\n";

static const char *CAST_GROW =
    "return function(v)\n"
    "  if v == 'string' then local s = 'x' while true do s = s .. s end end\n"
    "  if v == 'table' then local t, i = {}, 0 while true do i = i + 1 t[i] = i end end\n"
    "  if v == 'tables' then local t = {} while true do t = {t, t} t[3] = {} end end\n"
    "  if v == 'rep' then return #string.rep('x', 1 << 40) end\n"
    "  if v == 'rep-cap' then return #string.rep('x', 300 * 1024 * 1024) end\n"
    "  if v == 'concat' then\n"
    "    local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 100) .. i end\n"
    "    return #table.concat(t, string.rep('y', 1000))\n"
    "  end\n"
    "  if v == 'rethrown' then\n"
    "    local ok, e = pcall(function() local s = 'x' while true do s = s .. s end end)\n"
    "    error('cast gave up: ' .. tostring(e))\n"
    "  end\n"
    "  if v == 'pcall' then\n"
    "    local ok, e = pcall(function() local s = 'x' while true do s = s .. s end end)\n"
    "    return 'caught: ' .. tostring(e)\n"
    "  end\n"
    "  return v\n"
    "end\n";

static const char *CAST_LEAK_A =
    "return function(v)\n"
    "  if v == 'global' then leaked_global = 'from A' end\n"
    "  if v == 'string' then string.upper = function() return 'pwned' end end\n"
    "  if v == 'env' then _G.json = 'pwned' end\n"
    "  if v == 'datemt' then getmetatable(date(0)).leak = 'from A' end\n"
    "  if v == 'arraymt' then getmetatable(array({})).__index = {leak = 'from A'} end\n"
    "  return 'done'\n"
    "end\n";

static const char *CAST_LEAK_B =
    "return function(v)\n"
    "  if v == 'global' then return tostring(leaked_global) end\n"
    "  if v == 'string' then return string.upper('x') .. ('y'):upper() end\n"
    "  if v == 'env' then return type(json) end\n"
    "  if v == 'datemt' then return tostring(date(0).leak) end\n"
    "  if v == 'arraymt' then return tostring(array({}).leak) end\n"
    "  return 'unknown'\n"
    "end\n";

/* The probe: each check name returns what the sandbox shows. %s is the Lua
 * literal of a precompiled chunk. */
static const char *CAST_PROBE_FMT =
    "local bytecode = %s\n"
    "local checks = {\n"
    "  io = function() return type(io) end,\n"
    "  os_execute = function() return type(os.execute) end,\n"
    "  os_exit = function() return type(os.exit) end,\n"
    "  os_getenv = function() return type(os.getenv) end,\n"
    "  os_remove = function() return type(os.remove) end,\n"
    "  os_time = function() return type(os.time) end,\n"
    "  require = function() return type(require) end,\n"
    "  package = function() return type(package) end,\n"
    "  debug = function() return type(debug) end,\n"
    "  dofile = function() return type(dofile) end,\n"
    "  loadfile = function() return type(loadfile) end,\n"
    "  collectgarbage = function() return type(collectgarbage) end,\n"
    "  string_dump = function() return type(string.dump) end,\n"
    "  string_dump_method = function() return type(('').dump) end,\n"
    "  string_mt = function() return type(getmetatable('')) end,\n"
    "  G_io = function() return type(_G.io) end,\n"
    "  is_bytecode = function() return bytecode:sub(1, 4) == '\\27Lua' and 'yes' or 'no' end,\n"
    "  load_binary = function()\n"
    "    local f, e = load(bytecode) return f and 'loaded' or 'refused' end,\n"
    "  load_binary_mode_b = function()\n"
    "    local f, e = load(bytecode, 'x', 'b') return f and 'loaded' or 'refused' end,\n"
    "  load_binary_reader = function()\n"
    "    local done = false\n"
    "    local f = load(function() if done then return nil end done = true return bytecode end)\n"
    "    return f and 'loaded' or 'refused' end,\n"
    "  load_text = function() local f = load('return 40 + 2') return tostring(f and f()) end,\n"
    "  load_text_env = function() local f = load('return io, require') return type(f()) end,\n"
    "  json = function() return json.encode({a = 1}) end,\n"
    "  types = function()\n"
    "    local co = coroutine.create(function() end)\n"
    "    local out = { type(nil), type(true), type(1), type(1.5), type('s'), type({}),\n"
    "      type(type), type(co), type(null), math.type(1), math.type(1.5),\n"
    "      tostring(math.type('1')), tostring(math.type({})) }\n"
    "    local _, e1 = pcall(type)\n"
    "    local _, e2 = pcall(math.type)\n"
    "    return table.concat(out, ',') .. '|' .. e1 .. '|' .. e2\n"
    "  end,\n"
    "  deep_recursion = function()\n"
    "    local function f(n) return 1 + f(n + 1) end\n"
    "    local ok, e = pcall(f, 1)\n"
    "    return ok and 'returned' or (tostring(e):find('stack overflow', 1, true) and 'overflow' or tostring(e))\n"
    "  end,\n"
    "  c_stack = function()\n"
    "    local function f() return string.gsub('a', 'a', f) end\n"
    "    local ok, e = pcall(f)\n"
    "    return ok and 'returned' or (tostring(e):find('stack overflow', 1, true) and 'overflow' or tostring(e))\n"
    "  end,\n"
    "  string_mt_index = function()\n"
    "    local ok = pcall(function() getmetatable('').__index.upper = nil end)\n"
    "    return ok and 'changed' or ('x'):upper()\n"
    "  end,\n"
    "  G_escape = function()\n"
    "    return tostring(_G == _ENV) .. type(_G.io) .. type(rawget(_G, 'io')) .. type(getmetatable(_G))\n"
    "  end,\n"
    "  ENV_load = function()\n"
    "    return (load('return _ENV')() == _ENV and 'same' or 'other') .. type(load('return io', 'x', 't', {})())\n"
    "  end,\n"
    "  ENV_local = function() local t = type local _ENV = {} return t(io) end,\n"
    "  require_load = function() return type(load('return require, package, debug')()) end,\n"
    "  format_width = function()\n"
    "    local ok = pcall(string.format, '%%99999d', 1) return ok and 'formatted' or 'refused'\n"
    "  end,\n"
    "  collectgarbage_call = function()\n"
    "    local ok = pcall(function() collectgarbage('stop') end) return ok and 'called' or 'refused'\n"
    "  end,\n"
    "  gc_metatable = function()\n"
    "    local ok, e = pcall(setmetatable, {}, {__gc = function() end})\n"
    "    return ok and 'set' or (tostring(e):find('__gc', 1, true) and 'refused' or tostring(e))\n"
    "  end,\n"
    "  io_open = function()\n"
    "    local ok = pcall(function() return io.open('/etc/passwd') end) return ok and 'opened' or 'refused'\n"
    "  end,\n"
    "  os_execute_call = function()\n"
    "    local ok = pcall(function() return os.execute('true') end) return ok and 'ran' or 'refused'\n"
    "  end,\n"
    "  json_deep = function()\n"
    "    local ok = pcall(json.decode, string.rep('[', 100000) .. string.rep(']', 100000))\n"
    "    return ok and 'decoded' or 'refused'\n"
    "  end,\n"
    "  json_cycle = function()\n"
    "    local t = {} t[1] = t t[2] = t\n"
    "    local ok = pcall(json.encode, t) return ok and 'encoded' or 'refused'\n"
    "  end,\n"
    "  json_dag = function()\n"
    "    local a = {} for i = 1, 60 do a = {a, a} end\n"
    "    local ok, e = pcall(json.encode, a)\n"
    "    return ok and 'encoded' or (tostring(e):find('larger than', 1, true) and 'refused' or tostring(e))\n"
    "  end,\n"
    "  rep_empty = function() return #string.rep('', 1e15) .. #(''):rep(1e15) end,\n"
    "  table_move = function()\n"
    "    local ok = pcall(table.move, {}, 1, 1e12, 1, {}) return ok and 'moved' or 'refused'\n"
    "  end,\n"
    "  require_call = function()\n"
    "    local ok = pcall(function() return require('io') end) return ok and 'loaded' or 'refused'\n"
    "  end,\n"
    "}\n"
    "return function(v, fieldName, log)\n"
    "  local check = checks[v]\n"
    "  if not check then return 'unknown check ' .. tostring(v) end\n"
    "  return check()\n"
    "end\n";

/* A Lua string literal of a precompiled chunk ("\27Lua..."), made by a plain state. */
typedef struct {
  char *data;
  size_t len;
} dump_buf_t;

static int dump_writer(lua_State *l, const void *p, size_t sz, void *ud) {
  (void)l;
  dump_buf_t *b = ud;
  b->data = realloc(b->data, b->len + sz);
  memcpy(b->data + b->len, p, sz);
  b->len += sz;
  return 0;
}

static char *bytecode_literal(void) {
  lua_State *l = luaL_newstate();
  luaL_loadstring(l, "return 'from bytecode'");
  dump_buf_t b = {NULL, 0};
  lua_dump(l, dump_writer, &b, 0);
  char *out = malloc(b.len * 4 + 3), *o = out;
  *o++ = '"';
  for (size_t i = 0; i < b.len; i++) o += sprintf(o, "\\%d", (unsigned char)b.data[i]);
  *o++ = '"';
  *o = '\0';
  free(b.data);
  lua_close(l);
  return out;
}

static void base_env(const char *limit) {
  env_clear();
  env_set("KAFKA_BROKERS", "localhost:9092");
  env_set("KAFKA_GROUP_ID", "rtu-test");
  env_set("MONGODB_URL", "mongodb://localhost:27017");
  env_set("PROJECTIONS_DATABASE_NAME", "projections");
  env_set("PROJECTIONS_CHANGES_COLLECTION_NAME", "pc");
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("MAP_TABLE_FOLDER", map_dir);
  env_set("CAST_FUNCTIONS_FOLDER", cast_dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t.people\": \"people\"}");
  env_set("STRATEGIES_MAX_EXEC_TIME_MS", limit);
  env_set("LOG_LEVEL", "silent");
}

static rtu_config_t *load_config(void) {
  rtu_problems_t p = {0};
  rtu_config_t *c = rtu_config_load(env_get, lua_runtime_dir(), &p);
  if (!c) {
    fprintf(stderr, "test configuration refused:\n");
    print_problems(&p);
    exit(2);
  }
  rtu_problems_free(&p);
  return c;
}

static rtu_script_t *new_script(const rtu_config_t *c) {
  rtu_problems_t p = {0};
  rtu_script_t *s = rtu_script_new(c, &p);
  CHECK(s != NULL, "rtu_script_new failed");
  if (!s) print_problems(&p);
  rtu_problems_free(&p);
  return s;
}

static int64_t offset_counter;

static rtu_msg_t msg(const char *key, const char *value) {
  rtu_msg_t m = {0};
  m.topic = "t.people";
  m.partition = 0;
  m.offset = offset_counter++;
  m.timestamp = 1700000000000 + m.offset;
  m.key = key;
  m.key_len = key ? strlen(key) : 0;
  m.value = value;
  m.value_len = value ? strlen(value) : 0;
  return m;
}

/* Maps {"ID": 1, "X": x} (x a JSON text) on projection p. */
static rtu_err_t map_x(rtu_script_t *s, size_t p, const char *x, rtu_mapped_t *out, char *err,
                       size_t errsz, int64_t *elapsed_ms) {
  char value[512];
  snprintf(value, sizeof value, "{\"ID\": 1, \"X\": %s}", x);
  rtu_msg_t m = msg(NULL, value);
  rtu_mapped_reset(out);
  err[0] = '\0';
  int64_t t0 = rtu_now_mono_ms();
  rtu_err_t rc = rtu_script_map(s, p, &m, out, err, errsz);
  if (elapsed_ms) *elapsed_ms = rtu_now_mono_ms() - t0;
  return rc;
}

/* The string field "x" of a mapped message, or NULL. */
static const char *field_x(const rtu_mapped_t *m) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, &m->fields, "x") && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

static void expect_bson(const char *what, const bson_t *got, const char *want_json) {
  bson_t *want = json_doc(want_json);
  char *g = bson_canon(got), *w = bson_canon(want);
  CHECK(bson_equal(got, want), "%s:\n    got  %s\n    want %s", what, g, w);
  bson_free(g);
  bson_free(w);
  bson_destroy(want);
}

/* ---- mapping -------------------------------------------------------------- */

static void test_basic_mapping(rtu_script_t *s) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE];

  rtu_msg_t in = msg("{\"CODE\": \"c-1\", \"ID\": 9007199254740993}",
                     "{\"NAME\": \"ada\", \"TAGS\": [], \"AGE\": \"42\", \"UNMAPPED\": 1,"
                     " \"ID\": 9007199254740993, \"CODE\": \"c-1\", \"BIG\": -9223372036854775808}");
  rtu_err_t rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "map: %s: %s", rtu_err_name(rc), err);
  CHECK(!m.skip);
  CHECK_EQ(m.op, RTU_OP_UPSERT);
  CHECK(!m.has_old_key);
  CHECK(!m.has_position);
  /* key: fieldsInKey order (code, id); fields: mapTable order; types exact */
  expect_bson("key", &m.key, "{\"code\": \"c-1\", \"id\": {\"$numberLong\": \"9007199254740993\"}}");
  expect_bson("fields", &m.fields,
              "{\"id\": {\"$numberLong\": \"9007199254740993\"}, \"code\": \"c-1\","
              " \"name\": \"ADA\", \"age\": {\"$numberInt\": \"42\"},"
              " \"big\": {\"$numberLong\": \"-9223372036854775808\"}, \"tags\": []}");

  /* The key object's order and the record's order do not matter. */
  rtu_mapped_reset(&m);
  in = msg("{\"ID\": 7, \"CODE\": \"z\"}", "{\"AGE\": 3.0, \"CODE\": \"z\", \"ID\": 7}");
  rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "%s", err);
  expect_bson("key", &m.key, "{\"code\": \"z\", \"id\": {\"$numberInt\": \"7\"}}");
  expect_bson("fields (only those present)", &m.fields,
              "{\"id\": {\"$numberInt\": \"7\"}, \"code\": \"z\", \"age\": {\"$numberInt\": \"3\"}}");

  /* No key: the primary key comes from the value; null values are stored as null. */
  rtu_mapped_reset(&m);
  in = msg(NULL, "{\"ID\": 8, \"CODE\": \"y\", \"NAME\": null}");
  rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "%s", err);
  expect_bson("key from value", &m.key, "{\"code\": \"y\", \"id\": {\"$numberInt\": \"8\"}}");
  expect_bson("null field", &m.fields,
              "{\"id\": {\"$numberInt\": \"8\"}, \"code\": \"y\", \"name\": null}");

  /* A tombstone is a delete of the key. */
  rtu_mapped_reset(&m);
  in = msg("{\"ID\": 8, \"CODE\": \"y\"}", NULL);
  rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "%s", err);
  CHECK_EQ(m.op, RTU_OP_DELETE);
  expect_bson("delete key", &m.key, "{\"code\": \"y\", \"id\": {\"$numberInt\": \"8\"}}");
  CHECK(bson_empty(&m.fields));

  /* Messages that cannot be applied: a data error naming the cause. */
  struct {
    const char *key, *value, *needle;
  } bad[] = {
      {NULL, "{\"ID\": 1}", "CODE"},
      {NULL, "{\"ID\": 1, \"CODE\": null}", "CODE"},
      {NULL, "{\"ID\": 1, \"CODE\": ", "JSON"},
      {NULL, "[1, 2]", "object"},
      {"{\"ID\": 1}", NULL, "CODE"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rtu_mapped_reset(&m);
    in = msg(bad[i].key, bad[i].value);
    err[0] = '\0';
    rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
    CHECK(rc == RTU_ERR_DATA, "bad message %zu gave %s", i, rtu_err_name(rc));
    CHECK(strstr(err, bad[i].needle) != NULL, "bad message %zu: '%s' does not name %s", i, err,
          bad[i].needle);
  }
  rtu_mapped_destroy(&m);
}

static void test_golden_gate_mapping(rtu_script_t *s) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE];
  rtu_msg_t in = msg("a_1",
                     "{\"op_type\": \"U\", \"pos\": \"00000000000000000042\","
                     " \"before\": {\"ID\": 1, \"CODE\": \"a\"},"
                     " \"after\": {\"ID\": 2, \"CODE\": \"a\", \"NAME\": \"x\"}}");
  rtu_err_t rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "%s", err);
  CHECK_EQ(m.op, RTU_OP_UPSERT);
  CHECK(m.has_position);
  CHECK_EQ(m.position, 42);
  CHECK(m.has_old_key);
  expect_bson("new key", &m.key, "{\"code\": \"a\", \"id\": {\"$numberInt\": \"2\"}}");
  expect_bson("old key", &m.old_key, "{\"code\": \"a\", \"id\": {\"$numberInt\": \"1\"}}");
  expect_bson("fields", &m.fields,
              "{\"id\": {\"$numberInt\": \"2\"}, \"code\": \"a\", \"name\": \"X\"}");

  rtu_mapped_reset(&m);
  in = msg("a_2", "{\"op_type\": \"D\", \"pos\": 43, \"before\": {\"ID\": 2, \"CODE\": \"a\"}}");
  rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_OK, "%s", err);
  CHECK_EQ(m.op, RTU_OP_DELETE);
  CHECK(!m.has_old_key);
  CHECK_EQ(m.position, 43);
  expect_bson("delete key", &m.key, "{\"code\": \"a\", \"id\": {\"$numberInt\": \"2\"}}");

  rtu_mapped_reset(&m);
  in = msg("a_2", "{\"op_type\": \"X\", \"after\": {\"ID\": 2, \"CODE\": \"a\"}}");
  rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
  CHECK(rc == RTU_ERR_DATA);
  CHECK_HAS(err, "op_type");
  rtu_mapped_destroy(&m);
}

/* ---- a failing cast ------------------------------------------------------- */

static void test_cast_error(rtu_script_t *s) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE];
  rtu_err_t rc = map_x(s, P_BOOM, "\"bad\"", &m, err, sizeof err, NULL);
  CHECK(rc == RTU_ERR_DATA, "cast error gave %s", rtu_err_name(rc));
  CHECK_HAS(err, "boom: cannot cast bad for x");
  CHECK_HAS(err, "boom.lua"); /* the position names the file */
  rc = map_x(s, P_BOOM, "\"ok\"", &m, err, sizeof err, NULL);
  CHECK(rc == RTU_OK, "%s", err);
  CHECK_STR(field_x(&m), "fine");
  rtu_mapped_destroy(&m);
}

/* ---- the time limit ------------------------------------------------------- */

/* A case that may never end runs in a forked child, so a hang is a failure
 * of this test and not a hung test. The child reports through a pipe. */
typedef struct {
  int rc, after_rc;
  long long ms, after_ms, worst_ms, free_ms;
  size_t failed;
  char err[RTU_ERRSTR_SIZE], x[128], after_x[128];
} outcome_t;

typedef void (*child_fn)(rtu_script_t *s, const char *arg, outcome_t *out);

static bool in_child(child_fn fn, rtu_script_t *s, const char *arg, int budget_ms,
                     outcome_t *out) {
  int fds[2];
  memset(out, 0, sizeof *out);
  if (pipe(fds) != 0) return false;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    outcome_t o;
    memset(&o, 0, sizeof o);
    fn(s, arg, &o);
    ssize_t w = write(fds[1], &o, sizeof o);
    _exit(w == (ssize_t)sizeof o ? 0 : 1);
  }
  close(fds[1]);
  struct pollfd pfd = {fds[0], POLLIN, 0};
  bool done = poll(&pfd, 1, budget_ms) == 1 && read(fds[0], out, sizeof *out) == sizeof *out;
  if (!done) kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fds[0]);
  return done;
}

static void copy_x(const rtu_mapped_t *m, char *dst, size_t sz) {
  snprintf(dst, sz, "%s", field_x(m) ? field_x(m) : "-");
}

static void run_loop_case(rtu_script_t *s, const char *how, outcome_t *o) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char x[64];
  int64_t ms;
  snprintf(x, sizeof x, "\"%s\"", how);
  o->rc = map_x(s, P_LOOP, x, &m, o->err, sizeof o->err, &ms);
  o->ms = ms;
  copy_x(&m, o->x, sizeof o->x);
  char err[RTU_ERRSTR_SIZE];
  o->after_rc = map_x(s, P_LOOP, "\"after\"", &m, err, sizeof err, &ms);
  o->after_ms = ms;
  copy_x(&m, o->after_x, sizeof o->after_x);
  rtu_mapped_destroy(&m);
}

static void expect_timeout(rtu_script_t *s, const char *how) {
  outcome_t o;
  int budget = LIMIT_MS + SLACK_MS + 5000;
  if (!in_child(run_loop_case, s, how, budget, &o)) {
    CHECK(false, "%s: still running after %d ms (limit %d ms): killed", how, budget, LIMIT_MS);
    return;
  }
  CHECK(o.rc == RTU_ERR_SCRIPT, "%s: gave %s (%s), x = %s", how, rtu_err_name(o.rc), o.err, o.x);
  CHECK(o.ms >= LIMIT_MS - 5, "%s: stopped after %lld ms, before the limit", how, o.ms);
  CHECK(o.ms <= LIMIT_MS + SLACK_MS, "%s: stopped after %lld ms (limit %d ms)", how, o.ms,
        LIMIT_MS);
  if (o.rc != RTU_OK) CHECK_HAS(o.err, "STRATEGIES_MAX_EXEC_TIME_MS");
  /* and the state goes on at full speed */
  CHECK(o.after_rc == RTU_OK, "after %s: %s", how, rtu_err_name(o.after_rc));
  CHECK_STR(o.after_x, "after");
  CHECK(o.after_ms < 100, "after %s: a plain message took %lld ms", how, o.after_ms);
}

static void test_time_limit(rtu_script_t *s) {
  expect_timeout(s, "plain");
  expect_timeout(s, "pcall");
  expect_timeout(s, "pcall-loop");
  expect_timeout(s, "xpcall");
  expect_timeout(s, "error-object");
  expect_timeout(s, "coroutine");
  expect_timeout(s, "coroutine-wrap");
  expect_timeout(s, "xpcall-error"); /* a handler called for an ordinary error */
  expect_timeout(s, "sort");         /* a Lua comparator called from C */
  expect_timeout(s, "close");        /* a to-be-closed variable's __close */
  expect_timeout(s, "gsub-callback");
}

/* Backtracking inside string.find runs in C, where no instruction hook fires:
 * a pattern whose worst case is too long is refused before it runs. */
static void expect_refused_pattern(rtu_script_t *s, const char *how) {
  outcome_t o;
  int budget = LIMIT_MS + SLACK_MS + 5000;
  if (!in_child(run_loop_case, s, how, budget, &o)) {
    CHECK(false, "%s: still running after %d ms (limit %d ms): killed", how, budget, LIMIT_MS);
    return;
  }
  CHECK(o.rc == RTU_ERR_DATA, "%s: gave %s (%s), x = %s", how, rtu_err_name(o.rc), o.err, o.x);
  CHECK_HAS(o.err, "too complex");
  CHECK(o.ms < LIMIT_MS, "%s: refused after %lld ms", how, o.ms);
  CHECK(o.after_rc == RTU_OK, "after %s: %s", how, rtu_err_name(o.after_rc));
  CHECK_STR(o.after_x, "after");
}

static void test_patterns(rtu_script_t *s) {
  expect_refused_pattern(s, "pattern");        /* exponential: a?^n a^n b */
  expect_refused_pattern(s, "pattern-poly");   /* .-.-.-.-.-b over 1e5 */
  expect_refused_pattern(s, "pattern-method"); /* through the string metatable */
  expect_refused_pattern(s, "pattern-gsub");
  expect_refused_pattern(s, "pattern-gmatch");
  expect_refused_pattern(s, "pattern-plain");  /* a plain find is O(n*m) too */
  /* A refusal costs nothing, so a script may catch it. */
  outcome_t o;
  CHECK(in_child(run_loop_case, s, "pattern-pcall", 10000, &o), "pattern-pcall hung");
  CHECK(o.rc == RTU_OK && !strcmp(o.x, "refused"), "pattern-pcall: %s %s", o.err, o.x);
  /* Everyday patterns on longer subjects still run. */
  CHECK(in_child(run_loop_case, s, "pattern-fine", 10000, &o), "pattern-fine hung");
  CHECK(o.rc == RTU_OK, "pattern-fine: %s", o.err);
  CHECK_STR(o.x, "999/201/4/3");
}

/* A finalizer is script code too: it must not run beyond the limit (nor hang
 * the worker when it never ends) wherever the collector happens to call it. */
static void run_finalizer_case(rtu_script_t *s, const char *arg, outcome_t *o) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char x[64];
  snprintf(x, sizeof x, "\"%s\"", arg);
  o->rc = map_x(s, P_LOOP, x, &m, o->err, sizeof o->err, NULL);
  copy_x(&m, o->x, sizeof o->x);
  int64_t ms;
  char err[RTU_ERRSTR_SIZE];
  for (int i = 0; i < 300; i++) {
    rtu_err_t rc = map_x(s, P_LOOP, "\"innocent message with some text to allocate\"", &m, err,
                         sizeof err, &ms);
    if (rc != RTU_OK) o->failed++;
    if (ms > o->worst_ms) o->worst_ms = ms;
  }
  rtu_mapped_destroy(&m);
  int64_t t0 = rtu_now_mono_ms();
  rtu_script_free(s);
  o->free_ms = rtu_now_mono_ms() - t0;
}

static void expect_no_finalizer(rtu_script_t *s, const char *how, rtu_err_t want_rc,
                                const char *want) {
  outcome_t o;
  int budget = 15000;
  if (!in_child(run_finalizer_case, s, how, budget, &o)) {
    CHECK(false, "%s: still running after %d ms: killed", how, budget);
    return;
  }
  CHECK(o.rc == (int)want_rc, "%s: arming gave %s: %s", how, rtu_err_name(o.rc), o.err);
  if (want_rc == RTU_OK) CHECK_STR(o.x, want);
  else CHECK_HAS(o.err, want);
  long long worst = o.worst_ms > o.free_ms ? o.worst_ms : o.free_ms;
  CHECK(worst <= LIMIT_MS + SLACK_MS,
        "a 2 s __gc finalizer ran unbounded: longest rtu_script_map %lld ms, rtu_script_free "
        "%lld ms (limit %d ms)",
        o.worst_ms, o.free_ms, LIMIT_MS);
  CHECK(o.failed == 0, "%zu innocent messages failed because of another message's finalizer",
        o.failed);
}

/* A finalizer would run with hooks off, at any allocation: the sandbox's
 * setmetatable refuses a metatable with __gc, however it is reached. */
static void test_finalizer(rtu_script_t *s) {
  expect_no_finalizer(s, "gc", RTU_ERR_DATA, "__gc finalizers are not allowed");
  expect_no_finalizer(s, "gc-pcall", RTU_OK, "refused");
  expect_no_finalizer(s, "gc-late", RTU_OK, "armed");
}

/* ---- the memory cap ------------------------------------------------------- */

static void test_memory_cap(rtu_script_t *s) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE];
  size_t base = rtu_script_memory(s);
  CHECK(base > 0 && base < 64u * 1024 * 1024, "state uses %zu bytes at rest", base);
  const char *hogs[] = {"\"string\"", "\"table\"",  "\"tables\"",   "\"rep\"",
                        "\"pcall\"",  "\"concat\"", "\"rethrown\"", "\"rep-cap\""};
  for (size_t i = 0; i < sizeof hogs / sizeof hogs[0]; i++) {
    int64_t ms;
    rtu_err_t rc = map_x(s, P_GROW, hogs[i], &m, err, sizeof err, &ms);
    if (i == 4) {
      /* caught inside the script: allowed, the script goes on */
      CHECK(rc == RTU_OK || rc == RTU_ERR_SCRIPT || rc == RTU_ERR_DATA, "%s", err);
      if (rc == RTU_OK) CHECK(field_x(&m) && strstr(field_x(&m), "memory"), "x = %s", field_x(&m));
    } else if (i == 3) {
      /* string.rep refuses a length over Lua's own maximum before allocating */
      CHECK(rc == RTU_ERR_DATA, "%s: gave %s (%s)", hogs[i], rtu_err_name(rc), err);
      CHECK_HAS(err, "too large");
    } else {
      /* the cap is a limit of the script, not a fault of the message */
      CHECK(rc == RTU_ERR_SCRIPT, "%s: gave %s (%s)", hogs[i], rtu_err_name(rc), err);
      CHECK_HAS(err, "memory limit");
    }
    CHECK(rtu_script_memory(s) <= 256u * 1024 * 1024 + 1024 * 1024,
          "%s: state holds %zu bytes", hogs[i], rtu_script_memory(s));
    /* the next message works */
    rtu_msg_t in = msg("{\"CODE\": \"c\", \"ID\": 1}", "{\"CODE\": \"c\", \"ID\": 1, \"NAME\": \"bo\"}");
    rtu_mapped_reset(&m);
    rc = rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err);
    CHECK(rc == RTU_OK, "after %s: %s", hogs[i], err);
    expect_bson("after a memory error", &m.fields,
                "{\"id\": {\"$numberInt\": \"1\"}, \"code\": \"c\", \"name\": \"BO\"}");
  }
  rtu_mapped_destroy(&m);
}

/* ---- the sandbox ---------------------------------------------------------- */

static void probe(rtu_script_t *s, const char *check, const char *want) {
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE], x[128];
  snprintf(x, sizeof x, "\"%s\"", check);
  rtu_err_t rc = map_x(s, P_PROBE, x, &m, err, sizeof err, NULL);
  CHECK(rc == RTU_OK, "probe %s: %s", check, err);
  const char *got = field_x(&m);
  CHECK(got && !strcmp(got, want), "sandbox %s: got '%s', want '%s'", check, got ? got : "(none)",
        want);
  rtu_mapped_destroy(&m);
}

static void test_sandbox(rtu_script_t *s) {
  probe(s, "io", "nil");
  probe(s, "os_execute", "nil");
  probe(s, "os_exit", "nil");
  probe(s, "os_getenv", "nil");
  probe(s, "os_remove", "nil");
  probe(s, "os_time", "function");
  probe(s, "require", "nil");
  probe(s, "package", "nil");
  probe(s, "debug", "nil");
  probe(s, "dofile", "nil");
  probe(s, "loadfile", "nil");
  probe(s, "collectgarbage", "nil");
  probe(s, "string_dump", "nil");
  probe(s, "string_dump_method", "nil");
  probe(s, "G_io", "nil");
  probe(s, "is_bytecode", "yes");
  probe(s, "load_binary", "refused");
  probe(s, "load_binary_mode_b", "refused");
  probe(s, "load_binary_reader", "refused");
  probe(s, "load_text", "42");
  probe(s, "load_text_env", "nil");
  probe(s, "json", "{\"a\":1}");
  /* type() and math.type() are rtu's (sandbox.c): what stock Lua 5.4 answers */
  probe(s, "types",
        "nil,boolean,number,number,string,table,function,thread,userdata,integer,float,nil,nil"
        "|bad argument #1 to 'type' (value expected)"
        "|bad argument #1 to 'math.type' (value expected)");
  probe(s, "c_stack", "overflow");
  probe(s, "string_mt_index", "X");
  probe(s, "G_escape", "truenilnilnil");
  probe(s, "ENV_load", "samenil");
  probe(s, "ENV_local", "nil");
  probe(s, "require_load", "nil");
  probe(s, "format_width", "refused");
  probe(s, "collectgarbage_call", "refused");
  probe(s, "gc_metatable", "refused");
  probe(s, "io_open", "refused");
  probe(s, "os_execute_call", "refused");
  probe(s, "require_call", "refused");
  probe(s, "json_deep", "refused");
  probe(s, "json_cycle", "refused");
  probe(s, "json_dag", "refused");  /* 2^60 references to small tables */
  probe(s, "rep_empty", "00");      /* C loops no allocation bounds */
  probe(s, "table_move", "refused");

  /* getmetatable("") must not hand out the string library. */
  rtu_mapped_t m;
  rtu_mapped_init(&m);
  char err[RTU_ERRSTR_SIZE];
  CHECK(map_x(s, P_PROBE, "\"string_mt\"", &m, err, sizeof err, NULL) == RTU_OK, "%s", err);
  CHECK(field_x(&m) && strcmp(field_x(&m), "table") != 0, "getmetatable('') is a %s",
        field_x(&m) ? field_x(&m) : "?");

  /* What one user file does to its environment stays there. */
  const char *leaks[] = {"global", "string", "env", "datemt", "arraymt"};
  const char *clean[] = {"nil", "XY", "table", "nil", "nil"};
  for (size_t i = 0; i < sizeof leaks / sizeof leaks[0]; i++) {
    char x[64];
    snprintf(x, sizeof x, "\"%s\"", leaks[i]);
    rtu_err_t rc = map_x(s, P_LEAKA, x, &m, err, sizeof err, NULL);
    /* Changing a shared metatable may also be refused outright (read-only token). */
    bool refused = rc == RTU_ERR_DATA && strstr(err, "read-only") != NULL;
    CHECK(rc == RTU_OK || refused, "leakA %s: %s", leaks[i], err);
    rc = map_x(s, P_LEAKB, x, &m, err, sizeof err, NULL);
    CHECK(rc == RTU_OK, "leakB %s: %s", leaks[i], err);
    const char *got = field_x(&m);
    CHECK(got && !strcmp(got, clean[i]), "%s changed by another file shows '%s' (want '%s')",
          leaks[i], got ? got : "(none)", clean[i]);
  }
  /* The runtime itself still works after all that. */
  rtu_msg_t in = msg("{\"CODE\": \"c\", \"ID\": 1}", "{\"CODE\": \"c\", \"ID\": 1, \"TAGS\": []}");
  rtu_mapped_reset(&m);
  CHECK(rtu_script_map(s, P_PEOPLE, &in, &m, err, sizeof err) == RTU_OK, "%s", err);
  expect_bson("after the sandbox probes", &m.fields,
              "{\"id\": {\"$numberInt\": \"1\"}, \"code\": \"c\", \"tags\": []}");
  rtu_mapped_destroy(&m);
}

/* ---- problems at load ----------------------------------------------------- */

/* A configuration whose single projection uses cast `cast` (files in dir). */
static rtu_problems_t script_problems(const char *dir, const char *map_table) {
  char *maps = sub_dir(dir, "maps");
  write_file(maps, "mapTable.json", map_table);
  base_env("200");
  env_set("MAP_TABLE_FOLDER", maps);
  env_set("CAST_FUNCTIONS_FOLDER", dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t\": \"p\"}");
  rtu_config_t *c = load_config();
  rtu_problems_t p = {0};
  rtu_script_t *s = rtu_script_new(c, &p);
  CHECK(s == NULL, "rtu_script_new accepted bad files");
  CHECK(p.n > 0);
  rtu_script_free(s);
  rtu_config_free(c);
  free(maps);
  return p;
}

static void test_load_problems(void) {
  char *dir = tmp_dir("scriptload");
  write_file(dir, "syntaxErr.lua", "return function(v)\n  return v +\nend\n");
  write_file(dir, "notFn.lua", "return 42\n");
  write_file(dir, "nothing.lua", "local x = 1\n");
  write_file(dir, "throws.lua", "error('refusing to load')\n");
  write_file(dir, "spins.lua", "while true do end\n");
  write_file(dir, "good.lua", "return function(v) return v end\n");

  rtu_problems_t p = script_problems(
      dir, "{\"p\": {\"destination\": \"p\", \"conversion\": {"
           "\"ID\": {\"fieldName\": \"id\", \"cast\": \"__fromFile__[good]\"},"
           "\"A\": {\"fieldName\": \"a\", \"cast\": \"__fromFile__[syntaxErr]\"},"
           "\"B\": {\"fieldName\": \"b\", \"cast\": \"__fromFile__[notFn]\"},"
           "\"C\": {\"fieldName\": \"c\", \"cast\": \"__fromFile__[nothing]\"},"
           "\"D\": {\"fieldName\": \"d\", \"cast\": \"__fromFile__[throws]\"},"
           "\"E\": {\"fieldName\": \"e\", \"cast\": \"__fromFile__[spins]\"}},"
           " \"fieldsInKey\": [\"id\"]}}");
  const char *line = find_problem(&p, "syntaxErr.lua", "3", NULL);
  CHECK(line != NULL, "no problem names syntaxErr.lua and its line");
  line = find_problem(&p, "notFn.lua", "must return a function", "number", NULL);
  CHECK(line != NULL, "no problem names notFn.lua");
  line = find_problem(&p, "nothing.lua", "must return a function", "nil", NULL);
  CHECK(line != NULL, "no problem names nothing.lua");
  line = find_problem(&p, "throws.lua", "refusing to load", NULL);
  CHECK(line != NULL, "no problem names throws.lua");
  line = find_problem(&p, "spins.lua", "STRATEGIES_MAX_EXEC_TIME_MS", NULL);
  CHECK(line != NULL, "no problem names spins.lua and the time limit");
  CHECK(find_problem(&p, "good.lua", NULL) == NULL, "good.lua reported");
  CHECK_EQ(p.n, 5);
  if (p.n != 5) print_problems(&p);
  rtu_problems_free(&p);

  /* A cast that is neither a built-in nor a file. */
  p = script_problems(dir, "{\"p\": {\"destination\": \"p\", \"conversion\": {"
                           "\"ID\": {\"fieldName\": \"id\", \"cast\": \"__fromFile__[noSuchCast]\"}},"
                           " \"fieldsInKey\": [\"id\"]}}");
  line = find_problem(&p, "noSuchCast", "ID", NULL);
  CHECK(line != NULL, "no problem names the unknown cast");
  if (!line) print_problems(&p);
  rtu_problems_free(&p);

  /* A custom adapter file that does not return a function. */
  char *adapters = sub_dir(dir, "adapter");
  write_file(adapters, "kafkaMessageAdapter.lua", "return {}\n");
  char *maps = sub_dir(dir, "maps");
  base_env("200");
  env_set("MAP_TABLE_FOLDER", maps);
  env_set("CAST_FUNCTIONS_FOLDER", dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t\": \"p\"}");
  env_set("KAFKA_MESSAGE_ADAPTER", "custom");
  env_set("KAFKA_ADAPTER_FOLDER", adapters);
  rtu_config_t *c = load_config();
  memset(&p, 0, sizeof p);
  rtu_script_t *s = rtu_script_new(c, &p);
  CHECK(s == NULL);
  CHECK(find_problem(&p, "kafkaMessageAdapter.lua", "must return a function", NULL) != NULL);
  rtu_problems_free(&p);
  rtu_script_free(s);
  rtu_config_free(c);
  free(adapters);
  free(maps);
  rm_rf(dir);
  free(dir);
}

/* ---- strategies: hand-written functions batched across documents ---------- */

/* A low-code configuration whose single view sv_reviews comes from a custom
 * identifier function, which rtu.strategy runs for all documents at once, each
 * call in a coroutine whose lookups the driver merges. */
static const char *STRAT_MAP_TABLE =
    "{\"reviews\": {\"destination\": \"reviews\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"},"
    " \"HOW\": {\"fieldName\": \"how\"}}, \"fieldsInKey\": [\"id\"]}}\n";
static const char *STRAT_ER = "{\"version\": \"1.0.0\", \"config\": {}}\n";
static const char *STRAT_PC =
    "{\"version\": \"1.0.0\", \"config\": {\"sv_reviews\": {\"paths\": [{\"path\": [\"reviews\"],"
    " \"identifier\": \"__fromFile__[ofReview]\"}]}}}\n";
static const char *STRAT_FN =
    "return function(doc, db, log)\n"
    "  if doc.HOW == 'loop-first' then while true do end end\n"
    "  if doc.HOW == 'raise' then error('ofReview refuses review ' .. doc.ID) end\n"
    "  local order = db:findOne('orders', {ID = doc.ID})\n"
    "  if doc.HOW == 'loop' then while true do end end\n"
    "  if doc.HOW == 'pcall-loop' then pcall(function() while true do end end) end\n"
    "  return {{ID = doc.ID * 10 + (order and 1 or 0)}}\n"
    "end\n";

typedef struct {
  int calls;
  bool fail;
} fake_find_t;

/* Finds {ID: 1} for any filter naming 1 (the merged $in too); fails transiently
 * when asked to. */
static rtu_err_t fake_find(void *ctx, const char *collection, const bson_t *filter,
                           const bson_t *opts, void (*each)(void *each_ctx, const bson_t *doc),
                           void *each_ctx, char *errstr, size_t errstr_size) {
  fake_find_t *f = ctx;
  (void)collection;
  (void)opts;
  f->calls++;
  if (f->fail) {
    snprintf(errstr, errstr_size, "fake MongoDB is unreachable");
    return RTU_ERR_TRANSIENT;
  }
  bson_iter_t it, sub;
  bool one = false;
  if (bson_iter_init_find(&it, filter, "ID")) {
    if (BSON_ITER_HOLDS_INT(&it)) one = bson_iter_as_int64(&it) == 1;
    else if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
             bson_iter_find(&sub, "$in") && BSON_ITER_HOLDS_ARRAY(&sub)) {
      bson_iter_t el;
      if (bson_iter_recurse(&sub, &el))
        while (bson_iter_next(&el))
          if (BSON_ITER_HOLDS_INT(&el) && bson_iter_as_int64(&el) == 1) one = true;
    }
  }
  if (one) {
    bson_t *doc = BCON_NEW("ID", BCON_INT32(1));
    each(each_ctx, doc);
    bson_destroy(doc);
  }
  return RTU_OK;
}

/* Identifies the reviews {ID: i + 1, HOW: hows[i]}. */
static rtu_err_t identify_reviews_in(rtu_script_t *s, const char *const *hows,
                                     const uint32_t *rerun, size_t n, fake_find_t *f,
                                     rtu_identified_t **ids, size_t *nids, size_t *failed,
                                     char *err, size_t errsz, int64_t *ms) {
  bson_t *docs[8];
  for (size_t i = 0; i < n; i++)
    docs[i] = BCON_NEW("ID", BCON_INT32((int32_t)i + 1), "HOW", BCON_UTF8(hows[i]));
  err[0] = '\0';
  int64_t t0 = rtu_now_mono_ms();
  rtu_err_t rc = rtu_strategies_identify(s, 0, (const bson_t *const *)docs, rerun, n, fake_find, f,
                                     ids, nids, failed, err, errsz);
  *ms = rtu_now_mono_ms() - t0;
  for (size_t i = 0; i < n; i++) bson_destroy(docs[i]);
  return rc;
}

static rtu_err_t identify_reviews(rtu_script_t *s, const char *const *hows, size_t n,
                                  fake_find_t *f, rtu_identified_t **ids, size_t *nids,
                                  size_t *failed, char *err, size_t errsz, int64_t *ms) {
  return identify_reviews_in(s, hows, NULL, n, f, ids, nids, failed, err, errsz, ms);
}

/* After a failed batch, the documents run alone in the order the caller gives
 * (stage.c: by the earliest message each stands for), and the failing one is
 * the first that fails in that order, with only the views of the calls before. */
static void test_rerun_order(rtu_script_t *s) {
  const char *hows[] = {"ok", "raise", "raise", "ok"};
  const uint32_t in_order[] = {0, 1, 2, 3}, third_first[] = {0, 3, 2, 1}, failing_first[] = {2, 0};
  struct {
    const uint32_t *rerun;
    size_t n, failed, nids;
  } cases[] = {{NULL, 4, 1, 1}, {in_order, 4, 1, 1}, {third_first, 4, 2, 2},
               {failing_first, 3, 2, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    fake_find_t f = {0};
    rtu_identified_t *ids = NULL;
    size_t nids = 0, failed = 0;
    char err[RTU_ERRSTR_SIZE];
    int64_t ms;
    rtu_err_t rc = identify_reviews_in(s, hows, cases[c].rerun, cases[c].n, &f, &ids, &nids,
                                       &failed, err, sizeof err, &ms);
    CHECK(rc == RTU_ERR_SCRIPT, "rerun case %zu: %s (%s)", c, rtu_err_name(rc), err);
    CHECK(failed == cases[c].failed, "rerun case %zu: failed document %zu", c, failed);
    char want[64];
    snprintf(want, sizeof want, "ofReview refuses review %zu", cases[c].failed + 1);
    CHECK_HAS(err, want);
    CHECK(nids == cases[c].nids, "rerun case %zu: %zu single views kept", c, nids);
    for (size_t i = 0; i < nids; i++) /* never one of the failing call's or after it */
      CHECK(ids[i].origin == 0 || ids[i].origin == 3, "rerun case %zu: view from %u", c,
            ids[i].origin);
    rtu_identified_free(ids, nids);
  }
  /* a custom function takes whole documents: equal ones are still two inputs */
  bson_t *a = BCON_NEW("ID", BCON_INT32(1)), *b = BCON_NEW("ID", BCON_INT32(1));
  CHECK(!rtu_strategies_same_input(s, 0, a, b), "whole documents compared equal");
  bson_destroy(a);
  bson_destroy(b);
}

static void run_identify_loop(rtu_script_t *s, const char *how, outcome_t *o) {
  const char *hows[] = {"ok", how, "ok"};
  fake_find_t f = {0};
  rtu_identified_t *ids = NULL;
  size_t nids = 0, failed = 0;
  int64_t ms;
  o->rc = identify_reviews(s, hows, 3, &f, &ids, &nids, &failed, o->err, sizeof o->err, &ms);
  o->ms = ms;
  o->failed = failed;
  snprintf(o->x, sizeof o->x, "%zu", nids);
  rtu_identified_free(ids, nids);
  /* and the state goes on: a batch without the loop, fast, with one lookup */
  const char *fine[] = {"ok", "ok", "ok"};
  fake_find_t f2 = {0};
  char err[RTU_ERRSTR_SIZE];
  o->after_rc = identify_reviews(s, fine, 3, &f2, &ids, &nids, &failed, err, sizeof err, &ms);
  o->after_ms = ms;
  snprintf(o->after_x, sizeof o->after_x, "%zu/%d", nids, f2.calls);
  rtu_identified_free(ids, nids);
}

static void expect_identify_timeout(rtu_script_t *s, const char *how) {
  outcome_t o;
  /* the batch, then each document alone: the looping one times out twice */
  int budget = 2 * (LIMIT_MS + SLACK_MS) + 5000;
  if (!in_child(run_identify_loop, s, how, budget, &o)) {
    CHECK(false, "identify %s: still running after %d ms: killed", how, budget);
    return;
  }
  CHECK(o.rc == RTU_ERR_SCRIPT, "identify %s: gave %s (%s)", how, rtu_err_name(o.rc), o.err);
  CHECK_HAS(o.err, "STRATEGIES_MAX_EXEC_TIME_MS");
  CHECK(o.ms >= 2 * LIMIT_MS - 10, "identify %s: stopped after %lld ms", how, o.ms);
  CHECK(o.ms <= 2 * (LIMIT_MS + SLACK_MS), "identify %s: stopped after %lld ms", how, o.ms);
  CHECK(o.failed == 1, "identify %s: failed document %zu", how, o.failed);
  CHECK_STR(o.x, "1"); /* the first document's single view is kept */
  CHECK(o.after_rc == RTU_OK, "after identify %s: %s", how, rtu_err_name(o.after_rc));
  CHECK_STR(o.after_x, "3/1");
  CHECK(o.after_ms < 100, "after identify %s: took %lld ms", how, o.after_ms);
}

static void test_batched_strategy(rtu_script_t *s) {
  /* three documents, one findOne each: one lookup, each its own answer */
  const char *hows[] = {"ok", "ok", "ok"};
  fake_find_t f = {0};
  rtu_identified_t *ids = NULL;
  size_t nids = 0, failed = 0;
  char err[RTU_ERRSTR_SIZE];
  int64_t ms;
  rtu_err_t rc = identify_reviews(s, hows, 3, &f, &ids, &nids, &failed, err, sizeof err, &ms);
  CHECK(rc == RTU_OK, "identify: %s (%s)", rtu_err_name(rc), err);
  CHECK_EQ(f.calls, 1);
  CHECK_EQ(nids, (size_t)3);
  if (nids == 3) {
    /* ID * 10, + 1 when its order was found: only document 1's is */
    for (size_t i = 0; i < 3; i++) {
      bson_iter_t it;
      int64_t want = (int64_t)(i + 1) * 10 + (i == 0);
      CHECK(bson_iter_init_find(&it, &ids[i].identifier, "ID") && bson_iter_as_int64(&it) == want,
            "identifier %zu: want ID %lld", i, (long long)want);
      CHECK(ids[i].origin == i, "identifier %zu: origin %u", i, ids[i].origin);
    }
  }
  rtu_identified_free(ids, nids);

  /* a lookup failing in the merged query is still MongoDB's (transient) failure */
  fake_find_t down = {0, true};
  rc = identify_reviews(s, hows, 3, &down, &ids, &nids, &failed, err, sizeof err, &ms);
  CHECK(rc == RTU_ERR_TRANSIENT, "db failure gave %s (%s)", rtu_err_name(rc), err);
  CHECK_HAS(err, "fake MongoDB is unreachable");
  CHECK_EQ(down.calls, 1);
  CHECK_EQ(nids, (size_t)0);
  rtu_identified_free(ids, nids);
  /* one document alone: its one lookup is a plain call, failing the same way */
  down.calls = 0;
  rc = identify_reviews(s, hows, 1, &down, &ids, &nids, &failed, err, sizeof err, &ms);
  CHECK(rc == RTU_ERR_TRANSIENT, "db failure alone gave %s (%s)", rtu_err_name(rc), err);
  rtu_identified_free(ids, nids);

  /* an endless loop in a batched call, before or after its lookup, even inside
   * the script's pcall, is a timeout no coroutine can swallow */
  expect_identify_timeout(s, "loop-first");
  expect_identify_timeout(s, "loop");
  expect_identify_timeout(s, "pcall-loop");
  test_rerun_order(s);
}

static void strategy_case(const char *limit) {
  char *dir = sub_dir(root, "strategies");
  char *maps = sub_dir(dir, "maps"), *er = sub_dir(dir, "er"), *pc = sub_dir(dir, "pc");
  write_file(maps, "mapTable.json", STRAT_MAP_TABLE);
  write_file(er, "erSchema.json", STRAT_ER);
  write_file(pc, "projectionChangesSchema.json", STRAT_PC);
  write_file(pc, "ofReview.lua", STRAT_FN);
  base_env(limit);
  env_set("MAP_TABLE_FOLDER", maps);
  env_set("CAST_FUNCTIONS_FOLDER", NULL);
  env_set("INVARIANT_TOPIC_MAP", "{\"t.reviews\": \"reviews\"}");
  env_set("USE_AUTOMATIC_STRATEGIES", "true");
  env_set("ER_SCHEMA_FOLDER", er);
  env_set("PROJECTION_CHANGES_SCHEMA_FOLDER", pc);
  rtu_config_t *c = load_config();
  rtu_script_t *s = new_script(c);
  if (s) {
    CHECK(rtu_strategies_involved(s, 0), "reviews has no strategy");
    test_batched_strategy(s);
  }
  rtu_script_free(s);
  rtu_config_free(c);
  free(maps);
  free(er);
  free(pc);
  free(dir);
}

int main(void) {
  root = tmp_dir("script");
  map_dir = sub_dir(root, "maps");
  cast_dir = sub_dir(root, "casts");
  write_file(map_dir, "mapTable.json", MAP_TABLE);
  write_file(cast_dir, "upper.lua", CAST_UPPER);
  write_file(cast_dir, "boom.lua", CAST_BOOM);
  write_file(cast_dir, "loop.lua", CAST_LOOP);
  write_file(cast_dir, "grow.lua", CAST_GROW);
  write_file(cast_dir, "leakA.lua", CAST_LEAK_A);
  write_file(cast_dir, "leakB.lua", CAST_LEAK_B);
  char *bc = bytecode_literal();
  size_t n = strlen(CAST_PROBE_FMT) + strlen(bc) + 1;
  char *probe_src = malloc(n);
  snprintf(probe_src, n, CAST_PROBE_FMT, bc);
  write_file(cast_dir, "probe.lua", probe_src);
  free(probe_src);
  free(bc);

  char limit[16];
  snprintf(limit, sizeof limit, "%d", LIMIT_MS);
  base_env(limit);
  rtu_config_t *cfg = load_config();
  base_env("60000");
  rtu_config_t *cfg_long = load_config();
  base_env(limit);
  env_set("KAFKA_MESSAGE_ADAPTER", "golden-gate");
  rtu_config_t *cfg_gg = load_config();

  rtu_script_t *s = new_script(cfg);
  rtu_script_t *s_long = new_script(cfg_long);
  rtu_script_t *s_gg = new_script(cfg_gg);
  if (s && s_long && s_gg) {
    test_basic_mapping(s);
    test_golden_gate_mapping(s_gg);
    test_cast_error(s);
    test_sandbox(s);
    /* Deep recursion fills the Lua stack (a million slots) before it overflows,
     * which under the sanitizers on a loaded machine can outlast LIMIT_MS: the
     * state with the long limit shows it ends in a stack overflow, not a crash. */
    probe(s_long, "deep_recursion", "overflow");
    test_time_limit(s);
    test_patterns(s);
    test_memory_cap(s_long);
    test_finalizer(s); /* in children */
  }
  rtu_script_free(s);
  rtu_script_free(s_long);
  rtu_script_free(s_gg);
  test_load_problems();
  strategy_case(limit);

  rtu_config_free(cfg);
  rtu_config_free(cfg_long);
  rtu_config_free(cfg_gg);
  env_clear();
  rm_rf(root);
  free(root);
  free(map_dir);
  free(cast_dir);
  return CHECK_DONE();
}
