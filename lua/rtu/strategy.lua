--[[
rtu.strategy: runs a low-code plan (rtu.lowcode) for all the documents of one
projection changed in a batch, with one lookup per hop for the whole batch, and
hand-written functions for many documents with their lookups merged likewise.
The parts: rtu.strategy.match (values and the matcher), .conditions (a condition
-> a filter), .results (which result documents answer which filter), .hop (one
hop for a batch), .batched (hand-written functions); here the walk.

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
Walk: the plan's route tree for `projection`; each hop A -> B turns the current
documents into ONE filter over B's collection and gives each returned document to
the documents that asked for it (rtu.strategy.hop). A route with no hop (the base
projection itself) builds the identifier from the changed document without any
lookup.
Identifiers: {key = base field}: a base document missing one of the fields gives
no identifier (logged at debug); "__fromFile__[name]": custom(baseDoc, db, log) ->
array of identifier objects (nil = none), called once per base document reached,
all the documents of a terminal at once through call_batched. Errors of db:find or
of a custom function propagate (the batch fails).

root_fields(plan, projection) -> {field, ...} | nil
  the top-level fields run reads from the documents of `projection` (sorted), nil
  when a custom identifier function gets them whole: the core passes only these.
pure(plan, projection) -> true when the walk for `projection` calls no custom
  identifier function (only this runtime's code runs: the core runs it without
  the time limit's hook, as it maps messages with the shipped runtime).
as_function(plan, projection, view) -> function(document, db, log) -> {identifier...}
  the low-code plan in the form of a hand-written strategy.
call_batched   rtu.strategy.batched.call
matches        rtu.strategy.match.matches (used to attribute results, and by specs)
canonical      rtu.strategy.match.canonical
instantiate    rtu.strategy.conditions.instantiate

Owns: executing plans. May not touch: I/O, os, globals, writes to MongoDB, any
module but rtu.*.
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")
local conditions = require("rtu.strategy.conditions")
local hop = require("rtu.strategy.hop")
local batched = require("rtu.strategy.batched")

local null = value.null
local is_object = value.is_object
local canonical, string_heads, get = match.canonical, match.string_heads, match.get
local fields_of, run_hop = conditions.fields, hop.run
local call_batched = batched.call
local M = {
  call_batched = call_batched,
  matches = match.matches,
  canonical = canonical,
  instantiate = conditions.instantiate,
}

-- identifiers

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
  return call_batched(checked(id), docs, db, log, stats)
end

local key_makers = setmetatable({}, { __mode = "k" }) -- terminal -> function

-- key_of(ident) -> t.view .. "\0" .. canonical(ident), the de-duplication key of
-- the terminal's identifiers. For a fields identifier the keys are known, so the
-- encoding of each key (in canonical()'s order) is built once per terminal and only
-- the values are encoded per identifier, not whole identifiers. (A one-field
-- identifier does not come here: see run.)
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
-- custom identifier function gets them whole: the core loads only these into Lua.
function M.root_fields(plan, projection)
  local root = plan.routes[projection]
  if not root then return {} end
  local set = {}
  for _, t in ipairs(root.terminals) do
    if t.identifier.kind ~= "fields" then return nil end
    for _, f in ipairs(t.identifier.fields) do set[f.field] = true end
  end
  for _, child in ipairs(root.children) do
    for _, c in ipairs(child.hop.conditions) do fields_of(c.node, "src", set) end
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

function M.pure(plan, projection)
  local function pure(node)
    for _, t in ipairs(node.terminals) do
      if t.identifier.kind ~= "fields" then return false end
    end
    for _, child in ipairs(node.children) do
      if not pure(child) then return false end
    end
    return true
  end
  local root = plan.routes[projection]
  return root ~= nil and pure(root)
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
            key = head .. (string_heads[#v] or ("s" .. #v .. ":")) .. v .. "}"
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