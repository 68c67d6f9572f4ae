--[[
rtu.lowcode: the low-code strategy compiler. It turns the decoded erSchema.json and
projectionChangesSchema.json (contract sections 5.3 and 5.4) into a plan that
rtu.strategy runs, and reports every problem of both files with its JSON path.

compile(erSchema, pcSchema, opts) -> plan, problems
  erSchema, pcSchema  the decoded JSON documents (tables of rtu.json / rtu.value).
  opts.projections    known projection names (mapTable.json keys), as a set
                      {name = true} or a list; nil skips that check.
  opts.custom         name -> function(document, db, log) -> {identifier, ...} for
                      "identifier": "__fromFile__[name]"; a missing one is a problem.
  opts.collections    projection -> MongoDB collection (mapTable `destination`);
                      default: the projection name.
  opts.fields         projection -> set or list of its field names (the mapTable
                      `fieldName`s); when given, condition and identifier fields are
                      checked against it (metadata fields such as __STATE__ always pass).
  problems            list of strings "<file>: <json path>: <what is wrong>", with
                      0-based array indices (paths[0].path[2]); the plan is meant to be
                      used only when it is empty.

plan = {
  views  = { {name, paths = { {path = {p1, ...}, identifier = idspec} } } },  sorted by name
  hops   = { [A] = { [B] = hop } }   every valid erSchema relation
  routes = { [P] = node }            what a change of projection P must walk
  stats  = { queries = 0, custom_calls = 0 }   counters, added to by rtu.strategy
}
hop    = { from, to, collection, conditions = { {name, node, one_to_many, simple} } }
         simple = {field, src, rest}: the condition is {field: <source field src>} and
         the constant condition AST rest (nil: nothing else); nil for other forms
idspec = { kind = "fields", fields = { {key, field} } } | { kind = "custom", name, fn }
node   = { projection, hop (nil at a root), children = {node...}, terminals =
           { {view, identifier = idspec} }, views = {name = true} }
Routes are a prefix tree: every path p and every position j of P in p gives the
sub-path p[j..] (sub-paths are implicit), and sub-paths that begin alike share their
hops, so one batch pays one lookup per hop however many single views use it.

Condition AST (node of a hop condition): {k = "and"|"or", list = {...}} or
{k = "field", field = <target field>, ops = { {op, arg = ref} | {op, list = {ref...}}
| {op, spread = ref} }} with ref = {src = <source field>} | {const = <value>}.
  - left keys are fields of the target collection; right values are source field
    names, or typed constants __string__[..], __integer__[..] (64-bit exact),
    __boolean__[true|false], __constant__[..] (a string, deprecated); a JSON number,
    boolean or null on the right is taken as that constant.
  - $or / $and take arrays of conditions; a field may take an operator object with
    $eq $ne $gt $gte $lt $lte (one operand), $in $nin (an array of operands, or one
    source field holding an array), $exists (a boolean).
Choices (the reference leaves them open, section 10.5):
  - several named conditions for one pair are OR-ed: a target document is related
    when any of them holds, each keeping its own oneToMany.
  - every lookup adds __STATE__: "PUBLIC" (done by rtu.strategy): a soft-deleted
    record must not be followed, as SVC aggregation ignores it too, and Mia's index
    advice for strategy lookups is foreign key + __STATE__.

Owns: validation and compilation of the two low-code files. May not touch: I/O, os,
globals, MongoDB, any module but rtu.*.
]]
local value = require("rtu.value")

local null = value.null
local M = {}

local ER, PC = "erSchema.json", "projectionChangesSchema.json"

-- Metadata every projection document has, whatever its mapTable says.
local METADATA = {
  _id = true, __STATE__ = true, createdAt = true, updatedAt = true, timestamp = true,
  creatorId = true, updaterId = true, __internal__counter = true,
  __internal__counterType = true, __internal__kafkaInfo = true,
}

local COMPARE = { ["$eq"] = true, ["$ne"] = true, ["$gt"] = true, ["$gte"] = true,
  ["$lt"] = true, ["$lte"] = true }
local LIST = { ["$in"] = true, ["$nin"] = true }

local is_list, is_object, sorted_keys = value.is_list, value.is_object, value.sorted_keys

