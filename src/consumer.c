/*
 * consumer.c: owns the librdkafka consumer: group membership, rebalances, the
 * batch poll, the state of every assigned partition (running, stopped at a
 * message, paused for an outage), pause/resume/seek, the dead-letter producer,
 * and offsets. Offsets are stored by hand (enable.auto.offset.store=false) only up
 * to what a run applied, and committed after every batch, so a crash at any point
 * redelivers, never skips. It does not decode messages (batch.c and script.c do)
 * and it does not apply them (the pool's workers do).
 *
 * Why outages pause instead of retrying in place: the loop must keep polling, or
 * the group evicts the member after max.poll.interval.ms and every partition moves.
 * A partition whose run could not reach MongoDB or Kafka is paused and sought back
 * to the run's first message; the loop pings MongoDB with a growing backoff and
 * resumes them all when it answers. Fetching stops for paused partitions, so
 * memory stays bounded by librdkafka's prefetch limits.
 */
#include "consumer.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commit_gate.h"
#include "emit.h"
#include "health.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "metrics_client.h"
#include "oauth.h"
#include "util.h"

typedef enum { PART_RUNNING, PART_STOPPED, PART_OUTAGE } part_state_t;

/* One assigned partition. */
typedef struct {
  char *topic;
  int32_t partition;
  size_t projection;
  part_state_t state;
  int64_t next; /* the next offset to apply; -1 until a message was seen */
  /* While the partition waits on an outage: the pr-updates of its messages below
   * this were acknowledged by a try that then failed, and are not produced again. */
  int64_t outputs_done;
  char cause[RTU_ERRSTR_SIZE];
  /* Scratch of refetch_purged: the poll whose messages of this partition are
   * dropped (fetched again), and where its messages of a poll got to. */
  uint64_t refetch_poll;
  int64_t poll_next;
} part_t;

struct rtu_consumer_s {
  const rtu_config_t *cfg;
  rd_kafka_t *rk;
  rd_kafka_queue_t *queue;
  rtu_emit_t *dead_letters; /* NULL unless DEAD_LETTER_TOPIC is set */
  part_t *parts;
  size_t nparts, parts_cap;
  rd_kafka_message_t **msgs;
  rtu_msg_t *views;
  rtu_job_t *jobs;
  rd_kafka_message_t **job_first; /* the first message of each job */
  size_t msgs_cap;
  int64_t *stamps;            /* the Kafka timestamps of a run, for rtu_freshness_seconds */
  int64_t settled_at;         /* epoch ms when the poll's writes were all acknowledged */
  rtu_gate_t *gate;           /* when an asynchronous commit may go (commit_gate.c) */
  bool commit_pending;        /* offsets stored since the last commit sent */
  bool rebalanced;            /* a rebalance callback ran during this poll */
  uint64_t polls;
  int64_t outage_retry_at; /* monotonic ms; 0 when no partition waits on an outage */
  int outage_backoff_ms;
  int64_t kafka_check_at;
  /* What was committed since the last "messages committed" line. */
  size_t since_applied, since_stale, since_skipped, since_failed;
  int64_t commit_logged_at;
  /* Who closes the Kafka handle: CLOSE_NONE until the loop's final commit
   * (CLOSE_LOOP) or a shutdown past its deadline (CLOSE_ABANDON) takes it. */
  atomic_int closer;
};

enum { CLOSE_NONE, CLOSE_LOOP, CLOSE_ABANDON };

/* ---- partitions ---------------------------------------------------------- */

static part_t *find_part(rtu_consumer_t *c, const char *topic, int32_t partition) {
  for (size_t i = 0; i < c->nparts; i++)
    if (c->parts[i].partition == partition && !strcmp(c->parts[i].topic, topic)) return &c->parts[i];
  return NULL;
}

static void publish_part(const part_t *p) {
  rtu_metrics_partition(p->topic, p->partition, -1, p->state != PART_RUNNING);
}

static void add_part(rtu_consumer_t *c, const char *topic, int32_t partition) {
  if (find_part(c, topic, partition)) return;
  if (c->nparts == c->parts_cap) {
    size_t cap = c->parts_cap ? c->parts_cap * 2 : 16;
    part_t *np = realloc(c->parts, cap * sizeof *np);
    if (!np) {
      rtu_log(RTU_LOG_FATAL, "out of memory tracking partitions", NULL);
      abort();
    }
    c->parts = np;
    c->parts_cap = cap;
  }
  part_t *p = &c->parts[c->nparts];
  *p = (part_t){.topic = strdup(topic), .partition = partition, .state = PART_RUNNING, .next = -1,
                .outputs_done = -1};
  if (!p->topic) {
    rtu_log(RTU_LOG_FATAL, "out of memory tracking partitions", NULL);
    abort();
  }
  for (size_t t = 0; t < c->cfg->ntopics; t++)
    if (!strcmp(c->cfg->topics[t].topic, topic)) p->projection = c->cfg->topics[t].projection;
  c->nparts++;
  publish_part(p);
}

static void remove_part(rtu_consumer_t *c, const char *topic, int32_t partition) {
  part_t *p = find_part(c, topic, partition);
  if (!p) return;
  if (p->state == PART_STOPPED) rtu_health_partition_resumed(p->topic, p->partition);
  rtu_metrics_partition_forget(p->topic, p->partition);
  free(p->topic);
  *p = c->parts[--c->nparts];
}

static void set_assigned_gauge(rtu_consumer_t *c) {
  rtu_metrics_set(RTU_G_ASSIGNED_PARTITIONS, (double)c->nparts);
}

