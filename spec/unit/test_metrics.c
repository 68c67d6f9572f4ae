/*
 * test_metrics.c: the metrics registry and the health state (src/metrics.c,
 * src/health.c): the Prometheus text is well formed (HELP/TYPE, escaped label
 * values, cumulative buckets), counters stay exact under concurrent increments,
 * librdkafka's statistics feed the lag series and the Kafka dependency, and the
 * check-up body is valid JSON naming stopped partitions.
 */
#define _GNU_SOURCE
#include <bson/bson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "health.h"
#include "metrics.h"
#include "metrics_client.h"

static char *render(void) {
  size_t len = 0;
  char *text = rtu_metrics_render(&len);
  CHECK(text != NULL);
  if (text) CHECK_EQ(strlen(text), len);
  return text;
}

/* A whole line of the exposition. */
static bool has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0')) return true;
  return false;
}

#define CHECK_LINE(text, line) CHECK(has_line(text, line), "missing line: %s", line)
#define CHECK_NO_LINE(text, line) CHECK(!has_line(text, line), "unexpected line: %s", line)

static void test_format(void) {
  rtu_metrics_add(RTU_C_APPLIED, "orders", 3);
  rtu_metrics_add(RTU_C_APPLIED, "orders", 2);
  rtu_metrics_add(RTU_C_APPLIED, "items", 1);
  rtu_metrics_add(RTU_C_STRATEGY_LOOKUPS, NULL, 7);
  rtu_metrics_add(RTU_C_STRATEGY_LOOKUPS, "ignored", 1); /* unlabelled: label ignored */
  rtu_metrics_add(RTU_C_MONGO_COMMANDS, "find", 4);
  rtu_metrics_set(RTU_G_WORKERS, 4);
  rtu_metrics_set(RTU_G_SCRIPT_GENERATION, 1.5);
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "# HELP rtu_messages_applied_total Messages applied to the projections.");
  CHECK_LINE(t, "# TYPE rtu_messages_applied_total counter");
  CHECK_LINE(t, "rtu_messages_applied_total{topic=\"orders\"} 5");
  CHECK_LINE(t, "rtu_messages_applied_total{topic=\"items\"} 1");
  CHECK_LINE(t, "rtu_strategy_lookups_total 8");
  CHECK_LINE(t, "rtu_strategy_timeouts_total 0");
  CHECK_LINE(t, "rtu_mongodb_commands_total{command=\"find\"} 4");
  CHECK_LINE(t, "# TYPE rtu_workers gauge");
  CHECK_LINE(t, "rtu_workers 4");
  CHECK_LINE(t, "rtu_script_generation 1.5");
  static const char *hists[] = {"rtu_consumer_batch_processing", "rtu_consumer_partition_processing",
                                "rtu_processor_records_preparation", "rtu_processor_storage",
                                "rtu_processor_producer", "rtu_strategy_duration_seconds"};
  for (size_t i = 0; i < sizeof hists / sizeof hists[0]; i++) {
    char line[200];
    snprintf(line, sizeof line, "# TYPE %s histogram", hists[i]);
    CHECK_LINE(t, line);
    snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} 0", hists[i]);
    CHECK_LINE(t, line);
  }
  /* Every line is a comment or "name[{labels}] value", and ends with \n. */
  CHECK(t[strlen(t) - 1] == '\n');
  for (char *p = t; *p;) {
    char *nl = strchr(p, '\n');
    CHECK(nl != NULL);
    if (!nl) break;
    /* rtu's own series, and the clients' under the Java client's and
     * Micrometer's names (metrics_client.c) */
    CHECK(*p == '#' || !strncmp(p, "rtu_", 4) || !strncmp(p, "kafka_consumer_", 15) ||
              !strncmp(p, "kafka_producer_", 15) || !strncmp(p, "mongodb_driver_", 15),
          "bad line start: %.40s", p);
    CHECK(nl > p, "empty line");
    p = nl + 1;
  }
  free(t);
}

static void test_escaping(void) {
  rtu_metrics_add(RTU_C_CONSUMED, "a\"b\\c\nd", 1);
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "rtu_messages_consumed_total{topic=\"a\\\"b\\\\c\\nd\"} 1");
  free(t);
}

