/*
 * json_module.h: the `rtu.json` Lua module: decode(text [, leave_out]),
 * encode(value), decimal(text) and the null sentinel.
 */
#ifndef RTU_JSON_MODULE_H
#define RTU_JSON_MODULE_H

#include <lua.h>

/* luaopen-style loader of `rtu.json`: pushes the module table. */
int rtu_json_module_open(lua_State *L);

#endif
