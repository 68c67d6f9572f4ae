/*
 * test_store_errors.c: rtu_store_mongo_classify, the one table that says what a
 * MongoDB error means: outages are retried, data and configuration errors stop
 * the partition (docs/errors.md's table of codes).
 */
#include <mongoc/mongoc.h>

#include "check.h"
#include "store_mongo_errors.h"

static void check_server(uint32_t code, rtu_err_t want) {
  rtu_err_t got = rtu_store_mongo_classify(MONGOC_ERROR_SERVER, code);
  CHECK(got == want, "server code %u: got %d, want %d", code, (int)got, (int)want);
  /* the same code in a bulk's write error, or under the legacy query domain */
  got = rtu_store_mongo_classify(MONGOC_ERROR_QUERY, code);
  CHECK(got == want, "query code %u: got %d, want %d", code, (int)got, (int)want);
}

int main(void) {
  /* outages: network, not primary, shutdowns, write concern, time limits */
  const uint32_t outages[] = {6, 7, 50, 64, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11601,
                              11602, 13435, 13436};
  for (size_t i = 0; i < sizeof outages / sizeof *outages; i++)
    check_server(outages[i], RTU_ERR_TRANSIENT);
  /* data: duplicate key, validation, bad value, too large, unknown codes */
  const uint32_t data[] = {11000, 121, 2, 10334, 17280, 9, 14, 16755, 123456};
  for (size_t i = 0; i < sizeof data / sizeof *data; i++) check_server(data[i], RTU_ERR_DATA);
  /* configuration: permissions and credentials */
  const uint32_t config[] = {11, 13, 18, 100, 8000};
  for (size_t i = 0; i < sizeof config / sizeof *config; i++)
    check_server(config[i], RTU_ERR_CONFIG);

  /* libmongoc's own domains */
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_SOCKET) ==
        RTU_ERR_TRANSIENT);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT) ==
        RTU_ERR_TRANSIENT);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_SERVER_SELECTION,
                                 MONGOC_ERROR_SERVER_SELECTION_FAILURE) == RTU_ERR_TRANSIENT);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_WRITE_CONCERN, 64) == RTU_ERR_TRANSIENT);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_CLIENT, MONGOC_ERROR_CLIENT_AUTHENTICATE) ==
        RTU_ERR_CONFIG);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_CLIENT, MONGOC_ERROR_CLIENT_TOO_BIG) ==
        RTU_ERR_TRANSIENT);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_BSON, MONGOC_ERROR_BSON_INVALID) == RTU_ERR_DATA);
  CHECK(rtu_store_mongo_classify(MONGOC_ERROR_COMMAND, MONGOC_ERROR_COMMAND_INVALID_ARG) ==
        RTU_ERR_DATA);
  return CHECK_DONE();
}
