--[[
Specs of the parts of rtu.strategy on their own (the walk through them is in
strategy_spec.lua, the batched calls in batched_spec.lua).
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")
local conditions = require("rtu.strategy.conditions")
local results = require("rtu.strategy.results")
local hop = require("rtu.strategy.hop")

local null, A = value.null, value.array

describe("rtu.strategy.match", function()
  it("gets a dotted path through objects only", function()
    local doc = { a = { b = { c = 1 } }, l = A { { b = 1 } }, d = value.date(5), ["x.y"] = 2 }
    assert.are.equal(1, match.get(doc, "a.b.c"))
    assert.is_nil(match.get(doc, "l.b"))
    assert.is_nil(match.get(doc, "d.ms"))
    assert.are.equal(2, match.get(doc, "x.y")) -- a field named so is read first
  end)

  it("gives equal keys to values canonical() finds equal", function()
    assert.are.equal(match.vkey(1), match.vkey(1.0))
    assert.are.equal(match.vkey(value.date(7)), match.vkey(value.date(7)))
    assert.are_not.equal(match.vkey("1"), match.vkey(1))
    assert.are.equal(match.vkey({ a = 1, b = 2 }), match.vkey({ b = 2, a = 1 }))
    assert.are.equal("s3:", match.string_heads[3])
  end)
end)

describe("rtu.strategy.conditions", function()
  local node = { k = "and", list = {
    { k = "field", field = "B_ID", ops = { { op = "$eq", arg = { src = "A_ID" } } } },
    { k = "field", field = "STATUS", ops = { { op = "$in", list = { { const = "x" }, { src = "S" } } } } },
  } }

  it("collects the target or the source fields a condition reads", function()
    local t, s = {}, {}
    conditions.fields(node, "field", t)
    conditions.fields(node, "src", s)
    assert.are.same({ B_ID = true, STATUS = true }, t)
    assert.are.same({ A_ID = true, S = true }, s)
  end)

  it("instantiates a condition for one document, false when a source value is missing", function()
    local f = conditions.instantiate(node, { A_ID = 4, S = "y" })
    assert.are.same({ B_ID = 4, STATUS = { ["$in"] = { "x", "y" } } }, f)
    assert.is_false(conditions.instantiate(node, { A_ID = null, S = "y" }))
  end)
end)

describe("rtu.strategy.results", function()
  local docs = { { k = "a" }, { k = A { "a", "b" } }, { k = "c" }, { j = 1 } }

  it("indexes a field's values and array elements, a single position as a number", function()
    local index_of = results.result_index(docs)
    local idx = index_of("k")
    assert.are.same({ 1, 2 }, idx.a)
    assert.are.equal(2, idx.b)
    assert.are.equal(3, idx.c)
    assert.are.equal(idx, index_of("k")) -- built once per field
  end)

  it("attributes the results matching a filter, ascending, at most limit", function()
    local index_of = results.result_index(docs)
    assert.are.same({ 1, 2 }, results.attribute(docs, index_of, { k = "a" }, math.huge))
    assert.are.same({ 1 }, results.attribute(docs, index_of, { k = "a" }, 1))
    assert.are.same({ 2, 3 }, results.attribute(docs, index_of,
      { k = { ["$in"] = A { "b", "c" } } }, math.huge))
    assert.are.same({ 4 }, results.attribute(docs, index_of, { j = { ["$gt"] = 0 } }, math.huge))
  end)
end)

describe("rtu.strategy.hop", function()
  it("asks one $in of the distinct source values and gives each result the latest item", function()
    local node = {
      hop = { collection = "pr_b", conditions = { {
        node = { k = "field", field = "B_F", ops = { { op = "$eq", arg = { src = "A_F" } } } },
        simple = { field = "B_F", src = "A_F" }, one_to_many = true } } },
      terminals = {}, children = {},
    }
    local calls = {}
    local db = { find = function(_, coll, filter, options)
      calls[#calls + 1] = { coll = coll, filter = filter, options = options }
      return { { B_F = 1, N = "one" }, { B_F = 2, N = "two" }, { B_F = 1, N = "uno" } }
    end }
    local stats = { queries = 0, documents = 0 }
    local next_docs, lasts = hop.run(node, { { A_F = 1 }, { A_F = 2 }, { A_F = 1 } }, { 1, 2, 3 }, db,
      stats)
    assert.are.equal(1, #calls)
    assert.are.equal("pr_b", calls[1].coll)
    assert.are.same({ 1, 2 }, calls[1].filter.B_F["$in"])
    assert.are.equal("PUBLIC", calls[1].filter.__STATE__)
    assert.are.same({ B_F = 1, _id = 0 }, calls[1].options.projection)
    assert.are.same({ "one", "two", "uno" }, { next_docs[1].N, next_docs[2].N, next_docs[3].N })
    assert.are.same({ 3, 2, 3 }, lasts)
    assert.are.same({ queries = 1, documents = 3 }, stats)
  end)
end)
