/*
 * testrun.h: `rtu test [--explain] PATH...`: test cases run offline through
 * rtu run's own pipeline (batch.c, stage.c, messages.c) against the in-memory
 * store, their Kafka outputs captured; `ok NAME` / `FAIL NAME` with the
 * differences, then `k/n passed`.
 */
#ifndef RTU_TESTRUN_H
#define RTU_TESTRUN_H

#include <stdbool.h>

/* Exit status: 0 every case passed, 1 one failed, 2 a configuration or case
 * file error. */
int rtu_testrun_main(int argc, char **argv, const char *default_lua_dir);

#endif
