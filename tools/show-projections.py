#!/usr/bin/python3
"""Prints the projection documents and projection changes of PROJECTIONS_DATABASE_NAME
at MONGODB_URL, optionally after waiting until nothing changes any more (used by
tools/demo). Dates print as ISO strings; metadata is shortened to stay readable."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="wait until the counts have not changed for this many seconds")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--full", action="store_true", help="print metadata fields too")
    args = ap.parse_args()
    db = pymongo.MongoClient(os.environ["MONGODB_URL"])[os.environ["PROJECTIONS_DATABASE_NAME"]]
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
