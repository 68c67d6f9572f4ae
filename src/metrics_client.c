/*
 * metrics_client.c: owns the client series of metrics_client.h: the last
 * statistics of each librdkafka client turned into the Java client's metric
 * names, the group's rebalance times, and MongoDB command times by collection.
 * It keeps numbers only: it touches neither Kafka nor MongoDB and decides
 * nothing (health is metrics.c's). One mutex guards it all: statistics come
 * every few seconds, MongoDB commands once per round trip, never per message.
 *
 * Units follow the Java client, whose names these are: latencies in
 * milliseconds, rates per second. librdkafka measures no commit latency of its
 * own: the round trip of the group coordinator's connection (the requests
 * there are commits, heartbeats and joins) stands for it.
 */
#include "metrics_client.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Bounded series whatever the labels: beyond these, no new series. */
#define MAX_TOPICS 256
#define MAX_LAGS 1024
#define MAX_CLIENTS 80
#define MAX_MONGO 256

typedef struct {
  char *topic;
  double consumed, bytes;      /* totals of the client's partitions */
  double rate, byte_rate;      /* per second since the previous statistics */
} ctopic_t;

typedef struct {
  char *topic;
  int32_t partition;
  int64_t lag;
} clag_t;

typedef struct {
  char *name;
  bool producer;
  int64_t ts_us;
  double txmsgs, txbytes, tx, rx;
  double send_rate, byte_rate, req_rate, resp_rate;
  double rtt_sum_us, rtt_cnt, rtt_max_us;       /* brokers of the cluster */
  double coord_sum_us, coord_cnt, coord_max_us; /* the group coordinator */
  ctopic_t *topics;
  size_t ntopics;
  clag_t *lags;
  size_t nlags;
} client_t;

/* Upper bounds, seconds, as metrics.c's. */
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

typedef struct {
  char *collection, *command;
  bool ok;
  uint64_t buckets[NBOUNDS + 1];
  double sum, max;
  uint64_t count;
} mongo_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static client_t *clients[MAX_CLIENTS];
static size_t nclients;
static mongo_t *mongo;
static size_t nmongo, mongo_cap;
static int64_t rebalance_start_us; /* 0: none under way */
static double rebalance_sum_ms, rebalance_max_ms;
static uint64_t rebalance_count;

static void client_free(client_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->ntopics; i++) free(c->topics[i].topic);
  for (size_t i = 0; i < c->nlags; i++) free(c->lags[i].topic);
  free(c->topics);
  free(c->lags);
  free(c->name);
  free(c);
}

void rtu_metrics_client_init(void) {}

void rtu_metrics_client_free(void) {
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < nclients; i++) client_free(clients[i]);
  nclients = 0;
  for (size_t i = 0; i < nmongo; i++) {
    free(mongo[i].collection);
    free(mongo[i].command);
  }
  free(mongo);
  mongo = NULL;
  nmongo = mongo_cap = 0;
  rebalance_start_us = 0;
  rebalance_sum_ms = rebalance_max_ms = 0;
  rebalance_count = 0;
  pthread_mutex_unlock(&mu);
}

static double num(const bson_iter_t *it) {
  return BSON_ITER_HOLDS_NUMBER(it) ? bson_iter_as_double(it) : 0;
}

/* The number at a dotted path below it (a document), 0 when absent. */
static double num_at(const bson_iter_t *it, const char *path) {
  bson_iter_t sub;
  if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) return 0;
  bson_iter_t found;
  return bson_iter_find_descendant(&sub, path, &found) ? num(&found) : 0;
}

static ctopic_t *topic_of(client_t *c, const char *topic) {
  for (size_t i = 0; i < c->ntopics; i++)
    if (!strcmp(c->topics[i].topic, topic)) return &c->topics[i];
  if (c->ntopics >= MAX_TOPICS) return NULL;
  ctopic_t *t = realloc(c->topics, (c->ntopics + 1) * sizeof *t);
  if (!t) return NULL;
  c->topics = t;
  char *name = strdup(topic);
  if (!name) return NULL;
  c->topics[c->ntopics] = (ctopic_t){.topic = name};
  return &c->topics[c->ntopics++];
}

