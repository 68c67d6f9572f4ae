/*
 * pool.c: owns the worker threads and everything a worker uses alone (batch
 * context, Lua state, MongoDB store, Kafka producer), and the script
 * generations. A poll's runs go out in two rounds: the partition runs (batch.c;
 * the small runs of a projection joined, to share their round trips), then one
 * strategies stage per projection over what they deferred (stage.c).
 * It decides nothing about offsets or pauses: it returns what became of each
 * run (consumer.c decides).
 *
 * Why a barrier per poll rather than a queue per partition: a poll gathers at
 * most one run per partition, the runs are independent, and the consumer must
 * know every outcome before it stores offsets, pauses or commits. Workers pull
 * runs from a shared index so a long run does not hold the others back.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config_files.h"
#include "emit.h"
#include "log.h"
#include "metrics.h"
#include "store_mongo.h"
#include "util.h"

/* Runs of at most JOIN_MSGS messages are joined, up to JOIN_RUNS runs and
 * JOIN_TOTAL messages a task: under a trickle a poll brings a few messages of
 * each partition, and a run's two round trips (its read and its bulk) were most
 * of its time; joined, the runs of a projection share them (rtu_batch_run_joined).
 * Larger runs keep a task each, so that the workers share the mapping's work. */
#define JOIN_MSGS 64
#define JOIN_RUNS 16
#define JOIN_TOTAL 256

/* What a worker takes in a round: a partition run, (njoined > 1) partition runs
 * of one projection joined, or (runs != NULL) the strategies stage of one
 * projection. */
typedef struct {
  rtu_job_t *job;
  rtu_job_t **joined; /* njoined jobs, job == joined[0] */
  size_t njoined;
  size_t projection;
  rtu_deferred_t **runs;
  size_t nruns;
} task_t;

typedef struct {
  rtu_pool_t *pool;
  size_t index;
  pthread_t thread;
  bool started;
  rtu_store_t *store;
  rtu_emit_t *emit;
  rtu_batch_t *batch;
  /* Batch contexts for joined runs beyond the first (which is batch), made
   * when first needed; they share the worker's script, store and producer. */
  rtu_batch_t *extra[JOIN_RUNS - 1];
} worker_t;

struct rtu_pool_s {
  const rtu_config_t *base;
  rtu_generation_t *gen;
  worker_t *workers;
  size_t nworkers;

  pthread_mutex_t lock;
  pthread_cond_t work;  /* a new round of jobs, or shutdown */
  pthread_cond_t done;  /* the round's last job finished */
  task_t *tasks; /* the round's */
  size_t ntasks, next_task, finished;
  bool shutdown;
  task_t *buf;            /* the tasks of a poll, grown as polls grow */
  rtu_deferred_t **sruns; /* the deferred runs, grouped per projection */
  rtu_job_t **jruns;      /* the joined runs, grouped per task */
  size_t buf_cap;
};

/* ---- generations -------------------------------------------------------- */

static const char *env_get(const char *name) { return getenv(name); }

/* What a reload cannot change without a restart: the consumer's subscription,
 * the stores' collections and keys, the producers. */
static bool compatible(const rtu_config_t *a, const rtu_config_t *b, rtu_problems_t *problems) {
  if (a->ntopics != b->ntopics || a->nprojections != b->nprojections) {
    rtu_problems_add(problems, "reload: the topics or projections changed; that needs a restart");
    return false;
  }
  for (size_t i = 0; i < a->ntopics; i++)
    if (strcmp(a->topics[i].topic, b->topics[i].topic) ||
        a->topics[i].projection != b->topics[i].projection) {
      rtu_problems_add(problems, "reload: topic %s changed; that needs a restart", b->topics[i].topic);
      return false;
    }
  for (size_t i = 0; i < a->nprojections; i++) {
    const rtu_projection_t *x = &a->projections[i], *y = &b->projections[i];
    bool same = !strcmp(x->name, y->name) && !strcmp(x->destination, y->destination) &&
                x->npk == y->npk;
    for (size_t k = 0; same && k < x->npk; k++)
      same = !strcmp(x->pk_dst[k], y->pk_dst[k]) && !strcmp(x->pk_src[k], y->pk_src[k]);
    if (!same) {
      rtu_problems_add(problems,
                       "reload: projection %s changed its collection or primary key; that needs a "
                       "restart",
                       y->name);
      return false;
    }
  }
  if (rtu_emit_needed(b) && !rtu_emit_needed(a)) {
    rtu_problems_add(problems,
                     "reload: Kafka outputs were added and rtu started without a producer; that "
                     "needs a restart");
    return false;
  }
  return true;
}

