#!/usr/bin/env bash
# walkthrough.sh — runs every scenario of the article (no-arg, arg, redeploy, restart,
# reload with its two negative controls, rotate) and prints one table: failed requests
# during the change, seconds until the new credential is in use, restarts, verdict; then
# one availability timeline per scenario, one glyph per second.
#
#   local (default)  no cluster needed: the real binary is the "pod" (built with
#                    `cargo build --release` when missing or outdated), a directory laid out
#                    and updated exactly as the kubelet updates a Secret volume, a process
#                    stop/start for restart and redeploy. Takes about half a minute.
#   --kube           the same scenarios on the cluster of the current kubectl context (or
#                    --context NAME), each in its own namespace, deleted afterwards. Takes
#                    several minutes: the kubelet delivers a changed Secret on its next sync.
#
# Usage:
#   scripts/walkthrough.sh [--kube [--context NAME]] [--only LIST] [--quiet] [-h|--help]
#
#   --only LIST   comma-separated scenarios to run (default: all, in the order above)
#   --quiet       one line per scenario instead of its full output, then the table
#
# Exit status: 0 every scenario as expected, 1 otherwise, 2 bad arguments or no cluster.
#
# Environment: as the scenario scripts (HELLO_PATH_BIN, CARGO, KUBECTL, KUSTOMIZE, IMAGE,
# KUBE_TIMEOUT, SECRET_TIMEOUT, ...; see scripts/lib.sh).
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

readonly ALL_SCENARIOS=(no-arg arg redeploy restart reload rotate)
ONLY=""
QUIET=false

extra_arg() {
  case "$1" in
    --only)
      (($# >= 2)) || usage_error "--only needs a value"
      ONLY=$2
      EXTRA_SHIFT=2
      ;;
    --only=*)
      ONLY=${1#--only=}
      EXTRA_SHIFT=1
      ;;
    --quiet)
      QUIET=true
      EXTRA_SHIFT=1
      ;;
    *) return 1 ;;
  esac
}

