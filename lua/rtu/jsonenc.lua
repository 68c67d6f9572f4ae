--[[
rtu.jsonenc: JavaScript's text forms of values, for the casts that must answer
exactly what the Node.js Real-Time Updater answers.

  number(n)  String(n) / Number.prototype.toString(): shortest round-trip digits,
             "1e+21" above 1e21, "1e-7" below 1e-6, "NaN", "Infinity", "0" for -0.
             Lua integers print exactly (all 64 bits; JS would round above 2^53).
  encode(v)  JSON.stringify(v) over rtu.value conventions: value.null -> null,
             Array metatable -> JSON array, value.date -> its toJSON (ISO string),
             NaN/Infinity -> null, functions skipped in objects and null in arrays,
             a cycle raises "Converting circular structure to JSON" as JS throws.

Object keys: a Lua table has no insertion order, so JSON.stringify's "source order"
cannot be kept. Keys are written as JS orders them when it can know: array-index
keys ("0", "1", ...) ascending first, then every other key in byte order. Output is
therefore deterministic, but differs from Node for objects whose keys were not
already sorted.

Owns: only these two functions. May not touch: I/O, os, globals, any module but
rtu.value.
]]
local value = require("rtu.value")

local M = {}

local null, Array, Date = value.null, value.ARRAY, value.DATE -- compared with getmetatable
local fmt, concat, sort = string.format, table.concat, table.sort
local huge = math.huge

