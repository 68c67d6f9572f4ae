/*
 * main.c: the command line (run, check, version, help), signals, and the order
 * in which subsystems start and stop. No pipeline logic lives here.
 */
#define _GNU_SOURCE /* sem_clockwait */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <mongoc/mongoc.h>

#include "checker.h"
#include "config.h"
#include "config_files.h"
#include "consumer.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "reload.h"
#include "rtu.h"
#include "store.h"
#include "testrun.h"
#include "util.h"

static volatile sig_atomic_t stop_flag = 0;
static volatile sig_atomic_t hup_flag = 0;
/* Wakes the shutdown watchdog: posted by the signal handler (sem_post is
 * async-signal-safe) and at the end of the loop, so that the watchdog sleeps
 * until there is something to watch instead of waking every few milliseconds. */
static sem_t watchdog_wake;

/* SIGTERM ends rtu within 10 s whatever MongoDB or Kafka do (Kubernetes kills
 * at 30 by default): the loop stops at the end of its run; past
 * SHUTDOWN_ABANDON_MS the watchdog abandons the run in flight (commits what was
 * written, leaves the group); at SHUTDOWN_HARD_S the alarm ends the process. */
#define SHUTDOWN_ABANDON_MS 6000
#define SHUTDOWN_LEAVE_MS 2000
#define SHUTDOWN_HARD_S 9

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] =
      "{\"level\":\"warn\",\"msg\":\"shutdown deadline passed; exiting now\"}\n";
  ssize_t w = write(STDOUT_FILENO, msg, sizeof msg - 1);
  (void)w;
  _exit(0);
}

static void on_signal(int sig) {
  (void)sig;
  if (!stop_flag) alarm(SHUTDOWN_HARD_S);
  stop_flag = 1;
  sem_post(&watchdog_wake);
}

static void on_hup(int sig) {
  (void)sig;
  hup_flag = 1;
}

static const char *env_get(const char *name) { return getenv(name); }

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The Lua runtime: next to the binary (the build tree), then the installed share
 * folder, then the source tree recorded at build time. */
static void default_lua_dir(char *out, size_t size) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *dir = dirname(exe);
    snprintf(out, size, "%s/lua", dir);
    if (is_dir(out)) return;
    snprintf(out, size, "%s/../share/rtu/lua", dir);
    if (is_dir(out)) return;
  }
  snprintf(out, size, "%s", RTU_SOURCE_LUA_DIR);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: rtu <command>\n"
          "\n"
          "  run       consume the ingestion topics and keep the projections up to date\n"
          "            (SIGTERM/SIGINT: stop cleanly; SIGHUP: reload the scripts)\n"
          "  check     validate the configuration (environment, JSON files, Lua files):\n"
          "            FILE:LINE:COL: error|warning: JSON.PATH: what is wrong, one line\n"
          "            per problem, then `N errors, M warnings`; exit 2 on any error;\n"
          "            --json: the same problems as JSON lines\n"
          "  test      [--explain] PATH...: run *.test.json cases offline (no Kafka,\n"
          "            no MongoDB): ok/FAIL per case, then `k/n passed`; exit 1 when\n"
          "            one fails, 2 on a configuration error; --explain: each lookup\n"
          "            the strategies sent, what it found, the identifiers produced\n"
          "  version   print the version\n"
          "  help      this text; `help config [--markdown]`: every variable\n"
          "\n"
          "Configuration comes from the environment, as for Mia-Platform Fast Data's\n"
          "Real-Time Updater (KAFKA_BROKERS, KAFKA_GROUP_ID, MONGODB_URL,\n"
          "PROJECTIONS_DATABASE_NAME, INVARIANT_TOPIC_MAP, MAP_TABLE_FOLDER, ...):\n"
          "see README.md.\n");
}

static void print_problems(rtu_problems_t *problems) {
  for (size_t i = 0; i < problems->n; i++) fprintf(stderr, "rtu: %s\n", problems->lines[i]);
  rtu_problems_free(problems);
}

