/*
 * rtu-produce: feed JSON lines into Kafka, for tests, benchmarks and the demo.
 *
 * This file owns: reading JSON lines (stdin or --file), a small strict JSON
 * scanner that keeps numbers exactly as written (9007199254740993 stays
 * those digits: values are never converted to doubles), turning each line
 * into one Kafka message, one idempotent producer (enable.idempotence=true,
 * linger.ms=5), optional rate limiting, and counting delivery reports.
 *
 * Input, one JSON object per line (blank lines are skipped):
 *   {"topic": "t", "partition": 0, "key": K, "value": V,
 *    "timestamp": 1700000000000, "headers": {"name": "value"}}
 * All fields but key/value are optional ("topic" falls back to --topic).
 * K and V: a JSON string is sent as its raw (unescaped) bytes; an object,
 * array, number, true or false is sent as its compact JSON text, numbers
 * copied verbatim; null or absent sends a NULL key / NULL value (tombstone).
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define MAX_DEPTH 256
#define MAX_TOPIC_CACHE 64
#define MAX_REPORTED_FAILURES 20
#define MAX_CONF 64

enum jtype { J_NONE = 0, J_NULL, J_BOOL, J_NUM, J_STR, J_OBJ, J_ARR };

struct span {
    const char *p; /* first byte of the JSON value */
    size_t n;      /* its length in bytes */
    enum jtype type;
};

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

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
/* growable byte buffer                                                */

static int buf_reserve(struct buf *b, size_t need)
{
    char *np;
    size_t ncap;

    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    np = realloc(b->p, ncap);
    if (!np)
        return -1;
    b->p = np;
    b->cap = ncap;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ */
/* strict JSON scanning (RFC 8259); values are located, not converted  */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

/* p points at the opening quote; returns the byte after the closing one. */
static const char *scan_string(const char *p, const char *e)
{
    p++;
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            p++;
            if (p >= e)
                return NULL;
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                p++;
                break;
            case 'u':
                if (e - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) ||
                    !is_hex(p[3]) || !is_hex(p[4]))
                    return NULL;
                p += 5;
                break;
            default:
                return NULL;
            }
            continue;
        }
        if (c < 0x20)
            return NULL;
        p++;
    }
    return NULL;
}

static const char *scan_digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p == s ? NULL : p;
}

static const char *scan_number(const char *p, const char *e)
{
    if (p < e && *p == '-')
        p++;
    if (p >= e)
        return NULL;
    if (*p == '0')
        p++;
    else if (!(p = scan_digits(p, e)))
        return NULL;
    if (p < e && *p == '.') {
        if (!(p = scan_digits(p + 1, e)))
            return NULL;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = scan_digits(p, e)))
            return NULL;
    }
    return p;
}

static const char *scan_literal(const char *p, const char *e, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(e - p) < n || memcmp(p, lit, n) != 0)
        return NULL;
    return p + n;
}

static const char *scan_value(const char *p, const char *e, int depth,
                              enum jtype *type)
{
    enum jtype dummy;

    if (p >= e)
        return NULL;
    switch (*p) {
    case '"':
        *type = J_STR;
        return scan_string(p, e);
    case '{':
        *type = J_OBJ;
        if (depth >= MAX_DEPTH)
            return NULL;
        p = skip_ws(p + 1, e);
        if (p < e && *p == '}')
            return p + 1;
        for (;;) {
            if (p >= e || *p != '"' || !(p = scan_string(p, e)))
                return NULL;
            p = skip_ws(p, e);
            if (p >= e || *p != ':')
                return NULL;
            p = skip_ws(p + 1, e);
            if (!(p = scan_value(p, e, depth + 1, &dummy)))
                return NULL;
            p = skip_ws(p, e);
            if (p < e && *p == ',') {
                p = skip_ws(p + 1, e);
                continue;
            }
            if (p < e && *p == '}')
                return p + 1;
            return NULL;
        }
    case '[':
        *type = J_ARR;
        if (depth >= MAX_DEPTH)
            return NULL;
        p = skip_ws(p + 1, e);
        if (p < e && *p == ']')
            return p + 1;
        for (;;) {
            if (!(p = scan_value(p, e, depth + 1, &dummy)))
                return NULL;
            p = skip_ws(p, e);
            if (p < e && *p == ',') {
                p = skip_ws(p + 1, e);
                continue;
            }
            if (p < e && *p == ']')
                return p + 1;
            return NULL;
        }
    case 't':
        *type = J_BOOL;
        return scan_literal(p, e, "true");
    case 'f':
        *type = J_BOOL;
        return scan_literal(p, e, "false");
    case 'n':
        *type = J_NULL;
        return scan_literal(p, e, "null");
    default:
        *type = J_NUM;
        return scan_number(p, e);
    }
}

