/*
 * config.c: owns the configuration model: the table of every environment
 * variable (the Fast Data RTU contract's, reference section 7, defaults
 * included, rtu's additions, and those of the contract rtu does not honour),
 * their parsing and validation from that table, and the building of one
 * immutable rtu_config_t. The JSON files the variables name are read by
 * config_files.c; cross-file checks are checker.c's. It never touches Kafka,
 * MongoDB connections or Lua.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mongoc/mongoc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


#define OFF(f) offsetof(rtu_config_t, f)
#define NOFF ((size_t)-1)
#define RTU_VAR_ANYCASE 8 /* an enum compared without case */

/* clang-format off */
const rtu_var_t rtu_config_vars[] = {
  /* Kafka */
  {"KAFKA_BROKERS", RTU_VAR_BROKERS, OFF(kafka_brokers), NULL, 0, 0, NULL, RTU_VAR_REQUIRED, NULL,
   "brokers, comma separated `host:port`"},
  {"KAFKA_GROUP_ID", RTU_VAR_STRING, OFF(kafka_group_id), NULL, 0, 0, NULL, RTU_VAR_REQUIRED, NULL,
   "consumer group"},
  {"KAFKA_SASL_USERNAME", RTU_VAR_STRING, OFF(kafka_sasl_username), NULL, 0, 0, NULL, 0, NULL,
   "SASL user; SASL is off unless both username and password are set"},
  {"KAFKA_SASL_PASSWORD", RTU_VAR_STRING, OFF(kafka_sasl_password), NULL, 0, 0, NULL, RTU_VAR_SECRET,
   NULL, "SASL password"},
  {"KAFKA_SASL_MECHANISM", RTU_VAR_ENUM, OFF(kafka_sasl_mechanism), "plain", 0, 0,
   "plain|scram-sha-256|scram-sha-512|oauthbearer", RTU_VAR_ANYCASE, NULL, "SASL mechanism"},
  {"KAFKA_SASL_OAUTH_BASE_URL", RTU_VAR_STRING, OFF(kafka_oauth_base_url), NULL, 0, 0, NULL, 0,
   "`KAFKA_SASL_MECHANISM` is oauthbearer with credentials", "token endpoint (`http://` or `https://`) of the oauthbearer mechanism"},
  {"KAFKA_SASL_OAUTH_PATH", RTU_VAR_STRING, OFF(kafka_oauth_path), NULL, 0, 0, NULL, 0, NULL,
   "path of the token endpoint, after the base URL"},
  {"KAFKA_SASL_OAUTH_GRANT_TYPE", RTU_VAR_ENUM, OFF(kafka_oauth_grant_type), "password", 0, 0, "password",
   0, NULL, "OAuth grant: the password grant, with the SASL username and password"},
  {"KAFKA_SASL_OAUTH_CLIENT_ID", RTU_VAR_STRING, OFF(kafka_oauth_client_id), NULL, 0, 0, NULL, 0, NULL,
   "OAuth client id"},
  {"KAFKA_SASL_OAUTH_CLIENT_SECRET", RTU_VAR_STRING, OFF(kafka_oauth_client_secret), NULL, 0, 0, NULL,
   RTU_VAR_SECRET, NULL, "OAuth client secret (with the id: HTTP basic authentication)"},
  {"KAFKA_SASL_OAUTH_TOKEN_EXPIRATION_MARGIN_MS", RTU_VAR_INT, OFF(kafka_oauth_margin_ms), "60000", 0,
   86400000, NULL, 0, NULL, "a token is refreshed this long before it expires (ms)"},
  {"CA_CERT_PATH", RTU_VAR_STRING, OFF(ca_cert_path), NULL, 0, 0, NULL, 0, NULL,
   "CA file: TLS to the brokers (SASL_SSL with credentials)"},
  {"KAFKA_USE_LATEST_DEQUEUE_STRATEGY", RTU_VAR_BOOL, OFF(kafka_latest), "false", 0, 0, NULL, 0, NULL,
   "a new group starts at the latest offset (else the earliest)"},
  {"KAFKA_CONSUMER_MAX_WAIT_TIME", RTU_VAR_INT, OFF(kafka_max_wait_ms), "500", 1, 60000, NULL, 0, NULL,
   "ms the broker may hold a fetch without data, and a poll waits for its first message"},
  {"KAFKA_SESSION_TIMEOUT_MS", RTU_VAR_INT, OFF(kafka_session_timeout_ms), "30000", 1000, 3600000, NULL,
   0, NULL, "consumer group session timeout (ms)"},
  {"KAFKA_HEARTBEAT_INTERVAL_MS", RTU_VAR_INT, OFF(kafka_heartbeat_interval_ms), "3000", 100, 3600000,
   NULL, 0, NULL, "consumer group heartbeat interval (ms)"},
  {"KAFKA_CONNECTION_TIMEOUT_MS", RTU_VAR_INT, OFF(kafka_connection_timeout_ms), "10000", 100, 3600000,
   NULL, 0, NULL, "broker connection set-up timeout (ms)"},
  {"PRODUCER_COMPRESSION", RTU_VAR_ENUM, OFF(producer_compression), "none", 0, 0, "none|gzip|snappy", 0,
   NULL, "compression of produced messages"},
  /* MongoDB */
  {"MONGODB_URL", RTU_VAR_MONGODB_URL, OFF(mongodb_url), NULL, 0, 0, NULL, RTU_VAR_REQUIRED | RTU_VAR_SECRET,
   NULL, "MongoDB connection string (any 4.4+ server, replica set or sharded)"},
  {"PROJECTIONS_DATABASE_NAME", RTU_VAR_STRING, OFF(projections_db), NULL, 0, 0, NULL, RTU_VAR_REQUIRED,
   NULL, "database of the projections"},
  {"PROJECTIONS_CHANGES_ENABLED", RTU_VAR_BOOL, OFF(pc_enabled), "true", 0, 0, NULL, 0, NULL,
   "run strategies and write projection changes"},
  {"PROJECTIONS_CHANGES_COLLECTION_NAME", RTU_VAR_STRING, OFF(pc_collection), NULL, 0, 0, NULL, 0,
   "`PROJECTIONS_CHANGES_ENABLED` is true", "projection-changes collection"},
  /* Service */
  {"SYSTEM_OF_RECORDS", RTU_VAR_STRING, OFF(system_of_records), NULL, 0, 0, NULL, RTU_VAR_REQUIRED, NULL,
   "the system name (`source` of pr-update messages)"},
  {"LOG_LEVEL", RTU_VAR_ENUM, OFF(log_level), "info", 0, 0, "trace|debug|info|warn|error|fatal|silent",
   RTU_VAR_ANYCASE, NULL, "log level"},
  {"HTTP_PORT", RTU_VAR_INT, OFF(http_port), "3000", 0, 65535, NULL, 0, NULL, "health and metrics port"},
  /* Mapping */
  {"KAFKA_MESSAGE_ADAPTER", RTU_VAR_ENUM, OFF(adapter), "basic", 0, 0,
   "basic|db2|golden-gate|debezium|custom", 0, NULL, "format of the ingestion messages"},
  {"KAFKA_ADAPTER_FOLDER", RTU_VAR_FOLDER, OFF(adapter_folder), NULL, 0, 0, NULL, 0,
   "`KAFKA_MESSAGE_ADAPTER` is custom", "folder of `kafkaMessageAdapter.lua`"},
  {"INVARIANT_TOPIC_MAP", RTU_VAR_JSON, OFF(topic_map_json), NULL, 0, 0, NULL, RTU_VAR_REQUIRED, NULL,
   "JSON object: ingestion topic → projection name"},
  {"MAP_TABLE_FOLDER", RTU_VAR_FOLDER, OFF(map_table_folder), NULL, 0, 0, NULL, RTU_VAR_REQUIRED, NULL,
   "folder of `mapTable.json`"},
  {"CAST_FUNCTIONS_FOLDER", RTU_VAR_FOLDER, OFF(cast_functions_folder), NULL, 0, 0, NULL, 0, NULL,
   "folder of custom casts `NAME.lua`"},
  {"LOGGING_UNMAPPED_FIELDS", RTU_VAR_BOOL, OFF(log_unmapped_fields), "false", 0, 0, NULL, 0, NULL,
   "log the message fields that `mapTable.json` does not name, and the values a built-in cast cannot "
   "convert (one line per projection, field and kind per run)"},
  {"COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE", RTU_VAR_STRING, OFF(unmapped_collection), NULL, 0, 0, NULL,
   0, NULL, "collection recording those fields (`UNKNOWN_FIELD`, `UNCASTABLE_FIELD`): one document per "
   "projection, field and kind"},
  /* Strategies */
  {"USE_AUTOMATIC_STRATEGIES", RTU_VAR_BOOL, OFF(use_automatic_strategies), "false", 0, 0, NULL, 0, NULL,
   "low-code strategies (else the `changes` of `mapTable.json`)"},
  {"ER_SCHEMA_FOLDER", RTU_VAR_FOLDER, OFF(er_schema_folder), NULL, 0, 0, NULL, 0,
   "`USE_AUTOMATIC_STRATEGIES` and `PROJECTIONS_CHANGES_ENABLED` are true", "folder of `erSchema.json`"},
  {"PROJECTION_CHANGES_SCHEMA_FOLDER", RTU_VAR_FOLDER, OFF(pc_schema_folder), NULL, 0, 0, NULL, 0,
   "`USE_AUTOMATIC_STRATEGIES` and `PROJECTIONS_CHANGES_ENABLED` are true",
   "folder of `projectionChangesSchema.json` and its `__fromFile__` Lua functions"},
  {"STRATEGIES_FOLDER", RTU_VAR_FOLDER, OFF(strategies_folder), NULL, 0, 0, NULL, 0, NULL,
   "hand-written strategies `NAME.lua` bound by `mapTable.json` `changes`"},
  {"STRATEGIES_MAX_EXEC_TIME_MS", RTU_VAR_INT, OFF(strategies_max_exec_ms), "5000", 1, 3600000, NULL, 0,
   NULL, "wall-clock limit of a script call (MongoDB lookup time excluded)"},
  /* Writes */
  {"USE_UPSERT", RTU_VAR_BOOL, OFF(use_upsert), "true", 0, 0, NULL, 0, NULL,
   "`false`: insert of an existing or update of a missing record is an error (forced `true` for "
   "`basic`/`db2`)"},
  {"DELETE_MECHANISM", RTU_VAR_ENUM, OFF(delete_mechanism_name), "soft", 0, 0, "soft|hard",
   RTU_VAR_ANYCASE, NULL, "`soft` (`__STATE__: DELETED`) or `hard` (forced `hard` when `USE_UPSERT=false`)"},
  {"FORCE_CHECK_ON_OFFSET", RTU_VAR_BOOL, OFF(force_check_on_offset), "true", 0, 0, NULL, 0, NULL,
   "apply a message only if its counter ≥ the stored one"},
  {"USE_POS_AS_COUNTER", RTU_VAR_BOOL, OFF(use_pos_as_counter), "true", 0, 0, NULL, 0, NULL,
   "golden-gate: `pos` is the counter (else the Kafka timestamp)"},
  /* Outputs */
  {"GENERATE_KAFKA_PROJECTION_UPDATES", RTU_VAR_BOOL, OFF(gen_kafka_pr_updates), "false", 0, 0, NULL, 0,
   NULL, "produce pr-update messages"},
  {"KAFKA_PROJECTION_UPDATES_FOLDER", RTU_VAR_FOLDER, OFF(kafka_pr_updates_folder), NULL, 0, 0, NULL, 0,
   "`GENERATE_KAFKA_PROJECTION_UPDATES` is true", "folder of `kafkaProjectionUpdates.json`"},
  {"GENERATE_KAFKA_PROJECTION_CHANGES", RTU_VAR_BOOL, OFF(gen_kafka_pc), "false", 0, 0, NULL, 0, NULL,
   "also produce projection changes to Kafka"},
  {"KAFKA_PROJECTION_CHANGES_FOLDER", RTU_VAR_FOLDER, OFF(kafka_pc_folder), NULL, 0, 0, NULL, 0,
   "`GENERATE_KAFKA_PROJECTION_CHANGES` is true", "folder of `kafkaProjectionChanges.json`"},
  {"PAUSE_TOPIC_CONSUMPTION_ON_ERROR", RTU_VAR_BOOL, OFF(pause_topic_on_error), "false", 0, 0, NULL, 0,
   NULL, "a failing message pauses its whole topic, not only its partition"},
  {"COMMIT_MESSAGE_LOGGING_INTERVAL", RTU_VAR_INT, OFF(commit_log_interval_ms), "3000", 0, 3600000, NULL,
   0, NULL, "ms between `messages committed` info lines (counts since the last one); `0`: none"},
  {"LIVENESS_INTERVAL_MS", RTU_VAR_INT, OFF(liveness_interval_ms), "30000", 1000, 3600000, NULL, 0, NULL,
   "`/-/healthz` and `/-/check-up` turn KO when the consumer loop has not polled Kafka for this long "
   "(ms)"},
  /* Additions of ours */
  {"KAFKA_CONSUMER_MAX_BATCH_SIZE", RTU_VAR_INT, OFF(kafka_max_batch), "5000", 1, 100000, NULL,
   RTU_VAR_OURS, NULL, "most messages taken in one batch"},
  /* cooperative-sticky: a rebalance moves only the partitions that change owner,
   * the others keep flowing; the eager ones stay for brokers and groups that need
   * them (librdkafka refuses a mix of the two kinds, hence no mixed value) */
  {"KAFKA_PARTITION_ASSIGNMENT_STRATEGY", RTU_VAR_ENUM, OFF(kafka_assignment_strategy),
   "cooperative-sticky", 0, 0, "cooperative-sticky|range|roundrobin|range,roundrobin", RTU_VAR_OURS, NULL,
   "partition assignment: cooperative-sticky (incremental rebalances) or the eager range, "
   "roundrobin or range,roundrobin"},
  {"LUA_RUNTIME_FOLDER", RTU_VAR_FOLDER, OFF(lua_dir), "next to the binary", 0, 0, NULL, RTU_VAR_OURS,
   NULL, "where the shipped Lua runtime (`lua/`) is"},
  {"HTTP_HOST", RTU_VAR_ADDRESS, OFF(http_host), "0.0.0.0", 0, 0, NULL, RTU_VAR_OURS, NULL,
   "address the HTTP routes bind (all interfaces, as the reference); tests and `tools/demo` use "
   "`127.0.0.1`"},
  {"PARTITION_WORKERS", RTU_VAR_INT, OFF(workers), "online CPUs (at most 16)", 1, 64, NULL,
   RTU_VAR_OURS, NULL, "partition runs applied at once, each worker with its own Lua state, MongoDB "
   "client and producer"},
  {"DEAD_LETTER_TOPIC", RTU_VAR_STRING, OFF(dead_letter_topic), NULL, 0, 0, NULL, RTU_VAR_OURS, NULL,
   "a message that cannot be applied is produced there (with `rtu.*` error headers) and its "
   "partition goes on, instead of stopping"},
  {"SCRIPTS_HOT_RELOAD", RTU_VAR_BOOL, OFF(hot_reload), "false", 0, 0, NULL, RTU_VAR_OURS, NULL,
   "watch the configuration folders and load a new script generation when a file changes "
   "(`SIGHUP` reloads in any case)"},
  /* Of the contract, not honoured */
  {"LC39_HTTP_PORT", RTU_VAR_IGNORED, NOFF, NULL, 0, 0, NULL, 0, NULL,
   "the older name of `HTTP_PORT`: rtu reads `HTTP_PORT` only"},
  {"CONTROL_PLANE_CONFIG_PATH", RTU_VAR_IGNORED, NOFF, NULL, 0, 0, NULL, 0, NULL,
   "no Runtime Management: rtu starts consuming at once, where the service starts paused until a "
   "`resume`"},
  {"CONTROL_PLANE_BINDINGS_PATH", RTU_VAR_IGNORED, NOFF, NULL, 0, 0, NULL, 0, NULL,
   "no Runtime Management bindings: every topic of `INVARIANT_TOPIC_MAP` is consumed"},
};
/* clang-format on */
const size_t rtu_config_nvars = sizeof rtu_config_vars / sizeof rtu_config_vars[0];

