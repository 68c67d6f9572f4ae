--[[
rtu.casts: the built-in cast functions of the Real-Time Updater, with the
JavaScript semantics of the reference (contract section 3.2), and their Projection
Storer aliases. Returns a table name -> function(value, fieldName, log) -> value.

Value model (rtu.value): Lua nil is JS undefined (the core stores it as null),
value.null is JS null, Lua numbers are JS numbers, value.date(ms) is a Date, a
table with the value.Array metatable is an Array, any other table a plain Object.
Returning nil means "undefined"; an invalid input also calls
log.debug("<fieldName> is invalid, will be casted to undefined") when log is given,
and returns true as a second value (the value could not be converted).

The JS coercions are implemented here, in full where data can reach them:
  Number(x)   StringToNumber (JS white space, signs, exponents, "Infinity",
              0x/0o/0b), true/false, null, Date -> ms, Array -> Number(join(",")),
              Object -> NaN.
  String(x)   via rtu.jsonenc.number for numbers.
  parseInt(n, 10) on a number, through its JS string form (1e21 -> 1, 1e-7 -> 1).
  new Date(x) Date copy, numbers through TimeClip, strings through the same
              grammar as V8's Date parser (ES ISO format first, then V8's legacy
              forms: RFC 2822, "YYYY-MM-DD HH:mm:ss", "Sep 19 2023", Date.toString
              output, ...), arrays through their join(",").
Deliberate differences from Node (see also the spec file):
  * a string that is a plain decimal integer within int64 ("12", "-9007199254740993")
    is read exactly, and Lua integers are never rounded to doubles: the product keeps
    64-bit integers whole, where JS rounds above 2^53;
  * date-times without offset are local time in JS: here they are UTC (the service
    runs with TZ=UTC, where the two agree);
  * castToString of a Date gives its ISO string, where the JS cast, taking the
    `typeof value === "object"` branch, gives JSON.stringify(date): the ISO string
    in double quotes; Date.prototype.toString (used only inside an Array join) is
    written for TZ=UTC;
  * parseInt of -0.x gives integer 0 rather than -0.

Owns: the cast table only. May not touch: I/O, os, globals, modules but rtu.*.
]]
local json = require("rtu.json")
local value = require("rtu.value")
local jsonenc = require("rtu.jsonenc")

local null, Array, Date = value.null, value.ARRAY, value.DATE -- compared with getmetatable
local huge = math.huge
local NaN = 0.0 / 0.0
local mtype, tointeger, floor = math.type, math.tointeger, math.floor
local byte, sub = string.byte, string.sub
local decimal = json.decimal

local function is_date(v) return getmetatable(v) == Date end
local function is_array(v) return type(v) == "table" and getmetatable(v) == Array end
local function is_plain_object(v)
  return type(v) == "table" and getmetatable(v) ~= Array and getmetatable(v) ~= Date
end

local function invalid(fieldName, log)
  if log and log.debug then
    log.debug(tostring(fieldName) .. " is invalid, will be casted to undefined")
  end
  -- The second value tells rtu.pipeline the value could not be converted (an
  -- UNCASTABLE_FIELD); a caller taking one value never sees it.
  return nil, true
end

-- Integral doubles come back as Lua integers, so that "12" cast to a number is
-- stored as the integer 12 (the Node driver, too, writes an integral number that
-- fits int32 as an integer); -0 stays a float to keep its sign.
local function normalize(f)
  if mtype(f) == "float" and f == floor(f) and f >= -2^63 and f < 2^63
      and not (f == 0 and 1 / f < 0) then
    return tointeger(f)
  end
  return f
end

------------------------------------------------------------------------------
-- White space of ECMAScript (WhiteSpace and LineTerminator), UTF-8 encoded.

local ASCII_WS = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }
local MB_WS = {
  ["\194\160"] = true, ["\225\154\128"] = true, ["\226\128\168"] = true,
  ["\226\128\169"] = true, ["\226\128\175"] = true, ["\226\129\159"] = true,
  ["\227\128\128"] = true, ["\239\187\191"] = true,
}
for c = 0x80, 0x8A do MB_WS["\226\128" .. string.char(c)] = true end -- U+2000..U+200A

