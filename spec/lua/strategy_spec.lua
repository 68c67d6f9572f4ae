--[[
Specs of rtu.strategy: batched execution of low-code plans against a fake,
in-memory `db` whose find evaluates filters with rtu.strategy.matches.
]]
local json = require("rtu.json")
local value = require("rtu.value")
local lowcode = require("rtu.lowcode")
local strategy = require("rtu.strategy")

local null = value.null

-- In-memory projections database: collections of documents, db:find in insertion
-- order, every call recorded. A hash index per (collection, field), used when the
-- filter pins a top-level field (or each branch of a top-level $or) to values, keeps
-- the big batching specs fast; rtu.strategy.matches decides every returned document.
-- A document as MongoDB returns it under options.projection: only the fields
-- (dotted paths through objects) set to 1, _id unless set to 0.
local function project(doc, options)
  local proj = options and options.projection
  if not proj then return doc end
  local out = {}
  for path, on in pairs(proj) do
    if on == 1 then
      local src, dst = doc, out
      local parts = {}
      for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
      for i, part in ipairs(parts) do
        if type(src) ~= "table" or src[part] == nil then break end
        if i == #parts then dst[part] = src[part]
        else
          dst[part] = dst[part] or {}
          src, dst = src[part], dst[part]
        end
      end
    end
  end
  if proj._id ~= 0 then out._id = doc._id end
  return out
end

