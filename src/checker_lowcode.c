/*
 * checker_lowcode.c: owns the cross-file checks of the low-code files and the
 * Kafka projection-changes file: every projection, relation, field and single
 * view they name against mapTable.json and each other, with the closest known
 * name. The grammar of the two files is checked by the Lua compiler
 * (lua/rtu/lowcode.lua) when a generation is built; this file adds what needs the
 * other files and the places. No Lua, Kafka or MongoDB here.
 */
#include "checker_lowcode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_files.h"

#define MAXN 1024

static const char *const metadata[] = {"_id", "__STATE__", "createdAt", "updatedAt", "timestamp",
                                       "creatorId", "updaterId", "__internal__counter",
                                       "__internal__counterType", "__internal__kafkaInfo"};

const rtu_projection_t *rtu_check_projection(const rtu_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->nprojections; i++)
    if (!strcmp(cfg->projections[i].name, name)) return &cfg->projections[i];
  return NULL;
}

static size_t projection_names(const rtu_config_t *cfg, const char **out) {
  size_t n = 0;
  for (size_t i = 0; i < cfg->nprojections && n < MAXN; i++) out[n++] = cfg->projections[i].name;
  return n;
}

static void did_you_mean(char *buf, size_t size, const char *near) {
  if (near) snprintf(buf, size, " (did you mean '%s'?)", near);
  else buf[0] = '\0';
}

/* An unknown projection name at node (its key when key is set). */
static bool known_projection(const rtu_config_t *cfg, rtu_problems_t *pr, const char *file,
                             const rtu_jnode_t *node, const char *name, bool at_key,
                             const char *path) {
  if (rtu_check_projection(cfg, name)) return true;
  const char *names[MAXN];
  char dym[300];
  did_you_mean(dym, sizeof dym, rtu_closest(name, names, projection_names(cfg, names)));
  rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, at_key ? node->key_line : node->line,
                  at_key ? node->key_col : node->col, path,
                  "'%s' is not a projection of mapTable.json%s", name, dym);
  return false;
}

/* A field of projection p: a fieldName of its conversion or a metadata field;
 * "a.b" is checked by its first part (a field inside an object). */
static void check_field(const rtu_projection_t *p, rtu_problems_t *pr, const char *file,
                        int line, int col, const char *path, const char *field, const char *then) {
  if (!p) return;
  char first[512];
  snprintf(first, sizeof first, "%.*s", (int)strcspn(field, "."), field);
  const char *names[MAXN];
  size_t n = 0;
  for (size_t i = 0; i < p->nfields; i++) {
    if (!strcmp(p->fields[i].dst, first)) return;
    if (n < MAXN) names[n++] = p->fields[i].dst;
  }
  for (size_t i = 0; i < sizeof metadata / sizeof metadata[0]; i++)
    if (!strcmp(metadata[i], first)) return;
  char dym[300];
  did_you_mean(dym, sizeof dym, rtu_closest(first, names, n));
  rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, line, col, path,
                  "'%s' is not a field of %s%s: no document of %s has it, %s", first, p->name, dym,
                  p->name, then);
}

#define COND "so the condition never matches"

static bool is_constant(const char *s) {
  /* __string__[..], __integer__[..], __boolean__[..], __constant__[..]: the
   * compiler checks which; none of them names a field. */
  return s[0] == '_' && s[1] == '_' && strstr(s, "__[") && s[strlen(s) - 1] == ']';
}

typedef struct {
  const rtu_config_t *cfg;
  rtu_problems_t *pr;
  const char *file;
  const rtu_projection_t *from, *to; /* right side: from's fields; left side: to's */
} cond_ctx_t;

static void check_ref(cond_ctx_t *c, const rtu_jnode_t *v, const char *path) {
  if (v->type == RTU_J_STRING && v->str[0] && !is_constant(v->str))
    check_field(c->from, c->pr, c->file, v->line, v->col, path, v->str, COND);
  else if (v->type == RTU_J_ARRAY) {
    char sub[1024];
    for (size_t i = 0; i < v->n; i++) {
      snprintf(sub, sizeof sub, "%.1000s[%zu]", path, i);
      check_ref(c, &v->kids[i], sub);
    }
  }
}