const rtu_var_t *rtu_config_var(const char *name) {
  for (size_t i = 0; i < rtu_config_nvars; i++)
    if (!strcmp(rtu_config_vars[i].name, name)) return &rtu_config_vars[i];
  return NULL;
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

/* ---- the table, printed ------------------------------------------------- */

static const char *type_word(const rtu_var_t *v) {
  switch (v->type) {
  case RTU_VAR_STRING: return "string";
  case RTU_VAR_BOOL: return "boolean";
  case RTU_VAR_INT: return "integer";
  case RTU_VAR_ENUM: return "one of";
  case RTU_VAR_FOLDER: return "folder";
  case RTU_VAR_JSON: return "JSON object";
  case RTU_VAR_MONGODB_URL: return "MongoDB URL";
  case RTU_VAR_BROKERS: return "host:port list";
  case RTU_VAR_ADDRESS: return "IP address";
  case RTU_VAR_IGNORED: return "not honoured";
  }
  return "";
}

static void describe_type(const rtu_var_t *v, char *buf, size_t size) {
  if (v->type == RTU_VAR_INT) snprintf(buf, size, "integer %d–%d", v->min, v->max);
  else if (v->type == RTU_VAR_ENUM) {
    size_t o = (size_t)snprintf(buf, size, "one of ");
    const char *c = v->choices;
    while (*c && o < size) {
      size_t n = strcspn(c, "|");
      o += (size_t)snprintf(buf + o, size - o, "%s`%.*s`", c == v->choices ? "" : ", ", (int)n, c);
      c += n + (c[n] == '|');
    }
  } else snprintf(buf, size, "%s", type_word(v));
}

static void describe_default(const rtu_var_t *v, char *buf, size_t size) {
  if (v->type == RTU_VAR_IGNORED) snprintf(buf, size, "–");
  else if (v->flags & RTU_VAR_REQUIRED) snprintf(buf, size, "required");
  else if (v->required_when) snprintf(buf, size, "required when %s", v->required_when);
  else if (!v->def) snprintf(buf, size, "–");
  else if (v->type == RTU_VAR_INT && v->def[0] >= '0' && v->def[0] <= '9') snprintf(buf, size, "`%s`", v->def);
  else if (v->type == RTU_VAR_INT || v->type == RTU_VAR_FOLDER) snprintf(buf, size, "%s", v->def);
  else snprintf(buf, size, "`%s`", v->def);
}

void rtu_config_print_table(FILE *f, bool markdown) {
  static const char *titles[] = {"The contract's variables, as the Fast Data Real-Time Updater reads them:",
                                 "Additions of ours:",
                                 "Of the contract, not honoured by rtu (`rtu check` and `rtu run` warn when one is set):"};
  for (int part = 0; part < 3; part++) {
    fprintf(f, "%s%s\n\n", part ? "\n" : "", titles[part]);
    if (markdown)
      fprintf(f, part == 2 ? "| variable | what rtu does instead |\n|---|---|\n"
                           : "| variable | type | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < rtu_config_nvars; i++) {
      const rtu_var_t *v = &rtu_config_vars[i];
      int p = v->type == RTU_VAR_IGNORED ? 2 : (v->flags & RTU_VAR_OURS) ? 1 : 0;
      if (p != part) continue;
      char type[256], def[256];
      describe_type(v, type, sizeof type);
      describe_default(v, def, sizeof def);
      if (markdown && part == 2) fprintf(f, "| `%s` | %s |\n", v->name, v->meaning);
      else if (markdown) fprintf(f, "| `%s` | %s | %s | %s |\n", v->name, type, def, v->meaning);
      else if (part == 2) fprintf(f, "  %-38s %s\n", v->name, v->meaning);
      else fprintf(f, "  %-38s %s; default %s\n  %-38s %s\n", v->name, type, def, "", v->meaning);
    }
  }
}

void rtu_config_unhonoured(const char *(*getenv_fn)(const char *), rtu_problems_t *problems) {
  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    const char *val = getenv_fn(v->name);
    if (v->type == RTU_VAR_IGNORED && val && *val)
      rtu_problems_at(problems, RTU_PROBLEM_WARNING, v->name, NULL, 0, 0, NULL,
                      "set, but rtu does not honour it: %s", v->meaning);
  }
}

