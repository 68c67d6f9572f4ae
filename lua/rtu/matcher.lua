--[[
rtu.matcher: MongoDB query matching over documents as rtu's Lua side sees BSON, for
the in-memory store of `rtu test` (the C store calls it through a private state).

compile(filter) -> function(doc) -> bool
  raises "rtu.matcher: unsupported operator <op>" for an operator not below (never
  a silent non-match), and "rtu.matcher: <what>" for a malformed filter.
find(docs, filter [, options]) -> array of documents
  the documents of the list `docs` matching filter, in their order, then
  options.sort, options.skip, options.limit, options.projection applied as MongoDB
  does; other options are ignored, as the core's db:find drops them. Documents
  come back as they are without a projection, as new tables with one.
compare(a, b) -> -1 | 0 | 1
  MongoDB's comparison and sort order of two values (nil, missing, sorts as null).

Operators: $eq $ne $in $nin $gt $gte $lt $lte $exists $not $elemMatch (field level),
$and $or $nor (top level, non-empty arrays). Paths: dotted, through objects, and
through arrays as MongoDB does (each element that is an object; a numeric part
also indexes the array). A field holding an array matches when the array as a
whole or any of its elements does. {f: null} matches null and missing. $gt and the
like compare only values of the same type class (numbers across integers and
floats, strings, dates, booleans, arrays, objects), in BSON order; null bounds
($gte/$lte null) match null and missing.

Values: nil = missing, value.null = null, numbers (Lua integers for int32/int64,
floats for doubles), strings, value.date, value.array / lists, objects (tables).
What the C conversion turns into strings (ObjectId as 24 hex digits, decimal128,
binary, regex) compares as strings; timestamps as integers; MinKey, MaxKey and
undefined arrive as null. Objects are compared with their keys in sorted order:
a Lua table keeps no field order, where MongoDB compares embedded documents field
by field in their stored order.

Sort: options.sort = {field = 1 | -1} (one field), or an array of {field, 1 | -1}
pairs for several fields, in order (a Lua table keeps no key order); equal keys
keep the documents' order. An array field sorts by its smallest element ascending,
its largest descending, as MongoDB does.

Owns: matching, sorting and projecting in-memory documents. May not touch: I/O,
os, globals, any module but rtu.value. Pure.
]]
local value = require("rtu.value")

local null, DATE, ARRAY = value.null, value.DATE, value.ARRAY
local M = {}

local function fail(msg) error("rtu.matcher: " .. msg, 0) end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt == ARRAY or (mt == nil and v[1] ~= nil)
end

local function is_date(v) return type(v) == "table" and getmetatable(v) == DATE end

local function is_object(v)
  return type(v) == "table" and not is_list(v) and not is_date(v)
end

---------------------------------------------------------------------------------
-- comparison, in BSON order

-- MongoDB's type classes, in comparison order (MinKey, binary, ObjectId,
-- timestamp, regex and MaxKey do not reach Lua as such).
local NULL, NUMBER, STRING, OBJECT, ARR, BOOL, DATECLASS = 2, 3, 4, 5, 6, 9, 10

local function class(v)
  local t = type(v)
  if t == "number" then return NUMBER end
  if t == "string" then return STRING end
  if t == "boolean" then return BOOL end
  if v == nil or v == null then return NULL end
  if t == "table" then
    if is_date(v) then return DATECLASS end
    if is_list(v) then return ARR end
    return OBJECT
  end
  fail("cannot compare a value of type " .. t)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then fail("object key of type " .. type(k)) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

local compare

-- Strings by their bytes, as MongoDB's simple collation: Lua's < is strcoll, which
-- is strcmp in the C locale, and rtu never calls setlocale.
local function cmp_scalar(a, b)
  if a < b then return -1 end
  if a > b then return 1 end
  return 0
end

-- NaN is smaller than every number and equal to itself, as in MongoDB.
local function cmp_number(a, b)
  local an, bn = a ~= a, b ~= b
  if an or bn then
    if an and bn then return 0 end
    return an and -1 or 1
  end
  return cmp_scalar(a, b)
