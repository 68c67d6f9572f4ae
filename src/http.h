/*
 * http.h: the HTTP routes of a running rtu (/-/healthz, /-/ready, /-/check-up,
 * /-/metrics) on HTTP_HOST:HTTP_PORT, served by libmicrohttpd's own thread so they
 * answer while a batch runs.
 */
#ifndef RTU_HTTP_H
#define RTU_HTTP_H

#include <stddef.h>

#include "config.h"

typedef struct rtu_http_s rtu_http_t;

/* Health routes fail /-/healthz after this long without a poll-loop heartbeat,
 * when cfg->liveness_interval_ms (LIVENESS_INTERVAL_MS) is not set. */
#define RTU_HTTP_LIVENESS_MS 30000

/* Binds cfg->http_host:cfg->http_port (port 0: a free port) and starts serving;
 * logs "http listening" with "host" and "port". NULL with errstr set on failure
 * (port in use, bad address). */
rtu_http_t *rtu_http_start(const rtu_config_t *cfg, char *errstr, size_t errstr_size);

/* The port actually bound. */
int rtu_http_port(const rtu_http_t *h);

/* Stops serving (waits for requests in flight) and frees; NULL is a no-op. */
void rtu_http_stop(rtu_http_t *h);

#endif
