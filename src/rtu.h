/*
 * rtu.h: what every subsystem shares: the status codes, the error-buffer
 * convention and the view of one consumed message. Nothing here allocates or
 * touches I/O.
 *
 * Convention (librdkafka's): a function that can fail returns rtu_err_t and writes
 * one human line into a caller buffer `char *errstr, size_t errstr_size`. The
 * message names the file, field, topic/partition/offset as far as the callee knows
 * them; callers prepend what they know more.
 */
#ifndef RTU_H
#define RTU_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  RTU_OK = 0,
  RTU_ERR_CONFIG,    /* configuration invalid: exit 2 at start, refused on reload */
  RTU_ERR_DATA,      /* this message cannot be applied: stop its partition */
  RTU_ERR_SCRIPT,    /* a Lua script failed (error, timeout, memory) on a message */
  RTU_ERR_TRANSIENT, /* MongoDB or Kafka unreachable: retry with backoff */
  RTU_ERR_FATAL,     /* out of memory, broken invariant */
} rtu_err_t;

#define RTU_ERRSTR_SIZE 512

struct rd_kafka_headers_s;
struct rd_kafka_message_s;

/* One consumed message as the pipeline sees it: a view, owned by the consumer
 * (or a test), valid for the run it is part of. */
typedef struct {
  const char *topic;
  int32_t partition;
  int64_t offset;
  int64_t timestamp; /* ms since epoch, as Kafka gives it */
  const char *key;   /* NULL when the message has no key */
  size_t key_len;
  const char *value; /* NULL for a tombstone */
  size_t value_len;
  const struct rd_kafka_headers_s *headers; /* given by a test; else see source */
  /* The consumed message, whose headers are parsed only when asked for (the
   * shipped adapters never read them): rtu_msg_headers. NULL in tests. */
  struct rd_kafka_message_s *source;
} rtu_msg_t;

/* The message's headers, NULL when none. */
const struct rd_kafka_headers_s *rtu_msg_headers(const rtu_msg_t *m);

const char *rtu_err_name(rtu_err_t err);

/* Transitional: value.c and script.c (split in parallel) still take util.c's
 * helpers from here; once they include util.h themselves, this line goes. */
#include "util.h"

#endif
