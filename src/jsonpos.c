/*
 * jsonpos.c: owns the position-keeping JSON reader of configuration files. It
 * reads text into a tree and nothing else: no file I/O, no validation of what
 * the configuration means (config.c and checker.c do that).
 *
 * Why by hand: libbson's bson_init_from_json, lua-cjson and jansson give no
 * position per value, and libbson keeps both members of a repeated key (so a
 * reader of the BSON sees the first), where JSON.parse keeps the last.
 */
#include "jsonpos.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 256

typedef struct {
  const char *p, *end;
  int line, col;
  char *err;
  size_t err_size;
  int eline, ecol;
  bool failed;
} reader_t;

static void fail(reader_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(reader_t *r, const char *fmt, ...) {
  if (r->failed) return;
  r->failed = true;
  r->eline = r->line;
  r->ecol = r->col;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, r->err_size, fmt, ap);
  va_end(ap);
}

/* Columns count characters: a UTF-8 continuation byte does not move them. */
static void advance(reader_t *r) {
  if (*r->p == '\n') {
    r->line++;
    r->col = 1;
  } else if (((unsigned char)*r->p & 0xC0) != 0x80) {
    r->col++;
  }
  r->p++;
}

static void skip_space(reader_t *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    advance(r);
}

/* What is at the reader, for messages. */
static const char *seen(const reader_t *r, char buf[16]) {
  if (r->p >= r->end) return "the end of the file";
  unsigned char c = (unsigned char)*r->p;
  if (c < 0x20 || c >= 0x7f) snprintf(buf, 16, "byte 0x%02x", c);
  else snprintf(buf, 16, "'%c'", c);
  return buf;
}

static bool parse_value(reader_t *r, rtu_jnode_t *out, int depth);

/* Appends a UTF-8 encoding of cp to buf. */
static size_t put_utf8(char *buf, unsigned cp) {
  if (cp < 0x80) {
    buf[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    buf[0] = (char)(0xC0 | (cp >> 6));
    buf[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    buf[0] = (char)(0xE0 | (cp >> 12));
    buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  buf[0] = (char)(0xF0 | (cp >> 18));
  buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  buf[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int hex4(reader_t *r, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    if (r->p >= r->end) return 0;
    char c = *r->p;
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
    advance(r);
  }
  *out = v;
  return 1;
}

/* At the opening quote: reads the string into a malloc'd buffer. */
static char *parse_string(reader_t *r, size_t *len_out) {
  advance(r); /* the quote */
  /* Escapes only shrink the text: its length bounds the result. */
  size_t cap = 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fail(r, "out of memory");
    return NULL;
  }
  for (;;) {
    if (r->p >= r->end) {
      fail(r, "unterminated string");
      goto bad;
    }
    if (len + 8 > cap) {
      char *b = realloc(buf, cap *= 2);
      if (!b) {
        fail(r, "out of memory");
        goto bad;
      }
      buf = b;
    }
    unsigned char c = (unsigned char)*r->p;
    if (c == '"') {
      advance(r);
      break;
    }
    if (c < 0x20) {
      fail(r, "control character (byte 0x%02x) in a string: write it as \\u%04x", c, c);
      goto bad;
    }
    if (c != '\\') {
      buf[len++] = (char)c;
      advance(r);
      continue;
    }
    advance(r);
    if (r->p >= r->end) {
      fail(r, "unterminated string");
      goto bad;
    }
    char e = *r->p;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = strchr(from, e);
    if (e && k) {
      buf[len++] = to[k - from];
      advance(r);
      continue;
    }
    if (e != 'u') {
      if (e > 0x20 && e < 0x7f) fail(r, "invalid escape '\\%c' in a string", e);
      else fail(r, "invalid escape in a string");
      goto bad;
    }
    advance(r);
    unsigned cp, lo;
    if (!hex4(r, &cp)) {
      fail(r, "\\u needs four hexadecimal digits");
      goto bad;
    }
    if (cp >= 0xD800 && cp < 0xDC00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
      reader_t save = *r;
      advance(r);
      advance(r);
      if (hex4(r, &lo) && lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      else *r = save;
    }
    if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD; /* a lone surrogate, as JSON.parse keeps it */
    len += put_utf8(buf + len, cp);
  }
  buf[len] = '\0';
  *len_out = len;
  return buf;
bad:
  free(buf);
  return NULL;
}

static bool parse_number(reader_t *r, rtu_jnode_t *out) {
  const char *start = r->p;
  if (r->p < r->end && *r->p == '-') advance(r);
  if (r->p >= r->end || *r->p < '0' || *r->p > '9') {
    char b[16];
    fail(r, "expected a digit, got %s", seen(r, b));
    return false;
  }
  bool zero = *r->p == '0';
  if (zero) advance(r);
  else
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') advance(r);
  if (zero && r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    fail(r, "a number cannot start with 0 followed by digits");
    return false;
  }
  if (r->p < r->end && *r->p == '.') {
    advance(r);
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') {
      char b[16];
      fail(r, "expected a digit after '.', got %s", seen(r, b));
      return false;
    }
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') advance(r);
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    advance(r);
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) advance(r);
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') {
      char b[16];
      fail(r, "expected a digit in the exponent, got %s", seen(r, b));
      return false;
    }
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') advance(r);
  }
  out->type = RTU_J_NUMBER;
  out->str_len = (size_t)(r->p - start);
  out->str = strndup(start, out->str_len);
  if (!out->str) {
    fail(r, "out of memory");
    return false;
  }
  out->num = strtod(out->str, NULL);
  return true;
}

static bool parse_word(reader_t *r, const char *word, rtu_jnode_t *out, rtu_jtype_t type, bool b) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
    char buf[16];
    fail(r, "expected a JSON value, got %s", seen(r, buf));
    return false;
  }
  for (size_t i = 0; i < n; i++) advance(r);
  out->type = type;
  out->boolean = b;
  return true;
}

