/*
 * stage.c: owns the strategies stage: the documents the runs of a poll hand to
 * strategies wait for the other runs, and each projection's go through one
 * identify call (script.c), so a hop's lookup and a single view found from
 * several partitions are paid once per poll, not once per partition run. It
 * records the projection changes through the store and hands their Kafka
 * messages to messages.c. A strategy failing stops its run at the message the
 * failing document stands for.
 *
 * It does not fold or write projections (batch.c), decides no offsets (the
 * consumer commits what the results allow) and formats no message.
 */
#include "stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"
#include "metrics.h"
#include "util.h"
#include "json_write.h"
#include "strategies.h"

struct rtu_stage_s {
  const rtu_config_t *cfg;
  rtu_script_t *script;
  rtu_store_t *store;
  rtu_emit_t *emit; /* NULL when nothing is produced */
  rtu_stage_trace_fn trace; /* rtu test --explain only */
  void *trace_ctx;
};

/* A call of the stage reads at most this many documents at once (whole runs, so
 * a run alone may exceed it) when its strategies take them whole (a custom
 * function gets the documents): the Lua heap of a merged identify call grows
 * with them, their lookups' answers and a coroutine each, and a poll's
 * documents do not reach it whole. */
#define STAGE_MAX_DOCS 512
/* The same when the strategies read only a few fields of each document (a
 * low-code walk): a few hundred bytes of Lua heap each, so all the runs of a
 * poll's projection go in one call (a poll of KAFKA_CONSUMER_MAX_BATCH_SIZE's
 * default, 5,000 messages, gives up to twice as many documents, most often
 * fewer): each hop's lookup is then one query for the poll, not one per run
 * (see docs/performance.md). */
#define STAGE_MAX_READ_DOCS 16384

rtu_stage_t *rtu_stage_new(const rtu_config_t *cfg, rtu_script_t *script, rtu_store_t *store) {
  rtu_stage_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->cfg = cfg;
  s->script = script;
  s->store = store;
  return s;
}

void rtu_stage_free(rtu_stage_t *s) { free(s); }

void rtu_stage_set_emit(rtu_stage_t *s, rtu_emit_t *emit) { s->emit = emit; }

void rtu_stage_set_trace(rtu_stage_t *s, rtu_stage_trace_fn fn, void *ctx) {
  s->trace = fn;
  s->trace_ctx = ctx;
}

void rtu_stage_set_generation(rtu_stage_t *s, const rtu_config_t *cfg, rtu_script_t *script) {
  s->cfg = cfg;
  s->script = script;
}

/* ---- a run's documents --------------------------------------------------- */

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

/* rerun gets the indexes of the sorted documents by since: the order in which
 * the one-by-one reruns look for the failing document, so that it is the one
 * of the earliest message. */
bool rtu_deferred_order(rtu_deferred_t *d) {
  size_t n = d->n;
  run_doc_t *order = calloc(n ? n : 1, sizeof *order);
  if (!order) return false;
  for (size_t i = 0; i < n; i++)
    order[i] = (run_doc_t){d->docs[i], d->origin[i], d->since[i], (uint32_t)i};
  qsort(order, n, sizeof *order, run_doc_cmp);
  for (size_t i = 0; i < n; i++) {
    d->docs[i] = order[i].doc;
    d->origin[i] = order[i].origin;
    d->since[i] = order[i].since;
    order[i].pos = (uint32_t)i;
  }
  qsort(order, n, sizeof *order, run_doc_since_cmp);
  for (size_t i = 0; i < n; i++) d->rerun[i] = order[i].pos;
  free(order);
  return true;
}

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
  rtu_run_fail_at(res, RTU_ERR_SCRIPT, msg, cause);
  res->next_offset = res->fail_offset;
  rtu_metrics_add(strstr(err, "STRATEGIES_MAX_EXEC_TIME_MS") ? RTU_C_STRATEGY_TIMEOUTS
                                                             : RTU_C_STRATEGY_ERRORS,
                  NULL, 1);
}

static void stage_fail(rtu_deferred_t *const *runs, size_t nruns, rtu_err_t rc, const char *err,
                       bool kafka) {
  for (size_t r = 0; r < nruns; r++) {
    runs[r]->err = rc;
    snprintf(runs[r]->res->cause, sizeof runs[r]->res->cause, "%s", err);
    runs[r]->res->kafka_unavailable = kafka;
  }
}

