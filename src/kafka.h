/*
 * kafka.h: the librdkafka configuration every Kafka client of rtu shares (the
 * consumer, the workers' producers, the dead-letter producer): brokers,
 * connection timeout, security protocol, SASL, CA certificate, log and error
 * callbacks, and the producers' delivery settings.
 */
#ifndef RTU_KAFKA_H
#define RTU_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef enum { RTU_KAFKA_CONSUMER, RTU_KAFKA_PRODUCER } rtu_kafka_role_t;

/* A new configuration with the shared settings, and for a producer its delivery
 * settings (idempotence, acks=all, PRODUCER_COMPRESSION). NULL with errstr set
 * when librdkafka refuses a setting. The caller adds its own settings, then
 * hands it to rd_kafka_new or frees it with rd_kafka_conf_destroy. */
rd_kafka_conf_t *rtu_kafka_conf_new(const rtu_config_t *cfg, rtu_kafka_role_t role, char *errstr,
                                    size_t errstr_size);

/* rd_kafka_conf_set, true when accepted (errstr set otherwise). */
bool rtu_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                        size_t errstr_size);

#endif