/* Pause, then seek (in that order: librdkafka #3471), so the next fetch after a
 * resume starts at offset. offset < 0: leave the position as it is. */
static void pause_at(rtu_consumer_t *c, part_t *p, int64_t offset) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
  rd_kafka_resp_err_t err = rd_kafka_pause_partitions(c->rk, l);
  if (err || l->elems[0].err)
    rtu_log(RTU_LOG_ERROR, "pause failed", "topic", p->topic, "cause",
            rd_kafka_err2str(err ? err : l->elems[0].err), NULL);
  if (offset >= 0) {
    l->elems[0].offset = offset;
    /* With a timeout, no message fetched before the seek is handed out after it. */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
    if (e) {
      rtu_log(RTU_LOG_ERROR, "seek failed", "topic", p->topic, "cause", rd_kafka_error_string(e),
              NULL);
      rd_kafka_error_destroy(e);
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* Resumes from p->next when known: messages dropped while the partition was held
 * (fetched before the pause took effect) are fetched again. */
static void resume(rtu_consumer_t *c, part_t *p) {
  if (p->next >= 0) pause_at(c, p, p->next);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
  rd_kafka_resp_err_t err = rd_kafka_resume_partitions(c->rk, l);
  if (err || l->elems[0].err)
    rtu_log(RTU_LOG_ERROR, "resume failed", "topic", p->topic, "cause",
            rd_kafka_err2str(err ? err : l->elems[0].err), NULL);
  rd_kafka_topic_partition_list_destroy(l);
  if (p->state == PART_STOPPED) rtu_health_partition_resumed(p->topic, p->partition);
  p->state = PART_RUNNING;
  p->cause[0] = '\0';
  publish_part(p);
}

/* Stops a partition at offset with its cause: paused, sought back so a resume
 * starts there, and shown in check-up. */
static void stop_part(rtu_consumer_t *c, part_t *p, int64_t offset, const char *cause) {
  p->state = PART_STOPPED;
  if (offset >= 0) p->next = offset;
  snprintf(p->cause, sizeof p->cause, "%s", cause);
  pause_at(c, p, p->next);
  rtu_health_partition_stopped(p->topic, p->partition, p->next, p->cause);
  publish_part(p);
}

static void stop_partition(rtu_consumer_t *c, part_t *p, const rtu_run_result_t *res) {
  char part[16], off[24];
  snprintf(part, sizeof part, "%d", p->partition);
  snprintf(off, sizeof off, "%lld", (long long)res->fail_offset);
  rtu_log(RTU_LOG_ERROR, "message cannot be applied; partition stopped at it", "topic", p->topic,
          "#partition", part, "#offset", off, "kind", rtu_err_name(res->err), "cause", res->cause,
          NULL);
  stop_part(c, p, res->fail_offset, res->cause);
  if (!c->cfg->pause_topic_on_error) return;
  char cause[RTU_ERRSTR_SIZE];
  snprintf(cause, sizeof cause, "topic paused: partition %d stopped at offset %lld", p->partition,
           (long long)res->fail_offset);
  for (size_t i = 0; i < c->nparts; i++) {
    part_t *q = &c->parts[i];
    if (q != p && q->state == PART_RUNNING && !strcmp(q->topic, p->topic)) stop_part(c, q, -1, cause);
  }
}

/* After a new script generation: every stopped partition is retried from the
 * message it stopped at. */
static size_t resume_stopped(rtu_consumer_t *c) {
  size_t n = 0;
  for (size_t i = 0; i < c->nparts; i++) {
    part_t *p = &c->parts[i];
    if (p->state != PART_STOPPED) continue;
    char part[16];
    snprintf(part, sizeof part, "%d", p->partition);
    rtu_log(RTU_LOG_INFO, "partition resumed by a new script generation", "topic", p->topic,
            "#partition", part, NULL);
    resume(c, p);
    n++;
  }
  return n;
}

/* ---- librdkafka callbacks ------------------------------------------------ */

/* Assigned partitions start running, even one paused in an earlier assignment. */
static void on_assigned(rtu_consumer_t *c, rd_kafka_topic_partition_list_t *parts,
                        bool cooperative) {
  if (cooperative) {
    rd_kafka_error_t *e = rd_kafka_incremental_assign(c->rk, parts);
    if (e) {
      rtu_log(RTU_LOG_ERROR, "incremental assign failed", "cause", rd_kafka_error_string(e), NULL);
      rd_kafka_error_destroy(e);
    }
  } else {
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, parts);
    if (e) rtu_log(RTU_LOG_ERROR, "assign failed", "cause", rd_kafka_err2str(e), NULL);
  }
  rd_kafka_resp_err_t e = rd_kafka_resume_partitions(c->rk, parts);
  if (e) rtu_log(RTU_LOG_WARN, "resume after assign failed", "cause", rd_kafka_err2str(e), NULL);
  for (int i = 0; i < parts->cnt; i++) add_part(c, parts->elems[i].topic, parts->elems[i].partition);
  set_assigned_gauge(c);
  rtu_health_joined(true);
  rtu_metrics_client_rebalance_end();
}

/* Revoked partitions: what was applied is committed before they go to another
 * member. The poll loop calls librdkafka only between batches, so no run of
 * theirs is in flight here. Eager: every partition is revoked; cooperative: only
 * those that move, and the others keep their state and keep flowing. */
static void on_revoked(rtu_consumer_t *c, rd_kafka_topic_partition_list_t *parts,
                       bool cooperative) {
  rtu_metrics_client_rebalance_begin();
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
  /* A lost assignment (session timed out) has already gone to others: a commit
   * would be refused. */
  if (!rd_kafka_assignment_lost(c->rk)) e = rd_kafka_commit(c->rk, NULL, 0);
  if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "commit on revoke failed; the new owner may redeliver", "cause",
            rd_kafka_err2str(e), NULL);
  /* When a shutdown abandons the loop, its thread (stuck in a run) still owns the
   * partitions' state: only leave. */
  if (atomic_load(&c->closer) != CLOSE_ABANDON) {
    for (int i = 0; i < parts->cnt; i++)
      remove_part(c, parts->elems[i].topic, parts->elems[i].partition);
    set_assigned_gauge(c);
  }
  if (cooperative) {
    rd_kafka_error_t *err = rd_kafka_incremental_unassign(c->rk, parts);
    if (err) {
      rtu_log(RTU_LOG_ERROR, "incremental unassign failed", "cause", rd_kafka_error_string(err),
              NULL);
      rd_kafka_error_destroy(err);
    }
    return;
  }
  e = rd_kafka_assign(c->rk, NULL);
  if (e) rtu_log(RTU_LOG_ERROR, "unassign failed", "cause", rd_kafka_err2str(e), NULL);
}

