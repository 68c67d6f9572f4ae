--[[
rtu.adapters.debezium: the `debezium` Kafka message adapter (contract section 2.6).

  key    JSON object with the primary-key fields, plain or inside a Kafka Connect
         envelope {"schema": ..., "payload": {...}}; may be absent.
  value  {op = "c"|"r"|"u"|"d"|"t", before, after, source, ts_ms, ...}, plain or
         inside the same envelope.

function(message, primaryKeys, log) ->
  {keyObject, value, operation, before, after}    or    nil, reason
  operation  c and r (snapshot read) -> "I", u -> "U", d -> "D".
  keyObject  each primary-key field from the key when the key has it, else from
             `after` (I, U) or `before` (D), else from the other image.
  value      `after` for I and U, nil for D.
  after      passed through (nil when absent or null).
  before     nil when absent or null, else only its primary-key fields (the rest
             is not built from the text; it may still be there): enough for the
             keyObject of a D and for a primary-key update.
  nil, "debezium tombstone"                  value absent, empty, null, or an
                                             envelope whose payload is null
  nil, "debezium truncate is not supported"  op "t"
Raises (error(msg, 0)) on invalid JSON, an unknown op, a missing image, or a
primary-key field found nowhere.

Owns: this mapping only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local value = require("rtu.value")
local common = require("rtu.adapters.common")

local decode, is_empty, is_object = common.decode, common.is_empty, common.is_object
local images, key_object, change = common.images, common.key_object, common.change

local OPERATIONS = { c = "I", r = "I", u = "U", d = "D" }
-- Nothing here or in the pipeline reads the connector's source block, nor more
-- of the before image than its primary-key fields: not built from the text.
local leave_out = common.keys_only_before({ source = true })

-- The Connect JsonConverter with schemas.enable=true wraps the data as
-- {"schema": ..., "payload": ...}; a record of ours never has both fields at the
-- top level (its fields sit under before/after).
local function unwrap(v)
  if type(v) == "table" and v.payload ~= nil and v.schema ~= nil and v.op == nil
      and is_object(v) then
    return v.payload
  end
  return v
end

return function(message, primaryKeys, log)
  if is_empty(message.value) then return nil, "debezium tombstone" end
  local record = unwrap(decode(message.value, "value", leave_out(primaryKeys)))
  if record == nil or record == value.null then return nil, "debezium tombstone" end
  if not is_object(record) then error("value is not a JSON object", 0) end

  local op = record.op
  if op == "t" then return nil, "debezium truncate is not supported" end
  local operation = OPERATIONS[op]
  if not operation then
    error("debezium op is unknown: " .. (type(op) == "string" and op or tostring(op)), 0)
  end

  local before, after, main, other = images(record, operation, "debezium")
  if operation ~= "D" and not after then
    error("debezium op '" .. op .. "' without 'after'", 0)
  end

  local key
  if not is_empty(message.key) then
    key = unwrap(decode(message.key, "key"))
    if not is_object(key) then key = nil end
  end

  local keyObject = key_object(primaryKeys, "the debezium key and record", key, main, other)

  return change(keyObject, operation, before, after)
end
