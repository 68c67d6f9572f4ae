/*
 * rtu-produce: feed JSON lines into Kafka, for tests, benchmarks and the demo.
 *
 * This file owns: reading JSON lines (stdin or --file) with rtu's own JSON
 * reader (rtu_json_read_bson, which keeps integers exact:
 * 9007199254740993 stays those digits), turning each line into one Kafka
 * message, one idempotent producer (enable.idempotence=true,
 * linger.ms=5), optional rate limiting, and counting delivery reports.
 *
 * Input, one JSON object per line (blank lines are skipped):
 *   {"topic": "t", "partition": 0, "key": K, "value": V,
 *    "timestamp": 1700000000000, "headers": {"name": "value"}}
 * All fields but key/value are optional ("topic" falls back to --topic).
 * K and V: a JSON string is sent as its raw (unescaped) bytes; an object,
 * array, number, true or false is sent as its compact JSON text, members in
 * their order, integers with all their digits, a double as the shortest text
 * that reads back as the same double and still a double ("2.0", not "2");
 * null or absent sends a NULL key / NULL value (tombstone).
 * Header values: string (raw bytes) or null.  Unknown fields are an error.
 *
 * Exit status: 0 when every message was delivered, 1 when an input line was
 * invalid (reading stops there, what was queued is still delivered) or any
 * delivery failed (each failure is named on stderr), 2 on usage errors.
 * Prints "produced N messages" (N = delivered) on stdout at the end.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bson/bson.h>
#include <librdkafka/rdkafka.h>

#include "bson_lua.h"
#include "json_module.h"
#include "json_read.h"
#include "json_write.h"
#include "key_text.h"

#define MAX_TOPIC_CACHE 64
#define MAX_REPORTED_FAILURES 20
#define MAX_CONF 64

struct topic_entry {
    char *name;
    rd_kafka_topic_t *rkt;
};

struct state {
    /* options */
    const char *brokers;
    const char *default_topic;
    const char *file;
    double rate;
    int stats;
    const char *conf_kv[MAX_CONF];
    int conf_cnt;
    /* runtime */
    rd_kafka_t *rk;
    struct topic_entry topics[MAX_TOPIC_CACHE];
    int topic_cnt;
    uint64_t queued;
    uint64_t delivered;
    uint64_t failed;
    int fatal;
};

/* ------------------------------------------------------------------ */
/* one input line -> one message                                       */

/* The fields of a line, read by rtu's own JSON reader (src/json_read.c): the tool
 * and the service agree on what a JSON text is, and integers keep their digits
 * (9007199254740993 is an int64, never a double). */
enum { F_TOPIC, F_PARTITION, F_KEY, F_VALUE, F_TIMESTAMP, F_HEADERS, F_N };
static const char *const field_names[F_N] = {"topic", "partition", "key",
                                             "value", "timestamp", "headers"};

/* bson_iter_t is over-aligned in Debian's libbson: an array of them is refused,
 * an array of structs holding one is padded. */
struct field {
    bson_iter_t it;
};

struct line_msg {
    bson_t doc; /* {"v": the line's object} */
    struct field f[F_N];
    int has[F_N];
};

/* 0 with m->doc to destroy, or -1 with *why set (nothing to destroy). */
static int parse_line(const char *line, size_t len, struct line_msg *m,
                      const char **why, char *errbuf, size_t errbuf_size)
{
    bson_iter_t it, child;

    memset(m->has, 0, sizeof(m->has));
    if (rtu_json_read_bson(line, len, &m->doc, errbuf, errbuf_size) != RTU_OK) {
        *why = errbuf;
        return -1;
    }
    if (!bson_iter_init_find(&it, &m->doc, "v") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &child)) {
        *why = "not a JSON object";
        goto fail;
    }
    while (bson_iter_next(&child)) {
        int i = 0;
        while (i < F_N && strcmp(bson_iter_key(&child), field_names[i]) != 0)
            i++;
        if (i == F_N) {
            *why = "unknown field (expected topic, partition, key, value, "
                   "timestamp, headers)";
            goto fail;
        }
        m->f[i].it = child; /* a repeated field: the last one counts */
        m->has[i] = 1;
    }
    return 0;
