"""What /proc says of a server process: alive, RSS, threads, CPU time, context switches."""

import os


def alive(pid):
    """True while PID runs (a zombie or a dead process does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def status(pid):
    """VmRSS in KiB and the thread count, from /proc/PID/status."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def cpu_ms(pid):
    """utime+stime in ms (clock-tick resolution) of /proc/PID (or PID/task/TID)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def sched_ns(pid, main_only=False):
    """CPU time in ns from /proc/PID/task/*/schedstat (live threads; ns resolution)."""
    tasks = [str(pid)] if main_only else os.listdir(f"/proc/{pid}/task")
    total = 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def switches(pid):
    """Voluntary + involuntary context switches of all live threads (each one a wake-up)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total
