/*
 * pool.h: the workers that apply partition runs in parallel. Each worker owns a
 * batch context, a Lua state of the current script generation, a store and a
 * Kafka producer, so nothing on the message path is shared between threads.
 * The consumer hands over the runs of one poll (at most one run per partition,
 * so a partition's order holds) and gets their results back, the strategies
 * stage included: what each run applied and the offset it allows to commit.
 */
#ifndef RTU_POOL_H
#define RTU_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "batch.h"
#include "config.h"
#include "result.h"
#include "rtu.h"
#include "script.h"
#include "stage.h"
#include "store.h"

typedef struct rtu_pool_s rtu_pool_t;

/* One partition run to apply (the consumer sets projection, msgs and n), and
 * what became of it (rtu_pool_run sets err and res). */
typedef struct {
  size_t projection;
  const rtu_msg_t *msgs;
  size_t n;
  rtu_err_t err;        /* of the run and its strategies stage */
  rtu_run_result_t res; /* res.next_offset: the offset to commit */
  rtu_deferred_t deferred; /* the pool's, between the run and the stage */
} rtu_job_t;

/* A script generation: a configuration and one Lua state per worker. */
typedef struct {
  rtu_config_t *cfg;
  rtu_script_t **scripts;
  size_t nscripts;
  unsigned id;
} rtu_generation_t;

/*
 * Loads a generation for nworkers workers from the environment and files: every
 * problem goes to problems; NULL when there was any. When base is not NULL, the
 * new configuration must keep its topics and projections (names, collections,
 * keys): those need a restart, a reload cannot change them.
 */
rtu_generation_t *rtu_generation_load(const rtu_config_t *base, const char *default_lua_dir,
                                      size_t nworkers, rtu_problems_t *problems);
void rtu_generation_free(rtu_generation_t *gen);

/*
 * Starts nworkers workers (threads only when more than one). Takes gen (freed
 * with the pool). base is the configuration of the clients: it must outlive the
 * pool. The first worker's store is also the pool's for pings and indexes.
 */
rtu_pool_t *rtu_pool_new(const rtu_config_t *base, rtu_generation_t *gen, size_t nworkers,
                         char *errstr, size_t errstr_size);
void rtu_pool_free(rtu_pool_t *p);

size_t rtu_pool_size(const rtu_pool_t *p);
rtu_store_t *rtu_pool_store(rtu_pool_t *p);
const rtu_generation_t *rtu_pool_generation(const rtu_pool_t *p);

/* Applies jobs[0..n) across the workers, then the strategies stage of each
 * projection over what they deferred; returns when every job has its result.
 * Jobs must be of distinct partitions. RTU_ERR_FATAL (errstr set) only when the
 * pool could not hold the poll's strategies jobs. */
rtu_err_t rtu_pool_run(rtu_pool_t *p, rtu_job_t *jobs, size_t n, char *errstr,
                       size_t errstr_size);

/* Swaps in a generation between runs (no job in flight): takes gen, frees the
 * previous one. */
void rtu_pool_swap(rtu_pool_t *p, rtu_generation_t *gen);

/* MongoDB commands and strategy lookups of every worker since start. */
void rtu_pool_stats(const rtu_pool_t *p, uint64_t *commands, uint64_t *lookups);

#endif
