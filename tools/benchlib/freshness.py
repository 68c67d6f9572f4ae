"""benchlib.freshness: --rate, the time from a message's Kafka timestamp to its
projection write, while messages are produced at a fixed rate.

This module owns: each contender's run on its own topic (fresh_topic,
fresh_run: started, warmed up with one message per partition, then N basic
messages produced at --rate by rtu-produce with its defaults while it
consumes; updatedAt - timestamp of every written document), the percentiles
and the lines it prints (fresh_main). tools/bench's docstring describes the
figures.
"""

import json
import os
import statistics
import subprocess
import time

from .contenders import Running, contender_env
from .proc import fail, read_proc
from .scenarios import BASIC_TOPIC, basic_env, part_of
from .servers import Servers, wait_committed


def fresh_topic(slot):
    return "%s.f%d" % (BASIC_TOPIC, slot)


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fresh_run(a, run_no, c, slot, servers, tools, tmp, n, keys):
    """One contender on its own topic: started, warmed up (one message per
    partition, committed), then N messages produced at --rate while it runs;
    freshness = updatedAt - timestamp of every written document (the Kafka
    timestamp is the producer's clock, the same machine's as rtu's)."""
    topic = fresh_topic(slot)
    env_base = basic_env(os.path.join(tmp, "cfg-%d" % slot))
    env_base["INVARIANT_TOPIC_MAP"] = json.dumps({topic: "pr_items"})
    group = "bench-fresh-%d-%d-%s" % (os.getpid(), run_no, c.name)
    dbname = "bench_fresh_%d_%s" % (run_no, c.name.replace("-", "_"))
    env = contender_env(a, c, env_base, servers, group, dbname)
    servers.client.drop_database(dbname)
    warm = os.path.join(tmp, "warm-%d.jsonl" % slot)
    with open(warm, "w") as out:
        for p in range(a.partitions):
            kt = '{"ID":%d}' % (-1 - p)
            vt = json.dumps({"ID": -1 - p, "NAME": "warm", "QTY": "0", "PRICE": "0",
                             "ACTIVE": "true", "UPDATED": "x"}, separators=(",", ":"))
            out.write('{"topic":"%s","partition":%d,"key":%s,"value":%s}\n'
                      % (topic, p, json.dumps(kt), json.dumps(vt)))
    main = os.path.join(tmp, "fresh-%d.jsonl" % slot)
    with open(main, "w") as out:
        for i in range(n):
            key = (i * 7919) % keys
            kt = '{"ID":%d}' % key
            val = {"ID": key, "NAME": "item-%d" % key, "QTY": str(i % 1000),
                   "PRICE": "%d.%02d" % (i % 97, i % 100), "ACTIVE": "true" if i % 2 else "false",
                   "UPDATED": "2024-03-01T10:%02d:%02dZ" % (i // 60 % 60, i % 60)}
            out.write('{"topic":"%s","partition":%d,"key":%s,"value":%s}\n'
                      % (topic, part_of(kt, a.partitions), json.dumps(kt),
                         json.dumps(json.dumps(val, separators=(",", ":")))))
    run = Running(a, c, env, servers, "%s-fresh-%d" % (c.name, run_no))
    prod = [os.path.join(tools, "rtu-produce"), "--brokers", servers.brokers]
    p = subprocess.run(prod + ["--file", warm], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        run.abort("warm-up produce failed: %s" % p.stderr[-2000:])
    wait_committed(a, run, servers, tools, group, [topic], run_no)
    servers.stats(reset=True)
    cpu0, _, _ = read_proc(run.proc.pid)
    t = time.monotonic()
    # the producer's own defaults (linger.ms=5): the sets a live source makes
    p = subprocess.run(prod + ["--file", main, "--rate", str(a.rate)], capture_output=True,
                       text=True, timeout=a.timeout)
    if p.returncode != 0:
        run.abort("produce failed: %s" % p.stderr[-2000:])
    produced_s = time.monotonic() - t
    wait_committed(a, run, servers, tools, group, [topic], run_no)
    cpu_s, hwm, _ = run.stop(run_no)
    stats = servers.stats(reset=True).get(c.app, {})
    cmds = sum(v for k, v in stats.items() if k not in ("hello", "ismaster"))
    lag = []
    for d in servers.client[dbname]["items"].find({"id": {"$gte": 0}},
                                                  {"updatedAt": 1, "timestamp": 1}):
        lag.append((d["updatedAt"] - d["timestamp"]).total_seconds() * 1000.0)
    servers.client.drop_database(dbname)
    if len(lag) != min(n, keys):
        fail("run %d: %s: %d documents written, expected %d" % (run_no, c.name, len(lag),
                                                                min(n, keys)))
    return {"offered_per_s": a.rate, "achieved_per_s": n / max(produced_s, 1e-9),
            "fresh_write_p50_ms": percentile(lag, 0.50),
            "fresh_write_p99_ms": percentile(lag, 0.99),
            "fresh_write_max_ms": max(lag),
            "cpu_us_per_msg": (cpu_s - cpu0) * 1e6 / n,
            "mongo_cmds_per_1000": cmds * 1000.0 / n, "peak_rss_mib": hwm or 0.0}


FRESH_PRINT = ["achieved_per_s", "fresh_write_p50_ms", "fresh_write_p99_ms", "fresh_write_max_ms",
               "cpu_us_per_msg", "mongo_cmds_per_1000", "peak_rss_mib"]


def fresh_main(a, contenders, tools, tmp):
    if a.scenario != "basic":
        fail("--rate measures the basic scenario")
    n = a.messages[0]
    keys = a.keys or n
    slots = a.runs * len(contenders)
    servers = Servers(tools, tmp, [(fresh_topic(k), a.partitions) for k in range(slots)],
                      a.verbose)
    results = {c.name: [] for c in contenders}
    try:
        slot = 0
        for i in range(1, a.runs + 1):
            order = contenders[(i - 1) % len(contenders):] + contenders[:(i - 1) % len(contenders)]
            for c in order:
                r = fresh_run(a, i, c, slot, servers, tools, tmp, n, keys)
                slot += 1
                results[c.name].append(r)
                print("run=%d contender=%s rate=%d messages=%d %s" % (
                    i, c.name, a.rate, n, " ".join("%s=%.1f" % (f, r[f]) for f in FRESH_PRINT)),
                    flush=True)
    finally:
        servers.close()
    for c in contenders:
        rs = results[c.name]
        print("contender=%s rate=%d messages=%d runs=%d %s" % (
            c.name, a.rate, n, len(rs), " ".join(
                "%s=%.1f" % (f, statistics.median(r[f] for r in rs)) for f in FRESH_PRINT)),
            flush=True)
    return 0

