--[[
rtu.strategy.conditions: a hop's condition (the AST of rtu.lowcode) turned into
the MongoDB filter one source document asks of the target collection.

instantiate(node, doc) -> filter | {} | false
  the filter of condition `node` for source document doc: {} for "any document",
  false when nothing can match (a source value missing or null links nothing, as
  SQL's NULL: a null foreign key must not match every record whose key is null).
  A document value is compared with $eq, never spliced in as a query object; the
  branches of an $or that come out equal are asked once.
fields(node, side, set)
  adds to set the target fields (side "field") or the source fields (side "src")
  the condition reads.

Owns: conditions to filters. May not touch: I/O, os, globals, any module but
rtu.value and rtu.strategy.match. Pure: no state but weak caches keyed by the
plan's nodes.
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")

local null = value.null
local is_list, is_object, array = value.is_list, value.is_object, value.array
local canonical, get = match.canonical, match.get
local M = {}

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
      if #vals > 0 then arg = array(vals) end
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
      if merged[k] ~= nil then return { ["$and"] = array(parts) } end
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
  -- each branch's filter is encoded to be compared only when two may be equal
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
  return { ["$or"] = array(parts) }
end

-- A compiled condition for one source document: a MongoDB filter, {} for "any
-- document", or false when nothing can match.
function instantiate(node, doc)
  if node.k == "field" then return instantiate_field(node, doc) end
  if node.k == "or" then return instantiate_or(node, doc) end
  return instantiate_and(node, doc)
end
M.instantiate = instantiate

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
M.fields = condition_fields

return M
