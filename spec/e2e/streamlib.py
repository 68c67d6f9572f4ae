"""A keyed stream for the scale-out, SIGTERM and outage tests: messages set
SEQ and one of A/B/C of a key (partial records), keys pinned to partitions
(partition = key % partitions), increasing timestamps. expected_state() is the
result of applying the messages one by one (fields and the Kafka coordinates
of each key's last message)."""

import random

import harness

T = 1_700_000_000_000

MAP_TABLE = {
    "pr_acc": {
        "destination": "acc",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "SEQ": {"fieldName": "seq", "cast": "__fromFile__[defaultIdentity]"},
            "A": {"fieldName": "a", "cast": "__fromFile__[defaultIdentity]"},
            "B": {"fieldName": "b", "cast": "__fromFile__[defaultIdentity]"},
            "C": {"fieldName": "c", "cast": "__fromFile__[defaultIdentity]"},
        },
        "fieldsInKey": ["id"],
    }
}


UNIQUE_BASE = 1_000_000


def make_stream(topic, n_messages, n_keys, n_partitions, seed, start=0, unique_every=10):
    """Messages start..start+n_messages-1 (SEQ = global index). Every
    `unique_every`-th message is the only message of its key (UNIQUE_BASE + i):
    a skipped or lost run shows as a missing document instead of being masked by
    later updates of the same keys."""
    rnd = random.Random(seed)
    lines = []
    for i in range(start, start + n_messages):
        k = rnd.randrange(0, n_keys)
        if unique_every and i % unique_every == 0:
            k = UNIQUE_BASE + i
        field = "ABC"[i % 3]
        lines.append({"topic": topic, "partition": k % n_partitions, "key": {"ID": k},
                      "value": {"ID": k, "SEQ": i, field: i}, "timestamp": T + i})
    return lines


def with_offsets(lines):
    """[(line, offset)]: offsets per partition in produce order (one producer,
    one topic, partitions given)."""
    nxt, out = {}, []
    for l in lines:
        p = l["partition"]
        out.append((l, nxt.get(p, 0)))
        nxt[p] = nxt.get(p, 0) + 1
    return out


def end_offsets(lines_with_offsets):
    """{partition: the offset after its last message}: what a group has committed
    once every message is applied."""
    ends = {}
    for l, off in lines_with_offsets:
        ends[l["partition"]] = max(ends.get(l["partition"], 0), off + 1)
    return ends


def committed_only(committed):
    """{partition: committed offset} of a Cluster.committed() answer (without the
    high watermarks)."""
    return {p: v[0] for p, v in committed.items()}


def wait_all_committed(cluster, group, topic, lines_with_offsets, timeout, rtu, interval):
    """Waits (harness.wait_or_note: a timeout is only noted) until `group` has
    committed every message of lines_with_offsets on `topic`; returns their
    end_offsets() for the test's exact assertion."""
    ends = end_offsets(lines_with_offsets)
    harness.wait_or_note(lambda: committed_only(cluster.committed(group, topic)) == ends,
                         timeout, "everything committed", rtu, interval=interval)
    return ends


def expected_state(lines_with_offsets):
    """{key: {"doc": mapped fields, "partition", "offset", "timestamp"}} after
    applying the messages one by one."""
    exp = {}
    for l, off in lines_with_offsets:
        k = l["key"]["ID"]
        e = exp.setdefault(k, {"doc": {"id": k}})
        for f, v in l["value"].items():
            if f != "ID":
                e["doc"][f.lower()] = v
        e["partition"], e["offset"], e["timestamp"] = l["partition"], off, l["timestamp"]
    return exp


def diff_documents(coll, exp):
    """[] when the collection holds exactly one document per key of exp, each
    with exp's fields, __STATE__ PUBLIC and the Kafka coordinates of its last
    message; else the differences."""
    wrong, seen = [], {}
    for d in coll.find({}):
        seen.setdefault(d.get("id"), 0)
        seen[d.get("id")] += 1
        e = exp.get(d.get("id"))
        if e is None:
            wrong.append(("unexpected", d))
            continue
        got = {f: d.get(f) for f in e["doc"]}
        ki = d.get("__internal__kafkaInfo") or {}
        if got != e["doc"] or {f: d.get(f) for f in ("a", "b", "c") if f not in e["doc"]} != \
                {f: None for f in ("a", "b", "c") if f not in e["doc"]} \
                or d.get("__STATE__") != "PUBLIC" or ki.get("partition") != e["partition"] \
                or ki.get("offset") != str(e["offset"]) \
                or d.get("__internal__counter") != e["timestamp"]:
            wrong.append((d.get("id"), e, {k: v for k, v in d.items() if k != "_id"}))
    dups = {k: n for k, n in seen.items() if n != 1}
    if dups:
        wrong.append(("duplicates", dups))
    missing = sorted(set(exp) - set(seen))
    if missing:
        wrong.append(("missing", missing))
    return wrong


def final_reached(coll, exp):
    got = {d["id"]: d.get("seq") for d in coll.find({}, {"id": 1, "seq": 1})}
    return len(got) == len(exp) and all(got.get(k) == e["doc"]["seq"] for k, e in exp.items())
