/*
 * metrics.h: the process-wide counters, histograms and gauges that /-/metrics
 * renders in the Prometheus text format. Every function is thread-safe and cheap
 * enough for the per-run path (never call them per message in a loop: add n).
 * The series named in the reference (rtu_consumer_batch_processing, ...) keep
 * their names so existing dashboards keep working.
 */
#ifndef RTU_METRICS_H
#define RTU_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Counters. Each has at most one label, named in metrics.c's table; label may be
 * NULL for the unlabelled ones. */
typedef enum {
  RTU_C_CONSUMED,           /* rtu_messages_consumed_total{topic} */
  RTU_C_APPLIED,            /* rtu_messages_applied_total{topic} */
  RTU_C_STALE,              /* rtu_messages_stale_total{topic} */
  RTU_C_SKIPPED,            /* rtu_messages_skipped_total{topic} (tombstones...) */
  RTU_C_FAILED,             /* rtu_messages_failed_total{topic} */
  RTU_C_DEAD_LETTERED,      /* rtu_messages_dead_lettered_total{topic} */
  RTU_C_WRITES,             /* rtu_projection_writes_total{topic} */
  RTU_C_PROJECTION_CHANGES, /* rtu_projection_changes_total{single_view} */
  RTU_C_MONGO_COMMANDS,     /* rtu_mongodb_commands_total{command} */
  RTU_C_STRATEGY_LOOKUPS,   /* rtu_strategy_lookups_total */
  RTU_C_STRATEGY_DOCUMENTS, /* rtu_strategy_documents_total */
  RTU_C_STRATEGY_TIMEOUTS,  /* rtu_strategy_timeouts_total */
  RTU_C_STRATEGY_ERRORS,    /* rtu_strategy_errors_total */
  RTU_C_TRANSIENT_ERRORS,   /* rtu_transient_errors_total{dependency} */
  RTU_C_RELOADS,            /* rtu_script_reloads_total */
  RTU_C_RELOAD_FAILURES,    /* rtu_script_reload_failures_total */
  RTU_C_INDEX_FAILURES,     /* rtu_index_build_failures_total{collection} */
  RTU_C__COUNT
} rtu_counter_t;

/* Histograms, in seconds. */
typedef enum {
  RTU_H_BATCH,       /* rtu_consumer_batch_processing */
  RTU_H_PARTITION,   /* rtu_consumer_partition_processing */
  RTU_H_PREPARATION, /* rtu_processor_records_preparation (adapter, mapping, fold) */
  RTU_H_STORAGE,     /* rtu_processor_storage (projection reads and writes) */
  RTU_H_PRODUCER,    /* rtu_processor_producer (PC upserts, Kafka outputs) */
  RTU_H_STRATEGY,    /* rtu_strategy_duration_seconds (per run) */
  RTU_H__COUNT
} rtu_hist_t;

/* Unlabelled gauges. */
typedef enum {
  RTU_G_SCRIPT_GENERATION,   /* rtu_script_generation */
  RTU_G_ASSIGNED_PARTITIONS, /* rtu_assigned_partitions */
  RTU_G_WORKERS,             /* rtu_workers */
  RTU_G__COUNT
} rtu_gauge_t;

/* Sets up the registry; call once before any thread starts. */
void rtu_metrics_init(void);
void rtu_metrics_free(void);

void rtu_metrics_add(rtu_counter_t c, const char *label, uint64_t n);
void rtu_metrics_observe(rtu_hist_t h, double seconds);
void rtu_metrics_set(rtu_gauge_t g, double v);

/* rtu_freshness_seconds{projection}: for each of n messages, the time from its
 * Kafka timestamp (ts_ms, epoch ms) to now_ms, when its writes were acknowledged.
 * One lock per call: call it once per run with the run's timestamps. */
void rtu_metrics_freshness(const char *projection, int64_t now_ms, const int64_t *ts_ms, size_t n);

/* rtu_projection_change_freshness_seconds{type}: for each of n projection
 * changes of that type, the time from the Kafka timestamp of the message it
 * names to now_ms, when its write (and its Kafka message) was acknowledged. */
void rtu_metrics_change_freshness(const char *type, int64_t now_ms, const int64_t *ts_ms,
                                  size_t n);

/* Per-partition series: rtu_partition_lag{topic,partition} (from librdkafka's
 * statistics; -1 when unknown) and rtu_partition_paused{topic,partition}. */
void rtu_metrics_partition(const char *topic, int32_t partition, int64_t lag, bool paused);
void rtu_metrics_partition_forget(const char *topic, int32_t partition);

/* Feeds librdkafka's statistics JSON (statistics.interval.ms): per-partition
 * consumer_lag of the consumer's assigned partitions. */
void rtu_metrics_kafka_stats(const char *json, size_t len);

/* The whole text exposition (text/plain; version=0.0.4), malloc'd; NULL on OOM. */
char *rtu_metrics_render(size_t *len);

#endif
