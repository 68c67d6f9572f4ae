/*
 * bench-decisions.c: the measurements behind docs/decisions.md, where rtu writes
 * by hand what a Debian library also does (the JSON reader and writer, ISO-8601
 * dates, integers' text). It times rtu's code against the library on the same input in one
 * process, one after the other, and runs tools/bench-decisions.lua for the Lua
 * side (rtu.json against lua-cjson, jsonenc against cjson.encode).
 *
 *   build/tools/rtu-bench-decisions [--reps N] [FIXTURE.jsonl]
 *
 * Owns only this measurement; may not be linked into the service. CPU time is
 * the process's (CLOCK_PROCESS_CPUTIME_ID): the machine's other load shows in
 * wall time, less in this.
 */
#define _GNU_SOURCE
#include <bson/bson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtu.h"
#include "bson_lua.h"
#include "json_module.h"
#include "json_read.h"
#include "json_write.h"

static double cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The messages' value texts, as rtu reads them from Kafka: given by Lua. */
typedef struct {
  char **text;
  size_t *len;
  size_t n;
} texts_t;

static texts_t texts_of(lua_State *L, int idx) {
  texts_t t = {0};
  t.n = lua_rawlen(L, idx);
  t.text = calloc(t.n, sizeof *t.text);
  t.len = calloc(t.n, sizeof *t.len);
  if (!t.text || !t.len) luaL_error(L, "out of memory");
  for (size_t i = 0; i < t.n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    const char *s = lua_tolstring(L, -1, &t.len[i]);
    t.text[i] = malloc(t.len[i] + 1);
    if (!t.text[i]) luaL_error(L, "out of memory");
    memcpy(t.text[i], s, t.len[i] + 1);
    lua_pop(L, 1);
  }
  return t;
}

static void texts_free(texts_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->text[i]);
  free(t->text);
  free(t->len);
}

/* c_to_bson(texts, reps, reader): ns a text, reader "rtu" or "libbson". */
static int l_c_to_bson(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer reps = luaL_checkinteger(L, 2);
  bool rtu = strcmp(luaL_checkstring(L, 3), "rtu") == 0;
  texts_t t = texts_of(L, 1);
  char err[RTU_ERRSTR_SIZE];
  double t0 = cpu_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    for (size_t i = 0; i < t.n; i++) {
      if (rtu) {
        bson_t doc;
        if (rtu_json_read_bson(t.text[i], t.len[i], &doc, err, sizeof err) != RTU_OK) {
          texts_free(&t);
          return luaL_error(L, "rtu reader: %s", err);
        }
        bson_destroy(&doc);
      } else {
        bson_error_t e;
        bson_t *doc = bson_new_from_json((const uint8_t *)t.text[i], (ssize_t)t.len[i], &e);
        if (!doc) {
          texts_free(&t);
          return luaL_error(L, "bson_new_from_json: %s", e.message);
        }
        bson_destroy(doc);
      }
    }
  }
  double ns = (cpu_ns() - t0) / (double)(reps * (lua_Integer)t.n);
  texts_free(&t);
  lua_pushnumber(L, ns);
  return 1;
}

/* c_from_bson(texts, reps, writer): ns a document written back as JSON text by
 * rtu's writer (the pr-update path) or libbson's relaxed extended JSON. */
static int l_c_from_bson(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer reps = luaL_checkinteger(L, 2);
  bool rtu = strcmp(luaL_checkstring(L, 3), "rtu") == 0;
  texts_t t = texts_of(L, 1);
  bson_t **docs = calloc(t.n, sizeof *docs);
  if (!docs) return luaL_error(L, "out of memory");
  for (size_t i = 0; i < t.n; i++) {
    bson_error_t e;
    docs[i] = bson_new_from_json((const uint8_t *)t.text[i], (ssize_t)t.len[i], &e);
    if (!docs[i]) return luaL_error(L, "bson_new_from_json: %s", e.message);
  }
  double t0 = cpu_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    for (size_t i = 0; i < t.n; i++) {
      if (rtu) {
        bson_string_t *out = bson_string_new(NULL);
        rtu_json_write_doc(docs[i], false, out);
        bson_string_free(out, true);
      } else {
        size_t n;
        char *s = bson_as_relaxed_extended_json(docs[i], &n);
        bson_free(s);
      }
    }
  }
  double ns = (cpu_ns() - t0) / (double)(reps * (lua_Integer)t.n);
  for (size_t i = 0; i < t.n; i++) bson_destroy(docs[i]);
  free(docs);
  texts_free(&t);
  lua_pushnumber(L, ns);
  return 1;
}

