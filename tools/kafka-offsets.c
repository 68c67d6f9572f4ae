/*
 * rtu-kafka-offsets: prints the committed offsets of a consumer group and the
 * watermarks of a topic, for tests.
 *
 * This file owns: one OffsetFetch (rd_kafka_committed) for every partition of
 * one topic, without joining the group (no subscribe, no assign), and the
 * low/high watermarks of each partition. Output: one JSON line per partition,
 *   {"partition":P,"committed":C,"low":L,"high":H}
 * with committed = -1 when the group has no offset for the partition.
 *
 * Usage: rtu-kafka-offsets --brokers LIST --group G --topic T
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

int main(int argc, char **argv)
{
    const char *brokers = NULL, *group = NULL, *topic = NULL;
    char errstr[512];
    int rc = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--brokers") == 0)
            brokers = argv[i + 1];
        else if (strcmp(argv[i], "--group") == 0)
            group = argv[i + 1];
        else if (strcmp(argv[i], "--topic") == 0)
            topic = argv[i + 1];
    }
    if (!brokers || !group || !topic) {
        fprintf(stderr,
                "usage: rtu-kafka-offsets --brokers LIST --group G --topic T\n");
        return 2;
    }
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                          sizeof errstr) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                          sizeof errstr) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr)) {
        fprintf(stderr, "rtu-kafka-offsets: %s\n", errstr);
        goto done;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "rtu-kafka-offsets: %s\n", errstr);
        goto done;
    }
    conf = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "rtu-kafka-offsets: metadata of %s: %s\n", topic,
                rd_kafka_err2str(err ? err
                                     : md->topic_cnt ? md->topics[0].err
                                                     : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto done;
    }
    int n = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    err = rd_kafka_committed(rk, parts, 10000);
    if (err) {
        fprintf(stderr, "rtu-kafka-offsets: committed: %s\n",
                rd_kafka_err2str(err));
        goto done;
    }
    for (int i = 0; i < parts->cnt; i++) {
        int64_t lo = -1, hi = -1;
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (tp->err) {
            fprintf(stderr, "rtu-kafka-offsets: partition %d: %s\n",
                    tp->partition, rd_kafka_err2str(tp->err));
            goto done;
        }
        err = rd_kafka_query_watermark_offsets(rk, topic, tp->partition, &lo,
                                               &hi, 10000);
        if (err) {
            fprintf(stderr, "rtu-kafka-offsets: watermarks: %s\n",
                    rd_kafka_err2str(err));
            goto done;
        }
        printf("{\"partition\":%d,\"committed\":%lld,\"low\":%lld,\"high\":%lld}\n",
               (int)tp->partition,
               (long long)(tp->offset < 0 ? -1 : tp->offset), (long long)lo,
               (long long)hi);
    }
    rc = 0;
done:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}
