#!/usr/bin/env bash
# lib.sh — shared helpers of the scenario scripts (no-arg, arg, redeploy, restart, reload,
# rotate, walkthrough). Sourced, never run:   source "$(dirname "$0")/lib.sh"
#
# What it holds:
#   log / warn / die / usage_error / need       messages (errors to stderr) and exit codes
#   wait_for / observe_for                       bounded waits that say what they wait for
#   parse_args                                   the options every scenario script takes
#   ensure_binary / free_port / app_* / http_get the LOCAL mode: the real binary as the "pod"
#   secret_dir_init / secret_dir_update          a Secret volume laid out as the kubelet does
#   probe_* / probe_timeline                     availability, measured with `hello-path-rs probe`
#   kube / kube_t / kube_poll / kube_*           the --kube mode (every kubectl call goes
#                                                through `kube_cmd`: KUBECTL, --context)
#   result / control_row                         the machine-readable RESULT / CONTROL lines
#
# The RESULT line: each scenario script prints exactly one, as its last line on stdout
# (walkthrough.sh parses it). Fields are in this order, separated by one space; values never
# hold spaces, except note, which is last and runs to the end of the line:
#
#   RESULT scenario=NAME mode=local|kube failed=N total=N seconds_to_new=S restarts=N
#          pids=LIST verdict=ok|unexpected timeline=GLYPHS note=FREE TEXT
#
# A CONTROL line has the same fields and reports a negative control run beside the scenario
# (reload's env var and subPath rows); it comes before the RESULT line, whose verdict also
# covers it:   CONTROL scenario=NAME mode=... (as above)
#
#   failed          requests that failed after the service had first answered (requests
#                   before that are "not serving yet", not a disruption); a service that
#                   never answered reports all its requests as failed (failed = total)
#   total           requests counted (from the first answer on, or all if none)
#   seconds_to_new  seconds from the change until the new (or fixed) credential is in use,
#                   e.g. 0.31; "never" when it never was; "-" when there is no change
#   restarts        processes started anew because of the change: locally the processes
#                   started after the first one (app_start counts them in APP_SEQ; nothing
#                   restarts a crashed process here); in a cluster the new pods plus the
#                   container restarts seen (kube_restarts)
#   pids            PIDs (local) or pod names (kube) serving at the end, comma-separated,
#                   "-" when none
#   verdict         ok = the outcome the scenario expects; unexpected = anything else (the
#                   script then exits 1)
#   timeline        availability, one glyph per second (see TIMELINE_LEGEND); "|" marks a
#                   change; "-" when not measured
#
# Environment read here (defaults in brackets):
#   HELLO_PATH_BIN   the binary for the local mode [<repo>/target/release/hello-path-rs,
#                    built with `cargo build --release` when missing or outdated]
#   CARGO            cargo command [cargo]
#   KUBECTL          kubectl command, may hold spaces, e.g. "k3s kubectl" or oc [kubectl]
#   KUSTOMIZE        a kustomize binary to render k8s/overlays with (KUSTOMIZE build DIR)
#                    [unset: $KUBECTL kustomize, else a `kustomize` on PATH]
#   IMAGE            image for the pods and the probe pod [localhost/hello-path-rs:0.1.0]
#   KUBE_TIMEOUT     seconds a rollout may take [120]
#   SECRET_TIMEOUT   seconds to wait for the kubelet to deliver a changed Secret [180]
#   KEEP_NAMESPACE   1 = leave the scenario's namespace in place (debugging) [0]
#   KEEP_WORKDIR     1 = keep the scratch directory with the logs (debugging) [0]
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

if [[ -n "${HELLO_PATH_LIB_LOADED:-}" ]]; then
  return 0
fi
HELLO_PATH_LIB_LOADED=1

LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "${LIB_DIR}/.." && pwd)
SCRIPT_NAME=$(basename -- "$0" .sh)
readonly LIB_DIR REPO_ROOT SCRIPT_NAME

readonly DEFAULT_IMAGE=localhost/hello-path-rs:0.1.0
readonly APP_LABEL=app.kubernetes.io/name=hello-path-rs
readonly FATAL_LINE='FATAL: connection to remote service failed. Check mysecret parameter.'
readonly TIMELINE_LEGEND="█ every request ok · ▄ some failed · ▁ all failed · | the change"

# Options (parse_args).
MODE=local
KUBE_CONTEXT=""

# State, for cleanup.
WORK_DIR=""
STARTED_PIDS=()
CREATED_NAMESPACES=()

# ---------------------------------------------------------------------------------------
# Messages and exit codes.

log() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "${SCRIPT_NAME}" "$*"; }
warn() { printf '%s %s: warning: %s\n' "$(date +%H:%M:%S)" "${SCRIPT_NAME}" "$*" >&2; }
# die [CODE] MESSAGE — one line on stderr, exit CODE (1).
die() {
  local code=1
  if [[ $# -gt 1 && $1 =~ ^[0-9]+$ ]]; then
    code=$1
    shift
  fi
  printf '%s: error: %s\n' "${SCRIPT_NAME}" "$*" >&2
  exit "${code}"
}
usage_error() {
  printf '%s: error: %s\n' "${SCRIPT_NAME}" "$*" >&2
  printf "Try '%s --help'.\n" "$0" >&2
  exit 2
}
# need CMD... — every command must be on PATH.
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is needed but not found on PATH"
  done
}
# has TEXT / has_re REGEX — stdin holds TEXT / matches REGEX. Unlike `grep -q` they read
# all of stdin, so that the writer of a pipe never dies of SIGPIPE (with pipefail a
# `kubectl logs | grep -q` can fail although the text is there).
has() { grep -F -- "$1" >/dev/null; }
has_re() { grep -E -- "$1" >/dev/null; }

# Prints the header comment of the calling script (its --help).
print_help() {
  sed -n '2,/^set -o/{/^set -o/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "$0"
}

# ---------------------------------------------------------------------------------------
# Time and waits.

# Milliseconds since the epoch.
now_ms() {
  local t=${EPOCHREALTIME:-}
  if [[ -n "$t" ]]; then
    t=${t//[!0-9]/}
    printf '%s\n' "$((10#$t / 1000))"
  else
    printf '%s\n' "$(($(date +%s%N) / 1000000))"
  fi
}
# fmt_secs MS — 1234 -> 1.23
fmt_secs() { awk -v ms="$1" 'BEGIN { printf "%.2f\n", ms / 1000 }'; }

# fatal_later MESSAGE — for checks that run in a subshell (a pipeline, $(...)), where die
# would end only the subshell: the next wait_for / observe_for round dies with MESSAGE.
fatal_later() {
  [[ -n "${WORK_DIR}" ]] || die "$*"
  printf '%s\n' "$*" >"${WORK_DIR}/fatal"
}
_check_fatal() {
  if [[ -n "${WORK_DIR}" && -s "${WORK_DIR}/fatal" ]]; then
    die "$(cat "${WORK_DIR}/fatal")"
  fi
}

# wait_for WHAT TIMEOUT_S POLL_S COMMAND [ARG...]
#   Runs COMMAND every POLL_S seconds until it succeeds. Unless it holds at once, says what
#   it waits for; every 5 s from the start, what it waits for and the elapsed seconds (a
#   ticker in the background, so that a slow round of COMMAND, the first one included,
#   cannot hold that line back); returns 1 with one warning after TIMEOUT_S.
#   Sets WAITED_MS. Never waits unbounded as long as COMMAND is bounded: the kubectl calls
#   of a poll go through kube_poll / kube_t.
wait_for() {
  local what=$1 timeout=$2 poll=$3
  shift 3
  local start now
  start=$(now_ms)
  _ticker_start "${start}" "  still waiting for ${what}: " "s elapsed"
  if "$@"; then
    _ticker_stop
    WAITED_MS=0
    return 0
  fi
  _check_fatal
  log "waiting for ${what} (at most ${timeout}s)"
  while :; do
    sleep "${poll}"
    if "$@"; then
      WAITED_MS=$(($(now_ms) - start))
      _ticker_stop
      log "  done after $(fmt_secs "${WAITED_MS}")s: ${what}"
      return 0
    fi
    _check_fatal
    now=$(now_ms)
    if ((now - start >= timeout * 1000)); then
      WAITED_MS=$((now - start))
      _ticker_stop
      warn "gave up after ${timeout}s waiting for ${what}"
      return 1
    fi
  done
}

# observe_for WHAT SECONDS POLL_S COMMAND [ARG...]
#   The opposite: watches for SECONDS that COMMAND never succeeds (a negative control),
#   saying every 5 s how long it has watched. Returns 0 when it never did, 1 (at once) when
#   it did.
observe_for() {
  local what=$1 seconds=$2 poll=$3
  shift 3
  local start now
  start=$(now_ms)
  log "watching ${seconds}s that ${what} does NOT happen"
  _ticker_start "${start}" "  still not: ${what} (" "s of ${seconds}s)"
  while :; do
    if "$@"; then
      _ticker_stop
      warn "${what} happened after $(fmt_secs $(($(now_ms) - start)))s"
      return 1
    fi
    _check_fatal
    now=$(now_ms)
    if ((now - start >= seconds * 1000)); then
      _ticker_stop
      log "  for ${seconds}s it did not: ${what}"
      return 0
    fi
    sleep "${poll}"
  done
}

# _ticker_start START_MS BEFORE AFTER — a background job that logs BEFORE<seconds since
#   START_MS>AFTER 5, 10, 15 ... s after START_MS (0.1 s early, so that no gap between two
#   lines exceeds 5 s) until _ticker_stop, or until the script is gone. Its sleep writes
#   nowhere, so that a killed ticker leaves nothing holding the script's stdout open.
WAIT_TICKER=""
_ticker_start() {
  _ticker_stop
  local start=$1 before=$2 after=$3
  (
    trap - EXIT INT TERM
    local next left elapsed
    next=$((($(now_ms) - start + 100) / 5000 + 1))
    # $$ is the script itself, also in this subshell.
    while kill -0 "$$" 2>/dev/null; do
      left=$((start + next * 5000 - 100 - $(now_ms)))
      if ((left > 0)); then
        sleep "$(fmt_secs "${left}")" </dev/null >/dev/null 2>&1 || exit 0
      fi
      kill -0 "$$" 2>/dev/null || exit 0
      elapsed=$(($(now_ms) - start))
      log "${before}$(((elapsed + 500) / 1000))${after}"
      # The next multiple of 5 s still ahead (never the same one twice).
      next=$((next + 1 > (elapsed + 100) / 5000 + 1 ? next + 1 : (elapsed + 100) / 5000 + 1))
    done
  ) </dev/null &
  WAIT_TICKER=$!
}
_ticker_stop() {
  [[ -n "${WAIT_TICKER}" ]] || return 0
  kill -TERM "${WAIT_TICKER}" 2>/dev/null || true
  wait "${WAIT_TICKER}" 2>/dev/null || true
  WAIT_TICKER=""
}

# ---------------------------------------------------------------------------------------
# Options every scenario script takes. A script may define `extra_arg ARG...`, which handles
# its own options: it sets EXTRA_SHIFT to the number of words used and returns 0, or
# returns 1 for an unknown option.

parse_args() {
  local saw_context=false
  while (($#)); do
    case "$1" in
      -h | --help)
        print_help
        exit 0
        ;;
      --local) MODE=local ;;
      --kube) MODE=kube ;;
      --context)
        (($# >= 2)) || usage_error "--context needs a value"
        KUBE_CONTEXT=$2
        saw_context=true
        shift
        ;;
      --context=*)
        KUBE_CONTEXT=${1#--context=}
        saw_context=true
        ;;
      *)
        EXTRA_SHIFT=0
        if declare -F extra_arg >/dev/null && extra_arg "$@"; then
          shift "${EXTRA_SHIFT}"
          continue
        fi
        case "$1" in
          -*) usage_error "unknown option $1" ;;
          *) usage_error "unexpected argument '$1'" ;;
        esac
        ;;
    esac
    shift
  done
  if [[ "${saw_context}" == true && "${MODE}" != kube ]]; then
    usage_error "--context is for the cluster mode: add --kube"
  fi
  if [[ "${saw_context}" == true && -z "${KUBE_CONTEXT}" ]]; then
    usage_error "--context needs a non-empty value"
  fi
}

