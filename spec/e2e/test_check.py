"""End-to-end: `rtu check` on a copy of examples/food-delivery with a dozen
typical mistakes planted across the environment and the files (issue 19): every
one is reported in a single run, at its file, line and column (variables as
env:NAME), sorted by file and line, with a one-line summary and exit code 2;
--json gives the same problems as JSON lines. No Kafka or MongoDB is needed: the
check connects to neither."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import E2ETestCase  # noqa: E402

SOURCE = os.environ.get("RTU_SOURCE_DIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE = os.path.join(SOURCE, "examples", "food-delivery")


def example_env(folder):
    """The example's env file as the shell reads it, with EXAMPLE_DIR = folder."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$EXAMPLE_DIR/env"; set +a; env -0'],
                         env={"EXAMPLE_DIR": folder, "PATH": os.environ.get("PATH", "")},
                         check=True, stdout=subprocess.PIPE).stdout.decode()
    env = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    env.pop("PWD", None)
    env.pop("SHLVL", None)
    env.update({"KAFKA_BROKERS": "127.0.0.1:1", "MONGODB_URL": "mongodb://127.0.0.1:1",
                "LUA_RUNTIME_FOLDER": os.path.join(SOURCE, "lua")})
    return env


def place(path, needle, offset=0):
    """(line, column) from 1 of needle[offset] in the file (columns in characters)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    i = text.index(needle) + offset
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


def plant(path, old, new):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.count(old) >= 1, (path, old)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))


def run_check(env, *args):
    p = subprocess.run([harness.RTU_BIN, "check"] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class PlantedMistakes(E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rtu-check-")
        d = cls.dir = os.path.join(cls.tmp, "food-delivery")
        shutil.copytree(EXAMPLE, d)
        f = {name: os.path.join(d, rel) for name, rel in {
            "er": "erSchema/erSchema.json",
            "pc": "projectionChangesSchema/projectionChangesSchema.json",
            "map": "mapTable/mapTable.json",
            "upd": "kafkaProjectionUpdates/kafkaProjectionUpdates.json",
            "kpc": "kafkaProjectionChanges/kafkaProjectionChanges.json",
            "cast": "castFunctions/unusedCast.lua",
            "js": "strategies/customersOfOrderDish.js",
        }.items()}
        env = cls.env = example_env(d)
        # (severity, where it must be reported, words the line must hold)
        want = cls.want = []

        # 1-4: the environment
        env["MONGODB_URL"] = "not-a-url"
        want.append(("error", "env:MONGODB_URL", ["not a MongoDB connection string"]))
        env["HTTP_PORT"] = "http"
        want.append(("error", "env:HTTP_PORT", ["'http'"]))
        env["CONTROL_PLANE_CONFIG_PATH"] = "/home/node/app/control-plane.json"
        want.append(("warning", "env:CONTROL_PLANE_CONFIG_PATH", ["does not honour"]))
        topics = json.loads(env["INVARIANT_TOPIC_MAP"])
        del topics["demo.food.pr_reviews.ingestion"]
        env["INVARIANT_TOPIC_MAP"] = json.dumps(topics)

        # 5: a field of no projection in a relation's condition
        plant(f["er"], '"ID_USER_ORDER": "ID_USER"', '"ID_USER_ORDER": "ID_CUSTMER"')
        want.append(("error", "%s:%d:%d" % ((f["er"],) + place(f["er"], '"ID_CUSTMER"')),
                     ["'ID_CUSTMER' is not a field of pr_registry", "did you mean 'ID_USER'"]))
        # 6: an identifier field of no projection; 7: a hop without a relation
        plant(f["pc"], '"ID_RESTAURANT": "ID_RESTAURANT"', '"ID_RESTAURANT": "ID_RESTAURNT"')
        want.append(("error", "%s:%d:%d" % ((f["pc"],) + place(f["pc"], '"ID_RESTAURNT"')),
                     ["did you mean 'ID_RESTAURANT'"]))
        plant(f["pc"], '"pr_reviews",\n            "pr_registry"',
              '"pr_allergens",\n            "pr_registry"')
        hop = '"pr_allergens",\n            "pr_registry"'
        want.append(("error", "%s:%d:%d" % ((f["pc"],) + place(f["pc"], hop, hop.index('"pr_registry"'))),
            ["no relation pr_allergens -> pr_registry"]))
        # 8: a key twice; 9: a misspelt cast; 10: a projection no topic feeds
        plant(f["map"], '"destination": "pr_registry",',
              '"destination": "registry_old",\n    "destination": "pr_registry",')
        want.append(("warning", "%s:%d:%d" % ((f["map"],) + place(f["map"], '"destination": "registry_old"')),
                     ["duplicate key 'destination'", "wins"]))
        plant(f["map"], '"fieldName": "CITY",\n        "cast": "__fromFile__[defaultCastToString]"',
              '"fieldName": "CITY",\n        "cast": "__fromFile__[defaultCastToStrin]"')
        want.append(("error", "%s:%d:%d" % ((f["map"],) + place(f["map"], '"__fromFile__[defaultCastToStrin]"')),
                     ["unknown cast function 'defaultCastToStrin'", "did you mean 'defaultCastToString'"]))
        want.append(("warning", "%s:%d:%d" % ((f["map"],) + place(f["map"], '"pr_reviews": {')),
                     ["no topic of INVARIANT_TOPIC_MAP feeds projection 'pr_reviews'"]))
        # 11: a misspelt key: that projection would emit nothing, silently
        plant(f["upd"], '"updatesTopic": "demo.food.pr_dishes.pr-update"',
              '"updateTopic": "demo.food.pr_dishes.pr-update"')
        want.append(("warning", "%s:%d:%d" % ((f["upd"],) + place(f["upd"], '"updateTopic"')),
                     ["did you mean 'updatesTopic'"]))
        # 12: a JSON syntax error, by line and column
        plant(f["kpc"], '"topic": "demo.food.sv_customers.sv-trigger"\n      },',
              '"topic": "demo.food.sv_customers.sv-trigger"\n      }')
        want.append(("error", "%s:%d:%d" % ((f["kpc"],) + place(f["kpc"], '"sv_restaurants"')),
                     ["not a valid JSON file", "expected ','"]))
        # 13: a Lua file nothing references, with a syntax error
        with open(f["cast"], "w") as fh:
            fh.write("return function(value, fieldName, log)\n  if value then\n"
                     "    return value +\n  end\nend\n")
        want.append(("error", "%s:4:1" % f["cast"], ["unexpected symbol"]))
        # 14: JavaScript left from the service
        with open(f["js"], "w") as fh:
            fh.write("module.exports = async function () { return [] }\n")
        want.append(("warning", f["js"], ["customersOfOrderDish.lua beside it"]))
        # and what the example itself warns of: a mapTable binding the low-code mode ignores
        want.append(("warning", "%s:%d:%d" % ((f["map"],) + place(
            f["map"], '"__fromFile__[customersOfOrderDish]"')), ["ignored"]))

        cls.rc, cls.out, cls.err = run_check(env)
        cls.lines = [l for l in cls.err.splitlines() if l.strip()]
        cls.jrc, cls.jout, _ = run_check(env, "--json")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_mistake_reported_in_one_run_at_its_line(self):
        for sev, where, words in self.want:
            prefix = "%s: %s: " % (where, sev)
            hits = [l for l in self.lines if l.startswith(prefix) and all(w in l for w in words)]
            self.assertEqual(len(hits), 1, "%s %s %s\n%s" % (prefix, words, hits, self.err))

    def test_nothing_else(self):
        self.assertEqual(len(self.lines), len(self.want), self.err)

    def test_summary_and_exit_code(self):
        errors = sum(1 for w in self.want if w[0] == "error")
        self.assertEqual(self.rc, 2)
        self.assertEqual(self.out.strip().splitlines()[-1],
                         "%d errors, %d warnings" % (errors, len(self.want) - errors))

    def test_sorted_by_file_and_line(self):
        def key(l):
            m = re.match(r"(env:[A-Z_0-9]+|[^:]+)(?::(\d+):(\d+))?: ", l)
            return (0 if m.group(1).startswith("env:") else 1, m.group(1),
                    int(m.group(2) or 0), int(m.group(3) or 0))
        self.assertEqual(self.lines, sorted(self.lines, key=key))

    def test_json_lines(self):
        self.assertEqual(self.jrc, 2)
        rows = [json.loads(l) for l in self.jout.splitlines()]
        self.assertEqual(len(rows), len(self.want))
        for r in rows:
            self.assertEqual(set(r), {"file", "variable", "line", "column", "severity", "path",
                                      "message"})
        er = [r for r in rows if r["file"] and r["file"].endswith("erSchema.json")]
        self.assertEqual(len(er), 1, rows)
        self.assertEqual(er[0]["path"],
                         "config.pr_registry.outgoing.pr_orders.conditions.customer_to_orders"
                         ".condition.ID_USER_ORDER")
        self.assertEqual([er[0]["line"], er[0]["column"]],
                         list(place(os.path.join(self.dir, "erSchema/erSchema.json"),
                                    '"ID_CUSTMER"')))

    def test_the_example_itself_passes(self):
        rc, out, err = run_check(example_env(EXAMPLE))
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.strip().endswith("0 errors, 1 warning"), out + err)


class RunRefusesWhatCheckRefuses(unittest.TestCase):
    """`rtu run` runs the same checker first: a Lua file with a syntax error that
    nothing references stops the start (exit 2), naming it, before any
    connection."""

    def test_run_refuses(self):
        tmp = tempfile.mkdtemp(prefix="rtu-check-")
        try:
            d = os.path.join(tmp, "food-delivery")
            shutil.copytree(EXAMPLE, d)
            with open(os.path.join(d, "castFunctions", "unused.lua"), "w") as fh:
                fh.write("return function(v)\n  return v +\nend\n")
            p = subprocess.run([harness.RTU_BIN, "run"], env=example_env(d), timeout=60,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("unused.lua:3:1: error:", p.stderr.decode())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main()
