/*
 * test_http.c: the HTTP routes (src/http.c) on loopback, port 0: status codes of
 * /-/healthz, /-/ready, /-/check-up and /-/metrics as health and metrics change,
 * their content types, 404 for other paths and 405 for other methods.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "health.h"
#include "http.h"
#include "metrics.h"

static int port;

/* One request (HTTP/1.0: the server closes after answering); the whole response
 * malloc'd in *out, the status code returned, -1 on a connection failure. */
static int request(const char *method, const char *path, char **out) {
  *out = NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  char req[256];
  int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  ssize_t r;
  while (buf && (r = read(fd, buf + len, cap - len - 1)) > 0) {
    len += (size_t)r;
    if (cap - len < 2048) {
      char *b = realloc(buf, cap * 2);
      if (!b) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = b;
      cap *= 2;
    }
  }
  close(fd);
  if (!buf) return -1;
  buf[len] = '\0';
  *out = buf;
  int status = -1;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
  return status;
}

static const char *body_of(const char *resp) {
  const char *b = resp ? strstr(resp, "\r\n\r\n") : NULL;
  return b ? b + 4 : "";
}

static void expect(const char *method, const char *path, int status, const char *in_body) {
  char *resp = NULL;
  int got = request(method, path, &resp);
  CHECK(got == status, "%s %s: %d, expected %d\n%s", method, path, got, status, resp ? resp : "");
  if (in_body)
    CHECK(strstr(body_of(resp), in_body), "%s %s: body lacks %s\n%s", method, path, in_body,
          resp ? resp : "");
  free(resp);
}

int main(void) {
  rtu_metrics_init();
  rtu_health_init();
  rtu_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.http_host = "127.0.0.1";
  cfg.http_port = 0;
  char err[256] = "";
  rtu_http_t *h = rtu_http_start(&cfg, err, sizeof err);
  CHECK(h != NULL, "%s", err);
  if (!h) return CHECK_DONE();
  port = rtu_http_port(h);
  CHECK(port > 0 && port < 65536, "port %d", port);

  /* Start-up: alive, not ready. */
  expect("GET", "/-/healthz", 200, "{\"status\":\"OK\",\"name\":\"rtu\",\"version\":\"" RTU_VERSION "\"}");
  expect("GET", "/-/ready", 503, "{\"status\":\"KO\"");
  expect("GET", "/-/check-up", 503, "\"stoppedPartitions\":[]");

  rtu_health_joined(true);
  rtu_health_dependency(RTU_DEP_MONGODB, true, NULL);
  rtu_health_dependency(RTU_DEP_SCRIPTS, true, NULL);
  rtu_health_partition_stopped("orders", 2, 17, "invalid JSON");
  expect("GET", "/-/ready", 200, "{\"status\":\"OK\"");
  expect("GET", "/-/check-up", 200,
         "{\"topic\":\"orders\",\"partition\":2,\"offset\":17,\"cause\":\"invalid JSON\"}");

  rtu_metrics_add(RTU_C_APPLIED, "orders", 12);
  char *resp = NULL;
  CHECK_EQ(request("GET", "/-/metrics", &resp), 200);
  CHECK(resp && strstr(resp, "Content-Type: text/plain; version=0.0.4"), "%s", resp ? resp : "");
  CHECK(strstr(body_of(resp), "\nrtu_messages_applied_total{topic=\"orders\"} 12\n"),
        "%.300s", resp ? resp : "");
  CHECK(strstr(body_of(resp), "# TYPE rtu_consumer_batch_processing histogram\n"));
  free(resp);
  CHECK_EQ(request("GET", "/-/healthz", &resp), 200);
  CHECK(resp && strstr(resp, "Content-Type: application/json"), "%s", resp ? resp : "");
  free(resp);

  expect("GET", "/", 404, NULL);
  expect("GET", "/-/nope", 404, NULL);
  expect("POST", "/-/healthz", 405, NULL);
  expect("DELETE", "/-/metrics", 405, NULL);
  CHECK_EQ(request("HEAD", "/-/ready", &resp), 200);
  free(resp);

  /* A poll loop silent for longer than the limit fails liveness. */
  CHECK(!rtu_health_alive(-1));

  /* The same port again: refused with a message, not a crash. */
  cfg.http_port = port;
  rtu_http_t *h2 = rtu_http_start(&cfg, err, sizeof err);
  CHECK(h2 == NULL);
  CHECK(strstr(err, "cannot listen"), "%s", err);
  rtu_http_stop(h2);

  rtu_http_stop(h);

  /* LIVENESS_INTERVAL_MS: /-/healthz turns KO after that long without a
   * heartbeat, and OK again with the next one. */
  cfg.http_port = 0;
  cfg.liveness_interval_ms = 1000;
  rtu_health_heartbeat();
  h = rtu_http_start(&cfg, err, sizeof err);
  CHECK(h != NULL, "%s", err);
  if (h) {
    port = rtu_http_port(h);
    expect("GET", "/-/healthz", 200, "{\"status\":\"OK\"");
    usleep(1300 * 1000);
    expect("GET", "/-/healthz", 503, "{\"status\":\"KO\"");
    expect("GET", "/-/check-up", 503, "{\"status\":\"OK\""); /* dependencies fine, loop stalled */
    rtu_health_heartbeat();
    expect("GET", "/-/healthz", 200, "{\"status\":\"OK\"");
    rtu_http_stop(h);
  }
  rtu_health_free();
  rtu_metrics_free();
  return CHECK_DONE();
}
