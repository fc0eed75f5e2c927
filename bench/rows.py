"""The rows of the bench table, in order: what each one shows, from which samples, against
which target.

A row is added here, beside the measurement that records its samples in scripts/bench.sh
(`sample KEY SIDE VALUE`): most rows are a `Row(KEY, LABEL, FORMAT, TARGET, CHECK)` of
numbers (median, min–max, ratio to the peer); a row built from several samples gives its
own `cells`.
"""

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench import fmt
from bench.stats import (
    max_at_most,
    median_at_most,
    min_at_least,
    ratio_at_least,
    ratio_at_most,
    ratio_text,
    summary,
)

# What bench.sh ran the exhaustion rows with (it passes them on).
FD_LIMIT, FD_CONNS, PIDS_LIMIT, PIDS_CONNS = (int(os.environ.get(k, d)) for k, d in (
    ("BENCH_FD_LIMIT", "64"), ("BENCH_FD_CONNS", "100"),
    ("BENCH_PIDS_LIMIT", "32"), ("BENCH_PIDS_CONNS", "64")))


@dataclass(frozen=True)
class Cells:
    """What a row shows: ours, the peer's, the ratio, and ok (True, False; None: no verdict)."""
    ours: str
    peer: str
    ratio: str
    ok: bool | None


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    format: Callable[[float], str] | None = None
    target: str = ""
    check: Callable | None = None
    # Rows that are not plain numbers: samples → Cells, or None when nothing was measured.
    cells: Callable | None = None

    def measure(self, samples):
        """The row's Cells, or None when neither side has a sample (the row is left out)."""
        if self.cells:
            return self.cells(self, samples)
        ours, peer = samples.num(self.key, "rs"), samples.num(self.key, "peer")
        if not ours and not peer:
            return None
        return Cells(summary(ours, self.format), summary(peer, self.format),
                     ratio_text(ours, peer), self.check(ours, peer) if self.check else None)


def answered_cells(row, samples):
    """"answered/opened" text: ok when every connection was answered."""
    ours, peer = samples.text(row.key, "rs"), samples.text(row.key, "peer")
    if ours is None and peer is None:
        return None
    ours, peer = ours or "—", peer or "—"
    ok = None
    if "/" in ours:
        a, b = ours.split("/")
        ok = a == b
    return Cells(ours, peer, "—", ok)


def _pid1_side(s, side):
    ms = s.num("pid1_stop", side)
    codes = s.values("pid1_exit", side)
    if not ms:
        return "—", None
    cell = summary(ms, fmt.seconds) + ", exit " + ",".join(sorted(set(codes)))
    ok = max(ms) <= 500 and all(c == "0" for c in codes)
    return cell, ok


def pid1_cells(row, samples):
    """SIGTERM → exit as PID 1: the time and the exit codes; ok within 0.5 s with exit 0."""
    (ours, ok), (peer, _) = _pid1_side(samples, "rs"), _pid1_side(samples, "peer")
    if ours == "—" and peer == "—":
        return None
    return Cells(ours, peer, ratio_text(samples.num("pid1_stop", "rs"),
                                        samples.num("pid1_stop", "peer")), ok)


def _fd_side(s, side):
    recs = s.values("fd_recover", side)
    if not recs:
        return "—", None
    n = len(recs)
    times = [float(r) for r in recs if r != "never"]
    exits = [c for c in s.values("fd_exit", side) if c != "alive"]
    causes = sorted(set(s.values("fd_cause", side)) - {""})
    served = s.num("fd_served", side)
    opened = s.num("fd_opened", side)
    restarts = s.num("fd_listener_restarts", side)
    parts = []
    if times:
        parts.append(f"serves again in {len(times)}/{n} trials, {summary(times, fmt.ms)} after close")
    if len(times) < n:
        deaf = n - len(times) - len(exits)
        if exits:
            parts.append(f"exited {','.join(sorted(set(exits)))} in {len(exits)}/{n}"
                         + (f" ({'; '.join(causes)})" if causes else ""))
        if deaf:
            parts.append(f"ALIVE BUT DOES NOT SERVE in {deaf}/{n} (zombie listener)")
    if served and opened:
        parts.append(f"{statistics.median(served):.0f}/{statistics.median(opened):.0f} served "
                     "during the flood (median)")
    if restarts:
        parts.append(f"accept thread restarted {statistics.median(restarts):.0f}× (median)")
    # The target: serve again once the connections close (an exit is restartable, but MISSED).
    return "; ".join(parts), len(times) == n