local function as_set(v)
  if v == nil then return nil end
  if is_list(v) then
    local s = {}
    for _, name in ipairs(v) do s[name] = true end
    return s
  end
  return v
end

-- JSON path step for a key: .key, or ["key"] when the key would be ambiguous.
local function step(k)
  k = tostring(k)
  if k:match("^[%w_%-$]+$") then return "." .. k end
  return '["' .. k .. '"]'
end

local function join(at, k)
  local s = step(k)
  if at == "" then return (s:gsub("^%.", "")) end
  return at .. s
end

local function describe(v)
  if v == nil then return "nothing" end
  if v == null then return "null" end
  if is_list(v) or value.is_array(v) then return "an array" end
  if type(v) == "table" then return "an object" end
  return "a " .. type(v)
end

-- Typed constants. Returns nil (not one: a field name), true + value, or false + why.
local function typed_constant(s)
  local kind, body = s:match("^__(%w+)__%[(.*)%]$")
  if not kind then return nil end
  if kind == "string" or kind == "constant" then return true, body end
  if kind == "integer" then
    local n = body:match("^[+-]?%d+$") and math.tointeger(tonumber(body))
    if not n then return false, "'" .. s .. "': not a 64-bit integer" end
    return true, n
  end
  if kind == "boolean" then
    if body == "true" then return true, true end
    if body == "false" then return true, false end
    return false, "'" .. s .. "': a boolean is true or false"
  end
  return false, "'" .. s .. "': unknown typed constant (use __string__[..], __integer__[..], "
    .. "__boolean__[..] or __constant__[..])"
end
M.typed_constant = typed_constant

-- One compilation context: where problems go and which fields to check against.
local function new_ctx(problems, file, src_fields, dst_fields, src_name, dst_name)
  return {
    problems = problems, file = file, src_fields = src_fields, dst_fields = dst_fields,
    src_name = src_name, dst_name = dst_name,
  }
end