static void put_utf8(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static uint32_t hex4(const char *p)
{
    return (uint32_t)(hex_val(p[0]) << 12 | hex_val(p[1]) << 8 |
                      hex_val(p[2]) << 4 | hex_val(p[3]));
}

/* Decode a scanned JSON string (span includes the quotes) into raw bytes. */
static int unescape(const struct span *s, struct buf *out)
{
    const char *p = s->p + 1;
    const char *e = s->p + s->n - 1;
    size_t o = 0;

    /* the decoded form is never longer than the escaped form */
    if (buf_reserve(out, s->n + 1) != 0)
        return -1;
    while (p < e) {
        if (*p != '\\') {
            out->p[o++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'b': out->p[o++] = '\b'; p++; break;
        case 'f': out->p[o++] = '\f'; p++; break;
        case 'n': out->p[o++] = '\n'; p++; break;
        case 'r': out->p[o++] = '\r'; p++; break;
        case 't': out->p[o++] = '\t'; p++; break;
        case 'u': {
            uint32_t cp = hex4(p + 1);
            p += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return -2;
                lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return -2;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -2;
            }
            put_utf8(out->p, &o, cp);
            break;
        }
        default: /* " \ / */
            out->p[o++] = *p++;
            break;
        }
    }
    out->p[o] = '\0';
    out->len = o;
    return 0;
}

/* Copy a scanned JSON value without insignificant whitespace. */
static int compact(const struct span *s, struct buf *out)
{
    size_t o = 0;
    int in_str = 0;

    if (buf_reserve(out, s->n + 1) != 0)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        char c = s->p[i];
        if (in_str) {
            out->p[o++] = c;
            if (c == '\\')
                out->p[o++] = s->p[++i];
            else if (c == '"')
                in_str = 0;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else {
            out->p[o++] = c;
            if (c == '"')
                in_str = 1;
        }
    }
    out->p[o] = '\0';
    out->len = o;
    return 0;
}

/* An integer field: digits only (no fraction/exponent), fits int64. */
static int span_int64(const struct span *s, int64_t *out)
{
    char tmp[32];
    char *end = NULL;
    long long v;

    if (s->type != J_NUM || s->n >= sizeof(tmp))
        return -1;
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i] == '.' || s->p[i] == 'e' || s->p[i] == 'E')
            return -1;
    memcpy(tmp, s->p, s->n);
    tmp[s->n] = '\0';
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int key_is(const struct span *k, const char *name)
{
    size_t n = strlen(name);
    return k->n == n + 2 && memcmp(k->p + 1, name, n) == 0;
}

/* ------------------------------------------------------------------ */
/* one input line -> one message                                       */

struct line_msg {
    struct span topic, partition, key, value, timestamp, headers;
};

static int parse_line(const char *line, size_t len, struct line_msg *m,
                      const char **why)
{
    const char *p = line, *e = line + len;

    memset(m, 0, sizeof(*m));
    p = skip_ws(p, e);
    if (p >= e || *p != '{') {
        *why = "not a JSON object";
        return -1;
    }
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
        goto tail;
    }
    for (;;) {
        struct span k, v;
        struct span *slot;

        if (p >= e || *p != '"') {
            *why = "expected a field name";
            return -1;
        }
        k.p = p;
        if (!(p = scan_string(p, e))) {
            *why = "bad string";
            return -1;
        }
        k.n = (size_t)(p - k.p);
        k.type = J_STR;
        p = skip_ws(p, e);
        if (p >= e || *p != ':') {
            *why = "expected ':'";
            return -1;
        }
        p = skip_ws(p + 1, e);
        v.p = p;
        if (!(p = scan_value(p, e, 1, &v.type))) {
            *why = "invalid JSON value";
            return -1;
        }
        v.n = (size_t)(p - v.p);

        if (key_is(&k, "topic"))
            slot = &m->topic;
        else if (key_is(&k, "partition"))
            slot = &m->partition;
        else if (key_is(&k, "key"))
            slot = &m->key;
        else if (key_is(&k, "value"))
            slot = &m->value;
        else if (key_is(&k, "timestamp"))
            slot = &m->timestamp;
        else if (key_is(&k, "headers"))
            slot = &m->headers;
        else {
            *why = "unknown field (expected topic, partition, key, value, "
                   "timestamp, headers)";
            return -1;
        }
        *slot = v;

        p = skip_ws(p, e);
        if (p < e && *p == ',') {
            p = skip_ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}') {
            p++;
            break;
        }
        *why = "expected ',' or '}'";
        return -1;
    }
tail:
    p = skip_ws(p, e);
    if (p != e) {
        *why = "trailing characters after the JSON object";
        return -1;
    }
    return 0;
}