# Creates the scratch directory and installs the EXIT trap. Scripts that need their own
# cleanup define `scenario_cleanup`, called first.
setup_workdir() {
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-${SCRIPT_NAME}.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Idempotent: stops only the processes this script started, deletes only the namespaces it
# created (without waiting for them), removes only its scratch directory. Its messages go to
# stderr, so that the RESULT line stays the last line on stdout.
cleanup() {
  local rc=$? pid ns
  trap - EXIT
  _ticker_stop
  if declare -F scenario_cleanup >/dev/null; then
    scenario_cleanup || true
  fi
  for pid in "${STARTED_PIDS[@]}"; do
    if proc_alive "${pid}"; then
      kill -TERM "${pid}" 2>/dev/null || true
    fi
  done
  for pid in "${STARTED_PIDS[@]}"; do
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
      proc_alive "${pid}" || break
      sleep 0.1
    done
    if proc_alive "${pid}"; then
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    wait "${pid}" 2>/dev/null || true
  done
  STARTED_PIDS=()
  for ns in "${CREATED_NAMESPACES[@]}"; do
    if [[ "${KEEP_NAMESPACE:-0}" == 1 ]]; then
      log "KEEP_NAMESPACE=1: leaving namespace ${ns} (delete it with: kubectl delete namespace ${ns})" >&2
    else
      log "deleting namespace ${ns} (in the background: --wait=false)" >&2
      kube_t 10 delete namespace "${ns}" --wait=false --ignore-not-found >/dev/null 2>&1 ||
        warn "could not delete namespace ${ns}: delete it by hand"
    fi
  done
  CREATED_NAMESPACES=()
  if [[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]]; then
    if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then
      log "KEEP_WORKDIR=1: logs kept in ${WORK_DIR}" >&2
    else
      rm -rf -- "${WORK_DIR}"
    fi
  fi
  exit "${rc}"
}

# ---------------------------------------------------------------------------------------
# The result line and the availability timeline.

# result SCENARIO FAILED TOTAL SECONDS RESTARTS PIDS VERDICT TIMELINE NOTE...
#   The scenario's RESULT line: call it once, last.
result() { _result_line RESULT "$@"; }
# control_row ROW FAILED TOTAL SECONDS RESTARTS PIDS VERDICT TIMELINE NOTE...
#   A negative control's CONTROL line (same fields), printed before the RESULT line.
control_row() { _result_line CONTROL "$@"; }
_result_line() {
  local kind=$1 scenario=$2 failed=$3 total=$4 seconds=$5 restarts=$6 pids=$7 verdict=$8 timeline=$9
  shift 9
  local note="$*" v
  for v in scenario failed total seconds restarts pids verdict timeline; do
    printf -v "$v" '%s' "${!v// /_}"
    [[ -n "${!v}" ]] || printf -v "$v" '%s' -
  done
  printf '%s scenario=%s mode=%s failed=%s total=%s seconds_to_new=%s restarts=%s pids=%s verdict=%s timeline=%s note=%s\n' \
    "${kind}" "${scenario}" "${MODE}" "${failed}" "${total}" "${seconds}" "${restarts}" "${pids}" \
    "${verdict}" "${timeline}" "${note}"
}

# probe_counts FILE — prints "FAILED TOTAL SERVED" from the per-second lines of a probe
# (`probe second=N ok=A failed=B`): requests before the first second with an answer do not
# count (the service was not serving yet); SERVED is 1 when anything ever answered. When
# nothing ever answered, FAILED = TOTAL = all requests.
probe_counts() {
  awk '
    /^probe second=/ {
      ok = 0; bad = 0
      for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "ok") ok = kv[2] + 0
        if (kv[1] == "failed") bad = kv[2] + 0
      }
      all += ok + bad; allbad += bad
      if (ok > 0) served = 1
      if (served) { total += ok + bad; if (!firstsec) firstsec = 1; else failed += bad }
    }
    END {
      if (served) printf "%d %d 1\n", failed, total
      else printf "%d %d 0\n", allbad, all
    }' "$1"
}

