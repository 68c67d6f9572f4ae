--[[
Specs of the built-in Kafka message adapters (contract sections 2.4 to 2.6) and of
their name table rtu.adapters.
]]
local adapters = require("rtu.adapters")
local value = require("rtu.value")

local function msg(key, val, extra)
  local m = { key = key, value = val, timestamp = 1695141357284, offset = 14,
    topic = "t.ingestion", partition = 0, headers = nil }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local PK = { "USER_ID", "TAX_CODE" }

describe("rtu.adapters", function()
  it("maps every KAFKA_MESSAGE_ADAPTER name to a function", function()
    assert.are.equal("function", type(adapters.basic))
    assert.are.equal(adapters.basic, adapters.db2)
    assert.are.equal("function", type(adapters["golden-gate"]))
    assert.are.equal("function", type(adapters.debezium))
  end)
end)

describe("basic / db2 adapter", function()
  local basic = adapters.basic

  it("upserts: key object from the key, value from the value, no operation", function()
    local r = basic(msg('{"USER_ID":123,"TAX_CODE":"ABC"}',
      '{"USER_ID":123,"TAX_CODE":"ABC","NAME":456}'), PK)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC", NAME = 456 }, r.value)
    assert.is_nil(r.operation)
    assert.is_nil(r.before)
    assert.is_nil(r.after)
    assert.is_nil(r.operationPosition)
    assert.are.equal("integer", math.type(r.keyObject.USER_ID))
  end)

  it("keeps only the primary-key fields of the key", function()
    local r = basic(msg('{"USER_ID":1,"TAX_CODE":"A","EXTRA":true}', '{"USER_ID":1,"TAX_CODE":"A"}'), PK)
    assert.are.same({ USER_ID = 1, TAX_CODE = "A" }, r.keyObject)
  end)

  for _, key in ipairs({ "", "null" }) do
    it("takes the primary key from the value when the key is " .. string.format("%q", key), function()
      local r = basic(msg(key, '{"USER_ID":7,"TAX_CODE":"Z","NAME":"n"}'), PK)
      assert.are.same({ USER_ID = 7, TAX_CODE = "Z" }, r.keyObject)
      assert.are.equal("n", r.value.NAME)
    end)
  end

  it("takes the primary key from the value when there is no key", function()
    local r = basic(msg(nil, '{"USER_ID":7,"TAX_CODE":"Z"}'), PK)
    assert.are.same({ USER_ID = 7, TAX_CODE = "Z" }, r.keyObject)
  end)

  it("completes a partial key from the value", function()
    local r = basic(msg('{"USER_ID":7}', '{"USER_ID":7,"TAX_CODE":"Z"}'), PK)
    assert.are.same({ USER_ID = 7, TAX_CODE = "Z" }, r.keyObject)
  end)

  it("ignores a key that is not an object when the value has the primary key", function()
    local r = basic(msg('"7_Z"', '{"USER_ID":7,"TAX_CODE":"Z"}'), PK)
    assert.are.same({ USER_ID = 7, TAX_CODE = "Z" }, r.keyObject)
  end)

  for _, v in ipairs({ { "nil", nil }, { "empty", "" }, { "null", "null" } }) do
    it("deletes when the value is " .. v[1], function()
      local r = basic(msg('{"USER_ID":123,"TAX_CODE":"ABC"}', v[2]), PK)
      assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
      assert.is_nil(r.value)
      assert.is_nil(r.operation)
    end)
  end

  it("keeps a null primary-key value (present, not missing)", function()
    local r = basic(msg(nil, '{"USER_ID":null,"TAX_CODE":"A"}'), PK)
    assert.are.equal(value.null, r.keyObject.USER_ID)
  end)

  it("keeps nested arrays and objects of the value", function()
    local r = basic(msg(nil, '{"USER_ID":1,"TAX_CODE":"A","L":[],"O":{}}'), PK)
    assert.is_true(value.is_array(r.value.L))
    assert.is_false(value.is_array(r.value.O))
  end)

  it("raises when a primary-key field is in neither key nor value", function()
    assert.has_error(function() basic(msg('{"USER_ID":1}', '{"USER_ID":1}'), PK) end,
      "primary key field 'TAX_CODE' is missing from both key and value")
  end)

  it("raises when a delete has no key", function()
    assert.has_error(function() basic(msg(nil, nil), PK) end,
      "primary key field 'USER_ID' is missing from the key of a delete")
  end)

  it("raises on a value that is not JSON", function()
    local ok, err = pcall(basic, msg('{"USER_ID":1,"TAX_CODE":"A"}', "{not json"), PK)
    assert.is_false(ok)
    assert.matches("^value is not valid JSON: ", err)
  end)

  it("raises on a key that is not JSON", function()
    local ok, err = pcall(basic, msg("{", '{"USER_ID":1,"TAX_CODE":"A"}'), PK)
    assert.is_false(ok)
    assert.matches("^key is not valid JSON: ", err)
  end)

  it("raises on a value that is not an object", function()
    assert.has_error(function() basic(msg(nil, "[1]"), PK) end, "value is not a JSON object")
    assert.has_error(function() basic(msg(nil, "12"), PK) end, "value is not a JSON object")
  end)

  it("uses the whole key when no primary key is configured", function()
    local r = basic(msg('{"ID":1}', '{"ID":1,"X":2}'), {})
    assert.are.same({ ID = 1 }, r.keyObject)
  end)

  it("never returns a nil keyObject", function()
    local r = basic(msg(nil, '{"X":2}'), {})
    assert.are.same({}, r.keyObject)
  end)
end)

