/*
 * consumer.c: owns the librdkafka consumer: group membership, rebalances, the
 * batch poll, pause/resume, and offsets. Offsets are stored by hand
 * (enable.auto.offset.store=false) only up to what a run applied, and committed
 * after every batch, so a crash at any point redelivers, never skips. It does not
 * decode messages: batch.c and script.c do.
 */
#include "consumer.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "health.h"
#include "log.h"
#include "metrics.h"

/* A partition stopped at a message that cannot be applied. */
typedef struct stopped_s {
  char *topic;
  int32_t partition;
  int64_t offset;
  char cause[RTU_ERRSTR_SIZE];
  struct stopped_s *next;
} stopped_t;

struct rtu_consumer_s {
  const rtu_config_t *cfg;
  rd_kafka_t *rk;
  rd_kafka_queue_t *queue;
  stopped_t *stopped;
  rd_kafka_message_t **msgs;
  rtu_msg_t *views;
  size_t msgs_cap;
};

static bool set_conf(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                     size_t sz) {
  if (rd_kafka_conf_set(conf, k, v, errstr, sz) != RD_KAFKA_CONF_OK) return false;
  return true;
}

static stopped_t *find_stopped(rtu_consumer_t *c, const char *topic, int32_t partition) {
  for (stopped_t *s = c->stopped; s; s = s->next)
    if (s->partition == partition && !strcmp(s->topic, topic)) return s;
  return NULL;
}

static void forget_stopped(rtu_consumer_t *c, const char *topic, int32_t partition) {
  for (stopped_t **pp = &c->stopped; *pp; pp = &(*pp)->next) {
    if ((*pp)->partition == partition && !strcmp((*pp)->topic, topic)) {
      stopped_t *s = *pp;
      *pp = s->next;
      rtu_health_partition_resumed(topic, partition);
      rtu_metrics_partition_forget(topic, partition);
      free(s->topic);
      free(s);
      return;
    }
  }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  rtu_consumer_t *c = opaque;
  char list[1024];
  size_t len = 0;
  list[0] = '\0';
  for (int i = 0; i < parts->cnt && len < sizeof list - 64; i++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s[%d]", i ? "," : "",
                            parts->elems[i].topic, parts->elems[i].partition);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    rtu_log(RTU_LOG_INFO, "partitions assigned", "partitions", list, NULL);
    rtu_health_joined(true);
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    if (e) rtu_log(RTU_LOG_ERROR, "assign failed", "cause", rd_kafka_err2str(e), NULL);
    return;
  }
  rtu_log(RTU_LOG_INFO, "partitions revoked", "partitions", list, NULL);
  /* Commit what was applied before the partitions go to another member. */
  rd_kafka_resp_err_t e = rd_kafka_commit(rk, NULL, 0);
  if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "commit on revoke failed; the new owner may redeliver",
            "cause", rd_kafka_err2str(e), NULL);
  for (int i = 0; i < parts->cnt; i++) forget_stopped(c, parts->elems[i].topic, parts->elems[i].partition);
  e = rd_kafka_assign(rk, NULL);
  if (e) rtu_log(RTU_LOG_ERROR, "unassign failed", "cause", rd_kafka_err2str(e), NULL);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  rtu_log(level <= 3 ? RTU_LOG_ERROR : level <= 4 ? RTU_LOG_WARN : RTU_LOG_DEBUG, buf,
          "source", "librdkafka", "facility", fac, NULL);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
  (void)rk;
  (void)opaque;
  rtu_metrics_kafka_stats(json, json_len);
  return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  (void)opaque;
  rtu_log(err == RD_KAFKA_RESP_ERR__FATAL ? RTU_LOG_FATAL : RTU_LOG_WARN, "kafka error",
          "cause", reason, "code", rd_kafka_err2name((rd_kafka_resp_err_t)err), NULL);
}