static void add_lag(client_t *c, const char *topic, int32_t partition, int64_t lag) {
  if (c->nlags >= MAX_LAGS) return;
  clag_t *l = realloc(c->lags, (c->nlags + 1) * sizeof *l);
  if (!l) return;
  c->lags = l;
  char *name = strdup(topic);
  if (!name) return;
  c->lags[c->nlags++] = (clag_t){name, partition, lag};
}

/* topics.<t>.partitions.<p>: a consumer's messages, bytes and lag. */
static void read_topics(client_t *c, bson_iter_t *topics) {
  bson_iter_t t;
  if (!BSON_ITER_HOLDS_DOCUMENT(topics) || !bson_iter_recurse(topics, &t)) return;
  while (bson_iter_next(&t)) {
    bson_iter_t parts, p;
    if (!BSON_ITER_HOLDS_DOCUMENT(&t) || !bson_iter_recurse(&t, &parts) ||
        !bson_iter_find(&parts, "partitions") || !BSON_ITER_HOLDS_DOCUMENT(&parts) ||
        !bson_iter_recurse(&parts, &p))
      continue;
    ctopic_t *ct = c->producer ? NULL : topic_of(c, bson_iter_key(&t));
    while (bson_iter_next(&p)) {
      char *end;
      long pn = strtol(bson_iter_key(&p), &end, 10);
      if (*end || pn < 0 || pn > INT32_MAX) continue; /* -1: librdkafka's own */
      if (ct) {
        ct->consumed += num_at(&p, "rxmsgs");
        ct->bytes += num_at(&p, "rxbytes");
      }
      bson_iter_t f;
      if (!c->producer && bson_iter_recurse(&p, &f) && bson_iter_find(&f, "consumer_lag") &&
          num(&f) >= 0)
        add_lag(c, bson_iter_key(&t), (int32_t)pn, (int64_t)num(&f));
    }
  }
}

/* brokers.<b>.rtt: the cluster's brokers and the group coordinator apart. */
static void read_brokers(client_t *c, bson_iter_t *brokers) {
  bson_iter_t b;
  if (!BSON_ITER_HOLDS_DOCUMENT(brokers) || !bson_iter_recurse(brokers, &b)) return;
  while (bson_iter_next(&b)) {
    double cnt = num_at(&b, "rtt.cnt"), avg = num_at(&b, "rtt.avg"), max = num_at(&b, "rtt.max");
    if (cnt <= 0) continue;
    if (!strncmp(bson_iter_key(&b), "GroupCoordinator", 16)) {
      c->coord_sum_us += avg * cnt;
      c->coord_cnt += cnt;
      if (max > c->coord_max_us) c->coord_max_us = max;
    } else if (num_at(&b, "nodeid") >= 0) {
      c->rtt_sum_us += avg * cnt;
      c->rtt_cnt += cnt;
      if (max > c->rtt_max_us) c->rtt_max_us = max;
    }
  }
}

static double per_second(double now, double before, double seconds) {
  return seconds > 0 && now >= before ? (now - before) / seconds : 0;
}

/* Rates of c against the previous statistics of the same client. */
static void rates(client_t *c, const client_t *prev) {
  if (!prev || c->ts_us <= prev->ts_us) return;
  double s = (double)(c->ts_us - prev->ts_us) / 1e6;
  c->send_rate = per_second(c->txmsgs, prev->txmsgs, s);
  c->byte_rate = per_second(c->txbytes, prev->txbytes, s);
  c->req_rate = per_second(c->tx, prev->tx, s);
  c->resp_rate = per_second(c->rx, prev->rx, s);
  for (size_t i = 0; i < c->ntopics; i++)
    for (size_t j = 0; j < prev->ntopics; j++)
      if (!strcmp(c->topics[i].topic, prev->topics[j].topic)) {
        c->topics[i].rate = per_second(c->topics[i].consumed, prev->topics[j].consumed, s);
        c->topics[i].byte_rate = per_second(c->topics[i].bytes, prev->topics[j].bytes, s);
      }
}

