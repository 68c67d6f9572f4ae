/*
 * problems.h: what loading and checking the configuration found wrong, each
 * problem with its place, and how they are printed. Shared by config.c,
 * checker.c, script.c (which adds plain messages) and the commands.
 */
#ifndef RTU_PROBLEMS_H
#define RTU_PROBLEMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/*
 * Problems found while loading or checking, each with where it is: a variable
 * (var), or a file with the line and column of the JSON value or Lua line (0:
 * unknown) and the JSON path. Loading goes on after a problem so `rtu check`
 * can list them all. lines[i] is items[i] as one printable line.
 */
typedef enum { RTU_PROBLEM_ERROR, RTU_PROBLEM_WARNING } rtu_severity_t;

typedef struct {
  rtu_severity_t severity;
  char *var;  /* environment variable, or NULL */
  char *file; /* file, or NULL */
  int line, col;
  char *path; /* JSON path inside the file, or NULL */
  char *message;
} rtu_problem_t;

typedef struct {
  char **lines;
  rtu_problem_t *items;
  size_t n, cap;
  size_t nerrors;
} rtu_problems_t;

/* An error from a plain message. A message that starts with where it is
 * ("VARIABLE: ...", "/path/file.lua:3: ...", "/path/file.json: a.b: ...") gets
 * that place (rtu_check_locate adds the line of a JSON path). */
void rtu_problems_add(rtu_problems_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A problem at a known place: var or file (line, col, path may be 0/NULL). */
void rtu_problems_at(rtu_problems_t *p, rtu_severity_t sev, const char *var, const char *file,
                     int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
/* Formats one problem: `FILE:LINE:COL: error: PATH: message` or
 * `env:NAME: warning: message`. */
void rtu_problem_format(const rtu_problem_t *pr, char *buf, size_t size);
/* Re-formats lines[i] after items changed (rtu_check_locate). */
void rtu_problems_reformat(rtu_problems_t *p);
/* Sorts by file (variables first), line and column; removes exact repeats. */
void rtu_problems_sort(rtu_problems_t *p);
void rtu_problems_free(rtu_problems_t *p);

/* A name among candidates closest to name by edit distance (NULL when none is
 * close enough to be a likely typo). */
const char *rtu_closest(const char *name, const char *const *candidates, size_t n);

/* Prints the problems, sorted first, one a line; json: one JSON object a line
 * (file, variable, line, column, severity, path, message). */
void rtu_problems_print(rtu_problems_t *p, FILE *f, bool json);
/* `N errors, M warnings`. */
void rtu_problems_summary(const rtu_problems_t *p, FILE *f);

#endif
