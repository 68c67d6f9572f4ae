/*
 * health.c: owns what the service knows of its own state (health.h): the poll
 * loop's heartbeat, group membership, the state of each dependency and the
 * partitions stopped at a message. It only records and renders what it is told:
 * it never checks Kafka or MongoDB itself and decides nothing about consumption.
 * Writers are the consumer, the workers and the store; the reader is the HTTP
 * thread. One mutex for the strings, atomics for the rest.
 */
#include "health.h"

#include <bson/bson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtu.h"
#include "util.h"

#define DETAIL_SIZE 256

typedef struct stopped_s {
  char *topic;
  int32_t partition;
  int64_t offset;
  char *cause;
  struct stopped_s *next;
} stopped_t;

static const char *dep_names[RTU_DEP__COUNT] = {
    [RTU_DEP_KAFKA] = "kafka", [RTU_DEP_MONGODB] = "mongodb", [RTU_DEP_SCRIPTS] = "scripts"};

static _Atomic int64_t last_beat_ms;
static atomic_bool joined;
static atomic_bool dep_ok[RTU_DEP__COUNT];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char dep_detail[RTU_DEP__COUNT][DETAIL_SIZE]; /* under mu */
static stopped_t *stopped;                           /* under mu, newest first */
static char **refused;                               /* under mu: the refused reload's problems */
static size_t nrefused;

void rtu_health_init(void) {
  /* Start-up counts as a beat: /-/healthz answers OK while indexes are created. */
  atomic_store(&last_beat_ms, rtu_now_mono_ms());
  atomic_store(&joined, false);
  pthread_mutex_lock(&mu);
  /* Kafka is ok until the statistics say no broker is up (joining proves it too);
   * MongoDB and scripts are ok only once they have been seen working. */
  atomic_store(&dep_ok[RTU_DEP_KAFKA], true);
  dep_detail[RTU_DEP_KAFKA][0] = '\0';
  atomic_store(&dep_ok[RTU_DEP_MONGODB], false);
  snprintf(dep_detail[RTU_DEP_MONGODB], DETAIL_SIZE, "not reached yet");
  atomic_store(&dep_ok[RTU_DEP_SCRIPTS], false);
  snprintf(dep_detail[RTU_DEP_SCRIPTS], DETAIL_SIZE, "not loaded yet");
  pthread_mutex_unlock(&mu);
}

static void clear_refused(void) {
  for (size_t i = 0; i < nrefused; i++) free(refused[i]);
  free(refused);
  refused = NULL;
  nrefused = 0;
}

void rtu_health_reload_refused(char *const *problems, size_t n) {
  pthread_mutex_lock(&mu);
  clear_refused();
  if (n && (refused = calloc(n, sizeof *refused)))
    for (size_t i = 0; i < n; i++)
      if ((refused[nrefused] = strdup(problems[i] ? problems[i] : ""))) nrefused++;
  pthread_mutex_unlock(&mu);
}

void rtu_health_free(void) {
  pthread_mutex_lock(&mu);
  clear_refused();
  while (stopped) {
    stopped_t *s = stopped;
    stopped = s->next;
    free(s->topic);
    free(s->cause);
    free(s);
  }
  pthread_mutex_unlock(&mu);
}

void rtu_health_heartbeat(void) { atomic_store(&last_beat_ms, rtu_now_mono_ms()); }

bool rtu_health_alive(int64_t max_silence_ms) {
  return rtu_now_mono_ms() - atomic_load(&last_beat_ms) <= max_silence_ms;
}

void rtu_health_dependency(rtu_dep_t dep, bool ok, const char *detail) {
  if ((unsigned)dep >= RTU_DEP__COUNT) return;
  /* The store reports every command: skip the lock when nothing changes. */
  if (ok && !detail && atomic_load(&dep_ok[dep])) return;
  pthread_mutex_lock(&mu);
  snprintf(dep_detail[dep], DETAIL_SIZE, "%s", detail ? detail : "");
  atomic_store(&dep_ok[dep], ok);
  pthread_mutex_unlock(&mu);
}

bool rtu_health_dependency_ok(rtu_dep_t dep) {
  return (unsigned)dep < RTU_DEP__COUNT && atomic_load(&dep_ok[dep]);
}

void rtu_health_joined(bool j) { atomic_store(&joined, j); }

