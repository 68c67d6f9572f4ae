/*
 * metrics.c: owns the process-wide metrics registry of metrics.h and its
 * Prometheus text exposition (format 0.0.4). It keeps numbers only: it decides
 * nothing and touches neither Kafka nor MongoDB; librdkafka's statistics JSON is
 * handed to it as text. The one thing it reports elsewhere is whether any broker
 * is up, to health.c, because the statistics are where that is known.
 *
 * Unlabelled counters and gauges are C11 atomics. A labelled counter keeps a small
 * table of label values (filled once per new value, never per message) behind its
 * own mutex; histograms and per-partition series have one mutex each.
 */
#include "metrics.h"

#include <bson/bson.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "metrics_client.h"

/* Label values beyond this many fold into "_other": a bounded registry even if a
 * caller were to label by something unbounded. */
#define MAX_LABELS 64

typedef struct {
  const char *name, *help, *label; /* label NULL: unlabelled */
} counter_def_t;

static const counter_def_t counter_defs[RTU_C__COUNT] = {
    [RTU_C_CONSUMED] = {"rtu_messages_consumed_total", "Messages taken from Kafka.", "topic"},
    [RTU_C_APPLIED] = {"rtu_messages_applied_total", "Messages applied to the projections.",
                       "topic"},
    [RTU_C_STALE] = {"rtu_messages_stale_total",
                     "Messages older than the stored record (counter guard), not applied.", "topic"},
    [RTU_C_SKIPPED] = {"rtu_messages_skipped_total",
                       "Messages skipped on purpose (tombstones, adapter skips).", "topic"},
    [RTU_C_FAILED] = {"rtu_messages_failed_total",
                      "Messages that could not be applied (their partition stopped).", "topic"},
    [RTU_C_DEAD_LETTERED] = {"rtu_messages_dead_lettered_total",
                             "Messages sent to the dead-letter topic.", "topic"},
    [RTU_C_WRITES] = {"rtu_projection_writes_total", "Projection document writes.", "topic"},
    [RTU_C_PROJECTION_CHANGES] = {"rtu_projection_changes_total",
                                  "Projection changes recorded.", "single_view"},
    [RTU_C_MONGO_COMMANDS] = {"rtu_mongodb_commands_total", "MongoDB commands sent.", "command"},
    [RTU_C_STRATEGY_LOOKUPS] = {"rtu_strategy_lookups_total",
                                "Queries sent to MongoDB by strategies (db:find, db:findOne).",
                                NULL},
    [RTU_C_STRATEGY_DOCUMENTS] = {"rtu_strategy_documents_total",
                                  "Projection documents the strategies ran on: a record's "
                                  "before and after a run, once when they read the same of both.",
                                  NULL},
    [RTU_C_STRATEGY_TIMEOUTS] = {"rtu_strategy_timeouts_total",
                                 "Script calls stopped by STRATEGIES_MAX_EXEC_TIME_MS.", NULL},
    [RTU_C_STRATEGY_ERRORS] = {"rtu_strategy_errors_total", "Script calls that raised an error.",
                               NULL},
    [RTU_C_TRANSIENT_ERRORS] = {"rtu_transient_errors_total",
                                "Transient failures retried with backoff.", "dependency"},
    [RTU_C_RELOADS] = {"rtu_script_reloads_total", "Configuration generations swapped in.", NULL},
    [RTU_C_RELOAD_FAILURES] = {"rtu_script_reload_failures_total",
                               "Configuration changes refused.", NULL},
    [RTU_C_INDEX_FAILURES] = {"rtu_index_build_failures_total",
                              "Indexes MongoDB could not build over the documents already stored "
                              "(rtu goes on without them).",
                              "collection"},
};

static const struct {
  const char *name, *help;
} hist_defs[RTU_H__COUNT] = {
    [RTU_H_BATCH] = {"rtu_consumer_batch_processing", "Seconds to process one consumed batch."},
    [RTU_H_PARTITION] = {"rtu_consumer_partition_processing",
                         "Seconds to process the messages of one partition in a batch."},
    [RTU_H_PREPARATION] = {"rtu_processor_records_preparation",
                           "Seconds to adapt, map and fold the messages of a run."},
    [RTU_H_STORAGE] = {"rtu_processor_storage", "Seconds of projection reads and writes of a run."},
    [RTU_H_PRODUCER] = {"rtu_processor_producer",
                        "Seconds to write projection changes and Kafka outputs of a run."},
    [RTU_H_STRATEGY] = {"rtu_strategy_duration_seconds", "Seconds of the strategies of a run."},
};

