"""Floods that must not cost what they send: connections that pipeline requests and never
read (the server's peak RSS, another client's slowest answer meanwhile, how long until
they are cut off), and requests the HTTP layer refuses against as many ordinary ones (the
server's CPU per request)."""

import os
import socket
import threading
import time

from bench.procfs import sched_ns

GET = b"GET /test HTTP/1.1\r\nHost: bench\r\n\r\n"
# One request per connection, answered then closed: an ordinary one, and one the HTTP
# layer refuses (two Content-Length fields: 400 and the end of the connection).
CLOSE = b"GET /test HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
REFUSED = b"GET /test HTTP/1.1\r\nHost: bench\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"


def vm_kib(pid, field):
    """VmRSS or VmHWM of PID, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def sockets(pid):
    """The sockets PID holds open (a connection the server has ended is one less)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def exchange(port, request, timeout=5.0):
    """Sends REQUEST on a new connection and reads to the end; the status, or 0."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
    except (OSError, ValueError, IndexError):
        return 0


def cmd_pipeflood(pid, port, conns, kib):
    """CONNS connections each send KIB KiB of pipelined GETs and never read, until the
    server ends them. Prints pipe_hwm (VmHWM, KiB: the server's peak, from its start),
    pipe_slowest (ms: the slowest of the GETs another client made meanwhile, one every
    50 ms), pipe_cut (ms until the server holds none of their sockets)."""
    pid, port, conns, kib = int(pid), int(port), int(conns), int(kib)
    idle = sockets(pid)
    payload = GET * (kib * 1024 // len(GET))
    socks = []

    def flood():
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
        s.settimeout(20)
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server ended it: what should happen

    threads = [threading.Thread(target=flood) for _ in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    slowest, cut = 0.0, None
    while time.monotonic() - t0 < 30:
        t = time.monotonic()
        if exchange(port, CLOSE) != 200:
            slowest = float("inf")
        slowest = max(slowest, time.monotonic() - t)
        if not any(t.is_alive() for t in threads) and sockets(pid) <= idle:
            cut = time.monotonic() - t0
            break
        time.sleep(0.05)
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    print("pipe_hwm", vm_kib(pid, "VmHWM"))
    print("pipe_slowest", f"{slowest * 1000:.1f}")
    print("pipe_cut", f"{cut * 1000:.0f}" if cut is not None else "never")
    return 0


def cmd_refusals(pid, port, n):
    """N connections of each kind, one request each, read to the end, by 4 clients, in
    alternating blocks: an ordinary GET (Connection: close) and a refused one (400). Prints
    close_cpu and refuse_cpu (the server's CPU per request, µs, all threads) and close_rps,
    refuse_rps (connections a second, as fast as these clients go)."""
    pid, port, n = int(pid), int(port), int(n)
    block, clients = 250, 4
    totals = {"close": [0, 0.0, 0], "refuse": [0, 0.0, 0]}  # cpu ns, seconds, requests
    for _ in range(max(1, n // block)):
        for kind, request, status in (("close", CLOSE, 200), ("refuse", REFUSED, 400)):
            bad = []

            def client(count, request=request, status=status, bad=bad):
                for _ in range(count):
                    if exchange(port, request) != status:
                        bad.append(1)

            c0, t0 = sched_ns(pid), time.monotonic()
            threads = [threading.Thread(target=client, args=(block // clients,))
                       for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            totals[kind][0] += sched_ns(pid) - c0
            totals[kind][1] += time.monotonic() - t0
            totals[kind][2] += block - len(bad)
            if bad:
                print(f"{kind}_errors", len(bad))
    for kind, (cpu, secs, done) in totals.items():
        if done:
            print(f"{kind}_cpu", f"{cpu / 1000 / done:.1f}")
            print(f"{kind}_rps", f"{done / secs:.0f}")
    return 0
