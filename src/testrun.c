/*
 * testrun.c: owns `rtu test`: a case's messages made into partition runs as the
 * consumer makes them from a poll, applied by batch.c and the strategies stage
 * (stage.c) exactly as a pool worker applies them, with the store interface
 * backed by store_memory.c (seeded with the case's `given`) and the producer by
 * emit.c's capture; then the expectations compared with what was stored and
 * produced. It holds no pipeline logic of its own and connects to nothing.
 */
#include "testrun.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "emit.h"
#include "json_read.h"
#include "json_write.h"
#include "pool.h"
#include "problems.h"
#include "stage.h"
#include "store_memory.h"
#include "testcase.h"
#include "testvalue.h"
#include "util.h"

/* First default timestamp: messages without one get this, then one second more each. */
#define BASE_TIMESTAMP 1760000000000LL

typedef struct {
  char *topic;
  bson_t key;   /* {"v": key} (JSON, else the text) */
  bson_t value; /* {"v": value} */
} captured_t;

typedef struct {
  const rtu_config_t *cfg;
  captured_t *out;
  size_t nout, cap;
  bson_string_t *explain; /* NULL without --explain */
  rtu_store_t *store;
} run_ctx_t;

/* ---- values ------------------------------------------------------------------ */

/* ---- capture and explain -------------------------------------------------------- */

static rtu_err_t capture(void *vctx, const char *topic, const char *key, size_t key_len,
                         const char *value, size_t value_len, char *errstr, size_t errstr_size) {
  run_ctx_t *ctx = vctx;
  if (ctx->nout == ctx->cap) {
    size_t cap = ctx->cap ? 2 * ctx->cap : 16;
    captured_t *out = realloc(ctx->out, cap * sizeof *out);
    if (!out) {
      snprintf(errstr, errstr_size, "out of memory");
      return RTU_ERR_FATAL;
    }
    ctx->out = out;
    ctx->cap = cap;
  }
  captured_t *c = &ctx->out[ctx->nout++];
  c->topic = strdup(topic);
  rtu_testvalue_parse(key, key_len, &c->key);
  rtu_testvalue_parse(value, value_len, &c->value);
  return RTU_OK;
}

static void on_lookup(void *vctx, const char *collection, const bson_t *filter,
                      const bson_t *opts, bson_t *const *found, size_t n) {
  run_ctx_t *ctx = vctx;
  if (!ctx->explain) return;
  bson_string_append_printf(ctx->explain, "    lookup %s ", collection);
  rtu_testvalue_canonical(filter, ctx->explain);
  if (opts && !bson_empty(opts)) {
    bson_string_append(ctx->explain, " options ");
    rtu_testvalue_canonical(opts, ctx->explain);
  }
  bson_string_append_printf(ctx->explain, " -> %zu document(s)\n", n);
  for (size_t i = 0; i < n; i++) {
    bson_string_append(ctx->explain, "      ");
    rtu_testvalue_canonical(found[i], ctx->explain);
    bson_string_append_c(ctx->explain, '\n');
  }
}

typedef struct {
  const bson_t *doc, *key;
  bool after;
} stored_ctx_t;

static void compare_stored(void *vctx, const bson_t *stored) {
  stored_ctx_t *sc = vctx;
  bson_string_t *ignored = bson_string_new(NULL);
  if (rtu_testvalue_doc_matches(sc->key, stored, ignored) && rtu_testvalue_doc_matches(sc->doc, stored, ignored))
    sc->after = true;
  bson_string_free(ignored, true);
}

/* The document (as much of it as the strategies read) is the record as the
 * run left it, rather than as it was before. */
static bool is_after_image(const run_ctx_t *ctx, const rtu_projection_t *p, const bson_t *doc) {
  bson_t key = BSON_INITIALIZER;
  bson_iter_t it;
  for (size_t k = 0; k < p->npk; k++)
    if (bson_iter_init_find(&it, doc, p->pk_dst[k])) bson_append_iter(&key, p->pk_dst[k], -1, &it);
  stored_ctx_t sc = {doc, &key, false};
  rtu_store_memory_each(ctx->store, p->destination, compare_stored, &sc);
  bson_destroy(&key);
  return sc.after;
}

