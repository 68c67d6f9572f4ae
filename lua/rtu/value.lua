--[[
rtu.value: the few value kinds that plain Lua tables cannot tell apart, shared by
the C core and every Lua module.

  null   JSON/BSON null inside a table (Lua nil cannot live in a table). It is the
         `null` of rtu.json, a light userdata equal to lua-cjson's `cjson.null`.
  date   a BSON date: setmetatable({ms = <integer ms since epoch>}, Date).
  array  a table that must be written as a JSON/BSON array even when empty:
         setmetatable(t, Array). Decoded arrays always carry it.

The C core recognises these by the metatables stored here, so never copy them.

is_list(v)     an array, or a plain table with a first element (a decoded array
               that lost its metatable, or one a script built)
is_object(v)   a table that is neither a list nor a date
sorted_keys(t) the keys of t in the order of their tostring, for stable output
Pure: no I/O, no globals written.
]]
local json = require("rtu.json")

local M = {}

M.null = json.null

local Date = { __name = "rtu.date" }
Date.__index = Date
Date.__eq = function(a, b) return a.ms == b.ms end
Date.__tostring = function(d) return M.iso(d) end
M.Date = Date

local Array = { __name = "rtu.array" }
M.Array = Array

-- Scripts must not reach (and change) these metatables, which every script and
-- the runtime share: getmetatable gives a read-only token instead, and the
-- modules compare with the token.
local function token(name)
  return setmetatable({}, {
    __newindex = function() error(name .. " is read-only", 2) end,
    __metatable = false,
  })
end
M.DATE = token("rtu.date")
M.ARRAY = token("rtu.array")
Date.__metatable = M.DATE
Array.__metatable = M.ARRAY

function M.date(ms)
  return setmetatable({ ms = ms }, Date)
end

function M.is_date(v)
  return getmetatable(v) == M.DATE
end

function M.array(t)
  return setmetatable(t or {}, Array)
end

function M.is_array(v)
  return type(v) == "table" and getmetatable(v) == M.ARRAY
end

function M.is_null(v)
  return v == M.null
end

function M.is_list(v)
  return M.is_array(v) or (type(v) == "table" and getmetatable(v) == nil and v[1] ~= nil)
end

function M.is_object(v)
  return type(v) == "table" and not M.is_list(v) and not M.is_date(v)
end

function M.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Days from civil, Howard Hinnant's algorithm: exact for any proleptic Gregorian date.
local function days_from_civil(y, m, d)
  y = (m <= 2) and (y - 1) or y
  local era = y // 400 -- Lua's // floors: the C original's "y - 399" trick would count twice
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

local function civil_from_days(z)
  z = z + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
M.civil_from_days = civil_from_days

-- ISO-8601 in UTC with milliseconds, as JavaScript's Date.prototype.toISOString.
function M.iso(d)
  local ms = type(d) == "table" and d.ms or d
  local days = ms // 86400000
  local rem = ms - days * 86400000
  local y, m, dd = civil_from_days(days)
  local ystr
  if y >= 0 and y <= 9999 then ystr = string.format("%04d", y)
  elseif y < 0 then ystr = string.format("-%06d", -y)
  else ystr = string.format("+%06d", y) end
  return string.format("%s-%02d-%02dT%02d:%02d:%02d.%03dZ", ystr, m, dd,
    rem // 3600000, rem // 60000 % 60, rem // 1000 % 60, rem % 1000)
end

return M
