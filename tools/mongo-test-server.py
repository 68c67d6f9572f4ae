#!/usr/bin/python3
"""mongo-test-server.py: a MongoDB-wire-protocol server for rtu's tests and demo.

This file owns: a small MongoDB stand-in (no mongod is packaged for Debian and
no registry reachable here ships one).  It speaks the wire protocol through
python3-mockupdb (OP_MSG with document sequences, the legacy OP_QUERY
isMaster/hello handshake) and uses python3-mongomock as query/update/
aggregation engine, answering as a standalone MongoDB 5.0 (maxWireVersion 13).
It also owns the speed-ups that make mongomock usable for bulk upserts:
mongomock scans every document for every query and every unique-index check,
so this file keeps, per collection, hash indexes for `_id`, for every declared
index and for automatically created equality indexes, and resolves equality
filters ({pk: v}, {pk: {$in: [...]}}, {$or: [{pk..}, ...]}, plus any extra
guard such as {__internal__counter: {$lte: c}} or an $or guard on it) to a
few candidates that mongomock then checks one by one (the index or the $or
branches that give the fewest).  Plain documents are copied and checked by
hand rather than by copy.deepcopy and bson, and the cyclic garbage collector
is frozen after each command (see _gc_freeze).

It is a test double only: one request at a time, no transactions, change
streams, auth, TLS or compression; memory grows by several KiB per document.
Code written against it must stay correct on a real MongoDB 4.4+.

Commands: hello/isMaster, ping, buildInfo, getParameter, serverStatus,
insert, update (operators, replacement, pipeline, upsert, multi, arrayFilters),
delete, find/getMore/killCursors, findAndModify, aggregate (incl. the
countDocuments pipeline), count, distinct, createIndexes/listIndexes/
dropIndexes (unique, sparse, partial; E11000 on violation, also on upsert),
create, drop, dropDatabase, renameCollection, listCollections, listDatabases,
endSessions, killAllSessions, killSessions, refreshSessions, and rtuTestStats
(command counts per client appName, for tools/bench); anything else
answers {ok: 0, code: 59, codeName: CommandNotFound}.

Usage: /usr/bin/python3 mongo-test-server.py [--host 127.0.0.1] [--port 0]
                                            [--port-file PATH] [--verbose]
Prints "listening on HOST:PORT" on stdout; stops cleanly on SIGTERM/SIGINT.
RTU_TEST_SERVER_PROFILE=FILE: cProfile of the commands, process CPU and
cyclic-GC time written to FILE (raw statistics to FILE.pstats) at the stop.
"""

import argparse
import collections
import copy
import datetime
import errno
import gc
import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback

import bson
from bson import ObjectId
from bson.int64 import Int64
from bson.regex import Regex
from bson.decimal128 import Decimal128
from bson.son import SON
from bson.timestamp import Timestamp

import mockupdb
import mongomock
from mongomock import aggregate as mm_aggregate
from mongomock import collection as mm_collection
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from mongomock import store as mm_store

filter_applies = mm_filtering.filter_applies
OrderedDict = collections.OrderedDict

MAX_BSON = 16 * 1024 * 1024
MAX_MESSAGE = 48000000
MAX_BATCH = 100000
WIRE_VERSION = 13
SERVER_VERSION = '5.0.0'
BATCH_BYTES = MAX_BSON - 64 * 1024     # leave room for the reply envelope
MAX_AUTO_INDEXES = 8
MAX_KEY_PRODUCT = 100000
CURSOR_IDLE_SECONDS = 600

mongomock.SERVER_VERSION = SERVER_VERSION


class CommandError(Exception):
    """A command-level failure answered as {ok: 0, code, codeName, errmsg}."""

    def __init__(self, code, errmsg, **extra):
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra


CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 9: 'FailedToParse', 14: 'TypeMismatch',
    20: 'IllegalOperation', 26: 'NamespaceNotFound', 27: 'IndexNotFound',
    43: 'CursorNotFound', 48: 'NamespaceExists', 52: 'DollarPrefixedFieldName',
    59: 'CommandNotFound', 66: 'ImmutableField', 67: 'CannotCreateIndex',
    72: 'InvalidOptions', 73: 'InvalidNamespace', 85: 'IndexOptionsConflict',
    86: 'IndexKeySpecsConflict', 115: 'CommandNotSupported',
    13: 'Unauthorized', 238: 'NotImplemented', 11000: 'DuplicateKey',
}


# ---------------------------------------------------------------------------
# mockupdb: linear-time socket reads (its own loop concatenates bytes).

def _receive_exactly(sock, length):
    buf = bytearray(length)
    view = memoryview(buf)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:], length - got)
        if n == 0:
            raise socket.error(errno.ECONNRESET, 'closed')
        got += n
    return bytes(buf)


mockupdb.mock_server_receive = _receive_exactly


# mockupdb formats repr(request) and repr(reply) for its log on every message,
# verbose or not: with 10,000 documents in a bulk that costs over a second.
def _short_repr(self):
    docs = getattr(self, '_docs', None) or ()
    first = next(iter(docs[0]), '') if docs and isinstance(docs[0], dict) else ''
    return '%s(%s)' % (type(self).__name__, first)


for _cls in (mockupdb.Request, mockupdb.OpMsg, mockupdb.OpQuery, mockupdb.Command,
             mockupdb.OpGetMore, mockupdb.OpKillCursors, mockupdb.OpInsert,
             mockupdb.OpUpdate, mockupdb.OpDelete, mockupdb.Reply, mockupdb.OpReply,
             mockupdb.OpMsgReply):
    _cls.__repr__ = _short_repr
    _cls.__str__ = _short_repr


# ---------------------------------------------------------------------------
# mongomock additions: $mul, $replaceWith, $unset (pipeline stage).

def _mul_updater(doc, field_name, value):
    if isinstance(doc, dict):
        doc[field_name] = doc.get(field_name, 0) * value
    elif isinstance(doc, list):
        i = int(field_name)
        doc[i] = doc[i] * value


mm_collection._updaters['$mul'] = _mul_updater

# Copies and checks of plain documents (what BSON decoding gives: dict,
# OrderedDict and list containers, scalar leaves).  copy.deepcopy, mongomock's
# datetime normalisation and its BSON validation of every $set value were
# about half of the server's time under tools/bench's food scenario.

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
# leaves that are immutable and that bson.encode accepts as they are
_PLAIN_LEAVES = frozenset([str, bool, float, type(None), datetime.datetime,
                           ObjectId, Decimal128, Timestamp])
_INT_TYPES = frozenset([int, Int64])
_NO_DT_LEAVES = frozenset([str, bool, float, int, Int64, type(None), ObjectId,
                           Decimal128])
_DICT_TYPES = frozenset([dict, OrderedDict])


def _fast_deepcopy(x, memo=None):
    """copy.deepcopy for plain documents (same containers, same aliasing);
    anything else is left to copy.deepcopy."""
    t = type(x)
    if t in _PLAIN_LEAVES or t in _INT_TYPES:
        return x
    if memo is None:
        memo = {}
    y = memo.get(id(x))
    if y is not None:
        return y
    if t is list:
        y = memo[id(x)] = []
        for v in x:
            y.append(_fast_deepcopy(v, memo))
        return y
    if t is dict or t is OrderedDict:
        y = memo[id(x)] = t()
        for k, v in x.items():
            y[_fast_deepcopy(k, memo)] = _fast_deepcopy(v, memo)
        return y
    return copy.deepcopy(x, memo)


class _CopyModule(object):
    """Stands for the copy module inside mongomock.collection."""
    Error = copy.Error
    deepcopy = staticmethod(_fast_deepcopy)
    copy = staticmethod(copy.copy)


mm_collection.copy = _CopyModule


def _plain_key_ok(k):
    return type(k) is str and k and k[0] != '$' and '.' not in k and '\0' not in k


def _plain_value(v, depth=0):
    """True when bson.encode({'k': v}, check_keys=True) surely succeeds and
    v holds only plain containers and immutable leaves."""
    t = type(v)
    if t in _PLAIN_LEAVES:
        return True
    if t in _INT_TYPES:
        return _INT64_MIN <= v <= _INT64_MAX
    if depth > 90:
        return False
    if t is list:
        for x in v:
            if not _plain_value(x, depth + 1):
                return False
        return True
    if t is dict or t is OrderedDict:
        for k, x in v.items():
            if not _plain_key_ok(k) or not _plain_value(x, depth + 1):
                return False
        return True
    return False


_orig_copy_field = mm_collection._copy_field


def _copy_field(obj, container):
    """mongomock's copy of a document for a reply, without copy.copy of
    immutable leaves."""
    t = type(obj)
    if t in _PLAIN_LEAVES or t in _INT_TYPES:
        return obj
    if t is list:
        return [_copy_field(x, container) for x in obj]
    if t is dict or t is OrderedDict:
        new = container()
        for k, v in obj.items():
            new[k] = _copy_field(v, container)
        return new
    return _orig_copy_field(obj, container)


mm_collection._copy_field = _copy_field

_orig_set_updater = mm_collection._set_updater