static void doc_key(const rtu_projection_t *p, const bson_t *doc, bson_string_t *out) {
  bson_t key = BSON_INITIALIZER;
  bson_iter_t it;
  for (size_t k = 0; k < p->npk; k++)
    if (bson_iter_init_find(&it, doc, p->pk_dst[k])) bson_append_iter(&key, p->pk_dst[k], -1, &it);
  rtu_testvalue_canonical(&key, out);
  bson_destroy(&key);
}

/* Before the strategies' call: the documents handed to them; after it: the
 * identifiers each document produced. */
static void on_stage(void *vctx, const rtu_projection_t *p, const bson_t *const *docs,
                     size_t ndocs, const rtu_identified_t *ids, size_t nids) {
  run_ctx_t *ctx = vctx;
  bson_string_t *out = ctx->explain;
  if (!out) return;
  if (!ids) {
    bson_string_append_printf(out, "  strategies of %s on %zu document(s):\n", p->name, ndocs);
    for (size_t d = 0; d < ndocs; d++) {
      bson_string_append_printf(out, "    [%zu] %s ", d,
                                is_after_image(ctx, p, docs[d]) ? "after " : "before");
      doc_key(p, docs[d], out);
      bson_string_append_c(out, '\n');
    }
    return;
  }
  for (size_t d = 0; d < ndocs; d++) {
    bson_string_append_printf(out, "    [%zu] identifiers:", d);
    size_t found = 0;
    for (size_t i = 0; i < nids; i++) {
      if (ids[i].origin != d) continue;
      bson_string_append_printf(out, "%s %s ", found++ ? "," : "", ids[i].type);
      rtu_testvalue_canonical(&ids[i].identifier, out);
    }
    bson_string_append(out, found ? "\n" : " none (or found first by another document)\n");
  }
}

static void ctx_reset(run_ctx_t *ctx) {
  for (size_t i = 0; i < ctx->nout; i++) {
    free(ctx->out[i].topic);
    bson_destroy(&ctx->out[i].key);
    bson_destroy(&ctx->out[i].value);
  }
  free(ctx->out);
  ctx->out = NULL;
  ctx->nout = ctx->cap = 0;
}

/* ---- messages ---------------------------------------------------------------- */

typedef struct {
  rtu_msg_t *msgs;
  char **texts; /* owned key and value texts, topics */
  size_t n, ntexts;
} poll_t;

static void poll_free(poll_t *p) {
  for (size_t i = 0; i < p->n; i++)
    if (p->msgs[i].headers) rd_kafka_headers_destroy((rd_kafka_headers_t *)p->msgs[i].headers);
  for (size_t i = 0; i < p->ntexts; i++) free(p->texts[i]);
  free(p->msgs);
  free(p->texts);
  memset(p, 0, sizeof *p);
}

static char *keep(poll_t *p, char *s) {
  p->texts[p->ntexts++] = s;
  return s;
}

/* The Kafka bytes of a key or a value: a string as its raw text, anything else
 * as JSON; NULL for null or missing. */
static char *message_text(const bson_t *m, const char *field, size_t *len) {
  bson_iter_t it;
  *len = 0;
  if (!bson_iter_init_find(&it, m, field) || BSON_ITER_HOLDS_NULL(&it)) return NULL;
  if (BSON_ITER_HOLDS_UTF8(&it)) {
    uint32_t l;
    const char *s = bson_iter_utf8(&it, &l);
    *len = l;
    return bson_strndup(s, l);
  }
  bson_string_t *out = bson_string_new(NULL);
  rtu_testvalue_json(&it, out);
  *len = out->len;
  return bson_string_free(out, false);
}

typedef struct {
  char *topic;
  int32_t partition;
  int64_t next;
} offsets_t;

