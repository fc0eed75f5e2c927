#!/usr/bin/env bash
# rotate.sh — scenario "rotate": a credential rotation with no restart and no failed request.
#
# The Secret is a volume followed with --reload --mysecret-file, and the mock backend
# accepts the old and the new credential during the rotation (--expected-secret 4321,5678).
# With a probe running all along:
#   1. the Secret is rotated 4321 -> 5678: the running process swaps it in (generation 2,
#      `secret reloaded: generation 2 in use`), same PID / same pods, no failed request;
#   2. the Secret is then changed to a bad value (9999): the change is rejected
#      (`secret rejected: ...`, /metrics hello_path_secret_last_reload_successful 0), the
#      last good credential stays in use and the service stays up.
#
#   local (default)  the binary on 127.0.0.1 reading a directory updated exactly as the
#                    kubelet's AtomicWriter updates a Secret volume, followed with its file
#                    watch (inotify; no --watch-interval: the 1m default is a safety net)
#   --kube           k8s/overlays/rotate in its own namespace (2 replicas), the Secret changed
#                    with `kubectl patch secret`; the kubelet delivers each change on its next
#                    sync (often 30-90 s). Each pod is asked through the API server's pod
#                    proxy (/mysecret, /metrics; all pods at once, each until it answers
#                    so); a probe pod measures through the Service.
#   --kube --nudge   the same, nudged (row rotate-nudge): after each `kubectl patch secret`,
#                    the rotation and the bad value alike, scripts/nudge.sh (same KUBECTL,
#                    --context, namespace) annotates the pods that mount the Secret, so
#                    that the kubelet rewrites their copy now. The seconds are counted from
#                    the patch, the nudge included; the waits poll every 0.2 s, for at most
#                    NUDGE_TIMEOUT; nudge.sh must nudge every pod, both times.
#   --kube --nudger  the same with the controller (row rotate-nudger): k8s/nudger deployed
#                    into the namespace first (Ready once it has listed), then only the
#                    patches; the nudger must annotate every pod, both times.
# Reported: failed requests (expected 0), seconds from the rotation until generation 2 is in
# use (every pod), restarts (expected 0).
#
# Usage:
#   scripts/rotate.sh [--kube [--context NAME] [--nudge|--nudger]] [-h|--help]
#
#   --nudge, --nudger  (with --kube) the nudged delivery, by nudge.sh or by the controller;
#             locally there is nothing to nudge (the update is written at once): a usage error
#
# Ends with one line: RESULT scenario=rotate mode=... (or rotate-nudge, rotate-nudger; format:
# scripts/lib/probe.sh).
# Exit status: 0 outcome as expected, 1 otherwise, 2 bad arguments or no cluster (--kube).
#
# Environment: HELLO_PATH_BIN, CARGO, WATCH_INTERVAL [unset], RETRY_INTERVAL [500ms]
# (local); KUBECTL, KUSTOMIZE, IMAGE, KUBE_TIMEOUT, SECRET_TIMEOUT, NUDGE_TIMEOUT,
# NUDGER_IMAGE, KEEP_NAMESPACE (--kube) — see scripts/lib/local.sh and kube.sh for their defaults.
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh" # messages, waits, options, clean-up
# shellcheck source-path=SCRIPTDIR source=lib/local.sh
source "${LIB_DIR}/local.sh" # the binary as the pod, a kubelet-style Secret directory
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh" # the same on a cluster: kubectl, namespaces, pods, probe pod
# shellcheck source-path=SCRIPTDIR source=lib/probe.sh
source "${LIB_DIR}/probe.sh" # what the probe measured, and the RESULT line

readonly METRIC_BAD='hello_path_secret_last_reload_successful 0'
extra_arg() { nudge_arg "$@"; }
check_args() { nudge_check; }

_logged() { grep -qF "$2" "$1"; }
_says() { http_get "$1" "$2" | has "$3"; }

