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

typedef struct {
  char *src;  /* field name in the CDC record */
  char *dst;  /* field name in the projection document */
  char *cast; /* cast function name (inside __fromFile__[...]) */
} rtu_field_t;

typedef struct {
  char *single_view; /* the projection-change `type` */
  char *strategy;    /* strategy file name (inside __fromFile__[...]) */
} rtu_change_binding_t;

typedef struct {
  char *name;        /* key in mapTable.json and INVARIANT_TOPIC_MAP values */
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
  bool kafka_latest;
  int kafka_max_wait_ms;
  int kafka_max_batch;
  int kafka_session_timeout_ms;
  int kafka_heartbeat_interval_ms;
  int kafka_connection_timeout_ms;
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

  rtu_projection_t *projections;
  size_t nprojections;
  rtu_topic_t *topics;
  size_t ntopics;
} rtu_config_t;

/*
 * Problems found while loading: one human line each, naming the variable, file and
 * field. Loading goes on after a problem so `rtu check` can list them all.
 */
typedef struct {
  char **lines;
  size_t n, cap;
} rtu_problems_t;

void rtu_problems_add(rtu_problems_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rtu_problems_free(rtu_problems_t *p);

/*
 * Reads the environment (through getenv_fn, so tests can pass their own) and the
 * files it names. Returns NULL when any problem was found; problems are appended
 * to *problems either way. default_lua_dir is used when LUA_RUNTIME_FOLDER is unset.
 */
rtu_config_t *rtu_config_load(const char *(*getenv_fn)(const char *),
                              const char *default_lua_dir, rtu_problems_t *problems);
void rtu_config_free(rtu_config_t *cfg);

/* The projection bound to a topic, or NULL. */
const rtu_projection_t *rtu_config_projection_for_topic(const rtu_config_t *cfg,
                                                        const char *topic);

/* "__fromFile__[name]" -> "name" (malloc'd); NULL when not of that form. */
char *rtu_config_from_file_name(const char *s);

#endif