/* One poll's messages (the array at it), offsets and timestamps defaulted. */
static bool read_poll(const bson_iter_t *arr, poll_t *p, offsets_t *offs, size_t *noffs,
                      int64_t *ts, bson_string_t *err) {
  bson_iter_t it;
  size_t n = 0;
  if (!bson_iter_recurse(arr, &it)) return false;
  while (bson_iter_next(&it)) n++;
  p->msgs = calloc(n ? n : 1, sizeof *p->msgs);
  p->texts = calloc(3 * n + 1, sizeof *p->texts);
  if (!p->msgs || !p->texts) return false;
  bson_iter_recurse(arr, &it);
  while (bson_iter_next(&it)) {
    bson_t m;
    bson_iter_t f;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !rtu_testvalue_sub_doc(&it, &m) ||
        !bson_iter_init_find(&f, &m, "topic") || !BSON_ITER_HOLDS_UTF8(&f)) {
      bson_string_append(err, "    a message needs a \"topic\" (a string)\n");
      return false;
    }
    rtu_msg_t *msg = &p->msgs[p->n++];
    msg->topic = keep(p, strdup(bson_iter_utf8(&f, NULL)));
    msg->partition = bson_iter_init_find(&f, &m, "partition") ? (int32_t)bson_iter_as_int64(&f) : 0;
    offsets_t *o = NULL;
    for (size_t k = 0; k < *noffs; k++)
      if (!strcmp(offs[k].topic, msg->topic) && offs[k].partition == msg->partition) o = &offs[k];
    if (!o && *noffs < 256) {
      o = &offs[(*noffs)++];
      *o = (offsets_t){strdup(msg->topic), msg->partition, 0};
    }
    msg->offset = bson_iter_init_find(&f, &m, "offset") ? bson_iter_as_int64(&f) : o ? o->next : 0;
    if (o) o->next = msg->offset + 1;
    msg->timestamp = bson_iter_init_find(&f, &m, "timestamp") ? bson_iter_as_int64(&f) : *ts;
    *ts = msg->timestamp + 1000;
    msg->key = keep(p, message_text(&m, "key", &msg->key_len));
    msg->value = keep(p, message_text(&m, "value", &msg->value_len));
    bson_t h;
    if (rtu_testvalue_field_doc(&m, "headers", &h) && bson_iter_init(&f, &h)) {
      rd_kafka_headers_t *hs = rd_kafka_headers_new(4);
      while (bson_iter_next(&f)) {
        uint32_t l = 0;
        const char *v = BSON_ITER_HOLDS_UTF8(&f) ? bson_iter_utf8(&f, &l) : NULL;
        rd_kafka_header_add(hs, bson_iter_key(&f), -1, v, v ? (ssize_t)l : -1);
      }
      msg->headers = hs;
    }
  }
  return true;
}

/* ---- a case ---------------------------------------------------------------------- */

typedef struct {
  const rtu_config_t *cfg;
  rtu_script_t *script;
  const char *lua_dir;
  bool explain;
} suite_t;

