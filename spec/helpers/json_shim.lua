--[[
Specs run the pure Lua modules under plain lua5.4, without the rtu binary. The binary
provides `rtu.json` in C (integer-exact, libbson based); here lua-cjson stands in for
it, with integral numbers turned back into Lua integers. Numbers above 2^53 are not
exact through this shim: integer fidelity is covered by the C unit tests and the
end-to-end tests, which use the real module.
]]
local cjson = require("cjson")

-- Debian's lua-cjson 2.1.0 has no array_mt, so it cannot tell [] from {}; dkjson
-- (Debian lua-dkjson) can, through its arraymeta argument, and stands in there.
local ARRAY_MT, raw_decode
if cjson.decode_array_with_array_mt then
  cjson.decode_array_with_array_mt(true)
  ARRAY_MT, raw_decode = cjson.array_mt, cjson.decode
else
  local dkjson = require("dkjson")
  ARRAY_MT = {}
  raw_decode = function(s)
    if type(s) ~= "string" then error("bad argument #1 to 'decode' (string expected)", 0) end
    local v, pos, err = dkjson.decode(s, 1, cjson.null, nil, ARRAY_MT)
    if err then error(err, 0) end
    if s:find("%S", pos) then error("trailing garbage at character " .. pos, 0) end
    return v
  end
end

local function fix(v)
  local t = type(v)
  if t == "number" then
    return math.tointeger(v) or v
  elseif t == "table" then
    local is_arr = getmetatable(v) == ARRAY_MT
    local out = {}
    for k, x in pairs(v) do out[k] = fix(x) end
    if is_arr then
      local value = package.loaded["rtu.value"]
      setmetatable(out, value and value.Array or ARRAY_MT)
    end
    return out
  end
  return v
end

local M = { null = cjson.null }

function M.decode(s)
  local ok, v = pcall(raw_decode, s)
  if not ok then error(v, 0) end
  return fix(v)
end

function M.encode(v)
  return cjson.encode(v)
end

package.loaded["rtu.json"] = M
return M
