--[[
rtu.testing.json: a stand-in for rtu.json (C in the rtu binary, integer-exact, libbson
based) when Lua modules of rtu run under plain lua5.4: the busted specs and users'
busted tests through rtu.testing. lua-cjson stands in, with integral numbers turned
back into Lua integers. Numbers above 2^53 are not exact through it: integer
fidelity is covered by the C unit tests and the end-to-end tests, which use the
real module. Needs Debian's lua-cjson (and lua-dkjson, see below).
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

-- leave_out as the C decoder's direct path takes it (see l_json_decode), so that a
-- spec sees what that path leaves out: a member named with a set is kept with only
-- those members when it is an object; with anything else, it is dropped.
local function leave(v, leave_out)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return v end
  for name, keep in pairs(leave_out) do
    local m = v[name]
    if type(keep) ~= "table" then
      v[name] = nil
    elseif type(m) == "table" and getmetatable(m) == nil then
      for k in pairs(m) do
        if keep[k] == nil then m[k] = nil end
      end
    end
  end
  return v
end

function M.decode(s, leave_out)
  if leave_out ~= nil and type(leave_out) ~= "table" then
    error("bad argument #2 to 'decode' (table expected, got " .. type(leave_out) .. ")", 0)
  end
  local ok, v = pcall(raw_decode, s)
  if not ok then error(v, 0) end
  v = fix(v)
  if leave_out then v = leave(v, leave_out) end
  return v
end

-- The C decimal reads what this pattern takes, as tonumber does (test_value
-- compares the two).
function M.decimal(s)
  if type(s) ~= "string" and type(s) ~= "number" then
    error("bad argument #1 to 'decimal' (string expected, got " .. type(s) .. ")", 0)
  end
  s = tostring(s)
  if s:find("^%-?%d+%.?%d*$") then return tonumber(s) end
  return nil
end

function M.encode(v)
  return cjson.encode(v)
end

return M