local function fake_db(collections)
  local db = { calls = {}, collections = collections or {}, indexes = {} }

  local function index(collection, field)
    local key = collection .. "\0" .. field
    local idx = db.indexes[key]
    if idx then return idx end
    idx = {}
    local function put(k, p)
      idx[k] = idx[k] or {}
      table.insert(idx[k], p)
    end
    for p, d in ipairs(db.collections[collection] or {}) do
      local v = d[field]
      if v ~= nil then
        put(strategy.canonical(v), p)
        if value.is_array(v) then
          for _, e in ipairs(v) do put(strategy.canonical(e), p) end
        end
      end
    end
    db.indexes[key] = idx
    return idx
  end

  -- positions that may match filter (a set), or nil for "scan everything"
  local function candidates(collection, filter)
    for k, v in pairs(filter) do
      if k:sub(1, 1) ~= "$" and k ~= "__STATE__" then
        local vals = type(v) ~= "table" and { v } or (getmetatable(v) == nil and v["$in"])
        if vals then
          local set = {}
          for _, x in ipairs(vals) do
            for _, p in ipairs(index(collection, k)[strategy.canonical(x)] or {}) do set[p] = true end
          end
          return set
        end
      end
    end
    if filter["$or"] then
      local set = {}
      for _, branch in ipairs(filter["$or"]) do
        local sub = candidates(collection, branch)
        if not sub then return nil end
        for p in pairs(sub) do set[p] = true end
      end
      return set
    end
    return nil
  end

  function db:find(collection, filter, options)
    self.calls[#self.calls + 1] = { collection = collection, filter = filter, options = options }
    local docs, out = self.collections[collection] or {}, {}
    local set, order = candidates(collection, filter), {}
    if set then
      for p in pairs(set) do order[#order + 1] = p end
      table.sort(order)
    else
      for p = 1, #docs do order[p] = p end
    end
    for _, p in ipairs(order) do
      if strategy.matches(docs[p], filter) then out[#out + 1] = project(docs[p], options) end
    end
    return out
  end
  function db:findOne(collection, filter, options)
    return self:find(collection, filter, options)[1]
  end
  return db
end

local function public(docs)
  for _, d in ipairs(docs) do
    if d.__STATE__ == nil then d.__STATE__ = "PUBLIC" end
  end
  return docs
end

local function plan_of(er, pc, opts)
  local plan, problems = lowcode.compile(
    json.decode('{"version": "1.0.0", "config": ' .. er .. '}'),
    json.decode('{"version": "1.0.0", "config": ' .. pc .. '}'), opts or {})
  assert.are.same({}, problems)
  return plan
end

local function docs_of(list)
  local out = {}
  for i, d in ipairs(list) do out[i] = { doc = d, origin = "o" .. i } end
  return out
end

-- identifier encodings of a result list, sorted, for set comparisons
local function id_set(results)
  local out = {}
  for _, r in ipairs(results) do out[#out + 1] = r.type .. " " .. strategy.canonical(r.identifier) end
  table.sort(out)
  return out
end

local function sorted_values(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out, function(a, b) return strategy.canonical(a) < strategy.canonical(b) end)
  return out
end

-- The food-delivery shape of the reference: dishes -> orders_dishes -> orders -> registry.
local ER_FOOD = [[{
  "pr_dishes": {"outgoing": {"pr_orders_dishes": {"conditions": {"dish_to_od":
    {"condition": {"ID_DISH": "ID_DISH"}, "oneToMany": true}}}}},
  "pr_orders_dishes": {"outgoing": {
    "pr_dishes": {"conditions": {"od_to_dish": {"condition": {"ID_DISH": "ID_DISH"}}}},
    "pr_orders": {"conditions": {"od_to_order": {"condition": {"ID_ORDER": "ID_ORDER"}}}}}},
  "pr_orders": {"outgoing": {
    "pr_orders_dishes": {"conditions": {"order_to_od": {"condition": {"ID_ORDER": "ID_ORDER"}, "oneToMany": true}}},
    "pr_registry": {"conditions": {"order_to_reg": {"condition": {"ID_USER": "ID_USER_ORDER"}}}}}},
  "pr_registry": {"outgoing": {"pr_orders": {"conditions": {"reg_to_order":
    {"condition": {"ID_USER_ORDER": "ID_USER"}, "oneToMany": true}}}}}
}]]
local PC_FOOD = [[{"sv_customers": {"paths": [
  {"path": ["pr_dishes", "pr_orders_dishes", "pr_orders", "pr_registry"], "identifier": {"ID_USER": "ID_USER"}}]}}]]

describe("rtu.strategy.matches", function()
  local m = strategy.matches
  local doc = { a = 1, s = "x", n = null, arr = value.array({ 1, 2, 3 }), d = value.date(1000),
    sub = { city = "Milano" } }

  it("compares by equality, with array fields matching any element", function()
    assert.is_true(m(doc, { a = 1 }))
    assert.is_true(m(doc, { a = 1.0 }))
    assert.is_false(m(doc, { a = "1" }))
    assert.is_true(m(doc, { arr = 2 }))
    assert.is_true(m(doc, { arr = value.array({ 1, 2, 3 }) }))
    assert.is_false(m(doc, { arr = 4 }))
    assert.is_true(m(doc, { d = value.date(1000) }))
    assert.is_true(m(doc, { ["sub.city"] = "Milano" }))
    assert.is_true(m(doc, { n = null, missing = null }))
    assert.is_false(m(doc, { a = null }))
    assert.is_true(m(doc, {}))
  end)

  it("evaluates the operators it generates", function()
    assert.is_true(m(doc, { a = { ["$in"] = { 5, 1 } } }))
    assert.is_false(m(doc, { a = { ["$nin"] = { 5, 1 } } }))
    assert.is_true(m(doc, { a = { ["$ne"] = 2 }, s = { ["$eq"] = "x" } }))
    assert.is_true(m(doc, { a = { ["$gt"] = 0, ["$lte"] = 1 } }))
    assert.is_false(m(doc, { a = { ["$gte"] = 2 } }))
    assert.is_false(m(doc, { a = { ["$lt"] = "z" } }))
    assert.is_true(m(doc, { s = { ["$lt"] = "y" } }))
    assert.is_true(m(doc, { d = { ["$gt"] = value.date(999) } }))
    assert.is_true(m(doc, { arr = { ["$gt"] = 2 } }))
    assert.is_true(m(doc, { n = { ["$exists"] = true }, zz = { ["$exists"] = false } }))
    assert.is_true(m(doc, { ["$or"] = { { a = 2 }, { s = "x" } } }))
    assert.is_false(m(doc, { ["$and"] = { { a = 1 }, { s = "y" } } }))
    assert.is_true(m(doc, { ["$nor"] = { { a = 2 } } }))
    assert.has_error(function() m(doc, { a = { ["$regex"] = "x" } }) end)
  end)
end)

describe("rtu.strategy.matches, a document holding the filter's own operator object", function()
  it("judges it by the operators, not by identity", function()
    local op = { ["$exists"] = false }
    assert.is_false(strategy.matches({ V = op }, { V = op }))
    assert.is_true(strategy.matches({ V = null }, { V = null }))
    assert.is_true(strategy.matches({}, { V = null }))
  end)
end)

describe("rtu.strategy.canonical", function()
  it("is equal for values MongoDB finds equal and different otherwise", function()
    local c = strategy.canonical
    assert.are.equal(c({ a = 1, b = "x" }), c({ b = "x", a = 1.0 }))
    assert.are_not.equal(c({ a = 1 }), c({ a = "1" }))
    assert.are_not.equal(c("s1:"), c(""))
    assert.are.equal(c(value.date(5)), c(value.date(5)))
    assert.are_not.equal(c(value.array({ 1, 2 })), c(value.array({ 2, 1 })))
    assert.are.equal(c(math.maxinteger), "n" .. math.maxinteger)
  end)

  it("heads a string with its length, however long", function()
    for _, n in ipairs({ 0, 1, 9, 10, 255, 256, 1000 }) do
      local s = string.rep("x", n)
      assert.are.equal("s" .. n .. ":" .. s, strategy.canonical(s))
    end
  end)
end)

describe("rtu.strategy.run", function()
  local plan
  before_each(function() plan = plan_of(ER_FOOD, PC_FOOD) end)

  it("gives the identifier of a base projection document without any lookup", function()
    local db = fake_db()
    local res, stats = strategy.run(plan, "pr_registry", docs_of({ { ID_USER = "u1" } }), db)
    assert.are.same({ { type = "sv_customers", identifier = { ID_USER = "u1" }, origin = "o1" } }, res)
    assert.are.equal(0, #db.calls)
    assert.are.equal(0, stats.queries)
  end)

  it("gives nothing for a projection that is on no path", function()
    local db = fake_db()
    local res, stats = strategy.run(plan, "pr_unrelated", docs_of({ { X = 1 } }), db)
    assert.are.same({}, res)
    assert.are.equal(0, stats.queries)
    assert.are.same({}, (strategy.run(plan, "pr_orders", {}, db)))
    assert.are.equal(0, #db.calls)
  end)

  it("looks a single-field condition up with $in of the distinct values, PUBLIC only", function()
    local db = fake_db({
      pr_registry = public({ { ID_USER = "u1" }, { ID_USER = "u2", __STATE__ = "DELETED" },
        { ID_USER = "u3" } }),
    })
    local res = strategy.run(plan, "pr_orders", docs_of({
      { ID_ORDER = 1, ID_USER_ORDER = "u1" }, { ID_ORDER = 2, ID_USER_ORDER = "u2" },
      { ID_ORDER = 3, ID_USER_ORDER = "u1" }, { ID_ORDER = 4, ID_USER_ORDER = null },
      { ID_ORDER = 5 },
    }), db)
    assert.are.equal(1, #db.calls)
    assert.are.equal("pr_registry", db.calls[1].collection)
    assert.are.same({ ID_USER = { ["$in"] = { "u1", "u2" } }, __STATE__ = "PUBLIC" }, db.calls[1].filter)
    assert.is_true(value.is_array(db.calls[1].filter.ID_USER["$in"]))
    -- u2 is soft-deleted: not followed; u1 comes from orders 1 and 3, the latest names it
    assert.are.same({ { type = "sv_customers", identifier = { ID_USER = "u1" }, origin = "o3" } }, res)
  end)

  it("issues no lookup when every source value is null or missing", function()
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1" } }) })
    local res = strategy.run(plan, "pr_orders", docs_of({ { ID_ORDER = 1, ID_USER_ORDER = null } }), db)
    assert.are.same({}, res)
    assert.are.equal(0, #db.calls)
  end)

  it("keeps the latest document as origin and de-duplicates identifiers", function()
    local db = fake_db({
      pr_orders_dishes = public({ { ID_ORDER = 10, ID_DISH = "d1" }, { ID_ORDER = 11, ID_DISH = "d2" },
        { ID_ORDER = 12, ID_DISH = "d2" } }),
      pr_orders = public({ { ID_ORDER = 10, ID_USER_ORDER = "u1" }, { ID_ORDER = 11, ID_USER_ORDER = "u2" },
        { ID_ORDER = 12, ID_USER_ORDER = "u1" } }),
      pr_registry = public({ { ID_USER = "u1" }, { ID_USER = "u2" } }),
    })
    local res = strategy.run(plan, "pr_dishes", docs_of({ { ID_DISH = "d2" }, { ID_DISH = "d1" } }), db)
    table.sort(res, function(a, b) return a.identifier.ID_USER < b.identifier.ID_USER end)
    assert.are.same({
      { type = "sv_customers", identifier = { ID_USER = "u1" }, origin = "o2" }, -- d2 (o1) and d1 (o2)
      { type = "sv_customers", identifier = { ID_USER = "u2" }, origin = "o1" }, -- d2 only
    }, res)
    local res2 = strategy.run(plan, "pr_dishes", docs_of({ { ID_DISH = "d1" }, { ID_DISH = "d2" } }), db)
    table.sort(res2, function(a, b) return a.identifier.ID_USER < b.identifier.ID_USER end)
    assert.are.equal("o2", res2[1].origin) -- u1 reached from d1 (o1) and d2 (o2)
    assert.are.equal("o2", res2[2].origin) -- u2 only from d2
    assert.are.equal(3, #db.calls + 0 - 3) -- three hops per run
  end)

  it("returns as keys the canonical encodings of identifiers of any value and any fields", function()
    local p = plan_of([[{}]], [[{"sv_one": {"paths": [{"path": ["pr_a"], "identifier": {"ID": "A"}}]},
      "sv_two": {"paths": [{"path": ["pr_a"], "identifier": {"K2": "B", "K1": "A"}}]}}]])
    local vals = { "", "x", string.rep("y", 255), string.rep("z", 256), "s1:", 7, 7.5, true,
      value.date(5), value.array({ "a", 1 }), { k = "v" } }
    local list = {}
    for i, v in ipairs(vals) do list[i] = { A = v, B = vals[#vals + 1 - i] } end
    local res, _, keys = strategy.run(p, "pr_a", docs_of(list), fake_db())
    assert.are.equal(2 * #vals, #res)
    for i, r in ipairs(res) do
      assert.are.equal(r.type .. "\0" .. strategy.canonical(r.identifier), keys[i])
    end
  end)

  it("attributes the results of a condition on a dotted target field through embedded objects", function()
    local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c":
      {"condition": {"REF.ID": "A_ID"}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    -- what the server finds for {REF.ID: {$in: ["x", "y"]}}
    local db = { find = function()
      return { { ID = 1, REF = { ID = "x" } }, { ID = 2, REF = { ID = "y" } }, { ID = 4, REF = { ID = "x" } } }
    end }
    local res = strategy.run(p, "pr_a", docs_of({ { A_ID = "x" }, { A_ID = "y" } }), db)
    assert.are.same({
      { type = "sv", identifier = { ID = 1 }, origin = "o1" },
      { type = "sv", identifier = { ID = 2 }, origin = "o2" },
      { type = "sv", identifier = { ID = 4 }, origin = "o1" },
    }, res)
  end)

  it("asks each distinct branch of an $or once, however the branches are made", function()
    local function node_of(cond)
      local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c": {"condition": ]] .. cond
        .. [[}}}}}}]], [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
      return p.hops.pr_a.pr_b.conditions[1].node
    end
    local same = node_of([[{"$or": [{"ID": "A"}, {"ID": "B"}]}]])
    assert.are.same({ ID = 1 }, strategy.instantiate(same, { A = 1, B = 1.0 }))
    assert.are.same({ ["$or"] = { { ID = 1 }, { ID = 2 } } }, strategy.instantiate(same, { A = 1, B = 2 }))
    local pairs_of = node_of([[{"$or": [{"ID": "A", "K": "B"}, {"K": "B", "ID": "A"}, {"ID": "B"}]}]])
    assert.are.same({ ["$or"] = { { ID = 1, K = 2 }, { ID = 2 } } },
      strategy.instantiate(pairs_of, { A = 1, B = 2 }))
    local apart = node_of([[{"$or": [{"ID": "A"}, {"ID2": "A"}, {"ID": "B"}]}]])
    assert.are.same({ ["$or"] = { { ID = 1 }, { ID2 = 1 } } }, strategy.instantiate(apart, { A = 1, B = 1 }))
    assert.are.same({ ["$or"] = { { ID = "x" }, { ID2 = "x" } } }, strategy.instantiate(node_of(
      [[{"$or": [{"ID": "A"}, {"ID2": "A"}]}]]), { A = "x" }))
  end)

  it("lets the latest origin win even when it found the identifier after an earlier one", function()
    local p = plan_of([[{"pr_orders": {"outgoing": {"pr_registry": {"conditions": {"c":
      {"condition": {"ID_USER": "ID_USER_ORDER"}}}}}}}]], [[{"sv_customers": {"paths": [
      {"path": ["pr_orders"], "identifier": {"ID_USER": "ID_BUYER"}},
      {"path": ["pr_orders", "pr_registry"], "identifier": {"ID_USER": "ID_USER"}}]}}]])
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1" } }) })
    local res = strategy.run(p, "pr_orders", docs_of({
      { ID_ORDER = 1, ID_BUYER = "u1" },      -- gives u1 directly, discovered first
      { ID_ORDER = 2, ID_USER_ORDER = "u1" }, -- reaches u1 later, through the hop
    }), db)
    assert.are.same({ { type = "sv_customers", identifier = { ID_USER = "u1" }, origin = "o2" } }, res)
  end)

  it("skips a base document that lacks an identifier field and logs it at debug", function()
    local logged = {}
    local log = { debug = function(msg, fields) logged[#logged + 1] = { msg, fields } end }
    local res = strategy.run(plan, "pr_registry", docs_of({ { NAME = "x" }, { ID_USER = null },
      { ID_USER = "u9" } }), fake_db(), log)
    assert.are.same({ { type = "sv_customers", identifier = { ID_USER = "u9" }, origin = "o3" } }, res)
    assert.are.equal(2, #logged)
    assert.are.same({ field = "ID_USER" }, logged[1][2])
  end)

  it("keeps only the first match in the db's order when oneToMany is false", function()
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1", V = 1 }, { ID_USER = "u1", V = 2 } }) })
    local p = plan_of([[{"pr_orders": {"outgoing": {"pr_registry": {"conditions": {"c":
      {"condition": {"ID_USER": "ID_USER_ORDER"}}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_orders", "pr_registry"], "identifier": {"V": "V"}}]}}]])
    local res = strategy.run(p, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" }, { ID_USER_ORDER = "u1" } }), db)
    assert.are.same({ { type = "sv", identifier = { V = 1 }, origin = "o2" } }, res)
    local p2 = plan_of([[{"pr_orders": {"outgoing": {"pr_registry": {"conditions": {"c":
      {"condition": {"ID_USER": "ID_USER_ORDER"}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_orders", "pr_registry"], "identifier": {"V": "V"}}]}}]])
    local res2 = strategy.run(p2, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" } }), db)
    assert.are.same({ { type = "sv", identifier = { V = 1 }, origin = "o1" },
      { type = "sv", identifier = { V = 2 }, origin = "o1" } }, res2)
  end)

  it("attributes a named condition's results exactly through the index, as the matcher would", function()
    local function p_of(one_to_many)
      return plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c":
        {"condition": {"TAG": "A_TAG"}, "oneToMany": ]] .. tostring(one_to_many) .. [[}}}}}}]],
        [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    end
    local db = fake_db({ pr_b = public({
      { ID = 1, TAG = value.array({ "x", "y" }) }, { ID = 2, TAG = "x" }, { ID = 3, TAG = 1.0 },
      { ID = 4, TAG = value.date(5) }, { ID = 5, TAG = "1" }, { ID = 6, TAG = value.array({ 1, 2 }) },
      { ID = 7, TAG = { k = "v" } }, { ID = 8 }, { ID = 9, TAG = false }, { ID = 10, TAG = "d5" },
      { ID = 11, TAG = 0.5 }, { ID = 12, TAG = value.array({ value.array({ "x", "y" }) }) },
    }) })
    local sources = { { A_TAG = "x" }, { A_TAG = 1 }, { A_TAG = value.date(5) },
      { A_TAG = value.array({ "x", "y" }) }, { A_TAG = { k = "v" } }, { A_TAG = "zz" },
      { A_TAG = false }, { A_TAG = 0.5 }, { A_TAG = "1" } }
    for _, otm in ipairs({ true, false }) do
      local p = p_of(otm)
      -- each source alone against what the matcher says its own filter matches
      for i, src in ipairs(sources) do
        local want = {}
        for _, d in ipairs(db.collections.pr_b) do
          if strategy.matches(d, { TAG = value.is_object(src.A_TAG) and { ["$eq"] = src.A_TAG } or src.A_TAG })
              and (otm or #want == 0) then
            want[#want + 1] = "sv {s2:ID=n" .. d.ID .. "}"
          end
        end
        table.sort(want)
        local batch = {}
        for j, other in ipairs(sources) do batch[j] = (j == i) and src or { A_TAG = "none" } end
        -- in a batch with the others, only this one's view comes from document i
        local res = strategy.run(p, "pr_a", docs_of(batch), db)
        local got = {}
        for _, r in ipairs(res) do
          if r.origin == "o" .. i then got[#got + 1] = r.type .. " " .. strategy.canonical(r.identifier) end
        end
        table.sort(got)
        assert.are.same(want, got)
      end
    end
    -- and the keys returned with the results are their canonical encodings
    local res, _, keys = strategy.run(p_of(true), "pr_a", docs_of({ { A_TAG = "x" } }), db)
    assert.are.equal(#res, #keys)
    for i, r in ipairs(res) do assert.are.equal(r.type .. "\0" .. strategy.canonical(r.identifier), keys[i]) end
  end)

  it("builds one $or of per-document filters for an $or condition with typed constants", function()
    local p = plan_of([[{"pr_dishes": {"outgoing": {"pr_orders_dishes": {"conditions": {"c":
      {"condition": {"$or": [{"ID_DISH": "ID_DISH"}, {"ID_SUBSTITUTE": "ID_DISH"}],
                     "KIND": "__string__[FOOD]", "QTY": {"$gt": "__integer__[0]"}}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_dishes", "pr_orders_dishes"], "identifier": {"ID": "ID_OD"}}]}}]])
    local db = fake_db({ pr_orders_dishes = public({
      { ID_OD = 1, ID_DISH = "a", KIND = "FOOD", QTY = 1 },
      { ID_OD = 2, ID_DISH = "x", ID_SUBSTITUTE = "a", KIND = "FOOD", QTY = 2 },
      { ID_OD = 3, ID_DISH = "b", KIND = "FOOD", QTY = 1 },
      { ID_OD = 4, ID_DISH = "a", KIND = "DRINK", QTY = 1 },
      { ID_OD = 5, ID_DISH = "b", KIND = "FOOD", QTY = 0 },
      { ID_OD = 6, ID_DISH = "c", KIND = "FOOD", QTY = 3 },
    }) })
    local res = strategy.run(p, "pr_dishes", docs_of({ { ID_DISH = "a" }, { ID_DISH = "b" },
      { ID_DISH = "a" }, { NAME = "no id" } }), db)
    assert.are.equal(1, #db.calls)
    local f = db.calls[1].filter
    assert.are.equal("PUBLIC", f.__STATE__)
    assert.are.equal(2, #f["$or"]) -- de-duplicated: "a" twice, the id-less one dropped
    assert.are.same({
      KIND = "FOOD", QTY = { ["$gt"] = 0 },
      ["$or"] = { { ID_DISH = "a" }, { ID_SUBSTITUTE = "a" } },
    }, f["$or"][1])
    assert.are.equal("integer", math.type(f["$or"][1].QTY["$gt"]))
    assert.are.same({
      { type = "sv", identifier = { ID = 1 }, origin = "o3" }, -- "a" is documents 1 and 3
      { type = "sv", identifier = { ID = 2 }, origin = "o3" },
      { type = "sv", identifier = { ID = 3 }, origin = "o2" },
    }, res)
  end)

  it("follows operator objects whose operands are source fields or constants", function()
    local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c":
      {"condition": {"TAG": {"$in": "TAGS"}, "LEVEL": {"$gte": "MIN_LEVEL", "$nin": ["__integer__[13]"]},
                     "ACTIVE": "__boolean__[true]", "REGION": {"$exists": true}}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    local db = fake_db({ pr_b = public({
      { ID = 1, TAG = "veg", LEVEL = 5, ACTIVE = true, REGION = "N" },
      { ID = 2, TAG = "veg", LEVEL = 1, ACTIVE = true, REGION = "N" },
      { ID = 3, TAG = "hot", LEVEL = 13, ACTIVE = true, REGION = "N" },
      { ID = 4, TAG = "hot", LEVEL = 9, ACTIVE = false, REGION = "N" },
      { ID = 5, TAG = "hot", LEVEL = 9, ACTIVE = true },
      { ID = 6, TAG = "hot", LEVEL = 9, ACTIVE = true, REGION = "S" },
    }) })
    local res = strategy.run(p, "pr_a", docs_of({ { TAGS = value.array({ "veg", "hot" }), MIN_LEVEL = 3 },
      { TAGS = value.array({ "veg" }) } }), db)
    assert.are.same({ "sv {s2:ID=n1}", "sv {s2:ID=n6}" }, id_set(res))
    assert.are.equal(1, #db.calls)
    assert.are.same({ TAG = { ["$in"] = { "veg", "hot" } }, ACTIVE = true,
      LEVEL = { ["$gte"] = 3, ["$nin"] = { 13 } }, REGION = { ["$exists"] = true },
      __STATE__ = "PUBLIC" }, db.calls[1].filter)
  end)

  it("ORs several named conditions of one pair into one lookup, each with its own oneToMany", function()
    local p = plan_of([[{"pr_od": {"outgoing": {"pr_dishes": {"conditions": {
      "ordered": {"condition": {"ID_DISH": "ID_DISH"}},
      "substitute": {"condition": {"ID_DISH": "ID_SUBSTITUTE"}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_od", "pr_dishes"], "identifier": {"ID": "ID_DISH", "V": "V"}}]}}]])
    local db = fake_db({ pr_dishes = public({
      { ID_DISH = "a", V = 1 }, { ID_DISH = "a", V = 2 }, { ID_DISH = "s", V = 1 }, { ID_DISH = "s", V = 2 },
      { ID_DISH = "z", V = 1 },
    }) })
    local res = strategy.run(p, "pr_od", docs_of({ { ID_DISH = "a", ID_SUBSTITUTE = "s" } }), db)
    assert.are.equal(1, #db.calls)
    assert.are.same({ ["$or"] = { { ID_DISH = { ["$in"] = { "a" } } }, { ID_DISH = { ["$in"] = { "s" } } } },
      __STATE__ = "PUBLIC" }, db.calls[1].filter)
    assert.are.same({ "sv {s2:ID=s1:a,s1:V=n1}", "sv {s2:ID=s1:s,s1:V=n1}", "sv {s2:ID=s1:s,s1:V=n2}" },
      id_set(res))
  end)

  it("looks a foreign key with constants beside it up with one $in, the constants matched per result", function()
    local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {
      "many": {"condition": {"A": "ID", "STATUS": {"$ne": "__string__[REJECTED]"}}, "oneToMany": true},
      "first": {"condition": {"A2": "ID", "KIND": "__string__[main]"}}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    local db = fake_db({ pr_b = public({
      { ID = 1, A = "x", STATUS = "OK" }, { ID = 2, A = "x", STATUS = "REJECTED" },
      { ID = 3, A = "x" }, { ID = 4, A = "y", STATUS = "REJECTED" },
      { ID = 5, A2 = "x", KIND = "side" }, { ID = 6, A2 = "x", KIND = "main" },
      { ID = 7, A2 = "x", KIND = "main" }, { ID = 8, A2 = "y", KIND = "main" },
      -- found through "first" (a second main one for y, so not kept) and holding A = x:
      -- only its STATUS keeps it from "many"
      { ID = 9, A = "x", STATUS = "REJECTED", A2 = "y", KIND = "main" },
    }) })
    local docs = { { ID = "x" }, { ID = "y" }, { ID = "z" }, { NO_ID = true } }
    local res = strategy.run(p, "pr_a", docs_of(docs), db)
    assert.are.equal(1, #db.calls)
    assert.are.same({ ["$or"] = { -- conditions in name order
      { A2 = { ["$in"] = { "x", "y", "z" } }, KIND = "main" },
      { A = { ["$in"] = { "x", "y", "z" } }, STATUS = { ["$ne"] = "REJECTED" } } },
      __STATE__ = "PUBLIC" },
      db.calls[1].filter)
    -- x: 1 and 3 (2 rejected), 6 (the first main one; 5 is side, 7 a second match
    -- of a one-to-one condition); y: 8 (4 rejected)
    assert.are.same({ "sv {s2:ID=n1}", "sv {s2:ID=n3}", "sv {s2:ID=n6}", "sv {s2:ID=n8}" }, id_set(res))
    -- the same as one document at a time
    local one = {}
    for i, d in ipairs(docs) do
      for _, r in ipairs(strategy.run(p, "pr_a", { { doc = d, origin = i } }, fake_db(db.collections))) do
        one[#one + 1] = r
      end
    end
    assert.are.same(id_set(one), id_set(res))
  end)

  it("sends the constants with the $in: a foreign key whose constants match no document finds nothing", function()
    local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c": {"condition":
      {"A": "ID", "STATUS": {"$in": ["__string__[OK]"], "$nin": ["__string__[OK]"]}}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    local db = fake_db({ pr_b = public({ { ID = 1, A = "x", STATUS = "OK" } }) })
    assert.are.same({}, (strategy.run(p, "pr_a", docs_of({ { ID = "x" } }), db)))
  end)

  it("keeps __STATE__: PUBLIC when a condition names __STATE__ itself", function()
    local p = plan_of([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c":
      {"condition": {"ID": "ID", "__STATE__": "__string__[DELETED]"}, "oneToMany": true}}}}}}]],
      [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
    local db = fake_db({ pr_b = public({ { ID = 1, __STATE__ = "DELETED" } }) })
    assert.are.same({}, (strategy.run(p, "pr_a", docs_of({ { ID = 1 } }), db)))
    assert.are.same({ ["$and"] = { { ID = { ["$in"] = { 1 } }, __STATE__ = "DELETED" },
      { __STATE__ = "PUBLIC" } } }, db.calls[1].filter)
  end)

  it("calls a custom identifier function once per base document reached", function()
    local calls = {}
    local function fn(doc, db, log)
      calls[#calls + 1] = doc.ID_USER
      assert.are.equal("function", type(db.find))
      assert.are.equal("the log", log.name)
      if doc.ID_USER == "u2" then return nil end
      return { { ID_USER = doc.ID_USER, SHARD = 1 }, { ID_USER = doc.ID_USER, SHARD = 2 } }
    end
    local p = plan_of(ER_FOOD, [[{"sv_customers": {"paths": [
      {"path": ["pr_orders", "pr_registry"], "identifier": "__fromFile__[byShard]"}]}}]],
      { custom = { byShard = fn } })
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1" }, { ID_USER = "u2" } }) })
    local res, stats = strategy.run(p, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" },
      { ID_USER_ORDER = "u2" }, { ID_USER_ORDER = "u1" } }), db, { name = "the log" })
    assert.are.same({ "u1", "u2" }, calls)
    assert.are.equal(2, stats.custom_calls)
    assert.are.same({
      { type = "sv_customers", identifier = { ID_USER = "u1", SHARD = 1 }, origin = "o3" },
      { type = "sv_customers", identifier = { ID_USER = "u1", SHARD = 2 }, origin = "o3" },
    }, res)
  end)

  it("batches the lookups of a custom function across documents, with the one-by-one results", function()
    -- restaurantsOfReview's shape: the restaurant is the review's own, else its order's
    local function fn(doc, db)
      if doc.ID_RESTAURANT ~= nil then return { { ID_RESTAURANT = doc.ID_RESTAURANT } } end
      local order = db:findOne("pr_orders", { ID_ORDER = doc.ID_ORDER, __STATE__ = "PUBLIC" })
      if order == nil then return {} end
      local user = db:findOne("pr_registry", { ID_USER = order.ID_USER_ORDER, __STATE__ = "PUBLIC" })
      if user == nil then return {} end
      return { { ID_RESTAURANT = order.ID_RESTAURANT }, { ID_RESTAURANT = user.FAVOURITE } }
    end
    local p = plan_of([[{}]], [[{"sv_restaurants": {"paths": [
      {"path": ["pr_reviews"], "identifier": "__fromFile__[ofReview]"}]}}]], { custom = { ofReview = fn } })
    local orders, users = {}, {}
    for i = 1, 60 do
      orders[i] = { ID_ORDER = i, ID_USER_ORDER = "u" .. (i % 7), ID_RESTAURANT = "r" .. (i % 11),
        __STATE__ = (i % 13 == 0) and "DELETED" or "PUBLIC" }
    end
    for u = 0, 5 do users[#users + 1] = { ID_USER = "u" .. u, FAVOURITE = "r" .. (u * 3 % 11), __STATE__ = "PUBLIC" } end
    local w = { pr_orders = orders, pr_registry = users }
    local reviews = {}
    for i = 1, 200 do
      reviews[i] = (i % 5 == 0) and { ID_RESTAURANT = "r" .. (i % 4) } or { ID_ORDER = (i * 7) % 70 + 1 }
    end
    local db = fake_db(w)
    local res, stats = strategy.run(p, "pr_reviews", docs_of(reviews), db)
    assert.are.equal(2, #db.calls) -- one per round, for 200 documents
    assert.are.equal(2, stats.queries)
    assert.are.equal(200, stats.custom_calls)

    local expected, by_key, single = {}, {}, fake_db(w)
    for i, d in ipairs(reviews) do
      for _, r in ipairs(strategy.run(p, "pr_reviews", { { doc = d, origin = "o" .. i } }, single)) do
        local key = r.type .. " " .. strategy.canonical(r.identifier)
        if not by_key[key] then
          by_key[key] = r
          expected[#expected + 1] = r
        else
          by_key[key].origin = r.origin
        end
      end
    end
    assert.is_true(#single.calls > 200)
    assert.are.same(expected, res) -- same identifiers, discovery order and origins
  end)

  it("fails clearly on a custom function that returns no identifier objects or is not loaded", function()
    local function plan_with(fn)
      return (lowcode.compile(json.decode('{"version": "1", "config": {}}'), json.decode(
        '{"version": "1", "config": {"sv": {"paths": [{"path": ["pr_a"], "identifier": "__fromFile__[f]"}]}}}'),
        { custom = { f = fn } }))
    end
    local d = docs_of({ { ID = 1 } })
    assert.has_error(function() strategy.run(plan_with(function() return "x" end), "pr_a", d, fake_db()) end,
      "custom identifier function 'f' returned string, expected an array of identifier objects")
    assert.has_error(function() strategy.run(plan_with(function() return { 1 } end), "pr_a", d, fake_db()) end,
      "custom identifier function 'f': element 1 is not an identifier object")
    assert.has_error(function() strategy.run(plan_with(nil), "pr_a", d, fake_db()) end,
      "custom identifier function 'f' is not loaded")
    assert.has_error(function() strategy.run(plan_with(function() error("boom", 0) end), "pr_a", d, fake_db()) end,
      "boom")
  end)

  it("shares a lookup between single views whose paths begin alike", function()
    local p = plan_of(ER_FOOD, [[{
      "sv_customers": {"paths": [{"path": ["pr_orders_dishes", "pr_orders", "pr_registry"], "identifier": {"ID_USER": "ID_USER"}}]},
      "sv_orders": {"paths": [{"path": ["pr_orders_dishes", "pr_orders"], "identifier": {"ID_ORDER": "ID_ORDER"}}]}}]])
    local db = fake_db({
      pr_orders = public({ { ID_ORDER = 7, ID_USER_ORDER = "u1" } }),
      pr_registry = public({ { ID_USER = "u1" } }),
    })
    local res, stats = strategy.run(p, "pr_orders_dishes", docs_of({ { ID_ORDER = 7 } }), db)
    assert.are.equal(2, stats.queries)
    assert.are.same({ "sv_customers {s7:ID_USER=s2:u1}", "sv_orders {s8:ID_ORDER=n7}" }, id_set(res))
    local only = strategy.as_function(p, "pr_orders_dishes", "sv_orders")
    assert.are.same({ { ID_ORDER = 7 } }, only({ ID_ORDER = 7 }, db))
    assert.are.equal(3, #db.calls) -- sv_orders alone does not look up pr_registry
  end)

  it("counts lookups in the returned stats and in plan.stats", function()
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1" } }) })
    strategy.run(plan, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" } }), db)
    local _, stats = strategy.run(plan, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" } }), db)
    assert.are.same({ queries = 1, custom_calls = 0, documents = 1 }, stats)
    assert.are.equal(2, plan.stats.queries)
    assert.are.equal(2, plan.stats.documents)
  end)

  describe("batching", function()
    -- A random food-delivery world: dishes in many orders, orders of few customers.
    local function world(seed, n_dishes, n_orders, n_users, n_lines)
      local rnd = seed
      local function rand(n)
        rnd = (rnd * 1103515245 + 12345) % 2147483648
        return rnd % n + 1
      end
      local w = { pr_orders_dishes = {}, pr_orders = {}, pr_registry = {} }
      for u = 1, n_users do
        w.pr_registry[u] = { ID_USER = "u" .. u, __STATE__ = (u % 17 == 0) and "DELETED" or "PUBLIC" }
      end
      for o = 1, n_orders do
        -- 64-bit order ids, and some orders with a null customer
        w.pr_orders[o] = { ID_ORDER = 9007199254740993 + o * 1000,
          ID_USER_ORDER = (o % 23 == 0) and null or ("u" .. rand(n_users)), __STATE__ = "PUBLIC" }
      end
      for l = 1, n_lines do
        w.pr_orders_dishes[l] = { ID_ORDER_DISH = l, ID_DISH = "d" .. rand(n_dishes),
          ID_ORDER = w.pr_orders[rand(n_orders)].ID_ORDER, __STATE__ = (l % 29 == 0) and "DELETED" or "PUBLIC" }
      end
      return w
    end

    it("costs one lookup per hop for 500 documents and finds what running them one by one finds", function()
      local w = world(42, 700, 2000, 300, 5000)
      local changed = {}
      for i = 1, 500 do changed[i] = { ID_DISH = "d" .. i, NAME = "dish " .. i } end
      local db = fake_db(w)
      local res, stats = strategy.run(plan, "pr_dishes", docs_of(changed), db)
      assert.are.equal(3, #db.calls)
      assert.are.equal(3, stats.queries)
      assert.are.same({ "pr_orders_dishes", "pr_orders", "pr_registry" },
        { db.calls[1].collection, db.calls[2].collection, db.calls[3].collection })
      assert.are.equal(500, #db.calls[1].filter.ID_DISH["$in"])
      assert.is_true(#res > 50)

      -- one by one: same identifiers, and each origin is the last document giving it
      local expected, last_origin = {}, {}
      local single = fake_db(w)
      for i, d in ipairs(changed) do
        for _, r in ipairs(strategy.run(plan, "pr_dishes", { { doc = d, origin = "o" .. i } }, single)) do
          local key = r.type .. " " .. strategy.canonical(r.identifier)
          if not last_origin[key] then expected[#expected + 1] = key end
          last_origin[key] = r.origin
        end
      end
      table.sort(expected)
      assert.are.same(expected, id_set(res))
      for _, r in ipairs(res) do
        assert.are.equal(last_origin[r.type .. " " .. strategy.canonical(r.identifier)], r.origin)
      end
      assert.is_true(#single.calls > 500)
    end)

    it("costs one lookup per hop with per-document $or filters too", function()
      local p = plan_of([[{
        "pr_dishes": {"outgoing": {"pr_orders_dishes": {"conditions": {"c": {"condition":
          {"$or": [{"ID_DISH": "ID_DISH"}, {"ID_ORDER_DISH": "LINE"}]}, "oneToMany": true}}}}},
        "pr_orders_dishes": {"outgoing": {"pr_orders": {"conditions": {"c": {"condition": {"ID_ORDER": "ID_ORDER"}}}}}},
        "pr_orders": {"outgoing": {"pr_registry": {"conditions": {"c": {"condition":
          {"ID_USER": "ID_USER_ORDER", "__STATE__": {"$exists": true}}}}}}}}]], PC_FOOD)
      local w = world(7, 300, 800, 100, 2000)
      local changed = {}
      for i = 1, 500 do changed[i] = { ID_DISH = "d" .. (i % 300 + 1), LINE = i * 3 } end
      local db = fake_db(w)
      local res = strategy.run(p, "pr_dishes", docs_of(changed), db)
      assert.are.equal(3, #db.calls)
      assert.is_truthy(db.calls[1].filter["$or"])
      -- the constant part names __STATE__ too: both under $and
      assert.are.equal("PUBLIC", db.calls[3].filter["$and"][2].__STATE__)
      local expected, seen, single = {}, {}, fake_db(w)
      for i, d in ipairs(changed) do
        for _, r in ipairs(strategy.run(p, "pr_dishes", { { doc = d, origin = i } }, single)) do
          local key = r.type .. " " .. strategy.canonical(r.identifier)
          if not seen[key] then seen[key] = true; expected[#expected + 1] = key end
        end
      end
      table.sort(expected)
      assert.are.same(expected, id_set(res))
      assert.is_true(#res > 20)
    end)
  end)

  it("asks a hop only for the fields the walk reads from its documents", function()
    local p = plan_of(ER_FOOD, [[{
      "sv_customers": {"paths": [{"path": ["pr_dishes", "pr_orders_dishes", "pr_orders", "pr_registry"],
        "identifier": {"ID_USER": "ID_USER", "CITY": "ADDR.CITY"}}]},
      "sv_orders": {"paths": [{"path": ["pr_orders_dishes", "pr_orders"], "identifier": {"ID": "ID_ORDER"}}]}}]])
    local db = fake_db({
      pr_orders_dishes = public({ { ID_ORDER = 7, ID_DISH = "d1", QTY = 2 } }),
      pr_orders = public({ { ID_ORDER = 7, ID_USER_ORDER = "u1", TOTAL = 9 } }),
      pr_registry = public({ { ID_USER = "u1", ADDR = { CITY = "Milano", STREET = "x" }, NAME = "Ada" } }),
    })
    local res, _, keys = strategy.run(p, "pr_dishes", docs_of({ { ID_DISH = "d1" } }), db)
    assert.are.same({ "sv_customers {s4:CITY=s6:Milano,s7:ID_USER=s2:u1}" }, id_set(res))
    assert.are.same({ "sv_customers\0" .. strategy.canonical(res[1].identifier) }, keys)
    assert.are.same({ ID_DISH = 1, ID_ORDER = 1, _id = 0 }, db.calls[1].options.projection)
    -- pr_orders: the hop's ID_ORDER, sv_orders' identifier ID_ORDER, the next hop's ID_USER_ORDER
    assert.are.same({ ID_ORDER = 1, ID_USER_ORDER = 1, _id = 0 }, db.calls[2].options.projection)
    assert.are.same({ ID_USER = 1, ["ADDR.CITY"] = 1, _id = 0 }, db.calls[3].options.projection)
    -- whole documents for a custom identifier function
    local seen
    local pc = plan_of(ER_FOOD, [[{"sv": {"paths": [{"path": ["pr_orders", "pr_registry"],
      "identifier": "__fromFile__[f]"}]}}]], { custom = { f = function(doc) seen = doc; return {} end } })
    local db2 = fake_db({ pr_registry = public({ { ID_USER = "u1", NAME = "Ada" } }) })
    strategy.run(pc, "pr_orders", docs_of({ { ID_USER_ORDER = "u1" } }), db2)
    assert.is_nil(db2.calls[1].options)
    assert.are.equal("Ada", seen.NAME)
  end)

  it("names the top-level fields it reads from the changed documents, which are enough", function()
    local p = plan_of(ER_FOOD, [[{
      "sv_customers": {"paths": [{"path": ["pr_dishes", "pr_orders_dishes", "pr_orders", "pr_registry"],
        "identifier": {"ID_USER": "ID_USER", "CITY": "ADDR.CITY"}}]},
      "sv_orders": {"paths": [{"path": ["pr_orders_dishes", "pr_orders"], "identifier": {"ID": "ID_ORDER"}}]}}]])
    assert.are.same({ "ID_DISH" }, strategy.root_fields(p, "pr_dishes"))
    assert.are.same({ "ADDR", "ID_USER" }, strategy.root_fields(p, "pr_registry"))
    assert.are.same({}, strategy.root_fields(p, "pr_allergens"))
    local rows = {
      pr_orders_dishes = public({ { ID_ORDER = 7, ID_DISH = "d1", QTY = 2 } }),
      pr_orders = public({ { ID_ORDER = 7, ID_USER_ORDER = "u1", TOTAL = 9 } }),
      pr_registry = public({ { ID_USER = "u1", ADDR = { CITY = "Milano", STREET = "x" }, NAME = "Ada" } }),
    }
    for _, case in ipairs({
      { "pr_dishes", { { ID_DISH = "d1", NAME = "Pizza", PRICE = 8 }, { ID_DISH = "d2" } } },
      { "pr_registry", { { ID_USER = "u1", ADDR = { CITY = "Milano", STREET = "x" }, NAME = "Ada" } } },
    }) do
      local projection, whole = case[1], case[2]
      local only = {}
      for i, d in ipairs(whole) do
        only[i] = {}
        for _, f in ipairs(strategy.root_fields(p, projection)) do only[i][f] = d[f] end
      end
      local a = strategy.run(p, projection, docs_of(whole), fake_db(rows))
      local b = strategy.run(p, projection, docs_of(only), fake_db(rows))
      assert.is_true(#a > 0)
      assert.are.same(a, b)
    end
    -- a custom identifier function at the root gets whole documents
    local pc = plan_of(ER_FOOD, [[{"sv": {"paths": [{"path": ["pr_orders"],
      "identifier": "__fromFile__[f]"}]}}]], { custom = { f = function() return {} end } })
    assert.is_nil(strategy.root_fields(pc, "pr_orders"))
  end)

  it("exposes a plan as a hand-written strategy function", function()
    local fn = strategy.as_function(plan, "pr_orders", "sv_customers")
    local db = fake_db({ pr_registry = public({ { ID_USER = "u1" } }) })
    assert.are.same({ { ID_USER = "u1" } }, fn({ ID_USER_ORDER = "u1" }, db))
    assert.are.same({}, strategy.as_function(plan, "pr_orders", "sv_other")({ ID_USER_ORDER = "u1" }, db))
  end)

  it("passes 64-bit integers through filters and identifiers unchanged", function()
    local big = 9223372036854775807
    local p = plan_of([[{"pr_od": {"outgoing": {"pr_orders": {"conditions": {"c":
      {"condition": {"ID_ORDER": "ID_ORDER"}}}}}}}]],
      [[{"sv_orders": {"paths": [{"path": ["pr_od", "pr_orders"], "identifier": {"ID_ORDER": "ID_ORDER"}}]}}]])
    local db = fake_db({ pr_orders = public({ { ID_ORDER = big - 1 }, { ID_ORDER = big } }) })
    local res = strategy.run(p, "pr_od", docs_of({ { ID_ORDER = big } }), db)
    assert.are.same({ big }, sorted_values(db.calls[1].filter.ID_ORDER["$in"]))
    assert.are.equal(1, #res)
    assert.are.equal(big, res[1].identifier.ID_ORDER)
    assert.are.equal("integer", math.type(res[1].identifier.ID_ORDER))
  end)
end)