# field LINE KEY — the value of KEY= in a RESULT or CONTROL line (note: the rest of the line).
field() {
  local line=$1 key=$2
  if [[ "${key}" == note ]]; then
    [[ "${line}" == *" note="* ]] && printf '%s\n' "${line#* note=}"
    return 0
  fi
  if [[ " ${line%% note=*} " =~ \ ${key}=([^ ]*)\  ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

# run_one SCENARIO — runs scripts/SCENARIO.sh, streams its output (indented), appends its
# CONTROL lines (negative controls, reload's) and its one RESULT line to the results, in
# that order; a script that printed no RESULT line gets an "error" row.
run_one() {
  local s=$1 out="${WORK_DIR}/$1.out" rcf="${WORK_DIR}/$1.rc" start rc
  local -a args=()
  if [[ "${MODE}" == kube ]]; then
    args+=(--kube)
    [[ -z "${KUBE_CONTEXT}" ]] || args+=(--context "${KUBE_CONTEXT}")
  fi
  start=$(now_ms)
  printf '\n'
  log "=== ${s}: scripts/${s}.sh ${args[*]}"
  {
    rc=0
    bash "${LIB_DIR}/${s}.sh" "${args[@]}" </dev/null || rc=$?
    printf '%s\n' "${rc}" >"${rcf}"
  } 2>&1 | while IFS= read -r line; do
    printf '%s\n' "${line}" >>"${out}"
    if [[ "${QUIET}" != true ]]; then
      printf '  | %s\n' "${line}"
    fi
  done
  rc=$(cat "${rcf}" 2>/dev/null || echo 1)
  local controls line
  controls=$(grep '^CONTROL ' "${out}" || true)
  line=$(grep '^RESULT ' "${out}" | tail -n 1 || true)
  if [[ -z "${line}" ]]; then
    local why
    why=$(grep -E 'error:' "${out}" | tail -n 1 | sed 's/^[^:]*: error: //' | tr -d '\r')
    line="RESULT scenario=${s} mode=${MODE} failed=- total=- seconds_to_new=- restarts=- pids=- verdict=error timeline=- note=the script exited ${rc} without a result${why:+: ${why}}"
  fi
  if [[ -n "${controls}" ]]; then
    printf '%s\n' "${controls}" >>"${WORK_DIR}/results"
  fi
  printf '%s\n' "${line}" >>"${WORK_DIR}/results"
  log "=== ${s}: exit ${rc} after $(fmt_secs $(($(now_ms) - start)))s"
  if [[ "${rc}" == 2 ]]; then
    # Bad arguments or no cluster: every other scenario would fail the same way.
    die 2 "scripts/${s}.sh exited 2: $(grep -E 'error:' "${out}" | tail -n 1)"
  fi
}

print_table() {
  local line s failed total seconds restarts verdict note timeline col_failed col_seconds
  local rule controls
  rule=$(printf '%*s' 118 '' | tr ' ' '-')
  printf '\n'
  if [[ "${MODE}" == local ]]; then
    printf 'hello-path-rs walkthrough, LOCAL: the binary as the pod on 127.0.0.1, a kubelet-style Secret directory,\n'
    printf 'stop+start for restart and redeploy (one process: no rolling update without a cluster)\n'
  else
    printf 'hello-path-rs walkthrough, KUBE: Kubernetes 1.%s%s, one namespace per scenario\n' \
      "${KUBE_SERVER_MINOR}" "${KUBE_CONTEXT:+, context ${KUBE_CONTEXT}}"
  fi
  printf '%s\n' "${rule}"
  printf '%-15s | %-26s | %-16s | %-8s | %s\n' scenario 'failed during the change' 'new cred. in use' restarts verdict
  printf '%s\n' "${rule}"
  while IFS= read -r line; do
    s=$(field "${line}" scenario)
    failed=$(field "${line}" failed)
    total=$(field "${line}" total)
    seconds=$(field "${line}" seconds_to_new)
    restarts=$(field "${line}" restarts)
    verdict=$(field "${line}" verdict)
    note=$(field "${line}" note)
    if [[ "${failed}" == - ]]; then
      col_failed=-
    elif [[ "${failed}" == "${total}" && "${total}" != 0 && "${seconds}" =~ ^(never|-)$ ]]; then
      col_failed="all ${total} (never served)"
    else
      col_failed="${failed} of ${total}"
    fi
    col_seconds=${seconds}
    [[ "${seconds}" =~ ^[0-9.]+$ ]] && col_seconds="after ${seconds} s"
    printf '%-15s | %-26s | %-16s | %-8s | %s: %s\n' "${s}" "${col_failed}" "${col_seconds}" \
      "${restarts}" "${verdict}" "${note}"
  done <"${WORK_DIR}/results"
  printf '%s\n' "${rule}"
  printf 'failed during the change: requests that failed after the service had first answered (before that it\n'
  printf '  was not serving yet); a service that never answered counts all its requests as failed.\n'
  printf 'new cred. in use: seconds from the change (the fix, the rotation) until the new credential is in use.\n'
  controls=$(sed -n 's/^CONTROL scenario=\([^ ]*\) .*/\1/p' "${WORK_DIR}/results" | paste -sd, - | sed 's/,/, /g')
  if [[ -n "${controls}" ]]; then
    printf '%s: negative controls (CONTROL lines) run beside reload, fixed at the same moment;\n' "${controls}"
    printf '  expected never to see the new value (an env var, a subPath mount).\n'
  fi
  if [[ "${MODE}" == local ]]; then
    printf 'restarts: processes started anew (new PIDs). restart/redeploy locally = stop + start of the one\n'
    printf '  process, so a bad Secret is an outage; in a cluster a rolling restart keeps the old pods serving.\n'
  else
    printf 'restarts: new pods plus container restarts after the change.\n'
  fi
  printf '\navailability per second (%s):\n' "${TIMELINE_LEGEND}"
  while IFS= read -r line; do
    s=$(field "${line}" scenario)
    timeline=$(field "${line}" timeline)
    printf '  %-15s %s\n' "${s}" "${timeline}"
  done <"${WORK_DIR}/results"
}

main() {
  parse_args "$@"
  local -a scenarios=("${ALL_SCENARIOS[@]}")
  if [[ -n "${ONLY}" ]]; then
    local s known
    IFS=, read -r -a scenarios <<<"${ONLY}"
    for s in "${scenarios[@]}"; do
      known=false
      for k in "${ALL_SCENARIOS[@]}"; do
        [[ "${s}" != "${k}" ]] || known=true
      done
      [[ "${known}" == true ]] || usage_error "unknown scenario '${s}' in --only (known: ${ALL_SCENARIOS[*]})"
    done
  fi
  setup_workdir
  : >"${WORK_DIR}/results"
  if [[ "${MODE}" == local ]]; then
    ensure_binary
    export HELLO_PATH_BIN=${HELLO_BIN}
    print_local_settings
  else
    kube_preflight
  fi
  local s
  for s in "${scenarios[@]}"; do
    run_one "${s}"
  done
  print_table
  if grep -qvE ' verdict=ok ' "${WORK_DIR}/results"; then
    printf '\nNOT every scenario went as expected: see the rows whose verdict is not ok.\n'
    return 1
  fi
  printf '\nevery scenario went as expected.\n'
}

main "$@"