/* ---- environment -------------------------------------------------------- */

static bool choice_ok(const rtu_var_t *v, const char *val) {
  const char *c = v->choices;
  size_t len = strlen(val);
  while (*c) {
    size_t n = strcspn(c, "|");
    if (n == len && ((v->flags & RTU_VAR_ANYCASE) ? !strncasecmp(c, val, n) : !strncmp(c, val, n)))
      return true;
    c += n + (c[n] == '|');
  }
  return false;
}

/* "a, b or c" of an enum's choices. */
static void choice_list(const rtu_var_t *v, char *buf, size_t size) {
  size_t o = 0, count = 1;
  for (const char *c = v->choices; *c; c++) count += *c == '|';
  const char *c = v->choices;
  for (size_t i = 0; *c && o < size; i++) {
    size_t n = strcspn(c, "|");
    o += (size_t)snprintf(buf + o, size - o, "%s%.*s", i == 0 ? "" : i + 1 == count ? " or " : ", ",
                          (int)n, c);
    c += n + (c[n] == '|');
  }
}

static bool is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Each comma-separated entry is host[:port] with a port from 1 to 65535. */
static bool brokers_ok(const char *val, char *why, size_t size) {
  const char *p = val;
  while (*p) {
    size_t n = strcspn(p, ",");
    const char *e = p + n, *colon = NULL;
    while (p < e && *p == ' ') p++;
    for (const char *q = p; q < e; q++)
      if (*q == ':') colon = q;
    if (p == e || colon == p) {
      snprintf(why, size, "an empty broker address");
      return false;
    }
    if (colon) {
      char *end;
      long port = strtol(colon + 1, &end, 10);
      while (end < e && *end == ' ') end++;
      if (end != e || colon + 1 == e || port < 1 || port > 65535) {
        snprintf(why, size, "'%.*s' has no port from 1 to 65535", (int)(e - p), p);
        return false;
      }
    }
    p = *e ? e + 1 : e;
  }
  return true;
}

