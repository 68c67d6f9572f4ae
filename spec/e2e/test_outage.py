"""End-to-end: MongoDB and Kafka outages in the middle of a stream (issue 5
point 4).

rtu's MONGODB_URL points at a loopback TCP proxy (tools/tcp-proxy.py) in front
of the MongoDB test server. While a stream of 6,000 messages (150 keys, 6
partitions) is consumed:

1. MongoDB is cut for 20 s: 10 s refusing (open connections closed, new ones
   reset), then 10 s black-holing (new connections accepted, never answered),
   then restored; rtu uses the driver's default timeouts (plain URL);
2. Kafka is cut for 8 s: every mock broker down (rtu-kafka-dev SIGUSR1:
   rd_kafka_mock_broker_set_down, connections closed, new ones refused), then
   up (SIGUSR2).

Asserted: rtu does not exit; nothing is written to MongoDB while it is cut; rtu
ends with every document equal to applying the stream one by one (nothing
skipped), one per key, everything committed; its VmRSS sampled during both
outages stays under a ceiling; when rtu serves HTTP (log line "http listening"
with key "port"), GET /-/ready answers 503 while MongoDB is cut (EXPECTED TO BE
ENABLED when the HTTP routes land: until then the check is skipped and says so).
Passes with either design of the MongoDB outage handling (retry the run with
backoff, or pause the partitions) as long as the guarantees hold."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import streamlib  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402

TOPIC = "out.in"
N_PARTITIONS = 6
N_KEYS = 150
N_MESSAGES = 6000
RATE = 400  # 15 s of stream: it spans the MongoDB cut
MONGO_CUT_S = 20
KAFKA_CUT_S = 8
TOPICS = {TOPIC: N_PARTITIONS}
# RSS ceiling: twice the level before the outage, and at least +150 MiB of
# headroom (AddressSanitizer builds keep freed memory in quarantine).
RSS_FACTOR, RSS_HEADROOM_KIB = 2.0, 150 * 1024


@harness.report_on_error
def setUpModule():
    harness.start_module(TOPICS)


def tearDownModule():
    harness.stop_module()


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop_flag = pid, [], False

    def run(self):
        while not self.stop_flag:
            r = harness.rss_kib(self.pid)
            if r is None:
                return
            self.samples.append(r)
            time.sleep(0.2)


class Outage(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        mongo_port = int(c.mongo_url.rsplit(":", 1)[1])
        proxy = cls.proxy = harness.tcp_proxy("127.0.0.1", mongo_port)
        sc = c.scenario("outage", {TOPIC: "pr_acc"}, streamlib.MAP_TABLE,
                        env={"KAFKA_CONSUMER_MAX_BATCH_SIZE": "200",
                             # sanitizer builds: a small quarantine, so that RSS
                             # shows live memory (no effect on other builds)
                             "ASAN_OPTIONS": "quarantine_size_mb=8:detect_leaks=0",
                             "MONGODB_URL": "mongodb://127.0.0.1:%d" % proxy.port})
        coll = sc.coll("acc")
        lines = streamlib.make_stream(TOPIC, N_MESSAGES, N_KEYS, N_PARTITIONS, seed=4401)
        cls.lines = streamlib.with_offsets(lines)
        cls.expected = streamlib.expected_state(cls.lines)
        rtu = cls.rtu = sc.start()
        rtu.wait_assigned(20)
        producer = c.produce(lines, rate=RATE, background=True)
        wait_for(lambda: coll.count_documents({}) >= 30, 30, "some documents", rtu, interval=0.05)
        time.sleep(1.0)
        cls.rss_before = harness.rss_kib(rtu.proc.pid)
        sampler = Sampler(rtu.proc.pid)
        sampler.start()

        # -- MongoDB cut ------------------------------------------------------------
        proxy.cut("refuse")
        t0 = time.monotonic()
        time.sleep(2.0)  # writes in flight settle
        seqs_at_cut = {d["id"]: d["seq"] for d in coll.find({}, {"id": 1, "seq": 1})}
        cls.ready_during_cut = []
        blackholed = False
        while time.monotonic() - t0 < MONGO_CUT_S:
            if not blackholed and time.monotonic() - t0 >= MONGO_CUT_S / 2:
                proxy.cut("blackhole")
                blackholed = True
            cls.ready_during_cut.append(rtu.http("/-/ready", timeout=2)[0])
            time.sleep(1.0)
        seqs_before_restore = {d["id"]: d["seq"] for d in coll.find({}, {"id": 1, "seq": 1})}
        cls.alive_after_mongo_cut = rtu.alive()
        cls.refused = proxy.refused
        cls.held = proxy.open_connections()
        proxy.restore()
        cls.written_while_cut = {k: (seqs_at_cut.get(k), v) for k, v in seqs_before_restore.items()
                                 if seqs_at_cut.get(k) != v}
        # progress after the restore
        n_after = coll.count_documents({})
        harness.wait_or_note(lambda: sum(d["seq"] for d in coll.find({}, {"seq": 1})) >
                 sum(seqs_before_restore.values()), 30, "progress after MongoDB is back", rtu,
                 interval=0.2)
        cls.rss_mongo_cut = max(sampler.samples) if sampler.samples else None
        cls.metrics_after_mongo_cut = rtu.metrics()

        # -- Kafka cut --------------------------------------------------------------
        n_logs = len(rtu.log_lines())
        c.kafka_down()
        time.sleep(KAFKA_CUT_S)
        cls.alive_after_kafka_cut = rtu.alive()
        cls.kafka_cut_logs = [l for l in rtu.log_lines()[n_logs:]
                              if l.get("source") == "librdkafka"
                              or l.get("msg") in ("kafka error", "consumer error")]
        c.kafka_up()
        out, err = producer.communicate(timeout=60)
        harness._reap(producer)
        cls.producer_rc, cls.producer_err = producer.returncode, err
        harness.wait_or_note(lambda: streamlib.final_reached(coll, cls.expected), 45,
                 "every key at its last message", rtu, interval=0.25)
        sampler.stop_flag = True
        sampler.join()
        cls.rss_samples = sampler.samples
        cls.highs = streamlib.wait_all_committed(c, sc.group, TOPIC, cls.lines, 30, rtu, 0.25)
        cls.diff = streamlib.diff_documents(coll, cls.expected)
        cls.committed = c.committed(sc.group, TOPIC)
        cls.n_after = n_after
        cls.stop_time = rtu.stop(10)

    def test_rtu_survived_both_outages(self):
        self.assertTrue(self.alive_after_mongo_cut)
        self.assertTrue(self.alive_after_kafka_cut)
        self.assertLess(self.stop_time, 10)

    def test_mongodb_was_really_cut(self):
        self.assertEqual(self.written_while_cut, {}, "documents changed while MongoDB was cut")
        self.assertGreater(self.refused, 0, "rtu never tried to reconnect during the cut")
        sys.stderr.write("connections refused %d, black-holed at restore %d\n"
                         % (self.refused, self.held))

    def test_kafka_was_really_cut(self):
        # rtu's librdkafka saw the brokers go away (disconnects, refused connections)
        self.assertTrue(self.kafka_cut_logs, "no Kafka error logged while the brokers were down")

    def test_nothing_skipped(self):
        self.assertEqual(self.diff, [])
        self.assertEqual(self.producer_rc, 0, self.producer_err)

    def test_everything_committed(self):
        self.assertEqual(self.committed, {p: (h, h) for p, h in self.highs.items()})

    def test_memory_bounded(self):
        self.assertTrue(self.rss_samples)
        ceiling = max(self.rss_before * RSS_FACTOR, self.rss_before + RSS_HEADROOM_KIB)
        sys.stderr.write("VmRSS before %d KiB, max %d KiB, ceiling %d KiB\n"
                         % (self.rss_before, max(self.rss_samples), ceiling))
        self.assertLess(max(self.rss_samples), ceiling)

    def test_mongodb_outage_counted_as_mongodb(self):
        m = self.metrics_after_mongo_cut
        self.assertGreaterEqual(m.get('rtu_transient_errors_total{dependency="mongodb"}', 0), 1, m)
        self.assertNotIn('rtu_transient_errors_total{dependency="kafka"}', m)

    def test_ready_is_503_while_mongodb_is_cut(self):
        # EXPECTED TO BE ENABLED: rtu has no HTTP routes yet (another change adds
        # them); as soon as it logs "http listening" with its port, this runs.
        self.assertTrue(self.ready_during_cut)
        self.assertEqual(set(self.ready_during_cut), {503}, self.ready_during_cut)


if __name__ == "__main__":
    harness.main()
