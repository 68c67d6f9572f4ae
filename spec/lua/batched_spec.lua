--[[
Specs of rtu.strategy.call_batched: hand-written functions run for many documents
at once, their lookups of one round merged into one query per collection, with the
answers each call would have had alone.
]]
local value = require("rtu.value")
local strategy = require("rtu.strategy")

local null = value.null

local function copy(v)
  if type(v) ~= "table" or value.is_date(v) then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  if value.is_array(v) then value.array(out) end
  return out
end

-- {field = {$regex = p}} as MongoDB would (the matcher does not know $regex).
local function regex_match(d, filter)
  for k, v in pairs(filter) do
    if type(v) == "table" and v["$regex"] then
      return type(d[k]) == "string" and d[k]:find(v["$regex"]) ~= nil
    end
  end
  return nil
end

-- A fake db: collections in insertion order, find evaluated with the matcher (or
-- `extra` documents appended to every merged answer), every call recorded; like the
-- real one it gives fresh tables.
local function fake_db(collections, opts)
  opts = opts or {}
  local db = { calls = {}, collections = collections }
  function db:find(coll, filter, options)
    self.calls[#self.calls + 1] = { coll = coll, filter = filter, options = options, kind = "find" }
    if opts.fail then error(opts.fail, 0) end
    local out = {}
    for _, d in ipairs(self.collections[coll] or {}) do
      local r = regex_match(d, filter or {})
      if r == nil then r = filter == nil or strategy.matches(d, filter) end
      if r then out[#out + 1] = copy(d) end
    end
    if options and options.limit then
      for i = #out, options.limit + 1, -1 do out[i] = nil end
    end
    if opts.extra and (filter["$or"] or next(filter, next(filter)) == nil) then
      out[#out + 1] = copy(opts.extra)
    end
    return out
  end
  function db:findOne(coll, filter, options)
    local out = self:find(coll, filter, options)
    self.calls[#self.calls].kind = "findOne"
    return out[1]
  end
  return db
end

local WORLD = {
  orders = {
    { ID_ORDER = 1, ID_USER = "u1", STATE = "PUBLIC", TAGS = value.array({ "a", "b" }) },
    { ID_ORDER = 2, ID_USER = "u2", STATE = "PUBLIC", TAGS = value.array({ "b" }) },
    { ID_ORDER = 3, ID_USER = "u1", STATE = "DELETED" },
    { ID_ORDER = 4, ID_USER = "u3", STATE = "PUBLIC", AT = value.date(1000) },
    { ID_ORDER = 5, ID_USER = "u2", STATE = "PUBLIC", TAGS = value.array({ "c", "a" }) },
  },
  users = {
    { ID_USER = "u1", NAME = "Ada" }, { ID_USER = "u2", NAME = "Bob" }, { ID_USER = "u3", NAME = "Cy" },
  },
}

-- fn run on each doc alone with its own fake db, and batched: same results.
local function both(fn, docs, opts)
  local alone_db = fake_db(WORLD)
  local alone = {}
  for i, d in ipairs(docs) do alone[i] = fn(d, alone_db, nil) end
  local db = fake_db(WORLD, opts)
  local stats = { queries = 0 }
  local batched = strategy.call_batched(fn, docs, db, nil, stats)
  assert.are.same(alone, batched)
  assert.are.equal(#db.calls, stats.queries)
  return batched, db, #alone_db.calls
end

describe("rtu.strategy.call_batched", function()
  it("costs one query per round for N documents doing one findOne each", function()
    local docs = {}
    for i = 1, 40 do docs[i] = { ID_ORDER = i % 6 } end
    local res, db, alone = both(function(doc, db)
      local o = db:findOne("orders", { ID_ORDER = doc.ID_ORDER, STATE = "PUBLIC" })
      return o and o.ID_USER or "none"
    end, docs)
    assert.are.equal(40, alone)
    assert.are.equal(1, #db.calls)
    assert.are.same({ ["$in"] = { 1, 2, 3, 4, 5, 0 } }, db.calls[1].filter.ID_ORDER)
    assert.are.equal("PUBLIC", db.calls[1].filter.STATE)
    assert.are.equal("u1", res[1])
    assert.are.equal("none", res[3])  -- order 3 is DELETED
    assert.are.equal("none", res[6])  -- no order 0: findOne gives nil
  end)

  it("costs two queries for two dependent findOnes, whatever N", function()
    local docs = {}
    for i = 1, 25 do docs[i] = { ID_ORDER = i % 5 + 1 } end
    local res, db = both(function(doc, db)
      local o = db:findOne("orders", { ID_ORDER = doc.ID_ORDER })
      local u = db:findOne("users", { ID_USER = o.ID_USER })
      return { { NAME = u.NAME } }
    end, docs)
    assert.are.equal(2, #db.calls)
    assert.are.same({ "orders", "users" }, { db.calls[1].coll, db.calls[2].coll })
    assert.are.same({ { NAME = "Bob" } }, res[1])
  end)

  it("merges filters of different shapes into one $or", function()
    local docs = { { k = "id", v = 2 }, { k = "user", v = "u1" }, { k = "id", v = 4 }, { k = "at", v = 1000 } }
    local res, db = both(function(doc, db)
      local f
      if doc.k == "id" then f = { ID_ORDER = doc.v }
      elseif doc.k == "user" then f = { ID_USER = doc.v, STATE = { ["$ne"] = "DELETED" } }
      else f = { AT = { ["$gte"] = value.date(doc.v) } } end
      local ids = {}
      for _, o in ipairs(db:find("orders", f)) do ids[#ids + 1] = o.ID_ORDER end
      return ids
    end, docs)
    assert.are.equal(1, #db.calls)
    assert.are.equal(4, #db.calls[1].filter["$or"])
    assert.are.same({ { 2 }, { 1 }, { 4 }, { 4 } }, res)
  end)

  it("gives documents with array fields to each filter naming one of their elements", function()
    local res, db = both(function(doc, db)
      local ids = {}
      for _, o in ipairs(db:find("orders", { TAGS = doc.tag })) do ids[#ids + 1] = o.ID_ORDER end
      return ids
    end, { { tag = "a" }, { tag = "b" }, { tag = "z" }, { tag = "c" } })
    assert.are.equal(1, #db.calls)
    assert.are.same({ { 1, 5 }, { 1, 2 }, {}, { 5 } }, res)
  end)

  it("gives a document once to a filter naming an element its array field holds twice", function()
    local db = fake_db({ tags = {
      { ID = 1, TAGS = value.array({ "a", "a" }) }, { ID = 2, TAGS = value.array({ "b", "a", "b" }) },
      { ID = 3, TAGS = "a" }, { ID = 4, TAGS = value.array({ "a", "a" }) },
    } })
    local res = strategy.call_batched(function(doc, bdb)
      local ids = {}
      for _, o in ipairs(bdb:find("tags", { TAGS = doc.tag })) do ids[#ids + 1] = o.ID end
      return ids
    end, { { tag = "a" }, { tag = "b" } }, db)
    assert.are.equal(1, #db.calls)
    assert.are.same({ { 1, 2, 3, 4 }, { 2 } }, res)
  end)

  it("gives each merged filter the documents its values pick, of any kind, null as MongoDB", function()
    local things = {
      { ID = 1, V = "a", W = 1 }, { ID = 2, V = 1, W = 1 }, { ID = 3, V = 1.0, W = 2 },
      { ID = 4, V = true, W = 1 }, { ID = 5, V = value.date(5), W = 1 },
      { ID = 6, V = value.array({ "a", 1 }), W = 1 }, { ID = 7, V = null, W = 1 }, { ID = 8, W = 1 },
      { ID = 9, V = "1", W = 1 }, { ID = 10, V = 1, W = 2 },
    }
    local function fn(doc, bdb)
      local ids = {}
      for _, o in ipairs(bdb:find("things", { V = doc.v, W = doc.w })) do ids[#ids + 1] = o.ID end
      return ids
    end
    local docs = { { v = "a", w = 1 }, { v = 1, w = 2 }, { v = 1.0, w = 1 }, { v = true, w = 1 },
      { v = value.date(5), w = 1 }, { v = "1", w = 1 }, { v = null, w = 1 }, { v = false, w = 1 } }
    local alone, alone_db = {}, fake_db({ things = things })
    for i, d in ipairs(docs) do alone[i] = fn(d, alone_db) end
    local db = fake_db({ things = things })
    assert.are.same(alone, strategy.call_batched(fn, docs, db))
    assert.are.equal(1, #db.calls)
    assert.are.same({ 7, 8 }, alone[7])
  end)

  it("asks duplicate filters once and gives each caller its own copy", function()
    local res, db = both(function(doc, db)
      local o = db:findOne("orders", { ID_ORDER = 1 })
      o.SEEN = doc.n -- a function changing what it got must not change another's
      local all = db:find("orders", { ID_ORDER = 1 })
      return { o.SEEN, #all, all[1].SEEN }
    end, { { n = 1 }, { n = 2 }, { n = 3 } })
    assert.are.same({ { 1, 1, nil }, { 2, 1, nil }, { 3, 1, nil } }, res)
    assert.are.equal(2, #db.calls) -- one findOne round, one find round, each filter asked once
    assert.are.equal("findOne", db.calls[1].kind)
  end)

  it("keeps the null and missing fields semantics of MongoDB", function()
    local world = { users = { { ID_USER = "u1", EMAIL = null }, { ID_USER = "u2" },
      { ID_USER = "u3", EMAIL = "c@x" } } }
    local fn = function(doc, db)
      local out = {}
      for _, u in ipairs(db:find("users", doc)) do out[#out + 1] = u.ID_USER end
      return out
    end
    local docs = { { EMAIL = null }, { EMAIL = { ["$exists"] = false } }, { EMAIL = { ["$ne"] = null } },
      { EMAIL = { ["$in"] = { null, "c@x" } } } }
    local db = fake_db(world)
    assert.are.same({ { "u1", "u2" }, { "u2" }, { "u3" }, { "u1", "u2", "u3" } },
      strategy.call_batched(fn, docs, db))
    assert.are.equal(1, #db.calls)
  end)

  it("runs requests with options, unmergeable filters or outside its coroutine directly", function()
    local fn = function(doc, db)
      if doc.how == "options" then
        return db:find("orders", { ID_USER = "u2" }, { limit = 1 })[1].ID_ORDER
      elseif doc.how == "regex" then
        return #db:find("orders", { ID_USER = { ["$regex"] = "^u" } }, nil)
      elseif doc.how == "embedded" then
        return #db:find("orders", { ID_ORDER = { ["$in"] = { { x = 1 } } } })
      elseif doc.how == "dotted" then
        return #db:find("orders", { ["ADDR.CITY"] = "Milano" })
      elseif doc.how == "own coroutine" then
        local co = coroutine.wrap(function() return db:findOne("orders", { ID_ORDER = 4 }).ID_USER end)
        return co()
      elseif doc.how == "sort" then
        local ids = { 5, 1, 2 }
        table.sort(ids, function(a, b)
          return db:findOne("orders", { ID_ORDER = a }).ID_USER < db:findOne("orders", { ID_ORDER = b }).ID_USER
            or (a < b and db:findOne("orders", { ID_ORDER = a }).ID_USER == db:findOne("orders", { ID_ORDER = b }).ID_USER)
        end)
        return ids
      elseif doc.how == "gsub" then
        return (("1,2"):gsub("%d", function(d) return db:findOne("orders", { ID_ORDER = tonumber(d) }).ID_USER end))
      end
      return db:findOne("orders", { ID_ORDER = doc.id }).ID_USER
    end
    local db = fake_db(WORLD)
    local res = strategy.call_batched(fn, { { how = "options" }, { how = "regex" }, { how = "embedded" },
      { how = "own coroutine" }, { how = "sort" }, { how = "gsub" }, { how = "dotted" }, { id = 1 }, { id = 2 } }, db)
    assert.are.same({ 2, 5, 0, "u3", { 1, 2, 5 }, "u1,u2", 0, "u1", "u2" }, res)
    local dotted = 0
    for _, c in ipairs(db.calls) do
      if c.filter["ADDR.CITY"] then dotted = dotted + 1 end
    end
    assert.are.equal(1, dotted) -- asked alone, not merged
    local merged = 0
    for _, c in ipairs(db.calls) do
      if c.filter.ID_ORDER and type(c.filter.ID_ORDER) == "table" and c.filter.ID_ORDER["$in"]
          and #c.filter.ID_ORDER["$in"] == 2 and c.filter.ID_ORDER["$in"][1] == 1 then
        merged = merged + 1
      end
    end
    assert.are.equal(1, merged) -- the two plain calls still share one query
    assert.are.equal(1, db.calls[1].options.limit)
  end)

  it("reruns a group directly when the db returns a document no request asked for", function()
    local fn = function(doc, db) return db:findOne("orders", { ID_ORDER = doc.id }).ID_USER end
    local docs = { { id = 1 }, { id = 2 }, { id = 4 } }
    local db = fake_db(WORLD, { extra = { ID_ORDER = 99, ID_USER = "intruder" } })
    local stats = { queries = 0 }
    assert.are.same({ "u1", "u2", "u3" }, strategy.call_batched(fn, docs, db, nil, stats))
    assert.are.equal(4, #db.calls) -- the merged query, then each request alone
    assert.are.equal(4, stats.queries)
    assert.are.same({ ID_ORDER = 2 }, db.calls[3].filter)
  end)

  it("splits a merged query over MAX filters", function()
    local docs = {}
    for i = 1, 2500 do docs[i] = { id = i } end
    local db = fake_db({ orders = {} })
    local res = strategy.call_batched(function(doc, db)
      return db:findOne("orders", { ID_ORDER = doc.id }) == nil
    end, docs, db)
    assert.are.equal(2500, #res)
    assert.are.equal(3, #db.calls)
    assert.are.equal(1000, #db.calls[1].filter.ID_ORDER["$in"])
    assert.are.equal(500, #db.calls[3].filter.ID_ORDER["$in"])
  end)

  it("raises the error of the first failing call, value preserved, after no later call", function()
    local obj = { code = 42 }
    local ran = {}
    local fn = function(doc, db)
      ran[#ran + 1] = doc.n
      if doc.n == 2 then db:findOne("orders", { ID_ORDER = 1 }); error(obj) end
      if doc.n == 3 then error("later", 0) end
      return doc.n
    end
    local ok, err = pcall(strategy.call_batched, fn, { { n = 1 }, { n = 2 }, { n = 3 } }, fake_db(WORLD))
    assert.is_false(ok)
    assert.are.equal(obj, err) -- call 2 fails after a lookup; call 3 failed earlier but runs later alone
    local ok2, err2 = pcall(strategy.call_batched, fn, { { n = 3 }, { n = 4 } }, fake_db(WORLD))
    assert.is_false(ok2)
    assert.are.equal("later", err2)
    assert.are.same({ 1, 2, 3, 3 }, ran) -- call 4 never started
  end)

  it("raises a db failure where the function called db, where its pcall can see it", function()
    local db = fake_db(WORLD, { fail = "db down" })
    assert.has_error(function()
      strategy.call_batched(function(doc, db) return db:findOne("orders", { ID_ORDER = doc.id }) end,
        { { id = 1 }, { id = 2 } }, db)
    end, "db down")
    local res = strategy.call_batched(function(doc, db)
      local ok, e = pcall(db.findOne, db, "orders", { ID_ORDER = doc.id })
      return ok and "ok" or e
    end, { { id = 1 }, { id = 2 } }, db)
    assert.are.same({ "db down", "db down" }, res)
  end)

  it("refuses a yield that is not a lookup as yielding outside a coroutine does", function()
    assert.has_error(function()
      strategy.call_batched(function() coroutine.yield(1) end, { {} }, fake_db(WORLD))
    end, "attempt to yield from outside a coroutine")
  end)

  it("calls a function for nil documents too, keeping the count of args.n", function()
    local res = strategy.call_batched(function(doc) return doc == nil end, { n = 2 }, fake_db(WORLD))
    assert.are.same({ true, true }, res)
  end)
end)