def _set_updater(doc, field_name, value):
    t = type(doc)
    if (t is dict or t is OrderedDict) and _plain_key_ok(field_name) and \
            _plain_value(value):
        # what the slow path does: copy, bson validation (cannot fail), set
        doc[field_name] = _fast_deepcopy(value)
        return
    # mongomock stores a $set dict value by reference: a multi update would
    # then share one sub-document between several stored documents.
    if isinstance(value, dict):
        value = copy.deepcopy(value)
    _orig_set_updater(doc, field_name, value)


mm_collection._set_updater = _set_updater
mm_collection._updaters['$set'] = _set_updater

_orig_patch_dt = mm_helpers.patch_datetime_awareness_in_document


def _dt_scan(value, depth=0):
    """(has datetime or Timestamp, mongomock's normalisation would change
    something: a value, or a container type it rebuilds differently)."""
    t = type(value)
    if t is datetime.datetime:
        return True, value.tzinfo is not None or value.microsecond % 1000 != 0
    if t is dict or t is OrderedDict:
        it = value.values()
    elif t is list:
        it = value
    elif t in _PLAIN_LEAVES or t in _INT_TYPES:
        if t is Timestamp:
            return True, not value.time and not value.inc
        return False, False
    elif isinstance(value, (dict, list, tuple)):
        has, _ = _dt_scan(list(value.values()) if isinstance(value, dict) else list(value),
                          depth + 1)
        return has, True
    else:
        return isinstance(value, (datetime.datetime, Timestamp)), True
    has = change = False
    if depth > 90:
        return True, True
    for v in it:
        if type(v) in _NO_DT_LEAVES:
            continue
        h, c = _dt_scan(v, depth + 1)
        has = has or h
        change = change or c
    return has, change


def _patch_dt(value):
    """mongomock's datetime/Timestamp normalisation copies every document it
    sees; skip the copy when it would give an equal document of the same
    types (no datetime to truncate or convert, no zero Timestamp)."""
    has, change = _dt_scan(value)
    if has and change:
        return _orig_patch_dt(value)
    return value


mm_helpers.patch_datetime_awareness_in_document = _patch_dt


def _unset_stage(coll, database, options):
    fields = [options] if isinstance(options, str) else list(options)
    return mm_aggregate._handle_project_stage(
        coll, database, OrderedDict((f, 0) for f in fields))


mm_aggregate._PIPELINE_HANDLERS['$unset'] = _unset_stage
mm_aggregate._PIPELINE_HANDLERS['$replaceWith'] = (
    lambda c, d, o: mm_aggregate._handle_replace_root_stage(c, d, {'newRoot': o}))


# ---------------------------------------------------------------------------
# Hash indexes kept next to each mongomock CollectionStore.

class Unindexable(Exception):
    pass


_MISSING = object()


