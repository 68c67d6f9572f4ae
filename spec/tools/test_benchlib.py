"""tools/bench's parts that decide what is measured, without servers: the food
scenario's fan-out (each restaurant exactly F orders, each dish exactly F order
lines, the key count kept, the update mix held to FOOD_SHARES), that a fan-out
of 0 is the scenario as it was, the memory mode's summary and curve, and the
options the driver refuses before building anything."""
import collections
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import unittest

ROOT = os.environ.get("RTU_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tools"))

from benchlib import memory, report, scenarios  # noqa: E402


def messages(n, k, fan_out, seed=1):
    out = io.StringIO()
    expected = scenarios.food_messages(n, k, 12, out, random.Random(seed), fan_out)
    return expected, [json.loads(line) for line in out.getvalue().splitlines()]


class FanOut(unittest.TestCase):
    def test_counts_keep_the_keys(self):
        for k in (500, 3000, 20000, 50000):
            for f in (1, 2, 4, 16, 64):
                c = scenarios.food_counts(k, f)
                self.assertEqual(sum(c.values()), k, (k, f, c))
                self.assertGreaterEqual(min(c.values()), 1, (k, f, c))

    def test_each_parent_has_exactly_f_children(self):
        for f in (1, 3, 16):
            recs = scenarios.food_records(5000, random.Random(2), f)
            orders = collections.Counter(r["ID_RESTAURANT_ORDER"] for p, r in recs
                                         if p == "pr_orders")
            lines = collections.Counter(r["ID_DISH"] for p, r in recs
                                        if p == "pr_orders_dishes")
            rests = [r["ID_RESTAURANT"] for p, r in recs if p == "pr_restaurants"]
            dishes = [r["ID_DISH"] for p, r in recs if p == "pr_dishes"]
            self.assertEqual(set(orders), set(rests))
            self.assertEqual(set(orders.values()), {f})
            self.assertEqual(set(lines), set(dishes))
            self.assertEqual(set(lines.values()), {f})

    def test_dish_allergens_are_distinct_pairs(self):
        recs = scenarios.food_records(20000, random.Random(3), 64)
        pairs = [(r["ID_DISH"], r["ID_ALLERGEN"]) for p, r in recs if p == "pr_dishes_allergens"]
        self.assertEqual(len(pairs), len(set(pairs)))

    def test_update_mix_follows_the_shares(self):
        k, n = 2000, 42000
        for f in (2, 32):
            _, msgs = messages(n, k, f)
            per = collections.Counter(m["topic"] for m in msgs[k:])
            for name, share in scenarios.FOOD_SHARES:
                got = per[scenarios.FOOD_PREFIX + name + ".ingestion"] / (n - k)
                self.assertAlmostEqual(got, share, delta=0.01, msg=(f, name))

    def test_every_record_is_created_then_updated(self):
        expected, msgs = messages(6000, 3000, 8)
        self.assertEqual(sum(expected.values()), 3000)
        ops = collections.Counter(json.loads(m["value"] if isinstance(m["value"], str)
                                             else json.dumps(m["value"]))["op"] for m in msgs)
        self.assertEqual(ops, {"c": 3000, "u": 3000})

    def test_no_fan_out_is_the_scenario_as_it_was(self):
        # the shares of today's scenario, and order lines spread at random
        c = scenarios.food_counts(50000, 0)
        self.assertEqual(sum(c.values()), 50000)
        rest = 50000 - 14
        for name, share in scenarios.FOOD_SHARES:
            if name != "pr_orders":
                self.assertEqual(c[name], int(rest * share))
        recs = scenarios.food_records(50000, random.Random(1), 0)
        orders = collections.Counter(r["ID_RESTAURANT_ORDER"] for p, r in recs
                                     if p == "pr_orders")
        self.assertGreater(len(set(orders.values())), 5)


class BasicFold(unittest.TestCase):
    def records(self, n, k, partitions, set_size):
        return scenarios.basic_messages(n, k, partitions, io.StringIO(), set_size)[2]

    def test_records_are_the_distinct_keys_of_each_set(self):
        # one partition, one set: every key once
        self.assertEqual(self.records(5000, 300, 1, 5000), 300)
        # distinct keys: nothing folds
        self.assertEqual(self.records(5000, 5000, 12, 100), 5000)
        # sets of 1: one record a message
        self.assertEqual(self.records(3000, 10, 4, 1), 3000)
        # one partition, sets of 1000 over 250 keys visited in a cycle: 250 a set
        self.assertEqual(self.records(4000, 250, 1, 1000), 1000)


class Memory(unittest.TestCase):
    def test_summary(self):
        samples = [(1.0, 20.0, 0), (2.0, 60.5, 1000), (3.0, 41.0, 3000)]
        r = memory.summarize(samples, 3.0, 61.0, 0.06)
        self.assertEqual(r["peak_rss_mib"], 61.0)
        self.assertEqual(r["rss_end_mib"], 41.0)
        self.assertEqual(r["applied"], 3000)
        self.assertAlmostEqual(r["applied_per_s"], 1000.0)
        self.assertAlmostEqual(r["cpu_us_per_msg"], 20.0)
        # without VmHWM (the process gone), the highest sample
        self.assertEqual(memory.summarize(samples, 3.0, None, 0.06)["peak_rss_mib"], 60.5)

    def test_curve_keeps_every_tenth_and_the_last(self):
        samples = [(float(t), 10.0 + t, t * 100) for t in range(1, 24)]
        text = memory.curve_text(samples, 10)
        self.assertEqual(text.split(), ["10:20.0:1000", "20:30.0:2000", "23:33.0:2300"])
        self.assertEqual(len(memory.curve_text(samples, 1).split()), 23)


class Marginal(unittest.TestCase):
    def test_fixed_start_and_flat_cost_are_told_apart(self):
        class C:
            name = "rtu"
        # 0.5 s of start and 8 us a message, then 12 us a message past 100,000
        total = {10000: 0.5e6 + 8 * 10000, 100000: 0.5e6 + 8 * 100000,
                 1000000: 0.5e6 + 8 * 100000 + 12 * 900000}
        sweep = {n: {"rtu": {"cpu_us_per_msg": t / n}} for n, t in total.items()}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            report.marginals(sweep, [C])
        lines = out.getvalue().splitlines()
        self.assertEqual(lines, [
            "marginal contender=rtu messages=10000->100000 cpu_us_per_msg=8.00 start_cpu_s=0.50",
            "marginal contender=rtu messages=100000->1000000 cpu_us_per_msg=12.00 "
            "start_cpu_s=0.10"])


class Options(unittest.TestCase):
    def bench(self, *args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench")] +
                              list(args), capture_output=True, text=True, timeout=60)

    def test_refused_before_building(self):
        for args, what in ((["--messages", "1,2", "--keys", "1,2"], "one of"),
                           (["--fan-out", "4"], "food"),
                           (["--keys", "1,2", "--duration", "5"], "one message count"),
                           (["--keys", "x"], "--keys")):
            p = self.bench("--build", "/nonexistent", *args)
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertIn(what, p.stderr, args)

    def test_help(self):
        p = self.bench("--help")
        self.assertEqual(p.returncode, 0, p.stderr)
        for opt in ("--fan-out", "--duration", "--interval", "--plot", "--rate", "--scale"):
            self.assertIn(opt, p.stdout)


if __name__ == "__main__":
    unittest.main()
