"""End-to-end, issue 18 items 3, 6 and 7: pr-update keys are the bytes of
JSON.stringify of the primary-key object, on the partition Java's and kafkajs'
murmur2 partitioner gives; a custom adapter's timestampDate is the projection's
timestamp (and its counter); /-/metrics carries the Fast Data dashboard's client
series (a scrape of it is printed with RTU_E2E_VERBOSE=1)."""

import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for, error_logs  # noqa: E402

PR_PARTITIONS = 6
TOPICS = {"km.in": 2, "km.pr": PR_PARTITIONS}
T = 1_700_000_000_000

ADAPTER = r'''
-- value: {"row": {...}, "ts": ms | absent}
return function(message, primaryKeys, log)
  local v = json.decode(message.value)
  local keyObject = {}
  for _, pk in ipairs(primaryKeys) do keyObject[pk] = v.row[pk] end
  return {
    keyObject = keyObject,
    value = v.row,
    timestampDate = v.ts and date(v.ts) or nil,
  }
end
'''

# fieldsInKey puts code before id: the key's order, not the conversion's.
MAP_TABLE = {
    "pr_things": {
        "destination": "things",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "CODE": {"fieldName": "code", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["code", "id"],
    }
}

# Key values whose JSON text shows escapes, UTF-8 kept as it is, and numbers
# (Python's json.dumps writes these as JSON.stringify does).
CODES = ["a", "caf\u00e9 \u20ac \U0001F600", 'q"b\\s', "tab\tnl\ncr\r", "\u0001\u001f\u007f",
         "</script>", "x" * 40, "", "\u2028"]
IDS = [1, -5, 2 ** 40, 1.5, 0.1, 1e21, 12345678901]
ROWS = [{"CODE": c, "ID": IDS[i % len(IDS)], "NAME": "n%d" % i} for i, c in enumerate(CODES)]
ROWS += [{"CODE": "k%d" % i, "ID": i, "NAME": "m%d" % i} for i in range(40)]

S, R = {}, {}


def murmur2(data):
    """Kafka's Utils.murmur2 (unsigned 32 bits)."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = data[4 * n4:]
    if len(rest) == 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if len(rest) >= 1:
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key, n):
    """Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions."""
    return (murmur2(key) & 0x7FFFFFFF) % n


def read_keys(topic):
    """[(partition, key bytes)] of every message of topic: kcat's -J output does
    not escape control characters in keys, so each key goes with its length."""
    c = harness.cluster()
    p = subprocess.run(["kcat", "-b", c.brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "%p %K %k\n"], capture_output=True, timeout=30, check=True)
    out, data = [], p.stdout
    while data:
        part, n, rest = data.split(b" ", 2)
        out.append((int(part), rest[:int(n)]))
        data = rest[int(n) + 1:]
    return out


def stringify(row):
    return json.dumps({"code": row["CODE"], "id": row["ID"]}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


@harness.report_on_error
def setUpModule():
    c = harness.start_module(TOPICS)
    S["k"] = c.scenario(
        "keys", {"km.in": "pr_things"}, MAP_TABLE, adapter=ADAPTER,
        env={"GENERATE_KAFKA_PROJECTION_UPDATES": "true", "LIVENESS_INTERVAL_MS": "5000"},
        files={"prUpdates/kafkaProjectionUpdates.json":
               json.dumps({"pr_things": {"updatesTopic": "km.pr"}})})
    S["k"].env["KAFKA_PROJECTION_UPDATES_FOLDER"] = os.path.join(S["k"].dir, "prUpdates")
    msgs = []
    for i, row in enumerate(ROWS):
        v = {"row": row}
        if i % 2 == 0:
            v["ts"] = T + 1_000_000 + i  # the adapter's time, not Kafka's
        msgs.append({"topic": "km.in", "partition": i % 2, "key": "k%d" % i, "value": v,
                     "timestamp": T + i})
    c.produce(msgs)
    R["k"] = S["k"].start()


def tearDownModule():
    try:
        R["k"].stop()  # after every class: they all read the one run
    finally:
        harness.stop_module()


class Keys(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        want = len(ROWS)
        cls.updates = wait_for(
            lambda: (lambda m: m if len(m) >= want else None)(read_keys("km.pr")),
            40, "%d pr-update messages" % want, R["k"])

    def test_murmur2_known_samples(self):
        # Kafka's UtilsTest.testMurmur2, as signed Java ints
        samples = {b"21": -973932308, b"foobar": -790332482,
                   b"a-little-bit-long-string": -985981536,
                   b"a-little-bit-longer-string": -1486304829,
                   b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
                   b"abc": 479470107}
        for data, want in samples.items():
            got = murmur2(data)
            self.assertEqual(got - (1 << 32) if got >= 1 << 31 else got, want, data)

    def test_key_bytes_are_json_stringify(self):
        by_key = {key: part for part, key in self.updates}
        for row in ROWS:
            self.assertIn(stringify(row), by_key, "no pr-update keyed %r" % stringify(row))

    def test_partition_is_murmur2(self):
        spread = set()
        for part, key in self.updates:
            self.assertEqual(part, java_partition(key, PR_PARTITIONS), key)
            spread.add(part)
        self.assertGreater(len(spread), 3, "keys spread over the partitions")

    def test_no_errors(self):
        self.assertEqual(error_logs(R["k"]), [])


class TimestampDate(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        coll = S["k"].coll("things")
        wait_for(lambda: coll.count_documents({}) >= len(ROWS), 40, "every record", R["k"])
        cls.docs = {(d["code"], d["id"]): d for d in coll.find({})}

    def doc(self, i):
        return self.docs[(ROWS[i]["CODE"], ROWS[i]["ID"])]

    def test_adapter_time_is_the_projection_time(self):
        ms = T + 1_000_000 + 10
        d = self.doc(10)
        self.assertEqual(d["timestamp"], datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).replace(tzinfo=None))
        self.assertEqual(d["__internal__kafkaInfo"]["timestamp"],
                         datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000))
        self.assertEqual(d["__internal__counterType"], "timestamp")
        self.assertEqual(d["__internal__counter"], ms)

    def test_without_it_the_kafka_time(self):
        d = self.doc(11)
        self.assertEqual(d["__internal__counter"], T + 11)


class Metrics(E2ETestCase):
    def test_dashboard_series(self):
        def scrape():
            # statistics come every 5 s, the consumer's and each producer's apart
            s = R["k"].metrics()
            return s if s.get("kafka_producer_record_send_total", 0) >= len(ROWS) and s.get(
                'kafka_consumer_fetch_manager_records_consumed_total{topic="km.in"}') == len(ROWS) \
                and 'kafka_consumer_fetch_manager_records_lag{topic="km.in",partition="1"}' in s \
                else None
        try:
            s = wait_for(scrape, 30, "producer statistics in /-/metrics", R["k"])
        except AssertionError:
            sys.stderr.write(R["k"].http("/-/metrics")[2])
            raise
        if harness.VERBOSE:
            sys.stderr.write(R["k"].http("/-/metrics")[2])
        consumed = s.get('kafka_consumer_fetch_manager_records_consumed_total{topic="km.in"}')
        self.assertEqual(consumed, len(ROWS))
        self.assertEqual(s.get('kafka_consumer_fetch_manager_records_lag{topic="km.in",partition="0"}'), 0)
        self.assertEqual(s.get('kafka_consumer_fetch_manager_records_lag{topic="km.in",partition="1"}'), 0)
        self.assertGreaterEqual(s.get("kafka_producer_record_send_total"), len(ROWS))
        self.assertGreaterEqual(s.get("kafka_consumer_coordinator_rebalance_total"), 1)
        self.assertGreater(s.get("kafka_consumer_coordinator_rebalance_latency_max"), 0)
        for name in ("kafka_consumer_fetch_manager_records_consumed_rate{topic=\"km.in\"}",
                     "kafka_consumer_fetch_manager_fetch_latency_avg",
                     "kafka_consumer_fetch_manager_fetch_latency_max",
                     "kafka_consumer_coordinator_commit_latency_avg",
                     "kafka_consumer_coordinator_commit_latency_max",
                     "kafka_producer_record_send_rate", "kafka_producer_outgoing_byte_rate",
                     "kafka_producer_request_latency_avg", "kafka_producer_request_latency_max",
                     "kafka_producer_request_rate", "kafka_producer_response_rate"):
            self.assertIn(name, s)
        updates = [v for k, v in s.items()
                   if k.startswith('mongodb_driver_commands_seconds_count{collection="things"')]
        self.assertGreater(sum(updates), 0)
        # the rtu_* series stay beside them
        self.assertEqual(s.get('rtu_messages_applied_total{topic="km.in"}'), len(ROWS))

    def test_liveness_interval(self):
        status, _, body = R["k"].http("/-/healthz")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    harness.main()
