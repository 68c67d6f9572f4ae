--[[
rtu.strategy.results: which documents of a lookup's result answer which filter,
without matching every document against every filter.

result_index(results) -> index_of
  index_of(field) -> {vkey(value) -> positions}: the ascending positions of
  `results` whose field equals the value or, an array, holds it; one position as a
  number, several as a list; built on first use per field.
attribute(results, index_of, f, limit) -> {position, ...}
  the positions of `results` matching filter f (rtu.strategy.match), ascending, at
  most `limit`; only the candidates the index gives for a field f pins are matched.

Owns: result indexes and attribution. May not touch: I/O, os, globals, any module
but rtu.value and rtu.strategy.match. Pure.
]]
local value = require("rtu.value")
local match = require("rtu.strategy.match")

local null = value.null
local is_list = value.is_list
local get, vkey, matches, is_opobj = match.get, match.vkey, match.matches, match.is_opobj
local M = {}

-- The values one of which field k must equal in any document matching {k = v}, or
-- nil when v does not pin the field (null, an operator other than $eq/$in).
local function pinned(v)
  if not is_opobj(v) then
    if v ~= null then return { v } end
    return nil
  end
  local eq = v["$eq"]
  if eq ~= nil and eq ~= null then return { eq } end
  local list = v["$in"]
  if list then
    for _, x in ipairs(list) do
      if x == null then return nil end
    end
    return list
  end
  return nil
end

local NONE = {}

-- The positions an index (see result_index) files under key, as a list.
local function positions_at(idx, key)
  local list = idx[key]
  if type(list) == "number" then return { list } end
  return list or NONE
end

-- The positions found in any of `lists`, ascending, each once.
local function union(lists)
  local set, out = {}, {}
  for _, list in ipairs(lists) do
    for _, p in ipairs(list) do
      if not set[p] then
        set[p] = true
        out[#out + 1] = p
      end
    end
  end
  table.sort(out)
  return out
end

-- Ascending positions of the results that may match f (a superset of those that
-- do), picked with index_of (see result_index), or nil when f pins no field so
-- every result is a candidate. Of several pinned fields the one with the fewest
-- candidates is used: a field every result shares (__STATE__) would pick them all.
local function candidates(f, index_of)
  local best, best_n -- as the index files them (a position or a list), and how many
  for k, v in pairs(f) do
    if type(k) == "string" and k:sub(1, 1) ~= "$" then
      local list
      if type(v) ~= "table" then
        -- what pinned() gives a scalar, without its list: the most common filter
        if v ~= null then list = index_of(k)[vkey(v)] or NONE end
      else
        local vals = pinned(v)
        if vals then
          local idx = index_of(k)
          if #vals == 1 then
            list = positions_at(idx, vkey(vals[1]))
          else
            local lists = {}
            for i, x in ipairs(vals) do lists[i] = positions_at(idx, vkey(x)) end
            list = union(lists)
          end
        end
      end
      if list then
        local n = type(list) == "number" and 1 or #list
        if not best or n < best_n then best, best_n = list, n end
        if best_n == 0 then return best end
      end
    end
  end
  if best then
    if type(best) == "number" then return { best } end
    return best
  end
  if f["$and"] then
    for _, sub in ipairs(f["$and"]) do
      local c = candidates(sub, index_of)
      if c then return c end
    end
  end
  if f["$or"] then
    local lists = {}
    for i, sub in ipairs(f["$or"]) do
      lists[i] = candidates(sub, index_of)
      if not lists[i] then return nil end
    end
    return union(lists)
  end
  return nil
end

-- Positions of `results` matching f, ascending, at most `limit`.
function M.attribute(results, index_of, f, limit)
  local cands = candidates(f, index_of)
  local out = {}
  local n = cands and #cands or #results
  for j = 1, n do
    local p = cands and cands[j] or j
    if matches(results[p], f) then
      out[#out + 1] = p
      if #out >= limit then break end
    end
  end
  return out
end

-- Files position p under key in idx (see result_index), once: p is the latest
-- position filed, if any, when an array holds an element twice.
local function file_at(idx, key, p)
  local at = idx[key]
  if at == nil then
    idx[key] = p
  elseif type(at) == "number" then
    if at ~= p then idx[key] = { at, p } end
  elseif at[#at] ~= p then
    at[#at + 1] = p
  end
end

-- index_of(field) -> {vkey(value) -> the ascending positions of `results` whose
-- field equals it or, for an array field, holds it: one position as a number,
-- several as a list}; built on first use per field. A single position is not
-- wrapped in a list: most keys are found once.
local function result_index(results)
  local indexes = {}
  return function(field)
    local idx = indexes[field]
    if idx then return idx end
    idx = {}
    local plain = not field:find(".", 1, true)
    for p = 1, #results do
      local r = results[p]
      local v
      if plain and type(r) == "table" then v = r[field] else v = get(r, field) end
      if v ~= nil then
        file_at(idx, type(v) == "string" and v or vkey(v), p)
        if type(v) == "table" and is_list(v) then
          for _, e in ipairs(v) do file_at(idx, vkey(e), p) end
        end
      end
    end
    indexes[field] = idx
    return idx
  end
end
M.result_index = result_index

return M
