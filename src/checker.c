/*
 * checker.c: owns the whole-configuration checker: it reads the configuration
 * (config.c), adds the checks that need several files or the libraries
 * (mapTable.json against the topics, the casts and strategies folders; SASL and
 * librdkafka's own view of the settings; the low-code files through
 * checker_lowcode.c; every Lua file compiled), builds one Lua state of the
 * generation as `rtu run` would (script.c) for what only running the files
 * shows, and gives every problem its line. It never connects to MongoDB; with
 * kafka_client it builds a Kafka client and drops it at once.
 */
#include "checker.h"

#include <dirent.h>
#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "checker_lowcode.h"
#include "config_files.h"
#include "kafka.h"
#include "script.h"

/* The built-in casts (lua/rtu/casts.lua), with the Projection Storer names. */
static const char *const builtin_casts[] = {
    "defaultIdentity", "defaultCastToString", "defaultCastToInteger", "defaultCastToFloat",
    "defaultCastUnitTimestampToISOString", "defaultCastStringToBoolean", "defaultCastToDate",
    "defaultCastToObject", "defaultCastToArrayOfObject", "identity", "castToString",
    "castToInteger", "castToFloat", "castUnixTimestampToISOString", "castStringToBoolean",
    "castToDate", "castToObject", "castToArrayOfObject"};
#define NBUILTIN (sizeof builtin_casts / sizeof builtin_casts[0])
#define MAXN 1024

static bool is_file(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The names (without the extension) of the files of folder ending in ext. */
static size_t folder_names(const char *folder, const char *ext, char **out, size_t max) {
  size_t n = 0, el = strlen(ext);
  DIR *d = folder ? opendir(folder) : NULL;
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || len <= el || strcmp(e->d_name + len - el, ext)) continue;
    out[n] = strndup(e->d_name, len - el);
    if (out[n]) n++;
  }
  closedir(d);
  return n;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
}

/* A name.lua that should be in folder and is not: the problem names a leftover
 * name.js, or the closest file there is. what: "cast function", "strategy". */
static void missing_lua(rtu_problems_t *pr, const char *file, int line, int col, const char *path,
                        const char *folder, const char *var, const char *name, const char *what,
                        const char *shape, const char *const *also, size_t nalso) {
  char js[4096], lua[4096];
  snprintf(js, sizeof js, "%s/%s.js", folder ? folder : ".", name);
  snprintf(lua, sizeof lua, "%s/%s.lua", folder ? folder : ".", name);
  if (folder && is_file(js)) {
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, line, col, path,
                    "%s '%s' is %s, JavaScript of the Fast Data service: rtu runs Lua; write %s, "
                    "a %s",
                    what, name, js, lua, shape);
    return;
  }
  char *files[MAXN];
  const char *cands[MAXN + NBUILTIN];
  size_t nf = folder_names(folder, ".lua", files, MAXN), nc = 0;
  for (size_t i = 0; i < nalso; i++) cands[nc++] = also[i];
  for (size_t i = 0; i < nf; i++) cands[nc++] = files[i];
  const char *near = rtu_closest(name, cands, nc);
  char where[4200];
  if (folder) snprintf(where, sizeof where, "no %s", lua);
  else snprintf(where, sizeof where, "%s is not set", var);
  rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, line, col, path, "unknown %s '%s'%s%s%s (%s%s)",
                  what, name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "",
                  nalso ? "not a built-in, and " : "", where);
  free_names(files, nf);
}

static void check_casts(const rtu_config_t *cfg, const char *map, rtu_problems_t *pr) {
  char path[1024], lua[4096];
  for (size_t i = 0; i < cfg->nprojections; i++) {
    const rtu_projection_t *p = &cfg->projections[i];
    for (size_t j = 0; j < p->nfields; j++) {
      const rtu_field_t *f = &p->fields[j];
      bool builtin = false;
      for (size_t k = 0; k < NBUILTIN && !builtin; k++) builtin = !strcmp(builtin_casts[k], f->cast);
      snprintf(lua, sizeof lua, "%s/%s.lua", cfg->cast_functions_folder ? cfg->cast_functions_folder : ".",
               f->cast);
      if (builtin || (cfg->cast_functions_folder && is_file(lua))) continue;
      snprintf(path, sizeof path, "%.400s.conversion.%.400s.cast", p->name, f->src);
      missing_lua(pr, map, f->line, f->col, path, cfg->cast_functions_folder, "CAST_FUNCTIONS_FOLDER",
                  f->cast, "cast function", "function(value, fieldName, log) returning the value",
                  builtin_casts, NBUILTIN);
    }
  }
}

