/*
 * test_oauth.c: KAFKA_SASL_MECHANISM=oauthbearer (src/oauth.c) against a loopback
 * token endpoint (libmicrohttpd, port 0): the variables and their problems, the
 * token URL, the password grant's request (method, path, form fields, client id
 * and secret in basic authentication or, without a secret, in the body), the
 * answer's parsing (expires_in, a JWT's exp, the refresh margin), errors naming
 * the URL (HTTP 500, connection refused, not JSON, no token), and on real
 * librdkafka handles configured by rtu_kafka_conf_new: the token set and
 * renewed at 80% of its life less the margin, and a failing endpoint reported
 * through rd_kafka_oauthbearer_set_token_failure and a log line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "config_files.h"
#include "kafka.h"
#include "helpers.h"
#include "oauth.h"

/* ---- the token endpoint ------------------------------------------------- */

typedef enum { ANSWER_TOKEN, ANSWER_500, ANSWER_BAD_JSON, ANSWER_NO_TOKEN, ANSWER_MAC } answer_mode_t;

#define MAX_SEEN 16

static struct {
  pthread_mutex_t lock;
  answer_mode_t mode;
  char answer[2048]; /* the JSON body of ANSWER_TOKEN */
  int n;             /* requests seen */
  int64_t at[MAX_SEEN]; /* when (monotonic ms) */
  char method[16], path[256], auth[512], content_type[128], body[1024];
} ep = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int ep_port;

typedef struct {
  char buf[1024];
  size_t len;
} upload_t;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)cls;
  (void)version;
  upload_t *up = *con_cls;
  if (!up) {
    *con_cls = calloc(1, sizeof *up);
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    if (up->len + n >= sizeof up->buf) n = sizeof up->buf - 1 - up->len;
    memcpy(up->buf + up->len, upload_data, n);
    up->len += n;
    *upload_data_size = 0;
    return MHD_YES;
  }
  const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
  const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
  pthread_mutex_lock(&ep.lock);
  if (ep.n < MAX_SEEN) ep.at[ep.n] = rtu_now_mono_ms();
  ep.n++;
  snprintf(ep.method, sizeof ep.method, "%s", method);
  snprintf(ep.path, sizeof ep.path, "%s", url);
  snprintf(ep.auth, sizeof ep.auth, "%s", auth ? auth : "");
  snprintf(ep.content_type, sizeof ep.content_type, "%s", ctype ? ctype : "");
  snprintf(ep.body, sizeof ep.body, "%.*s", (int)up->len, up->buf);
  answer_mode_t mode = ep.mode;
  const char *text = mode == ANSWER_TOKEN      ? ep.answer
                     : mode == ANSWER_500      ? "{\"error\":\"server_error\"}"
                     : mode == ANSWER_BAD_JSON ? "<html>not json</html>"
                     : mode == ANSWER_NO_TOKEN ? "{\"token_type\":\"Bearer\",\"expires_in\":300}"
                                               : "{\"access_token\":\"t\",\"token_type\":\"mac\","
                                                 "\"expires_in\":300}";
  char *body = strdup(text);
  pthread_mutex_unlock(&ep.lock);
  if (!body) return MHD_NO;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  enum MHD_Result r = MHD_queue_response(conn, mode == ANSWER_500 ? 500 : 200, resp);
  MHD_destroy_response(resp);
  return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  free(*con_cls);
  *con_cls = NULL;
}

static struct MHD_Daemon *ep_start(void) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
      NULL, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "cannot start the token endpoint\n");
    exit(2);
  }
  ep_port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
  return d;
}

static void ep_reset(answer_mode_t mode, const char *answer) {
  pthread_mutex_lock(&ep.lock);
  ep.mode = mode;
  snprintf(ep.answer, sizeof ep.answer, "%s", answer ? answer : "");
  ep.n = 0;
  ep.method[0] = ep.path[0] = ep.auth[0] = ep.content_type[0] = ep.body[0] = '\0';
  pthread_mutex_unlock(&ep.lock);
}

