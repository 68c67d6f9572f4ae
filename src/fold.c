/*
 * fold.c: one record's messages of a partition run simulated one by one (the
 * stored counter known, stale messages skipped, USE_UPSERT=false conflicts
 * found before anything is written), and the one write and the image that
 * result: the fields merged newest first, the counter guard, the metadata.
 * It reads the run through rtu_fold_run_t and writes only into what it is
 * handed; it sends nothing and decides nothing about the run (batch.c).
 */
#include "fold.h"

#include <stdlib.h>
#include <string.h>

#include "bson_raw.h"
#include "key_text.h"
#include "util.h"

/* ---- simulation --------------------------------------------------------- */


static int64_t counter_of(const rtu_mapped_t *m, const rtu_msg_t *msg) {
  return m->has_position ? m->position : rtu_mapped_timestamp(m, msg);
}

/* Event e, applied, gets a pr-update one by one unless the record is absent
 * both before and after it. */
static void note_pr_update(rtu_fold_outcome_t *o, const rtu_fold_prior_t *prior, uint32_t e) {
  if (prior->state == RTU_FOLD_ABSENT && o->state == RTU_FOLD_ABSENT) return;
  o->pr_event = e;
  o->pr_prev = *prior;
}

/* Applies the group's events with msg < limit one by one, as the reference does
 * with a read-modify-write per message. */
void rtu_fold_simulate(const rtu_fold_run_t *b, const rtu_fold_group_t *g, const rtu_msg_t *msgs, uint32_t limit,
                     rtu_fold_outcome_t *o) {
  const rtu_config_t *cfg = b->cfg;
  memset(o, 0, sizeof *o);
  o->state = g->s0_exists ? RTU_FOLD_PUBLIC : RTU_FOLD_ABSENT; /* DELETED vs PUBLIC: no matter here */
  o->last_event = -1;
  o->guard = INT64_MIN;
  o->fail_msg = -1;
  o->write = -1;
  o->pr_event = -1;
  bool has_counter = g->s0_has_counter;
  int64_t counter = g->s0_counter;
  o->fields_from = g->first;
  for (uint32_t e = g->first; e < g->first + g->count; e++) b->events[e].applied = false;
  for (uint32_t e = g->first; e < g->first + g->count; e++) {
    rtu_fold_event_t *ev = &b->events[e];
    if (ev->msg >= limit) break;
    const rtu_mapped_t *m = &b->mapped[ev->msg];
    int64_t c = counter_of(m, &msgs[ev->msg]);
    if (cfg->force_check_on_offset && has_counter && c < counter) {
      o->stale++;
      continue;
    }
    rtu_op_t op = ev->old_key ? RTU_OP_DELETE : m->op;
    rtu_fold_prior_t prior = {o->state, o->recreated, o->last_event, o->counter, o->fields_from};
    switch (op) {
    case RTU_OP_INSERT:
      if (o->state != RTU_FOLD_ABSENT) {
        o->fail_msg = ev->msg;
        o->fail_cause = "insert of a record that already exists (USE_UPSERT=false)";
        return;
      }
      /* fallthrough */
    case RTU_OP_UPSERT:
      if (o->state == RTU_FOLD_ABSENT && g->s0_exists) o->recreated = true;
      o->state = RTU_FOLD_PUBLIC;
      break;
    case RTU_OP_UPDATE:
      if (o->state == RTU_FOLD_ABSENT) {
        o->fail_msg = ev->msg;
        o->fail_cause = "update of a record that does not exist (USE_UPSERT=false)";
        return;
      }
      o->state = RTU_FOLD_PUBLIC;
      break;
    case RTU_OP_DELETE:
      if (o->state != RTU_FOLD_ABSENT && cfg->delete_mechanism == RTU_DELETE_SOFT) {
        o->state = RTU_FOLD_DELETED;
        break;
      }
      /* A hard delete, or a delete of nothing: no record, so no stored counter
       * either, and the next message applies whatever its counter. */
      if (o->state != RTU_FOLD_ABSENT) o->fields_from = e + 1;
      o->state = RTU_FOLD_ABSENT;
      has_counter = false;
      o->counter = c;
      if (c > o->guard) o->guard = c;
      o->last_event = e;
      ev->applied = true;
      note_pr_update(o, &prior, e);
      continue;
    }
    has_counter = true;
    counter = c;
    o->counter = c;
    if (c > o->guard) o->guard = c;
    o->last_event = e;
    ev->applied = true;
    note_pr_update(o, &prior, e);
  }
}

