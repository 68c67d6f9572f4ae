/*
 * reload.h: script generations on demand: SIGHUP, or (SCRIPTS_HOT_RELOAD=true) a
 * change to any file of the configured folders. A new generation is loaded and
 * validated off the message path's state and swapped in between batches; an
 * invalid one is refused and the running generation goes on.
 */
#ifndef RTU_RELOAD_H
#define RTU_RELOAD_H

#include <stdbool.h>

#include "config.h"
#include "pool.h"

typedef struct rtu_reload_s rtu_reload_t;

/* Starts the file watcher when base->hot_reload. default_lua_dir is copied. */
rtu_reload_t *rtu_reload_new(const rtu_config_t *base, const char *default_lua_dir,
                             char *errstr, size_t errstr_size);
void rtu_reload_free(rtu_reload_t *r);

/* Asks for a reload at the next batch boundary; async-signal-safe. */
void rtu_reload_request(rtu_reload_t *r);

/* Between batches: when a reload was asked for, loads a generation and swaps it
 * into the pool. True when a new generation is running. */
bool rtu_reload_apply(rtu_reload_t *r, rtu_pool_t *pool);

#endif
