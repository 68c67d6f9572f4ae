"""benchlib.freshness: --rate, the time from a message's Kafka timestamp to its
projection write, while messages are produced at a fixed rate.

This module owns: each contender's run on its own topic (fresh_topic,
fresh_run: started, warmed up with one message per partition, then N basic
messages produced at --rate by rtu-produce with its defaults while it
consumes; updatedAt - timestamp of every written document), with --changes
the one-to-one strategy and the projection changes' freshness, with --verbose
the summary of rtu's "poll" debug lines, the percentiles and the lines it
prints (fresh_main). tools/bench's docstring describes the figures.
"""

import datetime
import json
import os
import statistics
import subprocess
import time

from .contenders import Running, contender_env
from .proc import fail, read_proc, say
from .scenarios import BASIC_MAP_TABLE, BASIC_TOPIC, basic_env, part_of
from .servers import Servers, wait_committed


def fresh_topic(slot):
    return "%s.f%d" % (BASIC_TOPIC, slot)


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


CHANGES_COLLECTION = "pc_items"


def changes_env(cfg_dir):
    """--rate --changes: the basic projection with a hand-written strategy that
    names each item as its own single view, so every message leads to one
    projection change (the item's identifier; its latest message names it)."""
    st = os.path.join(cfg_dir, "strategies")
    os.makedirs(st, exist_ok=True)
    with open(os.path.join(st, "itemSelf.lua"), "w") as f:
        f.write("return function(document, db, log)\n"
                "  return { { id = document.id } }\n"
                "end\n")
    table = json.loads(json.dumps(BASIC_MAP_TABLE))
    table["pr_items"]["changes"] = {"sv_items": "__fromFile__[itemSelf]"}
    with open(os.path.join(cfg_dir, "mapTable", "mapTable.json"), "w") as f:
        json.dump(table, f, indent=2)
    return {"PROJECTIONS_CHANGES_ENABLED": "true",
            "PROJECTIONS_CHANGES_COLLECTION_NAME": CHANGES_COLLECTION,
            "USE_AUTOMATIC_STRATEGIES": "false", "STRATEGIES_FOLDER": st}


def change_lags(coll):
    """updatedAt (when rtu built the projection change's write) minus the Kafka
    timestamp of the message it names, in ms, per projection change of a
    produced item (the warm-up's have negative ids)."""
    lags = []
    for d in coll.find({"identifier.id": {"$gte": 0}}, {"updatedAt": 1, "changes": 1}):
        ts = datetime.datetime.strptime(d["changes"][0]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        lags.append((d["updatedAt"] - ts).total_seconds() * 1000.0)
    return lags


def poll_summary(c, run_no, lines):
    """--verbose: rtu's "poll" debug lines (consumer.c's log_poll) summed up:
    where a message's time goes between its Kafka timestamp and its write."""
    polls = []
    for raw in lines:
        if b'"msg":"poll"' not in raw:
            continue
        try:
            polls.append(json.loads(raw)["timing"])
        except (ValueError, KeyError):
            continue
    if not polls:
        return
    def q(f, k):
        xs = [p[k] for p in polls]
        return "%s=%.1f/%.1f/%.1f" % (f, percentile(xs, 0.5), percentile(xs, 0.99), max(xs))
    say("run %d: %s: %d polls, per poll p50/p99/max: %s %s %s %s %s %s %s" % (
        run_no, c.name, len(polls), q("messages", "messages"), q("runs", "runs"),
        q("oldest_age_ms", "oldestAgeMs"), q("newest_age_ms", "newestAgeMs"),
        q("wait_ms", "waitMs"), q("apply_ms", "applyMs"), q("settle_ms", "settleMs")))


def fresh_run(a, run_no, c, slot, servers, tools, tmp, n, keys):
    """One contender on its own topic: started, warmed up (one message per
    partition, committed), then N messages produced at --rate while it runs;
    freshness = updatedAt - timestamp of every written document (the Kafka
    timestamp is the producer's clock, the same machine's as rtu's)."""
    topic = fresh_topic(slot)
    env_base = basic_env(os.path.join(tmp, "cfg-%d" % slot))
    env_base["INVARIANT_TOPIC_MAP"] = json.dumps({topic: "pr_items"})
    changes = a.changes and c.app == "rtu"
    if changes:
        env_base.update(changes_env(os.path.join(tmp, "cfg-%d" % slot)))
    group = "bench-fresh-%d-%d-%s" % (os.getpid(), run_no, c.name)
    dbname = "bench_fresh_%d_%s" % (run_no, c.name.replace("-", "_"))
    env = contender_env(a, c, env_base, servers, group, dbname)
    if a.verbose and c.app == "rtu" and not any(e.startswith("LOG_LEVEL=") for e in a.env):
        env["LOG_LEVEL"] = "debug"   # the "poll" lines: where the time went
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
    lines0 = len(run.lines)
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
    clag = change_lags(servers.client[dbname][CHANGES_COLLECTION]) if changes else []
    servers.client.drop_database(dbname)
    if a.verbose:
        poll_summary(c, run_no, run.lines[lines0:])
    if len(lag) != min(n, keys):
        fail("run %d: %s: %d documents written, expected %d" % (run_no, c.name, len(lag),
                                                                min(n, keys)))
    if changes and len(clag) != min(n, keys):
        fail("run %d: %s: %d projection changes, expected %d" % (run_no, c.name, len(clag),
                                                                 min(n, keys)))
    more = {}
    if changes:
        more = {"fresh_change_p50_ms": percentile(clag, 0.50),
                "fresh_change_p99_ms": percentile(clag, 0.99),
                "fresh_change_max_ms": max(clag)}
    return {"offered_per_s": a.rate, "achieved_per_s": n / max(produced_s, 1e-9),
            "fresh_write_p50_ms": percentile(lag, 0.50),
            "fresh_write_p99_ms": percentile(lag, 0.99),
            "fresh_write_max_ms": max(lag), **more,
            "cpu_us_per_msg": (cpu_s - cpu0) * 1e6 / n,
            "mongo_cmds_per_1000": cmds * 1000.0 / n, "peak_rss_mib": hwm or 0.0}


FRESH_PRINT = ["achieved_per_s", "fresh_write_p50_ms", "fresh_write_p99_ms", "fresh_write_max_ms",
               "fresh_change_p50_ms", "fresh_change_p99_ms", "fresh_change_max_ms",
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
                    i, c.name, a.rate, n,
                    " ".join("%s=%.1f" % (f, r[f]) for f in FRESH_PRINT if f in r)),
                    flush=True)
    finally:
        servers.close()
    for c in contenders:
        rs = results[c.name]
        print("contender=%s rate=%d messages=%d runs=%d %s" % (
            c.name, a.rate, n, len(rs), " ".join(
                "%s=%.1f" % (f, statistics.median(r[f] for r in rs))
                for f in FRESH_PRINT if rs and f in rs[0])),
            flush=True)
    return 0

