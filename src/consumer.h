/*
 * consumer.h: the Kafka consumer group and the service loop: poll a batch, hand
 * each partition's run to the batch context, store and commit the offsets that
 * were applied, stop a partition at a message that cannot be applied.
 */
#ifndef RTU_CONSUMER_H
#define RTU_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>

#include "batch.h"
#include "config.h"
#include "rtu.h"

typedef struct rtu_consumer_s rtu_consumer_t;

/* The settings every Kafka client of rtu shares: brokers, SASL/TLS, log and error
 * callbacks. */
bool rtu_kafka_conf_common(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                           size_t errstr_size);

rtu_consumer_t *rtu_consumer_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);
void rtu_consumer_free(rtu_consumer_t *c);

/* Runs until *stop becomes non-zero; then commits what was applied and leaves the
 * group. Returns RTU_OK on a clean stop. */
rtu_err_t rtu_consumer_run(rtu_consumer_t *c, rtu_batch_t *batch,
                           volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

#endif
