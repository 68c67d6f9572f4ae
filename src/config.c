/*
 * config.c: owns the configuration model. It reads the environment variables of
 * the Fast Data RTU contract (reference section 7, defaults included) and the JSON
 * files they point to (INVARIANT_TOPIC_MAP, mapTable.json), validates them, and
 * builds one immutable rtu_config_t. It never touches Kafka, MongoDB or Lua:
 * script.c validates Lua files, and the low-code files are checked by the Lua
 * compiler when a generation is built.
 */
#include "config.h"

#include <arpa/inet.h>
#include <bson/bson.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/stat.h>

void rtu_problems_add(rtu_problems_t *p, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    char **l = realloc(p->lines, cap * sizeof *l);
    if (!l) return; /* the line is lost, loading still fails elsewhere */
    p->lines = l;
    p->cap = cap;
  }
  p->lines[p->n++] = strdup(line);
}

void rtu_problems_free(rtu_problems_t *p) {
  for (size_t i = 0; i < p->n; i++) free(p->lines[i]);
  free(p->lines);
  memset(p, 0, sizeof *p);
}

char *rtu_config_from_file_name(const char *s) {
  static const char prefix[] = "__fromFile__[";
  size_t len = strlen(s), plen = sizeof prefix - 1;
  if (len <= plen + 1 || strncmp(s, prefix, plen) != 0 || s[len - 1] != ']') return NULL;
  char *name = strndup(s + plen, len - plen - 1);
  if (name && (strchr(name, '/') || strchr(name, '[') || !name[0])) {
    free(name);
    return NULL;
  }
  return name;
}

/* ---- environment -------------------------------------------------------- */

typedef struct {
  const char *(*get)(const char *);
  rtu_problems_t *problems;
} env_t;

static char *env_str(env_t *e, const char *name, const char *def, bool required) {
  const char *v = e->get(name);
  if (v && *v) return strdup(v);
  if (required) {
    rtu_problems_add(e->problems, "%s: required environment variable is not set", name);
    return NULL;
  }
  return def ? strdup(def) : NULL;
}

static bool env_bool(env_t *e, const char *name, bool def) {
  const char *v = e->get(name);
  if (!v || !*v) return def;
  if (!strcasecmp(v, "true") || !strcmp(v, "1")) return true;
  if (!strcasecmp(v, "false") || !strcmp(v, "0")) return false;
  rtu_problems_add(e->problems, "%s: expected true or false, got '%s'", name, v);
  return def;
}

static int env_int(env_t *e, const char *name, int def, int min, int max, bool required) {
  const char *v = e->get(name);
  if (!v || !*v) {
    if (required)
      rtu_problems_add(e->problems, "%s: required environment variable is not set", name);
    return def;
  }
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || *end || end == v || n < min || n > max) {
    rtu_problems_add(e->problems, "%s: expected an integer from %d to %d, got '%s'", name,
                     min, max, v);
    return def;
  }
  return (int)n;
}

/* ---- files -------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len, rtu_problems_t *problems) {
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    rtu_problems_add(problems, "%s: cannot read: %s", path, strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0) goto fail;
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
  buf = malloc((size_t)n + 1);
  if (!buf) goto fail;
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) goto fail;
  buf[n] = '\0';
  *len = (size_t)n;
  fclose(f);
  return buf;
fail:
  rtu_problems_add(problems, "%s: cannot read: %s", path, strerror(errno));
  free(buf);
  fclose(f);
  return NULL;
}

static bool parse_json(const char *what, const char *text, size_t len, bson_t *out,
                       rtu_problems_t *problems) {
  bson_error_t err;
  if (!bson_init_from_json(out, text, (ssize_t)len, &err)) {
    rtu_problems_add(problems, "%s: not a valid JSON object: %s", what, err.message);
    return false;
  }
  return true;
}

/* Reads and parses a JSON object file; the problem names the file. */
static bool load_json_file(const char *path, bson_t *doc, rtu_problems_t *problems) {
  size_t len;
  char *text = read_file(path, &len, problems);
  if (!text) return false;
  bool ok = parse_json(path, text, len, doc, problems);
  free(text);
  return ok;
}