static int msg_cmp(const void *a, const void *b) {
  const rtu_msg_t *x = a, *y = b;
  int c = strcmp(x->topic, y->topic);
  if (c) return c;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Applies one poll as the consumer and a pool worker would: one run per
 * topic-partition, then each projection's strategies stage over the runs. */
static bool apply_poll(rtu_batch_t *batch, const rtu_config_t *cfg, poll_t *p,
                       bson_string_t *diff) {
  qsort(p->msgs, p->n, sizeof *p->msgs, msg_cmp);
  size_t njobs = 0;
  rtu_job_t *jobs = calloc(p->n ? p->n : 1, sizeof *jobs);
  bool ok = jobs != NULL;
  for (size_t i = 0; ok && i < p->n;) {
    size_t j = i;
    while (j < p->n && !strcmp(p->msgs[j].topic, p->msgs[i].topic) &&
           p->msgs[j].partition == p->msgs[i].partition)
      j++;
    const rtu_projection_t *proj = rtu_config_projection_for_topic(cfg, p->msgs[i].topic);
    if (!proj) {
      bson_string_append_printf(diff, "    topic %s is not in INVARIANT_TOPIC_MAP\n",
                                p->msgs[i].topic);
      ok = false;
      break;
    }
    jobs[njobs++] = (rtu_job_t){.projection = (size_t)(proj - cfg->projections),
                                .msgs = &p->msgs[i], .n = j - i};
    i = j;
  }
  for (size_t k = 0; ok && k < njobs; k++)
    jobs[k].err = rtu_batch_run(batch, jobs[k].projection, jobs[k].msgs, jobs[k].n,
                                &jobs[k].deferred, &jobs[k].res);
  rtu_deferred_t **runs = calloc(njobs ? njobs : 1, sizeof *runs);
  for (size_t proj = 0; ok && runs && proj < cfg->nprojections; proj++) {
    size_t nruns = 0;
    for (size_t k = 0; k < njobs; k++)
      if (jobs[k].projection == proj && jobs[k].err == RTU_OK && jobs[k].deferred.n > 0)
        runs[nruns++] = &jobs[k].deferred;
    if (nruns) rtu_stage_run(rtu_batch_stage(batch), proj, runs, nruns);
  }
  free(runs);
  for (size_t k = 0; k < njobs; k++) {
    if (jobs[k].err == RTU_OK) jobs[k].err = jobs[k].deferred.err;
    rtu_deferred_free(&jobs[k].deferred);
    const rtu_run_result_t *r = &jobs[k].res;
    if (jobs[k].err != RTU_OK || r->failed) {
      bson_string_append_printf(diff, "    %s[%d] stopped at offset %lld: %s\n",
                                jobs[k].msgs[0].topic, jobs[k].msgs[0].partition,
                                (long long)(r->failed ? r->fail_offset : jobs[k].msgs[0].offset),
                                r->cause);
      ok = false;
    }
  }
  free(jobs);
  return ok;
}

/* Seeds the store with given: {collection: [documents]}, __STATE__ filled in. */
static bool seed(rtu_store_t *store, const bson_t *c, bson_string_t *diff) {
  bson_t given;
  bson_iter_t it, docs;
  char err[RTU_ERRSTR_SIZE];
  if (!rtu_testvalue_field_doc(c, "given", &given) || !bson_iter_init(&it, &given)) return true;
  while (bson_iter_next(&it)) {
    if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &docs)) {
      bson_string_append_printf(diff, "    given.%s: an array of documents\n", bson_iter_key(&it));
      return false;
    }
    while (bson_iter_next(&docs)) {
      bson_t d, full = BSON_INITIALIZER;
      if (!rtu_testvalue_sub_doc(&docs, &d)) continue;
      bson_concat(&full, &d);
      if (!bson_has_field(&d, "__STATE__")) BSON_APPEND_UTF8(&full, "__STATE__", "PUBLIC");
      rtu_err_t rc = rtu_store_memory_insert(store, bson_iter_key(&it), &full, err, sizeof err);
      bson_destroy(&full);
      if (rc != RTU_OK) {
        bson_string_append_printf(diff, "    given: %s\n", err);
        return false;
      }
    }
  }
  return true;
}

static void collect(void *ctx, const bson_t *doc) {
  bson_t **out = ctx;
  if (!*out) *out = bson_copy(doc);
}