static void test_histogram(void) {
  rtu_metrics_observe(RTU_H_STORAGE, 0.0003);
  rtu_metrics_observe(RTU_H_STORAGE, 0.0005); /* on the bound: le is inclusive */
  rtu_metrics_observe(RTU_H_STORAGE, 0.003);
  rtu_metrics_observe(RTU_H_STORAGE, 0.75);
  rtu_metrics_observe(RTU_H_STORAGE, 20);
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"0.0005\"} 2");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"0.001\"} 2");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"0.0025\"} 2");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"0.005\"} 3");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"0.5\"} 3");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"1\"} 4");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"10\"} 4");
  CHECK_LINE(t, "rtu_processor_storage_bucket{le=\"+Inf\"} 5");
  CHECK_LINE(t, "rtu_processor_storage_count 5");
  const char *sum = strstr(t, "\nrtu_processor_storage_sum ");
  CHECK(sum != NULL);
  if (sum) {
    double v = strtod(sum + strlen("\nrtu_processor_storage_sum "), NULL);
    CHECK(v > 20.7537 && v < 20.7539, "sum %.17g", v);
  }
  free(t);
}

/* rtu_freshness_seconds{projection}: one histogram per projection, from the
 * messages' Kafka timestamps to the given now, a timestamp ahead of now as 0. */
static void test_freshness(void) {
  const int64_t now = 1700000100000;
  const int64_t items[] = {now - 3, now - 10, now - 40, now - 700, now - 4000000, now + 50};
  const int64_t orders[] = {now - 20};
  rtu_metrics_freshness("items", now, items, sizeof items / sizeof items[0]);
  rtu_metrics_freshness("ord\"ers", now, orders, 1);
  rtu_metrics_freshness("items", now, items, 0);
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "# TYPE rtu_freshness_seconds histogram");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"0.005\"} 2");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"0.01\"} 3");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"0.05\"} 4");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"1\"} 5");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"1800\"} 5");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"items\",le=\"+Inf\"} 6");
  CHECK_LINE(t, "rtu_freshness_seconds_count{projection=\"items\"} 6");
  CHECK_LINE(t, "rtu_freshness_seconds_sum{projection=\"items\"} 4000.7530000000002");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"ord\\\"ers\",le=\"0.025\"} 1");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"ord\\\"ers\",le=\"0.01\"} 0");
  CHECK_LINE(t, "rtu_freshness_seconds_count{projection=\"ord\\\"ers\"} 1");
  free(t);
}

/* Buckets fine enough to read a p99 of tens of milliseconds (10 ms steps to
 * 50 ms), and rtu_projection_change_freshness_seconds{type} beside
 * rtu_freshness_seconds, with its own label. */
static void test_freshness_fine_and_changes(void) {
  const int64_t now = 1700000200000;
  const int64_t writes[] = {now - 1, now - 2, now - 15, now - 29, now - 35, now - 45, now - 60};
  const int64_t changes[] = {now - 12, now - 48, now - 90};
  rtu_metrics_freshness("fine", now, writes, sizeof writes / sizeof writes[0]);
  rtu_metrics_change_freshness("sv_items", now, changes, sizeof changes / sizeof changes[0]);
  rtu_metrics_change_freshness("sv_items", now, changes, 1);
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.001\"} 1");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.0025\"} 2");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.02\"} 3");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.03\"} 4");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.04\"} 5");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.05\"} 6");
  CHECK_LINE(t, "rtu_freshness_seconds_bucket{projection=\"fine\",le=\"0.075\"} 7");
  CHECK_LINE(t, "# TYPE rtu_projection_change_freshness_seconds histogram");
  CHECK_LINE(t, "rtu_projection_change_freshness_seconds_bucket{type=\"sv_items\",le=\"0.02\"} 2");
  CHECK_LINE(t, "rtu_projection_change_freshness_seconds_bucket{type=\"sv_items\",le=\"0.05\"} 3");
  CHECK_LINE(t, "rtu_projection_change_freshness_seconds_bucket{type=\"sv_items\",le=\"0.1\"} 4");
  CHECK_LINE(t, "rtu_projection_change_freshness_seconds_count{type=\"sv_items\"} 4");
  free(t);
}

