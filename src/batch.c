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
 * After the writes it hands the records as stored to the strategies stage
 * (stage.c: deferred to the poll's stage, or run at once) and the records
 * written to their pr-update messages (messages.c).
 *
 * What happens to one record (the simulation, its write, its image) is
 * fold.c's; this file owns the run around it.
 *
 * It knows nothing of Lua (script.c maps), of the database (the store writes,
 * through store.h) or of message formats (messages.c).
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "messages.h"
#include "metrics.h"
#include "util.h"
#include "fold.h"
#include "script_map.h"
#include "strategies.h"

/* A run between its steps: rtu_batch_run takes one run through them in turn,
 * rtu_batch_run_joined several runs (one context each) together. */
typedef struct {
  size_t projection;
  const rtu_projection_t *p;
  const rtu_msg_t *msgs;
  size_t n;
  rtu_deferred_t *defer;
  rtu_run_result_t *res;
  uint32_t limit;
  size_t ngroups, nwrites;
  bool strategies, pr_updates;
  int64_t t0, now;
} run_t;

struct rtu_batch_s {
  run_t run;
  const rtu_config_t *cfg;
  rtu_script_t *script;
  rtu_store_t *store;
  rtu_emit_t *emit; /* NULL when nothing is produced */
  rtu_stage_t *stage; /* the strategies of a run not deferred */
  rtu_mapped_t *mapped; /* per message; never moved once initialised */
  size_t mapped_cap;
  rtu_fold_event_t *events;
  rtu_fold_group_t *groups;
  rtu_write_t *writes;
  int32_t *write_group;
  rtu_fold_outcome_t *outcomes; /* per group, for the strategies stage */
  size_t events_cap, writes_cap;
  int64_t outputs_done; /* pr-updates of messages below it were acknowledged already */
  /* A worker's own OID context: libbson's default one calls getpid() for every
   * OID to notice a fork, a system call per record written. A batch is used by
   * one worker thread at a time and rtu never forks, so it needs neither. */
  bson_context_t *oids;
};

/* What the fold (fold.c) reads of the run in b. */
static rtu_fold_run_t fold_run(const rtu_batch_t *b) {
  return (rtu_fold_run_t){b->cfg, b->events, b->mapped, b->writes};
}

rtu_batch_t *rtu_batch_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store) {
  rtu_batch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->cfg = cfg;
  b->script = script;
  b->store = store;
  b->stage = rtu_stage_new(cfg, script, store);
  b->oids = bson_context_new(BSON_CONTEXT_NONE);
  if (!b->stage || !b->oids) {
    rtu_stage_free(b->stage);
    if (b->oids) bson_context_destroy(b->oids);
    free(b);
    return NULL;
  }
  return b;
}

void rtu_batch_set_generation(rtu_batch_t *b, const rtu_config_t *cfg, rtu_script_t *script) {
  b->cfg = cfg;
  b->script = script;
  rtu_stage_set_generation(b->stage, cfg, script);
}

void rtu_batch_set_outputs_done(rtu_batch_t *b, int64_t offset) { b->outputs_done = offset; }

void rtu_batch_set_emit(rtu_batch_t *b, rtu_emit_t *emit) {
  b->emit = emit;
  rtu_stage_set_emit(b->stage, emit);
}

rtu_stage_t *rtu_batch_stage(rtu_batch_t *b) { return b->stage; }

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
  rtu_stage_free(b->stage);
  bson_context_destroy(b->oids);
  free(b);
}

static int key_cmp(const bson_t *a, const bson_t *b) {
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  return memcmp(bson_get_data(a), bson_get_data(b), a->len);
}