bool rtu_health_ready(void) {
  if (!atomic_load(&joined)) return false;
  for (size_t i = 0; i < RTU_DEP__COUNT; i++)
    if (!atomic_load(&dep_ok[i])) return false;
  return true;
}

static void drop_stopped(const char *topic, int32_t partition) {
  for (stopped_t **pp = &stopped; *pp; pp = &(*pp)->next) {
    if ((*pp)->partition == partition && !strcmp((*pp)->topic, topic)) {
      stopped_t *s = *pp;
      *pp = s->next;
      free(s->topic);
      free(s->cause);
      free(s);
      return;
    }
  }
}

void rtu_health_partition_stopped(const char *topic, int32_t partition, int64_t offset,
                                  const char *cause) {
  if (!topic) return;
  stopped_t *s = calloc(1, sizeof *s);
  if (!s) return;
  s->topic = strdup(topic);
  s->cause = strdup(cause ? cause : "");
  s->partition = partition;
  s->offset = offset;
  if (!s->topic || !s->cause) {
    free(s->topic);
    free(s->cause);
    free(s);
    return;
  }
  pthread_mutex_lock(&mu);
  drop_stopped(topic, partition);
  s->next = stopped;
  stopped = s;
  pthread_mutex_unlock(&mu);
}

void rtu_health_partition_resumed(const char *topic, int32_t partition) {
  if (!topic) return;
  pthread_mutex_lock(&mu);
  drop_stopped(topic, partition);
  pthread_mutex_unlock(&mu);
}

/* A JSON string. Causes may quote message bytes that are not UTF-8: then every
 * byte above 0x7f is written as \u00XX so the body stays valid JSON. */
static void json_str(bson_string_t *out, const char *s) {
  bool utf8 = bson_utf8_validate(s, strlen(s), false);
  bson_string_append_c(out, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': bson_string_append(out, "\\\""); break;
    case '\\': bson_string_append(out, "\\\\"); break;
    case '\n': bson_string_append(out, "\\n"); break;
    case '\r': bson_string_append(out, "\\r"); break;
    case '\t': bson_string_append(out, "\\t"); break;
    default:
      if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8))
        bson_string_append_printf(out, "\\u%04x", *p);
      else
        bson_string_append_c(out, (char)*p);
    }
  }
  bson_string_append_c(out, '"');
}

char *rtu_health_checkup_json(size_t *len, bool *ok) {
  bool ready = rtu_health_ready();
  bson_string_t *out = bson_string_new("{\"status\":");
  bson_string_append(out, ready ? "\"OK\"" : "\"KO\"");
  bson_string_append(out, ",\"name\":\"rtu\",\"version\":");
  json_str(out, RTU_VERSION);
  bson_string_append_printf(out, ",\"joined\":%s,\"dependencies\":{",
                            atomic_load(&joined) ? "true" : "false");
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < RTU_DEP__COUNT; i++) {
    bson_string_append_printf(out, "%s\"%s\":{\"status\":\"%s\"", i ? "," : "", dep_names[i],
                              atomic_load(&dep_ok[i]) ? "OK" : "KO");
    if (dep_detail[i][0]) {
      bson_string_append(out, ",\"detail\":");
      json_str(out, dep_detail[i]);
    }
    bson_string_append_c(out, '}');
  }
  bson_string_append(out, "},\"stoppedPartitions\":[");
  for (stopped_t *s = stopped; s; s = s->next) {
    bson_string_append(out, s == stopped ? "{\"topic\":" : ",{\"topic\":");
    json_str(out, s->topic);
    bson_string_append_printf(out, ",\"partition\":%d,\"offset\":%lld,\"cause\":", s->partition,
                              (long long)s->offset);
    json_str(out, s->cause);
    bson_string_append_c(out, '}');
  }
  bson_string_append(out, "]");
  if (nrefused) {
    bson_string_append(out, ",\"refusedReload\":{\"problems\":[");
    for (size_t i = 0; i < nrefused; i++) {
      if (i) bson_string_append_c(out, ',');
      json_str(out, refused[i]);
    }
    bson_string_append(out, "]}");
  }
  pthread_mutex_unlock(&mu);
  bson_string_append(out, "}");
  if (ok) *ok = ready;
  if (len) *len = out->len;
  /* bson_string_free(..., false) hands back the buffer, allocated by bson_malloc
   * which is malloc unless a program swaps libbson's allocator (rtu does not). */
  return bson_string_free(out, false);
}
