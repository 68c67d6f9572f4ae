"""benchlib.scale: --scale, rebalances under load.

This module owns: rtu replicas in one consumer group whose count changes at
even intervals (--scale 1,2,3,2) while basic messages over distinct keys are
produced at --rate, and per change the partitions revoked and the longest
pause of a moved and of an unmoved partition, from the written documents
(scale_main).
"""

import datetime
import json
import os
import signal
import subprocess
import time

from .contenders import Running, contender_env
from .freshness import fresh_topic
from .proc import fail, reap, say, spawn
from .scenarios import basic_env, part_of
from .servers import Servers, wait_committed


def scale_main(a, rtu, tools, tmp):
    """rtu replicas in one group, the count changed at even intervals while N
    messages (distinct keys) are produced at --rate. Each message writes its own
    document, so a partition's documents ordered by offset give when each of its
    messages was applied: the longest gap between two consecutive ones is the
    partition's longest pause. Moved partitions are those any replica logged as
    revoked during a change."""
    if a.scenario != "basic":
        fail("--scale measures the basic scenario")
    steps = [int(x) for x in a.scale.split(",")]
    n = a.messages[0]
    topic = fresh_topic(0)
    servers = Servers(tools, tmp, [(topic, a.partitions)], a.verbose)
    replicas = []
    try:
        env_base = basic_env(os.path.join(tmp, "cfg"))
        env_base["INVARIANT_TOPIC_MAP"] = json.dumps({topic: "pr_items"})
        group = "bench-scale-%d" % os.getpid()
        dbname = "bench_scale"
        env = contender_env(a, rtu, env_base, servers, group, dbname)
        servers.client.drop_database(dbname)
        main = os.path.join(tmp, "scale.jsonl")
        with open(main, "w") as out:
            for i in range(n):
                kt = '{"ID":%d}' % i
                val = {"ID": i, "NAME": "item-%d" % i, "QTY": str(i % 1000), "PRICE": "1.50",
                       "ACTIVE": "true", "UPDATED": "x"}
                out.write('{"topic":"%s","partition":%d,"key":%s,"value":%s}\n'
                          % (topic, part_of(kt, a.partitions), json.dumps(kt),
                             json.dumps(json.dumps(val, separators=(",", ":")))))

        def start():
            r = Running(a, rtu, env, servers, "scale-%d" % len(replicas))
            replicas.append(r)
            deadline = time.monotonic() + 60
            while not r.assigned and time.monotonic() < deadline and r.proc.poll() is None:
                time.sleep(0.05)

        for _ in range(steps[0]):
            start()
        prod = spawn([os.path.join(tools, "rtu-produce"), "--brokers", servers.brokers, "--file",
                      main, "--rate", str(a.rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        span = n / a.rate / (len(steps) + 1)
        changes = []
        for k, want in enumerate(steps[1:], 1):
            while time.monotonic() < t0 + k * span:
                time.sleep(0.05)
            alive = [r for r in replicas if r.proc.poll() is None]
            changes.append((time.time(), len(alive), want))
            say("%.1f s: %d -> %d replicas" % (time.monotonic() - t0, len(alive), want))
            while len(alive) < want:
                start()
                alive.append(replicas[-1])
            while len(alive) > want:
                alive.pop().stop(0)
        prod.wait(a.timeout)
        if prod.returncode != 0:
            fail("produce failed: %s" % prod.stderr.read()[-2000:])
        alive = [r for r in replicas if r.proc.poll() is None]
        wait_committed(a, alive[0], servers, tools, group, [topic], 0)
        for r in alive:
            r.stop(0)
        protocols, revoked = set(), []   # (epoch ms, partition)
        for r in replicas:
            for raw in r.lines:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("msg") in ("partitions revoked", "partitions assigned"):
                    protocols.add(line.get("protocol"))
                if line.get("msg") == "partitions revoked" and line.get("partitions"):
                    for item in line["partitions"].split(","):
                        revoked.append((line["time"], int(item.rsplit("[", 1)[1].rstrip("]"))))
        per = {}
        for d in servers.client[dbname]["items"].find({}, {"updatedAt": 1, "__internal__kafkaInfo": 1}):
            ki = d["__internal__kafkaInfo"]
            per.setdefault(ki["partition"], []).append(
                (int(ki["offset"]), d["updatedAt"].replace(tzinfo=datetime.timezone.utc).timestamp()
                 * 1000.0))
        total = sum(len(v) for v in per.values())
        for docs in per.values():
            docs.sort()
        # one window per change, until the next: a partition revoked from any
        # replica in it moved; its pause is the longest gap between two of its
        # consecutive messages whose second was applied in the window
        bounds = [c[0] * 1000.0 for c in changes] + [float("inf")]
        for k, (t_change, before, after) in enumerate(changes):
            lo, hi = bounds[k], bounds[k + 1]
            moved = {p for t, p in revoked if lo <= t < hi}
            gaps = {}
            for p, docs in per.items():
                g = [b[1] - a_[1] for a_, b in zip(docs, docs[1:]) if lo <= b[1] < hi]
                gaps[p] = max(g) if g else 0.0
            kept = [gaps[p] for p in gaps if p not in moved]
            mv = [gaps[p] for p in gaps if p in moved]
            print("scale_step=%d->%d protocol=%s rate=%d partitions_moved=%d "
                  "longest_pause_unmoved_ms=%s longest_pause_moved_ms=%s" % (
                      before, after, ",".join(sorted(p for p in protocols if p)), a.rate,
                      len(moved), "%.0f" % max(kept) if kept else "-",
                      "%.0f" % max(mv) if mv else "-"), flush=True)
        print("scale=%s messages=%d documents=%d" % (a.scale, n, total), flush=True)
        if total != n:
            fail("%d documents for %d messages: something was lost" % (total, n))
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                reap(r.proc, signal.SIGKILL)
        servers.close()
    return 0

