--[[
rtu.pipeline: from one Kafka message to one normalised change of one projection.
It owns the adapter call, the primary-key and field mapping with casts, and the
choice of operation; the C core owns everything after (folding, the counter guard,
MongoDB). Pure: the adapter, the casts and the log are given to it. build writes
each projection's field mapping and key as Lua source and loads it (text only, with
an empty environment): per message they run with constant names, no loop over field
descriptions.

build(spec) -> process, problems
  spec = {
    projections = { { name, fields = { {src, dst, cast} ... }, pk_src = {...}, pk_dst = {...} } ... },
    adapter = function(message, primaryKeys, log),
    casts = { name -> function(value, fieldName, log) },
    use_upsert = bool, use_position = bool,
    unmapped = bool,  -- note unmapped and uncastable fields (see notes below)
  }
  process(projection_index, message, log) ->
    { op = "upsert"|"insert"|"update"|"delete", key = {dst -> v}, fields = {dst -> v} | nil,
      old_key = {dst -> v} | nil, position = integer | nil, timestamp = integer ms | nil }
    or nil, reason   (the message is skipped, e.g. a Debezium tombstone)
  It raises an error naming the cause for a message that cannot be applied.
  The change, its key and its fields are tables of the projection that the next
  call of process reuses (not three tables allocated and grown per message): read
  them before calling again, as the C core does. old_key is a new table each time.

With spec.unmapped, build returns a third value, notes(projection_index) -> list:
what the calls of process since the previous notes call met, one entry per
(field, type): { type = "UNKNOWN_FIELD" (a field of the record that the
conversion does not name) | "UNCASTABLE_FIELD" (a built-in cast could not
convert it), field = its name in the message, value = the last such value,
count, topic, partition, offset (of the last message) }. Without it the mapping
has none of the checks.
]]
local value = require("rtu.value")

local null = value.null
local M = {}

-- Built-in casts that give back a value of some type unchanged are not called
-- for it (a function call per field saved): keep[cast] is that type, or true for
-- any value. A CAST_FUNCTIONS_FOLDER file of the same name is another function,
-- so it is always called.
local builtin = require("rtu.casts")
local keep = {
  [builtin.defaultIdentity] = true,
  [builtin.defaultCastToString] = "string",
}
-- The built-in casts, which return true as a second value for a value they cannot
-- convert; a CAST_FUNCTIONS_FOLDER function may return anything there.
local is_builtin = {}
for _, f in pairs(builtin) do is_builtin[f] = true end

