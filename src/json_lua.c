/*
 * json_lua.c: owns the reading of JSON text straight into Lua values. It builds
 * the tables exactly as bson_lua.c's rtu_bson_lua_push_iter would from
 * json_read.c's BSON of the same text (same values, same null, the same Array
 * metatable, the same insertion order, so even pairs() visits keys in the same
 * order), without the BSON in between (see docs/performance.md). It gives up on
 * everything json_read.c's direct reader gives up on, which includes all that
 * its prescan refuses ('$' names, integers beyond 64 bits, NaN/Infinity,
 * trailing text), and on strings or texts too large for BSON; the BSON path then
 * decides, so results and error messages outside the strict subset stay as they
 * were. Lua memory errors are raised as by any push: nothing here holds C memory.
 */
#include "json_lua.h"

#include <bson/bson.h>
#include <lauxlib.h>

#include "bson_lua.h"
#include "json_read.h"
#include "json_scan.h"

typedef struct {
  lua_State *L;
  const char *p, *end;
  int skip; /* stack index of the caller's leave_out, 0: none */
} jl_t;

static void jl_ws(jl_t *j) { j->p = rtu_json_scan_ws(j->p, j->end); }

/* The stack is grown by this many members at a time while an object or array
 * is read. */
#define JL_CHUNK 32

/* Makes the table of the `held` members above slot (key/value pairs, or values
 * of an array) at its size, sets them in order (a later duplicate name wins) and
 * leaves it in slot. */
static void jl_fill(lua_State *L, int slot, int held, bool array) {
  lua_createtable(L, array ? held : 0, array ? 0 : held);
  for (int k = 0; k < held; k++) {
    if (array) {
      lua_pushvalue(L, slot + 1 + k);
      lua_rawseti(L, -2, k + 1);
    } else {
      lua_pushvalue(L, slot + 1 + 2 * k);
      lua_pushvalue(L, slot + 2 + 2 * k);
      lua_rawset(L, -3);
    }
  }
  lua_replace(L, slot);
  lua_settop(L, slot);
}

/* Pushes the string from start to its closing quote q, p at its first
 * backslash; high as the plain part before p set it. Escapes: the text is never
 * shorter than what it stands for, so one buffer of the escaped length holds the
 * result. */
static bool jl_unescape(jl_t *j, const char *start, const char *p, const char *q, bool high) {
  size_t cap = (size_t)(q - start);
  if (cap > INT32_MAX - 1) return false;
  luaL_Buffer b;
  char *o = luaL_buffinitsize(j->L, &b, cap), *o0 = o;
  memcpy(o, start, (size_t)(p - start));
  o += p - start;
  while (p < q) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20) return false;
    if (c != '\\') {
      high |= c >= 0x80;
      *o++ = (char)c;
      p++;
      continue;
    }
    char out[4];
    size_t k;
    p++;
    if (!rtu_json_scan_escape(&p, q, out, &k)) return false;
    memcpy(o, out, k);
    o += k;
  }
  size_t n = (size_t)(o - o0);
  if (high && !bson_utf8_validate(o0, n, false)) return false;
  luaL_pushresultsize(&b, n);
  return true;
}

/* Pushes the string at j->p (its opening quote), unescaped. */
static bool jl_string(jl_t *j) {
  const char *end = j->end, *start = ++j->p;
  bool high = false;
  const char *p = rtu_json_scan_plain(start, end, &high);
  if (!p || p >= end) return false;
  if (*p == '"') {
    size_t n = (size_t)(p - start);
    if (n > INT32_MAX - 1) return false; /* json_read.c's limit */
    if (high && !bson_utf8_validate(start, n, false)) return false;
    lua_pushlstring(j->L, start, n);
    j->p = p + 1;
    return true;
  }
  const char *q = p;
  while (q < end && *q != '"') {
    if (*q == '\\' && end - q < 2) return false;
    q += *q == '\\' ? 2 : 1;
  }
  if (q >= end || !jl_unescape(j, start, p, q, high)) return false;
  j->p = q + 1;
  return true;
}

