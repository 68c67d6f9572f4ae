--[[
rtu.strategy.match: the values and the matcher of the strategy runner: how a
lookup's documents are compared with the filters that asked for them.

matches(doc, filter) -> bool
  MongoDB query semantics for the subset rtu.strategy generates: equality (array
  fields match on any element), $in $nin $eq $ne $gt $gte $lt $lte $exists, $or $and
  $nor, dotted paths through objects. Any other operator raises
  "rtu.strategy: unsupported operator <op>".
canonical(v) -> string
  an encoding equal for values MongoDB finds equal (1 and 1.0, dates by ms, object
  keys in any order) and different otherwise ("1" and 1).
string_heads[n]   canonical()'s head of a string of length n (n < 256), for callers
                  building the encoding of a known shape themselves.
vkey(v) -> key    a table key equal for values canonical() finds equal (see below).
get(doc, path)    the value at a top-level field or a dotted path through objects
                  (nil through an array or a date, as the matcher reads it).
is_opobj(v)       whether v is an operator object ({$op: ...}).

Owns: value comparison and matching. May not touch: I/O, os, globals, any module
but rtu.value. Pure: no state but weak caches keyed by the values they describe.
]]
local value = require("rtu.value")

local null = value.null
local is_list, is_object, sorted_keys = value.is_list, value.is_object, value.sorted_keys
local is_date = value.is_date
local M = {}

local DATE, ARRAY = value.DATE, value.ARRAY

-- The keys of object t in the order of their tostring, as value.sorted_keys; string
-- keys (all of them, in practice) sort by table.sort's own comparison, in C, not
-- through value.sorted_keys' Lua comparator: canonical() encodes every
-- per-document filter of a hop.
local function object_keys(t)
  local keys, n = {}, 0
  for k in pairs(t) do
    if type(k) ~= "string" then return sorted_keys(t) end
    n = n + 1
    keys[n] = k
  end
  if n > 1 then table.sort(keys) end
  return keys
end

-- "s<length>:", the head of a string's encoding, by length: made once, not
-- formatted (a call of snprintf) for every string encoded.
local string_heads = {}
for n = 0, 255 do string_heads[n] = "s" .. n .. ":" end
M.string_heads = string_heads

local function string_head(s)
  local n = #s
  return string_heads[n] or ("s" .. n .. ":")
end

local function canonical(v)
  local t = type(v)
  if t == "string" then return string_head(v) .. v end
  if t == "number" then
    local i = math.tointeger(v)
    if i then return "n" .. i end
    return "n" .. string.format("%.17g", v)
  end
  if t == "boolean" then return v and "bt" or "bf" end
  if v == null or v == nil then return "z" end
  if t == "table" then
    -- value.is_date / is_list, inlined: this runs for every value a lookup handles
    local mt = getmetatable(v)
    if mt == DATE then return "d" .. v.ms end
    local out = {}
    if mt == ARRAY or (mt == nil and v[1] ~= nil) then
      for i = 1, #v do out[i] = canonical(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    for i, k in ipairs(object_keys(v)) do
      out[i] = canonical(k) .. "=" .. canonical(v[k])
    end
    return "{" .. table.concat(out, ",") .. "}"
  end
  return "?" .. tostring(v)
end
M.canonical = canonical

-- Interned encodings of non-scalar keys (weak: an index holding one keeps it).
local tokens = setmetatable({}, { __mode = "v" })