static const struct {
  const char *name, *help;
} gauge_defs[RTU_G__COUNT] = {
    [RTU_G_SCRIPT_GENERATION] = {"rtu_script_generation", "Configuration generation in use."},
    [RTU_G_ASSIGNED_PARTITIONS] = {"rtu_assigned_partitions", "Partitions assigned to this instance."},
    [RTU_G_WORKERS] = {"rtu_workers", "Worker threads."},
};

/* Upper bounds, seconds: from a cached read (0.5 ms) to a long strategy run (10 s). */
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

/* Freshness spans milliseconds (messages that flow) to hours (a backlog); about
 * 10 ms steps up to 50 ms, so that a p99 against a goal of tens of milliseconds
 * is read from the buckets rather than guessed inside a wide one. */
static const double fresh_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.03,
                                      0.04,  0.05,   0.075, 0.1,  0.25, 0.5,   1,
                                      2.5,   5,      10,    30,   60,   300,   1800};
#define NFRESH (sizeof fresh_bounds / sizeof fresh_bounds[0])

typedef struct {
  char *label;
  _Atomic uint64_t value;
} label_slot_t;

typedef struct {
  _Atomic uint64_t value; /* unlabelled */
  pthread_mutex_t mu;     /* guards adding label slots */
  label_slot_t slots[MAX_LABELS + 1]; /* + "_other" */
  _Atomic size_t nslots;
} counter_t;

typedef struct {
  pthread_mutex_t mu;
  uint64_t buckets[NBOUNDS + 1]; /* per bucket, not cumulative; last = +Inf */
  double sum;
  uint64_t count;
} hist_t;

typedef struct {
  char *topic;
  int32_t partition;
  int64_t lag; /* -1: unknown */
  bool paused;
} part_t;

/* One histogram per label value of a freshness family. */
typedef struct {
  char *label;
  uint64_t buckets[NFRESH + 1]; /* per bucket, not cumulative; last = +Inf */
  double sum;
  uint64_t count;
} fresh_slot_t;

/* rtu_freshness_seconds{projection} (the projection writes) and
 * rtu_projection_change_freshness_seconds{type} (the projection changes). */
typedef struct {
  const char *name, *label, *help;
  fresh_slot_t slots[MAX_LABELS + 1]; /* + "_other" */
  size_t n;
} fresh_family_t;

static counter_t counters[RTU_C__COUNT];
static pthread_mutex_t fresh_mu = PTHREAD_MUTEX_INITIALIZER;
static fresh_family_t fresh_writes = {
    .name = "rtu_freshness_seconds",
    .label = "projection",
    .help = "Seconds from a message's Kafka timestamp to the acknowledgment of its writes."};
static fresh_family_t fresh_changes = {
    .name = "rtu_projection_change_freshness_seconds",
    .label = "type",
    .help = "Seconds from the Kafka timestamp of the message a projection change names to "
            "the acknowledgment of the change's write (and of its Kafka message)."};
static fresh_family_t *const fresh_families[] = {&fresh_writes, &fresh_changes};
static hist_t hists[RTU_H__COUNT];
static _Atomic double gauges[RTU_G__COUNT];
static pthread_mutex_t parts_mu = PTHREAD_MUTEX_INITIALIZER;
static part_t *parts;
static size_t nparts, parts_cap;

void rtu_metrics_init(void) {
  for (size_t i = 0; i < RTU_C__COUNT; i++) {
    atomic_init(&counters[i].value, 0);
    atomic_init(&counters[i].nslots, 0);
    pthread_mutex_init(&counters[i].mu, NULL);
  }
  for (size_t i = 0; i < RTU_H__COUNT; i++) {
    memset(hists[i].buckets, 0, sizeof hists[i].buckets);
    hists[i].sum = 0;
    hists[i].count = 0;
    pthread_mutex_init(&hists[i].mu, NULL);
  }
  for (size_t i = 0; i < RTU_G__COUNT; i++) atomic_init(&gauges[i], 0.0);
  rtu_metrics_client_init();
}

