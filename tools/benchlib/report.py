"""benchlib.report: how figures are printed and drawn.

This module owns: the figures of a throughput run (FIELDS) and their one-line
format (fmt), the ratio line of each other contender against rtu (ratios), and
the PNG of a sweep (plot: CPU per message and peak RSS against the message
count, one line per contender; python3-matplotlib). It measures nothing.
"""

from .proc import fail, say

FIELDS = ["msgs_per_s", "cpu_us_per_msg", "cpu_after_start_us_per_msg", "mongo_cmds_per_1000",
          "lookups_per_1000", "changes_per_1000", "peak_rss_mib"]
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


def marginals(sweep, contenders):
    """After a --messages sweep: the CPU each contender spent per message
    between two consecutive counts (its total CPU at the larger count less that
    at the smaller, over the messages between them), and the start it implies
    (the smaller count's CPU less that many messages at the marginal cost). A
    cost that grows with the work shows as a growing marginal figure; a fixed
    cost (the start, a warm-up) does not."""
    ns = sorted(sweep)
    for c in contenders:
        for n1, n2 in zip(ns, ns[1:]):
            c1 = sweep[n1][c.name]["cpu_us_per_msg"] * n1
            c2 = sweep[n2][c.name]["cpu_us_per_msg"] * n2
            marginal = (c2 - c1) / (n2 - n1)
            print("marginal contender=%s messages=%d->%d cpu_us_per_msg=%.2f start_cpu_s=%.2f"
                  % (c.name, n1, n2, marginal, (c1 - marginal * n1) / 1e6), flush=True)


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("--plot needs matplotlib (python3-matplotlib, tools/install-deps)")
    return plt


def plot(path, sweep, contenders, scenario, axis="messages", title=None):
    """CPU per message and peak RSS (and lookups per 1,000 messages for food)
    against the swept value (AXIS: messages, keys or fan-out), one line per
    contender; SWEEP maps each value to {contender: medians}."""
    plt = _pyplot()
    xs = sorted(sweep)
    panels = [("cpu_us_per_msg", "CPU per message (µs)"), ("peak_rss_mib", "peak RSS (MiB)")]
    if scenario == "food":
        panels.append(("lookups_per_1000", "lookups per 1,000 messages"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2))
    for ax, (field, label) in zip(axes, panels):
        for k, c in enumerate(contenders):
            color = "C%d" % k
            ax.plot(xs, [sweep[x][c.name][field] for x in xs], marker="o", label=c.name,
                    color=color)
            after = "cpu_after_start_us_per_msg"
            if field == "cpu_us_per_msg" and all(after in sweep[x][c.name] for x in xs):
                ax.plot(xs, [sweep[x][c.name][after] for x in xs], marker="o", linestyle="--",
                        color=color, label=c.name + " after its start")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(["{:,}".format(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(axis)
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title or "tools/bench, scenario %s: medians per %s" % (scenario, axis))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    say("plot written to %s" % path)


def plot_memory(path, results, contenders, title):
    """Resident memory and messages applied against time, a line per run and
    contender (RESULTS: {contender: [runs]}, each with its _samples)."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, c in enumerate(contenders):
        for i, r in enumerate(results[c.name]):
            t = [s[0] for s in r["_samples"]]
            label = c.name if i == 0 else None
            ax1.plot(t, [s[1] for s in r["_samples"]], color=colors[k % len(colors)], label=label)
            ax2.plot(t, [s[2] for s in r["_samples"]], color=colors[k % len(colors)], label=label)
    for ax, label in ((ax1, "resident memory (MiB)"), (ax2, "messages applied (committed)")):
        ax.set_xlabel("seconds since start")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    say("plot written to %s" % path)
