-- busted helper: make the pure modules loadable as they are inside the binary.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
require("helpers.json_shim")

-- rtu.limits is C in the binary: timed_out() tells whether the running call hit
-- the time limit. Here it is false unless a spec sets `stand_in_timed_out`.
package.preload["rtu.limits"] = function()
  local M = { stand_in_timed_out = false }
  function M.timed_out() return M.stand_in_timed_out end
  return M
end
