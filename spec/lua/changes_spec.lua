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
end)
