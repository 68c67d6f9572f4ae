/*
 * config_files.h: the JSON files of the configuration (INVARIANT_TOPIC_MAP,
 * mapTable.json, kafkaProjectionUpdates.json, kafkaProjectionChanges.json) read
 * into an rtu_config_t with every problem at its line and column, the whole
 * configuration's loading (config.c's variables, then these files), and the
 * helpers checker.c uses on the other JSON files.
 */
#ifndef RTU_CONFIG_FILES_H
#define RTU_CONFIG_FILES_H

#include "config.h"
#include "jsonpos.h"

/*
 * Reads the environment (through getenv_fn, so tests can pass their own) and the
 * files it names. Returns NULL when any error was found; problems (warnings too)
 * are appended to *problems either way. default_lua_dir is used when
 * LUA_RUNTIME_FOLDER is unset.
 */
rtu_config_t *rtu_config_load(const char *(*getenv_fn)(const char *),
                              const char *default_lua_dir, rtu_problems_t *problems);
/* As rtu_config_load, but returns what could be read even when there were
 * errors (NULL only when out of memory): `rtu check` goes on with it. */
rtu_config_t *rtu_config_read(const char *(*getenv_fn)(const char *),
                              const char *default_lua_dir, rtu_problems_t *problems);

/* Reads the files cfg's variables name into cfg; problems are appended. */
void rtu_config_read_files(rtu_config_t *cfg, rtu_problems_t *problems);

/* Reads and parses a JSON file: NULL with the problem at the syntax error's line
 * and column. Duplicate keys are reported as warnings (the last one wins). */
rtu_jnode_t *rtu_config_json_file(const char *path, rtu_problems_t *problems);

/* Warns about each member of obj whose name is not among known[0..n), naming the
 * closest known one. path: obj's JSON path ("" at the root). */
void rtu_config_expect_keys(rtu_problems_t *problems, const char *file, const rtu_jnode_t *obj,
                            const char *path, const char *const *known, size_t n);

/* path + "." + key into buf ("key" at the root). */
const char *rtu_config_join(char *buf, size_t size, const char *path, const char *key);

#endif
