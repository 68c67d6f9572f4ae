"""End-to-end: a data problem is named as a data problem, not retried as an
outage (issue 18 item 1).

0. A write refused with E11000 on a unique index of the user's: the partition
   stops at that message with a `data` cause naming the collection, the index and
   the duplicate key; no outage is reported.
1. A projection collection that already holds two documents of one primary key:
   its unique primary-key index cannot be built, so `rtu run` exits 2 at start
   with a line naming the collection and the duplicate key (without the index,
   upserts could duplicate records).
2. A projection-changes collection that already holds two documents of one
   single view: its unique index cannot be built; rtu says so loudly (an error
   line, a /-/check-up warning, rtu_index_build_failures_total{collection}) and
   goes on writing projections and projection changes; each record has one
   pr-update message, not one per retry.
4. A write command refused as Unauthorized (code 13, through the test server's
   failCommand fail point): a problem of configuration, neither an outage nor a
   message's: the partition stops at the run's first message, named `config`,
   nothing is committed past it, and once the cause is gone a restarted rtu
   writes every record.
3. MongoDB cut while the strategies of a run are running (after its pr-update
   messages were acknowledged): the run waits on the outage and is retried;
   afterwards each record still has exactly one pr-update message, and every
   projection change is recorded.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, row  # noqa: E402

TOPICS = {"de.cfg": 1, "de.uniq": 1, "de.pk": 1, "de.pc": 1, "de.pc.pr": 1, "de.out": 1, "de.out.pr": 1}
T = 1_700_000_000_000

IDENT = r'''
return function(document, db, log)
  return { { ID = document.id } }
end
'''

# Slow on record 1 (a few seconds of plain Lua), then a lookup: a MongoDB cut
# during the loop makes the lookup fail.
SLOW_LOOKUP = r'''
return function(document, db, log)
  if document.id == 1 then
    -- Busy for 8 s of the process's CPU (some 4 s or more of wall time), so the
    -- test sees the run's pr-updates and cuts MongoDB before this lookup: a fixed
    -- loop count finished before the test's read of the topic on a quiet machine.
    local stop = os.clock() + 8
    while os.clock() < stop do end
  end
  db:find("rows", { id = document.id })
  return { { ID = document.id } }
end
'''


def pc_scenario(c, name, topic, strategy, env=None):
    sc = c.scenario(name, {topic: "pr_rows"},
                    harness.rows_map_table(changes={"sv_rows": "__fromFile__[strat]"}),
                    files={"strategies/strat.lua": strategy,
                           "prUpdates/kafkaProjectionUpdates.json":
                               json.dumps({"pr_rows": {"updatesTopic": topic + ".pr"}})},
                    env=dict({"PROJECTIONS_CHANGES_ENABLED": "true",
                              "PROJECTIONS_CHANGES_COLLECTION_NAME": "pc",
                              "GENERATE_KAFKA_PROJECTION_UPDATES": "true",
                              "STRATEGIES_MAX_EXEC_TIME_MS": "60000"}, **(env or {})))
    sc.env["STRATEGIES_FOLDER"] = os.path.join(sc.dir, "strategies")
    sc.env["KAFKA_PROJECTION_UPDATES_FOLDER"] = os.path.join(sc.dir, "prUpdates")
    return sc


@harness.report_on_error
def setUpModule():
    harness.start_module(TOPICS)


def tearDownModule():
    harness.stop_module()


def pr_update_ids(c, topic):
    """The record id of every pr-update message of topic, in order."""
    return [json.loads(m["key"])["id"] for m in c.read_topic(topic)]


class DuplicateOnAUsersUniqueIndex(E2ETestCase):
    """A write refused with E11000 on the user's own unique index: the partition
    stops at that message, named as a data problem, and is not retried."""

    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = c.scenario("uniq", {"de.uniq": "pr_rows"}, harness.rows_map_table())
        sc.coll("rows").create_index("name", unique=True, name="name_unique")
        rtu = sc.start()
        rtu.wait_assigned(30)
        # offsets 0, 1, 2: ids 1, 2, 3; id 2 repeats id 1's name
        c.produce([row("de.uniq", 0, 1, T + 1, name="same"), row("de.uniq", 0, 2, T + 2, name="same"),
                   row("de.uniq", 0, 3, T + 3)])
        cls.line = rtu.wait_error(0, 30, "the stop of partition 0")[0]
        time.sleep(2.0)
        cls.checkup = json.loads(rtu.http("/-/check-up")[2])
        cls.ids = harness.ids(sc)
        cls.rtu = rtu
        rtu.stop(10)

    def test_stops_at_the_message_naming_collection_index_and_key(self):
        self.assertEqual(str(self.line.get("offset")), "1", self.line)
        self.assertEqual(self.line.get("kind"), "data", self.line)
        cause = self.line.get("cause", "")
        for part in ("collection rows", "name_unique", "dup key", "same", "11000"):
            self.assertIn(part, cause, cause)
        # record 2 is not written; 3 went in the same unordered bulk (re-applied
        # idempotently when the partition resumes)
        self.assertIn(1, self.ids)
        self.assertNotIn(2, self.ids)
        self.assertEqual([p["offset"] for p in self.checkup["stoppedPartitions"]], [1])

    def test_not_an_outage(self):
        self.assertEqual(self.rtu.find_logs(lambda l: "unavailable" in l.get("msg", "")), [])


class RefusedForConfiguration(E2ETestCase):
    """Unauthorized on the projection's write command: the run must not count as
    applied (its offsets were once committed past it, losing the records)."""

    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = c.scenario("cfg", {"de.cfg": "pr_rows"}, harness.rows_map_table())
        admin = c.mongo.admin
        admin.command({"configureFailPoint": "failCommand", "mode": "alwaysOn",
                       "data": {"failCommands": ["update"], "errorCode": 13, "appName": "rtu"}})
        try:
            rtu = sc.start()
            rtu.wait_assigned(30)
            c.produce([row("de.cfg", 0, 1, T + 1), row("de.cfg", 0, 2, T + 2),
                       row("de.cfg", 0, 3, T + 3)])
            cls.line = rtu.wait_error(0, 30, "the stop of partition 0")[0]
            time.sleep(2.0)
            cls.ids_refused = harness.ids(sc)
            cls.checkup = json.loads(rtu.http("/-/check-up")[2])
            rtu.stop(10)
            cls.left = harness.committed_offsets(sc.group, "de.cfg")
        finally:
            admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        rtu = sc.start()
        rtu.wait_assigned(30)
        wait_for(lambda: harness.ids(sc) == [1, 2, 3], 30, "every record once writes are allowed")
        cls.ids_after = harness.ids(sc)
        rtu.stop(10)

    def test_stops_at_the_first_message_named_as_configuration(self):
        self.assertEqual(str(self.line.get("offset")), "0", self.line)
        self.assertEqual(self.line.get("kind"), "config", self.line)
        self.assertIn("13", self.line.get("cause", ""), self.line)
        self.assertEqual([p["offset"] for p in self.checkup["stoppedPartitions"]], [0])

    def test_nothing_committed_past_it_and_nothing_lost(self):
        self.assertEqual(self.ids_refused, [])
        self.assertEqual(self.left, {0: 0})
        self.assertEqual(self.ids_after, [1, 2, 3])


class PrimaryKeyIndexOverDuplicates(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = c.scenario("pk", {"de.pk": "pr_rows"}, harness.rows_map_table())
        sc.coll("rows").insert_many([{"id": 7, "name": "a"}, {"id": 7, "name": "b"},
                                     {"id": 8, "name": "c"}])
        cls.rtu = sc.start()
        cls.code = cls.rtu.wait_exit(60)

    def test_exits_2_naming_the_collection_and_a_duplicate_key(self):
        self.assertEqual(self.code, 2, self.rtu.report())
        lines = self.rtu.find_logs(lambda l: l.get("level", 0) >= 50)
        text = " ".join("%s %s" % (l.get("msg", ""), l.get("cause", "")) for l in lines)
        self.assertIn("collection rows", text, text)
        self.assertIn("mia_primary_key_index", text, text)
        self.assertIn("dup key", text, text)
        self.assertIn("7", text, text)
        # a data problem, not an outage
        self.assertEqual(self.rtu.find_logs(lambda l: "unavailable" in l.get("msg", "")), [])


class ProjectionChangesIndexOverDuplicates(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = pc_scenario(c, "pcdup", "de.pc", IDENT)
        old = {"type": "sv_rows", "identifier": {"ID": 1}, "changes": [{"state": "DONE"}]}
        sc.coll("pc").insert_many([dict(old), dict(old)])
        rtu = sc.start()
        rtu.wait_assigned(30)
        c.produce([row("de.pc", 0, i, T + i) for i in range(1, 6)])
        wait_for(lambda: harness.ids(sc) == [1, 2, 3, 4, 5], 30, "records written", rtu)
        wait_for(lambda: sc.coll("pc").count_documents({"changes.state": "NEW"}) == 5, 30,
                 "projection changes recorded", rtu)
        time.sleep(2.0)  # a retry loop would produce more pr-updates meanwhile
        cls.pr_ids = pr_update_ids(c, "de.pc.pr")
        cls.checkup = json.loads(rtu.http("/-/check-up")[2])
        cls.metrics = rtu.metrics()
        cls.pc_ids = sorted(d["identifier"]["ID"] for d in sc.coll("pc").find({}))
        cls.rtu = rtu
        cls.stop_time = rtu.stop(10)

    def test_goes_on_writing(self):
        self.assertEqual(self.pc_ids, [1, 1, 2, 3, 4, 5])
        self.assertEqual(self.rtu.find_logs(lambda l: "unavailable" in l.get("msg", "")), [])
        self.assertEqual(self.checkup["stoppedPartitions"], [])

    def test_loud_warning(self):
        lines = self.rtu.find_logs(lambda l: l.get("level", 0) >= 50
                                   and "index cannot be built" in l.get("msg", ""))
        self.assertEqual(len(lines), 1, self.rtu.report())
        self.assertEqual(lines[0].get("collection"), "pc")
        self.assertIn("dup key", lines[0].get("cause", ""))
        warnings = self.checkup.get("warnings", [])
        self.assertEqual(len(warnings), 1, self.checkup)
        self.assertIn("pc", warnings[0])
        self.assertIn("type_sv_rows_ID", warnings[0])
        self.assertEqual(self.metrics.get('rtu_index_build_failures_total{collection="pc"}'), 1)

    def test_one_pr_update_per_record(self):
        self.assertEqual(sorted(self.pr_ids), [1, 2, 3, 4, 5])


class OutageDuringStrategies(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        proxy = harness.tcp_proxy("127.0.0.1", int(c.mongo_url.rsplit(":", 1)[1]))
        sc = pc_scenario(c, "pcout", "de.out", SLOW_LOOKUP,
                         env={"MONGODB_URL": "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=1000"
                              % proxy.port})
        rtu = sc.start()
        rtu.wait_assigned(30)
        c.produce([row("de.out", 0, i, T + i) for i in range(1, 5)])
        # the pr-updates are acknowledged before the strategies run
        wait_for(lambda: len(pr_update_ids(c, "de.out.pr")) == 4, 30, "pr-updates", rtu,
                 interval=0.05)
        proxy.cut("refuse")
        cls.pcs_at_cut = sc.coll("pc").count_documents({})
        # cut until the strategies' lookup has met it (the loop before it is slow)
        harness.wait_or_note(
            lambda: rtu.find_logs(lambda l: "unavailable" in l.get("msg", "")), 60,
            "the outage seen by the strategies", rtu)
        time.sleep(2.0)  # a retry or two meanwhile
        proxy.restore()
        wait_for(lambda: sc.coll("pc").count_documents({}) == 4, 90,
                 "projection changes after the outage", rtu)
        time.sleep(1.0)
        cls.pr_ids = pr_update_ids(c, "de.out.pr")
        cls.pc_ids = sorted(d["identifier"]["ID"] for d in sc.coll("pc").find({}))
        cls.rtu = rtu
        rtu.stop(10)

    def test_the_cut_came_during_the_strategies(self):
        self.assertEqual(self.pcs_at_cut, 0)
        self.assertTrue(self.rtu.find_logs(lambda l: "unavailable" in l.get("msg", "")),
                        self.rtu.report())

    def test_one_pr_update_per_record_after_the_outage(self):
        self.assertEqual(sorted(self.pr_ids), [1, 2, 3, 4])

    def test_every_projection_change_recorded(self):
        self.assertEqual(self.pc_ids, [1, 2, 3, 4])


if __name__ == "__main__":
    harness.main()
