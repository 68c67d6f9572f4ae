/*
 * messages.c: owns the format of the Kafka messages rtu produces (pr-update v1
 * and projection-change JSON, with the reference's __internal__kafkaInfo) and
 * their hand-over to the producer. It decides neither which records get a
 * message (batch.c and stage.c do) nor how they are delivered (emit.c).
 */
#include "messages.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"
#include "bson_raw.h"
#include "json_write.h"
#include "key_text.h"
#include "strategies.h"

/* How long a run waits for its messages' delivery reports. */
#define FLUSH_TIMEOUT_MS 10000

/* Empties s for the next message and keeps its buffer: the producer copies what
 * it is given, and a new string a message grew from nothing by reallocations
 * (bson_string_truncate would shrink the buffer to 16 bytes). */
static void sb_clear(bson_string_t *s) {
  s->len = 0;
  s->str[0] = '\0';
}

/* The original key and Kafka coordinates, as pr-update and PC messages carry them. */
static void append_kafka_info_json(bson_string_t *out, const rtu_msg_t *msg, bool ts_as_ms) {
  bson_t tmp = BSON_INITIALIZER; /* the key alone */
  rtu_key_text_append(&tmp, "key", msg->key, msg->key_len);
  bson_string_append(out, "{\"topic\":");
  rtu_json_write_string(out, msg->topic, strlen(msg->topic));
  bson_string_append(out, ",\"partition\":");
  rtu_json_write_int(out, msg->partition);
  bson_string_append(out, ",\"offset\":");
  rtu_json_write_int(out, msg->offset);
  bson_string_append(out, ",\"key\":");
  rtu_json_write_first(&tmp, out);
  bson_string_append(out, ",\"timestamp\":");
  /* a string either way: the milliseconds' digits, or the ISO date */
  bson_string_append_c(out, '"');
  if (ts_as_ms) {
    rtu_json_write_int(out, msg->timestamp);
  } else {
    char ts[40];
    rtu_iso8601(msg->timestamp, ts, sizeof ts);
    bson_string_append(out, ts);
  }
  bson_string_append_c(out, '"');
  bson_string_append_c(out, '}');
  bson_destroy(&tmp);
}

/* The record's _id as hex, from after or else before; "" when neither has one. */
static void document_id(const rtu_pr_update_t *u, char id[25]) {
  bson_iter_t it;
  id[0] = '\0';
  if (u->after && rtu_bson_raw_find(&it, u->after, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
  else if (u->before && rtu_bson_raw_find(&it, u->before, "_id") && BSON_ITER_HOLDS_OID(&it))
    bson_oid_to_string(bson_iter_oid(&it), id);
}

/* pr-update v1: the value of one record's message. Appended piece by piece
 * rather than with printf and libbson's escaping: it runs once per record. */
static void pr_update_json(bson_string_t *val, const rtu_config_t *cfg, const rtu_projection_t *p,
                           const rtu_pr_update_t *u, const char *iso_now, bool db2) {
  char id[25];
  document_id(u, id);
  bson_string_append(val, "{\"operationType\":\"");
  bson_string_append(val, u->op);
  bson_string_append(val, "\",\"operationTimestamp\":\"");
  bson_string_append(val, iso_now);
  bson_string_append(val, "\",\"documentId\":\"");
  bson_string_append(val, id);
  bson_string_append(val, "\",\"projectionName\":");
  rtu_json_write_string(val, p->name, strlen(p->name));
  bson_string_append(val, ",\"source\":");
  rtu_json_write_string(val, cfg->system_of_records, strlen(cfg->system_of_records));
  bson_string_append(val, ",\"primaryKeys\":[");
  for (size_t k = 0; k < p->npk; k++) {
    if (k) bson_string_append_c(val, ',');
    rtu_json_write_string(val, p->pk_dst[k], strlen(p->pk_dst[k]));
  }
  bson_string_append(val, "]");
  /* Reference 6.2: before is null with db2 and absent on insert; after is absent
   * on delete (soft ones too). */
  if (db2) {
    bson_string_append(val, ",\"before\":null");
  } else if (u->before) {
    bson_string_append(val, ",\"before\":");
    rtu_json_write_doc(u->before, false, val);
  }
  if (u->after && strcmp(u->op, "DELETE") != 0) {
    bson_string_append(val, ",\"after\":");
    rtu_json_write_doc(u->after, false, val);
  }
  bson_string_append(val, ",\"__internal__kafkaInfo\":");
  append_kafka_info_json(val, u->msg, false);
  bson_string_append(val, "}");
}

rtu_err_t rtu_messages_pr_updates(rtu_emit_t *em, const rtu_config_t *cfg,
                                  const rtu_projection_t *p, const rtu_pr_update_t *ups, size_t n,
                                  int64_t now, char *errstr, size_t errstr_size) {
  if (n == 0) return RTU_OK;
  bool db2 = !strcmp(cfg->adapter, "basic") || !strcmp(cfg->adapter, "db2");
  char iso[40];
  rtu_iso8601(now, iso, sizeof iso);
  bson_string_t *key = bson_string_new(NULL), *val = bson_string_new(NULL);
  rtu_err_t rc = RTU_OK;
  for (size_t i = 0; i < n && rc == RTU_OK; i++) {
    sb_clear(key);
    sb_clear(val);
    rtu_json_write_doc(ups[i].key, false, key);
    pr_update_json(val, cfg, p, &ups[i], iso, db2);
    rc = rtu_emit_produce(em, p->pr_update_topic, key->str, key->len, val->str, val->len, errstr,
                          errstr_size);
  }
  bson_string_free(key, true);
  bson_string_free(val, true);
  if (rc == RTU_OK) rc = rtu_emit_flush(em, FLUSH_TIMEOUT_MS, errstr, errstr_size);
  return rc;
}

rtu_err_t rtu_messages_pcs(rtu_emit_t *em, const rtu_projection_t *p, const rtu_identified_t *ids,
                           size_t n, const rtu_msg_t *const *named, char *errstr,
                           size_t errstr_size) {
  bson_string_t *key = bson_string_new(NULL), *val = bson_string_new(NULL);
  rtu_err_t rc = RTU_OK;
  bool produced = false;
  for (size_t i = 0; i < n && rc == RTU_OK; i++) {
    const char *topic = NULL;
    for (size_t t = 0; t < p->npc_topics; t++)
      if (!strcmp(p->pc_topics[t].single_view, ids[i].type)) topic = p->pc_topics[t].strategy;
    if (!topic) continue;
    sb_clear(key);
    sb_clear(val);
    rtu_json_write_doc(&ids[i].identifier, false, key);
    bson_string_append(val, "{\"identifier\":");
    bson_string_append(val, key->str);
    bson_string_append(val, ",\"__internal__kafkaInfo\":");
    append_kafka_info_json(val, named[ids[i].origin], true);
    bson_string_append(val, "}");
    rc = rtu_emit_produce(em, topic, key->str, key->len, val->str, val->len, errstr, errstr_size);
    if (rc == RTU_OK) produced = true;
  }
  bson_string_free(key, true);
  bson_string_free(val, true);
  if (rc == RTU_OK && produced) rc = rtu_emit_flush(em, FLUSH_TIMEOUT_MS, errstr, errstr_size);
  return rc;
}