void rtu_metrics_client_kafka(const bson_t *stats) {
  bson_iter_t it;
  if (!stats || !bson_iter_init_find(&it, stats, "name") || !BSON_ITER_HOLDS_UTF8(&it)) return;
  client_t *c = calloc(1, sizeof *c);
  if (!c || !(c->name = strdup(bson_iter_utf8(&it, NULL)))) {
    free(c);
    return;
  }
  if (bson_iter_init_find(&it, stats, "type") && BSON_ITER_HOLDS_UTF8(&it))
    c->producer = !strcmp(bson_iter_utf8(&it, NULL), "producer");
  if (bson_iter_init(&it, stats)) {
    while (bson_iter_next(&it)) {
      const char *k = bson_iter_key(&it);
      if (!strcmp(k, "ts")) c->ts_us = (int64_t)num(&it);
      else if (!strcmp(k, "txmsgs")) c->txmsgs = num(&it);
      else if (!strcmp(k, "txmsg_bytes")) c->txbytes = num(&it);
      else if (!strcmp(k, "tx")) c->tx = num(&it);
      else if (!strcmp(k, "rx")) c->rx = num(&it);
      else if (!strcmp(k, "topics")) read_topics(c, &it);
      else if (!strcmp(k, "brokers")) read_brokers(c, &it);
    }
  }
  pthread_mutex_lock(&mu);
  size_t i = 0;
  while (i < nclients && strcmp(clients[i]->name, c->name)) i++;
  if (i < nclients) {
    rates(c, clients[i]);
    client_free(clients[i]);
    clients[i] = c;
  } else if (nclients < MAX_CLIENTS) {
    clients[nclients++] = c;
  } else {
    client_free(c);
  }
  pthread_mutex_unlock(&mu);
}

void rtu_metrics_client_kafka_json(const char *json, size_t len) {
  bson_error_t err;
  bson_t *doc = json ? bson_new_from_json((const uint8_t *)json, (ssize_t)len, &err) : NULL;
  if (!doc) return; /* a statistics line we cannot read: the previous values stay */
  rtu_metrics_client_kafka(doc);
  bson_destroy(doc);
}

void rtu_metrics_client_forget(const char *name) {
  if (!name) return;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < nclients; i++)
    if (!strcmp(clients[i]->name, name)) {
      client_free(clients[i]);
      clients[i] = clients[--nclients];
      break;
    }
  pthread_mutex_unlock(&mu);
}

void rtu_metrics_client_rebalance_begin(void) {
  pthread_mutex_lock(&mu);
  if (!rebalance_start_us) rebalance_start_us = rtu_now_mono_us();
  pthread_mutex_unlock(&mu);
}

void rtu_metrics_client_rebalance_end(void) {
  pthread_mutex_lock(&mu);
  if (rebalance_start_us) {
    double ms = (double)(rtu_now_mono_us() - rebalance_start_us) / 1000.0;
    rebalance_sum_ms += ms;
    if (ms > rebalance_max_ms) rebalance_max_ms = ms;
    rebalance_count++;
    rebalance_start_us = 0;
  }
  pthread_mutex_unlock(&mu);
}

void rtu_metrics_client_mongo(const char *collection, const char *command, bool ok,
                              double seconds) {
  if (!collection) collection = "";
  if (!command) command = "";
  pthread_mutex_lock(&mu);
  mongo_t *m = NULL;
  for (size_t i = 0; i < nmongo && !m; i++)
    if (mongo[i].ok == ok && !strcmp(mongo[i].collection, collection) &&
        !strcmp(mongo[i].command, command))
      m = &mongo[i];
  if (!m && nmongo < MAX_MONGO) {
    if (nmongo == mongo_cap) {
      size_t cap = mongo_cap ? mongo_cap * 2 : 16;
      mongo_t *grown = realloc(mongo, cap * sizeof *grown);
      if (grown) {
        mongo = grown;
        mongo_cap = cap;
      }
    }
    if (nmongo < mongo_cap) {
      char *c = strdup(collection), *cmd = strdup(command);
      if (c && cmd) {
        m = &mongo[nmongo++];
        *m = (mongo_t){.collection = c, .command = cmd, .ok = ok};
      } else {
        free(c);
        free(cmd);
      }
    }
  }
  if (m) {
    size_t b = 0;
    while (b < NBOUNDS && seconds > bounds[b]) b++;
    m->buckets[b]++;
    m->sum += seconds;
    if (seconds > m->max) m->max = seconds;
    m->count++;
  }
  pthread_mutex_unlock(&mu);
}

/* ---- rendering ------------------------------------------------------------ */

/* A label value escaped as format 0.0.4 wants. */
static void label(bson_string_t *out, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') bson_string_append_c(out, '\\');
    if (*s == '\n') bson_string_append(out, "\\n");
    else bson_string_append_c(out, *s);
  }
}