rtu_generation_t *rtu_generation_load(const rtu_config_t *base, const char *default_lua_dir,
                                      size_t nworkers, rtu_problems_t *problems) {
  static _Atomic unsigned next_id = 1;
  rtu_generation_t *gen = calloc(1, sizeof *gen);
  if (!gen || !(gen->scripts = calloc(nworkers, sizeof *gen->scripts))) {
    rtu_problems_add(problems, "out of memory loading a script generation");
    goto fail;
  }
  gen->cfg = rtu_config_load(env_get, default_lua_dir, problems);
  if (!gen->cfg) goto fail;
  if (base && !compatible(base, gen->cfg, problems)) goto fail;
  /* The first state finds every problem; the others would repeat them. */
  for (; gen->nscripts < nworkers; gen->nscripts++) {
    gen->scripts[gen->nscripts] = rtu_script_new(gen->cfg, problems);
    if (!gen->scripts[gen->nscripts]) goto fail;
  }
  gen->id = next_id++;
  return gen;
fail:
  rtu_generation_free(gen);
  return NULL;
}

void rtu_generation_free(rtu_generation_t *gen) {
  if (!gen) return;
  for (size_t i = 0; i < gen->nscripts; i++) rtu_script_free(gen->scripts[i]);
  free(gen->scripts);
  rtu_config_free(gen->cfg);
  free(gen);
}

/* ---- workers ------------------------------------------------------------ */

/* The worker's batch contexts for k joined runs; false when one cannot be made. */
static bool joined_contexts(worker_t *w, size_t k, rtu_batch_t **bs) {
  const rtu_generation_t *gen = w->pool->gen;
  bs[0] = w->batch;
  for (size_t i = 1; i < k; i++) {
    if (!w->extra[i - 1]) {
      w->extra[i - 1] = rtu_batch_new(gen->cfg, gen->scripts[w->index], w->store);
      if (!w->extra[i - 1]) return false;
      rtu_batch_set_emit(w->extra[i - 1], w->emit);
    }
    bs[i] = w->extra[i - 1];
  }
  return true;
}

static void run_joined(worker_t *w, task_t *t) {
  rtu_batch_t *bs[JOIN_RUNS];
  rtu_batch_joined_t runs[JOIN_RUNS];
  int64_t t0 = rtu_now_mono_us();
  if (!joined_contexts(w, t->njoined, bs)) {
    for (size_t i = 0; i < t->njoined; i++) {
      rtu_job_t *job = t->joined[i];
      rtu_batch_set_outputs_done(w->batch, job->outputs_done);
      job->err = rtu_batch_run(w->batch, job->projection, job->msgs, job->n, &job->deferred,
                               &job->res);
    }
    return;
  }
  for (size_t i = 0; i < t->njoined; i++) {
    rtu_job_t *job = t->joined[i];
    rtu_batch_set_outputs_done(bs[i], job->outputs_done);
    runs[i] = (rtu_batch_joined_t){job->msgs, job->n, &job->deferred, &job->res, RTU_OK};
  }
  rtu_batch_run_joined(bs, t->njoined, t->projection, runs);
  double seconds = (double)(rtu_now_mono_us() - t0) / 1e6;
  for (size_t i = 0; i < t->njoined; i++) {
    t->joined[i]->err = runs[i].err;
    rtu_metrics_observe(RTU_H_PARTITION, seconds);
  }
}

