"""tools/show-projections.py --check, the last line of tools/demo: the projection
changes against an example's expected-projection-changes.jsonl, on a mongomock
database (no server): a match says so, each kind of difference is named, and the
exit status tells them apart."""
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import unittest
from unittest import mock

import mongomock

ROOT = os.environ.get("RTU_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
spec = importlib.util.spec_from_file_location(
    "show_projections", os.path.join(ROOT, "tools", "show-projections.py"))
show = importlib.util.module_from_spec(spec)
spec.loader.exec_module(show)

EXPECTED = os.path.join(ROOT, "examples", "food-delivery", "fixtures",
                        "expected-projection-changes.jsonl")


def expected_pairs():
    pairs = {}
    with open(EXPECTED, encoding="utf-8") as f:
        for line in f:
            for c in json.loads(line)["changes"]:
                pairs[show._pair(c)] = c
    return list(pairs.values())


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.client = mongomock.MongoClient()
        self.db = self.client["food_delivery"]
        self.pc = self.db["fd-pc"]
        env = {"MONGODB_URL": "mongodb://unused", "PROJECTIONS_DATABASE_NAME": "food_delivery",
               "PROJECTIONS_CHANGES_COLLECTION_NAME": "fd-pc"}
        self.env = mock.patch.dict(os.environ, env)
        self.env.start()
        self.client_patch = mock.patch.object(show.pymongo, "MongoClient", lambda url: self.client)
        self.client_patch.start()

    def tearDown(self):
        self.client_patch.stop()
        self.env.stop()

    def run_check(self, path=EXPECTED):
        out = io.StringIO()
        with mock.patch.object(sys, "argv", ["show-projections.py", "--check", path]), \
                contextlib.redirect_stdout(out):
            rc = show.main()
        return rc, out.getvalue()

    def store(self, changes):
        for c in changes:
            self.pc.insert_one({"type": c["type"], "identifier": c["identifier"],
                                "changes": [{"state": "NEW"}]})

    def test_the_expected_changes_match_in_one_line(self):
        want = expected_pairs()
        self.assertEqual(8, len(want))
        self.store(want)
        rc, out = self.run_check()
        self.assertEqual(0, rc)
        self.assertEqual("demo: result matches fixtures/expected-projection-changes.jsonl: "
                         "8 projection changes, as expected\n", out)

    def test_a_missing_change_is_named(self):
        want = expected_pairs()
        self.store(want[1:])
        rc, out = self.run_check()
        self.assertEqual(1, rc)
        self.assertEqual(1, out.count("\n"))
        self.assertIn("result differs from fixtures/expected-projection-changes.jsonl: missing 1: "
                      + show._pair(want[0]), out)
        self.assertNotIn("unexpected", out)

    def test_an_unexpected_change_and_a_duplicate_are_named(self):
        want = expected_pairs()
        self.store(want + [want[0], {"type": "sv_customers", "identifier": {"ID_USER": "nobody"}}])
        rc, out = self.run_check()
        self.assertEqual(1, rc)
        self.assertIn('unexpected 1: sv_customers {"ID_USER": "nobody"}', out)
        self.assertIn("more than one document for: " + show._pair(want[0]), out)
        self.assertNotIn("missing", out)

    def test_an_empty_collection_misses_everything(self):
        rc, out = self.run_check()
        self.assertEqual(1, rc)
        self.assertIn("missing 8: ", out)

    def test_identifier_key_order_and_int64_do_not_matter(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "expected.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps({"changes": [{"type": "sv", "identifier": {"b": 1, "a": 9007199254740993}}]}) + "\n")
            from bson.int64 import Int64
            self.pc.insert_one({"type": "sv", "identifier": {"a": Int64(9007199254740993), "b": 1}})
            rc, out = self.run_check(path)
        self.assertEqual(0, rc, out)


if __name__ == "__main__":
    unittest.main()
