/*
 * batch.c: owns a partition run: mapping every message, folding the changes of
 * each record, deciding the counter guard in offset order, and turning each
 * record's outcome into at most one write.
 *
 * Why it reads first: with the stored counter of every record of the run known
 * (one query), applying the run's changes one by one can be simulated exactly in
 * memory: stale messages are skipped, USE_UPSERT=false conflicts are found before
 * anything is written, and each record gets one write carrying its final state.
 * The writes of a run go out as one unordered bulk, each still guarded by the
 * counter so a concurrent writer (another instance during a rebalance) is never
 * overwritten by an older change.
 *
 * It also owns the batch's strategies stage: the documents a run's strategies
 * need wait for the other runs of the batch, and each projection's go through
 * one identify call, so a hop's lookup and a single view found from several
 * partitions are paid once per batch, not once per partition run.
 *
 * It knows nothing of Lua (script.c maps) or of the MongoDB API (store.c writes).
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_raw.h"
#include "emit.h"
#include "json_write.h"
#include "key_text.h"
#include "log.h"
#include "metrics.h"
#include "script_map.h"
#include "strategies.h"

typedef struct {
  const bson_t *key;
  uint32_t msg;  /* index into the run */
  bool old_key;  /* the delete half of a primary-key change */
  bool applied;  /* set by the last simulation: not stale, within the run */
} event_t;

typedef struct {
  uint32_t first, count; /* events[first .. first+count) */
  bool s0_exists, s0_has_counter;
  int64_t s0_counter;
  bson_t *s0; /* the stored document, kept only when strategies need it */
} group_t;

typedef enum { ST_ABSENT, ST_PUBLIC, ST_DELETED } state_t;

typedef struct {
  state_t state;
  bool recreated;    /* the stored record was hard-deleted within the run */
  int64_t last_event; /* index of the last applied event, -1 when none */
  int64_t counter;    /* of the last applied event: the one stored */
  int64_t guard;      /* highest applied counter: the write's guard */
  uint32_t fields_from; /* events of this group from which fields accumulate */
  uint32_t stale;
  bson_oid_t oid; /* _id of the record if this run creates it */
  int64_t fail_msg; /* message index that cannot be applied, -1 when none */
  const char *fail_cause;
  int32_t write; /* index of its write in the run's writes, -1 when none */
} outcome_t;

struct rtu_batch_s {
  const rtu_config_t *cfg;
  rtu_script_t *script;
  rtu_store_t *store;
  rtu_emit_t *emit; /* NULL when nothing is produced */
  rtu_mapped_t *mapped; /* per message; never moved once initialised */
  size_t mapped_cap;
  event_t *events;
  group_t *groups;
  rtu_write_t *writes;
  int32_t *write_group;
  outcome_t *outcomes; /* per group, for the strategies stage */
  size_t events_cap, writes_cap;
};

rtu_batch_t *rtu_batch_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store) {
  rtu_batch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->cfg = cfg;
  b->script = script;
  b->store = store;
  return b;
}

void rtu_batch_set_generation(rtu_batch_t *b, const rtu_config_t *cfg, rtu_script_t *script) {
  b->cfg = cfg;
  b->script = script;
}

void rtu_batch_set_emit(rtu_batch_t *b, rtu_emit_t *emit) { b->emit = emit; }

/* Capacities up to this many messages are kept between runs; above it the buffers
 * are released after a run that used less than a quarter of them, so one large run
 * (a backlog's first fetch) does not hold its memory for the life of the worker. */
#define KEEP_CAP 1024

static void release_writes(rtu_batch_t *b) {
  for (size_t i = 0; i < b->writes_cap; i++) {
    bson_destroy(&b->writes[i].filter);
    bson_destroy(&b->writes[i].update);
    bson_free(b->writes[i].error);
  }
  free(b->writes);
  free(b->write_group);
  b->writes = NULL;
  b->write_group = NULL;
  b->writes_cap = 0;
}

static void release(rtu_batch_t *b) {
  for (size_t i = 0; i < b->mapped_cap; i++) rtu_mapped_destroy(&b->mapped[i]);
  free(b->mapped);
  free(b->events);
  free(b->groups);
  free(b->outcomes);
  b->mapped = NULL;
  b->events = NULL;
  b->groups = NULL;
  b->outcomes = NULL;
  b->mapped_cap = b->events_cap = 0;
  release_writes(b);
}

/* Grows the buffers for a run of n messages. The mapped structs hold bson_t that
 * must not move, so a bigger run allocates a new array and frees the old one. */
static bool reserve(rtu_batch_t *b, size_t n) {
  if (n > b->mapped_cap) {
    release(b);
    b->mapped = rtu_aligned_calloc(n, sizeof *b->mapped);
    b->events = calloc(2 * n, sizeof *b->events);
    b->groups = calloc(2 * n, sizeof *b->groups);
    b->outcomes = calloc(2 * n, sizeof *b->outcomes);
    if (!b->mapped || !b->events || !b->groups || !b->outcomes) return false;
    for (size_t i = 0; i < n; i++) rtu_mapped_init(&b->mapped[i]);
    b->mapped_cap = n;
    b->events_cap = 2 * n;
  }
  return true;
}

/* The writes (two bson_t each, the largest part of a run's memory) are sized to
 * the records of the run, not to its events (up to two per message). */
static bool reserve_writes(rtu_batch_t *b, size_t ngroups) {
  if (ngroups <= b->writes_cap) return true;
  release_writes(b);
  b->writes = rtu_aligned_calloc(ngroups, sizeof *b->writes);
  b->write_group = calloc(ngroups, sizeof *b->write_group);
  if (!b->writes || !b->write_group) return false;
  for (size_t i = 0; i < ngroups; i++) {
    bson_init(&b->writes[i].filter);
    bson_init(&b->writes[i].update);
  }
  b->writes_cap = ngroups;
  return true;
}

void rtu_batch_free(rtu_batch_t *b) {
  if (!b) return;
  release(b);
  free(b);
}

static int key_cmp(const bson_t *a, const bson_t *b) {
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  return memcmp(bson_get_data(a), bson_get_data(b), a->len);
}

