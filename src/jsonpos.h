/*
 * jsonpos.h: a JSON reader for configuration files that keeps where every value
 * and member name starts (line and column from 1) and every member of an object,
 * repeated names included, so `rtu check` can point at each problem and name the
 * duplicate keys. Lookups by name return the last member of that name, as
 * JavaScript's JSON.parse keeps it. Not for messages: value.c reads those.
 */
#ifndef RTU_JSONPOS_H
#define RTU_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  RTU_J_NULL,
  RTU_J_BOOL,
  RTU_J_NUMBER,
  RTU_J_STRING,
  RTU_J_ARRAY,
  RTU_J_OBJECT
} rtu_jtype_t;

typedef struct rtu_jnode_s rtu_jnode_t;
struct rtu_jnode_s {
  rtu_jtype_t type;
  int line, col;         /* where the value starts */
  char *key;             /* member name (NULL for array items and the root) */
  int key_line, key_col; /* where the member name starts */
  char *str;             /* string value (NUL-terminated; may hold NULs) or number text */
  size_t str_len;
  double num;
  bool boolean;
  bool shadowed; /* a later member of the same object has the same name */
  rtu_jnode_t *kids; /* members or items, in document order */
  size_t n;
};

/* Parses text; NULL on a syntax error, with the message in errstr and its place
 * in *line and *col. */
rtu_jnode_t *rtu_jsonpos_parse(const char *text, size_t len, int *line, int *col, char *errstr,
                               size_t errstr_size);
void rtu_jsonpos_free(rtu_jnode_t *root);

/* The last member named key of an object (NULL when none or not an object). */
const rtu_jnode_t *rtu_jsonpos_get(const rtu_jnode_t *obj, const char *key);

/* The node a JSON path names ("a.b[2].c", keys may hold dots), or the deepest
 * node on the way there; root when nothing matches. */
const rtu_jnode_t *rtu_jsonpos_find(const rtu_jnode_t *root, const char *path);

/* "an object", "a string", ... for messages. */
const char *rtu_jsonpos_type_name(rtu_jtype_t type);

#endif
