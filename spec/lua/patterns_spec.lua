--[[
Specs of rtu.patterns: the bound on the pattern matcher's work that lets the
sandbox refuse a call that could run for long in C, and let every everyday one run.
]]
local patterns = require("rtu.patterns")

local function refused(name, s, p, plain)
  local ok, err = pcall(patterns.check, name, s, p, plain)
  return not ok and err:find("too complex", 1, true) ~= nil, err
end

describe("rtu.patterns", function()
  describe("refuses what could run for long", function()
    it("the exponential a?^n a^n b of issue 4", function()
      local n = 22
      assert.is_true(refused("find", string.rep("a", n), string.rep("a?", n) .. string.rep("a", n) .. "b"))
    end)

    it("nested lazy quantifiers over a long subject", function()
      assert.is_true(refused("find", string.rep("a", 1e5), ".-.-.-.-.-b"))
      assert.is_true(refused("match", string.rep("a", 1e5), "(.-)(.-)(.-)b"))
    end)

    it("greedy runs over a long run of matching characters", function()
      assert.is_true(refused("gsub", string.rep("a", 1e5), "a*a*a*b"))
      assert.is_true(refused("find", string.rep("a", 1e5), "(.*)x"))
    end)

    it("gmatch, where ^ is no anchor", function()
      assert.is_true(refused("gmatch", string.rep("ab", 5e4), "^.-.-.-c"))
    end)

    it("a plain find whose naive search is quadratic", function()
      assert.is_true(refused("find", string.rep("a", 2e5), string.rep("a", 1e5) .. "b", true))
      -- no special character: Lua searches plainly too
      assert.is_true(refused("find", string.rep("a", 2e5), string.rep("a", 1e5) .. "b"))
    end)

    it("names the function and the subject size", function()
      local _, err = refused("match", string.rep("a", 1e5), ".-.-.-.-b")
      assert.truthy(err:find("string.match", 1, true))
      assert.truthy(err:find("100000 bytes", 1, true))
    end)
  end)

  describe("lets everyday patterns run", function()
    local text = "  " .. string.rep("word ", 2000) .. " "
    local cases = {
      { "match", text, "^%s*(.-)%s*$" },          -- trim, anchored
      { "gsub", text, "%s+" },
      { "gmatch", "a.b.c." .. string.rep("d", 10000), "[^.]+" },
      { "match", string.rep("1", 100) .. "-" .. string.rep("2", 100), "(%d+)-(%d+)" },
      { "find", text, "word", true },
      { "find", text, "%f[%w]%w+" },
      { "match", "(" .. string.rep("x", 10000) .. ")", "%b()" },
      { "find", string.rep("ab", 1000), "(a)(b)%1%2" },
      { "match", "2024-01-02T03:04:05Z", "^(%d%d%d%d)%-(%d%d)%-(%d%d)T" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " " .. c[3], function()
        assert.is_false((refused(c[1], c[2], c[3], c[4])))
      end)
    end

    it("runs with the matcher's own result when let through", function()
      assert.is_true(patterns.cost("", "") <= 1)
      assert.is_true(patterns.cost("abc", "b") < 100)
    end)
  end)

  it("leaves malformed patterns and bad arguments to the real function", function()
    assert.is_false((refused("find", string.rep("a", 1e5), "[a")))
    assert.is_false((refused("find", string.rep("a", 1e5), "a%")))
    assert.is_false((refused("find", nil, ".-")))
    assert.is_false((refused("find", {}, ".-")))
  end)

  it("accepts numbers as Lua does", function()
    assert.is_false((refused("find", 12345, "%d+")))
  end)
end)