static int event_cmp(const void *pa, const void *pb) {
  const event_t *a = pa, *b = pb;
  int c = key_cmp(a->key, b->key);
  if (c) return c;
  if (a->msg != b->msg) return a->msg < b->msg ? -1 : 1;
  return (int)b->old_key - (int)a->old_key;
}

/* ---- the stored state of the run's records ------------------------------ */

typedef struct {
  rtu_batch_t *b;
  const rtu_projection_t *p;
  size_t ngroups;
  bool keep_docs;
} read_ctx_t;

static void on_stored(void *vctx, const bson_t *doc) {
  read_ctx_t *ctx = vctx;
  const rtu_projection_t *p = ctx->p;
  bson_t key = BSON_INITIALIZER;
  bson_iter_t it;
  for (size_t i = 0; i < p->npk; i++)
    if (bson_iter_init_find(&it, doc, p->pk_dst[i])) bson_append_iter(&key, p->pk_dst[i], -1, &it);
  size_t lo = 0, hi = ctx->ngroups;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = key_cmp(&key, ctx->b->events[ctx->b->groups[mid].first].key);
    if (c == 0) {
      group_t *g = &ctx->b->groups[mid];
      g->s0_exists = true;
      if (ctx->keep_docs && !g->s0) g->s0 = bson_copy(doc);
      if (bson_iter_init_find(&it, doc, "__internal__counter") &&
          (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it) ||
           BSON_ITER_HOLDS_DOUBLE(&it))) {
        g->s0_has_counter = true;
        g->s0_counter = bson_iter_as_int64(&it);
      }
      break;
    }
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  bson_destroy(&key);
}

/* ---- simulation --------------------------------------------------------- */


static int64_t counter_of(const rtu_mapped_t *m, const rtu_msg_t *msg) {
  return m->has_position ? m->position : msg->timestamp;
}

/* Applies the group's events with msg < limit one by one, as the reference does
 * with a read-modify-write per message. */
static void simulate(rtu_batch_t *b, const group_t *g, const rtu_msg_t *msgs, uint32_t limit,
                     outcome_t *o) {
  const rtu_config_t *cfg = b->cfg;
  memset(o, 0, sizeof *o);
  o->state = g->s0_exists ? ST_PUBLIC : ST_ABSENT; /* DELETED vs PUBLIC: no matter here */
  o->last_event = -1;
  o->guard = INT64_MIN;
  o->fail_msg = -1;
  o->write = -1;
  bool has_counter = g->s0_has_counter;
  int64_t counter = g->s0_counter;
  o->fields_from = g->first;
  for (uint32_t e = g->first; e < g->first + g->count; e++) b->events[e].applied = false;
  for (uint32_t e = g->first; e < g->first + g->count; e++) {
    event_t *ev = &b->events[e];
    if (ev->msg >= limit) break;
    const rtu_mapped_t *m = &b->mapped[ev->msg];
    int64_t c = counter_of(m, &msgs[ev->msg]);
    if (cfg->force_check_on_offset && has_counter && c < counter) {
      o->stale++;
      continue;
    }
    rtu_op_t op = ev->old_key ? RTU_OP_DELETE : m->op;
    switch (op) {
    case RTU_OP_INSERT:
      if (o->state != ST_ABSENT) {
        o->fail_msg = ev->msg;
        o->fail_cause = "insert of a record that already exists (USE_UPSERT=false)";
        return;
      }
      /* fallthrough */
    case RTU_OP_UPSERT:
      if (o->state == ST_ABSENT && g->s0_exists) o->recreated = true;
      o->state = ST_PUBLIC;
      break;
    case RTU_OP_UPDATE:
      if (o->state == ST_ABSENT) {
        o->fail_msg = ev->msg;
        o->fail_cause = "update of a record that does not exist (USE_UPSERT=false)";
        return;
      }
      o->state = ST_PUBLIC;
      break;
    case RTU_OP_DELETE:
      if (o->state != ST_ABSENT && cfg->delete_mechanism == RTU_DELETE_SOFT) {
        o->state = ST_DELETED;
        break;
      }
      /* A hard delete, or a delete of nothing: no record, so no stored counter
       * either, and the next message applies whatever its counter. */
      if (o->state != ST_ABSENT) o->fields_from = e + 1;
      o->state = ST_ABSENT;
      has_counter = false;
      o->counter = c;
      if (c > o->guard) o->guard = c;
      o->last_event = e;
      ev->applied = true;
      continue;
    }
    has_counter = true;
    counter = c;
    o->counter = c;
    if (c > o->guard) o->guard = c;
    o->last_event = e;
    ev->applied = true;
  }
}

/* ---- building writes ---------------------------------------------------- */

/* {$or: [{__internal__counter: {$lte: counter}}, {__internal__counter: {$exists: false}}]},
 * written as bytes (rtu_bson_raw_t): it and the metadata go into every write, and
 * twenty bson_append_* calls per record were about 8 % of a basic message. */
static void append_guard(bson_t *filter, int64_t counter) {
  rtu_bson_raw_t r;
  rtu_bson_raw_init(&r);
  size_t ors = rtu_bson_raw_doc_begin(&r, BSON_TYPE_ARRAY, "$or");
  size_t a = rtu_bson_raw_doc_begin(&r, BSON_TYPE_DOCUMENT, "0");
  size_t cond = rtu_bson_raw_doc_begin(&r, BSON_TYPE_DOCUMENT, "__internal__counter");
  rtu_bson_raw_int(&r, BSON_TYPE_INT64, "$lte", counter);
  rtu_bson_raw_doc_end(&r, cond);
  rtu_bson_raw_doc_end(&r, a);
  size_t b = rtu_bson_raw_doc_begin(&r, BSON_TYPE_DOCUMENT, "1");
  cond = rtu_bson_raw_doc_begin(&r, BSON_TYPE_DOCUMENT, "__internal__counter");
  rtu_bson_raw_head(&r, BSON_TYPE_BOOL, "$exists");
  rtu_bson_raw_le(&r, 0, 1);
  rtu_bson_raw_doc_end(&r, cond);
  rtu_bson_raw_doc_end(&r, b);
  rtu_bson_raw_doc_end(&r, ors);
  rtu_bson_raw_concat(&r, filter);
}