static void run_task(worker_t *w, task_t *t) {
  if (t->runs) {
    rtu_stage_run(rtu_batch_stage(w->batch), t->projection, t->runs, t->nruns);
    return;
  }
  if (t->njoined > 1) {
    run_joined(w, t);
    return;
  }
  rtu_job_t *job = t->job;
  int64_t t0 = rtu_now_mono_us();
  rtu_batch_set_outputs_done(w->batch, job->outputs_done);
  job->err = rtu_batch_run(w->batch, job->projection, job->msgs, job->n, &job->deferred,
                           &job->res);
  rtu_metrics_observe(RTU_H_PARTITION, (double)(rtu_now_mono_us() - t0) / 1e6);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  rtu_pool_t *p = w->pool;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->shutdown && p->next_task >= p->ntasks) {
      /* An idle worker serves its producer's statistics (a producer's callbacks
       * run only when its owner polls it): the kafka_producer_* series. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += 1;
      if (pthread_cond_timedwait(&p->work, &p->lock, &until) == ETIMEDOUT && w->emit) {
        pthread_mutex_unlock(&p->lock);
        rtu_emit_poll(w->emit);
        pthread_mutex_lock(&p->lock);
      }
    }
    if (p->shutdown) break;
    task_t *t = &p->tasks[p->next_task++];
    pthread_mutex_unlock(&p->lock);
    run_task(w, t);
    pthread_mutex_lock(&p->lock);
    if (++p->finished == p->ntasks) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

rtu_pool_t *rtu_pool_new(const rtu_config_t *base, rtu_generation_t *gen, size_t nworkers,
                         char *errstr, size_t errstr_size) {
  rtu_pool_t *p = calloc(1, sizeof *p);
  if (!p) {
    snprintf(errstr, errstr_size, "out of memory");
    rtu_generation_free(gen);
    return NULL;
  }
  p->base = base;
  p->gen = gen;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  p->workers = calloc(nworkers, sizeof *p->workers);
  if (!p->workers || gen->nscripts < nworkers) {
    snprintf(errstr, errstr_size, "out of memory");
    goto fail;
  }
  p->nworkers = nworkers;
  for (size_t i = 0; i < nworkers; i++) {
    worker_t *w = &p->workers[i];
    w->pool = p;
    w->index = i;
    w->store = rtu_store_mongo_new(base, errstr, errstr_size);
    if (!w->store) goto fail;
    w->emit = rtu_emit_new(base, errstr, errstr_size);
    if (!w->emit && errstr[0]) goto fail;
    w->batch = rtu_batch_new(gen->cfg, gen->scripts[i], w->store);
    if (!w->batch) {
      snprintf(errstr, errstr_size, "out of memory");
      goto fail;
    }
    rtu_batch_set_emit(w->batch, w->emit);
  }
  if (nworkers > 1)
    for (size_t i = 0; i < nworkers; i++) {
      int e = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
      if (e) {
        snprintf(errstr, errstr_size, "cannot start worker %zu: %s", i, strerror(e));
        goto fail;
      }
      p->workers[i].started = true;
    }
  return p;
fail:
  rtu_pool_free(p);
  return NULL;
}

void rtu_pool_free(rtu_pool_t *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->shutdown = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  for (size_t i = 0; p->workers && i < p->nworkers; i++) {
    worker_t *w = &p->workers[i];
    if (w->started) pthread_join(w->thread, NULL);
    rtu_batch_free(w->batch);
    for (size_t i = 0; i < JOIN_RUNS - 1; i++) rtu_batch_free(w->extra[i]);
    rtu_emit_free(w->emit);
    rtu_store_free(w->store);
  }
  free(p->workers);
  free(p->buf);
  free(p->sruns);
  free(p->jruns);
  rtu_generation_free(p->gen);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

size_t rtu_pool_size(const rtu_pool_t *p) { return p->nworkers; }
rtu_store_t *rtu_pool_store(rtu_pool_t *p) { return p->workers[0].store; }
const rtu_generation_t *rtu_pool_generation(const rtu_pool_t *p) { return p->gen; }

/* Runs tasks[0..n) across the workers; returns when every one is done. */
static void run_round(rtu_pool_t *p, task_t *tasks, size_t n) {
  if (n == 0) return;
  if (p->nworkers == 1 || n == 1) {
    /* No hand-over when there is nothing to share out. */
    for (size_t i = 0; i < n; i++) run_task(&p->workers[0], &tasks[i]);
    return;
  }
  pthread_mutex_lock(&p->lock);
  p->tasks = tasks;
  p->ntasks = n;
  p->next_task = 0;
  p->finished = 0;
  pthread_cond_broadcast(&p->work);
  while (p->finished < p->ntasks) pthread_cond_wait(&p->done, &p->lock);
  p->tasks = NULL;
  p->ntasks = 0;
  pthread_mutex_unlock(&p->lock);
}

static bool reserve_tasks(rtu_pool_t *p, size_t n) {
  if (n <= p->buf_cap) return true;
  task_t *buf = realloc(p->buf, n * sizeof *buf);
  if (buf) p->buf = buf;
  rtu_deferred_t **sruns = realloc(p->sruns, n * sizeof *sruns);
  if (sruns) p->sruns = sruns;
  rtu_job_t **jruns = realloc(p->jruns, n * sizeof *jruns);
  if (jruns) p->jruns = jruns;
  if (!buf || !sruns || !jruns) return false;
  p->buf_cap = n;
  return true;
}

/* The strategies tasks of a poll, after its runs: one per projection whose runs
 * deferred documents, the projections in parallel on the workers, each run in
 * job order (by topic, then partition). */
static size_t strategies_tasks(rtu_pool_t *p, rtu_job_t *jobs, size_t njobs) {
  size_t ntasks = 0, nruns = 0;
  for (size_t proj = 0; proj < p->gen->cfg->nprojections; proj++) {
    size_t start = nruns;
    for (size_t k = 0; k < njobs; k++)
      if (jobs[k].projection == proj && jobs[k].err == RTU_OK && jobs[k].deferred.n > 0)
        p->sruns[nruns++] = &jobs[k].deferred;
    if (nruns > start)
      p->buf[ntasks++] =
          (task_t){.projection = proj, .runs = &p->sruns[start], .nruns = nruns - start};
  }
  return ntasks;
}

/* The run tasks of a poll: small runs of a projection joined (JOIN_*), the
 * others one a task. Joining is off when the mapping notes unmapped fields
 * (rtu_batch_run_joined says why). */
static size_t run_tasks(rtu_pool_t *p, rtu_job_t *jobs, size_t njobs) {
  size_t ntasks = 0, nj = 0;
  bool join = !rtu_config_notes_unmapped(p->gen->cfg);
  for (size_t k = 0; k < njobs; k++)
    if (!join || jobs[k].n > JOIN_MSGS) p->buf[ntasks++] = (task_t){.job = &jobs[k]};
  for (size_t proj = 0; join && proj < p->gen->cfg->nprojections; proj++) {
    task_t *t = NULL;
    size_t total = 0;
    for (size_t k = 0; k < njobs; k++) {
      if (jobs[k].projection != proj || jobs[k].n > JOIN_MSGS) continue;
      if (!t || t->njoined == JOIN_RUNS || total + jobs[k].n > JOIN_TOTAL) {
        t = &p->buf[ntasks++];
        *t = (task_t){.job = &jobs[k], .joined = &p->jruns[nj], .projection = proj};
        total = 0;
      }
      p->jruns[nj++] = &jobs[k];
      t->njoined++;
      total += jobs[k].n;
    }
  }
  return ntasks;
}

rtu_err_t rtu_pool_run(rtu_pool_t *p, rtu_job_t *jobs, size_t n, char *errstr,
                       size_t errstr_size) {
  if (!reserve_tasks(p, n)) {
    snprintf(errstr, errstr_size, "out of memory for a poll of %zu runs", n);
    return RTU_ERR_FATAL;
  }
  run_round(p, p->buf, run_tasks(p, jobs, n));
  run_round(p, p->buf, strategies_tasks(p, jobs, n));
  for (size_t k = 0; k < n; k++) {
    if (jobs[k].err == RTU_OK) jobs[k].err = jobs[k].deferred.err;
    rtu_deferred_free(&jobs[k].deferred);
  }
  return RTU_OK;
}

void rtu_pool_swap(rtu_pool_t *p, rtu_generation_t *gen) {
  for (size_t i = 0; i < p->nworkers; i++) {
    rtu_batch_set_generation(p->workers[i].batch, gen->cfg, gen->scripts[i]);
    for (size_t k = 0; k < JOIN_RUNS - 1; k++)
      if (p->workers[i].extra[k])
        rtu_batch_set_generation(p->workers[i].extra[k], gen->cfg, gen->scripts[i]);
  }
  rtu_generation_free(p->gen);
  p->gen = gen;
}

void rtu_pool_stats(const rtu_pool_t *p, uint64_t *commands, uint64_t *lookups) {
  *commands = *lookups = 0;
  for (size_t i = 0; i < p->nworkers; i++) {
    const rtu_store_stats_t *s = rtu_store_stats(p->workers[i].store);
    *commands += s->commands;
    *lookups += s->lookups;
  }
}
