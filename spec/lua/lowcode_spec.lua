--[[
Specs of rtu.lowcode: validation of erSchema.json and projectionChangesSchema.json
(contract sections 5.3 and 5.4) and the shape of the compiled plan.
]]
local json = require("rtu.json")
local lowcode = require("rtu.lowcode")

local function er(config)
  return json.decode('{"version": "1.0.0", "config": ' .. config .. '}')
end

local function pc(config)
  return json.decode('{"version": "1.0.0", "config": ' .. config .. '}')
end

local PROJECTIONS = { "pr_a", "pr_b", "pr_c", "pr_d" }

local ER_ABCD = [[{
  "pr_a": {"outgoing": {"pr_b": {"conditions": {"a_to_b": {"condition": {"ID_A": "ID_A"}, "oneToMany": true}}}}},
  "pr_b": {"outgoing": {
    "pr_a": {"conditions": {"b_to_a": {"condition": {"ID_A": "ID_A"}}}},
    "pr_c": {"conditions": {"b_to_c": {"condition": {"ID_C": "ID_C_B"}}}}}},
  "pr_c": {"outgoing": {
    "pr_b": {"conditions": {"c_to_b": {"condition": {"ID_C_B": "ID_C"}, "oneToMany": true}}},
    "pr_d": {"conditions": {"c_to_d": {"condition": {"ID_D": "ID_D_C"}}}}}},
  "pr_d": {"outgoing": {"pr_c": {"conditions": {"d_to_c": {"condition": {"ID_D_C": "ID_D"}, "oneToMany": true}}}}}
}]]

local function compile(erc, pcc, opts)
  opts = opts or {}
  if opts.projections == nil then opts.projections = PROJECTIONS end
  return lowcode.compile(er(erc), pc(pcc), opts)
end

local function has(problems, text)
  for _, p in ipairs(problems) do
    if p == text then return true end
  end
  return false, "no problem\n  " .. text .. "\nin\n  " .. table.concat(problems, "\n  ")
end

local function assert_problem(problems, text)
  local ok, msg = has(problems, text)
  assert(ok, msg)
end

local function condition_problems(condition)
  local _, problems = compile('{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c1": {"condition": '
    .. condition .. '}}}}}}', '{}')
  return problems
end