/* mapTable.json `changes`: used in manual mode only. */
static void check_changes(const rtu_config_t *cfg, const char *map, rtu_problems_t *pr) {
  char path[1024], lua[4096];
  for (size_t i = 0; i < cfg->nprojections; i++) {
    const rtu_projection_t *p = &cfg->projections[i];
    for (size_t j = 0; j < p->nchanges; j++) {
      const rtu_change_binding_t *b = &p->changes[j];
      snprintf(path, sizeof path, "%.400s.changes.%.400s", p->name, b->single_view);
      if (!cfg->pc_enabled || cfg->use_automatic_strategies) {
        rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, map, b->line, b->col, path,
                        "ignored: %s", !cfg->pc_enabled
                                           ? "PROJECTIONS_CHANGES_ENABLED is false, no strategy runs"
                                           : "with USE_AUTOMATIC_STRATEGIES=true the strategies come "
                                             "from erSchema.json and projectionChangesSchema.json");
        continue;
      }
      snprintf(lua, sizeof lua, "%s/%s.lua", cfg->strategies_folder ? cfg->strategies_folder : ".",
               b->strategy);
      if (cfg->strategies_folder && is_file(lua)) continue;
      missing_lua(pr, map, b->line, b->col, path, cfg->strategies_folder, "STRATEGIES_FOLDER",
                  b->strategy, "strategy", "function(document, db, log) returning the identifiers",
                  NULL, 0);
    }
  }
}

static bool topic_ok(const char *t) {
  size_t n = strlen(t);
  if (n == 0 || n > 249 || !strcmp(t, ".") || !strcmp(t, "..")) return false;
  return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void check_topics(const rtu_config_t *cfg, const char *map, rtu_problems_t *pr) {
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (!topic_ok(cfg->topics[i].topic))
      rtu_problems_at(pr, RTU_PROBLEM_ERROR, "INVARIANT_TOPIC_MAP", NULL, 0, 0, NULL,
                      "'%s' is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                      cfg->topics[i].topic);
  if (cfg->dead_letter_topic && !topic_ok(cfg->dead_letter_topic))
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, "DEAD_LETTER_TOPIC", NULL, 0, 0, NULL,
                    "'%s' is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                    cfg->dead_letter_topic);
  if (!cfg->topic_map_json) return;
  for (size_t i = 0; i < cfg->nprojections; i++) {
    const rtu_projection_t *p = &cfg->projections[i];
    bool fed = false;
    for (size_t j = 0; j < cfg->ntopics && !fed; j++) fed = &cfg->projections[cfg->topics[j].projection] == p;
    if (!fed)
      rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, map, p->line, p->col, p->name,
                      "no topic of INVARIANT_TOPIC_MAP feeds projection '%s': it is never written",
                      p->name);
  }
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk, (void)level, (void)fac, (void)buf;
}

static void quiet_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk, (void)err, (void)reason, (void)opaque;
}

