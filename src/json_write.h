/*
 * json_write.h: BSON -> JSON text, as JSON.stringify writes it: integers exact,
 * dates as ISO-8601 strings, ObjectIds as hex strings (the shapes of Fast Data's
 * messages), appended to a bson_string_t.
 */
#ifndef RTU_JSON_WRITE_H
#define RTU_JSON_WRITE_H

#include <bson/bson.h>
#include <stdbool.h>

#include "rtu.h"

/* Appends s as a JSON string (quoted, escaped as JSON.stringify does; a byte
 * that is not UTF-8 becomes U+FFFD), and an integer as JSON text. */
void rtu_json_write_string(bson_string_t *out, const char *s, size_t len);
void rtu_json_write_int(bson_string_t *out, int64_t v);

/* Appends the JSON text of doc's first value (nothing for an empty doc) / of
 * doc, as an object or (as_array) as an array of its values. */
void rtu_json_write_first(const bson_t *doc, bson_string_t *out);
void rtu_json_write_doc(const bson_t *doc, bool as_array, bson_string_t *out);

#endif
