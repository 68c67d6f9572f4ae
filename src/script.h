/*
 * script.h: one Lua state of one script generation: the runtime modules of lua/,
 * the user's casts, adapter and strategies in their sandboxes, the time limit and
 * the memory cap. A state belongs to one worker thread at a time.
 */
#ifndef RTU_SCRIPT_H
#define RTU_SCRIPT_H

#include <bson/bson.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"
#include "rtu.h"

typedef struct rtu_script_s rtu_script_t;

typedef enum { RTU_OP_UPSERT, RTU_OP_INSERT, RTU_OP_UPDATE, RTU_OP_DELETE } rtu_op_t;

/* The normalised change of one message. The bson_t members live inside the struct
 * (libbson forbids moving them): keep the struct where it was initialised. */
typedef struct {
  bool skip; /* the adapter asked to skip it (reason in errstr of the call) */
  rtu_op_t op;
  bson_t key;     /* primary key, fields in fieldsInKey order */
  bson_t fields;  /* mapped fields to set (not for deletes) */
  bool has_old_key;
  bson_t old_key; /* primary-key change: the record that goes away */
  bool has_position;
  int64_t position;
  bool empty_key; /* a field name in fields is empty: the driver must refuse the write */
} rtu_mapped_t;

void rtu_mapped_init(rtu_mapped_t *m);
void rtu_mapped_reset(rtu_mapped_t *m);
void rtu_mapped_destroy(rtu_mapped_t *m);

/*
 * Builds a state for cfg: loads the runtime, every cast, the adapter and (later)
 * the strategies. Every problem found is appended to problems (file and cause);
 * returns NULL when there was any.
 */
rtu_script_t *rtu_script_new(const rtu_config_t *cfg, rtu_problems_t *problems);
void rtu_script_free(rtu_script_t *s);

/*
 * Runs adapter, mapping and casts for one message of the projection at index
 * projection (in cfg->projections). RTU_ERR_DATA or RTU_ERR_SCRIPT with the cause
 * when the message cannot be applied; out->skip with the reason in errstr when the
 * adapter skipped it.
 */
rtu_err_t rtu_script_map(rtu_script_t *s, size_t projection, const rtu_msg_t *msg,
                         rtu_mapped_t *out, char *errstr, size_t errstr_size);

/* A single view to rebuild, found by a strategy. */
typedef struct {
  char *type;         /* single view name */
  bson_t identifier;  /* its identifier */
  uint32_t origin;    /* index of the document (in the identify call) that led to it */
} rtu_identified_t;

/* The read-only lookups a strategy may make; store.c's rtu_store_find fits. */
typedef rtu_err_t (*rtu_find_fn)(void *ctx, const char *collection, const bson_t *filter,
                                 const bson_t *opts, void (*each)(void *each_ctx, const bson_t *doc),
                                 void *each_ctx, char *errstr, size_t errstr_size);

/* True when changes of this projection can trigger a single view. */
bool rtu_script_has_strategies(const rtu_script_t *s, size_t projection);

/* True when the strategies of this projection would be handed the same document
 * for a and b: they read only some top-level fields (low-code walks without a
 * custom function on the changed documents) and those are equal. Then running
 * them on both finds the same single views twice. */
bool rtu_script_same_input(const rtu_script_t *s, size_t projection, const bson_t *a,
                           const bson_t *b);

/* A copy of doc with what the strategies of this projection read of it and its
 * primary key (which names it in a failure): the whole document when a custom
 * function takes it. For documents kept past their run (free with bson_destroy). */
bson_t *rtu_script_strategy_copy(const rtu_script_t *s, size_t projection, const bson_t *doc);

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
rtu_err_t rtu_script_identify(rtu_script_t *s, size_t projection, const bson_t *const *docs,
                              const uint32_t *rerun, size_t n, rtu_find_fn find, void *find_ctx,
                              rtu_identified_t **out, size_t *nout, size_t *failed_doc,
                              char *errstr, size_t errstr_size);
void rtu_identified_free(rtu_identified_t *ids, size_t n);

/* Bytes currently allocated by the state (for metrics and tests). */
size_t rtu_script_memory(const rtu_script_t *s);

#endif