/* "t[0],t[1]": a partition list for the log. */
static void format_parts(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < parts->cnt && len + 64 < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%s[%d]", i ? "," : "", parts->elems[i].topic,
                            parts->elems[i].partition);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  rtu_consumer_t *c = opaque;
  char list[1024], whole[1024];
  c->rebalanced = true;
  format_parts(parts, list, sizeof list);
  bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    /* lost: the group gave them to others already (session timeout, a refused
     * generation), not a revoke the member took part in. */
    bool lost = rd_kafka_assignment_lost(rk);
    rtu_log(RTU_LOG_INFO, "partitions revoked", "partitions", list, "protocol",
            cooperative ? "cooperative" : "eager", "#lost", lost ? "true" : "false", NULL);
    on_revoked(c, parts, cooperative);
    /* librdkafka rejoins as soon as a cooperative revoke is done. */
    if (cooperative && parts->cnt) rtu_gate_hold_until_sync(c->gate, rtu_now_mono_ms());
    return;
  }
  on_assigned(c, parts, cooperative);
  /* "partitions" is the whole assignment after the change under either protocol
   * ("added": what this rebalance brought). */
  rd_kafka_topic_partition_list_t *now = NULL;
  if (!cooperative || rd_kafka_assignment(rk, &now) || !now) {
    rtu_log(RTU_LOG_INFO, "partitions assigned", "partitions", list, "protocol",
            cooperative ? "cooperative" : "eager", NULL);
  } else {
    rd_kafka_topic_partition_list_sort(now, NULL, NULL);
    format_parts(now, whole, sizeof whole);
    rtu_log(RTU_LOG_INFO, "partitions assigned", "partitions", whole, "added", list, "protocol",
            "cooperative", NULL);
  }
  if (now) rd_kafka_topic_partition_list_destroy(now);
}

/* A commit refused because the group is rebalancing (the mock cluster answers
 * so while it waits for members to rejoin; a broker while it waits for
 * SyncGroups): no asynchronous commit until this member's next SyncGroup is
 * answered (commit_gate.c says why). What was applied stays stored and goes with
 * the next commit, or with the commit of the revoke callback. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  (void)rk;
  rtu_consumer_t *c = opaque;
  bool rebalancing = err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
  for (int i = 0; offsets && i < offsets->cnt && !rebalancing; i++)
    rebalancing = offsets->elems[i].err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
  if (rebalancing) rtu_gate_hold_until_sync(c->gate, rtu_now_mono_ms());
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  (void)opaque;
  rtu_metrics_kafka_stats(json, len);
  return 0; /* librdkafka frees json */
}

/* ---- life ---------------------------------------------------------------- */

/* The consumer's own settings on top of the shared ones (kafka.c). */
static bool consumer_conf(const rtu_config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                          size_t errstr_size) {
  char batch[32], session[32], heartbeat[32], wait[32];
  /* Queued messages cost a few hundred bytes each beyond their payload (not
   * counted by queued.max.messages.kbytes): librdkafka's default of 100,000 lets
   * small messages take tens of MiB. Two batches keep the workers fed. */
  snprintf(batch, sizeof batch, "%d", cfg->kafka_max_batch < 500 ? 1000 : 2 * cfg->kafka_max_batch);
  snprintf(session, sizeof session, "%d", cfg->kafka_session_timeout_ms);
  snprintf(heartbeat, sizeof heartbeat, "%d", cfg->kafka_heartbeat_interval_ms);
  snprintf(wait, sizeof wait, "%d", cfg->kafka_max_wait_ms);
  const char *settings[][2] = {
      {"group.id", cfg->kafka_group_id},
      {"client.id", "rtu"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", cfg->kafka_latest ? "latest" : "earliest"},
      {"enable.partition.eof", "false"},
      {"statistics.interval.ms", "5000"},
      /* Prefetch bounds memory whatever the backlog (librdkafka's default: 64 MiB). */
      {"queued.max.messages.kbytes", "16384"},
      /* The prefetch bounds only decide whether to fetch again: one fetch response
       * is queued whole beyond them, and its limits count compressed bytes, so
       * librdkafka's 50 MiB (1 MiB per partition) of lz4 batches held a whole
       * backlog of small messages. 1 MiB compressed per fetch (message.max.bytes
       * is the floor) still brings thousands of messages per round trip. */
      {"fetch.max.bytes", "1048576"},
      {"max.partition.fetch.bytes", "262144"},
      {"queued.min.messages", batch},
      {"session.timeout.ms", session},
      {"heartbeat.interval.ms", heartbeat},
      /* KAFKA_CONSUMER_MAX_WAIT_TIME is, as in kafkajs, the broker's fetch wait:
       * with fetch.min.bytes 1 a broker answers as soon as data is there, so the
       * wait costs nothing while messages flow and bounds idle fetches otherwise. */
      {"fetch.wait.max.ms", wait},
      {"partition.assignment.strategy", cfg->kafka_assignment_strategy},
  };
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
    if (!rtu_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr, errstr_size))
      return false;
  return true;
}