static int ep_count(void) {
  pthread_mutex_lock(&ep.lock);
  int n = ep.n;
  pthread_mutex_unlock(&ep.lock);
  return n;
}

static bool wait_requests(int n, int timeout_ms) {
  int64_t end = rtu_now_mono_ms() + timeout_ms;
  while (ep_count() < n) {
    if (rtu_now_mono_ms() > end) return false;
    usleep(20000);
  }
  return true;
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) {
    fprintf(stderr, "cannot find a closed port\n");
    exit(2);
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- helpers ------------------------------------------------------------ */

/* The value of a field of a form-encoded body (decoded, malloc'd), or NULL. */
static char *form_field(const char *body, const char *name) {
  size_t nlen = strlen(name);
  for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
    if (strncmp(p, name, nlen) || p[nlen] != '=') continue;
    const char *v = p + nlen + 1, *end = strchr(v, '&');
    size_t n = end ? (size_t)(end - v) : strlen(v);
    char *out = malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
      if (v[i] == '+') *o++ = ' ';
      else if (v[i] == '%' && i + 2 < n + 1) {
        char hex[3] = {v[i + 1], v[i + 2], 0};
        *o++ = (char)strtol(hex, NULL, 16);
        i += 2;
      } else *o++ = v[i];
    }
    *o = '\0';
    return out;
  }
  return NULL;
}