static int event_cmp(const void *pa, const void *pb) {
  const rtu_fold_event_t *a = pa, *b = pb;
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
      rtu_fold_group_t *g = &ctx->b->groups[mid];
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

/* The records as stored after the run, built once for the strategies and the
 * pr-update messages both. */
typedef struct {
  bson_t *images; /* per group */
  bool *has;      /* per group: images[g] was built (the record is not gone) */
  size_t n;
} images_t;

static void images_free(images_t *im) {
  for (size_t g = 0; im->has && g < im->n; g++)
    if (im->has[g]) bson_destroy(&im->images[g]);
  free(im->images);
  free(im->has);
}

/* True when the record's last applied message is one the run keeps. */
static bool group_counts(const rtu_batch_t *b, size_t g, const rtu_msg_t *msgs,
                         const rtu_run_result_t *res) {
  const rtu_fold_outcome_t *o = &b->outcomes[g];
  return o->last_event >= 0 && msgs[b->events[o->last_event].msg].offset < res->next_offset;
}

/* The images of the records the run keeps, and (with strategies) the documents
 * for them in run: each record's image, and its stored document when it may
 * have left single views. */
static void collect_docs(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t ngroups,
                         int64_t now, bool strategies, images_t *im, rtu_deferred_t *run) {
  const rtu_fold_run_t fr = fold_run(b);
  size_t n = 0;
  for (size_t g = 0; g < ngroups; g++) {
    const rtu_fold_outcome_t *o = &b->outcomes[g];
    const rtu_fold_group_t *gr = &b->groups[g];
    if (!group_counts(b, g, msgs, run->res)) continue;
    uint32_t first_msg = UINT32_MAX;
    for (uint32_t e = gr->first; e < gr->first + gr->count; e++)
      if (b->events[e].msg < first_msg) first_msg = b->events[e].msg;
    if (o->state != RTU_FOLD_ABSENT) {
      bson_init(&im->images[g]);
      rtu_fold_build_image(&fr, gr, o, msgs, now, &im->images[g]);
      im->has[g] = true;
    }
    /* Before the run, the record may have belonged to single views it left:
     * they are looked for too, unless the strategies would read the same of it
     * before and after (most updates touch no relation), which finds them twice. */
    bool same = strategies && gr->s0 && im->has[g] &&
                rtu_strategies_same_input(b->script, projection, gr->s0, &im->images[g]);
    if (gr->s0 && !same) {
      run->docs[n] = gr->s0;
      run->origin[n] = run->since[n] = first_msg;
      n++;
    }
    if (im->has[g]) {
      run->docs[n] = &im->images[g];
      run->origin[n] = b->events[o->last_event].msg;
      run->since[n] = same ? first_msg : run->origin[n];
      n++;
    }
  }
  run->n = n;
}

/* Hands run's documents to the strategies: to the poll's stage through defer
 * (as copies: they outlive this run's buffers), or to the stage at once. */
static rtu_err_t hand_to_strategies(rtu_batch_t *b, size_t projection, rtu_deferred_t *run,
                                    rtu_deferred_t *defer) {
  if (!rtu_deferred_order(run)) {
    snprintf(run->res->cause, sizeof run->res->cause, "out of memory");
    return RTU_ERR_FATAL;
  }
  if (!defer) {
    rtu_stage_run(b->stage, projection, (rtu_deferred_t *[]){run}, 1);
    return run->err;
  }
  for (size_t k = 0; k < run->n; k++)
    run->docs[k] = rtu_strategies_copy_input(b->script, projection, run->docs[k]);
  run->owned = true;
  *defer = *run;
  memset(run, 0, sizeof *run);
  return RTU_OK;
}

/* The record just before the event of its pr-update: the stored one when that
 * is the run's first event of it, NULL when there was none, else the image the
 * earlier events made (built in *img, *built set). */
static const bson_t *image_before(rtu_batch_t *b, const rtu_fold_group_t *g, const rtu_fold_outcome_t *o,
                                  const rtu_msg_t *msgs, int64_t now, bson_t *img, bool *built) {
  const rtu_fold_run_t fr = fold_run(b);
  const rtu_fold_prior_t *pv = &o->pr_prev;
  *built = false;
  if (pv->state == RTU_FOLD_ABSENT) return NULL;
  if (pv->last_event < 0) return g->s0;
  rtu_fold_outcome_t prefix = {.state = pv->state, .recreated = pv->recreated,
                      .last_event = pv->last_event, .counter = pv->counter,
                      .fields_from = pv->fields_from, .write = -1, .oid = o->oid};
  bson_init(img);
  rtu_fold_build_image(&fr, g, &prefix, msgs, now, img);
  *built = true;
  return img;
}

/* pr-update v1: one message per record that the run keeps and that one-by-one
 * processing would have answered with one: the last of those, its operation
 * from the record just before its event and just after it, so a record
 * inserted and deleted within the run ends with a DELETE as it would one by one. */
static rtu_err_t produce_pr_updates(rtu_batch_t *b, const rtu_projection_t *p,
                                    const rtu_msg_t *msgs, size_t ngroups, const images_t *im,
                                    int64_t now, rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE];
  size_t n = 0;
  size_t cap = ngroups ? ngroups : 1;
  rtu_pr_update_t *ups = calloc(cap, sizeof *ups);
  bson_t *befores = rtu_aligned_calloc(cap, sizeof *befores);
  bool *built = calloc(cap, sizeof *built);
  rtu_err_t rc = RTU_ERR_FATAL;
  if (!ups || !befores || !built) {
    snprintf(res->cause, sizeof res->cause, "out of memory");
    goto done;
  }
  for (size_t g = 0; g < ngroups; g++) {
    const rtu_fold_outcome_t *o = &b->outcomes[g];
    const rtu_fold_group_t *gr = &b->groups[g];
    if (!group_counts(b, g, msgs, res) || o->pr_event < 0) continue;
    const rtu_fold_event_t *ev = &b->events[o->pr_event];
    if (msgs[ev->msg].offset < b->outputs_done) continue; /* acknowledged by an earlier try */
    bool existed = o->pr_prev.state != RTU_FOLD_ABSENT;
    ups[n++] = (rtu_pr_update_t){
        .op = !existed ? "INSERT" : o->state == RTU_FOLD_PUBLIC ? "UPDATE" : "DELETE",
        .key = ev->key,
        .before = image_before(b, gr, o, msgs, now, &befores[g], &built[g]),
        .after = im->has[g] ? &im->images[g] : NULL,
        .msg = &msgs[ev->msg],
    };
  }
  rc = rtu_messages_pr_updates(b->emit, b->cfg, p, ups, n, now, err, sizeof err);
  if (rc != RTU_OK) {
    snprintf(res->cause, sizeof res->cause, "%s", err);
    res->kafka_unavailable = rc == RTU_ERR_TRANSIENT;
  } else {
    res->outputs_done = res->next_offset;
  }
done:
  for (size_t g = 0; built && befores && g < ngroups; g++)
    if (built[g]) bson_destroy(&befores[g]);
  free(built);
  free(befores);
  free(ups);
  return rc;
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
  size_t cap = ngroups ? 2 * ngroups : 1;
  images_t im = {rtu_aligned_calloc(ngroups ? ngroups : 1, sizeof *im.images),
                 calloc(ngroups ? ngroups : 1, sizeof *im.has), ngroups};
  rtu_deferred_t run = {.msgs = msgs, .nmsgs = nmsgs, .res = res};
  run.docs = calloc(cap, sizeof *run.docs);
  run.origin = calloc(cap, sizeof *run.origin);
  run.since = calloc(cap, sizeof *run.since);
  run.rerun = calloc(cap, sizeof *run.rerun);
  rtu_err_t rc = RTU_OK;
  if (!im.images || !im.has || !run.docs || !run.origin || !run.since || !run.rerun) {
    rc = RTU_ERR_FATAL;
    snprintf(res->cause, sizeof res->cause, "out of memory");
    goto done;
  }
  collect_docs(b, projection, msgs, ngroups, now, strategies, &im, &run);
  if (strategies && run.n > 0) {
    rc = hand_to_strategies(b, projection, &run, defer);
    if (rc != RTU_OK) goto done;
  }
  if (pr_updates) rc = produce_pr_updates(b, &b->cfg->projections[projection], msgs, ngroups, &im,
                                          now, res);
done:
  images_free(&im);
  rtu_deferred_free(&run);
  return rc;
}

