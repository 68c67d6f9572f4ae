/*
 * key_text.h: a Kafka message's original key as projections and projection
 * changes record it.
 */
#ifndef RTU_KEY_TEXT_H
#define RTU_KEY_TEXT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

/* Appends the key under field: a document when the key is a JSON object, else
 * the text (binary when it is not UTF-8), null when the message has no key (key
 * NULL). True when the key became a document with an empty field name somewhere
 * in it. */
bool rtu_key_text_append(bson_t *out, const char *field, const char *key, size_t key_len);

#endif
