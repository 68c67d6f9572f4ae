/*
 * store_mongo.h: the MongoDB implementation of the store interface (store.h):
 * one client of MONGODB_URL per store, on the projections database.
 */
#ifndef RTU_STORE_MONGO_H
#define RTU_STORE_MONGO_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* Connects (lazily: the first command opens the connection). NULL with errstr
 * when MONGODB_URL is invalid. Free with rtu_store_free. */
rtu_store_t *rtu_store_mongo_new(const rtu_config_t *cfg, char *errstr, size_t errstr_size);

#endif
