/*
 * rtu-mongo-smoke: checks a MongoDB server with libmongoc the way rtu uses it.
 *
 * This file owns: a fixed sequence of driver-level checks against the
 * server at argv[1] (default $MONGODB_URL) and the timings it prints.  It
 * exists to prove that tools/mongo-test-server.py speaks enough of the wire
 * protocol for libmongoc 1.23 (handshake, OP_MSG with document sequences,
 * bulk writes, write errors, cursors); it runs unchanged against a real
 * mongod.  Works in database "rtu_smoke", collection "items" (dropped at the
 * start and at the end).
 *
 * Checks: ping; createIndexes (unique {pk: 1}) as a command; an ordered bulk
 * of 10,000 upserts ($set/$setOnInsert) all upserted; the same bulk again all
 * matched and modified; int64 2^53+1 values kept exactly; a guarded upsert
 * on an existing key fails with code 11000 ("dup key"); ordered vs unordered
 * bulk error semantics; find with $in and $or of 1,000 keys; sort, skip,
 * limit and getMore; count_documents; delete.
 * Exit status: 0 when every check passed, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bson/bson.h>
#include <mongoc/mongoc.h>

#define DB_NAME "rtu_smoke"
#define COLL_NAME "items"
#define N_DOCS 10000
#define N_FIND 1000
#define BIG 9007199254740993LL /* 2^53 + 1: not representable as a double */

static int failures;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static void print_json(const char *label, const bson_t *doc)
{
    char *s = bson_as_relaxed_extended_json(doc, NULL);
    fprintf(stderr, "  %s: %s\n", label, s ? s : "?");
    bson_free(s);
}

static int64_t doc_int(const bson_t *doc, const char *dotted)
{
    bson_iter_t it, sub;
    if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &sub) &&
        BSON_ITER_HOLDS_NUMBER(&sub))
        return bson_iter_as_int64(&sub);
    return -1;
}

/* Build {pk: i} selector plus the rtu ordering guard on __internal__counter. */
static bson_t *guard_selector(int64_t pk, int64_t counter)
{
    return BCON_NEW("pk", BCON_INT64(pk), "$or", "[",
                    "{", "__internal__counter", "{", "$lte", BCON_INT64(counter),
                    "}", "}",
                    "{", "__internal__counter", "{", "$exists", BCON_BOOL(false),
                    "}", "}", "]");
}

static bson_t *upsert_update(int64_t i, int64_t counter, const char *tag)
{
    char val[64];
    snprintf(val, sizeof(val), "%s-%lld", tag, (long long)i);
    return BCON_NEW("$set", "{", "value", BCON_UTF8(val), "big",
                    BCON_INT64(BIG + i), "__internal__counter",
                    BCON_INT64(counter), "}", "$setOnInsert", "{", "createdAt",
                    BCON_DATE_TIME(1700000000000LL), "}");
}

static int run_bulk(mongoc_collection_t *coll, int64_t counter, const char *tag,
                    bson_t *reply, double *secs)
{
    int ok = 0;
    bson_error_t error;
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
    bson_t *upsert = BCON_NEW("upsert", BCON_BOOL(true));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(coll, opts);
    double t0;

    for (int64_t i = 0; i < N_DOCS; i++) {
        bson_t *sel = guard_selector(i, counter);
        bson_t *upd = upsert_update(i, counter, tag);
        bool r = mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd,
                                                            upsert, &error);
        bson_destroy(sel);
        bson_destroy(upd);
        if (!r) {
            fail("bulk add: %s", error.message);
            bson_init(reply);
            goto done;
        }
    }
    t0 = now_s();
    if (!mongoc_bulk_operation_execute(bulk, reply, &error)) {
        fail("bulk %s: %s", tag, error.message);
        print_json("reply", reply);
        goto done;
    }
    *secs = now_s() - t0;
    ok = 1;
done:
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(opts);
    bson_destroy(upsert);
    return ok;
}