static void header(bson_string_t *out, const char *name, const char *type, const char *help) {
  bson_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(bson_string_t *out, const char *name, double v) {
  bson_string_append_printf(out, "%s %.17g\n", name, v);
}

/* One series per topic of the consumers: the sum over the clients of what
 * field gives. */
static void per_topic(bson_string_t *out, const char *name, const char *type, const char *help,
                      size_t field) {
  header(out, name, type, help);
  for (size_t i = 0; i < nclients; i++) {
    for (size_t t = 0; t < clients[i]->ntopics; t++) {
      const char *topic = clients[i]->topics[t].topic;
      bool seen = false; /* listed already with an earlier client */
      for (size_t j = 0; j < i && !seen; j++)
        for (size_t u = 0; u < clients[j]->ntopics && !seen; u++)
          seen = !strcmp(clients[j]->topics[u].topic, topic);
      if (seen) continue;
      double sum = 0;
      for (size_t j = i; j < nclients; j++)
        for (size_t u = 0; u < clients[j]->ntopics; u++)
          if (!strcmp(clients[j]->topics[u].topic, topic))
            sum += *(const double *)((const char *)&clients[j]->topics[u] + field);
      bson_string_append_printf(out, "%s{topic=\"", name);
      label(out, topic);
      bson_string_append_printf(out, "\"} %.17g\n", sum);
    }
  }
}

static void render_consumer(bson_string_t *out) {
  header(out, "kafka_consumer_fetch_manager_records_lag", "gauge",
         "Messages behind the high watermark, per assigned partition (librdkafka consumer_lag).");
  for (size_t i = 0; i < nclients; i++)
    for (size_t l = 0; l < clients[i]->nlags; l++) {
      bson_string_append(out, "kafka_consumer_fetch_manager_records_lag{topic=\"");
      label(out, clients[i]->lags[l].topic);
      bson_string_append_printf(out, "\",partition=\"%d\"} %" PRId64 "\n",
                                clients[i]->lags[l].partition, clients[i]->lags[l].lag);
    }
  per_topic(out, "kafka_consumer_fetch_manager_records_consumed_total", "counter",
            "Messages fetched, per topic (of the partitions the consumer has now).",
            offsetof(ctopic_t, consumed));
  per_topic(out, "kafka_consumer_fetch_manager_records_consumed_rate", "gauge",
            "Messages fetched per second, per topic.", offsetof(ctopic_t, rate));
  per_topic(out, "kafka_consumer_fetch_manager_bytes_consumed_rate", "gauge",
            "Bytes fetched per second, per topic.", offsetof(ctopic_t, byte_rate));
  double sum = 0, cnt = 0, max = 0, csum = 0, ccnt = 0, cmax = 0;
  for (size_t i = 0; i < nclients; i++) {
    if (clients[i]->producer) continue;
    sum += clients[i]->rtt_sum_us;
    cnt += clients[i]->rtt_cnt;
    if (clients[i]->rtt_max_us > max) max = clients[i]->rtt_max_us;
    csum += clients[i]->coord_sum_us;
    ccnt += clients[i]->coord_cnt;
    if (clients[i]->coord_max_us > cmax) cmax = clients[i]->coord_max_us;
  }
  header(out, "kafka_consumer_fetch_manager_fetch_latency_avg", "gauge",
         "Average broker round trip of the consumer's requests (fetches), ms.");
  value(out, "kafka_consumer_fetch_manager_fetch_latency_avg", cnt ? sum / cnt / 1000 : 0);
  header(out, "kafka_consumer_fetch_manager_fetch_latency_max", "gauge",
         "Longest broker round trip of the consumer's requests (fetches), ms.");
  value(out, "kafka_consumer_fetch_manager_fetch_latency_max", max / 1000);
  header(out, "kafka_consumer_coordinator_commit_latency_avg", "gauge",
         "Average round trip to the group coordinator (commits, heartbeats), ms.");
  value(out, "kafka_consumer_coordinator_commit_latency_avg", ccnt ? csum / ccnt / 1000 : 0);
  header(out, "kafka_consumer_coordinator_commit_latency_max", "gauge",
         "Longest round trip to the group coordinator (commits, heartbeats), ms.");
  value(out, "kafka_consumer_coordinator_commit_latency_max", cmax / 1000);
  header(out, "kafka_consumer_coordinator_rebalance_latency_avg", "gauge",
         "Average time from a rebalance's start to the partitions' assignment, ms.");
  value(out, "kafka_consumer_coordinator_rebalance_latency_avg",
        rebalance_count ? rebalance_sum_ms / (double)rebalance_count : 0);
  header(out, "kafka_consumer_coordinator_rebalance_latency_max", "gauge",
         "Longest time from a rebalance's start to the partitions' assignment, ms.");
  value(out, "kafka_consumer_coordinator_rebalance_latency_max", rebalance_max_ms);
  header(out, "kafka_consumer_coordinator_rebalance_total", "counter", "Rebalances completed.");
  value(out, "kafka_consumer_coordinator_rebalance_total", (double)rebalance_count);
}

static void render_producer(bson_string_t *out) {
  double send = 0, total = 0, bytes = 0, req = 0, resp = 0, sum = 0, cnt = 0, max = 0;
  for (size_t i = 0; i < nclients; i++) {
    const client_t *c = clients[i];
    if (!c->producer) continue;
    send += c->send_rate;
    total += c->txmsgs;
    bytes += c->byte_rate;
    req += c->req_rate;
    resp += c->resp_rate;
    sum += c->rtt_sum_us;
    cnt += c->rtt_cnt;
    if (c->rtt_max_us > max) max = c->rtt_max_us;
  }
  static const char *help[][3] = {
      {"kafka_producer_record_send_rate", "gauge", "Messages sent per second."},
      {"kafka_producer_record_send_total", "counter", "Messages sent."},
      {"kafka_producer_outgoing_byte_rate", "gauge", "Message bytes sent per second."},
      {"kafka_producer_request_rate", "gauge", "Requests sent to the brokers per second."},
      {"kafka_producer_response_rate", "gauge", "Responses from the brokers per second."},
      {"kafka_producer_request_latency_avg", "gauge", "Average broker round trip, ms."},
      {"kafka_producer_request_latency_max", "gauge", "Longest broker round trip, ms."},
  };
  double v[] = {send, total, bytes, req, resp, cnt ? sum / cnt / 1000 : 0, max / 1000};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    header(out, help[i][0], help[i][1], help[i][2]);
    value(out, help[i][0], v[i]);
  }
}

