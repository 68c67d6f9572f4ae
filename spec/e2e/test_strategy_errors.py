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

TOPICS = {"sverr.rows": 2, "sverr.slow": 1}
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
    # Everything is produced before rtu starts, so a partition's messages come in one run.
    c.produce(ROWS + SLOW)
    for k in S:
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
        rtu.wait_log(lambda l: l.get("level", 0) >= 50 and l.get("partition") == 0, 60,
                     "the error of partition 0")
        wait_for(lambda: set(pc_ids("rows")) >= {10, 11}, 30, "partition 1's changes", rtu)
        time.sleep(0.5)
        cls.first_pcs = pc_ids("rows")
        cls.metrics = rtu.metrics()
        cls.first_run = rtu
        rtu.stop()
        cls.restart = S["rows"].start()
        cls.restart.wait_log(lambda l: l.get("level", 0) >= 50 and l.get("partition") == 0, 60,
                             "the error of partition 0 after the restart")
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
        cls.line = rtu.wait_log(lambda l: l.get("level", 0) >= 50 and l.get("partition") == 0,
                                60, "the timeout of partition 0")
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


if __name__ == "__main__":
    harness.main()