static bool jl_number(jl_t *j) {
  bool integral;
  int64_t v = 0;
  double d = 0;
  if (!rtu_json_scan_number(&j->p, j->end, &integral, &v, &d)) return false;
  if (integral) lua_pushinteger(j->L, (lua_Integer)v);
  else lua_pushnumber(j->L, d);
  return true;
}

/* ---- members left out ---------------------------------------------------- */

static bool jl_skip(jl_t *j, int depth);

/* Skips the members or elements of the container at j->p (its bracket c). */
static bool jl_skip_container(jl_t *j, int depth, char c) {
  char close = c == '{' ? '}' : ']';
  if (depth >= RTU_JSON_SCAN_MAX_DEPTH) return false;
  j->p++;
  jl_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return true;
  }
  for (;;) {
    if (c == '{') {
      /* a name: plain (no escape, so '$' shows) and not extended JSON's */
      if (j->p >= j->end || *j->p != '"') return false;
      bool high = false;
      const char *start = j->p + 1, *q = rtu_json_scan_plain(start, j->end, &high);
      if (!q || q >= j->end || *q != '"' || (q > start && *start == '$')) return false;
      if (high && !bson_utf8_validate(start, (size_t)(q - start), false)) return false;
      j->p = q + 1;
      if (!rtu_json_scan_colon(&j->p, j->end)) return false;
    }
    if (!jl_skip(j, depth + 1)) return false;
    int next = rtu_json_scan_next(&j->p, j->end, close);
    if (next < 0) return false;
    if (next == 0) return true;
  }
}

/* Reads the value at j->p as jl_value would and builds nothing: a member the
 * caller leaves out (a Debezium record's source block is a third of its text).
 * false wherever jl_value could give up, so the BSON path then decides on the
 * whole text, this member included. */
static bool jl_skip(jl_t *j, int depth) {
  if (j->p >= j->end) return false;
  char c = *j->p;
  if (c == '{' || c == '[') return jl_skip_container(j, depth, c);
  if (c == '"') {
    bool high = false;
    const char *start = j->p + 1, *q = rtu_json_scan_plain(start, j->end, &high);
    if (!q || q >= j->end) return false;
    if (*q == '"') {
      if ((size_t)(q - start) > INT32_MAX - 1) return false;
      if (high && !bson_utf8_validate(start, (size_t)(q - start), false)) return false;
      j->p = q + 1;
      return true;
    }
    /* escapes: rare in what is left out; read as kept, then dropped */
    if (!lua_checkstack(j->L, 2) || !jl_string(j)) return false;
    lua_pop(j->L, 1);
    return true;
  }
  if (c == 't' || c == 'f' || c == 'n') {
    const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) return false;
    j->p += n;
    return true;
  }
  bool integral;
  int64_t v;
  double d;
  return rtu_json_scan_number(&j->p, j->end, &integral, &v, &d);
}

/* At most this many names in a set of members to keep are matched in C; a
 * larger set is looked up in its table, name by name. */
#define JL_KEEP_MAX 8

typedef struct {
  const char *s;
  size_t n;
} jl_name_t;

/* The string keys of the set at keep into names (alive as keys of the set,
 * which is on the stack): their count, -1 when there are more than JL_KEEP_MAX. */
static int jl_keep_names(lua_State *L, int keep, jl_name_t names[JL_KEEP_MAX]) {
  int nnames = 0;
  lua_pushnil(L);
  while (lua_next(L, keep)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue; /* never a JSON name */
    if (nnames == JL_KEEP_MAX) {
      lua_pop(L, 1);
      return -1;
    }
    names[nnames].s = lua_tolstring(L, -1, &names[nnames].n);
    nnames++;
  }
  return nnames;
}

