#!/usr/bin/env bash
# common.sh — what every scenario script needs, whatever the mode: messages and exit codes,
# bounded waits that say what they wait for, the options every scenario takes, the scratch
# directory and the clean-up. Sourced first, never run:
#
#   source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
#
# The other files of scripts/lib/, each sourced after this one when a script uses it:
#   local.sh           the LOCAL mode: the real binary as the "pod", the local probe process,
#                      a kubelet-style Secret directory (kubelet-secret.sh, sourced there)
#   kube.sh            the --kube mode: every kubectl call (KUBECTL, --context), namespaces
#                      and deployments; the pods and the probe pod (kube-pods.sh, sourced there)
#   probe.sh           what a probe measured: counts, availability timelines, the RESULT and
#                      CONTROL lines, the walkthrough's table
#   engine.sh          the container engine (build-image.sh, load-image.sh, the bench, tests)
#   bench/             the shell side of scripts/bench.sh (its measuring helper: bench/)
#
# What it holds:
#   log / warn / die / usage_error / need / has   messages (errors to stderr), exit codes
#   now_ms / fmt_secs                             time
#   wait_for / observe_for / fatal_later          bounded waits (wait.sh, sourced here)
#   parse_args                                    --local, --kube, --context, -h (+ extra_arg)
#   setup_workdir / cleanup / cleanup_add         the scratch directory, the traps, and a
#                                                 clean-up that removes what the script made
#   scenario_main                                 the story every scenario script shares
#
# Environment read here (defaults in brackets):
#   KEEP_WORKDIR   1 = keep the scratch directory with the logs (debugging) [0]
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

if [[ -n "${HELLO_PATH_COMMON_LOADED:-}" ]]; then
  return 0
fi
HELLO_PATH_COMMON_LOADED=1

LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SCRIPTS_DIR=$(cd -- "${LIB_DIR}/.." && pwd)
REPO_ROOT=$(cd -- "${SCRIPTS_DIR}/.." && pwd)
SCRIPT_NAME=$(basename -- "$0" .sh)
readonly LIB_DIR SCRIPTS_DIR REPO_ROOT SCRIPT_NAME

readonly FATAL_LINE='FATAL: connection to remote service failed. Check mysecret parameter.'

# Options (parse_args).
MODE=local
KUBE_CONTEXT=""

# The scratch directory (setup_workdir); removed by cleanup.
WORK_DIR=""

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

# Bounded waits that say what they wait for: wait_for, observe_for, fatal_later.
# shellcheck source=scripts/lib/wait.sh
source "${LIB_DIR}/wait.sh"

# ---------------------------------------------------------------------------------------
# Options every scenario script takes. A script may define `extra_arg ARG...`, which handles
# its own options: it sets EXTRA_SHIFT to the number of words used and returns 0, or
# returns 1 for an unknown option; and `check_args`, called once every option is read, to
# refuse a combination (usage_error).

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
  if declare -F check_args >/dev/null; then
    check_args
  fi
}

# ---------------------------------------------------------------------------------------
# The scratch directory and the clean-up.

# cleanup_add FUNCTION — FUNCTION removes something this script created (local.sh: the
# processes it started; kube.sh: the namespaces it created); cleanup calls each one, in the
# order they were added. It must be idempotent, and say what it did with cleanup_note
# rather than print: cleanup reports only once everything is removed.
CLEANUP_STEPS=()
CLEANUP_NOTES=()
cleanup_add() {
  [[ " ${CLEANUP_STEPS[*]} " == *" $1 "* ]] || CLEANUP_STEPS+=("$1")
}
# cleanup_note MESSAGE — a log line (on stderr) for cleanup to print at its end.
cleanup_note() { CLEANUP_NOTES+=("$*"); }

# Creates the scratch directory and installs the traps: whatever ends the script — its
# end, an error, Ctrl-C (INT), TERM, a closed terminal (HUP) or a reader gone from its
# output (PIPE) — cleanup runs. Scripts that need their own clean-up define
# `scenario_cleanup`, called first.
setup_workdir() {
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-${SCRIPT_NAME}.XXXXXX")
  trap cleanup EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 141' PIPE
  trap 'exit 143' TERM
}

# Idempotent: stops only the processes this script started, deletes only the namespaces it
# created (without waiting for them), removes only its scratch directory — all of that
# first, and only then says what it did, on stderr (the RESULT line stays the last line on
# stdout), or on the terminal (/dev/tty) when stderr is gone. Nothing stops it half-way:
# not errexit, not a closed pipe (the reader of the output may have died with the same
# Ctrl-C: `scripts/rotate.sh --kube 2>&1 | tee run.log`), not a second INT or TERM, not a
# full disk; a line it can write nowhere is dropped.
cleanup() {
  local rc=$? step note
  # Only the script's own process cleans up. A subshell (the wait ticker) that catches a
  # signal before it has reset the traps it inherited runs the script's handlers (bash
  # does, in that short window: a ticker stopped as soon as it started), and must not
  # remove what the script still uses.
  if [[ "${BASHPID}" != "$$" ]]; then
    exit "${rc}"
  fi
  trap '' PIPE INT TERM HUP
  trap - EXIT
  set +o errexit
  _ticker_stop
  if declare -F scenario_cleanup >/dev/null; then
    scenario_cleanup
  fi
  for step in "${CLEANUP_STEPS[@]}"; do
    "${step}"
  done
  if [[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]]; then
    if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then
      cleanup_note "KEEP_WORKDIR=1: logs kept in ${WORK_DIR}"
    else
      rm -rf -- "${WORK_DIR}"
    fi
  fi
  # Stderr may be a pipe whose reader died with the same Ctrl-C (`... 2>&1 | tee log`): then
  # the terminal, when there is one, still gets the report.
  for note in "${CLEANUP_NOTES[@]}"; do
    log "${note}" >&2 2>/dev/null || { log "${note}" >/dev/tty; } 2>/dev/null || true
  done
  CLEANUP_NOTES=()
  exit "${rc}"
}

# scenario_main ARG... — the story every scenario script shares: options, a work directory,
# then run_local (the binary built first; local.sh) or run_kube (after the cluster check;
# kube.sh), both defined by the script.
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
