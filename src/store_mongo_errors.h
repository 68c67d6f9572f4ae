/*
 * store_mongo_errors.h: what a MongoDB error (libmongoc's domain and code, or a
 * server code) means for rtu. The table is docs/errors.md's.
 */
#ifndef RTU_STORE_MONGO_ERRORS_H
#define RTU_STORE_MONGO_ERRORS_H

#include <stddef.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "rtu.h"

/* RTU_ERR_TRANSIENT (an outage: retry), RTU_ERR_CONFIG (credentials,
 * permissions) or RTU_ERR_DATA (this write cannot be applied, ever). */
rtu_err_t rtu_store_mongo_classify(uint32_t domain, uint32_t code);

/* Writes "MongoDB WHAT: message (code N)" to errstr and returns what err means;
 * an outage also marks MongoDB down for /-/ready until a command succeeds. */
rtu_err_t rtu_store_mongo_fail(const bson_error_t *err, const char *what, char *errstr,
                               size_t sz);

#endif
