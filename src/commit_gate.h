/*
 * commit_gate.h: whether the consumer may send an asynchronous offset commit
 * now, from what its group membership is doing. A commit that reaches the
 * coordinator behind this member's own JoinGroup carries the generation that
 * JoinGroup ends, is answered ILLEGAL_GENERATION, and librdkafka before 2.10
 * (issue #4059) then counts the member's whole assignment as lost: under the
 * cooperative protocol every partition it was keeping would stop and move.
 */
#ifndef RTU_COMMIT_GATE_H
#define RTU_COMMIT_GATE_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "rtu.h"

typedef struct rtu_gate_s rtu_gate_t;

/* fallback_ms: how long a hold waiting for a SyncGroup lasts at most (the
 * session timeout: a member that saw no SyncGroup by then has left the group);
 * heartbeat_ms: the heartbeat interval, which bounds the grace after an answer. */
rtu_gate_t *rtu_gate_new(int fallback_ms, int heartbeat_ms);
void rtu_gate_free(rtu_gate_t *g);

/* Watches the group requests of the client that will be made from conf
 * (librdkafka interceptors; before rd_kafka_new). g must outlive that client. */
rtu_err_t rtu_gate_watch(rtu_gate_t *g, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);

/* A request of the client was written to its socket / was answered (or failed).
 * Called by the interceptors, from librdkafka's broker threads; public for the
 * unit tests, which give the time (monotonic ms). */
void rtu_gate_request_sent(rtu_gate_t *g, int16_t api_key, int64_t now_ms);
void rtu_gate_request_done(rtu_gate_t *g, int16_t api_key, int64_t now_ms);

/* From the consumer's thread: a rejoin is coming (this member revoked partitions
 * under the cooperative protocol) or the coordinator answered a commit
 * REBALANCE_IN_PROGRESS. Commits wait for the next answered SyncGroup. */
void rtu_gate_hold_until_sync(rtu_gate_t *g, int64_t now_ms);

/* From the consumer's thread: true when an asynchronous commit may go now. */
bool rtu_gate_open(rtu_gate_t *g, int64_t now_ms);

#endif
