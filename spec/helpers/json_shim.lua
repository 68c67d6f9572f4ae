--[[
Specs run the pure Lua modules under plain lua5.4, without the rtu binary. The binary
provides `rtu.json` in C (integer-exact, libbson based); here rtu.testing.json stands
in for it (lua-cjson, with integral numbers turned back into Lua integers), the same
stand-in users' busted tests get through rtu.testing.
]]
local M = require("rtu.testing.json")
package.loaded["rtu.json"] = M
return M
