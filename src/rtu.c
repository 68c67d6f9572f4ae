/*
 * rtu.c: the functions of rtu.h: status names and a message's headers. No
 * state.
 */
#include "rtu.h"

#include <librdkafka/rdkafka.h>

/* The headers are parsed (by librdkafka, on the first call, kept) only for an
 * adapter that reads them, on the worker rather than the consumer thread: the
 * shipped adapters never look. The run owning the view is the only reader of
 * its message. */
const struct rd_kafka_headers_s *rtu_msg_headers(const rtu_msg_t *m) {
  if (m->headers || !m->source) return m->headers;
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m->source, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
  return hdrs;
}

const char *rtu_err_name(rtu_err_t err) {
  switch (err) {
  case RTU_OK: return "ok";
  case RTU_ERR_CONFIG: return "config";
  case RTU_ERR_DATA: return "data";
  case RTU_ERR_SCRIPT: return "script";
  case RTU_ERR_TRANSIENT: return "transient";
  case RTU_ERR_FATAL: return "fatal";
  }
  return "unknown";
}
