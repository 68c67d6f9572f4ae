/*
 * config_files.c: owns the reading of the configuration's JSON files into
 * rtu_config_t: INVARIANT_TOPIC_MAP, mapTable.json and the two Kafka output
 * files, each problem at the line and column of the value it is about. Where a
 * key repeats, the last one is used, as JavaScript's JSON.parse does, and a
 * warning names the ignored one. The low-code files are compiled in Lua (and
 * cross-checked by checker.c); nothing here touches Lua, Kafka or MongoDB.
 */
#include "config_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* By hand rather than snprintf: path may be buf itself. */
static const char *append(char *buf, size_t size, const char *path, const char *sep,
                          const char *key) {
  size_t o = 0;
  if (path && *path) {
    o = strlen(path);
    if (o > size - 1) o = size - 1;
    memmove(buf, path, o);
    for (; *sep && o + 1 < size; sep++) buf[o++] = *sep;
  }
  size_t k = strlen(key);
  if (o + k > size - 1) k = size - 1 - o;
  memmove(buf + o, key, k);
  buf[o + k] = '\0';
  return buf;
}

const char *rtu_config_join(char *buf, size_t size, const char *path, const char *key) {
  return append(buf, size, path, ".", key);
}

/* path + "[i]" into buf. */
static const char *join_index(char *buf, size_t size, const char *path, size_t i) {
  char idx[32];
  snprintf(idx, sizeof idx, "[%zu]", i);
  return append(buf, size, path, "", idx);
}

static char *read_text(const char *path, size_t *len, rtu_problems_t *problems) {
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, NULL, path, 0, 0, NULL, "cannot read: %s",
                    strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0) goto fail;
  long n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
  buf = malloc((size_t)n + 1);
  if (!buf) goto fail;
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) goto fail;
  buf[n] = '\0';
  *len = (size_t)n;
  fclose(f);
  return buf;
fail:
  rtu_problems_at(problems, RTU_PROBLEM_ERROR, NULL, path, 0, 0, NULL, "cannot read: %s",
                  strerror(errno));
  free(buf);
  fclose(f);
  return NULL;
}

/* Every member that a later one of the same name replaces, at any depth. */
static void report_duplicates(rtu_problems_t *problems, const char *file, const char *var,
                              const rtu_jnode_t *n, const char *path) {
  char sub[1024];
  for (size_t i = 0; i < n->n; i++) {
    const rtu_jnode_t *k = &n->kids[i];
    if (n->type == RTU_J_OBJECT) rtu_config_join(sub, sizeof sub, path, k->key);
    else join_index(sub, sizeof sub, path, i);
    if (k->shadowed) {
      const rtu_jnode_t *last = rtu_jsonpos_get(n, k->key);
      rtu_problems_at(problems, RTU_PROBLEM_WARNING, var, file, var ? 0 : k->key_line,
                      var ? 0 : k->key_col, sub,
                      "duplicate key '%s': this one is ignored, the one at line %d wins (as in "
                      "JavaScript's JSON.parse)",
                      k->key, last->key_line);
      continue; /* what it holds is not used */
    }
    report_duplicates(problems, file, var, k, sub);
  }
}

static rtu_jnode_t *parse_text(const char *file, const char *var, const char *text, size_t len,
                               rtu_problems_t *problems) {
  int line, col;
  char err[512];
  rtu_jnode_t *root = rtu_jsonpos_parse(text, len, &line, &col, err, sizeof err);
  if (!root) {
    if (var)
      rtu_problems_at(problems, RTU_PROBLEM_ERROR, var, NULL, 0, 0, NULL,
                      "not a valid JSON object: at %d:%d: %s", line, col, err);
    else
      rtu_problems_at(problems, RTU_PROBLEM_ERROR, NULL, file, line, col, NULL,
                      "not a valid JSON file: %s", err);
    return NULL;
  }
  if (root->type != RTU_J_OBJECT) {
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, var, var ? NULL : file, var ? 0 : root->line,
                    var ? 0 : root->col, NULL, "not a valid JSON object: the top level is %s",
                    rtu_jsonpos_type_name(root->type));
    rtu_jsonpos_free(root);
    return NULL;
  }
  report_duplicates(problems, file, var, root, "");
  return root;
}

rtu_jnode_t *rtu_config_json_file(const char *path, rtu_problems_t *problems) {
  size_t len;
  char *text = read_text(path, &len, problems);
  if (!text) return NULL;
  rtu_jnode_t *root = parse_text(path, NULL, text, len, problems);
  free(text);
  return root;
}

