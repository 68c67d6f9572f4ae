"""End-to-end: the basic (db2) adapter, soft and hard delete, metadata fields,
casts, integer fidelity and the projection indexes."""

import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402
from bson.int64 import Int64  # noqa: E402

TOPICS = {"basic.soft": 2, "basic.hard": 1, "basic.db2": 1}
T0 = 1_700_000_000_000
BIG = 9007199254740993  # 2^53 + 1: not representable as a double

MAP_TABLE = {
    "pr_items": {
        "destination": "items",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
            "QTY": {"fieldName": "qty", "cast": "__fromFile__[defaultCastToInteger]"},
            "PRICE": {"fieldName": "price", "cast": "__fromFile__[defaultCastToFloat]"},
            "ACTIVE": {"fieldName": "active", "cast": "__fromFile__[defaultCastStringToBoolean]"},
            "BORN": {"fieldName": "born", "cast": "__fromFile__[defaultCastToDate]"},
            "BIG": {"fieldName": "big", "cast": "__fromFile__[defaultIdentity]"},
            "NOTE": {"fieldName": "note", "cast": "__fromFile__[castToString]"},
        },
        "fieldsInKey": ["id"],
    }
}

S = {}  # scenarios
R = {}  # running rtu processes


def ts_date(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).replace(tzinfo=None)


def msg(topic, partition, id_, value, ts, key="auto"):
    if key == "auto":
        key = {"ID": id_}
    return {"topic": topic, "partition": partition, "key": key, "value": value, "timestamp": ts}


# --- soft delete (the default) -------------------------------------------------

SOFT1 = [
    # p0, offset 0: a full record, casts on each field, a field not in the mapTable.
    msg("basic.soft", 0, 123, {"ID": 123, "NAME": "alpha", "QTY": "42", "PRICE": "3.5",
                               "ACTIVE": "true", "BORN": "2020-01-02T03:04:05Z", "BIG": BIG,
                               "NOTE": 5, "EXTRA": "dropped"}, T0 + 1),
    # p0, offsets 1, 2: insert then delete (value null) -> soft delete, data kept.
    msg("basic.soft", 0, 200, {"ID": 200, "NAME": "to-delete", "QTY": 1}, T0 + 2),
    msg("basic.soft", 0, 200, None, T0 + 3),
    # p0, offset 3: no key: the primary key comes from the value.
    msg("basic.soft", 0, 201, {"ID": 201, "NAME": "keyless"}, T0 + 4, key=""),
    # p0, offset 4: delete of a record that never existed: nothing is created.
    msg("basic.soft", 0, 300, None, T0 + 5),
    # p0, offset 5: the marker of phase 1.
    msg("basic.soft", 0, 999, {"ID": 999, "NAME": "marker-1"}, T0 + 6),
    # p1, offset 0: a 64-bit key and field.
    msg("basic.soft", 1, BIG, {"ID": BIG, "NAME": "big", "BIG": BIG}, T0 + 7),
]
SOFT2 = [
    # p0, offset 6: a partial update: only QTY (and the key) present.
    msg("basic.soft", 0, 123, {"ID": 123, "QTY": 43}, T0 + 100),
    # p0, offset 7: the soft-deleted record written again.
    msg("basic.soft", 0, 200, {"ID": 200, "NAME": "back"}, T0 + 101),
    # p0, offset 8: marker of phase 2.
    msg("basic.soft", 0, 998, {"ID": 998, "NAME": "marker-2"}, T0 + 102),
]

# --- hard delete -------------------------------------------------------------------

HARD1 = [
    msg("basic.hard", 0, 1, {"ID": 1, "NAME": "a"}, T0 + 1),
    msg("basic.hard", 0, 2, {"ID": 2, "NAME": "b"}, T0 + 2),
    msg("basic.hard", 0, 1, None, T0 + 3),
    msg("basic.hard", 0, 3, {"ID": 3, "NAME": "x", "NOTE": "old note"}, T0 + 4),
    msg("basic.hard", 0, 3, None, T0 + 5),
    msg("basic.hard", 0, 3, {"ID": 3, "NAME": "y"}, T0 + 6),
    msg("basic.hard", 0, 4, {"ID": 4, "NAME": "d", "NOTE": "note of 4"}, T0 + 7),
    msg("basic.hard", 0, 999, {"ID": 999, "NAME": "marker-1"}, T0 + 8),
]
HARD2 = [
    msg("basic.hard", 0, 4, None, T0 + 100),
    msg("basic.hard", 0, 4, {"ID": 4, "NAME": "e"}, T0 + 101),
    msg("basic.hard", 0, 2, None, T0 + 102),
    msg("basic.hard", 0, 998, {"ID": 998, "NAME": "marker-2"}, T0 + 103),
]

