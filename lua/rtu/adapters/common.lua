--[[
rtu.adapters.common: what the built-in adapters read the same way.

  decode(raw, what [, leave_out])
                         JSON text -> Lua value; raises "<what> is not valid JSON: ...";
                         leave_out: top-level names not to build (name = true),
                         or to build with only some members when they are objects
                         (name = {member = true, ...}); what is left out may still
                         be there: the decoder only spares the work
  keys_only_before(leave)
                         a function(primaryKeys) -> leave_out for decode: leave
                         (a table or nil) plus a before built with only the
                         primary-key fields; the same table for the same
                         primaryKeys (the projection's own, never changed), leave
                         itself when there are none
  is_empty(raw)          a raw payload that means "nothing": nil, "" or "null"
  is_object(v)           a decoded JSON object (not an array, not a date)
  images(record, operation, adapter)
                         before, after, main, other: the record's images (nil when
                         absent or null; raises "<adapter> '<name>' is not an
                         object" otherwise), and which one carries the record
                         (main: `before` for D, `after` for I and U) and the other
  change(keyObject, operation, before, after [, operationPosition])
                         the result of an adapter whose records carry images
                         (debezium, golden-gate): {keyObject, value, operation,
                         before, after, operationPosition}, value = after but
                         for a delete (D), which has none
  key_object(primaryKeys, where, a, b, c)
                         {pk = value} with each primary-key field taken from the
                         first of the tables a, b, c (nil or absent ones skipped) that has it;
                         raises "primary key field '<pk>' is missing from <where>"

Owns: these helpers only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local json = require("rtu.json")
local value = require("rtu.value")

local ARRAY, DATE = value.ARRAY, value.DATE

local M = {}

function M.decode(raw, what, leave_out)
  local ok, v = pcall(json.decode, raw, leave_out)
  if not ok then error(what .. " is not valid JSON: " .. tostring(v), 0) end
  return v
end

-- The before image is about as large as after, and the pipeline reads no more
-- of it than the primary key (a delete's key, a primary-key update).
function M.keys_only_before(leave)
  local made = setmetatable({}, { __mode = "k" })
  return function(primaryKeys)
    if primaryKeys == nil or primaryKeys[1] == nil then return leave end
    local l = made[primaryKeys]
    if not l then
      local keep = {}
      for _, pk in ipairs(primaryKeys) do keep[pk] = true end
      l = { before = keep }
      for k, v in pairs(leave or {}) do l[k] = v end
      made[primaryKeys] = l
    end
    return l
  end
end

function M.is_empty(raw)
  return raw == nil or raw == "" or raw == "null"
end

-- Called several times for every message: one metatable read, not two calls.
function M.is_object(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return mt ~= ARRAY and mt ~= DATE
end
local is_object = M.is_object

local function image(record, name, adapter)
  local v = record[name]
  if v == nil or v == value.null then return nil end
  if not is_object(v) then error(adapter .. " '" .. name .. "' is not an object", 0) end
  return v
end

function M.images(record, operation, adapter)
  local before, after = image(record, "before", adapter), image(record, "after", adapter)
  if operation == "D" then return before, after, before, after end
  return before, after, after, before
end

function M.change(keyObject, operation, before, after, operationPosition)
  return {
    keyObject = keyObject,
    value = operation ~= "D" and after or nil,
    operation = operation,
    before = before,
    after = after,
    operationPosition = operationPosition,
  }
end

-- Three named tables rather than varargs: no select() for each of them.
-- The usual single key is made by a constructor, at its size: an empty table
-- given its first field is rehashed (its keys counted, its hash part resized).
function M.key_object(primaryKeys, where, a, b, c)
  if primaryKeys == nil then return {} end
  local n = #primaryKeys
  local keyObject = n ~= 1 and {} or nil
  for i = 1, n do
    local pk = primaryKeys[i]
    local v
    if a then v = a[pk] end
    if v == nil and b then v = b[pk] end
    if v == nil and c then v = c[pk] end
    if v == nil then
      error("primary key field '" .. tostring(pk) .. "' is missing from " .. where, 0)
    end
    if n == 1 then return { [pk] = v } end
    keyObject[pk] = v
  end
  return keyObject
end

return M
