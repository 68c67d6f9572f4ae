--[[
Specs of rtu.changes: the manual mode's identify, its de-duplication within a
call and, through the `seen` table the core keeps, across the one-document calls
it makes to find which document's strategy fails.
]]
local changes = require("rtu.changes")

local function manual(fn)
  return changes.build({ manual = { rows = { { sv = "sv_rows", name = "picky", fn = fn } } } })
end

describe("rtu.changes manual identify", function()
  local identify, involved = manual(function(doc)
    if doc.id == 3 then error("refused 3", 0) end
    return { { ID = doc.group } }
  end)

  it("marks the projections with strategies", function()
    assert.are.same({ rows = true }, involved)
  end)

  it("gives each single view once, with the origin of its last document", function()
    local out = identify("rows", { { doc = { id = 1, group = 7 }, origin = 0 },
                                   { doc = { id = 2, group = 7 }, origin = 1 },
                                   { doc = { id = 4, group = 8 }, origin = 2 } })
    assert.are.same({ { type = "sv_rows", identifier = { ID = 7 }, origin = 1 },
                      { type = "sv_rows", identifier = { ID = 8 }, origin = 2 } }, out)
  end)

  it("de-duplicates across calls that share seen", function()
    local seen = {}
    local a = identify("rows", { { doc = { id = 1, group = 7 }, origin = 0 } }, nil, nil, seen)
    local b = identify("rows", { { doc = { id = 2, group = 7 }, origin = 1 } }, nil, nil, seen)
    local c = identify("rows", { { doc = { id = 4, group = 9 }, origin = 2 } }, nil, nil, seen)
    assert.are.equal(1, #a)
    assert.are.same({}, b)
    assert.are.same({ { type = "sv_rows", identifier = { ID = 9 }, origin = 2 } }, c)
  end)

  it("lets a strategy error through to the core", function()
    assert.has_error(function()
      identify("rows", { { doc = { id = 1, group = 7 }, origin = 0 }, { doc = { id = 3 }, origin = 1 } })
    end, "refused 3")
  end)

  it("refuses a result that is not an array of identifiers", function()
    local bad = manual(function() return "nope" end)
    assert.has_error(function() bad("rows", { { doc = {}, origin = 0 } }) end,
      "strategy picky returned a string instead of an array of identifiers")
  end)

  it("batches a strategy's lookups across the documents, with the one-by-one results", function()
    local strategy = require("rtu.strategy")
    local w = { orders = {}, users = {} }
    for i = 1, 30 do w.orders[i] = { ID_ORDER = i, ID_USER_ORDER = "u" .. (i % 4), __STATE__ = "PUBLIC" } end
    for u = 0, 2 do w.users[#w.users + 1] = { ID_USER = "u" .. u, __STATE__ = "PUBLIC" } end
    local function db_of()
      local db = { calls = 0 }
      function db:find(coll, filter)
        self.calls = self.calls + 1
        local out = {}
        for _, d in ipairs(w[coll]) do
          if strategy.matches(d, filter) then out[#out + 1] = d end
        end
        return out
      end
      function db:findOne(coll, filter) return self:find(coll, filter)[1] end
      return db
    end
    -- customersOfOrderDish's shape: two dependent lookups
    local ident = manual(function(doc, db)
      local order = db:findOne("orders", { ID_ORDER = doc.ID_ORDER, __STATE__ = "PUBLIC" })
      if order == nil then return {} end
      local customer = db:findOne("users", { ID_USER = order.ID_USER_ORDER, __STATE__ = "PUBLIC" })
      if customer == nil then return {} end
      return { { ID_USER = customer.ID_USER } }
    end)
    local docs = {}
    for i = 1, 50 do docs[i] = { doc = { ID_ORDER = (i * 3) % 35 + 1 }, origin = i - 1 } end
    local db = db_of()
    local out = ident("rows", docs, db)
    assert.are.equal(2, db.calls)
    local seen, single, expected = {}, db_of(), {}
    for _, d in ipairs(docs) do
      for _, r in ipairs(ident("rows", { d }, single, nil, seen)) do expected[#expected + 1] = r end
    end
    assert.is_true(single.calls >= 50)
    assert.are.equal(3, #expected)
    -- the same single views in the same order; origins are of the last document
    for i, r in ipairs(out) do assert.are.same(expected[i].identifier, r.identifier) end
    assert.are.equal(#expected, #out)
  end)

  it("checks each document's result in the call, so the first bad one fails first", function()
    local bad = manual(function(doc) if doc.n == 2 then return "nope" end error("later", 0) end)
    assert.has_error(function() bad("rows", { { doc = { n = 2 }, origin = 0 }, { doc = { n = 3 }, origin = 1 } }) end,
      "strategy picky returned a string instead of an array of identifiers")
  end)
end)

describe("rtu.changes low-code identify", function()
  local json = require("rtu.json")
  local identify = assert(changes.build({
    automatic = true,
    er = json.decode('{"version": "1.0.0", "config": {}}'),
    pc = json.decode('{"version": "1.0.0", "config": {"sv_rows": {"paths": '
      .. '[{"path": ["rows"], "identifier": {"ID": "group"}}]}}}'),
    projections = { rows = true }, collections = { rows = "rows" },
  }))

  it("gives each single view once, with the origin of its last document, across calls that share seen", function()
    local seen = {}
    local a = identify("rows", { { doc = { group = 7 }, origin = 0 }, { doc = { group = 8 }, origin = 1 },
      { doc = { group = 7 }, origin = 2 } }, nil, nil, seen)
    local b = identify("rows", { { doc = { group = 8 }, origin = 3 }, { doc = { group = 9 }, origin = 4 } },
      nil, nil, seen)
    assert.are.same({ { type = "sv_rows", identifier = { ID = 7 }, origin = 2 },
                      { type = "sv_rows", identifier = { ID = 8 }, origin = 1 } }, a)
    assert.are.same({ { type = "sv_rows", identifier = { ID = 9 }, origin = 4 } }, b)
  end)
end)