/* Appends the reference's metadata fields to set. True when the original key is
 * a document with an empty field name (the update must then be validated). */
static bool append_metadata(bson_t *set, const rtu_mapped_t *m, const rtu_msg_t *msg,
                            state_t state, int64_t counter, int64_t now) {
  char iso[40], offset[24];
  rtu_iso8601(msg->timestamp, iso, sizeof iso);
  size_t offset_len = rtu_int_text(msg->offset, offset);
  const char *st = state == ST_DELETED ? "DELETED" : "PUBLIC";
  const char *type = m->has_position ? "position" : "timestamp";
  rtu_bson_raw_t r;
  rtu_bson_raw_init(&r);
  rtu_bson_raw_utf8(&r, "__STATE__", st, strlen(st));
  rtu_bson_raw_int(&r, BSON_TYPE_DATE_TIME, "updatedAt", now);
  rtu_bson_raw_int(&r, BSON_TYPE_DATE_TIME, "timestamp", msg->timestamp);
  rtu_bson_raw_int(&r, BSON_TYPE_INT64, "__internal__counter", counter);
  rtu_bson_raw_utf8(&r, "__internal__counterType", type, strlen(type));
  size_t info = rtu_bson_raw_doc_begin(&r, BSON_TYPE_DOCUMENT, "__internal__kafkaInfo");
  rtu_bson_raw_utf8(&r, "topic", msg->topic, strlen(msg->topic));
  rtu_bson_raw_int(&r, BSON_TYPE_INT32, "partition", msg->partition);
  rtu_bson_raw_utf8(&r, "offset", offset, offset_len);
  bson_t key = BSON_INITIALIZER;
  bool empty = rtu_key_text_append(&key, "key", msg->key, msg->key_len);
  rtu_bson_raw_bytes(&r, bson_get_data(&key) + 4, key.len - 5);
  bson_destroy(&key);
  rtu_bson_raw_utf8(&r, "timestamp", iso, strlen(iso));
  rtu_bson_raw_doc_end(&r, info);
  rtu_bson_raw_concat(&r, set);
  return empty;
}

/* True when every key of a is a key of b, checked in one pass: the mapping writes
 * the fields of every message in the order of its conversion, so an older
 * message's keys are in the newest one's order (a full row image has the same
 * keys), and then it has nothing to add. False does not mean some key is missing. */
static bool keys_within(const bson_t *a, const bson_t *b) {
  bson_iter_t ia, ib;
  if (!bson_iter_init(&ia, a) || !bson_iter_init(&ib, b)) return false;
  while (bson_iter_next(&ia)) {
    uint32_t n = bson_iter_key_len(&ia);
    const char *k = bson_iter_key(&ia);
    bool found = false;
    while (bson_iter_next(&ib))
      if (bson_iter_key_len(&ib) == n && !memcmp(bson_iter_key(&ib), k, n)) {
        found = true;
        break;
      }
    if (!found) return false;
  }
  return true;
}

/* The fields set by the group's upserts from `from` on, the newest value of each
 * field winning: the same as $set-ing them one message after another. True when
 * one of the messages has an empty field name. */
static bool append_merged_fields(rtu_batch_t *b, const group_t *g, uint32_t from, int64_t last,
                                 bson_t *out) {
  /* Newest first; a field already written is skipped. */
  bool first = true, empty = false;
  const bson_t *newest = NULL;
  for (int64_t e = last; e >= (int64_t)from && e >= (int64_t)g->first; e--) {
    const event_t *ev = &b->events[e];
    const rtu_mapped_t *m = &b->mapped[ev->msg];
    if (!ev->applied || ev->old_key || m->op == RTU_OP_DELETE || bson_empty(&m->fields)) continue;
    empty |= m->empty_key;
    if (first) {
      bson_concat(out, &m->fields);
      newest = &m->fields;
      first = false;
      continue;
    }
    if (keys_within(&m->fields, newest)) continue;
    rtu_bson_raw_append_missing(out, &m->fields);
  }
  return empty;
}

static void build_write(rtu_batch_t *b, const group_t *g, const outcome_t *o,
                        const rtu_msg_t *msgs, rtu_write_t *w, int64_t now, bool *emit) {
  const rtu_config_t *cfg = b->cfg;
  const event_t *last = &b->events[o->last_event];
  const rtu_mapped_t *m = &b->mapped[last->msg];
  const rtu_msg_t *msg = &msgs[last->msg];
  bson_reinit(&w->filter);
  bson_reinit(&w->update);
  bson_free(w->error);
  w->error = NULL;
  w->validate = true;
  *emit = true;
  bson_concat(&w->filter, last->key);
  /* The highest counter applied: the stored one may be above the final one when
   * the record was hard-deleted and written again with a lower counter. */
  if (cfg->force_check_on_offset) append_guard(&w->filter, o->guard);

  if (o->state == ST_ABSENT) {
    if (!g->s0_exists) {
      *emit = false; /* created and deleted within the run, or a delete of nothing */
      return;
    }
    w->kind = RTU_WRITE_DELETE;
    w->upsert = false;
    return;
  }
  if (o->recreated) {
    /* Hard-deleted then written again: the record is only what came after. */
    w->kind = RTU_WRITE_REPLACE;
    w->upsert = true;
    append_merged_fields(b, g, o->fields_from, o->last_event, &w->update);
    append_metadata(&w->update, m, msg, o->state, o->counter, now);
    BSON_APPEND_DATE_TIME(&w->update, "createdAt", now);
    return;
  }
  bson_t set, soi;
  bool fields_written = false;
  w->kind = RTU_WRITE_UPDATE;
  BSON_APPEND_DOCUMENT_BEGIN(&w->update, "$set", &set);
  size_t before = set.len;
  bool empty = append_merged_fields(b, g, o->fields_from, o->last_event, &set);
  fields_written = set.len != before;
  empty |= append_metadata(&set, m, msg, o->state, o->counter, now);
  w->validate = empty;
  bson_append_document_end(&w->update, &set);
  BSON_APPEND_DOCUMENT_BEGIN(&w->update, "$setOnInsert", &soi);
  BSON_APPEND_OID(&soi, "_id", &o->oid);
  BSON_APPEND_DATE_TIME(&soi, "createdAt", now);
  bson_append_document_end(&w->update, &soi);
  /* A soft delete alone must never create a record (the reference's null-key bug). */
  w->upsert = !(o->state == ST_DELETED && !fields_written);
  if (!g->s0_exists && o->state == ST_DELETED && !fields_written) *emit = false;
}