/* SASL over plain text, and librdkafka's own view of the settings. */
static void check_kafka(const rtu_config_t *cfg, bool client, rtu_problems_t *pr) {
  bool user = cfg->kafka_sasl_username != NULL, pass = cfg->kafka_sasl_password != NULL;
  bool oauth = cfg->kafka_sasl_mechanism && !strcasecmp(cfg->kafka_sasl_mechanism, "oauthbearer");
  if (user != pass && !oauth) /* with oauthbearer config.c makes it an error */
    rtu_problems_at(pr, RTU_PROBLEM_WARNING, user ? "KAFKA_SASL_PASSWORD" : "KAFKA_SASL_USERNAME",
                    NULL, 0, 0, NULL,
                    "not set while %s is: SASL is off (it needs both username and password)",
                    user ? "KAFKA_SASL_USERNAME" : "KAFKA_SASL_PASSWORD");
  if (user && pass && !cfg->ca_cert_path)
    rtu_problems_at(pr, RTU_PROBLEM_WARNING, "KAFKA_SASL_MECHANISM", NULL, 0, 0, NULL,
                    "SASL %s credentials go to the brokers without TLS (SASL_PLAINTEXT): set "
                    "CA_CERT_PATH to use SASL_SSL",
                    cfg->kafka_sasl_mechanism ? cfg->kafka_sasl_mechanism : "plain");
  if (!cfg->kafka_brokers || !cfg->kafka_sasl_mechanism) return;
  char err[512];
  rd_kafka_conf_t *conf = rtu_kafka_conf_new(cfg, RTU_KAFKA_PRODUCER, err, sizeof err);
  if (!conf) {
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, "KAFKA_BROKERS", NULL, 0, 0, NULL,
                    "librdkafka refuses the Kafka settings: %s", err);
    return;
  }
  if (!client) {
    rd_kafka_conf_destroy(conf);
    return;
  }
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  rd_kafka_conf_set_error_cb(conf, quiet_error);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, cfg->ca_cert_path ? "CA_CERT_PATH" : "KAFKA_BROKERS",
                    NULL, 0, 0, NULL, "librdkafka cannot create a client from the settings: %s", err);
    return;
  }
  rd_kafka_destroy(rk);
}

/* ---- the low-code files --------------------------------------------------- */

static void check_json_files(const rtu_config_t *cfg, rtu_problems_t *pr) {
  char er_file[4096], pc_file[4096], kpc_file[4096];
  rtu_jnode_t *er = NULL, *pc = NULL, *kpc = NULL;
  bool lowcode = cfg->pc_enabled && cfg->use_automatic_strategies;
  if (lowcode && is_dir(cfg->er_schema_folder)) {
    snprintf(er_file, sizeof er_file, "%s/erSchema.json", cfg->er_schema_folder);
    if ((er = rtu_config_json_file(er_file, pr))) rtu_check_er(cfg, er_file, er, pr);
  }
  if (lowcode && is_dir(cfg->pc_schema_folder)) {
    snprintf(pc_file, sizeof pc_file, "%s/projectionChangesSchema.json", cfg->pc_schema_folder);
    if ((pc = rtu_config_json_file(pc_file, pr))) rtu_check_pc(cfg, pc_file, pc, er, pr);
  }
  if (cfg->gen_kafka_pc && cfg->pc_enabled && is_dir(cfg->kafka_pc_folder)) {
    snprintf(kpc_file, sizeof kpc_file, "%s/kafkaProjectionChanges.json", cfg->kafka_pc_folder);
    /* Its own problems were reported when it was read: quietly this time. */
    rtu_problems_t quiet = {0};
    if ((kpc = rtu_config_json_file(kpc_file, &quiet)) && (!lowcode || pc))
      rtu_check_kafka_pc(cfg, kpc_file, kpc, pc, pr);
    rtu_problems_free(&quiet);
  }
  rtu_jsonpos_free(er);
  rtu_jsonpos_free(pc);
  rtu_jsonpos_free(kpc);
}

void rtu_check_config(const rtu_config_t *cfg, rtu_problems_t *problems) {
  char map[4096];
  snprintf(map, sizeof map, "%s/mapTable.json", cfg->map_table_folder ? cfg->map_table_folder : ".");
  check_casts(cfg, map, problems);
  check_changes(cfg, map, problems);
  check_topics(cfg, map, problems);
  check_json_files(cfg, problems);
}

/* ---- Lua files ------------------------------------------------------------ */

/* The file's main chunk (at the top of L) run in a bare environment of the
 * pure libraries, under an instruction and memory bound: what it returns must
 * be a function taking at most the parameters rtu passes. An error at load is
 * not reported here: the file may need what only the sandbox gives, and the
 * sandbox reports it for the files a generation uses. */
typedef struct {
  size_t used, cap;
} bound_t;

static void *bounded_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  bound_t *b = ud;
  if (nsize == 0) {
    if (ptr) b->used -= osize;
    free(ptr);
    return NULL;
  }
  size_t old = ptr ? osize : 0;
  if (nsize > old && b->used + (nsize - old) > b->cap) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) b->used = b->used - old + nsize;
  return p;
}

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luaL_error(L, "the file runs too long at load");
}