/* ---- one identify call ---------------------------------------------------- */

/* The documents of one call, run after run, each by the message its changes
 * name; the reruns that look for a failing document go run after run too, each
 * by its earliest messages. */
typedef struct {
  size_t n;
  const bson_t **docs;
  const rtu_msg_t **named; /* per document: the message its changes name */
  const rtu_msg_t **from;  /* per document: the earliest message it stands for */
  uint32_t *rerun;
  uint32_t *run_of; /* per document: index of its run in the call */
} call_t;

static void call_free(call_t *c) {
  free(c->docs);
  free(c->named);
  free(c->from);
  free(c->rerun);
  free(c->run_of);
}

static bool call_gather(call_t *c, rtu_deferred_t *const *runs, size_t nruns) {
  size_t n = 0;
  for (size_t r = 0; r < nruns; r++) n += runs[r]->n;
  c->n = n;
  c->docs = calloc(n ? n : 1, sizeof *c->docs);
  c->named = calloc(n ? n : 1, sizeof *c->named);
  c->from = calloc(n ? n : 1, sizeof *c->from);
  c->rerun = calloc(n ? n : 1, sizeof *c->rerun);
  c->run_of = calloc(n ? n : 1, sizeof *c->run_of);
  if (!c->docs || !c->named || !c->from || !c->rerun || !c->run_of) return false;
  for (size_t r = 0, base = 0; r < nruns; base += runs[r]->n, r++) {
    const rtu_deferred_t *d = runs[r];
    for (size_t k = 0; k < d->n; k++) {
      c->docs[base + k] = d->docs[k];
      c->named[base + k] = &d->msgs[d->origin[k]];
      c->from[base + k] = &d->msgs[d->since[k]];
      c->rerun[base + k] = (uint32_t)base + d->rerun[k];
      c->run_of[base + k] = (uint32_t)r;
    }
  }
  return true;
}

static rtu_err_t find_cb(void *ctx, const char *collection, const bson_t *filter,
                         const bson_t *opts, void (*each)(void *, const bson_t *), void *each_ctx,
                         char *errstr, size_t sz) {
  return rtu_store_find(ctx, collection, filter, opts, each, each_ctx, errstr, sz);
}

/* A strategy failed alone on document `failed`: its run stops at the message
 * that document stands for. Returns how many runs the call settles (up to the
 * failing one); *nuse gets how many of ids count. */
static size_t on_failed(const rtu_projection_t *p, call_t *c, rtu_deferred_t *const *runs,
                        size_t failed, const char *err, const rtu_identified_t *ids, size_t nids,
                        size_t *nuse) {
  if (failed >= c->n) failed = 0; /* cannot happen: the earliest, then */
  size_t fr = c->run_of[failed];
  strategy_failed(p, c->docs[failed], c->from[failed], err, runs[fr]->res);
  recount_applied(runs[fr]);
  /* The single views came from the reruns, run after run and in each by the
   * earliest message: those of the runs before and of the failing run's
   * earlier messages lead, each naming the earliest message that found it, as
   * applying the messages one by one up to the failing one would. */
  size_t k = 0;
  while (k < nids && (c->run_of[ids[k].origin] < fr ||
                      (c->run_of[ids[k].origin] == fr &&
                       c->from[ids[k].origin]->offset < c->from[failed]->offset)))
    k++;
  *nuse = k;
  memcpy(c->named, c->from, c->n * sizeof *c->named);
  return fr + 1;
}

/* The projection changes of runs[0..nruns) cannot be recorded: each run stops
 * at the earliest message of its documents, everything before it done. */
static void pcs_refused(const call_t *c, rtu_deferred_t *const *runs, size_t nruns, rtu_err_t rc,
                        const char *err) {
  char cause[RTU_ERRSTR_SIZE];
  snprintf(cause, sizeof cause, "projection changes not recorded: %.470s", err);
  for (size_t r = 0; r < nruns; r++) {
    const rtu_msg_t *first = NULL;
    for (size_t k = 0; k < c->n; k++)
      if (c->run_of[k] == r && (!first || c->from[k]->offset < first->offset)) first = c->from[k];
    if (!first) continue;
    rtu_run_fail_at(runs[r]->res, rc, first, cause);
    runs[r]->res->next_offset = runs[r]->res->fail_offset;
    recount_applied(runs[r]);
  }
}