/* expect.projections: each document stored with at least its fields, or absent. */
static bool check_projections(const suite_t *s, rtu_store_t *store, const bson_t *expect,
                              bson_string_t *diff) {
  bson_t projs, docs;
  bson_iter_t it, d;
  bool ok = true;
  if (!rtu_testvalue_field_doc(expect, "projections", &projs) || !bson_iter_init(&it, &projs)) return true;
  while (bson_iter_next(&it)) {
    const char *coll = bson_iter_key(&it);
    const rtu_projection_t *p = NULL;
    for (size_t i = 0; i < s->cfg->nprojections; i++)
      if (!strcmp(s->cfg->projections[i].destination, coll) ||
          !strcmp(s->cfg->projections[i].name, coll))
        p = &s->cfg->projections[i];
    if (!rtu_testvalue_sub_doc(&it, &docs) || !bson_iter_init(&d, &docs)) continue;
    while (bson_iter_next(&d)) {
      bson_t exp, filter = BSON_INITIALIZER, want = BSON_INITIALIZER;
      bson_iter_t f;
      if (!rtu_testvalue_sub_doc(&d, &exp)) continue;
      bool absent = bson_iter_init_find(&f, &exp, "__absent") && bson_iter_as_bool(&f);
      bson_iter_init(&f, &exp);
      while (bson_iter_next(&f)) {
        const char *k = bson_iter_key(&f);
        if (!strcmp(k, "__absent")) continue;
        bson_append_iter(&want, k, -1, &f);
        bool key = !p;
        for (size_t i = 0; p && i < p->npk; i++) key |= !strcmp(p->pk_dst[i], k);
        if (key && !BSON_ITER_HOLDS_DOCUMENT(&f)) bson_append_iter(&filter, k, -1, &f);
      }
      bson_t *found = NULL;
      char err[RTU_ERRSTR_SIZE];
      if (rtu_store_find(store, p ? p->destination : coll, &filter, NULL, collect, &found, err,
                         sizeof err) != RTU_OK) {
        bson_string_append_printf(diff, "  %s: %s\n", coll, err);
        ok = false;
      } else if (absent && found) {
        bson_string_append_printf(diff, "  %s: unexpected document ", coll);
        rtu_testvalue_doc_json(found, diff);
        bson_string_append_c(diff, '\n');
        ok = false;
      } else if (!absent && !found) {
        bson_string_append_printf(diff, "  %s: missing document ", coll);
        rtu_testvalue_doc_json(&want, diff);
        bson_string_append_c(diff, '\n');
        ok = false;
      } else if (!absent) {
        bson_string_t *fields = bson_string_new(NULL);
        if (!rtu_testvalue_doc_matches(&want, found, fields)) {
          bson_string_append_printf(diff, "  %s: document ", coll);
          rtu_testvalue_doc_json(&filter, diff);
          bson_string_append_printf(diff, " differs:\n%s", fields->str);
          ok = false;
        }
        bson_string_free(fields, true);
      }
      if (found) bson_destroy(found);
      bson_destroy(&filter);
      bson_destroy(&want);
    }
  }
  return ok;
}

typedef struct {
  bson_t **docs;
  size_t n, cap;
} doclist_t;

static void collect_all(void *ctx, const bson_t *doc) {
  doclist_t *l = ctx;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    bson_t **docs = realloc(l->docs, cap * sizeof *docs);
    if (!docs) return;
    l->docs = docs;
    l->cap = cap;
  }
  l->docs[l->n++] = bson_copy(doc);
}

/* Same type and an identifier of the same fields with the same values. */
static bool same_pc(const bson_t *exp, const bson_t *act) {
  bson_t e, a;
  bson_string_t *ignored = bson_string_new(NULL);
  bool ok = rtu_testvalue_field_doc(exp, "identifier", &e) && rtu_testvalue_field_doc(act, "identifier", &a) &&
            bson_count_keys(&e) == bson_count_keys(&a) && rtu_testvalue_doc_matches(&e, &a, ignored);
  bson_iter_t te, ta;
  ok = ok && bson_iter_init_find(&te, exp, "type") && bson_iter_init_find(&ta, act, "type") &&
       rtu_testvalue_same(&te, &ta);
  bson_string_free(ignored, true);
  return ok;
}

static void pc_json(const bson_t *pc, bson_string_t *out) {
  bson_t id;
  bson_iter_t t;
  bson_string_append(out, "{\"type\":");
  if (bson_iter_init_find(&t, pc, "type")) rtu_testvalue_json(&t, out);
  bson_string_append(out, ",\"identifier\":");
  if (rtu_testvalue_field_doc(pc, "identifier", &id)) rtu_testvalue_doc_json(&id, out);
  bson_string_append(out, "}");
}

