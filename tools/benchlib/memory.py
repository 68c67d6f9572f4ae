"""benchlib.memory: --duration, the memory of a contender behind a backlog.

This module owns the memory mode: the scenario's N messages produced before
anything starts (as in throughput), then per run and contender a fresh group
and database, and for --duration seconds a sample every --interval seconds of
the process's resident memory (VmRSS), its CPU time and the messages its group
has committed (rtu-offsets, which never joins the group); then SIGTERM. It
prints, per run, the peak (VmHWM), the last resident size and what was applied,
the curve (one sample in ten; every sample with --verbose), and the medians;
--plot draws the curves (report.plot_memory). The contender need not finish the
backlog: the point is its memory while it is behind.
"""

import os
import random
import statistics
import time

from .contenders import Running, contender_env
from .proc import fail, say
from .scenarios import generate
from .servers import Servers, offsets, produce

MEMORY_FIELDS = ["peak_rss_mib", "rss_end_mib", "applied", "applied_per_s", "cpu_us_per_msg"]


def vm_rss_mib(pid):
    """The resident size now (VmRSS), MiB; None once the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def committed(tools, brokers, topics, group):
    """Messages the group has committed over all partitions (from offset 0)."""
    return sum(max(com, 0) for _, _, _, _, com in offsets(tools, brokers, topics, group))


def summarize(samples, duration, hwm, cpu_total):
    """The figures of one run from its samples [(t s, rss MiB, applied)]."""
    applied = samples[-1][2] if samples else 0
    return {"peak_rss_mib": hwm or max((s[1] for s in samples), default=0.0),
            "rss_end_mib": samples[-1][1] if samples else 0.0,
            "applied": applied,
            "applied_per_s": applied / max(duration, 1e-9),
            "cpu_us_per_msg": cpu_total * 1e6 / applied if applied else float("nan"),
            "_samples": samples}


def memory_run(a, run_no, c, env_base, servers, tools, topics):
    group = "bench-mem-%d-%d-%s" % (os.getpid(), run_no, c.name)
    dbname = "bench_mem_%d_%s" % (run_no, c.name.replace("-", "_"))
    env = contender_env(a, c, env_base, servers, group, dbname)
    servers.client.drop_database(dbname)
    run = Running(a, c, env, servers, "%s-mem-%d" % (c.name, run_no))
    t0 = time.monotonic()
    samples = []
    k = 0
    while True:
        k += 1
        due = t0 + k * a.interval
        if due > t0 + a.duration:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        if run.proc.poll() is not None:
            run.abort("run %d: %s exited with %s after %.0f s" % (
                run_no, c.name, run.proc.returncode, time.monotonic() - t0))
        rss = vm_rss_mib(run.proc.pid)
        done = committed(tools, servers.brokers, topics, group)
        samples.append((round(time.monotonic() - t0, 2), rss or 0.0, done))
        if a.verbose:
            say("run %d %s: t=%.0f s rss=%.1f MiB applied=%d" % (run_no, c.name, samples[-1][0],
                                                                  samples[-1][1], done))
    cpu_total, hwm, split = run.stop(run_no)
    servers.client.drop_database(dbname)
    r = summarize(samples, a.duration, hwm, cpu_total)
    r["_cpu"] = split
    return r


def curve_text(samples, every):
    return " ".join("%g:%.1f:%d" % s for i, s in enumerate(samples)
                    if i % every == every - 1 or i == len(samples) - 1)


def memory_main(a, contenders, tools, tmp):
    """All runs; returns {contender: [results of its runs]}."""
    if a.duration <= 0 or a.interval <= 0:
        fail("--duration and --interval must be positive")
    n = a.messages[0]
    keys = a.keys or n
    rng = random.Random(a.seed)
    msgs, ingest, outputs, env, _check = generate(a, n, keys, tmp, rng, a.fan_out)
    servers = Servers(tools, tmp, [(t, a.partitions) for t in ingest] +
                      [(t, 3) for t in outputs], a.verbose)
    results = {c.name: [] for c in contenders}
    try:
        produce(tools, servers.brokers, msgs, n, ingest, a.compression, a.set_size)
        os.unlink(msgs)
        for i in range(1, a.runs + 1):
            k = (i - 1) % len(contenders)
            for c in contenders[k:] + contenders[:k]:
                r = memory_run(a, i, c, env, servers, tools, ingest)
                results[c.name].append(r)
                print("run=%d contender=%s mode=memory scenario=%s messages=%d partitions=%d "
                      "duration_s=%g %s" % (i, c.name, a.scenario, n, a.partitions, a.duration,
                                            fmt_memory(r)), flush=True)
                print("curve run=%d contender=%s t_s:rss_mib:applied %s" % (
                    i, c.name, curve_text(r["_samples"], 1 if a.verbose else 10)), flush=True)
    finally:
        servers.close()
    for c in contenders:
        rs = results[c.name]
        med = {f: statistics.median(r[f] for r in rs) for f in MEMORY_FIELDS}
        print("contender=%s mode=memory scenario=%s messages=%d partitions=%d duration_s=%g "
              "runs=%d %s" % (c.name, a.scenario, n, a.partitions, a.duration, len(rs),
                              fmt_memory(med)), flush=True)
    return results


def fmt_memory(r):
    return " ".join("%s=%s" % (f, ("%d" if f == "applied" else "%.1f") % r[f])
                    for f in MEMORY_FIELDS)