describe("golden-gate adapter", function()
  local gg = adapters["golden-gate"]
  local PK1 = { "USER_ID" }

  it("maps an insert: key from after, value = after, pos as counter", function()
    local r = gg(msg("123", [[{"table":"MY_TABLE","op_type":"I","op_ts":"2021-02-19 16:03:27.000000",
      "current_ts":"2021-02-19T17:03:32.818003","pos":"00000000650028162190",
      "after":{"USER_ID":123,"FISCAL_CODE":"the-fiscal-code-123","COINS":300000000}}]]), PK1)
    assert.are.same({ USER_ID = 123 }, r.keyObject)
    assert.are.same({ USER_ID = 123, FISCAL_CODE = "the-fiscal-code-123", COINS = 300000000 }, r.value)
    assert.are.equal("I", r.operation)
    assert.is_nil(r.before)
    assert.are.equal(r.value, r.after)
    assert.are.equal(650028162190, r.operationPosition)
    assert.are.equal("integer", math.type(r.operationPosition))
  end)

  it("maps an update with before and after", function()
    local r = gg(msg("123", [[{"op_type":"U","pos":12,
      "before":{"USER_ID":123,"COINS":1},"after":{"USER_ID":123,"COINS":2}}]]), PK1)
    assert.are.equal("U", r.operation)
    assert.are.same({ USER_ID = 123 }, r.keyObject)
    assert.are.same({ USER_ID = 123, COINS = 2 }, r.value)
    assert.are.same({ USER_ID = 123 }, r.before) -- only the primary key is built
    assert.are.equal(12, r.operationPosition)
  end)

  it("maps a delete: key from before, value nil", function()
    local r = gg(msg("123", [[{"op_type":"D","pos":"13",
      "before":{"USER_ID":123,"COINS":300000000},"after":null}]]), PK1)
    assert.are.equal("D", r.operation)
    assert.are.same({ USER_ID = 123 }, r.keyObject)
    assert.is_nil(r.value)
    assert.is_nil(r.after)
    assert.are.same({ USER_ID = 123 }, r.before)
    assert.are.equal(13, r.operationPosition)
  end)

  it("returns both images of a primary-key update, keyed by the new key", function()
    local r = gg(msg("1", [[{"op_type":"U","pos":"5",
      "before":{"USER_ID":1,"N":"a"},"after":{"USER_ID":2,"N":"a"}}]]), PK1)
    assert.are.same({ USER_ID = 2 }, r.keyObject)
    assert.are.equal(1, r.before.USER_ID)
    assert.are.equal(2, r.after.USER_ID)
  end)

  it("takes a key field missing from a compressed after image from before", function()
    local r = gg(msg("1", [[{"op_type":"U","pos":"5",
      "before":{"USER_ID":1,"TAX_CODE":"T"},"after":{"USER_ID":1,"N":"b"}}]]), PK)
    assert.are.same({ USER_ID = 1, TAX_CODE = "T" }, r.keyObject)
  end)

  it("does not read the key string", function()
    local r = gg(msg("999_X", '{"op_type":"I","pos":"1","after":{"USER_ID":1}}'), PK1)
    assert.are.same({ USER_ID = 1 }, r.keyObject)
  end)

  it("gives no position when pos is absent or null", function()
    assert.is_nil(gg(msg(nil, '{"op_type":"I","after":{"USER_ID":1}}'), PK1).operationPosition)
    assert.is_nil(gg(msg(nil, '{"op_type":"I","pos":null,"after":{"USER_ID":1}}'), PK1).operationPosition)
  end)

  it("reads the largest int64 position and refuses one digit more", function()
    local r = gg(msg(nil, '{"op_type":"I","pos":"09223372036854775807","after":{"USER_ID":1}}'), PK1)
    assert.are.equal(math.maxinteger, r.operationPosition)
    assert.has_error(function()
      gg(msg(nil, '{"op_type":"I","pos":"9223372036854775808","after":{"USER_ID":1}}'), PK1)
    end, "golden-gate pos does not fit in a 64-bit integer: 9223372036854775808")
  end)

  it("reads an all-zero position as 0", function()
    assert.are.equal(0, gg(msg(nil, '{"op_type":"I","pos":"0000","after":{"USER_ID":1}}'), PK1).operationPosition)
  end)

  it("raises on a position that is not an integer", function()
    for _, pos in ipairs({ '"12a"', '""', '"-1"', "1.5", "true", '"1e3"' }) do
      assert.has_error(function()
        gg(msg(nil, '{"op_type":"I","pos":' .. pos .. ',"after":{"USER_ID":1}}'), PK1)
      end)
    end
  end)

  it("raises on an unknown op_type", function()
    assert.has_error(function() gg(msg(nil, '{"op_type":"T","after":{"USER_ID":1}}'), PK1) end,
      "golden-gate op_type is unknown: T")
    assert.has_error(function() gg(msg(nil, '{"after":{"USER_ID":1}}'), PK1) end,
      "golden-gate op_type is unknown: nil")
  end)

  it("raises when the image the operation needs is missing", function()
    assert.has_error(function() gg(msg(nil, '{"op_type":"I","after":null}'), PK1) end,
      "golden-gate op_type I without 'after'")
    assert.has_error(function() gg(msg(nil, '{"op_type":"D","after":{"USER_ID":1}}'), PK1) end,
      "golden-gate op_type D without 'before'")
  end)

  it("raises on a missing primary-key field", function()
    assert.has_error(function() gg(msg(nil, '{"op_type":"I","after":{"X":1}}'), PK1) end,
      "primary key field 'USER_ID' is missing from the golden-gate record")
  end)

  it("raises on invalid JSON and on an empty value", function()
    local ok, err = pcall(gg, msg(nil, '{"op_type":'), PK1)
    assert.is_false(ok)
    assert.matches("^value is not valid JSON: ", err)
    assert.has_error(function() gg(msg("k", nil), PK1) end, "golden-gate message has an empty value")
    assert.has_error(function() gg(msg("k", ""), PK1) end, "golden-gate message has an empty value")
  end)

  it("raises on an image that is not an object", function()
    assert.has_error(function() gg(msg(nil, '{"op_type":"I","after":[1]}'), PK1) end,
      "golden-gate 'after' is not an object")
  end)
end)

