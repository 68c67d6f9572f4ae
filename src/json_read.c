/*
 * json_read.c: owns the reading of JSON text into BSON: a direct reader of
 * strict JSON, and libbson's reader behind checks for what it reads unlike
 * JSON.parse. It holds no state and knows nothing of Lua (json_lua.c reads JSON
 * into Lua with the same tokens, json_scan.h).
 *
 * libbson's bson_init_from_json allocates and zeroes a reader of many KiB for
 * every call (see docs/performance.md). Most CDC payloads are plain, strict
 * JSON, parsed here straight into BSON. The direct reader gives up (false,
 * nothing kept) on anything where libbson's reading could differ or that it
 * would refuse: '$' names, \u0000 and surrogate escapes, control characters,
 * invalid UTF-8, non-JSON numbers or literals, out-of-range numbers, deep
 * nesting, trailing text. libbson then decides, so results and error messages
 * stay libbson's.
 */
#include "json_read.h"

#include <stdio.h>

#include "bson_raw.h"
#include "json_scan.h"

/* ---- the checks before libbson ------------------------------------------- */

/*
 * libbson's JSON reader does three things JSON.parse does not, so the text is
 * scanned first: an integer beyond 64 bits wraps silently (2^64 becomes 0), text
 * after the value could close our wrapper and be read as more fields, and objects
 * with an extended-JSON key are read as such ({"$numberLong": "5"} becomes 5).
 * The scan refuses the first two and those keys, naming the cause; the
 * grammar itself is left to libbson.
 */

/* True when the name s[start..end) is one of libbson's extended-JSON keywords. */
static bool extended_keyword(const char *s, size_t start, size_t end) {
  /* Only these change meaning; query operators such as $or and $in (erSchema
   * conditions) are plain names. */
  static const char *const ext[] = {"$oid", "$date", "$numberLong", "$numberInt",
                                    "$numberDouble", "$numberDecimal", "$binary", "$type",
                                    "$regex", "$options", "$regularExpression", "$timestamp",
                                    "$minKey", "$maxKey", "$undefined", "$symbol", "$code",
                                    "$scope", "$dbPointer", "$ref", "$id", "$uuid"};
  bool dollar = false;
  for (size_t k = 0; k < sizeof ext / sizeof ext[0] && end > start && s[start] == '$'; k++)
    dollar |= strlen(ext[k]) == end - start && !memcmp(ext[k], s + start, end - start);
  /* \u0024 is '$' too */
  if (end - start >= 6 && s[start] == '\\' && s[start + 1] == 'u' && s[start + 2] == '0' &&
      s[start + 3] == '0' && s[start + 4] == '2' && s[start + 5] == '4')
    dollar = true;
  return dollar;
}

/* The string whose opening quote is at *pi: 1 with *pi on its closing quote, 0
 * when it is a refused name (errstr says why), -1 when it is not terminated. */