/* For a member of an object that keeps only some (names[0..nnames)): when its
 * name is plain and not one of them, reads the member as jl_skip would without
 * making its name a Lua string (most of what a before image holds is left out),
 * and returns 1; 0 when the caller must read the member; -1 on what jl_value
 * gives up on. */
static int jl_skip_unnamed(jl_t *j, int depth, const jl_name_t *names, int nnames) {
  bool high = false;
  const char *start = j->p + 1, *q = rtu_json_scan_plain(start, j->end, &high);
  if (!q || q >= j->end || *q != '"') return 0; /* escapes: read as usual */
  size_t n = (size_t)(q - start);
  if (n > 0 && *start == '$') return -1;
  if (high && !bson_utf8_validate(start, n, false)) return -1;
  for (int i = 0; i < nnames; i++)
    if (names[i].n == n && !memcmp(names[i].s, start, n)) return 0;
  j->p = q + 1;
  if (!rtu_json_scan_colon(&j->p, j->end) || !jl_skip(j, depth + 1)) return -1;
  return 1;
}

/* ---- values built -------------------------------------------------------- */

static bool jl_value(jl_t *j, int depth);
static bool jl_object(jl_t *j, int depth, int keep);

/* The member whose name is at j->p of an object at depth: pushes its name and
 * value and returns 1, or reads it as jl_skip would and returns 0 when it is
 * left out (keep: the object's set of names to build, or 0); -1 on what
 * jl_value gives up on. */
static int jl_member(jl_t *j, int depth, int keep) {
  lua_State *L = j->L;
  if (!jl_string(j)) return -1;
  size_t kn;
  const char *k = lua_tolstring(L, -1, &kn);
  if (kn > 0 && k[0] == '$') return -1; /* extended JSON, or an operator: libbson's */
  if (!rtu_json_scan_colon(&j->p, j->end)) return -1;
  bool build = true;
  int sub = 0; /* stack index of the set to build this member with */
  if (keep) {
    lua_pushvalue(L, -1);
    build = lua_rawget(L, keep) != LUA_TNIL;
    lua_pop(L, 1);
  } else if (depth == 0 && j->skip) {
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, j->skip);
    /* a member that is not an object is built whole: its reader says what is
     * wrong with it */
    if (t == LUA_TTABLE && j->p < j->end && *j->p == '{') sub = lua_gettop(L);
    else lua_pop(L, 1);
    build = t == LUA_TNIL || t == LUA_TTABLE;
  }
  if (!build) {
    lua_pop(L, 1);
    return jl_skip(j, depth + 1) ? 0 : -1;
  }
  if (!(sub ? jl_object(j, depth + 1, sub) : jl_value(j, depth + 1))) return -1;
  if (sub) lua_remove(L, sub);
  return 1;
}

/* Pushes the object at j->p. keep: 0, or the stack index of the set of names of
 * the members to build (the others are read with jl_skip). At depth 0 the
 * members named in j->skip are left out, or, for a set given as their value,
 * built with only the members it names when they are objects. */
static bool jl_object(jl_t *j, int depth, int keep) {
  /* Members wait on the stack so that the table is made at its size (see
   * docs/performance.md). bson_lua.c sizes its tables the same way, so both
   * paths lay a table out alike (the same pairs() order), unless members are
   * left out. */
  lua_State *L = j->L;
  if (depth >= RTU_JSON_SCAN_MAX_DEPTH || !lua_checkstack(L, 2 * JL_CHUNK + 4)) return false;
  jl_name_t names[JL_KEEP_MAX];
  int nnames = keep ? jl_keep_names(L, keep, names) : 0;
  int slot = lua_gettop(L) + 1, held = 0;
  lua_pushnil(L); /* the table's slot */
  j->p++;
  jl_ws(j);
  if (j->p < j->end && *j->p == '}') j->p++;
  else
    for (;;) {
      /* past what the stack can hold, the BSON path decides */
      if (held % JL_CHUNK == JL_CHUNK - 1 && !lua_checkstack(L, 2 * JL_CHUNK + 4)) return false;
      if (j->p >= j->end || *j->p != '"') return false;
      int skipped = keep && nnames >= 0 ? jl_skip_unnamed(j, depth, names, nnames) : 0;
      if (skipped < 0) return false;
      if (!skipped) {
        int built = jl_member(j, depth, keep);
        if (built < 0) return false;
        held += built;
      }
      int next = rtu_json_scan_next(&j->p, j->end, '}');
      if (next < 0) return false;
      if (next == 0) break;
    }
  jl_fill(L, slot, held, false);
  return true;
}

