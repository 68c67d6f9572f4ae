"""End-to-end: messages that cannot be applied. A malformed message (invalid JSON),
a message without its primary key and a custom cast raising an error each stop
their partition at that message (later messages of the partition are not applied,
the committed offset stays at the bad message, a restart stops at the same place)
while the other partitions go on; the log names topic, partition, offset and
cause. And `rtu check`: exit 2 with one line per problem."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, stop_log, row  # noqa: E402

TOPICS = {"err.bad": 4, "err.lua": 2, "err.refused": 3, "err.pause": 2, "err.check": 1}
T = 1_700_000_000_000

MAP_TABLE = harness.rows_map_table()  # pr_rows -> rows: ID (key), NAME (string)

LUA_MAP_TABLE = harness.rows_map_table(name_cast="picky")  # NAME through PICKY below

PICKY = r'''
return function(value, fieldName, log)
  if value == "boom" then
    error("picky cast refuses " .. fieldName .. "=boom")
  end
  return value
end
'''

OBJ_MAP_TABLE = {
    "pr_rows": {
        "destination": "rows",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "OBJ": {"fieldName": "obj", "cast": "__fromFile__[defaultCastToObject]"},
        },
        "fieldsInKey": ["id"],
    }
}

S, R = {}, {}


BAD = (
    # p0: offsets 0, 1 fine; 2 is not JSON; 3, 4 after it.
    [row("err.bad", 0, 1, T + 1), row("err.bad", 0, 2, T + 2),
     row("err.bad", 0, 99, T + 3, raw='{"ID": 99, "NAME": oops'),
     row("err.bad", 0, 3, T + 4), row("err.bad", 0, 4, T + 5)]
    # p1, p2: fine all along
    + [row("err.bad", 1, 10 + i, T + 10 + i) for i in range(5)]
    + [row("err.bad", 2, 20 + i, T + 20 + i) for i in range(5)]
    # p3: offset 1 has no primary key (no key, value without ID)
    + [row("err.bad", 3, 30, T + 30), row("err.bad", 3, 0, T + 31, raw={"NAME": "no key"}, key=None),
       row("err.bad", 3, 31, T + 32)]
)

LUA = [
    row("err.lua", 0, 1, T + 1, "fine"),
    row("err.lua", 0, 2, T + 2, "boom"),      # offset 1: the cast raises
    row("err.lua", 0, 3, T + 3, "after"),
    row("err.lua", 1, 10, T + 1, "other"),
    row("err.lua", 1, 11, T + 2, "partition"),
]


REFUSED = [
    row("err.refused", 0, 1, T + 1, raw={"ID": 1, "OBJ": {"a": 1}}),          # offset 0: fine
    # offset 1: an object with an empty field name, which MongoDB (here the driver
    # already) refuses to store
    row("err.refused", 0, 2, T + 2, raw='{"ID": 2, "OBJ": {"": 1}}'),
    row("err.refused", 0, 3, T + 3, raw={"ID": 3, "OBJ": {"a": 3}}),          # offset 2
    row("err.refused", 1, 10, T + 1, raw={"ID": 10, "OBJ": {"b": 10}}),
    # partition 2: the empty field name is in the original key, which the record
    # keeps under __internal__kafkaInfo.key: refused the same way (offset 1)
    row("err.refused", 2, 20, T + 1, raw={"ID": 20, "OBJ": {"c": 20}}),
    row("err.refused", 2, 21, T + 2, raw={"ID": 21, "OBJ": {"c": 21}},
        key='{"ID": 21, "X": {"": 1}}'),
    row("err.refused", 2, 22, T + 3, raw={"ID": 22, "OBJ": {"c": 22}}),
]


PAUSE = [row("err.pause", 1, 0, T + 1, raw="not json at all")]


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    # a shorter session: the restart's group join waits session.timeout.ms - 1 s
    S["bad"] = c.scenario("bad", {"err.bad": "pr_rows"}, MAP_TABLE,
                          env={"KAFKA_SESSION_TIMEOUT_MS": "3000"})
    S["lua"] = c.scenario("lua", {"err.lua": "pr_rows"}, LUA_MAP_TABLE, casts={"picky": PICKY})
    S["refused"] = c.scenario("refused", {"err.refused": "pr_rows"}, OBJ_MAP_TABLE)
    S["pause"] = c.scenario("pause", {"err.pause": "pr_rows"}, MAP_TABLE,
                            env={"PAUSE_TOPIC_CONSUMPTION_ON_ERROR": "true"})
    c.produce(BAD + LUA + REFUSED + PAUSE)
    for k in ("bad", "lua", "refused", "pause"):
        R[k] = S[k].start()


def tearDownModule():
    harness.stop_module()


def ids(k):
    return harness.ids(S[k])


def assert_stop_line(tc, rtu, topic, partition, offset, words):
    lines = stop_log(rtu, topic, partition)
    tc.assertEqual(len(lines), 1, "one error line for %s[%d]: %r" % (topic, partition, lines))
    l = lines[0]
    tc.assertEqual(str(l.get("offset")), str(offset), l)
    tc.assertGreaterEqual(l.get("level", 0), 50)
    text = "%s %s" % (l.get("msg", ""), l.get("cause", ""))
    for w in words:
        tc.assertIn(w, text, l)
    return l


class Malformed(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["bad"]
        coll = S["bad"].coll("rows")
        rtu.wait_error(0, 30, "the error of partition 0")
        rtu.wait_error(3, 30, "the error of partition 3")
        wait_for(lambda: coll.find_one({"id": 14}) and coll.find_one({"id": 24}), 30,
                 "partitions 1 and 2", rtu)
        cls.first_ids = ids("bad")
        # More messages while the partition is stopped: p1 goes on, p0 does not.
        harness.cluster().produce([row("err.bad", 0, 5, T + 6), row("err.bad", 1, 15, T + 15)])
        wait_for(lambda: coll.find_one({"id": 15}), 30, "id 15 on partition 1", rtu)
        time.sleep(0.5)
        cls.second_ids = ids("bad")
        cls.first_run = rtu
        rtu.stop()
        # Restart in the same group: it resumes at the committed offsets.
        cls.restart = S["bad"].start()
        cls.restart.wait_error(0, 30, "the error of partition 0 after the restart")
        harness.cluster().produce([row("err.bad", 1, 16, T + 16), row("err.bad", 0, 6, T + 7)])
        wait_for(lambda: coll.find_one({"id": 16}), 30, "id 16 after the restart", cls.restart)
        time.sleep(0.5)
        cls.third_ids = ids("bad")
        cls.restart.stop()

    def test_messages_before_the_bad_one_applied(self):
        self.assertIn(1, self.first_ids)
        self.assertIn(2, self.first_ids)
        self.assertIn(30, self.first_ids)

    def test_partition_stops_at_the_bad_message(self):
        for got in (self.first_ids, self.second_ids, self.third_ids):
            for i in (3, 4, 5, 6, 99, 31):
                self.assertNotIn(i, got)

    def test_other_partitions_go_on(self):
        self.assertEqual([i for i in self.first_ids if 10 <= i < 30], list(range(10, 15)) + list(range(20, 25)))
        self.assertIn(15, self.second_ids)
        self.assertIn(16, self.third_ids)

    def test_error_line_names_topic_partition_offset_cause(self):
        assert_stop_line(self, self.first_run, "err.bad", 0, 2, ["JSON"])
        assert_stop_line(self, self.first_run, "err.bad", 3, 1, ["primary key", "ID"])
        self.assertEqual(stop_log(self.first_run, "err.bad", 1), [])
        self.assertEqual(stop_log(self.first_run, "err.bad", 2), [])

    def test_restart_stops_at_the_same_place(self):
        assert_stop_line(self, self.restart, "err.bad", 0, 2, ["JSON"])
        self.assertEqual(stop_log(self.restart, "err.bad", 1), [])

    def test_no_duplicates(self):
        docs = list(S["bad"].coll("rows").find({}))
        self.assertEqual(len(docs), len({d["id"] for d in docs}))
        self.assertEqual(sorted(d["id"] for d in docs),
                         [1, 2] + list(range(10, 17)) + list(range(20, 25)) + [30])

    def test_committed_offsets(self):
        first = harness.committed_offsets(S["bad"].group, "err.bad")
        # p0 resumes at the malformed message, p3 at the one without a key, p1 and p2
        # have nothing left.
        self.assertEqual(first, {0: 2, 3: 1})


class LuaError(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["lua"]
        coll = S["lua"].coll("rows")
        rtu.wait_error(0, 30, "the error of partition 0")
        wait_for(lambda: coll.find_one({"id": 11}), 30, "partition 1", rtu)
        time.sleep(0.3)
        cls.ids = ids("lua")

    @classmethod
    def tearDownClass(cls):
        R["lua"].stop()

    def test_cast_error_stops_the_partition(self):
        assert_stop_line(self, R["lua"], "err.lua", 0, 1, ["picky cast refuses name=boom"])
        self.assertEqual(self.ids, [1, 10, 11])


class RefusedWrite(E2ETestCase):
    """A data error from MongoDB: the partition stops at the refused message, and
    what came before it in the same run is still written (its offset is committed)."""

    @classmethod
    def setUpClass(cls):
        rtu = R["refused"]
        coll = S["refused"].coll("rows")
        rtu.wait_error(0, 30, "the error of partition 0")
        rtu.wait_error(2, 30, "the error of partition 2")
        wait_for(lambda: coll.find_one({"id": 10}), 30, "partition 1", rtu)
        time.sleep(0.3)
        cls.docs = {d["id"]: d for d in coll.find({})}

    @classmethod
    def tearDownClass(cls):
        R["refused"].stop()

    def test_stops_at_the_refused_message(self):
        assert_stop_line(self, R["refused"], "err.refused", 0, 1, [])
        self.assertNotIn(2, self.docs)
        self.assertNotIn(3, self.docs)
        self.assertIn(10, self.docs)

    def test_messages_before_the_refused_one_are_written(self):
        self.assertIn(1, self.docs, "offset 0 precedes the stop offset (1), so it is committed: "
                      "it must have been written")
        self.assertEqual(self.docs[1]["obj"], {"a": 1})

    def test_an_empty_field_name_in_the_original_key_is_refused_too(self):
        assert_stop_line(self, R["refused"], "err.refused", 2, 1, [])
        self.assertIn(20, self.docs)
        self.assertNotIn(21, self.docs)
        self.assertNotIn(22, self.docs)


class PauseTopic(E2ETestCase):
    """PAUSE_TOPIC_CONSUMPTION_ON_ERROR=true: an error on one partition pauses every
    partition of the topic."""

    @classmethod
    def setUpClass(cls):
        rtu = R["pause"]
        cls.line = rtu.wait_error(1, 30, "the error of partition 1")
        harness.cluster().produce([row("err.pause", 0, 5, T + 5)])
        time.sleep(1.5)  # several polls: partition 0 would have been applied by now
        cls.ids = ids("pause")

    @classmethod
    def tearDownClass(cls):
        R["pause"].stop()

    def test_other_partitions_of_the_topic_paused(self):
        assert_stop_line(self, R["pause"], "err.pause", 1, 0, ["JSON"])
        self.assertEqual(self.ids, [], "partition 0 of the paused topic went on")


# --- rtu check -------------------------------------------------------------------

def problems(lines):
    return [l for l in lines if l.strip()]


class Check(E2ETestCase):
    def check(self, name, map_table, casts=None, adapter=None):
        sc = harness.cluster().scenario(name, {"err.check": "pr_rows"}, map_table, casts=casts,
                                        adapter=adapter)
        return sc, sc.check()

    def test_valid_configuration(self):
        sc, (rc, out, err) = self.check("ok", MAP_TABLE)
        self.assertEqual(rc, 0, (out, err))

    def test_broken_map_table(self):
        sc, (rc, out, err) = self.check("broken", '{"pr_rows": {"destination": "rows",, }')
        self.assertEqual(rc, 2, (out, err))
        lines = problems(err)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("mapTable.json", lines[0])

    def test_unknown_cast(self):
        mt = {"pr_rows": {"destination": "rows", "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[noSuchCast]"}},
            "fieldsInKey": ["id"]}}
        sc, (rc, out, err) = self.check("unknown", mt)
        self.assertEqual(rc, 2, (out, err))
        lines = problems(err)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("noSuchCast", lines[0])
        self.assertIn("NAME", lines[0])

    def test_lua_syntax_error(self):
        sc, (rc, out, err) = self.check("syntax", LUA_MAP_TABLE,
                                        casts={"picky": "return function(value\n  return value end\n"})
        self.assertEqual(rc, 2, (out, err))
        lines = problems(err)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("picky.lua", lines[0])
        self.assertIn(":2:", lines[0], "the line of the syntax error")

    def test_adapter_syntax_error(self):
        sc, (rc, out, err) = self.check("adapter", MAP_TABLE, adapter="return function(m end")
        self.assertEqual(rc, 2, (out, err))
        lines = problems(err)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("kafkaMessageAdapter.lua", lines[0])

    def test_every_problem_reported(self):
        # An unknown cast and a broken cast file in one configuration: two lines.
        mt = {"pr_rows": {"destination": "rows", "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[noSuchCast]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[picky]"}},
            "fieldsInKey": ["id"]}}
        sc, (rc, out, err) = self.check("both", mt, casts={"picky": "return function(v\n"})
        self.assertEqual(rc, 2, (out, err))
        lines = problems(err)
        self.assertTrue(any("picky.lua" in l for l in lines), lines)
        self.assertTrue(any("noSuchCast" in l for l in lines), lines)
        self.assertEqual(len(lines), 2, lines)


if __name__ == "__main__":
    harness.main()