local function problem(ctx, at, msg)
  ctx.problems[#ctx.problems + 1] = string.format("%s: %s: %s", ctx.file, at, msg)
end

local function known(fields, name)
  if fields == nil then return true end
  local first = name:match("^[^.]+") or name
  return fields[name] or fields[first] or METADATA[first] or false
end

local function compile_ref(ctx, v, at)
  if type(v) == "string" then
    local ok, c = typed_constant(v)
    if ok == nil then
      if v == "" then problem(ctx, at, "empty source field name"); return nil end
      if not known(ctx.src_fields, v) then
        problem(ctx, at, string.format("'%s' is not a field of %s", v, ctx.src_name))
      end
      return { src = v }
    elseif ok then
      return { const = c }
    end
    problem(ctx, at, c)
    return nil
  elseif type(v) == "number" or type(v) == "boolean" or v == null then
    return { const = v }
  end
  problem(ctx, at, "expected a source field name or a typed constant (__string__[..], "
    .. "__integer__[..], __boolean__[..], __constant__[..]), got " .. describe(v))
  return nil
end

local function is_operator_object(v)
  if not is_object(v) or next(v) == nil then return false end
  for k in pairs(v) do
    if type(k) ~= "string" or k:sub(1, 1) ~= "$" then return false end
  end
  return true
end

local function compile_field(ctx, field, v, at)
  if not known(ctx.dst_fields, field) then
    problem(ctx, at, string.format("'%s' is not a field of %s", field, ctx.dst_name))
  end
  local ops = {}
  if is_operator_object(v) then
    for _, op in ipairs(sorted_keys(v)) do
      local arg, oat = v[op], join(at, op)
      if COMPARE[op] then
        local ref = compile_ref(ctx, arg, oat)
        if ref then ops[#ops + 1] = { op = op, arg = ref } end
      elseif LIST[op] then
        if is_list(arg) and #arg == 0 then
          problem(ctx, oat, "empty list")
        elseif is_list(arg) then
          local list = {}
          for i, x in ipairs(arg) do
            list[#list + 1] = compile_ref(ctx, x, oat .. "[" .. (i - 1) .. "]")
          end
          ops[#ops + 1] = { op = op, list = list }
        elseif type(arg) == "string" and typed_constant(arg) == nil then
          local ref = compile_ref(ctx, arg, oat)
          if ref then ops[#ops + 1] = { op = op, spread = ref } end
        else
          problem(ctx, oat, "expected an array of operands or a source field holding an array, got "
            .. describe(arg))
        end
      elseif op == "$exists" then
        local b = arg
        if type(arg) == "string" then
          local ok, c = typed_constant(arg)
          b = ok and c or nil
        end
        if type(b) ~= "boolean" then
          problem(ctx, oat, "expected a boolean")
        else
          ops[#ops + 1] = { op = op, arg = { const = b } }
        end
      else
        problem(ctx, oat, "unsupported operator '" .. op .. "' (supported: $eq, $ne, $gt, $gte, "
          .. "$lt, $lte, $in, $nin, $exists)")
      end
    end
  elseif type(v) == "table" and not value.is_date(v) then
    problem(ctx, at, "expected a source field name, a typed constant or an operator object "
      .. "($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists), got " .. describe(v))
  else
    local ref = compile_ref(ctx, v, at)
    if ref then ops[1] = { op = "$eq", arg = ref } end
  end
  return { k = "field", field = field, ops = ops }
end

local compile_query

local function compile_logical(ctx, k, v, at)
  if not is_list(v) then
    problem(ctx, at, "expected a non-empty array of conditions, got " .. describe(v))
    return nil
  end
  local list = {}
  for i, sub in ipairs(v) do
    list[#list + 1] = compile_query(ctx, sub, at .. "[" .. (i - 1) .. "]")
  end
  return { k = (k == "$or") and "or" or "and", list = list }
end

function compile_query(ctx, q, at)
  if not is_object(q) then
    problem(ctx, at, "expected an object, got " .. describe(q))
    return nil
  end
  local items = {}
  for _, k in ipairs(sorted_keys(q)) do
    local v, kat = q[k], join(at, k)
    if k == "$or" or k == "$and" then
      items[#items + 1] = compile_logical(ctx, k, v, kat)
    elseif type(k) == "string" and k:sub(1, 1) == "$" then
      problem(ctx, kat, "unsupported operator '" .. k .. "' (supported here: $or, $and)")
    else
      items[#items + 1] = compile_field(ctx, k, v, kat)
    end
  end
  if next(q) == nil then problem(ctx, at, "empty condition") end
  return { k = "and", list = items }
end

-- Whether a condition AST reads no field of the source document.
local function constant_node(node)
  if node.k ~= "field" then
    for _, sub in ipairs(node.list) do
      if not constant_node(sub) then return false end
    end
    return true
  end
  for _, o in ipairs(node.ops) do
    for _, ref in ipairs(o.list or { o.arg or o.spread }) do
      if ref.src then return false end
    end
  end
  return true
end

-- {field = "<source field>"} and constants, the form looked up with one $in for
-- a whole batch: {field, src, rest}, rest the AST of the constant part (nil when
-- there is none), the same for every source document. A foreign key with a status
-- or type constant beside it is the common relation, so it gets the batch form
-- rather than a filter per document.
local function simple_form(node)
  if node.k ~= "and" then return nil end
  local join, rest = nil, {}
  for _, f in ipairs(node.list) do
    if not join and f.k == "field" and #f.ops == 1 and f.ops[1].op == "$eq" and f.ops[1].arg.src then
      join = f
    elseif constant_node(f) then
      rest[#rest + 1] = f
    else
      return nil
    end
  end
  if not join then return nil end
  return { field = join.field, src = join.ops[1].arg.src,
           rest = #rest > 0 and { k = "and", list = rest } or nil }
end

local function expect_only(ctx, obj, at, allowed)
  for _, k in ipairs(sorted_keys(obj)) do
    if not allowed[k] then problem(ctx, join(at, k), "unknown key") end
  end
end

-- The {version, config} envelope of both files: its config, or nil when there is
-- none to compile (the problems recorded). allowed: the only keys it may have.
local function envelope(ctx, doc, allowed)
  if not is_object(doc) then
    problem(ctx, "(root)", "expected an object {version, config}, got " .. describe(doc))
    return nil
  end
  if type(doc.version) ~= "string" then
    problem(ctx, "version", "expected a string, got " .. describe(doc.version))
  end
  if allowed then expect_only(ctx, doc, "", allowed) end
  if not is_object(doc.config) then
    problem(ctx, "config", "expected an object, got " .. describe(doc.config))
    return nil
  end
  return doc.config
end

local function compile_er(er, opts, problems)
  local hops = {}
  local ctx = new_ctx(problems, ER)
  if not envelope(ctx, er, { version = true, config = true }) then return hops end
  local fields, collections = opts.fields or {}, opts.collections or {}
  for _, a in ipairs(sorted_keys(er.config)) do
    local ent, at = er.config[a], join("config", a)
    if not is_object(ent) then
      problem(ctx, at, "expected an object {outgoing}, got " .. describe(ent))
    elseif not is_object(ent.outgoing) then
      expect_only(ctx, ent, at, { outgoing = true })
      problem(ctx, join(at, "outgoing"), "expected an object, got " .. describe(ent.outgoing))
    else
      expect_only(ctx, ent, at, { outgoing = true })
      for _, b in ipairs(sorted_keys(ent.outgoing)) do
        local rel, rat = ent.outgoing[b], join(join(at, "outgoing"), b)
        local cat0 = join(rat, "conditions")
        if not is_object(rel) then
          problem(ctx, rat, "expected an object {conditions}, got " .. describe(rel))
        elseif not is_object(rel.conditions) then
          expect_only(ctx, rel, rat, { conditions = true })
          problem(ctx, cat0, "expected an object, got " .. describe(rel.conditions))
        elseif next(rel.conditions) == nil then
          expect_only(ctx, rel, rat, { conditions = true })
          problem(ctx, cat0, "no condition")
        else
          expect_only(ctx, rel, rat, { conditions = true })
          local hop = { from = a, to = b, collection = collections[b] or b, conditions = {} }
          local hctx = new_ctx(problems, ER, as_set(fields[a]), as_set(fields[b]), a, b)
          for _, name in ipairs(sorted_keys(rel.conditions)) do
            local c, cat = rel.conditions[name], join(cat0, name)
            if not is_object(c) then
              problem(ctx, cat, "expected an object {condition, oneToMany}, got " .. describe(c))
            else
              expect_only(ctx, c, cat, { condition = true, oneToMany = true })
              if c.oneToMany ~= nil and type(c.oneToMany) ~= "boolean" then
                problem(ctx, join(cat, "oneToMany"), "expected a boolean, got " .. describe(c.oneToMany))
              end
              local before = #problems
              local node = compile_query(hctx, c.condition, join(cat, "condition"))
              if node and #problems == before then
                hop.conditions[#hop.conditions + 1] = {
                  name = name, node = node, one_to_many = c.oneToMany == true,
                  simple = simple_form(node),
                }
              end
            end
          end
          if #hop.conditions > 0 then
            hops[a] = hops[a] or {}
            hops[a][b] = hop
          end
        end
      end
    end
  end
  return hops
end

local function compile_identifier(ctx, id, at, opts, base)
  if type(id) == "string" then
    local name = id:match("^__fromFile__%[(.+)%]$")
    if not name then
      problem(ctx, at, "expected an object of strings or \"__fromFile__[name]\", got '" .. id .. "'")
      return nil
    end
    local fn = opts.custom and opts.custom[name]
    if type(fn) ~= "function" then
      problem(ctx, at, string.format("custom identifier function '%s' not found (expected %s.lua "
        .. "in PROJECTION_CHANGES_SCHEMA_FOLDER)", name, name))
    end
    return { kind = "custom", name = name, fn = fn }
  end
  if not is_object(id) or next(id) == nil then
    problem(ctx, at, "expected an object of strings or \"__fromFile__[name]\", got " .. describe(id))
    return nil
  end
  local out, ok = {}, true
  local base_fields = as_set((opts.fields or {})[base])
  for _, key in ipairs(sorted_keys(id)) do
    local field = id[key]
    if type(field) ~= "string" or field == "" then
      problem(ctx, join(at, key), "expected a field name of " .. base .. ", got " .. describe(field))
      ok = false
    else
      if not known(base_fields, field) then
        problem(ctx, join(at, key), string.format("'%s' is not a field of %s", field, base))
      end
      out[#out + 1] = { key = key, field = field }
    end
  end
  return ok and { kind = "fields", fields = out } or nil
end

local function compile_pc(pc, hops, opts, problems)
  local views = {}
  local ctx = new_ctx(problems, PC)
  if not envelope(ctx, pc) then return views end
  local projections = as_set(opts.projections)
  for _, sv in ipairs(sorted_keys(pc.config)) do
    local ent, at = pc.config[sv], join("config", sv)
    local view = { name = sv, paths = {} }
    views[#views + 1] = view
    if not is_object(ent) then
      problem(ctx, at, "expected an object {paths}, got " .. describe(ent))
    elseif not is_list(ent.paths) then
      problem(ctx, join(at, "paths"), "expected an array, got " .. describe(ent.paths))
    else
      for i, p in ipairs(ent.paths) do
        local pat = join(at, "paths") .. "[" .. (i - 1) .. "]"
        local ok = true
        if not is_object(p) then
          problem(ctx, pat, "expected an object {path, identifier}, got " .. describe(p))
          ok = false
        elseif not is_list(p.path) or #p.path == 0 then
          problem(ctx, join(pat, "path"), "expected a non-empty array of projection names, got "
            .. describe(p.path))
          ok = false
        else
          for j, name in ipairs(p.path) do
            local jat = join(pat, "path") .. "[" .. (j - 1) .. "]"
            if type(name) ~= "string" then
              problem(ctx, jat, "expected a projection name, got " .. describe(name))
              ok = false
            else
              if projections and not projections[name] then
                problem(ctx, jat, "unknown projection '" .. name .. "' (not in mapTable.json)")
                ok = false
              end
              local prev = p.path[j - 1]
              if j > 1 and type(prev) == "string" and not (hops[prev] and hops[prev][name]) then
                problem(ctx, jat, string.format("no relation %s -> %s in %s (config.%s.outgoing.%s)",
                  prev, name, ER, prev, name))
                ok = false
              end
            end
          end
        end
        if is_object(p) then
          local base = is_list(p.path) and p.path[#p.path] or "?"
          local id = compile_identifier(ctx, p.identifier, join(pat, "identifier"), opts,
            tostring(base))
          if ok and id then
            view.paths[#view.paths + 1] = { path = p.path, identifier = id }
          end
        end
      end
    end
  end
  return views
end

local function new_node(projection, hop)
  return { projection = projection, hop = hop, children = {}, child_by = {}, terminals = {},
    terminal_keys = {}, views = {} }
end

local function id_key(id)
  if id.kind == "custom" then return "custom:" .. id.name end
  local parts = {}
  for _, f in ipairs(id.fields) do parts[#parts + 1] = f.key .. "=" .. f.field end
  return "fields:" .. table.concat(parts, "\0")
end

local function build_routes(views, hops)
  local routes = {}
  for _, view in ipairs(views) do
    for _, p in ipairs(view.paths) do
      for j = 1, #p.path do
        local root = routes[p.path[j]] or new_node(p.path[j])
        routes[p.path[j]] = root
        local node = root
        node.views[view.name] = true
        for k = j + 1, #p.path do
          local to = p.path[k]
          local child = node.child_by[to]
          if not child then
            child = new_node(to, hops[p.path[k - 1]][to])
            node.child_by[to] = child
            node.children[#node.children + 1] = child
          end
          node = child
          node.views[view.name] = true
        end
        local key = view.name .. "\0" .. id_key(p.identifier)
        if not node.terminal_keys[key] then
          node.terminal_keys[key] = true
          node.terminals[#node.terminals + 1] = { view = view.name, identifier = p.identifier }
        end
      end
    end
  end
  return routes
end

function M.compile(erSchema, pcSchema, opts)
  opts = opts or {}
  local problems = {}
  local hops = compile_er(erSchema, opts, problems)
  local views = compile_pc(pcSchema, hops, opts, problems)
  local plan = {
    views = views,
    hops = hops,
    routes = build_routes(views, hops),
    stats = { queries = 0, custom_calls = 0 },
  }
  return plan, problems
end

return M
