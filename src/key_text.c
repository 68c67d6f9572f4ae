/*
 * key_text.c: owns how a message's original key is recorded: the JSON object it
 * holds as a document, else its text as it came. It reads JSON with json_read.c
 * and holds no state.
 */
#include "key_text.h"

#include "bson_raw.h"
#include "json_read.h"
#include "rtu.h"

bool rtu_key_text_append(bson_t *out, const char *field, const char *key, size_t key_len) {
  if (!key) {
    bson_append_null(out, field, -1);
    return false;
  }
  size_t i = 0;
  while (i < key_len && (key[i] == ' ' || key[i] == '\t' || key[i] == '\n' || key[i] == '\r')) i++;
  /* Only what looks like an object is parsed: most keys are plain text. */
  if (i < key_len && key[i] == '{') {
    bson_t doc;
    char err[RTU_ERRSTR_SIZE];
    if (rtu_json_read_object(key, key_len, &doc, err, sizeof err) == RTU_OK) {
      bool empty = rtu_bson_raw_has_empty_key(&doc);
      bool done = bson_append_document(out, field, -1, &doc);
      bson_destroy(&doc);
      if (done) return empty;
    }
  }
  if (bson_utf8_validate(key, key_len, false))
    bson_append_utf8(out, field, -1, key, (int)key_len);
  else
    bson_append_binary(out, field, -1, BSON_SUBTYPE_BINARY, (const uint8_t *)key, (uint32_t)key_len);
  return false;
}
