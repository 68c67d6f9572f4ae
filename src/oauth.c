/*
 * oauth.c: owns the OAuth token exchange of KAFKA_SASL_MECHANISM=oauthbearer:
 * the token request (libcurl), the parsing of the token endpoint's answer, the
 * lifetime librdkafka is given, the token the process's Kafka clients share, and
 * the refresh callback. It sets no other Kafka setting (consumer.c builds the
 * clients' configuration and calls rtu_oauth_conf) and reads nothing but the
 * configuration.
 *
 * Why one HTTP handle per request and no kept connection: the process asks for
 * a token about once per token lifetime; a fresh handle finds no stale
 * connection (an identity provider closes idle ones long before).
 * Why the background thread: the consumer's batch poll and the producer's flush
 * serve the main queue only now and then, and a refresh that waits there may let
 * the token expire; the HTTP exchange also stays out of the consumer loop.
 */
#define _GNU_SOURCE /* asprintf, explicit_bzero */
#include "oauth.h"

#include <bson/bson.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* A token answer is a few KiB at most; more is not a token endpoint. */
#define ANSWER_MAX 65536

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* The refresh callback's configuration: librdkafka's opaque is already the
 * consumer's or the producer's own. */
static const rtu_config_t *_Atomic oauth_cfg;

/* As kafka.c decides: SASL needs both credentials. */
static bool is_oauth(const rtu_config_t *cfg) {
  return cfg->kafka_sasl_mechanism && !strcasecmp(cfg->kafka_sasl_mechanism, "oauthbearer") &&
         cfg->kafka_sasl_username && cfg->kafka_sasl_password;
}

static rtu_err_t start_curl(char *errstr, size_t errstr_size) {
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc == CURLE_OK) return RTU_OK;
  snprintf(errstr, errstr_size, "libcurl: %s", curl_easy_strerror(curl_init_rc));
  return RTU_ERR_FATAL;
}

char *rtu_oauth_url(const rtu_config_t *cfg) {
  const char *base = cfg->kafka_oauth_base_url, *path = cfg->kafka_oauth_path;
  if (!base) return NULL;
  if (!path) path = "";
  size_t blen = strlen(base);
  bool base_slash = blen && base[blen - 1] == '/';
  if (base_slash && *path == '/') blen--;
  const char *sep = *path && !base_slash && *path != '/' ? "/" : "";
  char *url;
  if (asprintf(&url, "%.*s%s%s", (int)blen, base, sep, path) < 0) return NULL;
  return url;
}

/* ---- the request --------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len;
  bool too_big;
} answer_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud) {
  answer_t *a = ud;
  size_t n = size * nmemb;
  if (a->len + n > ANSWER_MAX) {
    a->too_big = true;
    return 0; /* aborts the transfer */
  }
  char *b = realloc(a->buf, a->len + n + 1);
  if (!b) return 0;
  memcpy(b + a->len, data, n);
  a->len += n;
  b[a->len] = '\0';
  a->buf = b;
  return n;
}

/* grant_type=password&username=..&password=.., form-encoded. A client id without
 * a secret is a public client: it goes in the body (RFC 6749 3.2.1); with a
 * secret both go in HTTP basic authentication, which every server takes
 * (2.3.1), and not in the body too (one method per request). */
static char *form_body(CURL *h, const rtu_config_t *cfg) {
  bool public_client = cfg->kafka_oauth_client_id && !cfg->kafka_oauth_client_secret;
  char *user = curl_easy_escape(h, cfg->kafka_sasl_username, 0);
  char *pass = curl_easy_escape(h, cfg->kafka_sasl_password, 0);
  char *id = public_client ? curl_easy_escape(h, cfg->kafka_oauth_client_id, 0) : NULL;
  char *body = NULL;
  if (user && pass && (id || !public_client) &&
      asprintf(&body, "grant_type=password&username=%s&password=%s%s%s", user, pass,
               id ? "&client_id=" : "", id ? id : "") < 0)
    body = NULL;
  if (pass) explicit_bzero(pass, strlen(pass));
  curl_free(user);
  curl_free(pass);
  curl_free(id);
  return body;
}