rtu_consumer_t *rtu_consumer_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size) {
  rtu_consumer_t *c = calloc(1, sizeof *c);
  rd_kafka_conf_t *conf = NULL;
  errstr[0] = '\0';
  if (!c) goto fail;
  c->cfg = cfg;
  c->outage_backoff_ms = 100;
  c->gate = rtu_gate_new(cfg->kafka_session_timeout_ms, cfg->kafka_heartbeat_interval_ms);
  if (!c->gate) goto fail;
  conf = rtu_kafka_conf_new(cfg, RTU_KAFKA_CONSUMER, errstr, errstr_size);
  if (!conf || !consumer_conf(cfg, conf, errstr, errstr_size) ||
      rtu_gate_watch(c->gate, conf, errstr, errstr_size) != RTU_OK)
    goto fail;
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
  rd_kafka_conf_set_opaque(conf, c);

  c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
  if (!c->rk) goto fail;
  conf = NULL; /* owned by rk now */
  if (rtu_oauth_start(c->rk, errstr, errstr_size) != RTU_OK) goto fail;
  rd_kafka_poll_set_consumer(c->rk);
  c->queue = rd_kafka_queue_get_consumer(c->rk);

  if (cfg->dead_letter_topic) {
    c->dead_letters = rtu_emit_new_producer(cfg, errstr, errstr_size);
    if (!c->dead_letters) goto fail;
  }

  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)cfg->ntopics);
  for (size_t i = 0; i < cfg->ntopics; i++)
    rd_kafka_topic_partition_list_add(topics, cfg->topics[i].topic, RD_KAFKA_PARTITION_UA);
  rtu_metrics_client_rebalance_begin(); /* joining is the first rebalance */
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) {
    snprintf(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(err));
    goto fail;
  }
  c->msgs_cap = (size_t)cfg->kafka_max_batch;
  c->msgs = calloc(c->msgs_cap, sizeof *c->msgs);
  c->views = calloc(c->msgs_cap, sizeof *c->views);
  c->jobs = calloc(c->msgs_cap, sizeof *c->jobs);
  c->job_first = calloc(c->msgs_cap, sizeof *c->job_first);
  c->stamps = calloc(c->msgs_cap, sizeof *c->stamps);
  if (!c->msgs || !c->views || !c->jobs || !c->job_first || !c->stamps) goto fail;
  return c;
fail:
  if (!errstr[0]) snprintf(errstr, errstr_size, "out of memory");
  if (conf) rd_kafka_conf_destroy(conf);
  rtu_consumer_free(c);
  return NULL;
}

void rtu_consumer_free(rtu_consumer_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nparts; i++) free(c->parts[i].topic);
  free(c->parts);
  if (c->queue) rd_kafka_queue_destroy(c->queue);
  if (c->rk) rd_kafka_destroy(c->rk);
  rtu_gate_free(c->gate); /* after the handle: its interceptors hold it */
  rtu_emit_free(c->dead_letters);
  free(c->msgs);
  free(c->views);
  free(c->jobs);
  free(c->job_first);
  free(c->stamps);
  free(c);
}

/* ---- the loop ------------------------------------------------------------ */

static void store_offset(rtu_consumer_t *c, const part_t *p, int64_t next) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = next;
  rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
  if (err || l->elems[0].err)
    rtu_log(RTU_LOG_WARN, "offset store failed (partition revoked?)", "topic", p->topic, "cause",
            rd_kafka_err2str(err ? err : l->elems[0].err), NULL);
  rd_kafka_topic_partition_list_destroy(l);
}

/* Within one batch, a partition's messages may come in several stretches: gather
 * them (offset order kept) so each partition makes one run, one bulk. */
static int msg_cmp(const void *pa, const void *pb) {
  const rd_kafka_message_t *a = *(rd_kafka_message_t *const *)pa;
  const rd_kafka_message_t *b = *(rd_kafka_message_t *const *)pb;
  if (a->err || b->err) return (a->err != 0) - (b->err != 0);
  /* One handle per topic (build_jobs groups by it): names are compared only
   * across topics, not for most of a poll's comparisons. */
  if (a->rkt != b->rkt) {
    int c = strcmp(rd_kafka_topic_name(a->rkt), rd_kafka_topic_name(b->rkt));
    if (c) return c;
  }
  if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* A commit the gate holds back stays pending: it goes with the next batch's, or
 * from the loop when no message comes. */
static void commit_async(rtu_consumer_t *c) {
  if (!rtu_gate_open(c->gate, rtu_now_mono_ms())) return;
  c->commit_pending = false;
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 1);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "commit failed; will be retried with the next batch", "cause",
            rd_kafka_err2str(err), NULL);
}

