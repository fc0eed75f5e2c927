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
#                    --context NAME), each in its own namespace, deleted afterwards, and
#                    reload and rotate twice more, nudged: by scripts/nudge.sh after each
#                    change of the Secret (reload-nudge, rotate-nudge: `--nudge`), and by
#                    the controller deployed beside them (reload-nudger, rotate-nudger:
#                    `--nudger`, image localhost/hello-path-nudger), so that the table has
#                    the three deliveries side by side. Takes several minutes: the kubelet
#                    delivers a changed Secret on its next sync unless nudged.
#                    Locally there is nothing to nudge (the update is written at once).
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
# KUBE_TIMEOUT, SECRET_TIMEOUT, ...; see scripts/lib/local.sh and kube.sh).
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh" # messages, options, clean-up
# shellcheck source-path=SCRIPTDIR source=lib/local.sh
source "${LIB_DIR}/local.sh" # the binary, built once for every scenario
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh" # the cluster check
# shellcheck source-path=SCRIPTDIR source=lib/probe.sh
source "${LIB_DIR}/probe.sh" # the RESULT lines and the table

# The runs, in order, one per entry: NAME MODES SCRIPT [ARG...]. NAME names the run (--only,
# the log); MODES says where it runs (local, kube or both: local,kube); scripts/SCRIPT.sh
# runs with the ARGs, plus --kube and --context in the cluster mode. A script ends with its
# RESULT line, whose scenario= names its row of the table; CONTROL lines before it are rows
# of their own. A variant of a scenario is one more entry, e.g. "NAME kube SCRIPT --OPTION".
readonly RUNS=(
  "no-arg local,kube no-arg"
  "arg local,kube arg"
  "redeploy local,kube redeploy"
  "restart local,kube restart"
  "reload local,kube reload"
  "reload-nudge kube reload --nudge"
  "reload-nudger kube reload --nudger"
  "rotate local,kube rotate"
  "rotate-nudge kube rotate --nudge"
  "rotate-nudger kube rotate --nudger"
)
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

# run_names [MODE] — the names of the runs (of MODE's runs only, when given), in order.
run_names() {
  local run name modes _
  for run in "${RUNS[@]}"; do
    read -r name modes _ <<<"${run}"
    [[ -z "${1:-}" || ",${modes}," == *",$1,"* ]] && printf '%s\n' "${name}"
  done
  return 0
}

# run_of NAME — sets RUN_SCRIPT and RUN_ARGS (an array) of run NAME.
run_of() {
  local run name modes rest
  for run in "${RUNS[@]}"; do
    read -r name modes RUN_SCRIPT rest <<<"${run}"
    if [[ "${name}" == "$1" ]]; then
      read -r -a RUN_ARGS <<<"${rest}"
      return 0
    fi
  done
  return 1
}

