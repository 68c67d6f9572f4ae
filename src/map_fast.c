/*
 * map_fast.c: owns the C path of a message's mapping: the built-in debezium
 * and basic adapters (lua/rtu/adapters/debezium.lua, basic.lua), a projection's
 * field and key mapping
 * (lua/rtu/pipeline.lua) and the built-in casts (lua/rtu/casts.lua) for the
 * cases where they give a value back unchanged or convert it trivially, read
 * straight from the message's JSON into the change's BSON. Decoding the whole
 * message into Lua tables and running the adapter and the mapping in the VM
 * cost most of a food message (see docs/performance.md).
 *
 * It takes only what it can read exactly as the Lua pipeline does: strict JSON
 * as json_lua.c's reader (the same token functions of json_scan.h), an insert or
 * update with its after image, scalar values, no escape in a value it uses, no
 * '$' name, no envelope. On anything else it says no and the Lua pipeline maps
 * the message (and raises its errors, skips its tombstones). Whether a
 * projection may come here at all (no user code, no notes of unmapped fields) is
 * script_map.c's decision. It keeps nothing of a message and touches no Lua.
 */
#include "map_fast.h"

#include <bson/bson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bson_raw.h"
#include "json_scan.h"

/* What a built-in cast does with the values the C path converts itself. */
typedef enum {
  CAST_KEEP,    /* defaultIdentity: any value as it is */
  CAST_STRING,  /* defaultCastToString: strings, null; booleans to their text */
  CAST_INTEGER, /* defaultCastToInteger: integers, null */
  CAST_FLOAT,   /* defaultCastToFloat: numbers (an integer stays one), null */
  CAST_BOOLEAN, /* defaultCastStringToBoolean: "true", "false", null */
  CAST_DATE,    /* defaultCastToDate: integer milliseconds in range, null */
  CAST_USER,    /* a CAST_FUNCTIONS_FOLDER function: the caller's */
} cast_t;

static const struct {
  const char *name;
  cast_t cast;
} CASTS[] = {
    {"defaultIdentity", CAST_KEEP},           {"identity", CAST_KEEP},
    {"defaultCastToString", CAST_STRING},     {"castToString", CAST_STRING},
    {"defaultCastToInteger", CAST_INTEGER},   {"castToInteger", CAST_INTEGER},
    {"defaultCastToFloat", CAST_FLOAT},       {"castToFloat", CAST_FLOAT},
    {"defaultCastStringToBoolean", CAST_BOOLEAN}, {"castStringToBoolean", CAST_BOOLEAN},
    {"defaultCastToDate", CAST_DATE},         {"castToDate", CAST_DATE},
};

/* A projection's fields are matched by a scan of their names per member: past
 * this many, the Lua pipeline's table lookups are the cheaper way. */
#define FAST_MAX_FIELDS 128
/* Nesting the scanner follows; json_lua.c gives up deeper, at 64. */
#define FAST_MAX_DEPTH 32
/* A value longer than this goes to the Lua path (and its size checks). */
#define FAST_MAX_STRING (1u << 20)

struct rtu_map_fast_s {
  const rtu_projection_t *p;
  bool basic; /* the basic (db2) adapter: the value is the record; else debezium's */
  bool use_upsert;
  cast_t *casts;  /* per field */
  size_t *pk_field; /* per primary key: the index of its field */
};

typedef enum { V_ABSENT = 0, V_STR, V_INT, V_DBL, V_TRUE, V_FALSE, V_NULL, V_OBJ, V_ARR, V_DATE } kind_t;

/* A value read: its kind, its text [at, end) (a string's with its quotes), and
 * the string's bytes (s, n: only when it has no escape) or the number. */
typedef struct {
  kind_t kind;
  bool escaped;
  const char *at, *end;
  const char *s;
  size_t n;
  int64_t i;
  double d;
} val_t;

typedef struct {
  const char *p, *end;
} scan_t;

/* The names an object is read for: a member of one of them is read into vals[k]
 * (a second one fails: which one Lua keeps is not worth following), the others
 * are skipped. */
typedef struct want_s {
  const char *const *names;
  const size_t *lens;
  size_t n;
  val_t *vals;
  /* NULL, or per name the names its value is read for when it is an object
   * (the images inside the record: read once, not skipped and read again) */
  const struct want_s *const *sub;
} want_t;

static bool skip_value(scan_t *sc, int depth);
static bool read_object(scan_t *sc, int depth, const want_t *want);