fail:
    bson_destroy(&m->doc);
    return -1;
}

static int given(const struct line_msg *m, int i)
{
    return m->has[i] && !BSON_ITER_HOLDS_NULL(&m->f[i].it);
}

/* An integer field: a JSON integer that fits int64 (not 1.0, not 1e3). */
static int field_int64(const struct line_msg *m, int i, int64_t *out)
{
    if (!BSON_ITER_HOLDS_INT32(&m->f[i].it) && !BSON_ITER_HOLDS_INT64(&m->f[i].it))
        return -1;
    *out = bson_iter_as_int64(&m->f[i].it);
    return 0;
}

/* A double as JSON text that reads back as the same double and still as a
 * double: 2.0 stays "2.0" (JSON.stringify's "2" would arrive as an integer). */
static int json_double(bson_string_t *out, double d)
{
    char tmp[48];

    if (!isfinite(d))
        return -1;
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (!strpbrk(tmp, ".eE"))
        strcat(tmp, ".0");
    bson_string_append(out, tmp);
    return 0;
}

/* Compact JSON text of the value at it: integers exact, strings escaped as
 * JSON.stringify does, members in their order. */
static int json_value(const bson_iter_t *it, bson_string_t *out)
{
    bson_iter_t child;
    uint32_t n;
    const char *s;
    int first = 1;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_NULL:
        bson_string_append(out, "null");
        return 0;
    case BSON_TYPE_BOOL:
        bson_string_append(out, bson_iter_bool(it) ? "true" : "false");
        return 0;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        rtu_json_write_int(out, bson_iter_as_int64(it));
        return 0;
    case BSON_TYPE_DOUBLE:
        return json_double(out, bson_iter_double(it));
    case BSON_TYPE_UTF8:
        s = bson_iter_utf8(it, &n);
        rtu_json_write_string(out, s, n);
        return 0;
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        int array = BSON_ITER_HOLDS_ARRAY(it);
        if (!bson_iter_recurse(it, &child))
            return -1;
        bson_string_append_c(out, array ? '[' : '{');
        while (bson_iter_next(&child)) {
            if (!first)
                bson_string_append_c(out, ',');
            first = 0;
            if (!array) {
                const char *k = bson_iter_key(&child);
                rtu_json_write_string(out, k, strlen(k));
                bson_string_append_c(out, ':');
            }
            if (json_value(&child, out) != 0)
                return -1;
        }
        bson_string_append_c(out, array ? ']' : '}');
        return 0;
    }
    default: /* nothing else comes out of a JSON text */
        return -1;
    }
}

/* Build the headers of a message from the "headers" object. */
static int build_headers(const struct line_msg *m, rd_kafka_headers_t **out,
                         const char **why)
{
    rd_kafka_headers_t *hdrs = NULL;
    bson_iter_t h;
    int rc = -1;

    *out = NULL;
    if (!given(m, F_HEADERS))
        return 0;
    if (!BSON_ITER_HOLDS_DOCUMENT(&m->f[F_HEADERS].it) ||
        !bson_iter_recurse(&m->f[F_HEADERS].it, &h)) {
        *why = "\"headers\" must be an object of strings";
        goto done;
    }
    hdrs = rd_kafka_headers_new(8);
    if (!hdrs) {
        *why = "out of memory";
        goto done;
    }
    while (bson_iter_next(&h)) {
        const char *name = bson_iter_key(&h), *val = NULL;
        uint32_t vlen = 0;
        rd_kafka_resp_err_t err;

        if (BSON_ITER_HOLDS_UTF8(&h)) {
            val = bson_iter_utf8(&h, &vlen);
        } else if (!BSON_ITER_HOLDS_NULL(&h)) {
            *why = "header values must be strings or null";
            goto done;
        }
        err = rd_kafka_header_add(hdrs, name, (ssize_t)strlen(name), val,
                                  (ssize_t)vlen);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            *why = rd_kafka_err2str(err);
            goto done;
        }
    }
    *out = hdrs;
    hdrs = NULL;
    rc = 0;
done:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    return rc;
}

/* Key or value payload: NULL for null/absent, the bytes of a string, compact
 * JSON text otherwise (in b). */
static int payload(const struct line_msg *m, int i, bson_string_t *b,
                   const char **ptr, size_t *len, const char **why)
{
    uint32_t n;

    *ptr = NULL;
    *len = 0;
    if (!given(m, i))
        return 0;
    if (BSON_ITER_HOLDS_UTF8(&m->f[i].it)) {
        *ptr = bson_iter_utf8(&m->f[i].it, &n);
        *len = n;
        return 0;
    }
    bson_string_truncate(b, 0);
    if (json_value(&m->f[i].it, b) != 0) {
        *why = "a number out of range";
        return -1;
    }
    *ptr = b->str;
    *len = b->len;
    return 0;
}

static rd_kafka_topic_t *topic_handle(struct state *st, const char *name)
{
    struct topic_entry *t;

    for (int i = 0; i < st->topic_cnt; i++)
        if (strcmp(st->topics[i].name, name) == 0)
            return st->topics[i].rkt;
    if (st->topic_cnt >= MAX_TOPIC_CACHE) {
        fprintf(stderr, "rtu-produce: more than %d distinct topics\n",
                MAX_TOPIC_CACHE);
        return NULL;
    }
    t = &st->topics[st->topic_cnt];
    t->name = strdup(name);
    if (!t->name)
        return NULL;
    t->rkt = rd_kafka_topic_new(st->rk, name, NULL);
    if (!t->rkt) {
        fprintf(stderr, "rtu-produce: topic '%s': %s\n", name,
                rd_kafka_err2str(rd_kafka_last_error()));
        free(t->name);
        t->name = NULL;
        return NULL;
    }
    st->topic_cnt++;
    return t->rkt;
}

/* ------------------------------------------------------------------ */
/* librdkafka callbacks                                                */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct state *st = opaque;
    (void)rk;

    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        st->delivered++;
        return;
    }
    st->failed++;
    if (st->failed <= MAX_REPORTED_FAILURES)
        fprintf(stderr,
                "rtu-produce: delivery failed: input line %" PRIu64
                " (topic %s, partition %" PRId32 "): %s\n",
                (uint64_t)(uintptr_t)m->_private,
                m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
                rd_kafka_err2str(m->err));
    else if (st->failed == MAX_REPORTED_FAILURES + 1)
        fprintf(stderr, "rtu-produce: further delivery failures not shown\n");
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct state *st = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        fprintf(stderr, "rtu-produce: fatal error: %s: %s\n",
                rd_kafka_err2name(ferr), buf);
        st->fatal = 1;
        return;
    }
    fprintf(stderr, "rtu-produce: kafka: %s: %s\n",
            rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rtu-produce [options] < lines.jsonl\n"
            "  --brokers LIST    bootstrap servers (default: $KAFKA_BROKERS)\n"
            "  --topic T         topic for lines without \"topic\"\n"
            "  --file F          read lines from F instead of stdin\n"
            "  --rate N          at most N messages per second\n"
            "  --stats           print elapsed time and rate on stderr\n"
            "  -X prop=value     extra librdkafka producer property "
            "(repeatable)\n"
            "line: {\"topic\":..,\"partition\":..,\"key\":..,\"value\":..,"
            "\"timestamp\":..,\"headers\":{..}}\n");
}

