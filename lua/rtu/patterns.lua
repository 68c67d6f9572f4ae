--[[
rtu.patterns: an upper bound on the work of Lua's pattern matcher, so that the
sandbox can refuse a string.find/match/gmatch/gsub call that could run for long in
C, where the time-limit hook never fires (issue 4: `string.find(string.rep("a",
1e5), ".-.-.-.-.-b")` would run for hours).

cost(s, p, no_anchor) -> steps
  Lua's matcher backtracks. An item quantified by *, + or - tries at most r + 1
  lengths, r being the longest run of subject characters its class matches; ? tries
  2. Every later item is visited once per combination of the earlier choices, and
  as the lengths taken add up to at most #s, there are at most C(#s + j, j) such
  combinations for j earlier quantified items. From one start position the work
  is at most, over the items k in order,
    sum_k visits_k * (1 + scan_k)  +  visits_end,
    visits_k = min(prod_{i<k} b_i, C(#s + j_k, j_k))
  where b is the item's number of choices and scan what it reads besides one
  character (* and + count their run first, %b and back-references read up to the
  whole subject, and never more than what is left after the start). A call tries
  at most #s + 1 start positions, 1 when anchored by ^ (not for gmatch, where ^ is
  no anchor). Past the last item that can fail (a single class, +, %b, %f, a
  back-reference, the final $), the first choice of every item succeeds, so their
  other choices count as none. The bound is first taken with r = #s, which depends
  on the length only and is kept per (pattern, length); only when that is over the
  limit are the runs measured (one linear pass per quantified item).
plain_cost(s, p) -> bytes compared by a plain find (no special character, or
  plain = true): at most (#s - #p + 1) * #p.
check(name, s, p, plain) raises "string.NAME: pattern ... too complex" when the
  bound is over LIMIT (PLAIN_LIMIT for plain finds). A malformed pattern costs 0
  here: the real function raises its own error.

LIMIT: 1e8 steps, so that a call that is let through overruns
STRATEGIES_MAX_EXEC_TIME_MS by about a second at the very worst (the time of a
step is in docs/performance.md). Typical patterns are far below: "^%s*(.-)%s*$"
on 1,000 characters with few spaces is about 1e4, "(%d+)-(%d+)" on 100 characters
about 1e6. Parsed patterns and first bounds are cached, so the check stays near
the cost of a short match.

Owns: the bound only. Uses the string library captured at load, never the one
scripts see. May not touch: I/O, globals, any other module.
]]
local M = {}

M.LIMIT = 1e8
M.PLAIN_LIMIT = 1e9

local byte, gmatch, find, format = string.byte, string.gmatch, string.find, string.format

local PCT, LBR, RBR, LP, RP, CARET, DOLLAR, DOT = byte("%[]()^$.", 1, -1)
local STAR, PLUS, MINUS, QMARK, LB, LF = byte("*+-?bf", 1, -1)
local D0, D9 = byte("09", 1, -1)

-- Index just past the one-character class that starts at i, nil when malformed
-- (as lstrlib's classEnd reads it: a set's first character may be ']').
local function class_end(p, i, len)
  local c = byte(p, i)
  if c == PCT then
    if i >= len then return nil end
    return i + 2
  end
  if c ~= LBR then return i + 1 end
  local j = i + 1
  if byte(p, j) == CARET then j = j + 1 end
  repeat
    if j > len then return nil end
    local cc = byte(p, j)
    j = j + 1
    if cc == PCT and j <= len then j = j + 1 end
  until byte(p, j) == RBR
  return j + 1
end

-- Longest run of characters of s matched by the class p:sub(i, j - 1).
local function longest_run(s, p, i, j)
  local cls = p:sub(i, j - 1)
  if j - i == 1 and cls ~= "." and find(cls, "^%p$") then cls = "%" .. cls end
  local best = 0
  for m in gmatch(s, cls .. "+") do
    if #m > best then best = #m end
  end
  return best
end

-- The items of p from index i: {q = quantifier byte or nil, ci, cj = its class
-- p:sub(ci, cj - 1), whole = reads up to the whole subject (%b, back-reference),
-- tail = no item after it can fail}, or nil when p is malformed.
local function parse(p, i)
  local len, out, last = #p, {}, 0
  while i <= len do
    local c, nxt = byte(p, i), byte(p, i + 1)
    local it, fails = {}, true
    if c == LP then
      i, fails = i + (nxt == RP and 2 or 1), false
    elseif c == RP then
      i, fails = i + 1, false
    elseif c == DOLLAR and i == len then
      i = i + 1
    elseif c == PCT and nxt == LB then
      if i + 3 > len then return nil end
      it.whole, i = true, i + 4
    elseif c == PCT and nxt == LF then
      if byte(p, i + 2) ~= LBR then return nil end
      i = class_end(p, i + 2, len)
      if not i then return nil end
    elseif c == PCT and nxt and nxt >= D0 and nxt <= D9 then
      it.whole, i = true, i + 2
    else
      local j = class_end(p, i, len)
      if not j then return nil end
      local q = byte(p, j)
      if q == STAR or q == PLUS or q == MINUS or q == QMARK then
        it.q, it.ci, it.cj, fails = q, i, j, q == PLUS
        i = j + 1
      else
        i = j
      end
    end
    out[#out + 1] = it
    if fails then last = #out end
  end
  -- Past the last item that can fail, the first choice of every item succeeds:
  -- their other choices are never tried.
  for k = last, #out do
    if k > 0 then out[k].tail = true end
  end
  return out
end

-- Parsed patterns by text, for gmatch (no anchor) and the others; forgotten
-- when there are too many.
local caches, cached = { [true] = {}, [false] = {} }, 0

local function parsed(p, no_anchor)
  no_anchor = no_anchor == true
  local e = caches[no_anchor][p]
  if e == nil then
    local anchored = not no_anchor and byte(p, 1) == CARET
    e = { p = p, anchored = anchored, items = parse(p, anchored and 2 or 1) or false }
    if cached >= 512 then caches, cached = { [true] = {}, [false] = {} }, 0 end
    caches[no_anchor][p], cached = e, cached + 1
  end
  return e
end

-- Sum over the start positions of min(scan, what is left of the subject).
local function scan_total(n, scan, starts)
  if starts == 1 then return scan end
  if scan >= n then return (n + 1.0) * (n + 2) / 2 end
  return scan * (n - scan + 1.0) + scan * (scan - 1.0) / 2
end

-- Visits of each item are bounded twice: by the product of the earlier items'
-- choices, and, as the lengths they take add up to at most #s, by the number of
-- such length tuples, C(#s + j, j) for j earlier quantified items.
local function bound(s, e, measure)
  local n, list = #s, e.items
  if not list then return 0 end
  local starts = e.anchored and 1 or n + 1
  local total, prod, comb, j = 0.0, 1.0, 1.0, 0
  for _, it in ipairs(list) do
    local visits = prod < comb and prod or comb
    local scan, branch = it.whole and n or 0, 1
    if it.q == QMARK then
      branch = 2
    elseif it.q then
      local r = n
      if measure and byte(e.p, it.ci) ~= DOT then r = longest_run(s, e.p, it.ci, it.cj) end
      branch = r + 1
      if it.q ~= MINUS then scan = r end
    end
    total = total + visits * (starts + scan_total(n, scan, starts))
    if branch > 1 and not it.tail then
      prod, j = prod * branch, j + 1
      comb = comb * (n + j) / j
    end
  end
  return total + (prod < comb and prod or comb) * starts
end

function M.cost(s, p, no_anchor)
  local e = parsed(p, no_anchor)
  -- The first bound depends on the subject's length only: kept per length.
  local by_len = e.by_len
  if not by_len or e.lens >= 64 then
    by_len = {}
    e.by_len, e.lens = by_len, 0
  end
  local c = by_len[#s]
  if c == nil then
    c = bound(s, e, false)
    by_len[#s], e.lens = c, e.lens + 1
  end
  if c <= M.LIMIT then return c end
  return bound(s, e, true)
end

function M.plain_cost(s, p)
  local n, m = #s, #p
  if m > n then return 0 end
  return (n - m + 1) * m
end

local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]"

function M.check(name, s, p, plain)
  local ts, tp = type(s), type(p)
  if (ts ~= "string" and ts ~= "number") or (tp ~= "string" and tp ~= "number") then return end
  s, p = tostring(s), tostring(p)
  local cost, limit
  if name == "find" and (plain or not find(p, SPECIALS)) then
    cost, limit = M.plain_cost(s, p), M.PLAIN_LIMIT
  else
    cost, limit = M.cost(s, p, name == "gmatch"), M.LIMIT
  end
  if cost > limit then
    local shown = #p > 40 and p:sub(1, 40) .. "..." or p
    error(format("string.%s: pattern '%s' is too complex for a subject of %d bytes (about "
      .. "%.0e matching steps; the sandbox allows %.0e)", name, shown, #s, cost, limit), 3)
  end
end

return M