/* expect.projectionChanges: exactly this set of (type, identifier). */
static bool check_pcs(const suite_t *s, rtu_store_t *store, const bson_t *expect,
                      bson_string_t *diff) {
  bson_t want;
  bson_iter_t it;
  if (!rtu_testvalue_field_doc(expect, "projectionChanges", &want)) return true;
  doclist_t got = {0};
  rtu_store_memory_each(store, s->cfg->pc_collection, collect_all, &got);
  bool *used = calloc(got.n + 1, sizeof *used), ok = true;
  bson_iter_init(&it, &want);
  while (bson_iter_next(&it)) {
    bson_t e;
    if (!rtu_testvalue_sub_doc(&it, &e)) continue;
    bool found = false;
    for (size_t i = 0; i < got.n && !found; i++)
      if (!used[i] && same_pc(&e, got.docs[i])) found = used[i] = true;
    if (!found) {
      bson_string_append(diff, "  projection change missing: ");
      pc_json(&e, diff);
      bson_string_append_c(diff, '\n');
      ok = false;
    }
  }
  for (size_t i = 0; i < got.n; i++) {
    if (!used[i]) {
      bson_string_append(diff, "  projection change unexpected: ");
      pc_json(got.docs[i], diff);
      bson_string_append_c(diff, '\n');
      ok = false;
    }
    bson_destroy(got.docs[i]);
  }
  free(got.docs);
  free(used);
  return ok;
}

static bool is_pr_update_topic(const rtu_config_t *cfg, const char *topic) {
  for (size_t i = 0; i < cfg->nprojections; i++)
    if (cfg->projections[i].pr_update_topic && !strcmp(cfg->projections[i].pr_update_topic, topic))
      return true;
  return false;
}

static void captured_json(const captured_t *c, bson_string_t *out) {
  bson_iter_t it;
  bson_string_append(out, "{\"topic\":");
  rtu_json_write_string(out, c->topic, strlen(c->topic));
  bson_string_append(out, ",\"key\":");
  if (bson_iter_init_find(&it, &c->key, "v")) rtu_testvalue_json(&it, out);
  bson_string_append(out, ",\"value\":");
  if (bson_iter_init_find(&it, &c->value, "v")) rtu_testvalue_json(&it, out);
  bson_string_append(out, "}");
}

static bool captured_matches(const bson_t *exp, const captured_t *c) {
  bson_iter_t e, a;
  bson_string_t *ignored = bson_string_new(NULL);
  bool ok = true;
  if (bson_iter_init_find(&e, exp, "topic"))
    ok = BSON_ITER_HOLDS_UTF8(&e) && !strcmp(bson_iter_utf8(&e, NULL), c->topic);
  if (ok && bson_iter_init_find(&e, exp, "key"))
    ok = bson_iter_init_find(&a, &c->key, "v") && rtu_testvalue_subset(&e, &a, "key", ignored);
  if (ok && bson_iter_init_find(&e, exp, "value"))
    ok = bson_iter_init_find(&a, &c->value, "v") && rtu_testvalue_subset(&e, &a, "value", ignored);
  bson_string_free(ignored, true);
  return ok;
}

/* expect.prUpdates / expect.kafkaProjectionChanges: each listed message
 * produced (a subset), [] none at all. */
static bool check_messages(const run_ctx_t *ctx, const bson_t *expect, const char *section,
                           bool pr, bson_string_t *diff) {
  bson_t want;
  bson_iter_t it;
  if (!rtu_testvalue_field_doc(expect, section, &want)) return true;
  bool ok = true, any = false;
  bool *used = calloc(ctx->nout + 1, sizeof *used);
  bson_iter_init(&it, &want);
  while (bson_iter_next(&it)) {
    bson_t e;
    any = true;
    if (!rtu_testvalue_sub_doc(&it, &e)) continue;
    bool found = false;
    for (size_t i = 0; i < ctx->nout && !found; i++)
      if (!used[i] && is_pr_update_topic(ctx->cfg, ctx->out[i].topic) == pr &&
          captured_matches(&e, &ctx->out[i]))
        found = used[i] = true;
    if (!found) {
      bson_string_append_printf(diff, "  %s: message missing: ", section);
      rtu_testvalue_doc_json(&e, diff);
      bson_string_append_c(diff, '\n');
      ok = false;
    }
  }
  bool listed = false;
  for (size_t i = 0; i < ctx->nout; i++) {
    if (is_pr_update_topic(ctx->cfg, ctx->out[i].topic) != pr) continue;
    if (!any || !ok) {
      if (!listed) bson_string_append_printf(diff, "  %s produced:\n", section);
      listed = true;
      bson_string_append(diff, "    ");
      captured_json(&ctx->out[i], diff);
      bson_string_append_c(diff, '\n');
      ok = false;
    }
  }
  free(used);
  return ok;
}

