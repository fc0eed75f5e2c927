#!/usr/bin/env bash
# cleanup.sh — a scenario script cleans up whatever has become of its output.
#
# First, a subshell of a scenario that runs its clean-up (a wait ticker that caught a
# signal while it started) must leave the scenario's processes and directory alone.
# Then each case runs a scenario with its stdout and stderr piped into a reader (tee, as in
# `scripts/rotate.sh --kube 2>&1 | tee run.log`), in a process group of its own as a
# terminal's foreground job, waits until the scenario is in the middle of its story, and
# then ends it the way a person or a dying pipeline does:
#   1. locally (scripts/reload.sh: three servers, three probes): SIGINT to the process
#      group, as Ctrl-C — the reader dies with it. Every process the scenario started must
#      be gone, and its scratch directory;
#   2. with a fake kubectl (scripts/rotate.sh --kube, waiting for the pods): SIGINT to the
#      process group — the namespace it created must have been deleted, the scratch
#      directory removed, and the exit status be 130;
#   3. the same, but only the reader is killed: the scenario's next line meets a closed
#      pipe (SIGPIPE), and it must clean up all the same;
#   4. the same, SIGTERM to the process group (exit status 143, or 141: see kube_case);
#   5. the Ctrl-C case again, as the foreground job of a terminal (a pseudo-terminal,
#      tests/lib/on_tty.py): the reader dies with the Ctrl-C, and the clean-up's report
#      ("deleted namespace ...") must still reach the terminal.
#
# Usage: tests/cleanup.sh        (no options; about a minute)
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
# Environment: HELLO_PATH_BIN (the binary for the local case; default: built by the
# scenario script when missing or outdated).
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"
WORK=""
PGID=""
ENDED=""

cleanup() {
  if [[ -n "${PGID}" ]]; then
    kill -KILL -- "-${PGID}" 2>/dev/null || true
  fi
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    rm -rf -- "${WORK}"
  fi
}

# start_piped NAME ENV... -- SCRIPT ARG... — runs `bash SCRIPT ARG...` with ENV, its stdout
# and stderr piped into `tee OUT`, in a new session: a process group of its own (PGID, the
# scenario's PID), with every signal at its default, as a shell's foreground job has them
# (a background job of this test would start with SIGINT ignored). Scratch directories go
# to WORK/NAME/tmp, the fake kubectl's state to WORK/NAME/state.
start_piped() {
  local name=$1
  shift
  local -a envs=()
  while (($#)) && [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  local dir="${WORK}/${name//[^a-z0-9]/-}"
  mkdir -p "${dir}/tmp" "${dir}/state"
  OUT="${dir}/out"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  env --default-signal "${envs[@]}" TMPDIR="${dir}/tmp" STUB_STATE="${dir}/state" \
    setsid bash -c 'exec bash "$@" </dev/null > >(exec tee "$0" >/dev/null) 2>&1' \
    "${OUT}" "$@" </dev/null >/dev/null 2>&1 &
  PGID=$!
  local pgrp="" i
  for ((i = 0; i < 50; i++)); do
    pgrp=$(awk '{ print $5 }' "/proc/${PGID}/stat" 2>/dev/null || true)
    [[ "${pgrp}" != "${PGID}" ]] || return 0
    sleep 0.1
  done
  note "PID ${PGID} is in process group ${pgrp:-?}, not one of its own"
  return 1
}

# ended_with — ENDED: the scenario's exit status, once its group is gone.
ended_with() {
  ENDED=0
  wait "${PGID}" || ENDED=$?
}

# wait_output TEXT SECONDS — until OUT holds TEXT (bounded).
wait_output() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -qF -- "$1" "${OUT}" 2>/dev/null && return 0
    sleep 0.1
  done
  note "no '$1' in the output after $2 s; it ends with:"
  tail -n 5 "${OUT}" 2>/dev/null | sed 's/^/#   /'
  return 1
}

# wait_group_gone SECONDS — until no process of PGID is left (bounded).
wait_group_gone() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    kill -0 -- "-${PGID}" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# alive PID — running, and not a zombie.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "${state}" && "${state}" != Z ]]
}

