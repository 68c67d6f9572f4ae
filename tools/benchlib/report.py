"""benchlib.report: how figures are printed and drawn.

This module owns: the figures of a throughput run (FIELDS) and their one-line
format (fmt), the ratio line of each other contender against rtu (ratios), and
the PNG of a sweep (plot: CPU per message and peak RSS against the message
count, one line per contender; python3-matplotlib). It measures nothing.
"""

from .proc import fail, say

FIELDS = ["msgs_per_s", "cpu_us_per_msg", "mongo_cmds_per_1000", "lookups_per_1000",
          "peak_rss_mib"]
FRESH_FIELDS = ["fresh_write_p50_ms", "fresh_write_p99_ms", "fresh_write_max_ms",
                "fresh_change_p50_ms", "fresh_change_p99_ms", "fresh_change_max_ms"]


def fmt(r, fields=FIELDS):
    return " ".join("%s=%s" % (f, ("%.0f" if f == "msgs_per_s" else "%.2f") % r[f])
                    for f in fields if f in r)



def ratios(med, contenders):
    """Each other contender's figure over rtu's: above 1, rtu costs less."""
    r = med["rtu"]
    for c in contenders[1:]:
        o = med[c.name]
        out = []
        for f in ("cpu_us_per_msg", "mongo_cmds_per_1000", "peak_rss_mib", "lookups_per_1000"):
            if r[f] > 0 and (o[f] > 0 or f != "lookups_per_1000"):
                out.append("%s=%.2f" % (f, o[f] / r[f]))
        print("ratio=%s/rtu %s" % (c.name, " ".join(out)), flush=True)


def plot(path, sweep, contenders, scenario):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("--plot needs matplotlib (python3-matplotlib, tools/install-deps)")
    ns = sorted(sweep)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in contenders:
        ax1.plot(ns, [sweep[n][c.name]["cpu_us_per_msg"] for n in ns], marker="o", label=c.name)
        ax2.plot(ns, [sweep[n][c.name]["peak_rss_mib"] for n in ns], marker="o", label=c.name)
    for ax, title in ((ax1, "CPU per message (µs)"), (ax2, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("messages")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("tools/bench, scenario %s: medians per message count" % scenario)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    say("plot written to %s" % path)
