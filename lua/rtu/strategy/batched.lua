--[[
rtu.strategy.batched: hand-written strategy functions run for many documents with
their lookups merged, one round trip per round instead of one per document.

call(fn, args, db, log [, stats]) -> { fn(args[1], db', log), ... }
  one result per arg (args.n or #args of them, nil args included), in order: what
  calling fn on each arg one after the other gives, but with the lookups of all the
  calls merged. Each call runs in its own coroutine of this module's coroutine
  library (the trusted one); db' is a proxy: db':find / db':findOne from that
  coroutine, where it can yield, with no options (nil or {}) and a filter the
  matcher judges as MongoDB does (scalar or date values, $eq $ne $gt $gte $lt $lte
  $in $nin $exists, $or $and $nor of such, on top-level fields), yields the request
  to the driver. Any other lookup (options, $regex, embedded objects, dotted paths,
  the function's own coroutines, a callback of C such as a table.sort comparator)
  is the real call at once. The driver resumes every call, then per round and
  collection: identical filters asked once; one filter -> the call as it is;
  several -> ONE db:find of {f: {$in: [...]}, <shared fields>} when they differ
  only in the plain scalar value of field f, else {$or: [...]} (at most 1000
  filters a query); each request gets back the documents of the result that match
  its filter (found through the result index and the matcher), in result order,
  findOne the first or nil; a document asked by several gets a copy each. When a
  result document matches no request (the server and the matcher disagree), that
  query's requests run again one by one. A failing db call is raised where the
  function called db (its pcall sees it). The error of the first call (in args
  order) that raises is raised again, value preserved (error(e, 0)), calls after
  it not continued; a yield that is not a lookup raises as yielding outside a
  coroutine does. The time limit reaches the calls: coroutines inherit the count
  hook, and the core tells a timeout by its flag, not by the error value.
  stats.queries counts the real db calls (merged, direct, reruns).

Owns: the coroutine driver and the merging of lookups. May not touch: I/O, os,
globals, any module but rtu.value and rtu.strategy.*; the db but through find and
findOne.
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")
local results_of = require("rtu.strategy.results")

local null, array, date = value.null, value.array, value.date
local is_list, is_array, is_date = value.is_list, value.is_array, value.is_date
local canonical = match.canonical
local result_index, attribute = results_of.result_index, results_of.attribute
local M = {}

-- The trusted runtime's coroutine library, taken when the core loads this module
-- (before any script runs): a script cannot replace what the driver relies on.
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_running, co_yieldable, co_yield = coroutine.running, coroutine.isyieldable,
  coroutine.yield

local MAX_MERGED = 1000 -- filters in one merged query; more are split
local REQUEST = {}      -- marks a yield of the proxy db (a script cannot make one)

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
  if is_date(v) then return date(v.ms) end
  local out = {}
  for k, x in pairs(v) do out[k] = clone(x) end
  if is_array(v) then array(out) end
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
      if first[k] == nil then return { ["$or"] = array(filters) } end
      n = n + 1
    end
    if n ~= nkeys then return { ["$or"] = array(filters) } end
  end
  local differ
  for _, k in ipairs(keys) do
    local c = canonical(first[k])
    for i = 2, #filters do
      if canonical(filters[i][k]) ~= c then
        if differ or k:sub(1, 1) == "$" then return { ["$or"] = array(filters) } end
        differ = k
        break
      end
    end
  end
  local vals = {}
  for i, f in ipairs(filters) do
    if not plain_scalar(f[differ]) then return { ["$or"] = array(filters) } end
    vals[i] = f[differ]
  end
  local out = {}
  for k, v in pairs(first) do out[k] = v end
  out[differ] = { ["$in"] = array(vals) }
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

function M.call(fn, args, db, log, stats)
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

return M