static char *b64(const char *s) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = strlen(s);
  char *out = malloc(n * 4 / 3 + 5), *o = out;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
    if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)s[i + 2];
    *o++ = tab[v >> 18 & 63];
    *o++ = tab[v >> 12 & 63];
    *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? tab[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

static char *url_of(const char *path) {
  char *u;
  if (asprintf(&u, "http://127.0.0.1:%d%s", ep_port, path) < 0) exit(2);
  return u;
}

/* An oauthbearer configuration built by hand (rtu_config_load is tested apart). */
static rtu_config_t *oauth_cfg(const char *base, const char *path) {
  rtu_config_t *cfg = calloc(1, sizeof *cfg);
  cfg->kafka_brokers = strdup("127.0.0.1:1"); /* refused: no broker is needed */
  cfg->kafka_sasl_mechanism = strdup("oauthbearer");
  cfg->kafka_sasl_username = strdup("svc user@example");
  cfg->kafka_sasl_password = strdup("p&ss w=rd+%é");
  cfg->kafka_oauth_base_url = strdup(base);
  cfg->kafka_oauth_path = path ? strdup(path) : NULL;
  cfg->kafka_oauth_grant_type = strdup("password");
  cfg->kafka_oauth_client_id = strdup("rtu-client");
  cfg->kafka_oauth_client_secret = strdup("s3cr:et");
  cfg->kafka_oauth_margin_ms = 60000;
  cfg->kafka_connection_timeout_ms = 10000;
  cfg->producer_compression = strdup("none");
  return cfg;
}

/* ---- tests -------------------------------------------------------------- */

static void test_url(void) {
  const char *cases[][3] = {
      {"http://h:1", "/token", "http://h:1/token"},
      {"http://h:1/", "/token", "http://h:1/token"},
      {"http://h:1/", "token", "http://h:1/token"},
      {"http://h:1", "token", "http://h:1/token"},
      {"http://h:1/realms/r/token", NULL, "http://h:1/realms/r/token"},
      {"http://h:1/auth", "/realms/r/protocol/openid-connect/token",
       "http://h:1/auth/realms/r/protocol/openid-connect/token"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rtu_config_t *cfg = oauth_cfg(cases[i][0], cases[i][1]);
    char *u = rtu_oauth_url(cfg);
    CHECK_STR(u, cases[i][2]);
    free(u);
    rtu_config_free(cfg);
  }
}

static void test_config(void) {
  char *root = tmp_dir("oauth");
  char *map_dir = sub_dir(root, "map");
  write_file(map_dir, "mapTable.json",
             "{\"p\": {\"destination\": \"p\", \"conversion\": {\"ID\": {\"fieldName\": \"id\"}},"
             " \"fieldsInKey\": [\"id\"]}}");
  env_clear();
  env_set("KAFKA_BROKERS", "localhost:9092");
  env_set("KAFKA_GROUP_ID", "g");
  env_set("MONGODB_URL", "mongodb://localhost:27017");
  env_set("PROJECTIONS_DATABASE_NAME", "projections");
  env_set("PROJECTIONS_CHANGES_ENABLED", "false");
  env_set("SYSTEM_OF_RECORDS", "sor");
  env_set("MAP_TABLE_FOLDER", map_dir);
  env_set("INVARIANT_TOPIC_MAP", "{\"t\": \"p\"}");
  env_set("LUA_RUNTIME_FOLDER", lua_runtime_dir());

  /* Defaults, and nothing required while the mechanism is not oauthbearer. */
  rtu_problems_t pr = {0};
  rtu_config_t *cfg = rtu_config_load(env_get, NULL, &pr);
  CHECK(cfg != NULL);
  print_problems(&pr);
  if (cfg) {
    CHECK_STR(cfg->kafka_oauth_grant_type, "password");
    CHECK_EQ(cfg->kafka_oauth_margin_ms, 60000);
    CHECK_STR(cfg->kafka_oauth_base_url, NULL);
    CHECK_STR(cfg->kafka_oauth_client_id, NULL);
  }
  rtu_config_free(cfg);
  rtu_problems_free(&pr);

  /* oauthbearer without credentials: SASL is off, as with the other mechanisms. */
  env_set("KAFKA_SASL_MECHANISM", "oauthbearer");
  cfg = rtu_config_load(env_get, NULL, &pr);
  CHECK(cfg != NULL);
  print_problems(&pr);
  rtu_config_free(cfg);
  rtu_problems_free(&pr);

  env_set("KAFKA_SASL_USERNAME", "u");
  env_set("KAFKA_SASL_OAUTH_GRANT_TYPE", "client_credentials");
  env_set("KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS", "-1");
  cfg = rtu_config_load(env_get, NULL, &pr);
  CHECK(cfg == NULL);
  CHECK(find_problem(&pr, "KAFKA_SASL_OAUTH_BASE_URL", "required", NULL) != NULL);
  CHECK(find_problem(&pr, "KAFKA_SASL_OAUTH_GRANT_TYPE", "client_credentials", NULL) != NULL);
  CHECK(find_problem(&pr, "KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS", "-1", NULL) != NULL);
  CHECK(find_problem(&pr, "KAFKA_SASL_PASSWORD", "oauthbearer", NULL) != NULL);
  rtu_config_free(cfg);
  rtu_problems_free(&pr);

  env_set("KAFKA_SASL_OAUTH_BASE_URL", "ftp://idp");
  cfg = rtu_config_load(env_get, NULL, &pr);
  CHECK(find_problem(&pr, "KAFKA_SASL_OAUTH_BASE_URL", "ftp://idp", NULL) != NULL);
  rtu_config_free(cfg);
  rtu_problems_free(&pr);

  env_set("KAFKA_SASL_OAUTH_BASE_URL", "https://idp.example");
  env_set("KAFKA_SASL_OAUTH_PATH", "/oauth/token");
  env_set("KAFKA_SASL_OAUTH_GRANT_TYPE", "password");
  env_set("KAFKA_SASL_OAUTH_CLIENT_ID", "id");
  env_set("KAFKA_SASL_OAUTH_CLIENT_SECRET", "secret");
  env_set("KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS", "30000");
  env_set("KAFKA_SASL_PASSWORD", "p");
  cfg = rtu_config_load(env_get, NULL, &pr);
  CHECK(cfg != NULL);
  print_problems(&pr);
  if (cfg) {
    CHECK_STR(cfg->kafka_oauth_base_url, "https://idp.example");
    CHECK_STR(cfg->kafka_oauth_path, "/oauth/token");
    CHECK_STR(cfg->kafka_oauth_client_id, "id");
    CHECK_STR(cfg->kafka_oauth_client_secret, "secret");
    CHECK_EQ(cfg->kafka_oauth_margin_ms, 30000);
  }
  rtu_config_free(cfg);
  rtu_problems_free(&pr);
  env_clear();
  rm_rf(root);
  free(map_dir);
  free(root);
}

static void test_request_fields(void) {
  rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", "/realms/r/token");
  free(cfg->kafka_oauth_base_url);
  cfg->kafka_oauth_base_url = url_of("/");
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-1\",\"token_type\":\"Bearer\",\"expires_in\":300}");
  rtu_oauth_token_t tok;
  char err[RTU_ERRSTR_SIZE] = "";
  int64_t before = rtu_now_ms();
  rtu_err_t rc = rtu_oauth_fetch(cfg, &tok, err, sizeof err);
  int64_t after = rtu_now_ms();
  CHECK_EQ(rc, RTU_OK);
  if (rc != RTU_OK) fprintf(stderr, "    %s\n", err);
  CHECK_EQ(ep_count(), 1);
  CHECK_STR(ep.method, "POST");
  CHECK_STR(ep.path, "/realms/r/token");
  CHECK_HAS(ep.content_type, "application/x-www-form-urlencoded");
  char *f = form_field(ep.body, "grant_type");
  CHECK_STR(f, "password");
  free(f);
  f = form_field(ep.body, "username");
  CHECK_STR(f, "svc user@example");
  free(f);
  f = form_field(ep.body, "password");
  CHECK_STR(f, "p&ss w=rd+%é");
  free(f);
  f = form_field(ep.body, "client_id");
  CHECK_STR(f, NULL); /* in the basic authentication, not in the body too */
  free(f);
  char *cred = b64("rtu-client:s3cr:et"), expected[256];
  snprintf(expected, sizeof expected, "Basic %s", cred);
  CHECK_STR(ep.auth, expected);
  free(cred);
  CHECK_STR(tok.access_token, "tok-1");
  CHECK(tok.expires_at_ms >= before + 300000 && tok.expires_at_ms <= after + 300000,
        "expires_at %lld, asked between %lld and %lld", (long long)tok.expires_at_ms,
        (long long)before, (long long)after);
  CHECK_EQ(tok.lifetime_ms, tok.expires_at_ms - 60000);
  rtu_oauth_token_free(&tok);
  CHECK_STR(tok.access_token, NULL);

  /* A public client: its id in the body, no basic authentication. */
  free(cfg->kafka_oauth_client_secret);
  cfg->kafka_oauth_client_secret = NULL;
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-2\",\"expires_in\":\"120\"}");
  rc = rtu_oauth_fetch(cfg, &tok, err, sizeof err);
  CHECK_EQ(rc, RTU_OK);
  f = form_field(ep.body, "client_id");
  CHECK_STR(f, "rtu-client");
  free(f);
  CHECK_STR(ep.auth, "");
  CHECK_STR(tok.access_token, "tok-2");
  CHECK(tok.expires_at_ms - rtu_now_ms() > 110000 && tok.expires_at_ms - rtu_now_ms() <= 120000);
  rtu_oauth_token_free(&tok);

  /* Neither id nor secret: nothing of the client is sent. */
  free(cfg->kafka_oauth_client_id);
  cfg->kafka_oauth_client_id = NULL;
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-3\",\"expires_in\":300}");
  CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_OK);
  f = form_field(ep.body, "client_id");
  CHECK_STR(f, NULL);
  free(f);
  CHECK_STR(ep.auth, "");
  rtu_oauth_token_free(&tok);
  rtu_config_free(cfg);
}

