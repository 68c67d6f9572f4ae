"""End-to-end: every *.test.json case of strategies/ and examples/ run by the real
`rtu run` against the development Kafka and the MongoDB test server, and its
expectations checked on what rtu wrote and produced there. `rtu test` runs the
same cases offline (in-memory store, captured outputs); this file is the witness
that the cases hold against a real database and broker too, so a case cannot be
right only for the in-memory store.

Each case gets its configuration as its nearest `env` file gives it (paths
relative to that file's folder) and a database of its own, `given` inserted before
rtu starts (with `__STATE__: "PUBLIC"` where a document has none); its messages are
produced in order, and checked once the group has committed them all (an offset is
committed only after its writes and outputs are done). The cases of one
configuration share its topics (prefixed per configuration; the outputs' topic
files are rewritten in a copy) and one consumer group, and run one after the
other: each starts where the one before ended, and sees only the output messages
produced after that (the mock cluster takes a quarter of a second a topic to
create, too long for topics of their own). Chains of at most six cases run side by
side. RTU_CASES=TEXT runs only the cases whose "file: name" contains TEXT.

- expect.projections: a stored document with at least the listed fields (objects
  compared as subsets), or none with `"__absent": true`;
- expect.projectionChanges: exactly this set of (type, identifier);
- expect.prUpdates, expect.kafkaProjectionChanges: each listed message produced
  (topic, key and value as subsets), `[]` none at all.
"""

import glob
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase, wait_for  # noqa: E402

ROOT = os.environ.get("RTU_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
T0 = 1_760_000_000_000
PARTITIONS = 1
CHAIN = 6
# RTU_CASES=TEXT: only the cases whose "file: name" label contains TEXT.
ONLY = os.environ.get("RTU_CASES", "")
# What the harness gives every scenario (its own), never taken from a case's env.
OWN = {"KAFKA_BROKERS", "MONGODB_URL", "KAFKA_GROUP_ID", "PROJECTIONS_DATABASE_NAME",
       "HTTP_PORT", "HTTP_HOST", "LOG_LEVEL", "KAFKA_CONSUMER_MAX_WAIT_TIME"}


def read_env(path):
    """KEY=VALUE lines as `rtu test` reads them: comments and shell-only lines
    skipped, quotes removed, $NAME expanded (EXAMPLE_DIR: the file's folder),
    relative *_FOLDER values made relative to the file's folder."""
    folder = os.path.dirname(os.path.abspath(path))
    out = {}

    def expand(s):
        def sub(m):
            name = m.group(1) or m.group(2)
            if name in out:
                return out[name]
            return folder if name == "EXAMPLE_DIR" else os.environ.get(name, "")
        return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", sub, s)

    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*(?:export\s+)?([A-Za-z_]\w*)=(.*)$", line.rstrip("\n"))
            if not m:
                continue
            k, v = m.group(1), m.group(2).strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1] if v[0] == "'" else expand(v[1:-1])
            else:
                v = expand(v)
            if k.endswith("_FOLDER") and v and not v.startswith("/"):
                v = os.path.normpath(os.path.join(folder, v))
            out[k] = v
    return out


def nearest_env(folder):
    while True:
        if os.path.exists(os.path.join(folder, "env")):
            return os.path.join(folder, "env")
        up = os.path.dirname(folder)
        if up == folder:
            return None
        folder = up


def collect():
    """[(label, env vars, case)] of every case under strategies/ and examples/."""
    out = []
    files = sorted(glob.glob(os.path.join(ROOT, "strategies", "**", "*.test.json"), recursive=True)
                   + glob.glob(os.path.join(ROOT, "examples", "**", "*.test.json"), recursive=True))
    for path in files:
        with open(path, encoding="utf-8") as f:
            cases = json.load(f)
        if isinstance(cases, dict):
            cases = [cases]
        env = read_env(nearest_env(os.path.dirname(path)))
        for c in cases:
            out.append(("%s: %s" % (os.path.relpath(path, ROOT), c.get("name", "?")), env, c))
    return out


def truthy(v, default):
    return default if v is None or v == "" else v == "true"


