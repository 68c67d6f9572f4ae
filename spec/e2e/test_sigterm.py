"""End-to-end: SIGTERM at random moments of a stream (issue 5 point 5).

Four iterations, each: rtu starts in the same group, a chunk of 2,000
messages (120 keys, 6 partitions) is produced while it consumes, and SIGTERM
comes after a random delay (seeded: RTU_SIGTERM_SEED, printed). Each time:

- rtu exits with code 0 within 10 s;
- the committed offsets never go beyond what is in MongoDB: for every
  partition, every message below the committed offset is reflected in the
  documents (each key's document is at or after its last message below the
  committed offset: SEQ grows with the stream);

and a last restart finishes with every document equal to applying the whole
stream one by one, one document per key, everything committed.

And SIGTERM while MongoDB is unreachable (rtu's MONGODB_URL through a
tools/tcp-proxy.py that is cut, with the driver's default timeouts): rtu still
exits 0 within 10 s, commits nothing it did not write, and a restart once
MongoDB is back finishes exactly."""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import streamlib  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402

TOPIC = "term.in"
N_PARTITIONS = 6
N_KEYS = 120
CHUNK = 2000
ITERATIONS = 4
RATE = 2000
TOPICS = {TOPIC: N_PARTITIONS, "term.out": 2}
SEED = int(os.environ.get("RTU_SIGTERM_SEED", str(int(time.time()) % 100000)))


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


class SigTerm(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        sys.stderr.write("test_sigterm: seed %d (RTU_SIGTERM_SEED=%d to replay)\n" % (SEED, SEED))
        rnd = random.Random(SEED)
        c = harness.cluster()
        sc = c.scenario("term", {TOPIC: "pr_acc"}, streamlib.MAP_TABLE,
                        env={"KAFKA_CONSUMER_MAX_BATCH_SIZE": "200"})
        coll = sc.coll("acc")
        all_lines = []
        cls.iterations = []
        for it in range(ITERATIONS):
            chunk = streamlib.make_stream(TOPIC, CHUNK, N_KEYS, N_PARTITIONS, seed=SEED + it,
                                          start=it * CHUNK)
            all_lines += chunk
            rtu = sc.start()
            rtu.wait_assigned(20)
            producer = c.produce(chunk, rate=RATE, background=True)
            delay = rnd.uniform(0.0, 1.5)
            time.sleep(delay)
            n_docs = coll.count_documents({})
            try:
                stop_time = rtu.stop(10)
                err = None
            except AssertionError as e:  # noqa: F841
                stop_time, err = None, str(e)
            producer.communicate(timeout=60)
            harness._reap(producer)
            committed = c.committed(sc.group, TOPIC)
            missing = check_committed_reflected(committed, streamlib.with_offsets(all_lines), coll)
            cls.iterations.append({"delay": delay, "stop": stop_time, "error": err,
                                   "docs": n_docs, "committed": committed, "missing": missing,
                                   "producer": producer.returncode})
            sys.stderr.write("iteration %d: SIGTERM after %.2fs, exit in %s s, committed %s\n"
                             % (it, delay, stop_time, streamlib.committed_only(committed)))
        cls.lines = streamlib.with_offsets(all_lines)
        cls.expected = streamlib.expected_state(cls.lines)
        last = sc.start()
        harness.wait_or_note(lambda: streamlib.final_reached(coll, cls.expected), 40,
                 "every key at its last message", last, interval=0.25)
        cls.highs = streamlib.wait_all_committed(c, sc.group, TOPIC, cls.lines, 20, last, 0.2)
        cls.diff = streamlib.diff_documents(coll, cls.expected)
        cls.final_committed = c.committed(sc.group, TOPIC)
        cls.last_stop = last.stop(10)

    def test_each_sigterm_exits_0_within_10s(self):
        self.assertEqual([(i, it["error"]) for i, it in enumerate(self.iterations) if it["error"]],
                         [], "seed %d" % SEED)
        for it in self.iterations:
            self.assertEqual(it["producer"], 0)

    def test_committed_never_beyond_mongodb(self):
        self.assertEqual([(i, it["missing"]) for i, it in enumerate(self.iterations)
                          if it["missing"]], [], "seed %d" % SEED)

    def test_something_was_committed_mid_stream(self):
        # the SIGTERMs were not all before any commit: the check above bites
        self.assertTrue(any(0 < sum(max(v[0], 0) for v in it["committed"].values())
                            for it in self.iterations), "seed %d" % SEED)

    def test_restart_finishes_exactly(self):
        self.assertEqual(self.diff, [], "seed %d" % SEED)
        self.assertEqual(self.final_committed, {p: (h, h) for p, h in self.highs.items()})


class SigTermDuringMongoOutage(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        proxy = harness.tcp_proxy("127.0.0.1", int(c.mongo_url.rsplit(":", 1)[1]))
        sc = c.scenario("termout", {"term.out": "pr_acc"}, streamlib.MAP_TABLE,
                        env={"MONGODB_URL": "mongodb://127.0.0.1:%d" % proxy.port})
        coll = sc.coll("acc")
        first = streamlib.make_stream("term.out", 200, 20, 2, seed=91)
        second = streamlib.make_stream("term.out", 200, 20, 2, seed=92, start=200)
        cls.lines = streamlib.with_offsets(first + second)
        cls.expected = streamlib.expected_state(cls.lines)
        rtu = sc.start()
        rtu.wait_assigned(20)
        c.produce(first)
        exp1 = streamlib.expected_state(streamlib.with_offsets(first))
        harness.wait_or_note(lambda: streamlib.final_reached(coll, exp1), 20, "first chunk applied", rtu)
        # and committed: commits follow the writes asynchronously (and wait out a
        # group request in flight, commit_gate.c), so the cut must not come
        # between a chunk's writes and its commit; what is checked below is that
        # nothing of the second chunk gets committed
        first_highs = streamlib.end_offsets(streamlib.with_offsets(first))
        harness.wait_or_note(
            lambda: streamlib.committed_only(c.committed(sc.group, "term.out")) == first_highs,
            20, "first chunk committed", rtu, interval=0.25)
        proxy.cut("refuse")
        c.produce(second)
        time.sleep(2.0)  # rtu has the second chunk and cannot write it
        cls.alive_before_term = rtu.alive()
        try:
            cls.stop_time, cls.stop_error = rtu.stop(10), None
        except AssertionError as e:
            cls.stop_time, cls.stop_error = None, str(e)
        sys.stderr.write("SIGTERM during the MongoDB outage: exit in %s s\n" % cls.stop_time)
        cls.committed = c.committed(sc.group, "term.out")
        cls.first_highs = streamlib.end_offsets(streamlib.with_offsets(first))
        cls.missing = check_committed_reflected(cls.committed, cls.lines, coll)
        proxy.restore()
        last = sc.start()
        harness.wait_or_note(lambda: streamlib.final_reached(coll, cls.expected), 30,
                 "every key at its last message", last, interval=0.25)
        cls.diff = streamlib.diff_documents(coll, cls.expected)
        last.stop(10)

    def test_exits_0_within_10s_while_mongodb_is_unreachable(self):
        self.assertTrue(self.alive_before_term)
        self.assertIsNone(self.stop_error)

    def test_committed_never_beyond_mongodb(self):
        self.assertEqual(self.missing, [])
        # exactly the first chunk (applied before the cut), nothing of the second
        self.assertEqual(streamlib.committed_only(self.committed), self.first_highs)

    def test_restart_finishes_exactly(self):
        self.assertEqual(self.diff, [])


if __name__ == "__main__":
    harness.main()