static int prescan_string(const char *s, size_t len, size_t *pi, bool expect_key, char *errstr,
                          size_t sz) {
  size_t i = *pi, start = ++i;
  while (i < len && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
  *pi = i;
  if (i >= len) return -1; /* unterminated: libbson says so */
  if (expect_key && extended_keyword(s, start, i)) {
    snprintf(errstr, sz, "field name '%.*s' is a MongoDB extended-JSON keyword (not supported)",
             (int)(i - start > 60 ? 60 : i - start), s + start);
    return 0;
  }
  return 1;
}

/* The number starting at *pi: *pi on its last character; false (errstr says
 * why) for an integer beyond 64 bits. */
static bool prescan_number(const char *s, size_t len, size_t *pi, char *errstr, size_t sz) {
  size_t i = *pi, start = i;
  bool integral = true;
  while (i + 1 < len && strchr("0123456789+-.eE", s[i + 1])) {
    if (strchr(".eE", s[i + 1])) integral = false;
    i++;
  }
  *pi = i;
  if (!integral) return true;
  char num[32];
  size_t n = i - start + 1;
  if (n < sizeof num) {
    memcpy(num, s + start, n);
    num[n] = '\0';
    errno = 0;
    (void)strtoll(num, NULL, 10);
    if (errno != ERANGE) return true;
  }
  snprintf(errstr, sz, "integer %.*s does not fit in 64 bits", (int)(n > 40 ? 40 : n),
           s + start);
  return false;
}

static bool prescan(const char *s, size_t len, char *errstr, size_t sz) {
  int depth = 0;
  bool expect_key = false; /* after '{' or ',' inside an object */
  char stack[128];          /* container kinds, to know when a ',' starts a key */
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '"') {
      int r = prescan_string(s, len, &i, expect_key, errstr, sz);
      if (r == 0) return false;
      if (r < 0) break;
      expect_key = false;
    } else if (c == '{' || c == '[') {
      if (depth >= (int)sizeof stack) {
        snprintf(errstr, sz, "nesting deeper than %d", (int)sizeof stack);
        return false;
      }
      stack[depth++] = c;
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (--depth < 0) {
        snprintf(errstr, sz, "unexpected '%c' at byte %zu", c, i);
        return false;
      }
      expect_key = false;
    } else if (c == ',') {
      if (depth == 0) {
        snprintf(errstr, sz, "unexpected ',' at byte %zu", i);
        return false;
      }
      expect_key = stack[depth - 1] == '{';
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      if (!prescan_number(s, len, &i, errstr, sz)) return false;
    } else if (c == 'N' || c == 'I') {
      /* NaN and Infinity: libbson takes them, JSON.parse does not. At most the
       * bytes there are: a Kafka payload is not NUL-terminated. */
      snprintf(errstr, sz, "'%.*s' is not a JSON value", (int)(len - i < 8 ? len - i : 8), s + i);
      return false;
    } else if (c == '/') {
      snprintf(errstr, sz, "unexpected '/' at byte %zu", i);
      return false;
    }
  }
  if (depth != 0) {
    snprintf(errstr, sz, "unbalanced brackets");
    return false;
  }
  return true;
}

/* ---- strict JSON, parsed directly ---------------------------------------- */

/* A growable buffer for unescaped strings, on the stack while they are short. */
typedef struct {
  char *p;
  size_t len, cap;
  char stack[256];
} jbuf_t;

typedef struct {
  const char *p, *end;
  jbuf_t key, str;
} jp_t;

static bool jbuf_put(jbuf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
    char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
    if (!np) return false;
    if (b->p == b->stack) memcpy(np, b->stack, b->len);
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return true;
}

static void jp_ws(jp_t *j) { j->p = rtu_json_scan_ws(j->p, j->end); }

/* The rest of a string with escapes, from p (at its first backslash) to its
 * closing quote, unescaped into b after what it holds; *pp on the quote. */
static bool jp_escaped(const char **pp, const char *end, jbuf_t *b, bool *high) {
  const char *p = *pp;
  while (p < end && *p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20) return false;
    if (c != '\\') {
      *high |= c >= 0x80;
      const char *run = p;
      while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) {
        *high |= (unsigned char)*p >= 0x80;
        p++;
      }
      if (!jbuf_put(b, run, (size_t)(p - run))) return false;
      continue;
    }
    char out[4];
    size_t k;
    p++;
    if (!rtu_json_scan_escape(&p, end, out, &k) || !jbuf_put(b, out, k)) return false;
  }
  *pp = p;
  return p < end;
}

/* The string at j->p (its opening quote): s and n point into the input when it has
 * no escape, else into b. */
