"""benchlib.throughput: the default mode, everything produced before the
contenders start.

This module owns, per message count: generating the scenario's messages,
starting the servers, producing the messages, then the runs, each contender
in turn (each run starting with the next one, so a drift in the machine's load
falls on all of them), with a fresh consumer group and database (one_run: the
wait for the group's commits, CPU time and peak RSS from /proc, the MongoDB
commands counted by the test server, the check of the documents), one line
per run and the medians and ratios (throughput).
"""

import json
import os
import random
import statistics

from .proc import fail, say
from .report import FIELDS, fmt, ratios
from .scenarios import generate
from .servers import Servers, produce, wait_committed
from .contenders import Running, contender_env


def one_run(a, run_no, c, env_base, servers, tools, topics, n, check):
    group = "bench-%s-%d-%d-%s" % (a.scenario, os.getpid(), run_no, c.name)
    dbname = "bench_%s_%d_%s" % (a.scenario, run_no, c.name.replace("-", "_"))
    env = contender_env(a, c, env_base, servers, group, dbname)
    servers.client.drop_database(dbname)
    servers.stats(reset=True)
    run = Running(a, c, env, servers, "%s-%d" % (c.name, run_no))
    t_done = wait_committed(a, run, servers, tools, group, topics, run_no)
    changes = run.metric("rtu_projection_changes_total")
    cpu_s, hwm, split = run.stop(run_no)
    stats = servers.stats(reset=True)
    mine = dict(stats.get(c.app, {}))
    # the peer's commands are counted only when it named itself; rtu always does
    t_from = run.assigned[0] if run.assigned else run.t_start
    cmds = sum(v for k, v in mine.items() if k not in ("hello", "ismaster"))
    lookups = mine.get("find.lookup", 0) + mine.get("getmore", 0)
    problems = check(servers.client[dbname])
    if problems:
        fail("run %d: %s: documents do not match: %s" % (run_no, c.name, problems[:3]))
    servers.client.drop_database(dbname)
    r = {"msgs_per_s": n / max(t_done - t_from, 1e-9),
         "cpu_us_per_msg": cpu_s * 1e6 / n,
         "mongo_cmds_per_1000": cmds * 1000.0 / n,
         "lookups_per_1000": lookups * 1000.0 / n,
         "peak_rss_mib": hwm or 0.0,
         "_stats": mine, "_wall": t_done - t_from,
         "_cpu": dict(split, cpu_s_at_assignment=run.cpu_assigned),
         "_from_start": not run.assigned}
    if changes is not None and a.scenario == "food":
        r["changes_per_1000"] = changes * 1000.0 / n
    if run.cpu_assigned is not None:
        # without the start (the Lua runtime, the configuration, the group
        # join), which a short run spreads over few messages
        r["cpu_after_start_us_per_msg"] = (cpu_s - run.cpu_assigned) * 1e6 / n
    return r


def throughput(a, contenders, tools, tmp, n, keys, fan_out=0):
    """All runs of one point of a sweep (a message count, a key count or a
    fan-out); returns {contender: medians}."""
    rng = random.Random(a.seed)
    # the servers' files, per point
    tmp = os.path.join(tmp, "n%d-k%d-f%d" % (n, keys, fan_out))
    os.makedirs(tmp)
    msgs, ingest, outputs, env, check = generate(a, n, keys, tmp, rng, fan_out)
    point = "messages=%d keys=%d" % (n, keys) + (" fan_out=%d" % fan_out if fan_out else "")
    servers = None
    results = {c.name: [] for c in contenders}
    try:
        servers = Servers(tools, tmp, [(t, a.partitions) for t in ingest] +
                          [(t, 3) for t in outputs], a.verbose)
        produce(tools, servers.brokers, msgs, n, ingest, a.compression, a.set_size)
        os.unlink(msgs)
        for i in range(1, a.runs + 1):
            # alternating: each run starts with the next contender, so a drift in
            # the machine's load falls on all of them
            k = (i - 1) % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                r = one_run(a, i, c, env, servers, tools, ingest, n, check)
                results[c.name].append(r)
                print("run=%d contender=%s scenario=%s %s %s" % (
                    i, c.name, a.scenario, point, fmt(r)), flush=True)
                if a.verbose:
                    say("run %d %s: %.1f s from %s to the last commit; server counts %s; "
                        "CPU %s" % (i, c.name, r["_wall"],
                                    "start" if r["_from_start"] else "assignment",
                                    json.dumps(r["_stats"], sort_keys=True),
                                    json.dumps(r["_cpu"], sort_keys=True)))
    finally:
        if servers is not None:
            servers.close()
    med = {}
    for c in contenders:
        rs = results[c.name]
        med[c.name] = {f: statistics.median(r[f] for r in rs) for f in FIELDS
                       if all(f in r for r in rs)}
        print("contender=%s scenario=%s %s runs=%d %s" % (
            c.name, a.scenario, point, len(rs), fmt(med[c.name])), flush=True)
    ratios(med, contenders)
    return med
