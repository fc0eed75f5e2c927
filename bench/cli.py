"""The commands of ``python3 -m bench`` and their dispatch.

Each command is a function ``cmd_NAME(*args)`` in one of the modules; its arguments are the
words after the command name, as strings, and it returns the exit status (None = 0). A
module is imported only when one of its commands runs, so that a watcher started beside a
wrk run loads no more than it needs.
"""

import importlib
import signal
import sys

# command → module that defines cmd_<command with "-" as "_">
COMMANDS = {
    "free-port": "client",
    "sleep": "client",
    "wait-200": "client",
    "start": "startup",
    "idle": "watch",
    "cpu": "watch",
    "threads": "watch",
    "keepalive": "watch",
    "starved": "watch",
    "switches": "watch",
    "wrk-parse": "wrk",
    "secret-init": "reload",
    "reload": "reload",
    "fdflood": "exhaust",
    "flood": "exhaust",
    "cause": "exhaust",
    "pipeflood": "floods",
    "refusals": "floods",
    "table": "report",
    "splice": "report",
    "nudger": "nudger",
    "splice-nudger": "nudger",
}

# No command may hang the bench: each one ends within this many seconds.
TIME_LIMIT_S = 240


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        name = argv[0] if argv else ""
        print(f"bench: unknown command {name!r} (commands: {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    signal.alarm(TIME_LIMIT_S)
    module = importlib.import_module(f"bench.{COMMANDS[argv[0]]}")
    function = getattr(module, "cmd_" + argv[0].replace("-", "_"))
    return function(*argv[1:]) or 0
