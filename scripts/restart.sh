#!/usr/bin/env bash
# restart.sh — scenario "restart": the credential comes from the Secret through an
# environment variable (MYSECRET, secretKeyRef), fixed for the life of the process, so a
# changed Secret needs the process restarted. In a cluster that is
# `kubectl rollout restart`: a rolling update (maxUnavailable 0) with a graceful stop (the
# pod drains for --shutdown-delay with /readyz failing before it exits).
#
# The story, measured with a probe that runs across all of it:
#   0. the service runs with the good credential (4321) and answers;
#   1. the Secret is changed to a bad value (9999) and the app is restarted;
#   2. the Secret is fixed (4321) and the app is restarted again.
#
#   --kube           k8s/overlays/env (2 replicas, --shutdown-delay=5s) in its own
#                    namespace. Step 1: the rollout STALLS — the new pod crashes, the old
#                    pods keep serving, `kubectl rollout status` does not finish — and no
#                    request fails. Step 2: `rollout restart` again rolls every pod over to
#                    the fixed Secret. Expected: 0 failed requests in step 1, the rollout
#                    complete in step 2 with every pod replaced.
#   local (default)  one process cannot do a rolling update: restart = SIGTERM (it drains
#                    for --shutdown-delay, /readyz answers 503 meanwhile), wait for its exit,
#                    start a new one. Step 1 is then an outage (no second replica keeps
#                    serving while the new process crashes) and the table says so; step 2
#                    brings the service back.
# Reported: failed requests, seconds from the fix until the fixed credential is in use
# (rollout complete / new process serving), processes or pods started anew.
#
# Usage:
#   scripts/restart.sh [--kube [--context NAME]] [-h|--help]
#
# Ends with one line: RESULT scenario=restart mode=... (format: scripts/lib/probe.sh).
# Exit status: 0 outcome as expected, 1 otherwise, 2 bad arguments or no cluster (--kube).
#
# Environment: HELLO_PATH_BIN, CARGO, SHUTDOWN_DELAY [1s] (local); KUBECTL, KUSTOMIZE,
# IMAGE, KUBE_TIMEOUT, KEEP_NAMESPACE, STALL_SECONDS [30: how long step 1 must stay
# stalled] (--kube) — see scripts/lib/local.sh and kube.sh for the others.
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh" # messages, waits, options, clean-up
# shellcheck source-path=SCRIPTDIR source=lib/local.sh
source "${LIB_DIR}/local.sh" # the binary as the pod, a kubelet-style Secret directory
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh" # the same on a cluster: kubectl, namespaces, pods, probe pod
# shellcheck source-path=SCRIPTDIR source=lib/probe.sh
source "${LIB_DIR}/probe.sh" # what the probe measured, and the RESULT line

STALL_SECONDS=${STALL_SECONDS:-30}

_readyz_503() { http_get "$1" /readyz | awk 'NR == 1' | has ' 503'; }
_test_200() { http_get "$1" /test | awk 'NR == 1' | has ' 200'; }

