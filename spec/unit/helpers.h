/*
 * helpers.h: fixtures shared by the C unit tests: a fake environment for
 * rtu_config_load, temporary folders and files, and BSON comparison/printing.
 * Everything is static so each test executable takes only what it uses.
 */
#ifndef RTU_TEST_HELPERS_H
#define RTU_TEST_HELPERS_H

#include <bson/bson.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* ---- fake environment --------------------------------------------------- */

#define ENV_MAX 96
static char *env_names_[ENV_MAX], *env_vals_[ENV_MAX];
static size_t env_n_;

static __attribute__((unused)) void env_clear(void) {
  for (size_t i = 0; i < env_n_; i++) {
    free(env_names_[i]);
    free(env_vals_[i]);
  }
  env_n_ = 0;
}

/* Sets name to val; val NULL removes the variable. */
static __attribute__((unused)) void env_set(const char *name, const char *val) {
  for (size_t i = 0; i < env_n_; i++) {
    if (strcmp(env_names_[i], name)) continue;
    free(env_vals_[i]);
    if (val) {
      env_vals_[i] = strdup(val);
    } else {
      free(env_names_[i]);
      env_n_--;
      env_names_[i] = env_names_[env_n_];
      env_vals_[i] = env_vals_[env_n_];
    }
    return;
  }
  if (!val || env_n_ == ENV_MAX) return;
  env_names_[env_n_] = strdup(name);
  env_vals_[env_n_] = strdup(val);
  env_n_++;
}

static __attribute__((unused)) const char *env_get(const char *name) {
  for (size_t i = 0; i < env_n_; i++)
    if (!strcmp(env_names_[i], name)) return env_vals_[i];
  return NULL;
}

/* The Lua runtime folder: LUA_RUNTIME_FOLDER (set by ctest), else the source's. */
static __attribute__((unused)) const char *lua_runtime_dir(void) {
  const char *d = getenv("LUA_RUNTIME_FOLDER");
  return d && *d ? d : RTU_SOURCE_LUA_DIR;
}

/* ---- temporary files ---------------------------------------------------- */

/* A fresh folder /tmp/rtu-unit-<tag>-XXXXXX; the caller frees the string. */
static __attribute__((unused)) char *tmp_dir(const char *tag) {
  char buf[256];
  snprintf(buf, sizeof buf, "/tmp/rtu-unit-%s-XXXXXX", tag);
  if (!mkdtemp(buf)) {
    fprintf(stderr, "mkdtemp %s: %s\n", buf, strerror(errno));
    exit(2);
  }
  return strdup(buf);
}

/* Creates dir/sub (when sub is not NULL) and returns its path (malloc'd). */
static __attribute__((unused)) char *sub_dir(const char *dir, const char *sub) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", dir, sub);
  mkdir(buf, 0700);
  return strdup(buf);
}