static rtu_jnode_t *push_kid(reader_t *r, rtu_jnode_t *parent, size_t *cap) {
  if (parent->n == *cap) {
    size_t c = *cap ? *cap * 2 : 4;
    rtu_jnode_t *k = realloc(parent->kids, c * sizeof *k);
    if (!k) {
      fail(r, "out of memory");
      return NULL;
    }
    parent->kids = k;
    *cap = c;
  }
  rtu_jnode_t *kid = &parent->kids[parent->n++];
  memset(kid, 0, sizeof *kid);
  return kid;
}

static bool parse_container(reader_t *r, rtu_jnode_t *out, int depth, bool object) {
  char close = object ? '}' : ']';
  size_t cap = 0;
  out->type = object ? RTU_J_OBJECT : RTU_J_ARRAY;
  if (depth > MAX_DEPTH) {
    fail(r, "nested deeper than %d levels", MAX_DEPTH);
    return false;
  }
  advance(r);
  skip_space(r);
  if (r->p < r->end && *r->p == close) {
    advance(r);
    return true;
  }
  for (;;) {
    skip_space(r);
    rtu_jnode_t *kid = push_kid(r, out, &cap);
    if (!kid) return false;
    if (object) {
      char b[16];
      if (r->p >= r->end || *r->p != '"') {
        fail(r, "expected a member name in double quotes, got %s", seen(r, b));
        return false;
      }
      kid->key_line = r->line;
      kid->key_col = r->col;
      size_t klen;
      if (!(kid->key = parse_string(r, &klen))) return false;
      skip_space(r);
      if (r->p >= r->end || *r->p != ':') {
        fail(r, "expected ':' after the member name \"%s\", got %s", kid->key, seen(r, b));
        return false;
      }
      advance(r);
      skip_space(r);
    }
    if (!parse_value(r, kid, depth + 1)) return false;
    if (object)
      for (size_t i = 0; i + 1 < out->n; i++)
        if (!out->kids[i].shadowed && !strcmp(out->kids[i].key, kid->key)) out->kids[i].shadowed = true;
    skip_space(r);
    char b[16];
    if (r->p < r->end && *r->p == ',') {
      advance(r);
      skip_space(r);
      if (r->p < r->end && *r->p == close) {
        fail(r, "trailing comma before '%c' (JSON allows none)", close);
        return false;
      }
      continue;
    }
    if (r->p < r->end && *r->p == close) {
      advance(r);
      return true;
    }
    fail(r, "expected ',' or '%c' after %s, got %s", close,
         object ? "an object member" : "an array item", seen(r, b));
    return false;
  }
}

