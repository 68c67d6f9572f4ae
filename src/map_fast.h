/*
 * map_fast.h: the built-in debezium adapter, a projection's mapping and the
 * built-in casts in C, for the messages of the common form; every other message
 * is left to the Lua pipeline, which gives the same change for these.
 */
#ifndef RTU_MAP_FAST_H
#define RTU_MAP_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "rtu.h"
#include "script_map.h"

/* A projection's mapping as the C path runs it (rtu_map_fast_plan). */
typedef struct rtu_map_fast_s rtu_map_fast_t;

/* The plan of projection p, or NULL when its mapping is not one the C path
 * runs: an adapter other than debezium, a cast it does not know (a
 * CAST_FUNCTIONS_FOLDER file of a built-in's name is the caller's test: such a
 * projection must not get here), shared destinations, a primary key that is
 * not a mapped field. Free with rtu_map_fast_free. */
rtu_map_fast_t *rtu_map_fast_plan(const rtu_config_t *cfg, const rtu_projection_t *p);
void rtu_map_fast_free(rtu_map_fast_t *m);

/* Maps msg into out (reset) as rtu.pipeline's process would with the built-in
 * debezium adapter and casts, and returns true; false, with out to be reset,
 * when the message is not of the form the C path reads (a tombstone, a delete,
 * an envelope, escapes in a value it uses, a value a cast would convert, a
 * primary-key change, anything the strict JSON reader gives up on...): the Lua
 * pipeline maps it then, errors and skips included. */
bool rtu_map_fast(const rtu_map_fast_t *m, const rtu_msg_t *msg, rtu_mapped_t *out);

#endif
