-- rtu.testing: the busted helper users test their strategies with. Each spec
-- checks one promise of its header, on the shipped samples (strategies/) and the
-- food-delivery example, so a sample that stops doing what its cases say fails
-- here as well as in `rtu test`.
local testing = require("rtu.testing")
local value = require("rtu.value")

local null = value.null
local SAMPLES = "strategies"
local EXAMPLE = "examples/food-delivery"

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("rtu.testing.db", function()
  it("fills __STATE__ PUBLIC where a given document has none, and keeps a given one", function()
    local db = testing.db({ c = { { a = 1 }, { a = 2, __STATE__ = "DELETED" } } })
    assert.same({ { a = 1, __STATE__ = "PUBLIC" } }, db:find("c", { __STATE__ = "PUBLIC" }))
    assert.same({ a = 2, __STATE__ = "DELETED" }, db:findOne("c", { __STATE__ = "DELETED" }))
  end)

  it("answers with MongoDB's matching rules (through rtu.matcher), options included", function()
    local db = testing.db({ c = {
      { k = 1, tags = value.array({ "x", "y" }) },
      { k = 2, tags = value.array({ "z" }) },
      { k = 3 },
    } })
    local found = db:find("c", { tags = "y" })
    assert.equal(1, #found)
    assert.equal(1, found[1].k)
    assert.same({ { k = 3 }, { k = 2 } },
      db:find("c", { k = { ["$gte"] = 2 } }, { sort = { k = -1 }, projection = { k = 1, _id = 0 } }))
    assert.is_nil(db:findOne("c", { k = 9 }))
    assert.equal(2, #db:find("c", { tags = { ["$exists"] = true } }))
  end)

  it("fails on an operator it does not know, naming it", function()
    local db = testing.db({ c = { { k = 1 } } })
    assert.has_error(function() db:find("c", { k = { ["$regex"] = "^1" } }) end,
      "db:find on c failed: rtu.matcher: unsupported operator $regex")
  end)

  it("gives copies: a strategy changing what it found does not change the store", function()
    local db = testing.db({ c = { { k = 1, sub = { n = 1 } } } })
    db:findOne("c", { k = 1 }).sub.n = 99
    assert.equal(1, db:findOne("c", { k = 1 }).sub.n)
  end)

  it("records every call with its result", function()
    local db = testing.db({ c = { { k = 1 } } })
    db:find("c", { k = 1 })
    db:findOne("d", { k = 1 })
    assert.equal(2, #db.calls)
    assert.same({ "find", "c", { k = 1 } }, { db.calls[1].method, db.calls[1].collection, db.calls[1].filter })
    assert.equal(1, #db.calls[1].result)
    assert.same({ "findOne", "d" }, { db.calls[2].method, db.calls[2].collection })
    assert.is_nil(db.calls[2].result)
  end)
end)

describe("rtu.testing.strategy", function()
  local one_hop = testing.strategy(SAMPLES .. "/one-hop-lookup/customerOfAccount.lua")
  local customers = { pr_customers = {
    { ID_CUSTOMER = 1, CUSTOMER_CODE = "CU-0001" },
    { ID_CUSTOMER = 2, CUSTOMER_CODE = "CU-0002", __STATE__ = "DELETED" },
  } }

  it("runs the one-hop sample: the customer's code, none for an unknown or deleted customer", function()
    assert.same({ { customerCode = "CU-0001" } }, one_hop:run({ ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, customers))
    assert.same({}, one_hop:run({ ID_ACCOUNT = "A9", ID_CUSTOMER = 99 }, customers))
    assert.same({}, one_hop:run({ ID_ACCOUNT = "A2", ID_CUSTOMER = 2 }, customers))
    assert.same({}, one_hop:run({ ID_ACCOUNT = "A3", ID_CUSTOMER = null }, customers))
  end)

  it("gives what the strategy asked and logged", function()
    local _, run = one_hop:run({ ID_ACCOUNT = "A9", ID_CUSTOMER = 99 }, customers)
    assert.equal(1, #run.calls)
    assert.same({ ID_CUSTOMER = 99, __STATE__ = "PUBLIC" }, run.calls[1].filter)
    assert.equal("findOne", run.calls[1].method)
    assert.same({ level = "debug", message = "account of an unknown customer",
      fields = { ID_ACCOUNT = "A9" } }, run.logs[1])
  end)

  it("runs the fan-out sample: one identifier per open account", function()
    local s = testing.strategy(SAMPLES .. "/fan-out/accountsOfCustomer.lua")
    local ids = s:run({ ID_CUSTOMER = 1 }, { pr_accounts = {
      { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, { ID_ACCOUNT = "A2", ID_CUSTOMER = 1 },
      { ID_ACCOUNT = "A3", ID_CUSTOMER = 1, __STATE__ = "DELETED" }, { ID_ACCOUNT = "B1", ID_CUSTOMER = 2 },
    } })
    table.sort(ids, function(a, b) return a.accountId < b.accountId end)
    assert.same({ { accountId = "A1" }, { accountId = "A2" } }, ids)
  end)

  it("runs the aggregation sample: one query a hop, customers de-duplicated", function()
    local s = testing.strategy(SAMPLES .. "/aggregation/customersOfMerchant.lua")
    local ids, run = s:run({ ID_MERCHANT = "M1" }, {
      pr_transactions = {
        { ID_TRANSACTION = "T1", ID_CARD = "C1", ID_MERCHANT = "M1" },
        { ID_TRANSACTION = "T2", ID_CARD = "C2", ID_MERCHANT = "M1" },
        { ID_TRANSACTION = "T3", ID_CARD = "C3", ID_MERCHANT = "M1" },
        { ID_TRANSACTION = "T4", ID_CARD = "C4", ID_MERCHANT = "M1", __STATE__ = "DELETED" },
      },
      pr_cards = { { ID_CARD = "C1", ID_ACCOUNT = "A1" }, { ID_CARD = "C2", ID_ACCOUNT = "A2" },
        { ID_CARD = "C3", ID_ACCOUNT = "A3" }, { ID_CARD = "C4", ID_ACCOUNT = "A4" } },
      pr_accounts = { { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, { ID_ACCOUNT = "A2", ID_CUSTOMER = 1 },
        { ID_ACCOUNT = "A3", ID_CUSTOMER = 2 }, { ID_ACCOUNT = "A4", ID_CUSTOMER = 4 } },
    })
    assert.same({ { customerId = 1 }, { customerId = 2 } }, ids)
    assert.equal(3, #run.calls)
    assert.same({ "C1", "C2", "C3" }, run.calls[2].filter.ID_CARD["$in"])
  end)

  it("runs the moved-key sample on each image it is given", function()
    local s = testing.strategy(SAMPLES .. "/moved-foreign-key/customerOfCard.lua")
    local accounts = { pr_accounts = { { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, { ID_ACCOUNT = "A2", ID_CUSTOMER = 2 } } }
    assert.same({ { customerId = 1 } }, s:run({ ID_CARD = "C1", ID_ACCOUNT = "A1", __STATE__ = "DELETED" }, accounts))
    assert.same({ { customerId = 2 } }, s:run({ ID_CARD = "C1", ID_ACCOUNT = "A2" }, accounts))
  end)

  it("loads a file in the sandbox, as rtu does", function()
    local d = tmpdir()
    write(d .. "/io.lua", "return function() return { { x = io ~= nil, r = require ~= nil } } end")
    assert.same({ { x = false, r = false } }, testing.strategy(d .. "/io.lua"):run({}))
    write(d .. "/bad.lua", "return 42")
    assert.has_error(function() testing.strategy(d .. "/bad.lua") end,
      d .. "/bad.lua: must return a function, returned a number")
    os.execute("rm -rf '" .. d .. "'")
  end)

  it("raises a strategy's error, and refuses a result that is not a list of identifiers", function()
    local d = tmpdir()
    write(d .. "/boom.lua", "return function() error('boom', 0) end")
    assert.has_error(function() testing.strategy(d .. "/boom.lua"):run({}) end, "boom")
    write(d .. "/str.lua", "return function() return 'x' end")
    assert.has_error(function() testing.strategy(d .. "/str.lua"):run({}) end,
      "strategy str returned a string instead of an array of identifiers")
    os.execute("rm -rf '" .. d .. "'")
  end)
end)

describe("rtu.testing.read_env", function()
  it("reads KEY=VALUE lines, quotes, expansions, and folders relative to the file", function()
    local d = tmpdir()
    write(d .. "/env", table.concat({
      "# a comment",
      ': "${EXAMPLE_DIR:?set it}"',
      "A=1",
      "export B='{\"x\": \"$A\"}'",
      'C="$A-${A}"',
      "MAP_TABLE_FOLDER=mapTable",
      "ER_SCHEMA_FOLDER=$EXAMPLE_DIR/er",
      "STRATEGIES_FOLDER=/abs",
    }, "\n") .. "\n")
    local v = testing.read_env(d .. "/env")
    assert.same({ A = "1", B = '{"x": "$A"}', C = "1-1", MAP_TABLE_FOLDER = d .. "/mapTable",
      ER_SCHEMA_FOLDER = d .. "/er", STRATEGIES_FOLDER = "/abs" }, v)
    os.execute("rm -rf '" .. d .. "'")
  end)
end)

describe("rtu.testing.load", function()
  it("runs a manual configuration from the nearest env file: both images of a moved key", function()
    local cfg = testing.load(SAMPLES .. "/moved-foreign-key")
    assert.is_false(cfg.automatic)
    assert.same({ collection = "pr_cards", key = { "ID_CARD" } }, cfg.projections.pr_cards)
    local given = {
      pr_accounts = { { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, { ID_ACCOUNT = "A2", ID_CUSTOMER = 2 } },
      pr_cards = { { ID_CARD = "C1", ID_ACCOUNT = "A1" } },
    }
    local changes, run = cfg:changes("pr_cards", {
      before = { ID_CARD = "C1", ID_ACCOUNT = "A1" }, after = { ID_CARD = "C1", ID_ACCOUNT = "A2" } }, given)
    assert.same({
      { type = "sv_customer", identifier = { customerId = 1 } },
      { type = "sv_customer", identifier = { customerId = 2 } },
    }, changes)
    -- the after image replaced the stored card
    assert.same({ { ID_CARD = "C1", ID_ACCOUNT = "A2", __STATE__ = "PUBLIC" } },
      run.db:find("pr_cards", {}))
    -- a projection no strategy is bound to
    assert.same({}, (cfg:changes("pr_accounts", { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 }, given)))
  end)

  it("runs the food-delivery example's low-code strategies: a three-hop path", function()
    local cfg = testing.load(EXAMPLE)
    assert.is_true(cfg.automatic)
    local given = {
      pr_orders_dishes = { { ID_ORDER_DISH = 1, ID_ORDER = 10, ID_DISH = "d1" },
        { ID_ORDER_DISH = 2, ID_ORDER = 11, ID_DISH = "d2", ID_DISH_SUBSTITUTE = "d1" } },
      pr_orders = { { ID_ORDER = 10, ID_USER_ORDER = "U1", ID_RESTAURANT_ORDER = "R1" },
        { ID_ORDER = 11, ID_USER_ORDER = "U2", ID_RESTAURANT_ORDER = "R1" } },
      pr_registry = { { ID_USER = "U1" }, { ID_USER = "U2" } },
      pr_restaurants = { { ID_RESTAURANT = "R1" } },
    }
    local changes = cfg:changes("pr_dishes", { ID_DISH = "d1", ID_RESTAURANT_DISH = "R1", NAME = "Soup" }, given)
    assert.same({
      { type = "sv_customers", identifier = { ID_USER = "U1" } },
      { type = "sv_customers", identifier = { ID_USER = "U2" } },
      { type = "sv_restaurants", identifier = { ID_RESTAURANT = "R1" } },
    }, changes)
  end)

  it("runs the example's custom identifier function", function()
    local cfg = testing.load(EXAMPLE)
    local changes = cfg:changes("pr_reviews", { ID_REVIEW = "rv1", ID_USER_REVIEW = "U9", ID_ORDER_REVIEW = 10 },
      { pr_orders = { { ID_ORDER = 10, ID_USER_ORDER = "U9", ID_RESTAURANT_ORDER = "R2" } },
        pr_registry = { { ID_USER = "U9" } } })
    assert.same({
      { type = "sv_customers", identifier = { ID_USER = "U9" } },
      { type = "sv_restaurants", identifier = { ID_RESTAURANT = "R2" } },
    }, changes)
  end)

  it("runs the example's manual strategy with USE_AUTOMATIC_STRATEGIES=false", function()
    local vars = testing.read_env(EXAMPLE .. "/env")
    vars.USE_AUTOMATIC_STRATEGIES = "false"
    local cfg = testing.load(vars)
    local given = { pr_orders = { { ID_ORDER = 10, ID_USER_ORDER = "U1" } }, pr_registry = { { ID_USER = "U1" } } }
    assert.same({ { type = "sv_customers", identifier = { ID_USER = "U1" } } },
      (cfg:changes("pr_orders_dishes", { ID_ORDER_DISH = 1, ID_ORDER = 10 }, given)))
    -- only the bound projection triggers anything in manual mode
    assert.same({}, (cfg:changes("pr_orders", { ID_ORDER = 10, ID_USER_ORDER = "U1" }, given)))
  end)

  it("reports every problem of a configuration, one line each", function()
    local d = tmpdir()
    os.execute("mkdir -p '" .. d .. "/m'")
    write(d .. "/m/mapTable.json", '{"pr_a": {"conversion": {}, "fieldsInKey": ["K"], '
      .. '"changes": {"sv_x": "__fromFile__[missing]"}}}')
    write(d .. "/env", "MAP_TABLE_FOLDER=m\nSTRATEGIES_FOLDER=.\n")
    assert.has_error(function() testing.load(d) end, d .. "/m/mapTable.json: pr_a.changes.sv_x: strategy file "
      .. d .. "/./missing.lua not found (STRATEGIES_FOLDER)")
    write(d .. "/env", "MAP_TABLE_FOLDER=m\nUSE_AUTOMATIC_STRATEGIES=true\n")
    assert.has_error(function() testing.load(d) end, "ER_SCHEMA_FOLDER: not set\n"
      .. "PROJECTION_CHANGES_SCHEMA_FOLDER: not set")
    os.execute("rm -rf '" .. d .. "'")
  end)
end)

describe("rtu.testing's time limit", function()
  it("stops a strategy that loops, also through the sandbox's pcall and its coroutines", function()
    local d = tmpdir()
    write(d .. "/loop.lua", "return function() while true do end end")
    write(d .. "/catch.lua", table.concat({
      "return function()",
      "  local ok = pcall(function() while true do end end)",
      "  local co = coroutine.create(function() while true do end end)",
      "  coroutine.resume(co)",
      "  pcall(coroutine.wrap(function() while true do end end))",
      "  return { { survived = true } }",
      "end" }, "\n"))
    for _, name in ipairs({ "loop", "catch" }) do
      local s = testing.strategy(d .. "/" .. name .. ".lua", { max_exec_ms = 50 })
      local t0 = os.clock()
      assert.has_error(function() s:run({}) end, "strategy exceeded STRATEGIES_MAX_EXEC_TIME_MS (50 ms)")
      assert.is_true(os.clock() - t0 < 2)
    end
    -- the limit is gone after the run: later code is not interrupted
    local s = testing.strategy(d .. "/catch.lua", { max_exec_ms = 0 })
    assert.is_nil(debug.gethook())
    assert.is_false(require("rtu.limits").timed_out())
    os.execute("rm -rf '" .. d .. "'")
    assert.is_not_nil(s)
  end)
end)