void rtu_metrics_free(void) {
  for (size_t i = 0; i < RTU_C__COUNT; i++) {
    size_t n = atomic_load(&counters[i].nslots);
    for (size_t s = 0; s < n; s++) {
      free(counters[i].slots[s].label);
      counters[i].slots[s].label = NULL;
    }
    atomic_store(&counters[i].nslots, 0);
    pthread_mutex_destroy(&counters[i].mu);
  }
  for (size_t i = 0; i < RTU_H__COUNT; i++) pthread_mutex_destroy(&hists[i].mu);
  pthread_mutex_lock(&fresh_mu);
  for (size_t f = 0; f < sizeof fresh_families / sizeof fresh_families[0]; f++) {
    fresh_family_t *fam = fresh_families[f];
    for (size_t i = 0; i < fam->n; i++) free(fam->slots[i].label);
    memset(fam->slots, 0, sizeof fam->slots);
    fam->n = 0;
  }
  pthread_mutex_unlock(&fresh_mu);
  pthread_mutex_lock(&parts_mu);
  for (size_t i = 0; i < nparts; i++) free(parts[i].topic);
  free(parts);
  parts = NULL;
  nparts = parts_cap = 0;
  pthread_mutex_unlock(&parts_mu);
  rtu_metrics_client_free();
}

/* The slot of a label value. Slots are only appended and a slot is fully written
 * before nslots is published, so readers need no lock. */
static label_slot_t *find_slot(counter_t *c, const char *label) {
  size_t n = atomic_load_explicit(&c->nslots, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(c->slots[i].label, label)) return &c->slots[i];
  label_slot_t *found = NULL;
  pthread_mutex_lock(&c->mu);
  n = atomic_load_explicit(&c->nslots, memory_order_acquire);
  for (size_t i = 0; i < n && !found; i++)
    if (!strcmp(c->slots[i].label, label)) found = &c->slots[i];
  if (!found) {
    const char *use = n < MAX_LABELS ? label : "_other";
    for (size_t i = 0; i < n && !found; i++)
      if (!strcmp(c->slots[i].label, use)) found = &c->slots[i];
    char *copy = found ? NULL : strdup(use);
    if (copy) {
      found = &c->slots[n];
      found->label = copy;
      atomic_init(&found->value, 0);
      atomic_store_explicit(&c->nslots, n + 1, memory_order_release);
    }
  }
  pthread_mutex_unlock(&c->mu);
  return found; /* NULL only when out of memory: the increment is lost */
}

