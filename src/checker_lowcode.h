/*
 * checker_lowcode.h: cross-file checks of erSchema.json, projectionChangesSchema.json
 * and kafkaProjectionChanges.json against mapTable.json (part of checker.c's run).
 */
#ifndef RTU_CHECKER_LOWCODE_H
#define RTU_CHECKER_LOWCODE_H

#include "config.h"
#include "jsonpos.h"

/* The projection of that name, or NULL. */
const rtu_projection_t *rtu_check_projection(const rtu_config_t *cfg, const char *name);

/* Projections and condition fields of erSchema.json (file: its path). */
void rtu_check_er(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *er,
                  rtu_problems_t *problems);

/* Projections, hops (against er, which may be NULL) and identifier fields of
 * projectionChangesSchema.json. */
void rtu_check_pc(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *pc,
                  const rtu_jnode_t *er, rtu_problems_t *problems);

/* The single views of kafkaProjectionChanges.json against the strategies. */
void rtu_check_kafka_pc(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *kpc,
                        const rtu_jnode_t *pc, rtu_problems_t *problems);

#endif
