/*
 * mapped.h: the normalised change of one message, as the mapping gives it
 * (script_map.c through Lua, map_fast.c in C) and batch.c applies it. A type
 * only: script_map.c initialises and frees it.
 */
#ifndef RTU_MAPPED_H
#define RTU_MAPPED_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "rtu.h"

typedef enum { RTU_OP_UPSERT, RTU_OP_INSERT, RTU_OP_UPDATE, RTU_OP_DELETE } rtu_op_t;

/* The normalised change of one message. The bson_t members live inside the struct
 * (libbson forbids moving them): keep the struct where it was initialised. */
typedef struct {
  bool skip; /* the adapter asked to skip it (reason in errstr of the call) */
  rtu_op_t op;
  bson_t key;     /* primary key, fields in fieldsInKey order */
  bson_t fields;  /* mapped fields to set (not for deletes) */
  bool has_old_key;
  bson_t old_key; /* primary-key change: the record that goes away */
  bool has_position;
  int64_t position;
  bool has_timestamp; /* the adapter's timestampDate */
  int64_t timestamp;  /* ms */
  bool empty_key; /* a field name in fields is empty: the driver must refuse the write */
} rtu_mapped_t;

/* The message's time for its projection: the adapter's timestampDate, else the
 * Kafka timestamp. */
static inline int64_t rtu_mapped_timestamp(const rtu_mapped_t *m, const rtu_msg_t *msg) {
  return m->has_timestamp ? m->timestamp : msg->timestamp;
}

#endif