static void fail_at(rtu_run_result_t *res, rtu_err_t err, const rtu_msg_t *msg,
                    const char *cause) {
  if (res->failed && res->fail_offset <= msg->offset) return;
  res->failed = true;
  res->err = err;
  res->fail_offset = msg->offset;
  snprintf(res->cause, sizeof res->cause, "%s", cause);
}

/* ---- strategies --------------------------------------------------------- */

/* The record as stored after the run: what the writes made of the stored one.
 * Its fields and metadata are those its write sets, taken from the write when
 * there is one rather than merged and formatted a second time. */
static void build_image(rtu_batch_t *b, const group_t *g, const outcome_t *o,
                        const rtu_msg_t *msgs, int64_t now, bson_t *img) {
  const event_t *last = &b->events[o->last_event];
  bson_iter_t it, seen;
  const rtu_write_t *w = o->write >= 0 ? &b->writes[o->write] : NULL;
  if (w && w->kind == RTU_WRITE_REPLACE) {
    bson_concat(img, &w->update); /* fields, metadata and createdAt */
  } else if (w && w->kind == RTU_WRITE_UPDATE && bson_iter_init_find(&it, &w->update, "$set") &&
             BSON_ITER_HOLDS_DOCUMENT(&it)) {
    const uint8_t *data;
    uint32_t len;
    bson_t set;
    bson_iter_document(&it, &len, &data);
    if (bson_init_static(&set, data, len)) bson_concat(img, &set);
  } else {
    /* no write: a soft delete of a record never stored (never a replacement) */
    append_merged_fields(b, g, o->fields_from, o->last_event, img);
    append_metadata(img, &b->mapped[last->msg], &msgs[last->msg], o->state, o->counter, now);
  }
  if (g->s0 && !o->recreated) {
    rtu_bson_raw_append_missing(img, g->s0);
  } else {
    if (!o->recreated) BSON_APPEND_DATE_TIME(img, "createdAt", now); /* a replacement has it */
    if (g->s0 && rtu_bson_raw_find(&it, g->s0, "_id")) bson_append_iter(img, "_id", 3, &it);
  }
  if (!rtu_bson_raw_find(&seen, img, "_id")) BSON_APPEND_OID(img, "_id", &o->oid);
}

static rtu_err_t find_cb(void *ctx, const char *collection, const bson_t *filter, const bson_t *opts,
                         void (*each)(void *, const bson_t *), void *each_ctx, char *errstr,
                         size_t sz) {
  return rtu_store_find(ctx, collection, filter, opts, each, each_ctx, errstr, sz);
}

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

/* Kafka projection-change messages (kafkaProjectionChanges.json), key = identifier;
 * named[d] is the message the changes found from document d name. */
static rtu_err_t emit_pc_messages(rtu_batch_t *b, const rtu_projection_t *p,
                                  const rtu_identified_t *ids, size_t nids,
                                  const rtu_msg_t *const *named, bool *produced, char *err,
                                  size_t sz) {
  bson_string_t *key = bson_string_new(NULL), *val = bson_string_new(NULL);
  rtu_err_t rc = RTU_OK;
  for (size_t i = 0; i < nids && rc == RTU_OK; i++) {
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
    rc = rtu_emit_produce(b->emit, topic, key->str, key->len, val->str, val->len, err, sz);
    if (rc == RTU_OK) *produced = true;
  }
  bson_string_free(key, true);
  bson_string_free(val, true);
  return rc;
}

/* pr-update v1: one message per record written, key = its primary key. */
static rtu_err_t emit_pr_updates(rtu_batch_t *b, const rtu_projection_t *p, const rtu_msg_t *msgs,
                                 size_t ngroups, const bson_t *images, const bool *has_image,
                                 int64_t now, const rtu_run_result_t *res, bool *produced,
                                 char *err, size_t sz) {
  const rtu_config_t *cfg = b->cfg;
  bool db2 = !strcmp(cfg->adapter, "basic") || !strcmp(cfg->adapter, "db2");
  char iso[40];
  rtu_iso8601(now, iso, sizeof iso);
  bson_string_t *key = bson_string_new(NULL), *val = bson_string_new(NULL);
  rtu_err_t rc = RTU_OK;
  for (size_t g = 0; g < ngroups && rc == RTU_OK; g++) {
    const outcome_t *o = &b->outcomes[g];
    const group_t *gr = &b->groups[g];
    if (o->last_event < 0) continue;
    const event_t *last = &b->events[o->last_event];
    if (msgs[last->msg].offset >= res->next_offset) continue;
    if (o->state == ST_ABSENT && !gr->s0_exists) continue; /* nothing was ever stored */
    const char *op = !gr->s0_exists ? "INSERT"
                     : (o->state == ST_ABSENT || o->state == ST_DELETED) ? "DELETE"
                                                                        : "UPDATE";
    char id[25] = "";
    bson_iter_t it;
    const bson_t *after = has_image[g] ? &images[g] : NULL;
    if (after && rtu_bson_raw_find(&it, after, "_id") && BSON_ITER_HOLDS_OID(&it))
      bson_oid_to_string(bson_iter_oid(&it), id);
    else if (gr->s0 && rtu_bson_raw_find(&it, gr->s0, "_id") && BSON_ITER_HOLDS_OID(&it))
      bson_oid_to_string(bson_iter_oid(&it), id);
    sb_clear(key);
    sb_clear(val);
    rtu_json_write_doc(last->key, false, key);
    /* By hand: printf and libbson's escape were a tenth of a food message. */
    bson_string_append(val, "{\"operationType\":\"");
    bson_string_append(val, op);
    bson_string_append(val, "\",\"operationTimestamp\":\"");
    bson_string_append(val, iso);
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
    } else if (gr->s0) {
      bson_string_append(val, ",\"before\":");
      rtu_json_write_doc(gr->s0, false, val);
    }
    if (after && strcmp(op, "DELETE") != 0) {
      bson_string_append(val, ",\"after\":");
      rtu_json_write_doc(after, false, val);
    }
    bson_string_append(val, ",\"__internal__kafkaInfo\":");
    append_kafka_info_json(val, &msgs[last->msg], false);
    bson_string_append(val, "}");
    rc = rtu_emit_produce(b->emit, p->pr_update_topic, key->str, key->len, val->str, val->len, err,
                          sz);
    if (rc == RTU_OK) *produced = true;
  }
  bson_string_free(key, true);
  bson_string_free(val, true);
  return rc;
}

