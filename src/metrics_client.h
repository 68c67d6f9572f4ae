/*
 * metrics_client.h: the Kafka and MongoDB client series under the names the
 * Fast Data dashboard reads (reference section 8.5): the Java client's
 * kafka_consumer_fetch_manager_*, kafka_consumer_coordinator_* and
 * kafka_producer_* (from librdkafka's statistics), and Micrometer's
 * mongodb_driver_commands_seconds{collection,command,status} (from libmongoc's
 * command monitoring). Thread-safe; metrics.c renders them after the rtu_*
 * series.
 */
#ifndef RTU_METRICS_CLIENT_H
#define RTU_METRICS_CLIENT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

void rtu_metrics_client_init(void);
void rtu_metrics_client_free(void);

/* One statistics document of a librdkafka client (consumer or producer, told
 * apart by its "type"), as bson_new_from_json read it. Rates are per second
 * between two documents of the same client ("name"). */
void rtu_metrics_client_kafka(const bson_t *stats);

/* The producer's statistics JSON as librdkafka hands it to its callback. */
void rtu_metrics_client_kafka_json(const char *json, size_t len);

/* A client gone (a producer freed): its series stop counting. */
void rtu_metrics_client_forget(const char *name);

/* A rebalance of the consumer group began (subscribe, partitions revoked) /
 * ended (partitions assigned): kafka_consumer_coordinator_rebalance_latency_*. */
void rtu_metrics_client_rebalance_begin(void);
void rtu_metrics_client_rebalance_end(void);

/* One MongoDB command, its collection ("" when it has none) and whether it
 * succeeded. */
void rtu_metrics_client_mongo(const char *collection, const char *command, bool ok,
                              double seconds);

/* The exposition of these series, appended to out. */
void rtu_metrics_client_render(bson_string_t *out);

#endif