#define THREADS 4
#define ROUNDS 20000

static void *hammer(void *arg) {
  const char *label = arg;
  for (int i = 0; i < ROUNDS; i++) {
    rtu_metrics_add(RTU_C_WRITES, "shared", 1);
    rtu_metrics_add(RTU_C_WRITES, label, 2);
    rtu_metrics_add(RTU_C_STRATEGY_ERRORS, NULL, 1);
    rtu_metrics_observe(RTU_H_PRODUCER, 0.001);
  }
  return NULL;
}

static void test_concurrency(void) {
  pthread_t th[THREADS];
  static const char *labels[THREADS] = {"t0", "t1", "t2", "t3"};
  for (int i = 0; i < THREADS; i++)
    CHECK_EQ(pthread_create(&th[i], NULL, hammer, (void *)labels[i]), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  char *t = render();
  if (!t) return;
  char line[128];
  snprintf(line, sizeof line, "rtu_projection_writes_total{topic=\"shared\"} %d", THREADS * ROUNDS);
  CHECK_LINE(t, line);
  for (int i = 0; i < THREADS; i++) {
    snprintf(line, sizeof line, "rtu_projection_writes_total{topic=\"%s\"} %d", labels[i],
             2 * ROUNDS);
    CHECK_LINE(t, line);
  }
  snprintf(line, sizeof line, "rtu_strategy_errors_total %d", THREADS * ROUNDS);
  CHECK_LINE(t, line);
  snprintf(line, sizeof line, "rtu_processor_producer_count %d", THREADS * ROUNDS);
  CHECK_LINE(t, line);
  snprintf(line, sizeof line, "rtu_processor_producer_bucket{le=\"0.001\"} %d", THREADS * ROUNDS);
  CHECK_LINE(t, line);
  free(t);
}

/* An abridged librdkafka statistics object (the fields rtu reads, plus noise). */
static const char *STATS1 =
    "{\"name\":\"rtu#consumer-1\",\"type\":\"consumer\",\"ts\":123,"
    "\"brokers\":{\"127.0.0.1:9092/bootstrap\":{\"name\":\"x\",\"nodeid\":-1,\"state\":\"UP\"},"
    "\"127.0.0.1:9092/1\":{\"name\":\"y\",\"nodeid\":1,\"state\":\"DOWN\",\"rtt\":{\"avg\":1.5}}},"
    "\"topics\":{\"orders\":{\"topic\":\"orders\",\"partitions\":{"
    "\"0\":{\"partition\":0,\"consumer_lag\":5,\"hi_offset\":10},"
    "\"1\":{\"partition\":1,\"consumer_lag\":-1},"
    "\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
    "\"items\":{\"topic\":\"items\",\"partitions\":{\"2\":{\"partition\":2,\"consumer_lag\":0}}}}}";

static const char *STATS2 =
    "{\"brokers\":{\"127.0.0.1:9092/1\":{\"nodeid\":1,\"state\":\"UP\"}},"
    "\"topics\":{\"orders\":{\"partitions\":{"
    "\"0\":{\"consumer_lag\":-1},\"1\":{\"consumer_lag\":7}}}}}";

static void test_kafka_stats(void) {
  rtu_health_init();
  rtu_metrics_kafka_stats(STATS1, strlen(STATS1));
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "# TYPE rtu_partition_lag gauge");
  CHECK_LINE(t, "rtu_partition_lag{topic=\"orders\",partition=\"0\"} 5");
  CHECK_LINE(t, "rtu_partition_lag{topic=\"items\",partition=\"2\"} 0");
  CHECK(!strstr(t, "partition=\"1\""), "unknown partition got a series");
  CHECK(!strstr(t, "partition=\"-1\""), "internal partition got a series");
  free(t);
  bool ok = true;
  char *j = rtu_health_checkup_json(NULL, &ok);
  CHECK(j && strstr(j, "\"kafka\":{\"status\":\"KO\""), "%s", j ? j : "");
  free(j);

  /* The consumer reports a paused partition without knowing its lag. */
  rtu_metrics_partition("orders", 1, -1, true);
  rtu_metrics_kafka_stats(STATS2, strlen(STATS2));
  rtu_metrics_kafka_stats("not json", 8); /* ignored */
  t = render();
  if (!t) return;
  CHECK_LINE(t, "rtu_partition_lag{topic=\"orders\",partition=\"0\"} -1");
  CHECK_LINE(t, "rtu_partition_lag{topic=\"orders\",partition=\"1\"} 7");
  CHECK_LINE(t, "rtu_partition_paused{topic=\"orders\",partition=\"1\"} 1");
  CHECK_LINE(t, "rtu_partition_paused{topic=\"orders\",partition=\"0\"} 0");
  free(t);
  j = rtu_health_checkup_json(NULL, &ok);
  CHECK(j && strstr(j, "\"kafka\":{\"status\":\"OK\"}"), "%s", j ? j : "");
  free(j);

  rtu_metrics_partition("orders", 1, -1, false); /* resumed: the lag stays */
  rtu_metrics_partition_forget("items", 2);
  t = render();
  if (!t) return;
  CHECK_LINE(t, "rtu_partition_lag{topic=\"orders\",partition=\"1\"} 7");
  CHECK_LINE(t, "rtu_partition_paused{topic=\"orders\",partition=\"1\"} 0");
  CHECK(!strstr(t, "rtu_partition_lag{topic=\"items\",partition"), "forgotten partition still shown");
  CHECK(!strstr(t, "rtu_partition_paused{topic=\"items\",partition"), "forgotten partition still shown");
  free(t);
  rtu_health_free();
}

