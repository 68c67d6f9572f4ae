--[[
Specs of rtu.jsonenc: String(number) and JSON.stringify as Node.js 20 prints them.
]]
local jsonenc = require("rtu.jsonenc")
local value = require("rtu.value")
local json = require("rtu.json")

describe("rtu.jsonenc.number", function()
  local cases = {
    { 0, "0" }, { -0.0, "0" }, { 12, "12" }, { -12.0, "-12" },
    { math.maxinteger, "9223372036854775807" }, -- Lua integers print exactly
    { 2.0 ^ 63, "9223372036854776000" },
    { 1.5, "1.5" }, { 0.1, "0.1" }, { 1 / 3, "0.3333333333333333" },
    { 123.456, "123.456" }, { 1e20, "100000000000000000000" }, { 1e21, "1e+21" },
    { 1.5e300, "1.5e+300" }, { 0.000001, "0.000001" }, { 1e-7, "1e-7" },
    { -2.5e-8, "-2.5e-8" }, { 5e-324, "5e-324" }, { 1.5e-323, "1.5e-323" },
    { 2.0 ^ -1017, "7.120236347223045e-307" }, -- shortest digits are not the rounded ones
    { 1.7976931348623157e308, "1.7976931348623157e+308" },
    { 0 / 0, "NaN" }, { math.huge, "Infinity" }, { -math.huge, "-Infinity" },
  }
  for _, c in ipairs(cases) do
    it(string.format("%.17g -> %s", c[1], c[2]), function()
      assert.are.equal(c[2], jsonenc.number(c[1]))
    end)
  end
end)

describe("rtu.jsonenc.encode", function()
  it("writes array-index keys first, in numeric order, then the rest in byte order", function()
    assert.are.equal('{"1":0,"2":0,"10":0,"01":0,"B":0,"a":0}',
      jsonenc.encode({ a = 0, B = 0, ["10"] = 0, ["2"] = 0, ["1"] = 0, ["01"] = 0 }))
  end)

  it("writes arrays by metatable, with holes as null", function()
    assert.are.equal("[]", jsonenc.encode(value.array()))
    assert.are.equal("{}", jsonenc.encode({}))
    assert.are.equal("[1,null,3]", jsonenc.encode(value.array({ 1, nil, 3 })))
  end)

  it("escapes as JSON.stringify does", function()
    assert.are.equal('"a\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\127é\226\128\168"',
      jsonenc.encode("a\"b\\c\b\f\n\r\t\0\31\127é\226\128\168"))
  end)

  it("writes null, dates, non-finite numbers and skips functions", function()
    assert.are.equal('{"d":"2023-09-19T16:35:57.284Z","n":null,"x":null}', jsonenc.encode({
      n = value.null, d = value.date(1695141357284), x = 0 / 0, f = function() end,
    }))
    assert.are.equal("[null]", jsonenc.encode(value.array({ function() end })))
    assert.is_nil(jsonenc.encode(function() end))
  end)

  it("round-trips decoded JSON", function()
    local s = '{"a":[1,2.5,-3e-7,{"b":null}],"c":"x","d":true,"e":[]}'
    assert.are.equal(s, jsonenc.encode(json.decode(s)))
  end)
end)