static void check_condition(cond_ctx_t *c, const rtu_jnode_t *q, const char *path) {
  if (!q || q->type != RTU_J_OBJECT) return; /* the compiler says what it should be */
  char sub[1024], item[1024];
  for (size_t i = 0; i < q->n; i++) {
    const rtu_jnode_t *k = &q->kids[i];
    if (k->shadowed) continue;
    rtu_config_join(sub, sizeof sub, path, k->key);
    if (!strcmp(k->key, "$or") || !strcmp(k->key, "$and")) {
      for (size_t j = 0; k->type == RTU_J_ARRAY && j < k->n; j++) {
        snprintf(item, sizeof item, "%.1000s[%zu]", sub, j);
        check_condition(c, &k->kids[j], item);
      }
      continue;
    }
    if (k->key[0] == '$') continue;
    check_field(c->to, c->pr, c->file, k->key_line, k->key_col, sub, k->key, COND);
    if (k->type == RTU_J_OBJECT) {
      for (size_t j = 0; j < k->n; j++) {
        if (k->kids[j].shadowed) continue;
        rtu_config_join(item, sizeof item, sub, k->kids[j].key);
        check_ref(c, &k->kids[j], item);
      }
    } else {
      check_ref(c, k, sub);
    }
  }
}

/* erSchema.json: config.A.outgoing.B.conditions.NAME.condition */
void rtu_check_er(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *er,
                  rtu_problems_t *pr) {
  static const char *const top[] = {"version", "config"};
  rtu_config_expect_keys(pr, file, er, "", top, 2);
  const rtu_jnode_t *config = rtu_jsonpos_get(er, "config");
  char at[1024], rat[1024], cat[1024], sub[1024];
  for (size_t i = 0; config && config->type == RTU_J_OBJECT && i < config->n; i++) {
    const rtu_jnode_t *a = &config->kids[i];
    if (a->shadowed) continue;
    rtu_config_join(at, sizeof at, "config", a->key);
    bool a_ok = known_projection(cfg, pr, file, a, a->key, true, at);
    const rtu_jnode_t *out = rtu_jsonpos_get(a, "outgoing");
    for (size_t j = 0; out && out->type == RTU_J_OBJECT && j < out->n; j++) {
      const rtu_jnode_t *b = &out->kids[j];
      if (b->shadowed) continue;
      rtu_config_join(sub, sizeof sub, at, "outgoing");
      rtu_config_join(rat, sizeof rat, sub, b->key);
      bool b_ok = known_projection(cfg, pr, file, b, b->key, true, rat);
      const rtu_jnode_t *conds = rtu_jsonpos_get(b, "conditions");
      for (size_t k = 0; conds && conds->type == RTU_J_OBJECT && k < conds->n; k++) {
        const rtu_jnode_t *cn = &conds->kids[k];
        if (cn->shadowed) continue;
        rtu_config_join(sub, sizeof sub, rat, "conditions");
        rtu_config_join(cat, sizeof cat, sub, cn->key);
        cond_ctx_t c = {cfg, pr, file, a_ok ? rtu_check_projection(cfg, a->key) : NULL,
                        b_ok ? rtu_check_projection(cfg, b->key) : NULL};
        check_condition(&c, rtu_jsonpos_get(cn, "condition"), rtu_config_join(sub, sizeof sub, cat, "condition"));
      }
    }
  }
}

static bool relation(const rtu_jnode_t *er, const char *a, const char *b) {
  const rtu_jnode_t *out = rtu_jsonpos_get(rtu_jsonpos_get(rtu_jsonpos_get(er, "config"), a), "outgoing");
  return rtu_jsonpos_get(out, b) != NULL;
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "__fromFile__[name]" identifier: name.lua in the folder (or a leftover .js). */
static void check_custom_identifier(const rtu_config_t *cfg, rtu_problems_t *pr, const char *file,
                                    const rtu_jnode_t *id, const char *path) {
  char *name = rtu_config_from_file_name(id->str);
  if (!name || !cfg->pc_schema_folder) {
    free(name);
    return; /* the compiler names the form expected */
  }
  char lua[4096], js[4096];
  snprintf(lua, sizeof lua, "%s/%s.lua", cfg->pc_schema_folder, name);
  snprintf(js, sizeof js, "%s/%s.js", cfg->pc_schema_folder, name);
  if (!file_exists(lua) && file_exists(js))
    rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, id->line, id->col, path,
                    "custom identifier function '%s' is %s, JavaScript of the Fast Data service: "
                    "rtu runs Lua; write %s, a function(document, db, log) returning the identifiers",
                    name, js, lua);
  free(name);
}

