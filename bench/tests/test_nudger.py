import json
import os
import tempfile
import unittest

from bench import nudger

FIGURES = {
    "secrets": 1000, "pods": 1000, "targets": 5, "idle": 10.0, "runs": 3,
    "ready_ms": 194.0, "rss_kib": 6440, "hwm_kib": 6700, "threads": 8, "rss_after_kib": 6900,
    "idle_cpu_ms": 0.0, "wakeups": 0.0, "event_ms": [5.2, 4.8, 10.6], "change_ms": [7.3, 5.8, 13.7],
    "exit": 0,
}


def row(text, measure):
    return next(line for line in text.splitlines() if line.startswith(f"| {measure}"))


class Render(unittest.TestCase):
    def test_targets_and_sources(self):
        text = nudger.render(FIGURES, 2_286_883, "localhost/hello-path-nudger:0.1.0")
        self.assertTrue(row(text, "image size").endswith("| ≤ 2.5 MB | ok |"))
        self.assertIn("| 2.29 MB |", row(text, "image size"))
        self.assertTrue(row(text, "idle RSS").endswith("| ≤ 8 MiB | ok |"))
        self.assertIn("| 6.29 MiB |", row(text, "idle RSS"))
        self.assertTrue(row(text, "idle wake-ups").endswith("| 0 | ok |"))
        self.assertIn("| 5.20 ms (4.80–10.6 ms) |", row(text, "watch event"))
        for source in ("[R1]", "[R2]", "[R3]", "[R4]", "[R5]"):
            self.assertIn(f"- {source} ", text)

    def test_missed_targets(self):
        worse = dict(FIGURES, rss_kib=9000, wakeups=0.4, event_ms=[60.0, 70.0, 40.0], exit=1)
        text = nudger.render(worse, 2_600_000, "x")
        for measure in ("image size", "idle RSS", "idle wake-ups", "watch event", "exit status"):
            self.assertTrue(row(text, measure).endswith("| MISSED |"), measure)

    def test_no_image(self):
        text = nudger.render(FIGURES, 0, "")
        self.assertNotIn("| image size", text)
        self.assertIn("Image: not built (--no-image).", text)


class Splice(unittest.TestCase):
    def test_appended_then_replaced(self):
        text = "# Benchmark results\n\nthe service's block\n"
        once = nudger.splice(text, "first")
        self.assertTrue(once.startswith(text.rstrip("\n")))
        self.assertIn("## The nudger\n\n" + nudger.BEGIN_LINE + "\nfirst\n" + nudger.END, once)
        twice = nudger.splice(once + "\nfindings\n", "second")
        self.assertNotIn("first", twice)
        self.assertIn(nudger.BEGIN_LINE + "\nsecond\n" + nudger.END, twice)
        self.assertTrue(twice.endswith("\nfindings\n"))
        self.assertEqual(twice.count("## The nudger"), 1)


class Fixtures(unittest.TestCase):
    def test_counts_and_targets(self):
        with tempfile.TemporaryDirectory() as d:
            nudger.fixtures(d, 20, 30, 5)
            with open(os.path.join(d, "secrets.json")) as f:
                secrets = json.load(f)["items"]
            with open(os.path.join(d, "pods.json")) as f:
                pods = json.load(f)["items"]
        self.assertEqual((len(secrets), len(pods)), (20, 30))
        mounting = [p["metadata"]["name"] for p in pods
                    if any(v.get("secret", {}).get("secretName") == nudger.TARGET
                           for v in p["spec"]["volumes"])]
        # The 5 targets, and pods 0 and 20, whose own Secret is the target (i mod 20 == 0).
        self.assertEqual(len(mounting), 6)
        self.assertTrue(all(p["status"]["phase"] == "Running" for p in pods))


if __name__ == "__main__":
    unittest.main()
