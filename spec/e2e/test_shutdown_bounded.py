"""End-to-end: SIGTERM ends rtu within 10 s whatever MongoDB does (issue 18
item 8).

rtu's MONGODB_URL goes through tools/tcp-proxy.py (a plain URL: rtu's own
timeouts). While a stream is consumed, the proxy black-holes MongoDB
(connections stay open, nothing is answered): writes are in flight and never
answered. SIGTERM then: rtu exits 0 within 10 s (the run in flight is
abandoned), the committed offsets never go beyond what is in MongoDB, and a
restart once MongoDB answers again ends with every document equal to applying
the stream one by one, everything committed. The same with the proxy refusing
instead after the black hole (a second SIGTERM during a retry loop)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import streamlib  # noqa: E402
from harness import E2ETestCase  # noqa: E402

TOPIC = "shut.in"
TOPICS = {TOPIC: 2}


@harness.report_on_error
def setUpModule():
    harness.start_module(TOPICS)


def tearDownModule():
    harness.stop_module()


def check_committed_reflected(committed, lines, coll):
    """[] when every message below each partition's committed offset is
    reflected in the documents."""
    last_below = {}
    for l, off in lines:
        if off < committed.get(l["partition"], (-1, 0))[0]:
            last_below[l["key"]["ID"]] = l["value"]["SEQ"]
    got = {d["id"]: d.get("seq") for d in coll.find({}, {"id": 1, "seq": 1})}
    return [(k, s, got.get(k)) for k, s in sorted(last_below.items())
            if got.get(k) is None or got[k] < s]


class SigTermWithMongoBlackHoled(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        proxy = harness.tcp_proxy("127.0.0.1", int(c.mongo_url.rsplit(":", 1)[1]))
        sc = c.scenario("shut", {TOPIC: "pr_acc"}, streamlib.MAP_TABLE,
                        env={"MONGODB_URL": "mongodb://127.0.0.1:%d" % proxy.port,
                             "KAFKA_CONSUMER_MAX_BATCH_SIZE": "50"})
        coll = sc.coll("acc")
        first = streamlib.make_stream(TOPIC, 300, 30, 2, seed=181)
        second = streamlib.make_stream(TOPIC, 3000, 30, 2, seed=182, start=300)
        cls.lines = streamlib.with_offsets(first + second)
        cls.expected = streamlib.expected_state(cls.lines)
        rtu = sc.start()
        rtu.wait_assigned(20)
        c.produce(first)
        exp1 = streamlib.expected_state(streamlib.with_offsets(first))
        harness.wait_or_note(lambda: streamlib.final_reached(coll, exp1), 30,
                             "first chunk applied", rtu)
        # writes in flight when the black hole opens: the second chunk streams in
        producer = c.produce(second, rate=1000, background=True)
        time.sleep(0.7)
        proxy.cut("blackhole")
        time.sleep(2.5)
        cls.alive_before_term = rtu.alive()
        try:
            cls.stop_time, cls.stop_error = rtu.stop(10), None
        except AssertionError as e:
            cls.stop_time, cls.stop_error = None, str(e)
        sys.stderr.write("SIGTERM with MongoDB black-holed: exit in %s s\n" % cls.stop_time)
        producer.communicate(timeout=60)
        harness._reap(producer)
        cls.committed = c.committed(sc.group, TOPIC)
        cls.missing = check_committed_reflected(cls.committed, cls.lines, coll)
        cls.rtu = rtu
        # a restart while MongoDB is still black-holed, stopped in its retries
        again = sc.start()
        time.sleep(4.0)
        try:
            cls.second_stop, cls.second_error = again.stop(10), None
        except AssertionError as e:
            cls.second_stop, cls.second_error = None, str(e)
        cls.committed2 = c.committed(sc.group, TOPIC)
        cls.missing2 = check_committed_reflected(cls.committed2, cls.lines, coll)
        proxy.restore()
        last = sc.start()
        harness.wait_or_note(lambda: streamlib.final_reached(coll, cls.expected), 60,
                             "every key at its last message", last, interval=0.25)
        cls.highs = streamlib.wait_all_committed(c, sc.group, TOPIC, cls.lines, 30, last, 0.2)
        cls.diff = streamlib.diff_documents(coll, cls.expected)
        cls.final_committed = c.committed(sc.group, TOPIC)
        last.stop(10)

    def test_exits_0_within_10s_while_mongodb_is_black_holed(self):
        self.assertTrue(self.alive_before_term)
        self.assertIsNone(self.stop_error, self.rtu.report())
        self.assertIsNone(self.second_error)

    def test_committed_never_beyond_mongodb(self):
        self.assertEqual(self.missing, [])
        self.assertEqual(self.missing2, [])

    def test_restart_finishes_exactly(self):
        self.assertEqual(self.diff, [])
        self.assertEqual(self.final_committed, {p: (h, h) for p, h in self.highs.items()})


if __name__ == "__main__":
    harness.main()