static CURLcode set_options(CURL *h, const rtu_config_t *cfg, const char *url, const char *body,
                            struct curl_slist *hdrs, answer_t *a, char *curl_err) {
  long connect_ms = cfg->kafka_connection_timeout_ms < RTU_OAUTH_TIMEOUT_MS
                        ? cfg->kafka_connection_timeout_ms
                        : RTU_OAUTH_TIMEOUT_MS;
  CURLcode e = curl_easy_setopt(h, CURLOPT_URL, url);
  if (!e) e = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
  if (!e) e = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
  if (!e) e = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!e) e = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)RTU_OAUTH_TIMEOUT_MS);
  if (!e) e = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  if (!e) e = curl_easy_setopt(h, CURLOPT_USERAGENT, "rtu/" RTU_VERSION);
  if (!e) e = curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (!e) e = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  if (!e) e = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  if (!e) e = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  if (!e) e = curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
  /* Added to the system's CAs (Debian's libcurl keeps its CA path): the broker's
   * private CA may sign the token endpoint too, or a public CA may. */
  if (!e && cfg->ca_cert_path) e = curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_cert_path);
  if (!e && cfg->kafka_oauth_client_id && cfg->kafka_oauth_client_secret) {
    e = curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    if (!e) e = curl_easy_setopt(h, CURLOPT_USERNAME, cfg->kafka_oauth_client_id);
    if (!e) e = curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->kafka_oauth_client_secret);
  }
  return e;
}

/* POSTs the password grant to url: the answer's body in *a, its status in *status. */
static rtu_err_t post_grant(const rtu_config_t *cfg, const char *url, answer_t *a, long *status,
                            char *errstr, size_t errstr_size) {
  rtu_err_t rc = RTU_ERR_FATAL;
  char curl_err[CURL_ERROR_SIZE] = "";
  struct curl_slist *hdrs = NULL;
  char *body = NULL;
  CURL *h = curl_easy_init();
  if (!h) {
    snprintf(errstr, errstr_size, "token endpoint %s: cannot make an HTTP handle", url);
    goto done;
  }
  body = form_body(h, cfg);
  struct curl_slist *h1 = curl_slist_append(NULL, "Accept: application/json");
  hdrs = h1 ? curl_slist_append(h1, "Content-Type: application/x-www-form-urlencoded") : NULL;
  if (!hdrs) curl_slist_free_all(h1);
  if (!body || !hdrs) {
    snprintf(errstr, errstr_size, "token endpoint %s: out of memory", url);
    goto done;
  }
  CURLcode e = set_options(h, cfg, url, body, hdrs, a, curl_err);
  if (e) {
    snprintf(errstr, errstr_size, "token endpoint %s: %s", url, curl_easy_strerror(e));
    goto done;
  }
  rc = RTU_ERR_TRANSIENT;
  e = curl_easy_perform(h);
  if (a->too_big) {
    snprintf(errstr, errstr_size, "token endpoint %s: answer larger than %d bytes", url,
             ANSWER_MAX);
    goto done;
  }
  if (e) {
    snprintf(errstr, errstr_size, "token endpoint %s: %s", url,
             curl_err[0] ? curl_err : curl_easy_strerror(e));
    goto done;
  }
  e = curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  if (e) {
    snprintf(errstr, errstr_size, "token endpoint %s: %s", url, curl_easy_strerror(e));
    goto done;
  }
  rc = RTU_OK;
done:
  if (body) explicit_bzero(body, strlen(body));
  free(body);
  curl_slist_free_all(hdrs);
  if (h) curl_easy_cleanup(h);
  return rc;
}

/* ---- the answer ---------------------------------------------------------- */

/* A number of seconds: JSON number, or a string of one (some servers send that). */
static bool seconds_of(const bson_iter_t *it, double *out) {
  if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_DOUBLE(it)) {
    *out = bson_iter_as_double(it);
    return true;
  }
  if (!BSON_ITER_HOLDS_UTF8(it)) return false;
  const char *s = bson_iter_utf8(it, NULL);
  char *end;
  *out = strtod(s, &end);
  return end != s && !*end;
}

