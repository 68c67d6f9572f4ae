--[[
Specs of rtu.sandbox under plain lua5.4: what a script's environment holds, and
the guards that close what the C time-limit hook cannot see. rtu.limits is C in
the binary; here the stand-in of spec/helpers/setup.lua, whose answer the specs
set. The timeouts themselves (hooks, coroutines, handlers) are covered by
spec/unit/test_script.c.
]]
local limits = require("rtu.limits")
local sandbox = require("rtu.sandbox")

local function run(src, env)
  env = env or sandbox.new_env()
  local f = assert(load(src, "=script", "t", env))
  return f()
end

describe("rtu.sandbox", function()
  after_each(function() limits.stand_in_timed_out = false end)

  it("gives no io, os.execute, require, package, debug, dofile, collectgarbage", function()
    local env = sandbox.new_env()
    for _, name in ipairs({ "io", "require", "package", "debug", "dofile", "loadfile",
                            "collectgarbage", "print" }) do
      assert.is_nil(env[name], name)
    end
    assert.is_nil(env.os.execute)
    assert.is_nil(env.os.getenv)
    assert.is_function(env.os.time)
    assert.is_nil(env.string.dump)
    assert.are.equal(env, env._G)
  end)

  it("loads text chunks only, in the script's own environment", function()
    local env = sandbox.new_env()
    assert.are.equal(env, run("return load('return _ENV')()", env))
    local bytecode = string.dump(function() return 1 end)
    env.bc = bytecode
    assert.is_nil(run("return (load(bc))", env))
  end)

  it("gives each script its own copies", function()
    local a, b = sandbox.new_env(), sandbox.new_env()
    run("string.upper = nil; x = 1", a)
    assert.is_function(b.string.upper)
    assert.is_nil(b.x)
  end)

  describe("setmetatable", function()
    it("refuses a metatable with __gc", function()
      local ok, err = pcall(run, "return setmetatable({}, {__gc = function() end})")
      assert.is_false(ok)
      assert.truthy(err:find("__gc finalizers are not allowed", 1, true))
      assert.is_false((pcall(run, "return setmetatable({}, {__gc = false})")))
    end)

    it("looks at the raw field, not through __index", function()
      local ok = pcall(run, "local mt = setmetatable({}, {__index = {__gc = 1}}) "
        .. "return setmetatable({}, {__gc = 1})")
      assert.is_false(ok)
      assert.is_true((pcall(run, "return setmetatable({}, setmetatable({}, {__index = {__gc = print}}))")))
    end)

    it("sets every other metatable", function()
      assert.are.equal(3, run("return setmetatable({}, {__index = function() return 3 end}).x"))
      assert.are.equal("v", run("local t = setmetatable({}, {__mode = 'k'}) t[1] = 'v' return t[1]"))
    end)
  end)

  describe("pcall, xpcall and coroutine.resume", function()
    it("catch ordinary errors as Lua does", function()
      assert.are.same({ false, "boom" }, { run("return pcall(error, 'boom', 0)") })
      assert.are.same({ false, "handled: boom" },
        { run("return xpcall(error, function(e) return 'handled: ' .. e end, 'boom', 0)") })
      assert.are.same({ true, 1, 2 }, { run("return pcall(function(...) return ... end, 1, 2)") })
      assert.are.same({ false, "co" }, { run("return coroutine.resume(coroutine.create(function() error('co', 0) end))") })
    end)

    it("refuse a non-function message handler as xpcall does", function()
      assert.is_false((pcall(run, "return xpcall(print, 42)")))
    end)

    it("raise a timeout again instead of returning it", function()
      local env = sandbox.new_env()
      env.timeout = function() limits.stand_in_timed_out = true error("timed out", 0) end
      local ok, err = pcall(run, "pcall(timeout) return 'went on'", env)
      assert.is_false(ok)
      assert.are.equal("timed out", err)
      assert.is_false((pcall(run, "coroutine.resume(coroutine.create(timeout)) return 'went on'", env)))
    end)

    it("never call the script's handler for a timeout", function()
      local env = sandbox.new_env()
      env.timeout = function() limits.stand_in_timed_out = true error("timed out", 0) end
      env.called = false
      local ok = pcall(run, "xpcall(timeout, function(e) called = true return e end)", env)
      assert.is_false(ok)
      assert.is_false(env.called)
    end)
  end)

  describe("C loops no allocation bounds", function()
    it("string.rep of empty strings returns at once", function()
      assert.are.equal("", run("return string.rep('', 1e15)"))
      assert.are.equal("", run("return string.rep('', 3, '')"))
      assert.are.equal("a,a,a", run("return string.rep('a', 3, ',')"))
      assert.are.equal(",,", run("return string.rep('', 3, ',')"))
      assert.are.equal("", run("return string.rep('x', 0)"))
    end)

    it("table.move refuses more than MAX_MOVE elements and moves the rest", function()
      local ok, err = pcall(run, "return table.move({}, 1, 1e12, 1, {})")
      assert.is_false(ok)
      assert.truthy(err:find("sandbox limit", 1, true))
      assert.are.same({ 1, 2, 3 }, run("return table.move({1, 2, 3}, 1, 3, 1, {})"))
      assert.are.same({ 1, 1, 2 }, run("return table.move({1, 2, 3}, 1, 2, 2)"))
    end)

    it("table.sort sorts long lists with a Lua comparator, short ones as they are", function()
      local saved = sandbox.SORT_IN_C
      sandbox.SORT_IN_C = 3
      local ok, res = pcall(run, "local t = {5, 3, 4, 1, 2} table.sort(t) return t")
      sandbox.SORT_IN_C = saved
      assert.is_true(ok, res)
      assert.are.same({ 1, 2, 3, 4, 5 }, res)
      assert.are.same({ 3, 2, 1 }, run("local t = {1, 3, 2} table.sort(t, function(a, b) return a > b end) return t"))
      assert.is_false((pcall(run, "local t = {} for i = 1, 10 do t[i] = i end t[5] = 'x' table.sort(t) return t")))
    end)
  end)

  describe("pattern functions", function()
    -- Methods ("s:find(p)") get M.string through the string metatable, which the
    -- C core sets (spec/unit/test_script.c); plain lua5.4 has the real one.
    it("refuse a pattern too complex for its subject", function()
      local env = sandbox.new_env()
      env.s = string.rep("a", 1e5)
      -- (not tail calls, which would lose the script's line)
      for _, src in ipairs({ "local r = string.find(s, '.-.-.-.-b') return r",
                             "local r = string.match(s, '.-.-.-.-b') return r",
                             "local r = string.gsub(s, 'a*a*a*b', '') return r",
                             "local r = string.gmatch(s, '.-.-.-b') return r" }) do
        local ok, err = pcall(run, src, env)
        assert.is_false(ok, src)
        assert.truthy(err:find("too complex", 1, true), err)
        assert.truthy(err:find("script:1:", 1, true), "the error names the script's line: " .. err)
      end
      assert.are.equal(sandbox.string.find, sandbox.new_env().string.find)
    end)

    it("pass everything through otherwise", function()
      assert.are.same({ 2, 3 }, { run("return string.find('abc', 'bc')") })
      assert.are.same({ 2, 2 }, { run("return string.find('a.c', '.', 1, true)") })
      assert.are.same({ "x-y", 1 }, { run("return string.gsub('x y', ' ', '-')") })
      assert.are.equal("b", run("for w in string.gmatch('a b', '%a', 2) do return w end"))
    end)
  end)
end)