void rtu_config_expect_keys(rtu_problems_t *problems, const char *file, const rtu_jnode_t *obj,
                            const char *path, const char *const *known, size_t n) {
  if (!obj || obj->type != RTU_J_OBJECT) return;
  char sub[1024], list[512];
  size_t o = 0;
  list[0] = '\0';
  for (size_t i = 0; i < n && o < sizeof list; i++)
    o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", known[i]);
  for (size_t i = 0; i < obj->n; i++) {
    const rtu_jnode_t *k = &obj->kids[i];
    bool ok = false;
    for (size_t j = 0; j < n && !ok; j++) ok = !strcmp(k->key, known[j]);
    if (ok) continue;
    const char *near = rtu_closest(k->key, known, n);
    rtu_config_join(sub, sizeof sub, path, k->key);
    if (near)
      rtu_problems_at(problems, RTU_PROBLEM_WARNING, NULL, file, k->key_line, k->key_col, sub,
                      "unknown key '%s' (did you mean '%s'?): it is ignored", k->key, near);
    else
      rtu_problems_at(problems, RTU_PROBLEM_WARNING, NULL, file, k->key_line, k->key_col, sub,
                      "unknown key '%s' (known here: %s): it is ignored", k->key, list);
  }
}

#define ERR(node, path, ...)                                                                      \
  rtu_problems_at(problems, RTU_PROBLEM_ERROR, NULL, file, (node)->line, (node)->col, path,       \
                  __VA_ARGS__)

/* ---- mapTable.json ------------------------------------------------------ */

static bool is_reserved(const char *dst) {
  /* The service owns these: a mapped one would fight the metadata it writes. */
  static const char *reserved[] = {"_id", "createdAt", "updatedAt", "creatorId", "updaterId",
                                   "__STATE__", "timestamp", "__internal__counter",
                                   "__internal__counterType", "__internal__kafkaInfo"};
  for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++)
    if (!strcmp(dst, reserved[r])) return true;
  return false;
}

static void load_conversion(rtu_projection_t *p, const char *file, const rtu_jnode_t *conv,
                            const char *at, rtu_problems_t *problems) {
  static const char *const keys[] = {"fieldName", "cast"};
  char path[1024], sub[1024];
  p->fields = calloc(conv->n ? conv->n : 1, sizeof *p->fields);
  for (size_t i = 0; p->fields && i < conv->n; i++) {
    const rtu_jnode_t *e = &conv->kids[i];
    if (e->shadowed) continue;
    rtu_config_join(path, sizeof path, at, e->key);
    if (e->type != RTU_J_OBJECT) {
      ERR(e, path, "expected an object {fieldName, cast}, got %s", rtu_jsonpos_type_name(e->type));
      continue;
    }
    rtu_config_expect_keys(problems, file, e, path, keys, 2);
    const rtu_jnode_t *fn = rtu_jsonpos_get(e, "fieldName"), *cast = rtu_jsonpos_get(e, "cast");
    rtu_field_t *fld = &p->fields[p->nfields];
    if (!fn || fn->type != RTU_J_STRING) {
      ERR(fn ? fn : e, rtu_config_join(sub, sizeof sub, path, "fieldName"), "missing or not a string");
      continue;
    }
    if (cast && cast->type != RTU_J_STRING) {
      ERR(cast, rtu_config_join(sub, sizeof sub, path, "cast"),
          "expected \"__fromFile__[name]\", got %s", rtu_jsonpos_type_name(cast->type));
      continue;
    }
    char *name = cast ? rtu_config_from_file_name(cast->str) : strdup("defaultIdentity");
    if (!name) {
      ERR(cast, rtu_config_join(sub, sizeof sub, path, "cast"),
          "expected \"__fromFile__[name]\", got '%s'", cast->str);
      continue;
    }
    bool clash = is_reserved(fn->str);
    for (size_t r = 0; r < p->nfields; r++) clash |= !strcmp(fn->str, p->fields[r].dst);
    if (clash) {
      ERR(fn, rtu_config_join(sub, sizeof sub, path, "fieldName"), "'%s' is reserved or mapped twice",
          fn->str);
      free(name);
      continue;
    }
    fld->dst = strdup(fn->str);
    fld->cast = name;
    fld->src = strdup(e->key);
    fld->line = cast ? cast->line : e->line;
    fld->col = cast ? cast->col : e->col;
    p->nfields++;
  }
}