static bool valid_json(const char *s) {
  bson_error_t err;
  bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &err);
  if (!b) fprintf(stderr, "invalid JSON (%s): %s\n", err.message, s);
  bson_destroy(b);
  return b != NULL;
}

static void test_checkup(void) {
  rtu_health_init();
  CHECK(rtu_health_alive(30000));
  CHECK(!rtu_health_ready()); /* not joined, MongoDB and scripts not seen yet */
  bool ok = true;
  size_t len = 0;
  char *j = rtu_health_checkup_json(&len, &ok);
  CHECK(j != NULL);
  if (!j) return;
  CHECK(!ok);
  CHECK_EQ(strlen(j), len);
  CHECK(valid_json(j));
  CHECK(!strncmp(j, "{\"status\":\"KO\",\"name\":\"rtu\",\"version\":\"" RTU_VERSION "\"", 40 + strlen(RTU_VERSION)),
        "%s", j);
  CHECK(strstr(j, "\"mongodb\":{\"status\":\"KO\",\"detail\":\"not reached yet\"}"), "%s", j);
  CHECK(strstr(j, "\"stoppedPartitions\":[]"), "%s", j);
  free(j);

  rtu_health_joined(true);
  rtu_health_dependency(RTU_DEP_MONGODB, true, NULL);
  rtu_health_dependency(RTU_DEP_SCRIPTS, true, NULL);
  CHECK(rtu_health_ready());
  rtu_health_partition_stopped("orders", 3, 42, "invalid JSON: \"oops\"\nat \\ byte \x01 \xff");
  rtu_health_partition_stopped("items", 0, 7, "first cause");
  rtu_health_partition_stopped("items", 0, 9, "second cause"); /* replaces */
  CHECK(rtu_health_ready()); /* a stopped partition does not make the instance unready */
  j = rtu_health_checkup_json(&len, &ok);
  if (!j) return;
  CHECK(ok);
  CHECK(valid_json(j));
  CHECK(!strncmp(j, "{\"status\":\"OK\"", 14), "%s", j);
  CHECK(strstr(j, "{\"topic\":\"orders\",\"partition\":3,\"offset\":42,\"cause\":"
                  "\"invalid JSON: \\\"oops\\\"\\nat \\\\ byte \\u0001 \\u00ff\"}"),
        "%s", j);
  CHECK(strstr(j, "{\"topic\":\"items\",\"partition\":0,\"offset\":9,\"cause\":\"second cause\"}"),
        "%s", j);
  CHECK(!strstr(j, "first cause"), "%s", j);
  free(j);

  rtu_health_partition_resumed("orders", 3);
  rtu_health_dependency(RTU_DEP_MONGODB, false, "MongoDB find: connection refused");
  CHECK(!rtu_health_ready());
  j = rtu_health_checkup_json(&len, &ok);
  if (!j) return;
  CHECK(!ok);
  CHECK(!strstr(j, "\"orders\""), "%s", j);
  CHECK(strstr(j, "\"mongodb\":{\"status\":\"KO\",\"detail\":\"MongoDB find: connection refused\"}"),
        "%s", j);
  free(j);

  rtu_health_heartbeat();
  CHECK(rtu_health_alive(1000));
  CHECK(!rtu_health_alive(-1));
  rtu_health_free();
}

