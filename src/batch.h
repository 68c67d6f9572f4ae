/*
 * batch.h: a partition run. The messages of one partition, in offset order, are
 * mapped (script.c), folded per record with the counter guard decided in order,
 * and written with one bulk (store.c). The result says up to which offset
 * everything was applied, so the consumer commits exactly that.
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
 * Applies msgs[0..n): all of one topic-partition, in offset order, for the
 * projection at index projection. RTU_ERR_TRANSIENT when MongoDB could not be
 * reached: nothing is to be committed and the same run may be retried as is.
 * Otherwise RTU_OK, with res->failed when a message could not be applied.
 */
rtu_err_t rtu_batch_run(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                        rtu_run_result_t *res);

#endif
