--[[
rtu.strategy: runs a low-code plan (rtu.lowcode) for all the documents of one
projection changed in a batch, with one lookup per hop for the whole batch.

run(plan, projection, docs, db, log [, view]) -> results, stats
  docs     { {doc = <projection document after the write>, origin = <opaque>} ... },
           every document of `projection` changed in the batch, in batch order.
  db       db:find(collection, filter, options) -> array of documents (read-only).
  log      log.debug(msg, fields) etc.; may be nil.
  view     optional: only this single view (used by as_function).
  results  { {type = <single view>, identifier = {...}, origin = <token>} ... },
           one per (type, identifier) (compared by canonical encoding), origin of
           the latest document of `docs` that leads to it; in discovery order.
  stats    { queries = <db:find calls issued>, custom_calls, documents = <documents
           reached by lookups> }; also added to plan.stats.
Walk: the plan's route tree for `projection`; at each hop A -> B the current
documents are turned into ONE filter over B's collection, __STATE__: "PUBLIC" added:
  - a named condition {B_f: A_f}       -> {B_f: {$in: [distinct non-null A_f values]}}
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
array of identifier objects (nil = none), called once per base document reached.
Errors of db:find or of a custom function propagate (the batch fails).

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

local function canonical(v)
  local t = type(v)
  if t == "string" then return "s" .. #v .. ":" .. v end
  if t == "number" then
    local i = math.tointeger(v)
    if i then return "n" .. i end
    return "n" .. string.format("%.17g", v)
  end
  if t == "boolean" then return v and "bt" or "bf" end
  if v == null or v == nil then return "z" end
  if value.is_date(v) then return "d" .. v.ms end
  if t == "table" then
    local out = {}
    if is_list(v) then
      for i = 1, #v do out[i] = canonical(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    for _, k in ipairs(sorted_keys(v)) do
      out[#out + 1] = canonical(k) .. "=" .. canonical(v[k])
    end
    return "{" .. table.concat(out, ",") .. "}"
  end
  return "?" .. tostring(v)
end
M.canonical = canonical

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

local function instantiate_or(node, doc)
  local parts, seen = {}, {}
  for _, sub in ipairs(node.list) do
    local f = instantiate(sub, doc)
    if f ~= false then
      if next(f) == nil then return {} end
      local key = canonical(f)
      if not seen[key] then
        seen[key] = true
        parts[#parts + 1] = f
      end
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

-- (field, value) pairs one of which any document matching f must equal: used to
-- pick candidates from the lookup result instead of matching every pair.
local function anchors(f, out)
  for k, v in pairs(f) do
    if type(k) == "string" and k:sub(1, 1) ~= "$" then
      if not is_opobj(v) then
        if v ~= null then out[#out + 1] = { k, v }; return true end
      elseif v["$eq"] ~= nil and v["$eq"] ~= null then
        out[#out + 1] = { k, v["$eq"] }
        return true
      elseif v["$in"] then
        local ok = true
        for _, x in ipairs(v["$in"]) do
          if x == null then ok = false end
        end
        if ok then
          for _, x in ipairs(v["$in"]) do out[#out + 1] = { k, x } end
          return true
        end
      end
    end
  end
  if f["$and"] then
    for _, sub in ipairs(f["$and"]) do
      local tmp = {}
      if anchors(sub, tmp) then
        table.move(tmp, 1, #tmp, #out + 1, out)
        return true
      end
    end
  end
  if f["$or"] then
    local tmp = {}
    for _, sub in ipairs(f["$or"]) do
      if not anchors(sub, tmp) then return false end
    end
    table.move(tmp, 1, #tmp, #out + 1, out)
    return true
  end
  return false
end

---------------------------------------------------------------------------------
-- one hop for a whole batch

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

local function build_filter(hop, items)
  local parts, seen = {}, {}
  local per_item = {}
  for i = 1, #items do per_item[i] = {} end
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
    if c.simple then
      local vals, vseen = {}, {}
      for i, it in ipairs(items) do
        local v = get(it.doc, c.simple.src)
        if v ~= nil and v ~= null then
          per_item[i][ci] = eq_filter(c.simple.field, v)
          local key = canonical(v)
          if not vseen[key] then
            vseen[key] = true
            vals[#vals + 1] = v
          end
        end
      end
      if #vals > 0 then add({ [c.simple.field] = { ["$in"] = value.array(vals) } }) end
    else
      for i, it in ipairs(items) do
        local f = instantiate(c.node, it.doc)
        if f then
          per_item[i][ci] = f
          add(f)
        end
      end
    end
  end
  if everything then return { __STATE__ = "PUBLIC" }, per_item end
  if #parts == 0 then return nil, per_item end
  local filter = (#parts == 1) and copy(parts[1]) or { ["$or"] = value.array(parts) }
  if filter.__STATE__ ~= nil then
    return { ["$and"] = value.array({ filter, { __STATE__ = "PUBLIC" } }) }, per_item
  end
  filter.__STATE__ = "PUBLIC"
  return filter, per_item
end

-- Positions of `results` matching f, ascending, at most `limit`.
local function attribute(results, index_of, f, limit)
  local cands
  local anch = {}
  if anchors(f, anch) then
    local set = {}
    cands = {}
    for _, a in ipairs(anch) do
      for _, p in ipairs(index_of(a[1])[canonical(a[2])] or {}) do
        if not set[p] then
          set[p] = true
          cands[#cands + 1] = p
        end
      end
    end
    table.sort(cands)
  end
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

local function run_hop(hop, items, db, stats)
  local filter, per_item = build_filter(hop, items)
  if not filter then return {} end
  stats.queries = stats.queries + 1
  local results = db:find(hop.collection, filter, nil) or {}

  local indexes = {}
  local function index_of(field)
    local idx = indexes[field]
    if idx then return idx end
    idx = {}
    local function put(key, p)
      local list = idx[key]
      if not list then idx[key] = { p }
      elseif list[#list] ~= p then list[#list + 1] = p end
    end
    for p, r in ipairs(results) do
      local v = get(r, field)
      if v ~= nil then
        put(canonical(v), p)
        if is_list(v) then
          for _, e in ipairs(v) do put(canonical(e), p) end
        end
      end
    end
    indexes[field] = idx
    return idx
  end

  local reached = {}
  for i, it in ipairs(items) do
    for ci, c in ipairs(hop.conditions) do
      local f = per_item[i][ci]
      if f then
        for _, p in ipairs(attribute(results, index_of, f, c.one_to_many and math.huge or 1)) do
          local r = reached[p]
          if not r then
            reached[p] = { doc = results[p], last = it.last }
          elseif it.last > r.last then
            r.last = it.last
          end
        end
      end
    end
  end
  local next_items = {}
  for p = 1, #results do
    if reached[p] then next_items[#next_items + 1] = reached[p] end
  end
  stats.documents = stats.documents + #next_items
  return next_items
end

---------------------------------------------------------------------------------
-- identifiers and the walk

local function debug(log, msg, fields)
  if log and log.debug then log.debug(msg, fields) end
end

local function identifiers(id, doc, db, log, stats)
  if id.kind == "fields" then
    local out = {}
    for _, f in ipairs(id.fields) do
      local v = get(doc, f.field)
      if v == nil or v == null then
        debug(log, "low-code identifier skipped: base document has no " .. f.field,
          { field = f.field })
        return {}
      end
      out[f.key] = v
    end
    return { out }
  end
  if type(id.fn) ~= "function" then
    error("custom identifier function '" .. id.name .. "' is not loaded", 0)
  end
  stats.custom_calls = stats.custom_calls + 1
  local list = id.fn(doc, db, log)
  if list == nil then return {} end
  if type(list) ~= "table" then
    error(string.format("custom identifier function '%s' returned %s, expected an array of "
      .. "identifier objects", id.name, type(list)), 0)
  end
  for i, x in ipairs(list) do
    if not is_object(x) or next(x) == nil then
      error(string.format("custom identifier function '%s': element %d is not an identifier "
        .. "object", id.name, i), 0)
    end
  end
  return list
end

function M.run(plan, projection, docs, db, log, view)
  local stats = { queries = 0, custom_calls = 0, documents = 0 }
  local results, by_key = {}, {}
  local root = plan.routes[projection]
  if root and (view == nil or root.views[view]) then
    local items = {}
    for i, d in ipairs(docs) do
      if d.doc ~= nil then items[#items + 1] = { doc = d.doc, last = i } end
    end
    local function walk(node, its)
      if #its == 0 then return end
      for _, t in ipairs(node.terminals) do
        if view == nil or t.view == view then
          for _, it in ipairs(its) do
            for _, ident in ipairs(identifiers(t.identifier, it.doc, db, log, stats)) do
              local key = t.view .. "\0" .. canonical(ident)
              local r = by_key[key]
              if not r then
                r = { type = t.view, identifier = ident, last = it.last }
                by_key[key] = r
                results[#results + 1] = r
              elseif it.last > r.last then
                r.last = it.last
              end
            end
          end
        end
      end
      for _, child in ipairs(node.children) do
        if view == nil or child.views[view] then
          walk(child, run_hop(child.hop, its, db, stats))
        end
      end
    end
    walk(root, items)
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
  return results, stats
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
