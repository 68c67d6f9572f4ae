/*
 * fuzz_json_lua: rtu.json in Lua (what adapters, casts and strategies call).
 *
 * - decode(text) reads strict JSON straight into Lua and leaves the rest to the
 *   BSON path (rtu_json_read_bson, then rtu_bson_lua_push_iter): for every text
 *   the value must be the BSON path's (same types, integer or float, values,
 *   null, array marks, even the pairs() order), and a text the BSON path refuses
 *   must be refused with its message.
 * - decode(text, leave_out) accepts exactly the texts decode(text) accepts.
 * - encode(decode(text)) does not fail, and decodes again.
 * - decimal(text) is tonumber(text), to the bit, for a plain decimal
 *   ('-'? digit+ ('.' digit*)?), and nil for any other text.
 */
#include "fuzz.h"

static lua_State *L;

static const char *const CHECKS =
    "local json = require('rtu.json')\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
    "  if type(a) == 'number' then return string.format('%a', a) == string.format('%a', b) end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  local ka, kb = {}, {}\n"
    "  for k in pairs(a) do ka[#ka + 1] = k end\n"
    "  for k in pairs(b) do kb[#kb + 1] = k end\n"
    "  if #ka ~= #kb then return false end\n"
    "  for i = 1, #ka do\n"
    "    if ka[i] ~= kb[i] or not same(a[ka[i]], b[kb[i]]) then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local LEAVE_OUT = {source = true, before = {ID = true, id = true}, after = 1}\n"
    "return function(text, bson_ok, bson_value, bson_err)\n"
    "  local ok, v = pcall(json.decode, text)\n"
    "  if ok ~= bson_ok then\n"
    "    return 'BSON path ' .. (bson_ok and 'accepts' or 'refuses') .. ', decode ' .. (ok and 'accepts' or 'refuses')\n"
    "  end\n"
    "  if ok and not same(v, bson_value) then return 'decode differs from the BSON path' end\n"
    "  if not ok and not tostring(v):find(bson_err, 1, true) then\n"
    "    return 'decode says ' .. tostring(v) .. ', the BSON path ' .. bson_err\n"
    "  end\n"
    "  local lok = pcall(json.decode, text, LEAVE_OUT)\n"
    "  if lok ~= ok then return 'decode with leave_out ' .. (lok and 'accepts' or 'refuses') end\n"
    "  if ok then\n"
    "    local eok, e = pcall(json.encode, v)\n"
    "    if not eok then return 'encode fails: ' .. tostring(e) end\n"
    "    local dok, d = pcall(json.decode, e)\n"
    "    if not dok then return 'decode of encode fails: ' .. tostring(d) .. ' on ' .. e end\n"
    "  end\n"
    "  local want = nil\n"
    "  if text:find('^%-?%d+%.?%d*$') then want = tonumber(text) end\n"
    "  local got = json.decimal(text)\n"
    "  if got ~= nil or want ~= nil then\n"
    "    if got == nil or want == nil or math.type(got) ~= math.type(want)\n"
    "       or string.format('%a', got) ~= string.format('%a', want) then\n"
    "      return 'decimal ' .. tostring(got) .. ', tonumber ' .. tostring(want)\n"
    "    end\n"
    "  end\n"
    "  return nil\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = fuzz_json_state();
  if (luaL_loadstring(L, CHECKS) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    fuzz_fail("checks: %s", lua_tostring(L, -1));
  lua_setglobal(L, "CHECK");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  int top = lua_gettop(L);
  lua_getglobal(L, "CHECK");
  lua_pushlstring(L, text, size);
  bson_t doc;
  char err[RTU_ERRSTR_SIZE] = "";
  bool ok = (rtu_json_read_bson(text, size, &doc, err, sizeof err) == RTU_OK);
  lua_pushboolean(L, ok);
  if (ok) {
    bson_iter_t it;
    if (bson_iter_init(&it, &doc) && bson_iter_next(&it)) rtu_bson_lua_push_iter(L, &it);
    else lua_pushnil(L);
    bson_destroy(&doc);
  } else {
    lua_pushnil(L);
  }
  lua_pushstring(L, err);
  if (lua_pcall(L, 4, 1, 0) != LUA_OK) fuzz_fail("check raised: %s", lua_tostring(L, -1));
  if (!lua_isnil(L, -1))
    fuzz_fail("%s: %.*s", lua_tostring(L, -1), (int)(size > 200 ? 200 : size), text);
  lua_settop(L, top);
  /* A full collection per input: what an input allocated is freed within its
   * run, so libFuzzer's leak check (which runs a whole LSan scan after any input
   * that mallocs more than it frees) stays quiet and the target fast. */
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
