#!/usr/bin/env bash
# local.sh — the LOCAL mode of the scenario scripts: no cluster, the real binary is the
# "pod" on 127.0.0.1, a directory laid out and updated as the kubelet updates a Secret
# volume (kubelet-secret.sh) is its volume, a process stop and start is a restart, and
# `hello-path-rs probe` measures availability. Sourced after common.sh.
#
#   ensure_binary / print_local_settings        the binary (built when missing or outdated)
#   free_port / proc_alive / proc_gone          ports and processes
#   app_start / app_wait_ready / app_port /     the "pod": started in the background, waited
#   app_wait_exit / app_stop                    for, stopped (cleanup stops what is left)
#   http_get                                    one GET without curl
#   secret_dir_init / secret_dir_update         the kubelet-style Secret directory
#   probe_start_local / probe_wait_seconds /    the probe process, one line per second
#   probe_stop
#   local_start_crashing / local_start_fixed    the steps redeploy and restart share
#
# Environment read here (defaults in brackets):
#   HELLO_PATH_BIN   the binary [<repo>/target/release/hello-path-rs, built with
#                    `cargo build --release` when missing or outdated]
#   CARGO            cargo command [cargo]
#   WATCH_INTERVAL   the server's --watch-interval [unset: not passed, the binary's 1m: a
#                    safety re-read only, since the file watch (inotify) puts a kubelet-style
#                    update in use within milliseconds; a short one is a needless wake-up]
#   RETRY_INTERVAL   its --retry-interval [500ms: the start-up wait wakes on a change of the
#                    file anyway; this is how often the negative controls re-check, and
#                    they are watched for only a few seconds]
#   SHUTDOWN_DELAY   its --shutdown-delay [1s]
#   PROBE_EVERY      the probe's interval [20ms]
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

if [[ -n "${HELLO_PATH_LOCAL_LOADED:-}" ]]; then
  return 0
fi
HELLO_PATH_LOCAL_LOADED=1

# Settings for the local mode (short, so that a walkthrough takes seconds).
WATCH_INTERVAL=${WATCH_INTERVAL:-}
RETRY_INTERVAL=${RETRY_INTERVAL:-500ms}
PROBE_EVERY=${PROBE_EVERY:-20ms}
SHUTDOWN_DELAY=${SHUTDOWN_DELAY:-1s}

# WATCH_ARGS: the --watch-interval option when WATCH_INTERVAL is set, else nothing.
WATCH_ARGS=()
if [[ -n "${WATCH_INTERVAL}" ]]; then
  WATCH_ARGS=(--watch-interval "${WATCH_INTERVAL}")
fi

# The processes this script started (app_start, probe_start_local), for cleanup.
STARTED_PIDS=()

print_local_settings() {
  log "local mode: the binary ${HELLO_BIN} is the pod, on 127.0.0.1"
  local watch="no --watch-interval (the binary's 1m safety re-read: the file watch delivers a change)"
  [[ -z "${WATCH_INTERVAL}" ]] || watch="--watch-interval ${WATCH_INTERVAL}"
  log "settings: --retry-interval ${RETRY_INTERVAL}, ${watch}," \
    "--shutdown-delay ${SHUTDOWN_DELAY} (restart); probe --every ${PROBE_EVERY} on /test"
}

# Sets HELLO_BIN: $HELLO_PATH_BIN, else the release binary, built (or rebuilt when the
# sources are newer) with `cargo build --release`.
ensure_binary() {
  if [[ -n "${HELLO_PATH_BIN:-}" ]]; then
    [[ -x "${HELLO_PATH_BIN}" ]] || die "HELLO_PATH_BIN=${HELLO_PATH_BIN} is not an executable file"
    HELLO_BIN=${HELLO_PATH_BIN}
    return 0
  fi
  HELLO_BIN=${CARGO_TARGET_DIR:-${REPO_ROOT}/target}/release/hello-path-rs
  local stale=""
  if [[ -x "${HELLO_BIN}" ]]; then
    stale=$(find "${REPO_ROOT}/src" "${REPO_ROOT}/Cargo.toml" "${REPO_ROOT}/Cargo.lock" \
      -newer "${HELLO_BIN}" -print -quit 2>/dev/null || true)
    [[ -n "${stale}" ]] || return 0
  fi
  local cargo=${CARGO:-cargo}
  command -v "${cargo%% *}" >/dev/null 2>&1 ||
    die "${HELLO_BIN} is missing or outdated and cargo is not on PATH (or set HELLO_PATH_BIN)"
  log "building the binary (${stale:+${stale#"${REPO_ROOT}"/} is newer}${stale:-it is missing}): cargo build --release"
  # shellcheck disable=SC2086 # CARGO may hold a command with arguments, split on purpose
  (cd "${REPO_ROOT}" && ${cargo} build --release --quiet) || die "cargo build --release failed"
  [[ -x "${HELLO_BIN}" ]] || die "cargo build succeeded but ${HELLO_BIN} is missing"
}

# Prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local port i
  for ((i = 0; i < 50; i++)); do
    port=$((20000 + RANDOM % 40000))
    # A refused connection means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      printf '%s\n' "${port}"
      return 0
    fi
  done
  die "found no free TCP port on 127.0.0.1"
}

# True while PID runs (a zombie does not count).
proc_alive() {
  local state
  [[ -r "/proc/$1/stat" ]] || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "${state}" && "${state}" != Z && "${state}" != X ]]
}
proc_gone() { ! proc_alive "$1"; }

# app_start NAME PORT [VAR=VALUE...] -- ARG...
#   Starts the binary in the background on 127.0.0.1:PORT (0 = any), with MYSECRET removed
#   from its environment unless given as VAR=VALUE. Sets APP_PID and APP_LOG; APP_SEQ counts
#   the processes started so far (the local restarts: its growth since the first process).
APP_SEQ=0
app_start() {
  local name=$1 port=$2
  shift 2
  local -a envs=()
  while (($#)) && [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  (($#)) && shift
  APP_SEQ=$((APP_SEQ + 1))
  APP_LOG="${WORK_DIR}/${name}.${APP_SEQ}.log"
  env -u MYSECRET "${envs[@]}" "${HELLO_BIN}" --listen-addr "127.0.0.1:${port}" "$@" \
    >"${APP_LOG}" 2>&1 </dev/null &
  APP_PID=$!
  STARTED_PIDS+=("${APP_PID}")
  log "started ${name}: PID ${APP_PID}: ${envs[*]:+${envs[*]} }hello-path-rs --listen-addr 127.0.0.1:${port} $*"
}

_ready_or_gone() { grep -qF 'Web service accessible at' "$2" || proc_gone "$1"; }
# app_wait_ready PID LOG TIMEOUT_S — 0 once LOG says it serves; 1 if it exits or times out.
app_wait_ready() {
  local pid=$1 logf=$2 timeout=${3:-10}
  wait_for "PID ${pid} to log 'Web service accessible at'" "${timeout}" 0.02 \
    _ready_or_gone "${pid}" "${logf}" || return 1
  if grep -qF 'Web service accessible at' "${logf}"; then
    return 0
  fi
  warn "PID ${pid} exited before serving; its log ends with:"
  tail -n 5 "${logf}" | sed 's/^/    /' >&2
  return 1
}
# app_port LOG — the port of the `Web service accessible at ADDR` line.
app_port() {
  sed -n 's/.*Web service accessible at .*:\([0-9][0-9]*\)$/\1/p' "$1" | awk 'NR == 1'
}
# app_wait_exit PID TIMEOUT_S — waits (bounded) for PID to exit and sets APP_EXIT to its
# status; returns 1 if it still runs.
app_wait_exit() {
  local pid=$1 timeout=${2:-10}
  wait_for "PID ${pid} to exit" "${timeout}" 0.02 proc_gone "${pid}" || return 1
  APP_EXIT=0
  wait "${pid}" 2>/dev/null || APP_EXIT=$?
  return 0
}
# app_stop PID [TIMEOUT_S] — SIGTERM, bounded wait, SIGKILL as a last resort.
app_stop() {
  local pid=$1 timeout=${2:-10}
  proc_alive "${pid}" || {
    wait "${pid}" 2>/dev/null || true
    return 0
  }
  kill -TERM "${pid}" 2>/dev/null || true
  if ! app_wait_exit "${pid}" "${timeout}"; then
    warn "PID ${pid} ignored SIGTERM for ${timeout}s: SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  fi
}

# The clean-up of the local mode: SIGTERM to every process still running, a second to exit
# (SIGKILL after it), reaped. Silent, and never stopped by a failure (see cleanup).
_local_cleanup() {
  local pid i
  for pid in "${STARTED_PIDS[@]}"; do
    if proc_alive "${pid}"; then
      kill -TERM "${pid}" 2>/dev/null
    fi
  done
  for pid in "${STARTED_PIDS[@]}"; do
    for ((i = 0; i < 10; i++)); do
      proc_alive "${pid}" || break
      sleep 0.1
    done
    if proc_alive "${pid}"; then
      kill -KILL "${pid}" 2>/dev/null
    fi
    wait "${pid}" 2>/dev/null
  done
  STARTED_PIDS=()
  return 0
}
cleanup_add _local_cleanup

# http_get PORT PATH — prints the raw HTTP response from 127.0.0.1:PORT (no curl needed).
http_get() {
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    cat <&3' _ "$1" "$2" 2>/dev/null
}

# A Secret volume, as the kubelet's AtomicWriter lays it out and updates it
# (secret_dir_init, secret_dir_update).
# shellcheck source=scripts/lib/kubelet-secret.sh
source "${LIB_DIR}/kubelet-secret.sh"

# probe_start_local NAME PORT [PATH] — runs `hello-path-rs probe` against 127.0.0.1:PORT in
# the background (for at most 10 minutes; probe_stop ends it). Sets PROBE_PID, PROBE_OUT,
# PROBE_T0 (ms).
probe_start_local() {
  local name=$1 port=$2 path=${3:-/test}
  PROBE_OUT="${WORK_DIR}/probe-${name}.out"
  PROBE_T0=$(now_ms)
  "${HELLO_BIN}" probe "http://127.0.0.1:${port}${path}" --for 600s --every "${PROBE_EVERY}" \
    --timeout 1s >"${PROBE_OUT}" 2>&1 </dev/null &
  PROBE_PID=$!
  STARTED_PIDS+=("${PROBE_PID}")
  log "probe ${name}: PID ${PROBE_PID}, GET http://127.0.0.1:${port}${path} every ${PROBE_EVERY}"
}
_probe_has() { (($(probe_seconds "$1") >= $2)); }
# probe_wait_seconds FILE N — bounded wait until the probe has reported N more seconds.
probe_wait_seconds() {
  local file=$1 n=$2 have
  have=$(probe_seconds "${file}")
  wait_for "the probe to report ${n} more second(s)" $((n + 10)) 0.05 \
    _probe_has "${file}" $((have + n))
}
# probe_stop PID — ends a local probe (it has no signal handler: SIGTERM ends it at once;
# every finished second is already on its output).
probe_stop() { app_stop "$1" 3; }

# local_start_crashing NAME PORT SECRET [ARG...] — starts the process with MYSECRET=SECRET
#   (a bad value); returns 0 when it exits 1 with the FATAL line, as the article's pod does.
local_start_crashing() {
  local name=$1 port=$2 secret=$3
  shift 3
  app_start "${name}" "${port}" MYSECRET="${secret}" -- "$@"
  local pid=${APP_PID} logf=${APP_LOG}
  app_wait_exit "${pid}" 10 && [[ "${APP_EXIT}" == 1 ]] && grep -qF "${FATAL_LINE}" "${logf}" ||
    return 1
  log "   PID ${pid} exited 1: $(grep -F FATAL "${logf}" | sed 's/.*\] //')"
}

# local_start_fixed NAME PORT T1 T2 [ARG...] — the last step of redeploy and restart: starts
#   the process with the fixed Secret (MYSECRET=4321), waits until it serves, lets the probe
#   report 2 more seconds and stops it. Sets FIXED_PID, FIXED_BACK (true/false), T_READY
#   (ms) and, from the probe, FAILED, TOTAL, KINDS (probe_counts) and TIMELINE (T1, T2: the
#   two changes).
local_start_fixed() {
  local name=$1 port=$2 t1=$3 t2=$4
  shift 4
  app_start "${name}" "${port}" MYSECRET=4321 -- "$@"
  FIXED_PID=${APP_PID}
  FIXED_BACK=false
  if app_wait_ready "${FIXED_PID}" "${APP_LOG}" 10; then
    FIXED_BACK=true
  fi
  T_READY=$(now_ms)
  probe_wait_seconds "${PROBE_OUT}" 2 || true
  probe_stop "${PROBE_PID}"
  read -r FAILED TOTAL _ KINDS < <(probe_counts "${PROBE_OUT}")
  TIMELINE=$(probe_timeline "${PROBE_OUT}" "${PROBE_T0}" "${t1}" "${t2}")
}