static void load_keys(rtu_projection_t *p, const char *file, const rtu_jnode_t *keys,
                      const char *at, rtu_problems_t *problems) {
  char sub[1024];
  p->pk_dst = calloc(keys->n ? keys->n : 1, sizeof(char *));
  p->pk_src = calloc(keys->n ? keys->n : 1, sizeof(char *));
  for (size_t i = 0; p->pk_dst && p->pk_src && i < keys->n; i++) {
    const rtu_jnode_t *k = &keys->kids[i];
    join_index(sub, sizeof sub, at, i);
    if (k->type != RTU_J_STRING) {
      ERR(k, sub, "expected a string (in fieldsInKey), got %s", rtu_jsonpos_type_name(k->type));
      continue;
    }
    /* fieldsInKey names projection fields; find the CDC field that feeds each. */
    const char *src = NULL;
    const char *names[256];
    size_t nn = 0;
    for (size_t j = 0; j < p->nfields; j++) {
      if (!strcmp(p->fields[j].dst, k->str)) src = p->fields[j].src;
      if (nn < 256) names[nn++] = p->fields[j].dst;
    }
    if (!src) {
      const char *near = rtu_closest(k->str, names, nn);
      ERR(k, at, "'%s' is not the fieldName of any conversion%s%s%s", k->str,
          near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
      continue;
    }
    p->pk_dst[p->npk] = strdup(k->str);
    p->pk_src[p->npk] = strdup(src);
    p->npk++;
  }
  if (keys->n == 0) ERR(keys, at, "at least one primary key is required");
}

static void load_changes(rtu_projection_t *p, const char *file, const rtu_jnode_t *ch,
                         const char *at, rtu_problems_t *problems) {
  char sub[1024];
  if (ch->type != RTU_J_OBJECT) {
    ERR(ch, at, "expected an object {singleView: \"__fromFile__[strategy]\"}, got %s",
        rtu_jsonpos_type_name(ch->type));
    return;
  }
  p->changes = calloc(ch->n ? ch->n : 1, sizeof *p->changes);
  for (size_t i = 0; p->changes && i < ch->n; i++) {
    const rtu_jnode_t *b = &ch->kids[i];
    if (b->shadowed) continue;
    rtu_config_join(sub, sizeof sub, at, b->key);
    /* The Console writes __automatic__ for low-code: nothing to bind (checker.c warns
     * when the mode is manual). */
    if (b->type == RTU_J_STRING && !strcmp(b->str, "__automatic__")) continue;
    char *strategy = b->type == RTU_J_STRING ? rtu_config_from_file_name(b->str) : NULL;
    if (!strategy) {
      ERR(b, sub, "expected \"__fromFile__[name]\"");
      continue;
    }
    rtu_change_binding_t *cb = &p->changes[p->nchanges++];
    cb->single_view = strdup(b->key);
    cb->strategy = strategy;
    cb->line = b->line;
    cb->col = b->col;
  }
}

static void load_projection(rtu_projection_t *p, const char *file, const rtu_jnode_t *e,
                            rtu_problems_t *problems) {
  static const char *const keys[] = {"destination", "conversion", "fieldsInKey", "changes"};
  char sub[1024];
  const char *name = e->key;
  p->name = strdup(name);
  p->line = e->key_line;
  p->col = e->key_col;
  rtu_config_expect_keys(problems, file, e, name, keys, 4);
  const rtu_jnode_t *dest = rtu_jsonpos_get(e, "destination");
  if (dest && dest->type == RTU_J_STRING) p->destination = strdup(dest->str);
  else ERR(dest ? dest : e, rtu_config_join(sub, sizeof sub, name, "destination"), "missing or not a string");

  const rtu_jnode_t *conv = rtu_jsonpos_get(e, "conversion");
  if (conv && conv->type == RTU_J_OBJECT)
    load_conversion(p, file, conv, rtu_config_join(sub, sizeof sub, name, "conversion"), problems);
  else ERR(conv ? conv : e, rtu_config_join(sub, sizeof sub, name, "conversion"), "missing or not an object");

  const rtu_jnode_t *keysn = rtu_jsonpos_get(e, "fieldsInKey");
  if (keysn && keysn->type == RTU_J_ARRAY)
    load_keys(p, file, keysn, rtu_config_join(sub, sizeof sub, name, "fieldsInKey"), problems);
  else ERR(keysn ? keysn : e, rtu_config_join(sub, sizeof sub, name, "fieldsInKey"), "missing or not an array");

  const rtu_jnode_t *ch = rtu_jsonpos_get(e, "changes");
  if (ch) load_changes(p, file, ch, rtu_config_join(sub, sizeof sub, name, "changes"), problems);
}

static void load_map_table(rtu_config_t *cfg, rtu_problems_t *problems) {
  char file[4096];
  snprintf(file, sizeof file, "%s/mapTable.json", cfg->map_table_folder);
  rtu_jnode_t *doc = rtu_config_json_file(file, problems);
  if (!doc) return;
  cfg->projections = calloc(doc->n ? doc->n : 1, sizeof *cfg->projections);
  for (size_t i = 0; cfg->projections && i < doc->n; i++) {
    const rtu_jnode_t *e = &doc->kids[i];
    if (e->shadowed) continue;
    if (e->type != RTU_J_OBJECT) {
      ERR(e, e->key, "expected an object {destination, conversion, fieldsInKey}, got %s",
          rtu_jsonpos_type_name(e->type));
      continue;
    }
    load_projection(&cfg->projections[cfg->nprojections++], file, e, problems);
  }
  if (cfg->nprojections == 0) ERR(doc, NULL, "no projection is defined");
  rtu_jsonpos_free(doc);
}

/* ---- the Kafka output files ---------------------------------------------- */

static rtu_projection_t *find_projection(rtu_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nprojections; i++)
    if (!strcmp(cfg->projections[i].name, name)) return &cfg->projections[i];
  return NULL;
}