/* rtu_json_scan_plain, eight bytes at a time while none of them is a quote, a
 * backslash, a control character or past ASCII (most of a message's text is
 * in strings: a byte at a time was most of the C path's reading). */
static inline const char *scan_plain(const char *p, const char *end, bool *high) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  while (end - p >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    /* any zero byte of q or b, any byte below 0x20, any byte from 0x80 */
    uint64_t hit = (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & highs;
    if (hit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      /* the lowest flagged byte is the first that needs a look (a borrow can
       * only flag bytes after a true one) */
      p += __builtin_ctzll(hit) >> 3;
#endif
      break;
    }
    p += 8;
  }
  return rtu_json_scan_plain(p, end, high);
}

/* The string at sc->p (its quote): s/n when it has no escape; every escape
 * checked as json_lua.c reads it, the bytes validated as UTF-8 when high. */
static bool read_string(scan_t *sc, val_t *v) {
  const char *start = ++sc->p, *end = sc->end;
  bool high = false;
  const char *p = scan_plain(start, end, &high);
  if (!p || p >= end) return false;
  if (*p == '"') {
    size_t n = (size_t)(p - start);
    if (n > FAST_MAX_STRING || (high && !bson_utf8_validate(start, n, false))) return false;
    if (v) {
      v->kind = V_STR;
      v->s = start;
      v->n = n;
    }
    sc->p = p + 1;
    return true;
  }
  /* escapes: checked, not unescaped; a value with one goes to the Lua path */
  while (p < end && *p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c >= 0x80) return false;
    if (c == '\\') {
      char out[4];
      size_t k;
      p++;
      if (!rtu_json_scan_escape(&p, end, out, &k)) return false;
    } else {
      p++;
    }
  }
  if (p >= end || high) return false;
  if (v) {
    v->kind = V_STR;
    v->escaped = true;
  }
  sc->p = p + 1;
  return true;
}

/* A member's name: plain (no escape), not an operator; its bytes in *s, *n. */
static bool read_name(scan_t *sc, const char **s, size_t *n) {
  val_t v = {0};
  if (sc->p >= sc->end || *sc->p != '"' || !read_string(sc, &v) || v.escaped) return false;
  if (v.n > 0 && v.s[0] == '$') return false;
  *s = v.s;
  *n = v.n;
  return rtu_json_scan_colon(&sc->p, sc->end);
}

static bool read_literal(scan_t *sc, const char *word, size_t n) {
  if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n)) return false;
  sc->p += n;
  return true;
}

/* The value at sc->p into v (NULL: only checked); objects and arrays are
 * checked and kept as their text. */
static bool read_value(scan_t *sc, int depth, val_t *v) {
  if (sc->p >= sc->end || depth > FAST_MAX_DEPTH) return false;
  const char *at = sc->p;
  kind_t kind;
  bool ok;
  switch (*sc->p) {
  case '"': return read_string(sc, v) && (!v || (v->at = at, v->end = sc->p, true));
  case '{': kind = V_OBJ; ok = read_object(sc, depth, NULL); break;
  case '[': {
    kind = V_ARR;
    sc->p = rtu_json_scan_ws(sc->p + 1, sc->end);
    ok = true;
    if (sc->p < sc->end && *sc->p == ']') {
      sc->p++;
      break;
    }
    for (;;) {
      int next;
      if (!skip_value(sc, depth + 1) || (next = rtu_json_scan_next(&sc->p, sc->end, ']')) < 0) {
        ok = false;
        break;
      }
      if (next == 0) break;
    }
    break;
  }
  case 't': kind = V_TRUE; ok = read_literal(sc, "true", 4); break;
  case 'f': kind = V_FALSE; ok = read_literal(sc, "false", 5); break;
  case 'n': kind = V_NULL; ok = read_literal(sc, "null", 4); break;
  default: {
    bool integral;
    int64_t i = 0;
    double d = 0;
    ok = rtu_json_scan_number(&sc->p, sc->end, &integral, &i, &d);
    kind = integral ? V_INT : V_DBL;
    if (ok && v) {
      v->i = i;
      v->d = d;
    }
  }
  }
  if (ok && v) {
    v->kind = kind;
    v->at = at;
    v->end = sc->p;
  }
  return ok;
}

static bool skip_value(scan_t *sc, int depth) { return read_value(sc, depth, NULL); }