/* The expiry from a JWT's exp when the answer has no expires_in, and a margin
 * longer than the token's life. */
static void test_expiry(void) {
  rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", "/token");
  free(cfg->kafka_oauth_base_url);
  cfg->kafka_oauth_base_url = url_of("");
  char claims[128], *p64, answer[512], err[RTU_ERRSTR_SIZE] = "";
  long long exp = (long long)(rtu_now_ms() / 1000) + 3600;
  snprintf(claims, sizeof claims, "{\"sub\":\"svc\",\"exp\":%lld}", exp);
  p64 = b64(claims);
  for (char *c = p64; *c; c++) /* base64url, unpadded */
    if (*c == '+') *c = '-';
    else if (*c == '/') *c = '_';
    else if (*c == '=') *c = '\0';
  snprintf(answer, sizeof answer, "{\"access_token\":\"eyJhbGciOiJub25lIn0.%s.sig\"}", p64);
  free(p64);
  ep_reset(ANSWER_TOKEN, answer);
  rtu_oauth_token_t tok;
  CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_OK);
  CHECK_EQ(tok.expires_at_ms, exp * 1000);
  CHECK_EQ(tok.lifetime_ms, exp * 1000 - 60000);
  rtu_oauth_token_free(&tok);

  /* Not a JWT and no expires_in: no lifetime to give librdkafka. */
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"opaque\"}");
  CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_ERR_TRANSIENT);
  CHECK_HAS(err, "no expires_in");

  /* 10 s of life, 60 s of margin: renewed at half its life. */
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"short\",\"expires_in\":10}");
  int64_t now = rtu_now_ms();
  CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_OK);
  CHECK(tok.lifetime_ms >= now + 4500 && tok.lifetime_ms <= now + 5500, "lifetime in %lld ms",
        (long long)(tok.lifetime_ms - now));
  rtu_oauth_token_free(&tok);
  rtu_config_free(cfg);
}