static bool is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- mapTable.json ------------------------------------------------------ */

static char *dup_utf8(const bson_iter_t *it) {
  uint32_t len;
  const char *s = bson_iter_utf8(it, &len);
  return strndup(s, len);
}

/* How many entries an object or array iterator (just recursed into) holds: the
 * arrays are sized before they are filled. A copy is walked, `it` stays put. */
static size_t count_entries(const bson_iter_t *it) {
  size_t n = 0;
  bson_iter_t count = *it;
  while (bson_iter_next(&count)) n++;
  return n;
}

static void load_projection(rtu_projection_t *p, const char *file, const char *name,
                            const bson_t *doc, rtu_problems_t *problems) {
  bson_iter_t it, sub, f;
  p->name = strdup(name);

  if (bson_iter_init_find(&it, doc, "destination") && BSON_ITER_HOLDS_UTF8(&it))
    p->destination = dup_utf8(&it);
  else
    rtu_problems_add(problems, "%s: %s.destination: missing or not a string", file, name);

  if (bson_iter_init_find(&it, doc, "conversion") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &sub)) {
    size_t n = count_entries(&sub);
    p->fields = calloc(n ? n : 1, sizeof *p->fields);
    while (p->fields && bson_iter_next(&sub)) {
      const char *src = bson_iter_key(&sub);
      if (!BSON_ITER_HOLDS_DOCUMENT(&sub) || !bson_iter_recurse(&sub, &f)) {
        rtu_problems_add(problems, "%s: %s.conversion.%s: expected an object", file, name, src);
        continue;
      }
      rtu_field_t *fld = &p->fields[p->nfields];
      bson_iter_t g = f;
      if (bson_iter_find(&g, "fieldName") && BSON_ITER_HOLDS_UTF8(&g))
        fld->dst = dup_utf8(&g);
      else {
        rtu_problems_add(problems, "%s: %s.conversion.%s.fieldName: missing or not a string",
                         file, name, src);
        continue;
      }
      g = f;
      if (bson_iter_find(&g, "cast") && !BSON_ITER_HOLDS_UTF8(&g)) {
        rtu_problems_add(problems, "%s: %s.conversion.%s.cast: expected a string", file, name, src);
        free(fld->dst);
        fld->dst = NULL;
        continue;
      }
      g = f;
      if (bson_iter_find(&g, "cast") && BSON_ITER_HOLDS_UTF8(&g)) {
        char *raw = dup_utf8(&g);
        fld->cast = rtu_config_from_file_name(raw);
        if (!fld->cast)
          rtu_problems_add(problems,
                           "%s: %s.conversion.%s.cast: expected \"__fromFile__[name]\", got '%s'",
                           file, name, src, raw);
        free(raw);
      } else {
        fld->cast = strdup("defaultIdentity");
      }
      if (!fld->cast) {
        free(fld->dst);
        fld->dst = NULL;
        continue;
      }
      /* The service owns these: a mapped one would fight the metadata it writes. */
      static const char *reserved[] = {"_id", "createdAt", "updatedAt", "creatorId", "updaterId",
                                       "__STATE__", "timestamp", "__internal__counter",
                                       "__internal__counterType", "__internal__kafkaInfo"};
      bool clash = false;
      for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++)
        clash |= !strcmp(fld->dst, reserved[r]);
      for (size_t r = 0; r < p->nfields; r++) clash |= !strcmp(fld->dst, p->fields[r].dst);
      if (clash) {
        rtu_problems_add(problems, "%s: %s.conversion.%s.fieldName: '%s' is reserved or mapped twice",
                         file, name, src, fld->dst);
        free(fld->dst);
        free(fld->cast);
        fld->dst = fld->cast = NULL;
        continue;
      }
      fld->src = strdup(src);
      p->nfields++;
    }
  } else {
    rtu_problems_add(problems, "%s: %s.conversion: missing or not an object", file, name);
  }

  if (bson_iter_init_find(&it, doc, "fieldsInKey") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &sub)) {
    size_t n = count_entries(&sub);
    p->pk_dst = calloc(n ? n : 1, sizeof(char *));
    p->pk_src = calloc(n ? n : 1, sizeof(char *));
    while (p->pk_dst && p->pk_src && bson_iter_next(&sub)) {
      if (!BSON_ITER_HOLDS_UTF8(&sub)) {
        rtu_problems_add(problems, "%s: %s.fieldsInKey[%s]: expected a string", file, name,
                         bson_iter_key(&sub));
        continue;
      }
      char *pk = dup_utf8(&sub);
      /* fieldsInKey names projection fields; find the CDC field that feeds each. */
      const char *src = NULL;
      for (size_t i = 0; i < p->nfields; i++)
        if (!strcmp(p->fields[i].dst, pk)) src = p->fields[i].src;
      if (!src) {
        rtu_problems_add(problems,
                         "%s: %s.fieldsInKey: '%s' is not the fieldName of any conversion",
                         file, name, pk);
        free(pk);
        continue;
      }
      p->pk_dst[p->npk] = pk;
      p->pk_src[p->npk] = strdup(src);
      p->npk++;
    }
    if (p->npk == 0 && n == 0)
      rtu_problems_add(problems, "%s: %s.fieldsInKey: at least one primary key is required",
                       file, name);
  } else {
    rtu_problems_add(problems, "%s: %s.fieldsInKey: missing or not an array", file, name);
  }

  if (bson_iter_init_find(&it, doc, "changes")) {
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub)) {
      rtu_problems_add(problems, "%s: %s.changes: expected an object", file, name);
      return;
    }
    size_t n = count_entries(&sub);
    p->changes = calloc(n ? n : 1, sizeof *p->changes);
    while (p->changes && bson_iter_next(&sub)) {
      const char *sv = bson_iter_key(&sub);
      char *strategy = NULL;
      if (BSON_ITER_HOLDS_UTF8(&sub)) {
        char *raw = dup_utf8(&sub);
        strategy = rtu_config_from_file_name(raw);
        free(raw);
      }
      if (!strategy) {
        rtu_problems_add(problems, "%s: %s.changes.%s: expected \"__fromFile__[name]\"", file,
                         name, sv);
        continue;
      }
      p->changes[p->nchanges].single_view = strdup(sv);
      p->changes[p->nchanges].strategy = strategy;
      p->nchanges++;
    }
  }
}