static bool parse_value(reader_t *r, rtu_jnode_t *out, int depth) {
  skip_space(r);
  out->line = r->line;
  out->col = r->col;
  char b[16];
  if (r->p >= r->end) {
    fail(r, "expected a JSON value, got the end of the file");
    return false;
  }
  switch (*r->p) {
  case '{': return parse_container(r, out, depth, true);
  case '[': return parse_container(r, out, depth, false);
  case '"':
    out->type = RTU_J_STRING;
    return (out->str = parse_string(r, &out->str_len)) != NULL;
  case 't': return parse_word(r, "true", out, RTU_J_BOOL, true);
  case 'f': return parse_word(r, "false", out, RTU_J_BOOL, false);
  case 'n': return parse_word(r, "null", out, RTU_J_NULL, false);
  default:
    if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) return parse_number(r, out);
    fail(r, "expected a JSON value, got %s", seen(r, b));
    return false;
  }
}

static void free_kids(rtu_jnode_t *n) {
  for (size_t i = 0; i < n->n; i++) {
    free_kids(&n->kids[i]);
    free(n->kids[i].key);
    free(n->kids[i].str);
  }
  free(n->kids);
}

rtu_jnode_t *rtu_jsonpos_parse(const char *text, size_t len, int *line, int *col, char *errstr,
                               size_t errstr_size) {
  reader_t r = {text, text + len, 1, 1, errstr, errstr_size, 0, 0, false};
  rtu_jnode_t *root = calloc(1, sizeof *root);
  if (!root) {
    snprintf(errstr, errstr_size, "out of memory");
    *line = *col = 1;
    return NULL;
  }
  if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) r.p += 3; /* a BOM, as editors write */
  if (parse_value(&r, root, 0)) {
    skip_space(&r);
    char b[16];
    if (r.p < r.end) fail(&r, "unexpected %s after the JSON value", seen(&r, b));
  }
  if (r.failed) {
    *line = r.eline;
    *col = r.ecol;
    rtu_jsonpos_free(root);
    return NULL;
  }
  return root;
}

void rtu_jsonpos_free(rtu_jnode_t *root) {
  if (!root) return;
  free_kids(root);
  free(root->key);
  free(root->str);
  free(root);
}

const rtu_jnode_t *rtu_jsonpos_get(const rtu_jnode_t *obj, const char *key) {
  if (!obj || obj->type != RTU_J_OBJECT) return NULL;
  for (size_t i = obj->n; i-- > 0;)
    if (!strcmp(obj->kids[i].key, key)) return &obj->kids[i];
  return NULL;
}

const rtu_jnode_t *rtu_jsonpos_find(const rtu_jnode_t *root, const char *path) {
  const rtu_jnode_t *at = root;
  const char *p = path;
  while (at && *p) {
    if (*p == '.') p++;
    if (*p == '[' && at->type == RTU_J_ARRAY) {
      char *end;
      unsigned long i = strtoul(p + 1, &end, 10);
      if (*end != ']' || i >= at->n) return at;
      at = &at->kids[i];
      p = end + 1;
      continue;
    }
    if (at->type != RTU_J_OBJECT) return at;
    /* The longest member name the path goes on with: names may hold dots. */
    const rtu_jnode_t *best = NULL;
    size_t best_len = 0;
    for (size_t i = at->n; i-- > 0;) {
      const rtu_jnode_t *k = &at->kids[i];
      size_t kl = strlen(k->key);
      if (kl >= best_len && !strncmp(p, k->key, kl) &&
          (p[kl] == '\0' || p[kl] == '.' || p[kl] == '[') && (!best || kl > best_len)) {
        best = k;
        best_len = kl;
      }
    }
    if (!best) return at;
    at = best;
    p += best_len;
  }
  return at;
}

const char *rtu_jsonpos_type_name(rtu_jtype_t type) {
  switch (type) {
  case RTU_J_NULL: return "null";
  case RTU_J_BOOL: return "a boolean";
  case RTU_J_NUMBER: return "a number";
  case RTU_J_STRING: return "a string";
  case RTU_J_ARRAY: return "an array";
  case RTU_J_OBJECT: return "an object";
  }
  return "a value";
}