/* The reference's periodic info line (COMMIT_MESSAGE_LOGGING_INTERVAL): one line
 * per interval with what happened, never one per message. */
static void log_committed(rtu_consumer_t *c) {
  int64_t now = rtu_now_mono_ms();
  if (!c->cfg->commit_log_interval_ms || now - c->commit_logged_at < c->cfg->commit_log_interval_ms)
    return;
  c->commit_logged_at = now;
  if (!c->since_applied && !c->since_stale && !c->since_skipped && !c->since_failed) return;
  char counts[160];
  snprintf(counts, sizeof counts, "{\"applied\":%zu,\"stale\":%zu,\"skipped\":%zu,\"failed\":%zu}",
           c->since_applied, c->since_stale, c->since_skipped, c->since_failed);
  rtu_log(RTU_LOG_INFO, "messages committed", "#counts", counts, NULL);
  c->since_applied = c->since_stale = c->since_skipped = c->since_failed = 0;
}

/* While some partition waits on an outage: ping MongoDB with a growing backoff
 * and resume them all when it answers. A Kafka outage resolves the same way: the
 * resumed runs fail again and pause again, with a longer wait. */
static void retry_outage(rtu_consumer_t *c, rtu_pool_t *pool) {
  if (!c->outage_retry_at || rtu_now_mono_ms() < c->outage_retry_at) return;
  char err[RTU_ERRSTR_SIZE];
  /* The store reports MongoDB's state to health.c itself, on every command. */
  if (rtu_store_ping(rtu_pool_store(pool), err, sizeof err) != RTU_OK) {
    c->outage_backoff_ms = c->outage_backoff_ms < 5000 ? c->outage_backoff_ms * 2 : 5000;
    c->outage_retry_at = rtu_now_mono_ms() + c->outage_backoff_ms;
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < c->nparts; i++)
    if (c->parts[i].state == PART_OUTAGE) {
      resume(c, &c->parts[i]);
      n++;
    }
  char num[16];
  snprintf(num, sizeof num, "%zu", n);
  rtu_log(RTU_LOG_INFO, "dependencies answer again; partitions resumed", "#partitions", num, NULL);
  c->outage_retry_at = 0;
}

static void on_transient(rtu_consumer_t *c, part_t *p, int64_t first, const char *cause,
                         bool kafka) {
  if (!c->outage_retry_at)
    rtu_log(RTU_LOG_WARN, "MongoDB or Kafka unavailable; pausing the partitions it holds back",
            "topic", p->topic, "cause", cause, NULL);
  rtu_metrics_add(RTU_C_TRANSIENT_ERRORS, kafka ? "kafka" : "mongodb", 1);
  /* MongoDB's state is the store's to report; the producer's is not seen elsewhere. */
  if (kafka) rtu_health_dependency(RTU_DEP_KAFKA, false, cause);
  p->state = PART_OUTAGE;
  p->next = first;
  snprintf(p->cause, sizeof p->cause, "%s", cause);
  pause_at(c, p, first);
  publish_part(p);
  if (!c->outage_retry_at) {
    c->outage_retry_at = rtu_now_mono_ms() + c->outage_backoff_ms;
  } else {
    c->outage_backoff_ms = c->outage_backoff_ms < 5000 ? c->outage_backoff_ms * 2 : 5000;
  }
}

/* DEAD_LETTER_TOPIC: the failing message is recorded there and the partition goes
 * on after it. Returns false when it could not be recorded (then it stops). */
static bool dead_letter(rtu_consumer_t *c, part_t *p, const rtu_msg_t *msg,
                        const rtu_run_result_t *res) {
  char err[RTU_ERRSTR_SIZE], part[16], off[24];
  rtu_err_t rc = rtu_emit_dead_letter(c->dead_letters, c->cfg->dead_letter_topic, msg, res->err,
                                      res->cause, err, sizeof err);
  snprintf(part, sizeof part, "%d", p->partition);
  snprintf(off, sizeof off, "%lld", (long long)msg->offset);
  if (rc != RTU_OK) {
    rtu_log(RTU_LOG_ERROR, "cannot record a message on the dead-letter topic", "topic", p->topic,
            "#partition", part, "#offset", off, "cause", err, NULL);
    return false;
  }
  rtu_log(RTU_LOG_WARN, "message cannot be applied; recorded on the dead-letter topic", "topic",
          p->topic, "#partition", part, "#offset", off, "kind", rtu_err_name(res->err), "cause",
          res->cause, "deadLetterTopic", c->cfg->dead_letter_topic, NULL);
  rtu_metrics_add(RTU_C_DEAD_LETTERED, p->topic, 1);
  return true;
}

/* When Kafka looked down: a metadata request tells whether it answers again. */
static void check_kafka(rtu_consumer_t *c) {
  int64_t now = rtu_now_mono_ms();
  if (now < c->kafka_check_at) return;
  c->kafka_check_at = now + 2000;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, NULL, &md, 1000);
  if (!err) {
    rd_kafka_metadata_destroy(md);
    rtu_health_dependency(RTU_DEP_KAFKA, true, NULL);
  } else {
    rtu_health_dependency(RTU_DEP_KAFKA, false, rd_kafka_err2str(err));
  }
}

/* Builds the jobs of a sorted batch: one per running partition, messages already
 * applied (redelivered) left out. Messages of paused partitions are dropped: they
 * are fetched again from their stop offset when resumed. */
