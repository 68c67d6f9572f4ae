"""rtu.matcher against the MongoDB test server: the same documents and queries.

The documents go into a collection of tools/mongo-test-server.py; every query of
QUERIES runs there (pymongo) and through lua/rtu/matcher.lua (lua5.4, JSON in and
out through the busted specs' JSON shim), and the ids found, in order, must be the
same. The test server is mongomock behind the wire protocol, not mongod: where it
departs from MongoDB's documented semantics, the query is in SERVER_DIFFERS with
the documented answer, which the matcher must give (and the server must still
give its own, so that a fixed server shows up here).
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import pymongo  # noqa: E402

SOURCE_DIR = os.environ.get(
    "RTU_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SERVER = os.path.join(SOURCE_DIR, "tools", "mongo-test-server.py")


def D(ms):
    return {"$date": ms}


DOCS = [
    {"_id": 1, "a": 1, "s": "x", "t": "b"},
    {"_id": 2, "a": 2.5, "s": "y", "t": "a"},
    {"_id": 3, "a": "1", "t": "c"},
    {"_id": 4, "a": None, "t": "a"},
    {"_id": 5, "t": "b"},
    {"_id": 6, "a": [1, 2, 3], "t": "c"},
    {"_id": 7, "a": [[1, 2], 3], "t": "a"},
    {"_id": 8, "a": {"b": 1, "c": 2}, "t": "b"},
    {"_id": 9, "a": [{"b": 1}, {"b": 5, "c": "z"}], "t": "c"},
    {"_id": 10, "a": [{"c": 1}], "t": "a"},
    {"_id": 11, "a": True, "d": D(1000), "t": "b"},
    {"_id": 12, "a": False, "d": D(2000), "t": "c"},
    {"_id": 13, "a": [None, 4], "t": "a"},
    {"_id": 14, "a": [], "t": "b"},
    {"_id": 15, "a": 9007199254740993, "t": "c"},
    {"_id": 16, "a": {"b": {"c": 3}}, "t": "a"},
    {"_id": 17, "a": [5, 7], "t": "b"},
    {"_id": 18, "a": 10, "s": "Y", "t": "c"},
]


def q(filter, **options):
    return {"filter": filter, "options": options}


QUERIES = [
    q({"a": 1}), q({"a": 1.0}), q({"a": "1"}), q({"a": 3}), q({"a": [1, 2]}),
    q({"a": [1, 2, 3]}), q({"a": {"b": 1, "c": 2}}), q({"a": {"b": 1}}),
    q({"a": None}), q({"a": {"$eq": None}}), q({"a": {"$ne": None}}), q({"a": {"$ne": 1}}),
    q({"a": {"$exists": True}}), q({"a": {"$exists": False}}),
    q({"a": {"$gt": 1}}), q({"a": {"$gte": 1}}), q({"a": {"$lt": 3}}), q({"a": {"$lte": 2.5}}),
    q({"a": {"$gt": 1, "$lt": 3}}), q({"a": {"$gt": "0"}}), q({"a": {"$lt": True}}),
    q({"a": {"$gt": 9007199254740992}}),
    q({"a": {"$in": [1, "1"]}}), q({"a": {"$in": [None]}}), q({"a": {"$in": []}}),
    q({"a": {"$nin": [1, 2.5]}}), q({"a": {"$nin": [None]}}),
    q({"d": {"$gt": D(1500)}}), q({"d": D(1000)}), q({"d": {"$lte": D(2000)}}),
    q({"a": {"$not": {"$gt": 2}}}), q({"a": {"$not": {"$in": [1, 2]}}}),
    q({"a": {"$elemMatch": {"$gt": 2, "$lt": 4}}}), q({"a": {"$elemMatch": {"b": 5}}}),
    q({"a": {"$elemMatch": {"b": {"$gte": 1}, "c": "z"}}}),
    q({"a.b": 1}), q({"a.b": 5}), q({"a.b": {"$gt": 0}}), q({"a.c": 1}), q({"a.b.c": 3}),
    q({"a.0": 1}), q({"a.1": 7}), q({"a.1.b": 5}), q({"a.b": {"$exists": True}}),
    q({"$or": [{"a": 1}, {"s": "y"}]}), q({"$and": [{"t": "c"}, {"a": {"$exists": True}}]}),
    q({"$nor": [{"t": "a"}, {"t": "b"}]}), q({"t": "a", "a": {"$ne": None}}),
    q({"$or": [{"a.b": 5}, {"a": {"$elemMatch": {"$gt": 6}}}], "t": {"$in": ["b", "c"]}}),
    q({"s": {"$gt": "X"}}), q({"s": {"$lt": "y"}}),
    q({}, sort={"a": 1}), q({}, sort={"a": -1}), q({"t": "a"}, sort={"s": 1}),
    q({}, sort=[["t", 1], ["_id", -1]]), q({}, sort={"t": 1}, skip=3, limit=4),
    q({"t": {"$ne": "a"}}, limit=2), q({"a": {"$exists": True}}, sort={"_id": -1}, skip=14),
    q({"_id": 9}, projection={"a.b": 1}), q({"_id": 8}, projection={"a": 0, "t": 0}),
    q({"_id": {"$lt": 4}}, projection={"s": 1, "_id": 0}, sort={"_id": 1}),
    q({"a.b": None}), q({"a.b": {"$exists": False}}), q({"a.c": {"$ne": None}}),
    q({"a.b": {"$gte": None}}),
]

# Queries where the test server departs from MongoDB's documented semantics:
# index in QUERIES -> (the documented answer, the server's answer, why).
# mongomock compares Python values, where True == 1; its sort orders arrays as
# arrays where MongoDB sorts them by their smallest (ascending) or largest
# (descending) element, and it orders embedded documents otherwise; on dotted
# paths it departs from MongoDB's null semantics (jstests/core/null_query_semantics.js
# before SERVER-36681: {"a.b": {$ne: null}} is the negation of {"a.b": null}, and
# {$gte: null} is {$eq: null}).
SERVER_DIFFERS = {
    63: ([6, 7, 8, 10, 13, 14, 17],
         [1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15, 17, 18],
         "{'a.c': {$ne: null}} is not {'a.c': null}: a scalar or null a reaches a missing c "
         "(a_number, a_null of null_query_semantics.js do not match), an array without "
         "embedded documents reaches nothing (a_value_array_no_nulls matches)"),
    64: ([1, 2, 3, 4, 5, 10, 11, 12, 15, 18], [],
         "{$gte: null} matches what {$eq: null} matches"),
    11: ([2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
         [2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18],
         "true is a boolean, not the number 1: {a: {$ne: 1}} keeps a: true"),
    25: ([3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
         [3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18],
         "true is a boolean, not the number 1: {a: {$nin: [1, 2.5]}} keeps a: true"),
    31: ([2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
         [2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18],
         "true is a boolean, not the number 1: {a: {$not: {$in: [1, 2]}}} keeps a: true"),
    51: ([14, 4, 5, 13, 1, 6, 2, 7, 17, 18, 15, 3, 9, 8, 10, 16, 12, 11],
         [14, 4, 5, 13, 1, 6, 2, 17, 18, 15, 3, 9, 8, 10, 16, 7, 12, 11],
         "ascending, [[1, 2], 3] sorts by its smallest element, 3 (numbers before arrays)"),
    52: ([11, 12, 7, 16, 10, 9, 8, 3, 15, 18, 17, 13, 6, 2, 1, 4, 5, 14],
         [11, 12, 7, 16, 10, 8, 9, 3, 15, 18, 17, 2, 1, 6, 4, 5, 13, 14],
         "descending, an array sorts by its largest element ([null, 4] by 4, [1, 2, 3] by 3), "
         "and {b: 5, c: 'z'} is greater than {b: 1, c: 2} (field by field)"),
}


LUA_DRIVER = r"""
package.path = os.getenv("RTU_LUA_DIR") .. "/?.lua;" .. os.getenv("RTU_LUA_DIR") .. "/?/init.lua;"
  .. os.getenv("RTU_SPEC_DIR") .. "/?.lua;" .. package.path
