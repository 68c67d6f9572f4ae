--[[
rtu.adapters: the built-in Kafka message adapters by KAFKA_MESSAGE_ADAPTER name.
Each is function(message, primaryKeys, log) -> result | nil, reason (see the files).

Owns: the name table only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local basic = require("rtu.adapters.basic")

return {
  basic = basic,
  db2 = basic, -- the same KCOP JSON format, under the name accepted since 7.5.5
  ["golden-gate"] = require("rtu.adapters.golden_gate"),
  debezium = require("rtu.adapters.debezium"),
}
