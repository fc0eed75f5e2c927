"""Descriptor and thread exhaustion: floods of connections held open, whether the server
serves again once they close, and why a server died (from its log)."""

import re
import time

from bench.client import get_once, hold, raise_nofile
from bench.procfs import alive


def flood(port, n, prefix):
    """Holds N connections 2 s (one request each), prints PREFIX_served (the 200s) and
    PREFIX_opened, then closes them."""
    raise_nofile()
    socks, served, _refused = hold(port, n, 2.0)
    print(f"{prefix}_served", served)
    print(f"{prefix}_opened", len(socks))
    for s in socks:
        s.close()


def cmd_fdflood(pid, port, n):
    """A flood of N connections (fd_served, fd_opened), then a new GET every 20 ms: how soon
    it serves again after they close (fd_recover, ms or never), alive or not (fd_alive)."""
    pid, port = int(pid), int(port)
    flood(port, int(n), "fd")
    t0 = time.monotonic()
    recovered = None
    while time.monotonic() - t0 < 10:
        if get_once(port, timeout=0.5) == 200:
            recovered = (time.monotonic() - t0) * 1000
            break
        if not alive(pid):
            break
        time.sleep(0.02)
    print("fd_alive", "yes" if alive(pid) else "no")
    if recovered is not None:
        print("fd_recover", f"{recovered:.0f}")
    else:
        print("fd_recover", "never")
    return 0


def cmd_flood(port, n):
    """A flood of N connections under a pids limit: pids_served, pids_opened."""
    flood(int(port), int(n), "pids")
    return 0


def cause(text):
    """The reason a server died, in a few words, from its log ("" when none is found)."""
    m = re.search(r"panicked at (\S+?):(\d+):\d+:\s*(.*)", text)
    if m:
        path = m.group(1)
        short = re.search(r"([A-Za-z_]+-\d+\.\d+\.\d+/src/.*)|library/(std/src/.*)", path)
        where = (short.group(1) or short.group(2)) if short else path.rsplit("/", 1)[-1]
        msg = m.group(3).strip()
        err = re.search(r'message: "([^"]+)"', msg)
        msg = msg.split(":")[0] if "Os {" in msg or "Err" in msg else msg
        if err:
            msg = f"{msg}: {err.group(1)}" if not msg.startswith("called") else err.group(1)
        return f"panic at {where}:{m.group(2)}: {msg[:80]}"
    for pattern in ("failed to create new OS thread", "fatal error: [^\n]*", "too many open files"):
        m = re.search(pattern, text)
        if m:
            return m.group(0)[:80]
    return ""


def cmd_cause(logfile):
    with open(logfile, errors="replace") as f:
        print(cause(f.read()))
    return 0