/* Build the headers of a message from the "headers" object. */
static int build_headers(const struct span *h, rd_kafka_headers_t **out,
                         struct buf *name, struct buf *val, const char **why)
{
    const char *p = h->p, *e = h->p + h->n;
    rd_kafka_headers_t *hdrs = NULL;
    int rc = -1;

    *out = NULL;
    if (h->type == J_NULL || h->type == J_NONE)
        return 0;
    if (h->type != J_OBJ) {
        *why = "\"headers\" must be an object of strings";
        goto done;
    }
    hdrs = rd_kafka_headers_new(8);
    if (!hdrs) {
        *why = "out of memory";
        goto done;
    }
    p = skip_ws(p + 1, e);
    while (p < e && *p == '"') {
        struct span k, v;
        rd_kafka_resp_err_t err;

        k.p = p;
        p = scan_string(p, e); /* already validated */
        k.n = (size_t)(p - k.p);
        k.type = J_STR;
        p = skip_ws(p, e);
        p = skip_ws(p + 1, e); /* ':' */
        v.p = p;
        p = scan_value(p, e, 1, &v.type);
        v.n = (size_t)(p - v.p);
        if (unescape(&k, name) != 0) {
            *why = "bad header name string";
            goto done;
        }
        if (v.type == J_STR) {
            if (unescape(&v, val) != 0) {
                *why = "bad header value string";
                goto done;
            }
            err = rd_kafka_header_add(hdrs, name->p, (ssize_t)name->len,
                                      val->p, (ssize_t)val->len);
        } else if (v.type == J_NULL) {
            err = rd_kafka_header_add(hdrs, name->p, (ssize_t)name->len,
                                      NULL, 0);
        } else {
            *why = "header values must be strings or null";
            goto done;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            *why = rd_kafka_err2str(err);
            goto done;
        }
        p = skip_ws(p, e);
        if (p < e && *p == ',')
            p = skip_ws(p + 1, e);
    }
    *out = hdrs;
    hdrs = NULL;
    rc = 0;
done:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    return rc;
}

/* Key or value payload: NULL for null/absent, raw bytes for a string,
 * compact JSON text otherwise. */
static int payload(const struct span *s, struct buf *b, const char **ptr,
                   size_t *len, const char **why)
{
    switch (s->type) {
    case J_NONE:
    case J_NULL:
        *ptr = NULL;
        *len = 0;
        return 0;
    case J_STR:
        if (unescape(s, b) != 0) {
            *why = "bad string (lone surrogate escape?)";
            return -1;
        }
        break;
    default:
        if (compact(s, b) != 0) {
            *why = "out of memory";
            return -1;
        }
        break;
    }
    *ptr = b->p;
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
    struct buf kbuf = {0}, vbuf = {0}, tbuf = {0}, hname = {0}, hval = {0};
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
        if (skip_ws(line, line + len) == line + len)
            continue; /* blank line */

        if (parse_line(line, (size_t)len, &m, &why) != 0)
            goto bad_line;

        if (m.topic.type == J_STR) {
            if (unescape(&m.topic, &tbuf) != 0 ||
                strlen(tbuf.p) != tbuf.len || tbuf.len == 0) {
                why = "bad \"topic\"";
                goto bad_line;
            }
            topic = tbuf.p;
        } else if (m.topic.type == J_NONE || m.topic.type == J_NULL) {
            topic = st.default_topic;
            if (!topic) {
                why = "no \"topic\" and no --topic";
                goto bad_line;
            }
        } else {
            why = "\"topic\" must be a string";
            goto bad_line;
        }
        if (m.partition.type != J_NONE && m.partition.type != J_NULL) {
            if (span_int64(&m.partition, &partition) != 0 || partition < -1 ||
                partition > INT32_MAX) {
                why = "\"partition\" must be an integer >= 0";
                goto bad_line;
            }
        }
        if (m.timestamp.type != J_NONE && m.timestamp.type != J_NULL) {
            if (span_int64(&m.timestamp, &ts) != 0 || ts < 0) {
                why = "\"timestamp\" must be an integer >= 0 (ms)";
                goto bad_line;
            }
        }
        if (payload(&m.key, &kbuf, &kp, &kl, &why) != 0 ||
            payload(&m.value, &vbuf, &vp, &vl, &why) != 0)
            goto bad_line;
        if (build_headers(&m.headers, &hdrs, &hname, &hval, &why) != 0)
            goto bad_line;

        rkt = topic_handle(&st, topic);
        if (!rkt) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
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
    buf_free(&kbuf);
    buf_free(&vbuf);
    buf_free(&tbuf);
    buf_free(&hname);
    buf_free(&hval);
    return rc;
}