/* ---- the run ------------------------------------------------------------ */

/* Step 1: maps every message into b->mapped and lists its events (a primary-key
 * change makes two); the first message that cannot be mapped ends the run
 * (*limit). RTU_ERR_FATAL only when the script cannot go on at all. */
static rtu_err_t map_messages(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs,
                              uint32_t *limit, size_t *nevents, rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE];
  *nevents = 0;
  for (uint32_t i = 0; i < *limit; i++) {
    rtu_mapped_t *m = &b->mapped[i];
    rtu_mapped_reset(m);
    rtu_err_t rc = rtu_script_map(b->script, projection, &msgs[i], m, err, sizeof err);
    if (rc == RTU_ERR_FATAL) {
      snprintf(res->cause, sizeof res->cause, "%s", err);
      return rc;
    }
    if (rc != RTU_OK) {
      rtu_run_fail_at(res, rc, &msgs[i], err);
      *limit = i;
      break;
    }
    if (m->skip) {
      res->skipped++;
      rtu_log(RTU_LOG_DEBUG, "message skipped", "topic", msgs[i].topic, "reason", err, NULL);
      continue;
    }
    if (m->has_old_key) b->events[(*nevents)++] = (rtu_fold_event_t){&m->old_key, i, true, false};
    b->events[(*nevents)++] = (rtu_fold_event_t){&m->key, i, false, false};
  }
  return RTU_OK;
}