static int cmd_check(int argc, char **argv) {
  bool json = false;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else {
      fprintf(stderr, "rtu check: unknown option '%s' (only --json)\n", argv[i]);
      return 2;
    }
  }
  char lua_dir[PATH_MAX];
  default_lua_dir(lua_dir, sizeof lua_dir);
  rtu_problems_t problems = {0};
  bool ok = rtu_check(env_get, lua_dir, true, &problems);
  /* Problems on stderr and the summary on stdout, as compilers do; JSON lines
   * all on stdout, for CI annotations. */
  rtu_problems_print(&problems, json ? stdout : stderr, json);
  if (ok && !json) {
    rtu_problems_t again = {0};
    rtu_config_t *cfg = rtu_config_load(env_get, lua_dir, &again);
    if (cfg)
      printf("configuration is valid: %zu projection(s), %zu topic(s), adapter %s\n",
             cfg->nprojections, cfg->ntopics, cfg->adapter);
    rtu_config_free(cfg);
    rtu_problems_free(&again);
  }
  if (!json) rtu_problems_summary(&problems, stdout);
  rtu_problems_free(&problems);
  mongoc_cleanup();
  return ok ? 0 : 2;
}

/* The checker first, as `rtu check` would: an error stops the start with every
 * problem on stderr; warnings (the variables and keys rtu does not honour
 * among them) are logged. */
static bool check_at_start(const char *lua_dir) {
  rtu_problems_t problems = {0};
  bool ok = rtu_check(env_get, lua_dir, false, &problems);
  if (!ok) {
    rtu_problems_print(&problems, stderr, false);
  } else {
    for (size_t i = 0; i < problems.n; i++)
      rtu_log(RTU_LOG_WARN, "configuration warning", "problem", problems.lines[i], NULL);
  }
  rtu_problems_free(&problems);
  return ok;
}

typedef struct {
  rtu_reload_t *reload;
  rtu_pool_t *pool;
} between_t;

static bool between_batches(void *ud) {
  between_t *b = ud;
  if (hup_flag) {
    hup_flag = 0;
    rtu_log(RTU_LOG_INFO, "SIGHUP: reloading the scripts at this batch boundary", NULL);
    rtu_reload_request(b->reload);
  }
  return rtu_reload_apply(b->reload, b->pool);
}