static const char *closest_projection(const rtu_config_t *cfg, const char *name) {
  const char *names[512];
  size_t n = 0;
  for (size_t i = 0; i < cfg->nprojections && n < 512; i++) names[n++] = cfg->projections[i].name;
  return rtu_closest(name, names, n);
}

static rtu_projection_t *entry_projection(rtu_config_t *cfg, const char *file, const rtu_jnode_t *e,
                                          rtu_problems_t *problems) {
  rtu_projection_t *p = find_projection(cfg, e->key);
  if (!p) {
    const char *near = closest_projection(cfg, e->key);
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, NULL, file, e->key_line, e->key_col, e->key,
                    "not a projection of mapTable.json%s%s%s", near ? " (did you mean '" : "",
                    near ? near : "", near ? "'?)" : "");
  }
  return p;
}

/* kafkaProjectionUpdates.json: {projection: {updatesTopic, strategy}}. */
static void load_pr_updates(rtu_config_t *cfg, rtu_problems_t *problems) {
  static const char *const keys[] = {"updatesTopic", "strategy"};
  char file[4096], sub[1024];
  snprintf(file, sizeof file, "%s/kafkaProjectionUpdates.json", cfg->kafka_pr_updates_folder);
  rtu_jnode_t *doc = rtu_config_json_file(file, problems);
  if (!doc) return;
  for (size_t i = 0; i < doc->n; i++) {
    const rtu_jnode_t *e = &doc->kids[i];
    if (e->shadowed) continue;
    rtu_projection_t *p = entry_projection(cfg, file, e, problems);
    if (e->type != RTU_J_OBJECT) {
      ERR(e, e->key, "expected an object {updatesTopic, strategy}, got %s", rtu_jsonpos_type_name(e->type));
      continue;
    }
    rtu_config_expect_keys(problems, file, e, e->key, keys, 2);
    /* Entries without updatesTopic (Console-generated for other services) emit nothing. */
    const rtu_jnode_t *t = rtu_jsonpos_get(e, "updatesTopic");
    if (!t) continue;
    if (t->type != RTU_J_STRING || !t->str[0]) {
      ERR(t, rtu_config_join(sub, sizeof sub, e->key, "updatesTopic"), "expected a topic name");
      continue;
    }
    if (p) {
      free(p->pr_update_topic);
      p->pr_update_topic = strdup(t->str);
    }
  }
  rtu_jsonpos_free(doc);
}

