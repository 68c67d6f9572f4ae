/*
 * batch.h: a partition run. The messages of one partition, in offset order, are
 * mapped (script.c), folded per record with the counter guard decided in order,
 * and written with one bulk (through store.h). The result says up to which
 * offset everything was applied, so the consumer commits exactly that. The runs
 * of a poll then hand their strategies' documents to one stage per projection
 * (stage.h).
 */
#ifndef RTU_BATCH_H
#define RTU_BATCH_H

#include <stdbool.h>

#include "config.h"
#include "emit.h"
#include "result.h"
#include "rtu.h"
#include "script.h"
#include "stage.h"
#include "store.h"

typedef struct rtu_batch_s rtu_batch_t;

/* A worker's batch context: it borrows the script and the store, both of which
 * must outlive it, and reuses its buffers from run to run. */
rtu_batch_t *rtu_batch_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store);
void rtu_batch_free(rtu_batch_t *b);

/* The producer for pr-update and projection-change messages (may be NULL). */
void rtu_batch_set_emit(rtu_batch_t *b, rtu_emit_t *emit);

/* For the next run: the pr-update messages of records whose last message is
 * below offset were produced and acknowledged by an earlier try of this run (a
 * retry after an outage), so they are not produced again. -1: none. */
void rtu_batch_set_outputs_done(rtu_batch_t *b, int64_t offset);

/* The batch context's strategies stage, for the poll's stage of deferred runs. */
rtu_stage_t *rtu_batch_stage(rtu_batch_t *b);

/* Swaps in another script generation between runs: its configuration (same
 * topics and projections as before) and its Lua state, both borrowed. */
void rtu_batch_set_generation(rtu_batch_t *b, const rtu_config_t *cfg, rtu_script_t *script);

/*
 * Applies msgs[0..n): all of one topic-partition, in offset order, for the
 * projection at index projection. RTU_ERR_TRANSIENT when MongoDB could not be
 * reached: nothing is to be committed and the same run may be retried as is.
 * Otherwise RTU_OK, with res->failed when a message could not be applied.
 * With defer, the strategies are left to rtu_stage_run (*defer gets
 * their documents; the run does not count before the stage ran); its
 * pr-update messages are produced here.
 */
rtu_err_t rtu_batch_run(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                        rtu_deferred_t *defer, rtu_run_result_t *res);

/* One run of rtu_batch_run_joined: its arguments to rtu_batch_run, and what it
 * would have returned. */
typedef struct {
  const rtu_msg_t *msgs;
  size_t n;
  rtu_deferred_t *defer;
  rtu_run_result_t *res;
  rtu_err_t err;
} rtu_batch_joined_t;

/*
 * Runs of distinct partitions of one projection, runs[i] applied by bs[i] as
 * rtu_batch_run would (every result the same), but in step: one read of the
 * stored records and one bulk for all of them. Under a trickle a poll brings a
 * few messages from each partition, and two round trips per run were most of
 * their time (docs/performance.md, Freshness). The contexts must share one
 * store (one worker's: they run on its thread) and their script's Lua state;
 * their outputs_done is each run's own. Not for mappings that note unmapped
 * fields (the notes are kept in the Lua state between a run's mapping and its
 * end, so joined runs would take each other's).
 */
void rtu_batch_run_joined(rtu_batch_t *const *bs, size_t k, size_t projection,
                          rtu_batch_joined_t *runs);

#endif
