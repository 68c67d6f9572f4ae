--[[
rtu.adapters.basic: the `basic` (alias `db2`) Kafka message adapter, for IBM
InfoSphere Data Replication KCOP JSON (contract section 2.4).

  key    JSON object with the primary-key fields; may be absent, empty or "null",
         and then every primary key is read from the value.
  value  JSON object with the whole record = upsert (operation nil);
         absent, empty or "null" = delete (the key must then carry the primary key).

function(message, primaryKeys, log) -> {keyObject, value, operation = nil}
Raises (error(msg, 0)) on invalid JSON, a non-object value, or a primary-key field
found neither in the key nor in the value. No before image, so no primary-key update.

Owns: this mapping only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local value = require("rtu.value")
local common = require("rtu.adapters.common")

local decode, is_empty, is_object = common.decode, common.is_empty, common.is_object
local key_object = common.key_object

return function(message, primaryKeys, log)
  local key
  if not is_empty(message.key) then
    key = decode(message.key, "key")
    -- a scalar key carries no field names: the value has to provide the primary key
    if not is_object(key) then key = nil end
  end

  local record
  if not is_empty(message.value) then
    record = decode(message.value, "value")
    if record == value.null then
      record = nil
    elseif not is_object(record) then
      error("value is not a JSON object", 0)
    end
  end

  local keyObject
  if primaryKeys ~= nil and primaryKeys[1] ~= nil then
    keyObject = key_object(primaryKeys, record and "both key and value" or "the key of a delete",
      key, record)
  else
    -- no primary key configured: the whole key object identifies the record
    keyObject = {}
    if key then for k, v in pairs(key) do keyObject[k] = v end end
  end

  return { keyObject = keyObject, value = record }
end
