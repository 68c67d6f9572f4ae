--[[
rtu.adapters.golden_gate: the `golden-gate` Kafka message adapter, for the Oracle
GoldenGate JSON formatter (contract section 2.5).

  key    ignored: GoldenGate writes the key values joined by "_", which cannot be
         split back into fields; the primary key comes from the record images.
  value  {op_type = "I"|"U"|"D", before, after, pos, table, op_ts, current_ts, ...}

function(message, primaryKeys, log) ->
  {keyObject, value, operation, before, after, operationPosition}
  keyObject          primary-key fields of `after` (I, U) or `before` (D); a field
                     missing there is taken from the other image (GoldenGate may
                     send compressed images holding only changed columns).
  value              `after` for I and U, nil for D.
  after              the image as sent (nil when absent or null).
  before             nil when absent or null, else only its primary-key fields
                     (the rest is not built from the text; it may still be
                     there): enough for the keyObject of a D and for the core to
                     see a primary-key update (U whose images differ on the key).
  operationPosition  `pos` as an integer (a zero-padded digit string or a number),
                     nil when the message has none; the core decides whether it is
                     the counter (USE_POS_AS_COUNTER).
Raises (error(msg, 0)) on invalid JSON, an empty value, an unknown op_type, a
missing image, a missing primary-key field, or a `pos` that is not an integer
within int64.

Owns: this mapping only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local value = require("rtu.value")
local common = require("rtu.adapters.common")

local decode, is_empty, is_object = common.decode, common.is_empty, common.is_object
local images, key_object, change = common.images, common.key_object, common.change

local OPERATIONS = { I = "I", U = "U", D = "D" }
local INT64_MAX = "9223372036854775807"
-- Nothing here or in the pipeline reads more of the before image than its
-- primary-key fields: the rest is not built from the text.
local leave_out = common.keys_only_before(nil)

local function position(pos)
  if pos == nil or pos == value.null then return nil end
  if math.type(pos) == "integer" then return pos end
  if math.type(pos) == "float" then
    local i = math.tointeger(pos)
    if i then return i end
    error("golden-gate pos is not an integer: " .. tostring(pos), 0)
  end
  if type(pos) == "string" and pos:match("^%d+$") then
    local digits = pos:gsub("^0+", "")
    -- compare as text: tonumber would turn an overflow into a float silently
    if #digits > #INT64_MAX or (#digits == #INT64_MAX and digits > INT64_MAX) then
      error("golden-gate pos does not fit in a 64-bit integer: " .. pos, 0)
    end
    if digits == "" then return 0 end
    return math.tointeger(tonumber(digits))
  end
  error("golden-gate pos is not an integer: " .. tostring(pos), 0)
end

return function(message, primaryKeys, log)
  if is_empty(message.value) then
    error("golden-gate message has an empty value", 0)
  end
  local record = decode(message.value, "value", leave_out(primaryKeys))
  if not is_object(record) then error("value is not a JSON object", 0) end

  local op = record.op_type
  local operation = OPERATIONS[op]
  if not operation then
    error("golden-gate op_type is unknown: " .. (type(op) == "string" and op or tostring(op)), 0)
  end

  local before, after, main, other = images(record, operation, "golden-gate")
  if not main then
    error("golden-gate op_type " .. operation .. " without '"
      .. (operation == "D" and "before" or "after") .. "'", 0)
  end

  local keyObject = key_object(primaryKeys, "the golden-gate record", main, other)

  return change(keyObject, operation, before, after, position(record.pos))
end