static void test_fetch_errors(void) {
  rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", NULL);
  char *url = url_of("/token"), err[RTU_ERRSTR_SIZE];
  free(cfg->kafka_oauth_base_url);
  cfg->kafka_oauth_base_url = strdup(url);
  rtu_oauth_token_t tok;
  struct {
    answer_mode_t mode;
    const char *says;
  } cases[] = {
      {ANSWER_500, "HTTP 500: {\"error\":\"server_error\"}"},
      {ANSWER_BAD_JSON, "not a JSON object"},
      {ANSWER_NO_TOKEN, "no access_token"},
      {ANSWER_MAC, "token_type is not Bearer"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ep_reset(cases[i].mode, NULL);
    err[0] = '\0';
    CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_ERR_TRANSIENT);
    CHECK_HAS(err, url);
    CHECK_HAS(err, cases[i].says);
    CHECK_STR(tok.access_token, NULL);
  }
  free(cfg->kafka_oauth_base_url);
  if (asprintf(&cfg->kafka_oauth_base_url, "http://127.0.0.1:%d/token", closed_port()) < 0) exit(2);
  err[0] = '\0';
  CHECK_EQ(rtu_oauth_fetch(cfg, &tok, err, sizeof err), RTU_ERR_TRANSIENT);
  CHECK_HAS(err, cfg->kafka_oauth_base_url);
  CHECK_HAS(err, "connect");
  free(url);
  rtu_config_free(cfg);
}

/* ---- on librdkafka handles ------------------------------------------------ */

static pthread_mutex_t errs_lock = PTHREAD_MUTEX_INITIALIZER;
static char errs[4096];

static void test_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  (void)opaque;
  pthread_mutex_lock(&errs_lock);
  size_t len = strlen(errs);
  snprintf(errs + len, sizeof errs - len, "%s: %s\n", rd_kafka_err2name(err), reason);
  pthread_mutex_unlock(&errs_lock);
}

/* A producer configured as rtu configures its clients, with the test's error
 * callback; started as rtu starts it. */
static rd_kafka_t *new_handle(const rtu_config_t *cfg) {
  char err[RTU_ERRSTR_SIZE];
  rd_kafka_conf_t *conf = rtu_kafka_conf_new(cfg, RTU_KAFKA_PRODUCER, err, sizeof err);
  if (!conf) {
    fprintf(stderr, "rtu_kafka_conf_new: %s\n", err);
    exit(2);
  }
  rd_kafka_conf_set_error_cb(conf, test_error_cb);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "rd_kafka_new: %s\n", err);
    exit(2);
  }
  CHECK_EQ(rtu_oauth_start(rk, err, sizeof err), RTU_OK);
  return rk;
}