run_local() {
  local vol="${WORK_DIR}/secret-volume" port
  secret_dir_init "${vol}" mysecret 4321
  port=$(free_port)
  app_start rotate "${port}" -- --reload --mysecret-file "${vol}/mysecret" \
    --expected-secret 4321,5678 "${WATCH_ARGS[@]}" --retry-interval "${RETRY_INTERVAL}"
  local pid=${APP_PID} logf=${APP_LOG}
  app_wait_ready "${pid}" "${logf}" 10 || die "PID ${pid} did not start with the good credential"
  probe_start_local rotate "${port}"
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "1. rotation: the Secret becomes 5678 (kubelet-style update)"
  local t1 t_new t2 rotated=false gen2=false rejected=false metric=false still=false
  t1=$(now_ms)
  secret_dir_update "${vol}" mysecret 5678
  if wait_for "PID ${pid} to log 'secret reloaded: generation 2 in use'" 10 0.01 \
    _logged "${logf}" 'secret reloaded: generation 2 in use'; then
    rotated=true
  fi
  t_new=$(now_ms)
  _says "${port}" /mysecret '(generation 2)' && gen2=true
  log "   /mysecret: $(http_get "${port}" /mysecret | tail -n 1)"
  probe_wait_seconds "${PROBE_OUT}" 2 || true

  log "2. a bad value: the Secret becomes 9999 (kubelet-style update)"
  t2=$(now_ms)
  secret_dir_update "${vol}" mysecret 9999
  if wait_for "PID ${pid} to log 'secret rejected'" 10 0.01 _logged "${logf}" 'secret rejected'; then
    rejected=true
    log "   $(grep -m 1 -F 'secret rejected' "${logf}" | sed 's/.*\] //')"
  fi
  _says "${port}" /metrics "${METRIC_BAD}" && metric=true
  log "   /metrics: $(http_get "${port}" /metrics | grep -E '^hello_path_secret_(last_reload_successful|generation) ' | paste -sd' ' -)"
  if _says "${port}" /mysecret '(generation 2)' && _says "${port}" /readyz ok; then
    still=true
  fi
  probe_wait_seconds "${PROBE_OUT}" 2 || true
  probe_stop "${PROBE_PID}"

  local failed total served kinds=- timeline seconds verdict=ok note
  read -r failed total served kinds < <(probe_counts "${PROBE_OUT}")
  timeline=$(probe_timeline "${PROBE_OUT}" "${PROBE_T0}" "${t1}" "${t2}")
  seconds=$(fmt_secs $((t_new - t1)))
  note="5678 in use as generation 2 after ${seconds}s, then 9999 rejected (last_reload_successful 0) while serving on; same PID ${pid}"
  if [[ "${rotated}" != true || "${gen2}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the rotation to 5678 was not swapped in (generation 2)"
  elif [[ "${rejected}" != true || "${metric}" != true ]]; then
    verdict=unexpected
    note="the bad value was not rejected (log 'secret rejected', ${METRIC_BAD})"
  elif [[ "${still}" != true ]] || ! proc_alive "${pid}"; then
    verdict=unexpected
    note="after the bad value the service did not keep generation 2 and stay ready"
  elif [[ "${served}" != 1 || "${failed}" != 0 ]]; then
    verdict=unexpected
    note="${failed} requests failed during the rotation"
  fi
  result rotate "${failed}" "${total}" "${seconds}" 0 "${pid}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

# _pods_say PATH TEXT — every pod named in PENDING_PODS answers PATH with TEXT (API server
#   pod proxy). The pods are asked at once, in parallel, so that a round takes about one
#   kubectl call, whatever the number of pods; a pod that answered so leaves PENDING_PODS
#   (within one change its answer stays: the generation in use, the rejection), so that the
#   rounds of a wait ask fewer and fewer. Set PENDING_PODS (_pending_pods) before the wait.
PENDING_PODS=()
_pending_pods() { mapfile -t PENDING_PODS < <(kube_snapshot | awk 'NF { print $1 }'); }
_pods_say() {
  local path=$1 text=$2 i
  local -a jobs=() left=()
  ((${#PENDING_PODS[@]})) || return 1
  for i in "${!PENDING_PODS[@]}"; do
    (kube_pod_get "${PENDING_PODS[i]}" "${path}" | has "${text}") &
    jobs+=("$!")
  done
  for i in "${!jobs[@]}"; do
    wait "${jobs[i]}" || left+=("${PENDING_PODS[i]}")
  done
  if ((${#left[@]} == 0)); then
    PENDING_PODS=()
    return 0
  fi
  PENDING_PODS=("${left[@]}")
  return 1
}
# _all_pods_say PATH TEXT — every app pod there is now answers PATH with TEXT.
_all_pods_say() {
  _pending_pods
  _pods_say "$@"
}
# _wait_pods_say WHAT PATH TEXT — bounded wait (WAIT_TIMEOUT s, polling every WAIT_POLL s)
#   until every pod answers PATH with TEXT.
_wait_pods_say() {
  _pending_pods
  wait_for "$1" "${WAIT_TIMEOUT}" "${WAIT_POLL}" _pods_say "$2" "$3"
}

# _change VALUE — the change: kubectl patch of the Secret, then (--nudge) scripts/nudge.sh,
#   whose NUDGED is appended to NUDGES (--nudger: _nudger_said, once the change is in).
#   Sets T_CHANGE (ms, just before the patch) and T_NUDGED (ms, once nudge.sh is done).
NUDGES=()
_change() {
  T_CHANGE=$(now_ms)
  kube_secret_set "$1"
  if [[ "${NUDGE}" == true ]]; then
    kube_nudge
    NUDGES+=("${NUDGED}")
  fi
  T_NUDGED=$(now_ms)
}
# _nudger_said — (--nudger) appends to NUDGES the pods the nudger annotated for the last
#   change (its log, less the nudges of the changes before).
_nudger_said() {
  [[ "${NUDGER}" == true ]] || return 0
  local before=0 n
  for n in "${NUDGES[@]}"; do before=$((before + n)); done
  kube_nudger_report "${before}"
  NUDGES+=("${NUDGED}")
}

run_kube() {
  local row=rotate then="" nudged=""
  WAIT_POLL=2 WAIT_TIMEOUT=${SECRET_TIMEOUT}
  if [[ "${NUDGE}" == true ]]; then
    then=", then scripts/nudge.sh" nudged=" (nudged)"
  elif [[ "${NUDGER}" == true ]]; then
    then="; the nudger annotates the pods" nudged=" (nudged by the nudger)"
  fi
  if [[ -n "${NUDGE_SUFFIX}" ]]; then
    row=rotate${NUDGE_SUFFIX} WAIT_POLL=${NUDGE_POLL} WAIT_TIMEOUT=${NUDGE_TIMEOUT}
  fi
  kube_deploy rotate "" "${row}"
  [[ "${NUDGER}" != true ]] || kube_deploy_nudger
  local replicas base
  kube_rollout_wait "${KUBE_TIMEOUT}" || die "the first rollout did not finish within ${KUBE_TIMEOUT}s"
  replicas=$(kube_replicas)
  base=$(kube_uids)
  kube_probe_start "${row}"
  kube_probe_wait_seconds 3 || true

  log "1. rotation: the Secret becomes 5678 (kubectl patch secret${then})"
  local t1 t1_nudged t_new t2 t_bad rotated=true rejected=true logged=true still=true
  _change 5678
  t1=${T_CHANGE} t1_nudged=${T_NUDGED}
  _wait_pods_say "the kubelet to deliver it${nudged} and every pod to answer /mysecret with generation 2" \
    /mysecret '(generation 2)' || rotated=false
  t_new=$(now_ms)
  _nudger_said
  kube_probe_wait_seconds 3 || true

  log "2. a bad value: the Secret becomes 9999 (kubectl patch secret${then})"
  _change 9999
  t2=${T_CHANGE}
  _wait_pods_say "every pod to reject it (${METRIC_BAD} in /metrics)" /metrics "${METRIC_BAD}" || rejected=false
  t_bad=$(now_ms)
  _nudger_said
  local pod
  for pod in $(kube_snapshot | awk 'NF { print $1 }'); do
    kube -n "${NS}" logs "${pod}" 2>/dev/null | has 'secret rejected' || logged=false
  done
  _all_pods_say /mysecret '(generation 2)' || still=false
  kube_all_ready "${replicas}" || still=false
  kube_probe_wait_seconds 3 || true
  kube_probe_collect "${WORK_DIR}/probe.out"

  local failed total served kinds=- timeline seconds restarts uids verdict=ok note
  read -r failed total served kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${PROBE_T0}" "${t1}" "${t2}")
  seconds=$(fmt_secs $((t_new - t1)))
  uids=$(kube_uids)
  restarts=$(kube_restarts "${base}")
  note="5678 in use as generation 2 in every pod after ${seconds}s (kubelet sync), then 9999 rejected while serving on; same pods, no restart"
  if [[ "${NUDGE}" == true ]]; then
    note="5678 in use as generation 2 in every pod ${seconds}s after the patch (patch and nudge.sh done after $(fmt_secs $((t1_nudged - t1)))s: ${NUDGES[0]:-?} of ${replicas} pods nudged), then 9999 rejected by every pod $(fmt_secs $((t_bad - t2)))s after its patch (nudged as well) while serving on; same pods, no restart"
  elif [[ "${NUDGER}" == true ]]; then
    note="5678 in use as generation 2 in every pod ${seconds}s after the patch (the nudger annotated ${NUDGES[0]:-?} of ${replicas} pods), then 9999 rejected by every pod $(fmt_secs $((t_bad - t2)))s after its patch (nudged as well) while serving on; same pods, no restart"
  fi
  if [[ "${rotated}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="not every pod reported generation 2 within ${WAIT_TIMEOUT}s${nudged:+ of the patch and the nudge}"
  elif [[ "${rejected}" != true || "${logged}" != true ]]; then
    verdict=unexpected
    note="the bad value was not rejected by every pod (${METRIC_BAD}, log 'secret rejected')"
  elif [[ "${still}" != true ]]; then
    verdict=unexpected
    note="after the bad value not every pod kept generation 2 and stayed Ready"
  elif [[ "${uids}" != "${base}" || "${restarts}" != 0 ]]; then
    verdict=unexpected
    note="pods were replaced or restarted"
  elif [[ "${served}" != 1 || "${failed}" != 0 ]]; then
    verdict=unexpected
    note="${failed} requests failed during the rotation"
  elif [[ -n "${NUDGE_SUFFIX}" && ("${NUDGES[0]:-}" != "${replicas}" || "${NUDGES[1]:-}" != "${replicas}") ]]; then
    verdict=unexpected
    note="${NUDGER_NAME} nudged ${NUDGES[0]:-?} and then ${NUDGES[1]:-?} of the ${replicas} pods (expected all, both times)"
  fi
  result "${row}" "${failed}" "${total}" "${seconds}" "${restarts}" "$(kube_names)" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

main() { scenario_main "$@"; }

main "$@"
