"""benchlib.rebalances: what --scale prints for each change of replica count.

This module owns the reading of the replicas' rebalance log lines ("partitions
assigned" gives a replica's whole assignment after the change under either
protocol, "partitions revoked" what it gave up and whether the group had
counted it lost) into who owned which partition when, and, per change, from
the written documents (one per message: its partition, offset and updatedAt):

  revoked   partitions revoked from any replica between this change and the next
  lost      of those, revoked as lost (librdkafka counted the assignment lost:
            a session timeout or a refused generation), not handed over
  moved     partitions whose owner after the change is not the one before
  settled_ms  from the change to the group's last assignment or revoke
  longest_pause_unmoved_ms / longest_pause_moved_ms  the longest gap between
            two consecutive messages of a partition, over the gaps that end in
            the change's window, among partitions that kept / changed owner

and, before the first change, the longest gap of any partition while nothing
changed (steady_longest_pause_ms): what one batch costs a partition on this
machine, the yardstick for the unmoved ones. It asserts nothing.
"""

import json


def events_of(lines):
    """(epoch ms, kind, partitions, lost) of one replica's rebalance log lines."""
    out = []
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        msg = line.get("msg")
        if msg not in ("partitions assigned", "partitions revoked"):
            continue
        parts = set()
        for item in (line.get("partitions") or "").split(","):
            if item:
                parts.add(int(item.rsplit("[", 1)[1].rstrip("]")))
        out.append((line["time"], "assigned" if msg == "partitions assigned" else "revoked",
                    parts, bool(line.get("lost")), line.get("protocol")))
    return out


def owners_at(timeline, t):
    """partition -> replica index at epoch ms t (the last one to hold it)."""
    held = {}
    for when, replica, kind, parts, _lost, _proto in timeline:
        if when > t:
            break
        if kind == "assigned":
            held[replica] = set(parts)
        else:
            held[replica] = held.get(replica, set()) - parts
    owner = {}
    for replica, parts in held.items():
        for p in parts:
            owner[p] = replica
    return owner


def holding(lines):
    """The partitions a replica holds after its log lines so far."""
    held = set()
    for _when, kind, parts, _lost, _proto in events_of(lines):
        held = set(parts) if kind == "assigned" else held - parts
    return held


def settled(replica_lines, partitions):
    """True when the replicas' holdings split the partitions among them all."""
    held = [holding(lines) for lines in list(replica_lines)]
    return (all(held) and sum(len(h) for h in held) == partitions
            and set().union(*held) == set(range(partitions)))


def longest_gap(docs, lo, hi):
    """(length, start) of the longest gap between consecutive applied times that
    ends in [lo, hi) (a gap is counted once, in the window where it ends); (0, lo)
    when there is none."""
    gaps = [(b - a, a) for a, b in zip(docs, docs[1:]) if lo <= b < hi]
    return max(gaps) if gaps else (0.0, lo)


def pause(gap, lo):
    """"1234(p7@+5.1s)": a pause, its partition and when it began after the change."""
    return "%.0f(p%d@%+.1fs)" % (gap[0], gap[2], (gap[1] - lo) / 1000.0)


def report(changes, replica_lines, applied, partitions, end_ms):
    """Lines to print. changes: [(epoch s, replicas before, after)];
    replica_lines: one list of stdout lines per replica started;
    applied: partition -> applied times (epoch ms) of its messages in offset
    order; end_ms: when the last replicas were told to stop (what they log
    after it is their leaving, not a change)."""
    timeline = sorted(((e[0], i) + e[1:] for i, lines in enumerate(replica_lines)
                       for e in events_of(lines) if e[0] < end_ms), key=lambda e: e[:2])
    protocols = sorted({e[5] for e in timeline if e[5]})
    out = []
    firsts = [docs[0] for docs in applied.values() if docs]
    if changes and firsts:
        t1 = changes[0][0] * 1000.0
        # the first seconds are the start-up backlog, not the steady flow
        lo = min(firsts) + 2000.0
        steady = [max([b - a for a, b in zip(docs, docs[1:]) if a >= lo and b < t1] or [0])
                  for docs in applied.values()]
        out.append("scale_steady longest_pause_ms=%.0f" % max(steady))
    bounds = [c[0] * 1000.0 for c in changes] + [end_ms]
    for k, (_t, before_n, after_n) in enumerate(changes):
        lo, hi = bounds[k], bounds[k + 1]
        before, after = owners_at(timeline, lo), owners_at(timeline, hi - 1)
        inside = [e for e in timeline if lo <= e[0] < hi]
        revoked, lost = set(), set()
        for _when, _replica, kind, parts, was_lost, _proto in inside:
            if kind == "revoked":
                revoked |= parts
                if was_lost:
                    lost |= parts
        moved = {p for p in range(partitions) if before.get(p) != after.get(p)}
        kept = [longest_gap(applied.get(p, []), lo, hi) + (p,) for p in range(partitions)
                if p not in moved]
        mv = [longest_gap(applied.get(p, []), lo, hi) + (p,) for p in range(partitions)
              if p in moved]
        unowned = [p for p in range(partitions) if p not in after]
        settled = "%.0f" % (inside[-1][0] - lo) if inside else "0"
        out.append("scale_step=%d->%d protocol=%s revoked=%d lost=%d moved=%d settled_ms=%s%s "
                   "longest_pause_unmoved_ms=%s longest_pause_moved_ms=%s" % (
                       before_n, after_n, ",".join(protocols) or "-", len(revoked), len(lost),
                       len(moved), settled, " unowned=%d" % len(unowned) if unowned else "",
                       pause(max(kept), lo) if kept else "-", pause(max(mv), lo) if mv else "-"))
    return out
