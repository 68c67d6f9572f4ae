/*
 * config.h: the one configuration model: the environment variables of the Fast
 * Data RTU contract plus the JSON files they point to, parsed and validated in
 * config.c into one immutable rtu_config_t per generation. Lua files are validated
 * by script.c when a generation is loaded.
 */
#ifndef RTU_CONFIG_H
#define RTU_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "problems.h"

typedef struct {
  char *src;  /* field name in the CDC record */
  char *dst;  /* field name in the projection document */
  char *cast; /* cast function name (inside __fromFile__[...]) */
  int line, col; /* of the cast (or the conversion entry) in mapTable.json */
} rtu_field_t;

typedef struct {
  char *single_view; /* the projection-change `type` */
  char *strategy;    /* strategy file name (inside __fromFile__[...]) */
  int line, col;     /* in the file it comes from */
} rtu_change_binding_t;

typedef struct {
  char *name;        /* key in mapTable.json and INVARIANT_TOPIC_MAP values */
  int line, col;     /* of the name in mapTable.json */
  char *destination; /* MongoDB collection */
  rtu_field_t *fields;
  size_t nfields;
  char **pk_dst; /* fieldsInKey, in the order given: the key document's order */
  char **pk_src; /* the CDC record names of those fields */
  size_t npk;
  rtu_change_binding_t *changes;
  size_t nchanges;
  char *pr_update_topic; /* kafkaProjectionUpdates.json updatesTopic, or NULL */
  rtu_change_binding_t *pc_topics; /* kafkaProjectionChanges.json: single view -> topic */
  size_t npc_topics;
} rtu_projection_t;

typedef struct {
  char *topic;
  size_t projection; /* index into rtu_config_t.projections */
} rtu_topic_t;

typedef enum { RTU_DELETE_SOFT, RTU_DELETE_HARD } rtu_delete_t;

typedef struct rtu_config_s {
  /* Kafka */
  char *kafka_brokers;
  char *kafka_group_id;
  char *kafka_sasl_username, *kafka_sasl_password, *kafka_sasl_mechanism;
  char *ca_cert_path;
  /* KAFKA_SASL_OAUTH_*: the token endpoint when KAFKA_SASL_MECHANISM is oauthbearer */
  char *kafka_oauth_base_url, *kafka_oauth_path, *kafka_oauth_grant_type;
  char *kafka_oauth_client_id, *kafka_oauth_client_secret;
  int kafka_oauth_margin_ms;
  bool kafka_latest;
  int kafka_max_wait_ms;
  int kafka_max_batch;
  int kafka_session_timeout_ms;
  int kafka_heartbeat_interval_ms;
  int kafka_connection_timeout_ms;
  int liveness_interval_ms;
  char *producer_compression;
  char *kafka_assignment_strategy; /* partition.assignment.strategy */

  /* MongoDB */
  char *mongodb_url;
  char *projections_db;
  char *pc_collection;
  bool pc_enabled;

  /* Behaviour */
  char *system_of_records;
  char *log_level;
  int http_port;
  char *http_host; /* HTTP_HOST: the address the HTTP routes bind (0.0.0.0: all) */
  char *adapter; /* basic, db2, golden-gate, debezium, custom */
  char *adapter_folder;
  char *map_table_folder;
  char *cast_functions_folder;
  bool use_automatic_strategies;
  char *er_schema_folder;
  char *pc_schema_folder;
  char *strategies_folder;
  int strategies_max_exec_ms;
  bool log_unmapped_fields; /* LOGGING_UNMAPPED_FIELDS */
  char *unmapped_collection; /* COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE: NULL = not recorded */
  bool use_upsert;
  rtu_delete_t delete_mechanism;
  bool force_check_on_offset;
  bool use_pos_as_counter;
  bool gen_kafka_pr_updates;
  char *kafka_pr_updates_folder;
  bool gen_kafka_pc;
  char *kafka_pc_folder;
  bool pause_topic_on_error;
  char *dead_letter_topic; /* DEAD_LETTER_TOPIC: NULL = stop the partition instead */
  int workers;             /* PARTITION_WORKERS: partition runs applied at once */
  bool hot_reload;         /* SCRIPTS_HOT_RELOAD: watch the files, reload on change */
  int commit_log_interval_ms; /* COMMIT_MESSAGE_LOGGING_INTERVAL */
  char *lua_dir; /* LUA_RUNTIME_FOLDER or found next to the binary */
  char *delete_mechanism_name; /* DELETE_MECHANISM as given (delete_mechanism is its meaning) */
  char *topic_map_json;        /* INVARIANT_TOPIC_MAP as given */

  rtu_projection_t *projections;
  size_t nprojections;
  rtu_topic_t *topics;
  size_t ntopics;
} rtu_config_t;

