#!/usr/bin/env bash
# run.sh — how scripts/bench.sh runs things and keeps what it measured (sourced): the
# samples and the list of exact commands, the measuring helper (`python3 -m bench`, from
# bench/), and the servers it starts and stops. Needs bench.sh's ROOT, WORK, PIDS, log.
#
#   sample KEY SIDE VALUE / samples_from SIDE FILE   one figure / "KEY VALUE" lines
#   record_cmd TEXT                                   a command for the list under the table
#   fail TEXT                                         a measurement that failed (exit 1 later)
#   py COMMAND ARG...                                 the measuring helper
#   spawn / spawn_raw / stop / reap / forget / running   the servers
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

# sample KEY SIDE VALUE: one measured figure (SIDE: rs or peer).
sample() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"${WORK}/samples.tsv"; }

# record_cmd TEXT: a command as run, for the list printed under the table.
record_cmd() {
  local c=${1//"${ROOT}/"/}
  c=${c//"${WORK}"/\$TMP}
  # Ports are picked at run time: one line per command, whatever the port.
  c=$(sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' <<<"${c}")
  grep -qxF -- "${c}" "${WORK}/commands.txt" 2>/dev/null || printf '%s\n' "${c}" >>"${WORK}/commands.txt"
}

# samples_from SIDE FILE: "KEY VALUE" lines → samples.
samples_from() {
  local key val
  while read -r key val; do
    if [[ -n "${key}" ]]; then sample "${key}" "$1" "${val}"; fi
  done <"$2"
}

fail() {
  log "FAILED: $*"
  FAILURES=$((FAILURES + 1))
  printf '%s\n' "$*" >>"${WORK}/failures.txt"
}

# py COMMAND ARG... — the measuring helper, bench/ of the repository (`python3 -m bench`
# there), told the limits of the exhaustion rows for the labels of its table. Isolated (-I):
# the bench package is the repository's, whatever the current directory holds.
py() {
  BENCH_FD_LIMIT=${FD_LIMIT} BENCH_FD_CONNS=${FD_CONNS} BENCH_PIDS_LIMIT=${PIDS_LIMIT} \
    BENCH_PIDS_CONNS=${PIDS_CONNS} python3 -I -c 'import sys
sys.path.insert(0, sys.argv.pop(1))
from bench.cli import main
sys.exit(main(sys.argv[1:]))' "${ROOT}" "$@"
}

free_port() { py free-port; }

# The command of a side as a string (for the command list).
side_cmd() {
  if [[ "$1" == rs ]]; then echo "${OUR_CMD[*]}"; else echo "${PEER_CMD[*]}"; fi
}

# spawn SIDE LABEL PORT [EXTRA...]: start a server in the background (LAST_PID), output to
# the scratch dir, and wait (bounded) for its first 200 OK.
spawn() {
  local side=$1 label=$2 port=$3
  shift 3
  local -a cmd
  if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
  cmd+=("$@" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}")
  record_cmd "${cmd[*]}"
  "${cmd[@]}" >"${WORK}/${label}.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("${LAST_PID}")
  if ! py wait-200 "${port}" 10 "${LAST_PID}"; then
    log "${label} did not answer 200 within 10 s; its log:"
    tail -n 5 "${WORK}/${label}.log" >&2 || true
    return 1
  fi
}

# spawn_raw LABEL CMD...: start a command in the background (LAST_PID).
spawn_raw() {
  local label=$1
  shift
  record_cmd "$*"
  "$@" >"${WORK}/${label}.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("${LAST_PID}")
}

# forget PID: once reaped, a PID is not ours any more (cleanup must never signal a recycled one).
forget() {
  local i
  local -a keep=()
  for i in "${PIDS[@]}"; do
    [[ "${i}" == "$1" ]] || keep+=("${i}")
  done
  PIDS=("${keep[@]}")
}

# running PID: alive and not a zombie.
running() {
  kill -0 "$1" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# reap PID: the exit status of a child that has ended (REAPED).
REAPED=""
reap() {
  REAPED=0
  wait "$1" 2>/dev/null || REAPED=$?
  forget "$1"
}

# stop PID: SIGTERM, then SIGKILL after 3 s; reaps it.
stop() {
  local pid=$1 i
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    running "${pid}" || break
    py sleep 0.1
  done
  kill -KILL "${pid}" 2>/dev/null || true
  reap "${pid}"
}

sides() {
  echo rs
  if ((${#PEER_CMD[@]} > 0)); then echo peer; fi
}

now_us() { echo "${EPOCHREALTIME/./}"; }
