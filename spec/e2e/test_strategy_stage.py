"""End-to-end: the strategies of a poll run once per projection over all its
partition runs (the poll's strategies stage). A single view found from records
of three partitions is recorded once, with one lookup for all of them, and so
are those of more documents than a call of strategies taking them whole may
hold (the walk reads one field of each); a
strategy failing in one partition's run stops that partition at its message,
and the other partitions' runs of the same stage are recorded and committed."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, ref_row, stop_log, wait_for  # noqa: E402

TOPICS = {"stage.m": 3, "stage.f": 3, "stage.b": 3, "stage.ref": 1}
T = 1_700_000_000_000

# merge: rows 1..6, two per partition; all lead to the ref r1 but row 6 (r2)
MERGE = [ref_row("stage.m", (i - 1) // 2, i, "n%d" % i, "r2" if i == 6 else "r1", T + i)
         for i in range(1, 7)]
# fail: p0 rows 11 (r1), 12 (r2); p1 row 13 (r3); p2 rows 14 (r4), 15 (bad), 16 (r5)
FAIL = [ref_row("stage.f", 0, 11, "a", "r1", T + 1), ref_row("stage.f", 0, 12, "b", "r2", T + 2),
        ref_row("stage.f", 1, 13, "c", "r3", T + 3), ref_row("stage.f", 2, 14, "d", "r4", T + 4),
        ref_row("stage.f", 2, 15, "e", "bad", T + 5), ref_row("stage.f", 2, 16, "f", "r5", T + 6)]
REFS = ["r1", "r2", "r3", "r4", "r5", "bad"]
# big: 3 partitions of 250 rows, refs r1..r5 (more than 512 documents a poll)
BIG = [ref_row("stage.b", i % 3, 1000 + i, "b%d" % i, "r%d" % (1 + i % 5), T + i)
       for i in range(750)]

S, R = {}, {}


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    # The messages of the three partitions, all produced before rtu starts, come
    # in one fetch response, which one poll takes whole (its grace after the first
    # message); the fetch wait is long so that no fetch of another response
    # comes between.
    env = {"KAFKA_CONSUMER_MAX_WAIT_TIME": "3000"}
    for name, topic in (("merge", "stage.m"), ("fail", "stage.f"), ("big", "stage.b")):
        S[name] = harness.refs_scenario(c, name, {topic: "pr_rows", "stage.ref": "pr_refs"}, env)
        S[name].coll("lcrefs").insert_many([{"ID": r, "__STATE__": "PUBLIC"} for r in REFS])
    c.produce(MERGE + FAIL + BIG)
    for k in S:
        R[k] = S[k].start()


def tearDownModule():
    harness.stop_module()


def pcs(k):
    return {d["identifier"]["ID"]: d for d in S[k].coll("pc").find({"type": "sv_refs"})}


class OneStagePerProjection(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["merge"]
        wait_for(lambda: harness.committed_offsets(S["merge"].group, "stage.m") == {}, 60,
                 "every row committed", rtu)
        time.sleep(0.3)
        cls.metrics = rtu.metrics()
        cls.pcs = pcs("merge")
        rtu.stop()

    def test_one_poll(self):
        # the premise of what follows: one poll took the three partitions' runs
        self.assertEqual(self.metrics["rtu_consumer_batch_processing_count"], 1)

    def test_single_view_of_three_partitions_recorded_once(self):
        self.assertEqual(sorted(self.pcs), ["r1", "r2"])
        self.assertEqual(self.metrics['rtu_projection_changes_total{single_view="sv_refs"}'], 2)
        # r1 names the last of the messages leading to it, here row 5's (p2, offset 0)
        change = self.pcs["r1"]["changes"][0]
        self.assertEqual((change["partition"], change["offset"]), (2, "0"), change)

    def test_one_lookup_for_all_runs(self):
        self.assertEqual(self.metrics["rtu_strategy_documents_total"], 6)
        self.assertEqual(self.metrics["rtu_strategy_lookups_total"], 1)


class ManyDocumentsOneLookup(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["big"]
        wait_for(lambda: harness.committed_offsets(S["big"].group, "stage.b") == {}, 60,
                 "every row committed", rtu)
        time.sleep(0.3)
        cls.metrics = rtu.metrics()
        cls.pcs = pcs("big")
        rtu.stop()

    def test_one_lookup_a_poll(self):
        # the walk reads REF alone: one identify call for a poll's documents, its
        # hop one query (calls of at most 512 documents would make two for a
        # poll of the 750, as one poll most often takes them)
        self.assertEqual(self.metrics["rtu_strategy_documents_total"], 750)
        self.assertEqual(self.metrics["rtu_strategy_lookups_total"],
                         self.metrics["rtu_consumer_batch_processing_count"])
        self.assertEqual(sorted(self.pcs), ["r1", "r2", "r3", "r4", "r5"])


class FailureStopsOnlyItsPartition(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["fail"]
        rtu.wait_error(2, 60, "the strategy error of stage.f[2]")
        wait_for(lambda: set(harness.committed_offsets(S["fail"].group, "stage.f")) == {2}, 30,
                 "partitions 0 and 1 committed", rtu)
        time.sleep(0.3)
        cls.metrics = rtu.metrics()
        cls.pcs = pcs("fail")
        cls.rtu = rtu
        rtu.stop()

    def test_stops_at_the_failing_message(self):
        lines = stop_log(self.rtu, "stage.f", 2)
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(str(lines[0].get("offset")), "1", lines[0])
        self.assertIn("pickyRef refuses ref bad", lines[0].get("cause", ""), lines[0])
        self.assertEqual(stop_log(self.rtu, "stage.f", 0), [])
        self.assertEqual(stop_log(self.rtu, "stage.f", 1), [])
        self.assertEqual(harness.committed_offsets(S["fail"].group, "stage.f"), {2: 1})

    def test_other_partitions_and_earlier_messages_recorded(self):
        # r5 comes after the stop; r4 before it, in the failing run
        self.assertEqual(sorted(self.pcs), ["r1", "r2", "r3", "r4"])
        change = self.pcs["r4"]["changes"][0]
        self.assertEqual((change["partition"], change["offset"]), (2, "0"), change)
        self.assertEqual(self.metrics["rtu_strategy_errors_total"], 1)


if __name__ == "__main__":
    harness.main()