static void install_signals(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Creates the projection indexes, waiting for MongoDB as long as it is out.
 * RTU_OK, or the error that stops the start (RTU_ERR_CONFIG: the primary-key
 * index cannot be built, or rtu may not build it: exit 2); RTU_ERR_TRANSIENT
 * when asked to stop meanwhile. */
static rtu_err_t ensure_indexes(rtu_pool_t *pool) {
  char err[RTU_ERRSTR_SIZE];
  int backoff = 200;
  rtu_err_t e;
  while ((e = rtu_store_ensure_indexes(rtu_pool_store(pool), err, sizeof err)) ==
             RTU_ERR_TRANSIENT &&
         !stop_flag) {
    rtu_log(RTU_LOG_WARN, "MongoDB unavailable; retrying", "cause", err, NULL);
    rtu_health_heartbeat(); /* waiting on MongoDB is not being stuck */
    usleep((useconds_t)backoff * 1000);
    backoff = backoff < 5000 ? backoff * 2 : 5000;
  }
  if (stop_flag) return RTU_ERR_TRANSIENT;
  if (e != RTU_OK)
    rtu_log(RTU_LOG_FATAL, "cannot create the projection indexes", "cause", err, NULL);
  return e;
}

/* Watches the shutdown: when the loop has not ended SHUTDOWN_ABANDON_MS after
 * the signal (a run stuck on a MongoDB or Kafka that does not answer), abandons
 * it and exits 0 without waiting for it. */
typedef struct {
  rtu_consumer_t *consumer;
  atomic_bool done; /* the loop ended: nothing to watch */
  pthread_t thread;
  bool started;
} watchdog_t;

static void *watchdog_main(void *arg) {
  watchdog_t *wd = arg;
  while (!stop_flag && !atomic_load(&wd->done)) sem_wait(&watchdog_wake); /* EINTR: look again */
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += SHUTDOWN_ABANDON_MS / 1000;
  while (!atomic_load(&wd->done) &&
         (sem_clockwait(&watchdog_wake, CLOCK_MONOTONIC, &deadline) == 0 || errno == EINTR)) {
  }
  if (atomic_load(&wd->done)) return NULL;
  if (rtu_consumer_abandon(wd->consumer, SHUTDOWN_LEAVE_MS) || !atomic_load(&wd->done)) {
    rtu_log(RTU_LOG_INFO, "rtu stopped (run in flight abandoned)", NULL);
    fflush(NULL);
    _exit(0);
  }
  return NULL;
}

static void log_started(const rtu_config_t *cfg) {
  char workers[16];
  snprintf(workers, sizeof workers, "%d", cfg->workers);
  rtu_log(RTU_LOG_INFO, "rtu started", "version", RTU_VERSION, "group", cfg->kafka_group_id,
          "adapter", cfg->adapter, "#workers", workers, "hotReload",
          cfg->hot_reload ? "on" : "off", NULL);
}

/* The checks at start, then the base configuration (what the clients are built
 * from, for the whole run) and the first script generation. False when rtu
 * cannot start (the problems printed). */
static bool load_base(const char *lua_dir, rtu_config_t **cfg, rtu_generation_t **gen) {
  rtu_problems_t problems = {0};
  /* The log level first: the checker's warnings are logged. */
  const char *level_name = env_get("LOG_LEVEL");
  rtu_log_level_t level;
  if (level_name && rtu_log_parse_level(level_name, &level)) rtu_log_set_level(level);
  if (!check_at_start(lua_dir)) {
    mongoc_cleanup();
    return false;
  }
  *cfg = rtu_config_load(env_get, lua_dir, &problems);
  if (*cfg) *gen = rtu_generation_load(*cfg, lua_dir, (size_t)(*cfg)->workers, &problems);
  if (!*gen) print_problems(&problems);
  else rtu_problems_free(&problems);
  if (!*gen) {
    rtu_config_free(*cfg);
    *cfg = NULL;
    return false;
  }
  return true;
}

/* The configured log level, metrics and health, before anything else starts. */
static void start_observing(const rtu_config_t *cfg, const rtu_generation_t *gen) {
  rtu_log_level_t level;
  if (rtu_log_parse_level(cfg->log_level, &level)) rtu_log_set_level(level);
  rtu_metrics_init();
  rtu_health_init();
  rtu_health_dependency(RTU_DEP_SCRIPTS, true, NULL);
  rtu_metrics_set(RTU_G_SCRIPT_GENERATION, gen->id);
  rtu_metrics_set(RTU_G_WORKERS, cfg->workers);
}

/* The buffers of a partition run (libmongoc's bulk and its OP_MSG payload, the
 * run's records) are a few hundred KiB, above glibc's mmap threshold, and the
 * free at the end of a run lets the arena trim its top: every run then faults
 * its buffers in again, page by page (docs/performance.md, "Where the time
 * goes"). Keeping freed memory in the arenas costs no peak RSS, since the next
 * run reuses it. GLIBC_TUNABLES or MALLOC_*_ in the environment win. */
static void tune_allocator(void) {
  const char *tunables = getenv("GLIBC_TUNABLES");
  if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
      (tunables && strstr(tunables, "glibc.malloc.")))
    return;
  if (!mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) || !mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024))
    rtu_log(RTU_LOG_WARN, "could not raise malloc's mmap and trim thresholds; going on with glibc's", NULL);
}