# --- KAFKA_MESSAGE_ADAPTER=db2 (alias of basic) --------------------------------------

DB2 = [
    msg("basic.db2", 0, 7, {"ID": 7, "NAME": "seven"}, T0 + 1),
    msg("basic.db2", 0, 8, {"ID": 8, "NAME": "eight"}, T0 + 2),
    msg("basic.db2", 0, 8, None, T0 + 3),
]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["soft"] = c.scenario("soft", {"basic.soft": "pr_items"}, MAP_TABLE)
    S["hard"] = c.scenario("hard", {"basic.hard": "pr_items"}, MAP_TABLE,
                           env={"DELETE_MECHANISM": "hard"})
    S["db2"] = c.scenario("db2", {"basic.db2": "pr_items"}, MAP_TABLE, adapter_name="db2")
    c.produce(SOFT1 + HARD1 + DB2)
    for k, sc in S.items():
        R[k] = sc.start()  # the three group joins overlap


def tearDownModule():
    harness.stop_module()


def items(k):
    return S[k].coll("items")


class SoftDelete(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        coll = items("soft")
        wait_for(lambda: coll.find_one({"id": 999}) and coll.find_one({"id": BIG}), 30,
                 "phase 1 of basic.soft", R["soft"])
        cls.before = {d["id"]: d for d in coll.find({})}
        cls.phase2_start = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        time.sleep(0.05)
        harness.cluster().produce(SOFT2)
        wait_for(lambda: coll.find_one({"id": 998}), 30, "phase 2 of basic.soft", R["soft"])
        cls.after = {d["id"]: d for d in coll.find({})}

    @classmethod
    def tearDownClass(cls):
        R["soft"].stop()  # SIGTERM: exit 0 within 10 s

    def test_insert_maps_and_casts_fields(self):
        d = self.before[123]
        self.assertEqual(d["name"], "alpha")
        self.assertEqual(d["qty"], 42)
        self.assertIs(type(d["qty"]), int, "defaultCastToInteger('42') must be an integer")
        self.assertEqual(d["price"], 3.5)
        self.assertIs(d["active"], True)
        self.assertEqual(d["born"], datetime.datetime(2020, 1, 2, 3, 4, 5))
        self.assertEqual(d["note"], "5", "castToString alias of defaultCastToString")
        self.assertNotIn("EXTRA", d)
        self.assertNotIn("ID", d)
        self.assertEqual(d["__STATE__"], "PUBLIC")

    def test_integers_stay_integers(self):
        d = self.before[123]
        self.assertIsInstance(d["id"], int)
        self.assertNotIsInstance(d["id"], float)
        self.assertEqual(d["big"], BIG)
        self.assertIsInstance(d["big"], Int64)
        b = self.before[BIG]
        self.assertEqual(b["id"], BIG)
        self.assertIsInstance(b["id"], Int64)
        self.assertEqual(b["big"], BIG)
        self.assertEqual(b["__internal__kafkaInfo"]["key"], {"ID": BIG})
        self.assertEqual(items("soft").count_documents({"id": BIG}), 1)
        self.assertEqual(items("soft").count_documents({"id": BIG - 1}), 0)

    def test_metadata_fields(self):
        d = self.before[123]
        self.assertEqual(d["timestamp"], ts_date(T0 + 1))
        self.assertEqual(d["__internal__counter"], T0 + 1)
        self.assertIsInstance(d["__internal__counter"], Int64)
        self.assertEqual(d["__internal__counterType"], "timestamp")
        self.assertEqual(d["__internal__kafkaInfo"], {
            "topic": "basic.soft", "partition": 0, "offset": "0", "key": {"ID": 123},
            "timestamp": "2023-11-14T22:13:20.001Z"})
        self.assertIsInstance(d["createdAt"], datetime.datetime)
        self.assertIsInstance(d["updatedAt"], datetime.datetime)
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        self.assertLess(abs((now - d["updatedAt"]).total_seconds()), 120)
        b = self.before[BIG]
        self.assertEqual(b["__internal__kafkaInfo"]["partition"], 1)
        self.assertEqual(b["__internal__kafkaInfo"]["offset"], "0")

    def test_update_merges_partial_fields(self):
        d = self.after[123]
        self.assertEqual(d["qty"], 43)
        for f in ("name", "price", "active", "born", "big", "note"):
            self.assertEqual(d[f], self.before[123][f], f)
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["timestamp"], ts_date(T0 + 100))
        self.assertEqual(d["__internal__counter"], T0 + 100)
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "6")
        self.assertEqual(d["__internal__kafkaInfo"]["timestamp"], "2023-11-14T22:13:20.100Z")

    def test_created_at_set_once_updated_at_moves(self):
        self.assertEqual(self.after[123]["createdAt"], self.before[123]["createdAt"])
        self.assertGreaterEqual(self.after[123]["updatedAt"], self.phase2_start)
        self.assertGreater(self.after[123]["updatedAt"], self.before[123]["updatedAt"])

    def test_soft_delete_keeps_data(self):
        d = self.before[200]
        self.assertEqual(d["__STATE__"], "DELETED")
        self.assertEqual(d["name"], "to-delete")
        self.assertEqual(d["qty"], 1)
        self.assertEqual(d["__internal__counter"], T0 + 3)
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "2")

    def test_write_after_soft_delete_is_public_again(self):
        d = self.after[200]
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["name"], "back")
        self.assertEqual(d["qty"], 1)  # not in the message: kept
        self.assertEqual(d["createdAt"], self.before[200]["createdAt"])

    def test_key_taken_from_value_when_message_key_empty(self):
        d = self.before[201]
        self.assertEqual(d["name"], "keyless")
        self.assertEqual(d["__STATE__"], "PUBLIC")

    def test_delete_of_missing_record_creates_nothing(self):
        self.assertEqual(items("soft").count_documents({"id": 300}), 0)
        self.assertEqual(items("soft").count_documents({"id": None}), 0)

    def test_no_shared_memory_left_behind(self):
        # libmongoc's counters: a file per process, never removed after a kill,
        # that made a later process of the same pid warn on stderr
        pid = R["soft"].proc.pid
        self.assertTrue(R["soft"].alive())
        self.assertFalse(os.path.exists("/dev/shm/mongoc-%d" % pid))

    def test_no_duplicates(self):
        ids = [d["id"] for d in items("soft").find({})]
        self.assertEqual(sorted(ids, key=str), sorted(set(ids), key=str))
        self.assertEqual(set(ids), {123, 200, 201, 999, BIG, 998})

    def test_indexes(self):
        idx = {i["name"]: i for i in items("soft").list_indexes()}
        self.assertIn("mia_primary_key_index", idx)
        self.assertTrue(idx["mia_primary_key_index"].get("unique"))
        self.assertEqual(list(idx["mia_primary_key_index"]["key"].keys()), ["id"])
        self.assertIn("mia_internal_counter_index", idx)
        self.assertEqual(list(idx["mia_internal_counter_index"]["key"].keys()),
                         ["id", "__internal__counter", "__internal__counterType"])
        self.assertIn("mia_internal_counter_type_index", idx)
        self.assertEqual(list(idx["mia_internal_counter_type_index"]["key"].keys()),
                         ["id", "__internal__counterType"])