/* What libbson writes for one document, to show its shapes. */
static int l_libbson_json(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  bson_error_t e;
  bson_t *doc = bson_new_from_json((const uint8_t *)s, (ssize_t)len, &e);
  if (!doc) return luaL_error(L, "bson_new_from_json: %s", e.message);
  if (lua_toboolean(L, 2)) bson_append_date_time(doc, "date", 4, 1709290800193);
  size_t n;
  char *out = bson_as_relaxed_extended_json(doc, &n);
  lua_pushlstring(L, out, n);
  bson_free(out);
  bson_string_t *mine = bson_string_new(NULL);
  rtu_json_write_doc(doc, false, mine);
  lua_pushlstring(L, mine->str, mine->len);
  bson_string_free(mine, true);
  bson_destroy(doc);
  return 2;
}

static void iso_libc(int64_t ms, char *buf, size_t size) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t k = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + k, size - k, ".%03dZ", (int)(ms % 1000));
}

/* iso(reps, which): ns a date formatted by rtu_iso8601 or gmtime_r + strftime +
 * snprintf, on timestamps a millisecond apart; both must agree. */
static int l_iso(lua_State *L) {
  lua_Integer reps = luaL_checkinteger(L, 1);
  bool rtu = strcmp(luaL_checkstring(L, 2), "rtu") == 0;
  char a[32], b[32];
  int64_t base = 1709290800193;
  for (int64_t ms = base; ms < base + 100000000000; ms += 999983000) {
    rtu_iso8601(ms, a, sizeof a);
    iso_libc(ms, b, sizeof b);
    if (strcmp(a, b)) return luaL_error(L, "dates differ: %s %s", a, b);
  }
  unsigned sum = 0;
  double t0 = cpu_ns();
  for (lua_Integer i = 0; i < reps; i++) {
    if (rtu) rtu_iso8601(base + i, a, sizeof a);
    else iso_libc(base + i, a, sizeof a);
    sum += (unsigned char)a[22];
  }
  double ns = (cpu_ns() - t0) / (double)reps;
  lua_pushnumber(L, ns);
  lua_pushinteger(L, sum); /* so the loop is not optimised away */
  return 2;
}

/* int_text(reps, which): ns an integer's decimal text by rtu_int_text or
 * snprintf("%lld"), on millisecond timestamps; both must agree. */
static int l_int_text(lua_State *L) {
  lua_Integer reps = luaL_checkinteger(L, 1);
  bool rtu = strcmp(luaL_checkstring(L, 2), "rtu") == 0;
  char a[24], b[24];
  for (int64_t v = -1000003; v < 1000003; v += 997) {
    rtu_int_text(v * 1709290, a);
    snprintf(b, sizeof b, "%lld", (long long)(v * 1709290));
    if (strcmp(a, b)) return luaL_error(L, "texts differ: %s %s", a, b);
  }
  unsigned sum = 0;
  int64_t base = 1709290800193;
  double t0 = cpu_ns();
  for (lua_Integer i = 0; i < reps; i++) {
    if (rtu) rtu_int_text(base + i, a);
    else snprintf(a, sizeof a, "%lld", (long long)(base + i));
    sum += (unsigned char)a[12];
  }
  double ns = (cpu_ns() - t0) / (double)reps;
  lua_pushnumber(L, ns);
  lua_pushinteger(L, sum);
  return 2;
}

static int l_cpu_ns(lua_State *L) {
  lua_pushnumber(L, cpu_ns());
  return 1;
}

int main(int argc, char **argv) {
  const char *fixture = NULL, *reps = "200";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = argv[++i];
    else fixture = argv[i];
  }
  if (!fixture) fixture = RTU_SOURCE_DIR "/examples/food-delivery/fixtures/cdc.jsonl";
  lua_State *L = luaL_newstate();
  if (!L) return 2;
  luaL_openlibs(L);
  luaL_requiref(L, "rtu.json", rtu_json_module_open, 0);
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushstring(L, RTU_SOURCE_DIR "/lua/?.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  int rc = 2;
  if (luaL_dostring(L, "return (require('rtu.value'))") != LUA_OK) goto fail;
  rtu_bson_lua_bind(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, 0, 6);
  lua_pushcfunction(L, l_c_to_bson);
  lua_setfield(L, -2, "to_bson");
  lua_pushcfunction(L, l_c_from_bson);
  lua_setfield(L, -2, "from_bson");
  lua_pushcfunction(L, l_libbson_json);
  lua_setfield(L, -2, "libbson_json");
  lua_pushcfunction(L, l_iso);
  lua_setfield(L, -2, "iso");
  lua_pushcfunction(L, l_int_text);
  lua_setfield(L, -2, "int_text");
  lua_pushcfunction(L, l_cpu_ns);
  lua_setfield(L, -2, "cpu_ns");
  lua_setglobal(L, "C");
  if (luaL_loadfile(L, RTU_SOURCE_DIR "/tools/bench-decisions.lua") != LUA_OK) goto fail;
  lua_pushstring(L, fixture);
  lua_pushinteger(L, atoi(reps));
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) goto fail;
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "rtu-bench-decisions: %s\n", lua_tostring(L, -1));
done:
  lua_close(L);
  return rc;
}