-- The field mapping of one projection, written out as Lua source and loaded
-- once, rather than a loop over the field descriptions reading four of their
-- members per field and indexing the record and the output with names held in
-- variables. The generated function reads each source by a constant name, calls
-- its cast (C[i], unless the value is already of type K[i]) and writes every
-- destination, nil included, so the reused output holds nothing of the previous
-- message. When two sources share a destination, the destinations are emptied
-- first instead and an absent source writes nothing, so that it does not erase an
-- earlier value. With note (unmapped fields on), it also calls note(type, field,
-- value) for each value a built-in cast could not convert and each field of the
-- record the conversion does not name; without it, none of that code exists.
local function compile_map_fields(proj, note)
  local fields, shared = proj.fields, proj.shared_dst
  local casts, keeps, named = {}, {}, {}
  local src = { "local C, K, null, type, note, S, next = ...\nreturn function(record, out, log)\n"
    .. "  local v, bad\n" }
  local function add(fmt, ...) src[#src + 1] = string.format(fmt, ...) end
  if shared then
    local done = {}
    for _, f in ipairs(fields) do
      if not done[f.dst] then add("  out[%q] = nil\n", f.dst) end
      done[f.dst] = true
    end
  end
  for i, f in ipairs(fields) do
    casts[i], keeps[i] = f.cast, f.keep
    add("  v = record[%q]\n", f.src)
    named[f.src] = true
    if f.cast ~= nil and note and is_builtin[f.cast] then
      add("  if v ~= nil%s then\n    local raw = v\n    v, bad = C[%d](v, %q, log)\n"
        .. "    if bad then note(\"UNCASTABLE_FIELD\", %q, raw) end\n"
        .. "    if v == nil then v = null end\n  end\n",
        f.keep ~= nil and string.format(" and type(v) ~= K[%d]", i) or "", i, f.dst, f.src)
    elseif f.cast ~= nil then
      add("  if v ~= nil%s then\n    v = C[%d](v, %q, log)\n    if v == nil then v = null end\n  end\n",
        f.keep ~= nil and string.format(" and type(v) ~= K[%d]", i) or "", i, f.dst)
    end
    add(shared and "  if v ~= nil then out[%q] = v end\n" or "  out[%q] = v\n", f.dst)
  end
  if note then
    add("  for k, x in next, record do\n    if not S[k] then note(\"UNKNOWN_FIELD\", k, x) end\n  end\n")
  end
  add("  return out\nend\n")
  local chunk, err = load(table.concat(src), "=mapping of " .. tostring(proj.name), "t", {})
  if not chunk then error("cannot compile the mapping of " .. tostring(proj.name) .. ": " .. err) end
  return chunk(casts, keeps, null, type, note, named, next)
end

-- The projection key of a record that has every primary key, written out as the
-- mapping is: key_of(record, key, log) fills key and returns it, or returns nil,
-- casting nothing, when a primary key is absent or null in record (the caller
-- then looks elsewhere, or map_key names what is missing). nil for a key of more
-- primary keys than a function has local variables: has_key and map_key do it.
local function compile_key(proj)
  local pk = proj.pk
  if #proj.pk_src > 100 then return nil end
  for i = 1, #proj.pk_src do
    if pk[i] == nil then return nil end -- a primary key without its field: map_key says so
  end
  local casts = {}
  local src = { "local C, null = ...\nreturn function(record, key, log)\n" }
  local function add(fmt, ...) src[#src + 1] = string.format(fmt, ...) end
  for i, f in ipairs(pk) do
    add("  local v%d = record[%q]\n  if v%d == nil or v%d == null then return nil end\n", i, f.src, i, i)
  end
  for i, f in ipairs(pk) do
    casts[i] = f.cast
    if f.cast ~= nil then
      add("  v%d = C[%d](v%d, %q, log)\n  if v%d == nil then v%d = null end\n", i, i, i, f.dst, i, i)
    end
    add("  key[%q] = v%d\n", f.dst, i)
  end
  add("  return key\nend\n")
  local chunk, err = load(table.concat(src), "=key of " .. tostring(proj.name), "t", {})
  if not chunk then error("cannot compile the key of " .. tostring(proj.name) .. ": " .. err) end
  return chunk(casts, null)
end

local function compile_projection(p, casts, problems, note)
  local fields = {}
  local by_src, dsts = {}, {}
  local shared = false
  for i, f in ipairs(p.fields) do
    local cast = casts[f.cast]
    if cast == nil then
      problems[#problems + 1] = string.format(
        "mapTable.json: %s.conversion.%s.cast: unknown cast function '%s' (not a built-in, "
          .. "and no %s.lua in CAST_FUNCTIONS_FOLDER)", p.name, f.src, f.cast, f.cast)
    end
    local k = cast ~= nil and keep[cast] or nil
    if k == true then cast, k = nil, nil end
    fields[i] = { src = f.src, dst = f.dst, cast = cast, keep = k }
    by_src[f.src] = fields[i]
    shared = shared or dsts[f.dst] ~= nil
    dsts[f.dst] = true
  end
  local pk = {}
  for i, src in ipairs(p.pk_src) do
    pk[i] = by_src[src]
  end
  -- the tables reused by every change of this projection
  local change = { op = nil, key = nil, fields = nil, old_key = nil, position = nil,
                   timestamp = nil }
  local proj = { name = p.name, fields = fields, pk = pk, pk_src = p.pk_src, shared_dst = shared,
                 change = change, key = {}, out = {} }
  proj.map_fields = compile_map_fields(proj, note)
  proj.key_of = compile_key(proj)
  return proj
end

local function cast_value(f, v, log)
  local cast = f.cast
  if cast == nil then return v end
  local out = cast(v, f.dst, log)
  if out == nil then return null end
  return out
end

-- The projection key from a record carrying the CDC names of the primary keys,
-- in key (a new table when nil). Every primary key is set, so a reused key holds
-- nothing of the previous message.
local function map_key(proj, record, what, log, key)
  key = key or {}
  local pk = proj.pk
  for i = 1, #pk do
    local f = pk[i]
    local v = record[f.src]
    if v == nil or v == null then
      error(string.format("%s has no value for primary key field '%s'", what, f.src), 0)
    end
    key[f.dst] = cast_value(f, v, log)
  end
  return key
end

local function same_key(proj, a, b)
  for _, f in ipairs(proj.pk) do
    local x, y = a[f.dst], b[f.dst]
    if x ~= y and not (value.is_date(x) and value.is_date(y) and x.ms == y.ms) then
      return false
    end
  end
  return true
end

-- The images carry the same primary-key values (not tables): casts are functions
-- of their value, so the keys are the same without casting both (most updates).
local function same_raw_key(proj, a, b)
  local pk_src = proj.pk_src
  for i = 1, #pk_src do
    local x = a[pk_src[i]]
    if x ~= b[pk_src[i]] or type(x) == "table" then return false end
  end
  return true
end

local function has_key(proj, record)
  if type(record) ~= "table" then return false end
  local pk_src = proj.pk_src
  for i = 1, #pk_src do
    local v = record[pk_src[i]]
    if v == nil or v == null then return false end
  end
  return true
end

-- The projection key, in the projection's reused key table: from the message's
-- key object when it has every primary key, from other (the record, or a
-- delete's before image, nil when there is none) otherwise; what names other in
-- an error.
local function message_key(proj, key_object, other, what, log)
  local key_of = proj.key_of
  if key_of then
    local key = key_of(key_object, proj.key, log)
    if key then return key end
  elseif has_key(proj, key_object) then
    return map_key(proj, key_object, "the message key", log, proj.key)
  end
  return map_key(proj, other or {}, what, log, proj.key)
end

-- The notes of unmapped and uncastable fields: note(type, field, value) for the
-- message being mapped (set by process), notes(pi) the list since the last call.
local function new_notes()
  local by_proj, current, current_pi = {}, nil, nil
  local function note(kind, field, v)
    field = tostring(field)
    local acc = by_proj[current_pi]
    if not acc then acc = {}; by_proj[current_pi] = acc end
    local id = kind .. "\0" .. field
    local e = acc[id]
    if not e then
      e = { type = kind, field = field, count = 0 }
      acc[id] = e
    end
    e.count = e.count + 1
    e.value = v
    e.topic, e.partition, e.offset = current.topic, current.partition, current.offset
  end
  local function set_message(pi, message)
    current_pi, current = pi, type(message) == "table" and message or {}
  end
  local function notes(pi)
    local acc = by_proj[pi]
    by_proj[pi] = nil
    local list = {}
    if acc then
      for _, e in pairs(acc) do list[#list + 1] = e end
      table.sort(list, function(a, b)
        if a.type ~= b.type then return a.type < b.type end
        return a.field < b.field
      end)
    end
    return list
  end
  return note, set_message, notes
end

function M.build(spec)
  local problems = {}
  local projections = {}
  local note, set_message, notes
  if spec.unmapped then note, set_message, notes = new_notes() end
  for i, p in ipairs(spec.projections) do
    projections[i] = compile_projection(p, spec.casts, problems, note)
  end
  if #problems > 0 then return nil, problems end

  local adapter = spec.adapter
  local use_upsert = spec.use_upsert
  local use_position = spec.use_position

  local function process(pi, message, log)
    local proj = projections[pi]
    local r, reason = adapter(message, proj.pk_src, log)
    if r == nil then return nil, reason or "the adapter returned nothing" end
    if type(r) ~= "table" then
      error("the adapter returned a " .. type(r) .. " instead of a table", 0)
    end
    local key_object = r.keyObject
    if type(key_object) ~= "table" then
      error("the adapter returned no keyObject", 0)
    end
    local op = r.operation
    local record = r.value
    if record == null then record = nil end
    if op ~= nil and op ~= "I" and op ~= "U" and op ~= "D" then
      error("unknown operation '" .. tostring(op) .. "' (expected I, U or D)", 0)
    end
    local change = proj.change
    change.position, change.old_key, change.fields = nil, nil, nil
    -- The adapter's timestampDate is the message's time for the projection (its
    -- timestamp, __internal__kafkaInfo.timestamp, and the counter when there is no
    -- operationPosition), as the reference takes it from the adapter's output.
    local ts = r.timestampDate
    if ts == nil or ts == null then
      change.timestamp = nil
    elseif value.is_date(ts) and math.tointeger(ts.ms) then
      change.timestamp = math.tointeger(ts.ms)
    elseif math.tointeger(ts) then
      change.timestamp = math.tointeger(ts)
    else
      error("timestampDate '" .. tostring(ts) .. "' is not a date(ms)", 0)
    end
    if use_position and r.operationPosition ~= nil then
      local pos = math.tointeger(r.operationPosition)
      if pos == nil then
        error("operationPosition '" .. tostring(r.operationPosition) .. "' is not an integer", 0)
      end
      change.position = pos
    end

    if op == "D" or record == nil then
      change.op = "delete"
      change.key = message_key(proj, key_object, r.before,
        "the message (key and before image)", log)
      return change
    end
    if type(record) ~= "table" then
      error("the record is a " .. type(record) .. ", not an object", 0)
    end

    if op == "I" then change.op = use_upsert and "upsert" or "insert"
    elseif op == "U" then change.op = use_upsert and "upsert" or "update"
    else change.op = "upsert" end

    change.key = message_key(proj, key_object, record, "the record", log)
    if set_message then set_message(pi, message) end
    change.fields = proj.map_fields(record, proj.out, log)

    -- A primary-key change: the before image names another record, which goes away.
    local before, after = r.before, r.after
    if type(before) == "table" and type(after) == "table" and not same_raw_key(proj, before, after)
        and has_key(proj, before) and has_key(proj, after) then
      local old_key = map_key(proj, before, "the before image", log)
      local new_key = map_key(proj, after, "the after image", log)
      if not same_key(proj, old_key, new_key) then
        change.old_key = old_key
        change.key = new_key
        -- The new record is created, not updated: without upsert it must not exist yet.
        if change.op == "update" then change.op = "insert" end
      end
    end
    return change
  end

  return process, nil, notes
end

return M
