/*
 * commit_gate.c: owns the watch of the consumer's group requests (JoinGroup,
 * SyncGroup, Heartbeat: librdkafka interceptors on its broker threads) and the
 * decision whether an asynchronous offset commit may be sent now. It neither
 * commits nor stores offsets (consumer.c does) and calls no librdkafka API from
 * the interceptors.
 *
 * Why: the coordinator handles one request of a connection at a time, so a
 * commit sent while this member's JoinGroup waits for the other members is
 * answered after it, with the generation that JoinGroup ended: ILLEGAL_GENERATION.
 * librdkafka before 2.10 (issue #4059) then counts the whole assignment as lost,
 * and under the cooperative protocol the partitions the member was keeping stop
 * and move like the others. Measured on the mock cluster, where a rebalance
 * stays open for the session timeout less one second: with a commit after every
 * batch, every cooperative move ended that way.
 *
 * A commit is therefore not sent
 * - while a JoinGroup, SyncGroup or Heartbeat of the member is in flight;
 * - for a grace after one was answered: the answer that starts a rejoin (a
 *   Heartbeat answered REBALANCE_IN_PROGRESS, a failed SyncGroup) is acted on by
 *   librdkafka's main thread a moment later, and a commit queued behind that
 *   would be built after the JoinGroup;
 * - after a cooperative revoke (librdkafka rejoins as soon as the revoke is
 *   done) or a commit answered REBALANCE_IN_PROGRESS, until the member's next
 *   SyncGroup is answered (or the fallback passes).
 * What was applied stays stored and goes with the next commit; the revoke
 * callback's own synchronous commit is not gated.
 */
#include "commit_gate.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

/* Kafka protocol request types. */
enum { API_JOIN_GROUP = 11, API_HEARTBEAT = 12, API_SYNC_GROUP = 14 };

/* A request "in flight" longer than this (a broker's JoinGroup waits for the
 * other members up to max.poll.interval.ms, 300 s by default) is taken as lost
 * without an answer, so the gate cannot stay shut for good. */
#define IN_FLIGHT_MAX_MS 330000

struct rtu_gate_s {
  int fallback_ms, grace_ms;
  /* Written by librdkafka's broker threads. */
  atomic_int in_flight;
  atomic_llong sent_at, answered_at; /* monotonic ms */
  atomic_uint syncs;                 /* SyncGroup answers, whatever their outcome */
  /* The consumer's thread only. */
  bool holding;
  unsigned hold_syncs;
  int64_t hold_until;
};

rtu_gate_t *rtu_gate_new(int fallback_ms, int heartbeat_ms) {
  rtu_gate_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->fallback_ms = fallback_ms;
  /* Long enough for librdkafka's main thread to act on an answer, short enough
   * that commits still find room between heartbeats. */
  g->grace_ms = heartbeat_ms / 5 < 100 ? heartbeat_ms / 5 : 100;
  atomic_init(&g->in_flight, 0);
  atomic_init(&g->sent_at, INT64_MIN / 2);
  atomic_init(&g->answered_at, INT64_MIN / 2);
  atomic_init(&g->syncs, 0);
  return g;
}

void rtu_gate_free(rtu_gate_t *g) { free(g); }

static bool watched(int16_t api_key) {
  return api_key == API_JOIN_GROUP || api_key == API_SYNC_GROUP || api_key == API_HEARTBEAT;
}

void rtu_gate_request_sent(rtu_gate_t *g, int16_t api_key, int64_t now_ms) {
  if (!watched(api_key)) return;
  atomic_store(&g->sent_at, now_ms);
  atomic_fetch_add(&g->in_flight, 1);
}

void rtu_gate_request_done(rtu_gate_t *g, int16_t api_key, int64_t now_ms) {
  if (!watched(api_key)) return;
  atomic_store(&g->answered_at, now_ms);
  if (api_key == API_SYNC_GROUP) atomic_fetch_add(&g->syncs, 1);
  /* A request failed before it was written is answered without having been
   * counted as sent: never below zero. */
  int n = atomic_load(&g->in_flight);
  while (n > 0 && !atomic_compare_exchange_weak(&g->in_flight, &n, n - 1)) {
  }
}

void rtu_gate_hold_until_sync(rtu_gate_t *g, int64_t now_ms) {
  g->holding = true;
  g->hold_syncs = atomic_load(&g->syncs);
  g->hold_until = now_ms + g->fallback_ms;
}

bool rtu_gate_open(rtu_gate_t *g, int64_t now_ms) {
  if (atomic_load(&g->in_flight) > 0 && now_ms - atomic_load(&g->sent_at) < IN_FLIGHT_MAX_MS)
    return false;
  if (now_ms - atomic_load(&g->answered_at) < g->grace_ms) return false;
  if (g->holding) {
    if (atomic_load(&g->syncs) == g->hold_syncs && now_ms < g->hold_until) return false;
    g->holding = false;
  }
  return true;
}

/* ---- librdkafka interceptors (broker threads) ----------------------------- */

static rd_kafka_resp_err_t on_sent(rd_kafka_t *rk, int sockfd, const char *brokername,
                                   int32_t brokerid, int16_t api_key, int16_t api_version,
                                   int32_t corr_id, size_t size, void *opaque) {
  (void)rk, (void)sockfd, (void)brokername, (void)brokerid, (void)api_version, (void)corr_id,
      (void)size;
  rtu_gate_request_sent(opaque, api_key, rtu_now_mono_ms());
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t on_answered(rd_kafka_t *rk, int sockfd, const char *brokername,
                                       int32_t brokerid, int16_t api_key, int16_t api_version,
                                       int32_t corr_id, size_t size, int64_t rtt,
                                       rd_kafka_resp_err_t err, void *opaque) {
  (void)rk, (void)sockfd, (void)brokername, (void)brokerid, (void)api_version, (void)corr_id,
      (void)size, (void)rtt, (void)err;
  rtu_gate_request_done(opaque, api_key, rtu_now_mono_ms());
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *opaque,
                                  char *errstr, size_t errstr_size) {
  (void)conf;
  rd_kafka_resp_err_t err =
      rd_kafka_interceptor_add_on_request_sent(rk, "rtu-gate", on_sent, opaque);
  if (!err)
    err = rd_kafka_interceptor_add_on_response_received(rk, "rtu-gate", on_answered, opaque);
  if (err) snprintf(errstr, errstr_size, "commit gate: %s", rd_kafka_err2str(err));
  return err;
}

rtu_err_t rtu_gate_watch(rtu_gate_t *g, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size) {
  rd_kafka_resp_err_t err = rd_kafka_conf_interceptor_add_on_new(conf, "rtu-gate", on_new, g);
  if (err) {
    snprintf(errstr, errstr_size, "commit gate: %s", rd_kafka_err2str(err));
    return RTU_ERR_FATAL;
  }
  return RTU_OK;
}
