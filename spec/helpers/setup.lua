-- busted helper: make the pure modules loadable as they are inside the binary.
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
require("helpers.json_shim")
