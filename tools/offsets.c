/*
 * rtu-offsets: watermarks and a consumer group's committed offsets, for the
 * benchmark (tools/bench) and by hand.
 *
 * This file owns: one librdkafka consumer handle that never subscribes (so it
 * never joins the group and never triggers a rebalance of the group it reads:
 * committed offsets come from OffsetFetch alone), the partition list of the
 * named topics (metadata), their watermarks, and the wait until the group has
 * committed the end of every partition.
 *
 * Usage:
 *   rtu-offsets --brokers B [--group G] --topic T [--topic T]...
 *               [--wait SECONDS] [--interval-ms MS]
 * Without --wait: prints "TOPIC PARTITION LOW HIGH COMMITTED" per partition
 * (COMMITTED -1 when the group has none, or without --group).
 * With --wait (needs --group): polls every MS (default 100) until, for every
 * partition, the committed offset reaches the high watermark read at start;
 * prints "done SECONDS" (monotonic time spent waiting) and exits 0, or exits 1
 * after SECONDS with the lagging partitions on stderr.  Exit 2: usage or Kafka
 * errors.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define MAX_TOPICS 64
#define TIMEOUT_MS 10000

static double now_s(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rtu-offsets: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

/* Adds every partition of topic to list (metadata of that topic only). */
static int add_partitions(rd_kafka_t *rk, const char *topic,
                          rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "rtu-offsets: topic %s: %s\n", topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
    int rc = 0;
    if (e) {
        fprintf(stderr, "rtu-offsets: metadata of %s: %s\n", topic, rd_kafka_err2str(e));
        rc = -1;
    } else if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        fprintf(stderr, "rtu-offsets: topic %s: %s\n", topic,
                md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
        rc = -1;
    } else {
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(list, topic, md->topics[0].partitions[i].id);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *group = NULL;
    const char *topics[MAX_TOPICS];
    int ntopics = 0;
    double wait_s = -1;
    long interval_ms = 100;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "rtu-offsets: %s needs a value (see the usage at the top of offsets.c)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--brokers"))
            brokers = v;
        else if (!strcmp(a, "--group"))
            group = v;
        else if (!strcmp(a, "--topic") && ntopics < MAX_TOPICS)
            topics[ntopics++] = v;
        else if (!strcmp(a, "--wait"))
            wait_s = atof(v);
        else if (!strcmp(a, "--interval-ms"))
            interval_ms = atol(v);
        else {
            fprintf(stderr, "rtu-offsets: unknown or repeated option %s\n", a);
            return 2;
        }
    }
    if (!brokers || ntopics == 0 || (wait_s >= 0 && !group) || interval_ms <= 0) {
        fprintf(stderr, "usage: rtu-offsets --brokers B [--group G] --topic T... "
                        "[--wait SECONDS] [--interval-ms MS]\n");
        return 2;
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char gbuf[64];
    if (!group) {
        /* a consumer handle needs a group id even for watermarks only */
        snprintf(gbuf, sizeof gbuf, "rtu-offsets-%ld", (long)time(NULL));
    }
    if (set_conf(conf, "bootstrap.servers", brokers) ||
        set_conf(conf, "group.id", group ? group : gbuf) ||
        set_conf(conf, "enable.auto.commit", "false") ||
        set_conf(conf, "log_level", "3")) {
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rtu-offsets: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    int rc = 0;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    int64_t *low = NULL, *high = NULL;
    for (int t = 0; t < ntopics && rc == 0; t++)
        if (add_partitions(rk, topics[t], list))
            rc = 2;
    if (rc == 0) {
        low = calloc((size_t)list->cnt, sizeof *low);
        high = calloc((size_t)list->cnt, sizeof *high);
        if (!low || !high) {
            fprintf(stderr, "rtu-offsets: out of memory\n");
            rc = 2;
        }
    }
    for (int i = 0; rc == 0 && i < list->cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            rk, list->elems[i].topic, list->elems[i].partition, &low[i], &high[i], TIMEOUT_MS);
        if (e) {
            fprintf(stderr, "rtu-offsets: watermarks of %s/%d: %s\n", list->elems[i].topic,
                    list->elems[i].partition, rd_kafka_err2str(e));
            rc = 2;
        }
    }

    double start = now_s();
    while (rc == 0) {
        if (group) {
            for (int i = 0; i < list->cnt; i++)
                list->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
            rd_kafka_resp_err_t e = rd_kafka_committed(rk, list, TIMEOUT_MS);
            if (e) {
                /* the coordinator may be busy with a rebalance: retry while waiting */
                if (wait_s < 0) {
                    fprintf(stderr, "rtu-offsets: committed offsets: %s\n", rd_kafka_err2str(e));
                    rc = 2;
                    break;
                }
                for (int i = 0; i < list->cnt; i++)
                    list->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
            }
        }
        if (wait_s < 0) {
            for (int i = 0; i < list->cnt; i++) {
                int64_t c = list->elems[i].offset;
                printf("%s %d %lld %lld %lld\n", list->elems[i].topic, list->elems[i].partition,
                       (long long)low[i], (long long)high[i],
                       group && c >= 0 ? (long long)c : -1LL);
            }
            break;
        }
        /* A partition with nothing in it (low == high) has nothing to commit: its
         * committed offset stays unset (-1) and must not count as lagging. */
        int lagging = 0;
        for (int i = 0; i < list->cnt; i++)
            if (list->elems[i].offset < high[i] && high[i] > low[i])
                lagging++;
        double spent = now_s() - start;
        if (lagging == 0) {
            printf("done %.3f\n", spent);
            break;
        }
        if (spent > wait_s) {
            for (int i = 0; i < list->cnt; i++)
                if (list->elems[i].offset < high[i] && high[i] > low[i])
                    fprintf(stderr, "rtu-offsets: %s/%d committed %lld of %lld\n",
                            list->elems[i].topic, list->elems[i].partition,
                            (long long)list->elems[i].offset, (long long)high[i]);
            rc = 1;
            break;
        }
        struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (fflush(stdout) != 0 && rc == 0)
        rc = 2;
    free(low);
    free(high);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
    return rc;
}
