--[[
rtu.sandbox: the environment each user script (cast, adapter, strategy) runs in.
Every script gets its own environment with its own copies of the allowed
libraries, so a script cannot change what another script or the runtime sees. Not
given: io, os (but for time functions), require, package, debug, dofile, loadfile,
collectgarbage, print, string.dump, and load of binary chunks. The C core adds the
time limit (an instruction hook) and the memory cap (the allocator); it also hides
the string metatable so `getmetatable("")` cannot reach the shared string library.
]]
local json = require("rtu.json")
local value = require("rtu.value")

local M = {}

local base_names = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "rawequal", "rawget",
  "rawlen", "rawset", "select", "tonumber", "tostring", "type", "setmetatable",
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

function M.new_env()
  local env = {}
  for _, name in ipairs(base_names) do env[name] = G[name] end
  env.string = copy(G.string, { dump = true })
  env.table = copy(G.table)
  env.math = copy(G.math)
  env.utf8 = copy(G.utf8)
  env.coroutine = copy(G.coroutine)
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