static void load_map_table(rtu_config_t *cfg, rtu_problems_t *problems) {
  char path[4096];
  snprintf(path, sizeof path, "%s/mapTable.json", cfg->map_table_folder);
  bson_t doc;
  if (!load_json_file(path, &doc, problems)) return;
  uint32_t n = bson_count_keys(&doc);
  cfg->projections = calloc(n ? n : 1, sizeof *cfg->projections);
  bson_iter_t it;
  if (cfg->projections && bson_iter_init(&it, &doc)) {
    while (bson_iter_next(&it)) {
      bson_t sub;
      const uint8_t *data;
      uint32_t dlen;
      if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        rtu_problems_add(problems, "%s: %s: expected an object", path, bson_iter_key(&it));
        continue;
      }
      bson_iter_document(&it, &dlen, &data);
      if (!bson_init_static(&sub, data, dlen)) continue;
      load_projection(&cfg->projections[cfg->nprojections++], path, bson_iter_key(&it), &sub,
                      problems);
    }
  }
  bson_destroy(&doc);
  if (cfg->nprojections == 0) rtu_problems_add(problems, "%s: no projection is defined", path);
}

static rtu_projection_t *find_projection(rtu_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nprojections; i++)
    if (!strcmp(cfg->projections[i].name, name)) return &cfg->projections[i];
  return NULL;
}

/* The projection named by a top-level entry of the kafkaProjection*.json file
 * `path`; NULL, with a problem, when mapTable.json has none of that name. */
