/*
 * script.h: one Lua state of one script generation: the runtime modules of lua/,
 * the user's casts, adapter and strategies in their sandboxes, the time limit and
 * the memory cap. A state belongs to one worker thread at a time. Messages are
 * mapped with script_map.h, strategies run with strategies.h.
 */
#ifndef RTU_SCRIPT_H
#define RTU_SCRIPT_H

#include <stddef.h>

#include "config.h"
#include "rtu.h"

typedef struct rtu_script_s rtu_script_t;

/*
 * Builds a state for cfg: loads the runtime, every cast, the adapter and (when
 * projection changes are on) the strategies. Every problem found is appended to
 * problems (file and cause); returns NULL when there was any.
 */
rtu_script_t *rtu_script_new(const rtu_config_t *cfg, rtu_problems_t *problems);
void rtu_script_free(rtu_script_t *s);

/* Bytes currently allocated by the state (for metrics and tests). */
size_t rtu_script_memory(const rtu_script_t *s);

#endif
