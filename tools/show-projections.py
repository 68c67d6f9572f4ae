#!/usr/bin/python3
"""Prints the projection documents and projection changes of PROJECTIONS_DATABASE_NAME
at MONGODB_URL, optionally after waiting until nothing changes any more (used by
tools/demo). Dates print as ISO strings; metadata is shortened to stay readable.

--check FILE: prints instead one line saying whether the projection changes
(PROJECTIONS_CHANGES_COLLECTION_NAME) are exactly the (type, identifier) pairs of
FILE (an example's fixtures/expected-projection-changes.jsonl: one line per CDC
message with its "changes"), or what differs; exit status 1 when they differ."""
import argparse
import datetime
import json
import os
import sys
import time

import pymongo


def snapshot(db):
    return {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())}


def fmt(v):
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(v, dict):
        return {k: fmt(x) for k, x in v.items()}
    if isinstance(v, list):
        return [fmt(x) for x in v]
    if type(v).__name__ in ("ObjectId", "Int64"):
        return str(v) if type(v).__name__ == "ObjectId" else int(v)
    return v


def _pair(change):
    return change["type"] + " " + json.dumps(fmt(change["identifier"]), sort_keys=True,
                                             ensure_ascii=False, default=str)


def check(db, expected_path):
    """The one-line verdict of --check, and whether it matched."""
    want = set()
    with open(expected_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                want.update(_pair(c) for c in json.loads(line)["changes"])
    pc_name = os.environ["PROJECTIONS_CHANGES_COLLECTION_NAME"]
    got = [_pair(d) for d in db[pc_name].find({}, {"_id": 0, "type": 1, "identifier": 1})]
    name = os.path.join(os.path.basename(os.path.dirname(expected_path)),
                        os.path.basename(expected_path))
    missing, unexpected = sorted(want - set(got)), sorted(set(got) - want)
    twice = sorted({p for p in got if got.count(p) > 1})
    if not missing and not unexpected and not twice:
        return True, f"result matches {name}: {len(got)} projection changes, as expected"
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: " + "; ".join(missing))
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: " + "; ".join(unexpected))
    if twice:
        parts.append("more than one document for: " + "; ".join(twice))
    return False, f"result differs from {name}: " + " | ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="wait until the counts have not changed for this many seconds")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--full", action="store_true", help="print metadata fields too")
    ap.add_argument("--check", metavar="FILE",
                    help="one line: do the projection changes match FILE (exit 1 if not)")
    args = ap.parse_args()
    db = pymongo.MongoClient(os.environ["MONGODB_URL"])[os.environ["PROJECTIONS_DATABASE_NAME"]]
    if args.check:
        ok, line = check(db, args.check)
        print("demo: " + line)
        return 0 if ok else 1
    if args.wait_quiet:
        deadline = time.time() + args.timeout
        last, since = None, time.time()
        while time.time() < deadline:
            snap = snapshot(db)
            if snap != last:
                last, since = snap, time.time()
            elif sum(snap.values()) > 0 and time.time() - since >= args.wait_quiet:
                break
            time.sleep(0.3)
    pc_name = os.environ.get("PROJECTIONS_CHANGES_COLLECTION_NAME")
    for name in sorted(db.list_collection_names()):
        docs = list(db[name].find({}, {"_id": 0}))
        print(f"\n== {name}: {len(docs)} document(s)")
        for d in docs:
            d = fmt(d)
            if not args.full and name != pc_name:
                info = d.pop("__internal__kafkaInfo", {})
                for k in ("createdAt", "updatedAt", "timestamp", "__internal__counterType"):
                    d.pop(k, None)
                d["__kafka"] = f'{info.get("topic")}[{info.get("partition")}]@{info.get("offset")}'
            print("  " + json.dumps(d, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
