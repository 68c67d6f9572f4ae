/*
 * map_fast.h: the built-in debezium and basic adapters, a projection's mapping
 * and the built-in casts in C, for the messages of the common form; every other message
 * is left to the Lua pipeline, which gives the same change for these.
 */
#ifndef RTU_MAP_FAST_H
#define RTU_MAP_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "mapped.h"
#include "rtu.h"

/* A projection's mapping as the C path runs it (rtu_map_fast_plan). */
typedef struct rtu_map_fast_s rtu_map_fast_t;

/* The plan of projection p, or NULL when its mapping is not one the C path
 * runs: an adapter other than debezium and basic (db2), a cast it does not know, shared
 * destinations, a primary key that is not a mapped field or has a user's cast.
 * user (NULL: none) marks the fields whose cast is a CAST_FUNCTIONS_FOLDER
 * function (which overrides a built-in of its name): rtu_map_fast hands their
 * values to the caller's cast function. Free with rtu_map_fast_free. */
rtu_map_fast_t *rtu_map_fast_plan(const rtu_config_t *cfg, const rtu_projection_t *p,
                                  const bool *user);
void rtu_map_fast_free(rtu_map_fast_t *m);

/* Maps msg into out (reset) as rtu.pipeline's process would with the built-in
 * debezium or basic adapter and casts, and returns true; false, with out to be reset,
 * when the message is not of the form the C path reads (a tombstone, a delete,
 * an envelope, escapes in a value it uses, a value a cast would convert, a
 * primary-key change, anything the strict JSON reader gives up on...): the Lua
 * pipeline maps it then, errors and skips included. */
struct rtu_bson_raw_s;

/* A user's cast of field `field` applied to the JSON text [text, text+len) of
 * its value (present, null included), the result appended to out under the
 * field's destination as the pipeline's result would be (nil as null; *empty_key
 * set for an empty name); false when the Lua path must map the message. */
typedef bool (*rtu_map_fast_cast_fn)(void *ctx, size_t field, const char *text, size_t len,
                                     struct rtu_bson_raw_s *out, bool *empty_key);

bool rtu_map_fast(const rtu_map_fast_t *m, const rtu_msg_t *msg, rtu_mapped_t *out,
                  rtu_map_fast_cast_fn cast, void *ctx);

#endif
