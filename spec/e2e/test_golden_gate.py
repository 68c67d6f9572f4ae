"""End-to-end: the golden-gate adapter: I/U/D, `pos` as the counter (type
"position"), USE_POS_AS_COUNTER=false, a primary-key change, and USE_UPSERT=false
(insert of an existing record / update of a missing one stop the partition)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs, stop_log  # noqa: E402

TOPICS = {"gg.upsert": 2, "gg.ts": 1, "gg.strict": 3, "gg.multi": 1}
T = 1_700_000_000_000

MAP_TABLE = {
    "pr_users": {
        "destination": "users",
        "conversion": {
            "USER_ID": {"fieldName": "userId", "cast": "__fromFile__[defaultCastToInteger]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
            "COINS": {"fieldName": "coins", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["userId"],
    }
}

# A composite primary key, listed in another order than the conversion's.
ORDERS_MAP_TABLE = {
    "pr_orders": {
        "destination": "orders",
        "conversion": {
            "QTY": {"fieldName": "qty", "cast": "__fromFile__[defaultIdentity]"},
            "LINE": {"fieldName": "line", "cast": "__fromFile__[defaultCastToString]"},
            "ORDER_ID": {"fieldName": "orderId", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["orderId", "line"],
    }
}

S, R = {}, {}


def pos(n):
    return "%020d" % n  # GoldenGate's zero-padded position


def gg(topic, part, op, before, after, p, ts, key=None):
    v = {"table": "MY.USERS", "op_type": op, "op_ts": "2023-11-14 22:13:20.000000",
         "current_ts": "2023-11-14T22:13:21.000000", "pos": p}
    if before is not None:
        v["before"] = before
    if after is not None:
        v["after"] = after
    if key is None:
        ref = after or before
        key = str(ref["USER_ID"])
    return {"topic": topic, "partition": part, "key": key, "value": v, "timestamp": ts}


def u(i, name=None, coins=None):
    r = {"USER_ID": i}
    if name is not None:
        r["NAME"] = name
    if coins is not None:
        r["COINS"] = coins
    return r


UPSERT = [
    # p0
    gg("gg.upsert", 0, "I", None, u(1, "a", 10), pos(100), T + 1),                 # off 0
    gg("gg.upsert", 0, "U", u(1, "a", 10), u(1, "b"), pos(200), T + 2),            # off 1
    gg("gg.upsert", 0, "I", None, u(2, "two", 20), pos(300), T + 3),               # off 2
    gg("gg.upsert", 0, "D", u(2, "two", 20), None, pos(400), T + 4),               # off 3
    gg("gg.upsert", 0, "I", None, u(3, "three", 30), pos(500), T + 5),             # off 4
    gg("gg.upsert", 0, "U", u(3, "three", 30), u(33, "thirty-three", 33), pos(600), T + 6),  # off 5
    # pos decreases while the timestamp grows: pos is the counter, so not applied.
    gg("gg.upsert", 0, "I", None, u(4, "new"), pos(800), T + 7),                   # off 6
    gg("gg.upsert", 0, "U", u(4, "new"), u(4, "old"), pos(700), T + 8),           # off 7
    # pos as a JSON number
    gg("gg.upsert", 0, "I", None, u(5, "numeric-pos"), 900, T + 9),               # off 8
    # p1: the marker
    gg("gg.upsert", 1, "I", None, u(999, "marker"), pos(1), T + 10),
]

TS = [
    gg("gg.ts", 0, "I", None, u(4, "first"), pos(800), T + 1),
    gg("gg.ts", 0, "U", u(4, "first"), u(4, "later"), pos(700), T + 2),
]

STRICT = [
    # p0: an insert of an existing record stops the partition at offset 2.
    gg("gg.strict", 0, "I", None, u(1, "a"), pos(100), T + 1),                    # off 0
    gg("gg.strict", 0, "U", u(1, "a"), u(1, "b"), pos(200), T + 2),               # off 1
    gg("gg.strict", 0, "I", None, u(1, "again"), pos(300), T + 3),                # off 2: error
    gg("gg.strict", 0, "I", None, u(9, "after-error"), pos(400), T + 4),          # off 3
    # p1: an update of a missing record stops the partition at offset 2.
    gg("gg.strict", 1, "I", None, u(2, "two"), pos(100), T + 1),                  # off 0
    gg("gg.strict", 1, "D", u(2, "two"), None, pos(150), T + 2),                  # off 1 (hard)
    gg("gg.strict", 1, "U", u(3, "x"), u(3, "y"), pos(200), T + 3),               # off 2: error
    gg("gg.strict", 1, "I", None, u(8, "after-error"), pos(300), T + 4),          # off 3
    # p2: a primary-key change without upsert: the old record goes, the new one is created.
    gg("gg.strict", 2, "I", None, u(5, "five"), pos(100), T + 1),                 # off 0
    gg("gg.strict", 2, "U", u(5, "five"), u(55, "fifty-five"), pos(200), T + 2),  # off 1
    gg("gg.strict", 2, "I", None, u(56, "marker"), pos(300), T + 3),              # off 2
]


def o(op, before, after, p, ts):
    v = {"op_type": op, "pos": pos(p)}
    if before:
        v["before"] = before
    if after:
        v["after"] = after
    return {"topic": "gg.multi", "partition": 0, "key": "k", "value": v, "timestamp": ts}


def line(order, ln, qty=None):
    r = {"LINE": ln, "ORDER_ID": order}  # not in fieldsInKey order
    if qty is not None:
        r["QTY"] = qty
    return r


MULTI1 = [
    o("I", None, line(1, 1, 1), 100, T + 1),
    o("I", None, line(1, 2, 2), 110, T + 2),
    o("I", None, line(2, 1, 3), 120, T + 3),
]
MULTI2 = [
    o("U", line(1, 1, 1), {"ORDER_ID": 1, "QTY": 5, "LINE": 1}, 200, T + 10),
    o("D", line(1, 2, 2), None, 210, T + 11),
    o("I", None, line(2, 2, 4), 220, T + 12),
    o("I", None, line(9, 9, 9), 230, T + 13),
]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["upsert"] = c.scenario("upsert", {"gg.upsert": "pr_users"}, MAP_TABLE,
                             adapter_name="golden-gate")
    S["ts"] = c.scenario("ts", {"gg.ts": "pr_users"}, MAP_TABLE, adapter_name="golden-gate",
                         env={"USE_POS_AS_COUNTER": "false"})
    S["strict"] = c.scenario("strict", {"gg.strict": "pr_users"}, MAP_TABLE,
                             adapter_name="golden-gate", env={"USE_UPSERT": "false"})
    S["multi"] = c.scenario("multi", {"gg.multi": "pr_orders"}, ORDERS_MAP_TABLE,
                            adapter_name="golden-gate", env={"USE_UPSERT": "false"})
    c.produce(UPSERT + TS + STRICT + MULTI1)
    for k, sc in S.items():
        R[k] = sc.start()


def tearDownModule():
    harness.stop_module()


def users(k):
    return S[k].coll("users")


def all_docs(k):
    return harness.by_key(users(k), "userId")


class Upsert(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        coll = users("upsert")
        wait_for(lambda: coll.find_one({"userId": 999}) and coll.find_one({"userId": 5}), 30,
                 "golden-gate markers", R["upsert"])
        cls.docs = all_docs("upsert")

    @classmethod
    def tearDownClass(cls):
        R["upsert"].stop()

    def test_insert_then_update(self):
        d = self.one(1)
        self.assertEqual(d["name"], "b")
        self.assertEqual(d["coins"], 10, "a field absent from the update is kept")
        self.assertEqual(d["__STATE__"], "PUBLIC")

    def test_position_is_the_counter(self):
        d = self.one(1)
        self.assertEqual(d["__internal__counter"], 200)
        self.assertEqual(d["__internal__counterType"], "position")
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "1")
        self.assertEqual(d["__internal__kafkaInfo"]["key"], "1")
        self.assertEqual(self.one(5)["__internal__counter"], 900)
        self.assertEqual(self.one(5)["__internal__counterType"], "position")

    def test_lower_position_not_applied(self):
        d = self.one(4)
        self.assertEqual(d["name"], "new")
        self.assertEqual(d["__internal__counter"], 800)

    def test_delete_is_soft(self):
        d = self.one(2)
        self.assertEqual(d["__STATE__"], "DELETED")
        self.assertEqual(d["name"], "two")
        self.assertEqual(d["coins"], 20)
        self.assertEqual(d["__internal__counter"], 400)

    def test_primary_key_change(self):
        old, new = self.one(3), self.one(33)
        self.assertEqual(old["__STATE__"], "DELETED", "the old record is (soft) deleted")
        self.assertEqual(new["__STATE__"], "PUBLIC")
        self.assertEqual(new["name"], "thirty-three")
        self.assertEqual(new["coins"], 33)
        self.assertEqual(new["__internal__counter"], 600)
        self.assertEqual(new["__internal__kafkaInfo"]["offset"], "5")

    def test_no_errors_no_duplicates(self):
        self.assertEqual(sorted(self.docs), [1, 2, 3, 4, 5, 33, 999])
        self.assertEqual(error_logs(R["upsert"]), [])


class TimestampCounter(E2ETestCase):
    @classmethod
    def tearDownClass(cls):
        R["ts"].stop()

    def test_use_pos_as_counter_false(self):
        coll = users("ts")
        d = wait_for(lambda: coll.find_one({"userId": 4, "name": "later"}), 30,
                     "the update with a lower pos applied", R["ts"])
        self.assertEqual(d["__internal__counter"], T + 2)
        self.assertEqual(d["__internal__counterType"], "timestamp")
        self.assertEqual(coll.count_documents({}), 1)


class NoUpsert(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["strict"]
        cls.p0 = rtu.wait_error(0, 30, "the error of partition 0")
        cls.p1 = rtu.wait_error(1, 30, "the error of partition 1")
        coll = users("strict")
        # partition 2 ends with its marker, or (wrongly) with an error
        wait_for(lambda: coll.find_one({"userId": 56}) or stop_log(rtu, "gg.strict", 2), 30,
                 "the end of partition 2", rtu)
        time.sleep(0.5)  # anything wrongly applied after the stop would show now
        cls.docs = all_docs("strict")

    @classmethod
    def tearDownClass(cls):
        R["strict"].stop()

    def assert_stop_line(self, lines, partition, offset, cause_words):
        self.assertEqual(len(lines), 1, lines)
        l = lines[0]
        self.assertEqual(l.get("topic"), "gg.strict")
        self.assertEqual(l.get("partition"), partition)
        self.assertIn(str(l.get("offset")), (str(offset),))
        cause = str(l.get("cause", "")) + " " + str(l.get("msg", ""))
        for w in cause_words:
            self.assertIn(w, cause)

    def test_insert_of_existing_record_stops_partition(self):
        self.assert_stop_line(stop_log(R["strict"], "gg.strict", 0), 0, 2, ["exists"])
        self.assertEqual(self.docs[1][0]["name"], "b", "messages before the error are applied")
        self.assertNotIn(9, self.docs, "messages after the error are not applied")

    def test_update_of_missing_record_stops_partition(self):
        self.assert_stop_line(stop_log(R["strict"], "gg.strict", 1), 1, 2, ["not exist"])
        self.assertNotIn(2, self.docs, "USE_UPSERT=false forces hard delete")
        self.assertNotIn(3, self.docs)
        self.assertNotIn(8, self.docs)

    def test_primary_key_change_without_upsert(self):
        self.assertEqual(stop_log(R["strict"], "gg.strict", 2), [],
                         "a primary-key change is a delete plus a create, not an update of a "
                         "missing record")
        self.assertIn(55, self.docs, "the new record is written")
        self.assertEqual(self.docs[55][0]["name"], "fifty-five")
        self.assertNotIn(5, self.docs, "the old record is deleted (hard, as USE_UPSERT=false)")
        self.assertIn(56, self.docs)


class CompositeKey(E2ETestCase):
    """USE_UPSERT=false with a two-field primary key: updates and deletes of records
    stored by an earlier run find them (the stored state is read back per key)."""

    @classmethod
    def setUpClass(cls):
        coll = S["multi"].coll("orders")
        wait_for(lambda: coll.count_documents({}) == 3, 30, "the first 3 order lines", R["multi"])
        cls.first = list(coll.find({}))
        harness.cluster().produce(MULTI2)
        wait_for(lambda: coll.find_one({"orderId": 9}) or error_logs(R["multi"]), 30,
                 "the marker (or an error)", R["multi"])
        cls.docs = {(d["orderId"], d["line"]): d for d in coll.find({})}

    @classmethod
    def tearDownClass(cls):
        R["multi"].stop()

    def test_key_fields_cast(self):
        self.assertEqual(sorted((d["orderId"], d["line"]) for d in self.first),
                         [(1, "1"), (1, "2"), (2, "1")])

    def test_update_and_delete_of_stored_records(self):
        self.assertEqual(error_logs(R["multi"]), [])
        self.assertEqual(sorted(self.docs), [(1, "1"), (2, "1"), (2, "2"), (9, "9")])
        self.assertEqual(self.docs[(1, "1")]["qty"], 5)
        self.assertEqual(self.docs[(1, "1")]["__internal__counter"], 200)


if __name__ == "__main__":
    harness.main()