# The PIDs the scenario said it started ("started NAME: PID N", "probe NAME: PID N").
started_pids() {
  sed -n 's/.*: \(started\|probe\) [a-z-]*: PID \([0-9][0-9]*\).*/\2/p' "${OUT}"
}

all_alive() {
  local pid
  for pid in "$@"; do
    alive "${pid}" || return 1
  done
}
none_alive() {
  local pid left=""
  for pid in "$@"; do
    if alive "${pid}"; then left+=" ${pid}"; fi
  done
  [[ -z "${left}" ]] || note "still running:${left}"
  [[ -z "${left}" ]]
}

no_scratch_left() {
  local left
  left=$(find "$1/tmp" -mindepth 1 -maxdepth 1 2>/dev/null)
  [[ -z "${left}" ]] || note "left behind: ${left}"
  [[ -z "${left}" ]]
}

# A subshell of a scenario that runs the scenario's clean-up (bash runs a parent's trap in a
# subshell that catches the signal before it has reset its traps: a wait ticker stopped as
# soon as it started) leaves the scenario's processes and scratch directory alone; the
# scenario's own exit then removes them.
test_subshell_leaves_it() {
  local out
  # shellcheck disable=SC2016 # expanded by the inner bash
  out=$(bash -c 'set -o errexit -o nounset -o pipefail
    source "$1/scripts/lib/common.sh"
    source "$1/scripts/lib/local.sh"
    setup_workdir
    sleep 30 </dev/null >/dev/null 2>&1 &
    STARTED_PIDS+=("$!")
    ( cleanup ) || true
    ( exit 143 ) || true
    printf "%s %s %s\n" "${WORK_DIR}" "$!" "$([[ -d "${WORK_DIR}" ]] && kill -0 "$!" && echo kept)"' \
    _ "${ROOT}" 2>&1) || true
  local dir pid kept
  read -r dir pid kept <<<"${out}"
  check "a subshell that runs the clean-up leaves the script's directory and processes alone" \
    test "${kept:-}" = kept
  check "... which the script's own exit then removes" \
    test -n "${dir}" -a ! -e "${dir:-/nonexistent}" -a -n "$(none_alive "${pid:-0}" && echo gone)"
}

test_local_ctrl_c() {
  local -a pids envs=(CONTROL_SECONDS=60)
  [[ -z "${HELLO_PATH_BIN:-}" ]] || envs+=(HELLO_PATH_BIN="${HELLO_PATH_BIN}")
  start_piped local "${envs[@]}" -- "${ROOT}/scripts/reload.sh" ||
    { not_ok "local: the scenario starts in a process group of its own"; return; }
  if ! wait_output 'watching 60s that a control serves' 120; then
    not_ok "local: scripts/reload.sh reaches its controls (3 servers and 3 probes started)"
    return
  fi
  mapfile -t pids < <(started_pids)
  check "local: the scenario started 6 processes (${pids[*]}), all running" \
    test "${#pids[@]}" -eq 6 -a -n "$(all_alive "${pids[@]}" && echo yes)"
  kill -INT -- "-${PGID}"
  check "local: after SIGINT to its group (Ctrl-C), the scenario and its reader end" wait_group_gone 30
  check "local: no process it started is left" none_alive "${pids[@]}"
  check "local: its scratch directory is gone" no_scratch_left "${WORK}/local"
  ended_with
  check "local: it exits 130 (got ${ENDED})" test "${ENDED}" = 130
  PGID=""
}

# kube_case NAME HOW — rotate.sh --kube against the fake kubectl whose pods never reject
# the bad Secret, ended while it waits for them by HOW: int (SIGINT to the group), term
# (SIGTERM to the group) or reader (only the reader is killed; the scenario meets the closed
# pipe when its wait gives up and says so, after SECRET_TIMEOUT=6 s).
kube_case() {
  local name=$1 how=$2 created deleted want timeout=120
  [[ "${how}" != reader ]] || timeout=6
  start_piped "${name}" KUBECTL="bash ${ROOT}/tests/fixtures/fake-kubectl" STUB_BROKEN=1 \
    SECRET_TIMEOUT="${timeout}" -- "${ROOT}/scripts/rotate.sh" --kube --context dry-ctx ||
    { not_ok "${name}: the scenario starts in a process group of its own"; return; }
  if ! wait_output 'waiting for every pod to reject it' 120; then
    not_ok "${name}: scripts/rotate.sh --kube (fake kubectl) reaches its wait for the pods"
    return
  fi
  local dir="${WORK}/${name//[^a-z0-9]/-}"
  created=$(sed -n 's/.*create namespace \(hello-path-[a-z0-9-]*\).*/\1/p' "${dir}/state/argv.log")
  case "${how}" in
    int) kill -INT -- "-${PGID}"; want=130 ;;
    # 143, or 141: bash reports the child that SIGTERM killed ("Terminated") on its stderr,
    # the closed pipe, and the SIGPIPE of that write is handled first.
    term) kill -TERM -- "-${PGID}"; want="143|141" ;;
    reader)
      # The reader: the tee of the scenario's process group (the only one there).
      kill -KILL "$(pgrep -g "${PGID}" -x tee)"
      want=141
      ;;
  esac
  check "${name}: the scenario ends" wait_group_gone 60
  deleted=$(cat "${dir}/state/deleted-namespaces" 2>/dev/null || true)
  check "${name}: the namespace it created (${created:-none}) was deleted" \
    test -n "${created}" -a "${created}" = "${deleted}"
  check "${name}: its scratch directory is gone" no_scratch_left "${dir}"
  ended_with
  check "${name}: it exits ${want} (got ${ENDED})" grep -qxE "${want}" <<<"${ENDED}"
  PGID=""
}

