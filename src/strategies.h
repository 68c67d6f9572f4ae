/*
 * strategies.h: the strategies of a script generation: which projections can
 * trigger a single view, what they read of a document, and the identify calls
 * that find the single views to rebuild.
 */
#ifndef RTU_STRATEGIES_H
#define RTU_STRATEGIES_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "rtu.h"
#include "strategies_db.h"

/* script.h's handle, declared here too so that this lower layer does not
 * include the generation's header (script.c includes this one). */
typedef struct rtu_script_s rtu_script_t;

/* A single view to rebuild, found by a strategy. */
typedef struct {
  char *type;         /* single view name */
  bson_t identifier;  /* its identifier */
  uint32_t origin;    /* index of the document (in the identify call) that led to it */
} rtu_identified_t;

/* Builds rtu.changes in s for its configuration (script.c, when projection
 * changes are on); every problem found is appended to problems. */
bool rtu_strategies_load(rtu_script_t *s, rtu_problems_t *problems);
/* Frees what rtu_strategies_load kept outside the Lua state. */
void rtu_strategies_unload(rtu_script_t *s);

/* True when changes of this projection can trigger a single view. */
bool rtu_strategies_involved(const rtu_script_t *s, size_t projection);

/* True when the strategies of this projection would be handed the same document
 * for a and b: they read only some top-level fields (low-code walks without a
 * custom function on the changed documents) and those are equal. Then running
 * them on both finds the same single views twice. */
bool rtu_strategies_same_input(const rtu_script_t *s, size_t projection, const bson_t *a,
                               const bson_t *b);

/* True when the strategies of this projection are handed its documents whole (a
 * custom function takes them), not reduced to the few fields a walk reads. */
bool rtu_strategies_whole_docs(const rtu_script_t *s, size_t projection);

/* A copy of doc with what the strategies of this projection read of it and its
 * primary key (which names it in a failure): the whole document when a custom
 * function takes it. For documents kept past their run (free with bson_destroy). */
bson_t *rtu_strategies_copy_input(const rtu_script_t *s, size_t projection, const bson_t *doc);

/*
 * Runs the strategies of the projection for docs[0..n) (the documents as stored
 * after the run, and before it where they changed), all at once so lookups of
 * one hop are batched. *out gets the de-duplicated single views to rebuild, each
 * with the index of the last document leading to it (free with
 * rtu_identified_free). RTU_ERR_TRANSIENT when a lookup could not reach MongoDB.
 * When the batch fails (a strategy error, a timeout, a bad result), the
 * documents are run again one call each, in the order rerun[0..n) gives (NULL:
 * their own), each under its own time limit: RTU_ERR_SCRIPT with the cause,
 * *failed_doc = the first document that fails alone, and *out = the single
 * views of the calls before it, each with the first document of them leading
 * to it; RTU_OK when none fails alone (the batch was only over the limit as a
 * whole). *failed_doc is n when no document failed.
 */
rtu_err_t rtu_strategies_identify(rtu_script_t *s, size_t projection, const bson_t *const *docs,
                                  const uint32_t *rerun, size_t n, rtu_find_fn find,
                                  void *find_ctx, rtu_identified_t **out, size_t *nout,
                                  size_t *failed_doc, char *errstr, size_t errstr_size);
void rtu_identified_free(rtu_identified_t *ids, size_t n);

#endif