require("helpers.json_shim")
local value = require("rtu.value")
local json = require("rtu.json")
local dkjson = require("dkjson")
local matcher = require("rtu.matcher")
local function lua_of(v)
  if type(v) ~= "table" then return v end
  if getmetatable(v) == nil and next(v) ~= nil and next(v, next(v)) == nil then
    if v["$date"] ~= nil then return value.date(v["$date"]) end
    if v["$int"] ~= nil then return math.tointeger(v["$int"]) end
  end
  for k, x in pairs(v) do v[k] = lua_of(x) end
  return v
end
local function json_of(v)
  if math.type(v) == "integer" and (v > 2^53 or v < -2^53) then return { ["$int"] = tostring(v) } end
  if v == value.null then return dkjson.null end
  if type(v) ~= "table" then return v end
  if value.is_date(v) then return { ["$date"] = v.ms } end
  local out = {}
  for k, x in pairs(v) do out[k] = json_of(x) end
  setmetatable(out, { __jsontype = value.is_array(v) and "array" or "object" })
  return out
end
local input = lua_of(json.decode(io.read("a")))
local out = {}
for i, query in ipairs(input.queries) do
  local ok, res = pcall(matcher.find, input.docs, query.filter, query.options)
  if ok then out[i] = { docs = json_of(res) } else out[i] = { error = res } end