def _hk(v):
    """Hashable key with MongoDB equality: 1 == 1.0 == Int64(1), True != 1."""
    if v is None:
        return ('z',)
    t = type(v)
    if t is bool:
        return ('b', v)
    if isinstance(v, (int, float)):
        if v != v:
            raise Unindexable()
        return ('n', v)
    if isinstance(v, str):
        return ('s', v)
    if isinstance(v, dict):
        return ('d', tuple((k, _hk(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ('a', tuple(_hk(x) for x in v))
    if isinstance(v, Decimal128):
        d = v.to_decimal()
        if d.is_nan():
            raise Unindexable()
        return ('n', d)
    if isinstance(v, bytes):
        return ('B', getattr(v, 'subtype', 0), bytes(v))
    if isinstance(v, (Regex, re.Pattern)):
        raise Unindexable()
    try:
        hash(v)
    except TypeError:
        raise Unindexable()
    return (t.__name__, v)


def _get_path(doc, path):
    cur = doc
    for part in path.split('.'):
        if isinstance(cur, dict):
            if part not in cur:
                return _MISSING
            cur = cur[part]
        elif isinstance(cur, list):
            raise Unindexable()   # paths through arrays: leave to mongomock
        else:
            return _MISSING
    return cur


_SCALAR_KEYS = {str: 's', float: 'n', int: 'n', Int64: 'n'}


def _doc_keys(doc, fields):
    """Set of index key tuples of `doc` (arrays at the leaf are multikey).

    Returns (keys, all_missing)."""
    if len(fields) == 1:
        # the usual case: one top-level field holding a string or a number
        f = fields[0]
        if '.' not in f:
            v = doc.get(f, _MISSING) if isinstance(doc, dict) else _MISSING
            tag = _SCALAR_KEYS.get(type(v))
            if tag is not None and v == v:
                return {((tag, v),)}, False
    per_field = []
    all_missing = True
    for f in fields:
        v = _get_path(doc, f)
        if v is _MISSING:
            per_field.append((('z',),))
            continue
        all_missing = False
        if isinstance(v, list):
            if not v:
                raise Unindexable()
            per_field.append(tuple({_hk(x) for x in v}))
        else:
            per_field.append((_hk(v),))
    size = 1
    for alts in per_field:
        size *= len(alts)
    if size > 1000:
        raise Unindexable()
    return set(itertools.product(*per_field)), all_missing


def _skey(_id):
    """The key mongomock's store uses for a document id."""
    if isinstance(_id, dict):
        return mm_helpers.hashdict(_id)
    return _id


class IndexDef(object):
    __slots__ = ('name', 'fields', 'unique', 'sparse', 'partial', 'auto', 'used')

    def __init__(self, name, fields, unique=False, sparse=False, partial=None,
                 auto=False):
        self.name = name
        self.fields = tuple(fields)
        self.unique = unique
        self.sparse = sparse
        self.partial = partial
        self.auto = auto
        self.used = 0

    @property
    def usable_for_lookup(self):
        return not self.sparse and self.partial is None


class StoreIndex(object):
    """Indexes of one CollectionStore, kept in step through the hooks below."""

    def __init__(self):
        self.seq = {}          # store key -> insertion number (natural order)
        self.next_seq = 0
        self.defs = OrderedDict()
        self.maps = {}         # name -> {key tuple: set(store keys)}
        self.rev = {}          # name -> {store key: set(key tuples)}
        self.fallback = {}     # name -> set(store keys) not hash-indexable
        self.auto = []         # field tuples of automatic indexes
        self.uses = 0          # lookup counter, for evicting automatic indexes
        self.dirty = True

    def note_seq(self, skey):
        if skey not in self.seq:
            self.seq[skey] = self.next_seq
            self.next_seq += 1

    def rebuild(self, store):
        defs = OrderedDict()
        for name, info in store.indexes.items():
            defs[name] = IndexDef(name, [k for k, _ in info['key']],
                                  bool(info.get('unique')),
                                  bool(info.get('sparse')),
                                  info.get('partialFilterExpression'))
        for fields in self.auto:
            name = 'auto:' + ','.join(fields)
            defs[name] = IndexDef(name, fields, auto=True)
        self.defs = defs
        self.maps = {n: {} for n in defs}
        self.rev = {n: {} for n in defs}
        self.fallback = {n: set() for n in defs}
        for skey, doc in store._documents.items():
            self.note_seq(skey)
            for d in defs.values():
                self._add(d, skey, doc)
        self.dirty = False

    def add_auto(self, store, fields):
        if len(self.auto) >= MAX_AUTO_INDEXES:
            # forget the automatic index used least recently
            victim = min(self.auto, key=lambda f: self.defs['auto:' + ','.join(f)].used)
            self.auto.remove(victim)
            name = 'auto:' + ','.join(victim)
            for table in (self.defs, self.maps, self.rev, self.fallback):
                del table[name]
        self.auto.append(fields)
        name = 'auto:' + ','.join(fields)
        d = IndexDef(name, fields, auto=True)
        self.defs[name] = d
        self.maps[name] = {}
        self.rev[name] = {}
        self.fallback[name] = set()
        for skey, doc in store._documents.items():
            self._add(d, skey, doc)
        return d

    def _add(self, d, skey, doc):
        try:
            keys, all_missing = _doc_keys(doc, d.fields)
        except Unindexable:
            self.fallback[d.name].add(skey)
            return
        if d.sparse and all_missing:
            return
        if d.partial is not None:
            try:
                if not filter_applies(d.partial, doc):
                    return
            except Exception:
                return
        m = self.maps[d.name]
        for k in keys:
            s = m.get(k)
            if s is None:
                m[k] = {skey}
            else:
                s.add(skey)
        self.rev[d.name][skey] = keys

    def _remove(self, d, skey):
        keys = self.rev[d.name].pop(skey, None)
        if keys:
            m = self.maps[d.name]
            for k in keys:
                s = m.get(k)
                if s is not None:
                    s.discard(skey)
                    if not s:
                        del m[k]
        self.fallback[d.name].discard(skey)

    def reindex(self, skey, doc):
        for d in self.defs.values():
            if d.partial is None and not d.sparse and skey not in self.fallback[d.name]:
                # most updates leave an index's keys as they were
                old = self.rev[d.name].get(skey)
                if old is not None:
                    try:
                        keys, _ = _doc_keys(doc, d.fields)
                    except Unindexable:
                        keys = None
                    if keys == old:
                        continue
            self._remove(d, skey)
            self._add(d, skey, doc)

    def unindex(self, skey):
        for d in self.defs.values():
            self._remove(d, skey)


def _ix(store):
    ix = store.__dict__.get('_rtu_ix')
    if ix is None:
        ix = store.__dict__['_rtu_ix'] = StoreIndex()
    return ix


def _ready(store):
    ix = _ix(store)
    if ix.dirty:
        ix.rebuild(store)
    return ix


_CS = mm_store.CollectionStore
_orig_setitem = _CS.__setitem__
_orig_delitem = _CS.__delitem__
_orig_drop = _CS.drop
_orig_create_index = _CS.create_index
_orig_drop_index = _CS.drop_index


def _cs_setitem(self, key, val):
    _orig_setitem(self, key, val)
    ix = _ix(self)
    ix.note_seq(key)
    if not ix.dirty:
        ix.reindex(key, val)


def _cs_delitem(self, key):
    _orig_delitem(self, key)
    ix = _ix(self)
    ix.seq.pop(key, None)
    if not ix.dirty:
        ix.unindex(key)


def _cs_drop(self):
    _orig_drop(self)
    self.__dict__['_rtu_ix'] = StoreIndex()


def _cs_create_index(self, name, index_dict):
    _orig_create_index(self, name, index_dict)
    _ix(self).dirty = True


def _cs_drop_index(self, name):
    _orig_drop_index(self, name)
    _ix(self).dirty = True


def _cs_get_indexes(self):
    return self.__dict__['_rtu_indexes']


def _cs_set_indexes(self, value):
    self.__dict__['_rtu_indexes'] = value
    if '_rtu_ix' in self.__dict__:
        self.__dict__['_rtu_ix'].dirty = True


_CS.__setitem__ = _cs_setitem
_CS.__delitem__ = _cs_delitem
_CS.drop = _cs_drop
_CS.create_index = _cs_create_index
_CS.drop_index = _cs_drop_index
_CS.indexes = property(_cs_get_indexes, _cs_set_indexes)


# -- filter planning ---------------------------------------------------------

def _is_operator_doc(v):
    return isinstance(v, dict) and len(v) > 0 and all(
        isinstance(k, str) and k.startswith('$') for k in v)


def _eq_values(v):
    """Raw values a field must equal (any of), and whether that is all the
    condition says; None when the condition is not an equality."""
    pure = True
    if isinstance(v, dict):
        if _is_operator_doc(v):
            if '$eq' in v:
                vals = [v['$eq']]
            elif '$in' in v and isinstance(v['$in'], (list, tuple)):
                vals = list(v['$in'])
            else:
                return None
            pure = len(v) == 1
        elif any(isinstance(k, str) and k.startswith('$') for k in v):
            return None
        else:
            vals = [v]
    elif isinstance(v, (list, tuple, Regex, re.Pattern)):
        return None
    else:
        vals = [v]
    for x in vals:
        if isinstance(x, (list, tuple, Regex, re.Pattern)) or _is_operator_doc(x):
            return None
    return vals, pure


def _plan(coll, store, filt, depth=0):
    """Candidates for `filt`: {store key: [filters, any of which must match]},
    or None when the filter needs a full scan."""
    if not isinstance(filt, dict) or depth > 8:
        return None
    eq = OrderedDict()
    or_branches = None
    for k, v in filt.items():
        if not isinstance(k, str):
            return None
        if k == '$or':
            if isinstance(v, list) and v:
                or_branches = v
        elif k.startswith('$'):
            continue
        else:
            r = _eq_values(v)
            if r is not None:
                eq[k] = r

    if '_id' in eq:
        vals, pure = eq['_id']
        if pure and not any(isinstance(x, dict) for x in vals):
            residual = OrderedDict((k, v) for k, v in filt.items() if k != '_id')
        else:
            residual = filt
        out = {}
        for x in vals:
            try:
                out[_skey(x)] = [residual]
            except TypeError:
                return None
        return out

    # The most selective of: an index over equality fields, the union of the
    # $or branches' plans (a filter such as {__STATE__: 'PUBLIC', $or: [...]}
    # would otherwise take every PUBLIC document and run the whole $or on each).
    choice = None
    if eq:
        choice = _choose_index(store, eq)
        if choice is not None and (or_branches is None or choice[2] <= len(or_branches)):
            return _lookup(store, filt, eq, choice)

    or_plan = None
    if or_branches is not None:
        or_plan = _or_plan(coll, store, filt, or_branches, depth)

    if eq:
        if choice is None and or_plan is None:
            choice = _choose_index(store, eq, create=True)
        if choice is not None and (or_plan is None or choice[2] < len(or_plan)):
            return _lookup(store, filt, eq, choice)
    if or_plan is not None:
        return or_plan

    if '$and' in filt and isinstance(filt['$and'], list):
        for sub_f in filt['$and']:
            sub = _plan(coll, store, sub_f, depth + 1)
            if sub is not None:
                return {skey: [filt] for skey in sub}
    return None


def _or_plan(coll, store, filt, or_branches, depth):
    rest = OrderedDict((k, v) for k, v in filt.items() if k != '$or')
    out = {}
    for b in or_branches:
        sub = _plan(coll, store, b, depth + 1)
        if sub is None:
            return None
        for skey, alts in sub.items():
            lst = out.setdefault(skey, [])
            for a in alts:
                lst.append({'$and': [rest, a]} if rest else a)
    return out


def _choose_index(store, eq, create=False):
    """(index, key alternatives, candidate count) of the usable index over
    fields of `eq` that gives the fewest candidates; with `create`, an
    automatic index over all of `eq` when no index is usable. None when no
    index can answer."""
    ix = _ready(store)
    best = None
    for d in ix.defs.values():
        if d.usable_for_lookup and all(f in eq for f in d.fields):
            c = _index_count(ix, d, eq)
            if c is not None and (best is None or c[2] < best[2] or (
                    c[2] == best[2] and len(d.fields) > len(best[0].fields))):
                best = c
    if best is None and create:
        best = _index_count(ix, ix.add_auto(store, tuple(sorted(eq))), eq)
    return best


def _index_count(ix, d, eq):
    try:
        alts = [[_hk(x) for x in eq[f][0]] for f in d.fields]
    except Unindexable:
        return None
    size = 1
    for a in alts:
        size *= len(a)
    if size > MAX_KEY_PRODUCT:
        return None
    m = ix.maps[d.name]
    if len(alts) == 1:
        keys = [(k,) for k in alts[0]]
    else:
        keys = list(itertools.product(*alts))
    n = len(ix.fallback[d.name])
    for key in keys:
        s = m.get(key)
        if s:
            n += len(s)
    return d, keys, n


def _lookup(store, filt, eq, choice):
    ix = _ix(store)
    best, keys, _ = choice
    ix.uses += 1
    best.used = ix.uses
    consumed = {f for f in best.fields if eq[f][1]}
    residual = OrderedDict((k, v) for k, v in filt.items() if k not in consumed)
    m = ix.maps[best.name]
    out = {}
    for key in keys:
        for skey in m.get(key, ()):
            out[skey] = [residual]
    for skey in ix.fallback[best.name]:
        out[skey] = [filt]
    return out


_orig_iter_documents = mm_collection.Collection._iter_documents


def _iter_documents(self, filter):
    store = self._store
    if store.is_empty:
        filter_applies(filter, {})
        return iter(())
    plan = _plan(self, store, filter)
    if plan is None:
        return _orig_iter_documents(self, filter)
    docs = store._documents
    seq = _ix(store).seq
    out = []
    for skey in sorted((k for k in plan if k in docs), key=lambda k: seq.get(k, 0)):
        doc = docs[skey]
        for f in plan[skey]:
            if filter_applies(f, doc):
                out.append(doc)
                break
    return iter(out)


def _fmt_value(v):
    if isinstance(v, str):
        return '"%s"' % v.replace('"', '\\"')
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if v is None:
        return 'null'
    if isinstance(v, dict):
        return '{ ' + ', '.join('%s: %s' % (k, _fmt_value(x)) for k, x in v.items()) + ' }'
    if isinstance(v, list):
        return '[ ' + ', '.join(_fmt_value(x) for x in v) + ' ]'
    if isinstance(v, ObjectId):
        return "ObjectId('%s')" % v
    return str(v)


def dup_key_error(coll, index_name, fields, doc):
    key_pattern = SON()
    key_value = SON()
    info = coll._store.indexes.get(index_name)
    for f in fields:
        key_pattern[f] = 1
        if info:
            for k, direction in info['key']:
                if k == f:
                    key_pattern[f] = direction
        try:
            v = mm_helpers.get_value_by_dot(doc, f)
        except (KeyError, IndexError, TypeError):
            v = None
        key_value[f] = v
    msg = 'E11000 duplicate key error collection: %s.%s index: %s dup key: %s' % (
        coll.database.name, coll.name, index_name, _fmt_value(key_value))
    return _dup_error(msg, key_pattern, key_value)


def _dup_error(msg, key_pattern, key_value):
    """A DuplicateKeyError carrying MongoDB's errmsg, keyPattern and keyValue
    (pymongo's own str() would append the details to the message)."""
    exc = mongomock.DuplicateKeyError(msg, 11000)
    exc.rtu_msg = msg
    exc.rtu_extra = OrderedDict([('keyPattern', key_pattern), ('keyValue', key_value)])
    return exc


def _slow_keys(doc, fields):
    vals = []
    for f in fields:
        try:
            v = mm_helpers.get_value_by_dot(doc, f)
        except (KeyError, IndexError, TypeError):
            v = None
        vals.append(v if isinstance(v, list) and v else [v])
    return {tuple(bson.encode({'v': x}) for x in combo)
            for combo in itertools.product(*vals)}


def _ensure_uniques(self, new_data):
    store = self._store
    ix = _ready(store)
    skey = _skey(new_data['_id'])
    ix.reindex(skey, new_data)   # the document may have been changed in place
    for d in ix.defs.values():
        if not d.unique:
            continue
        keys = ix.rev[d.name].get(skey)
        if keys is not None:
            m = ix.maps[d.name]
            for k in keys:
                s = m.get(k, ())
                if len(s) > 1 or (s and skey not in s):
                    raise dup_key_error(self, d.name, d.fields, new_data)
        fb = ix.fallback[d.name]
        if fb and (skey in fb or keys is not None):
            mine = _slow_keys(new_data, d.fields)
            docs = store._documents
            for other in fb:
                if other != skey and other in docs and \
                        mine & _slow_keys(docs[other], d.fields):
                    raise dup_key_error(self, d.name, d.fields, new_data)
            if skey in fb:
                for k2, s in ix.maps[d.name].items():
                    for other in s:
                        if other != skey and mine & _slow_keys(docs[other], d.fields):
                            raise dup_key_error(self, d.name, d.fields, new_data)


mm_collection.Collection._iter_documents = _iter_documents
mm_collection.Collection._ensure_uniques = _ensure_uniques


# ---------------------------------------------------------------------------
# Engine state

CLIENT = mongomock.MongoClient()
LOCK = threading.RLock()
CURSORS = OrderedDict()        # id -> Cursor
_next_cursor = [int.from_bytes(os.urandom(4), 'big') << 16 | 1]
STARTED = time.time()
VERBOSE = False


class Cursor(object):
    __slots__ = ('id', 'ns', 'docs', 'pos', 'touched')

    def __init__(self, cid, ns, docs):
        self.id = cid
        self.ns = ns
        self.docs = docs
        self.pos = 0
        self.touched = time.time()


def _take_batch(docs, pos, limit):
    """Documents from `pos`: at most `limit` (0 = no count limit) and about
    16 MiB; at least one."""
    out = []
    size = 0
    n = len(docs)
    while pos < n and (limit <= 0 or len(out) < limit):
        doc = docs[pos]
        s = len(bson.encode(doc))
        if out and size + s > BATCH_BYTES:
            break
        out.append(doc)
        size += s
        pos += 1
    return out, pos


def cursor_reply(ns, docs, batch_size, single_batch=False):
    """Reply {cursor: {firstBatch, id, ns}}; keeps a cursor for the rest."""
    now = time.time()
    for cid in [c for c, cur in CURSORS.items() if now - cur.touched > CURSOR_IDLE_SECONDS]:
        del CURSORS[cid]
    first = batch_size if batch_size else 101
    batch, pos = _take_batch(docs, 0, first)
    cid = 0
    if pos < len(docs) and not single_batch:
        _next_cursor[0] += 1
        cid = _next_cursor[0]
        cur = Cursor(cid, ns, docs)
        cur.pos = pos
        CURSORS[cid] = cur
    return OrderedDict([('cursor', OrderedDict([
        ('firstBatch', batch), ('id', Int64(cid)), ('ns', ns)])), ('ok', 1.0)])


# ---------------------------------------------------------------------------
# Helpers

def _coll_name(cmd, name):
    v = cmd.get(name)
    if not isinstance(v, str) or not v:
        raise CommandError(73, "Invalid namespace specified '%r'" % (v,))
    return v


def _exists(db, name):
    return name in db.list_collection_names()


def _int_opt(cmd, name, default=0):
    v = cmd.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CommandError(14, "BSON field '%s' is the wrong type" % name)
    return int(v)


def _error_entry(index, exc):
    """writeErrors entry for an exception raised while applying one op."""
    code, msg, extra = _exc_code(exc)
    e = OrderedDict([('index', index), ('code', code)])
    if code in CODE_NAMES:
        e['codeName'] = CODE_NAMES[code]
    e['errmsg'] = msg
    e.update(extra)
    return e


def _exc_code(exc):
    if isinstance(exc, CommandError):
        return exc.code, exc.errmsg, exc.extra
    if isinstance(exc, mongomock.DuplicateKeyError):
        return 11000, getattr(exc, 'rtu_msg', str(exc)), getattr(exc, 'rtu_extra', {})
    if isinstance(exc, mongomock.OperationFailure):
        code = getattr(exc, 'code', None) or 2
        msg = str(exc)
        if 'cannot be changed' in msg or 'immutable' in msg:
            code = 66
        return code, msg, {}
    if isinstance(exc, bson.errors.InvalidDocument):
        return 52, str(exc), {}
    if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)):
        return 2, '%s: %s' % (type(exc).__name__, exc), {}
    if isinstance(exc, NotImplementedError):
        return 238, 'not supported by mongo-test-server: %s' % exc, {}
    return 1, '%s: %s' % (type(exc).__name__, exc), {}


UPDATE_OPERATORS = {'$set', '$unset', '$inc', '$mul', '$min', '$max', '$rename',
                    '$setOnInsert', '$currentDate', '$addToSet', '$pop', '$pull',
                    '$pullAll', '$push'}

_POS_RE = re.compile(r'^\$\[([a-z][A-Za-z0-9]*)?\]$')


def _check_update_doc(u, multi):
    if not isinstance(u, dict):
        raise CommandError(9, 'Update argument must be either an object or an array')
    keys = list(u.keys())
    ops = [k for k in keys if k.startswith('$')]
    if ops and len(ops) != len(keys):
        raise CommandError(9, "Unknown modifier: %s. Expected a valid update modifier "
                              "or pipeline-style update specified as an array" %
                              [k for k in keys if not k.startswith('$')][0])
    for op in ops:
        if op == '$bit':
            raise CommandError(238, '$bit is not supported by mongo-test-server')
        if op not in UPDATE_OPERATORS:
            raise CommandError(9, 'Unknown modifier: %s. Expected a valid update modifier '
                                  'or pipeline-style update specified as an array' % op)
        if not isinstance(u[op], dict):
            raise CommandError(9, 'Modifiers operate on fields but we found type %s '
                                  'instead' % type(u[op]).__name__)
    if not ops and multi:
        raise CommandError(9, 'multi update is not supported for replacement-style update')
    return bool(ops)


def _array_filter_map(array_filters):
    out = {}
    for f in array_filters or []:
        if not isinstance(f, dict) or not f:
            raise CommandError(9, 'Cannot use an expression without a top-level field name in arrayFilters')
        idents = {k.split('.', 1)[0] for k in f}
        if len(idents) != 1:
            raise CommandError(9, 'Error parsing array filter: Expected a single top-level field name, found %s' % sorted(idents))
        ident = idents.pop()
        if ident in out:
            raise CommandError(9, "Found multiple array filters with the same top-level field name %s" % ident)
        out[ident] = f
    return out


def _expand_path(doc, path, filters, used):
    parts = path.split('.')
    out = []

    def has_pos(i):
        return any(_POS_RE.match(p) for p in parts[i:])

    def must_exist(prefix):
        raise CommandError(2, "The path '%s' must exist in the document in order to "
                              "apply array updates." % '.'.join(prefix))

    def rec(node, i, prefix):
        if i == len(parts):
            out.append('.'.join(prefix))
            return
        part = parts[i]
        m = _POS_RE.match(part)
        if m:
            if not isinstance(node, list):
                must_exist(prefix)
            ident = m.group(1)
            if ident is not None:
                used.add(ident)
            for idx, el in enumerate(node):
                if ident is None or filter_applies(filters[ident], {ident: el}):
                    rec(el, i + 1, prefix + [str(idx)])
            return
        if not has_pos(i):
            out.append('.'.join(prefix + parts[i:]))
            return
        if isinstance(node, dict) and part in node:
            nxt = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            nxt = node[int(part)]
        else:
            must_exist(prefix + [part])
        rec(nxt, i + 1, prefix + [part])

    rec(doc, 0, [])
    return out


def _expand_update(doc, u, filters):
    used = set()
    new_u = OrderedDict()
    for op, fields in u.items():
        nf = OrderedDict()
        for path, val in fields.items():
            if '$[' in path:
                for p in _expand_path(doc, path, filters, used):
                    nf[p] = val
            else:
                nf[path] = val
        new_u[op] = nf
    return new_u, used


def _check_array_filters_used(u, filters):
    idents = set()
    for fields in u.values():
        for path in fields:
            for part in path.split('.'):
                m = _POS_RE.match(part)
                if m and m.group(1):
                    idents.add(m.group(1))
    for ident in idents:
        if ident not in filters:
            raise CommandError(2, "No array filter found for identifier '%s'" % ident)
    for ident in filters:
        if ident not in idents:
            raise CommandError(9, "The array filter for identifier '%s' was not used in "
                                  "the update" % ident)


def _upsert_base(coll, q):
    base = coll._expand_dots(copy.deepcopy(dict(q)))
    base, _ = coll._discard_operators(base)
    return base if isinstance(base, dict) else {}


def apply_update(coll, q, u, upsert=False, multi=False, array_filters=None):
    """One update statement. Returns (n, nModified, upserted_id or None)."""
    if not isinstance(q, dict):
        raise CommandError(9, 'query must be an object')
    if isinstance(u, list):
        return _pipeline_update(coll, q, u, upsert, multi)
    is_ops = _check_update_doc(u, multi)
    if array_filters and not is_ops:
        raise CommandError(9, 'arrayFilters may not be specified for replacement-style updates')
    if array_filters or (is_ops and any('$[' in path for fields in u.values()
                                        for path in fields)):
        filters = _array_filter_map(array_filters)
        _check_array_filters_used(u, filters)
        matched = list(coll._iter_documents(q))
        if not multi:
            matched = matched[:1]
        if not matched:
            if not upsert:
                return 0, 0, None
            _expand_update(_upsert_base(coll, q), u, filters)   # path checks
            r = coll._update(q, u, upsert=True)
            return r['n'], 0, r['upserted']
        n_mod = 0
        for doc in matched:
            new_u, _ = _expand_update(doc, u, filters)
            new_u = _fast_deepcopy(new_u)    # no value shared between documents
            spec = OrderedDict(q)
            spec['_id'] = doc['_id']
            r = coll._update(spec, new_u)
            n_mod += r['nModified']
        return len(matched), n_mod, None
    r = coll._update(q, u, upsert=upsert, multi=multi)
    return r['n'], r['nModified'], r['upserted']


def _pipeline_update(coll, q, pipeline, upsert, multi):
    for stage in pipeline:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise CommandError(9, 'invalid pipeline stage in update')
        (name,) = stage.keys()
        if name not in ('$addFields', '$set', '$project', '$unset', '$replaceRoot',
                        '$replaceWith'):
            raise CommandError(72, '%s is not allowed to be used within an update' % name)
    matched = list(coll._iter_documents(q))
    if not multi:
        matched = matched[:1]

    def run(doc):
        res = list(mm_aggregate.process_pipeline([copy.deepcopy(doc)], coll.database,
                                                 pipeline, None))
        if len(res) != 1:
            raise CommandError(2, 'update pipeline did not produce one document')
        return OrderedDict(res[0])

    if not matched:
        if not upsert:
            return 0, 0, None
        new = run(_upsert_base(coll, q))
        if '_id' not in new:
            new['_id'] = ObjectId()
        coll.insert_one(new)
        return 1, 0, new['_id']
    n_mod = 0
    for doc in matched:
        new = run(doc)
        if new.get('_id', doc['_id']) != doc['_id']:
            raise CommandError(66, "Performing an update on the path '_id' would modify the "
                                   "immutable field '_id'")
        new.pop('_id', None)
        r = coll._update({'_id': doc['_id']}, new)
        n_mod += r['nModified']
    return len(matched), n_mod, None


def find_docs(coll, filt, projection=None, sort=None, skip=0, limit=0):
    if filt is None:
        filt = {}
    if not isinstance(filt, dict):
        raise CommandError(14, "BSON field 'filter' is the wrong type, expected object")
    if projection is not None and not isinstance(projection, dict):
        raise CommandError(14, "BSON field 'projection' is the wrong type, expected object")
    cur = coll.find(filt, projection=projection or None)
    if sort:
        if not isinstance(sort, dict):
            raise CommandError(14, "BSON field 'sort' is the wrong type, expected object")
        cur = cur.sort(list(sort.items()))
    if skip:
        if skip < 0:
            raise CommandError(2, 'skip value must be non-negative')
        cur = cur.skip(skip)
    if limit:
        cur = cur.limit(abs(limit))
    return list(cur)


def _ns(db, coll):
    return '%s.%s' % (db, coll)


# ---------------------------------------------------------------------------
# Commands: each takes (db_name, cmd) and returns the reply document.

def cmd_hello(dbname, cmd, conn_id=0, legacy_name=False):
    r = OrderedDict()
    r['helloOk'] = True
    if legacy_name:
        r['ismaster'] = True
    else:
        r['isWritablePrimary'] = True
        r['ismaster'] = True
    r['maxBsonObjectSize'] = MAX_BSON
    r['maxMessageSizeBytes'] = MAX_MESSAGE
    r['maxWriteBatchSize'] = MAX_BATCH
    r['localTime'] = datetime.datetime.utcnow()
    r['logicalSessionTimeoutMinutes'] = 30
    r['connectionId'] = conn_id
    r['minWireVersion'] = 0
    r['maxWireVersion'] = WIRE_VERSION
    r['readOnly'] = False
    r['ok'] = 1.0
    return r


def cmd_ping(dbname, cmd):
    return {'ok': 1.0}


def cmd_build_info(dbname, cmd):
    return OrderedDict([
        ('version', SERVER_VERSION), ('gitVersion', 'mongo-test-server'),
        ('modules', []), ('allocator', 'system'), ('javascriptEngine', 'none'),
        ('sysInfo', 'deprecated'), ('versionArray', [5, 0, 0, 0]),
        ('bits', 64), ('debug', False), ('maxBsonObjectSize', MAX_BSON),
        ('storageEngines', ['mongomock']), ('ok', 1.0)])


def cmd_get_parameter(dbname, cmd):
    known = OrderedDict([
        ('featureCompatibilityVersion', OrderedDict([('version', '5.0')])),
        ('authenticationMechanisms', []),
        ('transactionLifetimeLimitSeconds', 60),
    ])
    r = OrderedDict()
    what = cmd.get('getParameter')
    if what == '*' or (isinstance(what, dict) and what.get('allParameters')):
        r.update(known)
    else:
        for k in cmd:
            if k in known:
                r[k] = known[k]
    r['ok'] = 1.0
    return r


def cmd_server_status(dbname, cmd):
    return OrderedDict([
        ('host', socket.gethostname()), ('version', SERVER_VERSION),
        ('process', 'mongo-test-server'), ('pid', Int64(os.getpid())),
        ('uptime', float(time.time() - STARTED)),
        ('localTime', datetime.datetime.utcnow()), ('ok', 1.0)])


def cmd_ok(dbname, cmd):
    return {'ok': 1.0}


def cmd_insert(dbname, cmd):
    name = _coll_name(cmd, 'insert')
    docs = cmd.get('documents') or []
    ordered = cmd.get('ordered', True)
    coll = CLIENT[dbname][name]
    n = 0
    errors = []
    for i, doc in enumerate(docs):
        try:
            if not isinstance(doc, dict):
                raise CommandError(14, 'document is not an object')
            if '_id' not in doc:
                # like mongod: _id first
                d2 = OrderedDict([('_id', ObjectId())])
                d2.update(doc)
                doc = d2
            elif isinstance(doc.get('_id'), (list, Regex, re.Pattern)):
                raise CommandError(2, "can't use an array for _id")
            skey = _skey(doc['_id'])
            if skey in coll._store:
                raise _dup_error(
                    'E11000 duplicate key error collection: %s.%s index: _id_ dup key: '
                    '{ _id: %s }' % (dbname, name, _fmt_value(doc['_id'])),
                    {'_id': 1}, {'_id': doc['_id']})
            coll.insert_one(doc)
            n += 1
        except Exception as exc:  # noqa: BLE001 - becomes a writeErrors entry
            errors.append(_error_entry(i, exc))
            if ordered:
                break
    r = OrderedDict([('n', n)])
    if errors:
        r['writeErrors'] = errors
    r['ok'] = 1.0
    return r


def _fix_dup_id_error(exc, dbname, name, q):
    """mongomock's own _id collision message lacks the index name."""
    if isinstance(exc, mongomock.DuplicateKeyError) and 'index:' not in str(exc):
        _id = q.get('_id') if isinstance(q, dict) else None
        return _dup_error(
            'E11000 duplicate key error collection: %s.%s index: _id_ dup key: '
            '{ _id: %s }' % (dbname, name, _fmt_value(_id)), {'_id': 1}, {'_id': _id})
    return exc


def cmd_update(dbname, cmd):
    name = _coll_name(cmd, 'update')
    ops = cmd.get('updates') or []
    ordered = cmd.get('ordered', True)
    coll = CLIENT[dbname][name]
    n = n_mod = 0
    upserted = []
    errors = []
    for i, op in enumerate(ops):
        try:
            if not isinstance(op, dict) or 'q' not in op or 'u' not in op:
                raise CommandError(9, "update statement needs 'q' and 'u'")
            if op.get('collation'):
                pass  # ignored: simple binary comparison only
            n1, m1, up = apply_update(coll, op['q'], op['u'], bool(op.get('upsert')),
                                      bool(op.get('multi')), op.get('arrayFilters'))
            n += n1
            n_mod += m1
            if up is not None:
                upserted.append(OrderedDict([('index', i), ('_id', up)]))
        except Exception as exc:  # noqa: BLE001
            exc = _fix_dup_id_error(exc, dbname, name, op.get('q') if isinstance(op, dict) else None)
            errors.append(_error_entry(i, exc))
            if ordered:
                break
    r = OrderedDict([('n', n), ('nModified', n_mod)])
    if upserted:
        r['upserted'] = upserted
    if errors:
        r['writeErrors'] = errors
    r['ok'] = 1.0
    return r


def cmd_delete(dbname, cmd):
    name = _coll_name(cmd, 'delete')
    ops = cmd.get('deletes') or []
    ordered = cmd.get('ordered', True)
    coll = CLIENT[dbname][name]
    n = 0
    errors = []
    for i, op in enumerate(ops):
        try:
            if not isinstance(op, dict) or 'q' not in op:
                raise CommandError(9, "delete statement needs 'q'")
            limit = op.get('limit', 0)
            if limit not in (0, 1):
                raise CommandError(9, 'The limit field in delete objects must be 0 or 1')
            if not isinstance(op['q'], dict):
                raise CommandError(14, 'q must be an object')
            n += coll._delete(op['q'], multi=(limit == 0))['n']
        except Exception as exc:  # noqa: BLE001
            errors.append(_error_entry(i, exc))
            if ordered:
                break
    r = OrderedDict([('n', n)])
    if errors:
        r['writeErrors'] = errors
    r['ok'] = 1.0
    return r


def cmd_find(dbname, cmd):
    name = _coll_name(cmd, 'find')
    coll = CLIENT[dbname][name]
    limit = _int_opt(cmd, 'limit')
    batch = _int_opt(cmd, 'batchSize')
    if batch < 0:
        raise CommandError(2, 'batchSize must be non-negative')
    docs = find_docs(coll, cmd.get('filter'), cmd.get('projection'), cmd.get('sort'),
                     _int_opt(cmd, 'skip'), limit)
    single = bool(cmd.get('singleBatch')) or limit < 0
    if single and limit:
        batch = abs(limit)
    return cursor_reply(_ns(dbname, name), docs, batch, single)


def cmd_get_more(dbname, cmd):
    cid = cmd.get('getMore')
    name = _coll_name(cmd, 'collection')
    cur = CURSORS.get(int(cid) if isinstance(cid, int) else None)
    if cur is None or cur.ns != _ns(dbname, name):
        raise CommandError(43, 'cursor id %s not found' % cid)
    batch = _int_opt(cmd, 'batchSize')
    docs, cur.pos = _take_batch(cur.docs, cur.pos, batch)
    cur.touched = time.time()
    out_id = cur.id
    if cur.pos >= len(cur.docs):
        del CURSORS[cur.id]
        out_id = 0
    return OrderedDict([('cursor', OrderedDict([
        ('nextBatch', docs), ('id', Int64(out_id)), ('ns', cur.ns)])), ('ok', 1.0)])


def cmd_kill_cursors(dbname, cmd):
    killed, not_found = [], []
    for cid in cmd.get('cursors') or []:
        if CURSORS.pop(int(cid), None) is not None:
            killed.append(Int64(cid))
        else:
            not_found.append(Int64(cid))
    return OrderedDict([('cursorsKilled', killed), ('cursorsNotFound', not_found),
                        ('cursorsAlive', []), ('cursorsUnknown', []), ('ok', 1.0)])


def _project_one(coll, doc, fields):
    if doc is None or not fields:
        return doc
    scratch = mongomock.MongoClient()['p']['p']
    scratch.insert_one(copy.deepcopy(doc))
    return next(iter(scratch.find({}, projection=fields)), None)


def cmd_find_and_modify(dbname, cmd):
    name = _coll_name(cmd, 'findAndModify' if 'findAndModify' in cmd else 'findandmodify')
    coll = CLIENT[dbname][name]
    query = cmd.get('query') or {}
    sort = cmd.get('sort')
    remove = bool(cmd.get('remove'))
    update = cmd.get('update')
    new = bool(cmd.get('new'))
    upsert = bool(cmd.get('upsert'))
    fields = cmd.get('fields')
    if remove and update is not None:
        raise CommandError(9, 'Cannot specify both an update and remove=true')
    if not remove and update is None:
        raise CommandError(9, 'Either an update or remove=true must be specified')
    if remove and (new or upsert):
        raise CommandError(9, 'Cannot specify both new=true and remove=true; '
                              'or upsert=true and remove=true')
    found = find_docs(coll, query, None, sort, 0, 1)
    leo = OrderedDict()
    value = None
    try:
        if found:
            old = found[0]
            if remove:
                coll._delete({'_id': old['_id']}, multi=False)
                value = old
                leo['n'] = 1
            else:
                spec = OrderedDict(query)
                spec['_id'] = old['_id']
                apply_update(coll, spec, update, False, False, cmd.get('arrayFilters'))
                leo['n'] = 1
                leo['updatedExisting'] = True
                value = find_docs(coll, {'_id': old['_id']})[0] if new else old
        elif upsert:
            n1, _, up = apply_update(coll, query, update, True, False, cmd.get('arrayFilters'))
            leo['n'] = 1
            leo['updatedExisting'] = False
            leo['upserted'] = up
            value = find_docs(coll, {'_id': up})[0] if new else None
        else:
            leo['n'] = 0
            if not remove:
                leo['updatedExisting'] = False
    except Exception as exc:  # noqa: BLE001
        exc = _fix_dup_id_error(exc, dbname, name, query)
        code, msg, extra = _exc_code(exc)
        raise CommandError(code, msg, **extra)
    return OrderedDict([('lastErrorObject', leo), ('value', _project_one(coll, value, fields)),
                        ('ok', 1.0)])


def cmd_aggregate(dbname, cmd):
    target = cmd.get('aggregate')
    pipeline = cmd.get('pipeline')
    if not isinstance(pipeline, list):
        raise CommandError(14, "'pipeline' option must be specified as an array")
    if not isinstance(target, str):
        raise CommandError(115, 'collection-less aggregate is not supported by mongo-test-server')
    if 'cursor' not in cmd and not cmd.get('explain'):
        raise CommandError(9, "The 'cursor' option is required, except for aggregate with the "
                              "explain argument")
    coll = CLIENT[dbname][target]
    rest = pipeline
    if pipeline and isinstance(pipeline[0], dict) and list(pipeline[0].keys()) == ['$match']:
        docs = find_docs(coll, pipeline[0]['$match'])
        rest = pipeline[1:]
    else:
        docs = find_docs(coll, {})
    result = list(mm_aggregate.process_pipeline(docs, coll.database, rest, None))
    if cmd.get('explain'):
        return OrderedDict([('stages', []), ('ok', 1.0)])
    batch = _int_opt(cmd.get('cursor') or {}, 'batchSize')
    return cursor_reply(_ns(dbname, target), result, batch)


def cmd_count(dbname, cmd):
    name = _coll_name(cmd, 'count')
    coll = CLIENT[dbname][name]
    q = cmd.get('query') or {}
    n = len(list(coll._iter_documents(q))) if q else len(coll._store)
    n = max(0, n - _int_opt(cmd, 'skip'))
    limit = abs(_int_opt(cmd, 'limit'))
    if limit:
        n = min(n, limit)
    return OrderedDict([('n', n), ('ok', 1.0)])


def cmd_distinct(dbname, cmd):
    name = _coll_name(cmd, 'distinct')
    key = cmd.get('key')
    if not isinstance(key, str):
        raise CommandError(14, "BSON field 'distinct.key' is the wrong type")
    coll = CLIENT[dbname][name]
    values = coll.distinct(key, cmd.get('query') or None)
    return OrderedDict([('values', list(values)), ('ok', 1.0)])


def _index_doc(name, info):
    d = OrderedDict([('v', 2), ('key', SON(info['key'])), ('name', name)])
    for k, v in info.items():
        if k != 'key':
            d[k] = v
    return d


def cmd_create_indexes(dbname, cmd):
    name = _coll_name(cmd, 'createIndexes')
    specs = cmd.get('indexes')
    if not isinstance(specs, list) or not specs:
        raise CommandError(2, "Must specify at least one index to create")
    db = CLIENT[dbname]
    created_coll = not _exists(db, name)
    coll = db[name]
    store = coll._store
    before = 1 + len(store.indexes)
    note = None
    for spec in specs:
        key = spec.get('key')
        if not isinstance(key, dict) or not key:
            raise CommandError(67, "The 'key' field must be a non-empty object")
        key_list = [(k, v) for k, v in key.items()]
        iname = spec.get('name') or mm_helpers.gen_index_name(key_list)
        if key_list == [('_id', 1)] or iname == '_id_':
            note = 'all indexes already exist'
            continue
        info = OrderedDict([('key', key_list)])
        for opt in ('unique', 'sparse'):
            if spec.get(opt):
                info[opt] = True
        for opt in ('partialFilterExpression', 'expireAfterSeconds', 'collation',
                    'hidden', 'weights', 'default_language', 'language_override'):
            if opt in spec:
                info[opt] = spec[opt]
        existing = store.indexes.get(iname)
        if existing is not None:
            if list(existing['key']) != key_list:
                raise CommandError(86, "An existing index has the same name as the requested "
                                       "index. Requested index: %s, existing index: %s" %
                                   (dict(spec), _index_doc(iname, existing)))
            if dict(existing) != dict(info):
                raise CommandError(85, 'Index with name: %s already exists with different '
                                       'options' % iname)
            note = 'all indexes already exist'
            continue
        for other, oinfo in store.indexes.items():
            if list(oinfo['key']) == key_list:
                raise CommandError(85, 'Index already exists with a different name: %s' % other)
        # check existing documents before accepting a unique index
        if info.get('unique'):
            d = IndexDef(iname, [k for k, _ in key_list], True, bool(info.get('sparse')),
                         info.get('partialFilterExpression'))
            tmp = StoreIndex()
            tmp.defs = OrderedDict([(iname, d)])
            tmp.maps = {iname: {}}
            tmp.rev = {iname: {}}
            tmp.fallback = {iname: set()}
            for skey, doc in store._documents.items():
                tmp._add(d, skey, doc)
                for k in tmp.rev[iname].get(skey, ()):
                    if len(tmp.maps[iname][k]) > 1:
                        exc = dup_key_error(coll, iname, d.fields, doc)
                        raise CommandError(11000, exc.rtu_msg, **exc.rtu_extra)
        store.create_index(iname, info)
    if created_coll:
        store.create()
    r = OrderedDict([('createdCollectionAutomatically', created_coll),
                     ('numIndexesBefore', before), ('numIndexesAfter', 1 + len(store.indexes))])
    if note and before == 1 + len(store.indexes):
        r['note'] = note
    r['ok'] = 1.0
    return r


def cmd_list_indexes(dbname, cmd):
    name = _coll_name(cmd, 'listIndexes')
    db = CLIENT[dbname]
    if not _exists(db, name):
        raise CommandError(26, 'ns does not exist: %s' % _ns(dbname, name))
    store = db[name]._store
    docs = [OrderedDict([('v', 2), ('key', SON([('_id', 1)])), ('name', '_id_')])]
    docs += [_index_doc(n, info) for n, info in store.indexes.items()]
    batch = _int_opt(cmd.get('cursor') or {}, 'batchSize')
    return cursor_reply(_ns(dbname, name), docs, batch)


def cmd_drop_indexes(dbname, cmd):
    name = _coll_name(cmd, 'dropIndexes' if 'dropIndexes' in cmd else 'deleteIndexes')
    db = CLIENT[dbname]
    if not _exists(db, name):
        raise CommandError(26, 'ns not found %s' % _ns(dbname, name))
    store = db[name]._store
    was = 1 + len(store.indexes)
    which = cmd.get('index')
    if which == '*':
        for n in list(store.indexes):
            store.drop_index(n)
    else:
        names = which if isinstance(which, list) else [which]
        resolved = []
        for w in names:
            if isinstance(w, dict):
                kl = list(w.items())
                hit = [n for n, info in store.indexes.items() if list(info['key']) == kl]
                if kl == [('_id', 1)]:
                    raise CommandError(72, 'cannot drop _id index')
                if not hit:
                    raise CommandError(27, "can't find index with key: %s" % _fmt_value(dict(w)))
                resolved.append(hit[0])
            elif w == '_id_':
                raise CommandError(72, 'cannot drop _id index')
            elif w in store.indexes:
                resolved.append(w)
            else:
                raise CommandError(27, 'index not found with name [%s]' % w)
        for n in resolved:
            store.drop_index(n)
    return OrderedDict([('nIndexesWas', was), ('ok', 1.0)])


def cmd_create(dbname, cmd):
    name = _coll_name(cmd, 'create')
    db = CLIENT[dbname]
    if _exists(db, name):
        raise CommandError(48, 'Collection %s already exists. NS: %s' % (name, _ns(dbname, name)))
    db.create_collection(name)
    return {'ok': 1.0}


def cmd_drop(dbname, cmd):
    name = _coll_name(cmd, 'drop')
    db = CLIENT[dbname]
    if not _exists(db, name):
        raise CommandError(26, 'ns not found')
    was = 1 + len(db[name]._store.indexes)
    db.drop_collection(name)
    for cid in [c for c, cur in CURSORS.items() if cur.ns == _ns(dbname, name)]:
        del CURSORS[cid]
    return OrderedDict([('nIndexesWas', was), ('ns', _ns(dbname, name)), ('ok', 1.0)])


def cmd_drop_database(dbname, cmd):
    CLIENT.drop_database(dbname)
    return OrderedDict([('dropped', dbname), ('ok', 1.0)])


def cmd_rename_collection(dbname, cmd):
    src = cmd.get('renameCollection')
    dst = cmd.get('to')
    if not isinstance(src, str) or not isinstance(dst, str) or '.' not in src or '.' not in dst:
        raise CommandError(73, 'Invalid namespace')
    sdb, sname = src.split('.', 1)
    ddb, dname = dst.split('.', 1)
    if sdb != ddb:
        raise CommandError(115, 'renaming across databases is not supported by mongo-test-server')
    db = CLIENT[sdb]
    if not _exists(db, sname):
        raise CommandError(26, 'Source collection %s does not exist' % src)
    if _exists(db, dname):
        if not cmd.get('dropTarget'):
            raise CommandError(48, 'target namespace exists')
        db.drop_collection(dname)
    db.rename_collection(sname, dname)
    return {'ok': 1.0}


def cmd_list_collections(dbname, cmd):
    db = CLIENT[dbname]
    flt = cmd.get('filter') or {}
    name_only = bool(cmd.get('nameOnly'))
    docs = []
    for name in sorted(db.list_collection_names()):
        if name_only:
            d = OrderedDict([('name', name), ('type', 'collection')])
        else:
            d = OrderedDict([
                ('name', name), ('type', 'collection'), ('options', OrderedDict()),
                ('info', OrderedDict([('readOnly', False)])),
                ('idIndex', OrderedDict([('v', 2), ('key', SON([('_id', 1)])),
                                         ('name', '_id_')]))])
        if not flt or filter_applies(flt, d):
            docs.append(d)
    batch = _int_opt(cmd.get('cursor') or {}, 'batchSize')
    return cursor_reply(_ns(dbname, '$cmd.listCollections'), docs, batch)


def cmd_list_databases(dbname, cmd):
    names = sorted(CLIENT.list_database_names())
    dbs = []
    for n in names:
        d = OrderedDict([('name', n), ('sizeOnDisk', 1.0), ('empty', False)])
        if cmd.get('filter') and not filter_applies(cmd['filter'], d):
            continue
        dbs.append(d if not cmd.get('nameOnly') else OrderedDict([('name', n)]))
    return OrderedDict([('databases', dbs), ('totalSize', float(len(dbs))), ('ok', 1.0)])


def cmd_transactions(dbname, cmd):
    raise CommandError(20, 'Transaction numbers are only allowed on a replica set member '
                           'or mongos')


COMMANDS = {
    'ping': cmd_ping,
    'buildinfo': cmd_build_info,
    'getparameter': cmd_get_parameter,
    'serverstatus': cmd_server_status,
    'insert': cmd_insert,
    'update': cmd_update,
    'delete': cmd_delete,
    'find': cmd_find,
    'getmore': cmd_get_more,
    'killcursors': cmd_kill_cursors,
    'findandmodify': cmd_find_and_modify,
    'aggregate': cmd_aggregate,
    'count': cmd_count,
    'distinct': cmd_distinct,
    'createindexes': cmd_create_indexes,
    'listindexes': cmd_list_indexes,
    'dropindexes': cmd_drop_indexes,
    'deleteindexes': cmd_drop_indexes,
    'create': cmd_create,
    'drop': cmd_drop,
    'dropdatabase': cmd_drop_database,
    'renamecollection': cmd_rename_collection,
    'listcollections': cmd_list_collections,
    'listdatabases': cmd_list_databases,
    'endsessions': cmd_ok,
    'killallsessions': cmd_ok,
    'killsessions': cmd_ok,
    'refreshsessions': cmd_ok,
    'startsession': cmd_ok,
    'committransaction': cmd_transactions,
    'aborttransaction': cmd_transactions,
}


# ---------------------------------------------------------------------------
# Request handling (mockupdb autoresponder catching every request)

def error_reply(code, errmsg, extra=None):
    r = OrderedDict([('ok', 0.0), ('errmsg', errmsg), ('code', code),
                     ('codeName', CODE_NAMES.get(code, 'UnknownError'))])
    if extra:
        r.update(extra)
    return r


# Command counts per client application, read and reset by tools/bench with the
# admin command {rtuTestStats: 1, reset: true}: rtu logs nothing per message, so
# the server is where its commands can be counted exactly. A connection is named
# by the appName of its handshake (rtu sends "rtu"); finds are split into the
# key reads of a run and everything else (strategy lookups), see _find_kind.
APP_BY_PORT = {}
STATS = collections.Counter()


def _find_kind(cmd):
    """'keyread' for the read of the stored records of a run (store.c
    rtu_store_find_keys: {pk: {$in: [n keys]}} or {$or: [n keys]}, batchSize
    n + 1, no other option), 'lookup' for any other find."""
    flt = cmd.get('filter') or {}
    bs = cmd.get('batchSize')
    if not isinstance(bs, int) or len(flt) != 1 or any(
            o in cmd for o in ('limit', 'sort', 'projection', 'skip', 'singleBatch')):
        return 'lookup'
    (field, cond), = flt.items()
    if field == '$or' and isinstance(cond, list):
        n = len(cond)
    elif isinstance(cond, dict) and list(cond) == ['$in'] and isinstance(cond['$in'], list):
        n = len(cond['$in'])
    else:
        return 'lookup'
    return 'keyread' if bs == n + 1 or (n >= 100000 and bs == 100000) else 'lookup'


def cmd_rtu_test_stats(dbname, cmd):
    apps = OrderedDict()
    for (app, name), n in sorted(STATS.items()):
        apps.setdefault(app, OrderedDict())[name] = n
    if cmd.get('reset'):
        STATS.clear()
    return OrderedDict([('apps', apps), ('ok', 1.0)])


COMMANDS['rtuteststats'] = cmd_rtu_test_stats


# MongoDB's failCommand fail point, the part tests use: {configureFailPoint:
# "failCommand", mode: "alwaysOn" | {times: n} | "off", data: {failCommands:
# [names], errorCode: code, appName: name (optional)}}: the named commands of
# that client answer {ok: 0, code} instead of running, e.g. an Unauthorized
# (13) no test server can produce otherwise.
FAIL_POINT = {}


def cmd_configure_fail_point(dbname, cmd):
    if cmd.get('configureFailPoint') != 'failCommand':
        raise CommandError(2, 'only the failCommand fail point is supported')
    mode = cmd.get('mode')
    FAIL_POINT.clear()
    if mode == 'off':
        return OrderedDict([('ok', 1.0)])
    data = cmd.get('data') or {}
    if mode == 'alwaysOn':
        times = None
    elif isinstance(mode, dict) and isinstance(mode.get('times'), int):
        times = mode['times']
    else:
        raise CommandError(2, 'mode must be "alwaysOn", {times: n} or "off"')
    FAIL_POINT.update(times=times, code=int(data.get('errorCode', 8)),
                      commands={c.lower() for c in data.get('failCommands', [])},
                      app=data.get('appName'))
    return OrderedDict([('ok', 1.0)])


COMMANDS['configurefailpoint'] = cmd_configure_fail_point


def _fail_point(request, lname):
    """The error reply the fail point gives this command, or None."""
    if not FAIL_POINT or lname not in FAIL_POINT['commands']:
        return None
    app = FAIL_POINT['app']
    if app is not None and APP_BY_PORT.get(getattr(request, 'client_port', None)) != app:
        return None
    code = FAIL_POINT['code']
    if FAIL_POINT['times'] is not None:
        FAIL_POINT['times'] -= 1
        if FAIL_POINT['times'] <= 0:
            FAIL_POINT.clear()
    return error_reply(code, "Failing command via 'failCommand' failpoint")


def _count(request, cmd, lname):
    port = getattr(request, 'client_port', None)
    if lname in ('hello', 'ismaster'):
        app = ((cmd.get('client') or {}).get('application') or {}).get('name')
        if app is not None:
            APP_BY_PORT[port] = app
    elif lname == 'rtuteststats':
        return
    if lname == 'find':
        lname = 'find.' + _find_kind(cmd)
    STATS[(APP_BY_PORT.get(port, ''), lname)] += 1


def dispatch(request):
    if isinstance(request, mockupdb.OpMsg):
        cmd = request.doc
        dbname = cmd.get('$db') or request.namespace or 'admin'
    elif isinstance(request, mockupdb.Command):
        cmd = request.doc
        if '$query' in cmd:
            cmd = cmd['$query']
        dbname = request.namespace or 'admin'
    else:
        return None
    if not cmd:
        return error_reply(59, 'empty command')
    name = next(iter(cmd))
    lname = name.lower()
    _count(request, cmd, lname)
    if lname in ('hello', 'ismaster'):
        return cmd_hello(dbname, cmd, request.client_port, legacy_name=(lname == 'ismaster'))
    failed = _fail_point(request, lname)
    if failed is not None:
        return failed
    if 'txnNumber' in cmd or cmd.get('startTransaction'):
        return cmd_transactions(dbname, cmd)
    fn = COMMANDS.get(lname)
    if fn is None:
        return error_reply(59, "no such command: '%s'" % name)
    return fn(dbname, cmd)


def _gc_freeze():
    """Move every object that survived a command (the stored documents, for
    the most part) out of the cyclic garbage collector's generations: its
    collections would otherwise walk all documents again and again, more as
    the collections grow (a fifth of the server's time on 100,000 food
    messages). The documents are plain acyclic containers that reference
    counting frees; a reference cycle that survives its command (none is
    expected) is never collected."""
    gc.freeze()


def handle(request):
    t0 = time.time()
    name = '?'
    more_to_come = isinstance(request, mockupdb.OpMsg) and bool(
        request.flags & mockupdb.OP_MSG_FLAGS['moreToCome'])
    try:
        if isinstance(request, (mockupdb.OpMsg, mockupdb.Command)) and request.docs:
            name = next(iter(request.doc), '?')
        with LOCK:
            try:
                reply = dispatch(request)
            finally:
                _gc_freeze()
    except CommandError as exc:
        reply = error_reply(exc.code, exc.errmsg, exc.extra)
    except Exception as exc:  # noqa: BLE001 - never drop a connection silently
        code, msg, extra = _exc_code(exc)
        if code == 1:
            traceback.print_exc()
        reply = error_reply(code, msg, extra)
    if VERBOSE:
        sys.stderr.write('mongo-test-server: %s %.1f ms%s\n' % (
            name, (time.time() - t0) * 1000,
            '' if reply is None or reply.get('ok') else ' -> %s' % reply.get('errmsg')))
    if reply is None:
        if isinstance(request, mockupdb.OpQuery):
            request.fail('legacy OP_QUERY is not supported by mongo-test-server')
        return True       # legacy writes/getMore/killCursors: no reply
    if more_to_come:
        return True
    try:
        request.replies(reply)
    except (socket.error, OSError):
        pass
    return True


def write_atomically(path, text):
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description='MongoDB-wire test server (mockupdb + mongomock)')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0, help='0 picks a free port')
    ap.add_argument('--port-file', help='write the port here (atomically) once listening')
    ap.add_argument('--verbose', action='store_true', help='log every command on stderr')
    args = ap.parse_args()
    VERBOSE = args.verbose
    gc.set_threshold(10000, 10, 10)     # fewer young collections (see _gc_freeze)
    gc.freeze()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    profiler = _start_profile(os.environ.get('RTU_TEST_SERVER_PROFILE'))

    server = mockupdb.MockupDB(port=args.port, request_timeout=int(1e6))
    server._address = (args.host, args.port)
    server.autoresponds(handle)
    port = server.run()
    if args.port_file:
        write_atomically(args.port_file, '%d\n' % port)
    sys.stdout.write('listening on %s:%d\n' % (args.host, port))
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if args.port_file:
            try:
                os.unlink(args.port_file)
            except OSError:
                pass
        fast_stop(server)
        _stop_profile(profiler)
    return 0


