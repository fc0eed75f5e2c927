#!/usr/bin/env bash
# redeploy.sh — scenario "redeploy": the credential comes from the Secret through an
# environment variable (MYSECRET, secretKeyRef), and a changed Secret reaches the process
# only through a new process: here by a redeploy, delete then apply.
#
# The story, measured with a probe that runs across all of it:
#   0. the service runs with the good credential (4321) and answers;
#   1. the Secret is changed to a bad value (1234) and the app is redeployed: the old
#      version is deleted first, the new one crashes at start (FATAL, exit 1): nothing
#      serves any more — a redeploy keeps nothing of the old version to fall back on;
#   2. the Secret is fixed (4321) and the app is redeployed again: it serves again.
# Reported: the requests that failed (expected: > 0, the outage), the seconds from the fix
# until the fixed credential is in use (serving again), the processes or pods started anew.
# Compare restart.sh (in a cluster a rolling restart with the same bad Secret stalls while
# the old pods keep serving) and reload.sh (no new process at all).
#
#   local (default)  the binary with MYSECRET=... on a fixed 127.0.0.1 port; "delete" is
#                    SIGTERM and a (bounded) wait for the exit, "apply" starts a new process
#   --kube           k8s/overlays/env in its own namespace (Secret set to 4321 before the
#                    pods start); the change is `kubectl patch secret` then
#                    `kubectl delete deployment hello-path` + `kubectl apply`; a probe pod
#                    measures through the Service's ClusterIP
#
# Usage:
#   scripts/redeploy.sh [--kube [--context NAME]] [-h|--help]
#
# Ends with one line: RESULT scenario=redeploy mode=... (format: scripts/lib/probe.sh).
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
  log "0. the service runs with MYSECRET=4321 (from the Secret, as secretKeyRef does)"
  app_start v1 "${port}" MYSECRET=4321 --
  local pid1=${APP_PID} starts0=${APP_SEQ}
  app_wait_ready "${pid1}" "${APP_LOG}" 10 || die "the first version did not start"
  probe_start_local redeploy "${port}"
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "1. the Secret becomes 1234 (a bad value) and the app is redeployed: delete, then apply"
  local t1 t2
  t1=$(now_ms)
  app_stop "${pid1}"
  local crashed=false
  local_start_crashing v2 "${port}" 1234 && crashed=true
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "2. the Secret is fixed (4321) and the app is redeployed again"
  t2=$(now_ms)
  local_start_fixed v3 "${port}" "${t1}" "${t2}"
  local failed=${FAILED} total=${TOTAL} kinds=${KINDS} timeline=${TIMELINE} verdict=ok note seconds restarts
  seconds=$(fmt_secs $((T_READY - t2)))
  # Processes started after the first one: the crashing and the fixed redeploy.
  restarts=$((APP_SEQ - starts0))
  note="delete+apply: the bad Secret took everything down (the new process crashed, no old one left), down $(fmt_secs $((T_READY - t1)))s until the fixed redeploy served"
  if [[ "${FIXED_BACK}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the fixed redeploy did not serve"
  elif [[ "${crashed}" != true ]]; then
    verdict=unexpected
    note="the redeploy with the bad Secret did not crash with exit 1 and the FATAL line"
  elif ((failed == 0)); then
    verdict=unexpected
    note="no failed request measured during the redeploys"
  fi
  result redeploy "${failed}" "${total}" "${seconds}" "${restarts}" "${FIXED_PID}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

# The redeploy: delete the Deployment (its pods leave the Service at once), wait (bounded,
# saying so) until it is gone, apply it again. `delete --wait=false` plus wait_for rather
# than `delete --wait=true`, which would wait in silence.
_deployment_gone() {
  local out
  out=$(kube_poll -n "${NS}" get deployment hello-path --ignore-not-found -o name 2>/dev/null) &&
    [[ -z "${out}" ]]
}
kube_redeploy() {
  log "kubectl delete deployment hello-path; kubectl apply (the same manifests)"
  kube -n "${NS}" delete deployment hello-path --wait=false >/dev/null ||
    die "kubectl delete deployment hello-path -n ${NS} failed"
  wait_for "deployment/hello-path in ${NS} to be gone" 60 0.5 _deployment_gone ||
    die "deployment/hello-path in ${NS} was still there 60s after kubectl delete"
  kube_apply_app
}

run_kube() {
  log "0. the service runs with the good credential (the Secret holds 4321 before the pods start)"
  kube_deploy env 4321
  local replicas base
  kube_rollout_wait "${KUBE_TIMEOUT}" || die "the first rollout did not finish within ${KUBE_TIMEOUT}s"
  replicas=$(kube_replicas)
  base=$(kube_uids)
  kube_probe_start redeploy
  kube_probe_wait_seconds 3 || true

  log "1. the Secret becomes 1234 (a bad value) and the app is redeployed: delete, then apply"
  local t1 t2 t_ready crashed=true back=true
  t1=$(now_ms)
  kube_secret_set 1234
  kube_redeploy
  wait_for "a new pod to crash (restarts >= 1 or CrashLoopBackOff)" "${KUBE_TIMEOUT}" 1 kube_crashed ||
    crashed=false
  kube_probe_wait_seconds 3 || true

  log "2. the Secret is fixed (4321) and the app is redeployed again"
  t2=$(now_ms)
  kube_secret_set 4321
  kube_redeploy
  wait_for "${replicas} new pods to be Ready" "${KUBE_TIMEOUT}" 0.5 kube_all_ready "${replicas}" ||
    back=false
  t_ready=$(now_ms)
  kube_probe_wait_seconds 3 || true
  kube_probe_collect "${WORK_DIR}/probe.out"

  local failed total kinds=- timeline seconds restarts verdict=ok note names
  read -r failed total _ kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${PROBE_T0}" "${t1}" "${t2}")
  seconds=$(fmt_secs $((t_ready - t2)))
  restarts=$(kube_restarts "${base}")
  names=$(kube_names)
  note="delete+apply: the bad Secret took the whole service down (no old pod kept), down ~$(fmt_secs $((t_ready - t1)))s until the fixed redeploy was Ready"
  if [[ "${back}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the fixed redeploy was not Ready within ${KUBE_TIMEOUT}s"
  elif [[ "${crashed}" != true ]]; then
    verdict=unexpected
    note="the redeploy with the bad Secret did not crash"
  elif ((failed == 0)); then
    verdict=unexpected
    note="no failed request measured during the redeploys"
  fi
  result redeploy "${failed}" "${total}" "${seconds}" "${restarts}" "${names}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

main() { scenario_main "$@"; }

main "$@"