/* The Java client's names from librdkafka's statistics: a consumer's two
 * documents one second apart give totals, rates and latencies in ms. */
static const char *CONS1 =
    "{\"name\":\"rtu#consumer-9\",\"type\":\"consumer\",\"ts\":1000000,"
    "\"brokers\":{\"b:9092/1\":{\"nodeid\":1,\"state\":\"UP\",\"rtt\":{\"avg\":2000,\"max\":9000,\"cnt\":3}},"
    "\"GroupCoordinator\":{\"nodeid\":-1,\"rtt\":{\"avg\":4000,\"max\":5000,\"cnt\":2}}},"
    "\"topics\":{\"orders\":{\"partitions\":{\"0\":{\"consumer_lag\":5,\"rxmsgs\":100,\"rxbytes\":1000},"
    "\"1\":{\"consumer_lag\":-1,\"rxmsgs\":20,\"rxbytes\":200},\"-1\":{\"rxmsgs\":0}}}}}";
static const char *CONS2 =
    "{\"name\":\"rtu#consumer-9\",\"type\":\"consumer\",\"ts\":3000000,"
    "\"brokers\":{\"b:9092/1\":{\"nodeid\":1,\"state\":\"UP\",\"rtt\":{\"avg\":1000,\"max\":3000,\"cnt\":1}},"
    "\"b:9092/2\":{\"nodeid\":2,\"state\":\"UP\",\"rtt\":{\"avg\":4000,\"max\":6000,\"cnt\":1}}},"
    "\"topics\":{\"orders\":{\"partitions\":{\"0\":{\"consumer_lag\":0,\"rxmsgs\":160,\"rxbytes\":1600},"
    "\"1\":{\"consumer_lag\":2,\"rxmsgs\":40,\"rxbytes\":400}}}}}";
static const char *PROD =
    "{\"name\":\"rtu#producer-2\",\"type\":\"producer\",\"ts\":%d,\"txmsgs\":%d,\"txmsg_bytes\":%d,"
    "\"tx\":%d,\"rx\":%d,\"brokers\":{\"b:9092/1\":{\"nodeid\":1,\"rtt\":{\"avg\":3000,\"max\":7000,\"cnt\":4}}},"
    "\"topics\":{\"pr\":{\"partitions\":{\"0\":{\"txmsgs\":1}}}}}";

