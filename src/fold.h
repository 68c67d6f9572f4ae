/*
 * fold.h: one record's messages of a partition run, applied one by one in
 * memory as the reference applies them (a read-modify-write per message), and
 * the one write and the image that result (fold.c). batch.c owns the run (its
 * messages, reads, writes and results); this owns what happens to one record.
 */
#ifndef RTU_FOLD_H
#define RTU_FOLD_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "mapped.h"
#include "rtu.h"
#include "store.h"

typedef struct {
  const bson_t *key;
  uint32_t msg;  /* index into the run */
  bool old_key;  /* the delete half of a primary-key change */
  bool applied;  /* set by the last simulation: not stale, within the run */
} rtu_fold_event_t;

typedef struct {
  uint32_t first, count; /* events[first .. first+count) */
  bool s0_exists, s0_has_counter;
  int64_t s0_counter;
  bson_t *s0; /* the stored document, kept only when strategies need it */
} rtu_fold_group_t;

typedef enum { RTU_FOLD_ABSENT, RTU_FOLD_PUBLIC, RTU_FOLD_DELETED } rtu_fold_state_t;

/* A record's simulated state between two events: enough to build its image. */
typedef struct {
  rtu_fold_state_t state;
  bool recreated;
  int64_t last_event;
  int64_t counter;
  uint32_t fields_from;
} rtu_fold_prior_t;

typedef struct {
  rtu_fold_state_t state;
  bool recreated;    /* the stored record was hard-deleted within the run */
  int64_t last_event; /* index of the last applied event, -1 when none */
  int64_t counter;    /* of the last applied event: the one stored */
  int64_t guard;      /* highest applied counter: the write's guard */
  uint32_t fields_from; /* events of this group from which fields accumulate */
  uint32_t stale;
  bson_oid_t oid; /* _id of the record if this run creates it */
  int64_t fail_msg; /* message index that cannot be applied, -1 when none */
  const char *fail_cause;
  int32_t write; /* index of its write in the run's writes, -1 when none */
  /* The last event that one-by-one processing answers with a pr-update (the
   * record existed before or after it: not a stale message, not a delete of
   * nothing), -1 when none, and the record just before that event: the folded
   * run's pr-update is that event's. */
  int64_t pr_event;
  rtu_fold_prior_t pr_prev;
} rtu_fold_outcome_t;

/* What the fold reads of a run: the configuration, the run's events sorted by
 * record (rtu_fold_simulate marks them applied), its mapped messages and, for
 * images, the writes built. batch.c owns all four. */
typedef struct {
  const rtu_config_t *cfg;
  rtu_fold_event_t *events;
  const rtu_mapped_t *mapped;
  const rtu_write_t *writes;
} rtu_fold_run_t;

/* Applies the group's events with msg < limit one by one into *o: stale ones
 * skipped, a USE_UPSERT=false conflict noted in o->fail_msg. */
void rtu_fold_simulate(const rtu_fold_run_t *b, const rtu_fold_group_t *g, const rtu_msg_t *msgs,
                       uint32_t limit, rtu_fold_outcome_t *o);

/* The record's one write (reset and filled in *w), guarded by its counter;
 * *emit false when the run leaves nothing to write. */
void rtu_fold_build_write(const rtu_fold_run_t *b, const rtu_fold_group_t *g,
                          const rtu_fold_outcome_t *o, const rtu_msg_t *msgs, rtu_write_t *w,
                          int64_t now, bool *emit);

/* The record as stored after the run, appended to img. */
void rtu_fold_build_image(const rtu_fold_run_t *b, const rtu_fold_group_t *g,
                          const rtu_fold_outcome_t *o, const rtu_msg_t *msgs, int64_t now,
                          bson_t *img);

#endif