describe("debezium adapter", function()
  local dbz = adapters.debezium
  local KEY = '{"USER_ID":123,"TAX_CODE":"ABC"}'
  local AFTER = '{"USER_ID":123,"TAX_CODE":"ABC","COINS":300000000}'

  for op, operation in pairs({ c = "I", r = "I", u = "U" }) do
    it("maps op " .. op .. " to " .. operation, function()
      local r = dbz(msg(KEY, '{"op":"' .. op .. '","before":null,"after":' .. AFTER
        .. ',"source":{"db":"x"},"ts_ms":1}'), PK)
      assert.are.equal(operation, r.operation)
      assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
      assert.are.same({ USER_ID = 123, TAX_CODE = "ABC", COINS = 300000000 }, r.value)
      assert.are.equal(r.value, r.after)
      assert.is_nil(r.before)
      assert.is_nil(r.operationPosition)
    end)
  end

  it("maps op d to a delete with the before image", function()
    local r = dbz(msg(KEY, '{"op":"d","before":' .. AFTER .. ',"after":null}'), PK)
    assert.are.equal("D", r.operation)
    assert.is_nil(r.value)
    assert.is_nil(r.after)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.before) -- only the primary key
  end)

  it("unwraps the Connect schema envelope of key and value", function()
    local r = dbz(msg('{"schema":{"type":"struct"},"payload":' .. KEY .. '}',
      '{"schema":{"type":"struct","fields":[]},"payload":{"op":"u","before":' .. AFTER
      .. ',"after":{"USER_ID":123,"TAX_CODE":"ABC","COINS":1}}}'), PK)
    assert.are.equal("U", r.operation)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
    assert.are.equal(1, r.value.COINS)
    assert.are.equal(123, r.before.USER_ID)
  end)

  it("takes the primary key from after when there is no key", function()
    local r = dbz(msg(nil, '{"op":"c","after":' .. AFTER .. '}'), PK)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
    r = dbz(msg("", '{"op":"c","after":' .. AFTER .. '}'), PK)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
  end)

  it("takes the primary key from before on a delete without key", function()
    local r = dbz(msg(nil, '{"op":"d","before":' .. AFTER .. '}'), PK)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
  end)

  it("completes a key without some primary-key fields from the record", function()
    local r = dbz(msg('{"USER_ID":123}', '{"op":"c","after":' .. AFTER .. '}'), PK)
    assert.are.same({ USER_ID = 123, TAX_CODE = "ABC" }, r.keyObject)
  end)

  it("returns both images of a primary-key update", function()
    local r = dbz(msg('{"USER_ID":2}', [[{"op":"u","before":{"USER_ID":1,"N":"a"},
      "after":{"USER_ID":2,"N":"a"}}]]), { "USER_ID" })
    assert.are.same({ USER_ID = 2 }, r.keyObject)
    assert.are.same({ USER_ID = 1 }, r.before)
    assert.are.same({ USER_ID = 2, N = "a" }, r.after)
  end)

  it("builds of before only the primary-key fields, and nothing of source", function()
    local json = require("rtu.json")
    local decode, seen = json.decode, {}
    json.decode = function(s, leave_out)
      seen[#seen + 1] = leave_out
      return decode(s, leave_out)
    end
    local ok, err = pcall(function()
      local r = dbz(msg(nil, [[{"op":"u","before":{"USER_ID":1,"TAX_CODE":"A","N":{"x":[1]}},
        "after":{"USER_ID":2,"TAX_CODE":"A","N":{"x":[2]}},"source":{"db":"x"}}]]), PK)
      assert.are.same({ USER_ID = 1, TAX_CODE = "A" }, r.before)
      assert.are.same({ USER_ID = 2, TAX_CODE = "A" }, r.keyObject)
      dbz(msg(nil, '{"op":"d","before":{"USER_ID":1,"TAX_CODE":"A"}}'), PK)
      dbz(msg(nil, '{"op":"d","before":{"USER_ID":1,"TAX_CODE":"A"}}'), { "TAX_CODE" })
      r = dbz(msg(nil, '{"op":"d","before":{"USER_ID":1,"N":2},"source":{}}'), {})
      assert.are.same({ USER_ID = 1, N = 2 }, r.before) -- no primary key: whole
    end)
    json.decode = decode
    assert(ok, err)
    assert.are.same({ source = true, before = { USER_ID = true, TAX_CODE = true } }, seen[1])
    assert.are.equal(seen[1], seen[2]) -- made once for the projection's primaryKeys
    assert.are.same({ source = true, before = { TAX_CODE = true } }, seen[3])
    assert.are.same({ source = true }, seen[4])
  end)

  it("raises on a before image that is not an object, as before", function()
    assert.has_error(function()
      dbz(msg(KEY, '{"op":"d","before":[{"USER_ID":123,"TAX_CODE":"ABC"}]}'), PK)
    end, "debezium 'before' is not an object")
    assert.has_error(function() dbz(msg(KEY, '{"op":"u","before":5,"after":' .. AFTER .. '}'), PK) end,
      "debezium 'before' is not an object")
  end)

  for _, v in ipairs({ { "nil", nil }, { "empty", "" }, { "null", "null" },
    { "an enveloped null", '{"schema":null,"payload":null}' } }) do
    it("skips a tombstone whose value is " .. v[1], function()
      local r, reason = dbz(msg(KEY, v[2]), PK)
      assert.is_nil(r)
      assert.are.equal("debezium tombstone", reason)
    end)
  end

  it("skips a truncate", function()
    local r, reason = dbz(msg(nil, '{"op":"t","before":null,"after":null}'), PK)
    assert.is_nil(r)
    assert.are.equal("debezium truncate is not supported", reason)
  end)

  it("raises on an unknown op", function()
    assert.has_error(function() dbz(msg(KEY, '{"op":"m","after":' .. AFTER .. '}'), PK) end,
      "debezium op is unknown: m")
    assert.has_error(function() dbz(msg(KEY, '{"after":' .. AFTER .. '}'), PK) end,
      "debezium op is unknown: nil")
  end)

  it("raises on c, r or u without after", function()
    assert.has_error(function() dbz(msg(KEY, '{"op":"u","before":' .. AFTER .. ',"after":null}'), PK) end,
      "debezium op 'u' without 'after'")
  end)

  it("raises on a missing primary-key field", function()
    assert.has_error(function() dbz(msg(nil, '{"op":"c","after":{"USER_ID":1}}'), PK) end,
      "primary key field 'TAX_CODE' is missing from the debezium key and record")
    assert.has_error(function() dbz(msg(nil, '{"op":"d","before":null}'), PK) end,
      "primary key field 'USER_ID' is missing from the debezium key and record")
  end)

  it("raises on invalid JSON in value or key", function()
    local ok, err = pcall(dbz, msg(KEY, "{oops"), PK)
    assert.is_false(ok)
    assert.matches("^value is not valid JSON: ", err)
    ok, err = pcall(dbz, msg("{oops", '{"op":"c","after":' .. AFTER .. '}'), PK)
    assert.is_false(ok)
    assert.matches("^key is not valid JSON: ", err)
  end)

  it("raises on a value that is not an object", function()
    assert.has_error(function() dbz(msg(KEY, "[]"), PK) end, "value is not a JSON object")
  end)
end)

