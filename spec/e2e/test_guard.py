"""End-to-end: the stale guard (FORCE_CHECK_ON_OFFSET). Messages of one key are
re-delivered out of order (decreasing Kafka timestamps): with the guard the older
ones are not applied, count as stale (never an error) and never create a second
document; without it they are applied in offset order."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402

TOPICS = {"guard.on": 1, "guard.off": 1}
T = 1_700_000_000_000

MAP_TABLE = {
    "pr_rec": {
        "destination": "rec",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "V": {"fieldName": "v", "cast": "__fromFile__[defaultIdentity]"},
            "B": {"fieldName": "b", "cast": "__fromFile__[defaultIdentity]"},
            "C": {"fieldName": "c", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["id"],
    }
}

S, R = {}, {}


def m(topic, id_, value, ts):
    return {"topic": topic, "partition": 0, "key": {"ID": id_}, "value": value, "timestamp": ts}


def phase1(topic):
    return [
        # key 1: the newest state first; older ones come in phase 2.
        m(topic, 1, {"ID": 1, "V": "v300"}, T + 300),
        # key 2: decreasing timestamps within one run.
        m(topic, 2, {"ID": 2, "V": "v30"}, T + 30),
        m(topic, 2, {"ID": 2, "V": "v20", "B": "b20"}, T + 20),
        m(topic, 2, {"ID": 2, "V": "v10"}, T + 10),
        # key 3: a stale message between two applied ones, in one run; the stale
        # one carries a field (B) that no applied message sets.
        m(topic, 3, {"ID": 3, "V": "new"}, T + 300),
        m(topic, 3, {"ID": 3, "V": "old", "B": "stale"}, T + 100),
        m(topic, 3, {"ID": 3, "C": "c400"}, T + 400),
        # key 4: equal counter is re-applied.
        m(topic, 4, {"ID": 4, "V": "first"}, T + 500),
        # key 5: a record that a stale delete must not touch.
        m(topic, 5, {"ID": 5, "V": "alive"}, T + 300),
    ] + [
        # key 6: many updates of one record in one run; only the first sets B.
        m(topic, 6, {"ID": 6, "V": 0, "B": "first-b"}, T + 1000),
    ] + [m(topic, 6, {"ID": 6, "V": j}, T + 1000 + j) for j in range(1, 71)] + [
        # key 7: equal timestamps in one run are applied in offset order.
        m(topic, 7, {"ID": 7, "V": "x1", "B": "b1"}, T + 2000),
        m(topic, 7, {"ID": 7, "V": "x2"}, T + 2000),
        m(topic, 7, {"ID": 7, "V": "x3"}, T + 2000),
        m(topic, 900, {"ID": 900}, T + 1),  # marker, its own key
    ]


def phase2(topic):
    return [
        # key 1 re-delivered out of order: older updates and an older delete.
        m(topic, 1, {"ID": 1, "V": "v200", "B": "b200"}, T + 200),
        m(topic, 1, None, T + 150),
        m(topic, 1, {"ID": 1, "V": "v100"}, T + 100),
        m(topic, 4, {"ID": 4, "V": "second"}, T + 500),
        m(topic, 5, None, T + 100),
        m(topic, 901, {"ID": 901}, T + 1),  # marker
    ]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["on"] = c.scenario("on", {"guard.on": "pr_rec"}, MAP_TABLE)
    S["off"] = c.scenario("off", {"guard.off": "pr_rec"}, MAP_TABLE,
                          env={"FORCE_CHECK_ON_OFFSET": "false"})
    c.produce(phase1("guard.on") + phase1("guard.off"))
    R["on"], R["off"] = S["on"].start(), S["off"].start()
    for k in ("on", "off"):
        coll = S[k].coll("rec")
        wait_for(lambda: coll.find_one({"id": 900}), 30, "phase 1 marker (%s)" % k, R[k])
    c.produce(phase2("guard.on") + phase2("guard.off"))
    for k in ("on", "off"):
        coll = S[k].coll("rec")
        wait_for(lambda: coll.find_one({"id": 901}), 30, "phase 2 marker (%s)" % k, R[k])


def tearDownModule():
    harness.stop_module()


def docs(k):
    return harness.by_key(S[k].coll("rec"))


class GuardOn(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = docs("on")

    @classmethod
    def tearDownClass(cls):
        R["on"].stop()

    def test_older_redelivered_messages_not_applied(self):
        d = self.one(1)
        self.assertEqual(d["v"], "v300")
        self.assertNotIn("b", d)
        self.assertEqual(d["__STATE__"], "PUBLIC", "an older delete must not be applied")
        self.assertEqual(d["__internal__counter"], T + 300)
        self.assertEqual(d["__internal__kafkaInfo"]["offset"], "0")

    def test_decreasing_timestamps_in_one_run(self):
        d = self.one(2)
        self.assertEqual(d["v"], "v30")
        self.assertNotIn("b", d)
        self.assertEqual(d["__internal__counter"], T + 30)

    def test_stale_message_between_applied_ones_leaks_nothing(self):
        # One by one: v=new (T+300), then T+100 is stale (skipped), then c=c400 (T+400).
        d = self.one(3)
        self.assertEqual(d["c"], "c400")
        self.assertEqual(d["v"], "new", "the stale message's value must not be applied")
        self.assertNotIn("b", d, "a field of the stale message must not be applied")
        self.assertEqual(d["__internal__counter"], T + 400)

    def test_equal_counter_is_reapplied(self):
        self.assertEqual(self.one(4)["v"], "second")

    def test_stale_delete_not_applied(self):
        d = self.one(5)
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["v"], "alive")

    def test_many_updates_of_one_record_in_one_run(self):
        d = self.one(6)
        self.assertEqual(d["v"], 70)
        self.assertEqual(d.get("b"), "first-b", "a field set only by the first of 71 updates")
        self.assertEqual(d["__internal__counter"], T + 1070)

    def test_equal_timestamps_in_one_run(self):
        d = self.one(7)
        self.assertEqual((d["v"], d["b"]), ("x3", "b1"))

    def test_no_duplicates_and_no_errors(self):
        self.assertEqual(sorted(self.docs), [1, 2, 3, 4, 5, 6, 7, 900, 901])
        for id_, ds in self.docs.items():
            self.assertEqual(len(ds), 1, "duplicates for id %s" % id_)
        self.assertEqual(error_logs(R["on"]), [], "stale messages are never an error")


class GuardOff(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = docs("off")

    @classmethod
    def tearDownClass(cls):
        R["off"].stop()

    def test_older_messages_applied_in_offset_order(self):
        d = self.one(1)
        # v200 (b=b200), then the delete, then v100: public again with v100.
        self.assertEqual(d["v"], "v100")
        self.assertEqual(d["b"], "b200")
        self.assertEqual(d["__STATE__"], "PUBLIC")
        self.assertEqual(d["__internal__counter"], T + 100)

    def test_decreasing_timestamps_in_one_run_applied(self):
        d = self.one(2)
        self.assertEqual(d["v"], "v10")
        self.assertEqual(d["b"], "b20")
        self.assertEqual(d["__internal__counter"], T + 10)

    def test_all_of_one_run_applied(self):
        d = self.one(3)
        self.assertEqual((d["v"], d["b"], d["c"]), ("old", "stale", "c400"))

    def test_older_delete_applied(self):
        d = self.one(5)
        self.assertEqual(d["__STATE__"], "DELETED")
        self.assertEqual(d["v"], "alive")

    def test_many_updates_of_one_record_in_one_run(self):
        d = self.one(6)
        self.assertEqual(d["v"], 70)
        self.assertEqual(d.get("b"), "first-b", "a field set only by the first of 71 updates")

    def test_no_duplicates(self):
        self.assertEqual(sorted(self.docs), [1, 2, 3, 4, 5, 6, 7, 900, 901])


if __name__ == "__main__":
    harness.main()
