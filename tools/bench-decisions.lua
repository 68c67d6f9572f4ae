-- bench-decisions.lua: run by build/tools/rtu-bench-decisions (see bench-decisions.c),
-- which gives C (timers and the C-side readers and writers) and rtu.json. Prints
-- the figures of docs/decisions.md: each pair timed alternately, five rounds, the
-- median and the spread.
local fixture, reps = ...
local json = require("rtu.json")
local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then error("lua-cjson is not installed (Debian package lua-cjson)") end
local jsonenc = require("rtu.jsonenc")

-- The messages' values as the text rtu-produce sends to Kafka (integers exact).
local texts, values = {}, {}
for line in io.lines(fixture) do
  local m = json.decode(line)
  texts[#texts + 1] = json.encode(m.value)
end
local bytes = 0
for _, t in ipairs(texts) do bytes = bytes + #t end
print(string.format("fixture: %s, %d messages, %.0f bytes a value on average, %d repetitions",
  fixture, #texts, bytes / #texts, reps))
for i, t in ipairs(texts) do values[i] = json.decode(t) end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- ns an item of f() (which does `items` items), five rounds of each function in
-- turn; returns "median (min-max)" in µs for each.
local function compare(items, fs)
  local runs = {}
  for _ = 1, 5 do
    for name, f in pairs(fs) do
      runs[name] = runs[name] or {}
      local t0 = C.cpu_ns()
      f()
      table.insert(runs[name], (C.cpu_ns() - t0) / items)
    end
  end
  return runs
end

local function show(title, runs, order, ns_given)
  print(title)
  for _, name in ipairs(order) do
    local xs = runs[name]
    local lo, hi = math.huge, 0
    for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
    local unit, div = "µs", 1000
    if ns_given then unit, div = "ns", 1 end
    print(string.format("  %-34s %8.2f %s (%.2f to %.2f)", name, median(xs) / div, unit, lo / div, hi / div))
  end
end

local n = #texts

-- 1. JSON text -> Lua tables (what the adapters do with every message).
local runs = compare(n * reps, {
  ["rtu json.decode"] = function()
    for _ = 1, reps do for i = 1, n do json.decode(texts[i]) end end
  end,
  ["lua-cjson cjson.decode"] = function()
    for _ = 1, reps do for i = 1, n do cjson.decode(texts[i]) end end
  end,
})
show("decode a food message's value into Lua tables (CPU a message):", runs,
  { "rtu json.decode", "lua-cjson cjson.decode" })

-- 2. JSON text -> BSON (the path for texts outside the direct reader's subset).
runs = {}
for _ = 1, 5 do
  for _, w in ipairs({ "rtu", "libbson" }) do
    runs[w] = runs[w] or {}
    table.insert(runs[w], C.to_bson(texts, reps, w))
  end
end
runs["rtu rtu_json_read_bson"], runs["libbson bson_new_from_json"] = runs.rtu, runs.libbson
show("JSON text into a BSON document (CPU a message):", runs,
  { "rtu rtu_json_read_bson", "libbson bson_new_from_json" })

-- 3. BSON -> JSON text (pr-update and projection-change messages are written so).
runs = {}
for _ = 1, 5 do
  for _, w in ipairs({ "rtu", "libbson" }) do
    runs[w] = runs[w] or {}
    table.insert(runs[w], C.from_bson(texts, reps, w))
  end
end
runs["rtu rtu_json_write_doc"], runs["libbson relaxed extended JSON"] = runs.rtu, runs.libbson
show("BSON document into JSON text (CPU a message):", runs,
  { "rtu rtu_json_write_doc", "libbson relaxed extended JSON" })

-- 4. Lua tables -> JSON text.
runs = compare(n * reps, {
  ["rtu json.encode"] = function()
    for _ = 1, reps do for i = 1, n do json.encode(values[i]) end end
  end,
  ["rtu.jsonenc encode (JSON.stringify)"] = function()
    for _ = 1, reps do for i = 1, n do jsonenc.encode(values[i]) end end
  end,
  ["lua-cjson cjson.encode"] = function()
    for _ = 1, reps do for i = 1, n do cjson.encode(values[i]) end end
  end,
})
show("encode a food message's value from Lua tables (CPU a message):", runs,
  { "rtu json.encode", "rtu.jsonenc encode (JSON.stringify)", "lua-cjson cjson.encode" })

-- 4b. Small values: an identifier (de-duplication keys of changes.lua) and a
-- number's text (the casts' String(n)).
local ident = { ID_CUSTOMER = "C-000123", ID_RESTAURANT = 42 }
local nums = { 0.1 + 0.2, 42, 3.5, 1709290800193, 1e21, 2 ^ -20 }
local k = reps * 50
runs = compare(k, {
  ["rtu.jsonenc encode"] = function() for _ = 1, k do jsonenc.encode(ident) end end,
  ["lua-cjson cjson.encode"] = function() for _ = 1, k do cjson.encode(ident) end end,
})
show("encode an identifier of two fields (CPU a call):", runs,
  { "rtu.jsonenc encode", "lua-cjson cjson.encode" })
runs = compare(k * #nums, {
  ["rtu.jsonenc number"] = function()
    for _ = 1, k do for i = 1, #nums do jsonenc.number(nums[i]) end end
  end,
  ["lua-cjson cjson.encode"] = function()
    for _ = 1, k do for i = 1, #nums do cjson.encode(nums[i]) end end
  end,
})
show("a number's text (CPU a number):", runs, { "rtu.jsonenc number", "lua-cjson cjson.encode" })

-- 5. ISO-8601 dates (createdAt, updatedAt, timestamps of every message).
runs = {}
local iso_reps = reps * 5000
for _ = 1, 5 do
  for _, w in ipairs({ "rtu", "libc" }) do
    runs[w] = runs[w] or {}
    table.insert(runs[w], (C.iso(iso_reps, w)))
  end
end
runs["rtu_iso8601"], runs["gmtime_r + strftime + snprintf"] = runs.rtu, runs.libc
show("an ISO-8601 date with milliseconds (CPU a date; both give the same text):", runs,
  { "rtu_iso8601", "gmtime_r + strftime + snprintf" }, true)

-- 5b. An integer's text (offsets, timestamps, counters in every message written).
runs = {}
for _ = 1, 5 do
  for _, w in ipairs({ "rtu", "libc" }) do
    runs[w] = runs[w] or {}
    table.insert(runs[w], (C.int_text(iso_reps, w)))
  end
end
runs["rtu_int_text"], runs["snprintf %lld"] = runs.rtu, runs.libc
show("a millisecond timestamp's decimal text (CPU a number; both give the same text):", runs,
  { "rtu_int_text", "snprintf %lld" }, true)

-- 6. What each gives back: integers, numbers' text, empty arrays, dates.
local function show_value(v)
  if math.type(v) == "float" then return string.format("%.17g (float)", v) end
  if type(v) == "number" then return string.format("%s (%s)", tostring(v), math.type(v)) end
  return tostring(v)
end
print("exactness:")
for _, t in ipairs({ "9007199254740993", "-9223372036854775807", "1", "1.5" }) do
  local a = json.decode(t)
  local okc, b = pcall(cjson.decode, t)
  print(string.format("  decode %-22s rtu %-32s cjson %s", t, show_value(a), okc and show_value(b) or b))
end
for _, v in ipairs({ 9007199254740993, 0.1 + 0.2, 1e21, 123456789012345678, 2 ^ -20 }) do
  local okc, c = pcall(cjson.encode, v)
  print(string.format("  encode %-22s rtu %-24s jsonenc %-24s cjson %s", show_value(v), json.encode(v),
    jsonenc.encode(v), okc and c or ("error: " .. tostring(c))))
end
local empty = json.decode('{"list":[]}')
print(string.format("  decode and encode {\"list\":[]}: rtu %s, cjson %s", json.encode(empty),
  cjson.encode(cjson.decode('{"list":[]}'))))
local lib, mine = C.libbson_json('{"id":9007199254740993,"price":2.0}', true)
print("  libbson relaxed extended JSON: " .. lib)
print("  rtu's writer on the same BSON: " .. mine)
