"""Reload latency: a Secret directory laid out and swapped as the kubelet does (as
scripts/lib/kubelet-secret.sh does), and how long the server takes to use the new value."""

import os
import random
import shutil
import signal
import sys
import time

from bench.client import Client


def stamp():
    """A kubelet-style directory name: ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN"""
    t = time.time()
    return time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(t)) + f".{time.time_ns() % 10**9:09d}"


def secret_write(d, key, value):
    name = stamp()
    os.mkdir(os.path.join(d, name), 0o755)
    path = os.path.join(d, name, key)
    with open(path, "w") as f:
        f.write(value)
    os.chmod(path, 0o644)
    return name


def cmd_secret_init(d, key, value):
    """A Secret volume as the kubelet lays it out: DIR/KEY -> ..data/KEY, ..data -> ..<stamp>."""
    os.makedirs(d, 0o755, exist_ok=True)
    name = secret_write(d, key, value)
    os.symlink(name, os.path.join(d, "..data"))
    os.symlink(os.path.join("..data", key), os.path.join(d, key))
    return 0


def secret_update(d, key, value):
    """The kubelet's atomic update: new dir, ..data_tmp symlink, rename over ..data, remove
    the old dir. Returns perf_counter_ns() just before the rename."""
    old = os.readlink(os.path.join(d, "..data"))
    name = secret_write(d, key, value)
    tmp = os.path.join(d, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(name, tmp)
    t = time.perf_counter_ns()
    os.rename(tmp, os.path.join(d, "..data"))
    shutil.rmtree(os.path.join(d, old))
    return t


def wait_log_line(log, line, deadline):
    """Reads LOG (an open binary file) every 0.5 ms until it holds LINE; False after
    `deadline` (perf_counter_ns)."""
    seen = b""
    while line not in seen:
        seen += log.read()
        if time.perf_counter_ns() > deadline:
            return False
        time.sleep(0.0005)
    return True


def one_reload(mode, client, pid, d, log, value, gen):
    """Swaps the Secret to VALUE and waits for generation GEN + 1: returns the ms from the
    rename of ..data until GET /mysecret shows it, or None (said on stderr) after 5 s."""
    want = f"(generation {gen + 1})"
    line = f"secret reloaded: generation {gen + 1}".encode()
    log.seek(0, os.SEEK_END)
    t0 = secret_update(d, "mysecret", value)
    deadline = t0 + 5e9
    if mode == "sighup":
        os.kill(pid, signal.SIGHUP)
    elif mode == "post":
        code, body = client.request("POST", "/-/reload")
        if code != 200:
            print(f"POST /-/reload answered {code}: {body}", file=sys.stderr)
            return None
    if mode in ("watch", "sighup") and not wait_log_line(log, line, deadline):
        print(f"no '{line.decode()}' in the log after 5 s", file=sys.stderr)
        return None
    while True:
        code, body = client.request("GET", "/mysecret")
        if want in body:
            return (time.perf_counter_ns() - t0) / 1e6
        if time.perf_counter_ns() > deadline:
            print(f"generation {gen + 1} not visible after 5 s: {body!r}", file=sys.stderr)
            return None
        time.sleep(0.001)


def cmd_reload(mode, runs, pid, port, d, logfile):
    """ms from the rename of ..data to GET /mysecret showing the next generation, one line
    per run; MODE is watch (the server notices by itself), sighup or post (POST /-/reload).

    watch and sighup wait for the server's `secret reloaded: generation N` log line (read
    every 0.5 ms) before the confirming GET: polling over HTTP would wake the server's loop
    every millisecond and hide how long it takes to notice a SIGHUP when idle."""
    pid, port = int(pid), int(port)
    client = Client(port)
    _, body = client.request("GET", "/mysecret")
    gen = int(body.rsplit("generation", 1)[1].strip(" )\n"))
    client.close()
    values = ["5678", "4321"]
    with open(logfile, "rb") as log:
        for i in range(int(runs)):
            # A random pause between swaps, so that no run falls in step with anything the
            # server might do periodically (it should do nothing: the loop has no tick).
            time.sleep(random.uniform(0.05, 0.3))
            ms = one_reload(mode, client, pid, d, log, values[i % 2], gen)
            if ms is None:
                return 1
            client.close()
            gen += 1
            print(f"{ms:.3f}", flush=True)
    return 0