void rtu_metrics_add(rtu_counter_t c, const char *label, uint64_t n) {
  if ((unsigned)c >= RTU_C__COUNT || n == 0) return;
  counter_t *ct = &counters[c];
  if (!counter_defs[c].label || !label) {
    atomic_fetch_add_explicit(&ct->value, n, memory_order_relaxed);
    return;
  }
  label_slot_t *s = find_slot(ct, label);
  if (s) atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void rtu_metrics_observe(rtu_hist_t h, double seconds) {
  if ((unsigned)h >= RTU_H__COUNT || isnan(seconds)) return;
  size_t b = 0;
  while (b < NBOUNDS && seconds > bounds[b]) b++;
  hist_t *hs = &hists[h];
  pthread_mutex_lock(&hs->mu);
  hs->buckets[b]++;
  hs->sum += seconds;
  hs->count++;
  pthread_mutex_unlock(&hs->mu);
}

/* Under fresh_mu: the slot of a label value, created on first use. */
static fresh_slot_t *fresh_slot(fresh_family_t *fam, const char *label) {
  for (size_t i = 0; i < fam->n; i++)
    if (!strcmp(fam->slots[i].label, label)) return &fam->slots[i];
  const char *use = fam->n < MAX_LABELS ? label : "_other";
  for (size_t i = 0; i < fam->n; i++)
    if (!strcmp(fam->slots[i].label, use)) return &fam->slots[i];
  char *copy = strdup(use);
  if (!copy) return NULL;
  fam->slots[fam->n] = (fresh_slot_t){.label = copy};
  return &fam->slots[fam->n++];
}

static void observe_fresh(fresh_family_t *fam, const char *label, int64_t now_ms,
                          const int64_t *ts_ms, size_t n) {
  if (!label || n == 0) return;
  pthread_mutex_lock(&fresh_mu);
  fresh_slot_t *s = fresh_slot(fam, label);
  for (size_t i = 0; s && i < n; i++) {
    /* A producer's clock ahead of ours reads as 0, never negative. */
    double seconds = ts_ms[i] < now_ms ? (double)(now_ms - ts_ms[i]) / 1e3 : 0.0;
    size_t b = 0;
    while (b < NFRESH && seconds > fresh_bounds[b]) b++;
    s->buckets[b]++;
    s->sum += seconds;
    s->count++;
  }
  pthread_mutex_unlock(&fresh_mu);
}

void rtu_metrics_freshness(const char *projection, int64_t now_ms, const int64_t *ts_ms, size_t n) {
  observe_fresh(&fresh_writes, projection, now_ms, ts_ms, n);
}

void rtu_metrics_change_freshness(const char *type, int64_t now_ms, const int64_t *ts_ms,
                                  size_t n) {
  observe_fresh(&fresh_changes, type, now_ms, ts_ms, n);
}

void rtu_metrics_set(rtu_gauge_t g, double v) {
  if ((unsigned)g >= RTU_G__COUNT) return;
  atomic_store(&gauges[g], v);
}

/* Under parts_mu. */
static part_t *find_part(const char *topic, int32_t partition, bool create) {
  for (size_t i = 0; i < nparts; i++)
    if (parts[i].partition == partition && !strcmp(parts[i].topic, topic)) return &parts[i];
  if (!create) return NULL;
  if (nparts == parts_cap) {
    size_t cap = parts_cap ? parts_cap * 2 : 16;
    part_t *p = realloc(parts, cap * sizeof *p);
    if (!p) return NULL;
    parts = p;
    parts_cap = cap;
  }
  char *t = strdup(topic);
  if (!t) return NULL;
  parts[nparts] = (part_t){.topic = t, .partition = partition, .lag = -1, .paused = false};
  return &parts[nparts++];
}

void rtu_metrics_partition(const char *topic, int32_t partition, int64_t lag, bool paused) {
  if (!topic) return;
  pthread_mutex_lock(&parts_mu);
  part_t *p = find_part(topic, partition, true);
  if (p) {
    /* The consumer does not know the lag: -1 from it keeps what the statistics said. */
    if (lag >= 0) p->lag = lag;
    p->paused = paused;
  }
  pthread_mutex_unlock(&parts_mu);
}

void rtu_metrics_partition_forget(const char *topic, int32_t partition) {
  if (!topic) return;
  pthread_mutex_lock(&parts_mu);
  for (size_t i = 0; i < nparts; i++) {
    if (parts[i].partition == partition && !strcmp(parts[i].topic, topic)) {
      free(parts[i].topic);
      parts[i] = parts[--nparts];
      break;
    }
  }
  pthread_mutex_unlock(&parts_mu);
}

/* One topic of the statistics: topics.<t>.partitions.<p>.consumer_lag. */
static void stats_topic(const char *topic, bson_iter_t *tit) {
  bson_iter_t part;
  if (!bson_iter_find(tit, "partitions") || !BSON_ITER_HOLDS_DOCUMENT(tit) ||
      !bson_iter_recurse(tit, &part))
    return;
  while (bson_iter_next(&part)) {
    char *end;
    long pn = strtol(bson_iter_key(&part), &end, 10);
    /* -1 is librdkafka's internal "unassigned" partition. */
    if (*end || pn < 0 || pn > INT32_MAX || !BSON_ITER_HOLDS_DOCUMENT(&part)) continue;
    bson_iter_t fields;
    if (!bson_iter_recurse(&part, &fields) || !bson_iter_find(&fields, "consumer_lag") ||
        !BSON_ITER_HOLDS_NUMBER(&fields))
      continue;
    int64_t lag = bson_iter_as_int64(&fields);
    pthread_mutex_lock(&parts_mu);
    /* Partitions the consumer never had report -1: no series for them, but a known
     * one turning unknown says so. */
    part_t *p = find_part(topic, (int32_t)pn, lag >= 0);
    if (p) p->lag = lag < 0 ? -1 : lag;
    pthread_mutex_unlock(&parts_mu);
  }
}

void rtu_metrics_kafka_stats(const char *json, size_t len) {
  if (!json) return;
  bson_error_t err;
  bson_t *doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &err);
  if (!doc) return; /* a statistics line we cannot read: the previous values stay */
  bson_iter_t it, sub;
  if (bson_iter_init_find(&it, doc, "topics") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &sub)) {
    while (bson_iter_next(&sub)) {
      if (!BSON_ITER_HOLDS_DOCUMENT(&sub)) continue;
      bson_iter_t t;
      if (bson_iter_recurse(&sub, &t)) stats_topic(bson_iter_key(&sub), &t);
    }
  }
  /* Brokers learnt from the cluster (nodeid >= 0; the bootstrap entries are -1):
   * with none UP, Kafka is unreachable. */
  if (bson_iter_init_find(&it, doc, "brokers") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &sub)) {
    int known = 0, up = 0;
    while (bson_iter_next(&sub)) {
      bson_iter_t f;
      if (!BSON_ITER_HOLDS_DOCUMENT(&sub) || !bson_iter_recurse(&sub, &f)) continue;
      int64_t nodeid = -1;
      bool is_up = false;
      while (bson_iter_next(&f)) {
        if (!strcmp(bson_iter_key(&f), "nodeid") && BSON_ITER_HOLDS_NUMBER(&f))
          nodeid = bson_iter_as_int64(&f);
        else if (!strcmp(bson_iter_key(&f), "state") && BSON_ITER_HOLDS_UTF8(&f))
          is_up = !strcmp(bson_iter_utf8(&f, NULL), "UP");
      }
      if (nodeid < 0) continue;
      known++;
      up += is_up;
    }
    if (known) rtu_health_dependency(RTU_DEP_KAFKA, up > 0, up ? NULL : "no Kafka broker is up");
  }
  rtu_metrics_client_kafka(doc);
  bson_destroy(doc);
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct {
  char *buf;
  size_t len, cap;
  bool oom;
} out_t;

