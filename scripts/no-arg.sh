#!/usr/bin/env bash
# no-arg.sh — scenario "no-arg": the article's first run, with no argument at all.
#
# The process has no credential but the built-in default (1234), the mock remote service
# refuses it: the process logs `FATAL: connection to remote service failed. Check mysecret
# parameter.` and exits 1. It never serves. In a cluster the kubelet restarts it again and
# again: CrashLoopBackOff.
#
#   local (default)  runs the binary with no secret (MYSECRET removed from its environment)
#                    while a probe asks 127.0.0.1:PORT/test; expects exit 1, the FATAL line
#                    and not one answer
#   --kube           deploys k8s/overlays/no-arg into its own namespace
#                    (hello-path-no-arg-XXXXX), runs a probe pod against the Service, waits
#                    for the first crash; expects the FATAL line in the pod's log, the pod
#                    never Ready, restarts > 0
#
# Usage:
#   scripts/no-arg.sh [--kube [--context NAME]] [-h|--help]
#
# Ends with one line: RESULT scenario=no-arg mode=... (format: scripts/lib/probe.sh).
# Exit status: 0 outcome as expected, 1 otherwise, 2 bad arguments or no cluster (--kube).
#
# Environment: HELLO_PATH_BIN, CARGO (local); KUBECTL, KUSTOMIZE, IMAGE, KUBE_TIMEOUT,
# KEEP_NAMESPACE (--kube) — see scripts/lib/local.sh and kube.sh for their defaults.
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh" # messages, waits, options, clean-up
# shellcheck source-path=SCRIPTDIR source=lib/local.sh
source "${LIB_DIR}/local.sh" # the binary as the pod, a kubelet-style Secret directory
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh" # the same on a cluster: kubectl, namespaces, pods, probe pod
# shellcheck source-path=SCRIPTDIR source=lib/probe.sh
source "${LIB_DIR}/probe.sh" # what the probe measured, and the RESULT line

run_local() {
  local port
  port=$(free_port)
  probe_start_local no-arg "${port}"
  app_start no-arg "${port}" --
  local pid=${APP_PID} logf=${APP_LOG} rc=none
  if app_wait_exit "${pid}" 10; then
    rc=${APP_EXIT}
  fi
  log "its log:"
  sed 's/^/    /' "${logf}"
  probe_wait_seconds "${PROBE_OUT}" 2 || true
  probe_stop "${PROBE_PID}"

  local failed total served kinds=- timeline verdict=ok note
  read -r failed total served kinds < <(probe_counts "${PROBE_OUT}")
  timeline=$(probe_timeline "${PROBE_OUT}" "${PROBE_T0}")
  note="exit ${rc} with the FATAL line, never serves; no kubelet here to restart it (in a cluster: CrashLoopBackOff)"
  if [[ "${rc}" != 1 ]]; then
    verdict=unexpected
    note="expected exit 1, got: ${rc}"
  elif ! grep -qF "${FATAL_LINE}" "${logf}"; then
    verdict=unexpected
    note="exit 1 but no FATAL line in the log"
  elif [[ "${served}" != 0 ]]; then
    verdict=unexpected
    note="something answered on port ${port}"
  fi
  result no-arg "${failed}" "${total}" - 0 - "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

run_kube() {
  kube_deploy no-arg ""
  wait_for "the pod of ${NS} to be created" 60 1 kube_snapshot_nonempty ||
    die "no pod appeared in ${NS}"
  local base
  base=$(kube_uids)
  kube_probe_start no-arg
  local crashed=true
  wait_for "the pod to crash (restarts >= 1 or CrashLoopBackOff)" "${KUBE_TIMEOUT}" 1 kube_crashed ||
    crashed=false
  kube_probe_wait_seconds 3 || true

  local pod fatal=false ever_ready=false
  pod=$(kube_snapshot | awk 'NF { print $1; exit }')
  if [[ -n "${pod}" ]]; then
    kube_pod_logs "${pod}" >"${WORK_DIR}/pod.log"
    if grep -qF "${FATAL_LINE}" "${WORK_DIR}/pod.log"; then
      fatal=true
    fi
  fi
  log "log of ${pod:-?}:"
  sed 's/^/    /' "${WORK_DIR}/pod.log" 2>/dev/null || true
  if grep -qE ' True ' "${WORK_DIR}/pods-${NS}.seen" 2>/dev/null; then
    ever_ready=true
  fi
  kube_probe_collect "${WORK_DIR}/probe.out"
  local failed total served kinds=- timeline restarts verdict=ok note
  read -r failed total served kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${PROBE_T0}")
  restarts=$(kube_restarts "${base}")
  note="the FATAL line, CrashLoopBackOff (${restarts} restarts so far), never Ready, never serves"
  if [[ "${crashed}" != true ]]; then
    verdict=unexpected
    note="the pod did not crash within ${KUBE_TIMEOUT}s"
  elif [[ "${fatal}" != true ]]; then
    verdict=unexpected
    note="no FATAL line in the log of ${pod:-the pod}"
  elif [[ "${ever_ready}" == true || "${served}" != 0 ]]; then
    verdict=unexpected
    note="the pod was Ready or the Service answered"
  fi
  result no-arg "${failed}" "${total}" - "${restarts}" - "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}
kube_snapshot_nonempty() { [[ -n "$(kube_snapshot)" ]]; }

main() { scenario_main "$@"; }

main "$@"
