"""benchlib.scale: --scale, rebalances under load.

This module owns: rtu replicas in one consumer group whose count changes at
even intervals (--scale 1,2,3,2), each change once the group settled on the
previous one, while basic messages over distinct keys are produced at --rate;
the check that every message left its document, naming the partitions and
offsets missing (scale_main). What it prints per change is
benchlib/rebalances.py's.
"""

import datetime
import json
import os
import signal
import subprocess
import time

from . import rebalances
from .contenders import Running, contender_env
from .freshness import fresh_topic
from .proc import fail, reap, say, spawn
from .scenarios import basic_env, part_of
from .servers import Servers, offsets, wait_committed


def scale_main(a, rtu, tools, tmp):
    """rtu replicas in one group, the count changed at even intervals (each
    once the group settled on the previous one) while N messages (distinct
    keys) are produced at --rate. Each message writes its own document, so a
    partition's documents ordered by offset give when each of its messages was
    applied: the longest gap between two consecutive ones is the partition's
    longest pause (benchlib/rebalances.py reads the rest from the replicas'
    logs)."""
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
            # the next change once the group has settled on the last one (on the
            # mock cluster a change takes one to three rebalances of 5 s), so
            # that each change's pauses are its own
            deadline = time.monotonic() + 120
            while (not rebalances.settled([r.lines for r in replicas if r.proc.poll() is None],
                                          a.partitions) and time.monotonic() < deadline):
                time.sleep(0.05)
            while time.monotonic() < t0 + k * span:
                time.sleep(0.05)
            if prod.poll() is not None:
                say("the stream ended before the change: give more --messages")
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
        end_ms = time.time() * 1000.0
        for r in alive:
            r.stop(0)
        per = {}
        for d in servers.client[dbname]["items"].find({}, {"updatedAt": 1, "__internal__kafkaInfo": 1}):
            ki = d["__internal__kafkaInfo"]
            per.setdefault(ki["partition"], []).append(
                (int(ki["offset"]), d["updatedAt"].replace(tzinfo=datetime.timezone.utc).timestamp()
                 * 1000.0))
        total = sum(len(v) for v in per.values())
        applied = {p: [t for _, t in sorted(docs)] for p, docs in per.items()}
        for line in rebalances.report(changes, [r.lines for r in replicas], applied,
                                      a.partitions, end_ms):
            print(line, flush=True)
        print("scale=%s messages=%d documents=%d" % (a.scale, n, total), flush=True)
        if total != n:
            # which messages: the i-th message of a partition is at offset i
            seen = {(p, o) for p, docs in per.items() for o, _ in docs}
            nxt, missing = {}, {}
            for i in range(n):
                p = part_of('{"ID":%d}' % i, a.partitions)
                o = nxt.get(p, 0)
                nxt[p] = o + 1
                if (p, o) not in seen:
                    missing.setdefault(p, []).append(o)
            ranges = ["%d:%d-%d(%d)" % (p, min(v), max(v), len(v)) for p, v in sorted(missing.items())]
            held = sum(high - low for _, _, low, high, _ in offsets(tools, servers.brokers,
                                                                     [topic]))
            fail("%d documents for %d messages (the topic holds %d): something was lost "
                 "(partition:offsets) %s" % (total, n, held, " ".join(ranges)))
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                reap(r.proc, signal.SIGKILL)
        servers.close()
    return 0

