/*
 * value.h: values between BSON, JSON and Lua, without passing integers through
 * doubles. Lua integers <-> BSON int32/int64, Lua floats <-> BSON double, and the
 * rtu.value kinds (null, date, array) <-> BSON null, date, array.
 */
#ifndef RTU_VALUE_H
#define RTU_VALUE_H

#include <bson/bson.h>
#include <lua.h>
#include <stdbool.h>

#include "rtu.h"

/* Stores the metatables of rtu.value (the table at idx) for the conversions. */
void rtu_value_bind(lua_State *L, int value_module_idx);

/* Pushes the null sentinel (a light userdata NULL, as lua-cjson's cjson.null). */
void rtu_value_push_null(lua_State *L);
void rtu_value_push_date(lua_State *L, int64_t ms);

void rtu_value_push_doc(lua_State *L, const bson_t *doc);
/* The same with only the top-level fields named in names[0..n). */
void rtu_value_push_doc_fields(lua_State *L, const bson_t *doc, char *const *names, size_t n);
/* True when a and b hold the same top-level fields named in names[0..n): both
 * absent, or the same type and the same bytes (so 1 and 1.0, or 0.0 and -0.0,
 * differ). Kinds without a byte form here (regex, code, pointers) never match. */
bool rtu_value_same_fields(const bson_t *a, const bson_t *b, char *const *names, size_t n);
void rtu_value_push_iter(lua_State *L, const bson_iter_t *it);

/* bson_iter_init_find (the first field named key, it on it) without an
 * iterator call per field before it. */
bool rtu_value_find(bson_iter_t *it, const bson_t *doc, const char *key);

/* Appends to out the fields of src whose name is not in out yet, in src's order
 * (of a name repeated in src, the first): the $set of an older message under a
 * newer one. Linear when both hold their common names in the same order. */
void rtu_value_append_missing(bson_t *out, const bson_t *src);

/* Appends the Lua value at idx to out under key. Fails on functions, non-string
 * keys, invalid UTF-8, nesting deeper than 100 or more than 16 MiB written (a
 * table shared within the value counts once per reference). */
rtu_err_t rtu_value_append(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                           char *errstr, size_t errstr_size);

/* rtu_value_append for documents to be stored: *empty_key is set when a field name
 * anywhere in the value (or key itself) is empty, which MongoDB refuses. */
rtu_err_t rtu_value_append_marked(lua_State *L, int idx, bson_t *out, const char *key,
                                  int keylen, bool *empty_key, char *errstr, size_t errstr_size);

/* True when a field name anywhere in doc is empty. */
bool rtu_value_has_empty_key(const bson_t *doc);

/* Decodes JSON text into a BSON document {"v": value}; false with a message on error. */
bool rtu_value_json_to_bson(const char *text, size_t len, bson_t *out, char *errstr,
                            size_t errstr_size);


/* Appends a Kafka message's original key under field, as projections and
 * projection changes record it: a document when the key is a JSON object, else the
 * text (binary when it is not UTF-8), null when the message has no key. True
 * when the key became a document with an empty field name somewhere in it. */
bool rtu_value_append_original_key(bson_t *out, const char *field, const char *key,
                                   size_t key_len);

/* A BSON document written as bytes, appended to a bson_t in one bson_concat:
 * libbson's appender is generic (variadic pieces, a memcpy each), and the
 * elements written per record (metadata, guard, mapped fields) were about a tenth
 * of a basic message's instructions. Keys are C strings; rtu_raw_concat appends
 * the elements to out and releases r (false when out would be too large). */
typedef struct {
  uint8_t *p;
  size_t n, cap;
  uint8_t local[512];
} rtu_raw_t;

void rtu_raw_init(rtu_raw_t *r);
void rtu_raw_bytes(rtu_raw_t *r, const void *s, size_t n);
void rtu_raw_le(rtu_raw_t *r, uint64_t v, int bytes); /* little-endian integer */
void rtu_raw_head(rtu_raw_t *r, bson_type_t type, const char *key);
void rtu_raw_utf8(rtu_raw_t *r, const char *key, const char *s, size_t n);
void rtu_raw_int(rtu_raw_t *r, bson_type_t type, const char *key, int64_t v); /* INT32, INT64, DATE_TIME */
size_t rtu_raw_doc_begin(rtu_raw_t *r, bson_type_t type, const char *key);   /* DOCUMENT, ARRAY */
void rtu_raw_doc_end(rtu_raw_t *r, size_t at);
bool rtu_raw_concat(rtu_raw_t *r, bson_t *out);

/* rtu_value_append_marked into a raw document: the same element bytes. */
rtu_err_t rtu_value_raw_append_marked(lua_State *L, int idx, rtu_raw_t *r, const char *key,
                                      bool *empty_key, char *errstr, size_t errstr_size);

/* Appends s as a JSON string (quoted, escaped as JSON.stringify does; a byte
 * that is not UTF-8 becomes U+FFFD), and an integer as JSON text. */
void rtu_value_json_string(bson_string_t *out, const char *s, size_t len);
void rtu_value_json_int(bson_string_t *out, int64_t v);

/* Appends the JSON text of doc's first value / of doc to out: integers exact, dates
 * as ISO-8601 strings, ObjectIds as hex strings (the shapes of Fast Data's
 * messages); nothing for an empty doc. */
void rtu_value_first_to_json(const bson_t *doc, bson_string_t *out);
void rtu_value_doc_to_json(const bson_t *doc, bool as_array, bson_string_t *out);

/* luaopen-style loader of the `rtu.json` module: decode, encode, null. */
int rtu_value_open_json(lua_State *L);

#endif
