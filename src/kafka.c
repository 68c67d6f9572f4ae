/*
 * kafka.c: owns the settings shared by every Kafka client of rtu and the
 * callbacks that route librdkafka's logs and errors to log.c and health.c. It
 * creates no client and holds no state: consumer.c and emit.c build their
 * clients from what it returns, adding their own settings.
 *
 * Why one function builds it all: a setting the clients must agree on (a
 * security option, an authentication callback) is then added in one place and
 * reaches the consumer and every producer alike.
 */
#include "kafka.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "health.h"
#include "log.h"
#include "oauth.h"

bool rtu_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                        size_t errstr_size) {
  return rd_kafka_conf_set(conf, name, value, errstr, errstr_size) == RD_KAFKA_CONF_OK;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  rtu_log(level <= 3 ? RTU_LOG_ERROR : level <= 4 ? RTU_LOG_WARN : RTU_LOG_DEBUG, buf,
          "source", "librdkafka", "facility", fac, NULL);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  (void)opaque;
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT)
    rtu_health_dependency(RTU_DEP_KAFKA, false, reason);
  rtu_log(err == RD_KAFKA_RESP_ERR__FATAL ? RTU_LOG_FATAL : RTU_LOG_WARN, "kafka error",
          "cause", reason, "code", rd_kafka_err2name((rd_kafka_resp_err_t)err), NULL);
}

/* KAFKA_SASL_* and CA_CERT_PATH: the security protocol follows from which are set. */
static bool set_security(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                         size_t sz) {
  if (cfg->kafka_sasl_username && cfg->kafka_sasl_password) {
    const char *mech = cfg->kafka_sasl_mechanism;
    const char *m = !strcasecmp(mech, "scram-sha-256")   ? "SCRAM-SHA-256"
                    : !strcasecmp(mech, "scram-sha-512") ? "SCRAM-SHA-512"
                    : !strcasecmp(mech, "oauthbearer")   ? "OAUTHBEARER"
                                                         : "PLAIN";
    if (!rtu_kafka_conf_set(conf, "security.protocol",
                            cfg->ca_cert_path ? "SASL_SSL" : "SASL_PLAINTEXT", errstr, sz) ||
        !rtu_kafka_conf_set(conf, "sasl.mechanism", m, errstr, sz))
      return false;
    /* OAUTHBEARER sends a token (oauth.c gets it with these credentials). */
    if (strcmp(m, "OAUTHBEARER") &&
        (!rtu_kafka_conf_set(conf, "sasl.username", cfg->kafka_sasl_username, errstr, sz) ||
         !rtu_kafka_conf_set(conf, "sasl.password", cfg->kafka_sasl_password, errstr, sz)))
      return false;
  } else if (cfg->ca_cert_path) {
    if (!rtu_kafka_conf_set(conf, "security.protocol", "SSL", errstr, sz)) return false;
  }
  return !cfg->ca_cert_path ||
         rtu_kafka_conf_set(conf, "ssl.ca.location", cfg->ca_cert_path, errstr, sz);
}

static bool set_delivery(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                         size_t sz) {
  /* Keyed messages go where the Java client and kafkajs put them (murmur2 of the
   * key bytes), so consumers co-partitioned with those producers meet them. */
  return rtu_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sz) &&
         rtu_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sz) &&
         rtu_kafka_conf_set(conf, "acks", "all", errstr, sz) &&
         rtu_kafka_conf_set(conf, "linger.ms", "5", errstr, sz) &&
         rtu_kafka_conf_set(conf, "compression.type", cfg->producer_compression, errstr, sz);
}

rd_kafka_conf_t *rtu_kafka_conf_new(const rtu_config_t *cfg, rtu_kafka_role_t role, char *errstr,
                                    size_t errstr_size) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char num[32];
  if (!conf) {
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
  }
  snprintf(num, sizeof num, "%d", cfg->kafka_connection_timeout_ms);
  if (!rtu_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errstr, errstr_size) ||
      !rtu_kafka_conf_set(conf, "socket.connection.setup.timeout.ms", num, errstr, errstr_size) ||
      !set_security(cfg, conf, errstr, errstr_size) ||
      (role == RTU_KAFKA_PRODUCER && !set_delivery(cfg, conf, errstr, errstr_size)) ||
      rtu_oauth_conf(cfg, conf, errstr, errstr_size) != RTU_OK) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  return conf;
}