static rtu_projection_t *entry_projection(rtu_config_t *cfg, const char *path, const char *name,
                                          rtu_problems_t *problems) {
  rtu_projection_t *p = find_projection(cfg, name);
  if (!p) rtu_problems_add(problems, "%s: %s: not a projection of mapTable.json", path, name);
  return p;
}

/* kafkaProjectionUpdates.json: {projection: {updatesTopic, strategy}}. */
static void load_pr_updates(rtu_config_t *cfg, rtu_problems_t *problems) {
  char path[4096];
  bson_t doc;
  snprintf(path, sizeof path, "%s/kafkaProjectionUpdates.json", cfg->kafka_pr_updates_folder);
  if (!load_json_file(path, &doc, problems)) return;
  bson_iter_t it, sub;
  if (bson_iter_init(&it, &doc))
    while (bson_iter_next(&it)) {
      const char *name = bson_iter_key(&it);
      rtu_projection_t *p = entry_projection(cfg, path, name, problems);
      if (!p) continue;
      /* Entries without updatesTopic (Console-generated) emit nothing. */
      if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
          bson_iter_find(&sub, "updatesTopic")) {
        if (BSON_ITER_HOLDS_UTF8(&sub)) p->pr_update_topic = dup_utf8(&sub);
        else rtu_problems_add(problems, "%s: %s.updatesTopic: expected a string", path, name);
      } else if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        rtu_problems_add(problems, "%s: %s: expected an object", path, name);
      }
    }
  bson_destroy(&doc);
}

/* kafkaProjectionChanges.json: {projection: {projectionChanges: {sv: {topic, strategy}}}}. */
static void load_pc_topics(rtu_config_t *cfg, rtu_problems_t *problems) {
  char path[4096];
  bson_t doc;
  snprintf(path, sizeof path, "%s/kafkaProjectionChanges.json", cfg->kafka_pc_folder);
  if (!load_json_file(path, &doc, problems)) return;
  bson_iter_t it, pcs, sv, topic;
  if (bson_iter_init(&it, &doc))
    while (bson_iter_next(&it)) {
      const char *name = bson_iter_key(&it);
      rtu_projection_t *p = entry_projection(cfg, path, name, problems);
      if (!p) continue;
      if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &pcs) ||
          !bson_iter_find(&pcs, "projectionChanges") || !BSON_ITER_HOLDS_DOCUMENT(&pcs) ||
          !bson_iter_recurse(&pcs, &sv)) {
        rtu_problems_add(problems, "%s: %s.projectionChanges: missing or not an object", path, name);
        continue;
      }
      size_t n = count_entries(&sv);
      p->pc_topics = calloc(n ? n : 1, sizeof *p->pc_topics);
      while (p->pc_topics && bson_iter_next(&sv)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&sv) || !bson_iter_recurse(&sv, &topic) ||
            !bson_iter_find(&topic, "topic") || !BSON_ITER_HOLDS_UTF8(&topic)) {
          rtu_problems_add(problems, "%s: %s.projectionChanges.%s.topic: missing or not a string",
                           path, name, bson_iter_key(&sv));
          continue;
        }
        p->pc_topics[p->npc_topics].single_view = strdup(bson_iter_key(&sv));
        p->pc_topics[p->npc_topics].strategy = dup_utf8(&topic); /* the topic */
        p->npc_topics++;
      }
    }
  bson_destroy(&doc);
}

