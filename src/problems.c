/*
 * problems.c: owns the list of configuration problems: adding them with their
 * place, finding the place in a plain message, sorting and printing them as
 * lines or JSON lines, and the "did you mean" distance. It reads no file and
 * knows nothing of what the configuration means.
 */
#include "problems.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static bool push(rtu_problems_t *p, rtu_problem_t *pr) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    char **l = realloc(p->lines, cap * sizeof *l);
    if (!l) return false;
    p->lines = l;
    rtu_problem_t *it = realloc(p->items, cap * sizeof *it);
    if (!it) return false;
    p->items = it;
    p->cap = cap;
  }
  char line[2048];
  rtu_problem_format(pr, line, sizeof line);
  p->lines[p->n] = strdup(line);
  p->items[p->n++] = *pr;
  if (pr->severity == RTU_PROBLEM_ERROR) p->nerrors++;
  return true;
}

static void free_item(rtu_problem_t *pr) {
  free(pr->var);
  free(pr->file);
  free(pr->path);
  free(pr->message);
}

static void add_item(rtu_problems_t *p, rtu_severity_t sev, const char *var, const char *file,
                     int line, int col, const char *path, const char *msg) {
  rtu_problem_t pr = {sev,  dup_or_null(var), dup_or_null(file), line, col,
                      dup_or_null(path), strdup(msg)};
  /* When memory runs out the problem is lost; the error count still fails the load. */
  if (!push(p, &pr)) {
    free_item(&pr);
    if (sev == RTU_PROBLEM_ERROR) p->nerrors++;
  }
}

void rtu_problems_at(rtu_problems_t *p, rtu_severity_t sev, const char *var, const char *file,
                     int line, int col, const char *path, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  add_item(p, sev, var, file, line, col, path, msg);
}

static bool is_var_name(const char *s, size_t n) {
  if (n < 3) return false;
  for (size_t i = 0; i < n; i++)
    if (!(isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_')) return false;
  return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && !memcmp(s + n - k, suffix, k);
}

/* "CHUNK.lua:N: rest" at s, where CHUNK is the file's name as Lua gives it
 * (cut to "...tail" when long): the line, and *rest after it. */
static int lua_line(const char *s, const char **rest) {
  const char *c = s;
  while (*c && *c != ' ' && !(c[0] == ':' && isdigit((unsigned char)c[1]))) c++;
  if (*c != ':' || !ends_with(s, (size_t)(c - s), ".lua")) return 0;
  char *end;
  long n = strtol(c + 1, &end, 10);
  if (*end != ':' || n <= 0 || n > 100000000) return 0;
  *rest = end[1] == ' ' ? end + 2 : end + 1;
  return (int)n;
}

void rtu_problems_add(rtu_problems_t *p, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *colon = strchr(msg, ':');
  size_t n = colon ? (size_t)(colon - msg) : 0;
  if (colon && colon[1] == ' ' && is_var_name(msg, n)) {
    char var[128];
    snprintf(var, sizeof var, "%.*s", (int)n, msg);
    add_item(p, RTU_PROBLEM_ERROR, var, NULL, 0, 0, NULL, colon + 2);
    return;
  }
  /* A file: the text before the first ": " or ":<line>:" ending in .lua or .json. */
  for (const char *c = msg; (c = strchr(c, ':')); c++) {
    size_t flen = (size_t)(c - msg);
    bool lua = ends_with(msg, flen, ".lua"), json = ends_with(msg, flen, ".json");
    if (!lua && !json) continue;
    char file[1024];
    snprintf(file, sizeof file, "%.*s", (int)flen, msg);
    const char *rest = NULL;
    int line = lua ? lua_line(msg, &rest) : 0;
    if (!line && c[1] == ' ') {
      rest = c + 2;
      if (lua) line = lua_line(rest, &rest); /* "F: F:3: msg" from Lua */
      if (!line) rest = c + 2;
    }
    if (!rest) break;
    char path[512] = "";
    const char *sep = json ? strstr(rest, ": ") : NULL;
    if (sep && !memchr(rest, ' ', (size_t)(sep - rest)) && sep > rest &&
        (size_t)(sep - rest) < sizeof path) {
      snprintf(path, sizeof path, "%.*s", (int)(sep - rest), rest);
      rest = sep + 2;
    }
    add_item(p, RTU_PROBLEM_ERROR, NULL, file, line, line ? 1 : 0, path[0] ? path : NULL, rest);
    return;
  }
  add_item(p, RTU_PROBLEM_ERROR, NULL, NULL, 0, 0, NULL, msg);
}

void rtu_problem_format(const rtu_problem_t *pr, char *buf, size_t size) {
  const char *sev = pr->severity == RTU_PROBLEM_ERROR ? "error" : "warning";
  char where[1200];
  if (pr->var) snprintf(where, sizeof where, "env:%s", pr->var);
  else if (pr->file && pr->line) snprintf(where, sizeof where, "%s:%d:%d", pr->file, pr->line, pr->col ? pr->col : 1);
  else if (pr->file) snprintf(where, sizeof where, "%s", pr->file);
  else snprintf(where, sizeof where, "rtu");
  snprintf(buf, size, "%s: %s: %s%s%s", where, sev, pr->path ? pr->path : "", pr->path ? ": " : "",
           pr->message);
}

void rtu_problems_reformat(rtu_problems_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    char line[2048];
    rtu_problem_format(&p->items[i], line, sizeof line);
    free(p->lines[i]);
    p->lines[i] = strdup(line); /* NULL when out of memory: printed as the item */
  }
}

static int strcmp_null(const char *a, const char *b) {
  if (!a || !b) return (a != NULL) - (b != NULL);
  return strcmp(a, b);
}

static int group(const rtu_problem_t *a) { return a->var ? 0 : a->file ? 1 : 2; }

static int cmp_problem(const void *x, const void *y) {
  const rtu_problem_t *a = x, *b = y;
  int c;
  if ((c = group(a) - group(b))) return c;
  if ((c = strcmp_null(a->var, b->var))) return c;
  if ((c = strcmp_null(a->file, b->file))) return c;
  if (a->line != b->line) return a->line < b->line ? -1 : 1;
  if (a->col != b->col) return a->col < b->col ? -1 : 1;
  if ((c = strcmp_null(a->path, b->path))) return c;
  if (a->severity != b->severity) return a->severity == RTU_PROBLEM_ERROR ? -1 : 1;
  return strcmp(a->message, b->message);
}

void rtu_problems_sort(rtu_problems_t *p) {
  if (p->n < 2) return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->lines[i]);
    p->lines[i] = NULL;
  }
  qsort(p->items, p->n, sizeof *p->items, cmp_problem);
  size_t w = 1;
  for (size_t i = 1; i < p->n; i++) {
    if (cmp_problem(&p->items[w - 1], &p->items[i]) == 0) {
      if (p->items[i].severity == RTU_PROBLEM_ERROR) p->nerrors--;
      free_item(&p->items[i]);
      continue;
    }
    p->items[w++] = p->items[i];
  }
  p->n = w;
  rtu_problems_reformat(p);
}