/* kafkaProjectionChanges.json: {projection: {projectionChanges: {sv: {topic, strategy}}}}. */
static void load_pc_topics(rtu_config_t *cfg, rtu_problems_t *problems) {
  static const char *const keys[] = {"projectionChanges"}, *const sv_keys[] = {"topic", "strategy"};
  char file[4096], at[1024], sub[1024];
  snprintf(file, sizeof file, "%s/kafkaProjectionChanges.json", cfg->kafka_pc_folder);
  rtu_jnode_t *doc = rtu_config_json_file(file, problems);
  if (!doc) return;
  for (size_t i = 0; i < doc->n; i++) {
    const rtu_jnode_t *e = &doc->kids[i];
    if (e->shadowed) continue;
    rtu_projection_t *p = entry_projection(cfg, file, e, problems);
    rtu_config_join(at, sizeof at, e->key, "projectionChanges");
    const rtu_jnode_t *pcs = rtu_jsonpos_get(e, "projectionChanges");
    rtu_config_expect_keys(problems, file, e, e->key, keys, 1);
    if (!pcs || pcs->type != RTU_J_OBJECT) {
      ERR(pcs ? pcs : e, at, "missing or not an object");
      continue;
    }
    if (p && !p->pc_topics) p->pc_topics = calloc(pcs->n ? pcs->n : 1, sizeof *p->pc_topics);
    for (size_t j = 0; j < pcs->n; j++) {
      const rtu_jnode_t *sv = &pcs->kids[j];
      if (sv->shadowed) continue;
      rtu_config_join(sub, sizeof sub, at, sv->key);
      rtu_config_expect_keys(problems, file, sv, sub, sv_keys, 2);
      const rtu_jnode_t *t = rtu_jsonpos_get(sv, "topic");
      if (!t || t->type != RTU_J_STRING) {
        ERR(t ? t : sv, rtu_config_join(sub, sizeof sub, sub, "topic"), "missing or not a string");
        continue;
      }
      if (!p || !p->pc_topics) continue;
      rtu_change_binding_t *b = &p->pc_topics[p->npc_topics++];
      b->single_view = strdup(sv->key);
      b->strategy = strdup(t->str); /* the topic */
      b->line = sv->key_line;
      b->col = sv->key_col;
    }
  }
  rtu_jsonpos_free(doc);
}

/* ---- INVARIANT_TOPIC_MAP -------------------------------------------------- */

static void load_topic_map(rtu_config_t *cfg, const char *json, rtu_problems_t *problems) {
  static const char *var = "INVARIANT_TOPIC_MAP";
  rtu_jnode_t *doc = parse_text(NULL, var, json, strlen(json), problems);
  if (!doc) return;
  cfg->topics = calloc(doc->n ? doc->n : 1, sizeof *cfg->topics);
  for (size_t i = 0; cfg->topics && i < doc->n; i++) {
    const rtu_jnode_t *e = &doc->kids[i];
    if (e->shadowed) continue;
    if (e->type != RTU_J_STRING) {
      rtu_problems_at(problems, RTU_PROBLEM_ERROR, var, NULL, 0, 0, NULL,
                      "%s: expected a projection name, got %s", e->key, rtu_jsonpos_type_name(e->type));
      continue;
    }
    size_t j;
    for (j = 0; j < cfg->nprojections; j++)
      if (!strcmp(cfg->projections[j].name, e->str)) break;
    if (j == cfg->nprojections) {
      const char *near = closest_projection(cfg, e->str);
      if (cfg->nprojections)
        rtu_problems_at(problems, RTU_PROBLEM_ERROR, var, NULL, 0, 0, NULL,
                        "%s: projection '%s' is not in mapTable.json%s%s%s", e->key, e->str,
                        near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
      continue;
    }
    cfg->topics[cfg->ntopics].topic = strdup(e->key);
    cfg->topics[cfg->ntopics].projection = j;
    cfg->ntopics++;
  }
  if (doc->n == 0)
    rtu_problems_at(problems, RTU_PROBLEM_ERROR, var, NULL, 0, 0, NULL, "no topic is mapped");
  rtu_jsonpos_free(doc);
}

void rtu_config_read_files(rtu_config_t *cfg, rtu_problems_t *problems) {
  /* A folder that is not one was reported with its variable already. */
  if (is_dir(cfg->map_table_folder)) load_map_table(cfg, problems);
  if (cfg->nprojections && cfg->gen_kafka_pr_updates && is_dir(cfg->kafka_pr_updates_folder))
    load_pr_updates(cfg, problems);
  if (cfg->nprojections && cfg->gen_kafka_pc && is_dir(cfg->kafka_pc_folder)) load_pc_topics(cfg, problems);
  if (cfg->topic_map_json) load_topic_map(cfg, cfg->topic_map_json, problems);
}

rtu_config_t *rtu_config_read(const char *(*getenv_fn)(const char *), const char *default_lua_dir,
                              rtu_problems_t *problems) {
  rtu_config_t *cfg = rtu_config_read_env(getenv_fn, default_lua_dir, problems);
  if (cfg) rtu_config_read_files(cfg, problems);
  return cfg;
}

rtu_config_t *rtu_config_load(const char *(*getenv_fn)(const char *), const char *default_lua_dir,
                              rtu_problems_t *problems) {
  size_t before = problems->nerrors;
  rtu_config_t *cfg = rtu_config_read(getenv_fn, default_lua_dir, problems);
  if (cfg && problems->nerrors > before) {
    rtu_config_free(cfg);
    return NULL;
  }
  return cfg;
}