static void quiet_mongoc(mongoc_log_level_t level, const char *domain, const char *message,
                         void *ud) {
  (void)level, (void)domain, (void)message, (void)ud;
}

static void parse_var(const rtu_var_t *v, const char *val, rtu_config_t *cfg, rtu_problems_t *pr) {
  /* An ignored variable has no field: its NOFF added to cfg overflows (UBSan). */
  if (v->type == RTU_VAR_IGNORED) return;
  void *at = (char *)cfg + v->offset;
  char why[512];
  switch (v->type) {
  case RTU_VAR_BOOL:
    if (!strcasecmp(val, "true") || !strcmp(val, "1")) *(bool *)at = true;
    else if (!strcasecmp(val, "false") || !strcmp(val, "0")) *(bool *)at = false;
    else rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                         "expected true or false, got '%s'", val);
    return;
  case RTU_VAR_INT: {
    char *end;
    errno = 0;
    long n = strtol(val, &end, 10);
    if (errno || *end || end == val || n < v->min || n > v->max)
      rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                      "expected an integer from %d to %d, got '%s'", v->min, v->max, val);
    else *(int *)at = (int)n;
    return;
  }
  case RTU_VAR_IGNORED: return;
  default: break;
  }
  char **s = at;
  free(*s);
  *s = strdup(val);
  if (v->type == RTU_VAR_ENUM && !choice_ok(v, val)) {
    choice_list(v, why, sizeof why);
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL, "expected %s, got '%s'", why, val);
  } else if (v->type == RTU_VAR_FOLDER && !is_dir(val)) {
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL, "'%s' is not a readable folder", val);
  } else if (v->type == RTU_VAR_ADDRESS) {
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, val, addr) != 1 && inet_pton(AF_INET6, val, addr) != 1)
      rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                      "expected an IPv4 or IPv6 address, got '%s'", val);
  } else if (v->type == RTU_VAR_MONGODB_URL) {
    /* libmongoc's own parser: what it refuses at start is refused here. */
    bson_error_t err;
    /* It also logs what it refuses, to stderr: the problem line says it. */
    mongoc_log_set_handler(quiet_mongoc, NULL);
    mongoc_uri_t *uri = mongoc_uri_new_with_error(val, &err);
    mongoc_log_set_handler(mongoc_log_default_handler, NULL);
    if (!uri)
      rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                      "not a MongoDB connection string (mongodb://host[:port][/?options] or "
                      "mongodb+srv://...): %s", err.message);
    mongoc_uri_destroy(uri);
  } else if (v->type == RTU_VAR_BROKERS && !brokers_ok(val, why, sizeof why)) {
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                    "expected host:port[,host:port...], %s", why);
  }
}