void rtu_problems_free(rtu_problems_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    free(p->lines[i]);
    free_item(&p->items[i]);
  }
  free(p->lines);
  free(p->items);
  memset(p, 0, sizeof *p);
}

static void json_string(FILE *f, const char *s) {
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

void rtu_problems_print(rtu_problems_t *p, FILE *f, bool json) {
  rtu_problems_sort(p);
  for (size_t i = 0; i < p->n; i++) {
    const rtu_problem_t *pr = &p->items[i];
    if (!json) {
      char line[2048];
      rtu_problem_format(pr, line, sizeof line);
      fprintf(f, "%s\n", line);
      continue;
    }
    fputs("{\"file\":", f);
    json_string(f, pr->file);
    fputs(",\"variable\":", f);
    json_string(f, pr->var);
    fprintf(f, ",\"line\":%d,\"column\":%d,\"severity\":\"%s\",\"path\":", pr->line,
            pr->line && !pr->col ? 1 : pr->col,
            pr->severity == RTU_PROBLEM_ERROR ? "error" : "warning");
    json_string(f, pr->path);
    fputs(",\"message\":", f);
    json_string(f, pr->message);
    fputs("}\n", f);
  }
}

void rtu_problems_summary(const rtu_problems_t *p, FILE *f) {
  size_t nw = p->n - p->nerrors;
  fprintf(f, "%zu error%s, %zu warning%s\n", p->nerrors, p->nerrors == 1 ? "" : "s", nw,
          nw == 1 ? "" : "s");
}

/* Edit distance with transpositions (optimal string alignment), ignoring case
 * (a difference of case alone counts 1): "upepr" is one edit from "upper". */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 128 || lb > 128) return (size_t)-1;
  static _Thread_local size_t d[129][129];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
      size_t best = d[i - 1][j - 1] + (ca != cb);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[la][lb] == 0 && strcmp(a, b) ? 1 : d[la][lb];
}

const char *rtu_closest(const char *name, const char *const *candidates, size_t n) {
  const char *best = NULL;
  size_t best_d = (size_t)-1, len = strlen(name);
  /* Close enough to be a typo: a third of the name, at least one edit. */
  size_t limit = len / 3 > 1 ? len / 3 : 1;
  if (limit > 4) limit = 4;
  for (size_t i = 0; i < n; i++) {
    if (!candidates[i] || !strcmp(candidates[i], name)) continue;
    size_t d = distance(name, candidates[i]);
    if (d < best_d) {
      best_d = d;
      best = candidates[i];
    }
  }
  return best_d <= limit ? best : NULL;
}
