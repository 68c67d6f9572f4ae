--[[
Specs of rtu.matcher: one rule of MongoDB's documented query semantics each
(https://www.mongodb.com/docs/manual/reference/operator/query/, "Query an Array",
"Query for Null or Missing Fields", "Comparison/Sort Order"). The same documents
and queries against the MongoDB test server: spec/e2e/test_matcher_vs_server.py.
]]
local value = require("rtu.value")
local matcher = require("rtu.matcher")

local null, A, date = value.null, value.array, value.date

local function ok(doc, filter) return matcher.compile(filter)(doc) end

local function ids(docs, filter, options)
  local out = {}
  for i, d in ipairs(matcher.find(docs, filter, options)) do out[i] = d._id end
  return out
end

describe("rtu.matcher", function()
  describe("equality", function()
    it("matches a scalar field equal to the value, integers and floats alike", function()
      assert.is_true(ok({ a = 1 }, { a = 1 }))
      assert.is_true(ok({ a = 1 }, { a = 1.0 }))
      assert.is_false(ok({ a = 1 }, { a = "1" }))
      assert.is_false(ok({ a = 1 }, { a = 2 }))
    end)

    it("matches an array field holding the value as one of its elements", function()
      assert.is_true(ok({ a = A { 1, 2 } }, { a = 2 }))
      assert.is_false(ok({ a = A { 1, 2 } }, { a = 3 }))
    end)

    it("matches an array value against the whole array, in order, or an element array", function()
      assert.is_true(ok({ a = A { 1, 2 } }, { a = A { 1, 2 } }))
      assert.is_false(ok({ a = A { 1, 2 } }, { a = A { 2, 1 } }))
      assert.is_true(ok({ a = A { A { 1, 2 }, 3 } }, { a = A { 1, 2 } }))
    end)

    it("matches an embedded document exactly, not one with more fields", function()
      assert.is_true(ok({ a = { b = 1, c = 2 } }, { a = { b = 1, c = 2 } }))
      assert.is_false(ok({ a = { b = 1, c = 2 } }, { a = { b = 1 } }))
    end)

    it("compares dates by their instant", function()
      assert.is_true(ok({ d = date(1000) }, { d = date(1000) }))
      assert.is_false(ok({ d = date(1000) }, { d = 1000 }))
    end)
  end)

  describe("null and missing", function()
    it("{f: null} matches a null field and a missing one", function()
      assert.is_true(ok({ a = null }, { a = null }))
      assert.is_true(ok({}, { a = null }))
      assert.is_false(ok({ a = 0 }, { a = null }))
      assert.is_false(ok({ a = false }, { a = null }))
    end)

    it("{f: null} matches an array holding null, not an array without it", function()
      assert.is_true(ok({ a = A { 1, null } }, { a = null }))
      assert.is_false(ok({ a = A { 1, 2 } }, { a = null }))
    end)

    it("$ne null matches only fields present and not null", function()
      assert.is_true(ok({ a = 1 }, { a = { ["$ne"] = null } }))
      assert.is_false(ok({}, { a = { ["$ne"] = null } }))
      assert.is_false(ok({ a = null }, { a = { ["$ne"] = null } }))
    end)

    it("$exists tells present (null included) from missing", function()
      assert.is_true(ok({ a = null }, { a = { ["$exists"] = true } }))
      assert.is_false(ok({}, { a = { ["$exists"] = true } }))
      assert.is_true(ok({}, { a = { ["$exists"] = false } }))
      assert.is_true(ok({}, { a = { ["$exists"] = 0 } }))
    end)

    it("$gte and $lte null are {f: null}; $gt and $lt null match nothing", function()
      assert.is_true(ok({}, { a = { ["$gte"] = null } }))
      assert.is_true(ok({ a = null }, { a = { ["$lte"] = null } }))
      assert.is_false(ok({ a = 1 }, { a = { ["$gte"] = null } }))
      assert.is_false(ok({ a = null }, { a = { ["$gt"] = null } }))
      assert.is_false(ok({}, { a = { ["$lt"] = null } }))
    end)
  end)

  describe("comparison", function()
    it("compares numbers across integers and floats, exactly past 2^53", function()
      assert.is_true(ok({ a = 2 }, { a = { ["$gt"] = 1.5 } }))
      assert.is_true(ok({ a = 1.5 }, { a = { ["$lt"] = 2 } }))
      assert.is_true(ok({ a = 9007199254740993 }, { a = { ["$gt"] = 9007199254740992.0 } }))
      assert.is_false(ok({ a = 9007199254740993 }, { a = 9007199254740992.0 }))
    end)

    it("matches only values of the operand's type (type bracketing)", function()
      assert.is_false(ok({ a = "10" }, { a = { ["$gt"] = 5 } }))
      assert.is_false(ok({ a = 10 }, { a = { ["$gt"] = "5" } }))
      assert.is_false(ok({ a = true }, { a = { ["$gt"] = 0 } }))
      assert.is_false(ok({}, { a = { ["$lt"] = 5 } }))
    end)

    it("compares strings by their bytes and dates by instant", function()
      assert.is_true(ok({ a = "b" }, { a = { ["$gt"] = "a" } }))
      assert.is_true(ok({ a = "B" }, { a = { ["$lt"] = "a" } }))
      assert.is_true(ok({ d = date(5) }, { d = { ["$gte"] = date(5), ["$lt"] = date(6) } }))
    end)

    it("matches an array field when any element satisfies the comparison", function()
      assert.is_true(ok({ a = A { 1, 10 } }, { a = { ["$gt"] = 5 } }))
      assert.is_false(ok({ a = A { 1, 2 } }, { a = { ["$gt"] = 5 } }))
      -- each condition by some element, not necessarily the same one
      assert.is_true(ok({ a = A { 1, 10 } }, { a = { ["$gt"] = 5, ["$lt"] = 2 } }))
    end)

    it("$ne and $nin match a missing field and an array none of whose elements is equal", function()
      assert.is_true(ok({}, { a = { ["$ne"] = 1 } }))
      assert.is_false(ok({ a = A { 1, 2 } }, { a = { ["$ne"] = 1 } }))
      assert.is_true(ok({}, { a = { ["$nin"] = A { 1 } } }))
      assert.is_false(ok({ a = A { 3, 1 } }, { a = { ["$nin"] = A { 1, 2 } } }))
    end)

    it("$in matches any listed value, null as {f: null}", function()
      assert.is_true(ok({ a = 2 }, { a = { ["$in"] = A { 1, 2 } } }))
      assert.is_true(ok({ a = A { 5, 2 } }, { a = { ["$in"] = A { 1, 2 } } }))
      assert.is_true(ok({}, { a = { ["$in"] = A { 1, null } } }))
      assert.is_false(ok({ a = 3 }, { a = { ["$in"] = A {} } }))
      assert.has_error(function() matcher.compile({ a = { ["$in"] = 1 } }) end,
        "rtu.matcher: $in needs an array")
    end)
  end)

  describe("logical operators", function()
    local doc = { a = 1, b = "x" }

    it("$and, $or and $nor take non-empty arrays of filters", function()
      assert.is_true(ok(doc, { ["$and"] = A { { a = 1 }, { b = "x" } } }))
      assert.is_false(ok(doc, { ["$and"] = A { { a = 1 }, { b = "y" } } }))
      assert.is_true(ok(doc, { ["$or"] = A { { a = 2 }, { b = "x" } } }))
      assert.is_true(ok(doc, { ["$nor"] = A { { a = 2 }, { b = "y" } } }))
      assert.is_false(ok(doc, { ["$nor"] = A { { a = 1 } } }))
      assert.has_error(function() matcher.compile({ ["$or"] = A {} }) end,
        "rtu.matcher: $or needs a non-empty array")
    end)

    it("$not negates an operator object, matching missing fields too", function()
      assert.is_true(ok({ a = 1 }, { a = { ["$not"] = { ["$gt"] = 5 } } }))
      assert.is_true(ok({}, { a = { ["$not"] = { ["$gt"] = 5 } } }))
      assert.is_false(ok({ a = 9 }, { a = { ["$not"] = { ["$gt"] = 5 } } }))
      assert.has_error(function() matcher.compile({ a = { ["$not"] = 5 } }) end,
        "rtu.matcher: $not needs an operator object")
    end)
  end)

  describe("$elemMatch", function()
    it("needs one element satisfying every condition", function()
      assert.is_false(ok({ a = A { 1, 10 } }, { a = { ["$elemMatch"] = { ["$gt"] = 5, ["$lt"] = 8 } } }))
      assert.is_true(ok({ a = A { 1, 6 } }, { a = { ["$elemMatch"] = { ["$gt"] = 5, ["$lt"] = 8 } } }))
    end)

    it("matches embedded documents of the array against a filter", function()
      local d = { a = A { { b = 1, c = "x" }, { b = 2, c = "y" } } }
      assert.is_true(ok(d, { a = { ["$elemMatch"] = { b = 2, c = "y" } } }))
      assert.is_false(ok(d, { a = { ["$elemMatch"] = { b = 1, c = "y" } } }))
    end)

    it("does not match a field that is not an array", function()
      assert.is_false(ok({ a = 6 }, { a = { ["$elemMatch"] = { ["$gt"] = 5 } } }))
      assert.is_false(ok({ a = { b = 1 } }, { a = { ["$elemMatch"] = { b = 1 } } }))
    end)
  end)

  describe("dotted paths", function()
    it("reach into embedded documents", function()
      assert.is_true(ok({ a = { b = { c = 3 } } }, { ["a.b.c"] = 3 }))
      assert.is_false(ok({ a = { b = 4 } }, { ["a.b.c"] = 3 }))
    end)

    it("reach into the documents of an array, any of them", function()
      local d = { a = A { { b = 1 }, { b = 2 } } }
      assert.is_true(ok(d, { ["a.b"] = 2 }))
      assert.is_true(ok(d, { ["a.b"] = { ["$gt"] = 1 } }))
      assert.is_false(ok(d, { ["a.b"] = 3 }))
    end)

    it("index an array with a numeric part", function()
      local d = { a = A { 5, 7 }, o = A { { b = 1 }, { b = 2 } } }
      assert.is_true(ok(d, { ["a.1"] = 7 }))
      assert.is_false(ok(d, { ["a.0"] = 7 }))
      assert.is_true(ok(d, { ["o.1.b"] = 2 }))
    end)

    it("count a path stopped by a scalar, or an embedded document without the field, as missing", function()
      assert.is_true(ok({ a = 1 }, { ["a.b"] = null }))
      assert.is_true(ok({ a = null }, { ["a.b"] = null }))
      assert.is_true(ok({ a = A { { b = 1 }, { c = 1 } } }, { ["a.b"] = null }))
      assert.is_false(ok({ a = A { { b = 1 } } }, { ["a.b"] = null }))
      assert.is_false(ok({ a = A { { c = 1 } } }, { ["a.b"] = { ["$exists"] = true } }))
      assert.is_false(ok({ a = 1 }, { ["a.b"] = { ["$ne"] = null } }))
    end)

    it("reach nothing, not even missing, through an array without embedded documents", function()
      -- MongoDB before 9.0 (jstests/core/null2.js, null_query_semantics.js)
      assert.is_false(ok({ a = A {} }, { ["a.b"] = null }))
      assert.is_false(ok({ a = A { 1, 2 } }, { ["a.b"] = null }))
      assert.is_false(ok({ a = A { 5, { b = 5 } } }, { ["a.b"] = null }))
      assert.is_true(ok({ a = A { 1, 2 } }, { ["a.b"] = { ["$ne"] = null } }))
      assert.is_true(ok({ a = A {} }, { ["a.b"] = { ["$exists"] = false } }))
    end)
  end)

  describe("unsupported operators", function()
    it("raise an error naming them, at the top level and on a field", function()
      assert.has_error(function() matcher.compile({ a = { ["$regex"] = "x" } }) end,
        "rtu.matcher: unsupported operator $regex")
      assert.has_error(function() matcher.compile({ ["$where"] = "1" }) end,
        "rtu.matcher: unsupported operator $where")
      assert.has_error(function() matcher.compile({ a = { ["$not"] = { ["$size"] = 1 } } }) end,
        "rtu.matcher: unsupported operator $size")
    end)
  end)

  describe("compare (sort order)", function()
    it("orders types null < numbers < strings < objects < arrays < booleans < dates", function()
      local order = { null, -1, 2.5, "a", { x = 1 }, A { 1 }, false, true, date(0) }
      for i = 1, #order - 1 do
        assert.are.equal(-1, matcher.compare(order[i], order[i + 1]), "at " .. i)
        assert.are.equal(1, matcher.compare(order[i + 1], order[i]), "at " .. i)
      end
      assert.are.equal(0, matcher.compare(nil, null))
      assert.are.equal(0, matcher.compare(1, 1.0))
    end)
  end)

  describe("find", function()
    local docs = {
      { _id = 1, n = 3, tag = "b", sub = { x = 1, y = 2 } },
      { _id = 2, n = 1, tag = "a", sub = { x = 2, y = 3 } },
      { _id = 3, tag = "c" },
      { _id = 4, n = A { 0, 9 }, tag = "a" },
      { _id = 5, n = 1, tag = "b" },
    }

    it("keeps the documents' order without a sort", function()
      assert.are.same({ 2, 4, 5 }, ids(docs, { n = { ["$lt"] = 2 } }))
    end)

    it("sorts missing first ascending, an array by its smallest element (largest descending)", function()
      assert.are.same({ 3, 4, 2, 5, 1 }, ids(docs, {}, { sort = { n = 1 } }))
      assert.are.same({ 4, 1, 2, 5, 3 }, ids(docs, {}, { sort = { n = -1 } }))
    end)

    it("sorts on several fields given as ordered pairs, equal keys in the documents' order", function()
      assert.are.same({ 4, 2, 1, 5, 3 }, ids(docs, {}, { sort = A { A { "tag", 1 }, A { "n", -1 } } }))
      assert.has_error(function() matcher.find(docs, {}, { sort = { tag = 1, n = 1 } }) end)
    end)

    it("skips then limits, a negative limit as its absolute value", function()
      assert.are.same({ 2, 5 }, ids(docs, {}, { sort = { n = 1 }, skip = 2, limit = 2 }))
      assert.are.same({ 1, 2 }, ids(docs, {}, { limit = -2 }))
    end)

    it("projects by inclusion (with _id unless excluded) or by exclusion", function()
      local r = matcher.find(docs, { _id = 1 }, { projection = { tag = 1, ["sub.y"] = 1 } })
      assert.are.same({ { _id = 1, tag = "b", sub = { y = 2 } } }, r)
      r = matcher.find(docs, { _id = 1 }, { projection = { tag = 1, _id = 0 } })
      assert.are.same({ { tag = "b" } }, r)
      r = matcher.find(docs, { _id = 2 }, { projection = { sub = 0, n = 0 } })
      assert.are.same({ { _id = 2, tag = "a" } }, r)
      assert.has_error(function() matcher.find(docs, {}, { projection = { tag = 1, n = 0 } }) end,
        "rtu.matcher: projection cannot mix inclusion and exclusion")
    end)
  end)
end)
