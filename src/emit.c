/*
 * emit.c: owns the librdkafka producer (idempotent, acks=all, compression from
 * PRODUCER_COMPRESSION) and its delivery reports. It formats nothing: batch.c
 * builds the messages. It never commits offsets: it only tells whether every
 * message of a run was acknowledged.
 */
#include "emit.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "log.h"

struct rtu_emit_s {
  rd_kafka_t *rk;
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

rtu_emit_t *rtu_emit_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  bool any = false;
  for (size_t i = 0; i < cfg->nprojections; i++)
    any |= (cfg->gen_kafka_pr_updates && cfg->projections[i].pr_update_topic) ||
           (cfg->gen_kafka_pc && cfg->projections[i].npc_topics > 0);
  errstr[0] = '\0';
  if (!any) return NULL;
  rtu_emit_t *em = calloc(1, sizeof *em);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!em || !conf) goto fail;
  if (!rtu_kafka_conf_common(cfg, conf, errstr, errstr_size) ||
      rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
      rd_kafka_conf_set(conf, "acks", "all", errstr, errstr_size) ||
      rd_kafka_conf_set(conf, "linger.ms", "5", errstr, errstr_size) ||
      rd_kafka_conf_set(conf, "compression.type", cfg->producer_compression, errstr, errstr_size))
    goto fail;
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, em);
  em->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
  if (!em->rk) goto fail;
  return em;
fail:
  if (conf && !(em && em->rk)) rd_kafka_conf_destroy(conf);
  free(em);
  if (!errstr[0]) snprintf(errstr, errstr_size, "cannot create the Kafka producer");
  return NULL;
}

void rtu_emit_free(rtu_emit_t *em) {
  if (!em) return;
  rd_kafka_resp_err_t err = rd_kafka_flush(em->rk, 5000);
  if (err) rtu_log(RTU_LOG_WARN, "producer flush at exit failed", "cause", rd_kafka_err2str(err), NULL);
  rd_kafka_destroy(em->rk);
  free(em);
}

rtu_err_t rtu_emit_produce(rtu_emit_t *em, const char *topic, const char *key, size_t key_len,
                           const char *value, size_t value_len, char *errstr,
                           size_t errstr_size) {
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

unsigned long rtu_emit_delivered(const rtu_emit_t *em) { return em ? em->delivered : 0; }