/* The defaults, then every variable set; an unset variable keeps its default. */
static void read_env(const char *(*getenv_fn)(const char *), const char *default_lua_dir,
                     rtu_config_t *cfg, rtu_problems_t *problems) {
  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    if (v->type == RTU_VAR_IGNORED || !v->def) continue;
    if (v->type == RTU_VAR_BOOL) *(bool *)((char *)cfg + v->offset) = !strcmp(v->def, "true");
    else if (v->type == RTU_VAR_INT) *(int *)((char *)cfg + v->offset) = atoi(v->def);
    else *(char **)((char *)cfg + v->offset) = strdup(v->def);
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = cpus > 0 && cpus < 16 ? (int)cpus : cpus > 0 ? 16 : 1;
  free(cfg->lua_dir);
  cfg->lua_dir = default_lua_dir ? strdup(default_lua_dir) : NULL;

  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    const char *val = getenv_fn(v->name);
    if (val && *val) parse_var(v, val, cfg, problems);
  }
  rtu_config_unhonoured(getenv_fn, problems);
}

/* The password grant needs the SASL username and password; the other grants of
 * OAuth are not part of the contract. Without credentials SASL is off, whatever
 * the mechanism (as in the reference). */
static void oauth_settings(const rtu_config_t *cfg, rtu_problems_t *problems) {
  if (!cfg->kafka_sasl_mechanism || strcasecmp(cfg->kafka_sasl_mechanism, "oauthbearer")) return;
  const char *url = cfg->kafka_oauth_base_url;
  if (!url && !cfg->kafka_sasl_username && !cfg->kafka_sasl_password) return;
  if (!url)
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, "KAFKA_SASL_OAUTH_BASE_URL", NULL, 0, 0, NULL,
                    "required when KAFKA_SASL_MECHANISM is oauthbearer");
  else if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, "KAFKA_SASL_OAUTH_BASE_URL", NULL, 0, 0, NULL,
                    "expected an http:// or https:// URL, got '%s'", url);
  if (!cfg->kafka_sasl_username || !cfg->kafka_sasl_password)
    rtu_problems_at(problems, RTU_PROBLEM_ERROR,
                    cfg->kafka_sasl_username ? "KAFKA_SASL_PASSWORD" : "KAFKA_SASL_USERNAME", NULL, 0,
                    0, NULL,
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required when "
                    "KAFKA_SASL_MECHANISM is oauthbearer (the password grant)");
}