static int cmd_run(void) {
  int rc = 1;
  char err[RTU_ERRSTR_SIZE];
  char lua_dir[PATH_MAX];
  rtu_pool_t *pool = NULL;
  rtu_consumer_t *consumer = NULL;
  rtu_reload_t *reload = NULL;
  rtu_http_t *http = NULL;
  rtu_generation_t *gen = NULL;
  static watchdog_t watchdog; /* static: the watchdog may outlive a goto done */

  rtu_config_t *cfg = NULL;
  tune_allocator();
  if (sem_init(&watchdog_wake, 0, 0) != 0) {
    rtu_log(RTU_LOG_FATAL, "cannot create the shutdown watchdog's semaphore", NULL);
    return 1;
  }
  default_lua_dir(lua_dir, sizeof lua_dir);
  if (!load_base(lua_dir, &cfg, &gen)) return 2;
  start_observing(cfg, gen);

  install_signals();

  /* Before MongoDB: /-/healthz must answer while the indexes wait for it. */
  http = rtu_http_start(cfg, err, sizeof err);
  if (!http) {
    rtu_log(RTU_LOG_FATAL, "cannot start the HTTP server", "cause", err, NULL);
    goto done;
  }
  pool = rtu_pool_new(cfg, gen, (size_t)cfg->workers, err, sizeof err);
  gen = NULL; /* the pool's, even when it failed */
  if (!pool) {
    rtu_log(RTU_LOG_FATAL, "cannot start the workers", "cause", err, NULL);
    goto done;
  }
  /* Indexes first: without the unique key index, upserts could duplicate records. */
  rtu_err_t ie = ensure_indexes(pool);
  if (ie != RTU_OK) {
    rc = stop_flag ? 0 : (ie == RTU_ERR_CONFIG || ie == RTU_ERR_DATA) ? 2 : 1;
    goto done;
  }
  consumer = rtu_consumer_new(cfg, err, sizeof err);
  if (!consumer) {
    rtu_log(RTU_LOG_FATAL, "cannot create the Kafka consumer", "cause", err, NULL);
    goto done;
  }
  rtu_health_dependency(RTU_DEP_KAFKA, true, NULL);
  reload = rtu_reload_new(cfg, lua_dir, err, sizeof err);
  if (!reload) {
    rtu_log(RTU_LOG_FATAL, "cannot set up script reloads", "cause", err, NULL);
    goto done;
  }
  log_started(cfg);
  between_t between = {reload, pool};
  rtu_consumer_loop_t loop = {&stop_flag, between_batches, &between};
  watchdog.consumer = consumer;
  watchdog.started = pthread_create(&watchdog.thread, NULL, watchdog_main, &watchdog) == 0;
  if (!watchdog.started) rtu_log(RTU_LOG_WARN, "cannot start the shutdown watchdog", NULL);
  rtu_err_t run_rc = rtu_consumer_run(consumer, pool, &loop, err, sizeof err);
  atomic_store(&watchdog.done, true);
  sem_post(&watchdog_wake);
  if (watchdog.started) pthread_join(watchdog.thread, NULL);
  watchdog.started = false;
  if (run_rc != RTU_OK) {
    rtu_log(RTU_LOG_FATAL, "consumer stopped on an error", "cause", err, NULL);
    goto done;
  }
  rtu_log(RTU_LOG_INFO, "rtu stopped", NULL);
  rc = 0;
done:
  rtu_http_stop(http);
  rtu_reload_free(reload);
  rtu_consumer_free(consumer);
  rtu_pool_free(pool);
  rtu_generation_free(gen);
  rtu_config_free(cfg);
  rtu_health_free();
  rtu_metrics_free();
  mongoc_cleanup();
  return rc;
}

int main(int argc, char **argv) {
  /* libmongoc's shared-memory counters (made by its constructor, before main)
   * stay in /dev/shm/mongoc-<pid> after a killed process, and a later process
   * given the same pid (PID 1 at every container restart) warns on stderr.
   * Nothing reads them: the name goes now, the mapping lives on until exit. */
  char shm[32];
  snprintf(shm, sizeof shm, "/mongoc-%d", (int)getpid());
  (void)shm_unlink(shm); /* absent when MONGOC_DISABLE_SHM is set: nothing to do */
  const char *cmd = argc > 1 ? argv[1] : "help";
  if (!strcmp(cmd, "run")) return cmd_run();
  if (!strcmp(cmd, "check")) return cmd_check(argc, argv);
  if (!strcmp(cmd, "test")) {
    char lua_dir[PATH_MAX];
    default_lua_dir(lua_dir, sizeof lua_dir);
    int rc = rtu_testrun_main(argc, argv, lua_dir);
    mongoc_cleanup();
    return rc;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("rtu %s (librdkafka %s, libmongoc %s, %s)\n", RTU_VERSION, rd_kafka_version_str(),
           MONGOC_VERSION_S, LUA_RELEASE);
    return 0;
  }
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    if (argc > 2 && !strcmp(argv[2], "config")) {
      rtu_config_print_table(stdout, argc > 3 && !strcmp(argv[3], "--markdown"));
      return 0;
    }
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "rtu: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