class HardDelete(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        coll = items("hard")
        wait_for(lambda: coll.find_one({"id": 999}), 30, "phase 1 of basic.hard", R["hard"])
        cls.before = {d["id"]: d for d in coll.find({})}
        harness.cluster().produce(HARD2)
        wait_for(lambda: coll.find_one({"id": 998}), 30, "phase 2 of basic.hard", R["hard"])
        cls.after = {d["id"]: d for d in coll.find({})}

    @classmethod
    def tearDownClass(cls):
        R["hard"].stop()

    def test_hard_delete_removes(self):
        self.assertNotIn(1, self.before)
        self.assertIn(2, self.before)
        self.assertNotIn(2, self.after)

    def test_delete_then_insert_in_one_run_keeps_only_new_fields(self):
        d = self.before[3]
        self.assertEqual(d["name"], "y")
        self.assertNotIn("note", d)
        self.assertEqual(d["__STATE__"], "PUBLIC")

    def test_delete_then_insert_later_keeps_only_new_fields(self):
        self.assertEqual(self.before[4]["note"], "note of 4")
        d = self.after[4]
        self.assertEqual(d["name"], "e")
        self.assertNotIn("note", d)
        self.assertGreater(d["createdAt"], self.before[4]["createdAt"])
        self.assertEqual(d["__internal__counter"], T0 + 101)

    def test_final_set(self):
        self.assertEqual(sorted(d["id"] for d in items("hard").find({})), [3, 4, 998, 999])


class Db2Alias(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["db2"].stop()

    def test_db2_adapter_is_basic(self):
        coll = items("db2")
        wait_for(lambda: coll.find_one({"id": 8, "__STATE__": "DELETED"}), 30, "db2 delete", R["db2"])
        self.assertEqual(coll.find_one({"id": 7})["name"], "seven")
        self.assertEqual(coll.find_one({"id": 8})["name"], "eight")
        self.assertEqual(coll.count_documents({}), 2)


if __name__ == "__main__":
    harness.main()
