/*
 * json_read.h: JSON text -> BSON, as JSON.parse reads it: integers exact to 64
 * bits (beyond is refused, never wrapped), no NaN or Infinity, no trailing text,
 * and no MongoDB extended-JSON keyword taken as such.
 *
 * Entry points for fuzzing: rtu_json_read_bson (the whole reader), and its two
 * halves, rtu_json_read_strict (the direct reader) and rtu_json_read_libbson
 * (the fallback): a text the direct reader takes must read the same through the
 * fallback.
 */
#ifndef RTU_JSON_READ_H
#define RTU_JSON_READ_H

#include <bson/bson.h>
#include <stdbool.h>

#include "rtu.h"

/* Decodes JSON text (any value) into a BSON document {"v": value}.
 * RTU_ERR_DATA with the cause on invalid JSON (out then holds nothing to destroy). */
rtu_err_t rtu_json_read_bson(const char *text, size_t len, bson_t *out, char *errstr,
                             size_t errstr_size);

/* Decodes a JSON object text into out, the object itself as the document.
 * RTU_ERR_DATA with the cause on invalid JSON or a value that is not an object
 * (out then holds nothing to destroy). */
rtu_err_t rtu_json_read_object(const char *text, size_t len, bson_t *out, char *errstr,
                               size_t errstr_size);

/* The direct reader alone: strict JSON straight into BSON, {"v": value}, or
 * (as_doc) an object text as the document itself. False (out then holds
 * nothing to destroy) wherever libbson's reading could differ or it would
 * refuse: then rtu_json_read_libbson decides. */
bool rtu_json_read_strict(const char *text, size_t len, bool as_doc, bson_t *out);

/* The fallback alone: the checks libbson lacks, then libbson's reader, giving
 * {"v": value}. RTU_ERR_DATA with the cause (libbson's message for the
 * grammar) on invalid JSON (out then holds nothing to destroy). */
rtu_err_t rtu_json_read_libbson(const char *text, size_t len, bson_t *out, char *errstr,
                                size_t errstr_size);

#endif