-- A table key equal for values canonical() finds equal and different otherwise,
-- without building a string for the scalars the result indexes are made of: a
-- string, boolean or number is its own key (Lua's keys equate 1 and 1.0 too), any
-- other value (dates, tables, NaN, null) a table interned by its encoding, so that
-- it never meets a raw string.
local function vkey(v)
  local t = type(v)
  if t == "string" or t == "boolean" or (t == "number" and v == v) then return v end
  local enc = canonical(v)
  local tok = tokens[enc]
  if not tok then
    tok = {}
    tokens[enc] = tok
  end
  return tok
end
M.vkey = vkey

local function get(doc, path)
  if type(doc) ~= "table" then return nil end
  local v = doc[path]
  if v ~= nil or type(path) ~= "string" or not path:find(".", 1, true) then return v end
  local cur = doc
  for part in path:gmatch("[^.]+") do
    if type(cur) ~= "table" or is_date(cur) or is_list(cur) then return nil end
    cur = cur[part]
    if cur == nil then return nil end
  end
  return cur
end
M.get = get

local function equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  return canonical(a) == canonical(b)
end

---------------------------------------------------------------------------------
-- the matcher

local function is_opobj(v)
  if not is_object(v) then return false end
  local k = next(v)
  return type(k) == "string" and k:sub(1, 1) == "$"
end
M.is_opobj = is_opobj

local function eq_match(dv, v)
  if v == null then
    if dv == nil or dv == null then return true end
  elseif dv == nil then
    return false
  elseif equal(dv, v) then
    return true
  end
  if is_list(dv) then
    for _, e in ipairs(dv) do
      if equal(e, v) then return true end
    end
  end
  return false
end

local function cmp(a, b)
  local ta, tb = type(a), type(b)
  if (ta == "number" and tb == "number") or (ta == "string" and tb == "string") then
    return a < b and -1 or (a > b and 1 or 0)
  end
  if is_date(a) and is_date(b) then
    return a.ms < b.ms and -1 or (a.ms > b.ms and 1 or 0)
  end
  return nil
end

local CMP = {
  ["$gt"] = function(c) return c > 0 end, ["$gte"] = function(c) return c >= 0 end,
  ["$lt"] = function(c) return c < 0 end, ["$lte"] = function(c) return c <= 0 end,
}

local function cmp_match(dv, v, test)
  if is_list(dv) then
    for _, e in ipairs(dv) do
      if cmp_match(e, v, test) then return true end
    end
    return false
  end
  local c = cmp(dv, v)
  return c ~= nil and test(c)
end

-- Long $in lists (a fake db running a batch filter) are matched through a set of
-- canonical encodings, built once per list table and forgotten with it.
local in_sets = setmetatable({}, { __mode = "k" })

local function in_match(dv, list)
  if #list < 16 then
    for _, x in ipairs(list) do
      if eq_match(dv, x) then return true end
    end
    return false
  end
  local set = in_sets[list]
  if not set then
    set = {}
    for _, x in ipairs(list) do set[canonical(x)] = true end
    in_sets[list] = set
  end
  if set[canonical(dv)] then return true end
  if is_list(dv) then
    for _, e in ipairs(dv) do
      if set[canonical(e)] then return true end
    end
  end
  return false
end

local function field_match(doc, field, cond)
  local dv = get(doc, field)
  -- eq_match's first answer for a scalar found equal, the most common case
  if dv == cond and type(cond) ~= "table" then return true end
  if not is_opobj(cond) then return eq_match(dv, cond) end
  for op, arg in pairs(cond) do
    local ok
    if op == "$eq" then ok = eq_match(dv, arg)
    elseif op == "$ne" then ok = not eq_match(dv, arg)
    elseif op == "$in" then ok = in_match(dv, arg)
    elseif op == "$nin" then ok = not in_match(dv, arg)
    elseif CMP[op] then ok = cmp_match(dv, arg, CMP[op])
    elseif op == "$exists" then ok = (dv ~= nil) == (arg ~= false and arg ~= 0)
    else error("rtu.strategy: unsupported operator " .. tostring(op), 0) end
    if not ok then return false end
  end
  return true
end

local function matches(doc, filter)
  for k, v in pairs(filter) do
    if k == "$or" or k == "$nor" then
      local any = false
      for _, sub in ipairs(v) do
        if matches(doc, sub) then any = true; break end
      end
      if any ~= (k == "$or") then return false end
    elseif k == "$and" then
      for _, sub in ipairs(v) do
        if not matches(doc, sub) then return false end
      end
    elseif type(k) == "string" and k:sub(1, 1) == "$" then
      error("rtu.strategy: unsupported operator " .. k, 0)
    elseif not field_match(doc, k, v) then
      return false
    end
  end
  return true
end
M.matches = matches

return M