/*
 * The configuration table: every environment variable rtu reads or knows of,
 * once. Parsing, `rtu check`, `rtu help config` and the README table come from it.
 */
typedef enum {
  RTU_VAR_STRING,
  RTU_VAR_BOOL,
  RTU_VAR_INT,
  RTU_VAR_ENUM,   /* a string among choices (case-insensitive) */
  RTU_VAR_FOLDER, /* a readable folder */
  RTU_VAR_JSON,   /* a JSON object, parsed with the files */
  RTU_VAR_MONGODB_URL,
  RTU_VAR_BROKERS,
  RTU_VAR_ADDRESS, /* an IPv4 or IPv6 address */
  RTU_VAR_IGNORED, /* of the contract, not honoured by rtu: a warning when set */
} rtu_var_type_t;

enum {
  RTU_VAR_REQUIRED = 1, /* always required */
  RTU_VAR_OURS = 2,     /* an addition of rtu, not of the contract */
  RTU_VAR_SECRET = 4,   /* never printed back */
};

typedef struct {
  const char *name;
  rtu_var_type_t type;
  size_t offset;       /* in rtu_config_t (unused for RTU_VAR_IGNORED) */
  const char *def;     /* default as text; NULL: none */
  int min, max;        /* RTU_VAR_INT */
  const char *choices; /* RTU_VAR_ENUM: "a|b|c" */
  unsigned flags;
  const char *required_when; /* the condition, in words, under which it is required */
  const char *meaning;       /* one line; for ignored ones, what rtu does instead */
} rtu_var_t;

extern const rtu_var_t rtu_config_vars[];
extern const size_t rtu_config_nvars;

/* The entry of a variable name, or NULL. */
const rtu_var_t *rtu_config_var(const char *name);

/* Prints the table as Markdown (the README's block) or as aligned text. */
void rtu_config_print_table(FILE *f, bool markdown);

/* Warnings for the variables of the contract that rtu does not honour and that
 * are set in the environment. */
void rtu_config_unhonoured(const char *(*getenv_fn)(const char *), rtu_problems_t *problems);

/* The variables alone (through getenv_fn, so tests can pass their own), every
 * problem appended; NULL only when out of memory. config_files.h's
 * rtu_config_load reads the files they name too. default_lua_dir is used when
 * LUA_RUNTIME_FOLDER is unset. */
rtu_config_t *rtu_config_read_env(const char *(*getenv_fn)(const char *),
                                  const char *default_lua_dir, rtu_problems_t *problems);
void rtu_config_free(rtu_config_t *cfg);

/* The projection bound to a topic, or NULL. */
const rtu_projection_t *rtu_config_projection_for_topic(const rtu_config_t *cfg,
                                                        const char *topic);

/* "__fromFile__[name]" -> "name" (malloc'd); NULL when not of that form. */
char *rtu_config_from_file_name(const char *s);

/* Whether the mapping notes unmapped and uncastable fields (either variable). */
static inline bool rtu_config_notes_unmapped(const rtu_config_t *cfg) {
  return cfg->log_unmapped_fields || cfg->unmapped_collection;
}

#endif