# probe_timeline FILE START_MS [CHANGE_MS...] — one glyph per second of the probe, with a
# "|" before the second in which each change happened.
probe_timeline() {
  local file=$1 start=$2
  shift 2
  local marks="" c
  for c in "$@"; do
    marks+="$(((c - start) / 1000)) "
  done
  awk -v marks="${marks}" '
    BEGIN { sec = 0; n = split(marks, m, " "); for (i = 1; i <= n; i++) at[m[i] + 0]++ }
    /^probe second=/ {
      ok = 0; bad = 0
      for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "ok") ok = kv[2] + 0
        if (kv[1] == "failed") bad = kv[2] + 0
      }
      g = (ok > 0 && bad == 0) ? "█" : (ok > 0 ? "▄" : (bad > 0 ? "▁" : " "))
      while (at[sec] > 0) { out = out "|"; at[sec]-- }
      out = out g; sec++
    }
    END {
      for (k in at) if (k + 0 >= sec) for (j = 0; j < at[k]; j++) out = out "|"
      print (out == "" ? "-" : out)
    }' "${file}"
}

# ---------------------------------------------------------------------------------------
# LOCAL mode: the real binary as the "pod".

# Settings for the local mode (short, so that a walkthrough takes seconds).
WATCH_INTERVAL=${WATCH_INTERVAL:-250ms}
RETRY_INTERVAL=${RETRY_INTERVAL:-500ms}
PROBE_EVERY=${PROBE_EVERY:-20ms}
SHUTDOWN_DELAY=${SHUTDOWN_DELAY:-1s}

print_local_settings() {
  log "local mode: the binary ${HELLO_BIN} is the pod, on 127.0.0.1"
  log "settings: --watch-interval ${WATCH_INTERVAL} --retry-interval ${RETRY_INTERVAL}" \
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

# http_get PORT PATH — prints the raw HTTP response from 127.0.0.1:PORT (no curl needed).
http_get() {
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    cat <&3' _ "$1" "$2" 2>/dev/null
}

# A Secret volume, as the kubelet's AtomicWriter lays it out and updates it
# (secret_dir_init, secret_dir_update).
# shellcheck source=scripts/kubelet-secret.sh
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
# probe_seconds FILE — how many whole seconds the probe has reported.
probe_seconds() { grep -c '^probe second=' "$1" 2>/dev/null || true; }
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
#   (ms) and, from the probe, FAILED, TOTAL and TIMELINE (T1, T2: the two changes).
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
  read -r FAILED TOTAL _ < <(probe_counts "${PROBE_OUT}")
  TIMELINE=$(probe_timeline "${PROBE_OUT}" "${PROBE_T0}" "${t1}" "${t2}")
}

# scenario_main ARG... — the story every scenario script shares: options, a work directory,
# then run_local (the binary built first) or run_kube (after the cluster check), both
# defined by the script.
scenario_main() {
  parse_args "$@"
  setup_workdir
  if [[ "${MODE}" == local ]]; then
    ensure_binary
    print_local_settings
    run_local
  else
    kube_preflight
    run_kube
  fi
}

# ---------------------------------------------------------------------------------------
# KUBE mode. Every kubectl call goes through `kube_cmd` (by way of kube, kube_t, kube_poll).

