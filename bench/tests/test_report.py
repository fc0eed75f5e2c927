import os
import unittest

from bench import fmt, report
from bench.rows import Row
from bench.samples import Samples
from bench.stats import max_at_most

DATA = os.path.join(os.path.dirname(__file__), "data")

# The options scripts/bench.sh gave `table` for each recorded run in DATA.
RUNS = {
    # The full run of bench/RESULTS.md (revision 164fe08), with the Go stand-in as the peer.
    "run-go": {
        "--peer": "peer-go (stand-in for hello-path-go, built from bench/peer-go, go1.19.8)",
        "--quick": "false",
        "--machine": "2 cores (nproc), AMD EPYC, Linux 6.18.44-fc-v657",
        "--date": "2026-11-29 02:04 UTC",
        "--revision": "164fe08",
        "--binary": "target/x86_64-unknown-linux-musl/release/hello-path-rs",
        "--runs": "starts=20 idle=10s wrk=5x3s reload=10 stop=3 fd=5",
    },
    # A made-up --quick run without a peer, where much went wrong.
    "quick-nopeer": {
        "--peer": "none",
        "--quick": "true",
        "--machine": "2 cores (nproc), test CPU, Linux 6.1",
        "--date": "2026-12-01 12:00 UTC",
        "--revision": "abc1234-dirty",
        "--binary": "target/release/hello-path-rs (host (glibc) build: the "
                    "x86_64-unknown-linux-musl target is not installed)",
        "--runs": "starts=5 idle=2s wrk=1x1s reload=3 stop=1 fd=1",
        "--wrk-errors": os.path.join(DATA, "quick-nopeer.wrk-errors.txt"),
        "--failures": os.path.join(DATA, "quick-nopeer.failures.txt"),
    },
}


def data(name):
    return os.path.join(DATA, name)


def lines_of(path):
    with open(path) as f:
        return [line.rstrip("\n") for line in f]


class GoldenTest(unittest.TestCase):
    """The report of a recorded run, line for line as the bench wrote it."""

    def test_recorded_runs(self):
        for run, opts in RUNS.items():
            with self.subTest(run=run):
                samples = Samples.read(data(f"{run}.samples.tsv"))
                got = report.render(samples, opts, lines_of(data(f"{run}.commands.txt")))
                self.assertEqual(got.split("\n"), lines_of(data(f"{run}.report.md")))


class TableTest(unittest.TestCase):
    def samples(self, *lines):
        return Samples(f"{k}\t{s}\t{v}\n" for k, s, v in lines)

    def test_verdicts(self):
        self.assertEqual(report.verdict("", True), "")
        self.assertEqual(report.verdict("≤ 1 MiB", True), "ok")
        self.assertEqual(report.verdict("≤ 1 MiB", False), "MISSED")
        self.assertEqual(report.verdict("≤ 1 MiB", None), "n/a")
        self.assertEqual(report.verdict("≥ 1.0× peer", None), "n/a (no peer)")

    def test_rows_without_samples_are_left_out(self):
        lines, counts = report.table(self.samples(("idle_rss", "rs", "736")), has_peer=False)
        self.assertEqual(lines[2:], ["| idle RSS | 736 KiB | — | — | ≤ 1 MiB | ok |"])
        self.assertEqual(counts, {"ok": 1, "MISSED": 0})

    def test_peer_and_ratio_columns(self):
        s = self.samples(("rps_c100_log", "rs", "94812"), ("rps_c100_log", "peer", "82400"))
        lines, _ = report.table(s, has_peer=True)
        self.assertEqual(lines[2:], [("| requests/s, 100 conns, logging on | 94.8k | 82.4k | 1.15× "
                                      "| ≥ 1.0× peer | ok |")])
        lines, _ = report.table(s, has_peer=False)
        self.assertIn("| 94.8k | — | — |", lines[2])

    def test_a_new_row_is_one_line(self):
        rows = [Row("idle_wakeups_reload", "idle wake-ups per second, --reload", fmt.one_decimal,
                    "0", max_at_most(0))]
        s = self.samples(("idle_wakeups_reload", "rs", "0.0"), ("idle_wakeups_reload", "rs", "0.4"))
        lines, counts = report.table(s, has_peer=False, rows=rows)
        self.assertEqual(lines[2], "| idle wake-ups per second, --reload | 0.2 (0.0–0.4) | — | — "
                                   "| 0 | MISSED |")
        self.assertEqual(counts["MISSED"], 1)

    def test_text_and_composite_rows(self):
        s = self.samples(("ka_100_answered", "rs", "100/100"), ("pid1_stop", "rs", "133.1"),
                         ("pid1_exit", "rs", "0"), ("pids_status", "rs", "running"),
                         ("pids_serves", "rs", "no"), ("pids_served", "rs", "3"),
                         ("pids_opened", "rs", "64"))
        rows = report.table(s, has_peer=False)[0][2:]
        self.assertEqual(rows, [
            "| 100 keep-alive conns opened at once: answered in 5 s | 100/100 | — | — | all | ok |",
            ("| SIGTERM → exit as PID 1 (podman stop) | 133 ms, exit 0 | — | — | ≤ 0.5 s, exit 0 "
             "| ok |"),
            ("| thread exhaustion (--pids-limit 32, 64 conns) | ALIVE BUT DEAF (zombie listener); "
             "3/64 served | — | — | no zombie listener | MISSED |"),
        ])

    def test_a_refusal_costs_no_more_than_a_get(self):
        def row(refused, ordinary):
            s = self.samples(*[("refuse_cpu", "rs", v) for v in refused],
                             *[("close_cpu", "rs", v) for v in ordinary],
                             ("pipe_hwm", "rs", "904"))
            return next(r for r in report.table(s, has_peer=False)[0][2:] if "refused" in r)
        self.assertEqual(row(["58.6", "60.0", "57.0"], ["67.1"]),
                         "| CPU per request, one refused request (400) per connection, logging "
                         "on | 58.6 µs (57.0–60.0 µs) (0.87× a GET) | — | — | ≤ 1.1× a GET | ok |")
        self.assertTrue(row(["80"], ["67.1"]).endswith("(1.19× a GET) | — | — | ≤ 1.1× a GET "
                                                        "| MISSED |"))


class SpliceTest(unittest.TestCase):
    def test_replaces_only_the_block(self):
        text = ("# Benchmark results\n\nintro\n\n" + report.BEGIN_LINE + "\nold table\n"
                + report.END + "\n\n## Findings\n\nhand-written\n")
        out = report.splice(text, "new table\n")
        self.assertEqual(out, "# Benchmark results\n\nintro\n\n" + report.BEGIN_LINE
                         + "\nnew table\n" + report.END + "\n\n## Findings\n\nhand-written\n")
        self.assertEqual(report.splice(out, "new table\n"), out)

    def test_a_file_without_markers_keeps_its_text_after_the_block(self):
        out = report.splice("## Findings\n", "table")
        self.assertEqual(out, "# Benchmark results\n\n" + report.BEGIN_LINE + "\ntable\n"
                         + report.END + "\n\n## Findings\n")
        self.assertEqual(report.splice("", "table"), "# Benchmark results\n\n"
                         + report.BEGIN_LINE + "\ntable\n" + report.END + "\n")


if __name__ == "__main__":
    unittest.main()
