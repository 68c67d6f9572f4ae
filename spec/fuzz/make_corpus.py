#!/usr/bin/python3
"""Writes the seed corpora of spec/fuzz (corpus/<target>/) from the example's
fixtures and hand-picked edge cases. Run from anywhere; it rewrites only files it
names (seed-<sha1 prefix>), so a regenerated corpus diffs cleanly. The seeds are
committed: ctest replays them and the fuzz tests start from them."""

import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Texts at the edges of JSON and of rtu's reader (fast path or libbson's).
EDGES = [
    "0", "-0", "1", "-1", "2147483647", "2147483648", "-2147483648", "-2147483649",
    "9007199254740993", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "99999999999999999999", "1.5", "-0.0", "1e3", "1E-3",
    "2.5e+10", "123456789.123456789", "0.1", "1e400", "-1e400", "1e-400", "5e-324",
    "1.7976931348623157e308", "true", "false", "null", '""', '"abc"',
    '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"', '"\\u00e9\\u20ac\\u0041"',
    '"caf\u00e9 \u20ac \U0001F600"', '"\\ud83d\\ude00"', '"\\ud83d"', '"a\\u0000b"',
    "[]", "{}", "[1,2,3]", '[ 1 , "x" , null , [ ] , { } ]', '{"a":1,"a":2}',
    '{"$or":[{"a":{"$ne":1}}]}', '{"$oid":"5f0000000000000000000000"}',
    '{"$numberLong":"5"}', '{"x":"$5"}', '{"":1}', '{"k\\u00e9y":1}', '{"\\u0024date":1}',
    "01", "1.", ".5", "+1", "-", "1e", "tru", "nulls", "[1,]", '{"a":1,}', '{"a" 1}',
    '"\\x"', '"\\u12"', '"tab\there"', "1 // c", "1 /* c */", "[1] x", '{"a":1}}',
    "NaN", "Infinity", "-Infinity", "1, \"w\": 2", "[" * 70 + "]" * 70,
]


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture_messages():
    path = os.path.join(ROOT, "examples", "food-delivery", "fixtures", "cdc.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def text(v):
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def adapter_seed(adapter, key, value, flags=0):
    body = b"" if key is None else text(key).encode()
    body += b"\xff" + text(value).encode()
    return bytes([adapter | flags]) + body


def main():
    json_texts = [t.encode() for t in EDGES]
    msgs = fixture_messages()
    for m in msgs[::5]:  # every fifth: all kinds of record, a small corpus
        json_texts.append(text(m["key"]).encode())
        json_texts.append(text(m["value"]).encode())
        json_texts.append(json.dumps(m["value"], indent=1).encode())
    for t in json_texts:
        for target in ("fuzz_json_read", "fuzz_json_bson", "fuzz_json_lua"):
            write(target, t)

    rec = {"ID": 9007199254740993, "CODE": 12, "NAME": "caf\u00e9", "QTY": "42",
           "PRICE": "-3.50", "TS": 1700000000000, "FLAG": "true", "DAY": "2024-03-01",
           "OBJ": '{"a":[1,2]}', "ARR": '[{"b":1}]', "ANY": None}
    basic, dbz, gg = 0, 1, 2
    seeds = [
        adapter_seed(basic, {"ID": 1}, rec),
        adapter_seed(basic, None, rec),
        adapter_seed(basic, {"ID": 1}, ""),
        adapter_seed(basic, {"ID": 1}, "null"),
        adapter_seed(basic, "1", rec, flags=4),
        adapter_seed(basic, {"ID": 1}, rec, flags=8),
    ]
    for op, before, after in (("c", None, rec), ("r", None, rec), ("u", rec, dict(rec, NAME="x")),
                              ("u", rec, dict(rec, ID=2)), ("d", rec, None), ("t", None, None)):
        v = {"before": before, "after": after, "source": {"lsn": 24024432}, "op": op,
             "ts_ms": 1709290800200}
        seeds.append(adapter_seed(dbz, {"ID": rec["ID"]}, v))
        seeds.append(adapter_seed(dbz, {"schema": {}, "payload": {"ID": rec["ID"]}},
                                  {"schema": {}, "payload": v}))
    for op, before, after, pos in (("I", None, rec, "00000000000000000100"),
                                   ("U", rec, dict(rec, NAME="y"), "00000000000000000200"),
                                   ("U", {"ID": 1}, {"ID": 2}, 300), ("D", rec, None, "400")):
        v = {"table": "MY.T", "op_type": op, "op_ts": "2023-11-14 22:13:20.000000", "pos": pos}
        if before is not None:
            v["before"] = before
        if after is not None:
            v["after"] = after
        seeds.append(adapter_seed(gg, "1", v))
    for m in msgs[::5]:
        seeds.append(adapter_seed(dbz, m["key"], m["value"]))
    # projection q (bit 4): casts map_fast.c converts itself, so these take the
    # C path and the target compares it with the Lua pipeline
    q = {"ID": 17, "CODE": "c-1", "QTY": "42", "PRICE": "-3.50", "FLAG": "true",
         "DAY": 1709290800200, "ANY": True}
    for num in ("7", "-0", "12.0", "0.0000001", "99999999999999999999", "1e3", "-0.5"):
        seeds.append(adapter_seed(basic, {"ID": 17}, dict(q, QTY=num, PRICE=num), flags=16))
    seeds.append(adapter_seed(basic, None, q, flags=16))
    seeds.append(adapter_seed(basic, {"ID": "17"}, dict(q, ID="17"), flags=16))
    for op, before, after in (("c", None, q), ("u", q, dict(q, CODE="c-2")),
                              ("u", q, dict(q, ID=18)), ("d", q, None)):
        v = {"before": before, "after": after, "source": {"lsn": 24024432}, "op": op,
             "ts_ms": 1709290800200}
        seeds.append(adapter_seed(dbz, {"ID": 17}, v, flags=16))
    for s in seeds:
        write("fuzz_adapters", s)


if __name__ == "__main__":
    main()
