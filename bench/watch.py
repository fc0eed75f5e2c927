"""Watchers beside a run: the idle cost of a server, idle keep-alive connections, wrk
connections never answered, context switches per second."""

import shutil
import subprocess
import sys
import time

from bench.client import open_and_count, raise_nofile
from bench.procfs import cpu_ms, sched_ns, status, switches


def cmd_idle(seconds, *pids):
    """Per server: PID RSS_KIB CPU_MS_PER_10S WAKEUPS_PER_S THREADS after `seconds` idle."""
    pids = [int(p) for p in pids]
    secs = float(seconds)
    before = {p: (sched_ns(p), switches(p)) for p in pids}
    time.sleep(secs)
    for p in pids:
        rss, threads = status(p)
        cpu = (sched_ns(p) - before[p][0]) / 1e6 * 10.0 / secs
        wakeups = (switches(p) - before[p][1]) / secs
        print(p, rss, f"{cpu:.2f}", f"{wakeups:.1f}", threads)
    return 0


def cmd_cpu(pid):
    """utime+stime in ms of the process (dead threads included) and of its main thread."""
    pid = int(pid)
    print(f"{cpu_ms(pid):.0f}", f"{cpu_ms(f'{pid}/task/{pid}'):.0f}")
    return 0


def cmd_threads(pid):
    print(status(int(pid))[1])
    return 0


def settle(pid, floor, limit=8.0):
    """Waits until the thread count is back to `floor` or stops falling (tiny_http's idle
    pool threads end 5 s after their connection), at most `limit` seconds."""
    t0 = time.monotonic()
    last, since = status(pid)[1], time.monotonic()
    while time.monotonic() - t0 < limit:
        cur = status(pid)[1]
        if cur <= floor:
            break
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= 1.5 and time.monotonic() - t0 >= 6.0:
            break
        time.sleep(0.1)
    return time.monotonic() - t0


def cmd_keepalive(pid, port):
    """RSS and threads with 100, then 1000 idle keep-alive connections, then after they close;
    then two bursts of 100 new connections (after the settle, and right after a burst)."""
    pid, port = int(pid), int(port)
    hard = raise_nofile()
    rss, base_threads = status(pid)
    print("ka_base_rss", rss)
    print("ka_base_threads", base_threads)
    socks = []
    for n in (100, 1000):
        if n + 50 > hard:
            print(f"RLIMIT_NOFILE hard limit {hard} is too low for {n} connections", file=sys.stderr)
            break
        more, answered = open_and_count(port, n - len(socks), 5.0)
        socks += more
        time.sleep(1.0)
        rss, threads = status(pid)
        print(f"ka_{n}_rss", rss)
        print(f"ka_{n}_threads", threads)
        print(f"ka_{n}_answered", f"{answered}/{n - (len(socks) - len(more))}", flush=True)
    for s in socks:
        s.close()
    waited = settle(pid, base_threads, 10.0)
    rss, threads = status(pid)
    print("ka_closed_rss", rss)
    print("ka_closed_threads", threads)
    print("ka_closed_after_s", f"{waited:.1f}")
    for phase in ("settled", "warm"):
        # "warm": right after the previous 100 closed, their pool threads wait for work.
        socks, answered = open_and_count(port, 100, 2.0)
        print(f"burst_{phase}", f"{answered}")
        for s in socks:
            s.close()
        time.sleep(0.2)
    return 0


def ready(path):
    """Says this watcher has started (its interpreter loaded): the bench starts wrk only
    then, so that starting Python does not compete with the measured run."""
    if path:
        open(path, "w").close()


def cmd_starved(port, seconds, ready_file=None):
    """At 3/4 of a run lasting `seconds`: the established server-side sockets on `port` that
    have never sent a byte (no bytes_acked in `ss -i`), i.e. connections never answered.
    Prints nothing when ss (iproute2) is missing."""
    ready(ready_file)
    if not shutil.which("ss"):
        return 1
    time.sleep(float(seconds) * 0.75)
    out = subprocess.run(["ss", "-Htin", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    info = [line for line in out.splitlines() if line.startswith(("\t", " "))]
    print(sum(1 for line in info if "bytes_acked:" not in line))
    return 0


def cmd_switches(pid, seconds, ready_file=None):
    """Context switches per second of all the server's threads over the middle half of a run
    lasting `seconds`."""
    ready(ready_file)
    pid, secs = int(pid), float(seconds)
    time.sleep(secs * 0.25)
    t0, n0 = time.monotonic(), switches(pid)
    time.sleep(secs * 0.5)
    t1, n1 = time.monotonic(), switches(pid)
    print(f"{(n1 - n0) / (t1 - t0):.0f}")
    return 0
