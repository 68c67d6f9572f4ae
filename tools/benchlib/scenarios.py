"""benchlib.scenarios: the messages a benchmark run consumes and the check of
what the contender wrote.

This module owns the scenarios (tools/bench's docstring describes them):
basic (the IBM/basic adapter, one projection) and food (the debezium adapter on
examples/food-delivery with its strategies): their CDC messages as the JSON
lines rtu-produce reads, the partition of a key, the configuration
(environment) rtu and the peer get, and the check of the written documents
(counts, and for basic the values of sampled keys). generate() picks the
scenario from the options. It starts no process but the shell that reads the
food example's env file.
"""

import json
import os
import random
import subprocess
import time
import zlib

from .proc import ROOT, say

T0 = 1_700_000_000_000
FOOD_DIR = os.path.join(ROOT, "examples", "food-delivery")


def part_of(key_text, partitions):
    return zlib.crc32(key_text.encode()) % partitions


# ---------------------------------------------------------------------------
# scenario basic

BASIC_TOPIC = "bench.basic.ingestion"
BASIC_MAP_TABLE = {
    "pr_items": {
        "destination": "items",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[defaultCastToString]"},
            "QTY": {"fieldName": "qty", "cast": "__fromFile__[defaultCastToInteger]"},
            "PRICE": {"fieldName": "price", "cast": "__fromFile__[defaultCastToFloat]"},
            "ACTIVE": {"fieldName": "active", "cast": "__fromFile__[defaultCastStringToBoolean]"},
            "UPDATED": {"fieldName": "updated", "cast": "__fromFile__[defaultCastToString]"},
        },
        "fieldsInKey": ["id"],
    }
}


