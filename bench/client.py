"""HTTP/1.1 clients on 127.0.0.1: one GET, a keep-alive client, floods of connections."""

import resource
import select
import socket
import time

from bench.procfs import alive

REQ = b"GET /test HTTP/1.1\r\nHost: bench\r\n\r\n"


def raise_nofile():
    """Raises this process's soft RLIMIT_NOFILE to the hard limit; returns the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Client:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, port, timeout=2.0):
        self.port, self.timeout, self.sock, self.buf = port, timeout, None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def request(self, method, path):
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
                                  "Content-Length: 0\r\n\r\n".encode())
                return self._read()
            except OSError:
                self.close()
                if attempt == 2:
                    raise
        raise OSError("unreachable")

    def _read(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection" and "close" in value.lower():
                close = True
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.close()
        return code, body.decode("utf-8", "replace")


def get_once(port, path="/test", timeout=1.0):
    """Status of one GET on a new connection (Connection: close), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
            return int(data.split()[1]) if data.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


def _count_answers(socks, seconds, arrived, counts):
    """Waits up to `seconds` for one answer on each socket; returns how many of the answers
    `counts` (bytes → bool). `arrived(bytes)`: the answer is complete enough to judge."""
    pending = {s: b"" for s in socks}
    n = 0
    end = time.monotonic() + seconds
    while pending and time.monotonic() < end:
        ready, _, _ = select.select(list(pending), [], [], max(0.0, end - time.monotonic()))
        for s in ready:
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                del pending[s]
                continue
            pending[s] += chunk
            if arrived(pending[s]):
                n += bool(counts(pending[s]))
                del pending[s]
    return n


def open_and_count(port, n, seconds):
    """Opens n connections at once (giving up on opening after 10 s), one keep-alive GET on
    each; counts the answers that arrive within `seconds`. Returns (sockets, answered)."""
    socks = []
    give_up = time.monotonic() + 10
    for _ in range(n):
        if time.monotonic() > give_up:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), 2)
            s.sendall(REQ)
        except OSError:
            continue
        socks.append(s)
    answered = _count_answers(socks, seconds, lambda b: b"\r\n\r\n" in b, lambda b: True)
    return socks, answered


def hold(port, n, seconds):
    """Opens n connections, each sends one request; counts 200s within `seconds`. Returns
    (sockets, served, refused) once `seconds` have passed."""
    socks, refused = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), 1)
            s.sendall(REQ)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            refused += 1
    end = time.monotonic() + seconds
    served = _count_answers(socks, seconds, lambda b: b"\r\n" in b,
                            lambda b: b.startswith(b"HTTP/1.1 200"))
    time.sleep(max(0.0, end - time.monotonic()))
    return socks, served, refused


def cmd_free_port():
    """Prints a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_sleep(seconds):
    time.sleep(float(seconds))


def cmd_wait_200(port, timeout, pid=None):
    """0 once GET /test answers 200 within `timeout` seconds; 1 if not, or if PID ends."""
    end = time.monotonic() + float(timeout)
    while time.monotonic() < end:
        if get_once(int(port)) == 200:
            return 0
        if pid is not None and not alive(int(pid)):
            return 1
        time.sleep(0.01)
    return 1
