--[[
Specs of rtu.casts: every rule of contract section 3.2, with the JavaScript result
of the Console default casts (checked against Node.js 20 under TZ=UTC) as the
expected value. Deliberate differences from Node are listed at the end.
]]
local casts = require("rtu.casts")
local value = require("rtu.value")
local json = require("rtu.json")

local null = value.null
local UNDEF = setmetatable({}, { __tostring = function() return "undefined" end })
local NAN = setmetatable({}, { __tostring = function() return "NaN" end })
local function I(n) return { int = n } end          -- a Lua integer
local function F(n) return { float = n } end        -- a Lua float
local function D(iso) return { date = iso } end     -- a value.date with this ISO form
local function A(t) return value.array(t) end
local function J(s) return json.decode(s) end

local function show(v)
  if v == nil then return "nil" end
  if type(v) == "string" then return string.format("%q", v) end
  if value.is_date(v) then return "Date(" .. value.iso(v) .. ")" end
  if type(v) == "table" then return require("rtu.jsonenc").encode(v) end
  return tostring(v) .. (math.type(v) and (" " .. math.type(v)) or "")
end

local function check(name, input, want)
  local got = casts[name](input, "field", nil)
  if want == UNDEF then
    assert.is_nil(got)
  elseif want == NAN then
    assert.is_true(type(got) == "number" and got ~= got, "expected NaN, got " .. show(got))
  elseif type(want) == "table" and want.int ~= nil then
    assert.are.equal("integer", math.type(got), "expected an integer, got " .. show(got))
    assert.are.equal(want.int, got)
  elseif type(want) == "table" and want.float ~= nil then
    assert.are.equal("float", math.type(got), "expected a float, got " .. show(got))
    if want.float == 0 then
      assert.are.equal(1 / want.float, 1 / got) -- keeps the sign of zero
    else
      assert.are.equal(want.float, got)
    end
  elseif type(want) == "table" and want.date ~= nil then
    assert.is_true(value.is_date(got), "expected a date, got " .. show(got))
    assert.are.equal(want.date, value.iso(got))
  elseif type(want) == "table" then
    assert.are.same(want, got)
    assert.are.equal(getmetatable(want), getmetatable(got))
  else
    assert.are.equal(want, got)
  end
end

local function run(name, cases)
  describe(name, function()
    for _, c in ipairs(cases) do
      it(show(c[1]) .. " -> " .. show(c[2] ~= UNDEF and c[2] or nil), function()
        check(name, c[1], c[2])
      end)
    end
  end)
end