/* The object at sc->p (its brace), members of want read into want->vals. */
static bool read_object(scan_t *sc, int depth, const want_t *want) {
  if (depth > FAST_MAX_DEPTH) return false;
  sc->p = rtu_json_scan_ws(sc->p + 1, sc->end);
  if (sc->p < sc->end && *sc->p == '}') {
    sc->p++;
    return true;
  }
  for (;;) {
    const char *name;
    size_t n;
    if (!read_name(sc, &name, &n)) return false;
    val_t *into = NULL;
    for (size_t k = 0; want && k < want->n; k++)
      if (want->lens[k] == n && !memcmp(want->names[k], name, n)) {
        into = &want->vals[k];
        break;
      }
    if (into && into->kind != V_ABSENT) return false; /* a repeated name */
    const want_t *sub = into && want->sub ? want->sub[into - want->vals] : NULL;
    if (sub && sc->p < sc->end && *sc->p == '{') {
      into->at = sc->p;
      if (!read_object(sc, depth + 1, sub)) return false;
      into->kind = V_OBJ;
      into->end = sc->p;
    } else if (!read_value(sc, depth + 1, into)) {
      return false;
    }
    int next = rtu_json_scan_next(&sc->p, sc->end, '}');
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

/* A whole text that is one object: its members of want read. */
static bool read_text(const char *text, size_t len, const want_t *want) {
  if (len > (size_t)INT32_MAX / 8) return false;
  scan_t sc = {text, text + len};
  sc.p = rtu_json_scan_ws(sc.p, sc.end);
  if (sc.p >= sc.end || *sc.p != '{' || !read_object(&sc, 0, want)) return false;
  return rtu_json_scan_ws(sc.p, sc.end) == sc.end;
}

/* ---- the plan ------------------------------------------------------------ */

rtu_map_fast_t *rtu_map_fast_plan(const rtu_config_t *cfg, const rtu_projection_t *p,
                                  const bool *user) {
  bool basic = !strcmp(cfg->adapter, "basic") || !strcmp(cfg->adapter, "db2");
  if ((!basic && strcmp(cfg->adapter, "debezium")) || p->nfields == 0 ||
      p->nfields > FAST_MAX_FIELDS || p->npk == 0)
    return NULL;
  rtu_map_fast_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->p = p;
  m->basic = basic;
  m->use_upsert = cfg->use_upsert;
  m->casts = calloc(p->nfields, sizeof *m->casts);
  m->pk_field = calloc(p->npk, sizeof *m->pk_field);
  if (!m->casts || !m->pk_field) goto no;
  for (size_t i = 0; i < p->nfields; i++) {
    size_t k = 0;
    while (k < sizeof CASTS / sizeof *CASTS && strcmp(CASTS[k].name, p->fields[i].cast)) k++;
    if (user && user[i]) m->casts[i] = CAST_USER;
    else if (k == sizeof CASTS / sizeof *CASTS) goto no;
    else m->casts[i] = CASTS[k].cast;
    for (size_t j = 0; j < i; j++) /* a shared destination, or a source read twice */
      if (!strcmp(p->fields[j].dst, p->fields[i].dst) || !strcmp(p->fields[j].src, p->fields[i].src))
        goto no;
  }
  for (size_t k = 0; k < p->npk; k++) {
    size_t i = 0;
    while (i < p->nfields && strcmp(p->fields[i].src, p->pk_src[k])) i++;
    /* the pipeline's map_key names what is missing; a user's cast of a key would
     * run twice a message */
    if (i == p->nfields || m->casts[i] == CAST_USER) goto no;
    m->pk_field[k] = i;
  }
  return m;
no:
  rtu_map_fast_free(m);
  return NULL;
}

void rtu_map_fast_free(rtu_map_fast_t *m) {
  if (!m) return;
  free(m->casts);
  free(m->pk_field);
  free(m);
}

/* ---- casts --------------------------------------------------------------- */

/* Number(s) of a string, as casts.lua's string_to_number gives it, for the
 * plain decimals ("42", "-3.50": how basic and Golden Gate records carry
 * numbers) that json.decimal reads without strtod; false for any other text.
 * Its normalize: an integral double within int64 is an integer, but -0 stays a
 * double to keep its sign. */
static bool string_to_number(val_t *v) {
  int64_t i = 0;
  double d = 0;
  bool integer;
  switch (rtu_json_scan_decimal(v->s, v->n, &i, &d)) {
  case RTU_DECIMAL_INT: integer = true; break;
  case RTU_DECIMAL_FLOAT: integer = false; break;
  default: return false;
  }
  if ((integer ? i == 0 : d == 0) && v->s[0] == '-') {
    v->kind = V_DBL;
    v->d = -0.0;
  } else if (integer) {
    v->kind = V_INT;
    v->i = i;
  } else if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    v->kind = V_INT;
    v->i = (int64_t)d;
  } else {
    v->kind = V_DBL;
    v->d = d;
  }
  return true;
}

/* parseInt(Number(s)) as defaultCastToInteger gives it: the integer part of
 * the number's JavaScript text, which is the truncation toward zero while that
 * text has no exponent (1e-6 <= |x| < 1e21); outside, or past 2^53 where the
 * truncation is no longer exact to compare, the Lua cast decides. */
static bool string_to_integer(val_t *v) {
  if (!string_to_number(v)) return false;
  if (v->kind == V_INT) return true;
  double d = v->d;
  if (d != 0 && (fabs(d) < 1e-6 || fabs(d) >= 9007199254740992.0)) return false;
  v->kind = V_INT;
  v->i = (int64_t)trunc(d); /* -0 and (-1, 0) give 0, as parseInt's "-0" does */
  return true;
}

/* v through the cast as casts.lua's function would convert it (the pipeline
 * calls defaultCastToString only for what is not a string, and
 * defaultIdentity never); false for what the C path leaves to Lua: numbers to
 * text, text to numbers or dates, objects and arrays, what a cast refuses. */
static bool cast_value(cast_t cast, val_t *v) {
  if (cast == CAST_USER) return true;
  if (v->kind == V_OBJ || v->kind == V_ARR || (v->kind == V_STR && v->escaped)) return false;
  if (v->kind == V_NULL) return true; /* every built-in gives null back */
  switch (cast) {
  case CAST_KEEP: return true;
  case CAST_STRING:
    if (v->kind == V_TRUE || v->kind == V_FALSE) {
      v->s = v->kind == V_TRUE ? "true" : "false";
      v->n = v->kind == V_TRUE ? 4 : 5;
      v->kind = V_STR;
    }
    return v->kind == V_STR;
  case CAST_INTEGER:
    if (v->kind == V_STR) return string_to_integer(v);
    return v->kind == V_INT;
  case CAST_FLOAT:
    if (v->kind == V_STR) return string_to_number(v);
    return v->kind == V_INT || v->kind == V_DBL;
  case CAST_BOOLEAN:
    if (v->kind != V_STR) return false;
    if (v->n == 4 && !memcmp(v->s, "true", 4)) v->kind = V_TRUE;
    else if (v->n == 5 && !memcmp(v->s, "false", 5)) v->kind = V_FALSE;
    else return false;
    return true;
  case CAST_USER: return true; /* any value: the caller's function converts it */
  case CAST_DATE:
    /* new Date(ms): TimeClip keeps integers within 8.64e15 */
    if (v->kind != V_INT || v->i < -8640000000000000LL || v->i > 8640000000000000LL) return false;
    v->kind = V_DATE;
    return true;
  }
  return false;
}

/* ---- the change ---------------------------------------------------------- */

/* A cast value into the fields as bson_lua.c's raw appender writes it. */
static void append_field(rtu_bson_raw_t *r, const char *key, const val_t *v) {
  switch (v->kind) {
  case V_STR: rtu_bson_raw_utf8(r, key, v->s, v->n); break;
  case V_INT:
    rtu_bson_raw_int(r, v->i >= INT32_MIN && v->i <= INT32_MAX ? BSON_TYPE_INT32 : BSON_TYPE_INT64,
                     key, v->i);
    break;
  case V_DBL: {
    uint64_t bits;
    memcpy(&bits, &v->d, sizeof bits);
    rtu_bson_raw_head(r, BSON_TYPE_DOUBLE, key);
    rtu_bson_raw_le(r, bits, 8);
    break;
  }
  case V_TRUE:
  case V_FALSE:
    rtu_bson_raw_head(r, BSON_TYPE_BOOL, key);
    rtu_bson_raw_le(r, v->kind == V_TRUE, 1);
    break;
  case V_DATE: rtu_bson_raw_int(r, BSON_TYPE_DATE_TIME, key, v->i); break;
  default: rtu_bson_raw_head(r, BSON_TYPE_NULL, key); break;
  }
}

/* A cast primary-key value into the key as bson_lua.c's appender writes it
 * (never null: the key then comes from elsewhere, or Lua raises). */
static void append_key(bson_t *out, const char *key, const val_t *v) {
  switch (v->kind) {
  case V_STR: bson_append_utf8(out, key, -1, v->s, (int)v->n); break;
  case V_INT:
    if (v->i >= INT32_MIN && v->i <= INT32_MAX) bson_append_int32(out, key, -1, (int32_t)v->i);
    else bson_append_int64(out, key, -1, v->i);
    break;
  case V_DBL: bson_append_double(out, key, -1, v->d); break;
  case V_TRUE:
  case V_FALSE: bson_append_bool(out, key, -1, v->kind == V_TRUE); break;
  case V_DATE: bson_append_date_time(out, key, -1, v->i); break;
  default: bson_append_null(out, key, -1); break;
  }
}

/* Whether the before and after images name the same record as the pipeline's
 * same_raw_key says it, or need not be compared (has_key fails for one): true;
 * false when they may name two (the Lua path builds the old key then). Equal
 * texts of scalars are equal Lua values; other pairs are left to Lua. */
static bool same_record(const rtu_map_fast_t *m, const val_t *before, const val_t *after) {
  const rtu_projection_t *p = m->p;
  bool differ = false, before_has = true, after_has = true;
  for (size_t k = 0; k < p->npk; k++) {
    const val_t *b = &before[k], *a = &after[m->pk_field[k]];
    before_has &= b->kind != V_ABSENT && b->kind != V_NULL;
    after_has &= a->kind != V_ABSENT && a->kind != V_NULL;
    if (b->kind == V_ABSENT && a->kind == V_ABSENT) continue;
    if (b->kind != a->kind || b->kind == V_OBJ || b->kind == V_ARR ||
        b->end - b->at != a->end - a->at || memcmp(b->at, a->at, (size_t)(b->end - b->at)))
      differ = true;
  }
  return !differ || !before_has || !after_has;
}

enum { TOP_OP, TOP_BEFORE, TOP_AFTER, TOP_PAYLOAD, TOP_SCHEMA, TOP_COUNT };
static const char *const TOP_NAMES[TOP_COUNT] = {"op", "before", "after", "payload", "schema"};
static const size_t TOP_LENS[TOP_COUNT] = {2, 6, 5, 7, 6};

/* The images of the value: a plain record (no Connect envelope) of an insert
 * or update with its after image; *op 'I' or 'U'. */
static bool read_record(const rtu_msg_t *msg, const want_t *after, const want_t *before, char *op,
                        bool *has_before) {
  val_t top[TOP_COUNT] = {0};
  const want_t *subs[TOP_COUNT] = {[TOP_BEFORE] = before, [TOP_AFTER] = after};
  want_t want = {TOP_NAMES, TOP_LENS, TOP_COUNT, top, subs};
  if (!msg->value || !read_text(msg->value, msg->value_len, &want)) return false;
  if (top[TOP_PAYLOAD].kind != V_ABSENT || top[TOP_SCHEMA].kind != V_ABSENT) return false;
  const val_t *o = &top[TOP_OP];
  if (o->kind != V_STR || o->escaped || o->n != 1) return false;
  if (o->s[0] == 'c' || o->s[0] == 'r') *op = 'I';
  else if (o->s[0] == 'u') *op = 'U';
  else return false; /* deletes, truncates, unknown operations */
  /* the images, read with the names wanted from each */
  const val_t *a = &top[TOP_AFTER], *b = &top[TOP_BEFORE];
  if (a->kind != V_OBJ || (b->kind != V_OBJ && b->kind != V_NULL && b->kind != V_ABSENT))
    return false;
  *has_before = b->kind == V_OBJ;
  return true;
}

/* The basic adapter's record: the value itself, an object (no operation: the
 * pipeline upserts it). A value absent, empty or "null" is a delete, and one that
 * is not an object an error: both are the Lua path's. */
static bool read_basic(const rtu_msg_t *msg, const want_t *after, char *op, bool *has_before) {
  *op = 0;
  *has_before = false;
  if (!msg->value || msg->value_len == 0 || (msg->value_len == 4 && !memcmp(msg->value, "null", 4)))
    return false;
  return read_text(msg->value, msg->value_len, after);
}

/* The message key's primary-key values into key->vals; false for a key that is
 * there but not a plain JSON object. *has: a key object was read. */
static bool read_key(const rtu_msg_t *msg, const want_t *key, bool *has) {
  *has = false;
  if (!msg->key || msg->key_len == 0 || (msg->key_len == 4 && !memcmp(msg->key, "null", 4)))
    return true;
  if (!read_text(msg->key, msg->key_len, key)) return false;
  /* an envelope's payload and schema (the last two names) */
  if (key->vals[key->n - 1].kind != V_ABSENT || key->vals[key->n - 2].kind != V_ABSENT)
    return false;
  *has = true;
  return true;
}

bool rtu_map_fast(const rtu_map_fast_t *m, const rtu_msg_t *msg, rtu_mapped_t *out,
                  rtu_map_fast_cast_fn cast, void *ctx) {
  const rtu_projection_t *p = m->p;
  size_t nf = p->nfields, npk = p->npk;
  const char *fnames[FAST_MAX_FIELDS], *knames[FAST_MAX_FIELDS + 2];
  size_t flens[FAST_MAX_FIELDS], klens[FAST_MAX_FIELDS + 2];
  val_t fvals[FAST_MAX_FIELDS], bvals[FAST_MAX_FIELDS], kvals[FAST_MAX_FIELDS + 2];
  for (size_t i = 0; i < nf; i++) {
    fnames[i] = p->fields[i].src;
    flens[i] = strlen(fnames[i]);
  }
  for (size_t k = 0; k < npk; k++) {
    knames[k] = p->pk_src[k];
    klens[k] = strlen(knames[k]);
  }
  knames[npk] = "payload", klens[npk] = 7;
  knames[npk + 1] = "schema", klens[npk + 1] = 6;
  memset(fvals, 0, nf * sizeof *fvals);
  memset(bvals, 0, npk * sizeof *bvals);
  memset(kvals, 0, (npk + 2) * sizeof *kvals);
  want_t after = {fnames, flens, nf, fvals, NULL}, before = {knames, klens, npk, bvals, NULL};
  want_t key = {knames, klens, npk + 2, kvals, NULL};
  char op;
  bool has_before, has_key;
  bool read = m->basic ? read_basic(msg, &after, &op, &has_before)
                       : read_record(msg, &after, &before, &op, &has_before);
  if (!read || !read_key(msg, &key, &has_key)) return false;
  /* a primary-key change: the Lua path builds the old key */
  if (has_before && !same_record(m, bvals, fvals)) return false;

  /* the adapter's keyObject: each primary key from the key, else the after
   * image, else the before image; the pipeline's key is made from it when none
   * is null, else from the record */
  val_t keyv[FAST_MAX_FIELDS];
  bool from_object = true;
  for (size_t k = 0; k < npk; k++) {
    const val_t *v = has_key && kvals[k].kind != V_ABSENT ? &kvals[k] : NULL;
    if (!v && fvals[m->pk_field[k]].kind != V_ABSENT) v = &fvals[m->pk_field[k]];
    if (!v && bvals[k].kind != V_ABSENT) v = &bvals[k];
    if (!v) return false; /* the adapter raises */
    keyv[k] = *v;
    if (v->kind == V_NULL) from_object = false;
  }
  for (size_t k = 0; k < npk; k++) {
    if (!from_object) keyv[k] = fvals[m->pk_field[k]];
    if (keyv[k].kind == V_ABSENT || keyv[k].kind == V_NULL) return false; /* Lua raises */
    if (!cast_value(m->casts[m->pk_field[k]], &keyv[k])) return false;
  }
  /* every field cast before anything is written: nothing to undo */
  for (size_t i = 0; i < nf; i++)
    if (fvals[i].kind != V_ABSENT && !cast_value(m->casts[i], &fvals[i])) return false;

  if (op == 'I') out->op = m->use_upsert ? RTU_OP_UPSERT : RTU_OP_INSERT;
  else if (op == 'U') out->op = m->use_upsert ? RTU_OP_UPSERT : RTU_OP_UPDATE;
  else out->op = RTU_OP_UPSERT; /* basic: a whole record, whatever USE_UPSERT says */
  for (size_t k = 0; k < npk; k++) append_key(&out->key, p->pk_dst[k], &keyv[k]);
  rtu_bson_raw_t raw;
  rtu_bson_raw_init(&raw);
  for (size_t i = 0; i < nf; i++) {
    const val_t *v = &fvals[i];
    if (v->kind == V_ABSENT) continue; /* the pipeline sets it to nil: not written */
    if (m->casts[i] == CAST_USER) {
      /* the user's function, in field order as the pipeline calls it */
      if (!cast || !cast(ctx, i, v->at, (size_t)(v->end - v->at), &raw, &out->empty_key)) {
        if (raw.p != raw.local) bson_free(raw.p);
        return false;
      }
      continue;
    }
    if (!p->fields[i].dst[0]) out->empty_key = true;
    append_field(&raw, p->fields[i].dst, v);
  }
  return rtu_bson_raw_concat(&raw, &out->fields);
}