static bool jp_string(jp_t *j, jbuf_t *b, const char **s, size_t *n) {
  const char *end = j->end, *start = ++j->p;
  bool high = false;
  const char *p = rtu_json_scan_plain(start, end, &high);
  if (!p || p >= end) return false;
  if (*p == '"') {
    *s = start;
    *n = (size_t)(p - start);
  } else {
    b->len = 0;
    if (!jbuf_put(b, start, (size_t)(p - start)) || !jp_escaped(&p, end, b, &high)) return false;
    *s = b->p;
    *n = b->len;
  }
  j->p = p + 1;
  if (*n > INT32_MAX - 1) return false;
  return !high || bson_utf8_validate(*s, *n, false);
}

static bool jp_value(jp_t *j, bson_t *out, const char *key, int keylen, int depth);

/* The members of an object, j->p on its '{', appended to out. */
static bool jp_members(jp_t *j, bson_t *out, int depth) {
  j->p++;
  jp_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return true;
  }
  for (;;) {
    if (j->p >= j->end || *j->p != '"') return false;
    const char *k;
    size_t kn;
    if (!jp_string(j, &j->key, &k, &kn)) return false;
    if (kn > 0 && k[0] == '$') return false; /* extended JSON, or an operator: libbson's */
    /* k may live in j->key: a scalar value is read into j->str, and a container
     * takes k (document_begin) before its own members reuse j->key. */
    if (!rtu_json_scan_colon(&j->p, j->end) || !jp_value(j, out, k, (int)kn, depth))
      return false;
    int next = rtu_json_scan_next(&j->p, j->end, '}');
    if (next <= 0) return next == 0;
  }
}

/* The elements of an array, j->p on its '[', appended to out. */
static bool jp_elements(jp_t *j, bson_t *out, int depth) {
  j->p++;
  jp_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    return true;
  }
  for (uint32_t i = 0;; i++) {
    char ibuf[16];
    const char *ik;
    size_t ikl = bson_uint32_to_string(i, &ik, ibuf, sizeof ibuf);
    if (!jp_value(j, out, ik, (int)ikl, depth)) return false;
    int next = rtu_json_scan_next(&j->p, j->end, ']');
    if (next <= 0) return next == 0;
  }
}

static bool jp_number(jp_t *j, bson_t *out, const char *key, int keylen) {
  bool integral;
  int64_t v = 0;
  double d = 0;
  if (!rtu_json_scan_number(&j->p, j->end, &integral, &v, &d)) return false;
  if (!integral) return bson_append_double(out, key, keylen, d);
  return v >= INT32_MIN && v <= INT32_MAX ? bson_append_int32(out, key, keylen, (int32_t)v)
                                          : bson_append_int64(out, key, keylen, v);
}

static bool jp_literal(jp_t *j, const char *lit, size_t n) {
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n)) return false;
  j->p += n;
  return true;
}

static bool jp_value(jp_t *j, bson_t *out, const char *key, int keylen, int depth) {
  if (j->p >= j->end) return false;
  switch (*j->p) {
  case '{': {
    if (depth >= RTU_JSON_SCAN_MAX_DEPTH) return false;
    bson_t child;
    if (!bson_append_document_begin(out, key, keylen, &child)) return false;
    bool ok = jp_members(j, &child, depth + 1);
    return bson_append_document_end(out, &child) && ok;
  }
  case '[': {
    if (depth >= RTU_JSON_SCAN_MAX_DEPTH) return false;
    bson_t child;
    if (!bson_append_array_begin(out, key, keylen, &child)) return false;
    bool ok = jp_elements(j, &child, depth + 1);
    return bson_append_array_end(out, &child) && ok;
  }
  case '"': {
    const char *s;
    size_t n;
    return jp_string(j, &j->str, &s, &n) && bson_append_utf8(out, key, keylen, s, (int)n);
  }
  case 't': return jp_literal(j, "true", 4) && bson_append_bool(out, key, keylen, true);
  case 'f': return jp_literal(j, "false", 5) && bson_append_bool(out, key, keylen, false);
  case 'n': return jp_literal(j, "null", 4) && bson_append_null(out, key, keylen);
  default: return jp_number(j, out, key, keylen);
  }
}

