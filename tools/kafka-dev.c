/*
 * rtu-kafka-dev: a development Kafka broker for tests and the demo.
 *
 * This file owns: command-line parsing for the dev broker, the lifetime of
 * one librdkafka mock cluster (created on a private producer handle), the
 * pre-created topics, publishing the bootstrap list (stdout and an
 * atomically written file), and the clean stop on SIGTERM/SIGINT/SIGHUP.
 *
 * It owns nothing of the service itself.  The mock cluster is librdkafka's
 * experimental in-process broker: real clients in other processes reach it
 * over loopback TCP.  Limits to remember (see toolchain-notes.md): at most
 * 5 MiB or 100,000 messages kept per partition, no CreateTopics admin API,
 * no transactions filtering, topics not listed here are auto-created with 4
 * partitions when a client asks for them.
 *
 * Usage:
 *   rtu-kafka-dev [--brokers N] [--topic NAME[:PARTITIONS]]...
 *                 [--topics-file FILE] [--bootstrap-file PATH]
 *
 * Outage control for tests: SIGUSR1 takes every broker down
 * (rd_kafka_mock_broker_set_down: connections closed, new ones refused),
 * SIGUSR2 brings them up again. Each is acknowledged by a line on stderr
 * ("rtu-kafka-dev: brokers down" / "rtu-kafka-dev: brokers up").
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 1024
#define MAX_BROKERS 32
#define MAX_PARTITIONS 10000

struct topic_spec {
    char *name;
    int partitions;
};

struct options {
    int brokers;
    const char *bootstrap_file;
    struct topic_spec topics[MAX_TOPICS];
    int topic_cnt;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: rtu-kafka-dev [options]\n"
            "  --brokers N             number of mock brokers (default 1)\n"
            "  --topic NAME[:P]        create topic NAME with P partitions "
            "(default 1); repeatable\n"
            "  --topics-file FILE      one NAME[:P] per line ('#' comments)\n"
            "  --bootstrap-file PATH   write the bootstrap list to PATH "
            "(atomically) once up\n"
            "Prints the bootstrap list on stdout, runs until SIGTERM/SIGINT.\n"
            "SIGUSR1 takes every broker down, SIGUSR2 brings them up.\n"
            "Topics not created here are auto-created with 4 partitions.\n");
}

/* Parse "NAME[:PARTITIONS]" (surrounding blanks ignored) into the options. */
static int add_topic(struct options *opt, const char *spec)
{
    int rc = -1;
    char *copy = NULL;
    char *start, *end, *colon;
    long parts = 1;

    copy = strdup(spec);
    if (!copy) {
        fprintf(stderr, "rtu-kafka-dev: out of memory\n");
        goto done;
    }
    start = copy;
    while (*start == ' ' || *start == '\t')
        start++;
    end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t' ||
                           end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';

    colon = strrchr(start, ':');
    if (colon) {
        char *num_end = NULL;
        *colon = '\0';
        errno = 0;
        parts = strtol(colon + 1, &num_end, 10);
        if (errno || num_end == colon + 1 || *num_end != '\0' || parts < 1 ||
            parts > MAX_PARTITIONS) {
            fprintf(stderr, "rtu-kafka-dev: bad partition count in '%s'\n",
                    spec);
            goto done;
        }
    }
    if (*start == '\0' || strlen(start) > 249) {
        fprintf(stderr, "rtu-kafka-dev: bad topic name in '%s'\n", spec);
        goto done;
    }
    for (const char *p = start; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
              *p == '-')) {
            fprintf(stderr,
                    "rtu-kafka-dev: topic name '%s' has a character outside "
                    "[a-zA-Z0-9._-]\n",
                    start);
            goto done;
        }
    }
    for (int i = 0; i < opt->topic_cnt; i++) {
        if (strcmp(opt->topics[i].name, start) != 0)
            continue;
        if (opt->topics[i].partitions == (int)parts) {
            rc = 0; /* the same topic twice: fine */
            goto done;
        }
        fprintf(stderr,
                "rtu-kafka-dev: topic '%s' given with %d and %ld partitions\n",
                start, opt->topics[i].partitions, parts);
        goto done;
    }
    if (opt->topic_cnt >= MAX_TOPICS) {
        fprintf(stderr, "rtu-kafka-dev: too many topics (max %d)\n",
                MAX_TOPICS);
        goto done;
    }
    opt->topics[opt->topic_cnt].name = strdup(start);
    if (!opt->topics[opt->topic_cnt].name) {
        fprintf(stderr, "rtu-kafka-dev: out of memory\n");
        goto done;
    }
    opt->topics[opt->topic_cnt].partitions = (int)parts;
    opt->topic_cnt++;
    rc = 0;
done:
    free(copy);
    return rc;
}

static int read_topics_file(struct options *opt, const char *path)
{
    int rc = -1;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;

    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "rtu-kafka-dev: cannot open %s: %s\n", path,
                strerror(errno));
        goto done;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *p = line;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p == '\0')
            continue;
        if (add_topic(opt, p) != 0)
            goto done;
    }
    if (ferror(f)) {
        fprintf(stderr, "rtu-kafka-dev: error reading %s\n", path);
        goto done;
    }
    rc = 0;
done:
    free(line);
    if (f)
        fclose(f);
    return rc;
}

/* Write `text` + newline to `path` through a temporary file and rename(2),
 * so a reader polling for the file never sees it half written. */