static void load_topic_map(rtu_config_t *cfg, const char *json, rtu_problems_t *problems) {
  bson_t doc;
  if (!parse_json("INVARIANT_TOPIC_MAP", json, strlen(json), &doc, problems)) return;
  uint32_t n = bson_count_keys(&doc);
  cfg->topics = calloc(n ? n : 1, sizeof *cfg->topics);
  bson_iter_t it;
  if (cfg->topics && bson_iter_init(&it, &doc)) {
    while (bson_iter_next(&it)) {
      const char *topic = bson_iter_key(&it);
      if (!BSON_ITER_HOLDS_UTF8(&it)) {
        rtu_problems_add(problems, "INVARIANT_TOPIC_MAP: %s: expected a projection name", topic);
        continue;
      }
      const char *proj = bson_iter_utf8(&it, NULL);
      size_t i;
      for (i = 0; i < cfg->nprojections; i++)
        if (!strcmp(cfg->projections[i].name, proj)) break;
      if (i == cfg->nprojections) {
        if (cfg->nprojections)
          rtu_problems_add(problems,
                           "INVARIANT_TOPIC_MAP: %s: projection '%s' is not in mapTable.json",
                           topic, proj);
        continue;
      }
      cfg->topics[cfg->ntopics].topic = strdup(topic);
      cfg->topics[cfg->ntopics].projection = i;
      cfg->ntopics++;
    }
  }
  bson_destroy(&doc);
  if (n == 0) rtu_problems_add(problems, "INVARIANT_TOPIC_MAP: no topic is mapped");
}

static void check_folder(rtu_problems_t *problems, const char *var, const char *path) {
  if (path && !is_dir(path))
    rtu_problems_add(problems, "%s: '%s' is not a readable folder", var, path);
}