static void out_reserve(out_t *o, size_t more) {
  if (o->oom || o->len + more + 1 <= o->cap) return;
  size_t cap = o->cap ? o->cap : 4096;
  while (cap < o->len + more + 1) cap *= 2;
  char *b = realloc(o->buf, cap);
  if (!b) {
    o->oom = true;
    return;
  }
  o->buf = b;
  o->cap = cap;
}

static void out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    o->oom = true;
    return;
  }
  out_reserve(o, (size_t)n);
  if (o->oom) return;
  va_start(ap, fmt);
  vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
  va_end(ap);
  o->len += (size_t)n;
}

/* A label value: backslash, double quote and newline escaped (format 0.0.4). */
static void out_label_value(out_t *o, const char *s) {
  out_reserve(o, 2 * strlen(s));
  if (o->oom) return;
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') {
      o->buf[o->len++] = '\\';
      o->buf[o->len++] = *s;
    } else if (*s == '\n') {
      o->buf[o->len++] = '\\';
      o->buf[o->len++] = 'n';
    } else {
      o->buf[o->len++] = *s;
    }
  }
  o->buf[o->len] = '\0';
}

static void out_header(out_t *o, const char *name, const char *help, const char *type) {
  out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Prometheus floats: Go's ParseFloat reads %.17g, and +Inf/-Inf/NaN by name. */
static void out_double(out_t *o, double v) {
  if (isnan(v)) out_printf(o, "NaN");
  else if (isinf(v)) out_printf(o, v > 0 ? "+Inf" : "-Inf");
  else out_printf(o, "%.17g", v);
}

/* Under fresh_mu. */
static void render_fresh_family(out_t *o, const fresh_family_t *fam) {
  out_header(o, fam->name, fam->help, "histogram");
  for (size_t i = 0; i < fam->n; i++) {
    const fresh_slot_t *s = &fam->slots[i];
    uint64_t cum = 0;
    for (size_t b = 0; b <= NFRESH; b++) {
      cum += s->buckets[b];
      out_printf(o, "%s_bucket{%s=\"", fam->name, fam->label);
      out_label_value(o, s->label);
      if (b < NFRESH) out_printf(o, "\",le=\"%g\"} %" PRIu64 "\n", fresh_bounds[b], cum);
      else out_printf(o, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    out_printf(o, "%s_sum{%s=\"", fam->name, fam->label);
    out_label_value(o, s->label);
    out_printf(o, "\"} ");
    out_double(o, s->sum);
    out_printf(o, "\n%s_count{%s=\"", fam->name, fam->label);
    out_label_value(o, s->label);
    out_printf(o, "\"} %" PRIu64 "\n", s->count);
  }
}

static void render_freshness(out_t *o) {
  pthread_mutex_lock(&fresh_mu);
  for (size_t f = 0; f < sizeof fresh_families / sizeof fresh_families[0]; f++)
    render_fresh_family(o, fresh_families[f]);
  pthread_mutex_unlock(&fresh_mu);
}

char *rtu_metrics_render(size_t *len) {
  out_t o = {0};
  for (size_t c = 0; c < RTU_C__COUNT; c++) {
    const counter_def_t *d = &counter_defs[c];
    out_header(&o, d->name, d->help, "counter");
    if (!d->label) {
      out_printf(&o, "%s %" PRIu64 "\n", d->name, atomic_load(&counters[c].value));
      continue;
    }
    size_t n = atomic_load_explicit(&counters[c].nslots, memory_order_acquire);
    for (size_t s = 0; s < n; s++) {
      out_printf(&o, "%s{%s=\"", d->name, d->label);
      out_label_value(&o, counters[c].slots[s].label);
      out_printf(&o, "\"} %" PRIu64 "\n", atomic_load(&counters[c].slots[s].value));
    }
  }
  for (size_t h = 0; h < RTU_H__COUNT; h++) {
    hist_t snap;
    pthread_mutex_lock(&hists[h].mu);
    memcpy(snap.buckets, hists[h].buckets, sizeof snap.buckets);
    snap.sum = hists[h].sum;
    snap.count = hists[h].count;
    pthread_mutex_unlock(&hists[h].mu);
    const char *name = hist_defs[h].name;
    out_header(&o, name, hist_defs[h].help, "histogram");
    uint64_t cum = 0;
    for (size_t b = 0; b < NBOUNDS; b++) {
      cum += snap.buckets[b];
      out_printf(&o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[b], cum);
    }
    cum += snap.buckets[NBOUNDS];
    out_printf(&o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    out_printf(&o, "%s_sum ", name);
    out_double(&o, snap.sum);
    out_printf(&o, "\n%s_count %" PRIu64 "\n", name, snap.count);
  }
  render_freshness(&o);
  for (size_t g = 0; g < RTU_G__COUNT; g++) {
    out_header(&o, gauge_defs[g].name, gauge_defs[g].help, "gauge");
    out_printf(&o, "%s ", gauge_defs[g].name);
    out_double(&o, atomic_load(&gauges[g]));
    out_printf(&o, "\n");
  }
  pthread_mutex_lock(&parts_mu);
  out_header(&o, "rtu_partition_lag",
             "Messages behind the high watermark, from librdkafka's statistics (-1: unknown).",
             "gauge");
  for (size_t i = 0; i < nparts; i++) {
    out_printf(&o, "rtu_partition_lag{topic=\"");
    out_label_value(&o, parts[i].topic);
    out_printf(&o, "\",partition=\"%d\"} %" PRId64 "\n", parts[i].partition, parts[i].lag);
  }
  out_header(&o, "rtu_partition_paused", "1 when the partition is paused (stopped at a message).",
             "gauge");
  for (size_t i = 0; i < nparts; i++) {
    out_printf(&o, "rtu_partition_paused{topic=\"");
    out_label_value(&o, parts[i].topic);
    out_printf(&o, "\",partition=\"%d\"} %d\n", parts[i].partition, parts[i].paused ? 1 : 0);
  }
  pthread_mutex_unlock(&parts_mu);
  bson_string_t *client = bson_string_new(NULL);
  rtu_metrics_client_render(client);
  out_reserve(&o, client->len);
  if (!o.oom) {
    memcpy(o.buf + o.len, client->str, client->len + 1);
    o.len += client->len;
  }
  bson_string_free(client, true);
  if (o.oom) {
    free(o.buf);
    return NULL;
  }
  if (len) *len = o.len;
  return o.buf;
}