static size_t build_jobs(rtu_consumer_t *c, size_t n) {
  size_t njobs = 0, i = 0;
  while (i < n) {
    rd_kafka_message_t *first = c->msgs[i];
    if (first->err) {
      if (first->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        rtu_log(RTU_LOG_WARN, "consumer error", "cause", rd_kafka_message_errstr(first), NULL);
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < n && !c->msgs[j]->err && c->msgs[j]->rkt == first->rkt &&
           c->msgs[j]->partition == first->partition)
      j++;
    const char *topic = rd_kafka_topic_name(first->rkt);
    part_t *p = find_part(c, topic, first->partition);
    if (!p || p->state != PART_RUNNING || p->refetch_poll == c->polls) {
      if (p && p->next < 0) p->next = first->offset;
      i = j;
      continue;
    }
    size_t k = i;
    while (k < j && p->next >= 0 && c->msgs[k]->offset < p->next) k++;
    for (size_t m = k; m < j; m++) {
      rd_kafka_message_t *km = c->msgs[m];
      c->views[m] = (rtu_msg_t){.topic = topic, .partition = km->partition, .offset = km->offset,
                                .timestamp = rd_kafka_message_timestamp(km, NULL),
                                .key = km->key, .key_len = km->key_len, .value = km->payload,
                                .value_len = km->len, .source = km};
    }
    if (k < j) {
      c->jobs[njobs] = (rtu_job_t){.projection = p->projection, .msgs = &c->views[k], .n = j - k,
                                   .outputs_done = p->outputs_done};
      c->job_first[njobs++] = c->msgs[k];
      rtu_metrics_add(RTU_C_CONSUMED, topic, j - k);
    }
    i = j;
  }
  return njobs;
}

/* The messages a run got through (applied, stale or skipped: all before
 * next_offset), from their Kafka timestamps to the poll's last acknowledgment. */
static void observe_freshness(rtu_consumer_t *c, const part_t *p, const rtu_job_t *job) {
  size_t n = 0;
  for (size_t i = 0; i < job->n && job->msgs[i].offset < job->res.next_offset; i++)
    if (job->msgs[i].timestamp > 0) c->stamps[n++] = job->msgs[i].timestamp;
  rtu_metrics_freshness(c->cfg->projections[p->projection].name, c->settled_at, c->stamps, n);
}

/* What became of one job. Returns false on a fatal error (errstr set). */
static bool settle(rtu_consumer_t *c, rtu_job_t *job, rd_kafka_message_t *first, bool *stored,
                   char *errstr, size_t errstr_size) {
  const rtu_run_result_t *res = &job->res;
  part_t *p = find_part(c, rd_kafka_topic_name(first->rkt), first->partition);
  if (job->err == RTU_ERR_FATAL) {
    snprintf(errstr, errstr_size, "%s", res->cause);
    return false;
  }
  if (!p) return true; /* revoked meanwhile: the new owner redoes it */
  if (job->err == RTU_ERR_TRANSIENT) {
    if (res->outputs_done > p->outputs_done) p->outputs_done = res->outputs_done;
    on_transient(c, p, first->offset, res->cause, res->kafka_unavailable);
    return true;
  }
  c->outage_backoff_ms = 100;
  rtu_metrics_add(RTU_C_APPLIED, p->topic, res->applied);
  rtu_metrics_add(RTU_C_STALE, p->topic, res->stale);
  rtu_metrics_add(RTU_C_SKIPPED, p->topic, res->skipped);
  rtu_metrics_add(RTU_C_WRITES, p->topic, res->writes);
  c->since_applied += res->applied;
  c->since_stale += res->stale;
  c->since_skipped += res->skipped;
  if (res->next_offset > first->offset) {
    store_offset(c, p, res->next_offset);
    *stored = true;
  }
  p->next = res->next_offset;
  observe_freshness(c, p, job);
  if (!res->failed) return true;
  rtu_metrics_add(RTU_C_FAILED, p->topic, 1);
  c->since_failed++;
  const rtu_msg_t *failing = NULL;
  for (size_t i = 0; i < job->n; i++)
    if (job->msgs[i].offset == res->fail_offset) failing = &job->msgs[i];
  /* A refusal of configuration is no fault of the message: it stops the
   * partition rather than send message after message to the dead letters. */
  if (c->dead_letters && failing && res->err != RTU_ERR_CONFIG && dead_letter(c, p, failing, res)) {
    /* Go on after it: the rest of the run was not applied, fetch it again. */
    p->next = res->fail_offset + 1;
    store_offset(c, p, p->next);
    *stored = true;
    resume(c, p);
    return true;
  }
  stop_partition(c, p, res);
  return true;
}

static void log_counts(const rtu_job_t *job) {
  if (!rtu_log_enabled(RTU_LOG_DEBUG)) return;
  const rtu_run_result_t *r = &job->res;
  char counts[200];
  snprintf(counts, sizeof counts,
           "{\"messages\":%zu,\"applied\":%zu,\"stale\":%zu,\"skipped\":%zu,\"writes\":%zu,"
           "\"changes\":%zu}",
           r->messages, r->applied, r->stale, r->skipped, r->writes, r->changes);
  rtu_log(RTU_LOG_DEBUG, "run applied", "topic", job->msgs[0].topic, "#counts", counts, NULL);
}

/* librdkafka before 2.1.0 (#4208) loses messages around a rebalance: to serve
 * the callback it pauses the assignment, and a pause arriving while a batch call
 * is gathering drops the messages that call had gathered for those partitions
 * after counting them as handed out, so the fetch resumes after them. Kept
 * partitions then skip what they had in flight (seen on the mock cluster: 17 to
 * 27 messages of each kept partition, committed and never applied). After a poll
 * in which a rebalance callback ran, a running partition whose messages in the
 * poll do not follow on from what was applied without a hole, or whose
 * librdkafka position lies past them, is sought back to what was applied and
 * fetched again, its messages of this poll dropped. Only partitions with an
 * applied message are checked: one that has had none since its assignment
 * starts from the committed offset, which is not known here. */
static void refetch_purged(rtu_consumer_t *c, size_t n) {
  /* poll_next: where each partition's messages of this poll should have
   * continued from, then -2 once a hole was seen among them. */
  for (size_t i = 0; i < c->nparts; i++) c->parts[i].poll_next = c->parts[i].next;
  for (size_t i = 0; i < n; i++) {
    rd_kafka_message_t *m = c->msgs[i];
    if (m->err) continue;
    part_t *p = find_part(c, rd_kafka_topic_name(m->rkt), m->partition);
    if (!p || p->next < 0 || p->poll_next == -2 || m->offset < p->poll_next) continue;
    p->poll_next = m->offset == p->poll_next ? m->offset + 1 : -2;
  }
  rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new((int)c->nparts + 1);
  for (size_t i = 0; i < c->nparts; i++)
    if (c->parts[i].state == PART_RUNNING && c->parts[i].next >= 0)
      rd_kafka_topic_partition_list_add(pos, c->parts[i].topic, c->parts[i].partition);
  if (pos->cnt && rd_kafka_position(c->rk, pos)) pos->cnt = 0;
  for (size_t i = 0; i < c->nparts; i++) {
    part_t *p = &c->parts[i];
    if (p->state != PART_RUNNING || p->next < 0) continue;
    /* librdkafka's position: past the last message it handed out */
    rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(pos, p->topic, p->partition);
    int64_t handed = e ? e->offset : -1;
    if (p->poll_next != -2 && handed <= p->poll_next) continue;
    char part[16], from[24], to[24];
    snprintf(part, sizeof part, "%d", p->partition);
    snprintf(from, sizeof from, "%lld", (long long)p->next);
    snprintf(to, sizeof to, "%lld", (long long)handed);
    rtu_log(RTU_LOG_INFO, "messages dropped by librdkafka in a rebalance; fetching them again",
            "topic", p->topic, "#partition", part, "#from", from, "#to", to, NULL);
    p->refetch_poll = c->polls;
    resume(c, p); /* pause, seek to p->next, resume */
  }
  rd_kafka_topic_partition_list_destroy(pos);
}

/* Takes what has arrived and goes: waits up to `wait` ms for the first message
 * only, then takes the rest of the batch in windows of POLL_WINDOW_MS for as long
 * as each brings more, at most POLL_GRACE_MS in all.
 * rd_kafka_consume_batch_queue returns early only when the array is full, so one
 * call with the full wait held a message that arrived alone for the whole
 * KAFKA_CONSUMER_MAX_WAIT_TIME, and a single grace call always took all of its
 * time. The windows are for the fetch response the first message came in: the
 * broker thread queues its partitions one after the other, and a poll woken by
 * the first one would otherwise take that partition alone (one more batch,
 * strategies stage and commit for the rest); once a window brings nothing, the
 * response is in. Batches still grow under load: the queue fills (up to
 * queued.min.messages) while the workers apply the previous batch, and a full
 * array returns at once. */
#define POLL_WINDOW_MS 1
#define POLL_GRACE_MS 5

static ssize_t poll_batch(rtu_consumer_t *c, int wait) {
  ssize_t n = rd_kafka_consume_batch_queue(c->queue, wait, c->msgs, 1);
  if (n <= 0) return n;
  int64_t until = rtu_now_mono_ms() + POLL_GRACE_MS;
  while ((size_t)n < c->msgs_cap) {
    ssize_t more = rd_kafka_consume_batch_queue(c->queue, POLL_WINDOW_MS, c->msgs + n,
                                                c->msgs_cap - (size_t)n);
    if (more < 0) {
      for (ssize_t k = 0; k < n; k++) rd_kafka_message_destroy(c->msgs[k]);
      return more;
    }
    n += more;
    if (more == 0 || rtu_now_mono_ms() >= until) break;
  }
  return n;
}

/* LOG_LEVEL=debug: where a poll's time went, the decomposition of freshness that
 * docs/performance.md reports: the age of its oldest and newest message when the
 * poll returned (fetch, queue and the previous poll's work), how long the poll
 * waited, and how long the runs (with strategies) and the settling took. */
static void log_poll(const rtu_consumer_t *c, size_t n, size_t njobs, int64_t polled_ms,
                     int64_t wait_us, int64_t apply_us, int64_t settle_us) {
  if (!rtu_log_enabled(RTU_LOG_DEBUG)) return;
  int64_t lo = INT64_MAX, hi = 0;
  for (size_t k = 0; k < n; k++) {
    int64_t ts = c->msgs[k]->err ? -1 : rd_kafka_message_timestamp(c->msgs[k], NULL);
    if (ts <= 0) continue;
    if (ts < lo) lo = ts;
    if (ts > hi) hi = ts;
  }
  if (!hi) return;
  char f[240];
  snprintf(f, sizeof f,
           "{\"messages\":%zu,\"runs\":%zu,\"oldestAgeMs\":%lld,\"newestAgeMs\":%lld,"
           "\"waitMs\":%.3f,\"applyMs\":%.3f,\"settleMs\":%.3f}",
           n, njobs, (long long)(polled_ms - lo), (long long)(polled_ms - hi), wait_us / 1e3,
           apply_us / 1e3, settle_us / 1e3);
  rtu_log(RTU_LOG_DEBUG, "poll", "#timing", f, NULL);
}

rtu_err_t rtu_consumer_run(rtu_consumer_t *c, rtu_pool_t *pool, const rtu_consumer_loop_t *loop,
                           char *errstr, size_t errstr_size) {
  const rtu_config_t *cfg = c->cfg;
  rtu_err_t rc = RTU_OK;
  while (!*loop->stop) {
    rtu_health_heartbeat();
    log_committed(c);
    if (loop->between_batches && loop->between_batches(loop->ud)) resume_stopped(c);
    retry_outage(c, pool);
    if (!rtu_health_dependency_ok(RTU_DEP_KAFKA)) check_kafka(c);

    int wait = cfg->kafka_max_wait_ms;
    if (c->outage_retry_at) {
      int64_t left = c->outage_retry_at - rtu_now_mono_ms();
      if (left < wait) wait = left > 0 ? (int)left : 0;
    }
    if (wait > 1000) wait = 1000; /* keep the heartbeat and the stop flag fresh */
    int64_t t_wait = rtu_now_mono_us();
    if (c->commit_pending && wait > 100) wait = 100; /* a held commit, tried again soon */
    c->polls++;
    c->rebalanced = false;
    ssize_t n = poll_batch(c, wait);
    if (n < 0) {
      snprintf(errstr, errstr_size, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
      rc = RTU_ERR_FATAL;
      break;
    }
    int64_t t0 = rtu_now_mono_us(), polled_ms = rtu_now_ms();
    if (n > 0) qsort(c->msgs, (size_t)n, sizeof *c->msgs, msg_cmp);
    if (c->rebalanced) refetch_purged(c, (size_t)n);
    if (n == 0) {
      if (c->commit_pending) commit_async(c);
      continue;
    }
    size_t njobs = build_jobs(c, (size_t)n);
    rc = rtu_pool_run(pool, c->jobs, njobs, errstr, errstr_size);
    int64_t t_applied = rtu_now_mono_us();
    bool stored = false;
    c->settled_at = rtu_now_ms();
    for (size_t k = 0; k < njobs && rc == RTU_OK; k++) {
      if (!settle(c, &c->jobs[k], c->job_first[k], &stored, errstr, errstr_size)) {
        rc = RTU_ERR_FATAL;
        break;
      }
      log_counts(&c->jobs[k]);
    }
    if (rc != RTU_OK) {
      for (ssize_t k = 0; k < n; k++) rd_kafka_message_destroy(c->msgs[k]);
      break;
    }
    c->commit_pending |= stored;
    if (c->commit_pending) commit_async(c);
    int64_t t_end = rtu_now_mono_us();
    log_poll(c, (size_t)n, njobs, polled_ms, t0 - t_wait, t_applied - t0, t_end - t_applied);
    for (ssize_t k = 0; k < n; k++) rd_kafka_message_destroy(c->msgs[k]);
    if (njobs) rtu_metrics_observe(RTU_H_BATCH, (double)(rtu_now_mono_us() - t0) / 1e6);
  }
  /* Final: commit what was applied, synchronously, then leave the group (unless
   * a shutdown past its deadline did it already). */
  int none = CLOSE_NONE;
  if (!atomic_compare_exchange_strong(&c->closer, &none, CLOSE_LOOP)) return rc;
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
    rtu_log(RTU_LOG_WARN, "final commit failed", "cause", rd_kafka_err2str(err), NULL);
  err = rd_kafka_consumer_close(c->rk);
  if (err) rtu_log(RTU_LOG_WARN, "leaving the group failed", "cause", rd_kafka_err2str(err), NULL);
  return rc;
}

bool rtu_consumer_abandon(rtu_consumer_t *c, int timeout_ms) {
  int none = CLOSE_NONE;
  if (!atomic_compare_exchange_strong(&c->closer, &none, CLOSE_ABANDON)) return false;
  rtu_log(RTU_LOG_WARN,
          "shutdown deadline reached: the run in flight is abandoned (not committed); "
          "committing what was written and leaving the group",
          NULL);
  int64_t deadline = rtu_now_mono_ms() + timeout_ms;
  /* Offsets are stored only for settled runs: this commits exactly what was
   * written. The revoke of the close commits too; this one is for a group
   * already lost. */
  rd_kafka_commit(c->rk, NULL, 1);
  rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
  rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, q);
  if (e) {
    rtu_log(RTU_LOG_WARN, "leaving the group failed", "cause", rd_kafka_error_string(e), NULL);
    rd_kafka_error_destroy(e);
  } else {
    /* The close's events come here, not through the callbacks: the revoke is
     * answered by unassigning (the loop's thread owns the partitions' state). */
    while (!rd_kafka_consumer_closed(c->rk) && rtu_now_mono_ms() < deadline) {
      rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
      if (!ev) continue;
      if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
        if (!strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE")) {
          rd_kafka_error_t *ue =
              rd_kafka_incremental_unassign(c->rk, rd_kafka_event_topic_partition_list(ev));
          if (ue) rd_kafka_error_destroy(ue);
        } else {
          rd_kafka_assign(c->rk, NULL);
        }
      }
      rd_kafka_event_destroy(ev);
    }
  }
  bool closed = rd_kafka_consumer_closed(c->rk);
  rd_kafka_queue_destroy(q);
  if (!closed) rtu_log(RTU_LOG_WARN, "leaving the group did not finish in time", NULL);
  return closed;
}
