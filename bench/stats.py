"""Medians and ranges, ratios against the peer, and the checks behind each verdict.

A check takes the values of both sides, ``check(ours, peer)``, and returns True (ok),
False (MISSED) or None (not measured: no verdict)."""

import statistics


def summary(vals, fmt):
    """"median (min–max)", the unit written once when both ends share it; "—" for none."""
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    lo, hi = fmt(min(vals)), fmt(max(vals))
    if lo.split()[1:] == hi.split()[1:]:
        lo = lo.split()[0]  # same unit: "0.68–4.14 ms"
    return f"{fmt(med)} ({lo}–{hi})"


def ratio_text(ours, peer):
    """ours / peer of the medians, "1.15×"; "—" when a side is missing or the peer's is 0."""
    if not ours or not peer:
        return "—"
    p = statistics.median(peer)
    if p == 0:
        return "—"
    return f"{statistics.median(ours) / p:.2f}×"


def ratio_at_least(limit):
    """ok when median(ours) / median(peer) ≥ limit (no verdict without a peer)."""
    return _ratio(lambda r: r >= limit)


def ratio_at_most(limit):
    """ok when median(ours) / median(peer) ≤ limit (no verdict without a peer)."""
    return _ratio(lambda r: r <= limit)


def _ratio(ok):
    def check(ours, peer):
        if not ours or not peer:
            return None
        return ok(statistics.median(ours) / statistics.median(peer))
    return check


def median_at_most(limit):
    return _ours(lambda v: statistics.median(v) <= limit)


def max_at_most(limit):
    return _ours(lambda v: max(v) <= limit)


def min_at_least(limit):
    return _ours(lambda v: min(v) >= limit)


def _ours(ok):
    def check(ours, _peer):
        return ok(ours) if ours else None
    return check
