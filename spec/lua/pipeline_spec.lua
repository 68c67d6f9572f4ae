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
