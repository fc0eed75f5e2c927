"""The measuring helper of scripts/bench.sh, one module per concern.

Run from the repository root as ``python3 -m bench COMMAND ARG...`` (see ``bench.cli`` for
the commands). Standard library only. The pure parts — wrk's output (``wrk``), medians,
ranges and verdicts (``stats``), the formats (``fmt``), the rows of the table (``rows``)
and the report (``report``) — have unit tests in ``bench/tests``; the others talk to
sockets and /proc:

    cli       the commands and their dispatch (the entry point)
    procfs    what /proc says of a server: alive, RSS, threads, CPU, context switches
    client    HTTP clients on 127.0.0.1: one GET, a keep-alive client, floods of connections
    startup   start → first 200 OK
    watch     watchers beside a run: idle cost, keep-alive connections, starved
              connections, context switches per second
    reload    a kubelet-style Secret directory and the reload latency
    exhaust   descriptor and thread exhaustion, and why a server died
"""
