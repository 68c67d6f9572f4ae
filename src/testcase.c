/*
 * testcase.c: owns finding and reading `rtu test` case files and the `env`
 * files that configure them (applied to the process environment, from which the
 * configuration is loaded as `rtu run` loads it, and undone after). It runs
 * nothing: testrun.c does.
 */
#include "testcase.h"

#include <ctype.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_read.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

static bool push_file(rtu_case_files_t *cf, const char *path) {
  if (cf->n == cf->cap) {
    size_t cap = cf->cap ? 2 * cf->cap : 16;
    char **files = realloc(cf->files, cap * sizeof *files);
    if (!files) return false;
    cf->files = files;
    cf->cap = cap;
  }
  return (cf->files[cf->n] = strdup(path)) != NULL && ++cf->n;
}

rtu_err_t rtu_case_files_add(rtu_case_files_t *cf, const char *path, char *errstr,
                             size_t errstr_size) {
  struct stat st;
  if (stat(path, &st) != 0) {
    snprintf(errstr, errstr_size, "%s: no such file or folder", path);
    return RTU_ERR_CONFIG;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (!push_file(cf, path)) goto oom;
    return RTU_OK;
  }
  DIR *d = opendir(path);
  if (!d) {
    snprintf(errstr, errstr_size, "%s: cannot open the folder", path);
    return RTU_ERR_CONFIG;
  }
  struct dirent *e;
  rtu_err_t rc = RTU_OK;
  while (rc == RTU_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    if (stat(sub, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) rc = rtu_case_files_add(cf, sub, errstr, errstr_size);
    else if (ends_with(e->d_name, ".test.json") && !push_file(cf, sub)) {
      closedir(d);
      goto oom;
    }
  }
  closedir(d);
  return rc;
oom:
  snprintf(errstr, errstr_size, "out of memory");
  return RTU_ERR_FATAL;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void rtu_case_files_sort(rtu_case_files_t *cf) {
  if (cf->n) qsort(cf->files, cf->n, sizeof *cf->files, str_cmp);
}

void rtu_case_files_free(rtu_case_files_t *cf) {
  for (size_t i = 0; i < cf->n; i++) free(cf->files[i]);
  free(cf->files);
  memset(cf, 0, sizeof *cf);
}

rtu_err_t rtu_case_file_read(const char *file, bson_t *out, char *errstr, size_t errstr_size) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    snprintf(errstr, errstr_size, "%s: cannot open", file);
    return RTU_ERR_CONFIG;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      char *bigger = realloc(buf, cap *= 2);
      if (!bigger) free(buf);
      buf = bigger;
    }
  }
  fclose(f);
  if (!buf) {
    snprintf(errstr, errstr_size, "out of memory");
    return RTU_ERR_FATAL;
  }
  char err[RTU_ERRSTR_SIZE];
  rtu_err_t rc = rtu_json_read_bson(buf, len, out, err, sizeof err);
  free(buf);
  if (rc != RTU_OK) {
    snprintf(errstr, errstr_size, "%s: %s", file, err);
    return RTU_ERR_CONFIG;
  }
  return RTU_OK;
}

char *rtu_case_env_file(const char *file) {
  char dir[PATH_MAX], path[PATH_MAX + 8];
  if (!realpath(file, dir)) return NULL;
  for (;;) {
    char *slash = strrchr(dir, '/');
    if (!slash) return NULL;
    *slash = '\0';
    snprintf(path, sizeof path, "%s/env", dir[0] ? dir : "");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return strdup(path);
    if (!dir[0]) return NULL;
  }
}

static void remember(rtu_env_undo_t *undo, const char *name) {
  for (size_t i = 0; i < undo->n; i++)
    if (!strcmp(undo->vars[i].name, name)) return;
  rtu_env_saved_t *vars = realloc(undo->vars, (undo->n + 1) * sizeof *vars);
  if (!vars) return;
  undo->vars = vars;
  const char *old = getenv(name);
  vars[undo->n++] = (rtu_env_saved_t){strdup(name), old ? strdup(old) : NULL};
}

void rtu_env_default(const char *name, const char *value, rtu_env_undo_t *undo) {
  const char *cur = getenv(name);
  if (cur && *cur) return;
  remember(undo, name);
  setenv(name, value, 1);
}

void rtu_env_restore(rtu_env_undo_t *undo) {
  for (size_t i = undo->n; i-- > 0;) {
    if (undo->vars[i].old) setenv(undo->vars[i].name, undo->vars[i].old, 1);
    else unsetenv(undo->vars[i].name);
    free(undo->vars[i].name);
    free(undo->vars[i].old);
  }
  free(undo->vars);
  memset(undo, 0, sizeof *undo);
}

/* value with $NAME / ${NAME} expanded, into out. */
static void expand(const char *value, const char *dir, char *out, size_t size) {
  size_t o = 0;
  for (const char *p = value; *p && o + 1 < size;) {
    if (*p != '$' || !(p[1] == '{' || isalpha((unsigned char)p[1]) || p[1] == '_')) {
      out[o++] = *p++;
      continue;
    }
    bool braced = p[1] == '{';
    const char *s = p + 1 + braced, *e = s;
    while (isalnum((unsigned char)*e) || *e == '_') e++;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(e - s), s);
    p = e + (braced && *e == '}');
    const char *v = getenv(name);
    if ((!v || !*v) && ends_with(name, "_DIR")) v = dir;
    if (v) o += (size_t)snprintf(out + o, size - o, "%s", v);
    if (o >= size) o = size - 1;
  }
  out[o] = '\0';
}

static bool is_path_var(const char *name) {
  return ends_with(name, "_FOLDER") || ends_with(name, "_FILE") || ends_with(name, "_PATH");
}

rtu_err_t rtu_env_apply(const char *env_file, rtu_env_undo_t *undo, char *errstr,
                        size_t errstr_size) {
  FILE *f = fopen(env_file, "r");
  if (!f) {
    snprintf(errstr, errstr_size, "%s: cannot open", env_file);
    return RTU_ERR_CONFIG;
  }
  char copy[PATH_MAX], line[8192], value[8192], path[PATH_MAX + 8200];
  snprintf(copy, sizeof copy, "%s", env_file);
  const char *dir = dirname(copy);
  while (fgets(line, sizeof line, f)) {
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (!strncmp(p, "export ", 7)) p += 7;
    char *eq = p;
    while (isalnum((unsigned char)*eq) || *eq == '_') eq++;
    if (eq == p || *eq != '=' || isdigit((unsigned char)*p)) continue; /* comments, commands */
    *eq = '\0';
    char *v = eq + 1;
    size_t len = strcspn(v, "\r\n");
    v[len] = '\0';
    if (len >= 2 && (v[0] == '\'' || v[0] == '"') && v[len - 1] == v[0]) {
      v[len - 1] = '\0';
      v++;
    }
    expand(v, dir, value, sizeof value);
    if (is_path_var(p) && value[0] && value[0] != '/') {
      snprintf(path, sizeof path, "%s/%s", dir, value);
      memcpy(value, path, sizeof value - 1);
      value[sizeof value - 1] = '\0';
    }
    remember(undo, p);
    setenv(p, value, 1);
  }
  fclose(f);
  return RTU_OK;
}