describe("rtu.adapters.common", function()
  local common = require("rtu.adapters.common")

  it("takes each primary-key field from the first table that has it, skipping nil tables", function()
    local k = common.key_object({ "A", "B", "C" }, "x", nil, { A = 1 }, { A = 2, B = false, C = 3 })
    assert.same({ A = 1, B = false, C = 3 }, k)
  end)

  it("names where a primary-key field is missing", function()
    assert.has_error(function() common.key_object({ "A" }, "the record", nil, { B = 1 }) end,
      "primary key field 'A' is missing from the record")
  end)

  it("splits the images: main is `before` for D, `after` otherwise; null is absent", function()
    local b, a = { ID = 1 }, { ID = 2 }
    local before, after, main, other = common.images({ before = b, after = a }, "D", "t")
    assert.equal(b, before); assert.equal(a, after); assert.equal(b, main); assert.equal(a, other)
    before, after, main, other = common.images({ before = value.null, after = a }, "U", "t")
    assert.is_nil(before); assert.equal(a, after); assert.equal(a, main); assert.is_nil(other)
    assert.has_error(function() common.images({ after = "x" }, "I", "t") end,
      "t 'after' is not an object")
  end)

  it("makes the change of an adapter with images: value is after but for a delete", function()
    local k, b, a = { ID = 1 }, { ID = 1 }, { ID = 1, X = 2 }
    local c = common.change(k, "U", b, a, 7)
    assert.equal(k, c.keyObject); assert.equal(a, c.value); assert.equal("U", c.operation)
    assert.equal(b, c.before); assert.equal(a, c.after); assert.equal(7, c.operationPosition)
    c = common.change(k, "D", b, a)
    assert.is_nil(c.value); assert.equal(a, c.after); assert.is_nil(c.operationPosition)
    assert.same({ keyObject = k, value = a, operation = "I", after = a }, common.change(k, "I", nil, a))
  end)
end)