rtu_config_t *rtu_config_load(const char *(*getenv_fn)(const char *),
                              const char *default_lua_dir, rtu_problems_t *problems) {
  size_t before = problems->n;
  rtu_config_t *cfg = calloc(1, sizeof *cfg);
  if (!cfg) {
    rtu_problems_add(problems, "out of memory");
    return NULL;
  }
  env_t e = {getenv_fn, problems};

  cfg->kafka_brokers = env_str(&e, "KAFKA_BROKERS", NULL, true);
  cfg->kafka_group_id = env_str(&e, "KAFKA_GROUP_ID", NULL, true);
  cfg->kafka_sasl_username = env_str(&e, "KAFKA_SASL_USERNAME", NULL, false);
  cfg->kafka_sasl_password = env_str(&e, "KAFKA_SASL_PASSWORD", NULL, false);
  cfg->kafka_sasl_mechanism = env_str(&e, "KAFKA_SASL_MECHANISM", "plain", false);
  cfg->ca_cert_path = env_str(&e, "CA_CERT_PATH", NULL, false);
  cfg->kafka_latest = env_bool(&e, "KAFKA_USE_LATEST_DEQUEUE_STRATEGY", false);
  cfg->kafka_max_wait_ms = env_int(&e, "KAFKA_CONSUMER_MAX_WAIT_TIME", 500, 1, 60000, false);
  cfg->kafka_max_batch = env_int(&e, "KAFKA_CONSUMER_MAX_BATCH_SIZE", 5000, 1, 100000, false);
  cfg->kafka_session_timeout_ms =
      env_int(&e, "KAFKA_SESSION_TIMEOUT_MS", 30000, 1000, 3600000, false);
  cfg->kafka_heartbeat_interval_ms =
      env_int(&e, "KAFKA_HEARTBEAT_INTERVAL_MS", 3000, 100, 3600000, false);
  cfg->kafka_connection_timeout_ms =
      env_int(&e, "KAFKA_CONNECTION_TIMEOUT_MS", 10000, 100, 3600000, false);
  cfg->producer_compression = env_str(&e, "PRODUCER_COMPRESSION", "none", false);
  if (cfg->producer_compression && strcmp(cfg->producer_compression, "none") &&
      strcmp(cfg->producer_compression, "gzip") && strcmp(cfg->producer_compression, "snappy"))
    rtu_problems_add(problems, "PRODUCER_COMPRESSION: expected none, gzip or snappy, got '%s'",
                     cfg->producer_compression);
  /* cooperative-sticky: a rebalance moves only the partitions that change owner,
   * the others keep flowing; the eager ones stay for brokers and groups that
   * need them (librdkafka refuses a mix of the two kinds). */
  cfg->kafka_assignment_strategy =
      env_str(&e, "KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "cooperative-sticky", false);
  if (cfg->kafka_assignment_strategy) {
    static const char *strategies[] = {"cooperative-sticky", "range", "roundrobin",
                                       "range,roundrobin", "roundrobin,range"};
    bool ok = false;
    for (size_t i = 0; i < 5; i++) ok |= !strcmp(cfg->kafka_assignment_strategy, strategies[i]);
    if (!ok)
      rtu_problems_add(problems,
                       "KAFKA_PARTITION_ASSIGNMENT_STRATEGY: expected cooperative-sticky, range, "
                       "roundrobin or range,roundrobin, got '%s'",
                       cfg->kafka_assignment_strategy);
  }
  if (cfg->kafka_sasl_mechanism) {
    static const char *mechs[] = {"plain", "scram-sha-256", "scram-sha-512", "oauthbearer"};
    bool ok = false;
    for (size_t i = 0; i < 4; i++) ok |= !strcasecmp(cfg->kafka_sasl_mechanism, mechs[i]);
    if (!ok)
      rtu_problems_add(problems,
                       "KAFKA_SASL_MECHANISM: expected plain, scram-sha-256, scram-sha-512 or "
                       "oauthbearer, got '%s'",
                       cfg->kafka_sasl_mechanism);
  }

  cfg->mongodb_url = env_str(&e, "MONGODB_URL", NULL, true);
  cfg->projections_db = env_str(&e, "PROJECTIONS_DATABASE_NAME", NULL, true);
  cfg->pc_enabled = env_bool(&e, "PROJECTIONS_CHANGES_ENABLED", true);
  cfg->pc_collection = env_str(&e, "PROJECTIONS_CHANGES_COLLECTION_NAME", NULL, cfg->pc_enabled);

  cfg->system_of_records = env_str(&e, "SYSTEM_OF_RECORDS", NULL, true);
  cfg->log_level = env_str(&e, "LOG_LEVEL", "info", false);
  static const char *levels[] = {"trace", "debug", "info", "warn", "error", "fatal", "silent"};
  bool level_ok = false;
  for (size_t i = 0; cfg->log_level && i < 7; i++) level_ok |= !strcasecmp(cfg->log_level, levels[i]);
  if (!level_ok)
    rtu_problems_add(problems, "LOG_LEVEL: expected one of trace, debug, info, warn, error, "
                               "fatal, silent, got '%s'", cfg->log_level ? cfg->log_level : "");
  cfg->http_port = env_int(&e, "HTTP_PORT", 3000, 0, 65535, false);
  cfg->http_host = env_str(&e, "HTTP_HOST", "0.0.0.0", false);
  unsigned char addr[sizeof(struct in6_addr)];
  if (cfg->http_host && inet_pton(AF_INET, cfg->http_host, addr) != 1 &&
      inet_pton(AF_INET6, cfg->http_host, addr) != 1)
    rtu_problems_add(problems, "HTTP_HOST: expected an IPv4 or IPv6 address, got '%s'",
                     cfg->http_host);

  cfg->adapter = env_str(&e, "KAFKA_MESSAGE_ADAPTER", "basic", false);
  cfg->adapter_folder = env_str(&e, "KAFKA_ADAPTER_FOLDER", NULL, false);
  if (cfg->adapter && strcmp(cfg->adapter, "basic") && strcmp(cfg->adapter, "db2") &&
      strcmp(cfg->adapter, "golden-gate") && strcmp(cfg->adapter, "debezium") &&
      strcmp(cfg->adapter, "custom"))
    rtu_problems_add(problems, "KAFKA_MESSAGE_ADAPTER: expected basic, db2, golden-gate, "
                               "debezium or custom, got '%s'", cfg->adapter);
  if (cfg->adapter && !strcmp(cfg->adapter, "custom") && !cfg->adapter_folder)
    rtu_problems_add(problems,
                     "KAFKA_ADAPTER_FOLDER: required when KAFKA_MESSAGE_ADAPTER is custom");
  check_folder(problems, "KAFKA_ADAPTER_FOLDER", cfg->adapter_folder);

  cfg->map_table_folder = env_str(&e, "MAP_TABLE_FOLDER", NULL, true);
  cfg->cast_functions_folder = env_str(&e, "CAST_FUNCTIONS_FOLDER", NULL, false);
  check_folder(problems, "CAST_FUNCTIONS_FOLDER", cfg->cast_functions_folder);
  cfg->use_automatic_strategies = env_bool(&e, "USE_AUTOMATIC_STRATEGIES", false);
  cfg->er_schema_folder = env_str(&e, "ER_SCHEMA_FOLDER", NULL,
                                  cfg->pc_enabled && cfg->use_automatic_strategies);
  cfg->pc_schema_folder = env_str(&e, "PROJECTION_CHANGES_SCHEMA_FOLDER", NULL,
                                  cfg->pc_enabled && cfg->use_automatic_strategies);
  cfg->strategies_folder = env_str(&e, "STRATEGIES_FOLDER", NULL, false);
  check_folder(problems, "ER_SCHEMA_FOLDER", cfg->er_schema_folder);
  check_folder(problems, "PROJECTION_CHANGES_SCHEMA_FOLDER", cfg->pc_schema_folder);
  check_folder(problems, "STRATEGIES_FOLDER", cfg->strategies_folder);
  cfg->strategies_max_exec_ms =
      env_int(&e, "STRATEGIES_MAX_EXEC_TIME_MS", 5000, 1, 3600000, false);

  cfg->use_upsert = env_bool(&e, "USE_UPSERT", true);
  /* The basic adapter carries no operation type: every value is an upsert. */
  if (cfg->adapter && (!strcmp(cfg->adapter, "basic") || !strcmp(cfg->adapter, "db2")))
    cfg->use_upsert = true;
  char *del = env_str(&e, "DELETE_MECHANISM", "soft", false);
  if (del && !strcasecmp(del, "hard")) cfg->delete_mechanism = RTU_DELETE_HARD;
  else if (del && !strcasecmp(del, "soft")) cfg->delete_mechanism = RTU_DELETE_SOFT;
  else rtu_problems_add(problems, "DELETE_MECHANISM: expected soft or hard, got '%s'", del);
  free(del);
  /* Without upsert a soft-deleted record would make the next insert fail. */
  if (!cfg->use_upsert) cfg->delete_mechanism = RTU_DELETE_HARD;
  cfg->force_check_on_offset = env_bool(&e, "FORCE_CHECK_ON_OFFSET", true);
  cfg->use_pos_as_counter = env_bool(&e, "USE_POS_AS_COUNTER", true);
  cfg->gen_kafka_pr_updates = env_bool(&e, "GENERATE_KAFKA_PROJECTION_UPDATES", false);
  cfg->kafka_pr_updates_folder = env_str(&e, "KAFKA_PROJECTION_UPDATES_FOLDER", NULL,
                                         cfg->gen_kafka_pr_updates);
  cfg->gen_kafka_pc = env_bool(&e, "GENERATE_KAFKA_PROJECTION_CHANGES", false);
  cfg->kafka_pc_folder = env_str(&e, "KAFKA_PROJECTION_CHANGES_FOLDER", NULL, cfg->gen_kafka_pc);
  cfg->pause_topic_on_error = env_bool(&e, "PAUSE_TOPIC_CONSUMPTION_ON_ERROR", false);
  /* rtu's own: where messages that cannot be applied go instead of stopping. */
  cfg->dead_letter_topic = env_str(&e, "DEAD_LETTER_TOPIC", NULL, false);
  if (cfg->dead_letter_topic && !*cfg->dead_letter_topic) {
    free(cfg->dead_letter_topic);
    cfg->dead_letter_topic = NULL;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = env_int(&e, "PARTITION_WORKERS", cpus > 0 && cpus < 16 ? (int)cpus : cpus > 0 ? 16 : 1,
                         1, 64, false);
  cfg->hot_reload = env_bool(&e, "SCRIPTS_HOT_RELOAD", false);
  cfg->commit_log_interval_ms =
      env_int(&e, "COMMIT_MESSAGE_LOGGING_INTERVAL", 3000, 0, 3600000, false);
  cfg->lua_dir = env_str(&e, "LUA_RUNTIME_FOLDER", default_lua_dir, false);
  if (!cfg->lua_dir || !is_dir(cfg->lua_dir))
    rtu_problems_add(problems, "LUA_RUNTIME_FOLDER: Lua runtime folder '%s' not found",
                     cfg->lua_dir ? cfg->lua_dir : "(none)");

  if (cfg->map_table_folder) {
    if (is_dir(cfg->map_table_folder)) load_map_table(cfg, problems);
    else rtu_problems_add(problems, "MAP_TABLE_FOLDER: '%s' is not a readable folder",
                          cfg->map_table_folder);
  }
  if (cfg->nprojections && cfg->gen_kafka_pr_updates && cfg->kafka_pr_updates_folder)
    load_pr_updates(cfg, problems);
  if (cfg->nprojections && cfg->gen_kafka_pc && cfg->kafka_pc_folder) load_pc_topics(cfg, problems);
  const char *topic_map = getenv_fn("INVARIANT_TOPIC_MAP");
  if (!topic_map || !*topic_map)
    rtu_problems_add(problems, "INVARIANT_TOPIC_MAP: required environment variable is not set");
  else
    load_topic_map(cfg, topic_map, problems);

  if (problems->n > before) {
    rtu_config_free(cfg);
    return NULL;
  }
  return cfg;
}

static void free_projection(rtu_projection_t *p) {
  free(p->name);
  free(p->destination);
  for (size_t i = 0; i < p->nfields; i++) {
    free(p->fields[i].src);
    free(p->fields[i].dst);
    free(p->fields[i].cast);
  }
  free(p->fields);
  for (size_t i = 0; i < p->npk; i++) {
    free(p->pk_dst[i]);
    free(p->pk_src[i]);
  }
  free(p->pk_dst);
  free(p->pk_src);
  for (size_t i = 0; i < p->nchanges; i++) {
    free(p->changes[i].single_view);
    free(p->changes[i].strategy);
  }
  free(p->changes);
  free(p->pr_update_topic);
  for (size_t i = 0; i < p->npc_topics; i++) {
    free(p->pc_topics[i].single_view);
    free(p->pc_topics[i].strategy);
  }
  free(p->pc_topics);
}

void rtu_config_free(rtu_config_t *cfg) {
  if (!cfg) return;
  char **strs[] = {
      &cfg->kafka_brokers, &cfg->kafka_group_id, &cfg->kafka_sasl_username,
      &cfg->kafka_sasl_password, &cfg->kafka_sasl_mechanism, &cfg->ca_cert_path,
      &cfg->producer_compression, &cfg->kafka_assignment_strategy, &cfg->mongodb_url, &cfg->projections_db,
      &cfg->pc_collection, &cfg->system_of_records, &cfg->log_level, &cfg->adapter,
      &cfg->adapter_folder, &cfg->map_table_folder, &cfg->cast_functions_folder,
      &cfg->er_schema_folder, &cfg->pc_schema_folder, &cfg->strategies_folder,
      &cfg->kafka_pr_updates_folder, &cfg->kafka_pc_folder, &cfg->lua_dir, &cfg->http_host,
      &cfg->dead_letter_topic,
  };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(*strs[i]);
  for (size_t i = 0; i < cfg->nprojections; i++) free_projection(&cfg->projections[i]);
  free(cfg->projections);
  for (size_t i = 0; i < cfg->ntopics; i++) free(cfg->topics[i].topic);
  free(cfg->topics);
  free(cfg);
}

const rtu_projection_t *rtu_config_projection_for_topic(const rtu_config_t *cfg,
                                                        const char *topic) {
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (!strcmp(cfg->topics[i].topic, topic)) return &cfg->projections[cfg->topics[i].projection];
  return NULL;
}
