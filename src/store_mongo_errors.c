/*
 * store_mongo_errors.c: what a MongoDB error means for rtu, in one table, and
 * the error message and health state that go with it. Every command of
 * store_mongo.c and store_mongo_write.c reports its failures through here.
 * It sends nothing and decides no retry: the caller's policy does.
 */
#include "store_mongo_errors.h"

#include <stdio.h>

#include "health.h"

/* The one place MongoDB errors are classified, by code and never by the command
 * that met them: an outage (pause the partition and retry), a data problem (the
 * message stops its partition, or goes to the dead-letter topic) or a
 * configuration problem (the same, named as such). Server codes from MongoDB's
 * error_codes.yml; the outage ones are the retryable-writes list of the drivers'
 * specification plus write-concern and time-limit failures. Whatever is not
 * listed is a data problem: retrying it would fail the same way forever. */
static const struct {
  int32_t code;
  rtu_err_t kind;
} server_codes[] = {
    {6, RTU_ERR_TRANSIENT},     /* HostUnreachable */
    {7, RTU_ERR_TRANSIENT},     /* HostNotFound */
    {50, RTU_ERR_TRANSIENT},    /* MaxTimeMSExpired */
    {64, RTU_ERR_TRANSIENT},    /* WriteConcernFailed */
    {89, RTU_ERR_TRANSIENT},    /* NetworkTimeout */
    {91, RTU_ERR_TRANSIENT},    /* ShutdownInProgress */
    {112, RTU_ERR_TRANSIENT},   /* WriteConflict */
    {189, RTU_ERR_TRANSIENT},   /* PrimarySteppedDown */
    {262, RTU_ERR_TRANSIENT},   /* ExceededTimeLimit */
    {9001, RTU_ERR_TRANSIENT},  /* SocketException */
    {10107, RTU_ERR_TRANSIENT}, /* NotWritablePrimary */
    {11600, RTU_ERR_TRANSIENT}, /* InterruptedAtShutdown */
    {11601, RTU_ERR_TRANSIENT}, /* Interrupted */
    {11602, RTU_ERR_TRANSIENT}, /* InterruptedDueToReplStateChange */
    {13435, RTU_ERR_TRANSIENT}, /* NotPrimaryNoSecondaryOk */
    {13436, RTU_ERR_TRANSIENT}, /* NotPrimaryOrSecondary */
    {11, RTU_ERR_CONFIG},       /* UserNotFound */
    {13, RTU_ERR_CONFIG},       /* Unauthorized */
    {18, RTU_ERR_CONFIG},       /* AuthenticationFailed */
    {100, RTU_ERR_CONFIG},      /* UnsatisfiableWriteConcern */
    {8000, RTU_ERR_CONFIG},     /* AtlasError (Atlas's "user is not allowed") */
};

rtu_err_t rtu_store_mongo_classify(uint32_t domain, uint32_t code) {
  switch (domain) {
  case MONGOC_ERROR_STREAM:           /* connect, send, receive, socket timeout */
  case MONGOC_ERROR_SERVER_SELECTION: /* no server within serverSelectionTimeoutMS */
  case MONGOC_ERROR_WRITE_CONCERN:
    return RTU_ERR_TRANSIENT;
  case MONGOC_ERROR_CLIENT:
    /* Authentication is the user's to fix; the rest (a connection dropped
     * mid-handshake, too many sessions) passes. */
    return code == MONGOC_ERROR_CLIENT_AUTHENTICATE ? RTU_ERR_CONFIG : RTU_ERR_TRANSIENT;
  case MONGOC_ERROR_BSON:
  case MONGOC_ERROR_COMMAND: /* the driver refused to send it: an invalid document */
    if (domain == MONGOC_ERROR_COMMAND && code != MONGOC_ERROR_COMMAND_INVALID_ARG) break;
    return RTU_ERR_DATA;
  default:
    break;
  }
  for (size_t i = 0; i < sizeof server_codes / sizeof *server_codes; i++)
    if ((uint32_t)server_codes[i].code == code) return server_codes[i].kind;
  return RTU_ERR_DATA;
}

rtu_err_t rtu_store_mongo_fail(const bson_error_t *err, const char *what, char *errstr, size_t sz) {
  snprintf(errstr, sz, "MongoDB %s: %s (code %u)", what, err->message, err->code);
  rtu_err_t kind = rtu_store_mongo_classify(err->domain, err->code);
  /* Until the next command succeeds, /-/ready says no. */
  if (kind == RTU_ERR_TRANSIENT) rtu_health_dependency(RTU_DEP_MONGODB, false, errstr);
  return kind;
}
