/*
 * messages.h: the Kafka messages rtu produces about its writes, formatted as
 * the service it replaces formats them: pr-update v1 (one per record written)
 * and the deprecated projection-change messages (one per single view to
 * rebuild). Each call produces its messages through emit.c and waits for their
 * delivery.
 */
#ifndef RTU_MESSAGES_H
#define RTU_MESSAGES_H

#include <bson/bson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "emit.h"
#include "rtu.h"
#include "strategies.h"

/* One record a run wrote, for its pr-update message. */
typedef struct {
  const char *op;       /* "INSERT", "UPDATE" or "DELETE" */
  const bson_t *key;    /* its primary key: the message key */
  const bson_t *before; /* as stored before the run; NULL when it was not */
  const bson_t *after;  /* as stored after the run; NULL when it is gone */
  const rtu_msg_t *msg; /* the last message applied to it */
} rtu_pr_update_t;

/* Produces the pr-update messages of ups[0..n) to p's PR_UPDATE topic and waits
 * for their delivery. now: the operation timestamp (ms). RTU_ERR_TRANSIENT when
 * a message could not be delivered (the run is retried: at-least-once). */
rtu_err_t rtu_messages_pr_updates(rtu_emit_t *em, const rtu_config_t *cfg,
                                  const rtu_projection_t *p, const rtu_pr_update_t *ups, size_t n,
                                  int64_t now, char *errstr, size_t errstr_size);

/* Produces the projection-change messages of ids[0..n) (key = identifier) to the
 * topics p's configuration names per single view, and waits for their delivery;
 * named[d] is the message that the changes found from document d name. */
rtu_err_t rtu_messages_pcs(rtu_emit_t *em, const rtu_projection_t *p, const rtu_identified_t *ids,
                           size_t n, const rtu_msg_t *const *named, char *errstr,
                           size_t errstr_size);

#endif