describe("rtu.casts", function()
  it("has the nine Console defaults and the Projection Storer aliases", function()
    local pairs_ = {
      defaultIdentity = "identity", defaultCastToString = "castToString",
      defaultCastToInteger = "castToInteger", defaultCastToFloat = "castToFloat",
      defaultCastUnitTimestampToISOString = "castUnixTimestampToISOString",
      defaultCastStringToBoolean = "castStringToBoolean", defaultCastToDate = "castToDate",
      defaultCastToObject = "castToObject", defaultCastToArrayOfObject = "castToArrayOfObject",
    }
    local n = 0
    for k, v in pairs(pairs_) do
      assert.are.equal("function", type(casts[k]))
      assert.are.equal(casts[k], casts[v])
      n = n + 1
    end
    assert.are.equal(9, n)
    for k in pairs(casts) do n = n - 1 end
    assert.are.equal(-9, n) -- nothing else in the table
  end)

  -- nil stands for undefined: ipairs stops at a nil, so undefined inputs are
  -- checked one by one below
  run("defaultIdentity", {
    { 12, I(12) }, { "x", "x" }, { null, null }, { false, false },
  })

  run("defaultCastToString", {
    { null, null },
    { "abc", "abc" },
    { "", "" },
    { 12, "12" },
    { -7, "-7" },
    { 1.5, "1.5" },
    { 0.1, "0.1" },
    { 0.1 + 0.2, "0.30000000000000004" },
    { 2.0, "2" },
    { -0.0, "0" },
    { 1e21, "1e+21" },
    { 1e20, "100000000000000000000" },
    { 1.5e-7, "1.5e-7" },
    { 0.000001, "0.000001" },
    { 5e-324, "5e-324" },
    { 1.7976931348623157e308, "1.7976931348623157e+308" },
    { 0 / 0, "NaN" },
    { 1 / 0, "Infinity" },
    { -1 / 0, "-Infinity" },
    { true, "true" },
    { false, "false" },
    { 9007199254740993, "9007199254740993" }, -- integers stay exact
    { J('{"b":1,"a":[1,2.5,null,"x"]}'), '{"a":[1,2.5,null,"x"],"b":1}' },
    { J('{"10":1,"2":2,"b":3,"a":4}'), '{"2":2,"10":1,"a":4,"b":3}' },
    { J("[]"), "[]" },
    { J("{}"), "{}" },
    { J('[{"a":"q\\"\\n\\u0001"}]'), '[{"a":"q\\"\\n\\u0001"}]' },
    { A({ 1, 0 / 0, 1 / 0 }), "[1,null,null]" },
    { A({ value.date(0) }), '["1970-01-01T00:00:00.000Z"]' },
    { value.date(1695141357284), "2023-09-19T16:35:57.284Z" },
  })

  run("defaultCastToInteger", {
    { null, null },
    { "12", I(12) },
    { " 12 ", I(12) },
    { "\t\n12\r\n", I(12) },
    { "\194\16012\226\128\168", I(12) }, -- NBSP and LINE SEPARATOR are JS white space
    { "", I(0) },
    { "   ", I(0) },
    { "+12", I(12) },
    { "-12", I(-12) },
    { "12.9", I(12) },
    { "-12.9", I(-12) },
    { "0x10", I(16) },
    { "0X1f", I(31) },
    { "0o17", I(15) },
    { "0b101", I(5) },
    { "-0x10", UNDEF },
    { "0x", UNDEF },
    { "1e3", I(1000) },
    { "1.5e3", I(1500) },
    { ".5", I(0) },
    { "5.", I(5) },
    { "1e21", I(1) },        -- parseInt("1e+21")
    { "1e-7", I(1) },        -- parseInt("1e-7")
    { "-2.5e22", I(-2) },
    { "1_000", UNDEF },
    { "12abc", UNDEF },
    { "abc", UNDEF },
    { "Infinity", NAN },     -- parseInt("Infinity") is NaN, not undefined
    { "-Infinity", NAN },
    { "infinity", UNDEF },
    { true, I(1) },
    { false, I(0) },
    { 42, I(42) },
    { 4.7, I(4) },
    { -4.7, I(-4) },
    { 1e300, I(1) },
    { 123456789.987, I(123456789) },
    { value.date(1695141357284), I(1695141357284) },
    { A({}), I(0) },
    { A({ 5 }), I(5) },
    { A({ "5" }), I(5) },
    { A({ A({ 7 }) }), I(7) },
    { A({ null }), I(0) },
    { A({ 1, 2 }), UNDEF },
    { {}, UNDEF },
    { J('{"a":1}'), UNDEF },
    { "9007199254740993", I(9007199254740993) }, -- exact, where JS rounds
  })

  run("defaultCastToFloat", {
    { null, null },
    { "1.5", F(1.5) },
    { " -1.25 ", F(-1.25) },
    { "2", I(2) },
    { "2.0", I(2) },
    { "1e-3", F(0.001) },
    { "", I(0) },
    { "-0", F(-0.0) },
    { "Infinity", F(math.huge) },
    { "-Infinity", F(-math.huge) },
    { "1e400", F(math.huge) },
    { "0x20000000000001", I(9007199254740992) }, -- rounded to a double, ties to even
    { "0xfffffffffffffffffff", F(2 ^ 76) },
    { "0.1", F(0.1) },
    { "1,5", UNDEF },
    { "NaN", UNDEF },
    { 1.5, F(1.5) },
    { 3, I(3) },
    { true, I(1) },
    { A({ "2.5" }), F(2.5) },
    { value.date(-1), I(-1) },
  })

  run("defaultCastUnitTimestampToISOString", {
    { null, null },
    { 1695141357284, "2023-09-19T16:35:57.284Z" },
    { 0, "1970-01-01T00:00:00.000Z" },
    { -1, "1969-12-31T23:59:59.999Z" },
    { 1.9, "1970-01-01T00:00:00.001Z" },
    { -1.9, "1969-12-31T23:59:59.999Z" },
    { 8.64e15, "+275760-09-13T00:00:00.000Z" },
    { -8.64e15, "-271821-04-20T00:00:00.000Z" },
    { 8.64e15 + 1, UNDEF },
    { 1 / 0, UNDEF },
    { "1695141357284", UNDEF }, -- a string goes to the date parser
    { "2023-09-19T16:35:57.284Z", "2023-09-19T16:35:57.284Z" },
    { true, "1970-01-01T00:00:00.001Z" },
    { value.date(5), "1970-01-01T00:00:00.005Z" },
    { A({ 1695141357284 }), UNDEF }, -- joined to a string first
    { {}, UNDEF },
  })

  run("defaultCastStringToBoolean", {
    { null, null },
    { "true", true },
    { "false", false },
    { "TRUE", UNDEF },
    { " true", UNDEF },
    { "1", UNDEF },
    { true, UNDEF },
    { false, UNDEF },
    { 1, UNDEF },
  })

  run("defaultCastToDate", {
    { null, null },
    { 1695141357284, D("2023-09-19T16:35:57.284Z") },
    { value.date(42), D("1970-01-01T00:00:00.042Z") },
    { "2023-09-19T16:35:57.284Z", D("2023-09-19T16:35:57.284Z") },
    { "2023", D("2023-01-01T00:00:00.000Z") },
    { "2023-09", D("2023-09-01T00:00:00.000Z") },
    { "2023-09-19", D("2023-09-19T00:00:00.000Z") },
    { "2023-09-19T16:35", D("2023-09-19T16:35:00.000Z") },
    { "2023-09-19T16:35:57", D("2023-09-19T16:35:57.000Z") },
    { "2023-09-19T16:35:57.1", D("2023-09-19T16:35:57.100Z") },
    { "2023-09-19T16:35:57.123456789Z", D("2023-09-19T16:35:57.123Z") },
    { "2023-09-19T16:35:57+02:00", D("2023-09-19T14:35:57.000Z") },
    { "2023-09-19T16:35:57-0530", D("2023-09-19T22:05:57.000Z") },
    { "2023-09-19T24:00", D("2023-09-20T00:00:00.000Z") },
    { "2023-09-19T24:01", UNDEF },
    { "2023-02-30", D("2023-03-02T00:00:00.000Z") }, -- V8 rolls days 29..31 over
    { "2023-13-01", UNDEF },
    { "+002023-01-01", D("2023-01-01T00:00:00.000Z") },
    { "-000001-01-01T00:00:00Z", D("-000001-01-01T00:00:00.000Z") },
    { "+275760-09-13T00:00:00.001Z", UNDEF },
    { "Tue, 19 Sep 2023 16:35:57 GMT", D("2023-09-19T16:35:57.000Z") },
    { "Tue Sep 19 2023 16:35:57 GMT+0200 (Central European Summer Time)", D("2023-09-19T14:35:57.000Z") },
    { "19 Sep 2023 16:35 EST", D("2023-09-19T21:35:00.000Z") },
    { "September 19, 2023 4:35 PM", D("2023-09-19T16:35:00.000Z") },
    { "2021-02-19 16:03:27.000000", D("2021-02-19T16:03:27.000Z") }, -- GoldenGate op_ts
    { "2023/09/19", D("2023-09-19T00:00:00.000Z") },
    { "9/19/2023", D("2023-09-19T00:00:00.000Z") },
    { "12", D("2001-12-01T00:00:00.000Z") }, -- V8's legacy parser: month 12 of 2001
    { "Sep 19", D("2001-09-19T00:00:00.000Z") },
    { "1695141357284", UNDEF },
    { "", UNDEF },
    { "not a date", UNDEF },
    { "2023-09-19T16:35:57Z x", UNDEF },
    { "\194\1602023-09-19", D("2023-09-19T00:00:00.000Z") },
    { -1.5, D("1969-12-31T23:59:59.999Z") },
    { 0 / 0, UNDEF },
    { false, D("1970-01-01T00:00:00.000Z") },
    { A({ "2023-01-01" }), D("2023-01-01T00:00:00.000Z") },
    { A({}), UNDEF },
    { J('{"a":1}'), UNDEF },
  })

  run("defaultCastToObject", {
    { null, null },
    { '{"a":1}', { a = 1 } },
    { "{}", {} },
    { " { \"a\" : [1] } ", { a = A({ 1 }) } },
    { "[]", UNDEF },
    { "[{}]", UNDEF },
    { "null", UNDEF },
    { "12", UNDEF },
    { "", UNDEF },
    { "{a:1}", UNDEF },
    { J('{"b":true}'), { b = true } },
    { A({ {} }), UNDEF },
    { value.date(0), UNDEF },
    { 12, UNDEF },
    { true, UNDEF },
  })

  run("defaultCastToArrayOfObject", {
    { null, null },
    { '[{"a":1},{"b":2}]', A({ { a = 1 }, { b = 2 } }) },
    { "[]", A({}) },
    { '[{"a":1},2]', UNDEF },
    { '[{"a":1},null]', UNDEF },
    { '[{"a":1},[]]', UNDEF },
    { '{"a":1}', UNDEF },
    { "[", UNDEF },
    { "", UNDEF },
    { J('[{"x":"y"}]'), A({ { x = "y" } }) },
    { A({ {}, {} }), A({ {}, {} }) },
    { A({ value.date(0) }), UNDEF },
    { { { a = 1 } }, UNDEF }, -- a Lua sequence without the Array metatable is an object
    { "str", UNDEF },
  })

  describe("undefined input", function()
    local keep = {
      "defaultIdentity", "defaultCastToString", "defaultCastToInteger", "defaultCastToFloat",
      "defaultCastUnitTimestampToISOString", "defaultCastStringToBoolean",
      "defaultCastToDate", "defaultCastToObject", "defaultCastToArrayOfObject",
    }
    for _, name in ipairs(keep) do
      it(name .. "(undefined) is undefined", function()
        assert.is_nil(casts[name](nil, "f"))
      end)
    end
  end)

  describe("logging", function()
    local function recorder()
      local lines = {}
      return { debug = function(msg) lines[#lines + 1] = msg end }, lines
    end

    it("logs an invalid input at debug level, naming the field", function()
      local log, lines = recorder()
      assert.is_nil(casts.defaultCastToInteger("abc", "AGE", log))
      assert.are.same({ "AGE is invalid, will be casted to undefined" }, lines)
    end)

    it("does not log null, undefined or valid inputs", function()
      local log, lines = recorder()
      casts.defaultCastToInteger(nil, "A", log)
      casts.defaultCastToInteger(null, "A", log)
      casts.defaultCastToString(12, "A", log)
      casts.defaultCastStringToBoolean("true", "A", log)
      assert.are.same({}, lines)
    end)

    it("logs Invalid Date, including new Date(undefined)", function()
      local log, lines = recorder()
      casts.defaultCastToDate("nope", "D", log)
      casts.defaultCastToDate(nil, "D", log)
      assert.are.equal(2, #lines)
    end)

    it("accepts a nil log and a nil field name", function()
      assert.is_nil(casts.defaultCastToObject("[]", "F", nil))
      assert.is_nil(casts.defaultCastToObject("[]", nil, { debug = function() end }))
    end)
  end)

  describe("purity", function()
    it("returns the parsed table, and leaves an input object untouched", function()
      local t = { a = 1 }
      assert.are.equal(t, casts.defaultCastToObject(t, "f"))
      assert.are.same({ a = 1 }, t)
    end)

    it("returns a new date for a date input", function()
      local d = value.date(7)
      local r = casts.defaultCastToDate(d, "f")
      assert.are.equal(7, r.ms)
      r.ms = 8
      assert.are.equal(7, d.ms)
    end)

    it("raises on a cycle, as JSON.stringify throws", function()
      local t = {}
      t.self = t
      assert.has_error(function() casts.defaultCastToString(t, "f") end,
        "Converting circular structure to JSON")
    end)
  end)
end)