# kube_cmd [GLOBAL_FLAG...] — sets KUBE_CMD to $KUBECTL (default kubectl; may hold spaces,
# e.g. "k3s kubectl"), the flags given, then --context NAME when KUBE_CONTEXT is set. The
# one place that builds a kubectl command line: kube, kube_t and kube_poll use it, and so
# do scripts/load-image.sh and scripts/render-manifests.sh.
kube_cmd() {
  read -r -a KUBE_CMD <<<"${KUBECTL:-kubectl}"
  ((${#KUBE_CMD[@]})) || KUBE_CMD=(kubectl)
  KUBE_CMD+=("$@")
  if [[ -n "${KUBE_CONTEXT}" ]]; then
    KUBE_CMD+=(--context "${KUBE_CONTEXT}")
  fi
}
# kube ARG... — every kubectl call of the scripts goes through here (or kube_t, kube_poll).
kube() {
  local -a KUBE_CMD
  kube_cmd
  "${KUBE_CMD[@]}" "$@"
}

# kube_t SECONDS ARG... — kube, bounded twice: each API request by kubectl's own
# --request-timeout=SECONDS (a global flag of every kubectl, 1.15 included), the whole
# command (a credential plugin, a DNS lookup, a watch, several requests) by timeout(1)
# 5 s later, when there is one. For every call inside a wait loop, so that a hung request
# cannot stall the loop nor outlast its timeout.
kube_t() {
  local limit=$1
  shift
  local -a KUBE_CMD
  kube_cmd "--request-timeout=${limit}s"
  if command -v timeout >/dev/null 2>&1; then
    timeout -k 2 $((limit + 5)) "${KUBE_CMD[@]}" "$@"
  else
    "${KUBE_CMD[@]}" "$@"
  fi
}
# kube_poll ARG... — kube_t with the bound of one poll: 3 s per request.
kube_poll() { kube_t 3 "$@"; }

KUBE_TIMEOUT=${KUBE_TIMEOUT:-120}
SECRET_TIMEOUT=${SECRET_TIMEOUT:-180}
KUBE_SERVER_MINOR=0
APPLY_FLAGS=()

# kube_preflight — one clear line and exit 2 (within seconds) when no cluster answers.
kube_preflight() {
  local -a cmd
  read -r -a cmd <<<"${KUBECTL:-kubectl}"
  command -v "${cmd[0]:-kubectl}" >/dev/null 2>&1 ||
    die 2 "no cluster: '${cmd[0]:-kubectl}' (KUBECTL) is not on PATH"
  local out err
  local -a KUBE_CMD
  kube_cmd
  err="${WORK_DIR}/preflight.err"
  if command -v timeout >/dev/null 2>&1; then
    # --request-timeout bounds the request; timeout(1) bounds everything else (a kubectl
    # exec credential plugin, a DNS lookup of the server name).
    out=$(timeout 15 "${KUBE_CMD[@]}" get --raw /version --request-timeout=5s 2>"${err}") || out=""
  else
    out=$("${KUBE_CMD[@]}" get --raw /version --request-timeout=5s 2>"${err}") || out=""
  fi
  if [[ "${out}" != *gitVersion* ]]; then
    local why
    why=$(grep -v '^[[:space:]]*$' "${err}" 2>/dev/null | tail -n 1 | cut -c1-200)
    die 2 "no cluster reachable with '${KUBECTL:-kubectl}${KUBE_CONTEXT:+ --context ${KUBE_CONTEXT}}' (get --raw /version): ${why:-no answer within 5s}"
  fi
  local version minor
  version=$(printf '%s' "${out}" | sed -n 's/.*"gitVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
  minor=$(printf '%s' "${out}" | sed -n 's/.*"minor"[[:space:]]*:[[:space:]]*"\([0-9]*\).*/\1/p')
  KUBE_SERVER_MINOR=${minor:-0}
  log "cluster: Kubernetes ${version:-?}${KUBE_CONTEXT:+ (context ${KUBE_CONTEXT})}; kubectl: ${KUBECTL:-kubectl}"
  if ((KUBE_SERVER_MINOR > 0 && KUBE_SERVER_MINOR < 19)); then
    # The manifests carry securityContext.seccompProfile (1.19+) next to the annotation
    # older clusters read; kubectl's schema check would refuse the unknown field, the API
    # server of those versions drops it.
    APPLY_FLAGS=(--validate=false)
    log "Kubernetes 1.${KUBE_SERVER_MINOR} < 1.19: applying with --validate=false (seccompProfile is unknown there; the annotation applies)"
  fi
}

# kube_render OVERLAY NS OUT_DIR — renders k8s/overlays/OVERLAY for namespace NS into
#   OUT_DIR/secret.yaml (the Secret), OUT_DIR/app.yaml (everything else but the Namespace)
#   and OUT_DIR/ns-labels (the Namespace's labels, k=v per line). The objects lose their
#   `namespace:` (they are applied with -n NS) and take $IMAGE when set. When kustomize
#   cannot render the overlay (the one in kubectl before 1.24 is too old for it), the copy
#   pre-rendered by scripts/render-manifests.sh, k8s/rendered/OVERLAY.yaml, is used.
kube_render() {
  local overlay=$1 ns=$2 out=$3
  local src="${REPO_ROOT}/k8s/overlays/${overlay}" pre="${REPO_ROOT}/k8s/rendered/${overlay}.yaml"
  [[ -f "${src}/kustomization.yaml" ]] || die "no overlay k8s/overlays/${overlay}"
  mkdir -p "${out}"
  if ! kube_kustomize "${src}" >"${out}/overlay.yaml" 2>"${out}/kustomize.err"; then
    [[ -f "${pre}" ]] ||
      die "cannot render k8s/overlays/${overlay}: $(tail -n 1 "${out}/kustomize.err") (and no ${pre})"
    log "kustomize cannot render k8s/overlays/${overlay} ($(tail -n 1 "${out}/kustomize.err" | cut -c1-80)); using k8s/rendered/${overlay}.yaml"
    cp "${pre}" "${out}/overlay.yaml"
  fi
  # Split: the Namespace's labels (this run creates its own namespace), the Secret, the rest.
  # Top-level `metadata.namespace` lines go (the objects are applied with -n NS).
  awk -v nsfile="${out}/ns-labels" -v secret="${out}/secret.yaml" -v app="${out}/app.yaml" \
    -v image="${IMAGE:-}" -v default_image="${DEFAULT_IMAGE}" '
    function flush() {
      if (doc != "") {
        if (doc ~ /(^|\n)kind: Namespace(\n|$)/) {
          n = split(doc, lines, "\n"); inl = 0
          for (i = 1; i <= n; i++) {
            if (lines[i] ~ /^  labels:/) { inl = 1; continue }
            if (inl && lines[i] ~ /^    [^ ]/) {
              l = lines[i]; sub(/^    /, "", l); sub(/: /, "=", l); gsub(/"/, "", l)
              print l > nsfile
            } else if (inl) inl = 0
          }
        } else if (doc ~ /(^|\n)kind: Secret(\n|$)/) printf "---\n%s\n", doc > secret
        else printf "---\n%s\n", doc > app
      }
      doc = ""; inmeta = 0
    }
    /^---/ { flush(); next }
    /^#/ { next }
    /^metadata:/ { inmeta = 1 }
    /^[^ ]/ && !/^metadata:/ { inmeta = 0 }
    inmeta && /^  namespace: / { next }
    image != "" { gsub("image: " default_image "$", "image: " image) }
    { doc = (doc == "" ? $0 : doc "\n" $0) }
    END { flush() }' "${out}/overlay.yaml"
  touch "${out}/ns-labels" "${out}/secret.yaml" "${out}/app.yaml"
}

# kube_kustomize DIR — renders a kustomization: with $KUSTOMIZE when set, else with
# `$KUBECTL kustomize` (through `kube`); when that fails (kubectl < 1.22 embeds a kustomize
# too old for the overlays' `labels:` and `patches:`, e.g. `k3s kubectl` 1.15), with a
# standalone `kustomize` found on PATH. Rendering needs no cluster. (No other kubectl is
# tried behind KUBECTL's back: kube_render falls back to k8s/rendered/ instead, and
# KUSTOMIZE names a newer kustomize.)
kube_kustomize() {
  if [[ -n "${KUSTOMIZE:-}" ]]; then
    local -a k
    read -r -a k <<<"${KUSTOMIZE}"
    "${k[@]}" build "$1"
    return
  fi
  local out="${WORK_DIR}/kustomize.out" first="${WORK_DIR}/kustomize-first.err"
  if kube kustomize "$1" >"${out}" 2>"${first}" ||
    { command -v kustomize >/dev/null 2>&1 && kustomize build "$1" >"${out}" 2>/dev/null; }; then
    cat "${out}"
    return 0
  fi
  cat "${first}" >&2
  return 1
}

# kube_namespace_name NAME — sets NS to a fresh hello-path-NAME-XXXXX (not created yet).
kube_namespace_name() {
  local suffix
  suffix=$(LC_ALL=C tr -dc 'a-z0-9' </dev/urandom 2>/dev/null | head -c 5 || true)
  [[ -n "${suffix}" ]] || suffix=$((RANDOM % 100000))
  NS="hello-path-$1-${suffix}"
}
# kube_create_namespace — creates NS; cleanup deletes it.
kube_create_namespace() {
  kube create namespace "${NS}" >/dev/null || die "cannot create namespace ${NS}"
  CREATED_NAMESPACES+=("${NS}")
  log "namespace ${NS} created (deleted again on exit)"
}

# kube_deploy OVERLAY START_VALUE [NAME] — in a new namespace hello-path-NAME-XXXXX (NAME
#   defaults to the scenario): renders the overlay, applies its Secret with
#   mysecret=START_VALUE (empty: as the overlay has it), then the rest. Sets NS, RENDER_DIR.
kube_deploy() {
  local overlay=$1 value=$2
  kube_namespace_name "${3:-${SCRIPT_NAME}}"
  RENDER_DIR="${WORK_DIR}/render-${NS}"
  kube_render "${overlay}" "${NS}" "${RENDER_DIR}"
  kube_create_namespace
  local -a labels=()
  mapfile -t labels <"${RENDER_DIR}/ns-labels"
  if ((${#labels[@]})); then
    kube label namespace "${NS}" "${labels[@]}" --overwrite >/dev/null ||
      warn "cannot label namespace ${NS} with ${labels[*]}"
  fi
  if [[ -s "${RENDER_DIR}/secret.yaml" ]]; then
    kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${RENDER_DIR}/secret.yaml" >/dev/null ||
      die "kubectl apply of the Secret of k8s/overlays/${overlay} failed"
    if [[ -n "${value}" ]]; then
      kube_secret_set "${value}"
    fi
  fi
  kube_apply_app
  log "deployed k8s/overlays/${overlay} into ${NS}"
}
kube_apply_app() {
  kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${RENDER_DIR}/app.yaml" >/dev/null ||
    die "kubectl apply -f ${RENDER_DIR}/app.yaml failed"
}

# kube_secret_set VALUE — sets key mysecret of Secret hello-path-secret in NS (a merge patch
# with stringData: works on every Kubernetes version, no --dry-run needed).
kube_secret_set() {
  kube -n "${NS}" patch secret hello-path-secret --type merge \
    -p "{\"stringData\":{\"mysecret\":\"$1\"}}" >/dev/null ||
    die "cannot patch secret hello-path-secret in ${NS}"
  log "Secret ${NS}/hello-path-secret: mysecret set to a new value ($(printf '%s' "$1" | sed 's/./*/g'))"
}

# kube_pods — the app's pods in NS that are not being deleted, one per line:
#   NAME UID READY RESTARTS WAITING_REASON     (READY True/False, "-" for no reason)
kube_pods() {
  kube_poll -n "${NS}" get pods -l "${APP_LABEL}" -o \
    jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.uid}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.containerStatuses[0].restartCount}{"|"}{.status.containerStatuses[0].state.waiting.reason}{"|"}{.metadata.deletionTimestamp}{"\n"}{end}' \
    2>/dev/null | awk -F'|' 'NF >= 5 && $6 == "" {
      printf "%s %s %s %s %s\n", $1, $2, ($3 == "" ? "False" : $3), ($4 == "" ? 0 : $4), ($5 == "" ? "-" : $5) }'
}

# kube_snapshot — prints kube_pods and records them (for the restarts count); on image
# errors, which no wait would outlast, the next wait round stops the script.
kube_snapshot() {
  local pods
  pods=$(kube_pods) || true
  printf '%s\n' "${pods}" >>"${WORK_DIR}/pods-${NS}.seen"
  if grep -qE 'ErrImagePull|ImagePullBackOff|ErrImageNeverPull|InvalidImageName' <<<"${pods}"; then
    fatal_later "the pods in ${NS} cannot get their image ${IMAGE:-${DEFAULT_IMAGE}}: $(awk '$5 ~ /Image/ { print $5; exit }' <<<"${pods}") (import it into the cluster first: scripts/build-image.sh, then e.g. k3s ctr images import)"
  fi
  if grep -qE 'CreateContainerConfigError|CreateContainerError' <<<"${pods}"; then
    warn "pods in ${NS}: $(awk '$5 ~ /Create/ { print $1 ": " $5 }' <<<"${pods}" | head -n 1)"
  fi
  printf '%s\n' "${pods}"
}
# kube_uids — UIDs of the app's pods now (sorted, comma-separated).
kube_uids() { kube_snapshot | awk 'NF { print $2 }' | sort | paste -sd, -; }
kube_names() { kube_snapshot | awk 'NF { print $1 }' | sort | paste -sd, -; }
# kube_restarts BASELINE_UIDS — pods seen that are not in BASELINE, plus all container
# restarts seen (the highest count per pod).
kube_restarts() {
  local base=",$1,"
  awk -v base="${base}" 'NF >= 4 { if ($4 + 0 > max[$2]) max[$2] = $4 + 0; seen[$2] = 1 }
    END { n = 0; for (u in seen) { if (index(base, "," u ",") == 0) n++; n += max[u] } print n }' \
    "${WORK_DIR}/pods-${NS}.seen"
}
# kube_all_ready N — N app pods exist and every one is Ready.
kube_all_ready() {
  local want=$1 pods
  pods=$(kube_snapshot)
  awk -v want="${want}" 'NF { n++; if ($3 == "True") r++ } END { exit !(n == want && r == want) }' <<<"${pods}"
}
# kube_any_ready — at least one app pod is Ready.
kube_any_ready() { kube_snapshot | awk '$3 == "True" { f = 1 } END { exit !f }'; }
# kube_crashed — an app pod has crashed at least once (restarts or CrashLoopBackOff/Error).
kube_crashed() { kube_snapshot | awk '$4 + 0 >= 1 || $5 == "CrashLoopBackOff" { f = 1 } END { exit !f }'; }
# kube_replicas — spec.replicas of the Deployment.
kube_replicas() { kube -n "${NS}" get deployment hello-path -o jsonpath='{.spec.replicas}'; }

# kube_rollout_wait TIMEOUT_S — `kubectl rollout status --timeout`, in 3 s slices so that
# the elapsed time is printed while it waits.
_rollout_done() {
  kube_snapshot >/dev/null
  kube_t 5 -n "${NS}" rollout status deployment/hello-path --timeout=3s >/dev/null 2>&1
}
kube_rollout_wait() {
  wait_for "deployment/hello-path in ${NS} to finish its rollout" "$1" 0.2 _rollout_done
}

# kube_pod_logs POD — the pod's log, the previous container's first when it restarted.
kube_pod_logs() {
  kube -n "${NS}" logs "$1" --previous 2>/dev/null || kube -n "${NS}" logs "$1" 2>/dev/null || true
}

# kube_probe_start NAME PATH — a Pod from the same image that runs `hello-path-rs probe`
#   against the Service's ClusterIP (no DNS needed). Sets PROBE_POD and PROBE_T0 (ms, when
#   its first second was reported, minus 1 s).
kube_probe_start() {
  local name=$1 path=${2:-/test} ip
  ip=$(kube -n "${NS}" get svc hello-path -o jsonpath='{.spec.clusterIP}') ||
    die "cannot read the ClusterIP of service hello-path in ${NS}"
  [[ -n "${ip}" ]] || die "service hello-path in ${NS} has no ClusterIP"
  PROBE_POD="probe-${name}"
  local image=${IMAGE:-${DEFAULT_IMAGE}}
  cat >"${WORK_DIR}/${PROBE_POD}-${NS}.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${PROBE_POD}
  labels:
    app.kubernetes.io/name: hello-path-probe
    app.kubernetes.io/part-of: hello-path-rs
  annotations:
    seccomp.security.alpha.kubernetes.io/pod: runtime/default
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: probe
      image: ${image}
      imagePullPolicy: IfNotPresent
      args: ["probe", "http://${ip}:80${path}", "--for", "900s", "--every", "50ms", "--timeout", "1s"]
      resources:
        requests: {cpu: 10m, memory: 8Mi}
        limits: {memory: 32Mi}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
EOF
  kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${WORK_DIR}/${PROBE_POD}-${NS}.yaml" >/dev/null ||
    die "cannot create the probe pod ${PROBE_POD} in ${NS}"
  log "probe pod ${NS}/${PROBE_POD}: GET http://${ip}:80${path} (ClusterIP) every 50ms"
  wait_for "probe pod ${PROBE_POD} to report its first second" 120 0.5 _probe_pod_started ||
    die "the probe pod ${NS}/${PROBE_POD} did not start: $(kube -n "${NS}" get pod "${PROBE_POD}" -o jsonpath='{.status.containerStatuses[0].state}' 2>/dev/null)"
  PROBE_T0=$(($(now_ms) - 1000))
}
_probe_pod_started() {
  local st
  st=$(kube_poll -n "${NS}" get pod "${PROBE_POD}" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
  case "${st}" in
    ErrImagePull | ImagePullBackOff | ErrImageNeverPull | InvalidImageName)
      fatal_later "probe pod ${NS}/${PROBE_POD}: ${st}: image ${IMAGE:-${DEFAULT_IMAGE}} is not in the cluster (import it first)"
      ;;
  esac
  kube_poll -n "${NS}" logs "${PROBE_POD}" 2>/dev/null | has_re '^probe second='
}
# kube_probe_collect FILE — the probe pod's per-second lines so far.
kube_probe_collect() {
  kube_poll -n "${NS}" logs "${PROBE_POD}" >"$1" 2>/dev/null ||
    warn "cannot read the log of probe pod ${NS}/${PROBE_POD}"
}
# kube_probe_wait_seconds N — bounded wait until the probe pod has reported N more seconds.
kube_probe_wait_seconds() {
  local n=$1 have f="${WORK_DIR}/probe-wait.out"
  kube_probe_collect "${f}"
  have=$(probe_seconds "${f}")
  wait_for "the probe to report ${n} more second(s)" $((n + 30)) 0.5 _kube_probe_has $((have + n))
}
_kube_probe_has() {
  local f="${WORK_DIR}/probe-wait.out"
  kube_probe_collect "${f}"
  (($(probe_seconds "${f}") >= $1))
}

# kube_pod_get POD PATH — GET http://POD:8080/PATH through the API server's pod proxy (no
# curl in a scratch image; works on old clusters too). Bounded: it runs inside wait loops.
kube_pod_get() {
  kube_poll get --raw "/api/v1/namespaces/${NS}/pods/$1:8080/proxy$2" 2>/dev/null
}
