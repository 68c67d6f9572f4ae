"""End-to-end: operating rtu.

- Dead-letter topic (DEAD_LETTER_TOPIC): a message that cannot be applied is
  recorded there as it came (key, value) with its error and source in rtu.*
  headers, and its partition goes on after it; nothing else is skipped.
- Hot reload (SCRIPTS_HOT_RELOAD=true): a hand-written strategy edited while
  messages flow is swapped in between batches; an invalid edit is refused with a
  log line and the running generation goes on.
- SIGHUP: a partition stopped by a cast error is resumed from the failing message
  by the new script generation once the cast is fixed; nothing is lost.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, stop_log, row  # noqa: E402

TOPICS = {"ops.dlq": 2, "ops.dead": 1, "ops.reload": 1, "ops.hup": 1, "ops.ptopic": 2}
T = 1_700_000_000_000

MAP_TABLE = harness.rows_map_table()  # pr_rows -> rows: ID (key), NAME (string)

RELOAD_MAP_TABLE = harness.rows_map_table(changes={"sv_rows": "__fromFile__[rowsOf]"})

HUP_MAP_TABLE = harness.rows_map_table(name_cast="picky")  # NAME through PICKY below

STRATEGY_V1 = "return function(doc, db, log) return { { ROW = doc.id } } end\n"
STRATEGY_V2 = "return function(doc, db, log) return { { ROW = doc.id * 100 } } end\n"
STRATEGY_BROKEN = "return function(doc, db, log) return { { ROW = doc.id * 1000 } end\n"

PICKY = r'''
return function(value, fieldName, log)
  if value == "boom" then error("picky cast refuses " .. fieldName .. "=boom") end
  return value
end
'''
FIXED = r'''
return function(value, fieldName, log)
  if value == "boom" then return "defused" end
  return value
end
'''

S, R = {}, {}


def ids(name):
    return harness.ids(S[name])


def kcat_read(topic, fmt):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if not kcat:
        raise AssertionError("kcat is required (tools/install-deps installs it)")
    p = subprocess.run([kcat, "-b", harness.cluster().brokers, "-C", "-t", topic, "-o",
                        "beginning", "-e", "-q", "-f", fmt], capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError("kcat failed: %s" % p.stderr)
    return p.stdout


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["dlq"] = c.scenario("dlq", {"ops.dlq": "pr_rows"}, MAP_TABLE,
                          env={"DEAD_LETTER_TOPIC": "ops.dead"})
    S["reload"] = c.scenario(
        "reload", {"ops.reload": "pr_rows"}, RELOAD_MAP_TABLE,
        files={"strategies/rowsOf.lua": STRATEGY_V1},
        env={"PROJECTIONS_CHANGES_ENABLED": "true", "PROJECTIONS_CHANGES_COLLECTION_NAME": "pcs",
             "SCRIPTS_HOT_RELOAD": "true"})
    S["reload"].env["STRATEGIES_FOLDER"] = os.path.join(S["reload"].dir, "strategies")
    S["hup"] = c.scenario("hup", {"ops.hup": "pr_rows"}, HUP_MAP_TABLE, casts={"picky": PICKY})
    S["ptopic"] = c.scenario("ptopic", {"ops.ptopic": "pr_rows"}, HUP_MAP_TABLE,
                             casts={"picky": PICKY},
                             env={"PAUSE_TOPIC_CONSUMPTION_ON_ERROR": "true"})

    # dlq: p0 has a message that is not JSON at offset 2 (with a header of its
    # own), p1 is clean.
    bad = row("ops.dlq", 0, 99, T + 3, raw='{"ID": 99, "NAME": oops')
    bad["headers"] = {"origin": "crm"}
    c.produce([row("ops.dlq", 0, 1, T + 1), row("ops.dlq", 0, 2, T + 2), bad,
               row("ops.dlq", 0, 3, T + 4), row("ops.dlq", 0, 4, T + 5)]
              + [row("ops.dlq", 1, 10 + i, T + 10 + i) for i in range(3)])
    # hup: offset 2 makes the cast fail.
    c.produce([row("ops.hup", 0, 1, T + 1), row("ops.hup", 0, 2, T + 2),
               row("ops.hup", 0, 3, T + 3, name="boom"), row("ops.hup", 0, 4, T + 4)])
    # ptopic: p0 fails at offset 1; p1 is paused with it.
    c.produce([row("ops.ptopic", 0, 1, T + 1), row("ops.ptopic", 0, 2, T + 2, name="boom"),
               row("ops.ptopic", 0, 3, T + 3)])
    for name in ("dlq", "reload", "hup", "ptopic"):
        R[name] = S[name].start()


def tearDownModule():
    harness.stop_module()


class DeadLetter(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        wait_for(lambda: ids("dlq") == [1, 2, 3, 4, 10, 11, 12], 40, "every good row", R["dlq"])

    @classmethod
    def tearDownClass(cls):
        R["dlq"].stop()

    def test_good_messages_all_applied(self):
        self.assertEqual(ids("dlq"), [1, 2, 3, 4, 10, 11, 12])

    def test_bad_message_recorded_with_its_error(self):
        out = wait_for(lambda: kcat_read("ops.dead", "%k\t%s\t%h\n").strip(), 20, "a dead letter")
        lines = out.splitlines()
        self.assertEqual(len(lines), 1, out)
        key, value, headers = lines[0].split("\t")
        self.assertEqual(key, '{"ID":99}')
        self.assertEqual(value, '{"ID": 99, "NAME": oops')
        h = dict(kv.split("=", 1) for kv in headers.split(","))
        self.assertEqual(h["rtu.source.topic"], "ops.dlq")
        self.assertEqual(h["rtu.source.partition"], "0")
        self.assertEqual(h["rtu.source.offset"], "2")
        self.assertEqual(h["rtu.error.kind"], "data")
        self.assertIn("JSON", h["rtu.error.cause"])
        self.assertEqual(h["origin"], "crm")  # its own headers, kept

    def test_periodic_commit_line(self):
        want = {"applied": 7, "failed": 1, "stale": 0}

        def totals():
            lines = R["dlq"].find_logs(lambda l: l.get("msg") == "messages committed")
            return {k: sum(l["counts"][k] for l in lines) for k in want}
        # A poll may take part of a fetch response (the rest comes with the next
        # one): the counts may then come in two lines, one interval (3 s) apart.
        wait_for(lambda: totals() == want, 15, "messages committed lines adding up", R["dlq"])
        self.assertEqual(totals(), want)
        self.assertEqual(R["dlq"].find_logs(lambda l: l.get("msg") == "run applied"), [])

    def test_partition_not_stopped_and_logged(self):
        self.assertEqual(stop_log(R["dlq"], "ops.dlq", 0), [])
        lines = R["dlq"].find_logs(
            lambda l: l.get("msg") == "message cannot be applied; recorded on the dead-letter topic")
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual((lines[0]["topic"], lines[0]["partition"], lines[0]["offset"]),
                         ("ops.dlq", 0, 2))


class HotReload(E2ETestCase):
    """The strategy file is edited while rtu runs: each batch of messages is seen
    by the generation that was running when it came."""

    @classmethod
    def setUpClass(cls):
        s, r = S["reload"], R["reload"]
        pcs = s.coll("pcs")
        c = harness.cluster()
        path = os.path.join(s.dir, "strategies", "rowsOf.lua")

        def rows():
            return sorted(d["identifier"]["ROW"] for d in pcs.find({"type": "sv_rows"}))

        c.produce([row("ops.reload", 0, i, T + i) for i in range(1, 6)])
        wait_for(lambda: rows() == [1, 2, 3, 4, 5], 40, "v1 projection changes", r)
        with open(path + ".tmp", "w") as f:
            f.write(STRATEGY_V2)
        os.replace(path + ".tmp", path)
        r.wait_log(lambda l: l.get("msg") == "script generation loaded", 20, "a new generation")
        c.produce([row("ops.reload", 0, i, T + i) for i in range(6, 9)])
        wait_for(lambda: len(rows()) == 8, 30, "v2 projection changes", r)
        cls.after_v2 = rows()

        with open(path + ".tmp", "w") as f:
            f.write(STRATEGY_BROKEN)
        os.replace(path + ".tmp", path)
        r.wait_log(lambda l: l.get("msg", "").startswith("reload refused"), 20, "a refused reload")
        cls.checkup = json.loads(r.http("/-/check-up")[2])
        c.produce([row("ops.reload", 0, 9, T + 9)])
        wait_for(lambda: len(rows()) == 9, 30, "projection changes after the refusal", r)
        cls.after_broken = rows()

    @classmethod
    def tearDownClass(cls):
        R["reload"].stop()

    def test_new_generation_used_after_the_edit(self):
        self.assertEqual(self.after_v2, [1, 2, 3, 4, 5, 600, 700, 800])

    def test_invalid_edit_refused_and_running_generation_goes_on(self):
        self.assertEqual(self.after_broken, [1, 2, 3, 4, 5, 600, 700, 800, 900])
        refused = R["reload"].find_logs(lambda l: l.get("msg", "").startswith("reload refused"))
        self.assertTrue(any("rowsOf.lua" in l.get("cause", "") for l in refused), refused)
        loaded = R["reload"].find_logs(lambda l: l.get("msg") == "script generation loaded")
        self.assertEqual(len(loaded), 1, loaded)

    def test_checkup_shows_the_refused_generations_problems(self):
        problems = self.checkup.get("refusedReload", {}).get("problems", [])
        self.assertTrue(any("rowsOf.lua" in p and "error" in p for p in problems), self.checkup)
        self.assertIn("reload refused", self.checkup["dependencies"]["scripts"].get("detail", ""))

    def test_every_row_written(self):
        self.assertEqual(ids("reload"), list(range(1, 10)))


class SighupResumesStoppedPartition(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        s, r = S["hup"], R["hup"]
        r.wait_error(0, 30, "the cast error")
        time.sleep(0.5)
        cls.before = ids("hup")
        with open(os.path.join(s.dir, "casts", "picky.lua"), "w") as f:
            f.write(FIXED)
        r.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: ids("hup") == [1, 2, 3, 4], 30, "every row after the fix", r)
        cls.doc3 = s.coll("rows").find_one({"id": 3})

    @classmethod
    def tearDownClass(cls):
        R["hup"].stop()

    def test_stopped_at_the_failing_message(self):
        self.assertEqual(self.before, [1, 2])
        lines = stop_log(R["hup"], "ops.hup", 0)
        self.assertEqual([l["offset"] for l in lines], [2])

    def test_resumed_from_it_by_the_new_generation(self):
        self.assertEqual(self.doc3["name"], "defused")
        self.assertEqual(len(R["hup"].find_logs(
            lambda l: l.get("msg") == "partition resumed by a new script generation")), 1)


class SighupResumesPausedTopic(E2ETestCase):
    """PAUSE_TOPIC_CONSUMPTION_ON_ERROR: the other partitions of the topic wait too,
    and the new generation resumes them all from where they were."""

    @classmethod
    def setUpClass(cls):
        s, r, c = S["ptopic"], R["ptopic"], harness.cluster()
        r.wait_error(0, 30, "the cast error")
        c.produce([row("ops.ptopic", 1, 10 + i, T + 10 + i) for i in range(4)])
        time.sleep(2)
        cls.while_paused = ids("ptopic")
        with open(os.path.join(s.dir, "casts", "picky.lua"), "w") as f:
            f.write(FIXED)
        r.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: ids("ptopic") == [1, 2, 3, 10, 11, 12, 13], 30, "every row", r)

    @classmethod
    def tearDownClass(cls):
        R["ptopic"].stop()

    def test_topic_waited(self):
        self.assertEqual(self.while_paused, [1])

    def test_everything_applied_after_the_fix(self):
        self.assertEqual(ids("ptopic"), [1, 2, 3, 10, 11, 12, 13])
        self.assertEqual(S["ptopic"].coll("rows").find_one({"id": 2})["name"], "defused")


if __name__ == "__main__":
    harness.main()