bool rtu_json_read_strict(const char *text, size_t len, bool as_doc, bson_t *out) {
  jp_t j = {.p = text, .end = text + len};
  j.key.p = j.key.stack;
  j.key.cap = sizeof j.key.stack;
  j.str.p = j.str.stack;
  j.str.cap = sizeof j.str.stack;
  bson_init(out);
  jp_ws(&j);
  bool ok;
  if (as_doc) ok = j.p < j.end && *j.p == '{' && jp_members(&j, out, 1);
  else ok = jp_value(&j, out, "v", 1, 0);
  if (ok) {
    jp_ws(&j);
    ok = j.p == j.end;
  }
  if (j.key.p != j.key.stack) free(j.key.p);
  if (j.str.p != j.str.stack) free(j.str.p);
  if (!ok) bson_destroy(out);
  return ok;
}

/* ---- libbson's reader ---------------------------------------------------- */

rtu_err_t rtu_json_read_libbson(const char *text, size_t len, bson_t *out, char *errstr,
                                size_t errstr_size) {
  if (!prescan(text, len, errstr, errstr_size)) return RTU_ERR_DATA;
  /* libbson parses only documents: wrap the value so scalars and arrays work too. */
  char stackbuf[1024];
  size_t need = len + 7;
  char *buf = need <= sizeof stackbuf ? stackbuf : bson_malloc(need);
  memcpy(buf, "{\"v\":", 5);
  memcpy(buf + 5, text, len);
  buf[len + 5] = '\n'; /* a newline, so a trailing // comment cannot eat the brace */
  buf[len + 6] = '}';
  bson_error_t err;
  bool ok = bson_init_from_json(out, buf, (ssize_t)need, &err);
  if (buf != stackbuf) bson_free(buf);
  if (!ok) {
    snprintf(errstr, errstr_size, "%s", err.message);
    return RTU_ERR_DATA;
  }
  if (bson_count_keys(out) != 1) {
    bson_destroy(out);
    snprintf(errstr, errstr_size, "more than one JSON value");
    return RTU_ERR_DATA;
  }
  return RTU_OK;
}

rtu_err_t rtu_json_read_bson(const char *text, size_t len, bson_t *out, char *errstr,
                             size_t errstr_size) {
  /* The direct reader takes nothing the prescan refuses (it gives up on '$'
   * names, integers beyond 64 bits, NaN, Infinity, comments, trailing text and
   * deeper nesting), so the prescan is only needed before libbson. */
  if (rtu_json_read_strict(text, len, false, out)) return RTU_OK;
  return rtu_json_read_libbson(text, len, out, errstr, errstr_size);
}

rtu_err_t rtu_json_read_object(const char *text, size_t len, bson_t *out, char *errstr,
                               size_t errstr_size) {
  /* Read straight as a document when the direct reader can (the same parse as
   * under "v"): the wrapper's begin/end, look-up and copy are then saved. */
  if (rtu_json_read_strict(text, len, true, out)) return RTU_OK;
  bson_t wrap;
  rtu_err_t err = rtu_json_read_libbson(text, len, &wrap, errstr, errstr_size);
  if (err != RTU_OK) return err;
  bson_iter_t it;
  uint32_t dlen;
  const uint8_t *data;
  bson_t doc;
  if (!bson_iter_init_find(&it, &wrap, "v") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
    bson_destroy(&wrap);
    snprintf(errstr, errstr_size, "not a JSON object");
    return RTU_ERR_DATA;
  }
  bson_iter_document(&it, &dlen, &data);
  bool ok = bson_init_static(&doc, data, dlen);
  if (ok) bson_copy_to(&doc, out);
  bson_destroy(&wrap);
  if (!ok) {
    snprintf(errstr, errstr_size, "not a JSON object");
    return RTU_ERR_DATA;
  }
  return RTU_OK;
}