/* Step 2: groups the events per record, in offset order within each record.
 * Returns the number of records. */
static size_t group_events(rtu_batch_t *b, size_t nevents) {
  qsort(b->events, nevents, sizeof *b->events, event_cmp);
  size_t ngroups = 0;
  for (size_t e = 0; e < nevents; e++) {
    if (e == 0 || key_cmp(b->events[e].key, b->events[e - 1].key) != 0)
      b->groups[ngroups++] = (rtu_fold_group_t){.first = (uint32_t)e};
    b->groups[ngroups - 1].count++;
  }
  return ngroups;
}

static void drop_stored(rtu_batch_t *b, size_t ngroups) {
  for (size_t g = 0; g < ngroups; g++)
    if (b->groups[g].s0) {
      bson_destroy(b->groups[g].s0);
      b->groups[g].s0 = NULL;
    }
}

/* Step 3: what is stored now for these records (one read). A failed read is
 * always retryable: RTU_ERR_TRANSIENT. */
static rtu_err_t read_stored(rtu_batch_t *b, const rtu_projection_t *p, size_t ngroups,
                             bool keep_docs, rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE];
  if (ngroups == 0) return RTU_OK;
  bson_t **keys = malloc(ngroups * sizeof *keys);
  if (!keys) return RTU_ERR_FATAL;
  for (size_t g = 0; g < ngroups; g++) keys[g] = (bson_t *)b->events[b->groups[g].first].key;
  read_ctx_t ctx = {b, p, ngroups, keep_docs};
  rtu_err_t rc = rtu_store_find_keys(b->store, p, keys, ngroups, on_stored, &ctx, err, sizeof err);
  free(keys);
  if (rc == RTU_OK) return RTU_OK;
  snprintf(res->cause, sizeof res->cause, "%s", err);
  drop_stored(b, ngroups);
  return rc == RTU_ERR_DATA ? RTU_ERR_TRANSIENT : rc;
}

/* Step 4: simulates each record; a conflict moves the end of the run before it. */
static void find_conflicts(rtu_batch_t *b, const rtu_msg_t *msgs, size_t ngroups, uint32_t *limit,
                           rtu_run_result_t *res) {
  const rtu_fold_run_t fr = fold_run(b);
  rtu_fold_outcome_t o;
  for (size_t g = 0; g < ngroups; g++) {
    rtu_fold_simulate(&fr, &b->groups[g], msgs, *limit, &o);
    if (o.fail_msg >= 0 && (uint32_t)o.fail_msg < *limit) {
      rtu_run_fail_at(res, RTU_ERR_DATA, &msgs[o.fail_msg], o.fail_cause);
      *limit = (uint32_t)o.fail_msg;
    }
  }
}

/* One write per record of the run up to limit, in b->writes; returns how many. */
static size_t build_writes(rtu_batch_t *b, const rtu_msg_t *msgs, size_t ngroups, uint32_t limit,
                           int64_t now, rtu_run_result_t *res) {
  const rtu_fold_run_t fr = fold_run(b);
  size_t nwrites = 0;
  rtu_fold_outcome_t o;
  res->stale = 0;
  for (size_t g = 0; g < ngroups; g++) {
    rtu_fold_simulate(&fr, &b->groups[g], msgs, limit, &o);
    bson_oid_init(&o.oid, b->oids);
    b->outcomes[g] = o;
    res->stale += o.stale;
    if (o.last_event < 0) continue;
    bool emit;
    rtu_fold_build_write(&fr, &b->groups[g], &o, msgs, &b->writes[nwrites], now, &emit);
    if (!emit) continue;
    b->outcomes[g].write = (int32_t)nwrites;
    b->write_group[nwrites++] = (int32_t)g;
  }
  return nwrites;
}

