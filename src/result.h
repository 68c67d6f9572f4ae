/*
 * result.h: what a partition run produced, as it travels back up: batch.c fills
 * it, stage.c may move its end back, the pool returns it and consumer.c stores
 * and commits the offsets it allows. A type and its one rule, no code of its own.
 */
#ifndef RTU_RESULT_H
#define RTU_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rtu.h"

typedef struct {
  int64_t next_offset; /* commit this: the first offset not applied */
  bool failed;         /* stopped at fail_offset; nothing from there on counts */
  rtu_err_t err;
  int64_t fail_offset;
  char cause[RTU_ERRSTR_SIZE];
  bool kafka_unavailable; /* RTU_ERR_TRANSIENT came from the Kafka outputs, not MongoDB */
  size_t messages, applied, stale, skipped, writes, changes;
} rtu_run_result_t;

/* The run stops at msg (which cannot be applied) unless it stops earlier already. */
static inline void rtu_run_fail_at(rtu_run_result_t *res, rtu_err_t err, const rtu_msg_t *msg,
                                   const char *cause) {
  if (res->failed && res->fail_offset <= msg->offset) return;
  res->failed = true;
  res->err = err;
  res->fail_offset = msg->offset;
  snprintf(res->cause, sizeof res->cause, "%s", cause);
}

#endif
