"""End-to-end: KAFKA_MESSAGE_ADAPTER=custom (KAFKA_ADAPTER_FOLDER/kafkaMessageAdapter.lua
using the global json.decode) and custom casts (CAST_FUNCTIONS_FOLDER/name.lua, one
of them overriding a built-in)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402
from bson.int64 import Int64  # noqa: E402

TOPICS = {"custom.in": 2}
T = 1_700_000_000_000
BIG = 9007199254740993

ADAPTER = r'''
-- value: {"kind": "insert"|"update"|"remove"|"put", "row": {...}, "old": {...}, "seq": n}
local OPS = { insert = "I", update = "U", remove = "D" }
return function(message, primaryKeys, log)
  local v = json.decode(message.value)
  local row = v.row
  local op = OPS[v.kind]            -- nil for "put": an upsert
  local keyObject = {}
  for _, pk in ipairs(primaryKeys) do
    keyObject[pk] = row[pk]
  end
  if op ~= "D" then
    row.META = message.topic .. "/" .. message.partition .. "/" .. message.offset .. "/"
      .. message.timestamp
    row.ORIGIN = message.headers and message.headers.origin or "none"
    row.KEYTEXT = message.key
  end
  return {
    keyObject = keyObject,
    value = op ~= "D" and row or nil,
    operation = op,
    before = v.old,
    after = op ~= "D" and row or nil,
    operationPosition = v.seq,
  }
end
'''

CASTS = {
    # a custom cast: function(value, fieldName, log)
    "shout": r'''
return function(value, fieldName, log)
  if value == nil or value == null then return nil end
  log.info("shout cast of " .. fieldName)
  return string.upper(tostring(value)) .. "!"
end
''',
    # returning nil stores null
    "nullify": r'''
return function(value, fieldName, log)
  return nil
end
''',
    # a file named like a built-in replaces it
    "defaultCastToString": r'''
return function(value, fieldName, log)
  return "custom:" .. tostring(value)
end
''',
}

MAP_TABLE = {
    "pr_things": {
        "destination": "things",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[shout]"},
            "NOTE": {"fieldName": "note", "cast": "__fromFile__[nullify]"},
            "CODE": {"fieldName": "code", "cast": "__fromFile__[defaultCastToString]"},
            "N": {"fieldName": "n", "cast": "__fromFile__[defaultCastToInteger]"},
            "META": {"fieldName": "meta", "cast": "__fromFile__[defaultIdentity]"},
            "ORIGIN": {"fieldName": "origin", "cast": "__fromFile__[defaultIdentity]"},
            "KEYTEXT": {"fieldName": "keyText", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["id"],
    }
}

S, R = {}, {}


def m(part, kind, row, seq, ts, old=None, headers=None, key="k"):
    v = {"kind": kind, "row": row, "seq": seq}
    if old is not None:
        v["old"] = old
    out = {"topic": "custom.in", "partition": part, "key": key, "value": v, "timestamp": ts}
    if headers:
        out["headers"] = headers
    return out


MESSAGES = [
    m(0, "insert", {"ID": 1, "NAME": "alice", "NOTE": "secret", "CODE": 7, "N": "12"}, 10, T + 1,
      headers={"origin": "crm"}),                                                 # off 0
    m(0, "update", {"ID": 1, "NAME": "alicia"}, 20, T + 2),                      # off 1
    m(0, "put", {"ID": BIG, "NAME": "big"}, 30, T + 3),                           # off 2
    m(0, "insert", {"ID": 2, "NAME": "bob"}, 40, T + 4),                          # off 3
    m(0, "remove", {"ID": 2}, 50, T + 5),                                         # off 4
    m(0, "insert", {"ID": 3, "NAME": "carl"}, 60, T + 6),                         # off 5
    m(0, "update", {"ID": 33, "NAME": "carlo"}, 70, T + 7, old={"ID": 3}),       # off 6
    m(0, "update", {"ID": 1, "NAME": "stale"}, 15, T + 8),                        # off 7: pos 15 < 20
    m(0, "insert", {"ID": 998, "NAME": "marker"}, 1, T + 8),                      # off 8
    m(1, "insert", {"ID": 5, "NAME": "eve"}, 5, T + 9, headers={"origin": "erp"}),
    m(1, "insert", {"ID": 999, "NAME": "marker"}, 1, T + 10),
]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["c"] = c.scenario("custom", {"custom.in": "pr_things"}, MAP_TABLE, adapter=ADAPTER,
                        casts=CASTS)
    c.produce(MESSAGES)
    R["c"] = S["c"].start()


def tearDownModule():
    harness.stop_module()


class Custom(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        coll = S["c"].coll("things")
        wait_for(lambda: coll.find_one({"id": 999}) and coll.find_one({"id": 998}), 30,
                 "the markers of both partitions", R["c"])
        cls.docs = harness.by_key(coll)

    @classmethod
    def tearDownClass(cls):
        R["c"].stop()

    def test_custom_adapter_insert_and_update(self):
        d = self.one(1)
        self.assertEqual(d["name"], "ALICIA!")
        self.assertEqual(d["n"], 12)
        self.assertEqual(d["__STATE__"], "PUBLIC")

    def test_operation_position_is_the_counter(self):
        d = self.one(1)
        self.assertEqual(d["__internal__counterType"], "position")
        self.assertEqual(d["__internal__counter"], 20, "the update with seq 15 is stale")
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "1")

    def test_adapter_sees_message_fields(self):
        d = self.one(1)
        self.assertEqual(d["meta"], "custom.in/0/1/%d" % (T + 2))
        self.assertEqual(d["origin"], "none")  # the update had no header
        self.assertEqual(d["keyText"], "k")

    def test_headers_reach_the_adapter(self):
        d = self.one(5)
        self.assertEqual(d["origin"], "erp")
        self.assertEqual(d["meta"], "custom.in/1/0/%d" % (T + 9))

    def test_custom_casts(self):
        d = self.one(1)
        self.assertIn("note", d)
        self.assertIsNone(d["note"], "a cast returning nil stores null")
        self.assertEqual(d["code"], "custom:7", "a file overrides the built-in of the same name")

    def test_cast_log_argument(self):
        lines = R["c"].find_logs(lambda l: "shout cast of name" in str(l.get("msg", "")))
        self.assertTrue(lines, "log.info from a cast reaches the log")

    def test_json_decode_keeps_64_bit_integers(self):
        d = self.one(BIG)
        self.assertEqual(d["id"], BIG)
        self.assertIsInstance(d["id"], Int64)
        self.assertEqual(d["name"], "BIG!")
        self.assertEqual(d["__internal__counter"], 30)

    def test_delete_and_primary_key_change(self):
        self.assertEqual(self.one(2)["__STATE__"], "DELETED")
        self.assertEqual(self.one(2)["name"], "BOB!")
        self.assertEqual(self.one(3)["__STATE__"], "DELETED")
        self.assertEqual(self.one(33)["name"], "CARLO!")
        self.assertEqual(self.one(33)["__STATE__"], "PUBLIC")

    def test_no_errors(self):
        self.assertEqual(error_logs(R["c"]), [])
        self.assertEqual(sorted(self.docs), [1, 2, 3, 5, 33, 998, 999, BIG])


if __name__ == "__main__":
    harness.main()