def fd_cells(row, samples):
    """Descriptor exhaustion: does it serve again once the flood closes, how soon."""
    (ours, ok), (peer, _) = _fd_side(samples, "rs"), _fd_side(samples, "peer")
    if ours == "—" and peer == "—":
        return None

    def recovered(side):
        return [float(v) for v in samples.values("fd_recover", side) if v != "never"]

    return Cells(ours, peer, ratio_text(recovered("rs"), recovered("peer")), ok)


def _pids_side(s, side):
    st = s.text("pids_status", side)
    if st is None:
        return "—", None
    code = s.text("pids_exit", side)
    serves = s.text("pids_serves", side)
    cause = s.text("pids_cause", side)
    served = s.text("pids_served", side)
    opened = s.text("pids_opened", side)
    if st == "running":
        cell = "alive, serves again" if serves == "yes" else "ALIVE BUT DEAF (zombie listener)"
        ok = serves == "yes"
    else:
        cell = f"{st}, exit {code}" + (f" ({cause})" if cause else "")
        ok = code not in (None, "0", "?")
    cell += f"; {served}/{opened} served"
    return cell, ok


def pids_cells(row, samples):
    """Thread exhaustion: alive and serving, or exited (restartable): never a zombie listener."""
    (ours, ok), (peer, _) = _pids_side(samples, "rs"), _pids_side(samples, "peer")
    if ours == "—" and peer == "—":
        return None
    return Cells(ours, peer, "—", ok)


def refuse_cells(row, samples):
    """CPU per refused request against per ordinary one (both one request per connection),
    on each side: ok when a refusal costs no more than the request (within 10 %)."""
    def side(s):
        refused, ordinary = samples.num("refuse_cpu", s), samples.num("close_cpu", s)
        if not refused:
            return "—", None, refused
        cell = summary(refused, fmt.us)
        if not ordinary:
            return cell, None, refused
        ratio = statistics.median(refused) / statistics.median(ordinary)
        return f"{cell} ({ratio:.2f}× a GET)", ratio <= 1.1, refused

    (ours, ok, ours_v), (peer, _, peer_v) = side("rs"), side("peer")
    if ours == "—" and peer == "—":
        return None
    return Cells(ours, peer, ratio_text(ours_v, peer_v), ok)


def _wrk_rows():
    rows = []
    for mode, what in (("log", "logging on"), ("nolog", "logging off")):
        for c in (10, 100):
            against_peer = c == 100  # the targets are set at 100 connections
            rows += [
                Row(f"rps_c{c}_{mode}", f"requests/s, {c} conns, {what}", fmt.rps,
                    "≥ 1.0× peer" if against_peer else "",
                    ratio_at_least(1.0) if against_peer else None),
                Row(f"p99_c{c}_{mode}", f"p99 latency, {c} conns, {what}", fmt.ms,
                    "≤ 0.3× peer" if against_peer else "",
                    ratio_at_most(0.3) if against_peer else None),
                Row(f"starved_c{c}_{mode}", f"wrk conns never served, {c} conns, {what}",
                    fmt.integer, "0", max_at_most(0)),
            ]
        rows += [
            Row(f"cpu_c100_{mode}", f"process CPU per request, 100 conns, {what}", fmt.us),
            Row(f"switches_c100_{mode}", f"context switches per request, 100 conns, {what}",
                fmt.two_decimals),
            Row(f"main_c100_{mode}", f"main-thread CPU per request, 100 conns, {what}", fmt.us),
            Row(f"mainbusy_c100_{mode}", f"main thread busy, 100 conns, {what}", fmt.percent),
        ]
    return rows


