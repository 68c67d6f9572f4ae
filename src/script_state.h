/*
 * script_state.h: the inside of rtu_script_t, shared by the files that make up
 * a script generation (script.c builds it, script_map.c maps messages with it,
 * strategies.c runs the strategies in it) and by nothing else: other
 * subsystems use script.h, script_map.h and strategies.h.
 */
#ifndef RTU_SCRIPT_STATE_H
#define RTU_SCRIPT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "config.h"
#include "sandbox.h"
#include "strategies_db.h"

/* script.h's handle, declared here too so that this lower layer does not
 * include the generation's header (script.c includes this one). */
typedef struct rtu_script_s rtu_script_t;

struct rtu_script_s {
  rtu_sandbox_t sb; /* the Lua state and its limits */
  const rtu_config_t *cfg;
  int process_ref; /* pipeline process function */
  int log_ref;     /* the log table handed to scripts */
  int message_ref; /* the message table reused when only the runtime maps (script_map.c) */
  int names_ref;   /* the names the core reads and writes, as Lua strings (script_map.c) */
  int notes_ref;   /* the pipeline's notes of unmapped fields, LUA_NOREF when off */
  unsigned char *map_kind; /* per projection: 0 not known yet, runtime only, user code */
  bool map_fast_on;        /* the C path may map (script_map.c) */
  struct rtu_map_fast_s **map_fast; /* per projection: its plan, NULL for Lua only */
  int **map_fast_refs;              /* per projection and field: a user's cast, or LUA_NOREF */
  unsigned char *map_fast_tried;    /* per projection: the plan was looked for */
  uint64_t map_fast_count;          /* messages the C path mapped */
  int identify_ref; /* rtu.changes identify function, LUA_NOREF when strategies are off */
  int db_ref;       /* the read-only db object handed to strategies */
  bool *involved;   /* per projection: can trigger a single view */
  bool *pure;       /* per projection: its strategies run no user code */
  /* Per projection: the only top-level fields strategies read from its documents
   * (low-code without custom identifier functions), names NULL for all of them. */
  struct {
    char **names;
    size_t n;
  } *read_fields;
  rtu_strategies_db_t db; /* what the db object answers with during a run */
};

/* A regular file at path (a user's cast, adapter or strategy). */
static inline bool rtu_script_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

#endif