end

local function cmp_array(a, b)
  local n = math.max(#a, #b)
  for i = 1, n do
    if a[i] == nil then return -1 end
    if b[i] == nil then return 1 end
    local c = compare(a[i], b[i])
    if c ~= 0 then return c end
  end
  return 0
end

-- Field by field: the type class of the values, then the names, then the values.
local function cmp_object(a, b)
  local ka, kb = sorted_keys(a), sorted_keys(b)
  for i = 1, math.max(#ka, #kb) do
    if ka[i] == nil then return -1 end
    if kb[i] == nil then return 1 end
    local x, y = a[ka[i]], b[kb[i]]
    local c = cmp_scalar(class(x), class(y))
    if c ~= 0 then return c end
    c = cmp_scalar(ka[i], kb[i])
    if c ~= 0 then return c end
    c = compare(x, y)
    if c ~= 0 then return c end
  end
  return 0
end

function compare(a, b)
  local ca, cb = class(a), class(b)
  if ca ~= cb then return ca < cb and -1 or 1 end
  if ca == NUMBER then return cmp_number(a, b) end
  if ca == STRING then return cmp_scalar(a, b) end
  if ca == BOOL then
    if a == b then return 0 end
    return a and 1 or -1
  end
  if ca == DATECLASS then return cmp_scalar(a.ms, b.ms) end
  if ca == ARR then return cmp_array(a, b) end
  if ca == OBJECT then return cmp_object(a, b) end
  return 0 -- null
end
M.compare = compare

local function equal(a, b)
  if a == b then return true end
  local ca = class(a)
  return ca == class(b) and ca ~= NULL and compare(a, b) == 0
end

---------------------------------------------------------------------------------
-- paths

local function split(path)
  local parts = {}
  for part in (path .. "."):gmatch("([^.]*)%.") do
    if part == "" then fail("empty field name in path '" .. path .. "'") end
    parts[#parts + 1] = part
  end
  return parts
end

-- Calls emit(v) for every value the path reaches in v from parts[i] on, nil for
-- a branch where it reaches nothing (missing). An array met before the last part
-- is traversed: its object elements go on with the same part (one lacking it is
-- a missing branch), and a numeric part also picks the element at that index;
-- other elements, and an array with none of them, reach nothing at all, not even
-- missing: {"a.b": null} matches a: [{}] but neither a: [1] nor a: [] (MongoDB
-- before 9.0, SERVER-36681; jstests/core/null2.js).
local function walk(v, parts, i, emit)
  if i > #parts then return emit(v) end
  local part = parts[i]
  if is_list(v) then
    local index = part:match("^%d+$") and tonumber(part)
    if index then
      local e = v[index + 1]
      if e ~= nil then walk(e, parts, i + 1, emit) end
    end
    for _, e in ipairs(v) do
      if is_object(e) then walk(e[part], parts, i + 1, emit) end
    end
  elseif is_object(v) then
    walk(v[part], parts, i + 1, emit)
  else
    emit(nil)
  end
end

-- A predicate on the values a path reaches (each value: the value, and each
-- element when it is an array) -> a predicate on the document.
local function any_value(parts, pred, whole_array_only)
  return function(doc)
    local found = false
    walk(doc, parts, 1, function(v)
      if found then return end
      if pred(v) then found = true; return end
      if not whole_array_only and is_list(v) then
        for _, e in ipairs(v) do
          if pred(e) then found = true; return end
        end
      end
    end)
    return found
  end
end

---------------------------------------------------------------------------------
-- field operators: each, given its argument, a predicate on one value

local function eq_pred(arg)
  if arg == null then return function(v) return v == nil or v == null end end
  return function(v) return v ~= nil and equal(v, arg) end
end

local function range_pred(arg, test)
  local ca = class(arg)
  if ca == NULL then
    -- $gte/$lte null are {f: null}; $gt/$lt null match nothing
    if test(0) then return eq_pred(null) end
    return function() return false end
  end
  return function(v)
    if v == nil or class(v) ~= ca then return false end
    return test(compare(v, arg))
  end
end

local function in_list(arg, op)
  if not is_list(arg) and not (type(arg) == "table" and next(arg) == nil
      and getmetatable(arg) == nil) then
    fail(op .. " needs an array")
  end
  local preds = {}
  for i, x in ipairs(arg) do
    if type(x) == "table" and is_object(x) and next(x) ~= nil then
      local k = next(x)
      if type(k) == "string" and k:sub(1, 1) == "$" then
        fail("cannot nest " .. k .. " under " .. op)
      end
    end
    preds[i] = eq_pred(x)
  end
  return function(v)
    for _, p in ipairs(preds) do
      if p(v) then return true end
    end
    return false
  end
end

local function exists_flag(arg)
  return not (arg == false or arg == 0 or arg == null)
end

local compile_filter
local compile_ops

-- $elemMatch on an array: each element against either the operators (when every
-- key is a field operator) or a filter on the element as a document.
local function elem_match(arg)
  if not is_object(arg) then fail("$elemMatch needs an object") end
  local ops_form = true
  for k in pairs(arg) do
    if type(k) ~= "string" or k:sub(1, 1) ~= "$" or k == "$and" or k == "$or"
        or k == "$nor" then
      ops_form = false
    end
  end
  local test
  if ops_form and next(arg) ~= nil then
    local on_value = compile_ops(arg, { "" }, true)
    test = function(e) return on_value(e) end
  else
    local f = compile_filter(arg)
    test = function(e) return is_object(e) and f(e) end
  end
  return function(v)
    if not is_list(v) then return false end
    for _, e in ipairs(v) do
      if test(e) then return true end
    end
    return false
  end
end

local RANGE = {
  ["$gt"] = function(c) return c > 0 end, ["$gte"] = function(c) return c >= 0 end,
  ["$lt"] = function(c) return c < 0 end, ["$lte"] = function(c) return c <= 0 end,
}

-- One operator of a field's operator object -> a predicate on the document (or,
-- `on_value`, on a value given as the document, for $elemMatch's operator form).
local function compile_op(op, arg, parts, on_value)
  local function path_pred(pred, whole)
    if on_value then
      return function(v)
        if pred(v) then return true end
        if not whole and is_list(v) then
          for _, e in ipairs(v) do
            if pred(e) then return true end
          end
        end
        return false
      end
    end
    return any_value(parts, pred, whole)
  end
  if op == "$eq" then return path_pred(eq_pred(arg)) end
  if op == "$ne" then
    local eq = path_pred(eq_pred(arg))
    return function(doc) return not eq(doc) end
  end
  if RANGE[op] then return path_pred(range_pred(arg, RANGE[op])) end
  if op == "$in" then return path_pred(in_list(arg, op)) end
  if op == "$nin" then
    local is_in = path_pred(in_list(arg, op))
    return function(doc) return not is_in(doc) end
  end
  if op == "$exists" then
    local want = exists_flag(arg)
    local present = path_pred(function(v) return v ~= nil end, true)
    return function(doc) return present(doc) == want end
  end
  if op == "$not" then
    if not is_object(arg) or next(arg) == nil then
      fail("$not needs an operator object")
    end
    local inner = compile_ops(arg, parts, on_value)
    return function(doc) return not inner(doc) end
  end
  if op == "$elemMatch" then return path_pred(elem_match(arg), true) end
  fail("unsupported operator " .. tostring(op))
end

-- A field's operator object ({$gt: 1, $lt: 5}) -> a predicate: all of them hold.
function compile_ops(ops, parts, on_value)
  local preds = {}
  for op, arg in pairs(ops) do
    if type(op) ~= "string" or op:sub(1, 1) ~= "$" then
      fail("unknown operator " .. tostring(op) .. " beside operators")
    end
    preds[#preds + 1] = compile_op(op, arg, parts, on_value)
  end
  return function(doc)
    for _, p in ipairs(preds) do
      if not p(doc) then return false end
    end
    return true
  end
end

local function is_ops(v)
  if not is_object(v) then return false end
  for k in pairs(v) do
    if type(k) == "string" and k:sub(1, 1) == "$" then return true end
  end
  return false
end

local function compile_logical(op, arg)
  if not is_list(arg) or #arg == 0 then fail(op .. " needs a non-empty array") end
  local subs = {}
  for i, f in ipairs(arg) do
    if not is_object(f) then fail(op .. " entries must be objects") end
    subs[i] = compile_filter(f)
  end
  if op == "$and" then
    return function(doc)
      for _, s in ipairs(subs) do
        if not s(doc) then return false end
      end
      return true
    end
  end
  local want = op == "$or"
  return function(doc)
    for _, s in ipairs(subs) do
      if s(doc) then return want end
    end
    return not want
  end
end

function compile_filter(filter)
  if not is_object(filter) then fail("a filter must be an object") end
  local preds = {}
  for k, v in pairs(filter) do
    if type(k) ~= "string" then fail("filter keys must be strings") end
    if k == "$and" or k == "$or" or k == "$nor" then
      preds[#preds + 1] = compile_logical(k, v)
    elseif k:sub(1, 1) == "$" then
      fail("unsupported operator " .. k)
    elseif is_ops(v) then
      preds[#preds + 1] = compile_ops(v, split(k))
    else
      preds[#preds + 1] = compile_op("$eq", v, split(k))
    end
  end
  return function(doc)
    for _, p in ipairs(preds) do
      if not p(doc) then return false end
    end
    return true
  end
end

function M.compile(filter)
  if filter == nil then filter = {} end
  return compile_filter(filter)
end

---------------------------------------------------------------------------------
-- find: sort, skip, limit, projection

local function sort_spec(sort)
  if is_list(sort) then
    local out = {}
    for i, pair in ipairs(sort) do
      if not is_list(pair) or type(pair[1]) ~= "string" then
        fail("sort: an array of {field, 1 | -1} pairs expected")
      end
      out[i] = { parts = split(pair[1]), dir = pair[2] }
    end
    return out
  end
  if not is_object(sort) then fail("sort must be an object") end
  local out = {}
  for field, dir in pairs(sort) do
    out[#out + 1] = { parts = split(field), dir = dir }
  end
  if #out > 1 then
    fail("sort on several fields needs an array of {field, 1 | -1} pairs (a Lua table "
      .. "keeps no key order)")
  end
  return out
end

-- An empty array sorts before null and missing, as MongoDB sorts it.
local EMPTY = {}

local function compare_key(a, b)
  if a == EMPTY or b == EMPTY then
    if a == b then return 0 end
    return a == EMPTY and -1 or 1
  end
  return compare(a, b)
end

-- The key a document sorts by on one field: the smallest (ascending) or largest
-- (descending) of the values the path reaches, array elements taken one by one.
local function sort_key(doc, parts, dir)
  local best, any = nil, false
  local function consider(v)
    if not any or compare_key(v, best) * dir < 0 then best, any = v, true end
  end
  walk(doc, parts, 1, function(v)
    if is_list(v) then
      if #v == 0 then consider(EMPTY) end
      for _, e in ipairs(v) do consider(e) end
    else
      consider(v)
    end
  end)
  return best
end

local function sorted(docs, sort)
  local spec = sort_spec(sort)
  for _, s in ipairs(spec) do
    if s.dir ~= 1 and s.dir ~= -1 then fail("sort direction must be 1 or -1") end
  end
  local items = {}
  for i, d in ipairs(docs) do
    local keys = {}
    for j, s in ipairs(spec) do keys[j] = sort_key(d, s.parts, s.dir) end
    items[i] = { doc = d, keys = keys, pos = i }
  end
  -- the position breaks ties: table.sort is not stable
  table.sort(items, function(a, b)
    for j, s in ipairs(spec) do
      local c = compare_key(a.keys[j], b.keys[j]) * s.dir
      if c ~= 0 then return c < 0 end
    end
    return a.pos < b.pos
  end)
  local out = {}
  for i, it in ipairs(items) do out[i] = it.doc end
  return out
end

local function copy(v)
  if type(v) ~= "table" or is_date(v) then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return setmetatable(out, getmetatable(v) == ARRAY and value.Array or nil)
end

-- The projection as a tree: name -> true (the field) or a sub-tree (a dotted path).
local function projection_tree(proj)
  local tree, mode, id = {}, nil, true
  for path, on in pairs(proj) do
    if type(path) ~= "string" then fail("projection keys must be strings") end
    if type(on) == "table" then fail("unsupported projection operator on " .. path) end
    local include = not (on == false or on == 0)
    if path == "_id" then
      id = include
    else
      if path:find("$", 1, true) then fail("unsupported projection " .. path) end
      if mode ~= nil and mode ~= include then
        fail("projection cannot mix inclusion and exclusion")
      end
      mode = include
      local node, parts = tree, split(path)
      for i = 1, #parts - 1 do
        if node[parts[i]] == true then break end
        node[parts[i]] = node[parts[i]] or {}
        node = node[parts[i]]
      end
      if type(node) == "table" then node[parts[#parts]] = true end
    end
  end
  -- only _id named: {_id: 1} keeps only it, {_id: 0} everything but it
  if mode == nil then mode = id and next(proj) ~= nil end
  return tree, mode, id
end

local function include(v, tree)
  if is_list(v) then
    local out = {}
    for _, e in ipairs(v) do
      if is_object(e) then out[#out + 1] = include(e, tree)
      elseif is_list(e) then out[#out + 1] = include(e, tree) end
    end
    return value.array(out)
  end
  local out = {}
  for k, sub in pairs(tree) do
    local x = v[k]
    if x ~= nil then
      if sub == true then out[k] = copy(x)
      elseif is_object(x) or is_list(x) then out[k] = include(x, sub) end
    end
  end
  return out
end

local function exclude(v, tree)
  if is_list(v) then
    local out = {}
    for i, e in ipairs(v) do
      out[i] = (is_object(e) or is_list(e)) and exclude(e, tree) or copy(e)
    end
    return value.array(out)
  end
  local out = {}
  for k, x in pairs(v) do
    local sub = tree[k]
    if sub == nil then out[k] = copy(x)
    elseif sub ~= true then
      out[k] = (is_object(x) or is_list(x)) and exclude(x, sub) or copy(x)
    end
  end
  return out
end

local function projector(proj)
  if not is_object(proj) then fail("projection must be an object") end
  local tree, mode, id = projection_tree(proj)
  if mode == true then
    return function(doc)
      local out = include(doc, tree)
      if id and doc._id ~= nil then out._id = copy(doc._id) end
      return out
    end
  end
  return function(doc)
    local out = exclude(doc, tree)
    if not id then out._id = nil end
    return out
  end
end

local function count(v, what)
  if v == nil or v == null then return 0 end
  if math.type(v) == nil or (math.type(v) == "float" and math.tointeger(v) == nil) then
    fail(what .. " must be an integer")
  end
  return math.tointeger(v)
end

function M.find(docs, filter, options)
  options = options or {}
  local match = M.compile(filter)
  local out = {}
  for _, d in ipairs(docs) do
    if match(d) then out[#out + 1] = d end
  end
  if options.sort ~= nil and options.sort ~= null then out = sorted(out, options.sort) end
  local skip, limit = count(options.skip, "skip"), count(options.limit, "limit")
  if skip < 0 then fail("skip must be non-negative") end
  limit = math.abs(limit) -- a negative limit: that many, in a single batch
  local res = {}
  for i = skip + 1, #out do
    if limit > 0 and #res >= limit then break end
    res[#res + 1] = out[i]
  end
  if options.projection ~= nil and options.projection ~= null then
    local project = projector(options.projection)
    for i, d in ipairs(res) do res[i] = project(d) end
  end
  return value.array(res)
end

return M