static void check_shape(lua_State *L, const char *path, const char *shape, rtu_problems_t *pr) {
  lua_newtable(L); /* _ENV */
  static const char *libs[] = {"string", "table", "math", "utf8"};
  for (size_t i = 0; i < 4; i++) {
    lua_getglobal(L, libs[i]);
    lua_setfield(L, -2, libs[i]);
  }
  static const char *base[] = {"assert", "error", "ipairs", "next", "pairs", "pcall", "select",
                               "tonumber", "tostring", "type", "rawget", "rawset", "rawequal",
                               "rawlen", "setmetatable", "getmetatable", "xpcall"};
  for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
    lua_getglobal(L, base[i]);
    lua_setfield(L, -2, base[i]);
  }
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1000000);
  int rc = lua_pcall(L, 0, 1, 0);
  lua_sethook(L, NULL, 0, 0);
  if (rc != LUA_OK) return;
  if (!lua_isfunction(L, -1)) {
    rtu_problems_add(pr, "%s: must return a function, returned a %s", path, luaL_typename(L, -1));
    return;
  }
  lua_Debug ar;
  if (lua_iscfunction(L, -1) || !lua_getinfo(L, ">u", &ar)) return;
  if (ar.nparams > 3 && !ar.isvararg)
    rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, path, 0, 0, NULL,
                    "the function takes %d parameters, rtu passes 3 (%s): the others are always nil",
                    ar.nparams, shape);
}

static void compile_folder(lua_State *L, const char *folder, const char *var, bool js_expected,
                           const char *shape, rtu_problems_t *pr) {
  DIR *d = folder ? opendir(folder) : NULL;
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
    if (e->d_name[0] == '.' || !is_file(path)) continue;
    if (len > 3 && !strcmp(e->d_name + len - 3, ".js")) {
      char lua[4096];
      snprintf(lua, sizeof lua, "%s/%.*s.lua", folder, (int)(len - 3), e->d_name);
      if (js_expected && is_file(lua))
        rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, path, 0, 0, NULL,
                        "JavaScript file in %s, left from the Fast Data service: rtu runs %s "
                        "beside it and ignores this one", var, lua);
      else if (js_expected)
        rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, path, 0, 0, NULL,
                        "JavaScript file in %s: rtu runs Lua and ignores it; write %s", var, lua);
      continue;
    }
    if (len <= 4 || strcmp(e->d_name + len - 4, ".lua")) continue;
    /* Text only, as the sandbox loads them: precompiled bytecode is refused. */
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      /* Lua cuts a long file name in the message: the place is path's. */
      rtu_problems_add(pr, "%s: %s", path, msg ? msg : "cannot load");
    } else {
      check_shape(L, path, shape, pr);
    }
    lua_settop(L, 0);
  }
  closedir(d);
}

void rtu_check_lua_folders(const rtu_config_t *cfg, rtu_problems_t *problems) {
  bound_t bound = {0, 64u << 20};
  lua_State *L = lua_newstate(bounded_alloc, &bound);
  if (!L) {
    rtu_problems_add(problems, "Lua: out of memory");
    return;
  }
  luaL_openlibs(L);
  compile_folder(L, cfg->cast_functions_folder, "CAST_FUNCTIONS_FOLDER", true,
                 "value, fieldName, log", problems);
  compile_folder(L, cfg->strategies_folder, "STRATEGIES_FOLDER", true, "document, db, log", problems);
  if (cfg->use_automatic_strategies)
    compile_folder(L, cfg->pc_schema_folder, "PROJECTION_CHANGES_SCHEMA_FOLDER", true,
                   "document, db, log", problems);
  if (cfg->adapter && !strcmp(cfg->adapter, "custom"))
    compile_folder(L, cfg->adapter_folder, "KAFKA_ADAPTER_FOLDER", true,
                   "message, primaryKeys, log", problems);
  lua_close(L);
}

/* ---- places --------------------------------------------------------------- */

