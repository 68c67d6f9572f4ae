/*
 * batch.h: a partition run. The messages of one partition, in offset order, are
 * mapped (script.c), folded per record with the counter guard decided in order,
 * and written with one bulk (store.c). The result says up to which offset
 * everything was applied, so the consumer commits exactly that. The runs of a
 * batch then hand their strategies' documents to one stage per projection.
 */
#ifndef RTU_BATCH_H
#define RTU_BATCH_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

#include "config.h"
#include "rtu.h"
#include "script.h"
#include "store.h"

typedef struct rtu_batch_s rtu_batch_t;

typedef struct {
  int64_t next_offset; /* commit this: the first offset not applied */
  bool failed;         /* stopped at fail_offset; nothing from there on counts */
  rtu_err_t err;
  int64_t fail_offset;
  char cause[RTU_ERRSTR_SIZE];
  bool kafka_unavailable; /* RTU_ERR_TRANSIENT came from the Kafka outputs, not MongoDB */
  size_t messages, applied, stale, skipped, writes, changes;
} rtu_run_result_t;

/* A worker's batch context: it borrows the script and the store, both of which
 * must outlive it, and reuses its buffers from run to run. */
rtu_batch_t *rtu_batch_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store);
void rtu_batch_free(rtu_batch_t *b);

struct rtu_emit_s;
/* The producer for pr-update and projection-change messages (may be NULL). */
void rtu_batch_set_emit(rtu_batch_t *b, struct rtu_emit_s *emit);

/* Swaps in another script generation between runs: its configuration (same
 * topics and projections as before) and its Lua state, both borrowed. */
void rtu_batch_set_generation(rtu_batch_t *b, const rtu_config_t *cfg, rtu_script_t *script);

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

void rtu_deferred_free(rtu_deferred_t *d);

/*
 * Applies msgs[0..n): all of one topic-partition, in offset order, for the
 * projection at index projection. RTU_ERR_TRANSIENT when MongoDB could not be
 * reached: nothing is to be committed and the same run may be retried as is.
 * Otherwise RTU_OK, with res->failed when a message could not be applied.
 * With defer, the strategies are left to rtu_batch_strategies (*defer gets
 * their documents; the run does not count before the stage ran); its
 * pr-update messages are produced here.
 */
rtu_err_t rtu_batch_run(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                        rtu_deferred_t *defer, rtu_run_result_t *res);

/*
 * The strategies stage of one projection: the deferred documents of its runs of
 * a poll (distinct partitions) in as few identify calls as the memory bound
 * allows, one bulk of projection changes, their Kafka messages and one flush
 * each. A strategy failing stops its own run at the failing message, with
 * everything before it done; the other runs go on. A transient error sets
 * err on the runs of that call.
 */
void rtu_batch_strategies(rtu_batch_t *b, size_t projection, rtu_deferred_t *const *runs,
                          size_t nruns);

#endif
