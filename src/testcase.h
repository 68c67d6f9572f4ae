/*
 * testcase.h: the `rtu test` case files (*.test.json): found under the paths
 * given, read as JSON into BSON (integers exact), one case or an array of
 * cases per file, and the `env` file that configures them.
 */
#ifndef RTU_TESTCASE_H
#define RTU_TESTCASE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "rtu.h"

typedef struct {
  char **files; /* sorted */
  size_t n, cap;
} rtu_case_files_t;

/* Adds path (a *.test.json file, or a folder searched for them recursively). */
rtu_err_t rtu_case_files_add(rtu_case_files_t *cf, const char *path, char *errstr,
                             size_t errstr_size);
void rtu_case_files_sort(rtu_case_files_t *cf);
void rtu_case_files_free(rtu_case_files_t *cf);

/* Reads file into out as {"v": <the file's JSON value>}. */
rtu_err_t rtu_case_file_read(const char *file, bson_t *out, char *errstr, size_t errstr_size);

/* The nearest `env` file in the folder of file or above it (malloc'd), NULL when none. */
char *rtu_case_env_file(const char *file);

/* A variable an env file sets, as it was before (to restore it). */
typedef struct {
  char *name;
  char *old; /* NULL when it was not set */
} rtu_env_saved_t;

typedef struct {
  rtu_env_saved_t *vars;
  size_t n;
} rtu_env_undo_t;

/* Sets the KEY=VALUE lines of env_file in the process environment (quotes
 * removed; $NAME and ${NAME} expanded, a NAME ending in _DIR that is set
 * nowhere standing for the file's folder; a relative path in a *_FOLDER, *_FILE
 * or *_PATH variable taken from the file's folder), remembering what to undo. */
rtu_err_t rtu_env_apply(const char *env_file, rtu_env_undo_t *undo, char *errstr,
                        size_t errstr_size);
/* Sets name to value unless it is set, remembering what to undo. */
void rtu_env_default(const char *name, const char *value, rtu_env_undo_t *undo);
void rtu_env_restore(rtu_env_undo_t *undo);

#endif
