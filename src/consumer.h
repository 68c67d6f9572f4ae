/*
 * consumer.h: the Kafka consumer group and the service loop: poll a batch, hand
 * each partition's run to the worker pool, store and commit the offsets that were
 * applied, stop a partition at a message that cannot be applied (or send it to
 * the dead-letter topic), pause partitions while MongoDB or Kafka is out.
 */
#ifndef RTU_CONSUMER_H
#define RTU_CONSUMER_H

#include <signal.h>
#include <stdbool.h>

#include "config.h"
#include "pool.h"
#include "rtu.h"

typedef struct rtu_consumer_s rtu_consumer_t;

rtu_consumer_t *rtu_consumer_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);
void rtu_consumer_free(rtu_consumer_t *c);

/* What the loop is given besides the pool. */
typedef struct {
  volatile sig_atomic_t *stop; /* non-zero: commit what was applied, leave the group */
  /* Called between batches (may be NULL). Returns true when a new script
   * generation was swapped in: stopped partitions are then retried from the
   * message they stopped at. */
  bool (*between_batches)(void *ud);
  void *ud;
} rtu_consumer_loop_t;

/* Runs until *loop->stop becomes non-zero; then commits what was applied and
 * leaves the group. Returns RTU_OK on a clean stop. */
rtu_err_t rtu_consumer_run(rtu_consumer_t *c, rtu_pool_t *pool, const rtu_consumer_loop_t *loop,
                           char *errstr, size_t errstr_size);

#endif
