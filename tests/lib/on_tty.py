"""Runs a command as a terminal's foreground job, ends it with a signal, keeps what the
terminal showed.

    python3 tests/lib/on_tty.py SCREEN WAIT_FILE WAIT_TEXT SIGNAL -- COMMAND...

COMMAND runs in a new session whose controlling terminal is a pseudo-terminal (its stdin,
stdout and stderr too, unless COMMAND redirects them), as a shell runs a job typed at a
prompt. Once WAIT_FILE holds WAIT_TEXT (60 s at most), SIGNAL (INT, TERM, ...) goes to the
job's process group, as Ctrl-C does; everything the terminal shows until the job is gone
(60 s at most) is written to SCREEN. Exit status: the job's, 124 when a wait gave up.
"""

import os
import pty
import select
import signal
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    screen, wait_file, wait_text, sig = argv[0], argv[1], argv[2], argv[3]
    command = argv[5:]
    pid, fd = pty.fork()
    if pid == 0:  # the job: a session leader with the pty as its terminal
        os.execvp(command[0], command)
    shown = bytearray()

    def read_for(seconds: float) -> bool:
        """Reads the terminal for SECONDS; False once it is closed (the job is gone)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return False
                if not data:
                    return False
                shown.extend(data)
        return True

    rc = 124
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        read_for(0.2)
        try:
            with open(wait_file, encoding="utf-8", errors="replace") as f:
                if wait_text in f.read():
                    break
        except FileNotFoundError:
            pass
    else:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return rc
    os.killpg(pid, getattr(signal, "SIG" + sig))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        open_still = read_for(0.2)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            read_for(0.5)  # what is still buffered
            break
        if not open_still:
            time.sleep(0.1)
    with open(screen, "wb") as f:
        f.write(bytes(shown))
    if rc == 124:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