/* Records the projection changes of ids[0..n) (one bulk) and produces their
 * Kafka messages; an error goes to runs[0..nruns). */
static void record_changes(rtu_stage_t *s, const rtu_projection_t *p, const call_t *c,
                           rtu_deferred_t *const *runs, size_t nruns, const rtu_identified_t *ids,
                           size_t n) {
  char err[RTU_ERRSTR_SIZE];
  rtu_pc_t *pcs = calloc(n ? n : 1, sizeof *pcs);
  if (!pcs) {
    stage_fail(runs, nruns, RTU_ERR_FATAL, "out of memory", false);
    return;
  }
  for (size_t i = 0; i < n; i++)
    pcs[i] = (rtu_pc_t){ids[i].type, &ids[i].identifier, c->named[ids[i].origin]};
  rtu_err_t rc = rtu_store_write_pcs(s->store, pcs, n, err, sizeof err);
  free(pcs);
  if (rc == RTU_ERR_DATA || rc == RTU_ERR_CONFIG) {
    /* Retrying would fail the same way forever: each run stops at the earliest
     * message its documents stand for (or that message is dead-lettered). */
    pcs_refused(c, runs, nruns, rc, err);
    return;
  }
  if (rc != RTU_OK) {
    stage_fail(runs, nruns, rc, err, false);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    runs[c->run_of[ids[i].origin]]->res->changes++;
    rtu_metrics_add(RTU_C_PROJECTION_CHANGES, ids[i].type, 1);
  }
  if (s->emit && s->cfg->gen_kafka_pc) {
    rc = rtu_messages_pcs(s->emit, p, ids, n, c->named, err, sizeof err);
    if (rc != RTU_OK) stage_fail(runs, nruns, rc, err, rc == RTU_ERR_TRANSIENT);
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
static size_t stage_call(rtu_stage_t *s, size_t projection, rtu_deferred_t *const *runs,
                         size_t nruns) {
  const rtu_projection_t *p = &s->cfg->projections[projection];
  size_t handled = nruns, nids = 0, nuse, failed;
  call_t c = {0};
  rtu_identified_t *ids = NULL;
  char err[RTU_ERRSTR_SIZE];
  if (!call_gather(&c, runs, nruns)) {
    stage_fail(runs, nruns, RTU_ERR_FATAL, "out of memory", false);
    goto done;
  }
  rtu_metrics_add(RTU_C_STRATEGY_DOCUMENTS, NULL, c.n);
  if (s->trace) s->trace(s->trace_ctx, p, c.docs, c.n, NULL, 0);
  int64_t t0 = rtu_now_mono_us();
  rtu_err_t rc = rtu_strategies_identify(s->script, projection, c.docs, c.rerun, c.n, find_cb,
                                     s->store, &ids, &nids, &failed, err, sizeof err);
  rtu_metrics_observe(RTU_H_STRATEGY, (double)(rtu_now_mono_us() - t0) / 1e6);
  if (s->trace) s->trace(s->trace_ctx, p, c.docs, c.n, ids, nids);
  nuse = nids;
  if (rc == RTU_ERR_SCRIPT) {
    handled = on_failed(p, &c, runs, failed, err, ids, nids, &nuse);
    rc = RTU_OK;
  }
  if (rc != RTU_OK) {
    stage_fail(runs, handled, rc, err, false);
    goto done;
  }
  record_changes(s, p, &c, runs, handled, ids, nuse);
done:
  call_free(&c);
  rtu_identified_free(ids, nids);
  return handled; /* at least 1: all runs, or up to the failing one */
}

void rtu_stage_run(rtu_stage_t *s, size_t projection, rtu_deferred_t *const *runs, size_t nruns) {
  size_t i = 0;
  size_t max = rtu_strategies_whole_docs(s->script, projection) ? STAGE_MAX_DOCS
                                                                 : STAGE_MAX_READ_DOCS;
  while (i < nruns) {
    size_t j = i, ndocs = 0;
    do ndocs += runs[j++]->n;
    while (j < nruns && ndocs + runs[j]->n <= max);
    i += stage_call(s, projection, runs + i, j - i);
  }
}