static void test_client_series(void) {
  rtu_health_init();
  rtu_metrics_kafka_stats(CONS1, strlen(CONS1));
  char *t = render();
  if (!t) return;
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_lag{topic=\"orders\",partition=\"0\"} 5");
  CHECK(!strstr(t, "records_lag{topic=\"orders\",partition=\"1\"}"), "unknown lag shown");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_consumed_total{topic=\"orders\"} 120");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_consumed_rate{topic=\"orders\"} 0");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_fetch_latency_avg 2");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_fetch_latency_max 9");
  CHECK_LINE(t, "kafka_consumer_coordinator_commit_latency_avg 4");
  CHECK_LINE(t, "kafka_consumer_coordinator_commit_latency_max 5");
  CHECK_LINE(t, "# TYPE kafka_consumer_fetch_manager_records_consumed_total counter");
  free(t);
  rtu_metrics_kafka_stats(CONS2, strlen(CONS2));
  t = render();
  if (!t) return;
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_lag{topic=\"orders\",partition=\"1\"} 2");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_consumed_total{topic=\"orders\"} 200");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_records_consumed_rate{topic=\"orders\"} 40");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_bytes_consumed_rate{topic=\"orders\"} 400");
  CHECK_LINE(t, "kafka_consumer_fetch_manager_fetch_latency_avg 2.5"); /* two round trips */
  CHECK_LINE(t, "kafka_consumer_fetch_manager_fetch_latency_max 6");
  free(t);

  char doc[1024];
  snprintf(doc, sizeof doc, PROD, 1000000, 10, 1000, 5, 4);
  rtu_metrics_client_kafka_json(doc, strlen(doc));
  snprintf(doc, sizeof doc, PROD, 1500000, 60, 6000, 15, 14);
  rtu_metrics_client_kafka_json(doc, strlen(doc));
  t = render();
  if (!t) return;
  CHECK_LINE(t, "kafka_producer_record_send_total 60");
  CHECK_LINE(t, "kafka_producer_record_send_rate 100");
  CHECK_LINE(t, "kafka_producer_outgoing_byte_rate 10000");
  CHECK_LINE(t, "kafka_producer_request_rate 20");
  CHECK_LINE(t, "kafka_producer_response_rate 20");
  CHECK_LINE(t, "kafka_producer_request_latency_avg 3");
  CHECK_LINE(t, "kafka_producer_request_latency_max 7");
  CHECK(!strstr(t, "topic=\"pr\""), "a producer's topic among the consumer's");
  free(t);
  rtu_metrics_client_forget("rtu#producer-2");
  t = render();
  if (t) CHECK_LINE(t, "kafka_producer_record_send_total 0");
  free(t);

  rtu_metrics_client_rebalance_begin();
  usleep(20000);
  rtu_metrics_client_rebalance_end();
  rtu_metrics_client_rebalance_end(); /* no rebalance under way: nothing */
  rtu_metrics_client_mongo("pr_orders", "update", true, 0.003);
  rtu_metrics_client_mongo("pr_orders", "update", true, 0.2);
  rtu_metrics_client_mongo("pr_orders", "find", false, 0.001);
  t = render();
  if (!t) return;
  CHECK_LINE(t, "kafka_consumer_coordinator_rebalance_total 1");
  CHECK(strstr(t, "\nkafka_consumer_coordinator_rebalance_latency_max 2") ||
            strstr(t, "\nkafka_consumer_coordinator_rebalance_latency_max 3"),
        "a rebalance of 20 ms");
  CHECK_LINE(t, "# TYPE mongodb_driver_commands_seconds histogram");
  CHECK_LINE(t, "mongodb_driver_commands_seconds_count{collection=\"pr_orders\",command=\"update\","
                "status=\"SUCCESS\"} 2");
  CHECK_LINE(t, "mongodb_driver_commands_seconds_bucket{collection=\"pr_orders\",command=\"update\","
                "status=\"SUCCESS\",le=\"0.005\"} 1");
  CHECK_LINE(t, "mongodb_driver_commands_seconds_bucket{collection=\"pr_orders\",command=\"update\","
                "status=\"SUCCESS\",le=\"+Inf\"} 2");
  CHECK_LINE(t, "mongodb_driver_commands_seconds_sum{collection=\"pr_orders\",command=\"update\","
                "status=\"SUCCESS\"} 0.20300000000000001");
  CHECK_LINE(t, "mongodb_driver_commands_seconds_count{collection=\"pr_orders\",command=\"find\","
                "status=\"FAILED\"} 1");
  free(t);
  rtu_health_free();
}

int main(void) {
  rtu_metrics_init();
  test_format();
  test_escaping();
  test_histogram();
  test_freshness();
  test_freshness_fine_and_changes();
  test_concurrency();
  test_kafka_stats();
  test_checkup();
  test_client_series();
  rtu_metrics_free();
  return CHECK_DONE();
}
