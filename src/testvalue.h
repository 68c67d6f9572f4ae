/*
 * testvalue.h: expected values against actual ones, and JSON text, for rtu test.
 */
#ifndef RTU_TESTVALUE_H
#define RTU_TESTVALUE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

/* The value at it as JSON. */
void rtu_testvalue_json(const bson_iter_t *it, bson_string_t *out);
void rtu_testvalue_doc_json(const bson_t *doc, bson_string_t *out);
/* doc as JSON with every object's keys sorted. */
void rtu_testvalue_canonical(const bson_t *doc, bson_string_t *out);
/* JSON text, else the text itself as a string (NULL: null), into {"v": ...}. */
void rtu_testvalue_parse(const char *text, size_t len, bson_t *out);

/* The expected value matches the actual one (documents as a subset); each
 * difference appended to diff as an indented line naming its path. */
bool rtu_testvalue_subset(const bson_iter_t *exp, const bson_iter_t *act, const char *path,
                          bson_string_t *diff);
bool rtu_testvalue_same(const bson_iter_t *exp, const bson_iter_t *act);
/* Every field of exp is in act with a matching value. */
bool rtu_testvalue_doc_matches(const bson_t *exp, const bson_t *act, bson_string_t *diff);

/* The document or array at it, or in doc's field key, as a static bson_t. */
bool rtu_testvalue_sub_doc(const bson_iter_t *it, bson_t *out);
bool rtu_testvalue_field_doc(const bson_t *doc, const char *key, bson_t *out);

#endif