/* ---- building writes ---------------------------------------------------- */

/* {$or: [{__internal__counter: {$lte: counter}}, {__internal__counter: {$exists: false}}]},
 * written as bytes (rtu_bson_raw_t) rather than with twenty bson_append_* calls: it
 * and the metadata go into every write. */
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
                            rtu_fold_state_t state, int64_t counter, int64_t now) {
  char iso[40], offset[24];
  int64_t ts = rtu_mapped_timestamp(m, msg);
  rtu_iso8601(ts, iso, sizeof iso);
  size_t offset_len = rtu_int_text(msg->offset, offset);
  const char *st = state == RTU_FOLD_DELETED ? "DELETED" : "PUBLIC";
  const char *type = m->has_position ? "position" : "timestamp";
  rtu_bson_raw_t r;
  rtu_bson_raw_init(&r);
  rtu_bson_raw_utf8(&r, "__STATE__", st, strlen(st));
  rtu_bson_raw_int(&r, BSON_TYPE_DATE_TIME, "updatedAt", now);
  rtu_bson_raw_int(&r, BSON_TYPE_DATE_TIME, "timestamp", ts);
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
static bool append_merged_fields(const rtu_fold_run_t *b, const rtu_fold_group_t *g, uint32_t from, int64_t last,
                                 bson_t *out) {
  /* Newest first; a field already written is skipped. */
  bool first = true, empty = false;
  const bson_t *newest = NULL;
  for (int64_t e = last; e >= (int64_t)from && e >= (int64_t)g->first; e--) {
    const rtu_fold_event_t *ev = &b->events[e];
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

void rtu_fold_build_write(const rtu_fold_run_t *b, const rtu_fold_group_t *g, const rtu_fold_outcome_t *o,
                        const rtu_msg_t *msgs, rtu_write_t *w, int64_t now, bool *emit) {
  const rtu_config_t *cfg = b->cfg;
  const rtu_fold_event_t *last = &b->events[o->last_event];
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

  if (o->state == RTU_FOLD_ABSENT) {
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
  w->upsert = !(o->state == RTU_FOLD_DELETED && !fields_written);
  if (!g->s0_exists && o->state == RTU_FOLD_DELETED && !fields_written) *emit = false;
}

/* ---- after the writes: strategies and pr-update messages ------------------ */

/* The record as stored after the run: what the writes made of the stored one.
 * Its fields and metadata are those its write sets, taken from the write when
 * there is one rather than merged and formatted a second time. */
void rtu_fold_build_image(const rtu_fold_run_t *b, const rtu_fold_group_t *g, const rtu_fold_outcome_t *o,
                        const rtu_msg_t *msgs, int64_t now, bson_t *img) {
  const rtu_fold_event_t *last = &b->events[o->last_event];
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
    /* No write: a soft delete of a record never stored, or the record as it was
     * within the run (before its last pr-update), never written as such. */
    append_merged_fields(b, g, o->fields_from, o->last_event, img);
    append_metadata(img, &b->mapped[last->msg], &msgs[last->msg], o->state, o->counter, now);
    if (o->recreated) BSON_APPEND_DATE_TIME(img, "createdAt", now);
  }
  if (g->s0 && !o->recreated) {
    rtu_bson_raw_append_missing(img, g->s0);
  } else {
    if (!o->recreated) BSON_APPEND_DATE_TIME(img, "createdAt", now); /* a replacement has it */
    if (g->s0 && rtu_bson_raw_find(&it, g->s0, "_id")) bson_append_iter(img, "_id", 3, &it);
  }
  if (!rtu_bson_raw_find(&seen, img, "_id")) BSON_APPEND_OID(img, "_id", &o->oid);
}
