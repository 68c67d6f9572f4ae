/*
 * store_mongo_write.h: a run's projection writes sent to one collection, for
 * store_mongo.c (see store_mongo_write.c for how and why).
 */
#ifndef RTU_STORE_MONGO_WRITE_H
#define RTU_STORE_MONGO_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "store.h"

/* A worker's command buffer, kept between runs so that a run's writes land in
 * memory already there. One per store (a store serves one thread). */
typedef struct {
  bson_t cmd;
  size_t *index; /* the k-th statement of the command -> its write */
  size_t index_cap;
} rtu_store_mongo_writer_t;

void rtu_store_mongo_writer_init(rtu_store_mongo_writer_t *wr);
void rtu_store_mongo_writer_clear(rtu_store_mongo_writer_t *wr);

/* Sends writes[0..n) to coll and sets each one's status (store.h's contract of
 * rtu_store_write); *commands counts the commands sent. */
rtu_err_t rtu_store_mongo_write(mongoc_collection_t *coll, rtu_store_mongo_writer_t *wr,
                                rtu_write_t *writes, size_t n, uint64_t *commands, char *errstr,
                                size_t errstr_size);

#endif