/* The run's first applied message of the record written by write w. */
static uint32_t first_applied(const rtu_batch_t *b, size_t w) {
  const rtu_fold_group_t *g = &b->groups[b->write_group[w]];
  uint32_t first = UINT32_MAX;
  for (uint32_t e = g->first; e < g->first + g->count; e++)
    if (b->events[e].applied && b->events[e].msg < first) first = b->events[e].msg;
  return first;
}

static void write_refused(rtu_run_result_t *res, const rtu_write_t *w, const rtu_msg_t *msg) {
  char cause[RTU_ERRSTR_SIZE];
  snprintf(cause, sizeof cause, "MongoDB refused the write: %.400s", w->error ? w->error : "");
  rtu_run_fail_at(res, RTU_ERR_DATA, msg, cause);
}

/* Step 5: one write per record, sent as one bulk. A write the driver refuses
 * (before sending anything) ends the run before its record's first message, and
 * the writes are built again for the shorter run. */
static rtu_err_t write_records(rtu_batch_t *b, const rtu_projection_t *p, const rtu_msg_t *msgs,
                               size_t ngroups, uint32_t limit, int64_t now, size_t *nwrites,
                               rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE];
  rtu_err_t rc;
  for (;;) {
    *nwrites = build_writes(b, msgs, ngroups, limit, now, res);
    res->writes = *nwrites;
    rc = rtu_store_write(b->store, p, b->writes, *nwrites, err, sizeof err);
    if (rc != RTU_ERR_DATA) break;
    uint32_t new_limit = limit;
    for (size_t w = 0; w < *nwrites; w++) {
      if (b->writes[w].status != RTU_WRITE_FAILED) continue;
      uint32_t first = first_applied(b, w);
      if (first < new_limit) {
        write_refused(res, &b->writes[w], &msgs[first]);
        new_limit = first;
      }
    }
    if (new_limit >= limit) break; /* cannot happen: a failed write has an applied message */
    limit = new_limit;
  }
  if (rc == RTU_OK) return RTU_OK;
  snprintf(res->cause, sizeof res->cause, "%s", err);
  return rc == RTU_ERR_DATA ? RTU_ERR_FATAL : rc;
}

/* What the server said of each write: stale ones count, a failed one stops the
 * run at its record's first message of the run (all of it is re-applied,
 * idempotently by the guard, when the partition is resumed). */
static void read_statuses(rtu_batch_t *b, const rtu_msg_t *msgs, size_t nwrites,
                          rtu_run_result_t *res) {
  for (size_t w = 0; w < nwrites; w++) {
    const rtu_fold_group_t *g = &b->groups[b->write_group[w]];
    if (b->writes[w].status == RTU_WRITE_STALE)
      res->stale++;
    else if (b->writes[w].status == RTU_WRITE_FAILED)
      write_refused(res, &b->writes[w], &msgs[b->events[g->first].msg]);
  }
}

/* The messages applied (not skipped, not stale) before the run's end; with a
 * deferred stage, which were skipped, for it to count them again. */
static rtu_err_t count_applied(rtu_batch_t *b, const rtu_msg_t *msgs, size_t n,
                               rtu_deferred_t *defer, rtu_run_result_t *res) {
  for (uint32_t i = 0; i < n && msgs[i].offset < res->next_offset; i++)
    if (!b->mapped[i].skip) res->applied++;
  if (res->applied >= res->stale) res->applied -= res->stale;
  if (!defer || defer->n == 0) return RTU_OK;
  /* the stage may move the run's end back: applied is counted again then */
  defer->skipped = malloc(n);
  if (!defer->skipped) {
    snprintf(res->cause, sizeof res->cause, "out of memory");
    return RTU_ERR_FATAL;
  }
  for (uint32_t i = 0; i < n; i++) defer->skipped[i] = b->mapped[i].skip;
  return RTU_OK;
}

/* The unmapped and uncastable fields the run's mapping met: logged with
 * LOGGING_UNMAPPED_FIELDS, recorded with COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE
 * (one bulk per run). keep false: a run that ends before its writes forgets
 * them (its retry maps the messages again). RTU_ERR_TRANSIENT: retry the run. */
