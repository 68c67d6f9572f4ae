/*
 * stage.h: the strategies stage. The documents the partition runs of a poll
 * hand to strategies (the records as stored after each run, and before it where
 * they changed) go through one identify call per projection, then one bulk of
 * projection changes and their Kafka messages.
 */
#ifndef RTU_STAGE_H
#define RTU_STAGE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "emit.h"
#include "result.h"
#include "rtu.h"
#include "script.h"
#include "store.h"
#include "strategies.h"

typedef struct rtu_stage_s rtu_stage_t;

/*
 * The documents a run hands to strategies, put off to the poll's strategies
 * stage: one projection's lookups are then paid once per poll rather than once
 * per partition run, and a single view found from several partitions is
 * recorded once (PRODUCT.md: identifiers are de-duplicated within a batch).
 * The job owns it, the worker's batch context going on to other runs; free it
 * with rtu_deferred_free once the run is settled.
 */
typedef struct {
  const bson_t **docs;   /* by origin; copies when owned */
  bool owned;
  uint32_t *origin;      /* per document: index in msgs of the message its changes name */
  uint32_t *since;       /* per document: index of the earliest message it stands for */
  uint32_t *rerun;       /* the documents by since: the order of the one-by-one reruns */
  size_t n;
  const rtu_msg_t *msgs; /* the run's, borrowed */
  size_t nmsgs;
  uint8_t *skipped;      /* per message: skipped on purpose (applied is counted again) */
  rtu_run_result_t *res; /* the run's, borrowed: a failing strategy moves its end */
  rtu_err_t err;         /* of the stage: RTU_OK, RTU_ERR_TRANSIENT or RTU_ERR_FATAL */
} rtu_deferred_t;

/* Sorts d's documents by the message their changes name (ties keep their order)
 * and fills d->rerun with them by since. False when out of memory. */
bool rtu_deferred_order(rtu_deferred_t *d);
void rtu_deferred_free(rtu_deferred_t *d);

/* A worker's stage: it borrows the configuration, the script, the store and the
 * producer (NULL when nothing is produced), all of which must outlive it. */
rtu_stage_t *rtu_stage_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store);
void rtu_stage_free(rtu_stage_t *s);
void rtu_stage_set_emit(rtu_stage_t *s, rtu_emit_t *emit);
/* What rtu test --explain sees of an identify call: called with ids NULL before
 * it (the documents handed to the strategies), then with the identifiers it
 * produced (each naming its document by origin). NULL in rtu run. */
typedef void (*rtu_stage_trace_fn)(void *ctx, const rtu_projection_t *p,
                                   const bson_t *const *docs, size_t ndocs,
                                   const rtu_identified_t *ids, size_t nids);
void rtu_stage_set_trace(rtu_stage_t *s, rtu_stage_trace_fn fn, void *ctx);
void rtu_stage_set_generation(rtu_stage_t *s, const rtu_config_t *cfg, rtu_script_t *script);

/*
 * The strategies stage of one projection: the deferred documents of its runs of
 * a poll (distinct partitions) in as few identify calls as the memory bound
 * allows, one bulk of projection changes, their Kafka messages and one flush
 * each. A strategy failing stops its own run at the failing message, with
 * everything before it done; the other runs go on. A transient error sets
 * err on the runs of that call.
 */
void rtu_stage_run(rtu_stage_t *s, size_t projection, rtu_deferred_t *const *runs, size_t nruns);

#endif
