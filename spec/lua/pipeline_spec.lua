-- rtu.pipeline: the primary-key change of an update (before and after images).
local pipeline = require("rtu.pipeline")

local function build(adapter_result, cast_calls)
  local spec = {
    projections = { { name = "p", fields = { { src = "ID", dst = "id", cast = "count" },
                                             { src = "NAME", dst = "name", cast = "same" } },
                      pk_src = { "ID" }, pk_dst = { "id" } } },
    adapter = function() return adapter_result end,
    casts = { count = function(v) cast_calls[#cast_calls + 1] = v; return v end,
              same = function(v) return v end },
    use_upsert = true, use_position = false,
  }
  local process = assert(pipeline.build(spec))
  return process
end

describe("rtu.pipeline primary keys", function()
  it("an update whose images carry the same key keeps it, casting the key once", function()
    local calls = {}
    local process = build({ keyObject = { ID = 7 }, operation = "U", value = { ID = 7, NAME = "b" },
                            before = { ID = 7, NAME = "a" }, after = { ID = 7, NAME = "b" } }, calls)
    local change = process(1, {}, nil)
    assert.is_nil(change.old_key)
    assert.are.same({ id = 7 }, change.key)
    -- the key, then the field: the before and after images are not cast again
    assert.are.same({ 7, 7 }, calls)
  end)

  it("an update whose images carry different keys moves the record", function()
    local calls = {}
    local process = build({ keyObject = { ID = 8 }, operation = "U", value = { ID = 8, NAME = "b" },
                            before = { ID = 7, NAME = "a" }, after = { ID = 8, NAME = "b" } }, calls)
    local change = process(1, {}, nil)
    assert.are.same({ id = 7 }, change.old_key)
    assert.are.same({ id = 8 }, change.key)
  end)

  it("takes a compound key from the record when the message key lacks a part, casting that only", function()
    local calls = {}
    local spec = {
      projections = { { name = "p", fields = { { src = "A", dst = "a", cast = "count" },
                                               { src = "B", dst = "b", cast = "count" },
                                               { src = 'we"ird', dst = "w\n", cast = "count" } },
                        pk_src = { "A", "B" }, pk_dst = { "a", "b" } } },
      adapter = function(m) return m end,
      casts = { count = function(v) calls[#calls + 1] = v; return v .. "!" end },
      use_upsert = true, use_position = false,
    }
    local process = assert(pipeline.build(spec))
    local change = process(1, { keyObject = { A = "k1", B = "k2" }, value = { A = "r1", B = "r2" } })
    assert.are.same({ a = "k1!", b = "k2!" }, change.key)
    assert.are.same({ "k1", "k2", "r1", "r2" }, calls)
    calls = {}
    change = process(1, { keyObject = { A = "k1", B = require("rtu.value").null },
                          value = { A = "r1", B = "r2", ['we"ird'] = "w" } })
    assert.are.same({ a = "r1!", b = "r2!" }, change.key)
    assert.are.same({ a = "r1!", b = "r2!", ["w\n"] = "w!" }, change.fields)
    assert.are.same({ "r1", "r2", "r1", "r2", "w" }, calls)
    calls = {}
    change = process(1, { keyObject = { A = "k1" }, value = nil, before = { A = "b1", B = "b2" } })
    assert.are.equal("delete", change.op)
    assert.are.same({ a = "b1!", b = "b2!" }, change.key)
    assert.are.same({ "b1", "b2" }, calls)
    assert.has_error(function() process(1, { keyObject = { A = "k1" }, value = { A = "r1" } }) end,
      "the record has no value for primary key field 'B'")
    assert.has_error(function() process(1, { keyObject = { A = "k1" }, value = nil }) end,
      "the message (key and before image) has no value for primary key field 'A'")
  end)

  it("keys that are tables are compared after the cast", function()
    local calls = {}
    local k = { 1, 2 }
    local process = build({ keyObject = { ID = k }, operation = "U", value = { ID = k },
                            before = { ID = { 1, 2 } }, after = { ID = k } }, calls)
    local change = process(1, {}, nil)
    -- different tables: cast both and compare (here they stay different tables)
    assert.is_not_nil(change.old_key)
    assert.are.equal(4, #calls)
  end)
end)

-- The field mapping is Lua source generated per projection (compile_map_fields):
-- names that must be quoted in it, casts skipped for values of their type,
-- destinations shared by two sources, and the reused output.
describe("rtu.pipeline field mapping", function()
  local builtin = require("rtu.casts")
  local value = require("rtu.value")
  local function build(fields, records)
    local n = 0
    local process = assert(pipeline.build({
      projections = { { name = "p", fields = fields, pk_src = { "ID" }, pk_dst = { "id" } } },
      adapter = function() n = n + 1; return { keyObject = { ID = 1 }, value = records[n] } end,
      casts = builtin, use_upsert = true, use_position = false,
    }))
    return function()
      local change = assert(process(1, {}, nil))
      local copy = {}
      for k, v in pairs(change.fields) do copy[k] = v end
      return copy
    end
  end

  it("reads and writes names that Lua source would have to quote", function()
    local odd = { 'a"b', "x\ny", "back\\slash", "]]", "nul\0byte", "tab\tand\rcr", "ünï" }
    local fields = { { src = "ID", dst = "id", cast = "defaultIdentity" } }
    local record, want = { ID = 1 }, { id = 1 }
    for i, name in ipairs(odd) do
      fields[#fields + 1] = { src = name, dst = name .. "'", cast = "defaultCastToString" }
      record[name] = i
      want[name .. "'"] = tostring(i)
    end
    assert.are.same(want, build(fields, { record })())
  end)

  it("casts what is not already of its cast's type, and nulls what a cast refuses", function()
    local fields = { { src = "ID", dst = "id", cast = "defaultIdentity" },
                     { src = "S", dst = "s", cast = "defaultCastToString" },
                     { src = "N", dst = "n", cast = "defaultCastToInteger" } }
    local next_fields = build(fields, { { ID = 1, S = "kept", N = "12" }, { ID = 1, S = 5, N = "twelve" } })
    assert.are.same({ id = 1, s = "kept", n = 12 }, next_fields())
    assert.are.same({ id = 1, s = "5", n = value.null }, next_fields())
  end)

  it("leaves nothing of the previous message in the reused output", function()
    local fields = { { src = "ID", dst = "id", cast = "defaultIdentity" },
                     { src = "A", dst = "a", cast = "defaultCastToString" } }
    local next_fields = build(fields, { { ID = 1, A = "x" }, { ID = 1 } })
    assert.are.same({ id = 1, a = "x" }, next_fields())
    assert.are.same({ id = 1 }, next_fields())
  end)

  it("does not let an absent source erase another written to the same destination", function()
    local fields = { { src = "ID", dst = "id", cast = "defaultIdentity" },
                     { src = "NEW", dst = "name", cast = "defaultIdentity" },
                     { src = "OLD", dst = "name", cast = "defaultIdentity" } }
    local next_fields = build(fields, { { ID = 1, NEW = "n" }, { ID = 1, OLD = "o" },
                                        { ID = 1, NEW = "n", OLD = "o" }, { ID = 1 } })
    assert.are.same({ id = 1, name = "n" }, next_fields())
    assert.are.same({ id = 1, name = "o" }, next_fields())
    assert.are.same({ id = 1, name = "o" }, next_fields()) -- the later source wins
    assert.are.same({ id = 1 }, next_fields())
  end)

  it("maps projections of hundreds of fields", function()
    local fields, record, want = { { src = "ID", dst = "id", cast = "defaultIdentity" } }, { ID = 1 }, { id = 1 }
    for i = 1, 400 do
      fields[#fields + 1] = { src = "F" .. i, dst = "f" .. i, cast = "defaultCastToInteger" }
      record["F" .. i] = tostring(i)
      want["f" .. i] = i
    end
    assert.are.same(want, build(fields, { record })())
  end)
end)

-- The built-in adapters build of `before` only the primary-key fields: what the
-- pipeline reads of it (a delete's key, a primary-key update) must be among them.
describe("rtu.pipeline with the debezium and golden-gate adapters", function()
  local adapters = require("rtu.adapters")

  local function build_with(adapter)
    local spec = {
      projections = { { name = "p", fields = { { src = "ID", dst = "id", cast = "same" },
                                               { src = "K2", dst = "k2", cast = "same" },
                                               { src = "NAME", dst = "name", cast = "same" } },
                        pk_src = { "ID", "K2" }, pk_dst = { "id", "k2" } } },
      adapter = adapter,
      casts = { same = function(v) return v end },
      use_upsert = false, use_position = false,
    }
    return assert(pipeline.build(spec))
  end

  local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
    return c
  end

  it("moves a debezium record whose primary key changed", function()
    local process = build_with(adapters.debezium)
    local change = process(1, { key = '{"ID":2,"K2":"b"}', value = [[{"op":"u",
      "before":{"ID":1,"K2":"a","NAME":"x"},"after":{"ID":2,"K2":"b","NAME":"x"},
      "source":{"db":"d"}}]] }, nil)
    assert.are.equal("insert", change.op)
    assert.are.same({ id = 1, k2 = "a" }, copy(change.old_key))
    assert.are.same({ id = 2, k2 = "b" }, copy(change.key))
    assert.are.same({ id = 2, k2 = "b", name = "x" }, copy(change.fields))
  end)

  it("keeps a debezium record whose other fields changed", function()
    local process = build_with(adapters.debezium)
    local change = process(1, { value = [[{"op":"u",
      "before":{"ID":1,"K2":"a","NAME":"x"},"after":{"ID":1,"K2":"a","NAME":"y"}}]] }, nil)
    assert.are.equal("update", change.op)
    assert.is_nil(change.old_key)
    assert.are.same({ id = 1, k2 = "a" }, copy(change.key))
  end)

  it("deletes a debezium record by its before image, without key", function()
    local process = build_with(adapters.debezium)
    local change = process(1, { value = [[{"op":"d",
      "before":{"ID":1,"K2":"a","NAME":"x"},"after":null}]] }, nil)
    assert.are.equal("delete", change.op)
    assert.are.same({ id = 1, k2 = "a" }, copy(change.key))
  end)

  it("moves and deletes golden-gate records by their before image", function()
    local process = build_with(adapters["golden-gate"])
    local change = process(1, { value = [[{"op_type":"U","pos":"1",
      "before":{"ID":1,"K2":"a","NAME":"x"},"after":{"ID":2,"K2":"a","NAME":"x"}}]] }, nil)
    assert.are.same({ id = 1, k2 = "a" }, copy(change.old_key))
    assert.are.same({ id = 2, k2 = "a" }, copy(change.key))
    change = process(1, { value = [[{"op_type":"D","pos":"2",
      "before":{"ID":1,"K2":"a","NAME":"x"}}]] }, nil)
    assert.are.equal("delete", change.op)
    assert.are.same({ id = 1, k2 = "a" }, copy(change.key))
  end)
end)

describe("rtu.pipeline timestampDate", function()
  local value = require("rtu.value")
  local function process_with(result)
    return build(result, {})(1, {}, nil)
  end

  it("is the change's timestamp, from a date(ms) or whole milliseconds", function()
    local change = process_with({ keyObject = { ID = 1 }, value = { ID = 1 },
                                  timestampDate = value.date(1700000000123) })
    assert.are.equal(1700000000123, change.timestamp)
    change = process_with({ keyObject = { ID = 1 }, value = { ID = 1 }, timestampDate = 42 })
    assert.are.equal(42, change.timestamp)
  end)

  it("is nil when the adapter gives none, also after a change that had one", function()
    local calls = {}
    local result = { keyObject = { ID = 1 }, value = { ID = 1 }, timestampDate = value.date(5) }
    local process = build(result, calls)
    assert.are.equal(5, process(1, {}, nil).timestamp)
    result.timestampDate = nil
    assert.is_nil(process(1, {}, nil).timestamp)
    result.timestampDate = value.null
    assert.is_nil(process(1, {}, nil).timestamp)
  end)

  it("is refused when it is not a date", function()
    assert.has_error(function()
      process_with({ keyObject = { ID = 1 }, value = { ID = 1 }, timestampDate = "yesterday" })
    end, "timestampDate 'yesterday' is not a date(ms)")
    assert.has_error(function()
      process_with({ keyObject = { ID = 1 }, value = { ID = 1 }, timestampDate = 1.5 })
    end, "timestampDate '1.5' is not a date(ms)")
  end)
end)
