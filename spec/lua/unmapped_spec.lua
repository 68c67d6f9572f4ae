-- rtu.pipeline with spec.unmapped: the fields a record has beyond the conversion
-- (UNKNOWN_FIELD) and the values a built-in cast cannot convert (UNCASTABLE_FIELD).
local pipeline = require("rtu.pipeline")
local builtin = require("rtu.casts")
local value = require("rtu.value")

local FIELDS = { { src = "ID", dst = "id", cast = "defaultIdentity" },
                 { src = "N", dst = "n", cast = "defaultCastToInteger" },
                 { src = "B", dst = "b", cast = "defaultCastStringToBoolean" },
                 { src = "C", dst = "c", cast = "custom" } }

local function build(unmapped, records, custom)
  local n = 0
  local casts = setmetatable({ custom = custom or function() return nil, true end },
                             { __index = builtin })
  local process, problems, notes = pipeline.build({
    projections = { { name = "p", fields = FIELDS, pk_src = { "ID" }, pk_dst = { "id" } } },
    adapter = function() n = n + 1; return { keyObject = { ID = 1 }, value = records[n] } end,
    casts = casts, use_upsert = true, use_position = false, unmapped = unmapped,
  })
  assert.is_nil(problems)
  return process, notes
end

local function msg(offset) return { topic = "t", partition = 2, offset = offset } end

describe("rtu.pipeline unmapped and uncastable fields", function()
  it("notes each (field, type) with its count, last value and last message", function()
    local process, notes = build(true, {
      { ID = 1, N = "x", B = "true", EXTRA = 1 },
      { ID = 1, N = "y", B = "maybe", EXTRA = 2, OTHER = value.null },
      { ID = 1, N = 3, C = "custom says bad" },
    })
    local c = process(1, msg(10))
    assert.are.equal(value.null, c.fields.n) -- still stored as null
    process(1, msg(11))
    process(1, msg(12))
    local list = notes(1)
    assert.are.same({
      { type = "UNCASTABLE_FIELD", field = "B", value = "maybe", count = 1, topic = "t", partition = 2, offset = 11 },
      { type = "UNCASTABLE_FIELD", field = "N", value = "y", count = 2, topic = "t", partition = 2, offset = 11 },
      { type = "UNKNOWN_FIELD", field = "EXTRA", value = 2, count = 2, topic = "t", partition = 2, offset = 11 },
      { type = "UNKNOWN_FIELD", field = "OTHER", value = value.null, count = 1, topic = "t", partition = 2, offset = 11 },
    }, list)
    -- a custom cast's second value is not a built-in's verdict: C is not noted
    -- and notes are emptied by reading them
    assert.are.same({}, notes(1))
  end)

  it("a null or absent mapped field is not uncastable, and deletes note nothing", function()
    local process, notes = build(true, { { ID = 1, N = value.null }, nil })
    process(1, msg(1))
    process(1, msg(2)) -- a delete: no record
    assert.are.same({}, notes(1))
  end)

  it("without spec.unmapped there is no notes function and the mapping is unchanged", function()
    local process, notes = build(false, { { ID = 1, N = "x", EXTRA = 1 } })
    assert.is_nil(notes)
    local c = process(1, msg(1))
    assert.are.same({ id = 1, n = value.null, b = nil, c = nil }, c.fields)
  end)

  it("a custom cast that raises still raises", function()
    local process = build(true, { { ID = 1, C = 1 } }, function() error("boom", 0) end)
    assert.has_error(function() process(1, msg(1)) end, "boom")
  end)

  it("built-in casts return true as a second value only for what they cannot convert", function()
    assert.are.same({ nil, true }, { builtin.defaultCastToInteger("abc", "f") })
    assert.are.same({ 12 }, { builtin.defaultCastToInteger("12", "f") })
    assert.are.same({ value.null }, { builtin.defaultCastToObject(value.null, "f") })
    assert.are.same({ nil, true }, { builtin.defaultCastToObject("[1]", "f") })
  end)
end)