describe("rtu.lowcode.compile", function()
  it("compiles a valid pair of files without problems", function()
    local plan, problems = compile(ER_ABCD, [[{
      "sv_d": {"paths": [{"path": ["pr_a", "pr_b", "pr_c", "pr_d"], "identifier": {"ID": "ID_D"}}]}
    }]])
    assert.are.same({}, problems)
    assert.are.equal("pr_b", plan.hops.pr_a.pr_b.to)
    assert.are.equal("pr_b", plan.hops.pr_a.pr_b.collection)
    assert.is_true(plan.hops.pr_a.pr_b.conditions[1].one_to_many)
    assert.is_false(plan.hops.pr_b.pr_c.conditions[1].one_to_many)
    assert.are.same({ { key = "ID", field = "ID_D" } }, plan.views[1].paths[1].identifier.fields)
    assert.are.same({ queries = 0, custom_calls = 0 }, plan.stats)
  end)

  it("accepts the empty default files", function()
    local plan, problems = lowcode.compile(json.decode('{"version": "1.0.0", "config": {}}'),
      json.decode('{"version": "1.0.0", "config": {}}'), {})
    assert.are.same({}, problems)
    assert.are.same({}, plan.views)
    assert.is_nil(next(plan.routes))
  end)

  it("makes every sub-path of a path a route (sub-paths are implicit)", function()
    local plan, problems = compile(ER_ABCD, [[{
      "sv_d": {"paths": [{"path": ["pr_a", "pr_b", "pr_c", "pr_d"], "identifier": {"ID": "ID_D"}}]}
    }]])
    assert.are.same({}, problems)
    local function depth(node)
      local n = 0
      while node.children[1] do node = node.children[1]; n = n + 1 end
      assert.are.equal("sv_d", node.terminals[1].view)
      return n
    end
    assert.are.equal(3, depth(plan.routes.pr_a))
    assert.are.equal(2, depth(plan.routes.pr_b))
    assert.are.equal(1, depth(plan.routes.pr_c))
    assert.are.equal(0, depth(plan.routes.pr_d))
    assert.are.equal(plan.hops.pr_b.pr_c, plan.routes.pr_b.children[1].hop)
  end)

  it("shares the hops of routes that begin alike and drops duplicate terminals", function()
    local plan, problems = compile(ER_ABCD, [[{
      "sv_c": {"paths": [{"path": ["pr_a", "pr_b", "pr_c"], "identifier": {"ID": "ID_C"}},
                         {"path": ["pr_b", "pr_c"], "identifier": {"ID": "ID_C"}}]},
      "sv_d": {"paths": [{"path": ["pr_a", "pr_b", "pr_c", "pr_d"], "identifier": {"ID": "ID_D"}}]}
    }]])
    assert.are.same({}, problems)
    local a = plan.routes.pr_a
    assert.are.equal(1, #a.children)
    local c = a.children[1].children[1]
    assert.are.equal("pr_c", c.projection)
    assert.are.equal(1, #c.terminals)
    assert.are.equal("sv_c", c.terminals[1].view)
    assert.are.equal(1, #c.children)
    assert.is_true(c.views.sv_d and a.views.sv_c)
    assert.are.equal(1, #plan.routes.pr_b.children[1].terminals)
  end)

  it("uses the mapTable destination as the collection of a hop", function()
    local plan = compile(ER_ABCD, '{}', { collections = { pr_b = "b-collection" } })
    assert.are.equal("b-collection", plan.hops.pr_a.pr_b.collection)
  end)

  it("recognises the single-field condition that is looked up with $in", function()
    local plan = compile(ER_ABCD, '{}')
    assert.are.same({ field = "ID_C", src = "ID_C_B" }, plan.hops.pr_b.pr_c.conditions[1].simple)
  end)

  it("recognises a foreign key with constants beside it, and nothing with two source fields", function()
    local plan, problems = compile([[{"pr_a": {"outgoing": {
      "pr_b": {"conditions": {"c": {"condition": {"FK": "ID", "S": {"$ne": "__string__[X]"},
        "$or": [{"T": 1}, {"T": 2}]}}}},
      "pr_c": {"conditions": {"c": {"condition": {"FK": "ID", "S": {"$ne": "X2"}}}}},
      "pr_d": {"conditions": {"c": {"condition": {"FK": "ID", "S": {"$eq": "ID"}}}}}}}}]], '{}')
    assert.are.same({}, problems)
    local simple = plan.hops.pr_a.pr_b.conditions[1].simple
    assert.are.equal("FK", simple.field)
    assert.are.equal("ID", simple.src)
    assert.are.equal(2, #simple.rest.list) -- S and the $or
    assert.is_nil(plan.hops.pr_a.pr_c.conditions[1].simple) -- "X2" is a source field
    assert.is_nil(plan.hops.pr_a.pr_d.conditions[1].simple)
  end)

  it("keeps every named condition of a pair, sorted by name", function()
    local plan, problems = compile([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {
      "z_second": {"condition": {"ID_SUB": "ID"}},
      "a_first": {"condition": {"ID": "ID"}, "oneToMany": true}}}}}}]], '{}')
    assert.are.same({}, problems)
    local cs = plan.hops.pr_a.pr_b.conditions
    assert.are.equal("a_first", cs[1].name)
    assert.are.equal("z_second", cs[2].name)
    assert.is_true(cs[1].one_to_many)
    assert.is_false(cs[2].one_to_many)
  end)

  describe("typed constants", function()
    local function ref_of(condition)
      local plan, problems = compile('{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c1": {"condition": '
        .. condition .. '}}}}}}', '{}')
      assert.are.same({}, problems)
      return plan.hops.pr_a.pr_b.conditions[1].node.list[1].ops[1].arg
    end

    it("reads __string__, __constant__, __integer__ and __boolean__", function()
      assert.are.same({ const = "testID" }, ref_of('{"F": "__string__[testID]"}'))
      assert.are.same({ const = "" }, ref_of('{"F": "__string__[]"}'))
      assert.are.same({ const = "a]b" }, ref_of('{"F": "__constant__[a]b]"}'))
      assert.are.same({ const = -42 }, ref_of('{"F": "__integer__[-42]"}'))
      assert.are.equal(math.maxinteger, ref_of('{"F": "__integer__[9223372036854775807]"}').const)
      assert.are.equal("integer", math.type(ref_of('{"F": "__integer__[12]"}').const))
      assert.are.same({ const = true }, ref_of('{"F": "__boolean__[true]"}'))
      assert.are.same({ const = false }, ref_of('{"F": "__boolean__[false]"}'))
    end)

    it("takes other strings as source field names and JSON scalars as constants", function()
      assert.are.same({ src = "ID_X" }, ref_of('{"F": "ID_X"}'))
      assert.are.same({ const = 3 }, ref_of('{"F": 3}'))
      assert.are.same({ const = true }, ref_of('{"F": true}'))
      assert.are.same({ const = json.null }, ref_of('{"F": null}'))
    end)
  end)

  describe("problems", function()
    it("names an unknown projection of a path", function()
      local _, problems = compile(ER_ABCD, [[{
        "sv_customers": {"paths": [{"path": ["pr_a"], "identifier": {"ID": "ID_A"}},
                                   {"path": ["pr_a", "pr_x"], "identifier": {"ID": "ID"}}]}}]])
      assert_problem(problems, "projectionChangesSchema.json: config.sv_customers.paths[1].path[1]: "
        .. "unknown projection 'pr_x' (not in mapTable.json)")
    end)

    it("names a hop with no relation in erSchema.json", function()
      local plan, problems = compile(ER_ABCD, [[{
        "sv_x": {"paths": [{"path": ["pr_a", "pr_c"], "identifier": {"ID": "ID"}}]}}]])
      assert_problem(problems, "projectionChangesSchema.json: config.sv_x.paths[0].path[1]: "
        .. "no relation pr_a -> pr_c in erSchema.json (config.pr_a.outgoing.pr_c)")
      assert.is_nil(plan.routes.pr_a)
    end)

    it("names bad typed constants", function()
      local problems = condition_problems('{"F": "__integer__[abc]", "G": "__boolean__[yes]", '
        .. '"H": "__float__[1.5]", "I": "__integer__[99999999999999999999]"}')
      local at = "erSchema.json: config.pr_a.outgoing.pr_b.conditions.c1.condition"
      assert_problem(problems, at .. ".F: '__integer__[abc]': not a 64-bit integer")
      assert_problem(problems, at .. ".G: '__boolean__[yes]': a boolean is true or false")
      assert_problem(problems, at .. ".H: '__float__[1.5]': unknown typed constant (use "
        .. "__string__[..], __integer__[..], __boolean__[..] or __constant__[..])")
      assert_problem(problems, at .. ".I: '__integer__[99999999999999999999]': not a 64-bit integer")
      assert.are.equal(4, #problems)
    end)

    it("names bad operators and operands inside $or / $and and operator objects", function()
      local at = "erSchema.json: config.pr_a.outgoing.pr_b.conditions.c1.condition"
      local problems = condition_problems([[{"$or": [{"F": "X"}, {"G": {"$in": "__string__[a]"}}],
        "$and": [{"H": {"$gt": "__integer__[x]"}}, "oops"], "$where": "1", "I": {"$regex": "^a"},
        "J": {"nested": "X"}, "K": {"$in": []}, "L": {"$exists": "yes"}, "M": [1, 2]}]])
      assert_problem(problems, at .. ".$or[1].G.$in: expected an array of operands or a source "
        .. "field holding an array, got a string")
      assert_problem(problems, at .. ".$and[0].H.$gt: '__integer__[x]': not a 64-bit integer")
      assert_problem(problems, at .. ".$and[1]: expected an object, got a string")
      assert_problem(problems, at .. ".$where: unsupported operator '$where' (supported here: $or, $and)")
      assert_problem(problems, at .. ".I.$regex: unsupported operator '$regex' (supported: $eq, "
        .. "$ne, $gt, $gte, $lt, $lte, $in, $nin, $exists)")
      assert_problem(problems, at .. ".J: expected a source field name, a typed constant or an "
        .. "operator object ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists), got an object")
      assert_problem(problems, at .. ".K.$in: empty list")
      assert_problem(problems, at .. ".L.$exists: expected a boolean")
      assert_problem(problems, at .. ".M: expected a source field name, a typed constant or an "
        .. "operator object ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists), got an array")
      assert.are.equal(9, #problems)
    end)

    it("drops a relation whose only condition has a problem", function()
      local plan, problems = compile([[{"pr_a": {"outgoing": {"pr_b": {"conditions":
        {"c1": {"condition": {"F": "__integer__[abc]"}}}}}}}]],
        [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID"}}]}}]])
      assert.is_nil(plan.hops.pr_a)
      assert.are.equal(2, #problems)
    end)

    it("names structural problems of erSchema.json", function()
      local plan, problems = lowcode.compile(json.decode([[{"config": {
        "pr_a": {"outgoing": {"pr_b": {"conditions": {}},
                              "pr_c": {"conditions": {"c1": {"condition": "ID", "oneToMany": "yes"}}},
                              "pr_d": {"conditions": {"c2": {"oneToMany": true, "extra": 1}}},
                              "pr_e": [] }, "incoming": {}},
        "pr_f": {},
        "pr_g": {"outgoing": {"pr_h": {"conditions": {"c3": {"condition": {}}}}}}
      }, "extra": 1}]]), json.decode('{"version": "1", "config": {}}'), {})
      assert.are.same({}, plan.hops)
      for _, p in ipairs({
        "erSchema.json: version: expected a string, got nothing",
        "erSchema.json: extra: unknown key",
        "erSchema.json: config.pr_a.incoming: unknown key",
        "erSchema.json: config.pr_a.outgoing.pr_b.conditions: no condition",
        "erSchema.json: config.pr_a.outgoing.pr_c.conditions.c1.oneToMany: expected a boolean, got a string",
        "erSchema.json: config.pr_a.outgoing.pr_c.conditions.c1.condition: expected an object, got a string",
        "erSchema.json: config.pr_a.outgoing.pr_d.conditions.c2.extra: unknown key",
        "erSchema.json: config.pr_a.outgoing.pr_d.conditions.c2.condition: expected an object, got nothing",
        "erSchema.json: config.pr_a.outgoing.pr_e: expected an object {conditions}, got an array",
        "erSchema.json: config.pr_f.outgoing: expected an object, got nothing",
        "erSchema.json: config.pr_g.outgoing.pr_h.conditions.c3.condition: empty condition",
      }) do assert_problem(problems, p) end
      assert.are.equal(11, #problems)
    end)

    it("names a file that is not an object", function()
      local _, problems = lowcode.compile(json.decode("[]"), json.decode('"x"'), {})
      assert_problem(problems, "erSchema.json: (root): expected an object {version, config}, got an array")
      assert_problem(problems, "projectionChangesSchema.json: (root): expected an object {version, "
        .. "config}, got a string")
    end)

    it("names structural problems of projectionChangesSchema.json", function()
      local _, problems = lowcode.compile(er(ER_ABCD), json.decode([[{"version": "1.0.0", "config": {
        "sv_1": {"paths": {}},
        "sv_2": [],
        "sv_3": {"paths": [{"path": [], "identifier": {"ID": "ID"}}, {"path": "pr_a", "identifier": {"ID": "ID"}},
                           {"path": ["pr_a", 3], "identifier": {"ID": "ID"}}, "pr_a"]}
      }}]]), { projections = PROJECTIONS })
      for _, p in ipairs({
        "projectionChangesSchema.json: config.sv_1.paths: expected an array, got an object",
        "projectionChangesSchema.json: config.sv_2: expected an object {paths}, got an array",
        "projectionChangesSchema.json: config.sv_3.paths[0].path: expected a non-empty array of "
          .. "projection names, got an array",
        "projectionChangesSchema.json: config.sv_3.paths[1].path: expected a non-empty array of "
          .. "projection names, got a string",
        "projectionChangesSchema.json: config.sv_3.paths[2].path[1]: expected a projection name, got a number",
        "projectionChangesSchema.json: config.sv_3.paths[3]: expected an object {path, identifier}, got a string",
      }) do assert_problem(problems, p) end
      assert.are.equal(6, #problems)
    end)

    it("names an identifier that is neither an object of strings nor __fromFile__[name]", function()
      local _, problems = compile(ER_ABCD, [[{"sv": {"paths": [
        {"path": ["pr_a"], "identifier": "ID_A"},
        {"path": ["pr_b"], "identifier": {"ID": 3}},
        {"path": ["pr_c"], "identifier": {}},
        {"path": ["pr_d"]},
        {"path": ["pr_a"], "identifier": "__fromFile__[]"}]}}]])
      local at = "projectionChangesSchema.json: config.sv.paths"
      assert_problem(problems, at .. "[0].identifier: expected an object of strings or "
        .. "\"__fromFile__[name]\", got 'ID_A'")
      assert_problem(problems, at .. "[1].identifier.ID: expected a field name of pr_b, got a number")
      assert_problem(problems, at .. "[2].identifier: expected an object of strings or "
        .. "\"__fromFile__[name]\", got an object")
      assert_problem(problems, at .. "[3].identifier: expected an object of strings or "
        .. "\"__fromFile__[name]\", got nothing")
      assert_problem(problems, at .. "[4].identifier: expected an object of strings or "
        .. "\"__fromFile__[name]\", got '__fromFile__[]'")
      assert.are.equal(5, #problems)
    end)

    it("names a custom identifier function that is not loaded, and binds one that is", function()
      local function fn() return {} end
      local pcc = [[{"sv": {"paths": [{"path": ["pr_a", "pr_b"], "identifier": "__fromFile__[myFn]"}]}}]]
      local _, problems = compile(ER_ABCD, pcc)
      assert.are.same({ "projectionChangesSchema.json: config.sv.paths[0].identifier: custom "
        .. "identifier function 'myFn' not found (expected myFn.lua in PROJECTION_CHANGES_SCHEMA_FOLDER)" },
        problems)
      local plan, problems2 = compile(ER_ABCD, pcc, { custom = { myFn = fn } })
      assert.are.same({}, problems2)
      assert.are.same({ kind = "custom", name = "myFn", fn = fn }, plan.views[1].paths[1].identifier)
    end)

    it("checks fields against the mapTable when they are given", function()
      local _, problems = compile(ER_ABCD, [[{"sv": {"paths": [
        {"path": ["pr_a", "pr_b"], "identifier": {"ID": "ID_NOPE", "S": "__STATE__"}}]}}]], {
        fields = { pr_a = { "ID_A" }, pr_b = { ID_A = true, ID_C_B = true } },
      })
      assert.are.same({
        "projectionChangesSchema.json: config.sv.paths[0].identifier.ID: 'ID_NOPE' is not a field of pr_b",
      }, problems)
      local _, problems2 = compile([[{"pr_a": {"outgoing": {"pr_b": {"conditions": {"c1": {"condition":
        {"ID_B": "ID_NOPE", "ID_A": "ID_A", "address.city": "CITY", "$or": [{"X": "__string__[x]"}]}}}}}}}]],
        '{}', { fields = { pr_a = { "ID_A", "CITY" }, pr_b = { "ID_A", "ID_B", "address" } } })
      assert.are.same({
        "erSchema.json: config.pr_a.outgoing.pr_b.conditions.c1.condition.$or[0].X: 'X' is not a field of pr_b",
        "erSchema.json: config.pr_a.outgoing.pr_b.conditions.c1.condition.ID_B: 'ID_NOPE' is not a field of pr_a",
      }, problems2)
    end)

    it("quotes keys that a dotted path would make ambiguous", function()
      local problems = condition_problems('{"a.b": "__integer__[x]"}')
      assert.are.same({ 'erSchema.json: config.pr_a.outgoing.pr_b.conditions.c1.condition["a.b"]: '
        .. "'__integer__[x]': not a 64-bit integer" }, problems)
    end)

    it("skips the projection check when no projections are given", function()
      local _, problems = lowcode.compile(er(ER_ABCD),
        pc('{"sv": {"paths": [{"path": ["pr_zz"], "identifier": {"ID": "ID"}}]}}'), {})
      assert.are.same({}, problems)
    end)
  end)

  describe("the food-delivery example", function()
    local dir = "examples/food-delivery/"
    local function read(path)
      local f = assert(io.open(dir .. path))
      local text = f:read("a")
      f:close()
      return text
    end
    local function script(path)
      local env = require("rtu.sandbox").new_env()
      return assert(load(read(path), "@" .. path, "t", env))()
    end

    it("compiles without problems, every projection triggering some single view", function()
      local map = json.decode(read("mapTable/mapTable.json"))
      local projections, fields, collections = {}, {}, {}
      for name, p in pairs(map) do
        projections[name] = true
        collections[name] = p.destination
        fields[name] = {}
        for _, c in pairs(p.conversion) do fields[name][c.fieldName] = true end
      end
      local fn = script("projectionChangesSchema/restaurantsOfReview.lua")
      assert.are.equal("function", type(fn))
      local plan, problems = lowcode.compile(json.decode(read("erSchema/erSchema.json")),
        json.decode(read("projectionChangesSchema/projectionChangesSchema.json")),
        { projections = projections, fields = fields, collections = collections,
          custom = { restaurantsOfReview = fn } })
      assert.are.same({}, problems)
      for name in pairs(projections) do assert.is_table(plan.routes[name], name) end
      assert.are.same({ "sv_customers", "sv_restaurants" }, { plan.views[1].name, plan.views[2].name })
      assert.are.equal("function", type(script("strategies/customersOfOrderDish.lua")))
      assert.are.equal("function", type(script("castFunctions/castPhoneToE164.lua")))
    end)
  end)
end)