/* projectionChangesSchema.json: config.SV.paths[i].{path, identifier} */
void rtu_check_pc(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *pc,
                  const rtu_jnode_t *er, rtu_problems_t *pr) {
  static const char *const top[] = {"version", "config"}, *const ent[] = {"paths"},
                           *const pth[] = {"path", "identifier"};
  rtu_config_expect_keys(pr, file, pc, "", top, 2);
  const rtu_jnode_t *config = rtu_jsonpos_get(pc, "config");
  char at[1024], pat[1024], jat[1024], sub[1024];
  for (size_t i = 0; config && config->type == RTU_J_OBJECT && i < config->n; i++) {
    const rtu_jnode_t *sv = &config->kids[i];
    if (sv->shadowed) continue;
    rtu_config_join(at, sizeof at, "config", sv->key);
    rtu_config_expect_keys(pr, file, sv, at, ent, 1);
    const rtu_jnode_t *paths = rtu_jsonpos_get(sv, "paths");
    for (size_t j = 0; paths && paths->type == RTU_J_ARRAY && j < paths->n; j++) {
      const rtu_jnode_t *p = &paths->kids[j];
      snprintf(pat, sizeof pat, "%.900s.paths[%zu]", at, j);
      rtu_config_expect_keys(pr, file, p, pat, pth, 2);
      const rtu_jnode_t *path = rtu_jsonpos_get(p, "path");
      const char *last = NULL;
      bool last_ok = false;
      for (size_t k = 0; path && path->type == RTU_J_ARRAY && k < path->n; k++) {
        const rtu_jnode_t *name = &path->kids[k];
        snprintf(jat, sizeof jat, "%.900s.path[%zu]", pat, k);
        if (name->type != RTU_J_STRING) break;
        bool ok = known_projection(cfg, pr, file, name, name->str, false, jat);
        if (k > 0 && last && er && !relation(er, last, name->str))
          rtu_problems_at(pr, RTU_PROBLEM_ERROR, NULL, file, name->line, name->col, jat,
                          "no relation %s -> %s in erSchema.json (config.%s.outgoing.%s)", last,
                          name->str, last, name->str);
        last = name->str;
        last_ok = ok;
      }
      const rtu_jnode_t *id = rtu_jsonpos_get(p, "identifier");
      rtu_config_join(sub, sizeof sub, pat, "identifier");
      if (id && id->type == RTU_J_STRING) check_custom_identifier(cfg, pr, file, id, sub);
      if (!id || id->type != RTU_J_OBJECT || !last_ok) continue;
      /* The identifier's values are fields of the path's last projection. */
      const rtu_projection_t *base = rtu_check_projection(cfg, last);
      for (size_t k = 0; k < id->n; k++) {
        const rtu_jnode_t *f = &id->kids[k];
        if (f->shadowed || f->type != RTU_J_STRING) continue;
        char fat[1200];
        rtu_config_join(fat, sizeof fat, sub, f->key);
        check_field(base, pr, file, f->line, f->col, fat, f->str,
                    "so the identifier would always lack it");
      }
    }
  }
}

/* The single views a projection's strategies can name, for the Kafka
 * projection-changes file: the paths of projectionChangesSchema.json through it
 * (low-code) or its `changes` (manual). */
static bool feeds_view(const rtu_config_t *cfg, const rtu_jnode_t *pc, const rtu_projection_t *p,
                       const char *sv) {
  if (!cfg->use_automatic_strategies) {
    for (size_t i = 0; i < p->nchanges; i++)
      if (!strcmp(p->changes[i].single_view, sv)) return true;
    return false;
  }
  const rtu_jnode_t *paths = rtu_jsonpos_get(rtu_jsonpos_get(rtu_jsonpos_get(pc, "config"), sv), "paths");
  for (size_t j = 0; paths && paths->type == RTU_J_ARRAY && j < paths->n; j++) {
    const rtu_jnode_t *path = rtu_jsonpos_get(&paths->kids[j], "path");
    for (size_t k = 0; path && path->type == RTU_J_ARRAY && k < path->n; k++)
      if (path->kids[k].type == RTU_J_STRING && !strcmp(path->kids[k].str, p->name)) return true;
  }
  return false;
}

void rtu_check_kafka_pc(const rtu_config_t *cfg, const char *file, const rtu_jnode_t *kpc,
                        const rtu_jnode_t *pc, rtu_problems_t *pr) {
  if (cfg->use_automatic_strategies && !pc) return; /* its own problems are reported */
  char at[1024];
  for (size_t i = 0; i < kpc->n; i++) {
    const rtu_jnode_t *e = &kpc->kids[i];
    const rtu_projection_t *p = rtu_check_projection(cfg, e->key);
    const rtu_jnode_t *svs = rtu_jsonpos_get(e, "projectionChanges");
    if (e->shadowed || !p || !svs || svs->type != RTU_J_OBJECT) continue;
    for (size_t j = 0; j < svs->n; j++) {
      const rtu_jnode_t *sv = &svs->kids[j];
      if (sv->shadowed || feeds_view(cfg, pc, p, sv->key)) continue;
      snprintf(at, sizeof at, "%.500s.projectionChanges.%.500s", e->key, sv->key);
      rtu_problems_at(pr, RTU_PROBLEM_WARNING, NULL, file, sv->key_line, sv->key_col, at,
                      "no strategy of %s gives single view '%s' (%s): nothing is produced to "
                      "this topic for it",
                      p->name, sv->key,
                      cfg->use_automatic_strategies ? "no path of projectionChangesSchema.json goes through it"
                                                    : "not in its mapTable.json changes");
    }
  }
}