static bool required_now(const rtu_var_t *v, const rtu_config_t *cfg) {
  if (v->flags & RTU_VAR_REQUIRED) return true;
  if (!v->required_when) return false;
  if (!strcmp(v->name, "PROJECTIONS_CHANGES_COLLECTION_NAME")) return cfg->pc_enabled;
  if (!strcmp(v->name, "KAFKA_ADAPTER_FOLDER")) return cfg->adapter && !strcmp(cfg->adapter, "custom");
  if (!strcmp(v->name, "ER_SCHEMA_FOLDER") || !strcmp(v->name, "PROJECTION_CHANGES_SCHEMA_FOLDER"))
    return cfg->pc_enabled && cfg->use_automatic_strategies;
  if (!strcmp(v->name, "KAFKA_PROJECTION_UPDATES_FOLDER")) return cfg->gen_kafka_pr_updates;
  if (!strcmp(v->name, "KAFKA_PROJECTION_CHANGES_FOLDER")) return cfg->gen_kafka_pc;
  return false;
}

/* What one setting implies for another, as the reference does it. */
static void settle(const char *(*getenv_fn)(const char *), rtu_config_t *cfg, rtu_problems_t *problems) {
  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    const char *val = getenv_fn(v->name);
    if ((val && *val) || !required_now(v, cfg)) continue;
    if (v->flags & RTU_VAR_REQUIRED)
      rtu_problems_at(problems, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                      "required environment variable is not set");
    else
      rtu_problems_at(problems, RTU_PROBLEM_ERROR, v->name, NULL, 0, 0, NULL,
                      "required when %s", v->required_when);
  }
  oauth_settings(cfg, problems);
  /* The basic adapter carries no operation type: every value is an upsert. */
  if (cfg->adapter && (!strcmp(cfg->adapter, "basic") || !strcmp(cfg->adapter, "db2")))
    cfg->use_upsert = true;
  cfg->delete_mechanism = cfg->delete_mechanism_name && !strcasecmp(cfg->delete_mechanism_name, "hard")
                              ? RTU_DELETE_HARD
                              : RTU_DELETE_SOFT;
  /* Without upsert a soft-deleted record would make the next insert fail. */
  if (!cfg->use_upsert) cfg->delete_mechanism = RTU_DELETE_HARD;
  if (cfg->dead_letter_topic && !*cfg->dead_letter_topic) {
    free(cfg->dead_letter_topic);
    cfg->dead_letter_topic = NULL;
  }
  const char *lua = getenv_fn("LUA_RUNTIME_FOLDER");
  if ((!lua || !*lua) && !is_dir(cfg->lua_dir))
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, "LUA_RUNTIME_FOLDER", NULL, 0, 0, NULL,
                    "Lua runtime folder '%s' not found", cfg->lua_dir ? cfg->lua_dir : "(none)");
}

rtu_config_t *rtu_config_read_env(const char *(*getenv_fn)(const char *),
                                  const char *default_lua_dir, rtu_problems_t *problems) {
  rtu_config_t *cfg = calloc(1, sizeof *cfg);
  if (!cfg) {
    rtu_problems_add(problems, "out of memory");
    return NULL;
  }
  read_env(getenv_fn, default_lua_dir, cfg, problems);
  settle(getenv_fn, cfg, problems);
  return cfg;
}

static void free_bindings(rtu_change_binding_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(b[i].single_view);
    free(b[i].strategy);
  }
  free(b);
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
  free_bindings(p->changes, p->nchanges);
  free(p->pr_update_topic);
  free_bindings(p->pc_topics, p->npc_topics);
}

void rtu_config_free(rtu_config_t *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < rtu_config_nvars; i++) {
    const rtu_var_t *v = &rtu_config_vars[i];
    if (v->type != RTU_VAR_IGNORED && v->type != RTU_VAR_BOOL && v->type != RTU_VAR_INT)
      free(*(char **)((char *)cfg + v->offset));
  }
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
