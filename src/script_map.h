/*
 * script_map.h: one message mapped in a script generation's state: adapter,
 * mapping and casts (rtu.pipeline) give the normalised change of the message.
 */
#ifndef RTU_SCRIPT_MAP_H
#define RTU_SCRIPT_MAP_H

#include <bson/bson.h>
#include <lua.h>
#include <stdbool.h>

#include "config.h"
#include "mapped.h"
#include "rtu.h"

/* script.h's handle, declared here too so that this lower layer does not
 * include the generation's header (script.c includes this one). */
typedef struct rtu_script_s rtu_script_t;

void rtu_mapped_init(rtu_mapped_t *m);
void rtu_mapped_reset(rtu_mapped_t *m);
void rtu_mapped_destroy(rtu_mapped_t *m);

/*
 * Runs adapter, mapping and casts for one message of the projection at index
 * projection (in cfg->projections). RTU_ERR_DATA or RTU_ERR_SCRIPT with the cause
 * when the message cannot be applied; out->skip with the reason in errstr when the
 * adapter skipped it.
 */
rtu_err_t rtu_script_map(rtu_script_t *s, size_t projection, const rtu_msg_t *msg,
                         rtu_mapped_t *out, char *errstr, size_t errstr_size);

/* Whether rtu_script_map may take the C path of map_fast.c (on by default); a
 * test turns it off to map the same messages through Lua only. */
void rtu_script_map_set_fast(rtu_script_t *s, bool on);
/* How many messages the C path mapped in this state. */
uint64_t rtu_script_map_fast_count(const rtu_script_t *s);
/* Frees what the mapping keeps per projection (rtu_script_free). */
void rtu_script_map_release(rtu_script_t *s);

/* The unmapped and uncastable fields the mapping met since the previous call for
 * this projection (an array of *n in *out, to free with rtu_unmapped_free), and
 * forgets them; none when neither LOGGING_UNMAPPED_FIELDS nor
 * COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE is set. */
typedef struct rtu_unmapped_s rtu_unmapped_t;
rtu_err_t rtu_script_map_notes(rtu_script_t *s, size_t projection, rtu_unmapped_t **out,
                               size_t *n, char *errstr, size_t errstr_size);

/* Pushes the names rtu_script_map reads and writes, as Lua strings, for cfg
 * (script.c keeps them in the state's registry at names_ref). */
void rtu_script_map_push_names(lua_State *L, const rtu_config_t *cfg);

#endif
