"""End-to-end: LOGGING_UNMAPPED_FIELDS and COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE
(issue 18 item 5): fields of a record that the map table does not name
(UNKNOWN_FIELD) and values a built-in cast cannot convert (UNCASTABLE_FIELD) are
logged and upserted, one document per (projection, field, type); without the
variables nothing of it happens."""

import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402

TOPICS = {"unmapped.on": 1, "unmapped.off": 1}
T0 = 1_700_000_000_000

MAP_TABLE = {
    "pr_items": {
        "destination": "items",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "QTY": {"fieldName": "qty", "cast": "__fromFile__[defaultCastToInteger]"},
            "ACTIVE": {"fieldName": "active", "cast": "__fromFile__[defaultCastStringToBoolean]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
        },
        "fieldsInKey": ["id"],
    }
}


def msg(topic, id_, value, ts):
    return {"topic": topic, "partition": 0, "key": {"ID": id_}, "value": value, "timestamp": ts}


def messages(topic):
    return [
        msg(topic, 1, {"ID": 1, "QTY": "many", "ACTIVE": "true", "EXTRA": "x1"}, T0 + 1),   # off 0
        msg(topic, 2, {"ID": 2, "QTY": "3", "ACTIVE": "maybe", "EXTRA": "x2"}, T0 + 2),     # off 1
        msg(topic, 3, {"ID": 3, "QTY": "lots", "NAME": "n", "OTHER": {"a": 1}}, T0 + 3),    # off 2
        msg(topic, 999, {"ID": 999, "NAME": "marker"}, T0 + 4),                             # off 3
    ]


S, R = {}, {}
COLL = "unmapped_fields"


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["on"] = c.scenario("unmapped-on", {"unmapped.on": "pr_items"}, MAP_TABLE,
                         env={"LOGGING_UNMAPPED_FIELDS": "true",
                              "COLLECTION_NAME_UNMAPPED_FIELDS_STORAGE": COLL})
    S["off"] = c.scenario("unmapped-off", {"unmapped.off": "pr_items"}, MAP_TABLE)
    c.produce(messages("unmapped.on") + messages("unmapped.off"))
    R["on"] = S["on"].start()
    R["off"] = S["off"].start()


def tearDownModule():
    harness.stop_module()


def field_logs(rtu):
    return rtu.find_logs(lambda l: l.get("msg") in ("unmapped field", "uncastable field"))


class Unmapped(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        for name in ("on", "off"):
            coll = S[name].coll("items")
            wait_for(lambda: coll.find_one({"id": 999}), 30, "the marker", R[name])
        unmapped = S["on"].coll(COLL)
        wait_for(lambda: unmapped.count_documents({}) >= 4, 30, "the unmapped documents", R["on"])
        cls.docs = {(d["field"], d["type"]): d for d in unmapped.find({})}

    @classmethod
    def tearDownClass(cls):
        R["on"].stop()
        R["off"].stop()

    def test_one_document_per_field_and_type(self):
        self.assertEqual(sorted(self.docs), [("ACTIVE", "UNCASTABLE_FIELD"),
                                             ("EXTRA", "UNKNOWN_FIELD"),
                                             ("OTHER", "UNKNOWN_FIELD"),
                                             ("QTY", "UNCASTABLE_FIELD")])

    def test_document_shape(self):
        d = self.docs[("QTY", "UNCASTABLE_FIELD")]
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["projection"], "pr_items")
        self.assertEqual(d["count"], 2)
        self.assertEqual(d["value"], "lots")
        self.assertEqual((d["topic"], d["partition"], d["offset"]), ("unmapped.on", 0, "2"))
        self.assertIsInstance(d["createdAt"], datetime.datetime)
        self.assertIsInstance(d["updatedAt"], datetime.datetime)
        e = self.docs[("EXTRA", "UNKNOWN_FIELD")]
        self.assertEqual((e["count"], e["value"], e["offset"]), (2, "x2", "1"))
        self.assertEqual(self.docs[("OTHER", "UNKNOWN_FIELD")]["value"], {"a": 1})
        self.assertEqual(self.docs[("ACTIVE", "UNCASTABLE_FIELD")]["value"], "maybe")

    def test_unique_index(self):
        names = [ix["name"] for ix in S["on"].coll(COLL).list_indexes()]
        self.assertIn("rtu_unmapped_field_index", names)

    def test_uncastable_still_stored_as_null(self):
        d = S["on"].coll("items").find_one({"id": 1})
        self.assertIn("qty", d)
        self.assertIsNone(d["qty"])
        self.assertNotIn("EXTRA", d)

    def test_log_lines(self):
        lines = field_logs(R["on"])
        seen = {(l["field"], l["type"]) for l in lines}
        self.assertEqual(seen, set(self.docs))
        counts = {}
        for l in lines:
            counts[(l["field"], l["type"])] = counts.get((l["field"], l["type"]), 0) + l["count"]
        self.assertEqual(counts[("QTY", "UNCASTABLE_FIELD")], 2)
        self.assertTrue(all(l["projection"] == "pr_items" for l in lines))

    def test_off_by_default(self):
        self.assertEqual(field_logs(R["off"]), [])
        self.assertNotIn(COLL, S["off"].db.list_collection_names())
        self.assertIsNone(S["off"].coll("items").find_one({"id": 1})["qty"])

    def test_no_errors(self):
        self.assertEqual(error_logs(R["on"]), [])
        self.assertEqual(error_logs(R["off"]), [])


if __name__ == "__main__":
    harness.main()