def basic_messages(n, k, partitions, out, set_size=1000):
    """Writes the JSON lines; returns (expected docs, {key: last value},
    records: the distinct keys of each message set summed, i.e. the records
    rtu writes when each set is one partition run)."""
    last = {}
    sets = {}   # partition -> [messages in its open set, keys in it]
    records = 0
    for i in range(n):
        key = (i * 7919) % k
        kt = '{"ID":%d}' % key
        val = {"ID": key, "NAME": "item-%d" % key, "QTY": str(i % 1000),
               "PRICE": "%d.%02d" % (i % 97, i % 100), "ACTIVE": "true" if i % 2 else "false",
               "UPDATED": "2024-03-01T10:%02d:%02dZ" % (i // 60 % 60, i % 60)}
        vt = json.dumps(val, separators=(",", ":"))
        part = part_of(kt, partitions)
        out.write('{"topic":"%s","partition":%d,"key":%s,"value":%s,"timestamp":%d}\n'
                  % (BASIC_TOPIC, part, json.dumps(kt), json.dumps(vt), T0 + i))
        last[key] = val
        open_set = sets.setdefault(part, [0, set()])
        if open_set[0] == set_size:
            records += len(open_set[1])
            open_set[0], open_set[1] = 0, set()
        open_set[0] += 1
        open_set[1].add(key)
    records += sum(len(keys) for _, keys in sets.values())
    return {"items": len(last)}, last, records


def basic_env(cfg_dir):
    mt = os.path.join(cfg_dir, "mapTable")
    os.makedirs(mt, exist_ok=True)
    with open(os.path.join(mt, "mapTable.json"), "w") as f:
        json.dump(BASIC_MAP_TABLE, f, indent=2)
    return {
        "KAFKA_MESSAGE_ADAPTER": "basic",
        "INVARIANT_TOPIC_MAP": json.dumps({BASIC_TOPIC: "pr_items"}),
        "MAP_TABLE_FOLDER": mt,
        "PROJECTIONS_CHANGES_ENABLED": "false",
        "SYSTEM_OF_RECORDS": "bench",
    }


def basic_check(db, last, rng):
    coll = db["items"]
    keys = rng.sample(sorted(last), min(200, len(last)))
    docs = {d["id"]: d for d in coll.find({"id": {"$in": keys}})}
    bad = []
    for key in keys:
        v = last[key]
        d = docs.get(key)
        want = {"id": key, "name": v["NAME"], "qty": int(v["QTY"]), "price": float(v["PRICE"]),
                "active": v["ACTIVE"] == "true", "updated": v["UPDATED"], "__STATE__": "PUBLIC"}
        got = None if d is None else {f: d.get(f) for f in want}
        if got != want:
            bad.append((key, got, want))
    return bad


# ---------------------------------------------------------------------------
# scenario food: examples/food-delivery

FOOD_PREFIX = "demo.food."
ALLERGENS = ["GLU", "EGG", "MLK", "NUT", "SOY", "FSH", "CRU", "CEL", "MUS", "SES", "SUL",
             "LUP", "MOL", "PNT"]
# share of the keys per projection (allergens: fixed 14)
FOOD_SHARES = [("pr_restaurants", 0.01), ("pr_dishes", 0.08), ("pr_dishes_allergens", 0.10),
               ("pr_registry", 0.20), ("pr_orders", 0.30), ("pr_orders_dishes", 0.21),
               ("pr_reviews", 0.10)]
FOOD_PK = {"pr_registry": ["ID_USER"], "pr_restaurants": ["ID_RESTAURANT"],
           "pr_dishes": ["ID_DISH"], "pr_allergens": ["ID_ALLERGEN"],
           "pr_dishes_allergens": ["ID_DISH", "ID_ALLERGEN"], "pr_orders": ["ID_ORDER"],
           "pr_orders_dishes": ["ID_ORDER_DISH"], "pr_reviews": ["ID_REVIEW"]}
ORDER_STATUS = ["CREATED", "ACCEPTED", "PREPARING", "DELIVERING", "DELIVERED"]


def food_counts(k, fan_out=0):
    """Records per projection for K keys. Without a fan-out, FOOD_SHARES. With
    fan-out F, each restaurant has F orders and each dish F order lines (the
    records a change of it finds on the way to its single views): users,
    reviews and dish-allergens keep their shares, orders and lines share the
    rest 30:21 with their restaurants and dishes (O + O/F + L + L/F)."""
    counts = {"pr_allergens": min(14, k)}
    rest = max(0, k - counts["pr_allergens"])
    if not fan_out:
        for name, share in FOOD_SHARES:
            counts[name] = max(1, int(rest * share)) if rest else 0
        counts["pr_orders"] += rest - sum(c for n, c in counts.items() if n != "pr_allergens")
        return counts
    shares = dict(FOOD_SHARES)
    for name in ("pr_registry", "pr_reviews", "pr_dishes_allergens"):
        counts[name] = max(1, int(rest * shares[name]))
    left = rest - sum(counts[n] for n in ("pr_registry", "pr_reviews", "pr_dishes_allergens"))
    chain = left * fan_out / (fan_out + 1.0)
    lines = max(fan_out, int(chain * 21 / 51))
    counts["pr_dishes"] = max(1, lines // fan_out)
    counts["pr_orders_dishes"] = counts["pr_dishes"] * fan_out
    # a dish's allergens are distinct: at most half of them per dish
    cap = counts["pr_dishes"] * len(ALLERGENS) // 2
    if counts["pr_dishes_allergens"] > cap:
        counts["pr_registry"] += counts["pr_dishes_allergens"] - cap
        counts["pr_dishes_allergens"] = cap
    orders = left - counts["pr_dishes"] - counts["pr_orders_dishes"]
    counts["pr_restaurants"] = max(1, orders // (fan_out + 1))
    counts["pr_orders"] = counts["pr_restaurants"] * fan_out
    counts["pr_registry"] += orders - counts["pr_restaurants"] - counts["pr_orders"]
    if min(counts.values()) < 1:
        raise ValueError("%d keys are too few for a fan-out of %d" % (k, fan_out))
    return counts


def food_records(k, rng, fan_out=0):
    """The K records (projection, after image), parents before children; with
    a fan-out (food_counts), orders go round the restaurants and lines round
    the dishes, so that each has exactly F."""
    counts = food_counts(k, fan_out)
    recs = []
    for a in ALLERGENS[:counts["pr_allergens"]]:
        recs.append(("pr_allergens", {"ID_ALLERGEN": a, "NAME": "Allergen " + a,
                                      "DESCRIPTION": "Products containing " + a}))
    nrest = max(1, counts["pr_restaurants"])
    for r in range(counts["pr_restaurants"]):
        recs.append(("pr_restaurants", {
            "ID_RESTAURANT": "rest-%05d" % r, "NAME": "Restaurant %d" % r, "CUISINE": "ITALIAN",
            "ADDRESS": "Via Roma %d" % r, "CITY": "Milano", "PHONE": "02 %04d %04d" % (r, r),
            "OPENING_HOURS": '{"mon":"closed","tue-sun":"12:00-23:00"}', "IS_OPEN": "true",
            "AVG_PREP_MINUTES": str(10 + r % 30)}))
    ndish = max(1, counts["pr_dishes"])
    for d in range(counts["pr_dishes"]):
        recs.append(("pr_dishes", {
            "ID_DISH": "dish-%06d" % d, "ID_RESTAURANT_DISH": "rest-%05d" % (d % nrest),
            "NAME": "Dish %d" % d, "DESCRIPTION": "Tomato, basil and more", "CATEGORY": "PIZZA",
            "PRICE": 5 + d % 20 + 0.5, "AVAILABLE": True, "TAGS": ["vegetarian"]}))
    pairs = set()
    while len(pairs) < counts["pr_dishes_allergens"]:
        pairs.add(("dish-%06d" % rng.randrange(ndish), rng.choice(ALLERGENS)))
    for d, a in sorted(pairs):
        recs.append(("pr_dishes_allergens", {"ID_DISH": d, "ID_ALLERGEN": a,
                                             "MAY_CONTAIN_TRACES": False}))
    nuser = max(1, counts["pr_registry"])
    for u in range(counts["pr_registry"]):
        recs.append(("pr_registry", {
            "ID_USER": "user-%07d" % u, "NAME": "Name%d" % u, "SURNAME": "Surname%d" % u,
            "MAIL": "user%d@example.com" % u, "PHONE_NUMBER": "333 %03d %04d" % (u % 1000, u % 10000),
            "ADDRESS": "Via Canonica %d" % u, "CITY": "Milano", "TAX_CODE": "RSSMRA80A01F%04d" % (u % 10000),
            "SIGNUP_DATE": 1674730800000 + u, "MARKETING_CONSENT": u % 2 == 0}))
    norder = max(1, counts["pr_orders"])
    base_order = 1785623401234567169
    order_rest = {}
    for o in range(counts["pr_orders"]):
        r = o % nrest if fan_out else rng.randrange(nrest)
        order_rest[o] = r
        recs.append(("pr_orders", {
            "ID_ORDER": base_order + o, "ID_USER_ORDER": "user-%07d" % rng.randrange(nuser),
            "ID_RESTAURANT_ORDER": "rest-%05d" % r, "ORDER_DATE": 1709290937700 + o,
            "STATUS": "CREATED", "TOTAL_PRICE": 25.5, "DELIVERY_ADDRESS": "Via Canonica 21, Milano",
            "PAYMENT_METHOD": "CARD"}))
    for i in range(counts["pr_orders_dishes"]):
        recs.append(("pr_orders_dishes", {
            "ID_ORDER_DISH": 5001 + i, "ID_ORDER": base_order + rng.randrange(norder),
            "ID_DISH": "dish-%06d" % (i % ndish if fan_out else rng.randrange(ndish)),
            "ID_DISH_SUBSTITUTE": "dish-%06d" % rng.randrange(ndish) if i % 10 == 0 else None,
            "QUANTITY": 1 + i % 3, "UNIT_PRICE": 8.5, "NOTES": None}))
    for i in range(counts["pr_reviews"]):
        legacy = i % 5 == 0   # legacy reviews: restaurant, no order
        recs.append(("pr_reviews", {
            "ID_REVIEW": "rev-%07d" % i, "ID_USER_REVIEW": "user-%07d" % rng.randrange(nuser),
            "ID_ORDER_REVIEW": None if legacy else base_order + rng.randrange(norder),
            "ID_RESTAURANT_REVIEW": "rest-%05d" % rng.randrange(nrest) if legacy else None,
            "RATING": 1 + i % 5, "TEXT": "Good food, quick delivery",
            "MODERATION_STATUS": "APPROVED", "REVIEW_DATE": 1709292620100 + i}))
    return recs


def food_update(proj, after, i):
    """The next image of a record: one non-key field changes."""
    a = dict(after)
    if proj == "pr_orders":
        a["STATUS"] = ORDER_STATUS[i % len(ORDER_STATUS)]
    elif proj == "pr_orders_dishes":
        a["QUANTITY"] = 1 + i % 4
    elif proj == "pr_reviews":
        a["RATING"] = 1 + i % 5
    elif proj == "pr_registry":
        a["CITY"] = ["Milano", "Torino", "Roma"][i % 3]
    elif proj == "pr_dishes":
        a["PRICE"] = 5 + i % 20 + 0.5
    elif proj == "pr_dishes_allergens":
        a["MAY_CONTAIN_TRACES"] = i % 2 == 0
    elif proj == "pr_restaurants":
        a["IS_OPEN"] = "true" if i % 2 else "false"
    else:
        a["DESCRIPTION"] = "Products containing %s (%d)" % (a["ID_ALLERGEN"], i)
    return a


def food_messages(n, k, partitions, out, rng, fan_out=0):
    recs = food_records(k, rng, fan_out)
    k = len(recs)
    current = [None] * k
    expected = {}
    lsn = 24024432
    # with a fan-out, updates go to the projections in FOOD_SHARES' proportions
    # whatever their record counts, so that only what a change finds grows
    by_proj = {}
    for r, (proj, _) in enumerate(recs):
        by_proj.setdefault(proj, []).append(r)
    names = [name for name, _ in FOOD_SHARES if name in by_proj]
    weights = [share for name, share in FOOD_SHARES if name in by_proj]
    for i in range(n):
        # the first K messages create every record (parents first), the others
        # update records at random
        if i < k:
            r = i
        elif fan_out:
            r = rng.choice(by_proj[rng.choices(names, weights)[0]])
        else:
            r = rng.randrange(k)
        proj, after = recs[r]
        before = current[r]
        new = after if before is None else food_update(proj, before, i)
        current[r] = new
        if before is None:
            expected[proj] = expected.get(proj, 0) + 1
        key = {f: new[f] for f in FOOD_PK[proj]}
        kt = json.dumps(key, separators=(",", ":"))
        ts = T0 + i
        lsn += 1304
        value = {"before": before, "after": new,
                 "source": {"version": "2.6.1.Final", "connector": "postgresql", "name": "food",
                            "ts_ms": ts - 7, "snapshot": "false", "db": "fooddb",
                            "schema": "public", "table": proj[3:], "txId": 1521 + i, "lsn": lsn},
                 "op": "c" if before is None else "u", "ts_ms": ts}
        out.write('{"topic":"%s","partition":%d,"key":%s,"value":%s,"timestamp":%d}\n'
                  % (FOOD_PREFIX + proj + ".ingestion", part_of(kt, partitions), kt,
                     json.dumps(value, separators=(",", ":")), ts))
    return expected


def food_topics(partitions):
    ingest = [FOOD_PREFIX + p + ".ingestion" for p in FOOD_PK]
    outputs = []
    with open(os.path.join(FOOD_DIR, "topics")) as f:
        for line in f:
            name = line.strip().split(":")[0]
            if name and not name.startswith("#") and name not in ingest:
                outputs.append(name)
    return ingest, outputs


def food_env():
    env = {"EXAMPLE_DIR": FOOD_DIR}
    text = subprocess.run(
        ["sh", "-c", 'set -a; . "$EXAMPLE_DIR/env"; set +a; env -0'],
        env={"EXAMPLE_DIR": FOOD_DIR, "PATH": "/usr/bin:/bin"},
        capture_output=True, check=True).stdout.decode()
    for item in text.split("\0"):
        if "=" in item:
            k, v = item.split("=", 1)
            if k not in ("PATH", "PWD", "SHLVL", "_", "OLDPWD"):
                env[k] = v
    return env


# ---------------------------------------------------------------------------
# the scenario of a run

def generate(a, n, keys, tmp, rng, fan_out=0):
    msgs = os.path.join(tmp, "messages.jsonl")
    t = time.monotonic()
    with open(msgs, "w") as out:
        if a.scenario == "basic":
            expected, last, records = basic_messages(n, keys, a.partitions, out, a.set_size)
            ingest, outputs = [BASIC_TOPIC], []
            env = basic_env(os.path.join(tmp, "cfg"))
            crng = random.Random(a.seed + 1)

            def check(db):
                probs = count_check(db, expected, {"items": "items"})
                return probs or basic_check(db, last, crng)
        else:
            records = None
            expected = food_messages(n, keys, a.partitions, out, rng, fan_out)
            ingest, outputs = food_topics(a.partitions)
            env = food_env()

            def check(db):
                probs = count_check(db, expected, None)
                if not probs and db["fd-pc-food-delivery"].estimated_document_count() == 0:
                    probs = ["no projection changes were recorded"]
                return probs
    say("generated %d messages over %d keys in %.1f s (%s)" % (
        n, sum(expected.values()), time.monotonic() - t,
        ", ".join("%s=%d" % kv for kv in sorted(expected.items()))))
    if records is not None:
        say("sets of %d fold to %d records written (%.0f per 1,000 messages)" % (
            a.set_size, records, records * 1000.0 / n))
    return msgs, ingest, outputs, env, check


def count_check(db, exp, names):
    out = []
    for proj, n in exp.items():
        coll = names[proj] if names else proj
        # the count command without a query: the test server answers it
        # without scanning (count_documents aggregates over every document)
        got = int(db.command("count", coll)["n"])
        if got != n:
            out.append("%s: %d documents, expected %d" % (coll, got, n))
    return out