static int count_cursor(mongoc_cursor_t *cursor, int check_big)
{
    const bson_t *doc;
    bson_error_t error;
    int n = 0;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (check_big) {
            int64_t pk = doc_int(doc, "pk");
            int64_t big = doc_int(doc, "big");
            if (big != BIG + pk) {
                fail("doc pk=%lld has big=%lld, want %lld", (long long)pk,
                     (long long)big, (long long)(BIG + pk));
                check_big = 0;
            }
        }
        n++;
    }
    if (mongoc_cursor_error(cursor, &error)) {
        fail("cursor: %s", error.message);
        return -1;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("MONGODB_URL");
    mongoc_uri_t *uri = NULL;
    mongoc_client_t *client = NULL;
    mongoc_database_t *db = NULL;
    mongoc_collection_t *coll = NULL;
    mongoc_cursor_t *cursor = NULL;
    bson_error_t error;
    bson_t reply = BSON_INITIALIZER;
    bson_t *cmd = NULL, *filter = NULL, *opts = NULL, *tmp = NULL;
    double t, t_ins = 0, t_upd = 0;
    int64_t n;

    if (!url) {
        fprintf(stderr, "usage: rtu-mongo-smoke mongodb://127.0.0.1:PORT\n");
        return 2;
    }
    mongoc_init();

    uri = mongoc_uri_new_with_error(url, &error);
    if (!uri) {
        fail("uri %s: %s", url, error.message);
        goto done;
    }
    client = mongoc_client_new_from_uri_with_error(uri, &error);
    if (!client) {
        fail("client: %s", error.message);
        goto done;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(client, "rtu-mongo-smoke");
    db = mongoc_client_get_database(client, DB_NAME);
    coll = mongoc_client_get_collection(client, DB_NAME, COLL_NAME);

    /* ping */
    t = now_s();
    cmd = BCON_NEW("ping", BCON_INT32(1));
    if (!mongoc_client_command_simple(client, "admin", cmd, NULL, &reply,
                                      &error)) {
        fail("ping: %s", error.message);
        goto done;
    }
    printf("ping: %.1f ms (includes connect + handshake)\n",
           (now_s() - t) * 1000);
    bson_destroy(cmd);
    cmd = NULL;
    bson_destroy(&reply);
    bson_init(&reply);

    /* start clean (NamespaceNotFound is fine) */
    if (!mongoc_collection_drop_with_opts(coll, NULL, &error) &&
        error.code != 26)
        fail("drop: %s (code %u)", error.message, error.code);

    /* unique index through the createIndexes command */
    cmd = BCON_NEW("createIndexes", BCON_UTF8(COLL_NAME), "indexes", "[", "{",
                   "key", "{", "pk", BCON_INT32(1), "}", "name",
                   BCON_UTF8("pk_unique"), "unique", BCON_BOOL(true), "}",
                   "]");
    if (!mongoc_database_write_command_with_opts(db, cmd, NULL, &reply,
                                                 &error)) {
        fail("createIndexes: %s", error.message);
        goto done;
    }
    bson_destroy(cmd);
    cmd = NULL;
    bson_destroy(&reply);

    /* 10,000 upserts, all new */
    if (!run_bulk(coll, 1, "v1", &reply, &t_ins))
        goto done;
    if (doc_int(&reply, "nUpserted") != N_DOCS || doc_int(&reply, "nMatched") != 0) {
        fail("first bulk: want nUpserted=%d nMatched=0", N_DOCS);
        print_json("reply", &reply);
    }
    printf("bulk of %d upserts (all inserted): %.3f s (%.0f ops/s)\n", N_DOCS,
           t_ins, N_DOCS / t_ins);
    bson_destroy(&reply);

    /* the same keys again with a newer counter: all matched and modified */
    if (!run_bulk(coll, 2, "v2", &reply, &t_upd))
        goto done;
    if (doc_int(&reply, "nUpserted") != 0 || doc_int(&reply, "nMatched") != N_DOCS ||
        doc_int(&reply, "nModified") != N_DOCS) {
        fail("second bulk: want nUpserted=0 nMatched=nModified=%d", N_DOCS);
        print_json("reply", &reply);
    }
    printf("bulk of %d upserts (all updated): %.3f s (%.0f ops/s)\n", N_DOCS,
           t_upd, N_DOCS / t_upd);
    bson_destroy(&reply);
    bson_init(&reply);

    /* guarded upsert with an older counter on an existing key: the filter
     * does not match, the upsert collides with pk_unique -> E11000 */
    filter = guard_selector(5, 1);
    tmp = upsert_update(5, 1, "stale");
    opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_destroy(&reply);
    if (mongoc_collection_update_one(coll, filter, tmp, opts, &reply, &error)) {
        fail("stale guarded upsert succeeded, want E11000");
        print_json("reply", &reply);
    } else {
        bson_iter_t it;
        const char *msg = NULL;
        if (error.code != 11000)
            fail("stale upsert: code %u (%s), want 11000", error.code,
                 error.message);
        if (bson_iter_init(&it, &reply) &&
            bson_iter_find_descendant(&it, "writeErrors.0.errmsg", &it) &&
            BSON_ITER_HOLDS_UTF8(&it))
            msg = bson_iter_utf8(&it, NULL);
        if (!msg || !strstr(msg, "dup key") || !strstr(msg, "index: pk_unique"))
            fail("stale upsert errmsg '%s' lacks 'index: pk_unique ... dup key'",
                 msg ? msg : "(none)");
        else
            printf("duplicate-key upsert: code %u, \"%s\"\n", error.code, msg);
    }
    bson_destroy(filter);
    bson_destroy(tmp);
    bson_destroy(opts);
    filter = tmp = opts = NULL;
    bson_destroy(&reply);

    /* ordered vs unordered: [new 20000, dup insert pk 7, new 20001] */
    for (int ordered = 1; ordered >= 0; ordered--) {
        bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(ordered));
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(coll, bopts);
        bson_t *d1 = BCON_NEW("pk", BCON_INT64(20000 + 10 * ordered));
        bson_t *d2 = BCON_NEW("pk", BCON_INT64(7));
        bson_t *d3 = BCON_NEW("pk", BCON_INT64(20001 + 10 * ordered));
        bool r;
        bson_iter_t it;

        mongoc_bulk_operation_insert(bulk, d1);
        mongoc_bulk_operation_insert(bulk, d2);
        mongoc_bulk_operation_insert(bulk, d3);
        r = mongoc_bulk_operation_execute(bulk, &reply, &error);
        if (r || error.code != 11000)
            fail("%s bulk with dup: ok=%d code=%u, want failure 11000",
                 ordered ? "ordered" : "unordered", r, error.code);
        if (doc_int(&reply, "nInserted") != (ordered ? 1 : 2)) {
            fail("%s bulk with dup: nInserted=%lld, want %d",
                 ordered ? "ordered" : "unordered",
                 (long long)doc_int(&reply, "nInserted"), ordered ? 1 : 2);
            print_json("reply", &reply);
        }
        if (!bson_iter_init(&it, &reply) ||
            !bson_iter_find_descendant(&it, "writeErrors.0.index", &it) ||
            bson_iter_as_int64(&it) != 1)
            fail("%s bulk with dup: writeErrors[0].index != 1",
                 ordered ? "ordered" : "unordered");
        bson_destroy(&reply);
        bson_destroy(d1);
        bson_destroy(d2);
        bson_destroy(d3);
        bson_destroy(bopts);
        mongoc_bulk_operation_destroy(bulk);
    }
    printf("ordered/unordered bulk write errors: checked\n");

    /* find with $in of 1,000 keys */
    {
        bson_t in_filter = BSON_INITIALIZER, pk_doc, arr;
        char key[16];
        const char *k;
        bson_append_document_begin(&in_filter, "pk", -1, &pk_doc);
        bson_append_array_begin(&pk_doc, "$in", -1, &arr);
        for (uint32_t i = 0; i < N_FIND; i++) {
            bson_uint32_to_string(i, &k, key, sizeof(key));
            bson_append_int64(&arr, k, -1, (int64_t)i * 7);
        }
        bson_append_array_end(&pk_doc, &arr);
        bson_append_document_end(&in_filter, &pk_doc);
        t = now_s();
        cursor = mongoc_collection_find_with_opts(coll, &in_filter, NULL, NULL);
        n = count_cursor(cursor, 1);
        t = now_s() - t;
        mongoc_cursor_destroy(cursor);
        cursor = NULL;
        bson_destroy(&in_filter);
        if (n != N_FIND)
            fail("find $in: %lld docs, want %d", (long long)n, N_FIND);
        printf("find {pk: {$in: [%d keys]}}: %lld docs in %.3f s\n", N_FIND,
               (long long)n, t);
    }

    /* find with $or of 1,000 keys */
    {
        bson_t or_filter = BSON_INITIALIZER, arr, item;
        char key[16];
        const char *k;
        bson_append_array_begin(&or_filter, "$or", -1, &arr);
        for (uint32_t i = 0; i < N_FIND; i++) {
            bson_uint32_to_string(i, &k, key, sizeof(key));
            bson_append_document_begin(&arr, k, -1, &item);
            bson_append_int64(&item, "pk", -1, (int64_t)i * 3 + 1);
            bson_append_document_end(&arr, &item);
        }
        bson_append_array_end(&or_filter, &arr);
        t = now_s();
        cursor = mongoc_collection_find_with_opts(coll, &or_filter, NULL, NULL);
        n = count_cursor(cursor, 1);
        t = now_s() - t;
        mongoc_cursor_destroy(cursor);
        cursor = NULL;
        bson_destroy(&or_filter);
        if (n != N_FIND)
            fail("find $or: %lld docs, want %d", (long long)n, N_FIND);
        printf("find {$or: [%d x {pk}]}: %lld docs in %.3f s\n", N_FIND,
               (long long)n, t);
    }

    /* sort + skip + limit + small batches (getMore) */
    {
        const bson_t *doc;
        int64_t want = N_DOCS - 1 - 10, got = 0;
        filter = BCON_NEW("pk", "{", "$lt", BCON_INT64(N_DOCS), "}");
        opts = BCON_NEW("sort", "{", "pk", BCON_INT32(-1), "}", "skip",
                        BCON_INT64(10), "limit", BCON_INT64(50), "batchSize",
                        BCON_INT32(7), "projection", "{", "pk", BCON_INT32(1),
                        "_id", BCON_INT32(0), "}");
        t = now_s();
        cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
        while (mongoc_cursor_next(cursor, &doc)) {
            if (doc_int(doc, "pk") != want)
                fail("sorted find: pk %lld, want %lld",
                     (long long)doc_int(doc, "pk"), (long long)want);
            want--;
            got++;
        }
        if (mongoc_cursor_error(cursor, &error))
            fail("sorted find: %s", error.message);
        if (got != 50)
            fail("sorted find: %lld docs, want 50", (long long)got);
        printf("find sort/skip/limit/batchSize(getMore): %lld docs in %.3f s\n",
               (long long)got, now_s() - t);
        mongoc_cursor_destroy(cursor);
        cursor = NULL;
        bson_destroy(filter);
        bson_destroy(opts);
        filter = opts = NULL;
    }

    /* count and delete */
    filter = bson_new();
    n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL,
                                          &error);
    if (n != N_DOCS + 3)
        fail("count_documents: %lld (%s), want %d", (long long)n,
             n < 0 ? error.message : "", N_DOCS + 3);
    bson_destroy(filter);
    filter = BCON_NEW("pk", BCON_INT64(42));
    if (!mongoc_collection_delete_one(coll, filter, NULL, &reply, &error) ||
        doc_int(&reply, "deletedCount") != 1)
        fail("delete_one: %s", error.message);
    bson_destroy(&reply);
    bson_init(&reply);
    n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL,
                                          &error);
    if (n != 0)
        fail("count after delete: %lld", (long long)n);
    bson_destroy(filter);
    filter = NULL;

    if (!mongoc_collection_drop_with_opts(coll, NULL, &error))
        fail("final drop: %s", error.message);

done:
    bson_destroy(&reply);
    if (cmd)
        bson_destroy(cmd);
    if (filter)
        bson_destroy(filter);
    if (opts)
        bson_destroy(opts);
    if (tmp)
        bson_destroy(tmp);
    if (cursor)
        mongoc_cursor_destroy(cursor);
    if (coll)
        mongoc_collection_destroy(coll);
    if (db)
        mongoc_database_destroy(db);
    if (client)
        mongoc_client_destroy(client);
    if (uri)
        mongoc_uri_destroy(uri);
    mongoc_cleanup();
    if (failures) {
        printf("rtu-mongo-smoke: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("rtu-mongo-smoke: all checks passed\n");
    return 0;
}