static size_t b64url_decode(const char *s, size_t n, unsigned char *out) {
  uint32_t acc = 0;
  int bits = 0;
  size_t len = 0;
  for (size_t i = 0; i < n && s[i] != '='; i++) {
    int c = (unsigned char)s[i], v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-' || c == '+') v = 62;
    else if (c == '_' || c == '/') v = 63;
    else return (size_t)-1;
    acc = (acc << 6 | (uint32_t)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[len++] = (unsigned char)(acc >> bits);
    }
  }
  return len;
}

/* The `exp` claim (seconds since the epoch) of a JWT: the expiry when the
 * answer has no expires_in, which OAuth only recommends. */
static bool jwt_exp(const char *token, double *exp) {
  const char *p = strchr(token, '.');
  const char *q = p ? strchr(p + 1, '.') : NULL;
  if (!q) return false;
  size_t n = (size_t)(q - p - 1);
  unsigned char *json = malloc(n * 3 / 4 + 4);
  bool ok = false;
  bson_t claims;
  bson_iter_t it;
  if (!json) return false;
  size_t len = b64url_decode(p + 1, n, json);
  if (len != (size_t)-1 && bson_init_from_json(&claims, (const char *)json, (ssize_t)len, NULL)) {
    ok = bson_iter_init_find(&it, &claims, "exp") && seconds_of(&it, exp);
    bson_destroy(&claims);
  }
  free(json);
  return ok;
}

/* access_token, token_type (Bearer when given) and the expiry, from expires_in
 * (counted from asked_at: the token was made after the request left) or else
 * from the token's exp claim. */
static rtu_err_t parse_answer(const char *url, const answer_t *a, int64_t asked_at,
                              rtu_oauth_token_t *tok, char *errstr, size_t errstr_size) {
  bson_t doc;
  bson_error_t berr;
  bson_iter_t it;
  double secs;
  if (!a->len || !bson_init_from_json(&doc, a->buf, (ssize_t)a->len, &berr)) {
    snprintf(errstr, errstr_size, "token endpoint %s: the answer is not a JSON object: %s", url,
             a->len ? berr.message : "empty body");
    return RTU_ERR_TRANSIENT;
  }
  rtu_err_t rc = RTU_ERR_TRANSIENT;
  if (!bson_iter_init_find(&it, &doc, "access_token") || !BSON_ITER_HOLDS_UTF8(&it) ||
      !*bson_iter_utf8(&it, NULL)) {
    snprintf(errstr, errstr_size, "token endpoint %s: the answer has no access_token", url);
    goto done;
  }
  tok->access_token = strdup(bson_iter_utf8(&it, NULL));
  if (!tok->access_token) {
    snprintf(errstr, errstr_size, "token endpoint %s: out of memory", url);
    rc = RTU_ERR_FATAL;
    goto done;
  }
  if (bson_iter_init_find(&it, &doc, "token_type") &&
      (!BSON_ITER_HOLDS_UTF8(&it) || strcasecmp(bson_iter_utf8(&it, NULL), "bearer"))) {
    snprintf(errstr, errstr_size, "token endpoint %s: token_type is not Bearer", url);
    goto done;
  }
  if (bson_iter_init_find(&it, &doc, "expires_in")) {
    if (!seconds_of(&it, &secs) || secs <= 0 || secs > 1e9) {
      snprintf(errstr, errstr_size, "token endpoint %s: expires_in is not a positive number",
               url);
      goto done;
    }
    tok->expires_at_ms = asked_at + (int64_t)(secs * 1000);
  } else if (jwt_exp(tok->access_token, &secs) && secs > 0 && secs < 1e11) {
    tok->expires_at_ms = (int64_t)(secs * 1000);
  } else {
    snprintf(errstr, errstr_size,
             "token endpoint %s: the answer has no expires_in and the token no exp claim", url);
    goto done;
  }
  rc = RTU_OK;
done:
  bson_destroy(&doc);
  return rc;
}

/* The lifetime librdkafka is given: the margin before the expiry. */
static rtu_err_t set_lifetime(const rtu_config_t *cfg, const char *url, rtu_oauth_token_t *tok,
                              char *errstr, size_t errstr_size) {
  int64_t now = rtu_now_ms(), left = tok->expires_at_ms - now;
  if (left < 1000) {
    snprintf(errstr, errstr_size, "token endpoint %s: the token expires in %lld ms", url,
             (long long)left);
    return RTU_ERR_TRANSIENT;
  }
  tok->lifetime_ms = tok->expires_at_ms - cfg->kafka_oauth_margin_ms;
  if (tok->lifetime_ms - now < left / 2) {
    /* The margin cannot be kept: renewing at half the life still leaves the
     * other half to get a token. */
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)left);
    rtu_log(RTU_LOG_WARN,
            "the Kafka OAuth token lives less than twice KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS: "
            "renewed at half its life",
            "url", url, "#expiresInMs", ms, NULL);
    tok->lifetime_ms = now + left / 2;
  }
  return RTU_OK;
}