local function ws_len_at(s, i)
  local b = byte(s, i)
  if not b then return 0 end
  if ASCII_WS[b] then return 1 end
  if b == 0xC2 and MB_WS[sub(s, i, i + 1)] then return 2 end
  if b >= 0xE1 and b <= 0xEF and MB_WS[sub(s, i, i + 2)] then return 3 end
  return 0
end

local function ws_len_before(s, j)
  local b = byte(s, j)
  if not b then return 0 end
  if ASCII_WS[b] then return 1 end
  if b < 0x80 then return 0 end
  if j >= 2 and MB_WS[sub(s, j - 1, j)] then return 2 end
  if j >= 3 and MB_WS[sub(s, j - 2, j)] then return 3 end
  return 0
end

local function js_trim(s)
  local i, j = 1, #s
  while i <= j do
    local n = ws_len_at(s, i)
    if n == 0 then break end
    i = i + n
  end
  while j >= i do
    local n = ws_len_before(s, j)
    if n == 0 then break end
    j = j - n
  end
  return sub(s, i, j)
end

------------------------------------------------------------------------------
-- Number(string)

-- StrDecimalLiteral without "Infinity": sign, digits with an optional dot (at
-- least one digit on either side), optional exponent.
local function is_decimal_literal(s)
  local i = 1
  local c = byte(s, 1)
  if c == 43 or c == 45 then i = 2 end -- + -
  local int = s:match("^%d*", i)
  i = i + #int
  local frac = ""
  if byte(s, i) == 46 then -- .
    frac = s:match("^%d*", i + 1)
    i = i + 1 + #frac
  end
  if #int + #frac == 0 then return false end
  c = byte(s, i)
  if c == 101 or c == 69 then -- e E
    local e = s:match("^[+-]?%d+", i + 1)
    if not e then return false end
    i = i + 1 + #e
  end
  return i == #s + 1
end

local RADIX_BITS = { x = 4, X = 4, o = 3, O = 3, b = 1, B = 1 }
local RADIX_DIGITS = { [4] = "^%x+$", [3] = "^[0-7]+$", [1] = "^[01]+$" }