static int parse_args(struct state *st, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--stats") == 0) {
            st->stats = 1;
            continue;
        }
        if (strcmp(a, "--brokers") && strcmp(a, "--topic") &&
            strcmp(a, "--file") && strcmp(a, "--rate") && strcmp(a, "-X")) {
            fprintf(stderr, "rtu-produce: unknown argument '%s'\n", a);
            usage(stderr);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "rtu-produce: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--brokers") == 0) {
            st->brokers = v;
        } else if (strcmp(a, "--topic") == 0) {
            st->default_topic = v;
        } else if (strcmp(a, "--file") == 0) {
            st->file = v;
        } else if (strcmp(a, "--rate") == 0) {
            char *end = NULL;
            errno = 0;
            st->rate = strtod(v, &end);
            if (errno || end == v || *end || st->rate < 0) {
                fprintf(stderr, "rtu-produce: bad --rate '%s'\n", v);
                return -1;
            }
        } else {
            if (!strchr(v, '=') || st->conf_cnt >= MAX_CONF) {
                fprintf(stderr, "rtu-produce: -X wants prop=value\n");
                return -1;
            }
            st->conf_kv[st->conf_cnt++] = v;
        }
    }
    if (!st->brokers)
        st->brokers = getenv("KAFKA_BROKERS");
    if (!st->brokers || !*st->brokers) {
        fprintf(stderr,
                "rtu-produce: no brokers (--brokers or $KAFKA_BROKERS)\n");
        return -1;
    }
    return 0;
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rtu-produce: config %s=%s: %s\n", k, v, errstr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 1;
    int input_error = 0;
    struct state st;
    rd_kafka_conf_t *conf = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    bson_string_t *kbuf = bson_string_new(NULL), *vbuf = bson_string_new(NULL);
    char why_buf[RTU_ERRSTR_SIZE];
    char errstr[512];
    double t0, t1;

    memset(&st, 0, sizeof(st));
    if (parse_args(&st, argc, argv) != 0) {
        rc = 2;
        goto done;
    }

    conf = rd_kafka_conf_new();
    if (!conf) {
        fprintf(stderr, "rtu-produce: rd_kafka_conf_new failed\n");
        goto done;
    }
    if (set_conf(conf, "bootstrap.servers", st.brokers) ||
        set_conf(conf, "client.id", "rtu-produce") ||
        set_conf(conf, "enable.idempotence", "true") ||
        set_conf(conf, "linger.ms", "5") ||
        set_conf(conf, "queue.buffering.max.messages", "1000000") ||
        set_conf(conf, "message.timeout.ms", "30000"))
        goto done;
    for (int i = 0; i < st.conf_cnt; i++) {
        char kv[1024];
        char *eq;
        if (strlen(st.conf_kv[i]) >= sizeof(kv)) {
            fprintf(stderr, "rtu-produce: -X value too long\n");
            goto done;
        }
        strcpy(kv, st.conf_kv[i]);
        eq = strchr(kv, '=');
        *eq = '\0';
        if (set_conf(conf, kv, eq + 1))
            goto done;
    }
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);

    st.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!st.rk) {
        fprintf(stderr, "rtu-produce: rd_kafka_new: %s\n", errstr);
        goto done;
    }
    conf = NULL; /* owned by the handle now */

    if (st.file) {
        in = fopen(st.file, "r");
        if (!in) {
            fprintf(stderr, "rtu-produce: cannot open %s: %s\n", st.file,
                    strerror(errno));
            goto done;
        }
    } else {
        in = stdin;
    }

    t0 = now_s();
    while (!st.fatal && (len = getline(&line, &line_cap, in)) >= 0) {
        struct line_msg m;
        const char *why = NULL;
        const char *topic, *kp, *vp;
        size_t kl, vl;
        int64_t partition = RD_KAFKA_PARTITION_UA, ts = 0;
        rd_kafka_topic_t *rkt;
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t err;

        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue; /* blank line */

        if (parse_line(line, (size_t)len, &m, &why, why_buf, sizeof(why_buf)) != 0)
            goto report;

        if (given(&m, F_TOPIC)) {
            uint32_t tl = 0;
            topic = BSON_ITER_HOLDS_UTF8(&m.f[F_TOPIC].it)
                        ? bson_iter_utf8(&m.f[F_TOPIC].it, &tl) : NULL;
            if (!topic) {
                why = "\"topic\" must be a string";
                goto bad_line;
            }
            if (strlen(topic) != tl || tl == 0) {
                why = "bad \"topic\"";
                goto bad_line;
            }
        } else {
            topic = st.default_topic;
            if (!topic) {
                why = "no \"topic\" and no --topic";
                goto bad_line;
            }
        }
        if (given(&m, F_PARTITION)) {
            if (field_int64(&m, F_PARTITION, &partition) != 0 || partition < -1 ||
                partition > INT32_MAX) {
                why = "\"partition\" must be an integer >= 0";
                goto bad_line;
            }
        }
        if (given(&m, F_TIMESTAMP)) {
            if (field_int64(&m, F_TIMESTAMP, &ts) != 0 || ts < 0) {
                why = "\"timestamp\" must be an integer >= 0 (ms)";
                goto bad_line;
            }
        }
        if (payload(&m, F_KEY, kbuf, &kp, &kl, &why) != 0 ||
            payload(&m, F_VALUE, vbuf, &vp, &vl, &why) != 0)
            goto bad_line;
        if (build_headers(&m, &hdrs, &why) != 0)
            goto bad_line;

        rkt = topic_handle(&st, topic);
        if (!rkt) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            bson_destroy(&m.doc);
            input_error = 1;
            break;
        }

        if (st.rate > 0) {
            double due = t0 + (double)st.queued / st.rate;
            double now;
            while ((now = now_s()) < due)
                rd_kafka_poll(st.rk, (int)((due - now) * 1000.0) + 1);
        }

        for (;;) {
            err = rd_kafka_producev(
                st.rk, RD_KAFKA_V_RKT(rkt),
                RD_KAFKA_V_PARTITION((int32_t)partition),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(kp, kl), RD_KAFKA_V_VALUE((void *)vp, vl),
                RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno),
                RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(st.rk, 10); /* let deliveries drain */
        }
        bson_destroy(&m.doc); /* the message took copies (MSG_F_COPY) */
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs); /* not taken on failure */
            fprintf(stderr, "rtu-produce: line %" PRIu64 ": produce: %s\n",
                    lineno, rd_kafka_err2str(err));
            input_error = 1;
            break;
        }
        st.queued++;
        if ((st.queued & 1023) == 0)
            rd_kafka_poll(st.rk, 0);
        continue;

    bad_line:
        bson_destroy(&m.doc);
    report:
        fprintf(stderr, "rtu-produce: line %" PRIu64 ": %s\n", lineno, why);
        input_error = 1;
        break;
    }
    if (ferror(in)) {
        fprintf(stderr, "rtu-produce: read error: %s\n", strerror(errno));
        input_error = 1;
    }

    /* wait for every delivery report (bounded by message.timeout.ms) */
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_flush(st.rk, 1000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT) {
            fprintf(stderr, "rtu-produce: flush: %s\n", rd_kafka_err2str(err));
            break;
        }
        if (st.fatal && rd_kafka_outq_len(st.rk) == 0)
            break;
    }
    t1 = now_s();

    if (st.delivered + st.failed != st.queued)
        fprintf(stderr,
                "rtu-produce: %" PRIu64 " message(s) without a delivery "
                "report\n",
                st.queued - st.delivered - st.failed);
    if (st.failed)
        fprintf(stderr, "rtu-produce: %" PRIu64 " of %" PRIu64
                        " message(s) failed delivery\n",
                st.failed, st.queued);
    printf("produced %" PRIu64 " messages\n", st.delivered);
    fflush(stdout);
    if (st.stats)
        fprintf(stderr, "rtu-produce: %" PRIu64 " messages in %.3f s = %.0f msg/s\n",
                st.delivered, t1 - t0,
                t1 > t0 ? (double)st.delivered / (t1 - t0) : 0.0);

    rc = (input_error || st.failed || st.fatal ||
          st.delivered != st.queued) ? 1 : 0;

done:
    free(line);
    if (in && in != stdin)
        fclose(in);
    for (int i = 0; i < st.topic_cnt; i++) {
        rd_kafka_topic_destroy(st.topics[i].rkt);
        free(st.topics[i].name);
    }
    if (st.rk)
        rd_kafka_destroy(st.rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    bson_string_free(kbuf, true);
    bson_string_free(vbuf, true);
    return rc;
}