# tty_case — rotate.sh --kube (fake kubectl) typed at a terminal as `... 2>&1 | tee out`,
# ended by Ctrl-C while it waits for the pods: tee dies with it, stderr is a dead pipe, and
# the clean-up must say what it removed on the terminal all the same.
tty_case() {
  local dir="${WORK}/tty" rc=0 created
  mkdir -p "${dir}/tmp" "${dir}/state"
  OUT="${dir}/out"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  env TMPDIR="${dir}/tmp" STUB_STATE="${dir}/state" STUB_BROKEN=1 SECRET_TIMEOUT=120 \
    KUBECTL="bash ${ROOT}/tests/fixtures/fake-kubectl" \
    python3 "${ROOT}/tests/lib/on_tty.py" "${dir}/screen" "${OUT}" 'waiting for every pod to reject it' INT \
    -- env --default-signal bash -c 'exec bash "$@" </dev/null > >(exec tee "$0" >/dev/null) 2>&1' \
    "${OUT}" "${ROOT}/scripts/rotate.sh" --kube --context dry-ctx </dev/null >/dev/null 2>&1 || rc=$?
  created=$(sed -n 's/.*create namespace \(hello-path-[a-z0-9-]*\).*/\1/p' "${dir}/state/argv.log" 2>/dev/null)
  check "terminal: Ctrl-C ends the scenario (exit 130, got ${rc})" test "${rc}" = 130
  check "terminal: the namespace it created (${created:-none}) was deleted" \
    test -n "${created}" -a "${created}" = "$(cat "${dir}/state/deleted-namespaces" 2>/dev/null)"
  check "terminal: the clean-up's report reached the terminal, the pipe being gone" \
    grep -qF "deleted namespace ${created:-?}" "${dir}/screen"
  if ! grep -qF "deleted namespace" "${dir}/screen" 2>/dev/null; then
    note "the terminal showed:"
    sed 's/^/#   /' "${dir}/screen" 2>/dev/null | tail -n 5
  fi
}

main() {
  (($# == 0)) || {
    printf 'usage: tests/cleanup.sh (no arguments)\n' >&2
    exit 2
  }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-test-cleanup.XXXXXX")
  trap cleanup EXIT
  if ! env --default-signal true 2>/dev/null || ! command -v setsid >/dev/null; then
    not_ok "env --default-signal (coreutils 8.31+) and setsid (util-linux) are installed"
    tap_summary
    return
  fi
  test_subshell_leaves_it
  test_local_ctrl_c
  kube_case "kube, Ctrl-C" int
  kube_case "kube, reader gone" reader
  kube_case "kube, SIGTERM" term
  tty_case
  tap_summary
}

main "$@"
