/*
 * emit.h: the Kafka producer of rtu: pr-update messages and (deprecated)
 * projection-change messages. A run produces its messages, then waits for every
 * delivery report before its offsets may be stored.
 */
#ifndef RTU_EMIT_H
#define RTU_EMIT_H

#include <stddef.h>

#include "config.h"
#include "rtu.h"

typedef struct rtu_emit_s rtu_emit_t;

/* NULL with no error when the configuration produces nothing. */
rtu_emit_t *rtu_emit_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);
void rtu_emit_free(rtu_emit_t *em);

/* Queues one message (copied). RTU_ERR_TRANSIENT when the queue is full for too long. */
rtu_err_t rtu_emit_produce(rtu_emit_t *em, const char *topic, const char *key, size_t key_len,
                           const char *value, size_t value_len, char *errstr, size_t errstr_size);

/* Waits until every queued message is acknowledged. RTU_ERR_TRANSIENT when one
 * failed or the wait timed out: the run is to be retried (at-least-once). */
rtu_err_t rtu_emit_flush(rtu_emit_t *em, int timeout_ms, char *errstr, size_t errstr_size);

/* Messages acknowledged since start. */
unsigned long rtu_emit_delivered(const rtu_emit_t *em);

#endif