-- Shortest decimal digits that read back as f (f finite and > 0), as
-- (digits, exp) with f ~ digits * 10^exp and no trailing zero in digits.
-- "%.{p}e" is the correctly rounded p+1 digit form; when it does not read back,
-- the other p+1 digit neighbour of f still may (the round-trip interval is not
-- symmetric at powers of two), and ECMAScript wants any shortest one.
local function shortest(f)
  local first = 0
  -- Fast path: a double whose shortest form has at most 15 digits (DBL_DIG) is
  -- the 15-digit rounding of it, trailing zeros aside. Not for subnormals,
  -- which hold fewer digits.
  if f >= 2.2250738585072014e-308 then
    local s = fmt("%.14e", f)
    if tonumber(s) == f then
      local lead, rest, e = s:match("^(%d)%.?(%d*)e([-+]%d+)$")
      local digits = lead .. rest
      local stripped = digits:gsub("0+$", "")
      return stripped, tonumber(e) - 14 + (#digits - #stripped)
    end
    first = 15 -- it needs 16 or 17 digits
  end
  for p = first, 16 do
    local s = fmt("%." .. p .. "e", f)
    local lead, rest, e = s:match("^(%d)%.?(%d*)e([-+]%d+)$")
    local digits, exp = lead .. rest, tonumber(e) - p
    local ok = tonumber(s) == f
    if not ok then
      -- step the last digit towards f and try once more
      local up = tonumber(s) < f
      local d = { digits:byte(1, -1) }
      local i = #d
      if up then
        while i >= 1 and d[i] == 57 do d[i] = 48; i = i - 1 end
        if i == 0 then table.insert(d, 1, 49) else d[i] = d[i] + 1 end
      else
        while i >= 1 and d[i] == 48 do d[i] = 57; i = i - 1 end
        d[i] = d[i] - 1
      end
      local cand = string.char(table.unpack(d))
      if tonumber(cand .. "e" .. exp) == f then
        digits, ok = cand:gsub("^0+", ""), true
      end
    end
    if ok then
      local stripped = digits:gsub("0+$", "")
      return stripped, exp + (#digits - #stripped)
    end
  end
  -- 17 significant digits always read back; not reached for IEEE doubles
  local s = fmt("%.16e", f)
  local lead, rest, e = s:match("^(%d)%.?(%d*)e([-+]%d+)$")
  return lead .. rest, tonumber(e) - 16
end

-- Number::toString(10) of ECMA-262 for a float.
local function float_to_string(f)
  if f ~= f then return "NaN" end
  if f == huge then return "Infinity" end
  if f == -huge then return "-Infinity" end
  if f == 0 then return "0" end
  local sign = ""
  if f < 0 then sign, f = "-", -f end
  -- exact integers print directly: most floats in CDC data are whole numbers
  if f < 2^53 and f == math.floor(f) then
    return sign .. fmt("%d", math.tointeger(f))
  end
  local s, exp = shortest(f)
  local k = #s
  local n = exp + k -- f = 0.s * 10^n
  if k <= n and n <= 21 then
    return sign .. s .. string.rep("0", n - k)
  elseif 0 < n and n <= 21 then
    return sign .. s:sub(1, n) .. "." .. s:sub(n + 1)
  elseif -6 < n and n <= 0 then
    return sign .. "0." .. string.rep("0", -n) .. s
  end
  local e = n - 1
  local es = (e < 0) and ("-" .. -e) or ("+" .. e)
  if k == 1 then return sign .. s .. "e" .. es end
  return sign .. s:sub(1, 1) .. "." .. s:sub(2) .. "e" .. es
end

function M.number(n)
  if math.type(n) == "integer" then return tostring(n) end
  return float_to_string(n)
end

local ESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function esc(c) return ESC[c] or fmt("\\u%04x", c:byte()) end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    -- %c also matches DEL, which JSON.stringify leaves as it is
    if c == "\127" then return c end
    return esc(c)
  end) .. '"'
end
M.quote = quote

-- Canonical array index, as JS sorts own keys: "0".."4294967294" without
-- leading zeros.
local function index_key(k)
  if k == "0" then return 0 end
  if k:match("^[1-9]%d*$") and #k <= 10 then
    local n = tonumber(k)
    if n <= 4294967294 then return n end
  end
  return nil
end

local function key_before(a, b)
  local ia, ib = index_key(a), index_key(b)
  if ia and ib then return ia < ib end
  if ia then return true end
  if ib then return false end
  return a < b
end

local encode_value

local function encode_table(t, out, seen)
  if seen[t] then error("Converting circular structure to JSON", 0) end
  seen[t] = true
  local mt = getmetatable(t)
  if mt == Array then
    local n = 0
    for k in pairs(t) do
      if math.type(k) == "integer" and k > n then n = k end
    end
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      if not encode_value(t[i], out, seen) then out[#out + 1] = "null" end
    end
    out[#out + 1] = "]"
  else
    local keys, map = {}, {}
    for k, v in pairs(t) do
      local tk, sk = type(k), nil
      if tk == "string" then sk = k
      elseif tk == "number" then sk = M.number(k) end
      if sk and map[sk] == nil then
        keys[#keys + 1] = sk
        map[sk] = v
      end
    end
    sort(keys, key_before)
    out[#out + 1] = "{"
    local first = true
    for _, k in ipairs(keys) do
      local mark = #out
      out[#out + 1] = first and "" or ","
      out[#out + 1] = quote(k)
      out[#out + 1] = ":"
      if encode_value(map[k], out, seen) then
        first = false
      else
        -- JSON.stringify drops members whose value has no JSON form
        for i = #out, mark + 1, -1 do out[i] = nil end
      end
    end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

-- Appends the JSON of v to out; false when v has no JSON form (undefined,
-- functions), which the caller turns into "null" or an omitted member.
encode_value = function(v, out, seen)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "number" then
    if math.type(v) == "float" and (v ~= v or v == huge or v == -huge) then
      out[#out + 1] = "null"
    else
      out[#out + 1] = M.number(v)
    end
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    if getmetatable(v) == Date then
      out[#out + 1] = quote(value.iso(v))
    else
      encode_table(v, out, seen)
    end
  else
    return false
  end
  return true
end

-- JSON.stringify(v); nil when JS would return undefined.
function M.encode(v)
  local out = {}
  if not encode_value(v, out, {}) then return nil end
  return concat(out)
end

return M
