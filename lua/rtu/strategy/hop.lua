--[[
rtu.strategy.hop: one hop of the low-code walk for a whole batch: ONE lookup over
the target collection for all the current documents, its result given back to the
documents that asked for it.

run(node, docs, lasts, db, stats) -> next_docs, next_lasts
  node   a route node of the plan (rtu.lowcode), reached through node.hop.
  docs   the current documents; lasts[i] the position (in the changed documents of
         the run) of the latest document leading to docs[i].
  The filter: for each condition, a named one {B_f: A_f} (constants beside it, as
  {B_f: A_f, B_g: {$ne: "X"}}, stay beside the $in) -> {B_f: {$in: [distinct
  non-null A_f values]}}; any other -> one filter per document, de-duplicated;
  several parts -> {$or: [...]}; __STATE__: "PUBLIC" added; a projection of the
  fields the walk reads (see projection_of). Each result document is attributed to
  the documents whose own filter it matches, keeping the first match in the db's
  order per document and condition when oneToMany is false. next_docs are the
  documents reached, in the db's order, each with the latest of the lasts of the
  documents reaching it. stats.queries and stats.documents are added to.

Owns: building a hop's lookup and attributing its result. May not touch: I/O, os,
globals, any module but rtu.value and rtu.strategy.*. Its only side effect is the
db:find it issues.
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")
local conditions = require("rtu.strategy.conditions")
local results_of = require("rtu.strategy.results")

local null, array = value.null, value.array
local canonical, get, vkey, matches = match.canonical, match.get, match.vkey, match.matches
local instantiate, fields_of = conditions.instantiate, conditions.fields
local result_index, attribute = results_of.result_index, results_of.attribute
local M = {}

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
  local part = { [simple.field] = { ["$in"] = array(vals) } }
  if next(rest) == nil then return part end
  if rest[simple.field] ~= nil then return { ["$and"] = array({ part, rest }) } end
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
  local filter = (#parts == 1) and copy(parts[1]) or { ["$or"] = array(parts) }
  if filter.__STATE__ ~= nil then
    return { ["$and"] = array({ filter, { __STATE__ = "PUBLIC" } }) }, per_item, simple
  end
  filter.__STATE__ = "PUBLIC"
  return filter, per_item, simple
end

local projections = setmetatable({}, { __mode = "k" }) -- node -> projection | false

-- The projection of the lookup reaching `node`: only the fields its documents are
-- read for (the hop's target fields, to attribute them; the node's identifier
-- fields; its children's source fields), so that the rest of the documents is
-- neither sent nor converted into Lua. nil (whole documents) when a custom
-- identifier function gets them.
local function projection_of(node)
  local proj = projections[node]
  if proj ~= nil then return proj or nil end
  local set = {}
  for _, c in ipairs(node.hop.conditions) do fields_of(c.node, "field", set) end
  for _, t in ipairs(node.terminals) do
    if t.identifier.kind ~= "fields" then
      projections[node] = false
      return nil
    end
    for _, f in ipairs(t.identifier.fields) do set[f.field] = true end
  end
  for _, child in ipairs(node.children) do
    for _, c in ipairs(child.hop.conditions) do fields_of(c.node, "src", set) end
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
function M.run(node, docs, lasts, db, stats)
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

return M