/* Runs case c; true when it passed. diff gets the differences (or the error). */
static bool run_case(const suite_t *s, const bson_t *c, bson_string_t *diff,
                     bson_string_t *explain) {
  char err[RTU_ERRSTR_SIZE];
  run_ctx_t ctx = {.cfg = s->cfg, .explain = explain};
  rtu_store_t *store = rtu_store_memory_new(s->cfg, err, sizeof err);
  rtu_emit_t *emit = rtu_emit_new_capture(capture, &ctx);
  rtu_batch_t *batch = store ? rtu_batch_new(s->cfg, s->script, store) : NULL;
  bool ok = batch && emit;
  if (!store) bson_string_append_printf(diff, "    %s\n", err);
  if (!ok) goto done;
  rtu_batch_set_emit(batch, emit);
  ctx.store = store;
  rtu_store_memory_set_trace(store, on_lookup, &ctx);
  rtu_stage_set_trace(rtu_batch_stage(batch), on_stage, &ctx);
  ok = seed(store, c, diff);

  bson_iter_t it, sub;
  offsets_t offs[256];
  size_t noffs = 0;
  int64_t ts = BASE_TIMESTAMP;
  if (ok && bson_iter_init_find(&it, c, "messages") && BSON_ITER_HOLDS_ARRAY(&it)) {
    /* an array of messages is one poll; an array of arrays, one poll each */
    bson_iter_t first;
    bool nested = bson_iter_recurse(&it, &first) && bson_iter_next(&first) &&
                  BSON_ITER_HOLDS_ARRAY(&first);
    if (!nested) sub = it;
    else bson_iter_recurse(&it, &sub);
    while (ok && (!nested || bson_iter_next(&sub))) {
      poll_t p = {0};
      ok = read_poll(&sub, &p, offs, &noffs, &ts, diff) && apply_poll(batch, s->cfg, &p, diff);
      poll_free(&p);
      if (!nested) break;
    }
  }
  for (size_t k = 0; k < noffs; k++) free(offs[k].topic);
  rtu_store_memory_set_trace(store, NULL, NULL); /* the checks' own reads are not the case's */
  bson_t expect;
  if (ok && rtu_testvalue_field_doc(c, "expect", &expect)) {
    ok &= check_projections(s, store, &expect, diff);
    ok &= check_pcs(s, store, &expect, diff);
    ok &= check_messages(&ctx, &expect, "prUpdates", true, diff);
    ok &= check_messages(&ctx, &expect, "kafkaProjectionChanges", false, diff);
  }
  if (explain) {
    doclist_t pcs = {0};
    rtu_store_memory_each(store, s->cfg->pc_collection, collect_all, &pcs);
    for (size_t i = 0; i < pcs.n; i++) {
      bson_string_append(explain, "  projection change recorded: ");
      pc_json(pcs.docs[i], explain);
      bson_string_append_c(explain, '\n');
      bson_destroy(pcs.docs[i]);
    }
    free(pcs.docs);
  }
done:
  rtu_batch_free(batch);
  rtu_emit_free(emit);
  rtu_store_free(store);
  ctx_reset(&ctx);
  return ok;
}

/* ---- files and the command ----------------------------------------------------- */

typedef struct {
  size_t passed, total;
  bool config_error;
} tally_t;

static void case_name(const bson_t *c, const char *file, size_t index, char *out, size_t size) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, c, "name") && BSON_ITER_HOLDS_UTF8(&it))
    snprintf(out, size, "%s", bson_iter_utf8(&it, NULL));
  else snprintf(out, size, "%s#%zu", file, index + 1);
}