run_local() {
  local port
  port=$(free_port)
  log "0. the service runs with MYSECRET=4321 and --shutdown-delay ${SHUTDOWN_DELAY}"
  app_start v1 "${port}" MYSECRET=4321 -- --shutdown-delay "${SHUTDOWN_DELAY}"
  local pid1=${APP_PID} starts0=${APP_SEQ}
  app_wait_ready "${pid1}" "${APP_LOG}" 10 || die "the first process did not start"
  probe_start_local restart "${port}"
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "1. the Secret becomes 9999 (a bad value) and the app is restarted: stop (SIGTERM), start"
  local t1 t2 drained=false
  t1=$(now_ms)
  kill -TERM "${pid1}"
  if wait_for "/readyz to answer 503 while /test is still served (draining)" 3 0.02 _readyz_503 "${port}" &&
    _test_200 "${port}"; then
    drained=true
  fi
  app_wait_exit "${pid1}" 10 || die "PID ${pid1} did not exit after SIGTERM"
  log "   PID ${pid1} exited ${APP_EXIT} after draining"
  local crashed=false
  if local_start_crashing v2 "${port}" 9999 --shutdown-delay "${SHUTDOWN_DELAY}"; then
    crashed=true
    log "   one process, no second replica: nothing serves now (a cluster's rollout would stall and keep the old pods)"
  fi
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "2. the Secret is fixed (4321) and the app is restarted again"
  t2=$(now_ms)
  local_start_fixed v3 "${port}" "${t1}" "${t2}" --shutdown-delay "${SHUTDOWN_DELAY}"
  local failed=${FAILED} total=${TOTAL} kinds=${KINDS} timeline=${TIMELINE} verdict=ok note seconds restarts
  seconds=$(fmt_secs $((T_READY - t2)))
  # Processes started after the first one: the crashing and the fixed restart.
  restarts=$((APP_SEQ - starts0))
  note="restart = stop+start locally (no rolling update without a cluster): drained ${SHUTDOWN_DELAY}, then the bad Secret crashed the one process, down until the fixed restart"
  if [[ "${FIXED_BACK}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the fixed restart did not serve"
  elif [[ "${crashed}" != true ]]; then
    verdict=unexpected
    note="the restart with the bad Secret did not crash with exit 1 and the FATAL line"
  elif [[ "${drained}" != true ]]; then
    verdict=unexpected
    note="no graceful stop seen: /readyz did not answer 503 while /test was served"
  elif ((failed == 0)); then
    verdict=unexpected
    note="no failed request measured although one process was stopped and started"
  fi
  result restart "${failed}" "${total}" "${seconds}" "${restarts}" "${FIXED_PID}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

_rollout_finished() { kube_t 4 -n "${NS}" rollout status deployment/hello-path --timeout=2s >/dev/null 2>&1; }
# At least N pods Ready, none of them in BASE (old pods gone or not counted).
_old_pods_ready() {
  local want=$1 base=",$2,"
  kube_snapshot | awk -v want="${want}" -v base="${base}" \
    '$3 == "True" && index(base, "," $2 ",") > 0 { r++ } END { exit !(r >= want) }'
}

run_kube() {
  log "0. the service runs with the good credential (the Secret holds 4321 before the pods start)"
  kube_deploy env 4321
  local replicas base
  kube_rollout_wait "${KUBE_TIMEOUT}" || die "the first rollout did not finish within ${KUBE_TIMEOUT}s"
  replicas=$(kube_replicas)
  base=$(kube_uids)
  kube_probe_start restart
  kube_probe_wait_seconds 3 || true

  log "1. the Secret becomes 9999 (a bad value) and the app is restarted: kubectl rollout restart"
  local t1 t2 t_done crashed=true stalled=true old_kept=true rolled=true
  t1=$(now_ms)
  kube_secret_set 9999
  kube -n "${NS}" rollout restart deployment/hello-path >/dev/null || die "kubectl rollout restart failed"
  wait_for "the new pod to crash (restarts >= 1 or CrashLoopBackOff)" "${KUBE_TIMEOUT}" 1 kube_crashed ||
    crashed=false
  observe_for "the rollout finishes (it must stall)" "${STALL_SECONDS}" 1 _rollout_finished || stalled=false
  _old_pods_ready "${replicas}" "${base}" || old_kept=false
  kube_probe_collect "${WORK_DIR}/probe-step1.out"
  local step1_failed
  read -r step1_failed _ _ < <(probe_counts "${WORK_DIR}/probe-step1.out")
  log "   step 1: rollout stalled=${stalled}, old pods still Ready=${old_kept}, failed requests so far=${step1_failed}"

  log "2. the Secret is fixed (4321) and the app is restarted again: kubectl rollout restart"
  t2=$(now_ms)
  kube_secret_set 4321
  kube -n "${NS}" rollout restart deployment/hello-path >/dev/null || die "kubectl rollout restart failed"
  kube_rollout_wait "${KUBE_TIMEOUT}" || rolled=false
  t_done=$(now_ms)
  kube_probe_wait_seconds 8 || true # the old pods drain for 5 s after the rollout
  kube_probe_collect "${WORK_DIR}/probe.out"

  local failed total kinds=- timeline seconds restarts names now_uids verdict=ok note replaced=true
  read -r failed total _ kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${PROBE_T0}" "${t1}" "${t2}")
  seconds=$(fmt_secs $((t_done - t2)))
  now_uids=$(kube_uids)
  restarts=$(kube_restarts "${base}")
  names=$(kube_names)
  local u
  for u in ${now_uids//,/ }; do
    [[ ",${base}," != *",${u},"* ]] || replaced=false
  done
  note="rolling restart: with the bad Secret the rollout stalled and the old pods served (${step1_failed} failed); with the fixed one it rolled every pod over, ${failed} failed in all"
  if [[ "${rolled}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the rollout with the fixed Secret did not finish within ${KUBE_TIMEOUT}s"
  elif [[ "${crashed}" != true || "${stalled}" != true ]]; then
    verdict=unexpected
    note="with the bad Secret the new pod should crash and the rollout stall (crashed=${crashed} stalled=${stalled})"
  elif [[ "${old_kept}" != true || "${step1_failed}" != 0 ]]; then
    verdict=unexpected
    note="with the bad Secret the old pods should keep serving: old Ready=${old_kept}, ${step1_failed} failed"
  elif [[ "${replaced}" != true ]]; then
    verdict=unexpected
    note="after the rollout some pods are still the old ones"
  fi
  result restart "${failed}" "${total}" "${seconds}" "${restarts}" "${names}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

main() { scenario_main "$@"; }

main "$@"
