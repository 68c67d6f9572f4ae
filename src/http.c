/*
 * http.c: owns the HTTP server (libmicrohttpd, its own polling thread) and the
 * mapping of the four routes to health.c and metrics.c. It only reads their state:
 * no route changes anything, so a probe can never disturb consumption. It knows
 * nothing of Kafka, MongoDB or scripts.
 */
#define _GNU_SOURCE /* vasprintf */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "rtu.h"

struct rtu_http_s {
  struct MHD_Daemon *daemon;
  int port;
  int64_t liveness_ms; /* LIVENESS_INTERVAL_MS */
};

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  rtu_log(RTU_LOG_WARN, "http server", "source", "libmicrohttpd", "cause", line, NULL);
}

/* Queues body (malloc'd, freed here whatever happens) with its status and type. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
                             const char *type) {
  if (!body) {
    status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    type = "text/plain; charset=utf-8";
    body = strdup("out of memory\n");
    if (!body) return MHD_NO;
    len = strlen(body);
  }
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  enum MHD_Result ret = MHD_NO;
  if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) == MHD_YES &&
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
      (status != MHD_HTTP_METHOD_NOT_ALLOWED ||
       MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") == MHD_YES))
    ret = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static char *dup_printf(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *dup_printf(size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  *len = (size_t)n;
  return s;
}

/* lc39's status body: {"status":"OK"|"KO","name":...,"version":...}. */
static enum MHD_Result status_reply(struct MHD_Connection *conn, bool ok) {
  size_t len = 0;
  char *body = dup_printf(&len, "{\"status\":\"%s\",\"name\":\"rtu\",\"version\":\"%s\"}",
                          ok ? "OK" : "KO", RTU_VERSION);
  return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, len,
               "application/json; charset=utf-8");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  const rtu_http_t *h = cls;
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  (void)req_cls;
  size_t len = 0;
  bool known = !strcmp(url, "/-/healthz") || !strcmp(url, "/-/ready") ||
               !strcmp(url, "/-/check-up") || !strcmp(url, "/-/metrics");
  /* Bodies are made before reply(): its arguments are evaluated in no set order. */
  char *body;
  if (!known) {
    body = dup_printf(&len, "{\"error\":\"not found\"}");
    return reply(conn, MHD_HTTP_NOT_FOUND, body, len, "application/json; charset=utf-8");
  }
  if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
    body = dup_printf(&len, "{\"error\":\"method not allowed\"}");
    return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, len, "application/json; charset=utf-8");
  }
  if (!strcmp(url, "/-/healthz")) return status_reply(conn, rtu_health_alive(h->liveness_ms));
  if (!strcmp(url, "/-/ready")) return status_reply(conn, rtu_health_ready());
  if (!strcmp(url, "/-/check-up")) {
    bool ok = false;
    body = rtu_health_checkup_json(&len, &ok);
    /* A stalled poll loop is as bad as a dependency down. */
    if (ok && !rtu_health_alive(h->liveness_ms)) ok = false;
    return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, len,
                 "application/json; charset=utf-8");
  }
  body = rtu_metrics_render(&len);
  return reply(conn, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

rtu_http_t *rtu_http_start(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  struct sockaddr_in in4 = {0};
  struct sockaddr_in6 in6 = {0};
  const struct sockaddr *addr;
  unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
  const char *host = cfg->http_host ? cfg->http_host : "0.0.0.0";
  if (inet_pton(AF_INET, host, &in4.sin_addr) == 1) {
    in4.sin_family = AF_INET;
    in4.sin_port = htons((uint16_t)cfg->http_port);
    addr = (const struct sockaddr *)&in4;
  } else if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons((uint16_t)cfg->http_port);
    addr = (const struct sockaddr *)&in6;
    flags |= MHD_USE_IPv6;
  } else {
    snprintf(errstr, errstr_size, "HTTP_HOST: '%s' is not an IP address", host);
    return NULL;
  }
  rtu_http_t *h = calloc(1, sizeof *h);
  if (!h) {
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
  }
  h->liveness_ms = cfg->liveness_interval_ms > 0 ? cfg->liveness_interval_ms : RTU_HTTP_LIVENESS_MS;
  /* A handful of probes and a scraper: a small cap keeps a misbehaving client
   * from taking threads or memory from the pipeline. */
  h->daemon = MHD_start_daemon(flags, (uint16_t)cfg->http_port, NULL, NULL, on_request, h,
                               /* first, or MHD logs its own way before reading it */
                               MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
                               MHD_OPTION_SOCK_ADDR, addr,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                               MHD_OPTION_END);
  if (!h->daemon) {
    snprintf(errstr, errstr_size, "cannot listen on %s:%d (address in use?)", host,
             cfg->http_port);
    free(h);
    return NULL;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info && info->port ? info->port : cfg->http_port;
  char port[16];
  snprintf(port, sizeof port, "%d", h->port);
  rtu_log(RTU_LOG_INFO, "http listening", "host", host, "#port", port, NULL);
  return h;
}

int rtu_http_port(const rtu_http_t *h) { return h ? h->port : -1; }

void rtu_http_stop(rtu_http_t *h) {
  if (!h) return;
  MHD_stop_daemon(h->daemon);
  free(h);
}