static void run_file(const char *file, const char *lua_dir, bool explain, tally_t *t) {
  char err[RTU_ERRSTR_SIZE];
  rtu_env_undo_t undo = {0};
  rtu_problems_t problems = {0};
  rtu_generation_t *gen = NULL;
  bson_t doc;
  bool have_doc = false;
  char *env = rtu_case_env_file(file);
  if (env && rtu_env_apply(env, &undo, err, sizeof err) != RTU_OK) {
    fprintf(stderr, "rtu test: %s\n", err);
    t->config_error = true;
    goto done;
  }
  /* Nothing connects: the connection variables only have to be valid. */
  rtu_env_default("KAFKA_BROKERS", "127.0.0.1:9", &undo);
  rtu_env_default("KAFKA_GROUP_ID", "rtu-test", &undo);
  rtu_env_default("MONGODB_URL", "mongodb://127.0.0.1:9", &undo);
  rtu_env_default("PROJECTIONS_DATABASE_NAME", "rtu-test", &undo);
  gen = rtu_generation_load(NULL, lua_dir, 1, &problems);
  if (!gen) {
    fprintf(stderr, "rtu test: %s: configuration%s%s:\n", file, env ? " from " : "",
            env ? env : "");
    for (size_t i = 0; i < problems.n; i++) fprintf(stderr, "  %s\n", problems.lines[i]);
    t->config_error = true;
    goto done;
  }
  if (rtu_case_file_read(file, &doc, err, sizeof err) != RTU_OK) {
    fprintf(stderr, "rtu test: %s\n", err);
    t->config_error = true;
    goto done;
  }
  have_doc = true;
  suite_t s = {gen->cfg, gen->scripts[0], lua_dir, explain};
  bson_iter_t it, arr;
  if (!bson_iter_init_find(&it, &doc, "v")) goto done;
  bool many = BSON_ITER_HOLDS_ARRAY(&it);
  if (many) bson_iter_recurse(&it, &arr);
  for (size_t index = 0; !many || bson_iter_next(&arr); index++) {
    bson_t c;
    if (!rtu_testvalue_sub_doc(many ? &arr : &it, &c)) {
      fprintf(stderr, "rtu test: %s: a case is a JSON object\n", file);
      t->config_error = true;
      break;
    }
    char name[512];
    case_name(&c, file, index, name, sizeof name);
    bson_string_t *diff = bson_string_new(NULL);
    bson_string_t *trace = explain ? bson_string_new(NULL) : NULL;
    bool ok = run_case(&s, &c, diff, trace);
    t->total++;
    t->passed += ok;
    printf("%s %s\n%s", ok ? "ok" : "FAIL", name, diff->str);
    if (trace) printf("  explain:\n%s", trace->str);
    bson_string_free(diff, true);
    if (trace) bson_string_free(trace, true);
    if (!many) break;
  }
done:
  if (have_doc) bson_destroy(&doc);
  rtu_generation_free(gen);
  rtu_problems_free(&problems);
  rtu_env_restore(&undo);
  free(env);
}

int rtu_testrun_main(int argc, char **argv, const char *default_lua_dir) {
  bool explain = false;
  rtu_case_files_t files = {0};
  char err[RTU_ERRSTR_SIZE];
  int rc = 2;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--explain")) {
      explain = true;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "rtu test: unknown option '%s' (only --explain)\n", argv[i]);
      goto done;
    } else if (rtu_case_files_add(&files, argv[i], err, sizeof err) != RTU_OK) {
      fprintf(stderr, "rtu test: %s\n", err);
      goto done;
    }
  }
  if (files.n == 0) {
    fprintf(stderr, "usage: rtu test [--explain] PATH... (*.test.json files or folders)\n");
    goto done;
  }
  rtu_case_files_sort(&files);
  tally_t t = {0};
  for (size_t i = 0; i < files.n; i++) run_file(files.files[i], default_lua_dir, explain, &t);
  printf("%zu/%zu passed\n", t.passed, t.total);
  rc = t.config_error ? 2 : t.passed == t.total ? 0 : 1;
done:
  rtu_case_files_free(&files);
  return rc;
}