static int write_file_atomically(const char *path, const char *text)
{
    int rc = -1;
    char *tmp = NULL;
    FILE *f = NULL;
    size_t n = strlen(path) + 32;

    tmp = malloc(n);
    if (!tmp) {
        fprintf(stderr, "rtu-kafka-dev: out of memory\n");
        goto done;
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "rtu-kafka-dev: cannot create %s: %s\n", tmp,
                strerror(errno));
        goto done;
    }
    if (fprintf(f, "%s\n", text) < 0 || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        fprintf(stderr, "rtu-kafka-dev: cannot write %s: %s\n", tmp,
                strerror(errno));
        goto done;
    }
    if (fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "rtu-kafka-dev: cannot close %s: %s\n", tmp,
                strerror(errno));
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "rtu-kafka-dev: cannot rename %s to %s: %s\n", tmp,
                path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (f)
        fclose(f);
    if (rc != 0 && tmp)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int parse_args(struct options *opt, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--brokers") == 0 || strcmp(a, "--topic") == 0 ||
            strcmp(a, "--topics-file") == 0 ||
            strcmp(a, "--bootstrap-file") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "rtu-kafka-dev: %s needs a value\n", a);
                return -1;
            }
            val = argv[++i];
        } else {
            fprintf(stderr, "rtu-kafka-dev: unknown argument '%s'\n", a);
            usage(stderr);
            return -1;
        }

        if (strcmp(a, "--brokers") == 0) {
            char *end = NULL;
            long n;
            errno = 0;
            n = strtol(val, &end, 10);
            if (errno || end == val || *end || n < 1 || n > MAX_BROKERS) {
                fprintf(stderr,
                        "rtu-kafka-dev: --brokers wants 1..%d, got '%s'\n",
                        MAX_BROKERS, val);
                return -1;
            }
            opt->brokers = (int)n;
        } else if (strcmp(a, "--topic") == 0) {
            if (add_topic(opt, val) != 0)
                return -1;
        } else if (strcmp(a, "--topics-file") == 0) {
            if (read_topics_file(opt, val) != 0)
                return -1;
        } else {
            opt->bootstrap_file = val;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 1;
    struct options opt;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *bootstraps;
    char errstr[512];
    sigset_t sigs;
    int sig = 0;
    int wrote_file = 0;

    memset(&opt, 0, sizeof(opt));
    opt.brokers = 1;
    if (parse_args(&opt, argc, argv) != 0) {
        rc = 2;
        goto done;
    }

    /* Block the stop signals before librdkafka starts its threads, so they
     * inherit the mask and the main thread can sigwait() for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        fprintf(stderr, "rtu-kafka-dev: pthread_sigmask failed\n");
        goto done;
    }

    conf = rd_kafka_conf_new();
    if (!conf) {
        fprintf(stderr, "rtu-kafka-dev: rd_kafka_conf_new failed\n");
        goto done;
    }
    if (rd_kafka_conf_set(conf, "client.id", "rtu-kafka-dev", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rtu-kafka-dev: %s\n", errstr);
        goto done;
    }
    /* hide the notice about the handle itself having no bootstrap.servers */
    if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rtu-kafka-dev: %s\n", errstr);
        goto done;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "rtu-kafka-dev: rd_kafka_new: %s\n", errstr);
        goto done;
    }
    conf = NULL; /* owned by rk now */

    mc = rd_kafka_mock_cluster_new(rk, opt.brokers);
    if (!mc) {
        fprintf(stderr, "rtu-kafka-dev: rd_kafka_mock_cluster_new failed\n");
        goto done;
    }

    for (int i = 0; i < opt.topic_cnt; i++) {
        int rf = opt.brokers < 3 ? opt.brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            mc, opt.topics[i].name, opt.topics[i].partitions, rf);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "rtu-kafka-dev: cannot create topic %s: %s\n",
                    opt.topics[i].name, rd_kafka_err2str(err));
            goto done;
        }
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (!bootstraps || !*bootstraps) {
        fprintf(stderr, "rtu-kafka-dev: mock cluster has no bootstrap list\n");
        goto done;
    }
    if (opt.bootstrap_file) {
        if (write_file_atomically(opt.bootstrap_file, bootstraps) != 0)
            goto done;
        wrote_file = 1;
    }
    if (printf("%s\n", bootstraps) < 0 || fflush(stdout) != 0) {
        /* stdout closed is not fatal for a dev broker */
        clearerr(stdout);
    }
    fprintf(stderr, "rtu-kafka-dev: %d broker(s) at %s, %d topic(s) created\n",
            opt.brokers, bootstraps, opt.topic_cnt);

    for (;;) {
        int err = sigwait(&sigs, &sig);
        if (err == 0 && (sig == SIGUSR1 || sig == SIGUSR2)) {
            rd_kafka_resp_err_t e =
                sig == SIGUSR1 ? rd_kafka_mock_broker_set_down(mc, -1)
                               : rd_kafka_mock_broker_set_up(mc, -1);
            fprintf(stderr, "rtu-kafka-dev: brokers %s%s%s\n",
                    sig == SIGUSR1 ? "down" : "up", e ? ": " : "",
                    e ? rd_kafka_err2str(e) : "");
            fflush(stderr);
            continue;
        }
        if (err == 0)
            break;
        if (err != EINTR) {
            fprintf(stderr, "rtu-kafka-dev: sigwait: %s\n", strerror(err));
            goto done;
        }
    }
    fprintf(stderr, "rtu-kafka-dev: signal %d, stopping\n", sig);
    rc = 0;

done:
    if (wrote_file && unlink(opt.bootstrap_file) != 0 && errno != ENOENT)
        fprintf(stderr, "rtu-kafka-dev: cannot remove %s: %s\n",
                opt.bootstrap_file, strerror(errno));
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    for (int i = 0; i < opt.topic_cnt; i++)
        free(opt.topics[i].name);
    return rc;
}