-- Mathematical value of a 0x/0o/0b literal rounded to the nearest double
-- (ties to even), as StringToNumber requires even past 2^53.
local function radix_value(digits, bits)
  local bitstr = {}
  for k = 1, #digits do
    local d = tonumber(sub(digits, k, k), 16)
    for b = bits - 1, 0, -1 do bitstr[#bitstr + 1] = (d >> b) & 1 end
  end
  local first = 1
  while first <= #bitstr and bitstr[first] == 0 do first = first + 1 end
  local n = #bitstr - first + 1
  if n <= 0 then return 0 end
  if n <= 53 then
    local v = 0
    for k = first, #bitstr do v = (v << 1) | bitstr[k] end
    return v -- exact in a double too
  end
  local m = 0
  for k = first, first + 52 do m = m * 2 + bitstr[k] end
  local rest = first + 53
  local half = bitstr[rest] == 1
  local sticky = false
  for k = rest + 1, #bitstr do if bitstr[k] == 1 then sticky = true; break end end
  if half and (sticky or m % 2 == 1) then m = m + 1 end
  return normalize(m * 2.0 ^ (n - 53))
end

local function string_to_number(s)
  -- The common CDC case first ("42", "-3.50"): no white space to trim, no radix
  -- prefix, a decimal literal for sure, so the general path below would come to
  -- the same tonumber(s) after scanning it four times. json.decimal is that
  -- tonumber(s), or nil for any other text, in C.
  local n = decimal(s)
  if n ~= nil then
    if n == 0 and byte(s, 1) == 45 then return -0.0 end
    return normalize(n)
  end
  s = js_trim(s)
  if s == "" then return 0 end
  if s == "Infinity" or s == "+Infinity" then return huge end
  if s == "-Infinity" then return -huge end
  if byte(s, 1) == 48 and #s > 2 then -- 0x.. 0o.. 0b..
    local bits = RADIX_BITS[sub(s, 2, 2)]
    if bits then
      local digits = sub(s, 3)
      if not digits:match(RADIX_DIGITS[bits]) then return NaN end
      return radix_value(digits, bits)
    end
  end
  if not is_decimal_literal(s) then return NaN end
  local n = tonumber(s)
  if n == nil then return NaN end
  if n == 0 and byte(s, 1) == 45 then return -0.0 end
  return normalize(n)
end

------------------------------------------------------------------------------
-- ToString as used by Array.prototype.join and ToPrimitive

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- Date.prototype.toString in the UTC time zone.
local function date_to_string(d)
  local ms = d.ms
  local days = ms // 86400000
  local rem = ms - days * 86400000
  local y, m, dd = value.civil_from_days(days)
  local ystr = y < 0 and string.format("-%06d", -y) or string.format("%04d", y)
  return string.format("%s %s %02d %s %02d:%02d:%02d GMT+0000 (Coordinated Universal Time)",
    DAYS[(days + 4) % 7 + 1], MONTHS[m], dd, ystr,
    rem // 3600000, rem // 60000 % 60, rem // 1000 % 60)
end

local to_js_string

local function array_join(t, seen)
  -- JS join writes "" for an array already being joined, instead of looping
  if seen[t] then return "" end
  seen[t] = true
  local n = 0
  for k in pairs(t) do
    if mtype(k) == "integer" and k > n then n = k end
  end
  local parts = {}
  for i = 1, n do
    local v = t[i]
    if v == nil or v == null then parts[i] = "" else parts[i] = to_js_string(v, seen) end
  end
  seen[t] = nil
  return table.concat(parts, ",")
end

-- ToString(v) for a defined, non-null v.
to_js_string = function(v, seen)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return jsonenc.number(v) end
  if tv == "boolean" then return v and "true" or "false" end
  if v == null then return "null" end
  if tv == "table" then
    if is_date(v) then return date_to_string(v) end
    if is_array(v) then return array_join(v, seen or {}) end
    return "[object Object]"
  end
  return tostring(v)
end

------------------------------------------------------------------------------
-- Number(x)

local function to_number(v)
  local tv = type(v)
  if tv == "number" then return v end
  if tv == "string" then return string_to_number(v) end
  if tv == "boolean" then return v and 1 or 0 end
  if v == nil then return NaN end
  if v == null then return 0 end
  if tv == "table" then
    if is_date(v) then return v.ms end
    if is_array(v) then return string_to_number(array_join(v, {})) end
  end
  return NaN
end

-- parseInt(n, 10) for a number n: it reads the leading integer of String(n).
local function parse_int_of_number(n)
  if mtype(n) == "integer" then return n end
  if n ~= n or n == huge or n == -huge then return NaN end -- parseInt("Infinity")
  local sign, digits = jsonenc.number(n):match("^(-?)(%d+)")
  local v = tonumber(digits)
  if sign == "-" then v = -v end
  if v == 0 then return 0 end
  return normalize(v)
end

------------------------------------------------------------------------------
-- new Date(string): the grammar of V8's DateParser (ES5 ISO first, then the
-- legacy forms), re-implemented over UTF-8 bytes (V8 reads UTF-16: a non-ASCII
-- character is one "word" character there and one or more bytes here, which
-- only matters for words longer than three letters, never keywords).

local NONE = nil
local KEYWORDS = {
  -- prefix -> {type, value}; types: M month, Z zone (hours), A am/pm, T separator
  jan = { "M", 1 }, feb = { "M", 2 }, mar = { "M", 3 }, apr = { "M", 4 },
  may = { "M", 5 }, jun = { "M", 6 }, jul = { "M", 7 }, aug = { "M", 8 },
  sep = { "M", 9 }, oct = { "M", 10 }, nov = { "M", 11 }, dec = { "M", 12 },
  am = { "A", 0 }, pm = { "A", 12 },
  ut = { "Z", 0 }, utc = { "Z", 0 }, z = { "Z", 0 }, gmt = { "Z", 0 },
  cdt = { "Z", -5 }, cst = { "Z", -6 }, edt = { "Z", -4 }, est = { "Z", -5 },
  mdt = { "Z", -6 }, mst = { "Z", -7 }, pdt = { "Z", -7 }, pst = { "Z", -8 },
  t = { "T", 0 },
}

-- V8's date scanner takes U+2028/U+2029 for word characters, not white space.
local function date_ws_len(s, i)
  local n = ws_len_at(s, i)
  if n == 3 and byte(s, i) == 0xE2 and byte(s, i + 1) == 0x80 then
    local c = byte(s, i + 2)
    if c == 0xA8 or c == 0xA9 then return 0 end
  end
  return n
end

-- Tokens: {k = "num", v = value (first 9 significant digits), len = digits}
--         {k = "sym", v = ":"|"-"|"+"|"."|")"}, {k = "word", t = type|nil, v, len}
--         {k = "ws"}, {k = "unk"}, {k = "end"}
local function tokenizer(s)
  local pos, n = 1, #s
  -- V8 reads a NUL as the end of the string
  local nul = s:find("\0", 1, true)
  if nul then n = nul - 1 end
  local function scan()
    if pos > n then return { k = "end" } end
    local b = byte(s, pos)
    if b >= 48 and b <= 57 then
      local start = pos
      while pos <= n and byte(s, pos) == 48 do pos = pos + 1 end
      local v, i = 0, 0
      while pos <= n do
        local c = byte(s, pos)
        if c < 48 or c > 57 then break end
        if i < 9 then v = v * 10 + (c - 48) end
        i = i + 1
        pos = pos + 1
      end
      return { k = "num", v = v, len = pos - start }
    end
    if b == 58 or b == 45 or b == 43 or b == 46 or b == 41 then
      pos = pos + 1
      return { k = "sym", v = string.char(b) }
    end
    local wl = date_ws_len(s, pos)
    if wl > 0 and pos + wl - 1 <= n then
      pos = pos + wl
      return { k = "ws" }
    end
    if b >= 65 then
      local start = pos
      while pos <= n and byte(s, pos) >= 65 and date_ws_len(s, pos) == 0 do pos = pos + 1 end
      local len = pos - start
      local prefix = {}
      for k = start, math.min(start + 2, pos - 1) do
        prefix[#prefix + 1] = string.char(byte(s, k) | 0x20)
      end
      local kw = KEYWORDS[table.concat(prefix)]
      if kw and (len <= 3 or kw[1] == "M") then
        return { k = "word", t = kw[1], v = kw[2], len = len }
      end
      return { k = "word", len = len }
    end
    if b == 40 then -- '(' skips to its matching ')' or to the end
      local depth = 0
      repeat
        local c = byte(s, pos)
        if c == 41 then depth = depth - 1 elseif c == 40 then depth = depth + 1 end
        pos = pos + 1
      until depth <= 0 or pos > n
      return { k = "unk" }
    end
    pos = pos + 1
    return { k = "unk" }
  end
  local nxt = scan()
  local sc = {}
  function sc.peek() return nxt end
  function sc.next()
    local t = nxt
    nxt = scan()
    return t
  end
  function sc.skip(sym)
    if nxt.k == "sym" and nxt.v == sym then
      nxt = scan()
      return true
    end
    return false
  end
  return sc
end

local function is_num(t, len) return t.k == "num" and (len == nil or t.len == len) end
local function is_sign(t) return t.k == "sym" and (t.v == "+" or t.v == "-") end
local function is_z(t) return t.k == "word" and t.t == "Z" and t.len == 1 and t.v == 0 end
local function between(x, lo, hi) return x >= lo and x <= hi end

-- The first three significant digits of a fraction, from value and length.
local function read_ms(t)
  local v, len = t.v, t.len
  if len == 1 then return v * 100 end
  if len == 2 then return v * 10 end
  if len > 3 then
    -- V8 keeps 9 significant digits but counts leading zeros in the length
    if len > 9 then len = 9 end
    local factor = 1
    for _ = 4, len do factor = factor * 10 end
    return v // factor
  end
  return v
end

local function new_day()
  return { comp = {}, named_month = NONE, iso = false }
end
local function new_time()
  return { comp = {}, hour_offset = NONE }
end
local function new_tz()
  return { sign = NONE, hour = NONE, minute = NONE }
end

local function time_is_expecting(time, n)
  local i = #time.comp
  return (i == 1 and between(n, 0, 59)) or (i == 2 and between(n, 0, 59))
      or (i == 3 and between(n, 0, 999))
end
local function time_add(time, n)
  if #time.comp < 4 then time.comp[#time.comp + 1] = n; return true end
  return false
end
local function time_add_final(time, n)
  if not time_add(time, n) then return false end
  while #time.comp < 4 do time.comp[#time.comp + 1] = 0 end
  return true
end
local function tz_set(tz, hours)
  tz.sign = hours < 0 and -1 or 1
  tz.hour = hours * tz.sign
  tz.minute = 0
end
local function tz_is_utc(tz) return tz.hour == 0 and tz.minute == 0 end
local function day_add(day, n)
  if #day.comp < 3 then day.comp[#day.comp + 1] = n; return true end
  return false
end

-- ES5 "Date Time String Format"; returns the first token it did not use, "end"
-- when the whole string was an ISO date, or "invalid".
local function parse_es5(sc, day, time, tz)
  local p = sc.peek()
  if is_sign(p) then
    local sign_tok = sc.next()
    if not is_num(sc.peek(), 6) then return sign_tok end
    local year = sc.next().v
    if sign_tok.v == "-" and year == 0 then return sign_tok end
    day_add(day, sign_tok.v == "-" and -year or year)
  elseif is_num(p, 4) then
    day_add(day, sc.next().v)
  else
    return sc.next()
  end
  if sc.skip("-") then
    p = sc.peek()
    if not is_num(p, 2) or not between(p.v, 1, 12) then return sc.next() end
    day_add(day, sc.next().v)
    if sc.skip("-") then
      p = sc.peek()
      if not is_num(p, 2) or not between(p.v, 1, 31) then return sc.next() end
      day_add(day, sc.next().v)
    end
  end
  p = sc.peek()
  if not (p.k == "word" and p.t == "T") then
    if p.k ~= "end" then return sc.next() end
  else
    sc.next()
    p = sc.peek()
    if not is_num(p, 2) or not between(p.v, 0, 24) then return "invalid" end
    local h24 = p.v == 24
    time_add(time, sc.next().v)
    if not sc.skip(":") then return "invalid" end
    p = sc.peek()
    if not is_num(p, 2) or not between(p.v, 0, 59) or (h24 and p.v > 0) then return "invalid" end
    time_add(time, sc.next().v)
    if sc.skip(":") then
      p = sc.peek()
      if not is_num(p, 2) or not between(p.v, 0, 59) or (h24 and p.v > 0) then return "invalid" end
      time_add(time, sc.next().v)
      if sc.skip(".") then
        p = sc.peek()
        if not is_num(p) or (h24 and p.v > 0) then return "invalid" end
        time_add(time, read_ms(sc.next()))
      end
    end
    p = sc.peek()
    if is_z(p) then
      sc.next()
      tz_set(tz, 0)
    elseif is_sign(p) then
      tz.sign = sc.next().v == "+" and 1 or -1
      p = sc.peek()
      if is_num(p, 4) then -- hhmm extension
        local hour, min = p.v // 100, p.v % 100
        if not between(hour, 0, 23) or not between(min, 0, 59) then return "invalid" end
        sc.next()
        tz.hour, tz.minute = hour, min
      else
        if not is_num(p, 2) or not between(p.v, 0, 23) then return "invalid" end
        tz.hour = sc.next().v
        if not sc.skip(":") then return "invalid" end
        p = sc.peek()
        if not is_num(p, 2) or not between(p.v, 0, 59) then return "invalid" end
        tz.minute = sc.next().v
      end
    end
    if sc.peek().k ~= "end" then return "invalid" end
  end
  -- date-only forms are UTC; date-time forms without offset are local time
  if tz.hour == NONE and #time.comp == 0 then tz_set(tz, 0) end
  day.iso = true
  return { k = "end" }
end

local function day_write(day)
  local c = day.comp
  if #c < 1 then return nil end
  -- missing parts default to 1, so a lone "19" is year 1 (-> 2001) as in V8,
  -- whose "one component" branches are unreachable for the same reason
  while #c < 3 do c[#c + 1] = 1 end
  local year, month, d = 0, NONE, NONE
  if day.named_month == NONE then
    if day.iso or not between(c[1], 1, 31) then
      year, month, d = c[1], c[2], c[3]
    else
      month, d, year = c[1], c[2], c[3]
    end
  else
    month = day.named_month
    if not between(c[1], 1, 31) then
      year, d = c[1], c[2]
    else
      d, year = c[1], c[2]
    end
  end
  if not day.iso then
    if between(year, 0, 49) then year = year + 2000
    elseif between(year, 50, 99) then year = year + 1900 end
  end
  if not between(month, 1, 12) or not between(d, 1, 31) then return nil end
  return year, month, d
end

local function time_write(time)
  local c = time.comp
  while #c < 4 do c[#c + 1] = 0 end
  local hour, minute, second, ms = c[1], c[2], c[3], c[4]
  if time.hour_offset ~= NONE then
    if not between(hour, 0, 12) then return nil end
    hour = hour % 12 + time.hour_offset
  end
  if not between(hour, 0, 23) or not between(minute, 0, 59)
      or not between(second, 0, 59) or not between(ms, 0, 999) then
    if hour ~= 24 or minute ~= 0 or second ~= 0 or ms ~= 0 then return nil end
  end
  return hour, minute, second, ms
end

-- Offset in seconds east of UTC, false when absent (local time), nil if invalid.
local function tz_write(tz)
  if tz.sign == NONE then return false end
  local total = (tz.hour or 0) * 3600 + (tz.minute or 0) * 60
  if total > 0x7FFFFFFF then return nil end
  return tz.sign * total
end

-- The form nearly every CDC timestamp has, YYYY-MM-DDTHH:mm:ss[.f{1,9}][Z|+-HH:mm],
-- without building tokens; false hands anything else to the full parser, which
-- gives the same answer for these strings.
local function fast_iso(s)
  local y, mo, d, h, mi, sec, rest =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return false end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 59 then return false end
  local ms = 0
  local frac, tail = rest:match("^%.(%d+)(.*)$")
  if frac then
    if #frac > 9 then return false end
    ms = read_ms({ v = tonumber(frac), len = #frac })
    rest = tail
  end
  local offset = 0
  if rest ~= "Z" and rest ~= "" then
    local sign, oh, om = rest:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return false end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return false end
    offset = (oh * 60 + om) * 60000
    if sign == "-" then offset = -offset end
  end
  local days = value.days_from_civil(y, mo, 1) + d - 1
  return days * 86400000 + ((h * 60 + mi) * 60 + sec) * 1000 + ms - offset
end

local function parse_date_string(s)
  local fast = fast_iso(s)
  if fast then return fast end
  local sc = tokenizer(s)
  local day, time, tz = new_day(), new_time(), new_tz()
  local tok = parse_es5(sc, day, time, tz)
  if tok == "invalid" then return nil end
  local has_read_number = #day.comp > 0
  while tok.k ~= "end" do
    if tok.k == "num" then
      has_read_number = true
      local n = tok.v
      if sc.skip(":") then
        if sc.skip(":") then
          if #time.comp > 0 then return nil end
          time_add(time, n)
          time_add(time, 0)
        else
          if not time_add(time, n) then return nil end
          local p = sc.peek()
          if p.k == "sym" and p.v == "." then sc.next() end
        end
      elseif sc.skip(".") and time_is_expecting(time, n) then
        time_add(time, n)
        if not is_num(sc.peek()) then return nil end
        time_add_final(time, read_ms(sc.next()))
      elseif tz.hour ~= NONE and tz.minute == NONE and between(n, 0, 59) then
        tz.minute = n
      elseif time_is_expecting(time, n) then
        time_add_final(time, n)
        local p = sc.peek()
        if not (p.k == "end" or p.k == "ws" or is_z(p) or is_sign(p)) then return nil end
      else
        if not day_add(day, n) then return nil end
        sc.skip("-")
      end
    elseif tok.k == "word" then
      if tok.t == "A" and #time.comp > 0 then
        time.hour_offset = tok.v
      elseif tok.t == "M" then
        day.named_month = tok.v
        sc.skip("-")
      elseif tok.t == "Z" and has_read_number then
        tz_set(tz, tok.v)
      else
        -- words are allowed only before the first number, and apart from it
        if has_read_number then return nil end
        if is_num(sc.peek()) then return nil end
      end
    elseif is_sign(tok) and (tz_is_utc(tz) or #time.comp > 0) then
      tz.sign = tok.v == "+" and 1 or -1
      local n, len = 0, 0
      if is_num(sc.peek()) then
        local t = sc.next()
        n, len = t.v, t.len
      end
      has_read_number = true
      local p = sc.peek()
      if p.k == "sym" and p.v == ":" then
        tz.hour, tz.minute = n, NONE
      elseif len == 1 or len == 2 then
        tz.hour, tz.minute = n, 0
      elseif len == 3 or len == 4 then
        tz.hour, tz.minute = n // 100, n % 100
      else
        return nil
      end
    elseif (is_sign(tok) or (tok.k == "sym" and tok.v == ")")) and has_read_number then
      return nil
    end
    tok = sc.next()
  end
  local year, month, d = day_write(day)
  if not year then return nil end
  local hour, minute, second, ms = time_write(time)
  if not hour then return nil end
  local offset = tz_write(tz)
  if offset == nil then return nil end
  -- beyond +-275760 years nothing is a valid time; stop before integers overflow
  if year < -300000 or year > 300000 then return nil end
  local days = value.days_from_civil(year, month, 1) + d - 1
  local t = days * 86400000 + ((hour * 60 + minute) * 60 + second) * 1000 + ms
  if offset then t = t - offset * 1000 end
  if t < -8640000000000000 or t > 8640000000000000 then return nil end
  return t
end

-- TimeClip: ms or nil.
local function time_clip(n)
  if mtype(n) == "integer" then
    if n < -8640000000000000 or n > 8640000000000000 then return nil end
    return n
  end
  if n ~= n or n == huge or n == -huge then return nil end
  if n < -8.64e15 or n > 8.64e15 then return nil end
  if n < 0 then return tointeger(math.ceil(n)) end
  return tointeger(floor(n))
end

-- new Date(v): a value.date, or nil for an Invalid Date.
local function new_date(v)
  if is_date(v) then return value.date(v.ms) end
  local tv = type(v)
  local prim = v
  if tv == "table" then
    prim = is_array(v) and array_join(v, {}) or "[object Object]"
  end
  local ms
  if type(prim) == "string" then
    ms = parse_date_string(prim)
  else
    ms = time_clip(to_number(prim))
  end
  return ms and value.date(ms) or nil
end

------------------------------------------------------------------------------
-- The casts

local C = {}

function C.defaultIdentity(v)
  return v
end

function C.defaultCastToString(v, fieldName, log)
  if v == nil or v == null then return v end
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then return jsonenc.number(v) end
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "table" then
    if is_date(v) then return value.iso(v) end
    return jsonenc.encode(v)
  end
  return invalid(fieldName, log)
end

function C.defaultCastToInteger(v, fieldName, log)
  if v == nil or v == null then return v end
  local n = to_number(v)
  if n ~= n then return invalid(fieldName, log) end
  return parse_int_of_number(n)
end

function C.defaultCastToFloat(v, fieldName, log)
  if v == nil or v == null then return v end
  local n = to_number(v)
  if n ~= n then return invalid(fieldName, log) end
  return n
end

function C.defaultCastUnitTimestampToISOString(v, fieldName, log)
  if v == nil or v == null then return v end
  local d = new_date(v)
  if not d then return invalid(fieldName, log) end
  return value.iso(d)
end

function C.defaultCastStringToBoolean(v, fieldName, log)
  if v == nil or v == null then return v end
  if v == "true" then return true end
  if v == "false" then return false end
  return invalid(fieldName, log)
end

function C.defaultCastToDate(v, fieldName, log)
  if v == null then return v end
  local d = new_date(v)
  if not d then return invalid(fieldName, log) end
  return d
end

-- JSON.parse for the object casts; nil when the text is not JSON.
local function parse_json(s)
  local ok, r = pcall(json.decode, s)
  if ok then return r end
  return nil
end

function C.defaultCastToObject(v, fieldName, log)
  if v == null then return v end
  if type(v) == "string" then v = parse_json(v) end
  if not is_plain_object(v) then return invalid(fieldName, log) end
  return v
end

function C.defaultCastToArrayOfObject(v, fieldName, log)
  if v == null then return v end
  if type(v) == "string" then v = parse_json(v) end
  if not is_array(v) then return invalid(fieldName, log) end
  for i = 1, #v do
    if not is_plain_object(v[i]) then return invalid(fieldName, log) end
  end
  -- a hole past #v (only Lua-built tables can have one) is not an object either
  for k in pairs(v) do
    if mtype(k) ~= "integer" or k < 1 or k > #v then return invalid(fieldName, log) end
  end
  return v
end

-- Projection Storer names of the same functions.
C.identity = C.defaultIdentity
C.castToString = C.defaultCastToString
C.castToInteger = C.defaultCastToInteger
C.castToFloat = C.defaultCastToFloat
C.castUnixTimestampToISOString = C.defaultCastUnitTimestampToISOString
C.castStringToBoolean = C.defaultCastStringToBoolean
C.castToDate = C.defaultCastToDate
C.castToObject = C.defaultCastToObject
C.castToArrayOfObject = C.defaultCastToArrayOfObject

return C
