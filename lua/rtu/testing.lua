--[[
rtu.testing: test a hand-written strategy or a low-code configuration from busted
(or any Lua 5.4 script), offline: no Kafka, no MongoDB. The strategy runs in the
sandbox and through the strategy code rtu runs (rtu.sandbox, rtu.changes,
rtu.lowcode, rtu.strategy), against an in-memory `db` over the documents the test
gives, answering find and findOne with rtu.matcher (MongoDB's matching rules; an
operator it does not know is an error naming it, never a silent non-match).
For whole Kafka messages (adapter, casts, writes, outputs) use `rtu test` and its
*.test.json cases instead: this module starts from projection documents.

Setup: put rtu's Lua runtime on the path in a .busted file (busted --lua re-runs
itself through the shell, which splits an --lpath at its semicolons):
  return { default = { lpath = "/path/to/rtu/lua/?.lua;/path/to/rtu/lua/?/init.lua" } }
and run `busted --lua=lua5.4`. Outside the rtu binary, rtu.json (C in the binary)
is stood in for by lua-cjson (Debian lua-cjson, with lua-dkjson for empty arrays):
integers above 2^53 are not exact there. The time limit is applied on CPU time
(STRATEGIES_MAX_EXEC_TIME_MS, 5000 ms by default; the core's is wall-clock time),
so a strategy that loops fails its test instead of hanging it; the memory cap and
the guard of string methods ("s:find(p)") are the C core's, not applied here;
`rtu test` applies them all.

  local testing = require("rtu.testing")

  -- one hand-written strategy file
  local s = testing.strategy("strategies/one-hop/strategies/customerOfCard.lua")
  local ids = s:run({ ID_CARD = "C1", ID_ACCOUNT = "A1" },
                    { pr_accounts = { { ID_ACCOUNT = "A1", ID_CUSTOMER = 1 } } })
  assert.same({ { customerId = 1 } }, ids)

  -- a whole configuration: an env file (KEY=VALUE lines, as `rtu test` reads them)
  local cfg = testing.load("examples/food-delivery")
  local changes = cfg:changes("pr_orders", { after = order, before = old_order }, given)
  assert.same({ { type = "sv_customers", identifier = { ID_USER = "U1" } } }, changes)

strategy(path [, opts]) -> s
  loads the file as rtu does (its own sandbox environment; it must return a
  function). opts.name: the strategy's name in errors (default: file name);
  opts.max_exec_ms: the time limit of a run (default 5000, 0: none).
  s:run(document, given) -> identifiers, run
    the function's list of identifiers for `document` (a copy, with `__STATE__ =
    "PUBLIC"` unless it has a __STATE__, as a stored document always has), as rtu
    gets it (through rtu.changes' manual binding: the call batched, its result
    checked), with db = db(given).
  s.fn: the loaded function.

load(where) -> cfg
  where: a folder (the nearest `env` file in it or above it is read), an env file,
  or a table of variables. The variables are rtu's (MAP_TABLE_FOLDER,
  USE_AUTOMATIC_STRATEGIES, ER_SCHEMA_FOLDER, PROJECTION_CHANGES_SCHEMA_FOLDER,
  STRATEGIES_FOLDER, STRATEGIES_MAX_EXEC_TIME_MS); from a file, the process
  environment fills what the file does not set. Errors: one line per problem, as `rtu check` words them.
  cfg:changes(projection, images, given) -> changes, run
    the projection changes rtu records for a change of one document of
    `projection` (a mapTable.json name): images = {before = doc, after = doc}
    (either may be nil: an insert, a hard delete) or one document (the after
    image). As rtu does, the after image is stored in the db first (replacing the
    given document of the same primary key; a hard delete removes it) and the
    strategies run on both images. changes: { {type, identifier}, ... } sorted
    by type then identifier, each (type, identifier) once.
  cfg.projections: name -> { collection, key = {field, ...} }.

db(given) -> db
  the in-memory db: given = { collection = { document, ... } }. Each document is
  copied and gets `__STATE__ = "PUBLIC"` when it has no __STATE__ (as every
  stored projection document has). db:find(collection, filter, options) and
  db:findOne(...) answer copies, as the core's db does (options: projection, sort,
  limit, skip). db.calls lists every call: { method, collection, filter,
  options, result }.

run (second result of s:run and cfg:changes) = { calls = db.calls, logs = { {level,
message, fields} ... }, db = db }: what the strategies asked and logged.

read_env(path) -> variables
  KEY=VALUE lines of an env file (comments, blank lines and shell-only lines
  skipped; quotes around a value removed; $NAME and ${NAME} expanded from earlier
  lines, then the environment; EXAMPLE_DIR is the file's folder unless a line sets
  it, as examples/food-delivery/env expects);
  a *_FOLDER or *_PATH value that is a relative path is made relative to the file's
  folder.

Owns: loading scripts for tests and the in-memory db of busted tests. May not
touch: the core's modules' behaviour (it only calls them), any database.
]]

-- Outside the binary: stand-ins for its two C modules.
if not package.loaded["rtu.json"] and not pcall(require, "rtu.json") then
  package.loaded["rtu.json"] = require("rtu.testing.json")
end
if not package.loaded["rtu.limits"] and not pcall(require, "rtu.limits") then
  local limits = { stand_in_timed_out = false }
  function limits.timed_out() return limits.stand_in_timed_out end
  package.loaded["rtu.limits"] = limits
end

local json = require("rtu.json")
local value = require("rtu.value")
local sandbox = require("rtu.sandbox")
local changes_mod = require("rtu.changes")
local matcher = require("rtu.matcher")
local jsonenc = require("rtu.jsonenc")

local null = value.null
local M = {}

local DEFAULT_MS = 5000 -- STRATEGIES_MAX_EXEC_TIME_MS's default

---------------------------------------------------------------------------------
-- values

local function copy(v)
  if type(v) ~= "table" then return v end
  if value.is_date(v) then return value.date(v.ms) end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  if value.is_array(v) then value.array(out) end
  return out
end

local function stored(doc)
  local d = copy(doc)
  if d.__STATE__ == nil then d.__STATE__ = "PUBLIC" end
  return d
end

local function key_text(v) return jsonenc.encode(v) end

---------------------------------------------------------------------------------
-- the in-memory db

local DB = {}
DB.__index = DB

function M.db(given)
  local self = setmetatable({ collections = {}, calls = {} }, DB)
  for coll, docs in pairs(given or {}) do
    if type(docs) ~= "table" then
      error("rtu.testing: given." .. tostring(coll) .. " must be a list of documents", 2)
    end
    local list = {}
    for i, d in ipairs(docs) do list[i] = stored(d) end
    self.collections[coll] = list
  end
  return self
end

local function find(self, method, coll, filter, options)
  if type(coll) ~= "string" then error("db:" .. method .. ": the collection must be a string", 3) end
  if filter ~= nil and type(filter) ~= "table" then
    error("db:" .. method .. ": the filter must be an object", 3)
  end
  local opts = {}
  if type(options) == "table" then
    for _, k in ipairs({ "projection", "sort", "limit", "skip" }) do opts[k] = options[k] end
  end
  if method == "findOne" and opts.limit == nil then opts.limit = 1 end
  local ok, found = pcall(matcher.find, self.collections[coll] or {}, filter or {}, opts)
  if not ok then error("db:find on " .. coll .. " failed: " .. tostring(found), 3) end
  local out = {}
  for i, d in ipairs(found) do out[i] = copy(d) end
  local result = out
  if method == "findOne" then result = out[1] end
  self.calls[#self.calls + 1] = { method = method, collection = coll, filter = copy(filter),
    options = copy(options), result = copy(result) }
  return result
end

function DB:find(coll, filter, options) return find(self, "find", coll, filter, options) end
function DB:findOne(coll, filter, options) return find(self, "findOne", coll, filter, options) end

-- Stores doc in coll in place of the document with the same key fields.
function DB:put(coll, doc, key)
  local list = self.collections[coll] or {}
  self.collections[coll] = list
  self:remove(coll, doc, key)
  list[#list + 1] = stored(doc)
end

function DB:remove(coll, doc, key)
  local list = self.collections[coll]
  if not list or not key or #key == 0 then return end
  for i = #list, 1, -1 do
    local same = true
    for _, f in ipairs(key) do
      if matcher.compare(list[i][f], doc[f]) ~= 0 then same = false end
    end
    if same then table.remove(list, i) end
  end
end

---------------------------------------------------------------------------------
-- log

local LEVELS = { "trace", "debug", "info", "warn", "error", "fatal" }

local function new_log(entries)
  local log = {}
  for _, level in ipairs(LEVELS) do
    log[level] = function(a, b, c)
      if a == log then a, b = b, c end -- log:info(...) as well as log.info(...)
      entries[#entries + 1] = { level = level, message = a, fields = b }
    end
  end
  return log
end

---------------------------------------------------------------------------------
-- the time limit: a count hook on CPU time. A Lua hook belongs to one thread (a
-- coroutine does not run its creator's), so it is set on the calling thread, by
-- every loaded script function when called (in the coroutines rtu's batched calls
-- make) and on the coroutines a script makes. Past the deadline every hook call
-- raises again, and the stand-in rtu.limits says so, so that the sandbox's pcall
-- gives the timeout back instead of going on.

local current_hook -- the hook of the run in progress, nil outside one

local function set_hook(co)
  if not current_hook then return end
  if co then debug.sethook(co, current_hook, "", 1000) else debug.sethook(current_hook, "", 1000) end
end

local function limited(ms, f, ...)
  if not ms or ms <= 0 then return f(...) end
  local limits = package.loaded["rtu.limits"]
  local deadline = os.clock() + ms / 1000
  local message = "strategy exceeded STRATEGIES_MAX_EXEC_TIME_MS (" .. ms .. " ms)"
  local hook, mask, count = debug.gethook()
  current_hook = function()
    if os.clock() > deadline then
      if type(limits) == "table" then limits.stand_in_timed_out = true end
      error(message, 0)
    end
  end
  set_hook()
  local res = table.pack(pcall(f, ...))
  current_hook = nil
  if hook then debug.sethook(hook, mask, count) else debug.sethook() end
  if type(limits) == "table" then limits.stand_in_timed_out = false end
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

---------------------------------------------------------------------------------
-- loading scripts as the core does (src/script.c load_user_function)

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(path .. ": cannot read (" .. tostring(err) .. ")", 0) end
  local s = f:read("a")
  f:close()
  return s
end

local function load_function(path)
  local env = sandbox.new_env()
  local co_create = env.coroutine.create
  env.coroutine.create = function(f)
    local co = co_create(f)
    set_hook(co)
    return co
  end
  env.coroutine.wrap = function(f)
    local co = env.coroutine.create(f)
    return function(...)
      local res = table.pack(env.coroutine.resume(co, ...))
      if not res[1] then error(res[2], 0) end
      return table.unpack(res, 2, res.n)
    end
  end
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error(err, 0) end
  local ok, fn = pcall(chunk)
  if not ok then error(path .. ": " .. tostring(fn), 0) end
  if type(fn) ~= "function" then
    error(path .. ": must return a function, returned a " .. type(fn), 0)
  end
  return function(...)
    set_hook()
    return fn(...)
  end
end

local function read_json(path)
  local ok, v = pcall(json.decode, read_file(path))
  if not ok then error(path .. ": " .. tostring(v), 0) end
  if type(v) ~= "table" then error(path .. ": expected a JSON object", 0) end
  return v
end

local function basename(path) return (path:match("([^/]+)$") or path) end
local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function lua_files(folder)
  local out = {}
  if not folder then return out end
  local p = io.popen('ls -1 "' .. folder:gsub('"', '\\"') .. '" 2>/dev/null')
  if not p then return out end
  for name in p:lines() do
    local stem = name:match("^([^.].*)%.lua$")
    if stem then out[stem] = folder .. "/" .. name end
  end
  p:close()
  return out
end

---------------------------------------------------------------------------------
-- results

local function sorted_changes(results)
  local out = {}
  for _, r in ipairs(results) do out[#out + 1] = { type = r.type, identifier = r.identifier } end
  table.sort(out, function(a, b)
    if a.type ~= b.type then return a.type < b.type end
    return key_text(a.identifier) < key_text(b.identifier)
  end)
  return value.array(out)
end

local function new_run(given)
  local run = { logs = {}, db = M.db(given) }
  run.calls = run.db.calls
  run.log = new_log(run.logs)
  return run
end

---------------------------------------------------------------------------------
-- one strategy file

local Strategy = {}
Strategy.__index = Strategy

function M.strategy(path, opts)
  opts = opts or {}
  local name = opts.name or basename(path):gsub("%.lua$", "")
  local fn = load_function(path)
  local identify = changes_mod.build({ automatic = false,
    manual = { __test = { { sv = "__test", name = name, fn = fn } } } })
  return setmetatable({ fn = fn, name = name, path = path, identify = identify,
    max_exec_ms = opts.max_exec_ms or DEFAULT_MS }, Strategy)
end

function Strategy:run(document, given)
  local run = new_run(given)
  local results = limited(self.max_exec_ms, self.identify, "__test", { { doc = stored(document) } },
    run.db, run.log)
  local ids = {}
  for _, r in ipairs(results) do ids[#ids + 1] = r.identifier end
  return ids, run
end

---------------------------------------------------------------------------------
-- env files

local function expand(s, vars, dir)
  local function lookup(name)
    local v = vars[name]
    if v == nil and name == "EXAMPLE_DIR" then v = dir end
    return v or os.getenv(name) or ""
  end
  s = s:gsub("%${([%w_]+)}", lookup)
  s = s:gsub("%$([%a_][%w_]*)", lookup)
  return s
end

function M.read_env(path)
  local dir = dirname(path)
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  local vars = {}
  for line in read_file(path):gmatch("[^\n]+") do
    local k, v = line:match("^%s*export%s+([%a_][%w_]*)=(.*)$")
    if not k then k, v = line:match("^%s*([%a_][%w_]*)=(.*)$") end
    if k then
      v = v:gsub("%s+$", "")
      local q = v:sub(1, 1)
      if (q == "'" or q == '"') and v:sub(-1) == q and #v >= 2 then
        v = v:sub(2, -2)
        if q == '"' then v = expand(v, vars, dir) end
      else
        v = expand(v, vars, dir)
      end
      if (k:match("_FOLDER$") or k:match("_PATH$")) and v ~= "" and v:sub(1, 1) ~= "/" then
        v = dir .. "/" .. v
      end
      vars[k] = v
    end
  end
  return vars
end

-- The nearest env file in folder or above it, nil if none.
local function nearest_env(folder)
  local dir = folder
  while true do
    if exists(dir .. "/env") then return dir .. "/env" end
    local up = dirname(dir)
    if up == dir or dir == "." or dir == "/" or dir == "" then return nil end
    dir = up
  end
end

local function variables(where)
  if type(where) == "table" then return where end
  if type(where) ~= "string" then error("rtu.testing.load: a folder, an env file or a table", 3) end
  local path = where
  if not where:match("/env$") and not (where == "env") then
    path = nearest_env((where:gsub("/+$", "")))
    if not path then error("rtu.testing.load: no env file in " .. where .. " or above it", 3) end
  end
  local vars = M.read_env(path)
  return setmetatable(vars, { __index = function(_, k) return os.getenv(k) end })
end

---------------------------------------------------------------------------------
-- a configuration

local Config = {}
Config.__index = Config

local function truthy(v, default)
  if v == nil or v == "" then return default end
  return v == "true" or v == "1"
end

local function problems_error(problems)
  error(table.concat(problems, "\n"), 0)
end

-- mapTable.json -> projections, collections and manual bindings (as src/config.c and
-- src/script.c read them).
local function read_map_table(folder, vars, automatic, problems)
  local map_path = folder .. "/mapTable.json"
  local map = read_json(map_path)
  local projections, names, collections, manual = {}, {}, {}, {}
  for name, p in pairs(map) do
    if type(p) ~= "table" then
      problems[#problems + 1] = map_path .. ": " .. name .. ": expected an object"
    else
      local key = {}
      local conversion = type(p.conversion) == "table" and p.conversion or {}
      for i, src in ipairs(type(p.fieldsInKey) == "table" and p.fieldsInKey or {}) do
        local c = conversion[src]
        key[i] = (type(c) == "table" and c.fieldName) or src
      end
      local coll = type(p.destination) == "string" and p.destination or name
      projections[name] = { collection = coll, key = key }
      names[name] = true
      collections[name] = coll
      local bindings = {}
      if not automatic and type(p.changes) == "table" then
        for sv, ref in pairs(p.changes) do
          local file = type(ref) == "string" and ref:match("^__fromFile__%[(.+)%]$")
          local path = file and vars.STRATEGIES_FOLDER and (vars.STRATEGIES_FOLDER .. "/" .. file .. ".lua")
          if not path or not exists(path) then
            problems[#problems + 1] = string.format("%s: %s.changes.%s: strategy file %s not found "
              .. "(STRATEGIES_FOLDER)", map_path, name, sv, path or tostring(ref))
          else
            local ok, fn = pcall(load_function, path)
            if ok then
              bindings[#bindings + 1] = { sv = sv, name = file, fn = fn }
            else
              problems[#problems + 1] = fn
            end
          end
        end
        table.sort(bindings, function(a, b) return a.sv < b.sv end)
      end
      manual[name] = bindings
    end
  end
  return projections, names, collections, manual
end

function M.load(where)
  local vars = variables(where)
  local problems = {}
  local folder = vars.MAP_TABLE_FOLDER
  if not folder or folder == "" then problems_error({ "MAP_TABLE_FOLDER: not set" }) end
  local automatic = truthy(vars.USE_AUTOMATIC_STRATEGIES, false)
  local projections, names, collections, manual = read_map_table(folder, vars, automatic, problems)
  local spec = { automatic = automatic, projections = names, collections = collections }
  if automatic then
    local er_folder, pc_folder = vars.ER_SCHEMA_FOLDER, vars.PROJECTION_CHANGES_SCHEMA_FOLDER
    for _, v in ipairs({ { "ER_SCHEMA_FOLDER", er_folder },
      { "PROJECTION_CHANGES_SCHEMA_FOLDER", pc_folder } }) do
      if not v[2] or v[2] == "" then problems[#problems + 1] = v[1] .. ": not set" end
    end
    if #problems > 0 then problems_error(problems) end
    for _, step in ipairs({
      function() spec.er = read_json(er_folder .. "/erSchema.json") end,
      function() spec.pc = read_json(pc_folder .. "/projectionChangesSchema.json") end,
    }) do
      local ok, err = pcall(step)
      if not ok then problems[#problems + 1] = err end
    end
    spec.custom = {}
    for name, path in pairs(lua_files(pc_folder)) do
      local ok, fn = pcall(load_function, path)
      if ok then spec.custom[name] = fn else problems[#problems + 1] = fn end
    end
  else
    spec.manual = manual
  end
  if #problems > 0 then problems_error(problems) end
  local identify, involved = changes_mod.build(spec)
  if not identify then problems_error(involved) end
  local ms = math.tointeger(tonumber(vars.STRATEGIES_MAX_EXEC_TIME_MS or "")) or DEFAULT_MS
  return setmetatable({ projections = projections, identify = identify, involved = involved,
    automatic = automatic, variables = vars, max_exec_ms = ms }, Config)
end

local function images_of(images)
  if type(images) ~= "table" then
    error("rtu.testing: changes: images must be {before = doc, after = doc} or a document", 3)
  end
  if images.before ~= nil or images.after ~= nil then return images.before, images.after end
  return nil, images
end

function Config:changes(projection, images, given)
  local p = self.projections[projection]
  if not p then error("rtu.testing: changes: no projection " .. tostring(projection)
    .. " in mapTable.json", 2) end
  local before, after = images_of(images)
  local run = new_run(given)
  if after ~= nil then
    run.db:put(p.collection, after, p.key)
  elseif before ~= nil then
    run.db:remove(p.collection, before, p.key)
  end
  local docs = {}
  if before ~= nil then docs[#docs + 1] = { doc = stored(before), origin = 1 } end
  if after ~= nil then docs[#docs + 1] = { doc = stored(after), origin = 2 } end
  if not self.involved[projection] then return value.array({}), run end
  return sorted_changes(limited(self.max_exec_ms, self.identify, projection, docs, run.db, run.log)),
    run
end

M.null = null
M.date = value.date
M.array = value.array

return M
