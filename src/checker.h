/*
 * checker.h: the whole-configuration checker behind `rtu check`, the start of
 * `rtu run` and every reload: the environment, every JSON file and every Lua
 * file, each on its own and against the others, every problem at its place.
 */
#ifndef RTU_CHECKER_H
#define RTU_CHECKER_H

#include <stdbool.h>

#include "config.h"

/*
 * Checks the configuration the environment describes (through getenv_fn) and
 * appends every problem found, errors and warnings, sorted. A bad variable
 * never stops the files from being checked, nor one file's problem another's.
 * kafka_client: also build (and drop) a Kafka client from the settings, as
 * `rtu run` does at start, so what librdkafka refuses there is refused here.
 * True when no error was found.
 */
bool rtu_check(const char *(*getenv_fn)(const char *), const char *default_lua_dir,
               bool kafka_client, rtu_problems_t *problems);

/* The cross-file checks of a configuration read already (part of rtu_check). */
void rtu_check_config(const rtu_config_t *cfg, rtu_problems_t *problems);

/* Every *.lua file of every script folder compiled, every leftover .js named
 * (part of rtu_check). */
void rtu_check_lua_folders(const rtu_config_t *cfg, rtu_problems_t *problems);

#endif