/* stdout (the log lines) into a file while a handle lives. */
static int saved_stdout = -1;
static char log_path[] = "/tmp/rtu-unit-oauth-log-XXXXXX";

static void capture_start(void) {
  fflush(stdout);
  int fd = mkstemp(log_path);
  saved_stdout = dup(1);
  if (fd < 0 || saved_stdout < 0 || dup2(fd, 1) < 0) exit(2);
  close(fd);
}

static char *capture_end(void) {
  fflush(stdout);
  dup2(saved_stdout, 1);
  close(saved_stdout);
  FILE *f = fopen(log_path, "r");
  char *text = calloc(1, 65536);
  if (f && text) {
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
  }
  if (f) fclose(f);
  unlink(log_path);
  strcpy(log_path, "/tmp/rtu-unit-oauth-log-XXXXXX");
  return text;
}

/* The token is set on the handle, and asked for again at 80% of its life less
 * the margin: 6 s of life, 2.5 s of margin, renewed after 0.8 * 3.5 = 2.8 s
 * (librdkafka checks each second: by 3.8 s). Without the margin it would be
 * 4.8 s; a token refused by librdkafka would be asked again after 10 s. */
static void test_handle_refresh(void) {
  rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", "/token");
  free(cfg->kafka_oauth_base_url);
  cfg->kafka_oauth_base_url = url_of("");
  cfg->kafka_oauth_margin_ms = 2500;
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-h\",\"token_type\":\"bearer\",\"expires_in\":6}");
  errs[0] = '\0';
  capture_start();
  rd_kafka_t *rk = new_handle(cfg);
  bool two = wait_requests(2, 10000);
  rd_kafka_destroy(rk);
  char *log = capture_end();
  CHECK(two, "%d token request(s) within 10 s", ep_count());
  if (two) {
    int64_t gap = ep.at[1] - ep.at[0];
    CHECK(gap >= 2400 && gap <= 4400, "renewed after %lld ms, expected 2800 to 3800",
          (long long)gap);
  }
  CHECK_STR(ep.path, "/token");
  char *f = form_field(ep.body, "username");
  CHECK_STR(f, "svc user@example");
  free(f);
  CHECK_HAS(log, "Kafka OAuth token obtained");
  CHECK(!strstr(log, "cannot get a Kafka OAuth token"), "%s", log);
  CHECK(!strstr(log, "renewed at half its life"), "%s", log);
  CHECK(!strstr(errs, "OAUTHBEARER"), "%s", errs);
  /* No SASL username or password set for OAUTHBEARER (librdkafka warned). */
  CHECK(!strstr(log, "CONFWARN"), "%s", log);
  free(log);
  rtu_config_free(cfg);
}

/* The handles of one process share a token while less than half its life has
 * passed: two handles, one request, both told. */
static void test_handle_shared(void) {
  rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", "/shared");
  free(cfg->kafka_oauth_base_url);
  cfg->kafka_oauth_base_url = url_of("");
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-s\",\"expires_in\":300}");
  capture_start();
  rd_kafka_t *a = new_handle(cfg), *b = new_handle(cfg);
  char *log = NULL;
  int64_t end = rtu_now_mono_ms() + 10000;
  for (;;) {
    usleep(50000);
    fflush(stdout);
    FILE *f = fopen(log_path, "r");
    char buf[8192] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    char *second = strstr(buf, "Kafka OAuth token obtained");
    if ((second && strstr(second + 1, "Kafka OAuth token obtained")) || rtu_now_mono_ms() > end)
      break;
  }
  rd_kafka_destroy(a);
  rd_kafka_destroy(b);
  log = capture_end();
  CHECK_EQ(ep_count(), 1);
  CHECK_HAS(log, "\"fromEndpoint\":true");
  CHECK_HAS(log, "\"fromEndpoint\":false");
  CHECK(!strstr(log, "cannot get a Kafka OAuth token"), "%s", log);
  free(log);

  /* Another endpoint (or username) is another token. */
  free(cfg->kafka_oauth_path);
  cfg->kafka_oauth_path = strdup("/shared2");
  ep_reset(ANSWER_TOKEN, "{\"access_token\":\"tok-s2\",\"expires_in\":300}");
  a = new_handle(cfg);
  CHECK(wait_requests(1, 10000));
  CHECK_STR(ep.path, "/shared2");
  rd_kafka_destroy(a);
  rtu_config_free(cfg);
}