end
io.write(dkjson.encode(out))
"""


BIG = 2 ** 53


def to_json(v):
    """JSON for the Lua side: integers past 2^53 as {"$int": "digits"} (the JSON shim
    reads numbers as doubles)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) > BIG:
        return {"$int": str(v)}
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    return v


def from_json(v):
    if isinstance(v, dict):
        if list(v.keys()) == ["$int"]:
            return int(v["$int"])
        return {k: from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def to_bson(v):
    if isinstance(v, dict):
        if list(v.keys()) == ["$date"]:
            return datetime.datetime.fromtimestamp(v["$date"] / 1000, datetime.timezone.utc)
        return {k: to_bson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_bson(x) for x in v]
    return v


def from_bson(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return {"$date": int(v.timestamp() * 1000)}
    if isinstance(v, dict):
        return {k: from_bson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_bson(x) for x in v]
    return v


def canon(v):
    """A comparable form: key order ignored (Lua keeps none), 1 and 1.0 alike."""
    return json.dumps(v, sort_keys=True)


def run_lua():
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA_DRIVER)
        driver = f.name
    try:
        env = dict(os.environ, RTU_LUA_DIR=os.path.join(SOURCE_DIR, "lua"),
                   RTU_SPEC_DIR=os.path.join(SOURCE_DIR, "spec"))
        out = subprocess.run(["lua5.4", driver], input=json.dumps(to_json({"docs": DOCS, "queries": QUERIES})),
                             capture_output=True, text=True, env=env, timeout=60)
    finally:
        os.unlink(driver)
    if out.returncode != 0:
        raise RuntimeError("lua5.4: " + out.stderr)
    return from_json(json.loads(out.stdout))


def run_server(coll):
    results = []
    for query in QUERIES:
        opts = query["options"]
        sort = opts.get("sort")
        if isinstance(sort, dict):
            sort = list(sort.items())
        cur = coll.find(to_bson(query["filter"]), projection=opts.get("projection"))
        if sort:
            cur = cur.sort(sort)
        if opts.get("skip"):
            cur = cur.skip(opts["skip"])
        if opts.get("limit"):
            cur = cur.limit(opts["limit"])
        results.append([from_bson(d) for d in cur])
    return results


class MatcherVsServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.mkdtemp(prefix="rtu-matcher-")
        port_file = os.path.join(tmp, "port")
        cls.log = open(os.path.join(tmp, "mongo.log"), "wb")
        cls.server = harness._spawn([harness.PYTHON, SERVER, "--port", "0", "--port-file", port_file],
                                    stdout=cls.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        port = int(harness._wait_file(port_file, cls.server, "mongo-test-server.py"))
        cls.client = pymongo.MongoClient("mongodb://127.0.0.1:%d" % port, directConnection=True,
                                         serverSelectionTimeoutMS=10000)
        coll = cls.client.matcher.docs
        coll.insert_many([to_bson(d) for d in DOCS])
        cls.server_results = run_server(coll)
        cls.lua_results = run_lua()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        harness.kill_all_children()
        cls.log.close()

    def test_same_documents_as_the_server(self):
        agree, differ = 0, []
        for i, query in enumerate(QUERIES):
            lua = self.lua_results[i]
            self.assertNotIn("error", lua, "query %d %s" % (i, json.dumps(query)))
            mine = [canon(d) for d in lua["docs"]]
            theirs = [canon(d) for d in self.server_results[i]]
            if i in SERVER_DIFFERS:
                documented, server, why = SERVER_DIFFERS[i]
                self.assertEqual(documented, [d["_id"] for d in lua["docs"]], why)
                self.assertEqual(server, [d.get("_id") for d in self.server_results[i]],
                                 "the server changed on a known difference: " + why)
                continue
            if theirs != mine:
                differ.append("query %d %s:\n  server %s\n  matcher %s" % (
                    i, json.dumps(query), [d.get("_id") for d in self.server_results[i]],
                    [d.get("_id") for d in lua["docs"]]) + ("" if len(theirs) != len(mine) else
                                                        "\n  %s\n  %s" % (theirs, mine)))
            else:
                agree += 1
        self.assertEqual([], differ, "\n".join(differ))
        self.assertGreater(agree, 50)


if __name__ == "__main__":
    harness.main()
