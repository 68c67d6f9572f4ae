"""End-to-end: the debezium adapter: c/r/u/d with and without the Kafka Connect
schema envelope, tombstones and truncates skipped, a primary-key change, soft and
hard delete, and a record hard-deleted and created again within one run (its
last pr-update is the INSERT of the new record, under the stored _id)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402

TOPICS = {"dbz.plain": 2, "dbz.env": 1, "dbz.hard": 1, "dbz.again": 1, "dbz.again.pr": 1}
T = 1_700_000_000_000

MAP_TABLE = {
    "pr_acc": {
        "destination": "accounts",
        "conversion": {
            "id": {"fieldName": "accountId", "cast": "__fromFile__[defaultIdentity]"},
            "name": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
            "coins": {"fieldName": "coins", "cast": "__fromFile__[defaultCastToInteger]"},
        },
        "fieldsInKey": ["accountId"],
    }
}

KEY_SCHEMA = {"type": "struct", "optional": False, "name": "srv.inventory.accounts.Key",
              "fields": [{"type": "int64", "optional": False, "field": "id"}]}
VALUE_SCHEMA = {"type": "struct", "optional": False, "name": "srv.inventory.accounts.Envelope",
                "fields": [{"type": "struct", "optional": True, "field": "before", "fields": []},
                           {"type": "struct", "optional": True, "field": "after", "fields": []},
                           {"type": "string", "optional": False, "field": "op"}]}
SOURCE = {"connector": "postgresql", "name": "srv", "db": "inventory", "table": "accounts"}

S, R = {}, {}
CLUSTER = []


def a(i, name, coins):
    return {"id": i, "name": name, "coins": coins}


def dbz(topic, part, key_id, op, before, after, ts, envelope=False, tombstone=False):
    key = {"id": key_id}
    if tombstone:
        value = None
    else:
        value = {"before": before, "after": after, "source": SOURCE, "op": op, "ts_ms": ts,
                 "transaction": None}
        if op == "t":
            value = {"source": SOURCE, "op": "t", "ts_ms": ts}
    if envelope:
        key = {"schema": KEY_SCHEMA, "payload": key}
        if value is not None:
            value = {"schema": VALUE_SCHEMA, "payload": value}
    return {"topic": topic, "partition": part, "key": key, "value": value, "timestamp": ts}


def stream(topic, envelope):
    e = envelope
    msgs = [
        dbz(topic, 0, 1, "c", None, a(1, "a", 10), T + 1, e),
        dbz(topic, 0, 1, "u", a(1, "a", 10), a(1, "b", "11"), T + 2, e),
        dbz(topic, 0, 2, "r", None, a(2, "snap", 20), T + 3, e),
        dbz(topic, 0, 2, "d", a(2, "snap", 20), None, T + 4, e),
        dbz(topic, 0, 2, None, None, None, T + 5, e, tombstone=True),
        dbz(topic, 0, 0, "t", None, None, T + 6, e),
        dbz(topic, 0, 3, "c", None, a(3, "three", 30), T + 7, e),
        # primary-key change: before id 3, after id 30 (key of the new row)
        dbz(topic, 0, 30, "u", a(3, "three", 30), a(30, "thirty", 31), T + 8, e),
    ]
    if e:
        # an envelope whose payload is null is a tombstone too
        msgs.append({"topic": topic, "partition": 0, "key": {"schema": KEY_SCHEMA, "payload": {"id": 3}},
                     "value": {"schema": VALUE_SCHEMA, "payload": None}, "timestamp": T + 9})
    msgs.append(dbz(topic, 0, 999, "c", None, a(999, "marker", 0), T + 10, e))
    return msgs


HARD = [
    dbz("dbz.hard", 0, 1, "c", None, a(1, "a", 1), T + 1),
    dbz("dbz.hard", 0, 2, "c", None, a(2, "b", 2), T + 2),
    dbz("dbz.hard", 0, 1, "d", a(1, "a", 1), None, T + 3),
    dbz("dbz.hard", 0, 1, None, None, None, T + 4, tombstone=True),
    dbz("dbz.hard", 0, 20, "u", a(2, "b", 2), a(20, "b20", 2), T + 5),
    dbz("dbz.hard", 0, 999, "c", None, a(999, "marker", 0), T + 6),
]


# Stored first; the second stretch, produced at once (one run), deletes 1 and
# creates it again: a replacement whose image is the new record.
AGAIN_1 = [
    dbz("dbz.again", 0, 1, "c", None, a(1, "first", 1), T + 1),
    dbz("dbz.again", 0, 998, "c", None, a(998, "marker", 0), T + 2),
]
AGAIN_2 = [
    dbz("dbz.again", 0, 1, "d", a(1, "first", 1), None, T + 3),
    dbz("dbz.again", 0, 1, "c", None, a(1, "again", 5), T + 4),
    dbz("dbz.again", 0, 999, "c", None, a(999, "marker", 0), T + 5),
]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    CLUSTER.append(c)
    S["plain"] = c.scenario("plain", {"dbz.plain": "pr_acc"}, MAP_TABLE, adapter_name="debezium")
    S["env"] = c.scenario("env", {"dbz.env": "pr_acc"}, MAP_TABLE, adapter_name="debezium")
    S["hard"] = c.scenario("hard", {"dbz.hard": "pr_acc"}, MAP_TABLE, adapter_name="debezium",
                           env={"DELETE_MECHANISM": "hard"})
    S["again"] = c.scenario(
        "again", {"dbz.again": "pr_acc"}, MAP_TABLE, adapter_name="debezium",
        env={"DELETE_MECHANISM": "hard", "GENERATE_KAFKA_PROJECTION_UPDATES": "true"},
        files={"prUpdates/kafkaProjectionUpdates.json":
               json.dumps({"pr_acc": {"updatesTopic": "dbz.again.pr"}})})
    S["again"].env["KAFKA_PROJECTION_UPDATES_FOLDER"] = os.path.join(S["again"].dir, "prUpdates")
    plain = stream("dbz.plain", False)
    # p1 of dbz.plain: another record, on its own partition
    plain.append(dbz("dbz.plain", 1, 7, "c", None, a(7, "seven", 7), T + 1))
    c.produce(plain + stream("dbz.env", True) + HARD + AGAIN_1)
    for k, sc in S.items():
        R[k] = sc.start()


def tearDownModule():
    harness.stop_module()


def docs(k):
    return harness.by_key(S[k].coll("accounts"), "accountId")


class _Stream:
    key = None

    @classmethod
    def setUpClass(cls):
        coll = S[cls.key].coll("accounts")
        wait_for(lambda: coll.find_one({"accountId": 999}), 30, "the marker", R[cls.key])
        cls.docs = docs(cls.key)

    @classmethod
    def tearDownClass(cls):
        R[cls.key].stop()

    def test_create_then_update(self):
        d = self.one(1)
        self.assertEqual(d["name"], "b")
        self.assertEqual(d["coins"], 11)
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["__internal__counter"], T + 2)
        self.assertEqual(d["__internal__counterType"], "timestamp")
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "1")

    def test_snapshot_read_then_delete_is_soft(self):
        d = self.one(2)
        self.assertEqual(d["__STATE__"], "DELETED")
        self.assertEqual(d["name"], "snap")
        self.assertEqual(d["coins"], 20)
        self.assertEqual(d["__internal__counter"], T + 4)

    def test_tombstone_and_truncate_skipped(self):
        self.assertEqual(error_logs(R[self.key]), [])
        self.assertNotIn(0, self.docs)
        self.assertNotIn(None, self.docs)
        # the tombstone after the delete changed nothing
        self.assertEqual(self.one(2)["__internal__kafkaInfo"]["offset"], "3")

    def test_primary_key_change(self):
        old, new = self.one(3), self.one(30)
        self.assertEqual(old["__STATE__"], "DELETED")
        self.assertEqual(new["__STATE__"], "PUBLIC")
        self.assertEqual((new["name"], new["coins"]), ("thirty", 31))

    def test_no_duplicates(self):
        for i, ds in self.docs.items():
            self.assertEqual(len(ds), 1, i)


class Plain(_Stream, E2ETestCase):
    key = "plain"

    def test_other_partition(self):
        coll = S["plain"].coll("accounts")
        d = wait_for(lambda: coll.find_one({"accountId": 7}), 10, "partition 1", R["plain"])
        self.assertEqual(d["__internal__kafkaInfo"]["partition"], 1)
        self.assertEqual(d["__internal__kafkaInfo"]["key"], {"id": 7})


class Envelope(_Stream, E2ETestCase):
    key = "env"

    def test_original_key_kept_with_its_envelope(self):
        key = self.one(1)["__internal__kafkaInfo"]["key"]
        self.assertIsInstance(key, dict)
        self.assertEqual(key.get("payload"), {"id": 1})


class HardDelete(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["hard"].stop()

    def test_hard_delete_and_key_change(self):
        coll = S["hard"].coll("accounts")
        wait_for(lambda: coll.find_one({"accountId": 999}), 30, "the marker", R["hard"])
        d = docs("hard")
        self.assertEqual(sorted(d), [20, 999])
        self.assertEqual(d[20][0]["name"], "b20")
        self.assertEqual(error_logs(R["hard"]), [])


class DeletedAndCreatedAgain(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["again"].stop()

    def test_pr_update_of_the_record_created_again(self):
        coll = S["again"].coll("accounts")
        wait_for(lambda: coll.find_one({"accountId": 998}), 30, "the first marker", R["again"])
        stored_id = coll.find_one({"accountId": 1})["_id"]
        CLUSTER[0].produce(AGAIN_2)
        wait_for(lambda: coll.find_one({"accountId": 999}), 30, "the second marker", R["again"])
        d = coll.find_one({"accountId": 1})
        self.assertEqual((d["name"], d["coins"], d["_id"]), ("again", 5, stored_id))

        def read_updates():
            return [json.loads(m["value"]) for m in CLUSTER[0].read_topic("dbz.again.pr")
                    if json.loads(m["key"]) == {"accountId": 1}]

        # pr-updates are produced after the writes: the marker's document can be
        # there before the run's messages are.
        wait_for(lambda: len(read_updates()) >= 2, 30, "the record's second pr-update", R["again"])
        updates = read_updates()
        # One by one, the run's delete and create end with an INSERT without before
        # (issue 18 item 2: a folded run ends where one-by-one processing ends).
        self.assertEqual([u["operationType"] for u in updates], ["INSERT", "INSERT"])
        last = updates[-1]
        self.assertEqual(last["documentId"], str(stored_id))
        self.assertNotIn("before", last)
        after = last["after"]
        self.assertEqual((after["name"], after["coins"], after["accountId"]), ("again", 5, 1))
        self.assertEqual(after["__STATE__"], "PUBLIC")
        self.assertEqual(after["__internal__kafkaInfo"]["offset"], "3")
        self.assertIn("createdAt", after)
        self.assertEqual(error_logs(R["again"]), [])


if __name__ == "__main__":
    harness.main()
