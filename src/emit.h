/*
 * emit.h: the Kafka producer of rtu: pr-update messages and (deprecated)
 * projection-change messages. A run produces its messages, then waits for every
 * delivery report before its offsets may be stored.
 */
#ifndef RTU_EMIT_H
#define RTU_EMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "rtu.h"

typedef struct rtu_emit_s rtu_emit_t;

/* True when the configuration produces any Kafka message. */
bool rtu_emit_needed(const rtu_config_t *cfg);

/* NULL with no error when the configuration produces nothing. One producer per
 * worker: a flush then waits for, and reports the failures of, that worker's
 * messages only. */
rtu_emit_t *rtu_emit_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);
void rtu_emit_free(rtu_emit_t *em);

/* Where a capture puts each message (rtu test): the buffers are the caller's,
 * valid during the call only. */
typedef rtu_err_t (*rtu_emit_sink_fn)(void *ctx, const char *topic, const char *key,
                                      size_t key_len, const char *value, size_t value_len,
                                      char *errstr, size_t errstr_size);

/* A producer that hands every message to sink instead of Kafka: nothing connects,
 * every message counts as delivered at once. */
rtu_emit_t *rtu_emit_new_capture(rtu_emit_sink_fn sink, void *ctx);

/* A producer whatever the configuration says (for the dead-letter topic). */
rtu_emit_t *rtu_emit_new_producer(const rtu_config_t *cfg, char *errstr, size_t errstr_size);

/* Produces msg as it came (key, value, headers) to topic, with the error and the
 * source in rtu.* headers, and waits for its delivery. */
rtu_err_t rtu_emit_dead_letter(rtu_emit_t *em, const char *topic, const rtu_msg_t *msg,
                               rtu_err_t kind, const char *cause, char *errstr,
                               size_t errstr_size);

/* Queues one message (copied). RTU_ERR_TRANSIENT when the queue is full for too long. */
rtu_err_t rtu_emit_produce(rtu_emit_t *em, const char *topic, const char *key, size_t key_len,
                           const char *value, size_t value_len, char *errstr, size_t errstr_size);

/* Waits until every queued message is acknowledged. RTU_ERR_TRANSIENT when one
 * failed or the wait timed out: the run is to be retried (at-least-once). */
rtu_err_t rtu_emit_flush(rtu_emit_t *em, int timeout_ms, char *errstr, size_t errstr_size);

/* Messages acknowledged since start. */
/* Serves the producer's pending callbacks (statistics) without waiting; from
 * the thread that owns em, as every other call. */
void rtu_emit_poll(rtu_emit_t *em);

unsigned long rtu_emit_delivered(const rtu_emit_t *em);

#endif