static __attribute__((unused)) void write_file(const char *dir, const char *name,
                                               const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

static int rm_one_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static __attribute__((unused)) void rm_rf(const char *dir) {
  if (dir) nftw(dir, rm_one_, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- problems ----------------------------------------------------------- */

/* The first problem line containing every one of the NULL-terminated needles. */
static __attribute__((unused, sentinel)) const char *find_problem(const rtu_problems_t *p, ...) {
  for (size_t i = 0; i < p->n; i++) {
    va_list ap;
    va_start(ap, p);
    bool all = true;
    const char *needle;
    while ((needle = va_arg(ap, const char *)))
      if (!strstr(p->lines[i], needle)) all = false;
    va_end(ap);
    if (all) return p->lines[i];
  }
  return NULL;
}

static __attribute__((unused)) void print_problems(const rtu_problems_t *p) {
  for (size_t i = 0; i < p->n; i++) fprintf(stderr, "    problem: %s\n", p->lines[i]);
}

/* ---- BSON --------------------------------------------------------------- */

/* Canonical extended JSON (types visible: $numberInt, $numberLong, ...). */
static __attribute__((unused)) char *bson_canon(const bson_t *doc) {
  char *s = bson_as_canonical_extended_json(doc, NULL);
  return s ? s : bson_strdup("(invalid bson)");
}

static bool bson_iter_equal_unordered_(const bson_iter_t *a, const bson_iter_t *b);

/* Documents equal as sets of fields (order ignored, recursively), types and
 * values exact; `skip` (NULL-terminated) names top-level fields to ignore. */
static bool bson_equal_unordered_skip_(const bson_t *a, const bson_t *b, const char *const *skip,
                                       bool array) {
  bson_iter_t ia, ib;
  if (!bson_iter_init(&ia, a) || !bson_iter_init(&ib, b)) return false;
  if (array) {
    for (;;) {
      bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
      if (na != nb) return false;
      if (!na) return true;
      if (!bson_iter_equal_unordered_(&ia, &ib)) return false;
    }
  }
  size_t na = 0, nb = 0;
  while (bson_iter_next(&ia)) {
    const char *k = bson_iter_key(&ia);
    bool skipped = false;
    for (size_t i = 0; skip && skip[i]; i++) skipped |= !strcmp(skip[i], k);
    if (skipped) continue;
    na++;
    bson_iter_t f;
    if (!bson_iter_init_find(&f, b, k)) return false;
    if (!bson_iter_equal_unordered_(&ia, &f)) return false;
  }
  while (bson_iter_next(&ib)) {
    const char *k = bson_iter_key(&ib);
    bool skipped = false;
    for (size_t i = 0; skip && skip[i]; i++) skipped |= !strcmp(skip[i], k);
    if (!skipped) nb++;
  }
  return na == nb;
}

static bool bson_iter_equal_unordered_(const bson_iter_t *a, const bson_iter_t *b) {
  if (bson_iter_type(a) != bson_iter_type(b)) return false;
  switch (bson_iter_type(a)) {
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    uint32_t la, lb;
    const uint8_t *da, *db;
    bson_t sa, sb;
    if (BSON_ITER_HOLDS_ARRAY(a)) {
      bson_iter_array(a, &la, &da);
      bson_iter_array(b, &lb, &db);
    } else {
      bson_iter_document(a, &la, &da);
      bson_iter_document(b, &lb, &db);
    }
    if (!bson_init_static(&sa, da, la) || !bson_init_static(&sb, db, lb)) return false;
    return bson_equal_unordered_skip_(&sa, &sb, NULL, BSON_ITER_HOLDS_ARRAY(a));
  }
  case BSON_TYPE_DOUBLE: {
    double x = bson_iter_double(a), y = bson_iter_double(b);
    return x == y || (x != x && y != y);
  }
  default: {
    const bson_value_t *va = bson_iter_value((bson_iter_t *)a);
    const bson_value_t *vb = bson_iter_value((bson_iter_t *)b);
    bson_t da = BSON_INITIALIZER, db = BSON_INITIALIZER;
    bson_append_value(&da, "v", 1, va);
    bson_append_value(&db, "v", 1, vb);
    bool eq = bson_equal(&da, &db);
    bson_destroy(&da);
    bson_destroy(&db);
    return eq;
  }
  }
}

static __attribute__((unused)) bool bson_equal_unordered(const bson_t *a, const bson_t *b,
                                                         const char *const *skip) {
  return bson_equal_unordered_skip_(a, b, skip, false);
}

/* A document from canonical/relaxed extended JSON; exits on a typo in a test. */
static __attribute__((unused)) bson_t *json_doc(const char *json) {
  bson_error_t err;
  bson_t *d = bson_new_from_json((const uint8_t *)json, -1, &err);
  if (!d) {
    fprintf(stderr, "bad test JSON %s: %s\n", json, err.message);
    exit(2);
  }
  return d;
}

#endif
