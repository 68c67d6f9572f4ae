/*
 * reload.c: owns the hot-reload watcher thread and the decision to swap a script
 * generation in. It never touches a worker's state while a run is in flight:
 * rtu_reload_apply runs on the consumer's thread between batches, when every
 * worker is idle.
 *
 * Why polling rather than inotify: configuration in Kubernetes arrives as
 * ConfigMap volumes, which change by swapping a symlinked folder; inotify watches
 * on the old folder never fire. A signature of names, sizes and modification
 * times, taken once a second through the symlinks, sees every such change. A
 * change is loaded once the signature has been the same for two polls, so a file
 * caught half-written is not loaded (and if it were, validation refuses it).
 */
#include "reload.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checker.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

struct rtu_reload_s {
  const rtu_config_t *base;
  char *lua_dir;
  atomic_int requested;
  atomic_bool stop;
  bool watching;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

/* Every regular file directly in dir (ConfigMaps are flat), through symlinks. */
static uint64_t folder_signature(uint64_t h, const char *dir) {
  if (!dir) return h;
  DIR *d = opendir(dir);
  if (!d) return fnv(h, "missing", 7);
  struct dirent *e;
  uint64_t sum = 0; /* order-independent: readdir order may change */
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    uint64_t f = fnv(1469598103934665603ULL, e->d_name, strlen(e->d_name));
    f = fnv(f, &st.st_size, sizeof st.st_size);
    f = fnv(f, &st.st_mtim, sizeof st.st_mtim);
    f = fnv(f, &st.st_ino, sizeof st.st_ino);
    sum += f;
  }
  closedir(d);
  return fnv(h, &sum, sizeof sum);
}

static uint64_t signature(const rtu_config_t *cfg) {
  const char *dirs[] = {cfg->map_table_folder,  cfg->cast_functions_folder, cfg->adapter_folder,
                        cfg->er_schema_folder,  cfg->pc_schema_folder,      cfg->strategies_folder,
                        cfg->kafka_pr_updates_folder, cfg->kafka_pc_folder};
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) h = folder_signature(h, dirs[i]);
  return h;
}

static void *watch_main(void *arg) {
  rtu_reload_t *r = arg;
  uint64_t loaded = signature(r->base), last = loaded;
  pthread_mutex_lock(&r->lock);
  while (!atomic_load(&r->stop)) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_cond_timedwait(&r->wake, &r->lock, &until);
    if (atomic_load(&r->stop)) break;
    uint64_t now = signature(r->base);
    if (now != loaded && now == last) {
      rtu_log(RTU_LOG_INFO, "configuration files changed; reloading at the next batch", NULL);
      atomic_store(&r->requested, 1);
      loaded = now;
    }
    last = now;
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

rtu_reload_t *rtu_reload_new(const rtu_config_t *base, const char *default_lua_dir,
                             char *errstr, size_t errstr_size) {
  rtu_reload_t *r = calloc(1, sizeof *r);
  if (!r || !(r->lua_dir = strdup(default_lua_dir))) {
    free(r);
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
  }
  r->base = base;
  atomic_init(&r->requested, 0);
  atomic_init(&r->stop, false);
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->wake, NULL);
  if (base->hot_reload) {
    int e = pthread_create(&r->thread, NULL, watch_main, r);
    if (e) {
      snprintf(errstr, errstr_size, "cannot start the hot-reload watcher: %s", strerror(e));
      rtu_reload_free(r);
      return NULL;
    }
    r->watching = true;
  }
  return r;
}

void rtu_reload_free(rtu_reload_t *r) {
  if (!r) return;
  if (r->watching) {
    pthread_mutex_lock(&r->lock);
    atomic_store(&r->stop, true);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
  }
  pthread_cond_destroy(&r->wake);
  pthread_mutex_destroy(&r->lock);
  free(r->lua_dir);
  free(r);
}

void rtu_reload_request(rtu_reload_t *r) { atomic_store(&r->requested, 1); }

static const char *env_get(const char *name) { return getenv(name); }

/* Logs every problem of a refused reload, and shows them in check-up. */
static void refuse(rtu_problems_t *problems) {
  rtu_problems_sort(problems);
  for (size_t i = 0; i < problems->n; i++)
    rtu_log(problems->items[i].severity == RTU_PROBLEM_ERROR ? RTU_LOG_ERROR : RTU_LOG_WARN,
            "reload refused; the running script generation goes on", "cause", problems->lines[i],
            NULL);
  rtu_health_reload_refused(problems->lines, problems->n);
  char detail[128];
  snprintf(detail, sizeof detail, "reload refused (%zu errors, see refusedReload); the running "
           "generation goes on", problems->nerrors);
  rtu_health_dependency(RTU_DEP_SCRIPTS, true, detail);
  rtu_metrics_add(RTU_C_RELOAD_FAILURES, NULL, 1);
}

bool rtu_reload_apply(rtu_reload_t *r, rtu_pool_t *pool) {
  if (!atomic_exchange(&r->requested, 0)) return false;
  rtu_problems_t problems = {0};
  int64_t t0 = rtu_now_mono_ms();
  /* The same checker as `rtu check`: a refused reload names every problem. */
  if (!rtu_check(env_get, r->lua_dir, false, &problems)) {
    refuse(&problems);
    rtu_problems_free(&problems);
    return false;
  }
  rtu_problems_free(&problems);
  rtu_generation_t *gen = rtu_generation_load(r->base, r->lua_dir, rtu_pool_size(pool), &problems);
  if (!gen) {
    refuse(&problems);
    rtu_problems_free(&problems);
    return false;
  }
  rtu_problems_free(&problems);
  rtu_health_reload_refused(NULL, 0);
  rtu_health_dependency(RTU_DEP_SCRIPTS, true, NULL);
  unsigned id = gen->id;
  rtu_pool_swap(pool, gen);
  rtu_metrics_add(RTU_C_RELOADS, NULL, 1);
  rtu_metrics_set(RTU_G_SCRIPT_GENERATION, id);
  char num[16], ms[24];
  snprintf(num, sizeof num, "%u", id);
  snprintf(ms, sizeof ms, "%lld", (long long)(rtu_now_mono_ms() - t0));
  rtu_log(RTU_LOG_INFO, "script generation loaded", "#generation", num, "#loadMs", ms, NULL);
  return true;
}