static rtu_err_t record_unmapped(rtu_batch_t *b, size_t projection, bool keep,
                                 rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE];
  if (!rtu_config_notes_unmapped(b->cfg)) return RTU_OK;
  const rtu_projection_t *p = &b->cfg->projections[projection];
  rtu_unmapped_t *u;
  size_t n;
  rtu_err_t rc = rtu_script_map_notes(b->script, projection, &u, &n, err, sizeof err);
  if (rc == RTU_OK && keep && b->cfg->log_unmapped_fields)
    for (size_t i = 0; i < n; i++) {
      char count[24], offset[24], partition[24];
      rtu_int_text(u[i].count, count);
      rtu_int_text(u[i].offset, offset);
      rtu_int_text(u[i].partition, partition);
      rtu_log(RTU_LOG_INFO, !strcmp(u[i].type, "UNKNOWN_FIELD") ? "unmapped field"
                                                                 : "uncastable field",
              "projection", p->name, "field", u[i].field, "type", u[i].type, "#count", count,
              "topic", u[i].topic, "#partition", partition, "offset", offset, NULL);
    }
  if (rc == RTU_OK && keep)
    rc = rtu_store_write_unmapped(b->store, p, u, n, err, sizeof err);
  rtu_unmapped_free(u, n);
  if (!keep) return RTU_OK;
  if (rc != RTU_OK) snprintf(res->cause, sizeof res->cause, "%s", err);
  return rc == RTU_ERR_DATA ? RTU_ERR_TRANSIENT : rc;
}

static void observe(rtu_hist_t h, int64_t *t0) {
  int64_t t1 = rtu_now_mono_us();
  rtu_metrics_observe(h, (double)(t1 - *t0) / 1e6);
  *t0 = t1;
}

/* A whole command refused for a reason of configuration (credentials, a role
 * without the right, an unsatisfiable write concern) is no outage to wait out and
 * no fault of a message: the run stops at its first message, named as such, and
 * so does its partition (never dead-lettered). Returned as it is, a run result
 * without a failure would let the consumer commit past messages never applied. */
static rtu_err_t stop_if_refused(rtu_err_t rc, const rtu_msg_t *msgs, rtu_run_result_t *res) {
  if (rc != RTU_ERR_CONFIG) return rc;
  char cause[sizeof res->cause];
  snprintf(cause, sizeof cause, "%s", res->cause);
  rtu_run_fail_at(res, RTU_ERR_CONFIG, &msgs[0], cause);
  res->next_offset = res->fail_offset;
  res->applied = res->stale = res->skipped = 0;
  return RTU_OK;
}

/* Steps 1 and 2: the run's messages mapped, its events grouped per record.
 * *go: the run goes on to its read (false when it is over: empty, or an error
 * returned). */
static rtu_err_t run_begin(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                           rtu_deferred_t *defer, rtu_run_result_t *res, bool *go) {
  run_t *r = &b->run;
  *go = false;
  *r = (run_t){.projection = projection, .p = &b->cfg->projections[projection], .msgs = msgs,
               .n = n, .defer = defer, .res = res, .t0 = rtu_now_mono_us()};
  memset(res, 0, sizeof *res);
  if (defer) memset(defer, 0, sizeof *defer);
  res->messages = n;
  if (n == 0) return RTU_OK;
  res->next_offset = msgs[n - 1].offset + 1;
  if (!reserve(b, n)) goto oom;
  r->limit = (uint32_t)n;
  size_t nevents;
  rtu_err_t rc = map_messages(b, projection, msgs, &r->limit, &nevents, res);
  if (rc != RTU_OK) {
    record_unmapped(b, projection, false, res);
    return rc;
  }
  r->ngroups = group_events(b, nevents);
  if (!reserve_writes(b, r->ngroups)) goto oom;
  r->strategies = b->cfg->pc_enabled && rtu_strategies_involved(b->script, projection);
  r->pr_updates = b->emit && b->cfg->gen_kafka_pr_updates && r->p->pr_update_topic;
  observe(RTU_H_PREPARATION, &r->t0);
  *go = true;
  return RTU_OK;
oom:
  snprintf(res->cause, sizeof res->cause, "out of memory for a run of %zu messages", n);
  return RTU_ERR_FATAL;
}

