/*
 * oauth.h: SASL/OAUTHBEARER tokens for rtu's Kafka clients
 * (KAFKA_SASL_MECHANISM=oauthbearer): the OAuth password grant against
 * KAFKA_SASL_OAUTH_BASE_URL + KAFKA_SASL_OAUTH_PATH, handed to librdkafka by its
 * token refresh callback on librdkafka's background thread, so the token is
 * renewed whatever the consumer loop or the producer are doing.
 */
#ifndef RTU_OAUTH_H
#define RTU_OAUTH_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "config.h"
#include "rtu.h"

/* The HTTP exchange's whole budget. A refresh in flight holds rd_kafka_destroy
 * back, and SIGTERM must exit within 10 s. */
#define RTU_OAUTH_TIMEOUT_MS 5000

typedef struct {
  char *access_token;
  int64_t expires_at_ms; /* wall clock: when the endpoint says the token expires */
  /* Wall clock: the lifetime librdkafka is given, KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS
   * before expires_at_ms (half the token's life when the margin is longer than that).
   * librdkafka asks for the next token at 80% of it, and refuses to
   * authenticate with the token once it has passed. */
  int64_t lifetime_ms;
} rtu_oauth_token_t;

/*
 * Where a Kafka client's configuration is built: with KAFKA_SASL_MECHANISM=oauthbearer,
 * installs the token refresh callback on a SASL queue of its own; does nothing
 * otherwise. The callback reads cfg, which must outlive every handle made from
 * conf (one configuration per process: the last one given is the one used).
 */
rtu_err_t rtu_oauth_conf(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                         size_t errstr_size);

/* Once the handle exists: its token refreshes go to librdkafka's background
 * thread. Does nothing for a handle without oauthbearer. */
rtu_err_t rtu_oauth_start(rd_kafka_t *rk, char *errstr, size_t errstr_size);

/* The token endpoint, KAFKA_SASL_OAUTH_BASE_URL + KAFKA_SASL_OAUTH_PATH with one
 * slash between them (malloc'd; NULL without a base URL or memory). */
char *rtu_oauth_url(const rtu_config_t *cfg);

/* One token request. RTU_ERR_TRANSIENT with a line naming the URL when the
 * endpoint cannot be reached or gives no usable token. */
rtu_err_t rtu_oauth_fetch(const rtu_config_t *cfg, rtu_oauth_token_t *tok, char *errstr,
                          size_t errstr_size);
void rtu_oauth_token_free(rtu_oauth_token_t *tok);

/* What the refresh callback does: set a token on rk, the one another handle
 * got while less than half its life has passed or else a new one, or set the
 * failure (librdkafka then asks again after 10 s) and log it. */
void rtu_oauth_refresh(rd_kafka_t *rk, const rtu_config_t *cfg);

#endif
