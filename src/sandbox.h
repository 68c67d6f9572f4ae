/*
 * sandbox.h: a Lua state with a memory cap and a time limit on every call, its
 * standard libraries stripped of what reaches outside, require limited to the
 * runtime folder, and user files loaded into their own sandbox environments.
 * A state belongs to one worker thread at a time.
 */
#ifndef RTU_SANDBOX_H
#define RTU_SANDBOX_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rtu.h"

typedef struct {
  lua_State *L;
  const char *lua_dir; /* the runtime modules (rtu.*), kept by the caller */
  size_t mem_used, mem_limit;
  int64_t deadline; /* monotonic ms; 0 = no limit */
  int limit_ms;     /* STRATEGIES_MAX_EXEC_TIME_MS; 0 = none */
  bool timed_out;
  bool last_timed_out;     /* of the last rtu_sandbox_pcall */
  bool mem_refused;        /* the cap refused an allocation since the call began */
  bool last_out_of_memory; /* the last rtu_sandbox_pcall failed on the memory cap */
} rtu_sandbox_t;

/* Opens sb->L with the libraries, rtu.json and rtu.limits preloaded; sb must not
 * move while the state lives (the state points at it). False when out of memory. */
bool rtu_sandbox_open(rtu_sandbox_t *sb, const char *lua_dir, int limit_ms);
void rtu_sandbox_close(rtu_sandbox_t *sb);

/* Calls the function below nargs arguments with the time limit; leaves nres
 * results, or returns false with the error message on the stack top (a timeout
 * or the memory cap named in it, and in last_timed_out, last_out_of_memory). */
bool rtu_sandbox_pcall(rtu_sandbox_t *sb, int nargs, int nres);

/* The count hook that enforces the time limit, off or back on. With it, Lua 5.4
 * calls into the debug machinery before every instruction: code that needs no
 * limit (the shipped runtime) runs without. */
void rtu_sandbox_set_hook(rtu_sandbox_t *sb, bool on);

/* Loads the runtime module name (rtu.*) into the registry under its name. */
bool rtu_sandbox_require(rtu_sandbox_t *sb, const char *name, rtu_problems_t *problems);

/* Guards string methods ("s:find(p)") with rtu.sandbox's string library; after
 * rtu_sandbox_require of rtu.sandbox. */
bool rtu_sandbox_guard_strings(rtu_sandbox_t *sb, rtu_problems_t *problems);

/* Loads a user file returning one function, in a fresh sandbox environment, and
 * pushes the function; false with the problem recorded. */
bool rtu_sandbox_load_function(rtu_sandbox_t *sb, const char *path, rtu_problems_t *problems);

/* Pushes the log object handed to scripts (log.info(msg [, fields]), ...). */
void rtu_sandbox_push_log(lua_State *L);

/* Copies every field of the table at the top of the stack into the table just
 * below it, then pops the copied table. */
void rtu_sandbox_copy_fields(lua_State *L);

#endif
