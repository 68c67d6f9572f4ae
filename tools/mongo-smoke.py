#!/usr/bin/python3
"""mongo-smoke.py: pymongo checks of a MongoDB server (the test server or a real one).

This file owns: the pymongo-level specification of what tools/
mongo-test-server.py must do for rtu's tests; every check would pass on a
real MongoDB 5.0 standalone too.  It works in databases "rtu_pysmoke*" and
drops them at the end.

Usage: /usr/bin/python3 mongo-smoke.py [mongodb://127.0.0.1:PORT]  (default $MONGODB_URL)
Prints one line per check group and timings; exit status 1 on any mismatch.
"""

import datetime
import sys
import threading
import time

import pymongo
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from pymongo import DeleteOne, InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, CollectionInvalid, OperationFailure

FAILURES = []
BIG = 9007199254740993


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print('FAIL: %s' % what)


def expect_error(fn, code, what, contains=None):
    try:
        fn()
    except OperationFailure as exc:
        got = exc.code
        if isinstance(exc, BulkWriteError):
            got = exc.details['writeErrors'][0]['code']
        check(got == code, '%s: code %s, want %s (%s)' % (what, got, code, exc.details))
        if contains:
            msg = (exc.details or {}).get('errmsg', '') or str(exc)
            if isinstance(exc, BulkWriteError):
                msg = exc.details['writeErrors'][0]['errmsg']
            check(contains in msg, '%s: errmsg %r lacks %r' % (what, msg, contains))
        return exc
    check(False, '%s: no error, want code %s' % (what, code))
    return None


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else __import__('os').environ.get('MONGODB_URL')
    if not url:
        print('usage: mongo-smoke.py mongodb://127.0.0.1:PORT')
        return 2
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    db = client.rtu_pysmoke
    client.drop_database('rtu_pysmoke')
    client.drop_database('rtu_pysmoke2')

    # -- handshake and server commands
    hello = client.admin.command('isMaster')
    check(hello.get('ismaster') is True, 'isMaster.ismaster')
    check(hello.get('maxWireVersion') == 13, 'maxWireVersion 13')
    check(hello.get('maxWriteBatchSize') == 100000, 'maxWriteBatchSize')
    for k in ('maxBsonObjectSize', 'maxMessageSizeBytes', 'logicalSessionTimeoutMinutes'):
        check(k in hello, 'isMaster.%s' % k)
    check(client.admin.command('hello').get('isWritablePrimary') is True, 'hello')
    check(client.admin.command('ping')['ok'] == 1, 'ping')
    check(client.admin.command('buildInfo')['versionArray'][0] >= 4, 'buildInfo')
    fcv = client.admin.command('getParameter', 1, featureCompatibilityVersion=1)
    check('featureCompatibilityVersion' in fcv, 'getParameter fcv')
    expect_error(lambda: db.command('noSuchCommand'), 59, 'unknown command')
    print('handshake/ping/buildInfo/getParameter/unknown: ok')

    # -- types survive a round trip
    c = db.types
    now = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    doc = {'_id': 'str-id', 'big': Int64(BIG), 'dec': Decimal128('1.10'), 'when': now,
           'nested': {'a': [1, {'b': None}], 'e': {}}, 'f': 1.5, 't': True}
    c.insert_one(doc)
    back = c.find_one({'_id': 'str-id'})
    check(back == doc and isinstance(back['big'], Int64) and back['big'] == BIG,
          'type round trip: %r' % (back,))
    c.insert_one({'_id': {'k': 1, 'j': 'x'}, 'v': 1})
    check(c.find_one({'_id': {'k': 1, 'j': 'x'}})['v'] == 1, 'document _id')
    print('types: ok')

    # -- insert: ordered / unordered write errors
    c = db.ins
    c.insert_many([{'_id': i} for i in range(5)])
    exc = expect_error(lambda: c.insert_many([{'_id': 10}, {'_id': 1}, {'_id': 11}]), 11000,
                       'ordered insert dup', 'index: _id_ dup key')
    if exc:
        check(exc.details['nInserted'] == 1 and exc.details['writeErrors'][0]['index'] == 1,
              'ordered insert stops: %r' % exc.details)
    exc = expect_error(lambda: c.insert_many([{'_id': 20}, {'_id': 2}, {'_id': 21}],
                                             ordered=False), 11000, 'unordered insert dup')
    if exc:
        check(exc.details['nInserted'] == 2, 'unordered insert goes on: %r' % exc.details)
    check(c.count_documents({}) == 8, 'insert count')
    print('insert + write errors: ok')

    # -- update operators
    c = db.upd
    c.insert_one({'_id': 1, 'a': 1, 'b': 2, 'arr': [1, 2, 3], 'tags': ['x'],
                  'items': [{'id': 1, 'q': 1}, {'id': 2, 'q': 2}], 'n': 10})
    r = c.update_one({'_id': 1}, {'$set': {'a': 5, 'sub.x': 1}, '$unset': {'b': ''},
                                  '$inc': {'n': 5}, '$push': {'arr': {'$each': [4, 5]}},
                                  '$addToSet': {'tags': 'y'}, '$currentDate': {'ts': True}})
    check(r.matched_count == 1 and r.modified_count == 1, 'update counts')
    d = c.find_one({'_id': 1})
    check(d['a'] == 5 and 'b' not in d and d['n'] == 15 and d['arr'] == [1, 2, 3, 4, 5] and
          d['tags'] == ['x', 'y'] and d['sub'] == {'x': 1} and
          isinstance(d['ts'], datetime.datetime), 'update operators: %r' % d)
    c.update_one({'_id': 1}, {'$mul': {'n': 2}, '$min': {'a': 3}, '$max': {'z': 7},
                              '$rename': {'sub': 'sub2'}, '$pull': {'arr': 2},
                              '$pop': {'tags': 1}})
    d = c.find_one({'_id': 1})
    check(d['n'] == 30 and d['a'] == 3 and d['z'] == 7 and 'sub2' in d and
          d['arr'] == [1, 3, 4, 5] and d['tags'] == ['x'], 'more operators: %r' % d)
    r = c.update_one({'_id': 1}, {'$set': {'a': 3}})
    check(r.matched_count == 1 and r.modified_count == 0, 'no-op update nModified 0')
    c.update_one({'_id': 1}, {'$set': {'items.$[e].q': 99}}, array_filters=[{'e.id': 2}])
    check(c.find_one({'_id': 1})['items'] == [{'id': 1, 'q': 1}, {'id': 2, 'q': 99}],
          'arrayFilters')
    c.update_one({'_id': 1}, {'$inc': {'items.$[].q': 1}})
    check([i['q'] for i in c.find_one({'_id': 1})['items']] == [2, 100], 'all positional $[]')
    c.update_one({'_id': 1, 'items.id': 1}, {'$set': {'items.$.q': 7}})
    check(c.find_one({'_id': 1})['items'][0]['q'] == 7, 'positional $')
    r = c.replace_one({'_id': 1}, {'only': True})
    check(r.modified_count == 1 and c.find_one({'_id': 1}) == {'_id': 1, 'only': True},
          'replacement')
    r = c.update_one({'k': 'new'}, {'$set': {'v': 1}, '$setOnInsert': {'created': 1}},
                     upsert=True)
    check(r.upserted_id is not None and r.matched_count == 0, 'upsert inserted')
    d = c.find_one({'k': 'new'})
    check(d['v'] == 1 and d['created'] == 1, 'upsert doc %r' % d)
    r = c.update_one({'k': 'new'}, {'$set': {'v': 2}, '$setOnInsert': {'created': 2}},
                     upsert=True)
    check(r.upserted_id is None and c.find_one({'k': 'new'})['created'] == 1,
          '$setOnInsert only on insert')
    c.insert_many([{'grp': 1, 'x': i} for i in range(5)])
    r = c.update_many({'grp': 1}, {'$inc': {'x': 10}})
    check(r.matched_count == 5 and r.modified_count == 5, 'multi update')
    r = c.update_many({'grp': 1}, [{'$set': {'y': {'$add': ['$x', 1]}}}])
    check(r.modified_count == 5 and c.find_one({'grp': 1, 'x': 10})['y'] == 11,
          'pipeline update')
    expect_error(lambda: c.update_one({'_id': 1}, {'$foo': {'a': 1}}), 9, 'unknown modifier')
    expect_error(lambda: c.replace_one({'_id': 1}, {'_id': 2, 'a': 1}), 66, 'immutable _id')
    print('update: ok')

    # -- bulk write semantics
    c = db.bulk
    c.create_index('k', unique=True, name='k_1')
    exc = None
    try:
        c.bulk_write([InsertOne({'k': 1}), InsertOne({'k': 1}), InsertOne({'k': 2}),
                      UpdateOne({'k': 3}, {'$set': {'v': 1}}, upsert=True)])
    except BulkWriteError as e:
        exc = e
    check(exc is not None and exc.details['nInserted'] == 1 and
          exc.details['writeErrors'][0]['index'] == 1 and
          exc.details['writeErrors'][0]['code'] == 11000, 'ordered bulk stops')
    try:
        exc = None
        c.bulk_write([InsertOne({'k': 1}), InsertOne({'k': 4}),
                      UpdateOne({'k': 5}, {'$set': {'v': 1}}, upsert=True),
                      DeleteOne({'k': 4})], ordered=False)
    except BulkWriteError as e:
        exc = e
    check(exc is not None and exc.details['nInserted'] == 1 and exc.details['nUpserted'] == 1
          and exc.details['nRemoved'] == 1 and len(exc.details['upserted']) == 1 and
          exc.details['upserted'][0]['index'] == 2, 'unordered bulk goes on: %r' %
          (exc and exc.details))
    print('bulk semantics: ok')

    # -- unique indexes
    c = db.uniq
    c.create_index([('pk', 1)], unique=True, name='pk_unique')
    c.create_index([('a', 1), ('b', -1)], unique=True, name='ab')
    c.create_index('s', unique=True, sparse=True, name='s_sparse')
    c.create_index('p', unique=True, name='p_partial',
                   partialFilterExpression={'live': True})
    c.insert_one({'pk': 1, 'a': 1, 'b': 1})
    expect_error(lambda: c.insert_one({'pk': 1, 'a': 2, 'b': 2}), 11000, 'unique insert',
                 'index: pk_unique dup key')
    expect_error(lambda: c.insert_one({'pk': 2, 'a': 1, 'b': 1}), 11000, 'compound unique',
                 'index: ab dup key')
    c.insert_one({'pk': 3, 'a': 1, 'b': 2})
    c.insert_many([{'pk': 10 + i, 'a': 10 + i} for i in range(3)])  # no s: sparse ok
    c.insert_one({'pk': 20, 'a': 20, 's': 'x'})
    expect_error(lambda: c.insert_one({'pk': 21, 'a': 21, 's': 'x'}), 11000, 'sparse unique')
    c.insert_many([{'pk': 30, 'a': 30, 'p': 1, 'live': False},
                   {'pk': 31, 'a': 31, 'p': 1, 'live': False},
                   {'pk': 32, 'a': 32, 'p': 1, 'live': True}])
    expect_error(lambda: c.insert_one({'pk': 33, 'a': 33, 'p': 1, 'live': True}), 11000,
                 'partial unique')
    expect_error(lambda: c.update_one({'pk': 3}, {'$set': {'pk': 1}}), 11000,
                 'update into a dup key')
    check(c.find_one({'pk': 3}) is not None and c.count_documents({'pk': 1}) == 1,
          'failed update rolled back')
    expect_error(lambda: c.update_one({'pk': 1, 'x': {'$gt': 5}}, {'$set': {'y': 1}},
                                      upsert=True), 11000, 'upsert dup key',
                 'index: pk_unique dup key')
    c.update_one({'pk': 3}, {'$set': {'pk': 4}})
    check(c.find_one({'pk': 4})['a'] == 1 and c.find_one({'pk': 3}) is None,
          'index follows key change')
    c.insert_one({'pk': 3, 'a': 3})
    c.delete_one({'pk': 3})
    c.insert_one({'pk': 3, 'a': 3})
    check(c.count_documents({'pk': 3}) == 1, 'reinsert after delete')
    names = {i['name']: i for i in c.list_indexes()}
    check(set(names) == {'_id_', 'pk_unique', 'ab', 's_sparse', 'p_partial'} and
          names['pk_unique'].get('unique') is True and dict(names['ab']['key']) ==
          {'a': 1, 'b': -1}, 'listIndexes: %r' % names)
    c.create_index([('pk', 1)], unique=True, name='pk_unique')   # same again: no-op
    expect_error(lambda: c.create_index([('zz', 1)], name='pk_unique'), 86,
                 'index name with other key')
    c.insert_one({'dupe': 1})
    c.insert_one({'dupe': 1, 'pk': 99, 'a': 99})
    expect_error(lambda: c.create_index('dupe', unique=True), 11000, 'unique index on dups')
    c.drop_index('ab')
    expect_error(lambda: c.drop_index('nope'), 27, 'drop unknown index')
    c.drop_indexes()
    check([i['name'] for i in c.list_indexes()] == ['_id_'], 'dropIndexes *')
    print('unique indexes: ok')

    # -- find: filters, projection, sort, skip, limit, cursors
    c = db.find
    c.insert_many([{'_id': i, 'n': i, 'even': i % 2 == 0, 'tags': ['t%d' % (i % 3), 'all'],
                    'f': float(i), 'sub': {'k': i % 5}} for i in range(300)])
    check(len(list(c.find({'n': {'$in': list(range(0, 300, 3))}}))) == 100, '$in')
    check(len(list(c.find({'$or': [{'n': 5}, {'n': 7}, {'n': 1000}]}))) == 2, '$or')
    check(c.count_documents({'tags': 't1'}) == 100, 'array equality (multikey)')
    check(c.count_documents({'tags': 't1'}) == 100, 'array equality again (indexed)')
    check(c.count_documents({'f': 3}) == 1 and c.count_documents({'n': 3.0}) == 1,
          'numeric equality across types')
    check(c.count_documents({'even': 1}) == 0 and c.count_documents({'even': True}) == 150,
          'bool is not a number')
    check(c.count_documents({'missing': None}) == 300, 'null matches missing')
    check(c.count_documents({'sub.k': 2}) == 60, 'dotted equality')
    check(c.count_documents({'sub': {'k': 2}}) == 60, 'embedded document equality')
    c.update_one({'_id': 7}, {'$set': {'sub.k': 99}})
    check(c.count_documents({'sub.k': 2}) == 59 and c.count_documents({'sub.k': 99}) == 1,
          'index follows in-place update')
    got = list(c.find({'n': {'$gte': 100}}, {'_id': 0, 'n': 1}).sort('n', -1).skip(5).limit(3))
    check(got == [{'n': 294}, {'n': 293}, {'n': 292}], 'sort/skip/limit/projection %r' % got)
    cur = c.find({}, batch_size=7)
    check(len(list(cur)) == 300, 'getMore iteration')
    cur = c.find({}, batch_size=5)
    next(cur)
    cur.close()   # killCursors
    check(len(list(c.find().limit(-4))) == 4, 'negative limit (single batch)')
    check(sorted(c.distinct('sub.k', {'n': {'$lt': 10}})) == [0, 1, 2, 3, 4, 99], 'distinct')
    check(c.count_documents({'even': True}, skip=10, limit=5) == 5, 'countDocuments')
    check(c.estimated_document_count() == 300, 'estimated count')
    print('find/cursors/count/distinct: ok')

    # -- big documents and batches over 16 MiB
    c = db.big
    blob = 'x' * (1024 * 1024)
    c.insert_many([{'_id': i, 'blob': blob} for i in range(40)])
    t = time.time()
    check(sum(1 for _ in c.find()) == 40, '40 MiB in size-limited batches')
    print('big documents: ok (%.2f s)' % (time.time() - t))
    c.drop()

    # -- findAndModify
    c = db.fam
    c.insert_many([{'_id': i, 'v': i} for i in range(3)])
    d = c.find_one_and_update({'_id': 1}, {'$inc': {'v': 10}})
    check(d == {'_id': 1, 'v': 1}, 'findAndModify returns before')
    d = c.find_one_and_update({'_id': 1}, {'$inc': {'v': 10}}, projection={'_id': 0},
                              return_document=ReturnDocument.AFTER)
    check(d == {'v': 21}, 'findAndModify new + fields: %r' % d)
    d = c.find_one_and_update({'_id': 9}, {'$set': {'v': 9}}, upsert=True,
                              return_document=ReturnDocument.AFTER)
    check(d == {'_id': 9, 'v': 9}, 'findAndModify upsert')
    check(c.find_one_and_update({'_id': 50}, {'$set': {'v': 1}}) is None, 'fam no match')
    d = c.find_one_and_replace({'_id': 2}, {'r': 1}, return_document=ReturnDocument.AFTER)
    check(d == {'_id': 2, 'r': 1}, 'findAndModify replace')
    d = c.find_one_and_delete({}, sort=[('_id', -1)])
    check(d['_id'] == 9 and c.count_documents({}) == 3, 'findAndModify remove + sort')
    print('findAndModify: ok')

    # -- aggregate
    c = db.agg
    c.insert_many([{'_id': i, 'g': i % 3, 'v': i} for i in range(30)])
    db.agg_ref.insert_many([{'_id': g, 'name': 'group-%d' % g} for g in range(3)])
    res = list(c.aggregate([{'$match': {'v': {'$gte': 3}}},
                            {'$group': {'_id': '$g', 's': {'$sum': '$v'}, 'n': {'$sum': 1}}},
                            {'$sort': {'_id': 1}},
                            {'$lookup': {'from': 'agg_ref', 'localField': '_id',
                                         'foreignField': '_id', 'as': 'ref'}},
                            {'$project': {'s': 1, 'n': 1, 'name': {'$arrayElemAt':
                                                                   ['$ref.name', 0]}}}],
                           batchSize=1))
    check([(r['_id'], r['n'], r['name']) for r in res] ==
          [(0, 9, 'group-0'), (1, 9, 'group-1'), (2, 9, 'group-2')], 'aggregate %r' % res)
    print('aggregate: ok')

    # -- collections and databases
    db.create_collection('made')
    try:
        db.create_collection('made')
        check(False, 'create existing collection')
    except CollectionInvalid:
        pass
    except OperationFailure as exc:
        check(exc.code == 48, 'create existing: code %s' % exc.code)
    check('made' in db.list_collection_names(), 'listCollections')
    check([x['name'] for x in db.list_collections(filter={'name': 'made'})] == ['made'],
          'listCollections filter')
    db.made.insert_one({'a': 1})
    db.made.rename('made2')
    check(db.made2.count_documents({}) == 1 and 'made' not in db.list_collection_names(),
          'renameCollection')
    db.drop_collection('made2')
    check('made2' not in db.list_collection_names(), 'drop')
    client.rtu_pysmoke2.x.insert_one({'a': 1})
    check('rtu_pysmoke2' in client.list_database_names(), 'listDatabases')
    client.drop_database('rtu_pysmoke2')
    check('rtu_pysmoke2' not in client.list_database_names(), 'dropDatabase')
    print('collections/databases: ok')

    # -- sessions (lsid on every command, endSessions at close)
    with client.start_session() as s:
        db.sess.insert_one({'a': 1}, session=s)
        check(db.sess.find_one({}, session=s)['a'] == 1, 'session commands')
    print('sessions: ok')

    # -- several clients at once
    errors = []

    def worker(k):
        try:
            cl = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
            col = cl.rtu_pysmoke.conc
            for i in range(200):
                col.update_one({'k': k, 'i': i}, {'$set': {'v': i}}, upsert=True)
            if col.count_documents({'k': k}) != 200:
                errors.append('worker %d count' % k)
            cl.close()
        except Exception as exc:  # noqa: BLE001
            errors.append('worker %d: %r' % (k, exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    check(not errors, 'concurrent clients: %r' % errors)
    print('4 concurrent clients x 200 upserts: ok (%.2f s)' % (time.time() - t))

    # -- timing: 10,000 guarded upserts in one bulk, then find by 1,000 keys
    c = db.perf
    c.create_index('pk', unique=True)
    guard = [{'__internal__counter': {'$lte': 1}}, {'__internal__counter': {'$exists': False}}]
    ops = [UpdateOne({'pk': i, '$or': guard},
                     {'$set': {'v': i, '__internal__counter': 1}}, upsert=True)
           for i in range(10000)]
    t = time.time()
    r = c.bulk_write(ops)
    t1 = time.time() - t
    check(r.upserted_count == 10000, 'perf bulk upserted')
    t = time.time()
    n = len(list(c.find({'pk': {'$in': list(range(0, 10000, 10))}})))
    t2 = time.time() - t
    check(n == 1000, 'perf $in')
    t = time.time()
    n = len(list(c.find({'$or': [{'pk': i} for i in range(0, 10000, 10)]})))
    t3 = time.time() - t
    check(n == 1000, 'perf $or')
    print('timing: bulk 10,000 upserts %.3f s; find $in 1,000 keys %.3f s; '
          'find $or 1,000 keys %.3f s' % (t1, t2, t3))

    client.drop_database('rtu_pysmoke')
    client.close()
    if FAILURES:
        print('mongo-smoke.py: %d check(s) FAILED' % len(FAILURES))
        return 1
    print('mongo-smoke.py: all checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
