--[[
rtu.sandbox: the environment each user script (cast, adapter, strategy) runs in.
Every script gets its own environment with its own copies of the allowed
libraries, so a script cannot change what another script or the runtime sees. Not
given: io, os (but for time functions), require, package, debug, dofile, loadfile,
collectgarbage, print, string.dump, and load of binary chunks. The C core adds the
time limit (an instruction hook) and the memory cap (the allocator); it also hides
the string metatable so `getmetatable("")` cannot reach the shared string library,
and gives string methods ("s:find(p)") the functions of M.string below.

What the hook cannot see is closed here:
- pcall, xpcall and coroutine.resume give a timeout back to their caller as an
  error again (rtu.limits.timed_out() says whether the call timed out), so no
  script goes on after one; xpcall never calls the script's message handler for a
  timeout, because Lua runs a handler with hooks off when the error comes from the
  hook, and a looping handler would never be interrupted.
- setmetatable refuses a metatable with a __gc field: Lua runs finalizers at any
  allocation, with hooks off, possibly after the call that armed them.
- string.find, match, gmatch and gsub (functions and methods) refuse a pattern
  whose worst case is over rtu.patterns.LIMIT: the matcher runs in C, unhooked.
- Other C loops whose length no allocation bounds: string.rep of empty strings
  (returns "" at once), table.move of more than MAX_MOVE elements (refused), and
  table.sort of more than SORT_IN_C elements without a comparator (sorted with a
  Lua comparator, so the hook sees it). What else runs long in C is bounded by
  the memory cap (string.rep, table.concat: a few hundred ms at most).

new_env() -> env      string = the guarded copy of the string library
]]
local json = require("rtu.json")
local value = require("rtu.value")
local limits = require("rtu.limits")
local patterns = require("rtu.patterns")

local M = {}

local base_names = {
  "assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget",
  "rawlen", "rawset", "select", "tonumber", "tostring", "type",
  "getmetatable", "_VERSION",
}

local function copy(t, except)
  local out = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then out[k] = v end
  end
  return out
end

-- The globals of the state, captured when this module is first loaded by the core.
local G = _G
local timed_out = limits.timed_out

local function rethrow(ok, ...)
  if not ok and timed_out() then G.error((...), 0) end
  return ok, ...
end

local function pcall(f, ...)
  return rethrow(G.pcall(f, ...))
end

local function xpcall(f, handler, ...)
  if type(handler) ~= "function" then
    G.error("bad argument #2 to 'xpcall' (function expected, got " .. type(handler) .. ")", 2)
  end
  return rethrow(G.xpcall(f, function(e)
    if timed_out() then return e end
    return handler(e)
  end, ...))
end

local function setmetatable(t, mt)
  if type(mt) == "table" and G.rawget(mt, "__gc") ~= nil then
    G.error("setmetatable: __gc finalizers are not allowed in scripts (they would run "
      .. "outside the time limit)", 2)
  end
  return G.setmetatable(t, mt)
end

local function guarded(name)
  local f = G.string[name]
  return function(s, p, ...)
    patterns.check(name, s, p, name == "find" and (select(2, ...)))
    return f(s, p, ...)
  end
end

M.string = copy(G.string, { dump = true })
for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do M.string[name] = guarded(name) end

M.MAX_MOVE = 1 << 24
M.SORT_IN_C = 100000

M.string.rep = function(s, n, sep)
  local k = G.math.tointeger(n)
  if s == "" and (sep == nil or sep == "") and k and k > 0 then return "" end
  return G.string.rep(s, n, sep)
end

local table_lib = copy(G.table)
table_lib.move = function(a1, f, e, t, a2)
  local fi, ei = G.math.tointeger(f), G.math.tointeger(e)
  if fi and ei and (ei + 0.0) - fi >= M.MAX_MOVE then
    G.error("table.move: more than " .. M.MAX_MOVE .. " elements (sandbox limit)", 2)
  end
  return G.table.move(a1, f, e, t, a2)
end
local function less(a, b) return a < b end
table_lib.sort = function(list, comp)
  if comp == nil and type(list) == "table" and #list > M.SORT_IN_C then comp = less end
  return G.table.sort(list, comp)
end

local coroutine_lib = copy(G.coroutine)
coroutine_lib.resume = function(co, ...) return rethrow(G.coroutine.resume(co, ...)) end
coroutine_lib.close = function(co) return rethrow(G.coroutine.close(co)) end

function M.new_env()
  local env = {}
  for _, name in ipairs(base_names) do env[name] = G[name] end
  env.pcall, env.xpcall, env.setmetatable = pcall, xpcall, setmetatable
  env.string = copy(M.string)
  env.table = copy(table_lib)
  env.math = copy(G.math)
  env.utf8 = copy(G.utf8)
  env.coroutine = copy(coroutine_lib)
  env.os = { time = G.os.time, clock = G.os.clock, date = G.os.date, difftime = G.os.difftime }
  env.json = { decode = json.decode, encode = json.encode, null = json.null }
  env.null = json.null
  env.date = value.date
  env.is_date = value.is_date
  env.array = value.array
  env.iso = value.iso
  -- Text chunks only, and never with a wider environment than the script's own.
  env.load = function(chunk, name, _, chunk_env)
    return G.load(chunk, name, "t", chunk_env or env)
  end
  env._G = env
  return env
end

return M
