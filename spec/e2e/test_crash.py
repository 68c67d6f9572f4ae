"""End-to-end: kill -9 in the middle of a stream, then a restart. 20,000 messages
over 200 keys in 6 partitions, with increasing timestamps and partial records
(each message sets SEQ and one of A/B/C), are produced while rtu consumes; rtu is
killed with SIGKILL once some but not all documents exist, then restarted in the
same consumer group. Every key must end holding exactly what applying its
messages one by one gives, with exactly one document per key. A second stream
does the same through rebalances: two instances, one killed, a third joining,
one leaving."""

import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402
import streamlib  # noqa: E402

TOPICS = {"crash.in": 6, "crash.rb": 6}
T = 1_700_000_000_000
N_MESSAGES = 20_000
N_KEYS = 200
N_PARTITIONS = 6
RATE = 4000  # messages per second: the stream lasts about 5 s

# pr_acc -> acc: ID (key), SEQ, A, B, C as they come (the keyed stream's table)
MAP_TABLE = streamlib.MAP_TABLE

S, R = {}, {}


def make_stream(topic="crash.in"):
    """Keys appear progressively over the first half of the stream (so that the
    number of documents grows while it is consumed), then all of them mix."""
    rnd = random.Random(20240601)
    lines, expected = [], {}
    for i in range(N_MESSAGES):
        if i < N_MESSAGES // 2:
            k = rnd.randrange(0, min(N_KEYS, 1 + i * N_KEYS // (N_MESSAGES // 2)))
        else:
            k = rnd.randrange(0, N_KEYS)
        field = "ABC"[i % 3]
        value = {"ID": k, "SEQ": i, field: i}
        lines.append({"topic": topic, "partition": k % N_PARTITIONS, "key": {"ID": k},
                      "value": value, "timestamp": T + i})
        e = expected.setdefault(k, {"id": k})
        e["seq"] = i
        e[field.lower()] = i
        e["__internal__counter"] = T + i
    return lines, expected


@harness.report_on_error
def setUpModule():
    harness.start_module(TOPICS)


def tearDownModule():
    harness.stop_module()


def final_state_reached(coll, expected):
    got = {d["id"]: d.get("seq") for d in coll.find({}, {"id": 1, "seq": 1})}
    return len(got) == N_KEYS and all(got.get(k) == e["seq"] for k, e in expected.items())


class _Checks:
    def test_exactly_one_document_per_key(self):
        ids = [d["id"] for d in self.docs]
        self.assertEqual(len(ids), N_KEYS)
        self.assertEqual(sorted(ids), list(range(N_KEYS)))

    def test_every_key_holds_its_last_message(self):
        wrong = []
        for d in self.docs:
            e = self.expected[d["id"]]
            got = {f: d.get(f) for f in e}
            if got != e or d["__STATE__"] != "PUBLIC" or \
                    d["__internal__kafkaInfo"]["partition"] != d["id"] % N_PARTITIONS:
                wrong.append((d["id"], e, got))
        self.assertEqual(wrong, [], "%d keys differ from applying their messages one by one"
                         % len(wrong))


class KillNine(_Checks, E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = c.scenario("crash", {"crash.in": "pr_acc"}, MAP_TABLE,
                        env={"KAFKA_CONSUMER_MAX_BATCH_SIZE": "1000",
                             "KAFKA_SESSION_TIMEOUT_MS": "3000"})
        S["crash"] = sc
        lines, cls.expected = make_stream()
        coll = sc.coll("acc")

        first = R["first"] = sc.start()
        first.wait_assigned(20)
        t0 = time.monotonic()
        producer = c.produce(lines, rate=RATE, background=True)
        # Kill -9 once some documents exist, well before all do.
        cls.count_at_kill = wait_for(lambda: (lambda n: n if n >= 60 else 0)(coll.count_documents({})),
                                     30, "some documents", first, interval=0.02)
        cls.producer_running_at_kill = producer.poll() is None
        first.kill()
        cls.first_rc = first.proc.returncode
        cls.kill_time = time.monotonic() - t0
        sys.stderr.write("rtu killed %.2fs into the stream with %d of %d documents\n"
                         % (cls.kill_time, cls.count_at_kill, N_KEYS))

        second = R["second"] = sc.start()
        out, err = producer.communicate(timeout=60)
        harness._reap(producer)
        cls.producer_rc, cls.producer_out = producer.returncode, (out, err)
        wait_for(lambda: final_state_reached(coll, cls.expected), 90,
                 "every key at its last message", second, interval=0.5)
        cls.stop_time = second.stop()
        cls.docs = list(coll.find({}))

    def test_killed_in_the_middle(self):
        self.assertEqual(self.first_rc, -signal.SIGKILL)
        self.assertTrue(self.producer_running_at_kill, "the kill came after the stream ended")
        self.assertLess(self.count_at_kill, N_KEYS, "every document existed at the kill")
        self.assertEqual(self.producer_rc, 0, self.producer_out)



class Rebalance(_Checks, E2ETestCase):
    """Scaling out and in during a stream: two instances share the partitions, one
    is killed (-9), a third joins, one leaves (SIGTERM): every rebalance hands
    partitions over with applied-but-uncommitted messages re-delivered."""

    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        sc = c.scenario("rebalance", {"crash.rb": "pr_acc"}, MAP_TABLE,
                        env={"KAFKA_CONSUMER_MAX_BATCH_SIZE": "500",
                             "KAFKA_SESSION_TIMEOUT_MS": "3000"})
        lines, cls.expected = make_stream("crash.rb")
        coll = sc.coll("acc")
        b, cc = sc.start(), sc.start()
        b.wait_assigned(20)
        cc.wait_assigned(20)
        # About 25 s of stream: the kill, the session timeout (3 s) and the third
        # instance's join take two rebalances each with cooperative assignment, each
        # held open about 5 s by the mock cluster, and all must happen mid-stream.
        producer = c.produce(lines, rate=RATE // 5, background=True)
        wait_for(lambda: coll.count_documents({}) >= 60, 30, "some documents", [b, cc],
                 interval=0.02)
        cls.producer_running_at_kill = producer.poll() is None
        b.kill()
        d = sc.start()
        d.wait_assigned(20)
        cls.producer_running_at_join = producer.poll() is None
        cc.stop()
        out, err = producer.communicate(timeout=60)
        harness._reap(producer)
        cls.producer_rc = producer.returncode
        wait_for(lambda: final_state_reached(coll, cls.expected), 90,
                 "every key at its last message", d, interval=0.5)
        d.stop()
        cls.docs = list(coll.find({}))

    def test_rebalances_happened_mid_stream(self):
        self.assertTrue(self.producer_running_at_kill)
        self.assertTrue(self.producer_running_at_join, "the third instance joined after the stream")
        self.assertEqual(self.producer_rc, 0)


if __name__ == "__main__":
    harness.main()
