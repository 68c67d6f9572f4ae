/*
 * test_commit_gate.c: src/commit_gate.c, driven with explicit times: shut while
 * a JoinGroup, SyncGroup or Heartbeat is in flight and for the grace after its
 * answer, open for other requests; a hold after a cooperative revoke or a
 * REBALANCE_IN_PROGRESS answer lasts until the next answered SyncGroup or the
 * fallback; the grace is bounded by the heartbeat interval; an answer without a
 * send does not leave the count below zero; and on a real librdkafka handle the
 * interceptors see the requests (a consumer joining a group on the development
 * cluster is watched through its JoinGroup and SyncGroup).
 */
#define _GNU_SOURCE
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "commit_gate.h"
#include "util.h"

enum { JOIN = 11, HEARTBEAT = 12, SYNC = 14, FETCH = 1, OFFSET_COMMIT = 8 };

static void in_flight_and_grace(void) {
  rtu_gate_t *g = rtu_gate_new(6000, 3000); /* grace 100 ms */
  CHECK(rtu_gate_open(g, 1000));
  rtu_gate_request_sent(g, FETCH, 1000);
  rtu_gate_request_sent(g, OFFSET_COMMIT, 1000);
  CHECK(rtu_gate_open(g, 1001), "fetches and commits do not shut the gate");
  rtu_gate_request_sent(g, JOIN, 1000);
  CHECK(!rtu_gate_open(g, 1001));
  CHECK(!rtu_gate_open(g, 60000), "a JoinGroup may wait for the other members for minutes");
  rtu_gate_request_done(g, JOIN, 60000);
  CHECK(!rtu_gate_open(g, 60050), "the grace after the answer");
  CHECK(rtu_gate_open(g, 60100));
  rtu_gate_request_sent(g, HEARTBEAT, 61000);
  CHECK(!rtu_gate_open(g, 61001));
  rtu_gate_request_done(g, HEARTBEAT, 61002);
  CHECK(!rtu_gate_open(g, 61101));
  CHECK(rtu_gate_open(g, 61102));
  /* a JoinGroup whose answer never came does not shut the gate for good */
  rtu_gate_request_sent(g, JOIN, 70000);
  CHECK(!rtu_gate_open(g, 70000 + 329999));
  CHECK(rtu_gate_open(g, 70000 + 330000));
  rtu_gate_free(g);
}

static void never_below_zero(void) {
  rtu_gate_t *g = rtu_gate_new(6000, 3000);
  rtu_gate_request_done(g, SYNC, 1000); /* failed before it was written */
  rtu_gate_request_sent(g, JOIN, 2000);
  CHECK(!rtu_gate_open(g, 2500), "the JoinGroup counts even after an unmatched answer");
  rtu_gate_request_done(g, JOIN, 2600);
  CHECK(rtu_gate_open(g, 2700));
  rtu_gate_free(g);
}

static void hold_until_sync(void) {
  rtu_gate_t *g = rtu_gate_new(6000, 3000);
  rtu_gate_hold_until_sync(g, 1000);
  CHECK(!rtu_gate_open(g, 1500), "a revoke: the rejoin is coming");
  rtu_gate_request_sent(g, JOIN, 1600);
  rtu_gate_request_done(g, JOIN, 2000);
  CHECK(!rtu_gate_open(g, 2500), "the JoinGroup answered, the SyncGroup not yet");
  rtu_gate_request_sent(g, SYNC, 2500);
  rtu_gate_request_done(g, SYNC, 2501);
  CHECK(!rtu_gate_open(g, 2550));
  CHECK(rtu_gate_open(g, 2601), "the SyncGroup answered: the rebalance is over");
  CHECK(rtu_gate_open(g, 5000));
  /* without a SyncGroup, the fallback */
  rtu_gate_hold_until_sync(g, 10000);
  CHECK(!rtu_gate_open(g, 15999));
  CHECK(rtu_gate_open(g, 16000));
  rtu_gate_free(g);
}

static void grace_bounded_by_heartbeat(void) {
  rtu_gate_t *g = rtu_gate_new(6000, 100); /* grace 20 ms */
  rtu_gate_request_sent(g, HEARTBEAT, 1000);
  rtu_gate_request_done(g, HEARTBEAT, 1001);
  CHECK(!rtu_gate_open(g, 1020));
  CHECK(rtu_gate_open(g, 1021), "commits still fit between 100 ms heartbeats");
  rtu_gate_free(g);
}

/* A consumer joining a group on librdkafka's mock cluster: its JoinGroup and
 * SyncGroup go through the interceptors (the gate's SyncGroup count moves, so
 * a hold taken before the join ends with it). */
static void watched_on_a_real_handle(void) {
  char errstr[512];
  rd_kafka_conf_t *mconf = rd_kafka_conf_new();
  rd_kafka_conf_set(mconf, "log_level", "0", errstr, sizeof errstr);
  rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, errstr, sizeof errstr);
  CHECK(mrk != NULL, "%s", errstr);
  if (!mrk) return;
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mrk, 1);
  CHECK(mc != NULL);
  rd_kafka_mock_topic_create(mc, "gate.t", 2, 1);

  rtu_gate_t *g = rtu_gate_new(30000, 3000);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), errstr,
                    sizeof errstr);
  rd_kafka_conf_set(conf, "group.id", "gate", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr,
                    sizeof errstr);
  CHECK(rtu_gate_watch(g, conf, errstr, sizeof errstr) == RTU_OK, "%s", errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  CHECK(rk != NULL, "%s", errstr);
  if (rk) {
    rtu_gate_hold_until_sync(g, rtu_now_mono_ms());
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, "gate.t", RD_KAFKA_PARTITION_UA);
    CHECK(rd_kafka_subscribe(rk, t) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(t);
    /* the mock cluster's first join waits 3 s for more members */
    bool opened = false;
    for (int i = 0; i < 300 && !opened; i++) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
      if (m) rd_kafka_message_destroy(m);
      opened = rtu_gate_open(g, rtu_now_mono_ms());
    }
    CHECK(opened, "no SyncGroup seen by the interceptors in 30 s");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  rtu_gate_free(g);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(mrk);
}

int main(void) {
  in_flight_and_grace();
  never_below_zero();
  hold_until_sync();
  grace_bounded_by_heartbeat();
  watched_on_a_real_handle();
  return CHECK_DONE();
}