bool rtu_kafka_conf_common(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                           size_t errstr_size) {
  char num[32];
  if (!set_conf(conf, "bootstrap.servers", cfg->kafka_brokers, errstr, errstr_size))
    return false;
  snprintf(num, sizeof num, "%d", cfg->kafka_connection_timeout_ms);
  if (!set_conf(conf, "socket.connection.setup.timeout.ms", num, errstr, errstr_size))
    return false;
  if (cfg->kafka_sasl_username && cfg->kafka_sasl_password) {
    const char *mech = cfg->kafka_sasl_mechanism;
    const char *m = !strcasecmp(mech, "scram-sha-256")   ? "SCRAM-SHA-256"
                    : !strcasecmp(mech, "scram-sha-512") ? "SCRAM-SHA-512"
                    : !strcasecmp(mech, "oauthbearer")   ? "OAUTHBEARER"
                                                         : "PLAIN";
    if (!set_conf(conf, "security.protocol", cfg->ca_cert_path ? "SASL_SSL" : "SASL_PLAINTEXT",
                  errstr, errstr_size) ||
        !set_conf(conf, "sasl.mechanism", m, errstr, errstr_size) ||
        !set_conf(conf, "sasl.username", cfg->kafka_sasl_username, errstr, errstr_size) ||
        !set_conf(conf, "sasl.password", cfg->kafka_sasl_password, errstr, errstr_size))
      return false;
  } else if (cfg->ca_cert_path) {
    if (!set_conf(conf, "security.protocol", "SSL", errstr, errstr_size)) return false;
  }
  if (cfg->ca_cert_path && !set_conf(conf, "ssl.ca.location", cfg->ca_cert_path, errstr, errstr_size))
    return false;
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  return true;
}

rtu_consumer_t *rtu_consumer_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  rtu_consumer_t *c = calloc(1, sizeof *c);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char num[32];
  if (!c || !conf) goto fail;
  c->cfg = cfg;
  if (!rtu_kafka_conf_common(cfg, conf, errstr, errstr_size) ||
      !set_conf(conf, "group.id", cfg->kafka_group_id, errstr, errstr_size) ||
      !set_conf(conf, "client.id", "rtu", errstr, errstr_size) ||
      !set_conf(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
      !set_conf(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
      !set_conf(conf, "auto.offset.reset", cfg->kafka_latest ? "latest" : "earliest", errstr,
                errstr_size) ||
      !set_conf(conf, "enable.partition.eof", "false", errstr, errstr_size))
    goto fail;
  snprintf(num, sizeof num, "%d", cfg->kafka_session_timeout_ms);
  if (!set_conf(conf, "session.timeout.ms", num, errstr, errstr_size)) goto fail;
  snprintf(num, sizeof num, "%d", cfg->kafka_heartbeat_interval_ms);
  if (!set_conf(conf, "heartbeat.interval.ms", num, errstr, errstr_size)) goto fail;
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  /* Per-partition consumer lag for /-/metrics, and whether any broker is up. */
  if (!set_conf(conf, "statistics.interval.ms", "5000", errstr, errstr_size)) goto fail;
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_opaque(conf, c);

  c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
  if (!c->rk) goto fail;
  conf = NULL; /* owned by rk now */
  rd_kafka_poll_set_consumer(c->rk);
  c->queue = rd_kafka_queue_get_consumer(c->rk);

  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)cfg->ntopics);
  for (size_t i = 0; i < cfg->ntopics; i++)
    rd_kafka_topic_partition_list_add(topics, cfg->topics[i].topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) {
    snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(err));
    goto fail;
  }
  c->msgs_cap = (size_t)cfg->kafka_max_batch;
  c->msgs = calloc(c->msgs_cap, sizeof *c->msgs);
  c->views = calloc(c->msgs_cap, sizeof *c->views);
  if (!c->msgs || !c->views) goto fail;
  return c;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  rtu_consumer_free(c);
  return NULL;
}

void rtu_consumer_free(rtu_consumer_t *c) {
  if (!c) return;
  while (c->stopped) {
    stopped_t *s = c->stopped;
    c->stopped = s->next;
    free(s->topic);
    free(s);
  }
  if (c->queue) rd_kafka_queue_destroy(c->queue);
  if (c->rk) rd_kafka_destroy(c->rk);
  free(c->msgs);
  free(c->views);
  free(c);
}