/* After a failed read of the stored records (rc, err): the run is over. */
static rtu_err_t run_unread(rtu_batch_t *b, rtu_err_t rc, const char *err) {
  run_t *r = &b->run;
  snprintf(r->res->cause, sizeof r->res->cause, "%s", err);
  drop_stored(b, r->ngroups);
  record_unmapped(b, r->projection, false, r->res);
  return stop_if_refused(rc == RTU_ERR_DATA ? RTU_ERR_TRANSIENT : rc, r->msgs, r->res);
}

/* Steps 6 and 7, once the writes came back with rc: what the server said of
 * each, the strategies' documents and the pr-updates, the messages counted. */
static rtu_err_t run_finish(rtu_batch_t *b, rtu_err_t rc) {
  run_t *r = &b->run;
  rtu_run_result_t *res = r->res;
  rtu_err_t urc = record_unmapped(b, r->projection, rc == RTU_OK, res);
  if (rc == RTU_OK) rc = urc;
  if (rc != RTU_OK) {
    rc = stop_if_refused(rc, r->msgs, res);
    goto done;
  }
  read_statuses(b, r->msgs, r->nwrites, res);
  observe(RTU_H_STORAGE, &r->t0);

  if (res->failed) res->next_offset = res->fail_offset;
  if (r->strategies || r->pr_updates) {
    rc = after_writes(b, r->projection, r->msgs, r->n, r->ngroups, r->now, r->strategies,
                      r->pr_updates, r->defer, res);
    observe(RTU_H_PRODUCER, &r->t0);
    if (rc != RTU_OK) goto done;
  }
  rc = count_applied(b, r->msgs, r->n, r->defer, res);
done:
  drop_stored(b, r->ngroups);
  if (b->mapped_cap > KEEP_CAP && r->n < b->mapped_cap / 4) release(b);
  return rc;
}

rtu_err_t rtu_batch_run(rtu_batch_t *b, size_t projection, const rtu_msg_t *msgs, size_t n,
                        rtu_deferred_t *defer, rtu_run_result_t *res) {
  run_t *r = &b->run;
  bool go;
  rtu_err_t rc = run_begin(b, projection, msgs, n, defer, res, &go);
  if (!go) return rc;
  rc = read_stored(b, r->p, r->ngroups, r->strategies || r->pr_updates, res);
  if (rc != RTU_OK) {
    record_unmapped(b, projection, false, res);
    return stop_if_refused(rc, msgs, res);
  }
  find_conflicts(b, msgs, r->ngroups, &r->limit, res);
  r->now = rtu_now_ms();
  rc = write_records(b, r->p, msgs, r->ngroups, r->limit, r->now, &r->nwrites, res);
  return run_finish(b, rc);
}

/* ---- runs joined -------------------------------------------------------- */

/* The joined runs still in step (go), each with its own read context. */
typedef struct {
  rtu_batch_t *const *bs;
  const bool *go;
  read_ctx_t *ctx;
  size_t k;
} joined_read_t;

/* A stored record goes to the run whose records it is one of (on_stored finds
 * nothing in the others). */
static void on_stored_joined(void *vctx, const bson_t *doc) {
  joined_read_t *j = vctx;
  for (size_t i = 0; i < j->k; i++)
    if (j->go[i]) on_stored(&j->ctx[i], doc);
}

/* Step 3 for the runs in step: one read for all their records. */
static void read_joined(rtu_batch_t *const *bs, size_t k, bool *go, rtu_err_t *rcs) {
  char err[RTU_ERRSTR_SIZE];
  size_t nkeys = 0, at = 0;
  for (size_t i = 0; i < k; i++)
    if (go[i]) nkeys += bs[i]->run.ngroups;
  bson_t **keys = malloc((nkeys ? nkeys : 1) * sizeof *keys);
  read_ctx_t *ctx = calloc(k, sizeof *ctx);
  rtu_err_t rc = RTU_ERR_FATAL;
  snprintf(err, sizeof err, "out of memory");
  if (keys && ctx) {
    for (size_t i = 0; i < k; i++) {
      if (!go[i]) continue;
      const run_t *r = &bs[i]->run;
      ctx[i] = (read_ctx_t){bs[i], r->p, r->ngroups, r->strategies || r->pr_updates};
      for (size_t g = 0; g < r->ngroups; g++)
        keys[at++] = (bson_t *)bs[i]->events[bs[i]->groups[g].first].key;
    }
    joined_read_t j = {bs, go, ctx, k};
    rc = nkeys ? rtu_store_find_keys(bs[0]->store, bs[0]->run.p, keys, nkeys, on_stored_joined,
                                     &j, err, sizeof err)
               : RTU_OK;
  }
  free(keys);
  free(ctx);
  if (rc == RTU_OK) return;
  for (size_t i = 0; i < k; i++)
    if (go[i]) {
      rcs[i] = run_unread(bs[i], rc, err);
      go[i] = false;
    }
}