# run_one NAME — runs the scenario script of run NAME, streams its output (indented),
# appends its CONTROL lines (negative controls, reload's) and its one RESULT line to the
# results, in that order; a script that printed no RESULT line gets an "error" row.
run_one() {
  local name=$1 out="${WORK_DIR}/$1.out" rcf="${WORK_DIR}/$1.rc" start rc script
  local -a args
  run_of "${name}"
  script=${RUN_SCRIPT} args=("${RUN_ARGS[@]}")
  if [[ "${MODE}" == kube ]]; then
    args+=(--kube)
    [[ -z "${KUBE_CONTEXT}" ]] || args+=(--context "${KUBE_CONTEXT}")
  fi
  start=$(now_ms)
  printf '\n'
  log "=== ${name}: scripts/${script}.sh ${args[*]}"
  {
    rc=0
    bash "${SCRIPTS_DIR}/${script}.sh" "${args[@]}" </dev/null || rc=$?
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
    line="RESULT scenario=${name} mode=${MODE} failed=- total=- seconds_to_new=- restarts=- pids=- verdict=error timeline=- failures=- note=the script exited ${rc} without a result${why:+: ${why}}"
  fi
  if [[ -n "${controls}" ]]; then
    printf '%s\n' "${controls}" >>"${WORK_DIR}/results"
  fi
  printf '%s\n' "${line}" >>"${WORK_DIR}/results"
  log "=== ${name}: exit ${rc} after $(fmt_secs $(($(now_ms) - start)))s"
  if [[ "${rc}" == 2 ]]; then
    # Bad arguments or no cluster: every other scenario would fail the same way.
    die 2 "scripts/${script}.sh exited 2: $(grep -E 'error:' "${out}" | tail -n 1)"
  fi
}

print_table() {
  local results="${WORK_DIR}/results" controls
  printf '\n'
  if [[ "${MODE}" == local ]]; then
    printf 'hello-path-rs walkthrough, LOCAL: the binary as the pod on 127.0.0.1, a kubelet-style Secret directory,\n'
    printf 'stop+start for restart and redeploy (one process: no rolling update without a cluster)\n'
  else
    printf 'hello-path-rs walkthrough, KUBE: Kubernetes 1.%s%s, one namespace per scenario\n' \
      "${KUBE_SERVER_MINOR}" "${KUBE_CONTEXT:+, context ${KUBE_CONTEXT}}"
  fi
  results_table "${results}"
  printf 'failed during the change: requests that failed after the service had first answered (before that it\n'
  printf '  was not serving yet); a service that never answered counts all its requests as failed.\n'
  printf 'new cred. in use: seconds from the change (the fix, the rotation) until the new credential is in use.\n'
  controls=$(sed -n 's/^CONTROL scenario=\([^ ]*\) .*/\1/p' "${results}" | paste -sd, - | sed 's/,/, /g')
  if [[ "${controls}" == *-nudge* ]]; then
    printf '%s: negative controls (CONTROL lines)\n' "${controls}"
    printf '  run beside reload, fixed at the same moment (the nudged ones just before it); expected never to\n'
    printf '  see the new value (an env var, a subPath mount).\n'
  elif [[ -n "${controls}" ]]; then
    printf '%s: negative controls (CONTROL lines) run beside reload, fixed at the same moment;\n' "${controls}"
    printf '  expected never to see the new value (an env var, a subPath mount).\n'
  fi
  local nudged=""
  if [[ "${MODE}" == local ]]; then
    printf 'restarts: processes started anew (new PIDs). restart/redeploy locally = stop + start of the one\n'
    printf '  process, so a bad Secret is an outage; in a cluster a rolling restart keeps the old pods serving.\n'
    nudged=$(comm -13 <(run_names local | sort) <(run_names kube | sort) | paste -sd, - | sed 's/,/, /g')
    if [[ -n "${nudged}" ]]; then
      printf '%s: --kube only. Locally the kubelet-style\n' "${nudged}"
      printf '  update is written at once, so there is nothing to nudge: the reload and rotate rows get the\n'
      printf '  change as it is written.\n'
    fi
  else
    printf 'restarts: new pods plus container restarts after the change.\n'
    printf 'verdict: ok = what the scenario expects; unexpected = anything else; ok-network = the app held,\n'
    printf '  the cluster'"'"'s network did not: every failure a connect timeout through the Service while the\n'
    printf '  pods, asked directly at the same time, failed nothing (the note says more). Counted as ok.\n'
    if grep -qE '^(RESULT|CONTROL) scenario=[^ ]*-nudge ' "${results}"; then
      printf -- '-nudge rows: after each kubectl patch of the Secret, scripts/nudge.sh annotated the pods that\n'
      printf '  mount it, so that the kubelet rewrites their copy now; seconds from the patch, nudge included;\n'
      printf '  nudge.sh reports the controls'"'"' pods (env, subPath) as consumers it cannot help. The other rows\n'
      printf '  wait for the kubelet'"'"'s own periodic sync.\n'
    fi
    if grep -qE '^(RESULT|CONTROL) scenario=[^ ]*-nudger ' "${results}"; then
      printf -- '-nudger rows: the controller (k8s/nudger) ran in the namespace and annotated the pods itself\n'
      printf '  when it saw the Secret change: nothing but kubectl patch was run; seconds from the patch.\n'
    fi
  fi
  results_timelines "${results}"
}

main() {
  parse_args "$@"
  local -a runs here known
  mapfile -t here < <(run_names "${MODE}")
  runs=("${here[@]}")
  if [[ -n "${ONLY}" ]]; then
    local s
    mapfile -t known < <(run_names)
    IFS=, read -r -a runs <<<"${ONLY}"
    for s in "${runs[@]}"; do
      [[ " ${known[*]} " == *" ${s} "* ]] ||
        usage_error "unknown scenario '${s}' in --only (known: ${known[*]})"
      [[ " ${here[*]} " == *" ${s} "* ]] ||
        usage_error "scenario '${s}' does not run in the ${MODE} mode (it has: ${here[*]})"
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
  for s in "${runs[@]}"; do
    run_one "${s}"
  done
  print_table
  if grep -qvE ' verdict=(ok|ok-network) ' "${WORK_DIR}/results"; then
    printf '\nNOT every scenario went as expected: see the rows whose verdict is not ok.\n'
    return 1
  fi
  printf '\nevery scenario went as expected.\n'
}

main "$@"