def read_json(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


class Case:
    """One case's configuration (topics prefixed), database and rtu."""

    def __init__(self, cluster, n, label, env, case, chain, group):
        self.label, self.case, self.prefix = label, case, "c%d." % chain
        self.topic_map = {self.prefix + t: p for t, p in json.loads(env["INVARIANT_TOPIC_MAP"]).items()}
        self.out_topics = {"prUpdates": set(), "kafkaProjectionChanges": set()}
        files = {}
        extra = {}
        if truthy(env.get("GENERATE_KAFKA_PROJECTION_UPDATES"), False):
            upd = read_json(env["KAFKA_PROJECTION_UPDATES_FOLDER"], "kafkaProjectionUpdates.json")
            for spec in upd.values():
                spec["updatesTopic"] = self.prefix + spec["updatesTopic"]
                self.out_topics["prUpdates"].add(spec["updatesTopic"])
            files["upd/kafkaProjectionUpdates.json"] = json.dumps(upd)
        if truthy(env.get("GENERATE_KAFKA_PROJECTION_CHANGES"), False):
            pcs = read_json(env["KAFKA_PROJECTION_CHANGES_FOLDER"], "kafkaProjectionChanges.json")
            for spec in pcs.values():
                for sv in spec["projectionChanges"].values():
                    sv["topic"] = self.prefix + sv["topic"]
                    self.out_topics["kafkaProjectionChanges"].add(sv["topic"])
            files["pc/kafkaProjectionChanges.json"] = json.dumps(pcs)
        self.scenario = cluster.scenario("case%d" % n, self.topic_map, {}, files=files)
        for k, v in env.items():
            if k not in OWN:
                self.scenario.env[k] = v
        self.scenario.group = self.scenario.env["KAFKA_GROUP_ID"] = group
        self.scenario.env["INVARIANT_TOPIC_MAP"] = json.dumps(self.topic_map)
        self.scenario.env.setdefault("PROJECTIONS_CHANGES_ENABLED", "true")
        if "PROJECTIONS_CHANGES_ENABLED" not in env:
            self.scenario.env["PROJECTIONS_CHANGES_ENABLED"] = "true"
        if files.get("upd/kafkaProjectionUpdates.json"):
            extra["KAFKA_PROJECTION_UPDATES_FOLDER"] = os.path.join(self.scenario.dir, "upd")
        if files.get("pc/kafkaProjectionChanges.json"):
            extra["KAFKA_PROJECTION_CHANGES_FOLDER"] = os.path.join(self.scenario.dir, "pc")
        self.scenario.env.update(extra)
        self.pc_name = self.scenario.env.get("PROJECTIONS_CHANGES_COLLECTION_NAME")
        for coll, docs in (case.get("given") or {}).items():
            rows = [dict(d) for d in docs]
            for d in rows:
                d.setdefault("__STATE__", "PUBLIC")
            if rows:
                self.scenario.db[coll].insert_many(rows)
        self.messages = []
        polls = case.get("messages") or []
        if polls and isinstance(polls[0], list):
            polls = [m for poll in polls for m in poll]
        for i, m in enumerate(polls):
            line = {"topic": self.prefix + m["topic"], "partition": m.get("partition", 0),
                    "key": m.get("key"), "value": m.get("value"),
                    "timestamp": m.get("timestamp", T0 + i)}
            if m.get("headers"):
                line["headers"] = m["headers"]
            self.messages.append(line)
        self.rtu = None
        self.base = {}

    def output_counts(self, cluster):
        """Messages already in each output topic the case checks: the cases before
        this one's (read only where expected: kcat takes its time)."""
        expect = self.case.get("expect") or {}
        for section, topics in self.out_topics.items():
            if section in expect:
                for t in topics:
                    self.base[t] = len(cluster.read_topic(t))

    def done(self, cluster):
        want = {}
        for m in self.messages:
            want.setdefault(m["topic"], {}).setdefault(m["partition"], 0)
            want[m["topic"]][m["partition"]] += 1
        for topic, parts in want.items():
            got = cluster.committed(self.scenario.group, topic)
            for p, n in parts.items():
                committed, high = got.get(p, (-1, 0))
                if committed < high or high < n:
                    return False
        return True


def subset(want, got):
    """want's fields all in got, objects compared as subsets, the rest exactly."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    return want == got


def pair(c):
    return c["type"] + " " + json.dumps(c["identifier"], sort_keys=True)


CASES = collect()
C = {}
TOPICS = {}


@harness.report_on_error
def setUpModule():
    by_env = {}  # env file's variables (as text) -> [case number]
    for n, (label, env, case) in enumerate(CASES):
        if ONLY in label:
            by_env.setdefault(json.dumps(env, sort_keys=True), []).append(n)
    # chains of at most CHAIN cases, each with its own topics and group, run side by side
    chains = [ns[i:i + CHAIN] for ns in by_env.values() for i in range(0, len(ns), CHAIN)]
    chain_of = {}
    for k, ns in enumerate(chains):
        env = CASES[ns[0]][1]
        for n in ns:
            chain_of[n] = k
        for t in json.loads(env["INVARIANT_TOPIC_MAP"]):
            TOPICS["c%d.%s" % (k, t)] = PARTITIONS
        if truthy(env.get("GENERATE_KAFKA_PROJECTION_UPDATES"), False):
            for spec in read_json(env["KAFKA_PROJECTION_UPDATES_FOLDER"],
                                  "kafkaProjectionUpdates.json").values():
                TOPICS["c%d.%s" % (k, spec["updatesTopic"])] = PARTITIONS
        if truthy(env.get("GENERATE_KAFKA_PROJECTION_CHANGES"), False):
            for spec in read_json(env["KAFKA_PROJECTION_CHANGES_FOLDER"],
                                  "kafkaProjectionChanges.json").values():
                for sv in spec["projectionChanges"].values():
                    TOPICS["c%d.%s" % (k, sv["topic"])] = PARTITIONS
    # the mock cluster creates a topic in about a quarter of a second
    wait_file = harness._wait_file
    harness._wait_file = lambda path, proc, what, timeout=20: wait_file(
        path, proc, what, max(timeout, 5 + len(TOPICS)))
    cluster = harness.start_module(TOPICS)
    for n in chain_of:
        label, env, case = CASES[n]
        C[n] = Case(cluster, n, label, env, case, chain_of[n], "g-cases-%d" % chain_of[n])
    # in rounds: the i-th case of every chain at once
    lists = chains
    for i in range(max(len(ns) for ns in lists)):
        batch = [C[ns[i]] for ns in lists if i < len(ns)]
        for c in batch:
            c.output_counts(cluster)
            c.rtu = c.scenario.start()
        for c in batch:
            c.rtu.wait_assigned(60)
        cluster.produce([m for c in batch for m in c.messages])
        for c in batch:
            wait_for(lambda: c.done(cluster), 120, "case %s committed" % c.label, c.rtu, 0.3)
        for c in batch:
            c.rtu.stop()


def tearDownModule():
    harness.stop_module()


class Cases(E2ETestCase):
    def check(self, n):
        c = C[n]
        cluster = harness.cluster()
        expect = c.case.get("expect") or {}
        problems = []
        for coll, docs in (expect.get("projections") or {}).items():
            stored = list(c.scenario.db[coll].find({}))
            for d in docs:
                d = dict(d)
                absent = d.pop("__absent", False)
                found = [s for s in stored if subset(d, s)]
                if absent and found:
                    problems.append("%s: unexpected %s" % (coll, d))
                elif not absent and not found:
                    problems.append("%s: missing %s; stored: %s" % (coll, d, [
                        {k: v for k, v in s.items() if not k.startswith("_")} for s in stored]))
        if "projectionChanges" in expect:
            got = {pair(d) for d in c.scenario.db[c.pc_name].find({})}
            want = {pair(x) for x in expect["projectionChanges"]}
            if got != want:
                problems.append("projectionChanges: missing %s, unexpected %s"
                                % (sorted(want - got), sorted(got - want)))
        for section in ("prUpdates", "kafkaProjectionChanges"):
            if section not in expect:
                continue
            produced = []
            for topic in c.out_topics[section]:
                for m in cluster.read_topic(topic)[c.base.get(topic, 0):]:
                    produced.append({"topic": topic[len(c.prefix):],
                                     "key": json.loads(m["key"]) if m["key"] else None,
                                     "value": json.loads(m["value"]) if m["value"] else None})
            if not expect[section] and produced:
                problems.append("%s: none expected, produced %s" % (section, produced))
            for w in expect[section]:
                if not any(subset(w, p) for p in produced):
                    problems.append("%s: missing %s; produced %s" % (section, w, produced))
        self.assertEqual([], problems, c.label)


for _n, (_label, _env, _case) in enumerate(CASES):
    if ONLY not in _label:
        continue
    _name = "test_%02d_%s" % (_n, re.sub(r"\W+", "_", _label)[:80])
    setattr(Cases, _name, (lambda n: lambda self: self.check(n))(_n))


if __name__ == "__main__":
    harness.main()
