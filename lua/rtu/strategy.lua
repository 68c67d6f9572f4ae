--[[
rtu.strategy: runs a low-code plan (rtu.lowcode) for all the documents of one
projection changed in a batch, with one lookup per hop for the whole batch, and
hand-written functions for many documents with their lookups merged likewise.

run(plan, projection, docs, db, log [, view]) -> results, stats, keys
  docs     { {doc = <projection document after the write>, origin = <opaque>} ... },
           every document of `projection` changed in the batch, in batch order.
  db       db:find(collection, filter, options) -> array of documents (read-only).
  log      log.debug(msg, fields) etc.; may be nil.
  view     optional: only this single view (used by as_function).
  results  { {type = <single view>, identifier = {...}, origin = <token>} ... },
           one per (type, identifier) (compared by canonical encoding), origin of
           the latest document of `docs` that leads to it; in discovery order.
  keys     keys[i] = type .. "\0" .. canonical(identifier) of results[i] (for the
           caller's own de-duplication, computed here anyway).
  stats    { queries = <real db calls issued, custom functions' included>, custom_calls,
           documents = <documents reached by lookups> }; also added to plan.stats.
Walk: the plan's route tree for `projection`; at each hop A -> B the current
documents are turned into ONE filter over B's collection, __STATE__: "PUBLIC" added,
asking only the fields the walk reads from B's documents (the condition's B fields,
B's identifier fields, the next hops' source fields; all of them when B's documents
go to a custom identifier function):
  - a named condition {B_f: A_f}       -> {B_f: {$in: [distinct non-null A_f values]}}
    (constants beside it, as {B_f: A_f, B_g: {$ne: "X"}}, stay beside the $in)
  - any other condition                -> one filter per document, de-duplicated,
  - several parts (conditions or docs) -> {$or: [parts...]}
then each returned document is attributed back to the documents whose own filter it
matches (the matcher below, on candidates picked by an index of the result), keeping
only the first match in the db's order per source document and condition when
oneToMany is false. A missing or null source value links nothing (the comparison
using it is false, as SQL's NULL: a null foreign key must not match every record
whose key is null). A route with no hop (the base projection itself) builds the
identifier from the changed document without any lookup.
Identifiers: {key = base field}: a base document missing one of the fields gives
no identifier (logged at debug); "__fromFile__[name]": custom(baseDoc, db, log) ->
array of identifier objects (nil = none), called once per base document reached,
all the documents of a terminal at once through call_batched. Errors of db:find or
of a custom function propagate (the batch fails).

call_batched(fn, args, db, log [, stats]) -> { fn(args[1], db', log), ... }
  one result per arg (args.n or #args of them, nil args included), in order: what
  calling fn on each arg one after the other gives, but with the lookups of all the
  calls merged, one round trip per round instead of one per document. Each call
  runs in its own coroutine of this module's coroutine library (the trusted one);
  db' is a proxy: db':find / db':findOne from that coroutine, where it can yield,
  with no options (nil or {}) and a filter the matcher judges as MongoDB does
  (scalar or date values, $eq $ne $gt $gte $lt $lte $in $nin $exists, $or $and $nor
  of such, on top-level fields), yields the request to the driver. Any other lookup
  (options, $regex, embedded objects, dotted paths, the function's own coroutines,
  a callback of C such as a table.sort comparator) is the real call at once. The driver resumes every call,
  then per round and collection: identical filters asked once; one filter -> the
  call as it is; several -> ONE db:find of {f: {$in: [...]}, <shared fields>} when
  they differ only in the plain scalar value of field f, else {$or: [...]} (at most
  1000 filters a query); each request gets back the documents of the result that
  match its filter (found through the result index and the matcher), in result
  order, findOne the first or nil; a document asked by several gets a copy each.
  When a result document matches no request (the server and the matcher disagree),
  that query's requests run again one by one. A failing db call is raised where
  the function called db (its pcall sees it). The error of the first call (in args
  order) that raises is raised again, value preserved (error(e, 0)), calls after it
  not continued; a yield that is not a lookup raises as yielding outside a
  coroutine does. The time limit reaches the calls: coroutines inherit the count
  hook, and the core tells a timeout by its flag, not by the error value.
  stats.queries counts the real db calls (merged, direct, reruns).

root_fields(plan, projection) -> {field, ...} | nil
  the top-level fields run reads from the documents of `projection` (sorted), nil
  when a custom identifier function gets them whole: the core passes only these.
as_function(plan, projection, view) -> function(document, db, log) -> {identifier...}
  the low-code plan in the form of a hand-written strategy.
matches(doc, filter) -> bool
  MongoDB query semantics for the subset this module generates: equality (array
  fields match on any element), $in $nin $eq $ne $gt $gte $lt $lte $exists, $or $and
  $nor, dotted paths through objects. Used to attribute results, and by specs.
canonical(v) -> string
  an encoding equal for values MongoDB finds equal (1 and 1.0, dates by ms, object
  keys in any order) and different otherwise ("1" and 1).

Owns: executing plans and the matcher. May not touch: I/O, os, globals, writes to
MongoDB, any module but rtu.*.
]]
local value = require("rtu.value")

local null = value.null
local M = {}

local is_list, is_object, sorted_keys = value.is_list, value.is_object, value.sorted_keys

---------------------------------------------------------------------------------
-- values

local DATE, ARRAY = value.DATE, value.ARRAY

-- The keys of object t in the order of their tostring, as value.sorted_keys; string
-- keys (all of them, in practice) sort without its Lua comparator, which was most
-- of canonical()'s time for the per-document filters of a hop.
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

-- "s<length>:", the head of a string's encoding, by length: formatting the length
-- (a call of snprintf) was most of encoding a string.
local string_heads = {}
for n = 0, 255 do string_heads[n] = "s" .. n .. ":" end

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

local function get(doc, path)
  if type(doc) ~= "table" then return nil end
  local v = doc[path]
  if v ~= nil or type(path) ~= "string" or not path:find(".", 1, true) then return v end
  local cur = doc
  for part in path:gmatch("[^.]+") do
    if type(cur) ~= "table" or value.is_date(cur) or is_list(cur) then return nil end
    cur = cur[part]
    if cur == nil then return nil end
  end
  return cur
end

local function equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  return canonical(a) == canonical(b)
end

---------------------------------------------------------------------------------
-- matcher

local function is_opobj(v)
  if not is_object(v) then return false end
  local k = next(v)
  return type(k) == "string" and k:sub(1, 1) == "$"
end

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
  if value.is_date(a) and value.is_date(b) then
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

---------------------------------------------------------------------------------
-- conditions of a plan -> filters for one source document

local MISSING = {}

local function resolve(doc, ref)
  if ref.src == nil then return ref.const end
  local v = get(doc, ref.src)
  if v == nil or v == null then return MISSING end
  return v
end

local function eq_filter(field, v)
  -- A document value is compared with $eq, never spliced in as a query object.
  if is_object(v) then
    return { [field] = { ["$eq"] = v } }
  end
  return { [field] = v }
end

local instantiate

local function instantiate_field(node, doc)
  local spec, n = {}, 0
  for _, o in ipairs(node.ops) do
    local arg
    if o.list or o.spread then
      local vals = {}
      if o.spread then
        local v = resolve(doc, o.spread)
        if v == MISSING then return false end
        if is_list(v) then
          for _, x in ipairs(v) do vals[#vals + 1] = x end
        else
          vals[1] = v
        end
      else
        for _, ref in ipairs(o.list) do
          local v = resolve(doc, ref)
          if v ~= MISSING then
            vals[#vals + 1] = v
          elseif o.op == "$nin" then
            return false
          end
        end
      end
      if #vals == 0 and o.op == "$in" then return false end
      if #vals > 0 then arg = value.array(vals) end
    else
      arg = resolve(doc, o.arg)
      if arg == MISSING then return false end
    end
    if arg ~= nil then
      spec[o.op] = arg
      n = n + 1
    end
  end
  if n == 0 then return {} end
  if n == 1 and spec["$eq"] ~= nil then return eq_filter(node.field, spec["$eq"]) end
  return { [node.field] = spec }
end

local function instantiate_and(node, doc)
  -- one condition (every branch of a JSON $or is one): its filter as it is
  if #node.list == 1 then return instantiate(node.list[1], doc) end
  local parts = {}
  for _, sub in ipairs(node.list) do
    local f = instantiate(sub, doc)
    if f == false then return false end
    if next(f) ~= nil then parts[#parts + 1] = f end
  end
  if #parts == 0 then return {} end
  if #parts == 1 then return parts[1] end
  local merged = {}
  for _, f in ipairs(parts) do
    for k, v in pairs(f) do
      if merged[k] ~= nil then return { ["$and"] = value.array(parts) } end
      merged[k] = v
    end
  end
  return merged
end

local distinct_ors = setmetatable({}, { __mode = "k" }) -- or node -> bool

-- Whether the branches of an or node are single fields, each its own: their
-- filters ({field: ...}) can never be equal, so need no de-duplication.
local function distinct_branches(node)
  local d = distinct_ors[node]
  if d ~= nil then return d end
  d = true
  local fields = {}
  for _, sub in ipairs(node.list) do
    while sub.k == "and" and #sub.list == 1 do sub = sub.list[1] end
    if sub.k ~= "field" or fields[sub.field] then
      d = false
      break
    end
    fields[sub.field] = true
  end
  distinct_ors[node] = d
  return d
end

local function instantiate_or(node, doc)
  local parts = {}
  -- encoding each branch's filter to compare them was most of a filter's cost
  local seen = not distinct_branches(node) and {}
  for _, sub in ipairs(node.list) do
    local f = instantiate(sub, doc)
    if f ~= false then
      if next(f) == nil then return {} end
      if seen then
        local key = canonical(f)
        if seen[key] then f = false else seen[key] = true end
      end
      if f then parts[#parts + 1] = f end
    end
  end
  if #parts == 0 then return false end
  if #parts == 1 then return parts[1] end
  return { ["$or"] = value.array(parts) }
end

-- A compiled condition for one source document: a MongoDB filter, {} for "any
-- document", or false when nothing can match.
function instantiate(node, doc)
  if node.k == "field" then return instantiate_field(node, doc) end
  if node.k == "or" then return instantiate_or(node, doc) end
  return instantiate_and(node, doc)
end
M.instantiate = instantiate

-- The values one of which field k must equal in any document matching {k = v}, or
-- nil when v does not pin the field (null, an operator other than $eq/$in).
local function pinned(v)
  if not is_opobj(v) then
    if v ~= null then return { v } end
    return nil
  end
  local eq = v["$eq"]
  if eq ~= nil and eq ~= null then return { eq } end
  local list = v["$in"]
  if list then
    for _, x in ipairs(list) do
      if x == null then return nil end
    end
    return list
  end
  return nil
end

local NONE = {}

-- The positions an index (see result_index) files under key, as a list.
local function positions_at(idx, key)
  local list = idx[key]
  if type(list) == "number" then return { list } end
  return list or NONE
end

-- The positions found in any of `lists`, ascending, each once.
local function union(lists)
  local set, out = {}, {}
  for _, list in ipairs(lists) do
    for _, p in ipairs(list) do
      if not set[p] then
        set[p] = true
        out[#out + 1] = p
      end
    end
  end
  table.sort(out)
  return out
end

-- Ascending positions of the results that may match f (a superset of those that
-- do), picked with index_of (see result_index), or nil when f pins no field so
-- every result is a candidate. Of several pinned fields the one with the fewest
-- candidates is used: a field every result shares (__STATE__) would pick them all.
local function candidates(f, index_of)
  local best, best_n -- as the index files them (a position or a list), and how many
  for k, v in pairs(f) do
    if type(k) == "string" and k:sub(1, 1) ~= "$" then
      local list
      if type(v) ~= "table" then
        -- what pinned() gives a scalar, without its list: the most common filter
        if v ~= null then list = index_of(k)[vkey(v)] or NONE end
      else
        local vals = pinned(v)
        if vals then
          local idx = index_of(k)
          if #vals == 1 then
            list = positions_at(idx, vkey(vals[1]))
          else
            local lists = {}
            for i, x in ipairs(vals) do lists[i] = positions_at(idx, vkey(x)) end
            list = union(lists)
          end
        end
      end
      if list then
        local n = type(list) == "number" and 1 or #list
        if not best or n < best_n then best, best_n = list, n end
        if best_n == 0 then return best end
      end
    end
  end
  if best then
    if type(best) == "number" then return { best } end
    return best
  end
  if f["$and"] then
    for _, sub in ipairs(f["$and"]) do
      local c = candidates(sub, index_of)
      if c then return c end
    end
  end
  if f["$or"] then
    local lists = {}
    for i, sub in ipairs(f["$or"]) do
      lists[i] = candidates(sub, index_of)
      if not lists[i] then return nil end
    end
    return union(lists)
  end
  return nil
end

---------------------------------------------------------------------------------
-- one hop for a whole batch

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local rests = setmetatable({}, { __mode = "k" }) -- simple form -> filter | false | {}

-- The filter of a simple form's constant part: {} when there is none, false when
-- it matches nothing; the same for every document, so made once.
local function rest_filter(simple)
  local f = rests[simple]
  if f == nil then
    f = {}
    if simple.rest then f = instantiate(simple.rest, {}) end
    rests[simple] = f
  end
  return f
end

-- {field: {$in: vals}} with the constant part's fields beside it, or both under
-- $and when the constant part names the field too.
local function simple_part(simple, vals, rest)
  local part = { [simple.field] = { ["$in"] = value.array(vals) } }
  if next(rest) == nil then return part end
  if rest[simple.field] ~= nil then return { ["$and"] = value.array({ part, rest }) } end
  for k, v in pairs(rest) do part[k] = v end
  return part
end

-- The lookup filter of a hop for the documents docs, and what each asks per
-- condition: simple[ci][i] the vkey of its A_f value for a condition in simple
-- form, per_item[i][ci] its own filter for any other; nil when it asks nothing
-- (per_item[i] nil when it asks nothing of any).
local function build_filter(hop, docs)
  local parts, seen = {}, {}
  local per_item, simple = {}, {}
  local everything = false
  local function add(f)
    if next(f) == nil then everything = true; return end
    local key = canonical(f)
    if not seen[key] then
      seen[key] = true
      parts[#parts + 1] = f
    end
  end
  for ci, c in ipairs(hop.conditions) do
    local rest = c.simple and rest_filter(c.simple)
    if rest then
      local vals, vseen, keys = {}, {}, {}
      simple[ci] = keys
      local src = c.simple.src
      for i = 1, #docs do
        local v = get(docs[i], src)
        if v ~= nil and v ~= null then
          local key = type(v) == "string" and v or vkey(v)
          keys[i] = key
          if not vseen[key] then
            vseen[key] = true
            vals[#vals + 1] = v
          end
        end
      end
      -- not encoded to be de-duplicated (its $in lists every value of the batch):
      -- two conditions alike would only ask the same twice
      if #vals > 0 then parts[#parts + 1] = simple_part(c.simple, vals, rest) end
    elseif not c.simple then
      for i = 1, #docs do
        local f = instantiate(c.node, docs[i])
        if f then
          -- made here only: a hop of simple conditions has no per-item filters
          local own = per_item[i]
          if not own then
            own = {}
            per_item[i] = own
          end
          own[ci] = f
          add(f)
        end
      end
    end
  end
  if everything then return { __STATE__ = "PUBLIC" }, per_item, simple end
  if #parts == 0 then return nil, per_item, simple end
  local filter = (#parts == 1) and copy(parts[1]) or { ["$or"] = value.array(parts) }
  if filter.__STATE__ ~= nil then
    return { ["$and"] = value.array({ filter, { __STATE__ = "PUBLIC" } }) }, per_item, simple
  end
  filter.__STATE__ = "PUBLIC"
  return filter, per_item, simple
end

-- Positions of `results` matching f, ascending, at most `limit`.
local function attribute(results, index_of, f, limit)
  local cands = candidates(f, index_of)
  local out = {}
  local n = cands and #cands or #results
  for j = 1, n do
    local p = cands and cands[j] or j
    if matches(results[p], f) then
      out[#out + 1] = p
      if #out >= limit then break end
    end
  end
  return out
end

-- Files position p under key in idx (see result_index), once: p is the latest
-- position filed, if any, when an array holds an element twice.
local function file_at(idx, key, p)
  local at = idx[key]
  if at == nil then
    idx[key] = p
  elseif type(at) == "number" then
    if at ~= p then idx[key] = { at, p } end
  elseif at[#at] ~= p then
    at[#at + 1] = p
  end
end

-- index_of(field) -> {vkey(value) -> the ascending positions of `results` whose
-- field equals it or, for an array field, holds it: one position as a number,
-- several as a list}; built on first use per field. A one-element list a value
-- was most of building an index of keys, most of them found once.
local function result_index(results)
  local indexes = {}
  return function(field)
    local idx = indexes[field]
    if idx then return idx end
    idx = {}
    local plain = not field:find(".", 1, true)
    for p = 1, #results do
      local r = results[p]
      local v
      if plain and type(r) == "table" then v = r[field] else v = get(r, field) end
      if v ~= nil then
        file_at(idx, type(v) == "string" and v or vkey(v), p)
        if type(v) == "table" and is_list(v) then
          for _, e in ipairs(v) do file_at(idx, vkey(e), p) end
        end
      end
    end
    indexes[field] = idx
    return idx
  end
end

-- Adds to set the target fields (side "field") or the source fields (side "src")
-- a condition AST reads.
local function condition_fields(node, side, set)
  if node.k ~= "field" then
    for _, sub in ipairs(node.list) do condition_fields(sub, side, set) end
    return
  end
  if side == "field" then
    set[node.field] = true
    return
  end
  for _, o in ipairs(node.ops) do
    for _, ref in ipairs(o.list or { o.arg or o.spread }) do
      if ref.src then set[ref.src] = true end
    end
  end
end

local projections = setmetatable({}, { __mode = "k" }) -- node -> projection | false

-- The projection of the lookup reaching `node`: only the fields its documents are
-- read for (the hop's target fields, to attribute them; the node's identifier
-- fields; its children's source fields). Converting whole documents into Lua was
-- a fifth of identify's time. nil (whole documents) when a custom identifier
-- function gets them.
local function projection_of(node)
  local proj = projections[node]
  if proj ~= nil then return proj or nil end
  local set = {}
  for _, c in ipairs(node.hop.conditions) do condition_fields(c.node, "field", set) end
  for _, t in ipairs(node.terminals) do
    if t.identifier.kind ~= "fields" then
      projections[node] = false
      return nil
    end
    for _, f in ipairs(t.identifier.fields) do set[f.field] = true end
  end
  for _, child in ipairs(node.children) do
    for _, c in ipairs(child.hop.conditions) do condition_fields(c.node, "src", set) end
  end
  -- MongoDB refuses a path together with a path inside it ("a" and "a.b").
  proj = {}
  for f in pairs(set) do
    local inside = false
    for g in pairs(set) do
      if f:sub(1, #g + 1) == g .. "." then inside = true end
    end
    if not inside then proj[f] = 1 end
  end
  if not set._id then proj._id = 0 end
  projections[node] = proj
  return proj
end

-- The documents one hop reaches from docs, each with the latest of the lasts of
-- the documents that reach it: next_docs, next_lasts (in the db's order).
local function run_hop(node, docs, lasts, db, stats)
  local hop = node.hop
  local filter, per_item, simple = build_filter(hop, docs)
  if not filter then return {}, {} end
  stats.queries = stats.queries + 1
  local proj = projection_of(node)
  local results = db:find(hop.collection, filter, proj and { projection = proj } or nil) or {}

  local index_of = result_index(results)

  -- Condition by condition, so that what is the same for every item (its index,
  -- its constant part, its limit) is looked up once; the order does not matter:
  -- each result reached keeps the latest item that reaches it (reached[p]).
  local reached = {}
  local one = {} -- a single position of the index, as a list without a table each
  for ci, c in ipairs(hop.conditions) do
    local limit = c.one_to_many and math.huge or 1
    local keys = simple[ci]
    if keys then
      -- {B_f: v}, v not null, matches exactly the results the index files under
      -- vkey(v) (B_f equal to v or, an array, holding it: eq_match compares by
      -- canonical encoding, which vkey follows), so no matcher runs for the most
      -- common condition; only the constant part, if any, is matched.
      local idx = index_of(c.simple.field)
      local rest = rest_filter(c.simple)
      local plain = next(rest) == nil
      for i = 1, #docs do
        local key = keys[i]
        local positions = key ~= nil and idx[key]
        if positions then
          if type(positions) == "number" then
            one[1] = positions
            positions = one
          end
          local last, kept = lasts[i], 0
          for j = 1, #positions do
            local p = positions[j]
            if plain or matches(results[p], rest) then
              local l = reached[p]
              if not l or last > l then reached[p] = last end
              kept = kept + 1
              if kept >= limit then break end
            end
          end
        end
      end
    else
      for i = 1, #docs do
        local f = per_item[i] and per_item[i][ci]
        if f then
          local last = lasts[i]
          for _, p in ipairs(attribute(results, index_of, f, limit)) do
            local l = reached[p]
            if not l or last > l then reached[p] = last end
          end
        end
      end
    end
  end
  local next_docs, next_lasts, n = {}, {}, 0
  for p = 1, #results do
    local last = reached[p]
    if last then
      n = n + 1
      next_docs[n] = results[p]
      next_lasts[n] = last
    end
  end
  stats.documents = stats.documents + n
  return next_docs, next_lasts
end

---------------------------------------------------------------------------------
-- hand-written functions, batched across documents

-- The trusted runtime's coroutine library, taken when the core loads this module
-- (before any script runs): a script cannot replace what the driver relies on.
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_running, co_yieldable, co_yield = coroutine.running, coroutine.isyieldable,
  coroutine.yield

local MAX_MERGED = 1000 -- filters in one merged query; more are split
local REQUEST = {}      -- marks a yield of the proxy db (a script cannot make one)

local function is_date(v) return value.is_date(v) end

-- A value an $in of the merged query may hold: compared by value, never null.
local function plain_scalar(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return true end
  if t == "number" then return v == v end -- NaN equals nothing in Lua
  return is_date(v)
end

local function scalar(v) return v == null or plain_scalar(v) end

-- A list whose every element passes ok.
local function list_of(v, ok)
  if not is_list(v) then return false end
  for _, x in ipairs(v) do
    if not ok(x) then return false end
  end
  return true
end

local function scalar_list(v) return list_of(v, scalar) end

-- The operators the matcher evaluates, each with the operands it is trusted with.
local MERGE_OPS = {
  ["$eq"] = scalar, ["$ne"] = scalar, ["$gt"] = plain_scalar, ["$gte"] = plain_scalar,
  ["$lt"] = plain_scalar, ["$lte"] = plain_scalar, ["$in"] = scalar_list,
  ["$nin"] = scalar_list, ["$exists"] = function(v) return type(v) == "boolean" end,
}

local mergeable

local function mergeable_ops(v)
  if getmetatable(v) ~= nil or next(v) == nil then return false end
  for op, arg in pairs(v) do
    local ok = MERGE_OPS[op]
    if not ok or not ok(arg) then return false end
  end
  return true
end

local function mergeable_list(v) return list_of(v, mergeable) end

-- A filter the matcher decides exactly as MongoDB does, so that documents of a
-- merged query can be given back to the request they answer: top-level fields
-- compared with scalars or dates, the operators above, $or/$and/$nor of such
-- filters. Anything else runs alone: embedded objects or arrays as values, $regex,
-- $where, $expr..., and dotted paths (MongoDB follows them through arrays and does
-- not read a field literally named "a.b"; the matcher does neither).
function mergeable(f)
  if type(f) ~= "table" or getmetatable(f) ~= nil or next(f) == nil then return false end
  for k, v in pairs(f) do
    if type(k) ~= "string" then return false end
    if k == "$or" or k == "$and" or k == "$nor" then
      if not mergeable_list(v) then return false end
    elseif k:sub(1, 1) == "$" or k:find(".", 1, true) then
      return false
    elseif not scalar(v) and not (type(v) == "table" and mergeable_ops(v)) then
      return false
    end
  end
  return true
end

-- A copy of a result document for a second request given the same one: a function
-- changing what it was given must not change what another call sees.
local function clone(v)
  if type(v) ~= "table" or v == null then return v end
  if is_date(v) then return value.date(v.ms) end
  local out = {}
  for k, x in pairs(v) do out[k] = clone(x) end
  if value.is_array(v) then value.array(out) end
  return out
end

-- The real call for one request, protected: an error goes back to the calling
-- function, raised where it called db, as it would be without batching.
local function direct(db, stats, kind, coll, filter)
  stats.queries = stats.queries + 1
  return pcall(db[kind], db, coll, filter)
end

-- The one filter asking what all of `filters` (distinct, mergeable, 2 or more) ask:
-- {f = {$in = [...]}, <shared fields>} when they differ only in the plain value of
-- one field f, else {$or = filters}.
local function merged_filter(filters)
  local first = filters[1]
  local keys, nkeys = {}, 0
  for k in pairs(first) do
    nkeys = nkeys + 1
    keys[nkeys] = k
  end
  for i = 2, #filters do
    local n = 0
    for k in pairs(filters[i]) do
      if first[k] == nil then return { ["$or"] = value.array(filters) } end
      n = n + 1
    end
    if n ~= nkeys then return { ["$or"] = value.array(filters) } end
  end
  local differ
  for _, k in ipairs(keys) do
    local c = canonical(first[k])
    for i = 2, #filters do
      if canonical(filters[i][k]) ~= c then
        if differ or k:sub(1, 1) == "$" then return { ["$or"] = value.array(filters) } end
        differ = k
        break
      end
    end
  end
  local vals = {}
  for i, f in ipairs(filters) do
    if not plain_scalar(f[differ]) then return { ["$or"] = value.array(filters) } end
    vals[i] = f[differ]
  end
  local out = {}
  for k, v in pairs(first) do out[k] = v end
  out[differ] = { ["$in"] = value.array(vals) }
  return out
end

-- Gives docs (the documents a filter found) to the requests `reqs` asking it: the
-- list to a find, its first document (nil if none) to a findOne; a copy to all
-- but the first.
local function give(reqs, docs)
  for i, r in ipairs(reqs) do
    local answer = docs
    if r.kind == "findOne" then answer = docs[1] end
    if i > 1 then answer = clone(answer) end
    r.answer = { true, answer }
  end
end

-- Each request alone (the server and the matcher disagree on a merged result).
local function serve_directly(db, stats, distinct)
  for _, d in ipairs(distinct) do
    for _, r in ipairs(d.reqs) do
      r.answer = { direct(db, stats, r.kind, r.coll, r.filter) }
    end
  end
end

-- Up to MAX_MERGED distinct filters of one collection: one query, its documents
-- given back to each filter with the result index.
local function serve_merged(db, stats, coll, distinct)
  local filters = {}
  for i, d in ipairs(distinct) do filters[i] = d.filter end
  stats.queries = stats.queries + 1
  local ok, results = pcall(db.find, db, coll, merged_filter(filters))
  if not ok then
    for _, d in ipairs(distinct) do
      for _, r in ipairs(d.reqs) do r.answer = { false, results } end
    end
    return
  end
  results = results or {}
  local index_of, covered = result_index(results), {}
  local lists = {}
  for i, d in ipairs(distinct) do
    local docs = {}
    for _, p in ipairs(attribute(results, index_of, d.filter, math.huge)) do
      covered[p] = true
      docs[#docs + 1] = results[p]
    end
    lists[i] = docs
  end
  for p = 1, #results do
    if not covered[p] then return serve_directly(db, stats, distinct) end
  end
  -- A document asked by several filters goes to the first as is, to others copied.
  local given = {}
  for i, d in ipairs(distinct) do
    local docs = lists[i]
    for j, doc in ipairs(docs) do
      if given[doc] then docs[j] = clone(doc) else given[doc] = true end
    end
    give(d.reqs, docs)
  end
end

-- One collection's requests of a round: identical filters asked once; one
-- distinct filter runs as it is; several are merged.
local function serve_collection(db, stats, coll, reqs)
  local distinct, by_key = {}, {}
  for _, r in ipairs(reqs) do
    local key = canonical(r.filter)
    local d = by_key[key]
    if not d then
      d = { filter = r.filter, reqs = {}, all_one = true }
      by_key[key] = d
      distinct[#distinct + 1] = d
    end
    d.reqs[#d.reqs + 1] = r
    if r.kind ~= "findOne" then d.all_one = false end
  end
  if #distinct == 1 then
    local d = distinct[1]
    local ok, res = direct(db, stats, d.all_one and "findOne" or "find", coll, d.filter)
    if not ok then
      for _, r in ipairs(d.reqs) do r.answer = { false, res } end
    elseif d.all_one then
      give(d.reqs, { res })
    else
      give(d.reqs, res or {})
    end
    return
  end
  for from = 1, #distinct, MAX_MERGED do
    serve_merged(db, stats, coll, table.move(distinct, from,
      math.min(from + MAX_MERGED - 1, #distinct), 1, {}))
  end
end

-- Answers every request of a round (r.answer = {ok, result or error}), one query
-- per collection (per MAX_MERGED filters), collections in the order first asked.
local function serve(db, stats, round)
  local colls, by_coll = {}, {}
  for _, r in ipairs(round) do
    local list = by_coll[r.coll]
    if not list then
      list = {}
      by_coll[r.coll] = list
      colls[#colls + 1] = r.coll
    end
    list[#list + 1] = r
  end
  for _, coll in ipairs(colls) do serve_collection(db, stats, coll, by_coll[coll]) end
end

-- The db the batched functions see: a request from a call's own coroutine, where
-- it can yield, goes to the driver; any other (the function's own coroutine, a
-- callback of C such as a table.sort comparator, options, a filter the matcher
-- cannot judge) is the real call, at once.
local function proxy_db(db, stats, mine)
  local function request(kind, coll, filter, options)
    local co = co_running()
    if mine[co] and co_yieldable() and type(coll) == "string" and mergeable(filter)
        and (options == nil or (type(options) == "table" and next(options) == nil)) then
      local ok, res = co_yield(REQUEST, kind, coll, filter)
      if not ok then error(res, 0) end
      return res
    end
    stats.queries = stats.queries + 1
    return db[kind](db, coll, filter, options)
  end
  return setmetatable({}, {
    __index = {
      find = function(_, coll, filter, options) return request("find", coll, filter, options) end,
      findOne = function(_, coll, filter, options)
        return request("findOne", coll, filter, options)
      end,
    },
    __metatable = false,
  })
end

function M.call_batched(fn, args, db, log, stats)
  stats = stats or { queries = 0 }
  local n = args.n or #args
  local results, mine, waiting = {}, {}, {}
  local failed, failure -- the first call (in args order) that raised, and its error
  local proxy = proxy_db(db, stats, mine)

  local function step(i, co, ...)
    local ok, first, kind, coll, filter = co_resume(co, ...)
    if not ok or (co_status(co) ~= "dead" and first ~= REQUEST) then
      -- a yield that is not a request: what yielding outside a coroutine raises
      if ok then first = "attempt to yield from outside a coroutine" end
      if not failed or i < failed then failed, failure = i, first end
    elseif co_status(co) == "dead" then
      results[i] = first
    else
      waiting[#waiting + 1] = { i = i, co = co, kind = kind, coll = coll, filter = filter }
    end
  end

  for i = 1, n do
    if failed then break end -- later calls would not have run
    local co = co_create(fn)
    mine[co] = true
    step(i, co, args[i], proxy, log)
  end
  while #waiting > 0 do
    local round = {}
    for _, r in ipairs(waiting) do
      if not failed or r.i < failed then round[#round + 1] = r end
    end
    waiting = {}
    serve(db, stats, round)
    for _, r in ipairs(round) do
      if not failed or r.i < failed then step(r.i, r.co, r.answer[1], r.answer[2]) end
    end
  end
  if failed then error(failure, 0) end
  return results
end

---------------------------------------------------------------------------------
-- identifiers and the walk

local function debug(log, msg, fields)
  if log and log.debug then log.debug(msg, fields) end
end

local function skipped(log, field)
  debug(log, "low-code identifier skipped: base document has no " .. field, { field = field })
end

-- The identifier of doc for a fields identifier, nil (logged at debug) when doc
-- lacks one of the fields.
local function field_identifier(id, doc, log)
  local out
  for _, f in ipairs(id.fields) do
    local v = get(doc, f.field)
    if v == nil or v == null then
      skipped(log, f.field)
      return nil
    end
    -- made by a constructor, sized for its first key: growing an empty table
    -- rehashes it
    if out then out[f.key] = v else out = { [f.key] = v } end
  end
  return out
end

-- The custom function with its result checked inside the call, so that a bad
-- result fails where the call does (before later documents, as one by one).
local function checked(id)
  local fn, name = id.fn, id.name
  return function(doc, db, log)
    local list = fn(doc, db, log)
    if list == nil then return {} end
    if type(list) ~= "table" then
      error(string.format("custom identifier function '%s' returned %s, expected an array of "
        .. "identifier objects", name, type(list)), 0)
    end
    for i, x in ipairs(list) do
      if not is_object(x) or next(x) == nil then
        error(string.format("custom identifier function '%s': element %d is not an identifier "
          .. "object", name, i), 0)
      end
    end
    return list
  end
end

-- The identifier lists of docs for a custom identifier, one per document, in order.
local function custom_identifiers(id, docs, db, log, stats)
  if type(id.fn) ~= "function" then
    error("custom identifier function '" .. id.name .. "' is not loaded", 0)
  end
  stats.custom_calls = stats.custom_calls + #docs
  return M.call_batched(checked(id), docs, db, log, stats)
end

local key_makers = setmetatable({}, { __mode = "k" }) -- terminal -> function

-- key_of(ident) -> t.view .. "\0" .. canonical(ident), the de-duplication key of
-- the terminal's identifiers. For a fields identifier the keys are known, so the
-- encoding of each key (in canonical()'s order) is built once per terminal and only
-- the values are encoded per identifier: encoding whole identifiers was the first
-- cost of the walk. (A one-field identifier does not come here: see run.)
local function key_maker(t)
  local make = key_makers[t]
  if make then return make end
  local id = t.identifier
  if id.kind ~= "fields" then
    make = function(ident) return t.view .. "\0" .. canonical(ident) end
  else
    local names = {}
    for i, f in ipairs(id.fields) do names[i] = f.key end
    table.sort(names) -- canonical()'s order for string keys (object_keys)
    local heads = {}
    for i, k in ipairs(names) do heads[i] = (i == 1 and "{" or ",") .. canonical(k) .. "=" end
    local head = t.view .. "\0" .. heads[1]
    make = function(ident)
      local out = { head, canonical(ident[names[1]]) }
      for i = 2, #names do
        out[#out + 1] = heads[i]
        out[#out + 1] = canonical(ident[names[i]])
      end
      out[#out + 1] = "}"
      return table.concat(out)
    end
  end
  key_makers[t] = make
  return make
end

-- The top-level fields the walk reads from the changed documents of `projection`
-- (its identifier fields, its first hops' source fields), sorted; nil when a
-- custom identifier function gets them whole. Loading the whole documents into
-- Lua was a quarter of identify's time.
function M.root_fields(plan, projection)
  local root = plan.routes[projection]
  if not root then return {} end
  local set = {}
  for _, t in ipairs(root.terminals) do
    if t.identifier.kind ~= "fields" then return nil end
    for _, f in ipairs(t.identifier.fields) do set[f.field] = true end
  end
  for _, child in ipairs(root.children) do
    for _, c in ipairs(child.hop.conditions) do condition_fields(c.node, "src", set) end
  end
  local out, seen = {}, {}
  for f in pairs(set) do
    local top = f:match("^[^.]*")
    if not seen[top] then
      seen[top] = true
      out[#out + 1] = top
    end
  end
  table.sort(out)
  return out
end

function M.run(plan, projection, docs, db, log, view)
  local stats = { queries = 0, custom_calls = 0, documents = 0 }
  local results, by_key, keys = {}, {}, {}
  local root = plan.routes[projection]
  if root and (view == nil or root.views[view]) then
    -- the walk's documents, each with the position in docs of the latest changed
    -- document that leads to it (last): two arrays, not a table a document
    local root_docs, root_lasts = {}, {}
    for i, d in ipairs(docs) do
      if d.doc ~= nil then
        root_docs[#root_docs + 1] = d.doc
        root_lasts[#root_lasts + 1] = i
      end
    end
    local function new_result(t, key, ident, last)
      local r = { type = t.view, identifier = ident, last = last }
      keys[#results + 1] = key
      by_key[key] = r
      results[#results + 1] = r
    end
    local function add(t, key, ident, last)
      local r = by_key[key]
      if not r then
        new_result(t, key, ident, last)
      elseif last > r.last then
        r.last = last
      end
    end
    -- A one-field identifier (the common one): its key is made from the value
    -- (a string in one concatenation), and the identifier only for a new key.
    local function add_one_field(t, ds, ls)
      local f = t.identifier.fields[1]
      local field, name = f.field, f.key
      local head = t.view .. "\0{" .. canonical(name) .. "=" -- canonical({[name] = v})'s
      for i = 1, #ds do
        local v = get(ds[i], field)
        if v == nil or v == null then
          skipped(log, field)
        else
          local key
          if type(v) == "string" then
            key = head .. (string_heads[#v] or string_head(v)) .. v .. "}"
          else
            key = head .. canonical(v) .. "}"
          end
          local last = ls[i]
          local r = by_key[key]
          if not r then
            new_result(t, key, { [name] = v }, last)
          elseif last > r.last then
            r.last = last
          end
        end
      end
    end
    local function walk(node, ds, ls)
      if #ds == 0 then return end
      for _, t in ipairs(node.terminals) do
        if view == nil or t.view == view then
          local id = t.identifier
          if id.kind == "fields" and #id.fields == 1 then
            add_one_field(t, ds, ls)
          elseif id.kind == "fields" then
            local key_of = key_maker(t)
            for i = 1, #ds do
              local ident = field_identifier(id, ds[i], log)
              if ident then add(t, key_of(ident), ident, ls[i]) end
            end
          else
            local key_of = key_maker(t)
            local lists = custom_identifiers(id, ds, db, log, stats)
            for i = 1, #ds do
              for _, ident in ipairs(lists[i]) do add(t, key_of(ident), ident, ls[i]) end
            end
          end
        end
      end
      for _, child in ipairs(node.children) do
        if view == nil or child.views[view] then
          walk(child, run_hop(child, ds, ls, db, stats))
        end
      end
    end
    walk(root, root_docs, root_lasts)
  end
  -- In discovery order; the origin is the latest document: applying them one by
  -- one, the last that leads to a single view is the one its change ends up naming.
  for _, r in ipairs(results) do
    r.origin = docs[r.last].origin
    r.last = nil
  end
  if plan.stats then
    for k, n in pairs(stats) do plan.stats[k] = (plan.stats[k] or 0) + n end
  end
  return results, stats, keys
end

function M.as_function(plan, projection, view)
  return function(document, db, log)
    local out = {}
    for _, r in ipairs(M.run(plan, projection, { { doc = document } }, db, log, view)) do
      out[#out + 1] = r.identifier
    end
    return out
  end
end

return M