/* Pushes the array at j->p. */
static bool jl_array(jl_t *j, int depth) {
  lua_State *L = j->L;
  if (depth >= RTU_JSON_SCAN_MAX_DEPTH || !lua_checkstack(L, JL_CHUNK + 4)) return false;
  int slot = lua_gettop(L) + 1, held = 0;
  lua_pushnil(L);
  j->p++;
  jl_ws(j);
  if (j->p < j->end && *j->p == ']') j->p++;
  else
    for (;;) {
      if (held % JL_CHUNK == JL_CHUNK - 1 && !lua_checkstack(L, JL_CHUNK + 4)) return false;
      if (!jl_value(j, depth + 1)) return false;
      held++;
      int next = rtu_json_scan_next(&j->p, j->end, ']');
      if (next < 0) return false;
      if (next == 0) break;
    }
  jl_fill(L, slot, held, true);
  rtu_bson_lua_set_array_mt(L, slot);
  return true;
}

/* Pushes the literal word of n bytes at j->p (true, false or null). */
static bool jl_literal(jl_t *j, const char *word, size_t n) {
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) return false;
  j->p += n;
  if (n == 4 && word[0] == 'n') rtu_bson_lua_push_null(j->L);
  else lua_pushboolean(j->L, word[0] == 't');
  return true;
}

/* Pushes the value at j->p. */
static bool jl_value(jl_t *j, int depth) {
  if (j->p >= j->end) return false;
  switch (*j->p) {
  case '{': return jl_object(j, depth, 0);
  case '[': return jl_array(j, depth);
  case '"': return jl_string(j);
  case 't': return jl_literal(j, "true", 4);
  case 'f': return jl_literal(j, "false", 5);
  case 'n': return jl_literal(j, "null", 4);
  default: return jl_number(j);
  }
}

bool rtu_json_lua_push_strict(lua_State *L, const char *text, size_t len, int leave_out) {
  /* What BSON could not hold (a document is at most 2 GiB, and JSON text grows
   * up to about 7 times in BSON) is left to the BSON path and its refusal. */
  if (len > (size_t)INT32_MAX / 8) return false;
  int top = lua_gettop(L);
  jl_t j = {.L = L, .p = text, .end = text + len, .skip = leave_out};
  jl_ws(&j);
  bool ok = jl_value(&j, 0);
  if (ok) {
    jl_ws(&j);
    ok = j.p == j.end;
  }
  if (!ok) lua_settop(L, top);
  return ok;
}

rtu_err_t rtu_json_lua_decode(lua_State *L, const char *text, size_t len, int leave_out,
                              char *errstr, size_t errstr_size) {
  if (rtu_json_lua_push_strict(L, text, len, leave_out)) return RTU_OK;
  bson_t doc;
  if (rtu_json_read_bson(text, len, &doc, errstr, errstr_size) != RTU_OK) return RTU_ERR_DATA;
  bson_iter_t it;
  if (bson_iter_init(&it, &doc) && bson_iter_next(&it)) rtu_bson_lua_push_iter(L, &it);
  else lua_pushnil(L);
  bson_destroy(&doc);
  return RTU_OK;
}
