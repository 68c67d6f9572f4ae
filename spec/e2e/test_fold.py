"""End-to-end: a folded run ends where one-by-one processing ends (issue 18
item 2). A record inserted, updated and deleted within one run (the messages are
produced before rtu starts, so its first poll takes them all) gets, as its last
pr-update, the DELETE that one-by-one processing ends with: before is the
record as the update left it, no after. With DELETE_MECHANISM=hard nothing is
ever stored for it, and the DELETE is still produced (the fold once produced
nothing, or with soft deletes an INSERT whose after was DELETED)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402

TOPICS = {"fold.soft": 1, "fold.hard": 1, "fold.soft.pr": 1, "fold.hard.pr": 1}
T = 1_700_000_000_000

MAP_TABLE = {
    "pr_acc": {
        "destination": "accounts",
        "conversion": {
            "id": {"fieldName": "accountId", "cast": "__fromFile__[defaultIdentity]"},
            "name": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
        },
        "fieldsInKey": ["accountId"],
    }
}

S, R = {}, {}
CLUSTER = []


def dbz(topic, key_id, op, before, after, ts):
    value = {"before": before, "after": after, "source": {"table": "accounts"}, "op": op,
             "ts_ms": ts, "transaction": None}
    return {"topic": topic, "partition": 0, "key": {"id": key_id}, "value": value,
            "timestamp": ts}


def story(topic):
    return [
        dbz(topic, 1, "c", None, {"id": 1, "name": "created"}, T + 1),
        dbz(topic, 1, "u", {"id": 1, "name": "created"}, {"id": 1, "name": "updated"}, T + 2),
        dbz(topic, 1, "d", {"id": 1, "name": "updated"}, None, T + 3),
        dbz(topic, 999, "c", None, {"id": 999, "name": "marker"}, T + 4),
    ]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    CLUSTER.append(c)
    for mech in ("soft", "hard"):
        S[mech] = c.scenario(
            mech, {"fold." + mech: "pr_acc"}, MAP_TABLE, adapter_name="debezium",
            env={"DELETE_MECHANISM": mech, "GENERATE_KAFKA_PROJECTION_UPDATES": "true"},
            files={"prUpdates/kafkaProjectionUpdates.json":
                   json.dumps({"pr_acc": {"updatesTopic": "fold.%s.pr" % mech}})})
        S[mech].env["KAFKA_PROJECTION_UPDATES_FOLDER"] = os.path.join(S[mech].dir, "prUpdates")
    c.produce(story("fold.soft") + story("fold.hard"))
    for k, sc in S.items():
        R[k] = sc.start()


def tearDownModule():
    harness.stop_module()


class InsertedAndDeletedInOneRun(E2ETestCase):
    def last_pr_update(self, mech):
        coll = S[mech].coll("accounts")
        topic = "fold.%s.pr" % mech
        # pr-updates are produced after the run's writes: wait for the marker's
        wait_for(lambda: any(json.loads(m["key"]) == {"accountId": 999}
                             for m in CLUSTER[0].read_topic(topic)), 30,
                 "the marker's pr-update", R[mech])
        msgs = CLUSTER[0].read_topic(topic)
        updates = [json.loads(m["value"]) for m in msgs
                   if json.loads(m["key"]) == {"accountId": 1}]
        self.assertTrue(updates, "no pr-update for the record")
        self.assertEqual(error_logs(R[mech]), [])
        return updates[-1], coll.find_one({"accountId": 1})

    def check_delete(self, last):
        self.assertEqual(last["operationType"], "DELETE")
        self.assertEqual(last["before"]["name"], "updated")
        self.assertEqual(last["before"]["__STATE__"], "PUBLIC")
        self.assertNotIn("after", last)
        self.assertEqual(last["__internal__kafkaInfo"]["offset"], 2)

    def test_soft_delete(self):
        last, doc = self.last_pr_update("soft")
        self.check_delete(last)
        self.assertEqual((doc["name"], doc["__STATE__"]), ("updated", "DELETED"))
        self.assertEqual(last["documentId"], str(doc["_id"]))

    def test_hard_delete(self):
        last, doc = self.last_pr_update("hard")
        self.check_delete(last)
        self.assertIsNone(doc)


if __name__ == "__main__":
    harness.main()
