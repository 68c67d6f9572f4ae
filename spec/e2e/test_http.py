"""End-to-end: the HTTP routes of a running rtu (HTTP_HOST=127.0.0.1, HTTP_PORT=0,
the port read from the "http listening" log line). After messages are applied and
one partition stopped at a malformed message: /-/healthz and /-/ready answer 200,
/-/metrics counts exactly what was applied and carries the reference's histograms
and rtu_freshness_seconds,
the MongoDB command counts and the partition lag from librdkafka's statistics,
/-/check-up names the stopped partition. With MongoDB unreachable at start, the
routes already answer: alive, not ready, MongoDB KO."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, row  # noqa: E402

TOPICS = {"http.ok": 2, "http.bad": 1, "http.nomongo": 1}
T = 1_700_000_000_000

MAP_TABLE = harness.rows_map_table()  # pr_rows -> rows: ID (key), NAME (string)

HISTOGRAMS = ["rtu_consumer_batch_processing", "rtu_consumer_partition_processing",
              "rtu_processor_records_preparation", "rtu_processor_storage",
              "rtu_processor_producer"]


OK = [row("http.ok", i % 2, i, T + i) for i in range(1, 8)]                 # 7 messages
BAD = [row("http.bad", 0, 100, T + 100),                                     # offset 0: fine
       row("http.bad", 0, 101, T + 101, raw='{"ID": 101, "NAME": oops'),     # offset 1: not JSON
       row("http.bad", 0, 102, T + 102)]                                     # offset 2: after it

S, R = {}, {}


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["main"] = c.scenario("http", {"http.ok": "pr_rows", "http.bad": "pr_rows"}, MAP_TABLE,
                           env={"PARTITION_WORKERS": "2"})
    S["nomongo"] = c.scenario("nomongo", {"http.nomongo": "pr_rows"}, MAP_TABLE,
                              env={"MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"})
    c.produce(OK + BAD)
    R["main"] = S["main"].start()
    R["nomongo"] = S["nomongo"].start()


def tearDownModule():
    harness.stop_module()


class Running(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        rtu = R["main"]
        cls.listening = rtu.wait_log(lambda l: l.get("msg") == "http listening", 20, "http")[0]
        coll = S["main"].coll("rows")
        wait_for(lambda: coll.count_documents({}) >= 8, 30, "8 rows", rtu)
        rtu.wait_log(lambda l: l.get("level", 0) >= 50 and l.get("topic") == "http.bad", 30,
                     "the error of http.bad")
        # Ready once joined and MongoDB answered.
        wait_for(lambda: R["main"].http("/-/ready")[0] == 200, 20, "/-/ready 200", rtu)
        # The series exists from the assignment (-1: unknown); the statistics come
        # every 5 s with the real lag.
        wait_for(lambda: harness.metric_samples(R["main"].http("/-/metrics")[2]).get(
                 'rtu_partition_lag{topic="http.ok",partition="0"}', -1) >= 0, 20,
                 "rtu_partition_lag from the statistics", rtu)
        cls.metrics = R["main"].http("/-/metrics")
        cls.checkup = R["main"].http("/-/check-up")
        cls.healthz = R["main"].http("/-/healthz")
        cls.ready = R["main"].http("/-/ready")
        cls.not_found = R["main"].http("/-/nope")
        cls.post = R["main"].http("/-/healthz", method="POST")

    @classmethod
    def tearDownClass(cls):
        R["main"].stop()

    def test_listens_on_the_given_host_and_a_free_port(self):
        self.assertEqual(self.listening["host"], "127.0.0.1")
        self.assertGreater(self.listening["port"], 0)

    def test_healthz_and_ready(self):
        for status, ctype, body in (self.healthz, self.ready):
            self.assertEqual(status, 200, body)
            self.assertIn("application/json", ctype)
            b = json.loads(body)
            self.assertEqual(b["status"], "OK")
            self.assertEqual(b["name"], "rtu")
            self.assertTrue(b["version"])

    def test_metrics_count_what_was_applied(self):
        status, ctype, body = self.metrics
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        s = harness.metric_samples(body)
        self.assertEqual(s.get('rtu_messages_applied_total{topic="http.ok"}'), len(OK), body)
        self.assertEqual(s.get('rtu_messages_applied_total{topic="http.bad"}'), 1, body)
        self.assertEqual(s.get('rtu_messages_failed_total{topic="http.bad"}'), 1, body)

    def test_metrics_histograms_of_the_reference(self):
        body = self.metrics[2]
        s = harness.metric_samples(body)
        for h in HISTOGRAMS:
            self.assertIn("# TYPE %s histogram" % h, body)
            self.assertIn('%s_bucket{le="+Inf"}' % h, s)
            self.assertIn("%s_count" % h, s)
            self.assertIn("%s_sum" % h, s)

    def test_metrics_histograms_observed(self):
        s = harness.metric_samples(self.metrics[2])
        for h in ("rtu_consumer_batch_processing", "rtu_consumer_partition_processing",
                  "rtu_processor_records_preparation", "rtu_processor_storage"):
            self.assertGreaterEqual(s["%s_count" % h], 1, h)
            self.assertEqual(s['%s_bucket{le="+Inf"}' % h], s["%s_count" % h], h)
        self.assertEqual(s["rtu_workers"], 2)

    def test_metrics_freshness(self):
        """rtu_freshness_seconds{projection}: one observation per message a run got
        through (the 7 of http.ok and the first of http.bad, not the one it stopped
        at), each from the message's Kafka timestamp (years ago here) to its write."""
        s = harness.metric_samples(self.metrics[2])
        series = 'rtu_freshness_seconds%s{projection="pr_rows"%s}'
        self.assertIn("# TYPE rtu_freshness_seconds histogram", self.metrics[2])
        self.assertEqual(s.get(series % ("_count", "")), 8, self.metrics[2])
        self.assertEqual(s.get(series % ("_bucket", ',le="+Inf"')), 8)
        self.assertEqual(s.get(series % ("_bucket", ',le="1800"')), 0)
        oldest_age = time.time() - (T + 102) / 1000.0
        self.assertGreater(s[series % ("_sum", "")], 8 * (oldest_age - 3600))

    def test_metrics_mongodb_commands(self):
        s = harness.metric_samples(self.metrics[2])
        cmds = {k: v for k, v in s.items() if k.startswith("rtu_mongodb_commands_total{")}
        self.assertTrue(cmds, self.metrics[2])
        self.assertGreaterEqual(cmds.get('rtu_mongodb_commands_total{command="createIndexes"}', 0), 1, cmds)
        self.assertGreaterEqual(sum(cmds.values()), 3, cmds)

    def test_metrics_partition_lag(self):
        s = harness.metric_samples(self.metrics[2])
        self.assertGreaterEqual(s['rtu_partition_lag{topic="http.ok",partition="0"}'], 0)
        self.assertEqual(s.get('rtu_partition_paused{topic="http.bad",partition="0"}'), 1)

    def test_checkup_names_the_stopped_partition(self):
        status, ctype, body = self.checkup
        self.assertEqual(status, 200, body)
        self.assertIn("application/json", ctype)
        b = json.loads(body)
        self.assertEqual(b["status"], "OK")
        self.assertEqual(b["dependencies"]["mongodb"]["status"], "OK", b)
        self.assertEqual(b["dependencies"]["kafka"]["status"], "OK", b)
        stopped = b["stoppedPartitions"]
        self.assertEqual(len(stopped), 1, b)
        p = stopped[0]
        self.assertEqual((p["topic"], p["partition"], p["offset"]), ("http.bad", 0, 1), p)
        self.assertIn("JSON", p["cause"])

    def test_other_paths_and_methods(self):
        self.assertEqual(self.not_found[0], 404)
        self.assertEqual(self.post[0], 405)


class MongoUnreachable(E2ETestCase):
    """Start-up waits for MongoDB (indexes first): the routes answer meanwhile."""

    @classmethod
    def setUpClass(cls):
        rtu = R["nomongo"]
        rtu.wait_log(lambda l: l.get("msg") == "MongoDB unavailable; retrying", 20,
                     "MongoDB unavailable")
        cls.healthz = rtu.http("/-/healthz")
        cls.ready = rtu.http("/-/ready")
        cls.checkup = rtu.http("/-/check-up")

    @classmethod
    def tearDownClass(cls):
        R["nomongo"].stop()

    def test_alive_not_ready(self):
        self.assertEqual(self.healthz[0], 200, self.healthz)
        self.assertEqual(self.ready[0], 503, self.ready)
        self.assertEqual(json.loads(self.ready[2])["status"], "KO")

    def test_checkup_says_mongodb(self):
        status, _, body = self.checkup
        self.assertEqual(status, 503, body)
        b = json.loads(body)
        self.assertEqual(b["status"], "KO")
        self.assertEqual(b["dependencies"]["mongodb"]["status"], "KO", b)
        self.assertTrue(b["dependencies"]["mongodb"].get("detail"), b)


if __name__ == "__main__":
    harness.main()