static void render_mongo(bson_string_t *out) {
  static const char *name = "mongodb_driver_commands_seconds";
  header(out, name, "histogram", "MongoDB commands, by collection, command and outcome.");
  for (size_t i = 0; i < nmongo; i++) {
    const mongo_t *m = &mongo[i];
    bson_string_t *labels = bson_string_new("collection=\"");
    label(labels, m->collection);
    bson_string_append(labels, "\",command=\"");
    label(labels, m->command);
    bson_string_append_printf(labels, "\",status=\"%s\"", m->ok ? "SUCCESS" : "FAILED");
    uint64_t cum = 0;
    for (size_t b = 0; b <= NBOUNDS; b++) {
      cum += m->buckets[b];
      if (b < NBOUNDS)
        bson_string_append_printf(out, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, labels->str,
                                  bounds[b], cum);
      else
        bson_string_append_printf(out, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name,
                                  labels->str, cum);
    }
    bson_string_append_printf(out, "%s_sum{%s} %.17g\n%s_count{%s} %" PRIu64 "\n", name,
                              labels->str, m->sum, name, labels->str, m->count);
    bson_string_free(labels, true);
  }
  header(out, "mongodb_driver_commands_seconds_max", "gauge",
         "Longest MongoDB command, by collection, command and outcome.");
  for (size_t i = 0; i < nmongo; i++) {
    bson_string_append(out, "mongodb_driver_commands_seconds_max{collection=\"");
    label(out, mongo[i].collection);
    bson_string_append(out, "\",command=\"");
    label(out, mongo[i].command);
    bson_string_append_printf(out, "\",status=\"%s\"} %.17g\n", mongo[i].ok ? "SUCCESS" : "FAILED",
                              mongo[i].max);
  }
}

void rtu_metrics_client_render(bson_string_t *out) {
  pthread_mutex_lock(&mu);
  render_consumer(out);
  render_producer(out);
  render_mongo(out);
  pthread_mutex_unlock(&mu);
}
