--[[
rtu.changes: from the documents of a projection changed in a run to the single
views to rebuild. It binds the two strategy modes of the reference: low-code
(USE_AUTOMATIC_STRATEGIES=true: erSchema.json + projectionChangesSchema.json,
compiled by rtu.lowcode and run batched by rtu.strategy) and manual (mapTable.json
`changes`: a hand-written strategy per single view, called once per document, the
calls of one binding batched by rtu.strategy.call_batched so that their lookups
share queries). It may
not write anything: lookups go through the read-only `db` the core gives.

build(spec) -> identify, involved, pure | nil, problems
  spec = { automatic = bool, er = table, pc = table, projections = {name = true},
           collections = {name -> MongoDB collection},
           custom = {name -> fn}, manual = {projection -> { {sv = name, name = file, fn = fn} } } }
  identify(projection, docs, db, log [, seen]) -> { {type, identifier, origin} ... }
    docs = { {doc = table, origin = token} ... }, the earliest first: a single view
    found from several documents keeps the origin of the last (applying them one
    by one, the last is the one its projection change names), in the order first
    found. Results are de-duplicated per (type, identifier), also against `seen` (a
    table the caller keeps across calls, so documents run one call each still give
    each once).
  involved = {projection -> true | {field, ...}} for projections that can trigger any
    single view; a list (low-code only) names the only top-level fields identify
    reads from their documents, so the core hands over just those
  pure = {projection -> true} for projections whose identify runs no user code
    (low-code walks without a custom function, rtu.strategy.pure)
]]
local jsonenc = require("rtu.jsonenc")
local strategy = require("rtu.strategy")

local M = {}

local function check_identifiers(ids, what)
  if type(ids) ~= "table" then
    error(what .. " returned a " .. type(ids) .. " instead of an array of identifiers", 0)
  end
  for i, id in ipairs(ids) do
    if type(id) ~= "table" then
      error(string.format("%s returned a %s as identifier %d (expected an object)", what,
        type(id), i), 0)
    end
  end
  return ids
end

-- The results not in seen (which they are added to), in order; a result found
-- again later in the same call takes the later origin.
local function keep_new(results, seen)
  local out, here = {}, {}
  for _, r in ipairs(results) do
    local k = r.type .. "\0" .. jsonenc.encode(r.identifier)
    if here[k] then
      here[k].origin = r.origin
    elseif not seen[k] then
      seen[k] = true
      here[k] = r
      out[#out + 1] = r
    end
  end
  return out
end

-- keep_new for results already distinct (rtu.strategy.run's), keys[i] the key of
-- results[i] (its canonical encoding, computed there anyway: not encoded again).
local function keep_new_distinct(results, seen, keys)
  local out = {}
  for i, r in ipairs(results) do
    local k = keys[i]
    if not seen[k] then
      seen[k] = true
      out[#out + 1] = r
    end
  end
  return out
end

local function build_manual(spec)
  local involved = {}
  for projection, bindings in pairs(spec.manual or {}) do
    if #bindings > 0 then involved[projection] = true end
  end
  -- A binding's strategy runs for all the documents at once (rtu.strategy's
  -- call_batched): the lookups of one step of every call share one query.
  local function identify(projection, docs, db, log, seen)
    local out = {}
    local args = { n = #docs }
    for i, d in ipairs(docs) do args[i] = d.doc end
    for _, b in ipairs(spec.manual[projection] or {}) do
      local what = "strategy " .. b.name
      local lists = strategy.call_batched(function(doc, bdb, blog)
        return check_identifiers(b.fn(doc, bdb, blog), what)
      end, args, db, log)
      for i, d in ipairs(docs) do
        for _, id in ipairs(lists[i]) do
          out[#out + 1] = { type = b.sv, identifier = id, origin = d.origin }
        end
      end
    end
    return keep_new(out, seen or {})
  end
  return identify, involved, {}
end

local function build_automatic(spec)
  local lowcode = require("rtu.lowcode")
  local plan, problems = lowcode.compile(spec.er, spec.pc,
    { projections = spec.projections, custom = spec.custom, collections = spec.collections })
  if problems and #problems > 0 then return nil, problems end
  local involved, pure = {}, {}
  for name in pairs(spec.projections) do
    if plan.routes[name] ~= nil then
      involved[name] = strategy.root_fields(plan, name) or true
      pure[name] = strategy.pure(plan, name) or nil
    end
  end
  local function identify(projection, docs, db, log, seen)
    local results, _, keys = strategy.run(plan, projection, docs, db, log)
    return keep_new_distinct(results, seen or {}, keys)
  end
  return identify, involved, pure
end

function M.build(spec)
  if spec.automatic then return build_automatic(spec) end
  return build_manual(spec)
end

return M