/* Step 5 for the runs in step: their writes in one bulk, read in place (static
 * bson_t over each run's own documents), the statuses and errors the store sets
 * handed back to each run's writes. A write the driver refuses sends nothing:
 * each run then writes on its own, shortening itself as it does alone. */
static void write_joined(rtu_batch_t *const *bs, size_t k, const bool *go, rtu_err_t *rcs) {
  char err[RTU_ERRSTR_SIZE];
  size_t total = 0, at = 0;
  for (size_t i = 0; i < k; i++) {
    if (!go[i]) continue;
    run_t *r = &bs[i]->run;
    r->nwrites = build_writes(bs[i], r->msgs, r->ngroups, r->limit, r->now, r->res);
    r->res->writes = r->nwrites;
    total += r->nwrites;
  }
  rtu_write_t *all = rtu_aligned_calloc(total ? total : 1, sizeof *all);
  rtu_err_t rc = RTU_ERR_DATA; /* out of memory: each run on its own */
  if (all) {
    for (size_t i = 0; i < k; i++)
      for (size_t w = 0; go[i] && w < bs[i]->run.nwrites; w++, at++) {
        const rtu_write_t *own = &bs[i]->writes[w];
        all[at] = (rtu_write_t){.kind = own->kind, .upsert = own->upsert,
                                .validate = own->validate};
        bson_init_static(&all[at].filter, bson_get_data(&own->filter), own->filter.len);
        bson_init_static(&all[at].update, bson_get_data(&own->update), own->update.len);
      }
    rc = rtu_store_write(bs[0]->store, bs[0]->run.p, all, total, err, sizeof err);
  }
  if (rc == RTU_ERR_DATA)
    for (size_t w = 0; all && w < total; w++) bson_free(all[w].error);
  at = 0;
  for (size_t i = 0; i < k; i++) {
    if (!go[i]) continue;
    run_t *r = &bs[i]->run;
    if (rc == RTU_ERR_DATA) {
      rcs[i] = write_records(bs[i], r->p, r->msgs, r->ngroups, r->limit, r->now, &r->nwrites,
                             r->res);
      continue;
    }
    for (size_t w = 0; w < r->nwrites; w++, at++) {
      bs[i]->writes[w].status = all[at].status;
      bs[i]->writes[w].error = all[at].error;
    }
    rcs[i] = rc;
    if (rc != RTU_OK) snprintf(r->res->cause, sizeof r->res->cause, "%s", err);
  }
  free(all);
}

void rtu_batch_run_joined(rtu_batch_t *const *bs, size_t k, size_t projection,
                          rtu_batch_joined_t *runs) {
  bool *go = calloc(k ? k : 1, sizeof *go);
  rtu_err_t *rcs = calloc(k ? k : 1, sizeof *rcs);
  if (!go || !rcs) {
    free(go);
    free(rcs);
    for (size_t i = 0; i < k; i++)
      runs[i].err = rtu_batch_run(bs[i], projection, runs[i].msgs, runs[i].n, runs[i].defer,
                                  runs[i].res);
    return;
  }
  for (size_t i = 0; i < k; i++)
    rcs[i] = run_begin(bs[i], projection, runs[i].msgs, runs[i].n, runs[i].defer, runs[i].res,
                       &go[i]);
  read_joined(bs, k, go, rcs);
  for (size_t i = 0; i < k; i++)
    if (go[i]) {
      run_t *r = &bs[i]->run;
      find_conflicts(bs[i], r->msgs, r->ngroups, &r->limit, r->res);
      r->now = rtu_now_ms();
    }
  write_joined(bs, k, go, rcs);
  for (size_t i = 0; i < k; i++) runs[i].err = go[i] ? run_finish(bs[i], rcs[i]) : rcs[i];
  free(go);
  free(rcs);
}