/* The file a bare name in a Lua problem stands for. */
static const char *full_path(const rtu_config_t *cfg, const char *file, char *buf, size_t size) {
  const char *folder = !strcmp(file, "erSchema.json")                  ? cfg->er_schema_folder
                       : !strcmp(file, "projectionChangesSchema.json") ? cfg->pc_schema_folder
                       : !strcmp(file, "mapTable.json")                ? cfg->map_table_folder
                                                                       : NULL;
  if (!folder) return file;
  snprintf(buf, size, "%s/%s", folder, file);
  return buf;
}

/* Gives problems of a JSON file with a path but no line the line of that path. */
static void locate(const rtu_config_t *cfg, rtu_problems_t *p, size_t from) {
  for (size_t i = from; i < p->n; i++) {
    rtu_problem_t *pr = &p->items[i];
    size_t len = pr->file ? strlen(pr->file) : 0;
    if (!pr->file || pr->line || len < 5 || strcmp(pr->file + len - 5, ".json")) continue;
    char buf[4096];
    const char *full = full_path(cfg, pr->file, buf, sizeof buf);
    if (full != pr->file) {
      char *f = strdup(full);
      if (f) {
        free(pr->file);
        pr->file = f;
      }
    }
    rtu_problems_t quiet = {0};
    rtu_jnode_t *root = rtu_config_json_file(pr->file, &quiet);
    rtu_problems_free(&quiet);
    if (!root) continue;
    const rtu_jnode_t *n = pr->path ? rtu_jsonpos_find(root, pr->path) : root;
    pr->line = n->key ? n->key_line : n->line;
    pr->col = n->key ? n->key_col : n->col;
    rtu_jsonpos_free(root);
  }
  rtu_problems_reformat(p);
}

static bool same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* Adds the problems of from that no problem of to already covers: a problem
 * at the same file and JSON path (the checker's own says more), or the same
 * message at the same place. */
static void merge(rtu_problems_t *to, rtu_problems_t *from) {
  for (size_t i = 0; i < from->n; i++) {
    const rtu_problem_t *f = &from->items[i];
    bool covered = false;
    for (size_t j = 0; j < to->n && !covered; j++) {
      const rtu_problem_t *t = &to->items[j];
      covered = (f->path && same(f->file, t->file) && same(f->path, t->path) &&
                 t->severity == RTU_PROBLEM_ERROR) ||
                (same(f->file, t->file) && f->line == t->line && !strcmp(f->message, t->message)) ||
                (same(f->var, t->var) && !strcmp(f->message, t->message));
    }
    if (!covered)
      rtu_problems_at(to, f->severity, f->var, f->file, f->line, f->col, f->path, "%s", f->message);
  }
}

/* What a Lua state needs of the configuration to be built at all. */
static bool scripts_loadable(const rtu_config_t *cfg) {
  if (!is_dir(cfg->lua_dir) || !cfg->map_table_folder || !cfg->adapter) return false;
  if (!strcmp(cfg->adapter, "custom") && !is_dir(cfg->adapter_folder)) return false;
  if (cfg->pc_enabled && cfg->use_automatic_strategies &&
      (!is_dir(cfg->er_schema_folder) || !is_dir(cfg->pc_schema_folder)))
    return false;
  for (size_t i = 0; i < cfg->nprojections; i++)
    if (!cfg->projections[i].destination) return false;
  return true;
}

bool rtu_check(const char *(*getenv_fn)(const char *), const char *default_lua_dir,
               bool kafka_client, rtu_problems_t *problems) {
  size_t before = problems->nerrors, start = problems->n;
  rtu_config_t *cfg = rtu_config_read(getenv_fn, default_lua_dir, problems);
  if (!cfg) return false;
  rtu_check_config(cfg, problems);
  check_kafka(cfg, kafka_client, problems);
  rtu_check_lua_folders(cfg, problems);
  locate(cfg, problems, start);
  if (scripts_loadable(cfg)) {
    /* What only loading the files in the sandbox shows (a file that does not
     * return a function, an error at load, the low-code grammar). */
    rtu_problems_t scripts = {0};
    rtu_script_t *s = rtu_script_new(cfg, &scripts);
    rtu_script_free(s);
    locate(cfg, &scripts, 0);
    merge(problems, &scripts);
    rtu_problems_free(&scripts);
  }
  rtu_config_free(cfg);
  rtu_problems_sort(problems);
  return problems->nerrors == before;
}