def _start_profile(path):
    """RTU_TEST_SERVER_PROFILE=<file>: profile every command (cProfile) and
    write the sorted statistics, with the process CPU time, to <file> at exit
    (and the raw statistics, for pstats, to <file>.pstats)."""
    if not path:
        return None
    import cProfile
    class Profiles(list):
        pass
    profiles = Profiles()
    local = threading.local()
    global handle
    inner = handle

    gc_time = profiles.gc = [0.0, 0, 0.0]   # seconds, collections, start

    def on_gc(phase, info):
        if phase == 'start':
            gc_time[2] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[2]
            gc_time[1] += 1
    gc.callbacks.append(on_gc)

    def handle(request):                      # noqa: F811 - profiled wrapper
        prof = getattr(local, 'prof', None)   # a profiler is not thread-safe
        if prof is None:
            prof = local.prof = cProfile.Profile()
            with LOCK:
                profiles.append(prof)
        prof.enable()
        try:
            return inner(request)
        finally:
            prof.disable()
    return path, profiles


def _stop_profile(profiler):
    if profiler is None:
        return
    import io
    import pstats
    path, profiles = profiler
    with LOCK:
        out = io.StringIO()
        t = os.times()
        out.write('process cpu: user %.2f s, system %.2f s\n' % (t.user, t.system))
        out.write('cyclic gc: %.2f s in %d collections\n' % tuple(profiles.gc[:2]))
        if profiles:
            st = pstats.Stats(*profiles, stream=out)
            st.sort_stats('tottime').print_stats(40)
            st.sort_stats('cumulative').print_stats(60)
            st.dump_stats(path + '.pstats')
        write_atomically(path, out.getvalue())


def fast_stop(server):
    """Close the listening and client sockets and return at once: mockupdb's
    stop() joins its accept thread, which polls once a second.  The server
    threads are daemon threads and die with the process."""
    server._stopped = True
    try:
        server._listening_sock.close()
    except OSError:
        pass
    for sock in list(server._server_socks):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    with LOCK:      # let a command in progress finish its reply
        pass


if __name__ == '__main__':
    sys.exit(main())
