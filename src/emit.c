/*
 * emit.c: owns the librdkafka producer (its settings are kafka.c's) and its
 * delivery reports. It formats nothing: messages.c builds the pr-update and
 * projection-change messages, consumer.c hands over the dead letters. It never
 * commits offsets: it only tells whether every message of a run was
 * acknowledged.
 */
#include "emit.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "metrics_client.h"
#include "oauth.h"

struct rtu_emit_s {
  rd_kafka_t *rk; /* NULL for a capture */
  /* rtu test's capture: every message goes to it instead of Kafka (one branch
   * per message, never taken in rtu run). */
  rtu_emit_sink_fn sink;
  void *sink_ctx;
  unsigned long failed;    /* delivery failures since the last flush */
  unsigned long delivered; /* since start */
  char last_error[RTU_ERRSTR_SIZE];
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
  (void)rk;
  rtu_emit_t *em = opaque;
  if (msg->err) {
    em->failed++;
    snprintf(em->last_error, sizeof em->last_error, "%s: %s", rd_kafka_topic_name(msg->rkt),
             rd_kafka_err2str(msg->err));
  } else {
    em->delivered++;
  }
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  (void)opaque;
  rtu_metrics_client_kafka_json(json, len);
  return 0; /* librdkafka frees json */
}

bool rtu_emit_needed(const rtu_config_t *cfg) {
  bool any = false;
  for (size_t i = 0; i < cfg->nprojections; i++)
    any |= (cfg->gen_kafka_pr_updates && cfg->projections[i].pr_update_topic) ||
           (cfg->gen_kafka_pc && cfg->projections[i].npc_topics > 0);
  return any;
}

rtu_emit_t *rtu_emit_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  errstr[0] = '\0';
  if (!rtu_emit_needed(cfg)) return NULL;
  return rtu_emit_new_producer(cfg, errstr, errstr_size);
}

rtu_emit_t *rtu_emit_new_producer(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  errstr[0] = '\0';
  rtu_emit_t *em = calloc(1, sizeof *em);
  rd_kafka_conf_t *conf = NULL;
  if (!em) goto fail;
  conf = rtu_kafka_conf_new(cfg, RTU_KAFKA_PRODUCER, errstr, errstr_size);
  if (!conf) goto fail;
  /* the kafka_producer_* series (metrics_client.c) */
  if (!rtu_kafka_conf_set(conf, "statistics.interval.ms", "5000", errstr, errstr_size)) goto fail;
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, em);
  em->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
  if (!em->rk) goto fail;
  if (rtu_oauth_start(em->rk, errstr, errstr_size) != RTU_OK) {
    rd_kafka_destroy(em->rk);
    free(em);
    return NULL;
  }
  return em;
fail:
  if (conf && !(em && em->rk)) rd_kafka_conf_destroy(conf);
  free(em);
  if (!errstr[0]) snprintf(errstr, errstr_size, "cannot create the Kafka producer");
  return NULL;
}

rtu_emit_t *rtu_emit_new_capture(rtu_emit_sink_fn sink, void *ctx) {
  rtu_emit_t *em = calloc(1, sizeof *em);
  if (!em) return NULL;
  em->sink = sink;
  em->sink_ctx = ctx;
  return em;
}

void rtu_emit_free(rtu_emit_t *em) {
  if (!em) return;
  if (!em->rk) {
    free(em);
    return;
  }
  rd_kafka_resp_err_t err = rd_kafka_flush(em->rk, 5000);
  if (err) rtu_log(RTU_LOG_WARN, "producer flush at exit failed", "cause", rd_kafka_err2str(err), NULL);
  rtu_metrics_client_forget(rd_kafka_name(em->rk));
  rd_kafka_destroy(em->rk);
  free(em);
}

rtu_err_t rtu_emit_produce(rtu_emit_t *em, const char *topic, const char *key, size_t key_len,
                           const char *value, size_t value_len, char *errstr,
                           size_t errstr_size) {
  if (em->sink) {
    em->delivered++;
    return em->sink(em->sink_ctx, topic, key, key_len, value, value_len, errstr, errstr_size);
  }
  for (int attempt = 0;; attempt++) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        em->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    if (!err) return RTU_OK;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || attempt >= 100) {
      snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(err));
      return RTU_ERR_TRANSIENT;
    }
    rd_kafka_poll(em->rk, 100); /* serve delivery reports to make room */
  }
}

rtu_err_t rtu_emit_flush(rtu_emit_t *em, int timeout_ms, char *errstr, size_t errstr_size) {
  if (em->sink) return RTU_OK; /* a capture has nothing in flight */
  rd_kafka_resp_err_t err = rd_kafka_flush(em->rk, timeout_ms);
  if (err) {
    snprintf(errstr, errstr_size, "producer flush: %s", rd_kafka_err2str(err));
    return RTU_ERR_TRANSIENT;
  }
  if (em->failed) {
    snprintf(errstr, errstr_size, "%lu message(s) not delivered, last: %s", em->failed,
             em->last_error);
    em->failed = 0;
    return RTU_ERR_TRANSIENT;
  }
  return RTU_OK;
}

void rtu_emit_poll(rtu_emit_t *em) {
  if (em) rd_kafka_poll(em->rk, 0);
}

unsigned long rtu_emit_delivered(const rtu_emit_t *em) { return em ? em->delivered : 0; }

/* The source and the error go in headers so the value stays byte for byte what
 * the source topic had: replaying a dead letter is producing it back. */
rtu_err_t rtu_emit_dead_letter(rtu_emit_t *em, const char *topic, const rtu_msg_t *msg,
                               rtu_err_t kind, const char *cause, char *errstr,
                               size_t errstr_size) {
  if (em->sink)
    return em->sink(em->sink_ctx, topic, msg->key, msg->key_len, msg->value, msg->value_len,
                    errstr, errstr_size);
  const rd_kafka_headers_t *orig = rtu_msg_headers(msg);
  rd_kafka_headers_t *hdrs = orig ? rd_kafka_headers_copy(orig) : rd_kafka_headers_new(6);
  char part[16], off[24];
  snprintf(part, sizeof part, "%d", msg->partition);
  snprintf(off, sizeof off, "%lld", (long long)msg->offset);
  const char *pairs[][2] = {
      {"rtu.error.kind", rtu_err_name(kind)}, {"rtu.error.cause", cause},
      {"rtu.source.topic", msg->topic},       {"rtu.source.partition", part},
      {"rtu.source.offset", off},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    rd_kafka_resp_err_t e = rd_kafka_header_add(hdrs, pairs[i][0], -1, pairs[i][1], -1);
    if (e) {
      rd_kafka_headers_destroy(hdrs);
      snprintf(errstr, errstr_size, "dead letter header: %s", rd_kafka_err2str(e));
      return RTU_ERR_FATAL;
    }
  }
  rd_kafka_resp_err_t err = rd_kafka_producev(
      em->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
      RD_KAFKA_V_KEY(msg->key, msg->key_len), RD_KAFKA_V_VALUE((void *)msg->value, msg->value_len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
  if (err) {
    rd_kafka_headers_destroy(hdrs); /* not taken when producev fails */
    snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(err));
    return RTU_ERR_TRANSIENT;
  }
  return rtu_emit_flush(em, 10000, errstr, errstr_size);
}