/* The start of a body, one line, for an error message. */
static void body_excerpt(const answer_t *a, char *out, size_t size) {
  size_t n = 0;
  for (size_t i = 0; a->buf && i < a->len && n + 1 < size && n < 200; i++)
    out[n++] = (unsigned char)a->buf[i] < 0x20 ? ' ' : a->buf[i];
  out[n] = '\0';
}

rtu_err_t rtu_oauth_fetch(const rtu_config_t *cfg, rtu_oauth_token_t *tok, char *errstr,
                          size_t errstr_size) {
  memset(tok, 0, sizeof *tok);
  if (!cfg->kafka_sasl_username || !cfg->kafka_sasl_password) {
    snprintf(errstr, errstr_size, "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are not set");
    return RTU_ERR_CONFIG;
  }
  char *url = rtu_oauth_url(cfg);
  if (!url) {
    snprintf(errstr, errstr_size, "KAFKA_SASL_OAUTH_BASE_URL is not set");
    return RTU_ERR_CONFIG;
  }
  answer_t a = {0};
  long status = 0;
  int64_t asked_at = rtu_now_ms();
  rtu_err_t rc = start_curl(errstr, errstr_size);
  if (rc == RTU_OK) rc = post_grant(cfg, url, &a, &status, errstr, errstr_size);
  if (rc == RTU_OK && status != 200) {
    char excerpt[256];
    body_excerpt(&a, excerpt, sizeof excerpt);
    snprintf(errstr, errstr_size, "token endpoint %s: HTTP %ld: %s", url, status, excerpt);
    rc = RTU_ERR_TRANSIENT;
  }
  if (rc == RTU_OK) rc = parse_answer(url, &a, asked_at, tok, errstr, errstr_size);
  if (rc == RTU_OK) rc = set_lifetime(cfg, url, tok, errstr, errstr_size);
  if (rc != RTU_OK) rtu_oauth_token_free(tok);
  if (a.buf) explicit_bzero(a.buf, a.len);
  free(a.buf);
  free(url);
  return rc;
}

void rtu_oauth_token_free(rtu_oauth_token_t *tok) {
  if (tok->access_token) explicit_bzero(tok->access_token, strlen(tok->access_token));
  free(tok->access_token);
  memset(tok, 0, sizeof *tok);
}

/* ---- librdkafka ---------------------------------------------------------- */

/* The token of every handle of the process: the consumer, the dead-letter
 * producer and each worker's producer would otherwise ask the endpoint each,
 * at start and at every renewal. A handle takes the last token while less than
 * half of its life (as given to librdkafka) has passed: a handle that renews
 * (at 80%) after another one did takes the other's fresh token. */
static struct {
  pthread_mutex_t lock;
  char *key; /* the endpoint and username the token is for */
  rtu_oauth_token_t tok;
  int64_t fetched_at;
} shared = {.lock = PTHREAD_MUTEX_INITIALIZER};