/* A failing endpoint: librdkafka is told (its error names the URL) and a log
 * line names it too. */
static void test_handle_failure(void) {
  const char *modes[] = {"500", "bad JSON", "connection refused"};
  for (int i = 0; i < 3; i++) {
    rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", NULL);
    free(cfg->kafka_oauth_base_url);
    if (i == 2) {
      if (asprintf(&cfg->kafka_oauth_base_url, "http://127.0.0.1:%d/token", closed_port()) < 0)
        exit(2);
    } else {
      cfg->kafka_oauth_base_url = url_of("/token");
    }
    ep_reset(i == 0 ? ANSWER_500 : ANSWER_BAD_JSON, NULL);
    pthread_mutex_lock(&errs_lock);
    errs[0] = '\0';
    pthread_mutex_unlock(&errs_lock);
    capture_start();
    rd_kafka_t *rk = new_handle(cfg);
    bool told = false;
    for (int64_t end = rtu_now_mono_ms() + 10000; !told && rtu_now_mono_ms() < end;) {
      rd_kafka_poll(rk, 100); /* serves the error callback */
      pthread_mutex_lock(&errs_lock);
      told = strstr(errs, "SASL OAUTHBEARER") != NULL;
      pthread_mutex_unlock(&errs_lock);
    }
    rd_kafka_destroy(rk);
    char *log = capture_end();
    CHECK(told, "%s: librdkafka's errors: %s", modes[i], errs);
    CHECK_HAS(errs, cfg->kafka_oauth_base_url);
    CHECK_HAS(log, "cannot get a Kafka OAuth token");
    CHECK_HAS(log, cfg->kafka_oauth_base_url);
    CHECK(!strstr(log, "p&ss") && !strstr(log, "s3cr"), "a secret in the log: %s", log);
    free(log);
    rtu_config_free(cfg);
  }
}

/* A handle without oauthbearer, or with oauthbearer but no credentials (SASL
 * off), gets no SASL queue and asks for no token. */
static void test_handle_plain(void) {
  for (int i = 0; i < 2; i++) {
    rtu_config_t *cfg = oauth_cfg("http://127.0.0.1:0", NULL);
    if (i == 0) {
      free(cfg->kafka_sasl_mechanism);
      cfg->kafka_sasl_mechanism = strdup("plain");
    } else {
      free(cfg->kafka_sasl_username);
      free(cfg->kafka_sasl_password);
      cfg->kafka_sasl_username = cfg->kafka_sasl_password = NULL;
    }
    free(cfg->kafka_oauth_base_url);
    cfg->kafka_oauth_base_url = url_of("/token");
    ep_reset(ANSWER_TOKEN, "{\"access_token\":\"t\",\"expires_in\":300}");
    rd_kafka_t *rk = new_handle(cfg);
    rd_kafka_queue_t *q = rd_kafka_queue_get_sasl(rk);
    CHECK(q == NULL, "case %d", i);
    if (q) rd_kafka_queue_destroy(q);
    rd_kafka_poll(rk, 500);
    CHECK_EQ(ep_count(), 0);
    rd_kafka_destroy(rk);
    rtu_config_free(cfg);
  }
}

int main(void) {
  struct MHD_Daemon *d = ep_start();
  test_url();
  test_config();
  test_request_fields();
  test_expiry();
  test_fetch_errors();
  test_handle_plain();
  test_handle_failure();
  test_handle_refresh();
  test_handle_shared();
  MHD_stop_daemon(d);
  return CHECK_DONE();
}
