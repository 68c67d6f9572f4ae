/*
 * fuzz.h: what the libFuzzer targets of spec/fuzz share: a failed check that
 * stops the run with the input's story (libFuzzer saves the input as a crash),
 * a tally of the inputs on which two readers legitimately differ (printed at
 * exit, so a run says what it met), and the Lua state of rtu.json as script.c
 * builds it. Everything is static: each target is one translation unit.
 */
#ifndef RTU_FUZZ_H
#define RTU_FUZZ_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_lua.h"
#include "json_module.h"
#include "json_read.h"
#include "json_write.h"
#include "key_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken property: says which and aborts, so that libFuzzer keeps the input. */
static __attribute__((format(printf, 1, 2), noreturn)) void fuzz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz check failed: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- classified differences ------------------------------------------------ */

#define FUZZ_MAX_CLASSES 16
static struct {
  const char *name;
  unsigned long n;
} fuzz_classes_[FUZZ_MAX_CLASSES];

static __attribute__((unused)) void fuzz_count(const char *name) {
  for (int i = 0; i < FUZZ_MAX_CLASSES; i++) {
    if (!fuzz_classes_[i].name) fuzz_classes_[i].name = name;
    if (fuzz_classes_[i].name == name || !strcmp(fuzz_classes_[i].name, name)) {
      fuzz_classes_[i].n++;
      return;
    }
  }
}

static __attribute__((unused)) void fuzz_report_(void) {
  for (int i = 0; i < FUZZ_MAX_CLASSES && fuzz_classes_[i].name; i++)
    fprintf(stderr, "classified: %-56s %lu\n", fuzz_classes_[i].name, fuzz_classes_[i].n);
}

static __attribute__((unused)) void fuzz_report_at_exit(void) { atexit(fuzz_report_); }

/* ---- Lua ------------------------------------------------------------------- */

/* The Lua runtime: LUA_RUNTIME_FOLDER (set by ctest), else the source's. */
static __attribute__((unused)) const char *fuzz_lua_dir(void) {
  const char *d = getenv("LUA_RUNTIME_FOLDER");
  return d && *d ? d : RTU_SOURCE_LUA_DIR;
}

/* A plain state with rtu.json preloaded and rtu.value loaded and bound, as
 * script.c sets them up (the same as test_value.c's). */
static __attribute__((unused)) lua_State *fuzz_json_state(void) {
  lua_State *l = luaL_newstate();
  if (!l) fuzz_fail("luaL_newstate");
  luaL_openlibs(l);
  luaL_requiref(l, "rtu.json", rtu_json_module_open, 0);
  lua_pop(l, 1);
  lua_getglobal(l, "package");
  lua_pushfstring(l, "%s/?.lua", fuzz_lua_dir());
  lua_setfield(l, -2, "path");
  lua_pop(l, 1);
  if (luaL_dostring(l, "return (require('rtu.value'))") != LUA_OK)
    fuzz_fail("cannot load rtu.value: %s", lua_tostring(l, -1));
  rtu_bson_lua_bind(l, -1);
  lua_setglobal(l, "V");
  return l;
}

#endif