static rtu_err_t shared_token(const rtu_config_t *cfg, rtu_oauth_token_t *out, bool *fetched,
                              char *errstr, size_t errstr_size) {
  char *key;
  memset(out, 0, sizeof *out);
  if (asprintf(&key, "%s\n%s\n%s", cfg->kafka_oauth_base_url ? cfg->kafka_oauth_base_url : "",
               cfg->kafka_oauth_path ? cfg->kafka_oauth_path : "",
               cfg->kafka_sasl_username ? cfg->kafka_sasl_username : "") < 0) {
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  rtu_err_t rc = RTU_OK;
  pthread_mutex_lock(&shared.lock); /* held while fetching: the others wait to share */
  int64_t now = rtu_now_ms();
  *fetched = !shared.key || strcmp(shared.key, key) ||
             shared.tok.lifetime_ms - now <= (shared.tok.lifetime_ms - shared.fetched_at) / 2;
  if (*fetched) {
    rtu_oauth_token_t fresh;
    rc = rtu_oauth_fetch(cfg, &fresh, errstr, errstr_size);
    if (rc == RTU_OK) {
      rtu_oauth_token_free(&shared.tok);
      free(shared.key);
      shared.tok = fresh;
      shared.key = key;
      shared.fetched_at = now;
      key = NULL;
    }
  }
  if (rc == RTU_OK) {
    *out = shared.tok;
    out->access_token = strdup(shared.tok.access_token);
    if (!out->access_token) {
      snprintf(errstr, errstr_size, "out of memory");
      rc = RTU_ERR_FATAL;
    }
  }
  pthread_mutex_unlock(&shared.lock);
  free(key);
  return rc;
}

void rtu_oauth_refresh(rd_kafka_t *rk, const rtu_config_t *cfg) {
  rtu_oauth_token_t tok = {0};
  char err[RTU_ERRSTR_SIZE], kerr[256];
  bool fetched = false;
  if (!cfg) {
    snprintf(err, sizeof err, "no OAuth configuration was given (rtu_oauth_conf)");
    goto fail;
  }
  if (shared_token(cfg, &tok, &fetched, err, sizeof err) != RTU_OK) goto fail;
  /* The principal is only named in librdkafka's logs: the broker reads its own
   * from the token. */
  if (rd_kafka_oauthbearer_set_token(rk, tok.access_token, tok.lifetime_ms,
                                     cfg->kafka_sasl_username, NULL, 0, kerr, sizeof kerr)) {
    snprintf(err, sizeof err, "token from %s refused by librdkafka: %s",
             cfg->kafka_oauth_base_url, kerr);
    goto fail;
  }
  char expires[24], renew[24];
  int64_t now = rtu_now_ms();
  snprintf(expires, sizeof expires, "%lld", (long long)(tok.expires_at_ms - now));
  snprintf(renew, sizeof renew, "%lld", (long long)(tok.lifetime_ms - now) * 4 / 5);
  rtu_log(RTU_LOG_INFO, "Kafka OAuth token obtained", "client", rd_kafka_name(rk),
          "#fromEndpoint", fetched ? "true" : "false", "#expiresInMs", expires, "#renewedInMs",
          renew, NULL);
  rtu_oauth_token_free(&tok);
  return;
fail:
  rtu_log(RTU_LOG_ERROR, "cannot get a Kafka OAuth token; asking again in 10 s", "client",
          rd_kafka_name(rk), "cause", err, NULL);
  rd_kafka_resp_err_t e = rd_kafka_oauthbearer_set_token_failure(rk, err);
  if (e)
    rtu_log(RTU_LOG_ERROR, "cannot report the OAuth token failure to librdkafka", "cause",
            rd_kafka_err2str(e), NULL);
  rtu_oauth_token_free(&tok);
}

static void refresh_cb(rd_kafka_t *rk, const char *oauthbearer_config, void *opaque) {
  (void)oauthbearer_config;
  (void)opaque;
  rtu_oauth_refresh(rk, atomic_load(&oauth_cfg));
}

rtu_err_t rtu_oauth_conf(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                         size_t errstr_size) {
  if (!is_oauth(cfg)) return RTU_OK;
  rtu_err_t rc = start_curl(errstr, errstr_size);
  if (rc != RTU_OK) return rc;
  atomic_store(&oauth_cfg, cfg);
  rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, refresh_cb);
  rd_kafka_conf_enable_sasl_queue(conf, 1);
  return RTU_OK;
}

rtu_err_t rtu_oauth_start(rd_kafka_t *rk, char *errstr, size_t errstr_size) {
  rd_kafka_queue_t *q = rd_kafka_queue_get_sasl(rk);
  if (!q) return RTU_OK; /* no SASL queue: not an oauthbearer handle */
  rd_kafka_queue_destroy(q);
  rd_kafka_error_t *e = rd_kafka_sasl_background_callbacks_enable(rk);
  if (!e) return RTU_OK;
  snprintf(errstr, errstr_size, "SASL callbacks on the background thread: %s",
           rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return RTU_ERR_FATAL;
}
