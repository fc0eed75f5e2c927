"""wrk's output: requests per second, the 99th percentile and the request count."""

import sys

_UNITS = (("us", 1e-3), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0))


def latency_ms(text):
    """A wrk latency ("812.00us", "1.91ms", "2.05s", "1.00m") in milliseconds, or None."""
    for unit, scale in _UNITS:
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * scale
            except ValueError:
                return None
    return None


def parse(text):
    """(requests/s, p99 in ms, requests) from `wrk --latency` output; None when either
    figure is missing (wrk failed, or ran without --latency)."""
    rps = p99 = None
    requests = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1:3] == ["requests", "in"]:
            requests = int(parts[0])
        elif line.startswith("Requests/sec:"):
            rps = float(parts[1])
        elif len(parts) == 2 and parts[0] == "99%":
            p99 = latency_ms(parts[1])
    if rps is None or p99 is None:
        return None
    return rps, p99, requests


def cmd_wrk_parse():
    """Reads wrk's output on stdin, prints `RPS P99_MS REQUESTS` (exit 1 when unparsable)."""
    figures = parse(sys.stdin.read())
    if figures is None:
        return 1
    rps, p99, requests = figures
    print(f"{rps:.0f} {p99:.3f} {requests}")
    return 0