static void store_offset(rtu_consumer_t *c, rd_kafka_message_t *msg, int64_t next) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(msg->rkt), msg->partition)->offset = next;
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
  if (err)
    rtu_log(RTU_LOG_WARN, "offset store failed (partition revoked?)", "topic",
            rd_kafka_topic_name(msg->rkt), "cause", rd_kafka_err2str(err), NULL);
  rd_kafka_topic_partition_list_destroy(l);
}

/* Stops a partition at a message: paused, remembered with its cause, and (with
 * PAUSE_TOPIC_CONSUMPTION_ON_ERROR) every partition of its topic paused too. */
static void stop_partition(rtu_consumer_t *c, rd_kafka_message_t *msg, const rtu_run_result_t *res) {
  const char *topic = rd_kafka_topic_name(msg->rkt);
  char part[16], off[24];
  snprintf(part, sizeof part, "%d", msg->partition);
  snprintf(off, sizeof off, "%lld", (long long)res->fail_offset);
  rtu_log(RTU_LOG_ERROR, "message cannot be applied; partition stopped at it", "topic", topic,
          "#partition", part, "#offset", off, "kind", rtu_err_name(res->err), "cause", res->cause,
          NULL);
  rtu_health_partition_stopped(topic, msg->partition, res->fail_offset, res->cause);
  rtu_metrics_add(RTU_C_FAILED, topic, 1);
  rtu_metrics_partition(topic, msg->partition, -1, true);
  stopped_t *s = calloc(1, sizeof *s);
  if (s) {
    s->topic = strdup(topic);
    s->partition = msg->partition;
    s->offset = res->fail_offset;
    snprintf(s->cause, sizeof s->cause, "%s", res->cause);
    s->next = c->stopped;
    c->stopped = s;
  }
  rd_kafka_topic_partition_list_t *l = NULL;
  if (c->cfg->pause_topic_on_error) {
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(c->rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      l = rd_kafka_topic_partition_list_new(assigned->cnt);
      for (int i = 0; i < assigned->cnt; i++)
        if (!strcmp(assigned->elems[i].topic, topic))
          rd_kafka_topic_partition_list_add(l, topic, assigned->elems[i].partition);
      rd_kafka_topic_partition_list_destroy(assigned);
    }
  }
  if (!l) {
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, msg->partition);
  }
  rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk, l);
  if (err) rtu_log(RTU_LOG_ERROR, "pause failed", "cause", rd_kafka_err2str(err), NULL);
  if (c->cfg->pause_topic_on_error)
    for (int i = 0; i < l->cnt; i++)
      if (l->elems[i].partition != msg->partition && !find_stopped(c, topic, l->elems[i].partition)) {
        stopped_t *t = calloc(1, sizeof *t);
        if (!t) break;
        t->topic = strdup(topic);
        t->partition = l->elems[i].partition;
        t->offset = -1;
        snprintf(t->cause, sizeof t->cause, "topic paused: partition %d stopped", msg->partition);
        rtu_health_partition_stopped(topic, t->partition, -1, t->cause);
        rtu_metrics_partition(topic, t->partition, -1, true);
        t->next = c->stopped;
        c->stopped = t;
      }
  rd_kafka_topic_partition_list_destroy(l);
}

/* Within one batch, a partition's messages may come in several stretches: gather
 * them (offset order kept) so each partition makes one run, one bulk. */
static int msg_cmp(const void *pa, const void *pb) {
  const rd_kafka_message_t *a = *(rd_kafka_message_t *const *)pa;
  const rd_kafka_message_t *b = *(rd_kafka_message_t *const *)pb;
  if (a->err || b->err) return (a->err != 0) - (b->err != 0);
  int c = strcmp(rd_kafka_topic_name(a->rkt), rd_kafka_topic_name(b->rkt));
  if (c) return c;
  if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void commit_async(rtu_consumer_t *c) {
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 1);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "commit failed; will be retried with the next batch", "cause",
            rd_kafka_err2str(err), NULL);
}