/* The documents handed to strategies, in the order of the messages their
 * changes name (the latest of a record's run for its image), so that a single
 * view several of them lead to names the latest. since is the earliest message a
 * document stands for: where the partition stops when its strategies fail. It is
 * the same message but for an image that also stands for the record before the
 * run (rtu_strategies_same_input): it answers for the run's first message of it. */
typedef struct {
  const bson_t *doc;
  uint32_t origin; /* index of the message */
  uint32_t since;  /* index of the earliest message */
  uint32_t pos;    /* ties keep the order they were found in */
} run_doc_t;

static int run_doc_cmp(const void *pa, const void *pb) {
  const run_doc_t *a = pa, *b = pb;
  if (a->origin != b->origin) return a->origin < b->origin ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int run_doc_since_cmp(const void *pa, const void *pb) {
  const run_doc_t *a = pa, *b = pb;
  if (a->since != b->since) return a->since < b->since ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Sorts docs, origin and since by origin, and fills rerun with the indexes of
 * the sorted documents by since: the order in which the one-by-one reruns look
 * for the failing document, so that it is the one of the earliest message. */
static bool sort_run_docs(const bson_t **docs, uint32_t *origin, uint32_t *since, uint32_t *rerun,
                          size_t n) {
  run_doc_t *order = calloc(n ? n : 1, sizeof *order);
  if (!order) return false;
  for (size_t i = 0; i < n; i++) order[i] = (run_doc_t){docs[i], origin[i], since[i], (uint32_t)i};
  qsort(order, n, sizeof *order, run_doc_cmp);
  for (size_t i = 0; i < n; i++) {
    docs[i] = order[i].doc;
    origin[i] = order[i].origin;
    since[i] = order[i].since;
    order[i].pos = (uint32_t)i;
  }
  qsort(order, n, sizeof *order, run_doc_since_cmp);
  for (size_t i = 0; i < n; i++) rerun[i] = order[i].pos;
  free(order);
  return true;
}

/* A strategy failed on doc: the partition stops at the message it stands for,
 * and the cause names the record. */
static void strategy_failed(const rtu_projection_t *p, const bson_t *doc, const rtu_msg_t *msg,
                            const char *err, rtu_run_result_t *res) {
  bson_t key = BSON_INITIALIZER;
  bson_iter_t it;
  for (size_t i = 0; i < p->npk; i++)
    if (bson_iter_init_find(&it, doc, p->pk_dst[i])) bson_append_iter(&key, p->pk_dst[i], -1, &it);
  bson_string_t *k = bson_string_new(NULL);
  rtu_json_write_doc(&key, false, k);
  char cause[RTU_ERRSTR_SIZE];
  snprintf(cause, sizeof cause, "strategy failed on the %.60s record %.100s: %.300s", p->name,
           k->str, err);
  bson_string_free(k, true);
  bson_destroy(&key);
  fail_at(res, RTU_ERR_SCRIPT, msg, cause);
  res->next_offset = res->fail_offset;
  rtu_metrics_add(strstr(err, "STRATEGIES_MAX_EXEC_TIME_MS") ? RTU_C_STRATEGY_TIMEOUTS
                                                             : RTU_C_STRATEGY_ERRORS,
                  NULL, 1);
}

/* ---- the strategies stage ------------------------------------------------ */

/* A call of the stage reads at most this many documents at once (whole runs, so
 * a run alone may exceed it): the Lua heap of a merged identify call and its
 * lookups' answers grow with it, a poll's documents do not reach it whole. */
#define STAGE_MAX_DOCS 512

void rtu_deferred_free(rtu_deferred_t *d) {
  if (d->owned)
    for (size_t k = 0; k < d->n; k++) bson_destroy((bson_t *)d->docs[k]);
  free(d->docs);
  free(d->origin);
  free(d->since);
  free(d->rerun);
  free(d->skipped);
  memset(d, 0, sizeof *d);
}

/* A run whose end moved back: count what it applied again, as rtu_batch_run does. */
static void recount_applied(rtu_deferred_t *d) {
  rtu_run_result_t *res = d->res;
  if (!d->skipped) return; /* a run of its own: rtu_batch_run counts after */
  res->applied = 0;
  for (size_t i = 0; i < d->nmsgs && d->msgs[i].offset < res->next_offset; i++)
    if (!d->skipped[i]) res->applied++;
  if (res->applied >= res->stale) res->applied -= res->stale;
}

static void stage_fail(rtu_deferred_t *const *runs, size_t nruns, rtu_err_t rc, const char *err,
                       bool kafka) {
  for (size_t r = 0; r < nruns; r++) {
    runs[r]->err = rc;
    snprintf(runs[r]->res->cause, sizeof runs[r]->res->cause, "%s", err);
    runs[r]->res->kafka_unavailable = kafka;
  }
}

/*
 * One identify call over the documents of runs[0..nruns) (distinct partitions),
 * then one bulk of projection changes, their Kafka messages and one flush.
 * Returns how many of the runs it settled: all of them, or, when a strategy
 * fails, those up to the run it failed in (stopped at the failing document's
 * earliest message, everything before it done); the caller goes on with the
 * others. A transient or fatal error is set on every run it settled.
 */
static size_t stage_call(rtu_batch_t *b, size_t projection, rtu_deferred_t *const *runs,
                         size_t nruns) {
  const rtu_projection_t *p = &b->cfg->projections[projection];
  size_t n = 0, handled = nruns, nids = 0, nuse;
  for (size_t r = 0; r < nruns; r++) n += runs[r]->n;
  const bson_t **docs = calloc(n ? n : 1, sizeof *docs);
  const rtu_msg_t **named = calloc(n ? n : 1, sizeof *named);
  const rtu_msg_t **from = calloc(n ? n : 1, sizeof *from);
  uint32_t *rerun = calloc(n ? n : 1, sizeof *rerun);
  uint32_t *run_of = calloc(n ? n : 1, sizeof *run_of);
  rtu_identified_t *ids = NULL;
  rtu_pc_t *pcs = NULL;
  char err[RTU_ERRSTR_SIZE];
  bool produced = false;
  rtu_err_t rc;
  if (!docs || !named || !from || !rerun || !run_of) {
    stage_fail(runs, nruns, RTU_ERR_FATAL, "out of memory", false);
    goto done;
  }
  /* Run after run, each by the message its changes name; the reruns that look
   * for a failing document go run after run too, each by its earliest messages. */
  for (size_t r = 0, base = 0; r < nruns; base += runs[r]->n, r++) {
    const rtu_deferred_t *d = runs[r];
    for (size_t k = 0; k < d->n; k++) {
      docs[base + k] = d->docs[k];
      named[base + k] = &d->msgs[d->origin[k]];
      from[base + k] = &d->msgs[d->since[k]];
      rerun[base + k] = (uint32_t)base + d->rerun[k];
      run_of[base + k] = (uint32_t)r;
    }
  }
  size_t failed;
  rtu_metrics_add(RTU_C_STRATEGY_DOCUMENTS, NULL, n);
  int64_t t0 = rtu_now_mono_us();
  rc = rtu_strategies_identify(b->script, projection, docs, rerun, n, find_cb, b->store, &ids,
                               &nids, &failed, err, sizeof err);
  rtu_metrics_observe(RTU_H_STRATEGY, (double)(rtu_now_mono_us() - t0) / 1e6);
  nuse = nids;
  if (rc == RTU_ERR_SCRIPT) {
    if (failed >= n) failed = 0; /* cannot happen: the earliest, then */
    size_t fr = run_of[failed];
    strategy_failed(p, docs[failed], from[failed], err, runs[fr]->res);
    recount_applied(runs[fr]);
    /* The single views came from the reruns, run after run and in each by the
     * earliest message: those of the runs before and of the failing run's
     * earlier messages lead, each naming the earliest message that found it, as
     * applying the messages one by one up to the failing one would. */
    nuse = 0;
    while (nuse < nids && (run_of[ids[nuse].origin] < fr ||
                           (run_of[ids[nuse].origin] == fr &&
                            from[ids[nuse].origin]->offset < from[failed]->offset)))
      nuse++;
    memcpy(named, from, n * sizeof *named);
    handled = fr + 1;
    rc = RTU_OK;
  }
  if (rc != RTU_OK) {
    stage_fail(runs, handled, rc, err, false);
    goto done;
  }
  pcs = calloc(nuse ? nuse : 1, sizeof *pcs);
  if (!pcs) {
    stage_fail(runs, handled, RTU_ERR_FATAL, "out of memory", false);
    goto done;
  }
  for (size_t i = 0; i < nuse; i++)
    pcs[i] = (rtu_pc_t){ids[i].type, &ids[i].identifier, named[ids[i].origin]};
  rc = rtu_store_write_pcs(b->store, pcs, nuse, err, sizeof err);
  if (rc != RTU_OK) {
    /* e.g. an upsert race: retry the runs */
    stage_fail(runs, handled, rc == RTU_ERR_DATA ? RTU_ERR_TRANSIENT : rc, err, false);
    goto done;
  }
  for (size_t i = 0; i < nuse; i++) {
    runs[run_of[ids[i].origin]]->res->changes++;
    rtu_metrics_add(RTU_C_PROJECTION_CHANGES, ids[i].type, 1);
  }
  if (b->emit && b->cfg->gen_kafka_pc) {
    rc = emit_pc_messages(b, p, ids, nuse, named, &produced, err, sizeof err);
    if (rc == RTU_OK && produced) rc = rtu_emit_flush(b->emit, 10000, err, sizeof err);
    if (rc != RTU_OK) stage_fail(runs, handled, rc, err, rc == RTU_ERR_TRANSIENT);
  }
done:
  free(docs);
  free(named);
  free(from);
  free(rerun);
  free(run_of);
  free(pcs);
  rtu_identified_free(ids, nids);
  return handled; /* at least 1: all runs, or up to the failing one */
}

void rtu_batch_strategies(rtu_batch_t *b, size_t projection, rtu_deferred_t *const *runs,
                          size_t nruns) {
  size_t i = 0;
  while (i < nruns) {
    size_t j = i, ndocs = 0;
    do ndocs += runs[j++]->n;
    while (j < nruns && ndocs + runs[j]->n <= STAGE_MAX_DOCS);
    i += stage_call(b, projection, runs + i, j - i);
  }
}

/* After the projection writes: the documents for the strategies (run here, or
 * handed to the poll's stage through defer), pr-update messages, each awaited.
 * Only messages below res->next_offset count; a strategy failing on a document
 * moves it to the message that document stands for, so what comes before is
 * fully done (its projection changes and messages too) and nothing from there on
 * counts. RTU_ERR_TRANSIENT: retry the run (writes and messages are idempotent
 * or at-least-once). */
static rtu_err_t after_writes(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs,
                              size_t nmsgs, size_t ngroups, int64_t now, bool strategies,
                              bool pr_updates, rtu_deferred_t *defer, rtu_run_result_t *res) {
  const rtu_projection_t *p = &b->cfg->projections[projection];
  outcome_t *outcomes = b->outcomes;
  size_t cap = 2 * ngroups, n = 0;
  bson_t *images = rtu_aligned_calloc(ngroups ? ngroups : 1, sizeof *images);
  bool *has_image = calloc(ngroups ? ngroups : 1, sizeof *has_image);
  rtu_deferred_t run = {.msgs = msgs, .nmsgs = nmsgs, .res = res};
  run.docs = calloc(cap ? cap : 1, sizeof *run.docs);
  run.origin = calloc(cap ? cap : 1, sizeof *run.origin);
  run.since = calloc(cap ? cap : 1, sizeof *run.since);
  run.rerun = calloc(cap ? cap : 1, sizeof *run.rerun);
  char err[RTU_ERRSTR_SIZE];
  bool produced = false;
  rtu_err_t rc = RTU_OK;
  if (!images || !has_image || !run.docs || !run.origin || !run.since || !run.rerun) {
    rc = RTU_ERR_FATAL;
    snprintf(res->cause, sizeof res->cause, "out of memory");
    goto done;
  }
  for (size_t g = 0; g < ngroups; g++) {
    const outcome_t *o = &outcomes[g];
    const group_t *gr = &b->groups[g];
    if (o->last_event < 0) continue;
    if (msgs[b->events[o->last_event].msg].offset >= res->next_offset) continue;
    uint32_t first_msg = UINT32_MAX;
    for (uint32_t e = gr->first; e < gr->first + gr->count; e++)
      if (b->events[e].msg < first_msg) first_msg = b->events[e].msg;
    if (o->state != ST_ABSENT) {
      bson_init(&images[g]);
      build_image(b, gr, o, msgs, now, &images[g]);
      has_image[g] = true;
    }
    /* Before the run, the record may have belonged to single views it left:
     * they are looked for too, unless the strategies would read the same of it
     * before and after (most updates touch no relation), which finds them twice. */
    bool same = strategies && gr->s0 && has_image[g] &&
                rtu_strategies_same_input(b->script, projection, gr->s0, &images[g]);
    if (gr->s0 && !same) {
      run.docs[n] = gr->s0;
      run.origin[n] = run.since[n] = first_msg;
      n++;
    }
    if (has_image[g]) {
      run.docs[n] = &images[g];
      run.origin[n] = b->events[o->last_event].msg;
      run.since[n] = same ? first_msg : run.origin[n];
      n++;
    }
  }
  run.n = n;

  if (strategies && n > 0) {
    if (!sort_run_docs(run.docs, run.origin, run.since, run.rerun, n)) {
      rc = RTU_ERR_FATAL;
      snprintf(res->cause, sizeof res->cause, "out of memory");
      goto done;
    }
    if (defer) {
      /* The documents outlive this run's buffers: copies go to the stage. */
      for (size_t k = 0; k < n; k++)
        run.docs[k] = rtu_strategies_copy_input(b->script, projection, run.docs[k]);
      run.owned = true;
      *defer = run;
      memset(&run, 0, sizeof run);
    } else {
      rtu_batch_strategies(b, projection, (rtu_deferred_t *[]){&run}, 1);
      if (run.err != RTU_OK) {
        rc = run.err;
        goto done;
      }
    }
  }
  if (pr_updates) {
    rc = emit_pr_updates(b, p, msgs, ngroups, images, has_image, now, res, &produced, err,
                         sizeof err);
    if (rc == RTU_OK && produced) rc = rtu_emit_flush(b->emit, 10000, err, sizeof err);
    if (rc != RTU_OK) {
      snprintf(res->cause, sizeof res->cause, "%s", err);
      res->kafka_unavailable = rc == RTU_ERR_TRANSIENT;
    }
  }
done:
  for (size_t g = 0; g < ngroups; g++)
    if (has_image && has_image[g]) bson_destroy(&images[g]);
  free(images);
  free(has_image);
  rtu_deferred_free(&run);
  return rc;
}

/* ---- the run ------------------------------------------------------------ */


rtu_err_t rtu_batch_run(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                        rtu_deferred_t *defer, rtu_run_result_t *res) {
  const rtu_projection_t *p = &b->cfg->projections[projection];
  char err[RTU_ERRSTR_SIZE];
  int64_t t0 = rtu_now_mono_us(), t1;
  memset(res, 0, sizeof *res);
  if (defer) memset(defer, 0, sizeof *defer);
  res->messages = n;
  if (n == 0) return RTU_OK;
  res->next_offset = msgs[n - 1].offset + 1;
  if (!reserve(b, n)) {
    snprintf(res->cause, sizeof res->cause, "out of memory for a run of %zu messages", n);
    return RTU_ERR_FATAL;
  }

  /* 1. Map every message; the first that cannot be mapped ends the run. */
  uint32_t limit = (uint32_t)n;
  size_t nevents = 0;
  for (uint32_t i = 0; i < limit; i++) {
    rtu_mapped_t *m = &b->mapped[i];
    rtu_mapped_reset(m);
    rtu_err_t rc = rtu_script_map(b->script, projection, &msgs[i], m, err, sizeof err);
    if (rc == RTU_ERR_FATAL) {
      snprintf(res->cause, sizeof res->cause, "%s", err);
      return rc;
    }
    if (rc != RTU_OK) {
      fail_at(res, rc, &msgs[i], err);
      limit = i;
      break;
    }
    if (m->skip) {
      res->skipped++;
      rtu_log(RTU_LOG_DEBUG, "message skipped", "topic", msgs[i].topic,
              "reason", err, NULL);
      continue;
    }
    if (m->has_old_key) b->events[nevents++] = (event_t){&m->old_key, i, true, false};
    b->events[nevents++] = (event_t){&m->key, i, false, false};
  }

  /* 2. Group per record, in offset order within each record. */
  qsort(b->events, nevents, sizeof *b->events, event_cmp);
  size_t ngroups = 0;
  for (size_t e = 0; e < nevents; e++) {
    if (e == 0 || key_cmp(b->events[e].key, b->events[e - 1].key) != 0)
      b->groups[ngroups++] = (group_t){.first = (uint32_t)e};
    b->groups[ngroups - 1].count++;
  }

  if (!reserve_writes(b, ngroups)) {
    snprintf(res->cause, sizeof res->cause, "out of memory for a run of %zu messages", n);
    return RTU_ERR_FATAL;
  }

  bool strategies = b->cfg->pc_enabled && rtu_strategies_involved(b->script, projection);
  bool pr_updates = b->emit && b->cfg->gen_kafka_pr_updates && p->pr_update_topic;

  t1 = rtu_now_mono_us();
  rtu_metrics_observe(RTU_H_PREPARATION, (double)(t1 - t0) / 1e6);
  t0 = t1;

  /* 3. What is stored now for these records. */
  if (ngroups > 0) {
    bson_t **keys = malloc(ngroups * sizeof *keys);
    if (!keys) return RTU_ERR_FATAL;
    for (size_t g = 0; g < ngroups; g++) keys[g] = (bson_t *)b->events[b->groups[g].first].key;
    read_ctx_t ctx = {b, p, ngroups, strategies || pr_updates};
    rtu_err_t frc = rtu_store_find_keys(b->store, p, keys, ngroups, on_stored, &ctx, err, sizeof err);
    free(keys);
    if (frc != RTU_OK) {
      snprintf(res->cause, sizeof res->cause, "%s", err);
      for (size_t g = 0; g < ngroups; g++)
        if (b->groups[g].s0) {
          bson_destroy(b->groups[g].s0);
          b->groups[g].s0 = NULL;
        }
      return frc == RTU_ERR_DATA ? RTU_ERR_TRANSIENT : frc; /* a read is always retryable */
    }
  }

  /* 4. Simulate each record; a conflict moves the end of the run before it, and
   * the records are simulated again against the shorter run. */
  outcome_t o;
  rtu_err_t rc = RTU_OK;
  for (size_t g = 0; g < ngroups; g++) {
    simulate(b, &b->groups[g], msgs, limit, &o);
    if (o.fail_msg >= 0 && (uint32_t)o.fail_msg < limit) {
      fail_at(res, RTU_ERR_DATA, &msgs[o.fail_msg], o.fail_cause);
      limit = (uint32_t)o.fail_msg;
    }
  }

  /* 5. One write per record. A write the driver refuses (before sending
   * anything) ends the run before its record's first message, and the writes
   * are built again for the shorter run. */
  size_t nwrites;
  int64_t now = rtu_now_ms();
  outcome_t *outcomes = b->outcomes;
  for (;;) {
    nwrites = 0;
    res->stale = 0;
    for (size_t g = 0; g < ngroups; g++) {
      simulate(b, &b->groups[g], msgs, limit, &o);
      bson_oid_init(&o.oid, NULL);
      outcomes[g] = o;
      res->stale += o.stale;
      if (o.last_event < 0) continue;
      bool emit;
      build_write(b, &b->groups[g], &o, msgs, &b->writes[nwrites], now, &emit);
      if (!emit) continue;
      outcomes[g].write = (int32_t)nwrites;
      b->write_group[nwrites++] = (int32_t)g;
    }
    res->writes = nwrites;
    rc = rtu_store_write(b->store, p, b->writes, nwrites, err, sizeof err);
    if (rc != RTU_ERR_DATA) break;
    uint32_t new_limit = limit;
    for (size_t w = 0; w < nwrites; w++) {
      if (b->writes[w].status != RTU_WRITE_FAILED) continue;
      const group_t *g = &b->groups[b->write_group[w]];
      uint32_t first = UINT32_MAX;
      for (uint32_t e = g->first; e < g->first + g->count; e++)
        if (b->events[e].applied && b->events[e].msg < first) first = b->events[e].msg;
      if (first < new_limit) {
        char cause[RTU_ERRSTR_SIZE];
        snprintf(cause, sizeof cause, "MongoDB refused the write: %.400s",
                 b->writes[w].error ? b->writes[w].error : "");
        fail_at(res, RTU_ERR_DATA, &msgs[first], cause);
        new_limit = first;
      }
    }
    if (new_limit >= limit) break; /* cannot happen: a failed write has an applied message */
    limit = new_limit;
  }
  if (rc == RTU_ERR_TRANSIENT || rc == RTU_ERR_FATAL || rc == RTU_ERR_DATA) {
    if (rc == RTU_ERR_DATA) rc = RTU_ERR_FATAL;
    snprintf(res->cause, sizeof res->cause, "%s", err);
    goto done;
  }
  rc = RTU_OK;
  for (size_t w = 0; w < nwrites; w++) {
    const group_t *g = &b->groups[b->write_group[w]];
    if (b->writes[w].status == RTU_WRITE_STALE) {
      res->stale++;
    } else if (b->writes[w].status == RTU_WRITE_FAILED) {
      /* Stop at the record's first message of the run: all of it is re-applied
       * (idempotently, by the guard) when the partition is resumed. */
      char cause[RTU_ERRSTR_SIZE];
      snprintf(cause, sizeof cause, "MongoDB refused the write: %.400s",
                 b->writes[w].error ? b->writes[w].error : "");
      fail_at(res, RTU_ERR_DATA, &msgs[b->events[g->first].msg], cause);
    }
  }

  t1 = rtu_now_mono_us();
  rtu_metrics_observe(RTU_H_STORAGE, (double)(t1 - t0) / 1e6);
  t0 = t1;
  if (res->failed) res->next_offset = res->fail_offset;
  if (strategies || pr_updates) {
    rc = after_writes(b, projection, msgs, n, ngroups, now, strategies, pr_updates, defer, res);
    rtu_metrics_observe(RTU_H_PRODUCER, (double)(rtu_now_mono_us() - t0) / 1e6);
    if (rc != RTU_OK) goto done;
  }
  for (uint32_t i = 0; i < n && msgs[i].offset < res->next_offset; i++)
    if (!b->mapped[i].skip) res->applied++;
  if (res->applied >= res->stale) res->applied -= res->stale;
  if (defer && defer->n > 0) {
    /* the stage may move the run's end back: applied is counted again then */
    defer->skipped = malloc(n);
    if (!defer->skipped) {
      rc = RTU_ERR_FATAL;
      snprintf(res->cause, sizeof res->cause, "out of memory");
      goto done;
    }
    for (uint32_t i = 0; i < n; i++) defer->skipped[i] = b->mapped[i].skip;
  }
done:
  for (size_t g = 0; g < ngroups; g++)
    if (b->groups[g].s0) {
      bson_destroy(b->groups[g].s0);
      b->groups[g].s0 = NULL;
    }
  if (b->mapped_cap > KEEP_CAP && n < b->mapped_cap / 4) release(b);
  return rc;
}