ROWS = [
    Row("binary_size", "binary size (static, stripped)", fmt.kb),
    Row("image_size", "image size (FROM scratch)", fmt.kb, "≤ 700 kB", median_at_most(700_000)),
    Row("start_200", "start → first 200 OK", fmt.ms, "median ≤ 1 ms", median_at_most(1.0)),
    Row("idle_rss", "idle RSS", fmt.kib, "≤ 1 MiB", median_at_most(1024)),
    Row("idle_cpu", "idle CPU per 10 s", fmt.cpu),
    Row("idle_wakeups", "idle wake-ups per second", fmt.one_decimal, "0", max_at_most(0)),
    Row("idle_reload_wakeups", "idle wake-ups per second, --reload --mysecret-file (a kubelet-style volume)",
        fmt.one_decimal, "0", max_at_most(0)),
    Row("idle_reload_rss", "idle RSS, --reload --mysecret-file", fmt.kib, "≤ 1 MiB",
        median_at_most(1024)),
    Row("idle_threads", "idle threads", fmt.integer),
    *_wrk_rows(),
    Row("ka_base_rss", "RSS before the keep-alive conns", fmt.kib),
    Row("ka_100_rss", "RSS, 100 idle keep-alive conns", fmt.kib),
    Row("ka_100_threads", "threads, 100 idle keep-alive conns", fmt.integer),
    Row("ka_100_answered", "100 keep-alive conns opened at once: answered in 5 s",
        target="all", cells=answered_cells),
    Row("ka_1000_rss", "RSS, 1000 idle keep-alive conns", fmt.kib),
    Row("ka_1000_threads", "threads, 1000 idle keep-alive conns", fmt.integer),
    Row("ka_1000_answered", "900 more opened at once: answered in 5 s",
        target="all", cells=answered_cells),
    Row("ka_closed_rss", "RSS after they close", fmt.kib),
    Row("ka_closed_threads", "threads after they close", fmt.integer),
    Row("burst_settled", "burst of 100 new keep-alive conns (settled server): answered in 2 s",
        fmt.integer, "100", min_at_least(100)),
    Row("burst_warm", "burst of 100 right after another closed: answered in 2 s",
        fmt.integer, "100", min_at_least(100)),
    Row("pipe_hwm", "pipelined flood, 8 conns × 1 MiB never read: peak RSS (VmHWM)", fmt.kib,
        "≤ 32 MiB (the pods' limit)", max_at_most(32 * 1024)),
    Row("pipe_slowest", "… another client's slowest answer meanwhile", fmt.ms),
    Row("pipe_cut", "… until the 8 are cut off (the send timeout)", fmt.seconds),
    Row("close_cpu", "CPU per request, one GET per connection (Connection: close), logging on",
        fmt.us),
    Row("close_rps", "… connections a second (4 Python clients)", fmt.rps),
    Row("refuse_cpu", "CPU per request, one refused request (400) per connection, logging on",
        target="≤ 1.1× a GET", cells=refuse_cells),
    Row("refuse_rps", "… connections a second (4 Python clients)", fmt.rps),
    Row("reload_watch", "reload: kubelet swap → in use (file watch)", fmt.ms,
        "median ≤ 5 ms", median_at_most(5)),
    Row("reload_watch_1h", "reload: kubelet swap → in use, --watch-interval 1h (the watch alone)",
        fmt.ms, "median ≤ 5 ms", median_at_most(5)),
    Row("reload_sighup", "reload: swap + SIGHUP → in use (--watch=false)", fmt.ms,
        "median ≤ 5 ms", median_at_most(5)),
    Row("reload_post", "reload: swap + POST /-/reload → in use (--watch=false)", fmt.ms,
        "max ≤ 50 ms", max_at_most(50)),
    Row("pid1_stop", "SIGTERM → exit as PID 1 (podman stop)", target="≤ 0.5 s, exit 0",
        cells=pid1_cells),
    Row("fd", f"fd exhaustion (nofile {FD_LIMIT}, {FD_CONNS} conns)", target="serves again",
        cells=fd_cells),
    Row("pids", f"thread exhaustion (--pids-limit {PIDS_LIMIT}, {PIDS_CONNS} conns)",
        target="no zombie listener", cells=pids_cells),
]