rtu_err_t rtu_consumer_run(rtu_consumer_t *c, rtu_batch_t *batch, volatile sig_atomic_t *stop,
                           char *errstr, size_t errstr_size) {
  const rtu_config_t *cfg = c->cfg;
  rtu_err_t rc = RTU_OK;
  while (!*stop) {
    rtu_health_heartbeat();
    ssize_t n = rd_kafka_consume_batch_queue(c->queue, cfg->kafka_max_wait_ms, c->msgs, c->msgs_cap);
    if (n < 0) {
      snprintf(errstr, errstr_size, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
      rc = RTU_ERR_FATAL;
      break;
    }
    qsort(c->msgs, (size_t)n, sizeof *c->msgs, msg_cmp);
    size_t i = 0;
    bool stored = false;
    while (i < (size_t)n) {
      rd_kafka_message_t *first = c->msgs[i];
      if (first->err) {
        if (first->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          rtu_log(RTU_LOG_WARN, "consumer error", "cause", rd_kafka_message_errstr(first), NULL);
        i++;
        continue;
      }
      /* The run: consecutive messages of the same partition. */
      size_t j = i + 1;
      while (j < (size_t)n && !c->msgs[j]->err && c->msgs[j]->rkt == first->rkt &&
             c->msgs[j]->partition == first->partition)
        j++;
      const char *topic = rd_kafka_topic_name(first->rkt);
      if (find_stopped(c, topic, first->partition)) {
        i = j; /* fetched before the pause took effect: left for the next owner */
        continue;
      }
      size_t proj = 0;
      for (size_t t = 0; t < cfg->ntopics; t++)
        if (!strcmp(cfg->topics[t].topic, topic)) proj = cfg->topics[t].projection;
      for (size_t k = i; k < j; k++) {
        rd_kafka_message_t *m = c->msgs[k];
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) hdrs = NULL;
        c->views[k] = (rtu_msg_t){
            .topic = topic, .partition = m->partition, .offset = m->offset,
            .timestamp = rd_kafka_message_timestamp(m, NULL),
            .key = m->key, .key_len = m->key_len, .value = m->payload, .value_len = m->len,
            .headers = hdrs};
      }
      rtu_run_result_t res;
      int backoff = 100;
      rtu_err_t err;
      while ((err = rtu_batch_run(batch, proj, &c->views[i], j - i, &res)) == RTU_ERR_TRANSIENT &&
             !*stop) {
        rtu_log(RTU_LOG_WARN, "MongoDB unavailable; retrying the run", "topic", topic, "cause",
                res.cause, NULL);
        sleep_ms(backoff);
        backoff = backoff < 5000 ? backoff * 2 : 5000;
      }
      if (err == RTU_ERR_FATAL) {
        snprintf(errstr, errstr_size, "%s", res.cause);
        rc = err;
        break;
      }
      if (err == RTU_OK) {
        if (res.next_offset > first->offset) {
          store_offset(c, first, res.next_offset);
          stored = true;
        }
        if (res.failed) stop_partition(c, first, &res);
        rtu_metrics_add(RTU_C_CONSUMED, topic, res.messages);
        rtu_metrics_add(RTU_C_APPLIED, topic, res.applied);
        rtu_metrics_add(RTU_C_STALE, topic, res.stale);
        rtu_metrics_add(RTU_C_SKIPPED, topic, res.skipped);
        rtu_metrics_add(RTU_C_WRITES, topic, res.writes);
        char counts[200];
        snprintf(counts, sizeof counts,
                 "{\"messages\":%zu,\"applied\":%zu,\"stale\":%zu,\"skipped\":%zu,\"writes\":%zu,"
                 "\"changes\":%zu}",
                 res.messages, res.applied, res.stale, res.skipped, res.writes, res.changes);
        rtu_log(RTU_LOG_DEBUG, "run applied", "topic", topic, "#counts", counts, NULL);
      }
      i = j;
    }
    for (ssize_t k = 0; k < n; k++) rd_kafka_message_destroy(c->msgs[k]);
    if (rc != RTU_OK) break;
    if (stored) commit_async(c);
  }
  /* Final: commit what was applied, synchronously, then leave the group. */
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "final commit failed", "cause", rd_kafka_err2str(err), NULL);
  err = rd_kafka_consumer_close(c->rk);
  if (err) rtu_log(RTU_LOG_WARN, "leaving the group failed", "cause", rd_kafka_err2str(err), NULL);
  return rc;
}
