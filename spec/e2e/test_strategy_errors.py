"""End-to-end: a hand-written strategy (STRATEGIES_FOLDER, bound by mapTable.json
`changes`) that raises on one record in the middle of a run stops its partition at
exactly that record's message: the committed offset is that message's, the
projection changes of the messages before it are written, none of it or after it
are, the other partition goes on, and the log line names topic, partition, offset,
the record and the cause. A restart stops at the same message. A second strategy
that never ends on one record stops at that record's message the same way."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, stop_log, row  # noqa: E402

TOPICS = {"sverr.rows": 2, "sverr.slow": 1, "sverr.lc": 1, "sverr.lcref": 1}
T = 1_700_000_000_000

PICKY = r'''
return function(document, db, log)
  if document.id == 3 then
    error("picky strategy refuses record " .. document.id)
  end
  if document.id == 13 then while true do end end
  return { { ID = document.id } }
end
'''


def map_table():
    # pr_rows -> rows (ID key, NAME string), single view sv_rows by PICKY above
    return harness.rows_map_table(changes={"sv_rows": "__fromFile__[picky]"})


# partition 0: offsets 0..4 for ids 1..5, the strategy raises on id 3 (offset 2)
ROWS = ([row("sverr.rows", 0, i, T + i) for i in range(1, 6)]
        + [row("sverr.rows", 1, i, T + i) for i in (10, 11)])
# offsets 0..3 for ids 12, 13, 14, 15: id 13 (offset 1) never ends
SLOW = [row("sverr.slow", 0, i, T + i) for i in (12, 13, 14, 15)]

S, R = {}, {}


def lc_row(id_, name, ref, ts):
    return harness.ref_row("sverr.lc", 0, id_, name, ref, ts)


# offsets 0..3 create rows 1..4 (no ref exists yet, so no single view); then the
# refs r2 and bad appear in MongoDB, and offsets 4..8 update rows in one run:
# 4 row 2 NAME (-> bad), 5 row 4 REF r2 -> bad, 6 row 1 NAME (-> r2),
# 7 row 2 NAME again, 8 row 3 NAME (-> r2).
# Row 2 goes to the strategies once, for offsets 4 to 7; row 4 twice (its REF
# changed: before and after). Both fail; the earliest message is row 2's.
LC_CREATE = [lc_row(1, "a", "r2", T + 1), lc_row(2, "b", "bad", T + 2),
             lc_row(3, "c", "r2", T + 3), lc_row(4, "d", "r2", T + 4)]
LC_UPDATE = [lc_row(2, "bb", "bad", T + 11), lc_row(4, "dd", "bad", T + 12),
             lc_row(1, "aa", "r2", T + 13), lc_row(2, "bbb", "bad", T + 14),
             lc_row(3, "cc", "r2", T + 15)]


def scenario(c, name, topic):
    sc = c.scenario(name, {topic: "pr_rows"}, map_table(),
                    files={"strategies/picky.lua": PICKY},
                    env={"PROJECTIONS_CHANGES_ENABLED": "true",
                         "PROJECTIONS_CHANGES_COLLECTION_NAME": "pc",
                         "STRATEGIES_MAX_EXEC_TIME_MS": "500",
                         "KAFKA_SESSION_TIMEOUT_MS": "3000"})
    sc.env["STRATEGIES_FOLDER"] = os.path.join(sc.dir, "strategies")
    return sc


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["rows"] = scenario(c, "rows", "sverr.rows")
    S["slow"] = scenario(c, "slow", "sverr.slow")
    # the walk reads only REF of a row, so an update of NAME alone runs the
    # strategies once for the record (the stored document before the run and the
    # new one are the same to them): when they fail, the partition still stops at
    # the record's first message of the run
    S["lc"] = harness.refs_scenario(c, "lc", {"sverr.lc": "pr_rows", "sverr.lcref": "pr_refs"},
                                    {"KAFKA_SESSION_TIMEOUT_MS": "3000"})
    # Everything is produced before rtu starts, so a partition's messages come in one run.
    c.produce(ROWS + SLOW + LC_CREATE)
    for k in ("rows", "slow", "lc"):
        R[k] = S[k].start()


def tearDownModule():
    harness.stop_module()


def pc_ids(k):
    return sorted(d["identifier"]["ID"] for d in S[k].coll("pc").find({"type": "sv_rows"}))


def the_stop_line(tc, rtu, topic, partition):
    lines = stop_log(rtu, topic, partition)
    tc.assertEqual(len(lines), 1, "one error line for %s[%d]: %r" % (topic, partition, lines))
    return lines[0]


class StrategyError(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["rows"]
        rtu.wait_error(0, 60, "the error of partition 0")
        wait_for(lambda: set(pc_ids("rows")) >= {10, 11}, 30, "partition 1's changes", rtu)
        time.sleep(0.5)
        cls.first_pcs = pc_ids("rows")
        cls.metrics = rtu.metrics()
        cls.first_run = rtu
        rtu.stop()
        cls.restart = S["rows"].start()
        cls.restart.wait_error(0, 60, "the error of partition 0 after the restart")
        time.sleep(0.5)
        cls.second_pcs = pc_ids("rows")
        cls.restart.stop()

    def test_log_line_names_topic_partition_offset_record_and_cause(self):
        for rtu in (self.first_run, self.restart):
            l = the_stop_line(self, rtu, "sverr.rows", 0)
            self.assertEqual(str(l.get("offset")), "2", l)
            self.assertGreaterEqual(l.get("level", 0), 50)
            text = "%s %s" % (l.get("msg", ""), l.get("cause", ""))
            self.assertIn("picky strategy refuses record 3", text, l)
            self.assertIn('{"id":3}', text, l)
        self.assertEqual(stop_log(self.first_run, "sverr.rows", 1), [])

    def test_metrics(self):
        m = self.metrics
        self.assertEqual(m["rtu_strategy_errors_total"], 1)
        self.assertEqual(m["rtu_strategy_timeouts_total"], 0)
        self.assertEqual(m['rtu_projection_changes_total{single_view="sv_rows"}'], 4)
        # one freshness observation per projection change written
        self.assertEqual(m['rtu_projection_change_freshness_seconds_count{type="sv_rows"}'], 4)
        self.assertEqual(
            m['rtu_projection_change_freshness_seconds_bucket{type="sv_rows",le="+Inf"}'], 4)
        self.assertEqual(m['rtu_messages_failed_total{topic="sverr.rows"}'], 1)
        self.assertGreaterEqual(m["rtu_strategy_duration_seconds_count"], 1)

    def test_changes_of_the_messages_before_it_are_written(self):
        for got in (self.first_pcs, self.second_pcs):
            self.assertEqual(got, [1, 2, 10, 11])

    def test_committed_offset_is_the_failing_message(self):
        offsets = harness.committed_offsets(S["rows"].group, "sverr.rows")
        # p0 resumes at offset 2 (id 3); p1 has nothing left
        self.assertEqual(offsets, {0: 2})


class StrategyTimeout(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["slow"]
        cls.line = rtu.wait_error(0, 60, "the timeout of partition 0")
        time.sleep(0.3)
        cls.pcs = pc_ids("slow")
        cls.metrics = rtu.metrics()
        rtu.stop()

    def test_metrics(self):
        self.assertEqual(self.metrics["rtu_strategy_timeouts_total"], 1)
        self.assertEqual(self.metrics["rtu_strategy_errors_total"], 0)

    def test_stops_at_the_record_that_never_ends(self):
        l = the_stop_line(self, R["slow"], "sverr.slow", 0)
        self.assertEqual(str(l.get("offset")), "1", l)
        self.assertIn("STRATEGIES_MAX_EXEC_TIME_MS", l.get("cause", ""), l)
        self.assertEqual(self.pcs, [12])
        self.assertEqual(harness.committed_offsets(S["slow"].group, "sverr.slow"), {0: 1})


class LowCodeUpdateSameInput(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        sc = S["lc"]
        rtu = R["lc"]
        wait_for(lambda: harness.committed_offsets(sc.group, "sverr.lc") == {}, 60,
                 "the creates committed", rtu)
        cls.created = rtu.metrics()
        rtu.stop()
        # the refs appear (as if another instance had written them)
        for ref in ("r2", "bad"):
            sc.coll("lcrefs").insert_one({"ID": ref, "__STATE__": "PUBLIC"})
        harness.cluster().produce(LC_UPDATE)
        cls.rtu = sc.start()  # the four updates come in one run
        cls.rtu.wait_error(0, 60, "the strategy error of sverr.lc[0]")
        time.sleep(0.3)
        cls.metrics = cls.rtu.metrics()
        cls.pcs = sorted(d["identifier"]["ID"] for d in sc.coll("pc").find({"type": "sv_refs"}))
        cls.names = {d["ID"]: d["NAME"] for d in sc.coll("lcrows").find({})}
        cls.rtu.stop()

    def test_creates_ran_strategies_once_each(self):
        self.assertEqual(self.created["rtu_strategy_documents_total"], 4)

    def test_updates_of_unread_fields_run_the_strategies_once_per_record(self):
        # rows 2, 1, 3 once each (not before and after), row 4 before and
        # after; the one-by-one reruns of the failed batch are not counted
        self.assertEqual(self.metrics["rtu_strategy_documents_total"], 5)
        self.assertEqual(self.metrics["rtu_strategy_errors_total"], 1)

    def test_stops_at_the_records_first_message_of_the_run(self):
        line = the_stop_line(self, self.rtu, "sverr.lc", 0)
        # not 5 (row 4, the first failing by the offset its changes name), nor 7
        self.assertEqual(str(line.get("offset")), "4", line)
        self.assertIn("pickyRef refuses ref bad", line.get("cause", ""), line)
        self.assertEqual(harness.committed_offsets(S["lc"].group, "sverr.lc"), {0: 4})
        # written before the strategies: every update is in the projection
        self.assertEqual(self.names, {1: "aa", 2: "bbb", 3: "cc", 4: "dd"})
        # the views of messages 5, 6 and 8 come after the stop: not recorded
        self.assertEqual(self.pcs, [])


if __name__ == "__main__":
    harness.main()
